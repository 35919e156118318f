//! A small, fast fake Salesforce for the load tools: the end-to-end benchmark (`benches/e2e`)
//! and the soak tool (`tools/soak`).
//!
//! Why a second fake next to the full one ([`FakeSalesforce`](crate::FakeSalesforce) with its
//! [`World`](crate::salesforce::World)): the full fake behaves like Salesforce (orgs, apps and
//! users, every grant, random tokens, `/id`, `/services/data`) and records every request for
//! the tests to inspect. The benchmark measures the proxy and counts the fake's CPU as the
//! client side's (the fake shares the load client's core), and the soak sends tens of
//! thousands of logins: their fake must answer with a few string comparisons and fixed bytes,
//! and keep counters, not a record per request. It knows one connected app (client id and
//! secret) at one My Domain host, [`MY_DOMAIN`], and answers:
//!
//! - `POST /services/oauth2/token` at [`MY_DOMAIN`] with `grant_type=client_credentials`, the
//!   app's client id and secret, and no username, password or query string: 200 with the
//!   [`TokenAnswer`];
//! - `GET` [`DATA_PATH`]: 200 with a fixed sObject record of about 1 KiB ([`data_response`]);
//! - anything else, a password grant included (what an un-upgraded login would be): a
//!   Salesforce-style JSON error, counted as rejected with its reason.
//!
//! Over TLS (its own [`TestCa`], one leaf per host chosen by SNI, ALPN h2 + http/1.1 like the
//! real one) the `Host` must be the SNI name. Two more listeners on request: HTTP/1.1 only,
//! closing after every response (every request costs the proxy a new upstream connection),
//! and plain HTTP for a TLS edge in front of the fake (the benchmark's nginx), where there is
//! no SNI to check.

use super::ca::TestCa;
use super::salesforce::{token_signature, JSON_CONTENT_TYPE, TOKEN_PATH};
use super::upstreams::{bind_loopback_deep, sni_acceptor, sni_resolver};
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// The My Domain host that takes client credentials.
pub const MY_DOMAIN: &str = "acme.my.salesforce.com";
/// The org and user of every token the fake issues (what the proxy's events name).
pub const ORG_ID: &str = "00D000000000001AAA";
pub const USER_ID: &str = "005000000000001AAA";
/// How every access token the fake issues begins.
pub const ACCESS_TOKEN_PREFIX: &str = "00D000000000001!";
/// The REST GET the fake answers with [`data_response`].
pub const DATA_PATH: &str = "/services/data/v62.0/sobjects/Account/001000000000001AAA";

/// [`TokenAnswer::Fixed`]: a client-credentials response of a real one's shape and size.
pub const FIXED_TOKEN_RESPONSE: &str = concat!(
    r#"{"access_token":"00D000000000001!AQ0AQBenchAccessToken.0123456789abcdefghijklmnopqrstuvwxyz"#,
    r#"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopqrstuvwxyz","signature":"#,
    r#""f0Kx5zBench1Sig2nature3Base64Value4AbCdEf5GhIj=","scope":"api","#,
    r#""instance_url":"https://acme.my.salesforce.com","#,
    r#""id":"https://login.salesforce.com/id/00D000000000001AAA/005000000000001AAA","#,
    r#""token_type":"Bearer","issued_at":"1767225600000"}"#
);

/// What the fake answers `GET` [`DATA_PATH`]: about 1 KiB, like one small sObject record.
pub fn data_response() -> Bytes {
    let mut body = String::from(
        r#"{"attributes":{"type":"Account","url":"/services/data/v62.0/sobjects/Account/001000000000001AAA"},"Id":"001000000000001AAA","Name":"Acme Corporation","Type":"Customer - Direct","Industry":"Manufacturing","BillingCity":"San Francisco","BillingCountry":"United States","Phone":"+1 415 555 0100","Website":"https://www.acme.example","NumberOfEmployees":12000,"AnnualRevenue":950000000.0,"OwnerId":"005000000000001AAA","CreatedDate":"2024-01-02T03:04:05.000+0000","LastModifiedDate":"2026-01-02T03:04:05.000+0000","SystemModstamp":"2026-01-02T03:04:05.000+0000","Description":""#,
    );
    while body.len() < 1000 {
        body.push_str("Lorem ipsum dolor sit amet. ");
    }
    body.push_str(r#""}"#);
    Bytes::from(body)
}

/// What a client-credentials request that passes gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenAnswer {
    /// [`FIXED_TOKEN_RESPONSE`], the same bytes every time: no work per request (the benchmark).
    Fixed,
    /// A new access token per request, `issued_at` now and `signature` = HMAC-SHA256 of the
    /// app's client secret over `id + issued_at`, as Salesforce signs: a client knows a 200
    /// body is the fake's own with [`check_signed_answer`] (the soak tool).
    Signed,
}

