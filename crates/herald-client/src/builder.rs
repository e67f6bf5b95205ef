//! [`EventSourceBuilder`]: the URL, request headers, reconnection and TLS settings.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use herald_sse::{ConnectionModel, DecoderConfig, ReconnectConfig};
use http::header::{ACCEPT, CACHE_CONTROL};
use http::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::mpsc;
use url::Url;

use crate::connection::{is_fetchable, Connection};
use crate::tls::Clients;
use crate::{ClientError, EventSource};

/// Items buffered between the connection task and the consumer. When full, the task stops
/// reading the stream until the consumer catches up.
const CHANNEL_CAPACITY: usize = 64;

/// Settings of an [`EventSource`]; made by [`EventSource::builder`].
///
/// Every setting has a default, so `EventSource::builder(url).build()` works as a browser's
/// `new EventSource(url)` does.
#[must_use = "a builder does nothing until build() is called"]
pub struct EventSourceBuilder {
    url: String,
    headers: Vec<(String, String)>,
    last_event_id: String,
    reconnect_config: ReconnectConfig,
    decoder_config: DecoderConfig,
    reconnect: bool,
    http2_prior_knowledge: bool,
    extra_roots: Vec<Vec<u8>>,
}

impl EventSourceBuilder {
    pub(crate) fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            headers: Vec::new(),
            last_event_id: String::new(),
            reconnect_config: ReconnectConfig::default(),
            decoder_config: DecoderConfig::default(),
            reconnect: true,
            http2_prior_knowledge: false,
            extra_roots: Vec::new(),
        }
    }

    /// Adds a request header sent with every request, such as `Authorization`. Giving a name
    /// again adds another value. A name given here replaces the default `Accept:
    /// text/event-stream` or `Cache-Control: no-cache`.
    ///
    /// `Authorization`, `Proxy-Authorization` and `Cookie` are kept across same-origin
    /// redirects and dropped on a redirect to another origin.
    ///
    /// `Last-Event-ID` is not a header to set: it is the same as
    /// [`last_event_id`](Self::last_event_id), and reconnections send the current id.
    ///
    /// The value may be any UTF-8 text without control characters (sent as its UTF-8 bytes).
    /// An invalid name or value makes [`build`](Self::build) fail with
    /// [`ClientError::InvalidHeader`].
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if name.eq_ignore_ascii_case("last-event-id") {
            self.last_event_id = value.to_owned();
        } else {
            self.headers.push((name.to_owned(), value.to_owned()));
        }
        self
    }

    /// Starts from this last event id: unless empty, it is sent as `Last-Event-ID` on the first
    /// connection too, as if an earlier connection had received it. Default: empty.
    pub fn last_event_id(mut self, id: impl Into<String>) -> Self {
        self.last_event_id = id.into();
        self
    }

    /// Reconnection settings: initial reconnection time (default 3 s), backoff cap, redirect
    /// limit, whether 5xx responses are retried (default: no, they fail as the standard says).
    ///
    /// The jitter seed, when left at its default, is replaced by one that differs per
    /// EventSource, so that many clients cut off together do not come back together.
    pub fn reconnect_config(mut self, config: ReconnectConfig) -> Self {
        self.reconnect_config = config;
        self
    }

    /// Limits of the event-stream decoder (line length and event size; 16 MiB each by default).
    /// A stream breaking them is dropped and reconnected like a network error.
    pub fn decoder_config(mut self, config: DecoderConfig) -> Self {
        self.decoder_config = config;
        self
    }

    /// Whether to reconnect (default: `true`, as browsers do).
    ///
    /// With `false`, the first stream that ends cleanly ends the [`EventSource`] (it yields
    /// `None`), and a network or decoding error yields [`ClientError::Network`] (or
    /// [`ClientError::Tls`] for a failed handshake) and then `None`. A 5xx that
    /// [`ReconnectConfig::retry_server_errors`] would retry yields [`ClientError::Failed`].
    pub fn reconnect(mut self, enabled: bool) -> Self {
        self.reconnect = enabled;
        self
    }

    /// Speaks HTTP/2 without negotiation (h2c, "prior knowledge") to `http://` URLs. Default:
    /// off, `http://` URLs use HTTP/1.1. `https://` URLs always negotiate with ALPN (HTTP/2 when
    /// the server offers it, else HTTP/1.1), whatever this says.
    pub fn http2_prior_knowledge(mut self, on: bool) -> Self {
        self.http2_prior_knowledge = on;
        self
    }

    /// Trusts the CA certificates of a PEM document (one or more `CERTIFICATE` blocks), beside
    /// the default roots: the webpki roots and the platform's roots when they can be read. A PEM
    /// that does not parse makes [`build`](Self::build) fail with [`ClientError::Tls`].
    pub fn add_root_certificate_pem(mut self, pem: &[u8]) -> Self {
        self.extra_roots.push(pem.to_vec());
        self
    }

    /// Checks the settings and starts connecting in a task of the current tokio runtime.
    ///
    /// Fails with [`ClientError::InvalidUrl`] unless the URL is absolute `http` or `https` with
    /// a host and no user name or password (use an `Authorization` header),
    /// [`ClientError::InvalidHeader`], [`ClientError::Tls`], or [`ClientError::NoRuntime`]
    /// outside a tokio runtime.
    pub fn build(self) -> Result<EventSource, ClientError> {
        let url = parse_url(&self.url)?;
        let headers = request_headers(&self.headers)?;
        if self.last_event_id.contains(['\r', '\n', '\0']) {
            return Err(ClientError::InvalidHeader(
                "the last event id may not contain CR, LF or NUL".to_owned(),
            ));
        }
        if !self.last_event_id.is_empty()
            && HeaderValue::from_bytes(self.last_event_id.as_bytes()).is_err()
        {
            return Err(ClientError::InvalidHeader(
                "the last event id may not contain control characters".to_owned(),
            ));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ClientError::NoRuntime)?;
        let clients = Clients::new(&self.extra_roots, self.http2_prior_knowledge)?;

        let mut reconnect_config = self.reconnect_config;
        if reconnect_config.jitter_seed == ReconnectConfig::default().jitter_seed {
            reconnect_config.jitter_seed = fresh_seed();
        }
        let model =
            ConnectionModel::new(reconnect_config).with_last_event_id(self.last_event_id.clone());

        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let connection = Connection {
            url: url.clone(),
            headers,
            model,
            decoder_config: self.decoder_config,
            reconnect: self.reconnect,
            clients,
            tx,
            reported_id: self.last_event_id.clone(),
        };
        let task = runtime.spawn(connection.run());
        Ok(EventSource::start(url, rx, task, self.last_event_id))
    }
}

