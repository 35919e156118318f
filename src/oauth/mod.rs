//! Salesforce token requests: recognise them, read their parameters, and rewrite password
//! grants. Everything here is pure (bytes in, bytes out) and unit-tested beside the code.
//!
//! A token request is a `POST` to `/services/oauth2/token`; its parameters are the union of
//! the query string and an `application/x-www-form-urlencoded` body (docs/operating.md, "The upgrade";
//! real clients put grant parameters in either place).

pub mod basic;
pub mod jwt;
pub mod rewrite;

pub use basic::{basic_client_id, BadBasic};

use http::{HeaderMap, Method};
use std::fmt;

pub const TOKEN_PATH: &str = "/services/oauth2/token";
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The longest username a password grant may have to be upgraded or recorded, in characters:
/// Salesforce usernames are at most 80 (docs/operating.md, "Safety and limits").
pub const MAX_USERNAME_CHARS: usize = 80;
/// The longest client id recorded or matched, in characters: Salesforce consumer keys are
/// shorter than 256.
pub const MAX_CLIENT_ID_CHARS: usize = 255;
/// The longest `grant_type` recorded, in characters: the longest Salesforce grant type
/// (`urn:ietf:params:oauth:grant-type:token-exchange`) has 47.
pub const MAX_GRANT_TYPE_CHARS: usize = 128;

/// Is this request a token request (before looking at its body)?
pub fn is_token_request(method: &Method, path: &str) -> bool {
    method == Method::POST && path == TOKEN_PATH
}

/// Salesforce's token revocation endpoint (RFC 7009): `token=` in the form body (POST) or the
/// query string (GET).
pub const REVOKE_PATH: &str = "/services/oauth2/revoke";

/// Is this request a token revocation (before looking at its body)?
pub fn is_revoke_request(method: &Method, path: &str) -> bool {
    (method == Method::POST || method == Method::GET) && path == REVOKE_PATH
}

/// The token a revocation names: `token` in the query string or, for a form body, the body
/// (the body wins when both name one). `None` when neither names exactly one.
pub fn revoked_token(query: Option<&str>, body: &[u8]) -> Option<String> {
    let one = |pairs: Vec<(String, String)>| -> Option<Option<String>> {
        let mut tokens = pairs
            .into_iter()
            .filter(|(k, _)| k == "token")
            .map(|(_, v)| v);
        match (tokens.next(), tokens.next()) {
            (Some(t), None) => Some(Some(t)),
            (None, _) => Some(None),
            _ => None,
        }
    };
    let from_body = one(serde_urlencoded::from_bytes(body).ok()?)?;
    let from_query = match query {
        Some(q) => one(serde_urlencoded::from_str(q).ok()?)?,
        None => None,
    };
    from_body.or(from_query).filter(|t| !t.is_empty())
}

/// The token of `Authorization: Bearer <token>` (or `OAuth <token>`, which Salesforce takes
/// too), from one such field, if any.
pub fn bearer_token(headers: &http::HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return None;
    };
    let value = value.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let known = scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("oauth");
    (known && !token.trim().is_empty()).then(|| token.trim())
}

