//! The migration report rendered for people: an aligned table for terminals
//! (`grantshift report`), suggested `[[credentials]]` TOML (`grantshift report
//! --suggest-config`), and the admin page's self-contained HTML (`/`).

use super::login_rate::{Rate, SALESFORCE_LOGINS_PER_HOUR, WARN_AT};
use super::report::{host_of, LoginGrant, Report, Row, Trend, Verdict};
use super::summary::Summary;
use crate::config::{Config, Mode};

/// The report as JSON (`/report`, `grantshift report --json`): the report's fields, and its
/// [`Summary`] as `summary`.
pub fn report_json(report: &Report, summary: &Summary) -> String {
    #[derive(serde::Serialize)]
    struct WithSummary<'a> {
        #[serde(flatten)]
        report: &'a Report,
        summary: &'a Summary,
    }
    serde_json::to_string_pretty(&WithSummary { report, summary }).expect("report serializes")
        + "\n"
}

/// What the terminal table shows in a row's CLIENT_ID column: a SOAP `login()` set has no
/// client id, and says how it logs in instead.
fn client_cell(row: &Row) -> &str {
    match row.grant {
        LoginGrant::Password => &row.client_id,
        LoginGrant::SoapLogin => "(SOAP login())",
    }
}

/// Placeholders a SOAP `login()` entry is suggested with: the login names no connected app.
const SOAP_CLIENT_ID_PLACEHOLDER: &str = "REPLACE-with-the-connected-app-consumer-key";
const KEY_PLACEHOLDER: &str = "certs/REPLACE-with-the-connected-app-key.pem";

/// `[[credentials]]` entries for the sets whose My Domain is known and that are not
/// upgraded yet: paste into grantshift.toml. needs-jwt sets get `flow = "jwt_bearer"`
/// with a placeholder key path to fill in. SOAP `login()` sets name no app: they get
/// `flow = "jwt_bearer"` (the session stays the user's own) with placeholders for the app's
/// client_id and key, and a comment on the client-credentials alternative.
pub fn suggested_credentials(report: &Report) -> String {
    let mut out =
        String::from("# [[credentials]] suggested by grantshift report from learned My Domains\n");
    for row in &report.credentials {
        let Some(domain) = row.instance_url.as_deref().and_then(host_of) else {
            continue;
        };
        let soap = row.grant == LoginGrant::SoapLogin;
        let flow = match row.verdict {
            // JWT bearer is preferred for SOAP: the session stays the user's own.
            Verdict::Ready | Verdict::NeedsRunAsUser | Verdict::NeedsFlowEnabled if soap => {
                "jwt_bearer"
            }
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
        let client_id = if soap {
            SOAP_CLIENT_ID_PLACEHOLDER
        } else {
            &row.client_id
        };
        entry.insert("client_id".into(), client_id.into());
        if flow == "jwt_bearer" {
            entry.insert("jwt_private_key".into(), KEY_PLACEHOLDER.into());
        }
        // The hint quotes what clients sent (usernames, client ids): one comment line, always.
        out.push_str(&format!(
            "\n# {}: {}\n",
            row.verdict.as_str(),
            printable(&row.hint)
        ));
        if soap {
            out.push_str("# SOAP login() names no connected app: set client_id to the app's consumer key and\n# jwt_private_key to its key, or use flow = \"client_credentials\" with the app's\n# client secret (client_secret_env) instead of jwt_private_key.\n");
        }
        out.push_str("[[credentials]]\n");
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

/// `grantshift report`'s output for terminals: the summary line, then an aligned table, then
/// what the report left out. With `width`, every line fits in that many characters: cells are
/// cut with `…`, the hint column (the last) first; without, nothing is cut (`--wide`, pipes).
pub fn table(report: &Report, summary: &Summary, width: Option<usize>) -> String {
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
                client_cell(r).to_string(),
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
    let mut natural: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in natural.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    // The least a column is cut to: the verdict never (it is what the row is about), a
    // username and a client id to enough to tell them apart, the rest to their header.
    let least: Vec<usize> = header
        .iter()
        .zip(&natural)
        .enumerate()
        .map(|(i, (h, n))| match i {
            0 => *n,
            1 => (*n).min(12),
            2 => (*n).min(16),
            5 => (*n).min(4),
            _ => (*n).min(h.len()),
        })
        .collect();
    // Columns left out, in this order, when even their least does not fit: VERIFIER, SEEN,
    // STATUS, MY DOMAIN, LAST, ORG.
    let mut visible: Vec<usize> = (0..header.len()).collect();
    let mut left_out: Vec<&str> = Vec::new();
    if let Some(width) = width {
        for drop in [8, 7, 6, 4, 5, 3] {
            let need: usize =
                visible.iter().map(|&i| least[i]).sum::<usize>() + 2 * (visible.len() - 1);
            if need <= width {
                break;
            }
            visible.retain(|&i| i != drop);
            left_out.push(header[drop]);
        }
    }
    let pick = |all: &[usize]| visible.iter().map(|&i| all[i]).collect::<Vec<usize>>();
    let widths = match width {
        Some(width) => fit_columns(&pick(&natural), &pick(&least), width),
        None => natural.clone(),
    };
    let fit = |line: String| match width {
        Some(w) => truncate(&line, w).into_owned(),
        None => line,
    };
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            let cell = truncate(cell, *w);
            if i + 1 == cells.len() {
                s.push_str(&cell);
            } else {
                s.push_str(&format!("{cell:<w$}  ", w = *w));
            }
        }
        fit(s.trim_end().to_string()) + "\n"
    };
    let mut out = String::new();
    for summary_line in wrap_parts(&summary.parts(), width) {
        out.push_str(&fit(summary_line));
        out.push('\n');
    }
    out.push_str(&line(visible.iter().map(|&i| header[i]).collect()));
    for row in &rows {
        out.push_str(&line(visible.iter().map(|&i| row[i].as_str()).collect()));
    }
    if rows.is_empty() {
        out.push_str(&fit("(no password logins recorded yet)".into()));
        out.push('\n');
    }
    let mut notes = bounds_notes(report);
    if !left_out.is_empty() {
        notes.push(format!(
            "left out to fit {} columns: {}; --wide shows everything",
            width.unwrap_or_default(),
            left_out.join(", ")
        ));
    }
    for note in notes {
        out.push_str(&fit(format!("({note})")));
        out.push('\n');
    }
    out
}

/// Column widths that fit `width` with two spaces between columns: the last column (the
/// hint) shrinks first, down to its least; then the widest of the others, one character at a
/// time, each down to its least. Past that the line is cut by the caller.
pub fn fit_columns(natural: &[usize], least: &[usize], width: usize) -> Vec<usize> {
    let mut widths = natural.to_vec();
    let gaps = 2 * natural.len().saturating_sub(1);
    let total = |w: &[usize]| w.iter().sum::<usize>() + gaps;
    let Some(last) = widths.len().checked_sub(1) else {
        return widths;
    };
    let over = total(&widths).saturating_sub(width);
    let hint_least = least[last].min(natural[last]);
    widths[last] -= over.min(widths[last] - hint_least);
    while total(&widths) > width {
        let widest = (0..last)
            .filter(|&i| widths[i] > least[i])
            .max_by_key(|&i| (widths[i], std::cmp::Reverse(i)));
        match widest {
            Some(i) => widths[i] -= 1,
            None => break,
        }
    }
    widths
}

/// `text` cut to at most `width` characters, ending in `…` when cut (never inside a UTF-8
/// character: it counts chars).
pub fn truncate(text: &str, width: usize) -> std::borrow::Cow<'_, str> {
    if text.chars().count() <= width {
        return text.into();
    }
    if width == 0 {
        return "".into();
    }
    let mut cut: String = text.chars().take(width - 1).collect();
    cut.push('…');
    cut.into()
}

