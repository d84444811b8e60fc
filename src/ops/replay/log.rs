//! Reading the decision log: one JSON object per line as the `json` log
//! format writes it (`tracing`'s JSON with the event's fields flattened
//! beside `timestamp`, `level` and `target`; a nested `fields` object is
//! read too). Lines of other targets are skipped; a decision line that is
//! not JSON or lacks a field is malformed.

use std::collections::BTreeSet;

use crate::model::identity::{CredentialKind, Identity};
use crate::secret::Secret;
use crate::telemetry::decision::TARGET;

/// One logged decision, as replay needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// `allow` (true) or `deny`.
    pub allowed: bool,
    /// The rule that decided (empty: none).
    pub rule: String,
    /// The denial's reason label (empty for an allow).
    pub reason: String,
    /// The caller's fields, as logged.
    pub caller: LoggedCaller,
    /// The client's address, if logged.
    pub client_ip: Option<std::net::IpAddr>,
    /// Upper-case method (empty: the request could not be read).
    pub method: String,
    /// Host without port.
    pub host: String,
    /// Normalized path, without the query.
    pub path: String,
    /// Where the credential was found (empty: none was).
    pub credential: String,
}

/// The identity fields of a decision line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoggedCaller {
    /// `subject`.
    pub subject: String,
    /// `user`: the user name, or the subject when there is none.
    pub user: String,
    /// `email`.
    pub email: String,
    /// `uid`.
    pub uid: String,
    /// `groups`, as `X-Auth-Request-Groups` writes them.
    pub groups: String,
    /// `scopes`, space-separated.
    pub scopes: String,
    /// `identity_kind` (empty: nobody was authenticated).
    pub kind: String,
    /// `issuer`.
    pub issuer: String,
    /// `tool`.
    pub tool: String,
}

/// What one line of the log is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A decision line.
    Decision(Box<Logged>),
    /// A line of another target (or blank).
    Other,
    /// A line that should be a decision but cannot be read: why.
    Malformed(String),
}

/// Reads one line of the log.
pub fn parse_line(line: &str) -> Line {
    let line = line.trim();
    if line.is_empty() {
        return Line::Other;
    }
    let value: serde_json::Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return Line::Malformed(format!("not JSON: {e}")),
    };
    let Some(object) = value.as_object() else {
        return Line::Malformed("not a JSON object".into());
    };
    if object.get("target").and_then(|t| t.as_str()) != Some(TARGET) {
        return Line::Other;
    }
    // Flattened (gatehouse's `json` format) or nested under `fields`.
    let fields = object
        .get("fields")
        .and_then(|f| f.as_object())
        .unwrap_or(object);
    match decision(fields) {
        Ok(logged) => Line::Decision(Box::new(logged)),
        Err(why) => Line::Malformed(why),
    }
}

fn decision(fields: &serde_json::Map<String, serde_json::Value>) -> Result<Logged, String> {
    // Every field is always written (empty when unknown); a missing one is
    // a line of another version or a damaged one.
    let text = |name: &str| -> Result<String, String> {
        match fields.get(name) {
            Some(serde_json::Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(format!("field {name} is not a string: {other}")),
            None => Err(format!("no field {name}")),
        }
    };
    let allowed = match text("decision")?.as_str() {
        "allow" => true,
        "deny" => false,
        other => return Err(format!("decision {other:?} is neither allow nor deny")),
    };
    let client_ip = match text("client_ip")?.as_str() {
        "" => None,
        ip => Some(
            ip.parse()
                .map_err(|_| format!("client_ip {ip:?} is not an address"))?,
        ),
    };
    let reason = text("reason")?;
    if allowed != reason.is_empty() {
        return Err("an allow has no reason and a deny has one".into());
    }
    Ok(Logged {
        allowed,
        rule: text("rule")?,
        reason,
        caller: LoggedCaller {
            subject: text("subject")?,
            user: text("user")?,
            email: text("email")?,
            uid: text("uid")?,
            groups: text("groups")?,
            scopes: text("scopes")?,
            kind: text("identity_kind")?,
            issuer: text("issuer")?,
            tool: text("tool")?,
        },
        client_ip,
        method: text("method")?,
        host: text("host")?,
        path: text("path")?,
        credential: text("credential")?,
    })
}

/// The credential kind of a logged `identity_kind` label.
pub fn credential_kind(label: &str) -> Option<CredentialKind> {
    use CredentialKind::*;
    [Jwt, Certificate, Spiffe, Link, ApiToken, Session]
        .into_iter()
        .find(|k| k.as_str() == label)
}

/// The group names of an `X-Auth-Request-Groups` value: split on `,`,
/// then `%2C` and `%25` decoded (the inverse of
/// [`crate::model::identity::groups_header`]). Empty: no groups.
pub fn decode_groups(header: &str) -> Vec<String> {
    if header.is_empty() {
        return Vec::new();
    }
    header
        .split(',')
        .map(|name| {
            let mut out = String::with_capacity(name.len());
            let mut rest = name;
            while let Some(at) = rest.find('%') {
                out.push_str(&rest[..at]);
                let tail = &rest[at..];
                if let Some(after) = tail.strip_prefix("%2C").or(tail.strip_prefix("%2c")) {
                    out.push(',');
                    rest = after;
                } else if let Some(after) = tail.strip_prefix("%25") {
                    out.push('%');
                    rest = after;
                } else {
                    // Not one of ours (the writer encodes every `%`):
                    // kept as it is.
                    out.push('%');
                    rest = &tail[1..];
                }
            }
            out.push_str(rest);
            out
        })
        .collect()
}

impl LoggedCaller {
    /// The identity the logged check established, or `None` when nobody
    /// was authenticated; `Err` names an unknown `identity_kind`. What the
    /// log does not hold stays empty: no token, grant, CSRF token, claims
    /// or expiry. `user` becomes the user name (the log writes the subject
    /// there when there is none, which then reads as a user name equal to
    /// the subject).
    pub fn identity(&self) -> Result<Option<Identity>, String> {
        if self.kind.is_empty() {
            return Ok(None);
        }
        let kind = credential_kind(&self.kind)
            .ok_or_else(|| format!("unknown identity_kind {:?}", self.kind))?;
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Ok(Some(Identity {
            subject: self.subject.clone(),
            username: some(&self.user),
            email: some(&self.email),
            uid: some(&self.uid),
            groups: decode_groups(&self.groups),
            scopes: self
                .scopes
                .split_whitespace()
                .map(str::to_string)
                .collect::<BTreeSet<_>>(),
            kind,
            issuer: self.issuer.clone(),
            expires_at: None,
            token: Secret::new(""),
            query_parameter: None,
            tool: some(&self.tool),
            grant: None,
            csrf: None,
            claims: None,
        }))
    }
}
