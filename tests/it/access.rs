//! Who may use the proxy (docs/operating.md, "Who may use the proxy"): loopback-only defaults; Basic proxy
//! authentication with the password from the environment (407 + challenge otherwise, curl's
//! `-x http://user:pass@…` works, the password never reaches a log); client address ranges
//! (403 outside); a read-only admin server (405 for writes); no start with a CA key that
//! others can read.
//!
//! The in-process proxies get their password variables through the test proxy's own secrets
//! lookup (`TestProxyBuilder::env`), never the process environment every test shares; the
//! binary gets them in its own environment.

use crate::GRANTSHIFT;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use grantshift::config::Config;
use grantshift::Proxy;
use http::Method;
use std::net::SocketAddr;
use std::path::Path;
use testkit::admin::{admin_get, admin_request};
use testkit::clients::curl_without_environment;
use testkit::faults::*;
use testkit::*;
use tokio::net::TcpStream;

/// `[proxy] auth` naming `var`.
fn auth_line(var: &str) -> String {
    format!("auth = {{ username = \"ops\", password_env = \"{var}\" }}")
}

/// Send `request` on a fresh connection: the response head (status, headers), its body, and
/// the stream (a tunnel when the status is 200).
async fn exchange(
    proxy: SocketAddr,
    request: &str,
) -> (u16, Vec<(String, String)>, String, TcpStream) {
    within(10, "a raw exchange with the proxy", async {
        let (status, headers, mut s) = raw_request(proxy, request.as_bytes()).await;
        let body = if status == 200 {
            String::new()
        } else {
            String::from_utf8_lossy(&read_response_body(&mut s, &headers).await).into_owned()
        };
        (status, headers, body, s)
    })
    .await
}

