//! Forwarding unchanged: a request goes upstream with only its hop-by-hop fields removed, and
//! the response comes back the same way; an upstream that cannot be reached becomes the
//! client's 502 or 504, a destination the policy refuses its 403.

use crate::body::Body;
use crate::hop_by_hop;
use crate::state::State;
use crate::upstream::UpstreamError;
use http::{Request, Response};
use hyper::body::Incoming;

/// Send `req` (already fitted: hop-by-hop fields stripped, absolute URI) to `host` and give
/// back the response the client gets.
pub async fn forward(req: Request<Body>, host: &str, state: &State) -> Response<Body> {
    match state.upstream.send(req, host).await {
        Ok(resp) => to_client(resp),
        Err(e) => upstream_failed(e),
    }
}

/// The upstream response as the client gets it: hop-by-hop fields stripped, body streamed.
pub fn to_client(resp: Response<Incoming>) -> Response<Body> {
    use http_body_util::BodyExt;
    let (mut parts, body) = resp.into_parts();
    hop_by_hop::strip(&mut parts.headers);
    parts.version = http::Version::HTTP_11;
    Response::from_parts(parts, body.boxed())
}

/// Log an upstream failure and turn it into the client's 403/502/504. A refused destination
/// is the policy working (INFO); a failure to reach an allowed one is a WARN.
pub fn upstream_failed(e: UpstreamError) -> Response<Body> {
    if let UpstreamError::Refused { .. } = e {
        tracing::info!(error = %e, "destination refused");
    } else {
        tracing::warn!(status = e.status().as_u16(), error = %e, "upstream request failed");
    }
    e.to_response()
}
