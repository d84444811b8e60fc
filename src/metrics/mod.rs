//! Prometheus metrics, served as text at `GET /metrics` on the side port.
//!
//! Library: the `prometheus` crate (TiKV) rather than `prometheus-client`
//! (the Prometheus organisation's). Both are maintained — the latter
//! releases more often and speaks OpenMetrics — but its `Histogram`
//! takes a mutex on every observation, while `prometheus`'s histogram is
//! lock-free (hot and cold shards of atomics). Every check observes one
//! histogram from every worker thread, so the lock-free one keeps
//! recording a check to a handful of atomic operations. Its text format
//! (0.0.4) is what every Prometheus scrapes.
//!
//! One [`Metrics`] (one registry) per process, made by the caller and
//! handed to [`crate::app`]: no global. Engines, key sets and the store
//! get pre-resolved handles to their series when they are built
//! ([`checks::EngineMetrics`], [`KeyMetrics`], [`StoreMetrics`]), so
//! recording never looks a label up. Labels are bounded by configuration
//! (rule and issuer names) or by the code (decisions, deny reasons, store
//! operations); nothing a client sends becomes a label.

pub mod checks;

use std::sync::Mutex;
use std::time::Duration;

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub use checks::EngineMetrics;

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Check latency buckets (seconds): a check is a few microseconds in
/// process, a signature verification tens, a key refetch milliseconds.
const CHECK_BUCKETS: [f64; 17] = [
    5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3,
    100e-3, 250e-3, 1.0, 2.5,
];

/// Store latency buckets (seconds): the memory store answers in about a
/// microsecond, a networked one in a fraction of a millisecond.
const STORE_BUCKETS: [f64; 13] = [
    1e-6, 5e-6, 10e-6, 50e-6, 100e-6, 500e-6, 1e-3, 5e-3, 10e-3, 50e-3, 100e-3, 500e-3, 1.0,
];

/// A store operation, for the `op` label of the store metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    /// `Store::set`.
    Set,
    /// `Store::set_if_absent`.
    SetIfAbsent,
    /// `Store::compare_and_set`.
    CompareAndSet,
    /// `Store::get`.
    Get,
    /// `Store::take`.
    Take,
    /// `Store::delete`.
    Delete,
    /// `Store::index_add`.
    IndexAdd,
    /// `Store::index_remove`.
    IndexRemove,
    /// `Store::index_members`.
    IndexMembers,
    /// `Store::ping`.
    Ping,
    /// `Store::purge_expired`.
    PurgeExpired,
    /// `Store::rate_limit`.
    RateLimit,
}

impl StoreOp {
    /// Every operation, in label order.
    pub const ALL: [StoreOp; 12] = [
        StoreOp::Set,
        StoreOp::SetIfAbsent,
        StoreOp::CompareAndSet,
        StoreOp::Get,
        StoreOp::Take,
        StoreOp::Delete,
        StoreOp::IndexAdd,
        StoreOp::IndexRemove,
        StoreOp::IndexMembers,
        StoreOp::Ping,
        StoreOp::PurgeExpired,
        StoreOp::RateLimit,
    ];

    /// The `op` label.
    pub fn label(self) -> &'static str {
        match self {
            StoreOp::Set => "set",
            StoreOp::SetIfAbsent => "set_if_absent",
            StoreOp::CompareAndSet => "compare_and_set",
            StoreOp::Get => "get",
            StoreOp::Take => "take",
            StoreOp::Delete => "delete",
            StoreOp::IndexAdd => "index_add",
            StoreOp::IndexRemove => "index_remove",
            StoreOp::IndexMembers => "index_members",
            StoreOp::Ping => "ping",
            StoreOp::PurgeExpired => "purge_expired",
            StoreOp::RateLimit => "rate_limit",
        }
    }
}

/// Why metrics could not be set up or rendered (a bug: every name and
/// label is fixed in this module).
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The `prometheus` crate refused a metric, a label or the encoding.
    #[error("metrics: {0}")]
    Prometheus(#[from] prometheus::Error),
}

impl From<MetricsError> for crate::config::ConfigError {
    fn from(e: MetricsError) -> Self {
        crate::config::ConfigError::Metrics(e.to_string())
    }
}

/// Counters of token-cache lookups by outcome
/// (`gatehouse_token_cache_lookups_total{result}`), handed to the cache.
#[derive(Clone)]
pub struct TokenCacheMetrics {
    /// Found and still valid: no signature checked.
    pub hit: IntCounter,
    /// Not cached: the token is verified in full.
    pub miss: IntCounter,
    /// Cached but expired or verified against a key set since replaced:
    /// dropped, and the token verified in full.
    pub stale: IntCounter,
}

