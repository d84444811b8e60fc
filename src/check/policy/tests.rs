//! Tests of the compiled policy as a whole, from YAML like an operator's.

use std::collections::HashMap;

use super::*;
use crate::config::{self, ConfigSource, DEMO_CONFIG};
use crate::model::requirement::{BindingCookie, LoginRedirect, SessionCookie};

fn policy_config(yaml: &str) -> PolicyConfig {
    config::load(&ConfigSource::Text(yaml.to_string()), [])
        .expect("test YAML loads")
        .policy
}

fn compile(yaml: &str) -> Policy {
    Policy::compile(&policy_config(yaml)).expect("policy compiles")
}

fn compile_err(yaml: &str) -> String {
    Policy::compile(&policy_config(yaml))
        .expect_err("policy must be refused")
        .to_string()
}

fn req(method: &str, host: &str, path: &str) -> Request {
    Request {
        method: method.into(),
        host: host.into(),
        path: path.into(),
        ..Request::default()
    }
}

fn with_ext(mut r: Request, pairs: &[(&str, &str)]) -> Request {
    r.context_extensions = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<HashMap<_, _>>();
    r
}

/// The name of the rule that matched.
fn rule_of(p: &Policy, r: &Request) -> Result<String, Deny> {
    p.requirement(r).map(|req| req.rule.to_string())
}

fn name(p: &Policy, method: &str, host: &str, path: &str) -> String {
    rule_of(p, &req(method, host, path)).unwrap_or_else(|e| format!("<{}>", e.reason_label()))
}

fn scopes(list: &[&str]) -> Arc<[String]> {
    list.iter().map(|s| s.to_string()).collect()
}

fn authenticated(list: &[&str], satisfy: Satisfy) -> Access {
    Access::Authenticated {
        scopes: scopes(list),
        satisfy,
    }
}

#[test]
fn demo_config_routes() {
    let cfg = config::load(&ConfigSource::Text(DEMO_CONFIG.into()), []).expect("demo loads");
    let p = Policy::compile(&cfg.policy).expect("demo policy compiles");
    assert_eq!(name(&p, "GET", "h", "/public/x"), "public");
    assert_eq!(name(&p, "POST", "h", "/data/x"), "data-write");
    assert_eq!(name(&p, "GET", "h", "/data/x"), "data-read");
    assert_eq!(name(&p, "HEAD", "h", "/data/x"), "data-read");
    assert_eq!(name(&p, "GET", "h", "/whoami"), "whoami");
    assert_eq!(name(&p, "GET", "h", "/other"), "<no_rule>");
    let public = p
        .requirement(&req("GET", "h", "/public/"))
        .expect("matches");
    assert_eq!(public.access, Access::Anonymous);
    let write = p
        .requirement(&req("DELETE", "h", "/data/1"))
        .expect("matches");
    assert_eq!(write.access, authenticated(&["write:data"], Satisfy::All));
}

const RULES: &str = r#"
policy:
  rules:
    - name: wild
      match: {hosts: ["*.Example.com"], path: {prefix: /wild}}
    - name: exact-host
      match: {hosts: [API.example.com]}
      scopes: [api]
    - name: get-only
      match: {path: {prefix: /read}, methods: [get]}
    - name: star
      match: {path: {glob: "/files/*/meta"}}
    - name: double-star
      match: {path: {glob: "/files/**/meta"}}
    - name: api-prefix
      match: {path: {prefix: /api}}
    - name: api-slash
      match: {path: {prefix: /apix/}}
"#;

#[test]
fn wildcard_hosts_need_a_subdomain() {
    let p = compile(RULES);
    assert_eq!(name(&p, "GET", "a.example.com", "/wild"), "wild");
    assert_eq!(name(&p, "GET", "a.b.example.com", "/wild/x"), "wild");
    assert_eq!(name(&p, "GET", "example.com", "/wild"), "<no_rule>");
    assert_eq!(name(&p, "GET", "notexample.com", "/wild"), "<no_rule>");
}

