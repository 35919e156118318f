//! Prometheus metrics (docs/operating.md, "The events file"), exposed on the admin server's `/metrics`.
//!
//! Token-request counters are fed by the events writer, one event at a time, so they match
//! the events file exactly; connection and upstream metrics are updated where they happen.

use super::events::Event;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
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
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabels {
    protocol: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

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

pub struct Metrics {
    registry: Registry,
    token_requests: Family<TokenLabels, Counter>,
    upgrade_failures: Family<FailureLabels, Counter>,
    connections_total: Family<KindLabels, Counter>,
    connections_active: Family<KindLabels, Gauge>,
    upstream_duration: Histogram,
    upstream_connections: Family<ProtocolLabels, Counter>,
    config_reloads: Family<ResultLabels, Counter>,
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
        // Series that should read 0 rather than be absent before anything happens.
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
        Metrics {
            registry,
            token_requests,
            upgrade_failures,
            connections_total,
            connections_active,
            upstream_duration,
            upstream_connections,
            config_reloads,
            token_body_bytes,
        }
    }

    /// Count one token request (called by the events writer).
    pub fn record_event(&self, event: &Event) {
        self.token_requests
            .get_or_create(&TokenLabels {
                host: event.host.to_ascii_lowercase(),
                grant: grant_label(event.grant.as_deref()).into(),
                action: event.action.as_str().into(),
            })
            .inc();
        if let Some(failure) = &event.upstream_error {
            self.upgrade_failures
                .get_or_create(&FailureLabels {
                    host: event.host.to_ascii_lowercase(),
                    error: failure
                        .error
                        .clone()
                        .unwrap_or_else(|| format!("http_{}", failure.status.unwrap_or(0))),
                })
                .inc();
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

/// `grant` label values are bounded: the grant types Salesforce knows, else `other`.
fn grant_label(grant: Option<&str>) -> &'static str {
    match grant {
        None => "none",
        Some("password") => "password",
        Some("client_credentials") => "client_credentials",
        Some("refresh_token") => "refresh_token",
        Some("authorization_code") => "authorization_code",
        Some(crate::oauth::JWT_BEARER_GRANT) => "jwt_bearer",
        Some(_) => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::events::{Action, UpstreamErrorInfo};

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
}
