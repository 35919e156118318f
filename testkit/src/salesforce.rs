//! The fake Salesforce's OAuth side: the orgs, connected apps and users a test configures, and
//! the endpoints that behave like the real ones, with Salesforce's error answers:
//!
//! - `POST /services/oauth2/token`: `password`, `client_credentials`, JWT bearer (RS256
//!   verified against the app's public key) and `refresh_token` grants, with Salesforce's
//!   error bodies; parameters from the query string and a form body.
//! - `/services/data/…`: needs `Authorization: Bearer <access token>` issued for the org whose
//!   My Domain is the request host; reports the user the token was issued to.
//! - `/id/<org18>/<user18>`: the identity URL; needs a token of that org; reports that user,
//!   with `urls` (`partner`, `enterprise`, `metadata`, `rest`… with a literal `{version}`).
//! - `POST /services/Soap/u/NN.0[/…]` (partner) and `/services/Soap/c/NN.0[/…]` (enterprise):
//!   the SOAP API's login side, see [`soap`]: `login` (password + security token; faults
//!   `INVALID_LOGIN`, `INVALID_OPERATION` from 65.0 on or with [`Org::soap_login_enabled`]
//!   off) issues a session that works like an OAuth access token; `getUserInfo`, `logout` and
//!   any other call (a canned answer) take a `SessionHeader` with a session of the host's org
//!   (OAuth or SOAP, not [`App::jwt_access_tokens`] ones), else `INVALID_SESSION_ID`.
//!
//! Hosts are classified as Salesforce does: `login.salesforce.com` (production orgs),
//! `test.salesforce.com` (sandbox orgs), and My Domain hosts (`*.my.salesforce.com`, incl.
//! `.sandbox.`, and `*.my.salesforce.mil`), which belong to the org that owns them.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use http::{HeaderMap, StatusCode};
use ring::rand::SecureRandom;
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

pub mod soap;

pub const LOGIN_HOST: &str = "login.salesforce.com";
pub const TEST_HOST: &str = "test.salesforce.com";
pub const TOKEN_PATH: &str = "/services/oauth2/token";
/// Token revocation (RFC 7009).
pub const REVOKE_PATH: &str = "/services/oauth2/revoke";
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// How far in the past a JWT `exp` may lie and still be accepted (clock skew).
pub const JWT_EXP_SKEW_SECS: u64 = 60;
/// The JSON content type Salesforce answers token requests with.
pub const JSON_CONTENT_TYPE: &str = "application/json;charset=UTF-8";

/// A file in `tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    super::repo_path("tests/fixtures").join(name)
}

/// The connected app's public key (PKCS#1 RSAPublicKey DER) matching `jwt-app.*.pem`.
pub fn jwt_public_key_der() -> Vec<u8> {
    std::fs::read(fixture("jwt-app.rsa-public.der")).expect("read jwt-app.rsa-public.der")
}

/// The production org every test starts with. Secret values are distinctive so that a
/// leak check that looks for them means something.
pub mod acme {
    pub const ORG_ID: &str = "00D5g000004AcmeEAA";
    pub const MY_DOMAIN: &str = "acme.my.salesforce.com";
    /// The connected app the integration logs in with (password today; client credentials
    /// with a Run As user and JWT bearer with a certificate are enabled on it too).
    pub const CLIENT_ID: &str = "3MVG9acmeIntegrationApp.consumerKey";
    pub const CLIENT_SECRET: &str = "cs-SECRET-acme-91c4";
    /// The integration user the client logs in as.
    pub const USERNAME: &str = "integration@acme.com";
    pub const PASSWORD: &str = "pw-SECRET-7f3a";
    /// The integration user's security token (SOAP `login()` takes password + token).
    pub const SECURITY_TOKEN: &str = "TOKEN-SECRET-acme-5d1e";
    pub const USER_ID: &str = "0055g00000IntegAAA";
    /// A second user of the same app.
    pub const REPORTS_USERNAME: &str = "reports@acme.com";
    pub const REPORTS_PASSWORD: &str = "pw-SECRET-reports-2b8e";
    pub const REPORTS_USER_ID: &str = "0055g00000ReporAAA";
    /// A user whose name has a `+` (sent as `%2B`) and a mixed-case domain in the wild.
    pub const PLUS_USERNAME: &str = "integration+batch@acme.com";
    pub const PLUS_PASSWORD: &str = "pw-SECRET-batch-c0d9";
    pub const PLUS_USER_ID: &str = "0055g00000BatchAAA";
    /// The app's client-credentials Run As (execution) user.
    pub const RUN_AS_USERNAME: &str = "runas@acme.com";
    pub const RUN_AS_PASSWORD: &str = "pw-SECRET-runas-5e61";
    pub const RUN_AS_USER_ID: &str = "0055g00000RunAsAAA";
    /// Another connected app of the org, with no client-credentials flow.
    pub const OTHER_CLIENT_ID: &str = "3MVG9acmeOtherApp.consumerKey";
    pub const OTHER_CLIENT_SECRET: &str = "cs-SECRET-other-4a7d";
    /// The scopes configured on the integration app.
    pub const SCOPES: &[&str] = &["api", "web", "refresh_token", "id"];
    /// What a client-credentials response reports as `scope` (no web/refresh_token/…).
    pub const CC_SCOPE: &str = "api id";

    /// The `id` a password login of the integration user at login.salesforce.com answers.
    pub fn login_id() -> String {
        format!("https://login.salesforce.com/id/{ORG_ID}/{USER_ID}")
    }
}

