//! OpenID Connect Back-Channel Logout 1.0: a provider `POST`s a signed
//! logout token to `/auth/backchannel-logout` when a user's session there
//! ends, and every gatehouse session of that provider session (`sid`), or
//! of that user (`sub`), ends with it.
//!
//! The token is verified with `jsonwebtoken` against the keys of the
//! provider's discovery document (the ones its ID tokens are checked
//! with): an asymmetric `alg` only, a known `kid` (an unknown one makes
//! the discovery be read again, at most every
//! [`super::provider::DISCOVERY_RETRY`]), `iss` the provider's issuer,
//! `aud` its `client_id`, `iat` present, `exp` (when present) not passed,
//! the back-channel logout event in `events`, `sub` or `sid`, no `nonce`
//! (so no ID token passes for one), and `typ`, when set, `logout+jwt` or
//! `JWT`. A token without `exp` must be at most [`MAX_AGE`] old. Each
//! `jti` works once (kept in the store until the token would be stale),
//! so a captured token cannot end a later login of the same user.

use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::{Login, Provider};
use crate::sessions::SessionError;
use crate::store::{hashed_id, key};

/// The `events` member a logout token carries.
pub const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// The oldest accepted logout token (by `iat`) when it has no `exp`, and
/// how long a `jti` is remembered.
pub const MAX_AGE: Duration = Duration::from_secs(300);
/// Clock skew allowed on `iat` and `exp`.
pub const LEEWAY: u64 = 60;

/// Why a logout token was refused. Messages go back to the provider and
/// into the log: they never hold the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogoutError {
    /// Not a compact JWS, or unreadable parts.
    #[error("malformed logout token: {0}")]
    Malformed(&'static str),
    /// `iss` names no configured provider.
    #[error("the logout token's issuer is not a configured provider")]
    UnknownIssuer,
    /// The provider's discovery document (and keys) has not loaded.
    #[error("the provider's keys are not available yet")]
    ProviderUnavailable,
    /// Signature, algorithm, key, issuer, audience or time checks failed.
    #[error("logout token not valid: {0}")]
    Invalid(String),
    /// The claims are not a logout token's.
    #[error("not a logout token: {0}")]
    NotLogout(&'static str),
    /// This `jti` was used before.
    #[error("this logout token was already used")]
    Replayed,
    /// The store failed.
    #[error("sessions unavailable")]
    Session(#[from] SessionError),
}

/// The claims of a logout token that gatehouse reads.
#[derive(Debug, Deserialize)]
struct LogoutClaims {
    iss: String,
    sub: Option<String>,
    sid: Option<String>,
    iat: u64,
    exp: Option<u64>,
    jti: Option<String>,
    #[serde(default)]
    events: serde_json::Map<String, serde_json::Value>,
    nonce: Option<serde_json::Value>,
}

/// The `iss` of a token, read without verification (to pick a provider).
fn unverified_issuer(token: &str) -> Result<String, LogoutError> {
    use base64::Engine as _;
    let payload = token
        .split('.')
        .nth(1)
        .ok_or(LogoutError::Malformed("not a compact JWS"))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| LogoutError::Malformed("payload is not base64url"))?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|_| LogoutError::Malformed("payload is not JSON"))?;
    value
        .get("iss")
        .and_then(serde_json::Value::as_str)
        .map(str::to_string)
        .ok_or(LogoutError::Malformed("no iss"))
}

