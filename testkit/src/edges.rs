//! Real third-party HTTP servers as the TLS edge in front of the fake Salesforce, as
//! Salesforce's own edge sits in front of its application servers: Debian's nginx (HTTP/2 and
//! HTTP/1.1-only), Apache httpd 2.4 with mod_http2, and h2o.
//!
//! Each [`Edge`] is a child process in the foreground (never the system service, never `/etc`
//! configs or default ports) with every file it uses (config, pid, logs, certificate) in its
//! own TempDir. It listens on 127.0.0.1 on a free port, terminates TLS with one certificate for
//! every [`SALESFORCE_HOSTS`] name signed by its own [`TestCa`], and forwards every path to the
//! [`FakeSalesforce`] over TLS, verifying the fake's certificate against the fake's CA, with the
//! client's `Host` preserved and sent as SNI. Its error log is at level `info`, its access log
//! on; [`Edge::rejections`] reads them for requests the edge refused or failed.
//!
//! What the fake sees from each edge (all forward HTTP/1.1 over TLS, none offers ALPN):
//! - nginx: SNI and `Host` = the client's host (no port when the client sent none).
//! - Apache: SNI = the client's host without port, `Host` = the client's `Host` as sent, plus
//!   `X-Forwarded-For/-Host/-Server`.
//! - h2o: SNI = the client's host (h2o sends the host of `proxy.reverse.url` as SNI, so each
//!   Salesforce name gets its own host block whose URL names it, and h2o runs in a private
//!   mount namespace whose `/etc/hosts` resolves those names to 127.0.0.1), `Host` = the
//!   client's, plus `X-Forwarded-For/-Proto` and `Via`.
//!
//! A route for grantshift: [`Edge::route`] points `[upstream.connect_to]` for every Salesforce
//! name at the edge and adds the edge's CA to `extra_root_certs`.

use super::ca::TestCa;
use super::client::{tls_connect, Http, HttpConn};
use super::proxy::TestProxyBuilder;
use super::upstreams::FakeSalesforce;
use super::SALESFORCE_HOSTS;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long an edge may take to accept connections before [`Edge::start`] gives up.
pub const EDGE_START_DEADLINE: Duration = Duration::from_secs(10);

/// Which server is the edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EdgeKind {
    /// nginx (Debian's nginx-light), `listen … ssl http2`: ALPN h2 and http/1.1.
    NginxH2,
    /// The same nginx without `http2`: ALPN http/1.1 only.
    NginxH1,
    /// Apache httpd 2.4, event MPM, mod_ssl + mod_proxy_http + mod_http2 (`Protocols h2 http/1.1`).
    ApacheH2,
    /// h2o (Debian's 2.2), h2 and http/1.1.
    H2o,
}

impl EdgeKind {
    /// Every edge, in a fixed order.
    pub const ALL: [EdgeKind; 4] = [
        EdgeKind::NginxH2,
        EdgeKind::NginxH1,
        EdgeKind::ApacheH2,
        EdgeKind::H2o,
    ];

    /// A short name for messages ("nginx-h2", …).
    pub fn name(self) -> &'static str {
        match self {
            EdgeKind::NginxH2 => "nginx-h2",
            EdgeKind::NginxH1 => "nginx-h1",
            EdgeKind::ApacheH2 => "apache-h2",
            EdgeKind::H2o => "h2o",
        }
    }

    /// The server binary this edge runs.
    pub fn binary(self) -> &'static str {
        match self {
            EdgeKind::NginxH2 | EdgeKind::NginxH1 => "/usr/sbin/nginx",
            EdgeKind::ApacheH2 => "/usr/sbin/apache2",
            EdgeKind::H2o => "/usr/bin/h2o",
        }
    }

    /// Does the edge offer h2 by ALPN?
    pub fn offers_h2(self) -> bool {
        self != EdgeKind::NginxH1
    }

    /// The HTTP versions a client can speak to this edge.
    pub fn client_versions(self) -> &'static [Http] {
        if self.offers_h2() {
            &[Http::H1, Http::H2]
        } else {
            &[Http::H1]
        }
    }
}

