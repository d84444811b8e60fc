use jsonwebtoken::Algorithm;

use super::*;
use crate::config::{self, ConfigSource};
use crate::model::identity::groups_header;
use crate::testkit::{self, TestKey};

/// A decision line as gatehouse's `json` format writes it.
fn line(fields: serde_json::Value) -> String {
    let mut all = serde_json::json!({
        "timestamp": "2025-01-01T00:00:00.000000Z",
        "level": "INFO",
        "message": "allow",
        "decision": "allow", "rule": "data", "reason": "", "detail": "", "status": 200,
        "subject": "alice-sub", "user": "alice", "email": "alice@example.org", "uid": "7",
        "groups": "readers", "scopes": "read", "identity_kind": "jwt", "issuer": "iss",
        "tool": "", "client_ip": "10.0.0.1", "method": "GET", "host": "h.example",
        "path": "/data/1", "trace_id": "", "credential": "bearer", "token_fp": "00ff",
        "target": "gatehouse::decision",
    });
    for (k, v) in fields.as_object().expect("object") {
        all[k] = v.clone();
    }
    all.to_string()
}

fn logged(fields: serde_json::Value) -> Logged {
    match parse_line(&line(fields)) {
        Line::Decision(logged) => *logged,
        other => panic!("not a decision: {other:?}"),
    }
}

/// Nobody authenticated, no credential.
fn anonymous(fields: serde_json::Value) -> Logged {
    let mut l = logged(fields);
    l.caller = LoggedCaller::default();
    l.credential.clear();
    l
}

const POLICY: &str = r#"
scopes: {group_mapping: {read: [readers], admin: [admins]}}
tools: {superusers: [root]}
policy:
  rules:
    - {name: open, match: {path: {prefix: /open/}}, auth: anonymous}
    - {name: data, match: {path: {prefix: /data/}}, scopes: [read]}
    - {name: admin, match: {path: {prefix: /admin/}}, scopes: [admin]}
    - {name: claims, match: {path: {prefix: /claims/}}, when: 'identity.claims.x == "y"'}
    - {name: cel, match: {path: {prefix: /cel/}}, when: '"admins" in identity.groups'}
    - {name: certs, match: {path: {prefix: /certs/}}, credentials: [certificate]}
    - {name: tools, match: {path: {template: "/tool/{tool}/**"}}, tool_from_path: tool}
"#;

fn engine(policy: &str) -> crate::check::pipeline::Engine {
    let key = TestKey::generate(Algorithm::ES256, "k");
    let yaml = format!(
        "jwt: {{issuers: [{{issuer: iss, audiences: [api], algorithms: [ES256], keys: {{jwks: {}}}}}]}}\n{policy}",
        testkit::jwks(&[&key])
    );
    let source = ConfigSource::Text(yaml);
    let cfg = config::load(&source, []).expect("config");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime
        .block_on(async { crate::app::build_engine(&cfg, &source) })
        .expect("engine")
}

fn replay_with(engine: &crate::check::pipeline::Engine, logged: &Logged) -> Replayed {
    let mut mapping = std::collections::BTreeMap::new();
    mapping.insert("read".to_string(), vec!["readers".to_string()]);
    mapping.insert("admin".to_string(), vec!["admins".to_string()]);
    Replayer {
        policy: &engine.policy,
        tools: &engine.tools,
        scopes_by_group: crate::model::identity::scopes_by_group(&mapping),
    }
    .replay(logged)
}

fn allow(rule: &str) -> Replayed {
    Replayed::Decided {
        rule: rule.into(),
        result: Ok(()),
    }
}

fn deny(rule: &str, reason: &str) -> Replayed {
    Replayed::Decided {
        rule: rule.into(),
        result: Err(reason.into()),
    }
}

fn not_replayable(replayed: &Replayed, part: &str) {
    match replayed {
        Replayed::NotReplayable(why) => assert!(why.contains(part), "{why}"),
        other => panic!("replayed: {other:?}"),
    }
}

// --- reading the log ---------------------------------------------------------------

#[test]
fn a_decision_line_is_read_flat_or_nested() {
    let l = logged(serde_json::json!({}));
    assert!(l.allowed);
    assert_eq!(l.rule, "data");
    assert_eq!(l.caller.user, "alice");
    assert_eq!(l.client_ip, Some([10, 0, 0, 1].into()));
    assert_eq!((l.method.as_str(), l.path.as_str()), ("GET", "/data/1"));
    let flat: serde_json::Value = serde_json::from_str(&line(serde_json::json!({}))).expect("json");
    let mut fields = flat.clone();
    fields.as_object_mut().expect("object").remove("target");
    let nested = serde_json::json!({"timestamp": "t", "level": "INFO",
        "target": "gatehouse::decision", "fields": fields});
    assert_eq!(parse_line(&nested.to_string()), Line::Decision(Box::new(l)));
}

