//! The SOAP path: a `POST` to `/services/Soap/{u|c}/NN.0[/…]` on an intercepted host
//! (docs/operating.md, "SOAP login()").
//!
//! A `login()` is upgraded as an OAuth password grant is: [`plan`](super::soap_plan::plan)
//! (rollout, the `[[credentials]]` entry for the username) → the password checked against the
//! set's verifier (always required) → a token for the entry's app from its My Domain (through
//! the token cache) → the identity URL and a `getUserInfo()` call made with it → a
//! `loginResponse` built from them. On any failure the original `login()` is replayed
//! unchanged (fallback) or the client gets a `LoginFault`. A `logout()` of a session the token
//! cache handed out is answered here. Every other SOAP call, and whatever cannot be read, goes
//! to Salesforce byte-for-byte.

use super::facts::{self, read_with};
use super::plan::{gate, teaches_verifier, Forward};
use super::soap_plan::{self, Identity, SoapPlan, SoapRewrite, TokenFacts, GRANT, SET_CLIENT_ID};
use super::{body_limits, forward_original, record, send_with_event, unix_now};
use crate::body::{full_body, Body, Buffered, RecordOnEnd};
use crate::broker::cache::{Eviction, KeyParts, Lookup};
use crate::conn::Target;
use crate::forward::{to_client, upstream_failed};
use crate::hop_by_hop;
use crate::oauth::{self, SkipReason};
use crate::password::Password;
use crate::soap::{self, Api, LoginAnswer, NotLogin, SoapLogin};
use crate::state::State;
use crate::telemetry::events::{within_bound, Action, CacheUse, Event, UpstreamErrorInfo};
use crate::upstream::UpstreamError;
use crate::verifiers::SetKey;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use zeroize::Zeroizing;

/// `text/xml; charset=utf-8`, as Salesforce answers SOAP calls.
const SOAP_CONTENT_TYPE: &str = "text/xml; charset=utf-8";

/// Is this a request [`handle`] should see: a `POST` to a SOAP API endpoint in SOAP 1.1
/// (`text/xml`)? Anything else streams through as any request does.
pub fn applies(req: &Request<Incoming>) -> bool {
    req.method() == Method::POST
        && soap::soap_endpoint(req.uri().path()).is_some()
        && req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|ct| ct.split(';').next())
            .is_some_and(|media| media.trim().eq_ignore_ascii_case("text/xml"))
}

/// Serve one SOAP call. Never fails: every problem becomes a response.
pub async fn handle(
    req: Request<Incoming>,
    target: &Target,
    client: SocketAddr,
    state: &Arc<State>,
) -> Response<Body> {
    let started = Instant::now();
    let config = state.config_snapshot();
    let (mut parts, body) = req.into_parts();
    hop_by_hop::strip(&mut parts.headers);
    // A coded body, or one larger than any login: not read, streamed on.
    if oauth::soap_body_is_readable(&parts.headers, config.proxy.max_token_body).is_err() {
        return pass(&parts, body.boxed(), target, state).await;
    }
    let buffered = match Buffered::read(body, body_limits(&config, state)).await {
        Ok(buffered) => buffered,
        Err(e) => {
            tracing::debug!(error = %e, "SOAP request body ended with an error");
            return crate::body::text_response(
                StatusCode::BAD_REQUEST,
                "grantshift: the request body could not be read",
            );
        }
    };
    if buffered.stopped.is_some() {
        // Larger or slower than any login: an API call, streamed on as it comes.
        return pass(&parts, buffered.into_body(), target, state).await;
    }
    let path = parts.uri.path().to_owned();
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let login = match soap::parse_login(&path, content_type.as_deref(), &buffered.data) {
        Ok(login) => login,
        Err(NotLogin::Unparsable(reason)) => {
            let mut event = Event::new(client, &target.host);
            event.grant = Some(GRANT.into());
            event.action = Action::Skipped;
            event.reason = Some(reason.into());
            let resp = forward_original(&parts, buffered.into_body(), target, state).await;
            return finish(resp, event, state, started, None).await;
        }
        Err(NotLogin::NotSoap | NotLogin::OtherCall) => {
            if let Some(resp) = shield_logout(
                &path,
                content_type.as_deref(),
                &buffered.data,
                target,
                client,
                state,
                started,
            ) {
                return resp;
            }
            return pass(&parts, buffered.into_body(), target, state).await;
        }
    };
    upgrade(login, parts, buffered, target, client, state, started).await
}

