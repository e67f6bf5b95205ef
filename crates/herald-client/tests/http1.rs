//! The EventSource over HTTP/1.1 against a scripted server: reconnection, `Last-Event-ID`,
//! failing statuses and content types, redirects, `retry:`, headers and `close()`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use herald_client::{
    ClientError, ClientEvent, DecoderConfig, EventSource, FailReason, ReadyState, ReconnectConfig,
};

/// Reconnections after 10 ms instead of 3 s.
fn fast() -> ReconnectConfig {
    ReconnectConfig {
        initial_retry: Duration::from_millis(10),
        ..ReconnectConfig::default()
    }
}

#[tokio::test]
async fn reconnects_after_the_server_ends_the_stream() {
    let mut server = ScriptServer::start(|r| match r.index {
        0 => Reply::Close(sse("retry: 10\ndata: one\n\n")),
        _ => Reply::Hold(sse("data: two\n\n")),
    })
    .await;
    let mut es = EventSource::new(&server.url("/events")).unwrap();
    assert_eq!(es.ready_state(), ReadyState::Connecting);
    assert_eq!(open(&mut es).await, "/events");
    assert_eq!(es.ready_state(), ReadyState::Open);
    assert_eq!(
        event(&mut es).await,
        ClientEvent::Retry(Duration::from_millis(10))
    );
    assert_eq!(message(&mut es).await.1, "one");
    assert_eq!(reconnecting(&mut es).await, Duration::from_millis(10));
    assert_eq!(es.ready_state(), ReadyState::Connecting);
    assert_eq!(open(&mut es).await, "/events");
    assert_eq!(message(&mut es).await.1, "two");
    assert_eq!(server.request().await.index, 0);
    assert_eq!(server.request().await.index, 1);
}

#[tokio::test]
async fn last_event_id_is_sent_on_reconnect_as_utf8_bytes() {
    let mut server = ScriptServer::start(|r| match r.index {
        0 => Reply::Close(sse("id: é-1\ndata: a\n\n")),
        _ => Reply::Hold(sse("data: b\n\n")),
    })
    .await;
    let mut es = EventSource::builder(&server.url("/"))
        .reconnect_config(fast())
        .build()
        .unwrap();
    open(&mut es).await;
    assert_eq!(
        message(&mut es).await,
        ("message".into(), "a".into(), "é-1".into())
    );
    assert_eq!(es.last_event_id(), "é-1");
    reconnecting(&mut es).await;
    open(&mut es).await;
    assert_eq!(message(&mut es).await.2, "é-1", "the id carries over");

    let first = server.request().await;
    assert_eq!(first.header("last-event-id"), None);
    let second = server.request().await;
    assert_eq!(second.header("last-event-id"), Some("é-1".as_bytes()));
    assert_eq!(second.header("last-event-id"), Some(&b"\xC3\xA9-1"[..]));
}

#[tokio::test]
async fn last_event_id_is_not_sent_after_an_id_reset() {
    let mut server = ScriptServer::start(|r| match r.index {
        0 => Reply::Close(sse("id: 1\ndata: a\n\nid\ndata: b\n\n")),
        _ => Reply::Hold(sse(": nothing\n\n")),
    })
    .await;
    let mut es = EventSource::builder(&server.url("/"))
        .last_event_id("start")
        .reconnect_config(fast())
        .build()
        .unwrap();
    assert_eq!(es.last_event_id(), "start");
    open(&mut es).await;
    assert_eq!(message(&mut es).await.2, "1");
    assert_eq!(message(&mut es).await.2, "");
    assert_eq!(es.last_event_id(), "");
    reconnecting(&mut es).await;
    open(&mut es).await;

    let first = server.request().await;
    assert_eq!(first.header("last-event-id"), Some(&b"start"[..]));
    let second = server.request().await;
    assert_eq!(second.header("last-event-id"), None);
}

#[tokio::test]
async fn an_id_only_block_updates_the_last_event_id() {
    let mut server = ScriptServer::start(|r| match r.index {
        0 => Reply::Close(sse("data: a\n\nid: 7\n\n")),
        _ => Reply::Hold(sse("data: b\n\n")),
    })
    .await;
    let mut es = EventSource::builder(&server.url("/"))
        .reconnect_config(fast())
        .build()
        .unwrap();
    open(&mut es).await;
    assert_eq!(message(&mut es).await.2, "");
    reconnecting(&mut es).await;
    assert_eq!(es.last_event_id(), "7");
    open(&mut es).await;
    server.request().await;
    assert_eq!(
        server.request().await.header("last-event-id"),
        Some(&b"7"[..])
    );
}

