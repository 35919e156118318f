//! Helpers for the hardening tests (access, limits, faults, panics), which run the
//! [`TestProxy`] with `[proxy]` and `[upstream]` keys of their own (limits, `auth`,
//! `allow_clients`, `connect_to_only`, `pool_idle_timeout`: [`proxy`](crate::TestProxyBuilder::proxy)
//! and [`upstream`](crate::TestProxyBuilder::upstream) lines) and read `grantshift_connections_active` and the leaf-cache
//! size of the running proxy through its [`ProxyHandle`](grantshift::ProxyHandle):
//!
//! - Leak checks: [`open_fds`] (this process's `/proc/self/fd`, the in-process proxy's included),
//!   [`eventually`] (a bounded wait for an observable condition) and
//!   [`TestProxy::assert_nothing_leaked`]; [`in_own_process`] runs an fd-counting test
//!   alone in a child process of its test binary.
//! - Misbehaving upstreams: [`MisbehavingUpstream`] (TLS that resets mid-body or never
//!   answers), [`NotTlsServer`] (answers a ClientHello with plain text) and [`DripServer`]
//!   (raw TCP that sends a little every interval: a steady one-way download).
//! - A stalled events file: [`StalledFile`] (a FIFO nobody reads: the writer blocks on it).

use super::ca::TestCa;
use super::client::{connect_tunnel, peer_leaf};
use super::proxy::TestProxy;
use super::within;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

// ---------------------------------------------------------------------------------------------
// The test proxy's connection gauges

/// The connection kinds of `grantshift_connections_active{kind}`.
pub const CONNECTION_KINDS: &[&str] = &["tunnel", "intercept", "http"];

/// The hardening tests' checks on a running [`TestProxy`].
impl TestProxy {
    /// `grantshift_connections_active{kind="<kind>"}` as the running proxy reports it.
    pub fn active(&self, kind: &str) -> i64 {
        gauge(&self.handle().metrics_text(), kind)
    }

    /// `grantshift_token_body_bytes`: token request body bytes buffered now.
    pub fn token_body_bytes(&self) -> i64 {
        let text = self.handle().metrics_text();
        let exposition = super::admin::parse_openmetrics(&text).expect("valid exposition");
        exposition
            .series("grantshift_token_body_bytes")
            .values()
            .next()
            .copied()
            .expect("grantshift_token_body_bytes is exposed") as i64
    }

    /// Wait (bounded) until every `grantshift_connections_active` gauge is 0.
    pub async fn assert_no_active_connections(&self) {
        eventually(
            "every grantshift_connections_active gauge back to 0",
            || {
                let text = self.handle().metrics_text();
                let open: Vec<String> = CONNECTION_KINDS
                    .iter()
                    .filter(|k| gauge(&text, k) != 0)
                    .map(|k| format!("{k}={}", gauge(&text, k)))
                    .collect();
                if open.is_empty() {
                    Ok(())
                } else {
                    Err(format!("still active: {open:?}"))
                }
            },
        )
        .await;
    }

    /// Wait (bounded) until every `grantshift_connections_active` gauge is 0 and this process
    /// has no more open file descriptors than `baseline_fds` (taken after setup, before the
    /// fault). The test's own clients must be closed first.
    pub async fn assert_nothing_leaked(&self, baseline_fds: usize) {
        self.assert_no_active_connections().await;
        eventually("open file descriptors back to the baseline", || {
            let now = open_fds();
            if now <= baseline_fds {
                Ok(())
            } else {
                Err(format!(
                    "{now} open fds, baseline {baseline_fds}; open now: {:?}",
                    fd_targets()
                ))
            }
        })
        .await;
    }
}

/// The value of `grantshift_connections_active{kind="<kind>"}` in a metrics exposition.
pub fn gauge(metrics_text: &str, kind: &str) -> i64 {
    let prefix = format!("grantshift_connections_active{{kind=\"{kind}\"}} ");
    let line = metrics_text
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in the metrics:\n{metrics_text}"));
    line[prefix.len()..]
        .trim()
        .parse::<f64>()
        .unwrap_or_else(|e| panic!("{line:?}: {e}")) as i64
}

