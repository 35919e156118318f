//! Limits (docs/operating.md, "Safety and limits"): the connection cap makes extra clients wait instead of
//! being refused; a request head must arrive within `header_read_timeout` and fit in
//! `max_header_bytes`; idle client connections and idle blind tunnels are closed, a tunnel with
//! bytes moving is not; the leaf-certificate cache stays within `leaf_cache_size`.

use std::time::Duration;
use testkit::faults::*;
use testkit::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const CONNECT_ECHO: &[u8] = b"CONNECT echo.example:443 HTTP/1.1\r\nHost: echo.example:443\r\n\r\n";

#[tokio::test]
async fn third_client_waits_for_a_free_slot_at_max_connections_2() {
    let proxy = TestProxy::builder()
        .proxy("max_connections = 2")
        .start()
        .await;
    // Two blind tunnels hold both slots (a tunnel keeps its slot while it is open).
    let (status, mut first) = proxy.connect("echo.example:443").await;
    assert_eq!(status, 200);
    echo_round_trip(&mut first, b"first").await;
    let (status, mut second) = proxy.connect("echo.example:443").await;
    assert_eq!(status, 200);
    echo_round_trip(&mut second, b"second").await;

    // The third client's TCP connection completes (the kernel's listen backlog) and it sends
    // its CONNECT; its answer is the observable.
    let mut third = TcpStream::connect(proxy.addr()).await.expect("connect");
    third.write_all(CONNECT_ECHO).await.unwrap();
    let (order_tx, mut order) = mpsc::unbounded_channel::<&'static str>();
    let answered = order_tx.clone();
    let mut third_task = tokio::spawn(async move {
        let head = try_read_head(&mut third).await;
        let _ = answered.send("third answered");
        (head, third)
    });

    // While both slots are held the third is not served, and the first two still are. (A
    // bounded observation window for something that must not happen, not a synchronisation.)
    let early = tokio::time::timeout(Duration::from_millis(500), &mut third_task).await;
    assert!(
        early.is_err(),
        "the third connection was served while two were open: {:?}",
        early.map(|r| r.map(|(head, _)| head))
    );
    echo_round_trip(&mut first, b"still first").await;
    echo_round_trip(&mut second, b"still second").await;

    // Closing one of the first two lets the third in.
    order_tx.send("first closed").unwrap();
    drop(first);
    let (head, mut third) = within(10, "the third client's answer", third_task)
        .await
        .unwrap();
    let head = head.expect("the third connection gets an answer, not a close");
    assert_eq!(status_of(&head), 200, "{head}");
    assert_eq!(order.recv().await, Some("first closed"));
    assert_eq!(order.recv().await, Some("third answered"));
    echo_round_trip(&mut third, b"third").await;
    echo_round_trip(&mut second, b"second again").await;
}

#[tokio::test]
async fn slowloris_half_request_head_is_disconnected_after_header_read_timeout() {
    // idle_timeout stays far away: only header_read_timeout can close the slow client in time.
    let proxy = TestProxy::builder()
        .proxy("header_read_timeout = \"300ms\"")
        .proxy("idle_timeout = \"60s\"")
        .start()
        .await;
    let mut slow = TcpStream::connect(proxy.addr()).await.unwrap();
    slow.write_all(b"CONNECT echo.example:443 HTTP/1.1\r\nHost: echo.exa")
        .await
        .unwrap();

    // A normal client on another connection is served meanwhile...
    let (status, mut tunnel) = proxy.connect("echo.example:443").await;
    assert_eq!(status, 200);
    echo_round_trip(&mut tunnel, b"normal client").await;

    // ...and the slow one is disconnected (EOF or reset), with no tunnel granted.
    let got = read_until_closed(&mut slow, 5, "the slowloris client being disconnected").await;
    let text = String::from_utf8_lossy(&got);
    assert!(
        !text.starts_with("HTTP/1.1 200"),
        "a half request head must not open a tunnel: {text:?}"
    );

    echo_round_trip(&mut tunnel, b"still served").await;
    let (status, mut again) = proxy.connect("echo.example:443").await;
    assert_eq!(status, 200);
    echo_round_trip(&mut again, b"new client").await;
}

