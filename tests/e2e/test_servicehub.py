"""Per-user routing (issue 14, ServiceHub): the shipped envoy/servicehub.yaml
in front of two per-user apps, gatehouse with browser login (the real
oidc-provider) and a JWT issuer.

Gatehouse's allowed response sets `X-Auth-Request-User`; Envoy's ext_authz
has `clear_route_cache: true`, so the router matches again on that header:
alice reaches app_alice, bob app_bob, a user with no app Envoy's 403. A
client's own `X-Auth-Request-User` (any case, duplicated, padded, with
underscores, or malformed) never chooses the app, and a request gatehouse
refuses reaches no app at all. Each app is an echo server that names
itself, and counts the requests it received, so "never reached" is
checked at the app, not inferred from a status code.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from envoy_bin import envoy_binary
from harness import configs, oidc
from harness.browser import Browser
from harness.envoy import EnvoyInstance
from harness.gatehouse import GatehouseInstance, add_gatehouse_log
from harness.httpc import Client, Response
from harness.procs import free_port, register_log
from harness.servers import ECHO_MARKER, EchoServer, _EchoHandler

REPO = Path(__file__).resolve().parents[2]
SERVICEHUB = REPO / "envoy" / "servicehub.yaml"
SESSION_COOKIE = "__Host-gatehouse_session"
NO_APP_BODY = "No application is assigned to this user.\n"
APP_HEADER = "x-e2e-app"
USER = "x-auth-request-user"
USERS = ("alice", "bob", "carol")  # carol has no app


# --- two per-user apps ----------------------------------------------------------


class _NamedEchoHandler(_EchoHandler):
    """The echo report, plus the app's name in the body and a header."""

    def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        name = self.server.owner.name  # type: ignore[attr-defined]
        if isinstance(body, dict):
            body = dict(body, app=name)
        super()._send_json(status, body, dict(headers or {}, **{APP_HEADER: name}))


class NamedApp(EchoServer):
    def __init__(self, name: str, log_path: Path):
        self.name = name
        self.requests: list[dict] = []
        super(EchoServer, self).__init__(_NamedEchoHandler, log_path)


# --- the hub ----------------------------------------------------------------------


pytestmark = pytest.mark.both_filters


@pytest.fixture(scope="module")
def hub(tmp_path_factory, oidc_provider_module_factory, idp, filter_mode):
    """Envoy on envoy/servicehub.yaml, gatehouse (login + JWT), two apps.
    In process: gatehouse's module in front of the example's ext_authz
    (`envoy_config.add_module`, with `clear_route_cache`), deciding the
    bearer JWTs in Envoy's worker and handing the browser sessions (which
    need the store) to the service."""
    work = tmp_path_factory.mktemp(f"servicehub-{filter_mode}")
    apps = {}
    for name in ("app_alice", "app_bob"):
        apps[name] = NamedApp(name, work / f"{name}.log")
        register_log(name, work / f"{name}.log")
    g_port, g_http, listener = free_port(), free_port(), free_port()
    base = f"http://127.0.0.1:{listener}"
    op = oidc_provider_module_factory([oidc.client_spec(
        "gatehouse", f"{base}/auth/callback",
        backchannel_logout_uri=f"{base}/auth/backchannel-logout")], auto_consent=True,
        groups={u: ["staff"] for u in USERS})
    secret = op.client("gatehouse").write_secret(work / "client-secret")
    config = configs.single_issuer_config(idp)
    config["policy"] = {
        "default": "deny",
        "rules": [
            # A probe for the safety argument: an anonymous rule lets a
            # request through with no X-Auth-Request-User set (gatehouse only
            # removes the client's copy), and the app routes must still not
            # be reachable through it.
            {"name": "open", "match": {"path": {"prefix": "/open/"}}, "auth": "anonymous"},
            # The hub: everything else needs a login (or a bearer JWT) and
            # carries the user's name to Envoy's router.
            {"name": "apps", "match": {"path": {"prefix": "/"}}, "login": "redirect",
             "headers": ["user"]},
        ],
    }
    config["login"] = configs.login(base, op, secret, groups_scope=True, allowed_groups=["staff"])
    gatehouse = GatehouseInstance(work / "gatehouse", config, name="gatehouse-servicehub",
                                  port=g_port, http_port=g_http)
    envoy = None
    try:
        gatehouse.wait_serving()
        inproc = filter_mode == "in_process"
        envoy = EnvoyInstance(work / "envoy", gatehouse_port=g_port, upstream_port=0,
                              gatehouse_http_port=g_http, name="envoy-servicehub",
                              source=SERVICEHUB, listener_port=listener,
                              clusters={name: app.port for name, app in apps.items()},
                              module_config=gatehouse.config_path if inproc else None,
                              module_settings={"clear_route_cache": True} if inproc else None)
        if inproc:
            add_gatehouse_log(envoy.process.log_path)
        yield {"base": base, "envoy": envoy, "client": Client(envoy.port), "apps": apps,
               "mode": filter_mode}
    finally:
        gatehouse.stop()
        if envoy is not None:
            envoy.stop()
        for app in apps.values():
            app.close()


