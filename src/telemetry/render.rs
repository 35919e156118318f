//! The migration report rendered for people: an aligned table for terminals
//! (`grantshift report`), suggested `[[credentials]]` TOML (`grantshift report
//! --suggest-config`), and the admin page's self-contained HTML (`/`).

use super::report::{host_of, Report, Verdict};
use crate::config::{Config, Mode};

/// `[[credentials]]` entries for the sets whose My Domain is known and that are not
/// upgraded yet: paste into grantshift.toml. needs-jwt sets get `flow = "jwt_bearer"`
/// with a placeholder key path to fill in.
pub fn suggested_credentials(report: &Report) -> String {
    let mut out =
        String::from("# [[credentials]] suggested by grantshift report from learned My Domains\n");
    for row in &report.credentials {
        let Some(domain) = row.instance_url.as_deref().and_then(host_of) else {
            continue;
        };
        let flow = match row.verdict {
            Verdict::Ready | Verdict::NeedsRunAsUser | Verdict::NeedsFlowEnabled => {
                "client_credentials"
            }
            Verdict::NeedsJwt => "jwt_bearer",
            _ => continue,
        };
        let mut entry = toml::Table::new();
        entry.insert("username".into(), row.username.clone().into());
        entry.insert("my_domain".into(), domain.into());
        entry.insert("flow".into(), flow.into());
        entry.insert("client_id".into(), row.client_id.clone().into());
        if flow == "jwt_bearer" {
            entry.insert(
                "jwt_private_key".into(),
                "certs/REPLACE-with-the-connected-app-key.pem".into(),
            );
        }
        // The hint quotes what clients sent (usernames, client ids): one comment line, always.
        out.push_str(&format!(
            "\n# {}: {}\n[[credentials]]\n",
            row.verdict.as_str(),
            printable(&row.hint)
        ));
        out.push_str(&toml::to_string(&entry).expect("table serializes"));
    }
    out
}

/// `text` with every control character (newlines, escape sequences) written as its Rust
/// escape (`\n`, `\u{1b}`): text an attacker may have shaped stays one inert line.
fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