/// A call that is not a login, forwarded unchanged.
async fn pass(parts: &Parts, body: Body, target: &Target, state: &Arc<State>) -> Response<Body> {
    match forward_original(parts, body, target, state).await {
        Ok(resp) => resp,
        Err(e) => upstream_failed(e),
    }
}

/// A `logout()` of a session the token cache handed out, with `shield_revoke` on: answered
/// here, and only grantshift's entry goes, so the other callers keep the session.
fn shield_logout(
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
    target: &Target,
    client: SocketAddr,
    state: &Arc<State>,
    started: Instant,
) -> Option<Response<Body>> {
    let config = state.config();
    if !config.token_cache.enabled
        || !config.token_cache.shield_revoke
        || state.token_cache.is_empty()
    {
        return None;
    }
    let session = soap::parse_logout(path, content_type, body)?;
    let (api, _) = soap::soap_endpoint(path)?;
    if !state
        .token_cache
        .evict_token(session.expose(), Eviction::Revoked)
    {
        return None;
    }
    tracing::info!("SOAP logout of a shared cached session answered locally");
    let mut event = Event::new(client, &target.host);
    event.grant = Some(GRANT.into());
    event.action = Action::RevokeShielded;
    event.status = StatusCode::OK.as_u16();
    let (head, body) = xml_response(StatusCode::OK, soap::logout_response(api)).into_parts();
    Some(Response::from_parts(
        head,
        RecordOnEnd::wrap(body, event, state.events.clone(), started),
    ))
}

fn xml_response(status: StatusCode, xml: String) -> Response<Body> {
    let mut resp = Response::new(full_body(xml));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(SOAP_CONTENT_TYPE));
    resp
}

/// A SOAP `login()`: upgrade it if the plan says so, else forward it as it came.
async fn upgrade(
    login: SoapLogin,
    parts: Parts,
    buffered: Buffered<Incoming>,
    target: &Target,
    client: SocketAddr,
    state: &Arc<State>,
    started: Instant,
) -> Response<Body> {
    let config = state.config_snapshot();
    let mut event = Event::new(client, &target.host);
    event.grant = Some(GRANT.into());
    let api = login.api;
    let original = |buffered: Buffered<Incoming>| {
        forward_original(&parts, buffered.into_body(), target, state)
    };
    if let Err(len) = within_bound(&login.username, oauth::MAX_USERNAME_CHARS) {
        event.oversized.insert("username".into(), len);
        let resp = original(buffered).await;
        return finish(
            resp,
            record(event, Forward::skipped(SkipReason::UsernameTooLong)),
            state,
            started,
            None,
        )
        .await;
    }
    event.username = Some(login.username.clone());
    let set = SetKey::new(SET_CLIENT_ID, &login.username);
    let rewrite = match soap_plan::plan(&target.host, &login, &config) {
        SoapPlan::Rewrite(rewrite) => rewrite,
        SoapPlan::Forward(forward) => {
            let learn = teaches_verifier(forward.action).then_some((&set, &login.password, api));
            let resp = original(buffered).await;
            return finish(resp, record(event, forward), state, started, learn).await;
        }
    };
    let checked = state
        .verifiers
        .check(&set, Some(&login.password), &rewrite.verify)
        .await;
    event.password_check = Some(checked.password_check());
    if let Some(forward) = gate(rewrite.verify.mode, checked) {
        let resp = original(buffered).await;
        return finish(resp, record(event, forward), state, started, None).await;
    }
    event.client_id = Some(rewrite.client_id.clone());
    event.flow = Some(rewrite.flow.as_str().into());
    event.target_host = Some(rewrite.target_host.clone());

    let outcome = session(&rewrite, &login, &mut event, state).await;
    let failure = match outcome {
        Ok(answer) => {
            event.action = Action::Upgraded;
            event.user_id = Some(answer.user_id);
            event.org_id = Some(answer.organization_id);
            event.instance_url = answer.instance_url;
            let resp = xml_response(StatusCode::OK, answer.xml);
            return send_with_event(resp, event, state, started);
        }
        Err(failure) => failure,
    };
    tracing::warn!(
        username = event.username.as_deref(),
        flow = rewrite.flow.as_str(),
        target_host = %rewrite.target_host,
        status = failure.info.status,
        error = failure.info.error.as_deref(),
        error_description = failure.info.error_description.as_deref(),
        fallback = rewrite.fallback,
        "upgraded SOAP login failed"
    );
    event.reason = failure.reason.map(str::to_owned);
    event.upstream_error = Some(failure.info.clone());
    if rewrite.fallback {
        event.action = Action::Fallback;
        let resp = original(buffered).await;
        finish(
            resp,
            event,
            state,
            started,
            Some((&set, &login.password, api)),
        )
        .await
    } else {
        event.action = Action::Failed;
        let message = format!(
            "grantshift could not upgrade this login() to {} at {}: {}",
            rewrite.flow.as_str(),
            rewrite.target_host,
            failure.info.describe()
        );
        let fault = soap::login_fault(api, "UNKNOWN_EXCEPTION", &message);
        send_with_event(
            xml_response(StatusCode::INTERNAL_SERVER_ERROR, fault),
            event,
            state,
            started,
        )
    }
}

