//! The admin server's bearer token (docs/operating.md, "Who may use the proxy"): with
//! `proxy.admin_token_env` set, every admin request but `/healthz` and `/readyz` needs `Authorization:
//! Bearer <token>` (else `401` with a `Bearer` challenge); the token comes from the named
//! environment variable (missing or empty stops start-up, naming the variable) and never
//! appears in a log, an error or `grantshift check`.

use crate::GRANTSHIFT;
use http::Method;
use testkit::admin::{admin_get, admin_get_bearer, admin_request, admin_request_with};
use testkit::*;

/// `[proxy] admin_token_env` naming `var`.
fn token_line(var: &str) -> String {
    format!("admin_token_env = \"{var}\"")
}

#[track_caller]
fn assert_challenged(reply: &Reply, what: &str, token: &str) {
    assert_eq!(reply.status, 401, "{what}: {}", reply.text());
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Bearer realm=\"grantshift-admin\""),
        "{what}"
    );
    assert!(!reply.text().contains(token), "{what}: {}", reply.text());
}

#[tokio::test]
async fn admin_requests_need_the_bearer_token_and_healthz_stays_open() {
    const VAR: &str = "GRANTSHIFT_TEST_ADMIN_TOKEN_401";
    const TOKEN: &str = "adm-SECRET-token-401-q7";
    let proxy = TestProxy::builder()
        .env(VAR, TOKEN)
        .proxy(&token_line(VAR))
        .start()
        .await;
    let admin = proxy.admin_addr();

    for path in ["/", "/report", "/metrics", "/nowhere"] {
        assert_challenged(
            &admin_get(admin, path).await,
            &format!("{path}, no token"),
            TOKEN,
        );
        for (what, authorization) in [
            (
                "a wrong token",
                "Bearer adm-SECRET-token-401-q8".to_string(),
            ),
            (
                "a prefix of it",
                format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]),
            ),
            ("it with more", format!("Bearer {TOKEN}x")),
            ("another scheme", format!("Basic {TOKEN}")),
            ("no scheme", TOKEN.to_string()),
        ] {
            let reply = admin_request_with(
                admin,
                Method::GET,
                path,
                None,
                &[("authorization", &authorization)],
            )
            .await;
            assert_challenged(&reply, &format!("{path}, {what}"), TOKEN);
        }
    }
    // Writes are challenged before they are refused: nothing is said without the token.
    let write = admin_request(admin, Method::POST, "/report", Some("{}")).await;
    assert_challenged(&write, "POST /report, no token", TOKEN);

    // The right token: everything as without a token configured.
    let report = admin_get_bearer(admin, "/report", TOKEN).await;
    assert_eq!(report.status, 200, "{}", report.text());
    assert_eq!(
        testkit::admin::without_summary(report.json()),
        serde_json::json!({
            "credentials": [],
            "dropped_sets": 0,
            "untracked_logins": {},
            "trend": {"hours": [], "outside": 0}
        })
    );
    let metrics = admin_get_bearer(admin, "/metrics", TOKEN).await;
    assert_eq!(metrics.status, 200);
    testkit::admin::parse_openmetrics(&metrics.text()).expect("OpenMetrics text");
    let page = admin_get_bearer(admin, "/", TOKEN).await;
    assert_eq!(page.status, 200);
    assert!(page.text().starts_with("<!doctype html>"));
    assert_eq!(admin_get_bearer(admin, "/nowhere", TOKEN).await.status, 404);

    // /healthz: load balancers and the container health check probe it without credentials.
    let health = admin_get(admin, "/healthz").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.text(), "ok\n");
    let head = admin_request(admin, Method::HEAD, "/healthz", None).await;
    assert_eq!(head.status, 200);
    assert_eq!(
        admin_get_bearer(admin, "/healthz", "wrong").await.status,
        200
    );

    // /readyz: orchestrators probe it without credentials too (once the proxy port serves).
    assert_eq!(proxy.connect(&format!("{LOGIN_HOST}:443")).await.0, 200);
    let ready = admin_get(admin, "/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(ready.text(), "ready\n");
    assert_eq!(
        admin_get_bearer(admin, "/readyz", "wrong").await.status,
        200
    );
}

