"""Hot reload with Envoy in front and requests flowing.

Depends on gatehouse behaviour:
- a change of the configuration file (watched every `reload.interval`)
  or SIGHUP reloads it; the new engine is swapped in whole, so every
  check is answered by the old or the new rules, never an error;
- a file that does not load keeps the running configuration, logs why
  (naming the key) and counts `gatehouse_config_reloads_total{result="failure"}`;
- `reload.watch: false` leaves reloading to SIGHUP;
- a change of a file the configuration names (here a `jwks_file`) is
  watched like the configuration itself: a key added to it is accepted
  after the next read, one removed is refused;
- a changed setting read only at start (here `server.drain_timeout`) is
  logged as needing a restart and shown by `gatehouse_config_restart_required`.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import jwt  # PyJWT: tokens minted independently of gatehouse
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from harness import configs, secret_registry
from harness.tokens import AUDIENCE
from harness.httpc import Client
from harness.metrics import scrape
from harness.procs import wait_until

OPEN = {"name": "open", "match": {"path": {"prefix": "/open/"}}, "auth": "anonymous"}
NEW = {"name": "new", "match": {"path": {"prefix": "/new/"}}, "auth": "anonymous"}


def _config(idp, rules: list[dict], reload: dict) -> dict:
    config = configs.single_issuer_config(idp)
    config["policy"] = {"default": "deny", "rules": rules}
    config["reload"] = reload
    return config


def _rewrite(g, changes: dict) -> None:
    """Replaces gatehouse's config file (write beside, then rename, as
    editors and Kubernetes do), keeping its listen addresses."""
    config = dict(g.config, **changes)
    tmp = Path(str(g.config_path) + ".tmp")
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    os.replace(tmp, g.config_path)


class Load:
    """Threads sending GET requests through Envoy without pause until
    stopped; each result is (path, status, layer) or (path, None, error)."""

    def __init__(self, port: int, paths: list[str], threads: int = 4, limit: float = 60.0):
        self.port, self.paths, self.limit = port, paths, limit
        self.results: list[list[tuple]] = [[] for _ in range(threads)]
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(threads)]

    def _run(self, i: int) -> None:
        client = Client(self.port, timeout=5)
        deadline = time.monotonic() + self.limit  # bounded even if never stopped
        while not self._stop.is_set() and time.monotonic() < deadline:
            for path in self.paths:
                try:
                    r = client.get(path)
                    self.results[i].append((path, r.status, r.layer))
                except Exception as e:  # noqa: BLE001 - a failed request is the finding
                    self.results[i].append((path, None, repr(e)))

    def __enter__(self) -> "Load":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)


def _serving(idp_factory, gatehouse_factory, envoy_factory, echo, keys, reload: dict, name: str):
    idp = idp_factory(keys.rsa, label=f"idp-{name}")
    g = gatehouse_factory(_config(idp, [OPEN], reload), name=f"gatehouse-{name}")
    g.wait_serving()
    envoy = envoy_factory(g.port, echo.port, name=f"envoy-{name}", gatehouse_http_port=g.http_port)
    return g, Client(envoy.port)


def test_rule_change_under_load_fails_no_request_and_a_bad_file_keeps_it(
        idp_factory, gatehouse_factory, envoy_factory, echo, keys):
    g, client = _serving(idp_factory, gatehouse_factory, envoy_factory, echo, keys,
                         {"interval": "200ms"}, "reload")
    assert client.get("/new/x").status == 403
    before = scrape(g.http_url)

    with Load(client.port, ["/new/x", "/open/x"]) as load:
        time.sleep(0.5)
        _rewrite(g, {"policy": {"default": "deny", "rules": [OPEN, NEW]}})
        wait_until("the new rule to apply", lambda: client.get("/new/x").status == 200, timeout=10,
                   on_timeout=g.process.log_tail)
        time.sleep(0.5)
        # A bad file (a misspelt key) that would also drop the new rule.
        _rewrite(g, {"policy": {"default": "deny", "rules": [OPEN]},
                     "reload": {"interval": "200ms", "wach": True}})
        wait_until("the failed reload to be counted",
                   lambda: scrape(g.http_url).count("gatehouse_config_reloads_total", result="failure")
                   > before.count("gatehouse_config_reloads_total", result="failure"),
                   timeout=10, on_timeout=g.process.log_tail)
        time.sleep(0.5)

    new_statuses = []
    for thread in load.results:
        assert thread, "every load thread sent requests"
        seen_allowed = False
        for path, status, layer in thread:
            assert status is not None, f"{path}: request failed: {layer}"
            if path == "/open/x":
                assert (status, layer) == (200, "upstream"), (path, status, layer)
                continue
            new_statuses.append(status)
            if status == 200:
                assert layer == "upstream"
                seen_allowed = True
            else:
                # Denied by gatehouse's old rules, never after the new ones applied.
                assert (status, layer) == (403, "gatehouse"), (path, status, layer)
                assert not seen_allowed, "the old decision came back after the new one"
    assert 200 in new_statuses and 403 in new_statuses, sorted(set(new_statuses))
    # The bad file changed nothing.
    assert client.get("/new/x").status == 200

    after = scrape(g.http_url)
    reloads = {result: after.count("gatehouse_config_reloads_total", result=result)
               - before.count("gatehouse_config_reloads_total", result=result)
               for result in ["success", "failure"]}
    assert reloads == {"success": 1, "failure": 1}
    assert after.value("gatehouse_config_last_reload_successful") == 0
    allowed_by_new = after.checks("allow", rule="new")
    assert allowed_by_new >= new_statuses.count(200)
    log = g.log()
    assert "configuration reloaded" in log
    assert "configuration reload failed" in log and "wach" in log


def test_sighup_reloads_an_unwatched_file_and_names_restart_only_changes(
        idp_factory, gatehouse_factory, envoy_factory, echo, keys):
    g, client = _serving(idp_factory, gatehouse_factory, envoy_factory, echo, keys,
                         {"watch": False}, "sighup")
    _rewrite(g, {"policy": {"default": "deny", "rules": [OPEN, NEW]},
                 "server": dict(g.config["server"], drain_timeout="3s")})
    time.sleep(1.5)  # longer than a watch would take: not watched
    assert client.get("/new/x").status == 403
    assert scrape(g.http_url).count("gatehouse_config_reloads_total", result="success") == 0

    g.process.signal(signal.SIGHUP)
    wait_until("SIGHUP to reload", lambda: client.get("/new/x").status == 200, timeout=10,
               on_timeout=g.process.log_tail)
    s = scrape(g.http_url)
    assert s.count("gatehouse_config_reloads_total", result="success") == 1
    assert s.value("gatehouse_config_restart_required") == 1
    log = g.log()
    assert 'trigger="SIGHUP"' in log or "trigger=SIGHUP" in log, log[-2000:]
    assert "server.drain_timeout" in log
    assert g.alive(), "SIGHUP does not end the process"


def _rsa_key(kid: str):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": kid, "alg": "RS256", "use": "sig"})
    return key, jwk


def _token(key, kid: str, iss: str, sub: str) -> str:
    now = int(time.time())
    token = jwt.encode({"iss": iss, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 600},
                       key, algorithm="RS256", headers={"kid": kid})
    secret_registry.record_token(token, "jwks-file reload token")
    return token


def test_a_rotated_key_file_is_picked_up_without_a_signal(gatehouse_factory, envoy_factory, echo):
    iss = "https://files.gatehouse.test"
    old, old_jwk = _rsa_key("old")
    new, new_jwk = _rsa_key("new")
    config = {
        "server": {"drain_timeout": "2s", "realm": configs.REALM},
        "jwt": {"issuers": [configs.issuer("files", iss, ["RS256"], {"jwks_file": "keys/jwks.json"})]},
        "policy": {"default": "authenticated", "rules": []},
        "reload": {"interval": "200ms"},
        "log": {"level": "info"},
    }
    g = gatehouse_factory(config, files={"keys/jwks.json": json.dumps({"keys": [old_jwk]}).encode()},
                          name="gatehouse-keyfile")
    g.wait_serving()
    envoy = envoy_factory(g.port, echo.port, name="envoy-keyfile", gatehouse_http_port=g.http_port)
    client = Client(envoy.port)
    old_token, new_token = _token(old, "old", iss, "alice"), _token(new, "new", iss, "bob")
    assert client.get("/data/1", token=old_token).status == 200
    assert client.get("/data/1", token=new_token).status == 401

    def replace_keys(jwks: list[dict]) -> None:
        path = g.workdir / "keys" / "jwks.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"keys": jwks}))
        os.replace(tmp, path)

    # Rotation: the new key is added (the config file is not touched).
    replace_keys([old_jwk, new_jwk])
    wait_until("the added key to be accepted", lambda: client.get("/data/1", token=new_token).status == 200,
               timeout=10, on_timeout=g.process.log_tail)
    # ... then the old one is removed: its tokens are refused, cached or not.
    replace_keys([new_jwk])
    wait_until("the removed key to be refused", lambda: client.get("/data/1", token=old_token).status == 401,
               timeout=10, on_timeout=g.process.log_tail)
    assert client.get("/data/2", token=new_token).status == 200
    assert scrape(g.http_url).count("gatehouse_config_reloads_total", result="success") == 2