/// The `loginResponse` for the client, and the facts of it for the event.
struct Answer {
    xml: String,
    user_id: String,
    organization_id: String,
    instance_url: Option<String>,
}

/// Why no session could be made.
struct Failure {
    info: UpstreamErrorInfo,
    /// The event's `reason` (`jwt_access_token`), if one says more than `upstream_error`.
    reason: Option<&'static str>,
}

impl Failure {
    fn new(status: Option<StatusCode>, error: &str, description: impl Into<String>) -> Failure {
        Failure {
            info: UpstreamErrorInfo {
                status: status.map(|s| s.as_u16()),
                error: Some(error.into()),
                error_description: Some(description.into()),
            },
            reason: None,
        }
    }

    fn upstream(e: &UpstreamError) -> Failure {
        let error = match e.status() {
            StatusCode::GATEWAY_TIMEOUT => "timeout",
            _ => "connect_error",
        };
        Failure::new(None, error, e.to_string())
    }
}

/// Obtain a token for the entry's app (through the token cache), check it can be a SOAP
/// session, and build the `loginResponse` from the identity URL and `getUserInfo()`.
async fn session(
    rewrite: &SoapRewrite,
    login: &SoapLogin,
    event: &mut Event,
    state: &Arc<State>,
) -> Result<Answer, Failure> {
    let token = token(rewrite, event, state).await?;
    if token.jwt_format {
        return Err(Failure {
            reason: Some("jwt_access_token"),
            ..Failure::new(
                None,
                "jwt_access_token",
                "the connected app issues JWT-based access tokens, which the SOAP API refuses; turn off \"Issue JSON Web Token (JWT)-based access tokens\" on the app",
            )
        });
    }
    let made = answer(rewrite, login, &token, state).await;
    if made.is_err() {
        // The session may be what is wrong (ended, refused): the next login gets a fresh one.
        state
            .token_cache
            .evict_token(&token.access_token, Eviction::Unauthorized);
    }
    made
}

