//! The upgrade through the real `grantshift` binary, as an operator runs it: a mapped login is
//! upgraded, a refused upgrade falls back, an unmapped login goes through unchanged; each
//! token request logs one `token request` line and one line in the events file.

use crate::GRANTSHIFT;
use testkit::*;

async fn start(up: &Upstreams) -> BinaryProxy {
    let builder = TestProxy::builder().extra_toml(&acme_mapping());
    BinaryProxy::start(GRANTSHIFT, up, &builder, "json", None).await
}

#[tokio::test]
async fn binary_upgrades_a_mapped_login_to_its_my_domain() {
    let up = Upstreams::start().await;
    let mut bin = start(&up).await;
    let reply = bin.login(LOGIN_HOST, &acme_password_form()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    let seen = up.sf.token_requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].sni.as_deref(), Some(acme::MY_DOMAIN));
    assert_eq!(seen[0].host_name(), Some(acme::MY_DOMAIN));
    assert_eq!(
        String::from_utf8_lossy(&seen[0].body),
        form(&[
            ("grant_type", "client_credentials"),
            ("client_id", acme::CLIENT_ID),
            ("client_secret", acme::CLIENT_SECRET),
        ])
    );
    assert_no_password_login_parameters(&seen[0]);
    assert_eq!(Some(&reply.body[..]), seen[0].response_body.as_deref());

    let logged = bin.bin.wait_for_json_logs("token request", 1).await;
    let fields = &logged[0]["fields"];
    assert_eq!(logged[0]["level"], "INFO");
    assert_eq!(fields["host"], LOGIN_HOST);
    assert_eq!(fields["grant"], "password");
    assert_eq!(fields["client_id"], acme::CLIENT_ID);
    assert_eq!(fields["username"], acme::USERNAME);
    assert_eq!(fields["action"], "upgraded");
    assert_eq!(fields["flow"], "client_credentials");
    assert_eq!(fields["target_host"], acme::MY_DOMAIN);
    assert_eq!(fields["status"], 200);

    bin.stop().await;
    let events = bin.events_in_file();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["action"], "upgraded");
    assert_eq!(events[0]["user_id"], acme::RUN_AS_USER_ID);
}

#[tokio::test]
async fn binary_falls_back_to_the_password_login_when_the_upgrade_is_refused() {
    let up = Upstreams::start().await;
    up.sf
        .edit(|w| w.org_mut(acme::ORG_ID).app_mut(acme::CLIENT_ID).run_as_user = None);
    let mut bin = start(&up).await;
    let body = acme_password_form();
    let reply = bin.login(LOGIN_HOST, &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.json()["id"]
        .as_str()
        .unwrap()
        .ends_with(acme::USER_ID));

    let seen = up.sf.token_requests();
    let hosts: Vec<_> = seen.iter().map(|r| r.host_name().unwrap()).collect();
    assert_eq!(hosts, [acme::MY_DOMAIN, LOGIN_HOST]);
    assert!(
        seen[1].body == body.as_bytes(),
        "the replay is the original"
    );

    let logged = bin.bin.wait_for_json_logs("token request", 1).await;
    assert_eq!(logged[0]["fields"]["action"], "fallback");
    assert_eq!(logged[0]["fields"]["status"], 200);

    bin.stop().await;
    let events = bin.events_in_file();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["action"], "fallback");
    assert_eq!(
        events[0]["upstream_error"]["error_description"],
        "no client credentials user enabled"
    );
}

#[tokio::test]
async fn binary_forwards_an_unmapped_login_unchanged() {
    let up = Upstreams::start().await;
    let mut bin = start(&up).await;
    let body = password_form(
        acme::CLIENT_ID,
        acme::CLIENT_SECRET,
        acme::REPORTS_USERNAME,
        acme::REPORTS_PASSWORD,
    );
    let reply = bin.login(LOGIN_HOST, &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = up.sf.token_requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].host_name(), Some(LOGIN_HOST));
    assert!(seen[0].body == body.as_bytes());
    assert_eq!(Some(&reply.body[..]), seen[0].response_body.as_deref());

    let logged = bin.bin.wait_for_json_logs("token request", 1).await;
    assert_eq!(logged[0]["fields"]["action"], "unmapped");

    bin.stop().await;
    let events = bin.events_in_file();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["action"], "unmapped");
    assert_eq!(events[0]["instance_url"], "https://acme.my.salesforce.com");
}

/// The `spans` of a JSON log line, by span name.
fn span<'a>(line: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    line["spans"]
        .as_array()
        .and_then(|spans| spans.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no `{name}` span in {line}"))
}

