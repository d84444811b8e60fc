//! From `store.redis` to connections: the configuration is checked once
//! ([`Target::from_config`], at start-up and by `check-config`), and the
//! resulting [`Target`] opens a connection whenever the link needs one.
//! Nothing here touches the network until [`Target::connect`].

use std::path::Path;
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo,
    Pipeline, RedisError, RedisFuture, TlsCertificates, TlsMode, Value,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::config::{ConfigError, ConfigSource, RedisStoreConfig, resolve_path};
use crate::secret::Secret;

const KEY: &str = "store.redis";

/// Where and how to connect, checked and ready.
pub(crate) struct Target {
    kind: Kind,
    /// The password, kept to scrub it from any error text.
    password: Option<Secret>,
    /// Longest wait for a connection (resolving the master included).
    pub(crate) connect_timeout: Duration,
    /// Longest wait for one command's answer.
    pub(crate) command_timeout: Duration,
    /// What the deployment is, for logs: `redis://host:port`, `sentinel
    /// mymaster`, `cluster (3 seed nodes)`; never a credential.
    pub(crate) label: String,
}

enum Kind {
    Standalone(Client),
    /// `SentinelClient` asks through `&mut self` (it caches its sentinel
    /// connections); one connection attempt runs at a time anyway.
    Sentinel(tokio::sync::Mutex<SentinelClient>),
    Cluster(redis::cluster::ClusterClient),
}

/// An open connection: one server's (standalone, or the master Sentinel
/// named) or a Cluster's. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