/// Why a token request is forwarded untouched without being understood (docs/operating.md, "The upgrade"). The
/// string is the event's `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    TooLarge,
    /// The body did not arrive within `token_body_timeout`.
    BodyTimeout,
    /// `token_body_budget` was in use by other token requests.
    MemoryBudget,
    Compressed,
    NotForm,
    BadEncoding,
    DuplicateGrantType,
    DuplicateParameter,
    MissingClientId,
    NoClientSecret,
    UsernameTooLong,
    ClientIdTooLong,
    BadBasicAuth,
    ClientIdMismatch,
    /// The password does not match the credential set's verifier.
    PasswordMismatch,
    /// Not checked: the set's verifier refused too many passwords lately.
    PasswordThrottled,
    /// The entry requires a verifier and the set has none.
    NoVerifier,
    Internal,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::TooLarge => "body_too_large",
            SkipReason::BodyTimeout => "body_timeout",
            SkipReason::MemoryBudget => "memory_budget",
            SkipReason::Compressed => "compressed",
            SkipReason::NotForm => "not_form",
            SkipReason::BadEncoding => "bad_encoding",
            SkipReason::DuplicateGrantType => "duplicate_grant_type",
            SkipReason::DuplicateParameter => "duplicate_parameter",
            SkipReason::MissingClientId => "missing_client_id",
            SkipReason::NoClientSecret => "no_client_secret",
            SkipReason::UsernameTooLong => "username_too_long",
            SkipReason::ClientIdTooLong => "client_id_too_long",
            SkipReason::BadBasicAuth => "bad_basic_auth",
            SkipReason::ClientIdMismatch => "client_id_mismatch",
            SkipReason::PasswordMismatch => "password_mismatch",
            SkipReason::PasswordThrottled => "password_throttled",
            SkipReason::NoVerifier => "no_verifier",
            SkipReason::Internal => "internal",
        }
    }
}

/// Can the body of this token request be read as a form at all? Checked from the headers,
/// before anything is buffered.
pub fn body_is_readable(headers: &HeaderMap, max_body: usize) -> Result<(), SkipReason> {
    not_coded(headers)?;
    if let Some(ct) = headers.get(http::header::CONTENT_TYPE) {
        let essence = ct
            .to_str()
            .map_err(|_| SkipReason::NotForm)?
            .split(';')
            .next()
            .unwrap_or("")
            .trim();
        if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(SkipReason::NotForm);
        }
    }
    within(headers, max_body)
}

/// Can a SOAP call's body be read as an envelope at all? Checked from the headers, before
/// anything is buffered.
pub fn soap_body_is_readable(headers: &HeaderMap, max_body: usize) -> Result<(), SkipReason> {
    not_coded(headers)?;
    within(headers, max_body)
}

/// No content coding, nor a transfer coding other than chunked (hop_by_hop::strip keeps those):
/// else the bytes are not the body itself.
fn not_coded(headers: &HeaderMap) -> Result<(), SkipReason> {
    if headers.contains_key(http::header::CONTENT_ENCODING)
        || headers.contains_key(http::header::TRANSFER_ENCODING)
    {
        return Err(SkipReason::Compressed);
    }
    Ok(())
}

/// No declared length over `max_body`.
fn within(headers: &HeaderMap, max_body: usize) -> Result<(), SkipReason> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max_body as u64) {
        return Err(SkipReason::TooLarge);
    }
    Ok(())
}

/// The parameters of a token request, in order: query string first, then body.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenParams {
    pub params: Vec<(String, String)>,
}

/// Parameters are secrets (password, client_secret): never print their values.
impl fmt::Debug for TokenParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.params.iter().map(|(k, _)| k))
            .finish()
    }
}

/// Parameter values include the password and client secret: wipe them when done.
impl Drop for TokenParams {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        for (_, value) in &mut self.params {
            value.zeroize();
        }
    }
}

