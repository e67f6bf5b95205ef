//! `herald bench publish` against a real `herald serve --store memory`: the JSON report, and one clear line when the hub cannot be reached.
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

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

async fn start_hub() -> Hub {
    let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["serve", "--store", "memory", "--listen", "127.0.0.1:0"])
        .args(["--jwt-key", KEY])
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_reports_every_update_in_json() {
    let hub = start_hub().await;
    let token = mint_hs256(
        KEY.as_bytes(),
        &TokenSpec {
            publish: Some(vec!["*".into()]),
            subscribe: None,
            ttl_secs: Some(600),
        },
    )
    .unwrap();
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
