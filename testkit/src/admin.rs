//! The admin server from a test's side: plain HTTP/1.1 requests to it, a strict parser for
//! the OpenMetrics text it serves on `/metrics`, and `grantshift report` runs.

use super::bin::{run_to_end, Binary, Finished};
use super::client::{empty, full, Http, HttpConn, Reply};
use http::{Method, Request};
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;

/// `method path` on the admin server, on a fresh connection, with `body` (if any).
pub async fn admin_request(
    admin: SocketAddr,
    method: Method,
    path: &str,
    body: Option<&str>,
) -> Reply {
    admin_request_with(admin, method, path, body, &[]).await
}

/// `GET path` on the admin server with `Authorization: Bearer token`.
pub async fn admin_get_bearer(admin: SocketAddr, path: &str, token: &str) -> Reply {
    let authorization = format!("Bearer {token}");
    admin_request_with(
        admin,
        Method::GET,
        path,
        None,
        &[("authorization", &authorization)],
    )
    .await
}

/// [`admin_request`] with extra request `headers`.
pub async fn admin_request_with(
    admin: SocketAddr,
    method: Method,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Reply {
    let tcp = tokio::net::TcpStream::connect(admin)
        .await
        .expect("connect to the admin server");
    let mut conn = HttpConn::handshake(tcp, Http::H1).await;
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", admin.to_string());
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(full(b.to_string())),
        None => req.body(empty()),
    }
    .unwrap();
    conn.send(req).await
}

/// `GET path` on the admin server.
pub async fn admin_get(admin: SocketAddr, path: &str) -> Reply {
    admin_request(admin, Method::GET, path, None).await
}

