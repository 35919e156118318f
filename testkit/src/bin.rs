//! Running the `grantshift` binary: one-shot commands (`check`, `ca`) and a long-running proxy
//! whose log on stderr (JSON or human) tells the test where it listens. A test can wait for a
//! log line (no sleeping) and read everything the process wrote to stdout and stderr.
//!
//! The load tools (the benchmark, the soak tool) run the release binary for minutes with
//! thousands of connections: [`ProxyProcess`] (errors returned, not panics; its log drained
//! into a file, WARN/ERROR lines counted) on a [`LoadConfig`], found with [`profile_dir`].

use super::client::{connect_tunnel, tls_connect, Http, HttpConn, Reply};
use super::proxy::{post_form, read_events, TestProxyBuilder, Upstreams, EVENTS_FILE};
use super::within;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// The `grantshift` executable under test. Cargo tells only the root package's integration
/// tests where it built it (`env!("CARGO_BIN_EXE_grantshift")`), so a test hands it over:
/// `const GRANTSHIFT: Binary = Binary::new(env!("CARGO_BIN_EXE_grantshift"));`.
#[derive(Clone, Copy, Debug)]
pub struct Binary {
    path: &'static str,
}

impl Binary {
    pub const fn new(path: &'static str) -> Binary {
        Binary { path }
    }

    pub fn path(&self) -> &Path {
        Path::new(self.path)
    }

    /// `grantshift` with a clean environment for it: working directory `cwd`, no
    /// `GRANTSHIFT_CONFIG`, no proxy variables, no `RUST_LOG`.
    pub fn command(&self, cwd: &Path) -> Command {
        let mut cmd = Command::new(self.path);
        cmd.current_dir(cwd);
        clean_env(&mut cmd);
        cmd
    }
}

