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

use std::time::Duration;

use crate::abi::FilterConfigEnvoyPtr;
use crate::envoy::{self, StatId, StatKind, Stream};

/// The label value for "no value".
const NONE: &str = "none";

/// `value`, or [`NONE`] for an empty one.
fn label(value: &str) -> &str {
    if value.is_empty() { NONE } else { value }
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

    /// Counts one check (its `decision` and `reason` labels, and the rule
    /// that applied) and records how long it took.
    pub fn record(
        &self,
        stream: &Stream,
        [decision, reason]: [&str; 2],
        rule: Option<&str>,
        elapsed: Duration,
    ) {
        let rule = label(rule.unwrap_or(""));
        stream.record_stat(self.checks, [decision, label(reason), rule], 1);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        stream.record_stat(self.duration, [decision], micros);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_never_empty() {
        assert_eq!(label(""), "none");
        assert_eq!(label("needs_state"), "needs_state");
    }
}
