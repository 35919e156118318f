//! When grantshift cannot reach the upstream it answers itself: `502` for refused connections
//! and TLS failures, `504` for timeouts, each with one plain-text line naming the host and the
//! cause; malformed requests on the front get `400`. Never a hang.

use std::time::Duration;
use testkit::*;

/// A one-line body that names `host` and, in any of the given words, the cause.
fn assert_one_line_naming(body: &str, host: &str, cause_words: &[&str]) {
    let line = body.trim_end();
    assert!(!line.contains('\n'), "one line: {body:?}");
    assert!(line.contains(host), "names the host {host}: {body:?}");
    let lower = line.to_ascii_lowercase();
    assert!(
        cause_words.iter().any(|w| lower.contains(w)),
        "names the cause (one of {cause_words:?}): {body:?}"
    );
}

const REFUSED: &[&str] = &["refused", "unreachable", "connect"];
const TIMEOUT: &[&str] = &["timeout", "timed out", "did not answer within"];
const TLS: &[&str] = &["certificate", "tls", "trust"];

/// A refusal must be reported as soon as it happens: give it 10 s with connect_timeout at 60 s.
async fn before_connect_timeout<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("the refusal is reported at once, not after connect_timeout")
}

#[tokio::test]
async fn blind_tunnel_to_refused_upstream_gets_502_naming_host() {
    let proxy = TestProxy::builder()
        .connect_to("closed.example:443", closed_port())
        .connect_timeout("60s")
        .start()
        .await;
    let resp = before_connect_timeout(connect_error(proxy.addr(), "closed.example:443")).await;
    assert_eq!(resp.status, 502);
    assert_one_line_naming(&resp.text(), "closed.example", REFUSED);
}

async fn intercepted_request_to_refused_upstream_gets_502(http: Http) {
    let proxy = TestProxy::builder()
        .connect_to("down.my.salesforce.com:443", closed_port())
        .connect_timeout("60s")
        .start()
        .await;
    let mut conn = proxy.intercepted("down.my.salesforce.com", http).await;
    let reply = before_connect_timeout(conn.get("down.my.salesforce.com", "/echo")).await;
    assert_eq!(reply.status, 502);
    assert_one_line_naming(&reply.text(), "down.my.salesforce.com", REFUSED);

    // The proxy keeps serving other hosts.
    let mut ok = proxy.intercepted("login.salesforce.com", http).await;
    assert_eq!(ok.get("login.salesforce.com", "/echo").await.status, 200);
}

#[tokio::test]
async fn intercepted_request_to_refused_upstream_gets_502_naming_host_over_http1() {
    intercepted_request_to_refused_upstream_gets_502(Http::H1).await;
}

#[tokio::test]
async fn intercepted_request_to_refused_upstream_gets_502_naming_host_over_http2() {
    intercepted_request_to_refused_upstream_gets_502(Http::H2).await;
}

#[tokio::test]
async fn intercepted_upstream_with_untrusted_certificate_gets_502_naming_host() {
    // untrusted.my.salesforce.com is intercepted (*.my.salesforce.com) and routed to the tunnel
    // server, whose certificate names it but is signed by a CA grantshift does not trust.
    let proxy = TestProxy::start("").await;
    let mut conn = proxy.intercepted(UNTRUSTED_HOST, Http::H1).await;
    let reply = conn.get(UNTRUSTED_HOST, "/echo").await;
    assert_eq!(reply.status, 502);
    assert_one_line_naming(&reply.text(), UNTRUSTED_HOST, TLS);
}

#[tokio::test]
async fn intercepted_upstream_that_never_answers_gets_504_naming_host() {
    let proxy = TestProxy::builder().request_timeout("1s").start().await;
    let mut conn = proxy.intercepted("acme.my.salesforce.com", Http::H1).await;
    let reply = conn.get("acme.my.salesforce.com", "/hold").await;
    assert_eq!(reply.status, 504);
    assert_one_line_naming(&reply.text(), "acme.my.salesforce.com", TIMEOUT);
    assert_eq!(
        proxy.sf.requests_to("/hold").len(),
        1,
        "the request did reach upstream"
    );
}

#[tokio::test]
async fn intercepted_upstream_that_accepts_tcp_but_never_speaks_gets_504_naming_host() {
    let silent = SilentServer::start().await;
    let proxy = TestProxy::builder()
        .connect_to("silent.my.salesforce.com:443", silent.addr())
        .connect_timeout("1s")
        .request_timeout("1s")
        .start()
        .await;
    let mut conn = proxy
        .intercepted("silent.my.salesforce.com", Http::H2)
        .await;
    let reply = conn.get("silent.my.salesforce.com", "/echo").await;
    assert_eq!(reply.status, 504);
    assert_one_line_naming(&reply.text(), "silent.my.salesforce.com", TIMEOUT);
}

#[tokio::test]
async fn origin_form_request_to_the_front_gets_400() {
    let proxy = TestProxy::start("").await;
    let resp = raw_exchange(
        proxy.addr(),
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 400);
    assert!(proxy.sf.requests().is_empty());
}

#[tokio::test]
async fn garbage_on_the_front_gets_400() {
    let proxy = TestProxy::start("").await;
    let resp = raw_exchange(proxy.addr(), b"HELLO THERE\r\n\r\n").await;
    assert_eq!(resp.status, 400);
    // And the proxy is still up.
    assert_eq!(proxy.connect("login.salesforce.com:443").await.0, 200);
}
