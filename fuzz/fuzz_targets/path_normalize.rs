//! Path normalization (`model::path::normalize`), the form every policy
//! rule matches on. Properties: the result is absolute, ASCII, without
//! `//`, `.` or `..` segments, and normalizing it again returns it
//! unchanged (idempotence).
#![no_main]

use gatehouse::model::path::normalize;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(path) = normalize(raw) else {
        return;
    };
    assert!(path.starts_with('/'), "{path:?} is not absolute");
    assert!(path.is_ascii(), "{path:?} is not ASCII");
    assert!(!path.contains("//"), "{path:?} has an empty segment");
    let segments: Vec<&str> = path.split('/').collect();
    assert!(
        !segments.iter().any(|s| *s == "." || *s == ".."),
        "{path:?} has a dot segment"
    );
    assert_eq!(
        normalize(&path).as_deref(),
        Ok(path.as_str()),
        "normalize is not idempotent on {raw:?}"
    );
});
