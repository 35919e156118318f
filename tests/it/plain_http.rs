//! Absolute-form `http://` requests on the proxy front are forwarded as plain HTTP (to the
//! `connect_to` address), unchanged but for hop-by-hop headers.

use http::{Method, Request};
use testkit::*;

async fn proxy_with_plain_upstream() -> (TestProxy, PlainHttpServer) {
    let plain = PlainHttpServer::start().await;
    let proxy = TestProxy::builder()
        .connect_to("plain.test:80", plain.addr())
        .connect_to("plain.test:8080", plain.addr())
        // Plain http:// goes only to allowed_http_ports (default [80]).
        .proxy("allowed_http_ports = [80, 8080]")
        .start()
        .await;
    (proxy, plain)
}

async fn front(proxy: &TestProxy) -> HttpConn {
    let tcp = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    HttpConn::handshake(tcp, Http::H1).await
}

#[tokio::test]
async fn absolute_form_request_is_forwarded_to_the_plain_http_upstream() {
    let (proxy, plain) = proxy_with_plain_upstream().await;
    let mut conn = front(&proxy).await;
    for i in 0..2 {
        let req = Request::builder()
            .method(Method::GET)
            .uri(format!("http://plain.test/echo?i={i}&x=a%20b"))
            .header("host", "plain.test")
            .header("x-b", "2")
            .header("x-a", "1")
            .header("x-a", "3")
            .body(empty())
            .unwrap();
        let reply = conn.send(req).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let echo = reply.json();
        assert_eq!(echo["method"], "GET");
        assert_eq!(echo["host"], "plain.test");
        assert!(echo["uri"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/echo?i={i}&x=a%20b")));
    }
    let seen = plain.requests();
    assert_eq!(seen.len(), 2, "two requests on one front connection");
    assert_eq!(seen[1].query.as_deref(), Some("i=1&x=a%20b"));
    let custom: Vec<_> = seen[0]
        .headers
        .iter()
        .filter(|(n, _)| n.starts_with("x-"))
        .cloned()
        .collect();
    assert_eq!(
        custom,
        vec![
            ("x-b".into(), "2".into()),
            ("x-a".into(), "1".into()),
            ("x-a".into(), "3".into())
        ]
    );
}

#[tokio::test]
async fn absolute_form_with_explicit_port_uses_that_connect_to_entry() {
    let (proxy, plain) = proxy_with_plain_upstream().await;
    let mut conn = front(&proxy).await;
    let req = Request::builder()
        .uri("http://plain.test:8080/echo")
        .header("host", "plain.test:8080")
        .body(empty())
        .unwrap();
    let reply = conn.send(req).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(plain.requests()[0].host.as_deref(), Some("plain.test:8080"));
}

#[tokio::test]
async fn absolute_form_post_body_arrives_byte_identical() {
    let (proxy, plain) = proxy_with_plain_upstream().await;
    let mut conn = front(&proxy).await;
    let body = pseudo_random_bytes(2_000_000, 21);
    let req = Request::builder()
        .method(Method::POST)
        .uri("http://plain.test/echo")
        .header("host", "plain.test")
        .header("content-type", "application/octet-stream")
        .body(full(body.clone()))
        .unwrap();
    let reply = conn.send(req).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["body_sha256"], sha256_hex(&body));
    assert!(plain.requests()[0].body == body);

    let reply = conn
        .send(
            Request::builder()
                .uri("http://plain.test/bytes?n=1500000")
                .header("host", "plain.test")
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(
        sha256_hex(&reply.body),
        sha256_hex(&pseudo_random_bytes(1_500_000, BYTES_SEED))
    );
}

#[tokio::test]
async fn hop_by_hop_headers_are_dropped_on_plain_http_too() {
    let (proxy, plain) = proxy_with_plain_upstream().await;
    let mut conn = front(&proxy).await;
    let req = Request::builder()
        .uri("http://plain.test/echo")
        .header("host", "plain.test")
        .header("connection", "x-drop")
        .header("x-drop", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic b3BzOnNlY3JldA==")
        .header("proxy-connection", "keep-alive")
        .header("x-keep", "yes")
        .body(empty())
        .unwrap();
    assert_eq!(conn.send(req).await.status, 200);
    let seen = &plain.requests()[0];
    for dropped in [
        "x-drop",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
    ] {
        assert!(!seen.has_header(dropped), "{dropped}: {:?}", seen.headers);
    }
    assert_eq!(seen.header_values("x-keep"), vec!["yes"]);
}

#[tokio::test]
async fn plain_http_to_refused_upstream_gets_502_naming_host() {
    let proxy = TestProxy::builder()
        .connect_to("gone.test:80", closed_port())
        .start()
        .await;
    let mut conn = front(&proxy).await;
    let reply = conn
        .send(
            Request::builder()
                .uri("http://gone.test/")
                .header("host", "gone.test")
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 502);
    assert!(reply.text().contains("gone.test"), "{}", reply.text());
}

#[tokio::test]
async fn the_host_of_an_absolute_form_request_is_made_from_its_target() {
    let (proxy, plain) = proxy_with_plain_upstream().await;
    for (target, host) in [
        ("http://plain.test/echo?n=1", "plain.test"),
        ("http://plain.test:8080/echo?n=2", "plain.test:8080"),
    ] {
        // Two Host fields, neither naming the target (RFC 9112 §3.2.2: a proxy generates Host
        // from the request target rather than forwarding the received one).
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: evil.example\r\nX-A: 1\r\nHost: other.example\r\n\r\n"
        );
        let (status, _, _) = raw_request(proxy.addr(), request.as_bytes()).await;
        assert_eq!(status, 200, "{target}");
        let seen = plain.requests().pop().unwrap();
        let hosts: Vec<&str> = seen
            .headers
            .iter()
            .filter(|(n, _)| n == "host")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(hosts, [host], "{target}: {:?}", seen.headers);
    }
}
