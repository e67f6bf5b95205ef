//! Updates: what a publisher sends, and what the log holds once it is accepted.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use herald_sse::{Event, EventId, EventType};

/// A position in the hub's log: strictly increasing, one per accepted update, never reused.
pub type Position = u64;

/// What a publisher asks to publish. Build it with [`Update::new`] and the `with_` methods; it is
/// checked by [`Hub::publish`](crate::Hub::publish).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// Topics: the first is the canonical topic, the others alternates. At least one.
    pub topics: Vec<String>,
    /// The payload (any text).
    pub data: String,
    /// Private updates reach only subscribers whose claims allow one of the topics.
    pub private: bool,
    /// The publisher's id (kept verbatim), or `None` for a generated `urn:uuid:` (UUID v7).
    pub id: Option<EventId>,
    /// The SSE event type.
    pub event_type: Option<EventType>,
    /// The SSE `retry:` the subscribers should use, in milliseconds.
    pub retry: Option<u64>,
}

impl Update {
    /// A public update of `data` to `topic`.
    pub fn new(topic: impl Into<String>, data: impl Into<String>) -> Self {
        Self {
            topics: vec![topic.into()],
            data: data.into(),
            private: false,
            id: None,
            event_type: None,
            retry: None,
        }
    }

    /// Adds an alternate topic.
    pub fn with_topic(mut self, topic: impl Into<String>) -> Self {
        self.topics.push(topic.into());
        self
    }

    /// Makes the update private.
    pub fn private(mut self) -> Self {
        self.private = true;
        self
    }

    /// Sets the id.
    pub fn with_id(mut self, id: EventId) -> Self {
        self.id = Some(id);
        self
    }

    /// Sets the event type.
    pub fn with_type(mut self, event_type: EventType) -> Self {
        self.event_type = Some(event_type);
        self
    }

    /// Sets the retry.
    pub fn with_retry(mut self, millis: u64) -> Self {
        self.retry = Some(millis);
        self
    }
}

/// An accepted update, as stored: everything needed to rebuild its entry after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUpdate {
    /// Its place in the log.
    pub position: Position,
    /// Its id (the publisher's or a generated one); unique in the log.
    pub id: String,
    /// Topics, canonical first.
    pub topics: Vec<String>,
    /// Whether it is private.
    pub private: bool,
    /// SSE event type.
    pub event_type: Option<String>,
    /// SSE retry in milliseconds.
    pub retry: Option<u64>,
    /// Payload.
    pub data: String,
    /// When it was accepted, in milliseconds since the Unix epoch.
    pub time_ms: u64,
}

impl StoredUpdate {
    /// Approximate bytes this update costs in the store, for byte-based retention.
    pub fn size(&self) -> usize {
        self.id.len()
            + self.topics.iter().map(|t| t.len() + 4).sum::<usize>()
            + self.event_type.as_ref().map_or(0, String::len)
            + self.data.len()
            + 32
    }
}

/// A committed update in memory: its stored form plus its SSE frame, encoded once and shared by
/// every subscriber that receives it.
#[derive(Debug)]
pub struct LogEntry {
    /// The stored form.
    pub update: StoredUpdate,
    /// The encoded `event:`/`retry:`/`id:`/`data:` frame.
    pub frame: Bytes,
    /// When this process committed it (or loaded it), for delivery latency.
    pub committed_at: Instant,
}

impl LogEntry {
    /// Encodes the frame of a stored update.
    pub fn new(update: StoredUpdate) -> Arc<Self> {
        let frame = encode_frame(&update);
        Arc::new(Self {
            update,
            frame,
            committed_at: Instant::now(),
        })
    }
}

/// The SSE frame of an update. Ids and types in the store were validated on publish; if a stored
/// value is nevertheless invalid (a damaged store), the field is left out rather than written raw.
pub(crate) fn encode_frame(update: &StoredUpdate) -> Bytes {
    let mut event = Event::builder().data(update.data.clone());
    if let Some(t) = &update.event_type {
        event = event.event_type(t.clone());
    }
    if let Some(r) = update.retry {
        event = event.retry(r);
    }
    event = event.id(update.id.clone());
    match event.build() {
        Ok(e) => e.encode(),
        Err(_) => Event::data(update.data.clone()).encode(),
    }
}
