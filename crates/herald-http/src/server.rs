//! The server: runs an axum [`Router`] on one TCP port, speaking HTTP/1.1 and HTTP/2.
//!
//! * Cleartext: HTTP/1.1, and HTTP/2 with prior knowledge (h2c) — the connection's first bytes
//!   tell which (the HTTP/2 client preface `PRI * HTTP/2.0…` or an HTTP/1 request line).
//! * TLS (rustls): ALPN offers `h2` and `http/1.1`; the client's choice is served.
//!
//! Handlers can read the client's address with the
//! [`ConnectInfo<SocketAddr>`](axum::extract::ConnectInfo) extractor: the server inserts it as a
//! request extension on every request, so `Router::into_make_service_with_connect_info` is not
//! needed.
//!
//! ```no_run
//! # async fn run(app: axum::Router) -> Result<(), herald_http::server::ServerError> {
//! use herald_http::server::{Server, ServerConfig};
//! let server = Server::bind(ServerConfig::default()).await?;
//! let shutdown = async { let _ = tokio::signal::ctrl_c().await; };
//! server.serve(app, shutdown).await
//! # }
//! ```
//!
//! Slow or silent clients are bounded: a connection must complete its TLS handshake and deliver
//! its first request head within [`ServerConfig::header_read_timeout`] of being accepted, and every
//! later HTTP/1 request head must arrive within the same time (hyper's header timer, which also
//! closes idle keep-alive connections after that long).

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::connection::{self, FirstRequest};

/// How long the accept loop pauses after an accept error such as `EMFILE` (too many open
/// files). Retrying at once would spin a core while the condition lasts; a short pause lets
/// connections close and frees descriptors without making new clients wait noticeably.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Minimum time between two `warn` lines about accept errors: when descriptors run out the
/// error repeats every [`ACCEPT_BACKOFF`], and one line per second says as much as twenty.
const ACCEPT_WARN_INTERVAL: Duration = Duration::from_secs(1);

/// HTTP/2 streams one client may have open at once. Browsers open one stream per
/// `EventSource`; 250 is well above what a page uses and bounds what one connection can hold.
const H2_MAX_CONCURRENT_STREAMS: u32 = 250;

/// What the server listens on and how it treats connections.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:8080`. Port 0 picks a free port (see
    /// [`Server::local_addr`]).
    pub listen: SocketAddr,
    /// Serve HTTPS with this certificate and key. Default `None`: cleartext (HTTP/1.1 and h2c).
    pub tls: Option<TlsFiles>,
    /// Time a client has to send a request head (and, for a new connection, to finish the TLS
    /// handshake and send its first request). A client slower than that is disconnected. Also
    /// the idle time after which an HTTP/1 keep-alive connection is closed. Default 10 s.
    pub header_read_timeout: Duration,
    /// Length of the kernel's queue of connections not yet accepted. Default 4096, so that a
    /// burst of reconnecting clients is not refused while the accept loop catches up.
    pub backlog: u32,
    /// After shutdown starts, how long open connections get to finish before they are dropped.
    /// Default 10 s.
    pub shutdown_grace: Duration,
    /// Threads that write the event streams the server takes over from HTTP/1.1 connections
    /// (see the `connection` module). They run apart from the threads that serve requests, so
    /// that a publish is not queued behind thousands of stream writes. Default 0: one per CPU.
    pub stream_threads: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls: None,
            header_read_timeout: Duration::from_secs(10),
            backlog: 4096,
            shutdown_grace: Duration::from_secs(10),
            stream_threads: 0,
        }
    }
}

/// PEM files for TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first (PEM `CERTIFICATE` blocks).
    pub cert: PathBuf,
    /// Private key: PEM `PRIVATE KEY` (PKCS#8), `RSA PRIVATE KEY` (PKCS#1) or `EC PRIVATE KEY`
    /// (SEC1).
    pub key: PathBuf,
}

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listening socket could not be set up on `addr`.
    #[error("cannot listen on {addr}: {}", describe_bind_error(.source))]
    Bind {
        /// The address from [`ServerConfig::listen`].
        addr: SocketAddr,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The TLS certificate or key could not be loaded; the message names the file and the
    /// problem.
    #[error("TLS: {0}")]
    Tls(String),
    /// Any other I/O failure.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

/// Turns the common bind failures into advice an operator can act on.
fn describe_bind_error(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::AddrInUse => "address already in use — is another herald running? \
             use --listen to pick another address"
            .to_owned(),
        io::ErrorKind::PermissionDenied => format!(
            "permission denied ({error}) — ports below 1024 need extra privileges; \
             use --listen to pick another address"
        ),
        io::ErrorKind::AddrNotAvailable => format!(
            "address not available ({error}) — it is not an address of this machine; \
             use --listen to pick another address"
        ),
        _ => error.to_string(),
    }
}

