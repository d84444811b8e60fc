"""Fault injection: a JWKS endpoint that is down, slow or returns garbage;
Envoy or gatehouse restarting under traffic; a replica killed behind one
Envoy cluster; a reload that cannot read its file. Each fault has one
defined outcome (docs/operations/failure-modes.md) asserted here.

Every test runs its own gatehouse (and Envoy on the shipped
envoy/envoy.yaml) with short refresh intervals, so faults show within a
second or two. Elsewhere: the unknown-kid fetch bound is
test_keys.py::test_unknown_kids_cause_a_bounded_number_of_fetches, SIGTERM
under load test_lifecycle.py::test_sigterm_under_load_drains_in_flight_checks.
"""

from __future__ import annotations

import errno
import json
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from harness import configs, expect, tokens
from harness.envoy import EnvoyInstance
from harness.gatehouse import NOT_SERVING, SERVING, GatehouseInstance
from harness.httpc import Client
from harness.load import Traffic, summary
from harness.metrics import scrape
from harness.procs import free_port, wait_until
from test_reload import NEW, OPEN, _config  # the reload tests' rules and config

# Refresh fast: a key set served with max-age=1 is refetched every second,
# a failure retried after a second, an unknown kid may refetch once a second.
FAST = dict(configs.QUIET_REFRESH, interval="1s", min_interval="1s", max_interval="2s",
            retry_interval="1s", unknown_kid_interval="1s", timeout="1s")
ISSUER = "only"  # configs.single_issuer_config's issuer name (the metric label)
NO_PROXY = {"http": None, "https": None}


def _failures(g: GatehouseInstance, issuer: str = ISSUER) -> float:
    return scrape(g.http_url).count("gatehouse_jwks_refresh_total", issuer=issuer, result="failure")


def _successes(g: GatehouseInstance, issuer: str = ISSUER) -> float:
    return scrape(g.http_url).count("gatehouse_jwks_refresh_total", issuer=issuer, result="success")


def _log_since(g: GatehouseInstance, offset: int) -> str:
    with open(g.log_path, "rb") as f:
        f.seek(offset)
        return f.read().decode("utf-8", "replace")


def _behind_envoy(gatehouse_factory, envoy_factory, echo, config: dict, name: str,
                  serving: bool = True):
    g = gatehouse_factory(config, name=f"gatehouse-{name}")
    if serving:
        g.wait_serving()
    else:
        g.wait_listening()
    envoy = envoy_factory(g.port, echo.port, name=f"envoy-{name}", gatehouse_http_port=g.http_port)
    return g, envoy, Client(envoy.port)


@pytest.fixture
def envoys(tmp_path):
    """Starts EnvoyInstances with any of its options (fixed ports,
    several gatehouse endpoints); stopped when the test ends."""
    started: list[EnvoyInstance] = []

    def start(gatehouse_port: int, upstream_port: int, name: str, **options) -> EnvoyInstance:
        instance = EnvoyInstance(tmp_path / f"{name}-{len(started)}", gatehouse_port, upstream_port,
                                 name=name, **options)
        started.append(instance)
        return instance

    yield start
    for instance in started:
        instance.stop()


# --- the JWKS endpoint -----------------------------------------------------------


def test_jwks_down_at_start_up_fails_only_that_issuer(idp_factory, gatehouse_factory, envoy_factory,
                                                      echo, keys, mint):
    """Nothing listens at one issuer's jwks_uri: gRPC health and /healthz
    say NOT_SERVING / 503 (readiness needs every issuer's keys), that
    issuer's tokens get 503 temporarily_unavailable from gatehouse, and
    another issuer's tokens in the same config are allowed."""
    up = idp_factory(keys.rsa, label="idp-up")
    down = f"http://127.0.0.1:{free_port()}"  # refused: nothing listens there
    config = configs.single_issuer_config(up, FAST)
    config["jwt"]["issuers"].append(
        configs.issuer("down", down, ["ES256"], {"jwks_uri": down + "/jwks.json"}, FAST))
    g, _, c = _behind_envoy(gatehouse_factory, envoy_factory, echo, config, "jwks-down-at-start",
                            serving=False)
    wait_until("two failed fetches of the unreachable JWKS", lambda: _failures(g, "down") >= 2,
               timeout=10, on_timeout=g.process.log_tail)

    expect.allowed(c.get("/x", token=mint.token(keys.rsa, up.issuer)))
    body = expect.denial(c.get("/x", token=mint.token(keys.ec, down)), 503, "temporarily_unavailable")
    assert "not available" in body["error_description"], body
    assert g.health() == NOT_SERVING and g.healthz() == 503
    s = scrape(g.http_url)
    assert s.count("gatehouse_jwks_refresh_total", issuer=ISSUER, result="success") >= 1
    assert s.count("gatehouse_jwks_refresh_total", issuer="down", result="success") == 0
    assert "key set fetch failed" in g.log()


