//! The migration report (docs/operating.md, "The events file"): events grouped by credential set `(client_id, username)`,
//! with a verdict and the operator's next step. Pure: the running proxy feeds it events as
//! they are written, `grantshift report` feeds it event files, so both say the same.
//!
//! Bounded whatever clients send: at most `max_sets` credential sets (the least recently
//! seen is dropped, and counted), at most [`MAX_HOSTS_PER_SET`] hosts listed per set, and a
//! login whose username or client id is over its bound is counted, never made a set.
//!
//! It also keeps a [`Trend`]: password logins per hour (from each event's `ts`, never the wall
//! clock, so a replayed events file draws the same chart), for the [`TREND_HOURS`] hours up to
//! the newest event; older hours are dropped as newer ones come, and counted.

use super::events::{within_bound, Action, Event, UpstreamErrorInfo, MAX_HOST_CHARS};
use crate::config::{Flow, VerifyPassword};
use crate::oauth::{MAX_CLIENT_ID_CHARS, MAX_USERNAME_CHARS};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Hosts listed per credential set; logins at further hosts are only counted.
pub const MAX_HOSTS_PER_SET: usize = 8;

/// Usernames named in a `needs-jwt` hint; the rest are counted.
const MAX_USERS_IN_HINT: usize = 5;

/// When Salesforce stops the username-password flow for connected apps: after it, a password
/// can no longer be checked by Salesforce, so no verifier can be learned.
pub const PASSWORD_FLOW_RETIREMENT: &str = "20 Feb 2027";

/// When Salesforce retires SOAP API `login()` (announced for Summer '27; 1 June 2027 is taken
/// as its day, as in the summary's deadlines).
pub const SOAP_LOGIN_RETIREMENT: &str = "Summer '27 (1 Jun 2027)";

/// How a credential set logs in: the OAuth username-password flow (`grant=password`) or the
/// SOAP API's `login()` (`soap_login`, which carries a username and password, no client_id).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginGrant {
    #[default]
    Password,
    SoapLogin,
}

impl LoginGrant {
    /// The event's `grant` if it is a login that makes credential sets.
    pub fn of(grant: Option<&str>) -> Option<LoginGrant> {
        match grant? {
            "password" => Some(LoginGrant::Password),
            "soap_login" => Some(LoginGrant::SoapLogin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LoginGrant::Password => "password",
            LoginGrant::SoapLogin => "soap_login",
        }
    }

    /// The day Salesforce stops this kind of login.
    pub fn retirement(self) -> &'static str {
        match self {
            LoginGrant::Password => PASSWORD_FLOW_RETIREMENT,
            LoginGrant::SoapLogin => SOAP_LOGIN_RETIREMENT,
        }
    }
}

/// Where a credential set's password verifier comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifierSource {
    /// The entry's `password_hash`.
    Configured,
    /// Learned from a password login Salesforce accepted (the state file).
    Learned,
    /// None yet.
    None,
}

impl VerifierSource {
    pub fn as_str(self) -> &'static str {
        match self {
            VerifierSource::Configured => "configured",
            VerifierSource::Learned => "learned",
            VerifierSource::None => "none",
        }
    }
}

/// What the proxy knows of a set's verifier (not in the events: from the config and the state
/// file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifierView {
    pub source: VerifierSource,
    /// The `verify_password` of the entry the set matches.
    pub mode: VerifyPassword,
}

/// `(client_id, username)` → what is known of that set's verifier.
pub type VerifierLookup<'a> = dyn Fn(&str, &str) -> VerifierView + 'a;

/// The reason of a SOAP login's fallback or failure when the app issues JWT-based access
/// tokens, which the SOAP API refuses.
pub const JWT_ACCESS_TOKEN: &str = "jwt_access_token";

/// The skip reasons of a login that was not upgraded for its password.
const PASSWORD_REFUSALS: [&str; 3] = ["password_mismatch", "password_throttled", "no_verifier"];

/// What to do next about a credential set, most urgent first: the first that applies wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    NeedsJwt,
    NeedsRunAsUser,
    NeedsFlowEnabled,
    NeedsVerifier,
    PasswordMismatch,
    Failing,
    Ready,
    Upgraded,
    Observing,
}

impl Verdict {
    /// Every verdict, most urgent first.
    pub const ALL: [Verdict; 9] = [
        Verdict::NeedsJwt,
        Verdict::NeedsRunAsUser,
        Verdict::NeedsFlowEnabled,
        Verdict::NeedsVerifier,
        Verdict::PasswordMismatch,
        Verdict::Failing,
        Verdict::Ready,
        Verdict::Upgraded,
        Verdict::Observing,
    ];

    /// `needs-jwt` → [`Verdict::NeedsJwt`]; `None` for anything else.
    pub fn parse(text: &str) -> Option<Verdict> {
        Verdict::ALL.into_iter().find(|v| v.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::NeedsJwt => "needs-jwt",
            Verdict::NeedsRunAsUser => "needs-run-as-user",
            Verdict::NeedsFlowEnabled => "needs-flow-enabled",
            Verdict::NeedsVerifier => "needs-verifier",
            Verdict::PasswordMismatch => "password-mismatch",
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
    /// How the set logs in: `password` (OAuth) or `soap_login` (SOAP `login()`, whose
    /// `client_id` is always empty).
    pub grant: LoginGrant,
    pub client_id: String,
    pub username: String,
    pub verdict: Verdict,
    pub hint: String,
    pub hosts: BTreeSet<String>,
    /// Logins at hosts beyond the first [`MAX_HOSTS_PER_SET`], which are not listed.
    #[serde(skip_serializing_if = "is_zero")]
    pub logins_at_other_hosts: u64,
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
    /// Where the set's password verifier comes from (absent when the report was made from
    /// event files alone). Never the verifier itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_verifier: Option<VerifierSource>,
    /// The `verify_password` of the entry the set matches (absent as above).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify_password: Option<VerifyPassword>,
}

/// Hourly trend buckets kept: 14 days up to the newest event's hour.
pub const TREND_HOURS: i64 = 14 * 24;

/// Password logins of one hour, by what became of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TrendCounts {
    /// `upgraded`: the login went to Salesforce as client credentials or JWT bearer.
    pub upgraded: u64,
    /// `fallback` or `failed`: an upgrade was tried and did not succeed (the password login
    /// went through as it came, or the client got the error).
    pub fallback: u64,
    /// `observed`, `unmapped`, `skipped`, `passed`: still on the password flow, no upgrade
    /// tried.
    pub password: u64,
}

impl TrendCounts {
    pub fn total(&self) -> u64 {
        self.upgraded + self.fallback + self.password
    }

