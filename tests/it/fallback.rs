//! docs/operating.md, "The upgrade", fallback: when the upgraded attempt fails (a Salesforce error, a refused
//! connection, a timeout), the original password request is replayed unchanged to the original
//! host and the client gets that response; one `fallback` event carries the failed attempt in
//! `upstream_error`. With `fallback = false` the client gets the failed attempt as is, and the
//! event is `failed`.

use http::Method;
use testkit::*;

fn mapped(fallback: bool) -> String {
    rollout_toml("*", "upgrade", 100, fallback) + &acme_mapping()
}

/// The password response of the acme integration user at login.
fn assert_password_login_response(reply: &Reply) {
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.json()["id"],
        acme::login_id().as_str(),
        "the client got its password login's response"
    );
}

/// Salesforce saw the upgraded attempt at the My Domain (if it got that far), then the
/// original login at `login.salesforce.com`, byte for byte.
fn assert_replayed_unchanged(sf: &FakeSalesforce, sent: &str, attempt_reached_salesforce: bool) {
    let seen = sf.token_requests();
    let mut expected_hosts = Vec::new();
    if attempt_reached_salesforce {
        expected_hosts.push(acme::MY_DOMAIN);
    }
    expected_hosts.push(LOGIN_HOST);
    assert_eq!(
        seen.iter()
            .map(|r| r.host_name().unwrap())
            .collect::<Vec<_>>(),
        expected_hosts
    );
    let replay = seen.last().unwrap();
    assert_eq!(replay.sni.as_deref(), Some(LOGIN_HOST));
    assert!(
        replay.body == sent.as_bytes(),
        "the replay is the original request: {:?}",
        String::from_utf8_lossy(&replay.body)
    );
}

async fn no_run_as_user_falls_back_to_the_password_login(http: Http) {
    let proxy = TestProxy::start(&mapped(true)).await;
    proxy
        .sf
        .edit(|w| w.org_mut(acme::ORG_ID).app_mut(acme::CLIENT_ID).run_as_user = None);
    let body = acme_password_form();
    let mut conn = proxy.intercepted(LOGIN_HOST, http).await;
    let reply = post_form(&mut conn, LOGIN_HOST, TOKEN_PATH, &body).await;
    assert_password_login_response(&reply);
    assert_replayed_unchanged(&proxy.sf, &body, true);
    assert_eq!(
        proxy.sf.token_requests()[0].response_status,
        Some(400),
        "the upgraded attempt was refused"
    );

    let event = proxy.next_event().await;
    assert_eq!(event["action"], "fallback");
    assert_eq!(event["status"], 200, "the replay's status");
    assert_eq!(event["flow"], "client_credentials");
    assert_eq!(event["target_host"], acme::MY_DOMAIN);
    assert_eq!(
        event["upstream_error"],
        serde_json::json!({"status": 400, "error": "invalid_grant",
                           "error_description": "no client credentials user enabled"})
    );
    assert_eq!(
        event["user_id"],
        acme::USER_ID,
        "facts come from the response the client got"
    );
}

#[tokio::test]
async fn no_run_as_user_falls_back_to_the_password_login_and_records_salesforce_error() {
    no_run_as_user_falls_back_to_the_password_login(Http::H1).await;
}

#[tokio::test]
async fn no_run_as_user_falls_back_to_the_password_login_over_http2() {
    no_run_as_user_falls_back_to_the_password_login(Http::H2).await;
}

#[tokio::test]
async fn client_credentials_flow_disabled_falls_back_with_salesforces_error() {
    let proxy = TestProxy::start(&mapped(true)).await;
    proxy
        .sf
        .edit(|w| w.org_mut(acme::ORG_ID).app_mut(acme::CLIENT_ID).cc_enabled = false);
    let reply = proxy.login(LOGIN_HOST, &acme_password_form()).await;
    assert_password_login_response(&reply);
    let event = proxy.next_event().await;
    assert_eq!(event["action"], "fallback");
    assert_eq!(event["upstream_error"]["status"], 400);
    assert_eq!(event["upstream_error"]["error"], "unauthorized_client");
    assert_eq!(
        event["upstream_error"]["error_description"],
        "client credentials flow is not enabled for this app"
    );
}

