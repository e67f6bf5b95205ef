//! Black-box tests of the HTTP/1.1 + HTTP/2 server: h1, h2c and TLS with ALPN on one port, slow
//! clients, bind and TLS errors, graceful shutdown, the peer address, and accept errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use herald_http::server::{Server, ServerConfig, ServerError, TlsFiles};
use http_body_util::{BodyExt, Empty};
use hyper::{Request, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;

/// Upper bound for every step that should be quick.
const STEP: Duration = Duration::from_secs(5);

const SSE_BODY: &str = "data: 1\n\ndata: 2\n\ndata: 3\n\n";

async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// [`bounded`], and the step must succeed.
async fn ok<T, E: std::fmt::Debug>(what: &str, future: impl Future<Output = Result<T, E>>) -> T {
    bounded(what, future).await.unwrap()
}

type H1Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;
type H2Sender = hyper::client::conn::http2::SendRequest<Empty<Bytes>>;

async fn h1_client(
    io: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
) -> (H1Sender, JoinHandle<hyper::Result<()>>) {
    let (sender, connection) = ok(
        "h1 handshake",
        hyper::client::conn::http1::handshake(TokioIo::new(io)),
    )
    .await;
    (sender, tokio::spawn(connection))
}

async fn h2_client(
    io: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
) -> H2Sender {
    let handshake = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io));
    let (sender, connection) = ok("h2 handshake", handshake).await;
    tokio::spawn(connection);
    sender
}

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "hello" }))
        .route(
            "/sse",
            get(|| async {
                let frames = ["data: 1\n\n", "data: 2\n\n", "data: 3\n\n"]
                    .map(|frame| Ok::<_, std::io::Error>(Bytes::from_static(frame.as_bytes())));
                (
                    [("content-type", "text/event-stream")],
                    Body::from_stream(futures_util::stream::iter(frames)),
                )
            }),
        )
        .route(
            "/forever",
            get(|| async {
                let first = futures_util::stream::iter([Ok::<_, std::io::Error>(
                    Bytes::from_static(b"data: first\n\n"),
                )]);
                let never = futures_util::stream::pending();
                (
                    [("content-type", "text/event-stream")],
                    Body::from_stream(futures_util::StreamExt::chain(first, never)),
                )
            }),
        )
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        )
}

fn config() -> ServerConfig {
    ServerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..ServerConfig::default()
    }
}

struct Running {
    addr: SocketAddr,
    is_tls: bool,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl Running {
    /// Triggers shutdown and returns what `serve` returned.
    async fn shutdown(mut self) -> Result<(), ServerError> {
        self.stop.take().unwrap().send(()).unwrap();
        ok("serve() to return", self.task).await
    }
}

async fn start_with(config: ServerConfig, app: Router) -> Running {
    let server = Server::bind(config).await.unwrap();
    let (addr, is_tls) = (server.local_addr(), server.is_tls());
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(server.serve(app, async {
        let _ = stopped.await;
    }));
    let stop = Some(stop);
    Running {
        addr,
        is_tls,
        stop,
        task,
    }
}

async fn start(config: ServerConfig) -> Running {
    start_with(config, app()).await
}

/// A one-shot HTTP/1.1 request over raw TCP; returns the whole response as text.
async fn raw_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = ok("connect", TcpStream::connect(addr)).await;
    raw_get_on(&mut stream, path).await
}

async fn raw_get_on(stream: &mut TcpStream, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    ok("response", stream.read_to_end(&mut response)).await;
    String::from_utf8(response).unwrap()
}

/// Reads until the server closes the connection (EOF or reset); returns what was read.
async fn read_until_closed(stream: &mut (impl AsyncReadExt + Unpin)) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return received,
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    }
}