/// Remove from `cmd`'s environment what would point grantshift elsewhere than its command line
/// and config say: `GRANTSHIFT_CONFIG`, `RUST_LOG`, the proxy variables ([`PROXY_VARS`]), and
/// `COLUMNS` (which fits `grantshift report`'s table to a width: a test sets it when it means to).
///
/// [`PROXY_VARS`]: super::PROXY_VARS
pub fn clean_env(cmd: &mut Command) -> &mut Command {
    for var in ["GRANTSHIFT_CONFIG", "RUST_LOG", "COLUMNS"]
        .iter()
        .chain(super::PROXY_VARS)
    {
        cmd.env_remove(var);
    }
    cmd
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Run `cmd` to completion (off the async threads).
pub async fn run_to_end(mut cmd: Command) -> Finished {
    let out = within(
        60,
        "grantshift command",
        tokio::task::spawn_blocking(move || cmd.output()),
    )
    .await
    .expect("join")
    .expect("spawn grantshift");
    Finished {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A `grantshift run` process. Killed (SIGKILL) on drop if it has not exited.
pub struct RunningBinary {
    pid: u32,
    addr: SocketAddr,
    stderr_lines: Arc<Mutex<Vec<String>>>,
    stdout_lines: Arc<Mutex<Vec<String>>>,
    /// Bumped for every stderr line read.
    stderr_seen: watch::Receiver<usize>,
    exit: Option<oneshot::Receiver<ExitStatus>>,
    exited: bool,
}

impl RunningBinary {
    /// Spawn `cmd` and wait for its `proxy listening` log line (JSON or human format).
    pub async fn start(mut cmd: Command) -> RunningBinary {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn grantshift run");
        let pid = child.id();
        let stderr = child.stderr.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr_lines = Arc::new(Mutex::new(Vec::new()));
        let stdout_lines = Arc::new(Mutex::new(Vec::new()));
        let (seen_tx, stderr_seen) = watch::channel(0usize);
        let (addr_tx, addr_rx) = oneshot::channel::<SocketAddr>();
        let lines = stderr_lines.clone();
        std::thread::spawn(move || {
            let mut addr_tx = Some(addr_tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = listening_addr(&line) {
                    if let Some(tx) = addr_tx.take() {
                        let _ = tx.send(addr);
                    }
                }
                lines.lock().unwrap().push(line);
                seen_tx.send_modify(|n| *n += 1);
            }
        });
        let out_lines = stdout_lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                out_lines.lock().unwrap().push(line);
            }
        });
        let (exit_tx, exit_rx) = oneshot::channel();
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = exit_tx.send(status);
            }
        });
        let mut running = RunningBinary {
            pid,
            addr: "0.0.0.0:0".parse().unwrap(),
            stderr_lines,
            stdout_lines,
            stderr_seen,
            exit: Some(exit_rx),
            exited: false,
        };
        match within(30, "waiting for the `proxy listening` log line", addr_rx).await {
            Ok(addr) => running.addr = addr,
            Err(_) => panic!(
                "grantshift exited without logging `proxy listening`; stderr:\n{}",
                running.stderr()
            ),
        }
        running
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Everything logged so far.
    pub fn stderr(&self) -> String {
        self.stderr_lines.lock().unwrap().join("\n")
    }

    /// Everything printed on stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout_lines.lock().unwrap().join("\n")
    }

    /// Wait until the stderr lines logged so far satisfy `done` (e.g. "a third `token
    /// request` line"); returns them.
    pub async fn wait_for_stderr(
        &self,
        what: &str,
        done: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        let mut seen = self.stderr_seen.clone();
        let waited = within(20, what, async {
            loop {
                seen.borrow_and_update();
                {
                    let lines = self.stderr_lines.lock().unwrap();
                    if done(&lines) {
                        return Some(lines.clone());
                    }
                }
                if seen.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await;
        match waited {
            Some(lines) => lines,
            None => {
                // The process closed stderr (exited): one last look.
                let lines = self.stderr_lines.lock().unwrap().clone();
                assert!(
                    done(&lines),
                    "{what}: grantshift exited; stderr:\n{}",
                    lines.join("\n")
                );
                lines
            }
        }
    }

    /// Wait for the `n`th JSON log line whose message is `message`; returns all of them.
    pub async fn wait_for_json_logs(&self, message: &str, n: usize) -> Vec<serde_json::Value> {
        let matching = |lines: &[String]| -> Vec<serde_json::Value> {
            lines
                .iter()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|v| v["fields"]["message"] == message)
                .collect()
        };
        let lines = self
            .wait_for_stderr(&format!("{n} `{message}` log lines"), |lines| {
                matching(lines).len() >= n
            })
            .await;
        matching(&lines)
    }

    /// Where the admin server listens, from its `admin listening` line (JSON or human log
    /// format; waits for the line).
    pub async fn admin_addr(&self) -> SocketAddr {
        let lines = self
            .wait_for_stderr("the `admin listening` log line", |lines| {
                lines
                    .iter()
                    .any(|l| logged_addr(l, "admin listening").is_some())
            })
            .await;
        lines
            .iter()
            .find_map(|l| logged_addr(l, "admin listening"))
            .expect("just seen")
    }

    /// Send a signal with `kill -SIG pid` (e.g. "TERM", "INT").
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} {}", self.pid);
    }

    /// Wait for the process to exit.
    pub async fn wait(&mut self) -> ExitStatus {
        let rx = self.exit.take().expect("already waited");
        let status = within(30, "grantshift exiting", rx)
            .await
            .expect("exit status");
        self.exited = true;
        status
    }
}

impl Drop for RunningBinary {
    fn drop(&mut self) {
        if !self.exited {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(self.pid.to_string())
                .status();
        }
    }
}

/// The address in a `proxy listening` log line: JSON (`fields.addr`) or human (`addr=…`).
pub fn listening_addr(line: &str) -> Option<SocketAddr> {
    logged_addr(line, "proxy listening")
}