def test_jwks_down_after_start_keeps_the_last_good_keys(idp_factory, gatehouse_factory,
                                                        envoy_factory, echo, keys, mint):
    """The JWKS server goes away (connection refused) after the keys
    loaded: scheduled refreshes and a refetch forced by an unknown kid
    fail, and the keys already loaded keep verifying (200); health stays
    SERVING. (A 500 from the JWKS: test_keys.py::test_issuer_outage_keeps_last_good_keys.)"""
    idp = idp_factory(keys.rsa, label="idp-vanishing", max_age=1)
    g, _, c = _behind_envoy(gatehouse_factory, envoy_factory, echo,
                            configs.single_issuer_config(idp, FAST), "jwks-down-after-start")
    token = mint.token(keys.rsa, idp.issuer)
    expect.allowed(c.get("/x", token=token))
    before = _failures(g)

    idp.close()
    # Forced: an unknown kid makes gatehouse refetch now; the fetch fails
    # and the kid stays unknown (401), the known keys stay.
    expect.invalid_token(c.get("/x", token=tokens.with_kid(token, "not-published")))
    wait_until("two failed fetches (the forced one and a scheduled one)",
               lambda: _failures(g) >= before + 2, timeout=10, on_timeout=g.process.log_tail)
    expect.allowed(c.get("/x", token=token))
    expect.allowed(c.get("/x", token=mint.token(keys.rsa, idp.issuer)))
    assert g.health() == SERVING and g.healthz() == 200


def test_slow_jwks_times_out_and_no_check_waits_on_it(idp_factory, gatehouse_factory,
                                                      envoy_factory, echo, keys, mint):
    """The JWKS answers after 5 s; refresh.timeout is 1 s. A refresh gives
    up after the timeout (counted as a failure) and checks with a known kid
    never wait on it: each answers 200 well under Envoy's 0.5 s deadline
    while a fetch hangs. A check with an unknown kid waits for its refetch
    at most the fetch timeout, then is refused (401), not after 5 s."""
    idp = idp_factory(keys.rsa, label="idp-slow", max_age=1)
    g, _, c = _behind_envoy(gatehouse_factory, envoy_factory, echo,
                            configs.single_issuer_config(idp, FAST), "jwks-slow")
    token = mint.token(keys.rsa, idp.issuer)
    expect.allowed(c.get("/x", token=token))
    before = _failures(g)

    idp.delay = 5.0
    wait_until("a scheduled refresh to hang", lambda: idp.in_flight() >= 1, timeout=5,
               interval=0.02, on_timeout=g.process.log_tail)
    hung_at = time.monotonic()
    latencies = []
    while idp.in_flight() >= 1 and time.monotonic() - hung_at < 0.8:
        started = time.monotonic()
        expect.allowed(c.get("/x", token=token))
        latencies.append(time.monotonic() - started)
    assert len(latencies) >= 3, latencies
    assert max(latencies) < 0.4, f"a check waited on the hanging refresh: {latencies}"
    wait_until("the hanging refresh to time out", lambda: _failures(g) > before, timeout=3,
               on_timeout=g.process.log_tail)
    assert time.monotonic() - hung_at < 2.5, "the fetch timeout (1 s) did not apply"

    # An unknown kid, asked on the side port's HTTP check (no Envoy
    # deadline in between, so gatehouse's own bound shows).
    forged = tokens.with_kid(token, "rotated-in-later")
    answered: dict = {}

    def check_unknown_kid() -> None:
        started = time.monotonic()
        r = requests.get(g.http_url + "/ext_authz/x", headers={"Authorization": f"Bearer {forged}"},
                         timeout=10, proxies=NO_PROXY)
        answered.update(status=r.status_code, seconds=time.monotonic() - started)

    arrivals = idp.arrivals()
    slow = threading.Thread(target=check_unknown_kid)
    slow.start()
    wait_until("the unknown kid's refetch", lambda: idp.arrivals() > arrivals, timeout=3,
               interval=0.02)
    # ... meanwhile known kids are answered at once.
    for _ in range(3):
        started = time.monotonic()
        expect.allowed(c.get("/x", token=token))
        assert time.monotonic() - started < 0.4
    slow.join(timeout=10)
    assert answered.get("status") == 401, answered
    assert 0.8 <= answered["seconds"] < 2.5, f"unknown kid answered after {answered['seconds']:.2f}s"


