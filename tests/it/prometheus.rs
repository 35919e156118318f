//! docs/monitoring.md with a real Prometheus (Debian's `prometheus` and `promtool`, which
//! scripts/test installs): a live grantshift goes through a known sequence of logins and config
//! reloads while a Prometheus server on loopback (its own temp dir, no remote anything)
//! scrapes its admin server every 500 ms and evaluates deploy/prometheus/alerts.yml; then every
//! query of the Grafana dashboards in deploy/grafana/dashboards returns data, with the value
//! the sequence implies, and the alerts that the sequence should raise are raised. promtool
//! lints `/metrics`, checks the Prometheus config and rules, and runs the rules' unit tests.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use testkit::admin::{admin_get, live_report, try_admin_get};
use testkit::salesforce::App;
use testkit::*;

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";

/// Scrape and rule evaluation interval of the test's Prometheus.
const SCRAPE_INTERVAL: &str = "500ms";
/// How long Prometheus may take to start, scrape and evaluate what the test waits for.
const WAIT: Duration = Duration::from_secs(60);
/// Between two polls of a condition.
const POLL: Duration = Duration::from_millis(100);
/// Samples of `up` to wait for before the dashboard queries: rate() extrapolates over the
/// samples it has, by at most 2.2 sample intervals, so with `n` samples a rate times its
/// window is the increase times at most 1 + 2.2 / (n - 1).
const MIN_SAMPLES: u32 = 12;

/// Grafana's variables in the dashboards' queries, as Grafana would fill them in for a
/// 5-minute range: every rate window then covers all the test Prometheus ever scraped.
const GRAFANA_VARIABLES: &[(&str, &str)] = &[
    ("$__rate_interval", "5m"),
    ("${__rate_interval}", "5m"),
    ("$__interval", "1s"),
    ("${__interval}", "1s"),
    ("$__range", "5m"),
    ("${__range}", "5m"),
];
/// The window those rates span, in seconds.
const RATE_WINDOW_SECS: f64 = 300.0;

/// A connected app of the acme org with client credentials enabled but no Run As user.
const NO_RUN_AS_APP: &str = "3MVG9acmeNoRunAsApp.consumerKey";
const NO_RUN_AS_SECRET: &str = "cs-SECRET-norunas-3c1e";

fn tool(path: &str) -> &str {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: install Debian's `prometheus` package (scripts/test does)"
    );
    path
}

/// A Prometheus server on a loopback port, killed on drop.
struct Prometheus {
    child: Child,
    api: Api,
    dir: tempfile::TempDir,
}

/// Its HTTP API.
#[derive(Clone, Copy)]
struct Api {
    addr: SocketAddr,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Scrape `admin`'s `/metrics` as job `grantshift` and evaluate `rules`.
    async fn start(admin: SocketAddr, rules: &Path) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: {SCRAPE_INTERVAL}\n  scrape_timeout: {SCRAPE_INTERVAL}\n  evaluation_interval: {SCRAPE_INTERVAL}\n\
                 rule_files:\n  - {rules:?}\n\
                 scrape_configs:\n  - job_name: grantshift\n    metrics_path: /metrics\n    static_configs:\n      - targets: [\"{admin}\"]\n"
            ),
        )
        .unwrap();
        // A free port: bound and released (Prometheus binds it next; a clash fails the test
        // loudly below, with Prometheus's log).
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(tool(PROMETHEUS))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let mut prometheus = Prometheus {
            child,
            api: Api { addr },
            dir,
        };
        prometheus
            .until("Prometheus is ready", |api| async move {
                try_admin_get(api.addr, "/-/ready", POLL).await
            })
            .await;
        prometheus
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Poll `check` until it gives a value, within [`WAIT`]; fails with what it saw last and
    /// Prometheus's log (at once if Prometheus exited).
    async fn until<T, Fut>(&mut self, what: &str, check: impl Fn(Api) -> Fut) -> T
    where
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "{what}: prometheus exited ({status}); its log:\n{}",
                    self.log()
                );
            }
            let last = match check(self.api).await {
                Ok(value) => return value,
                Err(last) => last,
            };
            assert!(
                Instant::now() < deadline,
                "{what}: not within {WAIT:?}; last seen: {last}; prometheus log:\n{}",
                self.log()
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Api {
    /// `GET /api/v1/<path>?<params>`: the `data` of a `success` answer.
    async fn get(self, path: &str, params: &[(&str, &str)]) -> Value {
        let query = serde_urlencoded::to_string(params).unwrap();
        let reply = admin_get(self.addr, &format!("/api/v1/{path}?{query}")).await;
        let body: Value = serde_json::from_str(&reply.text())
            .unwrap_or_else(|e| panic!("/api/v1/{path}: {e}: {}", reply.text()));
        assert_eq!(
            body["status"], "success",
            "/api/v1/{path} {params:?}: {body}"
        );
        body["data"].clone()
    }

    /// An instant query's result: each series' labels (without `__name__`) and value.
    async fn query(self, promql: &str) -> Series {
        let data = self.get("query", &[("query", promql)]).await;
        match data["resultType"].as_str() {
            Some("vector") => data["result"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    let labels = s["metric"]
                        .as_object()
                        .unwrap()
                        .iter()
                        .filter(|(k, _)| *k != "__name__")
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                        .collect();
                    (labels, number(&s["value"][1]))
                })
                .collect(),
            Some("scalar") => [(BTreeMap::new(), number(&data["result"][1]))].into(),
            other => panic!("{promql}: result type {other:?}: {data}"),
        }
    }
}

