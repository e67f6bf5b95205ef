//! The default store: one embedded [redb](https://docs.rs/redb) file, so history survives
//! restarts.
//!
//! Tables:
//! - `updates`: position → the update, encoded as [`encoding`] describes;
//! - `ids`: id → position, so [`Store::position_of`] is one index lookup. Ids the hub generated
//!   for a local store name their own position (see `update::generated_id`) and have no entry:
//!   `position_of` reads the update at that position and compares its id instead. Files written
//!   before this indexed every id; those entries keep working;
//! - `meta`: `last_position` (kept when trimming removes that update) and `bytes` (the
//!   [`StoredUpdate::size`] total of the retained updates, for byte retention). Both are updated
//!   in the same write transaction as the updates they describe.
//!
//! Appends are made durable in a write-ahead log (`log.wal` beside the file, see [`wal`]) and
//! committed to redb without an fsync of their own; see [`durable`].
//!
//! redb is synchronous, so no runtime worker ever waits for it: writes (appends and trimming) run
//! one after the other on the store's own commit thread (see [`commit`]), reads on tokio's
//! blocking pool.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{
    Database, DatabaseError, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table,
    TableDefinition,
};

mod commit;
mod durable;
mod encoding;
mod landing;
mod settle;
mod wal;

pub(super) use encoding::{decode, encode};

use self::commit::CommitThread;
use self::durable::WriteSide;
use self::landing::Landing;
use super::memory::{check_order, size_of, Expiry, TRIM_CHUNK};
use super::{Retention, Store, StoreError};
use crate::update::{id_names_position, position_in_generated_id, Position, StoredUpdate};

const UPDATES: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("updates");
const IDS: TableDefinition<'_, &str, u64> = TableDefinition::new("ids");
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const LAST_POSITION: &str = "last_position";
const BYTES: &str = "bytes";

/// redb's page cache limit. Its default (1 GiB) would let a long-running hub with the default
/// 1 GiB retention grow to hold its whole history in memory; the hub keeps its own recent tail,
/// so the cache mostly serves replays of older history and can stay small.
const CACHE_BYTES: usize = 64 << 20;

/// The log's history in a redb file.
#[derive(Debug, Clone)]
pub struct RedbStore {
    // Shared with the blocking tasks and the commit thread; the file stays locked until the last
    // clone is dropped.
    db: Arc<Database>,
    writer: Arc<CommitThread>,
    /// Durable appends not yet in redb; every read looks here first.
    landing: Landing,
}

/// One update of a batch, encoded on the caller's thread so the commit thread gets owned bytes.
#[derive(Debug)]
struct Row {
    position: Position,
    /// The id, for the `ids` table; `None` when it names its own position (no entry needed).
    indexed_id: Option<String>,
    size: u64,
    value: Vec<u8>,
}

impl Row {
    fn new(update: &StoredUpdate, value: Vec<u8>) -> Self {
        Self {
            position: update.position,
            indexed_id: (!id_names_position(&update.id, update.position))
                .then(|| update.id.clone()),
            size: size_of(update),
            value,
        }
    }
}

impl RedbStore {
    /// Opens the store file at `path` (the hub passes `<data-dir>/log.redb`), creating it and its
    /// directory when missing, with its write-ahead log beside it (`path` with the extensions
    /// `wal` and `wal2`). Fails with [`StoreError::Open`] when another process holds it.
    ///
    /// This blocks (it may recover the file after a crash and replay the log): call it at
    /// startup, or from `spawn_blocking`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Open(format!("cannot create directory {}: {e}", dir.display()))
            })?;
        }
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| open_error(path, e))?;
        // Create the tables up front so that read transactions never meet a missing table.
        let opening = |e: redb::Error| StoreError::Open(format!("{}: {e}", path.display()));
        let txn = db.begin_write().map_err(|e| opening(e.into()))?;
        {
            txn.open_table(UPDATES).map_err(|e| opening(e.into()))?;
            txn.open_table(IDS).map_err(|e| opening(e.into()))?;
            txn.open_table(META).map_err(|e| opening(e.into()))?;
        }
        txn.commit().map_err(|e| opening(e.into()))?;
        let db = Arc::new(db);
        let landing = Landing::default();
        let side = WriteSide::open(
            Arc::clone(&db),
            [&path.with_extension("wal"), &path.with_extension("wal2")],
            landing.clone(),
        )?;
        let writer = CommitThread::start(side)
            .map_err(|e| StoreError::Open(format!("cannot start the commit thread: {e}")))?;
        Ok(Self {
            db,
            writer: Arc::new(writer),
            landing,
        })
    }

    /// Moves every durable append into redb now (tests look into redb directly).
    #[cfg(test)]
    async fn settled(&self) {
        let settled = self.writer.write(|side| Ok(side.settle())).await;
        assert!(matches!(settled, Ok(true)), "{settled:?}");
    }

    /// Runs `op` on the blocking pool.
    async fn run<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || op(&db))
            .await
            .map_err(|e| StoreError::Io(format!("store task failed: {e}")))?
    }
}

