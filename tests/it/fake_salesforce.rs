//! The fake Salesforce answers token requests the way Salesforce does,
//! reached directly, without the proxy: when an upgrade test fails, these passing shows the
//! fault is not in the fake.

use http::Method;
use serde_json::json;
use testkit::salesforce::{jwt_public_key_der, sign_jwt_with_fixture_key, token_signature};
use testkit::*;
use tokio::net::TcpStream;

async fn direct(sf: &FakeSalesforce, host: &str) -> HttpConn {
    let tcp = TcpStream::connect(sf.addr()).await.unwrap();
    let tls = tls_connect(tcp, host, sf.ca_pem(), &[b"http/1.1"]).await;
    HttpConn::handshake(tls, Http::H1).await
}

async fn token(sf: &FakeSalesforce, host: &str, body: &str) -> Reply {
    let mut conn = direct(sf, host).await;
    post_form(&mut conn, host, TOKEN_PATH, body).await
}

fn assert_oauth_error(reply: &Reply, error: &str, description: &str) {
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(
        reply.json(),
        json!({"error": error, "error_description": description})
    );
    assert_eq!(
        reply.header("content-type"),
        Some("application/json;charset=UTF-8")
    );
    assert_eq!(reply.header("cache-control"), Some("no-store"));
}

fn cc_form() -> String {
    form(&[
        ("grant_type", "client_credentials"),
        ("client_id", acme::CLIENT_ID),
        ("client_secret", acme::CLIENT_SECRET),
    ])
}

#[tokio::test]
async fn password_grant_at_login_returns_token_for_the_user_with_my_domain_instance_url() {
    let sf = FakeSalesforce::start().await;
    let reply = token(&sf, LOGIN_HOST, &acme_password_form()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.header("content-type"),
        Some("application/json;charset=UTF-8")
    );
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let body = reply.json();
    let id = acme::login_id();
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["instance_url"], "https://acme.my.salesforce.com");
    assert_eq!(body["token_type"], "Bearer");
    assert!(
        body.get("scope").is_none(),
        "password responses carry no scope"
    );
    assert!(body.get("expires_in").is_none());
    let access = body["access_token"].as_str().unwrap();
    assert!(access.starts_with("00D5g000004Acme!"), "{access}");
    let issued_at = body["issued_at"].as_str().unwrap();
    assert_eq!(issued_at.len(), 13, "milliseconds: {issued_at}");
    assert_eq!(
        body["signature"],
        token_signature(acme::CLIENT_SECRET, &id, issued_at).as_str()
    );

    // The token works on the org's instance and reports the user.
    let mut conn = direct(&sf, acme::MY_DOMAIN).await;
    let data = conn
        .get_with_bearer(acme::MY_DOMAIN, "/services/data/v62.0/sobjects", access)
        .await;
    assert_eq!(data.status, 200);
    assert_eq!(data.json()["userId"], acme::USER_ID);
    let req = conn
        .request(
            Method::GET,
            acme::MY_DOMAIN,
            "/services/data/v62.0/sobjects",
        )
        .header("authorization", "Bearer 00D5g000004Acme!AQforged")
        .body(empty())
        .unwrap();
    assert_eq!(conn.send(req).await.status, 401);
}

