//! `GET /.well-known/mercure`: a subscriber's event stream.
//!
//! The response starts with a `:` comment flushed at once (so `EventSource.onopen` fires), then
//! the replay, then live updates. Frames that are ready together are written as one chunk. A
//! comment is sent when nothing was written for the heartbeat interval. The stream ends at the
//! write timeout (randomised within its last 10 % so that reconnections spread) or when the
//! subscriber's token expires, whichever is first; the client then reconnects with
//! `Last-Event-ID` and misses nothing.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, StreamExt};
use herald_hub::selector::Selector;
use herald_hub::{SubscribeRequest, Subscription};
use tokio::time::Instant;

use crate::caller;
use crate::limits::{Refusal, Slot};
use crate::ops::HttpMetrics;
use crate::response::error;
use crate::{form, AppState};

/// Most bytes written in one chunk when several frames are ready.
const COALESCE_LIMIT: usize = 64 * 1024;

pub(crate) async fn subscribe(
    State(app): State<Arc<AppState>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    takeover: Option<Extension<Takeover>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let peer = peer.map(|Extension(ConnectInfo(addr))| addr);
    let takeover = takeover.map(|Extension(t)| t);
    let response = open_stream(&app, peer, takeover, &headers, query.as_deref()).await;
    if !response.status().is_success() {
        app.metrics.subscriptions_refused.inc();
        tracing::debug!(status = %response.status(), peer = ?peer, "subscription refused");
    }
    response
}

async fn open_stream(
    app: &Arc<AppState>,
    peer: Option<SocketAddr>,
    takeover: Option<Takeover>,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Response {
    let fields = match form::parse(query.unwrap_or("").as_bytes()) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let mut selectors = Vec::new();
    let mut query_last_id = None;
    let mut query_token = None;
    for (name, value) in &fields {
        match name.as_str() {
            "topic" => selectors.push(value.as_str()),
            "lastEventID" | "Last-Event-ID" | "last-event-id" => {
                query_last_id.get_or_insert(value.clone());
            }
            "authorization" => {
                query_token.get_or_insert(value.as_str());
            }
            _ => {}
        }
    }
    if let Err(r) = caller::topic_count(selectors.len(), app.config.max_topics) {
        return r.into_response();
    }
    let claims = match caller::subscriber(app, headers, query_token) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    // Browsers send the id as raw UTF-8 bytes, which `HeaderValue::to_str` would refuse.
    let header_last_id = match headers.get("last-event-id") {
        None => None,
        Some(v) => match std::str::from_utf8(v.as_bytes()) {
            Ok(text) => Some(text.to_owned()),
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "the Last-Event-ID header is not valid UTF-8",
                )
            }
        },
    };
    let slot = match app.admission.admit(peer.map(|a| a.ip())) {
        Ok(slot) => slot,
        Err(Refusal::HubFull) => {
            return busy(
                StatusCode::SERVICE_UNAVAILABLE,
                "the hub holds its maximum number of subscribers; retry later",
            )
        }
        Err(Refusal::AddressFull) => {
            return busy(
                StatusCode::TOO_MANY_REQUESTS,
                "too many open subscriptions from your address; close some or retry later",
            )
        }
    };
    let expires_at = claims.as_ref().and_then(|c| c.expires_at);
    let request = SubscribeRequest {
        selectors: selectors.into_iter().map(Selector::parse).collect(),
        claims,
        last_event_id: header_last_id.or(query_last_id),
    };
    let subscription = match app.hub.subscribe(request).await {
        Ok(s) => s,
        Err(e) => return caller::hub_error(e, "resolving Last-Event-ID").into_response(),
    };

    let mut response_headers = HeaderMap::new();
    response_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    response_headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache, no-store, must-revalidate, max-age=0"),
    );
    response_headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if let Some(from) = subscription.resumed_from() {
        if let Ok(v) = HeaderValue::from_bytes(from.as_header_value().as_bytes()) {
            response_headers.insert("last-event-id", v);
        }
    }

    let deadline = stream_deadline(app.config.write_timeout, expires_at);
    tracing::info!(
        peer = ?peer,
        subscriber = subscription.id(),
        resumed_from = subscription.resumed_from().map(|r| r.as_header_value()),
        "stream opened"
    );
    let log = StreamLog {
        peer,
        subscriber: subscription.id(),
        opened: Instant::now(),
        bytes: 0,
        metrics: app.metrics.clone(),
    };
    let stream = Stream {
        subscription,
        log,
        _slot: slot,
        heartbeat: app.config.heartbeat,
        deadline,
    };
    if let Some(takeover) = takeover {
        // The server writes this stream itself (see `crate::connection`); the body stays empty.
        takeover.offer(Offered {
            stream,
            ticks: app.heartbeat_ticks(),
        });
        return (StatusCode::OK, response_headers).into_response();
    }
    let body = Body::from_stream(frames(stream));
    (StatusCode::OK, response_headers, body).into_response()
}