type Labels = BTreeMap<String, String>;
type Series = BTreeMap<Labels, f64>;

fn number(v: &Value) -> f64 {
    match v.as_str().unwrap() {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        s => s.parse().unwrap(),
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Every `expr` of every panel (and nested row panel) of the dashboards in `dir`:
/// `(dashboard file, panel title, refId, expr)`.
fn dashboard_queries(dir: &Path) -> Vec<(String, String, String, String)> {
    fn walk(file: &str, panels: &Value, out: &mut Vec<(String, String, String, String)>) {
        for panel in panels.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("").to_owned();
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    let ref_id = target["refId"].as_str().unwrap_or("").to_owned();
                    out.push((file.into(), title.clone(), ref_id, expr.into()));
                }
            }
            walk(file, &panel["panels"], out);
        }
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        walk(&name, &dashboard["panels"], &mut out);
    }
    out
}

/// `expr` with Grafana's variables filled in; none may be left.
fn substitute(expr: &str) -> String {
    let mut out = expr.to_owned();
    // Longest names first: `$__interval` is a prefix of `$__interval_ms`.
    let mut vars = GRAFANA_VARIABLES.to_vec();
    vars.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    for (name, value) in vars {
        out = out.replace(name, value);
    }
    assert!(
        !out.contains('$'),
        "a Grafana variable the test does not know in {expr:?}"
    );
    out
}

/// What a dashboard query should give after the sequence.
enum Expect {
    /// A rate over the window: per series, the increase during the scraped batch.
    Rate(Vec<(Labels, f64)>),
    /// An increase() over a window covering the batch: per series, that increase.
    Increase(Vec<(Labels, f64)>),
    /// Exactly these values.
    Exactly(Vec<(Labels, f64)>),
    /// One series per label set, each finite and within the bounds.
    Within(Vec<Labels>, f64, f64),
}

/// The known sequence, twice: once before Prometheus starts (so each series exists before
/// its first scrape), once while it scrapes (the batch the rates measure). Returns the events'
/// actions in order.
async fn logins(proxy: &TestProxy, upgraded: usize, fallback: usize, failed: usize) -> Vec<String> {
    let mut actions = Vec::new();
    let send = |host: &'static str, body: String, expect: &'static str| async move {
        let (status, reply) = proxy.token_request_then_close(host, &body).await;
        let event = proxy.next_event().await;
        assert_eq!(event["action"], expect, "{status} {reply}: {event}");
        expect.to_owned()
    };
    for _ in 0..upgraded {
        actions.push(send(LOGIN_HOST, acme_password_form(), "upgraded").await);
    }
    for _ in 0..fallback {
        let body = password_form(
            NO_RUN_AS_APP,
            NO_RUN_AS_SECRET,
            acme::REPORTS_USERNAME,
            acme::REPORTS_PASSWORD,
        );
        actions.push(send(LOGIN_HOST, body, "fallback").await);
    }
    for _ in 0..failed {
        // A wrong client secret: the client credentials upgrade fails (invalid_client) and
        // the rule for the My Domain does not fall back.
        let body = password_form(
            acme::CLIENT_ID,
            "cs-wrong-secret",
            acme::RUN_AS_USERNAME,
            acme::RUN_AS_PASSWORD,
        );
        actions.push(send(acme::MY_DOMAIN, body, "failed").await);
    }
    actions.push(send(TEST_HOST, acme_qa_password_form(), "observed").await);
    // Another app: a second username on the integration app would make it needs-jwt.
    let unmapped = password_form(
        acme::OTHER_CLIENT_ID,
        acme::OTHER_CLIENT_SECRET,
        acme::PLUS_USERNAME,
        acme::PLUS_PASSWORD,
    );
    actions.push(send(LOGIN_HOST, unmapped, "unmapped").await);
    actions
}

