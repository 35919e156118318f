//! What the tests send and configure for logins: password-grant forms as real clients write
//! them, `[[credentials]]` / `[[rollout]]` TOML, and checks on what arrived upstream.

use super::client::{empty, HttpConn, Reply};
use super::routes::Recorded;
use super::salesforce::{acme, acme_qa, fixture, TOKEN_PATH};
use base64::Engine as _;

/// `application/x-www-form-urlencoded` of `pairs`, in order.
pub fn form(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).expect("string pairs encode")
}

/// A password grant as jsforce / simple-salesforce send it.
pub fn password_form(
    client_id: &str,
    client_secret: &str,
    username: &str,
    password: &str,
) -> String {
    form(&[
        ("grant_type", "password"),
        ("client_id", client_id),
        ("client_secret", client_secret),
        ("username", username),
        ("password", password),
    ])
}

/// The acme integration user's password grant.
pub fn acme_password_form() -> String {
    password_form(
        acme::CLIENT_ID,
        acme::CLIENT_SECRET,
        acme::USERNAME,
        acme::PASSWORD,
    )
}

/// The acme integration user's password grant with `password` (a wrong one, a changed one).
pub fn acme_login(password: &str) -> String {
    password_form(
        acme::CLIENT_ID,
        acme::CLIENT_SECRET,
        acme::USERNAME,
        password,
    )
}

/// The upgraded logins the fake saw: client credentials at acme's My Domain.
pub fn upgraded_requests(sf: &super::upstreams::FakeSalesforce) -> usize {
    sf.token_requests()
        .iter()
        .filter(|r| {
            r.host_name() == Some(acme::MY_DOMAIN)
                && String::from_utf8_lossy(&r.body).contains("grant_type=client_credentials")
        })
        .count()
}

/// The acme sandbox's (acme_qa) integration user's password grant.
pub fn acme_qa_password_form() -> String {
    password_form(
        acme_qa::CLIENT_ID,
        acme_qa::CLIENT_SECRET,
        acme_qa::USERNAME,
        acme_qa::PASSWORD,
    )
}

/// `Basic base64(user:password)`: an `Authorization` or `Proxy-Authorization` value.
pub fn basic_auth(user: &str, password: &str) -> String {
    let credentials = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    )
}

/// A token request with its whole form in the query string and no body
/// (`POST /services/oauth2/token?<form>`), as some clients send it.
pub async fn login_in_query(conn: &mut HttpConn, host: &str, form: &str) -> Reply {
    let req = conn
        .request(http::Method::POST, host, &format!("{TOKEN_PATH}?{form}"))
        .body(empty())
        .unwrap();
    conn.send(req).await
}

/// A `[[credentials]]` entry mapping `username` to `my_domain` (client credentials).
pub fn credentials_toml(username: &str, my_domain: &str) -> String {
    format!(
        "[[credentials]]\nusername = {}\nmy_domain = {}\n\n",
        super::proxy::toml_str(username),
        super::proxy::toml_str(my_domain)
    )
}

/// A `[[credentials]]` entry with `flow = "jwt_bearer"` and the fixture key `key_file`
/// (`jwt-app.pkcs8.pem` or `jwt-app.pkcs1.pem`); `my_domain` optional.
pub fn jwt_credentials_toml(username: &str, my_domain: Option<&str>, key_file: &str) -> String {
    let mut t = format!(
        "[[credentials]]\nusername = {}\nflow = \"jwt_bearer\"\njwt_private_key = {}\n",
        super::proxy::toml_str(username),
        super::proxy::toml_str(fixture(key_file).to_str().unwrap())
    );
    if let Some(domain) = my_domain {
        t.push_str(&format!("my_domain = {}\n", super::proxy::toml_str(domain)));
    }
    t.push('\n');
    t
}

/// A configured password verifier (`password_hash`) of `password`, as `grantshift
/// hash-password` makes one but with the cheapest Argon2id parameters (m = 8 KiB, t = 1), so
/// tests that configure many stay fast. grantshift itself always makes OWASP-strength ones.
pub fn password_hash(password: &str) -> String {
    use grantshift::password::{Cost, Password, Verifier};
    let cheap = Cost {
        memory_kib: 8,
        passes: 1,
        lanes: 1,
    };
    Verifier::hash(&Password::new(password), cheap)
        .as_phc()
        .to_owned()
}

/// [`jwt_credentials_toml`] with `password_hash` of `password`: a JWT entry whose logins are
/// upgraded when they carry that password (JWT bearer requires a verifier by default).
pub fn jwt_credentials_with_password_toml(
    username: &str,
    my_domain: Option<&str>,
    key_file: &str,
    password: &str,
) -> String {
    with_password_hash(
        &jwt_credentials_toml(username, my_domain, key_file),
        password,
    )
}

/// A `[[credentials]]` entry (TOML ending in a blank line) with `password_hash` of `password`
/// added.
pub fn with_password_hash(entry: &str, password: &str) -> String {
    format!(
        "{}\npassword_hash = {}\n\n",
        entry.trim_end(),
        super::proxy::toml_str(password_hash(password))
    )
}

/// A `[[rollout]]` rule.
pub fn rollout_toml(host: &str, mode: &str, percent: u8, fallback: bool) -> String {
    format!(
        "[[rollout]]\nhost = {}\nmode = {}\npercent = {percent}\nfallback = {fallback}\n\n",
        super::proxy::toml_str(host),
        super::proxy::toml_str(mode)
    )
}

/// The acme integration user mapped to acme's My Domain.
pub fn acme_mapping() -> String {
    credentials_toml(acme::USERNAME, acme::MY_DOMAIN)
}

/// Assert that `secret` appears nowhere in what `r` carried: query, headers, body (raw and
/// form-decoded).
pub fn assert_not_carried(r: &Recorded, secret: &str, what: &str) {
    let raw_query = r.query.as_deref().unwrap_or("");
    let body = String::from_utf8_lossy(&r.body);
    assert!(
        !raw_query.contains(secret) && !body.contains(secret),
        "{what} must not be sent upstream; query {raw_query:?}, body {body:?}"
    );
    for (name, value) in &r.headers {
        assert!(
            !value.contains(secret),
            "{what} must not be sent upstream; header {name}: {value}"
        );
    }
    for (name, value) in r.params() {
        assert!(
            !value.contains(secret),
            "{what} must not be sent upstream; parameter {name}"
        );
    }
}

/// Assert that `r` carries no `username` or `password` parameter at all (query or body).
pub fn assert_no_password_login_parameters(r: &Recorded) {
    let names = r.param_names();
    assert!(
        !names.iter().any(|n| n == "username" || n == "password"),
        "no username/password parameters upstream: {names:?}"
    );
}
