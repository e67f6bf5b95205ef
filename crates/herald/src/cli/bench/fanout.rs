//! `herald bench fanout`: the push path end to end, from publish to every subscriber.
//!
//! N subscribers (raw HTTP/1.1 event streams, in P worker processes: [`super::worker`]) listen to
//! K topics; once all are connected, the parent publishes updates open-loop at R per second
//! ([`super::open_loop`]), each carrying its sequence number and due time. Then every worker
//! waits for its subscribers to receive all that was published (at most the drain time) and
//! reports what arrived: distinct deliveries, missing, duplicates, out of order, and an HDR
//! histogram of publish → receive latency. With `--rate 0` nothing is published: the run measures
//! what holding N idle subscribers costs the server (`--pid`: RSS per subscriber).
//!
//! Subscribers and publishes go round-robin over the hubs (`--hub` repeated: cluster nodes), and
//! the subscribers' sockets round-robin over source addresses 127.0.0.1 … 127.0.0.A, so that no
//! source address holds more than 10,000 connections.

use super::finish;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use http::{HeaderValue, Uri};

use super::http1::{resolve_ipv4, Target};
use super::open_loop::{self, PublishTo, Published, Schedule};
use super::protocol::{
    add_counts, order_mismatches, Command, Connected, Message, StallReport, TopicNames,
    WorkerReport, TOPIC_PLACEHOLDER,
};
use super::subscriber::CONNECT_TIMEOUT;
use super::workers::{WorkerPlan, Workers};
use super::{clock_ticks_per_second, histogram, publisher_token, unix_micros, Latency, ProcSample};

mod report;

pub(super) use report::Report;
use report::{Generator, HubProcess};

/// Most subscribers per worker process (each is an open file; the limit is 20,000 per process).
const MAX_PER_PROCESS: u64 = 19_000;
/// Most connections from one source address (the hub's default per-address limit is 10,000).
const MAX_PER_SOURCE: u64 = 10_000;
/// Subscribers per worker process and per source address when not told.
const DEFAULT_SHARE: u64 = 9_000;
/// Most publish requests in flight.
const PUBLISH_CONCURRENCY: usize = 64;

/// Arguments of `herald bench fanout`.
#[derive(Debug, clap::Args)]
pub struct FanoutArgs {
    /// The Mercure endpoint; repeat for cluster nodes (subscribers and publishes go round-robin).
    #[arg(
        long = "hub",
        env = "HERALD_HUB",
        default_value = "http://127.0.0.1:8080/.well-known/mercure"
    )]
    hubs: Vec<String>,
    /// Subscribers in all (0: publish only).
    #[arg(long, default_value_t = 1000)]
    subscribers: u64,
    /// Topics: subscriber i listens to topic i % K, update s goes to topic s % K.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    topics: u64,
    /// Updates per second, published open-loop (0: publish nothing and measure idle subscribers).
    #[arg(long, default_value_t = 100.0, value_parser = non_negative)]
    rate: f64,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10.0, value_parser = non_negative)]
    duration: f64,
    /// Longest wait for the deliveries after the last publish, in seconds.
    #[arg(long, default_value_t = 5.0, value_parser = non_negative)]
    drain: f64,
    /// With --rate 0: seconds to hold the subscribers once all are connected.
    #[arg(long, default_value_t = 2.0, value_parser = non_negative)]
    hold: f64,
    /// Bytes of each update's data: JSON with the sequence number and send time, padded.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Most new connections per second, over all workers (0: no limit).
    #[arg(long, default_value_t = 10_000.0, value_parser = non_negative)]
    connect_rate: f64,
    /// Subscriber worker processes (default: one per 9,000 subscribers).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    processes: Option<u32>,
    /// Bind subscriber sockets to 127.0.0.1 … 127.0.0.A, round-robin (default: one per 9,000
    /// subscribers).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    source_addrs: Option<u32>,
    /// Percentage of subscribers that stop reading after their first event (sockets stay open).
    #[arg(long, default_value_t = 0.0, value_parser = percentage)]
    stall: f64,
    /// Subscribe URL template for other servers, `{topic}` replaced by the topic name (`bench{i}`);
    /// repeatable; overrides the Mercure subscribe URL.
    #[arg(long = "subscribe-url")]
    subscribe_urls: Vec<String>,
    /// Publish URL template for other servers: the data is POSTed as a text/plain body, no JWT;
    /// repeatable.
    #[arg(long = "publish-url")]
    publish_urls: Vec<String>,
    /// Subscribers reopen their stream when it ends or fails after connecting (after 0-250 ms),
    /// with Last-Event-ID.
    #[arg(long)]
    reconnect: bool,
    /// The server's process id (repeatable, one per node): its CPU and memory.
    #[arg(long = "pid")]
    pids: Vec<u32>,
    /// Publisher JWT; default: one allowed to publish everywhere, minted from the key in --data-dir.
    #[arg(long, env = "HERALD_JWT", hide_env_values = true)]
    jwt: Option<String>,
    /// Where `herald serve` keeps its key (used when --jwt is not given).
    #[arg(long, env = "HERALD_DATA_DIR", default_value = "./herald-data")]
    data_dir: std::path::PathBuf,
    /// Print the report as one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

