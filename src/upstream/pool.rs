//! The upstream connection pool: per origin (scheme, host, port), one shared HTTP/2
//! connection or a stack of idle HTTP/1.1 connections, each dialled by [`Dialer`].
//!
//! Why not a generic pooled client: the request head depends on the hop's protocol (no `Host`
//! over HTTP/2, one `Cookie` over HTTP/1.1, see [`hop_by_hop::fit_to_hop`]), and only the
//! pool knows which protocol the connection it picked speaks before the head is written. It
//! also never races a new connection against an idle one, so under load it opens one
//! connection per concurrent request at most and reuses them.
//!
//! - Checkout: the live HTTP/2 connection, else the most recently idled HTTP/1.1 one that
//!   is still open, else a new connection (ALPN decides which). While one request dials an
//!   origin that speaks (or may speak) HTTP/2, concurrent requests wait for that connection
//!   instead of each opening one; an origin known to speak HTTP/1.1 gets parallel dials.
//! - A request that a reused connection refused before writing it (the server had closed
//!   it) is retried once, on a connection dialled for it; nothing written is ever sent twice.
//! - An HTTP/1.1 connection goes back to the pool when its response body has been read to
//!   the end; one whose body was abandoned is closed.
//! - Connections idle longer than `pool_idle_timeout` are closed by a sweeper task that
//!   runs only while the pool holds connections.

use super::{Alpn, Dialer, UpstreamError, UpstreamStream};
use crate::body::Body;
use crate::hop_by_hop::{self, Hop};
use crate::telemetry::metrics::Metrics;
use http::uri::Scheme;
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;
use tokio::sync::watch;

/// Where a pooled connection goes. Host names are compared case-insensitively.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Origin {
    tls: bool,
    host: String,
    port: u16,
}

impl Origin {
    fn of(uri: &Uri) -> Option<Origin> {
        let tls = uri.scheme() == Some(&Scheme::HTTPS);
        let host = uri.host()?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Some(Origin {
            tls,
            host: host.to_ascii_lowercase(),
            port: uri.port_u16().unwrap_or(if tls { 443 } else { 80 }),
        })
    }

    fn scheme(&self) -> Scheme {
        if self.tls {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        }
    }

