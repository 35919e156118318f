//! Do no harm (docs/operating.md, "Safety and limits"): a panic in one request's task ends only that
//! connection; a panic while deciding or rewriting a token request sends the original request
//! through untouched, recorded `skipped` with reason `internal`.
//!
//! The panics come from `ProxyHandle::arm_fault` (the test build's `fault-injection` hooks),
//! armed on one test's proxy only: other proxies in the same test binary are untouched.

use http::Method;
use testkit::*;

/// Send `GET path` to `host` on `conn`; the request must fail (no response), within a bound.
async fn fails_without_response(conn: &mut HttpConn, host: &str, path: &str) {
    let req = conn.request(Method::GET, host, path).body(empty()).unwrap();
    match conn.try_send(req).await {
        Err(_) => {}
        Ok(reply) => panic!(
            "a request whose task panicked got a response: {} {:?}",
            reply.status,
            reply.text()
        ),
    }
}

async fn panic_in_a_request_task_ends_only_that_connection(armed: &str, http: Http) {
    let up = Upstreams::start().await;
    let fake = up.sf.addr();
    let proxy = TestProxy::builder()
        .connect_to(&format!("{armed}:443"), fake)
        .start_with(up)
        .await;
    proxy.handle().arm_fault("request", armed);

    // A connection to another host, open before the panic.
    let mut healthy = proxy.intercepted(LOGIN_HOST, http).await;
    assert_eq!(healthy.get(LOGIN_HOST, "/echo").await.status, 200);

    let mut doomed = proxy.intercepted(armed, http).await;
    fails_without_response(&mut doomed, armed, "/echo").await;

    // The connection opened before keeps working, and so do new ones.
    assert_eq!(healthy.get(LOGIN_HOST, "/echo?after=1").await.status, 200);
    let mut fresh = proxy.intercepted(LOGIN_HOST, http).await;
    assert_eq!(fresh.get(LOGIN_HOST, "/echo?fresh=1").await.status, 200);

    // The armed host panics on every path (arming is per host), each time cleanly.
    let mut again = proxy.intercepted(armed, http).await;
    fails_without_response(&mut again, armed, "/bytes?n=10").await;
    assert!(
        proxy
            .sf
            .requests()
            .iter()
            .all(|r| r.host_name() != Some(armed)),
        "a request whose task panicked never reaches upstream"
    );
    assert_eq!(proxy.sf.requests_to("/echo").len(), 3);

    drop((healthy, doomed, fresh, again));
    proxy.assert_no_active_connections().await;
}

#[tokio::test]
async fn panic_in_a_request_task_ends_only_that_connection_over_http1() {
    panic_in_a_request_task_ends_only_that_connection("panic-a.my.salesforce.com", Http::H1).await;
}

#[tokio::test]
async fn panic_in_a_request_task_ends_only_that_request_over_http2() {
    panic_in_a_request_task_ends_only_that_connection("panic-b.my.salesforce.com", Http::H2).await;
}

/// A password grant to `host` (armed at `point`) goes upstream byte-identical; the client gets
/// the upstream's password response; the event is `skipped` / `internal`.
async fn password_grant_is_forwarded_untouched(proxy: &TestProxy, host: &str, body: &str) {
    let reply = proxy.login(host, body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let sent = proxy.sf.token_requests();
    assert_eq!(sent.len(), 1, "one request upstream: the original");
    let original = &sent[0];
    assert_eq!(original.host_name(), Some(host), "to the original host");
    assert_eq!(original.sni.as_deref(), Some(host));
    assert_eq!(
        String::from_utf8_lossy(&original.body),
        body,
        "the original body, byte for byte"
    );
    assert_eq!(original.param("grant_type").as_deref(), Some("password"));
    assert_eq!(
        original.header_values("content-type"),
        vec!["application/x-www-form-urlencoded"]
    );
    assert_eq!(original.response_status, Some(200));
    assert_eq!(
        Some(&reply.body[..]),
        original.response_body.as_deref(),
        "the client gets the upstream's password response"
    );

    let event = proxy.next_event().await;
    assert_eq!(event["action"], "skipped", "{event}");
    assert_eq!(event["reason"], "internal", "{event}");
    assert_eq!(event["host"], host, "{event}");
    assert_eq!(event["status"], 200, "{event}");
    assert!(event.get("flow").is_none(), "{event}");
    assert!(event.get("target_host").is_none(), "{event}");
}

#[tokio::test]
async fn panic_while_rewriting_forwards_the_password_grant_untouched() {
    let proxy = TestProxy::builder()
        .extra_toml(&acme_mapping())
        .start()
        .await;
    proxy.handle().arm_fault("rewrite", acme::MY_DOMAIN);
    let body = acme_password_form();
    password_grant_is_forwarded_untouched(&proxy, acme::MY_DOMAIN, &body).await;

    // Control: the same login through a host that is not armed is upgraded.
    let reply = proxy.login(LOGIN_HOST, &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(proxy.next_event().await["action"], "upgraded");
}

#[tokio::test]
async fn panic_while_deciding_forwards_the_password_grant_untouched() {
    let proxy = TestProxy::builder()
        .extra_toml(&credentials_toml(acme_qa::USERNAME, acme_qa::MY_DOMAIN))
        .start()
        .await;
    proxy.handle().arm_fault("policy", acme_qa::MY_DOMAIN);
    let body = acme_qa_password_form();
    password_grant_is_forwarded_untouched(&proxy, acme_qa::MY_DOMAIN, &body).await;

    // Control: the same login through a host that is not armed is upgraded.
    let reply = proxy.login(TEST_HOST, &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(proxy.next_event().await["action"], "upgraded");
}
