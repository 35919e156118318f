//! Why an upstream could not be reached, typed so the client gets the right status (403, 502
//! or 504) and a line naming the host and the cause.

use crate::body::Body;
use http::Response;
use std::io;
use std::time::Duration;

/// Why an upstream could not be reached. The status code the client sees follows from it.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot resolve {host}: {source}")]
    Resolve { host: String, source: io::Error },
    #[error("cannot connect to {host} ({addr}): {source}")]
    Connect {
        host: String,
        addr: String,
        source: io::Error,
    },
    #[error("TLS handshake with {host} failed: {source}")]
    Tls { host: String, source: io::Error },
    #[error("connecting to {host} timed out after {after:?}")]
    ConnectTimeout { host: String, after: Duration },
    #[error("{host} did not answer within {after:?}")]
    ResponseTimeout { host: String, after: Duration },
    #[error("{host} failed the request: {cause}")]
    Request { host: String, cause: String },
    /// The destination policy refused every address (`target` names them); nothing was
    /// dialled.
    #[error("destination {target} is not allowed ({reason})")]
    Refused {
        target: String,
        reason: &'static str,
    },
}

impl UpstreamError {
    /// 403 for a refused destination, 504 for timeouts, 502 for everything else (RFC 9110
    /// §15.5.4, §15.6.3, §15.6.5).
    pub fn status(&self) -> http::StatusCode {
        match self {
            UpstreamError::Refused { .. } => http::StatusCode::FORBIDDEN,
            UpstreamError::ConnectTimeout { .. } | UpstreamError::ResponseTimeout { .. } => {
                http::StatusCode::GATEWAY_TIMEOUT
            }
            _ => http::StatusCode::BAD_GATEWAY,
        }
    }

    /// The plain-text response a client gets: one line naming the host and the cause.
    pub fn to_response(&self) -> Response<Body> {
        crate::body::text_response(self.status(), &format!("grantshift: {self}"))
    }
}
