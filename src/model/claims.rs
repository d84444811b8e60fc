//! Reading identity claims (from a JWT or an OIDC ID token / userinfo)
//! the same way wherever they arrive.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::config::ClaimsConfig;

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

/// The longest identity value (user name, e-mail, uid, one group name)
/// gatehouse carries into a header: a longer one is refused, never cut.
pub const MAX_IDENTITY_VALUE_BYTES: usize = 1024;

/// Why an identity claim cannot be carried upstream as a header value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClaimProblem {
    /// Not a string (or a number, for text claims), or a malformed list.
    #[error("wrong JSON type")]
    WrongType,
    /// An empty string.
    #[error("empty value")]
    Empty,
    /// CR, LF, NUL or another control character.
    #[error("control character")]
    ControlCharacter,
    /// Longer than [`MAX_IDENTITY_VALUE_BYTES`].
    #[error("value too long")]
    TooLong,
}

/// Checks a text identity claim as [`claim_text`] reads it; absent is
/// fine. A value that would be dropped from, or split, a header is a
/// problem to refuse the token for, not to hide.
pub fn check_text_claim(value: Option<&Value>) -> Result<(), ClaimProblem> {
    match value {
        None | Some(Value::Number(_)) => Ok(()),
        Some(Value::String(s)) => check_text(s),
        Some(_) => Err(ClaimProblem::WrongType),
    }
}

/// Checks a groups claim as [`claim_groups`] reads it; absent is fine.
pub fn check_groups_claim(value: Option<&Value>) -> Result<(), ClaimProblem> {
    let items = match value {
        None => return Ok(()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(ClaimProblem::WrongType),
    };
    for item in items {
        let name = match item {
            Value::String(s) => s,
            Value::Object(obj) => match obj.get("name") {
                Some(Value::String(s)) => s,
                _ => return Err(ClaimProblem::WrongType),
            },
            _ => return Err(ClaimProblem::WrongType),
        };
        check_text(name)?;
    }
    Ok(())
}

fn check_text(s: &str) -> Result<(), ClaimProblem> {
    if s.is_empty() {
        Err(ClaimProblem::Empty)
    } else if s.chars().any(char::is_control) {
        Err(ClaimProblem::ControlCharacter)
    } else if s.len() > MAX_IDENTITY_VALUE_BYTES {
        Err(ClaimProblem::TooLong)
    } else {
        Ok(())
    }
}

/// Scopes from `scope` (space-separated) and `scp` (array or string).
pub fn claim_scopes(claims: &Map<String, Value>) -> BTreeSet<String> {
    let mut scopes = BTreeSet::new();
    for name in ["scope", "scp"] {
        match claims.get(name) {
            Some(Value::String(s)) => scopes.extend(s.split_whitespace().map(str::to_string)),
            Some(Value::Array(items)) => scopes.extend(
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .filter(|s| !s.is_empty() && !s.contains(char::is_whitespace))
                    .map(str::to_string),
            ),
            _ => {}
        }
    }
    scopes
}

/// Refuses identity claims that could not be carried upstream as they
/// are: empty, with control characters, too long, or of a wrong type.
/// The error names the claim (never its value).
pub fn check_identity_claims<'a>(
    names: &'a ClaimsConfig,
    claims: &Map<String, Value>,
) -> Result<(), (&'a str, ClaimProblem)> {
    if let Some(sub) = claims.get("sub") {
        match sub {
            Value::String(_) => check_text_claim(Some(sub)),
            _ => Err(ClaimProblem::WrongType),
        }
        .map_err(|problem| ("sub", problem))?;
    }
    for name in [&names.username, &names.email, &names.uid] {
        check_text_claim(claims.get(name)).map_err(|problem| (name.as_str(), problem))?;
    }
    check_groups_claim(claims.get(&names.groups))
        .map_err(|problem| (names.groups.as_str(), problem))
}
