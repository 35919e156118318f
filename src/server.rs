//! The accept loop and graceful shutdown.
//!
//! `hyper`'s graceful shutdown covers the connections it serves, not the tunnels and upgraded
//! connections that outlive them, so every task grantshift spawns is tracked here and shutdown
//! waits for all of them, up to `[proxy].shutdown_grace`.

use crate::config::Config;
use crate::mitm::ca::CertificateAuthority;
use crate::telemetry::events::{for_each_event, EventSink};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::report::{Report, ReportBuilder};
use crate::upstream::Upstream;
use arc_swap::ArcSwap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// State every connection shares: config snapshot, CA, upstream client, task tracking.
pub struct Shared {
    config: Arc<ArcSwap<Config>>,
    pub ca: CertificateAuthority,
    pub upstream: Upstream,
    pub events: EventSink,
    pub metrics: Arc<Metrics>,
    report: Arc<std::sync::Mutex<ReportBuilder>>,
    tasks: TaskTracker,
    draining: watch::Receiver<bool>,
    /// Cancelled when the grace period is over: whatever is still open is closed.
    closing: CancellationToken,
    /// Test-only panic points (nothing in a normal build).
    pub faults: crate::fault::Faults,
}

impl Shared {
    /// The current config (a cheap snapshot; a reload swaps it without blocking anyone).
    pub fn config(&self) -> arc_swap::Guard<Arc<Config>> {
        self.config.load()
    }

    /// The migration report over every event of this events file (earlier runs included).
    pub fn report(&self) -> Report {
        self.report.lock().expect("report lock").report()
    }

    /// The current config, owned: for work that spans awaits.
    pub fn config_snapshot(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// Spawn a task that shutdown waits for (tunnels, upgraded connections, connections),
    /// and ends when the grace period is over.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let closing = self.closing.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                () = task => {}
                () = closing.cancelled() => {}
            }
        });
    }

    /// Drive a served connection to its end; once shutdown begins, ask it to finish its
    /// in-flight requests (HTTP/2: GOAWAY) and close. `graceful` is the connection type's
    /// `graceful_shutdown` (hyper's connection types share no trait for it).
    pub async fn serve_until_drained<C, T>(&self, conn: C, graceful: fn(Pin<&mut C>)) -> T
    where
        C: Future<Output = T>,
    {
        tokio::pin!(conn);
        tokio::select! {
            ended = conn.as_mut() => ended,
            () = self.draining() => {
                graceful(conn.as_mut());
                conn.await
            }
        }
    }

    /// Resolves once shutdown has begun: served connections then finish their in-flight
    /// requests and close.
    pub async fn draining(&self) {
        let mut rx = self.draining.clone();
        let _ = rx.wait_for(|draining| *draining).await;
    }
}

/// A ready-to-serve proxy: config loaded, CA loaded or created, upstream TLS built.
pub struct Proxy {
    shared: Arc<Shared>,
    start_draining: watch::Sender<bool>,
}

