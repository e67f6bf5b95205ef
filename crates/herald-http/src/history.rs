//! `GET /.well-known/mercure/history` (Herald extension): the polling fallback for clients
//! without `EventSource`.
//!
//! Query: `topic=<selector>` (one or more), `after=<id>` (the cursor: an update id, `earliest`,
//! or absent for "from now"), `limit=N` (default 100, at most 1000; larger values are lowered
//! to 1000), and optionally `authorization=<jwt>`. The caller is identified exactly as a
//! subscriber is (header, query parameter, cookie), and sees what it would receive over SSE:
//! anonymous callers only public updates, token holders also the private updates their
//! `mercure.subscribe` claim allows.
//!
//! The answer is `application/json`:
//! `{"updates":[{"id":…,"type":…,"topics":[…],"data":…}],"next":"<id>"}`, where `type` is the
//! SSE event type (`message` when the publisher gave none) and `next` is the cursor to ask from
//! next. Cursors are update ids, so a client may switch between polling and `EventSource`
//! (`Last-Event-ID`) freely. When a cursor was given, the `Last-Event-ID` response header says
//! where the page started, as on the subscribe endpoint: `earliest` there for a cursor the hub no
//! longer knows tells the client that it may have missed updates.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use herald_hub::selector::Selector;
use herald_hub::{HistoryRequest, StoredUpdate};
use serde::Serialize;

use crate::response::error;
use crate::{caller, form, AppState};

/// Updates in a page when the caller does not say.
pub const DEFAULT_LIMIT: usize = 100;
/// Most updates in one page.
pub const MAX_LIMIT: usize = 1000;

/// The JSON answer.
#[derive(Debug, Serialize)]
struct Page<'a> {
    updates: Vec<Item<'a>>,
    next: &'a str,
}

/// One update as a poller sees it.
#[derive(Debug, Serialize)]
struct Item<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    topics: &'a [String],
    data: &'a str,
}

impl<'a> From<&'a StoredUpdate> for Item<'a> {
    fn from(update: &'a StoredUpdate) -> Self {
        Item {
            id: &update.id,
            event_type: update.event_type.as_deref().unwrap_or("message"),
            topics: &update.topics,
            data: &update.data,
        }
    }
}

/// What the query string asks for.
struct Query<'a> {
    selectors: Vec<&'a str>,
    after: Option<&'a str>,
    limit: usize,
    token: Option<&'a str>,
}

fn parse_query(fields: &[(String, String)], max_topics: usize) -> Result<Query<'_>, String> {
    let mut query = Query {
        selectors: Vec::new(),
        after: None,
        limit: DEFAULT_LIMIT,
        token: None,
    };
    for (name, value) in fields {
        match name.as_str() {
            "topic" => query.selectors.push(value),
            "after" if !value.is_empty() => {
                query.after.get_or_insert(value);
            }
            "limit" => {
                let n = value.parse::<usize>().ok().filter(|n| *n > 0);
                let n = n.ok_or_else(|| {
                    format!("limit must be a whole number from 1 to {MAX_LIMIT}, got {value:?}")
                })?;
                query.limit = n.min(MAX_LIMIT);
            }
            "authorization" => {
                query.token.get_or_insert(value);
            }
            _ => {}
        }
    }
    caller::topic_count(query.selectors.len(), max_topics).map_err(|r| r.1)?;
    Ok(query)
}

pub(crate) async fn history(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let fields = match form::parse(raw.as_deref().unwrap_or("").as_bytes()) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let query = match parse_query(&fields, app.config.max_topics) {
        Ok(q) => q,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let claims = match caller::subscriber(&app, &headers, query.token) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let request = HistoryRequest {
        selectors: query.selectors.into_iter().map(Selector::parse).collect(),
        claims,
        after: query.after.map(str::to_owned),
        limit: query.limit,
    };
    let page = match app.hub.history(request).await {
        Ok(page) => page,
        Err(e) => return caller::hub_error(e, "reading history").into_response(),
    };
    let body = Page {
        updates: page.updates.iter().map(Item::from).collect(),
        next: &page.next,
    };
    let json = match serde_json::to_vec(&body) {
        Ok(json) => json,
        Err(e) => {
            tracing::error!(error = %e, "encoding a history page failed");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not encode the page",
            );
        }
    };
    let mut response_headers = HeaderMap::new();
    response_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response_headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache, no-store, must-revalidate, max-age=0"),
    );
    if let Some(from) = &page.resumed_from {
        if let Ok(v) = HeaderValue::from_bytes(from.as_header_value().as_bytes()) {
            response_headers.insert("last-event-id", v);
        }
    }
    (StatusCode::OK, response_headers, json).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn query_defaults_and_limits() {
        let f = fields(&[("topic", "a"), ("topic", "b")]);
        let q = parse_query(&f, 10).unwrap();
        assert_eq!(q.selectors, vec!["a", "b"]);
        assert_eq!(q.limit, DEFAULT_LIMIT);
        assert_eq!(q.after, None);

        let f = fields(&[("topic", "a"), ("limit", "5000"), ("after", "x")]);
        let q = parse_query(&f, 10).unwrap();
        assert_eq!(q.limit, MAX_LIMIT);
        assert_eq!(q.after, Some("x"));

        let f = fields(&[("topic", "a"), ("after", "")]);
        assert_eq!(parse_query(&f, 10).unwrap().after, None);

        for bad in [
            fields(&[("after", "x")]),
            fields(&[("topic", "a"), ("limit", "0")]),
            fields(&[("topic", "a"), ("limit", "-1")]),
            fields(&[("topic", "a"), ("limit", "ten")]),
            fields(&[("topic", "a"), ("topic", "b"), ("topic", "c")]),
        ] {
            assert!(parse_query(&bad, 2).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn items_default_to_message() {
        let update = StoredUpdate {
            position: 1,
            id: "1".into(),
            topics: vec!["t".into()],
            private: false,
            event_type: None,
            retry: None,
            data: "d".into(),
            time_ms: 0,
        };
        let json = serde_json::to_string(&Item::from(&update)).unwrap();
        assert_eq!(
            json,
            r#"{"id":"1","type":"message","topics":["t"],"data":"d"}"#
        );
    }
}
