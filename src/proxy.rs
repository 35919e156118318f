//! [`Proxy`]: grantshift assembled. It builds the [`State`] every connection shares, serves
//! the proxy port, the transparent TLS listener and the admin server, and shuts down
//! gracefully. [`ProxyHandle`] looks at a running proxy; [`Reloader`] applies SIGHUP.

use crate::ca::{CaWarning, CertificateAuthority};
use crate::config::Config;
use crate::conn::ClientConn;
use crate::server::{accept_loop, bind};
use crate::state::{self, State};
use crate::telemetry::events::{for_each_event, Event, EventSink, QueueBound};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::report::{Report, ReportBuilder};
use crate::telemetry::shared;
use crate::upstream::Upstream;
use crate::verifiers::{Store, Verifiers};
use crate::{access, admin, connect, idle, mitm, preflight};
use arc_swap::ArcSwap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

/// How often expired token cache entries are wiped.
const CACHE_SWEEP: std::time::Duration = std::time::Duration::from_secs(15);
use tokio::net::TcpListener;
use tracing::Instrument;

/// A ready-to-serve proxy: config loaded, CA loaded or created, upstream TLS built.
pub struct Proxy {
    state: Arc<State>,
}

impl Proxy {
    /// Run the [`preflight`] checks (logging their warnings), then load or create the CA,
    /// read the learned password verifiers, open the events file and build the upstream
    /// client. Fails fast on CA, file or TLS
    /// problems, before anything listens, and on any preflight problem before anything is
    /// created.
    pub fn new(config: Config) -> crate::Result<Proxy> {
        let checked = preflight::run(&config)?;
        for warning in &checked.warnings {
            tracing::warn!("{warning}");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let ca = CertificateAuthority::load_or_create(
            &config.ca.cert,
            &config.ca.key,
            &crate::ca::permitted_domains(&config.intercept.hosts),
            provider.clone(),
        )?
        .with_cache_size(config.proxy.leaf_cache_size);
        let metrics = Arc::new(Metrics::new());
        metrics.configure(&config);
        let store = Store::load(&config.state.dir)?;
        tracing::info!(learned = store.len(), path = %store.path().display(), "password verifiers read");
        let cluster = crate::cluster::Cluster::start(&config.cluster, metrics.cluster.clone())
            .map_err(crate::Error::Cluster)?;
        let verifiers = Verifiers::new(store, metrics.clone()).with_cluster(cluster.clone());
        // With a cluster the report is the shared stream's, read from its start: the events
        // file's earlier events are in it (docs/operating.md, "Fleet: the migration report").
        let report = match cluster {
            Some(_) => ReportBuilder::new(config.telemetry.report_max_sets),
            None => seed_report(&config.telemetry.events, config.telemetry.report_max_sets),
        };
        metrics.report_sets_dropped(report.dropped_sets());
        let report = Arc::new(std::sync::Mutex::new(report));
        // With a cluster: this replica's events go to the shared stream (and come back from it
        // into the report), through a bounded queue.
        let fleet = cluster.as_ref().map(|cluster| {
            let fleet = Arc::new(shared::FleetReport::new(
                cluster.replica(),
                report.clone(),
                metrics.clone(),
            ));
            let (tx, rx) = tokio::sync::mpsc::channel(shared::MAX_UNSENT);
            tokio::spawn(shared::publish(
                cluster.clone(),
                rx,
                fleet.clone(),
                metrics.clone(),
            ));
            tokio::spawn(shared::consume(Arc::downgrade(cluster), fleet.clone()));
            (tx, fleet)
        });
        let events = {
            let (metrics, report) = (metrics.clone(), report.clone());
            let dropped = metrics.clone();
            let bound = QueueBound {
                max_queued: config.telemetry.events_max_queued,
                on_dropped: Box::new(move || dropped.event_dropped()),
                replica: cluster.as_ref().map(|c| c.replica().to_owned()),
            };
            EventSink::start(&config.telemetry.events, bound, move |event| {
                metrics.record_event(event);
                match &fleet {
                    Some((tx, fleet)) => {
                        if tx.try_send(Arc::new(event.clone())).is_err() {
                            // The queue to the stream is full: counted here, never shared.
                            metrics.cluster_event_unsent_dropped();
                            fleet.add(event, true);
                        }
                    }
                    None => {
                        let dropped = report.lock().expect("report lock").add(event);
                        metrics.report_sets_dropped(dropped);
                    }
                }
            })?
        };
        let config = Arc::new(ArcSwap::from_pointee(config));
        let upstream = Upstream::new(config.clone(), provider, metrics.clone())?;
        let state = Arc::new(State::new(state::Parts {
            config,
            ca,
            upstream,
            events,
            metrics,
            report,
            verifiers,
            cluster,
        }));
        if let Some(cluster) = &state.cluster {
            tokio::spawn(fleet_tasks(Arc::downgrade(&state), cluster.subscribe()));
        }
        Ok(Proxy { state })
    }

    /// A handle that swaps in a new config (SIGHUP) while the proxy runs.
    pub fn reloader(&self) -> Reloader {
        Reloader {
            state: self.state.clone(),
        }
    }

    /// A handle for looking at the running proxy after `serve` has taken it.
    pub fn handle(&self) -> ProxyHandle {
        ProxyHandle {
            state: self.state.clone(),
        }
    }

    /// Telemetry events as they are written (the line is on disk when one arrives).
    pub fn subscribe_events(&self) -> tokio::sync::broadcast::Receiver<Arc<Event>> {
        self.state.events.subscribe()
    }

    /// Bind `[proxy].admin_listen` and serve the admin endpoints until shutdown. Returns the
    /// bound address, or `None` when the admin server is disabled (`""`).
    pub async fn start_admin(&self) -> crate::Result<Option<SocketAddr>> {
        let Some(addr) = self.state.config().proxy.admin_addr() else {
            return Ok(None);
        };
        let listener = bind_named(addr, "proxy.admin_listen")?;
        let bound = listener.local_addr()?;
        self.state.upstream.dialer.add_own_listener(bound);
        self.state
            .tasks
            .spawn(admin::serve(listener, self.state.clone()));
        Ok(Some(bound))
    }

    /// Bind `[proxy].tls_listen` (transparent TLS for clients that ignore proxy settings:
    /// DNS or /etc/hosts points the Salesforce hosts here) and serve it until shutdown. Its
    /// connections count against `max_connections` with the proxy port's. Returns the bound
    /// address, or `None` when disabled (`""`, the default).
    pub async fn start_tls_listener(&self) -> crate::Result<Option<SocketAddr>> {
        let Some(addr) = self.state.config().proxy.tls_listen_addr() else {
            return Ok(None);
        };
        let listener = bind_named(addr, "proxy.tls_listen")?;
        let bound = listener.local_addr()?;
        self.state.upstream.dialer.add_own_listener(bound);
        let state = self.state.clone();
        self.state.tasks.spawn(async move {
            let slots = state.slots.clone();
            accept_loop(
                listener,
                "tls_listen",
                slots,
                state.tasks.draining(),
                |tcp, peer, slot| {
                    let config = state.config();
                    let conn = ClientConn::new(peer, "tls", config.proxy.idle_timeout, Some(slot));
                    if !access::client_allowed(&config.proxy.allow_clients, peer.ip()) {
                        conn.span.in_scope(|| {
                            tracing::info!(
                                "tls_listen: client address not in proxy.allow_clients; closing"
                            )
                        });
                        return;
                    }
                    let io = idle::IdleTimeout::new(tcp, conn.activity.clone());
                    let span = conn.span.clone();
                    state.tasks.spawn(
                        mitm::serve_intercepted(io, None, conn, state.clone()).instrument(span),
                    );
                },
            )
            .await
        });
        Ok(Some(bound))
    }

    /// Serve one already-accepted client connection (any byte stream) as the proxy port
    /// would, outside the connection cap. For embedding and fuzzing.
    pub async fn serve_connection<IO>(&self, io: IO, peer: SocketAddr)
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let conn = ClientConn::new(peer, "proxy", self.state.config().proxy.idle_timeout, None);
        let span = conn.span.clone();
        connect::serve_front(io, conn, self.state.clone())
            .instrument(span)
            .await
    }

