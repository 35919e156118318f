//! End-to-end benchmark: the real `grantshift` release binary between a load client and the
//! Salesforce hosts over TLS (by default nginx as their TLS edge in front of a fake Salesforce),
//! measured against a direct connection to the same upstream in the same run.
//!
//! ```sh
//! cargo bench --bench e2e                     # full size, 3 rounds (a few minutes)
//! cargo bench --bench e2e -- --quick          # 1/10 of the size, 1 round (or GRANTSHIFT_BENCH_QUICK=1)
//! cargo bench --bench e2e -- --only A32,B32   # some scenarios (A1 A32 A1c A32c A1ev A32ev A32v W B32 C D E L1 A32s A32cs F1 F2)
//! cargo bench --bench e2e -- --rounds 5       # more rounds: medians over more samples
//! cargo bench --bench e2e -- --upstream nginx-h1   # nginx-h2 (default), nginx-h1 or fake
//! cargo bench --bench e2e -- --only A32 --perf-dir /tmp/perf   # + perf record / perf stat of the proxy
//! ```
//!
//! The table goes to stdout and to `target/bench-e2e-<upstream>.md` (`bench-e2e-nginx-h2.md`,
//! ...); its heading names the upstream (e.g. `upstream: nginx 1.22.1 (h2 + http/1.1)`), so
//! tables of different runs cannot be confused.
//!
//! # Layout
//!
//! A directory bench (`[[bench]] path = "benches/e2e/main.rs"`, `harness = false`): this file
//! has the command line and the orchestration; [`scenarios`] the load client and each
//! scenario; [`measure`] the `/proc` accounting, pinning and `perf`; [`report`] the table and
//! the `.md` file; [`upstream`] nginx, the fake Salesforce and the plain TCP servers; [`proxy`]
//! the release binary, built, configured, started and scraped. What the soak tool
//! (`tools/soak`) needs too comes from testkit: the fake Salesforce
//! (`testkit::fast_salesforce`), its CA (`testkit::TestCa`), the echo server, the CONNECT and
//! TLS client pieces, the proxy process with its JSON log drained, `/proc/<pid>/status`.
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
//!   for the three hosts from the fake's CA (a `testkit::TestCa`). One server for the login
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
//!   nginx's leaf), one `[[credentials]]` mapping the bench username to the My Domain,
//!   `[telemetry] events = ""` (the `ev` rows: an events file, the default) and
//!   `[token_cache] enabled = false`: every scenario but A32c measures the upgrade path, which
//!   the token cache (on by default) would answer from memory after the first login, so their
//!   figures stay comparable with those measured before the cache existed. Around each
//!   measured proxy run of A, B and C the bench reads `grantshift_upstream_connections_total`
//!   from `/metrics`: the table's "upstream conns opened" (`-` if the counter is missing).
//! - **This process** (load client, fake Salesforce, plain TCP servers) pins itself to CPU 1
//!   with `taskset -a -p -c 1 <own pid>` before it starts any thread (or child: nginx inherits
//!   the mask), and runs everything on one current-thread tokio runtime. `taskset`
//!   (util-linux) rather than a crate such as `core_affinity`: it is the same tool that pins
//!   the proxy, needs no new dependency and no `unsafe`, and every thread created afterwards
//!   inherits the mask.
//! - **The fake Salesforce** (`testkit::fast_salesforce`, fixed answers, counters only): its
//!   own CA; leaves for `login.salesforce.com`, `acme.my.salesforce.com` and
//!   `conn.my.salesforce.com` chosen by SNI, ALPN `h2` + `http/1.1` (the proxy's pooled client
//!   picks h2, as with the real Salesforce); a second listener for `conn.my.salesforce.com`
//!   speaks HTTP/1.1 only and closes every connection after one response (scenario C); with
//!   nginx, a third, plain HTTP/1.1 keep-alive listener that nginx forwards to. Plus a
//!   plain TCP "blob" server (`files.bench.test`: send an 8-byte length, get that many bytes)
//!   and a TCP echo server (`idle.bench.test`, testkit's in its load flavour), both
//!   blind-tunnelled.
//!
//! # Scenarios (direct baseline in brackets)
//!
//! - **A1 / A32**: `POST /services/oauth2/token` password grant to `login.salesforce.com`
//!   through CONNECT + TLS, upgraded to client credentials and redirected to
//!   `acme.my.salesforce.com`; 1 and 32 keep-alive connections. [The client-credentials body
//!   straight to `acme.my.salesforce.com` over TLS.] `ev` rows: the same with the events file on.
//! - **A32c** ("A32-cached"): A32 on a proxy with the token cache on, started fresh for
//!   each round. First a cold start on the empty cache, 1,000 logins with the same
//!   credentials from 50 connections sending at once: the token requests that reached the
//!   upstream are counted (the fake's count, and the proxy's
//!   `grantshift_token_cache_{hits,misses,waits}_total`), not asserted; the cache's single
//!   flight should make them one. Then A32's warm-up and measured run, every login a cache
//!   hit answered from memory with the first login's exact response (checked as in A32).
//!   Targets: ≤ 15 µs of proxy CPU per hit, p50 below the direct token request's (there is
//!   no upstream round trip). [As A.]
//! - **A1c**: the same with one connection (after the same 50-client cold start): the
//!   latency of a hit without queueing behind 31 other requests. Target: p50 below direct.
//! - **A32v**: A32 on a proxy whose credentials entry checks the password (`verify_password =
//!   "required"`, a `password_hash` made with OWASP's Argon2id cost): the first login pays for
//!   Argon2, the rest are checked by their keyed digest. Compared with A32 in the same run
//!   (the target: proxy CPU per request within 10% of A32's). [As A.]
//! - **W**: 10,000 password grants (1,000 with `--quick`) for the bench user, each with a
//!   different wrong password, over 32 keep-alive connections through the A32v proxy: none is
//!   upgraded, each goes to the login host as sent (which refuses it). The row gives the
//!   proxy's CPU seconds for them; the notes, how many Argon2 runs they cost (from
//!   `grantshift_password_hashes_total`). No direct baseline.
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
//! - **A32s** (A32 + shared state): A32 against replica `gs-a` of a fleet: the main proxy's
//!   config plus `[cluster]` on a `redis-server` the bench starts (Debian's, `--save ""
//!   --appendonly no`, on CPU 1 with the load side) and the fleet key in its environment.
//!   Each login then also goes into the shared events stream and the fleet's login-rate
//!   counters (one script per batch of events, in the background). Compared with A32 in the
//!   same run: the CPU the shared state adds per login. [As A.]
//! - **A32cs** (A32c + shared state): A32c on a fresh replica per round with the token cache
//!   on and `[cluster]` (a key prefix of its own per round, so the fleet's cache starts empty
//!   too): the cold start's logins take the fleet's lock and store the session in Redis; every
//!   measured hit then also asks Redis whether the session is still the fleet's (one EXISTS:
//!   another replica may have revoked it). Compared with A32c in the same run. [As A.]
//! - **F1 / F2** (the fleet): A32's logins through Debian's HAProxy (TCP mode, `/readyz`
//!   checks, as `deploy/haproxy/haproxy.cfg`; on CPU 1) in front of one replica (`gs-a`) or
//!   two (`gs-a`, and `gs-b` with `gs-a`'s CA files), both on `[cluster]`. The proxy CPU is
//!   the replicas' summed; HAProxy's and Redis's CPU per login are in the notes, with each
//!   replica's RSS after the runs. Both replicas are pinned to CPU 0 like every proxy here,
//!   so F2 / F1 shows what a second replica costs on the same core, not how a fleet scales
//!   across machines. [As A.]
//!
//! Connections are opened before the clock starts (except C, where opening them is the
//! work), every scenario is warmed up first, and request counts are fixed. The proxy's CPU
//! is `utime + stime` from `/proc/<pid>/stat` (all its threads) around the measured part; the
//! same for this process and the `/proc/stat` per-CPU busy time give how loaded each core
//! was, and by what else. Every response is checked (status and body size) and the fake