/// How to start a [`FastSalesforce`].
#[derive(Clone, Copy, Debug)]
pub struct FastConfig<'a> {
    /// The common name of its CA.
    pub ca_name: &'a str,
    /// The host names it has certificates for (SNI); [`MY_DOMAIN`] among them.
    pub hosts: &'a [&'a str],
    pub client_id: &'a str,
    pub client_secret: &'a str,
    pub answer: TokenAnswer,
    /// Also a TLS listener speaking HTTP/1.1 only that closes every connection after one
    /// response.
    pub close_listener: bool,
    /// Also a plain HTTP listener (HTTP/1.1 and h2 with prior knowledge, keep-alive), for a
    /// TLS edge to forward to.
    pub plain_listener: bool,
}

/// The fake's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FastCounts {
    /// Client-credentials requests answered 200.
    pub tokens: u64,
    /// `GET` [`DATA_PATH`] answered.
    pub data: u64,
    pub rejected: u64,
    /// Connections accepted, on all listeners.
    pub connections: u64,
}

#[derive(Default)]
struct Stats {
    tokens: AtomicU64,
    data: AtomicU64,
    rejected: AtomicU64,
    connections: AtomicU64,
    /// Numbers the signed answers' access tokens.
    seq: AtomicU64,
    /// `<status> <error>` → how many.
    reasons: Mutex<BTreeMap<String, u64>>,
    /// The last rejection, in detail.
    last_reject: Mutex<Option<String>>,
}

struct Shared {
    client_id: String,
    client_secret: String,
    answer: TokenAnswer,
    data: Bytes,
    stats: Stats,
}

/// The fake (see the module doc). Its tasks run on the runtime it was started on.
pub struct FastSalesforce {
    main: SocketAddr,
    close: Option<SocketAddr>,
    plain: Option<SocketAddr>,
    ca: TestCa,
    ca_pem_path: PathBuf,
    shared: Arc<Shared>,
    closing: watch::Sender<bool>,
}

impl FastSalesforce {
    /// Start its listeners on 127.0.0.1 (deep backlogs) and write its CA into
    /// `dir/fake-salesforce-ca.pem` (what grantshift's `extra_root_certs` names; in the tool's
    /// work directory, so a kept directory is complete).
    pub async fn start(dir: &Path, config: FastConfig<'_>) -> Result<FastSalesforce, String> {
        let ca = TestCa::new(config.ca_name);
        let ca_pem_path = dir.join("fake-salesforce-ca.pem");
        std::fs::write(&ca_pem_path, ca.pem())
            .map_err(|e| format!("writing {}: {e}", ca_pem_path.display()))?;
        let resolver = sni_resolver(&ca, config.hosts);
        let shared = Arc::new(Shared {
            client_id: config.client_id.to_string(),
            client_secret: config.client_secret.to_string(),
            answer: config.answer,
            data: data_response(),
            stats: Stats::default(),
        });
        let (closing, _) = watch::channel(false);
        let listen = |acceptor: Option<TlsAcceptor>, one_response: bool| {
            let listener =
                bind_loopback_deep().map_err(|e| format!("binding the fake Salesforce: {e}"))?;
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            tokio::spawn(accept_loop(
                listener,
                acceptor,
                shared.clone(),
                one_response,
                closing.subscribe(),
            ));
            Ok::<_, String>(addr)
        };
        let main = listen(
            Some(sni_acceptor(resolver.clone(), &[b"h2", b"http/1.1"])),
            false,
        )?;
        let close = if config.close_listener {
            Some(listen(Some(sni_acceptor(resolver, &[b"http/1.1"])), true)?)
        } else {
            None
        };
        let plain = if config.plain_listener {
            Some(listen(None, false)?)
        } else {
            None
        };
        Ok(FastSalesforce {
            main,
            close,
            plain,
            ca,
            ca_pem_path,
            shared,
            closing,
        })
    }

    /// TLS, h2 + http/1.1, keep-alive.
    pub fn addr(&self) -> SocketAddr {
        self.main
    }

