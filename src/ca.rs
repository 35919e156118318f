//! grantshift's certificate authority: load or create it, and mint leaf certificates per host.
//!
//! Leaves share one ECDSA P-256 key generated at start (cheap handshakes, one key in memory),
//! carry random serials and a short validity, and are cached per host in a bounded cache, so a
//! host's certificate is minted once, not once per connection.

use quick_cache::sync::Cache;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ServerSessionMemoryCache, StoresServerSessions};
use rustls::ServerConfig;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// How long a minted leaf is valid. Short: a leaked leaf is worth little.
const LEAF_VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);
/// Re-mint a cached leaf after this long, well before it expires.
const LEAF_REFRESH: Duration = Duration::from_secs(24 * 3600);
/// Leaves are back-dated this much to tolerate client clock skew.
const LEAF_BACKDATE: Duration = Duration::from_secs(3600);
/// Default number of hosts whose leaf is cached.
pub use crate::config::DEFAULT_LEAF_CACHE;

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("CA certificate {cert} exists but its key {key} does not: restore the key, or remove the certificate to create a new CA")]
    KeyMissing { cert: PathBuf, key: PathBuf },
    #[error("CA key {key} exists but its certificate {cert} does not: restore the certificate, or remove the key to create a new CA")]
    CertMissing { cert: PathBuf, key: PathBuf },
    #[error("{path}: {problem}")]
    File { path: PathBuf, problem: String },
    #[error("minting a certificate for {host}: {problem}")]
    Mint { host: String, problem: String },
}

/// The loaded CA plus the per-host cache of ready-to-use TLS server configs.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_path: PathBuf,
    leaf_key: KeyPair,
    provider: Arc<CryptoProvider>,
    /// Shared by every per-host config so resumption works across hosts' configs.
    sessions: Arc<dyn StoresServerSessions>,
    ticketer: Arc<dyn rustls::server::ProducesTickets>,
    leaves: Cache<String, Arc<Leaf>>,
}

struct Leaf {
    minted: Instant,
    config: Arc<ServerConfig>,
}

impl CertificateAuthority {
    /// Load the CA if both files exist, create both if both are absent; one without the
    /// other is an error (a silently regenerated CA would break every client's trust).
    pub fn load_or_create(
        cert: &Path,
        key: &Path,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, CaError> {
        let (cert_pem, key_pem) = match (cert.exists(), key.exists()) {
            (true, true) => {
                refuse_shared_key(key)?;
                (read(cert)?, read(key)?)
            }
            (true, false) => {
                return Err(CaError::KeyMissing {
                    cert: cert.into(),
                    key: key.into(),
                })
            }
            (false, true) => {
                return Err(CaError::CertMissing {
                    cert: cert.into(),
                    key: key.into(),
                })
            }
            (false, false) => create_ca_files(cert, key)?,
        };
        let ca_key = KeyPair::from_pem(&key_pem).map_err(|e| CaError::File {
            path: key.into(),
            problem: format!("not a usable private key: {e}"),
        })?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, ca_key).map_err(|e| CaError::File {
            path: cert.into(),
            problem: format!("not a usable CA certificate: {e}"),
        })?;
        let leaf_key =
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| CaError::Mint {
                host: "(leaf key)".into(),
                problem: e.to_string(),
            })?;
        let ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| CaError::Mint {
            host: "(session tickets)".into(),
            problem: e.to_string(),
        })?;
        Ok(CertificateAuthority {
            issuer,
            cert_pem,
            cert_path: cert.into(),
            leaf_key,
            provider,
            sessions: ServerSessionMemoryCache::new(4096),
            ticketer,
            leaves: Cache::new(DEFAULT_LEAF_CACHE),
        })
    }

    /// Keep leaves for up to `hosts` hosts (`[proxy].leaf_cache_size`).
    pub fn with_cache_size(mut self, hosts: usize) -> Self {
        self.leaves = Cache::new(hosts.max(1));
        self
    }

    /// The CA certificate, PEM: what clients must trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// A TLS server config presenting a leaf for `host`: cached, minted on first use or when
    /// the cached one is due for refresh. Concurrent first connections mint once.
    pub fn server_config_for(&self, host: &str) -> Result<Arc<ServerConfig>, CaError> {
        let key = host.trim_end_matches('.').to_ascii_lowercase();
        if let Some(leaf) = self.leaves.get(&key) {
            if leaf.minted.elapsed() < LEAF_REFRESH {
                return Ok(leaf.config.clone());
            }
            self.leaves.remove(&key);
        }
        let leaf = self
            .leaves
            .get_or_insert_with(&key, || self.mint(&key).map(Arc::new))?;
        Ok(leaf.config.clone())
    }

    /// Number of hosts with a cached leaf (bounded by the cache capacity).
    pub fn cached_leaves(&self) -> usize {
        self.leaves.len()
    }

    fn mint(&self, host: &str) -> Result<Leaf, CaError> {
        let mint_err = |e: &dyn std::fmt::Display| CaError::Mint {
            host: host.to_string(),
            problem: e.to_string(),
        };
        let mut params =
            CertificateParams::new(vec![host.to_string()]).map_err(|e| mint_err(&e))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        params.distinguished_name = dn;
        params.serial_number = Some(random_serial(&self.provider)?);
        let now = OffsetDateTime::now_utc();
        params.not_before = now - LEAF_BACKDATE;
        params.not_after = now + LEAF_VALIDITY;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&self.leaf_key, &self.issuer)
            .map_err(|e| mint_err(&e))?;

        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key.serialize_der()));
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| mint_err(&e))?
            .with_no_client_auth()
            .with_single_cert(vec![CertificateDer::from(cert.der().to_vec())], key_der)
            .map_err(|e| mint_err(&e))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config.session_storage = self.sessions.clone();
        config.ticketer = self.ticketer.clone();
        Ok(Leaf {
            minted: Instant::now(),
            config: Arc::new(config),
        })
    }
}

