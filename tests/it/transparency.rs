//! Intercepted requests are forwarded transparently: method, path, query, header values and
//! their order, body bytes and trailers arrive as sent, in both directions, whether the client
//! speaks HTTP/1.1 or HTTP/2.

use bytes::Bytes;
use http::{HeaderMap, Method};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use std::convert::Infallible;
use testkit::*;

const HOST: &str = "acme.my.salesforce.com";

/// A body streamed in 64 KiB chunks with no length known up front.
fn streamed(bytes: &[u8]) -> ReqBody {
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = bytes
        .chunks(64 * 1024)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    BodyExt::boxed(StreamBody::new(futures_util::stream::iter(frames)))
}

async fn get_arrives_unchanged(http: Http) {
    let proxy = TestProxy::start("").await;
    let mut conn = proxy.intercepted(HOST, http).await;
    let reply = conn.get(HOST, "/echo?a=1&b=two%20words&a=3").await;
    assert_eq!(reply.status, 200);
    let echo = reply.json();
    assert_eq!(echo["method"], "GET");
    assert!(
        echo["uri"]
            .as_str()
            .unwrap()
            .ends_with("/echo?a=1&b=two%20words&a=3"),
        "path and query arrive unchanged: {}",
        echo["uri"]
    );
    assert_eq!(echo["host"], HOST);
    assert_eq!(echo["sni"], HOST, "upstream TLS names the real host");
    assert_eq!(echo["body_len"], 0);

    let seen = &proxy.sf.requests_to("/echo")[0];
    assert_eq!(seen.query.as_deref(), Some("a=1&b=two%20words&a=3"));
}

#[tokio::test]
async fn get_arrives_with_method_path_query_and_host_over_http1() {
    get_arrives_unchanged(Http::H1).await;
}

#[tokio::test]
async fn get_arrives_with_method_path_query_and_host_over_http2() {
    get_arrives_unchanged(Http::H2).await;
}