impl std::fmt::Display for EdgeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Fail the test unless every edge server is installed (`./scripts/test` installs them).
pub fn require_edge_binaries() {
    for kind in EdgeKind::ALL {
        require_edge_binary(kind);
    }
}

/// Fail the test unless `kind`'s server (and, for h2o, `unshare`/`mount`) is installed.
pub fn require_edge_binary(kind: EdgeKind) {
    let mut needed = vec![kind.binary()];
    if kind == EdgeKind::H2o {
        needed.extend(["/usr/bin/unshare", "/usr/bin/mount"]);
    }
    for path in needed {
        assert!(
            Path::new(path).exists(),
            "{path} is missing (the {} edge needs it): run ./scripts/test, which installs the \
             Debian packages nginx-light, apache2 and h2o",
            kind.name()
        );
    }
}

/// A running edge server in front of a [`FakeSalesforce`]. Dropping it stops the server.
pub struct Edge {
    kind: EdgeKind,
    addr: SocketAddr,
    /// h2o's status listener (`/json?show=events`: its error counters), on another port.
    status_addr: Option<SocketAddr>,
    ca: Arc<TestCa>,
    dir: tempfile::TempDir,
    child: Option<Child>,
    config_text: String,
    started_in: Duration,
}

/// What the edge's files are called in its directory.
const ERROR_LOG: &str = "error.log";
const ACCESS_LOG: &str = "access.log";
const STDERR: &str = "stderr.log";

impl Edge {
    /// Start `kind` in front of `sf` and wait (polling connect, at most
    /// [`EDGE_START_DEADLINE`]) until it accepts connections. Panics naming the edge, with its
    /// stderr and error log, if it exits or never listens.
    pub async fn start(kind: EdgeKind, sf: &FakeSalesforce) -> Edge {
        super::init_crypto();
        require_edge_binary(kind);
        let ca = Arc::new(TestCa::new(&format!("{} Edge Test CA", kind.name())));
        let leaf = ca.issue(SALESFORCE_HOSTS);
        // A port picked by bind-and-release can be taken by someone else before the server
        // binds it: try again on "Address already in use".
        let mut attempt = 0;
        loop {
            attempt += 1;
            let dir = tempfile::tempdir().expect("edge tempdir");
            std::fs::write(dir.path().join("edge.crt"), leaf.chain_pem()).expect("write PEM");
            std::fs::write(dir.path().join("edge.key"), leaf.key_pem()).expect("write PEM");
            // Both ports bound at once so they differ, then released for the server.
            let main = free_listener();
            let status = (kind == EdgeKind::H2o).then(free_listener);
            let addr = main.local_addr().unwrap();
            let status_addr = status.as_ref().map(|l| l.local_addr().unwrap());
            drop((main, status));
            let files = Files::new(dir.path());
            let config_text = match kind {
                EdgeKind::NginxH2 => nginx_conf(&files, addr, sf, true),
                EdgeKind::NginxH1 => nginx_conf(&files, addr, sf, false),
                EdgeKind::ApacheH2 => apache_conf(&files, addr, sf),
                EdgeKind::H2o => h2o_conf(&files, addr, status_addr.unwrap(), sf),
            };
            std::fs::write(&files.config, &config_text).expect("write edge config");
            let began = Instant::now();
            let child = spawn(kind, &files);
            let mut edge = Edge {
                kind,
                addr,
                status_addr,
                ca: ca.clone(),
                dir,
                child: Some(child),
                config_text,
                started_in: Duration::ZERO,
            };
            match edge.wait_listening(began).await {
                Ok(()) => {
                    edge.started_in = began.elapsed();
                    return edge;
                }
                Err(why) => {
                    let report = edge.failure_report();
                    if attempt < 3 && report.contains("in use") {
                        continue; // dropping `edge` stopped the server
                    }
                    panic!("{} edge did not start: {why}\n{report}", kind.name());
                }
            }
        }
    }

