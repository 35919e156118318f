//! Where users run grantshift: real clients (Python `requests`, simple-salesforce, jsforce,
//! Java's `HttpClient` and `HttpURLConnection`, Go's `net/http`, curl) pointed at it, and
//! grantshift instances a test configures in full (an upstream corporate proxy, a second
//! grantshift behind it, the transparent TLS listener).
//!
//! # The real clients
//! `scripts/test` installs them, pinned, under `target/clients` (a Python venv and an npm
//! `node_modules`); the pins live in `tests/clients/` and the client programs next to them. The
//! Java programs are compiled with the JDK's `javac` and the Go one built with Debian's `go`
//! (standard library only, offline) by their runners. A test whose runtime or package is
//! missing fails with a message saying to run `./scripts/test`; none is ever skipped.
//!
//! | runner | program | library, proxy and CA settings |
//! |---|---|---|
//! | [`python_client`] | `python/requests_login.py LOGIN_URL API_PATH` | `requests`; `HTTPS_PROXY`, `REQUESTS_CA_BUNDLE` |
//! | [`python_client`] | `python/simple_salesforce_login.py API_VERSION [LOGIN_URL]` | simple-salesforce (its `requests.Session`); same |
//! | [`node_client`] | `node/jsforce_login.js LOGIN_URL API_VERSION` | jsforce 3 (node-fetch + https-proxy-agent); `HTTPS_PROXY`, `NODE_EXTRA_CA_CERTS` |
//! | [`java_client`] | `java/GrantshiftClient.java` | `java.net.http.HttpClient` (h2); a `ProxySelector`, a keytool PKCS12 truststore |
//! | [`url_connection_client`] | `java/UrlConnectionClient.java` | `HttpURLConnection` (HTTP/1.1); `-Dhttps.proxyHost/Port`, the same truststore |
//! | [`go_client`] | `go/main.go` | `net/http` (h2 by ALPN); `HTTPS_PROXY`, `SSL_CERT_FILE` |
//! | [`python_client`], [`python_client_direct`] | `python/simple_salesforce_soap_login.py API_VERSION` | simple-salesforce's SOAP `login()` (security token); through grantshift as above, or straight at the fake ([`CONNECT_TO_ENV`] + the fake's CA) |
//! | [`node_client`], [`node_client_direct`] | `node/jsforce_soap_login.js LOGIN_URL API_VERSION` | jsforce's SOAP `login()` (no `oauth2`); the same two ways |
//!
//! Every client program except the two SOAP ones logs in with the password grant (credentials from `GS_*`), makes one
//! REST call with the token at the `instance_url`, and prints one JSON line:
//!
//! | field | what |
//! |---|---|
//! | `client` | `name/version` of the library that did the work |
//! | `token_status`, `token_body` | the token response (absent where the library hides it) |
//! | `access_token`, `instance_url` | what the client took from the token response |
//! | `data_status`, `data_body` | the REST call it then made at `instance_url` with that token |
//! | `token_http_version`, `data_http_version` | the HTTP version of those responses, where the library exposes it, in its own spelling: `HTTP/1.1` (requests, HttpURLConnection), `HTTP_2` (HttpClient), `HTTP/2.0` (Go's `resp.Proto`) |
//!
//! With [`EXTRA_STEPS_ENV`]` = 1` in its environment ([`with_extra_steps`], or
//! `cmd.env("GS_EXTRA", "1")` on any runner's command) a program then also makes two more
//! requests through its own HTTP machinery at `LOGIN_URL`, which need no token and run even
//! when the login fails (a login that throws is then recorded as `login_error` and the program
//! still prints its line and exits 0):
//!
//! | field | what |
//! |---|---|
//! | `echo_sent_sha256` | hex sha256 of the [`ECHO_LEN`] random bytes the client POSTed to `/echo` (`Content-Type: application/octet-stream`) |
//! | `echo_status`, `echo_body` | the `/echo` response: JSON with `body_len`, `body_sha256`, `version`, `host`, `headers`… (see [`super::routes`]) |
//! | `get_status`, `get_sha256`, `get_x_sha256` | `GET /bytes?n=`[`GET_LEN`]: status, hex sha256 of the body the client got, its `x-sha256` header |
//! | `echo_http_version`, `get_http_version` | as `token_http_version` (not jsforce, whose transport does not expose it) |
//! | `login_error`, `echo_error`, `get_error` | what a step threw instead of completing |
//!
//! [`assert_upgraded_login_then_rest_call`] checks the line against what the fake Salesforce
//! recorded, [`assert_extra_steps`] the extra fields.

use super::admin::parse_openmetrics;
use super::bin::run_to_end;
use super::client::{connect_tunnel, tls_connect, Http, HttpConn, Reply};
pub use super::proxy::toml_str;
use super::proxy::{post_form, Running};
use super::routes::Recorded;
use super::salesforce::{acme, TOKEN_PATH};
use super::upstreams::FakeSalesforce;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;

/// The REST call every client makes with the token it got, at the `instance_url` it got.
pub const API_VERSION: &str = "62.0";
pub const API_PATH: &str = "/services/data/v62.0/sobjects/Account";

/// What a test says when a client runtime or package is missing.
pub const RUN_SCRIPTS_TEST: &str =
    "run ./scripts/test: it installs the pinned client runtimes and packages (into target/clients) before cargo test";

