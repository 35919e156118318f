//! grantshift itself, configured against the fake upstreams and served in-process on
//! 127.0.0.1:0 until the test shuts it down. The test proxy writes its events to
//! `events.jsonl` in its TempDir, keeps a subscription to them (so a test waits for an event
//! instead of sleeping), a [`Reloader`] (so a test can swap its config live) and its
//! [`ProxyHandle`] (its metrics, leaf cache and fault injection, while it serves).

use super::client::{client_config, connect_tunnel, full, tls_connect, Http, HttpConn, Reply};
use super::upstreams::{FakeSalesforce, TcpEchoServer, TunnelServer};
use super::{within, ECHO_HOST, SALESFORCE_HOSTS, TUNNEL_HOST, UNTRUSTED_HOST};
use grantshift::config::Config;
use grantshift::telemetry::events::Event;
use grantshift::{Proxy, ProxyHandle, Reloader};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;

/// The upstreams a test proxy is wired to.
pub struct Upstreams {
    pub sf: FakeSalesforce,
    pub tunnel: TunnelServer,
    pub echo: TcpEchoServer,
}

/// Where the upstreams listen, and the fake Salesforce's CA file: all a config needs.
#[derive(Clone, Debug)]
pub struct UpstreamAddrs {
    pub sf: SocketAddr,
    pub sf_ca_pem_path: PathBuf,
    pub tunnel: SocketAddr,
    pub echo: SocketAddr,
}

impl Upstreams {
    pub fn addrs(&self) -> UpstreamAddrs {
        UpstreamAddrs {
            sf: self.sf.addr(),
            sf_ca_pem_path: self.sf.ca_pem_path().to_path_buf(),
            tunnel: self.tunnel.addr(),
            echo: self.echo.addr(),
        }
    }

    pub async fn start() -> Upstreams {
        Upstreams::with_salesforce(FakeSalesforce::start().await).await
    }

    /// The given fake Salesforce (e.g. [`FakeSalesforce::start_http1_only`]) and fresh others.
    pub async fn with_salesforce(sf: FakeSalesforce) -> Upstreams {
        Upstreams {
            sf,
            tunnel: TunnelServer::start().await,
            echo: TcpEchoServer::start().await,
        }
    }
}

/// TOML string literal.
pub fn toml_str(s: impl AsRef<str>) -> String {
    serde_json::to_string(s.as_ref()).unwrap()
}

/// Builds the `grantshift.toml` of a test proxy. Defaults: listen on 127.0.0.1:0, CA files in
/// the proxy's TempDir, the fake Salesforce CA in `extra_root_certs`, `connect_to` routing every
/// fake host to its server, `connect_timeout = "2s"`, `request_timeout = "3s"`,
/// `shutdown_grace = "5s"`, default `allowed_connect_ports` and `[intercept]`,
/// `[telemetry] events = "events.jsonl"` (next to the config file). Any other `[proxy]` or
/// `[upstream]` key (limits, `auth`, `allow_clients`, `pool_idle_timeout`, …) is a line of
/// [`proxy`](Self::proxy) or [`upstream`](Self::upstream).
#[derive(Clone, Debug)]
pub struct TestProxyBuilder {
    allowed_connect_ports: Option<Vec<u16>>,
    shutdown_grace: String,
    connect_timeout: String,
    request_timeout: String,
    intercept_hosts: Option<Vec<String>>,
    connect_to: Vec<(String, String)>,
    extra_root_certs: Vec<PathBuf>,
    ca_files: Option<(PathBuf, PathBuf)>,
    max_token_body: Option<usize>,
    events: String,
    proxy_lines: String,
    upstream_lines: String,
    telemetry_lines: String,
    extra_toml: String,
    token_cache_off: bool,
    env: HashMap<String, String>,
}

impl Default for TestProxyBuilder {
    fn default() -> Self {
        TestProxyBuilder {
            allowed_connect_ports: None,
            shutdown_grace: "5s".into(),
            connect_timeout: "2s".into(),
            request_timeout: "3s".into(),
            intercept_hosts: None,
            connect_to: Vec::new(),
            extra_root_certs: Vec::new(),
            ca_files: None,
            max_token_body: None,
            events: EVENTS_FILE.into(),
            proxy_lines: String::new(),
            upstream_lines: String::new(),
            telemetry_lines: String::new(),
            extra_toml: String::new(),
            token_cache_off: false,
            env: HashMap::new(),
        }
    }
}

