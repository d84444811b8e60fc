//! `gatehouse-load`: a load generator for `Authorization/Check` over gRPC.
//!
//! It sends CheckRequests shaped like Envoy's, with a configurable mix of
//! valid tokens (from a pool of distinct users), invalid tokens and missing
//! credentials, either closed-loop (a fixed number of requests in flight)
//! or open-loop (a fixed arrival rate; latency is measured from each
//! request's *intended* start, so a stalled server is not hidden by the
//! generator waiting for it: coordinated omission is corrected). It
//! reports throughput, latency percentiles and, given the server's PID,
//! the server's CPU time per check (from `/proc/<pid>/task/*/schedstat`).
//!
//! By default tokens are signed with the demo key, so it works against
//! `gatehouse serve --demo` (the embedded demo configuration):
//!
//! ```text
//! gatehouse-load --rate 5000 --duration 20s --server-pid $(pgrep -x gatehouse)
//! ```
//!
//! With `--http-url` it sends plain HTTP `GET`s with the tokens as bearer
//! credentials instead (through an Envoy, say), one token per line from
//! `--tokens-file` or minted as above: `benches/e2e/compare.py --rate`
//! uses it for latency at a fixed arrival rate, which wrk cannot give.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use gatehouse::check::request::described::Described;
use gatehouse::proto::auth::CheckRequest;
use gatehouse::proto::auth::authorization_client::AuthorizationClient;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tokio::sync::Semaphore;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// Drive gatehouse's Check RPC and report latency and CPU per check.
#[derive(Parser, Debug)]
#[command(name = "gatehouse-load", version)]
struct Args {
    /// gRPC address of gatehouse.
    #[arg(long, default_value = "http://127.0.0.1:9191")]
    target: String,
    /// Open-loop arrival rate (checks per second); without it, closed-loop.
    #[arg(long)]
    rate: Option<u64>,
    /// Closed-loop: requests in flight.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// How long to send (after warm-up).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Warm-up before measuring (fills the server's token cache).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// gRPC connections (HTTP/2) to spread requests over.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Distinct users in the valid-token pool.
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// Mix in percent: valid,invalid,missing (must add up to 100).
    #[arg(long, default_value = "100,0,0")]
    mix: String,
    /// PEM private key signing the tokens (default: the demo key).
    #[arg(long, default_value = "config/demo/demo-signing-key.pem")]
    signing_key: PathBuf,
    /// Algorithm of the signing key: ES256, RS256 or EdDSA.
    #[arg(long, default_value = "ES256")]
    alg: String,
    /// `kid` placed in the token header.
    #[arg(long, default_value = "bYgm0qhVzimAlTKwKJS24--a4mFqla2U4xEZd0aEzZ0")]
    kid: String,
    /// `iss` of the tokens.
    #[arg(long, default_value = "https://demo.gatehouse.invalid")]
    issuer: String,
    /// `aud` of the tokens.
    #[arg(long, default_value = "demo")]
    audience: String,
    /// Request path (must be allowed for the pool's users).
    #[arg(long, default_value = "/data/items/1")]
    path: String,
    /// Host of the checked request.
    #[arg(long, default_value = "api.example.com")]
    host: String,
    /// Send `grpc.health.v1.Health/Check` instead of `Authorization/Check`:
    /// the floor of a gRPC round trip on this machine (same server, same
    /// transport, no authorization work), to compare latencies against.
    #[arg(long)]
    health_floor: bool,
    /// PID of the gatehouse process, to report its CPU time per check.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Send HTTP `GET`s to this URL (an Envoy's listener) instead of
    /// gRPC checks: 200 is an allow, 401 and 403 a denial.
    #[arg(long)]
    http_url: Option<String>,
    /// Bearer tokens, one per line (with `--http-url`), instead of minting.
    #[arg(long)]
    tokens_file: Option<PathBuf>,
}

/// What one request carries.
#[derive(Clone, Copy)]
enum Kind {
    Valid,
    Invalid,
    Missing,
}

/// What one request is: a gRPC check, or (HTTP mode) the
/// `Authorization` value of a `GET`, if any.
#[derive(Clone)]
enum Request {
    Check(Box<CheckRequest>),
    Http(Option<Arc<str>>),
}

