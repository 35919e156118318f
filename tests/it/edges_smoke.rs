//! The real edge servers of `testkit::edges` on their own (no grantshift): each starts in front of
//! the fake Salesforce, forwards `/echo` with the client's host as `Host` and SNI over every
//! HTTP version it offers, logs nothing that looks like a rejection for clean requests, and
//! does log one for a malformed request (so a test's "no rejections" check can fail).

use testkit::edges::{require_edge_binaries, Edge, EdgeKind};
use testkit::*;
use tokio::io::AsyncWriteExt;

async fn start(kind: EdgeKind) -> (FakeSalesforce, Edge) {
    require_edge_binaries();
    let sf = FakeSalesforce::start().await;
    let edge = Edge::start(kind, &sf).await;
    eprintln!("{kind}: started in {:?}", edge.startup_time());
    (sf, edge)
}

/// `/echo` for two Salesforce names over each HTTP version the edge offers: the fake sees the
/// client's host as `Host` and as SNI, over HTTP/1.1; the edge logs no rejection.
async fn forwards_echo(kind: EdgeKind) {
    let (sf, edge) = start(kind).await;
    for &http in kind.client_versions() {
        for host in ["login.salesforce.com", "acme.my.salesforce.com"] {
            let mut conn = edge.connect(host, http).await;
            let reply = conn.get(host, "/echo").await;
            let what = format!("{kind} {http:?} GET https://{host}/echo");
            assert_eq!(reply.status, 200, "{what}: {}", reply.text());
            let echo = reply.json();
            assert_eq!(echo["host"], host, "{what}: Host at the fake: {echo}");
            assert_eq!(echo["sni"], host, "{what}: SNI at the fake: {echo}");
            assert_eq!(echo["version"], "HTTP/1.1", "{what}: {echo}");
            eprintln!(
                "{what}: fake saw host={} sni={} alpn={} version={}",
                echo["host"], echo["sni"], echo["alpn"], echo["version"]
            );
        }
    }
    assert_eq!(
        sf.requests_to("/echo").len(),
        2 * kind.client_versions().len()
    );
    edge.assert_no_rejections(&format!("{kind} clean /echo requests"));
}

#[tokio::test]
async fn nginx_h2_forwards_echo() {
    forwards_echo(EdgeKind::NginxH2).await;
}

#[tokio::test]
async fn nginx_h1_forwards_echo() {
    forwards_echo(EdgeKind::NginxH1).await;
}

#[tokio::test]
async fn apache_h2_forwards_echo() {
    forwards_echo(EdgeKind::ApacheH2).await;
}

#[tokio::test]
async fn h2o_forwards_echo() {
    forwards_echo(EdgeKind::H2o).await;
}

