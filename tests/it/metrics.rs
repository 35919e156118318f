//! docs/operating.md, "The events file" metrics on the admin server's `/metrics`: after a known sequence of requests every
//! counter has exactly the expected value and label set, the gauges return to zero once the
//! client connections are closed, the histogram counts every upstream request, config reloads
//! are counted by result, and the whole exposition parses as strict OpenMetrics text.

use crate::GRANTSHIFT;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use testkit::admin::{
    admin_get, label_set, live_report, parse_openmetrics, report_row, scrape, Exposition,
};
use testkit::salesforce::App;
use testkit::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A connected app of the acme org with client credentials enabled but no Run As user.
const NO_RUN_AS_APP: &str = "3MVG9acmeNoRunAsApp.consumerKey";
const NO_RUN_AS_SECRET: &str = "cs-SECRET-norunas-3c1e";
/// A refresh token the fake issued earlier to the acme integration user.
const REFRESH_TOKEN: &str = "5Aep861acmeRefreshToken.metricsTest";
const PLAIN_HOST: &str = "plain.test";

/// Scrapes allowed while waiting for the proxy to notice closed connections.
const SCRAPE_ATTEMPTS: usize = 100;

/// A blind tunnel to the echo server: one round trip, then both directions closed.
async fn tunnel_round_trip_then_close(proxy: &TestProxy) {
    let (status, mut tcp) = proxy.connect(&format!("{ECHO_HOST}:443")).await;
    assert_eq!(status, 200, "CONNECT {ECHO_HOST}:443");
    within(20, "tunnel round trip then close", async {
        tcp.write_all(b"ping").await.unwrap();
        let mut echoed = [0u8; 4];
        tcp.read_exact(&mut echoed).await.unwrap();
        assert_eq!(&echoed, b"ping");
        tcp.shutdown().await.unwrap();
        let mut rest = Vec::new();
        tcp.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, EOF_MARKER, "the echo server saw our end and closed");
    })
    .await
}

/// One absolute-form `http://` request with `Connection: close`, read to the end.
async fn plain_http_request_then_close(proxy: SocketAddr) -> u16 {
    let request = format!(
        "GET http://{PLAIN_HOST}/echo HTTP/1.1\r\nHost: {PLAIN_HOST}\r\nConnection: close\r\n\r\n"
    );
    let reply = raw_exchange(proxy, request.as_bytes()).await;
    reply.status
}

fn series(pairs: &[(&[(&str, &str)], f64)]) -> BTreeMap<Vec<(String, String)>, f64> {
    pairs
        .iter()
        .map(|(labels, v)| (label_set(labels), *v))
        .collect()
}

fn kinds(tunnel: f64, intercept: f64, http: f64) -> BTreeMap<Vec<(String, String)>, f64> {
    series(&[
        (&[("kind", "tunnel")], tunnel),
        (&[("kind", "intercept")], intercept),
        (&[("kind", "http")], http),
    ])
}

fn reloads(ok: f64, error: f64) -> BTreeMap<Vec<(String, String)>, f64> {
    series(&[(&[("result", "ok")], ok), (&[("result", "error")], error)])
}

/// The histogram's `_count` (no labels).
fn upstream_requests_observed(m: &Exposition) -> f64 {
    m.value("grantshift_upstream_duration_seconds_count", &[])
        .expect("grantshift_upstream_duration_seconds_count")
}

/// Scrape until no proxied connection is open (the client side closed every one of them
/// first); bounded.
async fn scrape_when_no_connection_is_open(admin: SocketAddr) -> Exposition {
    let mut last = None;
    for _ in 0..SCRAPE_ATTEMPTS {
        let m = scrape(admin).await;
        if m.series("grantshift_connections_active") == kinds(0.0, 0.0, 0.0) {
            return m;
        }
        last = Some(m);
    }
    panic!(
        "grantshift_connections_active still not 0 for every kind after {SCRAPE_ATTEMPTS} scrapes, although every client connection was closed: {:?}",
        last.unwrap().series("grantshift_connections_active")
    );
}

