//! docs/operating.md, "The events file", the admin server: `GET /healthz` → `200 ok`,
//! `/readyz` → `200 ready` only while the proxy port serves (`503` with the reason before and
//! once shutdown begins), `/metrics` (OpenMetrics), `/report`
//! (JSON), `/` (HTML); read-only (every write method gets `405` and changes nothing);
//! `admin_listen = ""` turns it off.

use crate::GRANTSHIFT;
use grantshift::config::Config;
use grantshift::Proxy;
use http::Method;
use serde_json::json;
use testkit::admin::{admin_get, admin_request, live_report, scrape};
use testkit::*;

#[tokio::test]
async fn admin_server_serves_healthz_metrics_report_and_page() {
    let proxy = TestProxy::start(&acme_mapping()).await;
    let admin = proxy.admin_addr();

    let health = admin_get(admin, "/healthz").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.text().trim_end(), "ok");
    assert!(health
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/plain")));
    let head = admin_request(admin, Method::HEAD, "/healthz", None).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty(), "HEAD has no body");

    // Before any login: an empty report and page, and metrics that parse.
    assert_eq!(
        live_report(admin).await,
        json!({
            "credentials": [],
            "dropped_sets": 0,
            "untracked_logins": {},
            "trend": {"hours": [], "outside": 0}
        })
    );
    scrape(admin).await;
    let page = admin_get(admin, "/").await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        page.text().starts_with("<!doctype html>"),
        "{}",
        page.text()
    );
    assert!(page.text().contains("No password logins recorded yet."));

    // After one: all three show it.
    assert_eq!(
        proxy.login(LOGIN_HOST, &acme_password_form()).await.status,
        200
    );
    assert_eq!(proxy.next_event().await["action"], "upgraded");
    let report = live_report(admin).await;
    assert_eq!(report["credentials"].as_array().unwrap().len(), 1);
    assert_eq!(report["credentials"][0]["username"], acme::USERNAME);
    assert_eq!(report["credentials"][0]["verdict"], "upgraded");
    let page = admin_get(admin, "/").await.text();
    assert!(
        page.contains(&format!("<td>{}</td>", acme::USERNAME))
            && page.contains("<span class=\"verdict\">upgraded</span>"),
        "{page}"
    );
    let metrics = scrape(admin).await;
    assert_eq!(
        metrics.value(
            "grantshift_token_requests_total",
            &[
                ("host", LOGIN_HOST),
                ("grant", "password"),
                ("action", "upgraded")
            ]
        ),
        Some(1.0)
    );

    assert_eq!(admin_get(admin, "/admin").await.status, 404);
}

#[tokio::test]
async fn readyz_is_503_until_the_proxy_port_serves_and_again_once_shutdown_begins() {
    // In-process, admin started before serve(): config and CA loaded, proxy port not serving.
    testkit::init_crypto();
    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_toml_str(
        "[proxy]\nadmin_listen = \"127.0.0.1:0\"\n[telemetry]\nevents = \"\"\n",
        dir.path(),
    )
    .expect("config");
    let proxy = Proxy::new(config).expect("proxy");
    let handle = proxy.handle();
    let admin = proxy
        .start_admin()
        .await
        .expect("start_admin")
        .expect("admin");
    let early = admin_get(admin, "/readyz").await;
    assert_eq!(early.status, 503);
    assert_eq!(
        early.text(),
        "not ready: the proxy listener is not serving yet\n"
    );
    assert_eq!(
        admin_get(admin, "/healthz").await.status,
        200,
        "alive all the same"
    );

    // Serving: a CONNECT through the proxy port proves it accepts; now ready.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let serve = tokio::spawn(proxy.serve(listener, async move {
        let _ = rx.await;
    }));
    let (status, _tcp) = connect_tunnel(addr, "127.0.0.1:9").await;
    assert!(status >= 200, "the proxy port answered");
    let ready = admin_get(admin, "/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(ready.text(), "ready\n");
    let head = admin_request(admin, Method::HEAD, "/readyz", None).await;
    assert_eq!(head.status, 200);
    assert_eq!(handle.readiness(), Ok(()));

    // Shutdown: not ready from the moment it begins (the admin port then closes as it drains).
    tx.send(()).unwrap();
    within(30, "serve() returning", serve)
        .await
        .unwrap()
        .expect("serve");
    assert_eq!(handle.readiness(), Err("not ready: shutting down"));
}

#[tokio::test]
async fn admin_server_refuses_every_write_method_and_changes_nothing() {
    let proxy = TestProxy::start(&acme_mapping()).await;
    let admin = proxy.admin_addr();
    assert_eq!(
        proxy.login(LOGIN_HOST, &acme_password_form()).await.status,
        200
    );
    proxy.next_event().await;
    let report_before = live_report(admin).await;
    let page_before = admin_get(admin, "/").await.text();

    for path in [
        "/", "/report", "/metrics", "/healthz", "/readyz", "/reload", "/config",
    ] {
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            let reply =
                admin_request(admin, method.clone(), path, Some("{\"credentials\":[]}")).await;
            assert_eq!(reply.status, 405, "{method} {path}: {}", reply.text());
            assert_eq!(reply.header("allow"), Some("GET, HEAD"), "{method} {path}");
        }
    }

    assert_eq!(live_report(admin).await, report_before);
    assert_eq!(admin_get(admin, "/").await.text(), page_before);
    assert_eq!(
        scrape(admin)
            .await
            .value("grantshift_config_reloads_total", &[("result", "ok")]),
        Some(0.0)
    );
}

#[tokio::test]
async fn empty_admin_listen_disables_the_admin_server() {
    // In-process: start_admin binds nothing.
    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_toml_str(
        "[proxy]\nadmin_listen = \"\"\n[telemetry]\nevents = \"\"\n",
        dir.path(),
    )
    .expect("admin_listen = \"\" is valid");
    let proxy = Proxy::new(config).expect("proxy");
    assert_eq!(proxy.start_admin().await.expect("start_admin"), None);

    // The binary: serves the proxy, never logs `admin listening`.
    let up = Upstreams::start().await;
    let enabled = TestProxy::builder().render(&up);
    let text = enabled.replace("admin_listen = \"127.0.0.1:0\"\n", "admin_listen = \"\"\n");
    assert_ne!(text, enabled, "the rendered config sets admin_listen");
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("grantshift.toml");
    std::fs::write(&config_path, &text).unwrap();
    let mut cmd = GRANTSHIFT.command(dir.path());
    cmd.arg("run")
        .arg("-c")
        .arg(&config_path)
        .args(["--log-format", "json"]);
    let bin = RunningBinary::start(cmd).await;

    // A login through it: its `token request` line comes after where `admin listening` would.
    let ca = std::fs::read_to_string(dir.path().join("grantshift-ca.pem")).unwrap();
    let (status, tcp) = connect_tunnel(bin.addr(), &format!("{LOGIN_HOST}:443")).await;
    assert_eq!(status, 200);
    let tls = tls_connect(tcp, LOGIN_HOST, &ca, &[b"http/1.1"]).await;
    let mut conn = HttpConn::handshake(tls, Http::H1).await;
    let reply = post_form(&mut conn, LOGIN_HOST, TOKEN_PATH, &acme_password_form()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    bin.wait_for_json_logs("token request", 1).await;
    let admin_lines: Vec<String> = bin
        .stderr()
        .lines()
        .filter(|l| l.contains("admin listening"))
        .map(str::to_owned)
        .collect();
    assert!(
        admin_lines.is_empty(),
        "admin_listen = \"\" starts no admin server: {admin_lines:?}"
    );
}
