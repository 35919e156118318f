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

// The SOAP API's login side (testkit/src/salesforce/soap.rs), reached directly.

const SOAP_ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const PARTNER: &str = "urn:partner.soap.sforce.com";
const ENTERPRISE: &str = "urn:enterprise.soap.sforce.com";
const ACME_ORG15: &str = "00D5g000004Acme";

/// `POST https://host/path` with a SOAP 1.1 body (`Content-Type: text/xml; charset=UTF-8`).
async fn soap(sf: &FakeSalesforce, host: &str, path: &str, envelope: &str) -> Reply {
    let mut conn = direct(sf, host).await;
    let req = conn
        .request(Method::POST, host, path)
        .header("content-type", "text/xml; charset=UTF-8")
        .header("soapaction", "\"\"")
        .body(full(envelope.to_string()))
        .unwrap();
    conn.send(req).await
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The envelope prefix styles clients use: `se:` (jsforce), `soapenv:` with optional headers
/// (WSC, simple-salesforce), `env:` with a prefixed operation (simple-salesforce), a default
/// namespace.
fn login_envelope(style: usize, ns: &str, username: &str, password: &str) -> String {
    let (u, p) = (xml_escape(username), xml_escape(password));
    match style {
        0 => format!(
            "<se:Envelope xmlns:se=\"{SOAP_ENV}\"><se:Header/><se:Body><login xmlns=\"{ns}\">\
             <username>{u}</username><password>{p}</password></login></se:Body></se:Envelope>"
        ),
        1 => format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope xmlns:soapenv=\"{SOAP_ENV}\" \
             xmlns:urn=\"{ns}\"><soapenv:Header><urn:CallOptions><urn:client>RestForce</urn:client>\
             </urn:CallOptions><urn:LoginScopeHeader><urn:organizationId>{ACME_ORG15}</urn:organizationId>\
             </urn:LoginScopeHeader></soapenv:Header><soapenv:Body><urn:login><urn:username>{u}</urn:username>\
             <urn:password>{p}</urn:password></urn:login></soapenv:Body></soapenv:Envelope>"
        ),
        2 => format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\" ?>\n<env:Envelope xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\"\n \
             xmlns:env=\"{SOAP_ENV}\">\n  <env:Body>\n    <n1:login xmlns:n1=\"{ns}\">\n      \
             <n1:username>{u}</n1:username>\n      <n1:password>{p}</n1:password>\n    </n1:login>\n  \
             </env:Body>\n</env:Envelope>"
        ),
        _ => format!(
            "<Envelope xmlns=\"{SOAP_ENV}\"><Body><login xmlns=\"{ns}\"><username>{u}</username>\
             <password>{p}</password></login></Body></Envelope>"
        ),
    }
}

fn acme_soap_password() -> String {
    format!("{}{}", acme::PASSWORD, acme::SECURITY_TOKEN)
}

/// A call with a `SessionHeader` (partner namespace).
fn session_envelope(session: &str, op_xml: &str) -> String {
    format!(
        "<soapenv:Envelope xmlns:soapenv=\"{SOAP_ENV}\"><soapenv:Header><SessionHeader xmlns=\"{PARTNER}\">\
         <sessionId>{session}</sessionId></SessionHeader></soapenv:Header><soapenv:Body>{op_xml}\
         </soapenv:Body></soapenv:Envelope>"
    )
}

fn get_user_info(session: &str) -> String {
    session_envelope(session, &format!("<getUserInfo xmlns=\"{PARTNER}\"/>"))
}

/// The text of the first `<name>` element.
fn element<'a>(xml: &'a str, name: &str) -> &'a str {
    let open = format!("<{name}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no <{name}> in {xml}"))
        + open.len();
    let end = xml[start..].find('<').unwrap() + start;
    &xml[start..end]
}

fn assert_soap_ok(reply: &Reply) -> String {
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.header("content-type"),
        Some("text/xml; charset=utf-8")
    );
    reply.text()
}