async fn header_values_and_order_are_preserved(http: Http) {
    let proxy = TestProxy::start("").await;
    let mut conn = proxy.intercepted(HOST, http).await;
    let odd = "a,  b ,c;q=0.5,,  \"x, y\"\tz";
    let req = conn
        .request(Method::PATCH, HOST, "/echo")
        .header("x-b", "2")
        .header("x-a", "1")
        .header("x-a", "3")
        .header("x-odd", odd)
        .header("authorization", "Bearer 00Dxx0000001gPL!AQ4AQFwxyz")
        .header("content-type", "application/json; charset=UTF-8")
        .body(full(r#"{"Name":"Acme"}"#))
        .unwrap();
    let reply = conn.send(req).await;
    assert_eq!(reply.status, 200);
    let echo = reply.json();
    assert_eq!(echo["method"], "PATCH");

    let received = json_pairs(&echo["headers"]);
    let custom: Vec<(String, String)> = received
        .iter()
        .filter(|(n, _)| n.starts_with("x-"))
        .cloned()
        .collect();
    let expected = vec![
        ("x-b".to_string(), "2".to_string()),
        ("x-a".to_string(), "1".to_string()),
        ("x-a".to_string(), "3".to_string()),
        ("x-odd".to_string(), odd.to_string()),
    ];
    assert_eq!(custom, expected, "custom headers, values and order");
    assert!(received.contains(&(
        "authorization".to_string(),
        "Bearer 00Dxx0000001gPL!AQ4AQFwxyz".to_string()
    )));
    assert!(received.contains(&(
        "content-type".to_string(),
        "application/json; charset=UTF-8".to_string()
    )));
    assert_eq!(echo["body_sha256"], sha256_hex(br#"{"Name":"Acme"}"#));
}

#[tokio::test]
async fn header_values_and_order_are_preserved_over_http1() {
    header_values_and_order_are_preserved(Http::H1).await;
}

#[tokio::test]
async fn header_values_and_order_are_preserved_over_http2() {
    header_values_and_order_are_preserved(Http::H2).await;
}

async fn five_megabyte_post_arrives_byte_identical(http: Http) {
    let proxy = TestProxy::start("").await;
    let mut conn = proxy.intercepted(HOST, http).await;
    let body = pseudo_random_bytes(5_000_000, 7);
    let req = conn
        .request(Method::POST, HOST, "/echo")
        .header("content-type", "application/octet-stream")
        .body(streamed(&body))
        .unwrap();
    let reply = conn.send(req).await;
    assert_eq!(reply.status, 200);
    let echo = reply.json();
    assert_eq!(echo["body_len"], 5_000_000);
    assert_eq!(echo["body_sha256"], sha256_hex(&body));
    let seen = &proxy.sf.requests_to("/echo")[0];
    assert!(seen.body == body, "upstream received the exact bytes sent");
}

#[tokio::test]
async fn five_megabyte_post_arrives_byte_identical_over_http1() {
    five_megabyte_post_arrives_byte_identical(Http::H1).await;
}

#[tokio::test]
async fn five_megabyte_post_arrives_byte_identical_over_http2() {
    five_megabyte_post_arrives_byte_identical(Http::H2).await;
}

async fn five_megabyte_response_arrives_byte_identical(http: Http) {
    let proxy = TestProxy::start("").await;
    let mut conn = proxy.intercepted(HOST, http).await;
    let reply = conn.get(HOST, "/bytes?n=5000000").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len(), 5_000_000);
    let expected = sha256_hex(&pseudo_random_bytes(5_000_000, BYTES_SEED));
    assert_eq!(reply.header("x-sha256"), Some(expected.as_str()));
    assert_eq!(sha256_hex(&reply.body), expected);
}

#[tokio::test]
async fn five_megabyte_response_arrives_byte_identical_over_http1() {
    five_megabyte_response_arrives_byte_identical(Http::H1).await;
}

#[tokio::test]
async fn five_megabyte_response_arrives_byte_identical_over_http2() {
    five_megabyte_response_arrives_byte_identical(Http::H2).await;
}

async fn request_trailers_reach_upstream(proxy: &TestProxy, http: Http) {
    let mut conn = proxy.intercepted(HOST, http).await;
    let mut trailers = HeaderMap::new();
    trailers.insert("x-request-checksum", "abc123".parse().unwrap());
    trailers.insert("x-trailer-b", "b value".parse().unwrap());
    let req = conn
        .request(Method::POST, HOST, "/echo")
        .header("te", "trailers")
        // HTTP/1.1 senders declare the trailer fields they will send.
        .header("trailer", "x-request-checksum, x-trailer-b")
        .body(body_with_trailers(
            vec![
                Bytes::from_static(b"part one, "),
                Bytes::from_static(b"part two"),
            ],
            trailers,
        ))
        .unwrap();
    let reply = conn.send(req).await;
    assert_eq!(reply.status, 200);
    let echo = reply.json();
    assert_eq!(echo["body_sha256"], sha256_hex(b"part one, part two"));
    let got = json_pairs(&echo["trailers"]);
    assert!(
        got.contains(&("x-request-checksum".into(), "abc123".into()))
            && got.contains(&("x-trailer-b".into(), "b value".into())),
        "request trailers at upstream (client {http:?}, upstream {}): {got:?}",
        echo["version"]
    );
}

#[tokio::test]
async fn request_trailers_reach_upstream_over_http2() {
    let proxy = TestProxy::start("").await;
    request_trailers_reach_upstream(&proxy, Http::H2).await;
}

#[tokio::test]
async fn request_trailers_reach_upstream_over_http1() {
    let proxy = TestProxy::start("").await;
    request_trailers_reach_upstream(&proxy, Http::H1).await;
}

#[tokio::test]
async fn request_trailers_reach_an_http1_only_upstream() {
    let up = Upstreams::with_salesforce(FakeSalesforce::start_http1_only().await).await;
    let proxy = TestProxy::builder().start_with(up).await;
    request_trailers_reach_upstream(&proxy, Http::H2).await;
    request_trailers_reach_upstream(&proxy, Http::H1).await;
}

async fn response_trailers_reach_client(http: Http) {
    let proxy = TestProxy::start("").await;
    let mut conn = proxy.intercepted(HOST, http).await;
    // HTTP/1.1 only carries trailers to a client that says it accepts them.
    let req = conn
        .request(Method::GET, HOST, "/trailers")
        .header("te", "trailers")
        .body(empty())
        .unwrap();
    let reply = conn.send(req).await;
    assert_eq!(reply.status, 200);
    let body = TRAILER_CHUNKS.concat();
    assert_eq!(reply.text(), body);
    let trailers = reply.trailers.expect("response trailers reach the client");
    assert_eq!(
        trailers.get("x-checksum").and_then(|v| v.to_str().ok()),
        Some(sha256_hex(body.as_bytes()).as_str())
    );
    assert_eq!(
        trailers.get("x-trailer-two").and_then(|v| v.to_str().ok()),
        Some("done")
    );
}

#[tokio::test]
async fn response_trailers_reach_client_over_http2() {
    response_trailers_reach_client(Http::H2).await;
}

#[tokio::test]
async fn response_trailers_reach_client_over_http1_with_te_trailers() {
    response_trailers_reach_client(Http::H1).await;
}

#[tokio::test]
async fn several_requests_share_one_intercepted_connection() {
    let proxy = TestProxy::start("").await;
    for http in [Http::H1, Http::H2] {
        let mut conn = proxy.intercepted("login.salesforce.com", http).await;
        for i in 0..3 {
            let reply = conn
                .get("login.salesforce.com", &format!("/echo?i={i}"))
                .await;
            assert_eq!(reply.status, 200);
            assert!(reply.json()["uri"]
                .as_str()
                .unwrap()
                .ends_with(&format!("i={i}")));
        }
    }
    assert_eq!(proxy.sf.requests_to("/echo").len(), 6);
}

#[tokio::test]
async fn http2_client_reaches_an_http1_only_upstream_unchanged() {
    let up = Upstreams::with_salesforce(FakeSalesforce::start_http1_only().await).await;
    let proxy = TestProxy::builder().start_with(up).await;
    let mut conn = proxy.intercepted(HOST, Http::H2).await;
    let body = pseudo_random_bytes(300_000, 3);
    let req = conn
        .request(Method::PUT, HOST, "/echo?q=1")
        .header("x-b", "2")
        .header("x-a", "1")
        .header("x-a", "3")
        .body(streamed(&body))
        .unwrap();
    let reply = conn.send(req).await;
    assert_eq!(reply.status, 200);
    let echo = reply.json();
    assert_eq!(echo["version"], "HTTP/1.1", "upstream hop is HTTP/1.1");
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["host"], HOST);
    assert_eq!(echo["body_sha256"], sha256_hex(&body));
    let custom: Vec<(String, String)> = json_pairs(&echo["headers"])
        .into_iter()
        .filter(|(n, _)| n.starts_with("x-"))
        .collect();
    assert_eq!(
        custom,
        vec![
            ("x-b".into(), "2".into()),
            ("x-a".into(), "1".into()),
            ("x-a".into(), "3".into())
        ]
    );
    let reply = conn.get(HOST, "/bytes?n=1000000").await;
    assert_eq!(
        sha256_hex(&reply.body),
        sha256_hex(&pseudo_random_bytes(1_000_000, BYTES_SEED))
    );
}