/// The address in a log line whose message is `message` (`proxy listening`, `admin
/// listening`): JSON (`fields.addr`) or human (`addr=…`).
fn logged_addr(line: &str, message: &str) -> Option<SocketAddr> {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
        return json_logged_addr(&v, message);
    }
    let plain = strip_ansi(line);
    if !plain.contains(message) {
        return None;
    }
    let (_, rest) = plain.split_once("addr=")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// `fields.addr` of a JSON log line whose message is `message` (`proxy listening`, `admin
/// listening`).
fn json_logged_addr(line: &serde_json::Value, message: &str) -> Option<SocketAddr> {
    if line["fields"]["message"] != message {
        return None;
    }
    line["fields"]["addr"].as_str()?.parse().ok()
}

/// `text` without ANSI escape sequences (the human log format colours fields).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `grantshift run` on a config rendered by a [`TestProxyBuilder`] in its own directory,
/// against in-process upstreams: the binary as an operator runs it.
pub struct BinaryProxy {
    pub bin: RunningBinary,
    dir: tempfile::TempDir,
    /// The CA certificate: `grantshift-ca.pem` next to the config, or the builder's
    /// [`ca_files`](TestProxyBuilder::ca_files) (a CA shared with another replica).
    ca_cert: Option<PathBuf>,
    ca_pem: String,
    /// The builder's [`env`](TestProxyBuilder::env), set in its process environment; a
    /// [`restart`](Self::restart) keeps it (not the extra variables of one start).
    env: Vec<(String, String)>,
}

impl BinaryProxy {
    /// `grantshift run -c <dir>/grantshift.toml --log-format <log_format>`, with `RUST_LOG`
    /// set when given.
    pub async fn start(
        binary: Binary,
        up: &Upstreams,
        builder: &TestProxyBuilder,
        log_format: &str,
        rust_log: Option<&str>,
    ) -> BinaryProxy {
        BinaryProxy::start_with_env(binary, up, builder, log_format, rust_log, &[]).await
    }

    /// [`start`](Self::start) with extra environment variables (e.g. a test build's fault
    /// point, `GRANTSHIFT_FAULT_STALL_STATE_WRITE`).
    pub async fn start_with_env(
        binary: Binary,
        up: &Upstreams,
        builder: &TestProxyBuilder,
        log_format: &str,
        rust_log: Option<&str>,
        env: &[(&str, &str)],
    ) -> BinaryProxy {
        let dir = tempfile::tempdir().expect("binary tempdir");
        std::fs::write(dir.path().join("grantshift.toml"), builder.render(up))
            .expect("write grantshift.toml");
        let ca_cert = builder.ca_cert_path().map(Path::to_path_buf);
        let kept: Vec<(String, String)> = builder
            .env_vars()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        BinaryProxy::run_in(binary, dir, ca_cert, log_format, rust_log, kept, env).await
    }

    /// `grantshift run` again on the same directory (config, CA, events and state files) after
    /// this one exited (stopped, or killed and waited for): a restart. `--log-format json`.
    pub async fn restart(self, binary: Binary, env: &[(&str, &str)]) -> BinaryProxy {
        assert!(self.bin.exited, "restart a process that has exited");
        let BinaryProxy {
            dir,
            ca_cert,
            env: first,
            ..
        } = self;
        BinaryProxy::run_in(binary, dir, ca_cert, "json", None, first, env).await
    }

