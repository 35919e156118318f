//! SOAP API `login()` through grantshift: a login whose username has a `[[credentials]]`
//! entry naming an app, and whose password (with the security token) matches the set's
//! verifier, is answered with a `loginResponse` carrying an OAuth session from the entry's My
//! Domain; the session works for REST and SOAP calls. Envelopes in the shapes Data Loader,
//! WSC and jsforce send, partner and enterprise, four prefix styles. A wrong password, no
//! verifier, a failing upgrade (with and without fallback), a JWT-format token, other SOAP
//! calls and a logout of a shared session each do what the operator expects.

use testkit::proxy::toml_str;
use testkit::*;

const ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const PARTNER: &str = "urn:partner.soap.sforce.com";
const ENTERPRISE: &str = "urn:enterprise.soap.sforce.com";
/// What the integration's SOAP client sends as its password: password + security token.
fn soap_password() -> String {
    format!("{}{}", acme::PASSWORD, acme::SECURITY_TOKEN)
}

/// The JWT bearer entry for the integration user with a verifier of its SOAP password.
fn jwt_entry() -> String {
    with_password_hash(
        &format!(
            "[[credentials]]\nusername = {}\nclient_id = {}\nflow = \"jwt_bearer\"\njwt_private_key = {}\nmy_domain = {}\n",
            toml_str(acme::USERNAME),
            toml_str(acme::CLIENT_ID),
            toml_str(testkit::salesforce::fixture("jwt-app.pkcs8.pem").to_str().unwrap()),
            toml_str(acme::MY_DOMAIN),
        ),
        &soap_password(),
    )
}

/// The client-credentials entry (secret from `ACME_APP_SECRET`), with a verifier.
fn cc_entry() -> String {
    with_password_hash(
        &format!(
            "[[credentials]]\nusername = {}\nclient_id = {}\nclient_secret_env = \"ACME_APP_SECRET\"\nmy_domain = {}\n",
            toml_str(acme::USERNAME),
            toml_str(acme::CLIENT_ID),
            toml_str(acme::MY_DOMAIN),
        ),
        &soap_password(),
    )
}

/// A `login` envelope in one of the prefix styles clients use.
#[derive(Clone, Copy, Debug)]
enum Style {
    /// jsforce: `se:` envelope, `login` in a default namespace.
    Se,
    /// simple-salesforce: `soapenv:` and `urn:` prefixes, `CallOptions` header.
    SoapenvUrn,
    /// WSC / Data Loader: `env:` envelope, `m:` prefix on the call.
    Env,
    /// Everything in default namespaces.
    Default,
}

fn login_envelope(style: Style, ns: &str, username: &str, password: &str) -> String {
    let (u, p) = (escape(username), escape(password));
    match style {
        Style::Se => format!(
            r#"<se:Envelope xmlns:se="{ENV}"><se:Header/><se:Body><login xmlns="{ns}"><username>{u}</username><password>{p}</password></login></se:Body></se:Envelope>"#
        ),
        Style::SoapenvUrn => format!(
            r#"<?xml version="1.0" encoding="utf-8" ?><soapenv:Envelope xmlns:soapenv="{ENV}" xmlns:urn="{ns}"><soapenv:Header><urn:CallOptions><urn:client>RestForce</urn:client><urn:defaultNamespace>sf</urn:defaultNamespace></urn:CallOptions></soapenv:Header><soapenv:Body><urn:login><urn:username>{u}</urn:username><urn:password>{p}</urn:password></urn:login></soapenv:Body></soapenv:Envelope>"#
        ),
        Style::Env => format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><env:Envelope xmlns:env="{ENV}" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><env:Header><CallOptions xmlns="{ns}"><client>DataLoaderBatch/64.0.0</client></CallOptions></env:Header><env:Body><m:login xmlns:m="{ns}"><m:username>{u}</m:username><m:password>{p}</m:password></m:login></env:Body></env:Envelope>"#
        ),
        Style::Default => format!(
            r#"<Envelope xmlns="{ENV}"><Body><login xmlns="{ns}"><username>{u}</username><password>{p}</password></login></Body></Envelope>"#
        ),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The text of the first `<name>…</name>` (unprefixed, as grantshift and the fake write them).
fn value(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&format!("</{name}>"))?;
    Some(xml[start..start + len].to_owned())
}

