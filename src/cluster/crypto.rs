//! Sealing what replicas share: AES-256-GCM under the fleet's key (`GRANTSHIFT_CLUSTER_KEY`),
//! a fresh random 96-bit nonce per value, prefixed to the ciphertext. Redis never holds a
//! token, a verifier or an event in the clear, and a value changed in Redis does not open.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::Zeroizing;

const NONCE: usize = 12;

/// The fleet's AEAD key, ready to use.
pub struct Sealer {
    cipher: Aes256Gcm,
}

impl Sealer {
    pub fn new(key: &[u8; 32]) -> Sealer {
        Sealer {
            cipher: Aes256Gcm::new(key.into()),
        }
    }

    /// `nonce || ciphertext || tag`.
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE];
        getrandom::getrandom(&mut nonce).expect("the OS has random bytes");
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plain)
            .expect("AES-GCM seals any length a Redis value has");
        let mut out = Vec::with_capacity(NONCE + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// The plaintext of a [`Sealer::seal`] output under the same key; `None` for anything
    /// else (another key, a changed byte, too short).
    pub fn open(&self, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.len() < NONCE + 16 {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), body)
            .ok()
            .map(Zeroizing::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_unchanged() {
        let a = Sealer::new(&[7u8; 32]);
        let plain = b"{\"access_token\":\"00D!AQ.secret\"}";
        let sealed = a.seal(plain);
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(&a.open(&sealed).unwrap()[..], plain);
        // A fresh nonce each time: the same value seals differently.
        assert_ne!(a.seal(plain), sealed);
        // Another key, a flipped bit, a truncation: nothing.
        assert!(Sealer::new(&[8u8; 32]).open(&sealed).is_none());
        let mut changed = sealed.clone();
        changed[20] ^= 1;
        assert!(a.open(&changed).is_none());
        assert!(a.open(&sealed[..sealed.len() - 1]).is_none());
        assert!(a.open(b"short").is_none());
        assert_eq!(&a.open(&a.seal(b"")).unwrap()[..], b"");
    }
}
