//! grantshift's CA: created on first start when both files are absent (key mode 0600), reused
//! unchanged afterwards, and refused when only one of the two files exists.

use crate::GRANTSHIFT;
use grantshift::config::Config;
use grantshift::Proxy;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use testkit::clients::{curl_without_environment, python_tls_verify};
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

// ---------------------------------------------------------------------------------------------
// Name constraints, warnings and `grantshift ca --renew`

/// A config for the binary: no ports taken, no events file, the CA at `ca.pem`/`ca.key` in
/// `dir`, and `extra` appended.
fn binary_config(dir: &Path, name: &str, extra: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"\"\n\n[ca]\ncert = \"ca.pem\"\n\
             key = \"ca.key\"\n\n[telemetry]\nevents = \"\"\n\n{extra}"
        ),
    )
    .unwrap();
    path
}

async fn grantshift(dir: &Path, args: &[&str], config: &Path) -> Finished {
    let mut cmd = GRANTSHIFT.command(dir);
    cmd.args(args).arg("-c").arg(config);
    run_to_end(cmd).await
}

/// The name constraints of the CA certificate in `pem`: (critical, permitted DNS names,
/// excluded IP ranges as raw bytes).
fn name_constraints(pem: &str) -> (bool, Vec<String>, Vec<Vec<u8>>) {
    use x509_parser::extensions::GeneralName;
    let der = &pem_certs(pem)[0];
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    let ext = cert
        .name_constraints()
        .unwrap()
        .expect("the CA has a name constraints extension");
    let permitted = ext
        .value
        .permitted_subtrees
        .iter()
        .flatten()
        .map(|t| match t.base {
            GeneralName::DNSName(d) => d.to_string(),
            ref other => panic!("a permitted subtree that is not a DNS name: {other:?}"),
        })
        .collect();
    let excluded = ext
        .value
        .excluded_subtrees
        .iter()
        .flatten()
        .map(|t| match t.base {
            GeneralName::IPAddress(ip) => ip.to_vec(),
            ref other => panic!("an excluded subtree that is not an IP range: {other:?}"),
        })
        .collect();
    (ext.critical, permitted, excluded)
}

#[tokio::test]
async fn a_new_ca_is_constrained_to_the_intercepted_domains_and_valid_for_two_years() {
    let dir = tempfile::tempdir().unwrap();
    let config = binary_config(
        dir.path(),
        "grantshift.toml",
        "[intercept]\nhosts = [\"login.salesforce.com\", \"*.my.salesforce.com\", \"*.force.com\"]\n",
    );
    let out = grantshift(dir.path(), &["ca"], &config).await;
    assert!(out.status.success(), "{out:?}");
    assert!(
        !out.stderr.contains("warning"),
        "no warning for a new CA: {}",
        out.stderr
    );
    let pem = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
    let (critical, permitted, excluded) = name_constraints(&pem);
    assert!(critical, "name constraints are critical");
    assert_eq!(
        permitted,
        [
            "force.com",
            "my-salesforce.com",
            "salesforce.com",
            "salesforce.mil",
            "sfcrmproducts.cn"
        ]
    );
    assert_eq!(
        excluded,
        [vec![0u8; 8], vec![0u8; 32]],
        "every IPv4 and IPv6 address excluded"
    );
    let der = pem_certs(&pem).remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let days =
        (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp()) / 86_400;
    assert!((730..=731).contains(&days), "valid for {days} days");
}

