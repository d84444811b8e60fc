use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::json;

use super::*;
use crate::check::authn::jwt::keys::{IssuerKeys, KeySet};
use crate::testkit::{self, TestKey};

mod strict;

pub(super) const ISS: &str = "https://issuer.test";
pub(super) const AUD: &str = "api";

pub(super) struct Fixture {
    pub(super) verifier: JwtVerifier,
    pub(super) rsa: TestKey,
    pub(super) ec: TestKey,
    pub(super) ed: TestKey,
}

pub(super) fn fixture() -> Fixture {
    let rsa = TestKey::generate(Algorithm::RS256, "rsa1");
    let ec = TestKey::generate(Algorithm::ES256, "ec1");
    let ed = TestKey::generate(Algorithm::EdDSA, "ed1");
    let set = KeySet::from_jwks(&testkit::jwks(&[&rsa, &ec, &ed])).unwrap();
    let issuer = Issuer {
        name: "test".into(),
        issuer: ISS.into(),
        audiences: vec![AUD.into(), "other".into()],
        algorithms: vec![Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA],
        keys: Arc::new(IssuerKeys::fixed("test".into(), set)),
        claims: ClaimsConfig::default(),
        types: TypePolicy::default(),
        max_lifetime: None,
    };
    let mut mapping = BTreeMap::new();
    mapping.insert("read:all".to_string(), vec!["readers".to_string()]);
    mapping.insert(
        "admin".to_string(),
        vec!["admins".to_string(), "root".to_string()],
    );
    Fixture {
        verifier: JwtVerifier::new(vec![issuer], 30, &mapping),
        rsa,
        ec,
        ed,
    }
}

