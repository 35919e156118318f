//! The migration report (docs/operating.md, "The events file"): events grouped by credential set `(client_id, username)`,
//! with a verdict and the operator's next step. Pure: the running proxy feeds it events as
//! they are written, `grantshift report` feeds it event files, so both say the same.

use super::events::{Action, Event, UpstreamErrorInfo};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// What to do next about a credential set, most urgent first: the first that applies wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    NeedsJwt,
    NeedsRunAsUser,
    NeedsFlowEnabled,
    Failing,
    Ready,
    Upgraded,
    Observing,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::NeedsJwt => "needs-jwt",
            Verdict::NeedsRunAsUser => "needs-run-as-user",
            Verdict::NeedsFlowEnabled => "needs-flow-enabled",
            Verdict::Failing => "failing",
            Verdict::Ready => "ready",
            Verdict::Upgraded => "upgraded",
            Verdict::Observing => "observing",
        }
    }
}

/// One credential set's row.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub client_id: String,
    pub username: String,
    pub verdict: Verdict,
    pub hint: String,
    pub hosts: BTreeSet<String>,
    pub counts: BTreeMap<&'static str, u64>,
    pub first_seen: String,
    pub last_seen: String,
    pub last_action: &'static str,
    pub last_status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    /// The org's My Domain URL, learned from a successful response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_url: Option<String>,
    /// Where the last successful upgrade went.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upgraded_via: Option<String>,
    /// The last failed upgrade attempt, until an upgrade succeeds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_upgrade_error: Option<UpstreamErrorInfo>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub credentials: Vec<Row>,
}

#[derive(Debug, Default)]
struct SetState {
    client_id: String,
    username: String,
    hosts: BTreeSet<String>,
    counts: BTreeMap<&'static str, u64>,
    first_seen: String,
    last_seen: String,
    last_action: Option<Action>,
    last_status: u16,
    org_id: Option<String>,
    instance_url: Option<String>,
    /// Learned from a password response (observe, unmapped, fallback): the mapping can be
    /// written.
    learned_from_password: bool,
    upgraded_via: Option<String>,
    last_upgrade_error: Option<UpstreamErrorInfo>,
}

/// Accumulates events into credential-set rows.
#[derive(Debug, Default)]
pub struct ReportBuilder {
    sets: BTreeMap<(String, String), SetState>,
}

impl ReportBuilder {
    /// Take one event into account. Only password grants belong to credential sets.
    pub fn add(&mut self, event: &Event) {
        if event.grant.as_deref() != Some("password") {
            return;
        }
        let (Some(client_id), Some(username)) = (&event.client_id, &event.username) else {
            return;
        };
        let key = (client_id.clone(), username.to_lowercase());
        let set = self.sets.entry(key).or_insert_with(|| SetState {
            client_id: client_id.clone(),
            username: username.to_lowercase(),
            first_seen: event.ts.clone(),
            ..SetState::default()
        });
        set.hosts.insert(event.host.to_lowercase());
        *set.counts.entry(event.action.as_str()).or_default() += 1;
        if event.ts < set.first_seen {
            set.first_seen = event.ts.clone();
        }
        set.last_seen = event.ts.clone();
        set.last_action = Some(event.action);
        set.last_status = event.status;
        let success = (200..300).contains(&event.status);
        if success {
            if event.org_id.is_some() {
                set.org_id = event.org_id.clone();
            }
            if event.instance_url.is_some() {
                set.instance_url = event.instance_url.clone();
                if matches!(
                    event.action,
                    Action::Observed | Action::Unmapped | Action::Fallback
                ) {
                    set.learned_from_password = true;
                }
            }
        }
        match event.action {
            Action::Upgraded => {
                set.upgraded_via = event.target_host.clone();
                set.last_upgrade_error = None;
            }
            Action::Fallback | Action::Failed => {
                set.last_upgrade_error = event.upstream_error.clone();
            }
            _ => {}
        }
    }

