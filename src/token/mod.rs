//! The token path: a `POST /services/oauth2/token` on an intercepted host.
//!
//! Phases, in order: check the headers (can the body be read as a form?) → buffer at most
//! `max_token_body` → [`plan`](plan::plan) (pure: parse, rollout policy, rewrite) → check the
//! password against the set's verifier and [`gate`](plan::gate) the upgrade on it → send the
//! rewrite upstream → on failure, fall back to the original request → record one event when
//! the response has gone back. A password login forwarded as it came (observed, unmapped,
//! fallback) that Salesforce accepts teaches its set's verifier. Whatever grantshift cannot
//! understand is forwarded byte-for-byte as it came, and recorded as `skipped`. This module
//! does the I/O only; what happens is decided in [`plan`].

pub mod facts;
pub mod introspect;
pub mod plan;
pub mod revoke;
pub mod soap;
pub mod soap_plan;

use crate::body::{full_body, text_response, Body, Buffered, Limits, RecordOnEnd, Stopped};
use crate::broker::cache::{Entry, Flight, Key, KeyParts, Lookup};
use crate::config::TokenCacheConfig;
use crate::conn::Target;
use crate::forward::{to_client, upstream_failed};
use crate::hop_by_hop;
use crate::oauth::{self, SkipReason};
use crate::password::Password;
use crate::state::State;
use crate::telemetry::events::{Action, CacheUse, Event, UpstreamErrorInfo};
use crate::upstream::UpstreamError;
use crate::verifiers::SetKey;
use facts::read_facts;
use http::header::{ACCEPT, ACCEPT_ENCODING, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::request::Parts;
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use plan::{BodyRead, Forward, Plan, Rewrite, TokenRequest, UpstreamBody};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Serve one token request from `client`. Never fails: every problem becomes a response.
pub async fn handle(
    req: Request<Incoming>,
    target: &Target,
    client: SocketAddr,
    state: &Arc<State>,
) -> Response<Body> {
    let started = Instant::now();
    let config = state.config_snapshot();
    let mut event = Event::new(client, &target.host);
    let (mut parts, body) = req.into_parts();
    hop_by_hop::strip(&mut parts.headers);

    if let Some(skip) = plan::check_headers(&parts.headers, &config) {
        let resp = forward_original(&parts, body.boxed(), target, state).await;
        return finish(resp, record(event, skip), state, started, None).await;
    }
    let limits = body_limits(&config, state);
    let buffered = match Buffered::read(body, limits).await {
        Ok(buffered) => buffered,
        Err(e) => {
            // The client's upload broke off: nothing can be forwarded faithfully.
            tracing::debug!(error = %e, "token request body ended with an error");
            event.action = Action::Skipped;
            event.reason = Some("client_body_error".into());
            let resp = text_response(
                http::StatusCode::BAD_REQUEST,
                "grantshift: the request body could not be read",
            );
            return finish(Ok(resp), event, state, started, None).await;
        }
    };
    let request = TokenRequest {
        host: &target.host,
        query: parts.uri.query(),
        headers: &parts.headers,
        body: match buffered.stopped {
            None => BodyRead::Complete(&buffered.data),
            Some(Stopped::TooLarge) => BodyRead::Unread(SkipReason::TooLarge),
            Some(Stopped::Deadline) => BodyRead::Unread(SkipReason::BodyTimeout),
            Some(Stopped::Budget) => BodyRead::Unread(SkipReason::MemoryBudget),
        },
    };
    let (plan, mut login) = plan::plan(&request, &config, &state.faults);
    let password = login.password.take();
    // The credential set, for its verifier: as the report and the rollout bucket name it.
    let set = SetKey::new(
        login.client_id.as_deref().unwrap_or(""),
        login.username.as_deref().unwrap_or(""),
    );
    // Only a set the login names in full, with a password, can be learned.
    let learnable = match (&login.client_id, &login.username, &password) {
        (Some(_), Some(_), Some(password)) => Some((&set, password)),
        _ => None,
    };
    event.grant = login.grant;
    event.client_id = login.client_id;
    event.username = login.username;
    event
        .oversized
        .extend(login.oversized.into_iter().map(|(k, v)| (k.to_owned(), v)));
    let rewrite = match plan {
        Plan::Rewrite(rewrite) => rewrite,
        Plan::Forward(forward) => {
            if let Some(problem) = &forward.problem {
                tracing::error!(%problem, "cannot build the upgraded request; forwarding the original");
            }
            let learn = learnable.filter(|_| plan::teaches_verifier(forward.action));
            let resp = forward_original(&parts, buffered.into_body(), target, state).await;
            return finish(resp, record(event, forward), state, started, learn).await;
        }
    };

    let checked = state
        .verifiers
        .check(&set, password.as_ref(), &rewrite.verify)
        .await;
    event.password_check = Some(checked.password_check());
    if let Some(forward) = plan::gate(rewrite.verify.mode, checked) {
        // Not upgraded: Salesforce judges the password while it still can.
        let resp = forward_original(&parts, buffered.into_body(), target, state).await;
        return finish(resp, record(event, forward), state, started, None).await;
    }

    event.flow = Some(rewrite.flow.as_str().into());
    event.target_host = Some(rewrite.target_host.clone());
    // The token cache: a live answer for the same credentials is the client's, with no login
    // upstream; a miss takes the flight (others with the same key wait for it).
    let mut flight = None;
    if config.token_cache.enabled {
        let key = state.token_cache.key(&KeyParts {
            target_host: &rewrite.target_host,
            flow: rewrite.flow,
            shape: &rewrite.shape,
            accept: parts.headers.get(ACCEPT).map(HeaderValue::as_bytes),
            authorization: parts.headers.get(AUTHORIZATION).map(HeaderValue::as_bytes),
            accept_encoding: parts
                .headers
                .get(ACCEPT_ENCODING)
                .map(HeaderValue::as_bytes),
        });
        match state
            .token_cache
            .lookup(key, state.upstream.request_timeout())
            .await
        {
            Lookup::Hit { entry, .. } => {
                event.action = Action::Upgraded;
                event.cache = Some(CacheUse::Hit);
                return finish(Ok(cached_response(&entry)), event, state, started, None).await;
            }
            Lookup::Negative(negative) if rewrite.fallback => {
                // Salesforce refused these credentials moments ago: fall back without asking.
                event.cache = Some(CacheUse::Negative);
                event.upstream_error = Some(negative.info.clone());
                event.action = Action::Fallback;
                let resp = forward_original(&parts, buffered.into_body(), target, state).await;
                let learn = learnable.filter(|_| plan::teaches_verifier(event.action));
                return finish(resp, event, state, started, learn).await;
            }
            Lookup::Negative(_) => {
                // Without fallback the client gets Salesforce's own answer: ask.
                event.cache = Some(CacheUse::Miss);
                flight = Some((key, Flight::alone()));
            }
            Lookup::Miss(f) => {
                event.cache = Some(CacheUse::Miss);
                flight = Some((key, f));
            }
        }
    } else {
        event.cache = Some(CacheUse::Off);
    }
    // Made only now, on a miss: a JWT assertion is signed for a login that goes upstream.
    let body = match rewrite.upstream_body(unix_now()) {
        Ok(body) => body,
        Err(problem) => {
            tracing::error!(%problem, "cannot build the upgraded request; forwarding the original");
            // The flight ends unfilled: a waiter tries for itself.
            drop(flight);
            event.flow = None;
            event.target_host = None;
            event.cache = None;
            let resp = forward_original(&parts, buffered.into_body(), target, state).await;
            let event = record(event, Forward::skipped(SkipReason::Internal));
            return finish(resp, event, state, started, None).await;
        }
    };
    let (info, failed) = match send_upgraded(&parts, &rewrite, body, target, state).await {
        Ok(resp) if resp.status().is_success() => {
            event.action = Action::Upgraded;
            let resp = match flight {
                Some((key, flight)) => {
                    keep(
                        resp,
                        key,
                        flight,
                        &rewrite,
                        target,
                        &config.token_cache,
                        state,
                    )
                    .await
                }
                None => resp,
            };
            return finish(Ok(resp), event, state, started, None).await;
        }
        Ok(resp) => {
            let status = resp.status();
            let (resp, facts) = read_facts(resp, state.upstream.request_timeout()).await;
            let info = UpstreamErrorInfo {
                status: Some(status.as_u16()),
                error: facts.error,
                error_description: facts.error_description,
            };
            (info, Ok(resp))
        }
        Err(e) => {
            let error = match e.status() {
                http::StatusCode::GATEWAY_TIMEOUT => "timeout",
                _ => "connect_error",
            };
            let info = UpstreamErrorInfo {
                status: None,
                error: Some(error.into()),
                error_description: Some(e.to_string()),
            };
            (info, Err(e))
        }
    };
    // The credential set (never its secrets) and Salesforce's answer; absent values are left
    // out (an `Option` field records nothing when `None`).
    tracing::warn!(
        client_id = event.client_id.as_deref(),
        username = event.username.as_deref(),
        flow = rewrite.flow.as_str(),
        target_host = %rewrite.target_host,
        status = info.status,
        error = info.error.as_deref(),
        error_description = info.error_description.as_deref(),
        fallback = rewrite.fallback,
        "upgraded login failed"
    );
    if let Some((key, flight)) = flight {
        state
            .token_cache
            .failed(flight, key, &info, config.token_cache.negative_ttl);
    }
    event.upstream_error = Some(info);
    if rewrite.fallback {
        event.action = Action::Fallback;
        let resp = forward_original(&parts, buffered.into_body(), target, state).await;
        let learn = learnable.filter(|_| plan::teaches_verifier(event.action));
        finish(resp, event, state, started, learn).await
    } else {
        event.action = Action::Failed;
        finish(failed, event, state, started, None).await
    }
}

/// Keep a successful upgraded response in the token cache (when it can be read whole, in an
/// encoding grantshift can read, and names its access token), and give the client the same
/// bytes. Salesforce compresses it for clients that accept gzip: the token is read from a
/// decoded copy, the bytes kept are the ones that came. With `introspect`, a client-credentials
/// entry then learns its session's end in a task of its own ([`introspect`]).
async fn keep(
    resp: Response<Body>,
    key: Key,
    flight: Flight<'_>,
    rewrite: &Rewrite,
    target: &Target,
    config: &TokenCacheConfig,
    state: &Arc<State>,
) -> Response<Body> {
    match facts::read_whole(resp, state.upstream.request_timeout()).await {
        Ok((parts, body)) => {
            if let Some(plain) = facts::decoded(&parts.headers, &body)
                .map(|p| zeroize::Zeroizing::new(p.into_owned()))
            {
                let kept = state.token_cache.store(
                    flight,
                    key,
                    parts.status,
                    &parts.headers,
                    &body,
                    &plain,
                    config.serve_for(),
                    rewrite.credential,
                );
                if let (Some(entry), true) = (kept, config.introspect) {
                    let to = upgraded_target(rewrite, target);
                    introspect_later(entry, key, &plain, &rewrite.body, to, config, state);
                }
            }
            Response::from_parts(parts, full_body(body))
        }
        Err(resp) => resp,
    }
}

/// Start the introspection of a client-credentials entry just kept: stored with the configured
/// ttl, it is shortened when Salesforce answers, so no client waits for that answer. A JWT
/// bearer login (no client secret), or one whose secret is in `Authorization: Basic`, keeps
/// the configured ttl.
fn introspect_later(
    entry: Arc<Entry>,
    key: Key,
    plain: &[u8],
    upgraded: &UpstreamBody,
    to: Target,
    config: &TokenCacheConfig,
    state: &Arc<State>,
) {
    let UpstreamBody::Ready(body) = upgraded else {
        return;
    };
    let Some(ask) = crate::broker::cache::access_token(plain)
        .and_then(|token| introspect::Ask::from_body(token, body))
    else {
        return;
    };
    state.tasks.spawn(introspect::run(
        state.clone(),
        config.clone(),
        to,
        ask,
        key,
        entry,
    ));
}

/// The cached answer, as the upstream gave it.
fn cached_response(entry: &Entry) -> Response<Body> {
    let mut resp = Response::new(full_body(entry.body()));
    *resp.status_mut() = entry.status;
    *resp.headers_mut() = entry.headers.clone();
    resp
}

/// How a token endpoint's request body is read: at most `max_token_body`, within
/// `token_body_timeout`, out of the shared `token_body_budget`.
pub(crate) fn body_limits<'a>(config: &crate::config::Config, state: &'a State) -> Limits<'a> {
    Limits {
        max: config.proxy.max_token_body,
        deadline: Some(tokio::time::Instant::now() + config.proxy.token_body_timeout),
        budget: Some(&state.token_bodies),
    }
}