@pytest.mark.parametrize("content_type, body", [
    ("application/json", bytes(range(256)) * 4),
    ("text/html; charset=utf-8",
     b"<!DOCTYPE html><html><head><title>Maintenance</title></head>"
     b"<body><h1>We'll be back soon</h1></body></html>"),
], ids=["garbage", "html"])
def test_jwks_garbage_keeps_the_last_good_keys(idp_factory, gatehouse_factory, envoy_factory, echo,
                                               keys, mint, content_type, body):
    """The JWKS answers 200 with bytes that are not JSON (or a maintenance
    HTML page): the last good keys stay (200), each such refresh counts
    gatehouse_jwks_refresh_total{result="failure"} and logs a warning
    naming the issuer and why, with no token in the log."""
    idp = idp_factory(keys.rsa, label="idp-garbage", max_age=1)
    g, _, c = _behind_envoy(gatehouse_factory, envoy_factory, echo,
                            configs.single_issuer_config(idp, FAST), "jwks-garbage")
    token = mint.token(keys.rsa, idp.issuer)
    expect.allowed(c.get("/x", token=token))
    before, offset = _failures(g), g.process.log_size()

    idp.raw_jwks = (content_type, body)
    wait_until("two failed refreshes", lambda: _failures(g) >= before + 2, timeout=10,
               on_timeout=g.process.log_tail)
    expect.allowed(c.get("/x", token=token))
    assert g.health() == SERVING
    lines = [line for line in _log_since(g, offset).splitlines() if "key set fetch failed" in line]
    assert lines, g.process.log_tail()
    assert ISSUER in lines[0] and "not JSON" in lines[0] and idp.jwks_uri in lines[0], lines[0]
    log = g.log()
    assert token not in log and token.split(".")[2] not in log

    idp.raw_jwks = None
    successes = _successes(g)
    wait_until("a good refresh again", lambda: _successes(g) > successes, timeout=5)
    expect.allowed(c.get("/x", token=token))


# --- restarts under traffic ------------------------------------------------------

SCOPED = {"name": "scoped", "match": {"path": {"prefix": "/scoped/"}}, "scopes": ["write:data"]}


def _kinds(mint, keys, idp) -> dict[str, tuple[str, str | None]]:
    token = mint.token(keys.rsa, idp.issuer)
    return {
        "valid": ("/x", token),  # 200 when gatehouse answers
        "scoped": ("/scoped/x", token),  # the token lacks write:data: 403
        "forged": ("/x", tokens.tamper(token, sub="mallory")),  # 401
        "anonymous": ("/x", None),  # 401
    }


def _restart_config(idp) -> dict:
    config = configs.single_issuer_config(idp, FAST)
    config["policy"]["rules"] = [SCOPED]
    return config


def _assert_never_wrongly_allowed(results) -> None:
    for r in results:
        if r.kind != "valid":
            assert r.status != 200 and r.layer != "upstream", (r, summary(results))
        elif r.status == 200:
            assert r.layer == "upstream", r