/// The full sandbox of [`acme`].
pub mod acme_qa {
    pub const ORG_ID: &str = "00D7e000000AcmeQAA";
    pub const MY_DOMAIN: &str = "acme--qa.sandbox.my.salesforce.com";
    pub const CLIENT_ID: &str = "3MVG9acmeQaApp.consumerKey";
    pub const CLIENT_SECRET: &str = "cs-SECRET-qa-6f02";
    pub const USERNAME: &str = "integration@acme.com.qa";
    pub const PASSWORD: &str = "pw-SECRET-qa-1d5c";
    pub const USER_ID: &str = "0057e00000IntegQAA";
    pub const RUN_AS_USERNAME: &str = "runas@acme.com.qa";
    pub const RUN_AS_PASSWORD: &str = "pw-SECRET-qa-runas-88aa";
    pub const RUN_AS_USER_ID: &str = "0057e00000RunAsQAA";
}

#[derive(Clone, Debug)]
pub struct User {
    pub username: String,
    pub password: String,
    /// 18 characters.
    pub user_id: String,
    pub active: bool,
    /// Appended to the password in a SOAP `login()`; `None`: the password alone (a trusted
    /// IP range). The OAuth password grant takes the password alone either way.
    pub security_token: Option<String>,
}

impl User {
    pub const LANGUAGE: &'static str = "en_US";
    pub const LOCALE: &'static str = "en_US";
    pub const TIME_ZONE: &'static str = "America/Los_Angeles";

    pub fn new(username: &str, password: &str, user_id: &str) -> User {
        assert_eq!(user_id.len(), 18, "user ids are 18 characters: {user_id}");
        User {
            username: username.into(),
            password: password.into(),
            user_id: user_id.into(),
            active: true,
            security_token: None,
        }
    }

    pub fn email(&self) -> String {
        self.username.clone()
    }

    /// The part of the username before `@`, capitalised, and ` User`: "Integration User".
    pub fn full_name(&self) -> String {
        let local = self.username.split('@').next().unwrap_or("");
        let mut chars = local.chars();
        let first = chars.next().map(|c| c.to_uppercase().collect::<String>());
        format!("{}{} User", first.unwrap_or_default(), chars.as_str())
    }

    /// The profile: `00e` + the user id's characters 3..18.
    pub fn profile_id(&self) -> String {
        format!("00e{}", &self.user_id[3..])
    }
}

/// A connected app as configured in one org.
#[derive(Clone, Debug)]
pub struct App {
    pub consumer_key: String,
    pub consumer_secret: String,
    /// "Enable Client Credentials Flow".
    pub cc_enabled: bool,
    /// What a client-credentials request gets when the flow is off (Salesforce reports this
    /// variously; `unauthorized_client` by default).
    pub cc_disabled_error: (String, String),
    /// The client-credentials Run As user (a username of the org).
    pub run_as_user: Option<String>,
    /// The certificate's RSA public key (PKCS#1 DER) for JWT bearer; `None`: no JWT.
    pub public_key_der: Option<Vec<u8>>,
    /// Usernames pre-authorised for JWT bearer (profile / permission set).
    pub preapproved_users: Vec<String>,
    pub scopes: Vec<String>,
    /// Refresh tokens this app issued earlier: `(token, username)`.
    pub refresh_tokens: Vec<(String, String)>,
    /// "Issue JSON Web Token (JWT)-based access tokens": the token endpoint issues JWT-format
    /// access tokens (`eyJ…`) and says `"token_format":"jwt"`; the REST API takes them, the
    /// SOAP API does not (`INVALID_SESSION_ID`).
    pub jwt_access_tokens: bool,
}

impl App {
    /// An app with the client-credentials flow enabled but no Run As user, no certificate,
    /// scope `api`.
    pub fn new(consumer_key: &str, consumer_secret: &str) -> App {
        App {
            consumer_key: consumer_key.into(),
            consumer_secret: consumer_secret.into(),
            cc_enabled: true,
            cc_disabled_error: (
                "unauthorized_client".into(),
                "client credentials flow is not enabled for this app".into(),
            ),
            run_as_user: None,
            public_key_der: None,
            preapproved_users: Vec::new(),
            scopes: vec!["api".into()],
            refresh_tokens: Vec::new(),
            jwt_access_tokens: false,
        }
    }