impl TestProxyBuilder {
    pub fn allowed_connect_ports(mut self, ports: &[u16]) -> Self {
        self.allowed_connect_ports = Some(ports.to_vec());
        self
    }

    pub fn shutdown_grace(mut self, d: &str) -> Self {
        self.shutdown_grace = d.into();
        self
    }

    pub fn connect_timeout(mut self, d: &str) -> Self {
        self.connect_timeout = d.into();
        self
    }

    pub fn request_timeout(mut self, d: &str) -> Self {
        self.request_timeout = d.into();
        self
    }

    pub fn intercept_hosts(mut self, hosts: &[&str]) -> Self {
        self.intercept_hosts = Some(hosts.iter().map(|h| h.to_string()).collect());
        self
    }

    /// Add or replace a `[upstream.connect_to]` entry (`"host:port" = "ip:port"`).
    pub fn connect_to(mut self, host_port: &str, addr: SocketAddr) -> Self {
        self.connect_to.push((host_port.into(), addr.to_string()));
        self
    }

    pub fn extra_root_cert(mut self, pem_path: &Path) -> Self {
        self.extra_root_certs.push(pem_path.to_path_buf());
        self
    }

    /// The CA certificate given with [`ca_files`](Self::ca_files), if any.
    pub fn ca_cert_path(&self) -> Option<&Path> {
        self.ca_files.as_ref().map(|(cert, _)| cert.as_path())
    }

    /// Use these CA files instead of fresh ones in the proxy's TempDir (restart tests).
    pub fn ca_files(mut self, cert: &Path, key: &Path) -> Self {
        self.ca_files = Some((cert.to_path_buf(), key.to_path_buf()));
        self
    }

    /// `[proxy] max_token_body`.
    pub fn max_token_body(mut self, bytes: usize) -> Self {
        self.max_token_body = Some(bytes);
        self
    }

    /// `[telemetry] events` (relative to the config file's directory; `""` disables).
    pub fn events(mut self, path: &str) -> Self {
        self.events = path.into();
        self
    }

    /// A `key = value` line in `[proxy]`, e.g. `max_connections = 2` (a key this builder does
    /// not set otherwise).
    pub fn proxy(mut self, line: &str) -> Self {
        self.proxy_lines.push_str(line);
        self.proxy_lines.push('\n');
        self
    }

    /// A `key = value` line in `[upstream]`, e.g. `connect_to_only = true` (a key this builder
    /// does not set otherwise).
    pub fn upstream(mut self, line: &str) -> Self {
        self.upstream_lines.push_str(line);
        self.upstream_lines.push('\n');
        self
    }

    /// A `key = value` line in `[telemetry]`, e.g. `report_max_sets = 10` (not `events`: see
    /// [`events`](Self::events)).
    pub fn telemetry(mut self, line: &str) -> Self {
        self.telemetry_lines.push_str(line);
        self.telemetry_lines.push('\n');
        self
    }