impl std::fmt::Debug for EventSourceBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values may be credentials: names only.
        let header_names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("EventSourceBuilder")
            .field("url", &self.url)
            .field("headers", &header_names)
            .field("last_event_id", &self.last_event_id)
            .field("reconnect_config", &self.reconnect_config)
            .field("decoder_config", &self.decoder_config)
            .field("reconnect", &self.reconnect)
            .field("http2_prior_knowledge", &self.http2_prior_knowledge)
            .field("extra_roots", &self.extra_roots.len())
            .finish()
    }
}

fn parse_url(text: &str) -> Result<Url, ClientError> {
    let mut url = Url::parse(text).map_err(|e| ClientError::InvalidUrl(format!("{text}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ClientError::InvalidUrl(format!(
            "{text}: the scheme must be http or https"
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ClientError::InvalidUrl(format!(
            "{}: credentials in the URL are not sent; use an Authorization header",
            url.host_str().unwrap_or(text)
        )));
    }
    url.set_fragment(None);
    if !is_fetchable(&url) {
        return Err(ClientError::InvalidUrl(format!(
            "{text}: cannot be requested"
        )));
    }
    Ok(url)
}

/// The defaults, replaced by the user's headers of the same name.
fn request_headers(custom: &[(String, String)]) -> Result<HeaderMap, ClientError> {
    let mut user = HeaderMap::new();
    for (name, value) in custom {
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ClientError::InvalidHeader(format!("{name:?} is not a header name")))?;
        let header_value = HeaderValue::from_bytes(value.as_bytes()).map_err(|_| {
            ClientError::InvalidHeader(format!(
                "the value of {name} may not contain control characters"
            ))
        })?;
        user.append(header_name, header_value);
    }
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    for name in user.keys() {
        headers.remove(name);
    }
    for (name, value) in &user {
        headers.append(name.clone(), value.clone());
    }
    Ok(headers)
}

/// A jitter seed that differs between processes and between EventSources of one process.
fn fresh_seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    nanos ^ count.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(std::process::id()) << 32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(parse_url("http://127.0.0.1:1/x#f").is_ok());
        assert_eq!(
            parse_url("https://a.test/x#f").unwrap().as_str(),
            "https://a.test/x"
        );
        for bad in [
            "",
            "/relative",
            "ftp://a.test/",
            "http://u:p@a.test/",
            "mailto:x@y",
        ] {
            assert!(
                matches!(parse_url(bad), Err(ClientError::InvalidUrl(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn user_headers_replace_defaults_and_keep_utf8() {
        let headers = request_headers(&[
            ("Accept".into(), "text/event-stream, */*".into()),
            ("X-Name".into(), "é".into()),
            ("X-Name".into(), "two".into()),
        ])
        .unwrap();
        assert_eq!(headers.get_all(ACCEPT).iter().count(), 1);
        assert_eq!(headers[ACCEPT], "text/event-stream, */*");
        assert_eq!(headers[CACHE_CONTROL], "no-cache");
        let values: Vec<_> = headers.get_all("x-name").iter().collect();
        assert_eq!(values[0].as_bytes(), "é".as_bytes());
        assert_eq!(values.len(), 2);
    }

    #[test]
    fn invalid_headers_are_reported() {
        for (name, value) in [("Bad Name", "v"), ("X-Ok", "a\r\nb"), ("", "v")] {
            assert!(
                matches!(
                    request_headers(&[(name.into(), value.into())]),
                    Err(ClientError::InvalidHeader(_))
                ),
                "{name:?} {value:?}"
            );
        }
    }

    #[test]
    fn seeds_differ() {
        assert_ne!(fresh_seed(), fresh_seed());
    }
}