    /// `scope` of a client-credentials (and JWT) response: the app's scopes except `full`,
    /// `web`, `offline_access` and `refresh_token`.
    pub fn token_scope(&self) -> String {
        self.scopes
            .iter()
            .filter(|s| {
                !matches!(
                    s.as_str(),
                    "full" | "web" | "offline_access" | "refresh_token"
                )
            })
            .cloned()
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[derive(Clone, Debug)]
pub struct Org {
    /// 18 characters.
    pub org_id: String,
    pub my_domain: String,
    /// What user info reports as `organizationName` (by default the My Domain's first label,
    /// capitalised).
    pub name: String,
    pub sandbox: bool,
    /// "Allow OAuth Username-Password Flows".
    pub allow_password_flow: bool,
    /// SOAP API `login()` allowed (orgs can disable it); `false`: `INVALID_OPERATION`.
    pub soap_login_enabled: bool,
    pub apps: Vec<App>,
    pub users: Vec<User>,
}

impl Org {
    pub fn new(org_id: &str, my_domain: &str, sandbox: bool) -> Org {
        assert_eq!(org_id.len(), 18, "org ids are 18 characters: {org_id}");
        let label = my_domain.split(['.', '-']).next().unwrap_or("");
        let mut chars = label.chars();
        let name = chars
            .next()
            .map(|c| c.to_uppercase().chain(chars).collect())
            .unwrap_or_default();
        Org {
            org_id: org_id.into(),
            my_domain: my_domain.into(),
            name,
            sandbox,
            allow_password_flow: true,
            soap_login_enabled: true,
            apps: Vec::new(),
            users: Vec::new(),
        }
    }

    /// The 15-character org id (the access-token prefix).
    pub fn org15(&self) -> &str {
        &self.org_id[..15]
    }

    pub fn app(&self, key: &str) -> Option<&App> {
        self.apps.iter().find(|a| a.consumer_key == key)
    }

    pub fn app_mut(&mut self, key: &str) -> &mut App {
        self.apps
            .iter_mut()
            .find(|a| a.consumer_key == key)
            .unwrap_or_else(|| panic!("no app {key}"))
    }

    /// Usernames compare case-insensitively, as in Salesforce.
    pub fn user(&self, username: &str) -> Option<&User> {
        self.users
            .iter()
            .find(|u| u.username.eq_ignore_ascii_case(username))
    }

    /// Add an active user with a generated 18-character id; returns the id.
    pub fn add_user(&mut self, username: &str, password: &str) -> String {
        let n = self.users.len();
        let user_id = format!("005{}{:011}", &self.org_id[3..7], n);
        self.users.push(User::new(username, password, &user_id));
        user_id
    }
}

/// Every org the fake knows.
#[derive(Clone, Debug, Default)]
pub struct World {
    pub orgs: Vec<Org>,
}

impl World {
    /// [`acme`] (production) and [`acme_qa`] (its sandbox). Each org has one integration app
    /// with the password flow allowed, client credentials enabled with a Run As user, the JWT
    /// certificate from `tests/fixtures` and the integration user(s) pre-approved.
    pub fn standard() -> World {
        let public_key = jwt_public_key_der();

        let mut prod = Org::new(acme::ORG_ID, acme::MY_DOMAIN, false);
        let mut integration = User::new(acme::USERNAME, acme::PASSWORD, acme::USER_ID);
        integration.security_token = Some(acme::SECURITY_TOKEN.into());
        prod.users = vec![
            integration,
            User::new(
                acme::REPORTS_USERNAME,
                acme::REPORTS_PASSWORD,
                acme::REPORTS_USER_ID,
            ),
            User::new(acme::PLUS_USERNAME, acme::PLUS_PASSWORD, acme::PLUS_USER_ID),
            User::new(
                acme::RUN_AS_USERNAME,
                acme::RUN_AS_PASSWORD,
                acme::RUN_AS_USER_ID,
            ),
        ];
        let mut app = App::new(acme::CLIENT_ID, acme::CLIENT_SECRET);
        app.run_as_user = Some(acme::RUN_AS_USERNAME.into());
        app.public_key_der = Some(public_key.clone());
        app.preapproved_users = vec![
            acme::USERNAME.into(),
            acme::REPORTS_USERNAME.into(),
            acme::PLUS_USERNAME.into(),
        ];
        app.scopes = acme::SCOPES.iter().map(|s| s.to_string()).collect();
        let mut other = App::new(acme::OTHER_CLIENT_ID, acme::OTHER_CLIENT_SECRET);
        other.cc_enabled = false;
        prod.apps = vec![app, other];

        let mut qa = Org::new(acme_qa::ORG_ID, acme_qa::MY_DOMAIN, true);
        qa.users = vec![
            User::new(acme_qa::USERNAME, acme_qa::PASSWORD, acme_qa::USER_ID),
            User::new(
                acme_qa::RUN_AS_USERNAME,
                acme_qa::RUN_AS_PASSWORD,
                acme_qa::RUN_AS_USER_ID,
            ),
        ];
        let mut qa_app = App::new(acme_qa::CLIENT_ID, acme_qa::CLIENT_SECRET);
        qa_app.run_as_user = Some(acme_qa::RUN_AS_USERNAME.into());
        qa_app.public_key_der = Some(public_key);
        qa_app.preapproved_users = vec![acme_qa::USERNAME.into()];
        qa_app.scopes = vec!["api".into(), "id".into()];
        qa.apps = vec![qa_app];

        World {
            orgs: vec![prod, qa],
        }
    }

    pub fn org_mut(&mut self, org_id: &str) -> &mut Org {
        self.orgs
            .iter_mut()
            .find(|o| o.org_id == org_id)
            .unwrap_or_else(|| panic!("no org {org_id}"))
    }

    fn org_at(&self, my_domain: &str) -> Option<&Org> {
        self.orgs
            .iter()
            .find(|o| o.my_domain.eq_ignore_ascii_case(my_domain))
    }
}

/// A token the fake issued: what `/services/data` and `/id` accept, and what a leak check
/// looks for.
#[derive(Clone, Debug)]
pub struct Issued {
    pub access_token: String,
    pub signature: Option<String>,
    pub grant: String,
    pub org_id: String,
    pub user_id: String,
    pub username: String,
    /// The org's My Domain (where `/services/data` takes the token).
    pub my_domain: String,
    /// A JWT-format access token ([`App::jwt_access_tokens`]): refused by the SOAP API.
    pub jwt: bool,
}

/// What a Salesforce host is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostKind {
    /// `login.salesforce.com` (`sandbox: false`) or `test.salesforce.com` (`sandbox: true`).
    Generic {
        sandbox: bool,
    },
    MyDomain,
    Other,
}

pub fn classify(host: &str) -> HostKind {
    let host = host.to_ascii_lowercase();
    if host == LOGIN_HOST {
        HostKind::Generic { sandbox: false }
    } else if host == TEST_HOST {
        HostKind::Generic { sandbox: true }
    } else if [".my.salesforce.com", ".my.salesforce.mil"]
        .iter()
        .any(|s| host.len() > s.len() && host.ends_with(s))
    {
        HostKind::MyDomain
    } else {
        HostKind::Other
    }
}

/// A response of the fake, with its bytes (so the test can compare what the client got).
pub struct SfResponse {
    pub status: StatusCode,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl SfResponse {
    fn text(status: StatusCode, line: &str) -> SfResponse {
        SfResponse {
            status,
            headers: vec![("content-type", "text/plain".into())],
            body: format!("{line}\n").into_bytes(),
        }
    }

    fn json(status: StatusCode, value: &Value) -> SfResponse {
        SfResponse {
            status,
            headers: vec![("content-type", JSON_CONTENT_TYPE.into())],
            body: serde_json::to_vec(value).unwrap(),
        }
    }
}

/// One request to a Salesforce endpoint, as the fake received it.
pub struct Call<'a> {
    pub method: &'a str,
    /// Without the port.
    pub host: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

impl Call<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn bearer(&self) -> Option<&str> {
        let auth = self.header("authorization")?;
        (auth.len() > 7 && auth[..7].eq_ignore_ascii_case("bearer ")).then(|| auth[7..].trim())
    }
}

/// An OAuth error: status, `error`, `error_description`.
type OAuthError = (StatusCode, String, String);

fn oauth_error(error: &str, description: &str) -> OAuthError {
    (StatusCode::BAD_REQUEST, error.into(), description.into())
}

fn invalid_client_id() -> OAuthError {
    oauth_error("invalid_client_id", "client identifier invalid")
}

fn invalid_client() -> OAuthError {
    oauth_error("invalid_client", "invalid client credentials")
}

fn authentication_failure() -> OAuthError {
    oauth_error("invalid_grant", "authentication failure")
}

fn invalid_assertion() -> OAuthError {
    oauth_error("invalid_grant", "invalid assertion")
}

/// The merged parameters of a token request: query string first, then body.
struct Params(Vec<(String, String)>);

/// The client's id and secret, as Salesforce authenticates a client at the token endpoint:
/// `client_id` / `client_secret` in the form, else HTTP Basic (RFC 6749 §2.3.1: each part
/// form-urlencoded, then `id:secret` in base64).
fn client_auth(call: &Call<'_>, params: &Params) -> (Option<String>, Option<String>) {
    let form_decode = |part: &str| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={part}"))
            .ok()
            .and_then(|mut pairs| pairs.pop())
            .map(|(_, v)| v)
    };
    let basic = call
        .header("authorization")
        .filter(|a| a.len() > 6 && a[..6].eq_ignore_ascii_case("basic "))
        .and_then(|a| STANDARD.decode(a[6..].trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|s| {
            let (k, v) = s.split_once(':')?;
            Some((form_decode(k)?, form_decode(v)?))
        });
    let key = params
        .get("client_id")
        .map(str::to_string)
        .or_else(|| basic.as_ref().map(|(k, _)| k.clone()));
    let secret = params
        .get("client_secret")
        .map(str::to_string)
        .or_else(|| basic.as_ref().map(|(_, s)| s.clone()));
    (key, secret)
}

impl Params {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The response format a token request asks for (`format` or `Accept`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Urlencoded,
    Xml,
}

/// Parameters of a form-encoded string (lenient, like a servlet container).
pub fn form_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(bytes).unwrap_or_default()
}

/// Seconds since the Unix epoch, now (what a JWT's `exp` counts).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn now_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

fn random_token_part() -> String {
    let mut bytes = [0u8; 48];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("system randomness");
    URL_SAFE_NO_PAD.encode(bytes).replace(['-', '_'], ".")
}

/// A JWT-shaped access token (`header.claims.signature`, base64url; the signature is random:
/// nothing but the fake checks these tokens, by lookup).
fn jwt_access_token(org: &Org, app: &App, user: &User, id: &str) -> String {
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "CORE_ATJWT.00D.fake", "tty": "sfdc-core-token"});
    let now = unix_now();
    let claims = json!({
        "iss": format!("https://{}", org.my_domain),
        "sub": id,
        "aud": app.consumer_key,
        "client_id": app.consumer_key,
        "scp": app.token_scope(),
        "mty": "oauth",
        "sfi": org.org_id,
        "sfuid": user.user_id,
        "iat": now,
        "exp": now + 7200,
        "jti": random_token_part(),
    });
    let mut sig = [0u8; 256];
    ring::rand::SystemRandom::new()
        .fill(&mut sig)
        .expect("system randomness");
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap()),
        URL_SAFE_NO_PAD.encode(sig)
    )
}

