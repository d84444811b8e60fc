//! A rule's `when` condition: a CEL expression (the `cel` crate) over the
//! request, the caller's identity and the route's context extensions,
//! compiled once when the configuration loads and evaluated after the
//! caller is authenticated and holds the rule's scopes.
//!
//! Variables:
//! - `request`: `method`, `host`, `path` (normalized), `headers` (lower-case
//!   names; repeated headers joined with `,`), `query` (the raw query
//!   string), `client_ip` (`""` when unknown);
//! - `identity`: `user`, `subject`, `email`, `uid`, `groups`, `scopes`,
//!   `tool`, `kind` (`jwt`, `link`, `certificate`, `spiffe`, `api_token`,
//!   `session`), `issuer` and `claims` (a JWT's claims; `{}` for other
//!   credentials); every field is present, empty when unknown, and
//!   `identity.authenticated` is `false` on an anonymous rule's request
//!   without a credential;
//! - `route`: Envoy's `context_extensions` for the route.
//!
//! The configuration check refuses a syntax error (with its line and
//! column), a variable other than these three, and an expression whose
//! evaluation against a complete example request is a type error or not
//! a boolean. At check time an error (a missing map key, say) is a denial
//! that is logged, never an allow.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use cel::objects::{Key, Map};
use cel::{Context, Env, ExecutionError, Program, Value};

use crate::model::identity::Identity;
use crate::model::request::Request;

/// The variables a condition may name.
const VARIABLES: [&str; 3] = ["request", "identity", "route"];

/// CEL's standard library, built once and shared by every evaluation.
static STDLIB: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// A compiled `when` expression.
pub struct Condition {
    source: Arc<str>,
    program: Program,
    /// What the expression reads, so an evaluation builds only that.
    reads: Reads,
}

/// Which variables (and costly fields) an expression reads. The fields
/// are found in the text, an over-approximation: building a field that is
/// not read costs time, never correctness.
#[derive(Debug, Clone, Copy)]
struct Reads {
    request: bool,
    headers: bool,
    identity: bool,
    claims: bool,
    route: bool,
}

/// Two conditions are the same when their expressions are.
impl PartialEq for Condition {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Condition {}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Condition({:?})", self.source)
    }
}

/// Why an expression was refused at load time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConditionError {
    /// Not CEL.
    #[error("CEL syntax error at line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line.
        line: isize,
        /// 1-based column.
        column: isize,
        /// The parser's message.
        message: String,
    },
    /// A variable other than `request`, `identity` and `route`.
    #[error("unknown variable `{0}` (use request, identity or route)")]
    UnknownVariable(String),
    /// Evaluated against an example request, a type error.
    #[error("type error: {0}")]
    Type(String),
    /// Evaluated against an example request, not a boolean.
    #[error("the expression must be a boolean, not {0}")]
    NotBoolean(String),
}

/// Why an evaluation failed at check time (a denial).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EvaluationError(pub String);

impl Condition {
    /// Compiles `source` and checks it against an example request.
    pub fn compile(source: &str) -> Result<Condition, ConditionError> {
        let program = Program::compile(source).map_err(|errors| {
            let first = errors.errors.first();
            ConditionError::Syntax {
                line: first.map_or(0, |e| e.pos.0),
                column: first.map_or(0, |e| e.pos.1 + 1),
                message: first.map_or_else(|| errors.to_string(), |e| e.msg.clone()),
            }
        })?;
        let references = program.references();
        let mut variables = references.variables();
        variables.sort_unstable();
        let bound = macro_variables(source);
        if let Some(unknown) = variables
            .iter()
            .find(|v| !VARIABLES.contains(v) && !bound.contains(v))
        {
            return Err(ConditionError::UnknownVariable((*unknown).to_string()));
        }
        let reads = Reads {
            request: references.has_variable("request"),
            headers: source.contains("headers"),
            identity: references.has_variable("identity"),
            claims: Condition::may_read_claims(source),
            route: references.has_variable("route"),
        };
        let condition = Condition {
            source: source.into(),
            program,
            reads,
        };
        condition.check_types()?;
        Ok(condition)
    }

    /// The expression as configured.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether an expression's text may read `identity.claims`: it names
    /// `claims` anywhere (a cheap over-approximation; keeping claims that
    /// are not read costs memory, never correctness).
    pub fn may_read_claims(source: &str) -> bool {
        source.contains("claims")
    }

