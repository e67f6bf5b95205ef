//! TLS and the HTTP clients: trusted roots, the rustls configuration and the hyper clients that
//! one EventSource uses.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::{pem::PemObject, CertificateDer};
use rustls::RootCertStore;

use crate::ClientError;

/// Idle time before TCP keepalive probes start.
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);
/// Longest wait for a TCP connection (per address); then the attempt fails and is retried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP/2 PING interval while a stream is open: a connection that stops answering fails.
const HTTP2_PING_INTERVAL: Duration = Duration::from_secs(30);

/// The HTTP client of one EventSource.
pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// The clients one EventSource connects with.
#[derive(Clone)]
pub(crate) struct Clients {
    /// HTTP/1.1 or HTTP/2: ALPN decides over TLS, cleartext is HTTP/1.1.
    negotiated: HttpClient,
    /// HTTP/2 with prior knowledge (h2c), for `http://` URLs when asked.
    h2c: Option<HttpClient>,
}

impl Clients {
    /// Builds the clients: `extra_roots` are PEM documents whose certificates are trusted on top
    /// of the default roots.
    pub(crate) fn new(extra_roots: &[Vec<u8>], h2c: bool) -> Result<Self, ClientError> {
        let roots = root_store(extra_roots)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // Named explicitly, so that another crate enabling a second rustls provider cannot make
        // the process-wide default ambiguous.
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();

        let mut http = HttpConnector::new();
        http.enforce_http(false);
        // Events are small and latency matters more than packet count.
        http.set_nodelay(true);
        // An event stream may be silent for long: let the kernel notice a peer that vanished
        // without closing, so the stream fails and reconnects instead of hanging.
        http.set_keepalive(Some(TCP_KEEPALIVE));
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        // The builder sets ALPN to h2 and http/1.1.
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);

        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .http2_keep_alive_interval(Some(HTTP2_PING_INTERVAL));
        let negotiated = builder.build(connector.clone());
        let h2c = h2c.then(|| builder.http2_only(true).build(connector));
        Ok(Self { negotiated, h2c })
    }

    /// The client for a URL: h2c applies to cleartext URLs only; over TLS, ALPN decides.
    pub(crate) fn for_url(&self, url: &url::Url) -> &HttpClient {
        match &self.h2c {
            Some(h2c) if url.scheme() == "http" => h2c,
            _ => &self.negotiated,
        }
    }
}

/// The webpki roots, the platform's roots when they can be read, and the extra ones.
fn root_store(extra_roots: &[Vec<u8>]) -> Result<RootCertStore, ClientError> {
    let mut store = default_roots().clone();
    for pem in extra_roots {
        let mut found = 0usize;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| {
                ClientError::Tls(format!("cannot read the extra root certificate PEM: {e}"))
            })?;
            store.add(cert).map_err(|e| {
                ClientError::Tls(format!("cannot use the extra root certificate: {e}"))
            })?;
            found += 1;
        }
        if found == 0 {
            return Err(ClientError::Tls(
                "the extra root certificate PEM holds no CERTIFICATE block".to_owned(),
            ));
        }
    }
    Ok(store)
}

/// Reading the platform's store takes a while; it is done once per process.
fn default_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut store = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let native = rustls_native_certs::load_native_certs();
        for error in &native.errors {
            tracing::debug!(%error, "could not read some platform root certificates");
        }
        let (added, ignored) = store.add_parsable_certificates(native.certs);
        tracing::debug!(added, ignored, "platform root certificates");
        store
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_without_certificate_is_a_tls_error() {
        assert!(matches!(
            root_store(&[b"not a pem".to_vec()]),
            Err(ClientError::Tls(_))
        ));
    }

    #[test]
    fn default_roots_are_not_empty() {
        assert!(!default_roots().is_empty());
    }
}
