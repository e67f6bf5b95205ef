//! `POST /.well-known/mercure`: publish an update (Mercure form fields).
//!
//! Order of checks: a valid publisher token (401), a cookie-authenticated request from an allowed
//! origin (401, CSRF), the body (415, 413, 400), the fields (400), reserved topics (403), the
//! token's `mercure.publish` selectors (401), then the hub. `200 text/plain` with the id is sent
//! only once the update is durable.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use herald_hub::{PublishError, Update};
use herald_sse::{EventId, EventType};

use crate::response::error;
use crate::token::{identify, query_token, Caller, TokenSource};
use crate::{form, AppState};

/// Topics under this path are the hub's own (subscription events).
const RESERVED: &str = "/.well-known/mercure";

pub(crate) async fn publish(State(app): State<Arc<AppState>>, request: Request) -> Response {
    // The request's own parts: the `HeaderMap` and `RawQuery` extractors would copy them.
    let (parts, body) = request.into_parts();
    let response = accept(&app, &parts.headers, parts.uri.query(), body).await;
    if response.status().is_client_error() {
        app.metrics.publishes_refused.inc();
    }
    response
}

async fn accept(app: &AppState, headers: &HeaderMap, query: Option<&str>, body: Body) -> Response {
    let query_token = query_token(query);
    let claims = match identify(
        headers,
        query_token.as_deref(),
        &app.config.cookie_name,
        app.config.publisher_key.as_ref(),
    ) {
        Ok(Caller::Authenticated(claims, source)) => {
            if source == TokenSource::Cookie
                && !origin_allowed(headers, &app.config.publish_origins)
            {
                return error(
                    StatusCode::UNAUTHORIZED,
                    "a publish authenticated by cookie must come from an allowed origin (see --publish-origin)",
                );
            }
            claims
        }
        Ok(Caller::Anonymous) => return error(
            StatusCode::UNAUTHORIZED,
            "publishing requires a JWT with a mercure.publish claim (Authorization: Bearer <JWT>)",
        ),
        Err(message) => return error(StatusCode::UNAUTHORIZED, message),
    };

    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let essence = ct
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim();
        if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the body must be application/x-www-form-urlencoded",
            );
        }
    }
    let bytes = match axum::body::to_bytes(body, app.config.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the body is larger than the limit of {} bytes",
                    app.config.max_body_bytes
                ),
            )
        }
    };
    let update = match parse_update(&bytes, app.config.max_topics) {
        Ok(u) => u,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    if update.data.len() > app.config.max_data_bytes {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the data is larger than the limit of {} bytes",
                app.config.max_data_bytes
            ),
        );
    }
    if update.topics.iter().any(|t| t.contains(RESERVED)) {
        return error(
            StatusCode::FORBIDDEN,
            "topics containing /.well-known/mercure are reserved for the hub",
        );
    }
    if !claims.may_publish_to(&update.topics) {
        return error(
            StatusCode::UNAUTHORIZED,
            "the token's mercure.publish claim does not allow every topic of this update",
        );
    }
    match app.hub.publish(update).await {
        Ok(published) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            published.id,
        )
            .into_response(),
        Err(e @ PublishError::DuplicateId(_)) => error(StatusCode::CONFLICT, e.to_string()),
        Err(PublishError::NoTopic) => {
            error(StatusCode::BAD_REQUEST, "Missing \"topic\" parameter.")
        }
        Err(PublishError::Closed) => {
            error(StatusCode::SERVICE_UNAVAILABLE, "the hub is shutting down")
        }
        Err(PublishError::Store(e)) => {
            tracing::error!(error = %e, "publish failed in the store");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the update could not be stored; it was not published, try again",
            )
        }
    }
}

/// The update described by a publish body (`application/x-www-form-urlencoded` Mercure fields),
/// or what is wrong with it, for a 400 answer. Authorization and size limits are checked
/// elsewhere.
pub fn parse_update(body: &[u8], max_topics: usize) -> Result<Update, String> {
    let fields = form::parse(body).map_err(|e| e.to_string())?;
    let mut update = Update {
        topics: Vec::new(),
        data: String::new(),
        private: false,
        id: None,
        event_type: None,
        retry: None,
    };
    let mut data: Option<String> = None;
    for (name, value) in fields {
        match name.as_str() {
            "topic" => update.topics.push(value),
            "data" => data = Some(value),
            "private" => update.private = true,
            "id" => {
                if value.starts_with('#') {
                    return Err("the id must not start with '#'".into());
                }
                let id = EventId::new(value).map_err(|e| e.to_string())?;
                update.id = Some(id);
            }
            "type" => {
                let t = EventType::new(value).map_err(|e| e.to_string())?;
                update.event_type = Some(t);
            }
            "retry" => {
                let ok = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
                let ms = value.parse::<u64>().ok().filter(|_| ok).ok_or_else(|| {
                    format!(
                        "retry must be a non-negative whole number of milliseconds, got {value:?}"
                    )
                })?;
                update.retry = Some(ms);
            }
            _ => {}
        }
    }
    if update.topics.is_empty() {
        return Err("Missing \"topic\" parameter.".into());
    }
    if update.topics.len() > max_topics {
        return Err(format!(
            "too many \"topic\" fields: {} (at most {max_topics})",
            update.topics.len()
        ));
    }
    update.data = data.unwrap_or_default();
    Ok(update)
}

/// Whether the request's `Origin` (or, failing that, the origin of its `Referer`) is allowed.
fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            let referer = headers.get(header::REFERER)?.to_str().ok()?;
            let (scheme, rest) = referer.split_once("://")?;
            let host = rest.split(['/', '?', '#']).next()?;
            Some(format!("{scheme}://{host}"))
        });
    origin.is_some_and(|o| {
        allowed
            .iter()
            .any(|a| a == "*" || a.eq_ignore_ascii_case(&o))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_validated() {
        let u = parse_update(b"topic=a&topic=b&data=x&private=on&id=1&type=t&retry=5", 10).unwrap();
        assert_eq!(u.topics, vec!["a", "b"]);
        assert!(u.private);
        assert_eq!(u.retry, Some(5));
        for bad in [
            &b"data=x"[..],
            b"topic=a&retry=-1",
            b"topic=a&retry=1x",
            b"topic=a&retry=",
            b"topic=a&id=%23x",
            b"topic=a&id=a%0Ab",
            b"topic=a&type=a%0Db",
            b"topic=a&type=a%00b",
            b"topic=a&data=%FF",
            b"topic=a&topic=b&topic=c",
        ] {
            assert!(
                parse_update(bad, 2).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn origins() {
        let mut h = HeaderMap::new();
        let allowed = vec!["https://app.example".to_owned()];
        assert!(!origin_allowed(&h, &allowed));
        h.insert(
            header::REFERER,
            "https://app.example/page?x".parse().unwrap(),
        );
        assert!(origin_allowed(&h, &allowed));
        h.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(!origin_allowed(&h, &allowed));
    }
}
