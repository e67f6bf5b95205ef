//! Scale-out acceptance (issue 7): three `herald serve` processes on one real `redis-server`
//! (installed by scripts/test.sh) share one log. Every node delivers every update in one order; a
//! subscriber whose node dies resumes on another; a Redis outage refuses publishes (503) and
//! loses nothing that was acknowledged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../../herald-hub/tests/support/redis_server.rs"]
mod redis_server;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{token, within, Http, HubProcess};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use redis_server::RedisServer;

const TOPIC: &str = "https://example.com/cluster";

/// One Redis and three hubs on it, each with its own data directory.
struct Cluster {
    redis: RedisServer,
    nodes: Vec<HubProcess>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Cluster {
    async fn start() -> Self {
        let redis_dir = tempfile::tempdir().unwrap();
        let redis = RedisServer::start(redis_dir.path());
        let url = redis.url();
        let mut dirs = vec![redis_dir];
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            nodes.push(HubProcess::start(dir.path(), &["--store", &url]).await);
            dirs.push(dir);
        }
        Self {
            redis,
            nodes,
            _dirs: dirs,
        }
    }

    fn subscribe_url(&self, node: usize) -> String {
        self.nodes[node].subscribe_url(&[TOPIC], &[])
    }
}

/// What a follower saw: every event id in arrival order, and how many streams it opened.
#[derive(Default)]
struct Seen {
    ids: Mutex<Vec<String>>,
    connects: AtomicUsize,
}

impl Seen {
    fn len(&self) -> usize {
        self.ids.lock().unwrap().len()
    }

    fn ids(&self) -> Vec<String> {
        self.ids.lock().unwrap().clone()
    }
}

