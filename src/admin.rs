//! The admin server: `/healthz`, `/readyz`, `/metrics`, `/report` (JSON) and `/` (an HTML page of the
//! report and the rollout rules). Read-only and secret-free by construction: it only renders
//! metrics, the report and the rollout rules. With `proxy.admin_token_env` set, every path
//! but `/healthz` and `/readyz` (probed by load balancers, orchestrators and the container's
//! health check, and telling nothing) needs `Authorization: Bearer <token>`.

use crate::access;
use crate::body::{full_body, text_response, Body};
use crate::server::accept_loop;
use crate::state::State;
use crate::telemetry::{render, summary};
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::Instrument;

/// Admin connections served at once (their own cap: a proxy at `max_connections` still
/// answers `/healthz` and `/metrics`).
const ADMIN_MAX_CONNECTIONS: usize = 64;

/// Serve the admin endpoints until shutdown starts.
pub async fn serve(listener: TcpListener, state: Arc<State>) {
    let slots = Arc::new(Semaphore::new(ADMIN_MAX_CONNECTIONS));
    accept_loop(
        listener,
        "admin",
        slots,
        state.tasks.draining(),
        |tcp, peer, slot| {
            let conn_state = state.clone();
            let span = tracing::info_span!("admin", client = %peer);
            let config = state.config();
            // The proxy's client allow-list covers the admin server too: it shows who logs in.
            let allowed = access::client_allowed(&config.proxy.allow_clients, peer.ip());
            let header_read_timeout = config.proxy.header_read_timeout;
            drop(config);
            state.tasks.spawn(
                async move {
                    let _slot = slot;
                    let svc_state = conn_state.clone();
                    let svc = hyper::service::service_fn(move |req| {
                        let state = svc_state.clone();
                        async move {
                            if !allowed {
                                tracing::info!("admin: client address not in proxy.allow_clients");
                                return Ok(text_response(
                                    StatusCode::FORBIDDEN,
                                    "grantshift: this client address may not use the admin server",
                                ));
                            }
                            route(req, state).await
                        }
                    });
                    // A request head must arrive in time here as on the proxy port (slowloris).
                    let served = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(header_read_timeout)
                        .serve_connection(TokioIo::new(tcp), svc);
                    let ended = conn_state
                        .tasks
                        .serve_until_drained(served, |c| c.graceful_shutdown())
                        .await;
                    if let Err(e) = ended {
                        tracing::debug!(error = %e, "admin connection ended with an error");
                    }
                }
                .instrument(span),
            );
        },
    )
    .await
}

async fn route(req: Request<Incoming>, state: Arc<State>) -> Result<Response<Body>, Infallible> {
    if !matches!(req.uri().path(), "/healthz" | "/readyz") {
        let config = state.config();
        if let Some(token) = &config.proxy.admin_token {
            if !token.accepts(req.headers()) {
                // Neither the expected nor the presented token is ever logged.
                tracing::info!(
                    path = req.uri().path(),
                    "admin: bearer token missing or wrong"
                );
                return Ok(unauthorized());
            }
        }
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = text_response(StatusCode::METHOD_NOT_ALLOWED, "read-only: GET only");
        resp.headers_mut()
            .insert(http::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Ok(resp);
    }
    Ok(match req.uri().path() {
        "/healthz" => text_response(StatusCode::OK, "ok"),
        // Config and CA are loaded before the admin server starts; this adds the proxy port.
        "/readyz" => match state.readiness.check() {
            Ok(()) => text_response(StatusCode::OK, "ready"),
            Err(reason) => text_response(StatusCode::SERVICE_UNAVAILABLE, reason),
        },
        "/metrics" => with_type(
            {
                state.metrics.credential_sets(&state.report().credentials);
                state.login_rates().await;
                state.metrics.encode()
            },
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        "/report" => {
            let report = state.report();
            let summary = summary::summary(&report, time::OffsetDateTime::now_utc());
            with_type(render::report_json(&report, &summary), "application/json")
        }
        "/" => {
            let report = state.report();
            let config = state.config_snapshot();
            let summary = summary::summary(&report, time::OffsetDateTime::now_utc());
            let last_reload = state.last_reload();
            let login_rates = state.login_rates().await;
            let meta = render::PageMeta {
                version: env!("CARGO_PKG_VERSION"),
                config_source: &config.source,
                last_reload: last_reload.as_ref(),
                login_rates: &login_rates,
            };
            let filter = verdict_filter(req.uri().query());
            with_type(
                render::page(&report, &config, &summary, filter.as_deref(), &meta),
                "text/html; charset=utf-8",
            )
        }
        _ => text_response(
            StatusCode::NOT_FOUND,
            "not found: try /, /report, /metrics, /healthz, /readyz",
        ),
    })
}

/// The first `verdict` of a query string (`?verdict=needs-jwt`), percent-decoded; whatever it
/// is, the page says what it shows (never an error).
fn verdict_filter(query: Option<&str>) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query?).ok()?;
    pairs
        .into_iter()
        .find(|(k, _)| k == "verdict")
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// `401` with the challenge (RFC 6750 §3).
fn unauthorized() -> Response<Body> {
    let mut resp = text_response(
        StatusCode::UNAUTHORIZED,
        "grantshift: the admin server needs Authorization: Bearer <token> (proxy.admin_token_env)",
    );
    resp.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"grantshift-admin\""),
    );
    resp
}

fn with_type(body: String, content_type: &'static str) -> Response<Body> {
    let mut resp = Response::new(full_body(body));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
