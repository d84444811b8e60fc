//! `gatehouse replay` as CI runs it, on a decision log recorded through
//! the real Envoy (tests/e2e/test_replay.py, `REPLAY_RECORD=1`): against
//! the policy it was recorded with nothing changes; against the new one
//! the table is the golden one and `--fail-on allow` fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/replay")
        .join(name)
}

fn replay(config: &str, more: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("replay")
        .arg("--config")
        .arg(fixture(config))
        .arg(fixture("decisions.jsonl"))
        .args(more)
        .stdin(Stdio::null());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("GATEHOUSE_") {
            cmd.env_remove(name);
        }
    }
    cmd.output().expect("run gatehouse")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("utf-8")
}

/// The golden table leaves out the two counts that depend on the log's
/// other lines (tests/e2e/test_replay.py's `normalized`).
fn normalized(table: &str) -> String {
    let read = regex::Regex::new(r"lines read \d+").unwrap();
    let other = regex::Regex::new(r"other lines \d+").unwrap();
    let table = read.replace_all(table, "lines read N");
    other.replace_all(&table, "other lines N").into_owned()
}

#[test]
fn the_recording_policy_changes_nothing() {
    let out = replay("old.yaml", &["--fail-on", "any"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(
            "decisions 14, replayed 13, unchanged 13, changed 0, not replayable 1, malformed 0"
        ),
        "{text}"
    );
    assert!(text.contains("rule \"claims\"'s condition reads identity.claims"));
}

#[test]
fn the_new_policy_prints_the_golden_table_and_fails_on_allow() {
    let out = replay("new.yaml", &["--fail-on", "allow"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--fail-on allow"), "{stderr}");
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/golden/replay-new.txt");
    let golden = std::fs::read_to_string(golden).expect("golden");
    assert_eq!(normalized(&text), golden);
    // The lines the log holds besides decisions are skipped, not malformed.
    assert!(!text.contains("other lines 0,"), "{text}");
}

#[test]
fn fail_on_deny_and_any_trip_and_no_flag_passes() {
    assert_eq!(replay("new.yaml", &[]).status.code(), Some(0));
    assert_eq!(
        replay("new.yaml", &["--fail-on", "deny"]).status.code(),
        Some(1)
    );
    assert_eq!(
        replay("new.yaml", &["--fail-on", "any"]).status.code(),
        Some(1)
    );
}

#[test]
fn json_output_counts_each_change() {
    let out = replay("new.yaml", &["--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["counts"]["allow_to_deny"], 3);
    assert_eq!(report["counts"]["deny_to_allow"], 2);
    assert_eq!(report["counts"]["reason_changed"], 1);
    assert_eq!(report["summary"]["not_replayable"], 1);
}

#[test]
fn errors_are_usage_and_configuration_errors() {
    let mut cmd = Command::new(BIN);
    let out = cmd
        .args(["replay", "--config"])
        .arg(fixture("new.yaml"))
        .arg(fixture("missing.jsonl"))
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    let broken = std::env::temp_dir().join(format!("replay-broken-{}.yaml", std::process::id()));
    std::fs::write(&broken, "policy: {rules: [{name: x}]}\nnope: 1\n").expect("write");
    let out = Command::new(BIN)
        .args(["replay", "--config"])
        .arg(&broken)
        .arg(fixture("decisions.jsonl"))
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let _ = std::fs::remove_file(&broken);
    assert_eq!(out.status.code(), Some(78));
    let out = Command::new(BIN)
        .args(["replay", "--fail-on", "sometimes", "x"])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
}
