//! One-time links: the side effect of letting a `once` link through,
//! recorded after the decision (never inside authn), so a link is used up
//! only by a request that is allowed.

use crate::config::AuthType;
use crate::model::deny::Deny;
use crate::model::grant::LinkGrant;
use crate::store::{self, Store};

/// Store namespace of one-time link uses.
pub const USED_NAMESPACE: &str = "link-used";
/// Kept beyond a one-time link's expiry in the store: the largest clock
/// leeway the verifier may apply (`jwt.leeway` is at most 10 minutes).
const USE_RECORD_MARGIN_SECS: u64 = 600;

/// Records the use of a one-time link (nothing to do for other links):
/// the first use wins, atomically, also across concurrent requests; any
/// later use is a 401. A store failure is a 503 (fail closed).
pub async fn consume(
    store: &dyn Store,
    grant: &LinkGrant,
    auth_type: AuthType,
) -> Result<(), Deny> {
    if !grant.once {
        return Ok(());
    }
    let Some(jti) = grant.jti.as_deref() else {
        // from_claims refuses `once` without a jti; never reached.
        return Err(Deny::InvalidToken {
            reason: "a one-time link needs a jti".into(),
            auth_type,
        });
    };
    let now = crate::clock::now_secs();
    let ttl = grant.expires_at.saturating_sub(now) + USE_RECORD_MARGIN_SECS;
    match store
        .set_if_absent(
            &store::key(USED_NAMESPACE, jti),
            now.to_string().as_bytes(),
            std::time::Duration::from_secs(ttl),
        )
        .await
    {
        Ok(true) => Ok(()),
        Ok(false) => Err(Deny::InvalidToken {
            reason: "this one-time link has already been used".into(),
            auth_type,
        }),
        Err(e) => {
            if e.is_failure() {
                tracing::error!(error = %e, "cannot record a one-time link use");
            }
            Err(e.denial())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::grant::UrlPattern;
    use crate::store::memory::MemoryStore;

    fn grant(urls: &[&str], verbs: &[&str]) -> LinkGrant {
        LinkGrant {
            urls: urls
                .iter()
                .map(|u| UrlPattern::parse(u).expect("valid"))
                .collect(),
            verbs: verbs.iter().map(|v| v.to_string()).collect(),
            once: false,
            jti: None,
            not_before: None,
            expires_at: 4_000_000_000,
        }
    }

    #[tokio::test]
    async fn one_time_links_are_consumed_once() {
        let store = MemoryStore::new(10);
        let mut g = grant(&["/x"], &["get"]);
        // Not one-time: never recorded.
        assert_eq!(consume(&store, &g, AuthType::Bearer).await, Ok(()));
        assert_eq!(consume(&store, &g, AuthType::Bearer).await, Ok(()));
        assert!(store.is_empty());
        g.once = true;
        g.jti = Some("abc".into());
        assert_eq!(consume(&store, &g, AuthType::Bearer).await, Ok(()));
        let again = consume(&store, &g, AuthType::Bearer).await.unwrap_err();
        assert_eq!(again.http_status(), 401);
        assert!(again.to_string().contains("already been used"), "{again}");
    }

    #[tokio::test]
    async fn a_full_store_fails_closed() {
        let store = MemoryStore::new(1);
        let mut g = grant(&["/x"], &["get"]);
        g.once = true;
        g.jti = Some("a".into());
        assert_eq!(consume(&store, &g, AuthType::Bearer).await, Ok(()));
        g.jti = Some("b".into());
        assert_eq!(
            consume(&store, &g, AuthType::Bearer).await,
            Err(Deny::StoreUnavailable)
        );
    }
}
