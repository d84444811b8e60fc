//! What the store keeps about a session, under which keys, and the
//! session id itself.
//!
//! | key | value | time to live |
//! |---|---|---|
//! | `session:<hash of id>` | [`SessionRecord`] as JSON | until the lifetime or the inactivity timeout ends it |
//! | `sessions-of:<hash of provider, sub>` | index of the subject's session hashes | the session lifetime |
//! | `sessions-of-sid:<hash of provider, sid>` | index of the IdP session's session hashes | the session lifetime |
//! | `session-refresh:<hash of id>` | refresh in progress (or backing off) | seconds |
//!
//! The session id (32 random bytes, base64url) is only ever in the
//! browser's cookie: every key holds its SHA-256 ([`crate::store::hashed_id`]),
//! and so do the indexes, so a store dump cannot be turned into cookies.
//! Subjects and IdP session ids are hashed too.

use std::collections::BTreeSet;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::secret::Secret;
use crate::store::{hashed_id, key};

/// Random bytes in a session id (and in a CSRF token).
pub const ID_BYTES: usize = 32;
/// Characters of a session id: 32 bytes as unpadded base64url.
pub const ID_CHARS: usize = 43;

/// Who the session is for, as the login established it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionIdentity {
    /// The provider's `sub`.
    pub subject: String,
    /// The user name shown upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// E-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Numeric user id, as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Group names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Scopes held (from the token and the group mapping, at login).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub scopes: BTreeSet<String>,
}

impl SessionIdentity {
    /// The check's identity for this person, logged in at `provider`:
    /// a session credential whose issuer is `session:<provider>`, with
    /// no token, expiry or CSRF token yet (the caller adds what it has).
    pub fn to_identity(&self, provider: &str) -> crate::model::identity::Identity {
        crate::model::identity::Identity {
            subject: self.subject.clone(),
            username: self.username.clone(),
            email: self.email.clone(),
            uid: self.uid.clone(),
            groups: self.groups.clone(),
            scopes: self.scopes.clone(),
            kind: crate::model::identity::CredentialKind::Session,
            issuer: format!("{ISSUER_PREFIX}{provider}"),
            expires_at: None,
            token: Secret::default(),
            query_parameter: None,
            tool: None,
            grant: None,
            csrf: None,
            claims: None,
        }
    }
}

/// The `iss` of a session's identity: `session:<provider>`.
pub const ISSUER_PREFIX: &str = "session:";

/// The provider's tokens kept in a session (the whole record is encrypted
/// by the store; in memory they are [`Secret`]s, which never print).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SessionTokens {
    /// The access token, forwarded upstream by `headers: [token]`.
    #[serde(
        default,
        with = "crate::secret::opt_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub access_token: Option<Secret>,
    /// When the access token expires, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_expires: Option<u64>,
    /// When the access token was obtained, seconds since the epoch: a
    /// token is refreshed no earlier than half its life.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_issued: Option<u64>,
    /// The refresh token, used before the access token expires.
    #[serde(
        default,
        with = "crate::secret::opt_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub refresh_token: Option<Secret>,
    /// The ID token (an `id_token_hint` for RP-initiated logout).
    #[serde(
        default,
        with = "crate::secret::opt_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub id_token: Option<Secret>,
}

impl SessionTokens {
    /// The access token while it is valid at `now`: an access token
    /// without a known expiry counts as valid.
    pub fn access_token_at(&self, now: u64) -> Option<&Secret> {
        let valid = self.access_expires.is_none_or(|exp| now < exp);
        self.access_token.as_ref().filter(|_| valid)
    }
}

/// One session, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The name of the provider the user logged in at.
    pub provider: String,
    /// Who.
    pub identity: SessionIdentity,
    /// The provider's session id (`sid` of the ID token), for back-channel
    /// logout by session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Login, seconds since the epoch.
    pub created: u64,
    /// Last use written (to within a tenth of the inactivity timeout),
    /// seconds since the epoch.
    pub last_seen: u64,
    /// The provider's tokens.
    #[serde(default)]
    pub tokens: SessionTokens,
    /// A random token a page can send back as `X-CSRF-Token`.
    #[serde(with = "secret")]
    pub csrf_token: Secret,
}

/// A session id as the cookie carries it, or `None` when the value is
/// not shaped like one (such a cookie is never looked up).
pub fn handle_of(cookie_value: &str) -> Option<String> {
    let shaped = cookie_value.len() == ID_CHARS
        && cookie_value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    shaped.then(|| hashed_id("session", cookie_value.as_bytes()))
}

/// The system's random generator failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("random bytes unavailable")]
pub struct RandomUnavailable;