/// An aligned plain-text table for terminals.
pub fn table(report: &Report) -> String {
    let header = [
        "VERDICT",
        "CLIENT_ID",
        "USERNAME",
        "ORG",
        "MY DOMAIN",
        "LAST",
        "STATUS",
        "SEEN",
        "VERIFIER",
        "HINT",
    ];
    let rows: Vec<[String; 10]> = report
        .credentials
        .iter()
        .map(|r| {
            // Cells quote what clients sent: no control character reaches the terminal.
            [
                r.verdict.as_str().to_string(),
                r.client_id.clone(),
                r.username.clone(),
                r.org_id.clone().unwrap_or_else(|| "-".into()),
                r.instance_url
                    .as_deref()
                    .and_then(host_of)
                    .unwrap_or_else(|| "-".into()),
                r.last_action.to_string(),
                r.last_status.to_string(),
                r.counts.values().sum::<u64>().to_string(),
                r.password_verifier.map_or("-", |v| v.as_str()).to_string(),
                r.hint.clone(),
            ]
            .map(|cell| printable(&cell).into_owned())
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  ", w = *w));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    if rows.is_empty() {
        out.push_str("(no password logins recorded yet)\n");
    }
    for note in bounds_notes(report) {
        out.push_str(&format!("({note})\n"));
    }
    out
}

/// What the report left out to stay bounded, one sentence each (nothing when it left out
/// nothing).
fn bounds_notes(report: &Report) -> Vec<String> {
    let mut notes = Vec::new();
    if report.dropped_sets > 0 {
        notes.push(format!(
            "{} credential sets dropped, least recently seen first, to stay within telemetry.report_max_sets",
            report.dropped_sets
        ));
    }
    if !report.untracked_logins.is_empty() {
        let total: u64 = report.untracked_logins.values().sum();
        let why: Vec<String> = report
            .untracked_logins
            .iter()
            .map(|(reason, n)| format!("{} {n}", printable(reason)))
            .collect();
        notes.push(format!(
            "{total} password logins are no credential set: {}",
            why.join(", ")
        ));
    }
    notes
}

/// The admin page: self-contained HTML (inline CSS, no script, no external assets), so it
/// works with JavaScript disabled and raises no console errors.
pub fn page(report: &Report, config: &Config) -> String {
    let mut rows = String::new();
    for r in &report.credentials {
        let counts: Vec<String> = r.counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
        rows.push_str(&format!(
            "<tr class=\"{verdict}\"><td><span class=\"verdict\">{verdict}</span></td><td class=\"wrap\">{user}</td><td class=\"id\">{client}</td><td class=\"hint\">{hint}</td><td class=\"wrap\">{org}</td><td class=\"wrap\">{domain}</td><td class=\"wrap\">{hosts}</td><td>{counts}</td><td>{last} {status}</td><td class=\"wrap\">{seen}</td><td>{verifier}</td></tr>\n",
            verdict = esc(r.verdict.as_str()),
            client = esc(&r.client_id),
            user = esc(&r.username),
            org = esc(r.org_id.as_deref().unwrap_or("-")),
            domain = esc(&r.instance_url.as_deref().and_then(host_of).unwrap_or_else(|| "-".into())),
            hosts = esc(&{
                let mut hosts = r.hosts.iter().cloned().collect::<Vec<_>>().join(", ");
                if r.logins_at_other_hosts > 0 {
                    hosts.push_str(&format!(" (+{} logins at other hosts)", r.logins_at_other_hosts));
                }
                hosts
            }),
            counts = esc(&counts.join(", ")),
            last = esc(r.last_action),
            status = r.last_status,
            seen = esc(&r.last_seen),
            verifier = match (r.password_verifier, r.verify_password) {
                (Some(source), Some(mode)) => format!("{} ({})", source.as_str(), mode.as_str()),
                (Some(source), None) => source.as_str().to_string(),
                _ => "-".into(),
            },
            hint = esc(&r.hint),
        ));
    }
    if rows.is_empty() {
        rows.push_str("<tr><td colspan=\"11\">No password logins recorded yet.</td></tr>\n");
    }
    let mut bounds = format!(
        "<p class=\"note\" id=\"bounds\">The report keeps at most {} credential sets (telemetry.report_max_sets); dropped so far, least recently seen first: <span id=\"dropped-sets\">{}</span>.</p>\n",
        config.telemetry.report_max_sets, report.dropped_sets
    );
    if !report.untracked_logins.is_empty() {
        let why: Vec<String> = report
            .untracked_logins
            .iter()
            .map(|(reason, n)| format!("{} {n}", esc(reason)))
            .collect();
        bounds.push_str(&format!(
            "<p class=\"note\" id=\"untracked\">Password logins that are no credential set: {}.</p>\n",
            why.join(", ")
        ));
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
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td></tr>\n",
            esc(&c.username),
            esc(c.my_domain.as_deref().unwrap_or("(in place)")),
            esc(c.flow.as_str()),
            esc(c.client_id.as_deref().unwrap_or("any")),
            c.verify_mode().as_str(),
            if c.password_hash.is_some() {
                ", password_hash set"
            } else {
                ""
            },
        ));
    }
    if mappings.is_empty() {
        mappings.push_str("<tr><td colspan=\"5\">No [[credentials]] configured.</td></tr>\n");
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
tr.needs-verifier .verdict {{ background: #ffe8b3; }}
tr.failing .verdict, tr.password-mismatch .verdict {{ background: #ffd0d0; }}
tr.ready .verdict {{ background: #d6e9ff; }}
tr.upgraded .verdict {{ background: #d3f5d3; }}
</style>
</head>
<body>
<h1>grantshift: migration report</h1>
<p class="note">One row per credential set (client_id, username), most urgent first. JSON at <a href="/report">/report</a>, metrics at <a href="/metrics">/metrics</a>.</p>
<h2>Credential sets</h2>
<table id="report">
<thead><tr><th>Verdict</th><th>Username</th><th>Client ID</th><th>Next step</th><th>Org</th><th>My Domain</th><th>Hosts</th><th>Counts</th><th>Last</th><th>Last seen</th><th>Password verifier</th></tr></thead>
<tbody>
{rows}</tbody>
</table>
{bounds}<h2>Rollout rules</h2>
<table id="rollout">
<thead><tr><th>#</th><th>Host</th><th>Mode</th><th>Percent</th><th>Fallback</th></tr></thead>
<tbody>
{rules}</tbody>
</table>
<h2>Mappings</h2>
<table id="credentials">
<thead><tr><th>Username</th><th>My Domain</th><th>Flow</th><th>Client ID</th><th>Password check</th></tr></thead>
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
    use crate::telemetry::events::Event;
    use crate::telemetry::report::ReportBuilder;

    #[test]
    fn page_escapes_what_clients_sent() {
        let mut b = ReportBuilder::default();
        let mut e = Event::new("127.0.0.1:1".parse().unwrap(), "login.salesforce.com");
        e.grant = Some("password".into());
        e.client_id = Some("<script>alert(1)</script>".into());
        e.username = Some("a&b@x.com".into());
        e.status = 200;
        b.add(&e);
        let config = Config::from_toml_str("", std::path::Path::new("/")).unwrap();
        let page = page(&b.report(), &config);
        assert!(!page.contains("<script>"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("a&amp;b@x.com"));
    }

    fn shared_app_report(evil: &str) -> Report {
        let mut b = ReportBuilder::default();
        for username in ["a@acme.com", evil] {
            let mut e = Event::new("127.0.0.1:1".parse().unwrap(), "login.salesforce.com");
            e.grant = Some("password".into());
            e.client_id = Some("app".into());
            e.username = Some(username.into());
            e.action = crate::telemetry::events::Action::Observed;
            e.status = 200;
            e.org_id = Some("00D000000000001AAA".into());
            e.instance_url = Some("https://acme.my.salesforce.com".into());
            b.add(&e);
        }
        b.report()
    }

    #[test]
    fn a_username_cannot_forge_a_suggested_credentials_entry() {
        // Within the 80 characters of a username, so it is a credential set.
        let evil =
            "x\n[[credentials]]\nusername = \"v@a.co\"\nmy_domain = \"evil.my.salesforce.com\"\n#";
        let text = suggested_credentials(&shared_app_report(evil));
        let parsed: toml::Table = toml::from_str(&text).expect(&text);
        let entries = parsed["credentials"].as_array().unwrap();
        assert_eq!(entries.len(), 2, "{text}");
        let usernames: Vec<&str> = entries
            .iter()
            .map(|e| e["username"].as_str().unwrap())
            .collect();
        assert!(
            usernames.contains(&evil),
            "the set is kept as it was sent: {text}"
        );
        assert!(!usernames.contains(&"v@a.co"), "{text}");
        assert!(
            entries
                .iter()
                .all(|e| e["my_domain"].as_str() == Some("acme.my.salesforce.com")),
            "{text}"
        );
    }

    #[test]
    fn the_terminal_table_prints_no_control_characters() {
        let evil = "x@acme.com\u{1b}[2J\nFORGED  row";
        let text = table(&shared_app_report(evil));
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert_eq!(text.lines().count(), 3, "a header and two rows: {text}");
        assert!(text.contains("x@acme.com\\u{1b}[2j\\nforged"), "{text}");
    }
}
