//! What replay found, and its two renderings. Both are deterministic: the
//! groups are sorted (change, old rule, new rule; not-replayable reasons
//! by text), examples are the first ones in log order, and nothing of the
//! log's timestamps or trace ids is printed.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::json;

use super::{Logged, Replayed};
use crate::check::pipeline::shadow::Change;

/// Malformed lines listed by number (the rest are only counted).
const MALFORMED_LISTED: usize = 10;

/// The changes in the order they are printed.
const CHANGES: [Change; 3] = [
    Change::AllowToDeny,
    Change::DenyToAllow,
    Change::ReasonChanged,
];

/// One changed decision, as printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// The line of the log.
    pub line: usize,
    /// Method.
    pub method: String,
    /// Host.
    pub host: String,
    /// Path.
    pub path: String,
    /// The caller's user name (empty: nobody).
    pub user: String,
    /// `allow` or the logged reason.
    pub old: String,
    /// `allow` or the new reason.
    pub new: String,
}

#[derive(Debug, Default)]
struct Group {
    count: usize,
    examples: Vec<Example>,
}

/// Everything replay found.
#[derive(Debug, Default)]
pub struct Report {
    lines: usize,
    other: usize,
    decisions: usize,
    unchanged: usize,
    /// (change's position in [`CHANGES`], old rule, new rule) → group.
    changes: BTreeMap<(usize, String, String), Group>,
    not_replayable: BTreeMap<String, usize>,
    malformed: Vec<(usize, String)>,
    malformed_count: usize,
    /// Examples kept per group.
    examples: usize,
}

fn verdict(result: Result<(), &str>) -> String {
    match result {
        Ok(()) => "allow".into(),
        Err(reason) => reason.into(),
    }
}

fn rule_label(rule: &str) -> &str {
    if rule.is_empty() { "(none)" } else { rule }
}

impl Report {
    /// An empty report keeping up to `examples` examples per group.
    pub fn new(examples: usize) -> Report {
        Report {
            examples,
            ..Report::default()
        }
    }

    /// Counts a line and returns its number (1-based).
    pub fn next_line(&mut self) -> usize {
        self.lines += 1;
        self.lines
    }

    /// A line of another target.
    pub fn other(&mut self) {
        self.other += 1;
    }

    /// A malformed line.
    pub fn malformed(&mut self, line: usize, why: String) {
        self.malformed_count += 1;
        if self.malformed.len() < MALFORMED_LISTED {
            self.malformed.push((line, why));
        }
    }

    /// A decision line and its replay.
    pub fn add(&mut self, line: usize, logged: &Logged, replayed: Replayed) {
        self.decisions += 1;
        let (rule, result) = match replayed {
            Replayed::NotReplayable(why) => {
                *self.not_replayable.entry(why).or_default() += 1;
                return;
            }
            Replayed::Decided { rule, result } => (rule, result),
        };
        let old = if logged.allowed {
            Ok(())
        } else {
            Err(logged.reason.as_str())
        };
        let new = result.as_ref().map(|_| ()).map_err(String::as_str);
        let Some(change) = Change::between(old, new) else {
            self.unchanged += 1;
            return;
        };
        let position = CHANGES.iter().position(|c| *c == change).unwrap_or(0);
        let group = self
            .changes
            .entry((position, logged.rule.clone(), rule))
            .or_default();
        group.count += 1;
        if group.examples.len() >= self.examples {
            return;
        }
        group.examples.push(Example {
            line,
            method: logged.method.clone(),
            host: logged.host.clone(),
            path: logged.path.clone(),
            user: logged.caller.user.clone(),
            old: verdict(old),
            new: verdict(new),
        });
    }

    /// Decisions whose answer changed in the way `change` names.
    pub fn count(&self, change: Change) -> usize {
        self.changes
            .iter()
            .filter(|((position, _, _), _)| CHANGES.get(*position) == Some(&change))
            .map(|(_, g)| g.count)
            .sum()
    }

    /// Decisions whose answer changed.
    pub fn changed(&self) -> usize {
        self.changes.values().map(|g| g.count).sum()
    }

    /// Decision lines that could not be replayed.
    pub fn not_replayable(&self) -> usize {
        self.not_replayable.values().sum()
    }

