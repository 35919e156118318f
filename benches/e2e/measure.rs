//! Measuring: pinning (`taskset`), CPU time from `/proc` (the proxy's, this process's and
//! nginx's, and each core's busy time), `perf record` / `perf stat` of the proxy, and what one
//! measured run produced.

use crate::proxy::BenchProxy;
use crate::Env;
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Pin every thread of this process to `cpu` (threads created later inherit it).
pub fn pin_self(cpu: usize) -> Result<(), String> {
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

pub fn cpus_allowed(pid: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap_or("?")
        .trim()
        .to_string()
}

pub fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// One round of one scenario.
pub struct Sample {
    pub direct: Option<Measured>,
    pub proxy: Measured,
    /// E: RSS growth per tunnel (KiB) and what it was measured from.
    pub e: Option<IdleTunnels>,
}

// ---------------------------------------------------------------------------------------------
// Measuring: CPU time from /proc

/// What one measured run produced.
#[derive(Clone, Debug, Default)]
pub struct Measured {
    pub secs: f64,
    /// Requests, connections, tunnels or bytes.
    pub ops: u64,
    /// Per-operation latencies, sorted (ns).
    pub latencies_ns: Vec<u64>,
    /// The proxy's user+sys CPU seconds (proxy runs only).
    pub proxy_cpu: f64,
    /// This process's (client + fakes, on CPU 1) user+sys CPU seconds.
    pub bench_cpu: f64,
    /// Busy seconds of CPU 0 and CPU 1 from /proc/stat (everything, ours included).
    pub cpu_busy: [f64; 2],
    /// Upstream connections the proxy opened (proxy runs of A, B and C; `None` also when its
    /// `/metrics` has no such counter).
    pub upstream_conns: Option<UpstreamConns>,
    /// A32c: what reached the upstream during the measured run, and the cache's counters.
    pub cache: Option<crate::proxy::CacheRun>,
}

/// The proxy's upstream connections by protocol (`h2`, `http/1.1`), from
/// `grantshift_upstream_connections_total`.
#[derive(Clone, Debug)]
pub struct UpstreamConns {
    /// Opened during the measured run.
    pub opened: BTreeMap<String, u64>,
    /// Opened since the proxy started, at the end of the run.
    pub in_all: BTreeMap<String, u64>,
}

impl Measured {
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_ns.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies_ns.len() - 1) as f64 * p).round() as usize;
        self.latencies_ns[i] as f64 / 1e6
    }

    pub fn rate(&self) -> f64 {
        self.ops as f64 / self.secs.max(1e-9)
    }
}

#[derive(Clone, Copy)]
pub struct Snapshot {
    pub at: Instant,
    pub proxy_ticks: u64,
    pub self_ticks: u64,
    pub cpu_busy: [u64; 2],
}

/// `self_ticks` is this process plus nginx (when it runs): both are the load side, on CPU 1.
/// `proxy`: the proxy's pid, or every replica's of a fleet (their ticks summed); empty for a
/// direct run.
pub fn snapshot(env: &Env, proxy: &[u32]) -> Result<Snapshot, String> {
    let mut proxy_ticks = 0;
    for pid in proxy {
        proxy_ticks += process_ticks(&pid.to_string())?;
    }
    Ok(Snapshot {
        at: Instant::now(),
        proxy_ticks,
        self_ticks: process_ticks("self")?
            + match env.nginx_pid.get() {
                Some(pid) => process_ticks(&pid.to_string())?,
                None => 0,
            },
        cpu_busy: cpu_busy_ticks(),
    })
}

pub fn measured(
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
        cache: None,
    }
}

/// utime + stime of a process (all its threads, dead ones included), in clock ticks.
pub fn process_ticks(pid: &str) -> Result<u64, String> {
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
pub fn cpu_busy_ticks() -> [u64; 2] {
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

/// `perf record` on the proxy for the measured part of a run (`--perf-dir`).
pub struct Perf(Vec<Child>);

impl Perf {
    /// `perf record` (sampled call graphs, `<tag>.data`) and `perf stat` (context switches,
    /// migrations, page faults: `<tag>.stat`) on the proxy, both run on CPU 1.
    pub async fn start(env: &Env, proxy: Option<&BenchProxy>, tag: &str) -> Result<Perf, String> {
        let (Some(dir), Some(proxy)) = (&env.perf_dir, proxy) else {
            return Ok(Perf(Vec::new()));
        };
        let pid = proxy.pid().to_string();
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

    pub fn stop(self) {
        for mut child in self.0 {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

/// Scenario E's result.
#[derive(Clone)]
pub struct IdleTunnels {
    pub tunnels: usize,
    pub baseline_kib: u64,
    pub with_tunnels_kib: u64,
    pub baseline_fds: usize,
    pub with_tunnels_fds: usize,
    pub after_close_kib: u64,
    /// Opening the tunnels: rate and the proxy's CPU for it.
    pub opening: Measured,
}

impl IdleTunnels {
    pub fn kib_per_tunnel(&self) -> f64 {
        (self.with_tunnels_kib as f64 - self.baseline_kib as f64) / self.tunnels.max(1) as f64
    }
}

/// Connections opened between two readings of the counters, by protocol.
pub fn opened(
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
