//! grantshift's test harness: fake upstreams, the proxy on port 0, and clients that go through
//! it. A workspace member of its own (`publish = false`), used by the integration tests and the
//! benchmarks as a dev-dependency and by the soak tool (`tools/soak`); it depends on grantshift
//! with the `fault-injection` feature on (the load tools run the release binary, built without).
//!
//! # Layout
//! - [`ca`]: a test certificate authority that issues leaf certificates for host lists.
//! - [`upstreams`]: the fake Salesforce (TLS, several hosts by SNI, h2 + http/1.1), a plain-HTTP
//!   twin of it, a tunnel-only TLS server with its own CA, a raw TCP echo server (also in a
//!   flavour for load), a server that accepts and never answers, and a closed port.
//! - [`fast_salesforce`]: a small fixed-answer fake Salesforce token endpoint for the load
//!   tools (the end-to-end benchmark, the soak tool), where the full fake would cost too much.
//! - [`routes`]: what the fake upstreams answer (`/echo`, `/bytes`, `/trailers`, `/ws`, `/hold`,
//!   and the Salesforce OAuth endpoints).
//! - [`salesforce`]: the fake's orgs, connected apps and users, and its token endpoint,
//!   `/services/data`, `/id` and the SOAP API's login side (`/services/Soap/…`) that behave
//!   like Salesforce's.
//! - [`logins`]: password-grant forms, `[[credentials]]` / `[[rollout]]` TOML, upstream checks.
//! - [`edges`]: real third-party servers (nginx, Apache httpd, h2o) as the TLS edge in front of
//!   the fake Salesforce, as Salesforce's own edge would be; their logs tell rejected requests.
//! - [`proxy`]: grantshift itself, configured against those upstreams, served in-process.
//! - [`bin`]: the `grantshift` binary: one-shot commands and a running proxy read from its JSON log.
//!   Only the root package's integration tests know where cargo built it, so they pass it in as
//!   a [`Binary`]. The load tools run the release binary as a [`ProxyProcess`].
//! - [`client`]: CONNECT through the proxy, TLS on top, HTTP/1.1 or HTTP/2 requests, raw exchanges.
//! - [`clients`]: real client programs (Python, Node.js, Java, Go, curl) pointed at grantshift,
//!   and grantshift instances a test configures in full.
//! - [`admin`]: the admin server from a test's side, its OpenMetrics text, `grantshift report`.
//! - [`faults`]: the hardening tests' leak checks, a process of its own for a test that counts
//!   file descriptors, and misbehaving upstreams.
//! - [`haproxy`]: Debian's HAProxy in TCP mode in front of grantshift replicas, health-checked
//!   on their `/readyz`; its stats socket tells a test when a server is marked DOWN.
//! - [`fleet`]: two (or more) `grantshift` binaries sharing one CA and one fake Salesforce
//!   behind HAProxy, as `docker compose --profile fleet` runs them.
//! - [`process`]: a process's memory and file descriptors from `/proc`, the open-file limit.
//!
//! Paths into the repository (`tests/fixtures`, `tests/clients`, `target/clients`) are resolved
//! from the repository root, the parent of this crate's directory: see [`repo_path`].

pub mod admin;
pub mod bin;
pub mod ca;
pub mod client;
pub mod clients;
pub mod edges;
pub mod fast_salesforce;
pub mod faults;
pub mod fleet;
pub mod haproxy;
pub mod logins;
pub mod process;
pub mod proxy;
pub mod redis;
pub mod routes;
pub mod salesforce;
pub mod upstreams;

pub use bin::{
    clean_env, profile_dir, run_to_end, strip_ansi, Binary, BinaryProxy, Finished, LoadConfig,
    ProxyProcess, RunningBinary,
};
pub use ca::TestCa;
pub use client::*;
pub use logins::*;
pub use proxy::{post_form, read_events, TestProxy, TestProxyBuilder, Upstreams, EVENTS_FILE};
pub use routes::{Recorded, TRAILER_CHUNKS};
pub use salesforce::{acme, acme_qa, unix_now, DecodedJwt, LOGIN_HOST, TEST_HOST, TOKEN_PATH};
pub use upstreams::*;

use sha2::{Digest, Sha256};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The hosts the fake Salesforce answers, each with its own certificate chosen by SNI.
pub const SALESFORCE_HOSTS: &[&str] = &[
    "login.salesforce.com",
    "test.salesforce.com",
    "acme.my.salesforce.com",
    "acme--qa.sandbox.my.salesforce.com",
    "other.my.salesforce.com",
];

/// The name the tunnel-only server presents (not intercepted by default).
pub const TUNNEL_HOST: &str = "tunnel.example";
/// A My Domain name (so it is intercepted) that is routed to the tunnel server, whose
/// certificate grantshift does not trust.
pub const UNTRUSTED_HOST: &str = "untrusted.my.salesforce.com";
/// The name the raw TCP echo server is reached by through a blind tunnel.
pub const ECHO_HOST: &str = "echo.example";

/// The proxy variables, in both spellings: removed from the environment of every process a test
/// starts (the binary, real clients, curl), which is pointed at a proxy explicitly or at none,
/// never at one the machine happens to set.
pub const PROXY_VARS: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
];

/// A path in the repository (testkit's own manifest directory is `testkit/` in it).
pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit/ is in the repository")
        .join(relative)
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// `n` deterministic pseudo-random bytes (splitmix64): what `/bytes?n=N` serves, so a test can
/// recompute the expected body itself.
pub fn pseudo_random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// The seed `/bytes` uses.
pub const BYTES_SEED: u64 = 0x6772_616e_7473_6869;

/// Await `fut`, failing the test if it has not finished within `secs` seconds. This is a hang
/// guard (the spec says "never a hang"), not a performance assertion: the bounds are generous.
pub async fn within<T>(secs: u64, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: still not done after {secs}s"),
    }
}

/// Install ring as the process-wide rustls provider (tests build their configs with an explicit
/// provider anyway; this keeps any library default from picking another one).
pub fn init_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
