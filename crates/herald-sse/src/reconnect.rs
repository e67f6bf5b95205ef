//! The EventSource connection model (WHATWG HTML, "the EventSource processing model") as a
//! deterministic state machine.
//!
//! It does no I/O and reads no clock: the caller reports what happened (a response arrived, the
//! stream ended, the network failed) with the current [`Instant`], and the machine answers what to
//! do next: open, follow a redirect, fail for good, or wait until a deadline and connect again
//! with a given `Last-Event-ID`. Tests drive it without sockets or sleeps.
//!
//! Backoff: the first reconnection after a connection that made progress (delivered an event or a
//! `retry:`) waits exactly the reconnection time, as browsers do. Each further attempt that fails
//! without progress doubles the wait, up to [`ReconnectConfig::max_backoff`], and spreads it with
//! "equal jitter" (a random point in the upper half of the doubled wait) so that many clients cut
//! off together do not come back together.

use std::time::{Duration, Instant};

use crate::Decoded;

/// The smallest wait once attempts keep failing, whatever `retry:` said.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Waits are capped here (a `retry:` of `u64::MAX` ms would otherwise overflow the clock).
const LONGEST_WAIT: Duration = Duration::from_secs(24 * 3600);

/// `EventSource.readyState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReadyState {
    /// Connecting, or waiting to reconnect (0).
    Connecting = 0,
    /// The stream is open and events are flowing (1).
    Open = 1,
    /// Failed or closed for good (2). Nothing more happens.
    Closed = 2,
}

/// Settings of a [`ConnectionModel`].
#[derive(Debug, Clone, PartialEq)]
pub struct ReconnectConfig {
    /// Reconnection time until the server sends `retry:`. Default: 3000 ms (the standard's usual
    /// value).
    pub initial_retry: Duration,
    /// Upper bound of the backoff after repeated failures (a server's larger `retry:` still
    /// wins). Default: 30 s.
    pub max_backoff: Duration,
    /// Redirects followed within one connection attempt before failing. Default: 20 (as fetch).
    pub max_redirects: u32,
    /// Treat 5xx responses like network errors (reconnect) instead of failing the connection as
    /// the standard says. Default: off.
    pub retry_server_errors: bool,
    /// Seed of the jitter generator; give each client a different one. Default: a fixed value.
    pub jitter_seed: u64,
}

impl Default for ReconnectConfig {
    fn default() -> Self {
        Self {
            initial_retry: Duration::from_millis(3000),
            max_backoff: Duration::from_secs(30),
            max_redirects: 20,
            retry_server_errors: false,
            jitter_seed: 0x9E37_79B9_7F4A_7C15,
        }
    }
}

/// What a connection attempt must send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    /// The `Last-Event-ID` header value; `None` when the last event id is empty.
    pub last_event_id: Option<String>,
    /// 1 for the first attempt, counting up over the model's life.
    pub attempt: u64,
}

/// Why the connection failed for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailReason {
    /// The final response's status was not 200 (204 is how a server says "stop").
    Status(u16),
    /// The response was 200 but its MIME type was not `text/event-stream`.
    ContentType(Option<String>),
    /// A redirect without a usable `Location`.
    BadRedirect,
    /// More redirects than [`ReconnectConfig::max_redirects`].
    TooManyRedirects,
    /// [`ConnectionModel::close`] was called.
    Closed,
}

impl std::fmt::Display for FailReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Status(204) => f.write_str("the server answered 204 No Content: stop"),
            Self::Status(s) => write!(f, "the server answered HTTP {s}, not 200"),
            Self::ContentType(Some(ct)) => {
                write!(
                    f,
                    "the server sent Content-Type {ct:?}, not text/event-stream"
                )
            }
            Self::ContentType(None) => f.write_str("the server sent no Content-Type"),
            Self::BadRedirect => f.write_str("a redirect without a valid Location"),
            Self::TooManyRedirects => f.write_str("too many redirects"),
            Self::Closed => f.write_str("closed"),
        }
    }
}

/// What to do with a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseVerdict {
    /// Accepted: read the body as an event stream.
    Open,
    /// Follow the redirect (the caller resolves `Location`); the attempt goes on.
    Redirect,
    /// Failed for good: the model is closed.
    Fail(FailReason),
    /// A 5xx with [`ReconnectConfig::retry_server_errors`]: drop it and wait until the instant.
    Reconnect(Instant),
}

