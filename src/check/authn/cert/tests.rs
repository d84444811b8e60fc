use std::sync::OnceLock;

use super::*;
use crate::config::{self, ConfigSource};
use crate::model::identity::CredentialKind;
use crate::testkit::certs::{Leaf, TestCa, url_encoded};

/// 2025-06-01T00:00:00Z: inside the default test validity window.
const NOW: i64 = 1_748_736_000;

fn ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(|| TestCa::new("gatehouse test CA"))
}

const TOOLFORGE: &str = r#"
scopes:
  group_mapping:
    "jobs:run": [toolforge]
certificates:
  leeway: 60s
  xfcc:
    trusted_proxies: [10.0.0.0/8]
    trusted_principals: ["spiffe://cluster.local/ns/gw/sa/gateway"]
  identity:
    user: CN
    groups: [O, OU]
    tool: {from: CN, pattern: '^(?:tool-)?(?P<tool>[a-z0-9][a-z0-9-]*)$'}
  scopes:
    - subject: 'OU=admins,O=toolforge'
      scopes: ["admin:all"]
    - subject: 'O=Acme\, Inc.'
      scopes: ["acme"]
  spiffe:
    trust_domains: [cluster.local]
    principals:
      - prefix: spiffe://cluster.local/ns/builds
        user: builds-api
        groups: [components]
        scopes: ["builds:admin"]
"#;

fn authenticator(yaml: &str) -> CertAuthenticator {
    let cfg = config::load(&ConfigSource::Text(yaml.into()), []).expect("config");
    let certs = cfg.certificates.as_ref().expect("certificates section");
    CertAuthenticator::compile(certs, &cfg.scopes.group_mapping).expect("compiles")
}

fn toolforge() -> CertAuthenticator {
    authenticator(TOOLFORGE)
}

fn leaf(subject: Vec<(&str, &str)>) -> String {
    ca().issue(&Leaf {
        subject,
        not_before: Some((2025, 1, 1)),
        not_after: Some((2026, 1, 1)),
        ..Leaf::default()
    })
}

fn with_cert(pem: &str) -> Request {
    Request {
        certificate: url_encoded(pem),
        source_ip: Some("192.0.2.1".parse().expect("ip")),
        ..Request::default()
    }
}

fn from(peer: &str, xfcc: &str) -> Request {
    let mut r = Request {
        source_ip: Some(peer.parse().expect("ip")),
        ..Request::default()
    };
    r.headers.insert(XFCC_HEADER.into(), xfcc.into());
    r
}

fn ok(auth: &CertAuthenticator, request: &Request) -> Identity {
    auth.authenticate_at(request, NOW)
        .expect("accepted")
        .expect("a credential")
}

fn refused(auth: &CertAuthenticator, request: &Request) -> CertError {
    auth.authenticate_at(request, NOW).expect_err("refused")
}

#[test]
fn tool_certificate_from_the_peer() {
    let pem = leaf(vec![("O", "toolforge"), ("CN", "tool-alpha")]);
    let id = ok(&toolforge(), &with_cert(&pem));
    assert_eq!(id.kind, CredentialKind::Certificate);
    assert_eq!(id.subject, "CN=tool-alpha,O=toolforge");
    assert_eq!(id.username.as_deref(), Some("tool-alpha"));
    assert_eq!(id.tool.as_deref(), Some("alpha"));
    assert_eq!(id.groups, vec!["toolforge"]);
    assert!(id.scopes.contains("jobs:run"), "{:?}", id.scopes);
    assert_eq!(id.issuer, "peer-certificate");
    assert_eq!(id.expires_at, Some(1_767_225_600));
    assert!(id.token.expose().is_empty());
}

#[test]
fn subject_patterns_grant_scopes_with_escaped_commas() {
    let admin = leaf(vec![("O", "toolforge"), ("OU", "admins"), ("CN", "root")]);
    let id = ok(&toolforge(), &with_cert(&admin));
    assert!(id.scopes.contains("admin:all"));
    assert_eq!(id.groups, vec!["toolforge", "admins"]);
    let acme = leaf(vec![("O", "Acme, Inc."), ("CN", "Doe, John")]);
    let id = ok(&toolforge(), &with_cert(&acme));
    assert_eq!(id.subject, r"CN=Doe\, John,O=Acme\, Inc.");
    assert_eq!(id.username.as_deref(), Some("Doe, John"));
    assert!(id.scopes.contains("acme"));
    // "Doe, John" does not match the tool pattern.
    assert_eq!(id.tool, None);
}

