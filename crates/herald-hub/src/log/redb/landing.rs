//! Appends that are durable in the write-ahead log but not yet inserted into redb.
//!
//! The commit thread answers a batch as soon as its log record is on disk; the settling thread
//! inserts it into redb meanwhile (see [`super::settle`]), with every other batch waiting, in one
//! transaction. Until then the batch waits here, where readers find it: a read takes what is
//! here first, then opens its redb transaction. A batch leaves this list only after its redb
//! transaction has committed, so every durable update is either in the list at the time of the
//! look or already in redb for the transaction opened after it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{decode, Row};
use crate::log::StoreError;
use crate::update::{position_in_generated_id, Position, StoredUpdate};

/// The list, shared by the commit thread and the readers.
#[derive(Debug, Default, Clone)]
pub(super) struct Landing(Arc<Mutex<Batches>>);

#[derive(Debug, Default)]
struct Batches {
    /// In position order, without gaps.
    batches: VecDeque<Arc<Vec<Row>>>,
    /// The publisher-given ids of the rows here.
    ids: HashMap<String, Position>,
    rows: usize,
}

impl Landing {
    fn lock(&self) -> MutexGuard<'_, Batches> {
        // The data stays consistent at every step, so a panic elsewhere leaves it usable.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a batch that has just become durable; returns the number of rows now waiting.
    pub(super) fn push(&self, batch: Arc<Vec<Row>>) -> usize {
        let mut b = self.lock();
        for row in batch.iter() {
            if let Some(id) = &row.indexed_id {
                b.ids.insert(id.clone(), row.position);
            }
        }
        b.rows += batch.len();
        b.batches.push_back(batch);
        b.rows
    }

    /// The batches waiting, oldest first (shared, not removed).
    pub(super) fn waiting(&self) -> Vec<Arc<Vec<Row>>> {
        self.lock().batches.iter().cloned().collect()
    }

    /// Removes the `count` oldest batches: redb has committed them.
    pub(super) fn settled(&self, count: usize) {
        let mut b = self.lock();
        for _ in 0..count {
            let Some(batch) = b.batches.pop_front() else {
                break;
            };
            b.rows = b.rows.saturating_sub(batch.len());
            for row in batch.iter() {
                if let Some(id) = &row.indexed_id {
                    if b.ids.get(id) == Some(&row.position) {
                        b.ids.remove(id);
                    }
                }
            }
        }
    }

    /// Number of rows waiting.
    pub(super) fn rows(&self) -> usize {
        self.lock().rows
    }

    /// The lowest and highest positions waiting.
    pub(super) fn bounds(&self) -> Option<(Position, Position)> {
        let b = self.lock();
        let first = b.batches.front()?.first()?.position;
        let last = b.batches.back()?.last()?.position;
        Some((first, last))
    }

    /// Up to `limit` updates after `after`, decoded.
    pub(super) fn read_after(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<StoredUpdate>, StoreError> {
        let b = self.lock();
        let mut out = Vec::new();
        for row in b.batches.iter().flat_map(|batch| batch.iter()) {
            if out.len() >= limit {
                break;
            }
            if row.position > after {
                out.push(decode(row.position, &row.value)?);
            }
        }
        Ok(out)
    }

    /// The position of the waiting update with this id.
    pub(super) fn position_of(&self, id: &str) -> Option<Position> {
        let b = self.lock();
        if let Some(p) = b.ids.get(id) {
            return Some(*p);
        }
        // A generated id names its own position and has no entry: the row there must carry it.
        let position = position_in_generated_id(id)?;
        let row = b
            .batches
            .iter()
            .flat_map(|batch| batch.iter())
            .find(|r| r.position == position)?;
        let matches =
            row.indexed_id.is_none() && decode(row.position, &row.value).is_ok_and(|u| u.id == id);
        matches.then_some(position)
    }
}