    /// TOML appended verbatim after the generated file: only for tables this builder does not
    /// write (`[proxy]`, `[ca]`, `[upstream]`, `[upstream.connect_to]`, `[intercept]`,
    /// `[telemetry]`), e.g. `[[rollout]]` and `[[credentials]]`.
    /// An environment variable for the config's `password_env` keys, seen by this proxy only:
    /// the config is loaded with it as its secrets lookup, and the process environment (which
    /// every test in the binary shares) is not touched.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.insert(name.to_string(), value.to_string());
        self
    }

    /// The variables set with [`env`](Self::env): a binary run of this builder
    /// ([`BinaryProxy`](crate::bin::BinaryProxy)) gets them in its process environment.
    pub fn env_vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.env.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn extra_toml(mut self, toml: &str) -> Self {
        self.extra_toml.push_str(toml);
        self
    }

    /// `[token_cache] enabled = false`: every upgraded login goes upstream, for tests about
    /// where each one goes rather than about the cache.
    /// Kept by [`with_extra_toml`](Self::with_extra_toml), so a reload keeps it.
    pub fn token_cache_off(mut self) -> Self {
        self.token_cache_off = true;
        self
    }

    /// The same builder with its extra TOML replaced (a changed config for a reload).
    pub fn with_extra_toml(&self, toml: &str) -> Self {
        let mut b = self.clone();
        b.extra_toml = toml.into();
        b
    }

    /// The config text for `up`. CA paths are relative (`grantshift-ca.pem`) unless
    /// [`ca_files`](Self::ca_files) was given, so they land in the directory the file is read from.
    pub fn render(&self, up: &Upstreams) -> String {
        self.render_for(&up.addrs())
    }

    /// [`render`](Self::render) for upstreams known by their addresses.
    pub fn render_for(&self, up: &UpstreamAddrs) -> String {
        let mut t = String::new();
        t.push_str("[proxy]\n");
        t.push_str(&self.proxy_lines);
        t.push_str("listen = \"127.0.0.1:0\"\n");
        // Port 0: proxies running in parallel (in-process or binaries) must not fight over 9464.
        t.push_str("admin_listen = \"127.0.0.1:0\"\n");
        if let Some(ports) = &self.allowed_connect_ports {
            t.push_str(&format!("allowed_connect_ports = {ports:?}\n"));
        }
        if let Some(max) = self.max_token_body {
            t.push_str(&format!("max_token_body = {max}\n"));
        }
        t.push_str(&format!(
            "shutdown_grace = {}\n\n",
            toml_str(&self.shutdown_grace)
        ));

        t.push_str("[ca]\n");
        match &self.ca_files {
            Some((cert, key)) => {
                t.push_str(&format!("cert = {}\n", toml_str(cert.to_str().unwrap())));
                t.push_str(&format!("key = {}\n\n", toml_str(key.to_str().unwrap())));
            }
            None => t.push_str("cert = \"grantshift-ca.pem\"\nkey = \"grantshift-ca.key\"\n\n"),
        }

        t.push_str("[upstream]\n");
        t.push_str(&self.upstream_lines);
        let roots: Vec<String> = std::iter::once(up.sf_ca_pem_path.clone())
            .chain(self.extra_root_certs.iter().cloned())
            .map(|p| toml_str(p.to_str().unwrap()))
            .collect();
        t.push_str(&format!("extra_root_certs = [{}]\n", roots.join(", ")));
        t.push_str(&format!(
            "connect_timeout = {}\n",
            toml_str(&self.connect_timeout)
        ));
        t.push_str(&format!(
            "request_timeout = {}\n\n",
            toml_str(&self.request_timeout)
        ));

        t.push_str("[upstream.connect_to]\n");
        let mut routes: Vec<(String, String)> = SALESFORCE_HOSTS
            .iter()
            .map(|h| (format!("{h}:443"), up.sf.to_string()))
            .collect();
        routes.push((format!("{TUNNEL_HOST}:443"), up.tunnel.to_string()));
        routes.push((format!("{UNTRUSTED_HOST}:443"), up.tunnel.to_string()));
        routes.push((format!("{ECHO_HOST}:443"), up.echo.to_string()));
        for (k, v) in &self.connect_to {
            match routes.iter_mut().find(|(rk, _)| rk == k) {
                Some(existing) => existing.1 = v.clone(),
                None => routes.push((k.clone(), v.clone())),
            }
        }
        for (k, v) in routes {
            t.push_str(&format!("{} = {}\n", toml_str(k), toml_str(v)));
        }
        t.push('\n');

        if let Some(hosts) = &self.intercept_hosts {
            let hosts: Vec<String> = hosts.iter().map(toml_str).collect();
            t.push_str(&format!("[intercept]\nhosts = [{}]\n\n", hosts.join(", ")));
        }
        t.push_str(&format!(
            "[telemetry]\n{}events = {}\n\n",
            self.telemetry_lines,
            toml_str(&self.events)
        ));
        if self.token_cache_off {
            t.push_str("[token_cache]\nenabled = false\n\n");
        }
        t.push_str(&self.extra_toml);
        t
    }

    /// Start fresh upstreams and the proxy.
    pub async fn start(self) -> TestProxy {
        let up = Upstreams::start().await;
        self.start_with(up).await
    }

    /// Start the proxy against existing upstreams.
    pub async fn start_with(self, up: Upstreams) -> TestProxy {
        let dir = tempfile::tempdir().expect("proxy tempdir");
        let addrs = up.addrs();
        let text = self.render_for(&addrs);
        let config_path = dir.path().join("grantshift.toml");
        std::fs::write(&config_path, &text).expect("write grantshift.toml");
        let running = Running::start(&text, dir.path(), &self.env).await;
        TestProxy {
            sf: up.sf,
            tunnel: up.tunnel,
            echo: up.echo,
            addrs,
            builder: self,
            running,
            config_text: text,
            dir,
        }
    }
}

