//! `herald bench publish`: closed-loop publish load.
//!
//! C publishers, each on its own keep-alive HTTP/1.1 connection, POST Mercure form updates one
//! after the other (the next as soon as the previous is answered) until N have been sent in all.
//! Every answered-200 publish's latency (request sent → whole answer read) is recorded in an HDR
//! histogram at microsecond resolution. Non-200 answers are counted by status; the first one is
//! printed once. A refused connection ends the run with one line and exit code 1.
//!
//! A plain `http://` hub is driven by a minimal HTTP/1.1 client of this module (one task, one
//! write and usually one read per publish, reusing its buffers), so that the generator, which
//! shares the machine with the hub, costs as little CPU per publish as possible. An `https://`
//! hub goes through hyper's client.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};

use super::finish;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::http1;
use super::{
    client, clock_ticks_per_second, encode, histogram, payload, publisher_token, root_cause,
    thousands, topic, unix_micros, Latency, ProcSample, ProcUsage,
};

/// Arguments of `herald bench publish`.
#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// The hub's Mercure endpoint.
    #[arg(
        long,
        env = "HERALD_HUB",
        default_value = "http://127.0.0.1:8080/.well-known/mercure"
    )]
    hub: String,
    /// Publisher JWT; default: one allowed to publish everywhere, minted from the key in --data-dir.
    #[arg(long, env = "HERALD_JWT", hide_env_values = true)]
    jwt: Option<String>,
    /// Where `herald serve` keeps its key (used when --jwt is not given).
    #[arg(long, env = "HERALD_DATA_DIR", default_value = "./herald-data")]
    data_dir: PathBuf,
    /// Updates to publish in all.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    count: u64,
    /// Concurrent publishers, each with its own connection and one request in flight.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    concurrency: u32,
    /// Bytes of each update's data: JSON with the sequence number and send time, padded.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Spread the updates over this many topics, `urn:herald:bench:0` ….
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    topics: u64,
    /// The hub's process id: report its CPU time used during the run and its memory.
    #[arg(long)]
    pid: Option<u32>,
    /// Print the report as one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs the benchmark and prints its report. Exit code 1 when it could not run or when any
/// publish failed.
pub async fn run(args: PublishArgs) -> ExitCode {
    let outcome = bench(&args).await;
    finish(
        outcome.as_ref().map(|r| (r, r.table(), r.failed == 0)),
        args.json,
    )
}

/// What one publisher needs; shared by all of them.
struct Plan {
    uri: Uri,
    authorization: HeaderValue,
    /// The form-encoded `topic=…&data=` prefix of each topic's bodies.
    prefixes: Vec<String>,
    count: u64,
    size: usize,
    /// The next sequence number to publish.
    next: AtomicU64,
    /// Set to stop every publisher (the hub cannot be reached).
    stop: AtomicBool,
    /// Whether a failure was printed already.
    failure_printed: AtomicBool,
    /// Why the hub could not be reached, if it could not.
    unreachable: Mutex<Option<String>>,
}

impl Plan {
    /// The body prefix of update `seq` (its topic's; updates go round the topics).
    fn prefix(&self, seq: u64) -> &str {
        let topics = self.prefixes.len() as u64;
        usize::try_from(seq % topics.max(1))
            .ok()
            .and_then(|i| self.prefixes.get(i))
            .map_or("", String::as_str)
    }
}

/// What one publisher measured.
struct Tally {
    latency: Histogram<u64>,
    ok: u64,
    by_status: BTreeMap<u16, u64>,
    transport: u64,
}

/// The result of a run (also its `--json` form).
#[derive(Debug, Serialize)]
struct Report {
    /// Always `"publish"`.
    scenario: &'static str,
    /// The hub's endpoint.
    hub: String,
    /// Updates published (answered or failed).
    count: u64,
    /// Concurrent publishers.
    concurrency: u32,
    /// Bytes of data per update.
    size: usize,
    /// Topics the updates were spread over.
    topics: u64,
    /// Publishes answered 200.
    ok: u64,
    /// Publishes not answered 200.
    failed: u64,
    /// The failures by cause.
    failures: Failures,
    /// Wall-clock time of the run, in seconds.
    elapsed_s: f64,
    /// `ok` per second of `elapsed_s`.
    updates_per_s: f64,
    /// Latency of the publishes answered 200, in microseconds (every one recorded).
    latency_us: Latency,
    /// The hub process's usage, with `--pid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    hub_process: Option<HubProcess>,
    /// This generator's own usage (it shares the machine with the hub).
    generator_process: ProcUsage,
}