async fn body_text(response: hyper::Response<hyper::body::Incoming>) -> String {
    let body = ok("body", response.into_body().collect()).await.to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

fn empty_get(uri: &str) -> Request<Empty<Bytes>> {
    Request::get(uri).body(Empty::new()).unwrap()
}

/// `GET /` for an HTTP/1 client connection (origin-form URI, explicit Host).
fn h1_get() -> Request<Empty<Bytes>> {
    let mut request = empty_get("/");
    let host = http::HeaderValue::from_static("localhost");
    request.headers_mut().insert(http::header::HOST, host);
    request
}

#[tokio::test]
async fn http1_get_on_port_zero() {
    let server = start(config()).await;
    assert_ne!(server.addr.port(), 0);

    let response = raw_get(server.addr, "/").await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.ends_with("\r\n\r\nhello"), "{response}");

    let sse = raw_get(server.addr, "/sse").await;
    assert!(sse.starts_with("HTTP/1.1 200 OK\r\n"), "{sse}");
    assert!(sse.contains("content-type: text/event-stream\r\n"), "{sse}");
    for frame in ["data: 1\n\n", "data: 2\n\n", "data: 3\n\n"] {
        assert!(sse.contains(frame), "{sse}");
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn h2c_prior_knowledge_on_the_same_port() {
    let server = start(config()).await;
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Empty<Bytes>>();

    for (path, expected) in [("/", "hello"), ("/sse", SSE_BODY)] {
        let uri = format!("http://{}{path}", server.addr);
        let response = ok("h2c request", client.request(empty_get(&uri))).await;
        assert_eq!(response.version(), Version::HTTP_2);
        assert_eq!(response.status(), 200);
        assert_eq!(body_text(response).await, expected);
    }
    // HTTP/1.1 still works beside it.
    assert!(raw_get(server.addr, "/").await.ends_with("hello"));
    drop(client);
    server.shutdown().await.unwrap();
}

/// A self-signed certificate for `localhost`, written to `dir`.
fn write_tls_files(dir: &Path) -> (TlsFiles, CertificateDer<'static>) {
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let files = TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&files.cert, cert.pem()).unwrap();
    std::fs::write(&files.key, key_pair.serialize_pem()).unwrap();
    (files, cert.der().clone())
}

async fn tls_connect(
    addr: SocketAddr,
    root: &CertificateDer<'static>,
    alpn: &[&[u8]],
) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = ok("connect", TcpStream::connect(addr)).await;
    let name = ServerName::try_from("localhost").unwrap();
    ok("TLS handshake", connector.connect(name, tcp)).await
}