    /// `host[:port]`, the port only when it is not the scheme's default.
    fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == if self.tls { 443 } else { 80 } {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// A connection ready for one request.
enum Conn {
    H1(http1::SendRequest<Body>),
    H2(http2::SendRequest<Body>),
}

impl Conn {
    fn hop(&self) -> Hop {
        match self {
            Conn::H1(_) => Hop::Http1,
            Conn::H2(_) => Hop::Http2,
        }
    }
}

struct IdleH1 {
    sender: http1::SendRequest<Body>,
    since: Instant,
}

struct SharedH2 {
    sender: http2::SendRequest<Body>,
    last_used: Instant,
}

#[derive(Default)]
struct Entry {
    h2: Option<SharedH2>,
    h1: Vec<IdleH1>,
    /// A dial in flight that requests may wait for (its id, and a receiver that ends when
    /// that dial has finished either way).
    dialling: Option<(u64, watch::Receiver<()>)>,
    /// The last dial here negotiated HTTP/1.1: concurrent requests need a connection each.
    speaks_http1: bool,
}

impl Entry {
    fn is_empty(&self) -> bool {
        self.h2.is_none() && self.h1.is_empty() && self.dialling.is_none()
    }
}

/// What a request gets from the pool.
enum Checkout {
    Conn(Conn),
    /// Another request is dialling an origin that speaks, or may speak, HTTP/2: its
    /// connection will be shared, so wait for that dial instead of opening another.
    Wait(watch::Receiver<()>),
    /// Dial a new connection (the guard ends the wait of requests that queued behind it).
    Dial(DialGuard),
}

/// Held while a request dials; dropping it (the dial finished or was abandoned) lets the
/// requests waiting for it check out again.
struct DialGuard {
    pool: Weak<Inner>,
    origin: Origin,
    id: u64,
    _done: watch::Sender<()>,
}

impl Drop for DialGuard {
    fn drop(&mut self) {
        let Some(inner) = self.pool.upgrade() else {
            return;
        };
        let mut state = inner.state.lock().expect("pool lock");
        if let Some(entry) = state.entries.get_mut(&self.origin) {
            if entry
                .dialling
                .as_ref()
                .is_some_and(|(id, _)| *id == self.id)
            {
                entry.dialling = None;
            }
            // A failed dial leaves nothing to keep (origins that never answer add up).
            if entry.is_empty() {
                state.entries.remove(&self.origin);
            }
        }
    }
}

#[derive(Default)]
struct State {
    entries: HashMap<Origin, Entry>,
    sweeping: bool,
    next_dial: u64,
}

struct Inner {
    dialer: Dialer,
    metrics: Arc<Metrics>,
    state: Mutex<State>,
}

/// The pool. Cheap to clone.
#[derive(Clone)]
pub(super) struct Pool {
    inner: Arc<Inner>,
}

impl Pool {
    pub(super) fn new(dialer: Dialer, metrics: Arc<Metrics>) -> Pool {
        Pool {
            inner: Arc::new(Inner {
                dialer,
                metrics,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Send `req` (absolute URI: it names the origin) on a pooled or new connection, its
    /// head fitted to that connection's protocol; the response head comes back.
    pub(super) async fn send(
        &self,
        req: Request<Body>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let host = req.uri().host().unwrap_or_default().to_string();
        let origin = Origin::of(req.uri()).ok_or_else(|| UpstreamError::Request {
            host: host.clone(),
            cause: format!("no host in the request target {}", req.uri()),
        })?;
        let (mut parts, body) = req.into_parts();
        let mut body = Some(body);
        let mut retried = false;
        loop {
            let (conn, reused) = match self.checkout(&origin, retried) {
                Checkout::Conn(conn) => (conn, true),
                Checkout::Wait(mut dial) => {
                    // Ends (with an error: the sender is gone) when that dial is done.
                    let _ = dial.changed().await;
                    continue;
                }
                Checkout::Dial(guard) => {
                    let conn = self.connect(&origin).await;
                    drop(guard);
                    (conn?, false)
                }
            };
            if conn.hop() == Hop::Http2 {
                if let Some(codings) = hop_by_hop::transfer_codings(&parts.headers) {
                    // hyper would drop the field and send the coded bytes as the content.
                    return Err(UpstreamError::Request {
                        host: origin.host.clone(),
                        cause: format!(
                            "it speaks HTTP/2, which cannot carry the request's Transfer-Encoding ({})",
                            codings.join(", ")
                        ),
                    });
                }
            }
            hop_by_hop::fit_to_hop(
                &mut parts,
                conn.hop(),
                &origin.scheme(),
                &origin.authority(),
            );
            let req = Request::from_parts(parts, body.take().expect("body present"));
            let mut failed = match conn {
                Conn::H2(mut sender) => match sender.try_send_request(req).await {
                    Ok(resp) => return Ok(resp),
                    Err(e) => e,
                },
                Conn::H1(mut sender) => match sender.try_send_request(req).await {
                    Ok(resp) => {
                        self.idle_when_done(origin, sender);
                        return Ok(resp);
                    }
                    Err(e) => e,
                },
            };
            match failed.take_message() {
                // Never written: a reused connection the server had closed meanwhile.
                Some(unsent) if reused && !retried => {
                    retried = true;
                    let (p, b) = unsent.into_parts();
                    parts = p;
                    body = Some(b);
                }
                _ => {
                    let e = failed.into_error();
                    let mut cause = e.to_string();
                    if let Some(inner) = std::error::Error::source(&e) {
                        cause = format!("{cause}: {inner}");
                    }
                    return Err(UpstreamError::Request { host, cause });
                }
            }
        }
    }

    /// A live pooled connection for `origin`; else a dial to wait for (an origin not known
    /// to speak only HTTP/1.1, being dialled by another request); else a dial of our own.
    /// `fresh`: only a dial of our own (the retry after a reused connection failed).
    fn checkout(&self, origin: &Origin, fresh: bool) -> Checkout {
        let mut state = self.inner.state.lock().expect("pool lock");
        let id = state.next_dial;
        if fresh {
            // Not recorded as the dial others wait for: theirs may still be in flight.
            let (done, _) = watch::channel(());
            return Checkout::Dial(DialGuard {
                pool: Weak::new(),
                origin: origin.clone(),
                id,
                _done: done,
            });
        }
        let entry = state.entries.entry(origin.clone()).or_default();
        if let Some(h2) = &mut entry.h2 {
            if h2.sender.is_ready() {
                h2.last_used = Instant::now();
                return Checkout::Conn(Conn::H2(h2.sender.clone()));
            }
            entry.h2 = None;
        }
        while let Some(idle) = entry.h1.pop() {
            if idle.sender.is_ready() {
                return Checkout::Conn(Conn::H1(idle.sender));
            }
        }
        if !entry.speaks_http1 {
            if let Some((_, dial)) = &entry.dialling {
                return Checkout::Wait(dial.clone());
            }
        }
        let (done, waiting) = watch::channel(());
        entry.dialling = Some((id, waiting));
        state.next_dial += 1;
        Checkout::Dial(DialGuard {
            pool: Arc::downgrade(&self.inner),
            origin: origin.clone(),
            id,
            _done: done,
        })
    }

    /// Dial `origin` and handshake the protocol ALPN chose; an HTTP/2 connection is shared
    /// from then on.
    async fn connect(&self, origin: &Origin) -> Result<Conn, UpstreamError> {
        let stream = if origin.tls {
            UpstreamStream::Tls(Box::new(
                self.inner
                    .dialer
                    .tls(&origin.host, origin.port, Alpn::Any)
                    .await?,
            ))
        } else {
            UpstreamStream::Plain(self.inner.dialer.tcp(&origin.host, origin.port).await?)
        };
        let h2 = matches!(&stream, UpstreamStream::Tls(tls) if tls.get_ref().1.alpn_protocol() == Some(b"h2"));
        let handshake_failed = |e: hyper::Error| UpstreamError::Request {
            host: origin.host.clone(),
            cause: format!("handshake: {e}"),
        };
        let io = TokioIo::new(stream);
        if h2 {
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(io)
                .await
                .map_err(handshake_failed)?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "upstream HTTP/2 connection ended with an error");
                }
            });
            self.inner.metrics.upstream_connection("h2");
            let mut state = self.inner.state.lock().expect("pool lock");
            let entry = state.entries.entry(origin.clone()).or_default();
            entry.speaks_http1 = false;
            // Requests that did not wait (one dial was abandoned) may have dialled too:
            // keep one connection to share.
            if entry.h2.as_ref().is_none_or(|h2| !h2.sender.is_ready()) {
                entry.h2 = Some(SharedH2 {
                    sender: sender.clone(),
                    last_used: Instant::now(),
                });
            }
            self.start_sweeper(&mut state);
            Ok(Conn::H2(sender))
        } else {
            let (sender, conn) = http1::Builder::new()
                // Response field names keep their case on the way back to an HTTP/1.1 client.
                .preserve_header_case(true)
                .handshake(io)
                .await
                .map_err(handshake_failed)?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "upstream HTTP/1.1 connection ended with an error");
                }
            });
            self.inner.metrics.upstream_connection("http/1.1");
            let mut state = self.inner.state.lock().expect("pool lock");
            state
                .entries
                .entry(origin.clone())
                .or_default()
                .speaks_http1 = true;
            Ok(Conn::H1(sender))
        }
    }

    /// Put an HTTP/1.1 connection back once its response body has been read to the end
    /// (`ready` fails instead if the connection closes or the body is abandoned).
    fn idle_when_done(&self, origin: Origin, mut sender: http1::SendRequest<Body>) {
        let pool = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            if sender.ready().await.is_err() {
                return;
            }
            let Some(inner) = pool.upgrade() else { return };
            let mut state = inner.state.lock().expect("pool lock");
            state.entries.entry(origin).or_default().h1.push(IdleH1 {
                sender,
                since: Instant::now(),
            });
            Pool {
                inner: inner.clone(),
            }
            .start_sweeper(&mut state);
        });
    }

    /// Start the idle sweeper unless it runs already.
    fn start_sweeper(&self, state: &mut State) {
        if state.sweeping {
            return;
        }
        state.sweeping = true;
        tokio::spawn(sweep(Arc::downgrade(&self.inner)));
    }
}