#[tokio::test]
async fn status_204_stops_for_good() {
    let mut server = ScriptServer::start(|_| Reply::Close(status(204, "No Content", ""))).await;
    let mut es = EventSource::builder(&server.url("/"))
        .reconnect_config(fast())
        .build()
        .unwrap();
    match next(&mut es).await {
        Some(Err(ClientError::Failed(FailReason::Status(204)))) => {}
        other => panic!("expected Failed(Status(204)), got {other:?}"),
    }
    assert_eq!(es.ready_state(), ReadyState::Closed);
    assert!(next(&mut es).await.is_none());
    // The stream ended because the connection task did: no other connection can follow.
    assert_eq!(server.request().await.index, 0);
    assert!(server.requests.try_recv().is_err(), "no second connection");
}

#[tokio::test]
async fn a_wrong_content_type_fails() {
    let server = ScriptServer::start(|_| {
        Reply::Close(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\ndata: x\n\n"
                .to_vec(),
        )
    })
    .await;
    let mut es = EventSource::builder(&server.url("/"))
        .reconnect_config(fast())
        .build()
        .unwrap();
    match next(&mut es).await {
        Some(Err(ClientError::Failed(FailReason::ContentType(Some(ct))))) => {
            assert_eq!(ct, "text/plain");
        }
        other => panic!("expected a content type failure, got {other:?}"),
    }
    assert!(next(&mut es).await.is_none());
}

#[tokio::test]
async fn content_type_parameters_are_accepted() {
    let server = ScriptServer::start(|_| {
        Reply::Close(
            b"HTTP/1.1 200 OK\r\nContent-Type: Text/Event-Stream; charset=latin1\r\n\r\ndata: x\n\n"
                .to_vec(),
        )
    })
    .await;
    let mut es = EventSource::builder(&server.url("/"))
        .reconnect(false)
        .build()
        .unwrap();
    open(&mut es).await;
    assert_eq!(message(&mut es).await.1, "x");
    assert!(next(&mut es).await.is_none());
}

#[tokio::test]
async fn status_404_fails_with_a_clear_sentence() {
    let mut server = ScriptServer::start(|_| Reply::Close(status(404, "Not Found", ""))).await;
    let mut es = EventSource::builder(&server.url("/missing"))
        .reconnect_config(fast())
        .build()
        .unwrap();
    match next(&mut es).await {
        Some(Err(e @ ClientError::Failed(FailReason::Status(404)))) => {
            assert_eq!(e.to_string(), "the server answered HTTP 404, not 200");
        }
        other => panic!("expected Failed(Status(404)), got {other:?}"),
    }
    assert!(next(&mut es).await.is_none());
    assert_eq!(server.request().await.path, "/missing");
    assert!(server.requests.try_recv().is_err());
}

#[tokio::test]
async fn redirects_are_followed_and_reconnections_start_from_the_original_url() {
    let mut server = ScriptServer::start(|r| match (r.path.as_str(), r.index) {
        ("/start", _) => Reply::Close(status(302, "Found", "Location: /stream?x=1\r\n")),
        ("/stream?x=1", 1) => Reply::Close(sse("retry: 10\ndata: first\n\n")),
        ("/stream?x=1", _) => Reply::Hold(sse("data: second\n\n")),
        _ => Reply::Close(status(500, "Unexpected", "")),
    })
    .await;
    let mut es = EventSource::new(&server.url("/start")).unwrap();
    match event(&mut es).await {
        ClientEvent::Open { url, version } => {
            assert_eq!(url.as_str(), server.url("/stream?x=1"));
            assert_eq!(version, http::Version::HTTP_11);
        }
        other => panic!("expected Open, got {other:?}"),
    }
    assert_eq!(
        event(&mut es).await,
        ClientEvent::Retry(Duration::from_millis(10))
    );
    assert_eq!(message(&mut es).await.1, "first");
    reconnecting(&mut es).await;
    open(&mut es).await;
    assert_eq!(message(&mut es).await.1, "second");
    let paths: Vec<String> = [
        server.request().await,
        server.request().await,
        server.request().await,
        server.request().await,
    ]
    .into_iter()
    .map(|r| r.path)
    .collect();
    assert_eq!(paths, ["/start", "/stream?x=1", "/start", "/stream?x=1"]);
}