    /// PEM of grantshift's CA certificate (what clients must trust).
    pub fn ca_cert_pem(&self) -> String {
        self.state.ca.cert_pem().to_string()
    }

    /// Serve on `listener` until `shutdown` resolves; then stop accepting, let in-flight
    /// requests and open tunnels finish for up to `shutdown_grace`, and return.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> crate::Result<()> {
        let state = self.state;
        if let Ok(bound) = listener.local_addr() {
            // A client asking the proxy for itself (or its admin server) is refused.
            state.upstream.dialer.add_own_listener(bound);
        }
        let slots = state.slots.clone();
        // No cached session stays in memory past its time, asked for again or not.
        let sweeper = {
            let state = Arc::downgrade(&state);
            tokio::spawn(async move {
                let mut every = tokio::time::interval(CACHE_SWEEP);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    match state.upgrade() {
                        Some(state) => state.token_cache.sweep(),
                        None => return,
                    }
                }
            })
        };
        // Ready (`/readyz`) from the first accept until shutdown begins.
        state.readiness.serving();
        let shutdown = {
            let state = state.clone();
            async move {
                shutdown.await;
                state.readiness.stopping();
            }
        };
        accept_loop(listener, "proxy", slots, shutdown, |tcp, peer, slot| {
            let idle = state.config().proxy.idle_timeout;
            let conn = ClientConn::new(peer, "proxy", idle, Some(slot));
            let span = conn.span.clone();
            state
                .tasks
                .spawn(connect::serve_front(tcp, conn, state.clone()).instrument(span));
        })
        .await;
        let grace = state.config().proxy.shutdown_grace;
        state.tasks.drain(grace).await;
        sweeper.abort();
        // Every login's event is on disk before the process exits, unless the events file
        // itself is stuck (a full disk, a hung NFS mount): that must not hold the exit.
        if tokio::time::timeout(grace, state.events.sync())
            .await
            .is_err()
        {
            tracing::warn!(after = ?grace, "the events file did not take the last events within shutdown_grace; exiting without them");
        }
        Ok(())
    }
}

