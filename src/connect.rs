//! The HTTP/1.1 proxy front: `CONNECT host:port` becomes a blind tunnel or an interception;
//! absolute-form `http://` requests are forwarded unchanged. Anything else is a client error.

use crate::access;
use crate::body::{empty_body, text_response, Body};
use crate::conn::{canonical_host, http1_server, plain_request_span, ClientConn, Target};
use crate::forward::{forward, upstream_failed};
use crate::hop_by_hop;
use crate::idle::IdleTimeout;
use crate::state::State;
use crate::telemetry::metrics::Kind;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::Instrument;

/// Serve one client connection to the proxy port until it closes (or shutdown drains it).
/// Runs in the connection's span.
pub async fn serve_front<IO>(tcp: IO, conn: Arc<ClientConn>, state: Arc<State>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = state.config_snapshot();
    let io = IdleTimeout::new(tcp, conn.activity.clone());
    let svc_state = state.clone();
    // HTTP/1.1: hyper polls each request's future inside the connection's, so it runs in the
    // connection's span (this function's caller instruments the connection).
    let svc = hyper::service::service_fn(move |req| front(req, conn.clone(), svc_state.clone()));
    // `with_upgrades` is what lets a CONNECT's 200 hand the socket over to
    // `hyper::upgrade::on`; without it the upgrade silently never happens.
    let served = http1_server(&config.proxy)
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    drop(config);
    let ended = state
        .tasks
        .serve_until_drained(served, |c| c.graceful_shutdown())
        .await;
    if let Err(e) = ended {
        tracing::debug!(error = %e, "proxy connection ended with an error");
    }
}

async fn front(
    req: Request<Incoming>,
    conn: Arc<ClientConn>,
    state: Arc<State>,
) -> Result<Response<Body>, Infallible> {
    let is_connect = req.method() == Method::CONNECT;
    let mut resp = route(req, conn, state).await;
    if is_connect && !resp.status().is_success() {
        // Bytes a client sent right behind its CONNECT were meant for the tunnel: they must
        // not be read as proxy requests once the tunnel is refused.
        resp.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    Ok(resp)
}

async fn route(req: Request<Incoming>, conn: Arc<ClientConn>, state: Arc<State>) -> Response<Body> {
    {
        let config = state.config();
        if !access::client_allowed(&config.proxy.allow_clients, conn.addr.ip()) {
            tracing::info!("refused: client address not in proxy.allow_clients");
            return text_response(
                StatusCode::FORBIDDEN,
                "grantshift: this client address may not use the proxy",
            );
        }
        if let Some(auth) = &config.proxy.auth_resolved {
            if !auth.accepts(req.headers()) {
                tracing::info!("proxy authentication required or failed");
                return challenge();
            }
        }
    }
    if req.method() == Method::CONNECT {
        return connect(req, conn, state).await;
    }
    if req.uri().scheme() == Some(&http::uri::Scheme::HTTP) && req.uri().authority().is_some() {
        let span = plain_request_span(req.method(), req.uri());
        return forward_plain(req, &state).instrument(span).await;
    }
    text_response(
        StatusCode::BAD_REQUEST,
        "grantshift: this is a forward proxy: send CONNECT host:port, or an absolute http:// URI",
    )
}

/// `CONNECT host:port`: refuse ports outside `allowed_connect_ports`; intercept listed hosts;
/// blind-tunnel the rest (dialled before answering, so an unreachable host gets a 502 and a
/// destination the policy refuses a 403).
async fn connect(
    req: Request<Incoming>,
    conn: Arc<ClientConn>,
    state: Arc<State>,
) -> Response<Body> {
    let Some((host, port)) = req
        .uri()
        .authority()
        .and_then(|a| Some((canonical_host(a.host()), a.port_u16()?)))
    else {
        return text_response(
            StatusCode::BAD_REQUEST,
            "grantshift: CONNECT needs host:port",
        );
    };
    let config = state.config();
    if !config.proxy.allowed_connect_ports.contains(&port) {
        tracing::info!(%host, port, "CONNECT refused: port not allowed");
        return port_refused(
            &host,
            port,
            "proxy.allowed_connect_ports",
            &config.proxy.allowed_connect_ports,
        );
    }
    let intercept = config.intercept.hosts.matches(&host);
    drop(config);

    let target = Target { host, port };
    if intercept {
        conn.became("intercept", &target.host);
        tracing::debug!(port, "CONNECT: intercepting");
        let task_state = state.clone();
        state.tasks.spawn(async move {
            match hyper::upgrade::on(req).await {
                Ok(upgraded) => {
                    crate::mitm::serve_intercepted(
                        TokioIo::new(upgraded),
                        Some(target),
                        conn,
                        task_state,
                    )
                    .await
                }
                Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
            }
        });
        return Response::new(empty_body());
    }

    let upstream = match state.upstream.dialer.tcp(&target.host, port).await {
        Ok(tcp) => tcp,
        Err(e) => return upstream_failed(e),
    };
    conn.became("tunnel", &target.host);
    tracing::debug!(port, "CONNECT: tunnelling");
    let active = state.metrics.open(Kind::Tunnel);
    // A tunnel may sit quiet much longer than a request; bytes either way count as activity.
    conn.activity
        .set_timeout(state.config().proxy.tunnel_idle_timeout);
    state.tasks.spawn(async move {
        let _active = active;
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => crate::tunnel::run(upgraded, upstream, conn.activity.clone()).await,
            Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
        }
    });
    Response::new(empty_body())
}

