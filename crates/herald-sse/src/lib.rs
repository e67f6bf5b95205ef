//! The `text/event-stream` format, runtime-free.
//!
//! - [`Event`] and its validated parts ([`EventId`], [`EventType`]): an id or type holding CR, LF
//!   or NUL cannot be constructed, so no value can inject fields into a stream.
//! - [`Event::encode`]: one frame, encoded once into shared [`bytes::Bytes`].
//! - [`Decoder`]: the WHATWG parser, incremental, exact under any chunking, with bounded memory.
//! - [`ConnectionModel`]: the EventSource reconnect model as a state machine; time is an input.
//!
//! No tokio, no I/O: the same code serves the hub, the client, tests and fuzzers.
//!
//! ```
//! use herald_sse::{Decoded, Decoder, Event};
//!
//! let frame = Event::builder().event_type("tick").id("1").data("a\nb").build()?;
//! let bytes = frame.encode();
//! assert_eq!(&bytes[..], b"event: tick\nid: 1\ndata: a\ndata: b\n\n");
//!
//! let mut decoder = Decoder::default();
//! let mut events = Vec::new();
//! decoder.feed(&bytes, |item| events.push(item))?;
//! let Decoded::Event(e) = &events[0] else { unreachable!() };
//! assert_eq!((e.event_type.as_str(), e.data.as_str(), e.last_event_id.as_str()), ("tick", "a\nb", "1"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod decode;
mod encode;
mod event;
mod reconnect;

pub use decode::{DecodeError, Decoded, Decoder, DecoderConfig, MessageEvent};
pub use event::{Event, EventBuilder, EventId, EventType, Field, FieldError};
pub use reconnect::{
    is_event_stream, ConnectRequest, ConnectionModel, Disconnect, FailReason, ReadyState,
    ReconnectConfig, ResponseVerdict,
};