/// `signature` = base64(HMAC-SHA256(consumer secret, id + issued_at)).
pub fn token_signature(consumer_secret: &str, id: &str, issued_at: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, consumer_secret.as_bytes());
    let tag = ring::hmac::sign(&key, format!("{id}{issued_at}").as_bytes());
    STANDARD.encode(tag.as_ref())
}

/// The fake's OAuth state: the world the tests configure and the tokens it issued.
#[derive(Default)]
pub struct OAuthState {
    world: std::sync::Mutex<World>,
    issued: std::sync::Mutex<Vec<Issued>>,
    /// Sessions ended (revoked, or timed out by a test): their tokens are refused.
    ended: std::sync::Mutex<std::collections::HashSet<String>>,
    /// `/services/oauth2/introspect` ([`Introspection`]).
    pub introspection: Introspection,
}

impl OAuthState {
    pub fn with_world(world: World) -> OAuthState {
        OAuthState {
            world: std::sync::Mutex::new(world),
            issued: Default::default(),
            ended: Default::default(),
            introspection: Default::default(),
        }
    }

    pub fn edit(&self, f: impl FnOnce(&mut World)) {
        f(&mut self.world.lock().unwrap())
    }

    pub fn world(&self) -> World {
        self.world.lock().unwrap().clone()
    }

    pub fn issued(&self) -> Vec<Issued> {
        self.issued.lock().unwrap().clone()
    }

    /// Back to `world` with no tokens issued.
    pub fn reset(&self, world: World) {
        *self.world.lock().unwrap() = world;
        self.issued.lock().unwrap().clear();
    }