#[async_trait]
impl Store for RedbStore {
    async fn append(&self, batch: &[StoredUpdate]) -> Result<(), StoreError> {
        // Checked here too (against the last position on the commit thread), so a bad batch
        // costs no write.
        check_order(batch, 0)?;
        let rows: Vec<Row> = batch.iter().map(|u| Row::new(u, encode(u))).collect();
        // The whole batch in one record of the write-ahead log and one redb transaction: the
        // group commit.
        self.writer.write(move |side| side.append(rows)).await
    }

    async fn read_after(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<StoredUpdate>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let landing = self.landing.clone();
        self.run(move |db| {
            // The landing list first, then redb (see `landing` for why this order finds all).
            let landed = landing.read_after(after, limit)?;
            let txn = db.begin_read().map_err(store_error)?;
            let table = txn.open_table(UPDATES).map_err(store_error)?;
            let range = table
                .range::<u64>((Bound::Excluded(after), Bound::Unbounded))
                .map_err(store_error)?;
            // `limit` is the caller's page size, not a promise of that many rows.
            let mut out = Vec::with_capacity(limit.min(1024));
            for entry in range.take(limit) {
                let (key, value) = entry.map_err(store_error)?;
                out.push(decode(key.value(), value.value())?);
            }
            // The list holds the newest positions; redb may hold some of them too by now.
            let newest = out.last().map_or(after, |u| u.position);
            let room = limit.saturating_sub(out.len());
            out.extend(
                landed
                    .into_iter()
                    .filter(|u| u.position > newest)
                    .take(room),
            );
            Ok(out)
        })
        .await
    }

    async fn position_of(&self, id: &str) -> Result<Option<Position>, StoreError> {
        if let Some(position) = self.landing.position_of(id) {
            return Ok(Some(position));
        }
        let id = id.to_owned();
        self.run(move |db| {
            let txn = db.begin_read().map_err(store_error)?;
            let ids = txn.open_table(IDS).map_err(store_error)?;
            let updates = txn.open_table(UPDATES).map_err(store_error)?;
            if let Some(position) = ids.get(id.as_str()).map_err(store_error)? {
                let position = position.value();
                // Trimming keeps `ids` in step, except past a damaged update whose id could not
                // be read; a second index lookup makes sure only retained updates are answered.
                let retained = updates.get(position).map_err(store_error)?.is_some();
                return Ok(retained.then_some(position));
            }
            // Not indexed: a generated id names its update's position. Any publisher may send
            // an id of that form, so the update there must really have this id.
            let Some(position) = position_in_generated_id(&id) else {
                return Ok(None);
            };
            let Some(value) = updates.get(position).map_err(store_error)? else {
                return Ok(None);
            };
            let matches = match decode(position, value.value()) {
                Ok(update) => update.id == id,
                Err(_) => false, // a damaged update is never answered
            };
            Ok(matches.then_some(position))
        })
        .await
    }

    async fn last_position(&self) -> Result<Position, StoreError> {
        let landed = self.landing.bounds().map_or(0, |(_, last)| last);
        let stored = self
            .run(|db| {
                let txn = db.begin_read().map_err(store_error)?;
                let meta = txn.open_table(META).map_err(store_error)?;
                meta_value(&meta, LAST_POSITION)
            })
            .await?;
        Ok(stored.max(landed))
    }

