//! SIGTERM with 1,000 connected subscribers and publishes in flight: `herald serve` exits 0
//! within its grace period, every stream ends cleanly, later publishes fail fast, and every
//! update answered 200 is in the history after a restart, exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::{token, within, Http, HubProcess, STEP};
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Upper bound of the whole test.
const TEST: Duration = Duration::from_secs(55);

/// Connected subscribers (all from 127.0.0.1: well under the default 10,000 per address, and
/// 2,000 sockets in all with the hub's side, under the 20,000 open files allowed).
const SUBSCRIBERS: usize = 1_000;

/// Concurrent publishers.
const PUBLISHERS: usize = 4;

/// Publishes answered 200 before the signal is sent.
const BEFORE_SIGNAL: usize = 200;

/// `ServerConfig::shutdown_grace` is 10 s; the process must be gone well within this.
const EXIT_LIMIT: Duration = Duration::from_secs(15);

/// A publish after the signal must fail (or succeed) within this; longer counts as a hang.
const PUBLISH_LIMIT: Duration = Duration::from_secs(5);

const TOPIC: &str = "t";

/// How one subscriber's stream ended.
#[derive(Debug)]
struct Ended {
    /// Bytes received after the response head.
    bytes: usize,
    /// The last bytes received.
    tail: Vec<u8>,
    /// Whether the hub closed the connection (EOF), as opposed to a read error.
    eof: bool,
    /// When the stream ended.
    at: Instant,
}

/// Connects one raw HTTP/1.1 subscriber, reports on `ready` once the hub's opening `:` comment
/// arrived, then reads until the connection ends.
async fn subscriber(authority: String, ready: mpsc::UnboundedSender<()>) -> Ended {
    let mut socket = TcpStream::connect(&authority).await.expect("connect");
    let request = format!(
        "GET /.well-known/mercure?topic={TOPIC} HTTP/1.1\r\nHost: {authority}\r\n\
         Accept: text/event-stream\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await.expect("send");
    let mut head = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let body_start = loop {
        let n = socket.read(&mut buf).await.expect("read the head");
        assert!(n > 0, "the hub closed before the head: {head:?}");
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let text = String::from_utf8_lossy(&head[..body_start]).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(text.contains("transfer-encoding: chunked"), "{text}");
    let mut body = head.split_off(body_start);
    // The first chunk's size is hex digits; the first `:` is the opening comment.
    while !body.contains(&b':') {
        let n = socket
            .read(&mut buf)
            .await
            .expect("read the opening comment");
        assert!(n > 0, "the stream ended before its opening comment");
        body.extend_from_slice(&buf[..n]);
    }
    let _ = ready.send(());
    let mut bytes = body.len();
    let mut tail = body;
    let eof = loop {
        match socket.read(&mut buf).await {
            Ok(0) => break true,
            Ok(n) => {
                bytes += n;
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > 64 {
                    tail.drain(..tail.len() - 64);
                }
            }
            Err(_) => break false,
        }
    };
    Ended {
        bytes,
        tail,
        eof,
        at: Instant::now(),
    }
}

/// How a publisher's run ended: what the first publish that was not answered 200 got.
#[derive(Debug)]
enum Stop {
    /// An HTTP status other than 200.
    Status(StatusCode, String),
    /// A transport error (connection refused, closed, reset).
    Transport(String),
    /// No answer within [`PUBLISH_LIMIT`].
    Hang,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Status(code, body) => write!(f, "{code} {}", body.trim()),
            Self::Transport(error) if error.contains("ConnectionRefused") => {
                f.write_str("connection refused")
            }
            Self::Transport(error) => write!(f, "transport error: {error}"),
            Self::Hang => write!(f, "no answer within {PUBLISH_LIMIT:?}"),
        }
    }
}