/// Failed publishes by cause.
#[derive(Debug, Serialize)]
struct Failures {
    /// Answers other than 200, by status code.
    by_status: BTreeMap<u16, u64>,
    /// Requests that got no answer (connection reset, unreadable answer).
    transport: u64,
}

/// The hub process's usage during the run.
#[derive(Debug, Serialize)]
struct HubProcess {
    /// Its process id.
    pid: u32,
    /// What it used.
    #[serde(flatten)]
    usage: ProcUsage,
}

async fn bench(args: &PublishArgs) -> Result<Report, String> {
    let uri: Uri = args
        .hub
        .parse()
        .map_err(|e| format!("invalid --hub URL {:?}: {e}", args.hub))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(format!(
            "invalid --hub URL {:?}: expected http://HOST[:PORT]/PATH or https://…",
            args.hub
        ));
    }
    let token = publisher_token(args.jwt.as_deref(), &args.data_dir)?;
    let authorization = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| "the JWT contains characters not allowed in an HTTP header".to_owned())?;
    let prefixes = (0..args.topics)
        .map(|i| format!("topic={}&data=", encode(&topic(i))))
        .collect();
    let concurrency = usize::try_from(args.concurrency).unwrap_or(usize::MAX);
    let ticks = clock_ticks_per_second();
    let hub_before = match args.pid {
        Some(pid) => {
            Some(ProcSample::read(&pid.to_string()).map_err(|e| format!("--pid {pid}: {e}"))?)
        }
        None => None,
    };
    let own_before = ProcSample::read("self")?;

    let plan = Arc::new(Plan {
        uri,
        authorization,
        prefixes,
        count: args.count,
        size: args.size,
        next: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        failure_printed: AtomicBool::new(false),
        unreachable: Mutex::new(None),
    });
    let raw = match plan.uri.scheme_str() {
        Some("http") => Some(Arc::new(RawTarget::new(&plan)?)),
        _ => None,
    };
    let start = Instant::now();
    let mut publishers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let latency = histogram()?;
        publishers.push(match &raw {
            Some(target) => tokio::spawn(raw_publisher(plan.clone(), target.clone(), latency)),
            None => tokio::spawn(publisher(plan.clone(), latency)),
        });
    }
    let mut tallies = Vec::with_capacity(concurrency);
    for p in publishers {
        tallies.push(p.await.map_err(|e| format!("a publisher failed: {e}"))?);
    }
    let elapsed_s = start.elapsed().as_secs_f64();

    if let Some(cause) = plan
        .unreachable
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
    {
        return Err(format!("cannot connect to {}: {cause}", args.hub));
    }

    let mut latency = histogram()?;
    let mut ok = 0;
    let mut by_status = BTreeMap::new();
    let mut transport = 0;
    for t in tallies {
        latency
            .add(&t.latency)
            .map_err(|e| format!("cannot merge latency histograms: {e}"))?;
        ok += t.ok;
        transport += t.transport;
        for (status, n) in t.by_status {
            *by_status.entry(status).or_insert(0) += n;
        }
    }
    let failed = transport + by_status.values().sum::<u64>();

    let hub_process = match (args.pid, hub_before) {
        (Some(pid), Some(before)) => {
            let after = ProcSample::read(&pid.to_string())
                .map_err(|e| format!("--pid {pid} (after the run): {e}"))?;
            Some(HubProcess {
                pid,
                usage: ProcUsage::between(before, after, elapsed_s, ticks),
            })
        }
        _ => None,
    };
    let own_after = ProcSample::read("self")?;

    Ok(Report {
        scenario: "publish",
        hub: args.hub.clone(),
        count: ok + failed,
        concurrency: args.concurrency,
        size: args.size,
        topics: args.topics,
        ok,
        failed,
        failures: Failures {
            by_status,
            transport,
        },
        elapsed_s,
        updates_per_s: if elapsed_s > 0.0 {
            ok as f64 / elapsed_s
        } else {
            0.0
        },
        latency_us: Latency::of(&latency),
        hub_process,
        generator_process: ProcUsage::between(own_before, own_after, elapsed_s, ticks),
    })
}

