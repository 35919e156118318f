//! Shared by examples/soak.rs and benches/e2e.rs (included with `#[path]`): the fake
//! Salesforce's own CA and its leaf certificates, one per host name, ready for SNI; and, for
//! servers that load PEM files (the bench's nginx), one more leaf for several names at once.

/// `(host, certificate + key)` per host name, for `ResolvesServerCertUsingSni`.
pub type Leaves = Vec<(String, rustls::sign::CertifiedKey)>;

/// A leaf certificate and its PKCS#8 key, both PEM.
pub type PemLeaf = (String, String);

/// A self-signed CA (rcgen) and leaf certificates for the fake Salesforce's host names.
// examples/soak.rs calls this; benches/e2e.rs the one below.
#[allow(dead_code)]
pub fn fake_ca(ca_name: &str, hosts: &[&str]) -> Result<(String, Leaves), String> {
    fake_ca_with_pem_leaf(ca_name, hosts, &[]).map(|(ca_pem, leaves, _)| (ca_pem, leaves))
}

/// [`fake_ca`], plus one leaf signed by the same CA whose names are all of `pem_hosts`, as
/// PEM (`None` when `pem_hosts` is empty).
pub fn fake_ca_with_pem_leaf(
    ca_name: &str,
    hosts: &[&str],
    pem_hosts: &[&str],
) -> Result<(String, Leaves, Option<PemLeaf>), String> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let e = |e: rcgen::Error| format!("generating the fake's certificates: {e}");
    let ca_key = KeyPair::generate().map_err(e)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    params.distinguished_name.push(DnType::CommonName, ca_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = params.self_signed(&ca_key).map_err(e)?;
    let ca_pem = ca_cert.pem();
    let issuer = Issuer::new(params, ca_key);
    let leaf = |names: &[&str]| -> Result<(rcgen::Certificate, KeyPair), String> {
        let key = KeyPair::generate().map_err(e)?;
        let mut params =
            CertificateParams::new(names.iter().map(|h| h.to_string()).collect::<Vec<_>>())
                .map_err(e)?;
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.is_ca = IsCa::ExplicitNoCa;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &issuer).map_err(e)?;
        Ok((cert, key))
    };
    let mut leaves = Vec::new();
    for host in hosts {
        let (cert, key) = leaf(&[host])?;
        let der = rustls::pki_types::PrivateKeyDer::Pkcs8(
            rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()),
        );
        let signer = rustls::crypto::ring::sign::any_supported_type(&der)
            .map_err(|e| format!("leaf key: {e}"))?;
        leaves.push((
            host.to_string(),
            rustls::sign::CertifiedKey::new(vec![cert.der().clone()], signer),
        ));
    }
    let pem_leaf = if pem_hosts.is_empty() {
        None
    } else {
        let (cert, key) = leaf(pem_hosts)?;
        Some((cert.pem(), key.serialize_pem()))
    };
    Ok((ca_pem, leaves, pem_leaf))
}
