//! What the subscriber-side endpoints (subscribe, history) share: who the caller is, how many
//! selectors it may send, and how hub errors read.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use herald_hub::auth::Claims;
use herald_hub::SubscribeError;

use crate::response::error;
use crate::token::{identify, Caller};
use crate::AppState;

/// A refusal: the status and a message for a short `text/plain` answer.
#[derive(Debug)]
pub(crate) struct Rejection(pub StatusCode, pub String);

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
}

/// The subscriber's claims (`None`: anonymous), or 401 when its token is bad or anonymous
/// subscribers are not allowed.
pub(crate) fn subscriber(
    app: &AppState,
    headers: &HeaderMap,
    query_token: Option<&str>,
) -> Result<Option<Claims>, Rejection> {
    match identify(
        headers,
        query_token,
        &app.config.cookie_name,
        app.config.subscriber_key.as_ref(),
    ) {
        Ok(Caller::Anonymous) if !app.config.anonymous => Err(Rejection(
            StatusCode::UNAUTHORIZED,
            "this hub requires a subscriber token (anonymous subscriptions are off)".into(),
        )),
        Ok(Caller::Anonymous) => Ok(None),
        Ok(Caller::Authenticated(claims, _)) => Ok(Some(claims)),
        Err(message) => Err(Rejection(StatusCode::UNAUTHORIZED, message)),
    }
}

/// 400 unless there are between 1 and `max` topic selectors.
pub(crate) fn topic_count(count: usize, max: usize) -> Result<(), Rejection> {
    if count == 0 {
        return Err(Rejection(
            StatusCode::BAD_REQUEST,
            "Missing \"topic\" parameter.".into(),
        ));
    }
    if count > max {
        return Err(Rejection(
            StatusCode::BAD_REQUEST,
            format!("too many \"topic\" parameters: {count} (at most {max})"),
        ));
    }
    Ok(())
}

/// The answer for a hub that could not serve a subscriber-side request (`doing`: for the log).
pub(crate) fn hub_error(e: SubscribeError, doing: &str) -> Rejection {
    match e {
        SubscribeError::NoSelector => Rejection(
            StatusCode::BAD_REQUEST,
            "Missing \"topic\" parameter.".into(),
        ),
        SubscribeError::Closed => Rejection(
            StatusCode::SERVICE_UNAVAILABLE,
            "the hub is shutting down".into(),
        ),
        SubscribeError::Store(e) => {
            tracing::error!(error = %e, "{doing} failed");
            Rejection(
                StatusCode::SERVICE_UNAVAILABLE,
                "the hub's store is unavailable; try again".into(),
            )
        }
    }
}