#[tokio::test]
async fn metrics_after_a_known_sequence_have_exact_values_and_labels() {
    let plain = PlainHttpServer::start().await;
    let proxy = TestProxy::builder()
        .connect_to(&format!("{PLAIN_HOST}:80"), plain.addr())
        .extra_toml(&acme_mapping())
        .extra_toml(&credentials_toml(acme::REPORTS_USERNAME, acme::MY_DOMAIN))
        .start()
        .await;
    proxy.sf.edit(|w| {
        let org = w.org_mut(acme::ORG_ID);
        org.apps.push(App::new(NO_RUN_AS_APP, NO_RUN_AS_SECRET));
        org.app_mut(acme::CLIENT_ID)
            .refresh_tokens
            .push((REFRESH_TOKEN.into(), acme::USERNAME.into()));
    });
    let admin = proxy.admin_addr();

    // Before anything: every pre-registered series reads 0, no token request series exist.
    let m = scrape(admin).await;
    assert!(m.series("grantshift_token_requests_total").is_empty());
    assert!(m.series("grantshift_upgrade_failures_total").is_empty());
    assert_eq!(
        m.series("grantshift_connections_total"),
        kinds(0.0, 0.0, 0.0)
    );
    assert_eq!(
        m.series("grantshift_connections_active"),
        kinds(0.0, 0.0, 0.0)
    );
    assert_eq!(
        m.series("grantshift_config_reloads_total"),
        reloads(0.0, 0.0)
    );
    assert_eq!(upstream_requests_observed(&m), 0.0);

    // 1. An upgraded password login (mapped: login → acme's My Domain).
    let (status, body) = proxy
        .token_request_then_close(LOGIN_HOST, &acme_password_form())
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(proxy.next_event().await["action"], "upgraded");

    // 2. A fallback: the app has no Run As user, so the upgrade fails and the password
    //    login is replayed.
    let (status, body) = proxy
        .token_request_then_close(
            LOGIN_HOST,
            &password_form(
                NO_RUN_AS_APP,
                NO_RUN_AS_SECRET,
                acme::REPORTS_USERNAME,
                acme::REPORTS_PASSWORD,
            ),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let event = proxy.next_event().await;
    assert_eq!(event["action"], "fallback", "{event}");
    assert_eq!(
        event["upstream_error"]["error_description"],
        "no client credentials user enabled"
    );

    // 3. An unmapped login at the generic host.
    let (status, body) = proxy
        .token_request_then_close(
            LOGIN_HOST,
            &password_form(
                acme::CLIENT_ID,
                acme::CLIENT_SECRET,
                acme::PLUS_USERNAME,
                acme::PLUS_PASSWORD,
            ),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(proxy.next_event().await["action"], "unmapped");

    // 4. A refresh_token grant (passed through).
    let refresh = form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", REFRESH_TOKEN),
        ("client_id", acme::CLIENT_ID),
        ("client_secret", acme::CLIENT_SECRET),
    ]);
    let (status, body) = proxy.token_request_then_close(LOGIN_HOST, &refresh).await;
    assert_eq!(status, 200, "{body}");
    let event = proxy.next_event().await;
    assert_eq!(
        (&event["action"], &event["grant"]),
        (&"passed".into(), &"refresh_token".into())
    );

    // 5. A blind tunnel. 6. A plain http:// request.
    tunnel_round_trip_then_close(&proxy).await;
    assert_eq!(plain_http_request_then_close(proxy.addr()).await, 200);

    let m = scrape_when_no_connection_is_open(admin).await;
    let password = |action| {
        [
            ("host", LOGIN_HOST),
            ("grant", "password"),
            ("action", action),
        ]
    };
    assert_eq!(
        m.series("grantshift_token_requests_total"),
        series(&[
            (&password("upgraded"), 1.0),
            (&password("fallback"), 1.0),
            (&password("unmapped"), 1.0),
            (
                &[
                    ("host", LOGIN_HOST),
                    ("grant", "refresh_token"),
                    ("action", "passed")
                ],
                1.0
            ),
        ])
    );
    assert_eq!(
        m.series("grantshift_upgrade_failures_total"),
        series(&[(&[("host", LOGIN_HOST), ("error", "invalid_grant")], 1.0)])
    );
    // The two upgrades sent upstream (the second failed, then fell back), by Run As identity.
    assert_eq!(
        m.series("grantshift_upstream_logins_total"),
        series(&[
            (
                &[
                    ("target_host", acme::MY_DOMAIN),
                    ("identity", acme::CLIENT_ID)
                ],
                1.0
            ),
            (
                &[
                    ("target_host", acme::MY_DOMAIN),
                    ("identity", NO_RUN_AS_APP)
                ],
                1.0
            ),
        ])
    );
    // Password verifiers: the two logins that were to be upgraded had none to check
    // (client credentials, `if_known`); the fallback's and the unmapped login's passwords,
    // accepted by Salesforce as sent, were learned (one Argon2 run each).
    assert_eq!(
        m.series("grantshift_password_checks_total"),
        series(&[
            (&[("result", "verified")], 0.0),
            (&[("result", "mismatch")], 0.0),
            (&[("result", "none")], 2.0),
            (&[("result", "off")], 0.0),
        ])
    );
    assert_eq!(
        m.series("grantshift_password_refusals_total"),
        series(&[
            (&[("reason", "password_mismatch")], 0.0),
            (&[("reason", "no_verifier")], 0.0),
            (&[("reason", "password_throttled")], 0.0),
        ])
    );
    assert_eq!(
        m.series("grantshift_password_hashes_total"),
        series(&[
            (&[("purpose", "check")], 0.0),
            (&[("purpose", "learn")], 2.0)
        ])
    );
    assert_eq!(
        m.series("grantshift_password_verifiers"),
        series(&[
            (&[("source", "learned")], 2.0),
            (&[("source", "configured")], 0.0)
        ])
    );
    assert_eq!(
        m.series("grantshift_connections_total"),
        kinds(1.0, 4.0, 1.0)
    );
    assert_eq!(
        m.series("grantshift_connections_active"),
        kinds(0.0, 0.0, 0.0)
    );
    assert_eq!(
        m.series("grantshift_config_reloads_total"),
        reloads(0.0, 0.0)
    );

    // Every request sent upstream is observed once: the upgraded login, the failed upgrade
    // and its replay, the unmapped login, the refresh, the plain request.
    let sent_upstream = proxy.sf.requests().len() + plain.requests().len();
    assert_eq!(sent_upstream, 6, "requests the upstreams received");
    assert_eq!(upstream_requests_observed(&m), sent_upstream as f64);
    let sum = m
        .value("grantshift_upstream_duration_seconds_sum", &[])
        .expect("_sum");
    assert!(sum > 0.0, "durations add up to more than nothing: {sum}");
    // Pooled connections are reused: fewer opened than requests sent, and only known protocols.
    let opened = m.series("grantshift_upstream_connections_total");
    assert_eq!(
        opened.keys().cloned().collect::<Vec<_>>(),
        vec![
            label_set(&[("protocol", "h2")]),
            label_set(&[("protocol", "http/1.1")])
        ]
    );
    let total: f64 = opened.values().sum();
    assert!(
        total >= 1.0 && total < sent_upstream as f64,
        "{total} upstream connections for {sent_upstream} requests"
    );

    // The families and their types, exactly.
    let families: BTreeSet<(String, String)> = m
        .families
        .iter()
        .map(|f| (f.name.clone(), f.kind.clone()))
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("grantshift_token_requests", "counter"),
        ("grantshift_upgrade_failures", "counter"),
        ("grantshift_connections", "counter"),
        ("grantshift_connections_active", "gauge"),
        ("grantshift_upstream_duration_seconds", "histogram"),
        ("grantshift_upstream_connections", "counter"),
        ("grantshift_config_reloads", "counter"),
        ("grantshift_events_dropped", "counter"),
        ("grantshift_report_sets_dropped", "counter"),
        ("grantshift_token_body_bytes", "gauge"),
        ("grantshift_password_checks", "counter"),
        ("grantshift_password_refusals", "counter"),
        ("grantshift_password_hashes", "counter"),
        ("grantshift_password_verifiers", "gauge"),
        ("grantshift_upstream_logins", "counter"),
        ("grantshift_credential_sets", "gauge"),
        ("grantshift_build_info", "gauge"),
        ("grantshift_token_cache_hits", "counter"),
        ("grantshift_token_cache_misses", "counter"),
        ("grantshift_token_cache_waits", "counter"),
        ("grantshift_token_cache_negative_hits", "counter"),
        ("grantshift_token_cache_revokes_shielded", "counter"),
        ("grantshift_token_cache_evictions", "counter"),
        ("grantshift_token_cache_introspections", "counter"),
        ("grantshift_token_cache_waiting", "gauge"),
        ("grantshift_token_cache_entries", "gauge"),
        ("grantshift_token_cache_bytes", "gauge"),
        ("grantshift_upstream_logins_last_hour", "gauge"),
        ("grantshift_cluster_up", "gauge"),
        ("grantshift_cluster_errors", "counter"),
        ("grantshift_cluster_events_waiting", "gauge"),
        ("grantshift_cluster_events_unsent_dropped", "counter"),
        ("grantshift_cluster_stream_resets", "counter"),
    ]
    .iter()
    .map(|(n, k)| (n.to_string(), k.to_string()))
    .collect();
    assert_eq!(families, expected);
    assert_eq!(
        m.series("grantshift_build_info"),
        [(label_set(&[("version", env!("CARGO_PKG_VERSION"))]), 1.0)].into(),
        "one series, the running version, at 1"
    );
    for f in &m.families {
        assert!(
            f.help.as_deref().is_some_and(|h| !h.is_empty()),
            "{} has HELP",
            f.name
        );
    }
}

