//! The proxy under test: the release binary, built (`cargo build --release --bin grantshift`),
//! configured against the fakes or nginx, started pinned to CPU 0, scraped for its upstream
//! connection counters, and stopped.

use crate::scenarios::{client_tls, Route, Servers};
use crate::{
    Env, Pinning, BLOB_HOST, CONN_HOST, ECHO_HOST, MY_DOMAIN, PASSWORD, STEP_TIMEOUT, USERNAME,
};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use testkit::fast_salesforce::FastSalesforce;
use testkit::{LoadConfig, ProxyProcess, LOGIN_HOST};
use tokio_rustls::TlsConnector;

/// `cargo build --release --bin grantshift`: the production binary, without the test-only
/// features the bench build of the crate carries.
pub fn build_proxy() -> Result<PathBuf, String> {
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
    let bin = crate::target_dir().join("release").join("grantshift");
    if !bin.is_file() {
        return Err(format!(
            "no binary at {} after cargo build --release; pass --proxy-bin PATH",
            bin.display()
        ));
    }
    Ok(bin)
}

/// One running proxy: its process (JSON log drained into `<dir>/proxy.log`), its ports and the
/// client TLS configs that trust the CA it created.
pub struct BenchProxy {
    process: ProxyProcess,
    addr: SocketAddr,
    /// Its admin server (`/metrics`).
    admin: SocketAddr,
    dir: PathBuf,
    /// Runs with the events file on.
    pub events: bool,
    tls: TlsConnector,
    tls_fresh: TlsConnector,
}

impl BenchProxy {
    pub async fn start(
        env: &Env,
        name: &str,
        fake: &FastSalesforce,
        servers: Servers,
        events: bool,
        // Check every upgraded login's password (a configured `password_hash`, `required`).
        verify: bool,
        // `[token_cache] enabled`: on only for A32c. Every other scenario measures the upgrade
        // path itself, which the cache (on by default) would answer from memory after the
        // first login.
        token_cache: bool,
    ) -> Result<BenchProxy, String> {
        BenchProxy::launch(
            env,
            name,
            fake,
            servers,
            (events, verify, token_cache),
            None,
        )
        .await
    }

    /// A replica of a fleet (A32s, A32cs, F1, F2): as the main proxy (no events file, no
    /// password check, the token cache as `replica` says) plus `[cluster]` on `replica.redis` with the fleet key in its
    /// environment, and, with `replica.ca_from`, the CA files of another replica (copied into
    /// its directory before it starts: one CA for the fleet).
    pub async fn start_replica(
        env: &Env,
        fake: &FastSalesforce,
        servers: Servers,
        replica: &Replica<'_>,
    ) -> Result<BenchProxy, String> {
        let name = format!("replica-{}", replica.name);
        let flags = (false, false, replica.token_cache);
        BenchProxy::launch(env, &name, fake, servers, flags, Some(replica)).await
    }

