//! The `grantshift run` binary: logs JSON to stderr including where it listens (so
//! `listen = "127.0.0.1:0"` works), proxies, and exits 0 after SIGTERM or SIGINT.

use crate::GRANTSHIFT;
use testkit::*;

async fn start_binary(up: &Upstreams, dir: &std::path::Path) -> RunningBinary {
    let config = dir.join("grantshift.toml");
    std::fs::write(&config, TestProxy::builder().render(up)).unwrap();
    let mut cmd = GRANTSHIFT.command(dir);
    cmd.arg("run")
        .arg("-c")
        .arg(&config)
        .args(["--log-format", "json"]);
    RunningBinary::start(cmd).await
}

async fn request_through(bin: &RunningBinary, dir: &std::path::Path) {
    // The CA the binary created next to its config is what clients trust.
    let ca_pem = std::fs::read_to_string(dir.join("grantshift-ca.pem")).expect("CA created");
    let (status, tcp) = connect_tunnel(bin.addr(), "login.salesforce.com:443").await;
    assert_eq!(status, 200, "stderr:\n{}", bin.stderr());
    let tls = tls_connect(tcp, "login.salesforce.com", &ca_pem, &[b"http/1.1"]).await;
    let mut conn = HttpConn::handshake(tls, Http::H1).await;
    let reply = conn.get("login.salesforce.com", "/echo?from=binary").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["sni"], "login.salesforce.com");
}

async fn serves_then_exits_zero_on(signal: &str) {
    let up = Upstreams::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut bin = start_binary(&up, dir.path()).await;
    assert_ne!(bin.addr().port(), 0, "the log reports the bound port");
    request_through(&bin, dir.path()).await;
    assert_eq!(up.sf.requests_to("/echo").len(), 1);

    bin.signal(signal);
    let status = bin.wait().await;
    assert_eq!(
        status.code(),
        Some(0),
        "exit after SIG{signal}: {status:?}; stderr:\n{}",
        bin.stderr()
    );
    assert!(
        tokio::net::TcpStream::connect(bin.addr()).await.is_err(),
        "nothing listens after exit"
    );
}

#[tokio::test]
async fn binary_logs_its_port_as_json_serves_and_exits_zero_on_sigterm() {
    serves_then_exits_zero_on("TERM").await;
}

#[tokio::test]
async fn binary_exits_zero_on_sigint() {
    serves_then_exits_zero_on("INT").await;
}

#[tokio::test]
async fn every_stderr_line_is_json_with_log_format_json() {
    let up = Upstreams::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut bin = start_binary(&up, dir.path()).await;
    request_through(&bin, dir.path()).await;
    bin.signal("TERM");
    assert_eq!(bin.wait().await.code(), Some(0));
    let stderr = bin.stderr();
    for line in stderr.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string(), "has a level: {line}");
    }
}
