//! `grantshift.toml` → [`Config`]: the schema and its defaults here; reading and validating a
//! file in `load` (secrets through an injected [`Secrets`] lookup); host patterns and
//! `connect_to` in `hosts`.
//!
//! Every key is optional (docs/operating.md, "Configuration"); unknown keys and bad values are
//! errors that name the file, the key and the problem.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

mod hosts;
mod load;

pub use hosts::{registrable_domain, split_host_port, ConnectTo, HostPatterns};
pub use load::{ProcessSecrets, Secrets};

/// The environment variable naming the config file when `-c` is not given.
pub const CONFIG_ENV: &str = "GRANTSHIFT_CONFIG";

/// Leaf certificates kept by default (`proxy.leaf_cache_size`).
pub const DEFAULT_LEAF_CACHE: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The OS error is part of the message, not a `source`: printed with its chain
    /// (`{:#}`), the error would name it twice.
    #[error("{file}: cannot read: {error}")]
    Read { file: String, error: std::io::Error },
    #[error("{file}: {key}: {problem}")]
    Invalid {
        file: String,
        key: String,
        problem: String,
    },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub proxy: ProxyConfig,
    pub ca: CaConfig,
    pub upstream: UpstreamConfig,
    pub intercept: InterceptConfig,
    /// First rule whose host pattern matches a password grant's request host wins. With no
    /// rules: upgrade every set, with fallback (docs/operating.md, "The config file").
    pub rollout: Vec<RolloutRule>,
    /// The file has no `[[rollout]]`: `rollout` holds the built-in default rule alone.
    #[serde(skip)]
    pub rollout_is_default: bool,
    /// One entry per username the clients log in with.
    pub credentials: Vec<Credential>,
    pub telemetry: TelemetryConfig,
    pub state: StateConfig,
    pub token_cache: TokenCacheConfig,
    /// Fleet mode: shared state on Redis (absent or `redis = ""`: none, this replica alone).
    pub cluster: ClusterConfig,
    /// Where this config came from: its file's path, `(defaults)` or `(inline config)` (the
    /// admin page says it; not a config key).
    #[serde(skip)]
    pub source: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Where the proxy front listens. Loopback by default: a proxy that sees passwords is not
    /// opened to a network unless the operator says so.
    pub listen: SocketAddr,
    /// The admin server (`/healthz`, `/readyz`, `/metrics`, `/report`, `/`); `""` disables it.
    pub admin_listen: String,
    /// Transparent TLS listener for clients that ignore proxy settings (DNS or /etc/hosts
    /// points the Salesforce hosts here); `""` (default) disables it.
    pub tls_listen: String,
    /// CONNECT is refused to any other port (Squid's `SSL_ports` rule).
    pub allowed_connect_ports: Vec<u16>,
    /// Absolute-form `http://` requests are refused to any other port (Squid's `Safe_ports`).
    pub allowed_http_ports: Vec<u16>,
    /// Networks a client may reach although they are loopback, link-local or unspecified
    /// (refused by default, like Squid's `deny to_localhost`). Never grantshift's own
    /// listeners.
    pub allow_destinations: Vec<ipnet::IpNet>,
    /// How long SIGTERM/SIGINT waits for in-flight requests and open tunnels.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Token requests larger than this are forwarded untouched (`skipped`, `body_too_large`):
    /// only a token request is ever buffered, and only this much.
    pub max_token_body: usize,
    /// Token request bodies buffered at once, in bytes, over every connection: past it a
    /// token request is forwarded untouched (`skipped`, `memory_budget`).
    pub token_body_budget: usize,
    /// A token request's body must arrive within this after its head; one that is slower is
    /// forwarded untouched as it comes (`skipped`, `body_timeout`).
    #[serde(with = "humantime_serde")]
    pub token_body_timeout: Duration,
    /// Concurrent HTTP/2 streams a client may open on one intercepted connection.
    pub max_concurrent_streams: u32,
    /// Basic proxy authentication; the password is read from the named environment variable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthConfig>,
    /// Client address ranges allowed to use the proxy (empty: all); others get 403.
    pub allow_clients: Vec<ipnet::IpNet>,
    /// Client connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// A request head must arrive within this (slowloris).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Largest request head accepted (bytes).
    pub max_header_bytes: usize,
    /// A client connection with no bytes moving for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A blind tunnel or upgraded (WebSocket) connection idle this long is closed.
    #[serde(with = "humantime_serde")]
    pub tunnel_idle_timeout: Duration,
    /// Hosts whose leaf certificate is kept in memory.
    pub leaf_cache_size: usize,
    /// The environment variable holding the admin server's bearer token (never the token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token_env: Option<String>,
    /// The resolved `auth` (password from the environment); never printed.
    #[serde(skip)]
    pub auth_resolved: Option<crate::access::ProxyAuth>,
    /// The resolved `admin_token_env` (the token); never printed.
    #[serde(skip)]
    pub admin_token: Option<crate::access::BearerToken>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub username: String,
    /// The environment variable holding the password (never the password itself).
    pub password_env: String,
}