/// `parts` joined with `; ` into lines of at most `width` characters (one line without a
/// width); a part longer than a line is left to be cut.
fn wrap_parts(parts: &[String], width: Option<usize>) -> Vec<String> {
    let Some(width) = width else {
        return vec![parts.join("; ")];
    };
    let mut lines: Vec<String> = Vec::new();
    for part in parts {
        match lines.last_mut() {
            Some(line) if line.chars().count() + 2 + part.chars().count() <= width => {
                line.push_str("; ");
                line.push_str(part);
            }
            _ => lines.push(part.clone()),
        }
    }
    lines
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

/// The last config reload (SIGHUP) and how it went, for the admin page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// When, RFC 3339 UTC.
    pub at: String,
    /// `Err` holds the error's first line (config errors name the key, never a secret value).
    pub result: Result<(), String>,
}

/// What the admin page says about itself, in its header.
#[derive(Debug, Clone, Copy)]
pub struct PageMeta<'a> {
    pub version: &'a str,
    /// Where the config came from: a file path, `(defaults)`, `(inline config)`.
    pub config_source: &'a str,
    pub last_reload: Option<&'a ReloadOutcome>,
    /// Upgraded logins sent upstream in the last hour per (target host, Run As identity),
    /// busiest first.
    pub login_rates: &'a [Rate],
}

/// Run As identities the page lists (the busiest; the metric has them all).
const MAX_RATES_SHOWN: usize = 10;

/// The "Logins per Run As identity" table.
fn rates_table(rates: &[Rate]) -> String {
    if rates.is_empty() {
        return "<p class=\"note\" id=\"login-rates\">No upgraded login went to Salesforce in the last hour.</p>\n".into();
    }
    let mut rows = String::new();
    for r in rates.iter().take(MAX_RATES_SHOWN) {
        let share = r.last_hour as f64 / SALESFORCE_LOGINS_PER_HOUR as f64;
        rows.push_str(&format!(
            "<tr{class}><td class=\"mono\">{host}</td><td class=\"mono\">{identity}</td><td>{n}</td><td>{share}</td></tr>\n",
            class = if r.last_hour >= WARN_AT { " class=\"bad\"" } else { "" },
            host = esc(&r.target_host),
            identity = esc(&r.identity),
            n = r.last_hour,
            share = super::summary::percent(share),
        ));
    }
    let more = rates.len().saturating_sub(MAX_RATES_SHOWN);
    let note = if more > 0 {
        format!("<p class=\"note\">{more} more in <a href=\"/metrics\">/metrics</a> (grantshift_upstream_logins_last_hour).</p>\n")
    } else {
        String::new()
    };
    format!(
        "<table id=\"login-rates\">\n<thead><tr><th>Target host</th><th>Run As identity</th><th>Logins, last hour</th><th>Of Salesforce's 3,600</th></tr></thead>\n<tbody>\n{rows}</tbody>\n</table>\n{note}"
    )
}

