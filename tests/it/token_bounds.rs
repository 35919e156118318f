//! docs/operating.md, "Safety and limits": what a token request may make grantshift hold, and
//! for how long. An intercepted HTTP/2 connection allows `max_concurrent_streams` streams;
//! token bodies share one `token_body_budget` and must arrive within `token_body_timeout` (past
//! either, the request is forwarded untouched as it comes, recorded `skipped`); and a token
//! response whose body stalls upstream reaches the client within `request_timeout`, the rest
//! streamed on as it comes.

use bytes::Bytes;
use http::Method;
use http_body_util::channel::{Channel, Sender};
use http_body_util::BodyExt;
use std::convert::Infallible;
use std::future::Future;
use testkit::faults::*;
use testkit::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

/// A password grant for the mapped acme user, padded (with a parameter Salesforce ignores) to
/// `len` bytes.
fn padded_acme_form(len: usize) -> String {
    let mut form = acme_password_form();
    form.push_str("&padding=");
    assert!(form.len() < len, "{len} is too short for the acme form");
    form.push_str(&"p".repeat(len - form.len()));
    form
}

/// Start a token request whose body the test feeds through the returned sender; the task
/// ends with the client's reply.
async fn open_token_request(
    proxy: &TestProxy,
    len: usize,
) -> (Sender<Bytes, Infallible>, tokio::task::JoinHandle<Reply>) {
    let mut conn = proxy.intercepted(LOGIN_HOST, Http::H1).await;
    let (tx, body) = Channel::<Bytes, Infallible>::new(4);
    let req = conn
        .request(Method::POST, LOGIN_HOST, TOKEN_PATH)
        .header(FORM.0, FORM.1)
        .header("content-length", len.to_string())
        .body(BodyExt::boxed(body))
        .unwrap();
    (tx, tokio::spawn(async move { conn.send(req).await }))
}

async fn send(tx: &mut Sender<Bytes, Infallible>, bytes: &[u8]) {
    tx.send_data(Bytes::copy_from_slice(bytes))
        .await
        .expect("the proxy reads the body");
}

async fn wait_buffered(proxy: &TestProxy, bytes: i64, what: &str) {
    eventually(what, || match proxy.token_body_bytes() {
        n if n == bytes => Ok(()),
        n => Err(format!("grantshift_token_body_bytes = {n}, want {bytes}")),
    })
    .await;
}

#[tokio::test]
async fn token_bodies_past_the_shared_budget_are_forwarded_untouched() {
    let proxy = TestProxy::builder()
        .max_token_body(1000)
        .proxy("token_body_budget = 1000")
        .extra_toml(&acme_mapping())
        .start()
        .await;
    // The first login holds 600 bytes of the budget while its body is still arriving.
    let first_body = padded_acme_form(900);
    let (mut first, first_reply) = open_token_request(&proxy, first_body.len()).await;
    send(&mut first, &first_body.as_bytes()[..600]).await;
    wait_buffered(&proxy, 600, "the first login's 600 bytes buffered").await;

    // The second needs 500 more: no room, so it goes upstream as it came, unread.
    let second_body = padded_acme_form(500);
    let (mut second, second_reply) = open_token_request(&proxy, second_body.len()).await;
    send(&mut second, second_body.as_bytes()).await;
    let second_reply = within(10, "the second login's answer", second_reply)
        .await
        .unwrap();
    assert_eq!(second_reply.status, 200, "{}", second_reply.text());
    let event = proxy.next_event().await;
    assert_eq!(event["action"], "skipped", "{event}");
    assert_eq!(event["reason"], "memory_budget", "{event}");
    let seen = proxy.sf.token_requests();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].body == second_body.as_bytes(),
        "forwarded byte for byte"
    );
    assert_eq!(proxy.token_body_bytes(), 600, "nothing reserved for it");

    // The first one, once whole, is upgraded as usual; then the budget is free again.
    send(&mut first, &first_body.as_bytes()[600..]).await;
    let first_reply = within(10, "the first login's answer", first_reply)
        .await
        .unwrap();
    assert_eq!(first_reply.status, 200, "{}", first_reply.text());
    let event = proxy.next_event().await;
    assert_eq!(event["action"], "upgraded", "{event}");
    wait_buffered(&proxy, 0, "the budget given back").await;
}

