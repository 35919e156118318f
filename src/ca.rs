//! grantshift's certificate authority: load or create it, and mint leaf certificates per host.
//!
//! Leaves share one ECDSA P-256 key generated at start (cheap handshakes, one key in memory),
//! carry random serials and a short validity, and are cached per host in a bounded cache, so a
//! host's certificate is minted once, not once per connection.
//!
//! A CA grantshift creates is valid for two years and carries critical X.509 name constraints:
//! it may sign only for names under the Salesforce domains and the registrable domains of
//! `intercept.hosts`, and for no IP address, so a leaked key cannot impersonate other sites to
//! clients that honour constraints. [`CaInfo`] reads them off a loaded CA, and [`CaWarning`]
//! says when a CA is unconstrained, does not cover an intercepted host, or is about to expire;
//! [`renew`] replaces the CA, keeping the old files as backups.

use crate::config::HostPatterns;
use quick_cache::sync::Cache;
use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    NameConstraints, PublicKeyData, SerialNumber,
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
/// How long a new CA is valid. Two years: a CA outlives many leaves, and every renewal means
/// handing clients a new certificate to trust, but a key that leaks should not stay useful for
/// a decade; grantshift moves integrations off a login flow that Salesforce retires in 2027,
/// so two years spans a migration.
pub const CA_VALIDITY: Duration = Duration::from_secs(2 * 365 * 24 * 3600);
/// Warn at start when the CA expires within this.
const CA_EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);
/// The domains every CA grantshift creates may sign for: the registrable domains of the
/// default `intercept.hosts` (Salesforce's login hosts and My Domains, Government Cloud, China).
pub const SALESFORCE_DOMAINS: [&str; 4] = [
    "salesforce.com",
    "salesforce.mil",
    "my-salesforce.com",
    "sfcrmproducts.cn",
];
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

/// The DNS subtrees a new CA is constrained to: [`SALESFORCE_DOMAINS`] and the registrable
/// domains of `hosts` (`*.force.com` → `force.com`), sorted, once each.
pub fn permitted_domains(hosts: &HostPatterns) -> Vec<String> {
    let mut domains: Vec<String> = SALESFORCE_DOMAINS.iter().map(|d| d.to_string()).collect();
    domains.extend(hosts.domains());
    domains.sort();
    domains.dedup();
    domains
}

/// What grantshift reads off a CA certificate: its DNS name constraints and its expiry.
#[derive(Debug, Clone)]
pub struct CaInfo {
    /// Permitted DNS subtrees, lowercase; empty: the CA may sign for any name.
    pub permitted_dns: Vec<String>,
    /// Excluded DNS subtrees, lowercase.
    pub excluded_dns: Vec<String>,
    /// Whether it excludes every IPv4 and IPv6 address (as the CAs grantshift creates do).
    pub excludes_all_ips: bool,
    pub not_after: OffsetDateTime,
    /// The subject public key, to check the key file belongs to this certificate.
    public_key: Vec<u8>,
}

