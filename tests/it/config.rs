//! `grantshift.toml` parsing: every key optional; unknown keys and bad values are errors whose
//! message names the key.

use grantshift::config::Config;
use std::path::Path;

fn error_for(toml: &str) -> String {
    match Config::from_toml_str(toml, Path::new("/nonexistent")) {
        Ok(c) => panic!("accepted invalid config {toml:?}: {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn empty_file_is_a_valid_config() {
    Config::from_toml_str("", Path::new("/tmp")).expect("every key is optional");
}

#[test]
fn first_version_keys_are_accepted() {
    let toml = r#"
[proxy]
listen = "127.0.0.1:3128"
allowed_connect_ports = [443, 8443]
shutdown_grace = "30s"

[ca]
cert = "certs/grantshift-ca.pem"
key = "certs/grantshift-ca.key"

[upstream]
extra_root_certs = []
connect_timeout = "10s"
request_timeout = "60s"

[upstream.connect_to]
"login.salesforce.com:443" = "127.0.0.1:8443"

[intercept]
hosts = ["login.salesforce.com", "test.salesforce.com", "*.my.salesforce.com"]
"#;
    Config::from_toml_str(toml, Path::new("/tmp")).expect("the documented keys parse");
}

#[test]
fn unknown_key_error_names_the_key() {
    let msg = error_for("[upstream]\nconect_timeout = \"1s\"\n");
    assert!(msg.contains("conect_timeout"), "{msg}");
    let msg = error_for("[proxy]\nlisten_on = \"127.0.0.1:1\"\n");
    assert!(msg.contains("listen_on"), "{msg}");
}

#[test]
fn bad_duration_error_names_upstream_connect_timeout() {
    let msg = error_for("[upstream]\nconnect_timeout = \"soon\"\n");
    assert!(msg.contains("upstream.connect_timeout"), "{msg}");
}

#[test]
fn bad_listen_address_error_names_proxy_listen() {
    let msg = error_for("[proxy]\nlisten = \"not an address\"\n");
    assert!(msg.contains("proxy.listen"), "{msg}");
}

#[test]
fn out_of_range_port_error_names_allowed_connect_ports() {
    let msg = error_for("[proxy]\nallowed_connect_ports = [443, 70000]\n");
    assert!(msg.contains("proxy.allowed_connect_ports"), "{msg}");
}

#[test]
fn bad_connect_to_target_error_names_upstream_connect_to() {
    let msg = error_for("[upstream.connect_to]\n\"login.salesforce.com:443\" = \"nowhere\"\n");
    assert!(msg.contains("upstream.connect_to"), "{msg}");
}

#[test]
fn wrong_type_error_names_intercept_hosts() {
    let msg = error_for("[intercept]\nhosts = \"login.salesforce.com\"\n");
    assert!(msg.contains("intercept.hosts"), "{msg}");
}

#[test]
fn an_intercept_wildcard_over_a_public_suffix_is_refused_naming_the_key_and_the_fix() {
    for broad in ["*.com", "*.co.uk"] {
        let msg = error_for(&format!(
            "[intercept]\nhosts = [\"login.salesforce.com\", \"{broad}\"]\n"
        ));
        assert!(msg.contains("intercept.hosts"), "{msg}");
        assert!(msg.contains(&format!("`{broad}`")), "{msg}");
        assert!(msg.contains("public suffix"), "{msg}");
        assert!(msg.contains("name one domain below it"), "{msg}");
    }
    let msg = error_for("[intercept]\nhosts = [\"*\"]\n");
    assert!(msg.contains("intercept.hosts"), "{msg}");
    Config::from_toml_str(
        "[intercept]\nhosts = [\"*.acme.co.uk\"]\n",
        Path::new("/tmp"),
    )
    .expect("one registrable domain is fine");
}
