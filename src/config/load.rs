//! A `grantshift.toml` file (or text) → a validated [`Config`]. The secrets a config names
//! (proxy passwords in environment variables, JWT key files) come through a [`Secrets`]
//! lookup, so loading can be tested without touching the process environment.

use super::*;
use crate::oauth::jwt::JwtKey;
use std::path::{Path, PathBuf};

/// Where the secrets a config names come from.
pub trait Secrets {
    /// The value of the environment variable `name` (a password), if set.
    fn env(&self, name: &str) -> Option<String>;

    /// The JWT signing key in the PEM file at `path`.
    fn jwt_key(&self, path: &Path) -> Result<JwtKey, String> {
        JwtKey::from_pem_file(path)
    }
}

/// The process environment and the file system: what the running proxy uses.
pub struct ProcessSecrets;

impl Secrets for ProcessSecrets {
    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// Environment variables given as a map (tests, embedding); key files from the file system.
impl Secrets for std::collections::HashMap<String, String> {
    fn env(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl AuthConfig {
    /// Read the password from the environment; errors name `key`.
    fn resolve(
        &self,
        key: &str,
        secrets: &dyn Secrets,
    ) -> Result<crate::access::ProxyAuth, (String, String)> {
        if self.username.is_empty() || self.username.contains(':') {
            return Err((
                format!("{key}.username"),
                "must be non-empty and without ':'".into(),
            ));
        }
        let password = secrets.env(&self.password_env).unwrap_or_default();
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

/// The admin server's bearer token from the environment variable `name`; errors name the
/// key and the variable, never the value.
fn resolve_admin_token(
    name: &str,
    secrets: &dyn Secrets,
) -> Result<crate::access::BearerToken, (String, String)> {
    const KEY: &str = "proxy.admin_token_env";
    let token = zeroize::Zeroizing::new(secrets.env(name).unwrap_or_default());
    if token.is_empty() {
        return Err((
            KEY.into(),
            format!("environment variable {name} is not set or empty"),
        ));
    }
    // RFC 6750 §2.1 b64token: what a client can send after `Bearer ` unchanged.
    let sendable = token.bytes().all(|b| {
        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
    });
    if !sendable {
        return Err((
            KEY.into(),
            format!(
                "the token in {name} may hold only letters, digits and - . _ ~ + / = \
                 (e.g. `openssl rand -hex 32`)"
            ),
        ));
    }
    Ok(crate::access::BearerToken::new(token.as_str()))
}

impl Config {
    /// Load the config named by `path`, else by `$GRANTSHIFT_CONFIG`, else the defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let from_env = std::env::var_os(CONFIG_ENV).map(PathBuf::from);
        match path.map(Path::to_path_buf).or(from_env) {
            Some(file) => Config::load_file(&file),
            None => {
                let cwd = std::env::current_dir().map_err(|error| ConfigError::Read {
                    file: "(working directory)".into(),
                    error,
                })?;
                Config::parse("(defaults)", "", &cwd, &ProcessSecrets)
            }
        }
    }

    /// Load and validate one file.
    pub fn load_file(file: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|error| ConfigError::Read {
            file: file.display().to_string(),
            error,
        })?;
        let base = file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Config::parse(&file.display().to_string(), &text, &base, &ProcessSecrets)
    }

    /// Parse grantshift.toml text; relative paths resolve against `base_dir`.
    pub fn from_toml_str(text: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        Config::from_toml_str_with(text, base_dir, &ProcessSecrets)
    }

    /// [`Config::from_toml_str`] with the secrets it names looked up in `secrets`.
    pub fn from_toml_str_with(
        text: &str,
        base_dir: &Path,
        secrets: &dyn Secrets,
    ) -> Result<Config, ConfigError> {
        Config::parse("(inline config)", text, base_dir, secrets)
    }

    fn parse(
        file: &str,
        text: &str,
        base_dir: &Path,
        secrets: &dyn Secrets,
    ) -> Result<Config, ConfigError> {
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
            .validate(secrets)
            .map_err(|(key, problem)| ConfigError::Invalid {
                file: file.to_string(),
                key,
                problem,
            })?;
        if config.rollout.is_empty() {
            config.rollout.push(RolloutRule::default_rule());
            config.rollout_is_default = true;
        }
        config.source = file.to_string();
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
        resolve(&mut self.state.dir);
        self.upstream.extra_root_certs.iter_mut().for_each(resolve);
    }

    /// Checks serde cannot express, and loading the JWT keys: which key, and what is wrong.
    fn validate(&mut self, secrets: &dyn Secrets) -> Result<(), (String, String)> {
        self.validate_proxy().map_err(|(k, p)| (k.to_string(), p))?;
        if let Some(auth) = &self.proxy.auth {
            self.proxy.auth_resolved = Some(auth.resolve("proxy.auth", secrets)?);
        }
        if let Some(name) = &self.proxy.admin_token_env {
            self.proxy.admin_token = Some(resolve_admin_token(name, secrets)?);
        }
        if let Some(auth) = &self.upstream.proxy_auth {
            if self.upstream.proxy.is_none() {
                return Err(("upstream.proxy_auth".into(), "needs upstream.proxy".into()));
            }
            self.upstream.proxy_auth_resolved = Some(auth.resolve("upstream.proxy_auth", secrets)?);
        }
        self.validate_cluster(secrets)?;
        let cache = &self.token_cache;
        if cache.ttl <= cache.margin {
            return Err((
                "token_cache.margin".into(),
                format!(
                    "must be shorter than token_cache.ttl ({})",
                    humantime_serde::re::humantime::format_duration(cache.ttl)
                ),
            ));
        }
        if cache.max_entries == 0 || cache.max_bytes == 0 {
            return Err((
                "token_cache.max_entries".into(),
                "max_entries and max_bytes must be positive (enabled = false turns the cache off)"
                    .into(),
            ));
        }
        if cache.negative_ttl > Duration::from_secs(60) {
            return Err((
                "token_cache.negative_ttl".into(),
                "at most 60s: a failure is only kept to spare Salesforce a storm".into(),
            ));
        }
        for (i, rule) in self.rollout.iter().enumerate() {
            let key = |field: &str| format!("rollout[{i}].{field}");
            if rule.percent > 100 {
                return Err((key("percent"), "must be between 0 and 100".into()));
            }
            let name = rule.host.strip_prefix("*.").unwrap_or(&rule.host);
            if rule.host != "*" && !hosts::is_valid_dns_name(name) {
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
                if !hosts::is_valid_dns_name(domain) {
                    return Err((
                        key("my_domain"),
                        format!("`{domain}` is not a host name (e.g. acme.my.salesforce.com)"),
                    ));
                }
                // The upgraded login carries the client secret to this host, and the generic
                // login hosts refuse client credentials.
                if !credential.allow_non_salesforce_host && !crate::oauth::is_my_domain_host(domain)
                {
                    return Err((
                        key("my_domain"),
                        format!(
                            "`{domain}` is not a Salesforce My Domain host (X.my.salesforce.com, \
                             X--S.sandbox.my.salesforce.com): it would receive the client secret; \
                             set allow_non_salesforce_host = true on this entry if it is meant"
                        ),
                    ));
                }
            }
            credential.verify_password = Some(credential.verify_mode());
            credential.fingerprint = credential.compute_fingerprint();
            match (credential.flow, &credential.jwt_private_key) {
                (Flow::JwtBearer, None) => {
                    return Err((
                        key("jwt_private_key"),
                        "flow = \"jwt_bearer\" needs the connected app's RSA private key (PEM)"
                            .into(),
                    ))
                }
                (Flow::JwtBearer, Some(path)) => {
                    let loaded = secrets
                        .jwt_key(path)
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
            if let Some(name) = &credential.client_secret_env {
                if credential.flow != Flow::ClientCredentials {
                    return Err((
                        key("client_secret_env"),
                        "only used with flow = \"client_credentials\" (JWT bearer signs with jwt_private_key)".into(),
                    ));
                }
                if credential.client_id.is_none() {
                    return Err((
                        key("client_secret_env"),
                        "needs the connected app's client_id on the same entry".into(),
                    ));
                }
                let secret = zeroize::Zeroizing::new(secrets.env(name).unwrap_or_default());
                if secret.is_empty() {
                    return Err((
                        key("client_secret_env"),
                        format!("environment variable {name} is not set or empty"),
                    ));
                }
                credential.client_secret = Some(ClientSecret::new(&secret));
            }
        }
        Ok(())
    }

    /// `[cluster]`: the URL's scheme, the key and the password from the environment, the
    /// replica's name (default: the host name).
    fn validate_cluster(&mut self, secrets: &dyn Secrets) -> Result<(), (String, String)> {
        let cluster = &mut self.cluster;
        if !cluster.enabled() {
            return Ok(());
        }
        let url = cluster.redis.trim();
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err((
                "cluster.redis".into(),
                "must be a redis:// or rediss:// URL".into(),
            ));
        }
        if let Err(e) = redis::IntoConnectionInfo::into_connection_info(url) {
            return Err((
                "cluster.redis".into(),
                format!("not a Redis URL ({})", e.category()),
            ));
        }
        let key = zeroize::Zeroizing::new(secrets.env(CLUSTER_KEY_ENV).unwrap_or_default());
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        if key.len() != 64 || !decode_hex(key.trim(), &mut bytes[..]) {
            return Err((
                "cluster.redis".into(),
                format!(
                    "needs environment variable {CLUSTER_KEY_ENV}: 64 hex characters (32 random bytes, e.g. `openssl rand -hex 32`)"
                ),
            ));
        }
        cluster.key = Some(Redacted(bytes));
        if let Some(name) = &cluster.password_env {
            let password = zeroize::Zeroizing::new(secrets.env(name).unwrap_or_default());
            if password.is_empty() {
                return Err((
                    "cluster.password_env".into(),
                    format!("environment variable {name} is not set or empty"),
                ));
            }
            cluster.password = Some(Redacted(password));
        }
        if cluster.timeout.is_zero() || cluster.timeout > Duration::from_secs(10) {
            return Err((
                "cluster.timeout".into(),
                "must be between 1ms and 10s: it bounds every Redis call a login may wait for"
                    .into(),
            ));
        }
        if cluster.replica.is_empty() {
            cluster.replica = host_name();
        }
        if cluster.replica.len() > 64 || cluster.replica.chars().any(|c| c.is_control()) {
            return Err((
                "cluster.replica".into(),
                "at most 64 characters, no control characters".into(),
            ));
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
            (
                "telemetry.events_max_queued",
                self.telemetry.events_max_queued as u128,
            ),
            (
                "telemetry.report_max_sets",
                self.telemetry.report_max_sets as u128,
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
        // Two listeners on one port: the second bind would fail after the CA is made.
        let listeners = [
            ("proxy.listen", Some(self.proxy.listen)),
            ("proxy.admin_listen", self.proxy.admin_addr()),
            ("proxy.tls_listen", self.proxy.tls_listen_addr()),
        ];
        for (i, (key, addr)) in listeners.iter().enumerate() {
            let Some(addr) = addr.filter(|a| a.port() != 0) else {
                continue;
            };
            let clash = listeners[..i].iter().find(|(_, other)| {
                other.is_some_and(|o| {
                    o.port() == addr.port()
                        && (o.ip() == addr.ip()
                            || o.ip().is_unspecified()
                            || addr.ip().is_unspecified())
                })
            });
            if let Some((other, _)) = clash {
                return Err((key, format!("{addr} is the address of {other} too")));
            }
        }
        if self.proxy.max_token_body == 0 {
            return Err(("proxy.max_token_body", "must be more than 0".into()));
        }
        if self.proxy.token_body_budget < self.proxy.max_token_body {
            return Err((
                "proxy.token_body_budget",
                format!(
                    "must be at least proxy.max_token_body ({} bytes): otherwise no token request could be buffered whole",
                    self.proxy.max_token_body
                ),
            ));
        }
        if self.proxy.token_body_timeout.is_zero() {
            return Err(("proxy.token_body_timeout", "must be more than 0s".into()));
        }
        if self.proxy.max_concurrent_streams == 0 {
            return Err(("proxy.max_concurrent_streams", "must be more than 0".into()));
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
        if self.proxy.allowed_http_ports.contains(&0) {
            return Err(("proxy.allowed_http_ports", "port 0 is not a port".into()));
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

/// `hex` (even length) into `out` (exactly `hex.len() / 2` bytes); whether it was hex.
fn decode_hex(hex: &str, out: &mut [u8]) -> bool {
    if hex.len() != out.len() * 2 {
        return false;
    }
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        let digit = |b: u8| (b as char).to_digit(16);
        match (digit(pair[0]), digit(pair[1])) {
            (Some(hi), Some(lo)) => out[i] = (hi * 16 + lo) as u8,
            _ => return false,
        }
    }
    true
}

/// This machine's host name (Linux), else `$HOSTNAME`, else `grantshift`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "grantshift".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str_with(
            text,
            Path::new("/etc/grantshift"),
            &std::collections::HashMap::new(),
        )
    }

    #[test]
    fn my_domain_must_be_a_salesforce_my_domain_unless_the_entry_says_otherwise() {
        let entry = |domain: &str, extra: &str| {
            format!(
                "[[credentials]]\nusername = \"int@acme.com\"\nmy_domain = \"{domain}\"\n{extra}"
            )
        };
        for domain in [
            "acme.example.com",
            "login.salesforce.com",
            "test.salesforce.com",
        ] {
            let err = parse(&entry(domain, "")).unwrap_err().to_string();
            assert!(err.contains("credentials[0].my_domain"), "{domain}: {err}");
            assert!(
                err.contains("not a Salesforce My Domain host"),
                "{domain}: {err}"
            );
        }
        for domain in [
            "acme.my.salesforce.com",
            "acme--qa.sandbox.my.salesforce.com",
        ] {
            assert!(parse(&entry(domain, "")).is_ok(), "{domain}");
        }
        let allowed = parse(&entry(
            "acme.example.com",
            "allow_non_salesforce_host = true\n",
        ))
        .expect("allowed explicitly");
        assert!(allowed.credentials[0].allow_non_salesforce_host);
    }

    #[test]
    fn a_cluster_needs_its_key_and_never_prints_it_or_the_password() {
        let key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let env = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<std::collections::HashMap<_, _>>()
        };
        let text = "[cluster]\nredis = \"redis://127.0.0.1:6379/0\"\npassword_env = \"GS_REDIS_PW\"\nreplica = \"gs-a\"\n";
        let secrets = env(&[(CLUSTER_KEY_ENV, key), ("GS_REDIS_PW", "redis-SECRET")]);
        let ok = Config::from_toml_str_with(text, Path::new("/"), &secrets).unwrap();
        assert!(ok.cluster.enabled());
        assert_eq!(ok.cluster.key.as_ref().unwrap().0[..2], [0x00, 0x11]);
        assert_eq!(ok.cluster.replica, "gs-a");
        assert_eq!(ok.cluster.timeout, Duration::from_millis(250));
        let printed = format!("{:?}", ok.cluster);
        assert!(
            !printed.contains("redis-SECRET") && !printed.contains("00112233"),
            "{printed}"
        );
        assert!(!toml::to_string(&ok.cluster)
            .unwrap()
            .contains("redis-SECRET"));
        // No [cluster], or an empty URL: no cluster and no key needed.
        for text in ["", "[cluster]\nredis = \"\"\n"] {
            let c = Config::from_toml_str_with(text, Path::new("/"), &env(&[])).unwrap();
            assert!(!c.cluster.enabled() && c.cluster.key.is_none());
        }
        for (text, secrets, says) in [
            (text, env(&[("GS_REDIS_PW", "x")]), "cluster.redis"),
            (
                text,
                env(&[(CLUSTER_KEY_ENV, "abc"), ("GS_REDIS_PW", "x")]),
                CLUSTER_KEY_ENV,
            ),
            (
                text,
                env(&[(CLUSTER_KEY_ENV, &key.replace('0', "g"))]),
                CLUSTER_KEY_ENV,
            ),
            (text, env(&[(CLUSTER_KEY_ENV, key)]), "cluster.password_env"),
            (
                "[cluster]\nredis = \"http://x\"\n",
                env(&[(CLUSTER_KEY_ENV, key)]),
                "cluster.redis",
            ),
            (
                "[cluster]\nredis = \"redis://x\"\ntimeout = \"0s\"\n",
                env(&[(CLUSTER_KEY_ENV, key)]),
                "cluster.timeout",
            ),
        ] {
            let err = Config::from_toml_str_with(text, Path::new("/"), &secrets)
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{err}");
            assert!(!err.contains("redis-SECRET"), "{err}");
        }
    }

    #[test]
    fn a_soap_apps_secret_comes_from_the_environment_and_is_never_printed() {
        let entry = |extra: &str| {
            format!("[[credentials]]\nusername = \"int@acme.com\"\nmy_domain = \"acme.my.salesforce.com\"\n{extra}")
        };
        let secrets = std::collections::HashMap::from([(
            "GS_TEST_APP_SECRET".to_string(),
            "cs-SECRET-app".to_string(),
        )]);
        let load = |text: &str| Config::from_toml_str_with(text, Path::new("/"), &secrets);
        let ok = load(&entry(
            "client_id = \"app\"\nclient_secret_env = \"GS_TEST_APP_SECRET\"\n",
        ))
        .unwrap();
        let c = &ok.credentials[0];
        assert_eq!(
            c.client_secret.as_ref().map(|s| s.expose()),
            Some("cs-SECRET-app")
        );
        assert_eq!(c.soap_app(), Some("app"));
        assert!(!format!("{c:?}").contains("cs-SECRET-app"));
        assert!(!toml::to_string(c).unwrap().contains("cs-SECRET-app"));
        for (extra, says) in [
            (
                "client_id = \"app\"\nclient_secret_env = \"GS_UNSET\"\n",
                "GS_UNSET is not set or empty",
            ),
            (
                "client_secret_env = \"GS_TEST_APP_SECRET\"\n",
                "needs the connected app's client_id",
            ),
        ] {
            let err = load(&entry(extra)).unwrap_err().to_string();
            assert!(err.contains("credentials[0].client_secret_env"), "{err}");
            assert!(err.contains(says), "{err}");
        }
        // An OAuth-only entry names no app a SOAP login could use.
        assert_eq!(load(&entry("")).unwrap().credentials[0].soap_app(), None);
    }

    #[test]
    fn proxy_passwords_come_from_the_injected_lookup() {
        let text = "[proxy.auth]\nusername = \"ops\"\npassword_env = \"GS_TEST_PROXY_PW\"\n";
        let secrets = std::collections::HashMap::from([(
            "GS_TEST_PROXY_PW".to_string(),
            "hunter2-but-longer".to_string(),
        )]);
        let c = Config::from_toml_str_with(text, Path::new("/"), &secrets).unwrap();
        let auth = c.proxy.auth_resolved.expect("resolved");
        assert_eq!(auth.username, "ops");
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains("proxy.auth.password_env"), "{err}");
        assert!(err.contains("GS_TEST_PROXY_PW is not set"), "{err}");
    }

    #[test]
    fn the_admin_token_comes_from_the_injected_lookup_and_errors_never_show_it() {
        let text = "[proxy]\nadmin_token_env = \"GS_TEST_ADMIN_TOKEN\"\n";
        let with = |value: &str| {
            std::collections::HashMap::from([(
                "GS_TEST_ADMIN_TOKEN".to_string(),
                value.to_string(),
            )])
        };
        let c = Config::from_toml_str_with(text, Path::new("/"), &with("adm-Tok3n")).unwrap();
        let token = c.proxy.admin_token.as_ref().expect("resolved");
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            "Bearer adm-Tok3n".parse().unwrap(),
        );
        assert!(token.accepts(&headers));
        assert!(!format!("{c:?}").contains("adm-Tok3n"));
        assert!(!c.to_toml().contains("adm-Tok3n"));
        assert!(c
            .to_toml()
            .contains("admin_token_env = \"GS_TEST_ADMIN_TOKEN\""));

        for (value, problem) in [
            ("", "GS_TEST_ADMIN_TOKEN is not set or empty"),
            ("two words-SECRET", "may hold only"),
            ("ctl\u{7}-SECRET", "may hold only"),
        ] {
            let err = Config::from_toml_str_with(text, Path::new("/"), &with(value))
                .unwrap_err()
                .to_string();
            assert!(err.contains("proxy.admin_token_env"), "{err}");
            assert!(err.contains(problem), "{err}");
            assert!(!err.contains("SECRET"), "the value is never shown: {err}");
        }
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains("GS_TEST_ADMIN_TOKEN is not set"), "{err}");
    }

    #[test]
    fn destination_keys_default_and_refuse_port_0() {
        let c = parse("").unwrap();
        assert_eq!(c.proxy.allowed_http_ports, vec![80]);
        assert!(c.proxy.allow_destinations.is_empty());
        assert!(c.proxy.admin_token.is_none());
        let c = parse("[proxy]\nallowed_http_ports = []\nallow_destinations = [\"10.0.0.0/8\"]\n")
            .unwrap();
        assert!(c.proxy.allowed_http_ports.is_empty());
        assert_eq!(c.proxy.allow_destinations[0].to_string(), "10.0.0.0/8");
        let err = parse("[proxy]\nallowed_http_ports = [80, 0]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("proxy.allowed_http_ports"), "{err}");
        let err = parse("[proxy]\nallow_destinations = [\"localhost\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("proxy.allow_destinations"), "{err}");
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
    fn two_listeners_on_one_port_are_refused() {
        let err = parse("[proxy]\nlisten = \"127.0.0.1:9464\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("proxy.admin_listen"), "{err}");
        assert!(err.contains("proxy.listen"), "{err}");
        let err = parse("[proxy]\ntls_listen = \"0.0.0.0:3128\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("proxy.tls_listen"), "{err}");
        assert!(
            parse("[proxy]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n").is_ok()
        );
        assert!(parse("[proxy]\nadmin_listen = \"127.0.0.2:3128\"\n").is_ok());
    }

    #[test]
    fn an_intercept_wildcard_over_a_public_suffix_is_refused_naming_the_key() {
        let err = parse("[intercept]\nhosts = [\"login.salesforce.com\", \"*.co.uk\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("intercept.hosts"), "{err}");
        assert!(err.contains("`*.co.uk`"), "{err}");
        assert!(err.contains("public suffix"), "{err}");
        assert!(parse("[intercept]\nhosts = [\"*.acme.co.uk\"]\n").is_ok());
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
    fn effective_settings_round_trip() {
        let c = parse("[upstream]\nconnect_timeout = \"2s\"\n").unwrap();
        let again = Config::from_toml_str(&c.to_toml(), Path::new("/")).unwrap();
        assert_eq!(again.upstream.connect_timeout, Duration::from_secs(2));
        assert_eq!(again.ca.cert, c.ca.cert);
    }
}