mod measure;
mod proxy;
mod report;
mod scenarios;
mod upstream;

use clap::Parser;
use measure::{cpus_allowed, pin_self, Measured, Sample};
use proxy::BenchProxy;
use report::Report;
use scenarios::{
    download, echo_ping_pong, idle_tunnels, keep_alive, per_connection, Req, Route, Servers,
};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use testkit::haproxy::HaProxy;
use upstream::Nginx;

use testkit::fast_salesforce::{DATA_PATH, MY_DOMAIN};
use testkit::{LOGIN_HOST, TOKEN_PATH};

/// Intercepted host whose fake closes every connection after one response (scenario C).
const CONN_HOST: &str = "conn.my.salesforce.com";
/// Blind-tunnelled: the bulk download (D).
const BLOB_HOST: &str = "files.bench.test";
/// Blind-tunnelled: the idle tunnels (E) and the readiness probe.
const ECHO_HOST: &str = "idle.bench.test";
const USERNAME: &str = "bench@acme.com";
const CLIENT_ID: &str =
    "3MVG9benchAcmeIntegrationConsumerKey.0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN";
const CLIENT_SECRET: &str = "8E1F7C2B9A6D4E3F0A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F6071";
const PASSWORD: &str = "correct-horse-battery-staple1A2b3C4d5E6f7G8h9I0jK";
/// One step (opening a connection, one request) taking longer than this stops the run: a
/// hang guard, not a measurement.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// A32c's cold start: this many logins with one set of credentials, from this many clients
/// at once, on a proxy whose token cache is empty.
const COLD_START_LOGINS: usize = 1_000;
const COLD_START_CLIENTS: usize = 50;

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
    /// Comma-separated scenarios: A1, A32, A1c, A32c, A1ev, A32ev, A32v, W, B32, C, D, E, L1,
    /// A32s, A32cs, F1, F2 [default: all].
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
    A1Cached,
    A32Cached,
    A1Events,
    A32Events,
    A32Verify,
    W,
    B32,
    C,
    D,
    E,
    L1,
    A32Shared,
    A32CachedShared,
    F1,
    F2,
}

