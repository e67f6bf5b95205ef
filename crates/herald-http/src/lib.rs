//! Herald's HTTP layer: the Mercure endpoint (`/.well-known/mercure`) and friends as an axum
//! [`Router`](axum::Router) that any axum application can nest, plus the server that speaks
//! HTTP/1.1 and HTTP/2 (h2c and TLS with ALPN) on one port.
//!
//! The layer is thin: it parses requests, checks tokens, and maps onto [`herald_hub::Hub`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use herald_hub::auth::Verifier;
use herald_hub::Hub;

mod caller;
mod connection;
mod cors;
pub mod demo;
pub mod form;
mod history;
pub mod limits;
pub mod ops;
pub mod publish;
pub mod response;
pub mod server;
mod subscribe;
mod subscriptions;
pub mod token;
mod ui;

pub use history::{DEFAULT_LIMIT as HISTORY_DEFAULT_LIMIT, MAX_LIMIT as HISTORY_MAX_LIMIT};
pub use ui::PAGE_CSP;

/// The path of the Mercure endpoint.
pub const MERCURE_PATH: &str = "/.well-known/mercure";
/// The path of the JSON history endpoint, the polling fallback (Herald extension).
pub const HISTORY_PATH: &str = "/.well-known/mercure/history";

/// Settings of the HTTP layer. Every default is the value `herald serve` uses.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Verifies publishers' tokens; without it nobody can publish.
    pub publisher_key: Option<Verifier>,
    /// Verifies subscribers' tokens; without it only anonymous subscriptions work.
    pub subscriber_key: Option<Verifier>,
    /// Whether subscribers without a token are allowed (they never get private updates).
    /// Default: true.
    pub anonymous: bool,
    /// A `:` comment is written when nothing was written for this long. Default: 40 s.
    pub heartbeat: Duration,
    /// Streams end after this long (randomised down by up to 10 %); clients reconnect and resume.
    /// Default: 600 s. `None`: never.
    pub write_timeout: Option<Duration>,
    /// Name of the cookie that may hold the token. Default: `mercureAuthorization`.
    pub cookie_name: String,
    /// Origins allowed to publish with a cookie-held token (CSRF protection). Default: none.
    pub publish_origins: Vec<String>,
    /// Largest publish body (413 beyond). Default: 2 MiB.
    pub max_body_bytes: usize,
    /// Most topics in one publish or selectors in one subscription. Default: 1000.
    pub max_topics: usize,
    /// Largest `data` of one update, in bytes. Default: 1 MiB.
    pub max_data_bytes: usize,
    /// Most open subscriber streams in total (503 beyond). Default: 100,000. 0: no limit.
    pub max_subscribers: usize,
    /// Most open subscriber streams per client IP address (429 beyond). Default: 10,000.
    /// 0: no limit. Behind a reverse proxy every client has the proxy's address.
    pub max_subscribers_per_ip: usize,
    /// Origins allowed to read the hub's responses from a browser (CORS), with credentials.
    /// `*` allows every origin, without credentials. Default: none (same origin only).
    pub cors_origins: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            publisher_key: None,
            subscriber_key: None,
            anonymous: true,
            heartbeat: Duration::from_secs(40),
            write_timeout: Some(Duration::from_secs(600)),
            cookie_name: "mercureAuthorization".into(),
            publish_origins: Vec::new(),
            max_body_bytes: 2 << 20,
            max_topics: 1000,
            max_data_bytes: 1 << 20,
            max_subscribers: 100_000,
            max_subscribers_per_ip: 10_000,
            cors_origins: Vec::new(),
        }
    }
}

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    /// The engine.
    pub hub: Hub,
    /// The settings.
    pub config: HttpConfig,
    /// Open subscriber streams, against the limits.
    pub admission: limits::Admission,
    /// The HTTP layer's metrics.
    pub metrics: ops::HttpMetrics,
    /// Every metric, for `/metrics`.
    pub registry: prometheus_client::registry::Registry,
    /// One ticker for the heartbeats of every stream the server writes itself (rather than a
    /// timer per stream), started with the first such stream.
    ticks: std::sync::OnceLock<tokio::sync::watch::Receiver<()>>,
}

impl AppState {
    /// Ticks twice per heartbeat interval. A stream that wrote nothing during a whole tick
    /// interval writes a heartbeat, so no stream is silent longer than the interval.
    fn heartbeat_ticks(&self) -> tokio::sync::watch::Receiver<()> {
        self.ticks
            .get_or_init(|| {
                let (tx, rx) = tokio::sync::watch::channel(());
                let period = (self.config.heartbeat / 2).max(std::time::Duration::from_millis(1));
                tokio::spawn(async move {
                    let mut interval = tokio::time::interval(period);
                    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    interval.tick().await;
                    loop {
                        interval.tick().await;
                        // Ends when nobody listens any more (the router was dropped).
                        if tx.send(()).is_err() {
                            return;
                        }
                    }
                });
                rx
            })
            .clone()
    }
}

/// The routes: `/.well-known/mercure` (GET/HEAD subscribe, POST publish, anything else 405),
/// `/.well-known/mercure/history` (JSON history for polling clients), `/metrics`, `/healthz`,
/// `/readyz`, and the hub UI at `/` with the demo pages at `/demos/…`. Every response carries
/// security headers.
pub fn router(hub: Hub, config: HttpConfig) -> Router {
    let admission = limits::Admission::new(config.max_subscribers, config.max_subscribers_per_ip);
    let cors = cors::layer(&config.cors_origins);
    let metrics = ops::HttpMetrics::default();
    let registry = ops::registry(&hub, &metrics);
    let state = Arc::new(AppState {
        hub,
        config,
        admission,
        metrics,
        registry,
        ticks: std::sync::OnceLock::new(),
    });
    let routes = Router::new()
        .route(
            MERCURE_PATH,
            get(subscribe::subscribe).post(publish::publish),
        )
        .route(HISTORY_PATH, get(history::history))
        .route("/metrics", get(ops::metrics))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .merge(subscriptions::routes())
        .merge(ui::routes())
        .with_state(state.clone());
    let routes = match cors {
        Some(layer) => routes
            .layer(layer)
            .layer(axum::middleware::from_fn_with_state(
                state,
                cors::refuse_foreign_preflight,
            )),
        None => routes,
    };
    routes.layer(axum::middleware::map_response(response::security_headers))
}