/// curl straight to each edge (`--resolve`, the edge's CA), HTTP/1.1 and, where offered, h2:
/// the `Host` then carries the edge's port.
#[tokio::test]
async fn curl_reaches_every_edge() {
    for kind in EdgeKind::ALL {
        let (_sf, edge) = start(kind).await;
        let port = edge.addr().port();
        for &http in kind.client_versions() {
            let flag = match http {
                Http::H1 => "--http1.1",
                Http::H2 => "--http2",
            };
            let mut curl = std::process::Command::new("curl");
            curl.args(["-sS", "--noproxy", "*", "--max-time", "10", flag])
                .arg("--resolve")
                .arg(format!("login.salesforce.com:{port}:127.0.0.1"))
                .arg("--cacert")
                .arg(edge.ca_pem_path())
                .args(["-w", "\n%{http_version}"])
                .arg(format!("https://login.salesforce.com:{port}/echo"));
            let out = tokio::task::spawn_blocking(move || curl.output())
                .await
                .unwrap()
                .expect("run curl");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let what = format!("{kind} curl {flag}");
            assert!(
                out.status.success(),
                "{what}: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let (body, version) = text.rsplit_once('\n').unwrap();
            let want = if http == Http::H2 { "2" } else { "1.1" };
            assert_eq!(version, want, "{what}: curl's HTTP version");
            let echo: serde_json::Value = serde_json::from_str(body)
                .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {body}"));
            assert_eq!(echo["sni"], "login.salesforce.com", "{what}: {echo}");
            let host = echo["host"].as_str().unwrap();
            assert_eq!(
                host.split(':').next(),
                Some("login.salesforce.com"),
                "{what}: {echo}"
            );
        }
        edge.assert_no_rejections(&format!("{kind} curl"));
    }
}

/// An HTTP/2 request carrying a `host` header next to `:authority`: nginx refuses it with 400
/// and logs `client sent duplicate host header` at info level, which `rejections` reports.
#[tokio::test]
async fn nginx_reports_duplicate_host_over_h2() {
    let (sf, edge) = start(EdgeKind::NginxH2).await;
    let mut conn = edge.connect(LOGIN_HOST, Http::H2).await;
    let req = conn
        .request(http::Method::GET, LOGIN_HOST, "/echo")
        .header(http::header::HOST, LOGIN_HOST)
        .body(empty())
        .unwrap();
    let reply = conn.send(req).await;
    assert_eq!(reply.status, 400, "nginx answers {}", reply.text());
    assert!(
        sf.requests_to("/echo").is_empty(),
        "nothing reached the fake"
    );
    let rejections = edge.rejections();
    assert!(
        rejections
            .iter()
            .any(|l| l.contains("client sent duplicate host header")),
        "rejections name the duplicate Host: {rejections:#?}\n--- error log:\n{}",
        edge.error_log()
    );
}

/// A malformed HTTP/1.1 request (`Content-Length: abc`) to every edge: each answers 400 and
/// `rejections` reports it.
#[tokio::test]
async fn every_edge_reports_a_malformed_request() {
    for kind in EdgeKind::ALL {
        let (sf, edge) = start(kind).await;
        let tcp = tokio::net::TcpStream::connect(edge.addr()).await.unwrap();
        let mut tls = tls_connect(tcp, LOGIN_HOST, edge.ca_pem(), &[b"http/1.1"]).await;
        tls.write_all(
            b"POST /echo HTTP/1.1\r\nHost: login.salesforce.com\r\nContent-Length: abc\r\n\
              Connection: close\r\n\r\n",
        )
        .await
        .unwrap();
        let (status, _headers) =
            within(10, "the edge's answer", read_response_head(&mut tls)).await;
        assert_eq!(status, 400, "{kind} answers a bad Content-Length");
        assert!(
            sf.requests_to("/echo").is_empty(),
            "{kind}: nothing reached the fake"
        );
        drop(tls);
        // Apache and nginx write the log line when the connection is done with.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let rejections = loop {
            let r = edge.rejections();
            if !r.is_empty() {
                break r;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{kind}: no rejection reported for a bad Content-Length\n--- error log:\n{}\n\
                 --- access log:\n{}",
                edge.error_log(),
                edge.access_log()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        eprintln!("{kind}: malformed request rejections: {rejections:#?}");
    }
}

/// The same request to Apache and h2o: both accept it, and forward the `:authority` host.
#[tokio::test]
async fn apache_and_h2o_take_authority_over_a_duplicate_host() {
    for kind in [EdgeKind::ApacheH2, EdgeKind::H2o] {
        let (sf, edge) = start(kind).await;
        let mut conn = edge.connect(LOGIN_HOST, Http::H2).await;
        let req = conn
            .request(http::Method::GET, LOGIN_HOST, "/echo")
            .header(http::header::HOST, TEST_HOST)
            .body(empty())
            .unwrap();
        let reply = conn.send(req).await;
        assert_eq!(reply.status, 200, "{kind}: {}", reply.text());
        let echo = reply.json();
        assert_eq!(echo["host"], LOGIN_HOST, "{kind}: {echo}");
        assert_eq!(echo["sni"], LOGIN_HOST, "{kind}: {echo}");
        assert_eq!(
            sf.requests_to("/echo")[0].header_values("host"),
            [LOGIN_HOST]
        );
        edge.assert_no_rejections(&format!("{kind} duplicate Host"));
    }
}