#[test]
fn validity_window_is_enforced_with_leeway() {
    let pem = leaf(vec![("CN", "alpha")]);
    let auth = toolforge();
    let req = with_cert(&pem);
    let not_before = 1_735_689_600; // 2025-01-01
    let not_after = 1_767_225_600; // 2026-01-01
    assert!(auth.authenticate_at(&req, not_before - 60).is_ok());
    assert_eq!(
        auth.authenticate_at(&req, not_before - 61).unwrap_err(),
        CertError::NotYetValid
    );
    assert!(auth.authenticate_at(&req, not_after + 60).is_ok());
    assert_eq!(
        auth.authenticate_at(&req, not_after + 61).unwrap_err(),
        CertError::Expired
    );
}

#[test]
fn malformed_certificates_are_refused() {
    let auth = toolforge();
    let pem = leaf(vec![("CN", "alpha")]);
    let truncated = &pem[..pem.len() / 2];
    let key_pem = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    let garbage_der = "-----BEGIN CERTIFICATE-----\nAAAAAAAA\n-----END CERTIFICATE-----\n";
    for bad in [
        url_encoded(truncated),
        url_encoded(key_pem),
        url_encoded(garbage_der),
        "not a certificate".to_string(),
        "%FF%FE".to_string(),
        "%".to_string(),
        "x".repeat(peer::MAX_PEM_BYTES + 1),
    ] {
        let req = Request {
            certificate: bad.clone(),
            ..Request::default()
        };
        let err = auth.authenticate_at(&req, NOW).expect_err("refused");
        assert!(
            matches!(err, CertError::Malformed(_) | CertError::TooLarge),
            "{bad:.40}: {err:?}"
        );
    }
}

#[test]
fn a_certificate_without_the_user_attribute_is_refused() {
    let pem = leaf(vec![("O", "toolforge")]);
    assert_eq!(
        refused(&toolforge(), &with_cert(&pem)),
        CertError::NoUser("CN".into())
    );
}

#[test]
fn spiffe_certificates_are_workloads() {
    let pem = ca().issue(&Leaf {
        uris: vec!["spiffe://cluster.local/ns/builds/sa/builds-api"],
        ..Leaf::default()
    });
    let id = ok(&toolforge(), &with_cert(&pem));
    assert_eq!(id.kind, CredentialKind::Spiffe);
    assert_eq!(id.subject, "spiffe://cluster.local/ns/builds/sa/builds-api");
    assert_eq!(id.username.as_deref(), Some("builds-api"));
    assert_eq!(id.groups, vec!["components"]);
    assert!(id.scopes.contains("builds:admin"));
    let foreign = ca().issue(&Leaf {
        uris: vec!["spiffe://evil.example/ns/builds/sa/x"],
        ..Leaf::default()
    });
    assert_eq!(
        refused(&toolforge(), &with_cert(&foreign)),
        CertError::UntrustedDomain
    );
    let two = ca().issue(&Leaf {
        uris: vec!["spiffe://cluster.local/a", "spiffe://cluster.local/b"],
        ..Leaf::default()
    });
    assert_eq!(
        refused(&toolforge(), &with_cert(&two)),
        CertError::SeveralSpiffeIds
    );
}

#[test]
fn istio_principal_without_certificate() {
    let req = Request {
        principal: "spiffe://cluster.local/ns/builds/sa/worker".into(),
        ..Request::default()
    };
    let id = ok(&toolforge(), &req);
    assert_eq!(id.kind, CredentialKind::Spiffe);
    assert_eq!(id.username.as_deref(), Some("builds-api"));
    assert_eq!(id.issuer, "principal");
    // A DN principal (no URI SAN on the peer's certificate).
    let req = Request {
        principal: "CN=tool-beta,O=toolforge".into(),
        ..Request::default()
    };
    assert_eq!(ok(&toolforge(), &req).tool.as_deref(), Some("beta"));
    let bad = Request {
        principal: "spiffe://cluster.local/ns/../x".into(),
        ..Request::default()
    };
    assert_eq!(refused(&toolforge(), &bad), CertError::BadSpiffeId);
}

#[test]
fn xfcc_from_a_trusted_proxy_wins_over_its_own_certificate() {
    let proxy = leaf(vec![("CN", "the-proxy")]);
    let client = leaf(vec![("O", "toolforge"), ("CN", "tool-alpha")]);
    let header = format!(
        "By=spiffe://gw;Cert=\"{}\";Subject=\"CN=ignored\"",
        url_encoded(&client)
    );
    let mut req = from("10.1.2.3", &header);
    req.certificate = url_encoded(&proxy);
    let id = ok(&toolforge(), &req);
    assert_eq!(id.username.as_deref(), Some("tool-alpha"));
    assert_eq!(id.issuer, "xfcc");
    assert!(!toolforge().strips_xfcc(&req));
}

