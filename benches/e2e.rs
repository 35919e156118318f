//! End-to-end benchmark: the real `grantshift` release binary between a load client and the
//! Salesforce hosts over TLS (by default nginx as their TLS edge in front of a fake Salesforce),
//! measured against a direct connection to the same upstream in the same run.
//!
//! ```sh
//! cargo bench --bench e2e                     # full size, 3 rounds (a few minutes)
//! cargo bench --bench e2e -- --quick          # 1/10 of the size, 1 round (or GRANTSHIFT_BENCH_QUICK=1)
//! cargo bench --bench e2e -- --only A32,B32   # some scenarios (A1 A32 A1ev A32ev B32 C D E L1)
//! cargo bench --bench e2e -- --rounds 5       # more rounds: medians over more samples
//! cargo bench --bench e2e -- --upstream nginx-h1   # nginx-h2 (default), nginx-h1 or fake
//! cargo bench --bench e2e -- --only A32 --perf-dir /tmp/perf   # + perf record / perf stat of the proxy
//! ```
//!
//! The table goes to stdout and to `target/bench-e2e-<upstream>.md` (`bench-e2e-nginx-h2.md`,
//! ...); its heading names the upstream (e.g. `upstream: nginx 1.22.1 (h2 + http/1.1)`), so
//! tables of different runs cannot be confused.
//!
//! # Upstream (`--upstream`)
//!
//! - **`nginx-h2`** (default) and **`nginx-h1`**: Debian's nginx (`--nginx PATH`, default
//!   `/usr/sbin/nginx`) is the TLS edge of `login.salesforce.com`, `acme.my.salesforce.com` and
//!   `conn.my.salesforce.com`, as a real server is in production: the bench starts it as its
//!   child, `nginx -p <work dir>/nginx/ -c nginx.conf`, the config saying `daemon off;
//!   master_process off; worker_processes 1;` (one process: its CPU is that process's) and
//!   keeping everything (pid, lock file, `error_log ... warn`, temp paths) in that directory;
//!   `access_log off`; never the system service or `/etc/nginx`. Its certificate is one leaf
//!   for the three hosts from the fake's CA (`support/fake_ca.rs`). One server for the login
//!   host and the My Domain, `listen ... ssl http2` (ALPN h2 + http/1.1; `nginx-h1`: `listen
//!   ... ssl`, HTTP/1.1 only) with `keepalive_requests 100000000; keepalive_timeout 300s;`; a
//!   second, `listen ... ssl` (HTTP/1.1) with `keepalive_timeout 0;`, for
//!   `conn.my.salesforce.com` (closes after every response: scenario C). Both `proxy_pass` with
//!   `proxy_http_version 1.1`, `Connection ""` and `Host $host` to an `upstream { keepalive 64; }`
//!   of the fake on a plain HTTP/1.1 listener, which checks the Host (there is no SNI to check)
//!   and counts requests as over TLS. nginx starts after this process pins itself, so it
//!   inherits CPU 1; its CPU time counts as the client side's.
//! - **`fake`**: no nginx; the fake Salesforce terminates TLS itself (below), as before this
//!   option existed. Its HTTP/2 multiplexing hides real costs (one pooled h2 connection for
//!   all 32 clients).
//!
//! # Set-up
//!
//! - **The proxy** is the real binary, built first with `cargo build --release --bin grantshift`
//!   (not the one `cargo bench` builds for benches: that one carries the test-only
//!   `fault-injection` hooks through the dev-dependency), copied into a temporary directory so
//!   a concurrent rebuild cannot swap it mid-run, and started as `taskset -c 0 grantshift run`
//!   with `RUST_LOG=warn`, `admin_listen` on a 127.0.0.1 port the bench picks (for `/metrics`),
//!   `connect_to_only = true`, `connect_to` for the Salesforce hosts (nginx's two ports, or
//!   the fake's) and the plain servers, `extra_root_certs` = the fake's CA (which also signed
//!   nginx's leaf), one `[[credentials]]` mapping the bench username to the My Domain, and
//!   `[telemetry] events = ""` (the `ev` rows: an events file, the default). Around each
//!   measured proxy run of A, B and C the bench reads `grantshift_upstream_connections_total`
//!   from `/metrics`: the table's "upstream conns opened" (`-` if the counter is missing).
//! - **This process** (load client, fake Salesforce, plain TCP servers) pins itself to CPU 1
//!   with `taskset -a -p -c 1 <own pid>` before it starts any thread (or child: nginx inherits
//!   the mask), and runs everything on one current-thread tokio runtime. `taskset`
//!   (util-linux) rather than a crate such as `core_affinity`: it is the same tool that pins
//!   the proxy, needs no new dependency and no `unsafe`, and every thread created afterwards
//!   inherits the mask.
//! - **The fake Salesforce**: its own rcgen CA; leaves for `login.salesforce.com` and
//!   `acme.my.salesforce.com` chosen by SNI, ALPN `h2` + `http/1.1` (the proxy's pooled client
//!   picks h2, as with the real Salesforce); a second listener for `conn.my.salesforce.com`
//!   speaks HTTP/1.1 only and closes every connection after one response (scenario C); with
//!   nginx, a third, plain HTTP/1.1 keep-alive listener that nginx forwards to. Plus a
//!   plain TCP "blob" server (`files.bench.test`: send an 8-byte length, get that many bytes)
//!   and a TCP echo server (`idle.bench.test`), both blind-tunnelled.
//!
//! # Scenarios (direct baseline in brackets)
//!
//! - **A1 / A32**: `POST /services/oauth2/token` password grant to `login.salesforce.com`
//!   through CONNECT + TLS, upgraded to client credentials and redirected to
//!   `acme.my.salesforce.com`; 1 and 32 keep-alive connections. [The client-credentials body
//!   straight to `acme.my.salesforce.com` over TLS.] `ev` rows: the same with the events file on.
//! - **B32**: `GET /services/data/v62.0/sobjects/Account/…` on `acme.my.salesforce.com`,
//!   32 keep-alive connections. [The same GET, direct.]
//! - **C**: a new connection per request, 8 at a time: CONNECT + client TLS handshake with the
//!   proxy + the proxy's own TCP + TLS handshake upstream (the fake closes after each
//!   response, as does nginx's second server). The client offers no session resumption; the
//!   proxy's upstream client may resume (rustls default, as against the real Salesforce; nginx
//!   issues session tickets by default). [TCP + TLS per request, direct.]
//! - **D**: one 1 GiB download through a blind tunnel to `files.bench.test`. [Plain TCP,
//!   direct.]
//! - **E**: 5,000 idle tunnels held open to `idle.bench.test` (each checked by one echo) on a
//!   fresh proxy; RSS growth per tunnel (VmRSS from `/proc/<pid>/status`).
//! - **L1** (no target; the floor under A1): 64-byte round trips to the echo server on one
//!   connection through a blind tunnel. No TLS, HTTP or rewrite: only the two extra hops
//!   between the cores, which no proxy on another core can avoid. [The same, direct.]
//!
//! Connections are opened before the clock starts (except C, where opening them is the
//! work), every scenario is warmed up first, and request counts are fixed. The proxy's CPU
//! is `utime + stime` from `/proc/<pid>/stat` (all its threads) around the measured part; the
//! same for this process and the `/proc/stat` per-CPU busy time give how loaded each core
//! was, and by what else. Every response is checked (status and body size) and the fake
//! counts what it answered (behind nginx too): a wrong answer stops the run. There are no timed assertions: the
//! "met?" column is a report, never a failure.

#[path = "support/fake_ca.rs"]
mod fake_ca;

use bytes::Bytes;
use clap::Parser;
use http::header::{CONNECTION, CONTENT_TYPE, HOST};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Barrier, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::{TlsAcceptor, TlsConnector};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const LOGIN_HOST: &str = "login.salesforce.com";
const MY_DOMAIN: &str = "acme.my.salesforce.com";
/// Intercepted host whose fake closes every connection after one response (scenario C).
const CONN_HOST: &str = "conn.my.salesforce.com";
/// Blind-tunnelled: the bulk download (D).
const BLOB_HOST: &str = "files.bench.test";
/// Blind-tunnelled: the idle tunnels (E) and the readiness probe.
const ECHO_HOST: &str = "idle.bench.test";
const TOKEN_PATH: &str = "/services/oauth2/token";
const DATA_PATH: &str = "/services/data/v62.0/sobjects/Account/001000000000001AAA";
const USERNAME: &str = "bench@acme.com";
const CLIENT_ID: &str =
    "3MVG9benchAcmeIntegrationConsumerKey.0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN";
const CLIENT_SECRET: &str = "8E1F7C2B9A6D4E3F0A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F6071";
const PASSWORD: &str = "correct-horse-battery-staple1A2b3C4d5E6f7G8h9I0jK";
/// One step (opening a connection, one request) taking longer than this stops the run: a
/// hang guard, not a measurement.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// What the fake answers a client-credentials request (a real response's shape and size).
const TOKEN_RESPONSE: &str = concat!(
    r#"{"access_token":"00D000000000001!AQ0AQBenchAccessToken.0123456789abcdefghijklmnopqrstuvwxyz"#,
    r#"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopqrstuvwxyz","signature":"#,
    r#""f0Kx5zBench1Sig2nature3Base64Value4AbCdEf5GhIj=","scope":"api","#,
    r#""instance_url":"https://acme.my.salesforce.com","#,
    r#""id":"https://login.salesforce.com/id/00D000000000001AAA/005000000000001AAA","#,
    r#""token_type":"Bearer","issued_at":"1767225600000"}"#
);