def test_gatehouse_restart_under_traffic_fails_closed(idp_factory, gatehouse_factory, envoy_factory,
                                                      echo, keys, mint):
    """Gatehouse stops and starts again (same ports) behind a running Envoy
    (failure_mode_allow: false) while four threads send valid, forged,
    anonymous and under-scoped requests. Nothing that needs a credential
    it lacks is ever allowed; every request sent and answered while
    gatehouse was down got Envoy's 503; after the restart valid tokens are
    allowed again."""
    idp = idp_factory(keys.rsa, label="idp-gatehouse-restart")
    config = _restart_config(idp)
    g = gatehouse_factory(config, name="gatehouse-restart")
    g.wait_serving()
    envoy = envoy_factory(g.port, echo.port, name="envoy-gatehouse-restart",
                          gatehouse_http_port=g.http_port)
    with Traffic(envoy.port, _kinds(mint, keys, idp)) as traffic:
        traffic.wait_for(40)
        assert g.stop() == 0
        down_from = time.monotonic()
        traffic.wait_for(40)
        down_until = time.monotonic()
        g2 = gatehouse_factory(_restart_config(idp), name="gatehouse-restart", port=g.port,
                               http_port=g.http_port)
        g2.wait_serving()
        up_at = time.monotonic()
        wait_until("a valid token allowed after the restart",
                   lambda: any(r.status == 200 and r.started > up_at for r in traffic.results("valid")),
                   timeout=10, on_timeout=g2.process.log_tail)
        traffic.wait_for(40)

    results = traffic.results()
    _assert_never_wrongly_allowed(results)
    assert not [r for r in results if r.failed], summary(results)
    outage = [r for r in results if down_from <= r.started and r.ended <= down_until]
    assert len(outage) >= 20, summary(outage)
    assert {(r.status, r.layer) for r in outage} == {(503, "envoy")}, summary(outage)
    # While the new gatehouse loads its keys (listening, NOT_SERVING) a
    # check that needs them is answered 503 by gatehouse itself.
    loading = (503, "gatehouse")
    expected = {"valid": {(200, "upstream"), (503, "envoy"), loading},
                "scoped": {(403, "gatehouse"), (503, "envoy"), loading},
                "forged": {(401, "gatehouse"), (503, "envoy"), loading},
                "anonymous": {(401, "gatehouse"), (503, "envoy")}}
    for kind, allowed in expected.items():
        seen = {(r.status, r.layer) for r in traffic.results(kind)}
        assert seen <= allowed, (kind, summary(traffic.results(kind)))
    expect.allowed(Client(envoy.port).get("/x", token=mint.token(keys.rsa, idp.issuer)))


def test_envoy_restart_under_traffic_allows_nothing_wrongly(idp_factory, gatehouse_factory, envoys,
                                                            echo, keys, mint):
    """Envoy stops and starts again on the same port while gatehouse runs
    and four threads send requests: while Envoy is gone requests fail to
    connect (no answer at all, so nothing is allowed); no request needing
    a credential it lacks is ever allowed; gatehouse keeps running and the
    new Envoy's checks are answered (valid tokens 200) without restarting
    it."""
    idp = idp_factory(keys.rsa, label="idp-envoy-restart")
    g = gatehouse_factory(_restart_config(idp), name="gatehouse-envoy-restart")
    g.wait_serving()
    first = envoys(g.port, echo.port, "envoy-restart", gatehouse_http_port=g.http_port)
    ports = dict(listener_port=first.ports.listener, admin_port=first.ports.admin)
    with Traffic(first.port, _kinds(mint, keys, idp)) as traffic:
        traffic.wait_for(40)
        first.stop()
        down_from = time.monotonic()
        traffic.wait_for(20)
        down_until = time.monotonic()
        envoys(g.port, echo.port, "envoy-restart", gatehouse_http_port=g.http_port, **ports)
        up_at = time.monotonic()
        wait_until("a valid token allowed through the new Envoy",
                   lambda: any(r.status == 200 and r.started > up_at for r in traffic.results("valid")),
                   timeout=10)
        traffic.wait_for(40)

    results = traffic.results()
    _assert_never_wrongly_allowed(results)
    outage = [r for r in results if down_from <= r.started and r.ended <= down_until]
    assert outage and all(r.failed for r in outage), summary(outage)
    # Outside the outage every request was answered, by gatehouse's rules.
    expected = {"valid": (200, "upstream"), "scoped": (403, "gatehouse"),
                "forged": (401, "gatehouse"), "anonymous": (401, "gatehouse")}
    answered = [r for r in results if not r.failed]
    assert {(r.status, r.layer) for r in answered} == set(expected.values()), summary(results)
    for r in answered:
        assert (r.status, r.layer) == expected[r.kind], r
    assert g.alive() and g.health() == SERVING


