//! What happens to one token request, decided without any I/O: [`check_headers`] before the
//! body is read, then [`plan`] once it has been (or could not be, in full). The executor in
//! [`crate::token`] only carries the plan out.
//!
//! Every way a token request can go is one [`Plan`]: forward the original with an action and
//! a reason (`passed`, `observed`, `unmapped`, `skipped` and why), or rewrite it (which flow,
//! to which host, the new body, whether to fall back, how the password is checked). The
//! actions that depend on the upstream's answer (`upgraded`, `fallback`, `failed`) follow from
//! a `Rewrite`; so does what the password check decides ([`gate`]: the check itself is the
//! executor's, it may cost Argon2).

use crate::config::{Config, Flow, VerifyPassword};
use crate::fault::Faults;
use crate::oauth::jwt::{Claims, JwtKey};
use crate::oauth::{self, rewrite, SkipReason, TokenParams};
use crate::password::Password;
use crate::policy::{self, Decision, Upgrade, Verification};
use crate::telemetry::events::{within_bound, Action};
use crate::verifiers::Checked;
use http::header::AUTHORIZATION;
use http::HeaderMap;
use std::collections::BTreeMap;

/// The token request as the planner sees it.
pub struct TokenRequest<'a> {
    /// The intercepted host it was sent to.
    pub host: &'a str,
    pub query: Option<&'a str>,
    /// Its header fields (hop-by-hop fields already removed).
    pub headers: &'a HeaderMap,
    pub body: BodyRead<'a>,
}

/// The body, or why it could not be read whole (over `max_token_body`, past
/// `token_body_timeout`, no room in `token_body_budget`).
pub enum BodyRead<'a> {
    Complete(&'a [u8]),
    Unread(SkipReason),
}

/// Forward the original request unchanged, and record this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub action: Action,
    pub reason: Option<&'static str>,
    /// For the log: why a rewrite that was decided could not be built.
    pub problem: Option<String>,
}

impl Forward {
    fn new(action: Action, reason: Option<&'static str>) -> Forward {
        Forward {
            action,
            reason,
            problem: None,
        }
    }

    pub fn skipped(reason: SkipReason) -> Forward {
        Forward::new(Action::Skipped, Some(reason.as_str()))
    }
}

/// Send a rewritten grant instead of the password grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    pub flow: Flow,
    /// The host the upgraded request goes to (a My Domain, or the original host).
    pub target_host: String,
    /// On failure, send the original request instead.
    pub fallback: bool,
    /// The new form body (it holds a secret: never logged), or what signs it when it is sent
    /// ([`Rewrite::upstream_body`]).
    pub body: UpstreamBody,
    /// How the password is checked before the rewrite goes out ([`gate`]).
    pub verify: Verification,
    /// What shapes the upstream's answer besides the target host and flow, for the token
    /// cache's key: the client-credentials body (client id, secret, every other parameter), or
    /// for JWT bearer the issuer, the subject and `format` (the assertion changes every time).
    /// It holds a secret: never logged.
    pub shape: String,
    /// The `[[credentials]]` entry that decided it (`None`: upgraded in place).
    pub credential: Option<[u8; 32]>,
}

/// The upgraded request's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamBody {
    /// Client credentials: the body itself.
    Ready(String),
    /// JWT bearer: the assertion is signed when the request is sent, so a login the token
    /// cache answers never pays for an RSA signature.
    Jwt(JwtToSign),
}

/// What a JWT bearer assertion is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtToSign {
    key: JwtKey,
    client_id: String,
    username: String,
    audience: String,
    format: Option<String>,
}

impl JwtToSign {
    pub fn new(
        key: JwtKey,
        client_id: &str,
        username: &str,
        audience: &str,
        format: Option<&str>,
    ) -> JwtToSign {
        JwtToSign {
            key,
            client_id: client_id.to_owned(),
            username: username.to_owned(),
            audience: audience.to_owned(),
            format: format.map(str::to_owned),
        }
    }
}

