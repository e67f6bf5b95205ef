//! The bad-input matrix: each row is one real HTTP request against a real hub (redb store, the
//! real server on 127.0.0.1) with the status and the body it must get. After the whole matrix the
//! hub still serves and every update accepted before it is still in history.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use herald_http::server::{Server, ServerConfig};
use herald_http::{router, HttpConfig};
use herald_hub::auth::{mint_hs256, TokenSpec, Verifier};
use herald_hub::log::redb::RedbStore;
use herald_hub::{Hub, HubConfig};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PUBLISHER_KEY: &str = "publisher-secret-0123456789abcdef";
const SUBSCRIBER_KEY: &str = "subscriber-secret-0123456789abcdef";
const ORIGIN: &str = "https://app.example";
const STEP: Duration = Duration::from_secs(10);
const PER_IP: usize = 4;

struct Running {
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

async fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RedbStore::open(&dir.path().join("log.redb")).unwrap());
    let hub = Hub::open(HubConfig::default(), store).await.unwrap();
    let config = HttpConfig {
        publisher_key: Some(Verifier::hs256(PUBLISHER_KEY.as_bytes())),
        subscriber_key: Some(Verifier::hs256(SUBSCRIBER_KEY.as_bytes())),
        publish_origins: vec![ORIGIN.into()],
        cors_origins: vec![ORIGIN.into()],
        max_body_bytes: 64 * 1024,
        max_data_bytes: 16 * 1024,
        max_subscribers_per_ip: PER_IP,
        ..HttpConfig::default()
    };
    let server = Server::bind(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        header_read_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.serve(router(hub, config), std::future::pending()));
    Running { addr, _dir: dir }
}

fn token(key: &str, spec: TokenSpec) -> String {
    mint_hs256(key.as_bytes(), &spec).unwrap()
}

fn publisher() -> String {
    token(
        PUBLISHER_KEY,
        TokenSpec {
            publish: Some(vec!["*".into()]),
            ..TokenSpec::default()
        },
    )
}

fn subscriber() -> String {
    token(
        SUBSCRIBER_KEY,
        TokenSpec {
            subscribe: Some(vec!["*".into()]),
            ..TokenSpec::default()
        },
    )
}

fn raw_jwt(header: &str, body: &str, signature: &str) -> String {
    format!("{}.{}.{signature}", base64_url(header), base64_url(body))
}

/// Unpadded base64url, enough for hand-made tokens.
fn base64_url(text: &str) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(char::from(ABC[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// One row: a request and what it must get.
struct Row {
    name: &'static str,
    method: Method,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: StatusCode,
    /// A piece of text the body must contain (for streams: the first bytes).
    says: &'static str,
}

fn publish(name: &'static str, form: &str, auth: Option<String>) -> Row {
    let mut headers = vec![(
        "content-type",
        "application/x-www-form-urlencoded".to_owned(),
    )];
    if let Some(t) = auth {
        headers.push(("authorization", format!("Bearer {t}")));
    }
    Row {
        name,
        method: Method::POST,
        path: "/.well-known/mercure".into(),
        headers,
        body: form.as_bytes().to_vec(),
        status: StatusCode::OK,
        says: "",
    }
}

fn subscribe(name: &'static str, query: &str, auth: Option<String>) -> Row {
    let mut headers = Vec::new();
    if let Some(t) = auth {
        headers.push(("authorization", format!("Bearer {t}")));
    }
    Row {
        name,
        method: Method::GET,
        path: format!("/.well-known/mercure?{query}"),
        headers,
        body: Vec::new(),
        status: StatusCode::OK,
        says: "",
    }
}

impl Row {
    fn expect(mut self, status: StatusCode, says: &'static str) -> Self {
        self.status = status;
        self.says = says;
        self
    }

    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value.to_owned()));
        self
    }
}

