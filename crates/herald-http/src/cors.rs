//! CORS for browsers on other origins: the configured origins may read responses with credentials
//! (cookies, `Authorization`); `*` allows any origin but never with credentials. A preflight from
//! an origin that is not allowed gets a clear 403 instead of a silent answer without CORS headers.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::response::error;
use crate::AppState;

/// The request headers a cross-origin subscriber or publisher may send.
const ALLOWED_HEADERS: [HeaderName; 4] = [
    header::AUTHORIZATION,
    header::CACHE_CONTROL,
    HeaderName::from_static("last-event-id"),
    header::CONTENT_TYPE,
];

/// The layer for `origins`, or `None` when CORS is off.
pub(crate) fn layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let base = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::HEAD])
        .allow_headers(ALLOWED_HEADERS)
        .expose_headers([HeaderName::from_static("last-event-id")]);
    if origins.iter().any(|o| o == "*") {
        return Some(base.allow_origin(AllowOrigin::any()));
    }
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok())
        .collect();
    Some(
        base.allow_origin(AllowOrigin::list(list))
            .allow_credentials(true),
    )
}

/// Whether `origin` is one of the configured origins.
pub(crate) fn allowed(origins: &[String], origin: &str) -> bool {
    origins
        .iter()
        .any(|o| o == "*" || o.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

/// Answers a preflight (`OPTIONS` with `Access-Control-Request-Method`) from a foreign origin
/// with 403 and a message, before the CORS layer would answer it without CORS headers.
pub(crate) async fn refuse_foreign_preflight(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let origin = request
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !allowed(&state.config.cors_origins, origin) {
            return error(
                StatusCode::FORBIDDEN,
                "this origin is not allowed to use the hub (see --cors-origin)",
            );
        }
    }
    next.run(request).await
}
