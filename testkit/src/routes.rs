//! What the fake upstreams answer, and the record of what they received.
//!
//! Routing is one `match` on the path in [`handle`]: add a route by adding an arm.
//!
//! - `/services/oauth2/token`, `/services/data/…`, `/id/<org>/<user>`: the Salesforce OAuth
//!   endpoints of [`super::salesforce`] (the fake's orgs, apps and users). A token request to
//!   a host named in [`Shared::hold_token_requests_at`] is recorded and then never answered
//!   (until [`Shared::release_holds`]).
//! - `/services/Soap/…`: the SOAP API's login side ([`super::salesforce::soap`]), recorded
//!   with the bytes it answered, like the other Salesforce endpoints.
//! - `/echo` (any method): reads the whole request (body and trailers) and answers JSON
//!   `{method, uri, version, host, sni, alpn, headers: [[name, value], ..] (received order),
//!   body_len, body_sha256, trailers: [[name, value], ..]}`.
//! - `/bytes?n=N`: `N` bytes of [`pseudo_random_bytes`] with header `x-sha256`.
//! - `/trailers`: a streamed body, then response trailers `x-checksum` (sha256 of the body) and
//!   `x-trailer-two`.
//! - `/ws`: a WebSocket echo (101, then every text/binary message is sent back).
//! - `/hold`: does not answer until the test calls [`Shared::release_holds`].
//! - `/status/NNN`: answers status NNN with a one-line body.
//! - anything else: 404.

use super::salesforce::{self, OAuthState, SfResponse};
use super::{pseudo_random_bytes, sha256_hex, BYTES_SEED};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

/// Response body type of the fake upstreams.
pub type RespBody = BoxBody<Bytes, Infallible>;

/// What the TLS layer of an upstream connection negotiated (both `None` for plain HTTP).
#[derive(Clone, Debug, Default)]
pub struct ConnInfo {
    pub sni: Option<String>,
    pub alpn: Option<String>,
}

/// One request as a fake upstream received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// `Host` header, else the URI authority (HTTP/2 `:authority`).
    pub host: Option<String>,
    pub path: String,
    pub query: Option<String>,
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    /// Header names (lower case) and values, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(String, String)>,
    pub sni: Option<String>,
    pub alpn: Option<String>,
    /// For the Salesforce endpoints: the status and body bytes the fake answered with.
    pub response_status: Option<u16>,
    pub response_body: Option<Vec<u8>>,
}

impl Recorded {
    /// The request parameters as the fake's token endpoint reads them: the query string, then
    /// the form body (leniently decoded).
    pub fn params(&self) -> Vec<(String, String)> {
        let mut params = salesforce::form_pairs(self.query.as_deref().unwrap_or("").as_bytes());
        params.extend(salesforce::form_pairs(&self.body));
        params
    }

    /// The first value of parameter `name`.
    pub fn param(&self, name: &str) -> Option<String> {
        self.params()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// Parameter names, in order.
    pub fn param_names(&self) -> Vec<String> {
        self.params().into_iter().map(|(k, _)| k).collect()
    }

    /// `Host` without a port.
    pub fn host_name(&self) -> Option<&str> {
        self.host
            .as_deref()
            .map(|h| h.rsplit_once(':').map_or(h, |(name, _)| name))
    }

    /// Every value of header `name`, in order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn has_header(&self, name: &str) -> bool {
        !self.header_values(name).is_empty()
    }
}

/// State shared by every connection of one fake upstream.
pub struct Shared {
    requests: Mutex<Vec<Recorded>>,
    hold_arrivals: Semaphore,
    hold_release: watch::Sender<bool>,
    /// The orgs, apps and users, and the tokens issued.
    pub oauth: OAuthState,
    token_holds: Mutex<HashSet<String>>,
    token_hold_arrivals: Semaphore,
}

impl Shared {
    pub fn new() -> Arc<Shared> {
        Shared::with_oauth(OAuthState::default())
    }

