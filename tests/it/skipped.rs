//! docs/operating.md, "The upgrade": a token request grantshift cannot parse faithfully (body over `max_token_body`,
//! compressed, not a form, bad percent-encoding, duplicate `grant_type` or credentials, no
//! client secret for client credentials, JWT without a client_id) is forwarded untouched to
//! the host it was sent to, and recorded `skipped` with a reason. Every case here would
//! otherwise be upgraded (the username is mapped), and the bytes Salesforce receives are
//! compared with the bytes the client sent. A form without a Content-Type is still a form.

use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use std::convert::Infallible;
use testkit::*;

/// Send a token request to `host` through the proxy as raw as HTTP allows: the given
/// headers, `path_and_query`, and exactly `body`.
async fn send_token_request(
    proxy: &TestProxy,
    http: Http,
    host: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: ReqBody,
) -> Reply {
    let mut conn = proxy.intercepted(host, http).await;
    let mut req = conn.request(Method::POST, host, path_and_query);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    conn.send(req.body(body).unwrap()).await
}

/// A body in small chunks with no length known up front (chunked on HTTP/1.1).
fn streamed(bytes: &[u8]) -> ReqBody {
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = bytes
        .chunks(16)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    BodyExt::boxed(StreamBody::new(futures_util::stream::iter(frames)))
}

/// Salesforce got exactly what was sent, at the host it was sent to; the client got exactly
/// Salesforce's answer; the event says `skipped` with `reason`.
async fn assert_skipped_untouched(
    proxy: &TestProxy,
    reply: &Reply,
    host: &str,
    query: Option<&str>,
    sent: &[u8],
    reason: &str,
) {
    let seen = proxy.sf.token_requests();
    assert_eq!(seen.len(), 1);
    let up = &seen[0];
    assert_eq!(
        up.host_name(),
        Some(host),
        "forwarded to the host it was sent to"
    );
    assert_eq!(up.query.as_deref(), query, "query string untouched");
    assert!(
        up.body == sent,
        "body untouched: sent {:?}, Salesforce got {:?}",
        String::from_utf8_lossy(sent),
        String::from_utf8_lossy(&up.body)
    );
    assert_eq!(reply.status.as_u16(), up.response_status.unwrap());
    assert_eq!(Some(&reply.body[..]), up.response_body.as_deref());
    let event = proxy.next_event().await;
    assert_eq!(event["action"], "skipped", "{event}");
    assert_eq!(event["reason"], reason, "{event}");
    assert_eq!(event["host"], host);
    assert_eq!(event["status"], reply.status.as_u16());
}

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

/// The common case: `body` sent as a form over HTTP/1.1 to login.salesforce.com at
/// `path_and_query` is forwarded untouched (query string included) and recorded `skipped`
/// with `reason`. Returns the client's reply for further checks.
async fn form_is_skipped(
    proxy: &TestProxy,
    path_and_query: &str,
    body: &str,
    reason: &str,
) -> Reply {
    let reply = send_token_request(
        proxy,
        Http::H1,
        LOGIN_HOST,
        path_and_query,
        &[FORM],
        full(body.to_owned()),
    )
    .await;
    let query = path_and_query.split_once('?').map(|(_, q)| q);
    assert_skipped_untouched(proxy, &reply, LOGIN_HOST, query, body.as_bytes(), reason).await;
    reply
}

async fn mapped_proxy_with_limit(max_token_body: usize) -> TestProxy {
    TestProxy::builder()
        .max_token_body(max_token_body)
        .extra_toml(&acme_mapping())
        .start()
        .await
}

#[tokio::test]
async fn body_over_max_token_body_with_content_length_is_forwarded_untouched() {
    let proxy = mapped_proxy_with_limit(64).await;
    let body = acme_password_form();
    assert!(body.len() > 64);
    let reply = form_is_skipped(&proxy, TOKEN_PATH, &body, "body_too_large").await;
    assert_eq!(
        reply.status,
        200,
        "the password login still works: {}",
        reply.text()
    );
}

