//! Host names as clients write them (CONNECT authorities, SNI, Host fields): the canonical
//! form is a fixed point (lowercase, no trailing dot), a name meets the same intercept
//! patterns written any way, and the registrable-domain lookup never panics.
#![no_main]

use grantshift::config::{registrable_domain, Config};
use grantshift::conn::canonical_host;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(written) = std::str::from_utf8(data) else {
        return;
    };
    let canonical = canonical_host(written);
    assert_eq!(canonical_host(&canonical), canonical, "a fixed point");
    assert!(!canonical.ends_with('.'));
    assert!(!canonical.bytes().any(|b| b.is_ascii_uppercase()));
    let patterns = &Config::default().intercept.hosts;
    if !written.contains(['[', ']']) {
        assert_eq!(
            patterns.matches(written),
            patterns.matches(&canonical),
            "{written:?} and {canonical:?} meet the same patterns"
        );
    }
    if let Some(domain) = registrable_domain(&canonical) {
        assert!(canonical.ends_with(domain));
    }
});
