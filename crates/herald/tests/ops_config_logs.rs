//! `herald config` (precedence, masking) and the structured logs of `herald serve`
//! (`--log-format json`: one line per stream opened and closed, never a token).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{token, within, Http, HubProcess};

const STEP: Duration = Duration::from_secs(20);

#[tokio::test]
async fn config_prints_the_effective_settings_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("herald.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:9999\"\nheartbeat = \"5s\"\njwt-key = \"file-secret\"\nmax-topics = 50\n",
    )
    .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["config", "--config"])
        .arg(&file)
        .args(["--max-topics", "70"])
        .env("HERALD_HEARTBEAT", "7s")
        .env_remove("HERALD_JWT_KEY")
        .stdin(Stdio::null())
        .output();
    let out = within(STEP, "herald config", out).await.unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("listen = \"127.0.0.1:9999\""), "{text}");
    assert!(
        text.contains("heartbeat = \"7s\"  # environment"),
        "env beats the file: {text}"
    );
    assert!(
        text.contains("max-topics = 70"),
        "the flag beats the file: {text}"
    );
    assert!(text.contains("jwt-key = \"********\""), "{text}");
    assert!(!text.contains("file-secret"), "{text}");

    std::fs::write(&file, "listen = \"127.0.0.1:9999\"\nheartbeet = \"5s\"\n").unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["serve", "--config"])
        .arg(&file)
        .stdin(Stdio::null())
        .output();
    let out = within(STEP, "herald serve with a bad file", out)
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown key `heartbeet`"));
}

#[tokio::test]
async fn json_logs_one_line_per_stream_and_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub =
        HubProcess::start(dir.path(), &["--store", "memory", "--log-format", "json"]).await;
    let secret = token(None, Some(&["*"]));
    let http = Http::new();
    let url = hub.subscribe_url(&["urn:t"], &[("authorization", &secret)]);
    let mut stream = http
        .subscribe_raw(&url, &[("authorization", &format!("Bearer {secret}"))])
        .await;
    within(STEP, "the stream opens", stream.first_bytes()).await;
    drop(stream);
    // A graceful stop ends every stream; the process has written all its logs once it exits.
    hub.terminate().await;
    let log = hub.stderr_text();
    let json_lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let opened = json_lines
        .iter()
        .find(|l| l["message"] == "stream opened")
        .expect("an open line");
    assert!(opened["peer"].as_str().unwrap().contains("127.0.0.1"));
    let closed = json_lines
        .iter()
        .find(|l| l["message"] == "stream closed")
        .expect("a close line");
    assert!(closed["bytes"].as_u64().unwrap() >= 2);
    assert!(closed["duration_ms"].is_u64());
    assert!(!log.contains(&secret), "a token was logged");
}