/// `GET path` on the admin server over a fresh connection, bounded by `timeout`: the body of
/// a `200`, else an error (for the load tools, which report it rather than panic).
pub async fn try_admin_get(
    admin: SocketAddr,
    path: &str,
    timeout: std::time::Duration,
) -> Result<String, String> {
    use http_body_util::{BodyExt, Empty};
    let fetch = async {
        let tcp = tokio::net::TcpStream::connect(admin)
            .await
            .map_err(|e| format!("connecting to the admin server: {e}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .map_err(|e| format!("admin handshake: {e}"))?;
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header("host", admin.to_string())
            .header("connection", "close")
            .body(Empty::<bytes::Bytes>::new())
            .map_err(|e| format!("GET {path}: {e}"))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("GET {path}: {e}"))?
            .to_bytes();
        drop(sender);
        let _ = conn.await;
        if status != http::StatusCode::OK {
            return Err(format!("GET {path}: status {status}"));
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    };
    tokio::time::timeout(timeout, fetch)
        .await
        .unwrap_or_else(|_| Err(format!("GET {path}: no answer within {timeout:?}")))
}

/// `GET /report`, parsed (status 200 and a JSON content type asserted), without its
/// `summary` (which says when it was made: see [`without_summary`]).
pub async fn live_report(admin: SocketAddr) -> serde_json::Value {
    without_summary(live_report_with_summary(admin).await)
}

/// `GET /report`, parsed, as served (with its `summary`).
pub async fn live_report_with_summary(admin: SocketAddr) -> serde_json::Value {
    let reply = admin_get(admin, "/report").await;
    assert_eq!(reply.status, 200, "/report: {}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("/report is not JSON ({e}): {}", reply.text()))
}

/// A report's JSON without its `summary` (asserted present, with its one-line text): the
/// summary depends on the time it was made (`generated_at`, the last 24 hours, days left),
/// the rest only on the events, so two reports of the same events compare equal without it.
pub fn without_summary(mut report: serde_json::Value) -> serde_json::Value {
    let summary = report
        .as_object_mut()
        .and_then(|o| o.remove("summary"))
        .unwrap_or_else(|| panic!("the report has a summary: {report}"));
    assert!(summary["line"].is_string(), "summary.line: {summary}");
    report
}

/// `GET /metrics`, parsed strictly (status 200 and the OpenMetrics content type asserted).
pub async fn scrape(admin: SocketAddr) -> Exposition {
    let reply = admin_get(admin, "/metrics").await;
    assert_eq!(reply.status, 200, "/metrics: {}", reply.text());
    let content_type = reply.header("content-type").unwrap_or("");
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "/metrics is OpenMetrics text: content type {content_type:?}"
    );
    let text = reply.text();
    parse_openmetrics(&text)
        .unwrap_or_else(|e| panic!("/metrics is not valid OpenMetrics text: {e}\n---\n{text}"))
}

/// `grantshift report --events F1 --events F2 ... <extra>` run in `cwd`.
pub async fn report_cli(binary: Binary, cwd: &Path, files: &[&Path], extra: &[&str]) -> Finished {
    let mut cmd = binary.command(cwd);
    cmd.arg("report");
    for f in files {
        cmd.arg("--events").arg(f);
    }
    cmd.args(extra);
    let out = run_to_end(cmd).await;
    assert!(
        out.status.success(),
        "grantshift report {extra:?} failed: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
    out
}

/// `grantshift report --json` over `files`, parsed.
pub async fn report_cli_json(binary: Binary, cwd: &Path, files: &[&Path]) -> serde_json::Value {
    let out = report_cli(binary, cwd, files, &["--json"]).await;
    without_summary(
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("report --json is not JSON ({e}):\n{}", out.stdout)),
    )
}

/// Each credential set of a report (`grant client_id username`) and its `counts`: what the
/// replicas of a fleet and the events files must agree on.
pub fn report_sets(report: &serde_json::Value) -> BTreeMap<String, serde_json::Value> {
    report["credentials"]
        .as_array()
        .expect("credentials")
        .iter()
        .map(|row| {
            let key = format!("{} {} {}", row["grant"], row["client_id"], row["username"]);
            (key, row["counts"].clone())
        })
        .collect()
}

/// Poll the `/report` of every admin server in `admins` until each shows `done(sets)` true
/// for its [`report_sets`] and all show the same; panics after `secs` seconds naming what
/// each showed. Returns the agreed sets.
pub async fn wait_reports_agree(
    admins: &[SocketAddr],
    secs: u64,
    done: impl Fn(&BTreeMap<String, serde_json::Value>) -> bool,
) -> BTreeMap<String, serde_json::Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let mut seen = Vec::new();
        for admin in admins {
            seen.push(report_sets(&live_report(*admin).await));
        }
        if seen.iter().all(|s| done(s) && s == &seen[0]) {
            return seen.swap_remove(0);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the reports did not agree within {secs} s: {seen:#?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The total of every count of every set in `sets` ([`report_sets`]): the logins counted.
pub fn counted_logins(sets: &BTreeMap<String, serde_json::Value>) -> u64 {
    sets.values()
        .flat_map(|counts| counts.as_object().into_iter().flat_map(|o| o.values()))
        .filter_map(serde_json::Value::as_u64)
        .sum()
}

/// `grantshift -c <config> report --cluster --json` (with the fleet key of the test
/// replicas): the fleet's report from the shared stream, without its summary.
pub async fn report_cluster_json(binary: Binary, cwd: &Path, config: &Path) -> serde_json::Value {
    let mut cmd = binary.command(cwd);
    cmd.arg("-c")
        .arg(config)
        .args(["report", "--cluster", "--json"])
        .env(
            grantshift::config::CLUSTER_KEY_ENV,
            super::redis::TEST_CLUSTER_KEY,
        );
    let out = run_to_end(cmd).await;
    assert!(out.status.success(), "report --cluster: {}", out.stderr);
    without_summary(
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("report --cluster is not JSON ({e}): {}", out.stdout)),
    )
}

/// The row of a report for `(client_id, username)`.
pub fn report_row<'a>(
    report: &'a serde_json::Value,
    client_id: &str,
    username: &str,
) -> &'a serde_json::Value {
    report["credentials"]
        .as_array()
        .expect("report.credentials is an array")
        .iter()
        .find(|r| r["client_id"] == client_id && r["username"] == username)
        .unwrap_or_else(|| {
            panic!(
                "no report row for ({client_id}, {username}):\n{}",
                serde_json::to_string_pretty(report).unwrap()
            )
        })
}

// ---------------------------------------------------------------------------------------------
// OpenMetrics text (what prometheus-client writes and Prometheus scrapes)

/// A label set: `(name, value)` pairs.
pub type Labels = Vec<(String, String)>;

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    /// In the order written.
    pub labels: Labels,
    pub value: f64,
}

/// One metric family: its metadata and samples, in the order written.
#[derive(Clone, Debug)]
pub struct Family {
    pub name: String,
    pub kind: String,
    pub help: Option<String>,
    pub unit: Option<String>,
    pub samples: Vec<Sample>,
}

/// A parsed exposition.
#[derive(Clone, Debug)]
pub struct Exposition {
    pub families: Vec<Family>,
}