    /// Serve `/services/oauth2/token`.
    pub fn token(&self, call: &Call<'_>) -> SfResponse {
        let kind = classify(call.host);
        if kind == HostKind::Other {
            return SfResponse::text(StatusCode::NOT_FOUND, "not a Salesforce login host");
        }
        let mut params = form_pairs(call.query.unwrap_or("").as_bytes());
        let content_type = call.header("content-type").map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
        let readable_form = call.header("content-encoding").is_none()
            && content_type
                .as_deref()
                .is_none_or(|ct| ct == "application/x-www-form-urlencoded");
        if readable_form {
            params.extend(form_pairs(call.body));
        }
        let params = Params(params);
        let get = |name: &str| params.get(name);
        let accept = call.header("accept").unwrap_or("");
        let format = match get("format") {
            Some("urlencoded") => Format::Urlencoded,
            Some("xml") => Format::Xml,
            Some(_) => Format::Json,
            None if accept.contains("application/x-www-form-urlencoded") => Format::Urlencoded,
            None if accept.contains("application/xml") => Format::Xml,
            None => Format::Json,
        };
        let result = if call.method != "POST" {
            Err(oauth_error("invalid_request", "must use HTTP POST"))
        } else if !readable_form {
            Err(oauth_error(
                "unsupported_grant_type",
                "grant type not supported",
            ))
        } else {
            let world = self.world.lock().unwrap();
            match get("grant_type") {
                Some("password") => self.password(&world, call, kind, &params),
                Some("client_credentials") => self.client_credentials(&world, call, kind, &params),
                Some(JWT_BEARER_GRANT) => self.jwt_bearer(&world, call, kind, &params),
                Some("refresh_token") => self.refresh(&world, call, kind, &params),
                _ => Err(oauth_error(
                    "unsupported_grant_type",
                    "grant type not supported",
                )),
            }
        };
        let (status, map) = match result {
            Ok(map) => (StatusCode::OK, map),
            Err((status, error, description)) => {
                let mut map = Map::new();
                map.insert("error".into(), error.into());
                map.insert("error_description".into(), description.into());
                (status, map)
            }
        };
        let mut resp = render(status, map, format);
        resp.headers.push(("cache-control", "no-store".into()));
        // Like the REST API, Salesforce normally compresses when the client accepts gzip
        // (python-requests sends `Accept-Encoding: gzip, deflate` by default); token responses
        // are seen gzip-encoded too (real clients must cope).
        if accept_encoding_gzip(call.header("accept-encoding")) {
            resp.body = gzip(&resp.body);
            resp.headers.push(("content-encoding", "gzip".into()));
        }
        resp
    }

