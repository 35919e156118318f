//! Fleet mode (docs/operating.md, "Fleet: shared state on Redis"): replicas share state on
//! Redis (or Valkey) through one [`Cluster`].
//!
//! Redis is a help, never a dependency: every call is bounded by `cluster.timeout` and
//! [`Cluster::call`] answers `None` on any failure, so the caller goes on with this replica's
//! own state. The first failure marks the cluster down (one WARN per outage, gauge
//! `grantshift_cluster_up` 0); while down no call is tried, and a background task PINGs every
//! second until Redis answers (INFO, gauge 1, [`Cluster::subscribe`] sees `true`: resync).
//! redis-rs's `ConnectionManager` reconnects by itself.
//!
//! Values are sealed ([`Cluster::seal`], AES-256-GCM under `GRANTSHIFT_CLUSTER_KEY`) before
//! they are stored. Below broker, token and telemetry: this module knows the config only.

mod crypto;

use crate::config::ClusterConfig;
pub use crypto::Sealer;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::watch;
use zeroize::Zeroizing;

/// How often a down cluster is asked whether it is back.
pub const PING_EVERY: Duration = Duration::from_secs(1);

/// The WARN of an outage (once per outage).
pub const DOWN_MESSAGE: &str = "shared state unavailable; using this replica's own state";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
}

/// `grantshift_cluster_up` and `grantshift_cluster_errors_total{op}`.
#[derive(Clone, Default)]
pub struct ClusterMetrics {
    pub up: Gauge,
    errors: Family<OpLabels, Counter>,
}

impl ClusterMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "grantshift_cluster_up",
            "Whether shared state on Redis is reachable ([cluster]; 0 when down or not configured: this replica serves from its own state)",
            self.up.clone(),
        );
        registry.register(
            "grantshift_cluster_errors",
            "Redis calls that failed or passed cluster.timeout, by operation (the login went on with local state)",
            self.errors.clone(),
        );
        // The health check's series exists from the start (at 0).
        let _ = self.errors.get_or_create(&OpLabels { op: "ping" });
    }

    fn error(&self, op: &'static str) {
        self.errors.get_or_create(&OpLabels { op }).inc();
    }

    /// Failed calls counted for `op` (tests).
    pub fn errors(&self, op: &'static str) -> u64 {
        self.errors.get_or_create(&OpLabels { op }).get()
    }
}