#[test]
fn exact_hosts_are_case_insensitive() {
    let p = compile(RULES);
    assert_eq!(
        name(&p, "GET", "api.example.com", "/anything"),
        "exact-host"
    );
    assert_eq!(
        name(&p, "GET", "API.EXAMPLE.COM", "/anything"),
        "exact-host"
    );
    assert_eq!(
        name(&p, "GET", "x.api.example.com", "/anything"),
        "<no_rule>"
    );
}

#[test]
fn head_is_covered_by_get() {
    let p = compile(RULES);
    assert_eq!(name(&p, "GET", "h", "/read/x"), "get-only");
    assert_eq!(name(&p, "HEAD", "h", "/read/x"), "get-only");
    assert_eq!(name(&p, "get", "h", "/read/x"), "get-only");
    assert_eq!(name(&p, "POST", "h", "/read/x"), "<no_rule>");
}

#[test]
fn glob_star_and_double_star() {
    let p = compile(RULES);
    assert_eq!(name(&p, "GET", "h", "/files/a/meta"), "star");
    assert_eq!(name(&p, "GET", "h", "/files/a/b/meta"), "double-star");
    assert_eq!(name(&p, "GET", "h", "/files/meta"), "double-star");
    assert_eq!(name(&p, "GET", "h", "/files/a/b/metax"), "<no_rule>");
}

#[test]
fn prefixes_match_at_segment_boundaries() {
    let p = compile(RULES);
    assert_eq!(name(&p, "GET", "h", "/api"), "api-prefix");
    assert_eq!(name(&p, "GET", "h", "/api/"), "api-prefix");
    assert_eq!(name(&p, "GET", "h", "/api/v1/x"), "api-prefix");
    assert_eq!(name(&p, "GET", "h", "/apiv1"), "<no_rule>");
    assert_eq!(name(&p, "GET", "h", "/apix/y"), "api-slash");
    assert_eq!(name(&p, "GET", "h", "/apix"), "<no_rule>");
}

#[test]
fn first_match_wins_across_index_buckets() {
    let p = compile(
        r#"
policy:
  rules:
    - name: r0-any-host-glob
      match: {path: {glob: "/**/private"}}
    - name: r1-exact-host-any-path
      match: {hosts: [a.example.com]}
    - name: r2-wildcard-segment
      match: {hosts: ["*.example.com"], path: {prefix: /api/}}
    - name: r3-any-host-segment
      match: {path: {prefix: /api}}
    - name: r4-exact-host-segment
      match: {hosts: [b.example.com], path: {exact: /api/x}}
    - name: r5-root
      match: {path: {prefix: /}}
"#,
    );
    assert_eq!(
        name(&p, "GET", "a.example.com", "/api/private"),
        "r0-any-host-glob"
    );
    assert_eq!(
        name(&p, "GET", "a.example.com", "/api/x"),
        "r1-exact-host-any-path"
    );
    assert_eq!(
        name(&p, "GET", "b.example.com", "/api/x"),
        "r2-wildcard-segment"
    );
    assert_eq!(
        name(&p, "GET", "b.example.com", "/api"),
        "r3-any-host-segment"
    );
    assert_eq!(
        name(&p, "GET", "other.org", "/api/x"),
        "r3-any-host-segment"
    );
    assert_eq!(name(&p, "GET", "other.org", "/"), "r5-root");
    assert_eq!(name(&p, "GET", "b.example.com", "/x"), "r5-root");
}

#[test]
fn requirements_are_built_once_and_shared() {
    let p = compile(RULES);
    let a = p
        .requirement(&req("GET", "api.example.com", "/a"))
        .expect("matches");
    let b = p
        .requirement(&req("GET", "api.example.com", "/b"))
        .expect("matches");
    assert!(Arc::ptr_eq(&a.rule, &b.rule));
    assert!(Arc::ptr_eq(&a.headers, &b.headers));
    assert_eq!(a.access, authenticated(&["api"], Satisfy::All));
    assert_eq!(&*a.headers, IdentityHeader::default_set().as_slice());
    assert_eq!(a.auth_type, AuthType::Bearer);
}