    /// The report: one row per set, ordered by verdict (most urgent first), then client_id,
    /// then username.
    pub fn report(&self) -> Report {
        // needs-jwt is a property of (client_id, org): several usernames for one app in one org.
        let mut users_per_app_org: BTreeMap<(&str, &str), BTreeSet<&str>> = BTreeMap::new();
        for set in self.sets.values() {
            if let Some(org) = &set.org_id {
                users_per_app_org
                    .entry((set.client_id.as_str(), org_key(org)))
                    .or_default()
                    .insert(set.username.as_str());
            }
        }
        let mut rows: Vec<Row> = self
            .sets
            .values()
            .map(|set| {
                let shared_with = set
                    .org_id
                    .as_ref()
                    .and_then(|org| users_per_app_org.get(&(set.client_id.as_str(), org_key(org))))
                    .filter(|users| users.len() > 1);
                let (verdict, hint) = judge(set, shared_with);
                Row {
                    client_id: set.client_id.clone(),
                    username: set.username.clone(),
                    verdict,
                    hint,
                    hosts: set.hosts.clone(),
                    counts: set.counts.clone(),
                    first_seen: set.first_seen.clone(),
                    last_seen: set.last_seen.clone(),
                    last_action: set.last_action.map_or("", Action::as_str),
                    last_status: set.last_status,
                    org_id: set.org_id.clone(),
                    instance_url: set.instance_url.clone(),
                    upgraded_via: set.upgraded_via.clone(),
                    last_upgrade_error: set.last_upgrade_error.clone(),
                }
            })
            .collect();
        rows.sort_by(|a, b| {
            (a.verdict, &a.client_id, &a.username).cmp(&(b.verdict, &b.client_id, &b.username))
        });
        Report { credentials: rows }
    }
}

/// Salesforce org ids come as 15 or 18 characters; the first 15 identify the org.
fn org_key(org: &str) -> &str {
    org.get(..15).unwrap_or(org)
}

/// The verdict and the one-line next step for a set.
fn judge(set: &SetState, shared_with: Option<&BTreeSet<&str>>) -> (Verdict, String) {
    let org = set.org_id.as_deref().unwrap_or("(unknown org)");
    if let Some(users) = shared_with {
        let users: Vec<&str> = users.iter().copied().collect();
        return (
            Verdict::NeedsJwt,
            format!(
                "several usernames ({}) use app {} in org {org}: client credentials has one Run As user, so map them with flow = \"jwt_bearer\" and the app's private key",
                users.join(", "),
                set.client_id
            ),
        );
    }
    let error = set.last_upgrade_error.as_ref();
    let description = error
        .and_then(|e| e.error_description.as_deref())
        .unwrap_or("")
        .to_ascii_lowercase();
    let code = error.and_then(|e| e.error.as_deref()).unwrap_or("");
    if description.contains("no client credentials user enabled") {
        return (
            Verdict::NeedsRunAsUser,
            format!("set a Run As user for app {} in org {org} (Setup → App Manager → Manage → Edit Policies → Client Credentials Flow)", set.client_id),
        );
    }
    if code == "unauthorized_client"
        || code == "unsupported_grant_type"
        || description.contains("client credentials flow")
    {
        return (
            Verdict::NeedsFlowEnabled,
            format!("enable the client credentials flow on app {} in org {org} (Setup → App Manager → Edit → Enable Client Credentials Flow)", set.client_id),
        );
    }
    let last_failed = matches!(set.last_action, Some(Action::Failed))
        || set.last_status >= 400
        || matches!(set.last_action, Some(Action::Fallback));
    if last_failed {
        let why = match error {
            Some(e) => format!(
                "{}{}",
                e.error.as_deref().unwrap_or("no response"),
                e.error_description
                    .as_deref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            ),
            None => format!("HTTP {}", set.last_status),
        };
        return (
            Verdict::Failing,
            format!("logins are failing ({why}); check the mapping and Login History in org {org}"),
        );
    }
    if set.learned_from_password && set.upgraded_via.is_none() {
        if let Some(domain) = set.instance_url.as_deref().and_then(host_of) {
            return (
                Verdict::Ready,
                format!(
                    "add [[credentials]] username = \"{}\" my_domain = \"{domain}\" (grantshift report --suggest-config prints it)",
                    set.username
                ),
            );
        }
    }
    if let (Some(Action::Upgraded), Some(via)) = (set.last_action, &set.upgraded_via) {
        return (
            Verdict::Upgraded,
            format!("done: logs in with an upgraded grant via {via}"),
        );
    }
    (
        Verdict::Observing,
        "no successful password login seen yet: the org's My Domain is not known".into(),
    )
}

