//! docs/operating.md, "The events file", the report: real logins through the proxy against the fake Salesforce
//! produce each verdict; the live `/report` and `grantshift report --json` over the events file
//! agree; several replicas' files merge; `--suggest-config` prints `[[credentials]]` that
//! `grantshift check` accepts and that, loaded, upgrade the learned sets.

use crate::GRANTSHIFT;
use serde_json::{json, Value};
use std::path::Path;
use testkit::admin::{
    admin_get, live_report, report_cli, report_cli_json, report_row, scrape, without_summary,
};
use testkit::salesforce::App;
use testkit::*;

/// Connected apps added to the acme org (each with one purpose, so that only the two
/// integration-app sets share a client_id).
const NO_RUN_AS_APP: &str = "3MVG9acmeNoRunAsApp.consumerKey";
const NO_RUN_AS_SECRET: &str = "cs-SECRET-norunas-3c1e";
const READY_APP: &str = "3MVG9acmeReadyApp.consumerKey";
const READY_SECRET: &str = "cs-SECRET-ready-77d0";
const LEGACY_APP: &str = "3MVG9acmeLegacyXmlApp.consumerKey";
const LEGACY_SECRET: &str = "cs-SECRET-legacy-5b2f";

fn add_apps(sf: &FakeSalesforce) {
    sf.edit(|w| {
        let org = w.org_mut(acme::ORG_ID);
        // Client credentials enabled, but no Run As user.
        org.apps.push(App::new(NO_RUN_AS_APP, NO_RUN_AS_SECRET));
        org.apps.push(App::new(READY_APP, READY_SECRET));
        org.apps.push(App::new(LEGACY_APP, LEGACY_SECRET));
    });
}

const VERDICT_ORDER: &[&str] = &[
    "needs-jwt",
    "needs-run-as-user",
    "needs-flow-enabled",
    "needs-verifier",
    "password-mismatch",
    "failing",
    "ready",
    "upgraded",
    "observing",
];

/// A password login through `proxy`; asserts the status the client got and the event action.
async fn login(proxy: &TestProxy, host: &str, body: &str, status: u16, action: &str) -> Value {
    let reply = proxy.login(host, body).await;
    assert_eq!(reply.status, status, "{host}: {}", reply.text());
    let event = proxy.next_event().await;
    assert_eq!(event["action"], action, "{event}");
    event
}

fn verdict<'a>(report: &'a Value, client_id: &str, username: &str) -> &'a str {
    report_row(report, client_id, username)["verdict"]
        .as_str()
        .expect("verdict is a string")
}

fn assert_most_urgent_first(report: &Value) {
    let ranks: Vec<usize> = report["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            VERDICT_ORDER
                .iter()
                .position(|v| r["verdict"] == *v)
                .unwrap_or_else(|| panic!("unknown verdict in {r}"))
        })
        .collect();
    assert!(
        ranks.windows(2).all(|w| w[0] <= w[1]),
        "rows are ordered most urgent first: {ranks:?}"
    );
}

