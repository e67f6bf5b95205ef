//! The client's one error type.

use herald_sse::FailReason;

/// Why building an [`EventSource`](crate::EventSource) failed, or why its stream ended with an
/// error.
///
/// Items of the stream that are `Err` are always the last item: after one, the stream yields
/// `None`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL does not parse, or is not an absolute `http://` or `https://` URL with a host.
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// A header given to [`EventSourceBuilder::header`](crate::EventSourceBuilder::header) has an
    /// invalid name or value (a value may not hold CR, LF, NUL or other control characters).
    #[error("invalid header: {0}")]
    InvalidHeader(String),
    /// The connection failed for good, as the standard says: a status other than 200 (a 204 is
    /// how a server says "stop"), a content type other than `text/event-stream`, or a redirect
    /// that cannot be followed. The client does not reconnect.
    #[error("{0}")]
    Failed(FailReason),
    /// Connecting, reading or decoding failed. Only reported when reconnection is disabled with
    /// [`EventSourceBuilder::reconnect`](crate::EventSourceBuilder::reconnect); otherwise such
    /// failures become [`ClientEvent::Reconnecting`](crate::ClientEvent::Reconnecting) notices.
    #[error("network error: {0}")]
    Network(String),
    /// TLS could not be set up: an extra root certificate that does not parse, or (only when
    /// reconnection is disabled) a failed TLS handshake, such as an untrusted certificate.
    #[error("TLS error: {0}")]
    Tls(String),
    /// [`EventSourceBuilder::build`](crate::EventSourceBuilder::build) was called outside a
    /// tokio runtime.
    #[error("no tokio runtime: an EventSource must be built inside a tokio runtime")]
    NoRuntime,
}

/// Renders an error with its chain of sources, each once: hyper's own messages are terse
/// ("client error (Connect)"), the cause is in the chain.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out
}

/// Whether TLS failed somewhere in the chain. An `io::Error` hides the error it wraps from
/// `source()` (it returns the wrapped error's source), so look inside it explicitly.
pub(crate) fn is_tls_error(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<rustls::Error>() {
            return true;
        }
        current = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            // Possibly another io::Error: hyper-rustls wraps tokio-rustls's io::Error in one.
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_reads_as_one_sentence() {
        assert_eq!(
            ClientError::Failed(FailReason::Status(404)).to_string(),
            "the server answered HTTP 404, not 200"
        );
    }

    #[test]
    fn tls_errors_are_found_inside_io_errors() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert!(is_tls_error(&io));
        assert!(is_tls_error(&std::io::Error::other(io)));
        let plain = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(!is_tls_error(&plain));
    }
}