    /// TLS, HTTP/1.1 only, one response per connection (if started with `close_listener`).
    pub fn close_addr(&self) -> Option<SocketAddr> {
        self.close
    }

    /// Plain HTTP (if started with `plain_listener`).
    pub fn plain_addr(&self) -> Option<SocketAddr> {
        self.plain
    }

    /// Its CA: what a client of the fake trusts, and what can sign a TLS edge's certificate.
    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    /// `dir/fake-salesforce-ca.pem`.
    pub fn ca_pem_path(&self) -> &Path {
        &self.ca_pem_path
    }

    pub fn counts(&self) -> FastCounts {
        let s = &self.shared.stats;
        FastCounts {
            tokens: s.tokens.load(Ordering::SeqCst),
            data: s.data.load(Ordering::SeqCst),
            rejected: s.rejected.load(Ordering::SeqCst),
            connections: s.connections.load(Ordering::SeqCst),
        }
    }

    /// Why requests were rejected (`<status> <error>` → how many), and the last one in detail.
    pub fn rejections(&self) -> (BTreeMap<String, u64>, Option<String>) {
        let s = &self.shared.stats;
        (
            s.reasons.lock().unwrap().clone(),
            s.last_reject.lock().unwrap().clone(),
        )
    }

    /// Close every keep-alive connection once its in-flight requests are done (idle ones at
    /// once), as a server's keep-alive timeout would.
    pub fn close_idle(&self) {
        let _ = self.closing.send(true);
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    one_response: bool,
    closing: watch::Receiver<bool>,
) {
    while let Ok((tcp, _)) = listener.accept().await {
        let _ = tcp.set_nodelay(true);
        shared.stats.connections.fetch_add(1, Ordering::Relaxed);
        let (acceptor, shared, closing) = (acceptor.clone(), shared.clone(), closing.clone());
        tokio::spawn(async move {
            let Some(acceptor) = acceptor else {
                serve_connection(tcp, Sni::Plain, shared, one_response, closing).await;
                return;
            };
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let sni = Sni::Tls(tls.get_ref().1.server_name().map(Arc::from));
            serve_connection(tls, sni, shared, one_response, closing).await;
        });
    }
}

/// What the fake checks the Host header against.
#[derive(Clone)]
enum Sni {
    /// The server name the client sent in its TLS hello (`None`: it sent none).
    Tls(Option<Arc<str>>),
    /// Plain HTTP from a TLS edge, which terminated TLS: no server name to check.
    Plain,
}

async fn serve_connection<S>(
    io: S,
    sni: Sni,
    shared: Arc<Shared>,
    one_response: bool,
    mut closing: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let (shared, sni) = (shared.clone(), sni.clone());
        async move { Ok::<_, std::convert::Infallible>(endpoint(req, &sni, &shared).await) }
    });
    if one_response {
        let _ = hyper::server::conn::http1::Builder::new()
            .keep_alive(false)
            .serve_connection(TokioIo::new(io), service)
            .await;
        return;
    }
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        // `is_ok()`: the guard `wait_for` returns must not live across the shutdown's await.
        _ = async { closing.wait_for(|closing| *closing).await.is_ok() } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