/// Counters of calls to the authorization server by outcome
/// (`gatehouse_oauth_requests_total{endpoint,result}`), for one endpoint:
/// `introspection` or `token_exchange`.
#[derive(Clone)]
pub struct OAuthCallMetrics {
    /// Answered from the local cache, no call made.
    pub cached: IntCounter,
    /// Called; the server vouched (an active token, an exchanged token).
    pub granted: IntCounter,
    /// Called; the server refused (an inactive token, an exchange refused).
    pub refused: IntCounter,
    /// Called; no usable answer (unreachable, timed out, malformed).
    pub failed: IntCounter,
}

/// What the key-set gauges show of one remote key set, read at scrape
/// time (`authn::jwt::keys::IssuerKeys::gauge`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySetGauge {
    /// The issuer's name (the `issuer` label).
    pub name: String,
    /// Keys in the current set (0 before the first fetch).
    pub keys: usize,
    /// When the current set was fetched, seconds since the epoch.
    pub fetched_at: Option<u64>,
}

/// The process's registry and every metric family in it.
pub struct Metrics {
    registry: Registry,
    checks: IntCounterVec,
    check_duration: HistogramVec,
    jwks_refresh: IntCounterVec,
    shadow_disagreements: IntCounterVec,
    jwks_age: GaugeVec,
    jwks_keys: IntGaugeVec,
    token_cache: IntCounterVec,
    token_cache_entries: IntGauge,
    oauth_requests: IntCounterVec,
    store_duration: HistogramVec,
    store_errors: IntCounterVec,
    store_up: IntGauge,
    reloads: IntCounterVec,
    reload_success_time: Gauge,
    reload_successful: IntGauge,
    restart_required: IntGauge,
    /// Serializes scrapes: each one resets and refills the key-set gauges.
    scrape: Mutex<()>,
}

