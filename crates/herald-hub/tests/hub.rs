//! The hub engine without HTTP: routing, privacy, replay-then-live ordering, resume, slow
//! consumers, shutdown. Runs against the memory store; store-specific behaviour is in `store.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use herald_hub::auth::Claims;
use herald_hub::log::memory::MemoryStore;
use herald_hub::selector::{Selector, SelectorSet};
use herald_hub::{
    Hub, HubConfig, PublishError, ResumedFrom, SubscribeRequest, Subscription, Update,
};
use herald_sse::{Decoded, Decoder, EventId, MessageEvent};

const LIMIT: Duration = Duration::from_secs(10);

async fn hub_with(config: HubConfig) -> Hub {
    Hub::open(config, Arc::new(MemoryStore::new()))
        .await
        .unwrap()
}

async fn hub() -> Hub {
    hub_with(HubConfig::default()).await
}

fn request(selectors: &[&str]) -> SubscribeRequest {
    SubscribeRequest {
        selectors: selectors.iter().map(|s| Selector::parse(s)).collect(),
        claims: None,
        last_event_id: None,
    }
}

fn claims_for(selectors: &[&str]) -> Claims {
    Claims {
        subscribe: Some(SelectorSet::new(
            selectors.iter().map(|s| Selector::parse(s)).collect(),
        )),
        ..Claims::default()
    }
}

/// Reads `n` events from the subscription, decoding its frames like a client would.
async fn take(sub: &mut Subscription, n: usize) -> Vec<MessageEvent> {
    let mut decoder = Decoder::default();
    let mut out = Vec::new();
    tokio::time::timeout(LIMIT, async {
        while out.len() < n {
            let frame = sub.next().await.expect("stream ended early");
            decoder
                .feed(&frame, |d| {
                    if let Decoded::Event(e) = d {
                        out.push(e);
                    }
                })
                .unwrap();
        }
    })
    .await
    .expect("events arrived in time");
    out
}

/// Whether the subscription has nothing ready right now (after the hub settled).
async fn nothing_pending(hub: &Hub, sub: &mut Subscription) -> bool {
    // A publish to an unrelated topic is answered only after every earlier commit was offered to
    // all subscribers: after it, anything meant for `sub` would already be queued.
    hub.publish(Update::new("urn:unrelated:barrier", "x"))
        .await
        .unwrap();
    futures_util::FutureExt::now_or_never(sub.next()).is_none()
}

fn datas(events: &[MessageEvent]) -> Vec<&str> {
    events.iter().map(|e| e.data.as_str()).collect()
}

#[tokio::test]
async fn exact_template_and_any_selectors() {
    let hub = hub().await;
    let mut exact = hub
        .subscribe(request(&["https://ex.com/books/1"]))
        .await
        .unwrap();
    let mut template = hub
        .subscribe(request(&["https://ex.com/books/{id}"]))
        .await
        .unwrap();
    let mut any = hub.subscribe(request(&["*"])).await.unwrap();
    hub.publish(Update::new("https://ex.com/books/1", "one"))
        .await
        .unwrap();
    hub.publish(Update::new("https://ex.com/books/2", "two"))
        .await
        .unwrap();
    hub.publish(Update::new("https://ex.com/authors/1", "author"))
        .await
        .unwrap();

    assert_eq!(datas(&take(&mut exact, 1).await), ["one"]);
    assert_eq!(datas(&take(&mut template, 2).await), ["one", "two"]);
    assert_eq!(datas(&take(&mut any, 3).await), ["one", "two", "author"]);
    assert!(nothing_pending(&hub, &mut exact).await);
    assert!(nothing_pending(&hub, &mut template).await);
}

#[tokio::test]
async fn alternate_topics_deliver_once() {
    let hub = hub().await;
    let mut both = hub.subscribe(request(&["a", "b", "{x}"])).await.unwrap();
    let mut alt = hub.subscribe(request(&["b"])).await.unwrap();
    hub.publish(Update::new("a", "1").with_topic("b"))
        .await
        .unwrap();
    hub.publish(Update::new("c", "2")).await.unwrap();
    assert_eq!(datas(&take(&mut both, 2).await), ["1", "2"]);
    assert_eq!(datas(&take(&mut alt, 1).await), ["1"]);
    assert!(nothing_pending(&hub, &mut alt).await);
}

#[tokio::test]
async fn private_updates_reach_only_allowed_subscribers() {
    let hub = hub().await;
    let mut anonymous = hub.subscribe(request(&["*"])).await.unwrap();
    let mut allowed = hub
        .subscribe(SubscribeRequest {
            claims: Some(claims_for(&["https://ex.com/users/{id}"])),
            ..request(&["*"])
        })
        .await
        .unwrap();
    let mut other = hub
        .subscribe(SubscribeRequest {
            claims: Some(claims_for(&["https://ex.com/admin"])),
            ..request(&["*"])
        })
        .await
        .unwrap();
    hub.publish(Update::new("https://ex.com/users/7", "secret").private())
        .await
        .unwrap();
    hub.publish(Update::new("https://ex.com/news", "public"))
        .await
        .unwrap();

    assert_eq!(datas(&take(&mut allowed, 2).await), ["secret", "public"]);
    assert_eq!(datas(&take(&mut anonymous, 1).await), ["public"]);
    assert_eq!(datas(&take(&mut other, 1).await), ["public"]);

    // Replay obeys the same rule.
    let mut replay = hub
        .subscribe(SubscribeRequest {
            last_event_id: Some("earliest".into()),
            ..request(&["*"])
        })
        .await
        .unwrap();
    assert_eq!(datas(&take(&mut replay, 1).await), ["public"]);
}

