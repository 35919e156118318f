//! The token path: a `POST /services/oauth2/token` on an intercepted host.
//!
//! Phases, in order: check the headers (can the body be read as a form?) → buffer at most
//! `max_token_body` → parse → policy → rewrite → send upstream → on failure, fall back to the
//! original request → record one event when the response has gone back. Whatever grantshift
//! cannot understand is forwarded byte-for-byte as it came, and recorded as `skipped`.

use crate::config::Flow;
use crate::oauth::jwt::Claims;
use crate::oauth::{self, rewrite, SkipReason, TokenParams};
use crate::policy::{self, Decision, Upgrade};
use crate::server::Shared;
use crate::service::{self, Target};
use crate::telemetry::events::{Action, Event, ResponseFacts, UpstreamErrorInfo};
use crate::telemetry::RecordOnEnd;
use crate::upstream::UpstreamError;
use crate::{full_body, hop_by_hop, Body};
use bytes::{Bytes, BytesMut};
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming, SizeHint};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Token responses are small; past this a response streams on without being read.
const MAX_TOKEN_RESPONSE: usize = 256 * 1024;

/// Serve one token request. Never fails: every problem becomes a response.
pub async fn handle(
    req: Request<Incoming>,
    target: &Target,
    client: SocketAddr,
    shared: &Arc<Shared>,
) -> Response<Body> {
    let started = Instant::now();
    let config = shared.config_snapshot();
    let mut event = Event::new(client, &target.host);
    let (mut parts, body) = req.into_parts();
    hop_by_hop::strip(&mut parts.headers);

    if let Err(reason) = oauth::body_is_readable(&parts.headers, config.proxy.max_token_body) {
        event.action = Action::Skipped;
        event.reason = Some(reason.as_str().into());
        let resp = forward_original(&parts, body.boxed(), target, shared).await;
        return finish(resp, event, shared, started, client).await;
    }

    let buffered = match Buffered::read(body, config.proxy.max_token_body).await {
        Ok(buffered) => buffered,
        Err(e) => {
            // The client's upload broke off: nothing can be forwarded faithfully.
            tracing::debug!(%client, error = %e, "token request body ended with an error");
            event.action = Action::Skipped;
            event.reason = Some("client_body_error".into());
            let resp = crate::text_response(
                http::StatusCode::BAD_REQUEST,
                "grantshift: the request body could not be read",
            );
            return finish(Ok(resp), event, shared, started, client).await;
        }
    };
    if buffered.rest.is_some() {
        event.action = Action::Skipped;
        event.reason = Some(SkipReason::TooLarge.as_str().into());
        let resp = forward_original(&parts, buffered.into_body(), target, shared).await;
        return finish(resp, event, shared, started, client).await;
    }

    let params = match TokenParams::parse(parts.uri.query(), &buffered.data) {
        Ok(params) => params,
        Err(reason) => {
            event.action = Action::Skipped;
            event.reason = Some(reason.as_str().into());
            let resp = forward_original(&parts, buffered.into_body(), target, shared).await;
            return finish(resp, event, shared, started, client).await;
        }
    };
    event.grant = params.grant_type().map(str::to_owned);
    event.client_id = params.get("client_id").map(str::to_owned);
    if params.grant_type() != Some("password") {
        event.action = Action::Passed;
        let resp = forward_original(&parts, buffered.into_body(), target, shared).await;
        return finish(resp, event, shared, started, client).await;
    }
    event.username = params.get("username").map(str::to_owned);

    let has_basic_auth = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.len() > 6 && v[..6].eq_ignore_ascii_case("basic "));
    // Do no harm: a bug in deciding or rewriting must not cost the client its login.
    let decision = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        shared.faults.inject_for("policy", &target.host);
        policy::decide(&config, &target.host, &params, has_basic_auth)
    }))
    .unwrap_or(Decision::Skip(SkipReason::Internal));
    let upgrade = match decision {
        Decision::Upgrade(upgrade) => upgrade,
        other => {
            match other {
                Decision::Observe { reason } => {
                    event.action = Action::Observed;
                    event.reason = reason.map(str::to_owned);
                }
                Decision::Unmapped => event.action = Action::Unmapped,
                Decision::Skip(reason) => {
                    event.action = Action::Skipped;
                    event.reason = Some(reason.as_str().into());
                }
                Decision::Upgrade(_) => unreachable!("handled above"),
            }
            let resp = forward_original(&parts, buffered.into_body(), target, shared).await;
            return finish(resp, event, shared, started, client).await;
        }
    };

    event.flow = Some(upgrade.flow.as_str().into());
    event.target_host = Some(upgrade.target_host.clone());
    let rewritten = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        shared.faults.inject_for("rewrite", &target.host);
        rewritten_body(&upgrade, &params)
    }))
    .unwrap_or_else(|_| Err("the rewrite panicked".into()));
    let upgraded_body = match rewritten {
        Ok(body) => body,
        Err(problem) => {
            // Do no harm: the original goes through as it came.
            tracing::error!(%client, host = %target.host, %problem, "cannot build the upgraded request; forwarding the original");
            event.action = Action::Skipped;
            event.reason = Some(SkipReason::Internal.as_str().into());
            event.flow = None;
            event.target_host = None;
            let resp = forward_original(&parts, buffered.into_body(), target, shared).await;
            return finish(resp, event, shared, started, client).await;
        }
    };

    let attempt = send_upgraded(&parts, upgraded_body, &upgrade, target, shared).await;
    let failure = match attempt {
        Ok(resp) if resp.status().is_success() => {
            event.action = Action::Upgraded;
            return finish(Ok(resp), event, shared, started, client).await;
        }
        Ok(resp) => {
            let status = resp.status();
            let (resp, facts) = read_facts(resp).await;
            let info = UpstreamErrorInfo {
                status: Some(status.as_u16()),
                error: facts.error,
                error_description: facts.error_description,
            };
            (info, Ok(resp))
        }
        Err(e) => {
            let info = UpstreamErrorInfo {
                status: None,
                error: Some(
                    match e.status() {
                        http::StatusCode::GATEWAY_TIMEOUT => "timeout",
                        _ => "connect_error",
                    }
                    .into(),
                ),
                error_description: Some(e.to_string()),
            };
            (info, Err(e))
        }
    };
    let (info, failed_resp) = failure;
    tracing::info!(%client, host = %target.host, target_host = %upgrade.target_host,
        status = ?info.status, error = ?info.error, error_description = ?info.error_description,
        fallback = upgrade.fallback, "upgraded login failed");
    event.upstream_error = Some(info);
    if upgrade.fallback {
        event.action = Action::Fallback;
        let resp = forward_original(&parts, buffered.into_body(), target, shared).await;
        finish(resp, event, shared, started, client).await
    } else {
        event.action = Action::Failed;
        finish(failed_resp, event, shared, started, client).await
    }
}