#[tokio::test]
async fn without_admin_token_env_the_admin_server_needs_no_token() {
    let proxy = TestProxy::builder().start().await;
    for path in ["/", "/report", "/metrics", "/healthz"] {
        assert_eq!(
            admin_get(proxy.admin_addr(), path).await.status,
            200,
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_reload_applies_a_new_token_to_the_next_request() {
    const VAR: &str = "GRANTSHIFT_TEST_ADMIN_TOKEN_OLD";
    const NEW_VAR: &str = "GRANTSHIFT_TEST_ADMIN_TOKEN_NEW";
    const TOKEN: &str = "adm-SECRET-token-old-r1";
    const NEW_TOKEN: &str = "adm-SECRET-token-new-r2";
    let mut proxy = TestProxy::builder()
        .env(VAR, TOKEN)
        .proxy(&token_line(VAR))
        .start()
        .await;
    let admin = proxy.admin_addr();
    assert_eq!(admin_get_bearer(admin, "/report", TOKEN).await.status, 200);
    proxy.reload(
        TestProxy::builder()
            .env(NEW_VAR, NEW_TOKEN)
            .proxy(&token_line(NEW_VAR)),
    );
    assert_challenged(
        &admin_get_bearer(admin, "/report", TOKEN).await,
        "the old token",
        TOKEN,
    );
    assert_eq!(
        admin_get_bearer(admin, "/report", NEW_TOKEN).await.status,
        200
    );
}

#[tokio::test]
async fn the_admin_token_never_appears_in_the_binarys_debug_logs_or_check_output() {
    const VAR: &str = "GRANTSHIFT_TEST_ADMIN_TOKEN_LOGS";
    const TOKEN: &str = "adm-SECRET-token-logs-s3";
    const WRONG: &str = "adm-SECRET-wrong-guess-s4";
    let up = Upstreams::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("grantshift.toml");
    let text = TestProxy::builder()
        .proxy(&token_line(VAR))
        .render_for(&up.addrs());
    std::fs::write(&config, text).unwrap();

    let mut check = GRANTSHIFT.command(dir.path());
    check.arg("check").arg("-c").arg(&config).env(VAR, TOKEN);
    let checked = run_to_end(check).await;
    assert!(checked.status.success(), "{checked:?}");
    assert!(
        checked
            .stdout
            .contains(&format!("admin_token_env = \"{VAR}\"")),
        "check names the variable: {}",
        checked.stdout
    );

    let mut cmd = GRANTSHIFT.command(dir.path());
    cmd.arg("run")
        .arg("-c")
        .arg(&config)
        .args(["--log-format", "json"])
        .env(VAR, TOKEN)
        .env("RUST_LOG", "debug");
    let mut bin = RunningBinary::start(cmd).await;
    let admin = bin.admin_addr().await;
    assert_challenged(&admin_get(admin, "/metrics").await, "no token", TOKEN);
    assert_challenged(
        &admin_get_bearer(admin, "/metrics", WRONG).await,
        "a wrong token",
        TOKEN,
    );
    assert_eq!(admin_get_bearer(admin, "/metrics", TOKEN).await.status, 200);
    assert_eq!(admin_get_bearer(admin, "/report", TOKEN).await.status, 200);

    // A tunnel through the proxy port (logged at debug): its accept loop, and with it the
    // SIGTERM handler, runs.
    let (status, mut tunnel) = connect_tunnel(bin.addr(), &format!("{ECHO_HOST}:443")).await;
    assert_eq!(status, 200);
    testkit::faults::echo_round_trip(&mut tunnel, b"ping").await;
    drop(tunnel);
    bin.signal("TERM");
    let exit = bin.wait().await;
    assert!(exit.success(), "{exit:?}\n{}", bin.stderr());
    let output = format!(
        "{}\n{}\n{}\n{}",
        bin.stderr(),
        bin.stdout(),
        checked.stdout,
        checked.stderr
    );
    assert!(
        output.contains("\"level\":\"DEBUG\""),
        "the run logged at debug level:\n{output}"
    );
    assert!(
        output.contains("admin: bearer token missing or wrong"),
        "the refusals were logged:\n{output}"
    );
    for (what, secret) in [("the token", TOKEN), ("a wrong token", WRONG)] {
        assert!(
            !output.contains(secret),
            "{what} is in the output:\n{output}"
        );
    }
}

#[tokio::test]
async fn an_unset_admin_token_variable_stops_start_up_naming_the_variable() {
    const VAR: &str = "GRANTSHIFT_TEST_ADMIN_TOKEN_UNSET";
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("grantshift.toml");
    std::fs::write(&config, format!("[proxy]\n{}\n", token_line(VAR))).unwrap();
    for (what, value) in [("unset", None), ("empty", Some(""))] {
        for verb in ["check", "run"] {
            let mut cmd = GRANTSHIFT.command(dir.path());
            cmd.arg(verb).arg("-c").arg(&config);
            match value {
                Some(v) => cmd.env(VAR, v),
                None => cmd.env_remove(VAR),
            };
            let out = run_to_end(cmd).await;
            assert!(!out.status.success(), "{what}, {verb}: {out:?}");
            assert!(
                out.stderr.contains("proxy.admin_token_env")
                    && out.stderr.contains(&format!("{VAR} is not set or empty")),
                "{what}, {verb}: {}",
                out.stderr
            );
        }
    }
}