/// The token: from the cache, or a login at the target's token endpoint.
async fn token(
    rewrite: &SoapRewrite,
    event: &mut Event,
    state: &Arc<State>,
) -> Result<TokenFacts, Failure> {
    let config = state.config_snapshot();
    let timeout = state.upstream.request_timeout();
    let mut flight = None;
    if config.token_cache.enabled {
        let key = state.token_cache.key(&KeyParts {
            target_host: &rewrite.target_host,
            flow: rewrite.flow,
            shape: &rewrite.shape,
            accept: Some(b"application/json"),
            authorization: None,
            accept_encoding: None,
        });
        match state.token_cache.lookup(key, timeout).await {
            Lookup::Hit { entry, .. } => {
                event.cache = Some(CacheUse::Hit);
                let body = entry.body();
                let plain =
                    facts::decoded(&entry.headers, &body).map(|p| Zeroizing::new(p.into_owned()));
                if let Some(facts) = plain.as_deref().and_then(|p| TokenFacts::from_json(p)) {
                    return Ok(facts);
                }
                // Kept, so it named an access token; without an identity URL it is no use here.
                return Err(Failure::new(
                    None,
                    "no_identity_url",
                    "the cached token response names no identity URL",
                ));
            }
            Lookup::Negative(negative) => {
                event.cache = Some(CacheUse::Negative);
                return Err(Failure {
                    info: negative.info.clone(),
                    reason: None,
                });
            }
            Lookup::Miss(f) => {
                event.cache = Some(CacheUse::Miss);
                flight = Some((key, f));
            }
        }
    } else {
        event.cache = Some(CacheUse::Off);
    }
    let body = rewrite
        .body
        .make(unix_now())
        .map_err(|problem| Failure::new(None, "internal", problem))?;
    let failed = |info: &UpstreamErrorInfo, flight| {
        if let Some((key, flight)) = flight {
            state
                .token_cache
                .failed(flight, key, info, config.token_cache.negative_ttl);
        }
    };
    let uri = https_uri(&rewrite.target_host, oauth::TOKEN_PATH)
        .map_err(|problem| Failure::new(None, "internal", problem))?;
    let mut req = Request::new(full_body(body));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = uri;
    let headers = req.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    let resp = match state.upstream.send(req, &rewrite.target_host).await {
        Ok(resp) => to_client(resp),
        Err(e) => {
            let failure = Failure::upstream(&e);
            failed(&failure.info, flight);
            return Err(failure);
        }
    };
    let status = resp.status();
    let whole = facts::read_whole(resp, timeout).await;
    let Ok((head, body)) = whole else {
        let failure = Failure::new(
            Some(status),
            "unreadable_response",
            "the token response could not be read whole",
        );
        failed(&failure.info, flight);
        return Err(failure);
    };
    let plain = facts::decoded(&head.headers, &body).map(|p| Zeroizing::new(p.into_owned()));
    if !status.is_success() {
        let facts = plain
            .as_deref()
            .map(|p| crate::telemetry::events::ResponseFacts::from_json(p))
            .unwrap_or_default();
        let failure = Failure {
            info: UpstreamErrorInfo {
                status: Some(status.as_u16()),
                error: facts.error,
                error_description: facts.error_description,
            },
            reason: None,
        };
        failed(&failure.info, flight);
        return Err(failure);
    }
    let Some(token) = plain.as_deref().and_then(|p| TokenFacts::from_json(p)) else {
        let failure = Failure::new(
            Some(status),
            "no_token",
            "the token response names no access token and identity URL",
        );
        failed(&failure.info, flight);
        return Err(failure);
    };
    if let (Some((key, flight)), Some(plain)) = (flight, &plain) {
        let kept = state.token_cache.store(
            flight,
            key,
            head.status,
            &head.headers,
            &body,
            plain,
            config.token_cache.serve_for(),
            Some(rewrite.credential),
        );
        if let (Some(entry), true) = (kept, config.token_cache.introspect) {
            let to = Target {
                host: rewrite.target_host.clone(),
                port: 443,
            };
            let cache = &config.token_cache;
            super::introspect_later(entry, key, plain, &rewrite.body, to, cache, state);
        }
    }
    Ok(token)
}

fn https_uri(host: &str, path_and_query: &str) -> Result<Uri, String> {
    Uri::builder()
        .scheme("https")
        .authority(host)
        .path_and_query(path_and_query)
        .build()
        .map_err(|e| e.to_string())
}

/// The identity URL and `getUserInfo()`, made with the new token, and the `loginResponse`.
async fn answer(
    rewrite: &SoapRewrite,
    login: &SoapLogin,
    token: &TokenFacts,
    state: &Arc<State>,
) -> Result<Answer, Failure> {
    let timeout = state.upstream.request_timeout();
    let bearer = Zeroizing::new(format!("Bearer {}", token.access_token.as_str()));
    let mut bearer = HeaderValue::from_str(&bearer).map_err(|_| {
        Failure::new(
            None,
            "bad_token",
            "the access token cannot be sent in a header",
        )
    })?;
    bearer.set_sensitive(true);

    // The identity URL: the user, the org, and the SOAP endpoints.
    let id_uri = token_url(
        &token.id,
        &rewrite.target_host,
        "identity_url",
        "the token response's identity URL is not an https URL of a Salesforce host",
    )?;
    let mut req = Request::new(crate::body::empty_body());
    *req.uri_mut() = id_uri.clone();
    req.headers_mut().insert(AUTHORIZATION, bearer);
    req.headers_mut()
        .insert(ACCEPT, HeaderValue::from_static("application/json"));
    let (status, body) = call(req, state, timeout).await?;
    if !status.is_success() {
        return Err(Failure::new(
            Some(status),
            "identity_failed",
            "the identity URL refused the new token",
        ));
    }
    let identity = Identity::from_json(&body, login.api, &login.version)
        .map_err(|problem| Failure::new(Some(status), "identity_unreadable", problem))?;

    // getUserInfo(), as Data Loader calls it: the loginResponse's userInfo.
    let server_uri = token_url(
        &identity.server_url,
        &rewrite.target_host,
        "server_url",
        "the identity URL's SOAP endpoint is not an https URL of a Salesforce host",
    )?;
    let envelope = Zeroizing::new(soap::get_user_info_request(login.api, &token.access_token));
    let mut req = Request::new(full_body(envelope.as_bytes().to_vec()));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = server_uri.clone();
    let headers = req.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/xml; charset=UTF-8"),
    );
    headers.insert("soapaction", HeaderValue::from_static("\"\""));
    let (status, body) = call(req, state, timeout).await?;
    let user_info = match soap::parse_user_info(login.api, &body) {
        Ok(info) => info,
        Err(soap::UserInfoError::Fault { code, message }) => {
            return Err(Failure::new(
                Some(status),
                "get_user_info_fault",
                format!("{code}: {message}"),
            ))
        }
        Err(soap::UserInfoError::Unparsable(reason)) => {
            return Err(Failure::new(
                Some(status),
                "get_user_info_unreadable",
                reason,
            ))
        }
    };
    let organization_id = user_info
        .organization_id
        .clone()
        .unwrap_or_else(|| identity.organization_id.clone());
    let xml = soap::login_response(
        login.api,
        &soap::LoginResult {
            metadata_server_url: &identity.metadata_server_url,
            password_expired: false,
            sandbox: rewrite.sandbox,
            server_url: &identity.server_url,
            session_id: &token.access_token,
            user_id: &identity.user_id,
            user_info: &user_info,
        },
    );
    let instance_url = server_uri.authority().map(|a| format!("https://{a}"));
    Ok(Answer {
        xml,
        user_id: identity.user_id,
        organization_id,
        instance_url,
    })
}

