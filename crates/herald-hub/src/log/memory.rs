//! An in-memory store: for tests and `--store memory`. History is lost when the process exits.
//!
//! It also holds the retention and ordering rules shared with the redb store (`Expiry`,
//! `check_order`), so both stores trim and reject alike.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::{Retention, Store, StoreError};
use crate::update::{Position, StoredUpdate};

/// The most updates one `trim` call removes, so that one call never holds the store (a lock, a
/// write transaction) for long. The hub calls `trim` again while it returns a positive count.
pub(super) const TRIM_CHUNK: u64 = 10_000;

/// The log's history in memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    // A std mutex: every critical section is short and none spans an await.
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    updates: BTreeMap<Position, StoredUpdate>,
    ids: HashMap<String, Position>,
    /// Sum of [`StoredUpdate::size`] over `updates`.
    bytes: u64,
    /// Highest position ever appended; kept when trimming removes it.
    last: Position,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while the lock was held can only have come from a bug in this file (no user
        // code runs under it); every mutation leaves the maps consistent between statements, so
        // the data is still usable rather than worth taking the hub down for.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn append(&self, batch: &[StoredUpdate]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        check_order(batch, inner.last)?;
        for update in batch {
            inner.bytes = inner.bytes.saturating_add(size_of(update));
            // A duplicate id (which the hub should have rejected) points at the newer update.
            inner.ids.insert(update.id.clone(), update.position);
            inner.updates.insert(update.position, update.clone());
        }
        if let Some(last) = batch.last() {
            inner.last = last.position;
        }
        Ok(())
    }

    async fn read_after(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<StoredUpdate>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .updates
            .range((Bound::Excluded(after), Bound::Unbounded))
            .take(limit)
            .map(|(_, update)| update.clone())
            .collect())
    }

    async fn position_of(&self, id: &str) -> Result<Option<Position>, StoreError> {
        Ok(self.lock().ids.get(id).copied())
    }

    async fn last_position(&self) -> Result<Position, StoreError> {
        Ok(self.lock().last)
    }

    async fn first_position(&self) -> Result<Option<Position>, StoreError> {
        Ok(self.lock().updates.keys().next().copied())
    }

    async fn trim(&self, retention: &Retention, now_ms: u64) -> Result<u64, StoreError> {
        let Some(expiry) = Expiry::new(retention, now_ms) else {
            return Ok(0);
        };
        let mut inner = self.lock();
        let mut removed = 0;
        while removed < TRIM_CHUNK {
            let count = inner.updates.len() as u64;
            let bytes = inner.bytes;
            let Some(entry) = inner.updates.first_entry() else {
                break;
            };
            if !expiry.expired(count, bytes, entry.get().time_ms) {
                break;
            }
            let update = entry.remove();
            inner.bytes = inner.bytes.saturating_sub(size_of(&update));
            // Only drop the id if it still names this update: a later duplicate owns it now.
            if inner.ids.get(&update.id) == Some(&update.position) {
                inner.ids.remove(&update.id);
            }
            removed += 1;
        }
        Ok(removed)
    }
}

/// [`StoredUpdate::size`] as the u64 the byte total is kept in.
pub(super) fn size_of(update: &StoredUpdate) -> u64 {
    u64::try_from(update.size()).unwrap_or(u64::MAX)
}

/// Refuses a batch whose positions are not strictly increasing and after `last` (the highest
/// position stored so far, 0 for none). The hub guarantees this; checking it keeps a hub bug from
/// silently overwriting history or corrupting the byte total. Position 0 is refused too: it means
/// "nothing" to [`Store::last_position`] and `read_after(0, _)` could never return it.
pub(super) fn check_order(batch: &[StoredUpdate], last: Position) -> Result<(), StoreError> {
    let mut previous = last;
    for update in batch {
        if update.position <= previous {
            return Err(StoreError::Io(format!(
                "refusing an out-of-order append: position {} after position {previous}",
                update.position
            )));
        }
        previous = update.position;
    }
    Ok(())
}

/// A retention turned into a test for the oldest retained update.
#[derive(Debug, Clone, Copy)]
pub(super) struct Expiry {
    max_updates: Option<u64>,
    max_bytes: Option<u64>,
    /// Updates accepted before this time (ms since the epoch) are too old.
    min_time_ms: Option<u64>,
}

impl Expiry {
    /// `None` when `retention` keeps everything, so `trim` can return without touching the store.
    pub(super) fn new(retention: &Retention, now_ms: u64) -> Option<Self> {
        let expiry = Self {
            max_updates: retention.max_updates,
            max_bytes: retention.max_bytes,
            min_time_ms: retention.max_age.map(|age| {
                now_ms.saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX))
            }),
        };
        let limited = expiry.max_updates.is_some()
            || expiry.max_bytes.is_some()
            || expiry.min_time_ms.is_some();
        limited.then_some(expiry)
    }

    /// Whether the oldest retained update, accepted at `time_ms`, must go while the store holds
    /// `count` updates totalling `bytes`. Age is only tested on the oldest: the log is in
    /// acceptance order, so trimming stops at the first update young enough.
    pub(super) fn expired(&self, count: u64, bytes: u64, time_ms: u64) -> bool {
        self.max_updates.is_some_and(|max| count > max)
            || self.max_bytes.is_some_and(|max| bytes > max)
            || self.min_time_ms.is_some_and(|min| time_ms < min)
    }
}
