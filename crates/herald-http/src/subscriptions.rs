//! `GET /.well-known/mercure/subscriptions[/{topic}[/{subscriber}]]`: the active subscriptions
//! (Mercure's optional feature, on with `HubConfig::subscription_events`).
//!
//! The caller needs a token whose `mercure.subscribe` matches the request's path. Answers are
//! `application/ld+json` with the hub's `lastEventID` (subscribe from it to follow changes without
//! a gap) and an `ETag`; a matching `If-None-Match` gets 304.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use herald_hub::subscriptions::{subscription_object, SUBSCRIPTIONS_PATH};
use serde_json::{json, Value};

use crate::response::error;
use crate::token::{identify, query_token, Caller};
use crate::AppState;

pub(crate) async fn all(
    State(app): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    answer(&app, uri.path(), &headers, query.as_deref(), None, None).await
}

pub(crate) async fn by_topic(
    State(app): State<Arc<AppState>>,
    uri: Uri,
    Path(topic): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    answer(
        &app,
        uri.path(),
        &headers,
        query.as_deref(),
        Some(&topic),
        None,
    )
    .await
}

pub(crate) async fn one(
    State(app): State<Arc<AppState>>,
    uri: Uri,
    Path((topic, subscriber)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    answer(
        &app,
        uri.path(),
        &headers,
        query.as_deref(),
        Some(&topic),
        Some(&subscriber),
    )
    .await
}

async fn answer(
    app: &AppState,
    path: &str,
    headers: &HeaderMap,
    query: Option<&str>,
    topic: Option<&str>,
    subscriber: Option<&str>,
) -> Response {
    if !app.hub.config().subscription_events {
        return error(
            StatusCode::NOT_FOUND,
            "the subscriptions API is off (start the hub with --subscriptions)",
        );
    }
    let query_token = query_token(query);
    let claims = match identify(
        headers,
        query_token.as_deref(),
        &app.config.cookie_name,
        app.config.subscriber_key.as_ref(),
    ) {
        Ok(Caller::Authenticated(claims, _)) => claims,
        Ok(Caller::Anonymous) => {
            return error(
                StatusCode::UNAUTHORIZED,
                "the subscriptions API needs a subscriber token",
            )
        }
        Err(message) => return error(StatusCode::UNAUTHORIZED, message),
    };
    if !claims.may_receive_private(&[path]) {
        return error(
            StatusCode::UNAUTHORIZED,
            "the token's mercure.subscribe claim does not match this subscriptions URL",
        );
    }
    let last_event_id = match app.hub.last_event_id().await {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(error = %e, "reading the last event id failed");
            return error(StatusCode::SERVICE_UNAVAILABLE, "the store does not answer");
        }
    };
    let mut objects = Vec::new();
    for sub in app.hub.active_subscriptions() {
        if subscriber.is_some_and(|s| s != sub.subscriber) {
            continue;
        }
        for t in &sub.topics {
            if topic.is_none_or(|wanted| wanted == t) {
                objects.push(subscription_object(&sub, t, true));
            }
        }
    }
    let body = if subscriber.is_some() {
        let Some(mut object) = objects.into_iter().next() else {
            return error(StatusCode::NOT_FOUND, "no such active subscription");
        };
        if let Some(map) = object.as_object_mut() {
            map.insert("lastEventID".into(), Value::String(last_event_id));
        }
        object
    } else {
        if topic.is_some() && objects.is_empty() {
            return error(
                StatusCode::NOT_FOUND,
                "no active subscription to this topic",
            );
        }
        json!({
            "@context": "https://mercure.rocks/",
            "id": path,
            "type": "Subscriptions",
            "lastEventID": last_event_id,
            "subscriptions": objects,
        })
    };
    let text = body.to_string();
    let etag = format!("\"{:016x}\"", fingerprint(&text));
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let etag_value = HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"0\""));
    if unchanged {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag_value)]).into_response();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/ld+json"),
            ),
            (header::ETAG, etag_value),
        ],
        text,
    )
        .into_response()
}

fn fingerprint(text: &str) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

/// The routes of the subscriptions API.
pub(crate) fn routes() -> axum::Router<Arc<AppState>> {
    use axum::routing::get;
    axum::Router::new()
        .route(SUBSCRIPTIONS_PATH, get(all))
        .route(&format!("{SUBSCRIPTIONS_PATH}/{{topic}}"), get(by_topic))
        .route(
            &format!("{SUBSCRIPTIONS_PATH}/{{topic}}/{{subscriber}}"),
            get(one),
        )
}
