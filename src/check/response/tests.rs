use std::collections::BTreeSet;
use std::sync::Arc;

use super::*;
use crate::config::{AuthType, Satisfy};
use crate::model::identity::CredentialKind;
use crate::secret::Secret;

/// The whole identity part of an allow, rendered for Envoy.
fn allow(
    request: &Request,
    requirement: &Requirement,
    identity: Option<&Identity>,
) -> CheckResponse {
    let tool = identity.and_then(|i| i.tool.as_deref());
    render_allow(plan(request, requirement, identity, tool))
}

fn requirement(headers: &[IdentityHeader]) -> Requirement {
    Requirement {
        rule: "r".into(),
        access: Access::Authenticated {
            scopes: Arc::from(vec!["read".to_string(), "write".to_string()]),
            satisfy: Satisfy::Any,
        },
        auth_type: AuthType::Bearer,
        headers: headers.into(),
        credentials: crate::model::identity::AcceptedCredentials::ALL,
        tool: None,
        login: None,
        condition: None,
    }
}

fn identity() -> Identity {
    Identity {
        subject: "sub-1".into(),
        username: Some("alice".into()),
        email: Some("alice@example.com".into()),
        uid: Some("1001".into()),
        groups: vec!["g1".into(), "g2".into()],
        scopes: BTreeSet::from(["write".to_string(), "admin".to_string()]),
        kind: CredentialKind::Jwt,
        issuer: "i".into(),
        expires_at: None,
        token: Secret::new("the.jwt.value"),
        query_parameter: None,
        tool: None,
        grant: None,
        csrf: None,
        claims: None,
    }
}

fn request(headers: &[(&str, &str)]) -> Request {
    Request {
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        client_ip: Some("203.0.113.5".parse().unwrap()),
        ..Default::default()
    }
}

fn ok_parts(resp: &CheckResponse) -> (Vec<(String, String)>, Vec<String>) {
    assert_eq!(resp.status.as_ref().unwrap().code, 0);
    let Some(HttpResponse::OkResponse(ok)) = &resp.http_response else {
        panic!("not an ok response");
    };
    for h in &ok.headers {
        assert_eq!(
            h.append_action,
            HeaderAppendAction::OverwriteIfExistsOrAdd as i32
        );
    }
    let set = ok
        .headers
        .iter()
        .map(|h| {
            let h = h.header.as_ref().unwrap();
            (h.key.clone(), h.value.clone())
        })
        .collect();
    (set, ok.headers_to_remove.clone())
}

fn value<'a>(set: &'a [(String, String)], name: &str) -> Option<&'a str> {
    set.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[test]
fn allow_sets_identity_headers() {
    let all = [
        IdentityHeader::User,
        IdentityHeader::Email,
        IdentityHeader::Uid,
        IdentityHeader::Groups,
        IdentityHeader::Scopes,
        IdentityHeader::ClientIp,
        IdentityHeader::Token,
    ];
    let resp = allow(&request(&[]), &requirement(&all), Some(&identity()));
    let (set, removed) = ok_parts(&resp);
    assert_eq!(value(&set, "x-auth-request-user"), Some("alice"));
    assert_eq!(
        value(&set, "x-auth-request-email"),
        Some("alice@example.com")
    );
    assert_eq!(value(&set, "x-auth-request-uid"), Some("1001"));
    assert_eq!(value(&set, "x-auth-request-groups"), Some("g1,g2"));
    assert_eq!(
        value(&set, "x-auth-request-token-scopes"),
        Some("admin write")
    );
    assert_eq!(
        value(&set, "x-auth-request-token-scopes-accepted"),
        Some("read write")
    );
    assert_eq!(
        value(&set, "x-auth-request-token-scopes-satisfy"),
        Some("any")
    );
    assert_eq!(value(&set, "x-auth-request-client-ip"), Some("203.0.113.5"));
    assert_eq!(value(&set, "x-auth-request-token"), Some("the.jwt.value"));
    assert!(removed.is_empty());
}