/// Usernames a next step names on the page; the rest are counted (all are in the table).
const MAX_USERS_IN_STEP: usize = 20;

/// The admin page: self-contained HTML (inline CSS and SVG, no script, no external assets), so
/// it works with JavaScript disabled and raises no console errors. `filter` is the
/// `?verdict=` query value, if any: only that verdict's next steps and rows are shown (an
/// unknown value shows everything, and says so).
pub fn page(
    report: &Report,
    config: &Config,
    summary: &Summary,
    filter: Option<&str>,
    meta: &PageMeta<'_>,
) -> String {
    let chosen = filter.and_then(Verdict::parse);
    let shown = |v: Verdict| chosen.is_none_or(|c| c == v);
    let filter_note = match (filter, chosen) {
        (Some(f), None) => format!(
            "<p class=\"note warn\" id=\"filter-note\">There is no verdict “{}”: showing every verdict.</p>\n",
            esc(f)
        ),
        (_, Some(v)) => format!(
            "<p class=\"note\" id=\"filter-note\">Showing only <b>{}</b> ({} of {} sets). <a href=\"/\">Show all</a>.</p>\n",
            v.as_str(),
            summary
                .by_verdict
                .iter()
                .find(|c| c.verdict == v)
                .map_or(0, |c| c.sets),
            summary.sets
        ),
        (None, None) => String::new(),
    };
    let mut filters = format!(
        "<a href=\"/\" id=\"filter-all\" class=\"chip{}\">all <span class=\"n\">{}</span></a>",
        if chosen.is_none() { " current" } else { "" },
        summary.sets
    );
    for c in &summary.by_verdict {
        let v = c.verdict.as_str();
        filters.push_str(&format!(
            " <a href=\"/?verdict={v}\" id=\"filter-{v}\" class=\"chip {v}{}\" data-sets=\"{}\">{v} <span class=\"n\">{}</span></a>",
            if chosen == Some(c.verdict) { " current" } else { "" },
            c.sets,
            c.sets
        ));
    }

    let groups = report.hint_groups();
    let mut step_of = vec![0usize; report.credentials.len()];
    let mut steps = String::new();
    for (n, g) in groups.iter().enumerate() {
        for &row in &g.rows {
            step_of[row] = n + 1;
        }
        if !shown(g.verdict) {
            continue;
        }
        // Usernames the hint does not name already (a needs-jwt hint names a few, a ready hint
        // its one): each said once.
        let unnamed: Vec<&String> = g
            .usernames
            .iter()
            .filter(|u| !g.hint.contains(u.as_str()))
            .collect();
        let mut users: Vec<String> = unnamed
            .iter()
            .take(MAX_USERS_IN_STEP)
            .map(|u| format!("<span class=\"nw\">{}</span>", esc(u)))
            .collect();
        if unnamed.len() > MAX_USERS_IN_STEP {
            users.push(format!("{} more", unnamed.len() - MAX_USERS_IN_STEP));
        }
        let users = if users.is_empty() {
            String::new()
        } else {
            format!(": {}", users.join(", "))
        };
        steps.push_str(&format!(
            "<li id=\"step-{n}\" class=\"{verdict}\"><div class=\"what\"><span class=\"num\">{n}</span> <span class=\"verdict\">{verdict}</span> {app} in org <span class=\"nw mono\">{org}</span> · {count} username{s}{users}</div><div class=\"hint\">{hint}</div></li>\n",
            n = n + 1,
            verdict = g.verdict.as_str(),
            app = match g.grant {
                LoginGrant::Password => format!(
                    "app <span class=\"nw mono\" title=\"{}\">{}</span>",
                    esc(&g.client_id),
                    esc(&truncate(&g.client_id, 48))
                ),
                LoginGrant::SoapLogin =>
                    "<span class=\"nw via soap\">SOAP login()</span> (no app)".to_string(),
            },
            org = esc(g.org_id.as_deref().unwrap_or("(unknown)")),
            count = g.usernames.len(),
            s = if g.usernames.len() == 1 { "" } else { "s" },
            hint = esc(&g.hint),
        ));
    }
    if steps.is_empty() {
        steps.push_str("<li class=\"none\">Nothing here yet.</li>\n");
    }

    let mut rows = String::new();
    for (i, r) in report.credentials.iter().enumerate() {
        if !shown(r.verdict) {
            continue;
        }
        let counts: Vec<String> = r.counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let mut hosts: Vec<String> = r.hosts.iter().cloned().collect();
        if r.logins_at_other_hosts > 0 {
            hosts.push(format!(
                "+{} logins at other hosts",
                r.logins_at_other_hosts
            ));
        }
        let domain = r
            .instance_url
            .as_deref()
            .and_then(host_of)
            .unwrap_or_else(|| "-".into());
        // `12-01 15:26` (the title has the whole timestamp).
        let seen = r
            .last_seen
            .get(5..16)
            .unwrap_or(&r.last_seen)
            .replace('T', " ");
        let verifier = match (r.password_verifier, r.verify_password) {
            (Some(source), Some(mode)) => format!("{} ({})", source.as_str(), mode.as_str()),
            (Some(source), None) => source.as_str().to_string(),
            _ => "-".into(),
        };
        // One line per row: a cell too long for its column ends in an ellipsis, and its title
        // holds the whole value.
        let cell = |class: &str, text: &str| {
            format!(
                "<td class=\"{class}\" title=\"{t}\">{t}</td>",
                t = esc(text)
            )
        };
        let (hosts, counts) = (hosts.join(", "), counts.join(", "));
        rows.push_str(&format!(
            "<tr class=\"{verdict}\" data-grant=\"{grant}\"><td><span class=\"verdict\">{verdict}</span></td>{user}{client}<td><a href=\"#step-{step}\" title=\"{hint_title}\">{step}</a></td>{org}{domain}{hosts}{counts}{last}<td title=\"{seen_full}\">{seen}</td>{verifier}</tr>\n",
            verdict = esc(r.verdict.as_str()),
            user = cell("", &r.username),
            grant = r.grant.as_str(),
            client = match r.grant {
                LoginGrant::Password => cell("mono", &r.client_id),
                LoginGrant::SoapLogin => "<td class=\"via soap\" title=\"Logs in through the SOAP API's login(), which names no client_id; it retires Summer '27\">SOAP login()</td>".to_string(),
            },
            step = step_of[i],
            hint_title = esc(&truncate(&r.hint, 300)),
            org = cell("mono", r.org_id.as_deref().unwrap_or("-")),
            domain = cell("", &domain),
            hosts = cell("", &hosts),
            counts = cell("", &counts),
            last = cell("", &format!("{} {}", r.last_action, r.last_status)),
            seen = esc(&seen),
            seen_full = esc(&r.last_seen),
            verifier = cell("", &verifier),
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
    let reload = match meta.last_reload {
        None => "none since start".to_string(),
        Some(ReloadOutcome { at, result: Ok(()) }) => format!("{} ok", esc(at)),
        Some(ReloadOutcome {
            at,
            result: Err(error),
        }) => format!(
            "{} <span class=\"bad\">failed: {}</span> (the running config stays)",
            esc(at),
            esc(error)
        ),
    };
    let meta_line = format!(
        "Generated <span id=\"generated-at\">{}</span> · grantshift {} · config <span class=\"mono\" id=\"config-source\">{}</span> · last reload: <span id=\"last-reload\">{reload}</span>",
        esc(&summary.generated_at),
        esc(meta.version),
        esc(meta.config_source),
    );
    let shares = {
        let mut parts = vec![format!(
            "<span id=\"share-24h\">{}</span>",
            esc(&summary.last_24h_text())
        )];
        for d in &summary.deadlines {
            parts.push(format!(
                "<span class=\"deadline{}\">{}</span>",
                if d.passed { " passed" } else { "" },
                esc(&summary.deadline_text(d))
            ));
        }
        parts.join("; ")
    };
    let chart = trend_svg(&report.trend);
    let steps_heading = match chosen {
        Some(v) => format!("Next steps: {}", v.as_str()),
        None => "Next steps".into(),
    };
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>grantshift: migration report</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1rem 1.5rem; color: #1d1d1f; }}
header {{ display: flex; flex-wrap: wrap; align-items: baseline; gap: .25rem 1.5rem; }}
h1 {{ font-size: 1.4rem; margin: 0; }}
h2 {{ font-size: 1.1rem; margin: 1.25rem 0 .4rem; }}
p.meta {{ color: #555; margin: 0; font-size: .9em; }}
p.note {{ color: #555; margin: .25rem 0 .75rem; }}
p.warn {{ color: #8a4b00; }}
#summary-line {{ font-size: 1.05rem; margin: .6rem 0 .3rem; }}
.deadline.passed, .bad {{ color: #b00020; }}
nav.filters {{ margin: .4rem 0; display: flex; flex-wrap: wrap; gap: .35rem; }}
.chip {{ display: inline-block; padding: .1rem .6rem; border-radius: .8rem; background: #eee; color: #1d1d1f; text-decoration: none; white-space: nowrap; border: 1px solid transparent; }}
.chip .n {{ font-weight: 600; }}
.chip.current {{ border-color: #1d1d1f; }}
figure {{ margin: .25rem 0 0; }}
svg.trend {{ max-width: 100%; height: auto; display: block; }}
svg.trend text {{ font: 12px system-ui, sans-serif; fill: #333; }}
ol.steps {{ list-style: none; padding: 0; margin: 0; }}
ol.steps li {{ padding: .3rem .5rem; border-bottom: 1px solid #e4e4e8; }}
ol.steps .hint {{ color: #333; margin: .1rem 0 0 2.1rem; overflow-wrap: break-word; }}
.num {{ display: inline-block; min-width: 1.6rem; color: #777; text-align: right; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #ddd; vertical-align: top; }}
th {{ white-space: nowrap; background: #f4f4f6; font-weight: 600; }}
#report {{ table-layout: fixed; font-size: 13px; }}
#report td, #report th {{ white-space: nowrap; overflow: hidden; text-overflow: ellipsis; padding: .3rem .4rem; }}
.nw {{ white-space: nowrap; }}
.mono {{ font-family: ui-monospace, monospace; font-size: .9em; }}
.verdict {{ display: inline-block; padding: .05rem .45rem; border-radius: .6rem; font-size: .85em; white-space: nowrap; background: #eee; }}
.needs-jwt .verdict, .needs-run-as-user .verdict, .needs-flow-enabled .verdict, .needs-verifier .verdict, .chip.needs-jwt, .chip.needs-run-as-user, .chip.needs-flow-enabled, .chip.needs-verifier {{ background: #ffe8b3; }}
.failing .verdict, .password-mismatch .verdict, .chip.failing, .chip.password-mismatch {{ background: #ffd0d0; }}
.ready .verdict, .chip.ready {{ background: #d6e9ff; }}
.upgraded .verdict, .chip.upgraded {{ background: #d3f5d3; }}
.via.soap {{ font-style: italic; }}
</style>
</head>
<body>
<header>
<h1>grantshift: migration report</h1>
<p class="meta" id="meta">{meta_line}</p>
</header>
<p id="summary-line"><b>{summary_line}</b>; {shares}</p>
<nav class="filters" id="filters" aria-label="Filter by verdict">{filters}</nav>
{filter_note}<figure id="trend">
{chart}</figure>
<h2>{steps_heading}</h2>
<ol class="steps" id="next-steps">
{steps}</ol>
<h2>Credential sets</h2>
<p class="note">One row per credential set (client_id, username), most urgent first; the step is its next step above. JSON at <a href="/report">/report</a>, metrics at <a href="/metrics">/metrics</a>.</p>
<table id="report">
<colgroup><col style="width:10.5%"><col style="width:15%"><col style="width:11%"><col style="width:3.5%"><col style="width:10.5%"><col style="width:10.5%"><col style="width:9%"><col style="width:7.5%"><col style="width:7.5%"><col style="width:7%"><col style="width:8%"></colgroup>
<thead><tr><th>Verdict</th><th>Username</th><th>Client ID</th><th title="Next step">Step</th><th>Org</th><th>My Domain</th><th>Hosts</th><th>Counts</th><th>Last</th><th>Last seen</th><th title="Password verifier">Verifier</th></tr></thead>
<tbody>
{rows}</tbody>
</table>
{bounds}<h2>Logins per Run As identity</h2>
<p class="note">Upgraded logins sent to Salesforce in the last 60 minutes (client credentials: the connected app's Run As user, named by client_id; JWT bearer: the username). Salesforce refuses a user's logins past 3,600 an hour; logins the token cache answered are not counted.</p>
{rates}<h2>Rollout rules</h2>
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
"#,
        summary_line = esc(&summary.sets_text()),
        rates = rates_table(meta.login_rates),
    )
}

/// Events spanning more hours than this are drawn per day.
const HOURLY_UP_TO: i64 = 72;

/// The bars of the trend chart: per hour (at least the 24 hours up to the newest event) when
/// the events span less than `HOURLY_UP_TO` (72) hours, else per day. `(start unix hour, hours
/// per bar, counts)`, oldest first, empty bars included.
pub fn trend_bars(trend: &Trend) -> Vec<(i64, i64, super::report::TrendCounts)> {
    let (Some(first), Some(last)) = (trend.hours.first(), trend.hours.last()) else {
        return Vec::new();
    };
    let (first, last) = (first.unix_hour, last.unix_hour);
    let step = if last - first < HOURLY_UP_TO { 1 } else { 24 };
    let start = if step == 1 {
        first.min(last - 23)
    } else {
        first.div_euclid(24) * 24
    };
    let n = (last - start) / step + 1;
    let mut bars: Vec<(i64, i64, super::report::TrendCounts)> = (0..n)
        .map(|i| (start + i * step, step, Default::default()))
        .collect();
    for b in &trend.hours {
        let i = ((b.unix_hour - start) / step) as usize;
        let c = &mut bars[i].2;
        c.upgraded += b.counts.upgraded;
        c.fallback += b.counts.fallback;
        c.password += b.counts.password;
    }
    bars
}

/// 1, 2, 5, 10, 20, 50, … : the smallest at least `n`.
fn nice_ceiling(n: u64) -> u64 {
    let mut scale = 1;
    loop {
        for m in [1, 2, 5] {
            if m * scale >= n {
                return m * scale;
            }
        }
        scale *= 10;
    }
}

/// The trend as an inline SVG stacked bar chart (upgraded at the bottom, then upgrade tried
/// and not upgraded, then still on the password flow), with axes and a legend. Nothing in it
/// comes from clients: numbers and dates only.
pub fn trend_svg(trend: &Trend) -> String {
    const W: i64 = 1000;
    const H: i64 = 210;
    const LEFT: i64 = 44;
    const RIGHT: i64 = 10;
    const TOP: i64 = 34;
    const BOTTOM: i64 = 26;
    let bars = trend_bars(trend);
    let mut svg = format!(
        "<svg class=\"trend\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-labelledby=\"trend-title\">\n<title id=\"trend-title\">Password logins per {}: upgraded, upgrade tried but not upgraded, still on the password flow</title>\n",
        if bars.first().is_some_and(|b| b.1 == 24) { "day" } else { "hour" }
    );
    let colours = [
        ("upgraded", "#2e9e4f", "upgraded"),
        (
            "fallback",
            "#e8a33d",
            "tried, not upgraded (fallback, failed)",
        ),
        (
            "password",
            "#9aa3b5",
            "password flow (observed, unmapped, skipped, passed)",
        ),
    ];
    // The legend, on top.
    let per = if bars.first().is_some_and(|b| b.1 == 24) {
        "per day (UTC)"
    } else {
        "per hour (UTC)"
    };
    svg.push_str(&format!(
        "<text x=\"0\" y=\"14\" font-weight=\"600\">Password logins {per}</text>\n"
    ));
    let mut x = 210;
    for (_, colour, label) in colours {
        svg.push_str(&format!(
            "<rect x=\"{x}\" y=\"4\" width=\"12\" height=\"12\" fill=\"{colour}\"/><text x=\"{}\" y=\"14\">{label}</text>\n",
            x + 16
        ));
        // About 6.5 px a character at 12 px.
        x += 16 + (label.len() as i64 * 13) / 2 + 20;
    }
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let base = TOP + plot_h;
    if bars.is_empty() {
        svg.push_str(&format!(
            "<line x1=\"{LEFT}\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\" stroke=\"#999\"/><text x=\"{}\" y=\"{}\" text-anchor=\"middle\">No password logins recorded yet</text>\n</svg>\n",
            W - RIGHT,
            LEFT + plot_w / 2,
            TOP + plot_h / 2
        ));
        return svg;
    }
    let max = nice_ceiling(bars.iter().map(|b| b.2.total()).max().unwrap_or(0).max(1));
    let y_of = |v: u64| base - (v as f64 * plot_h as f64 / max as f64).round() as i64;
    // Gridlines and the y axis labels: 0, half, max.
    let mut ticks = vec![0, max];
    if max >= 2 && max % 2 == 0 {
        ticks.insert(1, max / 2);
    }
    for t in ticks {
        let y = y_of(t);
        svg.push_str(&format!(
            "<line x1=\"{LEFT}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{}\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{t}</text>\n",
            W - RIGHT,
            if t == 0 { "#999" } else { "#e4e4e8" },
            LEFT - 6,
            y + 4
        ));
    }
    let n = bars.len() as i64;
    let slot = plot_w as f64 / n as f64;
    let gap = (slot * 0.2).clamp(1.0, 8.0);
    // Label every k-th bar so labels are at least 80 px apart.
    let every = ((80.0 / slot).ceil() as usize).max(1);
    let mut last_day = None;
    for (i, (start, step, c)) in bars.iter().enumerate() {
        let x = LEFT as f64 + i as f64 * slot + gap / 2.0;
        let w = (slot - gap).max(1.0);
        let when = time::OffsetDateTime::from_unix_timestamp(start * 3600)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let day = format!("{} {}", short_month(when.month()), when.day());
        let label = if *step == 24 {
            day.clone()
        } else {
            format!("{:02}:00", when.hour())
        };
        let mut y = base;
        for (class, colour, name) in colours {
            let v = match class {
                "upgraded" => c.upgraded,
                "fallback" => c.fallback,
                _ => c.password,
            };
            if v == 0 {
                continue;
            }
            // A bar that holds logins shows, however small against the tallest.
            let h = (base - y_of(v)).max(1);
            let top = y - h;
            svg.push_str(&format!(
                "<rect class=\"bar {class}\" x=\"{x:.1}\" y=\"{top}\" width=\"{w:.1}\" height=\"{h}\" fill=\"{colour}\"><title>{} {label}: {v} {name}</title></rect>\n",
                if *step == 24 { String::new() } else { day.clone() },
            ));
            y = top;
        }
        if i % every == 0 {
            // Hourly labels name the day where it changes (and at the first label).
            let text = if *step == 1 && last_day.as_ref() != Some(&day) {
                last_day = Some(day.clone());
                format!("{day} {label}")
            } else {
                label
            };
            svg.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"{}\">{text}</text>\n",
                x + w / 2.0,
                base + 16,
                if i == 0 { "start" } else { "middle" },
            ));
        }
    }
    svg.push_str("</svg>\n");
    svg
}

fn short_month(m: time::Month) -> &'static str {
    use time::Month::*;
    match m {
        January => "Jan",
        February => "Feb",
        March => "Mar",
        April => "Apr",
        May => "May",
        June => "Jun",
        July => "Jul",
        August => "Aug",
        September => "Sep",
        October => "Oct",
        November => "Nov",
        December => "Dec",
    }
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
    use crate::telemetry::summary::summary;

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
        let report = b.report();
        let summary = summary(&report, time::macros::datetime!(2026-12-01 12:00 UTC));
        let reload = ReloadOutcome {
            at: "2026-12-01T11:00:00Z".into(),
            result: Err("<b>bad</b> key".into()),
        };
        let rates = [Rate {
            target_host: "acme.my.salesforce.com".into(),
            identity: "<script>id</script>".into(),
            last_hour: 3_000,
        }];
        let meta = PageMeta {
            version: "0.1.0",
            config_source: "/etc/<grantshift>.toml",
            last_reload: Some(&reload),
            login_rates: &rates,
        };
        for filter in [None, Some("<script>x</script>"), Some("observing")] {
            let page = page(&report, &config, &summary, filter, &meta);
            assert!(!page.contains("<script>"), "{filter:?}");
            assert!(
                page.contains("<tr class=\"bad\"><td class=\"mono\">acme.my.salesforce.com</td><td class=\"mono\">&lt;script&gt;id&lt;/script&gt;</td><td>3000</td><td>83%</td>"),
                "the identity near the limit, escaped"
            );
            assert!(!page.contains("<b>bad"), "{filter:?}");
            assert!(!page.contains("<grantshift>"), "{filter:?}");
            assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
            assert!(page.contains("a&amp;b@x.com"));
        }
    }

    fn config() -> Config {
        Config::from_toml_str("", std::path::Path::new("/")).unwrap()
    }

    fn meta() -> PageMeta<'static> {
        PageMeta {
            version: "0.1.0",
            config_source: "(inline config)",
            last_reload: None,
            login_rates: &[],
        }
    }

    #[test]
    fn the_page_says_each_grouped_hint_once_and_filters_by_verdict() {
        let mut report = shared_app_report("b@acme.com");
        let mut b = ReportBuilder::default();
        let mut e = Event::new("127.0.0.1:1".parse().unwrap(), "login.salesforce.com");
        e.grant = Some("password".into());
        e.client_id = Some("solo".into());
        e.username = Some("solo@acme.com".into());
        e.status = 400;
        e.action = crate::telemetry::events::Action::Observed;
        b.add(&e);
        report.credentials.extend(b.report().credentials);
        let s = summary(&report, time::macros::datetime!(2026-12-01 12:00 UTC));
        let all = page(&report, &config(), &s, None, &meta());
        let hint = &report.credentials[0].hint;
        // Said once as text (the rows link to it, with it as their link's tooltip).
        assert_eq!(all.matches(&format!(">{}<", esc(hint))).count(), 1, "{all}");
        assert_eq!(all.matches("href=\"#step-1\"").count(), 2, "{all}");
        assert!(all.contains("id=\"step-2\""), "{all}");
        assert!(all.contains("href=\"/?verdict=needs-jwt\""), "{all}");
        assert!(!all.contains("overflow-wrap: anywhere"), "{all}");
        let only = page(&report, &config(), &s, Some("failing"), &meta());
        assert!(only.contains("solo@acme.com"), "{only}");
        assert!(!only.contains("a@acme.com"), "{only}");
        assert!(
            only.contains("Showing only <b>failing</b> (1 of 3 sets)"),
            "{only}"
        );
        let unknown = page(&report, &config(), &s, Some("nonsense"), &meta());
        assert!(
            unknown.contains("There is no verdict “nonsense”"),
            "{unknown}"
        );
        assert!(unknown.contains("a@acme.com") && unknown.contains("solo@acme.com"));
    }

    #[test]
    fn cells_are_cut_by_chars_with_an_ellipsis() {
        assert_eq!(truncate("abcdef", 6), "abcdef");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abcdef", 1), "…");
        assert_eq!(truncate("abcdef", 0), "");
        // Multi-byte characters are counted as one and never split.
        assert_eq!(truncate("żółwiątko", 5), "żółw…");
        assert_eq!(truncate("日本語のユーザー", 3), "日本…");
    }

    #[test]
    fn columns_fit_the_width_hint_first() {
        // 3 columns + 4 gap characters.
        assert_eq!(fit_columns(&[5, 5, 20], &[3, 3, 4], 100), vec![5, 5, 20]);
        assert_eq!(fit_columns(&[5, 5, 20], &[3, 3, 4], 24), vec![5, 5, 10]);
        // The hint at its least, then the widest of the others.
        assert_eq!(fit_columns(&[5, 9, 20], &[3, 3, 4], 20), vec![5, 7, 4]);
        assert_eq!(fit_columns(&[5, 9, 20], &[3, 3, 4], 1), vec![3, 3, 4]);
    }

    #[test]
    fn the_table_fits_a_width_and_leaves_wide_output_whole() {
        let report = shared_app_report("b@acme.com");
        let s = summary(&report, time::macros::datetime!(2026-12-01 12:00 UTC));
        let wide = table(&report, &s, None);
        assert!(
            wide.starts_with(&format!(
                "{}
",
                s.line
            )),
            "{wide}"
        );
        assert!(wide.contains(&report.credentials[0].hint), "{wide}");
        for width in [40, 80, 120] {
            let text = table(&report, &s, Some(width));
            for line in text.lines() {
                assert!(line.chars().count() <= width, "{width}: {line:?}");
            }
            assert!(text.contains('…'), "{text}");
            assert!(text.lines().any(|l| l.starts_with("VERDICT")), "{text}");
        }
    }

    #[test]
    fn the_trend_chart_is_hourly_for_a_few_days_then_daily() {
        let mut b = ReportBuilder::default();
        let mut e = Event::new("127.0.0.1:1".parse().unwrap(), "login.salesforce.com");
        e.grant = Some("password".into());
        e.client_id = Some("app".into());
        e.username = Some("u@x.com".into());
        e.status = 200;
        let mut add = |b: &mut ReportBuilder, ts: &str, action| {
            e.ts = ts.into();
            e.action = action;
            b.add(&e);
        };
        use crate::telemetry::events::Action::*;
        add(&mut b, "2026-12-01T10:05:00Z", Upgraded);
        add(&mut b, "2026-12-01T10:55:00Z", Observed);
        add(&mut b, "2026-12-01T12:00:00Z", Fallback);
        let r = b.report();
        let bars = trend_bars(&r.trend);
        // At least a day of hours, up to the newest event.
        assert_eq!(bars.len(), 24);
        assert!(bars.iter().all(|b| b.1 == 1));
        assert_eq!(bars[21].2.total(), 2);
        assert_eq!(bars[23].2.fallback, 1);
        let svg = trend_svg(&r.trend);
        assert_eq!(svg.matches("<rect class=\"bar ").count(), 3, "{svg}");
        assert!(svg.contains("per hour (UTC)"), "{svg}");
        assert!(svg.contains("Dec 1"), "{svg}");
        // Four days later: per day, one bar a day.
        add(&mut b, "2026-12-05T09:00:00Z", Upgraded);
        let r = b.report();
        let bars = trend_bars(&r.trend);
        assert_eq!(bars.len(), 5);
        assert!(bars.iter().all(|b| b.1 == 24));
        assert_eq!(bars[0].2.total(), 3);
        assert_eq!(bars[4].2.upgraded, 1);
        assert!(trend_svg(&r.trend).contains("per day (UTC)"));
        let empty = trend_svg(&ReportBuilder::default().report().trend);
        assert!(empty.contains("No password logins recorded yet"), "{empty}");
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
        let report = shared_app_report(evil);
        let s = summary(&report, time::macros::datetime!(2026-12-01 12:00 UTC));
        let text = table(&report, &s, None);
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert_eq!(
            text.lines().count(),
            4,
            "the summary, a header and two rows: {text}"
        );
        assert!(text.contains("x@acme.com\\u{1b}[2j\\nforged"), "{text}");
    }

    /// An OAuth set and a SOAP set of one username, both with a learned My Domain.
    fn soap_and_oauth_report() -> Report {
        let mut b = ReportBuilder::default();
        for grant in ["password", "soap_login"] {
            let mut e = Event::new("127.0.0.1:1".parse().unwrap(), "login.salesforce.com");
            e.grant = Some(grant.into());
            e.client_id = (grant == "password").then(|| "3MVGapp".into());
            e.username = Some("int@acme.com".into());
            e.action = crate::telemetry::events::Action::Unmapped;
            e.status = 200;
            e.org_id = Some("00D000000000001AAA".into());
            e.instance_url = Some("https://acme.my.salesforce.com".into());
            b.add(&e);
        }
        b.report()
    }

    #[test]
    fn the_page_and_the_table_mark_the_soap_row() {
        let report = soap_and_oauth_report();
        let s = summary(&report, time::macros::datetime!(2026-12-01 12:00 UTC));
        let page = page(&report, &config(), &s, None, &meta());
        let row = |grant: &str| {
            page.lines()
                .find(|l| l.contains(&format!("data-grant=\"{grant}\"")))
                .unwrap_or_else(|| panic!("no {grant} row: {page}"))
                .to_string()
        };
        let soap = row("soap_login");
        assert!(soap.contains(">SOAP login()</td>"), "{soap}");
        assert!(soap.contains(">int@acme.com</td>"), "{soap}");
        let oauth = row("password");
        assert!(oauth.contains(">3MVGapp</td>"), "{oauth}");
        assert!(!oauth.contains("SOAP login()"), "{oauth}");
        // The SOAP next step names no app.
        assert!(
            page.contains("<span class=\"nw via soap\">SOAP login()</span> (no app) in org"),
            "{page}"
        );
        // The deadline line counts the SOAP set.
        assert!(
            page.contains("(1 of 1 SOAP login() credential set not upgraded yet)"),
            "{page}"
        );
        let text = table(&report, &s, None);
        let soap_line = text
            .lines()
            .find(|l| l.contains("(SOAP login())"))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(soap_line.contains("int@acme.com"), "{text}");
        assert_eq!(text.matches("int@acme.com  ").count(), 2, "{text}");
    }

    #[test]
    fn a_soap_set_is_suggested_a_jwt_bearer_entry_with_placeholders() {
        let text = suggested_credentials(&soap_and_oauth_report());
        assert!(
            text.contains("# SOAP login() names no connected app: set client_id"),
            "{text}"
        );
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        let entries = parsed["credentials"].as_array().unwrap();
        assert_eq!(entries.len(), 2, "{text}");
        let soap = entries
            .iter()
            .find(|e| e["client_id"].as_str() == Some(SOAP_CLIENT_ID_PLACEHOLDER))
            .unwrap_or_else(|| panic!("{text}"));
        assert_eq!(soap["username"].as_str(), Some("int@acme.com"));
        assert_eq!(soap["my_domain"].as_str(), Some("acme.my.salesforce.com"));
        assert_eq!(soap["flow"].as_str(), Some("jwt_bearer"));
        assert_eq!(soap["jwt_private_key"].as_str(), Some(KEY_PLACEHOLDER));
        // The OAuth set keeps its own app and client credentials.
        let oauth = entries
            .iter()
            .find(|e| e["client_id"].as_str() == Some("3MVGapp"))
            .unwrap();
        assert_eq!(oauth["flow"].as_str(), Some("client_credentials"));
    }
}
