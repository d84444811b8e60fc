use std::collections::BTreeSet;
use std::time::Duration as StdDuration;

use super::*;
use crate::config::MintGrantConfig;
use crate::model::identity::CredentialKind;

const NOW: u64 = 1_700_000_000;

fn policy() -> LinkPolicy {
    let cfg = LinksConfig {
        max_duration: StdDuration::from_secs(2 * 3600),
        max_start_delay: StdDuration::from_secs(86400),
        cookie: None,
        mint: vec![
            MintGrantConfig {
                scope: "links:k8s".into(),
                prefixes: vec!["/api".into(), "/apis/".into()],
            },
            MintGrantConfig {
                scope: "links:all".into(),
                prefixes: vec!["/".into()],
            },
        ],
    };
    LinkPolicy::build(&cfg, &["gh".into(), "other".into()]).expect("valid")
}

fn caller(scopes: &[&str]) -> Identity {
    Identity {
        subject: "s".into(),
        username: None,
        email: None,
        uid: None,
        groups: vec![],
        scopes: scopes
            .iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>(),
        kind: CredentialKind::Jwt,
        issuer: "i".into(),
        expires_at: None,
        token: Secret::new("t"),
        query_parameter: None,
        tool: None,
        grant: None,
        csrf: None,
        claims: None,
    }
}

fn req(urls: &[&str]) -> LinkRequest {
    LinkRequest {
        urls: urls.iter().map(|u| u.to_string()).collect(),
        ..LinkRequest::default()
    }
}

fn grant_for(request: &LinkRequest, scopes: &[&str]) -> Result<LinkGrant, MintError> {
    let p = policy();
    let id = caller(scopes);
    let allowed = p.allowed_prefixes(&id)?;
    p.grant(request, Some(&allowed), NOW)
}

#[test]
fn kube_gateway_defaults() {
    let g = grant_for(&req(&["/api/v1/pods"]), &["links:k8s"]).expect("mints");
    assert_eq!(g.verbs, vec!["get"]);
    assert_eq!(g.not_before, Some(NOW));
    assert_eq!(g.expires_at, NOW + DEFAULT_DURATION_SECS);
    assert!(!g.once);
    assert_eq!(policy().cookie(), Some("gh"));
}

#[test]
fn body_fields_parse() {
    let body = r#"{"URLs": ["/api/*", "/apis/apps/v1"], "verbs": ["get", "POST", "get"],
                   "duration": "30m", "from": "2023-11-14T22:13:20Z", "once": true}"#;
    let request: LinkRequest = serde_json::from_str(body).expect("parses");
    let g = grant_for(&request, &["links:k8s"]).expect("mints");
    assert_eq!(g.verbs, vec!["get", "post"]);
    assert_eq!(g.not_before, Some(1_700_000_000));
    assert_eq!(g.expires_at, 1_700_000_000 + 1800);
    assert!(g.once);
    for bad in [
        r#"{"verbs": ["get"]}"#,
        r#"{"URLs": "/a"}"#,
        r#"{"URLs": ["/a"], "url": 1}"#,
        r#"{"URLs": ["/a"], "duration": 30}"#,
        r#"[]"#,
    ] {
        assert!(serde_json::from_str::<LinkRequest>(bad).is_err(), "{bad}");
    }
}