/// Why an attempt or an open stream ended, for [`ConnectionModel::on_disconnect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disconnect {
    /// The server ended the response cleanly.
    StreamEnded,
    /// Connecting, TLS, reading or decoding failed.
    NetworkError,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Ready to start an attempt now.
    Ready,
    /// Waiting to reconnect.
    Waiting(Instant),
    /// An attempt is in flight (request sent, no accepted response yet).
    Attempting {
        redirects: u32,
    },
    Open,
    Closed(FailReason),
}

/// The state of one EventSource across its connections.
#[derive(Debug, Clone)]
pub struct ConnectionModel {
    config: ReconnectConfig,
    phase: Phase,
    last_event_id: String,
    reconnection_time: Duration,
    /// Attempts since the last progress that ended without progress.
    failures: u32,
    progressed: bool,
    attempts: u64,
    rng: u64,
}

impl ConnectionModel {
    /// A model about to make its first connection, with an empty last event id.
    pub fn new(config: ReconnectConfig) -> Self {
        let rng = config.jitter_seed | 1;
        Self {
            reconnection_time: config.initial_retry,
            config,
            phase: Phase::Ready,
            last_event_id: String::new(),
            failures: 0,
            progressed: false,
            attempts: 0,
            rng,
        }
    }

    /// Starts from a last event id given by the user: even the first connection sends it.
    pub fn with_last_event_id(mut self, id: impl Into<String>) -> Self {
        self.last_event_id = id.into();
        self
    }

    /// `readyState`.
    pub fn ready_state(&self) -> ReadyState {
        match self.phase {
            Phase::Ready | Phase::Waiting(_) | Phase::Attempting { .. } => ReadyState::Connecting,
            Phase::Open => ReadyState::Open,
            Phase::Closed(_) => ReadyState::Closed,
        }
    }

    /// Why the model closed, once it has.
    pub fn fail_reason(&self) -> Option<&FailReason> {
        match &self.phase {
            Phase::Closed(r) => Some(r),
            _ => None,
        }
    }

    /// The last event id (sent as `Last-Event-ID` when not empty).
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// The current reconnection time.
    pub fn reconnection_time(&self) -> Duration {
        self.reconnection_time
    }

