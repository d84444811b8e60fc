//! Microbenchmarks of one Check: request conversion, policy match at
//! 10 / 1,000 / 10,000 rules, JWT verification cached and uncached for
//! RS256, ES256 and EdDSA, and the whole in-process pipeline from a
//! `CheckRequest` to a `CheckResponse` (1 issuer and 10 rules against
//! 100 issuers and 10,000 rules), what recording a check's metrics adds
//! to it, the pipeline with tracing spans on, and sealing and opening a
//! 200-byte store value (AES-256-GCM, `store::sealed`), and an API-token
//! check beside a JWT check (served from the local cache, with a memory or
//! a real Redis store behind it, and uncached: one Redis read per check),
//! with the Redis commands per check counted by the server, and a check
//! authenticated by a browser session (served from the local cache)
//! beside a JWT check.
//!
//! Run: `cargo bench --bench check` (see BENCHMARKS.md).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, criterion_group, criterion_main};
use gatehouse::app;
use gatehouse::check::pipeline::Engine;
use gatehouse::config::{self, ConfigSource, LogConfig};
use gatehouse::model::request::Request;
use gatehouse::proto::auth::CheckRequest;
use gatehouse::secret::Secret;
use gatehouse::telemetry;
use gatehouse::testkit::redis::RedisServer;
use gatehouse::testkit::{self, TestKey};
use gatehouse::tokens::service::{Caller, NewToken};
use jsonwebtoken::Algorithm;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};

