//! The soak's checks and waits: the proxy's memory and fds sampled throughout, bounded waits
//! for a condition to settle, the events file, and `/metrics`.

use crate::{
    Args, CLIENT_ID, CLIENT_SECRET, PASSWORD_PREFIX, SETTLE_TIMEOUT, STEP_TIMEOUT, USERNAME,
};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use testkit::admin::{label_set, parse_openmetrics, Exposition, Labels};
use testkit::fast_salesforce::{ACCESS_TOKEN_PREFIX, MY_DOMAIN, ORG_ID, USER_ID};
use testkit::process::{proc_status, ProcStatus};
use testkit::LOGIN_HOST;
use tokio::sync::watch;

// ---------------------------------------------------------------------------------------------
// /proc sampling

/// The proxy's memory and fds once it has had a moment to finish what it was doing.
pub async fn settle_sample(pid: u32) -> Result<ProcStatus, String> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    proc_status(&pid.to_string())
}

#[derive(Default, Clone, Copy)]
pub struct Peaks {
    pub peak_fds: usize,
    pub peak_hwm_kib: u64,
}

/// Samples the proxy's fds and peak RSS every 250 ms until stopped.
pub struct Sampler {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Peaks>,
}

impl Sampler {
    pub fn start(pid: u32) -> Sampler {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut peaks = Peaks::default();
            loop {
                if let Ok(s) = proc_status(&pid.to_string()) {
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

    pub async fn stop(self) -> Peaks {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

/// Poll `check` until it reports done (`None`), or fail after [`SETTLE_TIMEOUT`] with its
/// last word on what is still missing.
pub async fn settle<F, Fut>(what: &str, check: F) -> Result<(), String>
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
// Checks: events file, /metrics

/// Wait (bounded) for one events line per login; every one must be `upgraded` to the My
/// Domain host with status 200, and no secret may appear in the file.
pub async fn check_events(path: &Path, expected: usize) -> Result<usize, String> {
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

/// `GET /metrics`, parsed (OpenMetrics text, as testkit's tests hold it to).
pub async fn fetch_metrics(admin: SocketAddr) -> Result<Exposition, String> {
    let text = testkit::admin::try_admin_get(admin, "/metrics", STEP_TIMEOUT).await?;
    parse_openmetrics(&text).map_err(|e| format!("/metrics: {e}"))
}

/// The value of label `name` in `labels` (`""` if absent).
fn label(labels: &Labels, name: &str) -> String {
    labels
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// `grantshift_connections_active` by kind.
pub fn active_gauges(metrics: &Exposition) -> BTreeMap<String, i64> {
    metrics
        .series("grantshift_connections_active")
        .into_iter()
        .map(|(labels, v)| (label(&labels, "kind"), v as i64))
        .collect()
}

/// One `upgraded` token request per login and nothing else, no upgrade failures, and the
/// connections by kind: every tunnel, every login connection, no plain HTTP.
pub fn check_metrics(metrics: &Exposition, args: &Args, login_conns: usize) -> Result<(), String> {
    let tokens: BTreeMap<Labels, f64> = metrics
        .series("grantshift_token_requests_total")
        .into_iter()
        .filter(|(_, v)| *v != 0.0)
        .collect();
    let mut expected = BTreeMap::new();
    if args.logins > 0 {
        let upgraded = [
            ("host", LOGIN_HOST),
            ("grant", "password"),
            ("action", "upgraded"),
        ];
        expected.insert(label_set(&upgraded), args.logins as f64);
    }
    if tokens != expected {
        return Err(format!(
            "/metrics grantshift_token_requests_total: {tokens:?}, expected {expected:?}"
        ));
    }
    let failures: f64 = metrics
        .series("grantshift_upgrade_failures_total")
        .values()
        .sum();
    if failures != 0.0 {
        return Err(format!(
            "/metrics grantshift_upgrade_failures_total sums to {failures}"
        ));
    }
    let totals: BTreeMap<String, f64> = metrics
        .series("grantshift_connections_total")
        .into_iter()
        .map(|(labels, v)| (label(&labels, "kind"), v))
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