/// The key in `provider`'s discovery keys that `kid` names (or its only
/// key for `alg` when the token names none).
fn decoding_key(
    provider: &Provider,
    kid: Option<&str>,
    alg: Algorithm,
) -> Result<Option<DecodingKey>, LogoutError> {
    let Some(metadata) = provider.loaded() else {
        return Err(LogoutError::ProviderUnavailable);
    };
    let jwks: JwkSet = serde_json::to_value(metadata.jwks())
        .and_then(serde_json::from_value)
        .map_err(|_| LogoutError::ProviderUnavailable)?;
    let usable = jwks.keys.iter().filter(|k| {
        k.common
            .key_algorithm
            .is_none_or(|a| a.to_string() == format!("{alg:?}"))
            && !matches!(
                k.common.public_key_use,
                Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
            )
    });
    let found: Vec<_> = match kid {
        Some(kid) => usable
            .filter(|k| k.common.key_id.as_deref() == Some(kid))
            .collect(),
        None => usable.collect(),
    };
    match found.as_slice() {
        [one] => DecodingKey::from_jwk(one)
            .map(Some)
            .map_err(|e| LogoutError::Invalid(format!("unusable key: {e}"))),
        _ => Ok(None),
    }
}

impl Login {
    /// Verifies a logout token and ends the sessions it names; returns
    /// the token's `sub`, if it has one (the caller drops that user's
    /// other per-user state, such as backend tokens).
    pub async fn backchannel_logout(&self, token: &str) -> Result<Option<String>, LogoutError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| LogoutError::Malformed("unreadable JOSE header"))?;
        if let Some(typ) = &header.typ
            && !typ.eq_ignore_ascii_case("logout+jwt")
            && !typ.eq_ignore_ascii_case("JWT")
        {
            return Err(LogoutError::NotLogout("typ is neither logout+jwt nor JWT"));
        }
        if matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err(LogoutError::Invalid(
                "a symmetric alg is not accepted".into(),
            ));
        }
        let issuer = unverified_issuer(token)?;
        let candidates: Vec<_> = self
            .providers
            .iter()
            .filter(|p| p.config.issuer.trim_end_matches('/') == issuer.trim_end_matches('/'))
            .collect();
        if candidates.is_empty() {
            return Err(LogoutError::UnknownIssuer);
        }
        let mut last = LogoutError::UnknownIssuer;
        for provider in candidates {
            match self.verify_for(provider, token, &header, &issuer).await {
                Ok(claims) => return self.end_sessions(provider, claims).await,
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Verifies `token` as `provider`'s logout token for its client.
    async fn verify_for(
        &self,
        provider: &Provider,
        token: &str,
        header: &jsonwebtoken::Header,
        issuer: &str,
    ) -> Result<LogoutClaims, LogoutError> {
        if provider.metadata(&self.http).await.is_none() {
            return Err(LogoutError::ProviderUnavailable);
        }
        let kid = header.kid.as_deref();
        let key = match decoding_key(provider, kid, header.alg)? {
            Some(key) => key,
            None => {
                // A rotated key: read the discovery (and keys) again.
                provider.rediscover_if_due(&self.http).await;
                decoding_key(provider, kid, header.alg)?
                    .ok_or_else(|| LogoutError::Invalid("no key for its kid and alg".into()))?
            }
        };
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[provider.config.client_id.as_str()]);
        validation.set_required_spec_claims(&["iss", "aud", "iat"]);
        validation.leeway = LEEWAY;
        validation.validate_exp = true;
        let claims = jsonwebtoken::decode::<LogoutClaims>(token, &key, &validation)
            .map_err(|e| LogoutError::Invalid(e.to_string()))?
            .claims;
        check_claims(&claims, crate::clock::now_secs())?;
        Ok(claims)
    }

    /// Spends the token's `jti` and ends the sessions it names.
    async fn end_sessions(
        &self,
        provider: &Provider,
        claims: LogoutClaims,
    ) -> Result<Option<String>, LogoutError> {
        if let Some(jti) = &claims.jti {
            let id = hashed_id("logout-jti", format!("{}\0{jti}", claims.iss).as_bytes());
            let fresh = self
                .store
                .set_if_absent(
                    &key("logout-jti", &id),
                    b"1",
                    MAX_AGE + Duration::from_secs(2 * LEEWAY),
                )
                .await
                .map_err(SessionError::from)?;
            if !fresh {
                return Err(LogoutError::Replayed);
            }
        }
        let name = &provider.config.name;
        let ended = match (&claims.sid, &claims.sub) {
            (Some(sid), _) => self.sessions.end_by_sid(name, sid).await?,
            (None, Some(sub)) => self.sessions.end_by_subject(name, sub).await?,
            // Refused by check_claims.
            (None, None) => 0,
        };
        tracing::info!(provider = %name, ended, by_sid = claims.sid.is_some(), "back-channel logout");
        Ok(claims.sub)
    }
}

