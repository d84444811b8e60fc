//! The client's IP address: `X-Forwarded-For` walked right to left through
//! trusted proxies, starting from the direct peer.

use std::net::IpAddr;

use ipnet::IpNet;

/// Resolves the client IP. The chain is the `X-Forwarded-For` entries
/// followed by the direct peer; walking from the right, every address in a
/// trusted range is skipped and the first untrusted one is the client. An
/// untrusted direct peer is the client itself (its `X-Forwarded-For` could
/// be forged). Unparseable entries stop the walk at the last good address.
pub fn resolve(
    peer: Option<IpAddr>,
    forwarded_for: Option<&str>,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let peer = peer?;
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let mut client = peer;
    let Some(header) = forwarded_for else {
        return Some(client);
    };
    for entry in header.rsplit(',') {
        let Some(ip) = parse_entry(entry) else {
            break;
        };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    Some(client)
}

/// Parses one `X-Forwarded-For` entry: an IP, possibly `[v6]` or `v4:port`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse() {
        return Some(ip);
    }
    if let Some(rest) = entry.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    entry.rsplit_once(':')?.0.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_xff_says() {
        let got = resolve(ip("203.0.113.9"), Some("1.2.3.4"), &nets(&["10.0.0.0/8"]));
        assert_eq!(got, ip("203.0.113.9"));
    }

    #[test]
    fn walks_right_to_left_through_trusted_proxies() {
        let trusted = nets(&["10.0.0.0/8", "192.168.0.0/16"]);
        let got = resolve(
            ip("10.0.0.1"),
            Some("6.6.6.6, 198.51.100.4, 192.168.1.1, 10.1.1.1"),
            &trusted,
        );
        assert_eq!(got, ip("198.51.100.4"));
    }

    #[test]
    fn all_trusted_gives_left_most() {
        let trusted = nets(&["10.0.0.0/8"]);
        let got = resolve(ip("10.0.0.1"), Some("10.9.9.9, 10.1.1.1"), &trusted);
        assert_eq!(got, ip("10.9.9.9"));
    }

    #[test]
    fn garbage_stops_the_walk() {
        let trusted = nets(&["10.0.0.0/8"]);
        let got = resolve(
            ip("10.0.0.1"),
            Some("1.1.1.1, nonsense, 10.2.2.2"),
            &trusted,
        );
        assert_eq!(got, ip("10.2.2.2"));
    }

    #[test]
    fn ports_and_brackets() {
        assert_eq!(parse_entry("1.2.3.4:80"), ip("1.2.3.4"));
        assert_eq!(parse_entry("[2001:db8::1]:443"), ip("2001:db8::1"));
        assert_eq!(parse_entry(" 2001:db8::1 "), ip("2001:db8::1"));
        assert_eq!(parse_entry("x"), None);
    }

    #[test]
    fn no_peer_no_ip() {
        assert_eq!(resolve(None, Some("1.2.3.4"), &[]), None);
    }
}
