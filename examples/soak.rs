//! Soak test: the real `grantshift` binary holding thousands of blind tunnels open while it
//! upgrades tens of thousands of password logins, all on loopback, bounded in time.
//!
//! ```sh
//! cargo build --release                              # the proxy binary under test
//! cargo run --release --example soak                 # 5,000 tunnels + 20,000 logins
//! cargo run --release --example soak -- --tunnels 200 --logins 1000   # a quick try
//! ```
//!
//! What it does, in one process next to the proxy's:
//!
//! - Stands up a fake Salesforce: its own rcgen CA, leaf certificates for
//!   `login.salesforce.com` and `acme.my.salesforce.com` chosen by SNI, HTTP/1.1 and h2.
//!   `POST /services/oauth2/token` with `grant_type=client_credentials` and the soak app's
//!   client id and secret at `acme.my.salesforce.com` gets a 200 client-credentials response
//!   (with an HMAC signature the client checks); anything else gets a 400 JSON error. Plus a
//!   plain TCP echo server standing in for a host that is not intercepted (`tunnel.soak.test`).
//! - Starts `target/release/grantshift run` as a separate process on a generated config in a
//!   temporary directory (`listen` and `admin_listen` on 127.0.0.1 port 0, `connect_to_only`,
//!   the fake's CA in `extra_root_certs`, one `[[credentials]]` mapping `soak@acme.com` to
//!   `acme.my.salesforce.com`, an events file), reads its ports from its JSON log on stderr
//!   (drained continuously into `proxy.log` in that directory).
//! - Phase 1: opens `--tunnels` CONNECT tunnels to `tunnel.soak.test:443`, each verified by an
//!   echo round trip, and holds them all open.
//! - Phase 2, tunnels still open: `--logins` password-grant token requests through CONNECT +
//!   TLS to `login.salesforce.com` (trusting the CA grantshift created next to its config), over
//!   `--concurrency` keep-alive HTTP/1.1 connections. Every response must be 200 with the fake's
//!   client-credentials body: the login was upgraded and redirected to the My Domain host.
//! - Checks every tunnel still echoes, the events file holds exactly one `upgraded` line per
//!   login (and no secret), `/metrics` counts them, then closes everything and waits for the
//!   proxy's `grantshift_connections_active` gauges and open fds to return to their baseline,
//!   sends SIGTERM and requires exit status 0 and no WARN/ERROR log line.
//!
//! The proxy's RSS (VmRSS, VmHWM from `/proc/<pid>/status`) and open fds (`/proc/<pid>/fd`)
//! are sampled throughout. Any error, mismatch, leak or the global deadline exits non-zero with
//! the reason; a summary is printed either way. Only 127.0.0.1 is ever dialled or bound.

#[path = "../benches/support/fake_ca.rs"]
mod fake_ca;

use bytes::Bytes;
use clap::Parser;
use http::header::{CONTENT_TYPE, HOST};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::{TlsAcceptor, TlsConnector};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const TUNNEL_HOST: &str = "tunnel.soak.test";
const LOGIN_HOST: &str = "login.salesforce.com";
const MY_DOMAIN: &str = "acme.my.salesforce.com";
const TOKEN_PATH: &str = "/services/oauth2/token";
const USERNAME: &str = "soak@acme.com";
const CLIENT_ID: &str = "3MVG9soak.acmeIntegration.consumerKey";
/// Distinctive secrets: the events file is checked for them.
const CLIENT_SECRET: &str = "cs-SOAK-SECRET-5a1e";
const PASSWORD_PREFIX: &str = "pw-SOAK-SECRET-";
const ORG_ID: &str = "00D000000000001AAA";
const USER_ID: &str = "005000000000001AAA";
const ACCESS_TOKEN_PREFIX: &str = "00D000000000001!";
/// The fake signs `id + issued_at` with this (HMAC-SHA256), as Salesforce does with the
/// app's secret; the client verifies it, so a 200 body is known to be the fake's own.
const SIGNING_KEY: &[u8] = b"fake-salesforce-soak-signing-key";
const JSON_CT: &str = "application/json;charset=UTF-8";
/// One step (a tunnel open, a login, an admin fetch) taking longer than this is an error.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the events file, gauges and fds get to settle.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Parser, Debug, Clone)]
#[command(
    about = "Soak test for grantshift on loopback: hold N blind tunnels open while upgrading M password logins",
    after_help = "Build the proxy first: cargo build --release"
)]
struct Args {
    /// Concurrent CONNECT tunnels to hold open (each verified by an echo round trip).
    #[arg(long, default_value_t = 5000)]
    tunnels: usize,
    /// Password-grant token requests to send while the tunnels are open.
    #[arg(long, default_value_t = 20000)]
    logins: usize,
    /// Keep-alive client connections the logins are spread over.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Tunnels being opened at once (the rest wait their turn). Kept under the proxy's listen
    /// backlog (128, the std/mio default): a larger burst overflows the accept queue and the
    /// kernel's SYN retries add 1 s stalls (counted under "kernel TCP counters").
    #[arg(long, default_value_t = 100)]
    open_parallelism: usize,
    /// Global deadline: the run fails if it has not finished by then.
    #[arg(long, default_value_t = 300)]
    deadline_secs: u64,
    /// The grantshift binary [default: ../grantshift next to this example, i.e.
    /// target/release/grantshift].
    #[arg(long, value_name = "PATH")]
    proxy_bin: Option<PathBuf>,
    /// Keep the temporary directory (config, CA, events, proxy.log) even on success.
    #[arg(long)]
    keep_dir: bool,
}

// ---------------------------------------------------------------------------------------------
// Entry point