/// [`ID_BYTES`] fresh random bytes, base64url: a session id or a CSRF
/// token.
pub fn random_token() -> Result<Secret, RandomUnavailable> {
    let mut bytes = [0u8; ID_BYTES];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| RandomUnavailable)?;
    Ok(Secret::new(URL_SAFE_NO_PAD.encode(bytes)))
}

/// `session:<handle>`: the record.
pub fn record_key(handle: &str) -> String {
    key("session", handle)
}

/// `session-refresh:<handle>`: the cross-replica refresh lock.
pub fn refresh_key(handle: &str) -> String {
    key("session-refresh", handle)
}

/// The hash of a provider and a value (`sub` or `sid`), NUL-separated so
/// that `("ab", "c")` and `("a", "bc")` differ.
fn pair_id(namespace: &str, provider: &str, value: &str) -> String {
    let mut id = Vec::with_capacity(provider.len() + value.len() + 1);
    id.extend_from_slice(provider.as_bytes());
    id.push(0);
    id.extend_from_slice(value.as_bytes());
    hashed_id(namespace, &id)
}

/// `sessions-of:<hash>`: the sessions of one subject at one provider.
pub fn subject_index(provider: &str, subject: &str) -> String {
    key("sessions-of", &pair_id("sessions-of", provider, subject))
}

/// `sessions-of-sid:<hash>`: the sessions of one provider session.
pub fn sid_index(provider: &str, sid: &str) -> String {
    key(
        "sessions-of-sid",
        &pair_id("sessions-of-sid", provider, sid),
    )
}

/// Serde for a [`Secret`] as a plain string (the store encrypts it).
mod secret {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::secret::Secret;

    pub(super) fn serialize<S: Serializer>(value: &Secret, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(value.expose())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        Ok(Secret::new(String::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_43_characters_and_only_their_hash_is_a_key() {
        let id = random_token().expect("random");
        assert_eq!(id.expose().len(), ID_CHARS);
        assert_ne!(id.expose(), random_token().expect("random").expose());
        let handle = handle_of(id.expose()).expect("shaped like an id");
        assert_eq!(handle.len(), 64);
        assert!(!record_key(&handle).contains(id.expose()));
        assert_eq!(record_key(&handle), format!("session:{handle}"));
        for bad in [
            "",
            "short",
            &format!("{}=", &id.expose()[..42]),
            &"a".repeat(44),
        ] {
            assert_eq!(handle_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn index_keys_hide_subjects_and_separate_provider_from_value() {
        let index = subject_index("kc", "alice");
        assert!(index.starts_with("sessions-of:") && !index.contains("alice"));
        assert_ne!(subject_index("ab", "c"), subject_index("a", "bc"));
        assert_ne!(subject_index("kc", "x"), sid_index("kc", "x"));
    }

    #[test]
    fn records_round_trip_and_tokens_are_plain_inside_the_sealed_value() {
        let record = SessionRecord {
            provider: "kc".into(),
            identity: SessionIdentity {
                subject: "alice-sub".into(),
                username: Some("alice".into()),
                groups: vec!["staff".into()],
                ..Default::default()
            },
            sid: Some("idp-sid".into()),
            created: 10,
            last_seen: 20,
            tokens: SessionTokens {
                access_token: Some(Secret::new("at")),
                access_expires: Some(30),
                access_issued: None,
                refresh_token: Some(Secret::new("rt")),
                id_token: None,
            },
            csrf_token: Secret::new("csrf"),
        };
        let json = serde_json::to_vec(&record).expect("encodes");
        let text = String::from_utf8_lossy(&json);
        assert!(text.contains("\"refresh_token\":\"rt\""), "{text}");
        assert!(
            !text.contains("id_token") && !text.contains("email"),
            "{text}"
        );
        let back: SessionRecord = serde_json::from_slice(&json).expect("parses");
        assert_eq!(serde_json::to_vec(&back).expect("encodes"), json);
        assert_eq!(back.identity, record.identity);
        // Debug never shows a token.
        let debug = format!("{record:?}");
        assert!(
            !debug.contains("\"rt\"") && !debug.contains("csrf\""),
            "{debug}"
        );
    }

    #[test]
    fn an_access_token_is_offered_only_until_it_expires() {
        let tokens = SessionTokens {
            access_token: Some(Secret::new("at")),
            access_expires: Some(100),
            ..Default::default()
        };
        assert!(tokens.access_token_at(99).is_some());
        assert!(tokens.access_token_at(100).is_none());
        let forever = SessionTokens {
            access_expires: None,
            ..tokens
        };
        assert!(forever.access_token_at(u64::MAX).is_some());
    }
}
