//! The cluster store: one [Redis Streams](https://redis.io/docs/latest/develop/data-types/streams/)
//! log shared by several hub processes.
//!
//! Keys (with the configured prefix, `herald` by default):
//! - `{prefix}:log`: the stream. The entry of position `p` has the stream id `p-0`, so positions
//!   are dense `u64`s and the stream's order is the log's order. Its one field `u` holds the
//!   update in the redb store's binary encoding (see [`super::redb`]).
//! - `{prefix}:seq`: the last position ever assigned (kept when trimming removes that update).
//! - `{prefix}:ids`: a hash id → position, so [`Store::position_of`] is one lookup and ids are
//!   unique across every process.
//! - `{prefix}:bytes`: the [`StoredUpdate::size`] total of the retained updates, for byte
//!   retention.
//!
//! An append is one Lua script per batch, so the id check, the position, the entry and the index
//! change together: Redis runs a script atomically, and with `appendonly yes` and
//! `appendfsync always` it answers only after the script's writes are fsynced.
//!
//! Two connections: publishes and reads share one multiplexed [`ConnectionManager`]; the tailer's
//! blocking `XREAD` gets its own, so a blocked read never delays a publish. Both reconnect by
//! themselves after an outage; meanwhile every call fails fast with [`StoreError::Io`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, RedisError, Script, Value};
use async_trait::async_trait;
use tokio::sync::Mutex;

use super::memory::{size_of, Expiry, TRIM_CHUNK};
use super::redb::{decode, encode};
use super::{Retention, Store, StoreError};
use crate::update::{Position, StoredUpdate};

/// The stream field holding an encoded update.
const FIELD: &str = "u";
/// How long a reconnection attempt may take before a call fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long an ordinary command may take.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest block of one `XREAD`; longer waits are cut to this.
const LONGEST_BLOCK: Duration = Duration::from_secs(10);

/// KEYS: log, seq, ids, bytes. ARGV: the highest position this process has seen, then (id,
/// encoded update, size) per update. Returns one integer per update: its position, or 0 when its
/// id is already in the log. The counter never goes below the position given: after Redis lost
/// its data, positions go on above what the hubs have delivered instead of starting again at 1.
const APPEND: &str = r"
local seen = tonumber(ARGV[1])
if tonumber(redis.call('GET', KEYS[2]) or '0') < seen then
  redis.call('SET', KEYS[2], seen)