    /// Decision lines decided again.
    pub fn replayed(&self) -> usize {
        self.unchanged + self.changed()
    }

    /// Lines that could not be read.
    pub fn malformed_count(&self) -> usize {
        self.malformed_count
    }

    /// The one-line summary.
    pub fn summary(&self) -> String {
        format!(
            "lines read {}, decisions {}, replayed {}, unchanged {}, changed {}, \
             not replayable {}, malformed {}, other lines {}",
            self.lines,
            self.decisions,
            self.replayed(),
            self.unchanged,
            self.changed(),
            self.not_replayable(),
            self.malformed_count,
            self.other
        )
    }

    /// The report for people.
    pub fn table(&self) -> String {
        let examples = self.examples;
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.summary());
        let _ = writeln!(out);
        let _ = writeln!(out, "{:<16} {:>6}", "change", "count");
        for change in CHANGES {
            let _ = writeln!(out, "{:<16} {:>6}", arrow(change), self.count(change));
        }
        for ((position, old_rule, new_rule), group) in &self.changes {
            let change = CHANGES
                .get(*position)
                .copied()
                .unwrap_or(Change::ReasonChanged);
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "{}: rule {} → {}: {}",
                arrow(change),
                rule_label(old_rule),
                rule_label(new_rule),
                group.count
            );
            for e in group.examples.iter().take(examples) {
                let user = if e.user.is_empty() { "-" } else { &e.user };
                let _ = writeln!(
                    out,
                    "  {} {} {} {}: {} → {}",
                    e.method, e.host, e.path, user, e.old, e.new
                );
            }
            if group.count > examples {
                let _ = writeln!(out, "  … {} more", group.count - examples);
            }
        }
        if !self.not_replayable.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(out, "not replayable:");
            for (why, count) in &self.not_replayable {
                let _ = writeln!(out, "  {count:>6}  {why}");
            }
        }
        if self.malformed_count > 0 {
            let _ = writeln!(out);
            let _ = writeln!(out, "malformed:");
            for (line, why) in &self.malformed {
                let _ = writeln!(out, "  line {line}: {why}");
            }
            if self.malformed_count > self.malformed.len() {
                let _ = writeln!(
                    out,
                    "  … {} more",
                    self.malformed_count - self.malformed.len()
                );
            }
        }
        out
    }

    /// The report for tools.
    pub fn json(&self) -> serde_json::Value {
        let examples = self.examples;
        let changes: Vec<_> = self
            .changes
            .iter()
            .map(|((position, old_rule, new_rule), group)| {
                let change = CHANGES
                    .get(*position)
                    .copied()
                    .unwrap_or(Change::ReasonChanged);
                json!({
                    "change": change.as_str(),
                    "old_rule": old_rule,
                    "new_rule": new_rule,
                    "count": group.count,
                    "examples": group.examples.iter().take(examples).map(|e| json!({
                        "line": e.line,
                        "method": e.method,
                        "host": e.host,
                        "path": e.path,
                        "user": e.user,
                        "old": e.old,
                        "new": e.new,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let counts: serde_json::Map<_, _> = CHANGES
            .iter()
            .map(|c| (c.as_str().to_string(), json!(self.count(*c))))
            .collect();
        json!({
            "summary": {
                "lines": self.lines,
                "decisions": self.decisions,
                "replayed": self.replayed(),
                "unchanged": self.unchanged,
                "changed": self.changed(),
                "not_replayable": self.not_replayable(),
                "malformed": self.malformed_count,
                "other": self.other,
            },
            "counts": counts,
            "changes": changes,
            "not_replayable": self.not_replayable.iter()
                .map(|(why, count)| json!({"reason": why, "count": count}))
                .collect::<Vec<_>>(),
            "malformed": self.malformed.iter()
                .map(|(line, why)| json!({"line": line, "error": why}))
                .collect::<Vec<_>>(),
        })
    }
}

fn arrow(change: Change) -> &'static str {
    match change {
        Change::AllowToDeny => "allow → deny",
        Change::DenyToAllow => "deny → allow",
        Change::ReasonChanged => "reason changed",
    }
}