    fn add(&mut self, other: &TrendCounts) {
        self.upgraded += other.upgraded;
        self.fallback += other.fallback;
        self.password += other.password;
    }

    fn count(&mut self, action: Action) {
        match action {
            Action::Upgraded => self.upgraded += 1,
            Action::Fallback | Action::Failed => self.fallback += 1,
            Action::Observed | Action::Unmapped | Action::Skipped | Action::Passed => {
                self.password += 1
            }
            // Not a login (and never a password grant's event).
            Action::RevokeShielded => {}
        }
    }
}

/// One hour of the trend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrendBucket {
    /// The hour's start, seconds since the Unix epoch divided by 3600.
    #[serde(skip)]
    pub unix_hour: i64,
    /// The hour's start, RFC 3339 UTC (`2026-12-01T15:00:00Z`).
    pub hour: String,
    #[serde(flatten)]
    pub counts: TrendCounts,
}

/// Password logins per hour, oldest first; hours without logins are left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Trend {
    pub hours: Vec<TrendBucket>,
    /// Password logins in no bucket: older than [`TREND_HOURS`] before the newest event, or
    /// with a timestamp that is not RFC 3339.
    pub outside: u64,
}

impl Trend {
    /// Sum the buckets whose hour is in `from..=to` (Unix hours).
    pub fn sum(&self, from: i64, to: i64) -> TrendCounts {
        let mut sum = TrendCounts::default();
        for b in self
            .hours
            .iter()
            .filter(|b| (from..=to).contains(&b.unix_hour))
        {
            sum.add(&b.counts);
        }
        sum
    }
}

/// `2026-12-01T15:04:05.123456Z` → its hour since the Unix epoch.
pub fn unix_hour(ts: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).ok()?;
    Some(t.unix_timestamp().div_euclid(3600))
}

/// A Unix hour as RFC 3339 UTC.
pub fn hour_rfc3339(unix_hour: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix_hour * 3600)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub credentials: Vec<Row>,
    /// Credential sets dropped to stay within `telemetry.report_max_sets` (least recently
    /// seen first).
    pub dropped_sets: u64,
    /// Password logins that are no credential set, by why: `username_too_long`,
    /// `client_id_too_long`, `no_client_id`, `no_username` (or the event's skip reason).
    pub untracked_logins: BTreeMap<String, u64>,
    /// Password logins per hour (every password login, credential set or not).
    pub trend: Trend,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Default)]
struct SetState {
    grant: LoginGrant,
    /// Empty for a SOAP set.
    client_id: String,
    username: String,
    /// When it was last seen, in the order events came: its key in `ReportBuilder::recency`.
    seen_at: u64,
    hosts: BTreeSet<String>,
    logins_at_other_hosts: u64,
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
    /// The flow of the last successful upgrade (`jwt_bearer`, …).
    upgraded_flow: Option<String>,
    last_upgrade_error: Option<UpstreamErrorInfo>,
    /// The last failed upgrade was refused because the app issues JWT-based access tokens
    /// (which the SOAP API does not take), until an upgrade succeeds.
    jwt_access_token: bool,
    /// The last login was not upgraded for its password: why (`password_mismatch`, …).
    last_password_refusal: Option<&'static str>,
}

/// `(grant, client_id, lowercased username)`: a SOAP set (client_id `""`) is never merged
/// with an OAuth set of the same username.
type SetKey = (LoginGrant, String, String);

/// Accumulates events into credential-set rows.
#[derive(Debug)]
pub struct ReportBuilder {
    sets: HashMap<SetKey, SetState>,
    /// The sets by when they were last seen (oldest first): what to drop when full.
    recency: BTreeMap<u64, SetKey>,
    next_seen: u64,
    max_sets: usize,
    dropped_sets: u64,
    untracked: BTreeMap<String, u64>,
    /// Unix hour → that hour's password logins; at most [`TREND_HOURS`] hours.
    trend: BTreeMap<i64, TrendCounts>,
    trend_outside: u64,
}

impl Default for ReportBuilder {
    fn default() -> Self {
        ReportBuilder::new(crate::config::DEFAULT_REPORT_MAX_SETS)
    }
}

impl ReportBuilder {
    /// A report of at most `max_sets` credential sets (at least one).
    pub fn new(max_sets: usize) -> ReportBuilder {
        ReportBuilder {
            sets: HashMap::new(),
            recency: BTreeMap::new(),
            next_seen: 0,
            max_sets: max_sets.max(1),
            dropped_sets: 0,
            untracked: BTreeMap::new(),
            trend: BTreeMap::new(),
            trend_outside: 0,
        }
    }

    /// Count a password login in its hour; hours that fall out of the window are dropped.
    fn count_in_trend(&mut self, event: &Event) {
        let Some(hour) = unix_hour(&event.ts) else {
            self.trend_outside += 1;
            return;
        };
        let newest = self
            .trend
            .last_key_value()
            .map_or(hour, |(h, _)| hour.max(*h));
        if hour <= newest - TREND_HOURS {
            self.trend_outside += 1;
            return;
        }
        self.trend.entry(hour).or_default().count(event.action);
        while let Some(entry) = self.trend.first_entry() {
            if *entry.key() > newest - TREND_HOURS {
                break;
            }
            self.trend_outside += entry.remove().total();
        }
    }

