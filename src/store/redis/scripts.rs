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