/// `https://acme.my.salesforce.com/` → `acme.my.salesforce.com`.
pub fn host_of(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    uri.host().map(str::to_ascii_lowercase)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ts: &str, client_id: &str, username: &str, action: Action, status: u16) -> Event {
        let mut e = Event::new("127.0.0.1:1".parse().unwrap(), "login.salesforce.com");
        e.ts = ts.into();
        e.grant = Some("password".into());
        e.client_id = Some(client_id.into());
        e.username = Some(username.into());
        e.action = action;
        e.status = status;
        e
    }

    fn learned(mut e: Event, org: &str) -> Event {
        e.org_id = Some(org.into());
        e.instance_url = Some("https://acme.my.salesforce.com".into());
        e
    }

    fn verdict_of(events: &[Event], username: &str) -> Verdict {
        let mut b = ReportBuilder::default();
        events.iter().for_each(|e| b.add(e));
        b.report()
            .credentials
            .into_iter()
            .find(|r| r.username == username)
            .unwrap()
            .verdict
    }

    #[test]
    fn observed_then_learned_is_ready_and_suggests_a_mapping() {
        let events = [learned(
            event("t1", "app", "Int@Acme.com", Action::Observed, 200),
            "00D000000000001AAA",
        )];
        assert_eq!(verdict_of(&events, "int@acme.com"), Verdict::Ready);
        let mut b = ReportBuilder::default();
        b.add(&events[0]);
        let toml_text = super::super::render::suggested_credentials(&b.report());
        let parsed: toml::Table = toml::from_str(&toml_text).unwrap();
        let entry = &parsed["credentials"].as_array().unwrap()[0];
        assert_eq!(entry["my_domain"].as_str(), Some("acme.my.salesforce.com"));
        assert_eq!(entry["username"].as_str(), Some("int@acme.com"));
    }

    #[test]
    fn two_usernames_of_one_app_in_one_org_need_jwt() {
        let events = [
            learned(
                event("t1", "app", "a@acme.com", Action::Observed, 200),
                "00D000000000001AAA",
            ),
            learned(
                event("t2", "app", "b@acme.com", Action::Observed, 200),
                "00D000000000001",
            ),
            learned(
                event("t3", "other", "c@acme.com", Action::Observed, 200),
                "00D000000000001AAA",
            ),
        ];
        assert_eq!(verdict_of(&events, "a@acme.com"), Verdict::NeedsJwt);
        assert_eq!(verdict_of(&events, "b@acme.com"), Verdict::NeedsJwt);
        assert_eq!(verdict_of(&events, "c@acme.com"), Verdict::Ready);
    }

    #[test]
    fn upgrade_errors_name_what_to_fix() {
        let mut e = event("t1", "app", "u@x.com", Action::Fallback, 200);
        e.upstream_error = Some(UpstreamErrorInfo {
            status: Some(400),
            error: Some("invalid_grant".into()),
            error_description: Some("no client credentials user enabled".into()),
        });
        assert_eq!(verdict_of(&[e.clone()], "u@x.com"), Verdict::NeedsRunAsUser);
        e.upstream_error.as_mut().unwrap().error = Some("unauthorized_client".into());
        e.upstream_error.as_mut().unwrap().error_description = Some("x".into());
        assert_eq!(
            verdict_of(&[e.clone()], "u@x.com"),
            Verdict::NeedsFlowEnabled
        );
        e.upstream_error.as_mut().unwrap().error = Some("connect_error".into());
        assert_eq!(verdict_of(&[e.clone()], "u@x.com"), Verdict::Failing);
        // A later successful upgrade clears the error.
        let mut ok = event("t2", "app", "u@x.com", Action::Upgraded, 200);
        ok.target_host = Some("acme.my.salesforce.com".into());
        assert_eq!(verdict_of(&[e, ok], "u@x.com"), Verdict::Upgraded);
    }

    #[test]
    fn other_grants_are_not_credential_sets_and_unseen_domains_observe() {
        let mut refresh = event("t1", "app", "u@x.com", Action::Passed, 200);
        refresh.grant = Some("refresh_token".into());
        let mut b = ReportBuilder::default();
        b.add(&refresh);
        assert!(b.report().credentials.is_empty());
        assert_eq!(
            verdict_of(
                &[event("t1", "app", "u@x.com", Action::Unmapped, 400)],
                "u@x.com"
            ),
            Verdict::Failing
        );
        assert_eq!(
            verdict_of(
                &[event("t1", "app", "u@x.com", Action::Unmapped, 200)],
                "u@x.com"
            ),
            Verdict::Observing
        );
    }
}
