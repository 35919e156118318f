//! `cargo run --example demo`, the README's five-minute start, run as a newcomer runs it: the
//! command itself, its printed summary (one login, upgraded), then the curl command it prints
//! and the admin page URL it prints, and Ctrl-C.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use testkit::admin::admin_get;
use testkit::*;

/// The demo's stdout, line by line, until it prints `Ctrl-C` (its last line before it waits).
fn lines_until_ready(rx: &mpsc::Receiver<String>) -> Vec<String> {
    // Generous: from a cold cache, cargo compiles the example first.
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let done = line.contains("Ctrl-C");
                lines.push(line);
                if done {
                    return lines;
                }
            }
            Err(e) => panic!(
                "the demo did not get ready ({e}); it printed:\n{}",
                lines.join("\n")
            ),
        }
    }
}

/// The text after `label` on the line that starts with it.
fn after<'a>(lines: &'a [String], label: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no `{label}` line in:\n{}", lines.join("\n")))
}

#[tokio::test]
async fn cargo_run_example_demo_upgrades_one_login_and_serves_the_admin_page_and_curl() {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(repo_path("."))
        .args(["run", "--quiet", "--example", "demo"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    clean_env(&mut cmd);
    let mut child = cmd.spawn().expect("spawn cargo run --example demo");
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let log = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let lines = tokio::task::spawn_blocking(move || lines_until_ready(&rx))
        .await
        .unwrap();
    let text = lines.join("\n");

    // What it says it did: the password login went out as client credentials and succeeded.
    assert!(
        after(&lines, "grantshift sent").starts_with("grant_type=client_credentials"),
        "{text}"
    );
    assert!(after(&lines, "the client got").starts_with("200"), "{text}");
    assert!(text.contains(acme::RUN_AS_USER_ID), "{text}");
    assert!(
        !text.contains("access_token"),
        "no token is printed: {text}"
    );

    // The admin page URL it printed shows the upgraded set.
    let admin: std::net::SocketAddr = after(&lines, "Admin page:")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap_or_else(|e| panic!("admin address ({e}): {text}"));
    let report = admin_get(admin, "/report").await;
    assert_eq!(report.status, 200);
    let rows = report.json()["credentials"].clone();
    assert_eq!(rows[0]["username"], acme::USERNAME, "{rows}");
    assert_eq!(rows[0]["verdict"], "upgraded", "{rows}");

    // The curl command it printed works as printed (run by a shell, as a user pastes it).
    let curl = after(&lines, "curl ");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "curl -q -sS --max-time 20 -w '\\n%{{http_code}}' {curl}"
        ))
        .output()
        .expect("bash");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.ends_with("\n200"), "{printed}");
    assert!(printed.contains(acme::RUN_AS_USER_ID), "{printed}");
    let report = admin_get(admin, "/report").await.json();
    assert_eq!(
        report["credentials"][0]["counts"]["upgraded"], 2,
        "{report}"
    );

    // Ctrl-C stops it cleanly.
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    let log = log.join().unwrap();
    assert!(status.success(), "{status}\n{log}");
    for secret in [acme::CLIENT_SECRET, acme::PASSWORD] {
        assert!(
            !log.contains(secret),
            "the demo's log names no secret:\n{log}"
        );
    }
}
