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
//!
//! Removing a field keeps the others in the order they came (a plain `HeaderMap::remove`
//! swaps the last field into the hole).
//!
//! [`fit_to_hop`] then makes the head valid for the protocol of the upstream hop, which may
//! differ from the client's: the authority travels in `:authority` over HTTP/2 and in `Host`
//! over HTTP/1.1, and cookies are one field over HTTP/1.1 (RFC 9113 §8.3.1, §8.2.3).

use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, COOKIE, HOST, TE, TRANSFER_ENCODING, UPGRADE,
};
use http::uri::{Authority, PathAndQuery, Scheme, Uri};

const ALWAYS: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "transfer-encoding",
    "upgrade",
];

/// Remove the hop-by-hop fields from `headers`, but for what the next hop still needs:
///
/// - `TE: trailers` (alone, or the `trailers` member of a longer `TE`): it is the one TE value
///   every hop of ours supports, and HTTP/2 upstreams (e.g. gRPC) require it end to end;
/// - the transfer codings other than `chunked` (RFC 9112 §6.1): hyper removes the chunked
///   framing it read, but not a `gzip` coding under it, so the bytes passed on are still
///   gzip; the next HTTP/1.1 hop must be told (hyper re-adds `chunked` when it writes). An
///   HTTP/2 hop cannot carry a transfer coding at all: see [`transfer_codings`].
pub fn strip(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = connection_options(headers)
        .filter_map(|opt| HeaderName::from_bytes(opt.as_bytes()).ok())
        .collect();
    let te_trailers = list_members(headers, &TE).any(|m| m.eq_ignore_ascii_case("trailers"));
    let te_only_trailers = headers
        .get_all(TE)
        .iter()
        .all(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    let codings = transfer_codings(headers);
    let drop = |name: &HeaderName| {
        ALWAYS.contains(&name.as_str())
            || named.contains(name)
            || (*name == TE && !te_only_trailers)
    };
    if headers.keys().any(drop) {
        retain(headers, |name| !drop(name));
    }
    if te_trailers && !te_only_trailers && !named.contains(&TE) {
        headers.insert(TE, HeaderValue::from_static("trailers"));
    }
    if let Some(codings) = codings.filter(|c| !c.is_empty()) {
        if let Ok(value) = HeaderValue::from_str(&codings.join(", ")) {
            headers.insert(TRANSFER_ENCODING, value);
        }
    }
}

/// The transfer codings of a message other than `chunked`, in the order they were applied
/// (`Transfer-Encoding: gzip, chunked` → `["gzip"]`); `None` without a `Transfer-Encoding`.
pub fn transfer_codings(headers: &HeaderMap) -> Option<Vec<String>> {
    if !headers.contains_key(TRANSFER_ENCODING) {
        return None;
    }
    Some(
        list_members(headers, &TRANSFER_ENCODING)
            .filter(|m| !m.eq_ignore_ascii_case("chunked"))
            .map(str::to_ascii_lowercase)
            .collect(),
    )
}

/// The members of a comma-separated list field, over all its lines, trimmed, empty ones
/// skipped (RFC 9110 §5.6.1).
fn list_members<'a>(headers: &'a HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|m| !m.is_empty())
}

/// Keep the fields `keep` accepts, in the order they came.
fn retain(headers: &mut HeaderMap, keep: impl Fn(&HeaderName) -> bool) {
    let old = std::mem::take(headers);
    headers.reserve(old.len());
    let mut current: Option<HeaderName> = None;
    for (name, value) in old {
        if let Some(name) = name {
            current = Some(name);
        }
        if let Some(name) = current.as_ref().filter(|n| keep(n)) {
            headers.append(name.clone(), value);
        }
    }
}

/// The protocol of the upstream connection a request is about to be written to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hop {
    Http1,
    Http2,
}

