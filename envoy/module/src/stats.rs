//! Gatehouse's check metrics in process, as Envoy stats: the module has no
//! port of its own for `/metrics`, so what the service exports as
//! `gatehouse_checks_total` and `gatehouse_check_duration_seconds` is
//! counted in Envoy's stats store instead, and scraped with Envoy's
//! (`/stats`, `/stats/prometheus`).
//!
//! - `gatehouse_checks` (counter), labels `decision` (`allow`, `deny`,
//!   `hand_on`), `reason` (the denial's reason label, as the service's;
//!   `none` for an allow) and `rule` (the rule that applied; `none` when
//!   none did);
//! - `gatehouse_check_duration_us` (histogram, microseconds), label
//!   `decision`: from the request's headers to the answer, waits for keys
//!   or the store included.
//!
//! `none` stands for the service's empty label value: Envoy builds each
//! series' name from its label values (`…decision.allow.reason.none.rule.api`
//! in `/stats`), where an empty one would leave a blank segment.

use std::sync::Arc;
use std::time::Duration;

use crate::abi::FilterConfigEnvoyPtr;
use crate::envoy::{self, StatId, StatKind, Stream};

/// Which way a check went, for the stats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// `allow`, `deny` or `hand_on`.
    pub decision: &'static str,
    /// The denial's reason label; `none` for an allow.
    pub reason: &'static str,
    /// The rule that applied, if one did.
    pub rule: Option<Arc<str>>,
}

/// The label value for "no value".
const NONE: &str = "none";

impl Verdict {
    /// An allow under `rule`.
    pub fn allow(rule: Option<Arc<str>>) -> Verdict {
        Verdict {
            decision: "allow",
            reason: NONE,
            rule,
        }
    }

    /// A denial for `reason` under `rule`.
    pub fn deny(reason: &'static str, rule: Option<Arc<str>>) -> Verdict {
        Verdict {
            decision: "deny",
            reason: if reason.is_empty() { NONE } else { reason },
            rule,
        }
    }

    /// A check handed on to `ext_authz` (it needs shared state).
    pub fn hand_on(reason: &'static str, rule: Option<Arc<str>>) -> Verdict {
        Verdict {
            decision: "hand_on",
            ..Verdict::deny(reason, rule)
        }
    }
}

/// The stats of one filter configuration.
#[derive(Debug, Clone, Copy)]
pub struct CheckStats {
    checks: StatId,
    duration: StatId,
}

impl CheckStats {
    /// Defines the stats on the filter configuration Envoy is building;
    /// Envoy's refusal, said in words, if it refuses.
    ///
    /// # Safety
    /// `config` must be the `filter_config_envoy_ptr` of the `config_new`
    /// call being run.
    pub unsafe fn define(config: FilterConfigEnvoyPtr) -> Result<CheckStats, String> {
        let define = |kind, name, labels: &[&str]| {
            // SAFETY: the caller's promise.
            unsafe { envoy::define_stat(config, kind, name, labels) }
                .map_err(|code| format!("Envoy refused the stat {name} (metrics result {code})"))
        };
        Ok(CheckStats {
            checks: define(
                StatKind::Counter,
                "gatehouse_checks",
                &["decision", "reason", "rule"],
            )?,
            duration: define(
                StatKind::Histogram,
                "gatehouse_check_duration_us",
                &["decision"],
            )?,
        })
    }

    /// Counts one check and records how long it took.
    pub fn record(&self, stream: &Stream, verdict: &Verdict, elapsed: Duration) {
        let rule = verdict.rule.as_deref().unwrap_or(NONE);
        stream.record_stat(self.checks, [verdict.decision, verdict.reason, rule], 1);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        stream.record_stat(self.duration, [verdict.decision], micros);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_never_carry_an_empty_label() {
        assert_eq!(Verdict::allow(None).reason, "none");
        assert_eq!(Verdict::deny("", None).reason, "none");
        let handed = Verdict::hand_on("needs_state", Some("tokens".into()));
        assert_eq!(
            (handed.decision, handed.reason, handed.rule.as_deref()),
            ("hand_on", "needs_state", Some("tokens"))
        );
    }
}
