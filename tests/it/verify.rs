//! docs/operating.md, "Password verifiers": an upgraded login still needs the right password.
//! A password Salesforce accepted on a login grantshift forwarded as it came becomes the set's
//! verifier (kept in the state file, mode 0600, written atomically, read back at start); a
//! configured `password_hash` (`grantshift hash-password`) wins over it. With
//! `verify_password = "required"` (the JWT default) or `"if_known"` (the client-credentials
//! default) a login whose password does not match, or that has no verifier where one is
//! required, is not upgraded: it goes to Salesforce as it came, `skipped` with
//! `password_mismatch` or `no_verifier`. A flood of wrong passwords costs a bounded number of
//! Argon2 runs.

use crate::GRANTSHIFT;
use std::os::unix::fs::PermissionsExt;
use testkit::admin::{live_report, report_cli, report_row, scrape};
use testkit::*;

const WRONG: &str = "pw-SECRET-wrong-91aa";

/// The acme integration user as a JWT bearer entry with no `password_hash`.
fn jwt_entry() -> String {
    jwt_credentials_toml(acme::USERNAME, Some(acme::MY_DOMAIN), "jwt-app.pkcs8.pem")
}

fn config(mode: &str, entry: &str) -> String {
    rollout_toml("*", mode, 100, true) + entry
}

/// `body` reached Salesforce at the login host as the client sent it, last.
fn assert_forwarded_as_sent(sf: &FakeSalesforce, body: &str) {
    let seen = sf.token_requests();
    let last = seen.last().expect("a token request upstream");
    assert_eq!(last.host_name(), Some(LOGIN_HOST));
    assert_eq!(String::from_utf8_lossy(&last.body), body, "unchanged");
}

fn state_file(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join("state/verifiers.json")
}

/// The learned verifiers in a state file: `(client_id, username, verifier)`.
fn learned(path: &std::path::Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let state: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    state["verifiers"]
        .as_array()
        .expect("verifiers")
        .iter()
        .map(|v| {
            let s = |k: &str| v[k].as_str().unwrap().to_string();
            (s("client_id"), s("username"), s("verifier"))
        })
        .collect()
}

async fn metric(admin: std::net::SocketAddr, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape(admin)
        .await
        .value(name, labels)
        .unwrap_or_else(|| panic!("{name}{labels:?}"))
}