    /// The orgs a request at `kind`/`host` can belong to.
    fn candidate_orgs<'w>(world: &'w World, kind: HostKind, host: &str) -> Vec<&'w Org> {
        match kind {
            HostKind::Generic { sandbox } => {
                world.orgs.iter().filter(|o| o.sandbox == sandbox).collect()
            }
            HostKind::MyDomain => world.org_at(host).into_iter().collect(),
            HostKind::Other => Vec::new(),
        }
    }

    /// The org and app for `client_id` among the orgs this host serves.
    fn find_app<'w>(
        world: &'w World,
        kind: HostKind,
        host: &str,
        client_id: Option<&str>,
    ) -> Result<(&'w Org, &'w App), OAuthError> {
        let key = client_id.ok_or_else(invalid_client_id)?;
        Self::candidate_orgs(world, kind, host)
            .into_iter()
            .find_map(|org| org.app(key).map(|app| (org, app)))
            .ok_or_else(invalid_client_id)
    }

    fn password(
        &self,
        world: &World,
        call: &Call<'_>,
        kind: HostKind,
        params: &Params,
    ) -> Result<Map<String, Value>, OAuthError> {
        let get = |name: &str| params.get(name);
        let (key, secret) = client_auth(call, params);
        let (org, app) = Self::find_app(world, kind, call.host, key.as_deref())?;
        if secret.as_deref() != Some(app.consumer_secret.as_str()) {
            return Err(invalid_client());
        }
        let user = org
            .user(get("username").unwrap_or(""))
            .ok_or_else(authentication_failure)?;
        if !org.allow_password_flow || get("password") != Some(user.password.as_str()) {
            return Err(authentication_failure());
        }
        if !user.active {
            return Err(oauth_error("inactive_user", "user is inactive"));
        }
        Ok(self.issue(org, app, user, call.host, "password", None, true))
    }

    fn client_credentials(
        &self,
        world: &World,
        call: &Call<'_>,
        kind: HostKind,
        params: &Params,
    ) -> Result<Map<String, Value>, OAuthError> {
        if matches!(kind, HostKind::Generic { .. }) {
            return Err(oauth_error(
                "invalid_grant",
                "request not supported on this domain",
            ));
        }
        let (key, secret) = client_auth(call, params);
        let (org, app) = Self::find_app(world, kind, call.host, key.as_deref())?;
        if secret.as_deref() != Some(app.consumer_secret.as_str()) {
            return Err(invalid_client());
        }
        if !app.cc_enabled {
            let (error, description) = &app.cc_disabled_error;
            return Err(oauth_error(error, description));
        }
        let run_as = app
            .run_as_user
            .as_deref()
            .and_then(|u| org.user(u))
            .ok_or_else(|| oauth_error("invalid_grant", "no client credentials user enabled"))?;
        let mut map = self.issue(
            org,
            app,
            run_as,
            &org.my_domain,
            "client_credentials",
            Some(app.token_scope()),
            true,
        );
        if app.scopes.iter().any(|s| s == "sfap_api") {
            map.insert(
                "api_instance_url".into(),
                "https://api.salesforce.com".into(),
            );
        }
        Ok(map)
    }

    fn jwt_bearer(
        &self,
        world: &World,
        call: &Call<'_>,
        kind: HostKind,
        params: &Params,
    ) -> Result<Map<String, Value>, OAuthError> {
        let get = |name: &str| params.get(name);
        let assertion =
            get("assertion").ok_or_else(|| oauth_error("invalid_request", "assertion missing"))?;
        let jwt = DecodedJwt::parse(assertion).ok_or_else(invalid_assertion)?;
        if jwt.header["alg"] != "RS256" {
            return Err(invalid_assertion());
        }
        let (org, app) = Self::find_app(world, kind, call.host, jwt.claims["iss"].as_str())?;
        let key = app
            .public_key_der
            .as_deref()
            .ok_or_else(invalid_assertion)?;
        if !jwt.verifies_with(key) {
            return Err(invalid_assertion());
        }
        let generic = if org.sandbox {
            "https://test.salesforce.com"
        } else {
            "https://login.salesforce.com"
        };
        let my_domain_url = format!("https://{}", org.my_domain);
        let audiences: Vec<&str> = match &jwt.claims["aud"] {
            Value::String(s) => vec![s.as_str()],
            Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !audiences
            .iter()
            .any(|a| *a == generic || a.eq_ignore_ascii_case(&my_domain_url))
        {
            return Err(oauth_error("invalid_grant", "Audience validation failed"));
        }
        // Far-future values are accepted (sfdx-core sends milliseconds).
        let exp = jwt.claims["exp"].as_u64().ok_or_else(invalid_assertion)?;
        if exp + JWT_EXP_SKEW_SECS < unix_now() {
            return Err(oauth_error("invalid_grant", "expired authorization code"));
        }
        let user = org
            .user(jwt.claims["sub"].as_str().unwrap_or(""))
            .ok_or_else(invalid_assertion)?;
        if !user.active {
            return Err(oauth_error("inactive_user", "user is inactive"));
        }
        if !app
            .preapproved_users
            .iter()
            .any(|u| u.eq_ignore_ascii_case(&user.username))
        {
            return Err(oauth_error(
                "invalid_grant",
                "user hasn't approved this consumer",
            ));
        }
        Ok(self.issue(
            org,
            app,
            user,
            call.host,
            "jwt_bearer",
            Some(app.token_scope()),
            false,
        ))
    }

    fn refresh(
        &self,
        world: &World,
        call: &Call<'_>,
        kind: HostKind,
        params: &Params,
    ) -> Result<Map<String, Value>, OAuthError> {
        let get = |name: &str| params.get(name);
        let expired = || oauth_error("invalid_grant", "expired access/refresh token");
        let token = get("refresh_token").ok_or_else(expired)?;
        let (org, app, username) = Self::candidate_orgs(world, kind, call.host)
            .into_iter()
            .flat_map(|org| org.apps.iter().map(move |app| (org, app)))
            .find_map(|(org, app)| {
                app.refresh_tokens
                    .iter()
                    .find(|(t, _)| t == token)
                    .map(|(_, u)| (org, app, u.clone()))
            })
            .ok_or_else(expired)?;
        if get("client_id").is_some_and(|id| id != app.consumer_key) {
            return Err(invalid_client_id());
        }
        let user = org.user(&username).ok_or_else(expired)?;
        Ok(self.issue(
            org,
            app,
            user,
            call.host,
            "refresh_token",
            Some(app.token_scope()),
            true,
        ))
    }

    /// A success response for `user`: `access_token` = `<org15>!<random>`, `instance_url` =
    /// the My Domain, `id` = `https://<id_host>/id/<org18>/<user18>`.
    #[allow(clippy::too_many_arguments)]
    fn issue(
        &self,
        org: &Org,
        app: &App,
        user: &User,
        id_host: &str,
        grant: &str,
        scope: Option<String>,
        signed: bool,
    ) -> Map<String, Value> {
        let id = format!("https://{id_host}/id/{}/{}", org.org_id, user.user_id);
        let access_token = if app.jwt_access_tokens {
            jwt_access_token(org, app, user, &id)
        } else {
            format!("{}!AQ{}", org.org15(), random_token_part())
        };
        let mut map = Map::new();
        map.insert("access_token".into(), access_token.clone().into());
        if let Some(scope) = scope {
            map.insert("scope".into(), scope.into());
        }
        map.insert(
            "instance_url".into(),
            format!("https://{}", org.my_domain).into(),
        );
        map.insert("id".into(), id.clone().into());
        map.insert("token_type".into(), "Bearer".into());
        if app.jwt_access_tokens {
            map.insert("token_format".into(), "jwt".into());
        }
        let mut signature = None;
        if signed {
            let issued_at = now_millis().to_string();
            let sig = token_signature(&app.consumer_secret, &id, &issued_at);
            map.insert("issued_at".into(), issued_at.into());
            map.insert("signature".into(), sig.clone().into());
            signature = Some(sig);
        }
        self.introspection.issued(&access_token, &org.org_id);
        self.issued.lock().unwrap().push(Issued {
            access_token,
            signature,
            grant: grant.into(),
            org_id: org.org_id.clone(),
            user_id: user.user_id.clone(),
            username: user.username.clone(),
            my_domain: org.my_domain.clone(),
            jwt: app.jwt_access_tokens,
        });
        map
    }

    /// End the session of `access_token` (as a timeout or a revoke elsewhere would).
    pub fn end_session(&self, access_token: &str) {
        self.ended.lock().unwrap().insert(access_token.to_owned());
    }

    /// `/services/oauth2/revoke` (RFC 7009; `token` in the form body or the query): ends the
    /// session; 200 with no body, or 400 `unsupported_token_type` for a token it never issued.
    pub fn revoke(&self, call: &Call<'_>) -> SfResponse {
        let named = |text: &str| {
            url_pairs(text)
                .into_iter()
                .find(|(k, _)| k == "token")
                .map(|(_, v)| v)
        };
        let token = named(std::str::from_utf8(call.body).unwrap_or(""))
            .or_else(|| call.query.and_then(named));
        let known = token.as_deref().is_some_and(|t| {
            self.issued
                .lock()
                .unwrap()
                .iter()
                .any(|i| i.access_token == t)
        });
        match token {
            Some(t) if known => {
                self.end_session(&t);
                SfResponse {
                    status: StatusCode::OK,
                    headers: vec![],
                    body: vec![],
                }
            }
            _ => SfResponse::json(
                StatusCode::BAD_REQUEST,
                &json!({"error": "unsupported_token_type", "error_description": "this token type is not supported"}),
            ),
        }
    }

    fn token_holder(&self, call: &Call<'_>) -> Option<Issued> {
        let token = call.bearer()?;
        if self.ended.lock().unwrap().contains(token) {
            return None;
        }
        self.issued
            .lock()
            .unwrap()
            .iter()
            .find(|i| i.access_token == token)
            .cloned()
    }

    /// `/services/data/…`: the token's user, if the token was issued for this My Domain's org.
    pub fn data(&self, call: &Call<'_>) -> SfResponse {
        match self.token_holder(call) {
            Some(t) if t.my_domain.eq_ignore_ascii_case(call.host) => SfResponse::json(
                StatusCode::OK,
                &json!({
                    "path": call.path,
                    "organizationId": t.org_id,
                    "userId": t.user_id,
                    "username": t.username,
                }),
            ),
            _ => SfResponse::json(
                StatusCode::UNAUTHORIZED,
                &json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]),
            ),
        }
    }

    /// `/id/<org18>/<user18>`: that user, for a token of the same org.
    pub fn identity(&self, call: &Call<'_>) -> SfResponse {
        let mut segments = call.path.trim_start_matches("/id/").split('/');
        let (org_id, user_id) = (segments.next().unwrap_or(""), segments.next().unwrap_or(""));
        let world = self.world.lock().unwrap();
        let user = world
            .orgs
            .iter()
            .find(|o| o.org_id == org_id)
            .and_then(|o| o.users.iter().find(|u| u.user_id == user_id));
        match (self.token_holder(call), user) {
            (Some(t), Some(user)) if t.org_id == org_id => {
                let base = format!("https://{}", t.my_domain);
                let org15 = &org_id[..15];
                let data = format!("{base}/services/data/v{{version}}");
                SfResponse::json(
                    StatusCode::OK,
                    &json!({
                        "id": format!("https://{}{}", call.host, call.path),
                        "organization_id": org_id,
                        "user_id": user.user_id,
                        "username": user.username,
                        "display_name": user.full_name(),
                        "email": user.email(),
                        "language": User::LANGUAGE,
                        "locale": User::LOCALE,
                        "timezone": User::TIME_ZONE,
                        "user_type": "STANDARD",
                        "active": user.active,
                        "urls": {
                            "enterprise": format!("{base}/services/Soap/c/{{version}}/{org15}"),
                            "metadata": format!("{base}/services/Soap/m/{{version}}/{org15}"),
                            "partner": format!("{base}/services/Soap/u/{{version}}/{org15}"),
                            "rest": format!("{data}/"),
                            "sobjects": format!("{data}/sobjects/"),
                            "search": format!("{data}/search/"),
                            "query": format!("{data}/query/"),
                            "recent": format!("{data}/recent/"),
                            "profile": format!("{base}/{}", user.user_id),
                        },
                    }),
                )
            }
            _ => SfResponse::text(StatusCode::FORBIDDEN, "Bad_OAuth_Token"),
        }
    }
}