/// Where requests go: gRPC channels, or one HTTP client and its URL.
#[derive(Clone)]
enum Target {
    Grpc(Vec<Channel>),
    Http(reqwest::Client, Arc<str>),
}

/// One thread: see [`run_open`] for why.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mix = parse_mix(&args.mix)?;
    let requests = Arc::new(build_requests(&args, mix)?);
    let channels = match &args.http_url {
        Some(url) => Target::Http(
            reqwest::Client::builder()
                .http1_only()
                .pool_max_idle_per_host(1024)
                .no_proxy()
                .build()?,
            url.as_str().into(),
        ),
        None => {
            let mut channels = Vec::with_capacity(args.connections.max(1));
            for _ in 0..args.connections.max(1) {
                channels.push(Channel::from_shared(args.target.clone())?.connect().await?);
            }
            Target::Grpc(channels)
        }
    };

    // Warm-up: every distinct request once, then closed-loop for a while.
    run_closed(
        &channels,
        &requests,
        args.concurrency,
        args.warmup,
        args.health_floor,
    )
    .await;

    let cpu_before = args.server_pid.and_then(cpu_time);
    let started = Instant::now();
    let (latencies, errors) = match args.rate {
        Some(rate) => run_open(&channels, &requests, rate, args.duration, args.health_floor).await,
        None => {
            let (concurrency, duration) = (args.concurrency, args.duration);
            run_closed(
                &channels,
                &requests,
                concurrency,
                duration,
                args.health_floor,
            )
            .await
        }
    };
    let elapsed = started.elapsed();
    let cpu_after = args.server_pid.and_then(cpu_time);

    report(
        &args,
        &latencies,
        errors,
        elapsed,
        cpu_before.zip(cpu_after),
    );
    Ok(())
}

fn parse_mix(text: &str) -> Result<[u32; 3], String> {
    let parts: Vec<u32> = text
        .split(',')
        .map(|p| {
            p.trim()
                .parse::<u32>()
                .map_err(|e| format!("--mix {text:?}: {e}"))
        })
        .collect::<Result<_, _>>()?;
    match parts.as_slice() {
        [v, i, m] if v + i + m == 100 => Ok([*v, *i, *m]),
        _ => Err(format!(
            "--mix {text:?}: three percentages adding up to 100"
        )),
    }
}

/// Builds a deterministic cycle of requests following the mix.
fn build_requests(args: &Args, mix: [u32; 3]) -> Result<Vec<Request>, Box<dyn std::error::Error>> {
    let tokens = match &args.tokens_file {
        Some(file) => std::fs::read_to_string(file)?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect(),
        None => mint_tokens(args)?,
    };
    if tokens.is_empty() {
        return Err("no tokens".into());
    }
    // Request j carries user j mod users and the kind of slot j mod 100:
    // consecutive requests come from different users, every user appears,
    // and every window of 100 requests follows the mix.
    let kind = |slot: u32| {
        if slot < mix[0] {
            Kind::Valid
        } else if slot < mix[0] + mix[1] {
            Kind::Invalid
        } else {
            Kind::Missing
        }
    };
    let users = tokens.len();
    Ok((0..users.max(100))
        .map(|j| {
            let kind = kind((j % 100) as u32);
            let token = &tokens[j % users];
            if args.http_url.is_some() {
                Request::Http(authorization(kind, token).map(Into::into))
            } else {
                Request::Check(Box::new(check_request(args, kind, token)))
            }
        })
        .collect())
}

/// The `Authorization` value a request of `kind` carries.
fn authorization(kind: Kind, token: &str) -> Option<String> {
    match kind {
        Kind::Valid => Some(format!("Bearer {token}")),
        Kind::Invalid => {
            // A well-formed token with a broken signature.
            let mut broken = token.to_string();
            broken.truncate(broken.len().saturating_sub(4));
            broken.push_str("AAAA");
            Some(format!("Bearer {broken}"))
        }
        Kind::Missing => None,
    }
}

