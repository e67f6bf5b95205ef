//! The writer's group commit against a store that can be held mid-commit and made to fail:
//! publishes arriving during a commit share the next one, a failed commit refuses exactly its own
//! publishes, positions stay gap-free and subscribers see every accepted update once, in order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use herald_hub::log::memory::MemoryStore;
use herald_hub::log::{Retention, Store, StoreError};
use herald_hub::selector::Selector;
use herald_hub::{
    Hub, HubConfig, Position, PublishError, Published, StoredUpdate, SubscribeRequest,
    Subscription, Update,
};
use herald_sse::{Decoded, Decoder, EventId};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

const LIMIT: Duration = Duration::from_secs(10);

/// A memory store whose appends can be held, one at a time, and failed on demand.
#[derive(Default)]
struct GatedStore {
    inner: MemoryStore,
    control: Mutex<Control>,
}

#[derive(Default)]
struct Control {
    /// When set, the next append reports that it started and waits for the verdict: `true`
    /// stores the batch, `false` fails it.
    hold: Option<mpsc::UnboundedSender<(Vec<Position>, oneshot::Sender<bool>)>>,
    /// Positions of every append call, in call order, failed ones included.
    calls: Vec<Vec<Position>>,
}

impl GatedStore {
    /// Holds the next append; returns where it reports (its positions and a verdict channel).
    fn hold_next(&self) -> mpsc::UnboundedReceiver<(Vec<Position>, oneshot::Sender<bool>)> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.control.lock().unwrap().hold = Some(tx);
        rx
    }

    fn calls(&self) -> Vec<Vec<Position>> {
        self.control.lock().unwrap().calls.clone()
    }
}

#[async_trait]
impl Store for GatedStore {
    async fn append(&self, batch: &[StoredUpdate]) -> Result<(), StoreError> {
        let positions: Vec<Position> = batch.iter().map(|u| u.position).collect();
        let hold = {
            let mut control = self.control.lock().unwrap();
            control.calls.push(positions.clone());
            control.hold.take()
        };
        if let Some(report) = hold {
            let (verdict, wait) = oneshot::channel();
            report.send((positions, verdict)).unwrap();
            if !wait.await.unwrap() {
                return Err(StoreError::Io("disk on fire".into()));
            }
        }
        self.inner.append(batch).await
    }

    async fn read_after(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<StoredUpdate>, StoreError> {
        self.inner.read_after(after, limit).await
    }

    async fn position_of(&self, id: &str) -> Result<Option<Position>, StoreError> {
        self.inner.position_of(id).await
    }

    async fn last_position(&self) -> Result<Position, StoreError> {
        self.inner.last_position().await
    }

    async fn first_position(&self) -> Result<Option<Position>, StoreError> {
        self.inner.first_position().await
    }

    async fn trim(&self, retention: &Retention, now_ms: u64) -> Result<u64, StoreError> {
        self.inner.trim(retention, now_ms).await
    }
}

async fn hub(store: &Arc<GatedStore>) -> Hub {
    let store: Arc<dyn Store> = store.clone();
    Hub::open(HubConfig::default(), store).await.unwrap()
}

async fn subscribe(hub: &Hub) -> Subscription {
    hub.subscribe(SubscribeRequest {
        selectors: vec![Selector::parse("*")],
        claims: None,
        last_event_id: None,
    })
    .await
    .unwrap()
}

fn publish(hub: &Hub, data: &str) -> JoinHandle<Result<Published, PublishError>> {
    let (hub, update) = (hub.clone(), Update::new("t", data));
    tokio::spawn(async move { hub.publish(update).await })
}

/// The data of the next `n` events of `sub`.
async fn datas(sub: &mut Subscription, n: usize) -> Vec<String> {
    let mut decoder = Decoder::default();
    let mut out = Vec::new();
    tokio::time::timeout(LIMIT, async {
        while out.len() < n {
            let frame = sub.next().await.expect("stream ended early");
            decoder
                .feed(&frame, |d| {
                    if let Decoded::Event(e) = d {
                        out.push(e.data);
                    }
                })
                .unwrap();
        }
    })
    .await
    .expect("events arrived in time");
    out
}

/// Waits until the writer has had time to take every publish queued so far.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn publishes_arriving_during_a_commit_share_the_next_one() {
    let store = Arc::new(GatedStore::default());
    let hub = hub(&store).await;
    let mut sub = subscribe(&hub).await;
    let mut held = store.hold_next();
    let first = publish(&hub, "first");
    let (positions, verdict) = held.recv().await.unwrap();
    assert_eq!(positions, [1]);
    let rest: Vec<_> = (0..10).map(|i| publish(&hub, &format!("r{i}"))).collect();
    settle().await;
    verdict.send(true).unwrap();
    assert_eq!(first.await.unwrap().unwrap().position, 1);
    let mut answered = Vec::new();
    for p in rest {
        answered.push(p.await.unwrap().unwrap().position);
    }
    answered.sort_unstable();
    assert_eq!(answered, (2..=11).collect::<Vec<_>>());
    // One commit for the first publish, one for all ten that waited for it.
    assert_eq!(store.calls(), [vec![1], (2..=11).collect::<Vec<_>>()]);
    let got = datas(&mut sub, 11).await;
    assert_eq!(got[0], "first");
    let stored: Vec<String> = store
        .read_after(0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.data)
        .collect();
    assert_eq!(got, stored, "subscribers see the log's order");
}

