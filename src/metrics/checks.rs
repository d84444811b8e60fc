//! The check metrics of one engine: `gatehouse_checks_total` and
//! `gatehouse_check_duration_seconds`. Every rule of the engine has a
//! slot per (decision, reason) holding its counter once resolved: the
//! allow counters are made with the engine (so every rule's series exists
//! from the start), a deny counter at its first use (so the exposition
//! does not carry rules × reasons zeros). Recording a check is one hash
//! lookup of the rule name, one atomic load of the slot, one counter
//! increment and one histogram observation: no lock, no allocation.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus::{Histogram, IntCounter, IntCounterVec};

use super::{Metrics, MetricsError};
use crate::model::deny::REASON_LABELS;
use crate::model::observe::Decision;
use crate::model::requirement::{CONTEXT_EXTENSIONS_RULE, DEFAULT_RULE};

/// The counter slots of one rule: allows, then denies by reason.
struct RuleCounters {
    rule: Box<str>,
    /// `[0]`: allow; `[1 + Deny::reason_index()]`: deny for that reason.
    slots: [OnceLock<IntCounter>; 1 + REASON_LABELS.len()],
}

impl RuleCounters {
    fn new(rule: &str) -> RuleCounters {
        RuleCounters {
            rule: rule.into(),
            slots: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// Increments slot `slot`, resolving its counter on first use.
    fn inc(&self, checks: &IntCounterVec, slot: usize) {
        let Some(cell) = self.slots.get(slot) else {
            return;
        };
        if let Some(counter) = cell.get() {
            counter.inc();
            return;
        }
        let (decision, reason) = match slot.checked_sub(1) {
            None => ("allow", ""),
            Some(i) => ("deny", REASON_LABELS.get(i).copied().unwrap_or("")),
        };
        // Fails only for a wrong number of labels (three, fixed here).
        if let Ok(counter) = checks.get_metric_with_label_values(&[decision, reason, &self.rule]) {
            cell.get_or_init(|| counter).inc();
        }
    }
}

/// What an engine records its checks into, and the registry it belongs to.
pub struct EngineMetrics {
    shared: Arc<Metrics>,
    rules: HashMap<Box<str>, RuleCounters>,
    /// `rule=""`: the request was refused before a rule applied.
    no_rule: RuleCounters,
    allow_duration: Histogram,
    deny_duration: Histogram,
}

impl EngineMetrics {
    /// Counters for `rules` (the configured rule names; the names
    /// gatehouse gives requirements no rule produced are added here).
    pub fn new<'a>(
        shared: Arc<Metrics>,
        rules: impl IntoIterator<Item = &'a str>,
    ) -> Result<EngineMetrics, MetricsError> {
        let mut by_name = HashMap::new();
        for rule in rules
            .into_iter()
            .chain([DEFAULT_RULE, CONTEXT_EXTENSIONS_RULE])
        {
            let counters = RuleCounters::new(rule);
            let allow = shared
                .checks
                .get_metric_with_label_values(&["allow", "", rule])?;
            let _ = counters.slots[0].set(allow);
            by_name.insert(rule.into(), counters);
        }
        Ok(EngineMetrics {
            no_rule: RuleCounters::new(""),
            rules: by_name,
            allow_duration: shared
                .check_duration
                .get_metric_with_label_values(&["allow"])?,
            deny_duration: shared
                .check_duration
                .get_metric_with_label_values(&["deny"])?,
            shared,
        })
    }

    /// The process's metrics (for the `/metrics` endpoint).
    pub fn registry(&self) -> &Arc<Metrics> {
        &self.shared
    }

    /// Counts a disagreement of the shadow rule `rule` (see
    /// [`Metrics::shadow_disagreement`]).
    pub fn shadow_disagreement(&self, rule: &str, change: &str) {
        self.shared.shadow_disagreement(rule, change);
    }

    /// Records one answered check that took `elapsed`.
    pub fn record(&self, decision: &Decision, elapsed: Duration) {
        let counters = decision
            .rule
            .as_deref()
            .and_then(|rule| self.rules.get(rule))
            .unwrap_or(&self.no_rule);
        match &decision.result {
            Ok(()) => {
                counters.inc(&self.shared.checks, 0);
                self.allow_duration.observe(elapsed.as_secs_f64());
            }
            Err(deny) => {
                counters.inc(&self.shared.checks, 1 + deny.reason_index());
                self.deny_duration.observe(elapsed.as_secs_f64());
            }
        }
    }
}
