//! TLS termination for intercepted hosts: read the ClientHello, present a leaf for its SNI
//! (falling back to the CONNECT host), then serve the decrypted HTTP/1.1 or HTTP/2 requests.

use crate::conn::{canonical_host, http1_server, ClientConn, Target};
use crate::service;
use crate::state::State;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::LazyConfigAcceptor;

/// Serve one intercepted connection until the client closes it (or shutdown drains it).
///
/// `io` is the client's upgraded CONNECT connection, with `target` its CONNECT authority
/// (where every decrypted request goes); or, on the transparent TLS listener, a raw client
/// connection with no target, which then comes from the SNI, port 443.
pub async fn serve_intercepted<IO>(
    io: IO,
    target: Option<Target>,
    conn: Arc<ClientConn>,
    state: Arc<State>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // The TLS handshake is the head of an intercepted connection: it must be done within
    // header_read_timeout, as a request head must (a client that sends nothing after its
    // CONNECT would otherwise hold the connection until idle_timeout).
    let deadline = state.config().proxy.header_read_timeout;
    let Ok(accepted) = tokio::time::timeout(deadline, handshake(io, target, &conn, &state)).await
    else {
        tracing::debug!(after = ?deadline, "no TLS handshake within header_read_timeout; closing");
        return;
    };
    let Some((tls, target)) = accepted else {
        return;
    };
    let _active = state
        .metrics
        .open(crate::telemetry::metrics::Kind::Intercept);
    tracing::debug!(alpn = ?tls.get_ref().1.alpn_protocol().map(String::from_utf8_lossy), "intercepting");

    let target = Arc::new(target);
    let svc_state = state.clone();
    let svc = hyper::service::service_fn(move |req| {
        service::handle(req, target.clone(), conn.clone(), svc_state.clone())
    });
    let config = state.config_snapshot();
    // RFC 9113 §3.2: over TLS, HTTP/2 is chosen by ALPN; everything else is HTTP/1.1.
    let ended = if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
        let served = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .max_header_list_size(config.proxy.max_header_bytes as u32)
            // Every stream may hold a token body; hyper's default (200) times
            // max_token_body per connection is what a client could make grantshift buffer.
            .max_concurrent_streams(config.proxy.max_concurrent_streams)
            .serve_connection(TokioIo::new(tls), svc);
        drop(config);
        state
            .tasks
            .serve_until_drained(served, |c| c.graceful_shutdown())
            .await
    } else {
        let served = http1_server(&config.proxy)
            .serve_connection(TokioIo::new(tls), svc)
            .with_upgrades();
        drop(config);
        state
            .tasks
            .serve_until_drained(served, |c| c.graceful_shutdown())
            .await
    };
    if let Err(e) = ended {
        tracing::debug!(error = %e, "intercepted connection ended with an error");
    }
}

/// Read the ClientHello, pick the target and the leaf for its name, and complete the
/// handshake; `None` (logged) when the connection is not to be served.
async fn handshake<IO>(
    io: IO,
    target: Option<Target>,
    conn: &ClientConn,
    state: &State,
) -> Option<(tokio_rustls::server::TlsStream<IO>, Target)>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let start = match LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io).await {
        Ok(start) => start,
        Err(e) => {
            tracing::debug!(error = %e, "no TLS ClientHello");
            return None;
        }
    };
    let sni = start.client_hello().server_name().map(str::to_owned);
    // grantshift never mints certificates for names the operator did not list.
    let intercepted = |name: &str| state.config().intercept.hosts.matches(name);
    let (target, cert_host) = match (target, sni) {
        (Some(target), None) => {
            let host = target.host.clone();
            (target, host)
        }
        (Some(target), Some(sni))
            if sni.eq_ignore_ascii_case(&target.host) || intercepted(&sni) =>
        {
            (target, sni)
        }
        (Some(target), Some(sni)) => {
            tracing::warn!(connect_host = %target.host, %sni, "SNI names a host that is not intercepted; closing");
            return None;
        }
        (None, Some(sni)) if intercepted(&sni) => {
            conn.became("intercept", &sni);
            (
                Target {
                    host: canonical_host(&sni),
                    port: 443,
                },
                sni,
            )
        }
        (None, sni) => {
            // The transparent listener is no open relay: only listed hosts are served.
            tracing::warn!(sni = ?sni, "transparent TLS: SNI missing or not an intercepted host; refusing");
            return None;
        }
    };
    let tls_config = match state.ca.server_config_for(&cert_host) {
        Ok(config) => config,
        Err(e) => {
            tracing::error!(host = %cert_host, error = %e, "cannot mint leaf certificate");
            return None;
        }
    };
    let tls = match start.into_stream(tls_config).await {
        Ok(tls) => tls,
        Err(e) => {
            tracing::debug!(host = %cert_host, error = %e, "client TLS handshake failed (does it trust grantshift's CA?)");
            return None;
        }
    };
    Some((tls, target))
}
