//! The write side of the store, owned by the commit thread: the redb database and its
//! write-ahead log (see [`super::wal`] for why there is one).
//!
//! An append is durable once its record is in the log; it is answered then, and waits in the
//! [`Landing`] list until the settling thread (see [`super::settle`]) inserts it into redb
//! without durability (in memory, visible to readers), with the other batches waiting, in one
//! transaction. A durable
//! redb commit (a checkpoint, every [`CHECKPOINT_BYTES`] of log, at every trim and when the store
//! closes) settles what waits, then writes everything committed so far, after which the log is
//! emptied.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, Durability, ReadableDatabase};

use super::landing::Landing;
use super::settle::SettlerThread;
use super::wal::{Wal, CHECKPOINT_BYTES};
use super::{decode, meta_value, store_error, Row, BYTES, IDS, LAST_POSITION, META, UPDATES};
use crate::log::StoreError;
use crate::update::Position;

pub(super) struct WriteSide {
    db: Arc<Database>,
    wal: Wal,
    /// The highest position appended, durable in the log or in redb.
    last: Position,
    /// Durable appends not yet in redb.
    landing: Landing,
    /// The thread that moves them into redb.
    settler: SettlerThread,
}

/// Rows waiting in the landing list from which an append wakes the settling thread: one redb
/// transaction for many batches costs far less than one per batch.
const WAKE_ROWS: usize = 512;
/// Rows waiting in the landing list from which an append settles them at once, even when other
/// batches are waiting to be written.
pub(super) const SETTLE_ROWS: usize = 4096;
/// Rows waiting from which appends are refused: settling has failed for that long.
const REFUSE_ROWS: usize = 64 * 1024;

