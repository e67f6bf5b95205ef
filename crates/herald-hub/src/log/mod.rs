//! The durable part of the hub's ordered log, behind one trait.
//!
//! The hub assigns positions and calls [`Store::append`] from a single writer with batches of
//! updates (group commit): when `append` returns `Ok`, every update of the batch is durable in the
//! store's sense (fsynced for redb) and only then is any publisher answered.

use std::time::Duration;

use async_trait::async_trait;

use crate::update::{Position, StoredUpdate};

pub mod memory;
pub mod redb;
pub mod redis;

/// A store failed. The hub answers publishers with an error and accepts nothing it could not
/// store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be opened (path, permissions, another process holds the lock).
    #[error("cannot open the store: {0}")]
    Open(String),
    /// Reading or writing failed.
    #[error("store I/O failed: {0}")]
    Io(String),
    /// Stored data could not be decoded.
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
}

/// How much history to keep. An update is removed when any limit is exceeded, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Most updates kept. Default: 1,000,000.
    pub max_updates: Option<u64>,
    /// Oldest update kept. Default: 7 days.
    pub max_age: Option<Duration>,
    /// Most bytes of updates kept (as counted by [`StoredUpdate::size`]). Default: 1 GiB.
    pub max_bytes: Option<u64>,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_updates: Some(1_000_000),
            max_age: Some(Duration::from_secs(7 * 24 * 3600)),
            max_bytes: Some(1 << 30),
        }
    }
}

impl Retention {
    /// Keep everything.
    pub fn unlimited() -> Self {
        Self {
            max_updates: None,
            max_age: None,
            max_bytes: None,
        }
    }
}

/// Where the log's history lives. Positions given to `append` are strictly increasing across
/// calls; a store never reorders or renumbers them.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Appends a batch durably, in order. Returns only once all of it is durable; on error none of
    /// it may be reported as stored (a partial batch must not become visible).
    async fn append(&self, batch: &[StoredUpdate]) -> Result<(), StoreError>;

    /// Up to `limit` retained updates with a position greater than `after`, in order.
    async fn read_after(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<StoredUpdate>, StoreError>;

    /// The position of the retained update with this id. Must not scan history.
    async fn position_of(&self, id: &str) -> Result<Option<Position>, StoreError>;

    /// The highest position ever appended (kept even when trimming removed that update), 0 when
    /// nothing was ever appended.
    async fn last_position(&self) -> Result<Position, StoreError>;

    /// The lowest retained position, `None` when nothing is retained.
    async fn first_position(&self) -> Result<Option<Position>, StoreError>;

    /// Removes the oldest updates beyond `retention` (`now_ms`: the current time in milliseconds
    /// since the Unix epoch). Returns how many were removed.
    async fn trim(&self, retention: &Retention, now_ms: u64) -> Result<u64, StoreError>;

    /// Whether other hub processes append to this store too (a cluster log such as Redis
    /// Streams). Then the store assigns positions ([`Store::append_shared`]) and every process
    /// learns of new updates, its own included, by reading the log ([`Store::wait_after`]), so
    /// all of them deliver in the log's one order. Default: `false`.
    fn is_shared(&self) -> bool {
        false
    }

    /// For shared stores: appends a batch durably and atomically, assigning each update its
    /// position (the `position` fields given are ignored); returns the positions in order, or
    /// `Err(DuplicateId)`-like refusals as `Ok(None)` entries for updates whose id already exists
    /// in the log. Local stores never get this call.
    async fn append_shared(
        &self,
        batch: &[StoredUpdate],
    ) -> Result<Vec<Option<Position>>, StoreError> {
        let _ = batch;
        Err(StoreError::Io("this store is not shared".into()))
    }

    /// For shared stores: up to `limit` updates after `after`, waiting up to `wait` for the first
    /// one when there is none yet (an empty answer means none came). Default: no waiting.
    async fn wait_after(
        &self,
        after: Position,
        limit: usize,
        wait: Duration,
    ) -> Result<Vec<StoredUpdate>, StoreError> {
        let _ = wait;
        self.read_after(after, limit).await
    }
}