impl UpstreamBody {
    /// The body to send, at `now` (seconds since the Unix epoch): for JWT bearer, with an
    /// assertion signed now. `Err` (never a panic) when it cannot be made.
    pub fn make(&self, now: u64) -> Result<String, String> {
        match self {
            UpstreamBody::Ready(body) => Ok(body.clone()),
            UpstreamBody::Jwt(jwt) => guarded(|| {
                let claims = Claims::new(&jwt.client_id, &jwt.username, &jwt.audience, now);
                let assertion = jwt.key.sign(&claims)?;
                Ok(rewrite::jwt_bearer_body_with_format(
                    jwt.format.as_deref(),
                    &assertion,
                ))
            })
            .unwrap_or_else(|| Err("signing the assertion panicked".into())),
        }
    }
}

impl Rewrite {
    /// The body to send upstream, at `now` (seconds since the Unix epoch): for JWT bearer,
    /// with an assertion signed now. `Err` (never a panic) when it cannot be made.
    pub fn upstream_body(&self, now: u64) -> Result<String, String> {
        self.body.make(now)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Forward(Forward),
    Rewrite(Rewrite),
}

/// The facts of the login (empty when the body could not be parsed): the non-secret ones for
/// the event, each within its bound ([`oauth::MAX_USERNAME_CHARS`] and the others; one over it
/// is left out and its length put in `oversized` instead), and the password for its
/// verifier, which is never recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Login {
    pub grant: Option<String>,
    /// From the body, else from `Authorization: Basic`.
    pub client_id: Option<String>,
    /// Only for password grants.
    pub username: Option<String>,
    /// Field name → the length, in characters, of a value left out for being over its bound.
    pub oversized: BTreeMap<&'static str, u64>,
    /// A password grant's password (redacted in `Debug`, wiped on drop).
    pub password: Option<Password>,
}

impl Login {
    /// `value` if within `max_chars`; else `None`, with its length noted under `field`.
    fn bounded(
        &mut self,
        field: &'static str,
        value: Option<&str>,
        max_chars: usize,
    ) -> Option<String> {
        match within_bound(value?, max_chars) {
            Ok(value) => Some(value.to_owned()),
            Err(len) => {
                self.oversized.insert(field, len);
                None
            }
        }
    }
}

/// Can the body be read as a form at all? `Some` (forward, skipped) when the headers already
/// say no: then nothing is buffered.
pub fn check_headers(headers: &HeaderMap, config: &Config) -> Option<Forward> {
    oauth::body_is_readable(headers, config.proxy.max_token_body)
        .err()
        .map(Forward::skipped)
}

