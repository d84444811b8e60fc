"""CORS and CSRF with a real browser session (issue 13), through Envoy (the
shipped envoy/envoy.yaml) against the real oidc-provider. The scripted
browser (harness/browser.py) logs in once for the module; the requests
below then carry its session cookie (`__Host-gatehouse_session`) as the
browser would, plus whatever Origin, Referer or X-CSRF-Token each case
needs, sent byte for byte with harness.httpc.

Config: `cors.allowed_origins: [https://ui.example]` with
`allow_credentials: true` (a listed origin may send the session cookie);
`/ui/` is a `login: redirect` rule, `/api/` a plain rule (both accept the
session cookie and bearer JWTs).

What src/check/authz/origin.rs and csrf.rs document, end to end:
- a preflight (OPTIONS + Origin + Access-Control-Request-Method) from an
  allowed origin reaches the upstream without any credential, also on the
  login-protected route (no redirect to log in);
- a credentialed request whose Origin is neither its own nor listed: 403;
- a state-changing request (POST, PUT, PATCH, DELETE) authenticated by the
  session cookie alone needs proof of its origin: its own Origin, a listed
  Origin, the same via Referer when there is no Origin, or the
  `X-CSRF-Token` header equal to the session's `csrf_token` (from
  GET /auth/userinfo). Nothing, a foreign or `null` Origin, a foreign
  Referer, or a wrong token: 403 `access_denied`;
- GET needs no proof; a request authenticated by a bearer JWT is not
  subject to CSRF (the browser does not attach it on its own), even when
  the session cookie rides along.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from harness import configs, expect, oidc
from harness.browser import Browser
from harness.envoy import EnvoyInstance
from harness.gatehouse import GatehouseInstance
from harness.httpc import Client, Response
from harness.procs import free_port

SESSION_COOKIE = "__Host-gatehouse_session"
UI = "https://ui.example"
EVIL = "https://evil.example"
USER = "dave"  # the session's user; bearer JWTs from `mint` are "alice"


@pytest.fixture(scope="module")
def site(tmp_path_factory, oidc_provider_module_factory, idp, echo) -> Iterator[dict]:
    """Envoy + gatehouse + oidc-provider for the module, and one logged-in
    browser session."""
    tmp = tmp_path_factory.mktemp("login-web")
    g_port, g_http = free_port(), free_port()
    envoy = EnvoyInstance(tmp / "envoy", gatehouse_port=g_port, upstream_port=echo.port,
                          gatehouse_http_port=g_http, name="envoy-login-web")
    base = f"http://127.0.0.1:{envoy.port}"
    op = oidc_provider_module_factory([oidc.client_spec("gatehouse", f"{base}/auth/callback")],
                                      auto_consent=True)
    secret = op.client("gatehouse").write_secret(tmp / "client-secret")
    config = configs.single_issuer_config(idp)
    config["policy"] = {
        "default": "deny",
        "rules": [
            {"name": "ui", "match": {"path": {"prefix": "/ui/"}}, "login": "redirect",
             "headers": ["user"]},
            {"name": "api", "match": {"path": {"prefix": "/api/"}}, "headers": ["user"]},
        ],
    }
    config["cors"] = {"allowed_origins": [UI], "allow_credentials": True}
    config["login"] = configs.login(base, op, secret)
    g = GatehouseInstance(tmp / "gatehouse", config, name="gatehouse-login-web", port=g_port,
                          http_port=g_http)
    try:
        g.wait_serving()
        browser = Browser()
        page = browser.login_at_provider(f"{base}/ui/start", USER)
        assert page.status == 200 and page.url == f"{base}/ui/start", page.text
        cookie = browser.cookies.get(SESSION_COOKIE)
        assert cookie is not None, browser.cookies.refused
        info = browser.get(f"{base}/auth/userinfo")
        assert info.status == 200, info.text
        yield {"base": base, "client": Client(envoy.port), "browser": browser,
               "cookie": f"{SESSION_COOKIE}={cookie.value}", "csrf": info.json()["csrf_token"]}
    finally:
        g.stop()
        envoy.stop()


def send(site: dict, method: str, path: str, *, cookie: bool = True, token: str | None = None,
         **headers: str) -> Response:
    """`method path` through Envoy with the session cookie (unless
    `cookie=False`) and `headers` (underscores become dashes)."""
    sent = {k.replace("_", "-"): v for k, v in headers.items()}
    if cookie:
        sent["Cookie"] = site["cookie"]
    return site["client"].request(method, path, headers=sent, token=token,
                                  body=b"{}" if method in ("POST", "PUT", "PATCH") else None)


def as_user(r: Response) -> str | None:
    return expect.allowed(r)["headers"].get("x-auth-request-user")


def csrf_refused(r: Response, why: str) -> None:
    body = expect.denial(r, 403, "access_denied")
    assert why in body["error_description"], body


# --- CORS ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/ui/page", "/api/items"])
def test_a_preflight_reaches_the_upstream_without_a_credential(site, path):
    r = send(site, "OPTIONS", path, cookie=False, Origin=UI,
             Access_Control_Request_Method="POST",
             Access_Control_Request_Headers="content-type, x-csrf-token")
    seen = expect.allowed(r)
    assert seen["method"] == "OPTIONS"
    assert "x-auth-request-user" not in seen["headers"], seen
    # From an origin that is not listed: refused, credential or not.
    expect.denial(send(site, "OPTIONS", path, cookie=False, Origin=EVIL,
                       Access_Control_Request_Method="POST"), 403, "access_denied")


def test_the_session_cookie_from_a_foreign_origin_is_refused(site):
    own = site["base"]
    assert as_user(send(site, "GET", "/api/items", Origin=UI)) == USER
    assert as_user(send(site, "GET", "/api/items", Origin=own)) == USER
    assert as_user(send(site, "GET", "/api/items")) == USER  # no Origin: not a CORS request
    body = expect.denial(send(site, "GET", "/api/items", Origin=EVIL), 403, "access_denied")
    assert EVIL in body["error_description"], body
    # The login-protected route as well: a 403, not a redirect to log in.
    expect.denial(send(site, "GET", "/ui/page", Origin=EVIL), 403, "access_denied")


# --- CSRF -----------------------------------------------------------------------------


def test_a_state_changing_request_with_only_the_cookie_is_refused(site):
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        csrf_refused(send(site, method, "/api/items"), "no Origin, Referer or X-CSRF-Token")
    # Reading needs no proof.
    assert as_user(send(site, "GET", "/api/items")) == USER
    assert send(site, "HEAD", "/api/items").status == 200


def test_an_allowed_or_own_origin_is_proof(site):
    own = site["base"]
    assert as_user(send(site, "POST", "/api/items", Origin=UI)) == USER
    assert as_user(send(site, "DELETE", "/api/items/1", Origin=own)) == USER
    # Without Origin, the Referer's origin stands in for it.
    assert as_user(send(site, "POST", "/api/items", Referer=f"{own}/ui/page?x=1")) == USER
    assert as_user(send(site, "PUT", "/api/items/1", Referer=f"{UI}/app")) == USER


def test_a_foreign_origin_is_refused(site):
    # With the session cookie, a foreign Origin (or `null`: sandboxed
    # frames, some redirects) is refused by the origin check already.
    body = expect.denial(send(site, "POST", "/api/items", Origin=EVIL), 403, "access_denied")
    assert EVIL in body["error_description"], body
    body = expect.denial(send(site, "POST", "/api/items", Origin="null"), 403, "access_denied")
    assert "null" in body["error_description"], body
    # A foreign Referer (no Origin) is no proof either, even naming ours in its path.
    own = site["base"]
    csrf_refused(send(site, "POST", "/api/items", Referer=f"{EVIL}/{own}"), "origin is not allowed")
    # Another port on the same host is another origin.
    other = own.rsplit(":", 1)[0] + ":1"
    csrf_refused(send(site, "POST", "/api/items", Referer=f"{other}/"), "origin is not allowed")


def test_the_session_csrf_token_is_proof_and_a_wrong_one_is_refused(site):
    token = site["csrf"]
    assert isinstance(token, str) and len(token) >= 16, "userinfo gave no usable csrf_token"
    assert as_user(send(site, "POST", "/api/items", X_CSRF_Token=token)) == USER
    assert as_user(send(site, "DELETE", "/api/items/1", X_CSRF_Token=token)) == USER
    wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
    csrf_refused(send(site, "POST", "/api/items", X_CSRF_Token=wrong), "does not match")
    csrf_refused(send(site, "POST", "/api/items", X_CSRF_Token="anything"), "does not match")
    # The right token with a Referer from elsewhere: the token is the proof.
    assert as_user(send(site, "POST", "/api/items", X_CSRF_Token=token,
                        Referer=f"{EVIL}/page")) == USER
    # A token without a session proves nothing: no credential at all.
    expect.no_credential(send(site, "POST", "/api/items", cookie=False, X_CSRF_Token=token))


def test_a_bearer_jwt_is_not_subject_to_csrf(site, mint):
    jwt = mint.token()
    assert as_user(send(site, "POST", "/api/items", cookie=False, token=jwt)) == "alice"
    assert as_user(send(site, "DELETE", "/api/items/1", cookie=False, token=jwt)) == "alice"
    # The explicit credential wins over the cookie riding along: no proof needed.
    assert as_user(send(site, "POST", "/api/items", token=jwt)) == "alice"
    # The session alone, the same request: refused.
    csrf_refused(send(site, "POST", "/api/items"), "no Origin, Referer or X-CSRF-Token")
