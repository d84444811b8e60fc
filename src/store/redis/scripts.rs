//! The Lua scripts behind the operations Redis has no single command for.
//! Each touches exactly one key (`KEYS[1]`), so it runs atomically on any
//! deployment, a Cluster included, without hash tags.

use std::sync::LazyLock;

use redis::Script;

/// `compare_and_set`: `ARGV[1]` expected, `ARGV[2]` new value, `ARGV[3]`
/// time to live in ms. Returns 1 when it replaced the value. An absent key
/// (`GET` gives `false`) never equals a string, not even an empty one.
pub(crate) static COMPARE_AND_SET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
",
    )
});

/// `index_add`: adds `ARGV[1]` to the set and makes it live at least
/// `ARGV[2]` ms. `PEXPIRE ... GT` alone would not do: a set `SADD` just
/// created has no expiry, which `GT` counts as infinite.
pub(crate) static INDEX_ADD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('SADD', KEYS[1], ARGV[1])
local ttl = tonumber(ARGV[2])
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1
",
    )
});

/// `rate_limit`: one GCRA step (see `store::rate`). `ARGV[1]` the interval
/// and `ARGV[2]` the capacity, in microseconds. The value is the time, in
/// microseconds of the Redis server's clock (`TIME`, so replicas of
/// gatehouse with skewed clocks agree), at which the caller's allowance is
/// whole again; the key expires then too. A value that is no number counts
/// as none. Returns `{allowed (0/1), backlog, retry after}` in
/// microseconds. Scripts replicate their effects (Redis 5+), so reading
/// `TIME` before a write is allowed; the numbers stay far below 2^53,
/// where Lua's doubles are exact, and `%.0f` writes them without an
/// exponent.
pub(crate) static RATE_LIMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '')
local backlog = 0
if tat and tat > now then
  backlog = tat - now
end
local nxt = backlog + interval
if nxt > capacity then
  return {0, backlog, nxt - capacity}
end
redis.call('SET', KEYS[1], string.format('%.0f', now + nxt), 'PX', math.ceil(nxt / 1000))
return {1, nxt, 0}
",
    )
});
