//! Fake upstream servers, all on 127.0.0.1 port 0.

use super::ca::TestCa;
use super::routes::{self, ConnInfo, Recorded, Shared};
use super::salesforce::{Issued, OAuthState, World};
use super::{sha256_hex, SALESFORCE_HOSTS, TUNNEL_HOST, UNTRUSTED_HOST};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::CertificateDer;
use rustls::server::ResolvesServerCertUsingSni;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

pub(crate) fn server_config_builder(
) -> rustls::ConfigBuilder<rustls::ServerConfig, rustls::WantsVerifier> {
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
}

async fn bind() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// Serve HTTP (auto: HTTP/1.1 or HTTP/2, with upgrades) on one accepted connection.
async fn serve_routes<IO>(io: IO, conn: ConnInfo, shared: Arc<Shared>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| routes::handle(req, conn.clone(), shared.clone()));
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .await;
}

/// One leaf certificate per host name from `ca`, chosen by SNI.
pub(crate) fn sni_resolver(ca: &TestCa, hosts: &[&str]) -> Arc<ResolvesServerCertUsingSni> {
    let mut resolver = ResolvesServerCertUsingSni::new();
    for host in hosts {
        resolver
            .add(host, ca.issue(&[host]).certified_key())
            .expect("add SNI certificate");
    }
    Arc::new(resolver)
}

/// TLS with the certificates of `resolver`, offering `alpn`.
pub(crate) fn sni_acceptor(
    resolver: Arc<ResolvesServerCertUsingSni>,
    alpn: &[&[u8]],
) -> TlsAcceptor {
    let mut config = server_config_builder()
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsAcceptor::from(Arc::new(config))
}

/// A stand-in for Salesforce: TLS on 127.0.0.1 with its own test CA, one certificate per
/// [`SALESFORCE_HOSTS`] name chosen by SNI, ALPN h2 and http/1.1, serving [`routes`]; its
/// OAuth endpoints start with [`World::standard`] (change it with [`FakeSalesforce::edit`]).
/// Clones are the same server (fleet tests wire several proxies to one).
#[derive(Clone)]
pub struct FakeSalesforce {
    addr: SocketAddr,
    ca: Arc<TestCa>,
    shared: Arc<Shared>,
}

impl FakeSalesforce {
    /// Offers h2 and http/1.1 by ALPN.
    pub async fn start() -> FakeSalesforce {
        FakeSalesforce::start_with_alpn(&[b"h2", b"http/1.1"]).await
    }

    /// Offers only http/1.1 by ALPN, like an older or HTTP/1-only upstream.
    pub async fn start_http1_only() -> FakeSalesforce {
        FakeSalesforce::start_with_alpn(&[b"http/1.1"]).await
    }