impl Proxy {
    /// Load or create the CA and build the upstream client. Fails fast on CA or TLS problems,
    /// before anything listens.
    pub fn new(config: Config) -> crate::Result<Proxy> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let ca = CertificateAuthority::load_or_create(
            &config.ca.cert,
            &config.ca.key,
            provider.clone(),
        )?
        .with_cache_size(config.proxy.leaf_cache_size);
        let metrics = Arc::new(Metrics::new());
        let report = Arc::new(std::sync::Mutex::new(seed_report(&config.telemetry.events)));
        let events = {
            let (metrics, report) = (metrics.clone(), report.clone());
            EventSink::start(&config.telemetry.events, move |event| {
                metrics.record_event(event);
                report.lock().expect("report lock").add(event);
            })?
        };
        let config = Arc::new(ArcSwap::from_pointee(config));
        let upstream = Upstream::new(config.clone(), provider, metrics.clone())?;
        let (start_draining, draining) = watch::channel(false);
        Ok(Proxy {
            shared: Arc::new(Shared {
                config,
                ca,
                upstream,
                events,
                metrics,
                report,
                tasks: TaskTracker::new(),
                draining,
                closing: CancellationToken::new(),
                faults: Default::default(),
            }),
            start_draining,
        })
    }

    /// A handle that swaps in a new config (SIGHUP) while the proxy runs.
    pub fn reloader(&self) -> Reloader {
        Reloader {
            shared: self.shared.clone(),
        }
    }

    /// A handle for looking at the running proxy after `serve` has taken it.
    pub fn handle(&self) -> ProxyHandle {
        ProxyHandle {
            shared: self.shared.clone(),
        }
    }

    /// Telemetry events as they are written (the line is on disk when one arrives).
    pub fn subscribe_events(
        &self,
    ) -> tokio::sync::broadcast::Receiver<Arc<crate::telemetry::events::Event>> {
        self.shared.events.subscribe()
    }

    /// Bind `[proxy].admin_listen` and serve the admin endpoints until shutdown. Returns the
    /// bound address, or `None` when the admin server is disabled (`""`).
    pub async fn start_admin(&self) -> crate::Result<Option<std::net::SocketAddr>> {
        let Some(addr) = self.shared.config().proxy.admin_addr() else {
            return Ok(None);
        };
        let listener = bind(addr).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("proxy.admin_listen: cannot listen on {addr}: {e}"),
            )
        })?;
        let bound = listener.local_addr()?;
        let shared = self.shared.clone();
        self.shared.spawn(crate::admin::serve(listener, shared));
        Ok(Some(bound))
    }

    /// Bind `[proxy].tls_listen` (transparent TLS for clients that ignore proxy settings:
    /// DNS or /etc/hosts points the Salesforce hosts here) and serve it until shutdown.
    /// Returns the bound address, or `None` when disabled (`""`, the default).
    pub async fn start_tls_listener(&self) -> crate::Result<Option<std::net::SocketAddr>> {
        let Some(addr) = self.shared.config().proxy.tls_listen_addr() else {
            return Ok(None);
        };
        let listener = bind(addr).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("proxy.tls_listen: cannot listen on {addr}: {e}"),
            )
        })?;
        let bound = listener.local_addr()?;
        let shared = self.shared.clone();
        self.shared.spawn(async move {
            loop {
                let (tcp, peer) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(pair) => pair,
                        Err(e) => {
                            tracing::warn!(error = %e, "tls_listen accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                    () = shared.draining() => return,
                };
                let config = shared.config_snapshot();
                if !crate::access::client_allowed(&config.proxy.allow_clients, peer.ip()) {
                    tracing::info!(client = %peer, "tls_listen: client address not in proxy.allow_clients; closing");
                    continue;
                }
                let _ = tcp.set_nodelay(true);
                let conn = crate::connect::ClientConn::new(peer, config.proxy.idle_timeout, None);
                let io = crate::idle::IdleTimeout::new(tcp, conn.activity.clone());
                shared.spawn(crate::mitm::serve_intercepted(io, None, conn, shared.clone()));
            }
        });
        Ok(Some(bound))
    }

    /// Serve one already-accepted client connection (any byte stream) as the proxy port
    /// would, outside the connection cap. For embedding and fuzzing.
    pub async fn serve_connection<IO>(&self, io: IO, peer: std::net::SocketAddr)
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        crate::connect::serve_front(io, peer, None, self.shared.clone()).await
    }

    /// PEM of grantshift's CA certificate (what clients must trust).
    pub fn ca_cert_pem(&self) -> String {
        self.shared.ca.cert_pem().to_string()
    }

    /// Serve on `listener` until `shutdown` resolves; then stop accepting, let in-flight
    /// requests and open tunnels finish for up to `shutdown_grace`, and return.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> crate::Result<()> {
        let shared = self.shared;
        tokio::pin!(shutdown);
        // At the connection cap the loop stops accepting: excess clients wait in the
        // kernel's listen backlog instead of being refused.
        let permits = Arc::new(tokio::sync::Semaphore::new(
            shared.config().proxy.max_connections,
        ));
        loop {
            let permit = tokio::select! {
                permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                () = &mut shutdown => break,
            };
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        // Small responses must not wait ~40 ms for the client's delayed ACK.
                        let _ = tcp.set_nodelay(true);
                        let conn_shared = shared.clone();
                        shared.spawn(crate::connect::serve_front(tcp, peer, Some(permit), conn_shared));
                    }
                    Err(e) => {
                        // Typically EMFILE: back off instead of spinning; connections in
                        // flight carry on.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                () = &mut shutdown => break,
            }
        }
        drop(listener);
        let grace = shared.config().proxy.shutdown_grace;
        let open = shared.tasks.len();
        tracing::info!(open, grace = ?grace, "shutting down: no new connections; draining");
        let _ = self.start_draining.send(true);
        shared.tasks.close();
        match tokio::time::timeout(grace, shared.tasks.wait()).await {
            Ok(()) => tracing::info!("drained; bye"),
            Err(_) => {
                tracing::warn!(
                    left = shared.tasks.len(),
                    "grace period over; closing the remaining connections"
                );
                shared.closing.cancel();
                shared.tasks.wait().await;
            }
        }
        // Every login's event is on disk before the process exits.
        shared.events.sync().await;
        Ok(())
    }
}

