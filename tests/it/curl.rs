//! curl, a real client, through the proxy: intercepted HTTPS over HTTP/1.1 and HTTP/2 trusting
//! grantshift's CA, a blind tunnel trusting only the tunnel server's CA, and plain HTTP. curl
//! never resolves the names itself: it sends CONNECT / absolute-form to the proxy, which uses
//! `connect_to`.

use std::path::Path;
use std::process::Command;
use testkit::clients::{curl_command, run_curl};
use testkit::*;

/// curl with no config file and no proxy or CA environment, through `proxy` (`-x`).
fn curl(proxy: std::net::SocketAddr, cwd: &Path) -> Command {
    let mut cmd = curl_command(cwd);
    cmd.arg("-x").arg(format!("http://{proxy}"));
    cmd
}

async fn curl_reaches_login_through_interception(flag: &str, version: &str) {
    let proxy = TestProxy::start("").await;
    let dir = tempfile::tempdir().unwrap();
    let body_file = dir.path().join("body.bin");
    let body = pseudo_random_bytes(500_000, 31);
    std::fs::write(&body_file, &body).unwrap();

    let mut cmd = curl(proxy.addr(), dir.path());
    cmd.arg(flag)
        .arg("--cacert")
        .arg(proxy.ca_pem_path())
        .args(["-H", "X-Curl-Test: yes", "--data-binary", "@body.bin"])
        .arg("https://login.salesforce.com/echo?via=curl");
    let reply = run_curl(cmd).await;
    let out = reply.body;
    assert_eq!(reply.status, 200, "{out}");
    assert_eq!(
        reply.version, version,
        "curl spoke HTTP/{version} to the proxy"
    );
    let echo: serde_json::Value = serde_json::from_str(&out).expect("echo JSON");
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["sni"], "login.salesforce.com");
    assert_eq!(echo["body_sha256"], sha256_hex(&body));
    let seen = &proxy.sf.requests_to("/echo")[0];
    assert_eq!(seen.header_values("x-curl-test"), vec!["yes"]);
    assert_eq!(seen.query.as_deref(), Some("via=curl"));
}

#[tokio::test]
async fn curl_http11_trusting_grantshift_ca_reaches_login_through_proxy() {
    curl_reaches_login_through_interception("--http1.1", "1.1").await;
}

#[tokio::test]
async fn curl_http2_trusting_grantshift_ca_reaches_login_through_proxy() {
    curl_reaches_login_through_interception("--http2", "2").await;
}

#[tokio::test]
async fn curl_trusting_only_tunnel_ca_reaches_it_through_blind_tunnel() {
    let proxy = TestProxy::start("").await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = curl(proxy.addr(), dir.path());
    cmd.arg("--cacert")
        .arg(proxy.tunnel.ca_pem_path())
        .arg("https://tunnel.example/through-tunnel");
    let reply = run_curl(cmd).await;
    let out = reply.body;
    assert_eq!(reply.status, 200, "{out}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["server"], "tunnel");
    assert_eq!(json["path"], "/through-tunnel");
}

#[tokio::test]
async fn curl_plain_http_through_proxy_reaches_connect_to_target() {
    let plain = PlainHttpServer::start().await;
    let proxy = TestProxy::builder()
        .connect_to("plain.test:80", plain.addr())
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = curl(proxy.addr(), dir.path());
    cmd.arg("http://plain.test/echo?via=curl");
    let reply = run_curl(cmd).await;
    let out = reply.body;
    assert_eq!(reply.status, 200, "{out}");
    let echo: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(echo["host"], "plain.test");
    assert_eq!(plain.requests()[0].query.as_deref(), Some("via=curl"));
}

#[tokio::test]
async fn curl_sees_403_for_a_disallowed_port() {
    let proxy = TestProxy::start("").await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = curl(proxy.addr(), dir.path());
    cmd.arg("--cacert")
        .arg(proxy.ca_pem_path())
        .arg("https://login.salesforce.com:22/");
    let out = run_to_end(cmd).await;
    assert!(!out.status.success(), "curl must fail: {out:?}");
    assert!(
        out.stderr.contains("403"),
        "curl reports the proxy's 403: {}",
        out.stderr
    );
}
