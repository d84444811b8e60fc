//! The `gatehouse` command: `serve`, `check-config`, `explain`, `keys`,
//! `token`, `openapi merge`.

/// mimalloc instead of the system allocator: a check is a burst of small
/// allocations (protobuf strings, header maps), and glibc's malloc/free
/// were a quarter of gatehouse's CPU time under load (perf, BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use gatehouse::app;
use gatehouse::config::{self, Config, ConfigSource};
use gatehouse::metrics::Metrics;
use gatehouse::serve::grpc::Listener;
use gatehouse::serve::http::HttpListener;
use gatehouse::serve::reload::{self, Reloader};

/// An Envoy external authorization service.
#[derive(Parser)]
#[command(name = "gatehouse", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve `Authorization/Check` (without --config: the embedded demo config).
    Serve {
        /// Configuration file (YAML); `GATEHOUSE_*` variables override it.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a configuration file without serving.
    CheckConfig {
        /// Configuration file (YAML).
        file: PathBuf,
    },
    /// Show how one request would be decided, phase by phase (no network).
    Explain(gatehouse::ops::explain::ExplainArgs),
    /// Signing keys of the internal issuer.
    Keys {
        #[command(subcommand)]
        command: gatehouse::ops::cli::KeysCommand,
    },
    /// Tokens of the internal issuer (signed links).
    Token {
        #[command(subcommand)]
        command: gatehouse::ops::cli::TokenCommand,
    },
    /// The configuration's JSON Schema and reference.
    Config {
        #[command(subcommand)]
        command: gatehouse::ops::config::ConfigCommand,
    },
    /// The aggregated OpenAPI document.
    Openapi {
        #[command(subcommand)]
        command: OpenapiCommand,
    },
}

