//! Faults are survived, each with a clear error and nothing leaked: an upstream that resets
//! mid-response, never answers or fails the TLS handshake; a client that disconnects
//! mid-upload or mid-download or sends garbage instead of a ClientHello; a host that cannot
//! be resolved; 2,000 distinct SNI names. After each, the proxy still serves, its
//! `grantshift_connections_active` gauges are back to 0 and this process's open file
//! descriptors (the in-process proxy's included) are back to the baseline taken after setup.
//!
//! Every test runs [`in_own_process`]: file descriptors are counted process-wide, and the
//! other tests of this binary run in parallel in its process.
//! `pool_idle_timeout` is short so that idle pooled upstream connections (legitimately kept
//! for reuse) are gone by the time the descriptors are counted.

use http::Method;
use testkit::faults::*;
use testkit::*;
use tokio::io::AsyncWriteExt;

/// The hardened test proxy with a short upstream pool idle timeout.
fn builder() -> TestProxyBuilder {
    TestProxy::builder().upstream("pool_idle_timeout = \"200ms\"")
}

/// A request to a healthy host on a fresh connection succeeds.
async fn still_serves(proxy: &TestProxy, http: Http) {
    let mut conn = proxy.intercepted(LOGIN_HOST, http).await;
    let reply = conn.get(LOGIN_HOST, "/echo").await;
    assert_eq!(reply.status, 200, "the proxy keeps serving other requests");
}

fn upstream_reset_mid_response(http: Http) {
    in_own_process(async move {
        let host = "reset.my.salesforce.com";
        let bad = MisbehavingUpstream::start(
            &[host],
            Misbehaviour::ResetMidBody {
                declared: 100_000,
                sent: 1_000,
            },
        )
        .await;
        let proxy = builder()
            .connect_to(&format!("{host}:443"), bad.addr())
            .extra_root_cert(bad.ca_pem_path())
            .start()
            .await;
        let baseline = open_fds();

        let mut conn = proxy.intercepted(host, http).await;
        let req = conn
            .request(Method::GET, host, "/download")
            .body(empty())
            .unwrap();
        match conn.try_send(req).await {
            // The body broke off: the client sees an error instead of a complete body.
            Err(_) => {}
            // The reset won the race with the response head: a 502 naming the host.
            Ok(reply) if reply.status == 502 => {
                assert!(reply.text().contains(host), "{}", reply.text())
            }
            Ok(reply) => panic!(
                "a reset mid-body must not look complete: status {}, {} of 100000 bytes",
                reply.status,
                reply.body.len()
            ),
        }
        assert_eq!(bad.accepted(), 1, "the request reached the upstream");
        drop(conn);

        still_serves(&proxy, http).await;
        proxy.assert_nothing_leaked(baseline).await;
        assert_eq!(bad.open_connections(), 0);
    });
}

#[test]
fn upstream_reset_mid_response_truncates_the_body_and_leaks_nothing_over_http1() {
    upstream_reset_mid_response(Http::H1);
}

#[test]
fn upstream_reset_mid_response_truncates_the_body_and_leaks_nothing_over_http2() {
    upstream_reset_mid_response(Http::H2);
}

#[test]
fn upstream_that_never_answers_gets_504_after_request_timeout_and_leaks_nothing() {
    in_own_process(async {
        let host = "mute.my.salesforce.com";
        let bad = MisbehavingUpstream::start(&[host], Misbehaviour::NeverAnswer).await;
        let proxy = builder()
            .connect_to(&format!("{host}:443"), bad.addr())
            .extra_root_cert(bad.ca_pem_path())
            .request_timeout("300ms")
            .start()
            .await;
        let baseline = open_fds();

        let mut conn = proxy.intercepted(host, Http::H1).await;
        let reply = conn.get(host, "/echo").await;
        assert_eq!(reply.status, 504, "{}", reply.text());
        let text = reply.text();
        assert!(
            text.contains(host) && text.contains("did not answer within"),
            "one line naming the host and the timeout: {text:?}"
        );
        drop(conn);

        still_serves(&proxy, Http::H1).await;
        eventually(
            "the proxy closing its connection to the mute upstream",
            || match bad.open_connections() {
                0 => Ok(()),
                n => Err(format!("{n} still open")),
            },
        )
        .await;
        proxy.assert_nothing_leaked(baseline).await;
    });
}

#[test]
fn upstream_tls_handshake_failure_gets_502_naming_the_host_and_leaks_nothing() {
    in_own_process(async {
        let host = "nottls.my.salesforce.com";
        let bad = NotTlsServer::start().await;
        let proxy = builder()
            .connect_to(&format!("{host}:443"), bad.addr())
            .start()
            .await;
        let baseline = open_fds();

        let mut conn = proxy.intercepted(host, Http::H1).await;
        let reply = conn.get(host, "/echo").await;
        assert_eq!(reply.status, 502, "{}", reply.text());
        let text = reply.text();
        assert!(
            text.contains(host) && text.contains("TLS"),
            "one line naming the host and the TLS failure: {text:?}"
        );
        drop(conn);

        still_serves(&proxy, Http::H1).await;
        proxy.assert_nothing_leaked(baseline).await;
        assert_eq!(bad.open_connections(), 0);
    });
}

