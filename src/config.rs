//! `grantshift.toml` → [`Config`].
//!
//! Every key is optional (README "Configuration"); unknown keys and bad values are errors that name the file,
//! the key and the problem. Relative paths resolve against the file's own directory (with no
//! file: the working directory), so a config works wherever the proxy is started from.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The environment variable naming the config file when `-c` is not given.
pub const CONFIG_ENV: &str = "GRANTSHIFT_CONFIG";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
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
    /// rules: upgrade every set, with fallback (README "Configuration").
    pub rollout: Vec<RolloutRule>,
    /// One entry per username the clients log in with.
    pub credentials: Vec<Credential>,
    pub telemetry: TelemetryConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Where the proxy front listens. Loopback by default: a proxy that sees passwords is not
    /// opened to a network unless the operator says so.
    pub listen: SocketAddr,
    /// The admin server (`/healthz`, `/metrics`, `/report`, `/`); `""` disables it.
    pub admin_listen: String,
    /// Transparent TLS listener for clients that ignore proxy settings (DNS or /etc/hosts
    /// points the Salesforce hosts here); `""` (default) disables it.
    pub tls_listen: String,
    /// CONNECT is refused to any other port (Squid's `SSL_ports` rule).
    pub allowed_connect_ports: Vec<u16>,
    /// How long SIGTERM/SIGINT waits for in-flight requests and open tunnels.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Token requests larger than this are forwarded untouched (`skipped`, `body_too_large`):
    /// only a token request is ever buffered, and only this much.
    pub max_token_body: usize,
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
    /// The resolved `auth` (password from the environment); never printed.
    #[serde(skip)]
    pub auth_resolved: Option<crate::access::ProxyAuth>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub username: String,
    /// The environment variable holding the password (never the password itself).
    pub password_env: String,
}

impl AuthConfig {
    /// Read the password from the environment; errors name `key`.
    fn resolve(&self, key: &str) -> Result<crate::access::ProxyAuth, (String, String)> {
        if self.username.is_empty() || self.username.contains(':') {
            return Err((
                format!("{key}.username"),
                "must be non-empty and without ':'".into(),
            ));
        }
        let password = std::env::var(&self.password_env).unwrap_or_default();
        if password.is_empty() {
            return Err((
                format!("{key}.password_env"),
                format!(
                    "environment variable {} is not set or empty",
                    self.password_env
                ),
            ));
        }
        Ok(crate::access::ProxyAuth {
            username: self.username.clone(),
            password: password.into(),
        })
    }
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
            shutdown_grace: Duration::from_secs(30),
            max_token_body: 65536,
            auth: None,
            allow_clients: Vec::new(),
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            idle_timeout: Duration::from_secs(300),
            tunnel_idle_timeout: Duration::from_secs(3600),
            leaf_cache_size: crate::mitm::ca::DEFAULT_LEAF_CACHE,
            auth_resolved: None,
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
    pub fn matches(&self, host: &str) -> bool {
        match self.host.strip_prefix("*") {
            Some("") => true,
            Some(suffix) => {
                host.len() > suffix.len()
                    && host.is_char_boundary(host.len() - suffix.len())
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
            None => host.eq_ignore_ascii_case(&self.host),
        }
    }

    fn default_rule() -> RolloutRule {
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_audience: Option<String>,
    /// The loaded `jwt_private_key` (redacting `Debug`; never serialized).
    #[serde(skip)]
    pub jwt_key: Option<crate::oauth::jwt::JwtKey>,
}

impl Credential {
    /// Does this entry apply to a password grant by `username` from `client_id`?
    pub fn matches(&self, client_id: &str, username: &str) -> bool {
        // Full Unicode lowercase, as the rollout bucket and the report use.
        (self.username == username || self.username.to_lowercase() == username.to_lowercase())
            && self.client_id.as_deref().is_none_or(|c| c == client_id)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Append-only JSON lines, one per token request; `""` disables, `"-"` is stdout.
    pub events: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            events: "grantshift-events.jsonl".into(),
        }
    }
}

/// Host patterns: exact names or `*.suffix` wildcards (any depth below the suffix),
/// compared case-insensitively.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct HostPatterns {
    written: Vec<String>,
    exact: Vec<String>,
    /// Stored with the leading dot: `*.my.salesforce.com` → `.my.salesforce.com`.
    suffixes: Vec<String>,
}