#[test]
fn spoofed_identity_headers_are_removed_or_overwritten() {
    let req = request(&[
        ("x-auth-request-user", "mallory"),
        ("x-auth-request-token", "forged"),
        ("x-auth-request-foo", "bar"),
        ("x-other", "kept"),
    ]);
    let resp = allow(
        &req,
        &requirement(&[IdentityHeader::User]),
        Some(&identity()),
    );
    let (set, mut removed) = ok_parts(&resp);
    removed.sort();
    assert_eq!(value(&set, "x-auth-request-user"), Some("alice"));
    assert_eq!(removed, vec!["x-auth-request-foo", "x-auth-request-token"]);
}

#[test]
fn token_only_when_opted_in_and_unsafe_values_dropped() {
    let mut id = identity();
    id.email = Some("evil\r\nx-injected: 1".into());
    let resp = allow(
        &request(&[]),
        &requirement(&IdentityHeader::default_set()),
        Some(&id),
    );
    let (set, _) = ok_parts(&resp);
    assert_eq!(value(&set, "x-auth-request-token"), None);
    assert_eq!(value(&set, "x-auth-request-email"), None);
    assert_eq!(value(&set, "x-auth-request-user"), Some("alice"));
}

fn denied(resp: &CheckResponse) -> (&DeniedHttpResponse, i32) {
    let Some(HttpResponse::DeniedResponse(d)) = &resp.http_response else {
        panic!("not a denial");
    };
    (d, resp.status.as_ref().unwrap().code)
}

fn header<'a>(d: &'a DeniedHttpResponse, name: &str) -> Option<&'a str> {
    d.headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .find(|h| h.key == name)
        .map(|h| h.value.as_str())
}

