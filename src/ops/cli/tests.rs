use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::Duration;

use super::*;

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("gatehouse-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

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