    pub async fn start_with_alpn(alpn: &[&[u8]]) -> FakeSalesforce {
        let ca = TestCa::new("Fake Salesforce Test CA");
        let acceptor = sni_acceptor(sni_resolver(&ca, SALESFORCE_HOSTS), alpn);
        let (listener, addr) = bind().await;
        let shared = Shared::with_oauth(OAuthState::with_world(World::standard()));
        let s = shared.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let shared = s.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let conn = {
                        let (_, session) = tls.get_ref();
                        ConnInfo {
                            sni: session.server_name().map(str::to_string),
                            alpn: session
                                .alpn_protocol()
                                .map(|p| String::from_utf8_lossy(p).into_owned()),
                        }
                    };
                    serve_routes(tls, conn, shared).await;
                });
            }
        });
        FakeSalesforce {
            addr,
            ca: Arc::new(ca),
            shared,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The PEM file of the fake's own CA (grantshift trusts it via `extra_root_certs`).
    pub fn ca_pem_path(&self) -> &Path {
        self.ca.pem_path()
    }

    pub fn ca_pem(&self) -> &str {
        self.ca.pem()
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests()
    }

    /// Requests received on `path`.
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Wait until a request has arrived on `/hold`.
    pub async fn wait_hold_arrived(&self) {
        self.shared.wait_hold_arrived().await
    }

    /// Let held `/hold` requests (and held token requests) answer.
    pub fn release_holds(&self) {
        self.shared.release_holds()
    }

    /// Change the orgs, apps and users (takes effect for the next request).
    pub fn edit(&self, f: impl FnOnce(&mut World)) {
        self.shared.oauth.edit(f)
    }

    /// The orgs, apps and users as they are now.
    pub fn world(&self) -> World {
        self.shared.oauth.world()
    }

    /// Every token the fake issued, in order.
    pub fn issued(&self) -> Vec<Issued> {
        self.shared.oauth.issued()
    }

    /// End the session of `access_token`: API calls with it get 401 `INVALID_SESSION_ID`.
    pub fn end_session(&self, access_token: &str) {
        self.shared.oauth.end_session(access_token)
    }

    /// The introspection endpoint's knobs (session lifetimes, per-token `exp`, failure).
    pub fn introspection(&self) -> &super::salesforce::Introspection {
        &self.shared.oauth.introspection
    }

    /// Requests to the token endpoint, in arrival order.
    pub fn token_requests(&self) -> Vec<Recorded> {
        self.requests_to(super::salesforce::TOKEN_PATH)
    }

    /// The host name (no port) each token request was sent to, in arrival order.
    pub fn token_request_hosts(&self) -> Vec<String> {
        self.token_requests()
            .iter()
            .map(|r| {
                r.host_name()
                    .expect("a token request names its host")
                    .to_string()
            })
            .collect()
    }

    /// Token requests to `host` are recorded and never answered (until
    /// [`release_holds`](Self::release_holds)).
    pub fn hold_token_requests_at(&self, host: &str) {
        self.shared.hold_token_requests_at(host)
    }

    /// Wait until a held token request has arrived.
    pub async fn wait_token_hold_arrived(&self) {
        self.shared.wait_token_hold_arrived().await
    }

    /// As freshly started: [`World::standard`], no tokens issued, no requests recorded (for a
    /// test that runs several cases against one long-lived fake, e.g. behind a real edge).
    pub fn reset(&self) {
        self.shared.oauth.reset(World::standard());
        self.shared.clear_requests();
    }
}

/// The same routes as [`FakeSalesforce`], over plain HTTP (for absolute-form `http://` forwarding).
pub struct PlainHttpServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl PlainHttpServer {
    pub async fn start() -> PlainHttpServer {
        let (listener, addr) = bind().await;
        let shared = Shared::new();
        let s = shared.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let _ = tcp.set_nodelay(true);
                tokio::spawn(serve_routes(tcp, ConnInfo::default(), s.clone()));
            }
        });
        PlainHttpServer { addr, shared }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests()
    }
}

/// The same routes as [`FakeSalesforce`], over TLS with a server config the test brings (say, a
/// leaf grantshift's own CA minted), on 127.0.0.1: what a client is shown when it is handed
/// that certificate.
pub struct ServerConfigTlsServer {
    addr: SocketAddr,
}

impl ServerConfigTlsServer {
    pub async fn start(config: Arc<rustls::ServerConfig>) -> ServerConfigTlsServer {
        let acceptor = TlsAcceptor::from(config);
        let (listener, addr) = bind().await;
        let shared = Shared::new();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let shared = shared.clone();
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        serve_routes(tls, ConnInfo::default(), shared).await;
                    }
                });
            }
        });
        ServerConfigTlsServer { addr }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// A TLS server that grantshift does not intercept by default and does not trust: its own CA,
/// one certificate for [`TUNNEL_HOST`] (and [`UNTRUSTED_HOST`]), HTTP/1.1 only. Every request gets
/// `200` with JSON `{server: "tunnel", sni, method, path, body_len, body_sha256}`.
pub struct TunnelServer {
    addr: SocketAddr,
    ca: TestCa,
    cert: CertificateDer<'static>,
}

