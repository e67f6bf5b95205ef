//! Herald's engine: one hub-wide ordered log of updates; subscribers are cursors into it.
//!
//! - [`Hub::publish`] appends an update (durably, with group commit) and offers it to live
//!   subscribers; [`Hub::subscribe`] replays what a subscriber missed and continues live, with no
//!   gap and no duplicate.
//! - [`selector`]: which topics a subscriber wants (`*`, exact, RFC 6570 URI templates).
//! - [`auth`]: JWT claims deciding what a caller may publish and which private updates it sees.
//! - [`log`]: the [`Store`](log::Store) trait and its memory, redb and Redis Streams
//!   implementations.
//!
//! The crate knows no HTTP: the HTTP layer maps requests onto these calls.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod auth;
mod channel;
mod fanout;
mod history;
mod hub;
pub mod log;
pub mod metrics;
mod queue;
pub mod selector;
mod subscription;
pub mod subscriptions;
mod tailer;
mod update;
mod writer;

pub use fanout::Filter;
pub use history::{HistoryPage, HistoryRequest};
pub use hub::{
    Hub, HubConfig, PublishError, Published, ResumedFrom, SubscribeError, SubscribeRequest,
    EARLIEST,
};
pub use subscription::Subscription;
pub use update::{LogEntry, Position, StoredUpdate, Update};
