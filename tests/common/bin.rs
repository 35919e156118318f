//! Running the `grantshift` binary: one-shot commands (`check`, `ca`) and a long-running proxy
//! whose JSON log on stderr tells the test where it listens.

use super::within;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// `grantshift` with a clean environment for it: working directory `cwd`, no
/// `GRANTSHIFT_CONFIG`, no proxy variables, no `RUST_LOG`.
pub fn grantshift(cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_grantshift"));
    cmd.current_dir(cwd);
    for var in [
        "GRANTSHIFT_CONFIG",
        "RUST_LOG",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "no_proxy",
    ] {
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
    exit: Option<oneshot::Receiver<ExitStatus>>,
    exited: bool,
}

impl RunningBinary {
    /// Spawn `cmd` (which must log JSON to stderr) and wait for its `proxy listening` line.
    pub async fn start(mut cmd: Command) -> RunningBinary {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn grantshift run");
        let pid = child.id();
        let stderr = child.stderr.take().unwrap();
        let stderr_lines = Arc::new(Mutex::new(Vec::new()));
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

/// The address in a JSON log line whose `fields.message` is `proxy listening`.
pub fn listening_addr(line: &str) -> Option<SocketAddr> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v["fields"]["message"] != "proxy listening" {
        return None;
    }
    v["fields"]["addr"].as_str()?.parse().ok()
}
