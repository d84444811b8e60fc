//! The `gatehouse` command: `serve`, `check-config`, `explain`, `keys`,
//! `token`, `openapi merge`, `version`, `completions`. Exit codes are
//! sysexits-style ([`gatehouse::ops::cli::CliError`]): 64 usage, 78
//! configuration, 1 failure.

/// mimalloc instead of the system allocator: a check is a burst of small
/// allocations (protobuf strings, header maps), and glibc's malloc/free
/// were a quarter of gatehouse's CPU time under load (perf, BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use gatehouse::app;
use gatehouse::config::{self, Config, ConfigSource};
use gatehouse::metrics::Metrics;
use gatehouse::ops::cli::{
    CONFIG_ENV, CliError, ConfigArg, EXIT_CODES_HELP, EXIT_USAGE, Output, VERSION, WriteOptions,
    finish, load_config, write_output,
};
use gatehouse::serve::grpc::{GrpcLimits, Listener};
use gatehouse::serve::http::HttpListener;
use gatehouse::serve::reload::{self, Reloader};

/// An Envoy external authorization service.
#[derive(Parser)]
#[command(name = "gatehouse", version = VERSION, about, after_help = EXIT_CODES_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve `Authorization/Check` and the HTTP side port.
    Serve(ServeArgs),
    /// Validate a configuration without serving.
    CheckConfig(CheckConfigArgs),
    /// Show how one request would be decided, phase by phase (no network).
    Explain(gatehouse::ops::explain::ExplainArgs),
    /// Decide a decision log again against a configuration; print what changed.
    Replay(gatehouse::ops::replay::ReplayArgs),
    /// Signing keys of the internal issuer; the store's encryption key.
    Keys {
        #[command(subcommand)]
        command: gatehouse::ops::cli::KeysCommand,
    },
    /// Tokens of the internal issuer (signed links).
    Token {
        #[command(subcommand)]
        command: gatehouse::ops::cli::TokenCommand,
    },
    /// API tokens, through a running gatehouse's REST API.
    Tokens {
        #[command(subcommand)]
        command: gatehouse::ops::cli::TokensCommand,
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
    /// Print the version, the commit and the build date.
    Version,
    /// Print a shell completion script.
    ///
    /// E.g. `gatehouse completions bash > /etc/bash_completion.d/gatehouse`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `gatehouse serve` arguments.
#[derive(Args)]
struct ServeArgs {
    /// Configuration file (YAML); `GATEHOUSE_<SECTION>__<KEY>` variables
    /// override it.
    #[arg(long, short, env = CONFIG_ENV, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Run the embedded demo configuration instead. Its signing keys are
    /// public: never use it in production.
    #[arg(long)]
    demo: bool,
}

/// `gatehouse check-config` arguments.
#[derive(Args)]
struct CheckConfigArgs {
    /// Configuration file (YAML); `GATEHOUSE_<SECTION>__<KEY>` variables
    /// override it.
    #[arg(long, short, env = CONFIG_ENV, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Deprecated: the file as a positional argument (use -c).
    #[arg(hide = true, value_name = "FILE")]
    file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum OpenapiCommand {
    /// Fetch (or read) every backend's OpenAPI 3 document listed in the
    /// configuration's `openapi` section and merge them into one.
    Merge {
        /// The configuration, with an `openapi` section.
        #[command(flatten)]
        config: ConfigArg,
        /// Where to write the merged JSON document (`-`: standard output).
        #[arg(long, short, value_name = "PATH")]
        out: Output,
    },
}

fn main() -> ExitCode {
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches).map(|cli| (cli, matches)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            // Help and --version print to stdout and succeed; any other
            // parse error is a usage error (64), not clap's default 2.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let sub = |name: &str| matches.subcommand_matches(name);
    match cli.command {
        Command::Serve(args) => finish(serve(args, sub("serve"))),
        Command::CheckConfig(args) => finish(check_config(args, sub("check-config"))),
        Command::Openapi {
            command: OpenapiCommand::Merge { config, out },
        } => finish(openapi_merge(&config, &out)),
        Command::Explain(args) => gatehouse::ops::explain::run(&args),
        Command::Replay(args) => gatehouse::ops::replay::run(&args),
        Command::Keys { command } => gatehouse::ops::cli::keys(command),
        Command::Token { command } => gatehouse::ops::cli::token(command),
        Command::Tokens { command } => gatehouse::ops::cli::tokens(command),
        Command::Config { command } => gatehouse::ops::config::run(command),
        Command::Version => {
            println!("gatehouse {VERSION}");
            ExitCode::SUCCESS
        }
        Command::Completions { shell } => {
            // Into a buffer: clap_complete panics on a failed write (a
            // closed pipe); ours reports it.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "gatehouse", &mut script);
            finish(write_output(
                &Output::Stdout,
                &script,
                WriteOptions::default(),
            ))
        }
    }
}

/// Whether `-c/--config` was given on the command line (not taken from
/// `GATEHOUSE_CONFIG`).
fn config_on_command_line(matches: Option<&ArgMatches>) -> bool {
    matches.and_then(|m| m.value_source("config")) == Some(ValueSource::CommandLine)
}

/// `gatehouse check-config`: `-c FILE`, `$GATEHOUSE_CONFIG`, or (deprecated)
/// the file as a positional argument.
fn check_config(args: CheckConfigArgs, matches: Option<&ArgMatches>) -> Result<(), CliError> {
    let path = match (args.file, args.config) {
        (Some(_), Some(_)) if config_on_command_line(matches) => {
            return Err(CliError::Usage(
                "check-config: give the file once, as -c FILE".into(),
            ));
        }
        (Some(file), _) => {
            eprintln!("gatehouse: `check-config FILE` is deprecated; use `check-config -c FILE`");
            file
        }
        (None, Some(config)) => config,
        (None, None) => {
            return Err(CliError::Usage(format!(
                "check-config needs a configuration: pass -c FILE or set {CONFIG_ENV}"
            )));
        }
    };
    let summary = gatehouse::ops::cli::check_config(&ConfigSource::File(path))?;
    println!("{summary}");
    Ok(())
}

/// Printed to standard error whenever `serve --demo` starts.
const DEMO_BANNER: &str = "\
################################################################################
##  DEMO MODE: gatehouse is serving its embedded demo configuration.         ##
##  The demo's signing keys are PUBLIC (they ship with the source): anyone   ##
##  can mint tokens this instance accepts. NEVER use --demo in production.   ##
################################################################################";

/// `gatehouse serve`: a configuration file, or `--demo`; never the demo by
/// default.
fn serve(args: ServeArgs, matches: Option<&ArgMatches>) -> Result<(), CliError> {
    let source = match (args.demo, args.config) {
        (true, Some(path)) => {
            return Err(CliError::Usage(if config_on_command_line(matches) {
                "--demo serves the embedded demo configuration: it takes no -c/--config".into()
            } else {
                format!(
                    "--demo serves the embedded demo configuration, but {CONFIG_ENV} names {}: \
                     unset {CONFIG_ENV} to run the demo, or drop --demo to serve that file",
                    path.display()
                )
            }));
        }
        (true, None) => {
            eprintln!("{DEMO_BANNER}");
            ConfigSource::Text(config::DEMO_CONFIG.into())
        }
        (false, Some(path)) => ConfigSource::File(path),
        (false, None) => {
            return Err(CliError::Usage(format!(
                "serve needs a configuration: pass -c FILE or set {CONFIG_ENV}. \
                 To try gatehouse on its embedded demo configuration (public signing keys: \
                 never in production), run `gatehouse serve --demo`"
            )));
        }
    };
    let env: Vec<(String, String)> = std::env::vars().collect();
    let config = config::load(&source, env.iter().cloned())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failure(format!("cannot start the runtime: {e}")))?;
    // Inside the runtime: the OTLP/gRPC exporter's channel needs it.
    let telemetry = {
        let _runtime = runtime.enter();
        gatehouse::telemetry::init(&config.log, config.tracing.as_ref())?
    };
    let result = runtime.block_on(run(config, source, env));
    // Flush buffered spans while the runtime (and the exporter's channel)
    // is still alive.
    telemetry.shutdown();
    result
}

async fn run(
    config: Config,
    source: ConfigSource,
    env: Vec<(String, String)>,
) -> Result<(), CliError> {
    let failure = |e: &dyn std::fmt::Display| CliError::Failure(e.to_string());
    let metrics = Arc::new(Metrics::new().map_err(|e| failure(&e))?);
    let engine = app::build_engine_with(&config, &source, &app::Carry::fresh(metrics.clone()))?;
    if matches!(source, ConfigSource::Text(_)) {
        tracing::warn!(
            "--demo: serving the embedded DEMO configuration, whose signing keys are public \
             (never in production)"
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
        .map_err(|e| failure(&e))?
        .with_threads(config.server.grpc_thread_count())
        .with_limits(GrpcLimits {
            max_request_bytes: config.server.max_request_bytes,
            max_concurrent_streams: config.server.max_concurrent_streams,
        });
    let listener = match &config.server.grpc_socket {
        Some(path) => listener.with_unix_socket(path).map_err(|e| failure(&e))?,
        None => listener,
    };
    let http = HttpListener::bind(config.server.http_addr)
        .await
        .map_err(|e| failure(&e))?;
    tracing::info!(
        addr = %listener.local_addr().map_or_else(|| config.server.grpc_addr.to_string(), |a| a.to_string()),
        http_addr = %http.local_addr().map_or_else(|| config.server.http_addr.to_string(), |a| a.to_string()),
        grpc_threads = config.server.grpc_thread_count(),
        grpc_socket = config.server.grpc_socket.as_deref().map(|p| tracing::field::display(p.display())),
        version = env!("CARGO_PKG_VERSION"),
        commit = gatehouse::ops::cli::GIT_COMMIT,
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
            result.map_err(|e| failure(&e))
        }
    };
    let side = {
        let (stop, stopped) = (stop.clone(), stopped(&stop));
        async move {
            let result = http.serve(engine, drain, stopped).await;
            stop.send_replace(true);
            result.map_err(|e| CliError::Failure(format!("HTTP side port: {e}")))
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

/// `gatehouse openapi merge`.
fn openapi_merge(config: &ConfigArg, out: &Output) -> Result<(), CliError> {
    let source = config.source();
    let config = load_config(&source)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failure(format!("cannot start the runtime: {e}")))?;
    let document = runtime.block_on(gatehouse::ops::openapi::build(&config, &source))?;
    let mut text = serde_json::to_string_pretty(&document)
        .map_err(|e| CliError::Failure(format!("openapi merge: {e}")))?;
    text.push('\n');
    let options = WriteOptions {
        overwrite: true,
        private: false,
    };
    write_output(out, text.as_bytes(), options)?;
    if !out.is_stdout() {
        let paths = document["paths"].as_object().map_or(0, |p| p.len());
        println!("wrote {out} ({paths} paths)");
    }
    Ok(())
}
