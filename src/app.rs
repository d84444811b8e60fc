//! The one wiring point: validated configuration → engine, key sets and
//! servers. Nothing else reads configuration or the environment.

use std::sync::Arc;

use crate::check::authn::Authenticators;
use crate::check::authn::cert::CertAuthenticator;
use crate::check::authn::jwt::jose::TypePolicy;
use crate::check::authn::jwt::keys::{IssuerKeys, KeyOrigin, KeySet};
use crate::check::authn::jwt::{Issuer, JwtVerifier};
use crate::check::authn::session::SessionAuthenticator;
use crate::check::authn::sources::TokenSource;
use crate::check::authz::tool::ToolPolicy;
use crate::check::pipeline::Engine;
use crate::check::policy::Policy;
use crate::check::response::upstream::UpstreamHeaders;
use crate::check::upstream::UpstreamActions;
use crate::check::upstream::exchange::TokenExchange;
use crate::config::{
    Config, ConfigError, ConfigSource, IssuerConfig, KeySourceConfig, TokenSourceConfig,
    resolve_path,
};
use crate::issuer::InternalIssuer;
use crate::metrics::{EngineMetrics, Metrics};
use crate::sessions::Sessions;
use crate::store::Store;
use crate::store::metered::MeteredStore;
use crate::store::sealed::SealedStore;

/// Shortest accepted HMAC shared secret (RFC 7518 §3.2: at least the hash size).
const MIN_SHARED_SECRET_BYTES: usize = 32;

/// What a new engine takes over instead of making anew: the process's
/// metrics and, on a reload, the running engine's remote key sets and
/// store.
pub struct Carry {
    /// The registry the engine records into.
    pub metrics: Arc<Metrics>,
    /// Remote key sets to keep where an issuer's key source, name and
    /// refresh settings are unchanged (loaded keys, running refresh).
    pub key_sets: Vec<Arc<IssuerKeys>>,
    /// The store to keep (one-time link uses must survive a reload).
    pub store: Option<Arc<dyn Store>>,
}

impl Carry {
    /// Nothing to take over: everything is made anew, recording into `metrics`.
    pub fn fresh(metrics: Arc<Metrics>) -> Carry {
        Carry {
            metrics,
            key_sets: Vec::new(),
            store: None,
        }
    }
}

/// Builds the engine from configuration, with a registry of its own.
/// Static keys are loaded here; remote key sets start empty and are
/// filled by the refresh tasks [`crate::serve::reload`] starts.
pub fn build_engine(config: &Config, source: &ConfigSource) -> Result<Engine, ConfigError> {
    build_engine_with(config, source, &Carry::fresh(Arc::new(Metrics::new()?)))
}

