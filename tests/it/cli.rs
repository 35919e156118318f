//! `grantshift check` validates a config and prints the effective settings; errors go to stderr
//! naming the file and the key; `GRANTSHIFT_CONFIG` names the file when `-c` is absent.

use crate::GRANTSHIFT;
use std::path::{Path, PathBuf};
use testkit::*;

fn write_config(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const GOOD: &str = r#"
[proxy]
listen = "127.0.0.1:4321"
allowed_connect_ports = [443, 8443]

[ca]
cert = "pki/ca.pem"
key = "pki/ca.key"

[upstream]
request_timeout = "45s"

[upstream.connect_to]
"login.salesforce.com:443" = "127.0.0.1:9443"
"#;

async fn check(dir: &Path, args: &[&str], env: Option<&Path>) -> Finished {
    let mut cmd = GRANTSHIFT.command(dir);
    cmd.arg("check").args(args);
    if let Some(path) = env {
        cmd.env("GRANTSHIFT_CONFIG", path);
    }
    run_to_end(cmd).await
}

#[tokio::test]
async fn check_prints_effective_settings_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "grantshift.toml", GOOD);
    let out = check(dir.path(), &["-c", config.to_str().unwrap()], None).await;
    assert!(out.status.success(), "check failed: {out:?}");
    for expected in [
        "127.0.0.1:4321",
        "8443",
        "127.0.0.1:9443",
        "login.salesforce.com:443",
        // Defaults are part of the effective settings.
        "*.my.salesforce.com",
    ] {
        assert!(
            out.stdout.contains(expected),
            "stdout shows {expected}:\n{}",
            out.stdout
        );
    }
    let resolved = dir.path().join("pki/ca.pem");
    assert!(
        out.stdout.contains(resolved.to_str().unwrap()),
        "relative CA path resolved against the file's directory ({}):\n{}",
        resolved.display(),
        out.stdout
    );
    assert!(
        !dir.path().join("pki").exists(),
        "check does not create the CA"
    );
}

#[tokio::test]
async fn check_rejects_an_unknown_key_naming_it_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "typo.toml",
        "[upstream]\nconect_timeout = \"1s\"\n",
    );
    let out = check(dir.path(), &["-c", config.to_str().unwrap()], None).await;
    assert!(!out.status.success(), "unknown key accepted: {out:?}");
    assert!(out.stderr.contains("conect_timeout"), "{}", out.stderr);
    assert!(
        out.stderr.contains("typo.toml"),
        "names the file: {}",
        out.stderr
    );
}

#[tokio::test]
async fn check_rejects_a_bad_value_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "bad.toml",
        "[upstream]\nconnect_timeout = \"soon\"\n",
    );
    let out = check(dir.path(), &["-c", config.to_str().unwrap()], None).await;
    assert!(!out.status.success(), "bad value accepted: {out:?}");
    assert!(
        out.stderr.contains("upstream.connect_timeout"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn grantshift_config_env_names_the_file_when_c_is_absent() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_config(dir.path(), "good.toml", GOOD);
    let bad = write_config(
        dir.path(),
        "bad.toml",
        "[proxy]\nallowed_connect_ports = \"all\"\n",
    );

    let out = check(dir.path(), &[], Some(&good)).await;
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("127.0.0.1:4321"), "{}", out.stdout);

    let out = check(dir.path(), &[], Some(&bad)).await;
    assert!(!out.status.success(), "the env file was not read: {out:?}");
    assert!(
        out.stderr.contains("proxy.allowed_connect_ports"),
        "{}",
        out.stderr
    );

    // -c wins over the environment.
    let out = check(dir.path(), &["-c", good.to_str().unwrap()], Some(&bad)).await;
    assert!(
        out.status.success(),
        "-c must override GRANTSHIFT_CONFIG: {out:?}"
    );
}

#[tokio::test]
async fn a_file_that_cannot_be_read_is_named_with_the_os_error_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let out = check(dir.path(), &["-c", missing.to_str().unwrap()], None).await;
    assert!(!out.status.success(), "{out:?}");
    let line = out.stderr.trim_end();
    assert!(line.contains("nope.toml: cannot read"), "{line}");
    assert_eq!(
        line.matches("No such file or directory").count(),
        1,
        "the OS error once: {line}"
    );
}

#[tokio::test]
async fn output_into_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "grantshift.toml", GOOD);
    let mut cmd = GRANTSHIFT.command(dir.path());
    cmd.arg("check")
        .arg("-c")
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let out = within(30, "grantshift check writing into a closed pipe", async {
        tokio::task::spawn_blocking(move || {
            let mut child = cmd.spawn().expect("start grantshift check");
            // The reader goes away before the output is written (`grantshift check | head -0`).
            drop(child.stdout.take());
            child.wait_with_output().expect("wait for grantshift check")
        })
        .await
        .unwrap()
    })
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
}
