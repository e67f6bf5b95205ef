//! Conformance tests run against every `Store`, plus redb-specific persistence and locking tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use herald_hub::log::{memory::MemoryStore, redb::RedbStore, Retention, Store, StoreError};
use herald_hub::StoredUpdate;

const DAY_MS: u64 = 24 * 3600 * 1000;
const NOW_MS: u64 = 1_750_000_000_000;

fn update(position: u64) -> StoredUpdate {
    StoredUpdate {
        position,
        id: format!("id-{position}"),
        topics: vec![format!("https://example.com/items/{position}")],
        private: false,
        event_type: None,
        retry: None,
        data: format!("payload {position}"),
        time_ms: NOW_MS,
    }
}

fn updates(positions: impl IntoIterator<Item = u64>) -> Vec<StoredUpdate> {
    positions.into_iter().map(update).collect()
}

fn positions(updates: &[StoredUpdate]) -> Vec<u64> {
    updates.iter().map(|u| u.position).collect()
}

fn only_count(max_updates: u64) -> Retention {
    Retention {
        max_updates: Some(max_updates),
        ..Retention::unlimited()
    }
}

/// Calls `trim` until it removes nothing, as the hub does; returns the total removed.
async fn trim_all(store: &dyn Store, retention: &Retention) -> u64 {
    let mut total = 0;
    loop {
        let removed = store.trim(retention, NOW_MS).await.unwrap();
        if removed == 0 {
            return total;
        }
        total += removed;
    }
}

async fn empty_store_answers(store: &dyn Store) {
    assert_eq!(store.last_position().await.unwrap(), 0);
    assert_eq!(store.first_position().await.unwrap(), None);
    assert!(store.read_after(0, 100).await.unwrap().is_empty());
    assert_eq!(store.position_of("nope").await.unwrap(), None);
    assert_eq!(store.trim(&only_count(0), NOW_MS).await.unwrap(), 0);
    store.append(&[]).await.unwrap();
    assert_eq!(store.last_position().await.unwrap(), 0);
}

async fn appends_and_reads_in_order(store: &dyn Store) {
    let mut rich = update(1);
    rich.topics.push("alternate".into());
    rich.private = true;
    rich.event_type = Some("changed".into());
    rich.retry = Some(2_500);
    rich.data = "multi\nline ✓".into();
    store.append(&[rich.clone()]).await.unwrap();
    store.append(&updates(2..=3)).await.unwrap();
    store.append(&updates(4..=10)).await.unwrap();

    let all = store.read_after(0, 100).await.unwrap();
    assert_eq!(positions(&all), (1..=10).collect::<Vec<_>>());
    assert_eq!(all[0], rich);
    assert_eq!(all[4], update(5));
    assert_eq!(positions(&store.read_after(3, 2).await.unwrap()), [4, 5]);
    assert_eq!(positions(&store.read_after(8, 100).await.unwrap()), [9, 10]);
    assert!(store.read_after(10, 100).await.unwrap().is_empty());
    assert!(store.read_after(u64::MAX, 100).await.unwrap().is_empty());
    assert!(store.read_after(0, 0).await.unwrap().is_empty());
    assert_eq!(store.last_position().await.unwrap(), 10);
    assert_eq!(store.first_position().await.unwrap(), Some(1));
}

async fn finds_positions_by_id(store: &dyn Store) {
    store.append(&updates(1..=5)).await.unwrap();
    assert_eq!(store.position_of("id-1").await.unwrap(), Some(1));
    assert_eq!(store.position_of("id-4").await.unwrap(), Some(4));
    assert_eq!(store.position_of("id-6").await.unwrap(), None);
    assert_eq!(store.position_of("").await.unwrap(), None);
}

async fn refuses_out_of_order_appends(store: &dyn Store) {
    assert!(store.append(&[update(0)]).await.is_err());
    store.append(&updates(1..=3)).await.unwrap();
    assert!(store.append(&[update(3)]).await.is_err());
    assert!(store.append(&[update(5), update(4)]).await.is_err());
    // A refused batch leaves nothing behind, not even its valid part.
    assert!(store.append(&[update(4), update(2)]).await.is_err());
    assert_eq!(store.last_position().await.unwrap(), 3);
    assert_eq!(
        positions(&store.read_after(0, 10).await.unwrap()),
        [1, 2, 3]
    );
    assert_eq!(store.position_of("id-4").await.unwrap(), None);
}

