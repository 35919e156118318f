//! `[upstream] proxy`: grantshift behind a corporate proxy. Every upstream connection, blind
//! tunnels and intercepted (upgraded) traffic alike, goes out through it with `CONNECT
//! host:443`, with Basic `Proxy-Authorization` from `[upstream] proxy_auth`.
//!
//! The corporate proxy is a second in-process grantshift that intercepts nothing (so it
//! blind-tunnels everything), requires proxy authentication, and is the only one that knows
//! where the hosts are: `connect_to` with `connect_to_only = true`. The first grantshift has
//! no `connect_to` at all and dials only the corporate proxy's IP literal, so it never looks
//! a name up: the real host names travel in its CONNECT requests.

use testkit::clients::*;
use testkit::*;

const CORP_USER: &str = "corp-svc";
const CORP_PASSWORD_ENV: &str = "GRANTSHIFT_TEST_CORP_PROXY_PW";
const CORP_PASSWORD: &str = "corp-SECRET-3e9b";
const WRONG_PASSWORD_ENV: &str = "GRANTSHIFT_TEST_CORP_PROXY_WRONG_PW";

/// The password variables, given to each in-process proxy's own secrets lookup (the process
/// environment is shared by every test and is not touched).
const PASSWORD_VARS: [(&str, &str); 2] = [
    (CORP_PASSWORD_ENV, CORP_PASSWORD),
    (WRONG_PASSWORD_ENV, "not-the-corp-password"),
];

/// The corporate proxy: Basic auth required, intercepts nothing, reaches the fake Salesforce
/// and the tunnel server only through `connect_to`.
async fn corporate_proxy(up: &Upstreams) -> ConfiguredProxy {
    let mut routes: Vec<(String, std::net::SocketAddr)> = SALESFORCE_HOSTS
        .iter()
        .map(|h| (format!("{h}:443"), up.sf.addr()))
        .collect();
    routes.push((format!("{TUNNEL_HOST}:443"), up.tunnel.addr()));
    let routes: Vec<(&str, std::net::SocketAddr)> =
        routes.iter().map(|(h, a)| (h.as_str(), *a)).collect();
    let text = format!(
        "[proxy]\nadmin_listen = \"\"\nauth = {{ username = {}, password_env = {} }}\n\n\
         {LOCAL_CA_TOML}\
         [upstream]\nconnect_to_only = true\nconnect_timeout = \"5s\"\n\n\
         [upstream.connect_to]\n{}\n\
         [intercept]\nhosts = []\n\n\
         [telemetry]\nevents = \"\"\n",
        toml_str(CORP_USER),
        toml_str(CORP_PASSWORD_ENV),
        connect_to_lines(&routes),
    );
    ConfiguredProxy::start_with_env(&text, &PASSWORD_VARS).await
}

/// grantshift chained to `corp` with `proxy_auth` (`None`: no credentials), the acme user
/// mapped to its My Domain, no `connect_to`, `connect_to_only = false`.
async fn chained_grantshift(
    up: &Upstreams,
    corp: &ConfiguredProxy,
    password_env: Option<&str>,
) -> ConfiguredProxy {
    let auth = password_env
        .map(|env| {
            format!(
                "proxy_auth = {{ username = {}, password_env = {} }}\n",
                toml_str(CORP_USER),
                toml_str(env)
            )
        })
        .unwrap_or_default();
    let text = format!(
        "[proxy]\nadmin_listen = \"\"\n\n\
         {LOCAL_CA_TOML}\
         [upstream]\nextra_root_certs = [{}]\nconnect_timeout = \"5s\"\nrequest_timeout = \"5s\"\n\
         connect_to_only = false\nproxy = {}\n{auth}\n\
         [telemetry]\nevents = \"events.jsonl\"\n\n{}",
        toml_str(up.sf.ca_pem_path().to_str().unwrap()),
        toml_str(format!("http://{}", corp.addr())),
        acme_mapping(),
    );
    ConfiguredProxy::start_with_env(&text, &PASSWORD_VARS).await
}

/// `CONNECT tunnel.example:443` through `proxy`, TLS trusting only the tunnel server's CA, one
/// request.
async fn request_through_blind_tunnel(proxy: &ConfiguredProxy, up: &Upstreams) -> Reply {
    let (status, tcp) = connect_tunnel(proxy.addr(), &format!("{TUNNEL_HOST}:443")).await;
    assert_eq!(status, 200, "CONNECT {TUNNEL_HOST}:443");
    let tls = tls_connect(tcp, TUNNEL_HOST, up.tunnel.ca_pem(), &[b"http/1.1"]).await;
    let mut conn = HttpConn::handshake(tls, Http::H1).await;
    conn.get(TUNNEL_HOST, "/via-corporate-proxy").await
}

