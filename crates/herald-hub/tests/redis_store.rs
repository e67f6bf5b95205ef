//! The Redis Streams store against a real `redis-server` (installed by scripts/test.sh): the
//! conformance points of a shared store, several instances on one log, trimming, an outage.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/redis_server.rs"]
mod redis_server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_hub::log::redis::RedisStore;
use herald_hub::log::{Retention, Store, StoreError};
use herald_hub::StoredUpdate;
use redis_server::RedisServer;

const DAY_MS: u64 = 24 * 3600 * 1000;
const NOW_MS: u64 = 1_750_000_000_000;

fn update(id: &str, time_ms: u64) -> StoredUpdate {
    StoredUpdate {
        position: 0,
        id: id.to_owned(),
        topics: vec![format!("https://example.com/items/{id}"), "alt".into()],
        private: id.ends_with('p'),
        event_type: Some("kind".into()),
        retry: Some(1500),
        data: format!("payload of {id}\nsecond line"),
        time_ms,
    }
}

fn batch(ids: std::ops::Range<u32>) -> Vec<StoredUpdate> {
    ids.map(|i| update(&format!("id-{i}"), NOW_MS)).collect()
}

fn positions(updates: &[StoredUpdate]) -> Vec<u64> {
    updates.iter().map(|u| u.position).collect()
}

async fn trim_all(store: &dyn Store, retention: &Retention, now_ms: u64) -> u64 {
    let mut total = 0;
    loop {
        let removed = store.trim(retention, now_ms).await.unwrap();
        if removed == 0 {
            return total;
        }
        total += removed;
    }
}

fn server() -> (RedisServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (RedisServer::start(dir.path()), dir)
}

#[tokio::test]
async fn an_empty_log_answers() {
    let (redis, _dir) = server();
    let store = RedisStore::open(&redis.url(), "t").unwrap();
    assert!(store.is_shared());
    assert_eq!(store.last_position().await.unwrap(), 0);
    assert_eq!(store.first_position().await.unwrap(), None);
    assert!(store.read_after(0, 10).await.unwrap().is_empty());
    assert_eq!(store.position_of("nope").await.unwrap(), None);
    assert_eq!(
        store
            .trim(
                &Retention {
                    max_updates: Some(0),
                    ..Retention::unlimited()
                },
                NOW_MS
            )
            .await
            .unwrap(),
        0
    );
    assert!(store.append_shared(&[]).await.unwrap().is_empty());
    assert!(store
        .wait_after(0, 10, Duration::from_millis(50))
        .await
        .unwrap()
        .is_empty());
    assert!(
        store.append(&batch(0..1)).await.is_err(),
        "positions come from the store"
    );
}

#[tokio::test]
async fn positions_are_dense_ordered_and_ids_unique() {
    let (redis, _dir) = server();
    let store = RedisStore::open(&redis.url(), "t").unwrap();
    let first = store.append_shared(&batch(0..5)).await.unwrap();
    assert_eq!(first, [Some(1), Some(2), Some(3), Some(4), Some(5)]);
    // A duplicate id (from an earlier call, or earlier in the same batch) gets no position.
    let mut second = batch(5..7);
    second.insert(1, update("id-2", NOW_MS));
    second.push(update("id-5", NOW_MS));
    let answered = store.append_shared(&second).await.unwrap();
    assert_eq!(answered, [Some(6), None, Some(7), None]);
    assert_eq!(store.last_position().await.unwrap(), 7);
    assert_eq!(store.first_position().await.unwrap(), Some(1));

    let all = store.read_after(0, 100).await.unwrap();
    assert_eq!(positions(&all), [1, 2, 3, 4, 5, 6, 7]);
    let mut expected = update("id-0", NOW_MS);
    expected.position = 1;
    assert_eq!(all[0], expected, "an update comes back exactly as stored");
    assert_eq!(positions(&store.read_after(3, 2).await.unwrap()), [4, 5]);
    assert!(store.read_after(7, 10).await.unwrap().is_empty());
    assert_eq!(store.position_of("id-6").await.unwrap(), Some(7));
    assert_eq!(store.position_of("id-2").await.unwrap(), Some(3));
}

