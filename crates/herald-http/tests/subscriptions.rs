//! Active subscriptions: the announcements on connect and disconnect, and the subscriptions API
//! (JSON-LD, ETag / If-None-Match, 404, auth), against a real hub over real sockets.
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

const KEY: &str = "subscriptions-test-key-0123456789";
const STEP: Duration = Duration::from_secs(10);
const WATCH: &str = "/.well-known/mercure/subscriptions{/topic}{/subscriber}";

async fn start(events: bool) -> SocketAddr {
    let hub = Hub::open(
        HubConfig {
            subscription_events: events,
            ..HubConfig::default()
        },
        Arc::new(MemoryStore::new()),
    )
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
    tokio::spawn(server.serve(router(hub, config), std::future::pending()));
    addr
}

fn token(subscribe: &[&str], payload: Option<serde_json::Value>) -> String {
    match payload {
        None => mint_hs256(
            KEY.as_bytes(),
            &TokenSpec {
                subscribe: Some(subscribe.iter().map(|s| s.to_string()).collect()),
                ..TokenSpec::default()
            },
        )
        .unwrap(),
        Some(p) => jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &serde_json::json!({"mercure": {"subscribe": subscribe, "payload": p}}),
            &jsonwebtoken::EncodingKey::from_secret(KEY.as_bytes()),
        )
        .unwrap(),
    }
}

/// An open event stream read through a raw socket.
struct Stream {
    socket: TcpStream,
    seen: String,
}

impl Stream {
    async fn open(addr: SocketAddr, query: &str, token: Option<&str>) -> Self {
        let mut socket = TcpStream::connect(addr).await.unwrap();
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        socket
            .write_all(
                format!("GET /.well-known/mercure?{query} HTTP/1.1\r\nHost: x\r\n{auth}\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
        let mut s = Self {
            socket,
            seen: String::new(),
        };
        s.until(":\n").await;
        s
    }

    async fn until(&mut self, text: &str) {
        let mut buf = [0u8; 4096];
        tokio::time::timeout(STEP, async {
            while !self.seen.contains(text) {
                let n = self.socket.read(&mut buf).await.unwrap();
                assert!(
                    n > 0,
                    "stream closed while waiting for {text:?}: {}",
                    self.seen
                );
                self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
        .await
        .unwrap_or_else(|_| panic!("never saw {text:?} in {}", self.seen));
    }
}

async fn get(addr: SocketAddr, path: &str, extra: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(STEP, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text[9..12].parse().unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test]
async fn connects_and_disconnects_are_announced_and_listed() {
    let addr = start(true).await;
    let watcher_token = token(&[WATCH], None);
    let mut watcher = Stream::open(
        addr,
        &format!("topic={}", urlencode(WATCH)),
        Some(&watcher_token),
    )
    .await;

    let user = token(
        &["https://ex.com/users/7"],
        Some(serde_json::json!({"user": 7})),
    );
    let books = Stream::open(
        addr,
        "topic=https%3A%2F%2Fex.com%2Fbooks%2F%7Bid%7D",
        Some(&user),
    )
    .await;
    // The watcher first sees its own subscription announced, then the new one.
    watcher
        .until("\"topic\":\"https://ex.com/books/{id}\"")
        .await;
    let event = announcement(&watcher.seen, "https://ex.com/books/{id}", true);
    assert_eq!(event["type"], "Subscription");
    assert_eq!(event["payload"]["user"], 7);
    let subscriber = event["subscriber"].as_str().unwrap().to_owned();
    assert!(subscriber.starts_with("urn:uuid:"));

    // The API lists it.
    let auth = format!("Authorization: Bearer {watcher_token}\r\n");
    let (status, head, body) = get(addr, "/.well-known/mercure/subscriptions", &auth).await;
    assert_eq!(status, 200, "{body}");
    assert!(head.contains("content-type: application/ld+json"));
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["type"], "Subscriptions");
    assert!(json["lastEventID"]
        .as_str()
        .unwrap()
        .starts_with("urn:uuid:"));
    let listed = json["subscriptions"].as_array().unwrap();
    assert!(listed
        .iter()
        .any(|s| s["subscriber"] == subscriber.as_str()));
    let etag = head
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .unwrap()
        .to_owned();

    // Unchanged: 304.
    let (status, _, _) = get(
        addr,
        "/.well-known/mercure/subscriptions",
        &format!("{auth}If-None-Match: {etag}\r\n"),
    )
    .await;
    assert_eq!(status, 304);

    // By topic, and one subscription.
    let topic_path = "/.well-known/mercure/subscriptions/https%3A%2F%2Fex.com%2Fbooks%2F%7Bid%7D";
    let (status, _, body) = get(addr, topic_path, &auth).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&subscriber));
    let one = format!("{topic_path}/{}", urlencode(&subscriber));
    let (status, _, body) = get(addr, &one, &auth).await;
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["active"], true);
    assert_eq!(json["payload"]["user"], 7);
    let (status, _, _) = get(addr, &format!("{topic_path}/urn%3Auuid%3Anobody"), &auth).await;
    assert_eq!(status, 404);
    let (status, _, _) = get(
        addr,
        "/.well-known/mercure/subscriptions/urn%3Anothing",
        &auth,
    )
    .await;
    assert_eq!(status, 404);

    // Without a token, or with one that does not match: 401.
    let (status, _, _) = get(addr, "/.well-known/mercure/subscriptions", "").await;
    assert_eq!(status, 401);
    let other = format!(
        "Authorization: Bearer {}\r\n",
        token(&["https://ex.com/x"], None)
    );
    let (status, _, _) = get(addr, "/.well-known/mercure/subscriptions", &other).await;
    assert_eq!(status, 401);

    // The subscriber leaves: announced, and the list changes (new ETag).
    drop(books);
    watcher.until("\"active\":false").await;
    let gone = announcement(&watcher.seen, "https://ex.com/books/{id}", false);
    assert_eq!(gone["subscriber"], subscriber.as_str());
    let (status, head, body) = get(addr, "/.well-known/mercure/subscriptions", &auth).await;
    assert_eq!(status, 200);
    assert!(!body.contains(&subscriber), "{body}");
    assert!(!head.contains(&etag));
}

#[tokio::test]
async fn the_api_is_off_unless_enabled() {
    let addr = start(false).await;
    let auth = format!("Authorization: Bearer {}\r\n", token(&["*"], None));
    let (status, _, body) = get(addr, "/.well-known/mercure/subscriptions", &auth).await;
    assert_eq!(status, 404);
    assert!(body.contains("--subscriptions"));
}

/// The announcement (data line) for `topic` with this `active` value.
fn announcement(stream: &str, topic: &str, active: bool) -> serde_json::Value {
    stream
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .find(|v| v["topic"] == topic && v["active"] == active)
        .unwrap_or_else(|| panic!("no announcement for {topic} active={active} in {stream}"))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