/// What the fake answers the REST GET: about 1 KiB, like one small sObject record.
fn data_response() -> Bytes {
    let mut body = String::from(
        r#"{"attributes":{"type":"Account","url":"/services/data/v62.0/sobjects/Account/001000000000001AAA"},"Id":"001000000000001AAA","Name":"Acme Corporation","Type":"Customer - Direct","Industry":"Manufacturing","BillingCity":"San Francisco","BillingCountry":"United States","Phone":"+1 415 555 0100","Website":"https://www.acme.example","NumberOfEmployees":12000,"AnnualRevenue":950000000.0,"OwnerId":"005000000000001AAA","CreatedDate":"2024-01-02T03:04:05.000+0000","LastModifiedDate":"2026-01-02T03:04:05.000+0000","SystemModstamp":"2026-01-02T03:04:05.000+0000","Description":""#,
    );
    while body.len() < 1000 {
        body.push_str("Lorem ipsum dolor sit amet. ");
    }
    body.push_str(r#""}"#);
    Bytes::from(body)
}

// ---------------------------------------------------------------------------------------------
// Command line

#[derive(Parser, Debug, Clone)]
#[command(about = "grantshift end-to-end benchmark: proxy vs direct, in one run")]
struct Args {
    /// 1/10 of the request counts, 128 MiB for D, 500 tunnels for E, one round
    /// (also GRANTSHIFT_BENCH_QUICK=1).
    #[arg(long)]
    quick: bool,
    /// Rounds of every scenario (direct and proxy each time); the table shows medians
    /// [default: 3, 1 with --quick].
    #[arg(long)]
    rounds: Option<usize>,
    /// Comma-separated scenarios: A1, A32, A1ev, A32ev, B32, C, D, E, L1 [default: all].
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Run this grantshift binary instead of building target/release/grantshift.
    #[arg(long, value_name = "PATH")]
    proxy_bin: Option<PathBuf>,
    /// Do not pin (for machines with fewer than 2 CPUs or without taskset); numbers are then
    /// not comparable with the targets.
    #[arg(long)]
    no_pin: bool,
    /// Record a `perf record` profile of the proxy during each measured proxy run into this
    /// directory (`<scenario>-r<round>.data`); CPU numbers of such a run include perf's cost.
    #[arg(long, value_name = "DIR")]
    perf_dir: Option<PathBuf>,
    /// The events `perf stat` counts with --perf-dir (e.g. add
    /// `syscalls:sys_enter_writev,syscalls:sys_enter_futex` for system calls per request).
    #[arg(
        long,
        value_name = "LIST",
        default_value = "task-clock,context-switches,cpu-migrations,page-faults"
    )]
    perf_stat_events: String,
    /// What answers for the Salesforce hosts: `nginx-h2` = Debian's nginx as their TLS edge
    /// (ALPN h2 and http/1.1) in front of the fake over plain HTTP/1.1; `nginx-h1` = the same
    /// with HTTP/1.1 only; `fake` = the in-process fake speaking TLS itself (h2, http/1.1).
    #[arg(long, value_enum, default_value = "nginx-h2")]
    upstream: Upstream,
    /// The nginx binary for `--upstream nginx-*`.
    #[arg(long, value_name = "PATH", default_value = "/usr/sbin/nginx")]
    nginx: PathBuf,
    /// Keep the temporary directory (configs, CAs, proxy logs, events files, nginx's files).
    #[arg(long)]
    keep_dir: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// What answers for the Salesforce hosts (`--upstream`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Upstream {
    /// The in-process fake terminates TLS itself.
    Fake,
    /// nginx terminates TLS (`listen ... ssl http2`: ALPN h2 + http/1.1) in front of the fake.
    NginxH2,
    /// nginx terminates TLS (`listen ... ssl`: HTTP/1.1 only) in front of the fake.
    NginxH1,
}

impl Upstream {
    fn key(self) -> &'static str {
        match self {
            Upstream::Fake => "fake",
            Upstream::NginxH2 => "nginx-h2",
            Upstream::NginxH1 => "nginx-h1",
        }
    }

    fn is_nginx(self) -> bool {
        self != Upstream::Fake
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    A1,
    A32,
    A1Events,
    A32Events,
    B32,
    C,
    D,
    E,
    L1,
}

impl Scenario {
    const ALL: [Scenario; 9] = [
        Scenario::A1,
        Scenario::A32,
        Scenario::A1Events,
        Scenario::A32Events,
        Scenario::B32,
        Scenario::C,
        Scenario::D,
        Scenario::E,
        Scenario::L1,
    ];

    fn key(self) -> &'static str {
        match self {
            Scenario::A1 => "A1",
            Scenario::A32 => "A32",
            Scenario::A1Events => "A1ev",
            Scenario::A32Events => "A32ev",
            Scenario::B32 => "B32",
            Scenario::C => "C",
            Scenario::D => "D",
            Scenario::E => "E",
            Scenario::L1 => "L1",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Scenario::A1 => "A1 token upgrade, 1 conn",
            Scenario::A32 => "A32 token upgrade, 32 conns",
            Scenario::A1Events => "A1 + events file",
            Scenario::A32Events => "A32 + events file",
            Scenario::B32 => "B32 intercepted GET, 32 conns",
            Scenario::C => "C new conn per request, 8 at once",
            Scenario::D => "D blind tunnel, download",
            Scenario::E => "E idle tunnels",
            Scenario::L1 => "L1 floor: tunnel echo, 1 conn",
        }
    }
}

