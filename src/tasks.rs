//! Every task a connection spawns (served connections, tunnels, upgraded connections),
//! tracked so that shutdown can drain them.
//!
//! `hyper`'s graceful shutdown covers the connections it serves, not the tunnels and upgraded
//! connections that outlive them. Shutdown here has two steps: *draining* (served connections
//! finish their in-flight requests and close; listeners stop accepting) and, once the grace
//! period is over, *closing* whatever is still open.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// The tracked tasks of one proxy.
pub struct Tasks {
    tracker: TaskTracker,
    start_draining: watch::Sender<bool>,
    /// Cancelled when the grace period is over: whatever is still open is closed.
    closing: CancellationToken,
}

impl Default for Tasks {
    fn default() -> Self {
        Tasks {
            tracker: TaskTracker::new(),
            start_draining: watch::channel(false).0,
            closing: CancellationToken::new(),
        }
    }
}

impl Tasks {
    /// Spawn a task that shutdown waits for and that ends when the grace period is over. It
    /// runs in the caller's tracing span (the client connection's, usually).
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let closing = self.closing.clone();
        self.tracker.spawn(
            async move {
                tokio::select! {
                    () = task => {}
                    () = closing.cancelled() => {}
                }
            }
            .in_current_span(),
        );
    }

    /// Drive a served connection to its end; once draining begins, ask it to finish its
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

    /// Resolves once draining has begun.
    pub async fn draining(&self) {
        let mut rx = self.start_draining.subscribe();
        let _ = rx.wait_for(|draining| *draining).await;
    }

    /// Tasks still running.
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    /// True when no task is running.
    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }

    /// Begin draining, wait up to `grace` for every task to end, then close the rest and wait
    /// for them to go.
    pub async fn drain(&self, grace: Duration) {
        tracing::info!(open = self.len(), grace = ?grace, "shutting down: no new connections; draining");
        self.start_draining.send_replace(true);
        self.tracker.close();
        match tokio::time::timeout(grace, self.tracker.wait()).await {
            Ok(()) => tracing::info!("drained; bye"),
            Err(_) => {
                tracing::warn!(
                    left = self.len(),
                    "grace period over; closing the remaining connections"
                );
                self.closing.cancel();
                self.tracker.wait().await;
            }
        }
    }
}
