//! The report: medians over rounds, the verdict against the targets, the table (stdout and
//! `target/bench-e2e-<upstream>.md`) and the notes under it.

use crate::measure::{IdleTunnels, Measured, Sample};
use crate::proxy::CacheRun;
use crate::{Env, Pinning, Scenario, Sizes};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// What a run produced, ready to render.
pub struct Report {
    pub samples: Vec<(Scenario, Vec<Sample>)>,
    pub proxy_cpus: String,
    pub warn_lines: Vec<String>,
    pub events_checked: Option<(usize, usize)>,
    pub fake_upstream_conns: u64,
    /// Scenario W, per round: (Argon2 runs for checks, wrong passwords sent).
    pub wrong_password_hashes: Vec<(u64, usize)>,
    /// Scenario A32c, per round.
    pub cache_rounds: Vec<CacheRound>,
    /// What answered for the Salesforce hosts, for the heading.
    pub upstream: String,
    /// nginx's Cpus_allowed_list (`--upstream nginx-*`).
    pub nginx_cpus: Option<String>,
    /// nginx's error.log lines (all at `warn` or above), when it ran.
    pub nginx_log: Option<Vec<String>>,
    /// F1 and F2, per round.
    pub fleet_rounds: Vec<FleetRound>,
    /// Each fleet replica's RSS (KiB) after the runs.
    pub fleet_rss: Vec<(String, u64)>,
}

/// One round of F1 or F2.
pub struct FleetRound {
    pub scenario: Scenario,
    /// HAProxy's and Redis's CPU seconds over the measured run.
    pub others_cpu: f64,
    pub logins: usize,
    /// Connections HAProxy sent to each replica in the round (warm-up included).
    pub sessions: Vec<u64>,
}

/// One round of A32c on its own fresh proxy.
pub struct CacheRound {
    /// A1c or A32c.
    pub scenario: Scenario,
    /// The cold start: many logins for one key at once on the empty cache.
    pub cold: CacheRun,
    /// Logins through this proxy in the round: cold start, warm-up, measured run.
    pub logins: usize,
    /// Token requests the fake answered for this proxy in the round (the direct side's,
    /// known exactly, subtracted).
    pub upstream_tokens: u64,
    /// `grantshift_token_cache_misses_total` at the end of the round (since it started).
    pub misses: Option<u64>,
}

/// Per round values of one scenario, as the table shows them.
pub struct RoundFigures {
    pub direct_rate: Option<f64>,
    pub proxy_rate: f64,
    pub direct_p50: Option<f64>,
    pub direct_p99: Option<f64>,
    pub proxy_p50: f64,
    pub proxy_p99: f64,
    /// µs per request / per connection, ms per GiB, or KiB per tunnel.
    pub cost: f64,
    /// Load on each core during the proxy run, in % of one core: the proxy on CPU 0, this
    /// process on CPU 1, and everything else on either.
    pub proxy_pct: f64,
    pub client_pct_direct: Option<f64>,
    pub client_pct_proxy: f64,
    pub others_pct: [f64; 2],
    /// CPU per operation (µs; per MiB for D, per tunnel opened for E) of the proxy, and of
    /// this process (client + fakes) during the proxy run: whichever is larger bounds the
    /// throughput, both having one core.
    pub proxy_us_per_op: f64,
    pub client_us_per_op: f64,
}

