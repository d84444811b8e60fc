"""Checks over plain HTTP (src/serve/http/check.rs), against the shared gatehouse:

- Envoy's ext_authz in `http_service` mode: the shipped example with its
  `grpc_service` swapped for the `http_service` block the README documents
  (ENVOY_HTTP_SERVICE below), so Envoy asks `/ext_authz/<path>` on the side
  port. Same decisions, same headers upstream, spoofed identity headers
  removed through `x-envoy-auth-headers-to-remove`.
- Forward auth (`/auth`, as nginx `auth_request` and Traefik ask), called
  directly with `X-Original-URL` or `X-Forwarded-*` and Gafaelfawr's query
  parameters.

Tokens are minted by PyJWT/jwcrypto (the `mint` fixture).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import requests
import yaml

from envoy_config import EXAMPLE
from harness import expect
from harness.envoy import EnvoyInstance
from harness.httpc import Client

# What the README tells Envoy users to write for HTTP mode.
ENVOY_HTTP_SERVICE = {
    "server_uri": {"uri": "http://gatehouse_http", "cluster": "gatehouse_http", "timeout": "0.5s"},
    "path_prefix": "/ext_authz",
    "authorization_request": {"allowed_headers": {"patterns": [
        {"exact": "cookie"}, {"exact": "x-forwarded-for"}, {"exact": "x-forwarded-proto"},
        {"exact": "x-forwarded-client-cert"}, {"prefix": "x-auth-request-"},
        # Browsers (login redirect, CORS, CSRF).
        {"exact": "accept"}, {"exact": "origin"}, {"exact": "referer"}, {"exact": "x-requested-with"},
        {"exact": "x-csrf-token"}, {"exact": "access-control-request-method"},
    ]}},
    "authorization_response": {
        "allowed_upstream_headers": {"patterns": [{"prefix": "x-auth-request-"}]},
        "allowed_client_headers": {"patterns": [
            {"exact": "www-authenticate"}, {"exact": "cache-control"}, {"exact": "content-type"},
            {"exact": "location"}, {"exact": "set-cookie"},
        ]},
    },
}


def http_mode_config(out: Path) -> Path:
    """The example with ext_authz asking gatehouse over HTTP."""
    config = yaml.safe_load(EXAMPLE.read_text())
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    authz = next(f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.ext_authz")
    typed = authz["typed_config"]
    del typed["grpc_service"]
    typed.pop("include_peer_certificate", None)
    typed["http_service"] = copy.deepcopy(ENVOY_HTTP_SERVICE)
    out.write_text(yaml.safe_dump(config))
    return out


@pytest.fixture(scope="module")
def http_client(workdir: Path, gatehouse, gatehouse_port: int, gatehouse_http_port: int, echo):
    source = http_mode_config(workdir / "envoy-http-source.yaml")
    instance = EnvoyInstance(workdir / "envoy-http", gatehouse_port=gatehouse_port, upstream_port=echo.port,
                             gatehouse_http_port=gatehouse_http_port, name="envoy-http", source=source)
    yield Client(instance.port)
    instance.stop()


SPOOFED = [("X-Auth-Request-User", "mallory"), ("X-Auth-Request-Email", "mallory@evil.example"),
           ("X-Auth-Request-Groups", "superusers")]


def test_envoy_http_mode_allows_and_sets_identity_headers(http_client, mint):
    seen = expect.allowed(http_client.get("/whoami/x?q=1", token=mint.token()))
    assert seen["headers"]["x-auth-request-user"] == "alice"
    assert seen["headers"]["x-auth-request-groups"] == "admins,readers"
    assert seen["path"].startswith("/whoami/x"), seen


def test_envoy_http_mode_strips_spoofed_identity_headers(http_client, mint):
    token = mint.token(identity={"sub": "bob-sub", "preferred_username": "bob", "groups": ["readers"]})
    seen = expect.allowed(http_client.get("/api/x", token=token, headers=SPOOFED))
    headers = {n: v for n, v in seen["header_list"] if n.startswith("x-auth-request-")}
    assert headers["x-auth-request-user"] == "bob"
    assert headers["x-auth-request-groups"] == "readers"
    assert "x-auth-request-email" not in headers, seen
    assert not {v for v in headers.values()} & {v for _, v in SPOOFED}


def test_envoy_http_mode_denials_match_grpc_mode(http_client, client, mint):
    expect.no_credential(http_client.get("/api/x"))
    expect.invalid_token(http_client.get("/api/x", token=mint.token()[:-6] + "AAAAAA"))
    token = mint.token(identity={"sub": "carol", "preferred_username": "carol", "groups": []})
    http_body = expect.insufficient_scope(http_client.get("/data/x", token=token), {"read:data"})
    grpc_body = expect.insufficient_scope(client.get("/data/x", token=token), {"read:data"})
    assert http_body == grpc_body


def test_envoy_http_mode_public_route_unchecked(http_client):
    r = http_client.get("/anon/x")
    expect.allowed(r)


@pytest.fixture(scope="module")
def auth_url(gatehouse) -> str:
    return f"http://127.0.0.1:{gatehouse.http_port}/auth"


def test_forward_auth_with_original_url(auth_url, mint):
    token = mint.token()
    r = requests.get(auth_url, headers={
        "Authorization": f"Bearer {token}", "X-Original-URL": "https://app.example/data/1",
        "X-Original-Method": "GET", "X-Auth-Request-Email": "mallory@evil.example",
    }, timeout=5)
    assert r.status_code == 200, r.text
    assert r.headers["x-auth-request-user"] == "alice"
    assert r.headers["x-auth-request-email"] == "alice@example.org"


def test_forward_auth_traefik_headers_and_gafaelfawr_scope(auth_url, mint):
    token = mint.token()
    base = {"Authorization": f"Bearer {token}", "X-Forwarded-Host": "app.example",
            "X-Forwarded-Uri": "/api/notebook", "X-Forwarded-Method": "POST", "X-Forwarded-Proto": "https"}
    ok = requests.get(auth_url, params={"scope": "read:data"}, headers=base, timeout=5)
    assert ok.status_code == 200, ok.text
    missing = requests.get(auth_url, params=[("scope", "read:data"), ("scope", "exec:admin")],
                           headers=base, timeout=5)
    assert missing.status_code == 403, missing.text
    assert missing.json()["error"] == "insufficient_scope"
    assert "no-store" in missing.headers["cache-control"]
    anyof = requests.get(auth_url, params=[("scope", "read:data"), ("scope", "exec:admin"),
                                           ("satisfy", "any")], headers=base, timeout=5)
    assert anyof.status_code == 200, anyof.text


def test_forward_auth_challenges_and_refuses_bad_subrequests(auth_url):
    r = requests.get(auth_url, headers={"X-Original-URL": "https://app.example/data/1"}, timeout=5)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer realm=")
    basic = requests.get(auth_url, params={"auth_type": "basic"},
                         headers={"X-Original-URL": "https://app.example/data/1"}, timeout=5)
    assert basic.status_code == 401
    assert basic.headers["www-authenticate"].startswith("Basic realm=")
    no_url = requests.get(auth_url, timeout=5)
    assert no_url.status_code == 400
    assert "X-Original-URL" in no_url.text
    traversal = requests.get(auth_url, headers={"X-Original-URL": "https://app.example/anon/..;/data/1"},
                             timeout=5)
    assert traversal.status_code == 400, traversal.text


def test_http_checks_are_counted_like_grpc_checks(http_client, auth_url, gatehouse, mint):
    from harness.metrics import scrape

    before = scrape(gatehouse.http_url)
    expect.allowed(http_client.get("/data/1", token=mint.token()))
    r = requests.get(auth_url, headers={"X-Original-URL": "https://app.example/data/2"}, timeout=5)
    assert r.status_code == 401
    after = scrape(gatehouse.http_url)
    assert after.checks("allow", "", "data") - before.checks("allow", "", "data") == 1
    assert (after.checks("deny", "no_credential", "data")
            - before.checks("deny", "no_credential", "data")) == 1
