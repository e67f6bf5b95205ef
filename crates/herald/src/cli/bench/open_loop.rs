//! The open-loop publisher of `herald bench fanout`.
//!
//! Update `s` is due at `start + s / R` whatever happened to the earlier ones, and carries its
//! due time as `sent_us`: a hub that answers slowly makes the latencies grow instead of slowing
//! the schedule down (no coordinated omission). A pacing thread sleeps until each due time (a
//! thread sleep is precise to tens of microseconds; the runtime's timers tick in milliseconds) and
//! hands the request to the runtime; at most `concurrency` requests are in flight, over a pool of
//! keep-alive HTTP/1.1 connections. When every connection is busy the schedule slips: the report
//! says by how much (the publish lag).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Uri};
use http_body_util::{BodyExt, Full};
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::protocol::{TopicNames, TOPIC_PLACEHOLDER};
use super::{client, encode, payload, root_cause, unix_micros, BenchClient};

/// Where updates are published.
#[derive(Debug, Clone)]
pub(super) enum PublishTo {
    /// A Mercure hub: a form POST with a bearer token.
    Mercure {
        /// The hub's endpoint.
        uri: Uri,
        /// `Bearer …`.
        authorization: HeaderValue,
    },
    /// Another server: the data as a `text/plain` body POSTed to this template with `{topic}`
    /// replaced.
    Raw(String),
}

/// What to publish and how fast.
#[derive(Debug)]
pub(super) struct Schedule {
    /// Update `s` goes to `targets[s % len]`.
    pub targets: Vec<PublishTo>,
    /// How topics are named.
    pub names: TopicNames,
    /// Update `s` goes to topic `s % topics`.
    pub topics: u64,
    /// Updates per second.
    pub rate: f64,
    /// Updates in all.
    pub count: u64,
    /// Bytes of data per update.
    pub size: usize,
    /// Most requests in flight.
    pub concurrency: usize,
}

/// What the publisher did.
#[derive(Debug, Default, Serialize)]
pub(super) struct Published {
    /// Updates answered 2xx.
    pub ok: u64,
    /// Updates not answered 2xx.
    pub failed: u64,
    /// Failures by status code.
    pub by_status: BTreeMap<u16, u64>,
    /// Requests that got no answer.
    pub transport: u64,
    /// The first failure.
    pub first_error: Option<String>,
    /// How late the last update was sent after its due time, in milliseconds.
    pub lag_last_ms: f64,
    /// The most any update was sent late, in milliseconds.
    pub lag_max_ms: f64,
    /// From the first due time until the last answer, in seconds.
    pub elapsed_s: f64,
    /// Updates answered 2xx, by topic.
    #[serde(skip)]
    pub per_topic: Vec<u64>,
    /// The first due time, µs since the Unix epoch.
    #[serde(skip)]
    pub start_us: u64,
    /// Every request failed to connect.
    #[serde(skip)]
    pub unreachable: bool,
}

/// Counts shared by the requests in flight.
struct Counters {
    per_topic: Vec<AtomicU64>,
    transport: AtomicU64,
    connect_failures: AtomicU64,
    by_status: Mutex<BTreeMap<u16, u64>>,
    first_error: Mutex<Option<String>>,
}

impl Counters {
    fn fail(&self, message: impl FnOnce() -> String) {
        let mut first = self
            .first_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if first.is_none() {
            *first = Some(message());
        }
    }
}

/// What the pacing thread measured.
struct Pacing {
    start: Instant,
    start_us: u64,
    lag_last: Duration,
    lag_max: Duration,
}

