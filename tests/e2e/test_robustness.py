"""Malformed input never crashes gatehouse: each answer is a gatehouse denial
(400 or 401 with the JSON body), never Envoy's 503 (which would mean the
Check failed or timed out), and afterwards a valid request still passes.

Depends on gatehouse behaviour: malformed input → a normal denial
(`Deny::BadRequest` / `InvalidToken`), never a panic or a gRPC error.
"""

from __future__ import annotations

import base64

import pytest

from harness import configs, expect
from harness.httpc import Client, basic

pytestmark = pytest.mark.both_filters


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


GARBAGE_AUTHORIZATION = [
    "Bearer",
    "Bearer ",
    "Bearer  ",
    "bearer x",
    "Bearer a",
    "Bearer a.b",
    "Bearer a.b.c.d",
    "Bearer ...",
    "Bearer ..",
    "Bearer !!!.@@@.###",  # a 3-part token with invalid base64
    "Bearer e30.e30.e30",  # valid base64 of {}: no alg, no claims
    f"Bearer {_b64(b'not json')}.{_b64(b'not json')}.sig",
    f"Bearer {_b64(bytes(range(256)))}.{_b64(b'{}')}.x",  # non-UTF-8 header
    "Bearer " + _b64(b'{"alg":"RS256","kid":123}') + "." + _b64(b"[]") + ".x",  # wrong JSON types
    "Bearer " + _b64(b'{"alg":"RS256"}') + "." + _b64(b'{"exp":"soon","aud":7}') + ".AAAA",
    "Basic",
    "Basic !!!notbase64",
    "Basic " + base64.b64encode(b"no-colon-here").decode(),
    "Basic " + base64.b64encode(b"\xff\xfe:\xfd").decode(),
    basic("", ""),
    "Negotiate YIIGhgYJKoZIhvcSAQICAQBuggZ1MIIGcaADAgEFoQMCAQ6iBwMFACAAAACj",
    "Bearer " + "a" * 8000 + "." + "b" * 8000 + "." + "c" * 8000,
]


@pytest.mark.parametrize("value", GARBAGE_AUTHORIZATION, ids=lambda v: repr(v[:40]))
def test_garbage_authorization(client, gatehouse, value):
    r = client.get("/api/x", headers={"Authorization": value})
    assert r.status in (400, 401) and r.layer == "gatehouse", r.describe()
    expect.assert_no_store(r)
    assert gatehouse.alive()


@pytest.mark.parametrize(
    "headers",
    [
        {"Cookie": f"{configs.COOKIE}=%%%; ;;=;{configs.COOKIE}"},
        {"Cookie": "=" * 100},
        {"Authorization": "Bearer x", "X-Forwarded-For": "not-an-ip, ::::, 999.1.1.1, [::1"},
        {"X-Forwarded-For": ",".join(["10.0.0.1"] * 2000)},
    ],
    ids=["bad-cookie", "equals-cookie", "bad-xff", "long-xff"],
)
def test_garbage_elsewhere(client, gatehouse, headers):
    r = client.get("/api/x", headers=headers)
    assert r.status in (400, 401) and r.layer == "gatehouse", r.describe()
    assert gatehouse.alive()


def test_garbage_query_token(client, gatehouse):
    r = client.get(f"/api/x?{configs.QUERY}=%ZZ&{configs.QUERY}=a.b.c&x=%00")
    assert r.status in (400, 401) and r.layer == "gatehouse", r.describe()
    assert gatehouse.alive()


def test_huge_header_with_valid_token(client, gatehouse, mint):
    # 40 KiB: under Envoy's default 60 KiB request-header limit, so it
    # reaches gatehouse inside the CheckRequest.
    r = client.get("/api/x", token=mint.token(), headers={"X-Big": "x" * 40 * 1024})
    seen = expect.allowed(r)
    assert len(seen["headers"]["x-big"]) == 40 * 1024


def test_a_20_kb_token_is_accepted(client, gatehouse, mint):
    # Keycloak with many roles or groups issues tokens this size; the
    # default jwt.max_token_bytes (64 KiB) takes them.
    token = mint.token(padding="p" * 20_000)
    assert len(token) > 20_000
    seen = expect.allowed(client.get("/api/x", token=token))
    assert seen["headers"]["x-auth-request-user"] == "alice"


def test_a_token_over_max_token_bytes_is_refused_with_the_reason(
        gatehouse_factory, envoy_factory, echo, idp, mint):
    config = configs.single_issuer_config(idp)
    config["jwt"]["max_token_bytes"] = 16384
    g = gatehouse_factory(config, name="gatehouse-small-tokens")
    g.wait_serving()
    envoy = envoy_factory(g.port, echo.port, name="envoy-small-tokens")
    client = Client(envoy.port)
    expect.allowed(client.get("/api/x", token=mint.token(padding="p" * 10_000)))
    body = expect.invalid_token(client.get("/api/x", token=mint.token(padding="p" * 20_000)))
    assert "jwt.max_token_bytes (16384)" in body["error_description"], body


def test_many_headers(client, gatehouse, mint):
    # 60 headers: Envoy's default max_request_headers_count is 100, and the
    # count includes the headers Envoy and gatehouse add (with ~90 client
    # headers, Envoy rejects gatehouse's OK response: 500 ext_authz_invalid).
    headers = [(f"X-H{i}", str(i)) for i in range(60)]
    expect.allowed(client.get("/api/x", token=mint.token(), headers=headers))


def test_still_healthy_after_garbage(client, gatehouse, mint):
    # Runs after the garbage tests above (file order).
    assert gatehouse.alive()
    assert gatehouse.health() == "SERVING"
    expect.allowed(client.get("/api/x", token=mint.token()))
