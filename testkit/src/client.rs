//! Clients that go through the proxy: a raw CONNECT, TLS on top of it, HTTP/1.1 or HTTP/2
//! requests with hyper's connection-level client, and raw byte exchanges for malformed input;
//! and the fallible pieces the load tools (the benchmark, the soak tool) build their clients of.

use super::within;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Version};
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1 on a byte stream

/// A response read byte by byte from a raw stream.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Header names lower-cased, in received order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A response head (up to and with its blank line) read byte by byte from a raw stream, so
/// nothing after it is consumed; `Err` with what arrived when the peer closes or resets the
/// connection first.
async fn read_head_bytes<S: AsyncRead + Unpin>(s: &mut S) -> Result<Vec<u8>, Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return Err(head),
        }
        assert!(head.len() < 64 * 1024, "response head too large");
    }
    Ok(head)
}

/// Read a response head from a raw stream, without reading past it; `None` when the peer
/// closes or resets the connection before a whole head arrived.
pub async fn try_read_head<S: AsyncRead + Unpin>(s: &mut S) -> Option<String> {
    let head = read_head_bytes(s).await.ok()?;
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// The status code of a response head's first line.
pub fn status_of(head: &str) -> u16 {
    let status_line = head.split("\r\n").next().unwrap_or_default();
    status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?} in {head:?}"))
}

