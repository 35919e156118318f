//! Reloading the config (docs/operating.md, "Reloading the config (SIGHUP)", "The config file", "The upgrade"): a new `percent` takes effect for the
//! next login, also on connections opened before the reload, while open blind tunnels keep
//! working; raising `percent` only adds sets; SIGHUP reopens the events file (rotation); SIGHUP on the binary with an invalid file keeps
//! the running config (and says so), and a valid file then applies.

use crate::GRANTSHIFT;
use grantshift::policy::bucket;
use testkit::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config_with_percent(percent: u8) -> String {
    rollout_toml("*", "upgrade", percent, true) + &acme_mapping()
}

/// Write `bytes` into a blind tunnel to the echo server and read them back.
async fn echo_through(tunnel: &mut TcpStream, bytes: &[u8]) {
    within(10, "echo through the blind tunnel", async {
        tunnel
            .write_all(bytes)
            .await
            .expect("write into the tunnel");
        let mut back = vec![0u8; bytes.len()];
        tunnel
            .read_exact(&mut back)
            .await
            .expect("read from the tunnel");
        assert_eq!(back, bytes, "the tunnel still carries bytes both ways");
    })
    .await;
}

#[tokio::test]
async fn reload_raising_percent_upgrades_new_logins_while_an_open_tunnel_keeps_working() {
    // Without the token cache: each upgraded login's own request is counted below.
    let mut proxy = TestProxy::builder()
        .extra_toml(&config_with_percent(0))
        .token_cache_off()
        .start()
        .await;
    let (status, mut tunnel) = proxy.connect(&format!("{ECHO_HOST}:443")).await;
    assert_eq!(status, 200);
    echo_through(&mut tunnel, b"before the reload").await;
    // An intercepted connection opened before the reload, too.
    let mut early = proxy.intercepted(LOGIN_HOST, Http::H1).await;

    assert_eq!(
        proxy.login(LOGIN_HOST, &acme_password_form()).await.status,
        200
    );
    let event = proxy.next_event().await;
    assert_eq!(event["action"], "observed");
    assert_eq!(event["reason"], "percent");

    let builder = proxy
        .builder_used()
        .with_extra_toml(&config_with_percent(100));
    proxy.reload(builder);

    echo_through(&mut tunnel, b"after the reload").await;
    assert_eq!(
        proxy.login(LOGIN_HOST, &acme_password_form()).await.status,
        200
    );
    assert_eq!(proxy.next_event().await["action"], "upgraded");
    let reply = post_form(&mut early, LOGIN_HOST, TOKEN_PATH, &acme_password_form()).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        proxy.next_event().await["action"],
        "upgraded",
        "a connection opened before the reload follows the new config"
    );
    echo_through(&mut tunnel, b"still there").await;

    assert_eq!(
        proxy.sf.token_request_hosts(),
        vec![LOGIN_HOST, acme::MY_DOMAIN, acme::MY_DOMAIN]
    );
}

