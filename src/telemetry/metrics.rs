//! Prometheus metrics (docs/operating.md, "The events file"), exposed on the admin server's `/metrics`.
//!
//! Token-request counters are fed by the events writer, one event at a time, so they match
//! the events file exactly; connection and upstream metrics are updated where they happen.
//!
//! Every label takes values from a bounded set, whatever clients send: a `host` label is a
//! configured host name or a host class ([`HostLabels`]), a `grant` label a known grant type,
//! an `identity` label one of the first [`MAX_IDENTITIES`] Run As identities seen (then
//! `other`), a `verdict` label one of the report's fixed verdicts.

use super::events::{Action, CacheUse, Event, PasswordCheck};
use super::login_rate::{LoginRate, Rate, REARM_BELOW, SALESFORCE_LOGINS_PER_HOUR, WARN_AT};
use super::report::{Row, Verdict};
use crate::config::Config;
use crate::oauth::{is_generic_login_host, is_my_domain_host, is_sandbox_host};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::RwLock;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    host: String,
    grant: String,
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    host: String,
    error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLoginLabels {
    target_host: String,
    identity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    verdict: String,
}

/// Run As identities that get a label value of their own; later ones share `other`.
pub const MAX_IDENTITIES: usize = 100;

/// The `identity` label value of identities beyond [`MAX_IDENTITIES`].
pub const OTHER_IDENTITY: &str = "other";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabels {
    protocol: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PurposeLabels {
    purpose: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: String,
}

/// The skip reasons of a login that was not upgraded for its password.
const PASSWORD_REFUSALS: [&str; 3] = ["password_mismatch", "no_verifier", "password_throttled"];

/// The kinds of proxied connection.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// A blind CONNECT tunnel.
    Tunnel,
    /// An intercepted (TLS-terminated) CONNECT.
    Intercept,
    /// An absolute-form `http://` request.
    Http,
}

impl Kind {
    fn label(self) -> KindLabels {
        KindLabels {
            kind: match self {
                Kind::Tunnel => "tunnel",
                Kind::Intercept => "intercept",
                Kind::Http => "http",
            }
            .into(),
        }
    }
}

/// The `host` label values: the hosts the config names are their own value; any other host
/// is its class, so a client cannot make a series per host it invents.
#[derive(Debug, Default, Clone)]
pub struct HostLabels {
    /// Lowercase: `intercept.hosts` exact names, `[[rollout]]` exact hosts, credentials'
    /// `my_domain`, `upstream.connect_to` hosts.
    named: HashSet<String>,
}

impl HostLabels {
    pub fn from_config(config: &Config) -> HostLabels {
        let mut named = HashSet::new();
        named.extend(config.intercept.hosts.exact_names().map(str::to_owned));
        named.extend(
            config
                .rollout
                .iter()
                .filter(|r| !r.host.starts_with('*'))
                .map(|r| r.host.to_ascii_lowercase()),
        );
        named.extend(
            config
                .credentials
                .iter()
                .filter_map(|c| c.my_domain.as_deref())
                .map(str::to_ascii_lowercase),
        );
        named.extend(config.upstream.connect_to.hosts().map(str::to_owned));
        HostLabels { named }
    }

    /// The label value for `host`: the host itself when the config names it (and the
    /// generic login hosts), else `sandbox_my_domain`, `my_domain` or `other`.
    pub fn label<'a>(&self, host: &'a str) -> Cow<'a, str> {
        let host = host.trim_end_matches('.');
        let lower = host.to_ascii_lowercase();
        if self.named.contains(&lower) || is_generic_login_host(host) {
            return Cow::Owned(lower);
        }
        Cow::Borrowed(if is_my_domain_host(host) && is_sandbox_host(host) {
            "sandbox_my_domain"
        } else if is_my_domain_host(host) {
            "my_domain"
        } else {
            "other"
        })
    }
}

/// The token cache's counters and gauges (`grantshift_token_cache_*`).
#[derive(Clone, Default)]
pub struct CacheMetrics {
    pub hits: Counter,
    pub misses: Counter,
    /// Logins that waited for another login's upstream request (single flight).
    pub waits: Counter,
    /// Logins sent to fallback by a negative entry, without asking Salesforce.
    pub negative_hits: Counter,
    /// Logins waiting now for another login's upstream request.
    pub waiting: Gauge,
    /// Revokes of cached sessions answered locally (`shield_revoke`).
    pub revokes_shielded: Counter,
    evictions: Family<ReasonLabels, Counter>,
    /// Introspections of filled entries (`introspect`), by result.
    introspections: Family<ResultLabels, Counter>,
    pub entries: Gauge,
    pub bytes: Gauge,
}

/// What an introspection of a cached session found (the `result` label): `ok` (active, with
/// an `exp`), `inactive` (`active: false`, or an `exp` already past), `error` (anything else).
pub const INTROSPECTION_RESULTS: [&str; 3] = ["ok", "inactive", "error"];

/// Why a token cache entry goes (the `reason` label).
pub const CACHE_EVICTION_REASONS: [&str; 5] =
    ["expired", "capacity", "unauthorized", "revoked", "reload"];

