//! Helpers shared by the integration tests that start the real `herald` binary: a hub process
//! guard, a publisher over hyper, raw subscriptions that expose the response headers, and
//! bounded waits on `herald_client` event sources.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::future::Future;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use herald_client::{ClientEvent, EventSource, MessageEvent, Version};
use herald_hub::auth::{mint_hs256, TokenSpec};
use herald_sse::{Decoded, Decoder, DecoderConfig};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The HS256 secret every test hub is started with (`--jwt-key`).
pub const KEY: &str = "herald-integration-tests-0123456789abcdef";

/// How long one wait (a start, a response, an event) may take before the test fails.
pub const STEP: Duration = Duration::from_secs(20);

/// Awaits `future`, failing the test with `what` if it takes longer than `limit`.
pub async fn within<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, future).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}

/// A running `herald serve`; killed (SIGKILL) when dropped.
pub struct HubProcess {
    child: Child,
    /// The process id.
    pub pid: u32,
    /// The endpoint URL the hub printed: `http(s)://ADDR/.well-known/mercure`.
    pub endpoint: String,
    /// Everything the hub wrote on stderr so far.
    pub stderr: Arc<Mutex<String>>,
    /// Copies stderr into `stderr` until the hub closes it.
    stderr_reader: Option<tokio::task::JoinHandle<()>>,
}

