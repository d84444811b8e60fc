//! Client-certificate authentication.
//!
//! Where the credential comes from, in order:
//! 1. `x-forwarded-client-cert`, but only when the request's direct peer
//!    is a trusted proxy (by address, or by its mTLS principal): the proxy
//!    then speaks for the client, and its own certificate is not the
//!    caller's. The configured element (default: the last) is used;
//! 2. the peer certificate Envoy forwards (`source.certificate`, with
//!    `include_peer_certificate: true`);
//! 3. the peer's principal (`source.principal`: a SPIFFE ID in a mesh).
//!
//! An XFCC header from any other peer is ignored (and, by default, removed
//! from the upstream request). A certificate outside its validity window is
//! refused wherever it came from. The chain itself is verified by the TLS
//! layer that terminated the connection (Envoy, or the trusted proxy).

pub mod dn;
pub mod mapping;
pub mod peer;
pub mod spiffe;
pub mod xfcc;

use std::collections::BTreeMap;

use ipnet::IpNet;

use self::mapping::IdentityMap;
pub use self::peer::{Origin, PeerCredential};
pub use self::spiffe::SpiffeId;
use crate::config::{CertificatesConfig, ConfigError, XfccElementConfig};
use crate::model::identity::Identity;
use crate::model::request::Request;
use dn::DnError;
use xfcc::{ElementChoice, XfccError};

/// The header a trusted proxy forwards client certificates in.
pub const XFCC_HEADER: &str = "x-forwarded-client-cert";

/// Why a client credential was refused. Messages go to the client, so
/// they never contain the certificate or its values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// Larger than any real certificate.
    #[error("certificate too large")]
    TooLarge,
    /// Not PEM, not DER, or not a certificate.
    #[error("{0}")]
    Malformed(&'static str),
    /// The subject DN cannot be read.
    #[error("malformed subject: {0}")]
    Subject(DnError),
    /// The XFCC header cannot be read.
    #[error("malformed x-forwarded-client-cert: {0}")]
    Xfcc(XfccError),
    /// No element at the configured position.
    #[error("x-forwarded-client-cert has no element at the configured position")]
    NoElement,
    /// The element has no `Cert=`, and one is required.
    #[error("the forwarded client certificate is missing (no Cert=)")]
    CertRequired,
    /// `notAfter` has passed.
    #[error("client certificate has expired")]
    Expired,
    /// `notBefore` is in the future.
    #[error("client certificate is not yet valid")]
    NotYetValid,
    /// The configured user source has no value.
    #[error("client certificate names no user ({0})")]
    NoUser(String),
    /// A single-valued source has several values.
    #[error("client certificate has several {0} values")]
    Ambiguous(String),
    /// A `spiffe:` URI that is not a valid SPIFFE ID.
    #[error("malformed SPIFFE ID")]
    BadSpiffeId,
    /// More than one SPIFFE ID (an SVID has exactly one).
    #[error("client certificate has several SPIFFE IDs")]
    SeveralSpiffeIds,
    /// The SPIFFE trust domain is not accepted.
    #[error("SPIFFE trust domain not accepted")]
    UntrustedDomain,
    /// No mapping matches, and one is required.
    #[error("SPIFFE ID not mapped to a principal")]
    Unmapped,
}

/// Compiled `xfcc` settings.
#[derive(Debug, Clone)]
struct XfccPolicy {
    proxies: Vec<IpNet>,
    principals: Vec<String>,
    element: ElementChoice,
    require_cert: bool,
    strip_untrusted: bool,
}

/// The certificate authenticator.
#[derive(Debug, Clone)]
pub struct CertAuthenticator {
    xfcc: XfccPolicy,
    leeway_secs: i64,
    map: IdentityMap,
}

impl CertAuthenticator {
    /// Validates and compiles the `certificates` section; `group_mapping`
    /// is `scopes.group_mapping` (it applies to certificate groups too).
    pub fn compile(
        config: &CertificatesConfig,
        group_mapping: &BTreeMap<String, Vec<String>>,
    ) -> Result<Self, ConfigError> {
        if config.leeway.as_secs() > 600 {
            return Err(ConfigError::invalid(
                "certificates.leeway",
                "at most 10 minutes",
            ));
        }
        let element = match &config.xfcc.element {
            XfccElementConfig::Index(i) => ElementChoice::Index(*i),
            XfccElementConfig::Name(n) => match n.as_str() {
                "last" => ElementChoice::Last,
                "first" => ElementChoice::First,
                other => other.parse().map(ElementChoice::Index).map_err(|_| {
                    ConfigError::invalid(
                        "certificates.xfcc.element",
                        format!("{other:?}: use last, first or a position (0, 1, -1, …)"),
                    )
                })?,
            },
        };
        if config.xfcc.trusted_principals.iter().any(String::is_empty) {
            return Err(ConfigError::invalid(
                "certificates.xfcc.trusted_principals",
                "principals must be non-empty",
            ));
        }
        Ok(CertAuthenticator {
            xfcc: XfccPolicy {
                proxies: config.xfcc.trusted_proxies.clone(),
                principals: config.xfcc.trusted_principals.clone(),
                element,
                require_cert: config.xfcc.require_cert,
                strip_untrusted: config.xfcc.strip_untrusted,
            },
            leeway_secs: i64::try_from(config.leeway.as_secs()).unwrap_or(0),
            map: IdentityMap::compile(config, group_mapping)?,
        })
    }