/// Lets the HTTP/1.1 server write a subscriber's stream itself instead of through hyper's body
/// machinery (see [`crate::connection`]): the server puts one in the request's extensions, and
/// the handler hands the opened stream over through it instead of returning a streaming body.
#[derive(Clone, Default)]
pub(crate) struct Takeover(Arc<std::sync::Mutex<Option<Offered>>>);

/// A stream handed over to the server, with the hub-wide heartbeat ticks it listens to.
pub(crate) struct Offered {
    pub(crate) stream: Stream,
    pub(crate) ticks: tokio::sync::watch::Receiver<()>,
}

impl Takeover {
    fn offer(&self, offered: Offered) {
        *self.lock() = Some(offered);
    }

    /// The stream the handler opened, if it opened one.
    pub(crate) fn take(&self) -> Option<Offered> {
        self.lock().take()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Offered>> {
        // Only `offer` and `take` touch the value, neither can panic half-way.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Seconds a refused subscriber is asked to wait (`Retry-After`).
const RETRY_AFTER_SECS: &str = "5";

fn busy(status: StatusCode, message: &str) -> Response {
    let mut response = error(status, message);
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_static(RETRY_AFTER_SECS),
    );
    response
}

/// When the stream must end: the write timeout, randomised down by up to 10 %, or the token's
/// expiry if sooner.
fn stream_deadline(write_timeout: Option<Duration>, expires_at: Option<u64>) -> Option<Instant> {
    let now = Instant::now();
    let by_timeout = write_timeout.map(|t| {
        let spread = t.as_millis() as u64 / 10;
        let cut = if spread == 0 {
            0
        } else {
            rand::random::<u64>() % spread
        };
        now + t.saturating_sub(Duration::from_millis(cut))
    });
    let by_token = expires_at.map(|exp| {
        let left = exp.saturating_sub(herald_hub::auth::unix_now());
        now + Duration::from_secs(left)
    });
    match (by_timeout, by_token) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Counts what a stream wrote and logs one line when it closes (never a token).
pub(crate) struct StreamLog {
    peer: Option<SocketAddr>,
    subscriber: u64,
    opened: Instant,
    bytes: u64,
    metrics: HttpMetrics,
}

impl StreamLog {
    fn wrote(&mut self, chunk: &Bytes) {
        self.wrote_bytes(chunk.len());
    }

    pub(crate) fn wrote_bytes(&mut self, n: usize) {
        self.bytes += n as u64;
        self.metrics.bytes_written.inc_by(n as u64);
    }
}

impl Drop for StreamLog {
    fn drop(&mut self) {
        tracing::info!(
            peer = ?self.peer,
            subscriber = self.subscriber,
            duration_ms = self.opened.elapsed().as_millis() as u64,
            bytes = self.bytes,
            "stream closed"
        );
    }
}

/// An open subscriber stream and what it needs to run.
pub(crate) struct Stream {
    pub(crate) subscription: Subscription,
    pub(crate) log: StreamLog,
    /// Held for the stream's life: the admission slot is given back when the stream is dropped.
    _slot: Slot,
    pub(crate) heartbeat: Duration,
    pub(crate) deadline: Option<Instant>,
}

/// The stream as a response body (HTTP/2, TLS, and servers other than Herald's own).
fn frames(
    stream: Stream,
) -> impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send {
    futures_util::stream::unfold((stream, false), |(mut s, started)| async move {
        if !started {
            let hello = Bytes::from_static(b":\n");
            s.log.wrote(&hello);
            return Some((Ok(hello), (s, true)));
        }
        let idle_until = Instant::now() + s.heartbeat;
        let until = s.deadline.map_or(idle_until, |d| d.min(idle_until));
        let next = tokio::time::timeout_at(until, s.subscription.next()).await;
        match next {
            Ok(Some(frame)) => {
                let chunk = coalesce(frame, &mut s.subscription);
                s.log.wrote(&chunk);
                Some((Ok(chunk), (s, true)))
            }
            Ok(None) => None,
            Err(_) if s.deadline.is_some_and(|d| Instant::now() >= d) => None,
            Err(_) => {
                let heartbeat = Bytes::from_static(b":\n");
                s.log.wrote(&heartbeat);
                Some((Ok(heartbeat), (s, true)))
            }
        }
    })
}

/// Joins `first` with the frames that are ready right now, so they go out in one write.
fn coalesce(first: Bytes, subscription: &mut Subscription) -> Bytes {
    let Some(second) = subscription.next().now_or_never().flatten() else {
        return first;
    };
    let mut chunk = BytesMut::with_capacity(first.len() + second.len() + 256);
    chunk.extend_from_slice(&first);
    chunk.extend_from_slice(&second);
    while chunk.len() < COALESCE_LIMIT {
        match subscription.next().now_or_never().flatten() {
            Some(frame) => chunk.extend_from_slice(&frame),
            None => break,
        }
    }
    chunk.freeze()
}
