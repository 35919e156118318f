//! The container deployment (Dockerfile, docker-compose.yml, deploy/) without a Docker engine:
//! every file the compose file and the Dockerfile reference exists, and every port, volume,
//! path and metric name they use agrees with grantshift's config and with what a running
//! grantshift actually serves (its `/metrics` scrape, its `/healthz` probed by the
//! Dockerfile's own HEALTHCHECK command).

use grantshift::config::Config;
use serde_yaml::Value as Yaml;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use testkit::admin::{admin_get, scrape};
use testkit::*;

const COMPOSE: &str = "docker-compose.yml";

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo_path(relative))
        .unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

fn yaml_file(path: &Path) -> Yaml {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
}

fn compose() -> Yaml {
    yaml_file(&repo_path(COMPOSE))
}

fn service<'a>(compose: &'a Yaml, name: &str) -> &'a Yaml {
    let s = &compose["services"][name];
    assert!(s.is_mapping(), "{COMPOSE} has no service `{name}`");
    s
}

fn str_of(v: &Yaml) -> String {
    match v {
        Yaml::String(s) => s.clone(),
        Yaml::Number(n) => n.to_string(),
        Yaml::Bool(b) => b.to_string(),
        other => panic!("expected a scalar, got {other:?}"),
    }
}

/// One entry of a service's `volumes`.
#[derive(Debug, Clone)]
struct Mount {
    /// A host path (bind mount, resolved against the compose file's directory) or a volume name.
    source: String,
    target: String,
    read_only: bool,
}

impl Mount {
    fn is_bind(&self) -> bool {
        self.source.starts_with('.') || self.source.starts_with('/')
    }

    fn host_path(&self) -> PathBuf {
        assert!(self.is_bind(), "{self:?} is not a bind mount");
        repo_path(self.source.trim_start_matches("./"))
    }
}

fn mounts(service: &Yaml) -> Vec<Mount> {
    service["volumes"]
        .as_sequence()
        .map(|v| v.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|entry| match entry {
            Yaml::String(short) => {
                let parts: Vec<&str> = short.split(':').collect();
                assert!(
                    (2..=3).contains(&parts.len()),
                    "volume `{short}` is not source:target[:mode]"
                );
                Mount {
                    source: parts[0].to_string(),
                    target: parts[1].to_string(),
                    read_only: parts
                        .get(2)
                        .is_some_and(|m| m.split(',').any(|o| o == "ro")),
                }
            }
            long => Mount {
                source: str_of(&long["source"]),
                target: str_of(&long["target"]),
                read_only: long["read_only"].as_bool().unwrap_or(false),
            },
        })
        .collect()
}

/// Where the container path `path` comes from on the host, through the service's bind mounts.
fn host_path_of(service: &Yaml, path: &str) -> PathBuf {
    let mount = mounts(service)
        .into_iter()
        .filter(|m| m.is_bind())
        .filter(|m| path == m.target || path.starts_with(&format!("{}/", m.target)))
        .max_by_key(|m| m.target.len())
        .unwrap_or_else(|| panic!("no bind mount provides {path}"));
    let rest = path[mount.target.len()..].trim_start_matches('/');
    let host = mount.host_path();
    if rest.is_empty() {
        host
    } else {
        host.join(rest)
    }
}

/// `(host ip, host port, container port)` of a service's `ports`.
fn published_ports(service: &Yaml) -> Vec<(Option<String>, u16, u16)> {
    service["ports"]
        .as_sequence()
        .map(|v| v.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|p| {
            let text = str_of(p);
            let parts: Vec<&str> = text.split(':').collect();
            let port = |s: &str| -> u16 {
                s.trim_end_matches("/tcp")
                    .parse()
                    .unwrap_or_else(|_| panic!("port `{text}`"))
            };
            match parts.as_slice() {
                [ip, host, container] => (Some(ip.to_string()), port(host), port(container)),
                [host, container] => (None, port(host), port(container)),
                _ => panic!("ports entry `{text}` is not [ip:]host:container"),
            }
        })
        .collect()
}