impl HubProcess {
    /// Starts `herald serve --listen 127.0.0.1:0 --data-dir DIR --jwt-key KEY EXTRA...` and waits
    /// for its "hub listening on" line.
    pub async fn start(data_dir: &Path, extra: &[&str]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("HERALD_") {
                command.env_remove(name);
            }
        }
        command
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--jwt-key", KEY, "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("herald starts");
        let pid = child.id().expect("a running child has a pid");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (url_tx, url_rx) = tokio::sync::oneshot::channel();
        let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        let log = stderr.clone();
        let stderr_reader = tokio::spawn(async move {
            let mut url_tx = Some(url_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.strip_prefix("herald: hub listening on ") {
                    if let Some(tx) = url_tx.take() {
                        let _ = tx.send(url.trim().to_owned());
                    }
                }
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let endpoint = match tokio::time::timeout(STEP, url_rx).await {
            Ok(Ok(url)) => url,
            _ => panic!(
                "herald serve did not print its address; stderr:\n{}",
                stderr.lock().unwrap()
            ),
        };
        Self {
            child,
            pid,
            endpoint,
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }

    /// `host:port` the hub listens on.
    pub fn authority(&self) -> String {
        let rest = self.endpoint.split_once("://").expect("a URL").1;
        rest.split('/').next().expect("an authority").to_owned()
    }

    /// The subscribe URL for `topics`, with extra query fields.
    pub fn subscribe_url(&self, topics: &[&str], extra: &[(&str, &str)]) -> String {
        subscribe_url_on(&self.endpoint, topics, extra)
    }

    /// SIGKILL, and waits for the process to be gone.
    pub async fn kill9(&mut self) -> ExitStatus {
        self.child.start_kill().expect("SIGKILL sent");
        let status = within(STEP, "killed hub exits", self.child.wait())
            .await
            .unwrap();
        self.finish_stderr().await;
        status
    }

    /// SIGTERM (through `kill -TERM PID`), and waits for the process to exit.
    pub async fn terminate(&mut self) -> ExitStatus {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM {} failed", self.pid);
        let status = within(STEP, "hub exits after SIGTERM", self.child.wait())
            .await
            .unwrap();
        self.finish_stderr().await;
        status
    }

    /// Waits until everything the exited hub wrote on stderr is in [`Self::stderr`].
    async fn finish_stderr(&mut self) {
        if let Some(reader) = self.stderr_reader.take() {
            within(STEP, "the hub's stderr closes", reader)
                .await
                .unwrap();
        }
    }

    /// The hub's resident set size in KiB, if readable.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid)
    }

    /// What the hub wrote on stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// The resident set size of process `pid` in KiB (`VmRSS` of `/proc/PID/status`), if readable.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The subscribe URL for `topics` on the hub endpoint `endpoint` (e.g. one reached through a
/// proxy), with extra query fields.
pub fn subscribe_url_on(endpoint: &str, topics: &[&str], extra: &[(&str, &str)]) -> String {
    let mut url = endpoint.to_owned();
    let mut sep = '?';
    for topic in topics {
        url.push(sep);
        url.push_str("topic=");
        url.push_str(&encode(topic));
        sep = '&';
    }
    for (name, value) in extra {
        url.push(sep);
        url.push_str(name);
        url.push('=');
        url.push_str(&encode(value));
        sep = '&';
    }
    url
}

/// A port on 127.0.0.1 that was free a moment ago (bound to port 0, then released). Another
/// process may take it before the caller binds it: callers retry on "address in use".
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// Percent-encodes a form or query value.
pub fn encode(value: &str) -> String {
    utf8_percent_encode(value, NON_ALPHANUMERIC).to_string()
}

/// An `application/x-www-form-urlencoded` body.
pub fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(n, v)| format!("{}={}", encode(n), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A token with these `mercure.publish` / `mercure.subscribe` claims (absent when `None`).
pub fn token(publish: Option<&[&str]>, subscribe: Option<&[&str]>) -> String {
    let list = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect();
    mint_hs256(
        KEY.as_bytes(),
        &TokenSpec {
            publish: publish.map(list),
            subscribe: subscribe.map(list),
            ttl_secs: Some(3600),
        },
    )
    .unwrap()
}

/// An HTTP client (HTTP/1.1 by default) for publishing and for raw requests.
#[derive(Clone)]
pub struct Http<C = HttpConnector> {
    client: Client<C, Full<Bytes>>,
}

/// TCP with `TCP_NODELAY`: without it, a request whose head and body go out in two writes
/// waits for the peer's delayed ACK (Nagle), and publishing is latency-bound.
fn connector() -> HttpConnector {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http
}

/// A response with its whole body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub version: Version,
    pub body: String,
}

impl Default for Http {
    fn default() -> Self {
        Self::new()
    }
}

impl Http {
    /// HTTP/1.1 over TCP.
    pub fn new() -> Self {
        Self::with_client(Client::builder(TokioExecutor::new()).build(connector()))
    }

    /// HTTP/2 with prior knowledge (h2c).
    pub fn h2c() -> Self {
        Self::with_client(
            Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build(connector()),
        )
    }
}

impl<C: Connect + Clone + Send + Sync + 'static> Http<C> {
    /// Wraps a configured client.
    pub fn with_client(client: Client<C, Full<Bytes>>) -> Self {
        Self { client }
    }

    /// Sends a request and returns the response with its body unread.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> http::Response<Incoming> {
        let mut request = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body.into())).unwrap();
        within(STEP, "response head", self.client.request(request))
            .await
            .unwrap_or_else(|e| panic!("request to {url} failed: {e:?}"))
    }

    /// Sends a request and reads the whole response.
    pub async fn call(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Answer {
        let response = self.send(method, url, headers, body).await;
        let (parts, body) = response.into_parts();
        let bytes = within(STEP, "response body", body.collect())
            .await
            .unwrap()
            .to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            version: parts.version,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// POSTs a publish form with `Authorization: Bearer TOKEN` (none when `token` is `None`).
    pub async fn publish(&self, url: &str, token: Option<&str>, fields: &[(&str, &str)]) -> Answer {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
        if let Some(b) = &bearer {
            headers.push(("authorization", b.as_str()));
        }
        self.call(Method::POST, url, &headers, form(fields)).await
    }

    /// Publishes without panicking on a transport error (for hubs that may be going away).
    pub async fn try_publish(
        &self,
        url: &str,
        token: &str,
        fields: &[(&str, &str)],
    ) -> Result<Answer, String> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::from(form(fields))))
            .unwrap();
        let response = within(STEP, "publish answer", self.client.request(request))
            .await
            .map_err(|e| format!("{e:?}"))?;
        let (parts, body) = response.into_parts();
        let bytes = within(STEP, "publish answer body", body.collect())
            .await
            .map_err(|e| format!("{e:?}"))?
            .to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            version: parts.version,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        })
    }

    /// Publishes and insists on `200` with `id` echoed.
    pub async fn publish_ok(&self, url: &str, token: &str, fields: &[(&str, &str)]) {
        let answer = self.publish(url, Some(token), fields).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "publish {fields:?}: {answer:?}"
        );
        if let Some((_, id)) = fields.iter().find(|(n, _)| *n == "id") {
            assert_eq!(answer.body, *id, "the publish answer echoes the id");
        }
    }

    /// Opens a raw subscription (`GET url`) and returns its head and an event reader.
    pub async fn subscribe_raw(&self, url: &str, headers: &[(&str, &str)]) -> RawStream {
        let response = self.send(Method::GET, url, headers, Bytes::new()).await;
        let (parts, body) = response.into_parts();
        RawStream {
            status: parts.status,
            headers: parts.headers,
            body,
            decoder: Decoder::new(DecoderConfig::default()),
            ready: VecDeque::new(),
            raw_start: Vec::new(),
        }
    }
}

