//! The upstream side: one shared connection pool (HTTP/1.1 and HTTP/2 by ALPN, `pool`) over
//! the [`Dialer`] (verified TLS, `[upstream.connect_to]`), with errors typed so the client
//! gets the right status (502 or 504) and a line naming the host and the cause
//! ([`UpstreamError`]).

mod dial;
mod error;
mod pool;

pub use dial::{Alpn, Dialer, UpstreamStream};
pub use error::UpstreamError;

use crate::body::Body;
use crate::config::Config;
use arc_swap::ArcSwap;
use http::{Request, Response};
use hyper::body::Incoming;
use std::sync::Arc;
use std::time::Duration;

/// One shared connection pool for every forwarded request, plus the dialer it uses (tunnels
/// and upgrades dial directly).
pub struct Upstream {
    pub dialer: Dialer,
    pool: pool::Pool,
    config: Arc<ArcSwap<Config>>,
    metrics: Arc<crate::telemetry::metrics::Metrics>,
}

impl Upstream {
    pub fn new(
        config: Arc<ArcSwap<Config>>,
        provider: Arc<rustls::crypto::CryptoProvider>,
        metrics: Arc<crate::telemetry::metrics::Metrics>,
    ) -> crate::Result<Upstream> {
        let dialer = Dialer::new(config.clone(), provider)?;
        let pool = pool::Pool::new(dialer.clone(), metrics.clone());
        Ok(Upstream {
            dialer,
            pool,
            config,
            metrics,
        })
    }

    /// Send `req` (absolute URI: it names the origin) and wait for the response head within
    /// `request_timeout`; the head is fitted to the protocol of the connection it goes on.
    /// `host` names the upstream in errors.
    pub async fn send(
        &self,
        req: Request<Body>,
        host: &str,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let after = self.config.load().upstream.request_timeout;
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(after, self.pool.send(req)).await;
        self.metrics.upstream_duration(started.elapsed());
        match result {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(UpstreamError::ResponseTimeout {
                host: host.to_string(),
                after,
            }),
        }
    }

    pub fn request_timeout(&self) -> Duration {
        self.config.load().upstream.request_timeout
    }
}