#[tokio::test]
async fn a_failed_commit_refuses_its_own_publishes_and_leaves_no_gap() {
    let store = Arc::new(GatedStore::default());
    let hub = hub(&store).await;
    let mut sub = subscribe(&hub).await;
    assert_eq!(
        hub.publish(Update::new("t", "a")).await.unwrap().position,
        1
    );

    // The commit of `b` fails while `c`, `d` and `e` wait for the next one.
    let mut held = store.hold_next();
    let b = publish(&hub, "b");
    let (positions, verdict) = held.recv().await.unwrap();
    assert_eq!(positions, [2]);
    let waiting: Vec<_> = ["c", "d", "e"].iter().map(|d| publish(&hub, d)).collect();
    settle().await;
    verdict.send(false).unwrap();
    assert!(matches!(b.await.unwrap(), Err(PublishError::Store(_))));
    let mut positions = Vec::new();
    for p in waiting {
        positions.push(p.await.unwrap().unwrap().position);
    }
    positions.sort_unstable();
    assert_eq!(
        positions,
        [2, 3, 4],
        "the next batch reuses the failed positions"
    );
    assert_eq!(store.calls(), [vec![1], vec![2], vec![2, 3, 4]]);

    assert_eq!(
        hub.publish(Update::new("t", "f")).await.unwrap().position,
        5
    );
    let got = datas(&mut sub, 5).await;
    assert_eq!(got[0], "a");
    assert!(!got.contains(&"b".to_owned()));
    assert_eq!(got[4], "f");
    let stored = store.read_after(0, 100).await.unwrap();
    assert_eq!(
        stored.iter().map(|u| u.position).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(hub.committed_position(), 5);
}

#[tokio::test]
async fn an_id_in_a_commit_not_yet_durable_is_already_taken() {
    let store = Arc::new(GatedStore::default());
    let hub = hub(&store).await;
    let with_id = |data: &str| Update::new("t", data).with_id(EventId::new("same").unwrap());
    let mut held = store.hold_next();
    let first = {
        let hub = hub.clone();
        let update = with_id("1");
        tokio::spawn(async move { hub.publish(update).await })
    };
    let (_, verdict) = held.recv().await.unwrap();
    // Neither the store (not committed yet) nor the batch being built knows it otherwise.
    let second = {
        let hub = hub.clone();
        let update = with_id("2");
        tokio::spawn(async move { hub.publish(update).await })
    };
    settle().await;
    verdict.send(true).unwrap();
    assert_eq!(first.await.unwrap().unwrap().id, "same");
    assert!(matches!(
        second.await.unwrap(),
        Err(PublishError::DuplicateId(id)) if id == "same"
    ));
    // Once a commit with that id failed, the id is free again.
    let mut held = store.hold_next();
    let third = {
        let hub = hub.clone();
        let update = Update::new("t", "3").with_id(EventId::new("other").unwrap());
        tokio::spawn(async move { hub.publish(update).await })
    };
    let (_, verdict) = held.recv().await.unwrap();
    verdict.send(false).unwrap();
    assert!(matches!(third.await.unwrap(), Err(PublishError::Store(_))));
    let again = hub
        .publish(Update::new("t", "4").with_id(EventId::new("other").unwrap()))
        .await
        .unwrap();
    assert_eq!(again.position, 2);
}

#[tokio::test]
async fn shutdown_finishes_the_commit_under_way_and_the_queued_publishes() {
    let store = Arc::new(GatedStore::default());
    let hub = hub(&store).await;
    let mut held = store.hold_next();
    let first = publish(&hub, "first");
    let (_, verdict) = held.recv().await.unwrap();
    let second = publish(&hub, "second");
    settle().await;
    let shutdown = {
        let hub = hub.clone();
        tokio::spawn(async move { hub.shutdown().await })
    };
    settle().await;
    let late = publish(&hub, "late");
    settle().await;
    verdict.send(true).unwrap();
    tokio::time::timeout(LIMIT, shutdown)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.await.unwrap().unwrap().position, 1);
    assert_eq!(second.await.unwrap().unwrap().position, 2);
    assert!(matches!(late.await.unwrap(), Err(PublishError::Closed)));
}