/// Make a forwarded request valid for the upstream hop, changing nothing else. `scheme` and
/// `authority` name the origin the connection goes to (used only where the request itself
/// names no authority).
///
/// - HTTP/2 (RFC 9113 §8.3.1): the target is absolute, its authority in `:authority` only.
///   "An intermediary that converts an HTTP/1.1 request to HTTP/2 [takes it] from `Host`", so
///   a `Host` field becomes the URI's authority and is removed: sending both is what nginx
///   rejects as a duplicate `Host`.
/// - HTTP/1.1 (RFC 9112 §3.2, RFC 9113 §8.2.3): the target is origin-form; `Host` stays where
///   the client put it, or (from an HTTP/2 client, which has none) is made from `:authority`
///   and put first; several `Cookie` fields become one, joined with `"; "`.
pub fn fit_to_hop(parts: &mut http::request::Parts, hop: Hop, scheme: &Scheme, authority: &str) {
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    match hop {
        Hop::Http2 => {
            let from_host = parts
                .headers
                .get(HOST)
                .and_then(|v| Authority::try_from(v.as_bytes()).ok());
            let authority = from_host
                .or_else(|| parts.uri.authority().cloned())
                .or_else(|| Authority::try_from(authority).ok());
            if parts.headers.contains_key(HOST) {
                retain(&mut parts.headers, |name| *name != HOST);
            }
            let mut uri = http::uri::Parts::default();
            uri.scheme = Some(scheme.clone());
            uri.authority = authority;
            uri.path_and_query = Some(path);
            if let Ok(uri) = Uri::from_parts(uri) {
                parts.uri = uri;
            }
            parts.version = http::Version::HTTP_2;
        }
        Hop::Http1 => {
            if !parts.headers.contains_key(HOST) {
                let value = parts
                    .uri
                    .authority()
                    .map(|a| a.as_str())
                    .unwrap_or(authority);
                if let Ok(value) = HeaderValue::from_str(value) {
                    let old = std::mem::take(&mut parts.headers);
                    parts.headers.reserve(old.len() + 1);
                    parts.headers.insert(HOST, value);
                    parts.headers.extend(old);
                }
            }
            join_cookies(&mut parts.headers);
            parts.uri = Uri::from(path);
            parts.version = http::Version::HTTP_11;
        }
    }
}