#[tokio::test]
async fn each_verdict_comes_from_real_logins_and_the_live_and_cli_reports_agree() {
    // Login host: observe. Everything else (test host, My Domains): upgrade with fallback.
    let proxy = TestProxy::builder()
        .extra_toml(&rollout_toml(LOGIN_HOST, "observe", 100, true))
        .extra_toml(&rollout_toml("*", "upgrade", 100, true))
        .extra_toml(&credentials_toml(acme_qa::USERNAME, acme_qa::MY_DOMAIN))
        .start()
        .await;
    add_apps(&proxy.sf);
    let pw = password_form;

    // upgraded: the sandbox user, mapped, at the test host.
    login(
        &proxy,
        TEST_HOST,
        &pw(
            acme_qa::CLIENT_ID,
            acme_qa::CLIENT_SECRET,
            acme_qa::USERNAME,
            acme_qa::PASSWORD,
        ),
        200,
        "upgraded",
    )
    .await;
    // ready: observed, My Domain learned from the password response.
    login(
        &proxy,
        LOGIN_HOST,
        &pw(READY_APP, READY_SECRET, acme::USERNAME, acme::PASSWORD),
        200,
        "observed",
    )
    .await;
    // needs-jwt: two usernames of one app in one org.
    login(&proxy, LOGIN_HOST, &acme_password_form(), 200, "observed").await;
    login(
        &proxy,
        LOGIN_HOST,
        &pw(
            acme::CLIENT_ID,
            acme::CLIENT_SECRET,
            acme::REPORTS_USERNAME,
            acme::REPORTS_PASSWORD,
        ),
        200,
        "observed",
    )
    .await;
    // failing: a wrong password.
    login(
        &proxy,
        LOGIN_HOST,
        &pw(
            acme::CLIENT_ID,
            acme::CLIENT_SECRET,
            acme::PLUS_USERNAME,
            "not-the-password",
        ),
        400,
        "observed",
    )
    .await;
    // observing: successful, but answered in urlencoded form: nothing learned.
    let legacy = format!(
        "{}&format=urlencoded",
        pw(
            LEGACY_APP,
            LEGACY_SECRET,
            acme::REPORTS_USERNAME,
            acme::REPORTS_PASSWORD
        )
    );
    login(&proxy, LOGIN_HOST, &legacy, 200, "observed").await;
    // needs-run-as-user: upgraded in place at the My Domain, no Run As user, fell back.
    let event = login(
        &proxy,
        acme::MY_DOMAIN,
        &pw(
            NO_RUN_AS_APP,
            NO_RUN_AS_SECRET,
            acme::USERNAME,
            acme::PASSWORD,
        ),
        200,
        "fallback",
    )
    .await;
    assert_eq!(
        event["upstream_error"]["error_description"],
        "no client credentials user enabled"
    );
    // needs-flow-enabled: the app's client-credentials flow is off, fell back.
    let event = login(
        &proxy,
        acme::MY_DOMAIN,
        &pw(
            acme::OTHER_CLIENT_ID,
            acme::OTHER_CLIENT_SECRET,
            acme::USERNAME,
            acme::PASSWORD,
        ),
        200,
        "fallback",
    )
    .await;
    assert_eq!(event["upstream_error"]["error"], "unauthorized_client");

    let live = live_report(proxy.admin_addr()).await;
    let events = proxy.events_path();
    // With the config (-c), the CLI also reads the state file: where each set's password
    // verifier comes from, as /report says.
    let config = proxy.config_path();
    let cli = report_cli(
        GRANTSHIFT,
        proxy.dir(),
        &[&events],
        &["-c", config.to_str().unwrap(), "--json"],
    )
    .await;
    assert_eq!(
        live,
        without_summary(serde_json::from_str::<Value>(&cli.stdout).unwrap()),
        "/report and `report --json` over the events file"
    );
    // From the events file alone, the verifiers are not known: the rows leave them out.
    let alone = report_cli_json(GRANTSHIFT, proxy.dir(), &[&events]).await;
    for row in alone["credentials"].as_array().unwrap() {
        assert!(row.get("password_verifier").is_none(), "{row}");
        assert!(row.get("verify_password").is_none(), "{row}");
    }
    assert_eq!(
        alone["credentials"].as_array().unwrap().len(),
        live["credentials"].as_array().unwrap().len()
    );
    // Without --events: the config's telemetry.events.
    let out = report_cli(
        GRANTSHIFT,
        proxy.dir(),
        &[],
        &["-c", proxy.config_path().to_str().unwrap(), "--json"],
    )
    .await;
    assert_eq!(
        without_summary(serde_json::from_str::<Value>(&out.stdout).unwrap()),
        live
    );

    let expected = [
        (acme::CLIENT_ID, acme::USERNAME, "needs-jwt"),
        (acme::CLIENT_ID, acme::REPORTS_USERNAME, "needs-jwt"),
        (NO_RUN_AS_APP, acme::USERNAME, "needs-run-as-user"),
        (acme::OTHER_CLIENT_ID, acme::USERNAME, "needs-flow-enabled"),
        (acme::CLIENT_ID, acme::PLUS_USERNAME, "failing"),
        (READY_APP, acme::USERNAME, "ready"),
        (acme_qa::CLIENT_ID, acme_qa::USERNAME, "upgraded"),
        (LEGACY_APP, acme::REPORTS_USERNAME, "observing"),
    ];
    let rows = live["credentials"].as_array().unwrap();
    assert_eq!(
        rows.len(),
        expected.len(),
        "one row per credential set:\n{live:#}"
    );
    for (client_id, username, want) in expected {
        assert_eq!(
            verdict(&live, client_id, username),
            want,
            "({client_id}, {username}):\n{live:#}"
        );
    }
    assert_most_urgent_first(&live);

    // What each row says beyond its verdict.
    let acme_url = format!("https://{}", acme::MY_DOMAIN);
    let upgraded = report_row(&live, acme_qa::CLIENT_ID, acme_qa::USERNAME);
    assert_eq!(upgraded["upgraded_via"], acme_qa::MY_DOMAIN);
    assert_eq!(upgraded["counts"], json!({"upgraded": 1}));
    assert_eq!(upgraded["hosts"], json!([TEST_HOST]));
    assert_eq!(upgraded["last_action"], "upgraded");
    assert_eq!(upgraded["last_status"], 200);
    assert_eq!(upgraded["org_id"], acme_qa::ORG_ID);
    assert!(upgraded.get("last_upgrade_error").is_none());

    let ready = report_row(&live, READY_APP, acme::USERNAME);
    assert_eq!(ready["instance_url"], acme_url.as_str());
    assert_eq!(ready["org_id"], acme::ORG_ID);
    assert_eq!(ready["counts"], json!({"observed": 1}));
    assert!(ready["hint"]
        .as_str()
        .unwrap()
        .contains(&format!("my_domain = \"{}\"", acme::MY_DOMAIN)));

    for username in [acme::USERNAME, acme::REPORTS_USERNAME] {
        let hint = report_row(&live, acme::CLIENT_ID, username)["hint"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            hint.contains(acme::USERNAME)
                && hint.contains(acme::REPORTS_USERNAME)
                && hint.contains("jwt_bearer"),
            "needs-jwt hint names both usernames and the flow: {hint}"
        );
    }

    let run_as = report_row(&live, NO_RUN_AS_APP, acme::USERNAME);
    assert_eq!(run_as["counts"], json!({"fallback": 1}));
    assert_eq!(run_as["last_status"], 200);
    assert_eq!(run_as["hosts"], json!([acme::MY_DOMAIN]));
    assert_eq!(
        run_as["last_upgrade_error"],
        json!({"status": 400, "error": "invalid_grant", "error_description": "no client credentials user enabled"})
    );
    assert_eq!(run_as["instance_url"], acme_url.as_str());
    assert!(run_as["hint"].as_str().unwrap().contains("Run As"));

    let flow = report_row(&live, acme::OTHER_CLIENT_ID, acme::USERNAME);
    assert_eq!(flow["last_upgrade_error"]["error"], "unauthorized_client");
    assert!(flow["hint"]
        .as_str()
        .unwrap()
        .to_lowercase()
        .contains("client credentials flow"));

    let failing = report_row(&live, acme::CLIENT_ID, acme::PLUS_USERNAME);
    assert_eq!(failing["last_status"], 400);
    assert!(failing.get("org_id").is_none() && failing.get("instance_url").is_none());

    let observing = report_row(&live, LEGACY_APP, acme::REPORTS_USERNAME);
    assert_eq!(observing["last_status"], 200);
    assert!(observing.get("instance_url").is_none());

    // The default output: an aligned table with the same rows.
    let table = report_cli(GRANTSHIFT, proxy.dir(), &[&events], &[])
        .await
        .stdout;
    assert_aligned_table(&table, rows);
}

