//! `[proxy] tls_listen`: the transparent TLS listener for binaries that ignore proxy settings.
//! DNS or /etc/hosts points `login.salesforce.com` at grantshift (here: curl `--resolve`); it
//! accepts TLS directly, takes the host from SNI, and runs the same interception, upgrade and
//! telemetry as the proxy port. Hosts not in `[intercept].hosts`, and ClientHellos without SNI,
//! are refused: the listener is no open relay, and nothing is dialled for them.

use crate::GRANTSHIFT;
use testkit::clients::*;
use testkit::*;

const TLS_LISTEN: &str = "tls_listen = \"127.0.0.1:0\"";

/// The test proxy's config (acme mapped, `builder`'s routes) with `tls_listen` on port 0.
fn config_with_tls_listener(builder: TestProxyBuilder, up: &Upstreams) -> String {
    let text = builder.extra_toml(&acme_mapping()).render(up);
    add_to_table(&text, "proxy", TLS_LISTEN)
}

async fn login_at_the_tls_listener_is_upgraded(flag: &str, version: &str) {
    let up = Upstreams::start().await;
    let proxy = ConfiguredProxy::start(&config_with_tls_listener(TestProxy::builder(), &up)).await;
    let route = CurlRoute::Transparent {
        addr: proxy.tls_addr(),
        ca_pem_path: proxy.ca_pem_path().to_path_buf(),
    };
    let work = tempfile::tempdir().unwrap();
    let out = curl_login_then_rest_call(&route, flag, work.path()).await;
    assert_eq!(out["token_http_version"], version, "{out:#}");
    assert_upgraded_login_then_rest_call("curl at the TLS listener", &out, &up.sf);
    assert_upgraded_event(&proxy.next_event().await, LOGIN_HOST);
    assert_eq!(
        proxy.metric(
            "grantshift_token_requests_total",
            &[
                ("host", LOGIN_HOST),
                ("grant", "password"),
                ("action", "upgraded")
            ]
        ),
        1.0
    );
    assert_eq!(
        proxy.connections("intercept"),
        2.0,
        "the login and the REST call, each intercepted on the TLS listener"
    );
    assert_eq!(proxy.connections("tunnel"), 0.0);
}

#[tokio::test]
async fn curl_http11_resolved_to_the_tls_listener_gets_its_login_upgraded() {
    login_at_the_tls_listener_is_upgraded("--http1.1", "1.1").await;
}

#[tokio::test]
async fn curl_http2_resolved_to_the_tls_listener_gets_its_login_upgraded() {
    login_at_the_tls_listener_is_upgraded("--http2", "2").await;
}

/// curl to `https://host:PORT/` with `--resolve` pointing `host` at the TLS listener (`None`:
/// to its IP address, so no SNI), accepting any certificate (`-k`): the handshake must still
/// fail, and nothing may be dialled.
async fn tls_listener_refuses(host: Option<&str>) {
    let up = Upstreams::start().await;
    let elsewhere = AcceptCounter::start().await;
    let builder = TestProxy::builder().connect_to("example.com:443", elsewhere.addr());
    let proxy = ConfiguredProxy::start(&config_with_tls_listener(builder, &up)).await;
    let tls = proxy.tls_addr();
    let work = tempfile::tempdir().unwrap();
    let mut cmd = curl_command(work.path());
    cmd.arg("-k");
    match host {
        Some(host) => {
            cmd.args(["--resolve", &format!("{host}:{}:127.0.0.1", tls.port())])
                .arg(format!("https://{host}:{}/", tls.port()));
        }
        // An IP literal: curl sends no SNI.
        None => {
            cmd.arg(format!("https://{tls}/"));
        }
    }
    let out = run_to_end(cmd).await;
    // curl's exit code 35: the TLS handshake failed (grantshift closed the connection).
    assert_eq!(
        out.status.code(),
        Some(35),
        "the TLS listener must refuse the handshake for {host:?}: {out:?}"
    );
    assert!(
        out.stdout.trim().starts_with("000"),
        "no HTTP response at all: {out:?}"
    );
    assert_eq!(elsewhere.accepted(), 0, "nothing was dialled for {host:?}");
    assert!(up.sf.requests().is_empty(), "nothing reached Salesforce");
    assert_eq!(proxy.connections("intercept"), 0.0);
    assert_eq!(proxy.connections("tunnel"), 0.0);
}

#[tokio::test]
async fn tls_listener_refuses_a_host_that_is_not_intercepted() {
    tls_listener_refuses(Some("example.com")).await;
}

#[tokio::test]
async fn tls_listener_refuses_a_client_hello_without_sni() {
    tls_listener_refuses(None).await;
}

#[tokio::test]
async fn binary_logs_its_transparent_tls_address_and_upgrades_a_login_sent_there() {
    let up = Upstreams::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("grantshift.toml");
    std::fs::write(&config, config_with_tls_listener(TestProxy::builder(), &up)).unwrap();
    let mut cmd = GRANTSHIFT.command(dir.path());
    cmd.arg("run")
        .arg("-c")
        .arg(&config)
        .args(["--log-format", "json"]);
    let mut bin = RunningBinary::start(cmd).await;
    let logged = bin.wait_for_json_logs("transparent TLS listening", 1).await;
    let tls: std::net::SocketAddr = logged[0]["fields"]["addr"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("the log line names the bound address: {}", logged[0]));
    assert_eq!(tls.ip().to_string(), "127.0.0.1");
    assert_ne!(tls.port(), 0);

    let route = CurlRoute::Transparent {
        addr: tls,
        ca_pem_path: dir.path().join("grantshift-ca.pem"),
    };
    let out = curl_login_then_rest_call(&route, "--http1.1", dir.path()).await;
    assert_upgraded_login_then_rest_call("curl at the binary's TLS listener", &out, &up.sf);

    bin.signal("TERM");
    let status = bin.wait().await;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", bin.stderr());
    let events = read_events(&dir.path().join(EVENTS_FILE));
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_upgraded_event(&events[0], LOGIN_HOST);
}
