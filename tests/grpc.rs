//! The gRPC server in-process on an ephemeral port: Check through a real
//! tonic client, health, reflection and shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use gatehouse::app;
use gatehouse::config::{self, ConfigSource};
use gatehouse::proto::auth::attribute_context::{HttpRequest, Request as AttrRequest};
use gatehouse::proto::auth::authorization_client::AuthorizationClient;
use gatehouse::proto::auth::check_response::HttpResponse;
use gatehouse::proto::auth::{AttributeContext, CheckRequest};
use gatehouse::serve::grpc::Listener;
use gatehouse::testkit::{self, TestKey, http_status};
use jsonwebtoken::Algorithm;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const ISS: &str = "https://issuer.test";

fn config_yaml(key: &TestKey) -> String {
    format!(
        r#"
server: {{grpc_addr: "127.0.0.1:0", realm: test}}
jwt:
  issuers:
    - issuer: {ISS}
      audiences: [api]
      algorithms: [ES256]
      keys: {{jwks: {jwks}}}
scopes:
  group_mapping: {{"read:x": [readers]}}
policy:
  rules:
    - name: open
      match: {{path: {{prefix: /open/}}}}
      auth: anonymous
    - name: read
      match: {{path: {{prefix: /x/}}}}
      scopes: ["read:x"]
"#,
        jwks = testkit::jwks(&[key])
    )
}

struct Running {
    addr: std::net::SocketAddr,
    channel: Channel,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<Result<(), gatehouse::serve::grpc::ServeError>>,
}

async fn start(yaml: &str) -> Running {
    start_with_threads(yaml, 1).await
}