async fn send(addr: SocketAddr, row: &Row) -> (StatusCode, hyper::HeaderMap, String) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut request = Request::builder()
        .method(row.method.clone())
        .uri(format!("http://{addr}{}", row.path));
    for (name, value) in &row.headers {
        request = request.header(*name, value.as_bytes());
    }
    let request = request
        .body(Full::new(Bytes::from(row.body.clone())))
        .unwrap();
    let response = tokio::time::timeout(STEP, client.request(request))
        .await
        .unwrap_or_else(|_| panic!("{}: no answer", row.name))
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let mut body = response.into_body();
    let mut text = Vec::new();
    // Streams never end: read the first frame only.
    let streaming = headers
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    while let Ok(Some(frame)) = tokio::time::timeout(STEP, body.frame()).await {
        if let Ok(data) = frame.unwrap().into_data() {
            text.extend_from_slice(&data);
        }
        if streaming {
            break;
        }
    }
    (status, headers, String::from_utf8_lossy(&text).into_owned())
}

fn matrix() -> Vec<Row> {
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"mercure": {"publish": ["*"]}, "exp": 1_000_000_000}),
        &jsonwebtoken::EncodingKey::from_secret(PUBLISHER_KEY.as_bytes()),
    )
    .unwrap();
    let none = raw_jwt(
        r#"{"alg":"none","typ":"JWT"}"#,
        r#"{"mercure":{"publish":["*"],"subscribe":["*"]}}"#,
        "",
    );
    let wrong_key = token(
        "some-other-key-0123456789abcdef",
        TokenSpec {
            publish: Some(vec!["*".into()]),
            ..TokenSpec::default()
        },
    );
    let narrow = token(
        PUBLISHER_KEY,
        TokenSpec {
            publish: Some(vec!["https://ex.com/books/{id}".into()]),
            ..TokenSpec::default()
        },
    );
    let many_topics: String = (0..1001).map(|i| format!("topic=t{i}&")).collect();
    let many_selectors: String = (0..1001).map(|i| format!("topic=t{i}&")).collect();
    let big_data = format!("topic=a&data={}", "x".repeat(20 * 1024));
    let huge_body = format!("topic=a&data={}", "x".repeat(70 * 1024));
    let p = || Some(publisher());
    use StatusCode as S;
    vec![
        // Tokens.
        publish("publish without a token", "topic=a&data=x", None)
            .expect(S::UNAUTHORIZED, "requires a JWT"),
        publish(
            "publish with garbage token",
            "topic=a",
            Some("garbage".into()),
        )
        .expect(S::UNAUTHORIZED, "invalid token"),
        publish(
            "publish with expired token",
            "topic=a",
            Some(expired.clone()),
        )
        .expect(S::UNAUTHORIZED, "expired"),
        publish("publish with alg:none token", "topic=a", Some(none.clone()))
            .expect(S::UNAUTHORIZED, "invalid token"),
        publish(
            "publish with wrong-key token",
            "topic=a",
            Some(wrong_key.clone()),
        )
        .expect(S::UNAUTHORIZED, "signature"),
        publish(
            "publish with a subscriber token",
            "topic=a",
            Some(subscriber()),
        )
        .expect(S::UNAUTHORIZED, "invalid token"),
        publish(
            "publish outside the publish claim",
            "topic=https://ex.com/authors/1",
            Some(narrow),
        )
        .expect(S::UNAUTHORIZED, "does not allow"),
        publish("Authorization not Bearer", "topic=a", None)
            .header("authorization", "Basic dXNlcjpwYXNz")
            .expect(S::UNAUTHORIZED, "Bearer"),
        subscribe(
            "subscribe with a publisher token",
            "topic=*",
            Some(publisher()),
        )
        .expect(S::UNAUTHORIZED, "signature"),
        subscribe("subscribe with expired token", "topic=*", Some(expired))
            .expect(S::UNAUTHORIZED, "invalid token"),
        subscribe("subscribe with alg:none token", "topic=*", Some(none))
            .expect(S::UNAUTHORIZED, "invalid token"),
        subscribe("subscribe with wrong-key token", "topic=*", Some(wrong_key))
            .expect(S::UNAUTHORIZED, "signature"),
        // Fields.
        publish("CR in id", "topic=a&id=a%0Db", p()).expect(S::BAD_REQUEST, "carriage return"),
        publish("LF in id", "topic=a&id=a%0Ab", p()).expect(S::BAD_REQUEST, "line feed"),
        publish("NUL in id", "topic=a&id=a%00b", p()).expect(S::BAD_REQUEST, "NUL"),
        publish("CR in type", "topic=a&type=a%0Db", p()).expect(S::BAD_REQUEST, "carriage return"),
        publish("LF in type", "topic=a&type=a%0Ab", p()).expect(S::BAD_REQUEST, "line feed"),
        publish("NUL in type", "topic=a&type=a%00b", p()).expect(S::BAD_REQUEST, "NUL"),
        publish("id starting with #", "topic=a&id=%23x", p()).expect(S::BAD_REQUEST, "'#'"),
        publish("retry not a number", "topic=a&retry=soon", p())
            .expect(S::BAD_REQUEST, "non-negative whole number"),
        publish("negative retry", "topic=a&retry=-5", p())
            .expect(S::BAD_REQUEST, "non-negative whole number"),
        publish("no topic", "data=x", p()).expect(S::BAD_REQUEST, "Missing \"topic\""),
        publish("1001 topics", &many_topics, p()).expect(S::BAD_REQUEST, "too many"),
        publish(
            "reserved topic",
            "topic=https://h/.well-known/mercure/subscriptions/x",
            p(),
        )
        .expect(S::FORBIDDEN, "reserved"),
        publish("invalid UTF-8 in data", "topic=a&data=%FF%FE", p())
            .expect(S::BAD_REQUEST, "not valid UTF-8"),
        publish("invalid UTF-8 in topic", "topic=%C3%28", p())
            .expect(S::BAD_REQUEST, "not valid UTF-8"),
        publish("data over the limit", &big_data, p()).expect(S::PAYLOAD_TOO_LARGE, "limit"),
        publish("body over the limit", &huge_body, p()).expect(S::PAYLOAD_TOO_LARGE, "limit"),
        publish("not a form", "{\"topic\":\"a\"}", p())
            .header("content-type", "application/json")
            .expect(S::UNSUPPORTED_MEDIA_TYPE, "x-www-form-urlencoded"),
        subscribe("subscribe without topic", "lastEventID=x", None)
            .expect(S::BAD_REQUEST, "Missing \"topic\""),
        subscribe("subscribe with 1001 selectors", &many_selectors, None)
            .expect(S::BAD_REQUEST, "too many"),
        subscribe("invalid UTF-8 in the query", "topic=%FF", None)
            .expect(S::BAD_REQUEST, "not valid UTF-8"),
        // Browsers on other origins.
        Row {
            name: "preflight from a foreign origin",
            method: Method::OPTIONS,
            path: "/.well-known/mercure".into(),
            headers: vec![
                ("origin", "https://evil.example".into()),
                ("access-control-request-method", "GET".into()),
            ],
            body: Vec::new(),
            status: S::FORBIDDEN,
            says: "not allowed",
        },
        publish("cookie POST from a foreign origin", "topic=a&data=x", None)
            .header("cookie", &format!("mercureAuthorization={}", publisher()))
            .header("origin", "https://evil.example")
            .expect(S::UNAUTHORIZED, "allowed origin"),
        publish("cookie POST without an origin", "topic=a&data=x", None)
            .header("cookie", &format!("mercureAuthorization={}", publisher()))
            .expect(S::UNAUTHORIZED, "allowed origin"),
        Row {
            name: "PUT on the endpoint",
            method: Method::PUT,
            path: "/.well-known/mercure".into(),
            headers: Vec::new(),
            body: Vec::new(),
            status: S::METHOD_NOT_ALLOWED,
            says: "",
        },
    ]
}