fn render(status: StatusCode, map: Map<String, Value>, format: Format) -> SfResponse {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match format {
        Format::Json => SfResponse::json(status, &Value::Object(map)),
        Format::Urlencoded => {
            let pairs: Vec<(String, String)> =
                map.iter().map(|(k, v)| (k.clone(), text(v))).collect();
            SfResponse {
                status,
                headers: vec![(
                    "content-type",
                    "application/x-www-form-urlencoded;charset=UTF-8".into(),
                )],
                body: serde_urlencoded::to_string(pairs).unwrap().into_bytes(),
            }
        }
        Format::Xml => {
            let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?><OAuth>");
            for (k, v) in &map {
                let v = text(v)
                    .replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;");
                xml.push_str(&format!("<{k}>{v}</{k}>"));
            }
            xml.push_str("</OAuth>");
            SfResponse {
                status,
                headers: vec![("content-type", "application/xml;charset=UTF-8".into())],
                body: xml.into_bytes(),
            }
        }
    }
}

/// Does an `Accept-Encoding` value accept gzip (with a non-zero q)?
fn accept_encoding_gzip(value: Option<&str>) -> bool {
    value.unwrap_or("").split(',').any(|coding| {
        let mut parts = coding.split(';');
        let name = parts.next().unwrap_or("").trim();
        let refused = parts.any(|p| {
            let p = p.trim().replace(' ', "");
            p == "q=0" || p == "q=0.0" || p == "q=0.00" || p == "q=0.000"
        });
        (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
    })
}

/// `data` as a gzip member (RFC 1952) with stored (uncompressed) deflate blocks: valid gzip
/// that any decoder reads, without a compression library.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut chunks = data.chunks(65_535).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        let len = chunk.len() as u16;
        out.push(u8::from(last));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// CRC-32 (IEEE 802.3, reflected), as gzip uses.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A JWT split into its parts (no verification yet).
#[derive(Debug, Clone)]
pub struct DecodedJwt {
    pub header: Value,
    pub claims: Value,
    /// `base64url(header).base64url(claims)`: what the signature covers.
    pub signing_input: String,
    pub signature: Vec<u8>,
}

impl DecodedJwt {
    pub fn parse(jwt: &str) -> Option<DecodedJwt> {
        let mut parts = jwt.split('.');
        let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        Some(DecodedJwt {
            header: serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).ok()?).ok()?,
            claims: serde_json::from_slice(&URL_SAFE_NO_PAD.decode(c).ok()?).ok()?,
            signing_input: format!("{h}.{c}"),
            signature: URL_SAFE_NO_PAD.decode(s).ok()?,
        })
    }

    /// RS256 (RSASSA-PKCS1-v1_5 with SHA-256) over the signing input, with a PKCS#1
    /// RSAPublicKey DER.
    pub fn verifies_with(&self, public_key_der: &[u8]) -> bool {
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            public_key_der,
        )
        .verify(self.signing_input.as_bytes(), &self.signature)
        .is_ok()
    }
}