async fn start_with_threads(yaml: &str, threads: usize) -> Running {
    let source = ConfigSource::Text(yaml.to_string());
    let cfg = config::load(&source, []).expect("config");
    let engine = Arc::new(app::build_engine(&cfg, &source).expect("engine"));
    let listener = Listener::bind(cfg.server.grpc_addr)
        .await
        .expect("bind")
        .with_threads(threads);
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(listener.serve(engine, Duration::from_secs(2), async {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    Running {
        addr,
        channel,
        stop: Some(stop),
        server,
    }
}

fn check(path: &str, auth: Option<&str>) -> CheckRequest {
    let mut headers = std::collections::HashMap::new();
    if let Some(token) = auth {
        headers.insert("authorization".to_string(), format!("Bearer {token}"));
    }
    headers.insert("x-auth-request-user".to_string(), "spoofed".to_string());
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(AttrRequest {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    path: path.into(),
                    host: "svc.test".into(),
                    scheme: "https".into(),
                    headers,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

#[tokio::test]
async fn check_over_grpc() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let running = start(&config_yaml(&key)).await;
    let mut client = AuthorizationClient::new(running.channel.clone());

    let mut claims = testkit::claims(ISS, "api", "alice");
    claims["isMemberOf"] = serde_json::json!([{"name": "readers"}]);
    let good = key.mint(&claims);
    let no_scope = key.mint(&testkit::claims(ISS, "api", "bob"));

    let cases: Vec<(CheckRequest, u16, i32)> = vec![
        (check("/open/a", None), 200, 0),
        (check("/x/a", None), 401, 16),
        (check("/x/a", Some("garbage")), 401, 16),
        (check("/x/a", Some(&no_scope)), 403, 7),
        (check("/x/a", Some(&good)), 200, 0),
        (check("/x/%2e%2e/%2e%2e/etc", Some(&good)), 400, 3),
        (check("/nothing", Some(&good)), 403, 7),
        (CheckRequest::default(), 400, 3),
    ];
    for (req, status, code) in cases {
        let path = req
            .attributes
            .as_ref()
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref())
            .map(|h| h.path.clone());
        let resp = client
            .check(req)
            .await
            .expect("a denial is not a gRPC error")
            .into_inner();
        assert_eq!(http_status(&resp), status, "{path:?}");
        assert_eq!(resp.status.as_ref().map(|s| s.code), Some(code), "{path:?}");
    }

    let resp = client
        .check(check("/x/a", Some(&good)))
        .await
        .expect("ok")
        .into_inner();
    let Some(HttpResponse::OkResponse(ok)) = resp.http_response else {
        panic!("allowed");
    };
    let user = ok
        .headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .find(|h| h.key == "x-auth-request-user")
        .map(|h| h.value.clone());
    assert_eq!(user.as_deref(), Some("alice"));
    stop(running).await;
}

/// Several serving threads share the socket: many connections at once
/// each get correct answers, and shutdown drains every thread.
#[tokio::test]
async fn several_serving_threads_answer_every_connection() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let running = start_with_threads(&config_yaml(&key), 3).await;
    let mut claims = testkit::claims(ISS, "api", "alice");
    claims["isMemberOf"] = serde_json::json!([{"name": "readers"}]);
    let good = key.mint(&claims);
    let target = format!("http://{}", running.addr);

    let mut tasks = Vec::new();
    for n in 0..8 {
        let (target, good) = (target.clone(), good.clone());
        tasks.push(tokio::spawn(async move {
            // A channel of its own: a separate TCP connection per task.
            let channel = Channel::from_shared(target)
                .unwrap()
                .connect()
                .await
                .unwrap();
            let mut client = AuthorizationClient::new(channel);
            let mut statuses = Vec::new();
            for i in 0..20 {
                let token = (i + n) % 2 == 0;
                let request = check("/x/1", token.then_some(good.as_str()));
                let response = client.check(request).await.unwrap().into_inner();
                statuses.push((token, http_status(&response)));
            }
            statuses
        }));
    }
    for task in tasks {
        for (token, status) in task.await.unwrap() {
            assert_eq!(status, if token { 200 } else { 401 });
        }
    }
    stop(running).await;
}

#[tokio::test]
async fn health_reports_serving_then_not_serving_on_shutdown() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let running = start(&config_yaml(&key)).await;
    let mut health = HealthClient::new(running.channel.clone());
    let mut status = ServingStatus::Unknown;
    for _ in 0..50 {
        let resp = health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .expect("health")
            .into_inner();
        status = resp.status();
        if status == ServingStatus::Serving {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, ServingStatus::Serving);
    let resp = health
        .check(HealthCheckRequest {
            service: "envoy.service.auth.v3.Authorization".into(),
        })
        .await
        .expect("health")
        .into_inner();
    assert_eq!(resp.status(), ServingStatus::Serving);
    stop(running).await;
}

#[tokio::test]
async fn not_serving_until_remote_keys_load() {
    // jwks_uri on a closed port: keys never load, so never SERVING, and
    // tokens fail closed with 503.
    let yaml = format!(
        r#"
server: {{grpc_addr: "127.0.0.1:0"}}
jwt:
  issuers:
    - issuer: {ISS}
      audiences: [api]
      algorithms: [ES256]
      keys: {{jwks_uri: "http://127.0.0.1:9/jwks.json"}}
      refresh: {{retry_interval: 1s, timeout: 1s}}
policy:
  rules:
    - name: all
      match: {{path: {{prefix: /}}}}
"#
    );
    let running = start(&yaml).await;
    let mut health = HealthClient::new(running.channel.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resp = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health")
        .into_inner();
    assert_eq!(resp.status(), ServingStatus::NotServing);
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let token = key.mint(&testkit::claims(ISS, "api", "u"));
    let mut client = AuthorizationClient::new(running.channel.clone());
    let resp = client
        .check(check("/a", Some(&token)))
        .await
        .expect("check")
        .into_inner();
    assert_eq!(http_status(&resp), 503);
    assert_eq!(resp.status.map(|s| s.code), Some(14));
    stop(running).await;
}

#[tokio::test]
async fn reflection_lists_our_services() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let key = TestKey::generate(Algorithm::ES256, "k1");
    let running = start(&config_yaml(&key)).await;
    let mut client = ServerReflectionClient::new(running.channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("reflection")
        .into_inner();
    let msg = stream.message().await.expect("stream").expect("one answer");
    let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"envoy.service.auth.v3.Authorization".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_string()),
        "{names:?}"
    );
    stop(running).await;
}

async fn stop(mut running: Running) {
    if let Some(stop) = running.stop.take() {
        let _ = stop.send(());
    }
    let result = tokio::time::timeout(Duration::from_secs(5), running.server)
        .await
        .expect("server stops within the drain timeout");
    assert!(result.expect("join").is_ok());
}

#[tokio::test]
async fn health_watch_sees_not_serving_while_draining() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let mut running = start(&config_yaml(&key)).await;
    let mut health = HealthClient::new(running.channel.clone());
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("watch")
        .into_inner();
    // The first statuses: NOT_SERVING until the (inline) keys are seen, then SERVING.
    let mut status = ServingStatus::Unknown;
    while status != ServingStatus::Serving {
        let msg = tokio::time::timeout(Duration::from_secs(5), watch.message())
            .await
            .expect("a status within 5s")
            .expect("stream")
            .expect("message");
        status = msg.status();
    }
    let _ = running.stop.take().expect("stop handle").send(());
    let msg = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .expect("a status within 5s")
        .expect("stream")
        .expect("message");
    assert_eq!(msg.status(), ServingStatus::NotServing);
    drop(watch);
    stop(running).await;
}

/// `server.grpc_socket`: a stale socket from an earlier run is replaced;
/// any other file in its place is refused, never deleted.
#[tokio::test]
async fn unix_socket_replaces_stale_sockets_only() {
    let dir = std::env::temp_dir().join(format!("gatehouse-uds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("grpc.sock");
    let _ = std::fs::remove_file(&path);
    let stale = std::os::unix::net::UnixListener::bind(&path).unwrap();
    drop(stale); // the file stays, as after a crash
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    assert!(listener.with_unix_socket(&path).is_ok());

    let file = dir.join("not-a-socket");
    std::fs::write(&file, b"keep me").unwrap();
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let err = listener.with_unix_socket(&file).err().expect("refused");
    assert!(err.to_string().contains("not a socket"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
    std::fs::remove_dir_all(&dir).unwrap();
}
