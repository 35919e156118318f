//! Shared by examples/soak.rs and benches/e2e.rs (included with `#[path]`): the fake
//! Salesforce's own CA and its leaf certificates, one per host name, ready for SNI.

/// A self-signed CA (rcgen) and leaf certificates for the fake Salesforce's host names.
pub fn fake_ca(
    ca_name: &str,
    hosts: &[&str],
) -> Result<(String, Vec<(String, rustls::sign::CertifiedKey)>), String> {
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
    let mut leaves = Vec::new();
    for host in hosts {
        let key = KeyPair::generate().map_err(e)?;
        let mut params = CertificateParams::new(vec![host.to_string()]).map_err(e)?;
        params.distinguished_name.push(DnType::CommonName, *host);
        params.is_ca = IsCa::ExplicitNoCa;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &issuer).map_err(e)?;
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
    Ok((ca_pem, leaves))
}