    async fn wait_listening(&mut self, began: Instant) -> Result<(), String> {
        let mut targets = vec![self.addr];
        targets.extend(self.status_addr);
        for target in targets {
            loop {
                if let Some(status) = self.child.as_mut().unwrap().try_wait().expect("try_wait") {
                    self.child = None; // reaped: nothing left to stop
                    return Err(format!("it exited with {status}"));
                }
                if let Ok(Ok(_)) = tokio::time::timeout(
                    Duration::from_millis(200),
                    tokio::net::TcpStream::connect(target),
                )
                .await
                {
                    break;
                }
                if began.elapsed() > EDGE_START_DEADLINE {
                    return Err(format!(
                        "{target} not accepting connections after {EDGE_START_DEADLINE:?}"
                    ));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Ok(())
    }

    fn failure_report(&self) -> String {
        format!(
            "--- {} in {:?}\n--- stderr:\n{}\n--- error log:\n{}\n--- config:\n{}",
            self.kind.binary(),
            self.dir.path(),
            self.stderr(),
            self.error_log(),
            self.config_text
        )
    }

    /// Where the edge listens (TLS).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The CA that signed the edge's certificate, in PEM.
    pub fn ca_pem(&self) -> &str {
        self.ca.pem()
    }

    /// A file holding [`ca_pem`](Self::ca_pem): what grantshift trusts via `[upstream]
    /// extra_root_certs`, or `curl --cacert`.
    pub fn ca_pem_path(&self) -> &Path {
        self.ca.pem_path()
    }

    /// The edge's directory (config, logs, pid file, certificate).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The config file the server was started with.
    pub fn config_text(&self) -> &str {
        &self.config_text
    }

    /// How long the server took from spawn to accepting connections.
    pub fn startup_time(&self) -> Duration {
        self.started_in
    }

    /// The error log so far (level `info`).
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(ERROR_LOG)).unwrap_or_default()
    }

    /// The access log so far (one line per request, written when it completes).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(ACCESS_LOG)).unwrap_or_default()
    }

