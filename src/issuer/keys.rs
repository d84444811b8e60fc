//! Signing keys of the internal issuer: loaded from PEM once, at start-up,
//! parsed into ready-to-sign key pairs (no per-token parsing), identified
//! by their RFC 7638 thumbprint. `Debug` never shows private material.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256,
    RsaKeyPair,
};

use super::jwk::PublicKey;

/// The algorithms our keys sign with: one per key type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(clippy::upper_case_acronyms)]
pub enum SigningAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RSA keys, at least 2048 bits).
    RS256,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// Ed25519.
    EdDSA,
}

impl SigningAlgorithm {
    /// The JOSE `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlgorithm::RS256 => "RS256",
            SigningAlgorithm::ES256 => "ES256",
            SigningAlgorithm::EdDSA => "EdDSA",
        }
    }

    /// Parses a JOSE `alg` name (exact spelling).
    pub fn parse(name: &str) -> Option<SigningAlgorithm> {
        match name {
            "RS256" => Some(SigningAlgorithm::RS256),
            "ES256" => Some(SigningAlgorithm::ES256),
            "EdDSA" => Some(SigningAlgorithm::EdDSA),
            _ => None,
        }
    }
}

/// Why a key could not be loaded, generated or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// No PEM block holding a private key.
    #[error("no PEM private key found (expected PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)")]
    NoPrivateKey,
    /// A password-protected key.
    #[error("encrypted private keys are not supported; decrypt it first")]
    Encrypted,
    /// The PEM body is not base64.
    #[error("malformed PEM: {0}")]
    MalformedPem(&'static str),
    /// The key type or curve is not one we sign with, or the DER is bad.
    #[error("unsupported or invalid key: need RSA (2048 to 8192 bits), EC P-256 or Ed25519")]
    Unsupported,
    /// The crypto library failed (generation or signing).
    #[error("cryptographic operation failed")]
    Crypto,
}

enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// One private signing key with its public JWK.
pub struct SigningKey {
    alg: SigningAlgorithm,
    kid: String,
    public: PublicKey,
    pair: Pair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// PEM text of a private key; `Debug` hides it.
pub struct PrivatePem(String);

impl PrivatePem {
    /// The PEM text, to be written to a file (never logged).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for PrivatePem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivatePem(<redacted>)")
    }
}

impl SigningKey {
    /// Parses the first private key in PEM text: PKCS#8 (`PRIVATE KEY`:
    /// RSA, P-256 or Ed25519), PKCS#1 (`RSA PRIVATE KEY`) or SEC1
    /// (`EC PRIVATE KEY`, P-256).
    pub fn from_pem(text: &str) -> Result<SigningKey, KeyError> {
        let (label, der) = first_private_key_block(text)?;
        let pair = match label.as_str() {
            "PRIVATE KEY" => {
                if let Ok(ed) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der) {
                    Pair::Ed(ed)
                } else if let Ok(ec) =
                    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
                {
                    Pair::Ec(ec)
                } else {
                    Pair::Rsa(RsaKeyPair::from_pkcs8(&der).map_err(|_| KeyError::Unsupported)?)
                }
            }
            "RSA PRIVATE KEY" => {
                Pair::Rsa(RsaKeyPair::from_der(&der).map_err(|_| KeyError::Unsupported)?)
            }
            "EC PRIVATE KEY" => Pair::Ec(
                EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
                    .map_err(|_| KeyError::Unsupported)?,
            ),
            _ => return Err(KeyError::NoPrivateKey),
        };
        Self::from_pair(pair)
    }

    fn from_pair(pair: Pair) -> Result<SigningKey, KeyError> {
        let (alg, public) = match &pair {
            Pair::Rsa(rsa) => {
                if rsa.public_modulus_len() < 256 {
                    return Err(KeyError::Unsupported);
                }
                let public = rsa.public_key();
                (
                    SigningAlgorithm::RS256,
                    PublicKey::Rsa {
                        n: public.modulus().big_endian_without_leading_zero().to_vec(),
                        e: public.exponent().big_endian_without_leading_zero().to_vec(),
                    },
                )
            }
            Pair::Ec(ec) => (
                SigningAlgorithm::ES256,
                PublicKey::p256_from_point(ec.public_key().as_ref())
                    .ok_or(KeyError::Unsupported)?,
            ),
            Pair::Ed(ed) => (
                SigningAlgorithm::EdDSA,
                PublicKey::Ed25519 {
                    x: ed.public_key().as_ref().to_vec(),
                },
            ),
        };
        Ok(SigningKey {
            alg,
            kid: public.thumbprint(),
            public,
            pair,
        })
    }

    /// Generates a new key (RSA: 3072 bits) and returns it with its
    /// PKCS#8 PEM.
    pub fn generate(alg: SigningAlgorithm) -> Result<(SigningKey, PrivatePem), KeyError> {
        let rng = SystemRandom::new();
        let pkcs8: Vec<u8> = match alg {
            SigningAlgorithm::RS256 => {
                let pair = RsaKeyPair::generate(KeySize::Rsa3072).map_err(|_| KeyError::Crypto)?;
                let der: Pkcs8V1Der<'static> = pair.as_der().map_err(|_| KeyError::Crypto)?;
                der.as_ref().to_vec()
            }
            SigningAlgorithm::ES256 => {
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| KeyError::Crypto)?
                    .as_ref()
                    .to_vec()
            }
            SigningAlgorithm::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|_| KeyError::Crypto)?
                .as_ref()
                .to_vec(),
        };
        let pem = PrivatePem(encode_pem("PRIVATE KEY", &pkcs8));
        let key = SigningKey::from_pem(pem.expose())?;
        Ok((key, pem))
    }

    /// The algorithm this key signs with.
    pub fn alg(&self) -> SigningAlgorithm {
        self.alg
    }

    /// The key id: the RFC 7638 thumbprint of the public key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public JWK (`kid`, `alg`, `use: sig`).
    pub fn public_jwk(&self) -> serde_json::Value {
        self.public.to_jwk(&self.kid, self.alg.as_str())
    }

    /// Signs `message` as JWS requires for this algorithm (ECDSA: the
    /// fixed-width `r || s` form).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &self.pair {
            Pair::Rsa(rsa) => {
                let mut signature = vec![0; rsa.public_modulus_len()];
                rsa.sign(
                    &RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    message,
                    &mut signature,
                )
                .map_err(|_| KeyError::Crypto)?;
                Ok(signature)
            }
            Pair::Ec(ec) => ec
                .sign(&SystemRandom::new(), message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyError::Crypto),
            Pair::Ed(ed) => ed
                .try_sign(message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyError::Crypto),
        }
    }
}