#[tokio::test]
async fn a_client_that_sends_no_tls_handshake_after_connect_is_disconnected() {
    // idle_timeout stays far away: only header_read_timeout can close the silent client.
    let proxy = TestProxy::builder()
        .proxy("header_read_timeout = \"300ms\"")
        .proxy("idle_timeout = \"60s\"")
        .start()
        .await;
    let (status, mut silent) = proxy.connect("login.salesforce.com:443").await;
    assert_eq!(status, 200, "an intercepted host is answered at once");

    // Meanwhile a normal client is intercepted and served.
    let mut ok = proxy.intercepted("login.salesforce.com", Http::H1).await;
    assert_eq!(ok.get("login.salesforce.com", "/echo").await.status, 200);

    let got = read_until_closed(
        &mut silent,
        5,
        "the client without a TLS handshake being disconnected",
    )
    .await;
    assert!(
        got.is_empty(),
        "nothing is sent to a client that never said hello: {got:?}"
    );
}

#[tokio::test]
async fn slowloris_half_request_head_inside_interception_is_disconnected() {
    let proxy = TestProxy::builder()
        .proxy("header_read_timeout = \"300ms\"")
        .proxy("idle_timeout = \"60s\"")
        .start()
        .await;
    let mut slow = proxy
        .intercept_tls("login.salesforce.com", &[b"http/1.1"])
        .await;
    slow.write_all(b"GET /echo HTTP/1.1\r\nHost: login.sal")
        .await
        .unwrap();
    slow.flush().await.unwrap();

    let mut ok = proxy.intercepted("login.salesforce.com", Http::H1).await;
    assert_eq!(ok.get("login.salesforce.com", "/echo").await.status, 200);

    let got = read_until_closed(
        &mut slow,
        5,
        "the slow intercepted client being disconnected",
    )
    .await;
    assert!(
        !String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"),
        "a half request head is never forwarded: {got:?}"
    );
    assert!(
        proxy.sf.requests_to("/echo").len() == 1,
        "only the normal client's request reached upstream"
    );
    // A new connection: `ok` itself has been idle about as long as header_read_timeout.
    drop(ok);
    let mut again = proxy.intercepted("login.salesforce.com", Http::H1).await;
    assert_eq!(again.get("login.salesforce.com", "/echo").await.status, 200);
}

/// Send `request` on a fresh connection; the response head (`None`: closed without one).
async fn raw_head(proxy: std::net::SocketAddr, request: &[u8]) -> Option<String> {
    within(10, "the proxy's answer to a raw request", async {
        let mut s = TcpStream::connect(proxy).await.unwrap();
        // The proxy may answer and close before it has read everything: a failed write is
        // part of what is being observed, not a test error.
        let _ = s.write_all(request).await;
        try_read_head(&mut s).await
    })
    .await
}

#[tokio::test]
async fn request_head_over_max_header_bytes_gets_431_and_the_proxy_keeps_serving() {
    let proxy = TestProxy::builder()
        .proxy("max_header_bytes = 8192")
        .start()
        .await;
    let big = "a".repeat(20 * 1024);
    let request = format!(
        "CONNECT echo.example:443 HTTP/1.1\r\nHost: echo.example:443\r\nX-Big: {big}\r\n\r\n"
    );
    let head = raw_head(proxy.addr(), request.as_bytes())
        .await
        .expect("a 20 KB request head gets an error status, not a silent close");
    assert_eq!(status_of(&head), 431, "{head}");

    // A head under the limit is served, on a new connection.
    let small = "a".repeat(2 * 1024);
    let request = format!(
        "CONNECT echo.example:443 HTTP/1.1\r\nHost: echo.example:443\r\nX-Small: {small}\r\n\r\n"
    );
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let head = within(10, "answer to a small head", try_read_head(&mut s))
        .await
        .expect("answered");
    assert_eq!(status_of(&head), 200, "{head}");
    echo_round_trip(&mut s, b"after the big head").await;
}