impl WriteSide {
    /// Opens the log at `wal_path`, appends to redb what it holds beyond redb's last durable
    /// position, durably, and empties it.
    pub(super) fn open(
        db: Arc<Database>,
        wal_path: &Path,
        landing: Landing,
    ) -> Result<Self, StoreError> {
        let opening = |e: std::io::Error| StoreError::Open(format!("{}: {e}", wal_path.display()));
        let (wal, records) = Wal::open(wal_path).map_err(opening)?;
        let last = {
            let txn = db.begin_read().map_err(store_error)?;
            let meta = txn.open_table(META).map_err(store_error)?;
            meta_value(&meta, LAST_POSITION)?
        };
        let settler = SettlerThread::start(Arc::clone(&db), landing.clone())
            .map_err(|e| StoreError::Open(format!("cannot start the settling thread: {e}")))?;
        let mut side = Self {
            db,
            wal,
            last,
            landing,
            settler,
        };
        let mut rows = Vec::new();
        let mut next = last + 1;
        'records: for record in records {
            for (position, value) in (record.first..).zip(record.values) {
                if position < next {
                    continue; // made durable in redb before the log was emptied
                }
                if position > next {
                    tracing::warn!(
                        position,
                        expected = next,
                        "the write-ahead log skips positions; ignoring it from here"
                    );
                    break 'records;
                }
                let update = decode(position, &value)?;
                rows.push(Row::new(&update, value));
                next += 1;
            }
        }
        if !rows.is_empty() {
            let count = rows.len();
            insert(&side.db, &[Arc::new(rows)], Durability::Immediate)?;
            side.last = next - 1;
            tracing::info!(
                count,
                last = side.last,
                "recovered updates from the write-ahead log"
            );
        }
        side.wal.clear().map_err(opening)?;
        Ok(side)
    }

    /// Appends a batch: durable in the log, and visible to readers in the landing list. On error
    /// none of it is visible, and none of it comes back after a restart.
    pub(super) fn append(&mut self, rows: Vec<Row>) -> Result<(), StoreError> {
        let (Some(first), Some(newest)) = (rows.first(), rows.last()) else {
            return Ok(());
        };
        let newest = newest.position;
        if first.position != self.last + 1 {
            return Err(StoreError::Io(format!(
                "refusing an out-of-order append: position {} after position {}",
                first.position, self.last
            )));
        }
        if self.landing.rows() >= REFUSE_ROWS {
            return Err(StoreError::Io(
                "the store cannot insert into its file (see the earlier warnings); refusing appends"
                    .into(),
            ));
        }
        self.wal
            .append(first.position, rows.iter().map(|r| r.value.as_slice()))
            .map_err(|e| StoreError::Io(format!("writing the write-ahead log: {e}")))?;
        self.last = newest;
        let waiting = self.landing.push(Arc::new(rows));
        if self.wal.len() >= CHECKPOINT_BYTES {
            self.checkpoint();
        } else if waiting >= SETTLE_ROWS {
            // The settling thread falls behind: wait for it here rather than let the list grow.
            self.settle();
        } else if waiting >= WAKE_ROWS {
            self.settler.wake();
        }
        Ok(())
    }

    /// Moves every waiting batch into redb now (see [`super::settle`]). Returns whether nothing
    /// waits.
    pub(super) fn settle(&mut self) -> bool {
        self.settler.settle()
    }

    /// Makes everything committed so far durable in redb, then empties the log. On failure the
    /// log keeps it all and the next checkpoint tries again.
    pub(super) fn checkpoint(&mut self) {
        if !self.settle() {
            return; // the log keeps what could not be inserted
        }
        let committed = (|| -> Result<(), redb::Error> {
            let mut txn = self.db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            txn.commit()?;
            Ok(())
        })();
        match committed {
            Ok(()) => self.emptied_after_durable_commit(),
            Err(e) => {
                tracing::warn!(error = %e, "checkpoint failed; the write-ahead log keeps the updates")
            }
        }
    }

    /// The database, for writes that make their own durable commit (trimming); call
    /// [`WriteSide::settle`] before and [`WriteSide::emptied_after_durable_commit`] after one.
    pub(super) fn db(&self) -> &Database {
        &self.db
    }

    /// Empties the log: a durable redb commit has just written all of it.
    pub(super) fn emptied_after_durable_commit(&mut self) {
        if let Err(e) = self.wal.clear() {
            // Harmless: what it holds is in redb, and reopening skips it.
            tracing::warn!(error = %e, "cannot empty the write-ahead log");
        }
    }
}

/// Inserts the rows, their ids and the new totals in one transaction. Returning early drops the
/// transaction, which aborts it, so no part of a failed batch is seen.
pub(super) fn insert(
    db: &Database,
    batches: &[Arc<Vec<Row>>],
    durability: Durability,
) -> Result<(), StoreError> {
    let Some(newest) = batches
        .iter()
        .rev()
        .find_map(|b| b.last())
        .map(|r| r.position)
    else {
        return Ok(());
    };
    let mut txn = db.begin_write().map_err(store_error)?;
    txn.set_durability(durability).map_err(store_error)?;
    {
        let mut meta = txn.open_table(META).map_err(store_error)?;
        let mut updates = txn.open_table(UPDATES).map_err(store_error)?;
        let mut ids = txn.open_table(IDS).map_err(store_error)?;
        let mut added: u64 = 0;
        for row in batches.iter().flat_map(|b| b.iter()) {
            updates
                .insert(row.position, row.value.as_slice())
                .map_err(store_error)?;
            // An id that names its own position is found without an entry (see
            // `RedbStore::position_of`). A duplicate id (which the hub should have rejected)
            // points at the newer update.
            if let Some(id) = &row.indexed_id {
                ids.insert(id.as_str(), row.position).map_err(store_error)?;
            }
            added = added.saturating_add(row.size);
        }
        let bytes = meta_value(&meta, BYTES)?.saturating_add(added);
        meta.insert(BYTES, bytes).map_err(store_error)?;
        meta.insert(LAST_POSITION, newest).map_err(store_error)?;
    }
    txn.commit().map_err(store_error)
}