/// POST a SOAP envelope on an intercepted connection.
async fn soap_post(
    conn: &mut HttpConn,
    host: &str,
    path: &str,
    content_type: &str,
    soap_action: Option<&str>,
    body: &str,
) -> testkit::client::Reply {
    let mut req = conn
        .request(http::Method::POST, host, path)
        .header("content-type", content_type);
    if let Some(action) = soap_action {
        req = req.header("soapaction", action);
    }
    conn.send(req.body(testkit::client::full(body.to_owned())).unwrap())
        .await
}

/// A SOAP login through the proxy, WSC style.
async fn soap_login(
    proxy: &TestProxy,
    host: &str,
    path: &str,
    body: &str,
) -> testkit::client::Reply {
    let mut conn = proxy.intercepted(host, Http::H1).await;
    soap_post(
        &mut conn,
        host,
        path,
        "text/xml; charset=UTF-8",
        Some("\"\""),
        body,
    )
    .await
}

/// SOAP `login` requests that reached the fake (the original, not upgraded).
fn soap_logins_at_fake(sf: &FakeSalesforce) -> usize {
    sf.requests()
        .iter()
        .filter(|r| {
            r.path.starts_with("/services/Soap/")
                && String::from_utf8_lossy(&r.body).contains("login")
                && String::from_utf8_lossy(&r.body).contains(acme::USERNAME)
        })
        .count()
}

/// `getUserInfo()` with `session` at `server_url`, through the proxy.
async fn get_user_info(
    proxy: &TestProxy,
    server_url: &str,
    ns: &str,
    session: &str,
) -> testkit::client::Reply {
    let url: http::Uri = server_url.parse().unwrap();
    let host = url.host().unwrap().to_owned();
    let body = format!(
        r#"<env:Envelope xmlns:env="{ENV}"><env:Header><SessionHeader xmlns="{ns}"><sessionId>{session}</sessionId></SessionHeader></env:Header><env:Body><getUserInfo xmlns="{ns}"/></env:Body></env:Envelope>"#
    );
    let mut conn = proxy.intercepted(&host, Http::H1).await;
    soap_post(
        &mut conn,
        &host,
        url.path(),
        "text/xml; charset=UTF-8",
        Some("\"\""),
        &body,
    )
    .await
}