/// 16 random bytes, top bit clear (a positive DER integer), as RFC 5280 §4.1.2.2 asks.
fn random_serial(provider: &CryptoProvider) -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    provider
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| CaError::Mint {
            host: "(serial)".into(),
            problem: "no randomness".into(),
        })?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

/// A CA key that others can read lets them impersonate every intercepted host.
fn refuse_shared_key(key: &Path) -> Result<(), CaError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(key)
            .map_err(|e| CaError::File {
                path: key.into(),
                problem: e.to_string(),
            })?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(CaError::File {
                path: key.into(),
                problem: format!(
                    "the CA key is readable by group or others (mode {:o}); fix with: chmod 600 {}",
                    mode & 0o777,
                    key.display()
                ),
            });
        }
    }
    Ok(())
}

fn read(path: &Path) -> Result<String, CaError> {
    std::fs::read_to_string(path).map_err(|e| CaError::File {
        path: path.into(),
        problem: e.to_string(),
    })
}

/// Create a new CA: certificate (0644) and key (0600, created exclusively so an existing key
/// is never overwritten).
fn create_ca_files(cert: &Path, key: &Path) -> Result<(String, String), CaError> {
    let file_err = |path: &Path, e: &dyn std::fmt::Display| CaError::File {
        path: path.into(),
        problem: e.to_string(),
    };
    let ca_key =
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| file_err(key, &e))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "grantshift");
    dn.push(
        DnType::CommonName,
        format!("grantshift CA {}", OffsetDateTime::now_utc().date()),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(random_serial(&rustls::crypto::ring::default_provider())?);
    let now = OffsetDateTime::now_utc();
    params.not_before = now - LEAF_BACKDATE;
    params.not_after = now + Duration::from_secs(10 * 365 * 24 * 3600);
    let ca_cert = params
        .self_signed(&ca_key)
        .map_err(|e| file_err(cert, &e))?;

    for path in [cert, key] {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| file_err(dir, &e))?;
        }
    }
    let key_pem = ca_key.serialize_pem();
    write_new(key, key_pem.as_bytes(), 0o600).map_err(|e| file_err(key, &e))?;
    let cert_pem = ca_cert.pem();
    write_new(cert, cert_pem.as_bytes(), 0o644).map_err(|e| file_err(cert, &e))?;
    tracing::info!(cert = %cert.display(), key = %key.display(), "created a new grantshift CA");
    Ok((cert_pem, key_pem))
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca(dir: &Path) -> CertificateAuthority {
        CertificateAuthority::load_or_create(
            &dir.join("ca.pem"),
            &dir.join("ca.key"),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .unwrap()
    }

    #[test]
    fn ca_is_created_once_then_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let first = ca(dir.path()).cert_pem().to_string();
        let second = ca(dir.path()).cert_pem().to_string();
        assert_eq!(first, second);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("ca.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn one_file_without_the_other_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        ca(dir.path());
        std::fs::remove_file(dir.path().join("ca.key")).unwrap();
        let err = CertificateAuthority::load_or_create(
            &dir.path().join("ca.pem"),
            &dir.path().join("ca.key"),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .err()
        .unwrap();
        assert!(matches!(err, CaError::KeyMissing { .. }), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn a_group_readable_key_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        ca(dir.path());
        let key = dir.path().join("ca.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = CertificateAuthority::load_or_create(
            &dir.path().join("ca.pem"),
            &key,
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }

    #[test]
    fn leaf_is_minted_once_per_host_and_cache_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca(dir.path());
        let a = ca.server_config_for("login.salesforce.com").unwrap();
        let b = ca.server_config_for("LOGIN.salesforce.com").unwrap();
        assert!(Arc::ptr_eq(&a, &b), "same host must reuse the cached leaf");
        for i in 0..(DEFAULT_LEAF_CACHE + 200) {
            ca.server_config_for(&format!("h{i}.my.salesforce.com"))
                .unwrap();
        }
        assert!(ca.cached_leaves() <= DEFAULT_LEAF_CACHE + 1);
    }
}
