//! grantshift: an HTTP forward proxy that upgrades Salesforce OAuth username-password logins
//! in flight, and passes every other byte through unchanged.
//!
//! # Layout
//! Modules in the order a request meets them; each imports only modules listed after it.
//!
//! - [`proxy`]: [`Proxy`] assembled: the shared [`state::State`], the three listeners,
//!   graceful shutdown, [`ProxyHandle`], [`Reloader`] (SIGHUP).
//! - [`preflight`]: the checks `run` makes before it creates anything, and `check` makes
//!   alone (CA files, events file, upstream roots; CA warnings).
//! - [`admin`]: `/healthz`, `/readyz`, `/metrics`, `/report`, `/`.
//! - [`server`]: the one accept loop every listener uses (connection cap, `TCP_NODELAY`,
//!   backoff), and binding with a deep accept queue.
//! - [`connect`]: the HTTP/1.1 proxy front: `CONNECT` → tunnel or intercept; absolute-form
//!   `http://`.
//! - [`tunnel`]: the blind byte copy for hosts that are not intercepted.
//! - [`mitm`]: TLS termination for intercepted hosts, with a leaf certificate for the name.
//! - [`service`]: one decrypted request, dispatched: [`websocket`] | [`token`] | [`forward`].
//! - [`websocket`]: HTTP `Upgrade` over a dedicated HTTP/1.1 upstream connection.
//! - [`token`]: the token path: [`token::plan`] decides (pure), [`token`] executes (buffer,
//!   send, fall back, record); [`token::facts`] reads token responses.
//! - [`forward`]: forward unchanged; upstream errors become 502/504.
//! - [`state`]: what every connection shares (config snapshot, CA, upstream, telemetry,
//!   password verifiers, the token broker, tasks).
//! - [`conn`]: one client connection (address, idle clock, connection slot, tracing span) and
//!   its [`conn::Target`].
//! - [`tasks`]: spawn, drain and close every connection task.
//! - [`verifiers`]: credential binding: each set's password verifier (configured, or learned
//!   into the state file), the check an upgrade waits for (Argon2 off the async threads,
//!   bounded, throttled; a keyed digest for passwords already accepted).
//! - [`broker`]: the token broker: upgraded token responses cached per credentials (single
//!   flight, negative entries, eviction by TTL, capacity, 401, revoke and reload).
//! - [`policy`]: rollout rules → observe / upgrade (flow, target) / unmapped (pure).
//! - [`soap`]: SOAP `login()` detection and the answers built in its place (pure; not wired yet).
//! - [`oauth`]: token-request parsing and the grant rewrites, JWT signing (pure).
//! - [`hop_by_hop`]: RFC 9110 §7.6.1 connection-specific header handling, and the request head
//!   fitted to the upstream hop's protocol (RFC 9113 §8.3.1, §8.2.3) (pure).
//! - [`upstream`]: the dialer (verified TLS, `connect_to`, typed connect errors) and the
//!   connection pool that fits each request to the protocol of the connection it picked.
//! - [`destination`]: which addresses may be dialled for a client: no loopback, link-local,
//!   unspecified or own listener unless allowed (pure).
//! - [`ca`]: grantshift's CA (name-constrained; renewal) and the bounded cache of leaf
//!   certificates it mints.
//! - [`body`]: the body type, bounded reads that replay exactly, the event-recording body.
//! - [`telemetry`]: events (JSON lines), metrics, the migration report.
//! - [`access`]: `allow_clients` and proxy authentication.
//! - [`idle`]: idle timeouts on client connections.
//! - [`cluster`]: fleet mode: shared state on Redis, every call bounded and optional (down:
//!   local state serves), values sealed with AES-256-GCM.
//! - [`config`]: `grantshift.toml` → [`Config`], validated, with key-named errors.
//! - [`password`]: passwords and their Argon2id verifiers (OWASP parameters), the keyed
//!   digest (pure).
//! - [`fault`]: test-only panic points (nothing in a normal build).
//! - [`healthcheck`]: `grantshift healthcheck`, the container's probe of the admin server.

pub mod access;
pub mod admin;
pub mod body;
pub mod broker;
pub mod ca;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod connect;
pub mod destination;
pub mod fault;
pub mod forward;
pub mod healthcheck;
pub mod hop_by_hop;
pub mod idle;
pub mod mitm;
pub mod oauth;
pub mod password;
pub mod policy;
pub mod preflight;
pub mod proxy;
pub mod server;
pub mod service;
pub mod soap;
pub mod state;
pub mod tasks;
pub mod telemetry;
pub mod token;
pub mod tunnel;
pub mod upstream;
pub mod verifiers;
pub mod websocket;

pub use body::Body;
pub use config::Config;
pub use proxy::{Proxy, ProxyHandle, Reloader};

/// Errors that stop grantshift from starting or serving.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Ca(#[from] ca::CaError),
    #[error(transparent)]
    State(#[from] verifiers::StoreError),
    #[error("{0}")]
    Cluster(String),
    #[error("upstream TLS setup: {0}")]
    UpstreamTls(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
