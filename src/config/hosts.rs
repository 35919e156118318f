//! Host patterns (`intercept.hosts`, rollout rule hosts) and `[upstream.connect_to]`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

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
            || self.suffixes.iter().any(|s| ends_with_ignore_case(host, s))
    }

    /// The exact names among the patterns (lowercase), without the `*.suffix` ones.
    pub fn exact_names(&self) -> impl Iterator<Item = &str> {
        self.exact.iter().map(String::as_str)
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

/// A DNS name: labels of 1 to 63 letters, digits, `-` or `_`; 253 characters at most.
pub(super) fn is_valid_dns_name(name: &str) -> bool {
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

    /// The hosts that have an entry (lowercase, any port).
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(|(host, _)| host.as_str())
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

/// Does one pattern (`name` or `*.suffix`, case-insensitive) cover `host`? A wildcard covers
/// any depth below its suffix, never the bare suffix.
pub(super) fn pattern_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) => ends_with_ignore_case(host, suffix),
        None => host.eq_ignore_ascii_case(pattern),
    }
}

/// `host` is longer than `suffix` and ends with it, ignoring ASCII case.
fn ends_with_ignore_case(host: &str, suffix: &str) -> bool {
    host.len() > suffix.len()
        && host.is_char_boundary(host.len() - suffix.len())
        && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_to_lookup_ignores_case() {
        let c = ConnectTo::try_from(BTreeMap::from([(
            "Login.Salesforce.com:443".to_string(),
            "127.0.0.1:9".to_string(),
        )]))
        .unwrap();
        assert_eq!(
            c.get("login.salesforce.COM", 443),
            Some("127.0.0.1:9".parse().unwrap())
        );
        assert_eq!(c.get("login.salesforce.com", 8443), None);
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
    fn a_rule_pattern_matches_like_a_host_list_entry() {
        assert!(pattern_matches(
            "*.my.salesforce.com",
            "ACME.my.salesforce.com"
        ));
        assert!(!pattern_matches("*.my.salesforce.com", "my.salesforce.com"));
        assert!(pattern_matches(
            "Login.Salesforce.com",
            "login.salesforce.com"
        ));
        assert!(!pattern_matches(
            "login.salesforce.com",
            "xlogin.salesforce.com"
        ));
    }
}