/// `--users` tokens signed with `--signing-key`.
fn mint_tokens(args: &Args) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let pem = std::fs::read(&args.signing_key)?;
    let (alg, key) = match args.alg.as_str() {
        "ES256" => (Algorithm::ES256, EncodingKey::from_ec_pem(&pem)?),
        "RS256" => (Algorithm::RS256, EncodingKey::from_rsa_pem(&pem)?),
        "EdDSA" => (Algorithm::EdDSA, EncodingKey::from_ed_pem(&pem)?),
        other => return Err(format!("--alg {other}: ES256, RS256 or EdDSA").into()),
    };
    let mut header = Header::new(alg);
    header.kid = Some(args.kid.clone());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let users = args.users.max(1);
    let mut tokens = Vec::with_capacity(users);
    for u in 0..users {
        let claims = serde_json::json!({
            "iss": args.issuer, "aud": args.audience, "sub": format!("user-{u}"),
            "preferred_username": format!("user{u}"), "email": format!("user{u}@example.com"),
            "groups": ["readers"], "scope": "read:data", "iat": now, "exp": now + 3 * 3600,
        });
        tokens.push(jsonwebtoken::encode(&header, &claims, &key)?);
    }
    Ok(tokens)
}

fn check_request(args: &Args, kind: Kind, token: &str) -> CheckRequest {
    let mut headers: std::collections::HashMap<String, String> = [
        (":authority", args.host.as_str()),
        (":method", "GET"),
        (":path", args.path.as_str()),
        (":scheme", "https"),
        ("accept", "application/json"),
        ("user-agent", "gatehouse-load/1"),
        ("x-forwarded-proto", "https"),
        ("x-request-id", "00000000-0000-0000-0000-000000000000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if let Some(value) = authorization(kind, token) {
        headers.insert("authorization".into(), value);
    }
    Described::get(&args.host, &args.path, "127.0.0.1", headers).into_check_request()
}

/// Closed loop: `concurrency` workers, each sending back to back.
async fn run_closed(
    channels: &Target,
    requests: &Arc<Vec<Request>>,
    concurrency: usize,
    duration: Duration,
    health_floor: bool,
) -> (Vec<u64>, u64) {
    let deadline = Instant::now() + duration;
    let mut workers = Vec::new();
    for w in 0..concurrency.max(1) {
        let mut client = Client::new(channels, w, health_floor);
        let requests = requests.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut i = w;
            while Instant::now() < deadline {
                let req = requests[i % requests.len()].clone();
                i += concurrency;
                let start = Instant::now();
                match client.call(req).await {
                    Ok(allowed) => latencies.push(tag(start.elapsed(), allowed)),
                    Err(()) => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    collect(workers).await
}

/// Open loop: request `i` is due at `start + i / rate`; its latency runs
/// from that due time, not from when it was actually sent, so a stalled
/// server is not hidden (coordinated omission is corrected).
///
/// The generator runs on one thread (a current-thread runtime) and paces
/// by spinning: it yields to the runtime until the next request is due
/// instead of sleeping. Sleeping would measure the generator instead of
/// the server: tokio's timer has a 1 ms resolution (five requests apart at
/// 5,000/s), and waking a sleeping thread costs tens of microseconds on a
/// VM. The generator's CPU (pinned apart from the server's) is spent so
/// that every response is read as soon as it arrives.
async fn run_open(
    channels: &Target,
    requests: &Arc<Vec<Request>>,
    rate: u64,
    duration: Duration,
    health_floor: bool,
) -> (Vec<u64>, u64) {
    let total = (rate as f64 * duration.as_secs_f64()) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let in_flight = Arc::new(Semaphore::new(10_000));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = start + interval.mul_f64(i as f64);
        while Instant::now() < due {
            tokio::task::yield_now().await;
        }
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            // 10,000 requests in flight: the server is not keeping up.
            tasks.push(tokio::spawn(async { (Vec::new(), 1) }));
            continue;
        };
        let mut client = Client::new(channels, i as usize, health_floor);
        let req = requests[i as usize % requests.len()].clone();
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            match client.call(req).await {
                Ok(allowed) => (vec![tag(due.elapsed(), allowed)], 0),
                Err(()) => (Vec::new(), 1),
            }
        }));
    }
    collect(tasks).await
}