/// Subscribes like an `EventSource` that fails over: reads the stream of `urls[0]`; when it
/// ends or fails, reconnects to the next URL (round robin) with `Last-Event-ID` set to the last
/// id it received (`earliest` before the first). Runs until aborted.
fn follow(urls: Vec<String>, seen: Arc<Seen>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let mut node = 0;
        loop {
            let last = seen
                .ids
                .lock()
                .unwrap()
                .last()
                .cloned()
                .unwrap_or_else(|| "earliest".into());
            let request = Request::builder()
                .method(Method::GET)
                .uri(&urls[node % urls.len()])
                .header("last-event-id", last)
                .body(Empty::new())
                .unwrap();
            if let Ok(Ok(response)) =
                tokio::time::timeout(Duration::from_secs(5), client.request(request)).await
            {
                if response.status() == StatusCode::OK {
                    seen.connects.fetch_add(1, Ordering::SeqCst);
                    let mut body = response.into_body();
                    let mut decoder = herald_sse::Decoder::default();
                    while let Ok(Some(Ok(frame))) =
                        tokio::time::timeout(Duration::from_secs(60), body.frame()).await
                    {
                        let Ok(data) = frame.into_data() else {
                            continue;
                        };
                        let mut ids = seen.ids.lock().unwrap();
                        decoder
                            .feed(&data, |d| {
                                if let herald_sse::Decoded::Event(e) = d {
                                    ids.push(e.last_event_id);
                                }
                            })
                            .expect("a valid event stream");
                    }
                }
            }
            node += 1;
            // Reconnect delay, as an EventSource's `retry`.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Waits (bounded) until `cond` holds, checking every 20 ms.
async fn until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    within(limit, what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// Publishes `id` to `endpoint`, retrying while the answer is 503 or the node is unreachable.
/// Returns the final status (200, or 409 when an earlier attempt was stored after all).
async fn publish_retrying(http: &Http, endpoints: &[String], first: usize, id: &str) -> StatusCode {
    let bearer = token(Some(&["*"]), None);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut node = first;
    loop {
        let endpoint = &endpoints[node % endpoints.len()];
        let fields = [("topic", TOPIC), ("id", id), ("data", id)];
        match http.try_publish(endpoint, &bearer, &fields).await {
            Ok(a) if a.status == StatusCode::OK || a.status == StatusCode::CONFLICT => {
                return a.status
            }
            Ok(a) if a.status == StatusCode::SERVICE_UNAVAILABLE => {}
            Ok(a) => panic!("publish {id} to {endpoint}: {a:?}"),
            // The node is gone: the publisher's load balancer would pick another one.
            Err(_) => node += 1,
        }
        assert!(Instant::now() < deadline, "publish {id} kept failing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_exactly_once(ids: &[String], what: &str) {
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "{what}: an update arrived twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_deliver_every_update_in_one_order() {
    let cluster = Cluster::start().await;
    let seen: Vec<Arc<Seen>> = (0..3).map(|_| Arc::new(Seen::default())).collect();
    let followers: Vec<_> = (0..3)
        .map(|n| follow(vec![cluster.subscribe_url(n)], seen[n].clone()))
        .collect();
    until(Duration::from_secs(10), "subscribers connected", || {
        seen.iter().all(|s| s.connects.load(Ordering::SeqCst) == 1)
    })
    .await;

    let endpoints: Vec<String> = cluster.nodes.iter().map(|n| n.endpoint.clone()).collect();
    let started = Instant::now();
    let publishers: Vec<_> = (0..6)
        .map(|p| {
            let endpoints = endpoints.clone();
            tokio::spawn(async move {
                let http = Http::new();
                for j in 0..500 {
                    let id = format!("p{p}-{j:03}");
                    // Round robin over the nodes: update k of this publisher goes to node k % 3.
                    let status = publish_retrying(&http, &endpoints, p + j, &id).await;
                    assert_eq!(status, StatusCode::OK, "{id}");
                }
            })
        })
        .collect();
    for p in publishers {
        within(Duration::from_secs(60), "publishers finish", p)
            .await
            .unwrap();
    }
    let published = started.elapsed();
    until(
        Duration::from_secs(30),
        "every node delivered 3,000",
        || seen.iter().all(|s| s.len() >= 3000),
    )
    .await;
    let delivered = started.elapsed();
    let orders: Vec<Vec<String>> = seen.iter().map(|s| s.ids()).collect();
    for (n, order) in orders.iter().enumerate() {
        assert_eq!(order.len(), 3000, "node {n}");
        assert_exactly_once(order, &format!("node {n}"));
    }
    assert_eq!(orders[0], orders[1], "nodes 0 and 1 deliver one order");
    assert_eq!(orders[0], orders[2], "nodes 0 and 2 deliver one order");
    // Each publisher's updates keep their order (it waited for each answer).
    for p in 0..6 {
        let prefix = format!("p{p}-");
        let own: Vec<&String> = orders[0]
            .iter()
            .filter(|i| i.starts_with(&prefix))
            .collect();
        assert!(
            own.windows(2).all(|w| w[0] < w[1]),
            "publisher {p} in order"
        );
        assert_eq!(own.len(), 500);
    }
    for s in &seen {
        assert_eq!(s.connects.load(Ordering::SeqCst), 1, "no reconnect");
    }
    eprintln!(
        "3 nodes: 3,000 updates published in {published:?} ({:.0}/s), all delivered on every node after {delivered:?}",
        3000.0 / published.as_secs_f64()
    );
    followers.iter().for_each(|f| f.abort());
    drop(cluster.redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscriber_resumes_on_another_node_after_its_node_is_killed() {
    let mut cluster = Cluster::start().await;
    let moving = Arc::new(Seen::default());
    let staying = Arc::new(Seen::default());
    let followers = [
        follow(
            vec![cluster.subscribe_url(0), cluster.subscribe_url(1)],
            moving.clone(),
        ),
        follow(vec![cluster.subscribe_url(2)], staying.clone()),
    ];
    until(Duration::from_secs(10), "subscribers connected", || {
        moving.connects.load(Ordering::SeqCst) == 1 && staying.connects.load(Ordering::SeqCst) == 1
    })
    .await;

    // Publishers use nodes 1 and 2, which stay up.
    let endpoints: Vec<String> = cluster.nodes[1..]
        .iter()
        .map(|n| n.endpoint.clone())
        .collect();
    let total = 1500;
    let publishers: Vec<_> = (0..4)
        .map(|p| {
            let endpoints = endpoints.clone();
            tokio::spawn(async move {
                let http = Http::new();
                for j in 0..total / 4 {
                    let id = format!("p{p}-{j:03}");
                    let status = publish_retrying(&http, &endpoints, p + j, &id).await;
                    assert_eq!(status, StatusCode::OK, "{id}");
                }
            })
        })
        .collect();
    until(
        Duration::from_secs(30),
        "the subscriber is mid-stream",
        || moving.len() >= 300,
    )
    .await;
    let status = cluster.nodes[0].kill9().await;
    let at_kill = moving.len();
    assert!(at_kill < total, "killed mid-stream (at {at_kill})");
    for p in publishers {
        within(Duration::from_secs(60), "publishers finish", p)
            .await
            .unwrap();
    }
    until(
        Duration::from_secs(30),
        "both subscribers have everything",
        || moving.len() >= total && staying.len() >= total,
    )
    .await;
    let (moved, stayed) = (moving.ids(), staying.ids());
    assert_eq!(moved.len(), total);
    assert_exactly_once(&moved, "the subscriber that moved");
    assert_eq!(
        moved, stayed,
        "the resumed stream continues in the log's one order"
    );
    assert_eq!(moving.connects.load(Ordering::SeqCst), 2, "one failover");
    eprintln!(
        "node 0 killed ({status}) after {at_kill} of {total} updates; the subscriber resumed on node 1"
    );
    followers.iter().for_each(|f| f.abort());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_outage_refuses_publishes_and_loses_nothing_acknowledged() {
    let mut cluster = Cluster::start().await;
    let seen: Vec<Arc<Seen>> = (0..3).map(|_| Arc::new(Seen::default())).collect();
    let followers: Vec<_> = (0..3)
        .map(|n| follow(vec![cluster.subscribe_url(n)], seen[n].clone()))
        .collect();
    until(Duration::from_secs(10), "subscribers connected", || {
        seen.iter().all(|s| s.connects.load(Ordering::SeqCst) == 1)
    })
    .await;

    let endpoints: Vec<String> = cluster.nodes.iter().map(|n| n.endpoint.clone()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let conflicts = Arc::new(Mutex::new(Vec::<String>::new()));
    let refused = Arc::new(AtomicUsize::new(0));
    let publishers: Vec<_> = (0..3)
        .map(|p| {
            let (endpoints, stop) = (endpoints.clone(), stop.clone());
            let (acknowledged, conflicts) = (acknowledged.clone(), conflicts.clone());
            let refused = refused.clone();
            tokio::spawn(async move {
                let http = Http::new();
                let bearer = token(Some(&["*"]), None);
                let mut j = 0;
                while !stop.load(Ordering::SeqCst) {
                    let id = format!("p{p}-{j:05}");
                    let endpoint = &endpoints[(p + j) % 3];
                    // Retry the same id on 503: the id makes the retry idempotent.
                    loop {
                        let fields = [("topic", TOPIC), ("id", id.as_str()), ("data", "x")];
                        let answer = http.try_publish(endpoint, &bearer, &fields).await.unwrap();
                        match answer.status {
                            StatusCode::OK => acknowledged.lock().unwrap().push(id.clone()),
                            StatusCode::CONFLICT => conflicts.lock().unwrap().push(id.clone()),
                            StatusCode::SERVICE_UNAVAILABLE => {
                                refused.fetch_add(1, Ordering::SeqCst);
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                continue;
                            }
                            other => panic!("publish {id}: {other} {answer:?}"),
                        }
                        break;
                    }
                    j += 1;
                }
            })
        })
        .collect();
    let http = Http::new();
    let readyz: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| format!("http://{}/readyz", n.authority()))
        .collect();
    let all_ready = |want: StatusCode| {
        let (http, readyz) = (http.clone(), readyz.clone());
        async move {
            loop {
                let mut all = true;
                for url in &readyz {
                    let answer = http.call(Method::GET, url, &[], Bytes::new()).await;
                    all &= answer.status == want;
                }
                if all {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    until(
        Duration::from_secs(20),
        "updates flow before the outage",
        || acknowledged.lock().unwrap().len() >= 200,
    )
    .await;

    let port = cluster.redis.port;
    let dir = cluster.redis.dir.clone();
    cluster.redis.kill();
    let down_at = Instant::now();
    let before = acknowledged.lock().unwrap().len();
    within(
        Duration::from_secs(10),
        "every node reports not ready",
        all_ready(StatusCode::SERVICE_UNAVAILABLE),
    )
    .await;
    // The outage the issue asks for: Redis stays down for about 5 s.
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(down_at.elapsed())).await;
    let during = acknowledged.lock().unwrap().len();
    assert!(
        during <= before + 3,
        "nothing is acknowledged while Redis is down ({before} -> {during})"
    );
    cluster.redis = RedisServer::start_on(&dir, port);
    let up_at = Instant::now();
    within(
        Duration::from_secs(20),
        "every node is ready again",
        all_ready(StatusCode::OK),
    )
    .await;
    let ready_after = up_at.elapsed();
    until(
        Duration::from_secs(20),
        "updates flow after the outage",
        || acknowledged.lock().unwrap().len() >= during + 200,
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    for p in publishers {
        within(Duration::from_secs(30), "publishers stop", p)
            .await
            .unwrap();
    }

    let acked: Vec<String> = acknowledged.lock().unwrap().clone();
    let acked_set: HashSet<&String> = acked.iter().collect();
    let conflicted: Vec<String> = conflicts.lock().unwrap().clone();
    until(
        Duration::from_secs(30),
        "every acknowledged update is delivered on every node",
        || {
            seen.iter().all(|s| {
                let ids = s.ids();
                let got: HashSet<&String> = ids.iter().collect();
                acked_set.iter().all(|id| got.contains(*id))
            })
        },
    )
    .await;
    let orders: Vec<Vec<String>> = seen.iter().map(|s| s.ids()).collect();
    for (n, order) in orders.iter().enumerate() {
        assert_exactly_once(order, &format!("node {n}"));
        // Besides the acknowledged ones, only updates whose publisher was answered 409 on a
        // retry (an attempt stored although its answer was lost) may appear.
        for id in order {
            assert!(
                acked_set.contains(id) || conflicted.contains(id),
                "node {n} delivered {id}, which no publisher was told was stored"
            );
        }
        assert_eq!(
            seen[n].connects.load(Ordering::SeqCst),
            1,
            "node {n}'s subscriber stayed connected through the outage"
        );
    }
    let shortest = orders.iter().map(Vec::len).min().unwrap();
    assert_eq!(orders[0][..shortest], orders[1][..shortest]);
    assert_eq!(orders[0][..shortest], orders[2][..shortest]);
    eprintln!(
        "outage: {} acknowledged ({} before the outage), {} answered 503 and retried, {} 409 after a lost answer; nodes ready {ready_after:?} after Redis restarted",
        acked.len(),
        before,
        refused.load(Ordering::SeqCst),
        conflicted.len()
    );
    followers.iter().for_each(|f| f.abort());
}