#[test]
fn xfcc_from_anyone_else_is_ignored_and_stripped() {
    let client = leaf(vec![("CN", "tool-alpha")]);
    let header = format!("Cert=\"{}\"", url_encoded(&client));
    let req = from("192.0.2.9", &header);
    let auth = toolforge();
    assert!(matches!(auth.authenticate_at(&req, NOW), Ok(None)));
    assert!(auth.strips_xfcc(&req));
    // With its own certificate, the peer is who it is.
    let mut req = req;
    req.certificate = url_encoded(&leaf(vec![("CN", "tool-beta")]));
    assert_eq!(ok(&auth, &req).tool.as_deref(), Some("beta"));
}

#[test]
fn trusted_proxies_by_principal() {
    let client = leaf(vec![("CN", "tool-alpha")]);
    let mut req = from("192.0.2.9", &format!("Cert=\"{}\"", url_encoded(&client)));
    req.principal = "spiffe://cluster.local/ns/gw/sa/gateway".into();
    assert_eq!(ok(&toolforge(), &req).tool.as_deref(), Some("alpha"));
}

#[test]
fn expired_certificates_are_refused_even_from_a_trusted_proxy() {
    let expired = ca().issue(&Leaf {
        subject: vec![("CN", "tool-alpha")],
        not_before: Some((2020, 1, 1)),
        not_after: Some((2021, 1, 1)),
        ..Leaf::default()
    });
    let req = from("10.0.0.1", &format!("Cert=\"{}\"", url_encoded(&expired)));
    assert_eq!(refused(&toolforge(), &req), CertError::Expired);
}

/// `forward_client_cert_details: SANITIZE_SET`: Envoy replaces any XFCC
/// with one element about the direct peer's certificate. Gatehouse keeps
/// that header for the upstream (it says nothing the certificate does
/// not) and strips any element that says more or something else.
#[test]
fn an_xfcc_that_restates_the_peer_certificate_is_kept() {
    let client = leaf(vec![("O", "toolforge"), ("CN", "tool-alpha")]);
    let other = leaf(vec![("CN", "tool-beta")]);
    let der_hash = |pem: &str| PeerCredential::pem_sha256_hex(&url_encoded(pem)).expect("pem");
    let hash = der_hash(&client);
    let auth = toolforge();
    let request = |header: &str| {
        let mut req = from("192.0.2.9", header);
        req.certificate = url_encoded(&client);
        req
    };
    let kept = [
        format!("Hash={hash}"),
        format!(
            "Hash={};Subject=\"CN=tool-alpha,O=toolforge\"",
            hash.to_uppercase()
        ),
        format!(
            "By=spiffe://envoy;Hash={hash};Cert=\"{}\"",
            url_encoded(&client)
        ),
        format!("Hash={hash};Subject=\"CN=tool-alpha,O=toolforge\";URI="),
    ];
    for header in &kept {
        let req = request(header);
        assert!(!auth.strips_xfcc(&req), "{header}");
        // The identity is the peer certificate's, as without the header.
        assert_eq!(ok(&auth, &req).tool.as_deref(), Some("alpha"));
    }
    let stripped = [
        format!("Hash={}", der_hash(&other)),
        format!("Hash={hash};Subject=\"CN=root\""),
        format!("Hash={hash};Cert=\"{}\"", url_encoded(&other)),
        format!("Hash={hash};URI=spiffe://td/admin"),
        format!("Hash={hash};DNS=admin.example"),
        format!("Hash={hash};Chain=\"{}\"", url_encoded(&other)),
        format!("Hash={hash},Hash={hash}"),
        "Subject=\"CN=tool-alpha,O=toolforge\"".to_string(),
        "Hash=zz;;;".to_string(),
    ];
    for header in &stripped {
        assert!(auth.strips_xfcc(&request(header)), "{header}");
    }
    // Without the peer certificate there is nothing to compare with.
    assert!(auth.strips_xfcc(&from("192.0.2.9", &kept[0])));
}