impl Target {
    /// Checks `config` and prepares the connection settings: exactly one
    /// deployment, `redis://`/`rediss://` URLs without credentials, readable
    /// password and CA files, non-zero timeouts. Relative paths are read
    /// against the configuration file's directory.
    pub(crate) fn from_config(
        config: &RedisStoreConfig,
        source: &ConfigSource,
    ) -> Result<Target, ConfigError> {
        for (value, key) in [
            (config.connect_timeout, "connect_timeout"),
            (config.command_timeout, "command_timeout"),
            (config.health_interval, "health_interval"),
        ] {
            if value.is_zero() {
                return Err(ConfigError::invalid(
                    format!("{KEY}.{key}"),
                    "must not be zero",
                ));
            }
        }
        if config.username.as_deref() == Some("") {
            return Err(ConfigError::invalid(
                format!("{KEY}.username"),
                "must not be empty (leave it out for the default user)",
            ));
        }
        let password = config
            .password_file
            .as_deref()
            .map(|path| read_secret(path, source, &format!("{KEY}.password_file")))
            .transpose()?;
        let ca = config
            .ca_file
            .as_deref()
            .map(|path| read_ca(path, source))
            .transpose()?;
        let certs = |ca: &Option<Vec<u8>>| TlsCertificates {
            client_tls: None,
            root_cert: ca.clone(),
        };
        let credentials = Credentials {
            username: config.username.as_deref(),
            password: password.as_ref(),
        };

        let (kind, label, tls) = match (&config.url, &config.sentinel, &config.cluster) {
            (Some(url), None, None) => {
                let node = Node::parse(url, &format!("{KEY}.url"))?;
                let info = credentials.apply(node.info);
                let client = match &ca {
                    Some(_) if node.tls => Client::build_with_tls(info, certs(&ca)),
                    _ => Client::open(info),
                }
                .map_err(|e| ConfigError::invalid(format!("{KEY}.url"), e.to_string()))?;
                (Kind::Standalone(client), node.label, node.tls)
            }
            (None, Some(sentinel), None) => {
                if sentinel.master_name.trim().is_empty() {
                    return Err(ConfigError::invalid(
                        format!("{KEY}.sentinel.master_name"),
                        "must not be empty",
                    ));
                }
                if sentinel.db < 0 {
                    return Err(ConfigError::invalid(
                        format!("{KEY}.sentinel.db"),
                        "must not be negative",
                    ));
                }
                let nodes = Node::parse_all(&sentinel.nodes, &format!("{KEY}.sentinel.nodes"))?;
                let tls = nodes.first().is_some_and(|n| n.tls);
                let sentinel_password = sentinel
                    .sentinel_password_file
                    .as_deref()
                    .map(|path| {
                        read_secret(
                            path,
                            source,
                            &format!("{KEY}.sentinel.sentinel_password_file"),
                        )
                    })
                    .transpose()?;
                let addrs = nodes.into_iter().map(|n| n.info.addr().clone());
                let mut builder = SentinelClientBuilder::new(
                    addrs,
                    &sentinel.master_name,
                    SentinelServerType::Master,
                )
                .map_err(|e| ConfigError::invalid(format!("{KEY}.sentinel"), e.to_string()))?
                .set_client_to_redis_db(sentinel.db);
                if let Some(user) = &config.username {
                    builder = builder.set_client_to_redis_username(user);
                }
                if let Some(password) = &password {
                    builder = builder.set_client_to_redis_password(password.expose());
                }
                if let Some(password) = &sentinel_password {
                    builder = builder.set_client_to_sentinel_password(password.expose());
                }
                if tls {
                    builder = builder
                        .set_client_to_redis_tls_mode(TlsMode::Secure)
                        .set_client_to_sentinel_tls_mode(TlsMode::Secure);
                    if ca.is_some() {
                        builder = builder
                            .set_client_to_redis_certificates(certs(&ca))
                            .set_client_to_sentinel_certificates(certs(&ca));
                    }
                }
                let client = builder
                    .build()
                    .map_err(|e| ConfigError::invalid(format!("{KEY}.sentinel"), e.to_string()))?;
                let label = format!("sentinel master {:?}", sentinel.master_name);
                (Kind::Sentinel(tokio::sync::Mutex::new(client)), label, tls)
            }
            (None, None, Some(cluster)) => {
                let key = format!("{KEY}.cluster.nodes");
                let nodes = Node::parse_all(&cluster.nodes, &key)?;
                if let Some(i) = nodes.iter().position(|n| n.info.redis_settings().db() != 0) {
                    return Err(ConfigError::invalid(
                        format!("{key}[{i}]"),
                        "a Redis Cluster has only database 0",
                    ));
                }
                let tls = nodes.first().is_some_and(|n| n.tls);
                let count = nodes.len();
                let mut builder = ClusterClientBuilder::new(nodes.into_iter().map(|n| n.info))
                    .connection_timeout(config.connect_timeout)
                    .response_timeout(config.command_timeout);
                if let Some(user) = &config.username {
                    builder = builder.username(user);
                }
                if let Some(password) = &password {
                    builder = builder.password(password.expose());
                }
                if tls && ca.is_some() {
                    builder = builder.certs(certs(&ca));
                }
                let client = builder
                    .build()
                    .map_err(|e| ConfigError::invalid(format!("{KEY}.cluster"), e.to_string()))?;
                (
                    Kind::Cluster(client),
                    format!("cluster ({count} seed nodes)"),
                    tls,
                )
            }
            _ => {
                return Err(ConfigError::invalid(
                    KEY,
                    "set exactly one of url, sentinel or cluster",
                ));
            }
        };
        if ca.is_some() && !tls {
            return Err(ConfigError::invalid(
                format!("{KEY}.ca_file"),
                "is for TLS: the Redis URLs must start with rediss://",
            ));
        }
        if tls {
            install_crypto_provider();
        }
        Ok(Target {
            kind,
            password,
            connect_timeout: config.connect_timeout,
            command_timeout: config.command_timeout,
            label,
        })
    }

    /// Opens a connection: to the server, to the master the sentinels name
    /// now, or to the cluster (its topology read from the seed nodes).
    /// Not bounded here; the caller bounds it by `connect_timeout`.
    pub(crate) async fn connect(&self) -> Result<Conn, RedisError> {
        let config =
            AsyncConnectionConfig::new().set_connection_timeout(Some(self.connect_timeout));
        match &self.kind {
            Kind::Standalone(client) => client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .map(Conn::Single),
            Kind::Sentinel(sentinel) => {
                let master = sentinel.lock().await.async_get_client().await?;
                master
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map(Conn::Single)
            }
            Kind::Cluster(client) => client.get_async_connection().await.map(Conn::Cluster),
        }
    }

    /// `error` as text for logs and `StoreError::Unavailable`, with the
    /// password (should a server or library ever echo it) blotted out.
    pub(crate) fn describe(&self, error: &RedisError) -> String {
        self.scrub(error.to_string())
    }

    /// `text` with the password blotted out.
    pub(crate) fn scrub(&self, text: String) -> String {
        match &self.password {
            Some(p) if !p.expose().is_empty() && text.contains(p.expose()) => {
                text.replace(p.expose(), "[redacted]")
            }
            _ => text,
        }
    }
}

