use serde_json::json;

use super::*;

fn request() -> Request {
    let mut request = Request {
        method: "POST".into(),
        scheme: "https".into(),
        host: "api.example.org".into(),
        authority: "api.example.org".into(),
        path: "/v1/jobs".into(),
        query: Some("page=2".into()),
        client_ip: Some("10.1.2.3".parse().expect("ip")),
        ..Request::default()
    };
    request.headers.insert("x-team".into(), "blue".into());
    request
        .context_extensions
        .insert("tier".into(), "gold".into());
    request
}

fn alice() -> Identity {
    let mut id = crate::testkit::identity("alice", &["read:data"]);
    id.subject = "u-1".into();
    id.uid = None;
    id.groups = vec!["admins".into(), "staff".into()];
    id.claims = json!({"realm_access": {"roles": ["ops", "admin"]}, "level": 3})
        .as_object()
        .cloned()
        .map(Arc::new);
    id
}

fn eval(source: &str, identity: Option<&Identity>) -> Result<bool, EvaluationError> {
    Condition::compile(source)
        .unwrap_or_else(|e| panic!("{source}: {e}"))
        .evaluate(&request(), identity)
}

#[test]
fn every_variable_is_readable() {
    let id = alice();
    for source in [
        r#"request.method == "POST""#,
        r#"request.host == "api.example.org""#,
        r#"request.path.startsWith("/v1/")"#,
        r#"request.headers["x-team"] == "blue""#,
        r#"request.query == "page=2""#,
        r#"request.client_ip == "10.1.2.3""#,
        r#"identity.authenticated"#,
        r#"identity.user == "alice" && identity.subject == "u-1""#,
        r#"identity.email.endsWith("@example.org")"#,
        r#"identity.uid == """#,
        r#""admins" in identity.groups"#,
        r#""read:data" in identity.scopes && size(identity.scopes) == 1"#,
        r#"identity.kind == "jwt" && identity.issuer == "idp""#,
        r#"identity.tool == """#,
        r#""admin" in identity.claims.realm_access.roles"#,
        r#"identity.claims.realm_access.roles.exists(r, r == "ops")"#,
        r#"identity.claims.level >= 3"#,
        r#"route.tier == "gold""#,
        r#"has(request.headers.x_missing) == false"#,
    ] {
        assert_eq!(eval(source, Some(&id)), Ok(true), "{source}");
    }
    assert_eq!(eval(r#""admins" in identity.groups"#, None), Ok(false));
    assert_eq!(eval("identity.authenticated", None), Ok(false));
    assert_eq!(eval(r#"request.method == "GET""#, Some(&id)), Ok(false));
}

#[test]
fn an_evaluation_error_is_an_error_not_a_value() {
    let id = alice();
    let missing = eval(r#"request.headers["x-missing"] == "a""#, Some(&id));
    assert!(missing.is_err(), "{missing:?}");
    let no_claim = eval(r#"identity.claims.nope == 1"#, Some(&id));
    assert!(no_claim.is_err(), "{no_claim:?}");
    // Without claims kept, `claims` is an empty map: a read is an error.
    let mut bare = alice();
    bare.claims = None;
    assert!(eval(r#"identity.claims.level == 3"#, Some(&bare)).is_err());
}

#[test]
fn syntax_errors_name_line_and_column() {
    match Condition::compile("request.method ==") {
        Err(ConditionError::Syntax { line, column, .. }) => {
            assert_eq!(line, 1);
            assert!(column > 1, "column {column}");
        }
        other => panic!("{other:?}"),
    }
    let err = Condition::compile("request.method == \"GET\" &&\n  (identity.user ==").unwrap_err();
    assert!(
        matches!(err, ConditionError::Syntax { line: 2, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("CEL syntax error at line 2, column")
    );
}

#[test]
fn unknown_variables_type_errors_and_non_booleans_are_refused() {
    assert_eq!(
        Condition::compile("user == \"alice\"").unwrap_err(),
        ConditionError::UnknownVariable("user".into())
    );
    assert!(matches!(
        Condition::compile("request.method + 1 == 2").unwrap_err(),
        ConditionError::Type(_)
    ));
    assert!(matches!(
        Condition::compile("identity.groups > 1").unwrap_err(),
        ConditionError::Type(_)
    ));
    // A name bound by a macro is not a variable; a stray one still is.
    assert!(Condition::compile("identity.groups.all(g, g != \"x\")").is_ok());
    assert_eq!(
        Condition::compile("identity.groups.all(g, h)").unwrap_err(),
        ConditionError::UnknownVariable("h".into())
    );
    assert_eq!(
        Condition::compile("request.method").unwrap_err(),
        ConditionError::NotBoolean("string".into())
    );
    // A key that may be missing is data, not a type error: it compiles.
    assert!(Condition::compile(r#"request.headers["x-team"] == "blue""#).is_ok());
    assert!(Condition::compile(r#"identity.claims.level > 2"#).is_ok());
}

#[test]
fn claims_are_kept_only_for_conditions_that_may_read_them() {
    assert!(Condition::may_read_claims("identity.claims.x == 1"));
    assert!(!Condition::may_read_claims("\"a\" in identity.groups"));
}

#[test]
fn regular_expressions_work() {
    let id = alice();
    assert_eq!(
        eval(
            r#"identity.email.matches("^[a-z]+@example[.]org$")"#,
            Some(&id)
        ),
        Ok(true)
    );
    assert_eq!(
        eval(
            r#""x-team" in request.headers && request.headers["x-team"] == "blue""#,
            Some(&id)
        ),
        Ok(true)
    );
}