#[tokio::test]
async fn idle_keep_alive_client_connection_is_closed_after_idle_timeout() {
    let plain = PlainHttpServer::start().await;
    let proxy = TestProxy::builder()
        .connect_to("plain.example:80", plain.addr())
        .proxy("idle_timeout = \"300ms\"")
        .proxy("header_read_timeout = \"60s\"")
        .start()
        .await;
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    s.write_all(b"GET http://plain.example/echo HTTP/1.1\r\nHost: plain.example\r\n\r\n")
        .await
        .unwrap();
    let (status, headers) = within(10, "response", read_response_head(&mut s)).await;
    assert_eq!(status, 200);
    let body = within(10, "body", read_response_body(&mut s, &headers)).await;
    assert!(!body.is_empty());
    assert!(
        !headers
            .iter()
            .any(|(n, v)| n == "connection" && v.eq_ignore_ascii_case("close")),
        "the connection is kept alive after the response: {headers:?}"
    );

    // Then nothing moves: the proxy closes it (bounded well under header_read_timeout).
    let got = read_until_closed(&mut s, 5, "the idle keep-alive connection being closed").await;
    assert!(got.is_empty(), "nothing but a close: {got:?}");
    assert_eq!(plain.requests().len(), 1);
}

#[tokio::test]
async fn idle_intercepted_keep_alive_connection_is_closed_after_idle_timeout() {
    let proxy = TestProxy::builder()
        .proxy("idle_timeout = \"300ms\"")
        .proxy("header_read_timeout = \"60s\"")
        .start()
        .await;
    let mut tls = proxy
        .intercept_tls("login.salesforce.com", &[b"http/1.1"])
        .await;
    tls.write_all(b"GET /echo HTTP/1.1\r\nHost: login.salesforce.com\r\n\r\n")
        .await
        .unwrap();
    tls.flush().await.unwrap();
    let (status, headers) = within(10, "response", read_response_head(&mut tls)).await;
    assert_eq!(status, 200);
    within(10, "body", read_response_body(&mut tls, &headers)).await;

    let got = read_until_closed(&mut tls, 5, "the idle intercepted connection being closed").await;
    assert!(got.is_empty(), "nothing but a close: {got:?}");
    proxy.assert_no_active_connections().await;
}

#[tokio::test]
async fn idle_blind_tunnel_is_closed_after_tunnel_idle_timeout() {
    let proxy = TestProxy::builder()
        .proxy("tunnel_idle_timeout = \"300ms\"")
        .proxy("idle_timeout = \"60s\"")
        .start()
        .await;
    let (status, mut tunnel) = proxy.connect("echo.example:443").await;
    assert_eq!(status, 200);
    echo_round_trip(&mut tunnel, b"hello").await;
    assert_eq!(proxy.active("tunnel"), 1);

    let got = read_until_closed(&mut tunnel, 5, "the idle tunnel being closed").await;
    assert!(
        !got.starts_with(EOF_MARKER),
        "the proxy closed the tunnel, not the client: {got:?}"
    );
    proxy.assert_no_active_connections().await;
}

