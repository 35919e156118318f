//! Soak test: the real `grantshift` binary holding thousands of blind tunnels open while it
//! upgrades tens of thousands of password logins, all on loopback, bounded in time.
//!
//! ```sh
//! cargo build --release                              # the proxy binary under test
//! cargo run --release -p soak                        # 5,000 tunnels + 20,000 logins
//! cargo run --release -p soak -- --tunnels 200 --logins 1000   # a quick try
//! ```
//!
//! A workspace member of its own (`tools/soak`, `publish = false`): a tool, not an example. The
//! fake Salesforce, the echo server, the CONNECT and TLS client pieces, the proxy process with
//! its JSON log drained, and `/proc/<pid>` come from testkit, shared with the end-to-end
//! benchmark (`benches/e2e`). Modules: [`tunnels`] (phase 1), [`logins`] (phase 2), [`checks`]
//! (events file, `/metrics`, sampling, settling), [`summary`].
//!
//! What it does, in one process next to the proxy's:
//!
//! - Stands up a fake Salesforce (`testkit::fast_salesforce`): its own CA, leaf certificates for
//!   `login.salesforce.com` and `acme.my.salesforce.com` chosen by SNI, HTTP/1.1 and h2.
//!   `POST /services/oauth2/token` with `grant_type=client_credentials` and the soak app's
//!   client id and secret at `acme.my.salesforce.com` gets a 200 client-credentials response
//!   (signed with the app's secret, HMAC-SHA256, which the client checks); anything else gets a
//!   JSON error. Plus a plain TCP echo server standing in for a host that is not intercepted
//!   (`tunnel.soak.test`).
//! - Starts `target/release/grantshift run` (next to this tool's own binary) as a separate process on a generated config in a
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

mod checks;
mod logins;
mod summary;
mod tunnels;