/// The new body for the upgraded grant.
fn rewritten_body(upgrade: &Upgrade, params: &TokenParams) -> Result<String, String> {
    match upgrade.flow {
        Flow::ClientCredentials => Ok(rewrite::client_credentials_body(params)),
        Flow::JwtBearer => {
            let (key, audience) = upgrade.jwt.as_ref().ok_or("no JWT key")?;
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_err(|e| e.to_string())?
                .as_secs();
            let claims = Claims::new(
                params.get("client_id").unwrap_or(""),
                params.get("username").unwrap_or(""),
                audience,
                now,
            );
            let assertion = key.sign(&claims)?;
            Ok(rewrite::jwt_bearer_body(params, &assertion))
        }
    }
}

/// The upgraded request: same headers (Authorization included, as sent) but the body, its
/// length and type, and the host all follow the target; no query string (no secret in a URL).
async fn send_upgraded(
    original: &Parts,
    body: String,
    upgrade: &Upgrade,
    target: &Target,
    shared: &Shared,
) -> Result<Response<Body>, UpstreamError> {
    let port = if upgrade.target_host.eq_ignore_ascii_case(&target.host) {
        target.port
    } else {
        443
    };
    let to = Target {
        host: upgrade.target_host.clone(),
        port,
    };
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
    let resp = shared.upstream.send(req, &to.host).await?;
    Ok(service::to_client(resp))
}

/// The original request, unchanged but for hop-by-hop fields, to the original host.
async fn forward_original(
    parts: &Parts,
    body: Body,
    target: &Target,
    shared: &Shared,
) -> Result<Response<Body>, UpstreamError> {
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = target.uri(&parts.uri).map_err(|e| UpstreamError::Request {
        host: target.host.clone(),
        cause: e.to_string(),
    })?;
    *req.headers_mut() = parts.headers.clone();
    *req.extensions_mut() = parts.extensions.clone();
    let resp = shared.upstream.send(req, &target.host).await?;
    Ok(service::to_client(resp))
}

/// Fill the event from the response the client gets, and send that response with the event
/// attached: it is recorded once the body has gone back.
async fn finish(
    resp: Result<Response<Body>, UpstreamError>,
    mut event: Event,
    shared: &Shared,
    started: Instant,
    client: SocketAddr,
) -> Response<Body> {
    let resp = match resp {
        Ok(resp) => {
            if resp.status().is_success() {
                let (resp, facts) = read_facts(resp).await;
                event.org_id = facts.org_id;
                event.user_id = facts.user_id;
                event.instance_url = facts.instance_url;
                resp
            } else {
                resp
            }
        }
        Err(e) => service::upstream_failed(e, client),
    };
    event.status = resp.status().as_u16();
    tracing::info!(
        %client,
        host = %event.host,
        grant = event.grant.as_deref().unwrap_or(""),
        client_id = event.client_id.as_deref().unwrap_or(""),
        username = event.username.as_deref().unwrap_or(""),
        action = event.action.as_str(),
        flow = event.flow.as_deref().unwrap_or(""),
        target_host = event.target_host.as_deref().unwrap_or(""),
        status = event.status,
        reason = event.reason.as_deref().unwrap_or(""),
        "token request"
    );
    let (parts, body) = resp.into_parts();
    Response::from_parts(
        parts,
        RecordOnEnd::wrap(body, event, shared.events.clone(), started),
    )
}

