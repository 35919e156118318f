//! Token requests that are not password grants (refresh_token, client_credentials, JWT bearer,
//! anything else) go through unchanged and are recorded `passed`; requests that are not token
//! requests on intercepted hosts are not recorded at all (docs/operating.md, "What happens to a connection", "The upgrade", "The events file").

use http::Method;
use testkit::salesforce::{sign_jwt_with_fixture_key, JWT_BEARER_GRANT};
use testkit::*;

/// Send `body` (and `headers`) as a token request to `host`; assert Salesforce got it
/// byte for byte at that host, the client got Salesforce's answer, and the event is `passed`
/// for `grant`. Returns the client's reply.
async fn assert_passes_unchanged(
    proxy: &TestProxy,
    host: &str,
    headers: &[(&str, &str)],
    body: &str,
    grant: &str,
) -> Reply {
    let mut conn = proxy.intercepted(host, Http::H1).await;
    let mut req = conn
        .request(Method::POST, host, TOKEN_PATH)
        .header("content-type", "application/x-www-form-urlencoded");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let reply = conn.send(req.body(full(body.to_string())).unwrap()).await;
    let up = proxy.sf.token_requests().pop().expect("reached Salesforce");
    assert_eq!(up.host_name(), Some(host));
    assert!(up.body == body.as_bytes(), "body unchanged");
    for (name, value) in headers {
        assert_eq!(up.header_values(name), vec![*value], "{name} unchanged");
    }
    assert_eq!(Some(&reply.body[..]), up.response_body.as_deref());
    let event = proxy.next_event().await;
    assert_eq!(event["action"], "passed", "{event}");
    assert_eq!(event["grant"], grant);
    assert_eq!(event["status"], reply.status.as_u16());
    reply
}

async fn mapped_proxy() -> TestProxy {
    TestProxy::start(&acme_mapping()).await
}

#[tokio::test]
async fn refresh_token_grant_passes_unchanged() {
    let proxy = mapped_proxy().await;
    proxy.sf.edit(|w| {
        w.org_mut(acme::ORG_ID)
            .app_mut(acme::CLIENT_ID)
            .refresh_tokens
            .push(("5Aep861-SECRET-refresh".into(), acme::USERNAME.into()))
    });
    let body = form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", "5Aep861-SECRET-refresh"),
        ("client_id", acme::CLIENT_ID),
        ("client_secret", acme::CLIENT_SECRET),
    ]);
    let reply = assert_passes_unchanged(&proxy, LOGIN_HOST, &[], &body, "refresh_token").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[tokio::test]
async fn expired_refresh_token_gets_salesforces_error_unchanged() {
    let proxy = mapped_proxy().await;
    let body = form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", "5Aep861-expired"),
        ("client_id", acme::CLIENT_ID),
    ]);
    let reply = assert_passes_unchanged(&proxy, LOGIN_HOST, &[], &body, "refresh_token").await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.json()["error_description"],
        "expired access/refresh token"
    );
}

#[tokio::test]
async fn client_credentials_grant_with_basic_auth_passes_unchanged() {
    let proxy = mapped_proxy().await;
    let basic = basic_auth(acme::CLIENT_ID, acme::CLIENT_SECRET);
    let reply = assert_passes_unchanged(
        &proxy,
        acme::MY_DOMAIN,
        &[("authorization", basic.as_str())],
        "grant_type=client_credentials",
        "client_credentials",
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[tokio::test]
async fn client_credentials_grant_at_login_gets_salesforces_refusal_unchanged() {
    let proxy = mapped_proxy().await;
    let body = form(&[
        ("grant_type", "client_credentials"),
        ("client_id", acme::CLIENT_ID),
        ("client_secret", acme::CLIENT_SECRET),
    ]);
    let reply = assert_passes_unchanged(&proxy, LOGIN_HOST, &[], &body, "client_credentials").await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.json()["error_description"],
        "request not supported on this domain"
    );
}

#[tokio::test]
async fn jwt_bearer_grant_from_the_client_passes_unchanged() {
    let proxy = mapped_proxy().await;
    let exp = unix_now() + 180;
    let assertion = sign_jwt_with_fixture_key(&serde_json::json!({
        "iss": acme::CLIENT_ID, "sub": acme::USERNAME,
        "aud": "https://login.salesforce.com", "exp": exp,
    }));
    let body = form(&[("grant_type", JWT_BEARER_GRANT), ("assertion", &assertion)]);
    let reply = assert_passes_unchanged(&proxy, LOGIN_HOST, &[], &body, JWT_BEARER_GRANT).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[tokio::test]
async fn unknown_grant_passes_unchanged() {
    let proxy = mapped_proxy().await;
    let body = "grant_type=authorization_code&code=aPrx-code&redirect_uri=https%3A%2F%2Fapp";
    let reply = assert_passes_unchanged(&proxy, LOGIN_HOST, &[], body, "authorization_code").await;
    assert_eq!(reply.status, 400);
}

#[tokio::test]
async fn non_token_requests_on_intercepted_hosts_produce_no_event() {
    let proxy = mapped_proxy().await;
    let mut conn = proxy.intercepted(LOGIN_HOST, Http::H1).await;
    // Not POST, another OAuth path, an API call with a password-like body: none is a token request.
    let reply = conn.get(LOGIN_HOST, TOKEN_PATH).await;
    assert_eq!(reply.status, 400, "Salesforce wants POST: {}", reply.text());
    for path in ["/services/oauth2/revoke", "/echo"] {
        let reply = post_form(&mut conn, LOGIN_HOST, path, &acme_password_form()).await;
        assert_ne!(reply.status, 0);
    }
    let mut api = proxy.intercepted(acme::MY_DOMAIN, Http::H2).await;
    let reply = api
        .get(acme::MY_DOMAIN, "/services/data/v62.0/limits")
        .await;
    assert_eq!(reply.status, 401);
    // Each of those reached Salesforce unchanged...
    let echo = proxy.sf.requests_to("/echo");
    assert!(echo[0].body == acme_password_form().as_bytes());
    assert_eq!(echo[0].host_name(), Some(LOGIN_HOST));

    // ... and the first event is the next token request's.
    let marker = "grant_type=refresh_token&refresh_token=marker";
    post_form(&mut conn, LOGIN_HOST, TOKEN_PATH, marker).await;
    let event = proxy.next_event().await;
    assert_eq!(event["grant"], "refresh_token", "first event: {event}");
    assert_eq!(event["action"], "passed");
    assert_eq!(
        proxy.events_in_file().len(),
        1,
        "one line: the token request's"
    );
}
