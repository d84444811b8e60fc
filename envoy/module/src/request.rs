//! The request as gatehouse's pipeline takes it ([`Described`]), read from
//! what Envoy's worker has: the request headers (pseudo-headers included,
//! as `ext_authz` sends them), the connection, and the route's settings.
//! The same shape the gRPC edge builds from a `CheckRequest`, so the
//! pipeline cannot tell the two apart.

use gatehouse::check::authn::cert::peer::PeerCredential;
use gatehouse::check::authn::cert::xfcc;
use gatehouse::check::request::described::{Described, add_header};

use crate::config::RouteSettings;

/// What the connection says about the peer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Connection {
    /// The downstream peer's address (`ip` or `ip:port`).
    pub source: Option<String>,
    /// The peer certificate's first URI SAN, or else its subject: the
    /// `source.principal` `ext_authz` sends.
    pub principal: Option<String>,
    /// The URL-encoded PEM peer certificate, when there is one.
    pub certificate: Option<String>,
}

/// Describes one request: `headers` as Envoy holds them (lower-case names).
pub fn describe<'a>(
    headers: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    connection: Connection,
    route: Option<&RouteSettings>,
) -> Described {
    let mut described = Described::default();
    for (name, value) in headers {
        let name = String::from_utf8_lossy(name);
        let value = String::from_utf8_lossy(value);
        match &*name {
            ":method" => described.method = value.to_string(),
            ":path" => described.path = value.to_string(),
            ":authority" => described.host = value.to_string(),
            ":scheme" => described.scheme = value.to_string(),
            _ => {}
        }
        add_header(&mut described.headers, &name, &value);
    }
    described.peer = connection
        .source
        .as_deref()
        .map(peer_ip)
        .unwrap_or_default();
    described.principal = connection.principal.unwrap_or_default();
    described.certificate = connection.certificate.unwrap_or_default();
    if let Some(route) = route {
        described.context_extensions = route.context_extensions.clone();
    }
    described
}

/// The peer's certificate (URL-encoded PEM) from the
/// `X-Forwarded-Client-Cert` Envoy sets (`set_current_client_cert_details:
/// {cert: true}`): the ABI gives the connection's certificate digest but
/// not the certificate, so the module takes the `Cert=` whose SHA-256 is
/// that digest, and no other. A client's own XFCC (Envoy configured to
/// forward it) can add elements but cannot make one match the digest
/// without the very certificate it presented.
pub fn peer_certificate(xfcc: Option<&str>, digest: &str) -> Option<String> {
    let elements = xfcc::parse(xfcc?).ok()?;
    elements.into_iter().filter_map(|e| e.cert).find(|cert| {
        PeerCredential::pem_sha256_hex(cert).is_some_and(|h| h.eq_ignore_ascii_case(digest))
    })
}

/// The address part of `ip:port`, `[v6]:port` or a bare address.
fn peer_ip(source: &str) -> String {
    if let Ok(addr) = source.parse::<std::net::SocketAddr>() {
        return addr.ip().to_string();
    }
    source.to_string()
}

/// `path` without the query parameters named in `names` (a token that
/// came in the query must not reach the upstream): the names compared
/// as sent and percent-decoded; the other parameters kept as sent, in
/// order. `None` when nothing is removed.
pub fn without_query_parameters(path: &str, names: &[String]) -> Option<String> {
    let (base, query) = path.split_once('?')?;
    let named = |pair: &str| {
        let name = pair.split_once('=').map_or(pair, |(n, _)| n);
        let decoded = percent_encoding::percent_decode_str(&name.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned();
        names.iter().any(|n| n == name || *n == decoded)
    };
    let kept: Vec<&str> = query.split('&').filter(|pair| !named(pair)).collect();
    if kept.len() == query.split('&').count() {
        return None;
    }
    let kept: Vec<&str> = kept.into_iter().filter(|p| !p.is_empty()).collect();
    Some(if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_pseudo_headers_and_the_connection() {
        let headers: Vec<(&[u8], &[u8])> = vec![
            (b":method", b"GET"),
            (b":path", b"/api/x?a=1"),
            (b":authority", b"example.org:8443"),
            (b":scheme", b"https"),
            (b"cookie", b"a=1"),
            (b"cookie", b"b=2"),
            (b"x-many", b"1"),
            (b"x-many", b"2"),
        ];
        let route = RouteSettings {
            context_extensions: [("auth_type".to_string(), "basic".to_string())].into(),
        };
        let d = describe(
            headers,
            Connection {
                source: Some("[::1]:5555".into()),
                principal: Some("spiffe://x/y".into()),
                certificate: None,
            },
            Some(&route),
        );
        assert_eq!((d.method.as_str(), d.path.as_str()), ("GET", "/api/x?a=1"));
        assert_eq!(
            (d.host.as_str(), d.scheme.as_str()),
            ("example.org:8443", "https")
        );
        assert_eq!(d.headers["cookie"], "a=1; b=2");
        assert_eq!(d.headers["x-many"], "1,2");
        assert_eq!(d.headers[":method"], "GET");
        assert_eq!(d.peer, "::1");
        assert_eq!(d.principal, "spiffe://x/y");
        assert_eq!(d.certificate, "");
        assert_eq!(d.context_extensions["auth_type"], "basic");
        assert_eq!(peer_ip("10.0.0.1:80"), "10.0.0.1");
        assert_eq!(peer_ip("10.0.0.1"), "10.0.0.1");
    }

    #[test]
    fn query_parameters_are_removed_by_name() {
        let names = vec!["access_token".to_string()];
        assert_eq!(
            without_query_parameters("/a?x=1&access_token=t&y=2", &names).as_deref(),
            Some("/a?x=1&y=2")
        );
        assert_eq!(
            without_query_parameters("/a?access_token=t", &names).as_deref(),
            Some("/a")
        );
        assert_eq!(
            without_query_parameters("/a?access%5Ftoken=t&b", &names).as_deref(),
            Some("/a?b")
        );
        assert_eq!(without_query_parameters("/a?x=1", &names), None);
        assert_eq!(without_query_parameters("/a", &names), None);
        // A name that only starts the same is another parameter.
        assert_eq!(without_query_parameters("/a?access_token2=t", &names), None);
    }
}
