"""Shared state on a real Redis: two gatehouse replicas, each behind its own
Envoy, share one `redis-server` (store.redis). What one replica records (a
one-time link used up) the other sees at once; a restarted replica keeps
everything; values in Redis are encrypted (store.encryption_key_file).

Redis outage (killed with SIGKILL while requests flow): checks that need
the store answer 503 `temporarily_unavailable` and never allow; plain JWT
checks are unaffected; gRPC health stays SERVING; `gatehouse_store_up`
drops to 0. When Redis is back, the same processes recover by themselves.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

from harness import expect
from harness.gatehouse import SERVING
from harness.httpc import Client
from harness.links import MINTER, link
from harness.metrics import scrape
from harness.procs import wait_until
from harness.replicas import KEY_PREFIX, Replica

def once_link(replica: Replica, mint, path: str) -> str:
    return link(replica.client, mint.token(identity=MINTER), URLs=[path], once=True)


def test_a_one_time_link_used_on_one_replica_is_refused_on_the_other(pair, mint):
    token = once_link(pair.a, mint, "/links/shared")
    expect.allowed(pair.b.client.get("/links/shared", token=token))
    body = expect.invalid_token(pair.a.client.get("/links/shared", token=token))
    assert "already been used" in body["error_description"]
    expect.invalid_token(pair.b.client.get("/links/shared", token=token))


def test_a_restarted_replica_keeps_the_shared_state(pair, mint):
    used = once_link(pair.a, mint, "/links/restart")
    expect.allowed(pair.a.client.get("/links/restart", token=used))
    a = pair.restart_a()
    expect.invalid_token(a.client.get("/links/restart", token=used))
    fresh = once_link(a, mint, "/links/restart-2")
    expect.allowed(a.client.get("/links/restart-2", token=fresh))


def test_what_reaches_redis_is_prefixed_and_encrypted(pair, mint):
    token = once_link(pair.a, mint, "/links/sealed")
    expect.allowed(pair.a.client.get("/links/sealed", token=token))
    db = pair.redis.client()
    keys = db.keys("*")
    assert keys, "nothing was stored in Redis"
    assert all(k.startswith(KEY_PREFIX.encode()) for k in keys), keys
    for key in keys:
        assert token.encode() not in key
        if db.type(key) == b"string":
            value = db.get(key)
            # A use record holds a Unix time; sealed, it is binary.
            assert not value.isdigit(), (key, value)
            assert str(int(time.time()))[:6].encode() not in value, (key, value)


class Load:
    """Requests in a loop on one path until stopped; counts the statuses."""

    def __init__(self, client: Client, path: str, token: str):
        self.statuses: Counter[int] = Counter()
        self._stop = threading.Event()

        def run() -> None:
            while not self._stop.is_set():
                self.statuses[client.get(path, token=token).status] += 1

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> Counter[int]:
        self._stop.set()
        self._thread.join(timeout=10)
        return self.statuses


def store_up(replica: Replica) -> float | None:
    return scrape(replica.gatehouse.http_url).value("gatehouse_store_up")


def test_a_redis_outage_fails_closed_and_recovers_without_a_restart(pair, mint):
    a = pair.a
    jwt_load = Load(a.client, "/api/during-outage", mint.token())
    prepared = [once_link(a, mint, f"/links/outage-{i}") for i in range(3)]
    time.sleep(0.3)

    pair.redis.kill()
    pair.redis.wait_down()
    # The store is needed: 503 temporarily_unavailable, never a 200.
    r = a.client.get("/links/outage-0", token=prepared[0])
    body = expect.denial(r, 503, "temporarily_unavailable")
    assert "store" in body["error_description"], body
    wait_until("gatehouse_store_up == 0", lambda: store_up(a) == 0, 5)
    # A replica that can still serve store-less checks stays in rotation.
    assert a.gatehouse.health() == SERVING
    # The refused link was not used up: once Redis is back it works.
    time.sleep(0.5)

    pair.redis.start()
    wait_until("gatehouse_store_up == 1", lambda: store_up(a) == 1, 10)
    statuses = jwt_load.stop()
    expect.allowed(a.client.get("/links/outage-0", token=prepared[0]))
    expect.allowed(pair.b.client.get("/links/outage-1", token=prepared[1]))
    expect.invalid_token(a.client.get("/links/outage-1", token=prepared[1]))

    # Plain JWT checks never noticed.
    assert statuses and set(statuses) == {200}, statuses
    errors = scrape(a.gatehouse.http_url)
    failed = sum(v for (name, labels), v in errors.samples.items()
                 if name == "gatehouse_store_errors_total")
    assert failed >= 1, "the failed store operations were not counted"


def test_a_replica_starts_while_redis_is_down(redis_server, pair, mint):
    """Redis down at start-up: gatehouse still starts and serves JWT checks;
    store checks are 503 until Redis answers, then work without a restart."""
    redis_server.kill()
    redis_server.wait_down()
    a = pair.restart_a()
    assert a.gatehouse.health() == SERVING
    expect.allowed(a.client.get("/api/while-down", token=mint.token()))
    token = once_link(a, mint, "/links/late")
    expect.denial(a.client.get("/links/late", token=token), 503, "temporarily_unavailable")
    redis_server.start()
    wait_until("the store answers", lambda: a.client.get("/links/late", token=token).status == 200
               or None, 10)
    expect.invalid_token(a.client.get("/links/late", token=token))
