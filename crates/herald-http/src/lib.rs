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

pub mod form;
mod index;
mod publish;
pub mod response;
pub mod server;
mod subscribe;
pub mod token;

/// The path of the Mercure endpoint.
pub const MERCURE_PATH: &str = "/.well-known/mercure";

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
    /// Largest publish body. Default: 1 MiB.
    pub max_body_bytes: usize,
    /// Most topics in one publish or selectors in one subscription. Default: 1000.
    pub max_topics: usize,
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
            max_body_bytes: 1 << 20,
            max_topics: 1000,
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
}

/// The routes: `/.well-known/mercure` (GET/HEAD subscribe, POST publish, anything else 405) and
/// `/` (a short usage page). Every response carries security headers.
pub fn router(hub: Hub, config: HttpConfig) -> Router {
    let state = Arc::new(AppState { hub, config });
    Router::new()
        .route(
            MERCURE_PATH,
            get(subscribe::subscribe).post(publish::publish),
        )
        .route("/", get(index::page))
        .with_state(state)
        .layer(axum::middleware::map_response(response::security_headers))
}
