//! The decision log: one line per denied check (and per allowed one with
//! `log.decisions: all`), target [`TARGET`], level INFO.
//!
//! Fields, always present (empty when unknown): `decision` (`allow` or
//! `deny`), `rule`, `reason` (the metrics label), `detail` (the denial's
//! message, safe for clients), `status` (the HTTP status the client gets;
//! 200 for an allow), `subject`, the caller's `user`, `email`, `uid`,
//! `groups` (as `X-Auth-Request-Groups` writes them), `scopes`
//! (space-separated), `identity_kind`, `issuer` and `tool` (what a later
//! replay of the decision needs), `client_ip`, `method`, `host`, `path`
//! (normalized, without the query string), `trace_id`, `credential` (where
//! the credential was found: `bearer`, `cookie`, `peer-certificate`, …)
//! and `token_fp`, the first 8 bytes of the credential's SHA-256 in hex.
//! Never the credential itself, a cookie, a header value or the query.

use crate::model::identity::{Identity, Presented, groups_header};
use crate::model::observe::Decision;
use crate::model::request::Request;

/// The log target of decision lines (`log.level: gatehouse::decision=info`
/// selects them).
pub const TARGET: &str = "gatehouse::decision";

/// What one decision line is made of.
#[derive(Debug)]
pub struct DecisionRecord<'a> {
    /// The decision.
    pub decision: &'a Decision,
    /// The request, unless it could not be read.
    pub request: Option<&'a Request>,
    /// The authenticated caller, if authentication succeeded.
    pub identity: Option<&'a Identity>,
    /// The credential the request carried, if any.
    pub credential: Option<&'a Presented>,
    /// The trace the check belongs to, if any.
    pub trace_id: Option<&'a str>,
}

/// Writes the decision line.
pub fn emit(record: &DecisionRecord<'_>) {
    let request = record.request;
    let (verdict, reason, status, detail) = match &record.decision.result {
        Ok(()) => ("allow", "", 200, String::new()),
        Err(deny) => (
            "deny",
            deny.reason_label(),
            deny.http_status(),
            deny.to_string(),
        ),
    };
    let client_ip = request
        .and_then(|r| r.client_ip)
        .map(|ip| ip.to_string())
        .unwrap_or_default();
    let id = record.identity;
    let text = |field: fn(&Identity) -> Option<&str>| id.and_then(field).unwrap_or("");
    let groups = id.map(|i| groups_header(&i.groups)).unwrap_or_default();
    let scopes = id
        .map(|i| {
            i.scopes
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    tracing::info!(
        target: TARGET,
        decision = verdict,
        rule = record.decision.rule.as_deref().unwrap_or(""),
        reason,
        detail = detail.as_str(),
        status,
        subject = text(|i| Some(&i.subject)),
        user = text(|i| Some(i.username.as_deref().unwrap_or(&i.subject))),
        email = text(|i| i.email.as_deref()),
        uid = text(|i| i.uid.as_deref()),
        groups = groups.as_str(),
        scopes = scopes.as_str(),
        identity_kind = text(|i| Some(i.kind.as_str())),
        issuer = text(|i| Some(&i.issuer)),
        tool = text(|i| i.tool.as_deref()),
        client_ip = client_ip.as_str(),
        method = request.map_or("", |r| r.method.as_str()),
        host = request.map_or("", |r| r.host.as_str()),
        path = request.map_or("", |r| r.path.as_str()),
        trace_id = record.trace_id.unwrap_or(""),
        credential = record.credential.map_or("", |c| c.kind),
        token_fp = record
            .credential
            .and_then(|c| c.fingerprint.as_deref())
            .unwrap_or(""),
        "{verdict}"
    );
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use jsonwebtoken::Algorithm;

    use crate::config::{self, ConfigSource};
    use crate::testkit::{self, TestKey};

    /// Collects what the fmt layer writes.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    async fn lines(
        decisions: &str,
        key: &TestKey,
        requests: Vec<crate::proto::auth::CheckRequest>,
    ) -> Vec<serde_json::Value> {
        let yaml = format!(
            "log: {{decisions: {decisions}}}\njwt: {{issuers: [{{issuer: iss, audiences: [api], algorithms: [ES256], keys: {{jwks: {}}}}}]}}\npolicy: {{rules: [{{name: data, match: {{path: {{prefix: /data/}}}}}}]}}\n",
            testkit::jwks(&[key])
        );
        let source = ConfigSource::Text(yaml);
        let cfg = config::load(&source, []).expect("config");
        let engine = crate::app::build_engine(&cfg, &source).expect("engine");
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        for request in requests {
            engine.check_owned(request).await;
        }
        let text = String::from_utf8(buffer.0.lock().expect("lock").clone()).expect("utf-8");
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON line"))
            .filter(|v| v["target"] == super::TARGET)
            .collect()
    }

    fn request(path: &str, token: Option<&str>) -> crate::proto::auth::CheckRequest {
        let mut headers = std::collections::HashMap::new();
        if let Some(token) = token {
            headers.insert("cookie".into(), format!("a=b; c={token}"));
            headers.insert("authorization".into(), format!("Bearer {token}"));
        }
        headers.insert(
            "traceparent".into(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
        );
        testkit::check_request("h.example", path, "10.0.0.1", headers)
    }

    #[tokio::test]
    async fn denials_only_by_default_with_every_field_and_no_token() {
        let key = TestKey::generate(Algorithm::ES256, "k");
        let valid = key.mint(&testkit::claims("iss", "api", "alice"));
        let token = "not.a-valid.token-value-that-must-not-appear";
        let requests = vec![
            request("/data/0", Some(&valid)),
            request("/data/1", Some(token)),
            request("/other", None),
        ];
        let out = lines("deny", &key, requests).await;
        assert_eq!(out.len(), 2, "{out:?}");
        let invalid = &out[0];
        assert_eq!(invalid["message"], "deny");
        assert_eq!(invalid["reason"], "invalid_token");
        assert_eq!(invalid["status"], 401);
        assert_eq!(invalid["rule"], "data");
        assert_eq!(invalid["credential"], "bearer");
        assert_eq!(
            invalid["token_fp"],
            crate::secret::fingerprint(token.as_bytes())
        );
        assert_eq!(invalid["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(invalid["client_ip"], "10.0.0.1");
        assert_eq!(invalid["path"], "/data/1");
        assert_eq!(out[1]["reason"], "no_rule");
        assert_eq!(out[1]["rule"], "");
        assert_eq!(out[1]["token_fp"], "");
        let all = serde_json::to_string(&out).expect("json");
        assert!(!all.contains("must-not-appear"), "{all}");
    }

    #[tokio::test]
    async fn allows_with_all_and_nothing_with_none() {
        let key = TestKey::generate(Algorithm::ES256, "k");
        let valid = key.mint(&testkit::claims("iss", "api", "alice"));
        assert!(
            lines("none", &key, vec![request("/other", None)])
                .await
                .is_empty()
        );
        let out = lines("all", &key, vec![request("/data/1", Some(&valid))]).await;
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0]["decision"], "allow");
        assert_eq!(out[0]["status"], 200);
        assert_eq!(out[0]["subject"], "alice");
        assert_eq!(out[0]["user"], "alice");
        assert_eq!(out[0]["identity_kind"], "jwt");
        assert_eq!(out[0]["issuer"], "iss");
        assert_eq!(out[0]["groups"], "");
        assert_eq!(
            out[0]["token_fp"],
            crate::secret::fingerprint(valid.as_bytes())
        );
        assert!(!serde_json::to_string(&out).expect("json").contains(&valid));
    }
}
