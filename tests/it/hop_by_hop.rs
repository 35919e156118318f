//! Hop-by-hop headers (RFC 9110 §7.6.1: Connection and the headers it names, Keep-Alive,
//! Proxy-*, TE other than `trailers`, Trailer, Transfer-Encoding, Upgrade) stay on the client's
//! hop; end-to-end headers reach the upstream.

use http::Method;
use testkit::*;

const HOST: &str = "login.salesforce.com";

#[tokio::test]
async fn hop_by_hop_headers_do_not_reach_upstream() {
    let proxy = TestProxy::start("").await;
    let mut conn = proxy.intercepted(HOST, Http::H1).await;
    let req = conn
        .request(Method::POST, HOST, "/echo")
        .header("connection", "keep-alive, x-drop")
        .header("x-drop", "1")
        .header("keep-alive", "timeout=5, max=100")
        .header("proxy-authorization", "Basic b3BzOnNlY3JldA==")
        .header("proxy-connection", "keep-alive")
        .header("te", "gzip")
        .header("x-keep", "yes")
        .header("authorization", "Bearer end-to-end")
        .header("accept", "application/json")
        .body(full("grant_type=refresh_token"))
        .unwrap();
    let reply = conn.send(req).await;
    assert_eq!(reply.status, 200);

    let seen = &proxy.sf.requests_to("/echo")[0];
    for dropped in [
        "x-drop",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
    ] {
        assert!(
            !seen.has_header(dropped),
            "{dropped} must not reach upstream: {:?}",
            seen.headers
        );
    }
    for value in seen.header_values("connection") {
        assert!(
            !value.to_ascii_lowercase().contains("x-drop"),
            "client's Connection header forwarded: {value}"
        );
    }
    assert_eq!(seen.header_values("x-keep"), vec!["yes"]);
    assert_eq!(
        seen.header_values("authorization"),
        vec!["Bearer end-to-end"]
    );
    assert_eq!(seen.header_values("accept"), vec!["application/json"]);
    assert_eq!(seen.body, b"grant_type=refresh_token");
}

#[tokio::test]
async fn te_trailers_reaches_upstream() {
    let proxy = TestProxy::start("").await;
    for http in [Http::H1, Http::H2] {
        let mut conn = proxy.intercepted(HOST, http).await;
        let req = conn
            .request(Method::GET, HOST, "/echo")
            .header("te", "trailers")
            .body(empty())
            .unwrap();
        assert_eq!(conn.send(req).await.status, 200);
    }
    for seen in proxy.sf.requests_to("/echo") {
        assert_eq!(seen.header_values("te"), vec!["trailers"]);
    }
}

#[tokio::test]
async fn chunked_request_body_is_reframed_not_forwarded_as_a_header() {
    let proxy = TestProxy::start("").await;
    let mut conn = proxy.intercepted(HOST, Http::H1).await;
    let req = conn
        .request(Method::POST, HOST, "/echo")
        .header("transfer-encoding", "chunked")
        .body(body_with_trailers(
            vec![
                bytes::Bytes::from_static(b"abc"),
                bytes::Bytes::from_static(b"def"),
            ],
            http::HeaderMap::new(),
        ))
        .unwrap();
    let reply = conn.send(req).await;
    assert_eq!(reply.status, 200);
    let seen = &proxy.sf.requests_to("/echo")[0];
    assert_eq!(seen.body, b"abcdef");
    // Over HTTP/2 upstream there is no Transfer-Encoding at all; over HTTP/1.1 it may only
    // describe the new hop's framing.
    for value in seen.header_values("transfer-encoding") {
        assert_eq!(value, "chunked");
    }
    if seen.version == "HTTP/2.0" {
        assert!(!seen.has_header("transfer-encoding"));
    }
}

