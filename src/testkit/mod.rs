//! Signing keys and token minting for tests (unit, integration, benches).
//! Not used by the service itself: compiled only for the crate's own unit
//! tests and with the `testkit` feature, which the integration tests and
//! benches turn on through the crate's dev-dependency on itself. The
//! release binary does not link it (nor `rcgen`).
#![doc(hidden)]
// Test-only helper: a failure here is a broken test setup, so panicking is right.
#![allow(clippy::expect_used)]

pub mod certs;
pub mod flaky;
pub mod form_server;
pub mod jwks_server;
pub mod redis;
pub mod store;
pub mod tempdir;

pub use tempdir::TempDir;

use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// A signing key with its public JWK.
pub struct TestKey {
    /// Algorithm the key signs with.
    pub alg: Algorithm,
    /// Key id placed in tokens and the JWK.
    pub kid: String,
    /// Private key.
    pub encoding: EncodingKey,
    /// Public JWK (with `kid`, `alg`, `use`).
    pub jwk: Value,
}

impl TestKey {
    /// Generates a new key for `alg` (RS256, ES256 or EdDSA).
    pub fn generate(alg: Algorithm, kid: &str) -> TestKey {
        let sig = match alg {
            Algorithm::ES256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Algorithm::EdDSA => &rcgen::PKCS_ED25519,
            _ => &rcgen::PKCS_RSA_SHA256,
        };
        let pair = rcgen::KeyPair::generate_for(sig).expect("key generation");
        let pem = pair.serialize_pem();
        let encoding = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem.as_bytes()),
            _ => EncodingKey::from_rsa_pem(pem.as_bytes()),
        }
        .expect("PEM from rcgen parses");
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let raw = pair.public_key_raw();
        let mut jwk = match alg {
            // Uncompressed point: 0x04 || x || y.
            Algorithm::ES256 => json!({"kty": "EC", "crv": "P-256", "alg": "ES256",
                                       "x": b64(&raw[1..33]), "y": b64(&raw[33..65])}),
            Algorithm::EdDSA => {
                json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "x": b64(raw)})
            }
            _ => serde_json::to_value(Jwk::from_encoding_key(&encoding, alg).expect("public JWK"))
                .expect("JWK serializes"),
        };
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        TestKey {
            alg,
            kid: kid.to_string(),
            encoding,
            jwk,
        }
    }

    /// Signs a header and claims given as JSON text, byte for byte (for
    /// tokens no JSON serializer would write: duplicate members, odd types).
    pub fn sign_raw(&self, header: &str, claims: &str) -> String {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let message = format!("{}.{}", b64(header), b64(claims));
        let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &self.encoding, self.alg)
            .expect("signing");
        format!("{message}.{signature}")
    }

    /// Signs `claims` with this key, `kid` in the header.
    pub fn mint(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("signing")
    }
}

/// A JWKS document holding these keys.
pub fn jwks(keys: &[&TestKey]) -> Value {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    crate::clock::now_secs()
}

/// Typical valid claims for `iss`/`aud`, expiring in an hour.
pub fn claims(iss: &str, aud: &str, sub: &str) -> Value {
    let now = now();
    json!({"iss": iss, "aud": aud, "sub": sub, "iat": now, "exp": now + 3600})
}

/// A `CheckRequest` shaped like Envoy's for a GET (HTTP/1.1, https) from
/// peer `source`, with the given lower-case headers.
pub fn check_request(
    host: &str,
    path: &str,
    source: &str,
    headers: std::collections::HashMap<String, String>,
) -> crate::proto::auth::CheckRequest {
    crate::check::request::described::Described::get(host, path, source, headers)
        .into_check_request()
}

/// The HTTP status a `CheckResponse` gives the client: 200 for an allow.
pub fn http_status(response: &crate::proto::auth::CheckResponse) -> u16 {
    use crate::proto::auth::check_response::HttpResponse;
    match &response.http_response {
        Some(HttpResponse::OkResponse(_)) => 200,
        Some(HttpResponse::DeniedResponse(d)) => d
            .status
            .as_ref()
            .map_or(0, |s| u16::try_from(s.code).unwrap_or(0)),
        None => 0,
    }
}

/// A JWT-authenticated identity for `user` (subject `sub-<user>`, e-mail
/// `<user>@example.org`, uid 1000) holding `scopes`.
pub fn identity(user: &str, scopes: &[&str]) -> crate::model::identity::Identity {
    crate::model::identity::Identity {
        subject: format!("sub-{user}"),
        username: Some(user.into()),
        email: Some(format!("{user}@example.org")),
        uid: Some("1000".into()),
        groups: vec![],
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        kind: crate::model::identity::CredentialKind::Jwt,
        issuer: "idp".into(),
        expires_at: None,
        token: crate::secret::Secret::default(),
        query_parameter: None,
        tool: None,
        grant: None,
        csrf: None,
        claims: None,
    }
}

/// A request to `https://app.example<path>` with `method` and the given
/// (lower-case) headers.
pub fn request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> crate::model::request::Request {
    crate::model::request::Request {
        method: method.into(),
        scheme: "https".into(),
        host: "app.example".into(),
        authority: "app.example".into(),
        path: path.into(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

/// The header plan of an allowed check; panics on a denial.
pub fn permit(outcome: crate::model::outcome::Outcome) -> crate::model::outcome::HeaderPlan {
    match outcome {
        crate::model::outcome::Outcome::Permit(plan) => plan,
        crate::model::outcome::Outcome::Deny(deny) => panic!("denied: {deny}"),
    }
}

/// The reason of a denied check; panics when it was allowed.
pub fn deny(outcome: crate::model::outcome::Outcome) -> crate::model::deny::Deny {
    match outcome {
        crate::model::outcome::Outcome::Deny(deny) => deny,
        crate::model::outcome::Outcome::Permit(plan) => panic!("allowed: {plan:?}"),
    }
}

/// The value a plan sets for header `name` (case-insensitive), if any.
pub fn plan_header<'a>(plan: &'a crate::model::outcome::HeaderPlan, name: &str) -> Option<&'a str> {
    plan.set
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Runs a `GET https://h.test<path>` from peer 10.0.0.1 with `headers`
/// through `engine`'s whole pipeline and returns its outcome.
pub async fn decide(
    engine: &crate::check::pipeline::Engine,
    path: &str,
    headers: &[(&str, &str)],
) -> crate::model::outcome::Outcome {
    let headers = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    engine
        .decide(Ok(crate::check::request::described::Described::get(
            "h.test", path, "10.0.0.1", headers,
        )))
        .await
        .0
}