/// A partner (or enterprise) API fault with `code` and `message`, in Salesforce's shape.
fn expected_fault(fault_ns: &str, fault: &str, code: &str, message: &str) -> String {
    format!(
        "<soapenv:Envelope xmlns:soapenv=\"{SOAP_ENV}\" xmlns:sf=\"{fault_ns}\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><soapenv:Body><soapenv:Fault>\
         <faultcode>sf:{code}</faultcode><faultstring>{code}: {message}</faultstring><detail>\
         <sf:{fault} xsi:type=\"sf:{fault}\"><sf:exceptionCode>{code}</sf:exceptionCode>\
         <sf:exceptionMessage>{message}</sf:exceptionMessage></sf:{fault}></detail></soapenv:Fault>\
         </soapenv:Body></soapenv:Envelope>"
    )
}

const PARTNER_FAULTS: &str = "urn:fault.partner.soap.sforce.com";
const INVALID_LOGIN: &str = "Invalid username, password, security token; or user locked out.";
const INVALID_SESSION: &str = "Invalid Session ID found in SessionHeader: Illegal Session";

fn assert_fault(reply: &Reply, expected: &str) {
    assert_eq!(reply.status, 500, "{}", reply.text());
    assert_eq!(
        reply.header("content-type"),
        Some("text/xml; charset=utf-8")
    );
    assert_eq!(reply.text(), expected);
}

fn assert_invalid_session(reply: &Reply) {
    assert_fault(
        reply,
        &expected_fault(
            PARTNER_FAULTS,
            "InvalidSessionIdFault",
            "INVALID_SESSION_ID",
            INVALID_SESSION,
        ),
    );
}

/// `login()` of the acme integration user at login.salesforce.com: the session id.
async fn acme_soap_login(sf: &FakeSalesforce) -> String {
    let reply = soap(
        sf,
        LOGIN_HOST,
        "/services/Soap/u/62.0",
        &login_envelope(0, PARTNER, acme::USERNAME, &acme_soap_password()),
    )
    .await;
    element(&assert_soap_ok(&reply), "sessionId").to_string()
}

async fn rest_status(sf: &FakeSalesforce, token: &str) -> (u16, Option<serde_json::Value>) {
    let mut conn = direct(sf, acme::MY_DOMAIN).await;
    let reply = conn
        .get_with_bearer(acme::MY_DOMAIN, "/services/data/v62.0/sobjects", token)
        .await;
    let body = (reply.status == 200).then(|| reply.json());
    (reply.status.as_u16(), body)
}