#[tokio::test]
async fn curl_and_python_refuse_a_leaf_outside_the_ca_constraints_and_accept_one_inside() {
    init_crypto();
    let dir = tempfile::tempdir().unwrap();
    let defaults = Config::default();
    let ca = grantshift::ca::CertificateAuthority::load_or_create(
        &dir.path().join("ca.pem"),
        &dir.path().join("ca.key"),
        &grantshift::ca::permitted_domains(&defaults.intercept.hosts),
        std::sync::Arc::new(rustls::crypto::ring::default_provider()),
    )
    .unwrap();
    let ca_pem = dir.path().join("ca.pem");
    for (host, trusted) in [("login.salesforce.com", true), ("www.example.org", false)] {
        // A leaf minted by grantshift's own code, as a leaked CA key would let anyone mint.
        let server = ServerConfigTlsServer::start(ca.server_config_for(host).unwrap()).await;
        let port = server.addr().port();
        let mut curl = curl_without_environment(dir.path());
        curl.arg("--cacert")
            .arg(&ca_pem)
            .arg("--resolve")
            .arg(format!("{host}:{port}:127.0.0.1"))
            .arg(format!("https://{host}:{port}/echo"));
        let out = run_to_end(curl).await;
        let python = run_to_end(python_tls_verify(&ca_pem, host, server.addr(), dir.path())).await;
        let tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
        let rustls = try_tls_connect(tcp, host, ca.cert_pem(), &[b"http/1.1"]).await;
        if trusted {
            assert!(out.status.success(), "curl to {host}: {out:?}");
            assert!(python.status.success(), "python to {host}: {python:?}");
            assert!(rustls.is_ok(), "rustls to {host}: {:?}", rustls.err());
        } else {
            // curl: 60, "SSL peer certificate or SSH remote key was not OK".
            assert_eq!(out.status.code(), Some(60), "curl to {host}: {out:?}");
            assert!(
                out.stderr.to_lowercase().contains("certificate"),
                "curl names a certificate error: {}",
                out.stderr
            );
            assert!(!python.status.success(), "python to {host}: {python:?}");
            assert!(
                python.stderr.contains("CERTIFICATE_VERIFY_FAILED"),
                "python: {}",
                python.stderr
            );
            assert!(rustls.is_err(), "rustls accepted a leaf for {host}");
        }
    }
}

