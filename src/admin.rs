//! The admin server: `/healthz`, `/metrics`, `/report` (JSON) and `/` (an HTML page of the
//! report and the rollout rules). Read-only and secret-free by construction: it only renders
//! metrics, the report and the rollout rules.

use crate::body::{full_body, text_response, Body};
use crate::config::{Config, Mode};
use crate::server::accept_loop;
use crate::state::State;
use crate::telemetry::report::{host_of, Report};
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::Instrument;

/// Admin connections served at once (their own cap: a proxy at `max_connections` still
/// answers `/healthz` and `/metrics`).
const ADMIN_MAX_CONNECTIONS: usize = 64;

/// Serve the admin endpoints until shutdown starts.
pub async fn serve(listener: TcpListener, state: Arc<State>) {
    let slots = Arc::new(Semaphore::new(ADMIN_MAX_CONNECTIONS));
    accept_loop(
        listener,
        "admin",
        slots,
        state.tasks.draining(),
        |tcp, peer, slot| {
            let conn_state = state.clone();
            let span = tracing::info_span!("admin", client = %peer);
            state.tasks.spawn(
                async move {
                    let _slot = slot;
                    let svc_state = conn_state.clone();
                    let svc = hyper::service::service_fn(move |req| route(req, svc_state.clone()));
                    let served = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc);
                    let ended = conn_state
                        .tasks
                        .serve_until_drained(served, |c| c.graceful_shutdown())
                        .await;
                    if let Err(e) = ended {
                        tracing::debug!(error = %e, "admin connection ended with an error");
                    }
                }
                .instrument(span),
            );
        },
    )
    .await
}

