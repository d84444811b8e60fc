//! Path normalization: the one canonical form that policy rules match on.
//!
//! A rule written for `/admin/` must not be bypassed by `//admin/`,
//! `/public/../admin/`, `/%61dmin/` or `/admin%2Fx`. So, before any rule
//! looks at it, a path is either refused or brought into a form in which
//! every request for the same resource is spelled the same way:
//!
//! - escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded,
//!   every other escape is kept with upper-case hex digits (`%3a` → `%3A`);
//! - duplicate slashes are merged;
//! - `.` and `..` segments are removed (RFC 3986 §5.2.4), after decoding;
//!   a trailing `/.` or `/..` leaves a trailing slash.
//!
//! Anything ambiguous between gatehouse and the upstream is refused instead
//! of guessed at: control characters, backslashes, non-ASCII bytes,
//! malformed escapes, encoded slashes, backslashes and control characters,
//! and `..` climbing above the root.

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path is empty.
    #[error("path is empty")]
    Empty,
    /// The path does not start with `/`.
    #[error("path must start with '/'")]
    NotAbsolute,
    /// The path holds a raw control character (NUL, 0x01–0x1F or DEL).
    #[error("path contains a control character")]
    ControlCharacter,
    /// The path holds a raw backslash.
    #[error("path contains a backslash")]
    Backslash,
    /// The path holds a raw non-ASCII character (it must be percent-encoded).
    #[error("path contains a non-ASCII character")]
    NonAscii,
    /// A `%` is not followed by two hexadecimal digits.
    #[error("path contains a malformed percent-encoding")]
    MalformedEscape,
    /// The path holds an encoded slash (`%2F`).
    #[error("path contains an encoded slash (%2F)")]
    EncodedSlash,
    /// The path holds an encoded backslash (`%5C`).
    #[error("path contains an encoded backslash (%5C)")]
    EncodedBackslash,
    /// The path holds an encoded NUL or control character (`%00`–`%1F`, `%7F`).
    #[error("path contains an encoded control character")]
    EncodedControl,
    /// A `..` segment climbs above the root.
    #[error("path escapes the root with '..'")]
    EscapesRoot,
    /// A `.` or `..` segment carries `;` parameters (`/a/..;/b`): servlet
    /// containers treat it as a dot segment, so its meaning is ambiguous.
    #[error("path has a dot segment with ';' parameters")]
    DotSegmentParameter,
}

/// Normalizes the path part of a request target (query and fragment
/// already removed) into the form policy rules match on, or refuses it.
///
/// The result starts with `/`, holds only ASCII, has no empty segment
/// (except that a trailing slash is kept), no `.` or `..` segment, no
/// escape of an unreserved character and no lower-case escape; applying
/// `normalize` to it again returns it unchanged. See the module
/// documentation for the rules.
pub fn normalize(raw: &str) -> Result<String, PathError> {
    let rest = match raw.strip_prefix('/') {
        Some(rest) => rest,
        None if raw.is_empty() => return Err(PathError::Empty),
        None => return Err(PathError::NotAbsolute),
    };

    // The output doubles as the segment stack: it always holds zero or more
    // `/segment` entries, none of them empty, `.` or `..`, until the last
    // segment decides whether a trailing slash remains.
    let mut out = String::with_capacity(raw.len());
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        let start = out.len();
        out.push('/');
        decode_segment(segment, &mut out)?;
        match &out[start + 1..] {
            // `//` merges; a final empty segment is the trailing slash.
            "" => out.truncate(if last { start + 1 } else { start }),
            "." => {
                out.truncate(start);
                if last {
                    out.push('/');
                }
            }
            ".." => {
                out.truncate(start);
                let parent = out.rfind('/').ok_or(PathError::EscapesRoot)?;
                out.truncate(parent);
                if last {
                    out.push('/');
                }
            }
            seg if seg.starts_with(".;") || seg.starts_with("..;") => {
                return Err(PathError::DotSegmentParameter);
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Appends one raw segment (no `/` inside) to `out`, decoding escapes of
/// unreserved characters and upper-casing the others.
fn decode_segment(segment: &str, out: &mut String) -> Result<(), PathError> {
    let bytes = segment.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let (hi, lo) = match (bytes.get(i + 1), bytes.get(i + 2)) {
                    (Some(&hi), Some(&lo)) => (hi, lo),
                    _ => return Err(PathError::MalformedEscape),
                };
                let (Some(h), Some(l)) = (hex_value(hi), hex_value(lo)) else {
                    return Err(PathError::MalformedEscape);
                };
                let decoded = (h << 4) | l;
                match decoded {
                    b'/' => return Err(PathError::EncodedSlash),
                    b'\\' => return Err(PathError::EncodedBackslash),
                    0x00..=0x1f | 0x7f => return Err(PathError::EncodedControl),
                    c if is_unreserved(c) => out.push(char::from(c)),
                    _ => {
                        out.push('%');
                        out.push(char::from(hi.to_ascii_uppercase()));
                        out.push(char::from(lo.to_ascii_uppercase()));
                    }
                }
                i += 3;
            }
            0x00..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
            b'\\' => return Err(PathError::Backslash),
            0x80..=0xff => return Err(PathError::NonAscii),
            _ => {
                out.push(char::from(b));
                i += 1;
            }
        }
    }
    Ok(())
}