/// Decide what happens to a token request whose body has been read. `now` (Unix seconds) is
/// the JWT's issue time. A panic while deciding or rewriting (a bug) becomes
/// `skipped`/`internal`: do no harm, the original goes through.
pub fn plan(req: &TokenRequest, config: &Config, faults: &Faults) -> (Plan, Login) {
    let body = match req.body {
        BodyRead::Complete(body) => body,
        BodyRead::Unread(reason) => {
            return (Plan::Forward(Forward::skipped(reason)), Login::default())
        }
    };
    let params = match TokenParams::parse(req.query, body) {
        Ok(params) => params,
        Err(reason) => return (Plan::Forward(Forward::skipped(reason)), Login::default()),
    };
    // Client authentication: `client_id` in the form, or `Authorization: Basic` (RFC 6749
    // §2.3.1). Only the client id is read from the header; it goes on as sent.
    let basic = basic_auth(req.headers);
    let body_client_id = params.get("client_id");
    let basic_client_id = basic.as_ref().ok().and_then(Option::as_deref);
    let mut login = Login::default();
    login.grant = login.bounded("grant", params.grant_type(), oauth::MAX_GRANT_TYPE_CHARS);
    login.client_id = login.bounded(
        "client_id",
        body_client_id.or(basic_client_id),
        oauth::MAX_CLIENT_ID_CHARS,
    );
    if params.grant_type() != Some("password") {
        return (Plan::Forward(Forward::new(Action::Passed, None)), login);
    }
    login.username = login.bounded(
        "username",
        params.get("username"),
        oauth::MAX_USERNAME_CHARS,
    );
    login.password = params.get("password").map(Password::new);
    // A login whose app or user cannot be told for sure is not upgraded (nor, for an
    // over-long value, made a credential set of the report).
    let skip = if basic.is_err() {
        Some(SkipReason::BadBasicAuth)
    } else if matches!((body_client_id, basic_client_id), (Some(a), Some(b)) if a != b) {
        Some(SkipReason::ClientIdMismatch)
    } else if login.oversized.contains_key("username") {
        Some(SkipReason::UsernameTooLong)
    } else if login.oversized.contains_key("client_id") {
        Some(SkipReason::ClientIdTooLong)
    } else {
        None
    };
    if let Some(reason) = skip {
        return (Plan::Forward(Forward::skipped(reason)), login);
    }
    let grant = policy::PasswordGrant {
        client_id: login.client_id.as_deref().unwrap_or(""),
        username: login.username.as_deref().unwrap_or(""),
        has_client_secret: params.get("client_secret").is_some() || basic_client_id.is_some(),
    };
    let decision = guarded(|| {
        faults.inject_for("policy", req.host);
        policy::decide(config, req.host, &grant)
    })
    .unwrap_or(Decision::Skip(SkipReason::Internal));
    let upgrade = match decision {
        Decision::Upgrade(upgrade) => upgrade,
        Decision::Observe { reason } => {
            return (Plan::Forward(Forward::new(Action::Observed, reason)), login)
        }
        Decision::Unmapped => return (Plan::Forward(Forward::new(Action::Unmapped, None)), login),
        Decision::Skip(reason) => return (Plan::Forward(Forward::skipped(reason)), login),
    };
    let rewritten = guarded(|| {
        faults.inject_for("rewrite", req.host);
        rewritten_body(&upgrade, &params, &grant)
    })
    .unwrap_or_else(|| Err("the rewrite panicked".into()));
    let plan = match rewritten {
        Ok(body) => Plan::Rewrite(Rewrite {
            shape: response_shape(&upgrade, &params, &grant, &body),
            flow: upgrade.flow,
            target_host: upgrade.target_host,
            fallback: upgrade.fallback,
            body,
            verify: upgrade.verify,
            credential: upgrade.credential,
        }),
        Err(problem) => Plan::Forward(Forward {
            problem: Some(problem),
            ..Forward::skipped(SkipReason::Internal)
        }),
    };
    (plan, login)
}

/// Whether a decided upgrade goes ahead once its password was checked as its entry's
/// `verify_password` says: `Some` (forward the original, `skipped`) when the password does not
/// match the verifier, was not checked for too many wrong ones lately, or the set has no
/// verifier where one is `required`.
pub fn gate(mode: VerifyPassword, checked: Checked) -> Option<Forward> {
    match checked {
        Checked::Verified | Checked::Off => None,
        Checked::Mismatch => Some(Forward::skipped(SkipReason::PasswordMismatch)),
        Checked::Throttled => Some(Forward::skipped(SkipReason::PasswordThrottled)),
        Checked::NoVerifier => match mode {
            VerifyPassword::Required => Some(Forward::skipped(SkipReason::NoVerifier)),
            VerifyPassword::IfKnown | VerifyPassword::Off => None,
        },
    }
}

/// Does a password login recorded with `action`, once Salesforce accepted it, teach its set's
/// verifier? Only one grantshift forwarded as it came: observed (also for `percent` and
/// `no_rule`), unmapped, or the original a fallback replayed. Never a rewritten login, nor one
/// skipped (for its password or anything else).
pub fn teaches_verifier(action: Action) -> bool {
    matches!(
        action,
        Action::Observed | Action::Unmapped | Action::Fallback
    )
}

/// The client id of the request's `Authorization: Basic` field: `Ok(None)` with no such
/// field (or another scheme), `Err` when it cannot be read or there are several
/// `Authorization` fields (which one Salesforce would use is not ours to guess).
fn basic_auth(headers: &HeaderMap) -> Result<Option<String>, ()> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(());
    }
    oauth::basic_client_id(first.as_bytes()).map_err(|_| ())
}

/// `f()`, or `None` if it panicked.
fn guarded<T>(f: impl FnOnce() -> T) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok()
}

/// The new body for the upgraded grant (for JWT bearer, what signs it when it is sent).
fn rewritten_body(
    upgrade: &Upgrade,
    params: &TokenParams,
    grant: &policy::PasswordGrant<'_>,
) -> Result<UpstreamBody, String> {
    match upgrade.flow {
        Flow::ClientCredentials => Ok(UpstreamBody::Ready(rewrite::client_credentials_body(
            params,
        ))),
        Flow::JwtBearer => {
            let (key, audience) = upgrade.jwt.as_ref().ok_or("no JWT key")?;
            // The issuer is the app, wherever the client named it (body or Basic).
            Ok(UpstreamBody::Jwt(JwtToSign::new(
                key.clone(),
                grant.client_id,
                grant.username,
                audience,
                params.get("format"),
            )))
        }
    }
}