/// The events file name a test proxy writes to, in its directory.
pub const EVENTS_FILE: &str = "events.jsonl";

/// One in-process grantshift serving on 127.0.0.1:0 (and its admin server and transparent TLS
/// listener, where the config enables them) until dropped or shut down: what [`TestProxy`] and
/// [`ConfiguredProxy`](crate::clients::ConfiguredProxy) run.
pub(crate) struct Running {
    pub(crate) addr: SocketAddr,
    /// `[proxy] tls_listen`, `None` when not configured.
    pub(crate) tls_addr: Option<SocketAddr>,
    pub(crate) ca_pem: String,
    pub(crate) ca_pem_path: PathBuf,
    events: tokio::sync::Mutex<broadcast::Receiver<Arc<Event>>>,
    reloader: Reloader,
    pub(crate) handle: ProxyHandle,
    /// The admin server (`[proxy].admin_listen`), `None` when disabled.
    admin: Option<SocketAddr>,
    shutdown: Option<oneshot::Sender<()>>,
    shutdown_observed: Option<oneshot::Receiver<()>>,
    serve: Option<JoinHandle<Result<(), grantshift::Error>>>,
}

impl Running {
    /// Serve the config `text`, its relative paths resolved in `dir` and the environment
    /// variables it names looked up in `env`.
    pub(crate) async fn start(text: &str, dir: &Path, env: &HashMap<String, String>) -> Running {
        super::init_crypto();
        let config = Config::from_toml_str_with(text, dir, env)
            .unwrap_or_else(|e| panic!("test config rejected: {e}\n---\n{text}"));
        let proxy = Proxy::new(config).unwrap_or_else(|e| panic!("Proxy::new failed: {e}"));
        let ca_pem = proxy.ca_cert_pem();
        let ca_pem_path = dir.join("trust-grantshift-ca.pem");
        std::fs::write(&ca_pem_path, &ca_pem).expect("write CA PEM for clients");
        // Subscribe before serve() consumes the proxy: no event can be missed.
        let events = proxy.subscribe_events();
        let reloader = proxy.reloader();
        let handle = proxy.handle();
        let admin = proxy
            .start_admin()
            .await
            .unwrap_or_else(|e| panic!("start_admin failed: {e}"));
        let tls_addr = proxy
            .start_tls_listener()
            .await
            .unwrap_or_else(|e| panic!("start_tls_listener failed: {e}"));

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let (observed_tx, observed_rx) = oneshot::channel::<()>();
        let serve = tokio::spawn(proxy.serve(listener, async move {
            let _ = rx.await;
            // serve() has polled its shutdown future to completion: it knows.
            let _ = observed_tx.send(());
        }));
        Running {
            addr,
            tls_addr,
            ca_pem,
            ca_pem_path,
            events: tokio::sync::Mutex::new(events),
            reloader,
            handle,
            admin,
            shutdown: Some(tx),
            shutdown_observed: Some(observed_rx),
            serve: Some(serve),
        }
    }
}

impl Running {
    /// The next telemetry event, as the JSON object written to the events file.
    pub(crate) async fn next_event(&self) -> serde_json::Value {
        let mut rx = self.events.lock().await;
        let event = within(20, "the next telemetry event", rx.recv())
            .await
            .expect("event subscription");
        serde_json::to_value(&*event).expect("events serialize")
    }
}

/// A running grantshift with its upstreams.
pub struct TestProxy {
    pub sf: FakeSalesforce,
    pub tunnel: TunnelServer,
    pub echo: TcpEchoServer,
    addrs: UpstreamAddrs,
    builder: TestProxyBuilder,
    running: Running,
    config_text: String,
    dir: tempfile::TempDir,
}