impl HostPatterns {
    /// Does `host` (no port) match one of the patterns?
    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        self.exact.iter().any(|e| e.eq_ignore_ascii_case(host))
            || self.suffixes.iter().any(|s| {
                host.len() > s.len()
                    && host.is_char_boundary(host.len() - s.len())
                    && host[host.len() - s.len()..].eq_ignore_ascii_case(s)
            })
    }
}

impl TryFrom<Vec<String>> for HostPatterns {
    type Error = String;
    fn try_from(written: Vec<String>) -> Result<Self, String> {
        let mut exact = Vec::new();
        let mut suffixes = Vec::new();
        for pattern in &written {
            let p = pattern.trim().to_ascii_lowercase();
            let (is_wildcard, name) = match p.strip_prefix("*.") {
                Some(rest) => (true, rest),
                None => (false, p.as_str()),
            };
            if !is_valid_dns_name(name) {
                return Err(format!(
                    "`{pattern}` is not a host name or `*.suffix` pattern"
                ));
            }
            if is_wildcard {
                suffixes.push(format!(".{name}"));
            } else {
                exact.push(name.to_string());
            }
        }
        Ok(HostPatterns {
            written,
            exact,
            suffixes,
        })
    }
}

impl From<HostPatterns> for Vec<String> {
    fn from(p: HostPatterns) -> Vec<String> {
        p.written
    }
}

fn is_valid_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The `[upstream.connect_to]` table, parsed: `(lowercase host, port)` → socket address.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(
    try_from = "BTreeMap<String, String>",
    into = "BTreeMap<String, String>"
)]
pub struct ConnectTo {
    written: BTreeMap<String, String>,
    map: HashMap<(String, u16), SocketAddr>,
}

impl ConnectTo {
    /// Where to dial `host:port`, if overridden.
    pub fn get(&self, host: &str, port: u16) -> Option<SocketAddr> {
        if self.map.is_empty() {
            return None;
        }
        self.map
            .get(&(host.trim_end_matches('.').to_ascii_lowercase(), port))
            .copied()
    }
}

impl TryFrom<BTreeMap<String, String>> for ConnectTo {
    type Error = String;
    fn try_from(written: BTreeMap<String, String>) -> Result<Self, String> {
        let mut map = HashMap::new();
        for (from, to) in &written {
            let (host, port) = split_host_port(from)
                .ok_or_else(|| format!("key `{from}` must be \"host:port\""))?;
            let addr: SocketAddr = to
                .parse()
                .map_err(|_| format!("`{from}` = `{to}`: value must be \"ip:port\""))?;
            map.insert((host.to_ascii_lowercase(), port), addr);
        }
        Ok(ConnectTo { written, map })
    }
}

impl From<ConnectTo> for BTreeMap<String, String> {
    fn from(c: ConnectTo) -> Self {
        c.written
    }
}

/// Split `host:port` (or `[v6]:port`) into host and port.
pub fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || port == 0 {
        return None;
    }
    Some((host, port))
}

