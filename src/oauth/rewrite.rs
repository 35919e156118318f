//! The grant rewrites (docs/operating.md, "The upgrade"). Pure: parameters in, a form body out. Credentials always go
//! in the body, never in a URL.

use super::{TokenParams, JWT_BEARER_GRANT};

/// Parameters a rewrite sets itself, or that identify the password login being replaced.
const REPLACED: [&str; 5] = [
    "grant_type",
    "client_id",
    "client_secret",
    "username",
    "password",
];

/// `grant_type=client_credentials&client_id=…&client_secret=…` followed by every other
/// parameter that was present (`format`, `scope`, …) in its original order. `client_secret`
/// is omitted when the request had none (the client then authenticates with
/// `Authorization: Basic`, which is forwarded as sent).
pub fn client_credentials_body(params: &TokenParams) -> String {
    let mut out: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
    for name in ["client_id", "client_secret"] {
        if let Some(value) = params.get(name) {
            out.push((name, value));
        }
    }
    out.extend(
        params
            .params
            .iter()
            .filter(|(k, _)| !REPLACED.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    encode(&out)
}

/// `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=…` (+ `format` if sent):
/// the JWT bearer grant takes no client secret and no other parameters.
pub fn jwt_bearer_body(params: &TokenParams, assertion: &str) -> String {
    jwt_bearer_body_with_format(params.get("format"), assertion)
}

/// [`jwt_bearer_body`] with the request's `format`, if it had one.
pub fn jwt_bearer_body_with_format(format: Option<&str>, assertion: &str) -> String {
    let mut out: Vec<(&str, &str)> =
        vec![("grant_type", JWT_BEARER_GRANT), ("assertion", assertion)];
    if let Some(format) = format {
        out.push(("format", format));
    }
    encode(&out)
}

pub fn encode(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).expect("string pairs always encode")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> TokenParams {
        TokenParams::parse(None, body.as_bytes()).unwrap()
    }

    #[test]
    fn client_credentials_drops_username_password_and_keeps_the_rest_in_order() {
        let p = TokenParams::parse(
            Some("format=json&grant_type=password"),
            b"client_id=3MVG&client_secret=s%26c&username=u%2B1%40x.com&password=p%25w&scope=api+refresh&x=1",
        )
        .unwrap();
        assert_eq!(
            client_credentials_body(&p),
            "grant_type=client_credentials&client_id=3MVG&client_secret=s%26c&format=json&scope=api+refresh&x=1"
        );
    }

    #[test]
    fn client_credentials_without_secret_relies_on_basic_auth() {
        let p = parse("grant_type=password&username=u&password=p");
        assert_eq!(client_credentials_body(&p), "grant_type=client_credentials");
    }

    #[test]
    fn jwt_body_keeps_only_format() {
        let p = parse("grant_type=password&client_id=c&client_secret=s&username=u&password=p&format=xml&scope=api");
        assert_eq!(
            jwt_bearer_body(&p, "a.b.c"),
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=a.b.c&format=xml"
        );
    }

    /// Property: whatever other parameters a password grant carries (names and values with
    /// reserved characters, duplicates, any order), all of them survive a client-credentials
    /// rewrite, in order, and neither username nor password does.
    #[test]
    fn every_non_credential_parameter_survives_a_rewrite() {
        // A small deterministic generator (xorshift): no extra dependency, reproducible.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let alphabet: Vec<char> = "aZ09 +&=%/?#@!~._-é\u{1F600}".chars().collect();
        let word = |next: &mut dyn FnMut(u64) -> u64| -> String {
            (0..1 + next(8))
                .map(|_| alphabet[next(alphabet.len() as u64) as usize])
                .collect()
        };
        for _ in 0..500 {
            let mut extra = Vec::new();
            for _ in 0..next(6) {
                let mut name = word(&mut next);
                if REPLACED.contains(&name.as_str()) {
                    name.push('x');
                }
                extra.push((name, word(&mut next)));
            }
            let mut all: Vec<(String, String)> = vec![
                ("grant_type".into(), "password".into()),
                ("client_id".into(), word(&mut next)),
                ("client_secret".into(), word(&mut next)),
                ("username".into(), word(&mut next)),
                ("password".into(), word(&mut next)),
            ];
            // Interleave the extras at random places.
            for e in &extra {
                let at = next(all.len() as u64 + 1) as usize;
                all.insert(at, e.clone());
            }
            let expected: Vec<(String, String)> = all
                .iter()
                .filter(|(k, _)| !REPLACED.contains(&k.as_str()))
                .cloned()
                .collect();
            assert_eq!(expected.len(), extra.len());
            let body = serde_urlencoded::to_string(&all).unwrap();
            let params = TokenParams::parse(None, body.as_bytes()).unwrap();
            let rewritten: Vec<(String, String)> =
                serde_urlencoded::from_str(&client_credentials_body(&params)).unwrap();
            let kept: Vec<(String, String)> = rewritten
                .iter()
                .filter(|(k, _)| !REPLACED.contains(&k.as_str()))
                .cloned()
                .collect();
            assert_eq!(kept, expected, "from {body}");
            assert!(rewritten
                .iter()
                .all(|(k, _)| k != "username" && k != "password"));
            assert_eq!(
                rewritten[0],
                ("grant_type".into(), "client_credentials".into())
            );
            assert_eq!(rewritten[1].1, params.get("client_id").unwrap());
            assert_eq!(rewritten[2].1, params.get("client_secret").unwrap());
        }
    }
}
