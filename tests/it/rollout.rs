//! docs/operating.md, "The upgrade", rollout: the first `[[rollout]]` rule matching the request host decides.
//! `observe` forwards unchanged and records what it learns; `upgrade` upgrades the credential
//! sets whose stable bucket is below `percent` and observes the rest (`reason: "percent"`),
//! the same way on every login and after a restart.

use grantshift::policy::bucket;
use testkit::*;

/// Every token request Salesforce saw, as `(host, body)`.
fn upstream_logins(sf: &FakeSalesforce) -> Vec<(String, Vec<u8>)> {
    sf.token_requests()
        .into_iter()
        .map(|r| (r.host_name().unwrap().to_string(), r.body))
        .collect()
}

#[tokio::test]
async fn observe_mode_forwards_unchanged_and_records_org_user_and_instance_url() {
    let toml = format!(
        "{}{}",
        rollout_toml("*", "observe", 100, true),
        acme_mapping()
    );
    let proxy = TestProxy::start(&toml).await;
    let body = acme_password_form();
    let reply = proxy.login(LOGIN_HOST, &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        upstream_logins(&proxy.sf),
        vec![(LOGIN_HOST.to_string(), body.into_bytes())],
        "observe changes nothing"
    );
    assert_eq!(
        Some(&reply.body[..]),
        proxy.sf.token_requests()[0].response_body.as_deref()
    );

    let event = proxy.next_event().await;
    assert_eq!(event["action"], "observed");
    assert!(
        event.get("reason").is_none(),
        "an observe rule needs no reason: {event}"
    );
    assert_eq!(
        event["org_id"],
        acme::ORG_ID,
        "learned from the response's id"
    );
    assert_eq!(event["user_id"], acme::USER_ID);
    assert_eq!(event["instance_url"], "https://acme.my.salesforce.com");
    assert_eq!(event["status"], 200);
}

#[tokio::test]
async fn percent_zero_observes_every_set_with_reason_percent() {
    let toml = format!(
        "{}{}{}",
        rollout_toml("*", "upgrade", 0, true),
        acme_mapping(),
        credentials_toml(acme::REPORTS_USERNAME, acme::MY_DOMAIN)
    );
    let proxy = TestProxy::start(&toml).await;
    let logins = [
        acme_password_form(),
        password_form(
            acme::CLIENT_ID,
            acme::CLIENT_SECRET,
            acme::REPORTS_USERNAME,
            acme::REPORTS_PASSWORD,
        ),
    ];
    for body in &logins {
        assert_eq!(proxy.login(LOGIN_HOST, body).await.status, 200);
        let event = proxy.next_event().await;
        assert_eq!(event["action"], "observed");
        assert_eq!(event["reason"], "percent");
    }
    let expected: Vec<_> = logins
        .iter()
        .map(|b| (LOGIN_HOST.to_string(), b.clone().into_bytes()))
        .collect();
    assert_eq!(upstream_logins(&proxy.sf), expected);
}

#[tokio::test]
async fn percent_hundred_upgrades_every_set() {
    let toml = format!(
        "{}{}{}",
        rollout_toml("*", "upgrade", 100, true),
        acme_mapping(),
        credentials_toml(acme::REPORTS_USERNAME, acme::MY_DOMAIN)
    );
    let proxy = TestProxy::start(&toml).await;
    for (user, password) in [
        (acme::USERNAME, acme::PASSWORD),
        (acme::REPORTS_USERNAME, acme::REPORTS_PASSWORD),
    ] {
        let body = password_form(acme::CLIENT_ID, acme::CLIENT_SECRET, user, password);
        assert_eq!(proxy.login(LOGIN_HOST, &body).await.status, 200);
        assert_eq!(proxy.next_event().await["action"], "upgraded");
    }
    assert!(upstream_logins(&proxy.sf)
        .iter()
        .all(|(host, _)| host == acme::MY_DOMAIN));
}

/// Two usernames whose bucket (for the acme app) is below 50 and two at or above it.
fn usernames_around_fifty() -> (Vec<String>, Vec<String>) {
    let (mut inside, mut outside) = (Vec::new(), Vec::new());
    for i in 0.. {
        let name = format!("batch{i}@acme.com");
        if bucket(acme::CLIENT_ID, &name) < 50 {
            if inside.len() < 2 {
                inside.push(name);
            }
        } else if outside.len() < 2 {
            outside.push(name);
        }
        if inside.len() == 2 && outside.len() == 2 {
            return (inside, outside);
        }
    }
    unreachable!()
}

