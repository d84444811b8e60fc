//! A string that must never be printed: tokens, cookies, shared secrets.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A secret value. `Debug` and `Display` show only a short fingerprint.
///
/// Shared, not copied, when cloned: the token a check verified travels on
/// in its identity (for `X-Auth-Request-Token`), and a cached identity
/// takes the presented token on every hit.
#[derive(Clone, Default)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl AsRef<str>) -> Self {
        Secret(Arc::from(value.as_ref()))
    }

    /// The secret itself; call only where it must leave the process
    /// (an upstream header), never for logging.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A short, non-reversible fingerprint safe to log.
    pub fn fingerprint(&self) -> String {
        fingerprint(self.0.as_bytes())
    }

    /// Constant-time comparison with another secret.
    pub fn ct_eq(&self, other: &Secret) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

/// First 8 bytes of SHA-256, hex: enough to correlate log lines, useless
/// to recover the value.
pub fn fingerprint(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    hex::encode(&digest[..8])
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(sha256:{})", self.fingerprint())
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", self.fingerprint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("super-secret-token");
        assert!(!format!("{s:?}").contains("super-secret"));
        assert!(!format!("{s}").contains("super-secret"));
        assert_eq!(s.fingerprint().len(), 16);
    }

    #[test]
    fn constant_time_equality() {
        assert!(Secret::new("a").ct_eq(&Secret::new("a")));
        assert!(!Secret::new("a").ct_eq(&Secret::new("b")));
        assert!(!Secret::new("a").ct_eq(&Secret::new("ab")));
    }
}

/// Serde for an optional [`Secret`] (`#[serde(with =
/// "crate::secret::opt_serde")]`), for records the store keeps encrypted.
pub mod opt_serde {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Secret;

    /// Writes the secret's text.
    pub fn serialize<S: Serializer>(value: &Option<Secret>, s: S) -> Result<S::Ok, S::Error> {
        value.as_ref().map(Secret::expose).serialize(s)
    }

    /// Reads it back.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
        Ok(Option::<String>::deserialize(d)?.map(Secret::new))
    }
}
