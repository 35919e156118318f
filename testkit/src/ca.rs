//! A test certificate authority: one self-signed CA (PEM written into its own TempDir) that
//! issues server certificates for lists of host names, as DER for rustls servers or as PEM files
//! for servers that load them (the real edges, the benchmark's nginx).

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::{Path, PathBuf};

pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    pem_path: PathBuf,
    _dir: tempfile::TempDir,
}

/// A certificate chain and its private key, ready for a rustls server.
pub struct Leaf {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Leaf {
    /// The leaf as a rustls `CertifiedKey` (for SNI resolvers).
    pub fn certified_key(&self) -> rustls::sign::CertifiedKey {
        let signer = rustls::crypto::ring::sign::any_supported_type(&self.key)
            .expect("test leaf key is usable by ring");
        rustls::sign::CertifiedKey::new(self.chain.clone(), signer)
    }

    /// The certificate chain as PEM (`CERTIFICATE` blocks), for a server's certificate file.
    pub fn chain_pem(&self) -> String {
        pem_blocks("CERTIFICATE", self.chain.iter().map(|c| c.as_ref()))
    }

    /// The private key as PEM (a PKCS#8 `PRIVATE KEY` block), for a server's key file.
    pub fn key_pem(&self) -> String {
        pem_blocks("PRIVATE KEY", std::iter::once(self.key.secret_der()))
    }
}

/// DER items as PEM blocks labelled `label`.
fn pem_blocks<'a>(label: &str, ders: impl Iterator<Item = &'a [u8]>) -> String {
    use base64::Engine as _;
    let mut text = String::new();
    for der in ders {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        text.push_str(&format!("-----BEGIN {label}-----\n"));
        for chunk in b64.as_bytes().chunks(64) {
            text.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
            text.push('\n');
        }
        text.push_str(&format!("-----END {label}-----\n"));
    }
    text
}

impl TestCa {
    /// A new CA whose subject common name is `name`.
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("generate CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "grantshift tests");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("self-sign CA");
        let cert_pem = cert.pem();
        let dir = tempfile::tempdir().expect("tempdir for CA");
        let pem_path = dir.path().join("test-ca.pem");
        std::fs::write(&pem_path, &cert_pem).expect("write CA PEM");
        TestCa {
            issuer: Issuer::new(params, key),
            cert_der: cert.der().clone(),
            cert_pem,
            pem_path,
            _dir: dir,
        }
    }

    pub fn pem(&self) -> &str {
        &self.cert_pem
    }

    /// A file holding the CA certificate in PEM (what `--cacert` / `extra_root_certs` take).
    pub fn pem_path(&self) -> &Path {
        &self.pem_path
    }

    /// Write this CA as a grantshift CA: the certificate to `cert` and its key to `key` (mode
    /// 0600). It has no name constraints, like the CAs grantshift created before it added them.
    pub fn write_as_grantshift_ca(&self, cert: &Path, key: &Path) {
        std::fs::write(cert, &self.cert_pem).expect("write CA certificate");
        std::fs::write(key, self.issuer.key().serialize_pem()).expect("write CA key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o600))
                .expect("chmod 600 the CA key");
        }
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// A server certificate for `hosts` (DNS names or IP addresses), signed by this CA.
    pub fn issue(&self, hosts: &[&str]) -> Leaf {
        let key = KeyPair::generate().expect("generate leaf key");
        let names: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, hosts[0]);
        params.is_ca = IsCa::ExplicitNoCa;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        Leaf {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }
}