#[tokio::test]
async fn config_reloads_are_counted_by_result() {
    let mut proxy = TestProxy::start("").await;
    let admin = proxy.admin_addr();
    assert_eq!(
        scrape(admin)
            .await
            .series("grantshift_config_reloads_total"),
        reloads(0.0, 0.0)
    );

    let changed = proxy
        .builder_used()
        .with_extra_toml(&rollout_toml("*", "observe", 100, true));
    proxy.reload(changed);
    assert_eq!(
        scrape(admin)
            .await
            .series("grantshift_config_reloads_total"),
        reloads(1.0, 0.0)
    );

    let invalid = grantshift::config::Config::from_toml_str("[proxy]\nlisten = 5\n", proxy.dir())
        .expect_err("listen = 5 is not a valid config");
    proxy.reloader().failed(&invalid);
    assert_eq!(
        scrape(admin)
            .await
            .series("grantshift_config_reloads_total"),
        reloads(1.0, 1.0)
    );
}

/// `grantshift run` with a JSON log; the admin address from its `admin listening` line.
async fn binary_with_admin(
    up: &Upstreams,
    builder: &TestProxyBuilder,
) -> (BinaryProxy, SocketAddr) {
    let proxy = BinaryProxy::start(GRANTSHIFT, up, builder, "json", None).await;
    let line = proxy.bin.wait_for_json_logs("admin listening", 1).await;
    let admin = line[0]["fields"]["addr"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("admin listening line without an address: {}", line[0]));
    // The SIGHUP handler is installed by a task spawned right after that line; one round trip
    // through the proxy port (served after that spawn) lets it run before the test signals.
    let (status, mut tcp) = connect_tunnel(proxy.bin.addr(), &format!("{ECHO_HOST}:443")).await;
    assert_eq!(status, 200);
    within(20, "echo through the binary", async {
        tcp.write_all(b"ping").await.unwrap();
        let mut echoed = [0u8; 4];
        tcp.read_exact(&mut echoed).await.unwrap();
    })
    .await;
    (proxy, admin)
}