/// `CONNECT echo.example:443` with `Proxy-Authorization: credentials` (if any).
async fn connect_echo(
    proxy: SocketAddr,
    credentials: Option<&str>,
) -> (u16, Vec<(String, String)>, String, TcpStream) {
    let auth = credentials
        .map(|c| format!("Proxy-Authorization: {c}\r\n"))
        .unwrap_or_default();
    let request =
        format!("CONNECT echo.example:443 HTTP/1.1\r\nHost: echo.example:443\r\n{auth}\r\n");
    exchange(proxy, &request).await
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn proxy_and_admin_listen_on_loopback_by_default() {
    for config in [
        Config::default(),
        Config::from_toml_str("", Path::new("/")).expect("an empty file is valid"),
    ] {
        assert_eq!(config.proxy.listen, "127.0.0.1:3128".parse().unwrap());
        assert!(config.proxy.listen.ip().is_loopback());
        assert_eq!(config.proxy.admin_listen, "127.0.0.1:9464");
        assert!(config.proxy.admin_addr().unwrap().ip().is_loopback());
        assert_eq!(
            config.proxy.tls_listen, "",
            "no transparent listener by default"
        );
        assert!(config.proxy.allow_clients.is_empty());
        assert!(config.proxy.auth.is_none());
    }
    // What the binary reports as its effective settings with no config file.
    let dir = tempfile::tempdir().unwrap();
    let out = run_to_end({
        let mut cmd = GRANTSHIFT.command(dir.path());
        cmd.arg("check");
        cmd
    })
    .await;
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stdout.contains("listen = \"127.0.0.1:3128\""),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("admin_listen = \"127.0.0.1:9464\""),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn connect_without_valid_proxy_credentials_gets_407_with_a_basic_challenge() {
    const VAR: &str = "GRANTSHIFT_TEST_ACCESS_PW_407";
    const PASS: &str = "pw-SECRET-proxy-407-a1";
    let proxy = TestProxy::builder()
        .env(VAR, PASS)
        .proxy(&auth_line(VAR))
        .start()
        .await;

    for (what, credentials) in [
        ("no Proxy-Authorization", None),
        (
            "a wrong password",
            Some(basic_auth("ops", "wrong-password")),
        ),
        ("a wrong username", Some(basic_auth("admin", PASS))),
        ("another scheme", Some(format!("Bearer {PASS}"))),
    ] {
        let (status, headers, body, _) = connect_echo(proxy.addr(), credentials.as_deref()).await;
        assert_eq!(status, 407, "{what}: {body}");
        let challenge = header(&headers, "proxy-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Basic realm=\"grantshift\""),
            "{what}: challenge {challenge:?}"
        );
        assert!(!body.contains(PASS), "{what}: {body}");
    }

    // Plain http:// requests are guarded as well.
    let (status, headers, _, _) = exchange(
        proxy.addr(),
        "GET http://plain.example/echo HTTP/1.1\r\nHost: plain.example\r\n\r\n",
    )
    .await;
    assert_eq!(status, 407);
    assert!(header(&headers, "proxy-authenticate").is_some());
}

#[tokio::test]
async fn connect_with_the_right_proxy_credentials_opens_a_working_tunnel() {
    const VAR: &str = "GRANTSHIFT_TEST_ACCESS_PW_OK";
    const PASS: &str = "pw-SECRET-proxy-ok-b2";
    let proxy = TestProxy::builder()
        .env(VAR, PASS)
        .proxy(&auth_line(VAR))
        .start()
        .await;
    let (status, _, body, mut tunnel) =
        connect_echo(proxy.addr(), Some(&basic_auth("ops", PASS))).await;
    assert_eq!(status, 200, "{body}");
    echo_round_trip(&mut tunnel, b"through an authenticated tunnel").await;
}

#[tokio::test]
async fn curl_with_credentials_in_the_proxy_url_reaches_login_and_without_them_sees_407() {
    const VAR: &str = "GRANTSHIFT_TEST_ACCESS_PW_CURL";
    const PASS: &str = "pw-SECRET-proxy-curl-c3";
    let proxy = TestProxy::builder()
        .env(VAR, PASS)
        .proxy(&auth_line(VAR))
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();

    let mut cmd = curl_without_environment(dir.path());
    cmd.arg("-x")
        .arg(format!("http://ops:{PASS}@{}", proxy.addr()))
        .arg("--cacert")
        .arg(proxy.ca_pem_path())
        .args(["-w", "\n%{http_code}"])
        .arg("https://login.salesforce.com/echo?via=curl");
    let out = run_to_end(cmd).await;
    assert!(out.status.success(), "curl through the proxy: {out:?}");
    let (body, code) = out.stdout.rsplit_once('\n').unwrap();
    assert_eq!(code, "200", "{body}");
    let echo: serde_json::Value = serde_json::from_str(body).expect("echo JSON");
    assert_eq!(echo["sni"], "login.salesforce.com");
    let seen = &proxy.sf.requests_to("/echo")[0];
    assert!(
        !seen.has_header("proxy-authorization"),
        "the proxy credentials stay on the CONNECT: {:?}",
        seen.headers
    );
    assert_not_carried(seen, PASS, "the proxy password");

    let mut cmd = curl_without_environment(dir.path());
    cmd.arg("-x")
        .arg(format!("http://{}", proxy.addr()))
        .arg("--cacert")
        .arg(proxy.ca_pem_path())
        .args(["-w", "%{http_connect}"])
        .arg("https://login.salesforce.com/echo?via=curl-without-credentials");
    let out = run_to_end(cmd).await;
    assert!(!out.status.success(), "curl must fail: {out:?}");
    assert_eq!(out.stdout.trim(), "407", "{out:?}");
    assert_eq!(
        proxy.sf.requests_to("/echo").len(),
        1,
        "nothing went through"
    );
}

#[tokio::test]
async fn proxy_credentials_of_a_plain_http_request_are_not_forwarded_upstream() {
    const VAR: &str = "GRANTSHIFT_TEST_ACCESS_PW_PLAIN";
    const PASS: &str = "pw-SECRET-proxy-plain-d4";
    let plain = PlainHttpServer::start().await;
    let proxy = TestProxy::builder()
        .connect_to("plain.example:80", plain.addr())
        .env(VAR, PASS)
        .proxy(&auth_line(VAR))
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = curl_without_environment(dir.path());
    cmd.arg("-x")
        .arg(format!("http://ops:{PASS}@{}", proxy.addr()))
        .args(["-w", "\n%{http_code}"])
        .arg("http://plain.example/echo");
    let out = run_to_end(cmd).await;
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.ends_with("\n200"), "{}", out.stdout);
    let seen = &plain.requests()[0];
    assert!(
        !seen.has_header("proxy-authorization"),
        "Proxy-Authorization is hop-by-hop: {:?}",
        seen.headers
    );
    assert_not_carried(seen, PASS, "the proxy password");
}