/// The label and DER of the first private-key PEM block in `text`
/// (other blocks, such as `EC PARAMETERS`, are skipped).
///
/// `pem::parse_many` decodes every block before we look at any, so a
/// malformed block anywhere in the file (bad base64, even in a skipped
/// `CERTIFICATE`) refuses it, and, as in RFC 1421, text before a blank
/// line inside a block is its headers: a blank line within the base64 body
/// or just before the END line is refused as a malformed header.
fn first_private_key_block(text: &str) -> Result<(String, Vec<u8>), KeyError> {
    // `PemError` is not carried into `KeyError`: its base64 error quotes
    // a byte of the (private) body.
    let blocks = pem::parse_many(text).map_err(|e| {
        KeyError::MalformedPem(match e {
            pem::PemError::InvalidData(_) => "body is not base64",
            pem::PemError::MismatchedTags(..) | pem::PemError::MissingEndTag => "missing END line",
            pem::PemError::InvalidHeader(_) => "malformed header",
            _ => "malformed PEM block",
        })
    })?;
    let found = blocks.len();
    for block in blocks {
        if block.headers().iter().next().is_some() {
            // RFC 1421 headers (`Proc-Type: 4,ENCRYPTED`).
            return Err(KeyError::Encrypted);
        }
        match block.tag() {
            "ENCRYPTED PRIVATE KEY" => return Err(KeyError::Encrypted),
            "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" => {
                return Ok((block.tag().to_string(), block.into_contents()));
            }
            _ => {}
        }
    }
    // `parse_many` silently drops a last block that has no END line.
    if text.matches("-----BEGIN ").count() > found {
        return Err(KeyError::MalformedPem("missing END line"));
    }
    Err(KeyError::NoPrivateKey)
}