#[tokio::test]
async fn sighup_with_a_valid_file_counts_an_ok_reload() {
    let up = Upstreams::start().await;
    let builder = TestProxy::builder();
    let (proxy, admin) = binary_with_admin(&up, &builder).await;
    assert_eq!(
        scrape(admin)
            .await
            .series("grantshift_config_reloads_total"),
        reloads(0.0, 0.0)
    );

    let changed = builder.with_extra_toml(&rollout_toml("*", "observe", 100, true));
    std::fs::write(proxy.config_path(), changed.render(&up)).unwrap();
    proxy.bin.signal("HUP");
    proxy.bin.wait_for_json_logs("config reloaded", 1).await;
    assert_eq!(
        scrape(admin)
            .await
            .series("grantshift_config_reloads_total"),
        reloads(1.0, 0.0)
    );
}

#[tokio::test]
async fn sighup_with_an_invalid_file_counts_an_error_reload() {
    let up = Upstreams::start().await;
    let (proxy, admin) = binary_with_admin(&up, &TestProxy::builder()).await;

    std::fs::write(proxy.config_path(), "[proxy]\nlisten = 5\n").unwrap();
    proxy.bin.signal("HUP");
    proxy
        .bin
        .wait_for_json_logs("config reload failed; keeping the running config", 1)
        .await;
    assert_eq!(
        scrape(admin)
            .await
            .series("grantshift_config_reloads_total"),
        reloads(0.0, 1.0),
        "each reload counts grantshift_config_reloads_total{{result=\"ok\"|\"error\"}}"
    );
}