#[tokio::test]
async fn proxy_password_never_appears_in_the_binarys_debug_logs() {
    const VAR: &str = "GRANTSHIFT_TEST_ACCESS_PW_LOGS";
    const PASS: &str = "pw-SECRET-proxy-logs-e5";
    const WRONG: &str = "pw-SECRET-wrong-guess-f6";
    let up = Upstreams::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("grantshift.toml");
    let text = TestProxy::builder()
        .proxy(&auth_line(VAR))
        .render_for(&up.addrs());
    std::fs::write(&config, text).unwrap();
    let mut cmd = GRANTSHIFT.command(dir.path());
    cmd.arg("run")
        .arg("-c")
        .arg(&config)
        .args(["--log-format", "json"])
        .env(VAR, PASS)
        .env("RUST_LOG", "debug");
    let mut bin = RunningBinary::start(cmd).await;
    let ca_pem = std::fs::read_to_string(dir.path().join("grantshift-ca.pem")).unwrap();

    // Refused: no credentials, then a wrong password.
    assert_eq!(connect_echo(bin.addr(), None).await.0, 407);
    assert_eq!(
        connect_echo(bin.addr(), Some(&basic_auth("ops", WRONG)))
            .await
            .0,
        407
    );
    // Accepted: an intercepted request with the right credentials.
    let request = format!(
        "CONNECT login.salesforce.com:443 HTTP/1.1\r\nHost: login.salesforce.com:443\r\nProxy-Authorization: {}\r\n\r\n",
        basic_auth("ops", PASS)
    );
    let (status, _, _, tcp) = exchange(bin.addr(), &request).await;
    assert_eq!(status, 200);
    let tls = tls_connect(tcp, LOGIN_HOST, &ca_pem, &[b"http/1.1"]).await;
    let mut conn = HttpConn::handshake(tls, Http::H1).await;
    assert_eq!(conn.get(LOGIN_HOST, "/echo").await.status, 200);
    drop(conn);

    bin.signal("TERM");
    let exit = bin.wait().await;
    assert!(exit.success(), "{exit:?}\n{}", bin.stderr());
    let output = format!("{}\n{}", bin.stderr(), bin.stdout());
    assert!(
        output.contains("\"level\":\"DEBUG\""),
        "the run logged at debug level:\n{output}"
    );
    assert!(
        output.contains("proxy authentication required or failed"),
        "the refusals were logged:\n{output}"
    );
    for (what, secret) in [
        ("the proxy password", PASS.to_string()),
        ("a wrong password", WRONG.to_string()),
        (
            "the Basic credentials",
            STANDARD.encode(format!("ops:{PASS}")),
        ),
        (
            "the wrong Basic credentials",
            STANDARD.encode(format!("ops:{WRONG}")),
        ),
    ] {
        assert!(!output.contains(&secret), "{what} is in the log:\n{output}");
    }
}

#[tokio::test]
async fn unset_password_env_is_a_config_error_naming_proxy_auth_password_env() {
    const VAR: &str = "GRANTSHIFT_TEST_ACCESS_PW_UNSET";
    let text = format!("[proxy]\n{}\n", auth_line(VAR));
    let no_variables = std::collections::HashMap::new();
    let err = Config::from_toml_str_with(&text, Path::new("/"), &no_variables)
        .expect_err("a missing password variable is an error")
        .to_string();
    assert!(err.contains("proxy.auth.password_env"), "{err}");
    assert!(err.contains(VAR), "names the variable: {err}");

    // The binary refuses to start with the same message.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("grantshift.toml");
    std::fs::write(&config, &text).unwrap();
    for verb in ["check", "run"] {
        let mut cmd = GRANTSHIFT.command(dir.path());
        cmd.arg(verb).arg("-c").arg(&config).env_remove(VAR);
        let out = run_to_end(cmd).await;
        assert!(!out.status.success(), "{verb}: {out:?}");
        assert!(
            out.stderr.contains("proxy.auth.password_env"),
            "{verb}: {}",
            out.stderr
        );
    }
}

