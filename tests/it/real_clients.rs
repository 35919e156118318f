//! Real clients, as users run them, pointed at grantshift with their own proxy and CA settings:
//! Python `requests` (`HTTPS_PROXY` + `REQUESTS_CA_BUNDLE`), simple-salesforce on its OAuth
//! password-grant path, jsforce 3 (`oauth2` + `conn.login`, `HTTPS_PROXY` +
//! `NODE_EXTRA_CA_CERTS`), Java 17's `HttpClient` (a `ProxySelector` and a keytool-built PKCS12
//! truststore), Java's `HttpURLConnection` (`-Dhttps.proxyHost/Port` and the same truststore),
//! Go's `net/http` (`HTTPS_PROXY` + `SSL_CERT_FILE`) and curl over HTTP/1.1 and HTTP/2.
//!
//! Each logs in as the acme integration user at login.salesforce.com with the password grant,
//! gets a token that grantshift obtained by client credentials at acme's My Domain, and makes
//! one REST call with it at the `instance_url` it got (through the proxy too). No client
//! resolves a Salesforce name: they only talk to the proxy, which reaches the fake Salesforce
//! through `connect_to`. `scripts/test` installs the pinned clients (tests/clients/); a missing
//! one fails its test with a message saying to run it. With `GS_EXTRA=1` a client also POSTs
//! 1 MiB to `/echo` and GETs `/bytes` through grantshift (see testkit/src/clients.rs).

use crate::GRANTSHIFT;
use testkit::clients::*;
use testkit::*;

/// An in-process grantshift mapping the acme user to its My Domain.
async fn mapped_proxy() -> (TestProxy, ClientProxy) {
    let proxy = TestProxy::start(&acme_mapping()).await;
    let client = ClientProxy {
        addr: proxy.addr(),
        ca_pem_path: proxy.ca_pem_path().to_path_buf(),
    };
    (proxy, client)
}

#[tokio::test]
async fn python_requests_through_the_binary_gets_an_upgraded_token_and_calls_rest_with_it() {
    let up = Upstreams::start().await;
    let builder = TestProxy::builder().extra_toml(&acme_mapping());
    let mut bin = BinaryProxy::start(GRANTSHIFT, &up, &builder, "json", None).await;
    let proxy = ClientProxy {
        addr: bin.bin.addr(),
        ca_pem_path: bin.dir().join("grantshift-ca.pem"),
    };
    let work = tempfile::tempdir().unwrap();
    let cmd = python_client(
        "requests_login.py",
        &[&format!("https://{LOGIN_HOST}"), API_PATH],
        &proxy,
        work.path(),
    );
    let out = run_client("python requests", cmd).await;
    assert_eq!(
        out["client"],
        format!("requests/{}", pinned_python("requests")).as_str(),
        "the pinned requests ran: {RUN_SCRIPTS_TEST}"
    );
    assert_upgraded_login_then_rest_call("python requests", &out, &up.sf);

    bin.stop().await;
    let events = bin.events_in_file();
    assert_eq!(events.len(), 1, "one token request: {events:#?}");
    assert_upgraded_event(&events[0], LOGIN_HOST);
}

#[tokio::test]
async fn simple_salesforce_oauth_password_login_is_upgraded_and_its_rest_call_succeeds() {
    let (proxy, client) = mapped_proxy().await;
    let work = tempfile::tempdir().unwrap();
    let cmd = python_client(
        "simple_salesforce_login.py",
        &[API_VERSION],
        &client,
        work.path(),
    );
    let out = run_client("simple-salesforce", cmd).await;
    assert_eq!(
        out["client"],
        format!("simple-salesforce/{}", pinned_python("simple-salesforce")).as_str(),
        "the pinned simple-salesforce ran: {RUN_SCRIPTS_TEST}"
    );
    assert_upgraded_login_then_rest_call("simple-salesforce", &out, &proxy.sf);
    assert_upgraded_event(&proxy.next_event().await, LOGIN_HOST);
}

#[tokio::test]
async fn jsforce_oauth2_login_is_upgraded_and_its_rest_call_succeeds() {
    let (proxy, client) = mapped_proxy().await;
    let work = tempfile::tempdir().unwrap();
    let cmd = node_client(
        "jsforce_login.js",
        &[&format!("https://{LOGIN_HOST}"), API_VERSION],
        &client,
        work.path(),
    );
    let out = run_client("jsforce", cmd).await;
    assert_eq!(
        out["client"],
        format!("jsforce/{}", pinned_npm("jsforce")).as_str(),
        "the pinned jsforce ran: {RUN_SCRIPTS_TEST}"
    );
    assert_upgraded_login_then_rest_call("jsforce", &out, &proxy.sf);
    // jsforce parses the identity URL of the token response: the Run As user's.
    assert_eq!(out["user_id"], acme::RUN_AS_USER_ID);
    assert_eq!(out["organization_id"], acme::ORG_ID);
    assert_upgraded_event(&proxy.next_event().await, LOGIN_HOST);
}