async fn cc_token(sf: &FakeSalesforce) -> serde_json::Value {
    let reply = token(sf, acme::MY_DOMAIN, &cc_form()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

#[tokio::test]
async fn soap_login_answers_partner_and_enterprise_whatever_the_envelope_prefixes() {
    let sf = FakeSalesforce::start().await;
    for (letter, ns) in [("u", PARTNER), ("c", ENTERPRISE)] {
        for style in 0..4 {
            let path = format!("/services/Soap/{letter}/62.0");
            let envelope = login_envelope(style, ns, acme::USERNAME, &acme_soap_password());
            let text = assert_soap_ok(&soap(&sf, LOGIN_HOST, &path, &envelope).await);
            let what = format!("{letter} style {style}: {text}");
            assert!(
                text.contains(&format!("xmlns=\"{ns}\""))
                    && text.contains("<loginResponse><result>"),
                "{what}"
            );
            let base = "https://acme.my.salesforce.com/services/Soap";
            let fields = [
                format!("<metadataServerUrl>{base}/m/62.0/{ACME_ORG15}</metadataServerUrl>"),
                "<passwordExpired>false</passwordExpired>".into(),
                "<sandbox>false</sandbox>".into(),
                format!("<serverUrl>{base}/{letter}/62.0/{ACME_ORG15}</serverUrl>"),
                "<sessionId>".into(),
                format!("<userId>{}</userId>", acme::USER_ID),
                "<userInfo>".into(),
            ];
            let at: Vec<usize> = fields
                .iter()
                .map(|f| {
                    text.find(f.as_str())
                        .unwrap_or_else(|| panic!("{f} missing: {what}"))
                })
                .collect();
            assert!(
                at.windows(2).all(|w| w[0] < w[1]),
                "result fields in order: {what}"
            );
            let info = &text[text.find("<userInfo>").unwrap()..];
            for f in [
                format!("<organizationId>{}</organizationId>", acme::ORG_ID),
                "<organizationName>Acme</organizationName>".into(),
                "<profileId>00e".into(),
                "<roleId xsi:nil=\"true\"/>".into(),
                "<sessionSecondsValid>7200</sessionSecondsValid>".into(),
                format!("<userEmail>{}</userEmail>", acme::USERNAME),
                "<userFullName>Integration User</userFullName>".into(),
                format!("<userId>{}</userId>", acme::USER_ID),
                "<userLanguage>en_US</userLanguage>".into(),
                "<userLocale>en_US</userLocale>".into(),
                format!("<userName>{}</userName>", acme::USERNAME),
                "<userTimeZone>".into(),
                "<userType>Standard</userType>".into(),
                "<userUiSkin>Theme3</userUiSkin>".into(),
                "<currencySymbol>$</currencySymbol>".into(),
            ] {
                assert!(info.contains(&f), "{f} missing in userInfo: {what}");
            }
            // The session is a token of the org: REST takes it as a Bearer token.
            let session = element(&text, "sessionId");
            assert!(session.starts_with(&format!("{ACME_ORG15}!")), "{session}");
            let (status, body) = rest_status(&sf, session).await;
            assert_eq!(status, 200, "{what}");
            assert_eq!(body.unwrap()["userId"], acme::USER_ID);
        }
    }
    let issued = sf.issued();
    assert_eq!(issued.len(), 8);
    assert!(issued.iter().all(|i| i.grant == "soap_login"));

    // XML-escaped credentials; a sandbox user at test.salesforce.com, through its My Domain.
    sf.edit(|w| {
        let org = w.org_mut(acme_qa::ORG_ID);
        let id = org.add_user("odd@acme.com.qa", "pw&<\"odd\">");
        let user = org.users.iter_mut().find(|u| u.user_id == id).unwrap();
        user.security_token = Some("T&K'n".into());
    });
    let envelope = login_envelope(1, PARTNER, "odd@acme.com.qa", "pw&<\"odd\">T&K'n");
    let text = assert_soap_ok(&soap(&sf, TEST_HOST, "/services/Soap/u/61.0", &envelope).await);
    assert_eq!(element(&text, "sandbox"), "true");
    assert_eq!(
        element(&text, "serverUrl"),
        "https://acme--qa.sandbox.my.salesforce.com/services/Soap/u/61.0/00D7e000000Acme"
    );
    // Not at the production login host.
    let at_login = soap(&sf, LOGIN_HOST, "/services/Soap/u/61.0", &envelope).await;
    assert_eq!(at_login.status, 500);
}

#[tokio::test]
async fn soap_login_with_wrong_credentials_is_an_invalid_login_fault() {
    let sf = FakeSalesforce::start().await;
    let partner_fault =
        expected_fault(PARTNER_FAULTS, "LoginFault", "INVALID_LOGIN", INVALID_LOGIN);
    let without_token = acme::PASSWORD.to_string();
    let wrong_token = format!("{}TOKEN-wrong", acme::PASSWORD);
    let token_only = acme::SECURITY_TOKEN.to_string();
    for (username, password) in [
        (acme::USERNAME, wrong_token.as_str()),
        (acme::USERNAME, without_token.as_str()),
        (acme::USERNAME, token_only.as_str()),
        ("nobody@acme.com", acme_soap_password().as_str()),
    ] {
        let envelope = login_envelope(0, PARTNER, username, password);
        let reply = soap(&sf, LOGIN_HOST, "/services/Soap/u/62.0", &envelope).await;
        assert_fault(&reply, &partner_fault);
    }
    let envelope = login_envelope(2, ENTERPRISE, acme::USERNAME, &wrong_token);
    let reply = soap(&sf, acme::MY_DOMAIN, "/services/Soap/c/62.0", &envelope).await;
    assert_fault(
        &reply,
        &expected_fault(
            "urn:fault.enterprise.soap.sforce.com",
            "LoginFault",
            "INVALID_LOGIN",
            INVALID_LOGIN,
        ),
    );
    // The OAuth password grant still takes the password alone.
    assert_eq!(
        token(&sf, LOGIN_HOST, &acme_password_form()).await.status,
        200
    );
    assert!(sf.issued().iter().all(|i| i.grant != "soap_login"));
}

#[tokio::test]
async fn soap_login_from_api_65_or_in_an_org_that_disabled_it_is_an_invalid_operation() {
    let sf = FakeSalesforce::start().await;
    let good = acme_soap_password();
    for version in ["65.0", "66.0"] {
        let envelope = login_envelope(3, PARTNER, acme::USERNAME, &good);
        let path = format!("/services/Soap/u/{version}");
        let reply = soap(&sf, LOGIN_HOST, &path, &envelope).await;
        let message = format!(
            "The SOAP Login operation is not available in the API version specified ({version})"
        );
        assert_fault(
            &reply,
            &expected_fault(
                PARTNER_FAULTS,
                "UnexpectedErrorFault",
                "INVALID_OPERATION",
                &message,
            ),
        );
    }
    let envelope = login_envelope(3, PARTNER, acme::USERNAME, &good);
    assert_eq!(
        soap(&sf, LOGIN_HOST, "/services/Soap/u/64.0", &envelope)
            .await
            .status,
        200
    );

    sf.edit(|w| w.org_mut(acme::ORG_ID).soap_login_enabled = false);
    let reply = soap(&sf, LOGIN_HOST, "/services/Soap/u/64.0", &envelope).await;
    assert_eq!(reply.status, 500);
    let text = reply.text();
    assert_eq!(element(&text, "faultcode"), "sf:INVALID_OPERATION");
    assert!(
        element(&text, "faultstring")
            .starts_with("INVALID_OPERATION: SOAP API login() is disabled by default in this org."),
        "{text}"
    );
    assert_eq!(sf.issued().len(), 1, "only the 64.0 login issued a session");
}

#[tokio::test]
async fn soap_requests_the_api_cannot_read_are_client_faults() {
    let sf = FakeSalesforce::start().await;
    let good = acme_soap_password();
    let cases = [
        // The enterprise namespace at the partner endpoint, and the other way round.
        (
            "/services/Soap/u/62.0",
            login_envelope(0, ENTERPRISE, acme::USERNAME, &good),
        ),
        (
            "/services/Soap/c/62.0",
            login_envelope(1, PARTNER, acme::USERNAME, &good),
        ),
        // Not XML, unbalanced, no Body, SOAP 1.2.
        ("/services/Soap/u/62.0", "username=x&password=y".to_string()),
        (
            "/services/Soap/u/62.0",
            login_envelope(0, PARTNER, acme::USERNAME, &good).replace("</login>", "</logon>"),
        ),
        (
            "/services/Soap/u/62.0",
            format!("<s:Envelope xmlns:s=\"{SOAP_ENV}\"/>"),
        ),
        (
            "/services/Soap/u/62.0",
            login_envelope(0, PARTNER, acme::USERNAME, &good)
                .replace(SOAP_ENV, "http://www.w3.org/2003/05/soap-envelope"),
        ),
    ];
    for (path, body) in &cases {
        let reply = soap(&sf, LOGIN_HOST, path, body).await;
        assert_eq!(reply.status, 500, "{path} {body}: {}", reply.text());
        assert_eq!(
            element(&reply.text(), "faultcode"),
            "soapenv:Client",
            "{body}"
        );
    }
    assert!(sf.issued().is_empty());
}

#[tokio::test]
async fn get_user_info_takes_an_oauth_token_or_a_soap_session_of_the_org() {
    let sf = FakeSalesforce::start().await;
    let path = format!("/services/Soap/u/62.0/{ACME_ORG15}");

    // A client-credentials token runs as the Run As user.
    let cc = cc_token(&sf).await;
    let cc = cc["access_token"].as_str().unwrap();
    let text = assert_soap_ok(&soap(&sf, acme::MY_DOMAIN, &path, &get_user_info(cc)).await);
    assert!(text.contains("<getUserInfoResponse><result>"), "{text}");
    assert_eq!(element(&text, "userName"), acme::RUN_AS_USERNAME);
    assert_eq!(element(&text, "userId"), acme::RUN_AS_USER_ID);
    assert_eq!(element(&text, "organizationId"), acme::ORG_ID);
    assert_eq!(element(&text, "sessionSecondsValid"), "7200");

    let session = acme_soap_login(&sf).await;
    let text = assert_soap_ok(&soap(&sf, acme::MY_DOMAIN, &path, &get_user_info(&session)).await);
    assert_eq!(element(&text, "userName"), acme::USERNAME);
    assert_eq!(element(&text, "userFullName"), "Integration User");

    // A forged session, none, another org's My Domain, another org id in the path.
    let forged = format!("{ACME_ORG15}!AQforged");
    assert_invalid_session(&soap(&sf, acme::MY_DOMAIN, &path, &get_user_info(&forged)).await);
    let no_header = format!(
        "<se:Envelope xmlns:se=\"{SOAP_ENV}\"><se:Body><getUserInfo xmlns=\"{PARTNER}\"/></se:Body></se:Envelope>"
    );
    assert_invalid_session(&soap(&sf, acme::MY_DOMAIN, &path, &no_header).await);
    assert_invalid_session(&soap(&sf, acme_qa::MY_DOMAIN, &path, &get_user_info(&session)).await);
    let other_org = "/services/Soap/u/62.0/00D7e000000Acme";
    assert_invalid_session(&soap(&sf, acme::MY_DOMAIN, other_org, &get_user_info(&session)).await);
}

#[tokio::test]
async fn soap_logout_ends_the_session_for_soap_and_rest() {
    let sf = FakeSalesforce::start().await;
    let path = format!("/services/Soap/u/62.0/{ACME_ORG15}");
    let session = acme_soap_login(&sf).await;
    assert_eq!(rest_status(&sf, &session).await.0, 200);
    let logout = session_envelope(&session, &format!("<logout xmlns=\"{PARTNER}\"/>"));
    let text = assert_soap_ok(&soap(&sf, acme::MY_DOMAIN, &path, &logout).await);
    assert!(
        text.contains("<soapenv:Body><logoutResponse/></soapenv:Body>"),
        "{text}"
    );

    assert_eq!(rest_status(&sf, &session).await.0, 401);
    assert_invalid_session(&soap(&sf, acme::MY_DOMAIN, &path, &get_user_info(&session)).await);
    assert_invalid_session(&soap(&sf, acme::MY_DOMAIN, &path, &logout).await);

    // An OAuth token ends the same way.
    let cc = cc_token(&sf).await;
    let cc = cc["access_token"].as_str().unwrap();
    let logout = session_envelope(cc, &format!("<logout xmlns=\"{PARTNER}\"/>"));
    assert_soap_ok(&soap(&sf, acme::MY_DOMAIN, &path, &logout).await);
    assert_eq!(rest_status(&sf, cc).await.0, 401);
}

#[tokio::test]
async fn other_soap_calls_get_a_canned_answer_recorded_with_its_bytes() {
    let sf = FakeSalesforce::start().await;
    let path = format!("/services/Soap/u/62.0/{ACME_ORG15}");
    let session = acme_soap_login(&sf).await;
    let query = session_envelope(
        &session,
        &format!(
            "<query xmlns=\"{PARTNER}\"><queryString>SELECT Id FROM Account</queryString></query>"
        ),
    );
    let reply = soap(&sf, acme::MY_DOMAIN, &path, &query).await;
    let text = assert_soap_ok(&reply);
    assert!(
        text.contains("<queryResponse><result xsi:type=\"QueryResult\"><done>true</done>"),
        "{text}"
    );
    assert_eq!(element(&text, "size"), "1");

    let recorded = sf.requests_to(&path);
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].body, query.as_bytes());
    assert_eq!(recorded[0].response_status, Some(200));
    assert_eq!(recorded[0].response_body.as_deref(), Some(&reply.body[..]));
    // A login is recorded with the session it answered.
    let logins = sf.requests_to("/services/Soap/u/62.0");
    let answered = String::from_utf8(logins[0].response_body.clone().unwrap()).unwrap();
    assert_eq!(element(&answered, "sessionId"), session);

    assert_invalid_session(&soap(&sf, acme::MY_DOMAIN, &path, &query.replace(&session, "x")).await);
}

