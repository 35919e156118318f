//! The `grantshift run` binary: logs JSON to stderr including where it listens (so
//! `listen = "127.0.0.1:0"` works), proxies, and exits 0 after SIGTERM or SIGINT.

use crate::GRANTSHIFT;
use testkit::*;

async fn start_binary(up: &Upstreams, dir: &std::path::Path) -> RunningBinary {
    let config = dir.join("grantshift.toml");
    std::fs::write(&config, TestProxy::builder().render(up)).unwrap();
    let mut cmd = GRANTSHIFT.command(dir);
    cmd.arg("run")
        .arg("-c")
        .arg(&config)
        .args(["--log-format", "json"]);
    RunningBinary::start(cmd).await
}

async fn request_through(bin: &RunningBinary, dir: &std::path::Path) {
    // The CA the binary created next to its config is what clients trust.
    let ca_pem = std::fs::read_to_string(dir.join("grantshift-ca.pem")).expect("CA created");
    let (status, tcp) = connect_tunnel(bin.addr(), "login.salesforce.com:443").await;
    assert_eq!(status, 200, "stderr:\n{}", bin.stderr());
    let tls = tls_connect(tcp, "login.salesforce.com", &ca_pem, &[b"http/1.1"]).await;
    let mut conn = HttpConn::handshake(tls, Http::H1).await;
    let reply = conn.get("login.salesforce.com", "/echo?from=binary").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["sni"], "login.salesforce.com");
}

async fn serves_then_exits_zero_on(signal: &str) {
    let up = Upstreams::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut bin = start_binary(&up, dir.path()).await;
    assert_ne!(bin.addr().port(), 0, "the log reports the bound port");
    request_through(&bin, dir.path()).await;
    assert_eq!(up.sf.requests_to("/echo").len(), 1);

    bin.signal(signal);
    let status = bin.wait().await;
    assert_eq!(
        status.code(),
        Some(0),
        "exit after SIG{signal}: {status:?}; stderr:\n{}",
        bin.stderr()
    );
    assert!(
        tokio::net::TcpStream::connect(bin.addr()).await.is_err(),
        "nothing listens after exit"
    );
}

#[tokio::test]
async fn binary_logs_its_port_as_json_serves_and_exits_zero_on_sigterm() {
    serves_then_exits_zero_on("TERM").await;
}

#[tokio::test]
async fn binary_exits_zero_on_sigint() {
    serves_then_exits_zero_on("INT").await;
}

#[tokio::test]
async fn every_stderr_line_is_json_with_log_format_json() {
    let up = Upstreams::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut bin = start_binary(&up, dir.path()).await;
    request_through(&bin, dir.path()).await;
    bin.signal("TERM");
    assert_eq!(bin.wait().await.code(), Some(0));
    let stderr = bin.stderr();
    for line in stderr.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string(), "has a level: {line}");
    }
}

/// `grantshift run -c DIR/grantshift.toml --log-format json` with `text` as the file, once it
/// listens; and the file's path.
async fn run_with_config(dir: &std::path::Path, text: &str) -> (std::path::PathBuf, RunningBinary) {
    let config = dir.join("grantshift.toml");
    std::fs::write(&config, text).unwrap();
    let mut cmd = GRANTSHIFT.command(dir);
    cmd.arg("run")
        .arg("-c")
        .arg(&config)
        .args(["--log-format", "json"]);
    (config, RunningBinary::start(cmd).await)
}

#[tokio::test]
async fn start_up_logs_one_line_with_version_config_listeners_and_counts() {
    let up = Upstreams::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = TestProxy::builder()
        .extra_toml(&(acme_mapping() + &rollout_toml("*", "observe", 100, true)))
        .render(&up);
    let (rules, credentials) = (
        text.matches("[[rollout]]").count(),
        text.matches("[[credentials]]").count(),
    );
    assert!(rules > 0 && credentials > 0, "the config has both:\n{text}");
    let (config, mut bin) = run_with_config(dir.path(), &text).await;
    let line = bin.wait_for_json_logs("grantshift started", 1).await[0].clone();
    assert_eq!(line["level"], "INFO", "{line}");
    let fields = &line["fields"];
    assert_eq!(fields["version"], env!("CARGO_PKG_VERSION"), "{line}");
    assert_eq!(fields["config"], config.display().to_string(), "{line}");
    assert_eq!(fields["rollout_rules"], rules, "{line}");
    assert_eq!(fields["credentials"], credentials, "{line}");
    let listeners = fields["listeners"].as_str().expect("listeners is a string");
    assert!(
        listeners.starts_with(&format!("proxy {}, admin 127.0.0.1:", bin.addr())),
        "{line}"
    );
    let logs = bin.stderr();
    assert!(
        !logs.contains("built-in default"),
        "rules in the file: the default is not announced (it comes before this line): {logs}"
    );
    bin.signal("TERM");
    assert_eq!(bin.wait().await.code(), Some(0));
}