/// Where `scripts/test` installs the client packages.
pub fn clients_dir() -> PathBuf {
    super::repo_path("target/clients")
}

/// A client program or pin file in `tests/clients/`.
pub fn client_file(relative: &str) -> PathBuf {
    super::repo_path("tests/clients").join(relative)
}

/// The version `tests/clients/python/requirements.txt` pins `package` to.
pub fn pinned_python(package: &str) -> String {
    let path = client_file("python/requirements.txt");
    let text = std::fs::read_to_string(&path).expect("read tests/clients/python/requirements.txt");
    text.lines()
        .filter_map(|l| l.split_once("=="))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case(package))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| panic!("{} pins no {package}", path.display()))
}

/// The version `tests/clients/node/package.json` pins `package` to (an exact version).
pub fn pinned_npm(package: &str) -> String {
    let path = client_file("node/package.json");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read package.json")).unwrap();
    let version = json["dependencies"][package]
        .as_str()
        .unwrap_or_else(|| panic!("{} has no dependency {package}", path.display()));
    assert!(
        version.chars().all(|c| c.is_ascii_digit() || c == '.'),
        "{package} must be pinned to an exact version in {}, not {version:?}",
        path.display()
    );
    version.to_string()
}

/// `program` on `PATH`, or a failure saying to run `./scripts/test`.
pub fn require_program(program: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{program}` is not installed (not on PATH): {RUN_SCRIPTS_TEST}"))
}

/// A file `scripts/test` installs, or a failure saying to run it.
fn require_installed(path: &Path, what: &str) -> PathBuf {
    assert!(
        path.exists(),
        "{what} is not installed ({} is missing): {RUN_SCRIPTS_TEST}",
        path.display()
    );
    path.to_path_buf()
}

/// Where a client finds grantshift: the proxy address and a PEM file of grantshift's CA.
#[derive(Clone, Debug)]
pub struct ClientProxy {
    pub addr: SocketAddr,
    pub ca_pem_path: PathBuf,
}

impl ClientProxy {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// `program` with an environment a test controls: no proxy, CA or runtime-option variables
/// inherited from the machine, and the acme integration user's credentials in `GS_*`.
pub fn client_command(program: impl AsRef<std::ffi::OsStr>, cwd: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(cwd);
    for var in super::PROXY_VARS {
        cmd.env_remove(var);
    }
    for var in [
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "NODE_EXTRA_CA_CERTS",
        "NODE_OPTIONS",
        "NODE_PATH",
        "NODE_USE_ENV_PROXY",
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONSTARTUP",
        "JAVA_TOOL_OPTIONS",
        "JDK_JAVA_OPTIONS",
        "_JAVA_OPTIONS",
        "CLASSPATH",
        "GODEBUG",
        "GS_EXTRA",
        CONNECT_TO_ENV,
    ] {
        cmd.env_remove(var);
    }
    cmd.env("GS_CLIENT_ID", acme::CLIENT_ID)
        .env("GS_CLIENT_SECRET", acme::CLIENT_SECRET)
        .env("GS_USERNAME", acme::USERNAME)
        .env("GS_PASSWORD", acme::PASSWORD)
        .env("GS_SECURITY_TOKEN", acme::SECURITY_TOKEN);
    cmd
}

/// The venv's Python, checked to be there.
fn venv_python() -> PathBuf {
    require_installed(
        &clients_dir().join("venv/bin/python"),
        "the Python client venv",
    )
}

/// `tests/clients/python/<script> args…` in the venv, with `HTTPS_PROXY` and
/// `REQUESTS_CA_BUNDLE` set as an operator would.
pub fn python_client(script: &str, args: &[&str], proxy: &ClientProxy, cwd: &Path) -> Command {
    let mut cmd = python_script(script, args, cwd);
    cmd.env("HTTPS_PROXY", proxy.url())
        .env("REQUESTS_CA_BUNDLE", &proxy.ca_pem_path);
    cmd
}

/// `tests/clients/python/<script> args…` in the venv, reaching the fake Salesforce itself:
/// [`connect_to_fake`] routes (the script imports `gs_connect_to`) and `REQUESTS_CA_BUNDLE`
/// with the fake's CA.
pub fn python_client_direct(
    script: &str,
    args: &[&str],
    sf: &FakeSalesforce,
    cwd: &Path,
) -> Command {
    let mut cmd = python_script(script, args, cwd);
    cmd.env(CONNECT_TO_ENV, connect_to_fake(sf))
        .env("REQUESTS_CA_BUNDLE", sf.ca_pem_path());
    cmd
}

fn python_script(script: &str, args: &[&str], cwd: &Path) -> Command {
    let mut cmd = client_command(venv_python(), cwd);
    cmd.arg("-I") // isolated: no user site-packages, no PYTHON* variables
        .arg(client_file(&format!("python/{script}")))
        .args(args);
    cmd
}

/// The variable the SOAP client programs' `gs_connect_to` modules read:
/// `host:port=ip:port,…`, every connection to a listed name dialled at its address (the name
/// kept for SNI and the certificate check), any other name refused.
pub const CONNECT_TO_ENV: &str = "GS_CONNECT_TO";

/// [`CONNECT_TO_ENV`]'s value routing every [`super::SALESFORCE_HOSTS`] name (port 443) to
/// the fake Salesforce.
pub fn connect_to_fake(sf: &FakeSalesforce) -> String {
    super::SALESFORCE_HOSTS
        .iter()
        .map(|host| format!("{host}:443={}", sf.addr()))
        .collect::<Vec<_>>()
        .join(",")
}

/// The SOAP `login()` client programs (credentials from `GS_*`, incl. `GS_SECURITY_TOKEN`):
/// each logs in, makes one REST call with the session at the `serverUrl` host and prints one
/// JSON line (`client`, `access_token`, `instance_url`, `data_status`, `data_body`, or
/// `login_error`). Run them through grantshift with [`python_client`] / [`node_client`], or
/// straight at the fake with [`python_client_direct`] / [`node_client_direct`].
pub const SIMPLE_SALESFORCE_SOAP: &str = "simple_salesforce_soap_login.py";
/// Arguments: `LOGIN_URL API_VERSION`. See [`SIMPLE_SALESFORCE_SOAP`].
pub const JSFORCE_SOAP: &str = "jsforce_soap_login.js";

/// Python's `ssl` (OpenSSL underneath, so X.509 name constraints are honoured) verifying the
/// server at `addr` as `host` against `ca_pem` only: exits 0 printing `verified`, or non-zero
/// with the verification error on stderr.
pub fn python_tls_verify(ca_pem: &Path, host: &str, addr: SocketAddr, cwd: &Path) -> Command {
    const SCRIPT: &str = "import socket, ssl, sys\n\
        ca, host, ip, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])\n\
        ctx = ssl.create_default_context(cafile=ca)\n\
        with socket.create_connection((ip, port), timeout=20) as sock:\n\
        \x20   with ctx.wrap_socket(sock, server_hostname=host):\n\
        \x20       print('verified')\n";
    let mut cmd = client_command(venv_python(), cwd);
    cmd.arg("-I")
        .arg("-c")
        .arg(SCRIPT)
        .arg(ca_pem)
        .arg(host)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string());
    cmd
}

/// `node tests/clients/node/<script> args…` with the jsforce `scripts/test` installed,
/// `HTTPS_PROXY` and `NODE_EXTRA_CA_CERTS` set as an operator would.
pub fn node_client(script: &str, args: &[&str], proxy: &ClientProxy, cwd: &Path) -> Command {
    let mut cmd = node_script(script, args, cwd);
    cmd.env("HTTPS_PROXY", proxy.url())
        .env("NODE_EXTRA_CA_CERTS", &proxy.ca_pem_path);
    cmd
}

/// `node tests/clients/node/<script> args…` reaching the fake Salesforce itself:
/// [`connect_to_fake`] routes (the script requires `gs_connect_to`) and `NODE_EXTRA_CA_CERTS`
/// with the fake's CA.
pub fn node_client_direct(script: &str, args: &[&str], sf: &FakeSalesforce, cwd: &Path) -> Command {
    let mut cmd = node_script(script, args, cwd);
    cmd.env(CONNECT_TO_ENV, connect_to_fake(sf))
        .env("NODE_EXTRA_CA_CERTS", sf.ca_pem_path());
    cmd
}

fn node_script(script: &str, args: &[&str], cwd: &Path) -> Command {
    let node = require_program("node");
    let modules = clients_dir().join("node/node_modules");
    require_installed(&modules.join("jsforce/package.json"), "jsforce");
    let mut cmd = client_command(node, cwd);
    cmd.arg(client_file(&format!("node/{script}")))
        .args(args)
        .env("NODE_PATH", &modules);
    cmd
}

/// Compile `tests/clients/java/<source>` (with the `ClientSupport.java` the client programs
/// share) into `build` (under `target/clients`) and build a
/// PKCS12 truststore there holding grantshift's CA with keytool; the `java` command (in
/// `build`, with [`client_command`]'s environment) with that truststore and `-cp build`, to
/// which the caller adds its own JVM options and then the main class and its arguments.
async fn java_program(proxy: &ClientProxy, source: &str, build: &Path) -> Command {
    let javac = require_program("javac");
    let java = require_program("java");
    let keytool = require_program("keytool");

    // A `build` reused for several runs (the interop matrix) compiles once.
    let class = build.join(source.replace(".java", ".class"));
    if !class.exists() {
        let mut compile = Command::new(javac);
        compile
            .arg("-d")
            .arg(build)
            .arg(client_file(&format!("java/{source}")))
            .arg(client_file("java/ClientSupport.java"));
        let out = run_to_end(compile).await;
        assert!(
            out.status.success(),
            "javac {source} failed: {}\n{}",
            out.stdout,
            out.stderr
        );
    }

    // Always from this proxy's CA: a reused `build` may hold another proxy's (the CA it was
    // made from is kept beside it, so the same CA is not imported twice).
    let truststore = build.join("truststore.p12");
    let made_from = build.join("truststore-ca.pem");
    let ca = std::fs::read(&proxy.ca_pem_path).expect("read grantshift's CA PEM");
    if truststore.exists() && std::fs::read(&made_from).ok().as_deref() == Some(&ca[..]) {
        return java_command(java, build, &truststore);
    }
    let _ = std::fs::remove_file(&truststore);
    let mut import = Command::new(keytool);
    import
        .args([
            "-importcert",
            "-noprompt",
            "-storetype",
            "PKCS12",
            "-alias",
            "grantshift",
            "-storepass",
            "changeit",
            "-file",
        ])
        .arg(&proxy.ca_pem_path)
        .arg("-keystore")
        .arg(&truststore);
    let out = run_to_end(import).await;
    assert!(
        out.status.success(),
        "keytool -importcert failed: {}\n{}",
        out.stdout,
        out.stderr
    );
    std::fs::write(&made_from, &ca).expect("keep the truststore's CA");
    java_command(java, build, &truststore)
}

/// `java` in `build` with the `truststore` and `-cp build`.
fn java_command(java: PathBuf, build: &Path, truststore: &Path) -> Command {
    let mut cmd = client_command(java, build);
    cmd.arg(format!(
        "-Djavax.net.ssl.trustStore={}",
        truststore.display()
    ))
    .arg("-Djavax.net.ssl.trustStorePassword=changeit")
    .arg("-Djavax.net.ssl.trustStoreType=PKCS12")
    .arg("-cp")
    .arg(build);
    cmd
}

/// Compile `tests/clients/java/GrantshiftClient.java` into `build` (under `target/clients`)
/// and build a PKCS12 truststore holding grantshift's CA with keytool; the `java` command that
/// runs the client (Java's `HttpClient`, h2) through `proxy` (a `ProxySelector`) with that
/// truststore, logging in at `login_url`.
pub async fn java_client(proxy: &ClientProxy, login_url: &str, build: &Path) -> Command {
    let mut cmd = java_program(proxy, "GrantshiftClient.java", build).await;
    cmd.arg("GrantshiftClient")
        .arg(proxy.addr.ip().to_string())
        .arg(proxy.addr.port().to_string())
        .arg(login_url)
        .arg(API_PATH);
    cmd
}

/// Like [`java_client`] for `tests/clients/java/UrlConnectionClient.java`: Java's
/// `HttpURLConnection` (HTTP/1.1, what Salesforce WSC and Data Loader use), with the proxy in
/// the `https.proxyHost` / `https.proxyPort` system properties as operators configure those.
pub async fn url_connection_client(proxy: &ClientProxy, login_url: &str, build: &Path) -> Command {
    let mut cmd = java_program(proxy, "UrlConnectionClient.java", build).await;
    cmd.arg(format!("-Dhttps.proxyHost={}", proxy.addr.ip()))
        .arg(format!("-Dhttps.proxyPort={}", proxy.addr.port()))
        .arg("UrlConnectionClient")
        .arg(login_url)
        .arg(API_PATH);
    cmd
}

/// Like [`url_connection_client`] for `tests/clients/java/SoapLoginClient.java`: SOAP
/// `login()` posted the way Salesforce WSC posts it, then `getUserInfo()` with the session.
pub async fn soap_url_connection_client(
    proxy: &ClientProxy,
    login_url: &str,
    api_version: &str,
    build: &Path,
) -> Command {
    let mut cmd = java_program(proxy, "SoapLoginClient.java", build).await;
    cmd.arg(format!("-Dhttps.proxyHost={}", proxy.addr.ip()))
        .arg(format!("-Dhttps.proxyPort={}", proxy.addr.port()))
        .arg("SoapLoginClient")
        .arg(login_url)
        .arg(api_version);
    cmd
}

/// Build `tests/clients/go` (Go's `net/http`, standard library only) with Debian's `go` into
/// `build/gsclient`, offline (`GOPROXY=off`, `GOTOOLCHAIN=local`, no cgo; the build cache in
/// `target/clients/go`); the command that runs it with `HTTPS_PROXY` and `SSL_CERT_FILE` set
/// as an operator would, logging in at `login_url`.
pub async fn go_client(proxy: &ClientProxy, login_url: &str, build: &Path) -> Command {
    let go = require_program("go");
    let go_home = clients_dir().join("go");
    let binary = build.join("gsclient");
    if binary.exists() {
        // Built already for an earlier run in the same `build`.
        return go_command(&binary, proxy, login_url, build);
    }
    let mut compile = Command::new(go);
    compile
        .current_dir(client_file("go"))
        .args(["build", "-trimpath", "-o"])
        .arg(&binary)
        .arg(".")
        .env("GOCACHE", go_home.join("cache"))
        .env("GOPATH", go_home.join("path"))
        .env("GOENV", "off")
        .env("GOFLAGS", "")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOTELEMETRY", "off")
        .env("GO111MODULE", "on")
        .env("CGO_ENABLED", "0");
    let out = run_to_end(compile).await;
    assert!(
        out.status.success(),
        "go build tests/clients/go failed: {}\n{}",
        out.stdout,
        out.stderr
    );
    go_command(&binary, proxy, login_url, build)
}

fn go_command(binary: &Path, proxy: &ClientProxy, login_url: &str, build: &Path) -> Command {
    let mut cmd = client_command(binary, build);
    cmd.arg(login_url)
        .arg(API_PATH)
        .env("HTTPS_PROXY", proxy.url())
        .env("SSL_CERT_FILE", &proxy.ca_pem_path);
    cmd
}

/// curl with no config file and no proxy or CA environment (`-q` first ignores ~/.curlrc).
pub fn curl_without_environment(cwd: &Path) -> Command {
    let mut cmd = client_command(require_program("curl"), cwd);
    cmd.args(["-q", "-sS", "--max-time", "20"]);
    cmd
}

/// [`curl_without_environment`] whose `-w` appends a line `<status> <http version>` to the
/// body, for [`run_curl`].
pub fn curl_command(cwd: &Path) -> Command {
    let mut cmd = curl_without_environment(cwd);
    cmd.args(["-w", "\n%{http_code} %{http_version}"]);
    cmd
}

/// What a curl run printed: body, status code and HTTP version (`1.1`, `2`).
#[derive(Debug)]
pub struct CurlReply {
    pub body: String,
    pub status: u16,
    pub version: String,
}

/// Run curl to the end; it must exit 0.
pub async fn run_curl(cmd: Command) -> CurlReply {
    let out = run_to_end(cmd).await;
    assert!(
        out.status.success(),
        "curl failed ({:?}): stdout {}\nstderr {}",
        out.status,
        out.stdout,
        out.stderr
    );
    let (body, tail) = out.stdout.rsplit_once('\n').expect("curl's -w line");
    let (status, version) = tail.split_once(' ').expect("status and version");
    CurlReply {
        body: body.to_string(),
        status: status.parse().expect("status code"),
        version: version.to_string(),
    }
}

/// The JSON line a client program printed (its last line on stdout); the run must succeed.
pub async fn run_client(what: &str, cmd: Command) -> serde_json::Value {
    let out = run_to_end(cmd).await;
    assert!(
        out.status.success(),
        "{what} failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
    let line = out
        .stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("{what} printed nothing; stderr:\n{}", out.stderr));
    serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("{what} printed no JSON line ({e}): {line}\n{}", out.stderr))
}

/// How curl reaches grantshift.
#[derive(Clone, Debug)]
pub enum CurlRoute {
    /// As a forward proxy (`-x`).
    Proxy(ClientProxy),
    /// On its transparent TLS listener: `--resolve host:PORT:127.0.0.1` for every name, as if
    /// DNS or /etc/hosts pointed the Salesforce hosts at grantshift (`ca_pem_path`: its CA).
    Transparent {
        addr: SocketAddr,
        ca_pem_path: PathBuf,
    },
}

impl CurlRoute {
    /// curl (`flag`: `--http1.1` or `--http2`) set up to reach `https://host…` this way; the
    /// URL to give it for `path` on `host`.
    fn curl(&self, flag: &str, host: &str, path: &str, cwd: &Path) -> (Command, String) {
        let mut cmd = curl_command(cwd);
        cmd.arg(flag);
        match self {
            CurlRoute::Proxy(proxy) => {
                cmd.args(["-x", &proxy.url(), "--cacert"])
                    .arg(&proxy.ca_pem_path);
                (cmd, format!("https://{host}{path}"))
            }
            CurlRoute::Transparent { addr, ca_pem_path } => {
                let port = addr.port();
                cmd.args(["--resolve", &format!("{host}:{port}:{}", addr.ip())])
                    .arg("--cacert")
                    .arg(ca_pem_path);
                (cmd, format!("https://{host}:{port}{path}"))
            }
        }
    }
}