#[test]
fn deny_no_credential_has_bare_challenge() {
    let resp = deny(
        &Deny::NoCredential {
            auth_type: AuthType::Bearer,
        },
        "r\"x",
    );
    let (d, code) = denied(&resp);
    assert_eq!(code, 16);
    assert_eq!(d.status.as_ref().unwrap().code, 401);
    assert_eq!(
        header(d, "www-authenticate"),
        Some(r#"Bearer realm="r\"x""#)
    );
    assert_eq!(header(d, "cache-control"), Some("no-cache, no-store"));
    let body: serde_json::Value = serde_json::from_str(&d.body).unwrap();
    assert_eq!(body["error"], "unauthorized");
}

#[test]
fn deny_invalid_token_and_basic() {
    let resp = deny(
        &Deny::InvalidToken {
            reason: "token has expired".into(),
            auth_type: AuthType::Bearer,
        },
        "gh",
    );
    let (d, _) = denied(&resp);
    assert_eq!(
        header(d, "www-authenticate"),
        Some(
            r#"Bearer realm="gh", error="invalid_token", error_description="invalid token: token has expired""#
        )
    );
    let resp = deny(
        &Deny::NoCredential {
            auth_type: AuthType::Basic,
        },
        "gh",
    );
    assert_eq!(
        header(denied(&resp).0, "www-authenticate"),
        Some(r#"Basic realm="gh""#)
    );
}

#[test]
fn deny_insufficient_scope_is_403_no_store() {
    let resp = deny(
        &Deny::InsufficientScope {
            scopes: vec!["a".into(), "b".into()],
            satisfy: Satisfy::All,
        },
        "gh",
    );
    let (d, code) = denied(&resp);
    assert_eq!(code, 7);
    assert_eq!(d.status.as_ref().unwrap().code, 403);
    let challenge = header(d, "www-authenticate").unwrap();
    assert!(
        challenge.contains(r#"error="insufficient_scope""#),
        "{challenge}"
    );
    assert!(challenge.ends_with(r#"scope="a b""#), "{challenge}");
    assert!(header(d, "cache-control").unwrap().contains("no-store"));
    let body: serde_json::Value = serde_json::from_str(&d.body).unwrap();
    assert_eq!(body["error"], "insufficient_scope");
}

#[test]
fn deny_bad_request_has_no_challenge() {
    let resp = deny(&Deny::BadRequest("encoded slash".into()), "gh");
    let (d, code) = denied(&resp);
    assert_eq!(code, 3);
    assert_eq!(d.status.as_ref().unwrap().code, 400);
    assert_eq!(header(d, "www-authenticate"), None);
}

#[test]
fn login_required_is_a_302_with_location_and_every_set_cookie() {
    let reason = Deny::LoginRequired {
        location: "/auth/login?rd=https%3A%2F%2Fapp%2F".into(),
        set_cookies: vec!["a=; Max-Age=0; Path=/".into()],
        binding: Some(crate::model::requirement::BindingCookie {
            name: "bind".into(),
            attributes: "; Path=/; Max-Age=600".into(),
        }),
    };
    let resp = deny(&reason, "gh");
    let (d, code) = denied(&resp);
    assert_eq!(code, 16);
    assert_eq!(d.status.as_ref().unwrap().code, 302);
    assert_eq!(
        header(d, "location"),
        Some("/auth/login?rd=https%3A%2F%2Fapp%2F")
    );
    assert!(header(d, "cache-control").unwrap().contains("no-store"));
    assert_eq!(header(d, "www-authenticate"), None);
    // Both cookies, each its own entry. None marked `append`: Envoy drops
    // appended entries from a denial and adds every other one, so a
    // repeated name arrives as often as it is listed.
    let cookies: Vec<&str> = d
        .headers
        .iter()
        .filter(|h| h.header.as_ref().unwrap().key == "set-cookie")
        .map(|h| h.header.as_ref().unwrap().value.as_str())
        .collect();
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    assert_eq!(cookies[0], "a=; Max-Age=0; Path=/");
    // The binding: 32 random bytes (base64url), fresh for each response.
    let value = cookies[1]
        .strip_prefix("bind=")
        .and_then(|c| c.strip_suffix("; Path=/; Max-Age=600"))
        .expect("a binding cookie");
    assert_eq!(value.len(), 43);
    assert!(
        value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    let again = denial(&reason, "gh");
    assert!(again.headers.iter().all(|(_, v)| !v.contains(value)));
    assert!(d.headers.iter().all(|h| h.append.is_none()));
    let body: serde_json::Value = serde_json::from_str(&d.body).unwrap();
    assert_eq!(body["error"], "login_required");
    // The edge-neutral form keeps both, in order.
    let http = denial(&reason, "gh");
    assert_eq!(http.status, 302);
    let names: Vec<&str> = http.headers.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        names,
        [
            "cache-control",
            "content-type",
            "location",
            "set-cookie",
            "set-cookie"
        ]
    );
}

#[test]
fn a_header_value_that_could_split_the_response_is_not_sent() {
    let reason = Deny::LoginRequired {
        location: "/auth/login?rd=x\r\nSet-Cookie: evil=1".into(),
        set_cookies: vec![],
        binding: None,
    };
    let http = denial(&reason, "gh");
    assert!(
        http.headers.iter().all(|(k, _)| *k != "location"),
        "{http:?}"
    );
}

#[test]
fn origin_and_csrf_refusals_are_403_without_challenge() {
    for reason in [
        Deny::OriginNotAllowed {
            origin: "https://evil.example".into(),
        },
        Deny::CsrfRejected(crate::model::deny::CsrfFailure::NoProof),
    ] {
        let resp = deny(&reason, "gh");
        let (d, code) = denied(&resp);
        assert_eq!((d.status.as_ref().unwrap().code, code), (403, 7));
        assert_eq!(header(d, "www-authenticate"), None);
        let body: serde_json::Value = serde_json::from_str(&d.body).unwrap();
        assert_eq!(body["error"], "access_denied");
    }
}

#[test]
fn token_query_parameter_is_removed_upstream() {
    let mut id = identity();
    id.query_parameter = Some("access_token".into());
    let resp = allow(
        &request(&[]),
        &requirement(&[IdentityHeader::User]),
        Some(&id),
    );
    let Some(HttpResponse::OkResponse(ok)) = &resp.http_response else {
        panic!("not an ok response");
    };
    assert_eq!(ok.query_parameters_to_remove, vec!["access_token"]);
    let resp = allow(
        &request(&[]),
        &requirement(&[IdentityHeader::User]),
        Some(&identity()),
    );
    let Some(HttpResponse::OkResponse(ok)) = &resp.http_response else {
        panic!("not an ok response");
    };
    assert!(ok.query_parameters_to_remove.is_empty());
}

#[test]
fn group_names_with_a_comma_or_percent_stay_one_group() {
    let groups = |names: &[&str]| {
        super::groups_header(&names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    };
    assert_eq!(groups(&["admins", "staff"]), "admins,staff");
    assert_eq!(groups(&["Acme, Inc.", "100%"]), "Acme%2C Inc.,100%25");
    // Splitting on commas and percent-decoding gives the names back.
    let header = groups(&["a,b", "%2C", "plain"]);
    let back: Vec<String> = header
        .split(',')
        .map(|g| {
            percent_encoding::percent_decode_str(g)
                .decode_utf8()
                .expect("utf-8")
                .into_owned()
        })
        .collect();
    assert_eq!(back, ["a,b", "%2C", "plain"]);
}

#[test]
fn quota_headers_name_the_rule_as_a_structured_field_string() {
    let quota = crate::model::deny::QuotaStatus {
        rule: "a \"b\"\\c\u{e9}\n".into(),
        limit: 100,
        window_secs: 3600,
        remaining: 0,
        reset_secs: 3600,
        retry_after_secs: 36,
    };
    let headers = quota_headers(&quota);
    assert_eq!(
        headers,
        [
            ("retry-after", "36".to_string()),
            (
                "ratelimit-policy",
                r#""a \"b\"\\c";q=100;w=3600"#.to_string()
            ),
            ("ratelimit", r#""a \"b\"\\c";r=0;t=3600"#.to_string()),
        ]
    );
    // The denial carries them after the body headers, and no challenge.
    let denial = denial(&Deny::QuotaExceeded(quota), "realm");
    assert_eq!(denial.status, 429);
    let names: Vec<&str> = denial.headers.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "cache-control",
            "content-type",
            "retry-after",
            "ratelimit-policy",
            "ratelimit"
        ]
    );
}

#[test]
fn an_allow_under_a_quota_tells_the_client_what_is_left() {
    use crate::check::upstream::{Prepared, UpstreamActions};
    let quota = crate::model::deny::QuotaStatus {
        rule: "api".into(),
        limit: 5,
        window_secs: 60,
        remaining: 3,
        reset_secs: 24,
        retry_after_secs: 1,
    };
    let prepared = Prepared {
        quota: Some(quota),
        ..Prepared::default()
    };
    let mut plan = HeaderPlan::default();
    upstream::apply_prepared(
        &UpstreamActions::default(),
        prepared,
        &request(&[]),
        &mut plan,
    );
    assert_eq!(
        plan.client,
        [
            ("ratelimit-policy", "\"api\";q=5;w=60".to_string()),
            ("ratelimit", "\"api\";r=3;t=24".to_string())
        ]
    );
    assert!(plan.set.is_empty(), "nothing of it goes upstream");
    let response = render_allow(plan);
    let Some(HttpResponse::OkResponse(ok)) = response.http_response else {
        panic!("not an allow");
    };
    let added: Vec<(String, String)> = ok
        .response_headers_to_add
        .iter()
        .filter_map(|h| h.header.as_ref())
        .map(|h| (h.key.clone(), h.value.clone()))
        .collect();
    assert_eq!(
        added,
        [
            (
                "ratelimit-policy".to_string(),
                "\"api\";q=5;w=60".to_string()
            ),
            ("ratelimit".to_string(), "\"api\";r=3;t=24".to_string())
        ]
    );
}
