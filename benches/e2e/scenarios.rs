//! The load client and the scenarios: how a connection reaches a host (direct, or CONNECT
//! through the proxy), the requests and their checks, and each scenario's measured run.

use crate::measure::{measured, opened, snapshot, IdleTunnels, Measured, Perf};
use crate::proxy::{upstream_connections, BenchProxy, CacheRun};
use crate::{
    Env, BLOB_HOST, CLIENT_ID, CLIENT_SECRET, CONN_HOST, DATA_PATH, ECHO_HOST, LOGIN_HOST,
    MY_DOMAIN, PASSWORD, STEP_TIMEOUT, TOKEN_PATH, USERNAME,
};
use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_TYPE, HOST};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::fast_salesforce::{data_response, FastSalesforce, FIXED_TOKEN_RESPONSE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, Barrier, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;

// ---------------------------------------------------------------------------------------------
// Clients

/// Where the fakes listen.
#[derive(Clone, Copy)]
pub struct Servers {
    pub fake_main: SocketAddr,
    pub fake_close: SocketAddr,
    pub blob: SocketAddr,
    pub echo: SocketAddr,
}

impl Servers {
    pub fn addr_of(&self, host: &str) -> SocketAddr {
        match host {
            CONN_HOST => self.fake_close,
            BLOB_HOST => self.blob,
            ECHO_HOST => self.echo,
            _ => self.fake_main,
        }
    }
}

/// How the client reaches a host: straight to the fake, or through the proxy with CONNECT.
#[derive(Clone)]
pub enum Route {
    Direct {
        servers: Servers,
        /// Trusts the fake's CA; resumption on (keep-alive scenarios never resume anyway).
        tls: TlsConnector,
        /// The same without session resumption (scenario C).
        tls_fresh: TlsConnector,
    },
    Proxy {
        addr: SocketAddr,
        tls: TlsConnector,
        tls_fresh: TlsConnector,
    },
}

impl Route {
    /// A TCP stream that reaches `host:443`: a direct connection, or a CONNECT tunnel.
    pub async fn tcp(&self, host: &str) -> Result<TcpStream, String> {
        match self {
            Route::Direct { servers, .. } => {
                let tcp = TcpStream::connect(servers.addr_of(host))
                    .await
                    .map_err(|e| format!("connecting to the fake {host}: {e}"))?;
                let _ = tcp.set_nodelay(true);
                Ok(tcp)
            }
            Route::Proxy { addr, .. } => testkit::try_tunnel(*addr, &format!("{host}:443")).await,
        }
    }

    /// An HTTP/1.1 connection over TLS to `host`; `fresh_tls`: without session resumption.
    pub async fn http(&self, host: &'static str, fresh_tls: bool) -> Result<Sender, String> {
        let tcp = self.tcp(host).await?;
        let tls = match (self, fresh_tls) {
            (Route::Direct { tls, .. } | Route::Proxy { tls, .. }, false) => tls,
            (Route::Direct { tls_fresh, .. } | Route::Proxy { tls_fresh, .. }, true) => tls_fresh,
        };
        testkit::try_h1_over_tls(tcp, host, tls).await
    }

    pub fn name(&self) -> &'static str {
        match self {
            Route::Direct { .. } => "direct",
            Route::Proxy { .. } => "the proxy",
        }
    }
}

pub type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// A client trusting `ca_pem` that offers HTTP/1.1 (as the legacy integrations this proxy
/// exists for speak it); `resumption` off for scenario C.
pub fn client_tls(ca_pem: &str, resumption: bool) -> Result<TlsConnector, String> {
    let mut config = testkit::try_client_config(&[ca_pem], &[b"http/1.1"])?;
    if !resumption {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(TlsConnector::from(Arc::new(config)))
}

/// The request each scenario sends.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Req {
    /// Password grant to the generic login host (through the proxy: upgraded + redirected).
    Token,
    /// The client-credentials request the proxy would make, straight to the My Domain.
    TokenDirect,
    /// REST GET on the My Domain.
    Data,
    /// REST GET on the host whose fake closes after one response (scenario C).
    DataOnce,
    /// Password grant with a wrong password, a different one each time (scenario W): not
    /// upgraded, forwarded as sent to the login host, which refuses it (400).
    WrongPassword,
}