/// [`build_engine`], taking over what `carry` holds.
pub fn build_engine_with(
    config: &Config,
    source: &ConfigSource,
    carry: &Carry,
) -> Result<Engine, ConfigError> {
    let default_session = crate::config::SessionConfig::default();
    let session = config
        .login
        .as_ref()
        .map_or(&default_session, |l| &l.session);
    let policy = Policy::compile_with(
        &config.policy,
        &config.browser,
        config.cors.as_ref(),
        session,
    )?;
    let shadow = Policy::compile_shadow(
        &config.policy,
        &config.browser,
        config.cors.as_ref(),
        session,
    )?;
    let http = reqwest::Client::builder()
        .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ConfigError::invalid("jwt.issuers", format!("HTTP client: {e}")))?;

    let mut issuers = Vec::with_capacity(config.jwt.issuers.len());
    for (i, issuer) in config.jwt.issuers.iter().enumerate() {
        let key = format!("jwt.issuers[{i}]");
        if config.jwt.issuers[..i]
            .iter()
            .any(|other| other.issuer == issuer.issuer)
        {
            return Err(ConfigError::invalid(
                format!("{key}.issuer"),
                "duplicate issuer",
            ));
        }
        issuers.push(build_issuer(issuer, &key, source, &http, carry)?);
    }

    if config.jwt.sources.is_empty() {
        return Err(ConfigError::invalid(
            "jwt.sources",
            "at least one token source is needed",
        ));
    }
    for (i, s) in config.jwt.sources.iter().enumerate() {
        let name = match s {
            TokenSourceConfig::Header(n)
            | TokenSourceConfig::Cookie(n)
            | TokenSourceConfig::Query(n) => n,
            TokenSourceConfig::Bearer | TokenSourceConfig::Basic => continue,
        };
        let valid = |b: u8| b.is_ascii_alphanumeric() || b"-_.".contains(&b);
        if name.is_empty() || !name.bytes().all(valid) {
            return Err(ConfigError::invalid(
                format!("jwt.sources[{i}]"),
                format!("invalid name {name:?}"),
            ));
        }
    }
    if config.reload.interval < std::time::Duration::from_millis(100) {
        return Err(ConfigError::invalid("reload.interval", "at least 100ms"));
    }
    if config.reload.keys_timeout.is_zero() {
        return Err(ConfigError::invalid(
            "reload.keys_timeout",
            "must not be zero",
        ));
    }
    if config.jwt.leeway.as_secs() > 600 {
        return Err(ConfigError::invalid("jwt.leeway", "at most 10 minutes"));
    }
    if config.jwt.max_token_bytes < 1024 {
        return Err(ConfigError::invalid("jwt.max_token_bytes", "at least 1024"));
    }
    if config.server.max_request_bytes < 64 * 1024 {
        return Err(ConfigError::invalid(
            "server.max_request_bytes",
            "at least 65536 (64 KiB)",
        ));
    }
    if config.server.max_concurrent_streams == 0 {
        return Err(ConfigError::invalid(
            "server.max_concurrent_streams",
            "at least 1",
        ));
    }
    for (scope, groups) in &config.scopes.group_mapping {
        if scope.is_empty()
            || scope.contains(char::is_whitespace)
            || groups.iter().any(String::is_empty)
        {
            return Err(ConfigError::invalid(
                format!("scopes.group_mapping.{scope}"),
                "scopes and groups must be non-empty, scopes without spaces",
            ));
        }
    }

    let certificates = config
        .certificates
        .as_ref()
        .map(|c| CertAuthenticator::compile(c, &config.scopes.group_mapping))
        .transpose()?;
    let tools = ToolPolicy::compile(&config.tools)?;
    let upstream_headers = UpstreamHeaders::compile(&config.identity_headers, &tools)?;
    let internal = build_internal_issuer(config, source)?;
    let keep_claims = config.policy.rules.iter().any(|r| {
        r.when
            .as_deref()
            .is_some_and(crate::model::condition::Condition::may_read_claims)
    });
    let mut verifier = JwtVerifier::new(
        issuers,
        config.jwt.leeway.as_secs(),
        &config.scopes.group_mapping,
    )
    .with_cache(config.jwt.cache_size)
    .with_cache_metrics(carry.metrics.token_cache_metrics()?)
    .keeping_claims(keep_claims);
    if let Some(internal) = &internal {
        verifier.add_internal_issuer(crate::check::authn::jwt::Issuer::internal(internal)?);
    }
    if let Some(tracing) = &config.tracing {
        crate::telemetry::otel::validate(tracing)?;
    }
    let store = match &carry.store {
        Some(store) => store.clone(),
        // Metered(Sealed(backend)): the metrics time the whole operation,
        // encryption included; the backend only ever sees sealed values.
        None => {
            let keys = crate::store::sealed::configured_keys(&config.store, source)?;
            let sealed = SealedStore::new(crate::store::build(&config.store, source)?, keys);
            Arc::new(MeteredStore::new(
                Arc::new(sealed),
                carry.metrics.store_metrics()?,
            ))
        }
    };
    let api_tokens = config
        .api_tokens
        .as_ref()
        .map(|c| crate::tokens::ApiTokens::new(c, store.clone()).map(Arc::new))
        .transpose()?;
    let (sessions, login) = build_sessions(config, source, &store)?;
    let backends = build_backends(config, source, &store)?;
    let exchange = build_token_exchange(config, source, carry)?;
    let upstream =
        UpstreamActions::build(config, source, internal.clone(), backends.clone(), exchange)?
            .with_store(store.clone());
    let cli_login = build_cli_login(config, &store, login.is_some())?;
    let metrics = EngineMetrics::new(
        carry.metrics.clone(),
        config.policy.rules.iter().map(|r| r.name.as_str()),
    )?;
    Ok(Engine {
        policy,
        shadow,
        authn: Authenticators {
            sources: config.jwt.sources.iter().map(TokenSource::from).collect(),
            max_token_bytes: config.jwt.max_token_bytes,
            jwt: verifier,
            certificates,
            api_tokens,
            sessions,
            introspection: build_introspection(config, source, carry, keep_claims)?,
        },
        trusted_proxies: config.network.trusted_proxies.clone(),
        realm: config.server.realm.clone(),
        tools,
        upstream_headers,
        issuer: internal,
        store,
        upstream,
        login,
        backends,
        cli_login,
        telemetry: crate::telemetry::TelemetrySettings {
            spans: config.tracing.is_some(),
            decisions: config.log.decisions,
        },
        metrics,
    })
}

