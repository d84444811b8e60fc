"""Browser sessions shared by two replicas on one real Redis (issue 13):
two gatehouses (harness/replicas.py: one `store.redis`, one
`store.encryption_key_file`), each behind its own Envoy (the shipped
envoy/envoy.yaml), one real oidc-provider whose redirect URI is Envoy A's
/auth/callback.

The scripted browser logs in through Envoy A. Cookies are scoped by host,
not by port, so the same browser sends the session cookie to Envoy B
(another port on 127.0.0.1) too: B lets it through with the same identity
and reports the same session on /auth/userinfo. A logout through B ends
the session on A as well, within `login.session.cache_ttl` (A is made to
cache the session just before, so the poll measures that bound). What
Redis holds does not contain the session id in clear.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness import oidc
from harness.browser import BROWSER_HEADERS, Browser
from harness.httpc import Response
from harness.procs import wait_until
from harness.replicas import KEY_PREFIX, Pair, start_pair

SESSION_COOKIE = "__Host-gatehouse_session"
CACHE_TTL = 0.5  # login.session.cache_ttl, seconds
USER = "erin"


class LoginSetup:
    """The `configure` hook of start_pair: starts the provider once (its
    redirect URI is Envoy A's callback) and adds the `login` section and a
    `/ui/` login rule to each replica's config."""

    def __init__(self, oidc_provider_factory, tmp_path: Path):
        self.factory, self.tmp_path = oidc_provider_factory, tmp_path
        self.op: oidc.OidcProvider | None = None
        self.secret: Path | None = None

    def __call__(self, cfg: dict, base_a: str) -> None:
        if self.op is None:
            self.op = self.factory([oidc.client_spec("gatehouse", f"{base_a}/auth/callback")],
                                   auto_consent=True, access_token_ttl=3600, id_token_ttl=3600)
            self.secret = self.op.client("gatehouse").write_secret(self.tmp_path / "client-secret")
        cfg["policy"]["rules"] = [
            {"name": "ui", "match": {"path": {"prefix": "/ui/"}}, "login": "redirect",
             "headers": ["user", "email"]},
        ] + cfg["policy"]["rules"]
        cfg["login"] = {
            "callback_url": f"{base_a}/auth/callback",
            "allowed_redirect_domains": ["127.0.0.1"],
            "providers": [{"name": "op", "issuer": self.op.issuer, "client_id": "gatehouse",
                           "client_secret_file": str(self.secret),
                           "claims": {"username": "sub", "email": "email", "groups": "groups"}}],
            "session": {"cache_ttl": f"{int(CACHE_TTL * 1000)}ms"},
        }


@pytest.fixture
def login_pair(redis_server, gatehouse_factory, envoy_factory, oidc_provider_factory, echo, keys,
               idp, discovery_idp, rotating_idp, trusted_proxies, tmp_path) -> Pair:
    return start_pair(redis_server, gatehouse_factory, envoy_factory, echo, keys,
                      (idp, discovery_idp, rotating_idp), trusted_proxies,
                      configure=LoginSetup(oidc_provider_factory, tmp_path))


def user_of(page) -> str | None:
    return page.json()["headers"].get("x-auth-request-user")


def navigate(client, path: str, cookie: str) -> Response:
    """A browser navigation with exactly this session cookie."""
    return client.get(path, headers={"Accept": BROWSER_HEADERS["Accept"], "Cookie": cookie})


def test_a_session_made_on_one_replica_works_and_ends_on_the_other(login_pair: Pair):
    a, b = login_pair.a, login_pair.b
    base_a, base_b = a.envoy.base_url, b.envoy.base_url
    browser = Browser()

    page = browser.login_at_provider(f"{base_a}/ui/page", USER)
    assert page.status == 200 and page.url == f"{base_a}/ui/page", page.text
    assert user_of(page) == USER
    cookie = browser.cookies.get(SESSION_COOKIE)
    assert cookie is not None, browser.cookies.refused
    session = f"{SESSION_COOKIE}={cookie.value}"

    # The same browser on Envoy B: the cookie goes along (host, not port),
    # and B knows the session from Redis: no detour through /auth/login.
    on_b = browser.get(f"{base_b}/ui/other")
    assert on_b.status == 200 and on_b.hop_urls() == [f"{base_b}/ui/other"], on_b.hop_urls()
    assert user_of(on_b) == USER
    info_a = browser.get(f"{base_a}/auth/userinfo").json()
    info_b = browser.get(f"{base_b}/auth/userinfo").json()
    same = ("provider", "sub", "email", "csrf_token")
    assert info_b["sub"] == USER and info_a["csrf_token"], info_a
    assert {k: info_b[k] for k in same} == {k: info_a[k] for k in same}, (info_a, info_b)

    # Redis holds the session, but not its id in clear.
    db = login_pair.redis.client()
    keys = db.keys("*")
    assert keys and all(k.startswith(KEY_PREFIX.encode()) for k in keys), keys
    secret = cookie.value.encode()
    assert not any(secret in k for k in keys), "the session id is a Redis key in clear"
    for key in keys:
        if db.type(key) == b"string":
            assert secret not in db.get(key), key

    # A has just read the session (cached for up to CACHE_TTL); log out on B.
    assert navigate(a.client, "/ui/page", session).status == 200
    out = browser.get(f"{base_b}/auth/logout?rd=/ui/page", follow=False)
    assert out.status == 302, out.text
    logged_out = time.monotonic()
    assert browser.cookies.get(SESSION_COOKIE) is None, "logout did not clear the cookie"
    # B refuses the old cookie at once (it ended the session itself).
    gone_b = navigate(b.client, "/ui/page", session)
    assert gone_b.status == 302 and gone_b.header("location").startswith("/auth/login?rd="), \
        gone_b.describe()

    def refused_on_a() -> float | None:
        """When the probe that A refused was sent (None while A allows)."""
        sent = time.monotonic()
        r = navigate(a.client, "/ui/page", session)
        assert r.status in (200, 302), r.describe()
        return sent if r.status == 302 else None

    refused_at = wait_until("the session ends on replica A", refused_on_a, CACHE_TTL + 2.0,
                            interval=0.05)
    # A's cached entry was at most cache_ttl old at the logout; the slack
    # covers one poll interval and the probe before it.
    took = refused_at - logged_out
    assert took <= CACHE_TTL + 0.35, f"replica A honoured the session {took:.2f}s after the logout"
    r = navigate(a.client, "/ui/page", session)
    assert r.header("location").startswith("/auth/login?rd="), r.describe()
    # As an API client: 401, and /auth/userinfo knows no session either.
    assert a.client.get("/ui/page", headers={"Accept": "application/json",
                                             "Cookie": session}).status == 401
    assert a.client.get("/auth/userinfo", headers={"Cookie": session}).status == 401
    print(f"logout on B took effect on A after {took:.3f}s (cache_ttl {CACHE_TTL}s)")