    /// What the server wrote to stdout and stderr.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(STDERR)).unwrap_or_default()
    }

    /// Evidence that the edge refused or failed a request, each prefixed with where it came
    /// from; empty when every request went through cleanly.
    ///
    /// - nginx: error-log lines at `[error]` or worse, and `[info]`/`[warn]` lines where nginx
    ///   blames the client (`client sent …`, `client violated …`, `client intended to send …`,
    ///   `client attempted …`, `client terminated stream …`) or the upstream (`upstream sent`,
    ///   `upstream prematurely`); access-log lines with a 4xx/5xx status (except 499, the
    ///   client gave up) that the edge answered itself (no upstream status).
    /// - Apache: error-log lines at `error` or worse, and `info` lines of request failures
    ///   (`AH00566`-style "request failed", mod_http2 stream/connection errors and RST_STREAM);
    ///   access-log lines with a 4xx/5xx status that no handler produced (Apache refused the
    ///   request itself, e.g. a bad `Content-Length`, which it logs below `info`).
    /// - h2o: error-log lines naming a request (`[lib/…] in request:…`) and non-zero error
    ///   counters of its status handler (`status-errors.NNN`: responses h2o generated itself,
    ///   e.g. 400 for a malformed request or 502; `http2-errors.*`: h2 errors it detected).
    pub fn rejections(&self) -> Vec<String> {
        let log = self.error_log();
        let mut out: Vec<String> = log
            .lines()
            .filter(|l| match self.kind {
                EdgeKind::NginxH2 | EdgeKind::NginxH1 => nginx_rejection(l),
                EdgeKind::ApacheH2 => apache_rejection(l),
                EdgeKind::H2o => h2o_rejection(l),
            })
            .map(|l| format!("error.log: {l}"))
            .collect();
        match self.kind {
            EdgeKind::NginxH2 | EdgeKind::NginxH1 => out.extend(
                self.access_log()
                    .lines()
                    .filter(|l| nginx_access_rejection(l))
                    .map(|l| format!("access.log: {l}")),
            ),
            EdgeKind::ApacheH2 => out.extend(
                self.access_log()
                    .lines()
                    .filter(|l| apache_access_rejection(l))
                    .map(|l| format!("access.log: {l}")),
            ),
            EdgeKind::H2o => out.extend(self.h2o_error_counters()),
        }
        out
    }

    /// Fail the test if [`rejections`](Self::rejections) is not empty, naming `what`.
    pub fn assert_no_rejections(&self, what: &str) {
        let r = self.rejections();
        assert!(
            r.is_empty(),
            "{what}: the {} edge rejected or failed requests:\n{}\n--- access log:\n{}",
            self.kind.name(),
            r.join("\n"),
            self.access_log()
        );
    }

    /// h2o's non-zero error counters, as `status: NAME = N`.
    fn h2o_error_counters(&self) -> Vec<String> {
        let Some(addr) = self.status_addr else {
            return Vec::new();
        };
        let body = match http10_get(addr, "/json?show=events") {
            Ok(b) => b,
            Err(e) => return vec![format!("status: could not read h2o's counters: {e}")],
        };
        body.lines()
            .filter_map(|l| {
                let (name, value) = l.trim().trim_end_matches(',').split_once(':')?;
                let name = name.trim().trim_matches('"');
                let value: u64 = value.trim().trim_end_matches(',').trim().parse().ok()?;
                let counted = name.starts_with("status-errors.")
                    || (name.starts_with("http2-errors.") && name != "http2-errors.cancel");
                (counted && value > 0).then(|| format!("status: {name} = {value}"))
            })
            .collect()
    }

    /// `[upstream.connect_to]` entries routing every [`SALESFORCE_HOSTS`] name (port 443) to
    /// this edge.
    pub fn connect_to_routes(&self) -> Vec<(String, SocketAddr)> {
        SALESFORCE_HOSTS
            .iter()
            .map(|h| (format!("{h}:443"), self.addr))
            .collect()
    }

    /// `builder` with every Salesforce name routed to this edge instead of the fake (its
    /// `connect_to` entries replace the defaults) and the edge's CA trusted.
    pub fn route(&self, builder: TestProxyBuilder) -> TestProxyBuilder {
        self.connect_to_routes()
            .into_iter()
            .fold(builder, |b, (host_port, addr)| {
                b.connect_to(&host_port, addr)
            })
            .extra_root_cert(self.ca_pem_path())
    }

    /// A TLS connection straight to the edge for `host` (SNI), trusting the edge's CA, offering
    /// only `http`'s ALPN (asserted to be accepted), ready for requests.
    pub async fn connect(&self, host: &str, http: Http) -> HttpConn {
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .unwrap_or_else(|e| panic!("connect to the {} edge: {e}", self.kind.name()));
        tcp.set_nodelay(true).unwrap();
        let tls = tls_connect(tcp, host, self.ca_pem(), &[http.alpn()]).await;
        assert_eq!(
            tls.get_ref().1.alpn_protocol(),
            Some(http.alpn()),
            "the {} edge accepts ALPN {:?}",
            self.kind.name(),
            String::from_utf8_lossy(http.alpn())
        );
        HttpConn::handshake(tls, http).await
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // The server is the leader of its own process group (Apache's children are in it):
        // SIGTERM the group, give it a moment, then SIGKILL whatever is left. The leader is not
        // reaped before the SIGKILL, so its group id cannot have been reused.
        let group = format!("-{}", child.id());
        let signal = |sig: &str| {
            let _ = Command::new("kill")
                .args([sig, "--", &group])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline && !exited_unreaped(child.id()) {
            std::thread::sleep(Duration::from_millis(10));
        }
        signal("-KILL");
        let _ = child.wait();
    }
}

/// Has process `pid` (our child) exited, without reaping it? (`Z` in /proc/PID/stat.)
fn exited_unreaped(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| state == "Z" || state == "X"),
        Err(_) => true,
    }
}

// ---------------------------------------------------------------------------------------------
// Rejection patterns

