//! Which `[[credentials]]` entry a password grant maps to, and what happens without one
//! (docs/operating.md, "The upgrade"): usernames compare case-insensitively after form decoding; an entry with a
//! `client_id` matches only that connected app; a generic login host with no mapping is left
//! alone (`unmapped`), because Salesforce refuses client credentials there.

use testkit::*;

#[tokio::test]
async fn password_grant_to_login_without_mapping_is_forwarded_byte_identical_as_unmapped() {
    let proxy = TestProxy::start("").await;
    // Parameter order and encoding as a client wrote them, not as grantshift would.
    let body = format!(
        "username={}&password={}&grant_type=password&client_secret={}&client_id={}",
        "integration%40acme.com",
        acme::PASSWORD,
        acme::CLIENT_SECRET,
        acme::CLIENT_ID
    );
    let reply = proxy.login(LOGIN_HOST, &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    let seen = proxy.sf.token_requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].host_name(), Some(LOGIN_HOST));
    assert_eq!(seen[0].sni.as_deref(), Some(LOGIN_HOST));
    assert!(
        seen[0].body == body.as_bytes(),
        "the body arrives byte for byte"
    );
    assert_eq!(Some(&reply.body[..]), seen[0].response_body.as_deref());
    assert_eq!(
        reply.json()["id"],
        acme::login_id().as_str(),
        "the client logged in with its password, as before"
    );

    let event = proxy.next_event().await;
    assert_eq!(event["action"], "unmapped");
    assert_eq!(event["host"], LOGIN_HOST);
    assert_eq!(event["username"], acme::USERNAME);
    assert_eq!(event["status"], 200);
    assert!(event.get("target_host").is_none(), "{event}");
}

#[tokio::test]
async fn password_grant_to_test_host_without_mapping_is_unmapped() {
    let proxy = TestProxy::start(&acme_mapping()).await;
    let body = acme_qa_password_form();
    let reply = proxy.login(TEST_HOST, &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = proxy.sf.token_requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].host_name(), Some(TEST_HOST));
    assert!(seen[0].body == body.as_bytes());
    assert_eq!(proxy.next_event().await["action"], "unmapped");
}

#[tokio::test]
async fn usernames_with_plus_percent_40_and_mixed_case_map_to_the_lowercase_credential() {
    let proxy = TestProxy::start(&credentials_toml(acme::PLUS_USERNAME, acme::MY_DOMAIN)).await;
    assert_eq!(acme::PLUS_USERNAME, "integration+batch@acme.com");
    // `+` must travel as %2B in a form (a bare `+` is a space); `@` as %40.
    let body = format!(
        "grant_type=password&client_id={}&client_secret={}&username=Integration%2BBatch%40Acme.COM&password={}",
        acme::CLIENT_ID,
        acme::CLIENT_SECRET,
        acme::PLUS_PASSWORD
    );
    let reply = proxy.login(LOGIN_HOST, &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = proxy.sf.token_requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].host_name(),
        Some(acme::MY_DOMAIN),
        "mapped to its My Domain"
    );
    assert_eq!(
        seen[0].param("grant_type").as_deref(),
        Some("client_credentials")
    );
    assert_no_password_login_parameters(&seen[0]);

    let event = proxy.next_event().await;
    assert_eq!(event["action"], "upgraded");
    assert_eq!(
        event["username"], "Integration+Batch@Acme.COM",
        "the event names the username as sent, decoded"
    );
}

#[tokio::test]
async fn a_bare_plus_in_a_form_is_a_space_so_the_username_does_not_match() {
    let proxy = TestProxy::start(&credentials_toml(acme::PLUS_USERNAME, acme::MY_DOMAIN)).await;
    let body = format!(
        "grant_type=password&client_id={}&client_secret={}&username=integration+batch@acme.com&password={}",
        acme::CLIENT_ID,
        acme::CLIENT_SECRET,
        acme::PLUS_PASSWORD
    );
    proxy.login(LOGIN_HOST, &body).await;
    let seen = proxy.sf.token_requests();
    assert_eq!(seen[0].host_name(), Some(LOGIN_HOST));
    assert!(seen[0].body == body.as_bytes());
    let event = proxy.next_event().await;
    assert_eq!(event["action"], "unmapped");
    assert_eq!(event["username"], "integration batch@acme.com");
}

#[tokio::test]
async fn credential_with_client_id_maps_only_that_connected_apps_logins() {
    let toml = format!(
        "[[credentials]]\nusername = {}\nmy_domain = {}\nclient_id = {}\n",
        testkit::proxy::toml_str(acme::USERNAME),
        testkit::proxy::toml_str(acme::MY_DOMAIN),
        testkit::proxy::toml_str(acme::CLIENT_ID)
    );
    let proxy = TestProxy::start(&toml).await;

    // Another app, same user: not this entry's app, so unmapped at login.
    let other = password_form(
        acme::OTHER_CLIENT_ID,
        acme::OTHER_CLIENT_SECRET,
        acme::USERNAME,
        acme::PASSWORD,
    );
    assert_eq!(proxy.login(LOGIN_HOST, &other).await.status, 200);
    let event = proxy.next_event().await;
    assert_eq!(event["action"], "unmapped");
    assert_eq!(event["client_id"], acme::OTHER_CLIENT_ID);

    // The entry's app: upgraded.
    assert_eq!(
        proxy.login(LOGIN_HOST, &acme_password_form()).await.status,
        200
    );
    let event = proxy.next_event().await;
    assert_eq!(event["action"], "upgraded");
    assert_eq!(event["target_host"], acme::MY_DOMAIN);

    assert_eq!(
        proxy.sf.token_request_hosts(),
        vec![LOGIN_HOST, acme::MY_DOMAIN]
    );
}

#[tokio::test]
async fn credential_without_my_domain_leaves_a_login_host_password_grant_unmapped() {
    let toml = format!(
        "[[credentials]]\nusername = {}\n",
        testkit::proxy::toml_str(acme::USERNAME)
    );
    let proxy = TestProxy::start(&toml).await;
    let body = acme_password_form();
    assert_eq!(proxy.login(LOGIN_HOST, &body).await.status, 200);
    let seen = proxy.sf.token_requests();
    assert_eq!(seen[0].host_name(), Some(LOGIN_HOST));
    assert!(seen[0].body == body.as_bytes());
    assert_eq!(proxy.next_event().await["action"], "unmapped");

    // The same entry at a My Domain: upgraded right there.
    assert_eq!(proxy.login(acme::MY_DOMAIN, &body).await.status, 200);
    let event = proxy.next_event().await;
    assert_eq!(event["action"], "upgraded");
    assert_eq!(event["target_host"], acme::MY_DOMAIN);
}

#[tokio::test]
async fn mapping_wins_over_the_my_domain_the_client_posted_to() {
    // The client posts to the sandbox's My Domain, but its username is mapped to production.
    let proxy = TestProxy::start(&acme_mapping()).await;
    let reply = proxy.login(acme_qa::MY_DOMAIN, &acme_password_form()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = proxy.sf.token_requests();
    assert_eq!(seen[0].host_name(), Some(acme::MY_DOMAIN));
    assert_eq!(proxy.next_event().await["target_host"], acme::MY_DOMAIN);
}
