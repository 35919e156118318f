//! WebSocket (HTTP/1.1 Upgrade) through an intercepted host: 101, then frames both ways.

use futures_util::{SinkExt, StreamExt};
use testkit::*;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn websocket_echo_works_through_intercepted_host() {
    let proxy = TestProxy::start("").await;
    let host = "acme.my.salesforce.com";
    // WebSocket over HTTP/2 needs RFC 8441; browsers and libraries use HTTP/1.1 for it.
    let tls = proxy.intercept_tls(host, &[b"http/1.1"]).await;
    let (mut ws, resp) = within(
        20,
        "WebSocket handshake through the proxy",
        tokio_tungstenite::client_async(format!("wss://{host}/ws"), tls),
    )
    .await
    .expect("WebSocket handshake through the proxy");
    assert_eq!(resp.status(), 101);

    let big = pseudo_random_bytes(300_000, 11);
    let messages = [
        Message::text("hello through grantshift"),
        Message::binary(big),
        Message::text("last"),
    ];
    for m in &messages {
        ws.send(m.clone()).await.expect("send frame");
        let echoed = within(20, "WebSocket echo", ws.next())
            .await
            .expect("stream open")
            .expect("echo frame");
        assert_eq!(&echoed, m);
    }
    ws.close(None).await.expect("close handshake");
    // The server's close reply comes back, then the stream ends.
    while let Some(frame) = within(20, "WebSocket close", ws.next()).await {
        match frame {
            Ok(Message::Close(_)) => {}
            Ok(other) => panic!("unexpected frame after close: {other:?}"),
            Err(_) => break,
        }
    }

    let upgrade = &proxy.sf.requests_to("/ws")[0];
    assert_eq!(upgrade.header_values("upgrade"), vec!["websocket"]);
    assert!(upgrade.has_header("sec-websocket-key"));
}
