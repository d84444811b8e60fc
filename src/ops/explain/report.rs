//! What `gatehouse explain` records while the pipeline runs, and how it
//! prints it. Nothing printed is a credential: tokens, cookies and
//! upstream credentials appear only as `sha256:` fingerprints.

use std::fmt;

use crate::config::AuthType;
use crate::model::deny::Deny;
use crate::model::identity::Identity;
use crate::model::identity::Presented;
use crate::model::observe::Decision;
use crate::model::observe::{Observer, Phase};
use crate::model::request::Request;
use crate::model::requirement::{Access, Requirement};
use crate::proto::auth::CheckResponse;
use crate::proto::auth::check_response::HttpResponse;
use crate::proto::core::HeaderValueOption;
use crate::secret::{Secret, fingerprint};

/// Header names whose values are always shown as fingerprints.
const SECRET_HEADERS: [&str; 5] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-auth-request-token",
];

/// The caller as authentication established it (no credential).
#[derive(Debug, Clone)]
struct Caller {
    kind: &'static str,
    issuer: String,
    subject: String,
    username: Option<String>,
    scopes: Vec<String>,
    groups: Vec<String>,
    expires_at: Option<u64>,
    tool: Option<String>,
    link: bool,
}

/// The request as the pipeline saw it, without its headers (which may
/// carry credentials).
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    scheme: String,
    host: String,
    path: String,
    query: Option<String>,
    client_ip: Option<std::net::IpAddr>,
    source_ip: Option<std::net::IpAddr>,
}

/// The observer `explain` runs the pipeline with.
#[derive(Debug, Default)]
pub struct Recorder {
    steps: Vec<(Phase, Result<(), Deny>)>,
    request: Option<Seen>,
    requirement: Option<Requirement>,
    caller: Option<Caller>,
    decided_by: Option<crate::model::identity::CredentialKind>,
}

impl Recorder {
    /// The kind of credential the identity came from, if there was one.
    pub fn decided_by(&self) -> Option<crate::model::identity::CredentialKind> {
        self.decided_by
    }

    /// The phases that ran, in order, with their outcomes.
    pub fn steps(&self) -> impl Iterator<Item = (Phase, Result<(), &Deny>)> {
        self.steps.iter().map(|(p, r)| (*p, r.as_ref().map(|_| ())))
    }
}

impl Observer for Recorder {
    fn end(&mut self, phase: Phase, outcome: Result<(), &Deny>) {
        self.steps.push((phase, outcome.map_err(Deny::clone)));
    }

    fn request(&mut self, request: &Request) {
        self.request = Some(Seen {
            method: request.method.clone(),
            scheme: request.scheme.clone(),
            host: request.host.clone(),
            path: request.path.clone(),
            query: request.query.clone(),
            client_ip: request.client_ip,
            source_ip: request.source_ip,
        });
    }

    fn requirement(&mut self, requirement: &Requirement) {
        self.requirement = Some(requirement.clone());
    }

    fn identity(&mut self, identity: Option<&Identity>) {
        self.decided_by = identity.map(|id| id.kind);
        self.caller = identity.map(|id| Caller {
            kind: id.kind.as_str(),
            issuer: id.issuer.clone(),
            subject: id.subject.clone(),
            username: id.username.clone(),
            scopes: id.scopes.iter().cloned().collect(),
            groups: id.groups.clone(),
            expires_at: id.expires_at,
            tool: id.tool.clone(),
            link: id.grant.is_some(),
        });
    }
}

/// The result of `explain`: printable with `{}` (its `Debug` shows only
/// the decision: the response may hold upstream credentials).
pub struct Explanation {
    /// What the pipeline reported.
    pub recorder: Recorder,
    /// The credential the request carries (kind and fingerprint).
    pub presented: Option<Presented>,
    /// The credential itself, only to recognise and redact it in output.
    pub token: Option<Secret>,
    /// The response Envoy would get.
    pub response: CheckResponse,
    /// The decision.
    pub decision: Decision,
    /// Caveats (keys not loaded, …).
    pub notes: Vec<String>,
}

impl fmt::Debug for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Explanation")
            .field("decision", &self.decision)
            .finish_non_exhaustive()
    }
}

impl Explanation {
    /// Whether the request would be allowed.
    pub fn allowed(&self) -> bool {
        self.decision.result.is_ok()
    }

    /// A header value fit to print: a fingerprint for credentials.
    fn shown(&self, name: &str, value: &str) -> String {
        let holds_token = self
            .token
            .as_ref()
            .is_some_and(|t| !t.expose().is_empty() && value.contains(t.expose()));
        if holds_token || SECRET_HEADERS.iter().any(|s| name.eq_ignore_ascii_case(s)) {
            format!("<redacted sha256:{}>", fingerprint(value.as_bytes()))
        } else {
            value.to_string()
        }
    }

    fn headers(&self, f: &mut fmt::Formatter<'_>, headers: &[HeaderValueOption]) -> fmt::Result {
        for header in headers.iter().filter_map(|h| h.header.as_ref()) {
            writeln!(
                f,
                "    {}: {}",
                header.key,
                self.shown(&header.key, &header.value)
            )?;
        }
        Ok(())
    }
}