impl CacheMetrics {
    /// One entry gone for `reason` (one of [`CACHE_EVICTION_REASONS`]).
    pub fn evicted(&self, reason: &'static str) {
        self.evictions
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }

    /// One introspection done, with `result` (one of [`INTROSPECTION_RESULTS`]).
    pub fn introspected(&self, result: &'static str) {
        self.introspections
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
    }

    /// Introspections with `result` so far.
    pub fn introspections(&self, result: &str) -> u64 {
        self.introspections
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .get()
    }

    /// Entries gone for `reason` so far.
    pub fn evictions(&self, reason: &str) -> u64 {
        self.evictions
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .get()
    }

    fn register(&self, registry: &mut Registry) {
        let counters = [
            ("hits", "Upgraded logins answered from the token cache, with no upstream login", &self.hits),
            ("misses", "Upgraded logins the token cache had no answer for (sent upstream)", &self.misses),
            ("waits", "Upgraded logins that waited for another login's upstream request with the same key (single flight)", &self.waits),
            ("negative_hits", "Upgraded logins sent to fallback without asking, because an upgrade with the same key failed moments ago (token_cache.negative_ttl)", &self.negative_hits),
            ("revokes_shielded", "Revokes of sessions shared through the token cache, answered by grantshift so the other callers keep the session (token_cache.shield_revoke)", &self.revokes_shielded),
        ];
        for (name, help, counter) in counters {
            registry.register(
                format!("grantshift_token_cache_{name}"),
                help,
                counter.clone(),
            );
        }
        for reason in CACHE_EVICTION_REASONS {
            let _ = self.evictions.get_or_create(&ReasonLabels {
                reason: reason.into(),
            });
        }
        registry.register(
            "grantshift_token_cache_evictions",
            "Token cache entries removed, by reason (expired, capacity, unauthorized: an API call with the token got 401, revoked, reload)",
            self.evictions.clone(),
        );
        for result in INTROSPECTION_RESULTS {
            let _ = self.introspections.get_or_create(&ResultLabels {
                result: result.into(),
            });
        }
        registry.register(
            "grantshift_token_cache_introspections",
            "Sessions the token cache asked Salesforce's introspection endpoint about (token_cache.introspect; not logins), by result (ok: active with an exp, inactive: not kept, error: the configured ttl stays)",
            self.introspections.clone(),
        );
        registry.register(
            "grantshift_token_cache_waiting",
            "Upgraded logins waiting now for another login's upstream request with the same key",
            self.waiting.clone(),
        );
        registry.register(
            "grantshift_token_cache_entries",
            "Upgraded token responses held in the token cache now",
            self.entries.clone(),
        );
        registry.register(
            "grantshift_token_cache_bytes",
            "Bytes the token cache holds now (at most token_cache.max_bytes)",
            self.bytes.clone(),
        );
    }
}

