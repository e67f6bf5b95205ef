//! The EventSource over HTTP/2: over TLS with ALPN (a self-signed certificate made at test time)
//! and over cleartext with prior knowledge (h2c), against hyper's HTTP/2 server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use herald_client::{ClientError, ClientEvent, EventSource, ReadyState};
use http::{Request, Response, Version};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

/// What the HTTP/2 server saw of a request.
#[derive(Debug)]
struct Seen {
    version: Version,
    authorization: Option<String>,
}

/// Answers every request with one event and the end of the stream.
async fn handle(
    request: Request<Incoming>,
    seen: mpsc::UnboundedSender<Seen>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let _ = seen.send(Seen {
        version: request.version(),
        authorization: request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    });
    Ok(Response::builder()
        .header("content-type", "text/event-stream")
        .body(Full::new(Bytes::from_static(b"data: over h2\n\n")))
        .unwrap())
}

/// Serves HTTP/2 only on 127.0.0.1, over TLS when an acceptor is given.
async fn h2_server(tls: Option<TlsAcceptor>) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (tls, tx) = (tls.clone(), tx.clone());
            tokio::spawn(async move {
                let service = service_fn(move |r| handle(r, tx.clone()));
                let http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                let _ = match tls {
                    Some(acceptor) => {
                        let Ok(stream) = acceptor.accept(tcp).await else {
                            return;
                        };
                        http2.serve_connection(TokioIo::new(stream), service).await
                    }
                    None => http2.serve_connection(TokioIo::new(tcp), service).await,
                };
            });
        }
    });
    (addr, rx)
}

/// A self-signed certificate for 127.0.0.1 and localhost: (PEM for the client, TLS acceptor
/// offering only h2).
fn self_signed() -> (String, TlsAcceptor) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert = CertificateDer::from(certified.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    (certified.cert.pem(), TlsAcceptor::from(Arc::new(config)))
}

#[tokio::test]
async fn http2_over_tls_is_negotiated_with_alpn() {
    let (pem, acceptor) = self_signed();
    let (addr, mut seen) = h2_server(Some(acceptor)).await;
    let mut es = EventSource::builder(&format!("https://{addr}/events"))
        .add_root_certificate_pem(pem.as_bytes())
        .header("Authorization", "Bearer h2")
        .reconnect(false)
        .build()
        .unwrap();
    match event(&mut es).await {
        ClientEvent::Open { url, version } => {
            assert_eq!(version, Version::HTTP_2);
            assert_eq!(url.scheme(), "https");
        }
        other => panic!("expected Open, got {other:?}"),
    }
    assert_eq!(es.ready_state(), ReadyState::Open);
    assert_eq!(message(&mut es).await.1, "over h2");
    assert!(next(&mut es).await.is_none());
    let request = within(seen.recv()).await.unwrap();
    assert_eq!(request.version, Version::HTTP_2);
    assert_eq!(request.authorization.as_deref(), Some("Bearer h2"));
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_tls_error() {
    let (_pem, acceptor) = self_signed();
    let (addr, _seen) = h2_server(Some(acceptor)).await;
    let mut es = EventSource::builder(&format!("https://{addr}/events"))
        .reconnect(false)
        .build()
        .unwrap();
    match next(&mut es).await {
        Some(Err(ClientError::Tls(message))) => assert!(!message.is_empty()),
        other => panic!("expected a TLS error, got {other:?}"),
    }
    assert!(next(&mut es).await.is_none());
}

#[tokio::test]
async fn h2c_with_prior_knowledge() {
    let (addr, mut seen) = h2_server(None).await;
    let mut es = EventSource::builder(&format!("http://{addr}/events"))
        .http2_prior_knowledge(true)
        .reconnect(false)
        .build()
        .unwrap();
    match event(&mut es).await {
        ClientEvent::Open { version, .. } => assert_eq!(version, Version::HTTP_2),
        other => panic!("expected Open, got {other:?}"),
    }
    assert_eq!(message(&mut es).await.1, "over h2");
    assert!(next(&mut es).await.is_none());
    assert_eq!(within(seen.recv()).await.unwrap().version, Version::HTTP_2);
}

#[tokio::test]
async fn http2_streams_reconnect_too() {
    let (addr, mut seen) = h2_server(None).await;
    let mut es = EventSource::builder(&format!("http://{addr}/events"))
        .http2_prior_knowledge(true)
        .reconnect_config(herald_client::ReconnectConfig {
            initial_retry: std::time::Duration::from_millis(10),
            ..Default::default()
        })
        .build()
        .unwrap();
    for _ in 0..2 {
        open(&mut es).await;
        assert_eq!(message(&mut es).await.1, "over h2");
        reconnecting(&mut es).await;
    }
    within(seen.recv()).await.unwrap();
    within(seen.recv()).await.unwrap();
}