#[test]
fn rule_settings_carry_into_the_requirement() {
    let p = compile(
        r#"
policy:
  rules:
    - name: r
      scopes: [a, b]
      satisfy: any
      auth_type: basic
      headers: [user, token, user]
"#,
    );
    let got = p.requirement(&req("GET", "h", "/")).expect("matches");
    assert_eq!(got.access, authenticated(&["a", "b"], Satisfy::Any));
    assert_eq!(got.auth_type, AuthType::Basic);
    assert_eq!(
        &*got.headers,
        &[IdentityHeader::User, IdentityHeader::Token]
    );
}

#[test]
fn default_deny_and_default_authenticated() {
    let deny = compile("policy: {default: deny}");
    assert_eq!(deny.requirement(&req("GET", "h", "/")), Err(Deny::NoRule));
    let no_policy = Policy::compile(&PolicyConfig::default()).expect("empty compiles");
    assert_eq!(
        no_policy.requirement(&req("GET", "h", "/")),
        Err(Deny::NoRule)
    );

    let auth = compile("policy: {default: authenticated}");
    let got = auth.requirement(&req("GET", "h", "/")).expect("default");
    assert_eq!(
        got,
        Requirement {
            rule: "default".into(),
            access: authenticated(&[], Satisfy::All),
            auth_type: AuthType::Bearer,
            headers: IdentityHeader::default_set().into(),
            credentials: crate::model::identity::AcceptedCredentials::ALL,
            tool: None,
            login: None,
            condition: None,
        }
    );
}

const EXT_RULES: &str = r#"
policy:
  default: deny
  rules:
    - name: open
      match: {path: {prefix: /open}}
      auth: anonymous
    - name: data
      match: {path: {prefix: /data}}
      scopes: [read:data, admin]
      satisfy: any
"#;

#[test]
fn extensions_override_the_matched_rule() {
    let p = compile(EXT_RULES);
    let r = with_ext(req("GET", "h", "/data/1"), &[("scope", "exec:x,exec:y")]);
    let got = p.requirement(&r).expect("matches");
    assert_eq!(&*got.rule, "data");
    assert_eq!(
        got.access,
        authenticated(&["exec:x", "exec:y"], Satisfy::Any)
    );

    let r = with_ext(
        req("GET", "h", "/data/1"),
        &[("satisfy", "all"), ("auth_type", "basic")],
    );
    let got = p.requirement(&r).expect("matches");
    assert_eq!(
        got.access,
        authenticated(&["read:data", "admin"], Satisfy::All)
    );
    assert_eq!(got.auth_type, AuthType::Basic);
}

#[test]
fn extension_scope_makes_an_anonymous_rule_authenticated() {
    let p = compile(EXT_RULES);
    let r = with_ext(req("GET", "h", "/open"), &[("scope", "read:open")]);
    let got = p.requirement(&r).expect("matches");
    assert_eq!(&*got.rule, "open");
    assert_eq!(got.access, authenticated(&["read:open"], Satisfy::All));
}

#[test]
fn without_a_rule_the_extensions_are_the_matcher() {
    let p = compile(EXT_RULES);
    let r = with_ext(
        req("GET", "h", "/elsewhere"),
        &[("scope", "a b"), ("satisfy", "any")],
    );
    let got = p.requirement(&r).expect("extensions match");
    assert_eq!(
        got,
        Requirement {
            rule: "context_extensions".into(),
            access: authenticated(&["a", "b"], Satisfy::Any),
            auth_type: AuthType::Bearer,
            headers: IdentityHeader::default_set().into(),
            credentials: crate::model::identity::AcceptedCredentials::ALL,
            tool: None,
            login: None,
            condition: None,
        }
    );
    let r = with_ext(req("GET", "h", "/elsewhere"), &[("auth_type", "basic")]);
    let got = p.requirement(&r).expect("extensions match");
    assert_eq!(got.access, authenticated(&[], Satisfy::All));
    assert_eq!(got.auth_type, AuthType::Basic);
}

#[test]
fn unknown_extension_keys_are_ignored() {
    let p = compile(EXT_RULES);
    let r = with_ext(
        req("GET", "h", "/elsewhere"),
        &[("audience", "x"), ("team", "y")],
    );
    assert_eq!(p.requirement(&r), Err(Deny::NoRule));
    let r = with_ext(req("GET", "h", "/data"), &[("audience", "x")]);
    assert_eq!(rule_of(&p, &r).as_deref(), Ok("data"));
}