#[tokio::test]
async fn client_outside_allow_clients_gets_403() {
    let proxy = TestProxy::builder()
        .proxy("allow_clients = [\"10.0.0.0/8\"]")
        .start()
        .await;
    let (status, _, body, _) = connect_echo(proxy.addr(), None).await;
    assert_eq!(
        status, 403,
        "a loopback client is outside 10.0.0.0/8: {body}"
    );
    let (status, _, _, _) = exchange(
        proxy.addr(),
        "GET http://plain.example/echo HTTP/1.1\r\nHost: plain.example\r\n\r\n",
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, _, _) = connect_echo(proxy.addr(), None).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn the_admin_server_answers_403_outside_allow_clients_and_200_inside() {
    for (ranges, status) in [("10.0.0.0/8", 403), ("127.0.0.0/8", 200)] {
        let proxy = TestProxy::builder()
            .proxy(&format!("allow_clients = [\"{ranges}\"]"))
            .start()
            .await;
        for path in ["/healthz", "/metrics", "/report", "/"] {
            let reply = admin_get(proxy.admin_addr(), path).await;
            assert_eq!(reply.status, status, "{path} with allow_clients {ranges}");
        }
    }
}

#[tokio::test]
async fn a_slow_admin_request_head_is_disconnected_after_header_read_timeout() {
    let proxy = TestProxy::builder()
        .proxy("header_read_timeout = \"300ms\"")
        .proxy("idle_timeout = \"60s\"")
        .start()
        .await;
    let mut slow = tokio::net::TcpStream::connect(proxy.admin_addr())
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut slow, b"GET /metrics HTTP/1.1\r\nHost: adm")
        .await
        .unwrap();
    assert_eq!(admin_get(proxy.admin_addr(), "/healthz").await.status, 200);
    let got =
        faults::read_until_closed(&mut slow, 5, "the slow admin client being disconnected").await;
    assert!(
        !String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"),
        "a half request head is never answered: {got:?}"
    );
}

#[tokio::test]
async fn client_inside_allow_clients_is_served() {
    let proxy = TestProxy::builder()
        .proxy("allow_clients = [\"127.0.0.0/8\"]")
        .start()
        .await;
    let (status, _, body, mut tunnel) = connect_echo(proxy.addr(), None).await;
    assert_eq!(status, 200, "{body}");
    echo_round_trip(&mut tunnel, b"allowed").await;
    let mut conn = proxy.intercepted(LOGIN_HOST, Http::H2).await;
    assert_eq!(conn.get(LOGIN_HOST, "/echo").await.status, 200);
}

#[tokio::test]
async fn admin_server_refuses_every_write_with_405() {
    let proxy = TestProxy::builder().start().await;
    let admin = proxy.admin_addr();
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
        for path in ["/", "/metrics", "/report", "/healthz", "/config"] {
            let reply =
                admin_request(admin, method.clone(), path, Some("{\"mode\":\"observe\"}")).await;
            assert_eq!(reply.status, 405, "{method} {path}: {}", reply.text());
            assert_eq!(reply.header("allow"), Some("GET, HEAD"), "{method} {path}");
        }
    }
    let health = admin_get(admin, "/healthz").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.text(), "ok\n");
}

#[cfg(unix)]
#[tokio::test]
async fn ca_key_readable_by_group_or_others_stops_start_up_with_the_chmod_fix() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let text = "[proxy]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"\"\n\n[ca]\ncert = \"ca.pem\"\nkey = \"ca.key\"\n\n[telemetry]\nevents = \"\"\n";
    let config_path = dir.path().join("grantshift.toml");
    std::fs::write(&config_path, text).unwrap();
    let config = Config::load_file(&config_path).unwrap();
    let key = dir.path().join("ca.key");
    // First start creates the CA, key mode 0600.
    Proxy::new(config.clone()).unwrap_or_else(|e| panic!("first start: {e}"));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&key), 0o600);

    let fix = format!("chmod 600 {}", key.display());
    for bad in [0o644, 0o640, 0o604] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(bad)).unwrap();
        let err = match Proxy::new(config.clone()) {
            Ok(_) => panic!("started with the CA key at mode {bad:o}"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(&fix), "mode {bad:o}: {err}");
    }

    // The binary exits non-zero with the fix in its message.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = GRANTSHIFT.command(dir.path());
    cmd.arg("run").arg("-c").arg(&config_path);
    let out = run_to_end(cmd).await;
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains(&fix), "{}", out.stderr);

    // And the fix works.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    Proxy::new(config).unwrap_or_else(|e| panic!("after chmod 600: {e}"));
}
