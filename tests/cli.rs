//! The `gatehouse` binary as an operator runs it: exit codes, `-o -`,
//! `GATEHOUSE_CONFIG`, the config's duration grammar on the command line,
//! `version`, `completions`, and `serve` refusing to run without a
//! configuration unless `--demo` is asked for.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use gatehouse::testkit::TempDir;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

fn demo_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.yaml")
}

/// The binary with a clean environment as far as gatehouse is concerned:
/// no `GATEHOUSE_*` variable from the caller leaks into a test.
fn gatehouse(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdin(Stdio::null());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("GATEHOUSE_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run gatehouse")
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited, not signalled")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn usage_errors_exit_64() {
    for args in [
        &["bogus"][..],
        &[],
        &["check-config", "--no-such-flag"],
        &["token", "issue", "-c", "x.yaml", "--subject", "ops"], // no --url
        &["keys", "generate", "--alg", "HS256", "-o", "-"],
        &["completions", "tcsh"],
        &["explain", "-c", "config/demo.yaml"], // no --url
    ] {
        let out = run(gatehouse(args).current_dir(env!("CARGO_MANIFEST_DIR")));
        assert_eq!(code(&out), 64, "{args:?}: {}", text(&out.stderr));
    }
    // An argument gatehouse itself refuses, after clap accepted it.
    let config = demo_config();
    let out = run(&mut gatehouse(&[
        "explain",
        "-c",
        config.to_str().unwrap(),
        "--url",
        "not a url",
    ]));
    assert_eq!(code(&out), 64, "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--url"), "{}", text(&out.stderr));
}

#[test]
fn help_and_version_succeed_and_help_lists_the_exit_codes() {
    let help = run(&mut gatehouse(&["--help"]));
    assert_eq!(code(&help), 0);
    let help = text(&help.stdout);
    for line in [
        "64  usage error",
        "78  configuration error",
        "1   failure while running",
        "GATEHOUSE_CONFIG",
    ] {
        assert!(help.contains(line), "{line}: {help}");
    }
}

#[test]
fn configuration_errors_exit_78() {
    let dir = TempDir::new("config-errors");
    let bad = dir.0.join("bad.yaml");
    std::fs::write(&bad, "server:\n  grpc_adress: 127.0.0.1:1\n").unwrap();
    let missing = dir.0.join("missing.yaml");
    for path in [&bad, &missing] {
        let out = run(&mut gatehouse(&[
            "check-config",
            "-c",
            path.to_str().unwrap(),
        ]));
        assert_eq!(code(&out), 78, "{}", text(&out.stderr));
        assert!(text(&out.stderr).contains("configuration error"));
    }
    assert!(
        text(
            &run(&mut gatehouse(&[
                "check-config",
                "-c",
                bad.to_str().unwrap()
            ]))
            .stderr
        )
        .contains("grpc_adress")
    );
    // An override is part of the configuration.
    let out = run(
        gatehouse(&["check-config", "-c", demo_config().to_str().unwrap()])
            .env("GATEHOUSE_SERVER__GRPC_ADDR", "not-an-address"),
    );
    assert_eq!(code(&out), 78, "{}", text(&out.stderr));
    // token issue without an `issuer:` section.
    std::fs::write(&bad, "policy: {default: deny}\n").unwrap();
    let out = run(&mut gatehouse(&[
        "token",
        "issue",
        "-c",
        bad.to_str().unwrap(),
        "--url",
        "/a",
        "--subject",
        "ops",
    ]));
    assert_eq!(code(&out), 78, "{}", text(&out.stderr));
}