#[tokio::test]
async fn tls_alpn_h2_and_http1() {
    let dir = tempfile::tempdir().unwrap();
    let (files, root) = write_tls_files(dir.path());
    let server = start(ServerConfig {
        tls: Some(files),
        ..config()
    })
    .await;
    assert!(server.is_tls);

    // A client offering both gets HTTP/2.
    let tls = tls_connect(server.addr, &root, &[b"h2", b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut sender = h2_client(tls).await;
    for (path, expected) in [("/", "hello"), ("/sse", SSE_BODY)] {
        let request = empty_get(&format!("https://localhost{path}"));
        let response = ok("h2 request", sender.send_request(request)).await;
        assert_eq!(response.version(), Version::HTTP_2);
        assert_eq!(body_text(response).await, expected);
    }

    // A client offering only http/1.1 gets HTTP/1.1.
    let tls = tls_connect(server.addr, &root, &[b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut sender, _connection) = h1_client(tls).await;
    let response = ok("h1 request", sender.send_request(h1_get())).await;
    assert_eq!(response.version(), Version::HTTP_11);
    assert_eq!(body_text(response).await, "hello");

    // Cleartext requests to the TLS port are not served.
    let mut plain = TcpStream::connect(server.addr).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let reply = bounded("plaintext refused", read_until_closed(&mut plain)).await;
    assert!(!String::from_utf8_lossy(&reply).contains("hello"));

    drop(sender);
    server.shutdown().await.unwrap();
}

fn slow_config() -> ServerConfig {
    ServerConfig {
        header_read_timeout: Duration::from_millis(300),
        ..config()
    }
}

#[tokio::test]
async fn slow_request_head_is_cut_while_others_are_served() {
    let server = start(slow_config()).await;
    let head = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: {}\r\n\r\n",
        "a".repeat(40)
    );
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // One byte every 50 ms: the whole head would take over 3 s, ten times the timeout.
    let slow_writer = tokio::spawn(async move {
        let mut pace = tokio::time::interval(Duration::from_millis(50));
        for byte in head.as_bytes() {
            pace.tick().await;
            if writer.write_all(&[*byte]).await.is_err() {
                return false;
            }
        }
        true
    });

    // Meanwhile a normal client is served.
    assert!(raw_get(server.addr, "/").await.ends_with("hello"));

    let reply = bounded("slow client cut", read_until_closed(&mut reader)).await;
    let reply = String::from_utf8_lossy(&reply);
    assert!(!reply.contains("hello"), "slow client was served: {reply}");
    // hyper may say why before closing.
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 408"),
        "{reply}"
    );
    slow_writer.abort();
    assert!(raw_get(server.addr, "/").await.ends_with("hello"));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn silent_and_stalled_connections_are_closed() {
    let server = start(slow_config()).await;
    // Sends nothing at all.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    // Starts the HTTP/2 preface and stops: the protocol is never decided.
    let mut half_preface = TcpStream::connect(server.addr).await.unwrap();
    half_preface.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    // Completes the preface but sends no request.
    let mut h2_idle = TcpStream::connect(server.addr).await.unwrap();
    h2_idle
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();

    bounded("silent client cut", read_until_closed(&mut silent)).await;
    bounded("half preface cut", read_until_closed(&mut half_preface)).await;
    bounded("idle h2 client cut", read_until_closed(&mut h2_idle)).await;
    assert!(raw_get(server.addr, "/").await.ends_with("hello"));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn stalled_tls_handshake_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (files, _) = write_tls_files(dir.path());
    let server = start(ServerConfig {
        tls: Some(files),
        ..slow_config()
    })
    .await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    bounded("silent TLS client cut", read_until_closed(&mut silent)).await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn bind_on_an_address_in_use_fails_with_a_clear_message() {
    let first = Server::bind(config()).await.unwrap();
    let addr = first.local_addr();
    let error = Server::bind(ServerConfig {
        listen: addr,
        ..config()
    })
    .await
    .unwrap_err();
    assert!(
        matches!(&error, ServerError::Bind { addr: a, source } if *a == addr
            && source.kind() == std::io::ErrorKind::AddrInUse),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains(&addr.to_string()), "{message}");
    assert!(message.contains("address already in use"), "{message}");
    assert!(message.contains("--listen"), "{message}");
}

async fn tls_error(cert: PathBuf, key: PathBuf) -> String {
    let error = Server::bind(ServerConfig {
        tls: Some(TlsFiles { cert, key }),
        ..config()
    })
    .await
    .unwrap_err();
    match error {
        ServerError::Tls(message) => message,
        other => panic!("expected ServerError::Tls, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_tls_files_fail_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let (good, _) = write_tls_files(dir.path());
    let show = |path: &Path| path.display().to_string();

    let missing = dir.path().join("missing.pem");
    let message = tls_error(missing.clone(), good.key.clone()).await;
    assert!(message.contains(&show(&missing)), "{message}");
    assert!(message.contains("cannot read"), "{message}");

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "this is not a certificate\n").unwrap();
    let message = tls_error(garbage.clone(), good.key.clone()).await;
    assert!(message.contains(&show(&garbage)), "{message}");
    assert!(message.contains("no certificate"), "{message}");

    let broken = dir.path().join("broken.pem");
    std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\n!!!!\n").unwrap();
    let message = tls_error(broken.clone(), good.key.clone()).await;
    assert!(message.contains(&show(&broken)), "{message}");

    // A certificate where the key should be.
    let message = tls_error(good.cert.clone(), good.cert.clone()).await;
    assert!(message.contains("no private key"), "{message}");
    assert!(message.contains(&show(&good.cert)), "{message}");

    // A key that belongs to another certificate.
    let other_dir = tempfile::tempdir().unwrap();
    let (other, _) = write_tls_files(other_dir.path());
    let message = tls_error(good.cert.clone(), other.key.clone()).await;
    assert!(message.contains(&show(&other.key)), "{message}");
    assert!(message.contains(&show(&good.cert)), "{message}");
}

#[tokio::test]
async fn shutdown_returns_ok_and_refuses_new_connections() {
    let server = start(ServerConfig {
        // Far longer than the test's bound: idle connections must not hold shutdown up.
        shutdown_grace: Duration::from_secs(60),
        ..config()
    })
    .await;
    let addr = server.addr;
    // An idle keep-alive connection.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = h1_client(tcp).await;
    let response = ok("request", sender.send_request(h1_get())).await;
    assert_eq!(body_text(response).await, "hello");

    server.shutdown().await.unwrap();
    let refused = bounded("connect after shutdown", TcpStream::connect(addr)).await;
    assert!(refused.is_err(), "a connection was accepted after shutdown");
    // The idle connection was closed by the server.
    ok("idle connection closed", connection).await.unwrap();
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish() {
    let started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let app = {
        let (started, release) = (Arc::clone(&started), Arc::clone(&release));
        Router::new().route(
            "/wait",
            get(move || async move {
                started.notify_one();
                release.notified().await;
                "done"
            }),
        )
    };
    let server = start_with(config(), app).await;
    let addr = server.addr;
    let mut client = TcpStream::connect(addr).await.unwrap();
    let in_flight = tokio::spawn(async move { raw_get_on(&mut client, "/wait").await });
    bounded("handler started", started.notified()).await;

    let Running { stop, task, .. } = server;
    stop.unwrap().send(()).unwrap();
    // Once connecting fails, serve() has seen the shutdown and closed its listener.
    bounded("listener closed", async {
        while TcpStream::connect(addr).await.is_ok() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(
        !task.is_finished(),
        "serve() returned with a request in flight"
    );
    release.notify_one();

    let response = ok("in-flight response", in_flight).await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.ends_with("done"), "{response}");
    ok("serve() to return", task).await.unwrap();
}

#[tokio::test]
async fn shutdown_drops_endless_streams_after_the_grace_period() {
    let server = start(ServerConfig {
        shutdown_grace: Duration::from_millis(200),
        ..config()
    })
    .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /forever HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&received).contains("data: first") {
        let n = ok("first frame", stream.read(&mut buf)).await;
        assert_ne!(n, 0, "closed before the first frame");
        received.extend_from_slice(&buf[..n]);
    }

    server.shutdown().await.unwrap();
    bounded("stream cut", read_until_closed(&mut stream)).await;
}

#[tokio::test]
async fn handlers_see_the_peer_address() {
    let server = start(config()).await;

    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let response = raw_get_on(&mut tcp, "/peer").await;
    assert!(
        response.ends_with(&format!("\r\n\r\n{local}")),
        "{response}"
    );

    // Over HTTP/2 too.
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let mut sender = h2_client(tcp).await;
    let uri = format!("http://{}/peer", server.addr);
    let response = ok("h2c request", sender.send_request(empty_get(&uri))).await;
    assert_eq!(response.version(), Version::HTTP_2);
    assert_eq!(body_text(response).await, local.to_string());
    drop(sender);
    server.shutdown().await.unwrap();
}

/// Set in the child process that runs [`emfile_child`].
const EMFILE_CHILD: &str = "HERALD_SERVER_TEST_EMFILE_CHILD";

/// Exhausting file descriptors affects the whole process, so the scenario runs alone in a child
/// process (this test binary, filtered to `emfile_child`).
#[test]
fn accept_errors_do_not_stop_the_server() {
    let exe = std::env::current_exe().unwrap();
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let output = std::process::Command::new(exe)
            .args([
                "emfile_child",
                "--exact",
                "--ignored",
                "--test-threads=1",
                "--nocapture",
            ])
            .env(EMFILE_CHILD, "1")
            .output();
        let _ = done.send(output);
    });
    let output = result
        .recv_timeout(Duration::from_secs(60))
        .expect("child test timed out")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "child did not run:\n{stdout}");
}

/// Records when the server reports a failed accept.
struct AcceptFailures(tokio::sync::mpsc::UnboundedSender<std::time::Instant>);

struct MessageVisitor(String);

impl tracing::field::Visit for MessageVisitor {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl tracing::Subscriber for AcceptFailures {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.target().starts_with("herald_http")
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut message = MessageVisitor(String::new());
        event.record(&mut message);
        if message.0.contains("accept failed") {
            let _ = self.0.send(std::time::Instant::now());
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test]
#[ignore = "run in a child process by accept_errors_do_not_stop_the_server"]
async fn emfile_child() {
    if std::env::var_os(EMFILE_CHILD).is_none() {
        return;
    }
    let (failures, mut failed) = tokio::sync::mpsc::unbounded_channel();
    tracing::subscriber::set_global_default(AcceptFailures(failures)).unwrap();
    let server = start(config()).await;

    // Use up every descriptor but one, which the client takes.
    let mut hoard = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(file) => hoard.push(file),
            Err(error) if error.raw_os_error() == Some(24) => break, // EMFILE
            Err(error) => panic!("unexpected error while exhausting descriptors: {error}"),
        }
        assert!(hoard.len() < 1_000_000, "no descriptor limit");
    }
    hoard.pop();
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();

    // The server cannot accept it: it must report, pause, and try again — not spin or stop.
    let first = bounded("first accept failure", failed.recv())
        .await
        .unwrap();
    let second = bounded("second accept failure", failed.recv())
        .await
        .unwrap();
    let pause = second - first;
    assert!(pause >= Duration::from_millis(40), "no backoff: {pause:?}");

    drop(hoard);
    let mut response = Vec::new();
    ok("served after recovery", client.read_to_end(&mut response)).await;
    let response = String::from_utf8(response).unwrap();
    assert!(response.ends_with("hello"), "{response}");
    server.shutdown().await.unwrap();
}