pub(super) fn b64(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

pub(super) async fn verify(f: &Fixture, token: &str) -> Result<Identity, JwtError> {
    f.verifier.verify(&Secret::new(token)).await
}

#[tokio::test]
async fn accepts_rs256_es256_eddsa() {
    let f = fixture();
    for key in [&f.rsa, &f.ec, &f.ed] {
        let token = key.mint(&testkit::claims(ISS, AUD, "alice"));
        let id = verify(&f, &token)
            .await
            .unwrap_or_else(|e| panic!("{:?}: {e}", key.alg));
        assert_eq!(id.subject, "alice");
        assert_eq!(id.issuer, "test");
    }
}

#[tokio::test]
async fn identity_fields_scopes_and_groups() {
    let f = fixture();
    let mut claims = testkit::claims(ISS, AUD, "u-1");
    claims["email"] = json!("a@example.com");
    claims["uidNumber"] = json!(4242);
    claims["isMemberOf"] = json!([{"name": "readers", "id": 1}, {"name": "admins"}]);
    claims["scope"] = json!("openid profile");
    claims["scp"] = json!(["extra"]);
    let id = verify(&f, &f.ec.mint(&claims)).await.unwrap();
    assert_eq!(id.email.as_deref(), Some("a@example.com"));
    assert_eq!(id.uid.as_deref(), Some("4242"));
    assert_eq!(id.groups, vec!["readers", "admins"]);
    let scopes: Vec<_> = id.scopes.iter().map(String::as_str).collect();
    assert_eq!(
        scopes,
        vec!["admin", "extra", "openid", "profile", "read:all"]
    );
}

#[tokio::test]
async fn string_groups_and_audience_arrays() {
    let f = fixture();
    let mut claims = testkit::claims(ISS, AUD, "u");
    claims["isMemberOf"] = json!(["root"]);
    claims["aud"] = json!(["nope", "other"]);
    let id = verify(&f, &f.rsa.mint(&claims)).await.unwrap();
    assert!(id.scopes.contains("admin"));
}

#[tokio::test]
async fn time_claims() {
    let f = fixture();
    let now = testkit::now();
    let cases = [
        (json!({"exp": now - 100}), JwtError::Expired),
        (json!({"nbf": now + 100}), JwtError::NotYetValid),
        (json!({"iat": now + 100}), JwtError::IssuedInFuture),
        (json!({"exp": "soon"}), JwtError::MissingExpiry),
        (json!({"exp": null}), JwtError::MissingExpiry),
    ];
    for (patch, expected) in cases {
        let mut claims = testkit::claims(ISS, AUD, "u");
        for (k, v) in patch.as_object().unwrap() {
            claims[k] = v.clone();
        }
        assert_eq!(
            verify(&f, &f.ec.mint(&claims)).await.unwrap_err(),
            expected,
            "{claims}"
        );
    }
    // Within leeway is fine.
    let mut claims = testkit::claims(ISS, AUD, "u");
    claims["exp"] = json!(now - 10);
    claims["nbf"] = json!(now + 10);
    assert!(verify(&f, &f.ec.mint(&claims)).await.is_ok());
}

#[tokio::test]
async fn issuer_audience_subject() {
    let f = fixture();
    let t = f.ec.mint(&testkit::claims("https://evil.test", AUD, "u"));
    assert_eq!(verify(&f, &t).await.unwrap_err(), JwtError::UnknownIssuer);
    let t = f.ec.mint(&testkit::claims(ISS, "someone-else", "u"));
    assert_eq!(verify(&f, &t).await.unwrap_err(), JwtError::BadAudience);
    let mut claims = testkit::claims(ISS, AUD, "u");
    claims.as_object_mut().unwrap().remove("aud");
    assert_eq!(
        verify(&f, &f.ec.mint(&claims)).await.unwrap_err(),
        JwtError::BadAudience
    );
    claims = testkit::claims(ISS, AUD, "u");
    claims.as_object_mut().unwrap().remove("sub");
    assert_eq!(
        verify(&f, &f.ec.mint(&claims)).await.unwrap_err(),
        JwtError::MissingSubject
    );
}

#[tokio::test]
async fn alg_none_is_refused() {
    let f = fixture();
    let token = format!(
        "{}.{}.",
        b64(&json!({"alg": "none"})),
        b64(&testkit::claims(ISS, AUD, "u"))
    );
    assert_eq!(
        verify(&f, &token).await.unwrap_err(),
        JwtError::UnsupportedAlgorithm
    );
    let token = format!(
        "{}.{}.",
        b64(&json!({"alg": "None"})),
        b64(&testkit::claims(ISS, AUD, "u"))
    );
    assert_eq!(
        verify(&f, &token).await.unwrap_err(),
        JwtError::UnsupportedAlgorithm
    );
}

#[tokio::test]
async fn hs256_with_the_rsa_public_key_is_refused() {
    let f = fixture();
    // Classic confusion: sign HS256 with the RSA public key's bytes as secret.
    let n = f.rsa.jwk["n"].as_str().unwrap().to_string();
    let key = jsonwebtoken::EncodingKey::from_secret(n.as_bytes());
    let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
    header.kid = Some("rsa1".into());
    let token = jsonwebtoken::encode(&header, &testkit::claims(ISS, AUD, "u"), &key).unwrap();
    assert_eq!(
        verify(&f, &token).await.unwrap_err(),
        JwtError::AlgorithmNotAllowed
    );
}

#[tokio::test]
async fn algorithm_must_match_the_key_type() {
    // An issuer that allows both RS256 and ES256: an ES256 header naming
    // the RSA key's kid must not verify.
    let f = fixture();
    let forged = format!(
        "{}.{}.{}",
        b64(&json!({"alg": "ES256", "kid": "rsa1"})),
        b64(&testkit::claims(ISS, AUD, "u")),
        "AAAA"
    );
    assert_eq!(
        verify(&f, &forged).await.unwrap_err(),
        JwtError::BadSignature
    );
}

#[tokio::test]
async fn tampered_and_malformed_tokens() {
    let f = fixture();
    let token = f.ec.mint(&testkit::claims(ISS, AUD, "alice"));
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    parts[1] = b64(&testkit::claims(ISS, AUD, "mallory"));
    assert_eq!(
        verify(&f, &parts.join(".")).await.unwrap_err(),
        JwtError::BadSignature
    );
    for bad in [
        "",
        "a",
        "a.b",
        "a.b.c.d",
        "!!.??.**",
        "e30.e30.",
        "bm90IGpzb24.e30.sig",
        &format!("{}..", b64(&json!({"alg":"ES256"}))),
    ] {
        let err = verify(&f, bad).await.unwrap_err();
        assert!(
            matches!(
                err,
                JwtError::Malformed | JwtError::UnknownIssuer | JwtError::BadHeaderParameter("alg")
            ),
            "{bad}: {err:?}"
        );
    }
}

#[tokio::test]
async fn unknown_kid_and_crit() {
    let f = fixture();
    let other = TestKey::generate(Algorithm::ES256, "unknown");
    let token = other.mint(&testkit::claims(ISS, AUD, "u"));
    assert_eq!(verify(&f, &token).await.unwrap_err(), JwtError::UnknownKey);
    let token = format!(
        "{}.{}.sig",
        b64(&json!({"alg": "ES256", "kid": "ec1", "crit": ["exp"]})),
        b64(&testkit::claims(ISS, AUD, "u"))
    );
    assert_eq!(
        verify(&f, &token).await.unwrap_err(),
        JwtError::CriticalHeader
    );
}

/// Found by the `jwt_verify` fuzz target (FUZZING.md; its corpus holds the
/// input as `seed-crash-header-not-utf8`): serde_json skips the string of
/// a member the header type does not name without checking that it is
/// UTF-8, so a correctly signed token whose JOSE header is not UTF-8 JSON
/// verifies. Issue 15 (JOSE strictness) asks for its refusal.
#[tokio::test]
async fn header_that_is_not_utf8_is_refused() {
    let f = fixture();
    let header = b"{\"alg\":\"ES256\",\"kid\":\"ec1\",\"x\":\"\xae\"}";
    let signed = format!(
        "{}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header),
        b64(&testkit::claims(ISS, AUD, "alice"))
    );
    let signature =
        jsonwebtoken::crypto::sign(signed.as_bytes(), &f.ec.encoding, Algorithm::ES256).unwrap();
    let token = format!("{signed}.{signature}");
    assert_eq!(verify(&f, &token).await.unwrap_err(), JwtError::Malformed);
}

#[tokio::test]
async fn token_without_kid_tries_matching_keys() {
    let f = fixture();
    let header = jsonwebtoken::Header::new(Algorithm::ES256);
    let token =
        jsonwebtoken::encode(&header, &testkit::claims(ISS, AUD, "u"), &f.ec.encoding).unwrap();
    assert!(verify(&f, &token).await.is_ok());
}

#[tokio::test]
async fn keys_not_loaded_fail_closed() {
    let issuer = Issuer {
        name: "remote".into(),
        issuer: ISS.into(),
        audiences: vec![AUD.into()],
        algorithms: vec![Algorithm::ES256],
        keys: Arc::new(IssuerKeys::remote(
            "remote".into(),
            crate::check::authn::jwt::keys::KeyOrigin::JwksUri("http://127.0.0.1:9/jwks".into()),
            crate::config::RefreshConfig::default(),
            reqwest::Client::new(),
        )),
        claims: ClaimsConfig::default(),
        types: TypePolicy::default(),
        max_lifetime: None,
    };
    let verifier = JwtVerifier::new(vec![issuer], 30, &BTreeMap::new());
    let key = TestKey::generate(Algorithm::ES256, "k");
    let err = verifier
        .verify(&Secret::new(key.mint(&testkit::claims(ISS, AUD, "u"))))
        .await
        .unwrap_err();
    assert_eq!(err, JwtError::KeysUnavailable);
}

fn cached_fixture() -> (JwtVerifier, TestKey, Arc<IssuerKeys>) {
    let ec = TestKey::generate(Algorithm::ES256, "ec1");
    let keys = Arc::new(IssuerKeys::fixed(
        "test".into(),
        KeySet::from_jwks(&testkit::jwks(&[&ec])).unwrap(),
    ));
    let issuer = Issuer {
        name: "test".into(),
        issuer: ISS.into(),
        audiences: vec![AUD.into()],
        algorithms: vec![Algorithm::ES256],
        keys: keys.clone(),
        claims: ClaimsConfig::default(),
        types: TypePolicy::default(),
        max_lifetime: None,
    };
    let verifier = JwtVerifier::new(vec![issuer], 30, &BTreeMap::new()).with_cache(100);
    (verifier, ec, keys)
}

/// Lookup counters not registered anywhere, to read back in a test.
fn cache_counters() -> crate::check::authn::jwt::cache::TokenCacheMetrics {
    let counter = |name: &str| prometheus::IntCounter::new(name, "test").unwrap();
    crate::check::authn::jwt::cache::TokenCacheMetrics {
        hit: counter("hit"),
        miss: counter("miss"),
        stale: counter("stale"),
    }
}

#[tokio::test]
async fn cache_hit_returns_the_same_identity_with_the_presented_token() {
    let (verifier, ec, _) = cached_fixture();
    let mut claims = testkit::claims(ISS, AUD, "alice");
    claims["scope"] = json!("a b");
    claims["email"] = json!("alice@example.com");
    claims["uidNumber"] = json!(7);
    claims["isMemberOf"] = json!([{"name": "g2"}, {"name": "g1"}]);
    let token = Secret::new(ec.mint(&claims));
    let first = verifier.verify(&token).await.unwrap();
    assert_eq!(verifier.cache().unwrap().len(), 1);
    let second = verifier.verify(&token).await.unwrap();
    assert_eq!(second.subject, first.subject);
    assert_eq!(second.username, first.username);
    assert_eq!(second.email.as_deref(), Some("alice@example.com"));
    assert_eq!(second.uid.as_deref(), Some("7"));
    assert_eq!(second.groups, vec!["g2", "g1"]);
    assert_eq!(second.groups, first.groups);
    assert_eq!(second.scopes, first.scopes);
    assert_eq!(second.issuer, first.issuer);
    assert_eq!(second.expires_at, first.expires_at);
    assert_eq!(second.kind, first.kind);
    assert_eq!(second.token.expose(), token.expose());
    assert_eq!(verifier.cache().unwrap().len(), 1);
}

#[tokio::test]
async fn cached_token_still_fails_after_its_exp() {
    let (verifier, ec, _) = cached_fixture();
    let counters = cache_counters();
    let verifier = verifier.with_cache_metrics(counters.clone());
    let now = testkit::now();
    let mut claims = testkit::claims(ISS, AUD, "alice");
    claims["exp"] = json!(now + 60);
    let token = Secret::new(ec.mint(&claims));
    assert!(verifier.verify_at(&token, now).await.is_ok());
    assert!(verifier.verify_at(&token, now + 1).await.is_ok());
    assert_eq!((counters.miss.get(), counters.hit.get()), (1, 1));
    // Past exp + leeway (30 s): the cached entry must not be used.
    let err = verifier.verify_at(&token, now + 60 + 31).await.unwrap_err();
    assert_eq!(err, JwtError::Expired);
    assert_eq!(counters.stale.get(), 1);
    assert_eq!(counters.hit.get(), 1);
}

#[tokio::test]
async fn cached_token_fails_after_its_key_is_removed() {
    let (verifier, ec, keys) = cached_fixture();
    let counters = cache_counters();
    let verifier = verifier.with_cache_metrics(counters.clone());
    let token = Secret::new(ec.mint(&testkit::claims(ISS, AUD, "alice")));
    assert!(verifier.verify(&token).await.is_ok());
    let other = TestKey::generate(Algorithm::ES256, "ec2");
    keys.install(KeySet::from_jwks(&testkit::jwks(&[&other])).unwrap());
    assert_eq!(
        verifier.verify(&token).await.unwrap_err(),
        JwtError::UnknownKey
    );
    assert_eq!(
        (
            counters.miss.get(),
            counters.stale.get(),
            counters.hit.get()
        ),
        (1, 1, 0)
    );
}

#[tokio::test]
async fn unchanged_key_set_keeps_the_cache() {
    let (verifier, ec, keys) = cached_fixture();
    let token = Secret::new(ec.mint(&testkit::claims(ISS, AUD, "alice")));
    assert!(verifier.verify(&token).await.is_ok());
    let generation = keys.generation();
    // A refresh returning the same keys does not invalidate anything.
    keys.install(KeySet::from_jwks(&testkit::jwks(&[&ec])).unwrap());
    assert_eq!(keys.generation(), generation);
    let cache = verifier.cache().unwrap();
    let digest = crate::check::authn::jwt::cache::digest(token.expose());
    assert!(cache.get(&digest, testkit::now(), &token).is_some());
}
