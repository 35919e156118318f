//! Which addresses grantshift may dial for a client (pure): not its own host's loopback, not
//! link-local (cloud metadata at 169.254.169.254), not the unspecified address, not one of its
//! own listeners, unless the operator lists the network in `proxy.allow_destinations`. Squid's
//! default `http_access deny to_localhost` is the same idea.
//!
//! The dialer applies [`refusal`] to an IP literal, and to every address a name resolves to
//! (after DNS, so a name resolving to 127.0.0.1 is refused too), and connects only to an
//! address that passed. Addresses from `[upstream.connect_to]` are the operator's own choice
//! and are not checked. The port lists (`allowed_connect_ports`, `allowed_http_ports`) are
//! checked by the proxy front.

use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// Why an address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 127.0.0.0/8, `::1`.
    Loopback,
    /// 169.254.0.0/16 (cloud metadata services), `fe80::/10`.
    LinkLocal,
    /// 0.0.0.0/8, `::` (both reach the local host).
    Unspecified,
    /// One of grantshift's own listeners (proxy port, admin server, transparent TLS).
    OwnListener,
}

impl Refusal {
    /// The reason as the client's 403 line names it, with the key that would change it.
    pub fn describe(self) -> &'static str {
        match self {
            Refusal::Loopback => "loopback; see proxy.allow_destinations",
            Refusal::LinkLocal => "link-local; see proxy.allow_destinations",
            Refusal::Unspecified => "unspecified address; see proxy.allow_destinations",
            Refusal::OwnListener => {
                "grantshift's own listener; only an upstream.connect_to entry may name it"
            }
        }
    }
}

/// Is `addr` refused? `allow` is `proxy.allow_destinations`; `own` the addresses grantshift
/// listens on; `is_local(ip)` tells whether `ip` is an address of this machine (asked only
/// when a listener is bound to the unspecified address on `addr`'s port). IPv4-mapped IPv6
/// addresses (`::ffff:127.0.0.1`) are judged as the IPv4 address they carry.
///
/// Grantshift's own listeners are refused even inside `allow`: a network is allowed so that
/// services in it can be reached, never the proxy itself (its admin server would answer a
/// request the proxy makes from loopback).
pub fn refusal(
    addr: SocketAddr,
    allow: &[IpNet],
    own: &[SocketAddr],
    is_local: &dyn Fn(IpAddr) -> bool,
) -> Option<Refusal> {
    let ip = unmapped(addr.ip());
    let is_own = own.iter().any(|listener| {
        listener.port() == addr.port() && {
            let bound = unmapped(listener.ip());
            bound == ip || (bound.is_unspecified() && is_local(ip))
        }
    });
    if is_own {
        return Some(Refusal::OwnListener);
    }
    if allow.iter().any(|net| net.contains(&ip)) {
        return None;
    }
    class(ip)
}

/// The address classes refused by default, for an address already unmapped.
fn class(ip: IpAddr) -> Option<Refusal> {
    match ip {
        IpAddr::V4(v4) => {
            if v4.is_loopback() {
                Some(Refusal::Loopback)
            } else if v4.is_link_local() {
                Some(Refusal::LinkLocal)
            } else if v4.octets()[0] == 0 {
                Some(Refusal::Unspecified)
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if v6.is_loopback() {
                Some(Refusal::Loopback)
            } else if v6.is_unspecified() {
                Some(Refusal::Unspecified)
            } else if v6.segments()[0] & 0xffc0 == 0xfe80 {
                Some(Refusal::LinkLocal)
            } else {
                None
            }
        }
    }
}

/// `::ffff:a.b.c.d` → `a.b.c.d`; any other address unchanged.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn judge(a: &str) -> Option<Refusal> {
        refusal(addr(a), &[], &[], &|_| false)
    }

    #[test]
    fn loopback_link_local_and_unspecified_are_refused_in_every_form() {
        for (a, why) in [
            ("127.0.0.1:80", Refusal::Loopback),
            ("127.255.0.9:443", Refusal::Loopback),
            ("[::1]:443", Refusal::Loopback),
            ("[::ffff:127.0.0.1]:80", Refusal::Loopback),
            ("169.254.169.254:80", Refusal::LinkLocal),
            ("[::ffff:169.254.169.254]:80", Refusal::LinkLocal),
            ("[fe80::1]:443", Refusal::LinkLocal),
            ("[febf::1]:443", Refusal::LinkLocal),
            ("0.0.0.0:80", Refusal::Unspecified),
            ("0.1.2.3:80", Refusal::Unspecified),
            ("[::]:443", Refusal::Unspecified),
            ("[::ffff:0.0.0.0]:443", Refusal::Unspecified),
        ] {
            assert_eq!(judge(a), Some(why), "{a}");
        }
    }

    #[test]
    fn ordinary_and_private_addresses_pass() {
        for a in [
            "203.0.113.7:443",
            "10.1.2.3:80",
            "192.168.0.1:443",
            "[2001:db8::1]:443",
            "[fec0::1]:443",
            "[::ffff:203.0.113.7]:443",
            "1.0.0.0:80",
        ] {
            assert_eq!(judge(a), None, "{a}");
        }
    }

    #[test]
    fn the_allow_list_lets_a_network_through_mapped_forms_included() {
        let allow = nets(&["127.0.0.1/32", "169.254.0.0/16"]);
        let no_own = &[];
        for a in [
            "127.0.0.1:8080",
            "[::ffff:127.0.0.1]:80",
            "169.254.169.254:80",
        ] {
            assert_eq!(refusal(addr(a), &allow, no_own, &|_| false), None, "{a}");
        }
        assert_eq!(
            refusal(addr("127.0.0.2:80"), &allow, no_own, &|_| false),
            Some(Refusal::Loopback)
        );
        assert_eq!(
            refusal(addr("[::1]:80"), &allow, no_own, &|_| false),
            Some(Refusal::Loopback)
        );
    }

    #[test]
    fn own_listeners_are_refused_even_when_allowed() {
        let own = [addr("127.0.0.1:9464"), addr("10.0.0.5:3128")];
        let allow = nets(&["0.0.0.0/0", "::/0"]);
        for a in ["127.0.0.1:9464", "[::ffff:127.0.0.1]:9464", "10.0.0.5:3128"] {
            assert_eq!(
                refusal(addr(a), &allow, &own, &|_| false),
                Some(Refusal::OwnListener),
                "{a}"
            );
        }
        // Another port, or another address, is not the listener.
        assert_eq!(
            refusal(addr("127.0.0.1:9465"), &allow, &own, &|_| false),
            None
        );
        assert_eq!(
            refusal(addr("10.0.0.6:3128"), &allow, &own, &|_| false),
            None
        );
    }

    #[test]
    fn a_listener_on_the_unspecified_address_covers_every_local_address_on_its_port() {
        let own = [addr("0.0.0.0:9464")];
        let local = |ip: IpAddr| ip == "192.0.2.10".parse::<IpAddr>().unwrap();
        assert_eq!(
            refusal(addr("192.0.2.10:9464"), &[], &own, &local),
            Some(Refusal::OwnListener)
        );
        // Not local: not us (a remote host on the same port is an ordinary destination).
        assert_eq!(refusal(addr("192.0.2.11:9464"), &[], &own, &local), None);
        assert_eq!(refusal(addr("192.0.2.10:9465"), &[], &own, &local), None);
    }
}
