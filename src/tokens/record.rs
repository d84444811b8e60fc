//! What the store keeps about a token, and under which keys.
//!
//! | key | value | time to live |
//! |---|---|---|
//! | `api-token:<key>` | [`TokenRecord`] as JSON | until the token expires |
//! | `api-token-name:<hash of user, name>` | the token's key | same |
//! | `api-tokens-of:<hash of user>` | index of the user's keys | the longest of its tokens |
//! | `api-token-used:<key>` | last use, seconds since the epoch | same as the token |
//!
//! No key holds a secret or a user name: the token's key is public, user
//! names are hashed ([`crate::store::hashed_id`]) so that the store's key
//! space does not show who uses the service. The last use sits under its
//! own key so that writing it can never bring back a revoked record.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::store::{hashed_id, key};

/// One token, as stored (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The user the token acts as.
    pub user: String,
    /// Its name, unique among the user's tokens.
    pub name: String,
    /// The scopes it carries, fixed at creation.
    pub scopes: BTreeSet<String>,
    /// Creation, seconds since the epoch.
    pub created: u64,
    /// Expiry, seconds since the epoch.
    pub expires: u64,
    /// Hex SHA-256 of the secret.
    pub secret_sha256: String,
    /// The tool a deploy token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// Who created it (the user itself, or an admin acting for it).
    pub created_by: String,
    /// The user's e-mail address at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The user's numeric id at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// `api-token:<key>`: the record.
pub fn record_key(token_key: &str) -> String {
    key("api-token", token_key)
}

/// `api-token-used:<key>`: the last use.
pub fn used_key(token_key: &str) -> String {
    key("api-token-used", token_key)
}

/// `api-token-name:<hash>`: the key of the user's token with this name.
pub fn name_key(user: &str, name: &str) -> String {
    let mut id = Vec::with_capacity(user.len() + name.len() + 1);
    id.extend_from_slice(user.as_bytes());
    id.push(0);
    id.extend_from_slice(name.as_bytes());
    key("api-token-name", &hashed_id("api-token-name", &id))
}

/// `api-tokens-of:<hash>`: the index of the user's token keys.
pub fn user_index(user: &str) -> String {
    key(
        "api-tokens-of",
        &hashed_id("api-tokens-of", user.as_bytes()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hide_user_names_and_separate_user_from_name() {
        let index = user_index("alice");
        assert!(index.starts_with("api-tokens-of:"));
        assert!(!index.contains("alice"));
        let name = name_key("alice", "ci");
        assert!(!name.contains("alice") && !name.contains(":ci"));
        // "ab" + "c" and "a" + "bc" are different pairs.
        assert_ne!(name_key("ab", "c"), name_key("a", "bc"));
        assert_eq!(record_key("k"), "api-token:k");
        assert_eq!(used_key("k"), "api-token-used:k");
    }

    #[test]
    fn records_round_trip_through_json() {
        let record = TokenRecord {
            user: "alice".into(),
            name: "ci".into(),
            scopes: ["read".to_string()].into(),
            created: 1,
            expires: 2,
            secret_sha256: "00".into(),
            tool: Some("alpha".into()),
            created_by: "alice".into(),
            email: None,
            uid: Some("1000".into()),
        };
        let json = serde_json::to_vec(&record).expect("serializes");
        assert!(!String::from_utf8_lossy(&json).contains("email"));
        let back: TokenRecord = serde_json::from_slice(&json).expect("parses");
        assert_eq!(back, record);
    }
}