#[tokio::test]
async fn a_password_learned_while_observing_is_required_after_the_switch_to_upgrade() {
    let mut proxy = TestProxy::start(&config("observe", &jwt_entry())).await;
    let reply = proxy.login(LOGIN_HOST, &acme_password_form()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let event = proxy.next_event().await;
    assert_eq!(event["action"], "observed");
    assert_eq!(
        event.get("password_check"),
        None,
        "not upgraded: not checked"
    );
    let file = state_file(proxy.dir());
    let sets = learned(&file);
    assert_eq!(sets.len(), 1, "{sets:?}");
    assert_eq!(
        (sets[0].0.as_str(), sets[0].1.as_str()),
        (acme::CLIENT_ID, acme::USERNAME)
    );
    assert!(sets[0].2.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    // A login Salesforce refuses teaches nothing.
    assert_eq!(
        proxy.login(LOGIN_HOST, &acme_login(WRONG)).await.status,
        400
    );
    assert_eq!(proxy.next_event().await["action"], "observed");
    assert_eq!(learned(&file), sets);

    // SIGHUP's reload: upgrade.
    let builder = proxy
        .builder_used()
        .with_extra_toml(&config("upgrade", &jwt_entry()));
    proxy.reload(builder);
    let reply = proxy.login(LOGIN_HOST, &acme_password_form()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let event = proxy.next_event().await;
    assert_eq!(event["action"], "upgraded");
    assert_eq!(event["flow"], "jwt_bearer");
    assert_eq!(event["password_check"], "verified");
    let upstream = proxy.sf.token_requests();
    assert_eq!(
        upstream.last().unwrap().param("grant_type").as_deref(),
        Some(salesforce::JWT_BEARER_GRANT)
    );

    // The wrong password is not upgraded (JWT bearer would log anyone in): it goes to
    // Salesforce as it came, and Salesforce refuses it.
    let wrong = acme_login(WRONG);
    let reply = proxy.login(LOGIN_HOST, &wrong).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(reply.json()["error"], "invalid_grant");
    assert_forwarded_as_sent(&proxy.sf, &wrong);
    let event = proxy.next_event().await;
    assert_eq!(event["action"], "skipped");
    assert_eq!(event["reason"], "password_mismatch");
    assert_eq!(event["password_check"], "mismatch");
    assert_eq!(event.get("flow"), None);
    assert_eq!(learned(&file), sets, "a mismatch never replaces a verifier");
    let admin = proxy.admin_addr();
    assert_eq!(
        metric(
            admin,
            "grantshift_password_refusals_total",
            &[("reason", "password_mismatch")]
        )
        .await,
        1.0
    );
    assert_eq!(
        metric(
            admin,
            "grantshift_password_checks_total",
            &[("result", "verified")]
        )
        .await,
        1.0
    );
    let report = live_report(admin).await;
    let row = report_row(&report, acme::CLIENT_ID, acme::USERNAME);
    assert_eq!(row["password_verifier"], "learned", "{row}");
    assert_eq!(row["verify_password"], "required", "{row}");
    assert_eq!(row["verdict"], "password-mismatch", "{row}");
}

#[tokio::test]
async fn a_jwt_entry_without_a_verifier_is_not_upgraded_and_the_report_says_what_to_do() {
    let proxy = TestProxy::start(&config("upgrade", &jwt_entry())).await;
    let body = acme_password_form();
    let reply = proxy.login(LOGIN_HOST, &body).await;
    assert_eq!(
        reply.status,
        200,
        "Salesforce judged the password: {}",
        reply.text()
    );
    assert_eq!(reply.json()["id"], acme::login_id().as_str());
    assert_forwarded_as_sent(&proxy.sf, &body);
    assert_eq!(proxy.sf.token_requests().len(), 1, "no JWT was sent");
    let event = proxy.next_event().await;
    assert_eq!(event["action"], "skipped");
    assert_eq!(event["reason"], "no_verifier");
    assert_eq!(event["password_check"], "none");
    assert!(
        !state_file(proxy.dir()).exists(),
        "a login grantshift skipped teaches nothing"
    );
    let admin = proxy.admin_addr();
    let row = report_row(&live_report(admin).await, acme::CLIENT_ID, acme::USERNAME).clone();
    assert_eq!(row["verdict"], "needs-verifier", "{row}");
    assert_eq!(row["password_verifier"], "none", "{row}");
    let hint = row["hint"].as_str().unwrap();
    assert!(
        hint.contains("log in once through grantshift before 20 Feb 2027, or set password_hash")
            || (hint.contains("log in once through grantshift before 20 Feb 2027")
                && hint.contains("set password_hash")),
        "{hint}"
    );
    assert_eq!(
        metric(
            admin,
            "grantshift_password_refusals_total",
            &[("reason", "no_verifier")]
        )
        .await,
        1.0
    );
    let page = testkit::admin::admin_get(admin, "/").await.text();
    assert!(page.contains("needs-verifier"), "{page}");
    assert!(page.contains("none (required)"), "{page}");
}

#[tokio::test]
async fn verify_password_off_and_the_client_credentials_default_upgrade_without_a_verifier() {
    let off = format!("{}verify_password = \"off\"\n", jwt_entry());
    let proxy = TestProxy::start(&config("upgrade", &off)).await;
    assert_eq!(
        proxy.login(LOGIN_HOST, &acme_login(WRONG)).await.status,
        200
    );
    let event = proxy.next_event().await;
    assert_eq!(event["action"], "upgraded");
    assert_eq!(event["password_check"], "off");

    // Client credentials: Salesforce still checks the app's secret; with no verifier yet
    // (`if_known`), upgraded as before, and the event says none was known.
    let proxy = TestProxy::start(&config("upgrade", &acme_mapping())).await;
    assert_eq!(
        proxy.login(LOGIN_HOST, &acme_password_form()).await.status,
        200
    );
    let event = proxy.next_event().await;
    assert_eq!(event["action"], "upgraded");
    assert_eq!(event["flow"], "client_credentials");
    assert_eq!(event["password_check"], "none");
    let row = report_row(
        &live_report(proxy.admin_addr()).await,
        acme::CLIENT_ID,
        acme::USERNAME,
    )
    .clone();
    assert_eq!(row["verify_password"], "if_known", "{row}");
    assert!(
        row["hint"]
            .as_str()
            .unwrap()
            .contains("no password verifier yet"),
        "{row}"
    );
}

#[tokio::test]
async fn a_client_credentials_set_with_a_learned_verifier_refuses_another_password() {
    // Learned from a fallback: the upgrade failed (no Run As user), the original succeeded.
    // Without the token cache: its negative entry would send the next login to fallback too.
    let proxy = TestProxy::builder()
        .extra_toml(&config("upgrade", &acme_mapping()))
        .token_cache_off()
        .start()
        .await;
    proxy
        .sf
        .edit(|w| w.org_mut(acme::ORG_ID).app_mut(acme::CLIENT_ID).run_as_user = None);
    assert_eq!(
        proxy.login(LOGIN_HOST, &acme_password_form()).await.status,
        200
    );
    assert_eq!(proxy.next_event().await["action"], "fallback");
    assert_eq!(learned(&state_file(proxy.dir())).len(), 1);
    proxy.sf.edit(|w| {
        w.org_mut(acme::ORG_ID).app_mut(acme::CLIENT_ID).run_as_user =
            Some(acme::RUN_AS_USERNAME.into())
    });
    assert_eq!(
        proxy.login(LOGIN_HOST, &acme_password_form()).await.status,
        200
    );
    let event = proxy.next_event().await;
    assert_eq!(
        (&event["action"], &event["password_check"]),
        (&"upgraded".into(), &"verified".into())
    );
    let wrong = acme_login(WRONG);
    assert_eq!(proxy.login(LOGIN_HOST, &wrong).await.status, 400);
    assert_forwarded_as_sent(&proxy.sf, &wrong);
    let event = proxy.next_event().await;
    assert_eq!(event["reason"], "password_mismatch");
}

#[tokio::test]
async fn a_configured_password_hash_upgrades_its_password_only_and_is_never_shown() {
    let entry = jwt_credentials_with_password_toml(
        acme::USERNAME,
        Some(acme::MY_DOMAIN),
        "jwt-app.pkcs8.pem",
        acme::PASSWORD,
    );
    let proxy = TestProxy::start(&config("upgrade", &entry)).await;
    let reply = proxy.login(LOGIN_HOST, &acme_password_form()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let event = proxy.next_event().await;
    assert_eq!(event["action"], "upgraded");
    assert_eq!(event["password_check"], "verified");
    let wrong = acme_login(WRONG);
    assert_eq!(proxy.login(LOGIN_HOST, &wrong).await.status, 400);
    assert_forwarded_as_sent(&proxy.sf, &wrong);
    assert_eq!(proxy.next_event().await["reason"], "password_mismatch");
    assert!(!state_file(proxy.dir()).exists(), "nothing learned");

    let admin = proxy.admin_addr();
    let report = live_report(admin).await;
    let row = report_row(&report, acme::CLIENT_ID, acme::USERNAME);
    assert_eq!(row["password_verifier"], "configured", "{row}");
    let page = testkit::admin::admin_get(admin, "/").await.text();
    assert!(page.contains("configured (required)"), "{page}");
    assert!(page.contains("password_hash set"), "{page}");
    // The CLI report reads the config: the source, never the verifier.
    let config_path = proxy.config_path();
    for extra in [&[][..], &["--json"][..], &["--suggest-config"][..]] {
        let mut args = vec!["-c", config_path.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = report_cli(GRANTSHIFT, proxy.dir(), &[], &args).await;
        assert!(out.status.success(), "{extra:?}: {out:?}");
        assert!(!out.stdout.contains("$argon2"), "{extra:?}: {}", out.stdout);
        if extra.is_empty() {
            assert!(out.stdout.contains("configured"), "{}", out.stdout);
        }
    }
    let check = run_to_end({
        let mut cmd = GRANTSHIFT.command(proxy.dir());
        cmd.args(["check", "-c", proxy.config_path().to_str().unwrap()]);
        cmd
    })
    .await;
    assert!(check.status.success(), "{check:?}");
    assert!(!check.stdout.contains("$argon2"), "{}", check.stdout);
    assert!(
        check.stdout.contains("verify_password = \"required\""),
        "{}",
        check.stdout
    );
}

#[tokio::test]
async fn hash_password_reads_stdin_prints_only_an_owasp_hash_and_takes_no_argument() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = GRANTSHIFT.command(dir.path());
    cmd.arg("hash-password");
    let out = run_with_stdin(cmd, &format!("{}\n", acme::PASSWORD)).await;
    assert!(out.status.success(), "{out:?}");
    let hash = out.stdout.trim_end();
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    assert!(!out.stdout.contains(acme::PASSWORD) && !out.stderr.contains(acme::PASSWORD));

    // That hash, configured, upgrades the password it was made from.
    let entry = format!(
        "{}password_hash = {}\n",
        jwt_entry(),
        testkit::proxy::toml_str(hash)
    );
    let proxy = TestProxy::start(&config("upgrade", &entry)).await;
    assert_eq!(
        proxy.login(LOGIN_HOST, &acme_password_form()).await.status,
        200
    );
    let event = proxy.next_event().await;
    assert_eq!(event["action"], "upgraded");
    assert_eq!(event["password_check"], "verified");

    // Never from the command line (and not echoed back); an empty password is refused.
    let mut cmd = GRANTSHIFT.command(dir.path());
    cmd.args(["hash-password", acme::PASSWORD]);
    let out = run_with_stdin(cmd, "").await;
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert!(out.stderr.contains("takes no argument"), "{}", out.stderr);
    assert!(!out.stderr.contains(acme::PASSWORD), "{}", out.stderr);
    let mut cmd = GRANTSHIFT.command(dir.path());
    cmd.arg("hash-password");
    let out = run_with_stdin(cmd, "\n").await;
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("empty"), "{}", out.stderr);
}

/// Run `cmd` with `input` on its stdin.
async fn run_with_stdin(mut cmd: std::process::Command, input: &str) -> Finished {
    use std::io::Write;
    use std::process::Stdio;
    let input = input.to_string();
    let out = within(
        60,
        "grantshift with stdin",
        tokio::task::spawn_blocking(move || {
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn grantshift");
            let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
            child.wait_with_output().expect("grantshift output")
        }),
    )
    .await
    .unwrap();
    Finished {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test]
async fn learned_verifiers_are_kept_in_a_0600_file_across_a_restart_of_the_binary() {
    let up = Upstreams::start().await;
    let builder = TestProxy::builder().extra_toml(&config("observe", &jwt_entry()));
    let mut bin = BinaryProxy::start(GRANTSHIFT, &up, &builder, "json", None).await;
    assert_eq!(
        bin.login(LOGIN_HOST, &acme_password_form()).await.status,
        200
    );
    bin.bin
        .wait_for_json_logs("learned the password verifier of a credential set", 1)
        .await;
    let file = bin.state_file();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(file.parent().unwrap()), 0o700);
    let sets = learned(&file);
    assert_eq!(sets.len(), 1);
    bin.stop().await;

    // Restarted with upgrade: the verifier came back from the file.
    std::fs::write(
        bin.config_path(),
        builder
            .with_extra_toml(&config("upgrade", &jwt_entry()))
            .render(&up),
    )
    .unwrap();
    let mut bin = bin.restart(GRANTSHIFT, &[]).await;
    assert_eq!(
        bin.login(LOGIN_HOST, &acme_password_form()).await.status,
        200
    );
    assert_eq!(bin.login(LOGIN_HOST, &acme_login(WRONG)).await.status, 400);
    bin.stop().await;
    let events = bin.events_in_file();
    let last: Vec<(&str, &str)> = events[events.len() - 2..]
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["password_check"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(last, [("upgraded", "verified"), ("skipped", "mismatch")]);
    assert_eq!(learned(&file), sets);
}

#[tokio::test]
async fn a_kill_in_the_middle_of_a_state_write_leaves_the_old_file_valid() {
    let up = Upstreams::start().await;
    let builder = TestProxy::builder().extra_toml(&config("observe", ""));
    // The second write of the state file stops halfway, for good (a test build's fault point).
    let mut bin = BinaryProxy::start_with_env(
        GRANTSHIFT,
        &up,
        &builder,
        "json",
        None,
        &[("GRANTSHIFT_FAULT_STALL_STATE_WRITE", "2")],
    )
    .await;
    assert_eq!(
        bin.login(LOGIN_HOST, &acme_password_form()).await.status,
        200
    );
    bin.bin
        .wait_for_json_logs("learned the password verifier of a credential set", 1)
        .await;
    let file = bin.state_file();
    let first = learned(&file);
    assert_eq!(first.len(), 1);

    // Another set's login: its verifier's write stalls (the client waits for it).
    let reports = password_form(
        acme::CLIENT_ID,
        acme::CLIENT_SECRET,
        acme::REPORTS_USERNAME,
        acme::REPORTS_PASSWORD,
    );
    let mut conn = bin.intercepted(LOGIN_HOST, Http::H1).await;
    let login = tokio::spawn(async move {
        let req = conn
            .request(http::Method::POST, LOGIN_HOST, TOKEN_PATH)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(full(reports))
            .unwrap();
        // Never answered: the process is killed first.
        let _ = conn.try_send(req).await;
    });
    bin.bin
        .wait_for_stderr("the state write stalled", |lines| {
            lines
                .iter()
                .any(|l| l.contains("fault injected: stalled for good"))
        })
        .await;
    bin.kill().await;
    login.abort();
    let _ = login.await;

    // The file is the old one, whole; the half-written one is only the temporary file.
    assert_eq!(learned(&file), first);
    let tmp = file.with_file_name("verifiers.json.tmp");
    assert!(tmp.exists(), "killed in the middle of a write");
    // A restart reads it (and the lost verifier is simply not there).
    std::fs::write(
        bin.config_path(),
        builder
            .with_extra_toml(&config("upgrade", &jwt_entry()))
            .render(&up),
    )
    .unwrap();
    let mut bin = bin.restart(GRANTSHIFT, &[]).await;
    assert_eq!(bin.login(LOGIN_HOST, &acme_login(WRONG)).await.status, 400);
    bin.stop().await;
    let events = bin.events_in_file();
    let last = events.last().unwrap();
    assert_eq!(
        last["reason"], "password_mismatch",
        "the old verifier holds: {last}"
    );
}

#[tokio::test]
async fn a_corrupt_or_open_state_file_stops_check_and_run_with_a_clear_error() {
    let up = Upstreams::start().await;
    let builder = TestProxy::builder().extra_toml(&config("upgrade", &jwt_entry()));
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("grantshift.toml");
    std::fs::write(&config_path, builder.render(&up)).unwrap();
    let file = state_file(dir.path());
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    for (text, mode, problem) in [
        (
            "{\"version\":1,\"verifiers\":[{\"client_id\"",
            0o600,
            "is not a valid state file",
        ),
        ("{\"version\":1,\"verifiers\":[]}", 0o644, "chmod 600"),
    ] {
        std::fs::write(&file, text).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        for command in ["check", "run"] {
            let mut cmd = GRANTSHIFT.command(dir.path());
            cmd.args([command, "-c", config_path.to_str().unwrap()]);
            let out = run_to_end(cmd).await;
            assert!(!out.status.success(), "{command}: {out:?}");
            assert!(
                out.stderr.contains("state.dir"),
                "{command}: {}",
                out.stderr
            );
            assert!(
                out.stderr.contains(&file.display().to_string()),
                "{}",
                out.stderr
            );
            assert!(out.stderr.contains(problem), "{command}: {}", out.stderr);
            assert!(
                !dir.path().join("grantshift-ca.pem").exists(),
                "{command} stopped before creating the CA"
            );
        }
    }
}

#[tokio::test]
async fn a_flood_of_wrong_passwords_for_one_set_costs_a_bounded_number_of_argon2_runs() {
    let entry = jwt_credentials_with_password_toml(
        acme::USERNAME,
        Some(acme::MY_DOMAIN),
        "jwt-app.pkcs8.pem",
        acme::PASSWORD,
    );
    let proxy = TestProxy::start(&config("upgrade", &entry)).await;
    // The right password once: one Argon2 run, then its digest answers.
    assert_eq!(
        proxy.login(LOGIN_HOST, &acme_password_form()).await.status,
        200
    );
    assert_eq!(proxy.next_event().await["password_check"], "verified");
    let admin = proxy.admin_addr();
    let runs = || {
        metric(
            admin,
            "grantshift_password_hashes_total",
            &[("purpose", "check")],
        )
    };
    assert_eq!(runs().await, 1.0);

    // 200 different wrong passwords, 20 connections at a time.
    const WRONG_LOGINS: usize = 200;
    let proxy = std::sync::Arc::new(proxy);
    let mut tasks = Vec::new();
    for worker in 0..20 {
        let proxy = proxy.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = proxy.intercepted(LOGIN_HOST, Http::H1).await;
            for i in 0..WRONG_LOGINS / 20 {
                let body = acme_login(&format!("{WRONG}-{worker}-{i}"));
                let reply = post_form(&mut conn, LOGIN_HOST, TOKEN_PATH, &body).await;
                assert_eq!(reply.status, 400, "Salesforce refused the original");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut reasons = std::collections::BTreeMap::new();
    for _ in 0..WRONG_LOGINS {
        let event = proxy.next_event().await;
        assert_eq!(event["action"], "skipped", "{event}");
        assert_eq!(event["password_check"], "mismatch", "{event}");
        *reasons
            .entry(event["reason"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(
        reasons.keys().collect::<Vec<_>>(),
        ["password_mismatch", "password_throttled"],
        "{reasons:?}"
    );
    // A few wrong passwords are checked, then a backoff window (1 s, 2 s, … up to 60 s)
    // during which no other is: not one run per login.
    let wrong_runs = runs().await - 1.0;
    assert!(
        (3.0..=10.0).contains(&wrong_runs),
        "{wrong_runs} Argon2 runs for {WRONG_LOGINS} wrong passwords"
    );
    // The right password is still upgraded during the backoff, and costs nothing.
    assert_eq!(
        proxy.login(LOGIN_HOST, &acme_password_form()).await.status,
        200
    );
    let event = proxy.next_event().await;
    assert_eq!(event["action"], "upgraded");
    assert_eq!(runs().await - 1.0, wrong_runs);
}