    pub fn with_oauth(oauth: OAuthState) -> Arc<Shared> {
        Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            hold_arrivals: Semaphore::new(0),
            hold_release: watch::channel(false).0,
            oauth,
            token_holds: Mutex::new(HashSet::new()),
            token_hold_arrivals: Semaphore::new(0),
        })
    }

    /// Token requests to `host` are recorded and then left unanswered (a My Domain that
    /// accepts the connection and never responds).
    pub fn hold_token_requests_at(&self, host: &str) {
        self.token_holds
            .lock()
            .unwrap()
            .insert(host.to_ascii_lowercase());
    }

    /// Wait until one more held token request has arrived.
    pub async fn wait_token_hold_arrived(&self) {
        self.token_hold_arrivals
            .acquire()
            .await
            .expect("hold semaphore is never closed")
            .forget();
    }

    /// Forget every request received so far.
    pub fn clear_requests(&self) {
        self.requests.lock().unwrap().clear();
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// Wait until one more request has arrived on `/hold` (each call consumes one arrival).
    pub async fn wait_hold_arrived(&self) {
        self.hold_arrivals
            .acquire()
            .await
            .expect("hold semaphore is never closed")
            .forget();
    }

    /// Let every held `/hold` request (and every later one) answer `200 released`.
    pub fn release_holds(&self) {
        self.hold_release.send_replace(true);
    }

    fn record(&self, r: Recorded) -> usize {
        let mut requests = self.requests.lock().unwrap();
        requests.push(r);
        requests.len() - 1
    }

    fn record_response(&self, index: usize, resp: &SfResponse) {
        let mut requests = self.requests.lock().unwrap();
        requests[index].response_status = Some(resp.status.as_u16());
        requests[index].response_body = Some(resp.body.clone());
    }
}

fn header_list(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn full(bytes: impl Into<Bytes>) -> RespBody {
    Full::new(bytes.into()).boxed()
}

fn text(status: StatusCode, line: &str) -> Response<RespBody> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(full(format!("{line}\n")))
        .unwrap()
}

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Serve one request of a fake upstream.
pub async fn handle(
    mut req: Request<Incoming>,
    conn: ConnInfo,
    shared: Arc<Shared>,
) -> Result<Response<RespBody>, Infallible> {
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    let mut recorded = Recorded {
        method: req.method().to_string(),
        host,
        path: req.uri().path().to_string(),
        query: req.uri().query().map(str::to_string),
        version: format!("{:?}", req.version()),
        headers: header_list(req.headers()),
        body: Vec::new(),
        trailers: Vec::new(),
        sni: conn.sni.clone(),
        alpn: conn.alpn.clone(),
        response_status: None,
        response_body: None,
    };

    if recorded.path == "/ws" {
        let _ = shared.record(recorded);
        return Ok(websocket(&mut req));
    }

    let uri = req.uri().to_string();
    let headers = req.headers().clone();
    let collected = match req.into_body().collect().await {
        Ok(c) => c,
        Err(e) => return Ok(text(StatusCode::BAD_REQUEST, &format!("body error: {e}"))),
    };
    if let Some(t) = collected.trailers() {
        recorded.trailers = header_list(t);
    }
    let body = collected.to_bytes();
    recorded.body = body.to_vec();
    let index = shared.record(recorded.clone());

    let path = recorded.path.as_str();
    let sf_host = recorded.host_name().unwrap_or("").to_ascii_lowercase();
    let call = salesforce::Call {
        method: &recorded.method,
        host: &sf_host,
        path,
        query: recorded.query.as_deref(),
        headers: &headers,
        body: &body,
    };
    let salesforce_route = if path == salesforce::TOKEN_PATH {
        if shared.token_holds.lock().unwrap().contains(&sf_host) {
            shared.token_hold_arrivals.add_permits(1);
            let mut release = shared.hold_release.subscribe();
            let _ = release.wait_for(|released| *released).await;
        }
        Some(shared.oauth.token(&call))
    } else if path == salesforce::REVOKE_PATH {
        Some(shared.oauth.revoke(&call))
    } else if path == salesforce::INTROSPECT_PATH {
        Some(shared.oauth.introspect(&call))
    } else if path.starts_with("/services/data/") {
        Some(shared.oauth.data(&call))
    } else if path.starts_with("/id/") {
        Some(shared.oauth.identity(&call))
    } else if path.starts_with(salesforce::soap::SOAP_PREFIX) {
        Some(shared.oauth.soap(&call))
    } else {
        None
    };
    if let Some(sf) = salesforce_route {
        shared.record_response(index, &sf);
        let mut builder = Response::builder().status(sf.status);
        for (name, value) in &sf.headers {
            builder = builder.header(*name, value);
        }
        return Ok(builder.body(full(sf.body)).unwrap());
    }

    let resp = match path {
        "/echo" => echo(&recorded, &uri, &body),
        "/bytes" => {
            let n = query_param(recorded.query.as_deref(), "n")
                .and_then(|n| n.parse().ok())
                .unwrap_or(1024);
            let bytes = pseudo_random_bytes(n, BYTES_SEED);
            Response::builder()
                .header("content-type", "application/octet-stream")
                .header("x-sha256", sha256_hex(&bytes))
                .body(full(bytes))
                .unwrap()
        }
        "/trailers" => trailers_response(),
        "/hold" => {
            shared.hold_arrivals.add_permits(1);
            let mut release = shared.hold_release.subscribe();
            let _ = release.wait_for(|released| *released).await;
            text(StatusCode::OK, "released")
        }
        _ if path.starts_with("/status/") => {
            let code = path["/status/".len()..]
                .parse::<u16>()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::BAD_REQUEST);
            text(code, &format!("status {}", code.as_u16()))
        }
        _ => text(StatusCode::NOT_FOUND, &format!("no route for {path}")),
    };
    Ok(resp)
}