/// Sign `claims` as an RS256 JWT with the fixture key (what a JWT-bearer client itself sends).
pub fn sign_jwt_with_fixture_key(claims: &Value) -> String {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::PrivateKeyDer::from_pem_file(fixture("jwt-app.pkcs8.pem"))
        .expect("fixture key");
    let key = rustls::crypto::ring::sign::any_supported_type(&der).expect("RSA key");
    let signer = key
        .choose_scheme(&[rustls::SignatureScheme::RSA_PKCS1_SHA256])
        .expect("RS256");
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap())
    );
    let sig = signer.sign(input.as_bytes()).expect("sign");
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// `k=v&…` decoded (form or query).
fn url_pairs(text: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str(text).unwrap_or_default()
}

// ---- Token introspection (`POST /services/oauth2/introspect`, RFC 7662) ----------------------

/// Token introspection: the path.
pub const INTROSPECT_PATH: &str = "/services/oauth2/introspect";

/// A session's lifetime unless a test sets another (Salesforce's default session timeout).
pub const DEFAULT_SESSION_LIFETIME_SECS: u64 = 2 * 60 * 60;

/// What the fake's introspection endpoint knows besides the issued tokens: when each was
/// issued, each org's session lifetime, a test's per-token `exp`, and whether it fails.
#[derive(Default)]
pub struct Introspection {
    /// Access token → (org id, issued at, Unix seconds).
    issued_at: std::sync::Mutex<std::collections::HashMap<String, (String, u64)>>,
    /// Org id → session lifetime in seconds ([`DEFAULT_SESSION_LIFETIME_SECS`] otherwise).
    lifetimes: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    /// Access token → `exp` set by a test.
    exps: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    /// Answer every introspection with this status and a plain-text body instead.
    failing: std::sync::Mutex<Option<StatusCode>>,
}

impl Introspection {
    fn issued(&self, access_token: &str, org_id: &str) {
        self.issued_at
            .lock()
            .unwrap()
            .insert(access_token.into(), (org_id.into(), unix_now()));
    }

    /// Sessions of `org_id` issued from now on (and those issued before) end `secs` after
    /// they were issued (`0`: at once, so introspection calls them inactive).
    pub fn set_session_lifetime(&self, org_id: &str, secs: u64) {
        self.lifetimes.lock().unwrap().insert(org_id.into(), secs);
    }

    /// The session of `access_token` ends at `exp` (Unix seconds).
    pub fn set_exp(&self, access_token: &str, exp: u64) {
        self.exps.lock().unwrap().insert(access_token.into(), exp);
    }

    /// Every introspection gets `status` (e.g. 503) with a non-JSON body; `None`: answer again.
    pub fn fail_with(&self, status: Option<StatusCode>) {
        *self.failing.lock().unwrap() = status;
    }
}

impl OAuthState {
    /// `/services/oauth2/introspect`: the client authenticates with an app's `client_id` and
    /// `client_secret` (form, else Basic; 401 `invalid_client` otherwise); a token the fake
    /// issued, not ended and not past its `exp`, is `{"active":true,"exp",…}`; any other is
    /// `{"active":false}`.
    pub fn introspect(&self, call: &Call<'_>) -> SfResponse {
        if let Some(status) = *self.introspection.failing.lock().unwrap() {
            return SfResponse::text(status, "introspection is down");
        }
        let params = Params(form_pairs(call.body));
        let (key, secret) = client_auth(call, &params);
        let app_ok = {
            let world = self.world.lock().unwrap();
            world.orgs.iter().flat_map(|o| &o.apps).any(|a| {
                Some(&a.consumer_key) == key.as_ref() && Some(&a.consumer_secret) == secret.as_ref()
            })
        };
        if call.method != "POST" || !app_ok {
            return SfResponse::json(
                StatusCode::UNAUTHORIZED,
                &json!({"error": "invalid_client", "error_description": "invalid client credentials"}),
            );
        }
        let token = params.get("token").unwrap_or("");
        let issued = self
            .issued
            .lock()
            .unwrap()
            .iter()
            .find(|i| i.access_token == token)
            .cloned();
        let ended = self.ended.lock().unwrap().contains(token);
        let Some((issued, false)) = issued.map(|i| (i, ended)) else {
            return SfResponse::json(StatusCode::OK, &json!({"active": false}));
        };
        let (org_id, iat) = self
            .introspection
            .issued_at
            .lock()
            .unwrap()
            .get(token)
            .cloned()
            .unwrap_or((issued.org_id.clone(), unix_now()));
        let lifetime = self
            .introspection
            .lifetimes
            .lock()
            .unwrap()
            .get(&org_id)
            .copied()
            .unwrap_or(DEFAULT_SESSION_LIFETIME_SECS);
        let exp = self
            .introspection
            .exps
            .lock()
            .unwrap()
            .get(token)
            .copied()
            .unwrap_or(iat + lifetime);
        if exp <= unix_now() {
            return SfResponse::json(StatusCode::OK, &json!({"active": false}));
        }
        SfResponse::json(
            StatusCode::OK,
            &json!({
                "active": true,
                "scope": "api",
                "client_id": key,
                "username": issued.username,
                "sub": format!("https://{}/id/{}/{}", issued.my_domain, issued.org_id, issued.user_id),
                "token_type": "access_token",
                "exp": exp,
                "iat": iat,
                "nbf": iat,
            }),
        )
    }
}
