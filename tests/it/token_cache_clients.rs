//! The token cache as real clients meet it: simple-salesforce and jsforce log in 20 times
//! through grantshift (each login a new client object, as 20 programs sharing one connected
//! app would), and each session makes a REST call. Salesforce sees one client-credentials
//! login; every client gets that session and it works. A jsforce `logout()` (an OAuth2
//! revoke) of the shared session is answered by grantshift, so the other clients keep it, and
//! the next login is a fresh session.

use testkit::clients::*;
use testkit::*;

const LOGINS: usize = 20;

/// An in-process grantshift mapping the acme user to its My Domain, with `[token_cache]`
/// as it is by default.
async fn mapped_proxy() -> (TestProxy, ClientProxy) {
    let proxy = TestProxy::start(&acme_mapping()).await;
    let client = ClientProxy {
        addr: proxy.addr(),
        ca_pem_path: proxy.ca_pem_path().to_path_buf(),
    };
    (proxy, client)
}

/// The client-credentials logins the fake Salesforce answered (at acme's My Domain).
fn upgraded_logins(sf: &FakeSalesforce) -> Vec<Recorded> {
    sf.token_requests()
        .into_iter()
        .filter(|r| {
            r.host_name() == Some(acme::MY_DOMAIN)
                && r.param("grant_type").as_deref() == Some("client_credentials")
        })
        .collect()
}

