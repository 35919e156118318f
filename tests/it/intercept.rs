//! Intercepted hosts: after `200` to CONNECT, grantshift terminates TLS with a leaf certificate
//! for the requested host (SNI, else the CONNECT host), issued by its own CA, offers h2 and
//! http/1.1, and forwards requests to the real host.

use testkit::*;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

fn grantshift_ca_subject(proxy: &TestProxy) -> String {
    cert_info(&pem_certs(proxy.ca_pem())[0]).subject
}

#[tokio::test]
async fn client_sees_leaf_for_requested_host_issued_by_grantshift_ca() {
    let proxy = TestProxy::start("").await;
    // The client trusts only grantshift's CA, so the handshake itself proves the chain.
    let tls = proxy
        .intercept_tls("acme--qa.sandbox.my.salesforce.com", &[b"http/1.1"])
        .await;
    let leaf = cert_info(&peer_leaf(&tls));
    assert_eq!(leaf.issuer, grantshift_ca_subject(&proxy));
    assert!(
        leaf.dns_names
            .contains(&"acme--qa.sandbox.my.salesforce.com".to_string()),
        "leaf names the host: {:?}",
        leaf.dns_names
    );
    assert!(!leaf.is_ca, "the leaf cannot sign other certificates");
}

#[tokio::test]
async fn same_host_gets_the_same_leaf_on_a_second_connection() {
    let proxy = TestProxy::start("").await;
    let first = peer_leaf(&proxy.intercept_tls("login.salesforce.com", &[b"h2"]).await);
    let second = peer_leaf(&proxy.intercept_tls("login.salesforce.com", &[b"h2"]).await);
    assert_eq!(first, second, "leaf certificates are cached per host");
    let other = peer_leaf(&proxy.intercept_tls("test.salesforce.com", &[b"h2"]).await);
    assert_ne!(first, other, "another host gets its own leaf");
    assert!(cert_info(&other)
        .dns_names
        .contains(&"test.salesforce.com".to_string()));
}

#[tokio::test]
async fn leaf_follows_sni_when_it_differs_from_the_connect_host() {
    let proxy = TestProxy::start("").await;
    let (status, tcp) = proxy.connect("acme.my.salesforce.com:443").await;
    assert_eq!(status, 200);
    let tls = tls_connect(
        tcp,
        "other.my.salesforce.com",
        proxy.ca_pem(),
        &[b"http/1.1"],
    )
    .await;
    let leaf = cert_info(&peer_leaf(&tls));
    assert!(leaf
        .dns_names
        .contains(&"other.my.salesforce.com".to_string()));
}

#[tokio::test]
async fn leaf_follows_the_connect_host_when_the_client_sends_no_sni() {
    let proxy = TestProxy::start("").await;
    let (status, tcp) = proxy.connect("test.salesforce.com:443").await;
    assert_eq!(status, 200);
    let mut config = client_config(&[proxy.ca_pem()], &[b"http/1.1"]);
    config.enable_sni = false;
    // rustls still verifies the certificate against "test.salesforce.com".
    let tls = try_tls_connect_with(tcp, "test.salesforce.com", config)
        .await
        .expect("leaf minted for the CONNECT host");
    let leaf = cert_info(&peer_leaf(&tls));
    assert!(leaf.dns_names.contains(&"test.salesforce.com".to_string()));
}

async fn alpn_of(proxy: &TestProxy, offer: &[&[u8]]) -> Option<Vec<u8>> {
    let tls: TlsStream<TcpStream> = proxy.intercept_tls("login.salesforce.com", offer).await;
    negotiated_alpn(&tls)
}

#[tokio::test]
async fn proxy_offers_h2_and_http11_by_alpn() {
    let proxy = TestProxy::start("").await;
    assert_eq!(alpn_of(&proxy, &[b"h2"]).await.as_deref(), Some(&b"h2"[..]));
    assert_eq!(
        alpn_of(&proxy, &[b"http/1.1"]).await.as_deref(),
        Some(&b"http/1.1"[..])
    );
}

#[tokio::test]
async fn intercepted_request_reaches_the_real_host_over_verified_tls() {
    let proxy = TestProxy::start("").await;
    for (host, http) in [
        ("acme--qa.sandbox.my.salesforce.com", Http::H1),
        ("other.my.salesforce.com", Http::H2),
    ] {
        let mut conn = proxy.intercepted(host, http).await;
        let echo = conn.get(host, "/echo").await.json();
        assert_eq!(echo["sni"], host, "upstream SNI");
        assert_eq!(echo["host"], host, "upstream Host / :authority");
    }
    let hosts: Vec<_> = proxy
        .sf
        .requests()
        .into_iter()
        .map(|r| r.sni.unwrap())
        .collect();
    assert_eq!(
        hosts,
        vec![
            "acme--qa.sandbox.my.salesforce.com",
            "other.my.salesforce.com"
        ]
    );
}

#[tokio::test]
async fn intercept_hosts_match_case_insensitively() {
    let proxy = TestProxy::start("").await;
    let (status, tcp) = proxy.connect("LOGIN.Salesforce.COM:443").await;
    assert_eq!(status, 200);
    let tls = tls_connect(tcp, "login.salesforce.com", proxy.ca_pem(), &[b"http/1.1"]).await;
    assert_eq!(
        cert_info(&peer_leaf(&tls)).issuer,
        grantshift_ca_subject(&proxy),
        "intercepted despite the upper-case CONNECT host"
    );
}

#[tokio::test]
async fn hosts_outside_the_intercept_list_are_tunnelled_blind() {
    let proxy = TestProxy::builder()
        .intercept_hosts(&["login.salesforce.com"])
        .start()
        .await;
    // acme.my.salesforce.com is no longer intercepted: the client sees the upstream's own
    // certificate, which only the fake Salesforce CA verifies.
    let (status, tcp) = proxy.connect("acme.my.salesforce.com:443").await;
    assert_eq!(status, 200);
    let tls = tls_connect(
        tcp,
        "acme.my.salesforce.com",
        proxy.sf.ca_pem(),
        &[b"http/1.1"],
    )
    .await;
    assert_ne!(
        cert_info(&peer_leaf(&tls)).issuer,
        grantshift_ca_subject(&proxy)
    );
    let mut conn = HttpConn::handshake(tls, Http::H1).await;
    let echo = conn.get("acme.my.salesforce.com", "/echo").await.json();
    assert_eq!(echo["sni"], "acme.my.salesforce.com");

    // The listed host is still intercepted.
    let tls = proxy.intercept_tls("login.salesforce.com", &[b"h2"]).await;
    assert_eq!(
        cert_info(&peer_leaf(&tls)).issuer,
        grantshift_ca_subject(&proxy)
    );
}
