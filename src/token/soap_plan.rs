//! What happens to a SOAP `login()` (docs/operating.md, "SOAP login()"), decided without any
//! I/O, as [`super::plan`] decides for an OAuth password grant. A SOAP login names no
//! connected app: the `[[credentials]]` entry for its username does (`client_id` with
//! `client_secret_env` for client credentials, or `jwt_private_key` for JWT bearer). Its
//! password is always checked against the set's verifier (`required`): with no app secret in
//! the request, the password is all that stands for the user.
//!
//! Also pure, for the executor: the token response's facts a `loginResponse` needs
//! ([`TokenFacts`]) and the identity URL's ([`Identity`]).

use super::plan::{Forward, JwtToSign, UpstreamBody};
use crate::config::{Config, Flow, Mode, VerifyPassword};
use crate::oauth::{self, rewrite};
use crate::policy::{self, Verification};
use crate::soap::SoapLogin;
use crate::telemetry::events::Action;
use serde::Deserialize;
use zeroize::Zeroizing;

/// The `grant` of a SOAP login's event.
pub const GRANT: &str = "soap_login";

/// A SOAP login's credential set: no app of its own, so the username alone (the report's,
/// the verifier's and the rollout bucket's client id is `""`).
pub const SET_CLIENT_ID: &str = "";

/// Upgrade the SOAP login: obtain a token for the mapped app, then answer with a
/// `loginResponse` built from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoapRewrite {
    /// The entry's connected app (the event's `client_id`: the Run As identity of a client
    /// credentials login, whose logins per hour are watched).
    pub client_id: String,
    pub flow: Flow,
    /// The My Domain the token request goes to.
    pub target_host: String,
    pub fallback: bool,
    /// The token request's form body (it holds a secret: never logged).
    pub body: UpstreamBody,
    /// What shapes the token response, for the token cache's key (secret).
    pub shape: String,
    /// Always `required`, with the entry's configured verifier if it has one.
    pub verify: Verification,
    /// The entry's fingerprint (a reload that changes it drops its cached tokens).
    pub credential: [u8; 32],
    /// The `loginResponse`'s `sandbox`.
    pub sandbox: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SoapPlan {
    Forward(Forward),
    Rewrite(SoapRewrite),
}

/// Decide for a SOAP `login` sent to `host`.
pub fn plan(host: &str, login: &SoapLogin, config: &Config) -> SoapPlan {
    let forward = |action, reason| {
        SoapPlan::Forward(Forward {
            action,
            reason,
            problem: None,
        })
    };
    let Some(rule) = config.rollout.iter().find(|r| r.matches(host)) else {
        return forward(Action::Observed, Some("no_rule"));
    };
    if rule.mode == Mode::Observe {
        return forward(Action::Observed, None);
    }
    let entry = config
        .credentials
        .iter()
        .find(|c| c.is_for(&login.username) && c.soap_app().is_some());
    let Some((entry, client_id)) = entry.and_then(|c| c.soap_app().map(|id| (c, id))) else {
        return forward(Action::Unmapped, None);
    };
    let target_host = match (&entry.my_domain, entry.flow) {
        (Some(domain), _) => domain.clone(),
        (None, _) if oauth::is_my_domain_host(host) => host.to_owned(),
        // JWT bearer works at the generic login hosts too.
        (None, Flow::JwtBearer) => host.to_owned(),
        (None, Flow::ClientCredentials) => return forward(Action::Unmapped, None),
    };
    if policy::bucket(SET_CLIENT_ID, &login.username) >= rule.percent {
        return forward(Action::Observed, Some("percent"));
    }
    let (body, shape) = match entry.flow {
        Flow::ClientCredentials => {
            let Some(secret) = &entry.client_secret else {
                return forward(Action::Unmapped, None);
            };
            let body = rewrite::encode(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", secret.expose()),
            ]);
            (UpstreamBody::Ready(body.clone()), body)
        }
        Flow::JwtBearer => {
            let Some(key) = entry.jwt_key.clone() else {
                return forward(Action::Unmapped, None);
            };
            let audience = oauth::jwt::audience(entry.jwt_audience.as_deref(), host);
            let shape = rewrite::encode(&[
                ("iss", client_id),
                ("sub", &login.username.to_lowercase()),
                ("aud", audience),
            ]);
            let jwt = JwtToSign::new(key, client_id, &login.username, audience, None);
            (UpstreamBody::Jwt(jwt), shape)
        }
    };
    SoapPlan::Rewrite(SoapRewrite {
        client_id: client_id.to_owned(),
        flow: entry.flow,
        sandbox: oauth::is_sandbox_host(host) || oauth::is_sandbox_host(&target_host),
        target_host,
        fallback: rule.fallback,
        body,
        shape,
        verify: Verification {
            mode: VerifyPassword::Required,
            configured: entry.password_hash.clone(),
        },
        credential: entry.fingerprint,
    })
}