#[tokio::test]
async fn log_lines_name_their_client_connection_and_request_but_never_the_query() {
    const GONE: &str = "gone.my.salesforce.com";
    let up = Upstreams::start().await;
    let builder = TestProxy::builder()
        .connect_to(&format!("{GONE}:443"), closed_port())
        .extra_toml(&acme_mapping());
    let bin = BinaryProxy::start(GRANTSHIFT, &up, &builder, "json", None).await;

    // A login over HTTP/1.1: its `token request` line sits in both spans.
    assert_eq!(
        bin.login(LOGIN_HOST, &acme_password_form()).await.status,
        200
    );
    let token = &bin.bin.wait_for_json_logs("token request", 1).await[0];
    let conn = span(token, "conn");
    assert_eq!(conn["listener"], "proxy", "{token}");
    assert_eq!(conn["kind"], "intercept", "{token}");
    assert_eq!(conn["host"], LOGIN_HOST, "{token}");
    let client: std::net::SocketAddr = conn["client"].as_str().unwrap().parse().unwrap();
    assert!(client.ip().is_loopback(), "{token}");
    let request = span(token, "request");
    assert_eq!(request["method"], "POST", "{token}");
    assert_eq!(request["path"], TOKEN_PATH, "{token}");

    // A failing request over HTTP/2 (hyper runs each stream as a task of its own): the
    // warning names the connection and the path, not the query string.
    let mut h2 = bin.intercepted(GONE, Http::H2).await;
    let reply = h2
        .get(GONE, "/services/data?password=pw-SECRET-in-a-query")
        .await;
    assert_eq!(reply.status, 502);
    let failed = &bin
        .bin
        .wait_for_json_logs("upstream request failed", 1)
        .await[0];
    assert_eq!(failed["level"], "WARN", "{failed}");
    assert_eq!(span(failed, "conn")["host"], GONE, "{failed}");
    assert_eq!(
        span(failed, "request")["path"],
        "/services/data",
        "{failed}"
    );
    assert!(
        !bin.bin.stderr().contains("pw-SECRET-in-a-query"),
        "{failed}"
    );
}

/// No JSON field of a log line is Rust `Debug` text or an empty string.
fn assert_plain_fields(line: &serde_json::Value) {
    for (name, value) in line["fields"].as_object().unwrap() {
        if let Some(text) = value.as_str() {
            assert!(!text.is_empty(), "empty field {name}: {line}");
            assert!(!text.starts_with("Some("), "Debug form in {name}: {line}");
        }
    }
}

#[tokio::test]
async fn token_request_and_failed_upgrade_logs_have_typed_values_and_name_the_credential_set() {
    let up = Upstreams::start().await;
    up.sf
        .edit(|w| w.org_mut(acme::ORG_ID).app_mut(acme::CLIENT_ID).run_as_user = None);
    let mut bin = start(&up).await;
    let reply = bin.login(LOGIN_HOST, &acme_password_form()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    let failed = &bin.bin.wait_for_json_logs("upgraded login failed", 1).await[0];
    assert_eq!(failed["level"], "WARN", "{failed}");
    let fields = &failed["fields"];
    assert_eq!(fields["client_id"], acme::CLIENT_ID, "{failed}");
    assert_eq!(fields["username"], acme::USERNAME, "{failed}");
    assert_eq!(fields["target_host"], acme::MY_DOMAIN, "{failed}");
    assert!(fields["status"].is_u64(), "status is a number: {failed}");
    assert!(fields["error"].is_string(), "{failed}");
    assert_eq!(fields["fallback"], true, "{failed}");
    assert_plain_fields(failed);

    let token = &bin.bin.wait_for_json_logs("token request", 1).await[0];
    assert_eq!(token["level"], "INFO");
    assert_eq!(token["fields"]["status"], 200, "a JSON number: {token}");
    assert_eq!(token["fields"]["action"], "fallback");
    assert_plain_fields(token);

    // An unmapped login has no flow, target_host or reason: they are left out.
    let other = password_form(
        acme::CLIENT_ID,
        acme::CLIENT_SECRET,
        acme::REPORTS_USERNAME,
        acme::REPORTS_PASSWORD,
    );
    assert_eq!(bin.login(LOGIN_HOST, &other).await.status, 200);
    let unmapped = &bin.bin.wait_for_json_logs("token request", 2).await[1];
    assert_eq!(unmapped["fields"]["action"], "unmapped", "{unmapped}");
    for absent in ["flow", "target_host", "reason", "password_check"] {
        assert!(
            unmapped["fields"].get(absent).is_none(),
            "{absent} is left out: {unmapped}"
        );
    }
    assert_plain_fields(unmapped);
    bin.stop().await;
    assert!(
        !bin.bin.stderr().contains("\x1b["),
        "no colour codes in a pipe"
    );
}

#[tokio::test]
async fn human_logs_to_a_pipe_have_no_colour_and_no_debug_values() {
    let up = Upstreams::start().await;
    up.sf
        .edit(|w| w.org_mut(acme::ORG_ID).app_mut(acme::CLIENT_ID).run_as_user = None);
    let builder = TestProxy::builder().extra_toml(&acme_mapping());
    let mut bin = BinaryProxy::start(GRANTSHIFT, &up, &builder, "human", None).await;
    assert_eq!(
        bin.login(LOGIN_HOST, &acme_password_form()).await.status,
        200
    );
    bin.bin
        .wait_for_stderr("a `token request` line", |lines| {
            lines.iter().any(|l| l.contains("token request"))
        })
        .await;
    bin.stop().await;
    let stderr = bin.bin.stderr();
    assert!(
        !stderr.contains("\x1b["),
        "no colour codes in a pipe: {stderr}"
    );
    let failed = stderr
        .lines()
        .find(|l| l.contains("upgraded login failed"))
        .expect("the failed upgrade is logged");
    assert!(failed.contains("WARN"), "{failed}");
    assert!(failed.contains(acme::USERNAME), "{failed}");
    for bad in ["Some(", "=\"\""] {
        assert!(!stderr.contains(bad), "{bad} in the log: {stderr}");
    }
}
