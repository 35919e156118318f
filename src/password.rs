//! Passwords and what grantshift keeps of them (docs/operating.md, "Password verifiers"). Pure:
//! no I/O, but [`Verifier::hash`] and [`Verifier::matches`] are slow on purpose (Argon2id), so
//! the proxy runs them off its async threads (`verifiers`).
//!
//! - [`Password`]: the password a login carries (with the security token appended, as the
//!   client sends it). Redacted in `Debug`, wiped when dropped.
//! - [`Verifier`]: an Argon2id PHC string of a password (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`),
//!   made with [`Cost::OWASP`] and a fresh salt. Redacted in `Debug`; its text goes only into
//!   the state file.
//! - [`DigestKey`] / [`Digest`]: HMAC-SHA-256 of a password under a key that lives only in
//!   this process's memory: once a password has matched a verifier, its digest tells the next
//!   login with the same password without paying for Argon2 again.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// A password as a client sent it. Never printed; wiped on drop.
#[derive(Clone)]
pub struct Password(Zeroizing<String>);

impl Password {
    pub fn new(password: &str) -> Password {
        Password(Zeroizing::new(password.to_owned()))
    }

    fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Constant time: a comparison must not tell how much of a password was right.
impl PartialEq for Password {
    fn eq(&self, other: &Password) -> bool {
        self.as_bytes().ct_eq(other.as_bytes()).into()
    }
}

impl Eq for Password {}

/// Argon2id cost parameters: memory in KiB, passes, lanes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    pub memory_kib: u32,
    pub passes: u32,
    pub lanes: u32,
}

impl Cost {
    /// The cheapest cost Argon2 accepts: for unit tests that only need some verifier.
    #[cfg(test)]
    pub const CHEAPEST: Cost = Cost {
        memory_kib: 8,
        passes: 1,
        lanes: 1,
    };

    /// OWASP's Password Storage Cheat Sheet, Argon2id: 19 MiB of memory, 2 passes, 1 lane
    /// (one of its equivalent settings; the one that costs the least memory at t = 2).
    pub const OWASP: Cost = Cost {
        memory_kib: 19 * 1024,
        passes: 2,
        lanes: 1,
    };

    fn params(self) -> Result<Params, argon2::Error> {
        Params::new(self.memory_kib, self.passes, self.lanes, None)
    }
}

/// The most memory a verifier may ask for (1 GiB): a typo in a configured hash must not
/// make every check allocate gigabytes.
pub const MAX_MEMORY_KIB: u32 = 1024 * 1024;

/// A validated Argon2id PHC string. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Verifier(Arc<str>);

/// Why a string is not a verifier grantshift accepts. Names no part of the string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an Argon2id password hash ($argon2id$v=19$m=…,t=…,p=…$<salt>$<hash>): {0}; make one with `grantshift hash-password`")]
pub struct BadVerifier(&'static str);

impl Verifier {
    /// Check `phc` is an Argon2id PHC string with a salt, a hash and parameters Argon2 accepts
    /// (memory at most [`MAX_MEMORY_KIB`]).
    pub fn parse(phc: &str) -> Result<Verifier, BadVerifier> {
        let hash = PasswordHash::new(phc).map_err(|_| BadVerifier("it does not parse"))?;
        if hash.algorithm != Algorithm::Argon2id.ident() {
            return Err(BadVerifier("the algorithm is not argon2id"));
        }
        if hash.salt.is_none() || hash.hash.is_none() {
            return Err(BadVerifier("it has no salt or no hash"));
        }
        let params =
            Params::try_from(&hash).map_err(|_| BadVerifier("its parameters are not valid"))?;
        if params.m_cost() > MAX_MEMORY_KIB {
            return Err(BadVerifier("it asks for more than 1 GiB of memory"));
        }
        Ok(Verifier(phc.into()))
    }

    /// A new verifier of `password`: Argon2id with `cost` and a random 16-byte salt. Slow.
    pub fn hash(password: &Password, cost: Cost) -> Verifier {
        let mut salt = [0u8; 16];
        getrandom::getrandom(&mut salt).expect("the OS random number generator");
        let salt = SaltString::encode_b64(&salt).expect("16 bytes encode");
        let params = cost.params().expect("valid Argon2 parameters");
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let hash = argon2
            .hash_password(password.as_bytes(), &salt)
            .expect("Argon2 hashes any password");
        Verifier(hash.to_string().into())
    }

    /// Does `password` match? Argon2id with this verifier's own parameters and salt. Slow.
    pub fn matches(&self, password: &Password) -> bool {
        let Ok(hash) = PasswordHash::new(&self.0) else {
            return false;
        };
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    }

    /// The PHC string: for the state file, nothing else.
    pub fn as_phc(&self) -> &str {
        &self.0
    }

    /// Its cost parameters.
    pub fn cost(&self) -> Cost {
        let params = PasswordHash::new(&self.0)
            .ok()
            .and_then(|h| Params::try_from(&h).ok())
            .expect("validated when made");
        Cost {
            memory_kib: params.m_cost(),
            passes: params.t_cost(),
            lanes: params.p_cost(),
        }
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Verifier(<redacted>)")
    }
}

/// Read from a config string: validated, never echoed in the error.
impl<'de> serde::Deserialize<'de> for Verifier {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Verifier, D::Error> {
        let text = Zeroizing::new(String::deserialize(d)?);
        Verifier::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The key of this process's password digests: random, in memory only.
pub struct DigestKey([u8; 32]);

impl DigestKey {
    pub fn random() -> DigestKey {
        let mut key = [0u8; 32];
        getrandom::getrandom(&mut key).expect("the OS random number generator");
        DigestKey(key)
    }

    /// HMAC-SHA-256 of `password`.
    pub fn digest(&self, password: &Password) -> Digest {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key");
        mac.update(password.as_bytes());
        Digest(mac.finalize().into_bytes().into())
    }
}

impl Drop for DigestKey {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.0.zeroize();
    }
}

impl fmt::Debug for DigestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DigestKey(<redacted>)")
    }
}

