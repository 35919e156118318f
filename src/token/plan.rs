//! What happens to one token request, decided without any I/O: [`check_headers`] before the
//! body is read, then [`plan`] once it has been (or could not be, in full). The executor in
//! [`crate::token`] only carries the plan out.
//!
//! Every way a token request can go is one [`Plan`]: forward the original with an action and
//! a reason (`passed`, `observed`, `unmapped`, `skipped` and why), or rewrite it (which flow,
//! to which host, the new body, and whether to fall back). The actions that depend on the
//! upstream's answer (`upgraded`, `fallback`, `failed`) follow from a `Rewrite`.

use crate::config::{Config, Flow};
use crate::fault::Faults;
use crate::oauth::jwt::Claims;
use crate::oauth::{self, rewrite, SkipReason, TokenParams};
use crate::policy::{self, Decision, Upgrade};
use crate::telemetry::events::Action;
use http::header::AUTHORIZATION;
use http::HeaderMap;

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

    fn skipped(reason: SkipReason) -> Forward {
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
    /// The new form body (it holds a secret: never logged).
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Forward(Forward),
    Rewrite(Rewrite),
}

/// The non-secret facts of the login, for the event (empty when the body could not be parsed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Login {
    pub grant: Option<String>,
    pub client_id: Option<String>,
    /// Only for password grants.
    pub username: Option<String>,
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
pub fn plan(req: &TokenRequest, config: &Config, now: u64, faults: &Faults) -> (Plan, Login) {
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
    let mut login = Login {
        grant: params.grant_type().map(str::to_owned),
        client_id: params.get("client_id").map(str::to_owned),
        username: None,
    };
    if params.grant_type() != Some("password") {
        return (Plan::Forward(Forward::new(Action::Passed, None)), login);
    }
    login.username = params.get("username").map(str::to_owned);

    let has_basic_auth = req
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.len() > 6 && v[..6].eq_ignore_ascii_case("basic "));
    let decision = guarded(|| {
        faults.inject_for("policy", req.host);
        policy::decide(config, req.host, &params, has_basic_auth)
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
        rewritten_body(&upgrade, &params, now)
    })
    .unwrap_or_else(|| Err("the rewrite panicked".into()));
    let plan = match rewritten {
        Ok(body) => Plan::Rewrite(Rewrite {
            flow: upgrade.flow,
            target_host: upgrade.target_host,
            fallback: upgrade.fallback,
            body,
        }),
        Err(problem) => Plan::Forward(Forward {
            problem: Some(problem),
            ..Forward::skipped(SkipReason::Internal)
        }),
    };
    (plan, login)
}

/// `f()`, or `None` if it panicked.
fn guarded<T>(f: impl FnOnce() -> T) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok()
}

/// The new body for the upgraded grant.
fn rewritten_body(upgrade: &Upgrade, params: &TokenParams, now: u64) -> Result<String, String> {
    match upgrade.flow {
        Flow::ClientCredentials => Ok(rewrite::client_credentials_body(params)),
        Flow::JwtBearer => {
            let (key, audience) = upgrade.jwt.as_ref().ok_or("no JWT key")?;
            let claims = Claims::new(
                params.get("client_id").unwrap_or(""),
                params.get("username").unwrap_or(""),
                audience,
                now,
            );
            let assertion = key.sign(&claims)?;
            Ok(rewrite::jwt_bearer_body(params, &assertion))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const PW: &str =
        "grant_type=password&client_id=app&client_secret=s3cr3t&username=Int%40Acme.com&password=pw";
    const ACME: &str = "acme.my.salesforce.com";
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
        plan(&req, config, 1_700_000_000, &Faults::default())
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
        let (plan, login) = plan(&req, &config(""), 0, &Faults::default());
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
        let form: Vec<(String, String)> = serde_urlencoded::from_str(&r.body).unwrap();
        assert!(form.contains(&("grant_type".into(), "client_credentials".into())));
        assert!(!form.iter().any(|(k, _)| k == "password" || k == "username"));
        assert_eq!(login.grant.as_deref(), Some("password"));
        assert_eq!(login.username.as_deref(), Some("Int@Acme.com"));
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
        let form: Vec<(String, String)> = serde_urlencoded::from_str(&r.body).unwrap();
        assert!(form.contains(&(
            "grant_type".into(),
            "urn:ietf:params:oauth:grant-type:jwt-bearer".into()
        )));
        assert!(form
            .iter()
            .any(|(k, v)| k == "assertion" && v.split('.').count() == 3));
        let no_app = "grant_type=password&username=int%40acme.com&password=pw";
        assert_eq!(
            forward_of(&c, LOGIN, no_app),
            forwarded(Action::Skipped, Some("missing_client_id"))
        );
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
            let (plan, login) = plan(&req, &config(""), 0, &faults);
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