#[test]
fn xfcc_element_choice_and_requirements() {
    let alpha = url_encoded(&leaf(vec![("CN", "tool-alpha")]));
    let beta = url_encoded(&leaf(vec![("CN", "tool-beta")]));
    let header = format!("Cert=\"{alpha}\",Cert=\"{beta}\"");
    let last = ok(&toolforge(), &from("10.0.0.1", &header));
    assert_eq!(last.tool.as_deref(), Some("beta"));
    let first = authenticator(&TOOLFORGE.replace(
        "trusted_proxies: [10.0.0.0/8]",
        "trusted_proxies: [10.0.0.0/8]\n    element: first",
    ));
    assert_eq!(
        ok(&first, &from("10.0.0.1", &header)).tool.as_deref(),
        Some("alpha")
    );
    let third = authenticator(&TOOLFORGE.replace(
        "trusted_proxies: [10.0.0.0/8]",
        "trusted_proxies: [10.0.0.0/8]\n    element: 2",
    ));
    assert_eq!(
        refused(&third, &from("10.0.0.1", &header)),
        CertError::NoElement
    );
    // Subject only: refused unless configured otherwise.
    let subject_only = r#"By=x;Subject="CN=Doe\, John,O=toolforge";URI=https://x"#;
    assert_eq!(
        refused(&toolforge(), &from("10.0.0.1", subject_only)),
        CertError::CertRequired
    );
    let lax = authenticator(&TOOLFORGE.replace(
        "trusted_proxies: [10.0.0.0/8]",
        "trusted_proxies: [10.0.0.0/8]\n    require_cert: false",
    ));
    let id = ok(&lax, &from("10.0.0.1", subject_only));
    assert_eq!(id.username.as_deref(), Some("Doe, John"));
    assert_eq!(id.expires_at, None);
    for bad in [
        "By=x;Subject=\"CN=a",
        "Subject=\"CN=a\\,",
        "Subject=\"CN=\\zz\"",
    ] {
        let err = refused(&lax, &from("10.0.0.1", bad));
        assert!(
            matches!(err, CertError::Xfcc(_) | CertError::Subject(_)),
            "{bad}: {err:?}"
        );
    }
}

#[test]
fn no_credential_is_none() {
    assert!(matches!(
        toolforge().authenticate_at(&Request::default(), NOW),
        Ok(None)
    ));
}

#[test]
fn config_errors_name_their_key() {
    let cases = [
        (
            "certificates: {identity: {user: 'no such'}}",
            "certificates.identity.user",
        ),
        (
            "certificates: {identity: {groups: [O, 'san:ip']}}",
            "certificates.identity.groups[1]",
        ),
        (
            "certificates: {identity: {tool: {from: CN, pattern: '('}}}",
            "certificates.identity.tool.pattern",
        ),
        (
            "certificates: {scopes: [{subject: 'CN', scopes: [a]}]}",
            "certificates.scopes[0].subject",
        ),
        (
            "certificates: {scopes: [{subject: '', scopes: [a]}]}",
            "certificates.scopes[0].subject",
        ),
        (
            "certificates: {scopes: [{subject: 'O=x', scopes: ['a b']}]}",
            "certificates.scopes[0].scopes",
        ),
        (
            "certificates: {xfcc: {element: middle}}",
            "certificates.xfcc.element",
        ),
        ("certificates: {leeway: 1h}", "certificates.leeway"),
        (
            "certificates: {spiffe: {trust_domains: ['A B']}}",
            "certificates.spiffe.trust_domains[0]",
        ),
    ];
    for (yaml, key) in cases {
        let cfg = config::load(&ConfigSource::Text(yaml.into()), []).expect(yaml);
        let err = CertAuthenticator::compile(
            cfg.certificates.as_ref().expect("section"),
            &cfg.scopes.group_mapping,
        )
        .expect_err(yaml)
        .to_string();
        assert!(err.contains(key), "{yaml}: {err}");
    }
    let err = config::load(
        &ConfigSource::Text("certificates: {xfcc: {trusted: []}}".into()),
        [],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("trusted"), "{err}");
}

mod never_panics {
    use super::*;
    use base64::Engine as _;
    use proptest::prelude::*;

    fn pem_of(der: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n")
    }

    proptest! {
        #[test]
        fn on_any_client_credential(
            certificate in ".{0,200}",
            principal in ".{0,100}",
            xfcc in proptest::option::of(".{0,200}"),
            trusted in any::<bool>(),
        ) {
            let auth = toolforge();
            let mut req = Request {
                certificate,
                principal,
                source_ip: Some(if trusted { "10.0.0.1" } else { "192.0.2.1" }.parse().expect("ip")),
                ..Request::default()
            };
            if let Some(x) = xfcc {
                req.headers.insert(XFCC_HEADER.into(), x);
            }
            let _ = auth.authenticate_at(&req, NOW);
            let _ = auth.strips_xfcc(&req);
        }

        #[test]
        fn on_any_der(der in proptest::collection::vec(any::<u8>(), 0..400)) {
            let req = with_cert(&pem_of(&der));
            prop_assert!(toolforge().authenticate_at(&req, NOW).is_err());
        }

        #[test]
        fn on_a_corrupted_certificate(flip in 0usize..2000, bit in 0u8..8) {
            // A real certificate with one bit flipped: refused or (if the
            // bit is in the signature or an unused field) read, never a panic.
            let pem = leaf(vec![("O", "toolforge"), ("CN", "tool-alpha")]);
            let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            let mut der = base64::engine::general_purpose::STANDARD.decode(body).expect("PEM body");
            let i = flip % der.len();
            der[i] ^= 1 << bit;
            let _ = toolforge().authenticate_at(&with_cert(&pem_of(&der)), NOW);
        }
    }
}