#[tokio::test]
async fn java_httpclient_with_proxy_selector_and_keytool_truststore_logs_in_over_h2_and_calls_rest()
{
    let (proxy, client) = mapped_proxy().await;
    let build_root = clients_dir().join("java");
    std::fs::create_dir_all(&build_root).expect("create target/clients/java");
    let build = tempfile::Builder::new()
        .prefix("build-")
        .tempdir_in(&build_root)
        .unwrap();
    let cmd = java_client(&client, &format!("https://{LOGIN_HOST}"), build.path()).await;
    let out = run_client("java HttpClient", cmd).await;
    assert!(
        out["client"]
            .as_str()
            .is_some_and(|c| c.starts_with("java-httpclient/17")),
        "Java 17 ran: {out:#}"
    );
    assert_eq!(
        out["token_http_version"], "HTTP_2",
        "HttpClient negotiated h2 with grantshift's interception"
    );
    assert_eq!(out["data_http_version"], "HTTP_2");
    assert_upgraded_login_then_rest_call("java HttpClient", &out, &proxy.sf);
    assert_upgraded_event(&proxy.next_event().await, LOGIN_HOST);
}

/// A fresh build directory under `target/clients/<kind>` (kept out of the system temp dir).
fn build_dir(kind: &str) -> tempfile::TempDir {
    let root = clients_dir().join(kind);
    std::fs::create_dir_all(&root).unwrap_or_else(|e| panic!("create {}: {e}", root.display()));
    tempfile::Builder::new()
        .prefix("build-")
        .tempdir_in(&root)
        .unwrap()
}

#[tokio::test]
async fn java_httpurlconnection_with_https_proxy_properties_logs_in_over_http11_and_calls_rest() {
    let (proxy, client) = mapped_proxy().await;
    let build = build_dir("java");
    let cmd = url_connection_client(&client, &format!("https://{LOGIN_HOST}"), build.path()).await;
    let out = run_client("java HttpURLConnection", cmd).await;
    assert!(
        out["client"]
            .as_str()
            .is_some_and(|c| c.starts_with("java-httpurlconnection/17")),
        "Java 17 ran: {out:#}"
    );
    assert_eq!(
        out["token_http_version"], "HTTP/1.1",
        "HttpURLConnection speaks HTTP/1.1 only: {out:#}"
    );
    assert_eq!(out["data_http_version"], "HTTP/1.1", "{out:#}");
    assert_upgraded_login_then_rest_call("java HttpURLConnection", &out, &proxy.sf);
    assert_upgraded_event(&proxy.next_event().await, LOGIN_HOST);
}

#[tokio::test]
async fn go_net_http_with_https_proxy_and_ssl_cert_file_logs_in_over_h2_and_calls_rest() {
    let (proxy, client) = mapped_proxy().await;
    let build = build_dir("go");
    let cmd = go_client(&client, &format!("https://{LOGIN_HOST}"), build.path()).await;
    let out = run_client("go net/http", cmd).await;
    assert!(
        out["client"]
            .as_str()
            .is_some_and(|c| c.starts_with("go-net-http/go")),
        "Go's net/http ran: {out:#}"
    );
    assert_eq!(
        out["token_http_version"], "HTTP/2.0",
        "net/http negotiated h2 with grantshift's interception: {out:#}"
    );
    assert_eq!(out["data_http_version"], "HTTP/2.0", "{out:#}");
    assert_upgraded_login_then_rest_call("go net/http", &out, &proxy.sf);
    assert_upgraded_event(&proxy.next_event().await, LOGIN_HOST);
}

#[tokio::test]
async fn python_requests_extra_steps_post_1mib_and_get_bytes_intact_through_interception() {
    let (proxy, client) = mapped_proxy().await;
    let work = tempfile::tempdir().unwrap();
    let mut cmd = python_client(
        "requests_login.py",
        &[&format!("https://{LOGIN_HOST}"), API_PATH],
        &client,
        work.path(),
    );
    with_extra_steps(&mut cmd);
    let out = run_client("python requests (extra steps)", cmd).await;
    assert_upgraded_login_then_rest_call("python requests (extra steps)", &out, &proxy.sf);
    let echo = assert_extra_steps("python requests", &out);
    assert_eq!(out["echo_http_version"], "HTTP/1.1", "{out:#}");
    assert_eq!(out["get_http_version"], "HTTP/1.1", "{out:#}");
    assert_eq!(echo["host"], LOGIN_HOST, "{echo:#}");
    assert_upgraded_event(&proxy.next_event().await, LOGIN_HOST);
}

async fn curl_login_is_upgraded_and_its_token_works(flag: &str, version: &str) {
    let (proxy, client) = mapped_proxy().await;
    let work = tempfile::tempdir().unwrap();
    let out = curl_login_then_rest_call(&CurlRoute::Proxy(client), flag, work.path()).await;
    assert_eq!(out["token_http_version"], version, "{out:#}");
    assert_eq!(out["data_http_version"], version, "{out:#}");
    assert_upgraded_login_then_rest_call(&format!("curl {flag}"), &out, &proxy.sf);
    assert_upgraded_event(&proxy.next_event().await, LOGIN_HOST);
}

#[tokio::test]
async fn curl_http11_login_is_upgraded_and_its_token_works_at_the_instance_url() {
    curl_login_is_upgraded_and_its_token_works("--http1.1", "1.1").await;
}

#[tokio::test]
async fn curl_http2_login_is_upgraded_and_its_token_works_at_the_instance_url() {
    curl_login_is_upgraded_and_its_token_works("--http2", "2").await;
}
