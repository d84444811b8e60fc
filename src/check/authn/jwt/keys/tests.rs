//! Key set parsing, algorithm guards, refresh bounds, discovery.

use super::*;
use serde_json::json;

fn ec_jwk(kid: &str) -> serde_json::Value {
    json!({"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
           "x": "mA0RsYrR4cj_cChPDWB6UCuAU0KnGYQ9TkBJMDD3DKs",
           "y": "YMB7-1a-VcO9PXYtDT67WCbhF9wL8Wrgh9vtYsgH1Xk"})
}

#[test]
fn parses_and_skips_unusable_keys() {
    let doc = json!({"keys": [
        ec_jwk("a"),
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
        {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB", "kid": "enc"},
        {"kty": "weird", "kid": "w"},
    ]});
    let set = KeySet::from_jwks(&doc).unwrap();
    assert_eq!(set.keys.len(), 1);
    assert!(set.has_kid("a"));
    assert!(!set.has_kid("hmac"));
}

#[test]
fn empty_or_malformed_documents_are_errors() {
    assert!(KeySet::from_jwks(&json!({})).is_err());
    assert!(KeySet::from_jwks(&json!({"keys": []})).is_err());
    assert!(KeySet::from_jwks(&json!({"keys": [{"kty": "oct", "k": "AA"}]})).is_err());
    assert!(KeySet::from_jwks(&json!({"keys": "nope"})).is_err());
}

#[test]
fn key_kind_guards_algorithm_confusion() {
    assert!(KeyKind::Rsa.serves(Algorithm::RS256));
    assert!(!KeyKind::Rsa.serves(Algorithm::HS256));
    assert!(!KeyKind::P256.serves(Algorithm::ES384));
    assert!(!KeyKind::Hmac.serves(Algorithm::RS256));
    let set = KeySet::from_jwks(&json!({"keys": [ec_jwk("a")]})).unwrap();
    assert_eq!(set.candidates(Some("a"), Algorithm::ES256).count(), 1);
    assert_eq!(set.candidates(Some("a"), Algorithm::HS256).count(), 0);
    assert_eq!(set.candidates(Some("b"), Algorithm::ES256).count(), 0);
    assert_eq!(set.candidates(None, Algorithm::ES256).count(), 1);
}

#[test]
fn pinned_alg_must_match_key_type() {
    let mut jwk = ec_jwk("a");
    jwk["alg"] = json!("RS256");
    assert!(KeySet::from_jwks(&json!({"keys": [jwk]})).is_err());
}

#[test]
fn cache_control_parsing() {
    assert_eq!(
        cache_max_age("public, max-age=300"),
        Some(Duration::from_secs(300))
    );
    assert_eq!(cache_max_age("no-store"), Some(Duration::ZERO));
    assert_eq!(cache_max_age("public"), None);
    assert_eq!(cache_max_age("max-age=abc"), None);
}

#[test]
fn refresh_interval_is_clamped() {
    let keys = IssuerKeys::remote(
        "t".into(),
        KeyOrigin::JwksUri("http://127.0.0.1:1/".into()),
        RefreshConfig::default(),
        reqwest::Client::new(),
    );
    let r = RefreshConfig::default();
    assert_eq!(keys.next_refresh(Some(Duration::ZERO)), r.min_interval);
    assert_eq!(
        keys.next_refresh(Some(Duration::from_secs(10_000_000))),
        r.max_interval
    );
    assert_eq!(keys.next_refresh(None), r.interval);
    assert!(!keys.is_ready());
}

#[test]
fn discovery_checks_the_issuer() {
    let doc = json!({
        "issuer": "https://idp.example",
        "authorization_endpoint": "https://idp.example/auth",
        "jwks_uri": "https://idp.example/jwks",
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    });
    assert_eq!(
        discovered_jwks_uri(&doc, "https://idp.example").unwrap(),
        "https://idp.example/jwks"
    );
    assert!(discovered_jwks_uri(&doc, "https://other.example").is_err());
    assert!(discovered_jwks_uri(&json!({"issuer": 1}), "x").is_err());
}