#[test]
fn invalid_extensions_are_misconfigurations() {
    let p = compile(EXT_RULES);
    for path in ["/data", "/elsewhere", "/open"] {
        for pairs in [
            [("satisfy", "maybe")],
            [("auth_type", "digest")],
            [("scope", "")],
            [("scope", " ,")],
        ] {
            let got = p.requirement(&with_ext(req("GET", "h", path), &pairs));
            match got {
                Err(Deny::Misconfigured(msg)) => assert!(msg.contains(pairs[0].0), "{msg}"),
                other => panic!("{path} {pairs:?}: {other:?}"),
            }
        }
    }
}

#[test]
fn compile_errors_name_the_key() {
    let cases = [
        ("- name: ''", "policy.rules[0].name"),
        ("- name: a\n- name: a", "policy.rules[1].name"),
        ("- name: default", "policy.rules[0].name"),
        ("- name: context_extensions", "policy.rules[0].name"),
        (
            "- name: a\n- name: b\n  match: {path: {exact: x}}",
            "policy.rules[1].match.path",
        ),
        (
            "- name: a\n  match: {path: {prefix: /a//b}}",
            "policy.rules[0].match.path",
        ),
        (
            "- name: a\n  match: {path: {glob: '/a/[b'}}",
            "policy.rules[0].match.path",
        ),
        (
            "- name: a\n  match: {path: {glob: 'a/**'}}",
            "policy.rules[0].match.path",
        ),
        (
            "- name: a\n  match: {hosts: [ok.com, 'a.*.com']}",
            "policy.rules[0].match.hosts[1]",
        ),
        (
            "- name: a\n  match: {hosts: ['h:80']}",
            "policy.rules[0].match.hosts[0]",
        ),
        (
            "- name: a\n  match: {methods: [GET, 'P OST']}",
            "policy.rules[0].match.methods[1]",
        ),
        (
            "- name: a\n  scopes: [ok, 'x y']",
            "policy.rules[0].scopes[1]",
        ),
        ("- name: a\n  scopes: ['']", "policy.rules[0].scopes[0]"),
        (
            "- name: a\n  auth: anonymous\n  scopes: [s]",
            "policy.rules[0].scopes",
        ),
    ];
    for (rules, key) in cases {
        let err = compile_err(&format!("policy:\n  rules:\n{}", indent(rules)));
        assert!(err.contains(&format!("`{key}`")), "{rules:?}: {err}");
    }
}

fn indent(rules: &str) -> String {
    rules
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect::<String>()
}

#[test]
fn policy_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Policy>();
    assert_send_sync::<Requirement>();
}

/// The whole configuration's policy with its `browser` and `cors` sections.
fn compile_browser(yaml: &str) -> Policy {
    let cfg = config::load(&ConfigSource::Text(yaml.to_string()), []).expect("test YAML loads");
    let default_session = crate::config::SessionConfig::default();
    let session = cfg.login.as_ref().map_or(&default_session, |l| &l.session);
    Policy::compile_with(&cfg.policy, &cfg.browser, cfg.cors.as_ref(), session)
        .expect("policy compiles")
}

fn navigation(path: &str) -> Request {
    let mut r = req("GET", "app.example", path);
    r.headers.insert("accept".into(), "text/html".into());
    r
}

