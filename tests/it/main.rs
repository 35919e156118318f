//! The integration tests, one test binary (`it`): each module is one behaviour of grantshift,
//! tested from outside the crate with the harness in `testkit/` (the fake upstreams, the proxy
//! in-process or as the built binary, real clients). One binary links testkit and grantshift
//! once instead of once per behaviour; the tests share one process, so a test that counts
//! something process-wide (open file descriptors) runs in a process of its own
//! ([`testkit::faults::in_own_process`]).

use testkit::Binary;

/// The `grantshift` executable cargo built for these tests (only the root package's
/// integration tests are told where it is).
const GRANTSHIFT: Binary = Binary::new(env!("CARGO_BIN_EXE_grantshift"));

mod access;
mod admin_page;
mod admin_server;
mod admin_token;
mod binary_run;
mod binary_upgrade;
mod ca;
mod cli;
mod cluster;
mod cluster_cache;
mod cluster_state;
mod config;
mod connect_ports;
mod container;
mod curl;
mod demo;
mod destinations;
mod docs;
mod edges_smoke;
mod errors;
mod fake_salesforce;
mod fallback;
mod faults;
mod fleet;
mod fleet_shared;
mod harness;
mod hop_by_hop;
mod hop_protocol;
mod host_mapping;
mod intercept;
mod interop;
mod jwt;
mod limits;
mod metrics;
mod panics;
mod passed;
mod plain_http;
mod prometheus;
mod real_clients;
mod reload;
mod report;
mod rollout;
mod secrets;
mod shutdown;
mod skipped;
mod soap;
mod systemd;
mod telemetry;
mod token_bounds;
mod token_cache;
mod token_cache_clients;
mod transparency;
mod transparent_tls;
mod tunnel;
mod upgrade;
mod upstream_proxy;
mod verify;
mod websocket;
