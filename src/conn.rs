//! One client connection ([`ClientConn`]) and where an intercepted connection's requests go
//! ([`Target`]).

use crate::idle::Activity;
use http::Uri;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::OwnedSemaphorePermit;

/// What every request and tunnel of one client connection shares: who the client is, the
/// connection's idle clock, its slot under `max_connections` (released when the last holder,
/// possibly a tunnel, is gone), and its tracing span.
pub struct ClientConn {
    pub addr: SocketAddr,
    pub activity: Arc<Activity>,
    /// `conn{client, listener, kind, host}`: every log line of this connection carries these
    /// fields. `listener` is `proxy` (the proxy port) or `tls` (the transparent TLS listener);
    /// `kind` (`tunnel` or `intercept`) and `host` (the CONNECT host, or the SNI on the TLS
    /// listener) are added once known.
    pub span: tracing::Span,
    _slot: Option<OwnedSemaphorePermit>,
}

impl ClientConn {
    pub fn new(
        addr: SocketAddr,
        listener: &'static str,
        idle: std::time::Duration,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Arc<ClientConn> {
        let span = tracing::info_span!(
            "conn",
            client = %addr,
            listener,
            kind = tracing::field::Empty,
            host = tracing::field::Empty
        );
        Arc::new(ClientConn {
            addr,
            activity: Activity::new(idle),
            span,
            _slot: slot,
        })
    }

    /// Name what this connection turned out to be, and its host. Called once: a CONNECT (or
    /// the TLS listener's ClientHello) ends HTTP on the connection.
    pub fn became(&self, kind: &'static str, host: &str) {
        self.span.record("kind", kind);
        self.span.record("host", host);
    }
}

/// The HTTP/1.1 server settings of every client-facing connection (the proxy port and
/// intercepted connections): header case kept, `header_read_timeout`, and `max_header_bytes`
/// exactly (`max_header_size` counts the request line and fields; the read buffer's own limit
/// is looser: it may hold more than one read's worth).
pub fn http1_server(proxy: &crate::config::ProxyConfig) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .preserve_header_case(true)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(proxy.header_read_timeout)
        .max_header_size(proxy.max_header_bytes)
        .max_buf_size(proxy.max_header_bytes);
    builder
}

/// The one form of a host name that grantshift matches, records and dials: ASCII lowercase,
/// without the brackets of an IPv6 literal and without trailing dots (`LOGIN.salesforce.com.`
/// and `login.salesforce.com` are the same host, and must meet the same rollout rule). Names
/// are ASCII here: an HTTP authority and a TLS SNI cannot carry anything else, so an
/// internationalised name arrives as its `xn--` form and is compared as such.
pub fn canonical_host(host: &str) -> String {
    let host = host.trim_end_matches('.');
    let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        // One pair, around something without brackets: an IPv6 literal.
        Some(inner) if !inner.contains(['[', ']']) => inner.trim_end_matches('.'),
        _ => host,
    };
    host.to_ascii_lowercase()
}

/// Where an intercepted connection's requests go: the CONNECT authority (or the SNI, port
/// 443, on the transparent TLS listener).
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
}

impl Target {
    /// `host` or `host:port` (port omitted when it is the https default).
    pub fn authority(&self) -> String {
        if self.port == 443 {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The absolute `https://` URI of `path_and_query` at this target.
    pub fn uri(&self, original: &Uri) -> Result<Uri, http::Error> {
        let path = original.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        Uri::builder()
            .scheme("https")
            .authority(self.authority())
            .path_and_query(path)
            .build()
    }
}

/// The span of one request on `conn`: method and path, never the query (a token request's
/// query string may carry a password); the host is the connection's. Its parent is named:
/// hyper runs each HTTP/2 stream as a task of its own, outside the connection's span.
pub fn request_span(conn: &ClientConn, method: &http::Method, uri: &Uri) -> tracing::Span {
    tracing::info_span!(parent: &conn.span, "request", method = %method, path = uri.path())
}

/// The span of one absolute-form `http://` request on the proxy port: its host too, since one
/// client connection may send requests for several hosts.
pub fn plain_request_span(method: &http::Method, uri: &Uri) -> tracing::Span {
    let host = uri.host().unwrap_or_default();
    tracing::info_span!("request", method = %method, host, path = uri.path())
}

#[cfg(test)]
mod tests {
    use super::canonical_host;

    #[test]
    fn hosts_compare_in_one_form() {
        assert_eq!(
            canonical_host("LOGIN.Salesforce.com."),
            "login.salesforce.com"
        );
        assert_eq!(
            canonical_host("login.salesforce.com"),
            "login.salesforce.com"
        );
        assert_eq!(canonical_host("[::1]"), "::1");
        // A fixed point, whatever comes in (found by the host_names fuzz target).
        for odd in [
            "\0OGIN..OM]]]]].",
            "[a].",
            "[a.]",
            "[[a]]",
            ".[a]",
            "]",
            "[",
        ] {
            let once = canonical_host(odd);
            assert_eq!(canonical_host(&once), once, "{odd:?}");
        }
        assert_eq!(canonical_host("a."), "a");
    }
}
