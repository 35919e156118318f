//! JWT bearer assertions (RFC 7523, Salesforce "OAuth 2.0 JWT Bearer Flow"): RS256 signed
//! with the connected app's private key, using the RSA signing already in the rustls (ring)
//! crypto provider: no hand-rolled RSA, no second crypto library.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use rustls::sign::SigningKey;
use rustls::{SignatureAlgorithm, SignatureScheme};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// Salesforce bounds `exp` at three minutes from now.
pub const ASSERTION_LIFETIME_SECS: u64 = 180;

/// An RSA private key loaded from PEM (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`).
#[derive(Clone)]
pub struct JwtKey(Arc<dyn SigningKey>);

/// The same loaded key (not: keys with equal bytes).
impl PartialEq for JwtKey {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for JwtKey {}

/// Private keys never print.
impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwtKey(<redacted>)")
    }
}

impl JwtKey {
    pub fn from_pem_file(path: &Path) -> Result<JwtKey, String> {
        let der =
            PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::from_der(&der).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn from_der(der: &PrivateKeyDer<'_>) -> Result<JwtKey, String> {
        let key = rustls::crypto::ring::sign::any_supported_type(der)
            .map_err(|_| "not a usable private key".to_string())?;
        if key.algorithm() != SignatureAlgorithm::RSA {
            return Err("JWT bearer needs an RSA key (RS256)".into());
        }
        Ok(JwtKey(key))
    }

    /// `base64url(header).base64url(claims).base64url(RS256 signature)`.
    pub fn sign(&self, claims: &Claims<'_>) -> Result<String, String> {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#);
        let body = serde_json::to_vec(claims).map_err(|e| e.to_string())?;
        let signing_input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(body));
        let signer = self
            .0
            .choose_scheme(&[SignatureScheme::RSA_PKCS1_SHA256])
            .ok_or("RSA key cannot sign RS256")?;
        let signature = signer
            .sign(signing_input.as_bytes())
            .map_err(|e| e.to_string())?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

/// The claims Salesforce checks: `iss` = consumer key, `sub` = username, `aud` = login or
/// test URL (or the operator's override), `exp` = now + 180 s.
#[derive(serde::Serialize)]
pub struct Claims<'a> {
    pub iss: &'a str,
    pub sub: &'a str,
    pub aud: &'a str,
    pub exp: u64,
}

impl<'a> Claims<'a> {
    pub fn new(client_id: &'a str, username: &'a str, audience: &'a str, now_unix: u64) -> Self {
        Claims {
            iss: client_id,
            sub: username,
            aud: audience,
            exp: now_unix + ASSERTION_LIFETIME_SECS,
        }
    }
}

/// `aud` per docs/operating.md, "The upgrade": the credential's `jwt_audience`, else test for test/sandbox hosts,
/// else login.
pub fn audience<'a>(configured: Option<&'a str>, original_host: &str) -> &'a str {
    match configured {
        Some(aud) => aud,
        None if super::is_sandbox_host(original_host) => "https://test.salesforce.com",
        None => "https://login.salesforce.com",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audience_follows_the_original_host() {
        assert_eq!(
            audience(None, "login.salesforce.com"),
            "https://login.salesforce.com"
        );
        assert_eq!(
            audience(None, "test.salesforce.com"),
            "https://test.salesforce.com"
        );
        assert_eq!(
            audience(None, "acme--qa.sandbox.my.salesforce.com"),
            "https://test.salesforce.com"
        );
        assert_eq!(
            audience(Some("https://x"), "test.salesforce.com"),
            "https://x"
        );
    }

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    #[test]
    fn assertion_is_rs256_over_the_claims_with_pkcs8_and_pkcs1_keys() {
        let public = std::fs::read(fixture("jwt-app.rsa-public.der")).unwrap();
        for file in ["jwt-app.pkcs8.pem", "jwt-app.pkcs1.pem"] {
            let key = JwtKey::from_pem_file(&fixture(file)).unwrap();
            let jwt = key
                .sign(&Claims::new(
                    "3MVG.app",
                    "u+1@acme.com",
                    "https://login.salesforce.com",
                    1000,
                ))
                .unwrap();
            let parts: Vec<&str> = jwt.split('.').collect();
            assert_eq!(parts.len(), 3);
            let header = URL_SAFE_NO_PAD.decode(parts[0]).unwrap();
            assert_eq!(header, br#"{"alg":"RS256"}"#);
            let claims: serde_json::Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
            assert_eq!(
                claims,
                serde_json::json!({"iss": "3MVG.app", "sub": "u+1@acme.com",
                                   "aud": "https://login.salesforce.com", "exp": 1180})
            );
            let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
            ring::signature::UnparsedPublicKey::new(
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                &public,
            )
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .expect("signature verifies with the app's public key");
            assert!(!format!("{key:?}").contains("BEGIN"));
        }
    }

    #[test]
    fn non_rsa_keys_are_refused() {
        let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let der = PrivateKeyDer::try_from(ec.serialize_der()).unwrap();
        assert!(JwtKey::from_der(&der).unwrap_err().contains("RSA"));
    }
}