impl Scenario {
    const ALL: [Scenario; 17] = [
        Scenario::A1,
        Scenario::A32,
        Scenario::A1Cached,
        Scenario::A32Cached,
        Scenario::A1Events,
        Scenario::A32Events,
        Scenario::A32Verify,
        Scenario::W,
        Scenario::B32,
        Scenario::C,
        Scenario::D,
        Scenario::E,
        Scenario::L1,
        Scenario::A32Shared,
        Scenario::A32CachedShared,
        Scenario::F1,
        Scenario::F2,
    ];

    fn key(self) -> &'static str {
        match self {
            Scenario::A1 => "A1",
            Scenario::A32 => "A32",
            Scenario::A1Cached => "A1c",
            Scenario::A32Cached => "A32c",
            Scenario::A1Events => "A1ev",
            Scenario::A32Events => "A32ev",
            Scenario::A32Verify => "A32v",
            Scenario::W => "W",
            Scenario::B32 => "B32",
            Scenario::C => "C",
            Scenario::D => "D",
            Scenario::E => "E",
            Scenario::L1 => "L1",
            Scenario::A32Shared => "A32s",
            Scenario::A32CachedShared => "A32cs",
            Scenario::F1 => "F1",
            Scenario::F2 => "F2",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Scenario::A1 => "A1 token upgrade, 1 conn",
            Scenario::A32 => "A32 token upgrade, 32 conns",
            Scenario::A1Cached => "A1c token cache hits, 1 conn",
            Scenario::A32Cached => "A32c token cache hits, 32 conns",
            Scenario::A1Events => "A1 + events file",
            Scenario::A32Events => "A32 + events file",
            Scenario::A32Verify => "A32 + password verified",
            Scenario::W => "W wrong passwords, one set, 32 conns",
            Scenario::B32 => "B32 intercepted GET, 32 conns",
            Scenario::C => "C new conn per request, 8 at once",
            Scenario::D => "D blind tunnel, download",
            Scenario::E => "E idle tunnels",
            Scenario::L1 => "L1 floor: tunnel echo, 1 conn",
            Scenario::A32Shared => "A32s A32 + shared state (Redis)",
            Scenario::A32CachedShared => "A32cs A32c + shared state (Redis)",
            Scenario::F1 => "F1 A32 via HAProxy, 1 replica",
            Scenario::F2 => "F2 A32 via HAProxy, 2 replicas",
        }
    }
}