impl Exposition {
    /// Every series of sample `name` as `label set -> value` (label sets sorted by name).
    pub fn series(&self, name: &str) -> BTreeMap<Labels, f64> {
        self.families
            .iter()
            .flat_map(|f| &f.samples)
            .filter(|s| s.name == name)
            .map(|s| {
                let mut labels = s.labels.clone();
                labels.sort();
                (labels, s.value)
            })
            .collect()
    }

    /// The value of the sample `name{labels}` (labels in any order); `None` if absent.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.series(name).get(&label_set(labels)).copied()
    }
}

/// A label set as [`Exposition::series`] keys it.
pub fn label_set(labels: &[(&str, &str)]) -> Labels {
    let mut v: Labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.sort();
    v
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_number(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ if s.is_empty()
            || s.contains(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E') =>
        {
            Err(format!("not a number: {s:?}"))
        }
        _ => s
            .parse::<f64>()
            .map_err(|e| format!("not a number {s:?}: {e}")),
    }
}

/// `{name="value",...}` at the start of `s`: the labels and the rest of the line.
fn parse_labels(s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    let mut rest = s.strip_prefix('{').expect("caller checked");
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or("label without '='")?;
        let name = &rest[..eq];
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        if labels.iter().any(|(n, _)| n == name) {
            return Err(format!("duplicate label {name:?}"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or_else(|| format!("label {name} value is not quoted"))?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("unterminated value of label {name}")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape in label {name}: {other:?}")),
                },
                Some((_, '\n')) => return Err(format!("raw newline in label {name}")),
                Some((_, c)) => value.push(c),
            }
        };
        labels.push((name.to_string(), value));
        rest = &rest[end + 1..];
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
            if rest.starts_with('}') {
                return Err("trailing comma in label set".into());
            }
        } else if !rest.starts_with('}') {
            return Err(format!("expected ',' or '}}' after label {name}"));
        }
    }
}

/// The sample-name suffixes a family of `kind` may have.
fn allowed_suffixes(kind: &str) -> &'static [&'static str] {
    match kind {
        "counter" => &["_total", "_created"],
        "gauge" | "unknown" => &[""],
        "histogram" => &["_bucket", "_count", "_sum", "_created"],
        "gaugehistogram" => &["_bucket", "_gcount", "_gsum"],
        "summary" => &["", "_count", "_sum", "_created"],
        "info" => &["_info"],
        "stateset" => &[""],
        _ => &[],
    }
}

