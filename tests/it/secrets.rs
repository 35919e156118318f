//! The rule: "Never a password, client secret, access token, assertion, signature, private
//! key, password verifier or password digest." Every path (upgraded with client credentials
//! and with JWT, refused for a password that does not match its verifier, fallback after a
//! Salesforce refusal and after a refused connection, failed, observed, unmapped, skipped,
//! passed refresh / client-credentials / JWT grants; verifiers configured and learned;
//! HTTP/1.1 and HTTP/2; parameters in the body and in the URL; sessions handed out from the
//! token cache, plain and gzip, used for an API call and revoked; SOAP login() upgraded, from
//! the cache, refused for its password, and a shielded logout) goes through the real binary at
//! `RUST_LOG=debug`, in both log formats, and none of the secrets involved may appear in its
//! stderr, its stdout, its events file, or its admin server's metrics, report and page.

use crate::GRANTSHIFT;
use http::Method;
use testkit::salesforce::{fixture, sign_jwt_with_fixture_key, JWT_BEARER_GRANT};
use testkit::*;

const DOWN_MY_DOMAIN: &str = "down.my.salesforce.com";
const REFRESH_TOKEN: &str = "5Aep861-SECRET-refresh-e3b0";
const WRONG_PASSWORD: &str = "pw-SECRET-wrong-0b7e";
const WRONG_SOAP_PASSWORD: &str = "pw-SECRET-wrong-soap-77c1";

/// What one run wrote: stderr, stdout, the events file, and the admin server's `/metrics`,
/// `/report` and `/` as one text.
struct Written {
    stderr: String,
    stdout: String,
    events: String,
    admin: String,
}

