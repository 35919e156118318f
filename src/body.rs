//! The body type every request and response uses, and the bodies grantshift builds around
//! it: small buffers of its own, a bounded read that can be replayed exactly ([`Buffered`]),
//! and a body that records a telemetry event once it has gone back ([`RecordOnEnd`]).

use crate::telemetry::events::{Event, EventSink};
use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use prometheus_client::metrics::gauge::Gauge;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

/// The body type of every request and response grantshift forwards or makes: the peer's
/// streaming body, or a small buffer of our own.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// A small in-memory body (error pages, our own responses).
pub fn full_body(bytes: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty_body() -> Body {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed()
}

/// A plain-text response whose body is one line: what a client sees when grantshift itself
/// answers (403, 400, 502, 504).
pub fn text_response(status: http::StatusCode, line: &str) -> http::Response<Body> {
    let mut resp = http::Response::new(full_body(format!("{line}\n")));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Why a bounded read ([`Buffered::read`]) stopped before the body's end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// More than `max` bytes.
    TooLarge,
    /// The deadline passed before the body ended.
    Deadline,
    /// The shared [`MemoryBudget`] had no room for the next chunk.
    Budget,
}

/// The bounds of one [`Buffered::read`].
pub struct Limits<'a> {
    /// Read at most this many bytes (a body longer than this stops as [`Stopped::TooLarge`]).
    pub max: usize,
    /// Stop waiting for the body at this instant ([`Stopped::Deadline`]).
    pub deadline: Option<tokio::time::Instant>,
    /// Every byte read is reserved in this budget first ([`Stopped::Budget`] when it is full);
    /// the reservation lasts as long as the [`Buffered`].
    pub budget: Option<&'a MemoryBudget>,
}

impl Limits<'_> {
    /// At most `max` bytes, no deadline, no shared budget.
    pub fn max(max: usize) -> Limits<'static> {
        Limits {
            max,
            deadline: None,
            budget: None,
        }
    }
}

/// A body read up to its [`Limits`]: the bytes read, any trailers, and (when the read stopped
/// early) the unread rest, so the whole body can still be forwarded exactly as it came.
pub struct Buffered<B> {
    pub data: Bytes,
    pub trailers: Option<HeaderMap>,
    /// The unread rest, when the read stopped before the body's end.
    pub rest: Option<B>,
    /// Why the read stopped early (`Some` exactly when `rest` is).
    pub stopped: Option<Stopped>,
    /// The budget held for `data`, given back when this (or the body it becomes) is dropped.
    reserved: Option<Reserved>,
}

impl<B> Buffered<B>
where
    B: hyper::body::Body<Data = Bytes, Error = hyper::Error> + Unpin + Send + Sync + 'static,
{
    pub async fn read(mut body: B, limits: Limits<'_>) -> Result<Buffered<B>, hyper::Error> {
        let mut data = BytesMut::new();
        let mut trailers = None;
        let mut reserved = limits.budget.map(MemoryBudget::reserve_none);
        let stopped = loop {
            let next = match limits.deadline {
                // Dropping an unfinished `frame()` loses nothing: it only polls the body.
                Some(at) => match tokio::time::timeout_at(at, body.frame()).await {
                    Ok(next) => next,
                    Err(_) => break Some(Stopped::Deadline),
                },
                None => body.frame().await,
            };
            let Some(frame) = next else { break None };
            match frame?.into_data() {
                Ok(chunk) => {
                    let room = reserved.as_mut().is_none_or(|r| r.grow(chunk.len()));
                    // The chunk is kept either way: it is part of what gets forwarded.
                    data.extend_from_slice(&chunk);
                    if !room {
                        break Some(Stopped::Budget);
                    }
                    if data.len() > limits.max {
                        break Some(Stopped::TooLarge);
                    }
                }
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        trailers = Some(t);
                    }
                }
            }
        };
        Ok(Buffered {
            data: data.freeze(),
            trailers,
            rest: stopped.is_some().then_some(body),
            stopped,
            reserved,
        })
    }

    /// The same bytes (and trailers), then whatever was not read.
    pub fn into_body(self) -> Body {
        Replay {
            data: (!self.data.is_empty()).then_some(self.data),
            trailers: self.trailers,
            rest: self.rest,
            reserved: self.reserved,
        }
        .boxed()
    }
}

