"""Browser login (issue 13) through the shipped Envoy config against the
real oidc-provider: login then protected page, replayed callback and
forged state refused, a callback carried to another browser refused (the
login-binding cookie), open redirects refused, logout, API client 401,
and OIDC Back-Channel Logout: sent by the provider itself, and logout
tokens minted here with jwcrypto (valid, replayed, forged, not a logout
token)."""

from __future__ import annotations

from pathlib import Path
import json
import time
import uuid
from urllib.parse import parse_qsl, quote, urlencode, urljoin, urlsplit

import pytest

from jwcrypto import jwk, jwt

from harness import configs, oidc, secret_registry
from harness.browser import Browser
from harness.envoy import EnvoyInstance
from harness.httpc import Client
from harness.procs import free_port

SESSION_COOKIE = "__Host-gatehouse_session"
BINDING_COOKIE = "__Host-gatehouse_login"
LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"


@pytest.fixture
def site(gatehouse_factory, oidc_provider_factory, idp, echo, tmp_path: Path):
    g_port, g_http = free_port(), free_port()
    envoy = EnvoyInstance(tmp_path / "envoy", gatehouse_port=g_port, upstream_port=echo.port,
                          gatehouse_http_port=g_http, name="envoy-login")
    base = f"http://127.0.0.1:{envoy.ports.listener}"
    op = oidc_provider_factory([oidc.client_spec(
        "gatehouse", f"{base}/auth/callback",
        backchannel_logout_uri=f"{base}/auth/backchannel-logout")], auto_consent=True,
        groups={u: ["staff"] for u in ("alice", "bob", "carol", "dave", "mallory")})
    secret = op.client("gatehouse").write_secret(tmp_path / "client-secret")
    config = configs.single_issuer_config(idp)
    config["policy"] = {
        "default": "deny",
        "rules": [{"name": "ui", "match": {"path": {"prefix": "/ui/"}}, "login": "redirect",
                   "headers": ["user", "email"]}],
    }
    config["login"] = configs.login(base, op, secret, groups_scope=True, allowed_groups=["staff"])
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


def _callback_url_unvisited(browser: Browser, base: str, user: str) -> str:
    """Starts a login in `browser` and signs in at the provider, but stops
    at the redirect to gatehouse's callback: the URL an attacker would
    send a victim (login CSRF)."""
    page = browser.get(f"{base}/auth/login?rd=/ui/page")
    page = browser.submit(page.form(field_value=("prompt", "login")),
                          {"login": user, "password": "pw"}, follow=False)
    url = page.url
    for _ in range(6):
        location = page.headers.get("location")
        assert location, f"no redirect at {url}: {page.status}"
        url = urljoin(url, location)
        if url.startswith(f"{base}/auth/callback"):
            secret_registry.record(url, "unvisited callback URL")
            return url
        page = browser.get(url, follow=False)
    raise AssertionError("the provider never redirected to the callback")


def test_a_callback_carried_to_another_browser_is_refused(site):
    base = site["base"]
    attacker = Browser()
    callback = _callback_url_unvisited(attacker, base, "mallory")
    assert attacker.cookies.get(BINDING_COOKIE) is not None
    # The victim has a binding of its own (any navigation to a login page
    # sets one), which is not the attacker's.
    victim = Browser()
    assert victim.get(f"{base}/ui/page", follow=False).status == 302
    assert victim.cookies.get(BINDING_COOKIE) is not None
    page = victim.get(callback, follow=False)
    assert page.status == 400, page.text
    assert "started in another browser" in page.text
    assert victim.cookies.get(SESSION_COOKIE) is None
    # Without any binding cookie: refused the same way.
    assert Browser().get(callback, follow=False).status == 400
    # The state was spent by the first refusal: the attacker cannot use it either.
    again = attacker.get(callback, follow=False)
    assert again.status == 400 and "expired or was already used" in again.text
    assert attacker.cookies.get(SESSION_COOKIE) is None


def _logged_in(base: str, user: str) -> Browser:
    browser = Browser()
    page = browser.login_at_provider(f"{base}/ui/page", user)
    assert page.status == 200 and _identity(page) == user, page.text
    return browser


def _session_live(browser: Browser, base: str) -> bool:
    page = browser.get(f"{base}/ui/page", follow=False)
    assert page.status in (200, 302), page.text
    return page.status == 200