/// Sizes of one round.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    a1: usize,
    a32: usize,
    w: usize,
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
                w: 1_000,
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
                w: 10_000,
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
                            "--only: unknown scenario `{name}` (A1 A32 A1c A32c A1ev A32ev A32v W B32 C D E L1 A32s A32cs F1 F2)"
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
        None => proxy::build_proxy()?,
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
    let (limit, _) = testkit::process::raise_fd_limit()?;
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
        clk_tck: measure::clock_ticks_per_second(),
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
    testkit::profile_dir()
        .and_then(|profile| Some(profile.parent()?.to_path_buf()))
        .unwrap_or_else(|| testkit::repo_path("target"))
}

// ---------------------------------------------------------------------------------------------
// The run

async fn run_all(
    env: &Env,
    scenarios: &[Scenario],
    rounds: usize,
    sizes: Sizes,
) -> Result<Report, String> {
    let fake = upstream::start_fake(&env.dir, env.upstream.is_nginx()).await?;
    let blob = upstream::start_blob_server()?;
    let echo = testkit::TcpEchoServer::start_for_load()
        .map_err(|e| format!("starting the echo server: {e}"))?
        .addr();
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
        None => (
            fake.addr(),
            fake.close_addr().expect("the fake's close listener"),
        ),
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
        tls: scenarios::client_tls(fake.ca().pem(), true)?,
        tls_fresh: scenarios::client_tls(fake.ca().pem(), false)?,
    };

    let needs = |f: &dyn Fn(Scenario) -> bool| scenarios.iter().any(|s| f(*s));
    let main_proxy = if needs(&|s| {
        !matches!(
            s,
            Scenario::A1Cached
                | Scenario::A32Cached
                | Scenario::A1Events
                | Scenario::A32Events
                | Scenario::A32Verify
                | Scenario::W
                | Scenario::E
                | Scenario::A32Shared
                | Scenario::A32CachedShared
                | Scenario::F1
                | Scenario::F2
        )
    }) {
        Some(BenchProxy::start(env, "proxy", &fake, servers, false, false, false).await?)
    } else {
        None
    };
    let events_proxy = if needs(&|s| matches!(s, Scenario::A1Events | Scenario::A32Events)) {
        Some(BenchProxy::start(env, "proxy-events", &fake, servers, true, false, false).await?)
    } else {
        None
    };
    let verify_proxy = if needs(&|s| matches!(s, Scenario::A32Verify | Scenario::W)) {
        Some(BenchProxy::start(env, "proxy-verify", &fake, servers, false, true, false).await?)
    } else {
        None
    };
    let fleet = if needs(&|s| {
        matches!(
            s,
            Scenario::A32Shared | Scenario::A32CachedShared | Scenario::F1 | Scenario::F2
        )
    }) {
        Some(FleetSetup::start(env, &fake, servers, needs(&|s| s == Scenario::F2)).await?)
    } else {
        None
    };
    let mut fleet_rounds: Vec<report::FleetRound> = Vec::new();
    let mut wrong_password_hashes = Vec::new();
    let proxy_cpus = main_proxy
        .as_ref()
        .or(events_proxy.as_ref())
        .or(verify_proxy.as_ref())
        .map(|p| cpus_allowed(&p.pid().to_string()))
        .unwrap_or_else(|| "-".into());
    let mut events_sent = 0usize;
    let mut cache_rounds = Vec::new();
    let mut cached_warn_lines = Vec::new();

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
                Scenario::A1
                | Scenario::A32
                | Scenario::A1Events
                | Scenario::A32Events
                | Scenario::A32Verify => {
                    let conns = if matches!(scenario, Scenario::A1 | Scenario::A1Events) {
                        1
                    } else {
                        32
                    };
                    let n = if conns == 1 { sizes.a1 } else { sizes.a32 };
                    let proxy = match scenario {
                        Scenario::A1Events | Scenario::A32Events => {
                            events_proxy.as_ref().expect("events proxy")
                        }
                        Scenario::A32Verify => verify_proxy.as_ref().expect("verify proxy"),
                        _ => main_proxy.as_ref().expect("main proxy"),
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
                Scenario::W => {
                    let proxy = verify_proxy.as_ref().expect("verify proxy");
                    let via = proxy.route();
                    let before = proxy.password_checks_hashed().await;
                    let m = keep_alive(
                        env,
                        &via,
                        Req::WrongPassword,
                        32,
                        sizes.w,
                        32,
                        Some(proxy),
                        &fake,
                        &tag,
                    )
                    .await?;
                    let after = proxy.password_checks_hashed().await;
                    // The warm-up's 32 are in the count too: they are part of the flood.
                    if let (Some(b), Some(a)) = (before, after) {
                        wrong_password_hashes.push((a - b, sizes.w + 32));
                    }
                    Sample {
                        direct: None,
                        proxy: m,
                        e: None,
                    }
                }
                Scenario::A1Cached | Scenario::A32Cached | Scenario::A32CachedShared => {
                    // A fresh proxy per round, the token cache on (the default): its cache
                    // starts empty, so the cold start is the round's first login.
                    let proxy = if scenario == Scenario::A32CachedShared {
                        let f = fleet.as_ref().expect("fleet");
                        let (url, name, prefix) =
                            (f.redis.url(), format!("gs-c{round}"), format!("r{round}:"));
                        let replica = proxy::Replica {
                            redis: &url,
                            name: &name,
                            ca_from: None,
                            token_cache: true,
                            prefix: Some(&prefix),
                        };
                        BenchProxy::start_replica(env, &fake, servers, &replica).await?
                    } else {
                        BenchProxy::start(
                            env,
                            &format!("proxy-cached-r{round}"),
                            &fake,
                            servers,
                            false,
                            false,
                            true,
                        )
                        .await?
                    };
                    let via = proxy.route();
                    let fake_before = fake.counts().tokens;
                    let cold = scenarios::cold_start(
                        &via,
                        COLD_START_CLIENTS,
                        COLD_START_LOGINS,
                        &proxy,
                        &fake,
                    )
                    .await?;
                    let (conns, n) = if scenario == Scenario::A1Cached {
                        (1, sizes.a1)
                    } else {
                        (32, sizes.a32)
                    };
                    let warm = (n / 10).clamp(conns, 2_000);
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
                    let p =
                        || scenarios::cached_logins(env, &via, conns, n, warm, &proxy, &fake, &tag);
                    let sample = both(proxy_first, d, p).await?;
                    // The direct side's token requests are exactly its warm-up and its run
                    // (each answered and checked); the rest came from this proxy.
                    let direct_tokens = (warm.max(conns) + n) as u64;
                    cache_rounds.push(report::CacheRound {
                        scenario,
                        cold,
                        logins: COLD_START_LOGINS + warm.max(conns) + n,
                        upstream_tokens: (fake.counts().tokens - fake_before)
                            .saturating_sub(direct_tokens),
                        misses: proxy.counter("grantshift_token_cache_misses_total").await,
                    });
                    cached_warn_lines.extend(proxy.stop().await?);
                    sample
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
                Scenario::A32Shared => {
                    let f = fleet.as_ref().expect("fleet");
                    let n = sizes.a32;
                    let warm = (n / 10).clamp(32, 2_000);
                    let via = f.a.route();
                    let d =
                        || keep_alive(env, &direct, Req::TokenDirect, 32, n, warm, None, &fake, "");
                    let p =
                        || keep_alive(env, &via, Req::Token, 32, n, warm, Some(&f.a), &fake, &tag);
                    both(proxy_first, d, p).await?
                }
                Scenario::F1 | Scenario::F2 => {
                    let f = fleet.as_ref().expect("fleet");
                    let (lb, replicas): (&HaProxy, Vec<&BenchProxy>) = match scenario {
                        Scenario::F1 => (&f.lb1, vec![&f.a]),
                        _ => {
                            let (lb2, b) = f.two.as_ref().expect("the two-replica fleet");
                            (lb2, vec![&f.a, b])
                        }
                    };
                    let n = sizes.a32;
                    let warm = (n / 10).clamp(32, 2_000);
                    let via = f.a.route_via(lb.addr());
                    let others: Vec<u32> =
                        [lb.pid(), f.redis.pid()].into_iter().flatten().collect();
                    let sessions_before: Vec<u64> =
                        lb.servers().iter().map(|s| s.sessions_total).collect();
                    let mut others_cpu = 0.0;
                    let d =
                        || keep_alive(env, &direct, Req::TokenDirect, 32, n, warm, None, &fake, "");
                    let (via, replicas, others, fake, cpu) =
                        (&via, &replicas, &others, &fake, &mut others_cpu);
                    let p = move || async move {
                        let (m, o) =
                            scenarios::fleet_logins(env, via, 32, n, warm, replicas, others, fake)
                                .await?;
                        *cpu = o;
                        Ok(m)
                    };
                    let sample = both(proxy_first, d, p).await?;
                    let sessions: Vec<u64> = lb
                        .servers()
                        .iter()
                        .zip(sessions_before.iter().chain(std::iter::repeat(&0)))
                        .map(|(s, b)| s.sessions_total - b)
                        .collect();
                    fleet_rounds.push(report::FleetRound {
                        scenario,
                        others_cpu,
                        logins: n,
                        sessions,
                    });
                    sample
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

    let mut warn_lines = cached_warn_lines;
    let fleet_rss = match fleet {
        Some(f) => {
            let (rss, lines) = f.stop().await?;
            warn_lines.extend(lines);
            rss
        }
        None => Vec::new(),
    };
    let mut events_checked = None;
    for proxy in [main_proxy, events_proxy, verify_proxy]
        .into_iter()
        .flatten()
    {
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
        fake_upstream_conns: fake.counts().connections,
        wrong_password_hashes,
        cache_rounds,
        upstream,
        nginx_cpus,
        nginx_log,
        fleet_rounds,
        fleet_rss,
    })
}

/// The fleet of A32s, F1 and F2: a `redis-server`, replica `gs-a` behind HAProxy `lb1`, and
/// (for F2) replica `gs-b` on `gs-a`'s CA with both behind a second HAProxy.
struct FleetSetup {
    redis: testkit::redis::RedisServer,
    a: BenchProxy,
    lb1: HaProxy,
    two: Option<(HaProxy, BenchProxy)>,
}

impl FleetSetup {
    async fn start(
        env: &Env,
        fake: &testkit::fast_salesforce::FastSalesforce,
        servers: Servers,
        two: bool,
    ) -> Result<FleetSetup, String> {
        // Started after pin_self: Redis and HAProxy inherit CPU 1, the load side's.
        let redis = testkit::redis::RedisServer::start();
        let url = redis.url();
        let replica = |name, ca_from| proxy::Replica {
            redis: &url,
            name,
            ca_from,
            token_cache: false,
            prefix: None,
        };
        let a = BenchProxy::start_replica(env, fake, servers, &replica("gs-a", None)).await?;
        let lb1 = HaProxy::start(&[a.as_server("gs-a")]).await;
        lb1.wait_all_up(Duration::from_secs(20)).await;
        let two = if two {
            let b = BenchProxy::start_replica(env, fake, servers, &replica("gs-b", Some(a.dir())))
                .await?;
            let lb2 = HaProxy::start(&[a.as_server("gs-a"), b.as_server("gs-b")]).await;
            lb2.wait_all_up(Duration::from_secs(20)).await;
            Some((lb2, b))
        } else {
            None
        };
        Ok(FleetSetup { redis, a, lb1, two })
    }

    /// Each replica's RSS (KiB) now, then stop them; the WARN/ERROR lines they logged.
    async fn stop(self) -> Result<(Vec<(String, u64)>, Vec<String>), String> {
        let mut rss = vec![("gs-a".to_string(), self.a.rss_kib()?)];
        if let Some((_, b)) = &self.two {
            rss.push(("gs-b".to_string(), b.rss_kib()?));
        }
        let mut lines = self.a.stop().await?;
        if let Some((_, b)) = self.two {
            lines.extend(b.stop().await?);
        }
        drop(self.redis);
        Ok((rss, lines))
    }
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