fn nginx_rejection(line: &str) -> bool {
    const SEVERE: [&str; 4] = ["[error]", "[crit]", "[alert]", "[emerg]"];
    const BLAME: [&str; 7] = [
        "client sent",
        "client violated",
        "client intended to send",
        "client attempted",
        "client terminated stream",
        "upstream sent",
        "upstream prematurely",
    ];
    SEVERE.iter().any(|s| line.contains(s))
        || ((line.contains("[info]") || line.contains("[warn]"))
            && BLAME.iter().any(|b| line.contains(b)))
}

/// The value of `name=value` in an access-log line of ours (`""` if absent).
fn access_field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or("")
}

/// The 4xx/5xx status of an access-log line, if it has one.
fn access_error_status(line: &str) -> Option<u16> {
    let status: u16 = access_field(line, "status").parse().ok()?;
    (400..600).contains(&status).then_some(status)
}

/// The access log format of the nginx edge ends in `status=S upstream=U`.
fn nginx_access_rejection(line: &str) -> bool {
    access_error_status(line).is_some_and(|s| s != 499) && access_field(line, "upstream") == "-"
}

/// The access log format of the Apache edge ends in `handler=H status=S`: a 4xx/5xx answered
/// before any handler ran (`-`, e.g. a malformed request) is Apache's own refusal.
fn apache_access_rejection(line: &str) -> bool {
    access_error_status(line).is_some() && access_field(line, "handler") == "-"
}

fn apache_rejection(line: &str) -> bool {
    const SEVERE: [&str; 4] = [":error]", ":crit]", ":alert]", ":emerg]"];
    if SEVERE.iter().any(|s| line.contains(s)) {
        return true;
    }
    if !line.contains(":info]") {
        return false;
    }
    let lower = line.to_ascii_lowercase();
    lower.contains("request failed")
        || lower.contains("rst_stream")
        || (line.contains("[http2:") && (lower.contains("error") || lower.contains("invalid")))
}

fn h2o_rejection(line: &str) -> bool {
    line.contains("in request:")
}

// ---------------------------------------------------------------------------------------------
// Configs

/// The files of one edge, all in its directory.
struct Files {
    dir: PathBuf,
    config: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    error_log: PathBuf,
    access_log: PathBuf,
    pid: PathBuf,
    stderr: PathBuf,
}

impl Files {
    fn new(dir: &Path) -> Files {
        Files {
            dir: dir.to_path_buf(),
            config: dir.join("edge.conf"),
            cert: dir.join("edge.crt"),
            key: dir.join("edge.key"),
            error_log: dir.join(ERROR_LOG),
            access_log: dir.join(ACCESS_LOG),
            pid: dir.join("edge.pid"),
            stderr: dir.join(STDERR),
        }
    }
}

fn p(path: &Path) -> String {
    path.to_str().expect("UTF-8 temp path").to_string()
}

fn nginx_conf(f: &Files, addr: SocketAddr, sf: &FakeSalesforce, h2: bool) -> String {
    let d = p(&f.dir);
    let http2 = if h2 { " http2" } else { "" };
    format!(
        r#"# grantshift test edge: nginx in front of the fake Salesforce.
daemon off;
master_process off;
worker_processes 1;
pid {pid};
error_log {error_log} info;
events {{ worker_connections 512; }}
http {{
    log_format edge '$remote_addr [$time_local] "$request" host="$http_host" sni="$ssl_server_name" '
                    '$ssl_protocol status=$status upstream=$upstream_status';
    access_log {access_log} edge;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen {addr} ssl{http2};
        server_name _;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        client_max_body_size 8m;
        location / {{
            proxy_pass https://{fake};
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header Connection "";
            proxy_ssl_server_name on;
            proxy_ssl_name $host;
            proxy_ssl_protocols TLSv1.2 TLSv1.3;
            proxy_ssl_verify on;
            proxy_ssl_verify_depth 2;
            proxy_ssl_trusted_certificate {fake_ca};
            proxy_request_buffering off;
            proxy_buffering off;
        }}
    }}
}}
"#,
        pid = p(&f.pid),
        error_log = p(&f.error_log),
        access_log = p(&f.access_log),
        cert = p(&f.cert),
        key = p(&f.key),
        fake = sf.addr(),
        fake_ca = p(sf.ca_pem_path()),
    )
}

