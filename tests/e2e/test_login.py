"""Browser login (issue 13) through the shipped Envoy config against the
real oidc-provider: login then protected page, replayed callback and
forged state refused, open redirects refused, logout, API client 401."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest

from harness import configs, oidc
from harness.browser import Browser
from harness.envoy import EnvoyInstance
from harness.httpc import Client
from harness.procs import free_port

SESSION_COOKIE = "__Host-gatehouse_session"


@pytest.fixture
def site(gatehouse_factory, oidc_provider_factory, idp, echo, tmp_path: Path):
    g_port, g_http = free_port(), free_port()
    envoy = EnvoyInstance(tmp_path / "envoy", gatehouse_port=g_port, upstream_port=echo.port,
                          gatehouse_http_port=g_http, name="envoy-login")
    base = f"http://127.0.0.1:{envoy.ports.listener}"
    op = oidc_provider_factory([oidc.client_spec("gatehouse", f"{base}/auth/callback")],
                               auto_consent=True)
    secret = op.client("gatehouse").write_secret(tmp_path / "client-secret")
    config = configs.single_issuer_config(idp)
    config["policy"] = {
        "default": "deny",
        "rules": [{"name": "ui", "match": {"path": {"prefix": "/ui/"}}, "login": "redirect",
                   "headers": ["user", "email"]}],
    }
    config["login"] = {
        "callback_url": f"{base}/auth/callback",
        "allowed_redirect_domains": ["127.0.0.1"],
        "providers": [{"name": "op", "issuer": op.issuer, "client_id": "gatehouse",
                       "client_secret_file": str(secret),
                       "claims": {"username": "sub", "email": "email", "groups": "groups"}}],
    }
    g = gatehouse_factory(config, name="gatehouse-login", port=g_port, http_port=g_http)
    g.wait_serving()
    yield {"base": base, "op": op, "client": Client(envoy.ports.listener)}
    envoy.stop()


def _identity(page) -> str:
    return dict(page.json()["header_list"]).get("x-auth-request-user")


def test_login_then_protected_page_then_logout(site):
    base = site["base"]
    browser = Browser()
    page = browser.login_at_provider(f"{base}/ui/page", "alice")
    assert page.status == 200, page.text
    assert page.url == f"{base}/ui/page"
    assert _identity(page) == "alice"
    assert browser.cookies.get(SESSION_COOKIE) is not None
    # The session identity for front ends.
    info = browser.get(f"{base}/auth/userinfo").json()
    assert info["sub"] == "alice" and info["csrf_token"]
    # An API client on the same route: 401, not a redirect.
    assert site["client"].get("/ui/page", headers={"Accept": "application/json"}).status == 401
    # Logout ends the session: the next navigation is sent to log in again.
    out = browser.get(f"{base}/auth/logout?rd=/ui/page", follow=False)
    assert out.status == 302
    again = browser.get(f"{base}/ui/page", follow=False)
    assert again.status == 302 and again.headers["location"].startswith("/auth/login?rd=")


def test_a_replayed_callback_is_refused(site):
    base = site["base"]
    browser = Browser()
    page = browser.login_at_provider(f"{base}/ui/page", "bob")
    assert page.status == 200
    callback = next(h.url for h in page.hops if h.url.startswith(f"{base}/auth/callback"))
    replay = Browser().get(callback)
    assert replay.status == 400
    assert "text/html" in replay.headers["content-type"]
    assert "expired or was already used" in replay.text
    api = site["client"].get(callback[len(base):], headers={"Accept": "application/json"})
    assert api.status == 400 and api.json()["error"] == "login_failed"


def test_a_forged_state_is_refused(site):
    page = Browser().get(f"{site['base']}/auth/callback?code=abc&state=forged")
    assert page.status == 400 and "start the login again" in page.text


@pytest.mark.parametrize("rd", ["//evil.org/", "/\\evil.org", "https:evil.org",
                                "javascript:alert(1)", "https://127.0.0.1@evil.org/",
                                "https://evil.org/"])
def test_open_redirects_are_refused(site, rd):
    page = Browser().get(f"{site['base']}/auth/login?rd={quote(rd, safe='')}", follow=False)
    assert page.status == 400, page.text
    assert "location" not in page.headers