/// One publisher: its own client (so its own connection), one request at a time, until the plan's
/// count is reached or the run is stopped.
async fn publisher(plan: Arc<Plan>, mut latency: Histogram<u64>) -> Tally {
    let client = client(1);
    let mut by_status = BTreeMap::new();
    let mut ok = 0;
    let mut transport = 0;
    while !plan.stop.load(Ordering::Relaxed) {
        let seq = plan.next.fetch_add(1, Ordering::Relaxed);
        if seq >= plan.count {
            break;
        }
        let prefix = plan.prefix(seq);
        let sent_us = unix_micros();
        let body = format!("{prefix}{}", encode(&payload(seq, sent_us, plan.size)));
        let mut request = http::Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = plan.uri.clone();
        let headers = request.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert(AUTHORIZATION, plan.authorization.clone());

        let sent = Instant::now();
        let response = match client.request(request).await {
            Ok(r) => r,
            Err(e) if e.is_connect() => {
                plan.stop.store(true, Ordering::Relaxed);
                let mut unreachable = plan
                    .unreachable
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                unreachable.get_or_insert_with(|| root_cause(&e));
                break;
            }
            Err(e) => {
                transport += 1;
                report_first_failure(&plan, || {
                    format!("a publish got no answer: {}", root_cause(&e))
                });
                continue;
            }
        };
        let status = response.status();
        let body = match response.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                transport += 1;
                report_first_failure(&plan, || {
                    format!("reading an answer failed: {}", root_cause(&e))
                });
                continue;
            }
        };
        if status == StatusCode::OK {
            let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
            latency.saturating_record(micros.max(1));
            ok += 1;
        } else {
            count_failure(&plan, &mut by_status, status.as_u16(), status, &body);
        }
    }
    Tally {
        latency,
        ok,
        by_status,
        transport,
    }
}

/// Where the minimal client connects, and the start of every request it sends.
struct RawTarget {
    /// The host's addresses, tried in order at each connect.
    addrs: Vec<SocketAddr>,
    /// The request line and headers up to `Content-Length: ` (its value, the blank line and the
    /// body follow).
    head: Vec<u8>,
}

impl RawTarget {
    fn new(plan: &Plan) -> Result<Self, String> {
        let uri = &plan.uri;
        let authority = uri
            .authority()
            .ok_or_else(|| format!("invalid --hub URL {uri}: no host"))?;
        let port = authority.port_u16().unwrap_or(80);
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let addrs: Vec<SocketAddr> = (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect();
        if addrs.is_empty() {
            return Err(format!("{host} has no address"));
        }
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: {authority}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nAuthorization: "
        )
        .into_bytes();
        head.extend_from_slice(plan.authorization.as_bytes());
        head.extend_from_slice(b"\r\nContent-Length: ");
        Ok(Self { addrs, head })
    }
}

/// A publisher with the minimal client: like [`publisher`], on one TCP connection it reopens
/// after a transport failure.
async fn raw_publisher(
    plan: Arc<Plan>,
    target: Arc<RawTarget>,
    mut latency: Histogram<u64>,
) -> Tally {
    let mut by_status = BTreeMap::new();
    let mut ok = 0;
    let mut transport = 0;
    let mut connection: Option<TcpStream> = None;
    let mut request = Vec::with_capacity(target.head.len() + 64 + 3 * plan.size);
    let mut answer = Answer::default();
    while !plan.stop.load(Ordering::Relaxed) {
        let seq = plan.next.fetch_add(1, Ordering::Relaxed);
        if seq >= plan.count {
            break;
        }
        let stream = match &mut connection {
            Some(stream) => stream,
            None => match TcpStream::connect(target.addrs.as_slice()).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    answer.clear();
                    connection.insert(stream)
                }
                Err(e) => {
                    plan.stop.store(true, Ordering::Relaxed);
                    let mut unreachable = plan
                        .unreachable
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    unreachable.get_or_insert_with(|| e.to_string());
                    break;
                }
            },
        };
        let prefix = plan.prefix(seq);
        let sent_us = unix_micros();
        let data = encode(&payload(seq, sent_us, plan.size));
        request.clear();
        request.extend_from_slice(&target.head);
        request.extend_from_slice((prefix.len() + data.len()).to_string().as_bytes());
        request.extend_from_slice(b"\r\n\r\n");
        request.extend_from_slice(prefix.as_bytes());
        request.extend_from_slice(data.as_bytes());

        let sent = Instant::now();
        let status = match exchange(stream, &request, &mut answer).await {
            Ok(status) => status,
            Err(e) => {
                transport += 1;
                connection = None;
                report_first_failure(&plan, || format!("a publish got no answer: {e}"));
                continue;
            }
        };
        if status == 200 {
            let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
            latency.saturating_record(micros.max(1));
            ok += 1;
        } else {
            count_failure(&plan, &mut by_status, status, status, answer.body());
        }
    }
    Tally {
        latency,
        ok,
        by_status,
        transport,
    }
}

/// The read buffer of the minimal client and where the last answer's body is in it.
#[derive(Default)]
struct Answer {
    buf: Vec<u8>,
    /// Bytes of `buf` read from the socket.
    filled: usize,
    /// The last answer's body, as a range of `buf`.
    body: std::ops::Range<usize>,
}