/// Publishes the schedule and waits for every answer.
pub(super) async fn publish(schedule: Schedule) -> Result<Published, String> {
    let schedule = Arc::new(schedule);
    let counters = Arc::new(Counters {
        per_topic: (0..schedule.topics).map(|_| AtomicU64::new(0)).collect(),
        transport: AtomicU64::new(0),
        connect_failures: AtomicU64::new(0),
        by_status: Mutex::new(BTreeMap::new()),
        first_error: Mutex::new(None),
    });
    let concurrency = schedule.concurrency.max(1);
    let permits = Arc::new(Semaphore::new(concurrency));
    let client = client(concurrency);
    let runtime = tokio::runtime::Handle::current();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    {
        let (schedule, counters, permits) = (schedule.clone(), counters.clone(), permits.clone());
        std::thread::Builder::new()
            .name("fanout-publisher".into())
            .spawn(move || {
                let pacing = pace(&runtime, &schedule, &counters, &permits, &client);
                let _ = done_tx.send(pacing);
            })
            .map_err(|e| format!("cannot start the publisher thread: {e}"))?;
    }
    let pacing = done_rx
        .await
        .map_err(|_| "the publisher thread failed".to_owned())?;
    // Every answer is in once every permit is back.
    let all = u32::try_from(concurrency).unwrap_or(u32::MAX);
    let _all = permits
        .acquire_many(all)
        .await
        .map_err(|_| "the publisher's requests were abandoned".to_owned())?;
    let elapsed_s = pacing.start.elapsed().as_secs_f64();

    let per_topic: Vec<u64> = counters
        .per_topic
        .iter()
        .map(|n| n.load(Ordering::Relaxed))
        .collect();
    let ok = per_topic.iter().sum();
    let by_status = std::mem::take(
        &mut *counters
            .by_status
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    let transport = counters.transport.load(Ordering::Relaxed);
    let failed = transport + by_status.values().sum::<u64>();
    let first_error = counters
        .first_error
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    Ok(Published {
        ok,
        failed,
        unreachable: ok == 0
            && schedule.count > 0
            && counters.connect_failures.load(Ordering::Relaxed) == schedule.count,
        by_status,
        transport,
        first_error,
        lag_last_ms: pacing.lag_last.as_secs_f64() * 1000.0,
        lag_max_ms: pacing.lag_max.as_secs_f64() * 1000.0,
        elapsed_s,
        per_topic,
        start_us: pacing.start_us,
    })
}

/// Sends each update at its due time (on the pacing thread).
fn pace(
    runtime: &tokio::runtime::Handle,
    schedule: &Arc<Schedule>,
    counters: &Arc<Counters>,
    permits: &Arc<Semaphore>,
    client: &BenchClient,
) -> Pacing {
    let start = Instant::now();
    let start_us = unix_micros();
    let mut pacing = Pacing {
        start,
        start_us,
        lag_last: Duration::ZERO,
        lag_max: Duration::ZERO,
    };
    for seq in 0..schedule.count {
        let offset = Duration::from_secs_f64(seq as f64 / schedule.rate);
        let due = start + offset;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let Ok(permit) = runtime.block_on(permits.clone().acquire_owned()) else {
            break;
        };
        let lag = Instant::now().saturating_duration_since(due);
        pacing.lag_last = lag;
        pacing.lag_max = pacing.lag_max.max(lag);
        let sent_us = start_us + u64::try_from(offset.as_micros()).unwrap_or(u64::MAX);
        runtime.spawn(send(
            client.clone(),
            schedule.clone(),
            counters.clone(),
            seq,
            sent_us,
            permit,
        ));
    }
    pacing
}

/// Publishes update `seq` and counts the answer.
async fn send(
    client: BenchClient,
    schedule: Arc<Schedule>,
    counters: Arc<Counters>,
    seq: u64,
    sent_us: u64,
    _permit: OwnedSemaphorePermit,
) {
    let topic = seq % schedule.topics.max(1);
    let data = payload(seq, sent_us, schedule.size);
    let target_count = schedule.targets.len().max(1) as u64;
    let Some(target) = usize::try_from(seq % target_count)
        .ok()
        .and_then(|i| schedule.targets.get(i))
    else {
        return;
    };
    let mut request = http::Request::new(Full::new(Bytes::new()));
    *request.method_mut() = http::Method::POST;
    match target {
        PublishTo::Mercure { uri, authorization } => {
            let body = format!(
                "topic={}&data={}",
                encode(&schedule.names.name(topic)),
                encode(&data)
            );
            *request.body_mut() = Full::new(Bytes::from(body));
            *request.uri_mut() = uri.clone();
            let headers = request.headers_mut();
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
            headers.insert(AUTHORIZATION, authorization.clone());
        }
        PublishTo::Raw(template) => {
            let url = template.replace(TOPIC_PLACEHOLDER, &schedule.names.in_url(topic));
            match url.parse::<Uri>() {
                Ok(uri) => *request.uri_mut() = uri,
                Err(e) => {
                    counters.transport.fetch_add(1, Ordering::Relaxed);
                    counters.fail(|| format!("invalid publish URL {url:?}: {e}"));
                    return;
                }
            }
            *request.body_mut() = Full::new(Bytes::from(data));
            request
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        }
    }
    let response = match client.request(request).await {
        Ok(r) => r,
        Err(e) => {
            counters.transport.fetch_add(1, Ordering::Relaxed);
            if e.is_connect() {
                counters.connect_failures.fetch_add(1, Ordering::Relaxed);
            }
            counters.fail(|| format!("a publish got no answer: {}", root_cause(&e)));
            return;
        }
    };
    let status = response.status();
    let body = match response.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            counters.transport.fetch_add(1, Ordering::Relaxed);
            counters.fail(|| format!("reading a publish answer failed: {}", root_cause(&e)));
            return;
        }
    };
    if status.is_success() {
        if let Some(n) = usize::try_from(topic)
            .ok()
            .and_then(|t| counters.per_topic.get(t))
        {
            n.fetch_add(1, Ordering::Relaxed);
        }
    } else {
        *counters
            .by_status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(status.as_u16())
            .or_insert(0) += 1;
        counters.fail(|| {
            let text = String::from_utf8_lossy(&body);
            let text: String = text.trim().chars().take(200).collect();
            format!("a publish was answered {status}: {text}")
        });
    }
}
