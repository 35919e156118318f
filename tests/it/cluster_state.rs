//! docs/operating.md, "Fleet: shared state on Redis": two replicas (in-process proxies) on one
//! Redis and one fake Salesforce share the learned password verifiers, the login rate of each
//! Run As identity and the migration report; with Redis stopped they keep serving from their
//! own state, and when it is back the events kept meanwhile reach the shared stream.

use crate::GRANTSHIFT;
use serde_json::Value;
use std::collections::BTreeMap;
use testkit::admin::{
    live_report, report_cli_json, report_cluster_json, report_sets as sets, scrape,
    wait_reports_agree,
};
use testkit::redis::{cluster_toml, wait_cluster_up, RedisServer, TEST_CLUSTER_KEY};
use testkit::*;

const WRONG: &str = "pw-SECRET-wrong-5c1e";

/// A replica named `name` on `redis` with `toml`; with `sf`, wired to that fake Salesforce
/// (the first replica's) instead of its own.
async fn replica(
    redis: &RedisServer,
    name: &str,
    toml: &str,
    sf: Option<&FakeSalesforce>,
) -> TestProxy {
    let builder = TestProxy::builder()
        .token_cache_off()
        .extra_toml(toml)
        .extra_toml(&cluster_toml(&redis.url(), name))
        .env(grantshift::config::CLUSTER_KEY_ENV, TEST_CLUSTER_KEY);
    let proxy = match sf {
        None => builder.start().await,
        Some(sf) => {
            let up = Upstreams::with_salesforce(sf.clone()).await;
            builder.start_with(up).await
        }
    };
    wait_cluster_up(proxy.admin_addr(), true).await;
    proxy
}

fn jwt_entry() -> String {
    jwt_credentials_toml(acme::USERNAME, Some(acme::MY_DOMAIN), "jwt-app.pkcs8.pem")
}

/// The acme user as a JWT entry whose password is checked against a cheap configured hash.
fn jwt_entry_with_hash() -> String {
    let entry = jwt_entry();
    format!(
        "{}\npassword_hash = {}\n\n",
        entry.trim_end(),
        testkit::proxy::toml_str(password_hash(acme::PASSWORD))
    )
}

/// Poll both replicas' /report until each shows `want`'s sets and counts (20 s at most).
async fn reports_agree(a: &TestProxy, b: &TestProxy, want: &BTreeMap<String, Value>) {
    wait_reports_agree(&[a.admin_addr(), b.admin_addr()], 20, |sets| sets == want).await;
}

/// `report --events` over both replicas' events files.
async fn files_report(a: &TestProxy, b: &TestProxy) -> BTreeMap<String, Value> {
    let (ea, eb) = (a.events_path(), b.events_path());
    sets(&report_cli_json(GRANTSHIFT, a.dir(), &[&ea, &eb]).await)
}

/// The fleet's `grantshift_upstream_logins_last_hour` of the acme user as `proxy` shows it.
async fn logins_last_hour(proxy: &TestProxy) -> f64 {
    scrape(proxy.admin_addr())
        .await
        .series("grantshift_upstream_logins_last_hour")
        .into_iter()
        .filter(|(labels, _)| {
            labels
                .iter()
                .any(|(k, v)| k == "identity" && v == acme::USERNAME)
        })
        .map(|(_, v)| v)
        .sum()
}