#[test]
fn who_may_mint_what() {
    assert_eq!(
        grant_for(&req(&["/api/x"]), &["read"]).unwrap_err(),
        MintError::NoMintScope("links:all links:k8s".into())
    );
    // `/api` covers /api and below, never /apis… by accident.
    assert!(grant_for(&req(&["/api"]), &["links:k8s"]).is_ok());
    assert!(grant_for(&req(&["/api/*"]), &["links:k8s"]).is_ok());
    assert!(grant_for(&req(&["/apis/x"]), &["links:k8s"]).is_ok());
    for outside in ["/apix", "/api*", "/ap*", "/*", "/", "/other/x"] {
        assert_eq!(
            grant_for(&req(&[outside]), &["links:k8s"]).unwrap_err(),
            MintError::OutsidePrefixes(outside.into()),
            "{outside}"
        );
    }
    // `/` covers everything.
    assert!(grant_for(&req(&["/*"]), &["links:all"]).is_ok());
    // One URL outside is enough to refuse.
    let err = grant_for(&req(&["/api/x", "/etc/x"]), &["links:k8s"]).unwrap_err();
    assert_eq!(err.http_status(), 403);
    // A link never mints.
    let mut link = caller(&["links:all"]);
    link.grant = Some(std::sync::Arc::new(
        grant_for(&req(&["/x"]), &["links:all"]).expect("mints"),
    ));
    assert_eq!(
        policy().allowed_prefixes(&link).unwrap_err(),
        MintError::LinkCannotMint
    );
}

#[test]
fn durations_and_windows() {
    let with = |duration: Option<&str>, from: Option<&str>| {
        let mut r = req(&["/x"]);
        r.duration = duration.map(str::to_string);
        r.from = from.map(str::to_string);
        grant_for(&r, &["links:all"])
    };
    assert!(with(Some("2h"), None).is_ok());
    let too_long = with(Some("2h1s"), None).unwrap_err();
    assert_eq!(too_long, MintError::TooLong { max: "2h".into() });
    assert_eq!(too_long.http_status(), 400);
    assert!(matches!(
        with(Some("soon"), None),
        Err(MintError::Invalid(_))
    ));
    assert!(matches!(
        with(Some("-5m"), None),
        Err(MintError::Invalid(_))
    ));
    assert!(matches!(
        with(None, Some("tomorrow")),
        Err(MintError::Invalid(_))
    ));
    // Starting in the future: fine within max_start_delay (1 day).
    let g = with(Some("10m"), Some("2023-11-15T10:00:00Z")).expect("mints");
    assert_eq!(g.expires_at - g.not_before.expect("nbf"), 600);
    assert!(matches!(
        with(None, Some("2023-11-16T22:13:21Z")),
        Err(MintError::Invalid(_))
    ));
    // Started in the past: fine while still valid, refused once over.
    assert!(with(Some("1h"), Some("2023-11-14T21:30:00Z")).is_ok());
    let over = with(Some("1h"), Some("2023-11-14T21:13:20Z")).unwrap_err();
    assert!(over.to_string().contains("never be valid"), "{over}");
}

#[test]
fn urls_and_verbs_are_validated() {
    let err = |r: LinkRequest| grant_for(&r, &["links:all"]).unwrap_err();
    assert!(matches!(err(req(&[])), MintError::Invalid(_)));
    assert!(matches!(err(req(&["x"])), MintError::Invalid(_)));
    assert!(matches!(err(req(&["/a/../b"])), MintError::Invalid(_)));
    assert!(matches!(
        err(req(&vec!["/x"; MAX_ENTRIES + 1])),
        MintError::Invalid(_)
    ));
    let mut r = req(&["/x"]);
    r.verbs = Some(vec![]);
    assert!(matches!(err(r.clone()), MintError::Invalid(_)));
    r.verbs = Some(vec!["get me".into()]);
    assert!(matches!(err(r), MintError::Invalid(_)));
}

#[test]
fn bad_cookie_configuration_is_refused() {
    let cfg = LinksConfig {
        cookie: Some("nope".into()),
        ..LinksConfig::default()
    };
    let err = LinkPolicy::build(&cfg, &["gh".into()]).unwrap_err();
    assert!(err.to_string().contains("issuer.links.cookie"), "{err}");
    let p = LinkPolicy::build(&LinksConfig::default(), &[]).expect("valid");
    assert_eq!(p.cookie(), None);
    assert_eq!(
        p.allowed_prefixes(&caller(&["x"])).unwrap_err(),
        MintError::NoMintScope("(none configured)".into())
    );
}