impl Answer {
    fn clear(&mut self) {
        self.filled = 0;
        self.body = 0..0;
    }

    fn body(&self) -> &[u8] {
        self.buf.get(self.body.clone()).unwrap_or_default()
    }
}

/// Sends one request and reads its answer (a `Content-Length` body); returns the status.
async fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    answer: &mut Answer,
) -> Result<u16, String> {
    // Bytes after the previous answer (there should be none: one request at a time).
    let used = answer.body.end.min(answer.filled);
    answer.buf.copy_within(used..answer.filled, 0);
    answer.filled -= used;
    answer.body = 0..0;
    stream
        .write_all(request)
        .await
        .map_err(|e| format!("writing the request: {e}"))?;
    loop {
        if let Some(head) = http1::parse_head(&answer.buf[..answer.filled])? {
            let http1::Framing::Length(length) = head.framing else {
                return Err("the answer has no Content-Length".into());
            };
            let end = usize::try_from(length)
                .ok()
                .and_then(|n| n.checked_add(head.len))
                .filter(|&end| end <= http1::MAX_HEAD + (1 << 20))
                .ok_or("the answer's body is too long")?;
            if answer.filled >= end {
                answer.body = head.len..end;
                return Ok(head.status);
            }
        }
        if answer.buf.len() - answer.filled < 1024 {
            let grown = (answer.buf.len() * 2).max(4096);
            answer.buf.resize(grown, 0);
        }
        let n = stream
            .read(&mut answer.buf[answer.filled..])
            .await
            .map_err(|e| format!("reading the answer: {e}"))?;
        if n == 0 {
            return Err("the hub closed the connection".into());
        }
        answer.filled += n;
    }
}

/// Prints `message()` on stderr if no failure was printed yet.
/// Counts a publish the hub refused with `code`, and prints the first one (`shown` and the start
/// of the body).
fn count_failure(
    plan: &Plan,
    by_status: &mut BTreeMap<u16, u64>,
    code: u16,
    shown: impl std::fmt::Display,
    body: &[u8],
) {
    *by_status.entry(code).or_insert(0) += 1;
    report_first_failure(plan, || {
        let text = String::from_utf8_lossy(body);
        let text: String = text.trim().chars().take(500).collect();
        format!("first failed publish: the hub answered {shown}: {text}")
    });
}

fn report_first_failure(plan: &Plan, message: impl FnOnce() -> String) {
    if !plan.failure_printed.swap(true, Ordering::Relaxed) {
        eprintln!("herald: {}", message());
    }
}

impl Report {
    /// The human-readable report.
    fn table(&self) -> String {
        let mut rows: Vec<(String, String)> = Vec::new();
        let plural = |n: u64, word: &str| {
            if n == 1 {
                format!("{n} {word}")
            } else {
                format!("{} {word}s", thousands(n))
            }
        };
        rows.push((
            "updates".into(),
            format!(
                "{} sent, {} ok, {} failed",
                thousands(self.count),
                thousands(self.ok),
                thousands(self.failed)
            ),
        ));
        if self.failed > 0 {
            let mut causes: Vec<String> = self
                .failures
                .by_status
                .iter()
                .map(|(status, n)| format!("{status}: {}", thousands(*n)))
                .collect();
            if self.failures.transport > 0 {
                causes.push(format!("no answer: {}", thousands(self.failures.transport)));
            }
            rows.push(("failures".into(), causes.join(", ")));
        }
        rows.push(("elapsed".into(), format!("{:.3} s", self.elapsed_s)));
        rows.push((
            "throughput".into(),
            format!("{} updates/s", thousands(self.updates_per_s.round() as u64)),
        ));
        let l = &self.latency_us;
        for (name, value) in [
            ("p50", l.p50),
            ("p90", l.p90),
            ("p99", l.p99),
            ("p99.9", l.p999),
            ("max", l.max),
        ] {
            rows.push((
                format!("latency {name}"),
                format!("{} µs", thousands(value)),
            ));
        }
        if let Some(hub) = &self.hub_process {
            rows.push((format!("hub (pid {})", hub.pid), hub.usage.describe()));
        }
        rows.push(("generator".into(), self.generator_process.describe()));

        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = format!(
            "herald bench publish → {}\n  {}, {}, {}-byte data, {}\n\n",
            self.hub,
            plural(self.count, "update"),
            plural(u64::from(self.concurrency), "publisher"),
            self.size,
            plural(self.topics, "topic"),
        );
        for (k, v) in rows {
            out.push_str(&format!("  {k:<width$}  {v}\n"));
        }
        out
    }
}