    /// Keep at most `max_sets` from now on, dropping the least recently seen sets over it at
    /// once. Returns how many were dropped.
    pub fn set_max_sets(&mut self, max_sets: usize) -> u64 {
        self.max_sets = max_sets.max(1);
        self.drop_over(self.max_sets)
    }

    /// Credential sets dropped so far to stay within the bound.
    pub fn dropped_sets(&self) -> u64 {
        self.dropped_sets
    }

    /// Drop least recently seen sets until at most `keep` remain.
    fn drop_over(&mut self, keep: usize) -> u64 {
        let mut dropped = 0;
        while self.sets.len() > keep {
            let Some((_, key)) = self.recency.pop_first() else {
                break;
            };
            self.sets.remove(&key);
            dropped += 1;
        }
        self.dropped_sets += dropped;
        dropped
    }

    /// Take one event into account. Only password grants and SOAP `login()`s belong to
    /// credential sets. Returns how many sets were dropped to make room (0 or 1).
    pub fn add(&mut self, event: &Event) -> u64 {
        let Some(grant) = LoginGrant::of(event.grant.as_deref()) else {
            return 0;
        };
        self.count_in_trend(event);
        // A SOAP login() names no connected app: its sets are keyed by grant and username.
        let client_id = match grant {
            LoginGrant::Password => event.client_id.as_deref(),
            LoginGrant::SoapLogin => Some(""),
        };
        let untracked = match (client_id, &event.username) {
            (Some(client_id), _) if within_bound(client_id, MAX_CLIENT_ID_CHARS).is_err() => {
                Some("client_id_too_long")
            }
            (_, Some(username)) if within_bound(username, MAX_USERNAME_CHARS).is_err() => {
                Some("username_too_long")
            }
            (Some(_), Some(_)) => None,
            // An event leaves an over-long value out, and its skip reason says which.
            _ => Some(match (event.action, event.reason.as_deref()) {
                (Action::Skipped, Some(reason)) => reason,
                _ if client_id.is_none() => "no_client_id",
                _ => "no_username",
            }),
        };
        if let Some(why) = untracked {
            *self.untracked.entry(why.to_owned()).or_default() += 1;
            return 0;
        }
        let (Some(client_id), Some(username)) = (client_id, &event.username) else {
            return 0;
        };
        let key = (grant, client_id.to_owned(), username.to_lowercase());
        let seen_at = self.next_seen;
        self.next_seen += 1;
        let mut dropped = 0;
        match self.sets.get_mut(&key) {
            Some(set) => {
                self.recency.remove(&set.seen_at);
                set.seen_at = seen_at;
            }
            None => {
                dropped = self.drop_over(self.max_sets - 1);
                self.sets.insert(
                    key.clone(),
                    SetState {
                        grant,
                        client_id: client_id.to_owned(),
                        username: username.to_lowercase(),
                        first_seen: event.ts.clone(),
                        seen_at,
                        ..SetState::default()
                    },
                );
            }
        }
        self.recency.insert(seen_at, key.clone());
        let set = self.sets.get_mut(&key).expect("just inserted");
        let host = event.host.to_lowercase();
        if set.hosts.contains(&host)
            || (set.hosts.len() < MAX_HOSTS_PER_SET && within_bound(&host, MAX_HOST_CHARS).is_ok())
        {
            set.hosts.insert(host);
        } else {
            set.logins_at_other_hosts += 1;
        }
        *set.counts.entry(event.action.as_str()).or_default() += 1;
        if event.ts < set.first_seen {
            set.first_seen = event.ts.clone();
        }
        set.last_seen = event.ts.clone();
        set.last_action = Some(event.action);
        set.last_status = event.status;
        set.last_password_refusal = match event.action {
            Action::Skipped => PASSWORD_REFUSALS
                .into_iter()
                .find(|r| event.reason.as_deref() == Some(*r)),
            _ => None,
        };
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
                set.upgraded_flow = event.flow.clone();
                set.last_upgrade_error = None;
                set.jwt_access_token = false;
            }
            Action::Fallback | Action::Failed => {
                set.last_upgrade_error = event.upstream_error.clone();
                set.jwt_access_token = event.reason.as_deref() == Some(JWT_ACCESS_TOKEN);
            }
            _ => {}
        }
        dropped
    }

    /// The report: one row per set, ordered by verdict (most urgent first), then client_id,
    /// then username.
    pub fn report(&self) -> Report {
        self.report_with(None)
    }

    /// [`report`](Self::report), with what `verifiers(client_id, username)` tells of each
    /// set's password verifier.
    pub fn report_with(&self, verifiers: Option<&VerifierLookup<'_>>) -> Report {
        // needs-jwt is a property of (client_id, org): several usernames for one app in one org.
        // A SOAP set names no app: which one it is mapped to is the operator's choice.
        let mut users_per_app_org: BTreeMap<(&str, &str), BTreeSet<&str>> = BTreeMap::new();
        for set in self.sets.values() {
            if set.grant == LoginGrant::SoapLogin {
                continue;
            }
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
                    .filter(|_| set.grant == LoginGrant::Password)
                    .and_then(|org| users_per_app_org.get(&(set.client_id.as_str(), org_key(org))))
                    .filter(|users| users.len() > 1);
                let view = verifiers.map(|v| v(&set.client_id, &set.username));
                let (verdict, hint) = judge(set, shared_with, view);
                Row {
                    grant: set.grant,
                    client_id: set.client_id.clone(),
                    username: set.username.clone(),
                    verdict,
                    hint,
                    hosts: set.hosts.clone(),
                    logins_at_other_hosts: set.logins_at_other_hosts,
                    counts: set.counts.clone(),
                    first_seen: set.first_seen.clone(),
                    last_seen: set.last_seen.clone(),
                    last_action: set.last_action.map_or("", Action::as_str),
                    last_status: set.last_status,
                    org_id: set.org_id.clone(),
                    instance_url: set.instance_url.clone(),
                    upgraded_via: set.upgraded_via.clone(),
                    last_upgrade_error: set.last_upgrade_error.clone(),
                    password_verifier: view.map(|v| v.source),
                    verify_password: view.map(|v| v.mode),
                }
            })
            .collect();
        rows.sort_by(|a, b| {
            (a.verdict, &a.client_id, &a.username, a.grant).cmp(&(
                b.verdict,
                &b.client_id,
                &b.username,
                b.grant,
            ))
        });
        Report {
            credentials: rows,
            dropped_sets: self.dropped_sets,
            untracked_logins: self.untracked.clone(),
            trend: Trend {
                hours: self
                    .trend
                    .iter()
                    .map(|(&unix_hour, counts)| TrendBucket {
                        unix_hour,
                        hour: hour_rfc3339(unix_hour),
                        counts: *counts,
                    })
                    .collect(),
                outside: self.trend_outside,
            },
        }
    }
}

