//! Every forwarded request is valid for the upstream hop's protocol, whatever the client's:
//! over HTTP/2 the authority travels in `:authority` only (no `Host` field: nginx answers 400 to
//! a request carrying both), over HTTP/1.1 `Host` stays where the client put it (or comes first,
//! made from `:authority`, for an HTTP/2 client) and several `Cookie` fields become one
//! (RFC 9113 §8.3.1, §8.2.3). Token-path forwards keep their request trailers. The upstream
//! pool reuses its connections. Nothing else about a request changes (tests/transparency.rs).

use bytes::Bytes;
use http::{HeaderMap, Method};
use testkit::*;

const HOST: &str = "acme.my.salesforce.com";

fn names(pairs: &[(String, String)]) -> Vec<&str> {
    pairs.iter().map(|(n, _)| n.as_str()).collect()
}

/// A proxy whose fake Salesforce offers only HTTP/1.1.
async fn proxy_with_http1_upstream(extra_toml: &str) -> TestProxy {
    let up = Upstreams::with_salesforce(FakeSalesforce::start_http1_only().await).await;
    TestProxy::builder()
        .extra_toml(extra_toml)
        .start_with(up)
        .await
}

#[tokio::test]
async fn http1_client_over_an_http2_upstream_sends_the_authority_without_a_host_field() {
    let proxy = TestProxy::start("").await;
    let mut conn = proxy.intercepted(HOST, Http::H1).await;
    let req = conn
        .request(Method::GET, HOST, "/echo?x=1")
        .header("x-before", "1")
        .header("accept", "*/*")
        .body(empty())
        .unwrap();
    let reply = conn.send(req).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = &proxy.sf.requests_to("/echo")[0];
    assert_eq!(seen.version, "HTTP/2.0", "the upstream hop is HTTP/2");
    assert!(
        !seen.has_header("host"),
        "no Host field next to :authority: {:?}",
        seen.headers
    );
    assert_eq!(
        seen.host.as_deref(),
        Some(HOST),
        ":authority is the client's Host"
    );
    assert_eq!(
        names(&seen.headers),
        vec!["x-before", "accept"],
        "every other field arrives, in order"
    );
}

#[tokio::test]
async fn http2_client_over_an_http1_upstream_gets_host_first_and_one_joined_cookie_field() {
    let proxy = proxy_with_http1_upstream("").await;
    let mut conn = proxy.intercepted(HOST, Http::H2).await;
    let req = conn
        .request(Method::GET, HOST, "/echo")
        .header("cookie", "sid=abc")
        .header("accept", "*/*")
        .header("cookie", "lang=en")
        .body(empty())
        .unwrap();
    let reply = conn.send(req).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = &proxy.sf.requests_to("/echo")[0];
    assert_eq!(seen.version, "HTTP/1.1");
    assert_eq!(
        seen.headers,
        vec![
            ("host".to_string(), HOST.to_string()),
            ("cookie".to_string(), "sid=abc; lang=en".to_string()),
            ("accept".to_string(), "*/*".to_string()),
        ],
        "Host from :authority first, the cookies joined with \"; \" in their order"
    );
}

#[tokio::test]
async fn http1_client_over_an_http1_upstream_keeps_host_where_the_client_put_it() {
    let proxy = proxy_with_http1_upstream("").await;
    let mut conn = proxy.intercepted(HOST, Http::H1).await;
    // `request` puts Host first; this one sends it in the middle.
    let req = http::Request::builder()
        .method(Method::GET)
        .uri("/echo")
        .header("x-first", "1")
        .header("host", HOST)
        .header("cookie", "a=1")
        .body(empty())
        .unwrap();
    let reply = conn.send(req).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = &proxy.sf.requests_to("/echo")[0];
    assert_eq!(seen.version, "HTTP/1.1");
    assert_eq!(names(&seen.headers), vec!["x-first", "host", "cookie"]);
}

#[tokio::test]
async fn upgraded_login_and_its_fallback_replay_send_no_host_field_over_http2() {
    let toml = rollout_toml("*", "upgrade", 100, true) + &acme_mapping();
    let proxy = TestProxy::start(&toml).await;
    proxy
        .sf
        .edit(|w| w.org_mut(acme::ORG_ID).app_mut(acme::CLIENT_ID).run_as_user = None);
    let mut conn = proxy.intercepted(LOGIN_HOST, Http::H1).await;
    let reply = post_form(&mut conn, LOGIN_HOST, TOKEN_PATH, &acme_password_form()).await;
    assert_eq!(reply.status, 200, "the replay logged in: {}", reply.text());
    let seen = proxy.sf.token_requests();
    assert_eq!(seen.len(), 2, "the upgraded attempt, then the replay");
    for (r, host) in seen.iter().zip([acme::MY_DOMAIN, LOGIN_HOST]) {
        assert_eq!(r.version, "HTTP/2.0");
        assert!(!r.has_header("host"), "{host}: {:?}", r.headers);
        assert_eq!(r.host_name(), Some(host));
    }
    assert_eq!(proxy.next_event().await["action"], "fallback");
}

/// A chunked token request with trailers, sent by an HTTP/1.1 client.
async fn send_token_request_with_trailers(proxy: &TestProxy, body: &str) -> Reply {
    let mut conn = proxy.intercepted(LOGIN_HOST, Http::H1).await;
    let mut trailers = HeaderMap::new();
    trailers.insert("x-request-checksum", "abc123".parse().unwrap());
    let half = body.len() / 2;
    let req = conn
        .request(Method::POST, LOGIN_HOST, TOKEN_PATH)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("trailer", "x-request-checksum")
        .body(body_with_trailers(
            vec![
                Bytes::copy_from_slice(&body.as_bytes()[..half]),
                Bytes::copy_from_slice(&body.as_bytes()[half..]),
            ],
            trailers,
        ))
        .unwrap();
    conn.send(req).await
}