/// A bound listening socket, ready to [`serve`](Server::serve).
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    config: ServerConfig,
    stream_runtime: StreamRuntime,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("tls", &self.tls.is_some())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Opens the listening socket (`SO_REUSEADDR`, the configured backlog) and loads the TLS
    /// certificate and key, so that a wrong address or a bad file is reported at start, not at
    /// the first connection.
    pub async fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        // TLS first: a bad file is the likelier mistake, and it needs no socket to report.
        let tls = match &config.tls {
            Some(files) => Some(TlsAcceptor::from(load_tls(files)?)),
            None => None,
        };
        let addr = config.listen;
        let bind_error = |source| ServerError::Bind { addr, source };
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )
        .map_err(bind_error)?;
        // Lets a restarted herald listen again while the old process's connections sit in
        // TIME_WAIT. On Unix it does not allow two live listeners on one port; on Windows it
        // would, so it is not set there.
        if cfg!(unix) {
            socket.set_reuse_address(true).map_err(bind_error)?;
        }
        socket.set_nonblocking(true).map_err(bind_error)?;
        socket.bind(&addr.into()).map_err(bind_error)?;
        let backlog = i32::try_from(config.backlog).unwrap_or(i32::MAX);
        socket.listen(backlog).map_err(bind_error)?;
        let listener = TcpListener::from_std(socket.into())?;
        let local_addr = listener.local_addr()?;
        let stream_runtime = StreamRuntime::start(config.stream_threads)?;
        Ok(Server {
            listener,
            local_addr,
            tls,
            config,
            stream_runtime,
        })
    }

    /// The address the server listens on (with the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Whether connections are served over TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves `app` until `shutdown` resolves, then shuts down gracefully: the listener is closed
    /// (new connections are refused), every connection is asked to finish (HTTP/1 closes after
    /// the response in flight, HTTP/2 sends GOAWAY), and serve waits up to
    /// [`ServerConfig::shutdown_grace`] for them before dropping the rest.
    ///
    /// Streaming responses (SSE) end only when their body ends, so whoever owns the streams
    /// should end them when shutdown starts; those still open after the grace period are cut.
    ///
    /// Accept errors (e.g. too many open files) do not stop the server: they are logged and
    /// accepting resumes after a short pause.
    pub async fn serve(
        self,
        app: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let Server {
            listener,
            local_addr,
            tls,
            config,
            stream_runtime,
        } = self;
        let graceful = GracefulShutdown::new();
        let mut connections = JoinSet::new();
        // Event streams the server writes itself, after their connection's task is done.
        let streams = TaskTracker::new();
        let context = Arc::new(ConnectionContext {
            tls,
            builder: http_builder(&config),
            app,
            streams: streams.clone(),
            stream_runtime: stream_runtime.handle(),
            header_read_timeout: config.header_read_timeout,
        });
        let mut shutdown = std::pin::pin!(shutdown);
        let mut last_warn: Option<Instant> = None;
        tracing::info!(%local_addr, tls = context.tls.is_some(), "listening");

        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(done) = connections.join_next(), if !connections.is_empty() => {
                    if let Err(error) = done {
                        if error.is_panic() {
                            tracing::error!(%error, "connection task panicked");
                        }
                    }
                }
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        // Small SSE frames must leave at once, not wait for Nagle's algorithm.
                        if let Err(error) = stream.set_nodelay(true) {
                            tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
                        }
                        connections.spawn(handle_connection(
                            stream,
                            peer,
                            Arc::clone(&context),
                            // Subscribed now, so a shutdown that starts during the TLS handshake
                            // still reaches this connection once it is served.
                            graceful.watcher(),
                        ));
                    }
                    // The client gave up before we accepted; nothing is wrong with the server.
                    Err(error) if is_connection_error(&error) => {
                        tracing::debug!(%error, "accepted connection already closed");
                    }
                    Err(error) => {
                        let now = Instant::now();
                        if last_warn.is_none_or(|at| now - at >= ACCEPT_WARN_INTERVAL) {
                            last_warn = Some(now);
                            tracing::warn!(
                                %error,
                                backoff_ms = ACCEPT_BACKOFF.as_millis() as u64,
                                "accept failed; retrying after a pause"
                            );
                        } else {
                            tracing::debug!(%error, "accept failed; retrying after a pause");
                        }
                        tokio::select! {
                            () = &mut shutdown => break,
                            () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                        }
                    }
                },
            }
        }

        // Closing the listener first makes new clients fail fast (connection refused) and go
        // elsewhere instead of waiting in a backlog nobody drains.
        drop(listener);
        let open = connections.len();
        tracing::info!(open, "shutting down: waiting for connections to finish");
        streams.close();
        let drained = tokio::time::timeout(config.shutdown_grace, async {
            graceful.shutdown().await;
            while connections.join_next().await.is_some() {}
            streams.wait().await;
        })
        .await;
        if drained.is_err() {
            tracing::info!(
                remaining = connections.len() + streams.len(),
                "shutdown grace period over; dropping remaining connections"
            );
            connections.shutdown().await;
        }
        // Streams still open now are cut when the stream runtime goes.
        drop(stream_runtime);
        Ok(())
    }
}

/// The runtime whose threads write the taken-over event streams. Dropping it (in any context,
/// also inside another runtime) ends the streams still running on it.
struct StreamRuntime(Option<tokio::runtime::Runtime>);

