//! The default store: one embedded [redb](https://docs.rs/redb) file, so history survives
//! restarts.
//!
//! Tables:
//! - `updates`: position → the update in the binary encoding below;
//! - `ids`: id → position, so [`Store::position_of`] is one index lookup;
//! - `meta`: `last_position` (kept when trimming removes that update) and `bytes` (the
//!   [`StoredUpdate::size`] total of the retained updates, for byte retention). Both are updated
//!   in the same write transaction as the updates they describe.
//!
//! Encoding of a value of `updates`, version 1 (`varint`: unsigned LEB128, at most 10 bytes;
//! `str`: a varint byte length then UTF-8 bytes):
//!
//! ```text
//! u8 version = 1 | u8 flags (1 private, 2 has event type, 4 has retry) | varint time_ms
//! | [varint retry] | str id | varint topic count, str topic… | [str event type] | str data
//! ```
//!
//! The position is the key and is not repeated. Decoding checks every length against the bytes
//! left and refuses unknown versions, unknown flags and trailing bytes with
//! [`StoreError::Corrupt`]; it never panics.
//!
//! redb is synchronous: every operation runs on tokio's blocking pool, so a commit's fsync never
//! stalls a runtime worker.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{
    Database, DatabaseError, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    Table, TableDefinition,
};

use super::memory::{check_order, size_of, Expiry, TRIM_CHUNK};
use super::{Retention, Store, StoreError};
use crate::update::{Position, StoredUpdate};

const UPDATES: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("updates");
const IDS: TableDefinition<'_, &str, u64> = TableDefinition::new("ids");
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const LAST_POSITION: &str = "last_position";
const BYTES: &str = "bytes";

/// redb's page cache limit. Its default (1 GiB) would let a long-running hub with the default
/// 1 GiB retention grow to hold its whole history in memory; the hub keeps its own recent tail,
/// so the cache mostly serves replays of older history and can stay small.
const CACHE_BYTES: usize = 64 << 20;

const FORMAT_V1: u8 = 1;
const FLAG_PRIVATE: u8 = 1;
const FLAG_TYPE: u8 = 2;
const FLAG_RETRY: u8 = 4;

/// The log's history in a redb file.
#[derive(Debug, Clone)]
pub struct RedbStore {
    // Shared with the blocking tasks; the file stays locked until the last clone is dropped.
    db: Arc<Database>,
}

/// One update of a batch, encoded on the caller's thread so the blocking task gets owned bytes.
struct Row {
    position: Position,
    id: String,
    size: u64,
    value: Vec<u8>,
}

