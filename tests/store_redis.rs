//! The Redis store against real servers (`gatehouse::testkit::redis`
//! starts them on free loopback ports): the conformance suite on one
//! server, a 3-master Cluster and a Sentinel group; an outage and the
//! recovery after it, without rebuilding the store; a start while Redis is
//! down; a Sentinel failover; TLS to a private CA; ACL user and password
//! from a file; the health ping behind `gatehouse_store_up`; a rate limit
//! shared exactly by two connections (two replicas); and `check-config`
//! refusing a bad `store.redis`.
//!
//! Needs `redis-server`, `redis-sentinel` and `redis-cli` on PATH (`bash
//! tests/setup.sh`); without them these tests fail, saying so.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse::config::{ClusterConfig, ConfigSource, RedisStoreConfig, SentinelConfig};
use gatehouse::metrics::Metrics;
use gatehouse::store::metered::MeteredStore;
use gatehouse::store::redis::RedisStore;
use gatehouse::store::{Store, StoreError};
use gatehouse::testkit::TempDir;
use gatehouse::testkit::certs::{Leaf, TestCa};
use gatehouse::testkit::redis::{RedisCluster, RedisSentinel, RedisServer, free_port};
use gatehouse::testkit::store::run_all;

const MINUTE: Duration = Duration::from_secs(60);

fn source() -> ConfigSource {
    ConfigSource::Text(String::new())
}

fn standalone(url: &str) -> RedisStoreConfig {
    RedisStoreConfig {
        url: Some(url.into()),
        command_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_secs(1),
        ..Default::default()
    }
}

fn store(config: &RedisStoreConfig) -> Arc<dyn Store> {
    Arc::new(RedisStore::new(config, &source()).expect("valid store.redis"))
}