/// Close connections idle past `pool_idle_timeout`, sleeping until the next one is due; end
/// when the pool is empty (the next idled connection starts a new sweeper).
async fn sweep(pool: Weak<Inner>) {
    loop {
        let next = {
            let Some(inner) = pool.upgrade() else { return };
            let timeout = inner.dialer.config.load().upstream.pool_idle_timeout;
            let now = Instant::now();
            let mut state = inner.state.lock().expect("pool lock");
            let mut next: Option<Instant> = None;
            let mut due = |at: Instant| next = Some(next.map_or(at, |n| n.min(at)));
            state.entries.retain(|_, entry| {
                if let Some(h2) = &entry.h2 {
                    if !h2.sender.is_ready() || now.duration_since(h2.last_used) >= timeout {
                        entry.h2 = None;
                    } else {
                        due(h2.last_used + timeout);
                    }
                }
                entry.h1.retain(|idle| {
                    let keep = idle.sender.is_ready() && now.duration_since(idle.since) < timeout;
                    if keep {
                        due(idle.since + timeout);
                    }
                    keep
                });
                !entry.is_empty()
            });
            if next.is_none() {
                state.sweeping = false;
                return;
            }
            next
        };
        if let Some(at) = next {
            tokio::time::sleep_until(at.into()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_is_scheme_host_port_with_default_ports_and_lowercase_hosts() {
        let o = Origin::of(&"https://Login.Salesforce.com/x".parse().unwrap()).unwrap();
        assert_eq!(
            o,
            Origin {
                tls: true,
                host: "login.salesforce.com".into(),
                port: 443
            }
        );
        assert_eq!(o.authority(), "login.salesforce.com");
        let o = Origin::of(&"http://[::1]:8080/".parse().unwrap()).unwrap();
        assert_eq!((o.tls, o.host.as_str(), o.port), (false, "::1", 8080));
        assert_eq!(o.authority(), "[::1]:8080");
        assert!(Origin::of(&"/relative".parse().unwrap()).is_none());
    }
}