/// Bind `addr` for the config key `key`; the error names both.
fn bind_named(addr: SocketAddr, key: &str) -> std::io::Result<TcpListener> {
    bind(addr)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{key}: cannot listen on {addr}: {e}")))
}

/// Read-only views of a running proxy (tests, embedding).
#[derive(Clone)]
pub struct ProxyHandle {
    state: Arc<State>,
}

impl ProxyHandle {
    /// The Prometheus exposition, as `/metrics` serves it.
    pub fn metrics_text(&self) -> String {
        self.state.metrics.encode()
    }

    /// Hosts with a cached leaf certificate (bounded by `leaf_cache_size`).
    pub fn cached_leaves(&self) -> usize {
        self.state.ca.cached_leaves()
    }

    /// The migration report.
    pub fn report(&self) -> Report {
        self.state.report()
    }

    /// What `/readyz` answers: `Ok` while the proxy port accepts, else the reason.
    pub fn readiness(&self) -> Result<(), &'static str> {
        self.state.readiness.check()
    }

    /// Make the named fault point panic for requests to `host` on this proxy (test builds).
    #[cfg(feature = "fault-injection")]
    pub fn arm_fault(&self, point: &str, host: &str) {
        self.state.faults.arm(point, host)
    }
}

/// Applies a new config to a running proxy. Requests already in flight keep the snapshot they
/// started with; open tunnels are not touched. Rollout, credentials (their `password_hash` and
/// `verify_password` too), intercept hosts, connect_to, timeouts and the events file take
/// effect (the events file is reopened on every reload, even a failed one: log rotation); learned password verifiers are kept; the listeners, `max_connections`,
/// `leaf_cache_size`, `token_body_budget`, the CA, `state.dir` and the upstream root
/// certificates need a restart (a reload that changes them says so in a warning).
#[derive(Clone)]
pub struct Reloader {
    state: Arc<State>,
}