fn assert_login_response(
    reply: &testkit::client::Reply,
    api: &str,
    ns: &str,
    user_id: &str,
) -> String {
    let xml = reply.text();
    assert_eq!(reply.status, 200, "{xml}");
    assert!(
        reply
            .header("content-type")
            .unwrap_or("")
            .starts_with("text/xml"),
        "{:?}",
        reply.header("content-type")
    );
    assert!(
        xml.contains(&format!(r#"<loginResponse xmlns="{ns}">"#)),
        "{xml}"
    );
    // The WSDL's order.
    let order: Vec<usize> = [
        "<metadataServerUrl>",
        "<passwordExpired>",
        "<sandbox>",
        "<serverUrl>",
        "<sessionId>",
        "<userId>",
        "<userInfo>",
    ]
    .iter()
    .map(|e| xml.find(e).unwrap_or_else(|| panic!("{e} missing: {xml}")))
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{xml}");
    assert_eq!(value(&xml, "passwordExpired").as_deref(), Some("false"));
    assert_eq!(value(&xml, "sandbox").as_deref(), Some("false"));
    let org15 = &acme::ORG_ID[..15];
    assert_eq!(
        value(&xml, "serverUrl").unwrap(),
        format!(
            "https://{}/services/Soap/{api}/64.0/{org15}",
            acme::MY_DOMAIN
        )
    );
    assert_eq!(
        value(&xml, "metadataServerUrl").unwrap(),
        format!("https://{}/services/Soap/m/64.0/{org15}", acme::MY_DOMAIN)
    );
    assert_eq!(value(&xml, "userId").unwrap(), user_id);
    assert_eq!(value(&xml, "organizationId").unwrap(), acme::ORG_ID);
    assert!(value(&xml, "sessionSecondsValid").is_some(), "{xml}");
    value(&xml, "sessionId").unwrap()
}

#[tokio::test]
async fn data_loader_wsc_and_jsforce_logins_get_an_oauth_session_for_the_same_user() {
    let proxy = TestProxy::start(&jwt_entry()).await;
    let cases = [
        // Data Loader: trailing `/`, version capped at 64.0, CallOptions.
        (Style::Env, "/services/Soap/u/64.0/", PARTNER, "u"),
        (Style::Se, "/services/Soap/u/64.0", PARTNER, "u"),
        (Style::SoapenvUrn, "/services/Soap/c/64.0", ENTERPRISE, "c"),
        (Style::Default, "/services/Soap/c/64.0/", ENTERPRISE, "c"),
    ];
    let mut sessions = Vec::new();
    for (style, path, ns, api) in cases {
        let body = login_envelope(style, ns, acme::USERNAME, &soap_password());
        let reply = soap_login(&proxy, LOGIN_HOST, path, &body).await;
        let session = assert_login_response(&reply, api, ns, acme::USER_ID);
        let event = proxy.next_event().await;
        assert_eq!(event["grant"], "soap_login", "{event}");
        assert_eq!(event["action"], "upgraded", "{style:?}: {event}");
        assert_eq!(event["flow"], "jwt_bearer", "{event}");
        assert_eq!(event["target_host"], acme::MY_DOMAIN);
        assert_eq!(event["username"], acme::USERNAME);
        assert_eq!(event["password_check"], "verified");
        assert_eq!(event["org_id"], acme::ORG_ID);
        assert_eq!(event["user_id"], acme::USER_ID);
        sessions.push((session, value(&reply.text(), "serverUrl").unwrap(), ns));
    }
    assert_eq!(
        soap_logins_at_fake(&proxy.sf),
        0,
        "no login() reached Salesforce"
    );
    // One JWT login upstream: the other three were answered from the token cache.
    let jwt_logins = proxy
        .sf
        .token_requests()
        .iter()
        .filter(|r| r.param("grant_type").as_deref() == Some(testkit::salesforce::JWT_BEARER_GRANT))
        .count();
    assert_eq!(jwt_logins, 1);

    // The session works for REST and for SOAP, as the integration user.
    let (session, server_url, ns) = &sessions[0];
    let mut conn = proxy.intercepted(acme::MY_DOMAIN, Http::H1).await;
    let rest = conn
        .get_with_bearer(acme::MY_DOMAIN, "/services/data/v60.0/limits", session)
        .await;
    assert_eq!(rest.status, 200, "{}", rest.text());
    let info = get_user_info(&proxy, server_url, ns, session).await;
    assert_eq!(info.status, 200, "{}", info.text());
    assert_eq!(
        value(&info.text(), "userName").as_deref(),
        Some(acme::USERNAME)
    );
}

#[tokio::test]
async fn client_credentials_give_the_run_as_users_session() {
    let proxy = TestProxy::builder()
        .env("ACME_APP_SECRET", acme::CLIENT_SECRET)
        .extra_toml(&cc_entry())
        .start()
        .await;
    let body = login_envelope(Style::Se, PARTNER, acme::USERNAME, &soap_password());
    let reply = soap_login(&proxy, LOGIN_HOST, "/services/Soap/u/64.0", &body).await;
    let session = assert_login_response(&reply, "u", PARTNER, acme::RUN_AS_USER_ID);
    assert_eq!(
        value(&reply.text(), "userName").as_deref(),
        Some(acme::RUN_AS_USERNAME)
    );
    let event = proxy.next_event().await;
    assert_eq!(
        (event["action"].as_str(), event["flow"].as_str()),
        (Some("upgraded"), Some("client_credentials")),
        "{event}"
    );
    assert_eq!(event["client_id"], acme::CLIENT_ID);
    let token_request = proxy.sf.token_requests().pop().unwrap();
    assert_eq!(token_request.host_name(), Some(acme::MY_DOMAIN));
    assert_eq!(
        token_request.param("grant_type").as_deref(),
        Some("client_credentials")
    );
    assert!(proxy.sf.issued().iter().any(|i| i.access_token == session));
}

#[tokio::test]
async fn a_wrong_password_goes_to_salesforce_unchanged() {
    let proxy = TestProxy::start(&jwt_entry()).await;
    let body = login_envelope(
        Style::Se,
        PARTNER,
        acme::USERNAME,
        "wrong-password-and-token",
    );
    let reply = soap_login(&proxy, LOGIN_HOST, "/services/Soap/u/64.0", &body).await;
    assert_eq!(reply.status, 500);
    assert!(
        reply
            .text()
            .contains("<sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode>"),
        "{}",
        reply.text()
    );
    let event = proxy.next_event().await;
    assert_eq!(
        (event["action"].as_str(), event["reason"].as_str()),
        (Some("skipped"), Some("password_mismatch")),
        "{event}"
    );
    let sent = proxy.sf.requests_to("/services/Soap/u/64.0");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].body, body.as_bytes(), "byte for byte");
    assert!(proxy.sf.token_requests().is_empty());
}