impl ProxyConfig {
    /// The admin address, or `None` when disabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_listen.parse().ok()
    }

    /// The transparent TLS address, or `None` when disabled.
    pub fn tls_listen_addr(&self) -> Option<SocketAddr> {
        self.tls_listen.parse().ok()
    }
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 3128)),
            admin_listen: "127.0.0.1:9464".into(),
            tls_listen: String::new(),
            allowed_connect_ports: vec![443],
            allowed_http_ports: vec![80],
            allow_destinations: Vec::new(),
            shutdown_grace: Duration::from_secs(30),
            max_token_body: 65536,
            token_body_budget: 64 * 1024 * 1024,
            token_body_timeout: Duration::from_secs(10),
            max_concurrent_streams: 100,
            auth: None,
            allow_clients: Vec::new(),
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            idle_timeout: Duration::from_secs(300),
            tunnel_idle_timeout: Duration::from_secs(3600),
            leaf_cache_size: DEFAULT_LEAF_CACHE,
            admin_token_env: None,
            auth_resolved: None,
            admin_token: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Default for CaConfig {
    fn default() -> Self {
        CaConfig {
            cert: PathBuf::from("certs/grantshift-ca.pem"),
            key: PathBuf::from("certs/grantshift-ca.key"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// PEM files trusted in addition to the built-in web PKI roots.
    pub extra_root_certs: Vec<PathBuf>,
    /// TCP connect plus TLS handshake to the upstream.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// From sending the request to receiving the response head.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Idle pooled upstream connections are closed after this.
    #[serde(with = "humantime_serde")]
    pub pool_idle_timeout: Duration,
    /// Chain every upstream connection (tunnels and intercepted traffic) through this HTTP
    /// proxy with CONNECT: `"http://host:port"`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "upstream_proxy"
    )]
    pub proxy: Option<UpstreamProxy>,
    /// Basic credentials for `proxy`; the password comes from the named environment variable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_auth: Option<AuthConfig>,
    /// The resolved `proxy_auth`; never printed.
    #[serde(skip)]
    pub proxy_auth_resolved: Option<crate::access::ProxyAuth>,
    /// Dial only hosts listed in `connect_to`; every other host fails as unresolvable.
    /// For sealed environments, tests and fuzzing: nothing is ever looked up in DNS.
    pub connect_to_only: bool,
    /// `"host:port" = "ip:port"`: where a host is dialled (like curl `--connect-to`). TLS names
    /// and Host headers stay the real ones.
    pub connect_to: ConnectTo,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            extra_root_certs: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            pool_idle_timeout: Duration::from_secs(90),
            connect_to_only: false,
            proxy: None,
            proxy_auth: None,
            proxy_auth_resolved: None,
            connect_to: ConnectTo::default(),
        }
    }
}

/// `[upstream].proxy`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamProxy {
    pub host: String,
    pub port: u16,
}