fn requirement_text(r: &Requirement) -> String {
    let who = match &r.access {
        Access::Anonymous => return "anonymous (no credential is examined)".into(),
        Access::Authenticated { scopes, .. } if scopes.is_empty() => {
            "any valid credential".to_string()
        }
        Access::Authenticated { scopes, satisfy } => format!(
            "a credential holding {} of [{}]",
            satisfy.as_str(),
            scopes.join(" ")
        ),
    };
    let c = r.credentials;
    let kinds: Vec<&str> = [
        (c.jwt, "jwt"),
        (c.certificate, "certificate"),
        (c.spiffe, "spiffe"),
        (c.api_token, "api_token"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    let challenge = match r.auth_type {
        AuthType::Bearer => "Bearer",
        AuthType::Basic => "Basic",
    };
    let mut text = format!("{who}; accepts {}; challenge {challenge}", kinds.join(", "));
    if let Some(tool) = &r.tool {
        text.push_str(&format!("; the caller must own tool {tool:?}"));
    }
    text
}

/// `a=1&access_token=xyz` → `a=…&access_token=…`: names only.
fn query_names(query: &str) -> String {
    query
        .split('&')
        .map(|pair| {
            let name = pair.split('=').next().unwrap_or_default();
            format!("{name}=…")
        })
        .collect::<Vec<_>>()
        .join("&")
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rec = &self.recorder;
        match &rec.request {
            Some(r) => {
                let query = r
                    .query
                    .as_deref()
                    .map(|q| format!("?{}", query_names(q)))
                    .unwrap_or_default();
                writeln!(
                    f,
                    "request:     {} {}://{}{}{query}",
                    r.method, r.scheme, r.host, r.path
                )?;
                let ip = |ip: Option<std::net::IpAddr>| ip.map_or("-".into(), |i| i.to_string());
                writeln!(
                    f,
                    "client:      {} (peer {})",
                    ip(r.client_ip),
                    ip(r.source_ip)
                )?;
            }
            None => writeln!(f, "request:     (not readable)")?,
        }
        match &rec.requirement {
            Some(r) => {
                writeln!(f, "rule:        {}", r.rule)?;
                writeln!(f, "requires:    {}", requirement_text(r))?;
            }
            None => writeln!(f, "rule:        (none)")?,
        }
        match &self.presented {
            Some(p) => writeln!(
                f,
                "credential:  {} (sha256:{})",
                p.kind,
                p.fingerprint.as_deref().unwrap_or("-")
            )?,
            None => writeln!(f, "credential:  none found")?,
        }
        if let Some(c) = &rec.caller {
            let mut line = format!("{} {:?} from {}", c.kind, c.subject, c.issuer);
            if let Some(user) = &c.username {
                line.push_str(&format!(", user {user:?}"));
            }
            if c.link {
                line.push_str(", a signed link");
            }
            if let Some(tool) = &c.tool {
                line.push_str(&format!(", tool {tool:?}"));
            }
            writeln!(f, "caller:      {line}")?;
            writeln!(f, "  scopes:    [{}]", c.scopes.join(" "))?;
            if !c.groups.is_empty() {
                writeln!(f, "  groups:    [{}]", c.groups.join(" "))?;
            }
            if let Some(exp) = c.expires_at {
                let left = i128::from(exp) - i128::from(crate::clock::now_secs());
                writeln!(f, "  expires:   {exp} (Unix time; in {left} s)")?;
            }
        }
        writeln!(f, "phases:")?;
        for phase in Phase::ALL {
            match rec.steps.iter().find(|(p, _)| *p == phase) {
                Some((_, Ok(()))) => {
                    let anonymous_pass = phase == Phase::Authn
                        && rec.caller.is_none()
                        && rec
                            .requirement
                            .as_ref()
                            .is_some_and(|r| matches!(r.access, Access::Authenticated { .. }));
                    if anonymous_pass {
                        writeln!(
                            f,
                            "  {:<9}  ok    no credential (authz decides)",
                            phase.name()
                        )?
                    } else {
                        writeln!(f, "  {:<9}  ok", phase.name())?
                    }
                }
                Some((_, Err(deny))) => writeln!(
                    f,
                    "  {:<9}  DENY  {}: {deny}",
                    phase.name(),
                    deny.reason_label()
                )?,
                None => writeln!(f, "  {:<9}  -     not reached", phase.name())?,
            }
        }
        match &self.decision.result {
            Ok(()) => writeln!(f, "decision:    ALLOW")?,
            Err(deny) => writeln!(
                f,
                "decision:    DENY {} ({})",
                deny.http_status(),
                deny.reason_label()
            )?,
        }
        match &self.response.http_response {
            Some(HttpResponse::OkResponse(ok)) => {
                writeln!(f, "upstream request:")?;
                writeln!(f, "  headers set:")?;
                self.headers(f, &ok.headers)?;
                if !ok.headers_to_remove.is_empty() {
                    writeln!(f, "  headers removed: {}", ok.headers_to_remove.join(", "))?;
                }
                if !ok.query_parameters_to_remove.is_empty() {
                    writeln!(
                        f,
                        "  query parameters removed: {}",
                        ok.query_parameters_to_remove.join(", ")
                    )?;
                }
            }
            Some(HttpResponse::DeniedResponse(denied)) => {
                let status = denied.status.as_ref().map_or(0, |s| s.code);
                let code = self.response.status.as_ref().map_or(0, |s| s.code);
                writeln!(f, "response:    HTTP {status} (gRPC code {code})")?;
                self.headers(f, &denied.headers)?;
                writeln!(f, "    body: {}", denied.body)?;
            }
            _ => writeln!(f, "response:    (none)")?,
        }
        if !self.notes.is_empty() {
            writeln!(f, "notes:")?;
            for note in &self.notes {
                writeln!(f, "  - {note}")?;
            }
        }
        Ok(())
    }
}
