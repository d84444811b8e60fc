//! What a client credential says, whichever way it reached us: a peer
//! certificate (URL-encoded PEM from Envoy), an XFCC element from a
//! trusted proxy, or an mTLS principal (a SPIFFE ID or a subject DN).

use std::borrow::Cow;

use percent_encoding::percent_decode_str;
use x509_parser::der_parser::asn1_rs::ToDer;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate, X509Name};

use super::CertError;
use super::dn::{Attribute, DistinguishedName};
use super::xfcc::XfccElement;

/// Largest URL-encoded PEM accepted (a leaf certificate is a few KiB).
pub const MAX_PEM_BYTES: usize = 64 * 1024;

/// How the credential reached gatehouse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Envoy's `source.certificate` (the TLS peer's certificate).
    PeerCertificate,
    /// A trusted proxy's `x-forwarded-client-cert` element.
    Xfcc,
    /// Envoy's `source.principal` (URI SAN or subject of the TLS peer).
    Principal,
}

impl Origin {
    /// Label for logs and the identity's `issuer`.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::PeerCertificate => "peer-certificate",
            Origin::Xfcc => "xfcc",
            Origin::Principal => "principal",
        }
    }
}

/// The parts of a client credential identities are made of.
#[derive(Debug, Clone)]
pub struct PeerCredential {
    /// Subject DN, RFC 4514 order (empty for a bare SPIFFE principal).
    pub subject: DistinguishedName,
    /// URI SANs (SPIFFE IDs among them).
    pub uris: Vec<String>,
    /// DNS SANs.
    pub dns: Vec<String>,
    /// E-mail (rfc822Name) SANs.
    pub emails: Vec<String>,
    /// `notBefore` and `notAfter`, seconds since the epoch, when known.
    pub validity: Option<(i64, i64)>,
    /// Short SHA-256 fingerprint of the certificate, for logs.
    pub fingerprint: Option<String>,
    /// How it reached us.
    pub origin: Origin,
}

impl PeerCredential {
    /// Parses a URL-encoded PEM certificate (Envoy's `source.certificate`,
    /// XFCC `Cert=`). Only the first PEM block is read.
    pub fn from_url_encoded_pem(text: &str, origin: Origin) -> Result<Self, CertError> {
        if text.len() > MAX_PEM_BYTES {
            return Err(CertError::TooLarge);
        }
        let pem: Cow<'_, str> = percent_decode_str(text)
            .decode_utf8()
            .map_err(|_| CertError::Malformed("certificate is not URL-encoded PEM"))?;
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .map_err(|_| CertError::Malformed("certificate is not PEM"))?;
        if pem.label != "CERTIFICATE" {
            return Err(CertError::Malformed("PEM block is not a CERTIFICATE"));
        }
        Self::from_der(&pem.contents, origin)
    }

    /// The SHA-256 digest (lower-case hex) of a URL-encoded PEM
    /// certificate's DER, as XFCC's `Hash=` carries it; `None` when the
    /// text is not such a certificate.
    pub fn pem_sha256_hex(text: &str) -> Option<String> {
        use sha2::{Digest as _, Sha256};
        if text.len() > MAX_PEM_BYTES {
            return None;
        }
        let pem = percent_decode_str(text).decode_utf8().ok()?;
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
        (pem.label == "CERTIFICATE").then(|| hex::encode(Sha256::digest(&pem.contents)))
    }

    /// Parses a DER certificate.
    pub fn from_der(der: &[u8], origin: Origin) -> Result<Self, CertError> {
        let (rest, cert) = X509Certificate::from_der(der)
            .map_err(|_| CertError::Malformed("malformed certificate"))?;
        if !rest.is_empty() {
            return Err(CertError::Malformed("trailing data after the certificate"));
        }
        let subject = subject_of(cert.subject())?;
        let mut uris = Vec::new();
        let mut dns = Vec::new();
        let mut emails = Vec::new();
        let san = cert
            .subject_alternative_name()
            .map_err(|_| CertError::Malformed("malformed subjectAltName"))?;
        for name in san.iter().flat_map(|s| s.value.general_names.iter()) {
            match name {
                GeneralName::URI(u) => uris.push(checked(u)?),
                GeneralName::DNSName(d) => dns.push(checked(d)?),
                GeneralName::RFC822Name(e) => emails.push(checked(e)?),
                _ => {}
            }
        }
        let validity = cert.validity();
        Ok(PeerCredential {
            subject,
            uris,
            dns,
            emails,
            validity: Some((
                validity.not_before.timestamp(),
                validity.not_after.timestamp(),
            )),
            fingerprint: Some(crate::secret::fingerprint(der)),
            origin,
        })
    }

