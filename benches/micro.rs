//! Micro-benchmarks of the pure cores on the token path and of leaf certificates.
//!
//! ```sh
//! cargo bench --bench micro                  # all
//! cargo bench --bench micro -- leaf_cert     # a filter, as criterion takes it
//! ```
//!
//! - `token/parse`, `token/rewrite`, `token/parse_and_rewrite`: [`TokenParams::parse`] and
//!   [`client_credentials_body`] on a typical password-grant body (what every upgraded login
//!   costs before any I/O).
//! - `policy/bucket`: the rollout bucket (SHA-256 of client_id and lowercased username).
//! - `leaf_cert/cached`: `server_config_for` a host whose leaf is already cached;
//!   `leaf_cert/minted`: a host never seen before on every iteration (a leaf minted and
//!   signed, a rustls `ServerConfig` built, the cache's eviction once it is full).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use grantshift::ca::CertificateAuthority;
use grantshift::oauth::rewrite::client_credentials_body;
use grantshift::oauth::TokenParams;
use grantshift::policy::bucket;
use std::hint::black_box;
use std::sync::Arc;

const CLIENT_ID: &str =
    "3MVG9benchAcmeIntegrationConsumerKey.0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN";
const USERNAME: &str = "Integration.User+bench@Acme.com";

/// A password grant as a typical integration sends it (values percent-encoded).
fn password_body() -> Vec<u8> {
    serde_urlencoded::to_string([
        ("grant_type", "password"),
        ("client_id", CLIENT_ID),
        (
            "client_secret",
            "8E1F7C2B9A6D4E3F0A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F6071",
        ),
        ("username", USERNAME),
        (
            "password",
            "correct horse&battery=staple1A2b3C4d5E6f7G8h9I0jK",
        ),
        ("format", "json"),
    ])
    .expect("form")
    .into_bytes()
}

fn token(c: &mut Criterion) {
    let body = password_body();
    let mut g = c.benchmark_group("token");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("parse", |b| {
        b.iter(|| TokenParams::parse(None, black_box(&body)).expect("parses"))
    });
    let params = TokenParams::parse(None, &body).expect("parses");
    g.bench_function("rewrite", |b| {
        b.iter(|| client_credentials_body(black_box(&params)))
    });
    g.bench_function("parse_and_rewrite", |b| {
        b.iter(|| {
            let params = TokenParams::parse(None, black_box(&body)).expect("parses");
            client_credentials_body(&params)
        })
    });
    g.finish();
}

fn policy(c: &mut Criterion) {
    c.bench_function("policy/bucket", |b| {
        b.iter(|| bucket(black_box(CLIENT_ID), black_box(USERNAME)))
    });
}

fn leaf_cert(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = CertificateAuthority::load_or_create(
        &dir.path().join("ca.pem"),
        &dir.path().join("ca.key"),
        &grantshift::ca::SALESFORCE_DOMAINS.map(String::from),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .expect("CA");
    let mut g = c.benchmark_group("leaf_cert");
    ca.server_config_for("login.salesforce.com").expect("leaf");
    g.bench_function("cached", |b| {
        b.iter(|| {
            ca.server_config_for(black_box("login.salesforce.com"))
                .expect("leaf")
        })
    });
    let mut n = 0u64;
    g.bench_function("minted", |b| {
        b.iter(|| {
            n += 1;
            let host = format!("org{n}.my.salesforce.com");
            ca.server_config_for(black_box(&host)).expect("leaf")
        })
    });
    g.finish();
}

criterion_group!(benches, token, policy, leaf_cert);
criterion_main!(benches);