impl TokenParams {
    /// Parse the query string and the body. Strict where the form decoder is lenient: a `%`
    /// not followed by two hex digits, or bytes that do not decode to UTF-8, make the request
    /// one grantshift does not understand.
    pub fn parse(query: Option<&str>, body: &[u8]) -> Result<TokenParams, SkipReason> {
        let mut params = Vec::new();
        for part in [query.unwrap_or("").as_bytes(), body] {
            if !is_strict_form(part) {
                return Err(SkipReason::BadEncoding);
            }
            let decoded: Vec<(String, String)> =
                serde_urlencoded::from_bytes(part).map_err(|_| SkipReason::BadEncoding)?;
            params.extend(decoded);
        }
        let count = |name: &str| params.iter().filter(|(k, _)| k == name).count();
        if count("grant_type") > 1 {
            return Err(SkipReason::DuplicateGrantType);
        }
        // Two different answers to "which app / which user / which secret" cannot be
        // rewritten faithfully.
        if ["client_id", "client_secret", "username", "password"]
            .iter()
            .any(|name| count(name) > 1)
        {
            return Err(SkipReason::DuplicateParameter);
        }
        Ok(TokenParams { params })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn grant_type(&self) -> Option<&str> {
        self.get("grant_type")
    }
}

/// Every `%` is followed by two hex digits, and what it decodes to is UTF-8.
fn is_strict_form(bytes: &[u8]) -> bool {
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let ok = bytes.len() > i + 2
                && bytes[i + 1].is_ascii_hexdigit()
                && bytes[i + 2].is_ascii_hexdigit();
            if !ok {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    // serde_urlencoded replaces invalid UTF-8 with U+FFFD; refuse instead.
    form_is_utf8(bytes)
}

fn form_is_utf8(bytes: &[u8]) -> bool {
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                decoded.push(u8::from_str_radix(hex, 16).unwrap_or(0));
                i += 3;
            }
            b => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    std::str::from_utf8(&decoded).is_ok()
}

/// Host classes (docs/operating.md, "The upgrade"): the generic login hosts, My Domains and sandboxes.
pub fn is_generic_login_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("login.salesforce.com")
        || host.eq_ignore_ascii_case("test.salesforce.com")
}

/// `*.my.salesforce.com` (incl. `.sandbox.`, `.develop.`, …), `*.my.salesforce.mil`,
/// `*.my-salesforce.com`, `*.my.sfcrmproducts.cn`.
pub fn is_my_domain_host(host: &str) -> bool {
    const SUFFIXES: [&str; 4] = [
        ".my.salesforce.com",
        ".my.salesforce.mil",
        ".my-salesforce.com",
        ".my.sfcrmproducts.cn",
    ];
    let host = host.to_ascii_lowercase();
    SUFFIXES
        .iter()
        .any(|s| host.len() > s.len() && host.ends_with(s))
}

