//! The connection task: does the I/O the [`ConnectionModel`] asks for and reports what happened
//! through the EventSource's channel.
//!
//! The model decides everything about statuses, content types, the redirect count, reconnection
//! timing and `Last-Event-ID`; this module sends requests, follows redirects, feeds body chunks to
//! a [`Decoder`] and sleeps until the model's deadlines.

use std::time::Instant;

use herald_sse::{
    ConnectRequest, ConnectionModel, Decoded, Decoder, DecoderConfig, Disconnect, ResponseVerdict,
};
use http::header::{
    HeaderName, AUTHORIZATION, CONTENT_TYPE, COOKIE, LOCATION, PROXY_AUTHORIZATION,
};
use http::{HeaderMap, HeaderValue, Request};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use tokio::sync::mpsc;
use url::Url;

use crate::error::{error_chain, is_tls_error};
use crate::tls::Clients;
use crate::{ClientError, ClientEvent};

/// `Last-Event-ID`, as the standard spells it (HTTP/1.1 writes names in lower case anyway).
static LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// Headers that must not follow a redirect to another origin (the fetch standard drops
/// `Authorization`; cookies and proxy credentials are no one else's business either).
static CROSS_ORIGIN_STRIPPED: [HeaderName; 3] = [AUTHORIZATION, PROXY_AUTHORIZATION, COOKIE];

/// What the connection task tells the [`EventSource`](crate::EventSource), in order.
#[derive(Debug)]
pub(crate) enum Note {
    /// An item for the stream.
    Item(Result<ClientEvent, ClientError>),
    /// The last event id changed without an event carrying it (an `id:`-only block).
    LastEventId(String),
}

/// Everything the connection task owns.
pub(crate) struct Connection {
    /// The URL given by the user: every reconnection starts here, whatever redirects happened.
    pub(crate) url: Url,
    /// The request headers of every attempt, `Last-Event-ID` excepted.
    pub(crate) headers: HeaderMap,
    pub(crate) model: ConnectionModel,
    pub(crate) decoder_config: DecoderConfig,
    /// `false`: the first end of a stream or network error ends the EventSource.
    pub(crate) reconnect: bool,
    pub(crate) clients: Clients,
    pub(crate) tx: mpsc::Sender<Note>,
    /// The last event id the EventSource was told about.
    pub(crate) reported_id: String,
}

/// How one connection attempt ended.
enum Outcome {
    /// Nothing more to do: the connection failed for good, or the EventSource is gone.
    Stop,
    /// The stream ended or the network failed: reconnect if allowed.
    Lost {
        cause: Disconnect,
        error: String,
        tls: bool,
    },
    /// A 5xx the model retries: wait until the instant.
    RetryAt { at: Instant, status: u16 },
}

impl Connection {
    /// Runs until the model closes, the EventSource is dropped, or (without reconnection) the
    /// first stream ends.
    pub(crate) async fn run(mut self) {
        loop {
            let Some(request) = self.model.poll_connect(Instant::now()) else {
                match self.model.poll_timeout() {
                    Some(at) => {
                        tokio::time::sleep_until(at.into()).await;
                        continue;
                    }
                    None => return,
                }
            };
            tracing::debug!(url = %self.url, attempt = request.attempt, "connecting");
            let (at, now, error) = match self.attempt(request).await {
                Outcome::Stop => return,
                Outcome::Lost { cause, error, tls } => {
                    if !self.reconnect {
                        if cause == Disconnect::NetworkError {
                            let error = if tls {
                                ClientError::Tls(error)
                            } else {
                                ClientError::Network(error)
                            };
                            self.send(Note::Item(Err(error))).await;
                        }
                        return;
                    }
                    let now = Instant::now();
                    match self.model.on_disconnect(now, cause) {
                        Some(at) => (at, now, error),
                        None => return,
                    }
                }
                Outcome::RetryAt { at, status } => {
                    let reason = herald_sse::FailReason::Status(status);
                    if !self.reconnect {
                        self.send(Note::Item(Err(ClientError::Failed(reason))))
                            .await;
                        return;
                    }
                    (at, Instant::now(), reason.to_string())
                }
            };
            let delay = at.saturating_duration_since(now);
            tracing::debug!(%error, ?delay, "connection lost; reconnecting");
            let notice = ClientEvent::Reconnecting { error, delay };
            if !self.send(Note::Item(Ok(notice))).await {
                return;
            }
            tokio::time::sleep_until(at.into()).await;
        }
    }

    /// One attempt: the request, its redirects, and the stream if accepted.
    async fn attempt(&mut self, request: ConnectRequest) -> Outcome {
        let mut url = self.url.clone();
        let mut headers = self.headers.clone();
        if let Some(id) = request.last_event_id {
            // The decoder never yields CR, LF or NUL in an id; other control characters are
            // legal in an id but not in an HTTP header value.
            match HeaderValue::from_bytes(id.as_bytes()) {
                Ok(value) => {
                    headers.insert(LAST_EVENT_ID.clone(), value);
                }
                Err(_) => tracing::warn!(
                    id = %id.escape_debug(),
                    "the last event id cannot be sent as a header; sending none"
                ),
            }
        }
        loop {
            let response = match self.send_request(&url, &headers).await {
                Ok(response) => response,
                Err(outcome) => return outcome,
            };
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get(CONTENT_TYPE)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            let location = match status {
                301 | 302 | 303 | 307 | 308 => redirect_target(&url, response.headers()),
                _ => None,
            };
            let verdict = self.model.on_response(
                Instant::now(),
                status,
                content_type.as_deref(),
                location.is_some(),
            );
            match verdict {
                ResponseVerdict::Open => {
                    let open = ClientEvent::Open {
                        url: url.clone(),
                        version: response.version(),
                    };
                    if !self.send(Note::Item(Ok(open))).await {
                        return Outcome::Stop;
                    }
                    return self.read(response.into_body()).await;
                }
                ResponseVerdict::Redirect => {
                    let Some(next) = location else {
                        // The model only follows a redirect that has a target.
                        return Outcome::Stop;
                    };
                    tracing::debug!(status, from = %url, to = %next, "following a redirect");
                    if next.origin() != url.origin() {
                        for name in &CROSS_ORIGIN_STRIPPED {
                            headers.remove(name);
                        }
                    }
                    url = next;
                }
                ResponseVerdict::Fail(reason) => {
                    tracing::debug!(%reason, "connection failed");
                    self.send(Note::Item(Err(ClientError::Failed(reason))))
                        .await;
                    return Outcome::Stop;
                }
                ResponseVerdict::Reconnect(at) => return Outcome::RetryAt { at, status },
            }
        }
    }