/// One connection's client: `Authorization/Check`, the health floor, or
/// HTTP `GET`s.
enum Client {
    Check(AuthorizationClient<Channel>),
    Health(HealthClient<Channel>),
    Http(reqwest::Client, Arc<str>),
}

impl Client {
    /// The client of request or worker `n`: its gRPC channel round robin.
    fn new(target: &Target, n: usize, health_floor: bool) -> Client {
        match target {
            Target::Http(client, url) => Client::Http(client.clone(), url.clone()),
            Target::Grpc(channels) => {
                let channel = channels[n % channels.len()].clone();
                if health_floor {
                    Client::Health(HealthClient::new(channel))
                } else {
                    Client::Check(AuthorizationClient::new(channel))
                }
            }
        }
    }

    /// Sends one call; `Ok(true)` for an allowed check (or SERVING, or a
    /// 200), `Ok(false)` for a denial (401, 403).
    async fn call(&mut self, request: Request) -> Result<bool, ()> {
        match (self, request) {
            (Client::Http(client, url), Request::Http(authorization)) => {
                let mut get = client.get(&**url);
                if let Some(value) = authorization {
                    get = get.header(reqwest::header::AUTHORIZATION, &*value);
                }
                let response = get.send().await.map_err(|_| ())?;
                let status = response.status().as_u16();
                // Read the body: the connection goes back to the pool.
                response.bytes().await.map_err(|_| ())?;
                match status {
                    200 => Ok(true),
                    401 | 403 => Ok(false),
                    _ => Err(()),
                }
            }
            (Client::Check(client), Request::Check(request)) => {
                let response = client.check(*request).await.map_err(|_| ())?.into_inner();
                Ok(response.status.as_ref().is_some_and(|s| s.code == 0))
            }
            (Client::Health(client), _) => {
                let response = client
                    .check(HealthCheckRequest::default())
                    .await
                    .map_err(|_| ())?;
                Ok(response.into_inner().status == 1)
            }
            _ => Err(()),
        }
    }
}

/// Latency in ns, with the lowest bit telling whether the check allowed
/// (1) or denied (0) the request: one word per sample, no extra vectors.
fn tag(latency: Duration, allowed: bool) -> u64 {
    (latency.as_nanos() as u64 & !1) | u64::from(allowed)
}

async fn collect(tasks: Vec<tokio::task::JoinHandle<(Vec<u64>, u64)>>) -> (Vec<u64>, u64) {
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((lat, err)) = t.await {
            all.extend(lat);
            errors += err;
        }
    }
    (all, errors)
}

/// CPU time (ns) consumed so far by every thread of `pid`.
fn cpu_time(pid: u32) -> Option<u64> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let stat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

fn report(args: &Args, latencies: &[u64], errors: u64, elapsed: Duration, cpu: Option<(u64, u64)>) {
    let allowed = latencies.iter().filter(|l| *l & 1 == 1).count();
    let mut sorted = latencies.to_vec();
    sorted.sort_unstable();
    let pct = |p: f64| -> f64 {
        if sorted.is_empty() {
            return f64::NAN;
        }
        let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
        sorted[idx] as f64 / 1000.0
    };
    let n = sorted.len() as f64;
    let mode = match args.rate {
        Some(r) => format!("open-loop {r}/s"),
        None => format!("closed-loop concurrency {}", args.concurrency),
    };
    println!(
        "mode: {mode}, mix valid/invalid/missing: {}, users: {}",
        args.mix, args.users
    );
    println!(
        "checks: {} in {:.2}s = {:.0}/s, allowed: {allowed}, denied: {}, errors: {errors}",
        sorted.len(),
        elapsed.as_secs_f64(),
        n / elapsed.as_secs_f64(),
        sorted.len() - allowed
    );
    println!(
        "latency µs: p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
        pct(50.0),
        pct(90.0),
        pct(99.0),
        pct(99.9),
        pct(100.0)
    );
    if let Some((before, after)) = cpu {
        let per_check = (after.saturating_sub(before)) as f64 / 1000.0 / n.max(1.0);
        println!("server CPU per check: {per_check:.1} µs");
    }
}