/// Read-only views of a running proxy (tests, embedding).
#[derive(Clone)]
pub struct ProxyHandle {
    shared: Arc<Shared>,
}

impl ProxyHandle {
    /// The Prometheus exposition, as `/metrics` serves it.
    pub fn metrics_text(&self) -> String {
        self.shared.metrics.encode()
    }

    /// Hosts with a cached leaf certificate (bounded by `leaf_cache_size`).
    pub fn cached_leaves(&self) -> usize {
        self.shared.ca.cached_leaves()
    }

    /// The migration report.
    pub fn report(&self) -> Report {
        self.shared.report()
    }

    /// Make the named fault point panic for requests to `host` on this proxy (test builds).
    #[cfg(feature = "fault-injection")]
    pub fn arm_fault(&self, point: &str, host: &str) {
        self.shared.faults.arm(point, host)
    }
}

/// Applies a new config to a running proxy. Requests already in flight keep the snapshot they
/// started with; open tunnels are not touched. Rollout, credentials, intercept hosts,
/// connect_to, timeouts and the events file take effect; the listen address, the CA and the
/// upstream root certificates need a restart.
#[derive(Clone)]
pub struct Reloader {
    shared: Arc<Shared>,
}

impl Reloader {
    pub fn apply(&self, new: Config) {
        let old = self.shared.config.load_full();
        if old.proxy.listen != new.proxy.listen
            || old.ca.cert != new.ca.cert
            || old.ca.key != new.ca.key
            || old.upstream.extra_root_certs != new.upstream.extra_root_certs
        {
            tracing::warn!("proxy.listen, ca.* and upstream.extra_root_certs changes take effect after a restart");
        }
        if old.telemetry.events != new.telemetry.events {
            self.shared.events.reopen(&new.telemetry.events);
        }
        self.shared.config.store(Arc::new(new));
        self.shared.metrics.config_reload(true);
        tracing::info!("config reloaded");
    }

    /// A reload that could not be applied: the running config stays.
    pub fn failed(&self, error: &dyn std::fmt::Display) {
        self.shared.metrics.config_reload(false);
        tracing::error!(%error, "config reload failed; keeping the running config");
    }
}

/// Bind a listening socket with a deep accept queue: a burst of new clients (thousands of
/// tunnels opening at once) must queue, not overflow into SYN retries.
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Bind `config.proxy.listen` and serve until `shutdown` (what `main` does; tests call
/// [`Proxy::serve`] with a listener on port 0).
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> crate::Result<()> {
    Proxy::new(config)?.serve(listener, shutdown).await
}

/// The report starts from the events already in the file, so `/report` and
/// `grantshift report` over the same file agree across restarts.
fn seed_report(events_path: &str) -> ReportBuilder {
    let mut builder = ReportBuilder::default();
    if matches!(events_path, "" | "-") || !std::path::Path::new(events_path).exists() {
        return builder;
    }
    // Line by line: the file holds every login since the proxy first ran.
    let mut seen = 0usize;
    match for_each_event(std::path::Path::new(events_path), |e| {
        seen += 1;
        builder.add(&e)
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
