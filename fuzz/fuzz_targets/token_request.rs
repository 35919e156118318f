//! Token-request parsing and the grant rewrites, fed arbitrary query strings and bodies.
//! Invariants: nothing panics; a parsed password grant rewrites to a body that parses again,
//! starts with the new grant, carries no username/password, and keeps every other parameter.
#![no_main]

use grantshift::oauth::{body_is_readable, rewrite, TokenParams};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First line: the query string; the rest: the body.
    let (query, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (std::str::from_utf8(&data[..i]).ok(), &data[i + 1..]),
        None => (None, data),
    };
    let Ok(params) = TokenParams::parse(query, body) else {
        return;
    };
    let rewritten = rewrite::client_credentials_body(&params);
    let again = TokenParams::parse(None, rewritten.as_bytes()).expect("our own output parses");
    assert_eq!(again.grant_type(), Some("client_credentials"));
    assert!(again.get("username").is_none() && again.get("password").is_none());
    let kept = |p: &TokenParams| -> Vec<(String, String)> {
        p.params
            .iter()
            .filter(|(k, _)| {
                !["grant_type", "client_id", "client_secret", "username", "password"].contains(&k.as_str())
            })
            .cloned()
            .collect()
    };
    assert_eq!(kept(&params), kept(&again));
    let jwt = rewrite::jwt_bearer_body(&params, "a.b.c");
    TokenParams::parse(None, jwt.as_bytes()).expect("our own output parses");

    // Header checks never panic either.
    let mut headers = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_bytes(body.get(..body.len().min(64)).unwrap_or(b"")) {
        headers.insert(http::header::CONTENT_TYPE, v.clone());
        headers.insert(http::header::CONTENT_LENGTH, v);
    }
    let _ = body_is_readable(&headers, 65536);
});