use checks::{active_gauges, check_events, check_metrics, fetch_metrics, settle, settle_sample};
use clap::Parser;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use summary::Summary;
use testkit::fast_salesforce::{FastConfig, FastSalesforce, TokenAnswer, MY_DOMAIN};
use testkit::process::proc_status;
use testkit::{LoadConfig, ProxyProcess, TcpEchoServer, LOGIN_HOST};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const TUNNEL_HOST: &str = "tunnel.soak.test";
const USERNAME: &str = "soak@acme.com";
const CLIENT_ID: &str = "3MVG9soak.acmeIntegration.consumerKey";
/// Distinctive secrets: the events file is checked for them.
const CLIENT_SECRET: &str = "cs-SOAK-SECRET-5a1e";
const PASSWORD_PREFIX: &str = "pw-SOAK-SECRET-";
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
    /// The grantshift binary [default: grantshift next to this tool's binary, i.e.
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
    let fake = FastSalesforce::start(
        dir,
        FastConfig {
            ca_name: "grantshift soak fake Salesforce CA",
            hosts: &[LOGIN_HOST, MY_DOMAIN],
            client_id: CLIENT_ID,
            client_secret: CLIENT_SECRET,
            answer: TokenAnswer::Signed,
            close_listener: false,
            plain_listener: false,
        },
    )
    .await?;
    let echo =
        TcpEchoServer::start_for_load().map_err(|e| format!("starting the echo server: {e}"))?;

    set_phase("starting the proxy");
    let config = render_config(args, dir, &fake, &echo);
    let config_path = dir.join("grantshift.toml");
    std::fs::write(&config_path, &config).map_err(|e| format!("writing the config: {e}"))?;
    let mut proxy = start_proxy(&proxy_bin, dir, &config_path)?;
    let pid = proxy.pid();
    summary.lock().unwrap().proxy_pid = Some(pid);
    let (proxy_addr, admin_addr) = proxy.wait_listening(SETTLE_TIMEOUT).await?;
    for addr in [proxy_addr, admin_addr] {
        if !addr.ip().is_loopback() {
            return Err(format!("the proxy listens on {addr}, not on loopback"));
        }
    }
    progress(
        t0,
        &format!("proxy pid {pid} listening on {proxy_addr}, admin on {admin_addr}"),
    );
    let proxy_ca_pem = std::fs::read_to_string(dir.join("grantshift-ca.pem")).map_err(|e| {
        format!("reading the CA grantshift created next to its config (grantshift-ca.pem): {e}")
    })?;
    let tls = testkit::try_client_config(&[&proxy_ca_pem], &[b"http/1.1"])
        .map_err(|e| format!("grantshift-ca.pem: {e}"))?;
    let tls = TlsConnector::from(Arc::new(tls));

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
    let sampler = checks::Sampler::start(pid);

    // ---- Phase 1: tunnels -------------------------------------------------------------------
    set_phase(&format!(
        "phase 1: opening {} CONNECT tunnels to {TUNNEL_HOST}:443 ({} at a time)",
        args.tunnels, args.open_parallelism
    ));
    let phase1 = Instant::now();
    let mut tunnels =
        tunnels::open_tunnels(proxy_addr, args.tunnels, args.open_parallelism, t0, summary).await;
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
    let echo_open = echo.open_connections();
    if echo_open != args.tunnels {
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
    let logins = logins::run_logins(proxy_addr, tls, args.logins, args.concurrency, t0).await;
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
    if let Ok(after_logins) = proc_status(&pid.to_string()) {
        summary.lock().unwrap().logins_rss_kib = Some(after_logins.rss_kib);
    }
    let counts = fake.counts();
    let (fake_ok, fake_rejected, fake_reasons) =
        (counts.tokens, counts.rejected, fake.rejections().0);
    summary.lock().unwrap().upstream_conns = Some(counts.connections);
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
    let rechecked = tunnels::recheck_tunnels(&mut tunnels, args.open_parallelism).await;
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
    let echo = &echo;
    settle(
        "grantshift_connections_active back to 0 and the echo side closed",
        || async move {
            let metrics = fetch_metrics(admin_addr).await?;
            let active = active_gauges(&metrics);
            let echo_open = echo.open_connections();
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
    let warm = proc_status(&pid.to_string())?;
    summary.lock().unwrap().fds_pool_warm = Some(warm.fds);
    // The proxy's pooled upstream connections to the fake stay open until Salesforce (or the
    // pool's idle timeout) closes them: close them from the fake's side, as a server would.
    fake.close_idle();
    settle("the proxy's open fds back to the baseline", || async move {
        let s = proc_status(&pid.to_string())?;
        if s.fds <= baseline.fds {
            Ok(None)
        } else {
            Ok(Some(format!(
                "{} fds open, baseline {} ({:?})",
                s.fds,
                baseline.fds,
                testkit::process::fd_kinds_of(&pid.to_string())
            )))
        }
    })
    .await?;
    let after = proc_status(&pid.to_string())?;
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
    let status = proxy.terminate(SETTLE_TIMEOUT).await?;
    {
        let mut s = summary.lock().unwrap();
        s.proxy_exit = Some(format!("{status}"));
        s.shutdown_secs = Some(stop.elapsed().as_secs_f64());
    }
    if !status.success() {
        return Err(format!("the proxy exited with {status} after SIGTERM"));
    }
    let log = proxy.log();
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
    let (soft, hard) = testkit::process::raise_fd_limit()?;
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
        None => testkit::profile_dir()
            .map(|profile| profile.join("grantshift"))
            .ok_or("cannot find the directory of this tool's binary")?,
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
        newest_mtime(&testkit::repo_path("src")),
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

fn render_config(args: &Args, dir: &Path, fake: &FastSalesforce, echo: &TcpEchoServer) -> String {
    let connect_to = [
        (format!("{LOGIN_HOST}:443"), fake.addr()),
        (format!("{MY_DOMAIN}:443"), fake.addr()),
        (format!("{TUNNEL_HOST}:443"), echo.addr()),
    ];
    LoadConfig {
        generated_by: "tools/soak",
        listen: "127.0.0.1:0",
        admin_listen: "127.0.0.1:0",
        max_connections: args.tunnels + 4 * args.concurrency + 1000,
        shutdown_grace: "10s",
        extra_root_cert: fake.ca_pem_path(),
        connect_to: &connect_to,
        username: USERNAME,
        my_domain: MY_DOMAIN,
        events: &dir.join("events.jsonl").display().to_string(),
        credential_lines: "",
    }
    .render()
}

/// `grantshift run -c <config> --log-format json` in `dir`, at its default log level (the
/// `listening` lines are INFO), its log drained into `dir/proxy.log`.
fn start_proxy(bin: &Path, dir: &Path, config: &Path) -> Result<ProxyProcess, String> {
    let mut cmd = Command::new(bin);
    testkit::clean_env(&mut cmd)
        .current_dir(dir)
        .arg("run")
        .arg("-c")
        .arg(config)
        .args(["--log-format", "json"]);
    ProxyProcess::spawn(cmd, &dir.join("proxy.log"))
}