/// Parse OpenMetrics 1.0 text strictly: `# TYPE`/`# HELP`/`# UNIT` before a family's samples,
/// each family once and contiguous, sample names that belong to their family's type, valid
/// names, quoted and escaped label values, numeric values, no duplicate series, no blank
/// lines, non-negative counters, cumulative histogram buckets ending in `+Inf` = `_count`,
/// and `# EOF` as the last line.
pub fn parse_openmetrics(text: &str) -> Result<Exposition, String> {
    let body = text
        .strip_suffix("# EOF\n")
        .or_else(|| text.strip_suffix("# EOF"))
        .ok_or("the exposition does not end with `# EOF`")?;
    let mut families: Vec<Family> = Vec::new();
    let mut seen_names = HashSet::new();
    let mut seen_series = HashSet::new();
    for (n, line) in body.lines().enumerate() {
        let at = |msg: String| format!("line {}: {msg}: {line:?}", n + 1);
        if line.is_empty() {
            return Err(at("blank line".into()));
        }
        if let Some(meta) = line.strip_prefix("# ") {
            let mut parts = meta.splitn(3, ' ');
            let keyword = parts.next().unwrap_or("");
            let name = parts
                .next()
                .ok_or_else(|| at("metadata without a name".into()))?;
            let value = parts.next();
            if !is_metric_name(name) {
                return Err(at(format!("bad family name {name:?}")));
            }
            let current_is = families
                .last()
                .is_some_and(|f| f.name == name && f.samples.is_empty());
            if !current_is {
                if !seen_names.insert(name.to_string()) {
                    return Err(at(format!("family {name} appears twice (interleaved)")));
                }
                families.push(Family {
                    name: name.to_string(),
                    kind: "unknown".into(),
                    help: None,
                    unit: None,
                    samples: Vec::new(),
                });
            }
            let family = families.last_mut().unwrap();
            match (keyword, value) {
                ("TYPE", Some(kind)) => {
                    if allowed_suffixes(kind).is_empty() {
                        return Err(at(format!("unknown type {kind:?}")));
                    }
                    family.kind = kind.to_string();
                }
                ("HELP", Some(help)) => {
                    if family.help.replace(help.to_string()).is_some() {
                        return Err(at("second HELP".into()));
                    }
                }
                ("UNIT", Some(unit)) => {
                    if !name.ends_with(&format!("_{unit}")) {
                        return Err(at(format!("family name does not end with its unit {unit}")));
                    }
                    family.unit = Some(unit.to_string());
                }
                _ => return Err(at(format!("unknown metadata {keyword:?}"))),
            }
            continue;
        }
        if line.starts_with('#') {
            return Err(at("comment that is not HELP/TYPE/UNIT/EOF".into()));
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| at("sample without a value".into()))?;
        let name = &line[..name_end];
        if !is_metric_name(name) {
            return Err(at(format!("bad sample name {name:?}")));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(at)?
        } else {
            (Vec::new(), &line[name_end..])
        };
        let rest = rest
            .strip_prefix(' ')
            .ok_or_else(|| at("no space before the value".into()))?;
        let rest = rest.split(" # ").next().unwrap(); // an exemplar may follow
        let mut fields = rest.split(' ');
        let value = parse_number(fields.next().unwrap_or("")).map_err(at)?;
        if let Some(ts) = fields.next() {
            parse_number(ts).map_err(|e| at(format!("timestamp: {e}")))?;
        }
        if fields.next().is_some() {
            return Err(at("trailing fields".into()));
        }
        let family = families
            .last_mut()
            .ok_or_else(|| at("sample before any TYPE".into()))?;
        let suffix = name
            .strip_prefix(family.name.as_str())
            .ok_or_else(|| at(format!("sample is not of family {}", family.name)))?;
        if !allowed_suffixes(&family.kind).contains(&suffix) {
            return Err(at(format!(
                "suffix {suffix:?} is not allowed for a {} ({})",
                family.kind, family.name
            )));
        }
        if family.kind == "counter" && suffix == "_total" && (value.is_nan() || value < 0.0) {
            return Err(at("negative or NaN counter".into()));
        }
        let has_le = labels.iter().any(|(k, _)| k == "le");
        if suffix == "_bucket" && !has_le {
            return Err(at("bucket without le".into()));
        }
        let mut key = labels.clone();
        key.sort();
        if !seen_series.insert((name.to_string(), key)) {
            return Err(at("duplicate series".into()));
        }
        family.samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    for f in &families {
        if f.kind == "histogram" {
            check_histogram(f)?;
        }
    }
    Ok(Exposition { families })
}

/// Buckets of each label set: `le` ascending, counts cumulative, `+Inf` present and equal to
/// `_count`.
fn check_histogram(f: &Family) -> Result<(), String> {
    let without_le = |s: &Sample| {
        let mut l: Labels = s
            .labels
            .iter()
            .filter(|(k, _)| k != "le")
            .cloned()
            .collect();
        l.sort();
        l
    };
    let mut groups: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
    for s in f.samples.iter().filter(|s| s.name.ends_with("_bucket")) {
        let le = &s.labels.iter().find(|(k, _)| k == "le").unwrap().1;
        groups
            .entry(without_le(s))
            .or_default()
            .push((parse_number(le)?, s.value));
    }
    for (labels, buckets) in groups {
        let mut last = (f64::NEG_INFINITY, 0.0);
        for &(le, count) in &buckets {
            if le <= last.0 || count < last.1 {
                return Err(format!(
                    "{} {labels:?}: buckets not ascending/cumulative: {buckets:?}",
                    f.name
                ));
            }
            last = (le, count);
        }
        if last.0 != f64::INFINITY {
            return Err(format!("{} {labels:?}: no +Inf bucket", f.name));
        }
        let count = f
            .samples
            .iter()
            .find(|s| s.name == format!("{}_count", f.name) && without_le(s) == labels)
            .ok_or_else(|| format!("{} {labels:?}: no _count", f.name))?;
        if count.value != last.1 {
            return Err(format!(
                "{} {labels:?}: +Inf bucket {} != _count {}",
                f.name, last.1, count.value
            ));
        }
        if !f
            .samples
            .iter()
            .any(|s| s.name == format!("{}_sum", f.name))
        {
            return Err(format!("{} {labels:?}: no _sum", f.name));
        }
    }
    Ok(())
}
