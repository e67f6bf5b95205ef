//! `herald bench`: a load generator that measures a hub.
//!
//! Each scenario lives in a sibling file: `publish.rs`, and `fanout.rs` with its parts (worker
//! processes in `workers.rs` and `worker.rs`, subscribers in `subscriber.rs`, `tally.rs` and
//! `http1.rs`, the publisher in `open_loop.rs`, their protocol in `protocol.rs`). They share what
//! is here: the HTTP client set-up, the publisher token, the benchmark payload, the latency summary
//! of an HDR histogram, and the hub process's CPU and memory read from `/proc`.

use std::path::Path;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hdrhistogram::Histogram;
use herald_hub::auth::{mint_hs256, TokenSpec};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

use super::keys;

mod fanout;
mod http1;
mod open_loop;
mod protocol;
mod publish;
mod scan;
mod subscriber;
mod tally;
mod worker;
mod workers;

/// Arguments of `herald bench`: which scenario to run.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    scenario: Scenario,
}

/// The scenarios of `herald bench`.
#[derive(Debug, clap::Subcommand)]
enum Scenario {
    /// Closed-loop publish load: C publishers POST N updates as fast as the hub answers.
    Publish(publish::PublishArgs),
    /// The push path end to end: N subscribers, open-loop publishing at R updates/s, delivery
    /// counts and publish → receive latency (or, with --rate 0, the cost of idle subscribers).
    Fanout(fanout::FanoutArgs),
    /// A subscriber worker process of `fanout` (started by it; JSON lines on stdin/stdout).
    #[command(hide = true)]
    FanoutWorker(worker::WorkerArgs),
}

/// Runs the chosen scenario and returns the process exit code.
pub async fn run(args: BenchArgs) -> ExitCode {
    match args.scenario {
        Scenario::Publish(args) => publish::run(args).await,
        Scenario::Fanout(args) => fanout::run(args).await,
        Scenario::FanoutWorker(args) => worker::run(args).await,
    }
}

/// Prints a scenario's outcome (its report as a table or as JSON, or the reason it could not run)
/// and gives the exit code: success only when the run completed and `passed`.
fn finish<R: Serialize>(outcome: Result<(&R, String, bool), &String>, json: bool) -> ExitCode {
    let (report, table, passed) = match outcome {
        Ok(done) => done,
        Err(message) => {
            eprintln!("herald: {message}");
            return ExitCode::FAILURE;
        }
    };
    if json {
        match serde_json::to_string_pretty(report) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("herald: cannot write the report: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{table}");
    }
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The HTTP client every benchmark connection uses: HTTP/1.1 keep-alive, `TCP_NODELAY`,
/// `http` or `https` (webpki roots).
type BenchClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A client keeping at most `max_idle` idle keep-alive connections to the hub.
fn client(max_idle: usize) -> BenchClient {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(max_idle)
        .build(https)
}

/// The publisher token: `jwt` if given, else one allowed to publish to every topic, minted from
/// the key `herald serve` keeps in `data_dir`.
fn publisher_token(jwt: Option<&str>, data_dir: &Path) -> Result<String, String> {
    if let Some(token) = jwt {
        return Ok(token.to_owned());
    }
    let key = keys::read_stored(data_dir)?.ok_or_else(|| {
        format!(
            "no publisher token: pass --jwt, or --data-dir where the hub's {} is",
            keys::KEY_FILE
        )
    })?;
    let spec = TokenSpec {
        publish: Some(vec!["*".into()]),
        subscribe: None,
        ttl_secs: Some(24 * 3600),
    };
    mint_hs256(key.as_bytes(), &spec).map_err(|e| e.to_string())
}

/// The topic of benchmark topic number `i`.
fn topic(i: u64) -> String {
    format!("urn:herald:bench:{i}")
}

/// Microseconds since the Unix epoch (0 if the clock is before it).
fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The data of benchmark update `seq`, sent at `sent_us` (µs since the Unix epoch):
/// `{"seq":N,"sent_us":T,"pad":"xx…"}`, padded to `size` bytes when `size` allows.
fn payload(seq: u64, sent_us: u64, size: usize) -> String {
    let mut data = format!("{{\"seq\":{seq},\"sent_us\":{sent_us},\"pad\":\"");
    const END: &str = "\"}";
    let pad = size.saturating_sub(data.len() + END.len());
    data.extend(std::iter::repeat_n('x', pad));
    data.push_str(END);
    data
}

/// Percent-encodes a form or query value.
fn encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A latency histogram in microseconds: 1 µs to 1 hour, 3 significant digits.
fn histogram() -> Result<Histogram<u64>, String> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3)
        .map_err(|e| format!("cannot create a latency histogram: {e}"))
}