/// One publisher: publishes `s-P-I` with increasing I until a publish is not answered 200.
/// Returns the ids answered 200, in order, and the id and outcome of the one that was not.
async fn publisher(
    p: usize,
    endpoint: String,
    answered: mpsc::UnboundedSender<()>,
) -> (Vec<String>, String, Stop) {
    let http = Http::new();
    let bearer = token(Some(&["*"]), None);
    let mut ok = Vec::new();
    loop {
        let id = format!("s-{p}-{}", ok.len());
        let fields = [("topic", TOPIC), ("id", id.as_str()), ("data", "x")];
        let stop = match tokio::time::timeout(
            PUBLISH_LIMIT,
            http.try_publish(&endpoint, &bearer, &fields),
        )
        .await
        {
            Ok(Ok(a)) if a.status == StatusCode::OK => {
                assert_eq!(a.body, id);
                ok.push(id);
                let _ = answered.send(());
                continue;
            }
            Ok(Ok(a)) => Stop::Status(a.status, a.body),
            Ok(Err(e)) => Stop::Transport(e),
            Err(_) => Stop::Hang,
        };
        return (ok, id, stop);
    }
}

/// SIGTERM with 1,000 subscribers connected and 4 publishers publishing: exit 0 within the
/// grace period, every stream ended with the chunked terminator, no publish hangs, and every
/// update answered 200 is in history exactly once after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_1000_subscribers_exits_0_ends_every_stream_and_loses_nothing() {
    within(TEST, "the test", async {
        let started = Instant::now();
        let dir = tempfile::tempdir().unwrap();
        let mut hub = HubProcess::start(dir.path(), &["--store", "redb"]).await;

        let (ready_tx, mut ready) = mpsc::unbounded_channel();
        let mut subscribers = JoinSet::new();
        for _ in 0..SUBSCRIBERS {
            subscribers.spawn(subscriber(hub.authority(), ready_tx.clone()));
        }
        drop(ready_tx);
        for _ in 0..SUBSCRIBERS {
            within(STEP, "1,000 subscribers connected", ready.recv())
                .await
                .expect("no subscriber failed to connect");
        }
        let connected = started.elapsed();

        let (answered_tx, mut answered) = mpsc::unbounded_channel();
        let mut publishers = JoinSet::new();
        for p in 0..PUBLISHERS {
            publishers.spawn(publisher(p, hub.endpoint.clone(), answered_tx.clone()));
        }
        drop(answered_tx);
        for _ in 0..BEFORE_SIGNAL {
            within(STEP, "publishes answered before the signal", answered.recv())
                .await
                .expect("publishers are running");
        }

        let signalled = Instant::now();
        let publishing = signalled - started - connected;
        let status = hub.terminate().await;
        let exited = signalled.elapsed();
        let stderr = hub.stderr_text();
        assert_eq!(status.code(), Some(0), "SIGTERM exits 0; stderr:\n{stderr}");
        assert!(
            exited < EXIT_LIMIT,
            "exit took {exited:?}, beyond the grace period"
        );
        assert!(stderr.contains("herald: stopped"), "{stderr}");

        // Every stream ended after the signal, with the chunked body's terminator.
        let mut ends = Vec::new();
        while let Some(done) = within(EXIT_LIMIT, "every stream ends", subscribers.join_next()).await
        {
            ends.push(done.unwrap());
        }
        assert_eq!(ends.len(), SUBSCRIBERS);
        let early = ends.iter().filter(|e| e.at < signalled).count();
        assert_eq!(early, 0, "streams ended before the signal");
        let unclean: Vec<&Ended> = ends
            .iter()
            .filter(|e| !e.eof || !e.tail.ends_with(b"\r\n0\r\n\r\n"))
            .collect();
        assert!(
            unclean.is_empty(),
            "{} of {SUBSCRIBERS} streams did not end cleanly (EOF after `0\\r\\n\\r\\n`), e.g. {:?}",
            unclean.len(),
            unclean
                .iter()
                .take(3)
                .map(|e| (e.eof, String::from_utf8_lossy(&e.tail)))
                .collect::<Vec<_>>()
        );
        let delivered: usize = ends.iter().map(|e| e.bytes).sum();
        let last_end = ends.iter().map(|e| e.at).max().unwrap() - signalled;

        // Publishes after the signal failed cleanly: 503 or a refused/closed connection, none
        // hanging.
        let mut answered_ids: Vec<Vec<String>> = vec![Vec::new(); PUBLISHERS];
        let mut in_flight: Vec<String> = vec![String::new(); PUBLISHERS];
        let mut stops = Vec::new();
        while let Some(done) = within(STEP, "publishers stop", publishers.join_next()).await {
            let (ok, failed_id, stop) = done.unwrap();
            let p: usize = failed_id.split('-').nth(1).unwrap().parse().unwrap();
            answered_ids[p] = ok;
            in_flight[p] = failed_id;
            stops.push(stop);
        }
        for stop in &stops {
            match stop {
                Stop::Status(StatusCode::SERVICE_UNAVAILABLE, _) | Stop::Transport(_) => {}
                Stop::Status(..) | Stop::Hang => {
                    panic!("a publish after the signal did not fail cleanly: {stop}")
                }
            }
        }
        let stops: Vec<String> = stops.iter().map(Stop::to_string).collect();
        let refused = Http::new()
            .try_publish(
                &hub.endpoint,
                &token(Some(&["*"]), None),
                &[("topic", TOPIC)],
            )
            .await;
        assert!(
            refused.is_err(),
            "the stopped hub refuses connections: {refused:?}"
        );
        let total_answered: usize = answered_ids.iter().map(Vec::len).sum();

        // Restarted on the same data: every update answered 200 is in history, exactly once,
        // in each publisher's order; besides them at most the one each publisher had in flight.
        let hub = HubProcess::start(dir.path(), &["--store", "redb"]).await;
        let http = Http::new();
        let mut history = http
            .subscribe_raw(&hub.subscribe_url(&[TOPIC], &[("lastEventID", "earliest")]), &[])
            .await;
        assert_eq!(history.status, StatusCode::OK);
        http.publish_ok(
            &hub.endpoint,
            &token(Some(&["*"]), None),
            &[("topic", TOPIC), ("id", "after-restart")],
        )
        .await;
        let mut order = history.ids_until("after-restart").await;
        order.pop();
        let unique: HashSet<&str> = order.iter().map(String::as_str).collect();
        assert_eq!(unique.len(), order.len(), "no update is in history twice");
        let mut by_publisher: HashMap<usize, Vec<&str>> = HashMap::new();
        for id in &order {
            let p: usize = id
                .strip_prefix("s-")
                .and_then(|r| r.split('-').next())
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("unexpected id in history: {id}"));
            by_publisher.entry(p).or_default().push(id);
        }
        for p in 0..PUBLISHERS {
            let mine = by_publisher.remove(&p).unwrap_or_default();
            let ok = &answered_ids[p];
            assert!(
                mine.len() >= ok.len(),
                "publisher {p}: {} answered 200, only {} in history",
                ok.len(),
                mine.len()
            );
            assert_eq!(
                &mine[..ok.len()],
                &ok[..],
                "publisher {p}: history holds every update answered 200, in order"
            );
            assert!(
                mine[ok.len()..].iter().all(|id| *id == in_flight[p]),
                "publisher {p}: besides its answered updates, at most the one in flight: {:?}",
                &mine[ok.len()..]
            );
        }

        println!(
            "{SUBSCRIBERS} subscribers connected in {connected:?}; {total_answered} publishes \
             answered 200 ({BEFORE_SIGNAL} before SIGTERM, in {publishing:?}); exit 0 after {exited:?}; last stream \
             ended {last_end:?} after the signal; {delivered} stream bytes delivered; {} updates \
             in history after the restart; publishers stopped by {stops:?}; test took {:?}",
            order.len(),
            started.elapsed()
        );
    })
    .await;
}