#[tokio::test]
async fn password_grant_is_refused_with_salesforce_errors() {
    let sf = FakeSalesforce::start().await;
    let wrong_password =
        password_form(acme::CLIENT_ID, acme::CLIENT_SECRET, acme::USERNAME, "nope");
    assert_oauth_error(
        &token(&sf, LOGIN_HOST, &wrong_password).await,
        "invalid_grant",
        "authentication failure",
    );
    let unknown_key = password_form(
        "3MVG9unknown",
        acme::CLIENT_SECRET,
        acme::USERNAME,
        acme::PASSWORD,
    );
    assert_oauth_error(
        &token(&sf, LOGIN_HOST, &unknown_key).await,
        "invalid_client_id",
        "client identifier invalid",
    );
    let wrong_secret = password_form(acme::CLIENT_ID, "wrong", acme::USERNAME, acme::PASSWORD);
    assert_oauth_error(
        &token(&sf, LOGIN_HOST, &wrong_secret).await,
        "invalid_client",
        "invalid client credentials",
    );
    // A production user does not log in at the sandbox login host.
    assert_oauth_error(
        &token(&sf, TEST_HOST, &acme_password_form()).await,
        "invalid_client_id",
        "client identifier invalid",
    );
    // JSON bodies are not a grant Salesforce understands.
    let mut conn = direct(&sf, LOGIN_HOST).await;
    let req = conn
        .request(Method::POST, LOGIN_HOST, TOKEN_PATH)
        .header("content-type", "application/json")
        .body(full(r#"{"grant_type":"password"}"#))
        .unwrap();
    assert_oauth_error(
        &conn.send(req).await,
        "unsupported_grant_type",
        "grant type not supported",
    );
    // The org can block the flow.
    sf.edit(|w| w.org_mut(acme::ORG_ID).allow_password_flow = false);
    assert_oauth_error(
        &token(&sf, LOGIN_HOST, &acme_password_form()).await,
        "invalid_grant",
        "authentication failure",
    );
}

#[tokio::test]
async fn password_parameters_in_the_query_string_are_accepted() {
    let sf = FakeSalesforce::start().await;
    let mut conn = direct(&sf, acme::MY_DOMAIN).await;
    let reply = login_in_query(&mut conn, acme::MY_DOMAIN, &acme_password_form()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let id = format!(
        "https://{}/id/{}/{}",
        acme::MY_DOMAIN,
        acme::ORG_ID,
        acme::USER_ID
    );
    assert_eq!(
        reply.json()["id"],
        id.as_str(),
        "id names the host posted to"
    );
}

#[tokio::test]
async fn password_grant_takes_the_client_from_basic_authentication() {
    let sf = FakeSalesforce::start().await;
    let body = form(&[
        ("grant_type", "password"),
        ("username", acme::USERNAME),
        ("password", acme::PASSWORD),
    ]);
    let send = |authorization: String| {
        let (sf, body) = (&sf, body.clone());
        async move {
            let mut conn = direct(sf, LOGIN_HOST).await;
            let req = conn
                .request(Method::POST, LOGIN_HOST, TOKEN_PATH)
                .header("authorization", authorization)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(full(body))
                .unwrap();
            conn.send(req).await
        }
    };
    let reply = send(basic_auth(acme::CLIENT_ID, acme::CLIENT_SECRET)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.json()["instance_url"],
        "https://acme.my.salesforce.com"
    );
    assert_oauth_error(
        &send(basic_auth(acme::CLIENT_ID, "wrong")).await,
        "invalid_client",
        "invalid client credentials",
    );
}

#[tokio::test]
async fn client_credentials_only_works_at_my_domain_and_runs_as_the_run_as_user() {
    let sf = FakeSalesforce::start().await;
    assert_oauth_error(
        &token(&sf, LOGIN_HOST, &cc_form()).await,
        "invalid_grant",
        "request not supported on this domain",
    );
    let reply = token(&sf, acme::MY_DOMAIN, &cc_form()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    assert_eq!(
        body["id"],
        format!(
            "https://{}/id/{}/{}",
            acme::MY_DOMAIN,
            acme::ORG_ID,
            acme::RUN_AS_USER_ID
        )
        .as_str()
    );
    assert_eq!(body["scope"], acme::CC_SCOPE);
    assert_eq!(body["instance_url"], "https://acme.my.salesforce.com");

    // Basic authentication instead of the body.
    let mut conn = direct(&sf, acme::MY_DOMAIN).await;
    let basic = basic_auth(acme::CLIENT_ID, acme::CLIENT_SECRET);
    let req = conn
        .request(Method::POST, acme::MY_DOMAIN, TOKEN_PATH)
        .header("authorization", basic)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(full("grant_type=client_credentials"))
        .unwrap();
    assert_eq!(conn.send(req).await.status, 200);

    sf.edit(|w| w.org_mut(acme::ORG_ID).app_mut(acme::CLIENT_ID).run_as_user = None);
    assert_oauth_error(
        &token(&sf, acme::MY_DOMAIN, &cc_form()).await,
        "invalid_grant",
        "no client credentials user enabled",
    );
    sf.edit(|w| {
        let app = w.org_mut(acme::ORG_ID).app_mut(acme::CLIENT_ID);
        app.cc_enabled = false;
        app.cc_disabled_error = (
            "unsupported_grant_type".into(),
            "grant type not supported".into(),
        );
    });
    assert_oauth_error(
        &token(&sf, acme::MY_DOMAIN, &cc_form()).await,
        "unsupported_grant_type",
        "grant type not supported",
    );
}

fn jwt_form(claims: serde_json::Value) -> String {
    form(&[
        ("grant_type", salesforce::JWT_BEARER_GRANT),
        ("assertion", &sign_jwt_with_fixture_key(&claims)),
    ])
}

use testkit::salesforce;

#[tokio::test]
async fn jwt_bearer_is_verified_against_the_apps_certificate_and_audience() {
    let sf = FakeSalesforce::start().await;
    let good = json!({"iss": acme::CLIENT_ID, "sub": acme::USERNAME,
                      "aud": "https://login.salesforce.com", "exp": unix_now() + 180});
    let reply = token(&sf, LOGIN_HOST, &jwt_form(good.clone())).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["id"], acme::login_id().as_str());

    let mut wrong_aud = good.clone();
    wrong_aud["aud"] = "https://test.salesforce.com".into();
    assert_oauth_error(
        &token(&sf, LOGIN_HOST, &jwt_form(wrong_aud)).await,
        "invalid_grant",
        "Audience validation failed",
    );
    let mut not_approved = good.clone();
    not_approved["sub"] = acme::RUN_AS_USERNAME.into();
    assert_oauth_error(
        &token(&sf, LOGIN_HOST, &jwt_form(not_approved)).await,
        "invalid_grant",
        "user hasn't approved this consumer",
    );
    let mut expired = good.clone();
    expired["exp"] = (unix_now() - 3600).into();
    assert_eq!(token(&sf, LOGIN_HOST, &jwt_form(expired)).await.status, 400);
    // sfdx-core sends milliseconds: far in the future, accepted.
    let mut millis = good.clone();
    millis["exp"] = (unix_now() * 1000).into();
    assert_eq!(token(&sf, LOGIN_HOST, &jwt_form(millis)).await.status, 200);

    // A signature by another key does not verify.
    let assertion = sign_jwt_with_fixture_key(&good);
    let (input, _) = assertion.rsplit_once('.').unwrap();
    let forged = form(&[
        ("grant_type", salesforce::JWT_BEARER_GRANT),
        ("assertion", &format!("{input}.AAAA")),
    ]);
    assert_oauth_error(
        &token(&sf, LOGIN_HOST, &forged).await,
        "invalid_grant",
        "invalid assertion",
    );
    assert!(DecodedJwt::parse(&assertion)
        .unwrap()
        .verifies_with(&jwt_public_key_der()));
}

#[tokio::test]
async fn refresh_and_unknown_grants_get_salesforce_errors() {
    let sf = FakeSalesforce::start().await;
    let refresh = form(&[
        ("grant_type", "refresh_token"),
        ("client_id", acme::CLIENT_ID),
        ("refresh_token", "5Aep861unknown"),
    ]);
    assert_oauth_error(
        &token(&sf, LOGIN_HOST, &refresh).await,
        "invalid_grant",
        "expired access/refresh token",
    );
    sf.edit(|w| {
        w.org_mut(acme::ORG_ID)
            .app_mut(acme::CLIENT_ID)
            .refresh_tokens
            .push(("5Aep861known".into(), acme::USERNAME.into()))
    });
    let known = refresh.replace("unknown", "known");
    let reply = token(&sf, LOGIN_HOST, &known).await;
    assert_eq!(reply.status, 200);
    assert!(reply.json().get("refresh_token").is_none());
    assert_oauth_error(
        &token(&sf, LOGIN_HOST, "grant_type=authorization_code&code=x").await,
        "unsupported_grant_type",
        "grant type not supported",
    );
}

#[tokio::test]
async fn format_urlencoded_answers_a_form() {
    let sf = FakeSalesforce::start().await;
    let body = format!("{}&format=urlencoded", acme_password_form());
    let reply = token(&sf, LOGIN_HOST, &body).await;
    assert_eq!(reply.status, 200);
    assert!(reply
        .header("content-type")
        .unwrap()
        .starts_with("application/x-www-form-urlencoded"));
    let pairs = salesforce::form_pairs(&reply.body);
    assert!(pairs
        .iter()
        .any(|(k, v)| k == "token_type" && v == "Bearer"));
}

#[tokio::test]
async fn the_fake_records_what_each_token_request_carried_and_answered() {
    let sf = FakeSalesforce::start().await;
    let reply = token(&sf, LOGIN_HOST, &acme_password_form()).await;
    let seen = &sf.token_requests()[0];
    assert_eq!(seen.sni.as_deref(), Some(LOGIN_HOST));
    assert_eq!(seen.host_name(), Some(LOGIN_HOST));
    assert_eq!(seen.body, acme_password_form().as_bytes());
    assert_eq!(seen.param("username").as_deref(), Some(acme::USERNAME));
    assert_eq!(seen.response_status, Some(200));
    assert_eq!(seen.response_body.as_deref(), Some(&reply.body[..]));
    assert_eq!(sf.issued()[0].user_id, acme::USER_ID);
}

#[tokio::test]
async fn token_responses_are_gzip_encoded_for_clients_that_accept_gzip() {
    let sf = FakeSalesforce::start().await;
    let mut conn = direct(&sf, LOGIN_HOST).await;
    let req = conn
        .request(Method::POST, LOGIN_HOST, TOKEN_PATH)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept-encoding", "gzip, deflate")
        .body(full(acme_password_form()))
        .unwrap();
    let reply = conn.send(req).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-encoding"), Some("gzip"));
    // A real decoder (the system's gzip) reads it back to the JSON token response.
    let decoded = gunzip(&reply.body);
    let answer: serde_json::Value = serde_json::from_slice(&decoded).unwrap();
    assert_eq!(answer["token_type"], "Bearer");
    assert!(answer["id"].as_str().unwrap().ends_with(acme::USER_ID));

    // Without Accept-Encoding, plain JSON.
    let reply = token(&sf, LOGIN_HOST, &acme_password_form()).await;
    assert_eq!(reply.header("content-encoding"), None);
    assert_eq!(reply.json()["token_type"], "Bearer");
    // Empty and multi-block inputs decode too.
    assert_eq!(gunzip(&salesforce::gzip(b"")), b"");
    let big = pseudo_random_bytes(200_000, 9);
    assert!(gunzip(&salesforce::gzip(&big)) == big);
}

/// Decode with the system's `gzip -dc`.
fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = std::process::Command::new("gzip")
        .arg("-dc")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run gzip -dc");
    let mut stdin = child.stdin.take().unwrap();
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("gzip output");
    writer.join().unwrap().expect("feed gzip");
    assert!(out.status.success(), "gzip -dc accepts the body");
    out.stdout
}