    async fn run_in(
        binary: Binary,
        dir: tempfile::TempDir,
        ca_cert: Option<PathBuf>,
        log_format: &str,
        rust_log: Option<&str>,
        kept: Vec<(String, String)>,
        env: &[(&str, &str)],
    ) -> BinaryProxy {
        let config = dir.path().join("grantshift.toml");
        let mut cmd = binary.command(dir.path());
        cmd.arg("run")
            .arg("-c")
            .arg(&config)
            .args(["--log-format", log_format]);
        if let Some(filter) = rust_log {
            cmd.env("RUST_LOG", filter);
        }
        for (name, value) in &kept {
            cmd.env(name, value);
        }
        for (name, value) in env {
            cmd.env(name, value);
        }
        let bin = RunningBinary::start(cmd).await;
        let ca_path = ca_cert
            .clone()
            .unwrap_or_else(|| dir.path().join("grantshift-ca.pem"));
        let ca_pem = std::fs::read_to_string(&ca_path)
            .unwrap_or_else(|e| panic!("the binary's CA certificate {ca_path:?}: {e}"));
        BinaryProxy {
            bin,
            dir,
            ca_cert,
            ca_pem,
            env: kept,
        }
    }

    /// The state file of learned password verifiers (`[state] dir` is `state/` by default).
    pub fn state_file(&self) -> PathBuf {
        self.dir.path().join("state/verifiers.json")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA certificate clients trust, in PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn config_path(&self) -> std::path::PathBuf {
        self.dir.path().join("grantshift.toml")
    }

    /// An HTTP connection to `host` through the binary's interception.
    pub async fn intercepted(&self, host: &str, http: Http) -> HttpConn {
        let (status, tcp) = connect_tunnel(self.bin.addr(), &format!("{host}:443")).await;
        assert_eq!(
            status,
            200,
            "CONNECT {host}:443; stderr:\n{}",
            self.bin.stderr()
        );
        let tls = tls_connect(tcp, host, &self.ca_pem, &[http.alpn()]).await;
        HttpConn::handshake(tls, http).await
    }

    /// A token request with a form `body` on a fresh HTTP/1.1 connection.
    pub async fn login(&self, host: &str, body: &str) -> Reply {
        let mut conn = self.intercepted(host, Http::H1).await;
        post_form(&mut conn, host, super::salesforce::TOKEN_PATH, body).await
    }

    pub fn events_path(&self) -> std::path::PathBuf {
        self.dir.path().join(EVENTS_FILE)
    }

    /// SIGKILL (no clean-up of any kind), then wait for the process to be gone.
    pub async fn kill(&mut self) {
        self.bin.signal("KILL");
        let status = self.bin.wait().await;
        assert_eq!(status.code(), None, "killed by a signal: {status:?}");
    }

    /// SIGTERM, then wait for a clean exit (status 0): after this, everything the process
    /// wrote (logs, events) is complete.
    pub async fn stop(&mut self) {
        self.bin.signal("TERM");
        let status = self.bin.wait().await;
        assert_eq!(
            status.code(),
            Some(0),
            "grantshift exits 0 after SIGTERM: {status:?}; stderr:\n{}",
            self.bin.stderr()
        );
    }

    /// The events file, one JSON object per line.
    pub fn events_in_file(&self) -> Vec<serde_json::Value> {
        read_events(&self.events_path())
    }
}

// ---------------------------------------------------------------------------------------------
// The release binary as the load tools run it

/// The cargo profile directory the running executable was built into (`target/release` for
/// `target/release/soak` and for a bench's `target/release/deps/e2e-…`): where cargo puts the
/// `grantshift` binary of that profile too. Its parent is the target directory.
pub fn profile_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let mut dir = exe.parent()?;
    if matches!(dir.file_name()?.to_str()?, "deps" | "examples") {
        dir = dir.parent()?;
    }
    Some(dir.to_path_buf())
}