#[tokio::test]
async fn blind_tunnel_with_a_steady_one_way_download_stays_open() {
    // 15 ticks, 100 ms apart: the download lasts ~1.4 s, far past the 300 ms idle timeout,
    // and the client never sends a byte.
    let drip = DripServer::start(15, Duration::from_millis(100)).await;
    let proxy = TestProxy::builder()
        .connect_to("drip.example:443", drip.addr())
        .proxy("tunnel_idle_timeout = \"300ms\"")
        .proxy("idle_timeout = \"60s\"")
        .start()
        .await;
    let (status, mut tunnel) = proxy.connect("drip.example:443").await;
    assert_eq!(status, 200);
    let got = read_until_closed(&mut tunnel, 10, "the whole download").await;
    assert_eq!(
        got,
        DRIP.repeat(15),
        "every tick arrives: the tunnel stayed open while bytes moved one way"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaf_cache_stays_within_leaf_cache_size_after_2000_distinct_hosts() {
    let proxy = TestProxy::builder()
        .proxy("leaf_cache_size = 100")
        .start()
        .await;
    let connector = proxy.tls_connector(&[b"http/1.1"]);
    // A host seen again while its leaf is cached gets the same certificate.
    let reused = "reused.my.salesforce.com";
    let once = serial(&handshake(proxy.addr(), &connector, reused).await);
    let twice = serial(&handshake(proxy.addr(), &connector, reused).await);
    assert_eq!(once, twice, "a cached leaf is reused");

    let hosts: Vec<String> = (0..2000)
        .map(|i| format!("h{i}.my.salesforce.com"))
        .collect();
    let first_pass = handshakes(proxy.addr(), &connector, hosts.clone(), 32).await;
    let cached = proxy.handle().cached_leaves();

    // At most 100 leaves are kept, so at most 100 of the first 200 hosts can still have theirs
    // (whichever the eviction policy keeps): the others get a freshly minted certificate.
    let sample: Vec<String> = hosts[..200].to_vec();
    let second_pass = handshakes(proxy.addr(), &connector, sample.clone(), 32).await;
    let reminted = sample
        .iter()
        .filter(|h| first_pass[*h] != second_pass[*h])
        .count();
    assert!(
        cached <= 100,
        "leaf_cache_size = 100, but {cached} leaves are cached after 2,000 hosts \
         ({reminted} of the first 200 hosts got a new leaf on their second visit)"
    );
    assert!(
        reminted >= 100,
        "only {reminted} of the first 200 hosts got a freshly minted leaf on their second \
         visit; at most 100 can have been kept"
    );
}

/// A request head of exactly `len` bytes (request line and fields, the blank line included):
/// `start` and `fields`, padded with an `X-Pad` field.
fn head_of(len: usize, start: &str) -> String {
    let bare = format!("{start}X-Pad: \r\n\r\n");
    assert!(bare.len() < len);
    format!("{start}X-Pad: {}\r\n\r\n", "a".repeat(len - bare.len()))
}

#[tokio::test]
async fn max_header_bytes_is_exact_on_the_front_and_on_intercepted_connections() {
    let limit = 65536;
    let proxy = TestProxy::builder()
        .proxy(&format!("max_header_bytes = {limit}"))
        .start()
        .await;
    let connect = "CONNECT echo.example:443 HTTP/1.1\r\nHost: echo.example:443\r\n";
    for (len, want) in [(limit, 200), (limit + 1, 431), (100_000, 431)] {
        let head = raw_head(proxy.addr(), head_of(len, connect).as_bytes())
            .await
            .expect("answered");
        assert_eq!(status_of(&head), want, "a {len}-byte CONNECT head: {head}");
    }
    // Intercepted, with a limit the upstream (whose own limit is 16 KiB) also accepts.
    let limit = 8192;
    let proxy = TestProxy::builder()
        .proxy(&format!("max_header_bytes = {limit}"))
        .start()
        .await;
    let get = "GET /echo HTTP/1.1\r\nHost: login.salesforce.com\r\n";
    for (len, want) in [(limit, 200), (limit + 1, 431)] {
        let mut tls = proxy
            .intercept_tls("login.salesforce.com", &[b"http/1.1"])
            .await;
        let _ = tls.write_all(head_of(len, get).as_bytes()).await;
        let head = within(10, "the intercepted answer", try_read_head(&mut tls))
            .await
            .expect("answered");
        assert_eq!(
            status_of(&head),
            want,
            "a {len}-byte intercepted head: {head}"
        );
    }
}
