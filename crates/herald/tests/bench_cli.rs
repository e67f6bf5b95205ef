//! `herald bench publish` and `herald bench fanout` against a real `herald serve --store memory`:
//! the JSON reports, and one clear line when the hub cannot be reached.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::Duration;

use herald_hub::auth::{mint_hs256, TokenSpec};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const LIMIT: Duration = Duration::from_secs(60);
const KEY: &str = "bench-cli-test-secret";
const BANNER: &str = "herald: hub listening on ";

/// A running `herald serve`, killed when dropped.
struct Hub {
    child: Child,
    url: String,
}

impl Hub {
    fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

async fn start_hub() -> Hub {
    start_hub_with(&[]).await
}

async fn start_hub_with(extra: &[&str]) -> Hub {
    let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["serve", "--store", "memory", "--listen", "127.0.0.1:0"])
        .args(["--jwt-key", KEY])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = tokio::time::timeout(LIMIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.strip_prefix(BANNER) {
                return url.trim().to_owned();
            }
        }
        panic!("herald serve ended without printing its address");
    })
    .await
    .expect("herald serve started in time");
    // Keep draining stderr so that the hub never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Hub { child, url }
}

async fn herald(args: &[&str]) -> std::process::Output {
    let run = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(LIMIT, run)
        .await
        .expect("herald bench finished in time")
        .unwrap()
}

fn publisher_token() -> String {
    mint_hs256(
        KEY.as_bytes(),
        &TokenSpec {
            publish: Some(vec!["*".into()]),
            subscribe: None,
            ttl_secs: Some(600),
        },
    )
    .unwrap()
}