impl TunnelServer {
    pub async fn start() -> TunnelServer {
        let ca = TestCa::new("Tunnel Server Test CA");
        let leaf = ca.issue(&[TUNNEL_HOST, UNTRUSTED_HOST]);
        let cert = leaf.chain[0].clone();
        let mut config = server_config_builder()
            .with_no_client_auth()
            .with_single_cert(leaf.chain, leaf.key)
            .expect("tunnel server certificate");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (listener, addr) = bind().await;
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let sni = tls.get_ref().1.server_name().map(str::to_string);
                    let service = service_fn(move |req: Request<Incoming>| {
                        let sni = sni.clone();
                        async move {
                            let method = req.method().to_string();
                            let path = req.uri().path().to_string();
                            let body = req.into_body().collect().await?.to_bytes();
                            let json = serde_json::json!({
                                "server": "tunnel",
                                "sni": sni,
                                "method": method,
                                "path": path,
                                "body_len": body.len(),
                                "body_sha256": sha256_hex(&body),
                            });
                            Ok::<_, hyper::Error>(Response::new(Full::new(bytes::Bytes::from(
                                serde_json::to_vec(&json).unwrap(),
                            ))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        TunnelServer { addr, ca, cert }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn ca_pem(&self) -> &str {
        self.ca.pem()
    }

    pub fn ca_pem_path(&self) -> &Path {
        self.ca.pem_path()
    }

    /// The exact certificate this server presents.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert
    }
}

/// Appended by [`TcpEchoServer`] once it has read end-of-stream from its client.
pub const EOF_MARKER: &[u8] = b"<saw eof>";

/// Raw TCP: echoes every byte back. [`start`](Self::start) (the tests'): when the client shuts
/// down its write side, sends [`EOF_MARKER`] and closes. [`start_for_load`](Self::start_for_load)
/// (the benchmark's and the soak tool's, thousands of tunnels): `TCP_NODELAY`, a deep listen
/// backlog, a small buffer per connection, and on end-of-stream just a shutdown.
pub struct TcpEchoServer {
    addr: SocketAddr,
    /// Connections currently open.
    open: Arc<AtomicUsize>,
}

/// How a [`TcpEchoServer`] serves.
#[derive(Clone, Copy)]
enum EchoKind {
    Test,
    Load,
}

impl TcpEchoServer {
    pub async fn start() -> TcpEchoServer {
        let (listener, addr) = bind().await;
        TcpEchoServer::serve(listener, addr, EchoKind::Test)
    }

    /// The echo server of the load tools (see the type's doc).
    pub fn start_for_load() -> std::io::Result<TcpEchoServer> {
        let listener = bind_loopback_deep()?;
        let addr = listener.local_addr()?;
        Ok(TcpEchoServer::serve(listener, addr, EchoKind::Load))
    }

    fn serve(listener: TcpListener, addr: SocketAddr, kind: EchoKind) -> TcpEchoServer {
        let open = Arc::new(AtomicUsize::new(0));
        let counter = open.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let counter = counter.clone();
                tokio::spawn(async move {
                    match kind {
                        EchoKind::Test => {
                            echo(tcp, &mut vec![0u8; 64 * 1024], Some(EOF_MARKER)).await
                        }
                        EchoKind::Load => {
                            let _ = tcp.set_nodelay(true);
                            echo(tcp, &mut [0u8; 512], None).await
                        }
                    }
                    counter.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        TcpEchoServer { addr, open }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Client connections open now (accepted and not yet closed by the echo side).
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

/// Echo until end-of-stream (then `at_eof`, if any, and a shutdown) or an error.
async fn echo(mut tcp: TcpStream, buf: &mut [u8], at_eof: Option<&[u8]>) {
    loop {
        match tcp.read(buf).await {
            Ok(0) => {
                if let Some(marker) = at_eof {
                    let _ = tcp.write_all(marker).await;
                }
                let _ = tcp.shutdown().await;
                return;
            }
            Ok(n) => {
                if tcp.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// 127.0.0.1, port 0, with a 4096-deep listen backlog, so that no SYN is dropped when a load
/// tool opens hundreds of connections at once (the fakes and echo servers of the benchmark and
/// the soak tool).
pub fn bind_loopback_deep() -> std::io::Result<TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    socket.listen(4096)
}

/// Accepts TCP connections and never reads or writes on them.
pub struct SilentServer {
    addr: SocketAddr,
    _held: Arc<Mutex<Vec<TcpStream>>>,
}

impl SilentServer {
    pub async fn start() -> SilentServer {
        let (listener, addr) = bind().await;
        let held = Arc::new(Mutex::new(Vec::new()));
        let h = held.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                h.lock().unwrap().push(tcp);
            }
        });
        SilentServer { addr, _held: held }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// A loopback address nothing listens on (bound, then released).
pub fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap()
}