def test_the_provider_ends_sessions_by_back_channel(site):
    base, op = site["base"], site["op"]
    alice_1, alice_2, bob = (_logged_in(base, u) for u in ("alice", "alice", "bob"))
    # The provider ends alice's sessions: one logout token (with its sid)
    # per provider session, posted to gatehouse through Envoy.
    result = op.end_session_for("alice")
    assert result["sessions"] == 2 and result["errors"] == [], result
    assert result["notified"] == ["gatehouse", "gatehouse"], result
    assert not _session_live(alice_1, base)
    assert not _session_live(alice_2, base)
    assert _session_live(bob, base), "another user's session is untouched"
    # A logout token with `sub` only ends every session of that user.
    carol = _logged_in(base, "carol")
    assert op.backchannel_logout("gatehouse", "carol")["notified"] == ["gatehouse"]
    assert not _session_live(carol, base)
    assert _session_live(bob, base)


def _logout_token(op, key=None, alg="RS256", typ="logout+jwt", **claims) -> str:
    now = int(time.time())
    body = {"iss": op.issuer, "aud": "gatehouse", "iat": now, "exp": now + 120,
            "jti": str(uuid.uuid4()), "sub": "dave", "events": {LOGOUT_EVENT: {}}}
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    key = key or op.signing_key
    header = {"alg": alg, "typ": typ}
    if key.get("kid"):
        header["kid"] = key["kid"]
    token = jwt.JWT(header=header, claims=json.dumps(body))
    token.make_signed_token(key)
    text = token.serialize()
    secret_registry.record(text, "minted logout token")
    return text


def _post_logout(site, token: str | None):
    form = b"" if token is None else f"logout_token={token}".encode()
    return site["client"].request("POST", "/auth/backchannel-logout", body=form,
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})


def test_logout_tokens_minted_independently_are_verified(site):
    base, op = site["base"], site["op"]
    dave = _logged_in(base, "dave")
    # Refused, each with 400 and an OAuth error, and the session kept.
    impostor = jwk.JWK.generate(kty="RSA", size=2048, kid=op.signing_key["kid"])
    secret = jwk.JWK(kty="oct", k=jwk.base64url_encode(op.client("gatehouse").client_secret.encode()))
    refused = {
        "no token": None,
        "not a JWT": "not-a-jwt",
        "another key, same kid": _logout_token(op, key=impostor),
        "HS256 with the client secret": _logout_token(op, key=secret, alg="HS256"),
        "another audience": _logout_token(op, aud="someone-else"),
        "another issuer": _logout_token(op, iss="http://127.0.0.1:1"),
        "a nonce (an ID token)": _logout_token(op, nonce="n"),
        "no logout event": _logout_token(op, events={}),
        "neither sub nor sid": _logout_token(op, sub=None),
        "expired": _logout_token(op, iat=int(time.time()) - 900, exp=int(time.time()) - 600),
        "typed as an access token": _logout_token(op, typ="at+jwt"),
    }
    for why, token in refused.items():
        r = _post_logout(site, token)
        assert r.status == 400, (why, r.describe())
        assert r.json()["error"] == "invalid_request", why
        assert "no-store" in r.header("cache-control"), why
    assert _session_live(dave, base), "no refused token ended the session"
    # A valid one ends it; the same token again is refused (its jti is spent).
    token = _logout_token(op)
    assert _post_logout(site, token).status == 200
    assert not _session_live(dave, base)
    replay = _post_logout(site, token)
    assert replay.status == 400 and "already used" in replay.json()["error_description"]


def test_a_user_outside_allowed_groups_gets_no_session(site):
    page = Browser().login_at_provider(f"{site['base']}/ui/page", "eve")
    assert page.status == 403, page.text
    assert "not allowed to log in here" in page.text
    assert "text/html" in page.headers["content-type"]


def test_a_nonce_changed_on_the_way_to_the_provider_is_refused(site):
    """The ID token must carry the nonce this login stored: an
    authorization request whose nonce was swapped (PKCE and state intact)
    yields a valid code whose ID token gatehouse refuses."""
    base = site["base"]
    browser = Browser()
    start = browser.get(f"{base}/auth/login?rd=/ui/page", follow=False)
    parts = urlsplit(start.headers["location"])
    query = [(k, "swapped-nonce" if k == "nonce" else v) for k, v in parse_qsl(parts.query)]
    assert ("nonce", "swapped-nonce") in query
    page = browser.login_at_provider(parts._replace(query=urlencode(query)).geturl(), "alice")
    assert page.status == 400, page.text
    assert "ID token is not valid" in page.text and "nonce" in page.text.lower()
    assert browser.cookies.get(SESSION_COOKIE) is None