#[test]
fn client_disconnecting_mid_upload_frees_the_upstream_connection_and_leaks_nothing() {
    in_own_process(async {
        let host = "upload.my.salesforce.com";
        let sink = MisbehavingUpstream::start(&[host], Misbehaviour::NeverAnswer).await;
        // request_timeout is far away: only the client's disconnect can free the upstream.
        let proxy = builder()
            .connect_to(&format!("{host}:443"), sink.addr())
            .extra_root_cert(sink.ca_pem_path())
            .request_timeout("60s")
            .start()
            .await;
        let baseline = open_fds();

        let mut tls = proxy.intercept_tls(host, &[b"http/1.1"]).await;
        let head = format!(
            "POST /upload HTTP/1.1\r\nHost: {host}\r\ncontent-type: application/octet-stream\r\ncontent-length: 1000000\r\n\r\n"
        );
        tls.write_all(head.as_bytes()).await.unwrap();
        tls.write_all(&pseudo_random_bytes(256 * 1024, 7))
            .await
            .unwrap();
        tls.flush().await.unwrap();
        // Half of the declared body is streaming upstream...
        sink.wait_received(128 * 1024).await;
        assert_eq!(sink.open_connections(), 1);
        // ...when the client goes away.
        drop(tls);

        eventually("the proxy closing the upstream upload", || {
            match sink.open_connections() {
                0 => Ok(()),
                n => Err(format!("{n} upstream connection(s) still open")),
            }
        })
        .await;
        proxy.assert_nothing_leaked(baseline).await;
        still_serves(&proxy, Http::H1).await;
        proxy.assert_nothing_leaked(baseline).await;
    });
}

#[test]
fn client_disconnecting_mid_download_frees_everything() {
    in_own_process(async {
        let proxy = builder().start().await;
        let baseline = open_fds();

        let mut tls = proxy.intercept_tls(LOGIN_HOST, &[b"http/1.1"]).await;
        tls.write_all(b"GET /bytes?n=5000000 HTTP/1.1\r\nHost: login.salesforce.com\r\n\r\n")
            .await
            .unwrap();
        tls.flush().await.unwrap();
        let (status, _) = within(10, "download head", read_response_head(&mut tls)).await;
        assert_eq!(status, 200);
        let mut first = vec![0u8; 64 * 1024];
        within(
            10,
            "first 64 KiB",
            tokio::io::AsyncReadExt::read_exact(&mut tls, &mut first),
        )
        .await
        .unwrap();
        // 64 KiB of 5 MB read: the client goes away.
        drop(tls);

        proxy.assert_nothing_leaked(baseline).await;
        still_serves(&proxy, Http::H1).await;
        proxy.assert_nothing_leaked(baseline).await;
    });
}

#[test]
fn garbage_instead_of_a_client_hello_is_closed_and_the_proxy_carries_on() {
    in_own_process(async {
        let proxy = builder().start().await;
        let baseline = open_fds();

        let garbage: [&[u8]; 2] = [
            // Plain text where a TLS record should be.
            b"GET / HTTP/1.1\r\nHost: garbage.my.salesforce.com\r\n\r\n",
            // A handshake record header whose content is not a ClientHello.
            &[
                0x16, 0x03, 0x01, 0x00, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ],
        ];
        for bytes in garbage {
            let (status, mut tunnel) = proxy.connect("garbage.my.salesforce.com:443").await;
            assert_eq!(status, 200);
            tunnel.write_all(bytes).await.unwrap();
            let got =
                read_until_closed(&mut tunnel, 5, "the garbage connection being closed").await;
            assert!(
                !got.starts_with(b"HTTP/1.1 200"),
                "garbage is never served: {got:?}"
            );
        }

        still_serves(&proxy, Http::H1).await;
        proxy.assert_nothing_leaked(baseline).await;
    });
}

#[test]
fn unresolvable_host_gets_502_naming_the_host_without_any_dns_lookup() {
    in_own_process(async {
        // connect_to_only: hosts not in connect_to fail as unresolvable; nothing is ever
        // looked up in DNS (no traffic leaves loopback).
        let proxy = builder().upstream("connect_to_only = true").start().await;
        let baseline = open_fds();

        let resp = connect_error(proxy.addr(), "nowhere.example:443").await;
        assert_eq!(resp.status, 502, "{}", resp.text());
        let text = resp.text();
        assert!(
            text.contains("nowhere.example") && text.contains("resolve"),
            "blind tunnel: one line naming the host and the cause: {text:?}"
        );

        let host = "unmapped.my.salesforce.com";
        let mut conn = proxy.intercepted(host, Http::H1).await;
        let reply = conn.get(host, "/echo").await;
        assert_eq!(reply.status, 502, "{}", reply.text());
        let text = reply.text();
        assert!(
            text.contains(host) && text.contains("resolve"),
            "interception: one line naming the host and the cause: {text:?}"
        );
        drop(conn);

        still_serves(&proxy, Http::H1).await;
        proxy.assert_nothing_leaked(baseline).await;
    });
}

#[test]
fn two_thousand_distinct_sni_names_leave_nothing_open() {
    in_own_process(async {
        let proxy = builder().proxy("leaf_cache_size = 100").start().await;
        let connector = proxy.tls_connector(&[b"http/1.1"]);
        let baseline = open_fds();

        let hosts: Vec<String> = (0..2000)
            .map(|i| format!("sni{i}.my.salesforce.com"))
            .collect();
        handshakes(proxy.addr(), &connector, hosts, 32).await;

        proxy.assert_nothing_leaked(baseline).await;
        still_serves(&proxy, Http::H2).await;
        proxy.assert_nothing_leaked(baseline).await;
    });
}