impl RedbStore {
    /// Opens the store file at `path` (the hub passes `<data-dir>/log.redb`), creating it and its
    /// directory when missing. Fails with [`StoreError::Open`] when another process holds it.
    ///
    /// This blocks (it may recover the file after a crash): call it at startup, or from
    /// `spawn_blocking`.
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
        Ok(Self { db: Arc::new(db) })
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
        // Checked here too (against the stored last position below), so a bad batch costs no
        // transaction.
        check_order(batch, 0)?;
        let Some(newest) = batch.last().map(|u| u.position) else {
            return Ok(());
        };
        let rows: Vec<Row> = batch
            .iter()
            .map(|u| Row {
                position: u.position,
                id: u.id.clone(),
                size: size_of(u),
                value: encode(u),
            })
            .collect();
        self.run(move |db| {
            // The whole batch in one transaction with one fsync: the group commit. Returning
            // early drops the transaction, which aborts it, so no part of a failed batch is seen.
            let mut txn = db.begin_write().map_err(store_error)?;
            txn.set_durability(Durability::Immediate)
                .map_err(store_error)?;
            {
                let mut meta = txn.open_table(META).map_err(store_error)?;
                let mut updates = txn.open_table(UPDATES).map_err(store_error)?;
                let mut ids = txn.open_table(IDS).map_err(store_error)?;
                let last = meta_value(&meta, LAST_POSITION)?;
                if let Some(first) = rows.first() {
                    if first.position <= last {
                        return Err(StoreError::Io(format!(
                            "refusing an out-of-order append: position {} after position {last}",
                            first.position
                        )));
                    }
                }
                let mut added: u64 = 0;
                for row in &rows {
                    updates
                        .insert(row.position, row.value.as_slice())
                        .map_err(store_error)?;
                    // A duplicate id (which the hub should have rejected) points at the newer
                    // update.
                    ids.insert(row.id.as_str(), row.position)
                        .map_err(store_error)?;
                    added = added.saturating_add(row.size);
                }
                let bytes = meta_value(&meta, BYTES)?.saturating_add(added);
                meta.insert(BYTES, bytes).map_err(store_error)?;
                meta.insert(LAST_POSITION, newest).map_err(store_error)?;
            }
            txn.commit().map_err(store_error)
        })
        .await
    }

    async fn read_after(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<StoredUpdate>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.run(move |db| {
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
            Ok(out)
        })
        .await
    }

    async fn position_of(&self, id: &str) -> Result<Option<Position>, StoreError> {
        let id = id.to_owned();
        self.run(move |db| {
            let txn = db.begin_read().map_err(store_error)?;
            let ids = txn.open_table(IDS).map_err(store_error)?;
            let Some(position) = ids
                .get(id.as_str())
                .map_err(store_error)?
                .map(|g| g.value())
            else {
                return Ok(None);
            };
            // Trimming keeps `ids` in step, except past a damaged update whose id could not be
            // read; a second index lookup makes sure only retained updates are answered.
            let updates = txn.open_table(UPDATES).map_err(store_error)?;
            let retained = updates.get(position).map_err(store_error)?.is_some();
            Ok(retained.then_some(position))
        })
        .await
    }

    async fn last_position(&self) -> Result<Position, StoreError> {
        self.run(|db| {
            let txn = db.begin_read().map_err(store_error)?;
            let meta = txn.open_table(META).map_err(store_error)?;
            meta_value(&meta, LAST_POSITION)
        })
        .await
    }

    async fn first_position(&self) -> Result<Option<Position>, StoreError> {
        self.run(|db| {
            let txn = db.begin_read().map_err(store_error)?;
            let updates = txn.open_table(UPDATES).map_err(store_error)?;
            let first = updates.first().map_err(store_error)?;
            Ok(first.map(|(key, _)| key.value()))
        })
        .await
    }

    async fn trim(&self, retention: &Retention, now_ms: u64) -> Result<u64, StoreError> {
        let Some(expiry) = Expiry::new(retention, now_ms) else {
            return Ok(0);
        };
        self.run(move |db| {
            let txn = db.begin_write().map_err(store_error)?;
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
                // Only drop the id if it still names this update: a later duplicate owns it.
                let owner = ids.get(update.id.as_str()).map_err(store_error)?;
                if owner.map(|g| g.value()) == Some(position) {
                    ids.remove(update.id.as_str()).map_err(store_error)?;
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

/// Encodes an update (without its position, which is the key); see the module documentation.
pub(super) fn encode(update: &StoredUpdate) -> Vec<u8> {
    let mut out = Vec::with_capacity(update.size() + 16);
    out.push(FORMAT_V1);
    let mut flags = 0;
    if update.private {
        flags |= FLAG_PRIVATE;
    }
    if update.event_type.is_some() {
        flags |= FLAG_TYPE;
    }
    if update.retry.is_some() {
        flags |= FLAG_RETRY;
    }
    out.push(flags);
    put_varint(&mut out, update.time_ms);
    if let Some(retry) = update.retry {
        put_varint(&mut out, retry);
    }
    put_str(&mut out, &update.id);
    put_varint(&mut out, update.topics.len() as u64);
    for topic in &update.topics {
        put_str(&mut out, topic);
    }
    if let Some(event_type) = &update.event_type {
        put_str(&mut out, event_type);
    }
    put_str(&mut out, &update.data);
    out
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Decodes the value stored at `position`; any damage is [`StoreError::Corrupt`].
pub(super) fn decode(position: Position, bytes: &[u8]) -> Result<StoredUpdate, StoreError> {
    let mut r = Reader { rest: bytes };
    let damaged =
        |what: &str| StoreError::Corrupt(format!("update at position {position}: {what}"));
    let version = r.byte().map_err(damaged)?;
    if version != FORMAT_V1 {
        return Err(damaged(&format!("unknown format version {version}")));
    }
    decode_v1(position, &mut r).map_err(damaged)
}

fn decode_v1(position: Position, r: &mut Reader<'_>) -> Result<StoredUpdate, &'static str> {
    let flags = r.byte()?;
    if flags & !(FLAG_PRIVATE | FLAG_TYPE | FLAG_RETRY) != 0 {
        return Err("unknown flags");
    }
    let time_ms = r.varint()?;
    let retry = if flags & FLAG_RETRY != 0 {
        Some(r.varint()?)
    } else {
        None
    };
    let id = r.string()?;
    let topic_count = r.varint()?;
    // Each topic takes at least one byte, so the bytes left bound a sane capacity.
    let mut topics =
        Vec::with_capacity(usize::try_from(topic_count).map_or(0, |n| n.min(r.rest.len())));
    for _ in 0..topic_count {
        topics.push(r.string()?);
    }
    let event_type = if flags & FLAG_TYPE != 0 {
        Some(r.string()?)
    } else {
        None
    };
    let data = r.string()?;
    if !r.rest.is_empty() {
        return Err("trailing bytes");
    }
    Ok(StoredUpdate {
        position,
        id,
        topics,
        private: flags & FLAG_PRIVATE != 0,
        event_type,
        retry,
        data,
        time_ms,
    })
}

/// A cursor over an encoded update that fails instead of reading past the end.
struct Reader<'a> {
    rest: &'a [u8],
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, &'static str> {
        let (&b, rest) = self.rest.split_first().ok_or("truncated")?;
        self.rest = rest;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, &'static str> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7f);
            // The tenth byte may only carry the top bit of a u64.
            if shift == 63 && bits > 1 {
                return Err("number out of range");
            }
            value |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("number too long")
    }

    fn string(&mut self) -> Result<String, &'static str> {
        let len = self.varint()?;
        let len = usize::try_from(len)
            .ok()
            .filter(|&len| len <= self.rest.len())
            .ok_or("length beyond the end")?;
        let (s, rest) = self.rest.split_at(len);
        self.rest = rest;
        let s = std::str::from_utf8(s).map_err(|_| "text is not UTF-8")?;
        Ok(s.to_owned())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn sample(position: Position) -> StoredUpdate {
        StoredUpdate {
            position,
            id: "urn:uuid:0190b7a4-5c2e-7d41-8f3a-9b1c2d3e4f50".into(),
            topics: vec!["https://example.com/books/1".into(), "books".into()],
            private: true,
            event_type: Some("changed".into()),
            retry: Some(3_000),
            data: "{\"title\":\"Ünïcødé ✓\"}".into(),
            time_ms: 1_720_000_000_000,
        }
    }

    fn is_corrupt(result: Result<StoredUpdate, StoreError>) -> bool {
        matches!(result, Err(StoreError::Corrupt(_)))
    }

    #[test]
    fn round_trips() {
        let full = sample(7);
        let bare = StoredUpdate {
            position: 8,
            id: String::new(),
            topics: Vec::new(),
            private: false,
            event_type: None,
            retry: None,
            data: String::new(),
            time_ms: 0,
        };
        let extremes = StoredUpdate {
            position: u64::MAX,
            retry: Some(u64::MAX),
            time_ms: u64::MAX,
            data: "x".repeat(100_000),
            event_type: Some(String::new()),
            ..sample(0)
        };
        for update in [full, bare, extremes] {
            assert_eq!(decode(update.position, &encode(&update)).unwrap(), update);
        }
    }

    #[test]
    fn encoding_is_compact() {
        let update = sample(1);
        let payload = update.id.len()
            + update.topics.iter().map(String::len).sum::<usize>()
            + update.event_type.as_ref().map_or(0, String::len)
            + update.data.len();
        // version, flags, 6-byte time, 2-byte retry, 5 one-byte lengths and a topic count.
        assert_eq!(encode(&update).len(), payload + 16);
    }

    #[test]
    fn every_truncation_is_corrupt() {
        let encoded = encode(&sample(1));
        for len in 0..encoded.len() {
            assert!(
                is_corrupt(decode(1, &encoded[..len])),
                "prefix of {len} bytes"
            );
        }
    }

    #[test]
    fn damaged_bytes_are_corrupt() {
        let valid = encode(&sample(1));
        let mut trailing = valid.clone();
        trailing.push(0);
        let mut bad_utf8 = valid.clone();
        let data_start = valid.len() - sample(1).data.len();
        bad_utf8[data_start] = 0xff;
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![2, 0, 0],                                            // unknown version
            vec![FORMAT_V1, 0x08, 0],                                 // unknown flag
            [vec![FORMAT_V1, 0], vec![0xff; 11]].concat(),            // varint too long
            [vec![FORMAT_V1, 0], vec![0xff; 9], vec![0x02]].concat(), // varint beyond u64
            vec![FORMAT_V1, 0, 0, 0x7f, b'a'],                        // id length beyond the end
            [vec![FORMAT_V1, 0, 0, 0], vec![0xff; 9], vec![0x01]].concat(), // u64::MAX topics
            trailing,
            bad_utf8,
        ];
        for (i, case) in cases.into_iter().enumerate() {
            assert!(is_corrupt(decode(1, &case)), "case {i}");
        }
    }

    #[test]
    fn mutations_and_noise_never_panic() {
        let valid = encode(&sample(1));
        for i in 0..valid.len() {
            for byte in [0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff] {
                let mut damaged = valid.clone();
                damaged[i] = byte;
                let _ = decode(1, &damaged);
            }
        }
        // Deterministic noise (xorshift), version byte forced so decoding goes past the header.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 40) as usize;
            let mut noise: Vec<u8> = (0..len)
                .map(|i| (state.rotate_left(i as u32 * 8) & 0xff) as u8)
                .collect();
            if let Some(first) = noise.first_mut() {
                *first = FORMAT_V1;
            }
            let _ = decode(1, &noise);
        }
    }

    #[tokio::test]
    async fn a_damaged_value_is_reported_then_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("log.redb")).unwrap();
        store.append(&[sample(1)]).await.unwrap();
        let mut second = sample(2);
        second.id = "second".into();
        store.append(&[second.clone()]).await.unwrap();
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
}