#[tokio::test]
async fn authorization_follows_same_origin_redirects_only() {
    let mut other = ScriptServer::start(|_| Reply::Close(sse("data: there\n\n"))).await;
    let elsewhere = other.url("/there");
    let mut server = ScriptServer::start(move |r| match r.path.as_str() {
        "/same" => Reply::Close(status(307, "Temporary Redirect", "Location: /cross\r\n")),
        "/cross" => Reply::Close(status(
            301,
            "Moved Permanently",
            &format!("Location: {elsewhere}\r\n"),
        )),
        _ => Reply::Close(status(500, "Unexpected", "")),
    })
    .await;
    let mut es = EventSource::builder(&server.url("/same"))
        .header("Authorization", "Bearer secret")
        .header("X-Tenant", "blue")
        .reconnect(false)
        .build()
        .unwrap();
    open(&mut es).await;
    assert_eq!(message(&mut es).await.1, "there");
    assert!(next(&mut es).await.is_none());

    let same = server.request().await;
    assert_eq!(same.header("authorization"), Some(&b"Bearer secret"[..]));
    let cross = server.request().await;
    assert_eq!(cross.path, "/cross");
    assert_eq!(cross.header("authorization"), Some(&b"Bearer secret"[..]));
    let there = other.request().await;
    assert_eq!(
        there.header("authorization"),
        None,
        "dropped across origins"
    );
    assert_eq!(there.header("x-tenant"), Some(&b"blue"[..]));
}

#[tokio::test]
async fn a_redirect_without_location_fails() {
    let server = ScriptServer::start(|_| Reply::Close(status(302, "Found", ""))).await;
    let mut es = EventSource::new(&server.url("/")).unwrap();
    match next(&mut es).await {
        Some(Err(ClientError::Failed(FailReason::BadRedirect))) => {}
        other => panic!("expected BadRedirect, got {other:?}"),
    }
    assert!(next(&mut es).await.is_none());
}

#[tokio::test]
async fn the_retry_field_sets_the_reconnection_time() {
    let server = ScriptServer::start(|r| match r.index {
        0 => Reply::Close(sse("retry: 300\ndata: a\n\n")),
        _ => Reply::Hold(sse("data: b\n\n")),
    })
    .await;
    // Default settings: without `retry:` the wait would be 3 s.
    let mut es = EventSource::new(&server.url("/")).unwrap();
    open(&mut es).await;
    assert_eq!(
        event(&mut es).await,
        ClientEvent::Retry(Duration::from_millis(300))
    );
    message(&mut es).await;
    assert_eq!(reconnecting(&mut es).await, Duration::from_millis(300));
    let lost = Instant::now();
    open(&mut es).await;
    let waited = lost.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "reconnected too early: {waited:?}"
    );
    assert!(
        waited < Duration::from_millis(2500),
        "reconnected too late: {waited:?}"
    );
}

#[tokio::test]
async fn request_headers_are_sent() {
    let mut server = ScriptServer::start(|_| Reply::Hold(sse("data: a\n\n"))).await;
    let mut es = EventSource::builder(&server.url("/"))
        .header("Authorization", "Bearer t0ken")
        .header("X-Name", "Zoë")
        .build()
        .unwrap();
    open(&mut es).await;
    let r = server.request().await;
    assert_eq!(r.header("authorization"), Some(&b"Bearer t0ken"[..]));
    assert_eq!(r.header("x-name"), Some("Zoë".as_bytes()));
    assert_eq!(r.header("accept"), Some(&b"text/event-stream"[..]));
    assert_eq!(r.header("cache-control"), Some(&b"no-cache"[..]));
    assert_eq!(r.header("last-event-id"), None);
}

#[tokio::test]
async fn invalid_settings_are_reported_by_build() {
    assert!(matches!(
        EventSource::new("not a url"),
        Err(ClientError::InvalidUrl(_))
    ));
    assert!(matches!(
        EventSource::new("ftp://127.0.0.1/"),
        Err(ClientError::InvalidUrl(_))
    ));
    assert!(matches!(
        EventSource::builder("http://127.0.0.1:1/")
            .header("X-Bad", "a\nb")
            .build(),
        Err(ClientError::InvalidHeader(_))
    ));
    assert!(matches!(
        EventSource::builder("http://127.0.0.1:1/")
            .header("Bad Name", "v")
            .build(),
        Err(ClientError::InvalidHeader(_))
    ));
    assert!(matches!(
        EventSource::builder("http://127.0.0.1:1/")
            .last_event_id("a\rb")
            .build(),
        Err(ClientError::InvalidHeader(_))
    ));
    assert!(matches!(
        EventSource::builder("https://127.0.0.1:1/")
            .add_root_certificate_pem(b"garbage")
            .build(),
        Err(ClientError::Tls(_))
    ));
}

#[test]
fn build_outside_a_runtime_is_an_error() {
    assert!(matches!(
        EventSource::new("http://127.0.0.1:1/"),
        Err(ClientError::NoRuntime)
    ));
}

