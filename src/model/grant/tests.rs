use serde_json::json;

use super::*;

fn claims(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => panic!("object expected"),
    }
}

fn grant(urls: &[&str], verbs: &[&str]) -> LinkGrant {
    LinkGrant::from_claims(&claims(
        json!({"URLs": urls, "verbs": verbs, "exp": 4_000_000_000u64}),
    ))
    .expect("valid")
    .expect("a link")
}

#[test]
fn patterns_parse_in_normalized_form_only() {
    assert_eq!(
        UrlPattern::parse("/api/v1/pods"),
        Ok(UrlPattern::Exact("/api/v1/pods".into()))
    );
    assert_eq!(
        UrlPattern::parse("/api/*"),
        Ok(UrlPattern::Prefix("/api/".into()))
    );
    assert_eq!(UrlPattern::parse("/*"), Ok(UrlPattern::Prefix("/".into())));
    for bad in [
        "", "*", "api/x", "/a/*/b", "/a**", "/a?x=1", "/a#f", "/a/../b", "/a//b", "/%61", "/a%2Fb",
        "/a\\b", "/a/./b", "/\u{1}",
    ] {
        assert!(UrlPattern::parse(bad).is_err(), "{bad:?}");
    }
    assert!(UrlPattern::parse(&format!("/{}", "a".repeat(MAX_URL_LEN))).is_err());
    let p = UrlPattern::parse("/apis*").expect("valid");
    assert_eq!(p.to_claim(), "/apis*");
    assert_eq!(p.base(), "/apis");
}

#[test]
fn exact_and_prefix_matching() {
    let g = grant(&["/api/v1/pods", "/apis/*"], &["get"]);
    assert_eq!(g.check("GET", "/api/v1/pods"), Ok(()));
    assert_eq!(g.check("GET", "/api/v1/pods/x"), Err(NotGranted::Path));
    assert_eq!(g.check("GET", "/api/v1/pod"), Err(NotGranted::Path));
    assert_eq!(g.check("GET", "/apis/"), Ok(()));
    assert_eq!(g.check("GET", "/apis/apps/v1"), Ok(()));
    assert_eq!(g.check("GET", "/apis"), Err(NotGranted::Path));
    assert_eq!(g.check("GET", "/apisx"), Err(NotGranted::Path));
}

#[test]
fn verbs_and_head() {
    let g = grant(&["/x"], &["get", "POST"]);
    assert_eq!(g.verbs, vec!["get", "post"]);
    assert_eq!(g.check("GET", "/x"), Ok(()));
    assert_eq!(g.check("HEAD", "/x"), Ok(()));
    assert_eq!(g.check("post", "/x"), Ok(()));
    assert_eq!(g.check("DELETE", "/x"), Err(NotGranted::Verb));
    let g = grant(&["/x"], &["post"]);
    assert_eq!(g.check("HEAD", "/x"), Err(NotGranted::Verb));
    assert_eq!(g.check("GET", "/x"), Err(NotGranted::Verb));
    let g = grant(&["/x"], &["head"]);
    assert_eq!(g.check("GET", "/x"), Err(NotGranted::Verb));
}

#[test]
fn claims_without_urls_are_not_links() {
    assert_eq!(
        LinkGrant::from_claims(&claims(json!({"sub": "a", "exp": 1}))),
        Ok(None)
    );
}

#[test]
fn defaults_and_round_trip() {
    let g = LinkGrant::from_claims(&claims(
        json!({"URLs": ["/a/*"], "exp": 10, "nbf": 5, "jti": "j", "once": true}),
    ))
    .expect("valid")
    .expect("link");
    assert_eq!(g.verbs, vec!["get"]);
    assert!(g.once);
    assert_eq!((g.not_before, g.expires_at), (Some(5), 10));
    let mut out = Map::new();
    g.to_claims(&mut out);
    assert_eq!(
        Value::Object(out),
        json!({"URLs": ["/a/*"], "verbs": ["get"], "once": true})
    );
}

#[test]
fn malformed_link_claims_are_refused() {
    for bad in [
        json!({"URLs": "/a", "exp": 10}),
        json!({"URLs": [], "exp": 10}),
        json!({"URLs": [1], "exp": 10}),
        json!({"URLs": ["a"], "exp": 10}),
        json!({"URLs": ["/a"], "verbs": [], "exp": 10}),
        json!({"URLs": ["/a"], "verbs": ["g e t"], "exp": 10}),
        json!({"URLs": ["/a"], "verbs": "get", "exp": 10}),
        json!({"URLs": ["/a"], "once": "yes", "exp": 10, "jti": "j"}),
        json!({"URLs": ["/a"], "once": true, "exp": 10}),
        json!({"URLs": ["/a"], "jti": "", "exp": 10}),
        json!({"URLs": ["/a"]}),
        json!({"URLs": vec!["/a"; MAX_ENTRIES + 1], "exp": 10}),
    ] {
        assert!(
            LinkGrant::from_claims(&claims(bad.clone())).is_err(),
            "{bad}"
        );
    }
}