/// Retries `op` until it succeeds or `limit` passes.
async fn eventually<T, F, Fut>(limit: Duration, mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn standalone_conforms() {
    let server = RedisServer::start();
    let config = RedisStoreConfig {
        key_prefix: "gatehouse-test:".into(),
        ..standalone(&server.url())
    };
    let store = store(&config);
    run_all(store.clone()).await;
    // Keys carry the prefix; values carry a TTL.
    store.set("probe", b"v", MINUTE).await.unwrap();
    assert_eq!(server.cli(&["get", "gatehouse-test:probe"]).trim(), "v");
    let ttl: i64 = server
        .cli(&["pttl", "gatehouse-test:probe"])
        .trim()
        .parse()
        .unwrap();
    assert!((1..=60_000).contains(&ttl), "{ttl}");
    store.index_add("idx", "m", MINUTE).await.unwrap();
    store
        .index_add("idx", "n", Duration::from_secs(1))
        .await
        .unwrap();
    let ttl: i64 = server
        .cli(&["pttl", "gatehouse-test:idx"])
        .trim()
        .parse()
        .unwrap();
    assert!(ttl > 30_000, "a shorter TTL never shortens an index: {ttl}");
    // A rate limit's value is the Redis clock's time (µs) at which the
    // allowance is whole again, and the key expires then.
    let decision = store.rate_limit("rl", 4, MINUTE).await.unwrap();
    assert!(decision.allowed);
    let value: u64 = server
        .cli(&["get", "gatehouse-test:rl"])
        .trim()
        .parse()
        .expect("a number of microseconds");
    let now_us: u64 = {
        let time = server.cli(&["time"]);
        let mut parts = time.split_whitespace().map(|p| p.parse::<u64>().unwrap());
        parts.next().unwrap() * 1_000_000 + parts.next().unwrap()
    };
    assert!(
        value > now_us && value <= now_us + 15_000_000,
        "{value} vs {now_us}"
    );
    let ttl: i64 = server
        .cli(&["pttl", "gatehouse-test:rl"])
        .trim()
        .parse()
        .unwrap();
    assert!((1..=15_000).contains(&ttl), "one interval (15 s): {ttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_conforms() {
    let cluster = RedisCluster::start(3);
    let config = RedisStoreConfig {
        cluster: Some(ClusterConfig {
            // One seed node is enough; the rest is discovered.
            nodes: vec![cluster.urls()[1].clone()],
        }),
        command_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let store = store(&config);
    run_all(store.clone()).await;
    // The keys went to more than one master: this really ran on a cluster.
    for i in 0..30 {
        store
            .set(&format!("spread:{i}"), b"x", MINUTE)
            .await
            .unwrap();
    }
    let holding = cluster
        .nodes
        .iter()
        .filter(|n| n.cli(&["dbsize"]).trim() != "0")
        .count();
    assert!(holding >= 2, "keys on {holding} node(s)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sentinel_conforms_and_follows_a_failover() {
    let group = RedisSentinel::start();
    let config = RedisStoreConfig {
        sentinel: Some(SentinelConfig {
            master_name: RedisSentinel::MASTER_NAME.into(),
            // A dead sentinel first: the live one answers instead.
            nodes: vec![format!("redis://127.0.0.1:{}", free_port()), group.url()],
            ..Default::default()
        }),
        command_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let store = store(&config);
    run_all(store.clone()).await;

    let old_master = group.master_port().expect("a master");
    assert_eq!(old_master, group.servers[0].port);
    store.set("before", b"1", MINUTE).await.unwrap();
    // Replication is asynchronous and SENTINEL FAILOVER does not wait for
    // the replica to catch up: let it, or the write may be lost.
    let replicated = gatehouse::testkit::redis::wait_for(Duration::from_secs(5), || {
        group.servers[1].cli(&["get", "gatehouse:before"]).trim() == "1"
    });
    assert!(replicated, "the replica never received the write");
    let answer = group.failover();
    assert!(answer.contains("OK"), "SENTINEL FAILOVER: {answer}");
    let moved = gatehouse::testkit::redis::wait_for(Duration::from_secs(15), || {
        group.master_port() == Some(group.servers[1].port)
    });
    assert!(moved, "the sentinel did not promote the replica");
    // Until the old master is demoted, it still takes writes (and loses
    // them when it resyncs: Redis replication is asynchronous). The
    // sentinel demotes it on its next round, up to 10 s later; do what it
    // will do now. From then on it answers writes with READONLY, which
    // must send the store back to the sentinels.
    let new_master = group.servers[1].port.to_string();
    let answer = group.servers[0].cli(&["replicaof", "127.0.0.1", &new_master]);
    assert!(answer.contains("OK"), "REPLICAOF: {answer}");
    // Writes reach the new master: the store re-resolved it (the old one
    // answers READONLY once demoted, or drops the connection).
    let started = Instant::now();
    eventually(Duration::from_secs(15), || store.set("after", b"2", MINUTE))
        .await
        .expect("writes succeed after the failover");
    eventually(Duration::from_secs(5), || async {
        match group.servers[1].cli(&["get", "gatehouse:after"]).trim() {
            "2" => Ok(()),
            other => Err(StoreError::Unavailable(format!("new master has {other:?}"))),
        }
    })
    .await
    .expect("the write landed on the new master");
    assert_eq!(
        store.get("before").await,
        Ok(Some(b"1".to_vec())),
        "replicated"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_outage_fails_operations_quickly_and_recovery_needs_no_restart() {
    let mut server = RedisServer::start();
    let store = store(&standalone(&server.url()));
    store.set("k", b"v", MINUTE).await.unwrap();

    server.kill();
    for op in 0..3 {
        let started = Instant::now();
        let result = store.set_if_absent("once", b"x", MINUTE).await;
        assert!(
            matches!(result, Err(StoreError::Unavailable(_))),
            "op {op}: {result:?}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "op {op} took {:?}",
            started.elapsed()
        );
    }
    assert!(matches!(
        store.ping().await,
        Err(StoreError::Unavailable(_))
    ));

    server.restart();
    eventually(Duration::from_secs(5), || store.set("k", b"again", MINUTE))
        .await
        .expect("the same store works again after Redis is back");
    assert_eq!(store.get("k").await, Ok(Some(b"again".to_vec())));
    assert_eq!(store.set_if_absent("once", b"x", MINUTE).await, Ok(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_built_while_redis_is_down_works_once_it_is_up() {
    let port = free_port();
    let store = store(&standalone(&format!("redis://127.0.0.1:{port}")));
    let started = Instant::now();
    assert!(matches!(
        store.get("k").await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(started.elapsed() < Duration::from_secs(1));
    let _server = RedisServer::start_on(port, &[]);
    eventually(Duration::from_secs(5), || store.set("k", b"v", MINUTE))
        .await
        .expect("connects once Redis is up");
    assert_eq!(store.get("k").await, Ok(Some(b"v".to_vec())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_server_times_out_instead_of_hanging() {
    let server = RedisServer::start_with(&["--enable-debug-command", "yes"]);
    let config = RedisStoreConfig {
        command_timeout: Duration::from_millis(300),
        ..standalone(&server.url())
    };
    let store = store(&config);
    store.set("k", b"v", MINUTE).await.unwrap();
    // DEBUG SLEEP blocks the (single-threaded) server for 2 s.
    let sleeper = std::thread::spawn({
        let port = server.port;
        move || gatehouse::testkit::redis::cli(port, &["debug", "sleep", "2"])
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let result = store.get("k").await;
    assert!(
        matches!(result, Err(StoreError::Unavailable(ref e)) if e.contains("no answer")),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );
    sleeper.join().unwrap();
    eventually(Duration::from_secs(3), || store.get("k"))
        .await
        .expect("answers again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_to_a_private_ca() {
    let ca = TestCa::new("gatehouse test Redis CA");
    let (cert, key) = ca.issue_with_key(&Leaf {
        subject: vec![("CN", "localhost")],
        dns: vec!["localhost"],
        ..Default::default()
    });
    let server = RedisServer::start_tls(&cert, &key);
    let dir = TempDir::new("tls");
    std::fs::write(dir.0.join("ca.pem"), &ca.pem).unwrap();
    let url = format!("rediss://localhost:{}", server.port);
    let trusted = RedisStoreConfig {
        ca_file: Some(dir.0.join("ca.pem")),
        ..standalone(&url)
    };
    let store = store(&trusted);
    // The first command can outrun the TLS handshake to a server that has
    // just started (a command waits at most its 500 ms for the connection):
    // wait for the connection, as a replica's readiness does.
    eventually(Duration::from_secs(5), || {
        store.set("tls", b"sealed in transit", MINUTE)
    })
    .await
    .expect("the store connects over TLS");
    assert_eq!(
        store.get("tls").await,
        Ok(Some(b"sealed in transit".to_vec()))
    );
    // Without the CA the server's certificate is not trusted. The command
    // waits long enough for the handshake to fail, not to time out first.
    let untrusted = self::store(&RedisStoreConfig {
        command_timeout: Duration::from_secs(3),
        ..standalone(&url)
    });
    match untrusted.get("tls").await {
        Err(StoreError::Unavailable(e)) => {
            assert!(e.to_lowercase().contains("certificate"), "{e}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acl_user_and_password_file() {
    let password = "c0rrect-h0rse:battery";
    // The least the store needs (docs/operations/shared-state.md): its
    // keys, and the commands it and its scripts send.
    let server = RedisServer::start_with(&[
        "--user",
        "default",
        "off",
        "--user",
        "gatehouse",
        "on",
        &format!(">{password}"),
        "~gatehouse:*",
        "-@all",
        "+get",
        "+set",
        "+getdel",
        "+del",
        "+sadd",
        "+srem",
        "+smembers",
        "+pttl",
        "+pexpire",
        "+eval",
        "+evalsha",
        "+script|load",
        "+ping",
        // The rate-limit script reads the server's clock.
        "+time",
    ]);
    let dir = TempDir::new("acl");
    std::fs::write(dir.0.join("password"), format!("{password}\n")).unwrap();
    std::fs::write(dir.0.join("wrong"), "not the password\n").unwrap();
    let with = |file: &str| RedisStoreConfig {
        username: Some("gatehouse".into()),
        password_file: Some(dir.0.join(file)),
        ..standalone(&server.url())
    };
    let good = store(&with("password"));
    good.set("k", b"v", MINUTE).await.unwrap();
    assert_eq!(good.get("k").await, Ok(Some(b"v".to_vec())));
    run_all(good.clone()).await;

    let bad = store(&with("wrong"));
    match bad.get("k").await {
        Err(StoreError::Unavailable(e)) => {
            assert!(!e.contains("not the password"), "{e}");
            assert!(!e.contains(password), "{e}");
            assert!(
                e.contains("WRONGPASS") || e.to_lowercase().contains("auth"),
                "{e}"
            );
        }
        other => panic!("{other:?}"),
    }
}

/// Renders the registry and reads `gatehouse_store_up`.
fn store_up(metrics: &Metrics) -> Option<f64> {
    let text = metrics.render(&[], 0).expect("render");
    text.lines()
        .find_map(|l| l.strip_prefix("gatehouse_store_up "))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_health_ping_keeps_store_up_current() {
    let mut server = RedisServer::start();
    let metrics = Arc::new(Metrics::new().unwrap());
    let config = RedisStoreConfig {
        health_interval: Duration::from_millis(200),
        ..standalone(&server.url())
    };
    let store: Arc<dyn Store> = Arc::new(MeteredStore::new(
        store(&config),
        metrics.store_metrics().unwrap(),
    ));
    assert_eq!(store.health_interval(), Some(Duration::from_millis(200)));
    let upkeep = gatehouse::store::spawn_upkeep(store.clone());
    let poll = |want: f64| {
        let metrics = metrics.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if store_up(&metrics) == Some(want) {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        }
    };
    server.kill();
    assert!(poll(0.0).await, "down without any check using the store");
    server.restart();
    assert!(
        poll(1.0).await,
        "up again without any check using the store"
    );
    upkeep.abort();
}

#[test]
fn check_config_reports_a_bad_redis_store() {
    let dir = TempDir::new("check-config");
    let demo =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/demo.yaml"))
            .unwrap();
    assert!(!demo.contains("\nstore:"), "the demo config names no store");
    let config = dir.0.join("gatehouse.yaml");
    let key_file = dir.0.join("store.key");
    std::fs::write(&key_file, format!("{}\n", "ab".repeat(32))).unwrap();
    let run = |store: &str| {
        std::fs::write(
            &config,
            format!(
                "{demo}\nstore:\n  encryption_key_file: {}\n{store}",
                key_file.display()
            ),
        )
        .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["check-config", "-c"])
            .arg(&config)
            .env_remove("GATEHOUSE_CONFIG")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned()
                + &String::from_utf8_lossy(&out.stdout),
        )
    };
    let (ok, text) = run("  redis:\n    url: redis://:hunter2@127.0.0.1:6379\n");
    assert!(!ok, "{text}");
    assert!(text.contains("store.redis.url"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    let (ok, text) = run("  redis:\n    cluster:\n      nodes: []\n");
    assert!(!ok, "{text}");
    assert!(text.contains("store.redis.cluster.nodes"), "{text}");
    let (ok, text) = run("  redis:\n    url: redis://127.0.0.1:6379\n    password_file: missing\n");
    assert!(!ok, "{text}");
    assert!(text.contains("store.redis.password_file"), "{text}");
    // Valid, with nothing listening: check-config does not connect.
    let (ok, text) = run(&format!(
        "  redis:\n    url: redis://127.0.0.1:{}\n",
        free_port()
    ));
    assert!(ok, "{text}");
}

/// Two stores (two replicas' connections) on one server share one
/// allowance: of 40 concurrent calls with limit 10, split across both,
/// exactly 10 pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rate_limit_is_exact_across_two_connections() {
    let server = RedisServer::start();
    let replicas = [
        store(&standalone(&server.url())),
        store(&standalone(&server.url())),
    ];
    for round in 0..3 {
        let key = format!("rate-two:{round}");
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let (store, key) = (replicas[i % 2].clone(), key.clone());
                tokio::spawn(async move { store.rate_limit(&key, 10, MINUTE).await })
            })
            .collect();
        let mut allowed = 0;
        for t in tasks {
            if t.await.unwrap().unwrap().allowed {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 10, "round {round}");
    }
}