#[tokio::test]
async fn close_stops_everything() {
    let mut server = ScriptServer::start(|_| Reply::Hold(sse("data: a\n\ndata: b\n\n"))).await;
    let mut es = EventSource::builder(&server.url("/"))
        .reconnect_config(fast())
        .build()
        .unwrap();
    open(&mut es).await;
    assert_eq!(message(&mut es).await.1, "a");
    es.close();
    assert_eq!(es.ready_state(), ReadyState::Closed);
    // Nothing is delivered after close(), even an event that already arrived.
    assert!(next(&mut es).await.is_none());
    assert!(next(&mut es).await.is_none());
    // The connection is dropped...
    assert_eq!(within(server.closed.recv()).await, Some(0));
    // ...and never re-established.
    assert_eq!(server.request().await.index, 0);
    assert!(server.requests.try_recv().is_err());
}

#[tokio::test]
async fn dropping_the_event_source_drops_the_connection() {
    let mut server = ScriptServer::start(|_| Reply::Hold(sse("data: a\n\n"))).await;
    let mut es = EventSource::new(&server.url("/")).unwrap();
    open(&mut es).await;
    drop(es);
    assert_eq!(within(server.closed.recv()).await, Some(0));
}

#[tokio::test]
async fn without_reconnect_a_clean_end_ends_the_stream() {
    let mut server = ScriptServer::start(|_| Reply::Close(sse("data: only\n\n"))).await;
    let mut es = EventSource::builder(&server.url("/"))
        .reconnect(false)
        .build()
        .unwrap();
    open(&mut es).await;
    assert_eq!(message(&mut es).await.1, "only");
    assert!(next(&mut es).await.is_none());
    assert_eq!(es.ready_state(), ReadyState::Closed);
    server.request().await;
    assert!(server.requests.try_recv().is_err());
}

#[tokio::test]
async fn without_reconnect_a_refused_connection_is_a_network_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut es = EventSource::builder(&format!("http://{addr}/"))
        .reconnect(false)
        .build()
        .unwrap();
    match next(&mut es).await {
        Some(Err(ClientError::Network(message))) => assert!(!message.is_empty()),
        other => panic!("expected a network error, got {other:?}"),
    }
    assert!(next(&mut es).await.is_none());
}

#[tokio::test]
async fn a_refused_connection_is_retried() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut es = EventSource::builder(&format!("http://{addr}/"))
        .reconnect_config(fast())
        .build()
        .unwrap();
    match event(&mut es).await {
        ClientEvent::Reconnecting { error, delay } => {
            assert!(error.contains("onnect"), "{error}");
            assert_eq!(delay, Duration::from_millis(10));
        }
        other => panic!("expected Reconnecting, got {other:?}"),
    }
    // Repeated failures back off: the second wait is longer than the first or equal.
    assert!(reconnecting(&mut es).await >= Duration::from_millis(10));
    assert_eq!(es.ready_state(), ReadyState::Connecting);
}

#[tokio::test]
async fn a_stream_breaking_the_decoder_limits_is_reconnected() {
    let mut server = ScriptServer::start(|r| match r.index {
        0 => Reply::Close(sse(&format!("data: ok\n\ndata: {}\n\n", "x".repeat(100)))),
        _ => Reply::Hold(sse("data: again\n\n")),
    })
    .await;
    let mut es = EventSource::builder(&server.url("/"))
        .decoder_config(DecoderConfig {
            max_line_len: 50,
            ..DecoderConfig::default()
        })
        .reconnect_config(fast())
        .build()
        .unwrap();
    open(&mut es).await;
    assert_eq!(message(&mut es).await.1, "ok");
    match event(&mut es).await {
        ClientEvent::Reconnecting { error, .. } => assert!(error.contains("limit"), "{error}"),
        other => panic!("expected Reconnecting, got {other:?}"),
    }
    open(&mut es).await;
    assert_eq!(message(&mut es).await.1, "again");
    server.request().await;
    server.request().await;
}

#[tokio::test]
async fn server_errors_are_retried_only_when_asked() {
    let server = ScriptServer::start(|r| match r.index {
        0 => Reply::Close(status(503, "Service Unavailable", "")),
        _ => Reply::Hold(sse("data: back\n\n")),
    })
    .await;
    let mut es = EventSource::builder(&server.url("/"))
        .reconnect_config(ReconnectConfig {
            retry_server_errors: true,
            ..fast()
        })
        .build()
        .unwrap();
    match event(&mut es).await {
        ClientEvent::Reconnecting { error, .. } => assert!(error.contains("503"), "{error}"),
        other => panic!("expected Reconnecting, got {other:?}"),
    }
    open(&mut es).await;
    assert_eq!(message(&mut es).await.1, "back");
}