#[tokio::test]
async fn an_unconstrained_ca_is_warned_about_in_check_and_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let old = TestCa::new("grantshift CA from before name constraints");
    old.write_as_grantshift_ca(&dir.path().join("ca.pem"), &dir.path().join("ca.key"));
    let config = binary_config(dir.path(), "grantshift.toml", "");

    let out = grantshift(dir.path(), &["check"], &config).await;
    assert!(
        out.status.success(),
        "a warning does not fail check: {out:?}"
    );
    assert!(out.stderr.contains("warning"), "{}", out.stderr);
    assert!(
        out.stderr.contains("has no name constraints"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("grantshift ca --renew"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.contains("no name constraints"), "{}", out.stdout);

    let mut cmd = GRANTSHIFT.command(dir.path());
    cmd.args(["run", "--log-format", "json", "-c"]).arg(&config);
    let run = RunningBinary::start(cmd).await;
    let lines = run
        .wait_for_stderr("a WARN about the unconstrained CA", |lines| {
            lines.iter().any(|l| l.contains("has no name constraints"))
        })
        .await;
    let line = lines
        .iter()
        .find(|l| l.contains("has no name constraints"))
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(json["level"], "WARN", "{line}");
    assert!(
        json["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("grantshift ca --renew"),
        "{line}"
    );
}

#[tokio::test]
async fn an_intercepted_host_outside_the_ca_constraints_is_warned_about_in_check_and_on_reload() {
    let dir = tempfile::tempdir().unwrap();
    let defaults = binary_config(dir.path(), "grantshift.toml", "");
    let out = grantshift(dir.path(), &["ca"], &defaults).await;
    assert!(out.status.success(), "{out:?}");
    let out = grantshift(dir.path(), &["check"], &defaults).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        out.stderr, "",
        "no warning for the hosts the CA was made for"
    );
    assert!(
        out.stdout
            .contains("constrained to my-salesforce.com, salesforce.com"),
        "{}",
        out.stdout
    );

    let more = "[intercept]\nhosts = [\"login.salesforce.com\", \"*.my.salesforce.com\", \"*.force.com\"]\n";
    let wider = binary_config(dir.path(), "wider.toml", more);
    let out = grantshift(dir.path(), &["check"], &wider).await;
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stderr
            .contains("intercept.hosts: `*.force.com` is outside the CA's name constraints"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("grantshift ca --renew"),
        "{}",
        out.stderr
    );
    assert_eq!(
        out.stderr.lines().count(),
        1,
        "only *.force.com: {}",
        out.stderr
    );

    // A reload that adds the host says so too.
    let mut cmd = GRANTSHIFT.command(dir.path());
    cmd.args(["run", "--log-format", "json", "-c"])
        .arg(&defaults);
    let run = RunningBinary::start(cmd).await;
    std::fs::write(&defaults, std::fs::read_to_string(&wider).unwrap()).unwrap();
    run.signal("HUP");
    let lines = run
        .wait_for_stderr("a WARN about *.force.com after the reload", |lines| {
            lines.iter().any(|l| l.contains("`*.force.com` is outside"))
        })
        .await;
    let warned: Vec<&String> = lines.iter().filter(|l| l.contains("\"WARN\"")).collect();
    assert_eq!(
        warned.len(),
        1,
        "one warning, after the reload: {warned:#?}"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn ca_renew_replaces_an_old_ca_with_a_constrained_one_that_the_proxy_uses() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("ca.pem"), dir.path().join("ca.key"));
    let old = TestCa::new("grantshift CA from before name constraints");
    old.write_as_grantshift_ca(&cert, &key);
    let old_key = std::fs::read(&key).unwrap();
    let config = binary_config(dir.path(), "grantshift.toml", "");

    let out = grantshift(dir.path(), &["ca", "--renew"], &config).await;
    assert!(out.status.success(), "{out:?}");
    assert!(
        !out.stderr.contains("warning"),
        "the new CA needs no warning: {}",
        out.stderr
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&key), 0o600, "new key mode");
    assert_eq!(mode(&cert), 0o644, "new certificate mode");
    let new_pem = std::fs::read_to_string(&cert).unwrap();
    assert_eq!(
        pem_blocks(&out.stdout),
        pem_blocks(&new_pem),
        "prints the new PEM"
    );
    assert!(
        out.stdout.contains(cert.to_str().unwrap()),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("must trust the new certificate again"),
        "{}",
        out.stdout
    );
    assert_ne!(pem_blocks(&new_pem), pem_blocks(old.pem()));
    let (_, permitted, _) = name_constraints(&new_pem);
    assert!(
        permitted.contains(&"salesforce.com".to_string()),
        "{permitted:?}"
    );

    // The old files are kept next to the new ones, named in the output.
    let backups: Vec<std::path::PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "bak"))
        .collect();
    assert_eq!(backups.len(), 2, "{backups:?}");
    for b in &backups {
        assert!(
            out.stdout.contains(b.to_str().unwrap()),
            "names {}: {}",
            b.display(),
            out.stdout
        );
        let name = b.file_name().unwrap().to_str().unwrap();
        if name.starts_with("ca.key.") {
            assert_eq!(std::fs::read(b).unwrap(), old_key);
            assert_eq!(mode(b), 0o600, "the old key stays private");
        } else {
            assert!(name.starts_with("ca.pem."), "{name}");
            assert_eq!(std::fs::read_to_string(b).unwrap(), old.pem());
        }
    }

    // The proxy serves leaves from the new CA: a client trusting it connects, one that still
    // trusts only the old CA does not.
    let proxy = TestProxy::builder().ca_files(&cert, &key).start().await;
    assert_eq!(pem_blocks(proxy.ca_pem()), pem_blocks(&new_pem));
    let (status, tcp) = proxy.connect("login.salesforce.com:443").await;
    assert_eq!(status, 200);
    let tls = tls_connect(tcp, "login.salesforce.com", &new_pem, &[b"h2"]).await;
    let mut conn = HttpConn::handshake(tls, Http::H2).await;
    assert_eq!(conn.get("login.salesforce.com", "/echo").await.status, 200);
    let (_, tcp) = proxy.connect("login.salesforce.com:443").await;
    assert!(
        try_tls_connect(tcp, "login.salesforce.com", old.pem(), &[b"h2"])
            .await
            .is_err(),
        "a client trusting only the old CA must trust the new one"
    );
}