# --- two replicas behind one ext_authz cluster -------------------------------------


def _checks_answered(g: GatehouseInstance) -> float:
    s = scrape(g.http_url)
    return sum(v for (name, _), v in s.samples.items() if name == "gatehouse_checks_total")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_replica_fails_no_request(idp_factory, gatehouse_factory, envoys, echo, keys, mint,
                                           sig):
    """Two gatehouse replicas in the `gatehouse` cluster of the shipped
    envoy.yaml (gRPC health checks, outlier detection, the ext_authz
    retry_policy with previous_hosts). One is SIGKILLed (a crash) or
    SIGTERMed (a rolling update) while four threads send valid and forged
    requests: not one request fails or changes its answer. Checks lost
    with the dead replica (connection reset) or sent to it afterwards
    (connection refused) are retried on the survivor until outlier
    detection ejects the dead one (`Envoy marks it unhealthy` below: an
    ejected endpoint no longer counts as healthy)."""
    idp = idp_factory(keys.rsa, label="idp-replicas")
    a = gatehouse_factory(_restart_config(idp), name="gatehouse-replica-a")
    b = gatehouse_factory(_restart_config(idp), name="gatehouse-replica-b")
    a.wait_serving()
    b.wait_serving()
    envoy = envoys(a.port, echo.port, "envoy-replicas", gatehouse_ports=[a.port, b.port])
    wait_until("both replicas healthy in Envoy",
               lambda: envoy.stats("cluster.gatehouse.membership_healthy")
               .get("cluster.gatehouse.membership_healthy") == 2, timeout=10)
    kinds = _kinds(mint, keys, idp)
    kinds = {"valid": kinds["valid"], "forged": kinds["forged"]}
    with Traffic(envoy.port, kinds) as traffic:
        traffic.wait_for(100)
        served_by_a = _checks_answered(a)
        a.process.signal(sig)
        a.process.wait(timeout=5)
        killed_at = time.monotonic()
        wait_until("Envoy to mark the killed replica unhealthy",
                   lambda: envoy.stats("cluster.gatehouse.membership_healthy")
                   .get("cluster.gatehouse.membership_healthy") == 1, timeout=5)
        traffic.wait_for(100)

    results = traffic.results()
    assert served_by_a > 0, "replica a answered checks before it was killed"
    assert [r for r in results if r.started > killed_at], "traffic went on after the kill"
    expected = {"valid": (200, "upstream"), "forged": (401, "gatehouse")}
    wrong = [r for r in results if (r.status, r.layer) != expected[r.kind]]
    stats = envoy.stats("cluster.gatehouse.")
    assert not wrong, (len(wrong), summary(wrong), stats)
    # The failover was exercised: checks sent to the dead replica were
    # retried on the survivor, and outlier detection ejected it (or, in
    # a race, a health check marked it down first).
    assert stats["cluster.gatehouse.upstream_rq_retry_success"] >= 1, stats
    assert (stats["cluster.gatehouse.outlier_detection.ejections_enforced_total"]
            + stats.get("cluster.gatehouse.health_check.failure", 0)) >= 1, stats


# --- reload that cannot read its file ------------------------------------------------


def _reload_failures(g: GatehouseInstance) -> float:
    return scrape(g.http_url).count("gatehouse_config_reloads_total", result="failure")


def _assert_running_config_kept(c: Client, g: GatehouseInstance) -> None:
    expect.allowed(c.get("/open/x"))  # the running rule still allows
    assert c.get("/new/x").status == 403  # and nothing new applied
    assert scrape(g.http_url).value("gatehouse_config_last_reload_successful") == 0