pub struct Metrics {
    registry: Registry,
    /// The token cache's (shared with it).
    pub token_cache: CacheMetrics,
    /// `[cluster]`'s (shared with it).
    pub cluster: crate::cluster::ClusterMetrics,
    host_labels: RwLock<HostLabels>,
    token_requests: Family<TokenLabels, Counter>,
    upgrade_failures: Family<FailureLabels, Counter>,
    connections_total: Family<KindLabels, Counter>,
    connections_active: Family<KindLabels, Gauge>,
    upstream_duration: Histogram,
    upstream_connections: Family<ProtocolLabels, Counter>,
    config_reloads: Family<ResultLabels, Counter>,
    events_dropped: Counter,
    report_sets_dropped: Counter,
    password_checks: Family<ResultLabels, Counter>,
    password_refusals: Family<ReasonLabels, Counter>,
    password_hashes: Family<PurposeLabels, Counter>,
    password_verifiers: Family<SourceLabels, Gauge>,
    upstream_logins: Family<UpstreamLoginLabels, Counter>,
    /// The same logins over the last hour (a gauge set at each scrape from `login_rate`).
    upstream_logins_last_hour: Family<UpstreamLoginLabels, Gauge>,
    login_rate: std::sync::Mutex<LoginRate>,
    /// With a cluster: the pairs whose upstream logins the shared stream brought (any
    /// replica's), with the minute last seen; their fleet counts are read at each scrape.
    fleet_pairs: std::sync::Mutex<std::collections::HashMap<(String, String), u64>>,
    /// The pairs whose fleet count is at or over [`WARN_AT`] and warned about.
    fleet_warned: std::sync::Mutex<HashSet<(String, String)>>,
    cluster_events_waiting: Gauge,
    cluster_events_unsent_dropped: Counter,
    cluster_stream_resets: Counter,
    /// The identities with a label value of their own, at most [`MAX_IDENTITIES`].
    identities: RwLock<HashSet<String>>,
    credential_sets: Family<VerdictLabels, Gauge>,
    /// Bytes of token request bodies buffered now (the shared `token_body_budget` in use).
    pub token_body_bytes: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let token_requests = Family::<TokenLabels, Counter>::default();
        registry.register(
            "grantshift_token_requests",
            "Token requests by request host, grant and what grantshift did",
            token_requests.clone(),
        );
        let upgrade_failures = Family::<FailureLabels, Counter>::default();
        registry.register(
            "grantshift_upgrade_failures",
            "Upgraded logins that failed (then fell back or failed), by request host and error",
            upgrade_failures.clone(),
        );
        let connections_total = Family::<KindLabels, Counter>::default();
        registry.register(
            "grantshift_connections",
            "Proxied connections by kind (tunnel, intercept, http)",
            connections_total.clone(),
        );
        let connections_active = Family::<KindLabels, Gauge>::default();
        registry.register(
            "grantshift_connections_active",
            "Proxied connections open now, by kind",
            connections_active.clone(),
        );
        // 1 ms .. ~33 s.
        let upstream_duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "grantshift_upstream_duration_seconds",
            "Time from sending a request upstream to its response head",
            upstream_duration.clone(),
        );
        let upstream_connections = Family::<ProtocolLabels, Counter>::default();
        registry.register(
            "grantshift_upstream_connections",
            "Pooled upstream connections opened, by protocol (http/1.1, h2); each is reused until idle",
            upstream_connections.clone(),
        );
        let config_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "grantshift_config_reloads",
            "Config reloads (SIGHUP) by result",
            config_reloads.clone(),
        );
        let token_body_bytes = Gauge::default();
        registry.register(
            "grantshift_token_body_bytes",
            "Bytes of token request bodies buffered now (at most proxy.token_body_budget)",
            token_body_bytes.clone(),
        );
        let events_dropped = Counter::default();
        registry.register(
            "grantshift_events_dropped",
            "Events dropped because the events writer's queue was full (telemetry.events_max_queued): not in the file, the report or the token counters",
            events_dropped.clone(),
        );
        let report_sets_dropped = Counter::default();
        registry.register(
            "grantshift_report_sets_dropped",
            "Credential sets dropped from the report, least recently seen first, to stay within telemetry.report_max_sets",
            report_sets_dropped.clone(),
        );
        let password_checks = Family::<ResultLabels, Counter>::default();
        registry.register(
            "grantshift_password_checks",
            "Passwords of logins that were to be upgraded, by what the check found (verified, mismatch, none: no verifier, off)",
            password_checks.clone(),
        );
        let password_refusals = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "grantshift_password_refusals",
            "Logins not upgraded for their password (forwarded as they came), by reason",
            password_refusals.clone(),
        );
        let password_hashes = Family::<PurposeLabels, Counter>::default();
        registry.register(
            "grantshift_password_hashes",
            "Argon2 runs, by purpose (check: an upgrade's password; learn: a verifier learned or confirmed)",
            password_hashes.clone(),
        );
        let password_verifiers = Family::<SourceLabels, Gauge>::default();
        registry.register(
            "grantshift_password_verifiers",
            "Password verifiers known now, by source (learned: in the state file; configured: password_hash entries)",
            password_verifiers.clone(),
        );
        let upstream_logins = Family::<UpstreamLoginLabels, Counter>::default();
        registry.register(
            "grantshift_upstream_logins",
            "Upgraded logins sent upstream (whatever Salesforce answered), by target host and Run As identity (client credentials: the client_id; JWT bearer: the username); Salesforce allows 3,600 logins per user per hour",
            upstream_logins.clone(),
        );
        let upstream_logins_last_hour = Family::<UpstreamLoginLabels, Gauge>::default();
        registry.register(
            "grantshift_upstream_logins_last_hour",
            "Upgraded logins sent upstream in the last 60 minutes, by target host and Run As identity, as grantshift_upstream_logins_total; Salesforce refuses logins past 3,600 an hour for one user (a WARN is logged at 2,880)",
            upstream_logins_last_hour.clone(),
        );
        let cluster_events_waiting = Gauge::default();
        registry.register(
            "grantshift_cluster_events_waiting",
            "This replica's events kept for the shared stream while Redis was unavailable (counted in its own report meanwhile; sent when Redis is back)",
            cluster_events_waiting.clone(),
        );
        let cluster_events_unsent_dropped = Counter::default();
        registry.register(
            "grantshift_cluster_events_unsent_dropped",
            "Events never sent to the shared stream: more than 100,000 waited during an outage (the oldest are dropped; they stay in the events file)",
            cluster_events_unsent_dropped.clone(),
        );
        let cluster_stream_resets = Counter::default();
        registry.register(
            "grantshift_cluster_stream_resets",
            "Times this replica found the shared events stream lost (Redis restarted empty or was flushed) and added its latest events again",
            cluster_stream_resets.clone(),
        );
        let credential_sets = Family::<VerdictLabels, Gauge>::default();
        registry.register(
            "grantshift_credential_sets",
            "Credential sets in the report (/report) by verdict, now",
            credential_sets.clone(),
        );
        for verdict in Verdict::ALL {
            let _ = credential_sets.get_or_create(&VerdictLabels {
                verdict: verdict.as_str().into(),
            });
        }
        // The running version, as Prometheus convention has it: a gauge at 1.
        let build_info = Family::<VersionLabels, Gauge>::default();
        build_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION").into(),
            })
            .set(1);
        registry.register(
            "grantshift_build_info",
            "The running grantshift's version (always 1)",
            build_info,
        );
        // Series that should read 0 rather than be absent before anything happens.
        for check in [
            PasswordCheck::Verified,
            PasswordCheck::Mismatch,
            PasswordCheck::None,
            PasswordCheck::Off,
        ] {
            let _ = password_checks.get_or_create(&ResultLabels {
                result: check.as_str().into(),
            });
        }
        for reason in PASSWORD_REFUSALS {
            let _ = password_refusals.get_or_create(&ReasonLabels {
                reason: reason.into(),
            });
        }
        for purpose in ["check", "learn"] {
            let _ = password_hashes.get_or_create(&PurposeLabels {
                purpose: purpose.into(),
            });
        }
        for source in ["learned", "configured"] {
            let _ = password_verifiers.get_or_create(&SourceLabels {
                source: source.into(),
            });
        }
        for kind in [Kind::Tunnel, Kind::Intercept, Kind::Http] {
            let _ = connections_total.get_or_create(&kind.label());
            let _ = connections_active.get_or_create(&kind.label());
        }
        for protocol in ["http/1.1", "h2"] {
            let _ = upstream_connections.get_or_create(&ProtocolLabels {
                protocol: protocol.into(),
            });
        }
        for result in ["ok", "error"] {
            let _ = config_reloads.get_or_create(&ResultLabels {
                result: result.into(),
            });
        }
        let token_cache = CacheMetrics::default();
        token_cache.register(&mut registry);
        let cluster = crate::cluster::ClusterMetrics::default();
        cluster.register(&mut registry);
        Metrics {
            registry,
            token_cache,
            cluster,
            host_labels: RwLock::new(HostLabels::default()),
            token_requests,
            upgrade_failures,
            connections_total,
            connections_active,
            upstream_duration,
            upstream_connections,
            config_reloads,
            token_body_bytes,
            events_dropped,
            report_sets_dropped,
            password_checks,
            password_refusals,
            password_hashes,
            password_verifiers,
            upstream_logins,
            upstream_logins_last_hour,
            login_rate: Default::default(),
            fleet_pairs: Default::default(),
            fleet_warned: Default::default(),
            cluster_events_waiting,
            cluster_events_unsent_dropped,
            cluster_stream_resets,
            identities: RwLock::new(HashSet::new()),
            credential_sets,
        }
    }

    /// Take the `host` label values from `config` (at start and on reload).
    pub fn configure(&self, config: &Config) {
        *self.host_labels.write().unwrap_or_else(|e| e.into_inner()) =
            HostLabels::from_config(config);
        let configured = config
            .credentials
            .iter()
            .filter(|c| c.password_hash.is_some())
            .count();
        self.password_verifiers
            .get_or_create(&SourceLabels {
                source: "configured".into(),
            })
            .set(configured as i64);
    }

    /// How many verifiers the state file holds now.
    pub fn learned_verifiers(&self, n: usize) {
        self.password_verifiers
            .get_or_create(&SourceLabels {
                source: "learned".into(),
            })
            .set(n as i64);
    }

    /// Count one Argon2 run (`purpose`: `check` or `learn`).
    pub fn password_hash(&self, purpose: &'static str) {
        self.password_hashes
            .get_or_create(&PurposeLabels {
                purpose: purpose.into(),
            })
            .inc();
    }

    /// Count one event dropped for a full queue (called on the request path: one atomic add).
    pub fn event_dropped(&self) {
        self.events_dropped.inc();
    }

    /// Count credential sets dropped from the report.
    pub fn report_sets_dropped(&self, n: u64) {
        if n > 0 {
            self.report_sets_dropped.inc_by(n);
        }
    }

    /// Count one token request (called by the events writer).
    pub fn record_event(&self, event: &Event) {
        if event.action == Action::RevokeShielded {
            // Not a token request: counted on its own.
            self.token_cache.revokes_shielded.inc();
            return;
        }
        let host = self
            .host_labels
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .label(&event.host)
            .into_owned();
        self.token_requests
            .get_or_create(&TokenLabels {
                host: host.clone(),
                grant: grant_label(event.grant.as_deref()).into(),
                action: event.action.as_str().into(),
            })
            .inc();
        if let Some(check) = event.password_check {
            self.password_checks
                .get_or_create(&ResultLabels {
                    result: check.as_str().into(),
                })
                .inc();
        }
        if event.action == Action::Skipped {
            if let Some(reason) = PASSWORD_REFUSALS
                .iter()
                .find(|r| event.reason.as_deref() == Some(**r))
            {
                self.password_refusals
                    .get_or_create(&ReasonLabels {
                        reason: (*reason).into(),
                    })
                    .inc();
            }
        }
        if let Some(failure) = &event.upstream_error {
            self.upgrade_failures
                .get_or_create(&FailureLabels {
                    host,
                    error: error_label(failure.error.as_deref(), failure.status),
                })
                .inc();
        }
        if let Some((target_host, identity)) = self.upstream_login_pair(event) {
            let warn = self
                .login_rate
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .add(&target_host, &identity, unix_minute());
            if let Some(count) = warn {
                tracing::warn!(
                    target_host = %target_host,
                    identity = %identity,
                    logins_last_hour = count,
                    limit = SALESFORCE_LOGINS_PER_HOUR,
                    "logins for one Run As identity near Salesforce's hourly limit; the token cache ([token_cache]) shares one session per app"
                );
            }
            self.upstream_logins
                .get_or_create(&UpstreamLoginLabels {
                    target_host,
                    identity,
                })
                .inc();
        }
    }

    /// For a login grantshift sent upstream: its (target host, Run As identity) label values.
    pub fn upstream_login_pair(&self, event: &Event) -> Option<(String, String)> {
        // A login the token cache answered (or sent to fallback at once) sent nothing upstream.
        if matches!(event.cache, Some(CacheUse::Hit | CacheUse::Negative)) {
            return None;
        }
        let (target, identity) = (event.target_host.as_deref()?, run_as_identity(event)?);
        let target_host = self
            .host_labels
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .label(target)
            .into_owned();
        Some((target_host, self.identity_label(identity)))
    }

    /// An event the shared stream brought (any replica's): its pair, if it is an upstream
    /// login, is one whose fleet count the gauge shows.
    pub fn fleet_login_seen(&self, event: &Event) {
        if let Some(pair) = self.upstream_login_pair(event) {
            self.fleet_pairs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(pair, unix_minute());
        }
    }

    /// The pairs to ask the fleet about: this replica's of the last hour and the stream's.
    pub fn login_pairs(&self) -> Vec<(String, String)> {
        let now = unix_minute();
        let mut pairs: HashSet<(String, String)> = self
            .login_rate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pairs()
            .collect();
        let mut fleet = self.fleet_pairs.lock().unwrap_or_else(|e| e.into_inner());
        fleet.retain(|_, seen| now.saturating_sub(*seen) < 61);
        pairs.extend(fleet.keys().cloned());
        let mut pairs: Vec<_> = pairs.into_iter().collect();
        pairs.sort();
        pairs
    }

    /// How many of this replica's events wait for the shared stream.
    pub fn cluster_events_waiting(&self, n: usize) {
        self.cluster_events_waiting.set(n as i64);
    }

    /// Count an event dropped from those waiting for the shared stream.
    pub fn cluster_event_unsent_dropped(&self) {
        self.cluster_events_unsent_dropped.inc();
    }

    /// Count a lost shared stream found (see `telemetry::shared`).
    pub fn cluster_stream_reset(&self) {
        self.cluster_stream_resets.inc();
    }

    /// `identity` itself while fewer than [`MAX_IDENTITIES`] have a value of their own (or
    /// it is one of them), else [`OTHER_IDENTITY`].
    fn identity_label(&self, identity: &str) -> String {
        if self
            .identities
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(identity)
        {
            return identity.to_owned();
        }
        let mut known = self.identities.write().unwrap_or_else(|e| e.into_inner());
        if known.contains(identity) || (known.len() < MAX_IDENTITIES && identity != OTHER_IDENTITY)
        {
            known.insert(identity.to_owned());
            identity.to_owned()
        } else {
            OTHER_IDENTITY.to_owned()
        }
    }

    /// Set `grantshift_credential_sets{verdict}` from the report's rows (at each scrape).
    /// The upstream logins of the last hour per (target host, Run As identity), busiest
    /// first; also sets `grantshift_upstream_logins_last_hour` (at each scrape).
    pub fn login_rates(&self) -> Vec<Rate> {
        self.login_rates_with(None)
    }

    /// [`login_rates`](Self::login_rates), with `fleet` (the fleet's counts, from Redis)
    /// instead of this replica's when there are: also WARNs once when a pair's fleet count
    /// reaches [`WARN_AT`] (again after it fell below [`REARM_BELOW`]).
    pub fn login_rates_with(&self, fleet: Option<Vec<Rate>>) -> Vec<Rate> {
        let local = self
            .login_rate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .rates(unix_minute());
        let mut rates = match fleet {
            None => local,
            Some(mut fleet) => {
                let mut warned = self.fleet_warned.lock().unwrap_or_else(|e| e.into_inner());
                for r in &fleet {
                    let pair = (r.target_host.clone(), r.identity.clone());
                    if r.last_hour < REARM_BELOW {
                        warned.remove(&pair);
                    } else if r.last_hour >= WARN_AT && warned.insert(pair) {
                        tracing::warn!(
                            target_host = %r.target_host,
                            identity = %r.identity,
                            logins_last_hour = r.last_hour,
                            limit = SALESFORCE_LOGINS_PER_HOUR,
                            "logins for one Run As identity across the fleet near Salesforce's hourly limit; the token cache ([token_cache]) shares one session per app"
                        );
                    }
                }
                fleet.sort_by(|a, b| {
                    b.last_hour.cmp(&a.last_hour).then_with(|| {
                        (&a.target_host, &a.identity).cmp(&(&b.target_host, &b.identity))
                    })
                });
                fleet
            }
        };
        // A pair that went quiet is in `rates` once more at 0: its gauge reads 0 from then.
        for r in &rates {
            self.upstream_logins_last_hour
                .get_or_create(&UpstreamLoginLabels {
                    target_host: r.target_host.clone(),
                    identity: r.identity.clone(),
                })
                .set(r.last_hour as i64);
        }
        rates.retain(|r| r.last_hour > 0);
        rates
    }

    pub fn credential_sets(&self, rows: &[Row]) {
        for verdict in Verdict::ALL {
            let n = rows.iter().filter(|r| r.verdict == verdict).count();
            self.credential_sets
                .get_or_create(&VerdictLabels {
                    verdict: verdict.as_str().into(),
                })
                .set(n as i64);
        }
    }

    /// Count a connection of `kind` as open until the guard is dropped.
    pub fn open(&self, kind: Kind) -> ActiveGuard {
        self.connections_total.get_or_create(&kind.label()).inc();
        let gauge = self.connections_active.get_or_create(&kind.label()).clone();
        gauge.inc();
        ActiveGuard(gauge)
    }

    pub fn upstream_duration(&self, took: Duration) {
        self.upstream_duration.observe(took.as_secs_f64());
    }

    /// Count one upstream connection the pool opened (`protocol`: `http/1.1` or `h2`).
    pub fn upstream_connection(&self, protocol: &str) {
        self.upstream_connections
            .get_or_create(&ProtocolLabels {
                protocol: protocol.into(),
            })
            .inc();
    }

    pub fn config_reload(&self, ok: bool) {
        self.config_reloads
            .get_or_create(&ResultLabels {
                result: if ok { "ok" } else { "error" }.into(),
            })
            .inc();
    }

    /// The exposition text (OpenMetrics, which Prometheus scrapes natively).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Keeps `grantshift_connections_active{kind}` up while a connection is open.