fn main() -> ExitCode {
    let args = Args::parse();
    if args.concurrency == 0 || args.open_parallelism == 0 {
        eprintln!("soak: --concurrency and --open-parallelism must be at least 1");
        return ExitCode::FAILURE;
    }
    let started = Instant::now();
    let kernel_before = kernel_tcp_counters();
    let summary = Arc::new(Mutex::new(Summary::new(&args)));
    let dir = match tempfile::Builder::new()
        .prefix("grantshift-soak-")
        .tempdir()
    {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("soak: cannot create a temporary directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let deadline = Duration::from_secs(args.deadline_secs);
    let result = runtime.block_on({
        let (args, summary, path) = (args.clone(), summary.clone(), dir.path().to_path_buf());
        async move {
            match tokio::time::timeout(deadline, soak(&args, &path, &summary)).await {
                Ok(result) => result,
                Err(_) => Err(format!(
                    "global deadline of {}s exceeded during: {}",
                    args.deadline_secs,
                    summary.lock().unwrap().phase
                )),
            }
        }
    });
    // Tasks still holding sockets (after a failure) are dropped here.
    runtime.shutdown_timeout(Duration::from_secs(2));
    let mut summary = summary.lock().unwrap();
    summary.elapsed = started.elapsed();
    summary.kernel = kernel_tcp_counters()
        .into_iter()
        .map(|(k, v)| {
            let delta = v.saturating_sub(kernel_before.get(&k).copied().unwrap_or(0));
            (k, delta)
        })
        .collect();
    let keep = args.keep_dir || result.is_err();
    let dir_path = if keep {
        dir.keep().display().to_string()
    } else {
        drop(dir);
        "(removed)".into()
    };
    summary.print(result.as_ref().err(), &dir_path);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

fn progress(started: Instant, what: &str) {
    println!("[{:7.1}s] {what}", started.elapsed().as_secs_f64());
    let _ = std::io::stdout().flush();
}

async fn soak(args: &Args, dir: &Path, summary: &Mutex<Summary>) -> Result<(), String> {
    let t0 = Instant::now();
    let set_phase = |p: &str| {
        summary.lock().unwrap().phase = p.to_string();
        progress(t0, p);
    };

    set_phase("checking the fd limit");
    let fd_limit = raise_fd_limit(args)?;
    summary.lock().unwrap().fd_limit = Some(fd_limit);

    let proxy_bin = locate_proxy_bin(args)?;
    summary.lock().unwrap().proxy_bin = proxy_bin.display().to_string();

    set_phase("starting the fake Salesforce and the echo server");
    let fake = FakeSalesforce::start(dir).await?;
    let echo = EchoServer::start().await?;

    set_phase("starting the proxy");
    let config = render_config(args, dir, &fake, &echo);
    let config_path = dir.join("grantshift.toml");
    std::fs::write(&config_path, &config).map_err(|e| format!("writing the config: {e}"))?;
    let mut proxy = ProxyProcess::start(&proxy_bin, dir, &config_path).await?;
    let pid = proxy.pid;
    summary.lock().unwrap().proxy_pid = Some(pid);
    let (proxy_addr, admin_addr) = (proxy.addr, proxy.admin);
    progress(
        t0,
        &format!("proxy pid {pid} listening on {proxy_addr}, admin on {admin_addr}"),
    );
    let proxy_ca_pem = std::fs::read_to_string(dir.join("grantshift-ca.pem")).map_err(|e| {
        format!("reading the CA grantshift created next to its config (grantshift-ca.pem): {e}")
    })?;
    let tls = TlsConnector::from(Arc::new(client_tls_config(&proxy_ca_pem)?));

    // Baseline, before any client connection.
    let metrics = fetch_metrics(admin_addr).await?;
    let baseline_active = active_gauges(&metrics);
    if baseline_active.values().any(|v| *v != 0) {
        return Err(format!(
            "grantshift_connections_active is not 0 at start: {baseline_active:?}"
        ));
    }
    let baseline = settle_sample(pid).await?;
    {
        let mut s = summary.lock().unwrap();
        s.baseline_rss_kib = Some(baseline.rss_kib);
        s.baseline_fds = Some(baseline.fds);
    }
    let sampler = Sampler::start(pid);

    // ---- Phase 1: tunnels -------------------------------------------------------------------
    set_phase(&format!(
        "phase 1: opening {} CONNECT tunnels to {TUNNEL_HOST}:443 ({} at a time)",
        args.tunnels, args.open_parallelism
    ));
    let phase1 = Instant::now();
    let mut tunnels =
        open_tunnels(proxy_addr, args.tunnels, args.open_parallelism, t0, summary).await;
    let opened = tunnels.iter().filter(|t| t.is_ok()).count();
    let tunnel_errors: Vec<String> = tunnels
        .iter()
        .filter_map(|t| t.as_ref().err().cloned())
        .collect();
    {
        let mut s = summary.lock().unwrap();
        s.tunnels_open = opened;
        s.tunnel_open_secs = Some(phase1.elapsed().as_secs_f64());
        s.client_errors += tunnel_errors.len();
    }
    if !tunnel_errors.is_empty() {
        return Err(format!(
            "{} of {} tunnels failed; first errors:\n    {}",
            tunnel_errors.len(),
            args.tunnels,
            tunnel_errors
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n    ")
        ));
    }
    let mut tunnels: Vec<TcpStream> = tunnels.drain(..).map(|t| t.unwrap()).collect();
    progress(
        t0,
        &format!(
            "phase 1: {} tunnels open and echoing, in {:.1}s",
            tunnels.len(),
            phase1.elapsed().as_secs_f64()
        ),
    );
    let echo_open = echo.open.load(Ordering::SeqCst);
    if echo_open != args.tunnels as i64 {
        return Err(format!(
            "the echo server holds {echo_open} connections, expected {}",
            args.tunnels
        ));
    }
    let metrics = fetch_metrics(admin_addr).await?;
    let active = active_gauges(&metrics);
    if active.get("tunnel").copied() != Some(args.tunnels as i64) {
        return Err(format!(
            "grantshift_connections_active{{kind=\"tunnel\"}} is {:?} with {} tunnels open",
            active.get("tunnel"),
            args.tunnels
        ));
    }
    let with_tunnels = settle_sample(pid).await?;
    {
        let mut s = summary.lock().unwrap();
        s.tunnels_rss_kib = Some(with_tunnels.rss_kib);
        s.tunnels_fds = Some(with_tunnels.fds);
    }
    progress(
        t0,
        &format!(
            "phase 1: proxy RSS {} KiB (baseline {} KiB), {} fds (baseline {})",
            with_tunnels.rss_kib, baseline.rss_kib, with_tunnels.fds, baseline.fds
        ),
    );

    // ---- Phase 2: logins --------------------------------------------------------------------
    set_phase(&format!(
        "phase 2: {} password logins to {LOGIN_HOST} over {} keep-alive connections, tunnels held",
        args.logins, args.concurrency
    ));
    let phase2 = Instant::now();
    let logins = run_logins(proxy_addr, tls, args.logins, args.concurrency, t0).await;
    let login_secs = phase2.elapsed().as_secs_f64();
    {
        let mut s = summary.lock().unwrap();
        s.logins_ok = logins.ok;
        s.logins_err = logins.failed;
        s.login_conns = logins.connections;
        s.login_secs = Some(login_secs);
        s.latencies = logins.latencies_us.clone();
        s.client_errors += logins.failed + logins.connect_errors;
    }
    progress(
        t0,
        &format!(
            "phase 2: {} ok, {} failed, {} connect errors in {login_secs:.1}s ({:.0} logins/s)",
            logins.ok,
            logins.failed,
            logins.connect_errors,
            logins.ok as f64 / login_secs.max(1e-9)
        ),
    );
    if let Ok(after_logins) = sample(pid) {
        summary.lock().unwrap().logins_rss_kib = Some(after_logins.rss_kib);
    }
    let (fake_ok, fake_rejected, fake_reasons) = fake.counts();
    summary.lock().unwrap().upstream_conns = Some(fake.connections.load(Ordering::SeqCst));
    if logins.failed + logins.connect_errors > 0 || logins.ok != args.logins {
        return Err(format!(
            "logins: {} ok of {}, {} failed, {} connect errors; first errors:\n    {}\n  fake Salesforce: {fake_ok} client-credentials answered, {fake_rejected} rejected {fake_reasons:?}",
            logins.ok,
            args.logins,
            logins.failed,
            logins.connect_errors,
            logins.errors.join("\n    ")
        ));
    }
    if fake_ok != args.logins as u64 || fake_rejected != 0 {
        return Err(format!(
            "the fake Salesforce answered {fake_ok} client-credentials requests and rejected {fake_rejected} (expected {} and 0): {fake_reasons:?}",
            args.logins
        ));
    }

    set_phase("re-checking every tunnel after the logins");
    let rechecked = recheck_tunnels(&mut tunnels, args.open_parallelism).await;
    if let Err(e) = rechecked {
        summary.lock().unwrap().client_errors += 1;
        return Err(e);
    }
    summary.lock().unwrap().tunnels_rechecked = Some(tunnels.len());

    set_phase("checking the events file and /metrics");
    let events = check_events(&dir.join("events.jsonl"), args.logins).await?;
    summary.lock().unwrap().events_upgraded = Some(events);
    let metrics = fetch_metrics(admin_addr).await?;
    check_metrics(&metrics, args, logins.connections)?;
    summary.lock().unwrap().metrics_upgraded = Some(args.logins);

    // ---- Close everything -------------------------------------------------------------------
    set_phase(
        "closing every tunnel and connection; waiting for gauges and fds to return to baseline",
    );
    let close = Instant::now();
    drop(tunnels);
    let echo_conns = &echo.open;
    settle(
        "grantshift_connections_active back to 0 and the echo side closed",
        || async move {
            let metrics = fetch_metrics(admin_addr).await?;
            let active = active_gauges(&metrics);
            let echo_open = echo_conns.load(Ordering::SeqCst);
            if active.values().all(|v| *v == 0) && echo_open == 0 {
                Ok(None)
            } else {
                Ok(Some(format!(
                    "active gauges {active:?}, echo server connections {echo_open}"
                )))
            }
        },
    )
    .await?;
    let warm = sample(pid)?;
    summary.lock().unwrap().fds_pool_warm = Some(warm.fds);
    // The proxy's pooled upstream connections to the fake stay open until Salesforce (or the
    // pool's idle timeout) closes them: close them from the fake's side, as a server would.
    fake.close_idle();
    settle("the proxy's open fds back to the baseline", || async move {
        let s = sample(pid)?;
        if s.fds <= baseline.fds {
            Ok(None)
        } else {
            Ok(Some(format!(
                "{} fds open, baseline {} ({:?})",
                s.fds,
                baseline.fds,
                fd_kinds(pid)
            )))
        }
    })
    .await?;
    let after = sample(pid)?;
    {
        let mut s = summary.lock().unwrap();
        s.fds_after_close = Some(after.fds);
        s.rss_after_close_kib = Some(after.rss_kib);
        s.close_secs = Some(close.elapsed().as_secs_f64());
    }
    let peaks = sampler.stop().await;
    {
        let mut s = summary.lock().unwrap();
        s.peak_fds = Some(peaks.peak_fds.max(with_tunnels.fds));
        s.peak_hwm_kib = Some(after.hwm_kib.max(peaks.peak_hwm_kib));
    }

    // ---- Shutdown ---------------------------------------------------------------------------
    set_phase("SIGTERM; waiting for exit status 0");
    let stop = Instant::now();
    let status = proxy.terminate().await?;
    {
        let mut s = summary.lock().unwrap();
        s.proxy_exit = Some(format!("{status}"));
        s.shutdown_secs = Some(stop.elapsed().as_secs_f64());
    }
    if !status.success() {
        return Err(format!("the proxy exited with {status} after SIGTERM"));
    }
    let log = proxy.log.lock().unwrap();
    summary.lock().unwrap().warn_lines = log.warn_error_count;
    if log.warn_error_count > 0 {
        return Err(format!(
            "the proxy logged {} WARN/ERROR line(s):\n    {}",
            log.warn_error_count,
            log.warn_error.join("\n    ")
        ));
    }
    set_phase("done");
    Ok(())
}

/// System-wide `TcpExt` counters that show SYNs dropped by a full accept queue.
const KERNEL_COUNTERS: [&str; 3] = ["ListenOverflows", "ListenDrops", "TCPSynRetrans"];

fn kernel_tcp_counters() -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let mut counters = BTreeMap::new();
    for pair in lines.chunks(2) {
        let [names, values] = pair else { continue };
        if !names.starts_with("TcpExt:") {
            continue;
        }
        for (name, value) in names
            .split_whitespace()
            .zip(values.split_whitespace())
            .skip(1)
        {
            if KERNEL_COUNTERS.contains(&name) {
                counters.insert(name.to_string(), value.parse().unwrap_or(0));
            }
        }
    }
    counters
}

// ---------------------------------------------------------------------------------------------
// Set-up: fd limit, binary, config

/// Raise the soft fd limit to the hard limit (inherited by the proxy), and check both this
/// process and the proxy can hold what the run needs.
fn raise_fd_limit(args: &Args) -> Result<u64, String> {
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)
        .map_err(|e| format!("reading RLIMIT_NOFILE: {e}"))?;
    let soft = if soft < hard {
        rlimit::increase_nofile_limit(hard).map_err(|e| format!("raising RLIMIT_NOFILE: {e}"))?
    } else {
        soft
    };
    // This process: each tunnel's client end and the echo server's end, each login
    // connection and the fake's ends of the proxy's upstream connections, plus slack.
    let need = (2 * args.tunnels + 4 * args.concurrency + 256) as u64;
    if soft < need {
        return Err(format!(
            "the open-file limit is {soft} (hard {hard}); {} tunnels need about {need}: run under `ulimit -n {}`",
            args.tunnels,
            need.next_power_of_two()
        ));
    }
    Ok(soft)
}

fn locate_proxy_bin(args: &Args) -> Result<PathBuf, String> {
    let bin = match &args.proxy_bin {
        Some(path) => path.clone(),
        None => {
            let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
            exe.parent()
                .and_then(Path::parent)
                .map(|release| release.join("grantshift"))
                .ok_or("cannot find the directory of this example")?
        }
    };
    if !bin.is_file() {
        return Err(format!(
            "no grantshift binary at {}: build it first with `cargo build --release`, or pass --proxy-bin PATH",
            bin.display()
        ));
    }
    // A stale binary would soak yesterday's code: say so (not fatal).
    if let (Ok(bin_time), Some(src_time)) = (
        std::fs::metadata(&bin).and_then(|m| m.modified()),
        newest_mtime(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src")),
    ) {
        if src_time > bin_time && args.proxy_bin.is_none() {
            eprintln!(
                "soak: warning: {} is older than src/: run `cargo build --release` first",
                bin.display()
            );
        }
    }
    Ok(bin)
}

fn newest_mtime(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let t = if path.is_dir() {
            newest_mtime(&path)
        } else {
            entry.metadata().and_then(|m| m.modified()).ok()
        };
        newest = newest.max(t);
    }
    newest
}

fn toml_str(s: &str) -> String {
    format!("{s:?}")
}

fn render_config(args: &Args, dir: &Path, fake: &FakeSalesforce, echo: &EchoServer) -> String {
    let max_connections = args.tunnels + 4 * args.concurrency + 1000;
    let fake_addr = fake.addr.to_string();
    format!(
        r#"# Generated by examples/soak.rs
[proxy]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
max_connections = {max_connections}
shutdown_grace = "10s"

[ca]
cert = "grantshift-ca.pem"
key = "grantshift-ca.key"

[upstream]
extra_root_certs = [{ca}]
connect_to_only = true

[upstream.connect_to]
"{LOGIN_HOST}:443" = {fake}
"{MY_DOMAIN}:443" = {fake}
"{TUNNEL_HOST}:443" = {echo}

[[credentials]]
username = "{USERNAME}"
my_domain = "{MY_DOMAIN}"

[telemetry]
events = {events}
"#,
        ca = toml_str(&fake.ca_pem_path.display().to_string()),
        fake = toml_str(&fake_addr),
        echo = toml_str(&echo.addr.to_string()),
        events = toml_str(&dir.join("events.jsonl").display().to_string()),
    )
}

// ---------------------------------------------------------------------------------------------
// The proxy process

#[derive(Default)]
struct LogState {
    lines: usize,
    warn_error_count: usize,
    /// The first WARN/ERROR lines.
    warn_error: Vec<String>,
    /// The last lines, for a failure report.
    tail: VecDeque<String>,
    proxy_addr: Option<SocketAddr>,
    admin_addr: Option<SocketAddr>,
}

struct ProxyProcess {
    child: Child,
    pid: u32,
    addr: SocketAddr,
    admin: SocketAddr,
    log: Arc<Mutex<LogState>>,
    drain: Option<std::thread::JoinHandle<()>>,
}

impl ProxyProcess {
    async fn start(bin: &Path, dir: &Path, config: &Path) -> Result<ProxyProcess, String> {
        let mut cmd = Command::new(bin);
        cmd.current_dir(dir)
            .arg("run")
            .arg("-c")
            .arg(config)
            .args(["--log-format", "json"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for var in [
            "GRANTSHIFT_CONFIG",
            "RUST_LOG",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "NO_PROXY",
            "http_proxy",
            "https_proxy",
            "all_proxy",
            "no_proxy",
        ] {
            cmd.env_remove(var);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let pid = child.id();
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(LogState::default()));
        let log_file = std::fs::File::create(dir.join("proxy.log"))
            .map_err(|e| format!("creating proxy.log: {e}"))?;
        let drain = {
            let log = log.clone();
            std::thread::spawn(move || drain_stderr(stderr, log_file, log))
        };
        let mut proxy = ProxyProcess {
            child,
            pid,
            addr: SocketAddr::new(LOOPBACK, 0),
            admin: SocketAddr::new(LOOPBACK, 0),
            log,
            drain: Some(drain),
        };
        let waited = Instant::now();
        loop {
            {
                let log = proxy.log.lock().unwrap();
                if let (Some(addr), Some(admin)) = (log.proxy_addr, log.admin_addr) {
                    proxy.addr = addr;
                    proxy.admin = admin;
                    break;
                }
            }
            if let Ok(Some(status)) = proxy.child.try_wait() {
                if let Some(drain) = proxy.drain.take() {
                    let _ = drain.join();
                }
                return Err(format!(
                    "the proxy exited with {status} before listening; its log:\n{}",
                    proxy.log_tail()
                ));
            }
            if waited.elapsed() > SETTLE_TIMEOUT {
                return Err(format!(
                    "no `proxy listening` and `admin listening` log lines within {}s; log:\n{}",
                    SETTLE_TIMEOUT.as_secs(),
                    proxy.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for addr in [proxy.addr, proxy.admin] {
            if !addr.ip().is_loopback() {
                return Err(format!("the proxy listens on {addr}, not on loopback"));
            }
        }
        Ok(proxy)
    }

    fn log_tail(&self) -> String {
        let log = self.log.lock().unwrap();
        log.tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// SIGTERM, then wait (bounded) for the exit status and the end of its log.
    async fn terminate(&mut self) -> Result<std::process::ExitStatus, String> {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status()
            .map_err(|e| format!("running kill: {e}"))?;
        if !sent.success() {
            return Err(format!("kill -TERM {} failed", self.pid));
        }
        let waited = Instant::now();
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if waited.elapsed() > SETTLE_TIMEOUT => {
                    return Err(format!(
                        "the proxy has not exited {}s after SIGTERM; log tail:\n{}",
                        SETTLE_TIMEOUT.as_secs(),
                        self.log_tail()
                    ))
                }
                Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(e) => return Err(format!("waiting for the proxy: {e}")),
            }
        };
        if let Some(drain) = self.drain.take() {
            let _ = tokio::task::spawn_blocking(move || drain.join()).await;
        }
        Ok(status)
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Read the proxy's JSON log until it closes stderr: every line goes to `proxy.log`; the
/// listening lines give the ports; WARN/ERROR lines are kept.
fn drain_stderr(stderr: std::process::ChildStderr, file: std::fs::File, log: Arc<Mutex<LogState>>) {
    let mut file = std::io::LineWriter::new(file);
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        let _ = writeln!(file, "{line}");
        let parsed = serde_json::from_str::<serde_json::Value>(&line).ok();
        let mut log = log.lock().unwrap();
        log.lines += 1;
        if let Some(v) = &parsed {
            let message = v["fields"]["message"].as_str().unwrap_or_default();
            let addr = v["fields"]["addr"].as_str().and_then(|a| a.parse().ok());
            match message {
                "proxy listening" => log.proxy_addr = addr,
                "admin listening" => log.admin_addr = addr,
                _ => {}
            }
        }
        let level = parsed
            .as_ref()
            .and_then(|v| v["level"].as_str().map(str::to_owned))
            // A line that is not JSON (e.g. `grantshift: <error>` on exit) counts as an error.
            .unwrap_or_else(|| "ERROR".into());
        if level == "WARN" || level == "ERROR" {
            log.warn_error_count += 1;
            if log.warn_error.len() < 10 {
                log.warn_error.push(line.clone());
            }
        }
        if log.tail.len() == 40 {
            log.tail.pop_front();
        }
        log.tail.push_back(line);
    }
    let _ = file.flush();
}

// ---------------------------------------------------------------------------------------------
// /proc sampling

#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    rss_kib: u64,
    hwm_kib: u64,
    fds: usize,
}

fn sample(pid: u32) -> Result<Sample, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("reading /proc/{pid}/status: {e}"))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map_err(|e| format!("reading /proc/{pid}/fd: {e}"))?
        .count();
    Ok(Sample {
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
        fds,
    })
}

/// What the proxy's fds are, by kind (for a leak report).
fn fd_kinds(pid: u32) -> BTreeMap<String, usize> {
    let mut kinds = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for entry in dir.flatten() {
            let target = std::fs::read_link(entry.path())
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            let kind = target.split(':').next().unwrap_or("?").to_string();
            *kinds.entry(kind).or_default() += 1;
        }
    }
    kinds
}

/// A sample once the proxy has had a moment to finish what it was doing.
async fn settle_sample(pid: u32) -> Result<Sample, String> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    sample(pid)
}

#[derive(Default, Clone, Copy)]
struct Peaks {
    peak_fds: usize,
    peak_hwm_kib: u64,
}

struct Sampler {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Peaks>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut peaks = Peaks::default();
            loop {
                if let Ok(s) = sample(pid) {
                    peaks.peak_fds = peaks.peak_fds.max(s.fds);
                    peaks.peak_hwm_kib = peaks.peak_hwm_kib.max(s.hwm_kib);
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                    _ = stopped.changed() => return peaks,
                }
            }
        });
        Sampler { stop, task }
    }

    async fn stop(self) -> Peaks {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

/// Poll `check` until it reports done (`None`), or fail after [`SETTLE_TIMEOUT`] with its
/// last word on what is still missing.
async fn settle<F, Fut>(what: &str, check: F) -> Result<(), String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Option<String>, String>>,
{
    let started = Instant::now();
    loop {
        let missing = check().await?;
        match missing {
            None => return Ok(()),
            Some(state) if started.elapsed() > SETTLE_TIMEOUT => {
                return Err(format!(
                    "{what}: not reached within {}s: {state}",
                    SETTLE_TIMEOUT.as_secs()
                ))
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Phase 1: tunnels

async fn open_tunnels(
    proxy: SocketAddr,
    n: usize,
    parallelism: usize,
    t0: Instant,
    summary: &Mutex<Summary>,
) -> Vec<Result<TcpStream, String>> {
    let permits = Arc::new(Semaphore::new(parallelism));
    let mut set = JoinSet::new();
    let mut results: Vec<Option<Result<TcpStream, String>>> = (0..n).map(|_| None).collect();
    let mut done = 0usize;
    let mut record = |done: &mut usize, (i, r): (usize, Result<TcpStream, String>)| {
        if r.is_ok() {
            summary.lock().unwrap().tunnels_open += 1;
        }
        results[i] = Some(r);
        *done += 1;
        if *done % 1000 == 0 {
            progress(t0, &format!("phase 1: {done} tunnels done"));
        }
    };
    for i in 0..n {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("open semaphore");
        set.spawn(async move {
            let result = match tokio::time::timeout(STEP_TIMEOUT, open_tunnel(proxy, i)).await {
                Ok(r) => r,
                Err(_) => Err(format!(
                    "tunnel {i}: no echo within {}s",
                    STEP_TIMEOUT.as_secs()
                )),
            };
            drop(permit);
            (i, result)
        });
        while let Some(joined) = set.try_join_next() {
            record(&mut done, joined.expect("tunnel task"));
        }
    }
    while let Some(joined) = set.join_next().await {
        record(&mut done, joined.expect("tunnel task"));
    }
    results.into_iter().map(Option::unwrap).collect()
}

async fn open_tunnel(proxy: SocketAddr, i: usize) -> Result<TcpStream, String> {
    let mut s = TcpStream::connect(proxy)
        .await
        .map_err(|e| format!("tunnel {i}: connecting to the proxy: {e}"))?;
    let _ = s.set_nodelay(true);
    let status = connect_head(&mut s, &format!("{TUNNEL_HOST}:443"))
        .await
        .map_err(|e| format!("tunnel {i}: {e}"))?;
    if status != 200 {
        return Err(format!("tunnel {i}: CONNECT answered {status}"));
    }
    echo_round_trip(&mut s, i, 0).await?;
    Ok(s)
}

/// Send `CONNECT authority` and read the response head (nothing after it is expected, as the
/// other end speaks only when spoken to). Returns the status.
async fn connect_head(s: &mut TcpStream, authority: &str) -> Result<u16, String> {
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

async fn echo_round_trip(s: &mut TcpStream, i: usize, round: u32) -> Result<(), String> {
    let msg = format!("soak tunnel {i} round {round}\n");
    s.write_all(msg.as_bytes())
        .await
        .map_err(|e| format!("tunnel {i} round {round}: write: {e}"))?;
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back)
        .await
        .map_err(|e| format!("tunnel {i} round {round}: read: {e}"))?;
    if back != msg.as_bytes() {
        return Err(format!(
            "tunnel {i} round {round}: echoed {:?}, sent {msg:?}",
            String::from_utf8_lossy(&back)
        ));
    }
    Ok(())
}

/// Every held tunnel must still carry bytes both ways.
async fn recheck_tunnels(tunnels: &mut Vec<TcpStream>, parallelism: usize) -> Result<(), String> {
    let permits = Arc::new(Semaphore::new(parallelism));
    let mut set = JoinSet::new();
    for (i, mut s) in std::mem::take(tunnels).into_iter().enumerate() {
        let permit = permits.clone().acquire_owned().await.expect("semaphore");
        set.spawn(async move {
            let r = tokio::time::timeout(STEP_TIMEOUT, echo_round_trip(&mut s, i, 1))
                .await
                .unwrap_or_else(|_| Err(format!("tunnel {i} round 1: no echo within 30s")));
            drop(permit);
            (i, s, r)
        });
    }
    let mut back: Vec<Option<TcpStream>> = Vec::new();
    let mut errors = Vec::new();
    while let Some(joined) = set.join_next().await {
        let (i, s, r) = joined.expect("recheck task");
        if back.len() <= i {
            back.resize_with(i + 1, || None);
        }
        back[i] = Some(s);
        if let Err(e) = r {
            errors.push(e);
        }
    }
    *tunnels = back.into_iter().flatten().collect();
    if errors.is_empty() {
        Ok(())
    } else {
        errors.sort();
        Err(format!(
            "{} held tunnel(s) stopped echoing after the logins; first: {}",
            errors.len(),
            errors[0]
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Phase 2: logins

fn client_tls_config(ca_pem: &str) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("grantshift-ca.pem: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("grantshift-ca.pem: {e}"))?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[derive(Default)]
struct LoginTotals {
    ok: usize,
    failed: usize,
    connect_errors: usize,
    connections: usize,
    errors: Vec<String>,
    latencies_us: Vec<u32>,
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

async fn run_logins(
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
    let mut tcp = TcpStream::connect(proxy)
        .await
        .map_err(|e| format!("login connection: connecting to the proxy: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let status = connect_head(&mut tcp, &format!("{LOGIN_HOST}:443"))
        .await
        .map_err(|e| format!("login connection: {e}"))?;
    if status != 200 {
        return Err(format!(
            "login connection: CONNECT {LOGIN_HOST}:443 answered {status}"
        ));
    }
    let name = ServerName::try_from(LOGIN_HOST).expect("valid name");
    let stream = tls
        .connect(name, tcp)
        .await
        .map_err(|e| format!("login connection: TLS with grantshift: {e}"))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("login connection: HTTP/1.1 handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn login(sender: &mut Sender, n: usize) -> Result<(), LoginError> {
    let conn_err =
        |what: &str, e: hyper::Error| LoginError::Connection(format!("login {n}: {what}: {e}"));
    sender
        .ready()
        .await
        .map_err(|e| conn_err("connection", e))?;
    let password = format!("{PASSWORD_PREFIX}{n}");
    let form = serde_urlencoded::to_string([
        ("grant_type", "password"),
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
        ("username", USERNAME),
        ("password", password.as_str()),
    ])
    .expect("form");
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
    if content_type != JSON_CT {
        return Err(LoginError::Response(format!(
            "login {n}: content-type {content_type:?}"
        )));
    }
    check_cc_body(&body).map_err(|e| LoginError::Response(format!("login {n}: {e}")))
}

/// Is `body` exactly what the fake answers a client-credentials request at the My Domain
/// host (signature included)?
fn check_cc_body(body: &[u8]) -> Result<(), String> {
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
    let id = format!("https://{MY_DOMAIN}/id/{ORG_ID}/{USER_ID}");
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
    if s("signature") != sign(&id, issued_at) {
        return Err("signature does not verify".into());
    }
    Ok(())
}

fn sign(id: &str, issued_at: &str) -> String {
    use base64::Engine;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SIGNING_KEY);
    let tag = ring::hmac::sign(&key, format!("{id}{issued_at}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
}

// ---------------------------------------------------------------------------------------------
// Checks: events file, /metrics

/// Wait (bounded) for one events line per login; every one must be `upgraded` to the My
/// Domain host with status 200, and no secret may appear in the file.
async fn check_events(path: &Path, expected: usize) -> Result<usize, String> {
    let started = Instant::now();
    let text = loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines = text.lines().count();
        if lines >= expected {
            // Give a straggler (there should be none) a moment to show up.
            tokio::time::sleep(Duration::from_millis(300)).await;
            break std::fs::read_to_string(path).unwrap_or_default();
        }
        if started.elapsed() > SETTLE_TIMEOUT {
            return Err(format!(
                "the events file has {lines} lines after {}s, expected {expected}",
                SETTLE_TIMEOUT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut actions: BTreeMap<String, usize> = BTreeMap::new();
    let mut upgraded = 0;
    let mut bad = Vec::new();
    let total = text.lines().count();
    for (i, line) in text.lines().enumerate() {
        let v: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                bad.push(format!("line {}: not JSON ({e})", i + 1));
                continue;
            }
        };
        let action = v["action"].as_str().unwrap_or("?").to_string();
        *actions.entry(action.clone()).or_default() += 1;
        if action == "upgraded" {
            upgraded += 1;
            let ok = v["host"] == LOGIN_HOST
                && v["target_host"] == MY_DOMAIN
                && v["status"] == 200
                && v["flow"] == "client_credentials"
                && v["client_id"] == CLIENT_ID
                && v["username"] == USERNAME
                && v["org_id"] == ORG_ID
                && v["user_id"] == USER_ID;
            if !ok && bad.len() < 5 {
                bad.push(format!("line {}: {line}", i + 1));
            }
        }
    }
    for secret in [CLIENT_SECRET, PASSWORD_PREFIX, ACCESS_TOKEN_PREFIX] {
        if text.contains(secret) {
            bad.push(format!("the events file contains a secret ({secret}…)"));
        }
    }
    if upgraded != expected || total != expected || !bad.is_empty() {
        return Err(format!(
            "events file: {total} lines, actions {actions:?}, expected exactly {expected} `upgraded`; problems: {bad:?}"
        ));
    }
    Ok(upgraded)
}

/// GET a path on the admin server over a fresh connection.
async fn admin_get(admin: SocketAddr, path: &str) -> Result<String, String> {
    let fetch = async {
        let tcp = TcpStream::connect(admin)
            .await
            .map_err(|e| format!("connecting to the admin server: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| format!("admin handshake: {e}"))?;
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header(HOST, admin.to_string())
            .header("connection", "close")
            .body(Empty::<Bytes>::new())
            .expect("request");
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("GET {path}: {e}"))?
            .to_bytes();
        drop(sender);
        let _ = conn.await;
        if status != StatusCode::OK {
            return Err(format!("GET {path}: status {status}"));
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    };
    tokio::time::timeout(STEP_TIMEOUT, fetch)
        .await
        .unwrap_or_else(|_| Err(format!("GET {path}: no answer within 30s")))
}

async fn fetch_metrics(admin: SocketAddr) -> Result<String, String> {
    admin_get(admin, "/metrics").await
}

/// `(labels, value)` of every sample of `name` (labels as written, without braces).
fn metric<'a>(text: &'a str, name: &str) -> Vec<(&'a str, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (labels, value) = if let Some(rest) = rest.strip_prefix('{') {
                let (labels, value) = rest.split_once('}')?;
                (labels, value)
            } else if rest.starts_with(' ') {
                ("", rest)
            } else {
                return None;
            };
            Some((labels, value.split_whitespace().next()?.parse().ok()?))
        })
        .collect()
}

/// `grantshift_connections_active` by kind.
fn active_gauges(text: &str) -> BTreeMap<String, i64> {
    metric(text, "grantshift_connections_active")
        .into_iter()
        .map(|(labels, v)| {
            let kind = labels
                .trim_start_matches("kind=\"")
                .trim_end_matches('"')
                .to_string();
            (kind, v as i64)
        })
        .collect()
}

fn check_metrics(text: &str, args: &Args, login_conns: usize) -> Result<(), String> {
    let tokens: Vec<(&str, f64)> = metric(text, "grantshift_token_requests_total")
        .into_iter()
        .filter(|(_, v)| *v != 0.0)
        .collect();
    let upgraded_labels = format!(r#"host="{LOGIN_HOST}",grant="password",action="upgraded""#);
    let expected: Vec<(&str, f64)> = if args.logins == 0 {
        vec![]
    } else {
        vec![(upgraded_labels.as_str(), args.logins as f64)]
    };
    if tokens != expected {
        return Err(format!(
            "/metrics grantshift_token_requests_total: {tokens:?}, expected {expected:?}"
        ));
    }
    let failures: f64 = metric(text, "grantshift_upgrade_failures_total")
        .iter()
        .map(|(_, v)| v)
        .sum();
    if failures != 0.0 {
        return Err(format!(
            "/metrics grantshift_upgrade_failures_total sums to {failures}"
        ));
    }
    let totals: BTreeMap<String, f64> = metric(text, "grantshift_connections_total")
        .into_iter()
        .map(|(l, v)| {
            (
                l.trim_start_matches("kind=\"")
                    .trim_end_matches('"')
                    .to_string(),
                v,
            )
        })
        .collect();
    let want = [
        ("tunnel", args.tunnels as f64),
        ("intercept", login_conns as f64),
        ("http", 0.0),
    ];
    for (kind, n) in want {
        if totals.get(kind).copied().unwrap_or(0.0) != n {
            return Err(format!(
                "/metrics grantshift_connections_total{{kind=\"{kind}\"}} is {:?}, expected {n}",
                totals.get(kind)
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Fake upstreams

struct FakeState {
    cc_ok: AtomicU64,
    rejected: AtomicU64,
    reasons: Mutex<BTreeMap<String, u64>>,
    seq: AtomicU64,
}

struct FakeSalesforce {
    addr: SocketAddr,
    ca_pem_path: PathBuf,
    state: Arc<FakeState>,
    connections: Arc<AtomicUsize>,
    close: watch::Sender<bool>,
}

impl FakeSalesforce {
    async fn start(dir: &Path) -> Result<FakeSalesforce, String> {
        let (ca_pem, leaves) = fake_ca::fake_ca(
            "grantshift soak fake Salesforce CA",
            &[LOGIN_HOST, MY_DOMAIN],
        )?;
        let ca_pem_path = dir.join("fake-salesforce-ca.pem");
        std::fs::write(&ca_pem_path, ca_pem).map_err(|e| format!("writing the fake CA: {e}"))?;
        let mut resolver = rustls::server::ResolvesServerCertUsingSni::new();
        for (host, key) in leaves {
            resolver
                .add(&host, key)
                .map_err(|e| format!("fake SNI certificate for {host}: {e}"))?;
        }
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = bind_loopback().map_err(|e| format!("binding the fake Salesforce: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let state = Arc::new(FakeState {
            cc_ok: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            reasons: Mutex::new(BTreeMap::new()),
            seq: AtomicU64::new(0),
        });
        let connections = Arc::new(AtomicUsize::new(0));
        let (close, closing) = watch::channel(false);
        {
            let (state, connections) = (state.clone(), connections.clone());
            tokio::spawn(async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    let _ = tcp.set_nodelay(true);
                    connections.fetch_add(1, Ordering::SeqCst);
                    let (acceptor, state, mut closing) =
                        (acceptor.clone(), state.clone(), closing.clone());
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let sni = tls.get_ref().1.server_name().map(str::to_owned);
                        let service = hyper::service::service_fn(move |req| {
                            let (state, sni) = (state.clone(), sni.clone());
                            async move {
                                Ok::<_, std::convert::Infallible>(
                                    fake_token_endpoint(req, sni.as_deref(), &state).await,
                                )
                            }
                        });
                        let builder =
                            hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                        let conn = builder.serve_connection(TokioIo::new(tls), service);
                        tokio::pin!(conn);
                        tokio::select! {
                            _ = conn.as_mut() => {}
                            _ = async { closing.wait_for(|c| *c).await.is_ok() } => {
                                conn.as_mut().graceful_shutdown();
                                let _ = conn.await;
                            }
                        }
                    });
                }
            });
        }
        Ok(FakeSalesforce {
            addr,
            ca_pem_path,
            state,
            connections,
            close,
        })
    }

    fn counts(&self) -> (u64, u64, BTreeMap<String, u64>) {
        (
            self.state.cc_ok.load(Ordering::SeqCst),
            self.state.rejected.load(Ordering::SeqCst),
            self.state.reasons.lock().unwrap().clone(),
        )
    }

    /// Close every connection once its in-flight requests are done (idle keep-alive ones at
    /// once), as a server's keep-alive timeout would.
    fn close_idle(&self) {
        let _ = self.close.send(true);
    }
}

async fn fake_token_endpoint(
    req: Request<Incoming>,
    sni: Option<&str>,
    state: &FakeState,
) -> Response<Full<Bytes>> {
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
    let (method, path, query) = (
        req.method().clone(),
        req.uri().path().to_owned(),
        req.uri().query().map(str::to_owned),
    );
    let body = match req.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return reject(
                state,
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "body error",
            )
        }
    };
    if method != Method::POST || path != TOKEN_PATH {
        return reject(state, StatusCode::NOT_FOUND, "not_found", "unknown path");
    }
    let params: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let get = |k: &str| {
        params
            .iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.as_str())
    };
    if sni != Some(MY_DOMAIN) || host != MY_DOMAIN {
        // What login.salesforce.com says to a password grant it will not take.
        return reject(
            state,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "authentication failure",
        );
    }
    if get("grant_type") != Some("client_credentials") {
        return reject(
            state,
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant type not supported",
        );
    }
    if get("client_id") != Some(CLIENT_ID) || get("client_secret") != Some(CLIENT_SECRET) {
        return reject(
            state,
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "invalid client credentials",
        );
    }
    if get("username").is_some() || get("password").is_some() || query.is_some() {
        return reject(
            state,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "unexpected username, password or query string",
        );
    }
    let n = state.seq.fetch_add(1, Ordering::SeqCst);
    let issued_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
        .to_string();
    let id = format!("https://{MY_DOMAIN}/id/{ORG_ID}/{USER_ID}");
    let body = serde_json::json!({
        "access_token": format!("{ACCESS_TOKEN_PREFIX}AQsoak.{n:08}.cc"),
        "instance_url": format!("https://{MY_DOMAIN}"),
        "id": id,
        "token_type": "Bearer",
        "issued_at": issued_at,
        "signature": sign(&id, &issued_at),
        "scope": "api",
    });
    state.cc_ok.fetch_add(1, Ordering::SeqCst);
    json_response(StatusCode::OK, &body)
}

fn reject(
    state: &FakeState,
    status: StatusCode,
    error: &str,
    description: &str,
) -> Response<Full<Bytes>> {
    state.rejected.fetch_add(1, Ordering::SeqCst);
    *state
        .reasons
        .lock()
        .unwrap()
        .entry(format!("{status} {error}"))
        .or_default() += 1;
    json_response(
        status,
        &serde_json::json!({"error": error, "error_description": description}),
    )
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, http::HeaderValue::from_static(JSON_CT));
    resp
}

/// 127.0.0.1, port 0, with a listen backlog deep enough that the fakes never drop a SYN.
fn bind_loopback() -> std::io::Result<TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::new(LOOPBACK, 0))?;
    socket.listen(4096)
}

/// A plain TCP echo server: the non-intercepted host the tunnels reach.
struct EchoServer {
    addr: SocketAddr,
    /// Connections currently open.
    open: Arc<AtomicI64>,
}

impl EchoServer {
    async fn start() -> Result<EchoServer, String> {
        let listener = bind_loopback().map_err(|e| format!("binding the echo server: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let open = Arc::new(AtomicI64::new(0));
        let counter = open.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let _ = tcp.set_nodelay(true);
                counter.fetch_add(1, Ordering::SeqCst);
                let counter = counter.clone();
                tokio::spawn(async move {
                    echo(tcp).await;
                    counter.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Ok(EchoServer { addr, open })
    }
}

async fn echo(mut tcp: TcpStream) {
    let mut buf = [0u8; 512];
    loop {
        match read_some(&mut tcp, &mut buf).await {
            Some(n) => {
                if tcp.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            None => {
                let _ = tcp.shutdown().await;
                return;
            }
        }
    }
}

async fn read_some<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> Option<usize> {
    match r.read(buf).await {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(n),
    }
}

// ---------------------------------------------------------------------------------------------
// Summary

struct Summary {
    phase: String,
    proxy_bin: String,
    proxy_pid: Option<u32>,
    fd_limit: Option<u64>,
    tunnels_target: usize,
    tunnels_open: usize,
    tunnels_rechecked: Option<usize>,
    tunnel_open_secs: Option<f64>,
    logins_target: usize,
    concurrency: usize,
    logins_ok: usize,
    logins_err: usize,
    login_conns: usize,
    login_secs: Option<f64>,
    latencies: Vec<u32>,
    upstream_conns: Option<usize>,
    events_upgraded: Option<usize>,
    metrics_upgraded: Option<usize>,
    client_errors: usize,
    baseline_rss_kib: Option<u64>,
    baseline_fds: Option<usize>,
    tunnels_rss_kib: Option<u64>,
    tunnels_fds: Option<usize>,
    logins_rss_kib: Option<u64>,
    peak_hwm_kib: Option<u64>,
    peak_fds: Option<usize>,
    fds_pool_warm: Option<usize>,
    fds_after_close: Option<usize>,
    rss_after_close_kib: Option<u64>,
    close_secs: Option<f64>,
    proxy_exit: Option<String>,
    shutdown_secs: Option<f64>,
    warn_lines: usize,
    /// System-wide kernel TCP counters, increase during the run.
    kernel: BTreeMap<String, u64>,
    deadline_secs: u64,
    elapsed: Duration,
}

impl Summary {
    fn new(args: &Args) -> Summary {
        Summary {
            phase: "start".into(),
            proxy_bin: String::new(),
            proxy_pid: None,
            fd_limit: None,
            tunnels_target: args.tunnels,
            tunnels_open: 0,
            tunnels_rechecked: None,
            tunnel_open_secs: None,
            logins_target: args.logins,
            concurrency: args.concurrency,
            logins_ok: 0,
            logins_err: 0,
            login_conns: 0,
            login_secs: None,
            latencies: Vec::new(),
            upstream_conns: None,
            events_upgraded: None,
            metrics_upgraded: None,
            client_errors: 0,
            baseline_rss_kib: None,
            baseline_fds: None,
            tunnels_rss_kib: None,
            tunnels_fds: None,
            logins_rss_kib: None,
            peak_hwm_kib: None,
            peak_fds: None,
            fds_pool_warm: None,
            fds_after_close: None,
            rss_after_close_kib: None,
            close_secs: None,
            proxy_exit: None,
            shutdown_secs: None,
            warn_lines: 0,
            kernel: BTreeMap::new(),
            deadline_secs: args.deadline_secs,
            elapsed: Duration::ZERO,
        }
    }

    fn print(&self, error: Option<&String>, dir: &str) {
        fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
            v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
        }
        let mib = |kib: Option<u64>| {
            kib.map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
                .unwrap_or_else(|| "-".into())
        };
        let pct = |p: f64| -> String {
            if self.latencies.is_empty() {
                return "-".into();
            }
            let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
            format!("{:.1} ms", self.latencies[i] as f64 / 1000.0)
        };
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0);
        println!();
        println!(
            "==== grantshift soak: {} ====",
            if error.is_none() { "PASS" } else { "FAIL" }
        );
        if let Some(e) = error {
            println!("error: {e}");
            println!("failed during: {}", self.phase);
        }
        let row = |k: &str, v: String| println!("  {k:<26} {v}");
        row(
            "machine",
            format!(
                "{cores} cores, loopback 127.0.0.1 only; fd limit {}",
                opt(self.fd_limit)
            ),
        );
        row(
            "proxy",
            format!("{} (pid {})", self.proxy_bin, opt(self.proxy_pid)),
        );
        row(
            "tunnels held",
            format!(
                "{} / {} (echo verified on open; {} re-verified after the logins)",
                self.tunnels_open,
                self.tunnels_target,
                opt(self.tunnels_rechecked)
            ),
        );
        row(
            "tunnels opened in",
            self.tunnel_open_secs
                .map(|s| {
                    format!(
                        "{s:.1} s ({:.0} tunnels/s)",
                        self.tunnels_open as f64 / s.max(1e-9)
                    )
                })
                .unwrap_or_else(|| "-".into()),
        );
        row(
            "logins OK / errors",
            format!(
                "{} / {} of {} (client connections: {} over {} workers)",
                self.logins_ok,
                self.logins_err,
                self.logins_target,
                self.login_conns,
                self.concurrency
            ),
        );
        row(
            "logins took",
            self.login_secs
                .map(|s| {
                    format!(
                        "{s:.1} s, throughput {:.0} logins/s",
                        self.logins_ok as f64 / s.max(1e-9)
                    )
                })
                .unwrap_or_else(|| "-".into()),
        );
        row(
            "login latency",
            format!("p50 {}, p99 {}, max {}", pct(0.5), pct(0.99), pct(1.0)),
        );
        row(
            "upstream TLS connections",
            format!(
                "{} (opened by the proxy to the fake)",
                opt(self.upstream_conns)
            ),
        );
        row(
            "events `upgraded`",
            format!(
                "{} (expected {})",
                opt(self.events_upgraded),
                self.logins_target
            ),
        );
        row(
            "/metrics upgraded",
            format!(
                "{} (expected {})",
                opt(self.metrics_upgraded),
                self.logins_target
            ),
        );
        row("RSS baseline", mib(self.baseline_rss_kib));
        row("RSS with tunnels open", mib(self.tunnels_rss_kib));
        row(
            "RSS per tunnel",
            match (self.tunnels_rss_kib, self.baseline_rss_kib) {
                (Some(t), Some(b)) if self.tunnels_open > 0 => format!(
                    "{:.1} KiB",
                    (t as f64 - b as f64) / self.tunnels_open as f64
                ),
                _ => "-".into(),
            },
        );
        row("RSS after the logins", mib(self.logins_rss_kib));
        row("peak RSS (VmHWM)", mib(self.peak_hwm_kib));
        row("RSS after close", mib(self.rss_after_close_kib));
        row(
            "fds baseline / tunnels",
            format!("{} / {}", opt(self.baseline_fds), opt(self.tunnels_fds)),
        );
        row("peak fds", opt(self.peak_fds));
        row(
            "fds after close",
            format!(
                "{} with the upstream pool warm, {} after the upstream closed idle connections{}",
                opt(self.fds_pool_warm),
                opt(self.fds_after_close),
                self.close_secs
                    .map(|s| format!(" ({s:.1} s)"))
                    .unwrap_or_default()
            ),
        );
        row("client-side errors", self.client_errors.to_string());
        row(
            "kernel TCP counters",
            if self.kernel.is_empty() {
                "-".into()
            } else {
                let counters: Vec<String> = self
                    .kernel
                    .iter()
                    .map(|(k, v)| format!("{k} +{v}"))
                    .collect();
                format!("{} (system-wide, during the run)", counters.join(", "))
            },
        );
        row("proxy WARN/ERROR lines", self.warn_lines.to_string());
        row(
            "proxy exit after SIGTERM",
            format!(
                "{}{}",
                opt(self.proxy_exit.as_deref()),
                self.shutdown_secs
                    .map(|s| format!(" in {s:.2} s"))
                    .unwrap_or_default()
            ),
        );
        row(
            "elapsed",
            format!(
                "{:.1} s (deadline {} s)",
                self.elapsed.as_secs_f64(),
                self.deadline_secs
            ),
        );
        row("work dir", dir.to_string());
    }
}
