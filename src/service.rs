//! One decrypted request on an intercepted connection, dispatched by what it is: an HTTP
//! `Upgrade` ([`crate::websocket`]), a token request ([`crate::token`]), a SOAP call
//! ([`crate::token::soap`]: `login()` is upgraded), or anything else,
//! forwarded unchanged to the connection's target ([`crate::forward`]).

use crate::body::{text_response, Body};
use crate::conn::{request_span, ClientConn, Target};
use crate::state::State;
use crate::{forward, hop_by_hop, oauth, token, websocket};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::convert::Infallible;
use std::sync::Arc;
use tracing::Instrument;

/// Serve one decrypted request. Never fails: every problem becomes a response.
pub async fn handle(
    req: Request<Incoming>,
    target: Arc<Target>,
    conn: Arc<ClientConn>,
    state: Arc<State>,
) -> Result<Response<Body>, Infallible> {
    let span = request_span(&conn, req.method(), req.uri());
    let to_http2 = req.version() == http::Version::HTTP_2;
    let resp = dispatch(req, &target, &conn, &state)
        .instrument(span.clone())
        .await;
    if to_http2 {
        if let Some(codings) = hop_by_hop::transfer_codings(resp.headers()) {
            // hyper would drop the field and send the coded bytes as the content.
            let _enter = span.enter();
            tracing::warn!(codings = %codings.join(", "), "response with a transfer coding cannot go back over HTTP/2");
            return Ok(text_response(
                StatusCode::BAD_GATEWAY,
                &format!(
                    "grantshift: the upstream answered with Transfer-Encoding {}, which HTTP/2 cannot carry",
                    codings.join(", ")
                ),
            ));
        }
    }
    Ok(resp)
}

async fn dispatch(
    req: Request<Incoming>,
    target: &Target,
    conn: &ClientConn,
    state: &Arc<State>,
) -> Response<Body> {
    state.faults.inject_for("request", &target.host);
    if let Some(protocol) = hop_by_hop::upgrade_protocol(req.headers()) {
        return websocket::forward(req, protocol, target, conn, state).await;
    }
    if oauth::is_token_request(req.method(), req.uri().path()) {
        return token::handle(req, target, conn.addr, state).await;
    }
    if token::soap::applies(&req) {
        return token::soap::handle(req, target, conn.addr, state).await;
    }
    if token::revoke::applies(&req, state) {
        return token::revoke::handle(req, target, conn.addr, state).await;
    }
    let (mut parts, body) = req.into_parts();
    let carried = token::revoke::carried_token(&parts.headers, state);
    parts.uri = match target.uri(&parts.uri) {
        Ok(uri) => uri,
        Err(e) => {
            return text_response(
                StatusCode::BAD_REQUEST,
                &format!("grantshift: bad request target: {e}"),
            )
        }
    };
    hop_by_hop::strip(&mut parts.headers);
    let resp = forward::forward(
        Request::from_parts(parts, body.boxed()),
        &target.host,
        state,
    )
    .await;
    token::revoke::after_api_call(carried, resp.status(), state);
    resp
}
