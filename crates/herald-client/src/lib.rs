//! An async `EventSource` for Rust: the browser's Server-Sent Events client, on hyper 1 and
//! tokio.
//!
//! It behaves as the WHATWG HTML standard says a browser's `EventSource` does: it sends
//! `Accept: text/event-stream` and `Cache-Control: no-cache`, follows redirects, accepts only a
//! `200` with the MIME type `text/event-stream`, reconnects after the stream ends or the network
//! fails (waiting the reconnection time, which the server may set with `retry:`) and resumes with
//! `Last-Event-ID`. Any other status (`204` is how a server says "stop"), or another content
//! type, fails the connection for good. The decisions are taken by
//! [`herald_sse::ConnectionModel`] and the parsing by [`herald_sse::Decoder`]; this crate does
//! the I/O.
//!
//! HTTP/1.1 and HTTP/2: over TLS (rustls) ALPN picks HTTP/2 when the server offers it; for
//! cleartext `http://` URLs, HTTP/2 with prior knowledge (h2c) can be asked for. TCP connects
//! time out after 30 s; TCP keepalive (and HTTP/2 PINGs every 30 s) make a silently dead
//! connection fail, and so reconnect, instead of hanging.
//!
//! ```no_run
//! use futures_util::StreamExt;
//! use herald_client::{ClientEvent, EventSource};
//!
//! # async fn demo() -> Result<(), herald_client::ClientError> {
//! let mut events = EventSource::builder("https://example.com/events")
//!     .header("Authorization", "Bearer token")
//!     .build()?;
//! while let Some(item) = events.next().await {
//!     match item? {
//!         ClientEvent::Message(m) => println!("{}: {}", m.event_type, m.data),
//!         ClientEvent::Reconnecting { error, delay } => eprintln!("{error}; again in {delay:?}"),
//!         _ => {}
//!     }
//! }
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod builder;
mod connection;
mod error;
mod tls;

use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use builder::EventSourceBuilder;
pub use error::ClientError;
pub use herald_sse::{DecoderConfig, FailReason, MessageEvent, ReadyState, ReconnectConfig};
pub use http::Version;
pub use url::Url;

use connection::Note;

/// What an [`EventSource`] reports, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// A connection was accepted (status 200, `text/event-stream`): events follow.
    Open {
        /// The URL that answered, after redirects.
        url: Url,
        /// The HTTP version spoken.
        version: Version,
    },
    /// An event arrived.
    Message(MessageEvent),
    /// The server set the reconnection time with `retry:`.
    Retry(Duration),
    /// The stream ended, the network failed or the server's stream was invalid; the client
    /// connects again after `delay`, sending the last event id.
    Reconnecting {
        /// What happened, for people.
        error: String,
        /// How long until the next attempt.
        delay: Duration,
    },
}

/// A connection to an event stream that reconnects as a browser's `EventSource` does.
///
/// It is a [`Stream`] of [`ClientEvent`]s. The connection runs in a tokio task started by
/// [`EventSourceBuilder::build`], whether or not the stream is polled; at most 64 items wait for
/// the consumer, then reading pauses until it catches up. An `Err` item is always the last one.
/// Dropping the `EventSource` or calling [`close`](Self::close) ends the connection task.
pub struct EventSource {
    url: Url,
    rx: mpsc::Receiver<Note>,
    task: Option<AbortOnDrop>,
    ready_state: ReadyState,
    last_event_id: String,
}

impl EventSource {
    /// Connects to `url` with the default settings; the same as `builder(url).build()`.
    pub fn new(url: &str) -> Result<EventSource, ClientError> {
        Self::builder(url).build()
    }

    /// Starts configuring an EventSource for `url`.
    pub fn builder(url: &str) -> EventSourceBuilder {
        EventSourceBuilder::new(url)
    }

    fn start(url: Url, rx: mpsc::Receiver<Note>, task: JoinHandle<()>, last_id: String) -> Self {
        Self {
            url,
            rx,
            task: Some(AbortOnDrop(task)),
            ready_state: ReadyState::Connecting,
            last_event_id: last_id,
        }
    }

    /// `readyState` as of the last item the stream yielded: `Connecting` at first and after a
    /// [`ClientEvent::Reconnecting`], `Open` after [`ClientEvent::Open`], `Closed` after an
    /// error, the end of the stream or [`close`](Self::close).
    pub fn ready_state(&self) -> ReadyState {
        self.ready_state
    }

    /// The last event id as of the last item the stream yielded (what a reconnection would send
    /// as `Last-Event-ID`; empty when none). An `id:`-only block updates it too.
    pub fn last_event_id(&self) -> String {
        self.last_event_id.clone()
    }

    /// The URL given to the builder (reconnections start from it, whatever redirects happened).
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Ends everything: the connection is dropped, nothing is reconnected, and the stream yields
    /// `None` from now on, even for items that had already arrived.
    pub fn close(&mut self) {
        self.task = None;
        self.rx.close();
        self.ready_state = ReadyState::Closed;
    }
}

impl Stream for EventSource {
    type Item = Result<ClientEvent, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.task.is_none() {
                return Poll::Ready(None);
            }
            match ready!(this.rx.poll_recv(cx)) {
                None => {
                    this.task = None;
                    this.ready_state = ReadyState::Closed;
                    return Poll::Ready(None);
                }
                Some(Note::LastEventId(id)) => this.last_event_id = id,
                Some(Note::Item(item)) => {
                    match &item {
                        Ok(ClientEvent::Open { .. }) => this.ready_state = ReadyState::Open,
                        Ok(ClientEvent::Reconnecting { .. }) => {
                            this.ready_state = ReadyState::Connecting;
                        }
                        Ok(ClientEvent::Message(m)) => {
                            this.last_event_id.clone_from(&m.last_event_id);
                        }
                        Ok(ClientEvent::Retry(_)) => {}
                        Err(_) => this.ready_state = ReadyState::Closed,
                    }
                    return Poll::Ready(Some(item));
                }
            }
        }
    }
}

impl std::fmt::Debug for EventSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSource")
            .field("url", &self.url.as_str())
            .field("ready_state", &self.ready_state)
            .field("last_event_id", &self.last_event_id)
            .finish_non_exhaustive()
    }
}

/// Aborts the connection task when the EventSource is closed or dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
