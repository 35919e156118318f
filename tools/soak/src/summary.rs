//! The summary printed at the end of a run, passed or failed: what was reached, the proxy's
//! memory and fds, latencies, kernel counters, and the proxy's exit.

use crate::Args;
use std::collections::BTreeMap;
use std::time::Duration;

/// What the run found out so far (filled in as it goes, so a failure still reports it).
pub struct Summary {
    pub phase: String,
    pub proxy_bin: String,
    pub proxy_pid: Option<u32>,
    pub fd_limit: Option<u64>,
    pub tunnels_target: usize,
    pub tunnels_open: usize,
    pub tunnels_rechecked: Option<usize>,
    pub tunnel_open_secs: Option<f64>,
    pub logins_target: usize,
    pub concurrency: usize,
    pub logins_ok: usize,
    pub logins_err: usize,
    pub login_conns: usize,
    pub login_secs: Option<f64>,
    pub latencies: Vec<u32>,
    pub upstream_conns: Option<u64>,
    pub events_upgraded: Option<usize>,
    pub metrics_upgraded: Option<usize>,
    pub client_errors: usize,
    pub baseline_rss_kib: Option<u64>,
    pub baseline_fds: Option<usize>,
    pub tunnels_rss_kib: Option<u64>,
    pub tunnels_fds: Option<usize>,
    pub logins_rss_kib: Option<u64>,
    pub peak_hwm_kib: Option<u64>,
    pub peak_fds: Option<usize>,
    pub fds_pool_warm: Option<usize>,
    pub fds_after_close: Option<usize>,
    pub rss_after_close_kib: Option<u64>,
    pub close_secs: Option<f64>,
    pub proxy_exit: Option<String>,
    pub shutdown_secs: Option<f64>,
    pub warn_lines: usize,
    /// System-wide kernel TCP counters, increase during the run.
    pub kernel: BTreeMap<String, u64>,
    pub deadline_secs: u64,
    pub elapsed: Duration,
}

impl Summary {
    pub fn new(args: &Args) -> Summary {
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

    pub fn print(&self, error: Option<&String>, dir: &str) {
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
