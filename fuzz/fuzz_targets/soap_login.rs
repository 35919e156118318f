//! SOAP request bodies as anything may send them: `parse_login` and `parse_logout` come back
//! with a verdict for any bytes, on both APIs' paths and with any content type, without a
//! panic; a login that parses has a non-empty username, a `loginResponse` that reads has a
//! user id, and its answers are well-formed enough
//! for `parse_user_info` to read back.
#![no_main]

use grantshift::soap::{parse_login, parse_login_answer, parse_logout, parse_user_info, Api};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for path in ["/services/Soap/u/64.0", "/services/Soap/c/64.0/"] {
        for ct in [Some("text/xml; charset=UTF-8"), None] {
            if let Ok(login) = parse_login(path, ct, data) {
                assert!(ct.is_some());
                assert!(!login.username.is_empty());
            }
            let _ = parse_logout(path, ct, data);
        }
    }
    for api in [Api::Partner, Api::Enterprise] {
        let _ = parse_user_info(api, data);
        if let Some(answer) = parse_login_answer(api, data) {
            assert!(!answer.user_id.is_empty());
        }
    }
});
