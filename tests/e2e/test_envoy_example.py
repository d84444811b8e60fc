"""The shipped envoy/envoy.yaml on its own: these tests need no gatehouse
(the /public/ route has ext_authz disabled; fail-closed uses an Envoy whose
gatehouse port is closed). They pin down what Envoy 1.40 does to paths and
headers before gatehouse ever sees a request."""

from __future__ import annotations

import copy
import subprocess

import pytest
import yaml

import envoy_config
from envoy_bin import envoy_binary
from harness.httpc import Client
from harness.procs import free_port

SPOOFED_IDENTITY = {
    "X-Auth-Request-User": "mallory",
    "X-Auth-Request-Email": "mallory@evil.example",
    "X-Auth-Request-Groups": "superusers",
    "X-Auth-Request-Token": "forged",
}


def test_example_validates():
    r = subprocess.run(
        [str(envoy_binary()), "--mode", "validate", "-c", str(envoy_config.EXAMPLE)],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"configuration '{envoy_config.EXAMPLE}' OK" in r.stdout + r.stderr


def test_rewrite_changes_only_addresses_and_ports(tmp_path):
    original = yaml.safe_load(envoy_config.EXAMPLE.read_text())
    ports = envoy_config.Ports(listener=1, admin=2, gatehouse=3, upstream=4, gatehouse_http=5)
    out = envoy_config.write_test_config(tmp_path / "e.yaml", ports)
    rewritten = yaml.safe_load(out.read_text())

    def addresses(cfg):
        static = cfg["static_resources"]
        found = [cfg["admin"]["address"]["socket_address"]]
        found += [lst["address"]["socket_address"] for lst in static["listeners"]]
        for cluster in static["clusters"]:
            for group in cluster["load_assignment"]["endpoints"]:
                found += [lb["endpoint"]["address"]["socket_address"] for lb in group["lb_endpoints"]]
        return found

    assert [(a["address"], a["port_value"]) for a in addresses(rewritten)] == [
        ("127.0.0.1", 2), ("127.0.0.1", 1), ("127.0.0.1", 3), ("127.0.0.1", 5), ("127.0.0.1", 4)
    ]
    blank = copy.deepcopy(rewritten)
    for a in addresses(blank) + addresses(original):
        a.update(address=None, port_value=None)
    assert blank == original


def test_public_route_reaches_upstream_without_a_check(envoy):
    # Envoy-only: ext_authz is disabled on /public/ (no token, no gatehouse).
    r = Client(envoy.port).get("/public/x?q=1")
    assert r.status == 200 and r.layer == "upstream", r.describe()
    seen = r.json()
    assert seen["method"] == "GET" and seen["path"] == "/public/x?q=1"
    assert "authorization" not in seen["headers"]


def test_public_route_strips_spoofed_identity_headers(envoy):
    # No gatehouse on /public/, so the example removes gatehouse's header
    # names itself (route-level request_headers_to_remove).
    r = Client(envoy.port).get("/public/x", headers={**SPOOFED_IDENTITY, "X-Auth-Request-Foo": "bar"})
    seen = r.json()["headers"]
    for name in SPOOFED_IDENTITY:
        assert name.lower() not in seen, r.describe()
    # Envoy cannot remove by prefix: an unknown name passes on /public/.
    assert seen.get("x-auth-request-foo") == "bar"


def test_underscore_header_names_are_dropped(envoy):
    # `X_Auth_Request_User` would read as X-Auth-Request-User to CGI-style
    # upstreams; headers_with_underscores_action: DROP_HEADER.
    r = Client(envoy.port).get("/public/x", headers={"X_Auth_Request_User": "mallory"})
    assert r.status == 200
    assert all("_" not in name for name in r.json()["headers"]), r.describe()


@pytest.mark.parametrize(
    "target, upstream_path",
    [
        ("/public/./x", "/public/x"),
        ("/public//x", "/public/x"),  # merge_slashes
        ("/public/a/../x", "/public/x"),
        ("/public/a/%2e%2e/x", "/public/x"),  # encoded dots are dot segments too
        ("/public/a\\x", "/public/a/x"),  # a raw backslash becomes a slash
    ],
)
def test_path_normalization_seen_by_upstream(envoy, target, upstream_path):
    """What Envoy's normalize_path + merge_slashes send on,
    observed through the unchecked /public/ route (the same path ext_authz
    receives on checked routes)."""
    r = Client(envoy.port).get(target)
    assert r.status == 200 and r.layer == "upstream", r.describe()
    assert r.json()["path"] == upstream_path


@pytest.mark.parametrize("target", ["/public/%00", "/public/%2Fx", "/public/%2fx", "/public/%5Cx", "/public/..%2Fdata/x"])
def test_ambiguous_paths_are_rejected_by_envoy(envoy, target):
    # NUL, and encoded slashes (REJECT_REQUEST): Envoy answers 400 itself, so
    # neither ext_authz nor the upstream sees them, even on the unchecked
    # /public/ route.
    r = Client(envoy.port).get(target)
    assert (r.status, r.layer) == (400, "envoy"), r.describe()


def test_fails_closed_when_gatehouse_is_unreachable(envoy_factory, echo):
    # failure_mode_allow: false + status_on_error 503: nothing listens on
    # the gatehouse port, so every checked route answers 503 from Envoy and
    # the upstream sees nothing; /public/ still works.
    e = envoy_factory(gatehouse_port=free_port(), upstream_port=echo.port, name="envoy-no-gatehouse")
    c = Client(e.port)
    before = len(echo.requests)
    for target in ("/data/x", "/admin/x", "/basic/x", "/public/../data/x"):
        r = c.get(target, token="anything")
        assert (r.status, r.layer) == (503, "envoy"), f"{target}: {r.describe()}"
    assert len(echo.requests) == before
    assert c.get("/public/x").status == 200
    assert e.stats("http.ingress.ext_authz.error").get("http.ingress.ext_authz.error", 0) >= 4
