//! Hosts that are not intercepted get a blind TCP tunnel: the client's TLS goes end to end,
//! bytes pass untouched in both directions, and half-close is carried through.

use http::Method;
use testkit::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn client_trusting_only_tunnel_ca_reaches_it_through_proxy() {
    let proxy = TestProxy::start("").await;
    let (status, tcp) = proxy.connect("tunnel.example:443").await;
    assert_eq!(status, 200);
    let tls = tls_connect(tcp, TUNNEL_HOST, proxy.tunnel.ca_pem(), &[b"http/1.1"]).await;
    assert_eq!(
        &peer_leaf(&tls),
        proxy.tunnel.cert_der(),
        "the client sees the tunnel server's own certificate (no interception)"
    );
    let mut conn = HttpConn::handshake(tls, Http::H1).await;
    let body = pseudo_random_bytes(200_000, 5);
    let req = conn
        .request(Method::POST, TUNNEL_HOST, "/upload")
        .body(full(body.clone()))
        .unwrap();
    let reply = conn.send(req).await;
    assert_eq!(reply.status, 200);
    let json = reply.json();
    assert_eq!(json["server"], "tunnel");
    assert_eq!(json["sni"], TUNNEL_HOST);
    assert_eq!(json["body_sha256"], sha256_hex(&body));
}

#[tokio::test]
async fn client_trusting_only_grantshift_ca_cannot_complete_tls_to_a_tunnelled_host() {
    let proxy = TestProxy::start("").await;
    let (status, tcp) = proxy.connect("tunnel.example:443").await;
    assert_eq!(status, 200);
    let result = try_tls_connect(tcp, TUNNEL_HOST, proxy.ca_pem(), &[b"http/1.1"]).await;
    assert!(
        result.is_err(),
        "a tunnelled host must not be served with a grantshift certificate"
    );
}

#[tokio::test]
async fn tunnel_carries_a_megabyte_both_ways_unchanged() {
    let proxy = TestProxy::start("").await;
    let (status, tcp) = proxy.connect("echo.example:443").await;
    assert_eq!(status, 200);
    let (mut rd, mut wr) = tcp.into_split();
    let sent = pseudo_random_bytes(1_000_000, 9);
    let to_send = sent.clone();
    let writer = tokio::spawn(async move {
        wr.write_all(&to_send).await.unwrap();
        wr.shutdown().await.unwrap();
    });
    let mut got = Vec::new();
    within(30, "reading the echo", rd.read_to_end(&mut got))
        .await
        .unwrap();
    writer.await.unwrap();
    assert_eq!(got.len(), sent.len() + EOF_MARKER.len());
    assert!(got[..sent.len()] == sent[..], "echoed bytes are identical");
    assert_eq!(&got[sent.len()..], EOF_MARKER);
}

#[tokio::test]
async fn half_closed_tunnel_still_delivers_the_rest() {
    let proxy = TestProxy::start("").await;
    let (status, mut tcp) = proxy.connect("echo.example:443").await;
    assert_eq!(status, 200);
    tcp.write_all(b"last words").await.unwrap();
    // The client is done sending; it still expects everything the server has to say.
    tcp.shutdown().await.unwrap();
    let mut got = Vec::new();
    within(20, "reading after half-close", tcp.read_to_end(&mut got))
        .await
        .unwrap();
    assert_eq!(
        got,
        [b"last words".as_slice(), EOF_MARKER].concat(),
        "the server saw end-of-stream and its later bytes reached the client"
    );
}

/// A client with a tiny receive window makes the proxy's writes towards it come up short, so
/// the tunnel must keep the rest until the client catches up: every byte still arrives, in
/// order, and the half-close still comes through.
#[tokio::test]
async fn a_client_with_a_small_receive_window_still_gets_every_byte_in_order() {
    let proxy = TestProxy::start("").await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut tcp = socket.connect(proxy.addr()).await.unwrap();
    tcp.write_all(b"CONNECT echo.example:443 HTTP/1.1\r\nHost: echo.example:443\r\n\r\n")
        .await
        .unwrap();
    let (status, _) = read_response_head(&mut tcp).await;
    assert_eq!(status, 200);
    let (mut rd, mut wr) = tcp.into_split();
    let sent = pseudo_random_bytes(8_000_000, 17);
    let to_send = sent.clone();
    let writer = tokio::spawn(async move {
        wr.write_all(&to_send).await.unwrap();
        wr.shutdown().await.unwrap();
    });
    // Small reads with a yield between them keep this client behind the proxy.
    let mut got = Vec::with_capacity(sent.len() + EOF_MARKER.len());
    within(60, "reading the echo slowly", async {
        let mut buf = [0u8; 1024];
        loop {
            let n = rd.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            tokio::task::yield_now().await;
        }
    })
    .await;
    writer.await.unwrap();
    assert_eq!(got.len(), sent.len() + EOF_MARKER.len());
    assert!(got[..sent.len()] == sent[..], "echoed bytes are identical");
    assert_eq!(&got[sent.len()..], EOF_MARKER);
}