    async fn first_position(&self) -> Result<Option<Position>, StoreError> {
        let landed = self.landing.bounds().map(|(first, _)| first);
        let stored = self
            .run(|db| {
                let txn = db.begin_read().map_err(store_error)?;
                let updates = txn.open_table(UPDATES).map_err(store_error)?;
                let first = updates.first().map_err(store_error)?;
                Ok(first.map(|(key, _)| key.value()))
            })
            .await?;
        Ok(stored.or(landed))
    }

    async fn trim(&self, retention: &Retention, now_ms: u64) -> Result<u64, StoreError> {
        let Some(expiry) = Expiry::new(retention, now_ms) else {
            return Ok(0);
        };
        self.writer
            .write(move |side| {
                // Retention counts what redb holds: everything durable goes in first.
                if !side.settle() {
                    return Ok(0);
                }
                // A durable commit (redb's default): it also writes every append committed
                // before it, so the write-ahead log can be emptied after it.
                let txn = side.db().begin_write().map_err(store_error)?;
                let removed = {
                    let mut updates = txn.open_table(UPDATES).map_err(store_error)?;
                    let mut ids = txn.open_table(IDS).map_err(store_error)?;
                    let mut meta = txn.open_table(META).map_err(store_error)?;
                    trim_oldest(&mut updates, &mut ids, &mut meta, &expiry)?
                };
                if removed == 0 {
                    // Nothing changed: skip the commit and its fsync.
                    txn.abort().map_err(store_error)?;
                } else {
                    txn.commit().map_err(store_error)?;
                    side.emptied_after_durable_commit();
                }
                Ok(removed)
            })
            .await
    }
}

/// Removes up to [`TRIM_CHUNK`] of the oldest updates that `expiry` condemns, with their ids,
/// and updates the byte total.
fn trim_oldest(
    updates: &mut Table<'_, u64, &[u8]>,
    ids: &mut Table<'_, &str, u64>,
    meta: &mut Table<'_, &str, u64>,
    expiry: &Expiry,
) -> Result<u64, StoreError> {
    let mut count = updates.len().map_err(store_error)?;
    let mut bytes = meta_value(meta, BYTES)?;
    let mut removed = 0;
    while removed < TRIM_CHUNK {
        let Some((position, encoded_len, decoded)) = updates
            .first()
            .map_err(store_error)?
            .map(|(k, v)| (k.value(), v.value().len(), decode(k.value(), v.value())))
        else {
            break;
        };
        match decoded {
            Ok(update) => {
                if !expiry.expired(count, bytes, update.time_ms) {
                    break;
                }
                bytes = bytes.saturating_sub(size_of(&update));
                // Only drop the id if it still names this update: a later duplicate owns it. An
                // id that names its own position has no entry (older files may have one, which
                // then stays: it points at a position that is gone, which `position_of`
                // tolerates).
                if !id_names_position(&update.id, position) {
                    let owner = ids.get(update.id.as_str()).map_err(store_error)?;
                    if owner.map(|g| g.value()) == Some(position) {
                        ids.remove(update.id.as_str()).map_err(store_error)?;
                    }
                }
            }
            Err(e) => {
                // A damaged update can never be served again (and would fail every read that
                // crosses it); being the oldest, it goes first. Its id is unreadable, so its
                // `ids` entry stays, which `position_of` tolerates.
                tracing::warn!(position, error = %e, "removing a damaged update while trimming");
                bytes = bytes.saturating_sub(u64::try_from(encoded_len).unwrap_or(u64::MAX));
            }
        }
        updates.remove(position).map_err(store_error)?;
        count = count.saturating_sub(1);
        removed += 1;
    }
    if removed > 0 {
        meta.insert(BYTES, bytes).map_err(store_error)?;
    }
    Ok(removed)
}

/// A `meta` value, 0 when absent.
fn meta_value(meta: &impl ReadableTable<&'static str, u64>, key: &str) -> Result<u64, StoreError> {
    Ok(meta.get(key).map_err(store_error)?.map_or(0, |g| g.value()))
}

/// Any redb error after opening; redb's own corruption reports stay corruption.
fn store_error(e: impl Into<redb::Error>) -> StoreError {
    match e.into() {
        redb::Error::Corrupted(message) => StoreError::Corrupt(message),
        other => StoreError::Io(other.to_string()),
    }
}

