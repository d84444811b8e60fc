//! Signature verification with keys parsed once, at key-set load.
//!
//! `jsonwebtoken`'s `crypto::verify` rebuilds the public key from its JWK
//! components on every call (for RSA that is most of the cost of a verify),
//! and it offers no way to keep a parsed key. So public keys are parsed
//! here into `aws-lc-rs` `ParsedPublicKey`s (the same crypto library
//! `jsonwebtoken` uses), one per algorithm the key serves; HMAC secrets
//! stay with `jsonwebtoken`, whose HMAC check is already cheap and
//! constant-time.

use aws_lc_rs::signature::{self, ParsedPublicKey, RsaParameters, RsaPublicKeyComponents};
use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::keys::KeyKind;

/// Ready-to-use key material.
#[derive(Clone)]
pub enum KeyMaterial {
    /// A public key, parsed once per algorithm it may verify.
    Public(Vec<(Algorithm, ParsedPublicKey)>),
    /// An HMAC shared secret.
    Secret(DecodingKey),
}

impl KeyMaterial {
    /// Parses the public key of a JWK of the given kind; `None` when the
    /// components are malformed or the key is weaker than allowed (RSA
    /// moduli under 2048 bits are refused at verification by `aws-lc-rs`).
    pub fn from_jwk(jwk: &Jwk, kind: KeyKind) -> Option<KeyMaterial> {
        let b64 = |s: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s)
                .ok()
        };
        let parsed = match (&jwk.algorithm, kind) {
            (AlgorithmParameters::RSA(p), KeyKind::Rsa) => {
                let (n, e) = (b64(&p.n)?, b64(&p.e)?);
                let components = RsaPublicKeyComponents {
                    n: n.as_slice(),
                    e: e.as_slice(),
                };
                let rsa =
                    |params: &'static RsaParameters| components.to_parsed_public_key(params).ok();
                vec![
                    (
                        Algorithm::RS256,
                        rsa(&signature::RSA_PKCS1_2048_8192_SHA256)?,
                    ),
                    (
                        Algorithm::RS384,
                        rsa(&signature::RSA_PKCS1_2048_8192_SHA384)?,
                    ),
                    (
                        Algorithm::RS512,
                        rsa(&signature::RSA_PKCS1_2048_8192_SHA512)?,
                    ),
                    (Algorithm::PS256, rsa(&signature::RSA_PSS_2048_8192_SHA256)?),
                    (Algorithm::PS384, rsa(&signature::RSA_PSS_2048_8192_SHA384)?),
                    (Algorithm::PS512, rsa(&signature::RSA_PSS_2048_8192_SHA512)?),
                ]
            }
            (AlgorithmParameters::EllipticCurve(p), KeyKind::P256 | KeyKind::P384) => {
                let (x, y) = (b64(&p.x)?, b64(&p.y)?);
                let (len, alg, verifier) = if kind == KeyKind::P256 {
                    (32, Algorithm::ES256, &signature::ECDSA_P256_SHA256_FIXED)
                } else {
                    (48, Algorithm::ES384, &signature::ECDSA_P384_SHA384_FIXED)
                };
                if x.len() != len || y.len() != len {
                    return None;
                }
                let mut point = Vec::with_capacity(1 + 2 * len);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                vec![(alg, ParsedPublicKey::new(verifier, point).ok()?)]
            }
            (AlgorithmParameters::OctetKeyPair(p), KeyKind::Ed25519) => {
                let x = b64(&p.x)?;
                vec![(
                    Algorithm::EdDSA,
                    ParsedPublicKey::new(&signature::ED25519, x).ok()?,
                )]
            }
            _ => return None,
        };
        Some(KeyMaterial::Public(parsed))
    }

    /// An HMAC shared secret.
    pub fn secret(bytes: &[u8]) -> KeyMaterial {
        KeyMaterial::Secret(DecodingKey::from_secret(bytes))
    }

    /// Whether `signature_b64` (base64url, as in a compact JWS) is a valid
    /// `alg` signature of `message` under this key.
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature_b64: &str) -> bool {
        match self {
            KeyMaterial::Public(keys) => {
                let Some((_, key)) = keys.iter().find(|(a, _)| *a == alg) else {
                    return false;
                };
                let Ok(sig) =
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(signature_b64)
                else {
                    return false;
                };
                key.verify_sig(message, &sig).is_ok()
            }
            KeyMaterial::Secret(key) => {
                matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
                    && jsonwebtoken::crypto::verify(signature_b64, message, key, alg)
                        .unwrap_or(false)
            }
        }
    }
}