/// The config a load tool runs `grantshift run` on: its listeners, the fake Salesforce's CA as
/// the only extra root, every host the tool's clients name routed by `connect_to` (and nothing
/// else dialled: `connect_to_only`), one `[[credentials]]` mapping to client credentials, and
/// the events file. grantshift creates its CA (`grantshift-ca.pem`) next to the config.
pub struct LoadConfig<'a> {
    /// Who wrote it (the first line's comment).
    pub generated_by: &'a str,
    pub listen: &'a str,
    pub admin_listen: &'a str,
    pub max_connections: usize,
    pub shutdown_grace: &'a str,
    pub extra_root_cert: &'a Path,
    /// `host:port` and where it really is, in this order.
    pub connect_to: &'a [(String, SocketAddr)],
    pub username: &'a str,
    pub my_domain: &'a str,
    /// `[telemetry] events`: a path, or `""` for none.
    pub events: &'a str,
    /// Lines added to the `[[credentials]]` entry, e.g. `verify_password = "required"` and a
    /// `password_hash` (`""` for none).
    pub credential_lines: &'a str,
}

impl LoadConfig<'_> {
    pub fn render(&self) -> String {
        let q = |s: &str| serde_json::to_string(s).expect("a string encodes");
        let mut routes = String::new();
        for (authority, addr) in self.connect_to {
            routes.push_str(&format!("{} = {}\n", q(authority), q(&addr.to_string())));
        }
        format!(
            r#"# Generated by {generated_by}
[proxy]
listen = {listen}
admin_listen = {admin_listen}
max_connections = {max_connections}
shutdown_grace = {shutdown_grace}

[ca]
cert = "grantshift-ca.pem"
key = "grantshift-ca.key"

[upstream]
extra_root_certs = [{ca}]
connect_to_only = true

[upstream.connect_to]
{routes}
[[credentials]]
username = {username}
my_domain = {my_domain}
{credential_lines}
[telemetry]
events = {events}
"#,
            generated_by = self.generated_by,
            listen = q(self.listen),
            admin_listen = q(self.admin_listen),
            max_connections = self.max_connections,
            shutdown_grace = q(self.shutdown_grace),
            ca = q(&self.extra_root_cert.display().to_string()),
            username = q(self.username),
            my_domain = q(self.my_domain),
            events = q(self.events),
            credential_lines = self.credential_lines,
        )
    }
}

/// The first WARN/ERROR lines a [`ProxyProcess`] keeps.
const KEPT_WARN_LINES: usize = 20;
/// The last lines of its log it keeps, for a failure report.
const TAIL_LINES: usize = 40;

/// What a [`ProxyProcess`] has logged so far.
#[derive(Clone, Debug, Default)]
pub struct ProxyLog {
    pub lines: usize,
    /// WARN and ERROR lines; a line that is not JSON (e.g. `grantshift: <error>` on exit)
    /// counts as an error.
    pub warn_error_count: usize,
    /// The first of them.
    pub warn_error: Vec<String>,
    /// The last lines.
    pub tail: VecDeque<String>,
    /// From its `proxy listening` and `admin listening` lines (logged at INFO).
    pub proxy_addr: Option<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
}

/// `grantshift run --log-format json` as a child process of a load tool: its stderr drained
/// line by line into a log file by a thread of its own (so the pipe never fills), and read as
/// it goes into a [`ProxyLog`]. Errors are returned, not panics. Killed (SIGKILL) on drop if it
/// has not exited.
pub struct ProxyProcess {
    child: Child,
    pid: u32,
    log: Arc<Mutex<ProxyLog>>,
    drain: Option<std::thread::JoinHandle<()>>,
    exited: Option<ExitStatus>,
}

