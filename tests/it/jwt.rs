//! docs/operating.md, "The upgrade", `flow = "jwt_bearer"`: the password grant becomes
//! `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>` (+ `format`),
//! the JWT signed RS256 with the credential's key (PKCS#8 or PKCS#1 PEM) and carrying
//! `iss`=client_id, `sub`=username, `aud`=login (test for test/sandbox hosts, or
//! `jwt_audience`), `exp`=now+180 s. The fake Salesforce verifies it with the app's
//! certificate, so the client's login succeeds as the same user.

use testkit::salesforce::{jwt_public_key_der, JWT_BEARER_GRANT};
use testkit::*;

/// The single upgraded request Salesforce received at `host`: a JWT bearer grant whose
/// assertion verifies with the app's public key. Returns the decoded JWT.
fn assert_jwt_login(sf: &FakeSalesforce, host: &str, expect_format: Option<&str>) -> DecodedJwt {
    let seen = sf.token_requests();
    assert_eq!(seen.len(), 1, "one login upstream");
    let up = &seen[0];
    assert_eq!(up.host_name(), Some(host));
    assert_eq!(up.sni.as_deref(), Some(host));
    assert!(up.query.as_deref().unwrap_or("").is_empty());
    let mut names = vec!["grant_type", "assertion"];
    if expect_format.is_some() {
        names.push("format");
    }
    assert_eq!(up.param_names(), names, "only the JWT bearer parameters");
    assert_eq!(up.param("grant_type").as_deref(), Some(JWT_BEARER_GRANT));
    assert_eq!(up.param("format").as_deref(), expect_format);
    assert_no_password_login_parameters(up);
    assert!(
        up.param("client_secret").is_none(),
        "JWT bearer sends no client secret"
    );
    let assertion = up.param("assertion").unwrap();
    let jwt = DecodedJwt::parse(&assertion).expect("the assertion is a JWT");
    assert_eq!(jwt.header, serde_json::json!({"alg": "RS256"}));
    assert!(
        jwt.verifies_with(&jwt_public_key_der()),
        "RS256 signature verifies with the connected app's certificate"
    );
    jwt
}

/// `exp` is now + 180 s, measured against the test's clock around the request.
fn assert_exp_three_minutes_ahead(jwt: &DecodedJwt, before: u64, after: u64) {
    let exp = jwt.claims["exp"].as_u64().expect("numeric exp");
    assert!(
        (before + 180 - 2..=after + 180 + 2).contains(&exp),
        "exp {exp} is 180 s after the login (between {before} and {after})"
    );
}

async fn jwt_login_at_login_host_with_key(key_file: &str) {
    let proxy = TestProxy::start(&jwt_credentials_with_password_toml(
        acme::USERNAME,
        Some(acme::MY_DOMAIN),
        key_file,
        acme::PASSWORD,
    ))
    .await;
    let before = unix_now();
    let reply = proxy.login(LOGIN_HOST, &acme_password_form()).await;
    let after = unix_now();
    assert_eq!(reply.status, 200, "{}", reply.text());

    let jwt = assert_jwt_login(&proxy.sf, acme::MY_DOMAIN, None);
    assert_eq!(jwt.claims["iss"], acme::CLIENT_ID);
    assert_eq!(jwt.claims["sub"], acme::USERNAME);
    assert_eq!(jwt.claims["aud"], "https://login.salesforce.com");
    assert_exp_three_minutes_ahead(&jwt, before, after);

    // Salesforce accepted it: the client is logged in as the same user as with its password.
    let up = &proxy.sf.token_requests()[0];
    assert_eq!(Some(&reply.body[..]), up.response_body.as_deref());
    assert!(reply.json()["id"]
        .as_str()
        .unwrap()
        .ends_with(acme::USER_ID));

    let event = proxy.next_event().await;
    assert_eq!(event["action"], "upgraded");
    assert_eq!(event["flow"], "jwt_bearer");
    assert_eq!(event["target_host"], acme::MY_DOMAIN);
}

#[tokio::test]
async fn jwt_bearer_with_a_pkcs8_key_is_signed_for_the_app_and_accepted() {
    jwt_login_at_login_host_with_key("jwt-app.pkcs8.pem").await;
}