/// Log in with curl (`flag`: `--http1.1` or `--http2`) at login.salesforce.com by `route`,
/// then call [`API_PATH`] with the token at the host of the `instance_url` the login returned.
/// Returns the client JSON line (with `token_http_version` and `data_http_version` as curl
/// reports them).
pub async fn curl_login_then_rest_call(
    route: &CurlRoute,
    flag: &str,
    cwd: &Path,
) -> serde_json::Value {
    let (mut login, url) = route.curl(flag, super::salesforce::LOGIN_HOST, TOKEN_PATH, cwd);
    login
        .args([
            "--data-urlencode",
            "grant_type=password",
            "--data-urlencode",
            &format!("client_id={}", acme::CLIENT_ID),
            "--data-urlencode",
            &format!("client_secret={}", acme::CLIENT_SECRET),
            "--data-urlencode",
            &format!("username={}", acme::USERNAME),
            "--data-urlencode",
            &format!("password={}", acme::PASSWORD),
        ])
        .arg(url);
    let token = run_curl(login).await;
    let mut out = serde_json::json!({
        "client": "curl",
        "token_status": token.status,
        "token_http_version": token.version,
        "token_body": token.body,
    });
    if token.status != 200 {
        return out;
    }
    let parsed: serde_json::Value = serde_json::from_str(&token.body).expect("token JSON");
    let access = parsed["access_token"].as_str().unwrap().to_string();
    let instance = parsed["instance_url"].as_str().unwrap().to_string();
    let instance_host = instance
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string();
    let (mut rest, url) = route.curl(flag, &instance_host, API_PATH, cwd);
    rest.args(["-H", &format!("Authorization: Bearer {access}")])
        .arg(url);
    let data = run_curl(rest).await;
    out["access_token"] = access.into();
    out["instance_url"] = instance.into();
    out["data_status"] = data.status.into();
    out["data_http_version"] = data.version.into();
    out["data_body"] = data.body.into();
    out
}