fn apache_conf(f: &Files, addr: SocketAddr, sf: &FakeSalesforce) -> String {
    // As root, Apache refuses to run its children as root: Debian's www-data (every file is
    // opened by the root parent before it forks). Not as root, it stays the invoking user.
    let user_group = if !is_root() {
        String::new()
    } else if std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("www-data:"))
    {
        "User www-data\nGroup www-data\n".to_string()
    } else {
        "User nobody\nGroup nogroup\n".to_string()
    };
    let m = "/usr/lib/apache2/modules";
    format!(
        r#"# grantshift test edge: Apache httpd in front of the fake Salesforce.
ServerRoot {d}
DefaultRuntimeDir {d}
PidFile {pid}
ServerName login.salesforce.com
{user_group}LoadModule mpm_event_module {m}/mod_mpm_event.so
LoadModule authz_core_module {m}/mod_authz_core.so
LoadModule socache_shmcb_module {m}/mod_socache_shmcb.so
LoadModule ssl_module {m}/mod_ssl.so
LoadModule proxy_module {m}/mod_proxy.so
LoadModule proxy_http_module {m}/mod_proxy_http.so
LoadModule http2_module {m}/mod_http2.so
# One child, enough threads that the MPM does not complain (AH10159 at level error).
StartServers 1
ServerLimit 2
ThreadsPerChild 32
MaxRequestWorkers 64
MinSpareThreads 4
MaxSpareThreads 64
Timeout 30
ErrorLog {error_log}
LogLevel info
LogFormat "%h %t \"%r\" host=\"%{{Host}}i\" %H handler=%R status=%>s" edge
CustomLog {access_log} edge
Protocols h2 http/1.1
SSLSessionCache shmcb:{d}/ssl_scache(512000)
Listen {addr} https
<VirtualHost {addr}>
    ServerName login.salesforce.com
    SSLEngine on
    SSLProtocol -all +TLSv1.2 +TLSv1.3
    SSLCertificateFile {cert}
    SSLCertificateKeyFile {key}
    LimitRequestBody 8388608
    SSLProxyEngine on
    SSLProxyProtocol -all +TLSv1.2 +TLSv1.3
    SSLProxyVerify require
    SSLProxyVerifyDepth 2
    SSLProxyCheckPeerName on
    SSLProxyCheckPeerExpire on
    SSLProxyCACertificateFile {fake_ca}
    # The client's Host goes upstream, and mod_proxy_http sends it as SNI too (and checks
    # the fake's certificate against it).
    ProxyPreserveHost On
    ProxyPass / https://{fake}/
</VirtualHost>
"#,
        d = p(&f.dir),
        pid = p(&f.pid),
        error_log = p(&f.error_log),
        access_log = p(&f.access_log),
        cert = p(&f.cert),
        key = p(&f.key),
        fake = sf.addr(),
        fake_ca = p(sf.ca_pem_path()),
    )
}

/// The `/etc/hosts` h2o sees (bind-mounted in its own mount namespace).
fn h2o_hosts_file(f: &Files) -> PathBuf {
    f.dir.join("hosts")
}