/// `rustls` (inside `redis`) takes the process-wide crypto provider; make
/// it aws-lc-rs, gatehouse's one crypto library, unless one is already set
/// (then that one stays: `install_default` refuses a second).
fn install_crypto_provider() {
    let _already_set = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Username and password from their own keys, never from a URL.
struct Credentials<'a> {
    username: Option<&'a str>,
    password: Option<&'a Secret>,
}

impl Credentials<'_> {
    fn apply(&self, info: ConnectionInfo) -> ConnectionInfo {
        let mut settings = info.redis_settings().clone();
        if let Some(user) = self.username {
            settings = settings.set_username(user);
        }
        if let Some(password) = self.password {
            settings = settings.set_password(password.expose());
        }
        info.set_redis_settings(settings)
    }
}

/// One checked node URL.
struct Node {
    info: ConnectionInfo,
    tls: bool,
    /// `scheme://host:port`, for logs.
    label: String,
}

impl Node {
    /// Parses `url` (the value of `key`): `redis://` or `rediss://`, a
    /// host, no user or password. The URL is never echoed in an error: it
    /// might hold the password this refuses.
    fn parse(url: &str, key: &str) -> Result<Node, ConfigError> {
        let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        let tls = match scheme.as_deref() {
            Some("redis") => false,
            Some("rediss") => true,
            Some(other) => {
                return Err(ConfigError::invalid(
                    key,
                    format!(
                        "scheme {:?} is not supported: use redis://host:port or rediss://host:port",
                        other.chars().take(16).collect::<String>()
                    ),
                ));
            }
            None => {
                return Err(ConfigError::invalid(
                    key,
                    "must be a URL: redis://host:port[/db] or rediss://host:port[/db]",
                ));
            }
        };
        let info = url.into_connection_info().map_err(|_| {
            ConfigError::invalid(
                key,
                "is not a valid Redis URL: redis://host:port[/db] or rediss://host:port[/db]",
            )
        })?;
        let settings = info.redis_settings();
        if settings.password().is_some() {
            return Err(ConfigError::invalid(
                key,
                "holds a password: put it in a file named by store.redis.password_file",
            ));
        }
        if settings.username().is_some() {
            return Err(ConfigError::invalid(
                key,
                "holds a user name: set store.redis.username instead",
            ));
        }
        if url.contains('?') {
            return Err(ConfigError::invalid(
                key,
                "takes no query parameters (TLS needs rediss://, its CA store.redis.ca_file)",
            ));
        }
        let label = match info.addr() {
            ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                format!("{}://{host}:{port}", if tls { "rediss" } else { "redis" })
            }
            _ => {
                return Err(ConfigError::invalid(key, "must name a TCP host and port"));
            }
        };
        Ok(Node { info, tls, label })
    }

    /// Parses every URL in `urls` (the list at `key`): at least one, all
    /// with TLS or all without.
    fn parse_all(urls: &[String], key: &str) -> Result<Vec<Node>, ConfigError> {
        if urls.is_empty() {
            return Err(ConfigError::invalid(key, "name at least one node"));
        }
        let nodes = urls
            .iter()
            .enumerate()
            .map(|(i, url)| Node::parse(url, &format!("{key}[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        if nodes.iter().any(|n| n.tls != nodes[0].tls) {
            return Err(ConfigError::invalid(
                key,
                "mixes redis:// and rediss://: use one scheme for every node",
            ));
        }
        Ok(nodes)
    }
}

/// A secret from a file, without its trailing newline; an empty one is an
/// error (a file created but never filled).
fn read_secret(path: &Path, source: &ConfigSource, key: &str) -> Result<Secret, ConfigError> {
    let path = resolve_path(source, path);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ConfigError::invalid(key, format!("cannot read {}: {e}", path.display())))?;
    let value = text.trim_end_matches(['\n', '\r']);
    if value.is_empty() {
        return Err(ConfigError::invalid(
            key,
            format!("{} is empty", path.display()),
        ));
    }
    Ok(Secret::new(value))
}

/// The PEM bytes of `ca_file`, holding at least one certificate.
fn read_ca(path: &Path, source: &ConfigSource) -> Result<Vec<u8>, ConfigError> {
    let key = format!("{KEY}.ca_file");
    let path = resolve_path(source, path);
    let pem = std::fs::read(&path)
        .map_err(|e| ConfigError::invalid(&key, format!("cannot read {}: {e}", path.display())))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConfigError::invalid(&key, format!("{}: bad PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(ConfigError::invalid(
            &key,
            format!("{} holds no PEM certificate", path.display()),
        ));
    }
    Ok(pem)
}
