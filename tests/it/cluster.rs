//! `[cluster]` (fleet mode): a proxy whose Redis is unreachable starts, serves logins with its
//! own state and says so (`grantshift_cluster_up` 0); when Redis answers it says 1.

use testkit::admin::scrape;
use testkit::redis::{fleet_proxy, wait_cluster_up, RedisServer};
use testkit::*;

#[tokio::test]
async fn a_proxy_whose_redis_is_down_at_start_serves_logins_and_joins_when_redis_comes() {
    let mut redis = RedisServer::start();
    redis.stop();
    // Nothing listens on the port now: the proxy must start anyway, without waiting for it.
    let proxy = within(
        20,
        "start with Redis down",
        fleet_proxy(&redis.url(), "gs-a").start(),
    )
    .await;
    let login = within(
        20,
        "a login",
        proxy.login(LOGIN_HOST, &acme_password_form()),
    )
    .await;
    assert_eq!(login.status, 200, "{}", login.text());
    assert!(login.json()["access_token"].is_string());
    let m = scrape(proxy.admin_addr()).await;
    assert_eq!(m.value("grantshift_cluster_up", &[]), Some(0.0));

    redis.restart();
    wait_cluster_up(proxy.admin_addr(), true).await;
    let login = proxy.login(LOGIN_HOST, &acme_password_form()).await;
    assert_eq!(login.status, 200, "{}", login.text());
}

#[tokio::test]
async fn without_a_cluster_the_up_gauge_is_zero_and_with_one_it_is_one() {
    let alone = TestProxy::start(&acme_mapping()).await;
    let m = scrape(alone.admin_addr()).await;
    assert_eq!(m.value("grantshift_cluster_up", &[]), Some(0.0));

    let redis = RedisServer::start();
    let proxy = fleet_proxy(&redis.url(), "gs-a").start().await;
    wait_cluster_up(proxy.admin_addr(), true).await;
}