#[tokio::test]
async fn a_verifier_learned_through_one_replica_is_enforced_by_the_other() {
    let redis = RedisServer::start();
    let observe = rollout_toml("*", "observe", 100, true) + &jwt_entry();
    let a = replica(&redis, "gs-a", &observe, None).await;
    let reply = a.login(LOGIN_HOST, &acme_password_form()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(a.next_event().await["action"], "observed");
    let fleet = redis.keys("grantshift:verifiers");
    assert_eq!(fleet, ["grantshift:verifiers"], "A shared what it learned");
    let stored =
        String::from_utf8_lossy(&redis.command(&[b"HVALS", b"grantshift:verifiers"])).into_owned();
    assert!(!stored.contains("argon2"), "sealed in Redis: {stored}");

    let upgrade = rollout_toml("*", "upgrade", 100, true) + &jwt_entry();
    let b = replica(&redis, "gs-b", &upgrade, Some(&a.sf)).await;
    let reply = b.login(LOGIN_HOST, &acme_login(WRONG)).await;
    assert_eq!(reply.status, 400, "Salesforce judged it: {}", reply.text());
    let event = b.next_event().await;
    assert_eq!(event["action"], "skipped", "{event}");
    assert_eq!(event["reason"], "password_mismatch", "{event}");
    let reply = b.login(LOGIN_HOST, &acme_password_form()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let event = b.next_event().await;
    assert_eq!(event["action"], "upgraded", "{event}");
    assert_eq!(event["password_check"], "verified", "{event}");
    assert_eq!(event["replica"], "gs-b", "{event}");
}

#[tokio::test]
async fn both_replicas_report_the_fleet_as_the_events_files_do() {
    let redis = RedisServer::start();
    let observe = rollout_toml("*", "observe", 100, true);
    let a = replica(&redis, "gs-a", &observe, None).await;
    let b = replica(&redis, "gs-b", &observe, Some(&a.sf)).await;
    for (proxy, form) in [
        (&a, acme_password_form()),
        (&b, acme_password_form()),
        (&b, acme_password_form()),
        (
            &a,
            password_form("3MVGother", "s3cret", "other@acme.com", "pw"),
        ),
    ] {
        proxy.login(LOGIN_HOST, &form).await;
        let event = proxy.next_event().await;
        assert_eq!(event["action"], "observed", "{event}");
    }
    let want = files_report(&a, &b).await;
    assert_eq!(want.len(), 2, "{want:#?}");
    reports_agree(&a, &b, &want).await;
    assert_eq!(cluster_report(&a).await, want, "report --cluster");
}

/// `report --cluster --json` with A's config: the fleet's report from the stream.
async fn cluster_report(proxy: &TestProxy) -> BTreeMap<String, Value> {
    sets(&report_cluster_json(GRANTSHIFT, proxy.dir(), &proxy.config_path()).await)
}

#[tokio::test]
async fn the_login_rate_gauge_shows_the_fleets_last_hour_on_every_replica() {
    let redis = RedisServer::start();
    let upgrade = rollout_toml("*", "upgrade", 100, true) + &jwt_entry_with_hash();
    let a = replica(&redis, "gs-a", &upgrade, None).await;
    let b = replica(&redis, "gs-b", &upgrade, Some(&a.sf)).await;
    for proxy in [&a, &a, &b] {
        let reply = proxy.login(LOGIN_HOST, &acme_password_form()).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(proxy.next_event().await["action"], "upgraded");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (on_a, on_b) = (logins_last_hour(&a).await, logins_last_hour(&b).await);
        if (on_a, on_b) == (3.0, 3.0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "A {on_a}, B {on_b}: not the fleet's 3"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let page = testkit::admin::admin_get(a.admin_addr(), "/").await.text();
    assert!(page.contains(acme::USERNAME), "the top identities: {page}");
}

#[tokio::test]
async fn with_redis_stopped_logins_go_on_and_the_reports_agree_again_when_it_is_back() {
    let mut redis = RedisServer::start();
    let observe = rollout_toml("*", "observe", 100, true);
    let a = replica(&redis, "gs-a", &observe, None).await;
    let b = replica(&redis, "gs-b", &observe, Some(&a.sf)).await;
    for proxy in [&a, &b] {
        proxy.login(LOGIN_HOST, &acme_password_form()).await;
        proxy.next_event().await;
    }
    reports_agree(&a, &b, &files_report(&a, &b).await).await;

    redis.stop();
    for proxy in [&a, &b, &b] {
        let reply = proxy.login(LOGIN_HOST, &acme_password_form()).await;
        assert_eq!(reply.status, 200, "served without Redis: {}", reply.text());
        proxy.next_event().await;
    }
    let other = password_form("3MVGother", "s3cret", "other@acme.com", "pw");
    b.login(LOGIN_HOST, &other).await;
    b.next_event().await;
    for proxy in [&a, &b] {
        wait_cluster_up(proxy.admin_addr(), false).await;
    }
    // Each counts its own at once meanwhile.
    let a_alone = sets(&live_report(a.admin_addr()).await);
    assert_eq!(a_alone.len(), 1, "{a_alone:#?}");

    redis.restart();
    let want = files_report(&a, &b).await;
    assert_eq!(want.len(), 2, "{want:#?}");
    reports_agree(&a, &b, &want).await;
    let waiting = scrape(b.admin_addr())
        .await
        .value("grantshift_cluster_events_waiting", &[]);
    assert_eq!(waiting, Some(0.0));
}

#[tokio::test]
async fn a_set_without_a_verifier_asks_redis_once_not_on_every_login() {
    let redis = RedisServer::start();
    // Client credentials with `verify_password = "if_known"` (the default): upgraded while the
    // set has no verifier, which the fleet is asked for.
    let a = replica(&redis, "gs-a", &acme_mapping(), None).await;
    let started = std::time::Instant::now();
    for _ in 0..10 {
        let reply = a.login(LOGIN_HOST, &acme_password_form()).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let event = a.next_event().await;
        assert_eq!(event["password_check"], "none", "{event}");
    }
    // One HGET, and one more per ABSENT_FOR the ten logins took (on a slow machine).
    let windows = started.elapsed().as_secs_f64() / grantshift::verifiers::ABSENT_FOR.as_secs_f64();
    let allowed = 1 + windows.floor() as u64;
    let hget = redis.calls("hget");
    assert!(
        (1..=allowed).contains(&hget),
        "ten logins of a set without a verifier in {:?}: {hget} HGETs (at most {allowed})",
        started.elapsed()
    );
}