/// Replays a buffered body, then streams the unread rest.
struct Replay<B> {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
    rest: Option<B>,
    /// Given back once the buffered bytes have been handed on.
    reserved: Option<Reserved>,
}

impl<B> hyper::body::Body for Replay<B>
where
    B: hyper::body::Body<Data = Bytes, Error = hyper::Error> + Unpin,
{
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(data) = self.data.take() {
            self.reserved = None;
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if let Some(rest) = self.rest.as_mut() {
            return Pin::new(rest).poll_frame(cx);
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
            && self.trailers.is_none()
            && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let buffered = self.data.as_ref().map_or(0, |d| d.len() as u64);
        match &self.rest {
            // An exact size makes hyper send Content-Length, and an HTTP/1.1 body with a
            // length has no room for trailers: with trailers, the size stays open (chunked).
            None if self.trailers.is_some() => {
                let mut hint = SizeHint::new();
                hint.set_lower(buffered);
                hint
            }
            None => SizeHint::with_exact(buffered),
            Some(rest) => {
                let rest = rest.size_hint();
                // Upper first: `set_lower` asserts the new lower bound is within the upper.
                let mut hint = SizeHint::new();
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper + buffered);
                }
                hint.set_lower(rest.lower() + buffered);
                hint
            }
        }
    }
}

/// A response body that records its event when it is dropped: hyper drops a body once it has
/// written it to the client (or the client went away), which is when docs/operating.md, "The events file" writes events.
pub struct RecordOnEnd {
    inner: Body,
    pending: Option<(Event, EventSink, Instant)>,
}

impl RecordOnEnd {
    /// Wrap `inner`; `event.latency_ms` is measured from `started` to the end of the body.
    pub fn wrap(inner: Body, event: Event, sink: EventSink, started: Instant) -> Body {
        RecordOnEnd {
            inner,
            pending: Some((event, sink, started)),
        }
        .boxed()
    }
}

impl hyper::body::Body for RecordOnEnd {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for RecordOnEnd {
    fn drop(&mut self) {
        if let Some((mut event, sink, started)) = self.pending.take() {
            event.latency_ms = (started.elapsed().as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0;
            sink.record(event);
        }
    }
}

/// One budget of memory shared by every buffered token request (`proxy.token_body_budget`):
/// a client that opens many slow token requests (each up to `max_token_body`, many per HTTP/2
/// connection) cannot make grantshift hold more than this. The bytes in use are the gauge
/// `grantshift_token_body_bytes`.
pub struct MemoryBudget {
    total: usize,
    used: Arc<AtomicUsize>,
    gauge: Gauge,
}

impl MemoryBudget {
    pub fn new(total: usize, gauge: Gauge) -> MemoryBudget {
        MemoryBudget {
            total,
            used: Arc::new(AtomicUsize::new(0)),
            gauge,
        }
    }

    fn reserve_none(&self) -> Reserved {
        Reserved {
            total: self.total,
            used: self.used.clone(),
            gauge: self.gauge.clone(),
            held: 0,
        }
    }

