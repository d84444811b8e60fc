//! `store.redis` validation: every mistake is refused with the key at
//! fault, before anything connects. (Runs against real servers are in
//! `tests/store_redis.rs`.)

use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::config::{ClusterConfig, MemoryStoreConfig, SentinelConfig, StoreConfig};

fn url(url: &str) -> RedisStoreConfig {
    RedisStoreConfig {
        url: Some(url.into()),
        ..Default::default()
    }
}

fn text() -> ConfigSource {
    ConfigSource::Text(String::new())
}

/// The key and reason `config` is refused with.
fn refused(config: &RedisStoreConfig) -> (String, String) {
    refused_in(config, &text())
}

fn refused_in(config: &RedisStoreConfig, source: &ConfigSource) -> (String, String) {
    match RedisStore::new(config, source) {
        Ok(_) => panic!("accepted: {config:?}"),
        Err(ConfigError::Invalid { key, reason }) => (key, reason),
        Err(other) => panic!("unexpected error: {other}"),
    }
}

/// A fresh directory for files the config names.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "gatehouse-redis-config-{name}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[test]
fn a_valid_config_builds_without_connecting() {
    // Nothing listens on port 1: building must not care.
    let store = RedisStore::new(&url("redis://127.0.0.1:1/3"), &text()).expect("builds");
    assert_eq!(store.key("link-used:x"), "gatehouse:link-used:x");
    assert_eq!(store.health_interval(), Some(Duration::from_secs(5)));
}

#[test]
fn an_empty_prefix_is_allowed() {
    let cfg = RedisStoreConfig {
        key_prefix: String::new(),
        ..url("redis://localhost:6379")
    };
    let store = RedisStore::new(&cfg, &text()).expect("builds");
    assert_eq!(store.key("a:b"), "a:b");
}

#[test]
fn exactly_one_deployment() {
    let none = RedisStoreConfig::default();
    assert_eq!(refused(&none).0, "store.redis");
    let two = RedisStoreConfig {
        cluster: Some(ClusterConfig {
            nodes: vec!["redis://127.0.0.1:7000".into()],
        }),
        ..url("redis://127.0.0.1:6379")
    };
    let (key, reason) = refused(&two);
    assert_eq!(key, "store.redis");
    assert!(
        reason.contains("exactly one of url, sentinel or cluster"),
        "{reason}"
    );
}

#[test]
fn memory_and_redis_together_are_refused() {
    let cfg = StoreConfig {
        memory: Some(MemoryStoreConfig::default()),
        redis: Some(url("redis://127.0.0.1:6379")),
        encryption_key_file: None,
    };
    match crate::store::build(&cfg, &text()) {
        Err(ConfigError::Invalid { key, reason }) => {
            assert_eq!(key, "store.redis");
            assert!(reason.contains("not both"), "{reason}");
        }
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("accepted"),
    }
    let redis_only = StoreConfig {
        memory: None,
        ..cfg
    };
    assert!(crate::store::build(&redis_only, &text()).is_ok());
}

#[test]
fn only_redis_and_rediss_urls() {
    for bad in [
        "http://127.0.0.1:6379",
        "unix:///tmp/redis.sock",
        "redis+unix:///x",
    ] {
        let (key, reason) = refused(&url(bad));
        assert_eq!(key, "store.redis.url", "{bad}");
        assert!(reason.contains("not supported"), "{bad}: {reason}");
    }
    let (key, reason) = refused(&url("127.0.0.1:6379"));
    assert_eq!(key, "store.redis.url");
    assert!(reason.contains("must be a URL"), "{reason}");
    let (_, reason) = refused(&url("redis://"));
    assert!(reason.contains("not a valid Redis URL"), "{reason}");
    let (_, reason) = refused(&url("redis://127.0.0.1:6379/0?protocol=resp3"));
    assert!(reason.contains("no query parameters"), "{reason}");
    assert!(RedisStore::new(&url("REDISS://redis.example:6380"), &text()).is_ok());
}

#[test]
fn a_password_in_the_url_is_refused_and_not_repeated() {
    let (key, reason) = refused(&url("redis://:hunter2@127.0.0.1:6379"));
    assert_eq!(key, "store.redis.url");
    assert!(reason.contains("password_file"), "{reason}");
    assert!(!reason.contains("hunter2"), "{reason}");
    let (_, reason) = refused(&url("redis://app:hunter2@127.0.0.1:6379"));
    assert!(!reason.contains("hunter2"), "{reason}");
    let (_, reason) = refused(&url("redis://app@127.0.0.1:6379"));
    assert!(reason.contains("store.redis.username"), "{reason}");
    // A bad scheme does not repeat the URL either.
    let (_, reason) = refused(&url("http://:hunter2@127.0.0.1:6379"));
    assert!(!reason.contains("hunter2"), "{reason}");
}