    /// When a wait ends, if the model is waiting to reconnect.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Waiting(at) => Some(at),
            _ => None,
        }
    }

    /// Starts a connection attempt if one is due at `now`: at first, and after a wait has passed.
    pub fn poll_connect(&mut self, now: Instant) -> Option<ConnectRequest> {
        match self.phase {
            Phase::Ready => {}
            Phase::Waiting(at) if now >= at => {}
            _ => return None,
        }
        self.phase = Phase::Attempting { redirects: 0 };
        self.progressed = false;
        self.attempts += 1;
        Some(ConnectRequest {
            last_event_id: (!self.last_event_id.is_empty()).then(|| self.last_event_id.clone()),
            attempt: self.attempts,
        })
    }

    /// Judges the (possibly redirected) response of the attempt in flight. `content_type` is the
    /// raw header; `has_location` tells whether a redirect carries a `Location` the caller can
    /// resolve.
    pub fn on_response(
        &mut self,
        now: Instant,
        status: u16,
        content_type: Option<&str>,
        has_location: bool,
    ) -> ResponseVerdict {
        let Phase::Attempting { redirects } = self.phase else {
            return ResponseVerdict::Fail(
                self.fail_reason().cloned().unwrap_or(FailReason::Closed),
            );
        };
        match status {
            200 if content_type.is_some_and(is_event_stream) => {
                self.phase = Phase::Open;
                ResponseVerdict::Open
            }
            200 => self.fail(FailReason::ContentType(content_type.map(str::to_owned))),
            301 | 302 | 303 | 307 | 308 => {
                if !has_location {
                    self.fail(FailReason::BadRedirect)
                } else if redirects >= self.config.max_redirects {
                    self.fail(FailReason::TooManyRedirects)
                } else {
                    self.phase = Phase::Attempting {
                        redirects: redirects + 1,
                    };
                    ResponseVerdict::Redirect
                }
            }
            500..=599 if self.config.retry_server_errors => {
                ResponseVerdict::Reconnect(self.schedule(now))
            }
            other => self.fail(FailReason::Status(other)),
        }
    }

    /// Takes what the stream's decoder reported: a `retry:` sets the reconnection time; an event
    /// carries the last event id and counts as progress (a `retry:` alone does not, so a server
    /// that sends `retry: 0` and hangs up still meets the backoff).
    pub fn on_decoded(&mut self, item: &Decoded) {
        match item {
            Decoded::Retry(ms) => self.reconnection_time = Duration::from_millis(*ms),
            Decoded::Event(e) => {
                if self.last_event_id != e.last_event_id {
                    self.last_event_id.clone_from(&e.last_event_id);
                }
                self.progressed = true;
            }
        }
    }

    /// Sets the last event id directly: after each read, pass the decoder's
    /// [`last_event_id`](crate::Decoder::last_event_id) so that `id:`-only blocks count too.
    pub fn set_last_event_id(&mut self, id: &str) {
        if self.last_event_id != id {
            self.last_event_id = id.to_owned();
        }
    }

    /// The attempt or the open stream ended. Returns when to connect again, or `None` when the
    /// model is closed.
    pub fn on_disconnect(&mut self, now: Instant, _cause: Disconnect) -> Option<Instant> {
        match self.phase {
            Phase::Closed(_) => None,
            Phase::Waiting(at) => Some(at),
            _ => Some(self.schedule(now)),
        }
    }

    /// `close()`: ends everything; nothing is delivered afterwards.
    pub fn close(&mut self) {
        self.phase = Phase::Closed(FailReason::Closed);
    }

    fn fail(&mut self, reason: FailReason) -> ResponseVerdict {
        self.phase = Phase::Closed(reason.clone());
        ResponseVerdict::Fail(reason)
    }

    fn schedule(&mut self, now: Instant) -> Instant {
        if self.progressed {
            self.failures = 0;
            self.progressed = false;
        }
        self.failures = self.failures.saturating_add(1);
        let delay = self.backoff().min(LONGEST_WAIT);
        let at = now.checked_add(delay).unwrap_or(now);
        self.phase = Phase::Waiting(at);
        at
    }

    fn backoff(&mut self) -> Duration {
        if self.failures <= 1 {
            return self.reconnection_time;
        }
        // A server may have set `retry: 0`; repeated failures must still slow down.
        let base = self.reconnection_time.max(MIN_BACKOFF);
        let doublings = (self.failures - 1).min(20);
        let grown = base.saturating_mul(1u32 << doublings);
        let capped = grown.min(self.config.max_backoff.max(base));
        let half = capped / 2;
        let spread = u64::try_from((capped - half).as_nanos()).unwrap_or(u64::MAX);
        let jitter = if spread == 0 {
            0
        } else {
            self.next_random() % (spread + 1)
        };
        half + Duration::from_nanos(jitter)
    }

    /// xorshift64*: small, deterministic, good enough to spread reconnections.
    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Whether a `Content-Type` value's MIME essence is `text/event-stream` (parameters ignored).
