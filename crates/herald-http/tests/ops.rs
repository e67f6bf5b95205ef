//! `/metrics`, `/healthz` and `/readyz` against a real hub: the numbers move as publishes and
//! subscriptions happen.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use herald_http::server::{Server, ServerConfig};
use herald_http::{router, HttpConfig};
use herald_hub::auth::{mint_hs256, TokenSpec, Verifier};
use herald_hub::log::memory::MemoryStore;
use herald_hub::{Hub, HubConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY: &str = "ops-test-key-0123456789abcdef0123";
const STEP: Duration = Duration::from_secs(10);

async fn start() -> (SocketAddr, Hub) {
    let hub = Hub::open(HubConfig::default(), Arc::new(MemoryStore::new()))
        .await
        .unwrap();
    let config = HttpConfig {
        publisher_key: Some(Verifier::hs256(KEY.as_bytes())),
        subscriber_key: Some(Verifier::hs256(KEY.as_bytes())),
        ..HttpConfig::default()
    };
    let server = Server::bind(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.serve(router(hub.clone(), config), std::future::pending()));
    (addr, hub)
}

/// A one-shot HTTP/1.1 request; returns the status line and the body.
async fn request(addr: SocketAddr, head: &str, body: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let text = format!(
        "{head}\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(text.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(STEP, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let out = String::from_utf8_lossy(&out).into_owned();
    let status = out.lines().next().unwrap_or("").to_owned();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

async fn metrics(addr: SocketAddr) -> String {
    let (status, body) = request(addr, "GET /metrics HTTP/1.1", "").await;
    assert!(status.contains("200"), "{status}");
    body
}

#[tokio::test]
async fn metrics_move_with_publishes_and_subscriptions() {
    let (addr, hub) = start().await;
    let before = metrics(addr).await;
    assert_eq!(metric(&before, "mercure_updates_total"), 0.0);
    assert_eq!(metric(&before, "mercure_subscribers_connected"), 0.0);

    // Two live subscribers.
    let mut subs = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /.well-known/mercure?topic=t HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).await.unwrap();
        subs.push(s);
    }
    let token = mint_hs256(
        KEY.as_bytes(),
        &TokenSpec {
            publish: Some(vec!["*".into()]),
            ..TokenSpec::default()
        },
    )
    .unwrap();
    for i in 0..3 {
        let (status, _) = request(
            addr,
            &format!(
                "POST /.well-known/mercure HTTP/1.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/x-www-form-urlencoded"
            ),
            &format!("topic=t&data={i}"),
        )
        .await;
        assert!(status.contains("200"), "{status}");
    }
    let (status, _) = request(addr, "POST /.well-known/mercure HTTP/1.1", "topic=t").await;
    assert!(status.contains("401"));

    let after = metrics(addr).await;
    assert_eq!(metric(&after, "mercure_updates_total"), 3.0);
    assert_eq!(metric(&after, "mercure_subscribers_connected"), 2.0);
    assert_eq!(metric(&after, "mercure_subscribers_total"), 2.0);
    assert_eq!(metric(&after, "herald_deliveries_total"), 6.0);
    assert_eq!(metric(&after, "herald_publishes_refused_total"), 1.0);
    assert_eq!(metric(&after, "herald_publish_seconds_count"), 3.0);
    assert!(metric(&after, "herald_store_commit_seconds_count") >= 1.0);

    // Subscribers leaving are counted down.
    drop(subs);
    let gone = async {
        loop {
            if hub.subscriber_count() == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(STEP, gone).await.unwrap();
    let later = metrics(addr).await;
    assert_eq!(metric(&later, "mercure_subscribers_connected"), 0.0);
    assert!(metric(&later, "herald_bytes_written_total") > 0.0);
}

#[tokio::test]
async fn health_and_readiness() {
    let (addr, hub) = start().await;
    let (status, body) = request(addr, "GET /healthz HTTP/1.1", "").await;
    assert!(
        status.contains("200") && body == "ok\n",
        "{status} {body:?}"
    );
    let (status, body) = request(addr, "GET /readyz HTTP/1.1", "").await;
    assert!(
        status.contains("200") && body == "ready\n",
        "{status} {body:?}"
    );
    hub.shutdown().await;
    let (status, body) = request(addr, "GET /readyz HTTP/1.1", "").await;
    assert!(status.contains("503"), "{status}");
    assert!(body.contains("shutting down"), "{body}");
    let (status, _) = request(addr, "GET /healthz HTTP/1.1", "").await;
    assert!(status.contains("200"));
}