async fn duplicate_ids_point_at_the_newest(store: &dyn Store) {
    let mut first = update(1);
    first.id = "same".into();
    let mut second = update(2);
    second.id = "same".into();
    store.append(&[first]).await.unwrap();
    store.append(&[second]).await.unwrap();
    assert_eq!(store.position_of("same").await.unwrap(), Some(2));
    // Trimming the older one must not drop the id the newer one owns.
    assert_eq!(trim_all(store, &only_count(1)).await, 1);
    assert_eq!(store.position_of("same").await.unwrap(), Some(2));
}

async fn trims_by_count(store: &dyn Store) {
    store.append(&updates(1..=25)).await.unwrap();
    assert_eq!(trim_all(store, &only_count(10)).await, 15);
    assert_eq!(store.first_position().await.unwrap(), Some(16));
    assert_eq!(store.last_position().await.unwrap(), 25);
    assert_eq!(
        positions(&store.read_after(0, 100).await.unwrap()),
        (16..=25).collect::<Vec<_>>()
    );
    assert_eq!(store.position_of("id-15").await.unwrap(), None);
    assert_eq!(store.position_of("id-16").await.unwrap(), Some(16));
    assert_eq!(store.trim(&only_count(10), NOW_MS).await.unwrap(), 0);
}

async fn trims_by_bytes(store: &dyn Store) {
    let batch: Vec<StoredUpdate> = (1..=10)
        .map(|p| StoredUpdate {
            data: "x".repeat(p as usize * 10),
            ..update(p)
        })
        .collect();
    store.append(&batch).await.unwrap();
    let newest_three: usize = batch[7..].iter().map(StoredUpdate::size).sum();
    let retention = Retention {
        max_bytes: Some(newest_three as u64),
        ..Retention::unlimited()
    };
    assert_eq!(trim_all(store, &retention).await, 7);
    assert_eq!(
        positions(&store.read_after(0, 100).await.unwrap()),
        [8, 9, 10]
    );
    assert_eq!(store.position_of("id-7").await.unwrap(), None);
    // One byte less than the newest three: one more goes.
    let retention = Retention {
        max_bytes: Some(newest_three as u64 - 1),
        ..Retention::unlimited()
    };
    assert_eq!(trim_all(store, &retention).await, 1);
    assert_eq!(store.first_position().await.unwrap(), Some(9));
    // The byte total follows appends after a trim too.
    store.append(&[update(11)]).await.unwrap();
    let retention = Retention {
        max_bytes: Some(update(11).size() as u64),
        ..Retention::unlimited()
    };
    assert_eq!(trim_all(store, &retention).await, 2);
    assert_eq!(positions(&store.read_after(0, 100).await.unwrap()), [11]);
}

async fn trims_by_age(store: &dyn Store) {
    let batch: Vec<StoredUpdate> = (1..=8)
        .map(|p| StoredUpdate {
            time_ms: if p <= 5 {
                NOW_MS - 10 * DAY_MS
            } else {
                NOW_MS - DAY_MS
            },
            ..update(p)
        })
        .collect();
    store.append(&batch).await.unwrap();
    let week = Retention {
        max_age: Some(Duration::from_millis(7 * DAY_MS)),
        ..Retention::unlimited()
    };
    assert_eq!(trim_all(store, &week).await, 5);
    assert_eq!(store.first_position().await.unwrap(), Some(6));
    assert_eq!(store.position_of("id-5").await.unwrap(), None);
    assert_eq!(store.position_of("id-6").await.unwrap(), Some(6));
    // Exactly max_age old is still kept.
    let day = Retention {
        max_age: Some(Duration::from_millis(DAY_MS)),
        ..Retention::unlimited()
    };
    assert_eq!(trim_all(store, &day).await, 0);
    // The default retention (7 days, a million updates, 1 GiB) keeps the rest.
    assert_eq!(trim_all(store, &Retention::default()).await, 0);
}

async fn last_position_survives_trimming_everything(store: &dyn Store) {
    store.append(&updates(1..=8)).await.unwrap();
    assert_eq!(trim_all(store, &only_count(0)).await, 8);
    assert_eq!(store.first_position().await.unwrap(), None);
    assert_eq!(store.last_position().await.unwrap(), 8);
    assert!(store.read_after(0, 100).await.unwrap().is_empty());
    assert!(store.append(&[update(8)]).await.is_err());
    store.append(&[update(9)]).await.unwrap();
    assert_eq!(positions(&store.read_after(0, 100).await.unwrap()), [9]);
    assert_eq!(store.first_position().await.unwrap(), Some(9));
}

async fn trims_in_bounded_chunks(store: &dyn Store) {
    for start in (1..=25_000).step_by(1_000) {
        store.append(&updates(start..start + 1_000)).await.unwrap();
    }
    let first = store.trim(&only_count(0), NOW_MS).await.unwrap();
    assert!(first > 0 && first <= 10_000, "first call removed {first}");
    assert_eq!(first + trim_all(store, &only_count(0)).await, 25_000);
    assert_eq!(store.first_position().await.unwrap(), None);
}

