//! [`State`]: what every connection of one proxy shares. Built by the proxy at start;
//! read by every stage below it.

use crate::body::MemoryBudget;
use crate::broker::cache::TokenCache;
use crate::ca::CertificateAuthority;
use crate::config::Config;
use crate::fault::Faults;
use crate::tasks::Tasks;
use crate::telemetry::events::EventSink;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::render::ReloadOutcome;
use crate::telemetry::report::{Report, ReportBuilder};
use crate::upstream::Upstream;
use crate::verifiers::Verifiers;
use arc_swap::ArcSwap;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// The config snapshot, the CA, the upstream pool, telemetry, the password verifiers and the
/// task tracker.
pub struct State {
    config: Arc<ArcSwap<Config>>,
    pub ca: CertificateAuthority,
    pub upstream: Upstream,
    pub events: EventSink,
    pub metrics: Arc<Metrics>,
    report: Arc<Mutex<ReportBuilder>>,
    pub tasks: Tasks,
    /// The credential sets' password verifiers, and what their checks remember.
    pub verifiers: Verifiers,
    /// Client connections served at once (`max_connections`), on the proxy port and the
    /// transparent TLS listener together.
    pub slots: Arc<Semaphore>,
    /// Memory for buffered token request bodies, shared by every connection
    /// (`token_body_budget`).
    pub token_bodies: MemoryBudget,
    /// Test-only panic points (nothing in a normal build).
    pub faults: Faults,
    /// Whether the proxy port accepts (`/readyz`).
    pub readiness: Readiness,
    /// Upgraded token responses, per credentials (`[token_cache]`).
    pub token_cache: TokenCache,
    /// Shared state on Redis (`[cluster]`); `None`: this replica alone.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// The last config reload and how it went (the admin page); `None` before the first.
    last_reload: Mutex<Option<ReloadOutcome>>,
}

/// Where the proxy port is in its life, for `/readyz`: config and CA are loaded before a
/// [`State`] exists, so readiness is only whether the proxy listener accepts.
#[derive(Default)]
pub struct Readiness(std::sync::atomic::AtomicU8);

const STARTING: u8 = 0;
const SERVING: u8 = 1;
const STOPPING: u8 = 2;

impl Readiness {
    /// The proxy listener has started accepting.
    pub fn serving(&self) {
        let _ = self.0.compare_exchange(
            STARTING,
            SERVING,
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
        );
    }

    /// Shutdown has begun: no new connections from here on.
    pub fn stopping(&self) {
        self.0.store(STOPPING, std::sync::atomic::Ordering::SeqCst);
    }

    /// `Ok` when ready; otherwise a one-line reason.
    pub fn check(&self) -> Result<(), &'static str> {
        match self.0.load(std::sync::atomic::Ordering::SeqCst) {
            SERVING => Ok(()),
            STARTING => Err("not ready: the proxy listener is not serving yet"),
            _ => Err("not ready: shutting down"),
        }
    }
}

/// The parts [`State::new`] is built from.
pub struct Parts {
    pub config: Arc<ArcSwap<Config>>,
    pub ca: CertificateAuthority,
    pub upstream: Upstream,
    pub events: EventSink,
    pub metrics: Arc<Metrics>,
    pub report: Arc<Mutex<ReportBuilder>>,
    pub verifiers: Verifiers,
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl State {
    pub fn new(parts: Parts) -> State {
        let slots = Arc::new(Semaphore::new(parts.config.load().proxy.max_connections));
        let token_bodies = MemoryBudget::new(
            parts.config.load().proxy.token_body_budget,
            parts.metrics.token_body_bytes.clone(),
        );
        let token_cache = TokenCache::shared(
            &parts.config.load().token_cache,
            parts.metrics.token_cache.clone(),
            parts.cluster.clone(),
        );
        State {
            token_cache,
            cluster: parts.cluster,
            config: parts.config,
            ca: parts.ca,
            upstream: parts.upstream,
            events: parts.events,
            metrics: parts.metrics,
            report: parts.report,
            tasks: Tasks::default(),
            verifiers: parts.verifiers,
            slots,
            token_bodies,
            faults: Faults::default(),
            readiness: Readiness::default(),
            last_reload: Mutex::new(None),
        }
    }

    /// Remember how a config reload went: `Err` with the error (only its first line is kept,
    /// at most 300 characters; config errors name the key and the problem, never a secret).
    pub fn record_reload(&self, result: Result<(), String>) {
        let at = time::OffsetDateTime::now_utc();
        let at = at
            .replace_nanosecond(0)
            .unwrap_or(at)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let result = result.map_err(|e| {
            let first = e.lines().next().unwrap_or("");
            crate::telemetry::render::truncate(first, 300).into_owned()
        });
        *self.last_reload.lock().expect("reload lock") = Some(ReloadOutcome { at, result });
    }

    /// The last config reload, if there was one.
    pub fn last_reload(&self) -> Option<ReloadOutcome> {
        self.last_reload.lock().expect("reload lock").clone()
    }

    /// The current config (a cheap snapshot; a reload swaps it without blocking anyone).
    pub fn config(&self) -> arc_swap::Guard<Arc<Config>> {
        self.config.load()
    }

    /// The current config, owned: for work that spans awaits.
    pub fn config_snapshot(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// Swap in a new config; requests in flight keep the snapshot they started with.
    pub fn store_config(&self, config: Config) {
        self.config.store(Arc::new(config));
    }

    /// The migration report over every event of this events file (earlier runs included),
    /// with each set's password verifier as the config and the state file say.
    pub fn report(&self) -> Report {
        let config = self.config_snapshot();
        let view = self.verifiers.view(&config);
        self.report
            .lock()
            .expect("report lock")
            .report_with(Some(&view))
    }

    /// The upstream logins of the last hour per (target host, Run As identity), busiest first
    /// (sets `grantshift_upstream_logins_last_hour`): the fleet's counts with a cluster that
    /// answers, else this replica's.
    pub async fn login_rates(&self) -> Vec<crate::telemetry::login_rate::Rate> {
        let fleet = match &self.cluster {
            Some(cluster) => {
                let pairs = self.metrics.login_pairs();
                crate::telemetry::shared::fleet_rates(cluster, &pairs).await
            }
            None => None,
        };
        self.metrics.login_rates_with(fleet)
    }

    /// Keep at most `max_sets` credential sets in the report (config reload); how many were
    /// dropped to get there.
    pub fn set_report_max_sets(&self, max_sets: usize) -> u64 {
        self.report
            .lock()
            .expect("report lock")
            .set_max_sets(max_sets)
    }
}

#[cfg(test)]
mod tests {
    use super::Readiness;

    #[test]
    fn readiness_goes_starting_serving_stopping_and_never_back() {
        let r = Readiness::default();
        assert_eq!(
            r.check(),
            Err("not ready: the proxy listener is not serving yet")
        );
        r.serving();
        assert_eq!(r.check(), Ok(()));
        r.stopping();
        r.serving();
        assert_eq!(r.check(), Err("not ready: shutting down"));
    }
}