#[derive(Subcommand)]
enum OpenapiCommand {
    /// Fetch (or read) every backend's OpenAPI 3 document listed in the
    /// configuration's `openapi` section and merge them into one.
    Merge {
        /// Configuration file (YAML) with an `openapi` section.
        #[arg(long, short)]
        config: PathBuf,
        /// Where to write the merged JSON document (`-`: standard output).
        #[arg(long, short)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (source, serve) = match cli.command {
        Command::Serve { config } => (
            config.map_or_else(
                || ConfigSource::Text(config::DEMO_CONFIG.into()),
                ConfigSource::File,
            ),
            true,
        ),
        Command::CheckConfig { file } => (ConfigSource::File(file), false),
        Command::Openapi {
            command: OpenapiCommand::Merge { config, out },
        } => return openapi_merge(config, &out),
        Command::Explain(args) => return gatehouse::ops::explain::run(&args),
        Command::Keys { command } => return gatehouse::ops::cli::keys(command),
        Command::Token { command } => return gatehouse::ops::cli::token(command),
        Command::Config { command } => return gatehouse::ops::config::run(command),
    };
    let env: Vec<(String, String)> = std::env::vars().collect();
    let config = match config::load(&source, env.iter().cloned()) {
        Ok(c) => c,
        Err(e) => return fail(&format!("configuration error: {e}")),
    };
    if !serve {
        return match app::build_engine(&config, &source) {
            Ok(_) => {
                println!(
                    "configuration ok: {} issuer(s), {} rule(s)",
                    config.jwt.issuers.len(),
                    config.policy.rules.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(&format!("configuration error: {e}")),
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    // Inside the runtime: the OTLP/gRPC exporter's channel needs it.
    let telemetry = {
        let _runtime = runtime.enter();
        gatehouse::telemetry::init(&config.log, config.tracing.as_ref())
    };
    let telemetry = match telemetry {
        Ok(t) => t,
        Err(e) => return fail(&e.to_string()),
    };
    let result = runtime.block_on(run(config, source, env));
    // Flush buffered spans while the runtime (and the exporter's channel)
    // is still alive.
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

async fn run(
    config: Config,
    source: ConfigSource,
    env: Vec<(String, String)>,
) -> Result<(), String> {
    let metrics = Arc::new(Metrics::new().map_err(|e| e.to_string())?);
    let engine = app::build_engine_with(&config, &source, &app::Carry::fresh(metrics.clone()))
        .map_err(|e| format!("configuration error: {e}"))?;
    if matches!(source, ConfigSource::Text(_)) {
        tracing::warn!(
            "no --config given: running the embedded DEMO configuration (not for production)"
        );
    }
    if let Some(tracing) = &config.tracing {
        tracing::info!(
            protocol = tracing.protocol.as_str(),
            sample_ratio = tracing.sample_ratio,
            service_name = %tracing.service_name,
            "exporting check spans over OTLP"
        );
    }
    // Key refresh, store purge, and reload on SIGHUP or a file change.
    let reloader = Reloader::start(config.clone(), source, env, engine, metrics);
    let engine = reloader.live();
    let _triggers = reload::watch::spawn(reloader, &config.reload);
    let listener = Listener::bind(config.server.grpc_addr)
        .await
        .map_err(|e| e.to_string())?
        .with_threads(config.server.grpc_thread_count());
    let listener = match &config.server.grpc_socket {
        Some(path) => listener.with_unix_socket(path).map_err(|e| e.to_string())?,
        None => listener,
    };
    let http = HttpListener::bind(config.server.http_addr)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(
        addr = %listener.local_addr().map_or_else(|| config.server.grpc_addr.to_string(), |a| a.to_string()),
        http_addr = %http.local_addr().map_or_else(|| config.server.http_addr.to_string(), |a| a.to_string()),
        grpc_threads = config.server.grpc_thread_count(),
        grpc_socket = config.server.grpc_socket.as_deref().map(|p| tracing::field::display(p.display())),
        version = env!("CARGO_PKG_VERSION"),
        "gatehouse listening (gRPC: ext_authz v3, health, reflection; HTTP side port)"
    );
    // One signal stops both servers; either one ending stops the other.
    let (stop, _) = tokio::sync::watch::channel(false);
    let stop = Arc::new(stop);
    let stopped = |stop: &Arc<tokio::sync::watch::Sender<bool>>| {
        let mut rx = stop.subscribe();
        async move {
            let _ = rx.wait_for(|stopping| *stopping).await;
        }
    };
    let signal = {
        let stop = stop.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            stop.send_replace(true);
        })
    };
    let drain = config.server.drain_timeout;
    let grpc = {
        let (stop, stopped) = (stop.clone(), stopped(&stop));
        let engine = engine.clone();
        async move {
            let result = listener.serve(engine, drain, stopped).await;
            stop.send_replace(true);
            result.map_err(|e| e.to_string())
        }
    };
    let side = {
        let (stop, stopped) = (stop.clone(), stopped(&stop));
        async move {
            let result = http.serve(engine, drain, stopped).await;
            stop.send_replace(true);
            result.map_err(|e| format!("HTTP side port: {e}"))
        }
    };
    let (grpc, side) = tokio::join!(grpc, side);
    signal.abort();
    grpc.and(side)
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    () = ctrl_c => {}
                }
            }
            Err(_) => ctrl_c.await,
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await;
}

/// `gatehouse openapi merge`: exit code 2 and the reason on any error.
fn openapi_merge(config: PathBuf, out: &std::path::Path) -> ExitCode {
    let source = ConfigSource::File(config);
    let config = match config::load(&source, std::env::vars()) {
        Ok(c) => c,
        Err(e) => return fail(&format!("configuration error: {e}")),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    let document = match runtime.block_on(gatehouse::ops::openapi::build(&config, &source)) {
        Ok(d) => d,
        Err(e) => return fail(&format!("openapi merge: {e}")),
    };
    let mut text = match serde_json::to_string_pretty(&document) {
        Ok(t) => t,
        Err(e) => return fail(&format!("openapi merge: {e}")),
    };
    text.push('\n');
    let written = if out.as_os_str() == "-" {
        use std::io::Write as _;
        std::io::stdout().write_all(text.as_bytes())
    } else {
        // Write beside the target, then rename: a reader (Envoy) never
        // sees half a document.
        let tmp = out.with_extension("json.tmp");
        std::fs::write(&tmp, &text).and_then(|()| std::fs::rename(&tmp, out))
    };
    match written {
        Ok(()) => {
            if out.as_os_str() != "-" {
                let paths = document["paths"].as_object().map_or(0, |p| p.len());
                println!("wrote {} ({paths} paths)", out.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&format!("writing {}: {e}", out.display())),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("gatehouse: {message}");
    ExitCode::from(2)
}
