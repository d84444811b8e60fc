//! The [`Store`] on Redis: one server, a Sentinel group or a Cluster,
//! shared by every replica.
//!
//! Every operation is one command or one Lua script on one key
//! (`key_prefix` + key), so it is atomic and works on a Cluster without
//! hash tags:
//!
//! | operation         | Redis                                         |
//! |-------------------|-----------------------------------------------|
//! | `set`             | `SET k v PX ttl`                              |
//! | `set_if_absent`   | `SET k v NX PX ttl`                           |
//! | `compare_and_set` | script: `GET`, compare, `SET PX`              |
//! | `get`             | `GET`                                         |
//! | `take`            | `GETDEL` (Redis 6.2+)                         |
//! | `delete`          | `DEL`                                         |
//! | `index_add`       | script: `SADD`, then `PEXPIRE` if it extends  |
//! | `index_remove`    | `SREM`                                        |
//! | `index_members`   | `SMEMBERS`, sorted here                       |
//! | `ping`            | `PING`                                        |
//! | `rate_limit`      | script: `TIME`, `GET`, GCRA step, `SET PX`    |
//!
//! Times to live are whole milliseconds, at least 1. Each operation waits
//! at most `command_timeout` in all, connecting included; past it, or when
//! Redis cannot be reached, it fails with [`StoreError::Unavailable`]
//! (callers answer 503, never allow). The store connects on first use and
//! reconnects by itself ([`link`]): it never fails to start because Redis
//! is down, and recovers without a restart.

mod connect;
mod link;
mod scripts;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::{Cmd, ErrorKind, RedisError, RedisResult, ServerErrorKind, Value, cmd};

use super::rate::{Gcra, Step};
use super::{RateDecision, Store, StoreError};
use crate::config::{ConfigError, ConfigSource, RedisStoreConfig};
use connect::Target;
use link::Link;

/// Longest time to live sent to Redis (about 2,000 years): far beyond any
/// real use, far below the overflow of Redis's millisecond clock.
const MAX_TTL_MS: u64 = 1 << 46;

/// A [`Store`] on Redis.
pub struct RedisStore {
    link: Arc<Link>,
    prefix: String,
    health_interval: Duration,
}

impl RedisStore {
    /// Checks `config` and prepares the store, without connecting: Redis
    /// may be down at start-up. Relative file names are read against the
    /// configuration file's directory (`source`). Errors name the
    /// offending `store.redis` key.
    pub fn new(
        config: &RedisStoreConfig,
        source: &ConfigSource,
    ) -> Result<RedisStore, ConfigError> {
        Ok(RedisStore {
            link: Link::new(Target::from_config(config, source)?),
            prefix: config.key_prefix.clone(),
            health_interval: config.health_interval,
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Runs `op` on a connection, all within `command_timeout`. A failure
    /// that leaves the connection in doubt drops it (see [`link`]).
    async fn run<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(connect::Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let target = &self.link.target;
        let deadline = tokio::time::Instant::now() + target.command_timeout;
        let (conn, generation) = self
            .link
            .get(deadline)
            .await
            .map_err(StoreError::Unavailable)?;
        match tokio::time::timeout_at(deadline, op(conn)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                let text = target.describe(&e);
                if breaks_connection(&e) {
                    self.link.broken(generation, &text);
                }
                Err(StoreError::Unavailable(text))
            }
            Err(_) => {
                let text = format!(
                    "no answer from {} within {}",
                    target.label,
                    humantime::format_duration(target.command_timeout)
                );
                self.link.broken(generation, &text);
                Err(StoreError::Unavailable(text))
            }
        }
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: Cmd) -> Result<T, StoreError> {
        self.run(|mut conn| async move { cmd.query_async(&mut conn).await })
            .await
    }
}

/// Whether `e` means the connection (or the server behind it) can no
/// longer be trusted: I/O failures, and a master that has become a
/// replica (`READONLY`) or lost its own master (`MASTERDOWN`) in a
/// failover, after which Sentinel must be asked again.
fn breaks_connection(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_unrecoverable_error()
        || matches!(
            e.kind(),
            ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
                | ErrorKind::ClusterConnectionNotFound
        )
}

/// `ttl` as Redis milliseconds: at least 1, at most [`MAX_TTL_MS`].
fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_TTL_MS)
}

#[async_trait]
impl Store for RedisStore {
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
        let mut c = cmd("SET");
        c.arg(self.key(key)).arg(value).arg("PX").arg(millis(ttl));
        self.query::<()>(c).await
    }

    async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut c = cmd("SET");
        c.arg(self.key(key))
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl));
        // `OK` when stored, nil when the key holds a value.
        Ok(!matches!(self.query::<Value>(c).await?, Value::Nil))
    }

    async fn compare_and_set(
        &self,
        key: &str,
        expected: &[u8],
        new: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let key = self.key(key);
        self.run(|mut conn| async move {
            scripts::COMPARE_AND_SET
                .key(key)
                .arg(expected)
                .arg(new)
                .arg(millis(ttl))
                .invoke_async::<i64>(&mut conn)
                .await
        })
        .await
        .map(|replaced| replaced == 1)
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut c = cmd("GET");
        c.arg(self.key(key));
        self.query(c).await
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut c = cmd("GETDEL");
        c.arg(self.key(key));
        self.query(c).await
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let mut c = cmd("DEL");
        c.arg(self.key(key));
        Ok(self.query::<i64>(c).await? > 0)
    }

    async fn index_add(&self, index: &str, member: &str, ttl: Duration) -> Result<(), StoreError> {
        let key = self.key(index);
        self.run(|mut conn| async move {
            scripts::INDEX_ADD
                .key(key)
                .arg(member)
                .arg(millis(ttl))
                .invoke_async::<i64>(&mut conn)
                .await
        })
        .await
        .map(|_| ())
    }

    async fn index_remove(&self, index: &str, member: &str) -> Result<bool, StoreError> {
        let mut c = cmd("SREM");
        c.arg(self.key(index)).arg(member);
        Ok(self.query::<i64>(c).await? > 0)
    }

    async fn index_members(&self, index: &str) -> Result<Vec<String>, StoreError> {
        let mut c = cmd("SMEMBERS");
        c.arg(self.key(index));
        let mut members: Vec<String> = self.query(c).await?;
        members.sort_unstable();
        Ok(members)
    }

    /// One `EVALSHA`: one round trip per check (two more, `SCRIPT LOAD`
    /// and the retried `EVALSHA`, the first time a server lacks the
    /// script).
    async fn rate_limit(
        &self,
        key: &str,
        limit: u64,
        window: Duration,
    ) -> Result<RateDecision, StoreError> {
        let gcra = Gcra::new(limit, window);
        let key = self.key(key);
        let (allowed, backlog_us, retry_after_us) = self
            .run(|mut conn| async move {
                scripts::RATE_LIMIT
                    .key(key)
                    .arg(gcra.interval_us())
                    .arg(gcra.capacity_us())
                    .invoke_async::<(i64, i64, i64)>(&mut conn)
                    .await
            })
            .await?;
        let unsigned = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(gcra.decision(Step {
            allowed: allowed == 1,
            backlog_us: unsigned(backlog_us),
            retry_after_us: unsigned(retry_after_us),
        }))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.query::<()>(cmd("PING")).await
    }

    fn health_interval(&self) -> Option<Duration> {
        Some(self.health_interval)
    }
}