/// The extra steps ([`EXTRA_STEPS_ENV`]) with curl (`flag`: `--http1.1` or `--http2`) by
/// `route`: a 1 MiB `application/octet-stream` POST to `https://login.salesforce.com/echo`
/// from a file, then `GET /bytes?n=65536` into a file; the same JSON fields as the client
/// programs print, added to `out`.
pub async fn curl_extra_steps(
    route: &CurlRoute,
    flag: &str,
    cwd: &Path,
    out: &mut serde_json::Value,
) {
    use super::salesforce::LOGIN_HOST;
    let upload = cwd.join("echo-upload.bin");
    let payload = super::pseudo_random_bytes(ECHO_LEN, 0x5eed);
    std::fs::write(&upload, &payload).expect("write the upload file");
    let (mut echo, url) = route.curl(flag, LOGIN_HOST, "/echo", cwd);
    echo.args([
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
    ])
    .arg(format!("@{}", upload.display()))
    .arg(url);
    let reply = run_curl(echo).await;
    out["echo_sent_sha256"] = super::sha256_hex(&payload).into();
    out["echo_status"] = reply.status.into();
    out["echo_http_version"] = reply.version.into();
    out["echo_body"] = reply.body.into();

    let download = cwd.join("bytes.bin");
    let (mut get, url) = route.curl(flag, LOGIN_HOST, &format!("/bytes?n={GET_LEN}"), cwd);
    get.arg("-o")
        .arg(&download)
        // Replaces curl_command's -w: the header on its own line, then status and version.
        .args(["-w", "%header{x-sha256}\n%{http_code} %{http_version}"])
        .arg(url);
    let reply = run_curl(get).await;
    let body = std::fs::read(&download).expect("read the downloaded file");
    out["get_status"] = reply.status.into();
    out["get_http_version"] = reply.version.into();
    out["get_sha256"] = super::sha256_hex(&body).into();
    out["get_x_sha256"] = reply.body.trim().into();
}

