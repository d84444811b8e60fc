//! Public JWKs of our signing keys and their RFC 7638 thumbprints.

use base64::Engine as _;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
    EllipticCurveKeyType, Jwk, OctetKeyPairParameters, OctetKeyPairType, RSAKeyParameters,
    RSAKeyType, ThumbprintHash,
};
use serde_json::{Map, Value, json};

/// The public half of a signing key, as JWK members (RFC 7517/7518/8037).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// RSA: modulus and exponent, big-endian without leading zeros.
    Rsa {
        /// Modulus `n`.
        n: Vec<u8>,
        /// Exponent `e`.
        e: Vec<u8>,
    },
    /// EC P-256: affine coordinates, 32 bytes each.
    P256 {
        /// `x`.
        x: Vec<u8>,
        /// `y`.
        y: Vec<u8>,
    },
    /// Ed25519: the 32-byte public key.
    Ed25519 {
        /// `x`.
        x: Vec<u8>,
    },
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl PublicKey {
    /// From an uncompressed SEC1 point `0x04 || x || y` (P-256).
    pub fn p256_from_point(point: &[u8]) -> Option<PublicKey> {
        match point {
            [0x04, rest @ ..] if rest.len() == 64 => Some(PublicKey::P256 {
                x: rest[..32].to_vec(),
                y: rest[32..].to_vec(),
            }),
            _ => None,
        }
    }

    /// The required members (RFC 7638 §3.2), as published in `to_jwk`.
    fn required_members(&self) -> Vec<(&'static str, String)> {
        match self {
            PublicKey::Rsa { n, e } => vec![("e", b64(e)), ("kty", "RSA".into()), ("n", b64(n))],
            PublicKey::P256 { x, y } => vec![
                ("crv", "P-256".into()),
                ("kty", "EC".into()),
                ("x", b64(x)),
                ("y", b64(y)),
            ],
            PublicKey::Ed25519 { x } => vec![
                ("crv", "Ed25519".into()),
                ("kty", "OKP".into()),
                ("x", b64(x)),
            ],
        }
    }

    /// The same key as a `jsonwebtoken` JWK (required members only).
    fn to_jose(&self) -> Jwk {
        let algorithm = match self {
            PublicKey::Rsa { n, e } => AlgorithmParameters::RSA(RSAKeyParameters {
                key_type: RSAKeyType::RSA,
                n: b64(n),
                e: b64(e),
            }),
            PublicKey::P256 { x, y } => {
                AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
                    key_type: EllipticCurveKeyType::EC,
                    curve: EllipticCurve::P256,
                    x: b64(x),
                    y: b64(y),
                })
            }
            PublicKey::Ed25519 { x } => AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: EllipticCurve::Ed25519,
                x: b64(x),
            }),
        };
        Jwk {
            common: CommonParameters::default(),
            algorithm,
        }
    }

    /// RFC 7638 thumbprint (SHA-256, base64url without padding): the `kid`
    /// of our keys, computed by `jsonwebtoken` (the same canonical JSON of
    /// the required members, byte for byte).
    #[allow(clippy::expect_used)] // Cannot fail: see below.
    pub fn thumbprint(&self) -> String {
        // `Jwk::thumbprint` fails only for (1) an EC key on Ed25519 or an
        // OKP key on a NIST curve, (2) `AlgorithmParameters::Other`, or
        // (3) a digest error of the process `CryptoProvider`. `to_jose`
        // builds neither (1) nor (2), and (3) cannot happen: with only the
        // `aws_lc_rs` feature and no `install_default` in this crate, the
        // provider is jsonwebtoken's aws-lc one, whose `compute_digest`
        // always returns `Ok`.
        self.to_jose()
            .thumbprint(ThumbprintHash::SHA256)
            .expect("thumbprint of a well-formed RSA, P-256 or Ed25519 JWK")
    }

    /// The full public JWK with `kid`, `alg` and `use: sig`.
    pub fn to_jwk(&self, kid: &str, alg: &str) -> Value {
        let mut jwk: Map<String, Value> = self
            .required_members()
            .into_iter()
            .map(|(k, v)| (k.to_string(), Value::String(v)))
            .collect();
        jwk.insert("kid".into(), json!(kid));
        jwk.insert("alg".into(), json!(alg));
        jwk.insert("use".into(), json!("sig"));
        Value::Object(jwk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unb64(s: &str) -> Vec<u8> {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .expect("base64url")
    }

    #[test]
    fn rfc7638_example_thumbprint() {
        // RFC 7638 §3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let key = PublicKey::Rsa {
            n: unb64(n),
            e: unb64("AQAB"),
        };
        assert_eq!(
            key.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn ec_thumbprint_matches_the_demo_kid() {
        // config/demo.yaml's kid was computed independently (jwcrypto).
        let key = PublicKey::P256 {
            x: unb64("mA0RsYrR4cj_cChPDWB6UCuAU0KnGYQ9TkBJMDD3DKs"),
            y: unb64("YMB7-1a-VcO9PXYtDT67WCbhF9wL8Wrgh9vtYsgH1Xk"),
        };
        assert_eq!(
            key.thumbprint(),
            "bYgm0qhVzimAlTKwKJS24--a4mFqla2U4xEZd0aEzZ0"
        );
        let jwk = key.to_jwk("k", "ES256");
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["use"], "sig");
        assert!(jwk.get("d").is_none());
    }

    #[test]
    fn rfc8037_ed25519_thumbprint() {
        // RFC 8037 §A.3.
        let key = PublicKey::Ed25519 {
            x: unb64("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"),
        };
        assert_eq!(
            key.thumbprint(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn sec1_point_parsing() {
        let mut point = vec![0x04];
        point.extend([1u8; 64]);
        assert!(PublicKey::p256_from_point(&point).is_some());
        point[0] = 0x02;
        assert!(PublicKey::p256_from_point(&point).is_none());
        assert!(PublicKey::p256_from_point(&[0x04; 10]).is_none());
    }
}