#[tokio::test]
async fn jwt_format_access_tokens_work_on_rest_but_not_on_soap() {
    use base64::Engine;
    let sf = FakeSalesforce::start().await;
    let path = format!("/services/Soap/u/62.0/{ACME_ORG15}");
    // Opaque tokens (the default) keep their response as it was.
    let opaque = cc_token(&sf).await;
    assert!(opaque.get("token_format").is_none(), "{opaque}");

    sf.edit(|w| {
        w.org_mut(acme::ORG_ID)
            .app_mut(acme::CLIENT_ID)
            .jwt_access_tokens = true
    });
    let body = cc_token(&sf).await;
    assert_eq!(body["token_format"], "jwt");
    let jwt = body["access_token"].as_str().unwrap();
    assert!(jwt.starts_with("eyJ"), "{jwt}");
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "{jwt}");
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    for part in &parts[..2] {
        let json: serde_json::Value = serde_json::from_slice(&b64.decode(part).unwrap()).unwrap();
        assert!(json.is_object());
    }
    assert!(b64.decode(parts[2]).is_ok());

    let (status, data) = rest_status(&sf, jwt).await;
    assert_eq!(status, 200);
    assert_eq!(data.unwrap()["userId"], acme::RUN_AS_USER_ID);
    assert_invalid_session(&soap(&sf, acme::MY_DOMAIN, &path, &get_user_info(jwt)).await);
    let query = session_envelope(
        jwt,
        &format!(
            "<query xmlns=\"{PARTNER}\"><queryString>SELECT Id FROM Account</queryString></query>"
        ),
    );
    assert_invalid_session(&soap(&sf, acme::MY_DOMAIN, &path, &query).await);
    // The opaque token from before still works on SOAP.
    let opaque = opaque["access_token"].as_str().unwrap();
    assert_soap_ok(&soap(&sf, acme::MY_DOMAIN, &path, &get_user_info(opaque)).await);
}