impl Config {
    /// Load the config named by `path`, else by `$GRANTSHIFT_CONFIG`, else the defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let from_env = std::env::var_os(CONFIG_ENV).map(PathBuf::from);
        match path.map(Path::to_path_buf).or(from_env) {
            Some(file) => Config::load_file(&file),
            None => {
                let cwd = std::env::current_dir().map_err(|source| ConfigError::Read {
                    file: "(working directory)".into(),
                    source,
                })?;
                Config::parse("(defaults)", "", &cwd)
            }
        }
    }

    /// Load and validate one file.
    pub fn load_file(file: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.display().to_string(),
            source,
        })?;
        let base = file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Config::parse(&file.display().to_string(), &text, &base)
    }

    /// Parse grantshift.toml text; relative paths resolve against `base_dir`.
    pub fn from_toml_str(text: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        Config::parse("(inline config)", text, base_dir)
    }

    fn parse(file: &str, text: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::new(text);
        let mut config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let line = inner
                .span()
                .map(|span| format!(" (line {})", 1 + text[..span.start].matches('\n').count()))
                .unwrap_or_default();
            ConfigError::Invalid {
                file: file.to_string(),
                key: if key == "." {
                    "(top level)".into()
                } else {
                    key
                },
                problem: format!("{}{line}", inner.message().trim_end()),
            }
        })?;
        config.resolve_paths(base_dir);
        config
            .validate()
            .map_err(|(key, problem)| ConfigError::Invalid {
                file: file.to_string(),
                key,
                problem,
            })?;
        if config.rollout.is_empty() {
            config.rollout.push(RolloutRule::default_rule());
        }
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if !matches!(self.telemetry.events.as_str(), "" | "-")
            && Path::new(&self.telemetry.events).is_relative()
        {
            self.telemetry.events = base.join(&self.telemetry.events).display().to_string();
        }
        for credential in &mut self.credentials {
            if let Some(key) = &mut credential.jwt_private_key {
                resolve(key);
            }
        }
        resolve(&mut self.ca.cert);
        resolve(&mut self.ca.key);
        self.upstream.extra_root_certs.iter_mut().for_each(resolve);
    }

    /// Checks serde cannot express, and loading the JWT keys: which key, and what is wrong.
    fn validate(&mut self) -> Result<(), (String, String)> {
        self.validate_proxy().map_err(|(k, p)| (k.to_string(), p))?;
        if let Some(auth) = &self.proxy.auth {
            self.proxy.auth_resolved = Some(auth.resolve("proxy.auth")?);
        }
        if let Some(auth) = &self.upstream.proxy_auth {
            if self.upstream.proxy.is_none() {
                return Err(("upstream.proxy_auth".into(), "needs upstream.proxy".into()));
            }
            self.upstream.proxy_auth_resolved = Some(auth.resolve("upstream.proxy_auth")?);
        }
        for (i, rule) in self.rollout.iter().enumerate() {
            let key = |field: &str| format!("rollout[{i}].{field}");
            if rule.percent > 100 {
                return Err((key("percent"), "must be between 0 and 100".into()));
            }
            let name = rule.host.strip_prefix("*.").unwrap_or(&rule.host);
            if rule.host != "*" && !is_valid_dns_name(name) {
                return Err((
                    key("host"),
                    format!("`{}` is not a host, `*.suffix` or `*`", rule.host),
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, credential) in self.credentials.iter_mut().enumerate() {
            let key = |field: &str| format!("credentials[{i}].{field}");
            if credential.username.trim().is_empty() {
                return Err((key("username"), "must not be empty".into()));
            }
            if !seen.insert((
                credential.username.to_lowercase(),
                credential.client_id.clone(),
            )) {
                return Err((
                    key("username"),
                    format!(
                        "`{}` is listed twice for the same client_id",
                        credential.username
                    ),
                ));
            }
            if let Some(domain) = &credential.my_domain {
                if !is_valid_dns_name(domain) {
                    return Err((
                        key("my_domain"),
                        format!("`{domain}` is not a host name (e.g. acme.my.salesforce.com)"),
                    ));
                }
            }
            match (credential.flow, &credential.jwt_private_key) {
                (Flow::JwtBearer, None) => {
                    return Err((
                        key("jwt_private_key"),
                        "flow = \"jwt_bearer\" needs the connected app's RSA private key (PEM)"
                            .into(),
                    ))
                }
                (Flow::JwtBearer, Some(path)) => {
                    let loaded = crate::oauth::jwt::JwtKey::from_pem_file(path)
                        .map_err(|e| (key("jwt_private_key"), e))?;
                    credential.jwt_key = Some(loaded);
                }
                (Flow::ClientCredentials, Some(_)) => {
                    return Err((
                        key("jwt_private_key"),
                        "only used with flow = \"jwt_bearer\"".into(),
                    ))
                }
                (Flow::ClientCredentials, None) => {}
            }
        }
        Ok(())
    }

    fn validate_proxy(&self) -> Result<(), (&'static str, String)> {
        let positive = [
            ("proxy.max_connections", self.proxy.max_connections as u128),
            (
                "proxy.max_header_bytes",
                self.proxy.max_header_bytes as u128,
            ),
            ("proxy.leaf_cache_size", self.proxy.leaf_cache_size as u128),
            (
                "proxy.header_read_timeout",
                self.proxy.header_read_timeout.as_millis(),
            ),
            ("proxy.idle_timeout", self.proxy.idle_timeout.as_millis()),
            (
                "proxy.tunnel_idle_timeout",
                self.proxy.tunnel_idle_timeout.as_millis(),
            ),
            (
                "upstream.pool_idle_timeout",
                self.upstream.pool_idle_timeout.as_millis(),
            ),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err((key, "must be more than 0".into()));
        }
        if self.proxy.max_header_bytes < 8192 {
            return Err(("proxy.max_header_bytes", "must be at least 8192".into()));
        }
        if !self.proxy.tls_listen.is_empty() && self.proxy.tls_listen_addr().is_none() {
            return Err((
                "proxy.tls_listen",
                format!(
                    "`{}` is not \"ip:port\" (or \"\" to disable)",
                    self.proxy.tls_listen
                ),
            ));
        }
        if !self.proxy.admin_listen.is_empty() && self.proxy.admin_addr().is_none() {
            return Err((
                "proxy.admin_listen",
                format!(
                    "`{}` is not \"ip:port\" (or \"\" to disable)",
                    self.proxy.admin_listen
                ),
            ));
        }
        if self.proxy.max_token_body == 0 {
            return Err(("proxy.max_token_body", "must be more than 0".into()));
        }
        if self.proxy.allowed_connect_ports.is_empty() {
            return Err((
                "proxy.allowed_connect_ports",
                "must name at least one port (443 for HTTPS)".into(),
            ));
        }
        if self.proxy.allowed_connect_ports.contains(&0) {
            return Err(("proxy.allowed_connect_ports", "port 0 is not a port".into()));
        }
        if self.upstream.connect_timeout.is_zero() {
            return Err(("upstream.connect_timeout", "must be more than 0s".into()));
        }
        if self.upstream.request_timeout.is_zero() {
            return Err(("upstream.request_timeout", "must be more than 0s".into()));
        }
        if self.ca.cert == self.ca.key {
            return Err(("ca.key", "must be a different file from ca.cert".into()));
        }
        Ok(())
    }

    /// The effective settings, as TOML (what `grantshift check` prints).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(text, Path::new("/etc/grantshift"))
    }

    #[test]
    fn empty_file_gives_spec_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.proxy.listen.to_string(), "127.0.0.1:3128");
        assert_eq!(c.proxy.allowed_connect_ports, vec![443]);
        assert_eq!(c.upstream.connect_timeout, Duration::from_secs(10));
        assert_eq!(c.upstream.request_timeout, Duration::from_secs(60));
        assert_eq!(
            c.ca.cert,
            Path::new("/etc/grantshift/certs/grantshift-ca.pem")
        );
        assert!(c.intercept.hosts.matches("login.salesforce.com"));
        assert!(c
            .intercept
            .hosts
            .matches("acme--qa.sandbox.my.salesforce.com"));
        assert!(!c.intercept.hosts.matches("example.com"));
    }

    #[test]
    fn unknown_key_is_named() {
        let err = parse("[proxy]\nlistn = \"127.0.0.1:1\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("proxy"), "{err}");
        assert!(err.contains("listn"), "{err}");
    }

    #[test]
    fn bad_duration_is_named() {
        let err = parse("[upstream]\nconnect_timeout = \"ten\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("upstream.connect_timeout"), "{err}");
    }

    #[test]
    fn bad_connect_to_is_named() {
        let err = parse("[upstream.connect_to]\n\"a.example:443\" = \"nowhere\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("upstream.connect_to"), "{err}");
        assert!(err.contains("ip:port"), "{err}");
    }

    #[test]
    fn connect_to_lookup_ignores_case() {
        let c = parse("[upstream.connect_to]\n\"Login.Salesforce.com:443\" = \"127.0.0.1:9\"\n")
            .unwrap();
        assert_eq!(
            c.upstream.connect_to.get("login.salesforce.COM", 443),
            Some("127.0.0.1:9".parse().unwrap())
        );
        assert_eq!(
            c.upstream.connect_to.get("login.salesforce.com", 8443),
            None
        );
    }

    #[test]
    fn wildcards_match_any_depth_but_not_the_bare_suffix() {
        let p = HostPatterns::try_from(vec!["*.my.salesforce.com".to_string()]).unwrap();
        assert!(p.matches("acme.my.salesforce.com"));
        assert!(p.matches("ACME--QA.sandbox.my.salesforce.com"));
        assert!(!p.matches("my.salesforce.com"));
        assert!(!p.matches("evilmy.salesforce.com"));
        assert!(HostPatterns::try_from(vec!["*.".to_string()]).is_err());
        assert!(HostPatterns::try_from(vec!["a b".to_string()]).is_err());
    }

    #[test]
    fn effective_settings_round_trip() {
        let c = parse("[upstream]\nconnect_timeout = \"2s\"\n").unwrap();
        let again = Config::from_toml_str(&c.to_toml(), Path::new("/")).unwrap();
        assert_eq!(again.upstream.connect_timeout, Duration::from_secs(2));
        assert_eq!(again.ca.cert, c.ca.cert);
    }
}