/// A CheckRequest shaped like the ones Envoy sends for a browser-ish call.
fn check_request(host: &str, path: &str, token: &str) -> CheckRequest {
    let mut headers: HashMap<String, String> = [
        (":authority", host),
        (":method", "GET"),
        (":path", path),
        (":scheme", "https"),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, deflate, br"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) bench/1.0"),
        ("x-forwarded-for", "203.0.113.7, 10.0.0.2"),
        ("x-forwarded-proto", "https"),
        ("x-request-id", "3c159aa1-c4fa-4a5b-9c58-49c6df50b9c0"),
        ("x-envoy-expected-rq-timeout-ms", "15000"),
        ("cookie", "theme=dark; lang=en"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    headers.insert("authorization".into(), format!("Bearer {token}"));
    testkit::check_request(host, path, "10.0.0.2", headers)
}

/// YAML for `issuers` issuers (the first one holds `key`) and `rules`
/// rules; the benchmarked request matches the middle rule.
fn config_yaml(key: &TestKey, issuers: usize, rules: usize, cache: usize) -> String {
    let mut y = String::new();
    writeln!(y, "network: {{trusted_proxies: [10.0.0.0/8]}}").unwrap();
    writeln!(y, "jwt:\n  cache_size: {cache}\n  issuers:").unwrap();
    let jwks = testkit::jwks(&[key]);
    for i in 0..issuers {
        writeln!(
            y,
            "    - {{issuer: \"https://issuer{i}.test\", audiences: [api], algorithms: [RS256, ES256, EdDSA], keys: {{jwks: {jwks}}}}}"
        )
        .unwrap();
    }
    writeln!(y, "policy:\n  rules:").unwrap();
    for r in 0..rules {
        writeln!(
            y,
            "    - {{name: r{r}, match: {{hosts: [\"svc{}.example.com\"], path: {{prefix: /api{r}/}}, methods: [GET, POST]}}, scopes: [read]}}",
            r % 50
        )
        .unwrap();
    }
    y
}

fn engine(yaml: &str) -> Engine {
    let source = ConfigSource::Text(yaml.to_string());
    let cfg = config::load(&source, []).unwrap();
    app::build_engine(&cfg, &source).unwrap()
}

fn token(key: &TestKey) -> String {
    let mut claims = testkit::claims("https://issuer0.test", "api", "alice");
    claims["scope"] = serde_json::json!("read write");
    claims["email"] = serde_json::json!("alice@example.com");
    claims["isMemberOf"] = serde_json::json!([{"name": "g1"}, {"name": "g2"}]);
    key.mint(&claims)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn request_conversion(c: &mut Criterion) {
    let key = TestKey::generate(Algorithm::ES256, "k");
    let req = check_request("svc5.example.com", "/api5/items/42?x=1", &token(&key));
    c.bench_function("request/convert", |b| {
        b.iter(|| Request::from_check(black_box(&req), &["10.0.0.0/8".parse().unwrap()]).unwrap())
    });
}

fn policy_match(c: &mut Criterion) {
    let key = TestKey::generate(Algorithm::ES256, "k");
    let mut group = c.benchmark_group("policy/match");
    for rules in [10, 1_000, 10_000] {
        let engine = engine(&config_yaml(&key, 1, rules, 0));
        let middle = rules / 2;
        let req = Request::from_check(
            &check_request(
                &format!("svc{}.example.com", middle % 50),
                &format!("/api{middle}/x"),
                "t",
            ),
            &[],
        )
        .unwrap();
        group.bench_with_input(BenchmarkId::from_parameter(rules), &req, |b, req| {
            b.iter(|| engine.policy.requirement(black_box(req)).unwrap())
        });
    }
    group.finish();
}

fn jwt_verify(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("jwt/verify");
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        let key = TestKey::generate(alg, "k");
        let token = Secret::new(token(&key));
        for (label, cache) in [("uncached", 0), ("cached", 1000)] {
            let engine = engine(&config_yaml(&key, 1, 1, cache));
            let jwt = &engine.authn.jwt;
            rt.block_on(jwt.verify(&token)).unwrap();
            group.bench_function(BenchmarkId::new(label, format!("{alg:?}")), |b| {
                b.to_async(&rt)
                    .iter(|| async { jwt.verify(black_box(&token)).await.unwrap() })
            });
        }
    }
    group.finish();
}

/// Benchmarks `engine`'s check of a request matching the middle one of
/// its `rules` rules (of [`config_yaml`]), after checking it is allowed.
fn bench_middle_rule(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &tokio::runtime::Runtime,
    label: &str,
    engine: &Engine,
    rules: usize,
    token: &str,
) {
    let middle = rules / 2;
    let req = check_request(
        &format!("svc{}.example.com", middle % 50),
        &format!("/api{middle}/x"),
        token,
    );
    let (_, decision) = rt.block_on(engine.check(&req));
    assert!(decision.result.is_ok(), "{label}: {decision:?}");
    group.bench_function(label, |b| {
        b.to_async(rt)
            .iter(|| async { engine.check(black_box(&req)).await })
    });
}

fn pipeline(c: &mut Criterion) {
    let rt = runtime();
    let key = TestKey::generate(Algorithm::RS256, "k");
    let tok = token(&key);
    let mut group = c.benchmark_group("pipeline/check");
    for (label, issuers, rules, cache) in [
        ("1-issuer-10-rules-cached", 1, 10, 1000),
        ("100-issuers-10000-rules-cached", 100, 10_000, 1000),
        ("1-issuer-10-rules-uncached", 1, 10, 0),
    ] {
        let engine = engine(&config_yaml(&key, issuers, rules, cache));
        bench_middle_rule(&mut group, &rt, label, &engine, rules, &tok);
    }
    // Tracing on: a span per check and per phase through the OpenTelemetry
    // layer, into a provider without exporter (the cost of the spans, not
    // of shipping them), sampled and not sampled.
    for (label, sampler) in [
        ("1-issuer-10-rules-cached-traced", Sampler::AlwaysOn),
        (
            "1-issuer-10-rules-cached-traced-unsampled",
            Sampler::AlwaysOff,
        ),
    ] {
        let provider = SdkTracerProvider::builder().with_sampler(sampler).build();
        let log = LogConfig {
            level: "off".into(),
            ..LogConfig::default()
        };
        let _subscriber =
            tracing::subscriber::set_default(telemetry::subscriber(&log, Some(&provider)));
        let mut engine = engine(&config_yaml(&key, 1, 10, 1000));
        engine.telemetry.spans = true;
        let req = check_request("svc5.example.com", "/api5/x", &tok);
        group.bench_function(label, |b| {
            b.to_async(&rt)
                .iter(|| async { engine.check(black_box(&req)).await })
        });
    }
    group.finish();
}

/// The cost of a rule's CEL `when` condition: the cached-token check of
/// `pipeline/check` with the matched rule's condition true, beside the
/// same check without one, and with every one of 10,000 rules holding a
/// condition (only the matched rule's is evaluated).
fn conditions(c: &mut Criterion) {
    let rt = runtime();
    let key = TestKey::generate(Algorithm::RS256, "k");
    let tok = token(&key);
    let mut group = c.benchmark_group("cel/check");
    let groups = r#"'"g1" in identity.groups && request.method == "GET"'"#;
    let claims = r#"'identity.claims.email.endsWith("@example.com")'"#;
    for (label, rules, when) in [
        ("10-rules-no-condition", 10, None),
        ("10-rules-groups-and-method", 10, Some(groups)),
        ("10-rules-claims", 10, Some(claims)),
        ("10000-rules-groups-and-method", 10_000, Some(groups)),
    ] {
        let mut yaml = config_yaml(&key, 1, rules, 1000);
        if let Some(when) = when {
            yaml = yaml.replace(
                "scopes: [read]}",
                &format!("scopes: [read], when: {when}}}"),
            );
        }
        bench_middle_rule(&mut group, &rt, label, &engine(&yaml), rules, &tok);
    }
    group.finish();
}

/// What the gRPC service adds per check: recording the decision in the
/// engine's metrics (a rule-name lookup, a counter, a histogram), alone
/// and with the check it follows.
fn metrics_record(c: &mut Criterion) {
    let rt = runtime();
    let key = TestKey::generate(Algorithm::RS256, "k");
    let tok = token(&key);
    let engine = engine(&config_yaml(&key, 1, 10, 1000));
    let req = check_request("svc5.example.com", "/api5/x", &tok);
    let (_, decision) = rt.block_on(engine.check(&req));
    assert!(decision.result.is_ok(), "{decision:?}");
    let mut group = c.benchmark_group("metrics");
    group.bench_function("record", |b| {
        b.iter(|| {
            engine
                .metrics
                .record(black_box(&decision), std::time::Duration::from_micros(4))
        })
    });
    group.bench_function("check+record/1-issuer-10-rules-cached", |b| {
        b.to_async(&rt).iter(|| async {
            let started = std::time::Instant::now();
            let (response, decision) = engine.check(black_box(&req)).await;
            engine.metrics.record(&decision, started.elapsed());
            response
        })
    });
    group.finish();
}

/// Encryption at rest: what the sealed store adds to each write (seal) and
/// read (open) of a value the size of an API token record, alone and as a
/// round trip through the sealed memory store.
fn store_seal(c: &mut Criterion) {
    use gatehouse::store::Store as _;
    use gatehouse::store::memory::MemoryStore;
    use gatehouse::store::sealed::{Keyring, SealedStore};

    let keys = Keyring::random().unwrap();
    let value = [0x5au8; 200];
    let key = "api-token:0123456789abcdef0123456789abcdef";
    let mut group = c.benchmark_group("store");
    group.bench_function("seal+open/200B", |b| {
        b.iter(|| {
            let sealed = keys.seal(key.as_bytes(), black_box(&value)).unwrap();
            keys.open(key.as_bytes(), black_box(&sealed)).unwrap()
        })
    });
    let rt = runtime();
    let ttl = std::time::Duration::from_secs(60);
    let plain = MemoryStore::new(1000);
    group.bench_function("memory/set+get/200B", |b| {
        b.to_async(&rt).iter(|| async {
            plain.set(key, black_box(&value), ttl).await.unwrap();
            plain.get(key).await.unwrap()
        })
    });
    let sealed = SealedStore::new(
        std::sync::Arc::new(MemoryStore::new(1000)),
        Keyring::random().unwrap(),
    );
    group.bench_function("sealed-memory/set+get/200B", |b| {
        b.to_async(&rt).iter(|| async {
            sealed.set(key, black_box(&value), ttl).await.unwrap();
            sealed.get(key).await.unwrap()
        })
    });
    group.finish();
}

/// A config with API tokens on, `extra` appended (a store, a cache TTL).
fn api_token_engine(key: &TestKey, api_tokens: &str, store: &str) -> Engine {
    let mut yaml = config_yaml(key, 1, 10, 1000);
    writeln!(yaml, "api_tokens: {api_tokens}\n{store}").unwrap();
    engine(&yaml)
}

/// Creates an API token with scope `read` for the JWT's user.
fn api_token(rt: &tokio::runtime::Runtime, engine: &Engine, jwt: &str, name: &str) -> String {
    let tokens = engine.authn.api_tokens.as_ref().expect("api_tokens on");
    let identity = rt
        .block_on(engine.authn.jwt.verify(&Secret::new(jwt)))
        .expect("the JWT verifies");
    let caller = Caller {
        identity: &identity,
        superuser: false,
    };
    let new = NewToken {
        name: format!("{name}-{}", std::process::id()),
        scopes: vec!["read".into()],
        ..NewToken::default()
    };
    let created = rt
        .block_on(tokens.create(&caller, "alice", new, gatehouse::clock::now_secs()))
        .expect("created");
    created.token.expose().to_string()
}

/// Commands the Redis server has executed so far (INFO commandstats).
fn redis_commands(redis: &RedisServer) -> u64 {
    redis
        .cli(&["INFO", "commandstats"])
        .lines()
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

fn api_tokens(c: &mut Criterion) {
    let rt = runtime();
    let key = TestKey::generate(Algorithm::RS256, "k");
    let jwt = token(&key);
    let redis = RedisServer::start();
    let key_file = std::env::temp_dir().join(format!("gatehouse-bench-{}.key", std::process::id()));
    std::fs::write(&key_file, format!("{}\n", "5a".repeat(32))).unwrap();
    let redis_store = format!(
        "store: {{redis: {{url: \"{}\"}}, encryption_key_file: \"{}\"}}",
        redis.url(),
        key_file.display()
    );
    let jwt_engine = engine(&config_yaml(&key, 1, 10, 1000));
    let cases = [
        (
            "api-token-memory-cached",
            api_token_engine(&key, "{}", ""),
            None,
        ),
        (
            "api-token-redis-cached",
            api_token_engine(&key, "{}", &redis_store),
            Some(&redis),
        ),
        (
            "api-token-redis-uncached",
            api_token_engine(&key, "{cache_ttl: 0s}", &redis_store),
            Some(&redis),
        ),
    ];
    let mut group = c.benchmark_group("api-token/check");
    let req = check_request("svc5.example.com", "/api5/x", &jwt);
    let (_, decision) = rt.block_on(jwt_engine.check(&req));
    assert!(decision.result.is_ok(), "{decision:?}");
    group.bench_function("jwt-cached", |b| {
        b.to_async(&rt)
            .iter(|| async { jwt_engine.check(black_box(&req)).await })
    });
    for (label, engine, server) in &cases {
        let token = api_token(&rt, engine, &jwt, label);
        let req = check_request("svc5.example.com", "/api5/x", &token);
        let (_, decision) = rt.block_on(engine.check(&req));
        assert!(decision.result.is_ok(), "{label}: {decision:?}");
        group.bench_function(*label, |b| {
            b.to_async(&rt)
                .iter(|| async { engine.check(black_box(&req)).await })
        });
        if let Some(server) = server {
            // Two seconds of back-to-back checks: several cache lifetimes.
            let before = redis_commands(server);
            let started = std::time::Instant::now();
            let checks = rt.block_on(async {
                let mut n = 0u64;
                while started.elapsed() < std::time::Duration::from_secs(2) {
                    engine.check(&req).await;
                    n += 1;
                }
                n
            });
            // INFO itself counts once.
            let commands = redis_commands(server) - before - 1;
            eprintln!(
                "{label}: {commands} Redis commands in {checks} checks over 2 s = {:.5} per check",
                commands as f64 / checks as f64
            );
        }
    }
    group.finish();
    let _ = std::fs::remove_file(&key_file);
}

/// A JWT check against a session-cookie check on the same engine, the
/// session served from the local session cache (memory store).
fn sessions(c: &mut Criterion) {
    use gatehouse::sessions::{NewSession, SessionIdentity, SessionTokens};
    let rt = runtime();
    let key = TestKey::generate(Algorithm::RS256, "k");
    let jwt = token(&key);
    let mut yaml = config_yaml(&key, 1, 10, 1000);
    writeln!(yaml, "login: {{session: {{}}}}").unwrap();
    let engine = engine(&yaml);
    let sessions = &engine.authn.sessions.as_ref().expect("login on").sessions;
    let new = NewSession {
        provider: "kc".into(),
        identity: SessionIdentity {
            subject: "alice-sub".into(),
            username: Some("alice".into()),
            email: Some("alice@example.org".into()),
            groups: vec!["staff".into()],
            scopes: ["read".to_string()].into(),
            ..SessionIdentity::default()
        },
        tokens: SessionTokens {
            access_token: Some(Secret::new("x".repeat(900))),
            access_expires: Some(gatehouse::clock::now_secs() + 86_400),
            access_issued: None,
            refresh_token: Some(Secret::new("r".repeat(400))),
            id_token: Some(Secret::new("i".repeat(900))),
        },
        ..NewSession::default()
    };
    let id = rt.block_on(sessions.create(new)).expect("created").id;
    let jwt_req = check_request("svc5.example.com", "/api5/x", &jwt);
    let mut session_req = check_request("svc5.example.com", "/api5/x", "unused");
    if let Some(http) = session_req
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
    {
        http.headers.remove("authorization");
        http.headers.insert(
            "cookie".into(),
            format!(
                "theme=dark; __Host-gatehouse_session={}; lang=en",
                id.expose()
            ),
        );
    }
    for req in [&jwt_req, &session_req] {
        let (_, decision) = rt.block_on(engine.check(req));
        assert!(decision.result.is_ok(), "{decision:?}");
    }
    let mut group = c.benchmark_group("session/check");
    group.bench_function("jwt-cached", |b| {
        b.to_async(&rt)
            .iter(|| async { engine.check(black_box(&jwt_req)).await })
    });
    group.bench_function("session-memory-cached", |b| {
        b.to_async(&rt)
            .iter(|| async { engine.check(black_box(&session_req)).await })
    });
    group.finish();
}

criterion_group!(
    benches,
    request_conversion,
    policy_match,
    jwt_verify,
    pipeline,
    conditions,
    metrics_record,
    store_seal,
    api_tokens,
    sessions
);
criterion_main!(benches);