    /// An XFCC element: its `Cert` when present (validity is then known),
    /// else, unless a certificate is required, its `Subject`, `URI` and
    /// `DNS` as the proxy reports them.
    pub fn from_xfcc(element: &XfccElement, require_cert: bool) -> Result<Self, CertError> {
        if let Some(cert) = element.cert.as_deref().filter(|c| !c.is_empty()) {
            return Self::from_url_encoded_pem(cert, Origin::Xfcc);
        }
        if require_cert {
            return Err(CertError::CertRequired);
        }
        let subject = match element.subject.as_deref() {
            Some(s) => DistinguishedName::parse(s).map_err(CertError::Subject)?,
            None => DistinguishedName::default(),
        };
        let checked_all = |values: &[String]| {
            values
                .iter()
                .map(|v| checked(v))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(PeerCredential {
            subject,
            uris: checked_all(&element.uris)?,
            dns: checked_all(&element.dns)?,
            emails: Vec::new(),
            validity: None,
            fingerprint: element
                .hash
                .as_deref()
                .map(|h| h.chars().take(16).collect()),
            origin: Origin::Xfcc,
        })
    }

    /// Envoy's `source.principal`: the peer certificate's URI SAN (a SPIFFE
    /// ID in a mesh) or, without one, its subject DN.
    pub fn from_principal(principal: &str) -> Result<Self, CertError> {
        let principal = checked(principal)?;
        let (subject, uris) = if looks_like_uri(&principal) {
            (DistinguishedName::default(), vec![principal])
        } else {
            (
                DistinguishedName::parse(&principal).map_err(CertError::Subject)?,
                Vec::new(),
            )
        };
        Ok(PeerCredential {
            subject,
            uris,
            dns: Vec::new(),
            emails: Vec::new(),
            validity: None,
            fingerprint: None,
            origin: Origin::Principal,
        })
    }

    /// Refuses a certificate outside its validity window (`leeway` seconds
    /// of clock skew either way). Without a known window there is nothing
    /// to check: the TLS layer that produced it checked it.
    pub fn check_validity(&self, now: i64, leeway: i64) -> Result<(), CertError> {
        let Some((not_before, not_after)) = self.validity else {
            return Ok(());
        };
        if now.saturating_add(leeway) < not_before {
            return Err(CertError::NotYetValid);
        }
        if now > not_after.saturating_add(leeway) {
            return Err(CertError::Expired);
        }
        Ok(())
    }
}

/// The subject of a certificate, from its ASN.1 structure (never from a
/// string rendering), in RFC 4514 order.
fn subject_of(name: &X509Name<'_>) -> Result<DistinguishedName, CertError> {
    let mut rdns = Vec::new();
    for rdn in name.iter_rdn() {
        let mut attributes = Vec::new();
        for attr in rdn.iter() {
            let value = attr.attr_value();
            let der = value
                .to_der_vec()
                .map_err(|_| CertError::Malformed("malformed subject attribute"))?;
            attributes.push(
                Attribute::from_der_value(
                    &attr.attr_type().to_id_string(),
                    universal_tag(value),
                    value.data,
                    &der,
                )
                .map_err(CertError::Subject)?,
            );
        }
        rdns.push(attributes);
    }
    rdns.reverse();
    DistinguishedName::from_rdns(rdns).map_err(CertError::Subject)
}

/// The tag number of a universal-class value; anything else is never
/// read as a string.
fn universal_tag(value: &x509_parser::der_parser::asn1_rs::Any<'_>) -> u32 {
    use x509_parser::der_parser::asn1_rs::Class;
    if value.header.class() == Class::Universal {
        value.header.tag().0
    } else {
        u32::MAX
    }
}

/// `scheme://…` (RFC 3986 scheme), as opposed to a DN.
fn looks_like_uri(text: &str) -> bool {
    text.split_once("://").is_some_and(|(scheme, _)| {
        let mut bytes = scheme.bytes();
        bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
            && bytes.all(|b| b.is_ascii_alphanumeric() || b"+.-".contains(&b))
    })
}

/// A SAN or principal as text, refused when it holds control characters.
fn checked(value: &str) -> Result<String, CertError> {
    if value.chars().any(char::is_control) {
        return Err(CertError::Malformed("name contains a control character"));
    }
    Ok(value.to_string())
}
