//! JWT header/claims parsing and verification (`JwtVerifier::verify_at`)
//! with a fixed key set: an HMAC issuer, gatehouse's own (link) issuer on
//! the same secret, and an issuer with a fixed EC P-256 + Ed25519 JWKS.
//!
//! Input: the first byte picks the mode.
//! - even: the rest is the token text, verified as it is;
//! - odd: the rest is `header JSON \0 claims JSON`; the harness encodes
//!   both and signs them with the HMAC secret (the algorithm the header
//!   names, HS256 otherwise), so the fuzzer reaches claim validation, the
//!   identity and link grants behind a valid signature.
//!
//! Property: an allow only ever comes with a valid HMAC signature of the
//! token's own header (the EC/Ed25519 issuer's keys are public only, so
//! nothing may pass there), its subject is the `sub` claim, and `exp` is
//! not in the past.
#![no_main]

use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse::check::authn::jwt::jose::TypePolicy;
use gatehouse::check::authn::jwt::keys::{IssuerKeys, KeySet};
use gatehouse::check::authn::jwt::{Issuer, JwtVerifier};
use gatehouse::config::ClaimsConfig;
use gatehouse::secret::Secret;
use jsonwebtoken::Algorithm;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

const SECRET: &[u8] = b"gatehouse-fuzz-shared-secret-0123456789";
const HS_ISS: &str = "https://hs.fuzz.test";
const LINK_ISS: &str = "https://gatehouse.fuzz.test";
const PK_ISS: &str = "https://pk.fuzz.test";
const NOW: u64 = 1_700_000_000;
const LEEWAY: u64 = 30;
const JWKS: &str = r#"{"keys":[
 {"kty":"EC","crv":"P-256","kid":"ec1","use":"sig","x":"AETvSX65KB86lDp05I7MlpgFKTx6ZVMnqqRDpZ-JZcU","y":"jaJSbG3RmfpCmsN1qyevqrmtctwjMQz1XyZ8OB79FzE"},
 {"kty":"OKP","crv":"Ed25519","kid":"ed1","x":"7JFrzCEvKQRstl43am-8DTJcqegTVtIKs6xuVKaB2S8"}]}"#;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    verifier: JwtVerifier,
}

fn issuer(name: &str, iss: &str, algorithms: Vec<Algorithm>, set: KeySet) -> Issuer {
    Issuer {
        name: name.into(),
        issuer: iss.into(),
        audiences: vec!["api".into(), LINK_ISS.into()],
        algorithms,
        keys: Arc::new(IssuerKeys::fixed(name.into(), set)),
        claims: ClaimsConfig::default(),
        types: TypePolicy::default(),
        max_lifetime: None,
    }
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let hs = vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
        let jwks: Value = serde_json::from_str(JWKS).expect("fixed JWKS");
        let pk = KeySet::from_jwks(&jwks).expect("fixed JWKS has usable keys");
        let mut mapping = std::collections::BTreeMap::new();
        mapping.insert("admin".to_string(), vec!["admins".to_string()]);
        let mut verifier = JwtVerifier::new(
            vec![
                issuer("hs", HS_ISS, hs.clone(), KeySet::from_shared_secret(SECRET)),
                issuer("pk", PK_ISS, vec![Algorithm::ES256, Algorithm::EdDSA], pk),
            ],
            LEEWAY,
            &mapping,
        );
        verifier.add_internal_issuer(issuer(
            "gatehouse",
            LINK_ISS,
            hs,
            KeySet::from_shared_secret(SECRET),
        ));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        Fixture { runtime, verifier }
    })
}

fn hmac(alg: &str, message: &[u8]) -> Option<String> {
    use aws_lc_rs::hmac;
    let algorithm = match alg {
        "HS256" => hmac::HMAC_SHA256,
        "HS384" => hmac::HMAC_SHA384,
        "HS512" => hmac::HMAC_SHA512,
        _ => return None,
    };
    let tag = hmac::sign(&hmac::Key::new(algorithm, SECRET), message);
    Some(URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

fn json_part(part: &str) -> Option<Map<String, Value>> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = if mode & 1 == 0 {
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        text.to_string()
    } else {
        let (header, claims) = match rest.iter().position(|&b| b == 0) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &b"{}"[..]),
        };
        let alg = serde_json::from_slice::<Value>(header)
            .ok()
            .and_then(|h| h.get("alg").and_then(Value::as_str).map(str::to_string))
            .filter(|a| a.starts_with("HS"))
            .unwrap_or_else(|| "HS256".into());
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let signature = hmac(&alg, signed.as_bytes()).unwrap_or_default();
        format!("{signed}.{signature}")
    };

    let f = fixture();
    let result = f
        .runtime
        .block_on(f.verifier.verify_at(&Secret::new(token.clone()), NOW));
    let Ok(identity) = result else {
        return;
    };

    // An allow: the token must really be ours.
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "allowed a token that is not three parts");
    // A header that is not UTF-8 JSON is refused (found by this target;
    // pinned by `header_that_is_not_utf8_is_refused` in
    // src/check/authn/jwt/tests.rs and the seed `seed-crash-header-not-utf8`).
    let header = json_part(parts[0])
        .expect("allowed a token whose header is not JSON");
    let claims = json_part(parts[1]).expect("allowed a token whose claims are not JSON");
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    let signed = &token[..parts[0].len() + 1 + parts[1].len()];
    assert_eq!(
        hmac(alg, signed.as_bytes()).as_deref(),
        Some(parts[2]),
        "allowed a token without a valid HMAC signature (alg {alg:?})"
    );
    let iss = claims.get("iss").and_then(Value::as_str);
    assert!(
        iss == Some(HS_ISS) || iss == Some(LINK_ISS),
        "allowed issuer {iss:?} with an HMAC key"
    );
    assert_eq!(
        Some(identity.subject.as_str()),
        claims.get("sub").and_then(Value::as_str)
    );
    let exp = identity.expires_at.expect("an allowed token has exp");
    assert!(
        exp.saturating_add(LEEWAY) >= NOW,
        "allowed an expired token"
    );
    if iss == Some(LINK_ISS) {
        assert!(identity.grant.is_some(), "a link without a grant");
    }
});