mod upstream_proxy {
    use super::UpstreamProxy;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(p: &Option<UpstreamProxy>, s: S) -> Result<S::Ok, S::Error> {
        match p {
            Some(p) => s.serialize_str(&format!("http://{}:{}", p.host, p.port)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<UpstreamProxy>, D::Error> {
        let text = String::deserialize(d)?;
        let bad = || {
            serde::de::Error::custom(format!(
                "`{text}` must be \"http://host:port\" (credentials go in upstream.proxy_auth)"
            ))
        };
        let rest = text.strip_prefix("http://").ok_or_else(bad)?;
        let rest = rest.trim_end_matches('/');
        if rest.contains('@') || rest.contains('/') {
            return Err(bad());
        }
        let (host, port) = super::split_host_port(rest).ok_or_else(bad)?;
        Ok(Some(UpstreamProxy {
            host: host.to_string(),
            port,
        }))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InterceptConfig {
    /// Hosts whose TLS grantshift terminates; every other host is blind-tunnelled.
    pub hosts: HostPatterns,
}

impl Default for InterceptConfig {
    fn default() -> Self {
        let defaults = [
            "login.salesforce.com",
            "test.salesforce.com",
            "*.my.salesforce.com",
            "*.my.salesforce.mil",
            "*.my-salesforce.com",
            "*.my.sfcrmproducts.cn",
        ];
        InterceptConfig {
            hosts: HostPatterns::try_from(
                defaults.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
            .expect("default intercept hosts are valid"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Forward unchanged, record.
    Observe,
    /// Upgrade the share of credential sets that `percent` selects.
    Upgrade,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutRule {
    /// Exact host, `*.suffix`, or `*` for every host.
    pub host: String,
    pub mode: Mode,
    #[serde(default = "hundred")]
    pub percent: u8,
    #[serde(default = "yes")]
    pub fallback: bool,
}

fn hundred() -> u8 {
    100
}
fn yes() -> bool {
    true
}

impl RolloutRule {
    /// Does this rule's `host` (exact, `*.suffix` or `*`) cover `host`?
    pub fn matches(&self, host: &str) -> bool {
        self.host == "*" || hosts::pattern_matches(&self.host, host)
    }

    /// What the built-in default rule does, in the words the start-up log and `grantshift
    /// check` use.
    pub const DEFAULT_IN_WORDS: &'static str = "no [[rollout]] rules, so the built-in default applies: a password login already sent to a My Domain host (X.my.salesforce.com) is upgraded in place to client credentials, with fallback to the original login; a login sent to login.salesforce.com or test.salesforce.com passes through unchanged unless a [[credentials]] entry maps its username to a My Domain";

    pub(crate) fn default_rule() -> RolloutRule {
        RolloutRule {
            host: "*".into(),
            mode: Mode::Upgrade,
            percent: 100,
            fallback: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flow {
    #[default]
    ClientCredentials,
    JwtBearer,
}

impl Flow {
    pub fn as_str(self) -> &'static str {
        match self {
            Flow::ClientCredentials => "client_credentials",
            Flow::JwtBearer => "jwt_bearer",
        }
    }
}

/// Must an upgraded login's password match its credential set's verifier
/// (docs/operating.md, "Password verifiers")?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyPassword {
    /// Upgrade only a password that matches the verifier; with none, do not upgrade.
    Required,
    /// Upgrade only a password that matches the verifier; with none, upgrade.
    IfKnown,
    /// Upgrade without looking at the password.
    Off,
}

impl VerifyPassword {
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyPassword::Required => "required",
            VerifyPassword::IfKnown => "if_known",
            VerifyPassword::Off => "off",
        }
    }

    /// The default of an entry with `flow`: JWT bearer needs no secret from the client, so the
    /// password is all that stands for the user; client credentials still need the app's
    /// secret.
    pub fn default_for(flow: Flow) -> VerifyPassword {
        match flow {
            Flow::JwtBearer => VerifyPassword::Required,
            Flow::ClientCredentials => VerifyPassword::IfKnown,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub my_domain: Option<String>,
    #[serde(default)]
    pub flow: Flow,
    /// Only requests from this connected app match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_private_key: Option<PathBuf>,
    /// The environment variable holding the connected app's consumer secret, for a SOAP
    /// `login()` upgraded to client credentials (the SOAP call carries no app of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_audience: Option<String>,
    /// Let `my_domain` name a host that is not a Salesforce My Domain (a test double): it
    /// receives the client secret.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_non_salesforce_host: bool,
    /// Must the password of an upgraded login match the verifier? Filled in with the flow's
    /// default when loaded ([`VerifyPassword::default_for`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_password: Option<VerifyPassword>,
    /// A configured verifier (`grantshift hash-password`): wins over a learned one. Never
    /// printed (`grantshift check` leaves it out; `Debug` redacts it).
    #[serde(default, skip_serializing)]
    pub password_hash: Option<crate::password::Verifier>,
    /// The loaded `jwt_private_key` (redacting `Debug`; never serialized).
    #[serde(skip)]
    pub jwt_key: Option<crate::oauth::jwt::JwtKey>,
    /// The secret read from `client_secret_env` when loaded (redacting `Debug`).
    #[serde(skip)]
    pub client_secret: Option<ClientSecret>,
    /// [`Credential::compute_fingerprint`], set when the config is loaded: a reload that
    /// changes the entry drops what the token cache holds for it.
    #[serde(skip)]
    pub fingerprint: [u8; 32],
}

/// A connected app's consumer secret from the environment: redacted in `Debug`, wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret(zeroize::Zeroizing<String>);

impl ClientSecret {
    pub fn new(secret: &str) -> ClientSecret {
        ClientSecret(zeroize::Zeroizing::new(secret.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientSecret(<redacted>)")
    }
}

impl Credential {
    /// A digest of the entry as configured (never its secrets: `password_hash` and the loaded
    /// key are not serialized), for [`Credential::fingerprint`].
    pub fn compute_fingerprint(&self) -> [u8; 32] {
        use sha2::Digest;
        let text = toml::to_string(self).unwrap_or_default();
        sha2::Sha256::digest(text.as_bytes()).into()
    }

    /// `verify_password`, or the flow's default.
    pub fn verify_mode(&self) -> VerifyPassword {
        self.verify_password
            .unwrap_or_else(|| VerifyPassword::default_for(self.flow))
    }

    /// Does this entry name a connected app a SOAP `login()` by its username can be upgraded
    /// with: a `client_id`, and its secret (client credentials) or key (JWT bearer)?
    pub fn soap_app(&self) -> Option<&str> {
        let client_id = self.client_id.as_deref()?;
        match self.flow {
            Flow::ClientCredentials => self.client_secret.as_ref().map(|_| client_id),
            Flow::JwtBearer => self.jwt_key.as_ref().map(|_| client_id),
        }
    }

    /// Is this entry the one for `username` (any case)?
    pub fn is_for(&self, username: &str) -> bool {
        self.username == username || self.username.to_lowercase() == username.to_lowercase()
    }

    /// Does this entry apply to a password grant by `username` from `client_id`?
    pub fn matches(&self, client_id: &str, username: &str) -> bool {
        // Full Unicode lowercase, as the rollout bucket and the report use.
        self.is_for(username) && self.client_id.as_deref().is_none_or(|c| c == client_id)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Append-only JSON lines, one per token request; `""` disables, `"-"` is stdout.
    pub events: String,
    /// Events that may wait for the events writer; while it is stalled, more are dropped
    /// (and counted) instead of holding up logins or memory.
    pub events_max_queued: usize,
    /// Credential sets the report keeps; past this the least recently seen is dropped (and
    /// counted).
    pub report_max_sets: usize,
}

/// `[state]`: what grantshift learns and keeps across restarts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// The directory of the state file (`verifiers.json`: the learned password verifiers).
    /// Created, mode 0700, when the first verifier is learned.
    pub dir: PathBuf,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            dir: PathBuf::from("state"),
        }
    }
}

/// `[token_cache]`: upgraded token responses kept in memory and handed to the next caller with
/// the same credentials (docs/operating.md, "The token cache").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenCacheConfig {
    /// Cache upgraded logins (never a password login forwarded as it came).
    pub enabled: bool,
    /// How long a session lasts at Salesforce (the org's session timeout; 15 minutes is the
    /// shortest Salesforce offers).
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// An entry stops being served this long before `ttl` ends, so no caller gets a session
    /// about to expire.
    #[serde(with = "humantime_serde")]
    pub margin: Duration,
    /// Entries kept at most (least recently used go first).
    pub max_entries: usize,
    /// Bytes of cached responses kept at most.
    pub max_bytes: u64,
    /// After an upgrade fails, logins with the same credentials go straight to fallback for
    /// this long instead of asking Salesforce again (`0s`: never).
    #[serde(with = "humantime_serde")]
    pub negative_ttl: Duration,
    /// Answer a revoke of a token handed out from the cache locally, so the callers sharing
    /// the session keep it; `false` forwards it to Salesforce.
    pub shield_revoke: bool,
    /// After a miss fills an entry from a client-credentials login, ask Salesforce's
    /// introspection endpoint (`POST /services/oauth2/introspect`, RFC 7662; not a login) when
    /// the session ends (`exp`), and serve the entry until `exp - margin` if that comes before
    /// `ttl - margin` (never later); an inactive session is not kept. Off by default: it is
    /// one more request to Salesforce per miss, and `ttl` set to the org's session timeout
    /// does the same without it.
    pub introspect: bool,
}

impl Default for TokenCacheConfig {
    fn default() -> Self {
        TokenCacheConfig {
            enabled: true,
            ttl: Duration::from_secs(15 * 60),
            margin: Duration::from_secs(60),
            max_entries: 1_000,
            max_bytes: 4 * 1024 * 1024,
            negative_ttl: Duration::from_secs(5),
            shield_revoke: true,
            introspect: false,
        }
    }
}

impl TokenCacheConfig {
    /// How long an entry is served: `ttl` minus `margin`.
    pub fn serve_for(&self) -> Duration {
        self.ttl.saturating_sub(self.margin)
    }
}

/// Events that may wait for the events writer by default (`telemetry.events_max_queued`).
pub const DEFAULT_EVENTS_MAX_QUEUED: usize = 10_000;

/// Credential sets the report keeps by default (`telemetry.report_max_sets`).
pub const DEFAULT_REPORT_MAX_SETS: usize = 10_000;

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            events: "grantshift-events.jsonl".into(),
            events_max_queued: DEFAULT_EVENTS_MAX_QUEUED,
            report_max_sets: DEFAULT_REPORT_MAX_SETS,
        }
    }
}

/// The environment variable holding the key that seals what replicas share on Redis
/// (64 hex characters: 32 bytes, AES-256-GCM).
pub const CLUSTER_KEY_ENV: &str = "GRANTSHIFT_CLUSTER_KEY";

/// `[cluster]`: several replicas share state on Redis (docs/operating.md, "Fleet: shared state
/// on Redis").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// `redis://host:port/db` or `rediss://` (TLS); `""` (default): no cluster.
    pub redis: String,
    /// The environment variable holding the Redis AUTH password (never the password).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// This replica's name (events' `replica` field); default: the host name.
    pub replica: String,
    /// Every key this proxy writes starts with it.
    pub prefix: String,
    /// Bound on every Redis call; past it the call counts as failed and local state serves.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// The resolved `password_env`; never printed.
    #[serde(skip)]
    pub password: Option<Redacted<String>>,
    /// The resolved `GRANTSHIFT_CLUSTER_KEY`; never printed.
    #[serde(skip)]
    pub key: Option<Redacted<[u8; 32]>>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            redis: String::new(),
            password_env: None,
            replica: String::new(),
            prefix: "grantshift:".into(),
            timeout: Duration::from_millis(250),
            password: None,
            key: None,
        }
    }
}

impl ClusterConfig {
    /// Whether a cluster is configured.
    pub fn enabled(&self) -> bool {
        !self.redis.trim().is_empty()
    }
}

/// A secret held by the config: wiped when dropped, `<redacted>` when printed.
#[derive(Clone)]
pub struct Redacted<T: zeroize::Zeroize>(pub zeroize::Zeroizing<T>);

impl<T: zeroize::Zeroize> std::fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}
