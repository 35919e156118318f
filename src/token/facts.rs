//! The non-secret facts of a token response (org, user, instance; or the error), read from a
//! bounded copy of its body: the client still gets the bytes exactly as they came.

use crate::body::{empty_body, Body, Buffered, Limits, Stopped};
use crate::telemetry::events::ResponseFacts;
use bytes::Bytes;
use http::{HeaderMap, Response};
use std::time::Duration;

/// Token responses are small; past this a response streams on without being read.
const MAX_TOKEN_RESPONSE: usize = 256 * 1024;

/// Read a token response (up to `MAX_TOKEN_RESPONSE`, 256 KiB, and for at most `within`) for
/// its non-secret facts, and give back a response with the same bytes. An upstream that
/// stalls mid-body does not hold the response back: past `within` the client gets what came
/// so far and the rest as it comes, and the facts stay unknown.
pub async fn read_facts(resp: Response<Body>, within: Duration) -> (Response<Body>, ResponseFacts) {
    read_with(resp, within, ResponseFacts::from_json).await
}

/// [`read_facts`] with another reader of the (decoded) body: `T::default()` when the body
/// could not be read whole in time.
pub async fn read_with<T: Default>(
    resp: Response<Body>,
    within: Duration,
    parse: impl FnOnce(&[u8]) -> T,
) -> (Response<Body>, T) {
    let (parts, body) = resp.into_parts();
    let limits = Limits {
        deadline: Some(tokio::time::Instant::now() + within),
        ..Limits::max(MAX_TOKEN_RESPONSE)
    };
    match Buffered::read(body, limits).await {
        Ok(buffered) => {
            if buffered.stopped == Some(Stopped::Deadline) {
                tracing::debug!(after = ?within, "token response body still arriving; streaming it on unread");
            }
            let facts = if buffered.rest.is_none() {
                // Clients that accept gzip (python-requests does) get compressed answers:
                // decode a copy to read the facts; the client gets the bytes as they came.
                match decoded(&parts.headers, &buffered.data) {
                    Some(plain) => parse(&plain),
                    None => T::default(),
                }
            } else {
                T::default()
            };
            (Response::from_parts(parts, buffered.into_body()), facts)
        }
        Err(e) => {
            tracing::debug!(error = %e, "token response body ended with an error");
            (Response::from_parts(parts, empty_body()), T::default())
        }
    }
}

/// A successful token response read whole (up to `MAX_TOKEN_RESPONSE`, within `within`), for
/// the token cache: its head and body. One that is larger, slower or broken comes back as a
/// response to stream on (`Err`), with the same bytes.
pub async fn read_whole(
    resp: Response<Body>,
    within: Duration,
) -> Result<(http::response::Parts, Bytes), Response<Body>> {
    let (parts, body) = resp.into_parts();
    let limits = Limits {
        deadline: Some(tokio::time::Instant::now() + within),
        ..Limits::max(MAX_TOKEN_RESPONSE)
    };
    match Buffered::read(body, limits).await {
        Ok(buffered)
            if buffered.rest.is_none()
                && buffered.stopped.is_none()
                && buffered.trailers.is_none() =>
        {
            Ok((parts, buffered.data))
        }
        Ok(buffered) => Err(Response::from_parts(parts, buffered.into_body())),
        Err(e) => {
            tracing::debug!(error = %e, "token response body ended with an error");
            Err(Response::from_parts(parts, empty_body()))
        }
    }
}

/// The response body without its `Content-Encoding` (identity, gzip, deflate), bounded to
/// `MAX_TOKEN_RESPONSE` decoded bytes; `None` for other encodings or a broken stream.
pub(crate) fn decoded(
    headers: &HeaderMap,
    body: &Bytes,
) -> Option<std::borrow::Cow<'static, [u8]>> {
    use std::io::Read;
    let encoding = headers
        .get(http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    let mut plain = Vec::new();
    let limit = MAX_TOKEN_RESPONSE as u64;
    let read = match encoding.as_deref() {
        None | Some("identity") | Some("") => return Some(std::borrow::Cow::Owned(body.to_vec())),
        Some("gzip") | Some("x-gzip") => flate2::read::GzDecoder::new(&body[..])
            .take(limit)
            .read_to_end(&mut plain),
        Some("deflate") => flate2::read::ZlibDecoder::new(&body[..])
            .take(limit)
            .read_to_end(&mut plain),
        Some(_) => return None,
    };
    read.ok().map(|_| std::borrow::Cow::Owned(plain))
}