/// Percentiles of a latency histogram, in microseconds.
#[derive(Debug, Clone, Copy, Serialize)]
struct Latency {
    /// How many samples.
    samples: u64,
    /// Arithmetic mean.
    mean: f64,
    /// Median.
    p50: u64,
    /// 90th percentile.
    p90: u64,
    /// 99th percentile.
    p99: u64,
    /// 99.9th percentile.
    p999: u64,
    /// Largest sample.
    max: u64,
}

impl Latency {
    /// Summarises `h`.
    fn of(h: &Histogram<u64>) -> Self {
        Self {
            samples: h.len(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// CPU time and memory of a process, read from `/proc/PID/stat` and `/proc/PID/status`.
#[derive(Debug, Clone, Copy)]
struct ProcSample {
    /// User plus system CPU time, in clock ticks.
    cpu_ticks: u64,
    /// Resident set size (`VmRSS`), in KiB.
    rss_kib: u64,
    /// Peak resident set size (`VmHWM`), in KiB.
    peak_rss_kib: u64,
    /// Write calls so far (`syscw` of `/proc/PID/io`: `write`, `writev`, `pwrite`…, not
    /// `send`/`sendmsg`), when that file is readable (it needs the process's owner or root).
    write_calls: Option<u64>,
}

impl ProcSample {
    /// Samples process `pid` (`"self"` for this one).
    fn read(pid: &str) -> Result<Self, String> {
        let stat_path = format!("/proc/{pid}/stat");
        let stat = std::fs::read_to_string(&stat_path)
            .map_err(|e| format!("cannot read {stat_path}: {e}"))?;
        // The command name (field 2) is in parentheses and may contain spaces: fields 3… follow the
        // last ')'. utime and stime are fields 14 and 15.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .ok_or_else(|| format!("unexpected format of {stat_path}"))?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| -> Result<u64, String> {
            fields
                .get(n - 3)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("unexpected format of {stat_path} (field {n})"))
        };
        let cpu_ticks = field(14)? + field(15)?;

        let status_path = format!("/proc/{pid}/status");
        let status = std::fs::read_to_string(&status_path)
            .map_err(|e| format!("cannot read {status_path}: {e}"))?;
        let kib = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        let write_calls = std::fs::read_to_string(format!("/proc/{pid}/io"))
            .ok()
            .and_then(|io| {
                io.lines()
                    .find_map(|l| l.strip_prefix("syscw:"))
                    .and_then(|v| v.trim().parse().ok())
            });
        Ok(Self {
            cpu_ticks,
            rss_kib: kib("VmRSS:"),
            peak_rss_kib: kib("VmHWM:"),
            write_calls,
        })
    }
}

/// Clock ticks per second of `/proc/PID/stat` times (`getconf CLK_TCK`; Linux's USER_HZ is 100).
fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// What a process used during a run.
#[derive(Debug, Clone, Copy, Serialize)]
struct ProcUsage {
    /// CPU time (user + system) used during the run, in seconds.
    cpu_s: f64,
    /// CPU time divided by the run's wall-clock time: 1.0 is one core busy all along.
    cores: f64,
    /// Resident set size at the end of the run, in KiB.
    rss_kib: u64,
    /// Peak resident set size of the process's life so far, in KiB.
    peak_rss_kib: u64,
}

impl ProcUsage {
    /// Usage between `before` and `after`, over `elapsed_s` seconds of wall-clock time.
    fn between(before: ProcSample, after: ProcSample, elapsed_s: f64, ticks_per_s: f64) -> Self {
        let cpu_s = after.cpu_ticks.saturating_sub(before.cpu_ticks) as f64 / ticks_per_s;
        Self {
            cpu_s,
            cores: if elapsed_s > 0.0 {
                cpu_s / elapsed_s
            } else {
                0.0
            },
            rss_kib: after.rss_kib,
            peak_rss_kib: after.peak_rss_kib,
        }
    }

    /// One line for the human report.
    fn describe(&self) -> String {
        format!(
            "CPU {:.2} s ({:.0} % of a core), RSS {} (peak {})",
            self.cpu_s,
            self.cores * 100.0,
            mebibytes(self.rss_kib),
            mebibytes(self.peak_rss_kib)
        )
    }
}

/// `kib` as mebibytes with one decimal.
fn mebibytes(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// `n` with thousands separators.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The innermost cause of an error, for a one-line message ("Connection refused (os error 111)").
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut e = error;
    while let Some(source) = e.source() {
        e = source;
    }
    e.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_the_requested_size_and_fields() {
        let p = payload(42, 1_700_000_000_000_000, 100);
        assert_eq!(p.len(), 100);
        assert!(p.starts_with(r#"{"seq":42,"sent_us":1700000000000000,"pad":"x"#));
        assert!(p.ends_with("x\"}"));
        // Too small a size gives the fields unpadded.
        assert_eq!(payload(1, 2, 0), r#"{"seq":1,"sent_us":2,"pad":""}"#);
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn reads_its_own_process() {
        let s = ProcSample::read("self").unwrap();
        assert!(s.rss_kib > 0);
        assert!(s.peak_rss_kib >= s.rss_kib);
    }
}