async fn streamed_body_over_max_token_body_is_forwarded_untouched(http: Http) {
    let proxy = mapped_proxy_with_limit(64).await;
    let body = acme_password_form();
    let reply = send_token_request(
        &proxy,
        http,
        LOGIN_HOST,
        TOKEN_PATH,
        &[FORM],
        streamed(body.as_bytes()),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_skipped_untouched(
        &proxy,
        &reply,
        LOGIN_HOST,
        None,
        body.as_bytes(),
        "body_too_large",
    )
    .await;
}

#[tokio::test]
async fn streamed_body_over_max_token_body_is_forwarded_untouched_over_http1() {
    streamed_body_over_max_token_body_is_forwarded_untouched(Http::H1).await;
}

#[tokio::test]
async fn streamed_body_over_max_token_body_is_forwarded_untouched_over_http2() {
    streamed_body_over_max_token_body_is_forwarded_untouched(Http::H2).await;
}

#[tokio::test]
async fn gzip_encoded_body_is_forwarded_untouched() {
    let proxy = mapped_proxy_with_limit(65536).await;
    // Not grantshift's to decode: any bytes will do, including ones that are not UTF-8.
    let mut body = vec![0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff];
    body.extend_from_slice(&pseudo_random_bytes(200, 5));
    let reply = send_token_request(
        &proxy,
        Http::H1,
        LOGIN_HOST,
        TOKEN_PATH,
        &[FORM, ("content-encoding", "gzip")],
        full(body.clone()),
    )
    .await;
    assert_skipped_untouched(&proxy, &reply, LOGIN_HOST, None, &body, "compressed").await;
    let up = &proxy.sf.token_requests()[0];
    assert_eq!(up.header_values("content-encoding"), vec!["gzip"]);
    assert_eq!(
        up.header_values("content-type"),
        vec!["application/x-www-form-urlencoded"]
    );
}

#[tokio::test]
async fn json_body_is_forwarded_untouched() {
    let proxy = mapped_proxy_with_limit(65536).await;
    let body = serde_json::to_vec(&serde_json::json!({
        "grant_type": "password", "client_id": acme::CLIENT_ID,
        "client_secret": acme::CLIENT_SECRET, "username": acme::USERNAME,
        "password": acme::PASSWORD,
    }))
    .unwrap();
    let reply = send_token_request(
        &proxy,
        Http::H1,
        LOGIN_HOST,
        TOKEN_PATH,
        &[("content-type", "application/json")],
        full(body.clone()),
    )
    .await;
    assert_eq!(reply.status, 400, "Salesforce itself refuses JSON");
    assert_eq!(reply.json()["error"], "unsupported_grant_type");
    assert_skipped_untouched(&proxy, &reply, LOGIN_HOST, None, &body, "not_form").await;
}

#[tokio::test]
async fn bad_percent_encoding_in_the_body_is_forwarded_untouched() {
    let proxy = mapped_proxy_with_limit(65536).await;
    let body = format!("{}&x=%zz", acme_password_form());
    form_is_skipped(&proxy, TOKEN_PATH, &body, "bad_encoding").await;
}

#[tokio::test]
async fn bad_percent_encoding_in_the_query_string_is_forwarded_untouched() {
    let proxy = mapped_proxy_with_limit(65536).await;
    let body = acme_password_form();
    form_is_skipped(
        &proxy,
        &format!("{TOKEN_PATH}?state=%zz"),
        &body,
        "bad_encoding",
    )
    .await;
}

#[tokio::test]
async fn percent_encoded_bytes_that_are_not_utf8_are_forwarded_untouched() {
    let proxy = mapped_proxy_with_limit(65536).await;
    let body = format!("{}&x=%ff%fe", acme_password_form());
    form_is_skipped(&proxy, TOKEN_PATH, &body, "bad_encoding").await;
}

#[tokio::test]
async fn duplicate_grant_type_is_forwarded_untouched() {
    let proxy = mapped_proxy_with_limit(65536).await;
    let body = format!("grant_type=password&{}", acme_password_form());
    form_is_skipped(&proxy, TOKEN_PATH, &body, "duplicate_grant_type").await;
}

#[tokio::test]
async fn duplicate_grant_type_across_query_and_body_is_forwarded_untouched() {
    let proxy = mapped_proxy_with_limit(65536).await;
    let body = acme_password_form();
    form_is_skipped(
        &proxy,
        &format!("{TOKEN_PATH}?grant_type=client_credentials"),
        &body,
        "duplicate_grant_type",
    )
    .await;
}

#[tokio::test]
async fn duplicate_username_is_forwarded_untouched() {
    let proxy = mapped_proxy_with_limit(65536).await;
    let body = format!("{}&username=reports%40acme.com", acme_password_form());
    form_is_skipped(&proxy, TOKEN_PATH, &body, "duplicate_parameter").await;
}

#[tokio::test]
async fn password_grant_without_client_secret_or_basic_auth_is_forwarded_untouched() {
    let proxy = mapped_proxy_with_limit(65536).await;
    let body = form(&[
        ("grant_type", "password"),
        ("client_id", acme::CLIENT_ID),
        ("username", acme::USERNAME),
        ("password", acme::PASSWORD),
    ]);
    form_is_skipped(&proxy, TOKEN_PATH, &body, "no_client_secret").await;
}

#[tokio::test]
async fn jwt_upgrade_without_client_id_is_forwarded_untouched() {
    let proxy = TestProxy::start(&jwt_credentials_toml(
        acme::USERNAME,
        Some(acme::MY_DOMAIN),
        "jwt-app.pkcs8.pem",
    ))
    .await;
    let body = form(&[
        ("grant_type", "password"),
        ("client_secret", acme::CLIENT_SECRET),
        ("username", acme::USERNAME),
        ("password", acme::PASSWORD),
    ]);
    form_is_skipped(&proxy, TOKEN_PATH, &body, "missing_client_id").await;
}

#[tokio::test]
async fn username_longer_than_salesforce_allows_is_forwarded_untouched() {
    let proxy = mapped_proxy_with_limit(65536).await;
    // 81 characters: one more than a Salesforce username may have.
    let username = format!("{}@acme.com", "i".repeat(72));
    assert_eq!(username.chars().count(), 81);
    let body = password_form(
        acme::CLIENT_ID,
        acme::CLIENT_SECRET,
        &username,
        acme::PASSWORD,
    );
    let reply = send_token_request(
        &proxy,
        Http::H1,
        LOGIN_HOST,
        TOKEN_PATH,
        &[FORM],
        full(body.clone()),
    )
    .await;
    assert_skipped_untouched(
        &proxy,
        &reply,
        LOGIN_HOST,
        None,
        body.as_bytes(),
        "username_too_long",
    )
    .await;
    let event = &proxy.events_in_file()[0];
    assert!(event.get("username").is_none(), "{event}");
    assert_eq!(event["oversized"], serde_json::json!({"username": 81}));
    assert_eq!(event["client_id"], acme::CLIENT_ID);
}

#[tokio::test]
async fn basic_auth_naming_another_app_than_the_form_is_forwarded_untouched() {
    let proxy = mapped_proxy_with_limit(65536).await;
    let basic = basic_auth(acme::OTHER_CLIENT_ID, acme::CLIENT_SECRET);
    let body = acme_password_form();
    let reply = send_token_request(
        &proxy,
        Http::H1,
        LOGIN_HOST,
        TOKEN_PATH,
        &[FORM, ("authorization", &basic)],
        full(body.clone()),
    )
    .await;
    assert_skipped_untouched(
        &proxy,
        &reply,
        LOGIN_HOST,
        None,
        body.as_bytes(),
        "client_id_mismatch",
    )
    .await;
    assert_eq!(
        proxy.sf.token_requests()[0].header_values("authorization"),
        vec![basic.as_str()]
    );
}

#[tokio::test]
async fn missing_content_type_counts_as_a_form_and_is_upgraded() {
    let proxy = mapped_proxy_with_limit(65536).await;
    let reply = send_token_request(
        &proxy,
        Http::H1,
        LOGIN_HOST,
        TOKEN_PATH,
        &[],
        full(acme_password_form()),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = proxy.sf.token_requests();
    assert_eq!(seen[0].host_name(), Some(acme::MY_DOMAIN));
    assert_eq!(
        seen[0].param("grant_type").as_deref(),
        Some("client_credentials")
    );
    assert_eq!(proxy.next_event().await["action"], "upgraded");
}

#[tokio::test]
async fn form_content_type_with_charset_is_upgraded() {
    let proxy = mapped_proxy_with_limit(65536).await;
    let reply = send_token_request(
        &proxy,
        Http::H1,
        LOGIN_HOST,
        TOKEN_PATH,
        &[(
            "content-type",
            "application/x-www-form-urlencoded; charset=UTF-8",
        )],
        full(acme_password_form()),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        proxy.sf.token_requests()[0].host_name(),
        Some(acme::MY_DOMAIN)
    );
    assert_eq!(proxy.next_event().await["action"], "upgraded");
}

#[tokio::test]
async fn streamed_body_under_max_token_body_is_upgraded() {
    let proxy = mapped_proxy_with_limit(65536).await;
    let reply = send_token_request(
        &proxy,
        Http::H1,
        LOGIN_HOST,
        TOKEN_PATH,
        &[FORM],
        streamed(acme_password_form().as_bytes()),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let up = &proxy.sf.token_requests()[0];
    assert_eq!(up.host_name(), Some(acme::MY_DOMAIN));
    assert_eq!(
        up.param("grant_type").as_deref(),
        Some("client_credentials")
    );
    assert_eq!(proxy.next_event().await["action"], "upgraded");
}

#[tokio::test]
async fn body_exactly_at_max_token_body_is_upgraded() {
    let body = acme_password_form();
    let proxy = mapped_proxy_with_limit(body.len()).await;
    let reply = proxy.login(LOGIN_HOST, &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(proxy.next_event().await["action"], "upgraded");
}