async fn unlimited_retention_trims_nothing(store: &dyn Store) {
    store.append(&updates(1..=5)).await.unwrap();
    assert_eq!(
        store.trim(&Retention::unlimited(), NOW_MS).await.unwrap(),
        0
    );
    assert_eq!(store.first_position().await.unwrap(), Some(1));
}

/// Runs each conformance test on a fresh store from `make`.
macro_rules! conformance {
    ($module:ident, $make:expr) => {
        mod $module {
            use super::*;

            conformance!(@tests $make;
                empty_store_answers,
                appends_and_reads_in_order,
                finds_positions_by_id,
                refuses_out_of_order_appends,
                duplicate_ids_point_at_the_newest,
                trims_by_count,
                trims_by_bytes,
                trims_by_age,
                last_position_survives_trimming_everything,
                trims_in_bounded_chunks,
                unlimited_retention_trims_nothing,
            );
        }
    };
    (@tests $make:expr; $($test:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $test() {
                let (store, _dir) = $make;
                super::$test(&store).await;
            }
        )*
    };
}

fn memory() -> (MemoryStore, ()) {
    (MemoryStore::new(), ())
}

fn redb() -> (RedbStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("log.redb")).unwrap();
    (store, dir)
}

conformance!(memory_store, memory());
conformance!(redb_store, redb());

#[tokio::test]
async fn redb_data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data").join("log.redb");
    let written = updates(1..=20);
    {
        let store = RedbStore::open(&path).unwrap();
        store.append(&written[..10]).await.unwrap();
        store.append(&written[10..]).await.unwrap();
        assert_eq!(store.trim(&only_count(15), NOW_MS).await.unwrap(), 5);
    }
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(store.read_after(0, 100).await.unwrap(), written[5..]);
    assert_eq!(store.last_position().await.unwrap(), 20);
    assert_eq!(store.first_position().await.unwrap(), Some(6));
    assert_eq!(store.position_of("id-12").await.unwrap(), Some(12));
    assert_eq!(store.position_of("id-3").await.unwrap(), None);
    // The byte total was persisted too: trimming to the newest update's size leaves only it.
    let retention = Retention {
        max_bytes: Some(update(20).size() as u64),
        ..Retention::unlimited()
    };
    assert_eq!(trim_all(&store, &retention).await, 14);
    drop(store);
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(positions(&store.read_after(0, 100).await.unwrap()), [20]);
    assert_eq!(store.last_position().await.unwrap(), 20);
}

/// Whether a write-ahead log file holds a record: the log is kept at a fixed size, zero-filled,
/// and an emptied one starts with a zeroed record header.
fn holds_records(path: &std::path::Path) -> bool {
    let bytes = std::fs::read(path).unwrap_or_default();
    bytes.iter().take(8).any(|&b| b != 0)
}

/// A crash right after some appends: redb has them only in memory (committed without an fsync of
/// their own), the write-ahead log has them on disk. The files as they are on disk at that moment
/// (copied while the store is open) open to exactly the appended updates.
#[tokio::test]
async fn redb_recovers_appends_from_its_write_ahead_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("log.redb")).unwrap();
    store.append(&updates(1..=3)).await.unwrap();
    store.append(&updates(4..=10)).await.unwrap();
    let wal = dir.path().join("log.wal");
    assert!(holds_records(&wal), "the appends are in the log");
    let crashed = tempfile::tempdir().unwrap();
    for name in ["log.redb", "log.wal"] {
        std::fs::copy(dir.path().join(name), crashed.path().join(name)).unwrap();
    }
    drop(store);
    // Closing checkpoints: nothing left to replay.
    assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0);

    let recovered = RedbStore::open(&crashed.path().join("log.redb")).unwrap();
    assert_eq!(
        positions(&recovered.read_after(0, 100).await.unwrap()),
        (1..=10).collect::<Vec<_>>()
    );
    assert_eq!(recovered.read_after(6, 1).await.unwrap(), updates(7..=7));
    assert_eq!(recovered.last_position().await.unwrap(), 10);
    assert_eq!(recovered.position_of("id-7").await.unwrap(), Some(7));
    assert!(
        !holds_records(&crashed.path().join("log.wal")),
        "recovery made the updates durable in redb and emptied the log"
    );
    recovered.append(&updates(11..=12)).await.unwrap();
    assert!(recovered.append(&updates(12..=12)).await.is_err());
    assert_eq!(recovered.last_position().await.unwrap(), 12);
}