#[tokio::test]
async fn jwt_bearer_with_a_pkcs1_key_is_signed_for_the_app_and_accepted() {
    jwt_login_at_login_host_with_key("jwt-app.pkcs1.pem").await;
}

#[tokio::test]
async fn jwt_audience_is_test_for_a_login_at_the_sandbox_login_host() {
    let proxy = TestProxy::start(&jwt_credentials_with_password_toml(
        acme_qa::USERNAME,
        Some(acme_qa::MY_DOMAIN),
        "jwt-app.pkcs8.pem",
        acme_qa::PASSWORD,
    ))
    .await;
    let body = acme_qa_password_form();
    let reply = proxy.login(TEST_HOST, &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let jwt = assert_jwt_login(&proxy.sf, acme_qa::MY_DOMAIN, None);
    assert_eq!(jwt.claims["aud"], "https://test.salesforce.com");
    assert_eq!(jwt.claims["iss"], acme_qa::CLIENT_ID);
    assert_eq!(jwt.claims["sub"], acme_qa::USERNAME);
    assert!(reply.json()["id"]
        .as_str()
        .unwrap()
        .ends_with(acme_qa::USER_ID));
}

#[tokio::test]
async fn jwt_without_my_domain_goes_to_the_sandbox_my_domain_posted_to_with_test_audience() {
    let proxy = TestProxy::start(&jwt_credentials_with_password_toml(
        acme_qa::USERNAME,
        None,
        "jwt-app.pkcs1.pem",
        acme_qa::PASSWORD,
    ))
    .await;
    let body = acme_qa_password_form();
    let reply = proxy.login(acme_qa::MY_DOMAIN, &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let jwt = assert_jwt_login(&proxy.sf, acme_qa::MY_DOMAIN, None);
    assert_eq!(jwt.claims["aud"], "https://test.salesforce.com");
}

#[tokio::test]
async fn jwt_without_my_domain_goes_to_the_login_host_posted_to() {
    let proxy = TestProxy::start(&jwt_credentials_with_password_toml(
        acme::USERNAME,
        None,
        "jwt-app.pkcs8.pem",
        acme::PASSWORD,
    ))
    .await;
    let reply = proxy.login(LOGIN_HOST, &acme_password_form()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let jwt = assert_jwt_login(&proxy.sf, LOGIN_HOST, None);
    assert_eq!(jwt.claims["aud"], "https://login.salesforce.com");
    assert_eq!(proxy.next_event().await["target_host"], LOGIN_HOST);
}

#[tokio::test]
async fn configured_jwt_audience_is_used() {
    // Still inside the [[credentials]] table: blank lines do not end a TOML table.
    let toml = format!(
        "{}jwt_audience = \"https://acme.my.salesforce.com\"\n",
        jwt_credentials_with_password_toml(
            acme::USERNAME,
            Some(acme::MY_DOMAIN),
            "jwt-app.pkcs8.pem",
            acme::PASSWORD
        )
    );
    let proxy = TestProxy::start(&toml).await;
    let reply = proxy.login(LOGIN_HOST, &acme_password_form()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let jwt = assert_jwt_login(&proxy.sf, acme::MY_DOMAIN, None);
    assert_eq!(jwt.claims["aud"], "https://acme.my.salesforce.com");
}

#[tokio::test]
async fn jwt_body_keeps_format_and_drops_scope_and_every_credential() {
    let proxy = TestProxy::start(&jwt_credentials_with_password_toml(
        acme::USERNAME,
        Some(acme::MY_DOMAIN),
        "jwt-app.pkcs8.pem",
        acme::PASSWORD,
    ))
    .await;
    let body = format!("{}&format=json&scope=api", acme_password_form());
    let reply = proxy.login(LOGIN_HOST, &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_jwt_login(&proxy.sf, acme::MY_DOMAIN, Some("json"));
    let up = &proxy.sf.token_requests()[0];
    assert_not_carried(up, acme::PASSWORD, "the password");
    assert_not_carried(up, acme::CLIENT_SECRET, "the client secret");
}