/// The environment variable that makes a client program run the extra steps (value `1`).
pub const EXTRA_STEPS_ENV: &str = "GS_EXTRA";
/// The size of the body a client POSTs to `/echo` in the extra steps.
pub const ECHO_LEN: usize = 1024 * 1024;
/// The `n` of the `/bytes?n=N` a client GETs in the extra steps.
pub const GET_LEN: usize = 65536;

/// `cmd` (any runner's command) set to run the extra steps too: `GS_EXTRA=1`.
pub fn with_extra_steps(cmd: &mut Command) -> &mut Command {
    cmd.env(EXTRA_STEPS_ENV, "1")
}

/// The extra steps of a client line ([`EXTRA_STEPS_ENV`]) went through intact: the 1 MiB POST
/// to `/echo` was answered 200 with `Content-Type: application/octet-stream` and every byte the
/// client sent (the fake's `body_len` and `body_sha256` against the client's
/// `echo_sent_sha256`), and `GET /bytes?n=65536` was answered 200 with exactly the fake's
/// bytes (the client's `get_sha256` = the `x-sha256` header = the sha256 of
/// [`super::pseudo_random_bytes`]`(65536, BYTES_SEED)`). Says nothing about the login. Returns the
/// fake's `/echo` JSON (`version`, `host`, `headers`…) for more checks.
pub fn assert_extra_steps(what: &str, out: &serde_json::Value) -> serde_json::Value {
    for key in ["echo_error", "get_error"] {
        assert!(
            out.get(key).is_none(),
            "{what}: an extra step failed ({key}): {}\n{out:#}",
            out[key].as_str().unwrap_or_default()
        );
    }
    assert_eq!(
        out["echo_status"], 200,
        "{what}: POST /echo status (did it get {EXTRA_STEPS_ENV}=1?): {out:#}"
    );
    let sent = out["echo_sent_sha256"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no echo_sent_sha256: {out:#}"));
    assert!(
        sent.len() == 64 && sent.bytes().all(|b| b.is_ascii_hexdigit()),
        "{what}: echo_sent_sha256 is not a hex sha256: {sent:?}"
    );
    let echo: serde_json::Value = serde_json::from_str(
        out["echo_body"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no echo_body: {out:#}")),
    )
    .unwrap_or_else(|e| panic!("{what}: echo_body is not JSON ({e}): {out:#}"));
    assert_eq!(
        echo["body_len"], ECHO_LEN,
        "{what}: the fake got the whole 1 MiB POST body: {echo:#}"
    );
    assert_eq!(
        echo["body_sha256"].as_str(),
        Some(&*sent.to_ascii_lowercase()),
        "{what}: the fake got exactly the bytes the client sent"
    );
    let content_types: Vec<&str> = echo["headers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| {
            h[0].as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case("content-type"))
        })
        .filter_map(|h| h[1].as_str())
        .collect();
    assert_eq!(
        content_types,
        vec!["application/octet-stream"],
        "{what}: the POST to /echo was application/octet-stream: {echo:#}"
    );

    assert_eq!(out["get_status"], 200, "{what}: GET /bytes status: {out:#}");
    let expected = super::sha256_hex(&super::pseudo_random_bytes(GET_LEN, super::BYTES_SEED));
    assert_eq!(
        out["get_x_sha256"].as_str(),
        Some(expected.as_str()),
        "{what}: the x-sha256 header of GET /bytes reached the client: {out:#}"
    );
    assert_eq!(
        out["get_sha256"].as_str(),
        Some(expected.as_str()),
        "{what}: the client got exactly the {GET_LEN} bytes the fake served"
    );
    echo
}

/// The requests the fake Salesforce got on its REST API (`/services/data/…`).
pub fn rest_calls(sf: &FakeSalesforce) -> Vec<Recorded> {
    sf.requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/services/data/"))
        .collect()
}

/// The client logged in as the acme integration user through grantshift and then called
/// [`API_PATH`] with the token it got; check both from the client's output and from what the
/// fake Salesforce recorded:
/// - the fake saw exactly one login: `grant_type=client_credentials` at acme's My Domain (SNI
///   and Host), with the app's key and secret and no username or password;
/// - the client got that login's token (the Run As user's, `scope` present) and
///   `instance_url` = the My Domain;
/// - the fake saw exactly one REST call: at the My Domain, `Authorization: Bearer <that
///   token>`, answered 200 for the Run As user; the client saw the same.
pub fn assert_upgraded_login_then_rest_call(
    what: &str,
    out: &serde_json::Value,
    sf: &FakeSalesforce,
) {
    let my_domain_url = format!("https://{}", acme::MY_DOMAIN);
    if let Some(status) = out.get("token_status") {
        assert_eq!(status, 200, "{what}: token response {out:#}");
        let token: serde_json::Value = serde_json::from_str(
            out["token_body"].as_str().expect("token_body"),
        )
        .unwrap_or_else(|e| {
            panic!(
                "{what}: token body is not JSON ({e}): {}",
                out["token_body"]
            )
        });
        assert_eq!(
            token["id"],
            format!(
                "{my_domain_url}/id/{}/{}",
                acme::ORG_ID,
                acme::RUN_AS_USER_ID
            )
            .as_str(),
            "{what}: a client-credentials token is the Run As user's, issued at the My Domain"
        );
        assert_eq!(
            token["scope"],
            acme::CC_SCOPE,
            "{what}: client-credentials scope"
        );
        assert_eq!(token["access_token"], out["access_token"]);
    }
    assert_eq!(
        out["instance_url"]
            .as_str()
            .map(|u| u.trim_end_matches('/')),
        Some(my_domain_url.as_str()),
        "{what}: instance_url is acme's My Domain: {out:#}"
    );

    let logins = sf.token_requests();
    assert_eq!(
        logins.len(),
        1,
        "{what}: the fake saw one login, the upgraded one: {:?}",
        logins
            .iter()
            .map(|r| (&r.host, r.param("grant_type")))
            .collect::<Vec<_>>()
    );
    let login = &logins[0];
    assert_eq!(
        login.sni.as_deref(),
        Some(acme::MY_DOMAIN),
        "{what}: login SNI"
    );
    assert_eq!(
        login.host_name(),
        Some(acme::MY_DOMAIN),
        "{what}: login Host"
    );
    assert_eq!(
        login.param("grant_type").as_deref(),
        Some("client_credentials"),
        "{what}: the login arrived upgraded"
    );
    assert_eq!(login.param("client_id").as_deref(), Some(acme::CLIENT_ID));
    assert_eq!(
        login.param("client_secret").as_deref(),
        Some(acme::CLIENT_SECRET)
    );
    super::logins::assert_no_password_login_parameters(login);
    super::logins::assert_not_carried(login, acme::PASSWORD, "the password");
    assert_eq!(login.response_status, Some(200));
    // (The recorded response body may be gzip: the fake compresses for clients that accept it.)
    let minted = sf.issued();
    assert_eq!(minted.len(), 1, "{what}: one token minted");
    assert_eq!(minted[0].grant, "client_credentials");
    assert_eq!(minted[0].user_id, acme::RUN_AS_USER_ID);
    assert_eq!(minted[0].my_domain, acme::MY_DOMAIN);
    assert_eq!(
        out["access_token"].as_str(),
        Some(minted[0].access_token.as_str()),
        "{what}: the client holds the token the client-credentials login issued"
    );

    assert_eq!(out["data_status"], 200, "{what}: REST call: {out:#}");
    let data: serde_json::Value =
        serde_json::from_str(out["data_body"].as_str().expect("data_body"))
            .unwrap_or_else(|e| panic!("{what}: REST body is not JSON ({e}): {out:#}"));
    assert_eq!(data["userId"], acme::RUN_AS_USER_ID, "{what}: {data}");
    assert_eq!(data["organizationId"], acme::ORG_ID, "{what}: {data}");

    let calls = rest_calls(sf);
    assert_eq!(
        calls.len(),
        1,
        "{what}: the fake saw one REST call: {:?}",
        calls.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    let call = &calls[0];
    assert_eq!(call.path, API_PATH, "{what}");
    assert_eq!(
        call.sni.as_deref(),
        Some(acme::MY_DOMAIN),
        "{what}: REST SNI"
    );
    assert_eq!(call.host_name(), Some(acme::MY_DOMAIN), "{what}: REST Host");
    let bearer = format!("Bearer {}", minted[0].access_token);
    assert_eq!(
        call.header_values("authorization"),
        vec![bearer.as_str()],
        "{what}: the REST call carried the upgraded token"
    );
    assert_eq!(call.response_status, Some(200));
}

/// The event of an upgraded acme login at `host`.
pub fn assert_upgraded_event(event: &serde_json::Value, host: &str) {
    assert_eq!(event["action"], "upgraded", "{event:#}");
    assert_eq!(event["flow"], "client_credentials", "{event:#}");
    assert_eq!(event["host"], host, "{event:#}");
    assert_eq!(event["target_host"], acme::MY_DOMAIN, "{event:#}");
    assert_eq!(event["grant"], "password", "{event:#}");
    assert_eq!(event["username"], acme::USERNAME, "{event:#}");
    assert_eq!(event["status"], 200, "{event:#}");
}

// ---------------------------------------------------------------------------------------------
// grantshift configured in full by a test

/// `text` with `lines` added at the top of its `[table]` (e.g. `tls_listen` in `[proxy]`):
/// for keys of tables a [`super::TestProxyBuilder`] writes itself.
pub fn add_to_table(text: &str, table: &str, lines: &str) -> String {
    let header = format!("[{table}]\n");
    assert!(
        text.starts_with(&header) || text.contains(&format!("\n{header}")),
        "no [{table}] table in:\n{text}"
    );
    let at = if text.starts_with(&header) {
        0
    } else {
        text.find(&format!("\n{header}")).unwrap() + 1
    };
    let insert_at = at + header.len();
    let mut out = String::with_capacity(text.len() + lines.len() + 1);
    out.push_str(&text[..insert_at]);
    out.push_str(lines);
    if !lines.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&text[insert_at..]);
    out
}

/// One in-process grantshift from a complete config text (written to `grantshift.toml` in its
/// own directory; relative paths resolve there). Serves the proxy port on 127.0.0.1:0, and the
/// admin server and transparent TLS listener when the config enables them.
pub struct ConfiguredProxy {
    running: Running,
    dir: tempfile::TempDir,
}

impl ConfiguredProxy {
    pub async fn start(text: &str) -> ConfiguredProxy {
        ConfiguredProxy::start_with_env(text, &[]).await
    }

    /// [`ConfiguredProxy::start`] with environment variables for the config's `password_env`
    /// keys, seen by this proxy only (the process environment is not touched).
    pub async fn start_with_env(text: &str, env: &[(&str, &str)]) -> ConfiguredProxy {
        let dir = tempfile::tempdir().expect("proxy tempdir");
        std::fs::write(dir.path().join("grantshift.toml"), text).expect("write grantshift.toml");
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let running = Running::start(text, dir.path(), &env).await;
        ConfiguredProxy { running, dir }
    }

    pub fn addr(&self) -> SocketAddr {
        self.running.addr
    }

    /// Where `[proxy] tls_listen` is bound.
    pub fn tls_addr(&self) -> SocketAddr {
        self.running
            .tls_addr
            .expect("the config sets [proxy] tls_listen (transparent TLS listener)")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn ca_pem(&self) -> &str {
        &self.running.ca_pem
    }

    pub fn client_proxy(&self) -> ClientProxy {
        ClientProxy {
            addr: self.running.addr,
            ca_pem_path: self.running.ca_pem_path.clone(),
        }
    }

    pub fn ca_pem_path(&self) -> &Path {
        &self.running.ca_pem_path
    }

    /// The sample `name{labels}` of `/metrics` (0 when the series is absent).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = self.running.handle.metrics_text();
        parse_openmetrics(&text)
            .unwrap_or_else(|e| panic!("metrics do not parse ({e}):\n{text}"))
            .value(name, labels)
            .unwrap_or(0.0)
    }

    /// `grantshift_connections_total{kind}`.
    pub fn connections(&self, kind: &str) -> f64 {
        self.metric("grantshift_connections_total", &[("kind", kind)])
    }

    /// The next telemetry event as JSON.
    pub async fn next_event(&self) -> serde_json::Value {
        self.running.next_event().await
    }

    /// An HTTP connection to `host` through interception, trusting only grantshift's CA.
    pub async fn intercepted(&self, host: &str, http: Http) -> HttpConn {
        let (status, tcp) = connect_tunnel(self.running.addr, &format!("{host}:443")).await;
        assert_eq!(status, 200, "CONNECT {host}:443");
        let tls = tls_connect(tcp, host, &self.running.ca_pem, &[http.alpn()]).await;
        HttpConn::handshake(tls, http).await
    }

    /// A token request with a form `body` on a fresh HTTP/1.1 connection to `host`.
    pub async fn login(&self, host: &str, body: &str) -> Reply {
        let mut conn = self.intercepted(host, Http::H1).await;
        post_form(&mut conn, host, TOKEN_PATH, body).await
    }
}

/// The `[ca]` table of a [`ConfiguredProxy`]: files in its own directory.
pub const LOCAL_CA_TOML: &str =
    "[ca]\ncert = \"grantshift-ca.pem\"\nkey = \"grantshift-ca.key\"\n\n";

/// `"host:port" = "addr"` lines for `[upstream.connect_to]`.
pub fn connect_to_lines(routes: &[(&str, SocketAddr)]) -> String {
    routes
        .iter()
        .map(|(from, to)| format!("{} = {}\n", toml_str(from), toml_str(to.to_string())))
        .collect()
}

/// A TCP listener that counts the connections it accepts (and closes them): put behind a
/// `connect_to` entry, it proves that nothing was dialled there.
pub struct AcceptCounter {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl AcceptCounter {
    pub async fn start() -> AcceptCounter {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                drop(tcp);
            }
        });
        AcceptCounter { addr, accepted }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}
