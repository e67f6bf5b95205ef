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

/// The prefix of every id the hub generates.
const GENERATED_PREFIX: &str = "urn:uuid:";

/// Positions from this one on do not fit in a generated id (see [`generated_id`]).
const POSITION_LIMIT: Position = 1 << 62;

/// The id a local store's update at `position` gets when its publisher gave none:
/// `urn:uuid:` and a UUID v7 (RFC 9562) whose 48-bit timestamp is `unix_ms`, whose 12 `rand_a`
/// bits are random and whose 62 `rand_b` bits are the position (the RFC's "fixed-length
/// dedicated counter" layout: the position is the counter). So a store can find such an id's
/// update from the id alone ([`position_in_generated_id`]) and needs no index entry for it.
/// Beyond 2^62 positions the id is a random UUID v7, which a store indexes like any other.
pub(crate) fn generated_id(position: Position, unix_ms: u64) -> String {
    let uuid = if position < POSITION_LIMIT {
        let mut counter = [0u8; 10];
        counter[..2].copy_from_slice(&rand_a());
        counter[2..].copy_from_slice(&position.to_be_bytes());
        uuid::Builder::from_unix_timestamp_millis(unix_ms, &counter).into_uuid()
    } else {
        uuid::Uuid::now_v7()
    };
    let mut id = String::with_capacity(GENERATED_PREFIX.len() + 36);
    id.push_str(GENERATED_PREFIX);
    id.push_str(
        uuid.hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer()),
    );
    id
}

/// The position that [`generated_id`] would have put in `id`, if `id` has its form. Only a hint:
/// any publisher may send such an id for any update, so a store must check that the update at
/// the returned position really has this id.
pub(crate) fn position_in_generated_id(id: &str) -> Option<Position> {
    let text = id.strip_prefix(GENERATED_PREFIX)?;
    if text.len() != 36 {
        return None;
    }
    let uuid = uuid::Uuid::try_parse(text).ok()?;
    if uuid.get_version_num() != 7 {
        return None;
    }
    let mut low = [0u8; 8];
    low.copy_from_slice(&uuid.as_bytes()[8..]);
    Some(u64::from_be_bytes(low) & (POSITION_LIMIT - 1))
}

/// Whether a store can find the update at `position` with this id without an index entry: the
/// id names that very position ([`position_in_generated_id`]).
pub(crate) fn id_names_position(id: &str, position: Position) -> bool {
    position_in_generated_id(id) == Some(position)
}

/// 16 random bits, of which the UUID keeps 12.
fn rand_a() -> [u8; 2] {
    let random = uuid::Uuid::new_v4();
    let bytes = random.as_bytes();
    [bytes[0], bytes[1]]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn generated_ids_are_uuid_v7_naming_their_position() {
        for position in [1, 2, 255, 1 << 40, POSITION_LIMIT - 1] {
            let id = generated_id(position, 1_720_000_000_000);
            let uuid = uuid::Uuid::parse_str(id.strip_prefix("urn:uuid:").unwrap()).unwrap();
            assert_eq!(uuid.get_version_num(), 7, "{id}");
            assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122, "{id}");
            let (secs, _) = uuid.get_timestamp().unwrap().to_unix();
            assert_eq!(secs, 1_720_000_000, "{id}");
            assert_eq!(position_in_generated_id(&id), Some(position), "{id}");
            assert!(id_names_position(&id, position));
            assert!(!id_names_position(&id, position + 1));
        }
        // Ids of one position at one millisecond still differ (12 random bits).
        let ids: std::collections::HashSet<String> = (0..64).map(|_| generated_id(7, 1)).collect();
        assert!(ids.len() > 32);
        // Past the limit: a random UUID v7, which names no position reliably.
        let big = generated_id(POSITION_LIMIT, 1);
        assert!(big.starts_with("urn:uuid:"));
    }

    #[test]
    fn other_ids_name_no_position() {
        for id in [
            "",
            "my-id",
            "urn:uuid:",
            "urn:uuid:0190b7a4-5c2e-4d41-8f3a-9b1c2d3e4f50", // v4
            "urn:uuid:0190b7a45c2e7d418f3a9b1c2d3e4f50",     // not hyphenated
            "urn:uuid:{0190b7a4-5c2e-7d41-8f3a-9b1c2d3e4f5}",
            "URN:UUID:0190b7a4-5c2e-7d41-8f3a-9b1c2d3e4f50",
            "urn:uuid:0190b7a4-5c2e-7d41-8f3a-9b1c2d3e4f5é",
        ] {
            assert_eq!(position_in_generated_id(id), None, "{id}");
        }
        // A random v7 id has the form: it names some position, which the store then checks.
        assert!(
            position_in_generated_id("urn:uuid:0190b7a4-5c2e-7d41-8f3a-9b1c2d3e4f50").is_some()
        );
    }
}