/// Several `Cookie` fields (HTTP/2 clients send one per cookie) as the one field HTTP/1.1
/// allows, in their order, joined with `"; "` (RFC 9113 §8.2.3).
fn join_cookies(headers: &mut HeaderMap) {
    let mut cookies = headers.get_all(COOKIE).iter();
    let (Some(first), Some(_)) = (cookies.next(), cookies.next()) else {
        return;
    };
    let mut joined = first.as_bytes().to_vec();
    for value in headers.get_all(COOKIE).iter().skip(1) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(value.as_bytes());
    }
    if let Ok(joined) = HeaderValue::from_bytes(&joined) {
        // `insert` replaces every Cookie field in place of the first one.
        headers.insert(COOKIE, joined);
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

    fn names(h: &HeaderMap) -> Vec<(String, String)> {
        h.iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn stripping_the_first_field_keeps_the_order_of_the_rest() {
        // HeaderMap::remove would move x-3 into connection's place.
        let mut h = headers(&[
            ("connection", "close"),
            ("x-1", "a"),
            ("x-2", "b"),
            ("x-3", "c"),
        ]);
        strip(&mut h);
        assert_eq!(
            names(&h),
            pairs(&[("x-1", "a"), ("x-2", "b"), ("x-3", "c")])
        );
    }

    fn request(uri: &str, list: &[(&str, &str)]) -> http::request::Parts {
        let mut req = http::Request::builder().uri(uri).body(()).unwrap();
        *req.headers_mut() = headers(list);
        req.into_parts().0
    }

    #[test]
    fn over_http2_host_becomes_the_authority_and_is_not_sent_twice() {
        let mut parts = request(
            "https://login.salesforce.com/services/data?q=1",
            &[
                ("user-agent", "curl"),
                ("host", "login.salesforce.com"),
                ("accept", "*/*"),
            ],
        );
        fit_to_hop(
            &mut parts,
            Hop::Http2,
            &Scheme::HTTPS,
            "login.salesforce.com",
        );
        assert!(parts.headers.get(HOST).is_none(), "{:?}", parts.headers);
        assert_eq!(
            parts.uri.to_string(),
            "https://login.salesforce.com/services/data?q=1"
        );
        assert_eq!(
            names(&parts.headers),
            pairs(&[("user-agent", "curl"), ("accept", "*/*")])
        );
    }

    #[test]
    fn over_http2_the_clients_host_wins_over_the_dialled_origin() {
        let mut parts = request("/x", &[("host", "acme.my.salesforce.com:8443")]);
        fit_to_hop(&mut parts, Hop::Http2, &Scheme::HTTPS, "127.0.0.1:1");
        assert_eq!(
            parts.uri.to_string(),
            "https://acme.my.salesforce.com:8443/x"
        );
    }

    #[test]
    fn over_http1_host_stays_where_the_client_put_it_and_the_target_is_origin_form() {
        let mut parts = request(
            "https://login.salesforce.com/a?b",
            &[
                ("accept", "*/*"),
                ("Host", "login.salesforce.com"),
                ("x", "1"),
            ],
        );
        fit_to_hop(
            &mut parts,
            Hop::Http1,
            &Scheme::HTTPS,
            "login.salesforce.com",
        );
        assert_eq!(parts.uri.to_string(), "/a?b");
        assert_eq!(
            names(&parts.headers),
            pairs(&[
                ("accept", "*/*"),
                ("host", "login.salesforce.com"),
                ("x", "1")
            ])
        );
    }

    #[test]
    fn from_http2_to_http1_host_comes_first_from_the_authority_and_cookies_are_joined() {
        let mut parts = request(
            "https://login.salesforce.com/a",
            &[("cookie", "a=1"), ("accept", "*/*"), ("cookie", "b=2")],
        );
        fit_to_hop(&mut parts, Hop::Http1, &Scheme::HTTPS, "127.0.0.1:9");
        assert_eq!(
            names(&parts.headers),
            pairs(&[
                ("host", "login.salesforce.com"),
                ("cookie", "a=1; b=2"),
                ("accept", "*/*")
            ])
        );
    }

    #[test]
    fn a_single_cookie_is_left_alone_and_http2_keeps_cookies_split() {
        let mut one = request("/a", &[("host", "h"), ("cookie", "a=1; b=2")]);
        fit_to_hop(&mut one, Hop::Http1, &Scheme::HTTPS, "h");
        assert_eq!(one.headers.get_all(COOKIE).iter().count(), 1);
        let mut two = request("/a", &[("cookie", "a=1"), ("cookie", "b=2")]);
        fit_to_hop(&mut two, Hop::Http2, &Scheme::HTTPS, "h");
        assert_eq!(two.headers.get_all(COOKIE).iter().count(), 2);
    }

    #[test]
    fn te_trailers_survives_other_te_does_not() {
        let mut h = headers(&[("te", "trailers")]);
        strip(&mut h);
        assert_eq!(h.get(TE).unwrap(), "trailers");
        let mut h = headers(&[("te", "gzip, trailers")]);
        strip(&mut h);
        assert_eq!(
            h.get(TE).unwrap(),
            "trailers",
            "the member every hop supports"
        );
        let mut h = headers(&[("te", "gzip")]);
        strip(&mut h);
        assert!(h.get(TE).is_none());
        let mut h = headers(&[("connection", "te"), ("te", "trailers, gzip")]);
        strip(&mut h);
        assert!(h.get(TE).is_none(), "named in Connection: removed whole");
    }

    #[test]
    fn transfer_codings_other_than_chunked_are_kept_for_the_next_hop() {
        let mut h = headers(&[("transfer-encoding", "gzip, chunked"), ("x-a", "1")]);
        assert_eq!(transfer_codings(&h), Some(vec!["gzip".to_string()]));
        strip(&mut h);
        assert_eq!(h.get(TRANSFER_ENCODING).unwrap(), "gzip");
        let mut h = headers(&[("transfer-encoding", "Chunked")]);
        assert_eq!(transfer_codings(&h), Some(vec![]));
        strip(&mut h);
        assert!(h.get(TRANSFER_ENCODING).is_none());
        let mut h = headers(&[
            ("transfer-encoding", "gzip"),
            ("transfer-encoding", "deflate, chunked"),
        ]);
        strip(&mut h);
        assert_eq!(h.get(TRANSFER_ENCODING).unwrap(), "gzip, deflate");
        assert_eq!(transfer_codings(&headers(&[("x", "1")])), None);
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
