use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::testkit::TempDir;

#[test]
fn durations_use_the_config_grammar() {
    assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(2 * 86_400)));
    assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
    assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5_400)));
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("1w"), Ok(Duration::from_secs(7 * 86_400)));
    for bad in ["", "2", "d", "2x", "-1h", "soon"] {
        let err = parse_duration(bad).expect_err(bad);
        assert!(
            err.contains(crate::config::DURATION_EXAMPLE),
            "{bad}: {err}"
        );
    }
}

#[test]
fn a_dash_is_standard_output() {
    assert_eq!(Output::from(OsStr::new("-")), Output::Stdout);
    assert_eq!(
        Output::from(OsStr::new("./-")),
        Output::File(PathBuf::from("./-"))
    );
    assert_eq!(Output::Stdout.to_string(), "standard output");
}

#[test]
fn a_file_is_not_overwritten_without_force() {
    let dir = TempDir::new("noclobber");
    let path = dir.0.join("key.pem");
    let out = Output::File(path.clone());
    let private = WriteOptions {
        overwrite: false,
        private: true,
    };
    write_output(&out, b"first", private).expect("new file");
    let err = write_output(&out, b"second", private).expect_err("exists");
    assert_eq!(err.code(), EXIT_FAILURE);
    assert!(err.to_string().contains("--force"), "{err}");
    assert_eq!(std::fs::read(&path).expect("read"), b"first");
}

#[cfg(unix)]
#[test]
fn overwriting_a_private_file_tightens_its_mode() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = TempDir::new("overwrite");
    let path = dir.0.join("key.pem");
    std::fs::write(&path, b"old").expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let options = WriteOptions {
        overwrite: true,
        private: true,
    };
    write_output(&Output::File(path.clone()), b"new", options).expect("overwrite");
    assert_eq!(std::fs::read(&path).expect("read"), b"new");
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // Nothing left beside it.
    let names: Vec<_> = std::fs::read_dir(&dir.0)
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("key.pem")]);
}

#[test]
fn a_missing_directory_is_a_failure_naming_the_path() {
    let dir = TempDir::new("missing");
    let path = dir.0.join("no/such/dir/out.json");
    let err = write_output(&Output::File(path.clone()), b"{}", WriteOptions::default())
        .expect_err("no directory");
    assert_eq!(err.code(), EXIT_FAILURE);
    assert!(err.to_string().contains("out.json"), "{err}");
}

#[test]
fn errors_carry_their_exit_codes() {
    assert_eq!(CliError::Usage("x".into()).code(), 64);
    assert_eq!(CliError::Config("x".into()).code(), 78);
    assert_eq!(CliError::Failure("x".into()).code(), 1);
    let config: CliError = ConfigError::invalid("server.grpc_addr", "bad").into();
    assert_eq!(config.code(), EXIT_CONFIG);
    assert!(config.to_string().contains("server.grpc_addr"), "{config}");
    let metrics: CliError = ConfigError::Metrics("registry".into()).into();
    assert_eq!(metrics.code(), EXIT_FAILURE);
    let argument: CliError = ExplainError::Argument("--url: no host".into()).into();
    assert_eq!(argument.code(), EXIT_USAGE);
}

#[test]
fn the_version_names_the_commit_and_the_build_date() {
    assert!(VERSION.starts_with(env!("CARGO_PKG_VERSION")), "{VERSION}");
    assert!(
        VERSION.contains(&format!("(commit {GIT_COMMIT}, built ")),
        "{VERSION}"
    );
    assert!(!GIT_COMMIT.is_empty());
}

#[test]
fn check_config_builds_the_demo() {
    let summary = check_config(&ConfigSource::Text(config::DEMO_CONFIG.into())).expect("demo");
    assert!(summary.starts_with("configuration ok: "), "{summary}");
    let err = check_config(&ConfigSource::Text("server: {nope: 1}\n".into())).expect_err("bad");
    assert_eq!(err.code(), EXIT_CONFIG);
}