/// Sizes of one round.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    a1: usize,
    a32: usize,
    b32: usize,
    c: usize,
    d_bytes: u64,
    e_tunnels: usize,
    l1: usize,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                a1: 1_000,
                a32: 4_000,
                b32: 4_000,
                c: 300,
                d_bytes: 128 << 20,
                e_tunnels: 500,
                l1: 1_000,
            }
        } else {
            Sizes {
                a1: 10_000,
                a32: 40_000,
                b32: 40_000,
                c: 3_000,
                d_bytes: 1 << 30,
                e_tunnels: 5_000,
                l1: 10_000,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Entry point

fn main() -> ExitCode {
    let mut args = Args::parse();
    if std::env::var("GRANTSHIFT_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0") {
        args.quick = true;
    }
    match bench(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("e2e: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench(args: &Args) -> Result<(), String> {
    let scenarios: Vec<Scenario> = if args.only.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        args.only
            .iter()
            .map(|name| {
                Scenario::ALL
                    .into_iter()
                    .find(|s| s.key().eq_ignore_ascii_case(name.trim()))
                    .ok_or_else(|| {
                        format!(
                            "--only: unknown scenario `{name}` (A1 A32 A1ev A32ev B32 C D E L1)"
                        )
                    })
            })
            .collect::<Result<_, _>>()?
    };
    let rounds = args.rounds.unwrap_or(if args.quick { 1 } else { 3 }).max(1);
    let sizes = Sizes::new(args.quick);

    // Build before pinning: the build gets both cores.
    let built = match &args.proxy_bin {
        Some(path) => path.clone(),
        None => build_proxy()?,
    };
    let dir = tempfile::Builder::new()
        .prefix("grantshift-bench-")
        .tempdir()
        .map_err(|e| format!("creating a temporary directory: {e}"))?;
    let bin = dir.path().join("grantshift");
    std::fs::copy(&built, &bin)
        .map_err(|e| format!("copying {} to {}: {e}", built.display(), bin.display()))?;

    // 5,000 tunnels: two fds each here (client end, echo end) and two in the proxy, which
    // inherits this limit.
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)
        .map_err(|e| format!("reading RLIMIT_NOFILE: {e}"))?;
    let limit = if soft < hard {
        rlimit::increase_nofile_limit(hard).map_err(|e| format!("raising RLIMIT_NOFILE: {e}"))?
    } else {
        soft
    };
    let need = (2 * sizes.e_tunnels + 1024) as u64;
    if scenarios.contains(&Scenario::E) && limit < need {
        return Err(format!(
            "the open-file limit is {limit}; E needs about {need}: raise it (ulimit -n) or use --only without E"
        ));
    }

    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let pinning = if args.no_pin {
        Pinning::None
    } else {
        pin_self(1)?;
        Pinning::Pinned
    };
    if let Some(perf) = &args.perf_dir {
        std::fs::create_dir_all(perf).map_err(|e| format!("{}: {e}", perf.display()))?;
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let env = Env {
        bin,
        dir: dir.path().to_path_buf(),
        pinning,
        perf_dir: args.perf_dir.clone(),
        perf_stat_events: args.perf_stat_events.clone(),
        clk_tck: clock_ticks_per_second(),
        cpus,
        upstream: args.upstream,
        nginx_bin: args.nginx.clone(),
        nginx_pid: std::sync::OnceLock::new(),
    };
    let started = Instant::now();
    let result = runtime.block_on(run_all(&env, &scenarios, rounds, sizes));
    runtime.shutdown_timeout(Duration::from_secs(2));
    let keep = args.keep_dir || result.is_err();
    let where_ = if keep {
        dir.keep().display().to_string()
    } else {
        "(removed)".into()
    };
    let report = result?;
    let text = report.render(&env, rounds, sizes, args.quick, started.elapsed(), &built);
    println!("\n{text}");
    println!("work dir: {where_}");
    let md = target_dir().join(format!("bench-e2e-{}.md", args.upstream.key()));
    std::fs::write(&md, &text).map_err(|e| format!("writing {}: {e}", md.display()))?;
    println!("table written to {}", md.display());
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pinning {
    Pinned,
    None,
}

/// What every part of the run needs to know.
struct Env {
    bin: PathBuf,
    dir: PathBuf,
    pinning: Pinning,
    perf_dir: Option<PathBuf>,
    perf_stat_events: String,
    clk_tck: u64,
    /// CPUs of the machine (counted before pinning).
    cpus: usize,
    upstream: Upstream,
    nginx_bin: PathBuf,
    /// nginx's (single) process, once started: its CPU counts as the client side's.
    nginx_pid: std::sync::OnceLock<u32>,
}

/// `<target>/`: this bench runs from `<target>/release/deps/e2e-<hash>`.
fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// `cargo build --release --bin grantshift`: the production binary, without the test-only
/// features the bench build of the crate carries.
fn build_proxy() -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("e2e: building the proxy: cargo build --release --bin grantshift");
    let mut build = Command::new(&cargo);
    build
        .args(["build", "--release", "--bin", "grantshift"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    // `cargo bench` runs this process with the package's CARGO_MANIFEST_DIR, CARGO_PKG_* and
    // the like set. Build scripts (ring's) record such variables, so passing them on would
    // make this build and every plain `cargo build --release` after it rebuild ring, rustls
    // and everything above them, each undoing the other.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_by_cargo_run = name.starts_with("CARGO_PKG_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_MANIFEST_LINKS",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
                "OUT_DIR",
            ]
            .contains(&name.as_ref());
        if set_by_cargo_run {
            build.env_remove(name.as_ref());
        }
    }
    let status = build
        .status()
        .map_err(|e| format!("running {cargo}: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build --release --bin grantshift: {status}"));
    }
    let bin = target_dir().join("release").join("grantshift");
    if !bin.is_file() {
        return Err(format!(
            "no binary at {} after cargo build --release; pass --proxy-bin PATH",
            bin.display()
        ));
    }
    Ok(bin)
}

/// Pin every thread of this process to `cpu` (threads created later inherit it).
fn pin_self(cpu: usize) -> Result<(), String> {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if cpus < 2 {
        return Err(format!(
            "{cpus} CPU available: the bench pins the proxy to CPU 0 and itself to CPU 1; run with --no-pin"
        ));
    }
    let status = Command::new("taskset")
        .args([
            "-a",
            "-p",
            "-c",
            &cpu.to_string(),
            &std::process::id().to_string(),
        ])
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("running taskset (util-linux): {e}; or run with --no-pin"))?;
    if !status.success() {
        return Err(format!("taskset -p -c {cpu}: {status}"));
    }
    let allowed = cpus_allowed("self");
    if allowed != cpu.to_string() {
        return Err(format!(
            "pinned to CPU {cpu}, but Cpus_allowed_list is {allowed:?}"
        ));
    }
    Ok(())
}

fn cpus_allowed(pid: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap_or("?")
        .trim()
        .to_string()
}

fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

// ---------------------------------------------------------------------------------------------
// The run

/// One round of one scenario.
struct Sample {
    direct: Option<Measured>,
    proxy: Measured,
    /// E: RSS growth per tunnel (KiB) and what it was measured from.
    e: Option<IdleTunnels>,
}

struct Report {
    samples: Vec<(Scenario, Vec<Sample>)>,
    proxy_cpus: String,
    warn_lines: Vec<String>,
    events_checked: Option<(usize, usize)>,
    fake_upstream_conns: u64,
    /// What answered for the Salesforce hosts, for the heading.
    upstream: String,
    /// nginx's Cpus_allowed_list (`--upstream nginx-*`).
    nginx_cpus: Option<String>,
    /// nginx's error.log lines (all at `warn` or above), when it ran.
    nginx_log: Option<Vec<String>>,
}

async fn run_all(
    env: &Env,
    scenarios: &[Scenario],
    rounds: usize,
    sizes: Sizes,
) -> Result<Report, String> {
    let fake = FakeSalesforce::start(&env.dir, env.upstream.is_nginx()).await?;
    let blob = start_blob_server().await?;
    let echo = start_echo_server().await?;
    // Started after pin_self: nginx inherits this process's CPU.
    let nginx = if env.upstream.is_nginx() {
        let nginx = Nginx::start(env, &fake).await?;
        let _ = env.nginx_pid.set(nginx.pid);
        Some(nginx)
    } else {
        None
    };
    let (fake_main, fake_close) = match &nginx {
        Some(nginx) => (nginx.main, nginx.close),
        None => (fake.main, fake.close),
    };
    let servers = Servers {
        fake_main,
        fake_close,
        blob,
        echo,
    };
    let upstream = match &nginx {
        Some(nginx) => format!(
            "nginx {} ({})",
            nginx.version,
            if env.upstream == Upstream::NginxH2 {
                "h2 + http/1.1"
            } else {
                "http/1.1"
            }
        ),
        None => "in-process fake (h2 + http/1.1)".into(),
    };
    let nginx_cpus = nginx.as_ref().map(|n| cpus_allowed(&n.pid.to_string()));
    let direct = Route::Direct {
        servers,
        tls: TlsConnector::from(client_tls(&fake.ca_pem, true)?),
        tls_fresh: TlsConnector::from(client_tls(&fake.ca_pem, false)?),
    };

    let needs = |f: &dyn Fn(Scenario) -> bool| scenarios.iter().any(|s| f(*s));
    let main_proxy =
        if needs(&|s| !matches!(s, Scenario::A1Events | Scenario::A32Events | Scenario::E)) {
            Some(ProxyProcess::start(env, "proxy", &fake, servers, false).await?)
        } else {
            None
        };
    let events_proxy = if needs(&|s| matches!(s, Scenario::A1Events | Scenario::A32Events)) {
        Some(ProxyProcess::start(env, "proxy-events", &fake, servers, true).await?)
    } else {
        None
    };
    let proxy_cpus = main_proxy
        .as_ref()
        .or(events_proxy.as_ref())
        .map(|p| cpus_allowed(&p.pid.to_string()))
        .unwrap_or_else(|| "-".into());
    let mut events_sent = 0usize;

    let mut samples: Vec<(Scenario, Vec<Sample>)> =
        scenarios.iter().map(|s| (*s, Vec::new())).collect();
    for round in 1..=rounds {
        for (scenario, into) in samples.iter_mut() {
            let scenario = *scenario;
            let tag = format!("{}-r{round}", scenario.key());
            eprintln!("e2e: round {round}/{rounds}: {}", scenario.label());
            // Alternate which side goes first, so slow drift in the machine's load does not
            // always favour the same side.
            let proxy_first = round % 2 == 0;
            let sample = match scenario {
                Scenario::A1 | Scenario::A32 | Scenario::A1Events | Scenario::A32Events => {
                    let conns = if matches!(scenario, Scenario::A1 | Scenario::A1Events) {
                        1
                    } else {
                        32
                    };
                    let n = if conns == 1 { sizes.a1 } else { sizes.a32 };
                    let proxy = if matches!(scenario, Scenario::A1Events | Scenario::A32Events) {
                        events_proxy.as_ref().expect("events proxy")
                    } else {
                        main_proxy.as_ref().expect("main proxy")
                    };
                    let via = proxy.route();
                    let warm = (n / 10).clamp(conns, 2_000);
                    if matches!(scenario, Scenario::A1Events | Scenario::A32Events) {
                        // Only the proxy side logs in through the proxy: its warm-up and the run.
                        events_sent += warm.max(conns) + n;
                    }
                    let d = || {
                        keep_alive(
                            env,
                            &direct,
                            Req::TokenDirect,
                            conns,
                            n,
                            warm,
                            None,
                            &fake,
                            "",
                        )
                    };
                    let p = || {
                        keep_alive(
                            env,
                            &via,
                            Req::Token,
                            conns,
                            n,
                            warm,
                            Some(proxy),
                            &fake,
                            &tag,
                        )
                    };
                    both(proxy_first, d, p).await?
                }
                Scenario::B32 => {
                    let proxy = main_proxy.as_ref().expect("main proxy");
                    let via = proxy.route();
                    let n = sizes.b32;
                    let warm = (n / 10).clamp(32, 2_000);
                    let d = || keep_alive(env, &direct, Req::Data, 32, n, warm, None, &fake, "");
                    let p =
                        || keep_alive(env, &via, Req::Data, 32, n, warm, Some(proxy), &fake, &tag);
                    both(proxy_first, d, p).await?
                }
                Scenario::C => {
                    let proxy = main_proxy.as_ref().expect("main proxy");
                    let via = proxy.route();
                    let n = sizes.c;
                    let d = || per_connection(env, &direct, 8, n, None, &fake, "");
                    let p = || per_connection(env, &via, 8, n, Some(proxy), &fake, &tag);
                    both(proxy_first, d, p).await?
                }
                Scenario::D => {
                    let proxy = main_proxy.as_ref().expect("main proxy");
                    let via = proxy.route();
                    let bytes = sizes.d_bytes;
                    let d = || download(env, &direct, bytes, None, "");
                    let p = || download(env, &via, bytes, Some(proxy), &tag);
                    both(proxy_first, d, p).await?
                }
                Scenario::L1 => {
                    let proxy = main_proxy.as_ref().expect("main proxy");
                    let via = proxy.route();
                    let n = sizes.l1;
                    let d = || echo_ping_pong(env, &direct, n, None, "");
                    let p = || echo_ping_pong(env, &via, n, Some(proxy), &tag);
                    both(proxy_first, d, p).await?
                }
                Scenario::E => {
                    let e = idle_tunnels(env, &fake, servers, sizes.e_tunnels, round).await?;
                    Sample {
                        direct: None,
                        proxy: e.opening.clone(),
                        e: Some(e),
                    }
                }
            };
            into.push(sample);
        }
    }

    let mut warn_lines = Vec::new();
    let mut events_checked = None;
    for proxy in [main_proxy, events_proxy].into_iter().flatten() {
        if proxy.events {
            let lines = proxy.count_upgraded_events(events_sent).await?;
            events_checked = Some((lines, events_sent));
        }
        warn_lines.extend(proxy.stop().await?);
    }
    let nginx_log = match nginx {
        Some(nginx) => Some(nginx.stop().await?),
        None => None,
    };
    Ok(Report {
        samples,
        proxy_cpus,
        warn_lines,
        events_checked,
        fake_upstream_conns: fake.stats.connections.load(Ordering::SeqCst),
        upstream,
        nginx_cpus,
        nginx_log,
    })
}

/// Run the direct and the proxy side of one round, in the given order.
async fn both<D, DF, P, PF>(proxy_first: bool, direct: D, proxy: P) -> Result<Sample, String>
where
    D: FnOnce() -> DF,
    DF: std::future::Future<Output = Result<Measured, String>>,
    P: FnOnce() -> PF,
    PF: std::future::Future<Output = Result<Measured, String>>,
{
    let (d, p) = if proxy_first {
        let p = proxy().await?;
        (direct().await?, p)
    } else {
        let d = direct().await?;
        (d, proxy().await?)
    };
    Ok(Sample {
        direct: Some(d),
        proxy: p,
        e: None,
    })
}

// ---------------------------------------------------------------------------------------------
// Measuring: CPU time from /proc

/// What one measured run produced.
#[derive(Clone, Debug, Default)]
struct Measured {
    secs: f64,
    /// Requests, connections, tunnels or bytes.
    ops: u64,
    /// Per-operation latencies, sorted (ns).
    latencies_ns: Vec<u64>,
    /// The proxy's user+sys CPU seconds (proxy runs only).
    proxy_cpu: f64,
    /// This process's (client + fakes, on CPU 1) user+sys CPU seconds.
    bench_cpu: f64,
    /// Busy seconds of CPU 0 and CPU 1 from /proc/stat (everything, ours included).
    cpu_busy: [f64; 2],
    /// Upstream connections the proxy opened (proxy runs of A, B and C; `None` also when its
    /// `/metrics` has no such counter).
    upstream_conns: Option<UpstreamConns>,
}

/// The proxy's upstream connections by protocol (`h2`, `http/1.1`), from
/// `grantshift_upstream_connections_total`.
#[derive(Clone, Debug)]
struct UpstreamConns {
    /// Opened during the measured run.
    opened: BTreeMap<String, u64>,
    /// Opened since the proxy started, at the end of the run.
    in_all: BTreeMap<String, u64>,
}

impl Measured {
    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_ns.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies_ns.len() - 1) as f64 * p).round() as usize;
        self.latencies_ns[i] as f64 / 1e6
    }

    fn rate(&self) -> f64 {
        self.ops as f64 / self.secs.max(1e-9)
    }
}

#[derive(Clone, Copy)]
struct Snapshot {
    at: Instant,
    proxy_ticks: u64,
    self_ticks: u64,
    cpu_busy: [u64; 2],
}

/// `self_ticks` is this process plus nginx (when it runs): both are the load side, on CPU 1.
fn snapshot(env: &Env, proxy: Option<u32>) -> Result<Snapshot, String> {
    Ok(Snapshot {
        at: Instant::now(),
        proxy_ticks: match proxy {
            Some(pid) => process_ticks(&pid.to_string())?,
            None => 0,
        },
        self_ticks: process_ticks("self")?
            + match env.nginx_pid.get() {
                Some(pid) => process_ticks(&pid.to_string())?,
                None => 0,
            },
        cpu_busy: cpu_busy_ticks(),
    })
}

fn measured(
    env: &Env,
    before: Snapshot,
    after: Snapshot,
    ops: u64,
    mut latencies_ns: Vec<u64>,
) -> Measured {
    let tck = env.clk_tck as f64;
    latencies_ns.sort_unstable();
    Measured {
        secs: (after.at - before.at).as_secs_f64(),
        ops,
        latencies_ns,
        proxy_cpu: (after.proxy_ticks - before.proxy_ticks) as f64 / tck,
        bench_cpu: (after.self_ticks - before.self_ticks) as f64 / tck,
        cpu_busy: [
            after.cpu_busy[0].saturating_sub(before.cpu_busy[0]) as f64 / tck,
            after.cpu_busy[1].saturating_sub(before.cpu_busy[1]) as f64 / tck,
        ],
        upstream_conns: None,
    }
}