fn h2o_conf(f: &Files, addr: SocketAddr, status: SocketAddr, sf: &FakeSalesforce) -> String {
    let mut hosts = String::from("127.0.0.1 localhost\n");
    for h in SALESFORCE_HOSTS {
        hosts.push_str(&format!("127.0.0.1 {h}\n"));
    }
    std::fs::write(h2o_hosts_file(f), hosts).expect("write h2o hosts file");
    let q = |s: &str| serde_json::to_string(s).unwrap(); // a YAML double-quoted scalar
    let mut t = format!(
        r#"# grantshift test edge: h2o in front of the fake Salesforce.
listen:
  host: 127.0.0.1
  port: {port}
  ssl:
    certificate-file: {cert}
    key-file: {key}
    minimum-version: TLSv1.2
    ocsp-update-interval: 0
user: root
pid-file: {pid}
error-log: {error_log}
access-log:
  path: {access_log}
  format: "%h %t \"%r\" authority=\"%V\" %H status=%s"
num-threads: 1
proxy.preserve-host: ON
proxy.ssl.verify-peer: ON
proxy.ssl.cafile: {fake_ca}
hosts:
"#,
        port = addr.port(),
        cert = q(&p(&f.cert)),
        key = q(&p(&f.key)),
        pid = q(&p(&f.pid)),
        error_log = q(&p(&f.error_log)),
        access_log = q(&p(&f.access_log)),
        fake_ca = q(&p(sf.ca_pem_path())),
    );
    // h2o sends the host of proxy.reverse.url as SNI: one host block per Salesforce name
    // (matched with no port, i.e. 443, and with the edge's own port), whose URL names it. The
    // first block also answers any other authority.
    for h in SALESFORCE_HOSTS {
        for key in [h.to_string(), format!("{h}:{}", addr.port())] {
            t.push_str(&format!(
                "  {}:\n    paths:\n      /:\n        proxy.reverse.url: {}\n",
                q(&key),
                q(&format!("https://{h}:{}/", sf.addr().port()))
            ));
        }
    }
    // Its status handler (error counters) on a plain-HTTP listener of its own.
    t.push_str(&format!(
        "  \"edge-status\":\n    listen:\n      host: 127.0.0.1\n      port: {}\n    paths:\n      /:\n        status: ON\n",
        status.port()
    ));
    t
}

fn spawn(kind: EdgeKind, f: &Files) -> Child {
    let mut cmd = match kind {
        EdgeKind::NginxH2 | EdgeKind::NginxH1 => {
            let mut c = Command::new(kind.binary());
            // -e: the error log before the config is read (else /var/log/nginx/error.log).
            c.arg("-p")
                .arg(format!("{}/", p(&f.dir)))
                .arg("-e")
                .arg(&f.error_log)
                .arg("-c")
                .arg(&f.config);
            c
        }
        EdgeKind::ApacheH2 => {
            let mut c = Command::new(kind.binary());
            c.arg("-DFOREGROUND").arg("-f").arg(&f.config);
            // apache2 reads no envvars file when started directly; keep Debian's defaults out.
            c.env("APACHE_RUN_DIR", &f.dir)
                .env("APACHE_LOCK_DIR", &f.dir)
                .env("APACHE_LOG_DIR", &f.dir);
            c
        }
        EdgeKind::H2o => {
            // A private mount namespace whose /etc/hosts maps the Salesforce names to
            // 127.0.0.1 (for h2o only: the bind mount does not propagate back).
            let mut c = Command::new("/usr/bin/unshare");
            if !is_root() {
                // A user namespace grants the mount; h2o is root in it (hence `user: root`,
                // which h2o insists on when run as root).
                c.arg("--map-root-user");
            }
            c.args(["--mount", "--propagation", "private", "/bin/sh", "-c"])
                .arg(r#"mount --bind "$1" /etc/hosts && exec /usr/bin/h2o -c "$2""#)
                .arg("edge-h2o")
                .arg(h2o_hosts_file(f))
                .arg(&f.config);
            c
        }
    };
    let out = std::fs::File::create(&f.stderr).expect("create edge stderr file");
    cmd.current_dir(&f.dir)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .process_group(0);
    cmd.spawn()
        .unwrap_or_else(|e| panic!("spawn the {} edge ({}): {e}", kind.name(), kind.binary()))
}

// ---------------------------------------------------------------------------------------------
// Small helpers

/// A listener on a free port of 127.0.0.1 (dropped to release the port for the server).
fn free_listener() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")
}

/// Are we root? (`Uid:` of /proc/self/status, effective id.)
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
        .unwrap_or(false)
}

/// A blocking HTTP/1.0 GET on loopback; the body.
fn http10_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: edge-status\r\n\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    Ok(resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default())
}
