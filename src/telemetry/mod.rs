//! Migration telemetry: events now; metrics and the report build on them.

pub mod events;
pub mod metrics;
pub mod report;

use crate::Body;
use bytes::Bytes;
use events::{Event, EventSink};
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

/// A response body that records its event when it is dropped: hyper drops a body once it has
/// written it to the client (or the client went away), which is when README "Seeing the migration" writes events.
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