#[tokio::test]
async fn jwt_user_not_preapproved_falls_back_with_salesforces_error() {
    let toml = jwt_credentials_with_password_toml(
        acme::USERNAME,
        Some(acme::MY_DOMAIN),
        "jwt-app.pkcs8.pem",
        acme::PASSWORD,
    );
    let proxy = TestProxy::start(&toml).await;
    proxy.sf.edit(|w| {
        w.org_mut(acme::ORG_ID)
            .app_mut(acme::CLIENT_ID)
            .preapproved_users
            .clear()
    });
    let body = acme_password_form();
    let reply = proxy.login(LOGIN_HOST, &body).await;
    assert_password_login_response(&reply);
    assert_replayed_unchanged(&proxy.sf, &body, true);
    let event = proxy.next_event().await;
    assert_eq!(event["action"], "fallback");
    assert_eq!(event["flow"], "jwt_bearer");
    assert_eq!(event["upstream_error"]["error"], "invalid_grant");
    assert_eq!(
        event["upstream_error"]["error_description"],
        "user hasn't approved this consumer"
    );
}

#[tokio::test]
async fn refused_connection_to_the_my_domain_falls_back() {
    let proxy = TestProxy::builder()
        .connect_to(&format!("{}:443", acme::MY_DOMAIN), closed_port())
        .extra_toml(&mapped(true))
        .start()
        .await;
    let body = acme_password_form();
    let reply = proxy.login(LOGIN_HOST, &body).await;
    assert_password_login_response(&reply);
    assert_replayed_unchanged(&proxy.sf, &body, false);

    let event = proxy.next_event().await;
    assert_eq!(event["action"], "fallback");
    assert_eq!(event["status"], 200);
    let error = &event["upstream_error"];
    assert!(
        error.get("status").is_none(),
        "no HTTP response came: {error}"
    );
    let description = error["error_description"].as_str().unwrap_or("");
    assert!(
        description.contains(acme::MY_DOMAIN) && description.contains("connect"),
        "says the My Domain could not be reached: {error}"
    );
}

#[tokio::test]
async fn my_domain_that_never_answers_falls_back_after_request_timeout() {
    let proxy = TestProxy::builder()
        .request_timeout("2s")
        .extra_toml(&mapped(true))
        .start()
        .await;
    proxy.sf.hold_token_requests_at(acme::MY_DOMAIN);
    let body = acme_password_form();
    let reply = proxy.login(LOGIN_HOST, &body).await;
    // The upgraded attempt did reach the My Domain, which never answered.
    within(
        5,
        "the held attempt was recorded",
        proxy.sf.wait_token_hold_arrived(),
    )
    .await;
    assert_password_login_response(&reply);
    assert_replayed_unchanged(&proxy.sf, &body, true);

    let event = proxy.next_event().await;
    assert_eq!(event["action"], "fallback");
    let error = &event["upstream_error"];
    assert!(
        error.get("status").is_none(),
        "no HTTP response came: {error}"
    );
    let text = error.to_string().to_ascii_lowercase();
    assert!(
        text.contains("timeout") || text.contains("timed out") || text.contains("within"),
        "says the attempt timed out: {error}"
    );
}

#[tokio::test]
async fn my_domain_whose_tls_never_completes_falls_back_after_connect_timeout() {
    let silent = SilentServer::start().await;
    let proxy = TestProxy::builder()
        .connect_timeout("2s")
        .connect_to(&format!("{}:443", acme::MY_DOMAIN), silent.addr())
        .extra_toml(&mapped(true))
        .start()
        .await;
    let body = acme_password_form();
    let reply = proxy.login(LOGIN_HOST, &body).await;
    assert_password_login_response(&reply);
    assert_replayed_unchanged(&proxy.sf, &body, false);
    let event = proxy.next_event().await;
    assert_eq!(event["action"], "fallback");
    assert!(event["upstream_error"].is_object(), "{event}");
}

