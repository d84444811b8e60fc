//! The token's text: `<prefix>-<key>.<secret>`, key and secret each 16
//! random bytes as unpadded base64url (22 characters).
//!
//! The key is public (it names the token in the store, in logs and in the
//! REST API); the secret is shown once, at creation, and only its SHA-256
//! is kept. The fixed prefix lets secret scanners recognise a leaked
//! token, and lets gatehouse tell an API token from a JWT without trying
//! to verify it: a JWT starts with `eyJ` (base64url of `{"`), which no
//! valid prefix (lower case, digits, `_`) followed by `-` can match.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::secret::Secret;

/// Random bytes in the key and in the secret (128 bits each).
pub const RANDOM_BYTES: usize = 16;
/// Characters of the key and of the secret: 16 bytes as unpadded base64url.
pub const PART_CHARS: usize = 22;

/// A token that starts with our prefix but is not shaped like one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed API token")]
pub struct Malformed;

/// The system's random generator failed (no token is made).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("random bytes unavailable")]
pub struct RandomUnavailable;

/// The two halves of a well-formed token.
#[derive(Debug, PartialEq, Eq)]
pub struct Parts<'a> {
    /// The public key: names the token in the store.
    pub key: &'a str,
    /// The secret half (never logged, never stored).
    pub secret: &'a str,
}

/// Whether `token` starts with `<prefix>-`: from there on it is judged as
/// an API token, never handed to the JWT verifier.
pub fn has_prefix(token: &str, prefix: &str) -> bool {
    token
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.starts_with('-'))
}

/// Splits `<prefix>-<key>.<secret>`; anything else with our prefix is
/// [`Malformed`].
pub fn parse<'a>(token: &'a str, prefix: &str) -> Result<Parts<'a>, Malformed> {
    let rest = token
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('-'))
        .ok_or(Malformed)?;
    let (key, secret) = rest.split_once('.').ok_or(Malformed)?;
    if !is_part(key) || !is_part(secret) {
        return Err(Malformed);
    }
    Ok(Parts { key, secret })
}

/// Whether `token` is syntactically one of ours.
pub fn looks_like(token: &str, prefix: &str) -> bool {
    parse(token, prefix).is_ok()
}

/// Whether `text` can be a key or a secret: exactly 22 base64url
/// characters. (Also used to refuse a malformed key in a REST path before
/// it reaches the store.)
pub fn is_part(text: &str) -> bool {
    text.len() == PART_CHARS
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Hex SHA-256 of a secret: what the store keeps instead of it.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new token.
pub struct NewSecret {
    /// The whole token, `<prefix>-<key>.<secret>`: shown once.
    pub token: Secret,
    /// Its key.
    pub key: String,
    /// [`secret_hash`] of its secret.
    pub secret_sha256: String,
}

/// Makes a new token with fresh random key and secret.
pub fn generate(prefix: &str) -> Result<NewSecret, RandomUnavailable> {
    let mut bytes = [0u8; 2 * RANDOM_BYTES];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| RandomUnavailable)?;
    let key = URL_SAFE_NO_PAD.encode(&bytes[..RANDOM_BYTES]);
    let secret = URL_SAFE_NO_PAD.encode(&bytes[RANDOM_BYTES..]);
    let secret_sha256 = secret_hash(&secret);
    Ok(NewSecret {
        token: Secret::new(format!("{prefix}-{key}.{secret}")),
        key,
        secret_sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_round_trip() {
        let a = generate("gh").expect("random");
        let b = generate("gh").expect("random");
        assert_ne!(a.key, b.key);
        let text = a.token.expose();
        assert_eq!(text.len(), 2 + 1 + 22 + 1 + 22);
        assert!(text.starts_with("gh-"));
        let parts = parse(text, "gh").expect("well-formed");
        assert_eq!(parts.key, a.key);
        assert_eq!(secret_hash(parts.secret), a.secret_sha256);
        assert!(!a.secret_sha256.contains(parts.secret));
        assert!(looks_like(text, "gh"));
        assert!(!looks_like(text, "g"));
        assert!(!looks_like(text, "ghx"));
    }

    #[test]
    fn malformed_tokens_with_our_prefix() {
        let key = "A".repeat(22);
        let secret = "b-_9".repeat(5) + "zz";
        assert!(looks_like(&format!("gh-{key}.{secret}"), "gh"));
        for bad in [
            "gh-".to_string(),
            format!("gh-{key}"),
            format!("gh-{key}."),
            format!("gh-.{secret}"),
            format!("gh-{key}.{secret}x"),
            format!("gh-{key}x.{secret}"),
            format!("gh-{key}.{secret}.x"),
            format!("gh-{key}.{}", &secret[1..]),
            format!("gh-{key}.{}=", &secret[1..]),
            format!("gh-{key}.{}+", &secret[1..]),
            format!("gh-{key}.{}/", &secret[1..]),
            format!("gh-{key}. {}", &secret[1..]),
            format!("gh-{}é.{secret}", &key[2..]),
        ] {
            assert!(has_prefix(&bad, "gh"), "{bad}");
            assert_eq!(parse(&bad, "gh"), Err(Malformed), "{bad}");
        }
    }

    #[test]
    fn jwts_and_other_text_are_not_ours() {
        let jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl";
        for prefix in ["gh", "ey", "e", "eyj", "a_b"] {
            assert!(!has_prefix(jwt, prefix), "{prefix}");
            assert!(!looks_like(jwt, prefix), "{prefix}");
        }
        assert!(!has_prefix("ghp_abc", "gh"));
        assert!(!has_prefix("gh", "gh"));
        assert!(!has_prefix("", "gh"));
    }

    #[test]
    fn parts_are_exactly_22_base64url_characters() {
        assert!(is_part("abcdefghijklmnopqrstu_"));
        assert!(is_part("-bcdefghijklmnopqrstuv"));
        assert!(!is_part("abcdefghijklmnopqrstu"));
        assert!(!is_part("abcdefghijklmnopqrstuvw"));
        assert!(!is_part("abcdefghijklmnopqrstu="));
        assert!(!is_part("../../../../../../../a"));
    }
}