#[test]
fn other_targets_and_blank_lines_are_skipped() {
    let other =
        r#"{"timestamp":"t","level":"INFO","message":"listening","target":"gatehouse::serve"}"#;
    assert_eq!(parse_line(other), Line::Other);
    assert_eq!(parse_line("   "), Line::Other);
}

#[test]
fn malformed_lines_say_why() {
    let why = |text: &str| match parse_line(text) {
        Line::Malformed(why) => why,
        other => panic!("{other:?}"),
    };
    assert!(why("gatehouse started").contains("not JSON"));
    assert!(why("[1,2]").contains("not a JSON object"));
    let mut missing: serde_json::Value =
        serde_json::from_str(&line(serde_json::json!({}))).expect("json");
    missing.as_object_mut().expect("object").remove("path");
    assert_eq!(why(&missing.to_string()), "no field path");
    assert!(why(&line(serde_json::json!({"decision": "maybe"}))).contains("neither"));
    assert!(why(&line(serde_json::json!({"decision": "deny"}))).contains("reason"));
    assert!(why(&line(serde_json::json!({"client_ip": "nope"}))).contains("client_ip"));
    assert!(why(&line(serde_json::json!({"user": 5}))).contains("not a string"));
}

#[test]
fn groups_decode_what_the_header_encodes() {
    let groups: Vec<String> = ["Acme, Inc.", "100%", "plain", "a%2Cb"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(decode_groups(&groups_header(&groups)), groups);
    assert!(decode_groups("").is_empty());
    // A `%` the writer did not encode is kept.
    assert_eq!(decode_groups("50%off"), vec!["50%off".to_string()]);
}

#[test]
fn the_identity_is_rebuilt_from_the_logged_fields() {
    let l = logged(
        serde_json::json!({"groups": "Acme%2C Inc.,readers", "scopes": "a b",
        "identity_kind": "api_token", "tool": "t1", "email": ""}),
    );
    let id = l.caller.identity().expect("kind").expect("identity");
    assert_eq!(id.kind, CredentialKind::ApiToken);
    assert_eq!(id.subject, "alice-sub");
    assert_eq!(id.username.as_deref(), Some("alice"));
    assert_eq!(id.email, None);
    assert_eq!(
        id.groups,
        vec!["Acme, Inc.".to_string(), "readers".to_string()]
    );
    assert_eq!(id.scopes.iter().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(id.tool.as_deref(), Some("t1"));
    assert!(id.claims.is_none() && id.grant.is_none());
    assert!(
        anonymous(serde_json::json!({}))
            .caller
            .identity()
            .expect("ok")
            .is_none()
    );
    let unknown = logged(serde_json::json!({"identity_kind": "kerberos"}));
    assert!(unknown.caller.identity().is_err());
}

// --- deciding again ------------------------------------------------------------------

#[test]
fn decisions_are_taken_again_with_the_logged_caller() {
    let engine = engine(POLICY);
    // Unchanged: the caller holds `read`.
    assert_eq!(
        replay_with(&engine, &logged(serde_json::json!({}))),
        allow("data")
    );
    // The new group mapping grants `read` to readers.
    let mapped = logged(serde_json::json!({"scopes": ""}));
    assert_eq!(replay_with(&engine, &mapped), allow("data"));
    // ... but not to an API token, whose scopes are its own.
    let token = logged(serde_json::json!({"scopes": "", "identity_kind": "api_token"}));
    assert_eq!(
        replay_with(&engine, &token),
        deny("data", "insufficient_scope")
    );
    // A path that now needs `admin`.
    let admin = logged(serde_json::json!({"rule": "old", "path": "/admin/x"}));
    assert_eq!(
        replay_with(&engine, &admin),
        deny("admin", "insufficient_scope")
    );
    // No rule at all now.
    let gone = logged(serde_json::json!({"path": "/gone"}));
    assert_eq!(replay_with(&engine, &gone), deny("", "no_rule"));
    // A condition over the groups is evaluated.
    let cel = logged(serde_json::json!({"path": "/cel/x"}));
    assert_eq!(replay_with(&engine, &cel), deny("cel", "condition_not_met"));
    let admins = logged(serde_json::json!({"path": "/cel/x", "groups": "admins"}));
    assert_eq!(replay_with(&engine, &admins), allow("cel"));
    // Tool ownership: the path's tool is not the caller's.
    let tool = logged(serde_json::json!({"path": "/tool/t1/x", "tool": "t2"}));
    assert_eq!(replay_with(&engine, &tool), deny("tools", "tool_mismatch"));
    let own = logged(serde_json::json!({"path": "/tool/t1/x", "tool": "t1"}));
    assert_eq!(replay_with(&engine, &own), allow("tools"));
}

#[test]
fn a_caller_without_a_credential_is_decided_as_one() {
    let engine = engine(POLICY);
    let denied = anonymous(serde_json::json!({"decision": "deny", "reason": "no_rule",
        "rule": "", "path": "/open/x"}));
    assert_eq!(replay_with(&engine, &denied), allow("open"));
    let allowed = anonymous(serde_json::json!({"rule": "open", "path": "/data/x"}));
    assert_eq!(
        replay_with(&engine, &allowed),
        deny("data", "no_credential")
    );
    let certs = anonymous(serde_json::json!({"path": "/certs/x"}));
    assert_eq!(
        replay_with(&engine, &certs),
        deny("certs", "no_certificate")
    );
    // A logged missing credential with a (dead) cookie counts as none.
    let mut stale = anonymous(serde_json::json!({"decision": "deny",
        "reason": "no_credential", "path": "/data/x"}));
    stale.credential = "session".into();
    assert_eq!(replay_with(&engine, &stale), deny("data", "no_credential"));
}

#[test]
fn a_failed_authentication_stands_where_a_credential_is_needed() {
    let engine = engine(POLICY);
    let mut bad = anonymous(serde_json::json!({"decision": "deny",
        "reason": "invalid_token", "path": "/data/x"}));
    bad.credential = "bearer".into();
    assert_eq!(replay_with(&engine, &bad), deny("data", "invalid_token"));
    bad.path = "/open/x".into();
    assert_eq!(replay_with(&engine, &bad), allow("open"));
}

#[test]
fn header_and_grant_denials_stand_where_the_new_decision_reaches_them() {
    let engine = engine(POLICY);
    let csrf = logged(
        serde_json::json!({"decision": "deny", "reason": "csrf_rejected",
        "method": "POST", "identity_kind": "session"}),
    );
    assert_eq!(replay_with(&engine, &csrf), deny("data", "csrf_rejected"));
    // Now short of a scope: that answer comes first.
    let mut short = csrf.clone();
    short.path = "/admin/x".into();
    assert_eq!(
        replay_with(&engine, &short),
        deny("admin", "insufficient_scope")
    );
    let link = logged(
        serde_json::json!({"decision": "deny", "reason": "link_not_granted",
        "identity_kind": "link"}),
    );
    assert_eq!(
        replay_with(&engine, &link),
        deny("data", "link_not_granted")
    );
    let mut open = link.clone();
    open.path = "/open/x".into();
    assert_eq!(replay_with(&engine, &open), allow("open"));
}

#[test]
fn what_the_log_cannot_tell_is_not_replayable() {
    let engine = engine(POLICY);
    // An anonymous rule's request with a credential it never verified.
    let unverified = logged(serde_json::json!({"rule": "open", "path": "/data/x",
        "identity_kind": "", "subject": "", "user": ""}));
    not_replayable(&replay_with(&engine, &unverified), "did not verify");
    // A condition over claims, reached.
    not_replayable(
        &replay_with(&engine, &logged(serde_json::json!({"path": "/claims/x"}))),
        "identity.claims",
    );
    // ... and not reached: no credential is a 401 before the condition.
    let nobody = anonymous(serde_json::json!({"path": "/claims/x"}));
    assert_eq!(
        replay_with(&engine, &nobody),
        deny("claims", "no_credential")
    );
    // A credential kind the new rule does not accept.
    not_replayable(
        &replay_with(&engine, &logged(serde_json::json!({"path": "/certs/x"}))),
        "does not accept",
    );
    not_replayable(
        &replay_with(
            &engine,
            &logged(serde_json::json!({"rule": "context_extensions"})),
        ),
        "context_extensions",
    );
    not_replayable(
        &replay_with(
            &engine,
            &logged(serde_json::json!({"method": "", "path": ""})),
        ),
        "could not be read",
    );
    not_replayable(
        &replay_with(
            &engine,
            &logged(serde_json::json!({"decision": "deny", "reason": "brand_new"})),
        ),
        "unknown reason",
    );
    let upstream = logged(serde_json::json!({"decision": "deny",
        "reason": "backend_login_required"}));
    not_replayable(&replay_with(&engine, &upstream), "upstream");
}

#[test]
fn a_logged_login_redirect_is_a_navigation() {
    let engine = engine(
        "browser: {login: redirect}\npolicy: {rules: [{name: app, match: {path: {prefix: /}}}]}\n",
    );
    let redirected = anonymous(serde_json::json!({"decision": "deny",
        "reason": "login_required", "path": "/home"}));
    assert_eq!(
        replay_with(&engine, &redirected),
        deny("app", "login_required")
    );
    let api = anonymous(
        serde_json::json!({"decision": "deny", "reason": "no_credential",
        "path": "/home"}),
    );
    assert_eq!(replay_with(&engine, &api), deny("app", "no_credential"));
}

// --- the report ----------------------------------------------------------------------

fn report_of(engine: &crate::check::pipeline::Engine, lines: &[String]) -> Report {
    let mut report = Report::new(1);
    let replayer = Replayer {
        policy: &engine.policy,
        tools: &engine.tools,
        scopes_by_group: Default::default(),
    };
    replayer
        .replay_lines(lines.join("\n").as_bytes(), &mut report)
        .expect("read");
    report
}

#[test]
fn changes_are_counted_grouped_and_fail_on_triggers() {
    let engine = engine(POLICY);
    let lines = vec![
        line(serde_json::json!({})),                                  // unchanged
        line(serde_json::json!({"rule": "old", "path": "/admin/1"})), // allow → deny
        line(serde_json::json!({"rule": "old", "path": "/admin/2"})), // allow → deny
        line(
            serde_json::json!({"decision": "deny", "reason": "no_rule", "rule": "",
            "path": "/open/x"}),
        ), // deny → allow
        line(
            serde_json::json!({"decision": "deny", "reason": "insufficient_scope",
            "path": "/cel/x"}),
        ), // reason changed
        line(serde_json::json!({"path": "/claims/x"})),               // not replayable
        "not json".into(),
        r#"{"target":"gatehouse::serve","message":"hi"}"#.into(),
        "\u{0}\u{ff}".into(),
    ];
    let mut bytes = lines.join("\n").into_bytes();
    bytes.extend_from_slice(b"\n\xff\xfe\n");
    let mut report = Report::new(1);
    Replayer {
        policy: &engine.policy,
        tools: &engine.tools,
        scopes_by_group: Default::default(),
    }
    .replay_lines(&bytes[..], &mut report)
    .expect("read");
    assert_eq!(report.count(Change::AllowToDeny), 2);
    assert_eq!(report.count(Change::DenyToAllow), 1);
    assert_eq!(report.count(Change::ReasonChanged), 1);
    assert_eq!(report.changed(), 4);
    assert_eq!(report.replayed(), 5);
    assert_eq!(report.not_replayable(), 1);
    assert_eq!(report.malformed_count(), 3);
    assert_eq!(
        report.summary(),
        "lines read 10, decisions 6, replayed 5, unchanged 1, changed 4, not replayable 1, \
         malformed 3, other lines 1"
    );
    let table = report.table();
    assert!(
        table.contains("allow → deny: rule old → admin: 2\n  GET h.example /admin/1 alice: allow → insufficient_scope\n  … 1 more\n"),
        "{table}"
    );
    assert!(
        table.contains("deny → allow: rule (none) → open: 1"),
        "{table}"
    );
    assert!(table.contains("line 7: not JSON"), "{table}");
    assert!(table.contains("line 10: not UTF-8"), "{table}");
    assert!(!table.contains("00ff"), "no fingerprint: {table}");
    let json = report.json();
    assert_eq!(json["counts"]["allow_to_deny"], 2);
    assert_eq!(
        json["changes"][0]["examples"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(json["summary"]["malformed"], 3);

    assert!(FailOn::Allow.triggered(&report));
    assert!(FailOn::Deny.triggered(&report));
    assert!(FailOn::Any.triggered(&report));
    let unchanged = report_of(&engine, &[line(serde_json::json!({}))]);
    assert!(!FailOn::Any.triggered(&unchanged));
    // Only a deny → allow trips `allow`.
    let stricter = report_of(
        &engine,
        &[line(serde_json::json!({"rule": "old", "path": "/admin/1"}))],
    );
    assert!(!FailOn::Allow.triggered(&stricter));
    assert!(FailOn::Deny.triggered(&stricter));
    let reason = report_of(
        &engine,
        &[line(
            serde_json::json!({"decision": "deny", "reason": "insufficient_scope",
            "path": "/cel/x"}),
        )],
    );
    assert!(!FailOn::Allow.triggered(&reason) && !FailOn::Deny.triggered(&reason));
    assert!(FailOn::Any.triggered(&reason));
}