/// Sandbox hosts: `test.salesforce.com`, enhanced `X--S.sandbox.my.salesforce.com`, legacy
/// `X--S.my.salesforce.com`.
pub fn is_sandbox_host(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    host == "test.salesforce.com"
        || (is_my_domain_host(&host)
            && (host.contains(".sandbox.")
                || host.split('.').next().is_some_and(|l| l.contains("--"))))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_revocation_names_its_token_in_the_body_or_the_query() {
        assert_eq!(
            revoked_token(None, b"token=00D%21AQ.x").as_deref(),
            Some("00D!AQ.x")
        );
        assert_eq!(
            revoked_token(Some("token=00D!q"), b"").as_deref(),
            Some("00D!q")
        );
        assert_eq!(
            revoked_token(Some("token=q"), b"token=b").as_deref(),
            Some("b")
        );
        assert_eq!(revoked_token(None, b"token=a&token=b"), None, "two tokens");
        assert_eq!(revoked_token(None, b"token="), None);
        assert_eq!(revoked_token(None, b"%zz"), None);
        assert!(is_revoke_request(&Method::GET, REVOKE_PATH));
        assert!(is_revoke_request(&Method::POST, REVOKE_PATH));
        assert!(!is_revoke_request(&Method::DELETE, REVOKE_PATH));
    }

    #[test]
    fn a_bearer_token_is_read_from_one_authorization_field() {
        let mut h = http::HeaderMap::new();
        assert_eq!(bearer_token(&h), None);
        h.insert("authorization", "Bearer 00D!AQ.x".parse().unwrap());
        assert_eq!(bearer_token(&h), Some("00D!AQ.x"));
        h.insert("authorization", "OAuth 00D!AQ.y".parse().unwrap());
        assert_eq!(bearer_token(&h), Some("00D!AQ.y"));
        h.insert("authorization", "Basic YTpi".parse().unwrap());
        assert_eq!(bearer_token(&h), None, "not a token");
        h.insert("authorization", "bearer t".parse().unwrap());
        h.append("authorization", "bearer u".parse().unwrap());
        assert_eq!(bearer_token(&h), None, "two fields");
    }

    use super::*;

    #[test]
    fn parameters_come_from_query_then_body() {
        let p = TokenParams::parse(
            Some("grant_type=password&format=json"),
            b"username=a%2Bb%40x.com&password=p+w",
        )
        .unwrap();
        assert_eq!(p.grant_type(), Some("password"));
        assert_eq!(p.get("username"), Some("a+b@x.com"));
        assert_eq!(p.get("password"), Some("p w"));
        assert_eq!(p.params[1].0, "format");
    }

    #[test]
    fn bad_percent_encoding_and_bad_utf8_are_refused() {
        assert_eq!(
            TokenParams::parse(None, b"a=%zz"),
            Err(SkipReason::BadEncoding)
        );
        assert_eq!(
            TokenParams::parse(None, b"a=%4"),
            Err(SkipReason::BadEncoding)
        );
        assert_eq!(
            TokenParams::parse(None, b"a=%ff"),
            Err(SkipReason::BadEncoding)
        );
        assert_eq!(
            TokenParams::parse(Some("a=%"), b""),
            Err(SkipReason::BadEncoding)
        );
        assert!(TokenParams::parse(None, b"a=%C3%A9").is_ok());
    }

    #[test]
    fn duplicate_grant_type_is_refused_even_across_query_and_body() {
        assert_eq!(
            TokenParams::parse(
                Some("grant_type=password"),
                b"grant_type=client_credentials"
            ),
            Err(SkipReason::DuplicateGrantType)
        );
    }

    #[test]
    fn debug_never_prints_values() {
        let p = TokenParams::parse(None, b"password=hunter2&client_secret=s3cr3t").unwrap();
        let shown = format!("{p:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cr3t"),
            "{shown}"
        );
    }

    #[test]
    fn body_readability_from_headers() {
        let mut h = HeaderMap::new();
        assert!(
            body_is_readable(&h, 10).is_ok(),
            "missing Content-Type counts as form"
        );
        h.insert(
            "content-type",
            "application/x-www-form-urlencoded; charset=UTF-8"
                .parse()
                .unwrap(),
        );
        assert!(body_is_readable(&h, 10).is_ok());
        h.insert("content-length", "11".parse().unwrap());
        assert_eq!(body_is_readable(&h, 10), Err(SkipReason::TooLarge));
        h.insert("content-length", "5".parse().unwrap());
        h.insert("content-encoding", "gzip".parse().unwrap());
        assert_eq!(body_is_readable(&h, 10), Err(SkipReason::Compressed));
        h.remove("content-encoding");
        // What hop_by_hop::strip leaves of `Transfer-Encoding: gzip, chunked`.
        h.insert("transfer-encoding", "gzip".parse().unwrap());
        assert_eq!(body_is_readable(&h, 10), Err(SkipReason::Compressed));
        h.remove("transfer-encoding");
        h.insert("content-type", "application/json".parse().unwrap());
        assert_eq!(body_is_readable(&h, 10), Err(SkipReason::NotForm));
    }

    #[test]
    fn host_classes() {
        assert!(is_generic_login_host("Login.Salesforce.com"));
        assert!(is_my_domain_host("acme.my.salesforce.com"));
        assert!(is_my_domain_host("acme--qa.sandbox.my.salesforce.com"));
        assert!(is_my_domain_host("acme.my.salesforce.mil"));
        assert!(!is_my_domain_host("my.salesforce.com"));
        assert!(!is_my_domain_host("login.salesforce.com"));
        assert!(is_sandbox_host("acme--qa.sandbox.my.salesforce.com"));
        assert!(is_sandbox_host("acme--qa.my.salesforce.com"));
        assert!(is_sandbox_host("test.salesforce.com"));
        assert!(!is_sandbox_host("acme.my.salesforce.com"));
    }
}