#[tokio::test]
async fn ids_are_verbatim_or_generated_uuid_v7_and_unique() {
    let hub = hub().await;
    let given = hub
        .publish(Update::new("t", "x").with_id(EventId::new("my-id").unwrap()))
        .await
        .unwrap();
    assert_eq!(given.id, "my-id");
    let generated = hub.publish(Update::new("t", "y")).await.unwrap();
    assert!(generated.id.starts_with("urn:uuid:"), "{}", generated.id);
    let uuid = uuid::Uuid::parse_str(generated.id.trim_start_matches("urn:uuid:")).unwrap();
    assert_eq!(uuid.get_version_num(), 7);
    assert!(generated.position > given.position);
    let dup = hub
        .publish(Update::new("t", "z").with_id(EventId::new("my-id").unwrap()))
        .await;
    assert!(matches!(dup, Err(PublishError::DuplicateId(id)) if id == "my-id"));
    assert!(matches!(
        hub.publish(Update {
            topics: vec![],
            ..Update::new("t", "x")
        })
        .await,
        Err(PublishError::NoTopic)
    ));
}

async fn resume_cases(config: HubConfig) {
    let hub = hub_with(config).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(
            hub.publish(Update::new("t", format!("{i}")))
                .await
                .unwrap()
                .id,
        );
    }
    // From the middle: exactly the rest, with the id reported.
    let mut sub = hub
        .subscribe(SubscribeRequest {
            last_event_id: Some(ids[9].clone()),
            ..request(&["t"])
        })
        .await
        .unwrap();
    assert_eq!(sub.resumed_from(), Some(&ResumedFrom::Id(ids[9].clone())));
    let got = take(&mut sub, 10).await;
    let want: Vec<String> = (10..20).map(|i| i.to_string()).collect();
    assert_eq!(datas(&got), want);
    assert_eq!(got[0].last_event_id, ids[10]);
    // Then live, with no duplicate.
    hub.publish(Update::new("t", "live")).await.unwrap();
    assert_eq!(datas(&take(&mut sub, 1).await), ["live"]);

    // earliest: everything.
    let mut all = hub
        .subscribe(SubscribeRequest {
            last_event_id: Some("earliest".into()),
            ..request(&["t"])
        })
        .await
        .unwrap();
    assert_eq!(all.resumed_from(), Some(&ResumedFrom::Earliest));
    assert_eq!(take(&mut all, 21).await.len(), 21);

    // Unknown id: everything, reported as earliest.
    let mut unknown = hub
        .subscribe(SubscribeRequest {
            last_event_id: Some("no-such-id".into()),
            ..request(&["t"])
        })
        .await
        .unwrap();
    assert_eq!(unknown.resumed_from(), Some(&ResumedFrom::Earliest));
    assert_eq!(datas(&take(&mut unknown, 1).await), ["0"]);

    // The last id: nothing to replay.
    let mut at_end = hub
        .subscribe(SubscribeRequest {
            last_event_id: Some(ids[19].clone()),
            ..request(&["t"])
        })
        .await
        .unwrap();
    assert_eq!(datas(&take(&mut at_end, 1).await), ["live"]);
    assert!(nothing_pending(&hub, &mut at_end).await);
}

#[tokio::test]
async fn resume_from_the_memory_tail() {
    resume_cases(HubConfig::default()).await;
}

#[tokio::test]
async fn resume_from_the_store() {
    resume_cases(HubConfig {
        memory_tail: 3,
        replay_chunk: 4,
        ..HubConfig::default()
    })
    .await;
}