/// One binary, one run of every path. Returns the secrets that were in play and what the
/// process wrote.
async fn run_every_path(log_format: &str) -> (Vec<(String, String)>, Written) {
    let up = Upstreams::start().await;
    up.sf.edit(|w| {
        w.org_mut(acme::ORG_ID)
            .app_mut(acme::CLIENT_ID)
            .refresh_tokens
            .push((REFRESH_TOKEN.into(), acme::USERNAME.into()));
        // The sandbox app lost its Run As user: its in-place upgrade fails.
        w.org_mut(acme_qa::ORG_ID)
            .app_mut(acme_qa::CLIENT_ID)
            .run_as_user = None;
    });
    // The JWT user's configured verifier (`password_hash`).
    let configured_hash = password_hash(acme::REPORTS_PASSWORD);
    // SOAP login(): the integration user's password + security token, upgraded with the app's
    // secret from the environment, checked against a configured verifier.
    let soap_password = format!("{}{}", acme::PASSWORD, acme::SECURITY_TOKEN);
    let soap_hash = password_hash(&soap_password);
    let config = [
        rollout_toml(TEST_HOST, "observe", 100, true),
        rollout_toml(acme_qa::MY_DOMAIN, "upgrade", 100, false),
        rollout_toml("*", "upgrade", 100, true),
        credentials_toml(acme::USERNAME, acme::MY_DOMAIN),
        credentials_toml(acme::PLUS_USERNAME, DOWN_MY_DOMAIN),
        jwt_credentials_toml(
            acme::REPORTS_USERNAME,
            Some(acme::MY_DOMAIN),
            "jwt-app.pkcs8.pem",
        ),
        format!(
            "password_hash = {}\n\n",
            testkit::proxy::toml_str(&configured_hash)
        ),
        format!(
            "[[credentials]]\nusername = {}\nclient_id = {}\nclient_secret_env = \"GS_SOAP_APP_SECRET\"\nmy_domain = {}\npassword_hash = {}\n\n",
            testkit::proxy::toml_str(acme::USERNAME),
            testkit::proxy::toml_str(acme::CLIENT_ID),
            testkit::proxy::toml_str(acme::MY_DOMAIN),
            testkit::proxy::toml_str(&soap_hash),
        ),
        // Cached sessions are introspected (the client secret and the token go to Salesforce).
        "[token_cache]\nintrospect = true\n".into(),
    ]
    .concat();
    let builder = TestProxy::builder()
        .connect_to(&format!("{DOWN_MY_DOMAIN}:443"), closed_port())
        .extra_toml(&config);
    let mut bin = BinaryProxy::start_with_env(
        GRANTSHIFT,
        &up,
        &builder,
        log_format,
        Some("debug"),
        &[("GS_SOAP_APP_SECRET", acme::CLIENT_SECRET)],
    )
    .await;

    let basic = basic_auth(acme::CLIENT_ID, acme::CLIENT_SECRET);
    let exp = unix_now() + 180;
    let client_assertion = sign_jwt_with_fixture_key(&serde_json::json!({
        "iss": acme::CLIENT_ID, "sub": acme::USERNAME,
        "aud": "https://login.salesforce.com", "exp": exp,
    }));

    let expect = |reply: &Reply, status: u16, what: &str| {
        assert_eq!(reply.status.as_u16(), status, "{what}: {}", reply.text());
    };

    // upgraded (client credentials), HTTP/1.1, body
    let reply = bin.login(LOGIN_HOST, &acme_password_form()).await;
    expect(&reply, 200, "upgraded");
    let upgraded_token = reply.json()["access_token"].as_str().unwrap().to_owned();
    // upgraded, HTTP/2, everything in the URL
    let mut h2 = bin.intercepted(acme::MY_DOMAIN, Http::H2).await;
    expect(
        &login_in_query(&mut h2, acme::MY_DOMAIN, &acme_password_form()).await,
        200,
        "upgraded over HTTP/2 from the query string",
    );
    // upgraded (JWT bearer)
    let reports = password_form(
        acme::CLIENT_ID,
        acme::CLIENT_SECRET,
        acme::REPORTS_USERNAME,
        acme::REPORTS_PASSWORD,
    );
    expect(&bin.login(LOGIN_HOST, &reports).await, 200, "jwt");
    // skipped: the password does not match the configured verifier (Salesforce refuses it too)
    let wrong = password_form(
        acme::CLIENT_ID,
        acme::CLIENT_SECRET,
        acme::REPORTS_USERNAME,
        WRONG_PASSWORD,
    );
    expect(
        &bin.login(LOGIN_HOST, &wrong).await,
        400,
        "skipped (password_mismatch)",
    );
    // fallback after Salesforce refuses (this app has no client-credentials flow)
    let other_app = password_form(
        acme::OTHER_CLIENT_ID,
        acme::OTHER_CLIENT_SECRET,
        acme::USERNAME,
        acme::PASSWORD,
    );
    expect(
        &bin.login(LOGIN_HOST, &other_app).await,
        200,
        "fallback (400)",
    );
    // fallback after a refused connection
    let plus = password_form(
        acme::CLIENT_ID,
        acme::CLIENT_SECRET,
        acme::PLUS_USERNAME,
        acme::PLUS_PASSWORD,
    );
    expect(
        &bin.login(LOGIN_HOST, &plus).await,
        200,
        "fallback (refused)",
    );
    // failed (fallback off)
    let qa = acme_qa_password_form();
    expect(&bin.login(acme_qa::MY_DOMAIN, &qa).await, 400, "failed");
    // observed
    expect(&bin.login(TEST_HOST, &qa).await, 200, "observed");
    // unmapped
    let run_as = password_form(
        acme::CLIENT_ID,
        acme::CLIENT_SECRET,
        acme::RUN_AS_USERNAME,
        acme::RUN_AS_PASSWORD,
    );
    expect(&bin.login(LOGIN_HOST, &run_as).await, 200, "unmapped");
    // skipped
    let bad = format!("{}&x=%zz", acme_password_form());
    bin.login(LOGIN_HOST, &bad).await;
    // passed: refresh token, client credentials with Basic, the client's own JWT
    let refresh = form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", REFRESH_TOKEN),
        ("client_id", acme::CLIENT_ID),
        ("client_secret", acme::CLIENT_SECRET),
    ]);
    expect(
        &bin.login(LOGIN_HOST, &refresh).await,
        200,
        "passed refresh",
    );
    let mut conn = bin.intercepted(acme::MY_DOMAIN, Http::H1).await;
    let req = conn
        .request(Method::POST, acme::MY_DOMAIN, TOKEN_PATH)
        .header("authorization", &basic)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(full("grant_type=client_credentials"))
        .unwrap();
    expect(&conn.send(req).await, 200, "passed client credentials");
    let jwt = form(&[
        ("grant_type", JWT_BEARER_GRANT),
        ("assertion", &client_assertion),
    ]);
    expect(&bin.login(LOGIN_HOST, &jwt).await, 200, "passed jwt");

    // From the token cache: the first login's session handed out again (HTTP/1.1 body, HTTP/2
    // query), a client accepting gzip (its compressed answer is kept and handed out too), an
    // API call with the cached session, and a revoke of it (answered by grantshift).
    let mut handed_out = Vec::new();
    let hit = bin.login(LOGIN_HOST, &acme_password_form()).await;
    expect(&hit, 200, "cache hit");
    handed_out.push(hit.json()["access_token"].as_str().unwrap().to_owned());
    let mut h2 = bin.intercepted(acme::MY_DOMAIN, Http::H2).await;
    let hit = login_in_query(&mut h2, acme::MY_DOMAIN, &acme_password_form()).await;
    expect(&hit, 200, "cache hit over HTTP/2 from the query string");
    handed_out.push(hit.json()["access_token"].as_str().unwrap().to_owned());
    assert_eq!(
        handed_out,
        [upgraded_token.clone(), upgraded_token.clone()],
        "the cache handed out the first login's session"
    );
    // The first login's session was introspected; the next one's introspection fails (its
    // debug log names why, never what was sent).
    let admin_addr = bin.bin.admin_addr().await;
    introspected(admin_addr, "ok").await;
    up.sf
        .introspection()
        .fail_with(Some(http::StatusCode::SERVICE_UNAVAILABLE));
    let mut gzip_bodies = Vec::new();
    for what in ["gzip login (cached)", "gzip login (from the cache)"] {
        let mut conn = bin.intercepted(LOGIN_HOST, Http::H1).await;
        let req = conn
            .request(Method::POST, LOGIN_HOST, TOKEN_PATH)
            .header("accept-encoding", "gzip")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(full(acme_password_form()))
            .unwrap();
        let reply = conn.send(req).await;
        expect(&reply, 200, what);
        assert_eq!(reply.header("content-encoding"), Some("gzip"), "{what}");
        gzip_bodies.push(reply.body.clone());
    }
    assert_eq!(gzip_bodies[0], gzip_bodies[1], "the same compressed answer");
    let mut api = bin.intercepted(acme::MY_DOMAIN, Http::H1).await;
    let call = api
        .get_with_bearer(
            acme::MY_DOMAIN,
            "/services/data/v62.0/limits",
            &upgraded_token,
        )
        .await;
    expect(&call, 200, "API call with the cached session");
    let revoke = post_form(
        &mut api,
        acme::MY_DOMAIN,
        "/services/oauth2/revoke",
        &form(&[("token", &upgraded_token)]),
    )
    .await;
    expect(&revoke, 200, "revoke of the cached session (shielded)");
    introspected(admin_addr, "error").await;

    // SOAP login(): upgraded (the session is an OAuth one), again from the cache, a wrong
    // password (forwarded, Salesforce's fault), and a logout of the shared session (answered
    // by grantshift).
    let soap = |password: &str| {
        format!(
            r#"<se:Envelope xmlns:se="http://schemas.xmlsoap.org/soap/envelope/"><se:Body><login xmlns="urn:partner.soap.sforce.com"><username>{}</username><password>{password}</password></login></se:Body></se:Envelope>"#,
            acme::USERNAME
        )
    };
    let mut soap_sessions = Vec::new();
    for (password, status, what) in [
        (soap_password.as_str(), 200, "SOAP login upgraded"),
        (soap_password.as_str(), 200, "SOAP login from the cache"),
        (WRONG_SOAP_PASSWORD, 500, "SOAP login with a wrong password"),
    ] {
        let mut conn = bin.intercepted(LOGIN_HOST, Http::H1).await;
        let req = conn
            .request(Method::POST, LOGIN_HOST, "/services/Soap/u/64.0")
            .header("content-type", "text/xml; charset=UTF-8")
            .header("soapaction", "\"\"")
            .body(full(soap(password)))
            .unwrap();
        let reply = conn.send(req).await;
        expect(&reply, status, what);
        let xml = reply.text();
        if let Some(start) = xml.find("<sessionId>") {
            let rest = &xml[start + "<sessionId>".len()..];
            soap_sessions.push(rest[..rest.find('<').unwrap()].to_owned());
        }
    }
    assert_eq!(soap_sessions.len(), 2, "two SOAP sessions handed out");
    let mut api = bin.intercepted(acme::MY_DOMAIN, Http::H1).await;
    let logout = format!(
        r#"<se:Envelope xmlns:se="http://schemas.xmlsoap.org/soap/envelope/"><se:Header><SessionHeader xmlns="urn:partner.soap.sforce.com"><sessionId>{}</sessionId></SessionHeader></se:Header><se:Body><logout xmlns="urn:partner.soap.sforce.com"/></se:Body></se:Envelope>"#,
        soap_sessions[0]
    );
    let req = api
        .request(
            Method::POST,
            acme::MY_DOMAIN,
            &format!("/services/Soap/u/64.0/{}", &acme::ORG_ID[..15]),
        )
        .header("content-type", "text/xml; charset=UTF-8")
        .body(full(logout))
        .unwrap();
    expect(
        &api.send(req).await,
        200,
        "SOAP logout of the cached session (shielded)",
    );

    // What the admin server shows.
    let mut admin = String::new();
    for path in ["/metrics", "/report", "/"] {
        let reply = testkit::admin::admin_get(admin_addr, path).await;
        assert_eq!(reply.status, 200, "{path}");
        admin.push_str(&reply.text());
    }
    assert!(
        admin.contains("\"password_verifier\": \"learned\""),
        "the report shows learned verifiers: {admin}"
    );
    bin.stop().await;

    // The secrets that were in play.
    let mut secrets: Vec<(String, String)> = [
        ("password", acme::PASSWORD),
        ("password", acme::REPORTS_PASSWORD),
        ("password", acme::PLUS_PASSWORD),
        ("password", acme::RUN_AS_PASSWORD),
        ("password", acme_qa::PASSWORD),
        ("password", WRONG_PASSWORD),
        ("SOAP password", soap_password.as_str()),
        ("security token", acme::SECURITY_TOKEN),
        ("SOAP password", WRONG_SOAP_PASSWORD),
        ("client secret", acme::CLIENT_SECRET),
        ("client secret", acme::OTHER_CLIENT_SECRET),
        ("client secret", acme_qa::CLIENT_SECRET),
        ("refresh token", REFRESH_TOKEN),
        ("Basic credentials", basic.trim_start_matches("Basic ")),
        ("client's assertion", client_assertion.as_str()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for session in soap_sessions {
        let random = session.split_once('!').unwrap().1.to_string();
        secrets.push(("SOAP session id".into(), session));
        secrets.push(("SOAP session id (after the org id)".into(), random));
    }
    for token in handed_out {
        let random = token.split_once('!').unwrap().1.to_string();
        secrets.push(("access token from the cache".into(), token));
        secrets.push((
            "access token from the cache (after the org id)".into(),
            random,
        ));
    }
    for issued in up.sf.issued() {
        let random = issued.access_token.split_once('!').unwrap().1.to_string();
        secrets.push(("access token".into(), issued.access_token.clone()));
        secrets.push(("access token (after the org id)".into(), random));
        if let Some(sig) = issued.signature {
            secrets.push(("signature".into(), sig));
        }
    }
    let mut assertions = 0;
    for r in up.sf.token_requests() {
        if let Some(assertion) = r.param("assertion") {
            assertions += 1;
            let signature = assertion.rsplit('.').next().unwrap().to_string();
            secrets.push(("assertion".into(), assertion));
            secrets.push(("assertion signature".into(), signature));
        }
    }
    assert_eq!(assertions, 2, "grantshift's assertion and the client's");
    for key in ["jwt-app.pkcs8.pem", "jwt-app.pkcs1.pem"] {
        let pem = std::fs::read_to_string(fixture(key)).unwrap();
        for line in pem.lines().filter(|l| !l.starts_with("-----")) {
            secrets.push((format!("private key ({key})"), line.to_string()));
        }
    }
    secrets.push(("private key".into(), "PRIVATE KEY".into()));
    // The verifiers: configured, and learned from the logins Salesforce accepted as they came
    // (observed, unmapped, the two fallbacks).
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bin.state_file()).expect("a state file"))
            .expect("the state file is JSON");
    let mut verifiers: Vec<String> = state["verifiers"]
        .as_array()
        .expect("verifiers")
        .iter()
        .map(|v| v["verifier"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(verifiers.len(), 4, "{state}");
    verifiers.push(configured_hash);
    verifiers.push(soap_hash);
    for verifier in verifiers {
        let mut parts = verifier.rsplit('$');
        let (hash, salt) = (parts.next().unwrap(), parts.next().unwrap());
        secrets.push(("verifier hash".into(), hash.to_string()));
        secrets.push(("verifier salt".into(), salt.to_string()));
        secrets.push(("verifier".into(), verifier));
    }
    secrets.push(("verifier".into(), "$argon2".into()));
    // Also as they look inside a form (signatures and tokens have reserved characters).
    let encoded: Vec<(String, String)> = secrets
        .iter()
        .map(|(k, v)| {
            let form = serde_urlencoded::to_string([("", v.as_str())]).unwrap();
            (format!("{k} (form-encoded)"), form[1..].to_string())
        })
        .filter(|(_, v)| !secrets.iter().any(|(_, s)| s == v))
        .collect();
    secrets.extend(encoded);

    let events = std::fs::read_to_string(bin.events_path()).unwrap_or_default();
    let written = Written {
        stderr: bin.bin.stderr(),
        stdout: bin.bin.stdout(),
        events,
        admin,
    };
    (secrets, written)
}

/// A password digest (HMAC-SHA-256) lives in memory only, under a key that never leaves the
/// process: it cannot be listed as a secret. No output has a run of 43 or more base64 (or 64
/// hex) characters, which is what a 32-byte digest would print as.
fn assert_no_opaque_blob(what: &str, text: &str) {
    let plain = strip_ansi(text);
    let mut run = String::new();
    for c in plain.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '+' || c == '/' {
            run.push(c);
            continue;
        }
        assert!(
            run.len() < 43,
            "{what} has a {}-character opaque run (a digest?): {run}",
            run.len()
        );
        run.clear();
    }
}

