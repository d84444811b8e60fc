//! A test CA issuing client certificates with `rcgen`, and the URL-encoded
//! PEM form Envoy forwards them in. Not used by the service itself.

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, SanType,
    date_time_ymd,
};

/// A certificate authority for tests.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub pem: String,
}

/// What a leaf certificate holds. Subject attributes are given most
/// significant first (ASN.1 order, e.g. `O` before `CN`).
#[derive(Default)]
pub struct Leaf<'a> {
    /// `(type, value)`: `CN`, `O`, `OU`, `C`, `L`, `ST`, `UID`.
    pub subject: Vec<(&'a str, &'a str)>,
    /// URI SANs.
    pub uris: Vec<&'a str>,
    /// DNS SANs.
    pub dns: Vec<&'a str>,
    /// `notBefore` (year, month, day); default: long ago.
    pub not_before: Option<(i32, u8, u8)>,
    /// `notAfter` (year, month, day); default: far in the future.
    pub not_after: Option<(i32, u8, u8)>,
}

fn dn_type(name: &str) -> DnType {
    match name {
        "CN" => DnType::CommonName,
        "O" => DnType::OrganizationName,
        "OU" => DnType::OrganizationalUnitName,
        "C" => DnType::CountryName,
        "L" => DnType::LocalityName,
        "ST" => DnType::StateOrProvinceName,
        "UID" => DnType::CustomDnType(vec![0, 9, 2342, 19200300, 100, 1, 1]),
        other => panic!("testkit: unsupported DN type {other}"),
    }
}

impl TestCa {
    /// A new self-signed CA.
    pub fn new(common_name: &str) -> TestCa {
        let key = KeyPair::generate().expect("key generation");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("self-signed CA");
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Issues a leaf certificate; returns its PEM.
    pub fn issue(&self, leaf: &Leaf<'_>) -> String {
        self.issue_with_key(leaf).0
    }

    /// Issues a leaf certificate; returns its PEM and its private key's
    /// (PKCS#8 PEM), for a test server.
    pub fn issue_with_key(&self, leaf: &Leaf<'_>) -> (String, String) {
        let key = KeyPair::generate().expect("key generation");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = DistinguishedName::new();
        for (kind, value) in &leaf.subject {
            params.distinguished_name.push(dn_type(kind), *value);
        }
        for uri in &leaf.uris {
            params
                .subject_alt_names
                .push(SanType::URI((*uri).try_into().expect("ASCII URI")));
        }
        for dns in &leaf.dns {
            params
                .subject_alt_names
                .push(SanType::DnsName((*dns).try_into().expect("ASCII name")));
        }
        if let Some((y, m, d)) = leaf.not_before {
            params.not_before = date_time_ymd(y, m, d);
        }
        if let Some((y, m, d)) = leaf.not_after {
            params.not_after = date_time_ymd(y, m, d);
        }
        let cert = params.signed_by(&key, &self.issuer).expect("signing").pem();
        (cert, key.serialize_pem())
    }
}

/// A PEM document URL-encoded as Envoy sends it (`source.certificate`,
/// XFCC `Cert=`).
pub fn url_encoded(pem: &str) -> String {
    utf8_percent_encode(pem, NON_ALPHANUMERIC).to_string()
}