/// An event stream read through hyper, decoded with `herald_sse`.
pub struct RawStream {
    pub status: StatusCode,
    pub headers: HeaderMap,
    body: Incoming,
    decoder: Decoder,
    ready: VecDeque<MessageEvent>,
    /// The first bytes of the body (up to 64), to check the opening `:` comment.
    pub raw_start: Vec<u8>,
}

impl RawStream {
    /// Reads until some body bytes arrived (the hub's opening comment); returns them.
    pub async fn first_bytes(&mut self) -> Vec<u8> {
        while self.raw_start.is_empty() {
            assert!(self.read_more().await, "the stream ended before any byte");
        }
        self.raw_start.clone()
    }

    /// Reads one more body frame into the decoder; `false` at the end of the body.
    async fn read_more(&mut self) -> bool {
        let frame = within(STEP, "a body frame", self.body.frame()).await;
        let Some(frame) = frame else {
            return false;
        };
        let frame = frame.expect("the body reads");
        if let Ok(data) = frame.into_data() {
            if self.raw_start.len() < 64 {
                let take = data.len().min(64 - self.raw_start.len());
                self.raw_start.extend_from_slice(&data[..take]);
            }
            let ready = &mut self.ready;
            self.decoder
                .feed(&data, |d| {
                    if let Decoded::Event(e) = d {
                        ready.push_back(e);
                    }
                })
                .expect("a valid event stream");
        }
        true
    }

    /// Reads the rest of the body; returns it after the bytes [`first_bytes`](Self::first_bytes)
    /// saw (use it before reading any event).
    pub async fn read_to_end(&mut self) -> Vec<u8> {
        let mut all = std::mem::take(&mut self.raw_start);
        loop {
            let frame = within(STEP, "a body frame", self.body.frame()).await;
            let Some(frame) = frame else {
                return all;
            };
            if let Ok(data) = frame.expect("the body reads").into_data() {
                all.extend_from_slice(&data);
            }
        }
    }

    /// The next event; panics if the stream ends first.
    pub async fn next_event(&mut self) -> MessageEvent {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return e;
            }
            assert!(self.read_more().await, "the stream ended");
        }
    }

    /// Ids of the events up to and including the one with id `last`.
    pub async fn ids_until(&mut self, last: &str) -> Vec<String> {
        let mut ids = Vec::new();
        loop {
            let e = self.next_event().await;
            ids.push(e.last_event_id.clone());
            if e.last_event_id == last {
                return ids;
            }
        }
    }

    /// A response header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }
}

/// Waits for the next `Open` of an event source and returns the HTTP version.
pub async fn opened(events: &mut EventSource) -> Version {
    loop {
        let item = within(STEP, "EventSource open", events.next())
            .await
            .expect("the EventSource is alive")
            .expect("no client error");
        match item {
            ClientEvent::Open { version, .. } => return version,
            ClientEvent::Retry(_) => {}
            other => panic!("expected Open, got {other:?}"),
        }
    }
}

/// The next message of an event source; panics on anything but `Retry` before it.
pub async fn next_message(events: &mut EventSource) -> MessageEvent {
    loop {
        let item = within(STEP, "EventSource message", events.next())
            .await
            .expect("the EventSource is alive")
            .expect("no client error");
        match item {
            ClientEvent::Message(m) => return m,
            ClientEvent::Retry(_) => {}
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

/// Messages of an event source up to and including the one with id `last`.
pub async fn messages_until(events: &mut EventSource, last: &str) -> Vec<MessageEvent> {
    let mut out = Vec::new();
    loop {
        let m = next_message(events).await;
        let done = m.last_event_id == last;
        out.push(m);
        if done {
            return out;
        }
    }
}

/// Builds an event source with an optional bearer token and last event id; not yet opened.
pub fn event_source(url: &str, bearer: Option<&str>, last_event_id: Option<&str>) -> EventSource {
    let mut builder = EventSource::builder(url);
    if let Some(t) = bearer {
        builder = builder.header("Authorization", &format!("Bearer {t}"));
    }
    if let Some(id) = last_event_id {
        builder = builder.last_event_id(id);
    }
    builder.build().expect("a valid EventSource")
}