/// One replica's link to the fleet's Redis.
pub struct Cluster {
    conn: ConnectionManager,
    key: Zeroizing<[u8; 32]>,
    sealer: Sealer,
    prefix: String,
    replica: String,
    timeout: Duration,
    up: watch::Sender<bool>,
    /// An outage's WARN was logged (reset when Redis is back).
    warned: AtomicBool,
    metrics: ClusterMetrics,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("replica", &self.replica)
            .field("prefix", &self.prefix)
            .field("up", &self.is_up())
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connect (lazily: never fails or waits because Redis is unreachable) and start the
    /// health task, which PINGs at once and then every second while down. `None` when
    /// `[cluster]` names no Redis. Needs a tokio runtime.
    pub fn start(
        config: &ClusterConfig,
        metrics: ClusterMetrics,
    ) -> Result<Option<Arc<Cluster>>, String> {
        if !config.enabled() {
            return Ok(None);
        }
        let key = config
            .key
            .as_ref()
            .ok_or_else(|| format!("cluster.redis: needs {}", crate::config::CLUSTER_KEY_ENV))?;
        let client = client(config)?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(100));
        let conn = ConnectionManager::new_lazy_with_config(client, manager)
            .map_err(|e| format!("cluster.redis: {}", e.category()))?;
        metrics.up.set(0);
        let cluster = Arc::new(Cluster {
            conn,
            key: Zeroizing::new(*key.0),
            sealer: Sealer::new(&key.0),
            prefix: config.prefix.clone(),
            replica: config.replica.clone(),
            timeout: config.timeout,
            up: watch::channel(false).0,
            warned: AtomicBool::new(false),
            metrics,
        });
        tokio::spawn(health(Arc::downgrade(&cluster)));
        Ok(Some(cluster))
    }

    /// Run one Redis call (`what`: the `op` label, a fixed name) under `cluster.timeout`.
    /// `None` when the cluster is down (nothing is tried), or the call failed or took too
    /// long (counted; a connection failure or a timeout marks the cluster down).
    pub async fn call<T, F, Fut>(&self, what: &'static str, f: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if !self.is_up() {
            return None;
        }
        match tokio::time::timeout(self.timeout, f(self.conn.clone())).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(e)) => {
                self.metrics.error(what);
                if e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                {
                    self.down();
                } else {
                    tracing::debug!(op = what, error = e.category(), "redis call refused");
                }
                None
            }
            Err(_elapsed) => {
                self.metrics.error(what);
                self.down();
                None
            }
        }
    }

    /// `prefix` + `rest`: every key this proxy uses.
    pub fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    /// This replica's name (`cluster.replica`).
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// The bound on each call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether Redis answered last time it was asked.
    pub fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    /// The up state as it changes: `true` after an outage is the moment to resync.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.up.subscribe()
    }

    /// Seal a value for Redis (AES-256-GCM, random nonce prefixed).
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        self.sealer.seal(plain)
    }

    /// Open a value read from Redis; `None` for one not sealed with the fleet's key or
    /// changed.
    pub fn open(&self, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        self.sealer.open(sealed)
    }

    /// A key for `label` derived from the fleet's key (HMAC-SHA-256): the same on every
    /// replica, e.g. the token cache's digest key, so every replica computes the same keys.
    pub fn derive(&self, label: &str) -> Zeroizing<[u8; 32]> {
        use hmac::{Hmac, Mac};
        let mut mac =
            Hmac::<sha2::Sha256>::new_from_slice(&self.key[..]).expect("HMAC takes any key length");
        mac.update(b"grantshift-cluster-derive\0");
        mac.update(label.as_bytes());
        Zeroizing::new(mac.finalize().into_bytes().into())
    }

    pub fn metrics(&self) -> &ClusterMetrics {
        &self.metrics
    }

    fn down(&self) {
        let was_up = self.up.send_replace(false);
        self.metrics.up.set(0);
        if was_up || !self.warned.swap(true, Ordering::SeqCst) {
            self.warned.store(true, Ordering::SeqCst);
            tracing::warn!(replica = %self.replica, "{DOWN_MESSAGE}");
        }
    }

    fn back(&self) {
        self.warned.store(false, Ordering::SeqCst);
        self.metrics.up.set(1);
        if !self.up.send_replace(true) {
            tracing::info!(replica = %self.replica, "shared state on Redis available");
        }
    }

    async fn ping(&self) -> bool {
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut conn);
        matches!(
            tokio::time::timeout(self.timeout, ping).await,
            Ok(Ok(pong)) if pong == "PONG"
        )
    }
}

/// The client for `cluster.redis`, with the AUTH password from `password_env`.
fn client(config: &ClusterConfig) -> Result<redis::Client, String> {
    use redis::IntoConnectionInfo;
    let mut info = config
        .redis
        .trim()
        .into_connection_info()
        .map_err(|e| format!("cluster.redis: not a Redis URL ({})", e.category()))?;
    if let Some(password) = &config.password {
        let settings = info.redis_settings().clone().set_password(&*password.0);
        info = info.set_redis_settings(settings);
    }
    redis::Client::open(info).map_err(|e| format!("cluster.redis: {}", e.category()))
}

/// While the cluster lives: PING at once, then every [`PING_EVERY`] while down; when up,
/// wait until a call marks it down.
async fn health(cluster: Weak<Cluster>) {
    loop {
        let Some(c) = cluster.upgrade() else { return };
        if c.ping().await {
            c.back();
            let mut up = c.subscribe();
            drop(c);
            // Ends when a call marks the cluster down, or the cluster is gone.
            if up.wait_for(|up| !*up).await.is_err() {
                return;
            }
            continue;
        }
        c.metrics.error("ping");
        c.down();
        drop(c);
        tokio::time::sleep(PING_EVERY).await;
    }
}