pub struct Bodies {
    pub password: Bytes,
    pub client_credentials: Bytes,
    pub data_len: usize,
    /// Numbers the wrong passwords (scenario W), so no two are the same.
    wrong: std::sync::atomic::AtomicU64,
}

impl Bodies {
    pub fn new() -> Bodies {
        Bodies {
            password: Bytes::from(testkit::password_form(
                CLIENT_ID,
                CLIENT_SECRET,
                USERNAME,
                PASSWORD,
            )),
            client_credentials: Bytes::from(testkit::form(&[
                ("grant_type", "client_credentials"),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
            ])),
            data_len: data_response().len(),
            wrong: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// A password grant of the bench user with a password never sent before by this run.
    fn wrong_password(&self) -> Bytes {
        static RUN: AtomicUsize = AtomicUsize::new(0);
        let n = self.wrong.fetch_add(1, Ordering::Relaxed);
        let run = RUN.fetch_add(1, Ordering::Relaxed);
        Bytes::from(testkit::password_form(
            CLIENT_ID,
            CLIENT_SECRET,
            USERNAME,
            &format!("wrong-{run}-{n}-{PASSWORD}"),
        ))
    }
}

impl Req {
    pub fn host(self) -> &'static str {
        match self {
            Req::Token | Req::WrongPassword => LOGIN_HOST,
            Req::TokenDirect | Req::Data => MY_DOMAIN,
            Req::DataOnce => CONN_HOST,
        }
    }

    pub fn build(self, bodies: &Bodies) -> Request<Full<Bytes>> {
        let b = Request::builder().header(HOST, self.host());
        match self {
            Req::Token | Req::TokenDirect | Req::WrongPassword => b
                .method(Method::POST)
                .uri(TOKEN_PATH)
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header("accept", "application/json")
                .body(Full::new(match self {
                    Req::Token => bodies.password.clone(),
                    Req::WrongPassword => bodies.wrong_password(),
                    _ => bodies.client_credentials.clone(),
                })),
            Req::Data => b
                .uri(DATA_PATH)
                .header(
                    "authorization",
                    "Bearer 00D000000000001!AQ0AQBenchAccessToken",
                )
                .header("accept", "application/json")
                .body(Full::new(Bytes::new())),
            Req::DataOnce => b
                .uri(DATA_PATH)
                .header(
                    "authorization",
                    "Bearer 00D000000000001!AQ0AQBenchAccessToken",
                )
                .header("accept", "application/json")
                .header(CONNECTION, "close")
                .body(Full::new(Bytes::new())),
        }
        .expect("request")
    }

    /// The status and (for a 200) body size every answer must have.
    pub fn expected(self, bodies: &Bodies) -> (StatusCode, Option<usize>) {
        match self {
            Req::Token | Req::TokenDirect => (StatusCode::OK, Some(FIXED_TOKEN_RESPONSE.len())),
            Req::Data | Req::DataOnce => (StatusCode::OK, Some(bodies.data_len)),
            // The login host refuses a password grant (and a wrong password all the more).
            Req::WrongPassword => (StatusCode::BAD_REQUEST, None),
        }
    }
}

/// One request on an open connection; checks status and body size.
pub async fn exchange(sender: &mut Sender, req: Req, bodies: &Bodies) -> Result<(), String> {
    let work = async {
        sender
            .ready()
            .await
            .map_err(|e| format!("connection: {e}"))?;
        let resp = sender
            .send_request(req.build(bodies))
            .await
            .map_err(|e| format!("sending: {e}"))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the body: {e}"))?
            .to_bytes();
        let (want_status, want_len) = req.expected(bodies);
        if status != want_status || want_len.is_some_and(|len| body.len() != len) {
            return Err(format!(
                "{} answered {status} with {} bytes: {}",
                req.host(),
                body.len(),
                String::from_utf8_lossy(&body[..body.len().min(300)])
            ));
        }
        Ok(())
    };
    tokio::time::timeout(STEP_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| Err(format!("no response within {}s", STEP_TIMEOUT.as_secs())))
}

// ---------------------------------------------------------------------------------------------
// Scenarios

/// `conns` keep-alive connections share `n` requests. Connections are opened (and a warm-up
/// of `warm` requests sent on separate connections) before the clock starts.
#[allow(clippy::too_many_arguments)]
pub async fn keep_alive(
    env: &Env,
    route: &Route,
    req: Req,
    conns: usize,
    n: usize,
    warm: usize,
    proxy: Option<&BenchProxy>,
    fake: &FastSalesforce,
    tag: &str,
) -> Result<Measured, String> {
    // Warm-up: leaf minted, upstream pool filled, allocator and caches warm.
    keep_alive_run(route, req, conns, warm.max(conns), None).await?;
    let before_fake = fake.counts();
    let before_upstream = upstream_connections(proxy).await;
    let perf = Perf::start(env, proxy, tag).await?;
    let pid: Vec<u32> = proxy.map(|p| p.pid()).into_iter().collect();
    let m = keep_alive_run(route, req, conns, n, Some((env, &pid))).await;
    perf.stop();
    let mut m = m?;
    m.upstream_conns = opened(before_upstream, upstream_connections(proxy).await);
    let after_fake = fake.counts();
    let rejected = after_fake.rejected - before_fake.rejected;
    let tokens = after_fake.tokens - before_fake.tokens;
    let (answered, expected_rejected) = match req {
        Req::Token | Req::TokenDirect => (tokens, 0),
        Req::Data | Req::DataOnce => (after_fake.data - before_fake.data, 0),
        // Every wrong password reached the fake as sent, and was refused; none was upgraded.
        Req::WrongPassword if tokens == 0 => (rejected, n as u64),
        Req::WrongPassword => (0, n as u64),
    };
    if answered != n as u64 || rejected != expected_rejected {
        return Err(format!(
            "the fake answered {answered} of {n} requests and rejected {}: {:?}",
            rejected,
            fake.rejections().1
        ));
    }
    Ok(m)
}

pub async fn keep_alive_run(
    route: &Route,
    req: Req,
    conns: usize,
    n: usize,
    measure: Option<(&Env, &[u32])>,
) -> Result<Measured, String> {
    let bodies = Arc::new(Bodies::new());
    let next = Arc::new(AtomicUsize::new(0));
    let ready = Arc::new(Barrier::new(conns + 1));
    let (go_tx, go_rx) = watch::channel(false);
    let mut set = JoinSet::new();
    for _ in 0..conns {
        let (route, bodies, next, ready, mut go) = (
            route.clone(),
            bodies.clone(),
            next.clone(),
            ready.clone(),
            go_rx.clone(),
        );
        set.spawn(async move {
            let sender = tokio::time::timeout(STEP_TIMEOUT, route.http(req.host(), false))
                .await
                .unwrap_or_else(|_| Err("opening a connection timed out".into()));
            ready.wait().await;
            let mut sender = sender?;
            let _ = go.wait_for(|go| *go).await;
            let mut latencies = Vec::with_capacity(n / conns + 1);
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let started = Instant::now();
                exchange(&mut sender, req, &bodies).await?;
                latencies.push(started.elapsed().as_nanos() as u64);
            }
            Ok::<_, String>(latencies)
        });
    }
    ready.wait().await;
    let before = match measure {
        Some((env, pid)) => Some(snapshot(env, pid)?),
        None => None,
    };
    let _ = go_tx.send(true);
    let mut latencies = Vec::with_capacity(n);
    let mut first_error = None;
    while let Some(joined) = set.join_next().await {
        match joined
            .map_err(|e| format!("client task: {e}"))
            .and_then(|r| r)
        {
            Ok(l) => latencies.extend(l),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let after = match measure {
        Some((env, pid)) => Some(snapshot(env, pid)?),
        None => None,
    };
    if let Some(e) = first_error {
        return Err(format!("{} via {}: {e}", req.host(), route.name()));
    }
    match (measure, before, after) {
        (Some((env, _)), Some(b), Some(a)) => Ok(measured(env, b, a, n as u64, latencies)),
        _ => Ok(Measured::default()),
    }
}

/// The fleet rows (F1, F2): A32's logins through HAProxy in front of `replicas` (their CPU
/// summed as the proxy's); `others` (HAProxy, Redis) are measured over the same run, returned
/// as their CPU seconds. Connections are opened and warmed up first, as in [`keep_alive`];
/// every answer is checked, and the fake must have answered each login.
#[allow(clippy::too_many_arguments)]
pub async fn fleet_logins(
    env: &Env,
    route: &Route,
    conns: usize,
    n: usize,
    warm: usize,
    replicas: &[&BenchProxy],
    others: &[u32],
    fake: &FastSalesforce,
) -> Result<(Measured, f64), String> {
    keep_alive_run(route, Req::Token, conns, warm.max(conns), None).await?;
    let before_fake = fake.counts();
    let pids: Vec<u32> = replicas.iter().map(|p| p.pid()).collect();
    let ticks = |pids: &[u32]| -> Result<u64, String> {
        pids.iter()
            .map(|pid| crate::measure::process_ticks(&pid.to_string()))
            .sum()
    };
    let others_before = ticks(others)?;
    let m = keep_alive_run(route, Req::Token, conns, n, Some((env, &pids))).await?;
    let others_cpu = (ticks(others)? - others_before) as f64 / env.clk_tck as f64;
    let after_fake = fake.counts();
    let tokens = after_fake.tokens - before_fake.tokens;
    if tokens != n as u64 || after_fake.rejected != before_fake.rejected {
        return Err(format!(
            "fleet: the fake answered {tokens} of {n} logins and rejected {}",
            after_fake.rejected - before_fake.rejected
        ));
    }
    Ok((m, others_cpu))
}

/// A32c's cold start, on a proxy just started (its token cache empty): `logins` password
/// logins with one set of credentials from `clients` connections, all opened first and then
/// sending at once. Returns how many token requests reached the upstream: the cache's single
/// flight should make it one. A count, not an assertion; every answer is still checked.
pub async fn cold_start(
    route: &Route,
    clients: usize,
    logins: usize,
    proxy: &BenchProxy,
    fake: &FastSalesforce,
) -> Result<CacheRun, String> {
    let before_fake = fake.counts();
    let before = proxy.cache_counters().await;
    keep_alive_run(route, Req::Token, clients, logins, None).await?;
    let counters = proxy.cache_counters().await.since(before);
    let after_fake = fake.counts();
    if after_fake.rejected != before_fake.rejected {
        return Err(format!(
            "A32c cold start: the fake rejected {} requests: {:?}",
            after_fake.rejected - before_fake.rejected,
            fake.rejections().1
        ));
    }
    Ok(CacheRun {
        logins,
        clients,
        upstream_tokens: after_fake.tokens - before_fake.tokens,
        counters,
    })
}

/// A32c's measured part: as [`keep_alive`] with [`Req::Token`] through `proxy`, whose token
/// cache already holds the answer (after [`cold_start`]): every login should be a cache hit.
/// Each answer is checked as in A32 (the fake's 200 of its size); what reached the upstream
/// is counted, not required to be zero.
#[allow(clippy::too_many_arguments)]
pub async fn cached_logins(
    env: &Env,
    route: &Route,
    conns: usize,
    n: usize,
    warm: usize,
    proxy: &BenchProxy,
    fake: &FastSalesforce,
    tag: &str,
) -> Result<Measured, String> {
    keep_alive_run(route, Req::Token, conns, warm.max(conns), None).await?;
    let before_fake = fake.counts();
    let before_upstream = upstream_connections(Some(proxy)).await;
    let before_cache = proxy.cache_counters().await;
    let perf = Perf::start(env, Some(proxy), tag).await?;
    let m = keep_alive_run(route, Req::Token, conns, n, Some((env, &[proxy.pid()]))).await;
    perf.stop();
    let mut m = m?;
    m.upstream_conns = opened(before_upstream, upstream_connections(Some(proxy)).await);
    let counters = proxy.cache_counters().await.since(before_cache);
    let after_fake = fake.counts();
    if after_fake.rejected != before_fake.rejected {
        return Err(format!(
            "A32c: the fake rejected {} requests: {:?}",
            after_fake.rejected - before_fake.rejected,
            fake.rejections().1
        ));
    }
    m.cache = Some(CacheRun {
        logins: n,
        clients: conns,
        upstream_tokens: after_fake.tokens - before_fake.tokens,
        counters,
    });
    Ok(m)
}

/// Scenario C: `n` requests, each on a new connection (TCP [+ CONNECT] + TLS), `conc` at a
/// time. The latency of one includes opening its connection.
pub async fn per_connection(
    env: &Env,
    route: &Route,
    conc: usize,
    n: usize,
    proxy: Option<&BenchProxy>,
    fake: &FastSalesforce,
    tag: &str,
) -> Result<Measured, String> {
    per_connection_run(route, conc, (n / 10).clamp(conc, 200)).await?;
    let before_fake = fake.counts();
    let before_upstream = upstream_connections(proxy).await;
    let perf = Perf::start(env, proxy, tag).await?;
    let pid = proxy.map(|p| p.pid());
    let before = snapshot(env, pid.as_slice())?;
    let latencies = per_connection_run(route, conc, n).await;
    let after = snapshot(env, pid.as_slice())?;
    perf.stop();
    let latencies = latencies?;
    let upstream_conns = opened(before_upstream, upstream_connections(proxy).await);
    let after_fake = fake.counts();
    if after_fake.data - before_fake.data != n as u64 || after_fake.rejected != before_fake.rejected
    {
        return Err(format!(
            "C: the fake answered {} of {n}",
            after_fake.data - before_fake.data
        ));
    }
    Ok(Measured {
        upstream_conns,
        ..measured(env, before, after, n as u64, latencies)
    })
}

pub async fn per_connection_run(route: &Route, conc: usize, n: usize) -> Result<Vec<u64>, String> {
    let bodies = Arc::new(Bodies::new());
    let next = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for _ in 0..conc {
        let (route, bodies, next) = (route.clone(), bodies.clone(), next.clone());
        set.spawn(async move {
            let mut latencies = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let started = Instant::now();
                let mut sender =
                    tokio::time::timeout(STEP_TIMEOUT, route.http(Req::DataOnce.host(), true))
                        .await
                        .unwrap_or_else(|_| Err("opening a connection timed out".into()))?;
                exchange(&mut sender, Req::DataOnce, &bodies).await?;
                latencies.push(started.elapsed().as_nanos() as u64);
            }
            Ok::<_, String>(latencies)
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(joined) = set.join_next().await {
        all.extend(
            joined
                .map_err(|e| format!("client task: {e}"))
                .and_then(|r| r)
                .map_err(|e| format!("C via {}: {e}", route.name()))?,
        );
    }
    Ok(all)
}

/// Scenario L1, the floor under A1's added latency: 64-byte round trips to the echo server
/// on one connection, direct or through a blind tunnel. Through the proxy that is two extra
/// hops between the cores and no TLS, HTTP or rewrite at all: no proxy on another core can
/// add less.
pub async fn echo_ping_pong(
    env: &Env,
    route: &Route,
    n: usize,
    proxy: Option<&BenchProxy>,
    tag: &str,
) -> Result<Measured, String> {
    let mut tcp = route.tcp(ECHO_HOST).await?;
    let msg = [0x5au8; 64];
    let mut back = [0u8; 64];
    let mut round_trip = async |tcp: &mut TcpStream| -> Result<(), String> {
        tcp.write_all(&msg)
            .await
            .map_err(|e| format!("L1 via {}: write: {e}", route.name()))?;
        tokio::time::timeout(STEP_TIMEOUT, tcp.read_exact(&mut back))
            .await
            .map_err(|_| format!("L1 via {}: no echo", route.name()))?
            .map_err(|e| format!("L1 via {}: read: {e}", route.name()))?;
        Ok(())
    };
    for _ in 0..(n / 10).max(10) {
        round_trip(&mut tcp).await?;
    }
    let perf = Perf::start(env, proxy, tag).await?;
    let pid = proxy.map(|p| p.pid());
    let mut latencies = Vec::with_capacity(n);
    let before = snapshot(env, pid.as_slice())?;
    for _ in 0..n {
        let started = Instant::now();
        if let Err(e) = round_trip(&mut tcp).await {
            perf.stop();
            return Err(e);
        }
        latencies.push(started.elapsed().as_nanos() as u64);
    }
    let after = snapshot(env, pid.as_slice())?;
    perf.stop();
    Ok(measured(env, before, after, n as u64, latencies))
}

/// Scenario D: one download of `bytes` from the blob server (plain TCP), direct or through a
/// blind tunnel.
pub async fn download(
    env: &Env,
    route: &Route,
    bytes: u64,
    proxy: Option<&BenchProxy>,
    tag: &str,
) -> Result<Measured, String> {
    download_once(route, (bytes / 8).min(64 << 20)).await?;
    let perf = Perf::start(env, proxy, tag).await?;
    let pid = proxy.map(|p| p.pid());
    let before = snapshot(env, pid.as_slice())?;
    let took = download_once(route, bytes).await;
    let after = snapshot(env, pid.as_slice())?;
    perf.stop();
    let took = took?;
    Ok(measured(env, before, after, bytes, vec![took]))
}

pub async fn download_once(route: &Route, bytes: u64) -> Result<u64, String> {
    let mut tcp = route.tcp(BLOB_HOST).await?;
    let started = Instant::now();
    tcp.write_all(&bytes.to_be_bytes())
        .await
        .map_err(|e| format!("D: asking for {bytes} bytes: {e}"))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0u64;
    while got < bytes {
        let n = tokio::time::timeout(STEP_TIMEOUT, tcp.read(&mut buf))
            .await
            .map_err(|_| format!("D: stalled after {got} bytes"))?
            .map_err(|e| format!("D: read after {got} bytes: {e}"))?;
        if n == 0 {
            return Err(format!(
                "D via {}: closed after {got} of {bytes} bytes",
                route.name()
            ));
        }
        got += n as u64;
    }
    Ok(started.elapsed().as_nanos() as u64)
}

/// Scenario E on a fresh proxy: warm it with a few tunnels, then hold `n` open.
pub async fn idle_tunnels(
    env: &Env,
    fake: &FastSalesforce,
    servers: Servers,
    n: usize,
    round: usize,
) -> Result<IdleTunnels, String> {
    let proxy = BenchProxy::start(
        env,
        &format!("proxy-idle-r{round}"),
        fake,
        servers,
        false,
        false,
        false,
    )
    .await?;
    let route = proxy.route();
    let warm = open_tunnels(&route, 100).await?;
    drop(warm);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = testkit::process::proc_status(&proxy.pid().to_string())?;
    let before = snapshot(env, &[proxy.pid()])?;
    let tunnels = open_tunnels(&route, n).await?;
    let after = snapshot(env, &[proxy.pid()])?;
    // Let the proxy finish whatever follows the last echo.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let with_tunnels = testkit::process::proc_status(&proxy.pid().to_string())?;
    drop(tunnels);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after_close = testkit::process::proc_status(&proxy.pid().to_string())?;
    let opening = measured(env, before, after, n as u64, Vec::new());
    proxy.stop().await?;
    Ok(IdleTunnels {
        tunnels: n,
        baseline_kib: baseline.rss_kib,
        with_tunnels_kib: with_tunnels.rss_kib,
        baseline_fds: baseline.fds,
        with_tunnels_fds: with_tunnels.fds,
        after_close_kib: after_close.rss_kib,
        opening,
    })
}

/// Open `n` CONNECT tunnels to the echo host, 100 at a time, each checked by one echo.
pub async fn open_tunnels(route: &Route, n: usize) -> Result<Vec<TcpStream>, String> {
    let permits = Arc::new(Semaphore::new(100));
    let mut set = JoinSet::new();
    for i in 0..n {
        let permit = permits.clone().acquire_owned().await.expect("semaphore");
        let route = route.clone();
        set.spawn(async move {
            let open = async {
                let mut tcp = route.tcp(ECHO_HOST).await?;
                testkit::try_echo(&mut tcp, format!("tunnel {i}\n").as_bytes())
                    .await
                    .map_err(|e| format!("tunnel {i}: {e}"))?;
                Ok(tcp)
            };
            let r = tokio::time::timeout(STEP_TIMEOUT, open)
                .await
                .unwrap_or_else(|_| Err(format!("tunnel {i}: no echo within 30s")));
            drop(permit);
            r
        });
    }
    let mut tunnels = Vec::with_capacity(n);
    while let Some(joined) = set.join_next().await {
        tunnels.push(joined.map_err(|e| format!("tunnel task: {e}"))??);
    }
    Ok(tunnels)
}
