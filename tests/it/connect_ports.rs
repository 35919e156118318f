//! CONNECT is only allowed to `proxy.allowed_connect_ports` (default `[443]`), like Squid's
//! `SSL_ports`; any other port gets `403` with a one-line plain-text reason.

use testkit::*;

#[tokio::test]
async fn connect_to_port_22_is_refused_with_403_and_a_reason() {
    let proxy = TestProxy::start("").await;
    let resp = connect_error(proxy.addr(), "login.salesforce.com:22").await;
    assert_eq!(resp.status, 403);
    let text = resp.text();
    let line = text.trim_end();
    assert!(!line.is_empty(), "403 carries a reason");
    assert!(!line.contains('\n'), "reason is one line: {text:?}");
    assert!(
        resp.header("content-type")
            .is_some_and(|ct| ct.starts_with("text/plain")),
        "plain text: {:?}",
        resp.headers
    );
    assert!(proxy.sf.requests().is_empty());
}

#[tokio::test]
async fn a_port_listed_in_allowed_connect_ports_is_tunnelled() {
    let up = Upstreams::start().await;
    let tunnel_addr = up.tunnel.addr();
    let proxy = TestProxy::builder()
        .allowed_connect_ports(&[443, 8443])
        .connect_to("tunnel.example:8443", tunnel_addr)
        .start_with(up)
        .await;
    let (status, tcp) = proxy.connect("tunnel.example:8443").await;
    assert_eq!(status, 200);
    let tls = tls_connect(tcp, TUNNEL_HOST, proxy.tunnel.ca_pem(), &[b"http/1.1"]).await;
    let mut conn = HttpConn::handshake(tls, Http::H1).await;
    assert_eq!(conn.get(TUNNEL_HOST, "/").await.json()["server"], "tunnel");

    // 443 was kept; 22 is still refused.
    assert_eq!(proxy.connect("tunnel.example:443").await.0, 200);
    assert_eq!(proxy.connect("tunnel.example:22").await.0, 403);
}

#[tokio::test]
async fn port_443_is_refused_when_not_listed() {
    let up = Upstreams::start().await;
    let tunnel_addr = up.tunnel.addr();
    let proxy = TestProxy::builder()
        .allowed_connect_ports(&[8443])
        .connect_to("tunnel.example:8443", tunnel_addr)
        .start_with(up)
        .await;
    assert_eq!(proxy.connect("tunnel.example:443").await.0, 403);
    assert_eq!(proxy.connect("login.salesforce.com:443").await.0, 403);
    assert_eq!(proxy.connect("tunnel.example:8443").await.0, 200);
}

#[tokio::test]
async fn a_refused_connect_closes_the_connection_so_bytes_behind_it_are_never_served() {
    let plain = PlainHttpServer::start().await;
    let proxy = TestProxy::builder()
        .connect_to("plain.example:80", plain.addr())
        .connect_to("gone.example:443", closed_port())
        .start()
        .await;
    for (what, authority, status) in [
        ("a port not allowed", "login.salesforce.com:22", "403"),
        ("an unreachable host", "gone.example:443", "502"),
    ] {
        // A client that sends bytes right behind its CONNECT (a body, then what looks like a
        // proxy request) before it has read the answer.
        let request = format!(
            "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 5\r\n\r\nhello\
             GET http://plain.example/echo HTTP/1.1\r\nHost: plain.example\r\n\r\n"
        );
        let mut s = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut s, request.as_bytes())
            .await
            .unwrap();
        let got = faults::read_until_closed(&mut s, 10, what).await;
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status}")),
            "{what}: {text}"
        );
        assert_eq!(
            text.matches("HTTP/1.1 ").count(),
            1,
            "{what}: one answer, then the connection closes: {text}"
        );
        assert!(
            text.to_ascii_lowercase().contains("connection: close"),
            "{what}: {text}"
        );
    }
    assert!(
        plain.requests().is_empty(),
        "nothing behind a refused CONNECT was forwarded"
    );
}
