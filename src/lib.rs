//! grantshift: an HTTP forward proxy that upgrades Salesforce OAuth username-password logins
//! in flight, and passes every other byte through unchanged.
//!
//! # Layout
//! Modules in the order a request meets them:
//!
//! - [`config`]: `grantshift.toml` → [`config::Config`], validated, with key-named errors.
//! - [`server`]: the accept loop, graceful shutdown that also drains tunnels and upgrades.
//! - [`connect`]: the HTTP/1.1 proxy front: `CONNECT` → tunnel or intercept; absolute-form `http://`.
//! - [`tunnel`]: the blind byte copy for hosts that are not intercepted.
//! - [`mitm`]: TLS termination for intercepted hosts: the CA, leaf certificates minted per host.
//! - [`service`]: the per-request path on intercepted connections.
//! - [`hop_by_hop`]: RFC 9110 §7.6.1 connection-specific header handling, and the request head
//!   fitted to the upstream hop's protocol (RFC 9113 §8.3.1, §8.2.3) (pure).
//! - [`upgrade`]: the token path: buffer, decide, rewrite, send, fall back, record.
//! - [`policy`]: rollout rules → observe / upgrade (flow, target) / unmapped (pure).
//! - [`oauth`]: token-request parsing and the grant rewrites, JWT signing (pure).
//! - [`upstream`]: the dialer (verified TLS, `connect_to`, typed connect errors) and the
//!   connection pool that fits each request to the protocol of the connection it picked.
//! - [`telemetry`]: events (JSON lines), metrics, the migration report.
//! - [`admin`]: `/healthz`, `/metrics`, `/report`, `/`.
#![forbid(unsafe_code)]

pub mod access;
pub mod admin;
pub mod config;
pub mod connect;
pub mod fault;
pub mod hop_by_hop;
pub mod idle;
pub mod mitm;
pub mod oauth;
pub mod policy;
pub mod server;
pub mod service;
pub mod telemetry;
pub mod tunnel;
pub mod upgrade;
pub mod upstream;

pub use config::Config;
pub use server::{Proxy, ProxyHandle, Reloader};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;

/// The body type of every request and response grantshift forwards or makes: the peer's
/// streaming body, or a small buffer of our own.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// Errors that stop grantshift from starting or serving.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Ca(#[from] mitm::ca::CaError),
    #[error("upstream TLS setup: {0}")]
    UpstreamTls(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A small in-memory body (error pages, our own responses).
pub fn full_body(bytes: impl Into<Bytes>) -> Body {
    use http_body_util::BodyExt;
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty_body() -> Body {
    use http_body_util::BodyExt;
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
