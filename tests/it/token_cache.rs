//! The token cache (`[token_cache]`, on by default for upgraded logins): the second login with
//! the same credentials gets the first one's answer with no upstream login, and only a login
//! that presents the same client id, secret and password (when bound) does; concurrent misses
//! send one request; a failed upgrade is not cached but spares Salesforce for `negative_ttl`; a
//! session Salesforce refuses (401 on an API call) or a client revokes leaves the cache, and
//! a revoke of a shared session does not end it for the other callers.

use serde_json::Value;
use testkit::admin::scrape;
use testkit::salesforce::App;
use testkit::*;

/// The value of the unlabelled series `name`.
fn metric(scraped: &testkit::admin::Exposition, name: &str) -> f64 {
    scraped
        .value(name, &[])
        .unwrap_or_else(|| panic!("no {name} series"))
}

#[tokio::test]
async fn the_second_login_with_the_same_credentials_is_answered_from_the_cache() {
    let proxy = TestProxy::start(&acme_mapping()).await;
    let first = proxy.login(LOGIN_HOST, &acme_password_form()).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let event = proxy.next_event().await;
    assert_eq!(
        (event["action"].as_str(), event["cache"].as_str()),
        (Some("upgraded"), Some("miss")),
        "{event}"
    );

    let second = proxy.login(LOGIN_HOST, &acme_password_form()).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.body, first.body, "the same session, byte for byte");
    assert_eq!(second.header("content-type"), first.header("content-type"));
    let event = proxy.next_event().await;
    assert_eq!(
        (event["action"].as_str(), event["cache"].as_str()),
        (Some("upgraded"), Some("hit")),
        "{event}"
    );
    assert_eq!(event["status"], 200);
    assert_eq!(event["org_id"], acme::ORG_ID, "{event}");
    assert_eq!(upgraded_requests(&proxy.sf), 1, "one login upstream");

    // The session works for an API call.
    let token = second.json()["access_token"].as_str().unwrap().to_owned();
    let mut conn = proxy.intercepted(acme::MY_DOMAIN, Http::H1).await;
    let api = conn
        .get_with_bearer(acme::MY_DOMAIN, "/services/data/v60.0/limits", &token)
        .await;
    assert_eq!(api.status, 200, "{}", api.text());

    let metrics = scrape(proxy.admin_addr()).await;
    assert_eq!(metric(&metrics, "grantshift_token_cache_hits_total"), 1.0);
    assert_eq!(metric(&metrics, "grantshift_token_cache_misses_total"), 1.0);
    assert_eq!(metric(&metrics, "grantshift_token_cache_entries"), 1.0);
    // One login went upstream for the Run As identity: the login-rate count says one.
    assert_eq!(
        metrics.value(
            "grantshift_upstream_logins_total",
            &[
                ("target_host", acme::MY_DOMAIN),
                ("identity", acme::CLIENT_ID)
            ]
        ),
        Some(1.0)
    );
    // The admin page lists the identity with its one upstream login of the last hour.
    let page = testkit::admin::admin_get(proxy.admin_addr(), "/")
        .await
        .text();
    let rates = &page[page
        .find("id=\"login-rates\"")
        .expect("the login-rate table")..];
    assert!(
        rates.contains(&format!(
            "<td class=\"mono\">{}</td><td class=\"mono\">{}</td><td>1</td>",
            acme::MY_DOMAIN,
            acme::CLIENT_ID
        )),
        "{rates}"
    );
    // Both logins count, as before the cache.
    let upgraded: f64 = metrics
        .series("grantshift_token_requests_total")
        .iter()
        .filter(|(labels, _)| labels.iter().any(|(k, v)| k == "action" && v == "upgraded"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(upgraded, 2.0);
}

#[tokio::test]
async fn a_login_with_another_secret_or_a_wrong_password_is_never_served_from_the_cache() {
    let proxy = TestProxy::start(&acme_mapping()).await;
    assert_eq!(
        proxy.login(LOGIN_HOST, &acme_password_form()).await.status,
        200
    );
    proxy.next_event().await;

    // Another client secret: its own key, so Salesforce judges it (and refuses it).
    let wrong_secret = password_form(
        acme::CLIENT_ID,
        "not-the-secret",
        acme::USERNAME,
        acme::PASSWORD,
    );
    let reply = proxy.login(LOGIN_HOST, &wrong_secret).await;
    assert_ne!(reply.status, 200, "{}", reply.text());
    let event = proxy.next_event().await;
    assert_eq!(event["cache"], "miss", "{event}");
    assert_ne!(event["action"], "upgraded", "{event}");
    assert_eq!(upgraded_requests(&proxy.sf), 2);
}

#[tokio::test]
async fn with_a_verifier_a_wrong_password_gets_no_cached_session() {
    // Observe first (learns the verifier), then upgrade with the password bound.
    let mut proxy =
        TestProxy::start(&(acme_mapping() + &rollout_toml("*", "observe", 100, true))).await;
    assert_eq!(
        proxy.login(LOGIN_HOST, &acme_password_form()).await.status,
        200
    );
    proxy.next_event().await;
    proxy.reload(
        TestProxy::builder()
            .extra_toml(&(acme_mapping() + &rollout_toml("*", "upgrade", 100, true))),
    );
    assert_eq!(
        proxy.login(LOGIN_HOST, &acme_password_form()).await.status,
        200
    );
    assert_eq!(proxy.next_event().await["cache"], "miss");
    let wrong = password_form(
        acme::CLIENT_ID,
        acme::CLIENT_SECRET,
        acme::USERNAME,
        "wrong",
    );
    let reply = proxy.login(LOGIN_HOST, &wrong).await;
    assert_ne!(
        reply.status,
        200,
        "Salesforce judged the wrong password: {}",
        reply.text()
    );
    let event = proxy.next_event().await;
    assert_eq!(
        (event["action"].as_str(), event["reason"].as_str()),
        (Some("skipped"), Some("password_mismatch")),
        "{event}"
    );
    assert!(event.get("cache").is_none(), "{event}");
}

#[tokio::test]
async fn json_and_xml_answers_never_share_an_entry() {
    let proxy = TestProxy::start(&acme_mapping()).await;
    let xml = acme_password_form() + "&format=xml";
    let a = proxy.login(LOGIN_HOST, &acme_password_form()).await;
    let b = proxy.login(LOGIN_HOST, &xml).await;
    let c = proxy.login(LOGIN_HOST, &xml).await;
    assert!(a.text().starts_with('{'), "{}", a.text());
    assert!(b.text().starts_with("<?xml"), "{}", b.text());
    assert_eq!(
        b.body, c.body,
        "the second XML login is the first XML answer"
    );
    let caches: Vec<Value> = [
        proxy.next_event().await,
        proxy.next_event().await,
        proxy.next_event().await,
    ]
    .into_iter()
    .map(|e| e["cache"].clone())
    .collect();
    assert_eq!(caches, ["miss", "miss", "hit"]);
    assert_eq!(upgraded_requests(&proxy.sf), 2);
}

#[tokio::test]
async fn a_session_salesforce_refuses_on_an_api_call_leaves_the_cache() {
    let proxy = TestProxy::start(&acme_mapping()).await;
    let first = proxy.login(LOGIN_HOST, &acme_password_form()).await;
    let token = first.json()["access_token"].as_str().unwrap().to_owned();
    proxy.sf.end_session(&token);
    let mut conn = proxy.intercepted(acme::MY_DOMAIN, Http::H1).await;
    let api = conn
        .get_with_bearer(acme::MY_DOMAIN, "/services/data/v60.0/limits", &token)
        .await;
    assert_eq!(api.status, 401, "{}", api.text());
    assert!(api.text().contains("INVALID_SESSION_ID"));

    let second = proxy.login(LOGIN_HOST, &acme_password_form()).await;
    assert_eq!(second.status, 200);
    assert_ne!(second.body, first.body, "a fresh session");
    assert_eq!(upgraded_requests(&proxy.sf), 2);
    let metrics = scrape(proxy.admin_addr()).await;
    assert_eq!(
        metrics.value(
            "grantshift_token_cache_evictions_total",
            &[("reason", "unauthorized")]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_revoke_of_a_shared_session_is_answered_locally_and_the_others_keep_it() {
    let proxy = TestProxy::start(&acme_mapping()).await;
    let a = proxy.login(LOGIN_HOST, &acme_password_form()).await;
    let b = proxy.login(LOGIN_HOST, &acme_password_form()).await;
    let token = a.json()["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        b.json()["access_token"],
        token.as_str(),
        "one shared session"
    );

    // Caller A logs out (jsforce's logout(): POST /services/oauth2/revoke, token in the body).
    let mut conn = proxy.intercepted(acme::MY_DOMAIN, Http::H1).await;
    let revoke = post_form(
        &mut conn,
        acme::MY_DOMAIN,
        "/services/oauth2/revoke",
        &form(&[("token", &token)]),
    )
    .await;
    assert_eq!(revoke.status, 200, "{}", revoke.text());
    assert!(
        proxy.sf.requests_to("/services/oauth2/revoke").is_empty(),
        "the revoke never reached Salesforce"
    );
    // Caller B's session still works at Salesforce.
    let api = conn
        .get_with_bearer(acme::MY_DOMAIN, "/services/data/v60.0/limits", &token)
        .await;
    assert_eq!(api.status, 200, "{}", api.text());

    let events = [
        proxy.next_event().await,
        proxy.next_event().await,
        proxy.next_event().await,
    ];
    assert_eq!(events[2]["action"], "revoke_shielded", "{:?}", events);
    assert!(
        !events[2].to_string().contains(&token),
        "no token in the event"
    );
    // The next login is a fresh session; a revoke of that one (GET, token in the query)
    // is shielded too, and a revoke of a token the cache does not hold goes to Salesforce.
    let c = proxy.login(LOGIN_HOST, &acme_password_form()).await;
    let fresh = c.json()["access_token"].as_str().unwrap().to_owned();
    assert_ne!(fresh, token);
    let query = form(&[("token", &fresh)]);
    let get = conn
        .get(acme::MY_DOMAIN, &format!("/services/oauth2/revoke?{query}"))
        .await;
    assert_eq!(get.status, 200);
    assert!(proxy.sf.requests_to("/services/oauth2/revoke").is_empty());
    let unknown = post_form(
        &mut conn,
        acme::MY_DOMAIN,
        "/services/oauth2/revoke",
        &form(&[("token", "00Dnot-a-cached-token")]),
    )
    .await;
    assert_eq!(
        unknown.status,
        400,
        "Salesforce's answer: {}",
        unknown.text()
    );
    assert_eq!(proxy.sf.requests_to("/services/oauth2/revoke").len(), 1);
}

#[tokio::test]
async fn shield_revoke_false_forwards_the_revoke() {
    let proxy =
        TestProxy::start(&(acme_mapping() + "[token_cache]\nshield_revoke = false\n")).await;
    let a = proxy.login(LOGIN_HOST, &acme_password_form()).await;
    let token = a.json()["access_token"].as_str().unwrap().to_owned();
    let mut conn = proxy.intercepted(acme::MY_DOMAIN, Http::H1).await;
    let revoke = post_form(
        &mut conn,
        acme::MY_DOMAIN,
        "/services/oauth2/revoke",
        &form(&[("token", &token)]),
    )
    .await;
    assert_eq!(revoke.status, 200);
    assert_eq!(proxy.sf.requests_to("/services/oauth2/revoke").len(), 1);
}

#[tokio::test]
async fn a_hundred_concurrent_misses_send_one_upstream_login() {
    let proxy = TestProxy::start(&acme_mapping()).await;
    proxy.sf.hold_token_requests_at(acme::MY_DOMAIN);
    let logins: Vec<_> = (0..100)
        .map(|_| {
            let proxy = &proxy;
            async move { proxy.login(LOGIN_HOST, &acme_password_form()).await }
        })
        .collect();
    let all = futures_util::future::join_all(logins);
    let release = async {
        proxy.sf.wait_token_hold_arrived().await;
        // Every other login waits on the first one's flight.
        let admin = proxy.admin_addr();
        within(60, "99 logins waiting on one flight", async {
            loop {
                let text = scrape(admin).await;
                if metric(&text, "grantshift_token_cache_waiting") == 99.0 {
                    assert_eq!(metric(&text, "grantshift_token_cache_misses_total"), 1.0);
                    break;
                }
                tokio::task::yield_now().await;
            }
        })
        .await;
        proxy.sf.release_holds();
    };
    let (replies, ()) = tokio::join!(all, release);
    let first = &replies[0].body;
    for reply in &replies {
        assert_eq!(reply.status, 200);
        assert_eq!(&reply.body, first);
    }
    assert_eq!(upgraded_requests(&proxy.sf), 1);
    let metrics = scrape(proxy.admin_addr()).await;
    assert_eq!(metric(&metrics, "grantshift_token_cache_waits_total"), 99.0);
}

#[tokio::test]
async fn a_failed_upgrade_is_not_cached_and_spares_salesforce_for_negative_ttl() {
    const APP: &str = "3MVG9acmeNoRunAsApp.consumerKey";
    const SECRET: &str = "cs-SECRET-norunas-7d2a";
    let proxy = TestProxy::start(&acme_mapping()).await;
    proxy.sf.edit(|w| {
        w.org_mut(acme::ORG_ID).apps.push(App::new(APP, SECRET));
    });
    let login = password_form(APP, SECRET, acme::USERNAME, acme::PASSWORD);
    for expected in ["miss", "negative"] {
        let reply = proxy.login(LOGIN_HOST, &login).await;
        assert_eq!(
            reply.status,
            200,
            "fallback serves the client: {}",
            reply.text()
        );
        let event = proxy.next_event().await;
        assert_eq!(event["action"], "fallback", "{event}");
        assert_eq!(event["cache"], expected, "{event}");
        assert_eq!(
            event["upstream_error"]["error_description"], "no client credentials user enabled",
            "{event}"
        );
    }
    let attempts = proxy
        .sf
        .token_requests()
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains("client_credentials"))
        .count();
    assert_eq!(attempts, 1, "the second login did not ask Salesforce again");
}

#[tokio::test]
async fn a_reload_that_changes_the_credentials_entry_drops_its_cached_sessions() {
    let mut proxy = TestProxy::start(&acme_mapping()).await;
    proxy.login(LOGIN_HOST, &acme_password_form()).await;
    proxy.login(LOGIN_HOST, &acme_password_form()).await;
    assert_eq!(upgraded_requests(&proxy.sf), 1);
    // The same file again: nothing changes, the entry stays.
    proxy.reload(TestProxy::builder().extra_toml(&acme_mapping()));
    proxy.login(LOGIN_HOST, &acme_password_form()).await;
    assert_eq!(upgraded_requests(&proxy.sf), 1);
    // The entry changes (verify_password): its cached session goes.
    proxy.reload(
        TestProxy::builder()
            .extra_toml(&(acme_mapping().trim_end().to_owned() + "\nverify_password = \"off\"\n")),
    );
    proxy.login(LOGIN_HOST, &acme_password_form()).await;
    assert_eq!(upgraded_requests(&proxy.sf), 2);
    let metrics = scrape(proxy.admin_addr()).await;
    assert_eq!(
        metrics.value(
            "grantshift_token_cache_evictions_total",
            &[("reason", "reload")]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn with_the_cache_off_every_login_goes_upstream() {
    let proxy = TestProxy::start(&(acme_mapping() + "[token_cache]\nenabled = false\n")).await;
    for _ in 0..3 {
        assert_eq!(
            proxy.login(LOGIN_HOST, &acme_password_form()).await.status,
            200
        );
        assert_eq!(proxy.next_event().await["cache"], "off");
    }
    assert_eq!(upgraded_requests(&proxy.sf), 3);
}

#[tokio::test]
async fn a_thousand_logins_from_fifty_concurrent_clients_send_one_upstream_login() {
    let proxy = TestProxy::start(&acme_mapping()).await;
    let clients: Vec<_> = (0..50)
        .map(|_| {
            let proxy = &proxy;
            async move {
                // Each client keeps its connection and logs in 20 times.
                let mut conn = proxy.intercepted(LOGIN_HOST, Http::H1).await;
                let mut bodies = Vec::new();
                for _ in 0..20 {
                    let reply =
                        post_form(&mut conn, LOGIN_HOST, TOKEN_PATH, &acme_password_form()).await;
                    assert_eq!(reply.status, 200, "{}", reply.text());
                    bodies.push(reply.body);
                }
                bodies
            }
        })
        .collect();
    let all: Vec<_> = futures_util::future::join_all(clients)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(all.len(), 1_000);
    assert!(all.iter().all(|b| b == &all[0]), "one session for all");
    assert_eq!(upgraded_requests(&proxy.sf), 1);
    let metrics = scrape(proxy.admin_addr()).await;
    assert_eq!(metric(&metrics, "grantshift_token_cache_misses_total"), 1.0);
    assert_eq!(metric(&metrics, "grantshift_token_cache_hits_total"), 999.0);
}

/// A token login with `Accept-Encoding: accept_encoding` (when given) on a fresh connection.
async fn login_accepting(proxy: &TestProxy, accept_encoding: Option<&str>) -> Reply {
    let mut conn = proxy.intercepted(LOGIN_HOST, Http::H1).await;
    let mut req = conn
        .request(http::Method::POST, LOGIN_HOST, TOKEN_PATH)
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some(encoding) = accept_encoding {
        req = req.header("accept-encoding", encoding);
    }
    conn.send(req.body(full(acme_password_form())).unwrap())
        .await
}

#[tokio::test]
async fn a_gzip_answer_is_cached_as_it_came_for_logins_that_accept_gzip_only() {
    // Every real client library accepts gzip, and Salesforce then compresses the answer.
    let proxy = TestProxy::start(&acme_mapping()).await;
    let first = login_accepting(&proxy, Some("gzip, deflate")).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("content-encoding"), Some("gzip"));
    let second = login_accepting(&proxy, Some("gzip, deflate")).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.header("content-encoding"), Some("gzip"));
    assert_eq!(second.body, first.body, "the same compressed bytes");
    // A client that accepts no compression never gets the compressed answer.
    let plain = login_accepting(&proxy, None).await;
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("content-encoding"), None);
    assert!(plain.json()["access_token"].is_string(), "{}", plain.text());
    let caches: Vec<Value> = [
        proxy.next_event().await,
        proxy.next_event().await,
        proxy.next_event().await,
    ]
    .into_iter()
    .map(|e| e["cache"].clone())
    .collect();
    assert_eq!(caches, ["miss", "hit", "miss"]);
    assert_eq!(upgraded_requests(&proxy.sf), 2);

    // The cached session is found by its token for a revoke, though its body is compressed.
    let token = plain.json()["access_token"].as_str().unwrap().to_owned();
    let gzip_token = proxy
        .sf
        .issued()
        .into_iter()
        .map(|i| i.access_token)
        .find(|t| *t != token)
        .expect("the gzip login's token");
    let mut conn = proxy.intercepted(acme::MY_DOMAIN, Http::H1).await;
    let revoke = post_form(
        &mut conn,
        acme::MY_DOMAIN,
        "/services/oauth2/revoke",
        &form(&[("token", &gzip_token)]),
    )
    .await;
    assert_eq!(revoke.status, 200, "{}", revoke.text());
    assert!(proxy.sf.requests_to("/services/oauth2/revoke").is_empty());
    assert_eq!(proxy.next_event().await["action"], "revoke_shielded");
}

#[tokio::test]
async fn a_jwt_bearer_login_is_cached_per_user() {
    let proxy = TestProxy::start(
        &(jwt_credentials_with_password_toml(
            acme::USERNAME,
            Some(acme::MY_DOMAIN),
            "jwt-app.pkcs8.pem",
            acme::PASSWORD,
        ) + &jwt_credentials_with_password_toml(
            acme::REPORTS_USERNAME,
            Some(acme::MY_DOMAIN),
            "jwt-app.pkcs8.pem",
            acme::REPORTS_PASSWORD,
        )),
    )
    .await;
    let jwt_requests = |sf: &FakeSalesforce| {
        sf.token_requests()
            .iter()
            .filter(|r| String::from_utf8_lossy(&r.body).contains("jwt-bearer"))
            .count()
    };
    let reports = password_form(
        acme::CLIENT_ID,
        acme::CLIENT_SECRET,
        acme::REPORTS_USERNAME,
        acme::REPORTS_PASSWORD,
    );
    let a = proxy.login(LOGIN_HOST, &acme_password_form()).await;
    let b = proxy.login(LOGIN_HOST, &acme_password_form()).await;
    let c = proxy.login(LOGIN_HOST, &reports).await;
    for r in [&a, &b, &c] {
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(a.body, b.body, "the same user's session, from the cache");
    assert_ne!(a.body, c.body, "JWT bearer sessions are each user's own");
    assert!(c.json()["id"]
        .as_str()
        .unwrap()
        .ends_with(acme::REPORTS_USER_ID));
    let caches: Vec<Value> = [
        proxy.next_event().await,
        proxy.next_event().await,
        proxy.next_event().await,
    ]
    .into_iter()
    .map(|e| e["cache"].clone())
    .collect();
    assert_eq!(caches, ["miss", "hit", "miss"]);
    assert_eq!(
        jwt_requests(&proxy.sf),
        2,
        "one assertion per user, none for the hit"
    );
}

// ---- Introspection (`[token_cache] introspect = true`) ---------------------------------------

const INTROSPECT_ON: &str = "[token_cache]\nintrospect = true\n";

/// `grantshift_token_cache_introspections_total{result}` now.
async fn introspections(proxy: &TestProxy, result: &str) -> f64 {
    scrape(proxy.admin_addr())
        .await
        .value(
            "grantshift_token_cache_introspections_total",
            &[("result", result)],
        )
        .unwrap_or(0.0)
}

/// Wait (at most 10 s) until `n` introspections with `result` have been counted.
async fn introspected(proxy: &TestProxy, result: &str, n: f64) {
    within(
        10,
        &format!("{n} introspection(s) with result {result}"),
        async {
            while introspections(proxy, result).await < n {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        },
    )
    .await
}

/// A login of acme's integration user; the `cache` of its event.
async fn login_cache_use(proxy: &TestProxy) -> (Reply, Value) {
    let reply = proxy.login(LOGIN_HOST, &acme_password_form()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let event = proxy.next_event().await;
    (reply, event["cache"].clone())
}

#[tokio::test]
async fn with_introspect_a_session_shorter_than_the_ttl_leaves_the_cache_at_exp_minus_margin() {
    // ttl 15m, margin 1m (the defaults); the org's sessions last 62 s: Salesforce's `exp` says
    // so, and the entry is served until `exp - 1m`, 2 s at most, instead of 14 minutes.
    let proxy = TestProxy::start(&(acme_mapping() + INTROSPECT_ON)).await;
    proxy
        .sf
        .introspection()
        .set_session_lifetime(acme::ORG_ID, 62);
    let started = std::time::Instant::now();
    let (first, cache) = login_cache_use(&proxy).await;
    assert_eq!(cache, "miss");
    introspected(&proxy, "ok", 1.0).await;

    // The introspection request: RFC 7662's form, with the upgraded login's client.
    let asked = proxy.sf.requests_to(testkit::salesforce::INTROSPECT_PATH);
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].method, "POST");
    assert_eq!(asked[0].host_name(), Some(acme::MY_DOMAIN));
    let form = testkit::salesforce::form_pairs(&asked[0].body);
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(field("token"), first.json()["access_token"].as_str());
    assert_eq!(field("token_type_hint"), Some("access_token"));
    assert_eq!(field("client_id"), Some(acme::CLIENT_ID));
    assert_eq!(field("client_secret"), Some(acme::CLIENT_SECRET));

    // Logins are hits until the entry's shortened time is over, then one goes upstream.
    let misses_after = within(15, "a login after exp - margin goes upstream", async {
        loop {
            let (_, cache) = login_cache_use(&proxy).await;
            if cache == "miss" {
                return started.elapsed();
            }
            assert_eq!(cache, "hit");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        misses_after < std::time::Duration::from_secs(12),
        "{misses_after:?}"
    );
    assert_eq!(upgraded_requests(&proxy.sf), 2);
    // Introspection is not a login: two logins upstream for the Run As identity, not more.
    let metrics = scrape(proxy.admin_addr()).await;
    assert_eq!(
        metrics.value(
            "grantshift_upstream_logins_total",
            &[
                ("target_host", acme::MY_DOMAIN),
                ("identity", acme::CLIENT_ID)
            ]
        ),
        Some(2.0)
    );
    assert!(
        metrics
            .value(
                "grantshift_token_cache_evictions_total",
                &[("reason", "expired")]
            )
            .unwrap_or(0.0)
            >= 1.0
    );
}

#[tokio::test]
async fn without_introspect_the_same_session_is_served_for_the_configured_ttl() {
    let proxy = TestProxy::start(&acme_mapping()).await;
    proxy
        .sf
        .introspection()
        .set_session_lifetime(acme::ORG_ID, 62);
    let (_, cache) = login_cache_use(&proxy).await;
    assert_eq!(cache, "miss");
    // Past the 2 s the introspected entry would have lived, every login is still a hit.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(4);
    while std::time::Instant::now() < until {
        let (_, cache) = login_cache_use(&proxy).await;
        assert_eq!(cache, "hit");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(upgraded_requests(&proxy.sf), 1);
    assert!(proxy
        .sf
        .requests_to(testkit::salesforce::INTROSPECT_PATH)
        .is_empty());
}

#[tokio::test]
async fn with_introspect_failing_the_entry_keeps_the_configured_ttl() {
    let proxy = TestProxy::start(&(acme_mapping() + INTROSPECT_ON)).await;
    proxy
        .sf
        .introspection()
        .fail_with(Some(http::StatusCode::SERVICE_UNAVAILABLE));
    let (first, cache) = login_cache_use(&proxy).await;
    assert_eq!(cache, "miss");
    introspected(&proxy, "error", 1.0).await;
    let (second, cache) = login_cache_use(&proxy).await;
    assert_eq!(cache, "hit");
    assert_eq!(second.body, first.body);
    assert_eq!(upgraded_requests(&proxy.sf), 1);
    assert_eq!(introspections(&proxy, "ok").await, 0.0);
    assert_eq!(introspections(&proxy, "inactive").await, 0.0);
}

#[tokio::test]
async fn with_introspect_an_inactive_session_is_not_kept() {
    // Sessions that end as they start: Salesforce calls them inactive.
    let proxy = TestProxy::start(&(acme_mapping() + INTROSPECT_ON)).await;
    proxy
        .sf
        .introspection()
        .set_session_lifetime(acme::ORG_ID, 0);
    let (_, cache) = login_cache_use(&proxy).await;
    assert_eq!(cache, "miss");
    introspected(&proxy, "inactive", 1.0).await;
    assert_eq!(
        metric(
            &scrape(proxy.admin_addr()).await,
            "grantshift_token_cache_entries"
        ),
        0.0
    );
    let (_, cache) = login_cache_use(&proxy).await;
    assert_eq!(cache, "miss", "the inactive session was not handed out");
    assert_eq!(upgraded_requests(&proxy.sf), 2);
}

#[tokio::test]
async fn with_introspect_a_jwt_bearer_session_is_not_introspected() {
    let proxy = TestProxy::start(
        &(jwt_credentials_with_password_toml(
            acme::USERNAME,
            Some(acme::MY_DOMAIN),
            "jwt-app.pkcs8.pem",
            acme::PASSWORD,
        ) + INTROSPECT_ON),
    )
    .await;
    proxy
        .sf
        .introspection()
        .set_session_lifetime(acme::ORG_ID, 0);
    let (_, cache) = login_cache_use(&proxy).await;
    assert_eq!(cache, "miss");
    let (_, cache) = login_cache_use(&proxy).await;
    assert_eq!(cache, "hit", "the configured ttl");
    assert!(proxy
        .sf
        .requests_to(testkit::salesforce::INTROSPECT_PATH)
        .is_empty());
}
