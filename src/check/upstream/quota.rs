//! Per-caller quotas (a rule's `quota: {per, limit, window}`): the first
//! side effect of an allowed request, counted before any other (a
//! one-time link is not used up, nor a backend token fetched, for a
//! request the quota refuses).
//!
//! Each (rule, caller) has one store key, counted with
//! [`Store::rate_limit`] (GCRA: `limit` per `window`, bursts up to
//! `limit`), so the count is exact across replicas sharing a Redis. The
//! key is a hash of the rule, the kind and the caller: it never shows a
//! user name or an address. Over the limit the request is refused with
//! [`Deny::QuotaExceeded`] (429, `Retry-After`, `RateLimit`); when the
//! store fails it is refused too (503, [`Deny::StoreUnavailable`]): a
//! quota that cannot be counted is not waived.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{AuthMode, ConfigError, QuotaConfig, QuotaPer, RuleConfig};
use crate::model::deny::{Deny, QuotaStatus};
use crate::model::identity::Identity;
use crate::model::request::Request;
use crate::store::{self, RateDecision, Store};

/// Store namespace of quota keys.
pub const NAMESPACE: &str = "quota";
/// The longest window: a year (the counts stay exact in microseconds).
pub const MAX_WINDOW: Duration = Duration::from_secs(366 * 24 * 3600);
/// The caller id of requests whose client address is unknown: they share
/// one allowance (fail closed: never unlimited).
const UNKNOWN_IP: &str = "unknown";

/// The store quotas are counted in (opaque in `Debug`).
#[derive(Clone)]
pub struct Counter(pub Arc<dyn Store>);

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Counter(store)")
    }
}

/// One rule's compiled quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    per: QuotaPer,
    limit: u64,
    window: Duration,
}

impl Quota {
    /// Validates `rule`'s quota (`key` names the rule, e.g.
    /// `policy.rules[3]`): a limit of at least 1 and at most one request
    /// per microsecond, a window from 1 second to a year, and `per: user`
    /// only where there is a user (not on an anonymous rule).
    pub fn compile(
        config: &QuotaConfig,
        rule: &RuleConfig,
        key: &str,
    ) -> Result<Quota, ConfigError> {
        let name = &rule.name;
        if config.per == QuotaPer::User && rule.auth == AuthMode::Anonymous {
            return Err(ConfigError::invalid(
                format!("{key}.quota.per"),
                format!(
                    "rule `{name}` is anonymous: there is no user to count (use `per: client_ip`)"
                ),
            ));
        }
        if config.window < Duration::from_secs(1) || config.window > MAX_WINDOW {
            return Err(ConfigError::invalid(
                format!("{key}.quota.window"),
                format!("rule `{name}`: the window must be from 1s to 366d"),
            ));
        }
        let window_us = u64::try_from(config.window.as_micros()).unwrap_or(u64::MAX);
        if config.limit == 0 || config.limit > window_us {
            return Err(ConfigError::invalid(
                format!("{key}.quota.limit"),
                format!(
                    "rule `{name}`: the limit must be at least 1 (and at most one request per microsecond of the window)"
                ),
            ));
        }
        Ok(Quota {
            per: config.per,
            limit: config.limit,
            window: config.window,
        })
    }

    /// Whom the quota counts.
    pub fn per(&self) -> QuotaPer {
        self.per
    }

    /// Requests per window.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The store key of this caller's allowance on `rule`: the namespace
    /// and a hash of the rule, the kind and the caller. `None` for
    /// `per: user` without an identity (never on a rule that passed
    /// [`Quota::compile`]: overrides only ever make a rule authenticated).
    pub fn store_key(
        &self,
        rule: &str,
        request: &Request,
        identity: Option<&Identity>,
    ) -> Option<String> {
        let caller = match self.per {
            QuotaPer::User => identity?.subject.clone(),
            QuotaPer::ClientIp => request
                .client_ip
                .map_or_else(|| UNKNOWN_IP.to_string(), client_ip_id),
        };
        let id = format!("{rule}\0{}\0{caller}", self.per.as_str());
        Some(store::key(
            NAMESPACE,
            &store::hashed_id(NAMESPACE, id.as_bytes()),
        ))
    }

    /// Counts this request against the caller's allowance: `Ok` with the
    /// decision when it is within the quota; a 429 when it is over; a 503
    /// when the store fails (logged).
    pub async fn count(
        &self,
        store: &dyn Store,
        rule: &Arc<str>,
        request: &Request,
        identity: Option<&Identity>,
    ) -> Result<RateDecision, Deny> {
        let Some(key) = self.store_key(rule, request, identity) else {
            return Err(Deny::Misconfigured(format!(
                "rule {rule:?} counts its quota per user, but the request has no identity"
            )));
        };
        let decision = match store.rate_limit(&key, self.limit, self.window).await {
            Ok(decision) => decision,
            Err(e) => {
                if e.is_failure() {
                    tracing::error!(rule = %rule, error = %e, "cannot count a quota; refused");
                }
                return Err(e.denial());
            }
        };
        if decision.allowed {
            return Ok(decision);
        }
        Err(Deny::QuotaExceeded(self.status(rule, &decision)))
    }

    /// `decision` in whole seconds, for the headers.
    pub fn status(&self, rule: &Arc<str>, decision: &RateDecision) -> QuotaStatus {
        QuotaStatus {
            rule: rule.clone(),
            limit: self.limit,
            window_secs: ceil_secs(self.window),
            remaining: decision.remaining,
            reset_secs: ceil_secs(decision.reset),
            retry_after_secs: ceil_secs(decision.retry_after).max(1),
        }
    }
}

/// Whole seconds, rounded up.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// A client address as a caller: IPv4 as is (also when mapped into
/// IPv6), IPv6 by its /64, which one subscriber usually holds whole.
fn client_ip_id(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_callers_count_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(client_ip_id(a), client_ip_id(b));
        assert_ne!(client_ip_id(a), client_ip_id(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        assert_eq!(client_ip_id(mapped), "192.0.2.7");
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(ceil_secs(Duration::ZERO), 0);
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(12)), 12);
        assert_eq!(ceil_secs(Duration::from_millis(12_001)), 13);
    }
}
