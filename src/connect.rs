//! The HTTP/1.1 proxy front: `CONNECT host:port` becomes a blind tunnel or an interception;
//! absolute-form `http://` requests are forwarded through the shared client. Anything else
//! is a client error.

use crate::access;
use crate::idle::{Activity, IdleTimeout};
use crate::server::Shared;
use crate::service::{self, Target};
use crate::telemetry::metrics::Kind;
use crate::{empty_body, hop_by_hop, text_response, Body};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::OwnedSemaphorePermit;

/// What every request and tunnel of one client connection shares: who the client is, the
/// connection's idle clock, and its slot under `max_connections` (released when the last
/// holder, possibly a tunnel, is gone).
pub struct ClientConn {
    pub addr: SocketAddr,
    pub activity: Arc<Activity>,
    _slot: Option<OwnedSemaphorePermit>,
}

impl ClientConn {
    pub fn new(
        addr: SocketAddr,
        idle: std::time::Duration,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Arc<ClientConn> {
        Arc::new(ClientConn {
            addr,
            activity: Activity::new(idle),
            _slot: slot,
        })
    }
}

/// Serve one client connection to the proxy port until it closes (or shutdown drains it).
pub async fn serve_front<IO>(
    tcp: IO,
    client: SocketAddr,
    slot: Option<OwnedSemaphorePermit>,
    shared: Arc<Shared>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = shared.config_snapshot();
    let conn = ClientConn::new(client, config.proxy.idle_timeout, slot);
    let io = IdleTimeout::new(tcp, conn.activity.clone());
    let svc_shared = shared.clone();
    let svc_conn = conn.clone();
    let svc =
        hyper::service::service_fn(move |req| front(req, svc_conn.clone(), svc_shared.clone()));
    // `with_upgrades` is what lets a CONNECT's 200 hand the socket over to
    // `hyper::upgrade::on`; without it the upgrade silently never happens.
    let conn = hyper::server::conn::http1::Builder::new()
        .preserve_header_case(true)
        .timer(TokioTimer::new())
        .header_read_timeout(config.proxy.header_read_timeout)
        .max_buf_size(config.proxy.max_header_bytes)
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    drop(config);
    let ended = shared
        .serve_until_drained(conn, |conn| conn.graceful_shutdown())
        .await;
    if let Err(e) = ended {
        tracing::debug!(%client, error = %e, "proxy connection ended with an error");
    }
}

async fn front(
    req: Request<Incoming>,
    conn: Arc<ClientConn>,
    shared: Arc<Shared>,
) -> Result<Response<Body>, Infallible> {
    let client = conn.addr;
    {
        let config = shared.config();
        if !access::client_allowed(&config.proxy.allow_clients, client.ip()) {
            tracing::info!(%client, "refused: client address not in proxy.allow_clients");
            return Ok(text_response(
                StatusCode::FORBIDDEN,
                "grantshift: this client address may not use the proxy",
            ));
        }
        if let Some(auth) = &config.proxy.auth_resolved {
            if !auth.accepts(req.headers()) {
                tracing::info!(%client, "proxy authentication required or failed");
                return Ok(access::challenge());
            }
        }
    }
    if req.method() == Method::CONNECT {
        return Ok(connect(req, conn, shared).await);
    }
    if req.uri().scheme() == Some(&http::uri::Scheme::HTTP) && req.uri().authority().is_some() {
        return Ok(forward_plain(req, client, &shared).await);
    }
    Ok(text_response(
        StatusCode::BAD_REQUEST,
        "grantshift: this is a forward proxy: send CONNECT host:port, or an absolute http:// URI",
    ))
}

/// `CONNECT host:port`: refuse ports outside `allowed_connect_ports`; intercept listed hosts;
/// blind-tunnel the rest (dialled before answering, so an unreachable host gets a 502).
async fn connect(
    req: Request<Incoming>,
    conn: Arc<ClientConn>,
    shared: Arc<Shared>,
) -> Response<Body> {
    let client = conn.addr;
    let Some((host, port)) = req.uri().authority().and_then(|a| {
        Some((
            a.host()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            a.port_u16()?,
        ))
    }) else {
        return text_response(
            StatusCode::BAD_REQUEST,
            "grantshift: CONNECT needs host:port",
        );
    };
    let config = shared.config();
    if !config.proxy.allowed_connect_ports.contains(&port) {
        tracing::info!(%client, %host, port, "CONNECT refused: port not allowed");
        return text_response(
            StatusCode::FORBIDDEN,
            &format!(
                "grantshift: CONNECT to port {port} is not allowed (proxy.allowed_connect_ports = {:?})",
                config.proxy.allowed_connect_ports
            ),
        );
    }
    let intercept = config.intercept.hosts.matches(&host);
    drop(config);

    let target = Target { host, port };
    if intercept {
        tracing::debug!(%client, host = %target.host, port, "CONNECT: intercepting");
        let task_shared = shared.clone();
        shared.spawn(async move {
            match hyper::upgrade::on(req).await {
                Ok(upgraded) => {
                    crate::mitm::serve_intercepted(
                        TokioIo::new(upgraded),
                        Some(target),
                        conn,
                        task_shared,
                    )
                    .await
                }
                Err(e) => tracing::debug!(%client, error = %e, "CONNECT upgrade failed"),
            }
        });
        return Response::new(empty_body());
    }

    let upstream = match shared.upstream.dialer.tcp(&target.host, port).await {
        Ok(tcp) => tcp,
        Err(e) => return service::upstream_failed(e, client),
    };
    tracing::debug!(%client, host = %target.host, port, "CONNECT: tunnelling");
    let active = shared.metrics.open(Kind::Tunnel);
    // A tunnel may sit quiet much longer than a request; bytes either way count as activity.
    conn.activity
        .set_timeout(shared.config().proxy.tunnel_idle_timeout);
    shared.spawn(async move {
        let _active = active;
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let activity = conn.activity.clone();
                crate::tunnel::run(upgraded, upstream, activity, client, target.host).await
            }
            Err(e) => tracing::debug!(%client, error = %e, "CONNECT upgrade failed"),
        }
    });
    Response::new(empty_body())
}

/// Absolute-form `http://host/path`: forwarded unchanged but for hop-by-hop fields (no
/// rewriting here: Salesforce is HTTPS-only).
async fn forward_plain(
    req: Request<Incoming>,
    client: SocketAddr,
    shared: &Shared,
) -> Response<Body> {
    let host = req.uri().host().unwrap_or_default().to_string();
    let _active = shared.metrics.open(Kind::Http);
    let (mut parts, body) = req.into_parts();
    hop_by_hop::strip(&mut parts.headers);
    let req = Request::from_parts(parts, body.boxed());
    match shared.upstream.send(req, &host).await {
        Ok(resp) => service::to_client(resp),
        Err(e) => service::upstream_failed(e, client),
    }
}
