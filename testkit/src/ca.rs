//! A test certificate authority: one self-signed CA (PEM written into its own TempDir) that
//! issues server certificates for lists of host names.

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