    async fn launch(
        env: &Env,
        name: &str,
        fake: &FastSalesforce,
        servers: Servers,
        (events, verify, token_cache): (bool, bool, bool),
        replica: Option<&Replica<'_>>,
    ) -> Result<BenchProxy, String> {
        let dir = env.dir.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        // The proxy's ports: picked here (the proxy logs them only at INFO, and runs at WARN).
        // The admin server: only its /metrics, scraped around measured runs.
        let [addr, admin] = pick_ports()?;
        let connect_to = [
            (LOGIN_HOST, servers.fake_main),
            (MY_DOMAIN, servers.fake_main),
            (CONN_HOST, servers.fake_close),
            (BLOB_HOST, servers.blob),
            (ECHO_HOST, servers.echo),
        ]
        .map(|(host, addr)| (format!("{host}:443"), addr));
        // The bench user's verifier, as `grantshift hash-password` makes it (OWASP cost).
        let credential_lines = if verify {
            let hash = grantshift::password::Verifier::hash(
                &grantshift::password::Password::new(PASSWORD),
                grantshift::password::Cost::OWASP,
            );
            format!(
                "verify_password = \"required\"\npassword_hash = \"{}\"\n",
                hash.as_phc()
            )
        } else {
            String::new()
        };
        let config = LoadConfig {
            generated_by: "benches/e2e",
            listen: &addr.to_string(),
            admin_listen: &admin.to_string(),
            max_connections: 20000,
            shutdown_grace: "2s",
            extra_root_cert: fake.ca_pem_path(),
            connect_to: &connect_to,
            username: USERNAME,
            my_domain: MY_DOMAIN,
            events: if events { "events.jsonl" } else { "" },
            credential_lines: &credential_lines,
        };
        let config_path = dir.join("grantshift.toml");
        let mut config = format!(
            "{}\n[token_cache]\nenabled = {token_cache}\n",
            config.render()
        );
        if let Some(replica) = replica {
            config.push_str(&format!(
                "\n[cluster]\nredis = \"{}\"\nreplica = \"{}\"\n",
                replica.redis, replica.name
            ));
            if let Some(prefix) = replica.prefix {
                config.push_str(&format!("prefix = \"{prefix}\"\n"));
            }
            if let Some(from) = replica.ca_from {
                for file in ["grantshift-ca.pem", "grantshift-ca.key"] {
                    std::fs::copy(from.join(file), dir.join(file))
                        .map_err(|e| format!("copying the fleet's CA file {file}: {e}"))?;
                }
            }
        }
        std::fs::write(&config_path, config).map_err(|e| format!("writing the config: {e}"))?;

        let mut cmd = if env.pinning == Pinning::Pinned {
            let mut c = Command::new("taskset");
            c.args(["-c", "0"]).arg(&env.bin);
            c
        } else {
            Command::new(&env.bin)
        };
        testkit::clean_env(&mut cmd)
            .current_dir(&dir)
            .arg("run")
            .arg("-c")
            .arg(&config_path)
            .args(["--log-format", "json"])
            .env("RUST_LOG", "warn");
        if replica.is_some() {
            cmd.env(
                grantshift::config::CLUSTER_KEY_ENV,
                testkit::redis::TEST_CLUSTER_KEY,
            );
        }
        let mut process = ProxyProcess::spawn(cmd, &dir.join("proxy.log"))?;
        let pid = process.pid();

        // Ready when a CONNECT through it reaches the echo server.
        let waited = Instant::now();
        loop {
            if let Some(status) = process.try_exited()? {
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Err(format!(
                    "the proxy exited with {status} before serving; its log:\n{}",
                    process.tail()
                ));
            }
            if probe(addr).await.is_ok() {
                break;
            }
            if waited.elapsed() > STEP_TIMEOUT {
                return Err(format!(
                    "the proxy did not answer a CONNECT on {addr} within {}s: {}; log:\n{}",
                    STEP_TIMEOUT.as_secs(),
                    probe(addr).await.err().unwrap_or_default(),
                    process.tail()
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
        Ok(BenchProxy {
            process,
            addr,
            admin,
            dir,
            events,
            tls: client_tls(&ca_pem, true)?,
            tls_fresh: client_tls(&ca_pem, false)?,
        })
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Its directory (config, CA files, log).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// As an HAProxy server: its proxy port, checked on its admin server's `/readyz`.
    pub fn as_server(&self, name: &str) -> testkit::haproxy::Server {
        testkit::haproxy::Server {
            name: name.into(),
            proxy: self.addr,
            admin: self.admin,
        }
    }

    /// Its route, but through `front` (HAProxy in front of it and other replicas with the
    /// same CA).
    pub fn route_via(&self, front: SocketAddr) -> Route {
        Route::Proxy {
            addr: front,
            tls: self.tls.clone(),
            tls_fresh: self.tls_fresh.clone(),
        }
    }

    /// Resident set size now (VmRSS), KiB.
    pub fn rss_kib(&self) -> Result<u64, String> {
        Ok(testkit::process::proc_status(&self.pid().to_string())?.rss_kib)
    }

    pub fn route(&self) -> Route {
        Route::Proxy {
            addr: self.addr,
            tls: self.tls.clone(),
            tls_fresh: self.tls_fresh.clone(),
        }
    }

    /// `grantshift_upstream_connections_total` by protocol, from the admin server's
    /// `/metrics`; `None` if it cannot be read or has no such counter.
    pub async fn upstream_connections(&self) -> Option<BTreeMap<String, u64>> {
        let text = testkit::admin::try_admin_get(self.admin, "/metrics", STEP_TIMEOUT)
            .await
            .ok()?;
        let metrics = testkit::admin::parse_openmetrics(&text).ok()?;
        let mut by_protocol = BTreeMap::new();
        for (labels, value) in metrics.series("grantshift_upstream_connections_total") {
            let protocol = labels.into_iter().find(|(name, _)| name == "protocol")?.1;
            by_protocol.insert(protocol, value as u64);
        }
        (!by_protocol.is_empty()).then_some(by_protocol)
    }

    /// A counter without labels from `/metrics` (e.g. `grantshift_token_cache_misses_total`);
    /// `None` if it cannot be read or has no such counter.
    pub async fn counter(&self, name: &str) -> Option<u64> {
        let text = testkit::admin::try_admin_get(self.admin, "/metrics", STEP_TIMEOUT)
            .await
            .ok()?;
        let metrics = testkit::admin::parse_openmetrics(&text).ok()?;
        metrics.value(name, &[]).map(|v| v as u64)
    }

    /// The token cache's counters so far (`grantshift_token_cache_{hits,misses,waits}_total`).
    pub async fn cache_counters(&self) -> CacheCounters {
        CacheCounters {
            hits: self.counter("grantshift_token_cache_hits_total").await,
            misses: self.counter("grantshift_token_cache_misses_total").await,
            waits: self.counter("grantshift_token_cache_waits_total").await,
        }
    }

    /// Argon2 runs checking passwords so far (`grantshift_password_hashes_total{purpose="check"}`).
    pub async fn password_checks_hashed(&self) -> Option<u64> {
        let text = testkit::admin::try_admin_get(self.admin, "/metrics", STEP_TIMEOUT)
            .await
            .ok()?;
        let metrics = testkit::admin::parse_openmetrics(&text).ok()?;
        metrics
            .value("grantshift_password_hashes_total", &[("purpose", "check")])
            .map(|v| v as u64)
    }

    /// Wait (bounded) until the events file has `expected` lines; all must be `upgraded`.
    pub async fn count_upgraded_events(&self, expected: usize) -> Result<usize, String> {
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

    /// SIGTERM and wait for the exit (status 0); returns the WARN/ERROR lines it logged.
    pub async fn stop(mut self) -> Result<Vec<String>, String> {
        let status = self.process.terminate(Duration::from_secs(10)).await?;
        if !status.success() {
            return Err(format!("the proxy exited with {status}"));
        }
        Ok(self.process.log().warn_error)
    }
}

/// A fleet replica's part of its config: `[cluster] redis` and `replica`, and where its CA
/// files come from (`None`: it creates the CA, as the first replica).
pub struct Replica<'a> {
    pub redis: &'a str,
    pub name: &'a str,
    pub ca_from: Option<&'a std::path::Path>,
    /// `[token_cache] enabled` (A32cs; off for A32s, F1, F2).
    pub token_cache: bool,
    /// `[cluster] prefix` (A32cs: one per round, so the fleet's cache starts empty).
    pub prefix: Option<&'a str>,
}

/// The token cache's counters at one moment, or their growth between two (`None`: not on
/// `/metrics`).
#[derive(Clone, Copy, Debug, Default)]
pub struct CacheCounters {
    pub hits: Option<u64>,
    pub misses: Option<u64>,
    pub waits: Option<u64>,
}

impl CacheCounters {
    /// What grew from `before` to `self`.
    pub fn since(self, before: CacheCounters) -> CacheCounters {
        let d = |a: Option<u64>, b: Option<u64>| Some(a?.saturating_sub(b?));
        CacheCounters {
            hits: d(self.hits, before.hits),
            misses: d(self.misses, before.misses),
            waits: d(self.waits, before.waits),
        }
    }
}

/// What reached the upstream during one run of logins through a proxy with the token cache on.
#[derive(Clone, Copy, Debug)]
pub struct CacheRun {
    pub logins: usize,
    /// Connections they came over, all sending at once.
    pub clients: usize,
    /// Token requests the fake Salesforce answered meanwhile (behind nginx or itself).
    pub upstream_tokens: u64,
    /// grantshift's token cache counters over the same time.
    pub counters: CacheCounters,
}

/// `N` distinct free ports on 127.0.0.1 (for a child process to bind).
pub fn pick_ports<const N: usize>() -> Result<[SocketAddr; N], String> {
    let listeners = (0..N)
        .map(|_| std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| format!("picking a port: {e}"))?;
    let addrs = listeners
        .iter()
        .map(|l| l.local_addr())
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| format!("picking a port: {e}"))?;
    Ok(addrs.try_into().expect("N addresses"))
}

/// The proxy's upstream connection counters (see [`BenchProxy::upstream_connections`]);
/// `None` for a direct run.
pub async fn upstream_connections(proxy: Option<&BenchProxy>) -> Option<BTreeMap<String, u64>> {
    proxy?.upstream_connections().await
}

/// Ready: a CONNECT to the echo host through the proxy at `addr` echoes.
async fn probe(addr: SocketAddr) -> Result<(), String> {
    let mut tcp = testkit::try_tunnel(addr, &format!("{ECHO_HOST}:443")).await?;
    testkit::try_echo(&mut tcp, b"ping\n").await
}