impl Metrics {
    /// A fresh registry with every metric family registered.
    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let build_info = IntGaugeVec::new(
            Opts::new(
                "gatehouse_build_info",
                "Always 1; the labels name the running build.",
            ),
            &["version"],
        )?;
        build_info
            .get_metric_with_label_values(&[env!("CARGO_PKG_VERSION")])?
            .set(1);
        registry.register(Box::new(build_info))?;
        let metrics = Metrics {
            checks: counter_vec(
                &registry,
                "gatehouse_checks_total",
                "Checks answered, by decision (allow, deny), deny reason (empty for allow) and rule (empty when no rule applied).",
                &["decision", "reason", "rule"],
            )?,
            check_duration: histogram_vec(
                &registry,
                "gatehouse_check_duration_seconds",
                "Time from receiving a check to its answer, in process (excludes gRPC framing), by decision.",
                &["decision"],
                &CHECK_BUCKETS,
            )?,
            jwks_refresh: counter_vec(
                &registry,
                "gatehouse_jwks_refresh_total",
                "Fetches of remote key sets (scheduled, and refetches for an unknown kid), by issuer and result (success, failure).",
                &["issuer", "result"],
            )?,
            shadow_disagreements: counter_vec(
                &registry,
                "gatehouse_shadow_disagreements_total",
                "Checks whose answer a `mode: shadow` rule would have changed, by shadow rule and change (allow_to_deny, deny_to_allow, reason_changed).",
                &["rule", "change"],
            )?,
            jwks_age: register(
                &registry,
                GaugeVec::new(
                    Opts::new(
                        "gatehouse_jwks_keys_age_seconds",
                        "Seconds since the issuer's remote key set was last fetched successfully (absent until the first success).",
                    ),
                    &["issuer"],
                )?,
            )?,
            jwks_keys: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "gatehouse_jwks_keys",
                        "Usable keys in the issuer's remote key set (0 until loaded).",
                    ),
                    &["issuer"],
                )?,
            )?,
            token_cache: counter_vec(
                &registry,
                "gatehouse_token_cache_lookups_total",
                "Lookups in the verified-token cache, by result: hit (no signature checked), miss (verified in full), stale (expired or verified against a replaced key set: dropped and verified in full).",
                &["result"],
            )?,
            token_cache_entries: register(
                &registry,
                IntGauge::new(
                    "gatehouse_token_cache_entries",
                    "Verified tokens held in the serving engine's cache.",
                )?,
            )?,
            oauth_requests: counter_vec(
                &registry,
                "gatehouse_oauth_requests_total",
                "Token introspection and token exchange at the authorization server, by endpoint (introspection, token_exchange) and result: cached (answered locally), granted (active; exchanged), refused (inactive; exchange refused), failed (no usable answer).",
                &["endpoint", "result"],
            )?,
            store_duration: histogram_vec(
                &registry,
                "gatehouse_store_operation_duration_seconds",
                "Latency of store operations, by operation.",
                &["op"],
                &STORE_BUCKETS,
            )?,
            store_errors: counter_vec(
                &registry,
                "gatehouse_store_errors_total",
                "Store operations that failed (store full or unavailable), by operation.",
                &["op"],
            )?,
            store_up: register(
                &registry,
                IntGauge::new(
                    "gatehouse_store_up",
                    "1 while the store answers (the last operation or health ping succeeded), 0 while it does not.",
                )?,
            )?,
            reloads: counter_vec(
                &registry,
                "gatehouse_config_reloads_total",
                "Configuration reloads (SIGHUP or a change of the file), by result (success, failure).",
                &["result"],
            )?,
            reload_success_time: register(
                &registry,
                Gauge::new(
                    "gatehouse_config_last_reload_success_timestamp_seconds",
                    "When the running configuration was loaded (start or last successful reload), Unix time.",
                )?,
            )?,
            reload_successful: register(
                &registry,
                IntGauge::new(
                    "gatehouse_config_last_reload_successful",
                    "1 when the last load of the configuration succeeded, 0 when it failed and the previous one is still running.",
                )?,
            )?,
            restart_required: register(
                &registry,
                IntGauge::new(
                    "gatehouse_config_restart_required",
                    "1 when the configuration file changes settings that take effect only at restart (listen addresses, logging, reload).",
                )?,
            )?,
            registry,
            scrape: Mutex::new(()),
        };
        for result in ["success", "failure"] {
            metrics.reloads.get_metric_with_label_values(&[result])?;
        }
        for op in StoreOp::ALL {
            metrics
                .store_errors
                .get_metric_with_label_values(&[op.label()])?;
        }
        metrics.store_up.set(1);
        Ok(metrics)
    }

    /// Handles for one remote key set's fetch results.
    pub fn key_metrics(&self, issuer: &str) -> Result<KeyMetrics, MetricsError> {
        Ok(KeyMetrics {
            success: self
                .jwks_refresh
                .get_metric_with_label_values(&[issuer, "success"])?,
            failure: self
                .jwks_refresh
                .get_metric_with_label_values(&[issuer, "failure"])?,
        })
    }

    /// Counts one check a shadow rule disagreed with (`change`:
    /// `allow_to_deny`, `deny_to_allow` or `reason_changed`).
    pub fn shadow_disagreement(&self, rule: &str, change: &str) {
        if let Ok(counter) = self
            .shadow_disagreements
            .get_metric_with_label_values(&[rule, change])
        {
            counter.inc();
        }
    }

    /// Handles for the token cache's lookup counters.
    pub fn token_cache_metrics(&self) -> Result<TokenCacheMetrics, MetricsError> {
        let result = |name: &str| self.token_cache.get_metric_with_label_values(&[name]);
        Ok(TokenCacheMetrics {
            hit: result("hit")?,
            miss: result("miss")?,
            stale: result("stale")?,
        })
    }

    /// Handles for one authorization-server endpoint's call counters
    /// (`introspection` or `token_exchange`).
    pub fn oauth_call_metrics(&self, endpoint: &str) -> Result<OAuthCallMetrics, MetricsError> {
        let result = |name: &str| {
            self.oauth_requests
                .get_metric_with_label_values(&[endpoint, name])
        };
        Ok(OAuthCallMetrics {
            cached: result("cached")?,
            granted: result("granted")?,
            refused: result("refused")?,
            failed: result("failed")?,
        })
    }

    /// Handles for every store operation.
    pub fn store_metrics(&self) -> Result<StoreMetrics, MetricsError> {
        let op = |name: &str| -> Result<StoreOpMetrics, MetricsError> {
            Ok(StoreOpMetrics {
                duration: self.store_duration.get_metric_with_label_values(&[name])?,
                errors: self.store_errors.get_metric_with_label_values(&[name])?,
            })
        };
        let ops = StoreOp::ALL
            .iter()
            .map(|o| op(o.label()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(StoreMetrics {
            ops: ops.into(),
            up: self.store_up.clone(),
        })
    }

    /// Records the outcome of a configuration load: `restart_required`
    /// tells whether the file has settings that wait for a restart.
    pub fn config_loaded(&self, ok: bool, restart_required: bool) {
        let result = if ok { "success" } else { "failure" };
        if let Ok(counter) = self.reloads.get_metric_with_label_values(&[result]) {
            counter.inc();
        }
        self.reload_successful.set(i64::from(ok));
        if ok {
            self.reload_success_time
                .set(crate::clock::now_secs() as f64);
            self.restart_required.set(i64::from(restart_required));
        }
    }

    /// Marks the configuration loaded at start-up (not counted as a reload).
    pub fn config_started(&self) {
        self.reload_successful.set(1);
        self.reload_success_time
            .set(crate::clock::now_secs() as f64);
    }

    /// The text exposition of every metric; the key-set gauges are
    /// computed now from `key_sets` and the cache size is
    /// `token_cache_entries` (both the serving engine's).
    pub fn render(
        &self,
        key_sets: &[KeySetGauge],
        token_cache_entries: usize,
    ) -> Result<String, MetricsError> {
        let _scrape = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        self.token_cache_entries
            .set(i64::try_from(token_cache_entries).unwrap_or(i64::MAX));
        self.jwks_age.reset();
        self.jwks_keys.reset();
        let now = crate::clock::now_secs();
        for keys in key_sets {
            let count = keys.keys;
            self.jwks_keys
                .get_metric_with_label_values(&[&keys.name])?
                .set(i64::try_from(count).unwrap_or(i64::MAX));
            if let Some(fetched) = keys.fetched_at {
                self.jwks_age
                    .get_metric_with_label_values(&[&keys.name])?
                    .set(now.saturating_sub(fetched) as f64);
            }
        }
        let mut text = String::new();
        TextEncoder::new().encode_utf8(&self.registry.gather(), &mut text)?;
        Ok(text)
    }
}

/// Fetch results of one remote key set.
#[derive(Clone)]
pub struct KeyMetrics {
    success: IntCounter,
    failure: IntCounter,
}

impl KeyMetrics {
    /// Counts one fetch.
    pub fn fetched(&self, ok: bool) {
        if ok {
            self.success.inc();
        } else {
            self.failure.inc();
        }
    }
}

/// Latency and errors of one store operation.
#[derive(Clone)]
pub struct StoreOpMetrics {
    duration: Histogram,
    errors: IntCounter,
}

impl StoreOpMetrics {
    /// Records one operation that took `elapsed`.
    pub fn record(&self, elapsed: Duration, failed: bool) {
        self.duration.observe(elapsed.as_secs_f64());
        if failed {
            self.errors.inc();
        }
    }
}

/// Every store operation's handles, and whether the store is up.
#[derive(Clone)]
pub struct StoreMetrics {
    /// One per [`StoreOp`], in [`StoreOp::ALL`] order.
    ops: std::sync::Arc<[StoreOpMetrics]>,
    up: IntGauge,
}

impl StoreMetrics {
    /// Records one `op` that took `elapsed`; a success marks the store up,
    /// a failure other than a full memory store marks it down.
    pub fn record(&self, op: StoreOp, elapsed: Duration, outcome: StoreOutcome) {
        // ALL lists every variant, so the position is always found.
        if let Some(i) = StoreOp::ALL.iter().position(|o| *o == op)
            && let Some(metrics) = self.ops.get(i)
        {
            metrics.record(elapsed, outcome != StoreOutcome::Ok);
        }
        match outcome {
            StoreOutcome::Ok => self.up.set(1),
            StoreOutcome::Unreachable => self.up.set(0),
            StoreOutcome::Refused => {}
        }
    }
}

/// How a store operation ended, for [`StoreMetrics::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    /// It succeeded: the backend answers.
    Ok,
    /// It failed but the backend answered (a full memory store, a value
    /// that could not be encrypted).
    Refused,
    /// The backend could not be reached.
    Unreachable,
}

fn register<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: M,
) -> Result<M, MetricsError> {
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, MetricsError> {
    register(registry, IntCounterVec::new(Opts::new(name, help), labels)?)
}

fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> Result<HistogramVec, MetricsError> {
    register(
        registry,
        HistogramVec::new(
            HistogramOpts::new(name, help).buckets(buckets.to_vec()),
            labels,
        )?,
    )
}

#[cfg(test)]
pub(crate) mod tests;
