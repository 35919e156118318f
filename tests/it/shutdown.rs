//! Graceful shutdown: when the shutdown future resolves, `serve` stops accepting, lets
//! in-flight requests and open tunnels finish within `shutdown_grace`, then returns.

use http::Method;
use std::time::Duration;
use testkit::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `serve` must return as soon as the work is drained; 10 s against a 30 s grace tells "drained"
/// from "waited out the grace period".
async fn returns_before_grace_ends(proxy: &mut TestProxy) {
    tokio::time::timeout(Duration::from_secs(10), proxy.stopped())
        .await
        .expect("serve returns once drained, not at the end of the 30s grace period")
        .expect("serve returns Ok");
}

async fn in_flight_request_completes_after_shutdown(http: Http) {
    let mut proxy = TestProxy::builder()
        .shutdown_grace("30s")
        .request_timeout("60s")
        .start()
        .await;
    let host = "login.salesforce.com";
    let mut conn = proxy.intercepted(host, http).await;
    let req = conn
        .request(Method::GET, host, "/hold")
        .body(empty())
        .unwrap();
    let in_flight = tokio::spawn(async move {
        let reply = conn.send(req).await;
        drop(conn);
        reply
    });
    within(20, "request reaching /hold", proxy.sf.wait_hold_arrived()).await;

    proxy.begin_shutdown();
    proxy.shutdown_observed().await;
    assert!(
        !proxy.serve_returned(),
        "serve must not return while a request is in flight"
    );

    proxy.sf.release_holds();
    let reply = within(20, "held request completing", in_flight)
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "released\n");
    returns_before_grace_ends(&mut proxy).await;
}

#[tokio::test]
async fn in_flight_request_completes_after_shutdown_over_http1() {
    in_flight_request_completes_after_shutdown(Http::H1).await;
}

#[tokio::test]
async fn in_flight_request_completes_after_shutdown_over_http2() {
    in_flight_request_completes_after_shutdown(Http::H2).await;
}

#[tokio::test]
async fn open_blind_tunnel_keeps_working_during_grace_period() {
    let mut proxy = TestProxy::builder().shutdown_grace("30s").start().await;
    let (status, mut tcp) = proxy.connect("echo.example:443").await;
    assert_eq!(status, 200);
    let mut buf = [0u8; 6];
    tcp.write_all(b"before").await.unwrap();
    within(20, "echo before shutdown", tcp.read_exact(&mut buf))
        .await
        .unwrap();
    assert_eq!(&buf, b"before");

    proxy.begin_shutdown();
    proxy.shutdown_observed().await;

    tcp.write_all(b"during").await.unwrap();
    within(20, "echo during the grace period", tcp.read_exact(&mut buf))
        .await
        .expect("the tunnel still carries bytes after shutdown began");
    assert_eq!(&buf, b"during");
    assert!(
        !proxy.serve_returned(),
        "serve must not return while a tunnel is open"
    );

    tcp.shutdown().await.unwrap();
    let mut rest = Vec::new();
    within(20, "tunnel closing", tcp.read_to_end(&mut rest))
        .await
        .unwrap();
    assert_eq!(rest, EOF_MARKER);
    drop(tcp);
    returns_before_grace_ends(&mut proxy).await;
}

#[tokio::test]
async fn open_tunnel_is_closed_when_the_grace_period_ends() {
    let mut proxy = TestProxy::builder().shutdown_grace("1s").start().await;
    let (status, mut tcp) = proxy.connect("echo.example:443").await;
    assert_eq!(status, 200);
    proxy.begin_shutdown();
    proxy.shutdown_observed().await;
    // The client never closes the tunnel: serve returns when the grace period ends ...
    within(
        20,
        "serve returning after the grace period",
        proxy.stopped(),
    )
    .await
    .expect("serve returns Ok after the grace period");
    // ... and the tunnel it gave up on is closed, not left running detached.
    let mut rest = Vec::new();
    let _ = within(
        5,
        "tunnel closed once serve has returned",
        tcp.read_to_end(&mut rest),
    )
    .await;
}

#[tokio::test]
async fn idle_client_connections_do_not_hold_shutdown_for_the_grace_period() {
    let mut proxy = TestProxy::builder().shutdown_grace("30s").start().await;
    let mut h1 = proxy.intercepted("login.salesforce.com", Http::H1).await;
    let mut h2 = proxy.intercepted("test.salesforce.com", Http::H2).await;
    assert_eq!(h1.get("login.salesforce.com", "/echo").await.status, 200);
    assert_eq!(h2.get("test.salesforce.com", "/echo").await.status, 200);
    // Both connections stay open and idle.
    proxy.begin_shutdown();
    returns_before_grace_ends(&mut proxy).await;
    drop((h1, h2));
}

#[tokio::test]
async fn serve_returns_and_stops_listening_after_shutdown() {
    let mut proxy = TestProxy::start("").await;
    let addr = proxy.addr();
    let mut conn = proxy.intercepted("login.salesforce.com", Http::H1).await;
    assert_eq!(conn.get("login.salesforce.com", "/echo").await.status, 200);
    drop(conn);
    proxy.begin_shutdown();
    returns_before_grace_ends(&mut proxy).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed once serve has returned"
    );
}

#[tokio::test]
async fn a_stuck_events_file_does_not_hold_shutdown_past_the_grace_period() {
    let mut proxy = TestProxy::builder()
        .shutdown_grace("300ms")
        .extra_toml(&acme_mapping())
        .start()
        .await;
    // The writer moves to a FIFO nobody reads: it blocks opening it, as on a hung disk. (In a
    // directory of its own: it outlives the proxy's.)
    let fifo_dir = tempfile::tempdir().unwrap();
    let fifo = testkit::faults::StalledFile::create(&fifo_dir.path().join("stuck.fifo"));
    let path = fifo.path().to_str().unwrap().to_string();
    proxy.reload(proxy.builder_used().clone().events(&path));
    let (status, _) = proxy
        .token_request_then_close(LOGIN_HOST, &acme_password_form())
        .await;
    assert_eq!(status, 200);
    // Nothing in flight; the event waits for the stuck writer. serve still returns.
    proxy.begin_shutdown();
    returns_before_grace_ends(&mut proxy).await;
    // The process would exit here, without that event. The writer thread lives on in this
    // test process: unstuck, it ends.
    drop(proxy);
    fifo.read_to_end(20).await;
}