fn record(mut event: Event, forward: Forward) -> Event {
    event.action = forward.action;
    event.reason = forward.reason.map(str::to_owned);
    event
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The upgraded request: same headers (Authorization included, as sent) but the body, its
/// length and type, and the host all follow the target; no query string (no secret in a URL).
async fn send_upgraded(
    original: &Parts,
    rewrite: &Rewrite,
    body: String,
    target: &Target,
    state: &State,
) -> Result<Response<Body>, UpstreamError> {
    let to = upgraded_target(rewrite, target);
    let uri = Uri::builder()
        .scheme("https")
        .authority(to.authority())
        .path_and_query(oauth::TOKEN_PATH)
        .build()
        .map_err(|e| UpstreamError::Request {
            host: to.host.clone(),
            cause: e.to_string(),
        })?;
    let mut req = Request::new(full_body(body));
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = uri;
    *req.headers_mut() = original.headers.clone();
    let headers = req.headers_mut();
    // A user-set Content-Length would win over the new body's size.
    headers.remove(CONTENT_LENGTH);
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    if headers.contains_key(HOST) {
        // The old Host would name the old host (over HTTP/2 the pool moves it to :authority).
        if let Ok(host) = HeaderValue::from_str(&to.authority()) {
            headers.insert(HOST, host);
        }
    }
    let resp = state.upstream.send(req, &to.host).await?;
    Ok(to_client(resp))
}

/// Where the upgraded request goes: the target host, on the original port when it is the
/// original host (else 443).
fn upgraded_target(rewrite: &Rewrite, target: &Target) -> Target {
    let port = if rewrite.target_host.eq_ignore_ascii_case(&target.host) {
        target.port
    } else {
        443
    };
    Target {
        host: rewrite.target_host.clone(),
        port,
    }
}

/// The original request, unchanged but for hop-by-hop fields, to the original host.
async fn forward_original(
    parts: &Parts,
    body: Body,
    target: &Target,
    state: &State,
) -> Result<Response<Body>, UpstreamError> {
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = target.uri(&parts.uri).map_err(|e| UpstreamError::Request {
        host: target.host.clone(),
        cause: e.to_string(),
    })?;
    *req.headers_mut() = parts.headers.clone();
    *req.extensions_mut() = parts.extensions.clone();
    let resp = state.upstream.send(req, &target.host).await?;
    Ok(to_client(resp))
}

/// Fill the event from the response the client gets, and send that response with the event
/// attached: it is recorded once the body has gone back. With `learn` (the original password
/// login, forwarded as it came), a token response that names the user (Salesforce accepted
/// the password) makes the password the set's verifier first.
async fn finish(
    resp: Result<Response<Body>, UpstreamError>,
    mut event: Event,
    state: &State,
    started: Instant,
    learn: Option<(&SetKey, &Password)>,
) -> Response<Body> {
    let resp = match resp {
        Ok(resp) if resp.status().is_success() => {
            let (resp, facts) = read_facts(resp, state.upstream.request_timeout()).await;
            if let (Some((set, password)), Some(_)) = (learn, &facts.user_id) {
                state.verifiers.learn(set, password).await;
            }
            event.org_id = facts.org_id;
            event.user_id = facts.user_id;
            event.instance_url = facts.instance_url;
            resp
        }
        Ok(resp) => resp,
        Err(e) => upstream_failed(e),
    };
    send_with_event(resp, event, state, started)
}

/// Log the event's line and send `resp` with the event attached: it is recorded once the
/// body has gone back.
fn send_with_event(
    resp: Response<Body>,
    mut event: Event,
    state: &State,
    started: Instant,
) -> Response<Body> {
    event.status = resp.status().as_u16();
    // The event's fields but `ts`, `latency_ms` (known once the body has gone back) and the
    // response facts; like the event, absent ones are left out (`None` records nothing).
    tracing::info!(
        host = %event.host,
        grant = event.grant.as_deref(),
        client_id = event.client_id.as_deref(),
        username = event.username.as_deref(),
        action = event.action.as_str(),
        flow = event.flow.as_deref(),
        target_host = event.target_host.as_deref(),
        status = event.status,
        reason = event.reason.as_deref(),
        password_check = event.password_check.map(|c| c.as_str()),
        cache = event.cache.map(|c| c.as_str()),
        "token request"
    );
    let (parts, body) = resp.into_parts();
    Response::from_parts(
        parts,
        RecordOnEnd::wrap(body, event, state.events.clone(), started),
    )
}
