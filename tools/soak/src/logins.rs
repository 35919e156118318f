//! Phase 2: `--logins` password grants to `login.salesforce.com` through CONNECT + TLS over
//! `--concurrency` keep-alive HTTP/1.1 connections, each answer checked to be the fake's
//! signed client-credentials response (upgraded and redirected to the My Domain).

use crate::{progress, CLIENT_ID, CLIENT_SECRET, PASSWORD_PREFIX, STEP_TIMEOUT, USERNAME};
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::fast_salesforce::check_signed_answer;
use testkit::salesforce::JSON_CONTENT_TYPE;
use testkit::{LOGIN_HOST, TOKEN_PATH};
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;

/// What the logins came to.
#[derive(Default)]
pub struct LoginTotals {
    pub ok: usize,
    pub failed: usize,
    pub connect_errors: usize,
    pub connections: usize,
    pub errors: Vec<String>,
    pub latencies_us: Vec<u32>,
}

struct LoginShared {
    next: AtomicUsize,
    total: usize,
    ok: AtomicUsize,
    failed: AtomicUsize,
    connect_errors: AtomicUsize,
    connections: AtomicUsize,
    errors: Mutex<Vec<String>>,
}

impl LoginShared {
    fn error(&self, e: String) {
        let mut errors = self.errors.lock().unwrap();
        if errors.len() < 10 {
            errors.push(e);
        }
    }
}

pub async fn run_logins(
    proxy: SocketAddr,
    tls: TlsConnector,
    total: usize,
    concurrency: usize,
    t0: Instant,
) -> LoginTotals {
    let shared = Arc::new(LoginShared {
        next: AtomicUsize::new(0),
        total,
        ok: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        connect_errors: AtomicUsize::new(0),
        connections: AtomicUsize::new(0),
        errors: Mutex::new(Vec::new()),
    });
    let reporter = {
        let shared = shared.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                progress(
                    t0,
                    &format!(
                        "phase 2: {} ok, {} failed",
                        shared.ok.load(Ordering::Relaxed),
                        shared.failed.load(Ordering::Relaxed)
                    ),
                );
            }
        })
    };
    let mut set = JoinSet::new();
    for _ in 0..concurrency {
        set.spawn(login_worker(proxy, tls.clone(), shared.clone()));
    }
    let mut latencies = Vec::with_capacity(total);
    while let Some(joined) = set.join_next().await {
        latencies.extend(joined.expect("login worker"));
    }
    reporter.abort();
    latencies.sort_unstable();
    let errors = shared.errors.lock().unwrap().clone();
    LoginTotals {
        ok: shared.ok.load(Ordering::SeqCst),
        failed: shared.failed.load(Ordering::SeqCst),
        connect_errors: shared.connect_errors.load(Ordering::SeqCst),
        connections: shared.connections.load(Ordering::SeqCst),
        errors,
        latencies_us: latencies,
    }
}

enum LoginError {
    /// The response was wrong; the connection is still usable.
    Response(String),
    /// The connection broke.
    Connection(String),
}

async fn login_worker(proxy: SocketAddr, tls: TlsConnector, shared: Arc<LoginShared>) -> Vec<u32> {
    let mut latencies = Vec::new();
    let mut connect_failures = 0;
    while shared.next.load(Ordering::SeqCst) < shared.total {
        let mut sender = match tokio::time::timeout(STEP_TIMEOUT, login_connection(proxy, &tls))
            .await
            .unwrap_or_else(|_| Err("opening a login connection timed out".into()))
        {
            Ok(sender) => {
                shared.connections.fetch_add(1, Ordering::SeqCst);
                sender
            }
            Err(e) => {
                shared.connect_errors.fetch_add(1, Ordering::SeqCst);
                shared.error(e);
                connect_failures += 1;
                if connect_failures >= 20 {
                    return latencies;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        loop {
            let n = shared.next.fetch_add(1, Ordering::SeqCst);
            if n >= shared.total {
                return latencies;
            }
            let started = Instant::now();
            let result = tokio::time::timeout(STEP_TIMEOUT, login(&mut sender, n))
                .await
                .unwrap_or_else(|_| {
                    Err(LoginError::Connection(format!(
                        "login {n}: no response within {}s",
                        STEP_TIMEOUT.as_secs()
                    )))
                });
            match result {
                Ok(()) => {
                    shared.ok.fetch_add(1, Ordering::Relaxed);
                    latencies.push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
                }
                Err(LoginError::Response(e)) => {
                    shared.failed.fetch_add(1, Ordering::Relaxed);
                    shared.error(e);
                }
                Err(LoginError::Connection(e)) => {
                    shared.failed.fetch_add(1, Ordering::Relaxed);
                    shared.error(e);
                    break;
                }
            }
        }
    }
    latencies
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// CONNECT login.salesforce.com:443, TLS trusting grantshift's CA, HTTP/1.1 keep-alive.
async fn login_connection(proxy: SocketAddr, tls: &TlsConnector) -> Result<Sender, String> {
    let tcp = testkit::try_tunnel(proxy, &format!("{LOGIN_HOST}:443"))
        .await
        .map_err(|e| format!("login connection: {e}"))?;
    testkit::try_h1_over_tls(tcp, LOGIN_HOST, tls)
        .await
        .map_err(|e| format!("login connection: {e}"))
}

async fn login(sender: &mut Sender, n: usize) -> Result<(), LoginError> {
    let conn_err =
        |what: &str, e: hyper::Error| LoginError::Connection(format!("login {n}: {what}: {e}"));
    sender
        .ready()
        .await
        .map_err(|e| conn_err("connection", e))?;
    let password = format!("{PASSWORD_PREFIX}{n}");
    let form = testkit::password_form(CLIENT_ID, CLIENT_SECRET, USERNAME, &password);
    let req = Request::post(TOKEN_PATH)
        .header(HOST, LOGIN_HOST)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(Full::new(Bytes::from(form)))
        .expect("request");
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| conn_err("sending", e))?;
    let status = resp.status();
    let content_type = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| conn_err("reading the body", e))?
        .to_bytes();
    if status != StatusCode::OK {
        return Err(LoginError::Response(format!(
            "login {n}: status {status}: {}",
            String::from_utf8_lossy(&body)
        )));
    }
    if content_type != JSON_CONTENT_TYPE {
        return Err(LoginError::Response(format!(
            "login {n}: content-type {content_type:?}"
        )));
    }
    check_signed_answer(&body, CLIENT_SECRET)
        .map_err(|e| LoginError::Response(format!("login {n}: {e}")))
}
