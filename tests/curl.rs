//! curl, a real client, through the proxy: intercepted HTTPS over HTTP/1.1 and HTTP/2 trusting
//! grantshift's CA, a blind tunnel trusting only the tunnel server's CA, and plain HTTP. curl
//! never resolves the names itself: it sends CONNECT / absolute-form to the proxy, which uses
//! `connect_to`.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

/// curl with no config file and no proxy environment, through `proxy`.
fn curl(proxy: std::net::SocketAddr, cwd: &Path) -> Command {
    let mut cmd = Command::new("curl");
    cmd.current_dir(cwd);
    for var in [
        "NO_PROXY",
        "no_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "CURL_CA_BUNDLE",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    ] {
        cmd.env_remove(var);
    }
    // -q (first) ignores ~/.curlrc; -w prints status and version after the body.
    cmd.args(["-q", "-sS", "--max-time", "20", "-x"])
        .arg(format!("http://{proxy}"))
        .args(["-w", "\n%{http_code} %{http_version}"]);
    cmd
}

/// (body, status, http version) from curl's output.
async fn run_curl(cmd: Command) -> (String, String, String) {
    let out = run_to_end(cmd).await;
    assert!(out.status.success(), "curl failed: {out:?}");
    let (body, tail) = out.stdout.rsplit_once('\n').expect("curl -w line");
    let (code, version) = tail.split_once(' ').expect("code and version");
    (body.to_string(), code.to_string(), version.to_string())
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
    let (out, code, got_version) = run_curl(cmd).await;
    assert_eq!(code, "200", "{out}");
    assert_eq!(
        got_version, version,
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
    let (out, code, _) = run_curl(cmd).await;
    assert_eq!(code, "200", "{out}");
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
    let (out, code, _) = run_curl(cmd).await;
    assert_eq!(code, "200", "{out}");
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