/// Absolute-form `http://host/path`: refused outside `allowed_http_ports`, else forwarded
/// unchanged but for hop-by-hop fields and a `Host` made from the target (no rewriting here:
/// Salesforce is HTTPS-only). The dialer applies the destination policy.
async fn forward_plain(req: Request<Incoming>, state: &State) -> Response<Body> {
    let host = canonical_host(req.uri().host().unwrap_or_default());
    let port = req.uri().port_u16().unwrap_or(80);
    {
        let config = state.config();
        if !config.proxy.allowed_http_ports.contains(&port) {
            tracing::info!(port, "http:// refused: port not allowed");
            return port_refused(
                &host,
                port,
                "proxy.allowed_http_ports",
                &config.proxy.allowed_http_ports,
            );
        }
    }
    let _active = state.metrics.open(Kind::Http);
    let (mut parts, body) = req.into_parts();
    hop_by_hop::strip(&mut parts.headers);
    // RFC 9112 §3.2.2: the Host of an absolute-form request is made from its target, never
    // forwarded as received (which could name another host, or be sent twice).
    let name = if host.contains(':') {
        format!("[{host}]") // an IPv6 literal
    } else {
        host.clone()
    };
    let authority = match parts.uri.port_u16() {
        Some(port) => format!("{name}:{port}"),
        None => name,
    };
    match http::HeaderValue::from_str(&authority) {
        Ok(value) => {
            parts.headers.insert(http::header::HOST, value);
        }
        Err(_) => {
            parts.headers.remove(http::header::HOST);
        }
    }
    forward(Request::from_parts(parts, body.boxed()), &host, state).await
}

/// `403` for a port outside the list `key` names. Every port list applies, whether the
/// host has a `connect_to` entry or not: it is what clients may ask for.
fn port_refused(host: &str, port: u16, key: &str, allowed: &[u16]) -> Response<Body> {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    text_response(
        StatusCode::FORBIDDEN,
        &format!(
            "grantshift: destination {host}:{port} is not allowed (port {port}; see {key} = {allowed:?})"
        ),
    )
}

/// `407 Proxy Authentication Required` with the challenge clients answer.
fn challenge() -> Response<Body> {
    let mut resp = text_response(
        StatusCode::PROXY_AUTHENTICATION_REQUIRED,
        "grantshift: proxy authentication required",
    );
    resp.headers_mut().insert(
        http::header::PROXY_AUTHENTICATE,
        http::HeaderValue::from_static("Basic realm=\"grantshift\", charset=\"UTF-8\""),
    );
    resp
}