/// The table has the summary line, a header and one line per row, with every column starting
/// at the offset of its header in every line.
fn assert_aligned_table(table: &str, rows: &[Value]) {
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines.len(),
        rows.len() + 2,
        "summary + header + rows:\n{table}"
    );
    assert!(
        lines[0].starts_with(&format!("{} credential sets: ", rows.len())),
        "the summary line first: {table}"
    );
    let lines = &lines[1..];
    let header = lines[0];
    let column = |name: &str| {
        header
            .find(name)
            .unwrap_or_else(|| panic!("no {name} column in {header:?}"))
    };
    assert!(header.starts_with("VERDICT"), "{header:?}");
    let (client_at, user_at) = (column("CLIENT_ID"), column("USERNAME"));
    for (line, row) in lines[1..].iter().zip(rows) {
        let cell = |at: usize| line.get(at..).unwrap_or("");
        assert!(
            line.starts_with(row["verdict"].as_str().unwrap()),
            "{line:?}"
        );
        assert!(
            cell(client_at).starts_with(row["client_id"].as_str().unwrap()),
            "CLIENT_ID column aligned:\n{table}"
        );
        assert!(
            cell(user_at).starts_with(row["username"].as_str().unwrap()),
            "USERNAME column aligned:\n{table}"
        );
    }
}

