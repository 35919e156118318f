//! Connection-specific ("hop-by-hop") header fields, RFC 9110 §7.6.1:
//!
//! > Intermediaries MUST parse a received Connection header field before a message is
//! > forwarded and, for each connection-option in this field, remove any header or trailer
//! > field(s) from the message with the same name as the connection-option, and then remove
//! > the Connection header field itself (or replace it with the intermediary's own
//! > control options for the forwarded message).
//!
//! plus the fields that are connection-specific by definition: Keep-Alive, Proxy-Connection,
//! Proxy-Authenticate, Proxy-Authorization, TE, Transfer-Encoding and Upgrade.
//! Everything else passes untouched, in order. hyper does none of this for us.
//!
//! `Trailer` is kept: RFC 9110 §6.6.2 makes it an end-to-end declaration of the trailer fields
//! that follow the body, and hyper's HTTP/1 encoder sends only declared trailers, so stripping
//! it would silently drop trailers on every HTTP/1.1 hop.

use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, TE, UPGRADE};

const ALWAYS: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "transfer-encoding",
    "upgrade",
];

/// Remove the hop-by-hop fields from `headers`. `TE: trailers` is kept: it is the one TE
/// value every hop of ours supports, and HTTP/2 upstreams (e.g. gRPC) require it end to end.
pub fn strip(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = connection_options(headers)
        .filter_map(|opt| HeaderName::from_bytes(opt.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in ALWAYS {
        headers.remove(name);
    }
    let te_is_trailers = headers
        .get_all(TE)
        .iter()
        .all(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    if !te_is_trailers {
        headers.remove(TE);
    }
}

/// The connection-options (lowercase tokens) listed in all Connection fields.
fn connection_options(headers: &HeaderMap) -> impl Iterator<Item = String> + '_ {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
}

/// The protocol of an HTTP/1.1 upgrade request (`Connection: upgrade` + `Upgrade: …`), if any.
pub fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = connection_options(headers).any(|t| t == "upgrade");
    asks.then(|| headers.get(UPGRADE).cloned()).flatten()
}

/// After [`strip`], put back the fields that ask the next hop for the same upgrade.
pub fn restore_upgrade(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, protocol);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn removes_listed_and_defined_hop_by_hop_fields_keeps_the_rest_in_order() {
        let mut h = headers(&[
            ("x-b", "2"),
            ("connection", "X-Drop, keep-alive"),
            ("x-drop", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("transfer-encoding", "chunked"),
            ("x-a", "1"),
            ("x-a", "3"),
            ("authorization", "Basic abc"),
        ]);
        strip(&mut h);
        let left: Vec<(String, String)> = h
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        assert_eq!(
            left,
            vec![
                ("x-b".into(), "2".into()),
                ("x-a".into(), "1".into()),
                ("x-a".into(), "3".into()),
                ("authorization".into(), "Basic abc".into()),
            ]
        );
    }

    #[test]
    fn te_trailers_survives_other_te_does_not() {
        let mut h = headers(&[("te", "trailers")]);
        strip(&mut h);
        assert_eq!(h.get(TE).unwrap(), "trailers");
        let mut h = headers(&[("te", "gzip, trailers")]);
        strip(&mut h);
        assert!(h.get(TE).is_none());
    }

    #[test]
    fn upgrade_needs_both_fields() {
        let h = headers(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ]);
        assert_eq!(upgrade_protocol(&h).unwrap(), "websocket");
        assert!(upgrade_protocol(&headers(&[("upgrade", "websocket")])).is_none());
        assert!(upgrade_protocol(&headers(&[("connection", "upgrade")])).is_none());
    }
}
