//! HTTP/1.1 `Upgrade` requests (WebSocket and friends) on intercepted connections: forwarded
//! on a dedicated HTTP/1.1 upstream connection (HTTP/2 cannot carry them, and a pooled
//! connection must not be taken over); on `101` both sides are joined and bytes flow both
//! ways untouched.

use crate::body::{empty_body, Body};
use crate::conn::{ClientConn, Target};
use crate::forward::{to_client, upstream_failed};
use crate::hop_by_hop;
use crate::state::State;
use crate::upstream::{Alpn, UpstreamError};
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

/// Forward one `Upgrade` request for `protocol`.
pub async fn forward(
    mut req: Request<Incoming>,
    protocol: HeaderValue,
    target: &Target,
    conn: &ClientConn,
    state: &State,
) -> Response<Body> {
    let client_side = hyper::upgrade::on(&mut req);
    let (mut parts, body) = req.into_parts();
    hop_by_hop::strip(&mut parts.headers);
    hop_by_hop::restore_upgrade(&mut parts.headers, protocol);
    if !parts.headers.contains_key(http::header::HOST) {
        if let Ok(host) = HeaderValue::from_str(&target.authority()) {
            parts.headers.insert(http::header::HOST, host);
        }
    }
    // A connection of our own speaks origin-form.
    parts.uri = parts
        .uri
        .path_and_query()
        .map(|p| Uri::from(p.clone()))
        .unwrap_or_else(|| Uri::from_static("/"));

    let tls = match state
        .upstream
        .dialer
        .tls(&target.host, target.port, Alpn::Http1Only)
        .await
    {
        Ok(tls) => tls,
        Err(e) => return upstream_failed(e),
    };
    let (mut sender, upstream_conn) =
        match hyper::client::conn::http1::handshake(TokioIo::new(tls)).await {
            Ok(pair) => pair,
            Err(e) => return upstream_failed(request_error(target, e)),
        };
    state.tasks.spawn(async move {
        if let Err(e) = upstream_conn.with_upgrades().await {
            tracing::debug!(error = %e, "upgrade upstream connection ended with an error");
        }
    });
    let timeout = state.upstream.request_timeout();
    let sent = tokio::time::timeout(
        timeout,
        sender.send_request(Request::from_parts(parts, body)),
    );
    let mut resp = match sent.await {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => return upstream_failed(request_error(target, e)),
        Err(_) => {
            let e = UpstreamError::ResponseTimeout {
                host: target.host.clone(),
                after: timeout,
            };
            return upstream_failed(e);
        }
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return to_client(resp);
    }
    let upstream_side = hyper::upgrade::on(&mut resp);
    // An upgraded connection (a WebSocket) may sit quiet as long as a tunnel.
    conn.activity
        .set_timeout(state.config().proxy.tunnel_idle_timeout);
    state.tasks.spawn(async move {
        match tokio::try_join!(client_side, upstream_side) {
            Ok((client_io, upstream_io)) => {
                let (mut a, mut b) = (TokioIo::new(client_io), TokioIo::new(upstream_io));
                match tokio::io::copy_bidirectional(&mut a, &mut b).await {
                    Ok((up, down)) => tracing::debug!(up, down, "upgraded connection closed"),
                    Err(e) => tracing::debug!(error = %e, "upgraded connection ended"),
                }
            }
            Err(e) => tracing::debug!(error = %e, "upgrade did not complete"),
        }
    });
    // The 101 keeps its Connection/Upgrade fields: they are what completes the upgrade.
    let (parts, _) = resp.into_parts();
    Response::from_parts(parts, empty_body())
}

fn request_error(target: &Target, e: hyper::Error) -> UpstreamError {
    UpstreamError::Request {
        host: target.host.clone(),
        cause: e.to_string(),
    }
}