#[test]
fn token_expiry_takes_a_lifetime_or_a_timestamp() {
    assert_eq!(parse_expires("30d", 1_000), Ok(1_000 + 30 * 86_400));
    assert_eq!(parse_expires("2030-01-01T00:00:00Z", 0), Ok(1_893_456_000));
    for bad in ["", "soon", "2030-01-01", "-1d"] {
        let err = parse_expires(bad, 0).expect_err(bad);
        assert_eq!(err.code(), EXIT_USAGE, "{bad}");
    }
}

/// `gatehouse tokens` against a side port on 127.0.0.1:0.
#[tokio::test]
async fn tokens_create_list_revoke_against_a_running_server() {
    use crate::testkit::{self, TestKey};
    let idp = TestKey::generate(jsonwebtoken::Algorithm::ES256, "k");
    let yaml = format!(
        r#"
server: {{grpc_addr: "127.0.0.1:0", http_addr: "127.0.0.1:0"}}
jwt:
  issuers: [{{issuer: "https://idp.test", audiences: [api], algorithms: [ES256], keys: {{jwks: {jwks}}}, claims: {{groups: groups}}}}]
scopes: {{group_mapping: {{read: [readers]}}}}
api_tokens: {{}}
"#,
        jwks = testkit::jwks(&[&idp])
    );
    let source = ConfigSource::Text(yaml);
    let cfg = config::load(&source, []).expect("config");
    let engine = std::sync::Arc::new(app::build_engine(&cfg, &source).expect("engine"));
    let listener = crate::serve::http::HttpListener::bind(cfg.server.http_addr)
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(listener.serve(engine, Duration::from_secs(1), async {
        let _ = stopped.await;
    }));

    let dir = TempDir::new("tokens");
    let token_file = dir.0.join("jwt");
    let mut claims = testkit::claims("https://idp.test", "api", "alice");
    claims["groups"] = serde_json::json!(["readers"]);
    std::fs::write(&token_file, format!("{}\n", idp.mint(&claims))).expect("write");
    let api = ApiArgs {
        url: format!("http://{addr}"),
        token_file: token_file.clone(),
        user: None,
    };
    let now = crate::clock::now_secs();
    let create = |name: &str, scopes: &[&str]| TokensCommand::Create {
        api: api.clone(),
        name: name.into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        expires: Some("7d".into()),
        tool: None,
    };
    let out = tokens::run(create("cli", &["read"]), now)
        .await
        .expect("created");
    let created: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert!(
        created["token"]
            .as_str()
            .is_some_and(|t| t.starts_with("gh-"))
    );
    assert_eq!(created["expires"], now + 7 * 86_400);
    let key = created["key"].as_str().expect("key").to_string();

    // The server's refusal is a failure (exit 1) carrying its reason.
    let err = tokens::run(create("more", &["write"]), now)
        .await
        .expect_err("beyond the caller's scopes");
    assert_eq!(err.code(), EXIT_FAILURE);
    assert!(err.to_string().contains("HTTP 403"), "{err}");

    let listed = tokens::run(TokensCommand::List { api: api.clone() }, now)
        .await
        .expect("listed");
    let listed: serde_json::Value = serde_json::from_str(&listed).expect("json");
    assert_eq!(listed[0]["key"], key.as_str());
    assert!(listed[0].get("token").is_none());

    let revoke = || TokensCommand::Revoke {
        api: ApiArgs {
            user: Some("alice".into()),
            ..api.clone()
        },
        key: key.clone(),
    };
    tokens::run(revoke(), now).await.expect("revoked");
    let err = tokens::run(revoke(), now).await.expect_err("gone");
    assert!(err.to_string().contains("HTTP 404"), "{err}");

    // A missing token file is a usage error.
    let missing = TokensCommand::List {
        api: ApiArgs {
            token_file: dir.0.join("nope"),
            ..api.clone()
        },
    };
    assert_eq!(
        tokens::run(missing, now).await.expect_err("no file").code(),
        EXIT_USAGE
    );
    let _ = stop.send(());
    let _ = server.await;
}
