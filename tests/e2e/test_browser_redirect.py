"""Browsers get a 302, APIs a 401, from one config (issue 13), through a
real Envoy, both ways it can ask: gRPC (the shipped envoy/envoy.yaml) and
HTTP (`http_service`, as docs/integrations/envoy-http.md configures it).

- a browser navigation without a credential on a `login: redirect` rule:
  302 to `/auth/login?rd=<original URL>`, `Cache-Control: no-store`, and a
  stale session cookie expired with `Set-Cookie`;
- the same request as an API client (`Accept: application/json`, or with
  `Authorization`): the usual 401;
- CORS: a preflight reaches the upstream without a credential; a valid
  JWT from an origin that is not allowed is refused 403.

A stale session cookie on a navigation gets two `Set-Cookie` headers on
one denial (the session cleared, the login-binding cookie set): both arrive
through Envoy in both modes. Envoy adds every denial header that is not
marked `append` (it drops appended ones on a denial), so gatehouse never
marks them.
"""

from __future__ import annotations

import copy
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from harness import configs, expect
from harness.envoy import EnvoyInstance
from harness.httpc import Client
from test_http_check import http_mode_config

SESSION_COOKIE = "__Host-gatehouse_session"
BINDING_COOKIE = "__Host-gatehouse_login"
UI = "https://ui.example"
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def browser_config(idp) -> dict:
    config = configs.single_issuer_config(idp)
    config["policy"] = {
        "default": "deny",
        "rules": [
            {"name": "ui", "match": {"path": {"prefix": "/ui/"}}, "login": "redirect"},
            {"name": "api", "match": {"path": {"prefix": "/api/"}}},
        ],
    }
    config["cors"] = {"allowed_origins": [UI], "allow_credentials": False}
    return config


@pytest.fixture
def edges(gatehouse_factory, idp, echo, tmp_path: Path):
    """One gatehouse with the browser rules; Envoy in front of it over gRPC
    and over HTTP."""
    g = gatehouse_factory(browser_config(idp), name="gatehouse-browser")
    g.wait_serving()
    grpc = EnvoyInstance(tmp_path / "envoy-grpc", gatehouse_port=g.port, upstream_port=echo.port,
                         gatehouse_http_port=g.http_port, name="envoy-browser-grpc")
    source = http_mode_config(tmp_path / "envoy-http-source.yaml")
    http = EnvoyInstance(tmp_path / "envoy-http", gatehouse_port=g.port, upstream_port=echo.port,
                         gatehouse_http_port=g.http_port, name="envoy-browser-http", source=source)
    yield {"grpc": Client(grpc.port), "http": Client(http.port)}
    grpc.stop()
    http.stop()


MODES = ["grpc", "http"]


@pytest.mark.parametrize("mode", MODES)
def test_a_browser_without_credential_is_sent_to_log_in(edges, mode):
    client = edges[mode]
    target = "/ui/page?x=1&y=a%20b"
    r = client.get(target, headers=BROWSER)
    assert r.status == 302, r.describe()
    location = r.header("location")
    assert location and location.startswith("/auth/login?rd="), r.describe()
    # rd is percent-encoded: one parameter, which decodes to the original URL.
    query = urlsplit(location).query
    assert query.count("=") == 1 and "&" not in query, location
    rd = parse_qs(query)["rd"]
    assert rd == [f"http://127.0.0.1:{client.port}{target}"], location
    assert "no-store" in r.header("cache-control"), r.describe()
    # No session cookie presented, none cleared; the login-binding cookie set.
    cookies = r.headers_named("set-cookie")
    assert len(cookies) == 1, r.describe()
    _assert_binding_cookie(cookies[0])
    assert r.json()["error"] == "login_required"
    # A browser that has one keeps it: nothing is set.
    again = client.get(target, headers={**BROWSER, "Cookie": cookies[0].split(";")[0]})
    assert again.status == 302 and again.headers_named("set-cookie") == [], again.describe()


def _assert_binding_cookie(cookie: str) -> str:
    attributes = [a.strip() for a in cookie.split(";")]
    name, _, value = attributes[0].partition("=")
    assert name == BINDING_COOKIE, cookie
    assert len(value) == 43 and all(c.isalnum() or c in "-_" for c in value), cookie
    assert {"Max-Age=600", "Path=/", "Secure", "HttpOnly", "SameSite=Lax"} <= set(attributes), cookie
    return value


@pytest.mark.parametrize("mode", MODES)
def test_a_stale_session_cookie_is_expired_on_the_redirect(edges, mode):
    r = edges[mode].get("/ui/page", headers={**BROWSER, "Cookie": f"theme=dark; {SESSION_COOKIE}=stale-id"})
    assert r.status == 302, r.describe()
    # Two Set-Cookie headers on one denial, both through Envoy: the stale
    # session cleared, the login binding set.
    cookies = r.headers_named("set-cookie")
    assert len(cookies) == 2, r.describe()
    attributes = [a.strip() for a in cookies[0].split(";")]
    assert attributes[0] == f"{SESSION_COOKIE}="
    assert {"Max-Age=0", "Path=/", "Secure", "HttpOnly"} <= set(attributes), cookies
    _assert_binding_cookie(cookies[1])


@pytest.mark.parametrize("mode", MODES)
def test_api_clients_on_the_same_route_get_401(edges, mode):
    client = edges[mode]
    expect.no_credential(client.get("/ui/page", headers={"Accept": "application/json"}))
    expect.no_credential(client.get("/ui/page", headers={"Accept": "*/*"}))
    expect.no_credential(client.get("/ui/page", headers={**BROWSER, "X-Requested-With": "XMLHttpRequest"}))
    # Its own (broken) credential: logging in would not fix it.
    expect.invalid_token(client.get("/ui/page", headers={**BROWSER, "Authorization": "Bearer not.a.jwt"}))
    # A form POST is not a navigation: 401, not a redirect that loses the body.
    expect.no_credential(client.request("POST", "/ui/page", headers=BROWSER, body=b"a=1"))
    # A rule without `login: redirect`: 401 for browsers too.
    expect.no_credential(client.get("/api/items", headers=BROWSER))


@pytest.mark.parametrize("mode", MODES)
def test_preflight_reaches_the_upstream_and_foreign_origins_are_refused(edges, mode, mint):
    client = edges[mode]
    preflight = {"Origin": UI, "Access-Control-Request-Method": "DELETE",
                 "Access-Control-Request-Headers": "authorization"}
    seen = expect.allowed(client.request("OPTIONS", "/api/items", headers=preflight))
    assert seen["method"] == "OPTIONS"
    assert "x-auth-request-user" not in seen["headers"]
    refused = client.request("OPTIONS", "/api/items", headers={**preflight, "Origin": "https://evil.example"})
    expect.denial(refused, 403, "access_denied")

    token = mint.token()
    expect.allowed(client.get("/api/items", token=token, headers={"Origin": UI}))
    expect.allowed(client.get("/api/items", token=token))  # no Origin: not a CORS request
    own = f"http://127.0.0.1:{client.port}"
    expect.allowed(client.get("/api/items", token=token, headers={"Origin": own}))
    body = expect.denial(client.get("/api/items", token=token, headers={"Origin": "https://evil.example"}),
                         403, "access_denied")
    assert "https://evil.example" in body["error_description"]