#[test]
fn a_runtime_failure_exits_1() {
    // The gRPC port is taken: the configuration is fine, serving fails.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = run(gatehouse(&["serve", "-c", demo_config().to_str().unwrap()])
        .env(
            "GATEHOUSE_SERVER__GRPC_ADDR",
            taken.local_addr().unwrap().to_string(),
        )
        .env("GATEHOUSE_SERVER__HTTP_ADDR", "127.0.0.1:0"));
    assert_eq!(code(&out), 1, "{}", text(&out.stderr));
    // A key file that exists is not overwritten without --force.
    let dir = TempDir::new("exists");
    let key = dir.0.join("key.pem");
    std::fs::write(&key, "keep").unwrap();
    let out = run(&mut gatehouse(&[
        "keys",
        "generate",
        "-o",
        key.to_str().unwrap(),
    ]));
    assert_eq!(code(&out), 1, "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--force"));
    assert_eq!(std::fs::read_to_string(&key).unwrap(), "keep");
}

#[test]
fn check_config_takes_dash_c_the_environment_or_the_deprecated_positional() {
    let demo = demo_config();
    let demo = demo.to_str().unwrap();
    let ok = |out: &Output| {
        assert_eq!(code(out), 0, "{}", text(&out.stderr));
        assert!(text(&out.stdout).starts_with("configuration ok: "));
    };
    ok(&run(&mut gatehouse(&["check-config", "-c", demo])));
    ok(&run(&mut gatehouse(&["check-config", "--config", demo])));
    ok(&run(
        gatehouse(&["check-config"]).env("GATEHOUSE_CONFIG", demo)
    ));
    let positional = run(&mut gatehouse(&["check-config", demo]));
    ok(&positional);
    assert!(text(&positional.stderr).contains("deprecated"));
    // -c on the command line wins over the environment.
    ok(&run(
        gatehouse(&["check-config", "-c", demo]).env("GATEHOUSE_CONFIG", "/nonexistent.yaml")
    ));
    let none = run(&mut gatehouse(&["check-config"]));
    assert_eq!(code(&none), 64);
    assert!(text(&none.stderr).contains("GATEHOUSE_CONFIG"));
    let twice = run(&mut gatehouse(&["check-config", "-c", demo, demo]));
    assert_eq!(code(&twice), 64);
}

#[test]
fn gatehouse_config_is_the_default_for_every_command() {
    let demo = demo_config();
    let env = |args: &[&str]| {
        let out = run(gatehouse(args).env("GATEHOUSE_CONFIG", &demo));
        assert_eq!(code(&out), 0, "{args:?}: {}", text(&out.stderr));
        out
    };
    env(&["token", "issue", "--url", "/data/1", "--subject", "ops"]);
    let explained = env(&["explain", "--url", "https://api.example.com/public/x"]);
    assert!(
        text(&explained.stdout).contains("ALLOW"),
        "{}",
        text(&explained.stdout)
    );
    // Pointing it at a missing file is a configuration error, not the demo.
    let out = run(gatehouse(&["explain", "--url", "https://a.example/"])
        .env("GATEHOUSE_CONFIG", "/nonexistent.yaml"));
    assert_eq!(code(&out), 78, "{}", text(&out.stderr));
}

#[test]
fn dash_o_dash_writes_to_standard_output() {
    let dir = TempDir::new("stdout");
    let out =
        run(gatehouse(&["keys", "generate", "--alg", "EdDSA", "-o", "-"]).current_dir(&dir.0));
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let pem = text(&out.stdout);
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
    assert!(
        text(&out.stderr).starts_with("kid "),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.0.join("-").exists(), "no file named `-`");
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 0);

    // openapi merge, from a backend document in a file.
    std::fs::write(
        dir.0.join("gatehouse.yaml"),
        "openapi:\n  backends:\n    - {name: jobs, mount: /jobs, file: jobs.json}\n",
    )
    .unwrap();
    std::fs::write(
        dir.0.join("jobs.json"),
        r#"{"openapi": "3.0.3", "info": {"title": "jobs", "version": "1"},
            "paths": {"/list": {"get": {"responses": {"200": {"description": "ok"}}}}}}"#,
    )
    .unwrap();
    let config = dir.0.join("gatehouse.yaml");
    let out = run(&mut gatehouse(&[
        "openapi",
        "merge",
        "-c",
        config.to_str().unwrap(),
        "-o",
        "-",
    ]));
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert!(doc["paths"]["/jobs/list"].is_object(), "{doc}");
    // And to a file, with a summary on stdout.
    let file = dir.0.join("merged.json");
    let out = run(&mut gatehouse(&[
        "openapi",
        "merge",
        "-c",
        config.to_str().unwrap(),
        "--out",
        file.to_str().unwrap(),
    ]));
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("(1 paths)"),
        "{}",
        text(&out.stdout)
    );
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(written, doc);
}