#[tokio::test]
async fn percent_fifty_upgrades_exactly_the_sets_below_fifty_every_time_and_after_a_restart() {
    let (inside, outside) = usernames_around_fifty();
    let everyone: Vec<&String> = inside.iter().chain(&outside).collect();
    let mut toml = rollout_toml("*", "upgrade", 50, true);
    for user in &everyone {
        toml.push_str(&credentials_toml(user, acme::MY_DOMAIN));
    }
    // Without the token cache: every login's own request shows where it went.
    let mut proxy = TestProxy::builder()
        .extra_toml(&toml)
        .token_cache_off()
        .start()
        .await;
    proxy.sf.edit(|w| {
        for user in &everyone {
            w.org_mut(acme::ORG_ID)
                .add_user(user, &format!("pw-SECRET-{user}"));
        }
    });
    let login_of = |user: &str| {
        password_form(
            acme::CLIENT_ID,
            acme::CLIENT_SECRET,
            user,
            &format!("pw-SECRET-{user}"),
        )
    };

    for round in ["first", "second", "after restart"] {
        if round == "after restart" {
            proxy = proxy.restart().await;
        }
        for user in &everyone {
            let before = proxy.sf.token_requests().len();
            let body = login_of(user);
            let reply = proxy.login(LOGIN_HOST, &body).await;
            assert_eq!(
                reply.status,
                200,
                "{round} login of {user}: {}",
                reply.text()
            );
            let event = proxy.next_event().await;
            let sent = &proxy.sf.token_requests()[before];
            if inside.contains(user) {
                assert_eq!(event["action"], "upgraded", "{round}: {user} (bucket < 50)");
                assert_eq!(sent.host_name(), Some(acme::MY_DOMAIN));
            } else {
                assert_eq!(
                    event["action"], "observed",
                    "{round}: {user} (bucket >= 50)"
                );
                assert_eq!(event["reason"], "percent");
                assert_eq!(sent.host_name(), Some(LOGIN_HOST));
                assert!(
                    sent.body == body.as_bytes(),
                    "observed logins go through unchanged"
                );
            }
        }
    }
}

#[tokio::test]
async fn first_matching_rule_wins() {
    let toml = format!(
        "{}{}",
        rollout_toml(LOGIN_HOST, "observe", 100, true),
        rollout_toml("*", "upgrade", 100, true)
    ) + &acme_mapping();
    let proxy = TestProxy::start(&toml).await;

    assert_eq!(
        proxy.login(LOGIN_HOST, &acme_password_form()).await.status,
        200
    );
    assert_eq!(proxy.next_event().await["action"], "observed");

    // The same set at its My Domain falls to the second rule.
    assert_eq!(
        proxy
            .login(acme::MY_DOMAIN, &acme_password_form())
            .await
            .status,
        200
    );
    assert_eq!(proxy.next_event().await["action"], "upgraded");
}

#[tokio::test]
async fn no_matching_rule_observes_with_reason_no_rule() {
    let toml = rollout_toml("*.my.salesforce.com", "upgrade", 100, true) + &acme_mapping();
    let proxy = TestProxy::start(&toml).await;
    let body = acme_password_form();
    assert_eq!(proxy.login(LOGIN_HOST, &body).await.status, 200);
    let event = proxy.next_event().await;
    assert_eq!(event["action"], "observed");
    assert_eq!(event["reason"], "no_rule");
    assert_eq!(
        upstream_logins(&proxy.sf),
        vec![(LOGIN_HOST.to_string(), body.into_bytes())]
    );
}

#[tokio::test]
async fn a_trailing_dot_or_capitals_in_the_connect_host_meet_the_same_rule() {
    // Observe the login host exactly, upgrade everything else: a login to the login host must
    // be observed however its name is written.
    let toml = format!(
        "{}{}{}",
        rollout_toml(LOGIN_HOST, "observe", 100, true),
        rollout_toml("*", "upgrade", 100, true),
        acme_mapping()
    );
    let proxy = TestProxy::start(&toml).await;
    for written in [
        "login.salesforce.com.",
        "LOGIN.Salesforce.COM.",
        "login.salesforce.com..",
    ] {
        let (status, tcp) = connect_tunnel(proxy.addr(), &format!("{written}:443")).await;
        assert_eq!(status, 200, "{written}");
        let tls = tls_connect(tcp, LOGIN_HOST, proxy.ca_pem(), &[b"http/1.1"]).await;
        let mut conn = HttpConn::handshake(tls, Http::H1).await;
        let reply = post_form(&mut conn, LOGIN_HOST, TOKEN_PATH, &acme_password_form()).await;
        assert_eq!(reply.status, 200, "{written}: {}", reply.text());
        let event = proxy.next_event().await;
        assert_eq!(event["action"], "observed", "{written}: {event}");
        assert_eq!(event["host"], LOGIN_HOST, "{written}: {event}");
    }
    assert!(
        upstream_logins(&proxy.sf)
            .iter()
            .all(|(host, _)| host == LOGIN_HOST),
        "nothing was sent to the My Domain"
    );
}
