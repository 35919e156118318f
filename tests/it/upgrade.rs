//! docs/operating.md, "The upgrade": a password grant for a mapped username becomes a client-credentials
//! login at the org's My Domain. What arrives at Salesforce has no username or password
//! anywhere; everything else the client sent (`format`, `scope`, `Authorization: Basic`) is
//! kept; the client gets Salesforce's client-credentials response unchanged and can use it.

use http::Method;
use testkit::*;

/// `grant_type=client_credentials&client_id=…&client_secret=…` followed by `extra`.
fn client_credentials_body(extra: &[(&str, &str)]) -> String {
    let mut pairs = vec![
        ("grant_type", "client_credentials"),
        ("client_id", acme::CLIENT_ID),
        ("client_secret", acme::CLIENT_SECRET),
    ];
    pairs.extend_from_slice(extra);
    form(&pairs)
}

/// The one token request Salesforce received, which must be a client-credentials login at
/// `my_domain` carrying exactly `body`, in the body, with no query string.
fn assert_upgraded_request(sf: &FakeSalesforce, my_domain: &str, body: &str) -> Recorded {
    let seen = sf.token_requests();
    assert_eq!(
        seen.len(),
        1,
        "Salesforce saw one login, the upgraded one: {:?}",
        seen.iter().map(|r| r.host.clone()).collect::<Vec<_>>()
    );
    let up = seen.into_iter().next().unwrap();
    assert_eq!(up.method, "POST");
    assert_eq!(up.path, TOKEN_PATH);
    assert_eq!(
        up.sni.as_deref(),
        Some(my_domain),
        "TLS names the My Domain"
    );
    assert_eq!(
        up.host_name(),
        Some(my_domain),
        "Host / :authority names the My Domain"
    );
    assert!(
        up.query.as_deref().unwrap_or("").is_empty(),
        "no query string: {:?}",
        up.query
    );
    assert_eq!(String::from_utf8_lossy(&up.body), body);
    if let Some(len) = up.header_values("content-length").first() {
        assert_eq!(
            len.parse::<usize>().unwrap(),
            up.body.len(),
            "Content-Length follows the new body"
        );
    }
    assert_no_password_login_parameters(&up);
    up
}