/// utime + stime of a process (all its threads, dead ones included), in clock ticks.
fn process_ticks(pid: &str) -> Result<u64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("reading /proc/{pid}/stat: {e}"))?;
    // The command name (field 2) may contain spaces: count fields after its closing ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or("unexpected /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let field = |n: usize| -> Result<u64, String> {
        fields
            .get(n - 3)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("/proc/{pid}/stat: no field {n}"))
    };
    Ok(field(14)? + field(15)?)
}

/// Busy ticks (user, nice, system, irq, softirq, steal) of CPU 0 and CPU 1.
fn cpu_busy_ticks() -> [u64; 2] {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let mut busy = [0u64; 2];
    for (i, name) in ["cpu0 ", "cpu1 "].iter().enumerate() {
        if let Some(line) = stat.lines().find(|l| l.starts_with(name)) {
            let v: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            // user nice system idle iowait irq softirq steal
            busy[i] = [0, 1, 2, 5, 6, 7]
                .iter()
                .map(|&k| v.get(k).copied().unwrap_or(0))
                .sum();
        }
    }
    busy
}

fn rss_kib(pid: u32) -> Result<(u64, usize), String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("reading /proc/{pid}/status: {e}"))?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or("no VmRSS")?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    Ok((rss, fds))
}

/// `perf record` on the proxy for the measured part of a run (`--perf-dir`).
struct Perf(Vec<Child>);

impl Perf {
    /// `perf record` (sampled call graphs, `<tag>.data`) and `perf stat` (context switches,
    /// migrations, page faults: `<tag>.stat`) on the proxy, both run on CPU 1.
    async fn start(env: &Env, proxy: Option<&ProxyProcess>, tag: &str) -> Result<Perf, String> {
        let (Some(dir), Some(proxy)) = (&env.perf_dir, proxy) else {
            return Ok(Perf(Vec::new()));
        };
        let pid = proxy.pid.to_string();
        let record = dir.join(format!("{tag}.data"));
        let stat = dir.join(format!("{tag}.stat"));
        let words = |w: &[&str]| w.iter().map(|w| w.to_string()).collect::<Vec<String>>();
        let mut record_args = words(&["record", "-F", "999", "--call-graph", "dwarf,16384"]);
        record_args.extend(words(&["-p", &pid, "-o"]));
        record_args.push(record.display().to_string());
        let mut stat_args = words(&["stat", "-e", &env.perf_stat_events, "-p", &pid, "-o"]);
        stat_args.push(stat.display().to_string());
        let runs = [record_args, stat_args];
        let mut children = Vec::new();
        for args in runs {
            let child = Command::new("taskset")
                .args(["-c", "1", "perf"])
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("starting perf: {e}"))?;
            children.push(child);
        }
        // perf needs a moment before it samples.
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok(Perf(children))
    }

    fn stop(self) {
        for mut child in self.0 {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Clients

/// Where the fakes listen.
#[derive(Clone, Copy)]
struct Servers {
    fake_main: SocketAddr,
    fake_close: SocketAddr,
    blob: SocketAddr,
    echo: SocketAddr,
}

impl Servers {
    fn addr_of(&self, host: &str) -> SocketAddr {
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
enum Route {
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
    async fn tcp(&self, host: &str) -> Result<TcpStream, String> {
        match self {
            Route::Direct { servers, .. } => {
                let tcp = TcpStream::connect(servers.addr_of(host))
                    .await
                    .map_err(|e| format!("connecting to the fake {host}: {e}"))?;
                let _ = tcp.set_nodelay(true);
                Ok(tcp)
            }
            Route::Proxy { addr, .. } => {
                let mut tcp = TcpStream::connect(addr)
                    .await
                    .map_err(|e| format!("connecting to the proxy: {e}"))?;
                let _ = tcp.set_nodelay(true);
                let status = connect_head(&mut tcp, &format!("{host}:443")).await?;
                if status != 200 {
                    return Err(format!("CONNECT {host}:443 answered {status}"));
                }
                Ok(tcp)
            }
        }
    }

    async fn http(&self, host: &'static str, fresh_tls: bool) -> Result<Sender, String> {
        let tcp = self.tcp(host).await?;
        let tls = match (self, fresh_tls) {
            (Route::Direct { tls, .. } | Route::Proxy { tls, .. }, false) => tls,
            (Route::Direct { tls_fresh, .. } | Route::Proxy { tls_fresh, .. }, true) => tls_fresh,
        };
        let name = ServerName::try_from(host).expect("valid name");
        let stream = tls
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {host}: {e}"))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP/1.1 handshake with {host}: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

fn client_tls(ca_pem: &str, resumption: bool) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.map_err(|e| format!("CA PEM: {e}"))?)
            .map_err(|e| format!("CA PEM: {e}"))?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    // HTTP/1.1, as the legacy integrations this proxy exists for speak it.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !resumption {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(config))
}

/// Send `CONNECT authority` and read the response head. Returns the status.
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
            if head.len() > end + 4 {
                return Err("bytes after the CONNECT response head".into());
            }
            return Ok(status);
        }
        if head.len() > 16 * 1024 {
            return Err("CONNECT response head too large".into());
        }
    }
}

/// The request each scenario sends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Req {
    /// Password grant to the generic login host (through the proxy: upgraded + redirected).
    Token,
    /// The client-credentials request the proxy would make, straight to the My Domain.
    TokenDirect,
    /// REST GET on the My Domain.
    Data,
    /// REST GET on the host whose fake closes after one response (scenario C).
    DataOnce,
}

struct Bodies {
    password: Bytes,
    client_credentials: Bytes,
    data_len: usize,
}

impl Bodies {
    fn new() -> Bodies {
        let form =
            |pairs: &[(&str, &str)]| Bytes::from(serde_urlencoded::to_string(pairs).expect("form"));
        Bodies {
            password: form(&[
                ("grant_type", "password"),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
                ("username", USERNAME),
                ("password", PASSWORD),
            ]),
            client_credentials: form(&[
                ("grant_type", "client_credentials"),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
            ]),
            data_len: data_response().len(),
        }
    }
}