    /// Whether the request's direct peer is a proxy whose XFCC is believed.
    pub fn peer_is_trusted_proxy(&self, request: &Request) -> bool {
        request
            .source_ip
            .is_some_and(|ip| self.xfcc.proxies.iter().any(|net| net.contains(&ip)))
            || (!request.principal.is_empty() && self.xfcc.principals.contains(&request.principal))
    }

    /// Whether the request carries an XFCC header that is not believed and
    /// must be removed before the request goes upstream.
    pub fn strips_xfcc(&self, request: &Request) -> bool {
        self.xfcc.strip_untrusted
            && request
                .header(XFCC_HEADER)
                .is_some_and(|header| !describes_only_the_peer(header, &request.certificate))
            && !self.peer_is_trusted_proxy(request)
    }

    /// The client credential the request carries, if any, not yet checked
    /// for validity or mapped.
    pub fn credential(&self, request: &Request) -> Result<Option<PeerCredential>, CertError> {
        if let Some(header) = request.header(XFCC_HEADER)
            && self.peer_is_trusted_proxy(request)
        {
            let elements = xfcc::parse(header).map_err(CertError::Xfcc)?;
            let element = self
                .xfcc
                .element
                .select(&elements)
                .ok_or(CertError::NoElement)?;
            return PeerCredential::from_xfcc(element, self.xfcc.require_cert).map(Some);
        }
        if !request.certificate.is_empty() {
            return PeerCredential::from_url_encoded_pem(
                &request.certificate,
                Origin::PeerCertificate,
            )
            .map(Some);
        }
        if !request.principal.is_empty() {
            return PeerCredential::from_principal(&request.principal).map(Some);
        }
        Ok(None)
    }

    /// Authenticates the request: `Ok(None)` when it carries no client
    /// credential.
    pub fn authenticate(&self, request: &Request) -> Result<Option<Identity>, CertError> {
        let now = i64::try_from(crate::clock::now_secs()).unwrap_or(i64::MAX);
        self.authenticate_at(request, now)
    }

    /// [`Self::authenticate`] at a given time (seconds since the epoch).
    pub fn authenticate_at(
        &self,
        request: &Request,
        now: i64,
    ) -> Result<Option<Identity>, CertError> {
        let Some(cred) = self.credential(request)? else {
            return Ok(None);
        };
        let result = cred
            .check_validity(now, self.leeway_secs)
            .and_then(|()| self.map.identity(&cred));
        match &result {
            Ok(identity) => tracing::debug!(
                origin = cred.origin.as_str(),
                fingerprint = cred.fingerprint.as_deref(),
                kind = identity.kind.as_str(),
                "client credential accepted"
            ),
            Err(e) => tracing::debug!(
                origin = cred.origin.as_str(),
                fingerprint = cred.fingerprint.as_deref(),
                reason = %e,
                "client credential refused"
            ),
        }
        result.map(Some)
    }
}

/// Whether an XFCC header is one element about the very certificate the
/// direct peer presented: what Envoy writes under
/// `forward_client_cert_details: SANITIZE_SET`. Its `Hash=` must be that
/// certificate's SHA-256, and every other field it carries must agree with
/// the certificate (`Cert=` the same certificate, `Subject=` the same DN,
/// each non-empty `URI=`/`DNS=` one of its SANs; no `Chain=`, which could name any
/// CA). Such a header says nothing the peer certificate does not, whoever
/// wrote it, so it is kept for the upstream even though Envoy's address is
/// not a trusted proxy; authentication reads the peer certificate itself.
fn describes_only_the_peer(header: &str, peer_certificate: &str) -> bool {
    if peer_certificate.is_empty() {
        return false;
    }
    let Ok(elements) = xfcc::parse(header) else {
        return false;
    };
    let [element] = elements.as_slice() else {
        return false;
    };
    let (Some(hash), None) = (element.hash.as_deref(), element.chain.as_deref()) else {
        return false;
    };
    let (Some(digest), Ok(peer)) = (
        PeerCredential::pem_sha256_hex(peer_certificate),
        PeerCredential::from_url_encoded_pem(peer_certificate, Origin::PeerCertificate),
    ) else {
        return false;
    };
    let same_cert = |cert: &str| PeerCredential::pem_sha256_hex(cert).is_some_and(|d| d == digest);
    digest.eq_ignore_ascii_case(hash)
        && element.cert.as_deref().is_none_or(same_cert)
        && element
            .subject
            .as_deref()
            .is_none_or(|s| dn::DistinguishedName::parse(s).is_ok_and(|dn| dn == peer.subject))
        // Envoy writes an empty `URI=` for a certificate without URI SANs.
        && element.uris.iter().all(|u| u.is_empty() || peer.uris.contains(u))
        && element.dns.iter().all(|d| d.is_empty() || peer.dns.contains(d))
}

#[cfg(test)]
mod tests;