#[tokio::test]
async fn every_dashboard_query_returns_the_sequences_values_from_a_real_prometheus() {
    let started = Instant::now();
    // Rules: test.salesforce.com observed; acme's My Domain upgraded without fallback; the
    // rest upgraded with fallback. The acme integration user and the reports user are mapped.
    let rules = rollout_toml(TEST_HOST, "observe", 100, true)
        + &rollout_toml(acme::MY_DOMAIN, "upgrade", 100, false)
        + &rollout_toml("*", "upgrade", 100, true)
        + &acme_mapping()
        + &credentials_toml(acme::REPORTS_USERNAME, acme::MY_DOMAIN);
    // Every upgraded login of the sequence goes upstream (the cache would answer repeats).
    let mut proxy = TestProxy::builder()
        .extra_toml(&rules)
        .token_cache_off()
        .start()
        .await;
    proxy.sf.edit(|w| {
        w.org_mut(acme::ORG_ID)
            .apps
            .push(App::new(NO_RUN_AS_APP, NO_RUN_AS_SECRET));
    });
    let admin = proxy.admin_addr();

    // 1. Before Prometheus: one of each, so every series exists at its first scrape.
    let warm_up = logins(&proxy, 1, 1, 1).await;
    let mut prom = Prometheus::start(admin, &repo_path("deploy/prometheus/alerts.yml")).await;
    let warm_total = warm_up.len() as f64;
    prom.until("the warm-up scraped", |p| async move {
        let up = p.query("up{job=\"grantshift\"}").await;
        let seen = p.query("sum(grantshift_token_requests_total)").await;
        (up.values().eq([&1.0]) && seen.values().eq([&warm_total]))
            .then_some(())
            .ok_or_else(|| format!("up {up:?}, token requests {seen:?}"))
    })
    .await;

    // 2. The batch, while Prometheus scrapes: 2 upgraded, 1 fallback, 2 failed, 1 observed,
    //    1 unmapped; a reload that works and one that fails.
    let batch = logins(&proxy, 2, 1, 2).await;
    let changed = proxy
        .builder_used()
        .with_extra_toml(&rollout_toml("*", "observe", 100, true));
    proxy.reload(changed);
    let invalid = grantshift::config::Config::from_toml_str("[proxy]\nlisten = 5\n", proxy.dir())
        .expect_err("listen = 5 is not a valid config");
    proxy.reloader().failed(&invalid);

    // Prometheus has the final values, from enough samples, with no connection open.
    let total = warm_total + batch.len() as f64;
    let samples = prom
        .until("the batch scraped", |p| async move {
            let seen = p.query("sum(grantshift_token_requests_total)").await;
            let reloads = p.query("grantshift_config_reloads_total").await;
            let open = p.query("sum(grantshift_connections_active)").await;
            let n = p.query("count_over_time(up{job=\"grantshift\"}[5m])").await;
            let n = n.values().next().copied().unwrap_or(0.0);
            (seen.values().eq([&total])
                && reloads.values().eq([&1.0, &1.0])
                && open.values().eq([&0.0])
                && n >= MIN_SAMPLES as f64)
                .then_some(n)
                .ok_or_else(|| {
                    format!(
                        "token requests {seen:?}, reloads {reloads:?}, open {open:?}, {n} samples"
                    )
                })
        })
        .await;

    // The raw counters, exactly as grantshift counted them.
    let login = |action: &str| labels(&[("host", LOGIN_HOST), ("action", action)]);
    let raw = prom
        .api
        .query("sum by (host, action) (grantshift_token_requests_total)")
        .await;
    assert_eq!(
        raw,
        [
            (login("upgraded"), 3.0),
            (login("fallback"), 2.0),
            (login("unmapped"), 2.0),
            (
                labels(&[("host", acme::MY_DOMAIN), ("action", "failed")]),
                3.0
            ),
            (labels(&[("host", TEST_HOST), ("action", "observed")]), 2.0),
        ]
        .into_iter()
        .collect::<Series>()
    );
    let identity = |id: &str| labels(&[("target_host", acme::MY_DOMAIN), ("identity", id)]);
    assert_eq!(
        prom.api
            .query("sum by (target_host, identity) (grantshift_upstream_logins_total)")
            .await,
        // The integration app: 3 upgraded and 3 failed attempts; the app without a Run As
        // user: 2 attempts (that fell back).
        [
            (identity(acme::CLIENT_ID), 6.0),
            (identity(NO_RUN_AS_APP), 2.0)
        ]
        .into_iter()
        .collect::<Series>()
    );
    // The credential sets by verdict, as /report has them.
    let report = live_report(admin).await;
    let mut by_verdict: BTreeMap<String, f64> = grantshift::telemetry::report::Verdict::ALL
        .iter()
        .map(|v| (v.as_str().to_owned(), 0.0))
        .collect();
    for row in report["credentials"].as_array().unwrap() {
        *by_verdict
            .get_mut(row["verdict"].as_str().unwrap())
            .unwrap() += 1.0;
    }
    assert_eq!(by_verdict["failing"], 1.0, "{report}");
    assert_eq!(by_verdict["upgraded"], 1.0, "{report}");
    assert_eq!(by_verdict["needs-run-as-user"], 1.0, "{report}");
    let verdicts: Vec<(Labels, f64)> = by_verdict
        .iter()
        .map(|(v, n)| (labels(&[("verdict", v)]), *n))
        .collect();

    // 3. Every dashboard query, with what the batch implies where it is known.
    let none = Labels::new;
    let by = |key: &str, value: &str| labels(&[(key, value)]);
    let expected: BTreeMap<(&str, &str), Expect> = [
        (
            ("Password grants: seen vs upgraded", "A"),
            Expect::Rate(vec![(none(), 7.0)]),
        ),
        (
            ("Password grants: seen vs upgraded", "B"),
            Expect::Rate(vec![(none(), 2.0)]),
        ),
        (
            ("Password grants: seen vs upgraded", "C"),
            Expect::Rate(vec![(none(), 2.0)]),
        ),
        (
            ("Fallbacks and failed upgrades", "A"),
            Expect::Rate(vec![(none(), 1.0)]),
        ),
        (
            ("Fallbacks and failed upgrades", "B"),
            Expect::Rate(vec![(none(), 2.0)]),
        ),
        (
            ("Upgrade failures by error", "A"),
            Expect::Rate(vec![
                (by("error", "invalid_grant"), 1.0),
                (by("error", "invalid_client"), 2.0),
            ]),
        ),
        (
            ("Token requests per host and action", "A"),
            Expect::Rate(vec![
                (login("upgraded"), 2.0),
                (login("fallback"), 1.0),
                (login("unmapped"), 1.0),
                (
                    labels(&[("host", acme::MY_DOMAIN), ("action", "failed")]),
                    2.0,
                ),
                (labels(&[("host", TEST_HOST), ("action", "observed")]), 1.0),
            ]),
        ),
        (
            ("Open connections by kind", "A"),
            Expect::Exactly(
                ["tunnel", "intercept", "http"]
                    .iter()
                    .map(|k| (by("kind", k), 0.0))
                    .collect(),
            ),
        ),
        (
            ("Upstream latency (p50, p99)", "A"),
            Expect::Within(vec![none()], 0.0, 33.0),
        ),
        (
            ("Upstream latency (p50, p99)", "B"),
            Expect::Within(vec![none()], 0.0, 33.0),
        ),
        (
            ("Credential sets by verdict (the report)", "A"),
            Expect::Exactly(verdicts),
        ),
        (
            (
                "Upstream logins per Run As identity, last hour (Salesforce allows 3,600)",
                "A",
            ),
            // The batch: 2 upgraded + 2 failed as the integration app, 1 fallback attempt.
            Expect::Increase(vec![
                (identity(acme::CLIENT_ID), 4.0),
                (identity(NO_RUN_AS_APP), 1.0),
            ]),
        ),
        (
            ("Config reloads by result", "A"),
            Expect::Increase(vec![
                (by("result", "ok"), 1.0),
                (by("result", "error"), 1.0),
            ]),
        ),
    ]
    .into_iter()
    .collect();

    let queries = dashboard_queries(&repo_path("deploy/grafana/dashboards"));
    assert!(!queries.is_empty(), "the dashboards have queries");
    // rate() × window over-counts the increase by at most this factor (see MIN_SAMPLES).
    let slack = 1.0 + 2.2 / (samples - 1.0);
    let mut checked = BTreeSet::new();
    for (file, title, ref_id, expr) in &queries {
        let promql = substitute(expr);
        let what = format!("{file} panel {title:?} query {ref_id}: {promql}");
        let got = prom.api.query(&promql).await;
        assert!(!got.is_empty(), "{what}: no data");
        let Some(expect) = expected.get(&(title.as_str(), ref_id.as_str())) else {
            continue;
        };
        checked.insert((title.clone(), ref_id.clone()));
        let keys = |want: &[(Labels, f64)]| want.iter().map(|(l, _)| l.clone()).collect();
        let got_keys: BTreeSet<Labels> = got.keys().cloned().collect();
        match expect {
            Expect::Rate(want) | Expect::Increase(want) => {
                assert_eq!(got_keys, keys(want), "{what}: {got:?}");
                let scale = match expect {
                    Expect::Rate(_) => RATE_WINDOW_SECS,
                    _ => 1.0,
                };
                for (l, increase) in want {
                    let measured = got[l] * scale;
                    assert!(
                        measured >= increase - 1e-9 && measured <= increase * slack + 1e-9,
                        "{what}: {l:?} measured an increase of {measured}, the batch made {increase} ({samples} samples)"
                    );
                }
            }
            Expect::Exactly(want) => {
                assert_eq!(got, want.iter().cloned().collect::<Series>(), "{what}");
            }
            Expect::Within(want, low, high) => {
                assert_eq!(got_keys, want.iter().cloned().collect(), "{what}: {got:?}");
                for v in got.values() {
                    assert!(v.is_finite() && v > low && v <= high, "{what}: {v}");
                }
            }
        }
    }
    let unchecked: Vec<_> = expected
        .keys()
        .filter(|(t, r)| !checked.contains(&(t.to_string(), r.to_string())))
        .collect();
    assert!(
        unchecked.is_empty(),
        "the test expects panels the dashboards do not have: {unchecked:?}"
    );

    // 4. The alerts, evaluated by this Prometheus on these metrics: every rule evaluates
    //    cleanly; the failed reload fires at once; the fallbacks (1 of 5 attempts) and the
    //    failing set are pending (their `for` has not passed); the rest are quiet.
    let expected_alerts: BTreeMap<String, String> = [
        ("GrantshiftConfigReloadFailed", "firing"),
        ("GrantshiftUpgradesFallingBack", "pending"),
        ("GrantshiftCredentialSetsFailing", "pending"),
    ]
    .iter()
    .map(|(a, s)| (a.to_string(), s.to_string()))
    .collect();
    let want = &expected_alerts;
    prom.until("the alerts evaluated", |p| async move {
        let rules = p.get("rules", &[]).await;
        let rules: Vec<&Value> = rules["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap())
            .collect();
        for rule in &rules {
            assert_ne!(rule["health"], "err", "{rule}");
        }
        let evaluated = !rules.is_empty() && rules.iter().all(|r| r["health"] == "ok");
        let alerts = p.get("alerts", &[]).await;
        let states: BTreeMap<String, String> = alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["labels"]["alertname"].as_str().unwrap().to_owned(),
                    a["state"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        (evaluated && &states == want)
            .then_some(())
            .ok_or_else(|| format!("alerts {states:?}, rules evaluated: {evaluated}"))
    })
    .await;

    // 5. promtool's lint of the exposition Prometheus just scraped.
    let exposition = admin_get(admin, "/metrics").await.text();
    let lint = promtool_check_metrics(&exposition);
    assert!(
        lint.status.success() && lint.stdout.trim().is_empty() && lint.stderr.trim().is_empty(),
        "promtool check metrics: {lint:?}\n{exposition}"
    );
    eprintln!(
        "prometheus test: {samples} samples, {} queries, {:?} in all",
        queries.len(),
        started.elapsed()
    );
}

/// `promtool check metrics` reads the Prometheus text format (0.0.4), in which a counter's
/// HELP and TYPE name its samples' name, `_total` included; grantshift serves OpenMetrics,
/// whose counter families are named without it, ending with `# EOF`. The same exposition in
/// the text format, as Prometheus ingests it.
fn as_text_format(openmetrics: &str) -> String {
    let counters: BTreeSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::new();
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

struct Ran {
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\nstdout:\n{}\nstderr:\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

fn promtool(args: &[&str], stdin: Option<&str>) -> Ran {
    use std::io::Write;
    let mut child = Command::new(tool(PROMTOOL))
        .args(args)
        .current_dir(repo_path(""))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    Ran {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn promtool_check_metrics(openmetrics: &str) -> Ran {
    promtool(&["check", "metrics"], Some(&as_text_format(openmetrics)))
}

#[test]
fn openmetrics_counters_are_renamed_for_promtools_text_format() {
    let om = "# HELP a_x An x.\n# TYPE a_x counter\na_x_total{k=\"v\"} 1\n# HELP g A g.\n# TYPE g gauge\ng 2\n# EOF\n";
    assert_eq!(
        as_text_format(om),
        "# HELP a_x_total An x.\n# TYPE a_x_total counter\na_x_total{k=\"v\"} 1\n# HELP g A g.\n# TYPE g gauge\ng 2\n"
    );
    // And promtool does lint what it is given: a counter without `_total`, a missing HELP.
    let lint = promtool_check_metrics("# TYPE a_x counter\na_x 1\n");
    assert!(
        lint.stdout.contains("a_x") || lint.stderr.contains("a_x"),
        "{lint:?}"
    );
}

#[test]
fn promtool_checks_the_deploy_config_and_rules_and_runs_the_rules_unit_tests() {
    for args in [
        &["check", "config", "deploy/prometheus/prometheus.yml"][..],
        &["check", "config", "deploy/prometheus/fleet.yml"],
        &["check", "rules", "deploy/prometheus/alerts.yml"],
        &["test", "rules", "deploy/prometheus/alerts.test.yml"],
    ] {
        let ran = promtool(args, None);
        assert!(ran.status.success(), "promtool {args:?}: {ran:?}");
    }
    // The unit tests cover every alert, firing and not firing.
    let yaml = |p: &str| -> serde_yaml::Value {
        serde_yaml::from_str(&std::fs::read_to_string(repo_path(p)).unwrap()).unwrap()
    };
    let rules = yaml("deploy/prometheus/alerts.yml");
    let alerts: BTreeSet<String> = rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap())
        .filter_map(|r| r["alert"].as_str().map(str::to_owned))
        .collect();
    assert!(alerts.len() >= 5, "{alerts:?}");
    let tests = yaml("deploy/prometheus/alerts.test.yml");
    let (mut firing, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    for test in tests["tests"].as_sequence().unwrap() {
        for case in test["alert_rule_test"].as_sequence().into_iter().flatten() {
            let name = case["alertname"].as_str().unwrap().to_owned();
            let fired = case["exp_alerts"]
                .as_sequence()
                .is_some_and(|a| !a.is_empty());
            if fired { &mut firing } else { &mut quiet }.insert(name);
        }
    }
    assert_eq!(firing, alerts, "alerts with a firing case");
    assert_eq!(quiet, alerts, "alerts with a not-firing case");
    // Every alert tells the operator what is wrong and what to do.
    for rule in rules["groups"][0]["rules"].as_sequence().unwrap() {
        for key in ["summary", "description"] {
            assert!(
                rule["annotations"][key]
                    .as_str()
                    .is_some_and(|s| s.len() > 20),
                "{:?} has a {key}",
                rule["alert"]
            );
        }
    }
}
