//! `Authorization` field values as clients send them: the client id comes out of any bytes
//! without a panic, and a client id put in by the RFC 6749 §2.3.1 encoding comes out as it went
//! in, whatever the secret.
#![no_main]

use base64::Engine as _;
use grantshift::oauth::basic_client_id;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Total: any bytes in, a verdict out.
    let _ = basic_client_id(data);
    // Round trip: the first half as the client id, the rest as the secret.
    let (id, secret) = data.split_at(data.len() / 2);
    let Ok(id) = std::str::from_utf8(id) else {
        return;
    };
    if id.is_empty() {
        return;
    }
    let form = |b: &[u8]| -> String { form_urlencoded::byte_serialize(b).collect() };
    let mut credentials = form(id.as_bytes()).into_bytes();
    credentials.push(b':');
    credentials.extend(form(secret).into_bytes());
    let value = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(&credentials)
    );
    assert_eq!(
        basic_client_id(value.as_bytes()),
        Ok(Some(id.to_string())),
        "{value:?}"
    );
});
