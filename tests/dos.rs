//! Denial-of-service bounds, against the real `gatehouse serve` process
//! (its memory is measured from /proc, apart from the test's own): ten
//! thousand concurrent checks, a megabyte-sized request, and a flood of
//! distinct invalid tokens. Each is a bound the server keeps, not a speed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::Read as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gatehouse::proto::auth::CheckRequest;
use gatehouse::proto::auth::authorization_client::AuthorizationClient;
use gatehouse::testkit::{self, TestKey, http_status};
use jsonwebtoken::Algorithm;
use tonic::transport::Channel;

const ISS: &str = "https://issuer.test";

/// The gatehouse binary, serving on a free port, killed on drop.
struct Server {
    child: Child,
    addr: String,
    _dir: TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory removed on drop.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start(key: &TestKey) -> Server {
    let dir = std::env::temp_dir().join(format!(
        "gatehouse-dos-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let (grpc, http) = (free_port(), free_port());
    let jwks = testkit::jwks(&[key]);
    let config = format!(
        r#"
server: {{grpc_addr: "127.0.0.1:{grpc}", http_addr: "127.0.0.1:{http}", grpc_threads: 1, drain_timeout: 1s}}
log: {{level: warn, decisions: none}}
jwt:
  issuers:
    - issuer: {ISS}
      audiences: [api]
      algorithms: [ES256]
      keys: {{jwks: {jwks}}}
policy:
  rules:
    - {{name: open, match: {{path: {{prefix: /open/}}}}, auth: anonymous}}
    - {{name: api, match: {{path: {{prefix: /api/}}}}}}
"#
    );
    let path = dir.join("gatehouse.yaml");
    std::fs::write(&path, config).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["serve", "--config"])
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = Server {
        child,
        addr: format!("http://127.0.0.1:{grpc}"),
        _dir: TempDir(dir),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = server.child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("gatehouse exited ({status}): {err}");
        }
        if let Ok(channel) = connect(&server.addr).await
            && AuthorizationClient::new(channel)
                .check(check("/open/x", None, 0))
                .await
                .is_ok()
        {
            break;
        }
        assert!(Instant::now() < deadline, "gatehouse did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nothing reads stderr from here on: `log.level: warn` keeps it quiet.
    server.child.stderr.take();
    server
}

async fn connect(addr: &str) -> Result<Channel, tonic::transport::Error> {
    Channel::from_shared(addr.to_string())
        .unwrap()
        .connect()
        .await
}

/// Resident memory of `pid` now and at its peak, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn check(path: &str, token: Option<&str>, padding: usize) -> CheckRequest {
    let mut headers = HashMap::new();
    if let Some(token) = token {
        headers.insert("authorization".to_string(), format!("Bearer {token}"));
    }
    if padding > 0 {
        headers.insert("x-padding".to_string(), "a".repeat(padding));
    }
    testkit::check_request("svc.test", path, "10.0.0.1", headers)
}

/// Ten thousand checks in flight at once over four connections: every one
/// is answered, and the server's peak memory grows by a bounded amount
/// (HTTP/2 `max_concurrent_streams` holds each connection to 1024 streams;
/// the rest wait in the client).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_checks_are_answered_in_bounded_memory() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let server = start(&key).await;
    let pid = server.child.id();
    let (before, _) = memory_kib(pid);
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(connect(&server.addr).await.unwrap());
    }
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..10_000 {
        let mut client = AuthorizationClient::new(channels[i % 4].clone());
        tasks.spawn(async move { client.check(check("/open/x", None, 0)).await });
    }
    let mut allowed = 0;
    while let Some(result) = tasks.join_next().await {
        let response = result.unwrap().expect("every check is answered");
        assert_eq!(http_status(response.get_ref()), 200);
        allowed += 1;
    }
    assert_eq!(allowed, 10_000);
    let (_, peak) = memory_kib(pid);
    let growth_mib = peak.saturating_sub(before) / 1024;
    eprintln!("rss before {before} KiB, peak {peak} KiB: +{growth_mib} MiB");
    assert!(growth_mib < 128, "peak memory grew by {growth_mib} MiB");
}

/// A megabyte-sized CheckRequest (a header no default Envoy would pass) is
/// refused before it is decoded, and the server goes on answering.
#[tokio::test]
async fn a_one_megabyte_request_is_refused_and_the_server_goes_on() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let server = start(&key).await;
    let mut client = AuthorizationClient::new(connect(&server.addr).await.unwrap());
    let status = client
        .check(check("/open/x", None, 1 << 20))
        .await
        .expect_err("a 1 MiB request is refused");
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    // Just under the limit (256 KiB) is still answered.
    let response = client
        .check(check("/open/x", None, 200 << 10))
        .await
        .unwrap();
    assert_eq!(http_status(response.get_ref()), 200);
    let response = client.check(check("/open/x", None, 0)).await.unwrap();
    assert_eq!(http_status(response.get_ref()), 200);
}

/// Twenty thousand distinct invalid tokens (a stranger's signature under
/// the issuer's `kid`, unknown `kid`s, garbage): every one is a 401 and
/// none is remembered, so memory after the flood is what it was after
/// the first few thousand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_distinct_invalid_tokens_does_not_grow_memory() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let stranger = TestKey::generate(Algorithm::ES256, "k1");
    let unknown_kid = TestKey::generate(Algorithm::ES256, "k-unknown");
    let server = start(&key).await;
    let pid = server.child.id();
    let channel = connect(&server.addr).await.unwrap();
    let mut after_warm_up = 0;
    for round in 0..40 {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..500 {
            let n = round * 500 + i;
            let mut claims = testkit::claims(ISS, "api", &format!("user-{n}"));
            claims["jti"] = serde_json::json!(n);
            let token = match n % 3 {
                0 => stranger.mint(&claims),
                1 => unknown_kid.mint(&claims),
                _ => format!("garbage.{n}.x"),
            };
            let mut client = AuthorizationClient::new(channel.clone());
            tasks.spawn(async move { client.check(check("/api/x", Some(&token), 0)).await });
        }
        while let Some(result) = tasks.join_next().await {
            let response = result.unwrap().unwrap();
            assert_eq!(http_status(response.get_ref()), 401);
        }
        if round == 3 {
            after_warm_up = memory_kib(pid).0;
        }
    }
    let (now, _) = memory_kib(pid);
    let growth_kib = now.saturating_sub(after_warm_up);
    eprintln!("rss after 2,000 tokens {after_warm_up} KiB, after 20,000 {now} KiB");
    assert!(growth_kib < 8 * 1024, "memory grew by {growth_kib} KiB");
}