/// A password's keyed digest. Compared in constant time; never printed.
#[derive(Clone)]
pub struct Digest([u8; 32]);

impl PartialEq for Digest {
    fn eq(&self, other: &Digest) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for Digest {}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Digest(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: Cost = Cost::CHEAPEST;

    #[test]
    fn a_verifier_matches_its_password_only() {
        let v = Verifier::hash(&Password::new("pw-SECRET-1"), CHEAP);
        assert!(v.matches(&Password::new("pw-SECRET-1")));
        assert!(!v.matches(&Password::new("pw-SECRET-2")));
        assert!(!v.matches(&Password::new("")));
        // Each has its own salt.
        let again = Verifier::hash(&Password::new("pw-SECRET-1"), CHEAP);
        assert_ne!(v.as_phc(), again.as_phc());
        assert!(again.matches(&Password::new("pw-SECRET-1")));
    }

    #[test]
    fn new_verifiers_use_owasp_parameters() {
        let v = Verifier::hash(&Password::new("pw"), Cost::OWASP);
        assert!(
            v.as_phc().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}",
            v.as_phc()
        );
        assert_eq!(v.cost(), Cost::OWASP);
        assert!(v.matches(&Password::new("pw")));
        assert_eq!(Verifier::parse(v.as_phc()), Ok(v));
    }

    #[test]
    fn only_argon2id_phc_strings_with_sane_parameters_parse() {
        let good = Verifier::hash(&Password::new("pw"), CHEAP);
        let phc = good.as_phc();
        let argon2i = phc.replacen("$argon2id$", "$argon2i$", 1);
        let huge = phc.replacen("m=8,", "m=2097152,", 1);
        for (text, why) in [
            ("", "it does not parse"),
            ("hunter2", "it does not parse"),
            (argon2i.as_str(), "the algorithm is not argon2id"),
            (huge.as_str(), "more than 1 GiB"),
            ("$argon2id$v=19$m=8,t=1,p=1", "no salt"),
        ] {
            let err = Verifier::parse(text).unwrap_err().to_string();
            assert!(err.contains(why), "{text:?}: {err}");
            assert!(err.contains("grantshift hash-password"), "{err}");
        }
        assert!(Verifier::parse(phc).is_ok());
    }

    #[test]
    fn nothing_secret_is_printed() {
        let pw = Password::new("pw-SECRET-x");
        let v = Verifier::hash(&pw, CHEAP);
        let key = DigestKey::random();
        let d = key.digest(&pw);
        let printed = format!("{pw:?} {v:?} {key:?} {d:?}");
        assert!(!printed.contains("SECRET"), "{printed}");
        assert!(!printed.contains("argon2"), "{printed}");
    }

    #[test]
    fn digests_are_keyed_and_tell_passwords_apart() {
        let key = DigestKey::random();
        let a = Password::new("a");
        assert_eq!(key.digest(&a), key.digest(&Password::new("a")));
        assert_ne!(key.digest(&a), key.digest(&Password::new("b")));
        assert_ne!(key.digest(&a), DigestKey::random().digest(&a));
    }
}