impl Reloader {
    pub fn apply(&self, new: Config) {
        let old = self.state.config_snapshot();
        let needs_restart: Vec<&str> = [
            ("proxy.listen", old.proxy.listen != new.proxy.listen),
            (
                "proxy.admin_listen",
                old.proxy.admin_listen != new.proxy.admin_listen,
            ),
            (
                "proxy.tls_listen",
                old.proxy.tls_listen != new.proxy.tls_listen,
            ),
            (
                "proxy.max_connections",
                old.proxy.max_connections != new.proxy.max_connections,
            ),
            (
                "proxy.leaf_cache_size",
                old.proxy.leaf_cache_size != new.proxy.leaf_cache_size,
            ),
            (
                "proxy.token_body_budget",
                old.proxy.token_body_budget != new.proxy.token_body_budget,
            ),
            (
                "token_cache.max_entries",
                old.token_cache.max_entries != new.token_cache.max_entries,
            ),
            (
                "token_cache.max_bytes",
                old.token_cache.max_bytes != new.token_cache.max_bytes,
            ),
            ("ca.cert", old.ca.cert != new.ca.cert),
            ("state.dir", old.state.dir != new.state.dir),
            ("ca.key", old.ca.key != new.ca.key),
            (
                "upstream.extra_root_certs",
                old.upstream.extra_root_certs != new.upstream.extra_root_certs,
            ),
        ]
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect();
        if !needs_restart.is_empty() {
            tracing::warn!(keys = %needs_restart.join(", "), "these changes take effect after a restart");
        }
        if old.intercept.hosts.names().ne(new.intercept.hosts.names()) {
            for warning in self.state.ca.warnings(&new.intercept.hosts) {
                if matches!(warning, CaWarning::HostOutside { .. }) {
                    tracing::warn!("{warning}");
                }
            }
        }
        // Every SIGHUP reopens the events file, changed or not: after a rotation (the file
        // renamed) new events go to a new file at the path. The writer takes the reopen in
        // order, so events queued before it go to the old file, the rest to the new.
        self.state.events.reopen(&new.telemetry.events);
        self.state
            .events
            .set_max_queued(new.telemetry.events_max_queued);
        let dropped = self
            .state
            .set_report_max_sets(new.telemetry.report_max_sets);
        self.state.metrics.report_sets_dropped(dropped);
        self.state.metrics.configure(&new);
        self.state.verifiers.prune(&new);
        // Cached answers of credentials entries that changed or went are dropped (all of
        // them when the cache is turned off).
        let keep: std::collections::HashSet<[u8; 32]> =
            new.credentials.iter().map(|c| c.fingerprint).collect();
        let dropped = self
            .state
            .token_cache
            .reload(new.token_cache.enabled.then_some(&keep));
        if dropped > 0 {
            tracing::info!(
                entries = dropped,
                "token cache entries dropped by the reload"
            );
        }
        self.state.store_config(new);
        self.state.metrics.config_reload(true);
        self.state.record_reload(Ok(()));
        tracing::info!("config reloaded");
    }

    /// A reload that could not be applied: the running config stays.
    pub fn failed(&self, error: &dyn std::fmt::Display) {
        // A rotation's SIGHUP still reopens the running events file.
        self.state
            .events
            .reopen(&self.state.config_snapshot().telemetry.events);
        self.state.metrics.config_reload(false);
        self.state.record_reload(Err(error.to_string()));
        tracing::error!(%error, "config reload failed; keeping the running config");
    }
}

/// How often the fleet's login rate is read for its WARN when nobody scrapes.
const FLEET_RATE_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

/// While the proxy lives, with a cluster: resync the learned verifiers each time Redis
/// answers again (and when it first does), and read the fleet's login rate every
/// [`FLEET_RATE_EVERY`] (its WARN).
async fn fleet_tasks(state: std::sync::Weak<State>, mut up: tokio::sync::watch::Receiver<bool>) {
    let mut every = tokio::time::interval(FLEET_RATE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Redis may have answered before this task looked.
    if *up.borrow_and_update() {
        let Some(state) = state.upgrade() else { return };
        state.verifiers.resync().await;
    }
    loop {
        tokio::select! {
            changed = up.changed() => {
                if changed.is_err() { return }
                if !*up.borrow_and_update() { continue }
                let Some(state) = state.upgrade() else { return };
                state.verifiers.resync().await;
            }
            _ = every.tick() => {
                let Some(state) = state.upgrade() else { return };
                state.login_rates().await;
            }
        }
    }
}

/// The report starts from the events already in the file, so `/report` and
/// `grantshift report` over the same file agree across restarts.
fn seed_report(events_path: &str, max_sets: usize) -> ReportBuilder {
    let mut builder = ReportBuilder::new(max_sets);
    if matches!(events_path, "" | "-") || !std::path::Path::new(events_path).exists() {
        return builder;
    }
    // Line by line: the file holds every login since the proxy first ran.
    let mut seen = 0usize;
    match for_each_event(std::path::Path::new(events_path), |e| {
        seen += 1;
        builder.add(&e);
    }) {
        Ok(bad) => {
            tracing::info!(events = seen, unreadable_lines = bad, path = %events_path, "report seeded from the events file");
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the events file; the report starts empty")
        }
    }
    builder
}
