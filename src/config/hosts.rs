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

    /// Each pattern as the name it is for, lowercase, and whether it is a wildcard:
    /// `login.salesforce.com` → (`login.salesforce.com`, false), `*.my.salesforce.com` →
    /// (`my.salesforce.com`, true).
    pub fn names(&self) -> impl Iterator<Item = (&str, bool)> {
        let exact = self.exact.iter().map(|e| (e.as_str(), false));
        exact.chain(self.suffixes.iter().map(|s| (&s[1..], true)))
    }

    /// The registrable domains the patterns fall in (`*.my.salesforce.com` → `salesforce.com`),
    /// sorted, once each; IP addresses have none.
    pub fn domains(&self) -> Vec<String> {
        let mut domains: Vec<String> = self
            .names()
            .filter_map(|(name, _)| registrable_domain(name))
            .map(str::to_string)
            .collect();
        domains.sort();
        domains.dedup();
        domains
    }

    /// The exact names among the patterns (lowercase), without the `*.suffix` ones.
    pub fn exact_names(&self) -> impl Iterator<Item = &str> {
        self.exact.iter().map(String::as_str)
    }
}

/// The registrable domain `name` (lowercase) is in, by the public suffix list:
/// `acme.my.salesforce.com` → `salesforce.com`, `www.acme.co.uk` → `acme.co.uk`. `None` for a
/// public suffix itself (`com`, `co.uk`, `github.io`; an unlisted top-level name such as
/// `internal` counts as one) and for an IP address.
pub fn registrable_domain(name: &str) -> Option<&str> {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    let domain = psl::domain(name.as_bytes())?;
    // The domain is the tail of `name`, so it is ASCII like `name`.
    Some(&name[name.len() - domain.as_bytes().len()..])
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
            // A wildcard above one registrable domain (`*.com`, `*.co.uk`) would decrypt every
            // site under a public suffix.
            if is_wildcard && registrable_domain(name).is_none() {
                return Err(format!(
                    "`{pattern}` covers every site under `{name}`, a public suffix: name one \
                     domain below it (e.g. `*.example.{name}`)"
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
    fn wildcards_above_one_registrable_domain_are_refused() {
        for broad in [
            "*.com",
            "*.co.uk",
            "*.CO.UK",
            "*.github.io",
            "*.internal",
            "*",
        ] {
            let err = HostPatterns::try_from(vec![broad.to_string()])
                .expect_err(broad)
                .to_string();
            assert!(err.contains(broad), "{broad}: {err}");
        }
        let err = HostPatterns::try_from(vec!["*.co.uk".to_string()]).unwrap_err();
        assert!(err.contains("public suffix"), "{err}");
        for fine in [
            "*.acme.co.uk",
            "*.salesforce.com",
            "*.my.salesforce.com",
            "*.acme.github.io",
            "*.corp.internal",
            // An exact name is one host, whatever it is.
            "co.uk",
        ] {
            assert!(
                HostPatterns::try_from(vec![fine.to_string()]).is_ok(),
                "{fine}"
            );
        }
    }

    #[test]
    fn patterns_reduce_to_their_registrable_domains() {
        let p = HostPatterns::try_from(
            [
                "login.salesforce.com",
                "*.my.salesforce.com",
                "*.Force.com",
                "api.acme.co.uk",
                "127.0.0.1",
            ]
            .map(String::from)
            .to_vec(),
        )
        .unwrap();
        assert_eq!(p.domains(), ["acme.co.uk", "force.com", "salesforce.com"]);
        assert_eq!(registrable_domain("co.uk"), None);
        assert_eq!(registrable_domain("::1"), None);
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
