//! The interop matrix: every real client through grantshift to every real edge server in front
//! of the fake Salesforce, as in production (a real HTTP server terminates TLS for Salesforce's
//! names; the fake behind it is the OAuth logic).
//!
//! - Edges ([`EdgeKind`]): nginx with h2 + http/1.1 and with http/1.1 only, Apache httpd with
//!   mod_http2, h2o; started once per edge for all its cells.
//! - Clients ([`Client`]): curl `--http1.1` and `--http2`, Python `requests`, simple-salesforce,
//!   jsforce, Java `HttpClient` (h2), Java `HttpURLConnection` (HTTP/1.1, what WSC and Data
//!   Loader use), Go `net/http`.
//! - Cells, for each edge × client: the password login is upgraded, the token works for a REST
//!   call, a 1 MiB POST is echoed byte for byte and a pass-through GET arrives intact; then,
//!   with the app's Run As user missing, the upgrade falls back to the original login and that
//!   token works. The edge's logs must show no rejected request.
//!
//! One test per edge; a failing cell is reported with the edge, the client and what the edge
//! logged, after every cell of that edge has run.

use futures_util::FutureExt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use testkit::clients::*;
use testkit::edges::{require_edge_binary, Edge, EdgeKind};
use testkit::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Client {
    CurlHttp11,
    CurlHttp2,
    Requests,
    SimpleSalesforce,
    Jsforce,
    JavaHttpClientH2,
    JavaUrlConnection,
    GoNetHttp,
}

impl Client {
    const ALL: [Client; 8] = [
        Client::CurlHttp11,
        Client::CurlHttp2,
        Client::Requests,
        Client::SimpleSalesforce,
        Client::Jsforce,
        Client::JavaHttpClientH2,
        Client::JavaUrlConnection,
        Client::GoNetHttp,
    ];

    fn name(self) -> &'static str {
        match self {
            Client::CurlHttp11 => "curl --http1.1",
            Client::CurlHttp2 => "curl --http2",
            Client::Requests => "python requests",
            Client::SimpleSalesforce => "simple-salesforce",
            Client::Jsforce => "jsforce",
            Client::JavaHttpClientH2 => "java HttpClient",
            Client::JavaUrlConnection => "java HttpURLConnection",
            Client::GoNetHttp => "go net/http",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    /// Login upgraded, REST call, 1 MiB echo, pass-through GET.
    Upgraded,
    /// No Run As user: the upgrade fails and the original login is replayed; REST call.
    Fallback,
}

/// One edge in front of one fake, and what its cells share: grantshift's CA (so a Java
/// truststore is built once) and the client builds.
struct Site {
    kind: EdgeKind,
    up: Upstreams,
    edge: Edge,
    ca: (PathBuf, PathBuf),
    work: tempfile::TempDir,
}

impl Site {
    async fn start(kind: EdgeKind) -> Site {
        require_edge_binary(kind);
        let up = Upstreams::start().await;
        let edge = Edge::start(kind, &up.sf).await;
        let work = tempfile::Builder::new()
            .prefix("interop-")
            .tempdir_in(
                std::fs::create_dir_all(clients_dir())
                    .map(|_| clients_dir())
                    .unwrap(),
            )
            .unwrap();
        let ca = (
            work.path().join("grantshift-ca.pem"),
            work.path().join("grantshift-ca.key"),
        );
        Site {
            kind,
            up,
            edge,
            ca,
            work,
        }
    }

    /// A fresh grantshift for one cell: the acme user mapped to its My Domain, every Salesforce
    /// name routed to the edge (whose CA it trusts), the site's CA.
    async fn proxy(&self) -> ConfiguredProxy {
        let builder = TestProxy::builder()
            .extra_toml(&acme_mapping())
            .ca_files(&self.ca.0, &self.ca.1);
        let text = self.edge.route(builder).render_for(&self.up.addrs());
        ConfiguredProxy::start(&text).await
    }

