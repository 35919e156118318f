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
