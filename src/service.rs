//! The per-request path on intercepted (decrypted) connections: build the upstream request
//! for the CONNECT target, strip hop-by-hop fields, forward through the shared client, and
//! stream the response back. `Upgrade` requests (WebSocket) get their own HTTP/1.1 connection.

use crate::connect::ClientConn;
use crate::hop_by_hop;
use crate::server::Shared;
use crate::upstream::{Alpn, UpstreamError};
use crate::{empty_body, Body};
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

/// Where an intercepted connection's requests go: the CONNECT authority.
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

/// Serve one decrypted request. Never fails: every problem becomes a response.
pub async fn handle(
    req: Request<Incoming>,
    target: Arc<Target>,
    conn: Arc<ClientConn>,
    shared: Arc<Shared>,
) -> Result<Response<Body>, Infallible> {
    let client = conn.addr;
    shared.faults.inject_for("request", &target.host);
    if let Some(protocol) = hop_by_hop::upgrade_protocol(req.headers()) {
        return Ok(forward_upgrade(req, protocol, &target, &conn, &shared).await);
    }
    if crate::oauth::is_token_request(req.method(), req.uri().path()) {
        return Ok(crate::upgrade::handle(req, &target, client, &shared).await);
    }
    let (mut parts, body) = req.into_parts();
    parts.uri = match target.uri(&parts.uri) {
        Ok(uri) => uri,
        Err(e) => {
            return Ok(crate::text_response(
                StatusCode::BAD_REQUEST,
                &format!("grantshift: bad request target: {e}"),
            ))
        }
    };
    hop_by_hop::strip(&mut parts.headers);
    let req = Request::from_parts(parts, body.boxed());
    Ok(match shared.upstream.send(req, &target.host).await {
        Ok(resp) => to_client(resp),
        Err(e) => upstream_failed(e, client),
    })
}

/// The upstream response as the client gets it: hop-by-hop fields stripped, body streamed.
pub fn to_client(resp: Response<Incoming>) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    hop_by_hop::strip(&mut parts.headers);
    parts.version = http::Version::HTTP_11;
    Response::from_parts(parts, body.boxed())
}

/// Log an upstream failure and turn it into the client's 502/504.
pub fn upstream_failed(e: UpstreamError, client: SocketAddr) -> Response<Body> {
    tracing::warn!(%client, status = e.status().as_u16(), error = %e, "upstream request failed");
    e.to_response()
}

/// An HTTP/1.1 `Upgrade` request (WebSocket and friends): forwarded on a dedicated HTTP/1.1
/// upstream connection; on `101` both sides are joined and bytes flow both ways untouched.
async fn forward_upgrade(
    mut req: Request<Incoming>,
    protocol: HeaderValue,
    target: &Target,
    conn: &ClientConn,
    shared: &Arc<Shared>,
) -> Response<Body> {
    let client = conn.addr;
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

    let tls = match shared
        .upstream
        .dialer
        .tls(&target.host, target.port, Alpn::Http1Only)
        .await
    {
        Ok(tls) => tls,
        Err(e) => return upstream_failed(e, client),
    };
    let (mut sender, upstream_conn) =
        match hyper::client::conn::http1::handshake(TokioIo::new(tls)).await {
            Ok(pair) => pair,
            Err(e) => return upstream_failed(request_error(target, e), client),
        };
    shared.spawn(async move {
        if let Err(e) = upstream_conn.with_upgrades().await {
            tracing::debug!(error = %e, "upgrade upstream connection ended with an error");
        }
    });
    let timeout = shared.upstream.request_timeout();
    let sent = tokio::time::timeout(
        timeout,
        sender.send_request(Request::from_parts(parts, body)),
    );
    let mut resp = match sent.await {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => return upstream_failed(request_error(target, e), client),
        Err(_) => {
            let e = UpstreamError::ResponseTimeout {
                host: target.host.clone(),
                after: timeout,
            };
            return upstream_failed(e, client);
        }
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return to_client(resp);
    }
    let upstream_side = hyper::upgrade::on(&mut resp);
    // An upgraded connection (a WebSocket) may sit quiet as long as a tunnel.
    conn.activity
        .set_timeout(shared.config().proxy.tunnel_idle_timeout);
    let host = target.host.clone();
    shared.spawn(async move {
        match tokio::try_join!(client_side, upstream_side) {
            Ok((client_io, upstream_io)) => {
                let (mut a, mut b) = (TokioIo::new(client_io), TokioIo::new(upstream_io));
                match tokio::io::copy_bidirectional(&mut a, &mut b).await {
                    Ok((up, down)) => {
                        tracing::debug!(%client, %host, up, down, "upgraded connection closed")
                    }
                    Err(e) => {
                        tracing::debug!(%client, %host, error = %e, "upgraded connection ended")
                    }
                }
            }
            Err(e) => tracing::debug!(%client, %host, error = %e, "upgrade did not complete"),
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
