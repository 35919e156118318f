//! The token cache shared by a fleet (`[cluster]`, docs/operating.md, "Fleet: shared state on
//! Redis"): two in-process replicas, one Redis, one fake Salesforce. A session one replica got
//! is served by the other; concurrent misses across replicas send one login; an eviction on
//! one is seen by the other; Redis holds no token in the clear; with Redis down each replica
//! logs in for itself, and sharing resumes when it is back.

use testkit::admin::scrape;
use testkit::redis::{fleet_proxy, wait_cluster_up, RedisServer};
use testkit::*;

/// Replicas A and B on `redis`, sharing one fake Salesforce, both with the cluster up.
async fn fleet(redis: &RedisServer) -> (TestProxy, TestProxy) {
    let a = fleet_proxy(&redis.url(), "gs-a").start().await;
    let b = fleet_proxy(&redis.url(), "gs-b")
        .start_with(Upstreams::with_salesforce(a.sf.clone()).await)
        .await;
    wait_cluster_up(a.admin_addr(), true).await;
    wait_cluster_up(b.admin_addr(), true).await;
    (a, b)
}

/// Wait until the fleet's value for the one cached session is in Redis (B's store is
/// written in the background, after A's client has its answer).
async fn wait_stored(redis: &RedisServer) -> String {
    within(20, "the session stored in Redis", async {
        loop {
            if let Some(key) = redis.keys("grantshift:tc:*").into_iter().next() {
                return key;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
}

#[tokio::test]
async fn a_session_one_replica_got_is_served_by_the_other_byte_for_byte() {
    let redis = RedisServer::start();
    let (a, b) = fleet(&redis).await;
    let first = a.login(LOGIN_HOST, &acme_password_form()).await;
    assert_eq!(first.status, 200, "{}", first.text());
    wait_stored(&redis).await;
    let second = b.login(LOGIN_HOST, &acme_password_form()).await;
    assert_eq!(second.status, 200, "{}", second.text());
    assert_eq!(second.body, first.body, "the same session, byte for byte");
    assert_eq!(second.header("content-type"), first.header("content-type"));
    assert_eq!(
        upgraded_requests(&a.sf),
        1,
        "one login upstream for the fleet"
    );
    let event = b.next_event().await;
    assert_eq!(event["cache"], "hit", "{event}");
}

#[tokio::test]
async fn forty_concurrent_logins_across_two_replicas_send_one_upstream_login() {
    let redis = RedisServer::start();
    let (a, b) = fleet(&redis).await;
    a.sf.hold_token_requests_at(acme::MY_DOMAIN);
    let logins: Vec<_> = (0..40)
        .map(|i| {
            let proxy = if i % 2 == 0 { &a } else { &b };
            async move { proxy.login(LOGIN_HOST, &acme_password_form()).await }
        })
        .collect();
    let all = futures_util::future::join_all(logins);
    let release = async {
        a.sf.wait_token_hold_arrived().await;
        // One login is out; the 39 others wait for it (on their replica's flight or, for the
        // other replica's first, on the fleet's lock).
        within(60, "39 logins waiting on one", async {
            loop {
                let waiting = |m: &testkit::admin::Exposition| {
                    m.value("grantshift_token_cache_waiting", &[])
                        .unwrap_or(0.0)
                };
                let n =
                    waiting(&scrape(a.admin_addr()).await) + waiting(&scrape(b.admin_addr()).await);
                if n == 39.0 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        })
        .await;
        a.sf.release_holds();
    };
    let (replies, ()) = within(60, "40 logins", futures_util::future::join(all, release)).await;
    let body = &replies[0].body;
    for r in &replies {
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(&r.body, body, "one session for all");
    }
    assert_eq!(upgraded_requests(&a.sf), 1, "one login upstream for 40");
}

#[tokio::test]
async fn a_session_revoked_through_one_replica_is_not_served_by_the_other() {
    let redis = RedisServer::start();
    let (a, b) = fleet(&redis).await;
    let first = a.login(LOGIN_HOST, &acme_password_form()).await;
    wait_stored(&redis).await;
    let second = b.login(LOGIN_HOST, &acme_password_form()).await;
    assert_eq!(second.body, first.body);
    let token = second.json()["access_token"].as_str().unwrap().to_owned();

    let mut conn = b.intercepted(acme::MY_DOMAIN, Http::H1).await;
    let revoke = post_form(
        &mut conn,
        acme::MY_DOMAIN,
        "/services/oauth2/revoke",
        &form(&[("token", &token)]),
    )
    .await;
    assert_eq!(revoke.status, 200, "{}", revoke.text());
    within(20, "the session gone from Redis", async {
        while !redis.keys("grantshift:tc:*").is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;

    // A held it too; it is not served again.
    let third = a.login(LOGIN_HOST, &acme_password_form()).await;
    assert_eq!(third.status, 200, "{}", third.text());
    assert_ne!(
        third.json()["access_token"],
        token.as_str(),
        "a new session"
    );
    assert_eq!(upgraded_requests(&a.sf), 2);
}

#[tokio::test]
async fn redis_holds_the_session_sealed_never_the_token() {
    let redis = RedisServer::start();
    let (a, _b) = fleet(&redis).await;
    let login = a.login(LOGIN_HOST, &acme_password_form()).await;
    let token = login.json()["access_token"].as_str().unwrap().to_owned();
    let key = wait_stored(&redis).await;
    let raw = redis.get(&key).expect("the value");
    let contains = |needle: &[u8]| raw.windows(needle.len()).any(|w| w == needle);
    assert!(!contains(token.as_bytes()), "the access token in the clear");
    assert!(!contains(b"instance_url"), "the body in the clear");
    assert!(!contains(acme::CLIENT_SECRET.as_bytes()));
    // Nothing else in Redis names the token either.
    for key in redis.keys("grantshift:*") {
        assert!(!key.contains(&token), "{key}");
        if let Some(value) = redis.get(&key) {
            assert!(!value.windows(token.len()).any(|w| w == token.as_bytes()));
        }
    }
}

#[tokio::test]
async fn with_redis_down_each_replica_logs_in_itself_and_sharing_resumes_when_it_is_back() {
    let mut redis = RedisServer::start();
    let (a, b) = fleet(&redis).await;
    redis.stop();
    let first = a.login(LOGIN_HOST, &acme_password_form()).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let second = b.login(LOGIN_HOST, &acme_password_form()).await;
    assert_eq!(second.status, 200, "{}", second.text());
    assert_eq!(
        upgraded_requests(&a.sf),
        2,
        "each replica logged in for itself"
    );
    wait_cluster_up(a.admin_addr(), false).await;
    wait_cluster_up(b.admin_addr(), false).await;

    redis.restart();
    wait_cluster_up(a.admin_addr(), true).await;
    wait_cluster_up(b.admin_addr(), true).await;
    // Another client's credentials (a new key): shared again.
    let form = password_form(
        acme::CLIENT_ID,
        acme::CLIENT_SECRET,
        acme::USERNAME,
        acme::PASSWORD,
    ) + "&format=json";
    let third = a.login(LOGIN_HOST, &form).await;
    assert_eq!(third.status, 200, "{}", third.text());
    wait_stored(&redis).await;
    let fourth = b.login(LOGIN_HOST, &form).await;
    assert_eq!(fourth.body, third.body, "shared again");
    assert_eq!(upgraded_requests(&a.sf), 3);
}

#[tokio::test]
async fn hits_on_a_shared_session_ask_redis_at_most_once_per_recheck_window() {
    let redis = RedisServer::start();
    let (a, b) = fleet(&redis).await;
    let first = a.login(LOGIN_HOST, &acme_password_form()).await;
    assert_eq!(first.status, 200, "{}", first.text());
    wait_stored(&redis).await;
    // B takes the fleet's session, then serves 50 logins on one connection from it.
    let mut conn = b.intercepted(LOGIN_HOST, Http::H1).await;
    let taken = post_form(&mut conn, LOGIN_HOST, TOKEN_PATH, &acme_password_form()).await;
    assert_eq!(taken.body, first.body);
    let before = redis.calls("exists");
    let started = std::time::Instant::now();
    for _ in 0..50 {
        let reply = post_form(&mut conn, LOGIN_HOST, TOKEN_PATH, &acme_password_form()).await;
        assert_eq!(reply.body, first.body, "the fleet's session");
    }
    let elapsed = started.elapsed();
    let exists = redis.calls("exists") - before;
    // One EXISTS per SHARED_RECHECK at most (one more for the window the run started in).
    let windows = elapsed.as_secs_f64() / grantshift::broker::cache::SHARED_RECHECK.as_secs_f64();
    let allowed = 1 + windows.ceil() as u64;
    println!("50 hits in {elapsed:?}: {exists} EXISTS (at most {allowed})");
    assert!(
        (1..=allowed).contains(&exists),
        "50 hits in {elapsed:?}: {exists} EXISTS, at most {allowed}"
    );
    assert_eq!(upgraded_requests(&a.sf), 1);
}
