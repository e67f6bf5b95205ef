//! The demo pages' one write endpoint, mounted by `herald serve --demo` only:
//! `POST /demos/chat/messages` with form fields `name` and `text` publishes a chat message to
//! [`CHAT_TOPIC`] (event type `chat`, data `{"name":…,"text":…}`) through the hub, without a
//! token, so that the chat demo works in any browser. Subscribers receive it over SSE like any
//! other update.
//!
//! It is deliberately narrow: one fixed public topic, short fields, a small body, and a request
//! that says it comes from another site (`Origin` not matching `Host`) is refused.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use herald_hub::{Hub, PublishError, Update};
use herald_sse::EventType;

use crate::form;
use crate::response::{error, security_headers};

/// The topic of the chat demo.
pub const CHAT_TOPIC: &str = "urn:herald:demo:chat";
/// Where the chat demo posts its messages.
pub const CHAT_PATH: &str = "/demos/chat/messages";
/// Longest name, in characters.
pub const MAX_NAME_CHARS: usize = 40;
/// Longest message, in characters.
pub const MAX_TEXT_CHARS: usize = 500;
/// Largest request body.
const MAX_BODY_BYTES: usize = 8 * 1024;

/// The demo-only routes, with the same security headers as [`crate::router`]'s. Merge them into
/// the hub's router: `router(hub.clone(), config).merge(demo::router(hub))`.
pub fn router(hub: Hub) -> Router {
    Router::new()
        .route(CHAT_PATH, post(chat))
        .with_state(hub)
        .layer(axum::middleware::map_response(security_headers))
}

async fn chat(State(hub): State<Hub>, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    if !same_origin(&headers, &uri) {
        return error(
            StatusCode::FORBIDDEN,
            "chat messages must come from the hub's own pages",
        );
    }
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {MAX_BODY_BYTES} bytes"),
        );
    };
    let (name, text) = match parse_message(&bytes) {
        Ok(m) => m,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let data = serde_json::json!({ "name": name, "text": text }).to_string();
    let mut update = Update::new(CHAT_TOPIC, data);
    if let Ok(t) = EventType::new("chat") {
        update = update.with_type(t);
    }
    match hub.publish(update).await {
        Ok(published) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            published.id,
        )
            .into_response(),
        Err(PublishError::Closed) => {
            error(StatusCode::SERVICE_UNAVAILABLE, "the hub is shutting down")
        }
        Err(e) => {
            tracing::error!(error = %e, "publishing a chat message failed");
            error(StatusCode::SERVICE_UNAVAILABLE, "the message was not sent")
        }
    }
}

/// The trimmed name and text of a chat message, or why it is refused.
fn parse_message(body: &[u8]) -> Result<(String, String), String> {
    let fields = form::parse(body).map_err(|e| e.to_string())?;
    let field = |wanted: &str| {
        fields
            .iter()
            .find(|(n, _)| n == wanted)
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    };
    let (name, text) = (field("name"), field("text"));
    if name.is_empty() || text.is_empty() {
        return Err("a chat message needs a name and a text".into());
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!(
            "the name is longer than {MAX_NAME_CHARS} characters"
        ));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(format!(
            "the text is longer than {MAX_TEXT_CHARS} characters"
        ));
    }
    if name.chars().chain(text.chars()).any(char::is_control) {
        return Err("the name and text must not contain control characters".into());
    }
    Ok((name, text))
}

/// False when the request says it comes from a page of another origin. Requests without an
/// `Origin` header (curl, scripts) are accepted: the check only stops other sites' pages. The
/// request's own authority is its `Host` header (HTTP/1.1) or its URI's authority (HTTP/2).
fn same_origin(headers: &HeaderMap, uri: &Uri) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let origin = origin.to_str().unwrap_or("");
    let authority = origin.split_once("://").map_or("", |(_, rest)| rest);
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or("");
    !authority.is_empty() && authority.eq_ignore_ascii_case(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_checked() {
        assert_eq!(
            parse_message(b"name=Ada&text=hello+there").unwrap(),
            ("Ada".to_owned(), "hello there".to_owned())
        );
        for bad in [
            &b"name=Ada"[..],
            b"text=hi",
            b"name=+&text=hi",
            b"name=Ada&text=a%0Ab",
            b"name=Ada&text=%FF",
        ] {
            assert!(
                parse_message(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!("name=Ada&text={}", "x".repeat(MAX_TEXT_CHARS + 1));
        assert!(parse_message(long.as_bytes()).is_err());
    }

    #[test]
    fn origin_must_match_host() {
        let path = Uri::from_static("/demos/chat/messages");
        let h2 = Uri::from_static("https://127.0.0.1:8443/demos/chat/messages");
        let mut h = HeaderMap::new();
        assert!(same_origin(&h, &path));
        h.insert(header::ORIGIN, "https://127.0.0.1:8443".parse().unwrap());
        assert!(same_origin(&h, &h2));
        assert!(!same_origin(&h, &path));
        h.insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
        h.insert(header::ORIGIN, "http://127.0.0.1:8080".parse().unwrap());
        assert!(same_origin(&h, &path));
        h.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(!same_origin(&h, &path));
        h.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(!same_origin(&h, &path));
    }
}
