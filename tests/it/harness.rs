//! The fake upstreams behave as the other tests assume, reached directly (no proxy): when a
//! proxy test fails, these passing shows the fault is not in the harness.

use futures_util::{SinkExt, StreamExt};
use http::Method;
use testkit::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

async fn direct(sf: &FakeSalesforce, host: &str, http: Http) -> HttpConn {
    let tcp = TcpStream::connect(sf.addr()).await.unwrap();
    let tls = tls_connect(tcp, host, sf.ca_pem(), &[http.alpn()]).await;
    assert_eq!(negotiated_alpn(&tls).as_deref(), Some(http.alpn()));
    HttpConn::handshake(tls, http).await
}

#[tokio::test]
async fn fake_salesforce_presents_a_certificate_per_host_by_sni() {
    let sf = FakeSalesforce::start().await;
    for host in SALESFORCE_HOSTS {
        let tcp = TcpStream::connect(sf.addr()).await.unwrap();
        let tls = tls_connect(tcp, host, sf.ca_pem(), &[b"http/1.1"]).await;
        assert_eq!(
            cert_info(&peer_leaf(&tls)).dns_names,
            vec![host.to_string()]
        );
    }
}

#[tokio::test]
async fn fake_salesforce_echo_reports_request_over_both_versions() {
    let sf = FakeSalesforce::start().await;
    for http in [Http::H1, Http::H2] {
        let mut conn = direct(&sf, "acme.my.salesforce.com", http).await;
        let req = conn
            .request(Method::POST, "acme.my.salesforce.com", "/echo?x=1")
            .header("x-b", "2")
            .header("x-a", "1")
            .body(full("hello"))
            .unwrap();
        let echo = conn.send(req).await.json();
        assert_eq!(echo["sni"], "acme.my.salesforce.com");
        assert_eq!(echo["host"], "acme.my.salesforce.com");
        assert_eq!(echo["body_sha256"], sha256_hex(b"hello"));
        let xs: Vec<_> = json_pairs(&echo["headers"])
            .into_iter()
            .filter(|(n, _)| n.starts_with("x-"))
            .collect();
        assert_eq!(
            xs,
            vec![("x-b".into(), "2".into()), ("x-a".into(), "1".into())]
        );
    }
    assert_eq!(sf.requests().len(), 2);
}

#[tokio::test]
async fn fake_salesforce_sends_response_trailers_over_both_versions() {
    let sf = FakeSalesforce::start().await;
    for http in [Http::H1, Http::H2] {
        let mut conn = direct(&sf, "login.salesforce.com", http).await;
        let req = conn
            .request(Method::GET, "login.salesforce.com", "/trailers")
            .header("te", "trailers")
            .body(empty())
            .unwrap();
        let reply = conn.send(req).await;
        let trailers = reply.trailers.expect("trailers");
        assert_eq!(trailers["x-trailer-two"], "done", "{http:?}");
    }
}

#[tokio::test]
async fn fake_salesforce_websocket_echoes() {
    let sf = FakeSalesforce::start().await;
    let tcp = TcpStream::connect(sf.addr()).await.unwrap();
    let tls = tls_connect(tcp, "login.salesforce.com", sf.ca_pem(), &[b"http/1.1"]).await;
    let (mut ws, resp) = tokio_tungstenite::client_async("wss://login.salesforce.com/ws", tls)
        .await
        .expect("websocket handshake");
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("ping")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("ping"));
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn tunnel_server_and_echo_server_answer_directly() {
    let tunnel = TunnelServer::start().await;
    let tcp = TcpStream::connect(tunnel.addr()).await.unwrap();
    let tls = tls_connect(tcp, TUNNEL_HOST, tunnel.ca_pem(), &[b"http/1.1"]).await;
    let mut conn = HttpConn::handshake(tls, Http::H1).await;
    let reply = conn.get(TUNNEL_HOST, "/x").await;
    assert_eq!(reply.json()["server"], "tunnel");

    let echo = TcpEchoServer::start().await;
    let mut tcp = TcpStream::connect(echo.addr()).await.unwrap();
    tcp.write_all(b"abc").await.unwrap();
    tcp.shutdown().await.unwrap();
    let mut got = Vec::new();
    tcp.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, [b"abc".as_slice(), EOF_MARKER].concat());
}

#[tokio::test]
async fn fake_salesforce_records_request_trailers_over_both_versions() {
    let both = FakeSalesforce::start().await;
    let h1_only = FakeSalesforce::start_http1_only().await;
    for (sf, http) in [(&both, Http::H1), (&both, Http::H2), (&h1_only, Http::H1)] {
        let mut conn = direct(sf, "login.salesforce.com", http).await;
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-t", "1".parse().unwrap());
        let req = conn
            .request(Method::POST, "login.salesforce.com", "/echo")
            .header("trailer", "x-t")
            .body(body_with_trailers(
                vec![bytes::Bytes::from_static(b"b")],
                trailers,
            ))
            .unwrap();
        let echo = conn.send(req).await.json();
        assert_eq!(
            json_pairs(&echo["trailers"]),
            vec![("x-t".into(), "1".into())]
        );
    }
}