#[test]
fn token_issue_reads_durations_as_the_config_file_does() {
    let demo = demo_config();
    let issue = |duration: &str| {
        run(gatehouse(&[
            "token",
            "issue",
            "-c",
            demo.to_str().unwrap(),
            "--url",
            "/data/*",
            "--subject",
            "ops",
            "--duration",
            duration,
        ])
        // The demo allows 24h; this one 3 days.
        .env("GATEHOUSE_ISSUER__LINKS__MAX_DURATION", "3d"))
    };
    let out = issue("2d");
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim().split('.').count(),
        3,
        "a JWT on stdout"
    );
    // "valid NBF..EXP (Unix time)": two days apart.
    let stderr = text(&out.stderr);
    let window = stderr
        .split("valid ")
        .nth(1)
        .and_then(|w| w.split(' ').next())
        .unwrap();
    let (from, to) = window.split_once("..").unwrap();
    let lifetime = to.parse::<u64>().unwrap() - from.parse::<u64>().unwrap();
    assert_eq!(lifetime, 2 * 86_400, "{stderr}");

    assert_eq!(code(&issue("1h 30m")), 0);
    let bad = issue("2 fortnights");
    assert_eq!(code(&bad), 64);
    assert!(
        text(&bad.stderr).contains("a duration like 30s, 5m, 1h30m or 2d"),
        "{}",
        text(&bad.stderr)
    );
    let too_long = issue("4d");
    assert_eq!(code(&too_long), 64);
    assert!(
        text(&too_long.stderr).contains("maximum"),
        "{}",
        text(&too_long.stderr)
    );
    assert!(too_long.stdout.is_empty());
}

#[test]
fn version_shows_the_version_commit_and_build_date() {
    let version = run(&mut gatehouse(&["version"]));
    assert_eq!(code(&version), 0);
    let line = text(&version.stdout);
    let line = line.trim_end();
    let prefix = format!("gatehouse {} (commit ", env!("CARGO_PKG_VERSION"));
    let rest = line
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{line}"));
    let (commit, date) = rest
        .strip_suffix(')')
        .and_then(|r| r.split_once(", built "))
        .unwrap();
    assert!(
        commit == "unknown" || (commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{commit}"
    );
    let parts: Vec<&str> = date.split('-').collect();
    assert_eq!(
        parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
        [4, 2, 2],
        "{date}"
    );
    assert!(parts.iter().all(|p| p.parse::<u32>().is_ok()), "{date}");
    for flag in ["-V", "--version"] {
        let out = run(&mut gatehouse(&[flag]));
        assert_eq!(code(&out), 0);
        assert_eq!(text(&out.stdout).trim_end(), line);
    }
}

#[test]
fn completions_are_scripts_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F _gatehouse"),
        ("zsh", "#compdef gatehouse"),
        ("fish", "complete -c gatehouse"),
    ] {
        let out = run(&mut gatehouse(&["completions", shell]));
        assert_eq!(code(&out), 0, "{shell}");
        let script = text(&out.stdout);
        assert!(script.contains(marker), "{shell}: {script}");
        for word in ["check-config", "serve", "demo", "explain", "openapi"] {
            assert!(script.contains(word), "{shell} lacks {word}");
        }
    }
}