// ---------------------------------------------------------------------------------------------
// Leak checks and bounded waits

/// Open file descriptors of this process (the in-process proxy's, the fake upstreams' and the
/// test's own clients').
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .count()
}

/// What each open fd is (`socket:[…]`, a file path, …), for a failure message.
pub fn fd_targets() -> Vec<String> {
    super::process::fd_targets_of("self")
}

/// A FIFO that nobody reads yet: a writer that opens it blocks there, as the events writer
/// would on a full disk or a hung NFS mount, until [`read_to_end`](Self::read_to_end) opens
/// it for reading.
pub struct StalledFile {
    path: std::path::PathBuf,
}

impl StalledFile {
    /// `mkfifo path`.
    pub fn create(path: &Path) -> StalledFile {
        let status = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .expect("run mkfifo");
        assert!(status.success(), "mkfifo {}: {status}", path.display());
        StalledFile {
            path: path.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Open it for reading (the blocked writer goes on) and read until the writer closes it;
    /// fails the test after `secs` seconds.
    pub async fn read_to_end(&self, secs: u64) -> String {
        let path = self.path.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        // A thread of its own, not the runtime's blocking pool: should the writer never come,
        // the test fails instead of its runtime waiting for the thread at the end.
        std::thread::spawn(move || {
            let _ = tx.send(std::fs::read_to_string(path));
        });
        within(secs, "reading the stalled file to its end", rx)
            .await
            .expect("reader thread")
            .expect("read the FIFO")
    }
}

/// How long [`eventually`] waits before failing.
pub const EVENTUALLY_SECS: u64 = 10;

/// Poll `check` until it returns `Ok` (a bounded wait for an observable condition); fail the
/// test with the last `Err` after [`EVENTUALLY_SECS`].
pub async fn eventually(what: &str, mut check: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(EVENTUALLY_SECS);
    loop {
        match check() {
            Ok(()) => return,
            Err(last) if Instant::now() >= deadline => {
                panic!("{what}: not reached within {EVENTUALLY_SECS}s: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Set in the environment of the child process [`in_own_process`] starts: the name of the one
/// test it runs there.
const OWN_PROCESS_ENV: &str = "TESTKIT_IN_OWN_PROCESS";

/// Run `test` alone in a process of its own, on a fresh multi-threaded runtime: for a test that
/// counts something process-wide (this process's open file descriptors), which the other
/// tests of the same test binary, running in parallel in its process, would move.
///
/// Called from a `#[test]` fn, it runs that test again in a child process of the test binary
/// (`<name> --exact --test-threads=1`, its name from the libtest thread that runs it), and
/// fails unless the child ran exactly that one test and it passed. In the child, it runs
/// `test`.
pub fn in_own_process<F: Future<Output = ()>>(test: F) {
    let current = std::thread::current();
    let name = current
        .name()
        .filter(|n| *n != "main")
        .expect("in_own_process runs in a #[test] fn (libtest names its thread after the test)");
    if std::env::var_os(OWN_PROCESS_ENV).is_some_and(|v| v == name) {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(test);
        return;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = std::process::Command::new(&exe)
        .args([name, "--exact", "--test-threads=1"])
        .env(OWN_PROCESS_ENV, name)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {} {name}: {e}", exe.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed;"),
        "{name} in a process of its own: {:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
}

/// Read from `s` until the peer closes (EOF) or resets the connection, within `secs`; returns
/// what arrived first. Panics if the connection is still open after `secs`.
pub async fn read_until_closed<S: AsyncRead + Unpin>(s: &mut S, secs: u64, what: &str) -> Vec<u8> {
    within(secs, what, async {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return got,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
}

/// One echo round trip through a tunnel to the echo server.
pub async fn echo_round_trip(tunnel: &mut TcpStream, payload: &[u8]) {
    within(
        10,
        "echo through the tunnel",
        super::client::try_echo(tunnel, payload),
    )
    .await
    .unwrap_or_else(|e| panic!("the tunnel carries bytes both ways: {e}"));
}

// ---------------------------------------------------------------------------------------------
// Many TLS handshakes (leaf certificates for many names)

/// The serial number of a DER certificate.
pub fn serial(der: &[u8]) -> Vec<u8> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("parse leaf");
    cert.tbs_certificate.raw_serial().to_vec()
}

/// CONNECT `host:443` and complete a TLS handshake with SNI `host`; the leaf presented.
pub async fn handshake(
    proxy: SocketAddr,
    connector: &tokio_rustls::TlsConnector,
    host: &str,
) -> Vec<u8> {
    let (status, tcp) = connect_tunnel(proxy, &format!("{host}:443")).await;
    assert_eq!(status, 200, "CONNECT {host}:443");
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).unwrap();
    let tls = within(20, "TLS handshake", connector.connect(name, tcp))
        .await
        .unwrap_or_else(|e| panic!("TLS handshake for {host}: {e}"));
    peer_leaf(&tls).to_vec()
}

/// Handshakes for `hosts`, `parallel` at a time; the serial number of each host's leaf.
pub async fn handshakes(
    proxy: SocketAddr,
    connector: &tokio_rustls::TlsConnector,
    hosts: Vec<String>,
    parallel: usize,
) -> HashMap<String, Vec<u8>> {
    let limit = Arc::new(tokio::sync::Semaphore::new(parallel));
    let mut set = tokio::task::JoinSet::new();
    for host in hosts {
        let permit = limit.clone().acquire_owned().await.unwrap();
        let connector = connector.clone();
        set.spawn(async move {
            let leaf = handshake(proxy, &connector, &host).await;
            drop(permit);
            (host, serial(&leaf))
        });
    }
    let mut serials = HashMap::new();
    while let Some(done) = set.join_next().await {
        let (host, serial) = done.expect("handshake task");
        serials.insert(host, serial);
    }
    serials
}

// ---------------------------------------------------------------------------------------------
// Misbehaving upstreams

/// What a [`MisbehavingUpstream`] does with each request.
#[derive(Clone, Copy, Debug)]
pub enum Misbehaviour {
    /// Answer `200` with `Content-Length: declared`, send `sent` body bytes, then reset the
    /// connection (RST).
    ResetMidBody { declared: usize, sent: usize },
    /// Read the request and everything after it, never answer; close when the peer closes.
    NeverAnswer,
    /// Answer `200` (JSON) with `Content-Length: declared`, send `sent` body bytes, then stall:
    /// send nothing more, close when the peer closes.
    StallMidBody { declared: usize, sent: usize },
    /// Answer every request (bodiless) with these bytes, as they are, on a kept-open
    /// connection.
    Answer(&'static [u8]),
}

/// A TLS upstream (its own test CA, one certificate for its hosts, HTTP/1.1 only) that reads
/// a request head and then misbehaves. Counts the bytes it received and its open connections.
pub struct MisbehavingUpstream {
    addr: SocketAddr,
    ca: TestCa,
    received: watch::Receiver<usize>,
    open: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
}

impl MisbehavingUpstream {
    pub async fn start(hosts: &[&str], behaviour: Misbehaviour) -> MisbehavingUpstream {
        let ca = TestCa::new("Misbehaving Upstream Test CA");
        let leaf = ca.issue(hosts);
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_single_cert(leaf.chain, leaf.key)
        .expect("misbehaving upstream certificate");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let (received_tx, received) = watch::channel(0usize);
        let received_tx = Arc::new(received_tx);
        let open = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (o, a) = (open.clone(), accepted.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let guard = OpenGuard::new(o.clone());
                let acceptor = acceptor.clone();
                let received_tx = received_tx.clone();
                tokio::spawn(async move {
                    let _guard = guard;
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = vec![0u8; 16 * 1024];
                    let mut head = Vec::new();
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                head.extend_from_slice(&buf[..n]);
                                received_tx.send_modify(|r| *r += n);
                            }
                        }
                    }
                    match behaviour {
                        Misbehaviour::ResetMidBody { declared, sent } => {
                            let resp =
                                partial_answer("application/octet-stream", b'x', declared, sent);
                            if tls.write_all(&resp).await.is_err() || tls.flush().await.is_err() {
                                return;
                            }
                            let _ = tls.get_ref().0.set_zero_linger();
                            // Dropped here: with SO_LINGER 0 the close is a reset.
                        }
                        Misbehaviour::StallMidBody { declared, sent } => {
                            let resp = partial_answer("application/json", b'{', declared, sent);
                            if tls.write_all(&resp).await.is_err() || tls.flush().await.is_err() {
                                return;
                            }
                            // Then nothing more: read until the peer closes.
                            while let Ok(n) = tls.read(&mut buf).await {
                                if n == 0 {
                                    return;
                                }
                                received_tx.send_modify(|r| *r += n);
                            }
                        }
                        Misbehaviour::Answer(bytes) => loop {
                            // One answer per request head (bodiless requests only).
                            if tls.write_all(bytes).await.is_err() || tls.flush().await.is_err() {
                                return;
                            }
                            head.clear();
                            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                                match tls.read(&mut buf).await {
                                    Ok(0) | Err(_) => return,
                                    Ok(n) => {
                                        head.extend_from_slice(&buf[..n]);
                                        received_tx.send_modify(|r| *r += n);
                                    }
                                }
                            }
                        },
                        Misbehaviour::NeverAnswer => loop {
                            match tls.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => received_tx.send_modify(|r| *r += n),
                            }
                        },
                    }
                });
            }
        });
        MisbehavingUpstream {
            addr,
            ca,
            received,
            open,
            accepted,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The PEM file of this server's CA (for the proxy's `extra_root_certs`).
    pub fn ca_pem_path(&self) -> &Path {
        self.ca.pem_path()
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Wait until at least `n` bytes (request heads and bodies, decrypted) have arrived.
    pub async fn wait_received(&self, n: usize) {
        let mut rx = self.received.clone();
        within(10, &format!("{n} bytes reaching the upstream"), async {
            rx.wait_for(|r| *r >= n).await.expect("upstream alive");
        })
        .await;
    }
}

/// A `200` head of `content_type` declaring `declared` body bytes, and the first `sent` of them
/// (`fill`).
fn partial_answer(content_type: &str, fill: u8, declared: usize, sent: usize) -> Vec<u8> {
    let mut resp = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {declared}\r\n\r\n"
    )
    .into_bytes();
    resp.extend(std::iter::repeat_n(fill, sent));
    resp
}

/// Counts a connection as open until dropped.
struct OpenGuard(Arc<AtomicUsize>);

impl OpenGuard {
    fn new(count: Arc<AtomicUsize>) -> OpenGuard {
        count.fetch_add(1, Ordering::SeqCst);
        OpenGuard(count)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Accepts TCP, reads what the client sends first (a TLS ClientHello), answers with a plain
/// HTTP error instead of a ServerHello, and closes: a TLS handshake that fails.
pub struct NotTlsServer {
    addr: SocketAddr,
    open: Arc<AtomicUsize>,
}

impl NotTlsServer {
    pub async fn start() -> NotTlsServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicUsize::new(0));
        let o = open.clone();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let guard = OpenGuard::new(o.clone());
                tokio::spawn(async move {
                    let _guard = guard;
                    let mut buf = [0u8; 4096];
                    if matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {
                        let _ = tcp
                            .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                            .await;
                    }
                    let _ = tcp.shutdown().await;
                });
            }
        });
        NotTlsServer { addr, open }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

/// The line a [`DripServer`] sends each interval.
pub const DRIP: &[u8] = b"tick\n";

/// Raw TCP: on each connection sends [`DRIP`] `ticks` times, `every` apart, reading nothing,
/// then closes. A steady one-way download through a blind tunnel.
pub struct DripServer {
    addr: SocketAddr,
}

impl DripServer {
    pub async fn start(ticks: usize, every: Duration) -> DripServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut interval = tokio::time::interval(every);
                    for _ in 0..ticks {
                        interval.tick().await;
                        if tcp.write_all(DRIP).await.is_err() {
                            return;
                        }
                    }
                    let _ = tcp.shutdown().await;
                });
            }
        });
        DripServer { addr }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}