#[test]
fn login_redirect_per_rule_and_from_the_global_default() {
    let rules = r#"
policy:
  default: authenticated
  rules:
    - name: ui
      match: {path: {prefix: /ui/}}
      login: redirect
    - name: api
      match: {path: {prefix: /api/}}
      login: deny
    - name: sessionless
      match: {path: {prefix: /jwt-only/}}
      credentials: [jwt]
      login: redirect
    - name: unset
      match: {path: {prefix: /unset/}}
"#;
    let p = compile_browser(rules);
    let login = |p: &Policy, path: &str| p.requirement(&navigation(path)).expect("matches").login;
    assert_eq!(
        login(&p, "/ui/x"),
        Some(LoginRedirect {
            login_path: "/auth/login".into(),
            session_cookie: Some(SessionCookie {
                name: "__Host-gatehouse_session".into(),
                clear:
                    "__Host-gatehouse_session=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0"
                        .into(),
                binding: BindingCookie {
                    name: "__Host-gatehouse_login".into(),
                    attributes: "; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=600".into(),
                },
            }),
        })
    );
    assert_eq!(login(&p, "/api/x"), None);
    assert_eq!(login(&p, "/unset/x"), None, "the global default is deny");
    assert_eq!(login(&p, "/other"), None);
    // A route that does not accept sessions never clears the cookie.
    assert_eq!(
        login(&p, "/jwt-only/x").and_then(|l| l.session_cookie),
        None
    );
    // Not a navigation: no redirect, whatever the rule says.
    let api_client = req("GET", "app.example", "/ui/x");
    assert_eq!(p.requirement(&api_client).expect("matches").login, None);

    let global = format!(
        "browser: {{login: redirect, login_path: https://login.example/start}}\nlogin: {{session: {{cookie_name: sid, cookie_domain: example.org}}}}\n{rules}"
    );
    let p = compile_browser(&global);
    assert_eq!(
        login(&p, "/unset/x"),
        Some(LoginRedirect {
            login_path: "https://login.example/start".into(),
            session_cookie: Some(SessionCookie {
                name: "sid".into(),
                clear:
                    "sid=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0; Domain=example.org"
                        .into(),
                binding: BindingCookie {
                    name: "sid_login".into(),
                    attributes:
                        "; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=600; Domain=example.org"
                            .into(),
                },
            }),
        })
    );
    assert!(
        login(&p, "/other").is_some(),
        "the default rule follows it too"
    );
    assert_eq!(login(&p, "/api/x"), None, "a rule's own deny wins");
}

#[test]
fn with_cors_a_preflight_needs_no_credential() {
    let yaml = "cors: {allowed_origins: [\"https://ui.example\"]}\npolicy:\n  rules:\n    - name: api\n      match: {path: {prefix: /api/}}\n      scopes: [read]\n";
    let p = compile_browser(yaml);
    let mut preflight = req("OPTIONS", "app.example", "/api/x");
    preflight
        .headers
        .insert("origin".into(), "https://ui.example".into());
    preflight
        .headers
        .insert("access-control-request-method".into(), "DELETE".into());
    assert_eq!(
        p.requirement(&preflight).expect("matches").access,
        Access::Anonymous
    );
    // Any other OPTIONS is checked like any request.
    let options = req("OPTIONS", "app.example", "/api/x");
    assert!(matches!(
        p.requirement(&options).expect("matches").access,
        Access::Authenticated { .. }
    ));
    // No rule, default deny: still refused.
    preflight.path = "/nowhere".into();
    assert_eq!(p.requirement(&preflight), Err(Deny::NoRule));
}

#[test]
fn a_when_condition_is_compiled_once_and_its_errors_name_rule_key_and_column() {
    let p = compile(
        r#"
policy:
  rules:
    - name: writers
      match: {path: {prefix: /w/}}
      when: 'request.method == "GET" || "writers" in identity.groups'
"#,
    );
    let requirement = p.requirement(&req("POST", "h", "/w/x")).expect("rule");
    let condition = requirement.condition.expect("the rule's condition");
    assert_eq!(
        condition.source(),
        r#"request.method == "GET" || "writers" in identity.groups"#
    );
    let err = compile_err(
        r#"
policy:
  rules:
    - name: broken
      match: {path: {prefix: /b/}}
      when: 'request.method =='
"#,
    );
    assert!(
        err.contains("policy.rules[0].when") && err.contains("rule `broken`"),
        "{err}"
    );
    assert!(err.contains("line 1, column"), "{err}");
    let err = compile_err(
        r#"
policy:
  rules:
    - name: typo
      match: {path: {prefix: /b/}}
      when: 'identiy.user == "x"'
"#,
    );
    assert!(err.contains("unknown variable `identiy`"), "{err}");
}
