//! Reading identity claims (from a JWT or an OIDC ID token / userinfo)
//! the same way wherever they arrive.

use serde_json::Value;

/// A claim as text: strings as they are, numbers printed.
pub fn claim_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Groups: an array of strings, or of objects with a `name` (Gafaelfawr's
/// `isMemberOf`); empty names dropped.
pub fn claim_groups(value: Option<&Value>) -> Vec<String> {
    let Some(Value::Array(items)) = value else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| match item {
            Value::String(s) => Some(s.clone()),
            Value::Object(obj) => obj.get("name").and_then(Value::as_str).map(str::to_string),
            _ => None,
        })
        .filter(|g| !g.is_empty())
        .collect()
}
