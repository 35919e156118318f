//! The body type every request and response uses, and the bodies grantshift builds around
//! it: small buffers of its own, a bounded read that can be replayed exactly ([`Buffered`]),
//! and a body that records a telemetry event once it has gone back ([`RecordOnEnd`]).

use crate::telemetry::events::{Event, EventSink};
use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use std::pin::Pin;
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

/// A body read up to a limit: the bytes read, any trailers, and (when over the limit) the
/// unread rest, so the whole body can still be forwarded exactly as it came.
pub struct Buffered<B> {
    pub data: Bytes,
    pub trailers: Option<HeaderMap>,
    /// The unread rest, when the body was longer than the limit.
    pub rest: Option<B>,
}

impl<B> Buffered<B>
where
    B: hyper::body::Body<Data = Bytes, Error = hyper::Error> + Unpin + Send + Sync + 'static,
{
    pub async fn read(mut body: B, limit: usize) -> Result<Buffered<B>, hyper::Error> {
        let mut data = BytesMut::new();
        let mut trailers = None;
        while let Some(frame) = body.frame().await {
            match frame?.into_data() {
                Ok(chunk) => {
                    data.extend_from_slice(&chunk);
                    if data.len() > limit {
                        return Ok(Buffered {
                            data: data.freeze(),
                            trailers: None,
                            rest: Some(body),
                        });
                    }
                }
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        trailers = Some(t);
                    }
                }
            }
        }
        Ok(Buffered {
            data: data.freeze(),
            trailers,
            rest: None,
        })
    }

    /// The same bytes (and trailers), then whatever was not read.
    pub fn into_body(self) -> Body {
        Replay {
            data: (!self.data.is_empty()).then_some(self.data),
            trailers: self.trailers,
            rest: self.rest,
        }
        .boxed()
    }
}

/// Replays a buffered body, then streams the unread rest.
struct Replay<B> {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
    rest: Option<B>,
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
                let mut hint = rest.size_hint();
                hint.set_lower(hint.lower() + buffered);
                if let Some(upper) = hint.upper() {
                    hint.set_upper(upper + buffered);
                }
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