pub fn is_event_stream(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("");
    essence
        .trim_matches(|c: char| c.is_ascii_whitespace())
        .eq_ignore_ascii_case("text/event-stream")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MessageEvent;

    const SSE: Option<&str> = Some("text/event-stream");

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn event(id: &str) -> Decoded {
        Decoded::Event(MessageEvent {
            event_type: "message".into(),
            data: "x".into(),
            last_event_id: id.into(),
        })
    }

    #[test]
    fn open_then_clean_end_reconnects_after_the_reconnection_time_with_the_id() {
        let t0 = Instant::now();
        let mut m = ConnectionModel::new(ReconnectConfig::default());
        assert_eq!(m.ready_state(), ReadyState::Connecting);
        let req = m.poll_connect(t0).unwrap();
        assert_eq!(req.last_event_id, None);
        assert!(m.poll_connect(t0).is_none(), "one attempt at a time");
        assert_eq!(m.on_response(t0, 200, SSE, false), ResponseVerdict::Open);
        assert_eq!(m.ready_state(), ReadyState::Open);
        m.on_decoded(&event("7"));
        let at = m.on_disconnect(t0, Disconnect::StreamEnded).unwrap();
        assert_eq!(at, t0 + ms(3000));
        assert_eq!(m.ready_state(), ReadyState::Connecting);
        assert_eq!(m.poll_timeout(), Some(at));
        assert!(m.poll_connect(t0 + ms(2999)).is_none());
        let req = m.poll_connect(at).unwrap();
        assert_eq!(req.last_event_id.as_deref(), Some("7"));
        assert_eq!(req.attempt, 2);
    }

    #[test]
    fn retry_field_sets_the_wait() {
        let t0 = Instant::now();
        let mut m = ConnectionModel::new(ReconnectConfig::default());
        m.poll_connect(t0).unwrap();
        m.on_response(t0, 200, SSE, false);
        m.on_decoded(&Decoded::Retry(250));
        assert_eq!(m.reconnection_time(), ms(250));
        assert_eq!(
            m.on_disconnect(t0, Disconnect::NetworkError),
            Some(t0 + ms(250))
        );
    }

    #[test]
    fn id_reset_is_not_sent() {
        let t0 = Instant::now();
        let mut m = ConnectionModel::new(ReconnectConfig::default()).with_last_event_id("3");
        assert_eq!(
            m.poll_connect(t0).unwrap().last_event_id.as_deref(),
            Some("3")
        );
        m.on_response(t0, 200, SSE, false);
        m.on_decoded(&event(""));
        let at = m.on_disconnect(t0, Disconnect::StreamEnded).unwrap();
        assert_eq!(m.poll_connect(at).unwrap().last_event_id, None);
    }

    #[test]
    fn statuses_and_types_that_fail() {
        let t0 = Instant::now();
        for (status, ct) in [
            (204, SSE),
            (404, SSE),
            (500, SSE),
            (503, SSE),
            (205, SSE),
            (200, Some("text/plain")),
            (200, None),
            (200, Some("text/event-streams")),
        ] {
            let mut m = ConnectionModel::new(ReconnectConfig::default());
            m.poll_connect(t0).unwrap();
            assert!(
                matches!(
                    m.on_response(t0, status, ct, false),
                    ResponseVerdict::Fail(_)
                ),
                "{status} {ct:?}"
            );
            assert_eq!(m.ready_state(), ReadyState::Closed);
            assert_eq!(m.on_disconnect(t0, Disconnect::NetworkError), None);
            assert!(m.poll_connect(t0 + ms(100_000)).is_none());
        }
    }

    #[test]
    fn mime_parameters_and_case_are_ignored() {
        for ct in [
            "text/event-stream",
            "text/event-stream;",
            "text/event-stream; charset=windows-1252",
            "Text/Event-Stream ;x=y",
        ] {
            assert!(is_event_stream(ct), "{ct}");
        }
        assert!(!is_event_stream("text/plain; x=text/event-stream"));
    }

    #[test]
    fn redirects_are_followed_up_to_the_limit() {
        let t0 = Instant::now();
        let config = ReconnectConfig {
            max_redirects: 2,
            ..ReconnectConfig::default()
        };
        let mut m = ConnectionModel::new(config);
        m.poll_connect(t0).unwrap();
        assert_eq!(
            m.on_response(t0, 302, None, true),
            ResponseVerdict::Redirect
        );
        assert_eq!(
            m.on_response(t0, 307, None, true),
            ResponseVerdict::Redirect
        );
        assert_eq!(
            m.on_response(t0, 301, None, true),
            ResponseVerdict::Fail(FailReason::TooManyRedirects)
        );
        let mut m = ConnectionModel::new(ReconnectConfig::default());
        m.poll_connect(t0).unwrap();
        assert_eq!(
            m.on_response(t0, 308, None, false),
            ResponseVerdict::Fail(FailReason::BadRedirect)
        );
    }

    #[test]
    fn repeated_failures_back_off_with_jitter_and_progress_resets() {
        let t0 = Instant::now();
        let config = ReconnectConfig {
            initial_retry: ms(1000),
            max_backoff: ms(10_000),
            ..ReconnectConfig::default()
        };
        let mut m = ConnectionModel::new(config);
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..8 {
            m.poll_connect(now).unwrap();
            let at = m.on_disconnect(now, Disconnect::NetworkError).unwrap();
            waits.push(at - now);
            now = at;
        }
        assert_eq!(waits[0], ms(1000), "first wait is exact");
        for (i, w) in waits.iter().enumerate().skip(1) {
            let full = ms(1000 * (1 << i)).min(ms(10_000));
            assert!(*w >= full / 2 && *w <= full, "wait {i}: {w:?} vs {full:?}");
        }
        // A connection that delivers something resets the backoff.
        m.poll_connect(now).unwrap();
        m.on_response(now, 200, SSE, false);
        m.on_decoded(&event("1"));
        let at = m.on_disconnect(now, Disconnect::StreamEnded).unwrap();
        assert_eq!(at - now, ms(1000));
    }

    #[test]
    fn open_without_progress_still_backs_off() {
        let t0 = Instant::now();
        let mut m = ConnectionModel::new(ReconnectConfig::default());
        let mut now = t0;
        for i in 0..3 {
            m.poll_connect(now).unwrap();
            m.on_response(now, 200, SSE, false);
            let at = m.on_disconnect(now, Disconnect::StreamEnded).unwrap();
            if i == 0 {
                assert_eq!(at - now, ms(3000));
            } else {
                assert!(at - now >= ms(3000), "{i}");
            }
            now = at;
        }
    }

    #[test]
    fn jitter_differs_by_seed() {
        let run = |seed| {
            let mut m = ConnectionModel::new(ReconnectConfig {
                jitter_seed: seed,
                ..ReconnectConfig::default()
            });
            let t0 = Instant::now();
            let mut now = t0;
            let mut waits = Vec::new();
            for _ in 0..5 {
                m.poll_connect(now).unwrap();
                let at = m.on_disconnect(now, Disconnect::NetworkError).unwrap();
                waits.push(at - now);
                now = at;
            }
            waits
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn server_errors_can_be_retried_when_asked() {
        let t0 = Instant::now();
        let mut m = ConnectionModel::new(ReconnectConfig {
            retry_server_errors: true,
            ..ReconnectConfig::default()
        });
        m.poll_connect(t0).unwrap();
        assert_eq!(
            m.on_response(t0, 503, None, false),
            ResponseVerdict::Reconnect(t0 + ms(3000))
        );
        assert_eq!(m.ready_state(), ReadyState::Connecting);
    }

    #[test]
    fn retry_zero_still_backs_off_when_failures_repeat() {
        let t0 = Instant::now();
        let mut m = ConnectionModel::new(ReconnectConfig::default());
        let mut now = t0;
        m.poll_connect(now).unwrap();
        m.on_response(now, 200, SSE, false);
        m.on_decoded(&Decoded::Retry(0));
        let mut waits = Vec::new();
        for _ in 0..4 {
            let at = m.on_disconnect(now, Disconnect::StreamEnded).unwrap();
            waits.push(at - now);
            now = at;
            m.poll_connect(now).unwrap();
        }
        assert_eq!(waits[0], ms(0), "the server asked for no wait");
        assert!(waits[1] >= ms(100), "{waits:?}");
        assert!(waits[3] >= ms(400), "{waits:?}");
    }

    #[test]
    fn huge_retry_does_not_overflow() {
        let t0 = Instant::now();
        let mut m = ConnectionModel::new(ReconnectConfig::default());
        m.poll_connect(t0).unwrap();
        m.on_response(t0, 200, SSE, false);
        m.on_decoded(&Decoded::Retry(u64::MAX));
        let at = m.on_disconnect(t0, Disconnect::StreamEnded).unwrap();
        assert_eq!(at - t0, Duration::from_secs(24 * 3600));
    }

    #[test]
    fn close_ends_everything() {
        let t0 = Instant::now();
        let mut m = ConnectionModel::new(ReconnectConfig::default());
        m.poll_connect(t0).unwrap();
        m.on_response(t0, 200, SSE, false);
        m.close();
        assert_eq!(m.ready_state(), ReadyState::Closed);
        assert_eq!(m.on_disconnect(t0, Disconnect::StreamEnded), None);
        assert!(m.poll_connect(t0 + ms(10_000)).is_none());
    }
}
