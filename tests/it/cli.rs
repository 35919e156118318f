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

// ---------------------------------------------------------------------------------------------
// `check` makes every check `run` makes, and `run` makes them before it creates anything.

/// A config with the CA and the events file where the test says, nothing listening for long.
fn preflight_config(dir: &Path, events: &str) -> PathBuf {
    write_config(
        dir,
        "grantshift.toml",
        &format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"\"\n\n[ca]\ncert = \"pki/ca.pem\"\n\
             key = \"pki/ca.key\"\n\n[telemetry]\nevents = \"{events}\"\n"
        ),
    )
}

#[cfg(unix)]
#[tokio::test]
async fn check_fails_on_a_ca_key_others_can_read_as_run_does() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let config = preflight_config(dir.path(), "");
    let c = config.to_str().unwrap();
    let mut ca = GRANTSHIFT.command(dir.path());
    ca.args(["ca", "-c", c]);
    assert!(run_to_end(ca).await.status.success());
    let key = dir.path().join("pki/ca.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();

    let out = check(dir.path(), &["-c", c], None).await;
    assert!(!out.status.success(), "check passed a 0644 CA key: {out:?}");
    let fix = format!("chmod 600 {}", key.display());
    assert!(
        out.stderr.contains("readable by group or others"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains(&fix), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "no 'config OK': {}", out.stdout);
}

#[tokio::test]
async fn check_fails_on_an_events_file_in_a_missing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let config = preflight_config(dir.path(), "logs/events.jsonl");
    let out = check(dir.path(), &["-c", config.to_str().unwrap()], None).await;
    assert!(
        !out.status.success(),
        "check passed a missing events directory: {out:?}"
    );
    let missing = dir.path().join("logs");
    assert!(out.stderr.contains("telemetry.events"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("its directory {}", missing.display())),
        "{}",
        out.stderr
    );
    assert!(
        !missing.exists() && !dir.path().join("pki").exists(),
        "check creates nothing"
    );
}

#[tokio::test]
async fn run_with_an_events_file_in_a_missing_directory_fails_before_creating_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let config = preflight_config(dir.path(), "logs/events.jsonl");
    let mut cmd = GRANTSHIFT.command(dir.path());
    cmd.args(["run", "-c", config.to_str().unwrap()]);
    let out = within(30, "grantshift run failing", run_to_end(cmd)).await;
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("telemetry.events"), "{}", out.stderr);
    assert!(
        !dir.path().join("pki/ca.pem").exists() && !dir.path().join("pki/ca.key").exists(),
        "no CA is created by a start that fails: {}",
        out.stderr
    );
    assert!(!dir.path().join("pki").exists(), "not even its directory");
}

/// The repository's example config, as shipped.
const EXAMPLE: &str = include_str!("../../grantshift.example.toml");

#[test]
fn the_example_config_parses() {
    let dir = tempfile::tempdir().unwrap();
    let config = grantshift::config::Config::from_toml_str(EXAMPLE, dir.path())
        .unwrap_or_else(|e| panic!("grantshift.example.toml: {e}"));
    // No rule active: the built-in default (upgrade everything, with fallback) applies.
    assert_eq!(config.rollout.len(), 1);
    assert_eq!(config.rollout[0].mode, grantshift::config::Mode::Upgrade);
}

#[tokio::test]
async fn init_writes_the_example_or_its_observe_variant_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    // Plain: the example itself, in ./grantshift.toml.
    let mut cmd = GRANTSHIFT.command(dir.path());
    cmd.arg("init");
    let out = run_to_end(cmd).await;
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.starts_with("wrote grantshift.toml\n"), "{out:?}");
    let written = dir.path().join("grantshift.toml");
    assert_eq!(std::fs::read_to_string(&written).unwrap(), EXAMPLE);

    // Again: refused, the file unchanged.
    std::fs::write(&written, "# mine\n").unwrap();
    let mut cmd = GRANTSHIFT.command(dir.path());
    cmd.args(["init", "--observe"]);
    let out = run_to_end(cmd).await;
    assert!(!out.status.success(), "{out:?}");
    assert!(
        out.stderr.contains("grantshift.toml") && out.stderr.contains("never overwritten"),
        "{out:?}"
    );
    assert_eq!(std::fs::read_to_string(&written).unwrap(), "# mine\n");

    // --observe -c PATH: one active rule, host "*" observe, and `check` accepts the file.
    let observe = dir.path().join("etc-grantshift.toml");
    let mut cmd = GRANTSHIFT.command(dir.path());
    cmd.args(["init", "--observe", "-c"]).arg(&observe);
    let out = run_to_end(cmd).await;
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stdout
            .starts_with(&format!("wrote {} (observe mode)", observe.display())),
        "{out:?}"
    );
    let text = std::fs::read_to_string(&observe).unwrap();
    let config = grantshift::config::Config::from_toml_str(&text, dir.path()).expect("parses");
    assert_eq!(config.rollout.len(), 1, "{text}");
    assert_eq!(config.rollout[0].host, "*");
    assert_eq!(config.rollout[0].mode, grantshift::config::Mode::Observe);
    let checked = check(dir.path(), &["-c", observe.to_str().unwrap()], None).await;
    assert!(checked.status.success(), "{checked:?}");
}