@pytest.fixture(scope="module")
def browsers(hub) -> dict[str, Browser]:
    """alice, bob and carol, each logged in once through Envoy."""
    out = {}
    for user in USERS:
        browser = Browser()
        page = browser.login_at_provider(f"{hub['base']}/home", user)
        assert browser.cookies.get(SESSION_COOKIE) is not None, (user, page.status, page.text)
        out[user] = browser
    return out


@pytest.fixture
def counts(hub):
    """Requests each app has received so far; `delta()` what a test added."""
    apps = hub["apps"]
    before = {name: len(app.requests) for name, app in apps.items()}

    class Counts:
        @staticmethod
        def delta() -> dict[str, int]:
            return {name: len(app.requests) - before[name] for name, app in apps.items()}

    return Counts()


def _app_of(r: Response) -> str | None:
    """The app that answered, or None (Envoy or gatehouse answered)."""
    return r.header(APP_HEADER)


def _reached(r: Response, app: str, user: str) -> dict:
    assert r.status == 200 and _app_of(r) == app, f"expected {app}: {r.describe()}"
    seen = r.json()
    users = [v for k, v in seen["header_list"] if k == USER]
    assert users == [user], f"{app} got X-Auth-Request-User {users}: {r.describe()}"
    return seen


def _cookie(hub, browser: Browser) -> str:
    header = browser.cookies.header_for(f"{hub['base']}/x")
    assert header and SESSION_COOKIE in header
    return header


# --- the example ----------------------------------------------------------------