end
local out = {}
for i = 2, #ARGV, 3 do
  local id = ARGV[i]
  if redis.call('HEXISTS', KEYS[3], id) == 1 then
    out[#out + 1] = 0
  else
    local pos = redis.call('INCR', KEYS[2])
    redis.call('XADD', KEYS[1], pos .. '-0', 'u', ARGV[i + 1])
    redis.call('HSET', KEYS[3], id, pos)
    redis.call('INCRBY', KEYS[4], ARGV[i + 2])
    out[#out + 1] = pos
  end
end
return out
";

/// KEYS: log, ids. ARGV: id. Returns the position of the retained update with this id, or 0.
const POSITION_OF: &str = r"
local pos = redis.call('HGET', KEYS[2], ARGV[1])
if not pos then return 0 end
local entry = redis.call('XRANGE', KEYS[1], pos .. '-0', pos .. '-0')
if #entry == 0 then return 0 end
return tonumber(pos)
";

/// KEYS: log, ids, bytes. ARGV: the first position kept, the bytes removed, then (id, position)
/// pairs of the removed updates. Removes every entry before the first position kept, drops the
/// ids that still name a removed update, and lowers the byte total.
const TRIM: &str = r"
local removed = redis.call('XTRIM', KEYS[1], 'MINID', ARGV[1] .. '-0')
for i = 3, #ARGV, 2 do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[2], ARGV[i])
  end
end
redis.call('DECRBY', KEYS[3], ARGV[2])
return removed
";

/// The log's history in Redis, shared by every hub process that opens the same URL and prefix.
#[derive(Clone)]
pub struct RedisStore {
    /// For publishes and ordinary reads.
    conn: ConnectionManager,
    /// For the tailer's blocking reads only; a lock keeps them one at a time.
    blocking: Arc<Mutex<ConnectionManager>>,
    /// The highest position this process has seen in the log (see [`APPEND`]).
    seen: Arc<AtomicU64>,
    /// `host:port` for error messages.
    server: String,
    log: String,
    seq: String,
    ids: String,
    bytes: String,
    append: Script,
    position_of: Script,
    trim: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("server", &self.server)
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Prepares a store on the Redis server at `url` (`redis://host:port/db`; `rediss://` needs the `redis`
    /// crate's TLS features, which this crate does not enable) under the key prefix `prefix`. Connections are made on first
    /// use, so this fails only on an invalid URL ([`StoreError::Open`]); an unreachable server
    /// shows up as [`StoreError::Io`] on the first call (for the hub: when it opens).
    pub fn open(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let client = Client::open(url)
            .map_err(|e| StoreError::Open(format!("invalid Redis URL {url:?}: {e}")))?;
        let server = client.get_connection_info().addr().to_string();
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200))
            .set_connection_timeout(Some(CONNECT_TIMEOUT));
        let lazy = |timeout: Duration| {
            ConnectionManager::new_lazy_with_config(
                client.clone(),
                config.clone().set_response_timeout(Some(timeout)),
            )
            .map_err(|e| StoreError::Open(format!("redis at {server}: {e}")))
        };
        let conn = lazy(RESPONSE_TIMEOUT)?;
        let blocking = lazy(LONGEST_BLOCK + RESPONSE_TIMEOUT)?;
        Ok(Self {
            conn,
            blocking: Arc::new(Mutex::new(blocking)),
            seen: Arc::new(AtomicU64::new(0)),
            log: format!("{prefix}:log"),
            seq: format!("{prefix}:seq"),
            ids: format!("{prefix}:ids"),
            bytes: format!("{prefix}:bytes"),
            append: Script::new(APPEND),
            position_of: Script::new(POSITION_OF),
            trim: Script::new(TRIM),
            server,
        })
    }

    fn error(&self, e: RedisError) -> StoreError {
        if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
            StoreError::Io(format!("redis at {} is unreachable: {e}", self.server))
        } else {
            StoreError::Io(format!("redis at {} failed: {e}", self.server))
        }
    }

    /// Entries of the stream, decoded, from an `XRANGE` reply.
    fn decode_entries(&self, reply: Value) -> Result<Vec<StoredUpdate>, StoreError> {
        let entries: Vec<(String, Vec<Vec<u8>>)> =
            ::redis::from_redis_value(reply).map_err(|e| self.corrupt(&format!("{e}")))?;
        entries
            .into_iter()
            .map(|(id, fields)| {
                let position = stream_position(&id)
                    .ok_or_else(|| self.corrupt(&format!("unexpected stream id {id:?}")))?;
                let value = fields
                    .chunks(2)
                    .find(|pair| pair.first().map(Vec::as_slice) == Some(FIELD.as_bytes()))
                    .and_then(|pair| pair.get(1))
                    .ok_or_else(|| self.corrupt(&format!("entry {id} has no field {FIELD:?}")))?;
                decode(position, value)
            })
            .collect()
    }

    /// Remembers that the log reached `position`.
    fn saw(&self, position: Position) {
        self.seen.fetch_max(position, Ordering::Relaxed);
    }

    /// Decodes entries and remembers the last position among them.
    fn seen_entries(&self, reply: Value) -> Result<Vec<StoredUpdate>, StoreError> {
        let updates = self.decode_entries(reply)?;
        if let Some(last) = updates.last() {
            self.saw(last.position);
        }
        Ok(updates)
    }

    fn corrupt(&self, what: &str) -> StoreError {
        StoreError::Corrupt(format!("stream {} at {}: {what}", self.log, self.server))
    }

    /// Up to `limit` entries from `start` (a stream id, `-` for the oldest), raw.
    async fn range(&self, start: &str, limit: usize) -> Result<Value, StoreError> {
        ::redis::cmd("XRANGE")
            .arg(&self.log)
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(limit.max(1))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.error(e))
    }
}

/// The position of a stream id `p-0`.
fn stream_position(id: &str) -> Option<Position> {
    let (ms, seq) = id.split_once('-')?;
    (seq == "0").then_some(())?;
    ms.parse().ok()
}

#[async_trait]
impl Store for RedisStore {
    async fn append(&self, _batch: &[StoredUpdate]) -> Result<(), StoreError> {
        Err(StoreError::Io(
            "a Redis store assigns positions itself (append_shared)".into(),
        ))
    }

    async fn read_after(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<StoredUpdate>, StoreError> {
        let start = format!("{}-0", after.saturating_add(1));
        let reply = self.range(&start, limit).await?;
        self.seen_entries(reply)
    }

    async fn position_of(&self, id: &str) -> Result<Option<Position>, StoreError> {
        let position: u64 = self
            .position_of
            .key(&self.log)
            .key(&self.ids)
            .arg(id)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.error(e))?;
        Ok((position > 0).then_some(position))
    }