#[test]
fn serve_refuses_to_run_without_a_configuration() {
    let out = run(&mut gatehouse(&["serve"]));
    assert_eq!(code(&out), 64);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("serve --demo") && stderr.contains("-c FILE"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    // --demo and a configuration exclude each other, wherever it comes from.
    let demo = demo_config();
    let demo = demo.to_str().unwrap();
    assert_eq!(
        code(&run(&mut gatehouse(&["serve", "--demo", "-c", demo]))),
        64
    );
    let out = run(gatehouse(&["serve", "--demo"]).env("GATEHOUSE_CONFIG", demo));
    assert_eq!(code(&out), 64);
    assert!(
        text(&out.stderr).contains("unset GATEHOUSE_CONFIG"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn serve_demo_warns_loudly_and_serves() {
    let mut child = gatehouse(&["serve", "--demo"])
        .env("GATEHOUSE_SERVER__GRPC_ADDR", "127.0.0.1:0")
        .env("GATEHOUSE_SERVER__HTTP_ADDR", "127.0.0.1:0")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let listening = loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => {
                let done = line.contains("gatehouse listening");
                seen.push(line);
                if done {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let seen = seen.join("\n");
    assert!(listening, "never listening:\n{seen}");
    assert!(seen.contains("DEMO MODE"), "{seen}");
    assert!(
        seen.contains("PUBLIC") && seen.contains("NEVER use --demo in production"),
        "{seen}"
    );
}

#[test]
fn keys_store_key_writes_a_private_key_that_check_config_accepts() {
    let dir = TempDir::new("store-key");
    let key = dir.0.join("store.key");
    let out = run(&mut gatehouse(&[
        "keys",
        "store-key",
        "-o",
        key.to_str().unwrap(),
    ]));
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let written = std::fs::read_to_string(&key).unwrap();
    assert_eq!(written.len(), 65, "64 hex characters and a newline");
    assert!(written.ends_with('\n'));
    assert!(written[..64].bytes().all(|b| b.is_ascii_hexdigit()));
    // The key id printed is not the key.
    let id = text(&out.stdout).trim().to_string();
    assert_eq!(id.len(), 8, "{id}");
    assert!(!written.contains(&id));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Not overwritten without --force.
    let again = run(&mut gatehouse(&[
        "keys",
        "store-key",
        "-o",
        key.to_str().unwrap(),
    ]));
    assert_eq!(code(&again), 1, "{}", text(&again.stderr));
    assert_eq!(std::fs::read_to_string(&key).unwrap(), written);

    let check = |file: &Path, extra: &[(&str, &str)]| {
        let mut cmd = gatehouse(&["check-config", "-c", demo_config().to_str().unwrap()]);
        cmd.env("GATEHOUSE_STORE__ENCRYPTION_KEY_FILE", file);
        for (name, value) in extra {
            cmd.env(name, value);
        }
        run(&mut cmd)
    };
    let ok = check(&key, &[]);
    assert_eq!(code(&ok), 0, "{}", text(&ok.stderr));

    // A bad key file is a configuration error naming the key and the line,
    // never the key material.
    std::fs::write(&key, format!("{}\nnot-a-key\n", &written[..64])).unwrap();
    let bad = check(&key, &[]);
    assert_eq!(code(&bad), 78, "{}", text(&bad.stderr));
    let stderr = text(&bad.stderr);
    assert!(
        stderr.contains("store.encryption_key_file") && stderr.contains("line 2"),
        "{stderr}"
    );
    assert!(!stderr.contains(&written[..16]), "{stderr}");

    // Redis without a key file.
    let out = run(
        gatehouse(&["check-config", "-c", demo_config().to_str().unwrap()])
            .env("GATEHOUSE_STORE__REDIS__URL", "redis://127.0.0.1:1"),
    );
    assert_eq!(code(&out), 78, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("required with store.redis"),
        "{}",
        text(&out.stderr)
    );
}