async fn route(req: Request<Incoming>, state: Arc<State>) -> Result<Response<Body>, Infallible> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = text_response(StatusCode::METHOD_NOT_ALLOWED, "read-only: GET only");
        resp.headers_mut()
            .insert(http::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Ok(resp);
    }
    Ok(match req.uri().path() {
        "/healthz" => text_response(StatusCode::OK, "ok"),
        "/metrics" => with_type(
            state.metrics.encode(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        "/report" => with_type(
            serde_json::to_string_pretty(&state.report()).expect("report serializes") + "\n",
            "application/json",
        ),
        "/" => with_type(
            render_page(&state.report(), &state.config_snapshot()),
            "text/html; charset=utf-8",
        ),
        _ => text_response(
            StatusCode::NOT_FOUND,
            "not found: try /, /report, /metrics, /healthz",
        ),
    })
}

fn with_type(body: String, content_type: &'static str) -> Response<Body> {
    let mut resp = Response::new(full_body(body));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The admin page: self-contained HTML (inline CSS, no script, no external assets), so it
/// works with JavaScript disabled and raises no console errors.
pub fn render_page(report: &Report, config: &Config) -> String {
    let mut rows = String::new();
    for r in &report.credentials {
        let counts: Vec<String> = r.counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
        rows.push_str(&format!(
            "<tr class=\"{verdict}\"><td><span class=\"verdict\">{verdict}</span></td><td class=\"wrap\">{user}</td><td class=\"id\">{client}</td><td class=\"hint\">{hint}</td><td class=\"wrap\">{org}</td><td class=\"wrap\">{domain}</td><td class=\"wrap\">{hosts}</td><td>{counts}</td><td>{last} {status}</td><td class=\"wrap\">{seen}</td></tr>\n",
            verdict = esc(r.verdict.as_str()),
            client = esc(&r.client_id),
            user = esc(&r.username),
            org = esc(r.org_id.as_deref().unwrap_or("-")),
            domain = esc(&r.instance_url.as_deref().and_then(host_of).unwrap_or_else(|| "-".into())),
            hosts = esc(&r.hosts.iter().cloned().collect::<Vec<_>>().join(", ")),
            counts = esc(&counts.join(", ")),
            last = esc(r.last_action),
            status = r.last_status,
            seen = esc(&r.last_seen),
            hint = esc(&r.hint),
        ));
    }
    if rows.is_empty() {
        rows.push_str("<tr><td colspan=\"10\">No password logins recorded yet.</td></tr>\n");
    }
    let mut rules = String::new();
    for (i, rule) in config.rollout.iter().enumerate() {
        rules.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}%</td><td>{}</td></tr>\n",
            i + 1,
            esc(&rule.host),
            match rule.mode {
                Mode::Observe => "observe",
                Mode::Upgrade => "upgrade",
            },
            rule.percent,
            if rule.fallback { "on" } else { "off" }
        ));
    }
    let mut mappings = String::new();
    for c in &config.credentials {
        mappings.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            esc(&c.username),
            esc(c.my_domain.as_deref().unwrap_or("(in place)")),
            esc(c.flow.as_str()),
            esc(c.client_id.as_deref().unwrap_or("any")),
        ));
    }
    if mappings.is_empty() {
        mappings.push_str("<tr><td colspan=\"4\">No [[credentials]] configured.</td></tr>\n");
    }
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>grantshift: migration report</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1d1d1f; }}
h1 {{ font-size: 1.4rem; margin: 0 0 .25rem; }}
h2 {{ font-size: 1.1rem; margin: 1.5rem 0 .5rem; }}
p.note {{ color: #555; margin: 0 0 1rem; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ text-align: left; padding: .35rem .5rem; border-bottom: 1px solid #ddd; vertical-align: top; }}
th {{ white-space: nowrap; }}
td.wrap {{ overflow-wrap: anywhere; }}
td.hint {{ min-width: 18rem; max-width: 34rem; }}
td.id {{ max-width: 12rem; overflow-wrap: anywhere; font-family: ui-monospace, monospace; font-size: .9em; }}
th {{ background: #f4f4f6; font-weight: 600; }}
.verdict {{ display: inline-block; padding: .05rem .45rem; border-radius: .6rem; font-size: .85em; white-space: nowrap; background: #eee; }}
tr.needs-jwt .verdict, tr.needs-run-as-user .verdict, tr.needs-flow-enabled .verdict {{ background: #ffe8b3; }}
tr.failing .verdict {{ background: #ffd0d0; }}
tr.ready .verdict {{ background: #d6e9ff; }}
tr.upgraded .verdict {{ background: #d3f5d3; }}
</style>
</head>
<body>
<h1>grantshift: migration report</h1>
<p class="note">One row per credential set (client_id, username), most urgent first. JSON at <a href="/report">/report</a>, metrics at <a href="/metrics">/metrics</a>.</p>
<h2>Credential sets</h2>
<table id="report">
<thead><tr><th>Verdict</th><th>Username</th><th>Client ID</th><th>Next step</th><th>Org</th><th>My Domain</th><th>Hosts</th><th>Counts</th><th>Last</th><th>Last seen</th></tr></thead>
<tbody>
{rows}</tbody>
</table>
<h2>Rollout rules</h2>
<table id="rollout">
<thead><tr><th>#</th><th>Host</th><th>Mode</th><th>Percent</th><th>Fallback</th></tr></thead>
<tbody>
{rules}</tbody>
</table>
<h2>Mappings</h2>
<table id="credentials">
<thead><tr><th>Username</th><th>My Domain</th><th>Flow</th><th>Client ID</th></tr></thead>
<tbody>
{mappings}</tbody>
</table>
</body>
</html>
"#
    )
}

/// HTML-escape text content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_escapes_what_clients_sent() {
        let mut b = crate::telemetry::report::ReportBuilder::default();
        let mut e = crate::telemetry::events::Event::new(
            "127.0.0.1:1".parse().unwrap(),
            "login.salesforce.com",
        );
        e.grant = Some("password".into());
        e.client_id = Some("<script>alert(1)</script>".into());
        e.username = Some("a&b@x.com".into());
        e.status = 200;
        b.add(&e);
        let config = Config::from_toml_str("", std::path::Path::new("/")).unwrap();
        let page = render_page(&b.report(), &config);
        assert!(!page.contains("<script>"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("a&amp;b@x.com"));
    }
}
