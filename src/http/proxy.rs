//! The client's address behind proxies (`trusted_proxies`).
//!
//! A connection from a trusted proxy names its client in `Forwarded`
//! (RFC 7239, `for=`) or, without that header, in `X-Forwarded-For`. The
//! list is read from the nearest hop back: every address that is itself a
//! trusted proxy is skipped, and the first that is not is the client. A hop
//! that cannot be read (`unknown`, an obfuscated name) ends the walk at the
//! proxy that reported it. From anyone else the headers are ignored: the
//! socket's peer is the client, so nobody can pick the address their
//! per-address limit is counted under.

use axum::http::HeaderMap;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// `trusted_proxies`, parsed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self(nets)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client of a connection from `peer` carrying `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if self.0.is_empty() || !self.trusts(peer) {
            return peer;
        }
        let hops = forwarded_for(headers).or_else(|| x_forwarded_for(headers));
        let Some(hops) = hops else {
            return peer;
        };
        let mut client = peer;
        for hop in hops.iter().rev() {
            match hop {
                Some(ip) => {
                    client = canonical(*ip);
                    if !self.trusts(client) {
                        return client;
                    }
                }
                None => return client,
            }
        }
        client
    }
}

/// IPv4 addresses mapped into IPv6 (`::ffff:10.0.0.1`, from a dual-stack
/// listener) compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One node of either header: `1.2.3.4`, `1.2.3.4:80`, `[::1]:80`, `::1`,
/// with or without quotes. `None`: not an address.
fn node(text: &str) -> Option<IpAddr> {
    let t = text.trim().trim_matches('"');
    if let Ok(ip) = t.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sock) = t.parse::<SocketAddr>() {
        return Some(sock.ip());
    }
    let inner = t.strip_prefix('[')?.split(']').next()?;
    inner.parse().ok()
}

/// The `for=` of every `Forwarded` element, oldest first.
fn forwarded_for(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let mut hops = Vec::new();
    for value in headers.get_all("forwarded") {
        let value = value.to_str().ok()?;
        for element in value.split(',') {
            let for_ = element.split(';').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                k.trim().eq_ignore_ascii_case("for").then_some(v)
            });
            // An element without `for=` says nothing of the client.
            if let Some(v) = for_ {
                hops.push(node(v));
            }
        }
    }
    (!hops.is_empty()).then_some(hops)
}

fn x_forwarded_for(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let mut hops = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let value = value.to_str().ok()?;
        hops.extend(value.split(',').map(node));
    }
    (!hops.is_empty()).then_some(hops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn proxies(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| n.parse().expect("net")).collect())
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn only_trusted_peers_are_believed() {
        let p = proxies(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "203.0.113.7")]);
        assert_eq!(p.client(ip("10.1.2.3"), &h), ip("203.0.113.7"));
        assert_eq!(
            p.client(ip("198.51.100.1"), &h),
            ip("198.51.100.1"),
            "untrusted peer"
        );
        assert_eq!(
            TrustedProxies::default().client(ip("10.1.2.3"), &h),
            ip("10.1.2.3")
        );
        assert_eq!(
            p.client(ip("::ffff:10.1.2.3"), &h),
            ip("203.0.113.7"),
            "mapped v4"
        );
    }

    #[test]
    fn the_chain_is_walked_from_the_nearest_hop() {
        let p = proxies(&["10.0.0.0/8"]);
        // The client forged the first entry; the proxies appended the rest.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.7, 10.0.0.5")]);
        assert_eq!(p.client(ip("10.0.0.9"), &h), ip("203.0.113.7"));
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "203.0.113.7"),
        ]);
        assert_eq!(
            p.client(ip("10.0.0.9"), &h),
            ip("203.0.113.7"),
            "several lines"
        );
        let h = headers(&[("x-forwarded-for", "203.0.113.7, garbage")]);
        assert_eq!(
            p.client(ip("10.0.0.9"), &h),
            ip("10.0.0.9"),
            "unreadable hop"
        );
    }

    #[test]
    fn forwarded_wins_and_takes_ports_brackets_quotes() {
        let p = proxies(&["10.0.0.0/8", "2001:db8::/32"]);
        let h = headers(&[
            (
                "forwarded",
                r#"for=192.0.2.60;proto=https, For="[2001:db8:cafe::17]:4711""#,
            ),
            ("x-forwarded-for", "198.51.100.9"),
        ]);
        assert_eq!(p.client(ip("10.0.0.1"), &h), ip("192.0.2.60"));
        let h = headers(&[("forwarded", r#"for="192.0.2.61:8080""#)]);
        assert_eq!(p.client(ip("10.0.0.1"), &h), ip("192.0.2.61"));
        let h = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(p.client(ip("10.0.0.1"), &h), ip("10.0.0.1"));
    }
}