async fn endpoint(req: Request<Incoming>, sni: &Sni, shared: &Shared) -> Response<Full<Bytes>> {
    let host = req
        .uri()
        .host()
        .map(str::to_owned)
        .or_else(|| {
            req.headers()
                .get(HOST)
                .and_then(|v| v.to_str().ok())
                .map(|h| h.split(':').next().unwrap_or_default().to_owned())
        })
        .unwrap_or_default();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let has_query = req.uri().query().is_some();
    let stats = &shared.stats;
    let reject = |status: StatusCode, error: &str, description: &str, detail: String| {
        reject(stats, status, error, description, detail)
    };
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
        return reject(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "body error",
            "body error".into(),
        );
    };
    if let Sni::Tls(sni) = sni {
        if sni.as_deref() != Some(host.as_str()) {
            return reject(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "host does not match the TLS server name",
                format!("SNI {sni:?} but host {host}"),
            );
        }
    }
    match (method, path.as_str()) {
        (Method::POST, TOKEN_PATH) => {
            let params: Vec<(String, String)> =
                serde_urlencoded::from_bytes(&body).unwrap_or_default();
            let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
            let detail = || {
                format!(
                    "token request at {host} with grant_type {:?}",
                    get("grant_type")
                )
            };
            // Only the My Domain takes client credentials; a password grant anywhere is what
            // an un-upgraded login would be (and what login.salesforce.com would refuse).
            if host != MY_DOMAIN {
                return reject(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "authentication failure",
                    detail(),
                );
            }
            if get("grant_type") != Some("client_credentials") {
                return reject(
                    StatusCode::BAD_REQUEST,
                    "unsupported_grant_type",
                    "grant type not supported",
                    detail(),
                );
            }
            if get("client_id") != Some(shared.client_id.as_str())
                || get("client_secret") != Some(shared.client_secret.as_str())
            {
                return reject(
                    StatusCode::BAD_REQUEST,
                    "invalid_client",
                    "invalid client credentials",
                    detail(),
                );
            }
            if get("username").is_some() || get("password").is_some() || has_query {
                return reject(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "unexpected username, password or query string",
                    detail(),
                );
            }
            let body = match shared.answer {
                TokenAnswer::Fixed => Bytes::from_static(FIXED_TOKEN_RESPONSE.as_bytes()),
                TokenAnswer::Signed => signed_answer(shared),
            };
            stats.tokens.fetch_add(1, Ordering::Relaxed);
            json(StatusCode::OK, body)
        }
        (Method::GET, DATA_PATH) => {
            stats.data.fetch_add(1, Ordering::Relaxed);
            json(StatusCode::OK, shared.data.clone())
        }
        (method, path) => reject(
            StatusCode::NOT_FOUND,
            "not_found",
            "unknown path",
            format!("{method} {path}"),
        ),
    }
}

/// `id` of every signed answer.
fn signed_id() -> String {
    format!("https://{MY_DOMAIN}/id/{ORG_ID}/{USER_ID}")
}

fn signed_answer(shared: &Shared) -> Bytes {
    let n = shared.stats.seq.fetch_add(1, Ordering::SeqCst);
    let issued_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
        .to_string();
    let id = signed_id();
    let body = serde_json::json!({
        "access_token": format!("{ACCESS_TOKEN_PREFIX}AQfake.{n:08}.cc"),
        "instance_url": format!("https://{MY_DOMAIN}"),
        "id": id,
        "token_type": "Bearer",
        "issued_at": issued_at,
        "signature": token_signature(&shared.client_secret, &id, &issued_at),
        "scope": "api",
    });
    Bytes::from(body.to_string())
}

/// Is `body` a [`TokenAnswer::Signed`] answer of the fake whose app has `client_secret`: its
/// fields, and a signature that verifies?
pub fn check_signed_answer(body: &[u8], client_secret: &str) -> Result<(), String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("body is not JSON ({e})"))?;
    let obj = v.as_object().ok_or("body is not a JSON object")?;
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let expected_keys = [
        "access_token",
        "id",
        "instance_url",
        "issued_at",
        "scope",
        "signature",
        "token_type",
    ];
    if keys != expected_keys {
        return Err(format!("body has keys {keys:?}"));
    }
    let s = |k: &str| obj[k].as_str().unwrap_or_default();
    let id = signed_id();
    let fixed = [
        ("instance_url", format!("https://{MY_DOMAIN}")),
        ("id", id.clone()),
        ("token_type", "Bearer".into()),
        ("scope", "api".into()),
    ];
    for (k, want) in fixed {
        if s(k) != want {
            return Err(format!("{k} is {:?}, expected {want:?}", obj[k]));
        }
    }
    if !s("access_token").starts_with(ACCESS_TOKEN_PREFIX) {
        return Err("access_token is not the fake's".into());
    }
    let issued_at = s("issued_at");
    if issued_at.is_empty() || !issued_at.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("issued_at is {:?}", obj["issued_at"]));
    }
    if s("signature") != token_signature(client_secret, &id, issued_at) {
        return Err("signature does not verify".into());
    }
    Ok(())
}

fn reject(
    stats: &Stats,
    status: StatusCode,
    error: &str,
    description: &str,
    detail: String,
) -> Response<Full<Bytes>> {
    stats.rejected.fetch_add(1, Ordering::SeqCst);
    *stats
        .reasons
        .lock()
        .unwrap()
        .entry(format!("{status} {error}"))
        .or_default() += 1;
    *stats.last_reject.lock().unwrap() = Some(detail);
    let body = serde_json::json!({"error": error, "error_description": description});
    json(status, Bytes::from(body.to_string()))
}

fn json(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static(JSON_CONTENT_TYPE),
    );
    resp
}