/// `ts` of every event in a file, in order.
fn stamps(path: &Path) -> Vec<String> {
    read_events(path)
        .iter()
        .map(|e| e["ts"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn two_replicas_files_merge_counts_per_set_and_reveal_needs_jwt() {
    let observe = rollout_toml("*", "observe", 100, true);
    let a = TestProxy::start(&observe).await;
    let b = TestProxy::start(&observe).await;
    add_apps(&a.sf);
    add_apps(&b.sf);
    let ready_form = password_form(READY_APP, READY_SECRET, acme::USERNAME, acme::PASSWORD);
    let reports_form = password_form(
        acme::CLIENT_ID,
        acme::CLIENT_SECRET,
        acme::REPORTS_USERNAME,
        acme::REPORTS_PASSWORD,
    );

    // Replica a: the integration user of the app; replica b: the reports user of the same
    // app. The READY app's set logs in on both, at two hosts.
    login(&a, LOGIN_HOST, &acme_password_form(), 200, "observed").await;
    login(&a, LOGIN_HOST, &ready_form, 200, "observed").await;
    login(&b, LOGIN_HOST, &reports_form, 200, "observed").await;
    login(&b, acme::MY_DOMAIN, &ready_form, 200, "observed").await;
    login(&b, acme::MY_DOMAIN, &ready_form, 200, "observed").await;

    let (file_a, file_b) = (a.events_path(), b.events_path());
    // With each replica's config (-c), the CLI knows its verifiers as its /report does.
    let with_config = |proxy: &TestProxy, file: &std::path::Path| {
        let config = proxy.config_path();
        let dir = proxy.dir().to_path_buf();
        let file = file.to_path_buf();
        async move {
            let out = report_cli(
                GRANTSHIFT,
                &dir,
                &[&file],
                &["-c", config.to_str().unwrap(), "--json"],
            )
            .await;
            without_summary(serde_json::from_str::<Value>(&out.stdout).unwrap())
        }
    };
    let only_a = with_config(&a, &file_a).await;
    let only_b = with_config(&b, &file_b).await;
    assert_eq!(only_a, live_report(a.admin_addr()).await, "replica a");
    assert_eq!(only_b, live_report(b.admin_addr()).await, "replica b");
    // Each replica alone sees one username per app: nothing needs JWT.
    assert_eq!(verdict(&only_a, acme::CLIENT_ID, acme::USERNAME), "ready");
    assert_eq!(
        verdict(&only_b, acme::CLIENT_ID, acme::REPORTS_USERNAME),
        "ready"
    );

    let merged = report_cli_json(GRANTSHIFT, a.dir(), &[&file_a, &file_b]).await;
    assert_eq!(
        merged,
        report_cli_json(GRANTSHIFT, a.dir(), &[&file_b, &file_a]).await,
        "the order of the files does not matter"
    );
    assert_eq!(merged["credentials"].as_array().unwrap().len(), 3);
    assert_eq!(
        verdict(&merged, acme::CLIENT_ID, acme::USERNAME),
        "needs-jwt"
    );
    assert_eq!(
        verdict(&merged, acme::CLIENT_ID, acme::REPORTS_USERNAME),
        "needs-jwt"
    );
    assert_most_urgent_first(&merged);

    let ready = report_row(&merged, READY_APP, acme::USERNAME);
    assert_eq!(ready["verdict"], "ready");
    assert_eq!(ready["counts"], json!({"observed": 3}));
    assert_eq!(ready["hosts"], json!([acme::MY_DOMAIN, LOGIN_HOST]));
    let (ts_a, ts_b) = (stamps(&file_a), stamps(&file_b));
    assert_eq!(
        ready["first_seen"],
        ts_a[1].as_str(),
        "from replica a's file"
    );
    assert_eq!(
        ready["last_seen"],
        ts_b[2].as_str(),
        "from replica b's file"
    );

    let table = report_cli(GRANTSHIFT, a.dir(), &[&file_a, &file_b], &[])
        .await
        .stdout;
    let jwt_lines = table.lines().filter(|l| l.starts_with("needs-jwt")).count();
    assert_eq!(jwt_lines, 2, "{table}");
}

#[tokio::test]
async fn suggested_config_passes_check_and_upgrades_the_learned_sets() {
    let observing = TestProxy::start(&rollout_toml("*", "observe", 100, true)).await;
    let qa_form = acme_qa_password_form();
    login(
        &observing,
        LOGIN_HOST,
        &acme_password_form(),
        200,
        "observed",
    )
    .await;
    login(&observing, TEST_HOST, &qa_form, 200, "observed").await;

    let suggestion = report_cli(
        GRANTSHIFT,
        observing.dir(),
        &[&observing.events_path()],
        &["--suggest-config"],
    )
    .await
    .stdout;
    let parsed: toml::Table = toml::from_str(&suggestion)
        .unwrap_or_else(|e| panic!("--suggest-config is not TOML ({e}):\n{suggestion}"));
    let entries = parsed["credentials"]
        .as_array()
        .unwrap_or_else(|| panic!("no [[credentials]]:\n{suggestion}"));
    let mut got: Vec<toml::Value> = entries.clone();
    got.sort_by_key(|e| e["username"].as_str().unwrap().to_string());
    let entry = |username: &str, domain: &str, client_id: &str| {
        toml::Value::Table(
            [
                ("username", username),
                ("my_domain", domain),
                ("flow", "client_credentials"),
                ("client_id", client_id),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), toml::Value::String(v.to_string())))
            .collect(),
        )
    };
    assert_eq!(
        got,
        vec![
            entry(acme::USERNAME, acme::MY_DOMAIN, acme::CLIENT_ID),
            entry(acme_qa::USERNAME, acme_qa::MY_DOMAIN, acme_qa::CLIENT_ID),
        ],
        "{suggestion}"
    );

    // Pasted into a config (no [[rollout]]: upgrade everything), `grantshift check` accepts it.
    let up = Upstreams::start().await;
    let builder = TestProxy::builder().extra_toml(&suggestion);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("grantshift.toml");
    std::fs::write(&config, builder.render(&up)).unwrap();
    let mut cmd = GRANTSHIFT.command(dir.path());
    cmd.arg("check").arg("-c").arg(&config);
    let check = run_to_end(cmd).await;
    assert!(
        check.status.success(),
        "grantshift check rejected the suggestion: {}\n{}",
        check.stderr,
        check.stdout
    );
    assert!(
        check.stdout.contains(acme::USERNAME) && check.stdout.contains(acme_qa::USERNAME),
        "the effective settings list the new credentials:\n{}",
        check.stdout
    );

    // Loaded, it upgrades both learned sets to their learned My Domains.
    let upgrading = builder.start_with(up).await;
    let event = login(
        &upgrading,
        LOGIN_HOST,
        &acme_password_form(),
        200,
        "upgraded",
    )
    .await;
    assert_eq!(event["target_host"], acme::MY_DOMAIN);
    assert_eq!(event["flow"], "client_credentials");
    let event = login(&upgrading, TEST_HOST, &qa_form, 200, "upgraded").await;
    assert_eq!(event["target_host"], acme_qa::MY_DOMAIN);
    let sent: Vec<(String, Option<String>)> = upgrading
        .sf
        .token_requests()
        .iter()
        .map(|r| {
            (
                r.host_name().unwrap_or("").to_string(),
                r.param("grant_type"),
            )
        })
        .collect();
    assert_eq!(
        sent,
        vec![
            (
                acme::MY_DOMAIN.to_string(),
                Some("client_credentials".into())
            ),
            (
                acme_qa::MY_DOMAIN.to_string(),
                Some("client_credentials".into())
            ),
        ]
    );
}

/// The peak resident memory of process `pid` in KiB (`VmHWM` in `/proc/<pid>/status`).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}

#[tokio::test]
async fn a_large_events_file_seeds_the_report_without_being_held_in_memory() {
    // 64 MiB of events, as a busy proxy writes in days: seeding reads it line by line.
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("big-events.jsonl");
    let line = |i: usize| {
        format!(
            "{{\"ts\":\"2026-11-30T10:00:00.{i:06}Z\",\"client\":\"127.0.0.1:5000\",\"host\":\"login.salesforce.com\",\"grant\":\"password\",\"client_id\":\"3MVG9app{}\",\"username\":\"user{}@acme.com\",\"action\":\"observed\",\"reason\":\"no_rule\",\"status\":200,\"latency_ms\":3.1,\"org_id\":\"00D000000000001AAA\",\"instance_url\":\"https://acme.my.salesforce.com\",\"padding\":\"{}\"}}\n",
            i % 7,
            i % 50,
            "x".repeat(200)
        )
    };
    let mut text = String::with_capacity(70 << 20);
    let mut n = 0;
    while text.len() < 64 << 20 {
        text.push_str(&line(n));
        n += 1;
    }
    std::fs::write(&events, &text).unwrap();
    drop(text);

    let up = Upstreams::start().await;
    let builder = TestProxy::builder().events(events.to_str().unwrap());
    let bin = BinaryProxy::start(GRANTSHIFT, &up, &builder, "json", None).await;
    let seeded = bin
        .bin
        .wait_for_json_logs("report seeded from the events file", 1)
        .await;
    assert_eq!(seeded[0]["fields"]["events"], n, "every line was read");
    let peak = peak_rss_kib(bin.bin.pid());
    assert!(
        peak < 32 * 1024,
        "seeding a 64 MiB events file peaked at {peak} KiB resident: the file was held in memory"
    );
}

/// Failed logins with huge usernames in the bounds test.
const HUGE_LOGINS: usize = 300;

#[tokio::test]
async fn logins_with_huge_usernames_leave_the_report_small_and_are_counted() {
    let proxy = TestProxy::start("").await;
    let huge = format!("{}@acme.com", "u".repeat(30 * 1024));
    let body = password_form(acme::CLIENT_ID, acme::CLIENT_SECRET, &huge, "wrong");
    let mut conn = proxy.intercepted(LOGIN_HOST, Http::H1).await;
    for n in 0..HUGE_LOGINS {
        let reply = post_form(&mut conn, LOGIN_HOST, TOKEN_PATH, &body).await;
        assert_eq!(
            reply.status,
            400,
            "Salesforce refuses login {n}: {}",
            reply.text()
        );
        let event = proxy.next_event().await;
        assert_eq!(
            (&event["action"], &event["reason"]),
            (&"skipped".into(), &"username_too_long".into()),
            "{event}"
        );
        assert!(event.get("username").is_none(), "{event}");
        assert_eq!(event["oversized"]["username"], huge.chars().count());
    }
    // Forwarded untouched: Salesforce saw each username whole.
    let seen = proxy.sf.token_requests();
    assert_eq!(seen.len(), HUGE_LOGINS);
    assert!(seen.iter().all(|r| r.body == body.as_bytes()));

    let admin = proxy.admin_addr();
    let report = admin_get(admin, "/report").await;
    // The summary (~700 bytes) and one trend hour are there whatever the usernames were.
    assert!(
        report.body.len() < 2 * 1024,
        "/report is {} bytes after {HUGE_LOGINS} logins of {} KiB usernames",
        report.body.len(),
        huge.len() / 1024
    );
    let report: Value = serde_json::from_slice(&report.body).unwrap();
    assert_eq!(report["credentials"], json!([]));
    assert_eq!(
        report["untracked_logins"],
        json!({"username_too_long": HUGE_LOGINS})
    );
    let page = admin_get(admin, "/").await;
    assert!(page.body.len() < 8 * 1024, "/ is {} bytes", page.body.len());
    assert!(
        page.text()
            .contains(&format!("username_too_long {HUGE_LOGINS}")),
        "{}",
        page.text()
    );
    // The events file holds lengths, not the usernames.
    let file = std::fs::metadata(proxy.events_path()).unwrap().len();
    assert!(
        file < (HUGE_LOGINS * 1024) as u64,
        "events file {file} bytes"
    );
}

#[tokio::test]
async fn the_report_keeps_the_most_recently_seen_sets_and_counts_the_dropped() {
    let proxy = TestProxy::builder()
        .telemetry("report_max_sets = 3")
        .extra_toml(&rollout_toml("*", "observe", 100, true))
        .start()
        .await;
    // u1 is seen again after u3: then u2 is the least recently seen, then u3.
    for user in ["u1", "u2", "u3", "u1", "u4", "u5"] {
        let body = password_form(
            acme::CLIENT_ID,
            acme::CLIENT_SECRET,
            &format!("{user}@acme.com"),
            "pw",
        );
        login(&proxy, LOGIN_HOST, &body, 400, "observed").await;
    }

    let admin = proxy.admin_addr();
    let live = live_report(admin).await;
    let mut kept: Vec<&str> = live["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["username"].as_str().unwrap())
        .collect();
    kept.sort();
    assert_eq!(kept, ["u1@acme.com", "u4@acme.com", "u5@acme.com"]);
    assert_eq!(live["dropped_sets"], 2);
    let page = admin_get(admin, "/").await.text();
    assert!(
        page.contains("at most 3 credential sets")
            && page.contains(r#"<span id="dropped-sets">2</span>"#),
        "{page}"
    );
    let m = scrape(admin).await;
    assert_eq!(
        m.value("grantshift_report_sets_dropped_total", &[]),
        Some(2.0)
    );
    // `grantshift report` with the same config keeps the same sets and says so.
    let config = proxy.config_path();
    let args = ["-c", config.to_str().unwrap()];
    let events = proxy.events_path();
    let table = report_cli(GRANTSHIFT, proxy.dir(), &[&events], &args)
        .await
        .stdout;
    assert!(
        table.contains("(2 credential sets dropped, least recently seen first"),
        "{table}"
    );
    let json = report_cli(
        GRANTSHIFT,
        proxy.dir(),
        &[&events],
        &[&args[..], &["--json"]].concat(),
    )
    .await
    .stdout;
    assert_eq!(
        without_summary(serde_json::from_str::<Value>(&json).unwrap()),
        live
    );
}

#[tokio::test]
async fn a_login_with_basic_client_authentication_is_a_credential_set_with_its_client_id() {
    let proxy = TestProxy::start(&rollout_toml(LOGIN_HOST, "observe", 100, true)).await;
    let basic = basic_auth(acme::CLIENT_ID, acme::CLIENT_SECRET);
    let body = form(&[
        ("grant_type", "password"),
        ("username", acme::USERNAME),
        ("password", acme::PASSWORD),
    ]);
    let (status, answer) = proxy
        .token_request_then_close_with(LOGIN_HOST, &[("authorization", &basic)], &body)
        .await;
    assert_eq!(
        status, 200,
        "Salesforce takes Basic client authentication: {answer}"
    );
    let up = &proxy.sf.token_requests()[0];
    assert_eq!(up.body, body.as_bytes(), "observed: forwarded as sent");
    assert_eq!(up.header_values("authorization"), vec![basic.as_str()]);

    let event = proxy.next_event().await;
    assert_eq!(event["action"], "observed", "{event}");
    assert_eq!(event["client_id"], acme::CLIENT_ID, "{event}");
    let line = std::fs::read_to_string(proxy.events_path()).unwrap();
    let live = live_report(proxy.admin_addr()).await;
    let row = report_row(&live, acme::CLIENT_ID, acme::USERNAME);
    assert_eq!(row["verdict"], "ready", "{row}");
    let page = admin_get(proxy.admin_addr(), "/").await.text();
    let metrics = admin_get(proxy.admin_addr(), "/metrics").await.text();
    let encoded_secret = basic.trim_start_matches("Basic ");
    for (what, text) in [
        ("the events file", line),
        ("/report", live.to_string()),
        ("/", page),
        ("/metrics", metrics),
    ] {
        assert!(
            !text.contains(acme::CLIENT_SECRET) && !text.contains(encoded_secret),
            "{what} holds the client secret:\n{text}"
        );
    }
}

#[tokio::test]
async fn two_usernames_of_one_app_upgraded_with_jwt_bearer_are_upgraded_not_needs_jwt() {
    // The advice of needs-jwt followed: both usernames of the app mapped with
    // flow = "jwt_bearer" (each with its configured password_hash), and their logins upgrade.
    let proxy = TestProxy::builder()
        .extra_toml(&jwt_credentials_with_password_toml(
            acme::USERNAME,
            Some(acme::MY_DOMAIN),
            "jwt-app.pkcs8.pem",
            acme::PASSWORD,
        ))
        .extra_toml(&jwt_credentials_with_password_toml(
            acme::REPORTS_USERNAME,
            Some(acme::MY_DOMAIN),
            "jwt-app.pkcs8.pem",
            acme::REPORTS_PASSWORD,
        ))
        .start()
        .await;
    let reports_form = password_form(
        acme::CLIENT_ID,
        acme::CLIENT_SECRET,
        acme::REPORTS_USERNAME,
        acme::REPORTS_PASSWORD,
    );
    for _ in 0..2 {
        let event = login(&proxy, LOGIN_HOST, &acme_password_form(), 200, "upgraded").await;
        assert_eq!(event["flow"], "jwt_bearer");
        let event = login(&proxy, LOGIN_HOST, &reports_form, 200, "upgraded").await;
        assert_eq!(event["flow"], "jwt_bearer");
    }

    let live = live_report(proxy.admin_addr()).await;
    let config = proxy.config_path();
    let cli = report_cli(
        GRANTSHIFT,
        proxy.dir(),
        &[&proxy.events_path()],
        &["-c", config.to_str().unwrap(), "--json"],
    )
    .await;
    let cli: Value = without_summary(serde_json::from_str(&cli.stdout).unwrap());
    assert_eq!(cli, live, "the live and the CLI report agree");
    for username in [acme::USERNAME, acme::REPORTS_USERNAME] {
        let row = report_row(&live, acme::CLIENT_ID, username);
        assert_eq!(row["verdict"], "upgraded", "{row}");
        assert_eq!(row["upgraded_via"], acme::MY_DOMAIN, "{row}");
    }
}

/// An events file with three usernames of one app in one org (`needs-jwt`, whose hint is
/// long), one of them long and not ASCII, and an upgraded set.
fn wide_events(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("events.jsonl");
    let long_user = "intégration.entrepôt-données-nocturne-synchronisation@acme.com";
    let mut lines = String::new();
    for (i, user) in [long_user, "a@acme.com", "b@acme.com"].iter().enumerate() {
        lines.push_str(
            &json!({
                "ts": format!("2026-11-30T10:0{i}:00.000000Z"), "client": "127.0.0.1:1",
                "host": LOGIN_HOST, "grant": "password",
                "client_id": "3MVG9LongConsumerKeyOfTheWarehouseSyncConnectedApp.qX7Lw2Zp",
                "username": user, "action": "observed", "status": 200,
                "org_id": acme::ORG_ID, "instance_url": format!("https://{}", acme::MY_DOMAIN),
                "latency_ms": 10.0,
            })
            .to_string(),
        );
        lines.push('\n');
    }
    lines.push_str(
        &json!({
            "ts": "2026-11-30T11:00:00.000000Z", "client": "127.0.0.1:1",
            "host": acme::MY_DOMAIN, "grant": "password", "client_id": "other",
            "username": "c@acme.com", "action": "upgraded", "status": 200,
            "target_host": acme::MY_DOMAIN, "flow": "client_credentials", "latency_ms": 10.0,
        })
        .to_string(),
    );
    lines.push('\n');
    std::fs::write(&path, lines).unwrap();
    path
}

/// `grantshift report --events <file> <extra>` with `COLUMNS` set or not (stdout is a pipe).
async fn report_table(dir: &Path, events: &Path, columns: Option<&str>, extra: &[&str]) -> String {
    let mut cmd = GRANTSHIFT.command(dir);
    cmd.arg("report").arg("--events").arg(events).args(extra);
    if let Some(columns) = columns {
        cmd.env("COLUMNS", columns);
    }
    let out = run_to_end(cmd).await;
    assert!(out.status.success(), "{out:?}");
    out.stdout
}

#[tokio::test]
async fn the_table_starts_with_the_summary_and_fits_columns_unless_wide() {
    let dir = tempfile::tempdir().unwrap();
    let events = wide_events(dir.path());
    let long_user = "intégration.entrepôt-données-nocturne-synchronisation@acme.com";
    let narrow = report_table(dir.path(), &events, Some("80"), &[]).await;
    let lines: Vec<&str> = narrow.lines().collect();
    assert!(
        lines[0].starts_with("4 credential sets: 3 needs-jwt, 1 upgraded"),
        "the summary line first:\n{narrow}"
    );
    assert!(
        narrow.contains("days left") || narrow.contains("passed"),
        "{narrow}"
    );
    assert!(
        narrow.contains("SOAP login() retires Summer '27 (1 Jun 2027)"),
        "{narrow}"
    );
    for line in &lines {
        assert!(
            line.chars().count() <= 80,
            "{} chars: {line:?}",
            line.chars().count()
        );
    }
    let header = lines
        .iter()
        .position(|l| l.starts_with("VERDICT"))
        .expect("a header line");
    assert!(
        narrow.contains("(left out to fit 80 columns: VERIFIER, SEEN; --wide shows everything)"),
        "{narrow}"
    );
    let rows = &lines[header + 1..header + 5];
    // Every needs-jwt row is cut at its hint; the long username is cut too, with `…`, and
    // never inside a character.
    for row in rows.iter().filter(|r| r.starts_with("needs-jwt")) {
        assert!(row.ends_with('…'), "{row:?}");
    }
    assert!(!narrow.contains(long_user), "{narrow}");
    let username_at = lines[header].find("USERNAME").unwrap();
    let cut_user = rows
        .iter()
        .map(|r| {
            r.chars()
                .skip(lines[header][..username_at].chars().count())
                .collect::<String>()
        })
        .find(|cell| cell.starts_with("intégration"))
        .expect("the long username's row");
    let cut_user = cut_user.split("  ").next().unwrap();
    assert!(
        cut_user.ends_with('…') && long_user.starts_with(cut_user.trim_end_matches('…')),
        "{cut_user:?}"
    );

    // --wide (even with COLUMNS) and a pipe without COLUMNS: nothing cut.
    for wide in [
        report_table(dir.path(), &events, Some("80"), &["--wide"]).await,
        report_table(dir.path(), &events, None, &[]).await,
    ] {
        assert!(!wide.contains('…'), "{wide}");
        assert!(wide.contains(long_user), "{wide}");
        assert!(wide.contains("client credentials has one Run As user, so map them with flow = \"jwt_bearer\" and the app's private key"), "{wide}");
        let first = wide.lines().next().unwrap();
        assert!(
            first.starts_with("4 credential sets: ") && first.contains("; SOAP login() retires"),
            "one summary line: {wide}"
        );
        assert!(wide.lines().any(|l| l.chars().count() > 80), "{wide}");
    }
    // The help says so.
    let mut help = GRANTSHIFT.command(dir.path());
    help.args(["report", "--help"]);
    let help = run_to_end(help).await.stdout;
    assert!(
        help.contains("--wide") && help.contains("COLUMNS"),
        "{help}"
    );
}