/// Appends that fill the write-ahead log several times over: each time, appends go on in the
/// other log file while the full one is checkpointed on a thread of its own. Neither file grows
/// without bound, both are used, and everything is there after reopening.
#[tokio::test]
async fn redb_switches_log_files_and_keeps_every_update() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.redb");
    let store = RedbStore::open(&path).unwrap();
    // About 4 KiB each: 24 batches of 64 are ~6 MiB of log, three times the checkpoint size.
    let big = |p: u64| StoredUpdate {
        data: format!("{p:>4096}"),
        ..update(p)
    };
    let size = |name: &str| {
        std::fs::metadata(dir.path().join(name))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    let (mut largest, mut second_used) = (0, false);
    let mut next = 1;
    for _ in 0..24 {
        let batch: Vec<StoredUpdate> = (next..next + 64).map(big).collect();
        store.append(&batch).await.unwrap();
        next += 64;
        largest = largest.max(size("log.wal")).max(size("log.wal2"));
        second_used |= holds_records(&dir.path().join("log.wal2"));
    }
    assert!(second_used, "appends moved on to the second log file");
    assert!(largest < 9 << 20, "a log file grew to {largest} bytes");
    let last = next - 1;
    assert_eq!(store.last_position().await.unwrap(), last);
    drop(store);
    assert_eq!(
        size("log.wal") + size("log.wal2"),
        0,
        "closing checkpoints both"
    );
    let store = RedbStore::open(&path).unwrap();
    let read = store.read_after(0, 10_000).await.unwrap();
    assert_eq!(positions(&read), (1..=last).collect::<Vec<_>>());
    assert_eq!(read[700], big(701));
    assert_eq!(store.position_of("id-1000").await.unwrap(), Some(1000));
}

#[tokio::test]
async fn redb_second_open_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.redb");
    let first = RedbStore::open(&path).unwrap();
    match RedbStore::open(&path) {
        Err(StoreError::Open(message)) => {
            assert!(
                message.contains("another herald may be using this data directory"),
                "{message}"
            );
        }
        other => panic!("expected StoreError::Open, got {other:?}"),
    }
    // The first handle still works, and the file opens again once it is closed.
    first.append(&[update(1)]).await.unwrap();
    drop(first);
    let again = RedbStore::open(&path).unwrap();
    assert_eq!(again.last_position().await.unwrap(), 1);
}

#[test]
fn redb_open_reports_a_bad_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let err = RedbStore::open(&file.join("log.redb")).unwrap_err();
    assert!(matches!(err, StoreError::Open(_)), "{err:?}");
}

/// Append throughput into a redb file, by batch size. Not a test: run with
/// `cargo test --release -p herald-hub --test store -- --ignored --nocapture`.
/// `HERALD_STORE_BENCH_N` sets the number of updates (default 100,000), `HERALD_STORE_BENCH_BATCHES`
/// the batch sizes (default `512,64,1`).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "measurement, run by hand with --release"]
async fn redb_append_throughput() {
    let total: u64 = std::env::var("HERALD_STORE_BENCH_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let batch_sizes: Vec<u64> = std::env::var("HERALD_STORE_BENCH_BATCHES")
        .ok()
        .map(|list| {
            list.split(',')
                .filter_map(|n| n.trim().parse().ok())
                .collect()
        })
        .unwrap_or_else(|| vec![512, 64, 1]);
    for batch_size in batch_sizes {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("log.redb")).unwrap();
        let rate = measure(&store, total, batch_size).await;
        println!(
            "redb   batch {batch_size:>3}: {rate:>9.0} updates/s ({total} updates of ~100 bytes)"
        );
        report_file_size(&dir.path().join("log.redb"));
    }
    let rate = measure(&MemoryStore::new(), total, 64).await;
    println!("memory batch  64: {rate:>9.0} updates/s");
}

async fn measure(store: &dyn Store, total: u64, batch_size: u64) -> f64 {
    let started = Instant::now();
    let mut next = 1;
    while next <= total {
        let end = (next + batch_size).min(total + 1);
        let batch: Vec<StoredUpdate> = (next..end)
            .map(|p| StoredUpdate {
                // ~100 bytes as counted by `size`: a uuid-sized id, a topic, a short payload.
                id: format!("urn:uuid:0190b7a4-5c2e-7d41-8f3a-{p:012}"),
                topics: vec!["https://example.com/t".into()],
                data: format!("{{\"n\":{p}}}"),
                ..update(p)
            })
            .collect();
        store.append(&batch).await.unwrap();
        next = end;
    }
    total as f64 / started.elapsed().as_secs_f64()
}

fn report_file_size(path: &Path) {
    if let Ok(meta) = std::fs::metadata(path) {
        println!("               file size {} KiB", meta.len() / 1024);
    }
}
