//! The hub over a shared log (what Redis Streams provides to several hub processes), with an
//! in-memory stand-in: positions are assigned by the store, every hub learns of every update by
//! reading the log, and all hubs deliver one identical order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use herald_hub::log::{Retention, Store, StoreError};
use herald_hub::selector::Selector;
use herald_hub::{Hub, HubConfig, Position, PublishError, StoredUpdate, SubscribeRequest, Update};
use herald_sse::{Decoded, Decoder, EventId};
use tokio::sync::Notify;

/// A log shared by several hubs in one process.
#[derive(Default)]
struct SharedLog {
    updates: Mutex<Vec<StoredUpdate>>,
    ids: Mutex<HashMap<String, Position>>,
    grown: Notify,
    down: std::sync::atomic::AtomicBool,
}

impl SharedLog {
    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            Err(StoreError::Io("the shared log is down".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Store for SharedLog {
    async fn append(&self, _batch: &[StoredUpdate]) -> Result<(), StoreError> {
        Err(StoreError::Io(
            "a shared log assigns positions itself".into(),
        ))
    }

    async fn read_after(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<StoredUpdate>, StoreError> {
        self.check()?;
        let updates = self.updates.lock().unwrap();
        Ok(updates
            .iter()
            .filter(|u| u.position > after)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn position_of(&self, id: &str) -> Result<Option<Position>, StoreError> {
        self.check()?;
        Ok(self.ids.lock().unwrap().get(id).copied())
    }

    async fn last_position(&self) -> Result<Position, StoreError> {
        self.check()?;
        Ok(self
            .updates
            .lock()
            .unwrap()
            .last()
            .map_or(0, |u| u.position))
    }

    async fn first_position(&self) -> Result<Option<Position>, StoreError> {
        Ok(self.updates.lock().unwrap().first().map(|u| u.position))
    }

    async fn trim(&self, _retention: &Retention, _now_ms: u64) -> Result<u64, StoreError> {
        Ok(0)
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn append_shared(
        &self,
        batch: &[StoredUpdate],
    ) -> Result<Vec<Option<Position>>, StoreError> {
        self.check()?;
        let mut updates = self.updates.lock().unwrap();
        let mut ids = self.ids.lock().unwrap();
        let mut out = Vec::new();
        for u in batch {
            if ids.contains_key(&u.id) {
                out.push(None);
                continue;
            }
            let position = updates.last().map_or(0, |l| l.position) + 1;
            ids.insert(u.id.clone(), position);
            updates.push(StoredUpdate {
                position,
                ..u.clone()
            });
            out.push(Some(position));
        }
        drop((updates, ids));
        self.grown.notify_waiters();
        Ok(out)
    }

    async fn wait_after(
        &self,
        after: Position,
        limit: usize,
        wait: Duration,
    ) -> Result<Vec<StoredUpdate>, StoreError> {
        let notified = self.grown.notified();
        let now = self.read_after(after, limit).await?;
        if !now.is_empty() {
            return Ok(now);
        }
        let _ = tokio::time::timeout(wait, notified).await;
        self.read_after(after, limit).await
    }
}

async fn ids(sub: &mut herald_hub::Subscription, n: usize) -> Vec<String> {
    let mut decoder = Decoder::default();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while out.len() < n {
            let frame = sub.next().await.expect("stream ended");
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
    .expect("all updates arrived");
    out
}

fn request() -> SubscribeRequest {
    SubscribeRequest {
        selectors: vec![Selector::parse("t")],
        claims: None,
        last_event_id: None,
    }
}

#[tokio::test]
async fn three_hubs_on_one_log_deliver_one_order() {
    let log = Arc::new(SharedLog::default());
    let mut hubs = Vec::new();
    for _ in 0..3 {
        hubs.push(Hub::open(HubConfig::default(), log.clone()).await.unwrap());
    }
    let mut subs = Vec::new();
    for hub in &hubs {
        subs.push(hub.subscribe(request()).await.unwrap());
    }
    let publishers: Vec<_> = (0..30)
        .map(|i| {
            let hub = hubs[i % 3].clone();
            tokio::spawn(async move {
                for j in 0..10 {
                    hub.publish(Update::new("t", format!("{i}-{j}")))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for p in publishers {
        p.await.unwrap();
    }
    let mut orders = Vec::new();
    for sub in &mut subs {
        orders.push(ids(sub, 300).await);
    }
    assert_eq!(orders[0], orders[1]);
    assert_eq!(orders[0], orders[2]);
    let logged: Vec<String> = log
        .updates
        .lock()
        .unwrap()
        .iter()
        .map(|u| u.data.clone())
        .collect();
    assert_eq!(orders[0], logged, "the order is the log's order");

    // An id is unique across hubs; resume on another hub works from any id.
    hubs[0]
        .publish(Update::new("t", "x").with_id(EventId::new("only-once").unwrap()))
        .await
        .unwrap();
    let dup = hubs[1]
        .publish(Update::new("t", "y").with_id(EventId::new("only-once").unwrap()))
        .await;
    assert!(matches!(dup, Err(PublishError::DuplicateId(_))));
    let middle = log.updates.lock().unwrap()[149].id.clone();
    let mut resumed = hubs[2]
        .subscribe(SubscribeRequest {
            last_event_id: Some(middle),
            ..request()
        })
        .await
        .unwrap();
    let rest = ids(&mut resumed, 151).await;
    assert_eq!(rest[..150], orders[0][150..]);
    assert_eq!(rest[150], "x");
}

#[tokio::test]
async fn an_outage_refuses_publishes_and_delivery_resumes_after_it() {
    let log = Arc::new(SharedLog::default());
    let hub = Hub::open(HubConfig::default(), log.clone()).await.unwrap();
    let mut sub = hub.subscribe(request()).await.unwrap();
    hub.publish(Update::new("t", "before")).await.unwrap();
    log.down.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(matches!(
        hub.publish(Update::new("t", "during")).await,
        Err(PublishError::Store(_))
    ));
    assert!(hub.ready().await.is_err());
    log.down.store(false, std::sync::atomic::Ordering::SeqCst);
    hub.publish(Update::new("t", "after")).await.unwrap();
    assert_eq!(ids(&mut sub, 2).await, ["before", "after"]);
    assert!(hub.ready().await.is_ok());
}
