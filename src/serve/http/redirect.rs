//! The `then` target of `/auth/jwt/set`: only a relative, same-origin
//! path, so the hand-off can never be turned into an open redirect.
//!
//! Browsers resolve `//evil.example` and `/\evil.example` to another
//! host, strip tabs and newlines before resolving, and some servers decode
//! `%2F` or `%5C` before redirecting again. So the target must start with
//! exactly one `/`, contain only visible ASCII and no backslash, and its
//! path must pass gatehouse's path normalization (which refuses encoded
//! slashes, backslashes and control characters); the normalized path is
//! what the `Location` header carries.

use crate::model::path;

/// Longest accepted target.
const MAX_LEN: usize = 2048;

/// The `Location` for `then`, or why it is refused.
pub fn safe_location(then: &str) -> Result<String, String> {
    if then.is_empty() {
        return Ok("/".into());
    }
    if then.len() > MAX_LEN {
        return Err(format!("then is longer than {MAX_LEN} characters"));
    }
    if !then.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("then must be visible ASCII without spaces or control characters".into());
    }
    if then.contains('\\') {
        return Err("then must not contain a backslash".into());
    }
    if !then.starts_with('/') || then.starts_with("//") {
        return Err("then must be a path on this site, starting with a single '/'".into());
    }
    let split = then.find(['?', '#']).unwrap_or(then.len());
    let (raw_path, rest) = then.split_at(split);
    let normalized = path::normalize(raw_path).map_err(|e| format!("then: {e}"))?;
    if normalized.starts_with("//") {
        return Err("then must be a path on this site".into());
    }
    Ok(format!("{normalized}{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_origin_paths_pass() {
        assert_eq!(safe_location(""), Ok("/".into()));
        assert_eq!(safe_location("/"), Ok("/".into()));
        assert_eq!(
            safe_location("/apis/x/vnc?name=vm&ns=default#top"),
            Ok("/apis/x/vnc?name=vm&ns=default#top".into())
        );
        assert_eq!(safe_location("/a/./b/../c"), Ok("/a/c".into()));
        assert_eq!(
            safe_location("/.//evil.example"),
            Ok("/evil.example".into())
        );
        assert_eq!(safe_location("/x?next=//evil"), Ok("/x?next=//evil".into()));
    }

    #[test]
    fn open_redirects_are_refused() {
        for bad in [
            "https://evil.example/",
            "http:evil.example",
            "//evil.example",
            "///evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            " /x",
            "evil.example",
            "javascript:alert(1)",
            "/%2F%2Fevil.example",
            "/%2f/evil.example",
            "/%5Cevil.example",
            "/%09/evil.example",
            "/../x",
            "/a/..;/b",
            "/é",
        ] {
            assert!(safe_location(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(safe_location(&format!("/{}", "a".repeat(MAX_LEN))).is_err());
    }
}