    /// Evaluates the condition for a request (and its caller, if any).
    pub fn evaluate(
        &self,
        request: &Request,
        identity: Option<&Identity>,
    ) -> Result<bool, EvaluationError> {
        match self.program.execute(&self.context(request, identity)) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(EvaluationError(format!(
                "the expression gave {}, not a boolean",
                other.type_of()
            ))),
            Err(e) => Err(EvaluationError(e.to_string())),
        }
    }

    /// The variables the expression reads, and nothing it does not.
    fn context(&self, request: &Request, identity: Option<&Identity>) -> Context<'static, 'static> {
        let reads = self.reads;
        let mut context = Context::with_env(STDLIB.clone());
        if reads.request {
            context.add_variable_from_value("request", request_value(request, reads.headers));
        }
        if reads.identity {
            context.add_variable_from_value("identity", identity_value(identity, reads.claims));
        }
        if reads.route {
            context.add_variable_from_value("route", string_map(&request.context_extensions));
        }
        context
    }

    /// Evaluates against a complete example request: a type error or a
    /// value that is not a boolean is a configuration error; anything that
    /// depends on the data (a missing key) is not.
    fn check_types(&self) -> Result<(), ConditionError> {
        let mut request = Request {
            method: "GET".into(),
            scheme: "https".into(),
            host: "example.org".into(),
            authority: "example.org".into(),
            path: "/".into(),
            ..Request::default()
        };
        request.client_ip = Some(std::net::IpAddr::from([192, 0, 2, 1]));
        match self.program.execute(&self.context(&request, None)) {
            Ok(Value::Bool(_)) => Ok(()),
            Ok(other) => Err(ConditionError::NotBoolean(other.type_of().to_string())),
            Err(
                e @ (ExecutionError::NoSuchOverload(_)
                | ExecutionError::UnsupportedBinaryOperator(..)
                | ExecutionError::UnexpectedType { .. }
                | ExecutionError::ValuesNotComparable(..)
                | ExecutionError::UnsupportedTargetType { .. }
                | ExecutionError::InvalidArgumentCount { .. }
                | ExecutionError::UndeclaredReference(_)),
            ) => Err(ConditionError::Type(e.to_string())),
            Err(_) => Ok(()),
        }
    }
}

/// The names CEL's comprehension macros bind (`list.exists(x, …)`: `x`),
/// which the parser reports among the variables an expression reads.
fn macro_variables(source: &str) -> Vec<&str> {
    const MACROS: [&str; 5] = [".all(", ".exists(", ".exists_one(", ".map(", ".filter("];
    let mut bound = Vec::new();
    for name in MACROS {
        for (at, _) in source.match_indices(name) {
            let rest = source[at + name.len()..].trim_start();
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if end > 0 && rest[end..].trim_start().starts_with(',') {
                bound.push(&rest[..end]);
            }
        }
    }
    bound
}

fn text(s: &str) -> Value {
    Value::String(Arc::new(s.to_string()))
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    let map: HashMap<Key, Value> = entries
        .into_iter()
        .map(|(k, v)| (Key::String(Arc::new(k.to_string())), v))
        .collect();
    Value::Map(Map { map: Arc::new(map) })
}

fn string_map(entries: &HashMap<String, String>) -> Value {
    let map: HashMap<Key, Value> = entries
        .iter()
        .map(|(k, v)| (Key::String(Arc::new(k.clone())), text(v)))
        .collect();
    Value::Map(Map { map: Arc::new(map) })
}

fn list<'a>(items: impl Iterator<Item = &'a String>) -> Value {
    Value::List(Arc::new(items.map(|s| text(s)).collect()))
}

fn request_value(request: &Request, headers: bool) -> Value {
    let headers = if headers {
        string_map(&request.headers)
    } else {
        map(Vec::new())
    };
    map(vec![
        ("method", text(&request.method)),
        ("host", text(&request.host)),
        ("path", text(&request.path)),
        ("headers", headers),
        ("query", text(request.query.as_deref().unwrap_or_default())),
        (
            "client_ip",
            text(
                &request
                    .client_ip
                    .map(|ip| ip.to_string())
                    .unwrap_or_default(),
            ),
        ),
    ])
}

fn identity_value(identity: Option<&Identity>, claims: bool) -> Value {
    let empty = Vec::new();
    let Some(id) = identity else {
        return map(vec![
            ("authenticated", Value::Bool(false)),
            ("user", text("")),
            ("subject", text("")),
            ("email", text("")),
            ("uid", text("")),
            ("groups", list(empty.iter())),
            ("scopes", list(empty.iter())),
            ("tool", text("")),
            ("kind", text("")),
            ("issuer", text("")),
            ("claims", map(Vec::new())),
        ]);
    };
    let claims = match id.claims.as_deref() {
        Some(members) if claims => object_value(members),
        _ => map(Vec::new()),
    };
    map(vec![
        ("authenticated", Value::Bool(true)),
        ("user", text(id.username.as_deref().unwrap_or(&id.subject))),
        ("subject", text(&id.subject)),
        ("email", text(id.email.as_deref().unwrap_or_default())),
        ("uid", text(id.uid.as_deref().unwrap_or_default())),
        ("groups", list(id.groups.iter())),
        ("scopes", list(id.scopes.iter())),
        ("tool", text(id.tool.as_deref().unwrap_or_default())),
        ("kind", text(id.kind.as_str())),
        ("issuer", text(&id.issuer)),
        ("claims", claims),
    ])
}

/// JSON claims as CEL values: numbers that are whole become `int` (or
/// `uint` above `i64`), others `double`.
fn json_value(value: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match value {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => n
            .as_i64()
            .map(Value::Int)
            .or_else(|| n.as_u64().map(Value::UInt))
            .unwrap_or_else(|| Value::Float(n.as_f64().unwrap_or(f64::NAN))),
        J::String(s) => text(s),
        J::Array(items) => Value::List(Arc::new(items.iter().map(json_value).collect())),
        J::Object(members) => object_value(members),
    }
}

fn object_value(members: &serde_json::Map<String, serde_json::Value>) -> Value {
    let map: HashMap<Key, Value> = members
        .iter()
        .map(|(k, v)| (Key::String(Arc::new(k.clone())), json_value(v)))
        .collect();
    Value::Map(Map { map: Arc::new(map) })
}

#[cfg(test)]
mod tests;