async fn publish_ok(addr: SocketAddr, form: String) -> String {
    let row = publish("accepted", &form, Some(publisher()));
    let (status, _, body) = send(addr, &row).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn the_bad_input_matrix() {
    let hub = start().await;
    let addr = hub.addr;
    // Updates accepted before the matrix, one of them private.
    let mut accepted = Vec::new();
    for i in 0..5 {
        accepted.push(publish_ok(addr, format!("topic=a&data=before-{i}")).await);
    }
    accepted.push(publish_ok(addr, "topic=secret&data=private-one&private=on".into()).await);

    let mut failures = Vec::new();
    for row in matrix() {
        let (status, headers, body) = send(addr, &row).await;
        if status != row.status || !body.contains(row.says) {
            failures.push(format!(
                "{}: got {status} {body:?}, want {} containing {:?}",
                row.name, row.status, row.says
            ));
        }
        if status.is_client_error() && status != StatusCode::METHOD_NOT_ALLOWED {
            let ct = headers
                .get("content-type")
                .map(|v| v.to_str().unwrap_or(""));
            if ct != Some("text/plain; charset=utf-8") {
                failures.push(format!("{}: error content type {ct:?}", row.name));
            }
        }
        for secret in [PUBLISHER_KEY, SUBSCRIBER_KEY] {
            assert!(!body.contains(secret), "{}: the body leaks a key", row.name);
        }
        if headers.get("x-content-type-options").is_none() {
            failures.push(format!("{}: no security headers", row.name));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));

    // A duplicate id is refused, not stored twice.
    publish_ok(addr, "topic=a&data=first&id=dup-1".into()).await;
    accepted.push("dup-1".into());
    let (status, _, body) = send(
        addr,
        &publish("dup", "topic=a&data=second&id=dup-1", Some(publisher())),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // A slow client sending its request head byte by byte is cut.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /.well-known/mercure?topic=a HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let cut = tokio::time::timeout(STEP, slow.read_to_end(&mut buf)).await;
    assert!(cut.is_ok(), "the slow client was not cut");

    // Too many streams from one address: 429 with Retry-After; a slot frees when one closes.
    let mut open = Vec::new();
    for _ in 0..PER_IP {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /.well-known/mercure?topic=a HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut first = [0u8; 12];
        s.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"HTTP/1.1 200");
        open.push(s);
    }
    let (status, headers, body) = send(addr, &subscribe("one too many", "topic=a", None)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(headers.get("retry-after").unwrap(), "5");
    drop(open.pop());
    let freed = async {
        loop {
            let (status, _, _) = send(addr, &subscribe("after one left", "topic=a", None)).await;
            if status == StatusCode::OK {
                break;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(STEP, freed)
        .await
        .expect("a slot was given back");
    drop(open);

    // The hub still serves and everything accepted is in history, private one included for a
    // subscriber allowed to see it, and absent for an anonymous one.
    // The streams just dropped give their slots back once the server has seen them go, which
    // happens on its own time: until then this address may still be at its limit (429).
    let opened = async {
        loop {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream
                .write_all(
                    format!(
                        "GET /.well-known/mercure?topic=*&lastEventID=earliest HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
                        subscriber()
                    )
                    .as_bytes(),
                )
                .await
                .unwrap();
            let mut first = [0u8; 12];
            stream.read_exact(&mut first).await.unwrap();
            if &first == b"HTTP/1.1 200" {
                break stream;
            }
            assert_eq!(&first, b"HTTP/1.1 429", "history stream refused");
            tokio::task::yield_now().await;
        }
    };
    let mut stream = tokio::time::timeout(STEP, opened)
        .await
        .expect("the history stream opened");
    let mut history = String::new();
    let last = accepted.last().unwrap().clone();
    tokio::time::timeout(STEP, async {
        let mut buf = [0u8; 4096];
        while !history.contains(&format!("id: {last}")) {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "stream closed early");
            history.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await
    .expect("history replayed");
    let mut at = 0;
    for id in &accepted {
        let found = history[at..]
            .find(&format!("id: {id}\n"))
            .unwrap_or_else(|| panic!("{id} missing or out of order"));
        at += found;
    }
    assert!(history.contains("private-one"));
    assert!(
        !history.contains("data: second"),
        "the duplicate was not stored"
    );
}

#[tokio::test]
async fn a_stream_ends_when_its_token_expires() {
    let hub = start().await;
    let exp = herald_hub::auth::unix_now() + 2;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"mercure": {"subscribe": ["*"]}, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(SUBSCRIBER_KEY.as_bytes()),
    )
    .unwrap();
    let mut stream = TcpStream::connect(hub.addr).await.unwrap();
    stream
        .write_all(
            format!(
                "GET /.well-known/mercure?topic=a HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut all))
        .await
        .expect("the stream ended when the token expired")
        .unwrap();
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    // Chunked encoding ends with the last chunk: the stream was ended, not cut.
    assert!(text.ends_with("0\r\n\r\n"), "{text}");
    assert!(started.elapsed() <= Duration::from_secs(4));
}
