"""Process lifecycle: gRPC health, graceful SIGTERM, `check-config`.

Depends on gatehouse behaviour:
- `grpc.health.v1.Health` overall service "" is NOT_SERVING until every
  issuer's keys are loaded, then SERVING (the gRPC port listens before);
- the HTTP side port's `/healthz` follows the same readiness (503, 200);
- SIGTERM drains both servers and exits 0 within `server.drain_timeout`;
- `gatehouse check-config -c FILE` exits 0 for a valid file, 78 (a configuration
  error) with the offending key named on stderr otherwise.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import yaml

from harness import configs
from harness.gatehouse import NOT_SERVING, SERVING, REPO, check_config
from harness.httpc import Client
from harness.load import Traffic, summary
from harness.procs import wait_until

DEMO_CONFIG = REPO / "config" / "demo.yaml"


def test_shared_instance_is_serving(gatehouse):
    assert gatehouse.health() == SERVING


def test_not_serving_until_keys_load(idp_factory, gatehouse_factory, keys):
    idp = idp_factory(keys.rsa, label="idp-down-at-start")
    idp.outage = True
    refresh = dict(configs.QUIET_REFRESH, retry_interval="1s")
    g = gatehouse_factory(configs.single_issuer_config(idp, refresh), name="gatehouse-health")
    assert g.wait_listening() == NOT_SERVING
    wait_until("a failed JWKS fetch", lambda: idp.failures() >= 1, timeout=10,
               on_timeout=g.process.log_tail)
    # Still NOT_SERVING for a while: no keys, no readiness (the side
    # port's /healthz says the same: 503).
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        assert g.health() == NOT_SERVING
        assert g.healthz() == 503
        time.sleep(0.1)

    idp.outage = False
    # The next retry (retry_interval 1 s) loads the keys.
    assert g.wait_serving(timeout=10) == SERVING
    assert g.healthz() == 200
    assert idp.fetches() - idp.failures() >= 1


def test_an_idp_starting_late_is_picked_up_within_seconds(idp_factory, gatehouse_factory,
                                                          envoy_factory, echo, keys, mint):
    """Retries back off from 100 ms while no key set has loaded (not the
    10 s retry_interval): an IdP that comes up 2 s after gatehouse serves
    valid tokens within 3 s of it."""
    idp = idp_factory(keys.rsa, label="idp-late")
    idp.outage = True
    config = configs.single_issuer_config(idp, dict(configs.QUIET_REFRESH, retry_interval="10s"))
    g = gatehouse_factory(config, name="gatehouse-late-idp")
    envoy = envoy_factory(g.port, echo.port, name="envoy-late-idp")
    assert g.wait_listening() == NOT_SERVING
    time.sleep(2)
    assert idp.failures() >= 3, "retried quickly while the IdP was down"
    idp.outage = False
    up = time.monotonic()
    client = Client(envoy.port)
    token = mint.token(issuer=idp.issuer)
    wait_until("a valid token to be accepted",
               lambda: client.get("/api/x", token=token).status == 200, timeout=3,
               on_timeout=g.process.log_tail)
    assert time.monotonic() - up < 3
    # gRPC health follows on its own schedule.
    assert g.wait_serving(timeout=5) == SERVING


def test_sigterm_drains_and_exits_zero(idp_factory, gatehouse_factory, keys):
    idp = idp_factory(keys.rsa, label="idp-sigterm")
    g = gatehouse_factory(configs.single_issuer_config(idp, drain_timeout="2s"), name="gatehouse-sigterm")
    g.wait_serving()
    started = time.monotonic()
    assert g.healthz() == 200
    g.process.signal(signal.SIGTERM)
    code = g.process.wait(timeout=2 + 3)  # drain_timeout + margin
    assert code == 0, g.process.log_tail()
    assert g.healthz() is None  # the side port stopped with the gRPC server
    assert time.monotonic() - started < 5


def test_sigterm_under_load_drains_in_flight_checks(idp_factory, gatehouse_factory, envoy_factory,
                                                    echo, keys, mint):
    """SIGTERM while four threads send valid tokens through Envoy.
    Asserted: (1) gatehouse exits 0 within drain_timeout, without hitting
    the drain deadline ("drain timeout reached" never logged); (2) every
    client request got an HTTP answer, either 200 from the upstream or,
    once gatehouse no longer takes new checks, Envoy's fail-closed 503:
    no connection error, no other status; (3) every request answered
    before the SIGTERM was a 200; (4) no check was cut off: Envoy saw no
    gatehouse connection closed with a check on it and no check reset or
    timed out (its cluster stats), so every check that reached gatehouse
    was answered."""
    idp = idp_factory(keys.rsa, label="idp-sigterm-load")
    g = gatehouse_factory(configs.single_issuer_config(idp, drain_timeout="2s"),
                          name="gatehouse-sigterm-load")
    g.wait_serving()
    envoy = envoy_factory(g.port, echo.port, name="envoy-sigterm-load", gatehouse_http_port=g.http_port)
    token = mint.token(keys.rsa, idp.issuer)
    with Traffic(envoy.port, {"valid": ("/x", token)}) as traffic:
        traffic.wait_for(100)
        g.process.signal(signal.SIGTERM)
        signalled = time.monotonic()
        code = g.process.wait(timeout=2 + 3)
        exited = time.monotonic()
        traffic.wait_for(20)

    assert code == 0, g.process.log_tail()
    assert exited - signalled < 2 + 1
    assert "drain timeout reached" not in g.log(), g.process.log_tail()
    results = traffic.results()
    outcomes = {(r.status, r.layer) for r in results}
    assert outcomes <= {(200, "upstream"), (503, "envoy")}, summary(results)
    before = [r for r in results if r.ended < signalled]
    assert len(before) >= 100 and all(r.status == 200 for r in before), summary(before)
    assert any(r.status == 503 for r in results if r.started > exited), summary(results)
    stats = envoy.stats("cluster.gatehouse.")
    cut_off = {name: stats[f"cluster.gatehouse.{name}"]
               for name in ("upstream_cx_destroy_with_active_rq",
                            "upstream_cx_destroy_remote_with_active_rq", "upstream_rq_rx_reset",
                            "upstream_rq_timeout", "upstream_rq_per_try_timeout")}
    # Envoy's gRPC health checker (envoy.yaml, every second) counts in the
    # same connection stats: a health check in flight when gatehouse exits
    # is a connection destroyed with an active request, and also a
    # health-check network failure. Only those are not checks cut off.
    health_checks_cut = stats.get("cluster.gatehouse.health_check.network_failure", 0)
    for name in ("upstream_cx_destroy_with_active_rq", "upstream_cx_destroy_remote_with_active_rq"):
        cut_off[name] = max(0, cut_off[name] - health_checks_cut)
    assert set(cut_off.values()) == {0}, (cut_off, health_checks_cut)


def test_check_config_accepts_the_demo_config():
    r = check_config(DEMO_CONFIG)
    assert r.returncode == 0, r.stderr


def _demo_with(tmp_path: Path, old: str, new: str) -> Path:
    # Text edit rather than a YAML round trip: PyYAML (YAML 1.1) cannot read
    # the demo's `[127.0.0.0/8, ::1/128]` flow sequence.
    text = DEMO_CONFIG.read_text()
    assert old in text, f"config/demo.yaml changed: {old!r} not found"
    path = tmp_path / "bad.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


def test_check_config_accepts_the_renku_example():
    r = check_config(REPO / "config" / "renku.yaml")
    assert r.returncode == 0, r.stderr
    assert "configuration ok" in r.stdout


def test_check_config_names_an_unknown_key(tmp_path):
    path = _demo_with(tmp_path, "server:\n", "server:\n  grpc_adress: 127.0.0.1:1\n")
    r = check_config(path)
    assert r.returncode == 78, r.stderr
    assert "grpc_adress" in r.stderr, r.stderr


def test_check_config_names_a_bad_value(tmp_path):
    path = _demo_with(tmp_path, "grpc_addr: 127.0.0.1:9191", "grpc_addr: not-an-address")
    r = check_config(path)
    assert r.returncode == 78, r.stderr
    assert "server.grpc_addr" in r.stderr, r.stderr


def test_check_config_resolves_relative_paths_against_the_file(tmp_path, keys):
    # `shared_secret_file: secrets/hmac.secret`, relative to the config's
    # directory, while check-config runs from elsewhere (cwd is the repo).
    (tmp_path / "secrets").mkdir()
    (tmp_path / configs.HMAC_SECRET_FILE).write_bytes(keys.hmac.secret)
    doc = {
        "jwt": {"issuers": [configs.issuer("hmac", configs.HMAC_ISSUER, ["HS256"],
                                           {"shared_secret_file": configs.HMAC_SECRET_FILE})]},
        "policy": {"default": "authenticated"},
    }
    path = tmp_path / "hmac.yaml"
    path.write_text(yaml.safe_dump(doc))
    ok = check_config(path)
    assert ok.returncode == 0, ok.stderr
    (tmp_path / configs.HMAC_SECRET_FILE).unlink()
    missing = check_config(path)
    assert missing.returncode == 78, "a missing secret file must fail validation"
