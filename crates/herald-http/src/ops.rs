//! For operators: `/metrics` (Prometheus / OpenMetrics text), `/healthz` (the process answers)
//! and `/readyz` (the store answers and the hub accepts publishes).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use crate::response::error;
use crate::AppState;

/// How long `/readyz` waits for the store.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Metrics of the HTTP layer.
#[derive(Debug, Clone, Default)]
pub struct HttpMetrics {
    /// Bytes of event streams written to subscribers.
    pub bytes_written: Counter,
    /// Publish requests refused before reaching the hub (auth, validation, limits).
    pub publishes_refused: Counter,
    /// Subscribe requests refused (auth, validation, limits).
    pub subscriptions_refused: Counter,
}

impl HttpMetrics {
    /// Adds every metric to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "herald_bytes_written",
            "Bytes of event streams written to subscribers",
            self.bytes_written.clone(),
        );
        registry.register(
            "herald_publishes_refused",
            "Publish requests refused before reaching the hub",
            self.publishes_refused.clone(),
        );
        registry.register(
            "herald_subscriptions_refused",
            "Subscribe requests refused",
            self.subscriptions_refused.clone(),
        );
    }
}

pub(crate) async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &app.registry) {
        tracing::error!(error = %e, "encoding metrics failed");
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics could not be encoded",
        );
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

pub(crate) async fn healthz() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "ok\n",
    )
        .into_response()
}

pub(crate) async fn readyz(State(app): State<Arc<AppState>>) -> Response {
    match tokio::time::timeout(READY_TIMEOUT, app.hub.ready()).await {
        Ok(Ok(())) => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "ready\n",
        )
            .into_response(),
        Ok(Err(reason)) => error(StatusCode::SERVICE_UNAVAILABLE, reason),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the store did not answer within 2 s",
        ),
    }
}

/// A registry holding the hub's and the HTTP layer's metrics.
pub(crate) fn registry(app_hub: &herald_hub::Hub, http: &HttpMetrics) -> Registry {
    let mut registry = Registry::default();
    app_hub.metrics().register(&mut registry);
    http.register(&mut registry);
    registry
}