    /// Bytes reserved now.
    pub fn in_use(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// Bytes held in a [`MemoryBudget`] until dropped.
struct Reserved {
    total: usize,
    used: Arc<AtomicUsize>,
    gauge: Gauge,
    held: usize,
}

impl Reserved {
    /// Reserve `n` more bytes; `false` (nothing reserved) when the budget has no room.
    fn grow(&mut self, n: usize) -> bool {
        let total = self.total;
        let fits = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&after| after <= total)
            })
            .is_ok();
        if fits {
            self.held += n;
            self.gauge.inc_by(n as i64);
        }
        fits
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        if self.held > 0 {
            self.used.fetch_sub(self.held, Ordering::AcqRel);
            self.gauge.dec_by(self.held as i64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    fn chunks(parts: &[&'static [u8]]) -> Body {
        let frames: Vec<Result<Frame<Bytes>, hyper::Error>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames)).boxed()
    }

    async fn replayed<B>(b: Buffered<B>) -> Vec<u8>
    where
        B: hyper::body::Body<Data = Bytes, Error = hyper::Error> + Unpin + Send + Sync + 'static,
    {
        b.into_body().collect().await.unwrap().to_bytes().to_vec()
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_read_whole() {
        let b = Buffered::read(chunks(&[b"ab", b"cd"]), Limits::max(4))
            .await
            .unwrap();
        assert_eq!((&b.data[..], b.stopped), (&b"abcd"[..], None));
        assert!(b.rest.is_none());
    }

    #[tokio::test]
    async fn a_longer_body_stops_and_still_replays_every_byte() {
        let b = Buffered::read(chunks(&[b"ab", b"cd", b"ef"]), Limits::max(3))
            .await
            .unwrap();
        assert_eq!(b.stopped, Some(Stopped::TooLarge));
        assert_eq!(replayed(b).await, b"abcdef");
    }

    #[tokio::test]
    async fn a_full_budget_stops_the_read_and_the_reservation_ends_with_the_body() {
        let budget = MemoryBudget::new(5, Gauge::default());
        let first = Buffered::read(
            chunks(&[b"abcd"]),
            Limits {
                budget: Some(&budget),
                ..Limits::max(100)
            },
        )
        .await
        .unwrap();
        assert_eq!((first.stopped, budget.in_use()), (None, 4));
        let second = Buffered::read(
            chunks(&[b"xy", b"z"]),
            Limits {
                budget: Some(&budget),
                ..Limits::max(100)
            },
        )
        .await
        .unwrap();
        assert_eq!(second.stopped, Some(Stopped::Budget));
        assert_eq!(budget.in_use(), 4, "nothing reserved past the budget");
        assert_eq!(replayed(second).await, b"xyz");
        drop(first);
        assert_eq!(budget.in_use(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stalls_stops_at_the_deadline_and_streams_the_rest() {
        let (mut tx, rx) = http_body_util::channel::Channel::<Bytes, hyper::Error>::new(4);
        tx.send_data(Bytes::from_static(b"ab")).await.unwrap();
        let at = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        let b = Buffered::read(
            rx,
            Limits {
                deadline: Some(at),
                ..Limits::max(100)
            },
        )
        .await
        .unwrap();
        assert_eq!(b.stopped, Some(Stopped::Deadline));
        assert_eq!(&b.data[..], b"ab");
        tx.send_data(Bytes::from_static(b"cd")).await.unwrap();
        drop(tx);
        assert_eq!(replayed(b).await, b"abcd");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_of_known_length_stopped_early_is_replayed_with_its_whole_length() {
        let (mut tx, rx) = http_body_util::channel::Channel::<Bytes, hyper::Error>::new(4);
        tx.send_data(Bytes::from_static(b"ab")).await.unwrap();
        // What a `Content-Length: 4` body says of itself with 2 bytes still to come.
        struct Known<B>(B);
        impl<B: hyper::body::Body + Unpin> hyper::body::Body for Known<B> {
            type Data = B::Data;
            type Error = B::Error;
            fn poll_frame(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
                Pin::new(&mut self.0).poll_frame(cx)
            }
            fn size_hint(&self) -> SizeHint {
                SizeHint::with_exact(2)
            }
        }
        let at = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
        let b = Buffered::read(
            Known(rx),
            Limits {
                deadline: Some(at),
                ..Limits::max(100)
            },
        )
        .await
        .unwrap();
        let body = b.into_body();
        assert_eq!(hyper::body::Body::size_hint(&body).exact(), Some(4));
    }

    #[tokio::test]
    async fn an_exact_body_is_replayed_with_its_length() {
        let b = Buffered::read(
            Full::new(Bytes::from_static(b"abc"))
                .map_err(|n| match n {})
                .boxed(),
            Limits::max(3),
        )
        .await
        .unwrap();
        let body = b.into_body();
        assert_eq!(hyper::body::Body::size_hint(&body).exact(), Some(3));
    }
}