/// RFC 3986 `unreserved`: `ALPHA / DIGIT / "-" / "." / "_" / "~"`.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The value of one hexadecimal digit.
fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(raw: &str) -> String {
        match normalize(raw) {
            Ok(out) => out,
            Err(e) => panic!("{raw:?} was refused: {e}"),
        }
    }

    fn err(raw: &str) -> PathError {
        match normalize(raw) {
            Ok(out) => panic!("{raw:?} was accepted as {out:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn plain_paths_are_unchanged() {
        for p in [
            "/",
            "/a",
            "/a/b",
            "/a/b/",
            "/a-b_c~d.e",
            "/v1/items/42",
            "/...",
        ] {
            assert_eq!(ok(p), p);
        }
    }

    #[test]
    fn dot_segments_with_parameters_are_refused() {
        assert_eq!(err("/public/..;/admin"), PathError::DotSegmentParameter);
        assert_eq!(err("/a/.;x=1/b"), PathError::DotSegmentParameter);
        assert_eq!(err("/a/%2e%2e;/b"), PathError::DotSegmentParameter);
        assert_eq!(ok("/a;v=1/b"), "/a;v=1/b");
        assert_eq!(ok("/a/...;/b"), "/a/...;/b");
    }

    #[test]
    fn must_be_absolute() {
        assert_eq!(err(""), PathError::Empty);
        assert_eq!(err("a"), PathError::NotAbsolute);
        assert_eq!(err("a/b"), PathError::NotAbsolute);
        assert_eq!(err("*"), PathError::NotAbsolute);
        assert_eq!(err("http://h/a"), PathError::NotAbsolute);
        assert_eq!(err("%2Fa"), PathError::NotAbsolute);
        assert_eq!(err(" /a"), PathError::NotAbsolute);
    }

    #[test]
    fn merges_duplicate_slashes() {
        assert_eq!(ok("//"), "/");
        assert_eq!(ok("///"), "/");
        assert_eq!(ok("//a"), "/a");
        assert_eq!(ok("/a//b"), "/a/b");
        assert_eq!(ok("/a///b//"), "/a/b/");
        assert_eq!(ok("/a//"), "/a/");
    }

    #[test]
    fn removes_single_dot_segments() {
        assert_eq!(ok("/."), "/");
        assert_eq!(ok("/./"), "/");
        assert_eq!(ok("/./a"), "/a");
        assert_eq!(ok("/a/./b"), "/a/b");
        assert_eq!(ok("/a/."), "/a/");
        assert_eq!(ok("/a/./"), "/a/");
        assert_eq!(ok("/a/././."), "/a/");
        assert_eq!(ok("/a/.//b"), "/a/b");
    }

    #[test]
    fn removes_double_dot_segments() {
        assert_eq!(ok("/a/.."), "/");
        assert_eq!(ok("/a/../"), "/");
        assert_eq!(ok("/a/b/.."), "/a/");
        assert_eq!(ok("/a/b/../"), "/a/");
        assert_eq!(ok("/a/b/../c"), "/a/c");
        assert_eq!(ok("/a/b/../../c"), "/c");
        assert_eq!(ok("/a//b/../c"), "/a/c");
        assert_eq!(ok("/a/b//../c"), "/a/c");
        assert_eq!(ok("/a/./b/./../c/."), "/a/c/");
    }

    #[test]
    fn dots_inside_names_are_not_dot_segments() {
        assert_eq!(ok("/a/.b"), "/a/.b");
        assert_eq!(ok("/a/..b"), "/a/..b");
        assert_eq!(ok("/a/b.."), "/a/b..");
        assert_eq!(ok("/a/.../b"), "/a/.../b");
        assert_eq!(ok("/.well-known/jwks.json"), "/.well-known/jwks.json");
    }

    #[test]
    fn escaping_the_root_is_refused() {
        for p in [
            "/..",
            "/../",
            "/../x",
            "/a/../..",
            "/a/../../x",
            "/./../x",
            "//../x",
            "/a/b/../../../x",
            "/%2e%2e/x",
            "/%2E%2E",
            "/.%2e/x",
            "/%2e./x",
            "/a/%2e%2e/%2e%2e/etc/passwd",
        ] {
            assert_eq!(err(p), PathError::EscapesRoot, "{p}");
        }
    }

    #[test]
    fn encoded_dots_are_dot_segments() {
        assert_eq!(ok("/a/%2e"), "/a/");
        assert_eq!(ok("/a/%2E/b"), "/a/b");
        assert_eq!(ok("/a/b/%2e%2e"), "/a/");
        assert_eq!(ok("/a/b/%2e%2E/c"), "/a/c");
        assert_eq!(ok("/a/%2e%2e%2e"), "/a/...");
    }

    #[test]
    fn decodes_only_unreserved_escapes() {
        assert_eq!(ok("/%61dmin"), "/admin");
        assert_eq!(ok("/%41%5a%30%39"), "/AZ09");
        assert_eq!(ok("/%2D%2e%5F%7E"), "/-._~");
        assert_eq!(ok("/a%3ab"), "/a%3Ab");
        assert_eq!(ok("/a%3Ab"), "/a%3Ab");
        assert_eq!(ok("/%20"), "/%20");
        assert_eq!(ok("/%25"), "/%25");
        assert_eq!(ok("/%252F"), "/%252F");
        assert_eq!(ok("/%3f%23"), "/%3F%23");
        assert_eq!(ok("/caf%c3%a9"), "/caf%C3%A9");
        assert_eq!(ok("/%ff"), "/%FF");
        assert_eq!(ok("/%80"), "/%80");
    }

    #[test]
    fn other_raw_characters_are_kept() {
        assert_eq!(ok("/a:b@c"), "/a:b@c");
        assert_eq!(ok("/a;b=c,d"), "/a;b=c,d");
        assert_eq!(ok("/!$&'()*+"), "/!$&'()*+");
        assert_eq!(ok("/a b"), "/a b");
    }

    #[test]
    fn malformed_escapes_are_refused() {
        for p in [
            "/%", "/%2", "/a%", "/a%g0", "/%0g", "/%%", "/%-1", "/%+1", "/% 1", "/%2/",
        ] {
            assert_eq!(err(p), PathError::MalformedEscape, "{p}");
        }
        // A multi-byte character right after `%` is malformed, not a panic.
        assert_eq!(err("/%é"), PathError::MalformedEscape);
        assert_eq!(err("/%aé"), PathError::MalformedEscape);
    }

    #[test]
    fn encoded_separators_are_refused() {
        assert_eq!(err("/a%2Fb"), PathError::EncodedSlash);
        assert_eq!(err("/a%2fb"), PathError::EncodedSlash);
        assert_eq!(err("/%2F"), PathError::EncodedSlash);
        assert_eq!(err("/a%5Cb"), PathError::EncodedBackslash);
        assert_eq!(err("/a%5cb"), PathError::EncodedBackslash);
    }

    #[test]
    fn control_characters_are_refused() {
        assert_eq!(err("/a\0b"), PathError::ControlCharacter);
        assert_eq!(err("/a\tb"), PathError::ControlCharacter);
        assert_eq!(err("/a\nb"), PathError::ControlCharacter);
        assert_eq!(err("/a\rb"), PathError::ControlCharacter);
        assert_eq!(err("/a\x1fb"), PathError::ControlCharacter);
        assert_eq!(err("/a\x7fb"), PathError::ControlCharacter);
        for p in [
            "/%00", "/a%0A", "/%0d%0a", "/%1F", "/%1f", "/%7F", "/%7f", "/%09",
        ] {
            assert_eq!(err(p), PathError::EncodedControl, "{p}");
        }
    }

    #[test]
    fn backslashes_and_non_ascii_are_refused() {
        assert_eq!(err("/a\\b"), PathError::Backslash);
        assert_eq!(err("/..\\x"), PathError::Backslash);
        assert_eq!(err("/café"), PathError::NonAscii);
        assert_eq!(err("/\u{2215}etc"), PathError::NonAscii);
        assert_eq!(err("/\u{feff}"), PathError::NonAscii);
    }

    #[test]
    fn errors_read_well() {
        assert_eq!(
            PathError::EncodedSlash.to_string(),
            "path contains an encoded slash (%2F)"
        );
        assert_eq!(
            PathError::EscapesRoot.to_string(),
            "path escapes the root with '..'"
        );
    }

    /// Characters that exercise every branch of the normalizer.
    fn path_like() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            4 => Just("/".to_string()),
            2 => Just("//".to_string()),
            3 => Just(".".to_string()),
            3 => Just("..".to_string()),
            2 => Just("/./".to_string()),
            2 => Just("/../".to_string()),
            2 => Just("%2e".to_string()),
            2 => Just("%2E%2e".to_string()),
            4 => "%[0-9a-fA-F]{2}",
            8 => "[a-zA-Z0-9_~!$&'()*+,;=:@ -]{1,3}",
            1 => "%[0-9a-zA-Z%]{0,2}",
            1 => "[\\x00-\\x7f]",
            1 => "[\\\\é]",
        ];
        (
            prop::bool::weighted(0.9),
            prop::collection::vec(piece, 0..24),
        )
            .prop_map(|(slash, pieces)| {
                let mut s = if slash {
                    "/".to_string()
                } else {
                    String::new()
                };
                s.extend(pieces);
                s
            })
    }

    fn check_output(raw: &str, out: &str) -> Result<(), TestCaseError> {
        prop_assert!(out.starts_with('/'), "{raw:?} -> {out:?}");
        prop_assert!(out.is_ascii(), "{raw:?} -> {out:?}");
        prop_assert!(!out.contains("//"), "{raw:?} -> {out:?}");
        prop_assert!(
            !out.bytes().any(|b| b.is_ascii_control() || b == b'\\'),
            "{raw:?} -> {out:?}"
        );
        for segment in out.split('/') {
            prop_assert!(segment != "." && segment != "..", "{raw:?} -> {out:?}");
        }
        let upper = out.to_ascii_uppercase();
        prop_assert!(!upper.contains("%2F"), "{raw:?} -> {out:?}");
        prop_assert!(!upper.contains("%5C"), "{raw:?} -> {out:?}");
        prop_assert_eq!(
            normalize(out),
            Ok(out.to_string()),
            "not idempotent on {:?}",
            raw
        );
        Ok(())
    }

    /// A deliberately naive second implementation: decode, then walk a
    /// stack of segments. `normalize` must accept exactly what it accepts
    /// and produce the same result.
    fn model(raw: &str) -> Option<String> {
        fn decode(seg: &str) -> Option<String> {
            let mut out = String::new();
            let mut chars = seg.chars();
            while let Some(c) = chars.next() {
                if c == '%' {
                    let hex: String = chars.by_ref().take(2).collect();
                    let v = (hex.len() == 2)
                        .then(|| u8::from_str_radix(&hex, 16).ok())
                        .flatten()?;
                    if hex.starts_with(['+', '-']) || v == b'/' || v == b'\\' {
                        return None;
                    }
                    if v < 0x20 || v == 0x7f {
                        return None;
                    }
                    if v.is_ascii_alphanumeric() || "-._~".contains(char::from(v)) {
                        out.push(char::from(v));
                    } else {
                        out.push_str(&format!("%{v:02X}"));
                    }
                } else if c.is_ascii_control() || c == '\\' || !c.is_ascii() {
                    return None;
                } else {
                    out.push(c);
                }
            }
            Some(out)
        }
        let segments: Vec<&str> = raw.strip_prefix('/')?.split('/').collect();
        let mut stack: Vec<String> = Vec::new();
        for (i, seg) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            let d = decode(seg)?;
            match d.as_str() {
                "" | "." => {}
                ".." => {
                    stack.pop()?;
                }
                s if s.starts_with(".;") || s.starts_with("..;") => return None,
                _ => {
                    stack.push(d);
                    continue;
                }
            }
            if last {
                stack.push(String::new());
            }
        }
        Some(stack.iter().map(|s| format!("/{s}")).collect())
    }

    proptest! {
        #[test]
        fn arbitrary_strings_never_panic(raw in any::<String>()) {
            if let Ok(out) = normalize(&raw) {
                check_output(&raw, &out)?;
            }
        }

        #[test]
        fn path_like_strings_normalize_cleanly(raw in path_like()) {
            if let Ok(out) = normalize(&raw) {
                check_output(&raw, &out)?;
            }
        }

        #[test]
        fn agrees_with_a_naive_model(raw in path_like()) {
            prop_assert_eq!(normalize(&raw).ok(), model(&raw), "on {:?}", raw);
        }

        #[test]
        fn prefixing_a_slash_never_breaks_a_valid_path(raw in path_like()) {
            // `//x` and `/x` are the same resource once slashes merge.
            if let Ok(out) = normalize(&raw) {
                prop_assert_eq!(normalize(&format!("/{raw}")), Ok(out));
            }
        }
    }
}