impl TestProxy {
    /// The default test proxy, with `extra_toml` appended to its config (see
    /// [`TestProxyBuilder::extra_toml`]).
    pub async fn start(extra_toml: &str) -> TestProxy {
        TestProxy::builder().extra_toml(extra_toml).start().await
    }

    pub fn builder() -> TestProxyBuilder {
        TestProxyBuilder::default()
    }

    pub fn addr(&self) -> SocketAddr {
        self.running.addr
    }

    /// Where the admin server (`/`, `/report`, `/metrics`, `/healthz`) listens.
    pub fn admin_addr(&self) -> SocketAddr {
        self.running
            .admin
            .expect("the admin server is enabled (admin_listen is not \"\")")
    }

    /// The running proxy's [`Reloader`] (e.g. to report a failed reload).
    pub fn reloader(&self) -> &Reloader {
        &self.running.reloader
    }

    /// The running proxy's [`ProxyHandle`]: its metrics, leaf cache and fault injection.
    pub fn handle(&self) -> &ProxyHandle {
        &self.running.handle
    }

    /// grantshift's CA certificate (PEM), as `Proxy::ca_cert_pem` returned it.
    pub fn ca_pem(&self) -> &str {
        &self.running.ca_pem
    }

    /// A file holding [`ca_pem`](Self::ca_pem) (for `curl --cacert`).
    pub fn ca_pem_path(&self) -> &Path {
        &self.running.ca_pem_path
    }