#[tokio::test]
async fn the_identity_url_lists_the_soap_and_rest_endpoints() {
    let sf = FakeSalesforce::start().await;
    let cc = cc_token(&sf).await;
    let id = cc["id"].as_str().unwrap();
    let id_path = id.strip_prefix("https://acme.my.salesforce.com").unwrap();
    let mut conn = direct(&sf, acme::MY_DOMAIN).await;
    let reply = conn
        .get_with_bearer(
            acme::MY_DOMAIN,
            id_path,
            cc["access_token"].as_str().unwrap(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    let base = "https://acme.my.salesforce.com";
    let urls = &body["urls"];
    assert_eq!(
        urls["enterprise"],
        format!("{base}/services/Soap/c/{{version}}/{ACME_ORG15}")
    );
    assert_eq!(
        urls["metadata"],
        format!("{base}/services/Soap/m/{{version}}/{ACME_ORG15}")
    );
    assert_eq!(
        urls["partner"],
        format!("{base}/services/Soap/u/{{version}}/{ACME_ORG15}")
    );
    assert_eq!(urls["rest"], format!("{base}/services/data/v{{version}}/"));
    assert_eq!(
        urls["sobjects"],
        format!("{base}/services/data/v{{version}}/sobjects/")
    );
    assert_eq!(
        urls["query"],
        format!("{base}/services/data/v{{version}}/query/")
    );
    assert_eq!(body["username"], acme::RUN_AS_USERNAME);
    for field in [
        "locale",
        "language",
        "timezone",
        "user_type",
        "display_name",
        "email",
    ] {
        assert!(body[field].is_string(), "{field}: {body}");
    }
}

// Real clients' SOAP login() paths, run straight at the fake (no grantshift): the fake speaks
// what they accept. The same scripts run through grantshift with python_client / node_client.

/// The client logged in with a SOAP session the fake issued and made its REST call with it at
/// acme's My Domain.
fn assert_soap_session_then_rest_call(what: &str, out: &serde_json::Value, sf: &FakeSalesforce) {
    assert!(out.get("login_error").is_none(), "{what}: {out}");
    let token = out["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: {out}"));
    let issued = sf.issued();
    let session = issued
        .iter()
        .find(|i| i.access_token == token)
        .unwrap_or_else(|| panic!("{what}: not a token the fake issued: {out}"));
    assert_eq!(session.grant, "soap_login", "{what}");
    assert_eq!(
        out["instance_url"], "https://acme.my.salesforce.com",
        "{what}"
    );
    assert_eq!(out["data_status"], 200, "{what}: {out}");
    let data: serde_json::Value = serde_json::from_str(out["data_body"].as_str().unwrap()).unwrap();
    assert_eq!(data["userId"], acme::USER_ID, "{what}");

    let logins = sf.requests_to("/services/Soap/u/62.0");
    assert_eq!(logins.len(), 1, "{what}: one login()");
    assert_eq!(logins[0].host_name(), Some(LOGIN_HOST));
    assert_eq!(logins[0].response_status, Some(200));
    let rest = sf.requests_to("/services/data/v62.0/sobjects/Account");
    assert_eq!(rest.len(), 1, "{what}");
    assert_eq!(rest[0].host_name(), Some(acme::MY_DOMAIN));
    assert_eq!(
        rest[0].header_values("authorization"),
        [format!("Bearer {token}")]
    );
}

#[tokio::test]
async fn simple_salesforce_soap_login_works_against_the_fake_directly() {
    use testkit::clients::*;
    let sf = FakeSalesforce::start().await;
    let work = tempfile::tempdir().unwrap();
    let cmd = python_client_direct(SIMPLE_SALESFORCE_SOAP, &[API_VERSION], &sf, work.path());
    let out = run_client("simple-salesforce SOAP", cmd).await;
    assert_eq!(
        out["client"],
        format!("simple-salesforce/{}", pinned_python("simple-salesforce")).as_str(),
        "{RUN_SCRIPTS_TEST}"
    );
    assert_soap_session_then_rest_call("simple-salesforce", &out, &sf);

    // A fault reaches it as simple-salesforce's own exception.
    sf.edit(|w| w.org_mut(acme::ORG_ID).soap_login_enabled = false);
    let cmd = python_client_direct(SIMPLE_SALESFORCE_SOAP, &[API_VERSION], &sf, work.path());
    let out = run_client("simple-salesforce SOAP", cmd).await;
    let error = out["login_error"]
        .as_str()
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        error.contains("SalesforceAuthenticationFailed") && error.contains("INVALID_OPERATION"),
        "{error}"
    );
}