def test_servicehub_example_validates():
    r = subprocess.run([str(envoy_binary()), "--mode", "validate", "-c", str(SERVICEHUB)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"configuration '{SERVICEHUB}' OK" in r.stdout + r.stderr


# --- who reaches which app ------------------------------------------------------------


def test_browser_users_reach_their_own_app(hub, browsers, counts):
    base = hub["base"]
    for user, app in (("alice", "app_alice"), ("bob", "app_bob")):
        page = browsers[user].get(f"{base}/home/notebook?x=1")
        assert page.status == 200, page.text
        assert page.headers.get(APP_HEADER) == app
        body = page.json()
        assert body["app"] == app and body["path"] == "/home/notebook?x=1"
        assert dict(body["header_list"]).get(USER) == user
        # Gatehouse's session cookie stays at the edge.
        assert SESSION_COOKIE not in body["headers"].get("cookie", "")
    assert counts.delta() == {"app_alice": 1, "app_bob": 1}


def test_login_lands_on_the_users_own_app(hub):
    """The first navigation: redirected to log in, back to the page, which
    is now served by the user's app."""
    browser = Browser()
    page = browser.login_at_provider(f"{hub['base']}/home/start", "bob")
    assert page.status == 200 and page.url == f"{hub['base']}/home/start", page.text
    assert page.headers.get(APP_HEADER) == "app_bob"
    assert page.hops[0].status == 302
    assert page.hops[0].location.startswith("/auth/login?rd=")


def test_api_clients_with_bearer_jwts_reach_their_own_app(hub, mint, counts):
    client = hub["client"]
    checks = "servicehub.ext_authz.ok"
    before = hub["envoy"].stats(f"http.{checks}").get(f"http.{checks}", 0)
    for user, app in (("alice", "app_alice"), ("bob", "app_bob")):
        token = mint.token(identity={"sub": f"{user}-sub", "preferred_username": user})
        _reached(client.get("/api/v1/x", token=token, headers={"Accept": "application/json"}),
                 app, user)
    assert counts.delta() == {"app_alice": 1, "app_bob": 1}
    if hub["mode"] == "in_process":
        # Decided in Envoy's worker (the module clears the route cache):
        # the service was not asked.
        assert hub["envoy"].stats(f"http.{checks}").get(f"http.{checks}", 0) == before


# Forged user headers. Each is sent by alice, logged in (cookie) or with her
# JWT, asking for bob's app. (name, value) pairs, sent as given.
FORGED: dict[str, list[tuple[str, str]]] = {
    "canonical": [("X-Auth-Request-User", "bob")],
    "lower case": [("x-auth-request-user", "bob")],
    "upper case": [("X-AUTH-REQUEST-USER", "bob")],
    "padded value": [("X-Auth-Request-User", "   bob   ")],
    "duplicated": [("X-Auth-Request-User", "bob"), ("x-auth-request-user", "bob")],
    "own name then bob": [("X-Auth-Request-User", "alice"), ("X-Auth-Request-User", "bob")],
    "underscores": [("X_Auth_Request_User", "bob")],
    "with other identity headers": [("X-Auth-Request-User", "bob"),
                                    ("X-Auth-Request-Email", "bob@example.org"),
                                    ("X-Auth-Request-Groups", "staff")],
}


@pytest.mark.parametrize("forged", FORGED.values(), ids=FORGED.keys())
def test_a_forged_user_header_from_a_browser_reaches_only_the_own_app(hub, browsers, counts, forged):
    cookie = _cookie(hub, browsers["alice"])
    r = hub["client"].get("/home/x", headers=[("Cookie", cookie)] + forged)
    seen = _reached(r, "app_alice", "alice")
    leaked = [(k, v) for k, v in seen["header_list"] if k.startswith("x-auth-request-") and k != USER]
    assert leaked == [], f"client identity headers reached the app: {leaked}"
    assert counts.delta() == {"app_alice": 1, "app_bob": 0}


@pytest.mark.parametrize("forged", FORGED.values(), ids=FORGED.keys())
def test_a_forged_user_header_with_a_jwt_reaches_only_the_own_app(hub, mint, counts, forged):
    token = mint.token(identity={"sub": "alice-sub", "preferred_username": "alice"})
    r = hub["client"].get("/api/x", token=token, headers=forged)
    _reached(r, "app_alice", "alice")
    assert counts.delta() == {"app_alice": 1, "app_bob": 0}


def _raw(hub, head: bytes) -> bytes:
    """Sends a hand-written HTTP/1.1 request head; returns the response's
    status line and headers (headers no client library would send)."""
    with socket.create_connection(("127.0.0.1", hub["envoy"].port), timeout=5) as s:
        s.sendall(head)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


@pytest.mark.parametrize("line", [b"X-Auth-Request-User : bob", b"X-Auth-Request-User\t: bob"],
                         ids=["space before colon", "tab before colon"])
def test_a_malformed_user_header_is_refused_at_the_edge(hub, browsers, counts, line):
    cookie = _cookie(hub, browsers["alice"]).encode()
    head = (b"GET /home/x HTTP/1.1\r\nHost: hub\r\nCookie: " + cookie + b"\r\n"
            + line + b"\r\nConnection: close\r\n\r\n")
    response = _raw(hub, head)
    assert response.startswith(b"HTTP/1.1 400 "), response[:300]
    assert ECHO_MARKER.encode() not in response.lower()
    assert counts.delta() == {"app_alice": 0, "app_bob": 0}


def test_a_folded_user_header_is_part_of_the_previous_header(hub, browsers, counts):
    """An obsolete line folding (a line starting with a space) continues
    the header before it: Envoy joins it into that value, so it never
    becomes an X-Auth-Request-User of its own."""
    cookie = _cookie(hub, browsers["alice"]).encode()
    head = (b"GET /home/x HTTP/1.1\r\nHost: hub\r\nCookie: " + cookie + b"\r\n"
            + b"X-Note: hello\r\n X-Auth-Request-User: bob\r\nConnection: close\r\n\r\n")
    response = _raw(hub, head)
    assert response.startswith(b"HTTP/1.1 200 "), response[:300]
    assert f"{APP_HEADER}: app_alice".encode() in response.lower(), response[:600]
    assert counts.delta() == {"app_alice": 1, "app_bob": 0}
    seen = hub["apps"]["app_alice"].requests[-1]
    assert [v for k, v in seen["header_list"] if k == USER] == ["alice"]
    assert "bob" in seen["headers"]["x-note"]


def test_unauthenticated_requests_reach_no_app(hub, mint, keys, counts):
    client, base = hub["client"], hub["base"]
    claim = [("X-Auth-Request-User", "alice")]
    # A browser: sent to log in.
    page = Browser().get(f"{base}/home/x", headers={"X-Auth-Request-User": "alice"}, follow=False)
    assert page.status == 302 and page.headers["location"].startswith("/auth/login?rd=")
    # An API client: 401 from gatehouse, no credential or a bad one.
    r = client.get("/api/x", headers=claim + [("Accept", "application/json")])
    assert r.status == 401 and r.layer == "gatehouse", r.describe()
    stranger = mint.token(key=keys.stranger, identity={"sub": "x", "preferred_username": "bob"})
    r = client.get("/api/x", token=stranger, headers=[("X-Auth-Request-User", "bob")])
    assert r.status == 401 and r.layer == "gatehouse", r.describe()
    # A session cookie that is not a session.
    r = client.get("/home/x", headers=[("Cookie", f"{SESSION_COOKIE}=forged")] + claim)
    assert r.status in (302, 401) and _app_of(r) is None, r.describe()
    assert counts.delta() == {"app_alice": 0, "app_bob": 0}


def test_a_user_without_an_app_gets_envoys_refusal(hub, browsers, mint, counts):
    page = browsers["carol"].get(f"{hub['base']}/home/x", headers={"X-Auth-Request-User": "bob"})
    assert page.status == 403 and page.text == NO_APP_BODY, page.text
    assert page.headers.get(APP_HEADER) is None
    token = mint.token(identity={"sub": "carol-sub", "preferred_username": "carol"})
    r = hub["client"].get("/api/x", token=token, headers=[("X-Auth-Request-User", "alice")])
    assert r.status == 403 and r.text == NO_APP_BODY, r.describe()
    assert counts.delta() == {"app_alice": 0, "app_bob": 0}


def test_an_anonymous_rule_cannot_be_used_to_pick_an_app(hub, counts):
    """Gatehouse allows /open/ without a credential and sets no user; it
    removes the client's X-Auth-Request-User. Envoy must route again after
    that removal too: the forged header chose app_bob's route before the
    check, and must not be what the request is sent on."""
    r = hub["client"].get("/open/x", headers=[("X-Auth-Request-User", "bob")])
    assert r.status == 403 and r.text == NO_APP_BODY, r.describe()
    assert counts.delta() == {"app_alice": 0, "app_bob": 0}


def test_after_logout_the_app_is_out_of_reach(hub, counts):
    base = hub["base"]
    browser = Browser()
    assert browser.login_at_provider(f"{base}/home", "alice").headers.get(APP_HEADER) == "app_alice"
    cookie = _cookie(hub, browser)
    assert browser.get(f"{base}/auth/logout?rd=/home", follow=False).status == 302
    again = browser.get(f"{base}/home", follow=False)
    assert again.status == 302 and again.headers["location"].startswith("/auth/login?rd=")
    # The old cookie, replayed with a forged header: no app either.
    r = hub["client"].get("/home", headers=[("Cookie", cookie), ("X-Auth-Request-User", "alice")])
    assert r.status in (302, 401) and _app_of(r) is None, r.describe()
    assert counts.delta() == {"app_alice": 1, "app_bob": 0}
