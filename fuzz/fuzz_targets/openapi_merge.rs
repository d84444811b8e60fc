//! The OpenAPI merge input (`gatehouse openapi merge` and the side port's
//! `/openapi.json`): backend documents as fetched, parsed as JSON or YAML
//! (`ops::openapi::parse_document`), then merged (`merge::merge`: 3.0 →
//! 3.1 upgrade, component renames, `$ref` rewriting, operationIds).
//!
//! Input: up to three documents separated by NUL bytes, mounted at
//! `/builds`, `/jobs` and the root. Properties: the merge is deterministic
//! and an accepted result is an OpenAPI 3.1 object that serializes.
#![no_main]

use gatehouse::config::SecuritySchemeConfig;
use gatehouse::ops::openapi::merge::{Backend, Settings, merge};
use gatehouse::ops::openapi::parse_document;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const MOUNTS: [(&str, &str); 3] = [("builds", "/builds"), ("jobs", "/jobs"), ("root", "")];

fuzz_target!(|data: &[u8]| {
    let mut backends = Vec::new();
    for (part, (name, mount)) in data.split(|&b| b == 0).zip(MOUNTS) {
        let Ok(text) = std::str::from_utf8(part) else {
            return;
        };
        let Ok(document) = parse_document(text) else {
            return;
        };
        backends.push(Backend {
            name: name.into(),
            mount: mount.into(),
            document,
        });
    }
    let settings = Settings {
        title: "Fuzz".into(),
        version: "1".into(),
        description: None,
        servers: vec!["https://api.example.org".into()],
        security: vec![
            SecuritySchemeConfig::MutualTls,
            SecuritySchemeConfig::Bearer,
        ],
    };
    let first = merge(backends.clone(), &settings);
    let second = merge(backends, &settings);
    match (&first, &second) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "merge is not deterministic"),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        _ => panic!("merge is not deterministic: {first:?} vs {second:?}"),
    }
    if let Ok(merged) = first {
        let version = merged.get("openapi").and_then(Value::as_str).unwrap_or("");
        assert!(
            version.starts_with("3.1"),
            "merged document says openapi {version:?}"
        );
        serde_json::to_string(&merged).expect("the merged document serializes");
    }
});