def test_unreadable_config_on_reload_keeps_the_running_config(idp_factory, gatehouse_factory,
                                                              envoy_factory, echo, keys):
    """The config file becomes unreadable (replaced by a directory, then by
    a dangling symlink; chmod 000 does not stop root, which runs these
    tests): SIGHUP's reload fails, is counted and logged, and the running
    rules stay in force."""
    idp = idp_factory(keys.rsa, label="idp-unreadable")
    g, _, c = _behind_envoy(gatehouse_factory, envoy_factory, echo,
                            _config(idp, [OPEN], {"watch": False}), "unreadable")
    expect.allowed(c.get("/open/x"))
    path = Path(g.config_path)

    path.unlink()
    path.mkdir()
    for breakage in ("a directory", "a dangling symlink"):
        if breakage == "a dangling symlink":
            path.rmdir()
            path.symlink_to(path.parent / "gone.yaml")
        before, offset = _reload_failures(g), g.process.log_size()
        g.process.signal(signal.SIGHUP)
        wait_until(f"the reload of {breakage} to fail", lambda: _reload_failures(g) == before + 1,
                   timeout=10, on_timeout=g.process.log_tail)
        _assert_running_config_kept(c, g)
        log = _log_since(g, offset)
        assert "configuration reload failed" in log and str(path) in log, log


def test_a_watched_config_that_stays_unreadable_is_reported(idp_factory, gatehouse_factory,
                                                            envoy_factory, echo, keys):
    idp = idp_factory(keys.rsa, label="idp-unreadable-watched")
    g, _, c = _behind_envoy(gatehouse_factory, envoy_factory, echo,
                            _config(idp, [OPEN], {"interval": "200ms"}), "unreadable-watched")
    path = Path(g.config_path)
    path.unlink()
    path.mkdir()
    wait_until("the watch to report the unreadable file", lambda: _reload_failures(g) >= 1,
               timeout=3)
    expect.allowed(c.get("/open/x"))


@pytest.fixture
def tiny_disk(tmp_path):
    """A 16 KiB tmpfs (None if this machine cannot mount one)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mount)],
                       capture_output=True, text=True)
    yield mount if r.returncode == 0 else None
    if r.returncode == 0:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_full_disk_on_reload_keeps_the_running_config(idp_factory, envoy_factory, echo, keys,
                                                      tmp_path, tiny_disk):
    """The config lives on a full 16 KiB tmpfs; rewriting it (adding a
    rule) fails half way with ENOSPC and leaves a truncated file. The watch
    reloads the truncated file, which does not parse: the failure is
    counted and logged, the running rules stay, the new rule does not
    apply, gatehouse keeps serving."""
    idp = idp_factory(keys.rsa, label="idp-full-disk")
    workdir = tmp_path / "gatehouse-full-disk"
    workdir.mkdir()
    config_path = workdir / "gatehouse.yaml"
    if tiny_disk is not None:
        # GatehouseInstance writes the config through this symlink onto
        # the tmpfs; its log stays on the ordinary disk.
        config_path.symlink_to(tiny_disk / "gatehouse.yaml")
    g = GatehouseInstance(workdir, _config(idp, [OPEN], {"interval": "200ms"}),
                          name="gatehouse-full-disk")
    try:
        g.wait_serving()
        c = Client(envoy_factory(g.port, echo.port, name="envoy-full-disk",
                                 gatehouse_http_port=g.http_port).port)
        expect.allowed(c.get("/open/x"))
        before, offset = _reload_failures(g), g.process.log_size()

        # JSON is YAML, and JSON cut anywhere does not parse. Padding makes
        # the rewrite longer than the space its truncation frees.
        intended = dict(g.config, policy={"default": "deny", "rules": [OPEN, NEW]})
        text = json.dumps(intended)
        text = "{" + " " * 12000 + text[1:]
        if tiny_disk is not None:
            with open(tiny_disk / "filler", "wb", buffering=0) as filler:
                try:
                    while True:
                        filler.write(b"\0" * 512)
                except OSError as e:
                    assert e.errno == errno.ENOSPC, e
            with pytest.raises(OSError) as raised:
                with open(config_path, "w") as f:
                    f.write(text)
            assert raised.value.errno == errno.ENOSPC
        else:
            # No tmpfs here (mount refused): write the truncated file
            # directly, as a full disk would have left it.
            config_path.write_text(text[:4096])
        written = config_path.read_text()
        assert 0 < len(written) < len(text) and text.startswith(written), len(written)

        wait_until("the truncated file's reload to fail", lambda: _reload_failures(g) == before + 1,
                   timeout=10, on_timeout=g.process.log_tail)
        _assert_running_config_kept(c, g)
        assert "configuration reload failed" in _log_since(g, offset)
        assert g.alive() and g.health() == SERVING
    finally:
        g.stop()