#[tokio::test]
async fn hop_by_hop_headers_do_not_reach_an_http1_upstream() {
    let up = Upstreams::with_salesforce(FakeSalesforce::start_http1_only().await).await;
    let proxy = TestProxy::builder().start_with(up).await;
    for http in [Http::H1, Http::H2] {
        let mut conn = proxy.intercepted(HOST, http).await;
        let mut req = conn
            .request(Method::GET, HOST, "/echo")
            .header("x-drop", "1")
            .header("proxy-authorization", "Basic b3BzOnNlY3JldA==")
            .header("x-keep", "yes");
        if http == Http::H1 {
            // HTTP/2 has no Connection header; only an HTTP/1.1 client can name x-drop in it.
            req = req
                .header("connection", "x-drop")
                .header("keep-alive", "timeout=5");
        }
        assert_eq!(conn.send(req.body(empty()).unwrap()).await.status, 200);
    }
    let seen = proxy.sf.requests_to("/echo");
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].version, "HTTP/1.1", "upstream hop is HTTP/1.1");
    assert!(!seen[0].has_header("x-drop"), "{:?}", seen[0].headers);
    for r in &seen {
        assert!(!r.has_header("proxy-authorization"), "{:?}", r.headers);
        assert!(!r.has_header("keep-alive"), "{:?}", r.headers);
        assert_eq!(r.header_values("x-keep"), vec!["yes"]);
    }
}

/// `data` gzip-compressed (a transfer coding, here, not a content coding).
fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

#[tokio::test]
async fn a_gzip_transfer_coding_reaches_an_http1_upstream_with_its_bytes() {
    let up = Upstreams::with_salesforce(FakeSalesforce::start_http1_only().await).await;
    let proxy = TestProxy::builder().start_with(up).await;
    let coded = gzip(b"grant_type=refresh_token&refresh_token=r");
    let mut conn = proxy.intercepted(HOST, Http::H1).await;
    let req = conn
        .request(Method::POST, HOST, "/echo")
        .header("transfer-encoding", "gzip, chunked")
        .body(body_with_trailers(
            vec![bytes::Bytes::from(coded.clone())],
            http::HeaderMap::new(),
        ))
        .unwrap();
    assert_eq!(conn.send(req).await.status, 200);
    let seen = &proxy.sf.requests_to("/echo")[0];
    assert_eq!(seen.body, coded, "the coded bytes, as they came");
    assert_eq!(
        seen.header_values("transfer-encoding").join(", "),
        "gzip, chunked",
        "the upstream is told they are gzip"
    );
}

#[tokio::test]
async fn a_transfer_coding_that_http2_cannot_carry_is_refused_not_sent_as_content() {
    let proxy = TestProxy::start("").await;
    let mut conn = proxy.intercepted(HOST, Http::H1).await;
    let req = conn
        .request(Method::POST, HOST, "/echo")
        .header("transfer-encoding", "gzip, chunked")
        .body(body_with_trailers(
            vec![bytes::Bytes::from(gzip(b"abc"))],
            http::HeaderMap::new(),
        ))
        .unwrap();
    let reply = conn.send(req).await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert!(
        reply.text().contains("Transfer-Encoding (gzip)"),
        "{}",
        reply.text()
    );
    assert!(
        proxy.sf.requests_to("/echo").is_empty(),
        "nothing sent upstream"
    );
}

#[tokio::test]
async fn a_gzip_coded_response_reaches_an_http1_client_and_is_refused_to_an_http2_one() {
    use testkit::faults::{MisbehavingUpstream, Misbehaviour};
    // "hello" gzip-coded, then chunked: a 25-byte gzip member in one chunk.
    const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n19\r\n\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff\xcbH\xcd\xc9\xc9\x07\x00\x86\xa6\x106\x05\x00\x00\x00\r\n0\r\n\r\n";
    let bad = MisbehavingUpstream::start(&[HOST], Misbehaviour::Answer(ANSWER)).await;
    let proxy = TestProxy::builder()
        .connect_to(&format!("{HOST}:443"), bad.addr())
        .extra_root_cert(bad.ca_pem_path())
        .start()
        .await;
    let mut conn = proxy.intercepted(HOST, Http::H1).await;
    let reply = conn.get(HOST, "/coded").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("transfer-encoding"), Some("gzip, chunked"));
    assert_eq!(&reply.body[..], &gzip_member_of_hello()[..]);

    let mut conn = proxy.intercepted(HOST, Http::H2).await;
    let reply = conn.get(HOST, "/coded").await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert!(
        reply.text().contains("Transfer-Encoding gzip"),
        "{}",
        reply.text()
    );
}

/// The gzip member in the answer above.
fn gzip_member_of_hello() -> Vec<u8> {
    b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff\xcbH\xcd\xc9\xc9\x07\x00\x86\xa6\x106\x05\x00\x00\x00".to_vec()
}
