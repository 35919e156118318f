//! Running the `grantshift` binary: one-shot commands (`check`, `ca`) and a long-running proxy
//! whose log on stderr (JSON or human) tells the test where it listens. A test can wait for a
//! log line (no sleeping) and read everything the process wrote to stdout and stderr.

use super::client::{connect_tunnel, tls_connect, Http, HttpConn, Reply};
use super::proxy::{post_form, read_events, TestProxyBuilder, Upstreams, EVENTS_FILE};
use super::within;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
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
        for var in ["GRANTSHIFT_CONFIG", "RUST_LOG"]
            .iter()
            .chain(super::PROXY_VARS)
        {
            cmd.env_remove(var);
        }
        cmd
    }
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
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
        if v["fields"]["message"] != "proxy listening" {
            return None;
        }
        return v["fields"]["addr"].as_str()?.parse().ok();
    }
    let plain = strip_ansi(line);
    if !plain.contains("proxy listening") {
        return None;
    }
    let (_, rest) = plain.split_once("addr=")?;
    rest.split_whitespace().next()?.parse().ok()
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
    ca_pem: String,
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
        let dir = tempfile::tempdir().expect("binary tempdir");
        let config = dir.path().join("grantshift.toml");
        std::fs::write(&config, builder.render(up)).expect("write grantshift.toml");
        let mut cmd = binary.command(dir.path());
        cmd.arg("run")
            .arg("-c")
            .arg(&config)
            .args(["--log-format", log_format]);
        if let Some(filter) = rust_log {
            cmd.env("RUST_LOG", filter);
        }
        let bin = RunningBinary::start(cmd).await;
        let ca_pem = std::fs::read_to_string(dir.path().join("grantshift-ca.pem"))
            .expect("the binary created its CA next to its config");
        BinaryProxy { bin, dir, ca_pem }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
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