/// What a token response names that a `loginResponse` is built from. No `Debug`: it holds
/// the access token.
pub struct TokenFacts {
    pub access_token: Zeroizing<String>,
    /// The identity URL.
    pub id: String,
    /// The token is a JWT (`token_format: "jwt"`, or its shape says so): the SOAP API refuses
    /// those.
    pub jwt_format: bool,
}

#[derive(Deserialize)]
struct TokenJson<'a> {
    #[serde(borrow)]
    access_token: Option<std::borrow::Cow<'a, str>>,
    id: Option<String>,
    token_format: Option<String>,
}

impl TokenFacts {
    /// From a token response's (decoded) JSON body; `None` without an access token or an
    /// identity URL.
    pub fn from_json(body: &[u8]) -> Option<TokenFacts> {
        let json: TokenJson<'_> = serde_json::from_slice(body).ok()?;
        let access_token =
            Zeroizing::new(json.access_token.filter(|t| !t.is_empty())?.into_owned());
        let id = json.id.filter(|id| !id.is_empty())?;
        let jwt_format = json
            .token_format
            .is_some_and(|f| f.eq_ignore_ascii_case("jwt"))
            || looks_like_jwt(&access_token);
        Some(TokenFacts {
            access_token,
            id,
            jwt_format,
        })
    }
}

/// Three base64url parts, the first a JSON object (`eyJ`): a JWT, not an opaque session id
/// (which looks like `00D…!AQ…`).
fn looks_like_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && parts[0].starts_with("eyJ")
        && parts.iter().all(|p| {
            p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// What the identity URL says that a `loginResponse` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: String,
    pub organization_id: String,
    /// `urls.partner` / `urls.enterprise` and `urls.metadata`, `{version}` set.
    pub server_url: String,
    pub metadata_server_url: String,
}

#[derive(Deserialize)]
struct IdentityJson {
    user_id: Option<String>,
    organization_id: Option<String>,
    urls: Option<std::collections::HashMap<String, String>>,
}

impl Identity {
    /// From the identity URL's JSON, for the request's API and version; `Err` says what is
    /// missing.
    pub fn from_json(
        body: &[u8],
        api: crate::soap::Api,
        version: &str,
    ) -> Result<Identity, &'static str> {
        let json: IdentityJson =
            serde_json::from_slice(body).map_err(|_| "the identity URL's answer is not JSON")?;
        let urls = json.urls.ok_or("the identity URL's answer has no urls")?;
        let url = |name| {
            urls.get(name)
                .filter(|u| u.starts_with("https://"))
                .map(|u| u.replace("{version}", version))
        };
        let server = match api {
            crate::soap::Api::Partner => "partner",
            crate::soap::Api::Enterprise => "enterprise",
        };
        Ok(Identity {
            user_id: json
                .user_id
                .ok_or("the identity URL's answer has no user_id")?,
            organization_id: json
                .organization_id
                .ok_or("the identity URL's answer has no organization_id")?,
            server_url: url(server).ok_or("the identity URL's answer has no SOAP server URL")?,
            metadata_server_url: url("metadata")
                .ok_or("the identity URL's answer has no metadata URL")?,
        })
    }
}

