//! Operating gatehouse, in process on ephemeral ports: `/metrics` scraped
//! from the side port while checks go through the gRPC server, and a hot
//! reload under a steady stream of checks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gatehouse::app::{self, Carry};
use gatehouse::config::{self, ConfigSource};
use gatehouse::metrics::Metrics;
use gatehouse::proto::auth::authorization_client::AuthorizationClient;
use gatehouse::proto::auth::check_response::HttpResponse;
use gatehouse::proto::auth::{CheckRequest, CheckResponse};
use gatehouse::serve::grpc::Listener;
use gatehouse::serve::http::HttpListener;
use gatehouse::serve::live::LiveEngine;
use gatehouse::serve::reload::Reloader;
use gatehouse::testkit;
use tonic::transport::Channel;

const RULES: &str = r#"
server: {grpc_addr: "127.0.0.1:0", http_addr: "127.0.0.1:0", realm: test}
policy:
  rules:
    - name: open
      match: {path: {prefix: /open/}}
      auth: anonymous
    - name: private
      match: {path: {prefix: /private/}}
"#;

const NEW_RULE: &str = r#"
    - name: new
      match: {path: {prefix: /new/}}
      auth: anonymous
"#;

struct Servers {
    channel: Channel,
    http: String,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

async fn serve(live: LiveEngine) -> Servers {
    let grpc = Listener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let grpc_addr = grpc.local_addr().unwrap();
    let http = HttpListener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let http_addr = http.local_addr().unwrap();
    let (stop, _) = tokio::sync::watch::channel(false);
    let stopped = |stop: &tokio::sync::watch::Sender<bool>| {
        let mut rx = stop.subscribe();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let drain = Duration::from_secs(2);
    let tasks = vec![
        tokio::spawn({
            let (live, stopped) = (live.clone(), stopped(&stop));
            async move { grpc.serve(live, drain, stopped).await.unwrap() }
        }),
        tokio::spawn({
            let stopped = stopped(&stop);
            async move { http.serve(live, drain, stopped).await.unwrap() }
        }),
    ];
    let channel = Channel::from_shared(format!("http://{grpc_addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Servers {
        channel,
        http: format!("http://{http_addr}"),
        stop,
        tasks,
    }
}

impl Servers {
    async fn scrape(&self) -> String {
        let response = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(format!("{}/metrics", self.http))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        response.text().await.unwrap()
    }

    async fn stop(self) {
        self.stop.send_replace(true);
        for task in self.tasks {
            task.await.unwrap();
        }
    }
}

/// The value of one series, 0 when absent (a counter not yet made).
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(s, _)| *s == series)
        .map_or(0.0, |(_, v)| v.parse().unwrap())
}

fn check(path: &str) -> CheckRequest {
    testkit::check_request("svc.test", path, "10.0.0.1", Default::default())
}

fn http_status(response: &CheckResponse) -> u16 {
    match &response.http_response {
        Some(HttpResponse::OkResponse(_)) => 200,
        Some(HttpResponse::DeniedResponse(d)) => d.status.as_ref().map_or(0, |s| s.code as u16),
        None => 0,
    }
}

#[tokio::test]
async fn checks_over_grpc_show_in_the_scraped_metrics() {
    let source = ConfigSource::Text(RULES.into());
    let cfg = config::load(&source, []).unwrap();
    let live = LiveEngine::from(app::build_engine(&cfg, &source).unwrap());
    let servers = serve(live).await;
    let mut client = AuthorizationClient::new(servers.channel.clone());
    let series = [
        r#"gatehouse_checks_total{decision="allow",reason="",rule="open"}"#,
        r#"gatehouse_checks_total{decision="deny",reason="no_credential",rule="private"}"#,
        r#"gatehouse_checks_total{decision="deny",reason="no_rule",rule=""}"#,
        r#"gatehouse_checks_total{decision="deny",reason="bad_request",rule=""}"#,
        r#"gatehouse_check_duration_seconds_count{decision="allow"}"#,
        r#"gatehouse_check_duration_seconds_count{decision="deny"}"#,
    ];
    let before = servers.scrape().await;
    for request in [
        check("/open/a"),
        check("/open/b"),
        check("/open/c"),
        check("/private/x"),
        check("/private/y"),
        check("/elsewhere"),
        CheckRequest::default(),
    ] {
        client.check(request).await.unwrap();
    }
    let after = servers.scrape().await;
    let deltas: Vec<f64> = series
        .iter()
        .map(|s| value(&after, s) - value(&before, s))
        .collect();
    assert_eq!(deltas, [3.0, 2.0, 1.0, 1.0, 3.0, 4.0], "{after}");
    // The allow series of a rule never used is there, at 0.
    assert!(
        after.contains("gatehouse_checks_total{decision=\"allow\",reason=\"\",rule=\"private\"} 0")
    );
    servers.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reload_under_load_fails_no_check() {
    let dir = std::env::temp_dir().join(format!("gatehouse-ops-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gatehouse.yaml");
    std::fs::write(&file, RULES).unwrap();
    let source = ConfigSource::File(file.clone());
    let cfg = config::load(&source, []).unwrap();
    let metrics = Arc::new(Metrics::new().unwrap());
    let engine = app::build_engine_with(&cfg, &source, &Carry::fresh(metrics.clone())).unwrap();
    let reloader = Reloader::start(cfg, source, Vec::new(), engine, metrics);
    let servers = serve(reloader.live()).await;

    // Four clients check /new/x and /open/x without pause.
    let running = Arc::new(AtomicBool::new(true));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let mut client = AuthorizationClient::new(servers.channel.clone());
            let running = running.clone();
            tokio::spawn(async move {
                let (mut new, mut open, mut failed) = (Vec::new(), 0, 0);
                while running.load(Ordering::Relaxed) {
                    match client.check(check("/new/x")).await {
                        Ok(r) => new.push(http_status(r.get_ref())),
                        Err(_) => failed += 1,
                    }
                    match client.check(check("/open/x")).await {
                        Ok(r) if http_status(r.get_ref()) == 200 => open += 1,
                        _ => failed += 1,
                    }
                }
                (new, open, failed)
            })
        })
        .collect();

    // Toggle the rule ten times, then leave it in.
    for round in 0..11 {
        tokio::time::sleep(Duration::from_millis(30)).await;
        let text = if round % 2 == 0 {
            format!("{RULES}{NEW_RULE}")
        } else {
            RULES.to_string()
        };
        std::fs::write(&file, text).unwrap();
        reloader.reload("test").await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    running.store(false, Ordering::Relaxed);

    let (mut allowed, mut denied, mut open, mut failed) = (0, 0, 0, 0);
    for client in clients {
        let (new, o, f) = client.await.unwrap();
        for status in new {
            match status {
                200 => allowed += 1,
                403 => denied += 1,
                other => panic!("unexpected status {other}"),
            }
        }
        open += o;
        failed += f;
    }
    assert_eq!(failed, 0, "no check failed or errored");
    assert!(
        allowed > 0 && denied > 0,
        "both decisions seen: {allowed} / {denied}"
    );
    assert!(open > 0);
    let mut client = AuthorizationClient::new(servers.channel.clone());
    let last = client.check(check("/new/x")).await.unwrap();
    assert_eq!(
        http_status(last.get_ref()),
        200,
        "the last configuration holds"
    );

    let text = servers.scrape().await;
    assert_eq!(
        value(&text, r#"gatehouse_config_reloads_total{result="success"}"#),
        11.0
    );
    let counted = value(
        &text,
        r#"gatehouse_checks_total{decision="allow",reason="",rule="new"}"#,
    );
    assert!(counted >= f64::from(allowed), "{counted} < {allowed}");
    servers.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