#[tokio::test]
async fn concurrent_publishers_and_subscribers_see_one_order_without_gaps() {
    let hub = hub_with(HubConfig {
        memory_tail: 50,
        replay_chunk: 7,
        ..HubConfig::default()
    })
    .await;
    // Subscribers join while publishing is under way, each resuming from `earliest`: the replay
    // and live parts must join without a gap or a duplicate.
    let publishers: Vec<_> = (0..10)
        .map(|p| {
            let hub = hub.clone();
            tokio::spawn(async move {
                for i in 0..100 {
                    hub.publish(Update::new("t", format!("{p}-{i}")))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let mut subscribers = Vec::new();
    for _ in 0..20 {
        subscribers.push(
            hub.subscribe(SubscribeRequest {
                last_event_id: Some("earliest".into()),
                ..request(&["t"])
            })
            .await
            .unwrap(),
        );
        tokio::task::yield_now().await;
    }
    for p in publishers {
        p.await.unwrap();
    }
    let mut orders = Vec::new();
    for sub in &mut subscribers {
        let got = take(sub, 1000).await;
        orders.push(got.into_iter().map(|e| e.data).collect::<Vec<_>>());
        assert!(nothing_pending(&hub, sub).await);
    }
    for order in &orders[1..] {
        assert_eq!(order, &orders[0]);
    }
    let mut unique = orders[0].clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 1000);
}

/// Subscribers of one topic read its channel; others have their own queue. Either way a stalled
/// one is cut off when it falls `queue_capacity` behind, with a prefix of the log, and nobody
/// waits for it.
#[tokio::test]
async fn a_subscriber_that_never_reads_is_cut_off_without_slowing_others() {
    for selectors in [&["t"][..], &["t", "elsewhere"][..]] {
        let hub = hub_with(HubConfig {
            queue_capacity: 8,
            ..HubConfig::default()
        })
        .await;
        let mut stalled = hub.subscribe(request(selectors)).await.unwrap();
        let mut reader = hub.subscribe(request(selectors)).await.unwrap();
        let reading = tokio::spawn(async move {
            let got = take(&mut reader, 100).await;
            (got, reader)
        });
        tokio::time::timeout(LIMIT, async {
            for i in 0..100 {
                hub.publish(Update::new("t", format!("{i}"))).await.unwrap();
            }
        })
        .await
        .expect("publishing is not held up by a stalled subscriber");
        let (read, _reader) = reading.await.unwrap();
        assert_eq!(read.len(), 100, "{selectors:?}");
        // The stalled one gets at most what was queued before it was cut (a prefix of the
        // log), then its stream ends.
        let mut frames = Vec::new();
        while let Some(f) = tokio::time::timeout(LIMIT, stalled.next()).await.unwrap() {
            frames.push(f);
        }
        assert!(frames.len() <= 8, "{selectors:?}: {} frames", frames.len());
        let expected: Vec<_> = read[..frames.len()]
            .iter()
            .map(|e| e.data.clone())
            .collect();
        let got: Vec<_> = frames
            .iter()
            .map(|f| {
                let text = String::from_utf8_lossy(f);
                text.lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(got, expected, "{selectors:?}: a prefix of the log");
        drop(stalled);
        assert_eq!(hub.subscriber_count(), 1);
    }
}

#[tokio::test]
async fn dropping_a_subscription_unregisters_it() {
    let hub = hub().await;
    let sub = hub.subscribe(request(&["t", "{x}"])).await.unwrap();
    assert_eq!(hub.subscriber_count(), 1);
    drop(sub);
    assert_eq!(hub.subscriber_count(), 0);
    hub.publish(Update::new("t", "x")).await.unwrap();
}

#[tokio::test]
async fn shutdown_ends_streams_and_refuses_publishes() {
    let hub = hub().await;
    let mut sub = hub.subscribe(request(&["t"])).await.unwrap();
    hub.publish(Update::new("t", "before")).await.unwrap();
    hub.shutdown().await;
    assert_eq!(datas(&take(&mut sub, 1).await), ["before"]);
    assert!(tokio::time::timeout(LIMIT, sub.next())
        .await
        .unwrap()
        .is_none());
    assert!(matches!(
        hub.publish(Update::new("t", "after")).await,
        Err(PublishError::Closed)
    ));
    assert!(hub.subscribe(request(&["t"])).await.is_err());
}

#[tokio::test]
async fn history_pages_follow_the_cursor() {
    use herald_hub::HistoryRequest;
    let hub = hub_with(HubConfig {
        memory_tail: 4,
        replay_chunk: 3,
        ..HubConfig::default()
    })
    .await;
    let page = |after: Option<&str>, limit| HistoryRequest {
        selectors: vec![Selector::parse("a")],
        claims: None,
        after: after.map(str::to_owned),
        limit,
    };
    let empty = hub.history(page(None, 10)).await.unwrap();
    assert!(empty.updates.is_empty());
    assert_eq!(empty.next, "earliest");

    for i in 0..10 {
        hub.publish(Update::new(
            if i % 2 == 0 { "a" } else { "b" },
            format!("{i}"),
        ))
        .await
        .unwrap();
    }
    hub.publish(Update::new("a", "secret").private())
        .await
        .unwrap();

    // From now: nothing yet, and a cursor at the end.
    let now = hub.history(page(None, 10)).await.unwrap();
    assert!(now.updates.is_empty());
    // From the start, two at a time, private updates left out.
    let mut cursor = "earliest".to_owned();
    let mut seen = Vec::new();
    for _ in 0..10 {
        let p = hub.history(page(Some(&cursor), 2)).await.unwrap();
        seen.extend(p.updates.iter().map(|u| u.data.clone()));
        if p.next == cursor {
            break;
        }
        cursor = p.next;
    }
    assert_eq!(seen, ["0", "2", "4", "6", "8"]);
    assert_eq!(cursor, now.next, "paging ends at the same cursor as 'now'");
    hub.publish(Update::new("a", "later")).await.unwrap();
    let after = hub.history(page(Some(&now.next), 10)).await.unwrap();
    assert_eq!(after.updates.len(), 1);
    assert_eq!(after.updates[0].data, "later");
}