/// Read a token response (up to [`MAX_TOKEN_RESPONSE`]) for its non-secret facts, and give
/// back a response with the same bytes.
async fn read_facts(resp: Response<Body>) -> (Response<Body>, ResponseFacts) {
    let (parts, body) = resp.into_parts();
    match Buffered::read(body, MAX_TOKEN_RESPONSE).await {
        Ok(buffered) => {
            let facts = if buffered.rest.is_none() {
                // Clients that accept gzip (python-requests does) get compressed answers:
                // decode a copy to read the facts; the client gets the bytes as they came.
                match decoded(&parts.headers, &buffered.data) {
                    Some(plain) => ResponseFacts::from_json(&plain),
                    None => ResponseFacts::default(),
                }
            } else {
                ResponseFacts::default()
            };
            (Response::from_parts(parts, buffered.into_body()), facts)
        }
        Err(e) => {
            tracing::debug!(error = %e, "token response body ended with an error");
            (
                Response::from_parts(parts, crate::empty_body()),
                ResponseFacts::default(),
            )
        }
    }
}

/// The response body without its `Content-Encoding` (identity, gzip, deflate), bounded to
/// `MAX_TOKEN_RESPONSE` decoded bytes; `None` for other encodings or a broken stream.
fn decoded(headers: &HeaderMap, body: &Bytes) -> Option<std::borrow::Cow<'static, [u8]>> {
    use std::io::Read;
    let encoding = headers
        .get(http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    let mut plain = Vec::new();
    let limit = MAX_TOKEN_RESPONSE as u64;
    let read = match encoding.as_deref() {
        None | Some("identity") | Some("") => return Some(std::borrow::Cow::Owned(body.to_vec())),
        Some("gzip") | Some("x-gzip") => flate2::read::GzDecoder::new(&body[..])
            .take(limit)
            .read_to_end(&mut plain),
        Some("deflate") => flate2::read::ZlibDecoder::new(&body[..])
            .take(limit)
            .read_to_end(&mut plain),
        Some(_) => return None,
    };
    read.ok().map(|_| std::borrow::Cow::Owned(plain))
}

/// A body read up to a limit: the bytes read, any trailers, and (when over the limit) the
/// unread rest, so the whole body can still be forwarded exactly as it came.
struct Buffered<B> {
    data: Bytes,
    trailers: Option<HeaderMap>,
    rest: Option<B>,
}

impl<B> Buffered<B>
where
    B: hyper::body::Body<Data = Bytes, Error = hyper::Error> + Unpin + Send + Sync + 'static,
{
    async fn read(mut body: B, limit: usize) -> Result<Buffered<B>, hyper::Error> {
        let mut data = BytesMut::new();
        let mut trailers = None;
        while let Some(frame) = body.frame().await {
            match frame?.into_data() {
                Ok(chunk) => {
                    data.extend_from_slice(&chunk);
                    if data.len() > limit {
                        return Ok(Buffered {
                            data: data.freeze(),
                            trailers: None,
                            rest: Some(body),
                        });
                    }
                }
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        trailers = Some(t);
                    }
                }
            }
        }
        Ok(Buffered {
            data: data.freeze(),
            trailers,
            rest: None,
        })
    }

    /// The same bytes (and trailers), then whatever was not read.
    fn into_body(self) -> Body {
        Replay {
            data: (!self.data.is_empty()).then_some(self.data),
            trailers: self.trailers,
            rest: self.rest,
        }
        .boxed()
    }
}

/// Replays a buffered body, then streams the unread rest.
struct Replay<B> {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
    rest: Option<B>,
}

impl<B> hyper::body::Body for Replay<B>
where
    B: hyper::body::Body<Data = Bytes, Error = hyper::Error> + Unpin,
{
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if let Some(rest) = self.rest.as_mut() {
            return Pin::new(rest).poll_frame(cx);
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
            && self.trailers.is_none()
            && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let buffered = self.data.as_ref().map_or(0, |d| d.len() as u64);
        match &self.rest {
            // An exact size makes hyper send Content-Length, and an HTTP/1.1 body with a
            // length has no room for trailers: with trailers, the size stays open (chunked).
            None if self.trailers.is_some() => {
                let mut hint = SizeHint::new();
                hint.set_lower(buffered);
                hint
            }
            None => SizeHint::with_exact(buffered),
            Some(rest) => {
                let mut hint = rest.size_hint();
                hint.set_lower(hint.lower() + buffered);
                if let Some(upper) = hint.upper() {
                    hint.set_upper(upper + buffered);
                }
                hint
            }
        }
    }
}