    fn build_dir(&self, name: &str) -> PathBuf {
        let dir = self.work.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}

/// Run `client` through `proxy` (with the extra steps when `extra`); its JSON line.
async fn run(client: Client, proxy: &ClientProxy, site: &Site, extra: bool) -> serde_json::Value {
    let login_url = format!("https://{LOGIN_HOST}");
    let cwd = tempfile::tempdir_in(site.work.path()).unwrap();
    let cwd: &Path = cwd.path();
    let mut cmd = match client {
        Client::CurlHttp11 | Client::CurlHttp2 => {
            let flag = if client == Client::CurlHttp11 {
                "--http1.1"
            } else {
                "--http2"
            };
            let route = CurlRoute::Proxy(proxy.clone());
            let mut out = curl_login_then_rest_call(&route, flag, cwd).await;
            if extra {
                curl_extra_steps(&route, flag, cwd, &mut out).await;
            }
            return out;
        }
        Client::Requests => python_client("requests_login.py", &[&login_url, API_PATH], proxy, cwd),
        Client::SimpleSalesforce => {
            python_client("simple_salesforce_login.py", &[API_VERSION], proxy, cwd)
        }
        Client::Jsforce => node_client("jsforce_login.js", &[&login_url, API_VERSION], proxy, cwd),
        Client::JavaHttpClientH2 => {
            java_client(proxy, &login_url, &site.build_dir("java-httpclient")).await
        }
        Client::JavaUrlConnection => {
            url_connection_client(proxy, &login_url, &site.build_dir("java-urlconnection")).await
        }
        Client::GoNetHttp => go_client(proxy, &login_url, &site.build_dir("go")).await,
    };
    if extra {
        with_extra_steps(&mut cmd);
    }
    run_client(client.name(), cmd).await
}

/// The client logged in with its password (the replay after the failed upgrade) and called
/// REST with that token, as the acme integration user itself.
fn assert_fallback_login_then_rest_call(what: &str, out: &serde_json::Value, sf: &FakeSalesforce) {
    if let Some(status) = out.get("token_status") {
        assert_eq!(status, 200, "{what}: token response {out:#}");
    }
    let logins = sf.token_requests();
    let seen: Vec<_> = logins
        .iter()
        .map(|r| (r.host_name(), r.param("grant_type"), r.response_status))
        .collect();
    assert_eq!(
        seen,
        vec![
            (
                Some(acme::MY_DOMAIN),
                Some("client_credentials".to_string()),
                Some(400)
            ),
            (Some(LOGIN_HOST), Some("password".to_string()), Some(200)),
        ],
        "{what}: the upgraded attempt was refused, then the original login went through"
    );
    let minted = sf.issued();
    assert_eq!(minted.len(), 1, "{what}: one token minted: {minted:?}");
    assert_eq!(minted[0].grant, "password", "{what}");
    assert_eq!(minted[0].user_id, acme::USER_ID, "{what}");
    assert_eq!(
        out["access_token"].as_str(),
        Some(minted[0].access_token.as_str()),
        "{what}: the client holds its password login's token: {out:#}"
    );
    assert_eq!(out["data_status"], 200, "{what}: REST call: {out:#}");
    let data: serde_json::Value =
        serde_json::from_str(out["data_body"].as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{what}: REST body is not JSON ({e}): {out:#}"));
    assert_eq!(data["userId"], acme::USER_ID, "{what}: {data}");
}

/// One cell, on a fresh grantshift and a reset fake.
async fn cell(site: &Site, client: Client, case: Case, what: &str) {
    let sf = &site.up.sf;
    sf.reset();
    if case == Case::Fallback {
        sf.edit(|w| w.org_mut(acme::ORG_ID).app_mut(acme::CLIENT_ID).run_as_user = None);
    }
    let proxy = site.proxy().await;
    let out = run(client, &proxy.client_proxy(), site, case == Case::Upgraded).await;
    let event = proxy.next_event().await;
    match case {
        Case::Upgraded => {
            assert_upgraded_login_then_rest_call(what, &out, sf);
            assert_upgraded_event(&event, LOGIN_HOST);
            let echo = assert_extra_steps(what, &out);
            assert_eq!(echo["host"], LOGIN_HOST, "{what}: the echo's Host");
            assert_eq!(
                echo["sni"], LOGIN_HOST,
                "{what}: the edge's SNI to the fake"
            );
        }
        Case::Fallback => {
            assert_fallback_login_then_rest_call(what, &out, sf);
            assert_eq!(event["action"], "fallback", "{what}: {event:#}");
            assert_eq!(event["status"], 200, "{what}: {event:#}");
        }
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".into())
}

/// Every cell of one edge; all failures reported together.
async fn matrix(kind: EdgeKind) {
    let site = Site::start(kind).await;
    let mut failures = Vec::new();
    let mut cells = 0;
    for case in [Case::Upgraded, Case::Fallback] {
        for client in Client::ALL {
            cells += 1;
            let what = format!("{} × {} × {case:?}", site.kind, client.name());
            let before = site.edge.rejections().len();
            let result = AssertUnwindSafe(cell(&site, client, case, &what))
                .catch_unwind()
                .await;
            let rejected: Vec<String> = site.edge.rejections().into_iter().skip(before).collect();
            let logged = if rejected.is_empty() {
                String::new()
            } else {
                format!(
                    "\n    the edge logged:\n      {}",
                    rejected.join("\n      ")
                )
            };
            match result {
                Err(panic) => failures.push(format!("{what}: {}{logged}", panic_text(&*panic))),
                Ok(()) if !rejected.is_empty() => {
                    failures.push(format!("{what}: the edge rejected a request{logged}"))
                }
                Ok(()) => eprintln!("{what}: ok"),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cells} cells failed on {kind}:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[tokio::test]
async fn nginx_with_h2_and_http11_edge_works_with_every_client() {
    matrix(EdgeKind::NginxH2).await;
}

#[tokio::test]
async fn nginx_http11_only_edge_works_with_every_client() {
    matrix(EdgeKind::NginxH1).await;
}

#[tokio::test]
async fn apache_httpd_with_mod_http2_edge_works_with_every_client() {
    matrix(EdgeKind::ApacheH2).await;
}

#[tokio::test]
async fn h2o_edge_works_with_every_client() {
    matrix(EdgeKind::H2o).await;
}