/// [`Rewrite::shape`]: what of the request shapes the answer, without what changes on every
/// login of the same caller.
fn response_shape(
    upgrade: &Upgrade,
    params: &TokenParams,
    grant: &policy::PasswordGrant<'_>,
    body: &UpstreamBody,
) -> String {
    match (upgrade.flow, body) {
        (Flow::ClientCredentials, UpstreamBody::Ready(body)) => body.to_owned(),
        // A client-credentials rewrite always has a ready body; the shape of anything else
        // (a JWT bearer rewrite) is its issuer, subject and format.
        _ => serde_urlencoded::to_string([
            ("iss", grant.client_id),
            ("sub", &grant.username.to_lowercase()),
            ("format", params.get("format").unwrap_or("")),
        ])
        .expect("string pairs always encode"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const PW: &str =
        "grant_type=password&client_id=app&client_secret=s3cr3t&username=Int%40Acme.com&password=pw";
    const ACME: &str = "acme.my.salesforce.com";
    const NOW: u64 = 1_700_000_000;
    const LOGIN: &str = "login.salesforce.com";

    fn config(text: &str) -> Config {
        Config::from_toml_str(text, Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    fn mapped(extra: &str) -> Config {
        config(&format!(
            "{extra}\n[[credentials]]\nusername = \"int@acme.com\"\nmy_domain = \"{ACME}\"\n"
        ))
    }

    fn plan_for(config: &Config, host: &str, body: &str, headers: &HeaderMap) -> (Plan, Login) {
        let req = TokenRequest {
            host,
            query: None,
            headers,
            body: BodyRead::Complete(body.as_bytes()),
        };
        plan(&req, config, &Faults::default())
    }

    fn forward_of(config: &Config, host: &str, body: &str) -> Forward {
        match plan_for(config, host, body, &HeaderMap::new()).0 {
            Plan::Forward(f) => f,
            other => panic!("expected a forward, got {other:?}"),
        }
    }

    fn forwarded(action: Action, reason: Option<&'static str>) -> Forward {
        Forward {
            action,
            reason,
            problem: None,
        }
    }

    #[test]
    fn headers_that_rule_out_a_form_skip_before_reading() {
        let c = config("[proxy]\nmax_token_body = 100\n");
        let with = |name: &'static str, value: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(name, http::HeaderValue::from_static(value));
            check_headers(&h, &c)
        };
        assert_eq!(
            with("content-encoding", "gzip"),
            Some(forwarded(Action::Skipped, Some("compressed")))
        );
        assert_eq!(
            with("content-type", "application/json"),
            Some(forwarded(Action::Skipped, Some("not_form")))
        );
        assert_eq!(
            with("content-length", "101"),
            Some(forwarded(Action::Skipped, Some("body_too_large")))
        );
        assert_eq!(
            with(
                "content-type",
                "application/x-www-form-urlencoded; charset=UTF-8"
            ),
            None
        );
        assert_eq!(check_headers(&HeaderMap::new(), &c), None);
    }

    #[test]
    fn a_body_over_the_limit_is_skipped_with_no_login_facts() {
        let req = TokenRequest {
            host: ACME,
            query: None,
            headers: &HeaderMap::new(),
            body: BodyRead::Unread(SkipReason::TooLarge),
        };
        let (plan, login) = plan(&req, &config(""), &Faults::default());
        assert_eq!(
            plan,
            Plan::Forward(forwarded(Action::Skipped, Some("body_too_large")))
        );
        assert_eq!(login, Login::default());
    }

    #[test]
    fn unparseable_forms_are_skipped_with_their_reason() {
        let c = config("");
        for (body, reason) in [
            ("grant_type=password&password=%zz", "bad_encoding"),
            (
                "grant_type=password&grant_type=refresh_token",
                "duplicate_grant_type",
            ),
            (
                "grant_type=password&username=a&username=b",
                "duplicate_parameter",
            ),
        ] {
            assert_eq!(
                forward_of(&c, ACME, body),
                forwarded(Action::Skipped, Some(reason)),
                "{body}"
            );
        }
    }

    #[test]
    fn other_grants_pass_with_their_facts_and_no_username() {
        let (plan, login) = plan_for(
            &config(""),
            ACME,
            "grant_type=refresh_token&client_id=app&refresh_token=r",
            &HeaderMap::new(),
        );
        assert_eq!(plan, Plan::Forward(forwarded(Action::Passed, None)));
        assert_eq!(login.grant.as_deref(), Some("refresh_token"));
        assert_eq!(login.client_id.as_deref(), Some("app"));
        assert_eq!(login.username, None);
    }

    #[test]
    fn observe_rules_no_rule_and_percent_are_observed_with_their_reason() {
        let observe = config("[[rollout]]\nhost = \"*\"\nmode = \"observe\"\n");
        assert_eq!(
            forward_of(&observe, ACME, PW),
            forwarded(Action::Observed, None)
        );
        let elsewhere =
            config("[[rollout]]\nhost = \"other.my.salesforce.com\"\nmode = \"upgrade\"\n");
        assert_eq!(
            forward_of(&elsewhere, ACME, PW),
            forwarded(Action::Observed, Some("no_rule"))
        );
        let none = config("[[rollout]]\nhost = \"*\"\nmode = \"upgrade\"\npercent = 0\n");
        assert_eq!(
            forward_of(&none, ACME, PW),
            forwarded(Action::Observed, Some("percent"))
        );
    }

    #[test]
    fn a_generic_host_without_a_my_domain_is_unmapped() {
        assert_eq!(
            forward_of(&config(""), LOGIN, PW),
            forwarded(Action::Unmapped, None)
        );
    }

    #[test]
    fn client_credentials_needs_a_secret_in_the_body_or_basic_auth() {
        let no_secret = "grant_type=password&client_id=app&username=int%40acme.com&password=pw";
        assert_eq!(
            forward_of(&config(""), ACME, no_secret),
            forwarded(Action::Skipped, Some("no_client_secret"))
        );
        let mut basic = HeaderMap::new();
        basic.insert(
            AUTHORIZATION,
            http::HeaderValue::from_static("Basic YXBwOnM="),
        );
        let (plan, _) = plan_for(&config(""), ACME, no_secret, &basic);
        assert!(matches!(plan, Plan::Rewrite(_)), "{plan:?}");
    }

    #[test]
    fn a_mapped_password_grant_is_rewritten_to_client_credentials_at_its_my_domain() {
        let (plan, login) = plan_for(&mapped(""), LOGIN, PW, &HeaderMap::new());
        let Plan::Rewrite(r) = plan else {
            panic!("expected a rewrite, got {plan:?}")
        };
        assert_eq!(r.flow, Flow::ClientCredentials);
        assert_eq!(r.target_host, ACME);
        assert!(r.fallback);
        let body = r.upstream_body(NOW).unwrap();
        let form: Vec<(String, String)> = serde_urlencoded::from_str(&body).unwrap();
        assert!(form.contains(&("grant_type".into(), "client_credentials".into())));
        assert!(!form.iter().any(|(k, _)| k == "password" || k == "username"));
        assert_eq!(login.grant.as_deref(), Some("password"));
        assert_eq!(login.username.as_deref(), Some("Int@Acme.com"));
    }

    #[test]
    fn the_password_is_kept_for_its_verifier_but_never_printed() {
        let (plan, login) = plan_for(&mapped(""), LOGIN, PW, &HeaderMap::new());
        assert_eq!(login.password, Some(Password::new("pw")));
        let Plan::Rewrite(r) = &plan else {
            panic!("expected a rewrite, got {plan:?}")
        };
        assert_eq!(r.verify.mode, VerifyPassword::IfKnown);
        let printed = format!("{plan:?}{login:?}");
        assert!(!printed.contains("=pw"), "{printed}");
        assert!(!printed.contains("\"pw\""), "{printed}");
        let (_, other) = plan_for(
            &config(""),
            ACME,
            "grant_type=refresh_token&refresh_token=r&password=x",
            &HeaderMap::new(),
        );
        assert_eq!(other.password, None, "only a password grant's");
    }

    #[test]
    fn the_gate_lets_a_verified_password_through_and_skips_the_rest() {
        use Checked::*;
        use VerifyPassword::*;
        let skipped = |reason| Some(forwarded(Action::Skipped, Some(reason)));
        for mode in [Required, IfKnown] {
            assert_eq!(gate(mode, Verified), None);
            assert_eq!(gate(mode, Mismatch), skipped("password_mismatch"));
            assert_eq!(gate(mode, Throttled), skipped("password_throttled"));
        }
        assert_eq!(gate(Required, NoVerifier), skipped("no_verifier"));
        assert_eq!(gate(IfKnown, NoVerifier), None);
        assert_eq!(gate(VerifyPassword::Off, Checked::Off), None);
    }

    #[test]
    fn only_logins_forwarded_as_they_came_teach_a_verifier() {
        for action in [Action::Observed, Action::Unmapped, Action::Fallback] {
            assert!(teaches_verifier(action), "{action:?}");
        }
        for action in [
            Action::Upgraded,
            Action::Failed,
            Action::Skipped,
            Action::Passed,
        ] {
            assert!(!teaches_verifier(action), "{action:?}");
        }
    }

    #[test]
    fn a_rule_without_fallback_says_so() {
        let c = mapped("[[rollout]]\nhost = \"*\"\nmode = \"upgrade\"\nfallback = false\n");
        let (plan, _) = plan_for(&c, LOGIN, PW, &HeaderMap::new());
        assert!(
            matches!(
                plan,
                Plan::Rewrite(Rewrite {
                    fallback: false,
                    ..
                })
            ),
            "{plan:?}"
        );
    }

    #[test]
    fn jwt_bearer_signs_an_assertion_for_the_user_and_needs_a_client_id() {
        let c = config(&format!(
            "[[credentials]]\nusername = \"int@acme.com\"\nflow = \"jwt_bearer\"\nmy_domain = \"{ACME}\"\njwt_private_key = \"tests/fixtures/jwt-app.pkcs8.pem\"\n"
        ));
        let (plan, _) = plan_for(&c, LOGIN, PW, &HeaderMap::new());
        let Plan::Rewrite(r) = plan else {
            panic!("expected a rewrite, got {plan:?}")
        };
        assert_eq!(r.flow, Flow::JwtBearer);
        // Nothing is signed until the body is made: a login the token cache answers never is.
        assert!(matches!(r.body, UpstreamBody::Jwt(_)), "{:?}", r.body);
        assert_eq!(r.shape, "iss=app&sub=int%40acme.com&format=");
        let body = r.upstream_body(NOW).unwrap();
        let form: Vec<(String, String)> = serde_urlencoded::from_str(&body).unwrap();
        assert!(form.contains(&(
            "grant_type".into(),
            "urn:ietf:params:oauth:grant-type:jwt-bearer".into()
        )));
        // Signed at the time it is made.
        let assertion = &form.iter().find(|(k, _)| k == "assertion").unwrap().1;
        let claims = assertion.split('.').nth(1).unwrap();
        use base64::Engine as _;
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(claims)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            claims["exp"],
            NOW + crate::oauth::jwt::ASSERTION_LIFETIME_SECS
        );
        assert_ne!(
            r.upstream_body(NOW + 1).unwrap(),
            body,
            "a new assertion each time"
        );
        assert!(form
            .iter()
            .any(|(k, v)| k == "assertion" && v.split('.').count() == 3));
        let no_app = "grant_type=password&username=int%40acme.com&password=pw";
        assert_eq!(
            forward_of(&c, LOGIN, no_app),
            forwarded(Action::Skipped, Some("missing_client_id"))
        );
    }

    fn with_basic(credentials: &str) -> HeaderMap {
        use base64::Engine as _;
        let value = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        );
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, value.parse().unwrap());
        h
    }

    const NO_APP_IN_BODY: &str = "grant_type=password&username=int%40acme.com&password=pw";

    #[test]
    fn over_long_usernames_and_client_ids_are_skipped_and_left_out_of_the_facts() {
        let long_user = format!("{}%40acme.com", "u".repeat(30_000));
        let body = format!(
            "grant_type=password&client_id=app&client_secret=s&username={long_user}&password=pw"
        );
        let (plan, login) = plan_for(&mapped(""), LOGIN, &body, &HeaderMap::new());
        assert_eq!(
            plan,
            Plan::Forward(forwarded(Action::Skipped, Some("username_too_long")))
        );
        assert_eq!(login.username, None);
        assert_eq!(login.client_id.as_deref(), Some("app"));
        assert_eq!(login.oversized.get("username"), Some(&30_009));

        // 80 characters (here 160 bytes) is a username Salesforce allows.
        let at_bound = format!("{}%40x", "%C3%A9".repeat(78));
        let body = format!(
            "grant_type=password&client_id=app&client_secret=s&username={at_bound}&password=pw"
        );
        let (plan, login) = plan_for(&config(""), ACME, &body, &HeaderMap::new());
        assert!(matches!(plan, Plan::Rewrite(_)), "{plan:?}");
        assert_eq!(login.username.map(|u| u.chars().count()), Some(80));

        let long_app = "k".repeat(256);
        let body = format!("grant_type=password&client_id={long_app}&client_secret=s&username=int%40acme.com&password=pw");
        let (plan, login) = plan_for(&mapped(""), LOGIN, &body, &HeaderMap::new());
        assert_eq!(
            plan,
            Plan::Forward(forwarded(Action::Skipped, Some("client_id_too_long")))
        );
        assert_eq!(login.client_id, None);
        assert_eq!(login.oversized.get("client_id"), Some(&256));
    }

    #[test]
    fn other_grants_pass_with_over_long_values_left_out() {
        let body = format!(
            "grant_type={}&client_id={}&refresh_token=r",
            "g".repeat(129),
            "k".repeat(300)
        );
        let (plan, login) = plan_for(&config(""), ACME, &body, &HeaderMap::new());
        assert_eq!(plan, Plan::Forward(forwarded(Action::Passed, None)));
        assert_eq!((login.grant, login.client_id), (None, None));
        assert_eq!(
            login.oversized,
            BTreeMap::from([("client_id", 300), ("grant", 129)])
        );
    }

    #[test]
    fn the_client_id_comes_from_basic_auth_when_the_body_has_none() {
        let (plan, login) = plan_for(
            &mapped(""),
            LOGIN,
            NO_APP_IN_BODY,
            &with_basic("app:s3cr3t"),
        );
        assert!(matches!(plan, Plan::Rewrite(_)), "{plan:?}");
        assert_eq!(login.client_id.as_deref(), Some("app"));
        assert!(!format!("{plan:?}{login:?}").contains("s3cr3t"));
        // Other grants too (for the event).
        let (_, login) = plan_for(
            &config(""),
            ACME,
            "grant_type=refresh_token&refresh_token=r",
            &with_basic("app%2B1:s"),
        );
        assert_eq!(login.client_id.as_deref(), Some("app+1"));
        // The same id in both places is one app.
        let body = format!("{NO_APP_IN_BODY}&client_id=app");
        let (plan, _) = plan_for(&mapped(""), LOGIN, &body, &with_basic("app:s"));
        assert!(matches!(plan, Plan::Rewrite(_)), "{plan:?}");
    }

    #[test]
    fn a_basic_client_id_selects_the_credential_and_the_bucket() {
        // An entry for app "app" only: a Basic-only login from "app" is that entry's.
        let c = config(&format!(
            "[[credentials]]\nusername = \"int@acme.com\"\nmy_domain = \"{ACME}\"\nclient_id = \"app\"\n"
        ));
        let (plan, _) = plan_for(&c, LOGIN, NO_APP_IN_BODY, &with_basic("app:s"));
        assert!(
            matches!(&plan, Plan::Rewrite(r) if r.target_host == ACME),
            "{plan:?}"
        );
        let (plan, _) = plan_for(&c, LOGIN, NO_APP_IN_BODY, &with_basic("other:s"));
        assert_eq!(plan, Plan::Forward(forwarded(Action::Unmapped, None)));
        // The rollout bucket is the set's: (client id from Basic, username).
        let bucket = crate::policy::bucket("app", "int@acme.com");
        let at = |percent: u8| {
            config(&format!(
                "[[rollout]]\nhost = \"*\"\nmode = \"upgrade\"\npercent = {percent}\n"
            ))
        };
        let (plan, _) = plan_for(&at(bucket + 1), ACME, NO_APP_IN_BODY, &with_basic("app:s"));
        assert!(matches!(plan, Plan::Rewrite(_)), "{plan:?}");
        let (plan, _) = plan_for(&at(bucket), ACME, NO_APP_IN_BODY, &with_basic("app:s"));
        assert_eq!(
            plan,
            Plan::Forward(forwarded(Action::Observed, Some("percent")))
        );
    }

    #[test]
    fn jwt_bearer_takes_its_issuer_from_basic_auth() {
        let c = config(&format!(
            "[[credentials]]\nusername = \"int@acme.com\"\nflow = \"jwt_bearer\"\nmy_domain = \"{ACME}\"\njwt_private_key = \"tests/fixtures/jwt-app.pkcs8.pem\"\n"
        ));
        let (plan, _) = plan_for(&c, LOGIN, NO_APP_IN_BODY, &with_basic("3MVGapp:s"));
        let Plan::Rewrite(r) = plan else {
            panic!("expected a rewrite, got {plan:?}")
        };
        let body = r.upstream_body(NOW).unwrap();
        let form: Vec<(String, String)> = serde_urlencoded::from_str(&body).unwrap();
        let assertion = &form.iter().find(|(k, _)| k == "assertion").unwrap().1;
        use base64::Engine as _;
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(assertion.split('.').nth(1).unwrap())
            .unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&claims).unwrap();
        assert_eq!(claims["iss"], "3MVGapp");
    }

    #[test]
    fn disagreeing_or_unreadable_basic_auth_is_skipped() {
        let body = format!("{NO_APP_IN_BODY}&client_id=app");
        let (plan, login) = plan_for(&mapped(""), LOGIN, &body, &with_basic("other:s"));
        assert_eq!(
            plan,
            Plan::Forward(forwarded(Action::Skipped, Some("client_id_mismatch")))
        );
        assert_eq!(
            login.client_id.as_deref(),
            Some("app"),
            "the form's, as sent"
        );
        for value in ["Basic !!!", "Basic", "basic bm8tY29sb24="] {
            let mut h = HeaderMap::new();
            h.insert(AUTHORIZATION, http::HeaderValue::from_static(value));
            assert_eq!(
                forward_with(&mapped(""), LOGIN, NO_APP_IN_BODY, &h),
                forwarded(Action::Skipped, Some("bad_basic_auth")),
                "{value}"
            );
        }
        let mut two = with_basic("app:s");
        two.append(AUTHORIZATION, "Basic YXBwOnM=".parse().unwrap());
        assert_eq!(
            forward_with(&mapped(""), LOGIN, NO_APP_IN_BODY, &two),
            forwarded(Action::Skipped, Some("bad_basic_auth"))
        );
        // Another scheme is no client authentication: nothing to read, nothing to skip for.
        let mut bearer = HeaderMap::new();
        bearer.insert(AUTHORIZATION, http::HeaderValue::from_static("Bearer x"));
        assert_eq!(
            forward_with(&config(""), ACME, NO_APP_IN_BODY, &bearer),
            forwarded(Action::Skipped, Some("no_client_secret"))
        );
    }

    fn forward_with(config: &Config, host: &str, body: &str, headers: &HeaderMap) -> Forward {
        match plan_for(config, host, body, headers).0 {
            Plan::Forward(f) => f,
            other => panic!("expected a forward, got {other:?}"),
        }
    }

    #[cfg(feature = "fault-injection")]
    #[test]
    fn a_panic_while_deciding_or_rewriting_is_skipped_internal() {
        for point in ["policy", "rewrite"] {
            let faults = Faults::default();
            faults.arm(point, ACME);
            let req = TokenRequest {
                host: ACME,
                query: None,
                headers: &HeaderMap::new(),
                body: BodyRead::Complete(PW.as_bytes()),
            };
            let (plan, login) = plan(&req, &config(""), &faults);
            let Plan::Forward(f) = plan else {
                panic!("{point}: expected a forward, got {plan:?}")
            };
            assert_eq!(
                (f.action, f.reason),
                (Action::Skipped, Some("internal")),
                "{point}"
            );
            assert_eq!(login.username.as_deref(), Some("Int@Acme.com"), "{point}");
        }
    }
}