/// Is `url` (an identity URL, a SOAP server URL from it) one grantshift may send the new
/// access token to? `https`, and a Salesforce host (a My Domain or a generic login host) or
/// the token request's own host.
pub fn may_carry_token(url: &http::Uri, token_host: &str) -> bool {
    url.scheme_str() == Some("https")
        && url.host().is_some_and(|h| {
            h.eq_ignore_ascii_case(token_host)
                || oauth::is_my_domain_host(h)
                || oauth::is_generic_login_host(h)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::password::Password;
    use crate::soap::Api;
    use std::collections::HashMap;
    use std::path::Path;

    const ACME: &str = "acme.my.salesforce.com";
    const LOGIN: &str = "login.salesforce.com";

    fn config(text: &str) -> Config {
        let env: HashMap<String, String> = [("APP_SECRET".to_owned(), "s3cr3t".to_owned())].into();
        Config::from_toml_str_with(text, Path::new(env!("CARGO_MANIFEST_DIR")), &env).unwrap()
    }

    fn login(username: &str) -> SoapLogin {
        SoapLogin {
            api: Api::Partner,
            version: "64.0".into(),
            username: username.into(),
            password: Password::new("pwTOKEN"),
        }
    }

    const CC: &str = "[[credentials]]\nusername = \"int@acme.com\"\nmy_domain = \"acme.my.salesforce.com\"\nclient_id = \"app\"\nclient_secret_env = \"APP_SECRET\"\n";

    fn rewrite_of(plan: SoapPlan) -> SoapRewrite {
        match plan {
            SoapPlan::Rewrite(r) => r,
            other => panic!("expected a rewrite, got {other:?}"),
        }
    }

    fn forward_of(plan: SoapPlan) -> (Action, Option<&'static str>) {
        match plan {
            SoapPlan::Forward(f) => (f.action, f.reason),
            other => panic!("expected a forward, got {other:?}"),
        }
    }

    #[test]
    fn a_mapped_username_gets_client_credentials_at_its_my_domain() {
        let r = rewrite_of(plan(LOGIN, &login("Int@Acme.com"), &config(CC)));
        assert_eq!(r.flow, Flow::ClientCredentials);
        assert_eq!(r.client_id, "app");
        assert_eq!(r.target_host, ACME);
        assert!(r.fallback);
        assert!(!r.sandbox);
        assert_eq!(r.verify.mode, VerifyPassword::Required);
        assert_eq!(
            r.body,
            UpstreamBody::Ready(
                "grant_type=client_credentials&client_id=app&client_secret=s3cr3t".into()
            )
        );
    }

    #[test]
    fn the_password_is_required_even_where_the_entry_says_otherwise() {
        let text = format!("{CC}verify_password = \"if_known\"\n");
        let r = rewrite_of(plan(LOGIN, &login("int@acme.com"), &config(&text)));
        assert_eq!(r.verify.mode, VerifyPassword::Required);
    }

    #[test]
    fn jwt_bearer_names_the_username_and_signs_later() {
        let text = format!(
            "[[credentials]]\nusername = \"int@acme.com\"\nclient_id = \"app\"\nflow = \"jwt_bearer\"\njwt_private_key = \"{}\"\n",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt-app.pkcs8.pem")
        );
        let r = rewrite_of(plan(
            "test.salesforce.com",
            &login("int@acme.com"),
            &config(&text),
        ));
        assert_eq!(r.flow, Flow::JwtBearer);
        assert_eq!(r.target_host, "test.salesforce.com");
        assert!(r.sandbox);
        assert!(matches!(r.body, UpstreamBody::Jwt(_)));
        assert!(r.shape.contains("sub=int%40acme.com"));
        assert!(r.shape.contains("aud=https%3A%2F%2Ftest.salesforce.com"));
    }

    #[test]
    fn without_an_app_for_the_username_it_is_unmapped() {
        // No entry; an OAuth-only entry (no client_id, no secret); another user's entry.
        for text in [
            "",
            "[[credentials]]\nusername = \"int@acme.com\"\nmy_domain = \"acme.my.salesforce.com\"\n",
            &CC.replace("int@acme.com", "other@acme.com"),
        ] {
            assert_eq!(
                forward_of(plan(ACME, &login("int@acme.com"), &config(text))),
                (Action::Unmapped, None),
                "{text}"
            );
        }
    }

    #[test]
    fn rollout_rules_apply_as_for_oauth() {
        let observe = format!("[[rollout]]\nhost = \"*\"\nmode = \"observe\"\n{CC}");
        assert_eq!(
            forward_of(plan(LOGIN, &login("int@acme.com"), &config(&observe))),
            (Action::Observed, None)
        );
        let only_acme = format!("[[rollout]]\nhost = \"{ACME}\"\nmode = \"upgrade\"\n{CC}");
        assert_eq!(
            forward_of(plan(LOGIN, &login("int@acme.com"), &config(&only_acme))),
            (Action::Observed, Some("no_rule"))
        );
        let bucket = policy::bucket("", "int@acme.com");
        let below = format!(
            "[[rollout]]\nhost = \"*\"\nmode = \"upgrade\"\npercent = {bucket}\nfallback = false\n{CC}"
        );
        assert_eq!(
            forward_of(plan(LOGIN, &login("int@acme.com"), &config(&below))),
            (Action::Observed, Some("percent"))
        );
        let above = below.replace(
            &format!("percent = {bucket}"),
            &format!("percent = {}", bucket + 1),
        );
        assert!(!rewrite_of(plan(LOGIN, &login("int@acme.com"), &config(&above))).fallback);
    }

    #[test]
    fn token_facts_tell_opaque_from_jwt_tokens() {
        let opaque = br#"{"access_token":"00D5g!AQ4AQ.abc","id":"https://login.salesforce.com/id/00D/005","instance_url":"https://acme.my.salesforce.com"}"#;
        let facts = TokenFacts::from_json(opaque).unwrap();
        assert!(!facts.jwt_format);
        assert_eq!(facts.access_token.as_str(), "00D5g!AQ4AQ.abc");
        let declared =
            br#"{"access_token":"00D5g!AQ4AQ.abc","id":"https://x/id/1/2","token_format":"jwt"}"#;
        assert!(TokenFacts::from_json(declared).unwrap().jwt_format);
        let shaped = br#"{"access_token":"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln","id":"https://x/id/1/2"}"#;
        assert!(TokenFacts::from_json(shaped).unwrap().jwt_format);
        assert!(TokenFacts::from_json(br#"{"id":"https://x/id/1/2"}"#).is_none());
        assert!(TokenFacts::from_json(br#"{"access_token":"t"}"#).is_none());
        assert!(TokenFacts::from_json(b"not json").is_none());
    }

    #[test]
    fn identity_gives_the_apis_urls_at_the_requests_version() {
        let body = br#"{"user_id":"005A","organization_id":"00DA","urls":{"partner":"https://acme.my.salesforce.com/services/Soap/u/{version}/00D5g","enterprise":"https://acme.my.salesforce.com/services/Soap/c/{version}/00D5g","metadata":"https://acme.my.salesforce.com/services/Soap/m/{version}/00D5g"}}"#;
        let partner = Identity::from_json(body, Api::Partner, "59.0").unwrap();
        assert_eq!(
            partner.server_url,
            "https://acme.my.salesforce.com/services/Soap/u/59.0/00D5g"
        );
        assert_eq!(
            partner.metadata_server_url,
            "https://acme.my.salesforce.com/services/Soap/m/59.0/00D5g"
        );
        assert_eq!(partner.user_id, "005A");
        assert_eq!(partner.organization_id, "00DA");
        let enterprise = Identity::from_json(body, Api::Enterprise, "64.0").unwrap();
        assert_eq!(
            enterprise.server_url,
            "https://acme.my.salesforce.com/services/Soap/c/64.0/00D5g"
        );
        assert!(Identity::from_json(
            br#"{"user_id":"5","organization_id":"0"}"#,
            Api::Partner,
            "1.0"
        )
        .is_err());
        let http_url = br#"{"user_id":"5","organization_id":"0","urls":{"partner":"http://x/u","metadata":"https://x/m"}}"#;
        assert!(Identity::from_json(http_url, Api::Partner, "1.0").is_err());
    }

    #[test]
    fn tokens_go_only_to_salesforce_hosts_over_https() {
        let ok = |u: &str| may_carry_token(&u.parse().unwrap(), "fake.test");
        assert!(ok("https://acme.my.salesforce.com/id/1/2"));
        assert!(ok("https://login.salesforce.com/id/1/2"));
        assert!(ok("https://fake.test/id/1/2"));
        assert!(!ok("http://acme.my.salesforce.com/id/1/2"));
        assert!(!ok("https://evil.example/id/1/2"));
    }
}