/// One next step shared by several rows: one verdict, app, org and hint, with the usernames
/// it is about (so a page says a hint once, not once per row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HintGroup {
    pub verdict: Verdict,
    /// SOAP sets (no app) are grouped apart from OAuth ones.
    pub grant: LoginGrant,
    pub client_id: String,
    pub org_id: Option<String>,
    pub usernames: Vec<String>,
    /// The rows' indices in [`Report::credentials`].
    pub rows: Vec<usize>,
    pub hint: String,
}

impl Report {
    /// The rows' hints grouped by (verdict, grant, client_id, org, hint), in row order (most
    /// urgent first); each row is in exactly one group.
    pub fn hint_groups(&self) -> Vec<HintGroup> {
        let mut groups: Vec<HintGroup> = Vec::new();
        let mut index: HashMap<GroupKey<'_>, usize> = HashMap::new();
        for (i, row) in self.credentials.iter().enumerate() {
            let key = (
                row.verdict,
                row.grant,
                row.client_id.as_str(),
                row.org_id.as_deref().map(org_key),
                row.hint.as_str(),
            );
            match index.get(&key) {
                Some(&g) => {
                    groups[g].usernames.push(row.username.clone());
                    groups[g].rows.push(i);
                }
                None => {
                    index.insert(key, groups.len());
                    groups.push(HintGroup {
                        verdict: row.verdict,
                        grant: row.grant,
                        client_id: row.client_id.clone(),
                        org_id: row.org_id.clone(),
                        usernames: vec![row.username.clone()],
                        rows: vec![i],
                        hint: row.hint.clone(),
                    });
                }
            }
        }
        groups
    }
}

/// What a [`HintGroup`] is one of: (verdict, grant, client_id, org, hint).
type GroupKey<'a> = (Verdict, LoginGrant, &'a str, Option<&'a str>, &'a str);

/// Salesforce org ids come as 15 or 18 characters; the first 15 identify the org.
fn org_key(org: &str) -> &str {
    org.get(..15).unwrap_or(org)
}

/// The verdict and the one-line next step for a set, with a word on its password verifier
/// when it has none.
fn judge(
    set: &SetState,
    shared_with: Option<&BTreeSet<&str>>,
    view: Option<VerifierView>,
) -> (Verdict, String) {
    let (verdict, mut hint) = judge_login(set, shared_with, view);
    let unprotected =
        view.is_some_and(|v| v.source == VerifierSource::None && v.mode == VerifyPassword::IfKnown);
    if unprotected {
        hint.push_str(&format!(
            "; no password verifier yet, so upgrades do not check the password: log in once through grantshift before {}, or set password_hash",
            set.grant.retirement()
        ));
    }
    (verdict, hint)
}