/// The logout-token rules `jsonwebtoken`'s validation does not cover.
fn check_claims(claims: &LogoutClaims, now: u64) -> Result<(), LogoutError> {
    if !claims
        .events
        .get(LOGOUT_EVENT)
        .is_some_and(serde_json::Value::is_object)
    {
        return Err(LogoutError::NotLogout("no back-channel logout event"));
    }
    if claims.nonce.is_some() {
        return Err(LogoutError::NotLogout("it carries a nonce"));
    }
    if claims.sub.is_none() && claims.sid.is_none() {
        return Err(LogoutError::NotLogout("neither sub nor sid"));
    }
    if claims.iat > now + LEEWAY {
        return Err(LogoutError::Invalid("iat is in the future".into()));
    }
    if claims.exp.is_none() && now.saturating_sub(claims.iat) > MAX_AGE.as_secs() + LEEWAY {
        return Err(LogoutError::Invalid("issued too long ago".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(json: serde_json::Value) -> LogoutClaims {
        serde_json::from_value(json).expect("claims")
    }

    #[test]
    fn logout_claims_are_checked() {
        let now = 1_000_000;
        let good = serde_json::json!({
            "iss": "https://op", "aud": "c", "iat": now, "jti": "j", "sid": "s",
            "events": {LOGOUT_EVENT: {}},
        });
        assert_eq!(check_claims(&claims(good.clone()), now), Ok(()));
        let with = |k: &str, v: serde_json::Value| {
            let mut c = good.clone();
            c[k] = v;
            check_claims(&claims(c), now)
        };
        let without = |k: &str| {
            let mut c = good.clone();
            c.as_object_mut().expect("object").remove(k);
            check_claims(&claims(c), now)
        };
        assert!(matches!(
            with("nonce", "n".into()),
            Err(LogoutError::NotLogout(_))
        ));
        assert!(matches!(without("events"), Err(LogoutError::NotLogout(_))));
        assert!(matches!(
            with("events", serde_json::json!({LOGOUT_EVENT: "x"})),
            Err(LogoutError::NotLogout(_))
        ));
        assert!(matches!(
            with("events", serde_json::json!({"other": {}})),
            Err(LogoutError::NotLogout(_))
        ));
        assert!(matches!(without("sid"), Err(LogoutError::NotLogout(_))));
        assert_eq!(with("sub", "u".into()), Ok(()));
        assert!(matches!(
            with("iat", (now + 120).into()),
            Err(LogoutError::Invalid(_))
        ));
        assert!(matches!(
            with("iat", (now - 400).into()),
            Err(LogoutError::Invalid(_))
        ));
        // An old token with an `exp` still ahead is judged by its `exp`
        // (which jsonwebtoken's validation checks).
        let mut old = good.clone();
        old["iat"] = (now - 400).into();
        old["exp"] = (now + 60).into();
        assert_eq!(check_claims(&claims(old), now), Ok(()));
    }

    #[test]
    fn the_issuer_is_read_before_verification_and_junk_is_refused() {
        use base64::Engine as _;
        let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let token = format!("{}.{}.sig", b64("{}"), b64(r#"{"iss":"https://op"}"#));
        assert_eq!(unverified_issuer(&token).as_deref(), Ok("https://op"));
        for junk in ["", "abc", "a.!!!.c", &format!("a.{}.c", b64("[1]"))] {
            assert!(
                matches!(unverified_issuer(junk), Err(LogoutError::Malformed(_))),
                "{junk:?}"
            );
        }
    }
}