    async fn send_request(
        &self,
        url: &Url,
        headers: &HeaderMap,
    ) -> Result<http::Response<Incoming>, Outcome> {
        let mut request = Request::new(Empty::new());
        // Checked when the URL was accepted (at build, or when resolving a redirect).
        *request.uri_mut() = to_uri(url).ok_or(Outcome::Lost {
            cause: Disconnect::NetworkError,
            error: format!("cannot request {url}"),
            tls: false,
        })?;
        *request.headers_mut() = headers.clone();
        self.clients
            .for_url(url)
            .request(request)
            .await
            .map_err(|e| Outcome::Lost {
                cause: Disconnect::NetworkError,
                error: error_chain(&e),
                tls: is_tls_error(&e),
            })
    }

    /// Reads an accepted stream until it ends, feeding the decoder and the model.
    async fn read(&mut self, mut body: Incoming) -> Outcome {
        let mut decoder =
            Decoder::new(self.decoder_config).with_last_event_id(self.model.last_event_id());
        let mut items = Vec::new();
        loop {
            let frame = match body.frame().await {
                None => {
                    return Outcome::Lost {
                        cause: Disconnect::StreamEnded,
                        error: "the server ended the stream".to_owned(),
                        tls: false,
                    }
                }
                Some(Err(e)) => {
                    return Outcome::Lost {
                        cause: Disconnect::NetworkError,
                        error: error_chain(&e),
                        tls: is_tls_error(&e),
                    }
                }
                Some(Ok(frame)) => frame,
            };
            let Ok(chunk) = frame.into_data() else {
                continue; // trailers
            };
            let result = decoder.feed(&chunk, |item| items.push(item));
            for item in items.drain(..) {
                self.model.on_decoded(&item);
                let event = match item {
                    Decoded::Event(message) => {
                        self.reported_id.clone_from(&message.last_event_id);
                        ClientEvent::Message(message)
                    }
                    Decoded::Retry(ms) => ClientEvent::Retry(std::time::Duration::from_millis(ms)),
                };
                if !self.send(Note::Item(Ok(event))).await {
                    return Outcome::Stop;
                }
            }
            self.model.set_last_event_id(decoder.last_event_id());
            if decoder.last_event_id() != self.reported_id {
                self.reported_id = decoder.last_event_id().to_owned();
                let note = Note::LastEventId(self.reported_id.clone());
                if !self.send(note).await {
                    return Outcome::Stop;
                }
            }
            if let Err(e) = result {
                return Outcome::Lost {
                    cause: Disconnect::NetworkError,
                    error: format!("invalid event stream: {e}"),
                    tls: false,
                };
            }
        }
    }

    /// Sends a note, waiting while the channel is full (a slow consumer slows reading down).
    /// `false` when the EventSource is gone.
    async fn send(&self, note: Note) -> bool {
        self.tx.send(note).await.is_ok()
    }
}

/// The request URI of a URL (its fragment is never sent).
pub(crate) fn to_uri(url: &Url) -> Option<http::Uri> {
    let mut url = url.clone();
    url.set_fragment(None);
    url.as_str().parse().ok()
}

/// Whether a URL can be connected to: `http` or `https`, with a host, and a valid request URI.
pub(crate) fn is_fetchable(url: &Url) -> bool {
    matches!(url.scheme(), "http" | "https") && url.has_host() && to_uri(url).is_some()
}

/// Resolves a redirect's `Location` against the current URL; `None` when absent or unusable.
fn redirect_target(current: &Url, headers: &HeaderMap) -> Option<Url> {
    let location = std::str::from_utf8(headers.get(LOCATION)?.as_bytes()).ok()?;
    let mut target = current.join(location.trim()).ok()?;
    target.set_fragment(None);
    is_fetchable(&target).then_some(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(current: &str, value: &str) -> Option<String> {
        let mut headers = HeaderMap::new();
        headers.insert(LOCATION, HeaderValue::from_str(value).ok()?);
        redirect_target(&Url::parse(current).ok()?, &headers).map(String::from)
    }

    #[test]
    fn redirect_targets_resolve_against_the_current_url() {
        assert_eq!(
            location("http://a.test/x/y?q=1", "../z").as_deref(),
            Some("http://a.test/z")
        );
        assert_eq!(
            location("https://a.test/", "//b.test:8443/s#frag").as_deref(),
            Some("https://b.test:8443/s")
        );
        assert_eq!(location("http://a.test/", "ftp://b.test/"), None);
        assert_eq!(location("http://a.test/", "http://"), None);
        assert_eq!(
            redirect_target(&Url::parse("http://a.test/").unwrap(), &HeaderMap::new()),
            None
        );
    }
}