/// Runs `herald ARGS`, insists on success, and returns the JSON report it printed.
async fn json_report(args: &[&str]) -> serde_json::Value {
    let out = herald(args).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    serde_json::from_str(&stdout).expect(&stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_reports_every_update_in_json() {
    let hub = start_hub().await;
    let token = publisher_token();
    let out = herald(&[
        "bench",
        "publish",
        "--hub",
        &hub.url,
        "--count",
        "500",
        "--concurrency",
        "8",
        "--topics",
        "3",
        "--jwt",
        &token,
        "--json",
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect(&stdout);
    assert_eq!(report["scenario"], "publish");
    assert_eq!(report["count"], 500, "{report}");
    assert_eq!(report["ok"], 500, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(report["failures"]["transport"], 0, "{report}");
    assert_eq!(report["latency_us"]["samples"], 500, "{report}");
    let p50 = report["latency_us"]["p50"].as_u64().unwrap();
    let max = report["latency_us"]["max"].as_u64().unwrap();
    assert!(p50 >= 1 && p50 <= max, "{report}");
    assert!(report["updates_per_s"].as_f64().unwrap() > 0.0, "{report}");
}

#[tokio::test]
async fn publish_with_a_wrong_token_counts_failures() {
    let hub = start_hub().await;
    let out = herald(&[
        "bench",
        "publish",
        "--hub",
        &hub.url,
        "--count",
        "20",
        "--concurrency",
        "2",
        "--jwt",
        "not-a-jwt",
        "--json",
    ])
    .await;
    assert!(!out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], 0, "{report}");
    assert_eq!(report["failed"], 20, "{report}");
    assert_eq!(report["failures"]["by_status"]["401"], 20, "{report}");
    // The first failed answer is printed once.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("401").count(), 1, "{stderr}");
}

#[tokio::test]
async fn unreachable_hub_is_one_clear_line() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/.well-known/mercure");
    let out = herald(&[
        "bench", "publish", "--hub", &url, "--count", "10", "--jwt", "x",
    ])
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("herald: cannot connect to {url}: ")),
        "{stderr}"
    );
    assert!(stderr.to_lowercase().contains("refused"), "{stderr}");
}

#[tokio::test]
async fn fanout_delivers_every_update_to_every_subscriber() {
    let hub = start_hub().await;
    let token = publisher_token();
    let report = json_report(&[
        "bench",
        "fanout",
        "--hub",
        &hub.url,
        "--jwt",
        &token,
        "--subscribers",
        "200",
        "--topics",
        "2",
        "--rate",
        "200",
        "--duration",
        "2",
        "--processes",
        "2",
        "--source-addrs",
        "2",
        "--json",
    ])
    .await;
    assert_eq!(report["scenario"], "fanout");
    assert_eq!(report["subscribers_connected"], 200, "{report}");
    assert_eq!(report["subscribers_failed"], 0, "{report}");
    assert_eq!(report["processes"], 2, "{report}");
    assert_eq!(report["updates_published"], 400, "{report}");
    assert_eq!(report["updates_failed"], 0, "{report}");
    // 400 updates over 2 topics, 100 subscribers on each: 200 × 100 × 2.
    assert_eq!(report["expected"], 40_000, "{report}");
    assert_eq!(report["delivered"], report["expected"], "{report}");
    assert_eq!(report["missing"], 0, "{report}");
    assert_eq!(report["duplicates"], 0, "{report}");
    assert_eq!(report["unexpected"], 0, "{report}");
    assert_eq!(report["order_checked"], 200, "{report}");
    assert_eq!(report["order_mismatches"], 0, "{report}");
    assert_eq!(report["latency_us"]["samples"], 40_000, "{report}");
    let p50 = report["latency_us"]["p50"].as_u64().unwrap();
    let max = report["latency_us"]["max"].as_u64().unwrap();
    assert!(p50 >= 1 && p50 <= max, "{report}");
    assert!(
        report["delivered_per_s"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert_eq!(report["generator"]["processes"], 3, "{report}");
    // Every delivery came with some read; a read may carry several.
    let reads_per_s = report["generator"]["reads_per_s"].as_f64().unwrap();
    assert!(
        reads_per_s > 0.0 && reads_per_s <= report["delivered_per_s"].as_f64().unwrap() * 2.0,
        "{report}"
    );
}

#[tokio::test]
async fn fanout_idle_reports_memory_per_subscriber() {
    let hub = start_hub().await;
    let pid = hub.pid().to_string();
    let report = json_report(&[
        "bench",
        "fanout",
        "--hub",
        &hub.url,
        "--subscribers",
        "100",
        "--rate",
        "0",
        "--hold",
        "0.5",
        "--pid",
        &pid,
        "--json",
    ])
    .await;
    assert_eq!(report["subscribers_connected"], 100, "{report}");
    assert_eq!(report["updates_published"], 0, "{report}");
    assert_eq!(report["expected"], 0, "{report}");
    let hub_process = &report["hub_processes"][0];
    assert_eq!(hub_process["pid"].as_u64(), Some(u64::from(hub.pid())));
    assert_eq!(hub_process["subscribers"], 100, "{report}");
    assert!(
        hub_process["rss_connected_kib"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert!(
        hub_process["rss_per_subscriber_kib"].as_f64().is_some(),
        "{report}"
    );
    // The hub runs as this test's user: its /proc/PID/io is readable.
    assert!(
        hub_process["write_calls_per_s"].as_f64().is_some(),
        "{report}"
    );
}

#[tokio::test]
async fn fanout_subscribers_resume_after_the_hub_ends_their_streams() {
    // Streams end after about a second: subscribers reconnect with Last-Event-ID and must miss
    // nothing and get nothing twice.
    let hub = start_hub_with(&["--write-timeout", "1s"]).await;
    let token = publisher_token();
    let report = json_report(&[
        "bench",
        "fanout",
        "--hub",
        &hub.url,
        "--jwt",
        &token,
        "--subscribers",
        "20",
        "--topics",
        "3",
        "--rate",
        "100",
        "--duration",
        "3",
        "--reconnect",
        "--json",
    ])
    .await;
    assert!(report["reconnects"].as_u64().unwrap() >= 20, "{report}");
    assert_eq!(report["updates_published"], 300, "{report}");
    assert_eq!(report["delivered"], report["expected"], "{report}");
    assert_eq!(report["missing"], 0, "{report}");
    assert_eq!(report["duplicates"], 0, "{report}");
    assert_eq!(report["order_mismatches"], 0, "{report}");
}

#[tokio::test]
async fn fanout_with_url_templates_and_stalled_subscribers() {
    // `--subscribe-url` with `{topic}` (short topic names), publishing through Mercure; a tenth
    // of the subscribers stop reading, and the others still get everything.
    let hub = start_hub().await;
    let token = publisher_token();
    let template = format!("{}?topic={{topic}}", hub.url);
    let report = json_report(&[
        "bench",
        "fanout",
        "--hub",
        &hub.url,
        "--subscribe-url",
        &template,
        "--jwt",
        &token,
        "--subscribers",
        "50",
        "--topics",
        "5",
        "--rate",
        "100",
        "--duration",
        "1",
        "--stall",
        "10",
        "--json",
    ])
    .await;
    let stalled = report["stalled"].as_u64().unwrap();
    assert!(stalled > 0 && stalled < 50, "{report}");
    assert_eq!(report["subscribers_connected"], 50, "{report}");
    // 100 updates over 5 topics: 20 each, to the non-stalled subscribers.
    assert_eq!(
        report["expected"].as_u64().unwrap(),
        20 * (50 - stalled),
        "{report}"
    );
    assert_eq!(report["delivered"], report["expected"], "{report}");
    assert_eq!(report["missing"], 0, "{report}");
    assert_eq!(report["duplicates"], 0, "{report}");
}

#[tokio::test]
async fn fanout_unreachable_hub_is_a_clean_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/.well-known/mercure");
    let out = herald(&[
        "bench",
        "fanout",
        "--hub",
        &url,
        "--subscribers",
        "50",
        "--rate",
        "10",
        "--duration",
        "1",
        "--jwt",
        "x",
    ])
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("herald: no subscriber could connect: "),
        "{stderr}"
    );
    assert!(stderr.contains(&url), "{stderr}");
    assert!(stderr.to_lowercase().contains("refused"), "{stderr}");

    // Publishing only (no subscribers): the publisher says the same.
    let out = herald(&[
        "bench",
        "fanout",
        "--hub",
        &url,
        "--subscribers",
        "0",
        "--rate",
        "10",
        "--duration",
        "0.5",
        "--jwt",
        "x",
    ])
    .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("herald: cannot publish: "), "{stderr}");
    assert!(stderr.to_lowercase().contains("refused"), "{stderr}");
}
