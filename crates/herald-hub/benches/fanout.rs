//! Fan-out micro-benchmarks: the cost of one published update reaching N live subscribers —
//! commit (memory store), routing through the topic index, queueing the shared frame, and each
//! subscriber draining its queue — and the cost of routing when the update reaches nobody.
//!
//! `cargo bench -p herald-hub --bench fanout`. Throughput is in deliveries (subscribers reached).

#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark: failing loudly is right

use std::sync::Arc;
use std::task::{Context, Waker};

use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use herald_hub::log::memory::MemoryStore;
use herald_hub::selector::Selector;
use herald_hub::{Hub, HubConfig, SubscribeRequest, Subscription, Update};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// `n` subscribers; subscriber `i` listens to topic `i % topics`.
fn subscribers(
    rt: &tokio::runtime::Runtime,
    hub: &Hub,
    n: usize,
    topics: usize,
) -> Vec<Subscription> {
    rt.block_on(async {
        let mut subs = Vec::with_capacity(n);
        for i in 0..n {
            let request = SubscribeRequest {
                selectors: vec![Selector::parse(&format!("urn:bench:{}", i % topics))],
                claims: None,
                last_event_id: None,
            };
            subs.push(hub.subscribe(request).await.expect("subscribed"));
        }
        subs
    })
}

fn drain(subs: &mut [Subscription], frames: &mut Vec<bytes::Bytes>) -> usize {
    let mut cx = Context::from_waker(Waker::noop());
    let mut got = 0;
    for s in subs {
        frames.clear();
        let _ = s.poll_drain(&mut cx, frames);
        got += frames.len();
    }
    got
}

fn fanout(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("fanout");
    group.sample_size(20);
    for n in [1_000usize, 10_000] {
        let hub = rt
            .block_on(Hub::open(
                HubConfig::default(),
                Arc::new(MemoryStore::new()),
            ))
            .expect("hub");
        let mut subs = subscribers(&rt, &hub, n, 1);
        let data = "x".repeat(100);
        let mut frames = Vec::new();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::new("one_topic_publish_and_drain", n), |b| {
            b.iter(|| {
                rt.block_on(hub.publish(Update::new("urn:bench:0", data.clone())))
                    .expect("published");
                assert_eq!(drain(&mut subs, &mut frames), n);
            })
        });
    }
    group.finish();

    // 10,000 subscribers on 10,000 topics: an update to one topic reaches one subscriber; the
    // cost must not grow with the number of subscribers elsewhere.
    let mut group = c.benchmark_group("routing");
    group.sample_size(20);
    let n = 10_000;
    let hub = rt
        .block_on(Hub::open(
            HubConfig::default(),
            Arc::new(MemoryStore::new()),
        ))
        .expect("hub");
    let mut subs = subscribers(&rt, &hub, n, n);
    let data = "x".repeat(100);
    let mut frames = Vec::new();
    let mut cx = Context::from_waker(Waker::noop());
    let mut topic = 0usize;
    group.throughput(Throughput::Elements(1));
    group.bench_function("10k_topics_publish_to_one", |b| {
        b.iter(|| {
            topic = (topic + 1) % n;
            rt.block_on(hub.publish(Update::new(format!("urn:bench:{topic}"), data.clone())))
                .expect("published");
            frames.clear();
            let _ = subs[topic].poll_drain(&mut cx, &mut frames);
            assert_eq!(frames.len(), 1);
        })
    });
    group.finish();
}

/// Every benchmark, with criterion's defaults (what `criterion_group!` would generate, written out
/// so that it carries a doc comment).
fn benches() {
    let mut c = Criterion::default().configure_from_args();
    fanout(&mut c);
}

criterion_main!(benches);