fn echo(r: &Recorded, uri: &str, body: &[u8]) -> Response<RespBody> {
    let json = serde_json::json!({
        "method": r.method,
        "uri": uri,
        "version": r.version,
        "host": r.host,
        "sni": r.sni,
        "alpn": r.alpn,
        "headers": r.headers,
        "body_len": body.len(),
        "body_sha256": sha256_hex(body),
        "trailers": r.trailers,
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(full(serde_json::to_vec(&json).unwrap()))
        .unwrap()
}

/// The chunks `/trailers` streams; its `x-checksum` trailer is the sha256 of their concatenation.
pub const TRAILER_CHUNKS: &[&str] = &["first chunk\n", "second chunk\n", "third chunk\n"];

fn trailers_response() -> Response<RespBody> {
    let body: Vec<u8> = TRAILER_CHUNKS.concat().into_bytes();
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", sha256_hex(&body).parse().unwrap());
    trailers.insert("x-trailer-two", "done".parse().unwrap());
    let mut frames: Vec<Result<Frame<Bytes>, Infallible>> = TRAILER_CHUNKS
        .iter()
        .map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes()))))
        .collect();
    frames.push(Ok(Frame::trailers(trailers)));
    Response::builder()
        .header("content-type", "text/plain")
        .header("trailer", "x-checksum, x-trailer-two")
        .body(BodyExt::boxed(StreamBody::new(futures_util::stream::iter(
            frames,
        ))))
        .unwrap()
}

fn websocket(req: &mut Request<Incoming>) -> Response<RespBody> {
    let is_upgrade = req
        .headers()
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return text(StatusCode::BAD_REQUEST, "missing sec-websocket-key");
    };
    if !is_upgrade {
        return text(StatusCode::BAD_REQUEST, "missing upgrade: websocket");
    }
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(Ok(msg)) = ws.next().await {
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                break;
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(http::header::UPGRADE, "websocket")
        .header(http::header::CONNECTION, "Upgrade")
        .header("sec-websocket-accept", derive_accept_key(key.as_bytes()))
        .body(Empty::new().boxed())
        .unwrap()
}