/// PEM-encodes DER with LF line endings and 64-character lines.
fn encode_pem(label: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(label, der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use jsonwebtoken::{Algorithm, DecodingKey, jwk::Jwk};

    use super::*;

    const DEMO_EXTERNAL_KEY: &str = include_str!("../../config/demo/demo-signing-key.pem");

    fn verifies(key: &SigningKey, alg: Algorithm) {
        let message = b"header.claims";
        let sig = key.sign(message).expect("signs");
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig);
        let jwk: Jwk = serde_json::from_value(key.public_jwk()).expect("JWK parses");
        let decoding = DecodingKey::from_jwk(&jwk).expect("decoding key");
        assert!(
            jsonwebtoken::crypto::verify(&sig, message, &decoding, alg).expect("verify runs"),
            "{alg:?}"
        );
        assert!(
            !jsonwebtoken::crypto::verify(&sig, b"other", &decoding, alg).unwrap_or(false),
            "{alg:?}"
        );
    }

    #[test]
    fn generated_keys_sign_and_round_trip_through_pem() {
        for (alg, jose) in [
            (SigningAlgorithm::ES256, Algorithm::ES256),
            (SigningAlgorithm::EdDSA, Algorithm::EdDSA),
            (SigningAlgorithm::RS256, Algorithm::RS256),
        ] {
            let (key, pem) = SigningKey::generate(alg).expect("generates");
            assert_eq!(key.alg(), alg);
            assert!(pem.expose().starts_with("-----BEGIN PRIVATE KEY-----\n"));
            let again = SigningKey::from_pem(pem.expose()).expect("reloads");
            assert_eq!(again.kid(), key.kid());
            assert_eq!(again.public_jwk(), key.public_jwk());
            verifies(&again, jose);
        }
    }

    #[test]
    fn loads_an_existing_pkcs8_key_with_the_known_kid() {
        let key = SigningKey::from_pem(DEMO_EXTERNAL_KEY).expect("demo key loads");
        assert_eq!(key.alg(), SigningAlgorithm::ES256);
        assert_eq!(key.kid(), "bYgm0qhVzimAlTKwKJS24--a4mFqla2U4xEZd0aEzZ0");
    }

    #[test]
    fn loads_a_sec1_key_with_an_independently_computed_kid() {
        // Written by Python `cryptography` (TraditionalOpenSSL); the kid
        // was computed by jwcrypto's `thumbprint()`. Test-only key.
        let sec1 = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEICuPNSYyJ1h+oV9YhkrTP43pvqZVLzGR6K/qUm2FVCkpoAoGCCqGSM49
AwEHoUQDQgAE2F83mCdAv+QlfEV3uX2ULAFhpVXynWKJWm1gb7F2Do1B053PSjb+
FKfAXwlpPR+0IT9IB2+RpcQ7LgrDR54GHQ==
-----END EC PRIVATE KEY-----
";
        let key = SigningKey::from_pem(sec1).expect("SEC1 loads");
        assert_eq!(key.alg(), SigningAlgorithm::ES256);
        assert_eq!(key.kid(), "eM03jMnLqUsUAzK417Unw7PIwVzlgztuXEqOTGp2Ej8");
        verifies(&key, Algorithm::ES256);
        // `openssl ecparam -genkey` puts an EC PARAMETERS block first.
        let with_params = format!(
            "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n{sec1}"
        );
        assert_eq!(
            SigningKey::from_pem(&with_params).expect("loads").kid(),
            key.kid()
        );
    }

    #[test]
    fn debug_hides_private_material() {
        let (key, pem) = SigningKey::generate(SigningAlgorithm::ES256).expect("generates");
        let shown = format!("{key:?} {pem:?}");
        assert!(!shown.contains("PRIVATE"), "{shown}");
        assert!(shown.contains(key.kid()));
    }

    #[test]
    fn bad_pem_is_refused() {
        assert_eq!(
            SigningKey::from_pem("nothing here").err(),
            Some(KeyError::NoPrivateKey)
        );
        let cert_only = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert_eq!(
            SigningKey::from_pem(cert_only).err(),
            Some(KeyError::NoPrivateKey)
        );
        let enc =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert_eq!(SigningKey::from_pem(enc).err(), Some(KeyError::Encrypted));
        let garbage = "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n";
        assert!(matches!(
            SigningKey::from_pem(garbage).err(),
            Some(KeyError::MalformedPem(_))
        ));
        let not_a_key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert_eq!(
            SigningKey::from_pem(not_a_key).err(),
            Some(KeyError::Unsupported)
        );
        let unterminated = "-----BEGIN PRIVATE KEY-----\nAAAA\n";
        assert!(matches!(
            SigningKey::from_pem(unterminated).err(),
            Some(KeyError::MalformedPem(_))
        ));
    }

    #[test]
    fn algorithm_names() {
        for alg in [
            SigningAlgorithm::RS256,
            SigningAlgorithm::ES256,
            SigningAlgorithm::EdDSA,
        ] {
            assert_eq!(SigningAlgorithm::parse(alg.as_str()), Some(alg));
        }
        assert_eq!(SigningAlgorithm::parse("none"), None);
        assert_eq!(SigningAlgorithm::parse("HS256"), None);
    }
}