fn assert_arrived_with_trailers(r: &Recorded, body: &str, what: &str) {
    assert!(
        r.body == body.as_bytes(),
        "{what}: the body arrives as sent"
    );
    assert_eq!(
        r.trailers,
        vec![("x-request-checksum".to_string(), "abc123".to_string())],
        "{what}: the trailers arrive ({} hop, headers {:?})",
        r.version,
        r.headers
    );
    assert!(
        !r.has_header("content-length"),
        "{what}: a body with trailers is not sent with a length"
    );
}

#[tokio::test]
async fn a_passed_token_request_keeps_its_trailers_over_http1_and_http2_upstreams() {
    let body = form(&[("grant_type", "refresh_token"), ("refresh_token", "5Aep-x")]);
    for proxy in [
        TestProxy::start("").await,
        proxy_with_http1_upstream("").await,
    ] {
        send_token_request_with_trailers(&proxy, &body).await;
        let seen = proxy.sf.token_requests();
        assert_arrived_with_trailers(&seen[0], &body, "passed");
        assert_eq!(proxy.next_event().await["action"], "passed");
    }
}

#[tokio::test]
async fn a_skipped_token_request_keeps_its_trailers() {
    // Two grant_type parameters: not understood, so forwarded as it came.
    let body = "grant_type=password&grant_type=refresh_token&username=u%40x.com&password=p";
    let proxy = proxy_with_http1_upstream(&acme_mapping()).await;
    send_token_request_with_trailers(&proxy, body).await;
    assert_arrived_with_trailers(&proxy.sf.token_requests()[0], body, "skipped");
    let event = proxy.next_event().await;
    assert_eq!(event["action"], "skipped", "{event}");
}

#[tokio::test]
async fn an_observed_and_a_fallback_replayed_login_keep_their_trailers() {
    let body = acme_password_form();
    // Unmapped: forwarded as it came.
    let proxy = proxy_with_http1_upstream("").await;
    let reply = send_token_request_with_trailers(&proxy, &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_arrived_with_trailers(&proxy.sf.token_requests()[0], &body, "unmapped");
    assert_eq!(proxy.next_event().await["action"], "unmapped");

    // The upgrade fails (no Run As user): the replay is the original, trailers included.
    let toml = rollout_toml("*", "upgrade", 100, true) + &acme_mapping();
    let proxy = proxy_with_http1_upstream(&toml).await;
    proxy
        .sf
        .edit(|w| w.org_mut(acme::ORG_ID).app_mut(acme::CLIENT_ID).run_as_user = None);
    let reply = send_token_request_with_trailers(&proxy, &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = proxy.sf.token_requests();
    assert_eq!(seen.len(), 2);
    assert_arrived_with_trailers(&seen[1], &body, "fallback replay");
    assert_eq!(proxy.next_event().await["action"], "fallback");
}

/// `grantshift_upstream_connections_total{protocol=…}` on the proxy's `/metrics`.
async fn upstream_connections(proxy: &TestProxy, protocol: &str) -> f64 {
    let name = "grantshift_upstream_connections_total";
    testkit::admin::scrape(proxy.admin_addr())
        .await
        .value(name, &[("protocol", protocol)])
        .unwrap_or_else(|| panic!("no {name}{{protocol={protocol:?}}} on /metrics"))
}

#[tokio::test]
async fn sequential_requests_reuse_one_upstream_connection_per_protocol() {
    for (proxy, protocol) in [
        (TestProxy::start("").await, "h2"),
        (proxy_with_http1_upstream("").await, "http/1.1"),
    ] {
        for round in 0..3 {
            let mut conn = proxy.intercepted(HOST, Http::H1).await;
            for _ in 0..10 {
                let reply = conn.get(HOST, "/bytes?n=1000").await;
                assert_eq!(reply.status, 200, "round {round}");
            }
        }
        assert_eq!(
            upstream_connections(&proxy, protocol).await,
            1.0,
            "30 requests on 3 client connections share one {protocol} upstream connection"
        );
        assert_eq!(proxy.sf.requests_to("/bytes").len(), 30);
    }
}

#[tokio::test]
async fn concurrent_http1_requests_open_one_upstream_connection_each_at_most_and_reuse_them() {
    let proxy = proxy_with_http1_upstream("").await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(proxy.intercepted(HOST, Http::H1).await);
    }
    for _ in 0..5 {
        let sends = clients
            .iter_mut()
            .map(|c| async move { c.get(HOST, "/bytes?n=100").await.status });
        let statuses = futures_util::future::join_all(sends).await;
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    }
    let opened = upstream_connections(&proxy, "http/1.1").await;
    assert!(
        (1.0..=4.0).contains(&opened),
        "4 concurrent clients × 5 rounds used {opened} upstream connections (at most 4)"
    );
}

#[tokio::test]
async fn concurrent_first_requests_to_an_http2_origin_share_one_connection() {
    let proxy = TestProxy::start("").await;
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(proxy.intercepted(HOST, Http::H1).await);
    }
    let sends = clients
        .iter_mut()
        .map(|c| async move { c.get(HOST, "/bytes?n=100").await.status });
    let statuses = futures_util::future::join_all(sends).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(
        upstream_connections(&proxy, "h2").await,
        1.0,
        "8 concurrent first requests wait for one HTTP/2 connection and share it"
    );
}