    async fn last_position(&self) -> Result<Position, StoreError> {
        let last: Option<u64> = ::redis::cmd("GET")
            .arg(&self.seq)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.error(e))?;
        let last = last.unwrap_or(0);
        self.saw(last);
        Ok(last)
    }

    async fn first_position(&self) -> Result<Option<Position>, StoreError> {
        let reply = self.range("-", 1).await?;
        let entries: Vec<(String, Value)> =
            ::redis::from_redis_value(reply).map_err(|e| self.corrupt(&format!("{e}")))?;
        match entries.first() {
            None => Ok(None),
            Some((id, _)) => stream_position(id)
                .map(Some)
                .ok_or_else(|| self.corrupt(&format!("unexpected stream id {id:?}"))),
        }
    }

    async fn trim(&self, retention: &Retention, now_ms: u64) -> Result<u64, StoreError> {
        let Some(expiry) = Expiry::new(retention, now_ms) else {
            return Ok(0);
        };
        let mut conn = self.conn.clone();
        let (count, bytes): (u64, Option<u64>) = ::redis::pipe()
            .cmd("XLEN")
            .arg(&self.log)
            .cmd("GET")
            .arg(&self.bytes)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error(e))?;
        let (mut count, mut bytes) = (count, bytes.unwrap_or(0));
        if !expiry.expired(count, bytes, u64::MAX) {
            // Only age can condemn something: look at the oldest entry before reading a chunk.
            let oldest = self.decode_entries(self.range("-", 1).await?);
            match oldest.as_deref() {
                Ok([]) => return Ok(0),
                Ok([first, ..]) if !expiry.expired(count, bytes, first.time_ms) => return Ok(0),
                _ => {}
            }
        }
        let chunk = usize::try_from(TRIM_CHUNK).unwrap_or(10_000);
        let reply = self.range("-", chunk).await?;
        let entries: Vec<(String, Vec<Vec<u8>>)> =
            ::redis::from_redis_value(reply).map_err(|e| self.corrupt(&format!("{e}")))?;
        let mut removed_bytes = 0u64;
        let mut removed: Vec<(String, Position)> = Vec::new();
        let mut last_removed = None;
        for (id, fields) in &entries {
            let Some(position) = stream_position(id) else {
                break;
            };
            let value = fields
                .chunks(2)
                .find(|pair| pair.first().map(Vec::as_slice) == Some(FIELD.as_bytes()))
                .and_then(|pair| pair.get(1));
            let size = match value.map(|v| (v.len(), decode(position, v))) {
                Some((_, Ok(update))) => {
                    if !expiry.expired(count, bytes, update.time_ms) {
                        break;
                    }
                    let size = size_of(&update);
                    removed.push((update.id, position));
                    size
                }
                // A damaged entry can never be served again; being the oldest, it goes first.
                // Its id is unreadable, so its `ids` entry stays (position_of checks the entry).
                damaged => {
                    tracing::warn!(position, "removing a damaged update while trimming");
                    damaged.map_or(0, |(len, _)| u64::try_from(len).unwrap_or(u64::MAX))
                }
            };
            removed_bytes += size;
            bytes = bytes.saturating_sub(size);
            count = count.saturating_sub(1);
            last_removed = Some(position);
        }
        let Some(last) = last_removed else {
            return Ok(0);
        };
        let mut call = self.trim.key(&self.log);
        call.key(&self.ids)
            .key(&self.bytes)
            .arg(last + 1)
            .arg(removed_bytes);
        for (id, position) in &removed {
            call.arg(id).arg(position);
        }
        let n: u64 = call
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.error(e))?;
        Ok(n)
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn append_shared(
        &self,
        batch: &[StoredUpdate],
    ) -> Result<Vec<Option<Position>>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut call = self.append.key(&self.log);
        call.key(&self.seq)
            .key(&self.ids)
            .key(&self.bytes)
            .arg(self.seen.load(Ordering::Relaxed));
        for update in batch {
            call.arg(&update.id)
                .arg(encode(update))
                .arg(size_of(update));
        }
        let positions: Vec<u64> = call
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.error(e))?;
        if let Some(last) = positions.iter().max() {
            self.saw(*last);
        }
        Ok(positions
            .into_iter()
            .map(|p| (p > 0).then_some(p))
            .collect())
    }

    async fn wait_after(
        &self,
        after: Position,
        limit: usize,
        wait: Duration,
    ) -> Result<Vec<StoredUpdate>, StoreError> {
        let block = wait.min(LONGEST_BLOCK).as_millis().max(1);
        let mut conn = self.blocking.lock().await;
        let reply: Value = ::redis::cmd("XREAD")
            .arg("COUNT")
            .arg(limit.max(1))
            .arg("BLOCK")
            .arg(u64::try_from(block).unwrap_or(1))
            .arg("STREAMS")
            .arg(&self.log)
            .arg(format!("{after}-0"))
            .query_async(&mut *conn)
            .await
            .map_err(|e| self.error(e))?;
        drop(conn);
        if matches!(reply, Value::Nil) {
            return Ok(Vec::new());
        }
        // [[key, [entry…]]] (RESP2) or {key: [entry…]} (RESP3).
        let streams: Vec<(String, Value)> =
            ::redis::from_redis_value(reply).map_err(|e| self.corrupt(&format!("{e}")))?;
        match streams.into_iter().next() {
            Some((_, entries)) => self.seen_entries(entries),
            None => Ok(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_map_to_positions() {
        assert_eq!(stream_position("42-0"), Some(42));
        assert_eq!(stream_position("42-1"), None);
        assert_eq!(stream_position("x-0"), None);
        assert_eq!(stream_position("42"), None);
    }

    #[test]
    fn an_invalid_url_is_refused() {
        assert!(matches!(
            RedisStore::open("http://nope", "herald"),
            Err(StoreError::Open(_))
        ));
    }
}