#[tokio::test]
async fn without_a_verifier_the_first_login_is_forwarded_and_teaches_it() {
    // The entry without password_hash: nothing to check the password against yet.
    let entry = format!(
        "[[credentials]]\nusername = {}\nclient_id = {}\nflow = \"jwt_bearer\"\njwt_private_key = {}\nmy_domain = {}\n\n",
        toml_str(acme::USERNAME),
        toml_str(acme::CLIENT_ID),
        toml_str(testkit::salesforce::fixture("jwt-app.pkcs8.pem").to_str().unwrap()),
        toml_str(acme::MY_DOMAIN),
    );
    let proxy = TestProxy::start(&entry).await;
    let body = login_envelope(Style::Env, PARTNER, acme::USERNAME, &soap_password());
    let first = soap_login(&proxy, LOGIN_HOST, "/services/Soap/u/64.0/", &body).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let event = proxy.next_event().await;
    assert_eq!(
        (event["action"].as_str(), event["reason"].as_str()),
        (Some("skipped"), Some("no_verifier")),
        "{event}"
    );
    assert_eq!(soap_logins_at_fake(&proxy.sf), 1, "Salesforce judged it");

    // Skipped logins do not teach; an observed one does. Observe once, then upgrade.
    let mut proxy = proxy;
    let observe = proxy.builder_used().with_extra_toml(&format!(
        "[[rollout]]\nhost = \"*\"\nmode = \"observe\"\n\n{entry}"
    ));
    proxy.reload(observe);
    let observed = soap_login(&proxy, LOGIN_HOST, "/services/Soap/u/64.0/", &body).await;
    assert_eq!(observed.status, 200);
    let event = proxy.next_event().await;
    assert_eq!(event["action"], "observed", "{event}");
    assert_eq!(
        event["user_id"],
        acme::USER_ID,
        "read from Salesforce's loginResponse"
    );

    let upgrade = proxy.builder_used().with_extra_toml(&format!(
        "[[rollout]]\nhost = \"*\"\nmode = \"upgrade\"\n\n{entry}"
    ));
    proxy.reload(upgrade);
    let upgraded = soap_login(&proxy, LOGIN_HOST, "/services/Soap/u/64.0/", &body).await;
    assert_login_response(&upgraded, "u", PARTNER, acme::USER_ID);
    let event = proxy.next_event().await;
    assert_eq!(
        (event["action"].as_str(), event["password_check"].as_str()),
        (Some("upgraded"), Some("verified")),
        "{event}"
    );
    assert_eq!(
        soap_logins_at_fake(&proxy.sf),
        2,
        "the upgraded one did not reach Salesforce"
    );
}

#[tokio::test]
async fn a_failing_upgrade_falls_back_to_the_original_login() {
    // The app's secret is wrong: Salesforce refuses client credentials.
    let proxy = TestProxy::builder()
        .env("ACME_APP_SECRET", "not-the-secret")
        .extra_toml(&cc_entry())
        .start()
        .await;
    let body = login_envelope(Style::SoapenvUrn, PARTNER, acme::USERNAME, &soap_password());
    let reply = soap_login(&proxy, LOGIN_HOST, "/services/Soap/u/59.0", &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let event = proxy.next_event().await;
    assert_eq!(event["action"], "fallback", "{event}");
    assert_eq!(
        event["upstream_error"]["error"], "invalid_client",
        "{event}"
    );
    // The client got Salesforce's own answer to its own login.
    let sent = proxy.sf.requests_to("/services/Soap/u/59.0");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].body, body.as_bytes());
    assert_eq!(
        reply.body.as_ref(),
        sent[0].response_body.as_deref().unwrap()
    );
}