/// Read a response head (status line and headers) without reading past its blank line; the
/// connection must not close first.
pub async fn read_response_head<S: AsyncRead + Unpin>(s: &mut S) -> (u16, Vec<(String, String)>) {
    let head = read_head_bytes(s).await.unwrap_or_else(|partial| {
        panic!(
            "connection closed before a complete response head; got {:?}",
            String::from_utf8_lossy(&partial)
        )
    });
    let text = String::from_utf8(head).expect("response head is UTF-8");
    let status = status_of(&text);
    let headers = text
        .split("\r\n")
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap_or((l, ""));
            (n.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    (status, headers)
}

/// Read the body that follows a head: by `content-length`, chunked, or until the peer closes.
pub async fn read_response_body<S: AsyncRead + Unpin>(
    s: &mut S,
    headers: &[(String, String)],
) -> Vec<u8> {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    if let Some(len) = get("content-length") {
        let mut body = vec![0u8; len.parse().expect("numeric content-length")];
        s.read_exact(&mut body).await.expect("read body");
        return body;
    }
    if get("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked")) {
        let mut body = Vec::new();
        loop {
            let mut line = Vec::new();
            let mut byte = [0u8; 1];
            while !line.ends_with(b"\r\n") {
                s.read_exact(&mut byte).await.expect("read chunk size");
                line.push(byte[0]);
            }
            let size_text = String::from_utf8_lossy(&line[..line.len() - 2]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                .expect("hex chunk size");
            if size == 0 {
                return body;
            }
            let mut chunk = vec![0u8; size + 2];
            s.read_exact(&mut chunk).await.expect("read chunk");
            body.extend_from_slice(&chunk[..size]);
        }
    }
    let mut body = Vec::new();
    let _ = s.read_to_end(&mut body).await;
    body
}

/// Open a TCP connection to the proxy, send `request` as is, and read the response head. The
/// stream is left right after it: the tunnel after a `200` to CONNECT, else the body follows.
pub async fn raw_request(
    proxy: SocketAddr,
    request: &[u8],
) -> (u16, Vec<(String, String)>, TcpStream) {
    within(20, "the proxy's response head to a raw request", async {
        let mut s = TcpStream::connect(proxy).await.expect("connect to proxy");
        s.set_nodelay(true).unwrap();
        s.write_all(request).await.expect("write raw request");
        let (status, headers) = read_response_head(&mut s).await;
        (status, headers, s)
    })
    .await
}

/// Open a TCP connection to the proxy, send `request` as is, and read one response.
pub async fn raw_exchange(proxy: SocketAddr, request: &[u8]) -> RawResponse {
    within(20, "raw exchange with the proxy", async {
        let (status, headers, mut s) = raw_request(proxy, request).await;
        let body = read_response_body(&mut s, &headers).await;
        RawResponse {
            status,
            headers,
            body,
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// CONNECT

/// Send `CONNECT authority` to the proxy and read its response head. On `200` the returned
/// stream is the tunnel; otherwise the error body is still unread on it (see [`connect_error`]).
pub async fn connect_tunnel(proxy: SocketAddr, authority: &str) -> (u16, TcpStream) {
    let (status, _headers, stream) = connect_tunnel_head(proxy, authority).await;
    (status, stream)
}

/// Like [`connect_tunnel`], also returning the response headers.
pub async fn connect_tunnel_head(
    proxy: SocketAddr,
    authority: &str,
) -> (u16, Vec<(String, String)>, TcpStream) {
    let req = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    within(
        20,
        &format!("CONNECT {authority}"),
        raw_request(proxy, req.as_bytes()),
    )
    .await
}

/// `CONNECT authority`, expecting the proxy to refuse: the whole response, body included.
pub async fn connect_error(proxy: SocketAddr, authority: &str) -> RawResponse {
    let (status, headers, mut s) = connect_tunnel_head(proxy, authority).await;
    assert_ne!(status, 200, "CONNECT {authority} unexpectedly succeeded");
    let body = within(
        20,
        "reading CONNECT error body",
        read_response_body(&mut s, &headers),
    )
    .await;
    RawResponse {
        status,
        headers,
        body,
    }
}

// ---------------------------------------------------------------------------------------------
// Load clients (the benchmark, the soak tool): errors returned, not panics; no per-byte reads

/// Send `CONNECT authority` on `s` and read the response head in chunks (the helpers above
/// read byte by byte, so that nothing past the head is consumed; a load client must not pay a
/// system call per byte on the side it measures). Returns the status. After a `200` nothing
/// may follow the head: the far end of a tunnel speaks only when spoken to, and TLS starts
/// with the client.
pub async fn send_connect<S>(s: &mut S, authority: &str) -> Result<u16, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let req = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("writing CONNECT: {e}"))?;
    let mut head = Vec::with_capacity(128);
    let mut buf = [0u8; 512];
    loop {
        let n = s
            .read(&mut buf)
            .await
            .map_err(|e| format!("reading the CONNECT response: {e}"))?;
        if n == 0 {
            return Err(format!(
                "the proxy closed the connection after {:?}",
                String::from_utf8_lossy(&head)
            ));
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&head[..end]).into_owned();
            let status = text
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("bad CONNECT response {text:?}"))?;
            if status == 200 && head.len() > end + 4 {
                return Err(format!(
                    "{} unexpected bytes after the CONNECT response head",
                    head.len() - end - 4
                ));
            }
            return Ok(status);
        }
        if head.len() > 16 * 1024 {
            return Err("CONNECT response head too large".into());
        }
    }
}

/// A new TCP connection to `proxy` (`TCP_NODELAY`) and a tunnel through it: `CONNECT
/// authority`, which must be answered `200`.
pub async fn try_tunnel(proxy: SocketAddr, authority: &str) -> Result<TcpStream, String> {
    let mut tcp = TcpStream::connect(proxy)
        .await
        .map_err(|e| format!("connecting to the proxy: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let status = send_connect(&mut tcp, authority).await?;
    if status != 200 {
        return Err(format!("CONNECT {authority} answered {status}"));
    }
    Ok(tcp)
}

/// Write `msg` on `s` and read it back: the far end (an echo server, through a tunnel) must
/// return exactly those bytes.
pub async fn try_echo<S>(s: &mut S, msg: &[u8]) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    s.write_all(msg).await.map_err(|e| format!("write: {e}"))?;
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back)
        .await
        .map_err(|e| format!("read: {e}"))?;
    if back != msg {
        return Err(format!(
            "echoed {:?}, sent {:?}",
            String::from_utf8_lossy(&back),
            String::from_utf8_lossy(msg)
        ));
    }
    Ok(())
}

/// TLS for `host` over `io` with `tls`, then an HTTP/1.1 client handshake; a spawned task
/// drives the connection. Any body type (the load clients send `Full<Bytes>`, unboxed).
pub async fn try_h1_over_tls<IO, B>(
    io: IO,
    host: &str,
    tls: &TlsConnector,
) -> Result<http1::SendRequest<B>, String>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let name =
        ServerName::try_from(host.to_string()).map_err(|e| format!("server name {host:?}: {e}"))?;
    let stream = tls
        .connect(name, io)
        .await
        .map_err(|e| format!("TLS with {host}: {e}"))?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP/1.1 handshake with {host}: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

// ---------------------------------------------------------------------------------------------
// TLS

/// Every certificate in a PEM text.
pub fn pem_certs(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("valid PEM certificates")
}

/// A rustls client trusting exactly the certificates in `root_pems` (no web PKI), offering `alpn`.
pub fn client_config(root_pems: &[&str], alpn: &[&[u8]]) -> rustls::ClientConfig {
    try_client_config(root_pems, alpn).unwrap_or_else(|e| panic!("client TLS config: {e}"))
}

/// [`client_config`], with an error instead of a panic (for the load tools, which report it).
pub fn try_client_config(
    root_pems: &[&str],
    alpn: &[&[u8]],
) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for pem in root_pems {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| format!("not a PEM certificate: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("adding a trusted root: {e}"))?;
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("ring and the default protocol versions: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// TLS handshake over `stream` for `server_name` with `config`; the error says why it failed.
pub async fn try_tls_connect_with<S>(
    stream: S,
    server_name: &str,
    config: rustls::ClientConfig,
) -> std::io::Result<TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let name = ServerName::try_from(server_name.to_string()).expect("valid server name");
    within(
        20,
        &format!("TLS handshake for {server_name}"),
        TlsConnector::from(Arc::new(config)).connect(name, stream),
    )
    .await
}

/// TLS handshake over `stream` trusting only `root_pem`, offering `alpn`.
pub async fn try_tls_connect<S>(
    stream: S,
    server_name: &str,
    root_pem: &str,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    try_tls_connect_with(stream, server_name, client_config(&[root_pem], alpn)).await
}

/// [`try_tls_connect`], failing the test if the handshake fails.
pub async fn tls_connect<S>(
    stream: S,
    server_name: &str,
    root_pem: &str,
    alpn: &[&[u8]],
) -> TlsStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    try_tls_connect(stream, server_name, root_pem, alpn)
        .await
        .unwrap_or_else(|e| panic!("TLS handshake for {server_name} failed: {e}"))
}

/// The certificate the server presented (first of its chain).
pub fn peer_leaf<S>(tls: &TlsStream<S>) -> CertificateDer<'static> {
    tls.get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("server presented a certificate")
        .clone()
        .into_owned()
}

/// The ALPN protocol the handshake settled on.
pub fn negotiated_alpn<S>(tls: &TlsStream<S>) -> Option<Vec<u8>> {
    tls.get_ref().1.alpn_protocol().map(|p| p.to_vec())
}

/// What a user reads off a certificate.
#[derive(Debug)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    pub dns_names: Vec<String>,
    pub is_ca: bool,
}