pub struct ActiveGuard(Gauge);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The Run As identity of an upgraded login that went upstream (the event has a `flow` only
/// then): client credentials run as the connected app's Run As user, one per app and org,
/// so the client_id names it; a JWT bearer assertion names the user (`sub`), the username.
/// Minutes since the Unix epoch, now.
fn unix_minute() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60)
}

fn run_as_identity(event: &Event) -> Option<&str> {
    match event.flow.as_deref()? {
        "jwt_bearer" => event.username.as_deref(),
        _ => event.client_id.as_deref(),
    }
}

/// `grant` label values are bounded: the grant types Salesforce knows, else `other`.
fn grant_label(grant: Option<&str>) -> &'static str {
    match grant {
        None => "none",
        Some("password") => "password",
        // SOAP API login(), recorded by grantshift as a login of its own.
        Some("soap_login") => "soap_login",
        Some("client_credentials") => "client_credentials",
        Some("refresh_token") => "refresh_token",
        Some("authorization_code") => "authorization_code",
        Some(crate::oauth::JWT_BEARER_GRANT) => "jwt_bearer",
        Some(_) => "other",
    }
}

/// `error` label values are bounded: the OAuth errors Salesforce answers (RFC 6749 §5.2 and
/// its own), grantshift's `connect_error` / `timeout`, `http_<status>` when the answer named
/// no error, and `other` for any other name.
fn error_label(error: Option<&str>, status: Option<u16>) -> String {
    const KNOWN: &[&str] = &[
        "connect_error",
        "timeout",
        "invalid_request",
        "invalid_client",
        "invalid_client_id",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "access_denied",
        "inactive_user",
        "inactive_org",
        "invalid_app_access",
        "rate_limit_exceeded",
        "server_error",
        "temporarily_unavailable",
    ];
    match error {
        None => format!("http_{}", status.unwrap_or(0)),
        Some(e) => KNOWN
            .iter()
            .find(|k| **k == e)
            .copied()
            .unwrap_or("other")
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::events::UpstreamErrorInfo;

    fn labels(toml: &str) -> HostLabels {
        HostLabels::from_config(&Config::from_toml_str(toml, std::path::Path::new("/")).unwrap())
    }

    /// What a subscriber wrote, for the WARN test.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn logins_of_the_last_hour_are_counted_per_identity_and_warned_about_at_80_percent() {
        let metrics = Metrics::new();
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let login = |client_id: &str, cache: Option<CacheUse>| {
            let mut e = Event::new("127.0.0.1:1".parse().unwrap(), "login.salesforce.com");
            e.grant = Some("password".into());
            e.client_id = Some(client_id.into());
            e.username = Some("u@acme.com".into());
            e.action = Action::Upgraded;
            e.flow = Some("client_credentials".into());
            e.target_host = Some("acme.my.salesforce.com".into());
            e.cache = cache;
            e
        };
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..2_879 {
                metrics.record_event(&login("app", Some(CacheUse::Miss)));
            }
            // Answered by the cache: nothing went upstream.
            metrics.record_event(&login("app", Some(CacheUse::Hit)));
            metrics.record_event(&login("other-app", None));
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(!text.contains("WARN"), "below 80%: {text}");
        tracing::subscriber::with_default(
            tracing_subscriber::fmt()
                .with_writer({
                    let writer = captured.clone();
                    move || writer.clone()
                })
                .with_ansi(false)
                .finish(),
            || {
                metrics.record_event(&login("app", Some(CacheUse::Miss)));
                metrics.record_event(&login("app", Some(CacheUse::Miss)));
            },
        );
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.matches("WARN").count(), 1, "once: {text}");
        assert!(
            text.contains("identity=app") && text.contains("logins_last_hour=2880"),
            "{text}"
        );
        let rates = metrics.login_rates();
        assert_eq!(
            rates
                .iter()
                .map(|r| (r.identity.as_str(), r.last_hour))
                .collect::<Vec<_>>(),
            [("app", 2_881), ("other-app", 1)]
        );
        let exposition = metrics.encode();
        assert!(
            exposition.contains(
                "grantshift_upstream_logins_last_hour{target_host=\"my_domain\",identity=\"app\"} 2881"
            ),
            "{exposition}"
        );
    }

    #[test]
    fn host_labels_are_configured_names_or_a_class() {
        let l = labels(
            r#"
[intercept]
hosts = ["login.salesforce.com", "Exact.Example.com", "*.my.salesforce.com"]
[upstream.connect_to]
"mapped.my.salesforce.com:443" = "127.0.0.1:9"
[[rollout]]
host = "rule.my.salesforce.com"
mode = "observe"
[[rollout]]
host = "*.sandbox.my.salesforce.com"
mode = "observe"
[[credentials]]
username = "u@acme.com"
my_domain = "Acme.my.salesforce.com"
"#,
        );
        for (host, label) in [
            ("login.salesforce.com", "login.salesforce.com"),
            ("TEST.salesforce.com.", "test.salesforce.com"),
            ("exact.example.com", "exact.example.com"),
            ("mapped.my.salesforce.com", "mapped.my.salesforce.com"),
            ("rule.my.salesforce.com", "rule.my.salesforce.com"),
            ("acme.my.salesforce.com", "acme.my.salesforce.com"),
            ("h17.my.salesforce.com", "my_domain"),
            ("x.my-salesforce.com", "my_domain"),
            ("acme--qa.sandbox.my.salesforce.com", "sandbox_my_domain"),
            ("acme--qa.my.salesforce.com", "sandbox_my_domain"),
            ("other.example.com", "other"),
            ("my.salesforce.com", "other"),
        ] {
            assert_eq!(l.label(host), label, "{host}");
        }
        // Nothing configured: every invented host falls in a handful of values.
        let l = HostLabels::default();
        let values: HashSet<String> = (0..1000)
            .flat_map(|i| {
                [
                    format!("h{i}.my.salesforce.com"),
                    format!("h{i}--s.sandbox.my.salesforce.com"),
                    format!("h{i}.example"),
                    "x".repeat(i),
                ]
            })
            .map(|h| l.label(&h).into_owned())
            .collect();
        assert_eq!(
            values,
            HashSet::from(["my_domain", "sandbox_my_domain", "other"].map(String::from))
        );
    }

    #[test]
    fn error_labels_are_known_errors_or_other() {
        assert_eq!(
            error_label(Some("invalid_grant"), Some(400)),
            "invalid_grant"
        );
        assert_eq!(error_label(Some("connect_error"), None), "connect_error");
        assert_eq!(error_label(None, Some(503)), "http_503");
        assert_eq!(error_label(None, None), "http_0");
        assert_eq!(error_label(Some("made_up_\"error"), Some(400)), "other");
    }

    fn upgraded(client_id: &str, username: &str, flow: &str, target: &str) -> Event {
        let mut e = Event::new("127.0.0.1:1".parse().unwrap(), "login.salesforce.com");
        e.grant = Some("password".into());
        e.client_id = Some(client_id.into());
        e.username = Some(username.into());
        e.flow = Some(flow.into());
        e.target_host = Some(target.into());
        e.action = Action::Upgraded;
        e
    }

    #[test]
    fn upstream_logins_count_the_run_as_identity_with_bounded_labels() {
        let m = Metrics::new();
        m.configure(
            &Config::from_toml_str(
                "[[credentials]]\nusername = \"u@acme.com\"\nmy_domain = \"acme.my.salesforce.com\"\n",
                std::path::Path::new("/"),
            )
            .unwrap(),
        );
        let cc = upgraded(
            "3MVGapp",
            "u@acme.com",
            "client_credentials",
            "acme.my.salesforce.com",
        );
        m.record_event(&cc);
        m.record_event(&cc);
        let mut failed = upgraded(
            "3MVGapp",
            "v@acme.com",
            "client_credentials",
            "ACME.my.salesforce.com",
        );
        failed.action = Action::Fallback;
        m.record_event(&failed);
        m.record_event(&upgraded(
            "3MVGapp",
            "u@acme.com",
            "jwt_bearer",
            "h9.my.salesforce.com",
        ));
        // Not sent upstream as an upgrade: no flow.
        let mut observed = cc.clone();
        observed.flow = None;
        observed.target_host = None;
        observed.action = Action::Observed;
        m.record_event(&observed);
        let text = m.encode();
        assert!(text.contains(r#"grantshift_upstream_logins_total{target_host="acme.my.salesforce.com",identity="3MVGapp"} 3"#), "{text}");
        assert!(text.contains(r#"grantshift_upstream_logins_total{target_host="my_domain",identity="u@acme.com"} 1"#), "{text}");
        assert_eq!(
            text.matches("grantshift_upstream_logins_total{").count(),
            2,
            "{text}"
        );

        // Past MAX_IDENTITIES distinct identities, the rest share `other`; known ones keep theirs.
        let m = Metrics::new();
        for i in 0..MAX_IDENTITIES + 50 {
            m.record_event(&upgraded(
                &format!("app{i}"),
                "u",
                "client_credentials",
                "x.example",
            ));
        }
        m.record_event(&upgraded("app0", "u", "client_credentials", "x.example"));
        m.record_event(&upgraded(
            OTHER_IDENTITY,
            "u",
            "client_credentials",
            "x.example",
        ));
        let text = m.encode();
        assert_eq!(
            text.matches("grantshift_upstream_logins_total{").count(),
            MAX_IDENTITIES + 1,
            "{text}"
        );
        assert!(
            text.contains(r#"{target_host="other",identity="app0"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"{target_host="other",identity="other"} 51"#),
            "{text}"
        );
    }

    #[test]
    fn credential_sets_are_counted_by_every_verdict() {
        let m = Metrics::new();
        let text = m.encode();
        for v in Verdict::ALL {
            let line = format!("grantshift_credential_sets{{verdict=\"{}\"}} 0", v.as_str());
            assert!(text.contains(&line), "{line} in {text}");
        }
        let mut report = crate::telemetry::report::ReportBuilder::new(100);
        let mut e = upgraded(
            "3MVGapp",
            "u@acme.com",
            "client_credentials",
            "acme.my.salesforce.com",
        );
        e.status = 200;
        report.add(&e);
        let mut f = upgraded(
            "3MVGapp",
            "v@acme.com",
            "client_credentials",
            "acme.my.salesforce.com",
        );
        f.action = Action::Failed;
        f.status = 400;
        report.add(&f);
        m.credential_sets(&report.report().credentials);
        let text = m.encode();
        assert!(
            text.contains(r#"grantshift_credential_sets{verdict="upgraded"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"grantshift_credential_sets{verdict="failing"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"grantshift_credential_sets{verdict="ready"} 0"#),
            "{text}"
        );
        // A later report with fewer sets brings the gauges down again.
        m.credential_sets(&[]);
        assert!(m
            .encode()
            .contains(r#"grantshift_credential_sets{verdict="failing"} 0"#));
    }

    #[test]
    fn drops_are_counted() {
        let m = Metrics::new();
        let text = m.encode();
        assert!(text.contains("grantshift_events_dropped_total 0"), "{text}");
        assert!(
            text.contains("grantshift_report_sets_dropped_total 0"),
            "{text}"
        );
        m.event_dropped();
        m.event_dropped();
        m.report_sets_dropped(3);
        let text = m.encode();
        assert!(text.contains("grantshift_events_dropped_total 2"), "{text}");
        assert!(
            text.contains("grantshift_report_sets_dropped_total 3"),
            "{text}"
        );
    }

    #[test]
    fn counts_events_with_bounded_labels_and_tracks_active_connections() {
        let m = Metrics::new();
        let mut e = Event::new("127.0.0.1:1".parse().unwrap(), "Login.Salesforce.com");
        e.grant = Some("password".into());
        e.action = Action::Fallback;
        e.upstream_error = Some(UpstreamErrorInfo {
            status: Some(400),
            error: Some("invalid_grant".into()),
            error_description: None,
        });
        m.record_event(&e);
        e.grant = Some("weird\"grant".into());
        e.upstream_error = None;
        e.action = Action::Passed;
        m.record_event(&e);
        let guard = m.open(Kind::Tunnel);
        let text = m.encode();
        assert!(text.contains(r#"grantshift_token_requests_total{host="login.salesforce.com",grant="password",action="fallback"} 1"#), "{text}");
        assert!(
            text.contains(r#"grant="other",action="passed"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"grantshift_upgrade_failures_total{host="login.salesforce.com",error="invalid_grant"} 1"#), "{text}");
        assert!(
            text.contains(r#"grantshift_connections_active{kind="tunnel"} 1"#),
            "{text}"
        );
        drop(guard);
        let text = m.encode();
        assert!(
            text.contains(r#"grantshift_connections_active{kind="tunnel"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"grantshift_connections_total{kind="tunnel"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"grantshift_config_reloads_total{result="error"} 0"#),
            "{text}"
        );
    }

    #[test]
    fn soap_logins_have_their_own_grant_label() {
        let m = Metrics::new();
        let mut e = Event::new("127.0.0.1:1".parse().unwrap(), "login.salesforce.com");
        e.grant = Some("soap_login".into());
        e.username = Some("u@acme.com".into());
        e.action = Action::Observed;
        m.record_event(&e);
        e.grant = Some("made_up".into());
        m.record_event(&e);
        let text = m.encode();
        let line = |grant: &str| {
            text.lines()
                .find(|l| {
                    l.starts_with("grantshift_token_requests_total{")
                        && l.contains(&format!("grant=\"{grant}\""))
                })
                .unwrap_or_else(|| panic!("no {grant} series: {text}"))
                .to_string()
        };
        assert!(line("soap_login").ends_with(" 1"), "{text}");
        assert!(line("other").ends_with(" 1"), "{text}");
        assert_eq!(grant_label(Some("soap_login")), "soap_login");
    }
}