#[tokio::test]
async fn jsforce_soap_login_works_against_the_fake_directly() {
    use testkit::clients::*;
    let sf = FakeSalesforce::start().await;
    let work = tempfile::tempdir().unwrap();
    let login_url = format!("https://{LOGIN_HOST}");
    let cmd = node_client_direct(JSFORCE_SOAP, &[&login_url, API_VERSION], &sf, work.path());
    let out = run_client("jsforce SOAP", cmd).await;
    assert_eq!(
        out["client"],
        format!("jsforce/{}", pinned_npm("jsforce")).as_str(),
        "{RUN_SCRIPTS_TEST}"
    );
    assert_soap_session_then_rest_call("jsforce", &out, &sf);
    assert_eq!(out["user_id"], acme::USER_ID);
    assert_eq!(out["organization_id"], acme::ORG_ID);

    // A fault reaches it as jsforce's error with the faultstring.
    sf.edit(|w| w.org_mut(acme::ORG_ID).users[0].security_token = Some("rotated".into()));
    let cmd = node_client_direct(JSFORCE_SOAP, &[&login_url, API_VERSION], &sf, work.path());
    let out = run_client("jsforce SOAP", cmd).await;
    assert_eq!(
        out["login_error"],
        format!("INVALID_LOGIN: {INVALID_LOGIN}"),
        "{out}"
    );
}
