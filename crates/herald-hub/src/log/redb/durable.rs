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
//!
//! There are two log files. When the one appends go to is full, appends move on to the other
//! (empty) one at once, and the checkpoint of the full one runs on a thread of its own
//! ("herald-redb-checkpoint"): its durable redb commit takes milliseconds, and appends no longer
//! wait for it. The full file is emptied only after that commit, which covers every record in it
//! (they were all settled or waiting before the switch, and the checkpoint settles what waits
//! first). Reopening replays the records of both files in position order.

use std::path::Path;
use std::sync::mpsc::{self, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;

use redb::{Database, Durability, ReadableDatabase};

use super::landing::Landing;
use super::settle::{SettleHandle, SettlerThread};
use super::wal::{Wal, CHECKPOINT_BYTES};
use super::{decode, meta_value, store_error, Row, BYTES, IDS, LAST_POSITION, META, UPDATES};
use crate::log::StoreError;
use crate::update::Position;

pub(super) struct WriteSide {
    db: Arc<Database>,
    /// The log appends go to.
    wal: Wal,
    /// The other log file while no checkpoint of it runs: empty, or holding only records redb
    /// has (or, after a failed checkpoint, records a later checkpoint will cover).
    spare: Option<Wal>,
    /// Whether the other file is with the checkpoint thread.
    retiring: bool,
    /// The thread that checkpoints a full log file.
    checkpointer: Checkpointer,
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
        wal_paths: [&Path; 2],
        landing: Landing,
    ) -> Result<Self, StoreError> {
        let [wal_path, spare_path] = wal_paths;
        let opening = |path: &Path| {
            let path = path.display().to_string();
            move |e: std::io::Error| StoreError::Open(format!("{path}: {e}"))
        };
        let (wal, mut records) = Wal::open(wal_path).map_err(opening(wal_path))?;
        let (spare, more) = Wal::open(spare_path).map_err(opening(spare_path))?;
        // Either file may hold the older records: replay both in position order.
        records.extend(more);
        records.sort_by_key(|r| r.first);
        let last = {
            let txn = db.begin_read().map_err(store_error)?;
            let meta = txn.open_table(META).map_err(store_error)?;
            meta_value(&meta, LAST_POSITION)?
        };
        let settler = SettlerThread::start(Arc::clone(&db), landing.clone())
            .map_err(|e| StoreError::Open(format!("cannot start the settling thread: {e}")))?;
        let checkpointer = Checkpointer::launch(Arc::clone(&db), settler.handle())
            .map_err(|e| StoreError::Open(format!("cannot start the checkpoint thread: {e}")))?;
        let mut side = Self {
            db,
            wal,
            spare: Some(spare),
            retiring: false,
            checkpointer,
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
        side.wal.clear().map_err(opening(wal_path))?;
        if let Some(spare) = side.spare.as_mut() {
            spare.clear().map_err(opening(spare_path))?;
        }
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
        if self.wal.len() >= CHECKPOINT_BYTES && self.start_checkpoint() {
            return Ok(());
        }
        if waiting >= SETTLE_ROWS {
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

    /// The log appends go to is full: appends move on to the other file, and this one is
    /// checkpointed on the checkpoint thread. Returns whether a checkpoint started (or ran here).
    /// Returns false while the previous one still runs, unless the log has grown to four times
    /// its size meanwhile: then this waits for it, and checkpoints here.
    fn start_checkpoint(&mut self) -> bool {
        self.reclaim(false);
        let Some(spare) = self.spare.take() else {
            if self.retiring && self.wal.len() < 4 * CHECKPOINT_BYTES {
                return false;
            }
            self.checkpoint();
            return true;
        };
        let full = std::mem::replace(&mut self.wal, spare);
        match self.checkpointer.hand_over(full) {
            Ok(()) => self.retiring = true,
            Err(full) => {
                // No checkpoint thread: go back to the full file and checkpoint it here.
                self.spare = Some(std::mem::replace(&mut self.wal, full));
                self.checkpoint();
            }
        }
        true
    }

    /// Takes the other file back from the checkpoint thread once it is done (`wait`: waits for
    /// it).
    fn reclaim(&mut self, wait: bool) {
        if !self.retiring {
            return;
        }
        match self.checkpointer.done(wait) {
            Ok(wal) => {
                self.spare = Some(wal);
                self.retiring = false;
            }
            Err(TryRecvError::Empty) => {}
            Err(TryRecvError::Disconnected) => {
                // Its records stay on disk, and the next start replays what redb lacks.
                tracing::error!("the checkpoint thread has stopped; checkpoints run on the commit thread from now on");
                self.retiring = false;
            }
        }
    }

    /// Makes everything committed so far durable in redb, then empties the log (both files,
    /// after waiting for a checkpoint in progress). On failure the log keeps it all and the next
    /// checkpoint tries again.
    pub(super) fn checkpoint(&mut self) {
        self.reclaim(true);
        if !self.settle() {
            return; // the log keeps what could not be inserted
        }
        match durable_commit(&self.db) {
            Ok(()) => self.emptied_after_durable_commit(),
            Err(e) => {
                tracing::warn!(error = %e, "checkpoint failed; the write-ahead log keeps the updates")
            }
        }
    }

    /// The store is closing: a last checkpoint, then the log files are shortened to nothing
    /// (the next open preallocates them again).
    pub(super) fn close(&mut self) {
        self.checkpoint();
        for wal in std::iter::once(&mut self.wal).chain(self.spare.as_mut()) {
            if !wal.is_empty() {
                continue; // the checkpoint failed: the next start replays it
            }
            if let Err(e) = wal.release() {
                tracing::warn!(error = %e, "cannot shorten the write-ahead log");
            }
        }
    }

    /// The database, for writes that make their own durable commit (trimming); call
    /// [`WriteSide::settle`] before and [`WriteSide::emptied_after_durable_commit`] after one.
    pub(super) fn db(&self) -> &Database {
        &self.db
    }

    /// Empties the log: a durable redb commit has just written all of it (a file with the
    /// checkpoint thread is emptied there).
    pub(super) fn emptied_after_durable_commit(&mut self) {
        for wal in std::iter::once(&mut self.wal).chain(self.spare.as_mut()) {
            if wal.is_empty() {
                continue;
            }
            if let Err(e) = wal.clear() {
                // Harmless: what it holds is in redb, and reopening skips it.
                tracing::warn!(error = %e, "cannot empty the write-ahead log");
            }
        }
    }
}

/// One durable redb commit, with nothing in it: it makes every commit before it durable.
fn durable_commit(db: &Database) -> Result<(), redb::Error> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    txn.commit()?;
    Ok(())
}

/// The checkpoint thread: gets a full log file, settles what waits, makes a durable redb commit,
/// empties the file and gives it back. Dropping it ends the thread and waits for it.
#[derive(Debug)]
struct Checkpointer {
    jobs: Option<mpsc::Sender<Wal>>,
    done: mpsc::Receiver<Wal>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    fn launch(db: Arc<Database>, settle: SettleHandle) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Wal>();
        let (finished, done) = mpsc::channel::<Wal>();
        let thread = std::thread::Builder::new()
            .name("herald-redb-checkpoint".into())
            .spawn(move || {
                while let Ok(mut wal) = queue.recv() {
                    // A failed settle has warned already; the file keeps its records.
                    if settle.settle() {
                        match durable_commit(&db) {
                            Ok(()) => {
                                if let Err(e) = wal.clear() {
                                    tracing::warn!(error = %e, "cannot empty the write-ahead log");
                                }
                            }
                            Err(e) => tracing::warn!(
                                error = %e,
                                "checkpoint failed; the write-ahead log keeps the updates"
                            ),
                        }
                    }
                    if finished.send(wal).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Self {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
        })
    }

    /// Hands a full file over; gives it back if the thread is gone.
    fn hand_over(&self, wal: Wal) -> Result<(), Wal> {
        match &self.jobs {
            Some(jobs) => jobs.send(wal).map_err(|e| e.0),
            None => Err(wal),
        }
    }

    /// The file handed over, once its checkpoint is done.
    fn done(&self, wait: bool) -> Result<Wal, TryRecvError> {
        if wait {
            self.done.recv().map_err(|_| TryRecvError::Disconnected)
        } else {
            self.done.try_recv()
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::super::encoding::{encode, tests::sample};
    use super::super::{Database, UPDATES};
    use super::*;
    use redb::ReadableTable;

    /// After a crash in the middle of a checkpoint, the older records may be in either file:
    /// opening replays both in position order, then empties both.
    #[test]
    fn opening_replays_both_log_files_in_position_order() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("log.wal"), dir.path().join("log.wal2"));
        let append = |path: &Path, positions: std::ops::RangeInclusive<u64>| {
            let (mut wal, _) = Wal::open(path).unwrap();
            let values: Vec<Vec<u8>> = positions.clone().map(|p| encode(&sample(p))).collect();
            wal.append(*positions.start(), values.iter().map(Vec::as_slice))
                .unwrap();
        };
        // The second file holds the older records, the first the newer ones.
        append(&b, 1..=3);
        append(&a, 4..=6);
        let db = Arc::new(Database::create(dir.path().join("log.redb")).unwrap());
        {
            let txn = db.begin_write().unwrap();
            txn.open_table(UPDATES).unwrap();
            txn.open_table(super::super::IDS).unwrap();
            txn.open_table(META).unwrap();
            txn.commit().unwrap();
        }
        let side = WriteSide::open(Arc::clone(&db), [&a, &b], Landing::default()).unwrap();
        assert_eq!(side.last, 6);
        let txn = db.begin_read().unwrap();
        let updates = txn.open_table(UPDATES).unwrap();
        let stored: Vec<u64> = updates
            .iter()
            .unwrap()
            .map(|e| e.unwrap().0.value())
            .collect();
        assert_eq!(stored, [1, 2, 3, 4, 5, 6]);
        drop(side);
        for path in [&a, &b] {
            assert!(
                Wal::open(path).unwrap().1.is_empty(),
                "{path:?} was emptied"
            );
        }
    }
}