fn non_negative(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{value:?} is not a number ≥ 0")),
    }
}

fn percentage(value: &str) -> Result<f64, String> {
    match non_negative(value) {
        Ok(v) if v <= 100.0 => Ok(v),
        _ => Err(format!("{value:?} is not a percentage (0 to 100)")),
    }
}

/// Runs the benchmark and prints its report. Exit code 1 when it could not run, when a
/// subscriber could not connect, or when an update went missing or arrived twice.
pub async fn run(args: FanoutArgs) -> ExitCode {
    let outcome = bench(&args).await;
    finish(
        outcome.as_ref().map(|r| (r, r.table(), r.passed())),
        args.json,
    )
}

/// `ceil(a / b)`.
fn div_ceil(a: u64, b: u64) -> u64 {
    a.div_ceil(b.max(1))
}

/// The process ids' samples, in `--pid` order.
fn sample(pids: &[u32], when: &str) -> Result<Vec<ProcSample>, String> {
    pids.iter()
        .map(|pid| {
            ProcSample::read(&pid.to_string()).map_err(|e| format!("--pid {pid} ({when}): {e}"))
        })
        .collect()
}

async fn bench(args: &FanoutArgs) -> Result<Report, String> {
    let n = args.subscribers;
    let processes = u64::from(args.processes.unwrap_or(0));
    let processes = if n == 0 {
        0
    } else if processes == 0 {
        div_ceil(n, DEFAULT_SHARE)
    } else {
        processes.min(n)
    };
    if processes > 0 && div_ceil(n, processes) > MAX_PER_PROCESS {
        return Err(format!(
            "{} subscribers per process is too many (open files are limited to 20,000 per process): \
             use --processes {} or more",
            div_ceil(n, processes),
            div_ceil(n, MAX_PER_PROCESS)
        ));
    }
    let source_addrs = args
        .source_addrs
        .map_or_else(|| div_ceil(n, DEFAULT_SHARE).max(1), u64::from);
    if div_ceil(n, source_addrs) > MAX_PER_SOURCE {
        return Err(format!(
            "{} subscribers per source address is too many (at most {MAX_PER_SOURCE}): use \
             --source-addrs {} or more",
            div_ceil(n, source_addrs),
            div_ceil(n, MAX_PER_SOURCE)
        ));
    }
    if args.rate > 0.0 && args.duration <= 0.0 {
        return Err("--duration must be more than 0 when --rate is".into());
    }
    let templated = !args.subscribe_urls.is_empty() || !args.publish_urls.is_empty();
    let names = if templated {
        TopicNames::Short
    } else {
        TopicNames::Mercure
    };
    let subscribe_templates: Vec<String> = if args.subscribe_urls.is_empty() {
        args.hubs
            .iter()
            .map(|hub| {
                let sep = if hub.contains('?') { '&' } else { '?' };
                format!("{hub}{sep}topic={{topic}}")
            })
            .collect()
    } else {
        args.subscribe_urls.clone()
    };
    for template in &subscribe_templates {
        Target::parse(
            &template.replace(TOPIC_PLACEHOLDER, &names.in_url(0)),
            resolve_ipv4,
        )?;
    }
    let count = (args.rate * args.duration).floor() as u64;
    let publish_to = publish_targets(args, count)?;

    let ticks = clock_ticks_per_second();
    let hubs_before = sample(&args.pids, "before the subscribers connect")?;

    let mut workers = Workers::spawn(&WorkerPlan {
        templates: &subscribe_templates,
        short_topics: templated,
        subscribers: n,
        processes,
        topics: args.topics,
        source_addrs: u32::try_from(source_addrs).unwrap_or(u32::MAX),
        connect_rate: args.connect_rate,
        stall: args.stall,
        reconnect: args.reconnect,
        since_us: unix_micros(),
    })?;
    let connect_limit = Duration::from_secs_f64(
        n as f64 / args.connect_rate.max(1.0) + 2.0 * CONNECT_TIMEOUT.as_secs_f64(),
    );
    let connected: Vec<Connected> = workers
        .collect("connected", connect_limit, |m| match m {
            Message::Connected(c) => Ok(c),
            other => Err(other),
        })
        .await?;
    let subscribers_connected: u64 = connected.iter().map(|c| c.connected).sum();
    let subscribers_failed: u64 = connected.iter().map(|c| c.failed).sum();
    let first_error = connected.iter().find_map(|c| c.first_error.clone());
    if n > 0 && subscribers_connected == 0 {
        return Err(format!(
            "no subscriber could connect: {}",
            first_error.unwrap_or_else(|| "no reason given".into())
        ));
    }
    let connect_ms = connected.iter().map(|c| c.connect_ms).fold(0.0, f64::max);
    let mut per_target = vec![0u64; subscribe_templates.len()];
    for c in &connected {
        for (total, k) in per_target.iter_mut().zip(&c.per_target) {
            *total += k;
        }
    }

    // The measurement window: from all connected to the end of the drain.
    let window_start = Instant::now();
    let hubs_connected_at = sample(&args.pids, "after the subscribers connected")?;
    let own_start = ProcSample::read("self")?;
    let hubs_connected = if args.rate == 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
        sample(&args.pids, "after the hold")?
    } else {
        hubs_connected_at.clone()
    };

    let published = match (count, publish_to) {
        (c, Some(targets)) if c > 0 => {
            let published = open_loop::publish(Schedule {
                targets,
                names,
                topics: args.topics,
                rate: args.rate,
                count,
                size: args.size,
                concurrency: PUBLISH_CONCURRENCY.min(usize::try_from(count).unwrap_or(usize::MAX)),
            })
            .await?;
            if published.unreachable {
                return Err(format!(
                    "cannot publish: {}",
                    published.first_error.as_deref().unwrap_or("no connection")
                ));
            }
            published
        }
        _ => Published {
            per_topic: vec![0; usize::try_from(args.topics).unwrap_or(0)],
            ..Published::default()
        },
    };

    let drain = Duration::from_secs_f64(args.drain);
    workers.send(&Command::Finish {
        published: published.per_topic.clone(),
        drain_ms: u64::try_from(drain.as_millis()).unwrap_or(u64::MAX),
    })?;
    let reports: Vec<Box<WorkerReport>> = workers
        .collect("report", drain + Duration::from_secs(60), |m| match m {
            Message::Report(r) => Ok(r),
            other => Err(other),
        })
        .await?;
    let window_s = window_start.elapsed().as_secs_f64();
    let hubs_after = sample(&args.pids, "after the run")?;
    let own_after = ProcSample::read("self")?;
    let stalls: Vec<StallReport> = workers
        .collect("stalled", Duration::from_secs(60), |m| match m {
            Message::Stalled(s) => Ok(s),
            other => Err(other),
        })
        .await?;
    workers.close().await;

    let mut latency = histogram()?;
    for r in &reports {
        add_counts(&mut latency, &r.latency);
    }
    let sum = |f: fn(&WorkerReport) -> u64| reports.iter().map(|r| f(r)).sum::<u64>();
    let delivered = sum(|r| r.delivered);
    let (order_checked, order_mismatches) =
        order_mismatches(reports.iter().flat_map(|r| &r.orders));
    let last_delivery_us = reports
        .iter()
        .map(|r| r.last_delivery_us)
        .max()
        .unwrap_or(0);
    let delivery_window_s = published
        .elapsed_s
        .max(last_delivery_us.saturating_sub(published.start_us) as f64 / 1e6);

    let hub_processes = args
        .pids
        .iter()
        .enumerate()
        .map(|(k, &pid)| {
            let on_node = if args.pids.len() == per_target.len() {
                per_target.get(k).copied().unwrap_or(0)
            } else {
                subscribers_connected / args.pids.len() as u64
            };
            HubProcess::new(
                pid,
                hubs_before.get(k).copied(),
                hubs_connected.get(k).copied(),
                hubs_connected_at.get(k).copied(),
                hubs_after.get(k).copied(),
                window_s,
                ticks,
                on_node,
            )
        })
        .collect();
    let worker_ticks: u64 = reports
        .iter()
        .zip(&connected)
        .map(|(r, c)| r.cpu_ticks.saturating_sub(c.cpu_ticks))
        .sum();
    let own_ticks = own_after.cpu_ticks.saturating_sub(own_start.cpu_ticks);
    let reads: u64 = reports
        .iter()
        .zip(&connected)
        .map(|(r, c)| r.reads.saturating_sub(c.reads))
        .sum();
    let generator = Generator::new(
        processes + 1,
        (worker_ticks + own_ticks) as f64 / ticks,
        reads,
        window_s,
        own_after.rss_kib + sum(|r| r.rss_kib),
    );

    Ok(Report {
        scenario: "fanout",
        hubs: args.hubs.clone(),
        subscribe_urls: args.subscribe_urls.clone(),
        publish_urls: args.publish_urls.clone(),
        subscribers: n,
        topics: args.topics,
        rate: args.rate,
        duration_s: args.duration,
        size: args.size,
        processes,
        source_addrs,
        stall_percent: args.stall,
        reconnect: args.reconnect,
        subscribers_connected,
        subscribers_failed,
        first_error,
        connect_ms,
        connects_per_s: if connect_ms > 0.0 {
            subscribers_connected as f64 / (connect_ms / 1000.0)
        } else {
            0.0
        },
        stalled: stalls.iter().map(|s| s.stalled).sum(),
        stalled_cut_off: stalls.iter().map(|s| s.cut_off).sum(),
        updates_published: published.ok,
        updates_failed: published.failed,
        expected: sum(|r| r.expected),
        delivered,
        missing: sum(|r| r.missing),
        duplicates: sum(|r| r.duplicates),
        out_of_order: sum(|r| r.out_of_order),
        unexpected: sum(|r| r.unexpected),
        stale: sum(|r| r.stale),
        order_checked,
        order_mismatches,
        incomplete_subscribers: sum(|r| r.incomplete),
        delivered_per_s: if delivery_window_s > 0.0 {
            delivered as f64 / delivery_window_s
        } else {
            0.0
        },
        latency_us: Latency::of(&latency),
        reconnects: sum(|r| r.reconnects),
        reconnect_failures: sum(|r| r.reconnect_failures),
        disconnected: sum(|r| r.disconnected),
        first_disconnect: reports.iter().find_map(|r| r.first_disconnect.clone()),
        publish: published,
        window_s,
        hub_processes,
        generator,
    })
}