#[tokio::test]
async fn a_token_body_slower_than_token_body_timeout_is_forwarded_untouched_as_it_comes() {
    let proxy = TestProxy::builder()
        .proxy("token_body_timeout = \"300ms\"")
        .extra_toml(&acme_mapping())
        .start()
        .await;
    let body = padded_acme_form(400);
    let (mut tx, reply) = open_token_request(&proxy, body.len()).await;
    send(&mut tx, &body.as_bytes()[..200]).await;
    wait_buffered(&proxy, 200, "the first half buffered").await;
    // Past the deadline the buffered half goes upstream and the budget is given back, while
    // the client is still sending.
    wait_buffered(&proxy, 0, "the half forwarded at token_body_timeout").await;
    send(&mut tx, &body.as_bytes()[200..]).await;
    let reply = within(10, "the slow login's answer", reply).await.unwrap();
    assert_eq!(reply.status, 200, "the login still works: {}", reply.text());
    let event = proxy.next_event().await;
    assert_eq!(event["action"], "skipped", "{event}");
    assert_eq!(event["reason"], "body_timeout", "{event}");
    let seen = proxy.sf.token_requests();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].body == body.as_bytes(), "forwarded byte for byte");
}

#[tokio::test]
async fn intercepted_http2_connections_allow_max_concurrent_streams() {
    for (config, want) in [("", 100), ("max_concurrent_streams = 7", 7)] {
        let proxy = TestProxy::builder().proxy(config).start().await;
        let tls = proxy.intercept_tls(LOGIN_HOST, &[b"h2"]).await;
        let (mut send, mut conn) = h2::client::handshake(tls).await.expect("h2 handshake");
        let req = http::Request::get(format!("https://{LOGIN_HOST}/echo"))
            .body(())
            .unwrap();
        let (resp, _) = send.send_request(req, true).expect("send");
        // Drive the connection until the answer: the server's SETTINGS came before it.
        let mut resp = std::pin::pin!(resp);
        let resp = within(
            10,
            "an answer over h2",
            std::future::poll_fn(|cx| {
                let _ = std::pin::Pin::new(&mut conn).poll(cx);
                resp.as_mut().poll(cx)
            }),
        )
        .await
        .expect("response");
        assert_eq!(resp.status(), 200);
        assert_eq!(
            conn.max_concurrent_send_streams(),
            want,
            "SETTINGS_MAX_CONCURRENT_STREAMS with {config:?}"
        );
    }
}

#[tokio::test]
async fn a_token_response_that_stalls_mid_body_reaches_the_client_within_request_timeout() {
    let bad = MisbehavingUpstream::start(
        &[LOGIN_HOST],
        Misbehaviour::StallMidBody {
            declared: 100,
            sent: 10,
        },
    )
    .await;
    let proxy = TestProxy::builder()
        .connect_to(&format!("{LOGIN_HOST}:443"), bad.addr())
        .extra_root_cert(bad.ca_pem_path())
        .request_timeout("300ms")
        .start()
        .await;
    let mut tls = proxy.intercept_tls(LOGIN_HOST, &[b"http/1.1"]).await;
    // An unmapped password login: forwarded as it came, its answer read for the event's facts.
    let body = acme_password_form();
    let head = format!(
        "POST {TOKEN_PATH} HTTP/1.1\r\nHost: {LOGIN_HOST}\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(body.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    // The upstream never sends the other 90 bytes: the head and the 10 must come anyway.
    let got = within(10, "the head and the first 10 body bytes", async {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.ends_with(&[b'{'; 10]) {
            let n = tls.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        got
    })
    .await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("content-length: 100"),
        "the upstream's head as it came: {text}"
    );
}
