//! Test servers on 127.0.0.1: a scripted raw HTTP/1.1 server with full control over the bytes,
//! and a hyper HTTP/2 server (cleartext h2c or TLS with ALPN h2).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use herald_client::{ClientError, ClientEvent, EventSource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Every wait in the tests is bounded by this.
pub const LIMIT: Duration = Duration::from_secs(10);

/// Awaits `fut`, failing the test if it takes longer than [`LIMIT`].
pub async fn within<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, fut)
        .await
        .expect("timed out waiting")
}

/// The next item of the stream, bounded in time.
pub async fn next(es: &mut EventSource) -> Option<Result<ClientEvent, ClientError>> {
    within(es.next()).await
}

/// The next item, which must be an event.
pub async fn event(es: &mut EventSource) -> ClientEvent {
    match next(es).await {
        Some(Ok(event)) => event,
        other => panic!("expected an event, got {other:?}"),
    }
}

/// The next item, which must be a message: returns (type, data, last event id).
pub async fn message(es: &mut EventSource) -> (String, String, String) {
    match event(es).await {
        ClientEvent::Message(m) => (m.event_type, m.data, m.last_event_id),
        other => panic!("expected a message, got {other:?}"),
    }
}

/// The next item, which must be `Open`: returns its URL path.
pub async fn open(es: &mut EventSource) -> String {
    match event(es).await {
        ClientEvent::Open { url, .. } => url.path().to_owned(),
        other => panic!("expected Open, got {other:?}"),
    }
}

/// The next item, which must be `Reconnecting`: returns its delay.
pub async fn reconnecting(es: &mut EventSource) -> Duration {
    match event(es).await {
        ClientEvent::Reconnecting { delay, .. } => delay,
        other => panic!("expected Reconnecting, got {other:?}"),
    }
}

/// A request as the server received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// 0 for the first connection the server accepted.
    pub index: usize,
    pub path: String,
    /// Lower-cased names, raw value bytes.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Recorded {
    /// The raw bytes of the first value of a header.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// What the scripted server does with a request.
pub enum Reply {
    /// Writes the bytes and closes the connection.
    Close(Vec<u8>),
    /// Writes the bytes and keeps the connection until the client closes it.
    Hold(Vec<u8>),
}

/// A `200 text/event-stream` response head followed by `body`, delimited by closing the
/// connection.
pub fn sse(body: &str) -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n{body}")
        .into_bytes()
}

/// A response without body; `extra` is more header lines, each ending in CRLF.
pub fn status(code: u16, reason: &str, extra: &str) -> Vec<u8> {
    format!("HTTP/1.1 {code} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n{extra}\r\n")
        .into_bytes()
}

/// A raw HTTP/1.1 server: one request per connection, answered by a script.
pub struct ScriptServer {
    pub addr: SocketAddr,
    /// Each request, as soon as its head was read (before the reply).
    pub requests: mpsc::UnboundedReceiver<Recorded>,
    /// The index of each held connection the client closed.
    pub closed: mpsc::UnboundedReceiver<usize>,
    task: JoinHandle<()>,
}

impl Drop for ScriptServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ScriptServer {
    pub async fn start(script: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (req_tx, requests) = mpsc::unbounded_channel();
        let (closed_tx, closed) = mpsc::unbounded_channel();
        let script = Arc::new(script);
        let task = tokio::spawn(async move {
            let mut index = 0;
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (script, req_tx, closed_tx) =
                    (script.clone(), req_tx.clone(), closed_tx.clone());
                tokio::spawn(serve_one(stream, index, script, req_tx, closed_tx));
                index += 1;
            }
        });
        Self {
            addr,
            requests,
            closed,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next request the server received.
    pub async fn request(&mut self) -> Recorded {
        within(self.requests.recv()).await.expect("server gone")
    }
}

async fn serve_one(
    mut stream: TcpStream,
    index: usize,
    script: Arc<impl Fn(&Recorded) -> Reply>,
    req_tx: mpsc::UnboundedSender<Recorded>,
    closed_tx: mpsc::UnboundedSender<usize>,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let recorded = parse_request(index, &head);
    let reply = script(&recorded);
    let _ = req_tx.send(recorded);
    match reply {
        Reply::Close(bytes) => {
            let _ = stream.write_all(&bytes).await;
            let _ = stream.shutdown().await;
        }
        Reply::Hold(bytes) => {
            let _ = stream.write_all(&bytes).await;
            // Until the client goes away.
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
            let _ = closed_tx.send(index);
        }
    }
}

fn parse_request(index: usize, head: &[u8]) -> Recorded {
    let end = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let mut lines = head[..end].split(|&b| b == b'\n');
    let request_line = String::from_utf8_lossy(lines.next().unwrap()).into_owned();
    let path = request_line
        .split(' ')
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let headers = lines
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            let name = String::from_utf8_lossy(&line[..colon]).to_ascii_lowercase();
            let value = line[colon + 1..].trim_ascii().to_vec();
            Some((name, value))
        })
        .collect();
    Recorded {
        index,
        path,
        headers,
    }
}
