//! Link grant URL patterns (`model::grant`): `UrlPattern::parse` on the
//! raw text, and, when the input is a JSON object, the whole grant from
//! claims (`LinkGrant::from_claims`) and its `check`.
//!
//! Properties: an accepted pattern is in normalized form, prints back as
//! the text it came from, and an exact pattern matches its own path; a
//! grant written back into claims (`to_claims`) reads back as the same
//! grant.
#![no_main]

use gatehouse::model::grant::{LinkGrant, UrlPattern};
use gatehouse::model::path::normalize;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(pattern) = UrlPattern::parse(text) {
        assert_eq!(pattern.to_claim(), text);
        assert_eq!(
            UrlPattern::parse(&pattern.to_claim()).as_ref(),
            Ok(&pattern)
        );
        assert_eq!(normalize(pattern.base()).as_deref(), Ok(pattern.base()));
        if let UrlPattern::Exact(path) = &pattern {
            assert!(pattern.matches(path));
        }
    }

    let Ok(claims) = serde_json::from_str::<Map<String, Value>>(text) else {
        return;
    };
    let Ok(Some(grant)) = LinkGrant::from_claims(&claims) else {
        return;
    };
    let mut written = claims.clone();
    grant.to_claims(&mut written);
    assert_eq!(
        LinkGrant::from_claims(&written),
        Ok(Some(grant.clone())),
        "to_claims does not read back"
    );
    for url in &grant.urls {
        for verb in &grant.verbs {
            assert!(grant.check(verb, url.base()).is_ok());
        }
        let _ = grant.check("HEAD", url.base());
    }
    if let Some(method) = claims.get("method").and_then(Value::as_str) {
        let _ = grant.check(method, "/");
    }
});