#[test]
fn the_strict_openmetrics_parser_rejects_malformed_expositions() {
    let good = "# HELP a_x An x.\n# TYPE a_x counter\na_x_total{k=\"v \\\"q\\\"\"} 1\n# TYPE h histogram\nh_sum 0.5\nh_count 2\nh_bucket{le=\"0.1\"} 1\nh_bucket{le=\"+Inf\"} 2\n# EOF\n";
    let parsed = parse_openmetrics(good).expect("valid");
    assert_eq!(parsed.value("a_x_total", &[("k", "v \"q\"")]), Some(1.0));
    for bad in [
        good.replace("# EOF\n", ""),
        good.replace("a_x_total", "a_y_total"),
        good.replace("k=\"v", "k=v"),
        good.replace(" 1\n# TYPE h", " one\n# TYPE h"),
        good.replace("h_bucket{le=\"+Inf\"} 2", "h_bucket{le=\"+Inf\"} 3"),
        good.replace("h_bucket{le=\"0.1\"} 1", "h_bucket{le=\"0.1\"} 3"),
        good.replace("# TYPE h histogram\n", "# TYPE h histogram\n\n"),
        good.replace("a_x_total{", "a_x_total{k=\"w\",") + "",
        format!("{}a_x_total 2\n# EOF\n", good.replace("# EOF\n", "")),
        good.replace("counter", "countr"),
    ] {
        assert!(parse_openmetrics(&bad).is_err(), "accepted:\n{bad}");
    }
}

/// Distinct My Domain hosts a client invents in the label test.
const INVENTED_HOSTS: usize = 200;

#[tokio::test]
async fn hosts_a_client_invents_share_one_label_value_and_one_report_row() {
    // Nothing is dialled but connect_to hosts: every invented host fails at once, offline.
    let proxy = TestProxy::builder()
        .upstream("connect_to_only = true")
        .start()
        .await;
    for i in 0..INVENTED_HOSTS {
        let host = format!("h{i}.my.salesforce.com");
        let (status, body) = proxy
            .token_request_then_close(&host, &acme_password_form())
            .await;
        assert_eq!(status, 502, "{host}: {body}");
        let event = proxy.next_event().await;
        assert_eq!(
            (&event["host"], &event["action"]),
            (&host.as_str().into(), &"fallback".into()),
            "{event}"
        );
    }
    let admin = proxy.admin_addr();
    let text = admin_get(admin, "/metrics").await.text();
    // The fixed families and their pre-registered series, and a few for the one host class
    // the invented hosts share: not one per host.
    let lines = text.lines().count();
    let fresh = TestProxy::builder()
        .upstream("connect_to_only = true")
        .start()
        .await;
    let before = admin_get(fresh.admin_addr(), "/metrics").await.text();
    assert!(
        lines < before.lines().count() + 20,
        "{lines} lines of /metrics after {INVENTED_HOSTS} invented hosts, {} before any:\n{text}",
        before.lines().count()
    );
    let m = scrape(admin).await;
    let password_at_a_my_domain = [
        ("host", "my_domain"),
        ("grant", "password"),
        ("action", "fallback"),
    ];
    assert_eq!(
        m.series("grantshift_token_requests_total"),
        series(&[(&password_at_a_my_domain, INVENTED_HOSTS as f64)])
    );
    assert_eq!(
        m.series("grantshift_upgrade_failures_total"),
        series(&[(
            &[("host", "my_domain"), ("error", "connect_error")],
            INVENTED_HOSTS as f64
        )])
    );
    // Each failed upgrade went to its invented host, as one identity: one series.
    assert_eq!(
        m.series("grantshift_upstream_logins_total"),
        series(&[(
            &[("target_host", "my_domain"), ("identity", acme::CLIENT_ID)],
            INVENTED_HOSTS as f64
        )])
    );
    // The report: one credential set, a few of its hosts listed, the rest counted.
    let report = live_report(admin).await;
    let row = report_row(&report, acme::CLIENT_ID, acme::USERNAME);
    let listed = row["hosts"].as_array().unwrap().len();
    assert_eq!(listed, grantshift::telemetry::report::MAX_HOSTS_PER_SET);
    assert_eq!(
        row["logins_at_other_hosts"],
        (INVENTED_HOSTS - listed) as u64
    );
}