pub fn cert_info(der: &[u8]) -> CertInfo {
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("parse X.509 certificate");
    let dns_names = cert
        .subject_alternative_name()
        .expect("well-formed SAN extension")
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        dns_names,
        is_ca: cert.is_ca(),
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 and HTTP/2 requests

/// Request body type of the test clients.
pub type ReqBody = BoxBody<Bytes, Infallible>;

pub fn empty() -> ReqBody {
    Empty::new().boxed()
}

pub fn full(bytes: impl Into<Bytes>) -> ReqBody {
    Full::new(bytes.into()).boxed()
}

/// A streamed body: `chunks`, then `trailers`.
pub fn body_with_trailers(chunks: Vec<Bytes>, trailers: HeaderMap) -> ReqBody {
    let mut frames: Vec<Result<Frame<Bytes>, Infallible>> =
        chunks.into_iter().map(|c| Ok(Frame::data(c))).collect();
    frames.push(Ok(Frame::trailers(trailers)));
    BodyExt::boxed(StreamBody::new(futures_util::stream::iter(frames)))
}

/// Which HTTP version a client speaks (and offers by ALPN).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Http {
    H1,
    H2,
}

impl Http {
    pub fn alpn(self) -> &'static [u8] {
        match self {
            Http::H1 => b"http/1.1",
            Http::H2 => b"h2",
        }
    }
}

