//! Who may use the proxy: client address ranges (`[proxy].allow_clients`), proxy
//! authentication (`[proxy].auth`, Basic `Proxy-Authorization`, RFC 9110 §11.7.1), and the
//! admin server's bearer token (`[proxy].admin_token_env`, RFC 6750 §2.1).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::header::{AUTHORIZATION, PROXY_AUTHORIZATION};
use http::HeaderMap;
use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use subtle::ConstantTimeEq;

/// Is `ip` inside one of `allowed` (empty: everyone)?
pub fn client_allowed(allowed: &[IpNet], ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    allowed.is_empty() || allowed.iter().any(|net| net.contains(&ip))
}

/// The proxy's credentials: the password is held as a secret and compared in constant time.
#[derive(Clone)]
pub struct ProxyAuth {
    pub username: String,
    pub password: SecretString,
}

impl std::fmt::Debug for ProxyAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl ProxyAuth {
    /// Does `Proxy-Authorization: Basic …` carry our username and password? Both are compared
    /// as SHA-256 digests in constant time, so neither length nor content leaks through timing.
    pub fn accepts(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers
            .get(PROXY_AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let Some((scheme, encoded)) = value.trim().split_once(' ') else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case("basic") {
            return false;
        }
        let Ok(decoded) = STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let decoded = zeroize::Zeroizing::new(decoded);
        let Some(colon) = decoded.iter().position(|&b| b == b':') else {
            return false;
        };
        let (user, pass) = (&decoded[..colon], &decoded[colon + 1..]);
        let user_ok = digest(user).ct_eq(&digest(self.username.as_bytes()));
        let pass_ok = digest(pass).ct_eq(&digest(self.password.expose_secret().as_bytes()));
        (user_ok & pass_ok).into()
    }
}

/// The admin server's bearer token, held as a secret and compared in constant time.
#[derive(Clone)]
pub struct BearerToken(SecretString);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

impl BearerToken {
    pub fn new(token: &str) -> BearerToken {
        BearerToken(SecretString::from(token))
    }

    /// Does `Authorization: Bearer …` carry this token? Compared as SHA-256 digests in
    /// constant time, so neither its length nor its content leaks through timing.
    pub fn accepts(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(AUTHORIZATION).map(|v| v.as_bytes()) else {
            return false;
        };
        let Some(space) = value.iter().position(|&b| b == b' ') else {
            return false;
        };
        let (scheme, presented) = (&value[..space], value[space + 1..].trim_ascii());
        if !scheme.eq_ignore_ascii_case(b"bearer") {
            return false;
        }
        digest(presented)
            .ct_eq(&digest(self.0.expose_secret().as_bytes()))
            .into()
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> ProxyAuth {
        ProxyAuth {
            username: "ops".into(),
            password: SecretString::from("s3cret:with:colons"),
        }
    }

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(PROXY_AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn basic_credentials_are_checked() {
        let good = format!("Basic {}", STANDARD.encode("ops:s3cret:with:colons"));
        assert!(auth().accepts(&with(&good)));
        assert!(auth().accepts(&with(&good.replace("Basic", "basic"))));
        assert!(!auth().accepts(&with(&format!("Basic {}", STANDARD.encode("ops:wrong")))));
        assert!(!auth().accepts(&with(&format!(
            "Basic {}",
            STANDARD.encode("other:s3cret:with:colons")
        ))));
        assert!(!auth().accepts(&with("Bearer abc")));
        assert!(!auth().accepts(&with("Basic !!!")));
        assert!(!auth().accepts(&HeaderMap::new()));
        assert!(!format!("{:?}", auth()).contains("s3cret"));
    }

    #[test]
    fn bearer_tokens_are_checked() {
        let token = BearerToken::new("adm-t0ken_42");
        let with_auth = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert(AUTHORIZATION, value.parse().unwrap());
            h
        };
        assert!(token.accepts(&with_auth("Bearer adm-t0ken_42")));
        assert!(token.accepts(&with_auth("bearer  adm-t0ken_42")));
        assert!(!token.accepts(&with_auth("Bearer adm-t0ken_4")));
        assert!(!token.accepts(&with_auth("Bearer adm-t0ken_42x")));
        assert!(!token.accepts(&with_auth("Bearer ")));
        assert!(!token.accepts(&with_auth("Basic adm-t0ken_42")));
        assert!(!token.accepts(&with_auth("adm-t0ken_42")));
        assert!(!token.accepts(&HeaderMap::new()));
        assert!(!format!("{token:?}").contains("t0ken"));
    }

    #[test]
    fn client_ranges() {
        let nets: Vec<IpNet> = vec![
            "10.0.0.0/8".parse().unwrap(),
            "127.0.0.1/32".parse().unwrap(),
        ];
        assert!(client_allowed(&nets, "10.1.2.3".parse().unwrap()));
        assert!(client_allowed(&nets, "::ffff:127.0.0.1".parse().unwrap()));
        assert!(!client_allowed(&nets, "127.0.0.2".parse().unwrap()));
        assert!(client_allowed(&[], "192.0.2.1".parse().unwrap()));
    }
}