impl ProxyProcess {
    /// Spawn `cmd` (`grantshift run … --log-format json`, or a wrapper that execs it, such as
    /// `taskset`, so that the pid is grantshift's) with stdin and stdout closed; its stderr goes
    /// to `log_file`.
    pub fn spawn(mut cmd: Command, log_file: &Path) -> Result<ProxyProcess, String> {
        let file = std::fs::File::create(log_file)
            .map_err(|e| format!("creating {}: {e}", log_file.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("starting {}: {e}", Path::new(cmd.get_program()).display()))?;
        let pid = child.id();
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(ProxyLog::default()));
        let drain = {
            let log = log.clone();
            std::thread::spawn(move || drain_json_log(stderr, file, &log))
        };
        Ok(ProxyProcess {
            child,
            pid,
            log,
            drain: Some(drain),
            exited: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// What it has logged so far.
    pub fn log(&self) -> ProxyLog {
        self.log.lock().unwrap().clone()
    }

    /// The last lines of its log, one per line.
    pub fn tail(&self) -> String {
        let log = self.log.lock().unwrap();
        log.tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// Its exit status, once it has exited.
    pub fn try_exited(&mut self) -> Result<Option<ExitStatus>, String> {
        if self.exited.is_none() {
            self.exited = self
                .child
                .try_wait()
                .map_err(|e| format!("waiting for the proxy: {e}"))?;
        }
        Ok(self.exited)
    }

    /// Wait (at most `timeout`) for its `proxy listening` and `admin listening` log lines
    /// (logged at INFO: not with `RUST_LOG=warn`). Returns both addresses.
    pub async fn wait_listening(
        &mut self,
        timeout: Duration,
    ) -> Result<(SocketAddr, SocketAddr), String> {
        let waited = Instant::now();
        loop {
            {
                let log = self.log.lock().unwrap();
                if let (Some(proxy), Some(admin)) = (log.proxy_addr, log.admin_addr) {
                    return Ok((proxy, admin));
                }
            }
            if let Some(status) = self.try_exited()? {
                self.join_drain().await;
                return Err(format!(
                    "the proxy exited with {status} before listening; its log:\n{}",
                    self.tail()
                ));
            }
            if waited.elapsed() > timeout {
                return Err(format!(
                    "no `proxy listening` and `admin listening` log lines within {}s; log:\n{}",
                    timeout.as_secs(),
                    self.tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then wait (at most `timeout`) for the exit status and the end of its log.
    pub async fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status()
            .map_err(|e| format!("running kill: {e}"))?;
        if !sent.success() {
            return Err(format!("kill -TERM {} failed", self.pid));
        }
        let waited = Instant::now();
        let status = loop {
            match self.try_exited()? {
                Some(status) => break status,
                None if waited.elapsed() > timeout => {
                    return Err(format!(
                        "the proxy has not exited {}s after SIGTERM; log tail:\n{}",
                        timeout.as_secs(),
                        self.tail()
                    ))
                }
                None => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        self.join_drain().await;
        Ok(status)
    }

    /// Wait for the drain thread: it ends when the process has closed its stderr.
    async fn join_drain(&mut self) {
        if let Some(drain) = self.drain.take() {
            let _ = tokio::task::spawn_blocking(move || drain.join()).await;
        }
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.try_exited() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Copy the proxy's JSON log into `file` line by line until it closes stderr, and read each
/// line into `log`.
fn drain_json_log(stderr: std::process::ChildStderr, file: std::fs::File, log: &Mutex<ProxyLog>) {
    let mut file = std::io::LineWriter::new(file);
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        let _ = writeln!(file, "{line}");
        let parsed = serde_json::from_str::<serde_json::Value>(&line).ok();
        let mut log = log.lock().unwrap();
        log.lines += 1;
        if let Some(v) = &parsed {
            if let Some(addr) = json_logged_addr(v, "proxy listening") {
                log.proxy_addr = Some(addr);
            }
            if let Some(addr) = json_logged_addr(v, "admin listening") {
                log.admin_addr = Some(addr);
            }
        }
        let level = parsed
            .as_ref()
            .and_then(|v| v["level"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "ERROR".into());
        if level == "WARN" || level == "ERROR" {
            log.warn_error_count += 1;
            if log.warn_error.len() < KEPT_WARN_LINES {
                log.warn_error.push(line.clone());
            }
        }
        if log.tail.len() == TAIL_LINES {
            log.tail.pop_front();
        }
        log.tail.push_back(line);
    }
    let _ = file.flush();
}