impl CaInfo {
    /// Parse a CA certificate (the first PEM block of `pem`).
    pub fn from_pem(pem: &str) -> Result<CaInfo, String> {
        let (_, block) =
            x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
        let cert = block.parse_x509().map_err(|e| e.to_string())?;
        if !cert.is_ca() {
            return Err("it is not a CA certificate (basicConstraints CA:FALSE)".into());
        }
        let constraints = cert
            .name_constraints()
            .map_err(|e| format!("its name constraints: {e}"))?;
        let dns = |trees: Option<&Vec<x509_parser::extensions::GeneralSubtree<'_>>>| {
            trees
                .into_iter()
                .flatten()
                .filter_map(|t| match t.base {
                    x509_parser::extensions::GeneralName::DNSName(d) => {
                        Some(d.trim_start_matches('.').to_ascii_lowercase())
                    }
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        let (permitted_dns, excluded_dns, excludes_all_ips) = match constraints {
            Some(ext) => {
                let ips: Vec<&[u8]> = ext
                    .value
                    .excluded_subtrees
                    .iter()
                    .flatten()
                    .filter_map(|t| match t.base {
                        x509_parser::extensions::GeneralName::IPAddress(ip) => Some(ip),
                        _ => None,
                    })
                    .collect();
                (
                    dns(ext.value.permitted_subtrees.as_ref()),
                    dns(ext.value.excluded_subtrees.as_ref()),
                    ips.contains(&&[0u8; 8][..]) && ips.contains(&&[0u8; 32][..]),
                )
            }
            None => (Vec::new(), Vec::new(), false),
        };
        Ok(CaInfo {
            permitted_dns,
            excluded_dns,
            excludes_all_ips,
            not_after: cert.validity().not_after.to_datetime(),
            public_key: cert.public_key().subject_public_key.data.to_vec(),
        })
    }

    /// Do the constraints let this CA sign for `name` and, for a wildcard, for every name below
    /// it? An unconstrained CA covers everything.
    pub fn covers(&self, name: &str, wildcard: bool) -> bool {
        if name.parse::<std::net::IpAddr>().is_ok() {
            return !self.excludes_all_ips;
        }
        if self.permitted_dns.is_empty() && self.excluded_dns.is_empty() {
            return true;
        }
        let permitted =
            self.permitted_dns.is_empty() || self.permitted_dns.iter().any(|d| within(name, d));
        let excluded = self
            .excluded_dns
            .iter()
            .any(|d| within(name, d) || (wildcard && within(d, name)));
        permitted && !excluded
    }

    /// What to warn about for this CA (its certificate at `cert`) serving `hosts` at `now`.
    pub fn warnings(
        &self,
        cert: &Path,
        hosts: &HostPatterns,
        now: OffsetDateTime,
    ) -> Vec<CaWarning> {
        let mut warnings = Vec::new();
        if self.permitted_dns.is_empty() {
            warnings.push(CaWarning::Unconstrained { cert: cert.into() });
        } else {
            for (name, wildcard) in hosts.names() {
                if !self.covers(name, wildcard) {
                    warnings.push(CaWarning::HostOutside {
                        pattern: if wildcard {
                            format!("*.{name}")
                        } else {
                            name.to_string()
                        },
                        permitted: self.permitted_dns.clone(),
                    });
                }
            }
        }
        if self.not_after - now < CA_EXPIRY_WARNING {
            warnings.push(CaWarning::Expires {
                cert: cert.into(),
                not_after: self.not_after,
                expired: self.not_after <= now,
            });
        }
        warnings
    }
}

/// `name` is `domain` or below it (both lowercase).
fn within(name: &str, domain: &str) -> bool {
    name == domain
        || (name.len() > domain.len()
            && name.ends_with(domain)
            && name.as_bytes()[name.len() - domain.len() - 1] == b'.')
}

/// Something about the loaded CA worth a warning at start, in `grantshift check` and on reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaWarning {
    /// No name constraints: the CA can sign for any name (CAs made before grantshift added them).
    Unconstrained { cert: PathBuf },
    /// An `intercept.hosts` pattern the constraints do not cover: clients that honour them
    /// refuse its leaf.
    HostOutside {
        pattern: String,
        permitted: Vec<String>,
    },
    /// The CA expires soon, or has.
    Expires {
        cert: PathBuf,
        not_after: OffsetDateTime,
        expired: bool,
    },
}

impl std::fmt::Display for CaWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CaWarning::Unconstrained { cert } => write!(
                f,
                "the CA {} has no name constraints: anyone with its key can impersonate any \
                 site to the clients that trust it; replace it with a constrained one with \
                 `grantshift ca --renew` (clients must then trust the new certificate)",
                cert.display()
            ),
            CaWarning::HostOutside { pattern, permitted } => write!(
                f,
                "intercept.hosts: `{pattern}` is outside the CA's name constraints ({}): clients \
                 that honour them will refuse its certificate; run `grantshift ca --renew` for a \
                 CA that covers it (clients must then trust the new certificate)",
                permitted.join(", ")
            ),
            CaWarning::Expires {
                cert,
                not_after,
                expired,
            } => write!(
                f,
                "the CA {} {} on {}: run `grantshift ca --renew` (clients must then trust the new \
                 certificate)",
                cert.display(),
                if *expired { "expired" } else { "expires" },
                not_after.date()
            ),
        }
    }
}