fn judge_login(
    set: &SetState,
    shared_with: Option<&BTreeSet<&str>>,
    view: Option<VerifierView>,
) -> (Verdict, String) {
    let org = set.org_id.as_deref().unwrap_or("(unknown org)");
    let soap = set.grant == LoginGrant::SoapLogin;
    // A SOAP login() names no app: the one its [[credentials]] entry maps it to.
    let app = if soap {
        format!("the app mapped for SOAP login() user {}", set.username)
    } else {
        format!("app {}", set.client_id)
    };
    // A set already upgraded with the flow the hint advises has followed it.
    let follows_advice = set.upgraded_flow.as_deref() == Some(Flow::JwtBearer.as_str());
    if let Some(users) = shared_with.filter(|_| !follows_advice) {
        let mut named: Vec<&str> = users.iter().copied().take(MAX_USERS_IN_HINT).collect();
        let more = users.len() - named.len();
        let more = format!("{more} more");
        if users.len() > MAX_USERS_IN_HINT {
            named.push(&more);
        }
        return (
            Verdict::NeedsJwt,
            format!(
                "several usernames ({}) use app {} in org {org}: client credentials has one Run As user, so map them with flow = \"jwt_bearer\" and the app's private key",
                named.join(", "),
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
            format!("set a Run As user for {app} in org {org} (Setup → App Manager → Manage → Edit Policies → Client Credentials Flow)"),
        );
    }
    if code == "unauthorized_client"
        || code == "unsupported_grant_type"
        || description.contains("client credentials flow")
    {
        return (
            Verdict::NeedsFlowEnabled,
            format!("enable the client credentials flow on {app} in org {org} (Setup → App Manager → Edit → Enable Client Credentials Flow)"),
        );
    }
    let needs_verifier = match view {
        Some(v) => v.source == VerifierSource::None && v.mode == VerifyPassword::Required,
        None => set.last_password_refusal == Some("no_verifier"),
    };
    if needs_verifier {
        let hint = if soap {
            format!(
                "not upgraded (no_verifier): no password verifier for this set; log in once through grantshift (mode = \"observe\") before {SOAP_LOGIN_RETIREMENT}, or set password_hash (grantshift hash-password)"
            )
        } else {
            format!(
                "not upgraded (no_verifier): no password verifier for this set; log in once through grantshift before {PASSWORD_FLOW_RETIREMENT} (e.g. with mode = \"observe\"), or set password_hash (grantshift hash-password)"
            )
        };
        return (Verdict::NeedsVerifier, hint);
    }
    let has_verifier = view.is_none_or(|v| v.source != VerifierSource::None);
    if has_verifier
        && matches!(
            set.last_password_refusal,
            Some("password_mismatch" | "password_throttled")
        )
    {
        return (
            Verdict::PasswordMismatch,
            "not upgraded: the last login's password did not match the set's password verifier, so it went to Salesforce as it came; if the password was changed, follow \"Rotating a password\" in docs/operating.md".into(),
        );
    }
    let last_failed = matches!(set.last_action, Some(Action::Failed))
        || set.last_status >= 400
        || matches!(set.last_action, Some(Action::Fallback));
    if last_failed && set.jwt_access_token {
        return (
            Verdict::Failing,
            format!("not upgraded (jwt_access_token): {app} issues JWT-based access tokens, which the SOAP API refuses; turn off \"Issue JSON Web Token (JWT)-based access tokens\" on the app in org {org} (Setup → App Manager → Edit → OAuth Settings)"),
        );
    }
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
            let hint = if soap {
                format!(
                    "SOAP login() names no connected app: add [[credentials]] username = \"{}\" my_domain = \"{domain}\" client_id = \"...\" and client_secret_env = \"...\" (client credentials) or jwt_private_key = \"...\" (JWT bearer, preferred: the session stays the user's own), before {SOAP_LOGIN_RETIREMENT} (grantshift report --suggest-config prints it)",
                    set.username
                )
            } else {
                format!(
                    "add [[credentials]] username = \"{}\" my_domain = \"{domain}\" (grantshift report --suggest-config prints it)",
                    set.username
                )
            };
            return (Verdict::Ready, hint);
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
        events.iter().for_each(|e| {
            b.add(e);
        });
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
    fn a_set_upgraded_with_jwt_bearer_is_upgraded_though_its_app_has_several_users() {
        let org = "00D000000000001AAA";
        let upgraded = |ts, user| {
            let mut e = learned(event(ts, "app", user, Action::Upgraded, 200), org);
            e.flow = Some("jwt_bearer".into());
            e.target_host = Some("acme.my.salesforce.com".into());
            e
        };
        let observed = learned(event("t3", "app", "c@acme.com", Action::Observed, 200), org);
        let events = [
            upgraded("t1", "a@acme.com"),
            upgraded("t2", "b@acme.com"),
            observed,
        ];
        assert_eq!(verdict_of(&events, "a@acme.com"), Verdict::Upgraded);
        assert_eq!(verdict_of(&events, "b@acme.com"), Verdict::Upgraded);
        // The one still on its password has not followed the advice yet.
        assert_eq!(verdict_of(&events, "c@acme.com"), Verdict::NeedsJwt);
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

    fn keys(b: &ReportBuilder) -> Vec<String> {
        let mut keys: Vec<String> = b
            .report()
            .credentials
            .iter()
            .map(|r| r.username.clone())
            .collect();
        keys.sort();
        keys
    }

    #[test]
    fn at_most_max_sets_are_kept_and_the_least_recently_seen_goes_first() {
        let mut b = ReportBuilder::new(3);
        for user in ["a", "b", "c"] {
            assert_eq!(b.add(&event("t", "app", user, Action::Observed, 200)), 0);
        }
        // `a` is seen again: `b` is now the least recently seen.
        assert_eq!(b.add(&event("t", "app", "A", Action::Observed, 200)), 0);
        assert_eq!(b.add(&event("t", "app", "d", Action::Observed, 200)), 1);
        assert_eq!(keys(&b), ["a", "c", "d"]);
        assert_eq!(b.add(&event("t", "app", "e", Action::Observed, 200)), 1);
        assert_eq!(keys(&b), ["a", "d", "e"]);
        let report = b.report();
        assert_eq!(report.dropped_sets, 2);
        // The kept set keeps its counts across the evictions around it.
        let a = report
            .credentials
            .iter()
            .find(|r| r.username == "a")
            .unwrap();
        assert_eq!(a.counts["observed"], 2);
        // Lowering the bound drops at once, oldest first.
        assert_eq!(b.set_max_sets(1), 2);
        assert_eq!(keys(&b), ["e"]);
        assert_eq!(b.dropped_sets(), 4);
        let json = serde_json::to_value(b.report()).unwrap();
        assert_eq!(json["dropped_sets"], 4);
    }

    #[test]
    fn logins_that_are_no_set_are_counted_by_why() {
        let mut b = ReportBuilder::default();
        let mut long = event("t", "app", "u@x.com", Action::Skipped, 400);
        long.username = None;
        long.reason = Some("username_too_long".into());
        b.add(&long);
        b.add(&long);
        let mut no_app = event("t", "app", "u@x.com", Action::Unmapped, 400);
        no_app.client_id = None;
        b.add(&no_app);
        // An events file from before the bounds may hold over-long values: not a set either.
        let old = event("t", "app", &"u".repeat(81), Action::Observed, 400);
        b.add(&old);
        let old = event("t", &"k".repeat(256), "u@x.com", Action::Observed, 400);
        b.add(&old);
        let report = b.report();
        assert!(report.credentials.is_empty(), "{:?}", report.credentials);
        assert_eq!(
            report.untracked_logins,
            BTreeMap::from([
                ("client_id_too_long".to_string(), 1),
                ("no_client_id".to_string(), 1),
                ("username_too_long".to_string(), 3),
            ])
        );
    }

    #[test]
    fn a_set_lists_a_bounded_number_of_hosts_and_counts_the_rest() {
        let mut b = ReportBuilder::default();
        for i in 0..20 {
            let mut e = event("t", "app", "u@x.com", Action::Observed, 200);
            e.host = format!("h{i}.my.salesforce.com");
            b.add(&e);
        }
        let mut again = event("t", "app", "u@x.com", Action::Observed, 200);
        again.host = "h0.my.salesforce.com".into();
        b.add(&again);
        let row = &b.report().credentials[0];
        assert_eq!(row.hosts.len(), MAX_HOSTS_PER_SET);
        assert!(row.hosts.contains("h0.my.salesforce.com"));
        assert_eq!(row.logins_at_other_hosts, 20 - MAX_HOSTS_PER_SET as u64);
        assert_eq!(row.counts["observed"], 21);
    }

    #[test]
    fn a_needs_jwt_hint_names_a_few_usernames_and_counts_the_rest() {
        let events: Vec<Event> = (0..50)
            .map(|i| {
                learned(
                    event(
                        "t",
                        "app",
                        &format!("user{i:02}@acme.com"),
                        Action::Observed,
                        200,
                    ),
                    "00D000000000001AAA",
                )
            })
            .collect();
        let mut b = ReportBuilder::default();
        events.iter().for_each(|e| {
            b.add(e);
        });
        let report = b.report();
        let hint = &report.credentials[0].hint;
        assert_eq!(report.credentials[0].verdict, Verdict::NeedsJwt);
        assert!(
            hint.contains("user00@acme.com, user01@acme.com, user02@acme.com, user03@acme.com, user04@acme.com, 45 more"),
            "{hint}"
        );
        assert!(!hint.contains("user05@"), "{hint}");
    }

    #[test]
    fn the_trend_counts_password_logins_per_hour_by_outcome_within_14_days() {
        let mut b = ReportBuilder::default();
        let at = |ts: &str, action| event(ts, "app", "u@x.com", action, 200);
        b.add(&at("2026-12-01T10:00:00.000000Z", Action::Upgraded));
        b.add(&at("2026-12-01T10:59:59.999999Z", Action::Fallback));
        b.add(&at("2026-12-01T10:30:00Z", Action::Failed));
        for action in [
            Action::Observed,
            Action::Unmapped,
            Action::Skipped,
            Action::Passed,
        ] {
            b.add(&at("2026-12-01T11:00:00Z", action));
        }
        // Not a password grant: not in the trend. No RFC 3339 timestamp: counted outside.
        let mut refresh = at("2026-12-01T11:00:00Z", Action::Passed);
        refresh.grant = Some("refresh_token".into());
        b.add(&refresh);
        b.add(&at("t1", Action::Observed));
        // Over the username bound: no set, but a password login all the same.
        b.add(&event(
            "2026-12-01T11:10:00Z",
            "app",
            &"u".repeat(81),
            Action::Observed,
            200,
        ));
        let trend = b.report().trend;
        assert_eq!(trend.hours.len(), 2);
        assert_eq!(trend.hours[0].hour, "2026-12-01T10:00:00Z");
        assert_eq!(
            trend.hours[0].counts,
            TrendCounts {
                upgraded: 1,
                fallback: 2,
                password: 0
            }
        );
        assert_eq!(trend.hours[1].counts.password, 5);
        assert_eq!(trend.outside, 1);
        let json = serde_json::to_value(&trend).unwrap();
        assert_eq!(json["hours"][0]["upgraded"], 1);
        assert!(json["hours"][0].get("unix_hour").is_none());
        // 14 days later the first hour falls out, counted; an event older than the window too.
        b.add(&at("2026-12-15T10:00:00Z", Action::Upgraded));
        let trend = b.report().trend;
        assert_eq!(trend.hours.len(), 2, "{trend:?}");
        assert_eq!(trend.hours[0].hour, "2026-12-01T11:00:00Z");
        assert_eq!(trend.outside, 1 + 3);
        b.add(&at("2026-12-01T10:30:00Z", Action::Upgraded));
        assert_eq!(b.report().trend.outside, 5);
        // Never more than TREND_HOURS buckets.
        let mut b = ReportBuilder::default();
        for h in 0..(TREND_HOURS + 50) {
            let ts = hour_rfc3339(491_000 + h);
            b.add(&at(&ts, Action::Observed));
        }
        let trend = b.report().trend;
        assert_eq!(trend.hours.len() as i64, TREND_HOURS);
        assert_eq!(trend.outside, 50);
        assert_eq!(
            trend.hours.last().unwrap().unix_hour,
            491_000 + TREND_HOURS + 49
        );
    }

    #[test]
    fn hints_are_grouped_per_app_org_and_hint_with_their_usernames() {
        let org = "00D000000000001AAA";
        let mut events: Vec<Event> = ["a@acme.com", "b@acme.com", "c@acme.com"]
            .iter()
            .map(|u| learned(event("t", "app", u, Action::Observed, 200), org))
            .collect();
        events.push(learned(
            event("t", "solo", "d@acme.com", Action::Observed, 200),
            org,
        ));
        events.push(learned(
            event("t", "solo2", "e@acme.com", Action::Observed, 200),
            org,
        ));
        let mut b = ReportBuilder::default();
        events.iter().for_each(|e| {
            b.add(e);
        });
        let report = b.report();
        let groups = report.hint_groups();
        assert_eq!(groups.len(), 3, "{groups:?}");
        assert_eq!(groups[0].verdict, Verdict::NeedsJwt);
        assert_eq!(
            groups[0].usernames,
            ["a@acme.com", "b@acme.com", "c@acme.com"]
        );
        assert_eq!(groups[0].rows, [0, 1, 2]);
        assert_eq!(groups[1].client_id, "solo");
        assert_eq!(groups[1].usernames, ["d@acme.com"]);
        assert_eq!(groups[2].rows, [4]);
        assert_eq!(Verdict::parse("needs-jwt"), Some(Verdict::NeedsJwt));
        assert_eq!(Verdict::parse("NEEDS-JWT"), None);
        assert!(Verdict::ALL.windows(2).all(|w| w[0] < w[1]));
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

    fn skipped(reason: &str, status: u16) -> Event {
        let mut e = event("t2", "app", "int@acme.com", Action::Skipped, status);
        e.reason = Some(reason.into());
        e
    }

    fn row_with(events: &[Event], view: Option<VerifierView>) -> Row {
        let mut b = ReportBuilder::default();
        events.iter().for_each(|e| {
            b.add(e);
        });
        let lookup = move |_: &str, _: &str| view.expect("asked only with a view");
        let report = match view {
            Some(_) => b.report_with(Some(&lookup)),
            None => b.report(),
        };
        report.credentials.into_iter().next().unwrap()
    }

    fn view(source: VerifierSource, mode: VerifyPassword) -> Option<VerifierView> {
        Some(VerifierView { source, mode })
    }

    #[test]
    fn a_set_that_needs_a_verifier_says_how_to_get_one_before_the_deadline() {
        let upgraded = {
            let mut e = event("t1", "app", "int@acme.com", Action::Upgraded, 200);
            e.target_host = Some("acme.my.salesforce.com".into());
            e
        };
        // Required and none: not upgraded until it has one.
        let row = row_with(
            &[skipped("no_verifier", 200)],
            view(VerifierSource::None, VerifyPassword::Required),
        );
        assert_eq!(row.verdict, Verdict::NeedsVerifier);
        assert!(
            row.hint
                .contains("log in once through grantshift before 20 Feb 2027"),
            "{}",
            row.hint
        );
        assert!(row.hint.contains("password_hash"), "{}", row.hint);
        assert_eq!(row.password_verifier, Some(VerifierSource::None));
        assert_eq!(row.verify_password, Some(VerifyPassword::Required));
        // From the events alone (grantshift report --events): the last skip tells it.
        let row = row_with(&[skipped("no_verifier", 200)], None);
        assert_eq!(row.verdict, Verdict::NeedsVerifier);
        assert_eq!(row.password_verifier, None);
        // Once configured, the set is what its logins say.
        let row = row_with(
            &[skipped("no_verifier", 200)],
            view(VerifierSource::Configured, VerifyPassword::Required),
        );
        assert_ne!(row.verdict, Verdict::NeedsVerifier);
        // if_known and none: upgraded, but the hint says the password is not checked.
        let row = row_with(
            std::slice::from_ref(&upgraded),
            view(VerifierSource::None, VerifyPassword::IfKnown),
        );
        assert_eq!(row.verdict, Verdict::Upgraded);
        assert!(
            row.hint.contains("no password verifier yet"),
            "{}",
            row.hint
        );
        assert!(
            row.hint
                .contains("before 20 Feb 2027, or set password_hash"),
            "{}",
            row.hint
        );
        for known in [VerifierSource::Learned, VerifierSource::Configured] {
            let row = row_with(
                std::slice::from_ref(&upgraded),
                view(known, VerifyPassword::IfKnown),
            );
            assert!(!row.hint.contains("verifier"), "{}", row.hint);
            assert_eq!(row.password_verifier, Some(known));
        }
        let row = row_with(&[upgraded], view(VerifierSource::None, VerifyPassword::Off));
        assert!(!row.hint.contains("verifier"), "{}", row.hint);
    }

    #[test]
    fn a_refused_password_is_its_own_verdict() {
        for reason in ["password_mismatch", "password_throttled"] {
            for status in [200, 400] {
                let row = row_with(
                    &[skipped(reason, status)],
                    view(VerifierSource::Learned, VerifyPassword::Required),
                );
                assert_eq!(row.verdict, Verdict::PasswordMismatch, "{reason} {status}");
                assert!(row.hint.contains("Rotating a password"), "{}", row.hint);
            }
        }
        // A later upgraded login is what counts.
        let mut upgraded = event("t3", "app", "int@acme.com", Action::Upgraded, 200);
        upgraded.target_host = Some("acme.my.salesforce.com".into());
        let row = row_with(&[skipped("password_mismatch", 400), upgraded], None);
        assert_eq!(row.verdict, Verdict::Upgraded);
    }

    fn soap(ts: &str, username: &str, action: Action, status: u16) -> Event {
        let mut e = event(ts, "unused", username, action, status);
        e.grant = Some("soap_login".into());
        e.client_id = None;
        e
    }

    fn report_of(events: &[Event]) -> Report {
        let mut b = ReportBuilder::default();
        events.iter().for_each(|e| {
            b.add(e);
        });
        b.report()
    }

    #[test]
    fn a_soap_set_and_an_oauth_set_of_one_username_are_two_rows() {
        let org = "00D000000000001AAA";
        let report = report_of(&[
            learned(soap("t1", "Int@Acme.com", Action::Observed, 200), org),
            learned(
                event("t2", "app", "int@acme.com", Action::Observed, 200),
                org,
            ),
            soap("t3", "int@acme.com", Action::Observed, 200),
        ]);
        assert_eq!(report.credentials.len(), 2, "{:?}", report.credentials);
        let soap_row = report
            .credentials
            .iter()
            .find(|r| r.grant == LoginGrant::SoapLogin)
            .expect("a SOAP row");
        assert_eq!(soap_row.client_id, "");
        assert_eq!(soap_row.username, "int@acme.com");
        assert_eq!(soap_row.counts["observed"], 2);
        let oauth = report
            .credentials
            .iter()
            .find(|r| r.grant == LoginGrant::Password)
            .expect("an OAuth row");
        assert_eq!(oauth.client_id, "app");
        assert_eq!(oauth.counts["observed"], 1);
        let json = serde_json::to_value(&report).unwrap();
        let grants: BTreeSet<&str> = json["credentials"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["grant"].as_str().unwrap())
            .collect();
        assert_eq!(grants, BTreeSet::from(["password", "soap_login"]));
        // Each set's own hint, grouped apart.
        assert_eq!(report.hint_groups().len(), 2);
        // SOAP logins are password logins in the trend.
        assert_eq!(report.trend.outside, 3);
        // Not even an OAuth login that sent an empty client_id joins the SOAP set.
        let report = report_of(&[
            soap("t1", "int@acme.com", Action::Observed, 200),
            event("t2", "", "int@acme.com", Action::Observed, 200),
        ]);
        assert_eq!(report.credentials.len(), 2, "{:?}", report.credentials);
        assert_eq!(report.hint_groups().len(), 2);
    }

    #[test]
    fn soap_sets_of_one_org_are_not_told_to_share_a_jwt_app() {
        let org = "00D000000000001AAA";
        let report = report_of(&[
            learned(soap("t1", "a@acme.com", Action::Observed, 200), org),
            learned(soap("t2", "b@acme.com", Action::Observed, 200), org),
        ]);
        assert!(
            report
                .credentials
                .iter()
                .all(|r| r.verdict == Verdict::Ready),
            "{:?}",
            report.credentials
        );
    }

    #[test]
    fn an_unmapped_soap_set_is_told_to_name_a_connected_app() {
        let row = report_of(&[learned(
            soap("t1", "int@acme.com", Action::Unmapped, 200),
            "00D000000000001AAA",
        )])
        .credentials
        .remove(0);
        assert_eq!(row.verdict, Verdict::Ready);
        assert!(
            row.hint.contains(
                "add [[credentials]] username = \"int@acme.com\" my_domain = \"acme.my.salesforce.com\" client_id = \"...\" and client_secret_env = \"...\" (client credentials) or jwt_private_key = \"...\" (JWT bearer, preferred: the session stays the user's own)"
            ),
            "{}",
            row.hint
        );
        assert!(row.hint.contains("Summer '27 (1 Jun 2027)"), "{}", row.hint);
        assert!(!row.hint.contains("20 Feb 2027"), "{}", row.hint);
    }

    #[test]
    fn soap_hints_name_the_summer_27_deadline() {
        let mut no_verifier = soap("t1", "int@acme.com", Action::Skipped, 200);
        no_verifier.reason = Some("no_verifier".into());
        let row = row_with(&[no_verifier.clone()], None);
        assert_eq!(row.verdict, Verdict::NeedsVerifier);
        assert!(
            row.hint.contains(
                "log in once through grantshift (mode = \"observe\") before Summer '27 (1 Jun 2027), or set password_hash"
            ),
            "{}",
            row.hint
        );
        assert!(!row.hint.contains("20 Feb 2027"), "{}", row.hint);
        // With a view: the set is asked for as ("", username).
        let mut b = ReportBuilder::default();
        b.add(&no_verifier);
        let lookup = |client_id: &str, username: &str| {
            assert_eq!((client_id, username), ("", "int@acme.com"));
            VerifierView {
                source: VerifierSource::None,
                mode: VerifyPassword::Required,
            }
        };
        assert_eq!(
            b.report_with(Some(&lookup)).credentials[0].verdict,
            Verdict::NeedsVerifier
        );
        // Upgraded without a verifier: the note names the SOAP deadline.
        let mut up = soap("t2", "int@acme.com", Action::Upgraded, 200);
        up.flow = Some("jwt_bearer".into());
        up.target_host = Some("acme.my.salesforce.com".into());
        let row = row_with(&[up], view(VerifierSource::None, VerifyPassword::IfKnown));
        assert_eq!(row.verdict, Verdict::Upgraded);
        assert!(
            row.hint
                .contains("before Summer '27 (1 Jun 2027), or set password_hash"),
            "{}",
            row.hint
        );
    }

    #[test]
    fn a_soap_set_refused_for_jwt_access_tokens_is_told_to_turn_them_off() {
        let mut e = learned(
            soap("t1", "int@acme.com", Action::Fallback, 200),
            "00D000000000001AAA",
        );
        e.reason = Some("jwt_access_token".into());
        let row = row_with(&[e.clone()], None);
        assert_eq!(row.verdict, Verdict::Failing);
        assert!(
            row.hint
                .contains("turn off \"Issue JSON Web Token (JWT)-based access tokens\""),
            "{}",
            row.hint
        );
        // Failed alike; an upgrade afterwards clears it.
        e.action = Action::Failed;
        e.status = 500;
        assert!(row_with(&[e.clone()], None)
            .hint
            .contains("JWT-based access tokens"));
        let mut ok = soap("t2", "int@acme.com", Action::Upgraded, 200);
        ok.target_host = Some("acme.my.salesforce.com".into());
        assert_eq!(row_with(&[e, ok], None).verdict, Verdict::Upgraded);
        // Other upstream errors are as for OAuth, naming the mapped app, not an empty one.
        let mut run_as = soap("t1", "int@acme.com", Action::Fallback, 200);
        run_as.upstream_error = Some(UpstreamErrorInfo {
            status: Some(400),
            error: Some("invalid_grant".into()),
            error_description: Some("no client credentials user enabled".into()),
        });
        let row = row_with(&[run_as], None);
        assert_eq!(row.verdict, Verdict::NeedsRunAsUser);
        assert!(
            row.hint
                .contains("the app mapped for SOAP login() user int@acme.com"),
            "{}",
            row.hint
        );
    }

    #[test]
    fn soap_logins_without_a_username_are_counted_by_why() {
        let mut malformed = soap("t1", "x", Action::Skipped, 500);
        malformed.username = None;
        malformed.reason = Some("soap_login_malformed".into());
        let mut no_user = soap("t1", "x", Action::Observed, 500);
        no_user.username = None;
        let report = report_of(&[malformed, no_user]);
        assert!(report.credentials.is_empty());
        assert_eq!(
            report.untracked_logins,
            BTreeMap::from([
                ("no_username".to_string(), 1),
                ("soap_login_malformed".to_string(), 1),
            ])
        );
    }
}