#[tokio::test]
async fn without_fallback_the_client_gets_a_login_fault_it_can_read() {
    let proxy = TestProxy::builder()
        .env("ACME_APP_SECRET", "not-the-secret")
        .extra_toml(&cc_entry())
        .extra_toml("[[rollout]]\nhost = \"*\"\nmode = \"upgrade\"\nfallback = false\n")
        .start()
        .await;
    for (path, fault_ns) in [
        ("/services/Soap/u/64.0", "urn:fault.partner.soap.sforce.com"),
        (
            "/services/Soap/c/64.0",
            "urn:fault.enterprise.soap.sforce.com",
        ),
    ] {
        let ns = if path.contains("/u/") {
            PARTNER
        } else {
            ENTERPRISE
        };
        let body = login_envelope(Style::Se, ns, acme::USERNAME, &soap_password());
        let reply = soap_login(&proxy, LOGIN_HOST, path, &body).await;
        let xml = reply.text();
        assert_eq!(reply.status, 500, "{xml}");
        assert!(reply
            .header("content-type")
            .unwrap()
            .starts_with("text/xml"));
        assert!(xml.contains(&format!(r#"xmlns:sf="{fault_ns}""#)), "{xml}");
        assert!(
            xml.contains("<faultcode>sf:UNKNOWN_EXCEPTION</faultcode>"),
            "{xml}"
        );
        assert!(xml.contains("<sf:exceptionCode>UNKNOWN_EXCEPTION</sf:exceptionCode>"));
        assert!(
            xml.contains("invalid_client"),
            "names Salesforce's error: {xml}"
        );
        assert!(!xml.contains("not-the-secret") && !xml.contains(acme::PASSWORD));
        let event = proxy.next_event().await;
        assert_eq!(event["action"], "failed", "{event}");
    }
    assert_eq!(soap_logins_at_fake(&proxy.sf), 0);
}

#[tokio::test]
async fn a_jwt_format_token_is_not_handed_to_a_soap_client() {
    let proxy = TestProxy::start(&jwt_entry()).await;
    proxy.sf.edit(|w| {
        w.org_mut(acme::ORG_ID)
            .app_mut(acme::CLIENT_ID)
            .jwt_access_tokens = true;
    });
    let body = login_envelope(Style::Se, PARTNER, acme::USERNAME, &soap_password());
    let reply = soap_login(&proxy, LOGIN_HOST, "/services/Soap/u/64.0", &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let session = value(&reply.text(), "sessionId").unwrap();
    assert!(
        !session.starts_with("eyJ"),
        "Salesforce's own SOAP session: {session}"
    );
    let event = proxy.next_event().await;
    assert_eq!(
        (event["action"].as_str(), event["reason"].as_str()),
        (Some("fallback"), Some("jwt_access_token")),
        "{event}"
    );
    assert_eq!(soap_logins_at_fake(&proxy.sf), 1);
}

#[tokio::test]
async fn other_soap_calls_pass_through_byte_for_byte() {
    let proxy = TestProxy::start(&jwt_entry()).await;
    let body = login_envelope(Style::Se, PARTNER, acme::USERNAME, &soap_password());
    let login = soap_login(&proxy, LOGIN_HOST, "/services/Soap/u/64.0", &body).await;
    let session = assert_login_response(&login, "u", PARTNER, acme::USER_ID);
    proxy.next_event().await;
    let path = format!("/services/Soap/u/64.0/{}", &acme::ORG_ID[..15]);
    let query = format!(
        "<?xml version=\"1.0\"?>\n<soapenv:Envelope xmlns:soapenv=\"{ENV}\" xmlns:urn=\"{PARTNER}\">\n  <soapenv:Header><urn:SessionHeader><urn:sessionId>{session}</urn:sessionId></urn:SessionHeader></soapenv:Header>\n  <soapenv:Body><urn:query><urn:queryString>SELECT Id FROM Account</urn:queryString></urn:query></soapenv:Body>\n</soapenv:Envelope>\n"
    );
    let mut conn = proxy.intercepted(acme::MY_DOMAIN, Http::H1).await;
    let reply = soap_post(
        &mut conn,
        acme::MY_DOMAIN,
        &path,
        "text/xml; charset=UTF-8",
        Some("\"\""),
        &query,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    // (grantshift's own getUserInfo() went to the same endpoint during the upgrade.)
    let sent: Vec<_> = proxy
        .sf
        .requests_to(&path)
        .into_iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains("queryString"))
        .collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].body,
        query.as_bytes(),
        "the call as the client sent it"
    );
    assert_eq!(
        reply.body.as_ref(),
        sent[0].response_body.as_deref().unwrap()
    );
    // An API call is not a login: no event for it. The next event is the next login's.
    let again = soap_login(&proxy, LOGIN_HOST, "/services/Soap/u/64.0", &body).await;
    assert_eq!(again.status, 200);
    assert_eq!(proxy.next_event().await["grant"], "soap_login");

    // A login-looking body that cannot be read is forwarded as it is, and recorded.
    let broken = format!("<se:Envelope xmlns:se=\"{ENV}\"><se:Body><login xmlns=\"{PARTNER}\"><username>a</username></login></se:Body></se:Envelope>");
    let reply = soap_login(&proxy, LOGIN_HOST, "/services/Soap/u/64.0", &broken).await;
    assert_eq!(reply.status, 500, "the fake's own fault");
    let event = proxy.next_event().await;
    assert_eq!(
        (event["action"].as_str(), event["reason"].as_str()),
        (Some("skipped"), Some("soap_login_malformed")),
        "{event}"
    );
    let sent = proxy.sf.requests_to("/services/Soap/u/64.0");
    assert_eq!(sent.last().unwrap().body, broken.as_bytes());
}

#[tokio::test]
async fn a_logout_of_a_shared_session_is_answered_here_and_the_others_keep_it() {
    let proxy = TestProxy::start(&jwt_entry()).await;
    let body = login_envelope(Style::Se, PARTNER, acme::USERNAME, &soap_password());
    let first = soap_login(&proxy, LOGIN_HOST, "/services/Soap/u/64.0", &body).await;
    let second = soap_login(&proxy, LOGIN_HOST, "/services/Soap/u/64.0", &body).await;
    let session = assert_login_response(&first, "u", PARTNER, acme::USER_ID);
    assert_eq!(
        value(&second.text(), "sessionId").as_deref(),
        Some(session.as_str()),
        "the two clients share the cached session"
    );
    proxy.next_event().await;
    proxy.next_event().await;

    // The first client logs out (Data Loader does at the end of a run).
    let server_url = value(&first.text(), "serverUrl").unwrap();
    let url: http::Uri = server_url.parse().unwrap();
    let logout = format!(
        r#"<env:Envelope xmlns:env="{ENV}"><env:Header><SessionHeader xmlns="{PARTNER}"><sessionId>{session}</sessionId></SessionHeader></env:Header><env:Body><logout xmlns="{PARTNER}"/></env:Body></env:Envelope>"#
    );
    let mut conn = proxy.intercepted(acme::MY_DOMAIN, Http::H1).await;
    let reply = soap_post(
        &mut conn,
        acme::MY_DOMAIN,
        url.path(),
        "text/xml; charset=UTF-8",
        Some("\"\""),
        &logout,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.text().contains("logoutResponse"), "{}", reply.text());
    let event = proxy.next_event().await;
    assert_eq!(event["action"], "revoke_shielded", "{event}");
    assert!(
        !proxy
            .sf
            .requests()
            .iter()
            .any(|r| String::from_utf8_lossy(&r.body).contains("<logout")),
        "the logout did not reach Salesforce"
    );
    // The second client's session still works at Salesforce.
    let info = get_user_info(&proxy, &server_url, PARTNER, &session).await;
    assert_eq!(info.status, 200, "{}", info.text());
    // The next login gets a fresh session: the entry went.
    let third = soap_login(&proxy, LOGIN_HOST, "/services/Soap/u/64.0", &body).await;
    assert_ne!(value(&third.text(), "sessionId").unwrap(), session);
}

// Real clients through grantshift, each on its SOAP login() path, then an API call with the
// session it got.

/// The proxy with the JWT entry, and how a client reaches it.
async fn client_proxy() -> (TestProxy, testkit::clients::ClientProxy) {
    let proxy = TestProxy::start(&jwt_entry()).await;
    let client = testkit::clients::ClientProxy {
        addr: proxy.addr(),
        ca_pem_path: proxy.ca_pem_path().to_path_buf(),
    };
    (proxy, client)
}

/// The client got a session grantshift obtained with JWT bearer (the fake issued it, to the
/// integration user, by that grant), no login() reached the fake, and the REST call with it
/// was answered 200 for the integration user.
fn assert_upgraded_soap_session(what: &str, out: &serde_json::Value, proxy: &TestProxy) {
    assert!(out.get("login_error").is_none(), "{what}: {out:#}");
    let token = out["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no session: {out:#}"));
    let issued = proxy.sf.issued();
    let session = issued
        .iter()
        .find(|i| i.access_token == token)
        .unwrap_or_else(|| panic!("{what}: not a session the fake issued: {out:#}"));
    assert_eq!(session.username, acme::USERNAME, "{what}");
    assert_ne!(
        session.grant, "soap_login",
        "{what}: an OAuth session, not a SOAP one"
    );
    assert_eq!(
        soap_logins_at_fake(&proxy.sf),
        0,
        "{what}: no login() reached Salesforce"
    );
    assert_eq!(
        out["instance_url"]
            .as_str()
            .map(|u| u.trim_end_matches('/')),
        Some(format!("https://{}", acme::MY_DOMAIN).as_str()),
        "{what}"
    );
    assert_eq!(out["data_status"], 200, "{what}: {out:#}");
    let data: serde_json::Value = serde_json::from_str(out["data_body"].as_str().unwrap()).unwrap();
    assert_eq!(data["userId"], acme::USER_ID, "{what}: {data}");
}

#[tokio::test]
async fn simple_salesforce_with_a_security_token_logs_in_through_soap_and_calls_rest() {
    use testkit::clients::*;
    let (proxy, client) = client_proxy().await;
    let work = tempfile::tempdir().unwrap();
    let cmd = python_client(SIMPLE_SALESFORCE_SOAP, &["62.0"], &client, work.path());
    let out = run_client("simple-salesforce SOAP", cmd).await;
    assert_upgraded_soap_session("simple-salesforce", &out, &proxy);
    let event = proxy.next_event().await;
    assert_eq!(
        (event["grant"].as_str(), event["action"].as_str()),
        (Some("soap_login"), Some("upgraded")),
        "{event}"
    );
}

#[tokio::test]
async fn jsforce_login_without_oauth_settings_logs_in_through_soap_and_calls_rest() {
    use testkit::clients::*;
    let (proxy, client) = client_proxy().await;
    let work = tempfile::tempdir().unwrap();
    let login_url = format!("https://{LOGIN_HOST}");
    let cmd = node_client(JSFORCE_SOAP, &[&login_url, "62.0"], &client, work.path());
    let out = run_client("jsforce SOAP", cmd).await;
    assert_upgraded_soap_session("jsforce", &out, &proxy);
    // jsforce refuses a loginResponse without organizationId.
    assert_eq!(out["organization_id"], acme::ORG_ID, "{out:#}");
    assert_eq!(out["user_id"], acme::USER_ID, "{out:#}");
    assert_eq!(proxy.next_event().await["action"], "upgraded");
}

#[tokio::test]
async fn java_httpurlconnection_posting_the_wsc_envelope_gets_a_working_session() {
    use testkit::clients::*;
    let (proxy, client) = client_proxy().await;
    let build = tempfile::Builder::new()
        .prefix("build-")
        .tempdir_in({
            let root = clients_dir().join("java");
            std::fs::create_dir_all(&root).unwrap();
            root
        })
        .unwrap();
    let login_url = format!("https://{LOGIN_HOST}");
    let cmd = soap_url_connection_client(&client, &login_url, "64.0", build.path()).await;
    let out = run_client("java HttpURLConnection SOAP", cmd).await;
    assert_eq!(out["login_status"], 200, "{out:#}");
    let session = out["session_id"].as_str().expect("a session");
    assert!(proxy
        .sf
        .issued()
        .iter()
        .any(|i| i.access_token == session && i.username == acme::USERNAME));
    assert_eq!(
        out["server_url"].as_str().unwrap(),
        format!(
            "https://{}/services/Soap/u/64.0/{}",
            acme::MY_DOMAIN,
            &acme::ORG_ID[..15]
        )
    );
    assert_eq!(out["organization_id"], acme::ORG_ID);
    assert_eq!(out["session_seconds_valid"], "7200");
    // getUserInfo() at serverUrl with the session, as Data Loader calls it next.
    assert_eq!(out["user_info_status"], 200, "{out:#}");
    assert_eq!(out["user_name"], acme::USERNAME);
    assert_eq!(soap_logins_at_fake(&proxy.sf), 0);
}