pub fn figures(scenario: Scenario, s: &Sample, pinned: bool) -> RoundFigures {
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
        // CPU seconds per 10,000 wrong passwords.
        Scenario::W => p.proxy_cpu * 10_000.0 / p.ops.max(1) as f64,
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

pub fn median(mut v: Vec<f64>) -> f64 {
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

pub fn median_opt(v: Vec<Option<f64>>) -> Option<f64> {
    if v.iter().all(Option::is_none) {
        return None;
    }
    Some(median(v.into_iter().flatten().collect()))
}

/// (target text, met?) for a row.
pub fn verdict(
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
        Scenario::A32Verify => ("CPU within 10% of A32 (below)".into(), "see below".into()),
        Scenario::A1Cached => (
            "p50 < direct".into(),
            judge(vec![("p50", added_p50.is_some_and(|a| a < 0.0))]),
        ),
        Scenario::A32Cached => (
            "≤ 15 µs/hit, p50 < direct".into(),
            judge(vec![
                ("CPU", cost <= 15.0),
                ("p50", added_p50.is_some_and(|a| a < 0.0)),
            ]),
        ),
        Scenario::W => ("bounded CPU (below)".into(), "see below".into()),
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
        Scenario::A32Shared | Scenario::A32CachedShared | Scenario::F1 | Scenario::F2 => {
            ("none: compared below".into(), "—".into())
        }
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

pub fn cost_text(scenario: Scenario, cost: f64) -> String {
    match scenario {
        Scenario::C => format!("{cost:.0} µs/conn"),
        Scenario::D => format!("{cost:.0} ms/GiB"),
        Scenario::E => format!("{cost:.1} KiB/tunnel"),
        Scenario::L1 => format!("{cost:.1} µs/round trip"),
        Scenario::W => format!("{cost:.2} s per 10,000"),
        _ => format!("{cost:.1} µs/req"),
    }
}

/// The proxy's upstream connections opened per measured run, and in all since it started:
/// `0 (in all: 1 h2)`, one per round when they differ; `-` where the proxy's `/metrics` had
/// no counter.
pub fn upstream_conns_text(scenario: Scenario, samples: &[Sample]) -> String {
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

pub fn rate_text(scenario: Scenario, rate: f64) -> String {
    match scenario {
        Scenario::D => format!("{rate:.0} MB/s"),
        Scenario::E => format!("{rate:.0} opened/s"),
        _ => format!("{rate:.0}"),
    }
}

pub fn spread(v: &[f64]) -> String {
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
    pub fn render(
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
             Sizes per round: A1 {} req, A32 {} req, W {} req, B32 {} req, C {} conns, D {} MiB, E {} tunnels, L1 {} round trips. Run took {:.0} s.\n",
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
            sizes.w,
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
        let cost_of = |wanted: Scenario| {
            details
                .iter()
                .find(|(s, ..)| *s == wanted)
                .map(|(_, _, costs, ..)| costs.clone())
        };
        if let (Some(off), Some(on)) = (cost_of(Scenario::A32), cost_of(Scenario::A32Verify)) {
            let per_round: Vec<String> = off
                .iter()
                .zip(&on)
                .map(|(off, on)| format!("{:.2}", on / off))
                .collect();
            let ratio = median(on.clone()) / median(off.clone());
            let _ = writeln!(
                w,
                "\nA32v / A32 proxy CPU per request (same run): {ratio:.2} (per round: {}); target ≤ 1.10: {}.",
                per_round.join(", "),
                if ratio <= 1.10 { "met" } else { "**not met**" }
            );
        }
        if let (Some(off), Some(on)) = (cost_of(Scenario::A32), cost_of(Scenario::A32Cached)) {
            let per_round: Vec<String> = off
                .iter()
                .zip(&on)
                .map(|(off, on)| format!("{:.2}", on / off))
                .collect();
            let _ = writeln!(
                w,
                "\nA32c / A32 proxy CPU per login (same run): {:.2} (per round: {}).",
                median(on.clone()) / median(off.clone()),
                per_round.join(", ")
            );
        }
        if let (Some(off), Some(on)) = (cost_of(Scenario::A32), cost_of(Scenario::A32Shared)) {
            let (off, on) = (median(off.clone()), median(on.clone()));
            let _ = writeln!(
                w,
                "\nA32s / A32 proxy CPU per login (same run): {:.2}: the shared state (events stream, fleet login-rate counters) adds {:+.1} µs per login.",
                on / off,
                on - off
            );
        }
        if let (Some(off), Some(on)) = (
            cost_of(Scenario::A32Cached),
            cost_of(Scenario::A32CachedShared),
        ) {
            let (off, on) = (median(off.clone()), median(on.clone()));
            let _ = writeln!(
                w,
                "\nA32cs / A32c proxy CPU per cache hit (same run): {:.2}: asking Redis whether the session is still the fleet's adds {:+.1} µs per hit.",
                on / off,
                on - off
            );
        }
        let rate_of = |wanted: Scenario| {
            details
                .iter()
                .find(|(s, ..)| *s == wanted)
                .map(|(.., samples)| {
                    median(
                        samples
                            .iter()
                            .map(|s| s.proxy.ops as f64 / s.proxy.secs.max(1e-9))
                            .collect(),
                    )
                })
        };
        if let (Some(one), Some(two)) = (rate_of(Scenario::F1), rate_of(Scenario::F2)) {
            let _ = writeln!(
                w,
                "\nF2 / F1 fleet throughput (same run): {:.2} ({two:.0} vs {one:.0} logins/s; both replicas share CPU 0, HAProxy and Redis CPU 1 with the client).",
                two / one
            );
        }
        for scenario in [Scenario::F1, Scenario::F2] {
            let rounds: Vec<&FleetRound> = self
                .fleet_rounds
                .iter()
                .filter(|r| r.scenario == scenario)
                .collect();
            if rounds.is_empty() {
                continue;
            }
            let per_login = median(
                rounds
                    .iter()
                    .map(|r| r.others_cpu * 1e6 / r.logins.max(1) as f64)
                    .collect(),
            );
            let sessions: Vec<String> =
                rounds.iter().map(|r| format!("{:?}", r.sessions)).collect();
            let _ = writeln!(
                w,
                "{}: HAProxy + Redis CPU {per_login:.1} µs per login; connections per replica per round {}.",
                scenario.key(),
                sessions.join(", ")
            );
        }
        if !self.fleet_rss.is_empty() {
            let rss: Vec<String> = self
                .fleet_rss
                .iter()
                .map(|(name, kib)| format!("{name} {:.1} MiB", *kib as f64 / 1024.0))
                .collect();
            let _ = writeln!(w, "Fleet replicas' RSS after the runs: {}.", rss.join(", "));
        }
        let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
        let measured_cache = |wanted: Scenario| {
            details
                .iter()
                .find(|(s, ..)| *s == wanted)
                .map(|(.., samples)| samples.iter().map(|s| s.proxy.cache).collect::<Vec<_>>())
                .unwrap_or_default()
        };
        let mut round_of = BTreeMap::new();
        for r in &self.cache_rounds {
            let i = round_of.entry(r.scenario.key()).or_insert(0usize);
            *i += 1;
            let c = &r.cold;
            let measured = match measured_cache(r.scenario).get(*i - 1).copied().flatten() {
                Some(m) => format!(
                    "; measured run: {} logins from {} clients, {} token requests reached the upstream (cache hits {}, misses {}, waits {})",
                    m.logins,
                    m.clients,
                    m.upstream_tokens,
                    opt(m.counters.hits),
                    opt(m.counters.misses),
                    opt(m.counters.waits)
                ),
                None => String::new(),
            };
            let _ = writeln!(
                w,
                "\n{} round {}: cold start on a fresh proxy, {} logins for one key from {} clients at once: **{} token request(s) reached the upstream** \
                 (cache hits {}, misses {}, waits {}){measured}; the whole round, {} logins: {} upstream token request(s) \
                 (grantshift_token_cache_misses_total {}).",
                r.scenario.key(),
                i,
                c.logins,
                c.clients,
                c.upstream_tokens,
                opt(c.counters.hits),
                opt(c.counters.misses),
                opt(c.counters.waits),
                r.logins,
                r.upstream_tokens,
                opt(r.misses),
            );
        }
        for (i, (runs, sent)) in self.wrong_password_hashes.iter().enumerate() {
            let _ = writeln!(
                w,
                "\nW round {}: {sent} wrong passwords for one set cost {runs} Argon2 runs (grantshift_password_hashes_total{{purpose=\"check\"}}); every one went to the login host as sent and was refused.",
                i + 1
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
            "\nChecks: every response was the fake's 200 of the expected size (W: its 400 refusal of the password login, with none upgraded); the fake counted every request{}{}; \
             the fake accepted {} {} in all; proxy WARN/ERROR log lines: {}{}.",
            if self.cache_rounds.is_empty() {
                ""
            } else {
                " (A32c: every login answered; what reached the upstream is counted above)"
            },
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