fn environment(service: &Yaml) -> BTreeMap<String, String> {
    match &service["environment"] {
        Yaml::Mapping(m) => m.iter().map(|(k, v)| (str_of(k), str_of(v))).collect(),
        Yaml::Sequence(items) => items
            .iter()
            .map(|i| {
                let s = str_of(i);
                let (k, v) = s.split_once('=').unwrap_or((&s, ""));
                (k.to_string(), v.to_string())
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// The config the grantshift service runs with: `GRANTSHIFT_CONFIG` in its environment, read
/// from the host through its bind mount.
fn grantshift_config_path(compose: &Yaml) -> PathBuf {
    let gs = service(compose, "grantshift");
    let in_container = environment(gs)
        .remove("GRANTSHIFT_CONFIG")
        .expect("the grantshift service sets GRANTSHIFT_CONFIG");
    host_path_of(gs, &in_container)
}

fn grantshift_config(compose: &Yaml) -> Config {
    let path = grantshift_config_path(compose);
    Config::load_file(&path).unwrap_or_else(|e| panic!("{} is rejected: {e}", path.display()))
}

fn admin_port(config: &Config) -> u16 {
    config
        .proxy
        .admin_addr()
        .expect("the container config enables the admin server")
        .port()
}

#[test]
fn compose_bind_mounts_exist_and_named_volumes_are_declared() {
    let compose = compose();
    let declared: BTreeSet<String> = compose["volumes"]
        .as_mapping()
        .map(|m| m.keys().map(str_of).collect())
        .unwrap_or_default();
    let services = compose["services"].as_mapping().expect("services");
    assert!(!services.is_empty());
    let mut used = BTreeSet::new();
    for (name, svc) in services {
        let name = str_of(name);
        for m in mounts(svc) {
            if m.is_bind() {
                assert!(
                    m.host_path().exists(),
                    "service {name} mounts {} which does not exist",
                    m.source
                );
                assert!(
                    m.read_only,
                    "service {name}: the bind mount {} is read-only in the container",
                    m.source
                );
            } else {
                assert!(
                    declared.contains(&m.source),
                    "service {name} uses volume `{}`, not declared under top-level volumes",
                    m.source
                );
                used.insert(m.source.clone());
            }
        }
        if let Some(build) = svc.get("build") {
            let context = match build {
                Yaml::String(c) => c.clone(),
                b => b["context"].as_str().unwrap_or(".").to_string(),
            };
            let dockerfile = build["dockerfile"].as_str().unwrap_or("Dockerfile");
            assert!(
                repo_path(context.trim_start_matches("./"))
                    .join(dockerfile)
                    .is_file(),
                "service {name} builds {context}/{dockerfile}, which does not exist"
            );
        }
        // `depends_on: [a, b]` or `depends_on: {a: {condition: …}}`.
        let deps: Vec<Yaml> = match &svc["depends_on"] {
            Yaml::Sequence(list) => list.clone(),
            Yaml::Mapping(m) => m.keys().cloned().collect(),
            _ => Vec::new(),
        };
        for dep in &deps {
            assert!(
                services.contains_key(dep),
                "service {name} depends on unknown service {dep:?}"
            );
        }
    }
    assert_eq!(used, declared, "every declared volume is used");
}

#[test]
fn compose_runs_grantshift_on_the_deploy_config_with_its_listen_and_admin_ports_published() {
    let compose = compose();
    let gs = service(&compose, "grantshift");
    let config = grantshift_config(&compose);
    assert_eq!(
        grantshift_config_path(&compose),
        repo_path("deploy/grantshift.toml")
    );
    let listen = config.proxy.listen;
    let admin = config.proxy.admin_addr().expect("admin server enabled");
    // Inside the container, loopback would be unreachable through the published ports.
    assert!(listen.ip().is_unspecified(), "listen = {listen}");
    assert!(admin.ip().is_unspecified(), "admin_listen = {admin}");
    assert!(
        !config.proxy.allow_clients.is_empty() || config.proxy.auth.is_some(),
        "a proxy bound to every interface restricts its clients (allow_clients or auth)"
    );

    let ports = published_ports(gs);
    let container: BTreeSet<u16> = ports.iter().map(|p| p.2).collect();
    assert_eq!(
        container,
        BTreeSet::from([listen.port(), admin.port()]),
        "published container ports = the config's listen and admin ports: {ports:?}"
    );
    for (ip, _, _) in &ports {
        assert_eq!(
            ip.as_deref(),
            Some("127.0.0.1"),
            "ports are published on the host's loopback only"
        );
    }

    // The CA, the events file and the state (learned password verifiers) live in the
    // writable named volume.
    let data = mounts(gs)
        .into_iter()
        .find(|m| !m.is_bind())
        .expect("grantshift has a named data volume");
    assert!(!data.read_only, "the data volume is writable");
    for (key, path) in [
        ("ca.cert", config.ca.cert.clone()),
        ("ca.key", config.ca.key.clone()),
        ("telemetry.events", PathBuf::from(&config.telemetry.events)),
        ("state.dir", config.state.dir.clone()),
    ] {
        assert!(
            path.starts_with(&data.target),
            "{key} = {} is in the data volume {}",
            path.display(),
            data.target
        );
    }
}

#[tokio::test]
async fn prometheus_scrapes_grantshift_metrics_path_on_its_admin_port() {
    let compose = compose();
    let config = grantshift_config(&compose);
    let prom = service(&compose, "prometheus");
    let config_flag = prom["command"]
        .as_sequence()
        .expect("prometheus command")
        .iter()
        .map(str_of)
        .find_map(|a| a.strip_prefix("--config.file=").map(str::to_string))
        .expect("prometheus --config.file");
    let prom_config = yaml_file(&host_path_of(prom, &config_flag));
    // The rules it loads, relative to the config file in the container, are mounted from the
    // repository's alerts (which tests/it/prometheus.rs checks and unit-tests with promtool).
    let config_dir = Path::new(&config_flag).parent().expect("config dir");
    let rule_files: Vec<PathBuf> = prom_config["rule_files"]
        .as_sequence()
        .expect("prometheus.yml rule_files")
        .iter()
        .map(|f| host_path_of(prom, config_dir.join(str_of(f)).to_str().unwrap()))
        .collect();
    assert_eq!(
        rule_files,
        [repo_path("deploy/prometheus/alerts.yml")],
        "the compose Prometheus loads deploy/prometheus/alerts.yml"
    );
    let expected_target = format!("grantshift:{}", admin_port(&config));
    let jobs = prom_config["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs");
    let job = jobs
        .iter()
        .find(|job| {
            job["static_configs"]
                .as_sequence()
                .into_iter()
                .flatten()
                .flat_map(|sc| sc["targets"].as_sequence().into_iter().flatten())
                .any(|t| str_of(t) == expected_target)
        })
        .unwrap_or_else(|| panic!("no scrape job targets {expected_target}: {prom_config:?}"));
    let path = job["metrics_path"].as_str().unwrap_or("/metrics");
    assert_eq!(path, "/metrics");
    assert_eq!(
        job["scheme"].as_str().unwrap_or("http"),
        "http",
        "the admin server speaks plain HTTP"
    );

    // And grantshift's admin server does serve Prometheus text there.
    let proxy = TestProxy::start("").await;
    let reply = admin_get(proxy.admin_addr(), path).await;
    assert_eq!(reply.status, 200);
    assert!(reply.text().contains("grantshift_connections_total"));
}

/// `text` with its commented-out lines whose text after `# ` starts with one of `markers`
/// uncommented (indentation kept): the optional setup the deploy files document.
fn uncomment(text: &str, markers: &[&str]) -> String {
    text.lines()
        .map(|line| {
            let indent = line.len() - line.trim_start().len();
            match line[indent..].strip_prefix("# ") {
                Some(rest) if markers.iter().any(|m| rest.starts_with(m)) => {
                    format!("{}{rest}\n", &line[..indent])
                }
                _ => format!("{line}\n"),
            }
        })
        .collect()
}

#[tokio::test]
async fn the_documented_admin_token_setup_is_consistent_once_uncommented() {
    // docker-compose.yml: the token variable for grantshift, the token file for Prometheus.
    let compose_text = uncomment(
        &read(COMPOSE),
        &[
            "GRANTSHIFT_ADMIN_TOKEN:",
            "- ./deploy/grantshift-admin-token:",
        ],
    );
    let compose: Yaml = serde_yaml::from_str(&compose_text).expect("uncommented compose is YAML");
    let env = environment(service(&compose, "grantshift"));
    let var = "GRANTSHIFT_ADMIN_TOKEN";
    assert!(
        env.contains_key(var),
        "the grantshift service gets {var}: {env:?}"
    );

    // deploy/grantshift.toml names that variable.
    let toml = uncomment(&read("deploy/grantshift.toml"), &["admin_token_env"]);
    let token = "0123456789abcdef0123456789abcdef";
    let secrets = std::collections::HashMap::from([(var.to_string(), token.to_string())]);
    let config = Config::from_toml_str_with(&toml, &repo_path("deploy"), &secrets)
        .expect("the uncommented deploy config loads");
    assert_eq!(config.proxy.admin_token_env.as_deref(), Some(var));
    assert!(config.proxy.admin_token.is_some());

    // deploy/prometheus/prometheus.yml sends it from the file the compose file mounts, which
    // git ignores.
    let prom_text = uncomment(
        &read("deploy/prometheus/prometheus.yml"),
        &["authorization:", "  type:", "  credentials_file:"],
    );
    let prom_config: Yaml = serde_yaml::from_str(&prom_text).expect("uncommented prometheus.yml");
    let job = &prom_config["scrape_configs"][0];
    assert_eq!(
        job["authorization"]["type"].as_str(),
        Some("Bearer"),
        "{job:?}"
    );
    let file = job["authorization"]["credentials_file"]
        .as_str()
        .expect("authorization.credentials_file");
    let host_file = host_path_of(service(&compose, "prometheus"), file);
    assert_eq!(host_file, repo_path("deploy/grantshift-admin-token"));
    assert!(
        read(".gitignore")
            .lines()
            .any(|l| l == "/deploy/grantshift-admin-token"),
        "the token file is never committed"
    );

    // And a grantshift with that key wants exactly what Prometheus sends.
    let proxy = TestProxy::builder()
        .env(var, token)
        .proxy(&format!("admin_token_env = \"{var}\""))
        .start()
        .await;
    assert_eq!(admin_get(proxy.admin_addr(), "/metrics").await.status, 401);
    let scraped = testkit::admin::admin_get_bearer(proxy.admin_addr(), "/metrics", token).await;
    assert_eq!(scraped.status, 200);
}

#[test]
fn grafana_provisioning_points_at_prometheus_and_at_the_mounted_dashboards() {
    let compose = compose();
    let grafana = service(&compose, "grafana");
    let provisioning = host_path_of(grafana, "/etc/grafana/provisioning");

    let datasources = yaml_files(&provisioning.join("datasources"));
    assert!(!datasources.is_empty(), "a provisioned datasource");
    let prom_port = published_ports(service(&compose, "prometheus"))
        .first()
        .map(|p| p.2)
        .expect("prometheus port");
    let sources: Vec<Yaml> = datasources
        .iter()
        .flat_map(|f| {
            yaml_file(f)["datasources"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    let prometheus = sources
        .iter()
        .find(|d| d["type"].as_str() == Some("prometheus"))
        .expect("a prometheus datasource");
    assert_eq!(
        prometheus["url"].as_str(),
        Some(format!("http://prometheus:{prom_port}").as_str()),
        "the datasource is the compose prometheus service"
    );
    assert!(
        prometheus["uid"].as_str().is_some(),
        "the datasource has a uid"
    );

    let providers = yaml_files(&provisioning.join("dashboards"));
    assert!(!providers.is_empty(), "a dashboard provider");
    for file in providers {
        for provider in yaml_file(&file)["providers"]
            .as_sequence()
            .expect("providers")
        {
            let path = provider["options"]["path"].as_str().expect("options.path");
            let dir = host_path_of(grafana, path);
            let dashboards: Vec<_> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect();
            assert!(
                !dashboards.is_empty(),
                "{path} (host {}) holds dashboards",
                dir.display()
            );
        }
    }
}

/// `*.yml` / `*.yaml` files in `dir`.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Dashboard queries against a real scrape

/// Metric names (sample names as PromQL sees them) → label names, from `/metrics` of a running
/// grantshift that has upgraded a login and fallen back on another.
async fn exported_metrics() -> BTreeMap<String, BTreeSet<String>> {
    // Each login goes upstream (the second one after the world changed).
    let proxy = TestProxy::builder()
        .extra_toml(&acme_mapping())
        .token_cache_off()
        .start()
        .await;
    let reply = proxy.login(LOGIN_HOST, &acme_password_form()).await;
    assert_eq!(reply.status, 200);
    assert_eq!(proxy.next_event().await["action"], "upgraded");
    proxy
        .sf
        .edit(|w| w.org_mut(acme::ORG_ID).app_mut(acme::CLIENT_ID).run_as_user = None);
    let reply = proxy.login(LOGIN_HOST, &acme_password_form()).await;
    assert_eq!(reply.status, 200);
    assert_eq!(proxy.next_event().await["action"], "fallback");

    let exposition = scrape(proxy.admin_addr()).await;
    let mut names: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for family in &exposition.families {
        let suffixes: &[&str] = match family.kind.as_str() {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            _ => &[""],
        };
        for suffix in suffixes {
            names.entry(format!("{}{suffix}", family.name)).or_default();
        }
        for sample in &family.samples {
            names
                .entry(sample.name.clone())
                .or_default()
                .extend(sample.labels.iter().map(|(k, _)| k.clone()));
        }
    }
    names
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str,
    Num,
    Range,
    Punct(char),
}

fn tokenize(expr: &str) -> Vec<Tok> {
    let chars: Vec<char> = expr.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' || c == '\'' || c == '`' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            toks.push(Tok::Str);
        } else if c == '[' {
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
            i += 1;
            toks.push(Tok::Range);
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            toks.push(Tok::Num);
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            toks.push(Tok::Ident(chars[start..i].iter().collect()));
        } else {
            toks.push(Tok::Punct(c));
            i += 1;
        }
    }
    toks
}

/// What a PromQL expression uses: metric names with the labels their selectors match on, and
/// the labels of `by`/`without`/`on`/`ignoring` clauses.
#[derive(Debug, Default)]
struct Uses {
    metrics: Vec<(String, Vec<String>)>,
    grouping_labels: Vec<String>,
}

fn promql_uses(expr: &str) -> Uses {
    const GROUPING: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "inf", "nan"];
    // Aggregation operators may be followed by `by (…)` before their parenthesis.
    const AGGREGATORS: &[&str] = &[
        "sum",
        "avg",
        "min",
        "max",
        "count",
        "group",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "limitk",
        "limit_ratio",
    ];
    let toks = tokenize(expr);
    let mut uses = Uses::default();
    let mut i = 0;
    let label_list = |i: &mut usize, out: &mut Vec<String>, close: char| {
        while *i < toks.len() && toks[*i] != Tok::Punct(close) {
            if let Tok::Ident(label) = &toks[*i] {
                out.push(label.clone());
                // Skip the operator and the value of a matcher.
                while *i + 1 < toks.len()
                    && !matches!(
                        toks[*i + 1],
                        Tok::Punct(',') | Tok::Punct('}') | Tok::Punct(')')
                    )
                {
                    *i += 1;
                }
            }
            *i += 1;
        }
    };
    while i < toks.len() {
        match &toks[i] {
            Tok::Ident(word) if GROUPING.contains(&word.as_str()) => {
                if toks.get(i + 1) == Some(&Tok::Punct('(')) {
                    i += 2;
                    let mut labels = Vec::new();
                    label_list(&mut i, &mut labels, ')');
                    uses.grouping_labels.extend(labels);
                }
                i += 1;
            }
            Tok::Ident(word) if KEYWORDS.contains(&word.as_str()) => i += 1,
            Tok::Ident(word) if AGGREGATORS.contains(&word.as_str()) => i += 1,
            Tok::Ident(_) if toks.get(i + 1) == Some(&Tok::Punct('(')) => i += 1, // a function
            Tok::Ident(metric) => {
                let metric = metric.clone();
                let mut labels = Vec::new();
                i += 1;
                if toks.get(i) == Some(&Tok::Punct('{')) {
                    i += 1;
                    label_list(&mut i, &mut labels, '}');
                    i += 1;
                }
                uses.metrics.push((metric, labels));
            }
            _ => i += 1,
        }
    }
    uses
}

#[test]
fn promql_reader_finds_metrics_matchers_and_grouping_labels() {
    let uses = promql_uses(
        "histogram_quantile(0.99, sum by (le, kind) (rate(a_bucket{x=\"1\",y=~\"b|c\"}[5m]))) / on(kind) b_total",
    );
    assert_eq!(
        uses.metrics,
        vec![
            (
                "a_bucket".to_string(),
                vec!["x".to_string(), "y".to_string()]
            ),
            ("b_total".to_string(), vec![]),
        ]
    );
    assert_eq!(uses.grouping_labels, ["le", "kind", "kind"]);
}

/// The labels Prometheus attaches to every series of a scrape target.
const TARGET_LABELS: &[&str] = &["instance", "job"];

#[tokio::test]
async fn dashboard_queries_use_only_metrics_and_labels_grantshift_exports() {
    let compose = compose();
    let grafana = service(&compose, "grafana");
    let provisioning = host_path_of(grafana, "/etc/grafana/provisioning");
    let datasource_uids: BTreeSet<String> = yaml_files(&provisioning.join("datasources"))
        .iter()
        .flat_map(|f| {
            yaml_file(f)["datasources"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|d| d["uid"].as_str().map(str::to_string))
        .collect();
    let exported = exported_metrics().await;

    let dir = host_path_of(grafana, "/var/lib/grafana/dashboards");
    let mut queries = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let dashboard: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap())
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        let panels = dashboard["panels"].as_array().expect("panels");
        assert!(!panels.is_empty(), "{} has panels", path.display());
        for panel in panels {
            let title = panel["title"].as_str().unwrap_or("?");
            for target in panel["targets"].as_array().into_iter().flatten() {
                let uid = target["datasource"]["uid"]
                    .as_str()
                    .or(panel["datasource"]["uid"].as_str())
                    .unwrap_or_else(|| panic!("panel {title:?}: no datasource uid"));
                assert!(
                    datasource_uids.contains(uid),
                    "panel {title:?} uses datasource {uid:?}, provisioned: {datasource_uids:?}"
                );
                let expr = target["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("panel {title:?}: a target without expr"));
                queries += 1;
                let uses = promql_uses(expr);
                assert!(
                    !uses.metrics.is_empty(),
                    "panel {title:?}: `{expr}` names no metric"
                );
                // Prometheus adds its target labels to every series it scrapes: the fleet
                // dashboard's per-replica panels group by `instance`.
                let mut expr_labels: BTreeSet<String> =
                    TARGET_LABELS.iter().map(|l| l.to_string()).collect();
                for (metric, labels) in &uses.metrics {
                    let known = exported.get(metric).unwrap_or_else(|| {
                        panic!(
                            "panel {title:?} queries `{metric}`, which grantshift does not export; \
                             it exports {:?}",
                            exported.keys().collect::<Vec<_>>()
                        )
                    });
                    for label in labels {
                        assert!(
                            known.contains(label),
                            "panel {title:?}: `{metric}` has no label `{label}` (it has {known:?})"
                        );
                    }
                    expr_labels.extend(known.iter().cloned());
                }
                for label in &uses.grouping_labels {
                    assert!(
                        expr_labels.contains(label),
                        "panel {title:?}: `{expr}` groups by `{label}`, which none of its metrics has"
                    );
                }
            }
        }
    }
    assert!(queries > 0, "the dashboards have queries");
}

// ---------------------------------------------------------------------------------------------
// Dockerfile

/// One Dockerfile instruction: keyword (upper case) and its arguments (continuations joined).
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
    /// Index of the build stage (`FROM`) it belongs to.
    stage: usize,
}

fn dockerfile() -> Vec<Instruction> {
    let text = read("Dockerfile");
    let mut out = Vec::new();
    let mut current = String::new();
    let mut stage = 0;
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if trimmed.starts_with('#') {
            continue;
        }
        if let Some(body) = trimmed.strip_suffix('\\') {
            current.push_str(body);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (keyword, args) = current
            .split_once(char::is_whitespace)
            .unwrap_or((&current, ""));
        let keyword = keyword.to_ascii_uppercase();
        if keyword == "FROM" && !out.is_empty() {
            stage += 1;
        }
        out.push(Instruction {
            keyword,
            args: args.trim().to_string(),
            stage,
        });
        current.clear();
    }
    out
}

fn final_stage(instructions: &[Instruction]) -> impl Iterator<Item = &Instruction> {
    let last = instructions.iter().map(|i| i.stage).max().unwrap_or(0);
    instructions.iter().filter(move |i| i.stage == last)
}

/// A JSON-array (exec form) argument list.
fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| panic!("not exec form ({e}): {args}"))
}

#[test]
fn dockerfile_exposes_the_config_ports_and_runs_as_a_non_root_user() {
    let instructions = dockerfile();
    let config = grantshift_config(&compose());
    let exposed: BTreeSet<u16> = final_stage(&instructions)
        .filter(|i| i.keyword == "EXPOSE")
        .flat_map(|i| {
            i.args
                .split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .map(|p| p.trim_end_matches("/tcp").parse().expect("EXPOSE port"))
        .collect();
    assert_eq!(
        exposed,
        BTreeSet::from([config.proxy.listen.port(), admin_port(&config)]),
        "EXPOSE = the deploy config's listen and admin ports"
    );

    let user = final_stage(&instructions)
        .filter(|i| i.keyword == "USER")
        .last()
        .expect("the runtime stage sets USER");
    let name = user.args.split(':').next().unwrap();
    assert!(
        name != "root" && name != "0",
        "the container runs as a non-root user, not {name}"
    );

    // The image's default config path is the one compose mounts the deploy config at.
    let env_config = final_stage(&instructions)
        .filter(|i| i.keyword == "ENV")
        .find_map(|i| {
            i.args
                .strip_prefix("GRANTSHIFT_CONFIG=")
                .map(str::to_string)
        })
        .expect("ENV GRANTSHIFT_CONFIG");
    let compose = compose();
    assert_eq!(
        host_path_of(service(&compose, "grantshift"), &env_config),
        repo_path("deploy/grantshift.toml")
    );
    // The volumes compose mounts are the image's declared ones.
    let volumes: BTreeSet<String> = final_stage(&instructions)
        .filter(|i| i.keyword == "VOLUME")
        .flat_map(|i| exec_form(&i.args))
        .collect();
    let mounted: BTreeSet<String> = mounts(service(&compose, "grantshift"))
        .into_iter()
        .map(|m| m.target)
        .collect();
    assert_eq!(volumes, mounted, "VOLUME = what compose mounts");
}

#[test]
fn dockerfile_copies_only_files_that_exist_and_are_not_dockerignored() {
    let instructions = dockerfile();
    let ignored: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    let mut copied = 0;
    let stage_names: Vec<String> = instructions
        .iter()
        .filter(|i| i.keyword == "FROM")
        .filter_map(|i| {
            i.args
                .split_whitespace()
                .collect::<Vec<_>>()
                .windows(2)
                .find(|w| w[0].eq_ignore_ascii_case("as"))
                .map(|w| w[1].to_string())
        })
        .collect();
    for copy in instructions
        .iter()
        .filter(|i| i.keyword == "COPY" || i.keyword == "ADD")
    {
        let words: Vec<&str> = copy.args.split_whitespace().collect();
        let from = words.iter().find_map(|w| w.strip_prefix("--from="));
        let paths: Vec<&str> = words
            .iter()
            .filter(|w| !w.starts_with("--"))
            .copied()
            .collect();
        assert!(paths.len() >= 2, "{} {}", copy.keyword, copy.args);
        if let Some(stage) = from {
            assert!(
                stage_names.iter().any(|s| s == stage),
                "COPY --from={stage}: no such build stage"
            );
            continue;
        }
        for source in &paths[..paths.len() - 1] {
            copied += 1;
            assert!(
                repo_path(source).exists(),
                "COPY {source}: not in the build context"
            );
            for pattern in &ignored {
                let excluded = if let Some(ext) = pattern.strip_prefix('*') {
                    !pattern[1..].contains(['*', '/']) && source.ends_with(ext)
                } else {
                    *source == pattern.as_str() || source.starts_with(&format!("{pattern}/"))
                };
                assert!(
                    !excluded,
                    "COPY {source}: excluded by .dockerignore `{pattern}`"
                );
            }
        }
    }
    assert!(copied > 0, "the Dockerfile copies the sources");

    // The binary the image runs is the one the build stage copied in.
    let entrypoint = final_stage(&instructions)
        .find(|i| i.keyword == "ENTRYPOINT")
        .map(|i| exec_form(&i.args))
        .expect("ENTRYPOINT");
    assert!(
        final_stage(&instructions)
            .any(|i| i.keyword == "COPY" && i.args.ends_with(&format!(" {}", entrypoint[0]))),
        "ENTRYPOINT {} is copied into the runtime stage",
        entrypoint[0]
    );
}

/// Paths (relative to the build stage's WORKDIR) that the build stage's COPY instructions put
/// there from the build context.
fn build_stage_copies(instructions: &[Instruction]) -> (usize, Vec<String>) {
    let build = instructions
        .iter()
        .find(|i| i.keyword == "RUN" && i.args.contains("cargo build"))
        .expect("a stage runs cargo build");
    let mut copied = Vec::new();
    for copy in instructions
        .iter()
        .filter(|i| i.stage == build.stage && i.keyword == "COPY")
    {
        let words: Vec<&str> = copy.args.split_whitespace().collect();
        if words.iter().any(|w| w.starts_with("--from=")) {
            continue;
        }
        let paths: Vec<&str> = words
            .iter()
            .filter(|w| !w.starts_with("--"))
            .copied()
            .collect();
        let (dest, sources) = paths.split_last().expect("COPY src... dest");
        let dest = dest.trim_start_matches("./").trim_end_matches('/');
        for source in sources {
            let source = source.trim_start_matches("./").trim_end_matches('/');
            let name = Path::new(source).file_name().unwrap().to_string_lossy();
            let into_dir = sources.len() > 1 || dest.is_empty() || dest == ".";
            copied.push(match (into_dir, dest) {
                (true, "" | ".") => name.to_string(),
                (true, dir) => format!("{dir}/{name}"),
                (false, file) => file.to_string(),
            });
        }
    }
    (build.stage, copied)
}

#[test]
fn dockerfile_build_stage_copies_every_target_cargo_toml_declares() {
    // `cargo build --bin grantshift` parses the whole manifest: every declared target's file
    // (and every workspace member's and path dependency's manifest) must be in the image, or
    // the build fails before compiling anything ("can't find `x` bench at `benches/x.rs`").
    let instructions = dockerfile();
    let (_, copied) = build_stage_copies(&instructions);
    let available = |path: &str| {
        copied
            .iter()
            .any(|c| path == c || path.starts_with(&format!("{c}/")))
    };
    for file in ["Cargo.toml", "Cargo.lock"] {
        assert!(available(file), "the build stage copies {file}: {copied:?}");
    }
    let manifest: toml::Value = toml::from_str(&read("Cargo.toml")).expect("Cargo.toml parses");
    let package = manifest["package"]["name"].as_str().unwrap().to_string();
    let mut targets: Vec<(String, String)> = Vec::new();
    let lib_path = manifest
        .get("lib")
        .and_then(|l| l.get("path"))
        .and_then(|p| p.as_str())
        .unwrap_or("src/lib.rs");
    if manifest.get("lib").is_some() || repo_path("src/lib.rs").exists() {
        targets.push(("lib".into(), lib_path.into()));
    }
    for (kind, dir) in [
        ("bin", "src/bin"),
        ("bench", "benches"),
        ("example", "examples"),
        ("test", "tests"),
    ] {
        for target in manifest
            .get(kind)
            .and_then(|t| t.as_array())
            .into_iter()
            .flatten()
        {
            let name = target["name"].as_str().expect("target name");
            let path = match target.get("path").and_then(|p| p.as_str()) {
                Some(p) => p.to_string(),
                None if kind == "bin" && name == package => "src/main.rs".into(),
                None => {
                    let flat = format!("{dir}/{name}.rs");
                    if repo_path(&flat).exists() {
                        flat
                    } else {
                        format!("{dir}/{name}/main.rs")
                    }
                }
            };
            targets.push((format!("{kind} `{name}`"), path));
        }
    }
    if let Some(build) = manifest["package"].get("build").and_then(|b| b.as_str()) {
        targets.push(("build script".into(), build.into()));
    } else if repo_path("build.rs").exists() {
        targets.push(("build script".into(), "build.rs".into()));
    }
    // Workspace members and path dependencies are manifests cargo loads as well, with their
    // targets ("failed to load manifest for workspace member").
    let mut packages: Vec<&str> = manifest
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(|m| m.as_array())
        .into_iter()
        .flatten()
        .filter_map(|m| m.as_str())
        .collect();
    for table in ["dependencies", "dev-dependencies", "build-dependencies"] {
        for dep in manifest
            .get(table)
            .and_then(|t| t.as_table())
            .into_iter()
            .flat_map(|t| t.values())
        {
            packages.extend(dep.get("path").and_then(|p| p.as_str()));
        }
    }
    let mut packages: Vec<&str> = packages
        .into_iter()
        .map(|dir| dir.trim_start_matches("./").trim_end_matches('/'))
        .collect();
    packages.sort_unstable();
    packages.dedup();
    for dir in packages {
        if dir.is_empty() || dir == "." {
            continue;
        }
        for file in ["Cargo.toml", "src/lib.rs", "src/main.rs"] {
            let path = format!("{dir}/{file}");
            if repo_path(&path).exists() {
                targets.push((format!("package `{dir}`"), path));
            }
        }
    }
    let missing: Vec<String> = targets
        .iter()
        .filter(|(_, path)| !available(path.trim_start_matches("./")))
        .map(|(what, path)| format!("{what} at {path}"))
        .collect();
    assert!(
        missing.is_empty(),
        "Cargo.toml declares targets or packages whose files the Dockerfile's build stage does not COPY \
         (cargo build in the image fails to parse the manifest): {missing:?}; the build stage \
         copies {copied:?}"
    );
}

/// The final stage's `ENV` value of `name`.
fn dockerfile_env(instructions: &[Instruction], name: &str) -> Option<String> {
    final_stage(instructions)
        .filter(|i| i.keyword == "ENV")
        .find_map(|i| i.args.strip_prefix(&format!("{name}=")).map(str::to_owned))
}

/// How long a probe of nothing may take: its own limit and the process start.
const UNHEALTHY_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

#[tokio::test]
async fn dockerfile_healthcheck_runs_grantshift_healthcheck_at_the_configured_admin_address() {
    let instructions = dockerfile();
    let healthcheck = final_stage(&instructions)
        .find(|i| i.keyword == "HEALTHCHECK")
        .expect("HEALTHCHECK");
    let cmd_at = healthcheck.args.find("CMD").expect("HEALTHCHECK ... CMD");
    let command = exec_form(healthcheck.args[cmd_at + 3..].trim());
    let entrypoint = exec_form(
        &final_stage(&instructions)
            .find(|i| i.keyword == "ENTRYPOINT")
            .expect("ENTRYPOINT")
            .args,
    );
    assert_eq!(
        command,
        [entrypoint[0].as_str(), "healthcheck"],
        "the HEALTHCHECK runs the image's grantshift, which reads the admin address from the config"
    );
    // The config it reads is the one `run` reads: $GRANTSHIFT_CONFIG, as the compose file sets it.
    let compose = compose();
    let config_env =
        dockerfile_env(&instructions, "GRANTSHIFT_CONFIG").expect("ENV GRANTSHIFT_CONFIG");
    assert_eq!(
        environment(service(&compose, "grantshift")).get("GRANTSHIFT_CONFIG"),
        Some(&config_env)
    );
    let timeout = healthcheck
        .args
        .split_whitespace()
        .find_map(|a| a.strip_prefix("--timeout="))
        .expect("HEALTHCHECK --timeout");
    assert!(
        timeout
            .strip_suffix('s')
            .and_then(|s| s.parse::<u64>().ok())
            > Some(grantshift::healthcheck::TIMEOUT.as_secs()),
        "Docker's --timeout={timeout} leaves the probe its own {:?} limit",
        grantshift::healthcheck::TIMEOUT
    );

    // A live grantshift whose admin server is on a port of its own (not the default 9464) and
    // wants a token (the health check needs none: /readyz is open).
    let var = "GRANTSHIFT_ADMIN_TOKEN";
    let token = "0123456789abcdef0123456789abcdef";
    let proxy = TestProxy::builder()
        .env(var, token)
        .proxy(&format!("admin_token_env = \"{var}\""))
        .start()
        .await;
    let port = proxy.admin_addr().port();
    assert_ne!(port, 9464);
    let dir = tempfile::tempdir().unwrap();
    let probe = |admin_listen: String| {
        let path = dir
            .path()
            .join(format!("probe-{}.toml", admin_listen.len()));
        std::fs::write(
            &path,
            format!("[proxy]\nadmin_listen = \"{admin_listen}\"\nadmin_token_env = \"{var}\"\n"),
        )
        .unwrap();
        let mut cmd = crate::GRANTSHIFT.command(dir.path());
        cmd.args(&command[1..])
            .env("GRANTSHIFT_CONFIG", &path)
            .env(var, token);
        cmd
    };
    // Listening on every address, as in the container: probed on loopback.
    let healthy = run_to_end(probe(format!("0.0.0.0:{port}"))).await;
    assert!(healthy.status.success(), "{healthy:?}");
    assert_eq!(
        healthy.stdout.trim(),
        format!("healthy: http://127.0.0.1:{port}/readyz: 200 ready"),
        "{healthy:?}"
    );

    // Nothing there: exit 1 soon, and say what was probed and why it failed.
    let closed = closed_port();
    let started = std::time::Instant::now();
    let unhealthy = run_to_end(probe(closed.to_string())).await;
    let took = started.elapsed();
    assert_eq!(unhealthy.status.code(), Some(1), "{unhealthy:?}");
    assert!(took < UNHEALTHY_WITHIN, "took {took:?}");
    let said = unhealthy.stderr.trim();
    assert!(
        said.starts_with(&format!("grantshift: unhealthy: http://{closed}/readyz"))
            && said.contains("cannot connect")
            && said.lines().count() == 1,
        "one line with the address and the reason: {unhealthy:?}"
    );
    assert!(unhealthy.stdout.is_empty(), "{unhealthy:?}");
}

/// Every `docker compose cp <service>:<path> <dest>` in README.md and docs/*.md.
fn documented_compose_copies() -> Vec<(String, String, String, String)> {
    let mut docs = vec![repo_path("README.md")];
    let mut more: Vec<PathBuf> = std::fs::read_dir(repo_path("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    more.sort();
    docs.extend(more);
    let mut out = Vec::new();
    for doc in docs {
        let text = std::fs::read_to_string(&doc).unwrap();
        let name = doc.file_name().unwrap().to_string_lossy().into_owned();
        for line in text.lines() {
            let Some((_, rest)) = line.split_once("docker compose cp ") else {
                continue;
            };
            let args: Vec<&str> = rest.split_whitespace().take(2).collect();
            let (source, dest) = (args[0].trim_matches('`'), args[1].trim_matches('`'));
            let (service, path) = source
                .split_once(':')
                .unwrap_or_else(|| panic!("{name}: `{line}` copies from no service"));
            out.push((name.clone(), service.into(), path.into(), dest.into()));
        }
    }
    out
}

#[test]
fn the_documented_ca_copy_names_the_ca_file_the_container_config_uses() {
    let compose = compose();
    let config = grantshift_config(&compose);
    let copies = documented_compose_copies();
    let ca_copies: Vec<_> = copies
        .iter()
        .filter(|(_, _, path, _)| path.ends_with(".pem"))
        .collect();
    assert!(
        !ca_copies.is_empty(),
        "the docs show how to copy the CA out of the container: {copies:?}"
    );
    let data_volumes: Vec<String> = mounts(service(&compose, "grantshift"))
        .into_iter()
        .filter(|m| !m.is_bind())
        .map(|m| m.target)
        .collect();
    for (doc, svc, path, dest) in ca_copies {
        assert_eq!(
            svc, "grantshift",
            "{doc}: the compose service is grantshift"
        );
        assert_eq!(
            Path::new(path),
            config.ca.cert,
            "{doc}: the copied file is [ca].cert of the container's config"
        );
        assert!(
            data_volumes
                .iter()
                .any(|v| Path::new(path).starts_with(v)),
            "{doc}: {path} is in a volume of the grantshift service ({data_volumes:?}), so it outlives the container"
        );
        assert!(!dest.contains(".key"), "{doc}: only the certificate leaves");
    }
    // The key is never the documented copy.
    assert!(
        copies
            .iter()
            .all(|(_, _, path, _)| Path::new(path) != config.ca.key),
        "{copies:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The fleet (profile `fleet`): deploy/fleet/, deploy/haproxy/, deploy/prometheus/fleet.yml

const REPLICAS: [&str; 2] = ["gs-a", "gs-b"];

fn profiles(service: &Yaml) -> Vec<String> {
    service["profiles"]
        .as_sequence()
        .map(|v| v.iter().map(str_of).collect())
        .unwrap_or_default()
}

/// A replica's config file (its `GRANTSHIFT_CONFIG` through its bind mount) as TOML.
fn replica_config_toml(compose: &Yaml, name: &str) -> (PathBuf, toml::Table) {
    let svc = service(compose, name);
    let in_container = environment(svc)
        .remove("GRANTSHIFT_CONFIG")
        .unwrap_or_else(|| panic!("{name} sets GRANTSHIFT_CONFIG"));
    let path = host_path_of(svc, &in_container);
    let text = std::fs::read_to_string(&path).unwrap();
    let table: toml::Table = text
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (path, table)
}

/// The replica's config as grantshift loads it, without its `[cluster]` table: that table is
/// read by the shared-state code (src/cluster, which needs GRANTSHIFT_CLUSTER_KEY in the
/// environment to load it) and checked on its own below.
fn replica_config(table: &toml::Table) -> Config {
    let mut without = table.clone();
    without.remove("cluster");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("grantshift.toml");
    std::fs::write(&file, toml::to_string(&without).unwrap()).unwrap();
    Config::load_file(&file).unwrap_or_else(|e| panic!("the fleet config is rejected: {e}"))
}

/// The named volume mounted at (or above) `path` in `svc`, and whether it is read-only.
fn volume_of(svc: &Yaml, path: &Path) -> Mount {
    mounts(svc)
        .into_iter()
        .filter(|m| !m.is_bind() && path.starts_with(&m.target))
        .max_by_key(|m| m.target.len())
        .unwrap_or_else(|| panic!("no named volume holds {}", path.display()))
}

#[test]
fn the_fleet_profile_runs_two_replicas_on_one_config_sharing_one_read_only_ca() {
    let compose = compose();
    for name in ["grantshift", "prometheus", "grafana"] {
        assert!(
            profiles(service(&compose, name)).is_empty(),
            "{name}: `docker compose up` without a profile runs what it ran before"
        );
    }
    for name in REPLICAS
        .iter()
        .chain(&["fleet-ca", "valkey", "haproxy", "prometheus-fleet"])
    {
        assert_eq!(profiles(service(&compose, name)), ["fleet"], "{name}");
    }

    let fleet_ca = service(&compose, "fleet-ca");
    let ca_config = Config::load_file(&host_path_of(
        fleet_ca,
        &environment(fleet_ca)["GRANTSHIFT_CONFIG"],
    ))
    .expect("the fleet-ca config loads");
    let ca_volume = volume_of(fleet_ca, &ca_config.ca.cert);
    assert!(!ca_volume.read_only, "fleet-ca writes the CA");
    let in_volume = |m: &Mount, p: &Path| p.strip_prefix(&m.target).unwrap().to_path_buf();

    let mut paths = Vec::new();
    let mut first: Option<toml::Table> = None;
    for name in REPLICAS {
        let svc = service(&compose, name);
        let (path, table) = replica_config_toml(&compose, name);
        assert_eq!(path, repo_path("deploy/fleet/grantshift.toml"), "{name}");
        match &first {
            None => first = Some(table.clone()),
            Some(t) => assert_eq!(t, &table, "every replica runs the same config"),
        }
        let config = replica_config(&table);
        assert!(config.proxy.listen.ip().is_unspecified());
        assert!(!config.proxy.allow_clients.is_empty());
        assert_eq!(svc["hostname"].as_str(), Some(name), "the replica's name");

        // The one CA: the fleet-ca volume, read-only, the same files fleet-ca created.
        for (cert_or_key, created) in [
            (&config.ca.cert, &ca_config.ca.cert),
            (&config.ca.key, &ca_config.ca.key),
        ] {
            let m = volume_of(svc, cert_or_key);
            assert_eq!(m.source, ca_volume.source, "{name}: the CA is the fleet's");
            assert!(m.read_only, "{name}: the CA is mounted read-only");
            assert_eq!(in_volume(&m, cert_or_key), in_volume(&ca_volume, created));
        }
        // Its own record: events and state in a writable volume of its own.
        for p in [PathBuf::from(&config.telemetry.events), config.state.dir] {
            let m = volume_of(svc, &p);
            assert!(!m.read_only, "{name}: {} is writable", p.display());
            assert_ne!(m.source, ca_volume.source);
            paths.push(m.source);
        }
        // Shared state: [cluster] on the compose valkey, its key from the environment.
        let cluster = table["cluster"].as_table().expect("[cluster]");
        assert_eq!(
            cluster["redis"].as_str(),
            Some("redis://valkey:6379/0"),
            "{name}"
        );
        assert!(
            environment(svc).contains_key("GRANTSHIFT_CLUSTER_KEY"),
            "{name} passes GRANTSHIFT_CLUSTER_KEY"
        );
        assert!(svc["depends_on"]["fleet-ca"].is_mapping(), "{name}");
        assert!(svc["depends_on"]["valkey"].is_mapping(), "{name}");
    }
    paths.sort();
    paths.dedup();
    assert_eq!(
        paths.len(),
        2,
        "each replica its own data volume: {paths:?}"
    );
    assert!(profiles(service(&compose, "valkey")).contains(&"fleet".to_string()));
    assert!(
        service(&compose, "valkey")["ports"].is_null(),
        "Valkey is not published on the host"
    );
}

#[test]
fn haproxy_balances_tcp_to_each_replica_and_checks_its_readyz() {
    let compose = compose();
    let lb = service(&compose, "haproxy");
    let cfg_path = host_path_of(lb, "/usr/local/etc/haproxy/haproxy.cfg");
    assert_eq!(cfg_path, repo_path("deploy/haproxy/haproxy.cfg"));
    // Debian's haproxy accepts it (the replicas' names do not resolve here: `init-addr none`
    // lets HAProxy start before they do).
    let out = std::process::Command::new(testkit::haproxy::HAPROXY)
        .arg("-c")
        .arg("-f")
        .arg(&cfg_path)
        .output()
        .expect("run haproxy -c");
    assert!(
        out.status.success(),
        "haproxy -c: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&cfg_path).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for want in [
        "mode tcp",
        "option httpchk",
        "http-check expect status 200",
        "option redispatch 1",
    ] {
        assert!(lines.contains(&want), "haproxy.cfg has `{want}`");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("http-check send meth GET uri /readyz")),
        "the health check is GET /readyz"
    );
    let (_, table) = replica_config_toml(&compose, REPLICAS[0]);
    let config = replica_config(&table);
    let (listen, admin) = (config.proxy.listen.port(), admin_port(&config));
    for name in REPLICAS {
        let want = format!("server {name} {name}:{listen} check port {admin}");
        assert!(lines.contains(&want.as_str()), "haproxy.cfg has `{want}`");
    }
    let frontend_port = lines
        .iter()
        .skip_while(|l| **l != "frontend grantshift")
        .find_map(|l| l.strip_prefix("bind :"))
        .expect("frontend grantshift binds a port");
    let published = published_ports(lb);
    assert!(
        published
            .iter()
            .any(|(ip, _, c)| ip.as_deref() == Some("127.0.0.1") && c.to_string() == frontend_port),
        "the frontend's port is published on loopback: {published:?}"
    );
}

#[test]
fn the_fleet_prometheus_scrapes_every_replica_and_grafana_has_its_datasource() {
    let compose = compose();
    let prom = service(&compose, "prometheus-fleet");
    let config_flag = prom["command"]
        .as_sequence()
        .expect("command")
        .iter()
        .map(str_of)
        .find_map(|a| a.strip_prefix("--config.file=").map(str::to_string))
        .expect("--config.file");
    let host = host_path_of(prom, &config_flag);
    assert_eq!(host, repo_path("deploy/prometheus/fleet.yml"));
    let prom_config = yaml_file(&host);
    let (_, table) = replica_config_toml(&compose, REPLICAS[0]);
    let admin = admin_port(&replica_config(&table));
    let job = prom_config["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|j| j["job_name"].as_str() == Some("grantshift"))
        .expect("job grantshift (the alerts select it)");
    let targets: BTreeSet<String> = job["static_configs"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|sc| sc["targets"].as_sequence().into_iter().flatten())
        .map(str_of)
        .collect();
    let want: BTreeSet<String> = REPLICAS.iter().map(|r| format!("{r}:{admin}")).collect();
    assert_eq!(targets, want);
    let rules = host_path_of(prom, "/etc/prometheus/alerts.yml");
    assert_eq!(rules, repo_path("deploy/prometheus/alerts.yml"));

    let grafana = service(&compose, "grafana");
    let provisioning = host_path_of(grafana, "/etc/grafana/provisioning");
    let port = published_ports(prom).first().map(|p| p.2).expect("port");
    let fleet_source = yaml_files(&provisioning.join("datasources"))
        .iter()
        .flat_map(|f| {
            yaml_file(f)["datasources"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
        })
        .find(|d| d["uid"].as_str() == Some("prometheus-fleet"))
        .expect("the prometheus-fleet datasource");
    assert_eq!(
        fleet_source["url"].as_str(),
        Some(format!("http://prometheus-fleet:{port}").as_str())
    );
}