/// The loaded CA plus the per-host cache of ready-to-use TLS server configs.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_path: PathBuf,
    info: CaInfo,
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
    /// Load the CA if both files exist, create both if both are absent (constrained to
    /// `permitted`, see [`permitted_domains`]); one without the other is an error (a silently
    /// regenerated CA would break every client's trust).
    pub fn load_or_create(
        cert: &Path,
        key: &Path,
        permitted: &[String],
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, CaError> {
        let files = match read_existing(cert, key)? {
            Some(files) => files,
            None => {
                let (cert_pem, key_pem) = create_ca_files(cert, key, permitted)?;
                parse_files(cert, key, cert_pem, &key_pem)?
            }
        };
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
            issuer: files.issuer,
            cert_pem: files.cert_pem,
            cert_path: cert.into(),
            info: files.info,
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

    /// The CA certificate's name constraints and expiry.
    pub fn info(&self) -> &CaInfo {
        &self.info
    }

    /// What to warn about for this CA serving `hosts`, now.
    pub fn warnings(&self, hosts: &HostPatterns) -> Vec<CaWarning> {
        self.info
            .warnings(&self.cert_path, hosts, OffsetDateTime::now_utc())
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

/// Both CA files, read and checked.
struct CaFiles {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
    info: CaInfo,
}

/// Read and check the CA files if both exist (`None` if both are absent): the key readable by
/// its owner only, both parseable, the certificate a CA, the key its key.
fn read_existing(cert: &Path, key: &Path) -> Result<Option<CaFiles>, CaError> {
    match (cert.exists(), key.exists()) {
        (true, true) => {
            refuse_shared_key(key)?;
            let key_pem = zeroize::Zeroizing::new(read(key)?);
            parse_files(cert, key, read(cert)?, &key_pem).map(Some)
        }
        (true, false) => Err(CaError::KeyMissing {
            cert: cert.into(),
            key: key.into(),
        }),
        (false, true) => Err(CaError::CertMissing {
            cert: cert.into(),
            key: key.into(),
        }),
        (false, false) => Ok(None),
    }
}

fn parse_files(
    cert: &Path,
    key: &Path,
    cert_pem: String,
    key_pem: &str,
) -> Result<CaFiles, CaError> {
    let ca_key = KeyPair::from_pem(key_pem).map_err(|e| CaError::File {
        path: key.into(),
        problem: format!("not a usable private key: {e}"),
    })?;
    let unusable = |problem: String| CaError::File {
        path: cert.into(),
        problem: format!("not a usable CA certificate: {problem}"),
    };
    let info = CaInfo::from_pem(&cert_pem).map_err(unusable)?;
    if info.public_key != ca_key.der_bytes() {
        return Err(CaError::File {
            path: key.into(),
            problem: format!(
                "this key does not belong to the CA certificate {}: restore the matching pair, \
                 or create a new CA with `grantshift ca --renew`",
                cert.display()
            ),
        });
    }
    let issuer =
        Issuer::from_ca_cert_pem(&cert_pem, ca_key).map_err(|e| unusable(e.to_string()))?;
    Ok(CaFiles {
        cert_pem,
        issuer,
        info,
    })
}

/// Every check [`CertificateAuthority::load_or_create`] makes, without creating anything: the
/// loaded CA's facts, or `None` when both files are absent (and can be created).
pub fn check_files(cert: &Path, key: &Path) -> Result<Option<CaInfo>, CaError> {
    match read_existing(cert, key)? {
        Some(files) => Ok(Some(files.info)),
        None => {
            check_creatable(cert)?;
            check_creatable(key)?;
            Ok(None)
        }
    }
}

/// The nearest existing ancestor of `path` must be a directory, or the file cannot be created.
fn check_creatable(path: &Path) -> Result<(), CaError> {
    for dir in path.ancestors().skip(1) {
        if dir.as_os_str().is_empty() {
            break;
        }
        if let Ok(meta) = std::fs::metadata(dir) {
            if meta.is_dir() {
                return Ok(());
            }
            return Err(CaError::File {
                path: dir.into(),
                problem: format!("not a directory: cannot create {} in it", path.display()),
            });
        }
    }
    Ok(())
}

/// A new CA in memory, constrained to `permitted`: certificate PEM and key PEM.
fn new_ca(permitted: &[String]) -> Result<(String, zeroize::Zeroizing<String>), CaError> {
    let err = |e: &dyn std::fmt::Display| CaError::Mint {
        host: "(CA)".into(),
        problem: e.to_string(),
    };
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| err(&e))?;
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
    // Critical (rcgen marks the extension so): a client that cannot check constraints must
    // refuse the certificate rather than ignore them.
    params.name_constraints = Some(NameConstraints {
        permitted_subtrees: permitted
            .iter()
            .map(|d| GeneralSubtree::DnsName(d.clone()))
            .collect(),
        // No IP address at all: DNS constraints alone leave IP names unconstrained.
        excluded_subtrees: vec![
            GeneralSubtree::IpAddress(CidrSubnet::V4([0; 4], [0; 4])),
            GeneralSubtree::IpAddress(CidrSubnet::V6([0; 16], [0; 16])),
        ],
    });
    params.serial_number = Some(random_serial(&rustls::crypto::ring::default_provider())?);
    let now = OffsetDateTime::now_utc();
    params.not_before = now - LEAF_BACKDATE;
    params.not_after = now + CA_VALIDITY;
    let ca_cert = params.self_signed(&ca_key).map_err(|e| err(&e))?;
    Ok((
        ca_cert.pem(),
        zeroize::Zeroizing::new(ca_key.serialize_pem()),
    ))
}

fn file_err(path: &Path, e: &dyn std::fmt::Display) -> CaError {
    CaError::File {
        path: path.into(),
        problem: e.to_string(),
    }
}

fn create_dirs_for(paths: [&Path; 2]) -> Result<(), CaError> {
    for path in paths {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| file_err(dir, &e))?;
        }
    }
    Ok(())
}