/// The `sessions` a `--logins N` client line holds: `n` of them.
fn sessions(what: &str, out: &serde_json::Value, n: usize) -> Vec<serde_json::Value> {
    let sessions = out["sessions"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no sessions (did it get --logins?): {out:#}"));
    assert_eq!(sessions.len(), n, "{what}: {out:#}");
    sessions.clone()
}

/// One session of a client line: it holds `token` at acme's My Domain and its REST call was
/// answered 200 for the Run As user.
fn assert_session_works(what: &str, session: &serde_json::Value, token: &str) {
    assert_eq!(
        session["access_token"].as_str(),
        Some(token),
        "{what}: {session:#}"
    );
    assert_eq!(
        session["instance_url"]
            .as_str()
            .map(|u| u.trim_end_matches('/')),
        Some(format!("https://{}", acme::MY_DOMAIN).as_str()),
        "{what}: {session:#}"
    );
    assert_eq!(session["data_status"], 200, "{what}: {session:#}");
    let data: serde_json::Value = serde_json::from_str(
        session["data_body"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no data_body: {session:#}")),
    )
    .unwrap_or_else(|e| panic!("{what}: the REST body is not JSON ({e}): {session:#}"));
    assert_eq!(data["userId"], acme::RUN_AS_USER_ID, "{what}: {data}");
    assert_eq!(data["organizationId"], acme::ORG_ID, "{what}: {data}");
}

/// `n` logins of a client went through grantshift and each made a REST call; the fake saw one
/// client-credentials login and minted one token, every session holds it, and the fake
/// answered `n` REST calls carrying it with 200. Returns the token.
fn assert_one_session_shared_by_all(
    what: &str,
    sessions: &[serde_json::Value],
    sf: &FakeSalesforce,
) -> String {
    let logins = sf.token_requests();
    assert_eq!(
        logins.len(),
        1,
        "{what}: the fake saw one login for {} client logins: {:?}",
        sessions.len(),
        logins
            .iter()
            .map(|r| (&r.host, r.param("grant_type")))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        upgraded_logins(sf).len(),
        1,
        "{what}: the login was upgraded"
    );
    let minted = sf.issued();
    assert_eq!(minted.len(), 1, "{what}: one token minted");
    let token = minted[0].access_token.clone();
    for (i, session) in sessions.iter().enumerate() {
        assert_session_works(&format!("{what}, login {}", i + 1), session, &token);
    }
    let calls = rest_calls(sf);
    assert_eq!(calls.len(), sessions.len(), "{what}: one REST call a login");
    let bearer = format!("Bearer {token}");
    for call in &calls {
        assert_eq!(call.path, API_PATH, "{what}");
        assert_eq!(call.host_name(), Some(acme::MY_DOMAIN), "{what}");
        assert_eq!(
            call.header_values("authorization"),
            vec![bearer.as_str()],
            "{what}"
        );
        assert_eq!(call.response_status, Some(200), "{what}");
    }
    token
}

/// The next `n` events are the client's logins, upgraded: the first a cache miss, the others
/// hits.
async fn assert_one_miss_then_hits(what: &str, proxy: &TestProxy, n: usize) {
    let mut seen = Vec::new();
    for _ in 0..n {
        let event = proxy.next_event().await;
        assert_upgraded_event(&event, LOGIN_HOST);
        seen.push(event["cache"].as_str().unwrap_or("(none)").to_string());
    }
    let mut expected = vec!["miss".to_string()];
    expected.resize(n, "hit".to_string());
    assert_eq!(seen, expected, "{what}: the cache use of each login");
}

#[tokio::test]
async fn simple_salesforce_twenty_logins_share_one_upstream_login_and_every_session_works() {
    let (proxy, client) = mapped_proxy().await;
    let work = tempfile::tempdir().unwrap();
    let logins = LOGINS.to_string();
    let cmd = python_client(
        "simple_salesforce_login.py",
        &[API_VERSION, "--logins", &logins],
        &client,
        work.path(),
    );
    let out = run_client("simple-salesforce", cmd).await;
    assert_eq!(
        out["client"],
        format!("simple-salesforce/{}", pinned_python("simple-salesforce")).as_str(),
        "the pinned simple-salesforce ran: {RUN_SCRIPTS_TEST}"
    );
    let sessions = sessions("simple-salesforce", &out, LOGINS);
    assert_one_session_shared_by_all("simple-salesforce", &sessions, &proxy.sf);
    assert_one_miss_then_hits("simple-salesforce", &proxy, LOGINS).await;
}

#[tokio::test]
async fn jsforce_twenty_logins_share_one_session_and_one_logout_does_not_end_it_for_the_others() {
    let (proxy, client) = mapped_proxy().await;
    let work = tempfile::tempdir().unwrap();
    let logins = LOGINS.to_string();
    let login_url = format!("https://{LOGIN_HOST}");
    let cmd = node_client(
        "jsforce_login.js",
        &[&login_url, API_VERSION, "--logins", &logins, "--logout"],
        &client,
        work.path(),
    );
    let out = run_client("jsforce", cmd).await;
    assert_eq!(
        out["client"],
        format!("jsforce/{}", pinned_npm("jsforce")).as_str(),
        "the pinned jsforce ran: {RUN_SCRIPTS_TEST}"
    );
    let sessions = sessions("jsforce", &out, LOGINS);
    // What the fake saw for the 20 logins comes first (rest_calls counts the later ones).
    let logins_seen = upgraded_logins(&proxy.sf);
    assert_eq!(logins_seen.len(), 2, "the 20 logins, then the fresh one");
    let token = proxy.sf.issued()[0].access_token.clone();
    for (i, session) in sessions.iter().enumerate() {
        assert_session_works(&format!("jsforce, login {}", i + 1), session, &token);
    }
    assert_one_miss_then_hits("jsforce", &proxy, LOGINS).await;

    // The first client's logout(): an OAuth2 revoke of the shared token at login.salesforce.com.
    // The last client's session still works after it: grantshift answered the revoke, and
    // Salesforce never saw it.
    assert_eq!(out["logout"], "ok", "jsforce's logout() succeeded: {out:#}");
    // (jsforce would log in again by itself on a 401 and retry: the session it holds after
    // the call is the one it had.)
    assert_session_works(
        "jsforce, another session after the logout",
        &out["after_logout"],
        &token,
    );
    assert!(
        proxy.sf.requests_to("/services/oauth2/revoke").is_empty(),
        "the revoke never reached Salesforce: {:?}",
        proxy.sf.requests_to("/services/oauth2/revoke")
    );
    let shielded = proxy.next_event().await;
    assert_eq!(shielded["action"], "revoke_shielded", "{shielded:#}");
    assert_eq!(shielded["host"], LOGIN_HOST, "{shielded:#}");
    assert_eq!(shielded["status"], 200, "{shielded:#}");
    assert!(
        !shielded.to_string().contains(&token),
        "no token in the event: {shielded}"
    );

    // The next login is a fresh session: a miss, a second client-credentials login, a new
    // token that works.
    let fresh = proxy.next_event().await;
    assert_upgraded_event(&fresh, LOGIN_HOST);
    assert_eq!(fresh["cache"], "miss", "{fresh:#}");
    let minted = proxy.sf.issued();
    assert_eq!(minted.len(), 2, "a second token minted");
    let fresh_token = minted[1].access_token.clone();
    assert_ne!(fresh_token, token);
    assert_session_works(
        "jsforce, the login after the logout",
        &out["fresh"],
        &fresh_token,
    );

    // 20 REST calls and the one after the logout with the shared token, one with the fresh
    // token; all answered 200.
    let calls = rest_calls(&proxy.sf);
    let with = |t: &str| {
        let bearer = format!("Bearer {t}");
        calls
            .iter()
            .filter(|c| c.header_values("authorization") == vec![bearer.as_str()])
            .filter(|c| c.response_status == Some(200))
            .count()
    };
    assert_eq!(
        calls.len(),
        LOGINS + 2,
        "{:?}",
        calls.iter().map(|c| &c.path).collect::<Vec<_>>()
    );
    assert_eq!(with(&token), LOGINS + 1, "the shared session's calls");
    assert_eq!(with(&fresh_token), 1, "the fresh session's call");
}