#[tokio::test]
async fn instances_share_one_log_and_wait_wakes_on_another_ones_append() {
    let (redis, _dir) = server();
    let a = Arc::new(RedisStore::open(&redis.url(), "t").unwrap());
    let b = RedisStore::open(&redis.url(), "t").unwrap();
    let other_prefix = RedisStore::open(&redis.url(), "other").unwrap();
    a.append_shared(&batch(0..2)).await.unwrap();

    let waiter = {
        let a = a.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let got = a.wait_after(2, 10, Duration::from_secs(5)).await.unwrap();
            (got, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Publishes are not held up by the blocked read.
    let published = Instant::now();
    assert_eq!(b.append_shared(&batch(2..3)).await.unwrap(), [Some(3)]);
    assert!(published.elapsed() < Duration::from_secs(1));
    let (got, waited) = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(positions(&got), [3]);
    assert!(
        waited < Duration::from_secs(4),
        "woken by the append, not the timeout: {waited:?}"
    );

    // An id taken through one instance is taken for all.
    assert_eq!(b.append_shared(&batch(0..1)).await.unwrap(), [None]);
    assert_eq!(b.position_of("id-1").await.unwrap(), Some(2));
    // Existing entries are answered at once; an empty wait lasts about `wait`.
    assert_eq!(
        positions(&b.wait_after(0, 2, Duration::from_secs(5)).await.unwrap()),
        [1, 2]
    );
    let started = Instant::now();
    assert!(b
        .wait_after(3, 10, Duration::from_millis(300))
        .await
        .unwrap()
        .is_empty());
    assert!(started.elapsed() >= Duration::from_millis(250));
    // Another prefix is another log.
    assert_eq!(other_prefix.last_position().await.unwrap(), 0);
}

#[tokio::test]
async fn trims_by_count_age_and_bytes_and_forgets_trimmed_ids() {
    let (redis, _dir) = server();
    let store = RedisStore::open(&redis.url(), "t").unwrap();
    let mut old: Vec<StoredUpdate> = (0..10)
        .map(|i| update(&format!("old-{i}"), NOW_MS - 3 * DAY_MS))
        .collect();
    old.extend(batch(0..20));
    store.append_shared(&old).await.unwrap();

    // Age: the 10 old ones go.
    let by_age = Retention {
        max_age: Some(Duration::from_millis(2 * DAY_MS)),
        ..Retention::unlimited()
    };
    assert_eq!(trim_all(&store, &by_age, NOW_MS).await, 10);
    assert_eq!(store.first_position().await.unwrap(), Some(11));
    assert_eq!(
        store.position_of("old-3").await.unwrap(),
        None,
        "a trimmed id is forgotten"
    );
    assert_eq!(store.position_of("id-0").await.unwrap(), Some(11));
    assert_eq!(trim_all(&store, &by_age, NOW_MS).await, 0);

    // Count: keep 15.
    let by_count = Retention {
        max_updates: Some(15),
        ..Retention::unlimited()
    };
    assert_eq!(trim_all(&store, &by_count, NOW_MS).await, 5);
    assert_eq!(
        positions(&store.read_after(0, 100).await.unwrap()),
        (16..=30).collect::<Vec<_>>()
    );

    // Bytes: keep what fits in the size of 4 updates.
    let size = u64::try_from(update("id-10", NOW_MS).size()).unwrap();
    let by_bytes = Retention {
        max_bytes: Some(4 * size),
        ..Retention::unlimited()
    };
    assert_eq!(trim_all(&store, &by_bytes, NOW_MS).await, 11);
    assert_eq!(store.first_position().await.unwrap(), Some(27));

    // Trimming everything keeps the last position: positions are never reused.
    let all = Retention {
        max_updates: Some(0),
        ..Retention::unlimited()
    };
    assert_eq!(trim_all(&store, &all, NOW_MS).await, 4);
    assert_eq!(store.first_position().await.unwrap(), None);
    assert_eq!(store.last_position().await.unwrap(), 30);
    assert_eq!(
        store.append_shared(&batch(100..101)).await.unwrap(),
        [Some(31)]
    );
}

#[tokio::test]
async fn trims_in_bounded_chunks() {
    let (redis, _dir) = server();
    let store = RedisStore::open(&redis.url(), "t").unwrap();
    for chunk in 0..25 {
        store
            .append_shared(&batch(chunk * 1000..(chunk + 1) * 1000))
            .await
            .unwrap();
    }
    let keep = Retention {
        max_updates: Some(1000),
        ..Retention::unlimited()
    };
    let first = store.trim(&keep, NOW_MS).await.unwrap();
    assert_eq!(first, 10_000, "at most 10,000 per call");
    assert_eq!(trim_all(&store, &keep, NOW_MS).await, 14_000);
    assert_eq!(store.first_position().await.unwrap(), Some(24_001));
}

#[tokio::test]
async fn an_outage_fails_fast_and_the_store_recovers_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start(dir.path());
    let port = redis.port;
    let store = RedisStore::open(&redis.url(), "t").unwrap();
    store.append_shared(&batch(0..3)).await.unwrap();
    redis.kill();

    let started = Instant::now();
    let err = store.append_shared(&batch(3..4)).await.unwrap_err();
    assert!(matches!(err, StoreError::Io(_)), "{err}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert!(store
        .wait_after(3, 10, Duration::from_secs(1))
        .await
        .is_err());
    assert!(store.last_position().await.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "fails fast: {:?}",
        started.elapsed()
    );

    let _redis = RedisServer::start_on(dir.path(), port);
    let deadline = Instant::now() + Duration::from_secs(10);
    let positions = loop {
        match store.append_shared(&batch(3..4)).await {
            Ok(p) => break p,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the store did not recover: {e}"),
        }
    };
    assert_eq!(
        positions,
        [Some(4)],
        "the acknowledged appends survived the restart"
    );
    let got = store
        .wait_after(0, 10, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(got.len(), 4);
}

#[tokio::test]
async fn an_unreachable_server_is_named_in_the_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = RedisStore::open(&format!("redis://127.0.0.1:{port}/0"), "t").unwrap();
    let err = store.last_position().await.unwrap_err().to_string();
    assert!(
        err.contains(&format!("redis at 127.0.0.1:{port} is unreachable")),
        "{err}"
    );
}

#[tokio::test]
async fn after_redis_lost_its_data_positions_go_on_above_what_was_seen() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start(dir.path());
    let port = redis.port;
    let store = RedisStore::open(&redis.url(), "t").unwrap();
    store.append_shared(&batch(0..3)).await.unwrap();
    redis.kill();
    // The same server, without its data (as Redis without persistence after a restart).
    let empty = tempfile::tempdir().unwrap();
    let _redis = RedisServer::start_on(empty.path(), port);
    let deadline = Instant::now() + Duration::from_secs(10);
    let positions = loop {
        match store.append_shared(&batch(3..4)).await {
            Ok(p) => break p,
            Err(e) => {
                assert!(Instant::now() < deadline, "the store did not recover: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(positions, [Some(4)], "positions are never reused");
    assert_eq!(store.first_position().await.unwrap(), Some(4));
    assert_eq!(
        store.position_of("id-0").await.unwrap(),
        None,
        "the history is gone"
    );
}