/// Create a new CA: certificate (0644) and key (0600, created exclusively so an existing key
/// is never overwritten).
fn create_ca_files(
    cert: &Path,
    key: &Path,
    permitted: &[String],
) -> Result<(String, zeroize::Zeroizing<String>), CaError> {
    let (cert_pem, key_pem) = new_ca(permitted)?;
    create_dirs_for([cert, key])?;
    write_new(key, key_pem.as_bytes(), 0o600).map_err(|e| file_err(key, &e))?;
    write_new(cert, cert_pem.as_bytes(), 0o644).map_err(|e| file_err(cert, &e))?;
    tracing::info!(cert = %cert.display(), key = %key.display(), "created a new grantshift CA");
    Ok((cert_pem, key_pem))
}

/// What [`renew`] did: where the old files went (`FILE.YYYYMMDDTHHMMSSZ.bak`, next to them;
/// `None` for a file that did not exist).
#[derive(Debug)]
pub struct Renewed {
    pub cert_backup: Option<PathBuf>,
    pub key_backup: Option<PathBuf>,
}

/// Replace the CA with a new one constrained to `permitted`. The new files are written beside
/// the old ones with the modes of creation (certificate 0644, key 0600) and then renamed over
/// them; the old ones (whichever exist) are first renamed to `FILE.<UTC time>.bak` (a key
/// backup is made 0600). A running proxy keeps its CA until it restarts.
pub fn renew(cert: &Path, key: &Path, permitted: &[String]) -> Result<Renewed, CaError> {
    let (cert_pem, key_pem) = new_ca(permitted)?;
    create_dirs_for([cert, key])?;
    let stamp = OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .map_err(|e| file_err(cert, &e))?;
    let with_suffix = |path: &Path, suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    let backup = |path: &Path| with_suffix(path, &format!(".{stamp}.bak"));
    for path in [cert, key] {
        let b = backup(path);
        if b.exists() {
            return Err(file_err(
                &b,
                &"a backup of this name exists already; try again",
            ));
        }
    }
    // Written next to their final place (one file system, so the renames below are atomic).
    let (new_cert, new_key) = (with_suffix(cert, ".new"), with_suffix(key, ".new"));
    for stale in [&new_cert, &new_key] {
        match std::fs::remove_file(stale) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(file_err(stale, &e)),
            _ => {}
        }
    }
    write_new(&new_key, key_pem.as_bytes(), 0o600).map_err(|e| file_err(&new_key, &e))?;
    write_new(&new_cert, cert_pem.as_bytes(), 0o644).map_err(|e| file_err(&new_cert, &e))?;
    let mut renewed = Renewed {
        cert_backup: None,
        key_backup: None,
    };
    for (old, new) in [(key, &new_key), (cert, &new_cert)] {
        if old.exists() {
            let b = backup(old);
            std::fs::rename(old, &b).map_err(|e| file_err(old, &e))?;
            if old == key {
                // The old key is still a CA key that clients may trust: owner only.
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&b, std::fs::Permissions::from_mode(0o600))
                        .map_err(|e| file_err(&b, &e))?;
                }
                renewed.key_backup = Some(b);
            } else {
                renewed.cert_backup = Some(b);
            }
        }
        std::fs::rename(new, old).map_err(|e| file_err(old, &e))?;
    }
    tracing::info!(cert = %cert.display(), key = %key.display(), "created a new grantshift CA in place of the old one");
    Ok(renewed)
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
            &permitted_domains(&crate::config::Config::default().intercept.hosts),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .unwrap()
    }

    fn hosts(patterns: &[&str]) -> HostPatterns {
        HostPatterns::try_from(patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>()).unwrap()
    }

    /// A CA as grantshift made them before name constraints: none.
    fn unconstrained_ca_pem() -> String {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.self_signed(&key).unwrap().pem()
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
            &[],
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
            &[],
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

    #[test]
    fn a_new_ca_is_constrained_to_the_salesforce_and_intercepted_domains_for_two_years() {
        let dir = tempfile::tempdir().unwrap();
        let permitted = permitted_domains(&hosts(&["*.my.salesforce.com", "*.force.com"]));
        assert_eq!(
            permitted,
            [
                "force.com",
                "my-salesforce.com",
                "salesforce.com",
                "salesforce.mil",
                "sfcrmproducts.cn"
            ]
        );
        let ca = CertificateAuthority::load_or_create(
            &dir.path().join("ca.pem"),
            &dir.path().join("ca.key"),
            &permitted,
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .unwrap();
        let info = CaInfo::from_pem(ca.cert_pem()).unwrap();
        assert_eq!(info.permitted_dns, permitted);
        assert!(info.excluded_dns.is_empty());
        assert!(info.excludes_all_ips);
        let years = (info.not_after - OffsetDateTime::now_utc()).whole_days();
        assert!((729..=730).contains(&years), "{years} days");
        assert!(ca.warnings(&hosts(&["*.force.com"])).is_empty());
    }

    #[test]
    fn constraints_cover_names_below_a_permitted_domain_only() {
        let info = CaInfo {
            permitted_dns: vec!["salesforce.com".into()],
            excluded_dns: vec!["evil.salesforce.com".into()],
            excludes_all_ips: true,
            not_after: OffsetDateTime::now_utc(),
            public_key: Vec::new(),
        };
        assert!(info.covers("salesforce.com", false));
        assert!(info.covers("login.salesforce.com", false));
        assert!(info.covers("my.salesforce.com", true));
        assert!(!info.covers("notsalesforce.com", false));
        assert!(!info.covers("salesforce.com.evil.org", false));
        assert!(!info.covers("x.evil.salesforce.com", false));
        // `*.salesforce.com` reaches into the excluded subtree.
        assert!(!info.covers("salesforce.com", true));
        assert!(!info.covers("127.0.0.1", false));
    }

    #[test]
    fn warnings_name_an_unconstrained_ca_a_host_outside_and_an_expiry() {
        let cert = Path::new("/etc/grantshift/ca.pem");
        let now = OffsetDateTime::now_utc();
        let old = CaInfo::from_pem(&unconstrained_ca_pem()).unwrap();
        assert!(old.permitted_dns.is_empty());
        let w = old.warnings(cert, &hosts(&["login.salesforce.com"]), now);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(matches!(w[0], CaWarning::Unconstrained { .. }), "{w:?}");
        let text = w[0].to_string();
        assert!(text.contains("/etc/grantshift/ca.pem"), "{text}");
        assert!(text.contains("grantshift ca --renew"), "{text}");

        let mut info = old.clone();
        info.permitted_dns = vec!["salesforce.com".into()];
        info.not_after = now + Duration::from_secs(10 * 24 * 3600);
        let w = info.warnings(
            cert,
            &hosts(&["login.salesforce.com", "*.force.com", "api.example.org"]),
            now,
        );
        let text: Vec<String> = w.iter().map(|w| w.to_string()).collect();
        assert_eq!(text.len(), 3, "{text:#?}");
        assert!(text[0].contains("`api.example.org`"), "{}", text[0]);
        assert!(text[1].contains("`*.force.com`"), "{}", text[1]);
        assert!(text[1].contains("(salesforce.com)"), "{}", text[1]);
        assert!(text[1].contains("grantshift ca --renew"), "{}", text[1]);
        assert!(text[2].contains("expires on"), "{}", text[2]);
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        ca(dir.path());
        let other = tempfile::tempdir().unwrap();
        ca(other.path());
        std::fs::copy(other.path().join("ca.key"), dir.path().join("ca.key")).unwrap();
        let err = check_files(&dir.path().join("ca.pem"), &dir.path().join("ca.key"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("does not belong to the CA certificate"),
            "{err}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn renew_replaces_both_files_with_creation_modes_and_keeps_backups() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("ca.pem"), dir.path().join("ca.key"));
        let old_pem = ca(dir.path()).cert_pem().to_string();
        let old_key = std::fs::read(&key).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let renewed = renew(&cert, &key, &["example.org".to_string()]).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&key), 0o600);
        assert_eq!(mode(&cert), 0o644);
        let key_backup = renewed.key_backup.unwrap();
        let cert_backup = renewed.cert_backup.unwrap();
        assert_eq!(std::fs::read(&key_backup).unwrap(), old_key);
        assert_eq!(mode(&key_backup), 0o600);
        assert_eq!(std::fs::read_to_string(&cert_backup).unwrap(), old_pem);
        assert!(cert_backup.to_str().unwrap().ends_with(".bak"));
        let info = check_files(&cert, &key).unwrap().expect("a CA");
        assert_eq!(info.permitted_dns, ["example.org"]);
        // Nothing left over.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 4, "{names:?}");
    }
}