#[tokio::test]
async fn with_no_rollout_rules_start_up_says_logins_to_a_my_domain_are_upgraded_in_place() {
    let up = Upstreams::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = TestProxy::builder().render(&up);
    assert!(!text.contains("[[rollout]]"), "{text}");
    let (config, mut bin) = run_with_config(dir.path(), &text).await;
    let started = bin.wait_for_json_logs("grantshift started", 1).await[0].clone();
    assert_eq!(started["fields"]["rollout_rules"], 0, "{started}");
    let words = grantshift::config::RolloutRule::DEFAULT_IN_WORDS;
    let said = bin.wait_for_json_logs(words, 1).await[0].clone();
    assert_eq!(said["level"], "INFO", "{said}");
    let message = said["fields"]["message"].as_str().unwrap();
    for words in [
        "My Domain host",
        "upgraded in place to client credentials",
        "fallback",
        "login.salesforce.com",
        "passes through unchanged",
    ] {
        assert!(message.contains(words), "{words:?} in {message}");
    }
    bin.signal("TERM");
    assert_eq!(bin.wait().await.code(), Some(0));
    // `grantshift check` says the same.
    let out = GRANTSHIFT
        .command(dir.path())
        .arg("check")
        .arg("-c")
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains(message), "{stdout}");
}

/// The kernel's name for where thread `pid` sleeps (`/proc/PID/wchan`).
fn wchan(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default()
}

#[tokio::test]
async fn a_sigterm_during_start_up_shuts_down_gracefully_instead_of_killing_the_process() {
    let up = Upstreams::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Start-up blocks opening the events file, a FIFO with no reader: a point where the
    // process is alive, has not started serving, and can be signalled deterministically.
    let fifo = testkit::faults::StalledFile::create(&dir.path().join("events.fifo"));
    let config = dir.path().join("grantshift.toml");
    std::fs::write(
        &config,
        TestProxy::builder().events("events.fifo").render(&up),
    )
    .unwrap();
    let mut cmd = GRANTSHIFT.command(dir.path());
    cmd.arg("run").arg("-c").arg(&config);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().expect("spawn grantshift run");
    let pid = child.id();
    testkit::faults::eventually("start-up blocked opening the events FIFO", || {
        match wchan(pid) {
            w if w == "wait_for_partner" => Ok(()),
            w => Err(format!("wchan {w:?}")),
        }
    })
    .await;
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // Unblock start-up: a reader of our own (non-blocking) for the checks' and the writer's
    // append-opens, and a writer for the report's seeding, which reads the file; once the
    // seeding is reading, the writer closes and the seeding sees an empty file.
    use std::os::unix::fs::OpenOptionsExt;
    const O_NONBLOCK: i32 = 0o4000; // Linux
    let _reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(fifo.path())
        .unwrap();
    let writer = std::fs::OpenOptions::new()
        .write(true)
        .open(fifo.path())
        .unwrap();
    testkit::faults::eventually("the report's seeding reading the FIFO", || {
        match wchan(pid) {
            w if w.contains("pipe_read") => Ok(()),
            w => Err(format!("wchan {w:?}")),
        }
    })
    .await;
    drop(writer);
    let out = within(30, "grantshift exiting after SIGTERM", async move {
        tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
            .await
            .unwrap()
    })
    .await;
    let stderr = strip_ansi(&String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(0),
        "a graceful exit, not death by signal: {:?}; stderr:\n{stderr}",
        out.status
    );
    assert!(stderr.contains("SIGTERM received"), "{stderr}");
}
