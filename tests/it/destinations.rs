//! The destination policy (docs/operating.md, "Safety and limits"): absolute-form `http://`
//! only to `allowed_http_ports` (default `[80]`), CONNECT only to `allowed_connect_ports`; no
//! loopback, link-local (cloud metadata), unspecified address or grantshift's own listener,
//! judged on the IP literal or on every address a name resolves to, unless `connect_to` names
//! the address or `allow_destinations` the network. A refusal is a `403` with a one-line
//! reason, before anything is dialled.

use testkit::clients::AcceptCounter;
use testkit::faults::echo_round_trip;
use testkit::*;

/// `GET http://authority/path` on a fresh connection to the proxy: the whole response.
async fn plain_get(proxy: &TestProxy, authority: &str, path: &str) -> RawResponse {
    let request = format!("GET http://{authority}{path} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    raw_exchange(proxy.addr(), request.as_bytes()).await
}

/// A refusal: `403`, one plain-text line naming `target` and containing `reason`.
#[track_caller]
fn assert_refused(resp: &RawResponse, target: &str, reason: &str) {
    let text = resp.text();
    assert_eq!(resp.status, 403, "{target}: {text}");
    let line = text.trim_end();
    assert!(!line.contains('\n'), "one line: {text:?}");
    assert!(
        line.starts_with(&format!("grantshift: destination {target}")),
        "names the destination {target}: {line}"
    );
    assert!(line.contains(reason), "names the reason {reason:?}: {line}");
    assert!(
        resp.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{:?}",
        resp.headers
    );
}

#[tokio::test]
async fn the_proxys_own_admin_server_cannot_be_reached_through_the_proxy() {
    // The report: `curl -x http://127.0.0.1:3128 http://127.0.0.1:9464/report` showed the
    // admin report.
    let mut proxy = TestProxy::start("").await;
    let admin = proxy.admin_addr();
    let refused = plain_get(&proxy, &admin.to_string(), "/report").await;
    assert_refused(
        &refused,
        &admin.to_string(),
        &format!("port {}; see proxy.allowed_http_ports = [80]", admin.port()),
    );
    assert!(
        !refused.text().contains("credentials"),
        "{}",
        refused.text()
    );

    // With its port allowed, it is grantshift's own listener.
    let ports = format!("allowed_http_ports = [80, {}]", admin.port());
    proxy.reload(TestProxy::builder().proxy(&ports));
    let refused = plain_get(&proxy, &admin.to_string(), "/report").await;
    assert_refused(&refused, &admin.to_string(), "(grantshift's own listener;");
    assert!(
        !refused.text().contains("credentials"),
        "{}",
        refused.text()
    );

    // And with loopback allowed too, it still is: so is the proxy port itself.
    proxy.reload(
        TestProxy::builder()
            .proxy(&format!(
                "allowed_http_ports = [80, {}, {}]",
                admin.port(),
                proxy.addr().port()
            ))
            .proxy("allow_destinations = [\"127.0.0.0/8\"]"),
    );
    for (what, listener) in [("admin", admin), ("proxy", proxy.addr())] {
        let refused = plain_get(&proxy, &listener.to_string(), "/report").await;
        assert_refused(&refused, &listener.to_string(), "grantshift's own listener");
        assert!(
            !refused.text().contains("credentials"),
            "{what}: {}",
            refused.text()
        );
    }
    // The admin server is still there, answering directly.
    assert_eq!(
        testkit::admin::admin_get(admin, "/report").await.status,
        200
    );
}

#[tokio::test]
async fn a_plain_request_to_a_port_outside_allowed_http_ports_is_refused_before_any_dial() {
    let counter = AcceptCounter::start().await;
    // Even a host that connect_to routes: the port list is what clients may ask for.
    let proxy = TestProxy::builder()
        .connect_to("svc.test:8080", counter.addr())
        .start()
        .await;
    let refused = plain_get(&proxy, "svc.test:8080", "/").await;
    assert_refused(
        &refused,
        "svc.test:8080",
        "(port 8080; see proxy.allowed_http_ports = [80])",
    );
    assert_eq!(counter.accepted(), 0, "nothing was dialled");
}

#[tokio::test]
async fn connect_to_a_loopback_address_gets_403_not_502_and_dials_nothing() {
    let counter = AcceptCounter::start().await;
    let port = counter.addr().port();
    let proxy = TestProxy::builder()
        .allowed_connect_ports(&[443, port])
        .start()
        .await;
    for (authority, target) in [
        // Nothing listens on 443: a dial would have been a 502.
        ("127.0.0.1:443", "127.0.0.1:443".to_string()),
        ("[::1]:443", "[::1]:443".to_string()),
        (
            "[::ffff:127.0.0.1]:443",
            "[::ffff:127.0.0.1]:443".to_string(),
        ),
        ("127.0.0.2:443", "127.0.0.2:443".to_string()),
        // A listener there: a dial would have been a 200.
        (&format!("127.0.0.1:{port}"), format!("127.0.0.1:{port}")),
    ] {
        let resp = connect_error(proxy.addr(), authority).await;
        assert_refused(&resp, &target, "(loopback; see proxy.allow_destinations)");
        assert_eq!(
            resp.header("connection"),
            Some("close"),
            "{authority}: a refused CONNECT closes the connection"
        );
    }
    assert_eq!(counter.accepted(), 0, "nothing was dialled");
}

#[tokio::test]
async fn a_name_that_resolves_to_loopback_is_refused_after_resolution() {
    // `localhost` resolves (from /etc/hosts, no network) to loopback only.
    let proxy = TestProxy::builder().start().await;
    let refused = plain_get(&proxy, "localhost", "/").await;
    assert_refused(&refused, "localhost:80 (", "loopback");
    assert!(refused.text().contains("127.0.0.1"), "{}", refused.text());

    let refused = connect_error(proxy.addr(), "localhost:443").await;
    assert_refused(&refused, "localhost:443 (", "loopback");
}

#[tokio::test]
async fn a_connect_to_entry_may_name_a_loopback_address() {
    // The operator named the address: neither plain HTTP nor CONNECT judges it.
    let plain = PlainHttpServer::start().await;
    let proxy = TestProxy::builder()
        .connect_to("svc.internal:80", plain.addr())
        .start()
        .await;
    let resp = plain_get(&proxy, "svc.internal", "/echo").await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(plain.requests().len(), 1);

    // echo.example:443 is routed to the TCP echo server on 127.0.0.1 by the test proxy.
    let (status, mut tunnel) = proxy.connect(&format!("{ECHO_HOST}:443")).await;
    assert_eq!(status, 200);
    echo_round_trip(&mut tunnel, b"through a connect_to entry on loopback").await;
}

#[tokio::test]
async fn allow_destinations_lets_a_listed_network_through() {
    let plain = PlainHttpServer::start().await;
    let target = plain.addr().to_string();
    let echo_server = TcpEchoServer::start().await;
    let echo = format!("127.0.0.1:{}", echo_server.addr().port());
    let builder = TestProxy::builder()
        .allowed_connect_ports(&[443, echo_server.addr().port()])
        .proxy(&format!("allowed_http_ports = [{}]", plain.addr().port()));
    let mut proxy = builder.clone().start().await;
    assert_eq!(plain_get(&proxy, &target, "/echo").await.status, 403);
    assert_eq!(connect_error(proxy.addr(), &echo).await.status, 403);

    proxy.reload(builder.proxy("allow_destinations = [\"127.0.0.1/32\"]"));
    let resp = plain_get(&proxy, &target, "/echo").await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(plain.requests().len(), 1);
    let (status, mut tunnel) = proxy.connect(&echo).await;
    assert_eq!(status, 200);
    echo_round_trip(&mut tunnel, b"to an allowed network").await;
    // 127.0.0.2 is loopback outside the list.
    let other = format!("127.0.0.2:{}", echo_server.addr().port());
    assert_refused(
        &connect_error(proxy.addr(), &other).await,
        &other,
        "loopback",
    );
}

#[tokio::test]
async fn cloud_metadata_link_local_and_unspecified_addresses_are_refused_before_any_dial() {
    // connect_to_only: even without the policy nothing could be dialled here (no network is
    // needed); a refusal is the 403, where a dial attempt would have been a 502.
    let proxy = TestProxy::builder()
        .upstream("connect_to_only = true")
        .start()
        .await;
    let refused = plain_get(&proxy, "169.254.169.254", "/latest/meta-data/").await;
    assert_refused(
        &refused,
        "169.254.169.254:80",
        "(link-local; see proxy.allow_destinations)",
    );
    for (authority, reason) in [
        ("169.254.169.254:443", "link-local"),
        ("[fe80::1]:443", "link-local"),
        ("[::ffff:169.254.169.254]:443", "link-local"),
        ("0.0.0.0:443", "unspecified address"),
        ("[::]:443", "unspecified address"),
    ] {
        assert_refused(
            &connect_error(proxy.addr(), authority).await,
            authority,
            reason,
        );
    }
}

#[tokio::test]
async fn behind_a_corporate_proxy_ip_literals_are_judged_and_names_are_passed_on() {
    // The corporate proxy resolves names, so grantshift judges only what it can see: the
    // port and an IP literal.
    let corporate = AcceptCounter::start().await;
    let proxy = TestProxy::builder()
        .upstream(&format!("proxy = \"http://{}\"", corporate.addr()))
        .start()
        .await;
    let refused = connect_error(proxy.addr(), "127.0.0.1:443").await;
    assert_refused(&refused, "127.0.0.1:443", "loopback");
    assert_eq!(
        corporate.accepted(),
        0,
        "a refused literal never reaches the corporate proxy"
    );
    // `localhost` is not resolved here: it goes to the corporate proxy (which closes at once,
    // so the CONNECT fails with a 502 rather than a 403).
    let passed_on = connect_error(proxy.addr(), "localhost:443").await;
    assert_eq!(passed_on.status, 502, "{}", passed_on.text());
    assert!(
        passed_on.text().contains("upstream proxy"),
        "{}",
        passed_on.text()
    );
    assert_eq!(corporate.accepted(), 1);
}
