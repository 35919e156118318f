//! grantshift's CA: created on first start when both files are absent (key mode 0600), reused
//! unchanged afterwards, and refused when only one of the two files exists.

use crate::GRANTSHIFT;
use grantshift::config::Config;
use grantshift::Proxy;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use testkit::*;

const CA_TOML: &str = "[ca]\ncert = \"ca/grantshift-ca.pem\"\nkey = \"ca/grantshift-ca.key\"\n";

fn proxy_in(dir: &Path) -> Result<Proxy, grantshift::Error> {
    init_crypto();
    let config = Config::from_toml_str(CA_TOML, dir).expect("valid config");
    Proxy::new(config)
}

fn pem_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let end_marker = "-----END CERTIFICATE-----";
        let end = rest[start..].find(end_marker).expect("PEM end") + start + end_marker.len();
        blocks.push(rest[start..end].to_string());
        rest = &rest[end..];
    }
    blocks
}

#[tokio::test]
async fn ca_is_created_once_and_reused_by_the_next_proxy() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("ca")).unwrap();
    let first = proxy_in(dir.path()).expect("first start creates the CA");
    let pem = first.ca_cert_pem();
    assert!(pem.contains("-----BEGIN CERTIFICATE-----"));
    let cert_path = dir.path().join("ca/grantshift-ca.pem");
    let key_path = dir.path().join("ca/grantshift-ca.key");
    assert!(
        cert_path.is_file() && key_path.is_file(),
        "both files created"
    );
    assert_eq!(
        pem_blocks(&std::fs::read_to_string(&cert_path).unwrap()),
        pem_blocks(&pem),
        "the file holds the certificate clients are told to trust"
    );
    let key_before = std::fs::read(&key_path).unwrap();
    drop(first);

    let second = proxy_in(dir.path()).expect("second start reuses the CA");
    assert_eq!(pem_blocks(&second.ca_cert_pem()), pem_blocks(&pem));
    assert_eq!(
        std::fs::read(&key_path).unwrap(),
        key_before,
        "key untouched"
    );
    let info = cert_info(&pem_certs(&pem)[0]);
    assert!(info.is_ca, "grantshift's certificate is a CA");
}

#[tokio::test]
async fn ca_key_file_is_readable_only_by_its_owner() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("ca")).unwrap();
    proxy_in(dir.path()).expect("start creates the CA");
    let mode = std::fs::metadata(dir.path().join("ca/grantshift-ca.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "key file mode is {:o}", mode & 0o777);
}

#[tokio::test]
async fn ca_cert_without_key_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("ca")).unwrap();
    let pem = TestCa::new("Someone else's CA").pem().to_string();
    std::fs::write(dir.path().join("ca/grantshift-ca.pem"), &pem).unwrap();
    let err = proxy_in(dir.path())
        .err()
        .expect("a certificate without its key is an error");
    assert!(
        err.to_string().contains("grantshift-ca.key"),
        "the error names the missing key file: {err}"
    );
    assert!(
        !dir.path().join("ca/grantshift-ca.key").exists(),
        "no key is invented for an existing certificate"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("ca/grantshift-ca.pem")).unwrap(),
        pem,
        "the existing certificate is left alone"
    );
}

#[tokio::test]
async fn ca_key_without_cert_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("ca")).unwrap();
    std::fs::write(
        dir.path().join("ca/grantshift-ca.key"),
        rcgen::KeyPair::generate().unwrap().serialize_pem(),
    )
    .unwrap();
    let err = proxy_in(dir.path())
        .err()
        .expect("a key without its certificate is an error");
    assert!(
        err.to_string().contains("grantshift-ca.pem"),
        "the error names the missing certificate file: {err}"
    );
}

#[tokio::test]
async fn client_trusting_the_ca_keeps_working_after_a_restart() {
    let ca_dir = tempfile::tempdir().unwrap();
    let cert = ca_dir.path().join("grantshift-ca.pem");
    let key = ca_dir.path().join("grantshift-ca.key");
    let first = TestProxy::builder().ca_files(&cert, &key).start().await;
    let trusted_pem = first.ca_pem().to_string();
    first.shutdown().await.expect("first proxy stops cleanly");

    let second = TestProxy::builder().ca_files(&cert, &key).start().await;
    let (status, tcp) = second.connect("login.salesforce.com:443").await;
    assert_eq!(status, 200);
    let tls = tls_connect(tcp, "login.salesforce.com", &trusted_pem, &[b"h2"]).await;
    let mut conn = HttpConn::handshake(tls, Http::H2).await;
    assert_eq!(conn.get("login.salesforce.com", "/echo").await.status, 200);
}

#[tokio::test]
async fn ca_command_prints_path_pem_and_trust_instructions_and_the_same_pem_twice() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("grantshift.toml");
    std::fs::write(
        &config,
        "[ca]\ncert = \"grantshift-ca.pem\"\nkey = \"grantshift-ca.key\"\n",
    )
    .unwrap();
    let run = || {
        let mut cmd = GRANTSHIFT.command(dir.path());
        cmd.arg("ca").arg("-c").arg(&config);
        run_to_end(cmd)
    };
    let first = run().await;
    assert!(first.status.success(), "grantshift ca failed: {first:?}");
    let cert_path = dir.path().join("grantshift-ca.pem");
    assert!(cert_path.is_file(), "grantshift ca creates the CA");
    assert!(
        first.stdout.contains(cert_path.to_str().unwrap()),
        "prints the certificate's path: {}",
        first.stdout
    );
    let printed = pem_blocks(&first.stdout);
    assert_eq!(printed.len(), 1, "prints the PEM once: {}", first.stdout);
    assert_eq!(
        printed,
        pem_blocks(&std::fs::read_to_string(&cert_path).unwrap())
    );
    for how in [
        "--cacert",
        "REQUESTS_CA_BUNDLE",
        "NODE_EXTRA_CA_CERTS",
        "keytool",
        "update-ca-certificates",
    ] {
        assert!(
            first.stdout.contains(how),
            "trust instructions mention {how}: {}",
            first.stdout
        );
    }

    let second = run().await;
    assert!(
        second.status.success(),
        "second grantshift ca failed: {second:?}"
    );
    assert_eq!(
        pem_blocks(&second.stdout),
        printed,
        "same CA on the second run"
    );
}
