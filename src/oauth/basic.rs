//! The client id of `Authorization: Basic` client authentication (RFC 6749 §2.3.1): the
//! client id and secret are each form-urlencoded (RFC 6749 appendix B), joined by `:`, and
//! base64-encoded (RFC 7617). Pure and total: any bytes in, a verdict out (a fuzz target
//! calls [`basic_client_id`] directly).
//!
//! Only the client id comes out. The secret is never decoded: the decoded credentials are
//! wiped before returning, whatever the outcome.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use zeroize::Zeroize;

/// Why an `Authorization: Basic` value yields no client id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadBasic {
    /// The credentials are not base64 (or empty).
    NotBase64,
    /// The decoded credentials have no `:` between client id and secret.
    NoColon,
    /// The client id has a `%` not followed by two hex digits, or is not UTF-8 once decoded.
    BadEncoding,
    /// The client id is empty.
    EmptyClientId,
}

/// Standard alphabet, padding optional (some clients leave it off).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The client id in an `Authorization` field value: `Ok(None)` when the scheme is not
/// `Basic` (e.g. `Bearer`), `Err` when it is `Basic` but the credentials cannot be read,
/// else the client id, form-urldecoded (`+` is a space, `%XX` a byte).
pub fn basic_client_id(value: &[u8]) -> Result<Option<String>, BadBasic> {
    let value = trim_ows(value);
    let (scheme, rest) = match value.iter().position(|&b| b == b' ' || b == b'\t') {
        Some(i) => (&value[..i], &value[i..]),
        None => (value, &value[value.len()..]),
    };
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return Ok(None);
    }
    let token = trim_ows(rest);
    if token.is_empty() {
        return Err(BadBasic::NotBase64);
    }
    let mut decoded = BASE64.decode(token).map_err(|_| BadBasic::NotBase64)?;
    let result = client_id_of(&decoded);
    decoded.zeroize();
    result.map(Some)
}

/// `client_id:secret` → the decoded client id (the secret is not looked at).
fn client_id_of(credentials: &[u8]) -> Result<String, BadBasic> {
    let colon = credentials
        .iter()
        .position(|&b| b == b':')
        .ok_or(BadBasic::NoColon)?;
    let encoded = &credentials[..colon];
    if encoded.is_empty() {
        return Err(BadBasic::EmptyClientId);
    }
    let mut out = Vec::with_capacity(encoded.len());
    let mut i = 0;
    while i < encoded.len() {
        match encoded[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = encoded.get(i + 1..i + 3).ok_or(BadBasic::BadEncoding)?;
                let high = hex_value(hex[0]).ok_or(BadBasic::BadEncoding)?;
                let low = hex_value(hex[1]).ok_or(BadBasic::BadEncoding)?;
                out.push(high << 4 | low);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| BadBasic::BadEncoding)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Without leading and trailing spaces and tabs (RFC 9110 OWS).
fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(credentials: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        )
    }

    fn id(value: &str) -> Result<Option<String>, BadBasic> {
        basic_client_id(value.as_bytes())
    }

    #[test]
    fn the_client_id_is_the_form_decoded_user_part() {
        assert_eq!(
            id(&basic("3MVG9abc.def:s3cr3t")),
            Ok(Some("3MVG9abc.def".into()))
        );
        // RFC 6749 appendix B: the id is form-urlencoded before it is joined with `:`.
        assert_eq!(
            id(&basic("app%3Aone+two%2B%C3%A9:x")),
            Ok(Some("app:one two+é".into()))
        );
        // Only the first `:` separates: the secret may hold more.
        assert_eq!(id(&basic("app:a:b:c")), Ok(Some("app".into())));
        // An empty secret is still a secret's place.
        assert_eq!(id(&basic("app:")), Ok(Some("app".into())));
    }

    #[test]
    fn the_scheme_is_case_insensitive_and_whitespace_is_tolerated() {
        let token = base64::engine::general_purpose::STANDARD.encode("app:s");
        for value in [
            format!("basic {token}"),
            format!("BASIC\t{token}"),
            format!("  Basic   {token}  "),
            format!("Basic {}", token.trim_end_matches('=')),
        ] {
            assert_eq!(id(&value), Ok(Some("app".into())), "{value:?}");
        }
    }

    #[test]
    fn other_schemes_are_not_basic() {
        assert_eq!(id("Bearer 00Dx!token"), Ok(None));
        assert_eq!(id("Basicx YXBwOnM="), Ok(None));
        assert_eq!(id(""), Ok(None));
        assert_eq!(id("Digest username=\"app\""), Ok(None));
    }

    #[test]
    fn unreadable_credentials_are_errors() {
        assert_eq!(id("Basic"), Err(BadBasic::NotBase64));
        assert_eq!(id("Basic    "), Err(BadBasic::NotBase64));
        assert_eq!(id("Basic !!!!"), Err(BadBasic::NotBase64));
        assert_eq!(id("Basic YXBw OnM="), Err(BadBasic::NotBase64));
        assert_eq!(id(&basic("no-colon")), Err(BadBasic::NoColon));
        assert_eq!(id(&basic(":secret")), Err(BadBasic::EmptyClientId));
        assert_eq!(id(&basic("a%zz:s")), Err(BadBasic::BadEncoding));
        assert_eq!(id(&basic("a%4:s")), Err(BadBasic::BadEncoding));
        assert_eq!(id(&basic("a%:s")), Err(BadBasic::BadEncoding));
        assert_eq!(id(&basic("%ff:s")), Err(BadBasic::BadEncoding));
        let raw_invalid_utf8 = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(b"\xff\xfe:s")
        );
        assert_eq!(id(&raw_invalid_utf8), Err(BadBasic::BadEncoding));
    }

    #[test]
    fn the_secret_never_comes_out() {
        for value in [basic("app:hunter2"), basic("hunter2"), basic("%zz:hunter2")] {
            let shown = format!("{:?}", id(&value));
            assert!(!shown.contains("hunter2"), "{shown}");
        }
    }

    /// Property: any bytes give a verdict without panicking, and a client id that comes out
    /// is one the encoder put in.
    #[test]
    fn any_input_is_total_and_round_trips() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2000 {
            let len = (next() % 40) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = basic_client_id(&bytes);
            let mut value = b"Basic ".to_vec();
            value.extend_from_slice(&bytes);
            let _ = basic_client_id(&value);
            // A client id of printable characters, form-encoded as RFC 6749 says.
            let client: String = (0..1 + next() % 12)
                .map(|_| char::from(b' ' + (next() % 95) as u8))
                .collect();
            let encoded: String =
                serde_urlencoded::to_string([("", client.as_str())]).unwrap()[1..].to_string();
            assert_eq!(
                id(&basic(&format!("{encoded}:secret"))),
                Ok(Some(client.clone())),
                "{client:?} as {encoded:?}"
            );
        }
    }
}