/// A whole response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (e.g. `/echo`'s answer).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "expected JSON from upstream, got status {} body {:?}: {e}",
                self.status,
                self.text()
            )
        })
    }
}

/// `[[name, value], ...]` from an `/echo` answer, as pairs.
pub fn json_pairs(v: &serde_json::Value) -> Vec<(String, String)> {
    v.as_array()
        .expect("array of pairs")
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_string(),
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

enum Sender {
    H1(http1::SendRequest<ReqBody>),
    H2(http2::SendRequest<ReqBody>),
}

/// One client HTTP connection (over a tunnel, TLS, or straight to the proxy front).
pub struct HttpConn {
    sender: Sender,
    http: Http,
}

impl HttpConn {
    pub async fn handshake<S>(io: S, http: Http) -> HttpConn
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let io = TokioIo::new(io);
        let sender = within(20, "HTTP client handshake", async {
            match http {
                Http::H1 => {
                    let (sender, conn) = http1::handshake(io).await.expect("HTTP/1.1 handshake");
                    tokio::spawn(conn.with_upgrades());
                    Sender::H1(sender)
                }
                Http::H2 => {
                    let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
                        .await
                        .expect("HTTP/2 handshake");
                    tokio::spawn(conn);
                    Sender::H2(sender)
                }
            }
        })
        .await;
        HttpConn { sender, http }
    }

    /// A request to `host` as an HTTPS client would write it on this connection: HTTP/1.1
    /// origin-form with a `Host` header, HTTP/2 with `https://host/...` (→ `:authority`).
    pub fn request(
        &self,
        method: Method,
        host: &str,
        path_and_query: &str,
    ) -> http::request::Builder {
        match self.http {
            Http::H1 => Request::builder()
                .method(method)
                .uri(path_and_query)
                .header(http::header::HOST, host),
            Http::H2 => Request::builder()
                .method(method)
                .version(Version::HTTP_2)
                .uri(format!("https://{host}{path_and_query}")),
        }
    }

    /// Send `req` and read the whole response, body and trailers.
    pub async fn try_send(&mut self, req: Request<ReqBody>) -> Result<Reply, hyper::Error> {
        within(60, "HTTP exchange through the proxy", async {
            let resp = match &mut self.sender {
                Sender::H1(s) => {
                    s.ready().await?;
                    s.send_request(req).await?
                }
                Sender::H2(s) => {
                    s.ready().await?;
                    s.send_request(req).await?
                }
            };
            let (parts, body) = resp.into_parts();
            let collected = body.collect().await?;
            let trailers = collected.trailers().cloned();
            Ok(Reply {
                status: parts.status,
                version: parts.version,
                headers: parts.headers,
                body: collected.to_bytes(),
                trailers,
            })
        })
        .await
    }

    pub async fn send(&mut self, req: Request<ReqBody>) -> Reply {
        self.try_send(req)
            .await
            .unwrap_or_else(|e| panic!("HTTP exchange failed: {e:?}"))
    }

    /// `GET https://host/path_and_query` with `Authorization: Bearer <access_token>` (an API
    /// call with a token).
    pub async fn get_with_bearer(
        &mut self,
        host: &str,
        path_and_query: &str,
        access_token: &str,
    ) -> Reply {
        let req = self
            .request(Method::GET, host, path_and_query)
            .header("authorization", format!("Bearer {access_token}"))
            .body(empty())
            .unwrap();
        self.send(req).await
    }

    /// `GET https://host/path_and_query`.
    pub async fn get(&mut self, host: &str, path_and_query: &str) -> Reply {
        let req = self
            .request(Method::GET, host, path_and_query)
            .body(empty())
            .unwrap();
        self.send(req).await
    }
}