#[tokio::test]
async fn raising_percent_only_adds_sets() {
    // One username in each band: below 30, 30..70, 70 and above.
    let mut bands: [Option<String>; 3] = [None, None, None];
    for i in 0.. {
        let name = format!("band{i}@acme.com");
        let band = match bucket(acme::CLIENT_ID, &name) {
            0..30 => 0,
            30..70 => 1,
            _ => 2,
        };
        bands[band].get_or_insert(name);
        if bands.iter().all(Option::is_some) {
            break;
        }
    }
    let users: Vec<String> = bands.into_iter().map(Option::unwrap).collect();
    let mappings: String = users
        .iter()
        .map(|u| credentials_toml(u, acme::MY_DOMAIN))
        .collect();

    let mut proxy = TestProxy::start(&(rollout_toml("*", "upgrade", 30, true) + &mappings)).await;
    proxy.sf.edit(|w| {
        for u in &users {
            w.org_mut(acme::ORG_ID).add_user(u, "pw-SECRET-band");
        }
    });
    let mut actions = Vec::new();
    for percent in [30, 70] {
        if percent == 70 {
            let builder = proxy
                .builder_used()
                .with_extra_toml(&(rollout_toml("*", "upgrade", 70, true) + &mappings));
            proxy.reload(builder);
        }
        let mut round = Vec::new();
        for u in &users {
            let body = password_form(acme::CLIENT_ID, acme::CLIENT_SECRET, u, "pw-SECRET-band");
            assert_eq!(proxy.login(LOGIN_HOST, &body).await.status, 200);
            round.push(
                proxy.next_event().await["action"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
        actions.push(round);
    }
    assert_eq!(actions[0], ["upgraded", "observed", "observed"], "at 30 %");
    assert_eq!(actions[1], ["upgraded", "upgraded", "observed"], "at 70 %");
}

#[tokio::test]
async fn reload_adding_a_credential_upgrades_the_next_login() {
    let mut proxy = TestProxy::start("").await;
    assert_eq!(
        proxy.login(LOGIN_HOST, &acme_password_form()).await.status,
        200
    );
    assert_eq!(proxy.next_event().await["action"], "unmapped");
    let builder = proxy.builder_used().with_extra_toml(&acme_mapping());
    proxy.reload(builder);
    assert_eq!(
        proxy.login(LOGIN_HOST, &acme_password_form()).await.status,
        200
    );
    let event = proxy.next_event().await;
    assert_eq!(event["action"], "upgraded");
    assert_eq!(event["target_host"], acme::MY_DOMAIN);
}

#[tokio::test]
async fn reload_of_connect_to_sends_the_next_upgrade_to_the_new_address() {
    let down = format!("{}:443", acme::MY_DOMAIN);
    let mut proxy = TestProxy::builder()
        .connect_to(&down, closed_port())
        .extra_toml(&acme_mapping())
        .start()
        .await;
    assert_eq!(
        proxy.login(LOGIN_HOST, &acme_password_form()).await.status,
        200
    );
    assert_eq!(proxy.next_event().await["action"], "fallback");

    // The My Domain is reachable again: route it back to the fake Salesforce.
    let builder = proxy
        .builder_used()
        .clone()
        .connect_to(&down, proxy.sf.addr());
    proxy.reload(builder);
    assert_eq!(
        proxy.login(LOGIN_HOST, &acme_password_form()).await.status,
        200
    );
    assert_eq!(proxy.next_event().await["action"], "upgraded");
    assert_eq!(
        proxy.sf.token_request_hosts(),
        vec![LOGIN_HOST, acme::MY_DOMAIN]
    );
}

#[tokio::test]
async fn a_login_in_flight_during_a_reload_finishes_under_the_config_it_started_with() {
    let mut proxy = TestProxy::start(&config_with_percent(100)).await;
    proxy.sf.hold_token_requests_at(acme::MY_DOMAIN);
    let mut conn = proxy.intercepted(LOGIN_HOST, Http::H1).await;
    let in_flight = tokio::spawn(async move {
        post_form(&mut conn, LOGIN_HOST, TOKEN_PATH, &acme_password_form()).await
    });
    // The upgraded attempt has reached the My Domain and waits there.
    within(
        10,
        "the upgraded attempt arriving",
        proxy.sf.wait_token_hold_arrived(),
    )
    .await;

    let observe = rollout_toml("*", "observe", 100, true) + &acme_mapping();
    let builder = proxy.builder_used().with_extra_toml(&observe);
    proxy.reload(builder);
    proxy.sf.release_holds();

    let reply = within(20, "the in-flight login", in_flight).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        reply.json()["id"]
            .as_str()
            .unwrap()
            .ends_with(acme::RUN_AS_USER_ID),
        "the in-flight login was upgraded"
    );
    assert_eq!(proxy.next_event().await["action"], "upgraded");

    assert_eq!(
        proxy.login(LOGIN_HOST, &acme_password_form()).await.status,
        200
    );
    assert_eq!(
        proxy.next_event().await["action"],
        "observed",
        "the next one follows the reload"
    );
}

#[tokio::test]
async fn reload_can_move_events_to_a_new_file() {
    let mut proxy = TestProxy::start(&acme_mapping()).await;
    proxy.login(LOGIN_HOST, &acme_password_form()).await;
    proxy.next_event().await;
    let builder = proxy
        .builder_used()
        .clone()
        .events("events-after-reload.jsonl");
    proxy.reload(builder);
    proxy.login(LOGIN_HOST, &acme_password_form()).await;
    let event = proxy.next_event().await;
    assert_eq!(
        proxy.events_in_file().len(),
        1,
        "the old file got no new line"
    );
    assert_eq!(
        read_events(&proxy.dir().join("events-after-reload.jsonl")),
        vec![event]
    );
}

/// The `action` of every `token request` log line so far, once there are `n`.
async fn token_request_actions(bin: &BinaryProxy, n: usize) -> Vec<String> {
    bin.bin
        .wait_for_json_logs("token request", n)
        .await
        .iter()
        .map(|l| l["fields"]["action"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Wait for the `n`th log line whose message starts with `prefix`; returns it.
async fn nth_log_starting_with(bin: &BinaryProxy, prefix: &str, n: usize) -> serde_json::Value {
    let lines = bin
        .bin
        .wait_for_stderr(&format!("{n} `{prefix}…` log lines"), |lines| {
            lines.iter().filter(|l| l.contains(prefix)).count() >= n
        })
        .await;
    let line = lines
        .iter()
        .filter(|l| l.contains(prefix))
        .nth(n - 1)
        .unwrap();
    serde_json::from_str(line).expect("JSON log line")
}

#[tokio::test]
async fn sighup_with_an_invalid_file_keeps_the_config_then_a_valid_file_applies() {
    let up = Upstreams::start().await;
    let builder = TestProxy::builder().extra_toml(&config_with_percent(0));
    let bin = BinaryProxy::start(GRANTSHIFT, &up, &builder, "json", None).await;
    let (status, mut tunnel) = connect_tunnel(bin.bin.addr(), &format!("{ECHO_HOST}:443")).await;
    assert_eq!(status, 200);
    echo_through(&mut tunnel, b"before any reload").await;

    assert_eq!(
        bin.login(LOGIN_HOST, &acme_password_form()).await.status,
        200
    );
    assert_eq!(token_request_actions(&bin, 1).await, ["observed"]);
    // The admin page's header: which config, and how the last reload went.
    let admin = bin.bin.admin_addr().await;
    let header = || async move {
        let page = testkit::admin::admin_get(admin, "/").await.text();
        let start = page.find("<p class=\"meta\"").expect("the page's header");
        page[start..start + page[start..].find("</p>").unwrap()].to_string()
    };
    let before = header().await;
    let config = bin.config_path().display().to_string();
    assert!(before.contains(&config), "{before}");
    assert!(
        before.contains("last reload: <span id=\"last-reload\">none since start"),
        "{before}"
    );

    // An invalid file: the running config stays, and the log says why.
    std::fs::write(
        bin.config_path(),
        builder
            .with_extra_toml(&config_with_percent(101))
            .render(&up),
    )
    .unwrap();
    bin.bin.signal("HUP");
    let failed = nth_log_starting_with(&bin, "config reload failed", 1).await;
    assert_eq!(failed["level"], "ERROR");
    assert!(
        failed.to_string().contains("percent"),
        "the error names the bad key: {failed}"
    );
    echo_through(&mut tunnel, b"after the failed reload").await;
    let after_failed = header().await;
    assert!(
        after_failed.contains("failed: ") && after_failed.contains("percent"),
        "the page says the reload failed and why: {after_failed}"
    );
    assert_eq!(
        bin.login(LOGIN_HOST, &acme_password_form()).await.status,
        200
    );
    assert_eq!(
        token_request_actions(&bin, 2).await,
        ["observed", "observed"]
    );

    // A valid file: applied for the next login.
    std::fs::write(
        bin.config_path(),
        builder
            .with_extra_toml(&config_with_percent(100))
            .render(&up),
    )
    .unwrap();
    bin.bin.signal("HUP");
    nth_log_starting_with(&bin, "config reloaded", 1).await;
    echo_through(&mut tunnel, b"after the good reload").await;
    let after_ok = header().await;
    assert!(
        after_ok.contains(" ok</span>") && !after_ok.contains("failed"),
        "{after_ok}"
    );
    assert_eq!(
        bin.login(LOGIN_HOST, &acme_password_form()).await.status,
        200
    );
    assert_eq!(
        token_request_actions(&bin, 3).await,
        ["observed", "observed", "upgraded"]
    );
    let last = up.sf.token_requests().pop().unwrap();
    assert_eq!(last.host_name(), Some(acme::MY_DOMAIN));
    echo_through(&mut tunnel, b"still open").await;
}

#[tokio::test]
async fn sighup_changing_keys_that_need_a_restart_warns_naming_them_and_applies_the_rest() {
    let up = Upstreams::start().await;
    let restart_only = |max_connections: u32, leaf_cache_size: u32| {
        TestProxy::builder()
            .proxy(&format!("max_connections = {max_connections}"))
            .proxy(&format!("leaf_cache_size = {leaf_cache_size}"))
    };
    let before = restart_only(500, 100).extra_toml(&config_with_percent(0));
    let bin = BinaryProxy::start(GRANTSHIFT, &up, &before, "json", None).await;
    assert_eq!(
        bin.login(LOGIN_HOST, &acme_password_form()).await.status,
        200
    );
    assert_eq!(token_request_actions(&bin, 1).await, ["observed"]);

    let after = restart_only(400, 50).extra_toml(&config_with_percent(100));
    std::fs::write(bin.config_path(), after.render(&up)).unwrap();
    bin.bin.signal("HUP");
    let warned = nth_log_starting_with(&bin, "these changes take effect after a restart", 1).await;
    assert_eq!(warned["level"], "WARN", "{warned}");
    assert_eq!(
        warned["fields"]["keys"], "proxy.max_connections, proxy.leaf_cache_size",
        "{warned}"
    );
    // The rest of the file applies: the next login is upgraded.
    nth_log_starting_with(&bin, "config reloaded", 1).await;
    assert_eq!(
        bin.login(LOGIN_HOST, &acme_password_form()).await.status,
        200
    );
    assert_eq!(
        token_request_actions(&bin, 2).await,
        ["observed", "upgraded"]
    );
}

#[tokio::test]
async fn sighup_reopens_the_events_file_so_a_renamed_file_keeps_exactly_the_earlier_events() {
    let up = Upstreams::start().await;
    let builder = TestProxy::builder().extra_toml(&config_with_percent(100));
    let mut bin = BinaryProxy::start(GRANTSHIFT, &up, &builder, "json", None).await;
    let path = bin.events_path();
    let rotated = bin.dir().join("events.1.jsonl");
    let lines_in = |file: &std::path::Path| read_events(file).len();

    for _ in 0..3 {
        assert_eq!(
            bin.login(LOGIN_HOST, &acme_password_form()).await.status,
            200
        );
    }
    testkit::faults::eventually("3 events in the file", || match lines_in(&path) {
        3 => Ok(()),
        n => Err(format!("{n} lines")),
    })
    .await;

    // logrotate without copytruncate: rename, then SIGHUP (postrotate).
    std::fs::rename(&path, &rotated).unwrap();
    bin.bin.signal("HUP");
    nth_log_starting_with(&bin, "config reloaded", 1).await;
    for _ in 0..2 {
        assert_eq!(
            bin.login(LOGIN_HOST, &acme_password_form()).await.status,
            200
        );
    }
    // After a clean exit everything is written.
    bin.stop().await;

    let old = read_events(&rotated);
    let new = read_events(&path);
    assert_eq!(
        old.len(),
        3,
        "the renamed file has the events before the HUP: {old:?}"
    );
    assert_eq!(
        new.len(),
        2,
        "the new file has the events after it: {new:?}"
    );
    let stamps: std::collections::BTreeSet<&str> = old
        .iter()
        .chain(&new)
        .map(|e| e["ts"].as_str().unwrap())
        .collect();
    assert_eq!(stamps.len(), 5, "no event lost or written twice");
    assert!(
        old.last().unwrap()["ts"].as_str() < new.first().unwrap()["ts"].as_str(),
        "the new file continues where the old one ends"
    );
}