#[test]
fn sentinel_needs_a_master_name_and_nodes() {
    let sentinel = |master_name: &str, nodes: &[&str]| RedisStoreConfig {
        sentinel: Some(SentinelConfig {
            master_name: master_name.into(),
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        refused(&sentinel("", &["redis://127.0.0.1:26379"])).0,
        "store.redis.sentinel.master_name"
    );
    assert_eq!(
        refused(&sentinel("mymaster", &[])).0,
        "store.redis.sentinel.nodes"
    );
    assert_eq!(
        refused(&sentinel(
            "mymaster",
            &["redis://127.0.0.1:26379", "tcp://x:1"]
        ))
        .0,
        "store.redis.sentinel.nodes[1]"
    );
    let (key, reason) = refused(&sentinel(
        "mymaster",
        &["redis://127.0.0.1:26379", "rediss://127.0.0.1:26380"],
    ));
    assert_eq!(key, "store.redis.sentinel.nodes");
    assert!(reason.contains("mixes"), "{reason}");
    let mut negative = sentinel("mymaster", &["redis://127.0.0.1:26379"]);
    if let Some(s) = negative.sentinel.as_mut() {
        s.db = -1;
    }
    assert_eq!(refused(&negative).0, "store.redis.sentinel.db");
    assert!(RedisStore::new(&sentinel("mymaster", &["redis://127.0.0.1:26379"]), &text()).is_ok());
}

#[test]
fn cluster_needs_nodes_on_database_zero() {
    let cluster = |nodes: &[&str]| RedisStoreConfig {
        cluster: Some(ClusterConfig {
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
        }),
        ..Default::default()
    };
    assert_eq!(refused(&cluster(&[])).0, "store.redis.cluster.nodes");
    let (key, reason) = refused(&cluster(&[
        "redis://127.0.0.1:7000",
        "redis://127.0.0.1:7001/2",
    ]));
    assert_eq!(key, "store.redis.cluster.nodes[1]");
    assert!(reason.contains("database 0"), "{reason}");
    assert!(RedisStore::new(&cluster(&["redis://127.0.0.1:7000"]), &text()).is_ok());
}

#[test]
fn password_files_are_read_relative_to_the_config_and_must_hold_a_password() {
    let dir = scratch("password");
    std::fs::write(dir.join("password"), "s3cret\n").expect("write");
    std::fs::write(dir.join("empty"), "\n").expect("write");
    let source = ConfigSource::File(dir.join("gatehouse.yaml"));
    let with = |file: &str| RedisStoreConfig {
        password_file: Some(PathBuf::from(file)),
        ..url("redis://127.0.0.1:6379")
    };
    assert!(RedisStore::new(&with("password"), &source).is_ok());
    let (key, reason) = refused_in(&with("missing"), &source);
    assert_eq!(key, "store.redis.password_file");
    assert!(reason.contains("cannot read"), "{reason}");
    assert!(
        reason.contains(&dir.join("missing").display().to_string()),
        "{reason}"
    );
    let (_, reason) = refused_in(&with("empty"), &source);
    assert!(reason.contains("is empty"), "{reason}");
    let sentinel = RedisStoreConfig {
        sentinel: Some(SentinelConfig {
            master_name: "mymaster".into(),
            nodes: vec!["redis://127.0.0.1:26379".into()],
            sentinel_password_file: Some(dir.join("missing")),
            db: 0,
        }),
        ..Default::default()
    };
    assert_eq!(
        refused(&sentinel).0,
        "store.redis.sentinel.sentinel_password_file"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_ca_file_must_hold_certificates_and_needs_tls() {
    let dir = scratch("ca");
    let ca = crate::testkit::certs::TestCa::new("Redis test CA");
    std::fs::write(dir.join("ca.pem"), &ca.pem).expect("write");
    std::fs::write(dir.join("junk.pem"), "not a certificate\n").expect("write");
    let with = |url_text: &str, file: &str| RedisStoreConfig {
        ca_file: Some(dir.join(file)),
        ..url(url_text)
    };
    assert!(RedisStore::new(&with("rediss://127.0.0.1:6380", "ca.pem"), &text()).is_ok());
    let (key, reason) = refused(&with("rediss://127.0.0.1:6380", "junk.pem"));
    assert_eq!(key, "store.redis.ca_file");
    assert!(reason.contains("no PEM certificate"), "{reason}");
    let (key, reason) = refused(&with("rediss://127.0.0.1:6380", "missing.pem"));
    assert_eq!(key, "store.redis.ca_file");
    assert!(reason.contains("cannot read"), "{reason}");
    let (key, reason) = refused(&with("redis://127.0.0.1:6379", "ca.pem"));
    assert_eq!(key, "store.redis.ca_file");
    assert!(reason.contains("rediss://"), "{reason}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn timeouts_and_username_must_not_be_empty() {
    for (field, key) in [
        (0, "store.redis.connect_timeout"),
        (1, "store.redis.command_timeout"),
        (2, "store.redis.health_interval"),
    ] {
        let mut cfg = url("redis://127.0.0.1:6379");
        let zero = Duration::ZERO;
        match field {
            0 => cfg.connect_timeout = zero,
            1 => cfg.command_timeout = zero,
            _ => cfg.health_interval = zero,
        }
        assert_eq!(refused(&cfg).0, key);
    }
    let cfg = RedisStoreConfig {
        username: Some(String::new()),
        ..url("redis://127.0.0.1:6379")
    };
    assert_eq!(refused(&cfg).0, "store.redis.username");
}

#[test]
fn times_to_live_are_whole_milliseconds_within_bounds() {
    assert_eq!(millis(Duration::ZERO), 1);
    assert_eq!(millis(Duration::from_micros(10)), 1);
    assert_eq!(millis(Duration::from_millis(1500)), 1500);
    assert_eq!(millis(Duration::MAX), MAX_TTL_MS);
}

#[tokio::test]
async fn without_a_server_operations_fail_as_unavailable_within_the_timeout() {
    // A port nothing listens on: the connection is refused at once.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let cfg = RedisStoreConfig {
        command_timeout: Duration::from_millis(300),
        password_file: None,
        ..url(&format!("redis://127.0.0.1:{port}"))
    };
    let store = RedisStore::new(&cfg, &text()).expect("builds");
    let started = std::time::Instant::now();
    let err = store.get("k").await.expect_err("no server");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    match err {
        StoreError::Unavailable(text) => assert!(text.contains("cannot connect"), "{text}"),
        other => panic!("{other:?}"),
    }
    // Within the retry delay, the next call fails at once without trying.
    let started = std::time::Instant::now();
    assert!(matches!(
        store.ping().await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(started.elapsed() < Duration::from_millis(100));
}