/// Wait (at most 10 s) until an introspection with `result` has been counted.
async fn introspected(admin: std::net::SocketAddr, result: &str) {
    within(
        10,
        &format!("an introspection with result {result}"),
        async {
            loop {
                let scraped = testkit::admin::scrape(admin).await;
                let n = scraped
                    .value(
                        "grantshift_token_cache_introspections_total",
                        &[("result", result)],
                    )
                    .unwrap_or(0.0);
                if n >= 1.0 {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        },
    )
    .await
}

fn assert_no_secret_in(what: &str, text: &str, secrets: &[(String, String)]) {
    let plain = strip_ansi(text);
    for (kind, secret) in secrets {
        for line in plain.lines() {
            assert!(
                !line.contains(secret.as_str()),
                "a {kind} appears in {what}:\n{line}"
            );
        }
    }
}

async fn no_secret_reaches_logs_stdout_or_events(log_format: &str) {
    let (secrets, written) = run_every_path(log_format).await;
    let Written {
        stderr,
        stdout,
        events,
        admin,
    } = written;
    // The checks below can fail: there is output to look at.
    let event_lines: Vec<serde_json::Value> = events
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON event"))
        .collect();
    assert_eq!(
        event_lines.len(),
        22,
        "one event per token request, per SOAP login and per shielded revoke or logout:\n{events}"
    );
    let actions: Vec<&str> = event_lines
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "upgraded",
            "upgraded",
            "upgraded",
            "skipped",
            "fallback",
            "fallback",
            "failed",
            "observed",
            "unmapped",
            "skipped",
            "passed",
            "passed",
            "passed",
            "upgraded",
            "upgraded",
            "upgraded",
            "upgraded",
            "revoke_shielded",
            "upgraded",
            "upgraded",
            "skipped",
            "revoke_shielded"
        ]
    );
    let soap: Vec<(&str, &str)> = event_lines[18..]
        .iter()
        .map(|e| {
            (
                e["grant"].as_str().unwrap_or("-"),
                e["cache"].as_str().or(e["reason"].as_str()).unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        soap,
        [
            ("soap_login", "miss"),
            ("soap_login", "hit"),
            ("soap_login", "password_mismatch"),
            ("soap_login", "-")
        ]
    );
    let cache: Vec<&str> = event_lines
        .iter()
        .map(|e| e["cache"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(
        (&cache[..2], &cache[13..18]),
        (
            &["miss", "hit"][..],
            &["hit", "hit", "miss", "hit", "-"][..]
        ),
        "sessions handed out from the token cache"
    );
    assert!(
        strip_ansi(&stderr).contains("DEBUG"),
        "debug logging was on:\n{stderr}"
    );
    assert_eq!(
        strip_ansi(&stderr).matches("token request").count(),
        20,
        "one log line per token request and SOAP login"
    );
    assert_eq!(event_lines[2]["password_check"], "verified");
    assert_eq!(event_lines[3]["password_check"], "mismatch");
    assert_eq!(event_lines[3]["reason"], "password_mismatch");

    assert_no_secret_in("the events file", &events, &secrets);
    assert_no_secret_in("stderr", &stderr, &secrets);
    assert_no_secret_in("stdout", &stdout, &secrets);
    assert_no_secret_in("the admin server", &admin, &secrets);
    for (what, text) in [
        ("the events file", &events),
        ("stderr", &stderr),
        ("stdout", &stdout),
        ("the admin server", &admin),
    ] {
        assert_no_opaque_blob(what, text);
    }
}

#[tokio::test]
async fn no_secret_reaches_debug_logs_stdout_or_events_with_json_logs() {
    no_secret_reaches_logs_stdout_or_events("json").await;
}

#[tokio::test]
async fn no_secret_reaches_debug_logs_stdout_or_events_with_human_logs() {
    no_secret_reaches_logs_stdout_or_events("human").await;
}