#[tokio::test]
async fn intercepted_login_is_upgraded_through_the_corporate_proxy() {
    let up = Upstreams::start().await;
    let corp = corporate_proxy(&up).await;
    let proxy = chained_grantshift(&up, &corp, Some(CORP_PASSWORD_ENV)).await;
    assert_eq!(corp.connections("tunnel"), 0.0);

    let reply = proxy.login(LOGIN_HOST, &acme_password_form()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let token = reply.json();
    assert_eq!(token["scope"], acme::CC_SCOPE, "a client-credentials token");
    assert_eq!(
        corp.connections("tunnel"),
        1.0,
        "the upgraded login's connection to the My Domain went through the corporate proxy"
    );
    assert_eq!(proxy.connections("intercept"), 1.0);
    assert_eq!(proxy.connections("tunnel"), 0.0);

    let seen = up.sf.token_requests();
    assert_eq!(
        seen.len(),
        1,
        "one login reached Salesforce, the upgraded one"
    );
    assert_eq!(seen[0].sni.as_deref(), Some(acme::MY_DOMAIN));
    assert_eq!(
        seen[0].param("grant_type").as_deref(),
        Some("client_credentials")
    );
    assert_no_password_login_parameters(&seen[0]);
    assert_upgraded_event_at_login(&proxy.next_event().await);

    // The token works at the My Domain, through both proxies.
    let mut api = proxy.intercepted(acme::MY_DOMAIN, Http::H1).await;
    let access = token["access_token"].as_str().unwrap();
    let data = api.get_with_bearer(acme::MY_DOMAIN, API_PATH, access).await;
    assert_eq!(data.status, 200, "{}", data.text());
    assert_eq!(data.json()["userId"], acme::RUN_AS_USER_ID);
    assert_eq!(rest_calls(&up.sf).len(), 1);
    assert!(corp.connections("tunnel") >= 1.0);
}

fn assert_upgraded_event_at_login(event: &serde_json::Value) {
    assert_upgraded_event(event, LOGIN_HOST);
}

#[tokio::test]
async fn blind_tunnel_goes_out_through_the_corporate_proxy() {
    let up = Upstreams::start().await;
    let corp = corporate_proxy(&up).await;
    let proxy = chained_grantshift(&up, &corp, Some(CORP_PASSWORD_ENV)).await;

    let reply = request_through_blind_tunnel(&proxy, &up).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let json = reply.json();
    assert_eq!(json["server"], "tunnel");
    assert_eq!(json["sni"], TUNNEL_HOST);
    assert_eq!(json["path"], "/via-corporate-proxy");
    assert_eq!(proxy.connections("tunnel"), 1.0);
    assert_eq!(
        corp.connections("tunnel"),
        1.0,
        "the blind tunnel went out through the corporate proxy"
    );
    assert!(up.sf.requests().is_empty());
}

/// With credentials the corporate proxy refuses, a tunnel and an intercepted request both get
/// a 502 whose line names the upstream proxy's 407; nothing reaches Salesforce.
async fn refused_by_the_corporate_proxy(password_env: Option<&str>) {
    let up = Upstreams::start().await;
    let corp = corporate_proxy(&up).await;
    let proxy = chained_grantshift(&up, &corp, password_env).await;

    let refused = connect_error(proxy.addr(), &format!("{TUNNEL_HOST}:443")).await;
    assert_eq!(refused.status, 502, "{}", refused.text());
    let line = refused.text();
    assert!(
        line.contains(TUNNEL_HOST) && line.contains("upstream proxy") && line.contains("407"),
        "the 502 names the host and the upstream proxy's refusal: {line}"
    );

    let mut api = proxy.intercepted(acme::MY_DOMAIN, Http::H1).await;
    let reply = api.get(acme::MY_DOMAIN, API_PATH).await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    let line = reply.text();
    assert!(
        line.contains(acme::MY_DOMAIN) && line.contains("upstream proxy") && line.contains("407"),
        "the 502 names the host and the upstream proxy's refusal: {line}"
    );

    assert_eq!(
        corp.connections("tunnel"),
        0.0,
        "the corporate proxy opened nothing"
    );
    assert!(up.sf.requests().is_empty(), "nothing reached Salesforce");
}

#[tokio::test]
async fn wrong_upstream_proxy_credentials_get_502_naming_the_upstream_proxys_407() {
    refused_by_the_corporate_proxy(Some(WRONG_PASSWORD_ENV)).await;
}

#[tokio::test]
async fn missing_upstream_proxy_credentials_get_502_naming_the_upstream_proxys_407() {
    refused_by_the_corporate_proxy(None).await;
}