async fn password_grant_to_login_goes_to_mapped_my_domain(http: Http) {
    let proxy = TestProxy::start(&acme_mapping()).await;
    let mut conn = proxy.intercepted(LOGIN_HOST, http).await;
    let reply = post_form(&mut conn, LOGIN_HOST, TOKEN_PATH, &acme_password_form()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    let up = assert_upgraded_request(&proxy.sf, acme::MY_DOMAIN, &client_credentials_body(&[]));
    assert_not_carried(&up, acme::PASSWORD, "the password");
    assert_not_carried(&up, acme::USERNAME, "the username");

    // The client gets Salesforce's client-credentials response as Salesforce sent it.
    assert_eq!(Some(&reply.body[..]), up.response_body.as_deref());
    assert_eq!(
        reply.header("content-type"),
        Some("application/json;charset=UTF-8")
    );
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let token = reply.json();
    assert_eq!(
        token["id"],
        format!(
            "https://{}/id/{}/{}",
            acme::MY_DOMAIN,
            acme::ORG_ID,
            acme::RUN_AS_USER_ID
        )
        .as_str(),
        "a client-credentials token is the Run As user's"
    );
    assert_eq!(token["scope"], acme::CC_SCOPE);
    assert_eq!(token["instance_url"], "https://acme.my.salesforce.com");

    // ... and can use it at its instance_url.
    let access = token["access_token"].as_str().unwrap();
    let mut api = proxy.intercepted(acme::MY_DOMAIN, http).await;
    let data = api
        .get_with_bearer(
            acme::MY_DOMAIN,
            "/services/data/v62.0/sobjects/Account",
            access,
        )
        .await;
    assert_eq!(data.status, 200, "{}", data.text());
    assert_eq!(data.json()["userId"], acme::RUN_AS_USER_ID);
    assert_eq!(data.json()["organizationId"], acme::ORG_ID);

    let event = proxy.next_event().await;
    assert_eq!(event["action"], "upgraded");
    assert_eq!(event["flow"], "client_credentials");
    assert_eq!(event["host"], LOGIN_HOST);
    assert_eq!(event["target_host"], acme::MY_DOMAIN);
    assert_eq!(event["grant"], "password");
    assert_eq!(event["client_id"], acme::CLIENT_ID);
    assert_eq!(event["username"], acme::USERNAME);
    assert_eq!(event["status"], 200);
}

#[tokio::test]
async fn password_grant_to_login_host_goes_to_mapped_my_domain_over_http1() {
    password_grant_to_login_goes_to_mapped_my_domain(Http::H1).await;
}

#[tokio::test]
async fn password_grant_to_login_host_goes_to_mapped_my_domain_over_http2() {
    password_grant_to_login_goes_to_mapped_my_domain(Http::H2).await;
}

#[tokio::test]
async fn password_grant_to_an_unmapped_my_domain_is_upgraded_in_place() {
    let proxy = TestProxy::start("").await;
    let reply = proxy.login(acme::MY_DOMAIN, &acme_password_form()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let up = assert_upgraded_request(&proxy.sf, acme::MY_DOMAIN, &client_credentials_body(&[]));
    assert_eq!(Some(&reply.body[..]), up.response_body.as_deref());
    assert!(reply.json()["id"]
        .as_str()
        .unwrap()
        .ends_with(acme::RUN_AS_USER_ID));

    let event = proxy.next_event().await;
    assert_eq!(event["action"], "upgraded");
    assert_eq!(event["host"], acme::MY_DOMAIN);
    assert_eq!(event["target_host"], acme::MY_DOMAIN);
}

#[tokio::test]
async fn password_grant_to_test_host_goes_to_the_mapped_sandbox_my_domain() {
    let proxy = TestProxy::start(&credentials_toml(acme_qa::USERNAME, acme_qa::MY_DOMAIN)).await;
    let body = acme_qa_password_form();
    let reply = proxy.login(TEST_HOST, &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let expected = form(&[
        ("grant_type", "client_credentials"),
        ("client_id", acme_qa::CLIENT_ID),
        ("client_secret", acme_qa::CLIENT_SECRET),
    ]);
    assert_upgraded_request(&proxy.sf, acme_qa::MY_DOMAIN, &expected);
    assert!(reply.json()["id"]
        .as_str()
        .unwrap()
        .ends_with(acme_qa::RUN_AS_USER_ID));
    assert_eq!(proxy.next_event().await["target_host"], acme_qa::MY_DOMAIN);
}

#[tokio::test]
async fn query_string_parameters_move_into_the_body() {
    let proxy = TestProxy::start(&acme_mapping()).await;
    let mut conn = proxy.intercepted(LOGIN_HOST, Http::H1).await;
    // Tutorials put the whole login in the URL; here the secret and `format` are in the body.
    let query = form(&[
        ("grant_type", "password"),
        ("client_id", acme::CLIENT_ID),
        ("username", acme::USERNAME),
        ("password", acme::PASSWORD),
    ]);
    let body = form(&[("client_secret", acme::CLIENT_SECRET), ("format", "json")]);
    let reply = post_form(
        &mut conn,
        LOGIN_HOST,
        &format!("{TOKEN_PATH}?{query}"),
        &body,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let up = assert_upgraded_request(
        &proxy.sf,
        acme::MY_DOMAIN,
        &client_credentials_body(&[("format", "json")]),
    );
    assert_not_carried(&up, acme::PASSWORD, "the password");
}

#[tokio::test]
async fn a_login_entirely_in_the_query_string_is_upgraded_with_an_empty_query() {
    let proxy = TestProxy::start(&acme_mapping()).await;
    let mut conn = proxy.intercepted(LOGIN_HOST, Http::H1).await;
    let reply = login_in_query(&mut conn, LOGIN_HOST, &acme_password_form()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let up = assert_upgraded_request(&proxy.sf, acme::MY_DOMAIN, &client_credentials_body(&[]));
    assert_eq!(
        up.header_values("content-type"),
        vec!["application/x-www-form-urlencoded"],
        "the new body is declared as a form"
    );
}

#[tokio::test]
async fn authorization_basic_header_is_kept_as_sent() {
    let proxy = TestProxy::start(&acme_mapping()).await;
    let basic = basic_auth(acme::CLIENT_ID, acme::CLIENT_SECRET);
    let mut conn = proxy.intercepted(LOGIN_HOST, Http::H1).await;
    let body = form(&[
        ("grant_type", "password"),
        ("client_id", acme::CLIENT_ID),
        ("username", acme::USERNAME),
        ("password", acme::PASSWORD),
    ]);
    let req = conn
        .request(Method::POST, LOGIN_HOST, TOKEN_PATH)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", &basic)
        .body(full(body))
        .unwrap();
    let reply = conn.send(req).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let expected = form(&[
        ("grant_type", "client_credentials"),
        ("client_id", acme::CLIENT_ID),
    ]);
    let up = assert_upgraded_request(&proxy.sf, acme::MY_DOMAIN, &expected);
    assert_eq!(up.header_values("authorization"), vec![basic.as_str()]);
    assert_eq!(proxy.next_event().await["action"], "upgraded");
}

#[tokio::test]
async fn a_client_id_in_basic_auth_selects_the_credentials_entry_for_that_app() {
    // The entry is for the integration app only; the client names its app in Basic alone.
    let entry = format!(
        "{}\nclient_id = {}\n\n",
        acme_mapping().trim_end(),
        testkit::proxy::toml_str(acme::CLIENT_ID)
    );
    let proxy = TestProxy::start(&entry).await;
    let basic = basic_auth(acme::CLIENT_ID, acme::CLIENT_SECRET);
    let body = form(&[
        ("grant_type", "password"),
        ("username", acme::USERNAME),
        ("password", acme::PASSWORD),
    ]);
    let mut conn = proxy.intercepted(LOGIN_HOST, Http::H1).await;
    let req = conn
        .request(Method::POST, LOGIN_HOST, TOKEN_PATH)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", &basic)
        .body(full(body))
        .unwrap();
    let reply = conn.send(req).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let up = assert_upgraded_request(
        &proxy.sf,
        acme::MY_DOMAIN,
        &form(&[("grant_type", "client_credentials")]),
    );
    assert_eq!(up.header_values("authorization"), vec![basic.as_str()]);
    let event = proxy.next_event().await;
    assert_eq!(
        (&event["action"], &event["client_id"]),
        (&"upgraded".into(), &acme::CLIENT_ID.into()),
        "{event}"
    );
}

#[tokio::test]
async fn format_and_scope_are_kept_and_salesforce_answers_in_that_format() {
    let proxy = TestProxy::start(&acme_mapping()).await;
    let body = format!(
        "{}&{}",
        acme_password_form(),
        form(&[("format", "urlencoded"), ("scope", "api id")])
    );
    let reply = proxy.login(LOGIN_HOST, &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_upgraded_request(
        &proxy.sf,
        acme::MY_DOMAIN,
        &client_credentials_body(&[("format", "urlencoded"), ("scope", "api id")]),
    );
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("application/x-www-form-urlencoded"),
        "the client gets the format it asked for: {:?}",
        reply.header("content-type")
    );
    let answer = testkit::salesforce::form_pairs(&reply.body);
    assert!(answer
        .iter()
        .any(|(k, v)| k == "token_type" && v == "Bearer"));
}

#[tokio::test]
async fn other_headers_of_the_login_reach_the_my_domain_unchanged() {
    let proxy = TestProxy::start(&acme_mapping()).await;
    let mut conn = proxy.intercepted(LOGIN_HOST, Http::H1).await;
    let req = conn
        .request(Method::POST, LOGIN_HOST, TOKEN_PATH)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .header("user-agent", "simple-salesforce/1.12.10")
        .header("x-sfdc-trace", "a, b")
        .body(full(acme_password_form()))
        .unwrap();
    assert_eq!(conn.send(req).await.status, 200);
    let up = assert_upgraded_request(&proxy.sf, acme::MY_DOMAIN, &client_credentials_body(&[]));
    assert_eq!(up.header_values("accept"), vec!["application/json"]);
    assert_eq!(
        up.header_values("user-agent"),
        vec!["simple-salesforce/1.12.10"]
    );
    assert_eq!(up.header_values("x-sfdc-trace"), vec!["a, b"]);
}

#[tokio::test]
async fn upgrade_to_an_http1_only_salesforce_declares_the_new_body_length() {
    let up = Upstreams::with_salesforce(FakeSalesforce::start_http1_only().await).await;
    let proxy = TestProxy::builder()
        .extra_toml(&acme_mapping())
        .start_with(up)
        .await;
    let mut conn = proxy.intercepted(LOGIN_HOST, Http::H2).await;
    let reply = post_form(&mut conn, LOGIN_HOST, TOKEN_PATH, &acme_password_form()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let expected = client_credentials_body(&[]);
    let up = assert_upgraded_request(&proxy.sf, acme::MY_DOMAIN, &expected);
    assert_eq!(up.version, "HTTP/1.1");
    assert_eq!(
        up.header_values("content-length"),
        vec![expected.len().to_string().as_str()],
        "an HTTP/1.1 hop declares the rewritten body's length"
    );
}
