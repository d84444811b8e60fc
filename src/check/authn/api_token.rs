//! API tokens as a credential: a token from the same sources as JWTs
//! that starts with the configured `<prefix>-` is checked against the
//! store ([`crate::tokens::ApiTokens::verify`]) and never handed to the
//! JWT verifier; one with our prefix but the wrong shape is a 401.
//!
//! The identity is the token's user, with the scopes fixed when it was
//! created (not mapped again from groups), the tool of a deploy token,
//! and the e-mail and uid copied at creation. The issuer label is
//! [`ISSUER`].

use crate::clock::now_secs;
use crate::config::AuthType;
use crate::model::deny::Deny;
use crate::model::identity::{CredentialKind, Identity};
use crate::secret::Secret;
use crate::tokens::{ApiTokens, VerifyError};

/// The issuer label of an API token's identity.
pub const ISSUER: &str = "api-token";

/// Verifies `token` (one [`ApiTokens::claims`]) and builds its identity.
pub async fn authenticate(
    tokens: &ApiTokens,
    token: &Secret,
    auth_type: AuthType,
) -> Result<Identity, Deny> {
    let verified = match tokens.verify(token.expose(), now_secs()).await {
        Ok(v) => v,
        Err(VerifyError::Unavailable(e)) => {
            if e.is_failure() {
                tracing::warn!(error = %e, "API token not checked: store unavailable");
            }
            return Err(e.denial());
        }
        Err(e) => {
            tracing::debug!(token_fingerprint = %token.fingerprint(), reason = ?e, "API token refused");
            return Err(Deny::InvalidToken {
                reason: e.to_string(),
                auth_type,
            });
        }
    };
    let record = &verified.record;
    Ok(Identity {
        subject: record.user.clone(),
        username: Some(record.user.clone()),
        email: record.email.clone(),
        uid: record.uid.clone(),
        groups: Vec::new(),
        scopes: record.scopes.clone(),
        kind: CredentialKind::ApiToken,
        issuer: ISSUER.into(),
        expires_at: Some(record.expires),
        token: token.clone(),
        query_parameter: None,
        tool: record.tool.clone(),
        grant: None,
        csrf: None,
        claims: None,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::app::{Carry, build_engine_with};
    use crate::check::pipeline::Engine;
    use crate::config::{self, ConfigSource};
    use crate::metrics::Metrics;
    use crate::testkit::flaky::FlakyStore;
    use crate::tokens::{Caller, NewToken};

    const YAML: &str = r#"
server: {grpc_addr: "127.0.0.1:0", http_addr: "127.0.0.1:0", realm: test}
jwt: {sources: [bearer, basic, {header: x-api-key}]}
api_tokens: {cache_ttl: 0s}
tools: {superusers: [root]}
policy:
  rules:
    - {name: read, match: {path: {prefix: /read/}}, scopes: [read]}
    - {name: both, match: {path: {prefix: /both/}}, scopes: [read, write]}
    - {name: either, match: {path: {prefix: /either/}}, scopes: [read, write], satisfy: any}
    - {name: jwt-only, match: {path: {prefix: /jwt/}}, credentials: [jwt]}
    - {name: tool, match: {path: {template: "/tool/{tool}/**"}}, tool_from_path: tool}
"#;

    fn engine() -> (Engine, Arc<FlakyStore>) {
        let store = Arc::new(FlakyStore::new(1000));
        let source = ConfigSource::Text(YAML.into());
        let cfg = config::load(&source, []).expect("config");
        let mut carry = Carry::fresh(Arc::new(Metrics::new().expect("metrics")));
        carry.store = Some(store.clone());
        let engine = build_engine_with(&cfg, &source, &carry).expect("engine");
        (engine, store)
    }

    async fn create(engine: &Engine, scopes: &[&str], tool: Option<&str>) -> String {
        let creator = Identity {
            subject: "alice-sub".into(),
            username: Some("alice".into()),
            email: Some("alice@example.org".into()),
            uid: None,
            groups: vec![],
            scopes: ["read", "write"].iter().map(|s| s.to_string()).collect(),
            kind: CredentialKind::Jwt,
            issuer: "idp".into(),
            expires_at: None,
            token: Secret::default(),
            query_parameter: None,
            tool: tool.map(Into::into),
            grant: None,
            csrf: None,
            claims: None,
        };
        let tokens = engine.authn.api_tokens.as_ref().expect("configured");
        let caller = Caller {
            identity: &creator,
            superuser: false,
        };
        let new = NewToken {
            name: format!("t{}", scopes.join("-")),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            expires: None,
            tool: tool.map(Into::into),
        };
        let made = tokens
            .create(&caller, "alice", new, now_secs())
            .await
            .expect("created");
        made.token.expose().to_string()
    }

    fn bearer(token: &str) -> String {
        format!("Bearer {token}")
    }

    use crate::testkit::{decide, deny, permit, plan_header as header};

    #[tokio::test]
    async fn a_token_is_a_credential_with_its_own_scopes() {
        let (engine, _) = engine();
        let token = create(&engine, &["read"], None).await;
        let auth = bearer(&token);
        let plan = permit(decide(&engine, "/read/x", &[("authorization", &auth)]).await);
        assert_eq!(header(&plan, "x-auth-request-user"), Some("alice"));
        assert_eq!(
            header(&plan, "x-auth-request-email"),
            Some("alice@example.org")
        );
        assert_eq!(header(&plan, "x-auth-request-token-scopes"), Some("read"));
        // Scope checks and satisfy apply to the token's scopes, not its
        // creator's (who also holds write).
        assert!(matches!(
            deny(decide(&engine, "/both/x", &[("authorization", &auth)]).await),
            Deny::InsufficientScope { .. }
        ));
        permit(decide(&engine, "/either/x", &[("authorization", &auth)]).await);
        // Any token source: a header, and Basic with the token as password.
        permit(decide(&engine, "/read/x", &[("x-api-key", &token)]).await);
        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("x:{token}"));
        permit(
            decide(
                &engine,
                "/read/x",
                &[("authorization", &format!("Basic {basic}"))],
            )
            .await,
        );
    }

    #[tokio::test]
    async fn a_rule_that_lists_only_jwt_does_not_take_a_token() {
        let (engine, _) = engine();
        let token = create(&engine, &[], None).await;
        assert!(matches!(
            deny(decide(&engine, "/jwt/x", &[("authorization", &bearer(&token))]).await),
            Deny::NoCredential { .. }
        ));
    }

    #[tokio::test]
    async fn malformed_unknown_and_revoked_tokens_are_401() {
        let (engine, _) = engine();
        let token = create(&engine, &["read"], None).await;
        let malformed = format!("{token}x");
        match deny(
            decide(
                &engine,
                "/read/x",
                &[("authorization", &bearer(&malformed))],
            )
            .await,
        ) {
            Deny::InvalidToken { reason, .. } => assert_eq!(reason, "malformed API token"),
            other => panic!("{other:?}"),
        }
        let (head, _) = token.split_once('.').expect("dot");
        let wrong = format!("{head}.{}", "A".repeat(22));
        match deny(decide(&engine, "/read/x", &[("authorization", &bearer(&wrong))]).await) {
            Deny::InvalidToken { reason, .. } => {
                assert_eq!(reason, "unknown or revoked API token")
            }
            other => panic!("{other:?}"),
        }
        let tokens = engine.authn.api_tokens.as_ref().expect("configured");
        let key = &head["gh-".len()..];
        let alice = crate::testkit::identity("alice", &[]);
        let caller = Caller {
            identity: &alice,
            superuser: false,
        };
        tokens.revoke(&caller, "alice", key).await.expect("revoked");
        assert_eq!(
            deny(decide(&engine, "/read/x", &[("authorization", &bearer(&token))]).await)
                .http_status(),
            401
        );
    }

    #[tokio::test]
    async fn store_down_is_503_and_never_allows() {
        let (engine, store) = engine();
        let token = create(&engine, &["read"], None).await;
        store.set_down(true);
        let refused = deny(decide(&engine, "/read/x", &[("authorization", &bearer(&token))]).await);
        assert_eq!(refused, Deny::StoreUnavailable);
        assert_eq!(refused.http_status(), 503);
        assert_eq!(refused.error_code(), "temporarily_unavailable");
        store.set_down(false);
        permit(decide(&engine, "/read/x", &[("authorization", &bearer(&token))]).await);
    }

    #[tokio::test]
    async fn a_deploy_token_passes_its_own_tools_rule_only() {
        let (engine, _) = engine();
        let token = create(&engine, &[], Some("alpha")).await;
        let auth = bearer(&token);
        let plan = permit(decide(&engine, "/tool/alpha/deploy", &[("authorization", &auth)]).await);
        assert_eq!(header(&plan, "x-auth-request-tool"), Some("alpha"));
        assert_eq!(
            deny(decide(&engine, "/tool/beta/deploy", &[("authorization", &auth)]).await),
            Deny::ToolMismatch
        );
    }
}
