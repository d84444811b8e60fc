"""What only the in-process module does (envoy/module, through the shipped
envoy/envoy-inprocess.yaml): the answers it shares with the service are
the `both_filters` suites (test_authn, test_authz, test_headers,
test_paths, test_certs, test_links, test_issuer, test_header_injection,
test_robustness, test_servicehub), run through both.

- A check that needs state is handed to the service over ext_authz
  (`needs_state: ext_authz`, the example's setting), refused with 503
  without it, or decided in the worker when a shared Redis store is
  configured; a check that needs no state never leaves the worker.
- A check that must wait (a key set being fetched for an unknown `kid`)
  is finished on the module's runtime and resumed on Envoy's worker.
- The module reloads its configuration file as the service does, and a
  configuration it cannot load stops Envoy with the reason in its log.
- The Envoy it is built for loads it; an older release (installed by
  tests/setup.sh) refuses it at load, naming a missing callback.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from envoy_bin import envoy_binary, other_envoy
from envoy_config import INPROCESS_EXAMPLE, Ports, write_test_config
from harness import configs, expect, secret_registry, tokens
from harness.envoy import EnvoyInstance
from harness.gatehouse import add_gatehouse_log
from harness.httpc import Client
from harness.links import MINTER, link
from harness.module import module_dir
from harness.procs import ProcessExited, free_port, wait_until
from harness.replicas import ADMIN_SCOPE, STORE_KEY_FILE, TOKEN_PREFIX
from harness.servers import OtlpHttpReceiver

API = "/auth/api/v1/users/alice/tokens"
EXT_AUTHZ_OK = "http.ingress.ext_authz.ok"


def module_envoy(tmp_path: Path, echo, config: dict | Path, name: str = "envoy-module",
                 gatehouse_port: int | None = None, gatehouse_http_port: int | None = None,
                 settings: dict | None = None) -> EnvoyInstance:
    """An Envoy on the in-process example whose module reads `config` (a
    gatehouse configuration, written to a file, or the file); ext_authz
    points at `gatehouse_port` (default: a port nobody listens on)."""
    if isinstance(config, dict):
        path = tmp_path / f"{name}-gatehouse.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
    else:
        path = config
    instance = EnvoyInstance(tmp_path / name, gatehouse_port or free_port(), echo.port, name=name,
                             gatehouse_http_port=gatehouse_http_port, module_config=path,
                             module_settings=settings)
    add_gatehouse_log(instance.process.log_path)
    return instance


def ext_authz_ok(envoy: EnvoyInstance) -> int:
    """Checks the in-process Envoy handed to the service and it allowed."""
    return envoy.stats(EXT_AUTHZ_OK).get(EXT_AUTHZ_OK, 0)


def ext_authz_denied(envoy: EnvoyInstance) -> int:
    """Checks the in-process Envoy handed to the service and it denied."""
    name = "http.ingress.ext_authz.denied"
    return envoy.stats(name).get(name, 0)


def create_api_token(client: Client, jwt: str, scopes: list[str]) -> str:
    body = json.dumps({"name": f"t-{time.monotonic_ns()}", "scopes": scopes}).encode()
    r = client.request("POST", API, token=jwt, body=body, headers={"Content-Type": "application/json"})
    assert r.status == 201, r.describe()
    token = r.json()["token"]
    secret_registry.record(token, "API token")
    secret_registry.record(token.split(".", 1)[1], "API token secret")
    return token


def files(keys) -> dict[str, bytes]:
    return {configs.HMAC_SECRET_FILE: keys.hmac.secret,
            configs.ISSUER_KEY_FILE: keys.internal.private_pem(),
            configs.UPSTREAM_TOKEN_FILE: configs.UPSTREAM_TOKEN.encode(),
            STORE_KEY_FILE: (os.urandom(32).hex() + "\n").encode()}


def api_token_config(idp, discovery_idp, rotating_idp, store: dict | None = None) -> dict:
    config = configs.shared_config(idp, discovery_idp, rotating_idp)
    config["api_tokens"] = {"prefix": TOKEN_PREFIX, "admin_scope": ADMIN_SCOPE}
    config["issuer"] = configs.internal_issuer("http://127.0.0.1:9")
    if store:
        config["store"] = store
    return config


@pytest.fixture
def api_token_stack(tmp_path, gatehouse_factory, echo, keys, idp, discovery_idp, rotating_idp):
    """A gatehouse with API tokens on its memory store, and a factory of
    in-process Envoys in front of it, reading its configuration file."""
    config = api_token_config(idp, discovery_idp, rotating_idp)
    g = gatehouse_factory(config, files(keys),
                          name="gatehouse-handon")
    g.wait_serving()
    started: list[EnvoyInstance] = []

    def envoy(settings: dict | None = None, name: str = "envoy-handon") -> EnvoyInstance:
        started.append(module_envoy(tmp_path, echo, g.config_path, name=f"{name}-{len(started)}",
                                    gatehouse_port=g.port, gatehouse_http_port=g.http_port,
                                    settings=settings))
        return started[-1]

    yield g, envoy
    for instance in started:
        instance.stop()


# --- what needs state --------------------------------------------------------------


def test_a_check_that_needs_state_is_handed_to_ext_authz(api_token_stack, mint):
    _, start = api_token_stack
    envoy = start()
    client = Client(envoy.port)
    jwt = mint.token()
    api_token = create_api_token(client, jwt, ["read:data"])

    # A JWT is decided in the worker: ext_authz is never called.
    before = ext_authz_ok(envoy)
    seen = expect.allowed(client.get("/api/x", token=jwt))
    assert seen["headers"]["x-auth-request-user"] == "alice"
    assert ext_authz_ok(envoy) == before

    # An API token needs the store: the module hands the check on and the
    # service decides it, identity headers and all; a spoofed identity
    # header sent with it is removed.
    seen = expect.allowed(client.get("/api/x", token=api_token,
                                     headers={"X-Auth-Request-User": "mallory"}))
    assert seen["headers"]["x-auth-request-user"] == "alice"
    assert ext_authz_ok(envoy) == before + 1
    # An unknown API token: handed on, and refused by the service.
    forged = api_token[:-4] + ("AAAA" if not api_token.endswith("AAAA") else "BBBB")
    expect.invalid_token(client.get("/api/x", token=forged))


def test_a_one_time_link_is_used_up_once_across_both_ways(envoy, inproc_envoy, gatehouse, mint):
    """The shared stack: a one-time link used through the in-process Envoy
    (handed on: its use is recorded in the service's store) is used up for
    the ext_authz Envoy too, and the other way round; a plain signed link
    never leaves the worker."""
    minter = mint.token(identity=MINTER)
    inproc, plain = Client(inproc_envoy.port), Client(envoy.port)
    before, denied_before = ext_authz_ok(inproc_envoy), ext_authz_denied(inproc_envoy)
    reusable = link(inproc, minter, URLs=["/links/shared"])
    expect.allowed(inproc.get("/links/shared", token=reusable))
    assert ext_authz_ok(inproc_envoy) == before
    for first, second in ((inproc, plain), (plain, inproc)):
        once = link(first, minter, URLs=["/links/shared-once"], once=True)
        expect.allowed(first.get("/links/shared-once", token=once))
        body = expect.invalid_token(second.get("/links/shared-once", token=once))
        assert "already been used" in body["error_description"]
    # Handed on: the first use (allowed) and the second (denied).
    assert ext_authz_ok(inproc_envoy) == before + 1
    assert ext_authz_denied(inproc_envoy) == denied_before + 1


def test_without_hand_on_a_check_that_needs_state_is_refused(api_token_stack, mint):
    _, start = api_token_stack
    # The module's default: no ext_authz behind it, so 503 (fail closed).
    envoy = start(settings={"needs_state": None}, name="envoy-refuse")
    client = Client(envoy.port)
    jwt = mint.token()
    api_token = create_api_token(client, jwt, ["read:data"])
    expect.allowed(client.get("/api/x", token=jwt))
    expect.denial(client.get("/api/x", token=api_token), 503, "temporarily_unavailable")
    assert ext_authz_ok(envoy) == 0
    # Logged for what it is, not as a store outage.
    line = wait_until("the decision line", lambda: next(
        (l for l in envoy.process.log_text().splitlines() if "gatehouse::decision" in l), None), 5)
    assert 'reason="needs_state"' in line, line
    assert "store unavailable" not in envoy.process.log_text()


def test_with_a_shared_store_the_worker_decides_stateful_checks(
        tmp_path, redis_server, gatehouse_factory, echo, keys, idp, discovery_idp, rotating_idp,
        mint):
    store = {"redis": {"url": redis_server.url, "command_timeout": "1s",
                       "connect_timeout": "1s"},
             "encryption_key_file": STORE_KEY_FILE}
    config = api_token_config(idp, discovery_idp, rotating_idp, store)
    g = gatehouse_factory(config, files(keys),
                          name="gatehouse-shared")
    g.wait_serving()
    envoy = module_envoy(tmp_path, echo, g.config_path, name="envoy-shared",
                         gatehouse_port=g.port, gatehouse_http_port=g.http_port)
    try:
        client = Client(envoy.port)
        api_token = create_api_token(client, mint.token(), ["read:data"])
        # Created by the service, read by the module from Redis (a check
        # that waits on I/O, resumed through Envoy's scheduler).
        seen = expect.allowed(client.get("/api/x", token=api_token))
        assert seen["headers"]["x-auth-request-user"] == "alice"
        assert ext_authz_ok(envoy) == 0
    finally:
        envoy.stop()


# --- stats --------------------------------------------------------------------------

STATS_PREFIX = "envoy_dynamicmodulescustom_gatehouse_"


def module_stats(envoy: EnvoyInstance) -> dict[str, float]:
    """The module's series in Envoy's Prometheus exposition, by their
    name and labels as printed (`checks{decision="allow",…}`)."""
    text = envoy._admin.get(envoy.admin_url + "/stats/prometheus", timeout=2).text
    out = {}
    for line in text.splitlines():
        if line.startswith(STATS_PREFIX):
            series, _, value = line[len(STATS_PREFIX):].rpartition(" ")
            out[series] = float(value)
    return out


def checks(stats: dict[str, float], decision: str, reason: str, rule: str) -> float:
    return stats.get(f'checks{{decision="{decision}",reason="{reason}",rule="{rule}"}}', 0)


def test_checks_are_counted_in_envoys_stats(api_token_stack, mint):
    """In process there is no /metrics port: each check is counted in
    Envoy's own stats (its Prometheus exposition), by decision, reason and
    rule, and timed, as the service's gatehouse_checks_total and
    gatehouse_check_duration_seconds."""
    _, start = api_token_stack
    envoy = start(name="envoy-stats")
    client = Client(envoy.port)
    jwt = mint.token()
    api_token = create_api_token(client, jwt, ["read:data"])
    before = module_stats(envoy)

    expect.allowed(client.get("/api/x", token=jwt))
    expect.allowed(client.get("/api/y", token=jwt))
    expect.no_credential(client.get("/api/x"))
    expect.invalid_token(client.get("/api/x", token=tokens.tamper(jwt, sub="mallory")))
    expect.allowed(client.get("/api/x", token=api_token))  # handed on

    after = module_stats(envoy)
    delta = {key: checks(after, *key) - checks(before, *key) for key in [
        ("allow", "none", "api"), ("deny", "no_credential", "api"),
        ("deny", "invalid_token", "api"), ("hand_on", "needs_state", "api")]}
    assert delta == {("allow", "none", "api"): 2, ("deny", "no_credential", "api"): 1,
                     ("deny", "invalid_token", "api"): 1, ("hand_on", "needs_state", "api"): 1}, after
    # Histograms reach the exposition when Envoy merges them (every 5 s).
    allowed = 'check_duration_us_count{decision="allow"}'
    merged = wait_until("the duration histogram merged",
                        lambda: (s := module_stats(envoy)).get(allowed, 0) >= 2 and s, 12,
                        interval=0.5)
    mean_us = merged['check_duration_us_sum{decision="allow"}'] / merged[allowed]
    assert 0 < mean_us < 1_000_000, merged
    assert merged['check_duration_us_count{decision="deny"}'] >= 2, merged


def test_check_spans_are_exported_from_inside_envoy(tmp_path, echo, idp, mint):
    """With a `tracing:` section the module exports the service's spans
    (check and phases, in the caller's trace) over OTLP from inside
    Envoy: the batch exporter sends them within its 5 s delay."""
    receiver = OtlpHttpReceiver()
    try:
        config = configs.single_issuer_config(idp)
        config["tracing"] = {"otlp_endpoint": f"http://127.0.0.1:{receiver.server_port}",
                             "protocol": "http", "service_name": "gatehouse-in-envoy"}
        envoy = module_envoy(tmp_path, echo, config, name="envoy-traced")
        try:
            trace = secrets.token_hex(16)
            token = mint.token()
            expect.allowed(Client(envoy.port).get(
                "/x", token=token, headers={"traceparent": f"00-{trace}-{secrets.token_hex(8)}-01"}))
            wait_until("the check's spans exported", lambda: bytes.fromhex(trace) in b"".join(
                receiver.bodies), 15, interval=0.2, on_timeout=envoy.process.log_tail)
        finally:
            envoy.stop()
        body = b"".join(receiver.bodies)
        for name in (b"check", b"authn", b"authz", b"gatehouse.rule", b"gatehouse-in-envoy"):
            assert name in body, name
        assert token.encode() not in body and token.rsplit(".", 1)[1].encode() not in body
    finally:
        receiver.shutdown()


# --- waiting ------------------------------------------------------------------------


def test_an_unknown_kid_waits_for_the_key_set_and_is_resumed(tmp_path, idp_factory, echo, mint,
                                                             keys):
    idp = idp_factory(keys.rsa, label="idp-module")
    refresh = dict(configs.QUIET_REFRESH, unknown_kid_interval="1s")
    envoy = module_envoy(tmp_path, echo, configs.single_issuer_config(idp, refresh))
    try:
        client = Client(envoy.port)
        expect.allowed(client.get("/x", token=mint.token(keys.rsa, idp.issuer)))
        time.sleep(1.2)  # one unknown_kid_interval since the first fetch
        new_key = tokens.generate("ES256", kid="added-later")
        idp.add_key(new_key)
        fetches = idp.fetches()
        # The worker cannot verify this token until the key set is fetched
        # again: the check moves to the module's runtime and comes back.
        seen = expect.allowed(client.get("/x", token=mint.token(new_key, idp.issuer)))
        assert seen["headers"]["x-auth-request-user"] == "alice"
        assert idp.fetches() == fetches + 1
        # More tokens signed with it: verified in the worker, no refetch.
        for _ in range(5):
            fresh = mint.token(new_key, idp.issuer, jti=str(time.monotonic_ns()))
            expect.allowed(client.get("/x", token=fresh))
        assert idp.fetches() == fetches + 1
        # An unknown kid that stays unknown: refused after the refetch.
        expect.invalid_token(client.get("/x", token=mint.token(keys.stranger, idp.issuer)))
    finally:
        envoy.stop()


def test_a_client_leaving_while_its_check_waits_harms_nothing(tmp_path, idp_factory, echo, mint,
                                                              keys):
    idp = idp_factory(keys.rsa, label="idp-slow")
    refresh = dict(configs.QUIET_REFRESH, unknown_kid_interval="1s", timeout="3s")
    envoy = module_envoy(tmp_path, echo, configs.single_issuer_config(idp, refresh),
                         name="envoy-leaving")
    try:
        client = Client(envoy.port)
        token = mint.token(keys.rsa, idp.issuer)
        expect.allowed(client.get("/x", token=token))
        time.sleep(1.2)
        idp.delay = 1.5  # the next fetch answers late
        new_key = tokens.generate("ES256", kid="slow-key")
        idp.add_key(new_key)
        # A client that gives up while its check waits for that fetch (the
        # one refetch its unknown kid may cause): Envoy destroys the stream
        # under the waiting check.
        try:
            r = Client(envoy.port, timeout=0.3).get("/x", token=mint.token(new_key, idp.issuer))
            raise AssertionError(f"answered while the fetch was delayed: {r.describe()}")
        except OSError:
            pass
        # Meanwhile and afterwards, the worker answers everyone else...
        expect.allowed(client.get("/x", token=token))
        wait_until("the late fetch", lambda: idp.fetches() >= 2, timeout=5)
        time.sleep(0.3)  # the late answers, dropped for streams that are gone
        idp.delay = 0.0
        # ... and the key fetched for the clients that left is there.
        expect.allowed(client.get("/x", token=mint.token(new_key, idp.issuer)))
        assert envoy.process.alive()
        assert "panic" not in envoy.process.log_text()
    finally:
        envoy.stop()


# --- configuration -------------------------------------------------------------------


def test_the_module_reloads_its_configuration_file(tmp_path, idp_factory, echo, mint, keys):
    idp = idp_factory(keys.rsa, label="idp-reload")
    config = configs.single_issuer_config(idp)
    config["reload"] = {"watch": True, "interval": "200ms"}
    path = tmp_path / "reloaded.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    envoy = module_envoy(tmp_path, echo, path, name="envoy-reload")
    try:
        client = Client(envoy.port)
        token = mint.token(keys.rsa, idp.issuer)
        expect.allowed(client.get("/x", token=token))
        config["policy"]["default"] = "deny"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        wait_until("the module to deny after the reload",
                   lambda: client.get("/x", token=token).status == 403, timeout=10,
                   on_timeout=envoy.process.log_tail)
        # A broken file is not applied: the last good configuration stays.
        path.write_text("policy: [this is not gatehouse's configuration\n")
        time.sleep(1)
        expect.denial(client.get("/x", token=token), 403, "access_denied")
    finally:
        envoy.stop()


def test_a_configuration_the_module_cannot_load_stops_envoy_with_the_reason(tmp_path, echo, idp):
    config = configs.single_issuer_config(idp)
    config["policy"]["default"] = "sometimes"
    with pytest.raises(ProcessExited):
        module_envoy(tmp_path, echo, config, name="envoy-bad")
    log = (tmp_path / "envoy-bad" / "envoy-bad.log").read_text()
    assert "gatehouse: filter configuration refused" in log, log[-2000:]
    assert "policy.default" in log, log[-2000:]


def test_unknown_module_settings_are_refused(tmp_path, echo, idp):
    with pytest.raises(ProcessExited):
        module_envoy(tmp_path, echo, configs.single_issuer_config(idp), name="envoy-settings",
                     settings={"needs_state": "allow"})
    log = (tmp_path / "envoy-settings" / "envoy-settings.log").read_text()
    assert "gatehouse: filter configuration refused: invalid JSON" in log, log[-2000:]


# --- Envoy versions -------------------------------------------------------------------


def _validate(envoy_bin: Path, tmp_path: Path, idp) -> subprocess.CompletedProcess:
    """`envoy --mode validate` on the in-process example, the module reading
    a one-issuer configuration."""
    gatehouse_yaml = tmp_path / "gatehouse.yaml"
    gatehouse_yaml.write_text(yaml.safe_dump(configs.single_issuer_config(idp)))
    ports = Ports(listener=free_port(), admin=free_port(), gatehouse=free_port(),
                  upstream=free_port(), gatehouse_http=free_port())
    config = write_test_config(tmp_path / "envoy.yaml", ports, INPROCESS_EXAMPLE, gatehouse_yaml)
    return subprocess.run(
        [str(envoy_bin), "--mode", "validate", "-c", str(config), "-l", "info"],
        env={**os.environ, "ENVOY_DYNAMIC_MODULES_SEARCH_PATH": str(module_dir())},
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_the_envoy_it_is_built_for_loads_it(tmp_path, idp):
    done = _validate(envoy_binary(), tmp_path, idp)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "Dynamic module ABI version v0.2.0 matched" in out, out[-3000:]


@pytest.mark.parametrize("version", ["1.39.3"])
def test_another_envoy_refuses_it_cleanly(tmp_path, idp, version):
    binary = other_envoy(version)
    assert binary.exists(), f"{binary}: run `bash tests/setup.sh` (OTHER_ENVOYS)"
    done = _validate(binary, tmp_path, idp)
    out = done.stdout + done.stderr
    # Refused at load, naming what is missing (the module binds every
    # callback at load: envoy/module/build.rs): no crash, no filter.
    assert done.returncode != 0, out[-3000:]
    assert "Failed to load dynamic module" in out, out[-3000:]
    assert "undefined symbol: envoy_dynamic_module_callback_" in out, out[-3000:]
    assert "Segmentation fault" not in out and "Caught" not in out, out[-3000:]
