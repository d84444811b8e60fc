"""Per-user quotas (rule `quota: {per: user, limit: 5, window: 1m}` below
/quota/, harness/configs.py) through real Envoy.

Two replicas on one real Redis count one allowance: of 12 concurrent
requests from one user, split across both, exactly 5 pass and 7 get a 429
with `Retry-After` and the `RateLimit-Policy`/`RateLimit` headers (the 5
allowed carry the allowance left, 4 down to 0); another
user is unaffected; the key in Redis shows no user name. Each check costs
exactly one Redis command (`EVALSHA`), read from `INFO commandstats`.
The single replica on the memory store limits the same way.
"""

from __future__ import annotations

import re
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness import expect
from harness.configs import QUOTA_LIMIT, QUOTA_RULE
from harness.httpc import Client, Response
from harness.metrics import scrape
from harness.replicas import Pair, start_pair

WINDOW_S = 60
POLICY = f'"{QUOTA_RULE}";q={QUOTA_LIMIT};w={WINDOW_S}'
RATELIMIT = re.compile(rf'^"{QUOTA_RULE}";r=(\d+);t=(\d+)$')


@pytest.fixture
def pair(redis_server, gatehouse_factory, envoy_factory, echo, keys, idp, discovery_idp,
         rotating_idp, trusted_proxies) -> Pair:
    """conftest's `pair`, with a 2 s Redis command timeout instead of
    300 ms: on a loaded test machine a 300 ms timeout turns a slow answer
    into a (correct, fail-closed) 503, which is not what these tests count."""

    def patient(cfg: dict, _issuer_url: str) -> None:
        cfg["store"]["redis"]["command_timeout"] = "2s"

    return start_pair(redis_server, gatehouse_factory, envoy_factory, echo, keys,
                      (idp, discovery_idp, rotating_idp), trusted_proxies, configure=patient)


def user() -> str:
    """A subject no other run of the session has counted."""
    return f"quota-{uuid.uuid4().hex[:12]}"


def refused(r: Response) -> None:
    """A quota refusal: 429 `rate_limited` with the retry and quota headers."""
    body = expect.denial(r, 429, "rate_limited")
    assert "quota exceeded" in body["error_description"], body
    retry = int(r.header("retry-after") or "0")
    # One request per 12 s: the next fits within 12 s (never 0).
    assert 1 <= retry <= WINDOW_S // QUOTA_LIMIT, r.describe()
    assert r.header("ratelimit-policy") == POLICY, r.describe()
    m = RATELIMIT.match(r.header("ratelimit") or "")
    assert m, r.describe()
    remaining, reset = int(m.group(1)), int(m.group(2))
    assert remaining == 0 and retry <= reset <= WINDOW_S, r.describe()
    assert r.header("www-authenticate") is None, r.describe()


def burst(clients: list[Client], token: str, n: int) -> list[Response]:
    """`n` requests at once, round-robin over `clients`."""
    with ThreadPoolExecutor(max_workers=n) as pool:
        futures = [pool.submit(clients[i % len(clients)].get, f"/quota/{i}", token=token)
                   for i in range(n)]
        return [f.result() for f in futures]


def test_a_quota_is_exact_across_two_replicas_on_one_redis(pair, mint):
    sub = user()
    token = mint.token(sub=sub, preferred_username=sub)
    responses = burst([pair.a.client, pair.b.client], token, 12)
    statuses = sorted(r.status for r in responses)
    assert statuses == [200] * QUOTA_LIMIT + [429] * (12 - QUOTA_LIMIT), \
        [r.describe() for r in responses]
    for r in responses:
        if r.status == 200:
            expect.allowed(r)
        else:
            refused(r)
    # Allowed responses tell the client what is left: each of 4, 3, 2, 1, 0
    # exactly once (the count is exact), and never a Retry-After.
    allowed = [r for r in responses if r.status == 200]
    left = []
    for r in allowed:
        assert r.header("ratelimit-policy") == POLICY and r.header("retry-after") is None, \
            r.describe()
        m = RATELIMIT.match(r.header("ratelimit") or "")
        assert m, r.describe()
        left.append(int(m.group(1)))
    assert sorted(left) == list(range(QUOTA_LIMIT)), left
    # Still used up, on either replica.
    refused(pair.a.client.get("/quota/again", token=token))
    refused(pair.b.client.get("/quota/again", token=token))
    # Another user has an allowance of their own.
    other = mint.token(sub=user())
    expect.allowed(pair.a.client.get("/quota/x", token=other))
    expect.allowed(pair.b.client.get("/quota/x", token=other))
    # Two quota keys (two users), prefixed, naming neither user, expiring
    # within the window.
    db = pair.redis.client()
    keys = db.keys("gatehouse:quota:*")
    assert len(keys) == 2, keys
    for key in keys:
        assert sub.encode() not in key and b"alice" not in key, key
        assert 0 < db.pttl(key) <= WINDOW_S * 1000, (key, db.pttl(key))
    # Refusals are counted by reason and rule.
    refusals = sum(scrape(r.gatehouse.http_url).checks("deny", "quota_exceeded", QUOTA_RULE)
                   for r in (pair.a, pair.b))
    assert refusals == 12 - QUOTA_LIMIT + 2, refusals


def commandstats(db) -> dict[str, int]:
    """Calls per command (`INFO commandstats`), without the test's own
    `INFO` and the replicas' health `PING`s."""
    return {name.removeprefix("cmdstat_"): stats["calls"]
            for name, stats in db.info("commandstats").items()
            if name not in ("cmdstat_info", "cmdstat_ping")}


def test_one_redis_round_trip_per_quota_check(pair, mint):
    """BENCHMARKS.md: the quota check's Redis round trips per check."""
    token = mint.token(sub=user())
    # The first check on each replica loads the script (NOSCRIPT, SCRIPT
    # LOAD, EVALSHA again); count from the second on.
    expect.allowed(pair.a.client.get("/quota/warm", token=token))
    expect.allowed(pair.b.client.get("/quota/warm", token=token))
    db = pair.redis.client()
    before = commandstats(db)
    checks = [pair.a.client.get("/quota/n", token=token) for _ in range(4)] + \
             [pair.b.client.get("/quota/n", token=token) for _ in range(4)]
    after = commandstats(db)
    assert [r.status for r in checks] == [200] * 3 + [429] + [429] * 4, \
        [r.describe() for r in checks]
    delta = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    delta = {name: n for name, n in delta.items() if n}
    # Allowed or refused, each check is one EVALSHA from gatehouse: one
    # round trip. Redis counts the commands the script runs inside it too
    # (TIME and GET each time, SET when allowed); gatehouse sent nothing else.
    allowed = sum(r.status == 200 for r in checks)
    assert delta == {"evalsha": len(checks), "time": len(checks), "get": len(checks),
                     "set": allowed}, delta
    print(f"\nquota check: {delta['evalsha'] / len(checks):g} round trip (EVALSHA) per check; "
          f"INFO commandstats delta for {len(checks)} checks: {delta}")


def test_the_memory_store_limits_a_single_replica(client, mint):
    token = mint.token(sub=user())
    for i in range(QUOTA_LIMIT):
        expect.allowed(client.get(f"/quota/{i}", token=token))
    refused(client.get("/quota/over", token=token))
    # Other rules are not limited for this user.
    for _ in range(QUOTA_LIMIT + 1):
        expect.allowed(client.get("/api/not-limited", token=token))
    expect.allowed(client.get("/quota/x", token=mint.token(sub=user())))