/// The command-line login (`cli`), if configured: it needs the browser
/// login (the person approves in a browser session) and API tokens (what
/// the command receives); its URLs are on the origin of
/// `login.callback_url`, where browsers already reach gatehouse.
fn build_cli_login(
    config: &Config,
    store: &Arc<dyn Store>,
    has_login: bool,
) -> Result<Option<Arc<crate::login::cli::CliLogins>>, ConfigError> {
    let Some(cli) = &config.cli else {
        return Ok(None);
    };
    let Some(api_tokens) = &config.api_tokens else {
        return Err(ConfigError::invalid(
            "cli",
            "needs api_tokens: a command-line login hands out an API token",
        ));
    };
    cli.validate(Some(api_tokens.max_lifetime))?;
    let callback = config
        .login
        .as_ref()
        .and_then(|l| l.callback_url.as_deref())
        .filter(|_| has_login);
    let Some(callback) = callback else {
        return Err(ConfigError::invalid(
            "cli",
            "needs login.providers: the command-line login is approved in a browser login",
        ));
    };
    let url = url::Url::parse(callback)
        .map_err(|e| ConfigError::invalid("login.callback_url", e.to_string()))?;
    let base = url.origin().ascii_serialization();
    Ok(Some(Arc::new(crate::login::cli::CliLogins::new(
        cli,
        store.clone(),
        base,
    ))))
}

/// The session authenticator and the login service.
type SessionsAndLogin = (
    Option<SessionAuthenticator>,
    Option<Arc<crate::login::Login>>,
);