    /// The directory holding the config and (by default) the CA files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_text(&self) -> &str {
        &self.config_text
    }

    /// `CONNECT authority` through this proxy.
    pub async fn connect(&self, authority: &str) -> (u16, TcpStream) {
        connect_tunnel(self.addr(), authority).await
    }

    /// A TLS connector trusting only grantshift's CA, offering `alpn`.
    pub fn tls_connector(&self, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from(Arc::new(client_config(&[self.ca_pem()], alpn)))
    }

    /// `CONNECT host:443`, then TLS trusting only grantshift's CA, offering `alpn`.
    pub async fn intercept_tls(&self, host: &str, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
        let (status, tcp) = self.connect(&format!("{host}:443")).await;
        assert_eq!(status, 200, "CONNECT {host}:443");
        tls_connect(tcp, host, self.ca_pem(), alpn).await
    }

    /// An HTTP connection to `host` through interception, speaking `http` (negotiated by ALPN).
    pub async fn intercepted(&self, host: &str, http: Http) -> HttpConn {
        let tls = self.intercept_tls(host, &[http.alpn()]).await;
        assert_eq!(
            tls.get_ref().1.alpn_protocol(),
            Some(http.alpn()),
            "proxy accepts ALPN {:?}",
            String::from_utf8_lossy(http.alpn())
        );
        HttpConn::handshake(tls, http).await
    }

    /// [`intercepted`](Self::intercepted), also returning the client's address as the proxy
    /// sees it (what an event's `client` names).
    pub async fn intercepted_from(&self, host: &str, http: Http) -> (HttpConn, SocketAddr) {
        let tls = self.intercept_tls(host, &[http.alpn()]).await;
        let local = tls.get_ref().0.local_addr().unwrap();
        (HttpConn::handshake(tls, http).await, local)
    }

    /// A password login (or any token request) with a form `body`, on a fresh HTTP/1.1
    /// connection to `host`.
    pub async fn login(&self, host: &str, body: &str) -> Reply {
        let mut conn = self.intercepted(host, Http::H1).await;
        post_form(&mut conn, host, super::salesforce::TOKEN_PATH, body).await
    }

    /// A token request on its own intercepted HTTP/1.1 connection with `Connection: close`:
    /// the response is read, then the connection to its end. When this returns the proxy has
    /// finished the exchange, so its event has been handed to the events writer (recorded or,
    /// with a full queue, dropped). Returns the status and the body.
    pub async fn token_request_then_close(&self, host: &str, body: &str) -> (u16, String) {
        self.token_request_then_close_with(host, &[], body).await
    }

    /// [`token_request_then_close`](Self::token_request_then_close) with extra header lines
    /// (`("authorization", "Basic …")`).
    pub async fn token_request_then_close_with(
        &self,
        host: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tls = self.intercept_tls(host, &[b"http/1.1"]).await;
        let extra: String = headers
            .iter()
            .map(|(name, value)| format!("{name}: {value}\r\n"))
            .collect();
        let request = format!(
            "POST {} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
            super::salesforce::TOKEN_PATH,
            body.len()
        );
        within(20, "token request then close", async {
            tls.write_all(request.as_bytes()).await.unwrap();
            let (status, headers) = super::client::read_response_head(&mut tls).await;
            let body = super::client::read_response_body(&mut tls, &headers).await;
            let mut rest = Vec::new();
            // Ok(0) after close_notify, or an unexpected-EOF error: either way, closed.
            let _ = tls.read_to_end(&mut rest).await;
            assert!(rest.is_empty(), "nothing after the response: {rest:?}");
            (status, String::from_utf8_lossy(&body).into_owned())
        })
        .await
    }

    /// The next telemetry event, as the JSON object written to the events file. Its line is
    /// on disk when this returns.
    pub async fn next_event(&self) -> serde_json::Value {
        self.running.next_event().await
    }

    /// The events file, one JSON object per line.
    pub fn events_in_file(&self) -> Vec<serde_json::Value> {
        read_events(&self.events_path())
    }

    pub fn events_path(&self) -> PathBuf {
        self.dir.path().join(EVENTS_FILE)
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("grantshift.toml")
    }

    /// The builder this proxy was started from.
    pub fn builder_used(&self) -> &TestProxyBuilder {
        &self.builder
    }

    /// Apply the config of `builder` to the running proxy ([`Reloader::apply`]), as SIGHUP
    /// would; also writes it to the config file.
    pub fn reload(&mut self, builder: TestProxyBuilder) {
        let text = builder.render_for(&self.addrs);
        std::fs::write(self.config_path(), &text).expect("write grantshift.toml");
        let config = Config::from_toml_str_with(&text, self.dir.path(), &builder.env)
            .unwrap_or_else(|e| panic!("reloaded config rejected: {e}\n---\n{text}"));
        self.running.reloader.apply(config);
        self.builder = builder;
        self.config_text = text;
    }

    /// Stop this proxy and start a new one from the same config file and directory (same CA,
    /// same events file), against the same upstreams: a restart.
    pub async fn restart(mut self) -> TestProxy {
        self.begin_shutdown();
        self.stopped().await.expect("serve() returns Ok");
        self.running = Running::start(&self.config_text, self.dir.path(), &self.builder.env).await;
        self
    }

    /// Resolve the shutdown future passed to `serve` (returns at once).
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.running.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Wait until `serve` has seen its shutdown future resolve (after
    /// [`begin_shutdown`](Self::begin_shutdown)): from then on it is draining.
    pub async fn shutdown_observed(&mut self) {
        let rx = self
            .running
            .shutdown_observed
            .take()
            .expect("already awaited");
        within(20, "serve() noticing shutdown", rx)
            .await
            .expect("serve() dropped its shutdown future without polling it to completion");
    }

    /// Has `serve` returned?
    pub fn serve_returned(&self) -> bool {
        self.running.serve.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Wait for `serve` to return (after [`begin_shutdown`](Self::begin_shutdown)); its result.
    pub async fn stopped(&mut self) -> Result<(), grantshift::Error> {
        let handle = self.running.serve.take().expect("serve already awaited");
        within(30, "proxy serve() returning after shutdown", handle)
            .await
            .expect("serve task panicked")
    }

    /// Trigger shutdown and wait until `serve` has returned.
    pub async fn shutdown(mut self) -> Result<(), grantshift::Error> {
        self.begin_shutdown();
        self.stopped().await
    }
}

/// `POST path` with `Content-Type: application/x-www-form-urlencoded` and `body`.
pub async fn post_form(conn: &mut HttpConn, host: &str, path: &str, body: &str) -> Reply {
    let req = conn
        .request(http::Method::POST, host, path)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(full(body.to_string()))
        .unwrap();
    conn.send(req).await
}

/// Every line of an events file, parsed (an absent file has none).
pub fn read_events(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("event line is not JSON ({e}): {l}"))
        })
        .collect()
}