impl Req {
    fn host(self) -> &'static str {
        match self {
            Req::Token => LOGIN_HOST,
            Req::TokenDirect | Req::Data => MY_DOMAIN,
            Req::DataOnce => CONN_HOST,
        }
    }

    fn build(self, bodies: &Bodies) -> Request<Full<Bytes>> {
        let b = Request::builder().header(HOST, self.host());
        match self {
            Req::Token | Req::TokenDirect => b
                .method(Method::POST)
                .uri(TOKEN_PATH)
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header("accept", "application/json")
                .body(Full::new(if self == Req::Token {
                    bodies.password.clone()
                } else {
                    bodies.client_credentials.clone()
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

    fn expected_len(self, bodies: &Bodies) -> usize {
        match self {
            Req::Token | Req::TokenDirect => TOKEN_RESPONSE.len(),
            Req::Data | Req::DataOnce => bodies.data_len,
        }
    }
}

/// One request on an open connection; checks status and body size.
async fn exchange(sender: &mut Sender, req: Req, bodies: &Bodies) -> Result<(), String> {
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
        if status != StatusCode::OK || body.len() != req.expected_len(bodies) {
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
async fn keep_alive(
    env: &Env,
    route: &Route,
    req: Req,
    conns: usize,
    n: usize,
    warm: usize,
    proxy: Option<&ProxyProcess>,
    fake: &FakeSalesforce,
    tag: &str,
) -> Result<Measured, String> {
    // Warm-up: leaf minted, upstream pool filled, allocator and caches warm.
    keep_alive_run(route, req, conns, warm.max(conns), None).await?;
    let before_fake = fake.stats.counts();
    let before_upstream = upstream_connections(proxy).await;
    let perf = Perf::start(env, proxy, tag).await?;
    let m = keep_alive_run(route, req, conns, n, Some((env, proxy.map(|p| p.pid)))).await;
    perf.stop();
    let mut m = m?;
    m.upstream_conns = opened(before_upstream, upstream_connections(proxy).await);
    let after_fake = fake.stats.counts();
    let answered = match req {
        Req::Token | Req::TokenDirect => after_fake.tokens - before_fake.tokens,
        Req::Data | Req::DataOnce => after_fake.data - before_fake.data,
    };
    if answered != n as u64 || after_fake.rejected != before_fake.rejected {
        return Err(format!(
            "the fake answered {answered} of {n} requests and rejected {}: {:?}",
            after_fake.rejected - before_fake.rejected,
            fake.stats.last_reject.lock().unwrap()
        ));
    }
    Ok(m)
}

async fn keep_alive_run(
    route: &Route,
    req: Req,
    conns: usize,
    n: usize,
    measure: Option<(&Env, Option<u32>)>,
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

impl Route {
    fn name(&self) -> &'static str {
        match self {
            Route::Direct { .. } => "direct",
            Route::Proxy { .. } => "the proxy",
        }
    }
}

/// Scenario C: `n` requests, each on a new connection (TCP [+ CONNECT] + TLS), `conc` at a
/// time. The latency of one includes opening its connection.
async fn per_connection(
    env: &Env,
    route: &Route,
    conc: usize,
    n: usize,
    proxy: Option<&ProxyProcess>,
    fake: &FakeSalesforce,
    tag: &str,
) -> Result<Measured, String> {
    per_connection_run(route, conc, (n / 10).clamp(conc, 200)).await?;
    let before_fake = fake.stats.counts();
    let before_upstream = upstream_connections(proxy).await;
    let perf = Perf::start(env, proxy, tag).await?;
    let pid = proxy.map(|p| p.pid);
    let before = snapshot(env, pid)?;
    let latencies = per_connection_run(route, conc, n).await;
    let after = snapshot(env, pid)?;
    perf.stop();
    let latencies = latencies?;
    let upstream_conns = opened(before_upstream, upstream_connections(proxy).await);
    let after_fake = fake.stats.counts();
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

async fn per_connection_run(route: &Route, conc: usize, n: usize) -> Result<Vec<u64>, String> {
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
async fn echo_ping_pong(
    env: &Env,
    route: &Route,
    n: usize,
    proxy: Option<&ProxyProcess>,
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
    let pid = proxy.map(|p| p.pid);
    let mut latencies = Vec::with_capacity(n);
    let before = snapshot(env, pid)?;
    for _ in 0..n {
        let started = Instant::now();
        if let Err(e) = round_trip(&mut tcp).await {
            perf.stop();
            return Err(e);
        }
        latencies.push(started.elapsed().as_nanos() as u64);
    }
    let after = snapshot(env, pid)?;
    perf.stop();
    Ok(measured(env, before, after, n as u64, latencies))
}

/// Scenario D: one download of `bytes` from the blob server (plain TCP), direct or through a
/// blind tunnel.
async fn download(
    env: &Env,
    route: &Route,
    bytes: u64,
    proxy: Option<&ProxyProcess>,
    tag: &str,
) -> Result<Measured, String> {
    download_once(route, (bytes / 8).min(64 << 20)).await?;
    let perf = Perf::start(env, proxy, tag).await?;
    let pid = proxy.map(|p| p.pid);
    let before = snapshot(env, pid)?;
    let took = download_once(route, bytes).await;
    let after = snapshot(env, pid)?;
    perf.stop();
    let took = took?;
    Ok(measured(env, before, after, bytes, vec![took]))
}

async fn download_once(route: &Route, bytes: u64) -> Result<u64, String> {
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

/// Scenario E's result.
#[derive(Clone)]
struct IdleTunnels {
    tunnels: usize,
    baseline_kib: u64,
    with_tunnels_kib: u64,
    baseline_fds: usize,
    with_tunnels_fds: usize,
    after_close_kib: u64,
    /// Opening the tunnels: rate and the proxy's CPU for it.
    opening: Measured,
}

impl IdleTunnels {
    fn kib_per_tunnel(&self) -> f64 {
        (self.with_tunnels_kib as f64 - self.baseline_kib as f64) / self.tunnels.max(1) as f64
    }
}

/// Scenario E on a fresh proxy: warm it with a few tunnels, then hold `n` open.
async fn idle_tunnels(
    env: &Env,
    fake: &FakeSalesforce,
    servers: Servers,
    n: usize,
    round: usize,
) -> Result<IdleTunnels, String> {
    let proxy =
        ProxyProcess::start(env, &format!("proxy-idle-r{round}"), fake, servers, false).await?;
    let route = proxy.route();
    let warm = open_tunnels(&route, 100).await?;
    drop(warm);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (baseline_kib, baseline_fds) = rss_kib(proxy.pid)?;
    let before = snapshot(env, Some(proxy.pid))?;
    let tunnels = open_tunnels(&route, n).await?;
    let after = snapshot(env, Some(proxy.pid))?;
    // Let the proxy finish whatever follows the last echo.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (with_tunnels_kib, with_tunnels_fds) = rss_kib(proxy.pid)?;
    drop(tunnels);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (after_close_kib, _) = rss_kib(proxy.pid)?;
    let opening = measured(env, before, after, n as u64, Vec::new());
    proxy.stop().await?;
    Ok(IdleTunnels {
        tunnels: n,
        baseline_kib,
        with_tunnels_kib,
        baseline_fds,
        with_tunnels_fds,
        after_close_kib,
        opening,
    })
}

/// Open `n` CONNECT tunnels to the echo host, 100 at a time, each checked by one echo.
async fn open_tunnels(route: &Route, n: usize) -> Result<Vec<TcpStream>, String> {
    let permits = Arc::new(Semaphore::new(100));
    let mut set = JoinSet::new();
    for i in 0..n {
        let permit = permits.clone().acquire_owned().await.expect("semaphore");
        let route = route.clone();
        set.spawn(async move {
            let open = async {
                let mut tcp = route.tcp(ECHO_HOST).await?;
                let msg = format!("tunnel {i}\n");
                tcp.write_all(msg.as_bytes())
                    .await
                    .map_err(|e| format!("tunnel {i}: write: {e}"))?;
                let mut back = vec![0u8; msg.len()];
                tcp.read_exact(&mut back)
                    .await
                    .map_err(|e| format!("tunnel {i}: read: {e}"))?;
                if back != msg.as_bytes() {
                    return Err(format!("tunnel {i}: wrong echo"));
                }
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

// ---------------------------------------------------------------------------------------------
// The proxy process

struct ProxyProcess {
    child: Mutex<Child>,
    pid: u32,
    addr: SocketAddr,
    /// Its admin server (`/metrics`).
    admin: SocketAddr,
    dir: PathBuf,
    events: bool,
    tls: TlsConnector,
    tls_fresh: TlsConnector,
    log: Arc<Mutex<LogState>>,
}

#[derive(Default)]
struct LogState {
    warn_error: Vec<String>,
    tail: VecDeque<String>,
}

impl ProxyProcess {
    async fn start(
        env: &Env,
        name: &str,
        fake: &FakeSalesforce,
        servers: Servers,
        events: bool,
    ) -> Result<ProxyProcess, String> {
        let dir = env.dir.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        // The proxy's ports: picked here (the proxy logs them only at INFO, and runs at WARN).
        // The admin server: only its /metrics, scraped around measured runs.
        let [addr, admin] = pick_ports()?;
        let q = |s: &str| format!("{s:?}");
        let config = format!(
            r#"# Generated by benches/e2e.rs
[proxy]
listen = "{addr}"
admin_listen = "{admin}"
max_connections = 20000
shutdown_grace = "2s"

[ca]
cert = "grantshift-ca.pem"
key = "grantshift-ca.key"

[upstream]
extra_root_certs = [{ca}]
connect_to_only = true

[upstream.connect_to]
"{LOGIN_HOST}:443" = "{main}"
"{MY_DOMAIN}:443" = "{main}"
"{CONN_HOST}:443" = "{close}"
"{BLOB_HOST}:443" = "{blob}"
"{ECHO_HOST}:443" = "{echo}"

[[credentials]]
username = "{USERNAME}"
my_domain = "{MY_DOMAIN}"

[telemetry]
events = {events}
"#,
            ca = q(&fake.ca_path.display().to_string()),
            main = servers.fake_main,
            close = servers.fake_close,
            blob = servers.blob,
            echo = servers.echo,
            events = if events { q("events.jsonl") } else { q("") },
        );
        let config_path = dir.join("grantshift.toml");
        std::fs::write(&config_path, config).map_err(|e| format!("writing the config: {e}"))?;

        let mut cmd = if env.pinning == Pinning::Pinned {
            let mut c = Command::new("taskset");
            c.args(["-c", "0"]).arg(&env.bin);
            c
        } else {
            Command::new(&env.bin)
        };
        cmd.current_dir(&dir)
            .arg("run")
            .arg("-c")
            .arg(&config_path)
            .args(["--log-format", "json"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for var in [
            "GRANTSHIFT_CONFIG",
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
            .map_err(|e| format!("starting {}: {e}", env.bin.display()))?;
        let pid = child.id();
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(LogState::default()));
        {
            let log = log.clone();
            let file = std::fs::File::create(dir.join("proxy.log"))
                .map_err(|e| format!("creating proxy.log: {e}"))?;
            std::thread::spawn(move || drain_stderr(stderr, file, log));
        }
        let tail = |log: &Mutex<LogState>| {
            log.lock()
                .unwrap()
                .tail
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        };

        // Ready when a CONNECT through it reaches the echo server.
        let waited = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Err(format!(
                    "the proxy exited with {status} before serving; its log:\n{}",
                    tail(&log)
                ));
            }
            if probe(addr).await.is_ok() {
                break;
            }
            if waited.elapsed() > STEP_TIMEOUT {
                let _ = child.kill();
                return Err(format!(
                    "the proxy did not answer a CONNECT on {addr} within {}s: {}; log:\n{}",
                    STEP_TIMEOUT.as_secs(),
                    probe(addr).await.err().unwrap_or_default(),
                    tail(&log)
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() != "grantshift" {
            return Err(format!("pid {pid} is {comm:?}, not grantshift"));
        }
        let ca_pem = std::fs::read_to_string(dir.join("grantshift-ca.pem"))
            .map_err(|e| format!("reading the CA the proxy created: {e}"))?;
        Ok(ProxyProcess {
            child: Mutex::new(child),
            pid,
            addr,
            admin,
            dir,
            events,
            tls: TlsConnector::from(client_tls(&ca_pem, true)?),
            tls_fresh: TlsConnector::from(client_tls(&ca_pem, false)?),
            log,
        })
    }

    fn route(&self) -> Route {
        Route::Proxy {
            addr: self.addr,
            tls: self.tls.clone(),
            tls_fresh: self.tls_fresh.clone(),
        }
    }

    /// `grantshift_upstream_connections_total` by protocol, from the admin server's
    /// `/metrics`; `None` if it cannot be read or has no such counter.
    async fn upstream_connections(&self) -> Option<BTreeMap<String, u64>> {
        let scrape = async {
            let mut tcp = TcpStream::connect(self.admin).await.ok()?;
            tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .await
                .ok()?;
            let mut text = String::new();
            tcp.read_to_string(&mut text).await.ok()?;
            Some(text)
        };
        let text = tokio::time::timeout(STEP_TIMEOUT, scrape).await.ok()??;
        let mut by_protocol = BTreeMap::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("grantshift_upstream_connections_total{") else {
                continue;
            };
            let Some((labels, value)) = rest.split_once("} ") else {
                continue;
            };
            let protocol = labels
                .split(',')
                .find_map(|l| l.strip_prefix("protocol=\"")?.strip_suffix('"'))?;
            let value: f64 = value.split_whitespace().next()?.parse().ok()?;
            by_protocol.insert(protocol.to_string(), value as u64);
        }
        (!by_protocol.is_empty()).then_some(by_protocol)
    }

    /// Wait (bounded) until the events file has `expected` lines; all must be `upgraded`.
    async fn count_upgraded_events(&self, expected: usize) -> Result<usize, String> {
        let path = self.dir.join("events.jsonl");
        let waited = Instant::now();
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines = text.lines().count();
            if lines >= expected || waited.elapsed() > Duration::from_secs(10) {
                let upgraded = text
                    .lines()
                    .filter(|l| l.contains(r#""action":"upgraded""#))
                    .count();
                if upgraded != expected || lines != expected {
                    return Err(format!(
                        "events file: {lines} lines, {upgraded} upgraded; expected {expected} upgraded"
                    ));
                }
                return Ok(upgraded);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM and wait for the exit; returns the WARN/ERROR lines it logged.
    async fn stop(self) -> Result<Vec<String>, String> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let waited = Instant::now();
        loop {
            let done = self.child.lock().unwrap().try_wait();
            match done {
                Ok(Some(status)) if status.success() => break,
                Ok(Some(status)) => return Err(format!("the proxy exited with {status}")),
                Ok(None) if waited.elapsed() > Duration::from_secs(10) => {
                    let _ = self.child.lock().unwrap().kill();
                    return Err("the proxy did not exit within 10 s of SIGTERM".into());
                }
                Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(e) => return Err(format!("waiting for the proxy: {e}")),
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let log = self.log.lock().unwrap();
        Ok(log.warn_error.clone())
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap();
        if let Ok(None) = child.try_wait() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `N` distinct free ports on 127.0.0.1 (for a child process to bind).
fn pick_ports<const N: usize>() -> Result<[SocketAddr; N], String> {
    let listeners = (0..N)
        .map(|_| std::net::TcpListener::bind((LOOPBACK, 0)))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| format!("picking a port: {e}"))?;
    let addrs = listeners
        .iter()
        .map(|l| l.local_addr())
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| format!("picking a port: {e}"))?;
    Ok(addrs.try_into().expect("N addresses"))
}

/// The proxy's upstream connection counters (see [`ProxyProcess::upstream_connections`]);
/// `None` for a direct run.
async fn upstream_connections(proxy: Option<&ProxyProcess>) -> Option<BTreeMap<String, u64>> {
    proxy?.upstream_connections().await
}

/// Connections opened between two readings of the counters, by protocol.
fn opened(
    before: Option<BTreeMap<String, u64>>,
    after: Option<BTreeMap<String, u64>>,
) -> Option<UpstreamConns> {
    let (before, after) = (before?, after?);
    Some(UpstreamConns {
        opened: after
            .iter()
            .map(|(protocol, n)| {
                let was = before.get(protocol).copied().unwrap_or(0);
                (protocol.clone(), n.saturating_sub(was))
            })
            .collect(),
        in_all: after,
    })
}

async fn probe(addr: SocketAddr) -> Result<(), String> {
    let mut tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    let status = connect_head(&mut tcp, &format!("{ECHO_HOST}:443")).await?;
    if status != 200 {
        return Err(format!("CONNECT answered {status}"));
    }
    tcp.write_all(b"ping\n").await.map_err(|e| e.to_string())?;
    let mut back = [0u8; 5];
    tcp.read_exact(&mut back).await.map_err(|e| e.to_string())?;
    if &back != b"ping\n" {
        return Err("wrong echo".into());
    }
    Ok(())
}

/// Keep the proxy's stderr flowing into `proxy.log`; remember WARN/ERROR lines and a tail.
fn drain_stderr(stderr: std::process::ChildStderr, file: std::fs::File, log: Arc<Mutex<LogState>>) {
    let mut file = std::io::LineWriter::new(file);
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        let _ = writeln!(file, "{line}");
        let level = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v["level"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "ERROR".into());
        let mut log = log.lock().unwrap();
        if (level == "WARN" || level == "ERROR") && log.warn_error.len() < 20 {
            log.warn_error.push(line.clone());
        }
        if log.tail.len() == 40 {
            log.tail.pop_front();
        }
        log.tail.push_back(line);
    }
}

// ---------------------------------------------------------------------------------------------
// nginx: the TLS edge of the Salesforce hosts (`--upstream nginx-h2|nginx-h1`)

/// Debian's nginx in front of the fake, as one process (`master_process off`): its CPU is
/// that process's, and it inherits this process's CPU mask. Config, pid, lock, logs and temp
/// paths all live in `<work dir>/nginx/`.
struct Nginx {
    child: Child,
    pid: u32,
    /// LOGIN_HOST and MY_DOMAIN: keep-alive (as good as unlimited); h2 + http/1.1 or
    /// http/1.1 only.
    main: SocketAddr,
    /// CONN_HOST: HTTP/1.1, closes after every response (scenario C).
    close: SocketAddr,
    dir: PathBuf,
    /// `1.22.1`, from `nginx -v`.
    version: String,
}

impl Nginx {
    async fn start(env: &Env, fake: &FakeSalesforce) -> Result<Nginx, String> {
        let bin = &env.nginx_bin;
        let out = Command::new(bin)
            .arg("-v")
            .output()
            .map_err(|e| format!("running {} -v: {e} (--nginx PATH)", bin.display()))?;
        // `nginx version: nginx/1.22.1`, on stderr.
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        let version = said
            .split_once("nginx/")
            .map(|(_, v)| v.split_whitespace().next().unwrap_or_default().to_string())
            .ok_or_else(|| format!("{} -v said {said:?}", bin.display()))?;
        let (Some(plain), Some((cert_pem, key_pem))) = (fake.plain, &fake.nginx_leaf) else {
            return Err("the fake was started without its nginx listener".into());
        };
        let dir = env.dir.join("nginx");
        std::fs::create_dir_all(dir.join("temp")).map_err(|e| format!("{}: {e}", dir.display()))?;
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text)
                .map_err(|e| format!("writing {}: {e}", path.display()))
                .map(|()| path.display().to_string())
        };
        let cert = write("leaf.pem", cert_pem)?;
        let key = write("leaf.key", key_pem)?;
        let [main, close] = pick_ports()?;
        let d = dir.display();
        let http2 = if env.upstream == Upstream::NginxH2 {
            " http2"
        } else {
            ""
        };
        let location = "location / {
            proxy_pass http://fake_salesforce;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header Host $host;
        }";
        let config = format!(
            r#"# Generated by benches/e2e.rs: nginx as the TLS edge of the fake Salesforce.
daemon off;
master_process off;
worker_processes 1;
pid "{d}/nginx.pid";
lock_file "{d}/nginx.lock";
error_log "{d}/error.log" warn;

events {{
    worker_connections 4096;
}}

http {{
    access_log off;
    client_body_temp_path "{d}/temp/client_body";
    proxy_temp_path "{d}/temp/proxy";
    fastcgi_temp_path "{d}/temp/fastcgi";
    uwsgi_temp_path "{d}/temp/uwsgi";
    scgi_temp_path "{d}/temp/scgi";

    ssl_certificate "{cert}";
    ssl_certificate_key "{key}";
    ssl_protocols TLSv1.2 TLSv1.3;

    upstream fake_salesforce {{
        server {plain};
        keepalive 64;
    }}

    # The login host and the My Domain: keep-alive, effectively unlimited.
    server {{
        listen {main} ssl{http2};
        server_name {LOGIN_HOST} {MY_DOMAIN};
        keepalive_requests 100000000;
        keepalive_timeout 300s;
        {location}
    }}

    # Closes after every response: a new connection per request (scenario C).
    server {{
        listen {close} ssl;
        server_name {CONN_HOST};
        keepalive_timeout 0;
        {location}
    }}
}}
"#
        );
        let conf = write("nginx.conf", &config)?;
        let stderr = std::fs::File::create(dir.join("stderr.log"))
            .map_err(|e| format!("creating nginx's stderr.log: {e}"))?;
        let mut child = Command::new(bin)
            .arg("-p")
            .arg(format!("{d}/"))
            .args(["-c", &conf])
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let pid = child.id();
        let logs = |dir: &Path| {
            ["stderr.log", "error.log"]
                .iter()
                .map(|f| std::fs::read_to_string(dir.join(f)).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("")
        };
        // Ready when both ports accept.
        let waited = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "nginx exited with {status} before serving; its logs:\n{}",
                    logs(&dir)
                ));
            }
            if TcpStream::connect(main).await.is_ok() && TcpStream::connect(close).await.is_ok() {
                break;
            }
            if waited.elapsed() > STEP_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "nginx did not listen on {main} and {close} within {}s; its logs:\n{}",
                    STEP_TIMEOUT.as_secs(),
                    logs(&dir)
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Nginx {
            child,
            pid,
            main,
            close,
            dir,
            version,
        })
    }

    /// SIGTERM and wait for the exit; returns the lines of its error.log.
    async fn stop(mut self) -> Result<Vec<String>, String> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let waited = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if waited.elapsed() > Duration::from_secs(10) => {
                    return Err("nginx did not exit within 10 s of SIGTERM".into());
                }
                Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(e) => return Err(format!("waiting for nginx: {e}")),
            }
        }
        Ok(std::fs::read_to_string(self.dir.join("error.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect())
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fake upstreams

struct FakeSalesforce {
    main: SocketAddr,
    close: SocketAddr,
    /// Plain HTTP/1.1 (and h2 with prior knowledge), keep-alive, for nginx to proxy to
    /// (`--upstream nginx-*` only).
    plain: Option<SocketAddr>,
    /// A leaf for LOGIN_HOST, MY_DOMAIN and CONN_HOST signed by the fake's CA, as PEM
    /// (certificate, key): nginx's (`--upstream nginx-*` only).
    nginx_leaf: Option<fake_ca::PemLeaf>,
    ca_pem: String,
    ca_path: PathBuf,
    stats: Arc<FakeStats>,
}

#[derive(Default)]
struct FakeStats {
    tokens: AtomicU64,
    data: AtomicU64,
    rejected: AtomicU64,
    connections: AtomicU64,
    last_reject: Mutex<Option<String>>,
}

#[derive(Clone, Copy)]
struct FakeCounts {
    tokens: u64,
    data: u64,
    rejected: u64,
}

impl FakeStats {
    fn counts(&self) -> FakeCounts {
        FakeCounts {
            tokens: self.tokens.load(Ordering::SeqCst),
            data: self.data.load(Ordering::SeqCst),
            rejected: self.rejected.load(Ordering::SeqCst),
        }
    }
}

impl FakeSalesforce {
    /// `behind_nginx`: also a plain listener and a PEM leaf for nginx.
    async fn start(dir: &Path, behind_nginx: bool) -> Result<FakeSalesforce, String> {
        let hosts = [LOGIN_HOST, MY_DOMAIN, CONN_HOST];
        let (ca_pem, leaves, nginx_leaf) = fake_ca::fake_ca_with_pem_leaf(
            "grantshift bench fake Salesforce CA",
            &hosts,
            if behind_nginx { &hosts } else { &[] },
        )?;
        let ca_path = dir.join("fake-salesforce-ca.pem");
        std::fs::write(&ca_path, &ca_pem).map_err(|e| format!("writing the fake CA: {e}"))?;
        let mut resolver = rustls::server::ResolvesServerCertUsingSni::new();
        for (host, key) in leaves {
            resolver
                .add(&host, key)
                .map_err(|e| format!("fake SNI certificate for {host}: {e}"))?;
        }
        let resolver = Arc::new(resolver);
        let server_config = |alpn: &[&[u8]]| -> Result<Arc<rustls::ServerConfig>, String> {
            let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
            config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Ok(Arc::new(config))
        };
        let stats = Arc::new(FakeStats::default());
        let data = data_response();
        // Main: h2 and HTTP/1.1, keep-alive, like the real one.
        let main = serve_fake(
            Some(TlsAcceptor::from(server_config(&[b"h2", b"http/1.1"])?)),
            stats.clone(),
            data.clone(),
            false,
        )?;
        // One response per connection, HTTP/1.1: every request costs the proxy a new
        // upstream connection (scenario C).
        let close = serve_fake(
            Some(TlsAcceptor::from(server_config(&[b"http/1.1"])?)),
            stats.clone(),
            data.clone(),
            true,
        )?;
        // Behind nginx, which terminates TLS and closes CONN_HOST's connections itself.
        let plain = if behind_nginx {
            Some(serve_fake(None, stats.clone(), data, false)?)
        } else {
            None
        };
        Ok(FakeSalesforce {
            main,
            close,
            plain,
            nginx_leaf,
            ca_pem,
            ca_path,
            stats,
        })
    }
}

/// `acceptor`: TLS, the Host checked against the SNI; `None`: plain HTTP behind nginx.
fn serve_fake(
    acceptor: Option<TlsAcceptor>,
    stats: Arc<FakeStats>,
    data: Bytes,
    one_response: bool,
) -> Result<SocketAddr, String> {
    let listener = bind_loopback().map_err(|e| format!("binding the fake Salesforce: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            stats.connections.fetch_add(1, Ordering::Relaxed);
            let (acceptor, stats, data) = (acceptor.clone(), stats.clone(), data.clone());
            tokio::spawn(async move {
                let Some(acceptor) = acceptor else {
                    serve_fake_connection(tcp, Sni::Plain, stats, data, one_response).await;
                    return;
                };
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let sni = Sni::Tls(tls.get_ref().1.server_name().map(Arc::from));
                serve_fake_connection(tls, sni, stats, data, one_response).await;
            });
        }
    });
    Ok(addr)
}

/// What the fake checks the Host header against.
#[derive(Clone)]
enum Sni {
    /// The server name the client sent in its TLS hello (`None`: it sent none).
    Tls(Option<Arc<str>>),
    /// Plain HTTP from nginx, which terminated TLS: no server name to check.
    Plain,
}

async fn serve_fake_connection<S>(
    io: S,
    sni: Sni,
    stats: Arc<FakeStats>,
    data: Bytes,
    one_response: bool,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let (stats, data, sni) = (stats.clone(), data.clone(), sni.clone());
        async move { Ok::<_, std::convert::Infallible>(fake_endpoint(req, &sni, &stats, data).await) }
    });
    if one_response {
        let _ = hyper::server::conn::http1::Builder::new()
            .keep_alive(false)
            .serve_connection(TokioIo::new(io), service)
            .await;
    } else {
        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(io), service)
            .await;
    }
}

async fn fake_endpoint(
    req: Request<Incoming>,
    sni: &Sni,
    stats: &FakeStats,
    data: Bytes,
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
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let body = req.into_body().collect().await.map(|b| b.to_bytes());
    let reject = |why: String| {
        stats.rejected.fetch_add(1, Ordering::Relaxed);
        *stats.last_reject.lock().unwrap() = Some(why);
        let mut resp = Response::new(Full::new(Bytes::from_static(
            br#"{"error":"invalid_grant","error_description":"authentication failure"}"#,
        )));
        *resp.status_mut() = StatusCode::BAD_REQUEST;
        resp
    };
    let Ok(body) = body else {
        return reject("body error".into());
    };
    if let Sni::Tls(sni) = sni {
        if sni.as_deref() != Some(host.as_str()) {
            return reject(format!("SNI {sni:?} but host {host}"));
        }
    }
    match (method, path.as_str()) {
        (Method::POST, TOKEN_PATH) => {
            let params: Vec<(String, String)> =
                serde_urlencoded::from_bytes(&body).unwrap_or_default();
            let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
            // Only the My Domain takes client credentials; a password grant anywhere is what
            // an un-upgraded login would be.
            if host != MY_DOMAIN
                || get("grant_type") != Some("client_credentials")
                || get("client_id") != Some(CLIENT_ID)
                || get("client_secret") != Some(CLIENT_SECRET)
                || get("username").is_some()
                || get("password").is_some()
            {
                return reject(format!(
                    "token request at {host} with grant_type {:?}",
                    get("grant_type")
                ));
            }
            stats.tokens.fetch_add(1, Ordering::Relaxed);
            json(Bytes::from_static(TOKEN_RESPONSE.as_bytes()))
        }
        (Method::GET, DATA_PATH) => {
            stats.data.fetch_add(1, Ordering::Relaxed);
            json(data)
        }
        (method, path) => reject(format!("{method} {path}")),
    }
}

fn json(body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    resp
}

/// 127.0.0.1, port 0, with a listen backlog deep enough that no SYN is dropped.
fn bind_loopback() -> std::io::Result<TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::new(LOOPBACK, 0))?;
    socket.listen(4096)
}

/// Plain TCP: read an 8-byte big-endian length, send that many bytes, then wait for the
/// client to close.
async fn start_blob_server() -> Result<SocketAddr, String> {
    let listener = bind_loopback().map_err(|e| format!("binding the blob server: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let chunk = Bytes::from(vec![0xA5u8; 1 << 20]);
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            let chunk = chunk.clone();
            tokio::spawn(async move {
                let mut len = [0u8; 8];
                if tcp.read_exact(&mut len).await.is_err() {
                    return;
                }
                let mut left = u64::from_be_bytes(len);
                while left > 0 {
                    let n = left.min(chunk.len() as u64) as usize;
                    if tcp.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                    left -= n as u64;
                }
                let mut sink = [0u8; 64];
                while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
            });
        }
    });
    Ok(addr)
}

async fn start_echo_server() -> Result<SocketAddr, String> {
    let listener = bind_loopback().map_err(|e| format!("binding the echo server: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = [0u8; 256];
                loop {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if tcp.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    Ok(addr)
}

// ---------------------------------------------------------------------------------------------
// The report

/// Per round values of one scenario, as the table shows them.
struct RoundFigures {
    direct_rate: Option<f64>,
    proxy_rate: f64,
    direct_p50: Option<f64>,
    direct_p99: Option<f64>,
    proxy_p50: f64,
    proxy_p99: f64,
    /// µs per request / per connection, ms per GiB, or KiB per tunnel.
    cost: f64,
    /// Load on each core during the proxy run, in % of one core: the proxy on CPU 0, this
    /// process on CPU 1, and everything else on either.
    proxy_pct: f64,
    client_pct_direct: Option<f64>,
    client_pct_proxy: f64,
    others_pct: [f64; 2],
    /// CPU per operation (µs; per MiB for D, per tunnel opened for E) of the proxy, and of
    /// this process (client + fakes) during the proxy run: whichever is larger bounds the
    /// throughput, both having one core.
    proxy_us_per_op: f64,
    client_us_per_op: f64,
}

fn figures(scenario: Scenario, s: &Sample, pinned: bool) -> RoundFigures {
    let p = &s.proxy;
    let d = s.direct.as_ref();
    let pct = |cpu: f64, m: &Measured| 100.0 * cpu / m.secs.max(1e-9);
    let scale_rate = |r: f64| if scenario == Scenario::D { r / 1e6 } else { r };
    let per_op = |cpu: f64| {
        let ops = if scenario == Scenario::D {
            p.ops as f64 / (1u64 << 20) as f64
        } else {
            p.ops.max(1) as f64
        };
        cpu * 1e6 / ops
    };
    let cost = match scenario {
        Scenario::D => p.proxy_cpu * 1e3 / (p.ops as f64 / (1u64 << 30) as f64),
        Scenario::E => {
            s.e.as_ref()
                .map(IdleTunnels::kib_per_tunnel)
                .unwrap_or(f64::NAN)
        }
        _ => p.proxy_cpu * 1e6 / p.ops.max(1) as f64,
    };
    let mut others = [0.0; 2];
    for (i, other) in others.iter_mut().enumerate() {
        let ours = if i == 0 { p.proxy_cpu } else { p.bench_cpu };
        let busy = if pinned {
            p.cpu_busy[i] - ours
        } else {
            f64::NAN
        };
        *other = pct(busy.max(0.0), p);
    }
    RoundFigures {
        direct_rate: d.map(|d| scale_rate(d.rate())),
        proxy_rate: scale_rate(p.rate()),
        direct_p50: d.map(|d| d.percentile_ms(0.5)),
        direct_p99: d.map(|d| d.percentile_ms(0.99)),
        proxy_p50: p.percentile_ms(0.5),
        proxy_p99: p.percentile_ms(0.99),
        cost,
        proxy_pct: pct(p.proxy_cpu, p),
        client_pct_direct: d.map(|d| pct(d.bench_cpu, d)),
        client_pct_proxy: pct(p.bench_cpu, p),
        others_pct: others,
        proxy_us_per_op: per_op(p.proxy_cpu),
        client_us_per_op: per_op(p.bench_cpu),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| !x.is_nan());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn median_opt(v: Vec<Option<f64>>) -> Option<f64> {
    if v.iter().all(Option::is_none) {
        return None;
    }
    Some(median(v.into_iter().flatten().collect()))
}

/// (target text, met?) for a row.
fn verdict(
    scenario: Scenario,
    ratio: Option<f64>,
    added_p50: Option<f64>,
    cost: f64,
    proxy_bound: bool,
) -> (String, String) {
    // The CPU targets are those set against nginx and the peer proxies (README,
    // Performance). The ratio target holds "wherever the client side, not the proxy, is the
    // limit": where the proxy needs more CPU per request than the client side, the row is
    // judged on CPU alone and says so.
    let ratio_ok = ratio.map(|r| r >= 0.9 || proxy_bound);
    let judge = |parts: Vec<(&str, bool)>| {
        let failed: Vec<&str> = parts
            .iter()
            .filter(|(_, ok)| !ok)
            .map(|(n, _)| *n)
            .collect();
        if failed.is_empty() {
            "yes".to_string()
        } else {
            format!("**no** ({})", failed.join(", "))
        }
    };
    let (target, met): (String, String) = match scenario {
        Scenario::A1 | Scenario::A1Events => (
            "added p50 ≤ 0.06 ms".into(),
            judge(vec![("added p50", added_p50.is_some_and(|a| a <= 0.06))]),
        ),
        Scenario::A32 | Scenario::A32Events => (
            "≤ 30 µs/req, ratio ≥ 0.9".into(),
            judge(vec![
                ("CPU", cost <= 30.0),
                ("ratio", ratio_ok.unwrap_or(false)),
            ]),
        ),
        Scenario::B32 => (
            "≤ 22 µs/req, ratio ≥ 0.9".into(),
            judge(vec![
                ("CPU", cost <= 22.0),
                ("ratio", ratio_ok.unwrap_or(false)),
            ]),
        ),
        Scenario::C => ("≤ 450 µs/conn".into(), judge(vec![("CPU", cost <= 450.0)])),
        Scenario::D => (
            "≤ 500 ms/GiB, ratio ≥ 0.9".into(),
            judge(vec![
                ("CPU", cost <= 500.0),
                ("ratio", ratio_ok.unwrap_or(false)),
            ]),
        ),
        Scenario::E => ("≤ 8 KiB/tunnel".into(), judge(vec![("RSS", cost <= 8.0)])),
        Scenario::L1 => ("none: the floor under A1".into(), "—".into()),
    };
    let ratio_target = matches!(
        scenario,
        Scenario::A32 | Scenario::A32Events | Scenario::B32 | Scenario::D
    );
    if ratio_target && proxy_bound && ratio.is_some_and(|r| r < 0.9) {
        (target, format!("{met}; ratio n/a: proxy-bound"))
    } else {
        (target, met)
    }
}

fn cost_text(scenario: Scenario, cost: f64) -> String {
    match scenario {
        Scenario::C => format!("{cost:.0} µs/conn"),
        Scenario::D => format!("{cost:.0} ms/GiB"),
        Scenario::E => format!("{cost:.1} KiB/tunnel"),
        Scenario::L1 => format!("{cost:.1} µs/round trip"),
        _ => format!("{cost:.1} µs/req"),
    }
}

/// The proxy's upstream connections opened per measured run, and in all since it started:
/// `0 (in all: 1 h2)`, one per round when they differ; `-` where the proxy's `/metrics` had
/// no counter.
fn upstream_conns_text(scenario: Scenario, samples: &[Sample]) -> String {
    if matches!(scenario, Scenario::D | Scenario::E | Scenario::L1) {
        return "—".into();
    }
    // `0`, `32 http/1.1`, `1 h2 + 300 http/1.1`.
    let text = |by_protocol: &BTreeMap<String, u64>| {
        let parts: Vec<String> = by_protocol
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(protocol, n)| format!("{n} {protocol}"))
            .collect();
        if parts.is_empty() {
            "0".to_string()
        } else {
            parts.join(" + ")
        }
    };
    let per_round: Option<Vec<String>> = samples
        .iter()
        .map(|s| {
            let conns = s.proxy.upstream_conns.as_ref()?;
            Some(format!(
                "{} (in all: {})",
                text(&conns.opened),
                text(&conns.in_all)
            ))
        })
        .collect();
    match per_round {
        None => "-".into(),
        Some(mut v) => {
            let first = v.first().cloned().unwrap_or_default();
            if v.iter().all(|x| *x == first) {
                v.truncate(1);
            }
            v.join(", ")
        }
    }
}

fn rate_text(scenario: Scenario, rate: f64) -> String {
    match scenario {
        Scenario::D => format!("{rate:.0} MB/s"),
        Scenario::E => format!("{rate:.0} opened/s"),
        _ => format!("{rate:.0}"),
    }
}

fn spread(v: &[f64]) -> String {
    let m = median(v.to_vec());
    let (lo, hi) = v
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(*x), hi.max(*x))
        });
    if v.len() < 2 || m == 0.0 || m.is_nan() {
        return "-".into();
    }
    format!("±{:.0}%", 50.0 * (hi - lo) / m.abs())
}

impl Report {
    fn render(
        &self,
        env: &Env,
        rounds: usize,
        sizes: Sizes,
        quick: bool,
        elapsed: Duration,
        built: &Path,
    ) -> String {
        let pinned = env.pinning == Pinning::Pinned;
        let mut out = String::new();
        let w = &mut out;
        use std::fmt::Write as _;
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_default();
        let _ = writeln!(
            w,
            "## grantshift end-to-end benchmark, upstream: {} ({}, {rounds} round{}, medians)\n",
            self.upstream,
            if quick { "quick" } else { "full size" },
            if rounds == 1 { "" } else { "s" }
        );
        let _ = writeln!(
            w,
            "{} CPUs ({cpu_model}); proxy `{}` pinned to CPU {}; load client + fake Salesforce on CPU {}{}; loopback. \
             Sizes per round: A1 {} req, A32 {} req, B32 {} req, C {} conns, D {} MiB, E {} tunnels, L1 {} round trips. Run took {:.0} s.\n",
            env.cpus,
            built.display(),
            self.proxy_cpus,
            if env.pinning == Pinning::Pinned { "1" } else { "any (unpinned)" },
            match &self.nginx_cpus {
                Some(cpus) => format!(
                    "; Salesforce hosts: nginx (one process, Cpus_allowed_list {cpus}) terminating TLS \
                     in front of the fake over plain HTTP/1.1 (`keepalive 64`)"
                ),
                None => "; Salesforce hosts: the fake itself (rustls)".into(),
            },
            sizes.a1,
            sizes.a32,
            sizes.b32,
            sizes.c,
            sizes.d_bytes >> 20,
            sizes.e_tunnels,
            sizes.l1,
            elapsed.as_secs_f64(),
        );
        let _ = writeln!(
            w,
            "| scenario | direct req/s | proxy req/s | ratio | direct p50 / p99 (ms) | proxy p50 / p99 (ms) | added p50 | proxy CPU | upstream conns opened | target | met? |"
        );
        let _ = writeln!(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|");
        let mut details = Vec::new();
        for (scenario, samples) in &self.samples {
            let scenario = *scenario;
            if samples.is_empty() {
                continue;
            }
            let f: Vec<RoundFigures> = samples
                .iter()
                .map(|s| figures(scenario, s, pinned))
                .collect();
            let direct_rate = median_opt(f.iter().map(|r| r.direct_rate).collect());
            let proxy_rate = median(f.iter().map(|r| r.proxy_rate).collect());
            let ratios: Vec<f64> = f
                .iter()
                .filter_map(|r| r.direct_rate.map(|d| r.proxy_rate / d))
                .collect();
            let ratio = (!ratios.is_empty()).then(|| median(ratios.clone()));
            let d50 = median_opt(f.iter().map(|r| r.direct_p50).collect());
            let d99 = median_opt(f.iter().map(|r| r.direct_p99).collect());
            let p50 = median(f.iter().map(|r| r.proxy_p50).collect());
            let p99 = median(f.iter().map(|r| r.proxy_p99).collect());
            let added: Vec<f64> = f
                .iter()
                .filter_map(|r| r.direct_p50.map(|d| r.proxy_p50 - d))
                .collect();
            let added_p50 = (!added.is_empty()).then(|| median(added.clone()));
            let costs: Vec<f64> = f.iter().map(|r| r.cost).collect();
            let cost = median(costs.clone());
            let proxy_bound = median(f.iter().map(|r| r.proxy_us_per_op).collect())
                > median(f.iter().map(|r| r.client_us_per_op).collect());
            let (target, met) = verdict(scenario, ratio, added_p50, cost, proxy_bound);
            let lat = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) if !a.is_nan() => format!("{a:.3} / {b:.3}"),
                _ => "—".into(),
            };
            let (proxy_lat, added_text) = match scenario {
                Scenario::E => ("—".to_string(), "—".to_string()),
                Scenario::D => (
                    format!("{:.0} ms total", p50),
                    added_p50.map(|a| format!("{a:+.0} ms")).unwrap_or_default(),
                ),
                _ => (
                    lat(Some(p50), Some(p99)),
                    added_p50.map(|a| format!("{a:+.3} ms")).unwrap_or_default(),
                ),
            };
            let direct_lat = match scenario {
                Scenario::D => d50.map(|d| format!("{d:.0} ms total")).unwrap_or_default(),
                _ => lat(d50, d99),
            };
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                scenario.label(),
                direct_rate
                    .map(|r| rate_text(scenario, r))
                    .unwrap_or_else(|| "—".into()),
                rate_text(scenario, proxy_rate),
                ratio
                    .map(|r| format!("{r:.2}"))
                    .unwrap_or_else(|| "—".into()),
                direct_lat,
                proxy_lat,
                added_text,
                cost_text(scenario, cost),
                upstream_conns_text(scenario, samples),
                target,
                met,
            );
            details.push((scenario, f, costs, ratios, added, samples));
        }

        let _ = writeln!(
            w,
            "\nProxy CPU = grantshift's user+sys time (`/proc/<pid>/stat`, all threads) over the measured part, per request \
             (A, B), per new connection (C), per GiB (D); E = VmRSS growth per idle tunnel. Direct = the same client load \
             straight to the upstream (A: the client-credentials body to the My Domain; C: TLS per request; D: plain TCP). \
             ratio = proxy / direct throughput; the ratio target applies where the client core, not the proxy, is the limit. \
             upstream conns opened = connections the proxy's pool opened during its measured run (after the warm-up), by \
             protocol, from its `grantshift_upstream_connections_total` on `/metrics`; in all = since that proxy started, \
             at the end of the run (per round if rounds differ; `-`: no such counter).\n"
        );
        let _ = writeln!(
            w,
            "### Who is the limit, load per core, spread over rounds\n"
        );
        let _ = writeln!(
            w,
            "CPU per op: per request (A, B), per connection (C), per MiB (D), per tunnel opened (E); the client side is this \
             process (load client + fake Salesforce, CPU 1) during the proxy run. Both have one core, so the side that needs \
             more CPU per op bounds throughput. With nginx, the client side includes nginx (it runs on CPU 1 too). `others` = \
             busy time of that core not spent by grantshift (CPU 0) or by the client side (CPU 1): other jobs on the machine, i.e. noise. spread = ± half the range of proxy CPU over rounds, \
             relative to the median.\n"
        );
        let _ = writeln!(
            w,
            "| scenario | CPU µs per op: proxy / client side | bound by | proxy core: grantshift % | client core % (direct / proxy run) | others on CPU 0 / CPU 1 % | proxy CPU per round | spread | ratio per round | added p50 per round (ms) |"
        );
        let _ = writeln!(w, "|---|---:|---|---:|---:|---:|---|---:|---|---|");
        for (scenario, f, costs, ratios, added, _) in &details {
            let m = |g: &dyn Fn(&RoundFigures) -> f64| median(f.iter().map(g).collect());
            let list = |v: &[f64], prec: usize| {
                v.iter()
                    .map(|x| format!("{x:.prec$}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let (proxy_op, client_op) = (m(&|r| r.proxy_us_per_op), m(&|r| r.client_us_per_op));
            let _ = writeln!(
                w,
                "| {} | {:.1} / {:.1} | {} | {:.0} | {} / {:.0} | {:.0} / {:.0} | {} | {} | {} | {} |",
                scenario.key(),
                proxy_op,
                client_op,
                match scenario {
                    Scenario::E => "—",
                    _ if proxy_op > client_op => "proxy",
                    _ => "client",
                },
                m(&|r| r.proxy_pct),
                median_opt(f.iter().map(|r| r.client_pct_direct).collect())
                    .map(|x| format!("{x:.0}"))
                    .unwrap_or_else(|| "—".into()),
                m(&|r| r.client_pct_proxy),
                m(&|r| r.others_pct[0]),
                m(&|r| r.others_pct[1]),
                list(costs, 1),
                spread(costs),
                if ratios.is_empty() {
                    "—".into()
                } else {
                    list(ratios, 2)
                },
                if added.is_empty() || matches!(scenario, Scenario::D | Scenario::E) {
                    "—".into()
                } else {
                    list(added, 3)
                },
            );
        }
        for (scenario, _, _, _, _, samples) in &details {
            if *scenario != Scenario::E {
                continue;
            }
            for (i, s) in samples.iter().enumerate() {
                if let Some(e) = &s.e {
                    let _ = writeln!(
                        w,
                        "\nE round {}: RSS {} KiB before, {} KiB with {} tunnels ({} → {} fds), {} KiB after closing them; \
                         opening them cost the proxy {:.0} µs CPU each.",
                        i + 1,
                        e.baseline_kib,
                        e.with_tunnels_kib,
                        e.tunnels,
                        e.baseline_fds,
                        e.with_tunnels_fds,
                        e.after_close_kib,
                        e.opening.proxy_cpu * 1e6 / e.tunnels.max(1) as f64
                    );
                }
            }
        }
        let _ = writeln!(
            w,
            "\nChecks: every response was the fake's 200 of the expected size; the fake counted every request{}; \
             the fake accepted {} {} in all; proxy WARN/ERROR log lines: {}{}.",
            match self.events_checked {
                Some((lines, _)) => format!(", and the events file holds exactly {lines} `upgraded` lines (one per login)"),
                None => String::new(),
            },
            self.fake_upstream_conns,
            if self.nginx_log.is_some() {
                "plain HTTP connections from nginx"
            } else {
                "TLS connections"
            },
            self.warn_lines.len(),
            match &self.nginx_log {
                Some(lines) => format!("; nginx error.log lines (warn and above): {}", lines.len()),
                None => String::new(),
            },
        );
        for line in self.warn_lines.iter().take(5) {
            let _ = writeln!(w, "    {line}");
        }
        for line in self.nginx_log.iter().flatten().take(5) {
            let _ = writeln!(w, "    nginx: {line}");
        }
        out
    }
}
