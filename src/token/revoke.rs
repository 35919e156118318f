//! A token revocation (`/services/oauth2/revoke`) on an intercepted host, with the token cache
//! on and `shield_revoke` set: a token grantshift handed out from its cache is shared by
//! every caller with the same credentials, so one caller's logout (jsforce's `logout()`) would
//! end the session for all of them. Such a revoke is answered here with 200, and only
//! grantshift's entry goes: the next login gets a fresh session, the others keep theirs.
//! Any other revoke goes to Salesforce unchanged.

use crate::body::{full_body, Body, Buffered, RecordOnEnd};
use crate::broker::cache::Eviction;
use crate::conn::Target;
use crate::forward;
use crate::hop_by_hop;
use crate::oauth;
use crate::state::State;
use crate::telemetry::events::{Action, Event};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::time::Instant;

/// Serve one revocation. Never fails: every problem becomes a response.
pub async fn handle(
    req: Request<Incoming>,
    target: &Target,
    client: SocketAddr,
    state: &State,
) -> Response<Body> {
    let started = Instant::now();
    let config = state.config_snapshot();
    let (mut parts, body) = req.into_parts();
    hop_by_hop::strip(&mut parts.headers);
    let limits = super::body_limits(&config, state);
    let body = match Buffered::read(body, limits).await {
        Ok(buffered) => {
            let token = match buffered.rest {
                None => oauth::revoked_token(parts.uri.query(), &buffered.data),
                Some(_) => None,
            };
            if let Some(token) = token.map(zeroize::Zeroizing::new) {
                if state.token_cache.evict_token(&token, Eviction::Revoked) {
                    tracing::info!("revoke of a shared cached session answered locally");
                    let mut event = Event::new(client, &target.host);
                    event.action = Action::RevokeShielded;
                    event.status = StatusCode::OK.as_u16();
                    let resp = Response::new(full_body(bytes::Bytes::new()));
                    let (head, body) = resp.into_parts();
                    return Response::from_parts(
                        head,
                        RecordOnEnd::wrap(body, event, state.events.clone(), started),
                    );
                }
            }
            buffered.into_body()
        }
        Err(e) => {
            tracing::debug!(error = %e, "revoke request body ended with an error");
            return crate::body::text_response(
                StatusCode::BAD_REQUEST,
                "grantshift: the request body could not be read",
            );
        }
    };
    parts.uri = match target.uri(&parts.uri) {
        Ok(uri) => uri,
        Err(e) => {
            return crate::body::text_response(
                StatusCode::BAD_REQUEST,
                &format!("grantshift: bad request target: {e}"),
            )
        }
    };
    forward::forward(Request::from_parts(parts, body), &target.host, state).await
}

/// Is this request one [`handle`] should see? Only while the cache holds something, so that
/// with an empty cache a revoke streams through like any request.
pub fn applies(req: &Request<Incoming>, state: &State) -> bool {
    oauth::is_revoke_request(req.method(), req.uri().path())
        && state.config().token_cache.enabled
        && state.config().token_cache.shield_revoke
        && !state.token_cache.is_empty()
}

/// An API call's response: a 401 to a call that carried a token from the cache means the
/// session ended at Salesforce (timed out, revoked elsewhere): the entry goes, and the next
/// login gets a fresh one.
pub fn after_api_call(carried: Option<http::HeaderMap>, status: StatusCode, state: &State) {
    if status != StatusCode::UNAUTHORIZED {
        return;
    }
    if let Some(token) = carried.as_ref().and_then(oauth::bearer_token) {
        if state.token_cache.evict_token(token, Eviction::Unauthorized) {
            tracing::info!(
                "a cached session was refused by Salesforce (401); dropped from the token cache"
            );
        }
    }
}

/// The `Authorization` fields of an API call, kept (reference-counted copies, no new string)
/// only while the cache could hold its token; read only if the answer is a 401.
pub fn carried_token(headers: &http::HeaderMap, state: &State) -> Option<http::HeaderMap> {
    if state.token_cache.is_empty() || !headers.contains_key(http::header::AUTHORIZATION) {
        return None;
    }
    let mut carried = http::HeaderMap::new();
    for value in headers.get_all(http::header::AUTHORIZATION) {
        carried.append(http::header::AUTHORIZATION, value.clone());
    }
    Some(carried)
}