/// Where the updates go, or `None` when nothing is published. Fails early when the publisher
/// token or a URL is unusable.
fn publish_targets(args: &FanoutArgs, count: u64) -> Result<Option<Vec<PublishTo>>, String> {
    if count == 0 {
        return Ok(None);
    }
    if !args.publish_urls.is_empty() {
        for url in &args.publish_urls {
            let probe = url.replace(TOPIC_PLACEHOLDER, "bench0");
            check_url(&probe, "--publish-url")?;
        }
        return Ok(Some(
            args.publish_urls
                .iter()
                .cloned()
                .map(PublishTo::Raw)
                .collect(),
        ));
    }
    let token = publisher_token(args.jwt.as_deref(), &args.data_dir)?;
    let authorization = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| "the JWT contains characters not allowed in an HTTP header".to_owned())?;
    args.hubs
        .iter()
        .map(|hub| {
            Ok(PublishTo::Mercure {
                uri: check_url(hub, "--hub")?,
                authorization: authorization.clone(),
            })
        })
        .collect::<Result<Vec<_>, String>>()
        .map(Some)
}

fn check_url(url: &str, option: &str) -> Result<Uri, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("invalid {option} URL {url:?}: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(format!(
            "invalid {option} URL {url:?}: expected http://HOST[:PORT]/PATH or https://…"
        ));
    }
    Ok(uri)
}