#[tokio::test]
async fn fallback_replays_the_original_query_string_and_headers() {
    let proxy = TestProxy::start(&mapped(true)).await;
    proxy
        .sf
        .edit(|w| w.org_mut(acme::ORG_ID).app_mut(acme::CLIENT_ID).run_as_user = None);
    let query = form(&[("grant_type", "password"), ("format", "json")]);
    let body = form(&[
        ("client_id", acme::CLIENT_ID),
        ("client_secret", acme::CLIENT_SECRET),
        ("username", acme::USERNAME),
        ("password", acme::PASSWORD),
    ]);
    let mut conn = proxy.intercepted(LOGIN_HOST, Http::H1).await;
    let req = conn
        .request(Method::POST, LOGIN_HOST, &format!("{TOKEN_PATH}?{query}"))
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=UTF-8",
        )
        .header("x-client-trace", "abc")
        .body(full(body.clone()))
        .unwrap();
    let reply = conn.send(req).await;
    assert_password_login_response(&reply);
    let replay = proxy.sf.token_requests().pop().unwrap();
    assert_eq!(replay.host_name(), Some(LOGIN_HOST));
    assert_eq!(replay.query.as_deref(), Some(query.as_str()));
    assert!(replay.body == body.as_bytes());
    assert_eq!(
        replay.header_values("content-type"),
        vec!["application/x-www-form-urlencoded; charset=UTF-8"]
    );
    assert_eq!(replay.header_values("x-client-trace"), vec!["abc"]);
}

#[tokio::test]
async fn fallback_gives_the_client_whatever_the_password_login_answers() {
    let proxy = TestProxy::start(&mapped(true)).await;
    proxy
        .sf
        .edit(|w| w.org_mut(acme::ORG_ID).app_mut(acme::CLIENT_ID).run_as_user = None);
    let body = password_form(
        acme::CLIENT_ID,
        acme::CLIENT_SECRET,
        acme::USERNAME,
        "wrong",
    );
    let reply = proxy.login(LOGIN_HOST, &body).await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.json(),
        serde_json::json!({"error": "invalid_grant", "error_description": "authentication failure"})
    );
    let event = proxy.next_event().await;
    assert_eq!(event["action"], "fallback");
    assert_eq!(event["status"], 400, "the replay's status");
    assert_eq!(
        event["upstream_error"]["error_description"],
        "no client credentials user enabled"
    );
}

#[tokio::test]
async fn with_fallback_off_the_client_gets_salesforces_refusal_as_is_and_the_event_is_failed() {
    let proxy = TestProxy::start(&mapped(false)).await;
    proxy
        .sf
        .edit(|w| w.org_mut(acme::ORG_ID).app_mut(acme::CLIENT_ID).run_as_user = None);
    let reply = proxy.login(LOGIN_HOST, &acme_password_form()).await;
    assert_eq!(reply.status, 400);
    let seen = proxy.sf.token_requests();
    assert_eq!(seen.len(), 1, "no replay");
    assert_eq!(seen[0].host_name(), Some(acme::MY_DOMAIN));
    assert_eq!(Some(&reply.body[..]), seen[0].response_body.as_deref());
    assert_eq!(
        reply.header("content-type"),
        Some("application/json;charset=UTF-8")
    );
    assert_eq!(reply.header("cache-control"), Some("no-store"));

    let event = proxy.next_event().await;
    assert_eq!(event["action"], "failed");
    assert_eq!(event["status"], 400);
    assert_eq!(event["upstream_error"]["error"], "invalid_grant");
    assert_eq!(
        event["upstream_error"]["error_description"],
        "no client credentials user enabled"
    );
}

#[tokio::test]
async fn with_fallback_off_a_refused_my_domain_gives_502_and_the_event_is_failed() {
    let proxy = TestProxy::builder()
        .connect_to(&format!("{}:443", acme::MY_DOMAIN), closed_port())
        .extra_toml(&mapped(false))
        .start()
        .await;
    let reply = proxy.login(LOGIN_HOST, &acme_password_form()).await;
    assert_eq!(reply.status, 502);
    let line = reply.text();
    assert!(line.contains(acme::MY_DOMAIN), "names the host: {line}");
    assert!(proxy.sf.token_requests().is_empty(), "no replay");
    let event = proxy.next_event().await;
    assert_eq!(event["action"], "failed");
    assert_eq!(event["status"], 502);
}

#[tokio::test]
async fn with_fallback_off_a_silent_my_domain_gives_504_and_the_event_is_failed() {
    let proxy = TestProxy::builder()
        .request_timeout("2s")
        .extra_toml(&mapped(false))
        .start()
        .await;
    proxy.sf.hold_token_requests_at(acme::MY_DOMAIN);
    let reply = proxy.login(LOGIN_HOST, &acme_password_form()).await;
    assert_eq!(reply.status, 504);
    assert!(reply.text().contains(acme::MY_DOMAIN));
    let event = proxy.next_event().await;
    assert_eq!(event["action"], "failed");
    assert_eq!(event["status"], 504);
    assert_eq!(proxy.sf.token_requests().len(), 1, "no replay");
}