/// The session cookie as a credential (`login`), if configured: its
/// cookie must not also be a token source. With `login.providers`, the
/// login service too (client secrets read here; discovery starts in the
/// background when a runtime runs), which refreshes sessions' tokens.
fn build_sessions(
    config: &Config,
    source: &ConfigSource,
    store: &Arc<dyn Store>,
) -> Result<SessionsAndLogin, ConfigError> {
    let Some(login) = &config.login else {
        return Ok((None, None));
    };
    login.validate()?;
    let name = login.session.cookie_name();
    let clash = config
        .jwt
        .sources
        .iter()
        .any(|s| matches!(s, TokenSourceConfig::Cookie(n) if n == name));
    if clash {
        return Err(ConfigError::invalid(
            "login.session.cookie_name",
            format!("{name:?} is also a cookie in jwt.sources; name the session cookie apart"),
        ));
    }
    let sessions = Arc::new(Sessions::new(&login.session, store.clone())?);
    if login.providers.is_empty() {
        return Ok((
            Some(SessionAuthenticator {
                sessions,
                refresher: None,
            }),
            None,
        ));
    }
    let secrets = login
        .providers
        .iter()
        .enumerate()
        .map(|(i, p)| {
            client_secret(
                source,
                &p.client_secret_file,
                &format!("login.providers[{i}].client_secret_file"),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let service = Arc::new(crate::login::Login::new(
        login,
        secrets,
        store.clone(),
        sessions.clone(),
        &config.scopes.group_mapping,
    )?);
    if tokio::runtime::Handle::try_current().is_ok() {
        service.start_discovery();
    }
    let refresher = crate::login::refresh::ProviderRefresher {
        login: service.clone(),
    };
    Ok((
        Some(SessionAuthenticator {
            sessions,
            refresher: Some(Arc::new(refresher)),
        }),
        Some(service),
    ))
}

/// The introspection authenticator (`introspection`), if configured.
fn build_introspection(
    config: &Config,
    source: &ConfigSource,
    carry: &Carry,
    keep_claims: bool,
) -> Result<Option<crate::check::authn::introspection::Introspector>, ConfigError> {
    let Some(cfg) = &config.introspection else {
        return Ok(None);
    };
    let secret = client_secret(
        source,
        &cfg.client.client_secret_file,
        "introspection.client_secret_file",
    )?;
    let introspector = crate::check::authn::introspection::Introspector::new(
        cfg,
        secret,
        config.jwt.leeway.as_secs(),
        &config.scopes.group_mapping,
    )?
    .keeping_claims(keep_claims)
    .with_metrics(carry.metrics.oauth_call_metrics("introspection")?);
    Ok(Some(introspector))
}

/// The token-exchange client (`token_exchange`), if configured.
fn build_token_exchange(
    config: &Config,
    source: &ConfigSource,
    carry: &Carry,
) -> Result<Option<Arc<TokenExchange>>, ConfigError> {
    let Some(cfg) = &config.token_exchange else {
        return Ok(None);
    };
    let secret = client_secret(
        source,
        &cfg.client.client_secret_file,
        "token_exchange.client_secret_file",
    )?;
    let exchange = TokenExchange::new(cfg, secret)?
        .with_metrics(carry.metrics.oauth_call_metrics("token_exchange")?);
    Ok(Some(Arc::new(exchange)))
}

/// A client secret from its file (trailing whitespace dropped; an empty
/// file is an error naming `key`).
fn client_secret(
    source: &ConfigSource,
    file: &str,
    key: &str,
) -> Result<crate::secret::Secret, ConfigError> {
    let path = resolve_path(source, std::path::Path::new(file));
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ConfigError::invalid(key, format!("{}: {e}", path.display())))?;
    let secret = text.trim_end();
    if secret.is_empty() {
        return Err(ConfigError::invalid(
            key,
            format!("{} is empty", path.display()),
        ));
    }
    Ok(crate::secret::Secret::new(secret))
}

/// The `backends` service, if any are configured (they need `login`).
fn build_backends(
    config: &Config,
    source: &ConfigSource,
    store: &Arc<dyn Store>,
) -> Result<Option<Arc<crate::backends::Backends>>, ConfigError> {
    let login = config.login.as_ref().filter(|l| !l.providers.is_empty());
    crate::config::validate_backends(&config.backends, login.is_some())?;
    let Some(login) = login else {
        return Ok(None);
    };
    let secrets = config
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            client_secret(
                source,
                &b.client_secret_file,
                &format!("backends[{i}].client_secret_file"),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let callback = login.callback_url.clone().unwrap_or_default();
    crate::backends::Backends::new(&config.backends, secrets, &callback, store.clone())
        .map(|b| Some(Arc::new(b)))
}

/// Gatehouse's own issuer (`issuer:`), if configured: its `iss` must be
/// its own, and the side port must not share the gRPC address.
pub fn build_internal_issuer(
    config: &Config,
    source: &ConfigSource,
) -> Result<Option<Arc<InternalIssuer>>, ConfigError> {
    let server = &config.server;
    if server.http_addr == server.grpc_addr && server.http_addr.port() != 0 {
        return Err(ConfigError::invalid(
            "server.http_addr",
            "must differ from server.grpc_addr",
        ));
    }
    let Some(cfg) = &config.issuer else {
        return Ok(None);
    };
    if config.jwt.issuers.iter().any(|i| i.issuer == cfg.issuer) {
        return Err(ConfigError::invalid(
            "issuer.issuer",
            "also listed under jwt.issuers; gatehouse trusts its own keys by itself",
        ));
    }
    let cookies: Vec<String> = config
        .jwt
        .sources
        .iter()
        .filter_map(|s| match s {
            TokenSourceConfig::Cookie(name) => Some(name.clone()),
            _ => None,
        })
        .collect();
    Ok(Some(Arc::new(InternalIssuer::build(
        cfg, source, &cookies,
    )?)))
}

/// Validates one issuer and loads or prepares its keys.
fn build_issuer(
    cfg: &IssuerConfig,
    key: &str,
    source: &ConfigSource,
    http: &reqwest::Client,
    carry: &Carry,
) -> Result<Issuer, ConfigError> {
    if cfg.issuer.is_empty() {
        return Err(ConfigError::invalid(
            format!("{key}.issuer"),
            "must not be empty",
        ));
    }
    if cfg.audiences.is_empty() || cfg.audiences.iter().any(String::is_empty) {
        return Err(ConfigError::invalid(
            format!("{key}.audiences"),
            "list at least one non-empty audience",
        ));
    }
    if cfg.algorithms.is_empty() {
        return Err(ConfigError::invalid(
            format!("{key}.algorithms"),
            "list at least one algorithm",
        ));
    }
    if let Some(bad) = cfg
        .token_types
        .iter()
        .find(|t| t.is_empty() || t.contains(|c: char| c.is_whitespace() || c.is_control()))
    {
        return Err(ConfigError::invalid(
            format!("{key}.token_types"),
            format!("{bad:?} is not a media type"),
        ));
    }
    if cfg.max_lifetime.is_some_and(|d| d.as_secs() == 0) {
        return Err(ConfigError::invalid(
            format!("{key}.max_lifetime"),
            "must be at least 1s",
        ));
    }
    let algorithms = cfg.algorithms.clone();
    let hmac = algorithms
        .iter()
        .filter(|a| a.family() == jsonwebtoken::AlgorithmFamily::Hmac)
        .count();
    let is_secret = matches!(cfg.keys, KeySourceConfig::SharedSecretFile(_));
    if is_secret && hmac != algorithms.len() {
        return Err(ConfigError::invalid(
            format!("{key}.algorithms"),
            "a shared secret verifies only HS256/HS384/HS512",
        ));
    }
    if !is_secret && hmac > 0 {
        return Err(ConfigError::invalid(
            format!("{key}.algorithms"),
            "HS256/HS384/HS512 need `keys: {shared_secret_file: ...}`",
        ));
    }
    let r = &cfg.refresh;
    if r.min_interval > r.max_interval || r.timeout.is_zero() || r.retry_interval.is_zero() {
        return Err(ConfigError::invalid(
            format!("{key}.refresh"),
            "need min_interval <= max_interval and non-zero timeout and retry_interval",
        ));
    }

    let name = cfg.name.clone().unwrap_or_else(|| cfg.issuer.clone());
    let issuer = |keys: Arc<IssuerKeys>| Issuer {
        name: name.clone(),
        issuer: cfg.issuer.clone(),
        audiences: cfg.audiences.clone(),
        algorithms: algorithms.clone(),
        keys,
        claims: cfg.claims.clone(),
        types: TypePolicy::new(&cfg.token_types, cfg.require_token_type),
        max_lifetime: cfg.max_lifetime.map(|d| d.as_secs()),
    };
    // A remote key set whose source is unchanged is kept, keys and all.
    let remote = |origin: KeyOrigin| -> Result<Issuer, ConfigError> {
        let kept = carry
            .key_sets
            .iter()
            .find(|k| k.same_source(&name, &origin, &cfg.refresh));
        let keys = match kept {
            Some(keys) => keys.clone(),
            None => Arc::new(
                IssuerKeys::remote(name.clone(), origin, cfg.refresh.clone(), http.clone())
                    .with_metrics(carry.metrics.key_metrics(&name)?),
            ),
        };
        Ok(issuer(keys))
    };
    let keys_key = format!("{key}.keys");
    let fixed = |set: Result<KeySet, String>| {
        set.map(|s| IssuerKeys::fixed(name.clone(), s))
            .map_err(|reason| ConfigError::invalid(&keys_key, reason))
    };
    let keys = match &cfg.keys {
        KeySourceConfig::Jwks(doc) => fixed(KeySet::from_jwks(doc).map_err(|e| e.to_string()))?,
        KeySourceConfig::JwksFile(path) => {
            let path = resolve_path(source, path);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("reading {}: {e}", path.display()));
            fixed(text.and_then(|t| {
                let doc =
                    serde_json::from_str(&t).map_err(|e| format!("{}: {e}", path.display()))?;
                KeySet::from_jwks(&doc).map_err(|e| format!("{}: {e}", path.display()))
            }))?
        }
        KeySourceConfig::SharedSecretFile(path) => {
            let path = resolve_path(source, path);
            let secret =
                std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()));
            fixed(secret.and_then(|mut s| {
                while s.last().is_some_and(|b| b.is_ascii_whitespace()) {
                    s.pop();
                }
                if s.len() < MIN_SHARED_SECRET_BYTES {
                    return Err(format!(
                        "shared secret must be at least {MIN_SHARED_SECRET_BYTES} bytes"
                    ));
                }
                Ok(KeySet::from_shared_secret(&s))
            }))?
        }
        KeySourceConfig::JwksUri(url) => {
            check_url(url, &format!("{keys_key}.jwks_uri"))?;
            return remote(KeyOrigin::JwksUri(url.clone()));
        }
        KeySourceConfig::Discovery(d) => {
            let url = d.url.clone().unwrap_or_else(|| {
                format!(
                    "{}/.well-known/openid-configuration",
                    cfg.issuer.trim_end_matches('/')
                )
            });
            check_url(&url, &format!("{keys_key}.discovery"))?;
            return remote(KeyOrigin::Discovery {
                url,
                issuer: cfg.issuer.clone(),
            });
        }
    };
    Ok(issuer(Arc::new(keys)))
}

fn check_url(url: &str, key: &str) -> Result<(), ConfigError> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| ConfigError::invalid(key, format!("{url:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ConfigError::invalid(key, "must be an http(s) URL"));
    }
    Ok(())
}