impl StreamRuntime {
    fn start(threads: usize) -> io::Result<Self> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        } else {
            threads
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("herald-streams")
            .enable_all()
            .build()?;
        Ok(Self(Some(runtime)))
    }

    fn handle(&self) -> Option<tokio::runtime::Handle> {
        self.0.as_ref().map(|rt| rt.handle().clone())
    }
}

impl Drop for StreamRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// The connection builder shared by all connections.
fn http_builder(config: &ServerConfig) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        // Pings cost a wake-up per idle connection; SSE heartbeats already keep paths alive.
        .keep_alive_interval(None);
    builder
}

/// Errors from `accept` that concern one connection that is already gone, not the listener.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// What every connection of a server shares.
struct ConnectionContext {
    tls: Option<TlsAcceptor>,
    builder: Builder<TokioExecutor>,
    app: Router,
    /// Event streams written by the server itself (see [`connection`]).
    streams: TaskTracker,
    /// Where those streams run (`None`: on the current runtime).
    stream_runtime: Option<tokio::runtime::Handle>,
    header_read_timeout: Duration,
}

/// One accepted connection: TLS handshake if configured, then HTTP until the client leaves.
async fn handle_connection(
    stream: TcpStream,
    peer: SocketAddr,
    context: Arc<ConnectionContext>,
    watcher: Watcher,
) {
    // One deadline for handshake and first request: a client cannot stretch its allowance by
    // being slow in each phase in turn.
    let deadline = Instant::now() + context.header_read_timeout;
    let (builder, app) = (&context.builder, context.app.clone());
    match &context.tls {
        None => {
            match connection::first_request(
                stream,
                peer,
                &app,
                deadline,
                &context.streams,
                context.stream_runtime.as_ref(),
            )
            .await
            {
                FirstRequest::Done => {}
                FirstRequest::Hyper(io) => {
                    serve_connection(io, peer, builder, app, watcher, deadline).await
                }
            }
        }
        Some(acceptor) => match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => serve_connection(stream, peer, builder, app, watcher, deadline).await,
            Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
        },
    }
}

/// Serves HTTP on `io` until the connection ends, the graceful shutdown completes, or — if no
/// request arrived by `deadline` — the client is found to be stalling.
async fn serve_connection<IO>(
    io: IO,
    peer: SocketAddr,
    builder: &Builder<TokioExecutor>,
    app: Router,
    watcher: Watcher,
    deadline: Instant,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let got_request = Arc::new(AtomicBool::new(false));
    let service = {
        let got_request = Arc::clone(&got_request);
        app.map_request(move |mut request: Request<Incoming>| {
            got_request.store(true, Ordering::Relaxed);
            request.extensions_mut().insert(ConnectInfo(peer));
            request
        })
    };
    // Upgrades are kept available so that routes needing them (e.g. WebSocket) work.
    let connection =
        builder.serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service));
    let mut connection = std::pin::pin!(watcher.watch(connection));
    // hyper's HTTP/1 header timer starts only once the protocol is known, and HTTP/2 has no
    // such timer: a client sending nothing, or half an HTTP/2 preface, would otherwise hold
    // its socket forever. Checked once, at the deadline, to keep no per-request work.
    let mut first_request_pending = true;
    loop {
        tokio::select! {
            result = &mut connection => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(deadline), if first_request_pending => {
                if !got_request.load(Ordering::Relaxed) {
                    tracing::debug!(%peer, "no request within the header timeout; closing");
                    return;
                }
                first_request_pending = false;
            }
        }
    }
}

/// Reads the certificate chain and key and builds the rustls configuration (ALPN `h2`,
/// `http/1.1`).
fn load_tls(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    // Blocking reads are fine here: two small files, once, at start-up.
    let certs = read_certificates(&files.cert)?;
    let key = read_private_key(&files.key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| ServerError::Tls(format!("cannot set up TLS: {error}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|error| {
            ServerError::Tls(format!(
                "the key in {} cannot be used with the certificate in {}: {error}",
                files.key.display(),
                files.cert.display()
            ))
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Reads a file for TLS, naming it in the error.
fn read_pem_file(path: &Path, what: &str) -> Result<Vec<u8>, ServerError> {
    std::fs::read(path).map_err(|error| {
        ServerError::Tls(format!(
            "cannot read {what} file {}: {error}",
            path.display()
        ))
    })
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, ServerError> {
    let pem = read_pem_file(path, "TLS certificate")?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| {
            ServerError::Tls(format!(
                "TLS certificate file {} is not valid PEM: {error}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(ServerError::Tls(format!(
            "TLS certificate file {} contains no certificate \
             (expected PEM \"-----BEGIN CERTIFICATE-----\" blocks)",
            path.display()
        )));
    }
    Ok(certs)
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, ServerError> {
    let pem = read_pem_file(path, "TLS private key")?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|error| {
        let problem = match error {
            rustls::pki_types::pem::Error::NoItemsFound => "contains no private key (expected \
                 PEM \"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\")"
                .to_owned(),
            other => format!("is not valid PEM: {other}"),
        };
        ServerError::Tls(format!("TLS private key file {} {problem}", path.display()))
    })
}