/// `url` as a URI the new token may be sent to ([`soap_plan::may_carry_token`]), or the
/// failure `error` / `why`.
fn token_url(
    url: &str,
    token_host: &str,
    error: &'static str,
    why: &'static str,
) -> Result<Uri, Failure> {
    url.parse()
        .ok()
        .filter(|u| soap_plan::may_carry_token(u, token_host))
        .ok_or_else(|| Failure::new(None, error, why))
}

/// Send `req` (to the host its URI names) and read the whole answer, decoded.
async fn call(
    req: Request<Body>,
    state: &Arc<State>,
    timeout: std::time::Duration,
) -> Result<(StatusCode, Zeroizing<Vec<u8>>), Failure> {
    let host = req.uri().host().unwrap_or_default().to_owned();
    let resp = state
        .upstream
        .send(req, &host)
        .await
        .map_err(|e| Failure::upstream(&e))?;
    let status = resp.status();
    let (head, body) = facts::read_whole(to_client(resp), timeout)
        .await
        .map_err(|_| {
            Failure::new(
                Some(status),
                "unreadable_response",
                format!("the answer from {host} could not be read whole"),
            )
        })?;
    let plain = facts::decoded(&head.headers, &body).ok_or_else(|| {
        Failure::new(
            Some(status),
            "unreadable_response",
            format!("the answer from {host} has an unknown encoding"),
        )
    })?;
    Ok((status, Zeroizing::new(plain.into_owned())))
}

/// Record the event once the response has gone back. With `learn` (the original `login()`,
/// forwarded as it came), a `loginResponse` with a session (Salesforce accepted the password)
/// makes the password the set's verifier first.
async fn finish(
    resp: Result<Response<Body>, UpstreamError>,
    mut event: Event,
    state: &Arc<State>,
    started: Instant,
    learn: Option<(&SetKey, &Password, Api)>,
) -> Response<Body> {
    let resp = match resp {
        Ok(resp) if resp.status().is_success() => match learn {
            Some((set, password, api)) => {
                let timeout = state.upstream.request_timeout();
                let (resp, answer) =
                    read_with(resp, timeout, |body| soap::parse_login_answer(api, body)).await;
                if let Some(answer) = answer {
                    state.verifiers.learn(set, password).await;
                    fill(&mut event, answer);
                }
                resp
            }
            None => resp,
        },
        Ok(resp) => resp,
        Err(e) => upstream_failed(e),
    };
    send_with_event(resp, event, state, started)
}

fn fill(event: &mut Event, answer: LoginAnswer) {
    event.user_id = Some(answer.user_id);
    event.org_id = answer.organization_id;
    event.instance_url = answer
        .server_url
        .and_then(|u| u.parse::<Uri>().ok())
        .and_then(|u| u.authority().map(|a| format!("https://{a}")));
}