fn open_error(path: &Path, e: DatabaseError) -> StoreError {
    match e {
        DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch => {
            StoreError::Open(format!(
                "{} is locked by another process: another herald may be using this data directory",
                path.display()
            ))
        }
        other => StoreError::Open(format!("{}: {other}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::encoding::tests::sample;
    use super::encoding::FORMAT_V1;
    use super::*;

    /// An update at `position` with the id the hub would generate for it.
    fn generated(position: Position) -> StoredUpdate {
        StoredUpdate {
            id: crate::update::generated_id(position, 1_720_000_000_000),
            ..sample(position)
        }
    }

    fn indexed_ids(store: &RedbStore) -> Vec<(String, u64)> {
        let txn = store.db.begin_read().unwrap();
        let ids = txn.open_table(IDS).unwrap();
        ids.iter()
            .unwrap()
            .map(|e| {
                let (k, v) = e.unwrap();
                (k.value().to_owned(), v.value())
            })
            .collect()
    }

    #[tokio::test]
    async fn generated_ids_are_found_without_an_index_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.redb");
        let store = RedbStore::open(&path).unwrap();
        let (one, two) = (generated(1), generated(2));
        // A publisher may send an id of the generated form that names another position: it is
        // indexed like any other id.
        let mut three = sample(3);
        three.id = crate::update::generated_id(2, 1);
        let mut four = sample(4);
        four.id = "given".into();
        store.append(&[one.clone(), two.clone()]).await.unwrap();
        store.append(&[three.clone(), four.clone()]).await.unwrap();
        store.settled().await;
        assert_eq!(
            indexed_ids(&store),
            vec![("given".to_owned(), 4), (three.id.clone(), 3)]
        );
        assert_eq!(store.position_of(&one.id).await.unwrap(), Some(1));
        assert_eq!(store.position_of(&two.id).await.unwrap(), Some(2));
        assert_eq!(store.position_of(&three.id).await.unwrap(), Some(3));
        assert_eq!(store.position_of("given").await.unwrap(), Some(4));
        // The form, naming a retained position whose update has another id: not found.
        let other = crate::update::generated_id(1, 1);
        assert_ne!(other, one.id);
        assert_eq!(store.position_of(&other).await.unwrap(), None);
        // Naming a position that holds nothing.
        let beyond = crate::update::generated_id(99, 1);
        assert_eq!(store.position_of(&beyond).await.unwrap(), None);
        drop(store);
        // After a restart (the write-ahead log replayed or checkpointed) and after trimming.
        let store = RedbStore::open(&path).unwrap();
        assert_eq!(store.position_of(&two.id).await.unwrap(), Some(2));
        let keep_two = Retention {
            max_updates: Some(2),
            max_age: None,
            max_bytes: None,
        };
        assert_eq!(store.trim(&keep_two, 0).await.unwrap(), 2);
        assert_eq!(store.position_of(&one.id).await.unwrap(), None);
        assert_eq!(store.position_of(&two.id).await.unwrap(), None);
        assert_eq!(store.position_of(&three.id).await.unwrap(), Some(3));
        assert_eq!(store.position_of("given").await.unwrap(), Some(4));
    }

    #[tokio::test]
    async fn ids_indexed_by_older_versions_still_work() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("log.redb")).unwrap();
        // Written the old way: every id indexed, generated ones included.
        let (one, two) = (generated(1), generated(2));
        store.append(&[one.clone(), two.clone()]).await.unwrap();
        store.settled().await;
        {
            let txn = store.db.begin_write().unwrap();
            {
                let mut ids = txn.open_table(IDS).unwrap();
                ids.insert(one.id.as_str(), 1).unwrap();
                ids.insert(two.id.as_str(), 2).unwrap();
            }
            txn.commit().unwrap();
        }
        assert_eq!(store.position_of(&one.id).await.unwrap(), Some(1));
        let keep_one = Retention {
            max_updates: Some(1),
            max_age: None,
            max_bytes: None,
        };
        assert_eq!(store.trim(&keep_one, 0).await.unwrap(), 1);
        assert_eq!(store.position_of(&one.id).await.unwrap(), None);
        assert_eq!(store.position_of(&two.id).await.unwrap(), Some(2));
    }

    #[tokio::test]
    async fn a_damaged_value_is_reported_then_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("log.redb")).unwrap();
        store.append(&[sample(1)]).await.unwrap();
        let mut second = sample(2);
        second.id = "second".into();
        store.append(&[second.clone()]).await.unwrap();
        store.settled().await;
        {
            let txn = store.db.begin_write().unwrap();
            txn.open_table(UPDATES)
                .unwrap()
                .insert(1, [FORMAT_V1, 0x00, 0x80].as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        let err = store.read_after(0, 10).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
        assert_eq!(store.read_after(1, 10).await.unwrap(), vec![second.clone()]);
        // Trimming drops the damaged oldest update, though no limit is reached.
        let keep_all = Retention {
            max_updates: Some(100),
            max_age: None,
            max_bytes: None,
        };
        assert_eq!(store.trim(&keep_all, 0).await.unwrap(), 1);
        assert_eq!(store.read_after(0, 10).await.unwrap(), vec![second]);
        // Its id could not be read, so its `ids` entry stayed; it must not be answered.
        assert_eq!(store.position_of(&sample(1).id).await.unwrap(), None);
        assert_eq!(store.position_of("second").await.unwrap(), Some(2));
    }

    /// Appends answered but not yet inserted into redb (the landing list) are read, found by
    /// id and counted like the others, alone and together with rows already in redb.
    #[tokio::test]
    async fn appends_waiting_for_redb_are_read_like_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.redb");
        let store = RedbStore::open(&path).unwrap();
        let with_id = |p: Position| StoredUpdate {
            id: format!("id-{p}"),
            ..sample(p)
        };
        let all: Vec<StoredUpdate> = (1..=6)
            .map(|p| if p % 2 == 0 { with_id(p) } else { generated(p) })
            .collect();
        // Nothing reaches the settling thread's threshold: all of it waits in the list.
        store.append(&all[..2]).await.unwrap();
        assert_eq!(store.landing.rows(), 2);
        assert!(indexed_ids(&store).is_empty());
        assert_eq!(store.last_position().await.unwrap(), 2);
        assert_eq!(store.first_position().await.unwrap(), Some(1));
        assert_eq!(store.read_after(0, 10).await.unwrap(), all[..2].to_vec());
        assert_eq!(store.position_of("id-2").await.unwrap(), Some(2));
        assert_eq!(store.position_of(&all[0].id).await.unwrap(), Some(1));
        let other = crate::update::generated_id(1, 1);
        assert_eq!(store.position_of(&other).await.unwrap(), None);

        // Half in redb, half waiting: one read crosses from one to the other.
        store.settled().await;
        store.append(&all[2..]).await.unwrap();
        assert_eq!(store.landing.rows(), 4);
        assert_eq!(store.read_after(0, 10).await.unwrap(), all);
        assert_eq!(store.read_after(1, 3).await.unwrap(), all[1..4].to_vec());
        assert_eq!(store.read_after(3, 2).await.unwrap(), all[3..5].to_vec());
        assert_eq!(store.read_after(6, 10).await.unwrap(), vec![]);
        for u in &all {
            assert_eq!(store.position_of(&u.id).await.unwrap(), Some(u.position));
        }
        assert_eq!(store.last_position().await.unwrap(), 6);

        // An append must follow the last position exactly.
        let err = store.append(&[sample(8)]).await.unwrap_err();
        assert!(matches!(err, StoreError::Io(_)), "{err:?}");

        // Trimming settles first, so retention counts all six.
        let keep_four = Retention {
            max_updates: Some(4),
            max_age: None,
            max_bytes: None,
        };
        assert_eq!(store.trim(&keep_four, 0).await.unwrap(), 2);
        assert_eq!(store.landing.rows(), 0);
        assert_eq!(store.read_after(0, 10).await.unwrap(), all[2..].to_vec());

        // Waiting rows survive a restart through the write-ahead log.
        let more = [with_id(7), generated(8)];
        store.append(&more).await.unwrap();
        drop(store);
        let store = RedbStore::open(&path).unwrap();
        assert_eq!(store.last_position().await.unwrap(), 8);
        assert_eq!(store.position_of("id-7").await.unwrap(), Some(7));
        assert_eq!(store.read_after(6, 10).await.unwrap(), more.to_vec());
    }
}
