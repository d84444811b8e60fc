//! Native tests of the decision (`cargo test` in inproc/wasm). The keys in
//! testdata/ are throwaway test keys.

use super::*;
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;

const ISS: &str = "https://issuer.test";
const NOW: u64 = 1_800_000_000;

fn config(extra: Value) -> Config {
    let mut cfg = json!({
        "issuer": ISS,
        "audiences": ["api"],
        "jwks": serde_json::from_str::<Value>(include_str!("../../testdata/jwks.json")).unwrap(),
    });
    for (k, v) in extra.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    serde_json::from_value(cfg).unwrap()
}

fn sign(pem: &str, kid: Option<&str>, claims: Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    encode(
        &header,
        &claims,
        &EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn good(claims: Value) -> String {
    let mut base = json!({"iss": ISS, "aud": "api", "sub": "alice", "exp": NOW + 600});
    for (k, v) in claims.as_object().unwrap() {
        base[k] = v.clone();
    }
    sign(include_str!("../../testdata/key.pem"), Some("test-1"), base)
}

#[test]
fn a_valid_token_gives_the_identity() {
    let v = Verifier::new(&config(json!({}))).unwrap();
    let token = good(json!({"email": "a@example.com", "groups": ["staff", "dev"]}));
    assert_eq!(
        v.verify(&token, NOW).unwrap(),
        Identity {
            user: "alice".into(),
            email: Some("a@example.com".into()),
            groups: Some("staff,dev".into()),
            exp: NOW + 600,
        }
    );
}

#[test]
fn wrong_issuer_audience_expiry_key_and_signature_are_refused() {
    let v = Verifier::new(&config(json!({}))).unwrap();
    let refused = |t: &str| v.verify(t, NOW).unwrap_err();
    assert_eq!(
        refused(&good(json!({"iss": "https://other"}))),
        Deny::InvalidToken("wrong issuer")
    );
    assert_eq!(
        refused(&good(json!({"aud": "other"}))),
        Deny::InvalidToken("wrong audience")
    );
    assert_eq!(
        refused(&good(json!({"exp": NOW - 31}))),
        Deny::InvalidToken("token expired")
    );
    assert!(
        v.verify(&good(json!({"exp": NOW - 29})), NOW).is_ok(),
        "within the leeway"
    );
    assert_eq!(
        refused(&good(json!({"nbf": NOW + 60}))),
        Deny::InvalidToken("token not yet valid")
    );
    let other = sign(
        include_str!("../../testdata/other.pem"),
        Some("test-1"),
        json!({"iss": ISS, "aud": "api", "sub": "alice", "exp": NOW + 600}),
    );
    assert_eq!(refused(&other), Deny::InvalidToken("bad signature"));
    let unknown = sign(
        include_str!("../../testdata/key.pem"),
        Some("nope"),
        json!({"iss": ISS, "aud": "api", "sub": "alice", "exp": NOW + 600}),
    );
    assert_eq!(refused(&unknown), Deny::InvalidToken("unknown signing key"));
    assert_eq!(
        refused("not.a.token"),
        Deny::InvalidToken("malformed token")
    );
    let no_exp = sign(
        include_str!("../../testdata/key.pem"),
        Some("test-1"),
        json!({"iss": ISS, "aud": "api", "sub": "alice"}),
    );
    assert_eq!(refused(&no_exp), Deny::InvalidToken("missing claim"));
    assert_eq!(
        refused(&good(json!({"sub": "eve\r\nx-auth-request-user: root"}))),
        Deny::InvalidToken("unusable identity claims")
    );
}

#[test]
fn the_cache_is_bounded_and_forgets_expired_tokens() {
    let mut cache = Cache::new(2);
    let id = |exp| {
        Rc::new(Identity {
            user: "u".into(),
            email: None,
            groups: None,
            exp,
        })
    };
    let (a, b, c) = (Cache::key("a"), Cache::key("b"), Cache::key("c"));
    cache.insert(a, id(NOW + 10));
    cache.insert(b, id(NOW + 10));
    cache.insert(c, id(NOW + 10));
    assert_eq!(cache.len(), 2);
    assert!(cache.get(&a, NOW, 0).is_none(), "the oldest went first");
    assert!(cache.get(&c, NOW, 0).is_some());
    assert!(cache.get(&c, NOW + 10, 0).is_none(), "expired");
    assert_eq!(cache.len(), 1);
    let mut off = Cache::new(0);
    off.insert(a, id(NOW + 10));
    assert!(off.is_empty());
}

#[test]
fn bearer_scheme() {
    assert_eq!(bearer("Bearer abc"), Some("abc"));
    assert_eq!(bearer("bearer  abc "), Some("abc"));
    assert_eq!(bearer("Basic abc"), None);
    assert_eq!(bearer("Bearer "), None);
}

#[test]
fn challenges_match_gatehouse() {
    let (h, body) = Deny::InvalidToken("bad signature").challenge("gatehouse");
    assert_eq!(
        h,
        r#"Bearer realm="gatehouse", error="invalid_token", error_description="bad signature""#
    );
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"],
        "invalid_token"
    );
    assert_eq!(Deny::NoCredential.challenge("r").0, r#"Bearer realm="r""#);
}

#[test]
fn tampered_tokens_fail_the_rs256_check() {
    let v = Verifier::new(&config(json!({}))).unwrap();
    let token = good(json!({}));
    let (msg, sig) = token.rsplit_once('.').unwrap();
    let (head, _) = msg.split_once('.').unwrap();
    let other_payload = URL_SAFE_NO_PAD
        .encode(br#"{"iss":"https://issuer.test","aud":"api","sub":"root","exp":1900000000}"#);
    let swapped = format!("{head}.{other_payload}.{sig}");
    assert_eq!(
        v.verify(&swapped, NOW).unwrap_err(),
        Deny::InvalidToken("bad signature")
    );
    let mut raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
    for i in [0, 100, raw.len() - 1] {
        raw[i] ^= 1;
        let t = format!("{msg}.{}", URL_SAFE_NO_PAD.encode(&raw));
        assert_eq!(
            v.verify(&t, NOW).unwrap_err(),
            Deny::InvalidToken("bad signature")
        );
        raw[i] ^= 1;
    }
    let short = format!("{msg}.{}", URL_SAFE_NO_PAD.encode(&raw[1..]));
    assert_eq!(
        v.verify(&short, NOW).unwrap_err(),
        Deny::InvalidToken("bad signature")
    );
    assert!(
        v.verify(&format!("{msg}.{}", URL_SAFE_NO_PAD.encode(&raw)), NOW)
            .is_ok()
    );
}

#[test]
fn rsa_keys_under_2048_bits_or_even_are_refused() {
    assert!(crate::rsa_verify::RsaKey::new(&[0xff; 128], &[1, 0, 1]).is_none());
    let mut even = vec![0xff; 256];
    even[255] = 0xfe;
    assert!(crate::rsa_verify::RsaKey::new(&even, &[1, 0, 1]).is_none());
    assert!(crate::rsa_verify::RsaKey::new(&[0xff; 256], &[1, 0, 1]).is_some());
}
