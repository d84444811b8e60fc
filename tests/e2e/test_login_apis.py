"""Gatehouse's side-port APIs called by a logged-in browser (issue 14:
Renku, ServiceHub and kube-gateway front ends), through Envoy (the shipped
envoy/envoy.yaml routes /auth/api/ and /auth/jwt/* to the side port)
against the real oidc-provider.

A web front end holds no token: the browser's session cookie
(`__Host-gatehouse_session`) is its credential, and the side port
authenticates it like the check does (`Engine::authenticate_caller`):

- reading (GET /auth/api/v1/user-info, listing tokens) needs nothing more;
- a credentialed request from a foreign Origin is refused (403);
- a state-changing request (POST, DELETE) carried by the session cookie
  alone must prove where it comes from: the request's own Origin, a
  listed `cors.allowed_origins` origin, or `X-CSRF-Token` equal to the
  session's `csrf_token` (from GET /auth/userinfo). Else 403
  `access_denied`.

1. API tokens managed from a web UI: created and revoked with the session
   and CSRF proof; the token then works as a bearer credential.
2. kube-gateway's web front end: the page mints a signed link with
   `POST /auth/jwt/request` + `X-CSRF-Token`, the browser hands it off as
   a cookie (`GET /auth/jwt/set`) and reaches what the link grants only.

Scopes of a session come from `scopes.group_mapping` applied to the
groups the provider sends (`groups` claim, `groups` scope requested):
dave is in `readers` and `minters` (read:data, links:mint), erin in
`readers` only.
"""

from __future__ import annotations

import json
import re
from typing import Iterator
from urllib.parse import urlencode

import pytest

from harness import configs, expect, oidc, secret_registry
from harness.browser import Browser
from harness.envoy import EnvoyInstance
from harness.gatehouse import GatehouseInstance
from harness.httpc import Client, Response
from harness.links import MINT_PATH, SET_PATH, claims_of
from harness.procs import free_port

SESSION_COOKIE = "__Host-gatehouse_session"
UI = "https://ui.example"  # a front end on another origin, listed in cors.allowed_origins
EVIL = "https://evil.example"
TOKENS = "/auth/api/v1/users"
TOKEN_PREFIX = "gh"
TOKEN_RE = re.compile(rf"^{TOKEN_PREFIX}-[A-Za-z0-9_-]{{22}}\.[A-Za-z0-9_-]{{22}}$")
GROUPS = {"dave": ["readers", "minters"], "erin": ["readers"]}
PROVIDER_GROUPS = dict(GROUPS, frank=["readers"])


@pytest.fixture(scope="module")
def site(tmp_path_factory, oidc_provider_module_factory, idp, echo, keys) -> Iterator[dict]:
    """Envoy + gatehouse (login, API tokens, link issuer) + oidc-provider,
    and one logged-in browser per user of GROUPS."""
    tmp = tmp_path_factory.mktemp("login-apis")
    g_port, g_http = free_port(), free_port()
    envoy = EnvoyInstance(tmp / "envoy", gatehouse_port=g_port, upstream_port=echo.port,
                          gatehouse_http_port=g_http, name="envoy-login-apis")
    base = f"http://127.0.0.1:{envoy.port}"
    op = oidc_provider_module_factory([oidc.client_spec("gatehouse", f"{base}/auth/callback")],
                                      auto_consent=True, groups=PROVIDER_GROUPS)
    secret = op.client("gatehouse").write_secret(tmp / "client-secret")
    config = configs.single_issuer_config(idp)
    # The link cookie (`gh_token`) is a token source: the hand-off stores the link there.
    config["jwt"]["sources"] = ["bearer", {"cookie": configs.COOKIE}]
    config["scopes"] = {"group_mapping": {"read:data": ["readers"],
                                          configs.MINT_SCOPE: ["minters"]}}
    config["policy"] = {
        "default": "deny",
        "rules": [
            {"name": "ui", "match": {"path": {"prefix": "/ui/"}}, "login": "redirect",
             "headers": ["user"]},
            {"name": "data", "match": {"path": {"prefix": "/data/"}}, "scopes": ["read:data"],
             "headers": ["user", "scopes"]},
            {"name": "links", "match": {"path": {"prefix": "/links/"}}, "headers": ["user"]},
        ],
    }
    config["cors"] = {"allowed_origins": [UI], "allow_credentials": True}
    config["login"] = configs.login(base, op, secret, groups_scope=True)
    # API tokens in the default (memory) store: one replica.
    config["api_tokens"] = {"prefix": TOKEN_PREFIX, "cache_ttl": "500ms"}
    # The link issuer is the site's own URL; links:mint allows /links/ and /k8s/.
    config["issuer"] = configs.internal_issuer(base)
    g = GatehouseInstance(tmp / "gatehouse", config, name="gatehouse-login-apis",
                          files={configs.ISSUER_KEY_FILE: keys.internal.private_pem()},
                          port=g_port, http_port=g_http)
    try:
        g.wait_serving()
        users = {user: login(base, user) for user in GROUPS}
        yield {"base": base, "client": Client(envoy.port), **users}
    finally:
        g.stop()
        envoy.stop()


def login(base: str, user: str) -> dict:
    """A browser logged in as `user`: the browser, its session cookie as
    sent, and the session's CSRF token (from /auth/userinfo)."""
    browser = Browser()
    page = browser.login_at_provider(f"{base}/ui/start", user)
    assert page.status == 200 and page.url == f"{base}/ui/start", page.text
    cookie = browser.cookies.get(SESSION_COOKIE)
    assert cookie is not None, browser.cookies.refused
    info = browser.get(f"{base}/auth/userinfo")
    assert info.status == 200, info.text
    return {"browser": browser, "cookie": f"{SESSION_COOKIE}={cookie.value}",
            "csrf": info.json()["csrf_token"]}


def send(site: dict, user: str | None, method: str, path: str, body: dict | None = None,
         token: str | None = None, **headers: str) -> Response:
    """`method path` through Envoy as `user`'s browser would send it: its
    session cookie (none when `user` is None), a JSON body, and `headers`
    (underscores become dashes). Nothing else: no Origin unless given."""
    sent = {k.replace("_", "-"): v for k, v in headers.items()}
    if user is not None:
        sent["Cookie"] = site[user]["cookie"]
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        sent["Content-Type"] = "application/json"
    return site["client"].request(method, path, headers=sent, body=data, token=token)


def csrf_refused(r: Response, why: str) -> None:
    body = expect.denial(r, 403, "access_denied")
    assert why in body["error_description"], body


def wrong(token: str) -> str:
    return token[:-1] + ("A" if token[-1] != "A" else "B")


def created(r: Response, name: str) -> dict:
    assert r.status == 201, r.describe()
    expect.assert_no_store(r)
    data = r.json()
    token = data["token"]
    secret_registry.record(token, "API token")
    secret_registry.record(token.split(".", 1)[1], "API token secret")
    assert TOKEN_RE.match(token), token
    assert data["name"] == name and data["key"] == token.split("-", 1)[1].split(".")[0]
    return data


def token_keys(site: dict, user: str) -> set[str]:
    r = send(site, user, "GET", f"{TOKENS}/{user}/tokens")
    assert r.status == 200, r.describe()
    listed = r.json()
    listed = listed["tokens"] if isinstance(listed, dict) else listed
    return {t["key"] for t in listed}


# --- 1. API tokens from a web UI ----------------------------------------------------


def test_user_info_with_only_the_session_cookie(site):
    r = send(site, "dave", "GET", "/auth/api/v1/user-info")
    assert r.status == 200, r.describe()
    expect.assert_no_store(r)
    info = r.json()
    assert info["username"] == "dave" and info["credential"] == "session", info
    # The session's scopes: the provider's groups through scopes.group_mapping.
    assert set(info["scopes"]) == {"read:data", configs.MINT_SCOPE}, info
    assert set(send(site, "erin", "GET", "/auth/api/v1/user-info").json()["scopes"]) == \
        {"read:data"}
    # A foreign origin is refused even for reading; no session at all is a 401.
    expect.denial(send(site, "dave", "GET", "/auth/api/v1/user-info", Origin=EVIL),
                  403, "access_denied")
    expect.no_credential(send(site, None, "GET", "/auth/api/v1/user-info"))


def test_creating_a_token_with_the_session_needs_proof(site):
    path = f"{TOKENS}/dave/tokens"
    before = token_keys(site, "dave")

    def body(name: str) -> dict:
        return {"name": name, "scopes": ["read:data"]}

    csrf_refused(send(site, "dave", "POST", path, body("bare")),
                 "no Origin, Referer or X-CSRF-Token")
    body_evil = expect.denial(send(site, "dave", "POST", path, body("evil"), Origin=EVIL),
                              403, "access_denied")
    assert EVIL in body_evil["error_description"], body_evil
    csrf_refused(send(site, "dave", "POST", path, body("evil-referer"),
                      Referer=f"{EVIL}/settings"), "origin is not allowed")
    csrf_refused(send(site, "dave", "POST", path, body("wrong-csrf"),
                      X_CSRF_Token=wrong(site["dave"]["csrf"])), "does not match")
    # Erin's CSRF token is no proof for dave's session.
    csrf_refused(send(site, "dave", "POST", path, body("erins-csrf"),
                      X_CSRF_Token=site["erin"]["csrf"]), "does not match")
    assert token_keys(site, "dave") == before, "a refused request created a token"

    made = [
        created(send(site, "dave", "POST", path, body("own-origin"), Origin=site["base"]),
                "own-origin"),
        created(send(site, "dave", "POST", path, body("listed-origin"), Origin=UI),
                "listed-origin"),
        created(send(site, "dave", "POST", path, body("csrf-token"),
                     X_CSRF_Token=site["dave"]["csrf"]), "csrf-token"),
    ]
    assert token_keys(site, "dave") == before | {m["key"] for m in made}


def test_a_token_created_by_the_session_works_and_revoking_it_needs_proof(site):
    made = created(send(site, "dave", "POST", f"{TOKENS}/dave/tokens",
                        {"name": "from-the-ui", "scopes": ["read:data"]},
                        X_CSRF_Token=site["dave"]["csrf"]), "from-the-ui")
    token = made["token"]
    seen = expect.allowed(send(site, None, "GET", "/data/report", token=token))["headers"]
    assert seen["x-auth-request-user"] == "dave"
    assert seen["x-auth-request-token-scopes"] == "read:data"
    # Without a credential the route is closed: the token did the work.
    expect.no_credential(send(site, None, "GET", "/data/report"))

    path = f"{TOKENS}/dave/tokens/{made['key']}"
    csrf_refused(send(site, "dave", "DELETE", path), "no Origin, Referer or X-CSRF-Token")
    csrf_refused(send(site, "dave", "DELETE", path, X_CSRF_Token=wrong(site["dave"]["csrf"])),
                 "does not match")
    expect.denial(send(site, "dave", "DELETE", path, Origin=EVIL), 403, "access_denied")
    expect.allowed(send(site, None, "GET", "/data/report", token=token))  # still valid
    r = send(site, "dave", "DELETE", path, X_CSRF_Token=site["dave"]["csrf"])
    assert r.status == 204, r.describe()
    expect.invalid_token(send(site, None, "GET", "/data/report", token=token))
    assert made["key"] not in token_keys(site, "dave")


def test_a_token_made_from_a_session_outlives_its_logout(site):
    base = site["base"]
    site["frank"] = login(base, "frank")  # readers, like erin: a session of its own to end
    made = created(send(site, "frank", "POST", f"{TOKENS}/frank/tokens",
                        {"name": "kept", "scopes": ["read:data"]}, Origin=base), "kept")
    out = site["frank"]["browser"].get(f"{base}/auth/logout?rd=/", follow=False)
    assert out.status == 302, out.text
    expect.no_credential(send(site, "frank", "GET", "/auth/api/v1/user-info"))
    seen = expect.allowed(send(site, None, "GET", "/data/x", token=made["token"]))["headers"]
    assert seen["x-auth-request-user"] == "frank"


def test_a_session_cannot_reach_another_users_tokens(site):
    # Proof of origin does not widen what the caller may do.
    r = send(site, "erin", "POST", f"{TOKENS}/dave/tokens",
             {"name": "x", "scopes": ["read:data"]}, X_CSRF_Token=site["erin"]["csrf"])
    assert r.status == 403, r.describe()
    assert send(site, "erin", "GET", f"{TOKENS}/dave/tokens").status == 403
    # Nor grant scopes the session does not hold.
    r = send(site, "erin", "POST", f"{TOKENS}/erin/tokens",
             {"name": "mint", "scopes": [configs.MINT_SCOPE]}, X_CSRF_Token=site["erin"]["csrf"])
    body = expect.denial(r, 403, "access_denied")
    assert configs.MINT_SCOPE in body["error_description"], body


# --- 2. kube-gateway's web front end: signed links from the session ---------------------


def fetch_link(site: dict, user: str, payload: dict, **headers: str):
    """What the front end's page does: fetch(POST /auth/jwt/request) with
    `credentials: 'same-origin'` (the browser adds its cookies) and `headers`."""
    browser: Browser = site[user]["browser"]
    return browser.post(f"{site['base']}{MINT_PATH}", data=json.dumps(payload).encode(),
                        headers={"Content-Type": "application/json",
                                 "Accept": "application/json", **headers}, follow=False)


def test_a_logged_in_browser_mints_a_link_and_hands_it_off(site):
    base = site["base"]
    payload = {"URLs": ["/links/vm/testvm/*"], "verbs": ["get"], "duration": "10m"}
    page = fetch_link(site, "dave", payload, **{"X-CSRF-Token": site["dave"]["csrf"]})
    assert page.status == 200, page.text
    assert set(page.json()) == {"Token"}, page.text
    link = page.json()["Token"]
    secret_registry.record_token(link, "signed link")
    claims = claims_of(link)
    assert claims["URLs"] == ["/links/vm/testvm/*"] and claims["verbs"] == ["get"]
    assert claims["sub"] == "dave" and claims["iss"] == base
    assert claims["exp"] - claims["nbf"] == 600
    assert "scope" not in claims or configs.MINT_SCOPE not in claims["scope"]

    # The hand-off, in a browser that has no session (the link is shared).
    guest = Browser()
    target = f"{SET_PATH}?{urlencode({'token': link, 'then': '/links/vm/testvm/vnc'})}"
    landed = guest.get(f"{base}{target}")
    assert [h.status for h in landed.hops] == [302, 200], landed.hop_urls()
    assert landed.url == f"{base}/links/vm/testvm/vnc"
    assert landed.json()["headers"]["x-auth-request-user"] == "dave"
    assert guest.cookies.get(configs.COOKIE) is not None
    assert guest.cookies.get(SESSION_COOKIE) is None
    denied = guest.get(f"{base}/links/vm/othervm/vnc")
    assert denied.status == 403 and denied.json()["error"] == "access_denied", denied.text
    assert guest.get(f"{base}/links/vm/testvm/other").status == 200
    post = guest.post(f"{base}/links/vm/testvm/vnc", data=b"x", follow=False)
    assert post.status == 403, post.text  # the link grants GET only

    # Dave's own browser after the hand-off: the link cookie, an explicit
    # token source, is the credential, not the wider session.
    mine = site["dave"]["browser"]
    assert mine.get(f"{base}{target}").status == 200
    assert mine.get(f"{base}/links/vm/othervm/vnc").status == 403
    mine.cookies.clear(configs.COOKIE)
    assert mine.get(f"{base}/links/vm/othervm/vnc").status == 200  # the session again


def test_minting_from_the_session_needs_proof(site):
    payload = {"URLs": ["/links/x/*"], "duration": "5m"}
    r = send(site, "dave", "POST", MINT_PATH, payload)
    csrf_refused(r, "no Origin, Referer or X-CSRF-Token")
    assert "Token" not in r.json()
    csrf_refused(send(site, "dave", "POST", MINT_PATH, payload,
                      X_CSRF_Token=wrong(site["dave"]["csrf"])), "does not match")
    body = expect.denial(send(site, "dave", "POST", MINT_PATH, payload, Origin=EVIL),
                         403, "access_denied")
    assert EVIL in body["error_description"], body
    # With a cors section, a foreign Origin is refused even with the right token.
    expect.denial(send(site, "dave", "POST", MINT_PATH, payload, Origin=EVIL,
                       X_CSRF_Token=site["dave"]["csrf"]), 403, "access_denied")
    # The page's own origin is proof as well (a same-origin fetch sends Origin).
    r = send(site, "dave", "POST", MINT_PATH, payload, Origin=site["base"])
    assert r.status == 200 and set(r.json()) == {"Token"}, r.describe()
    # No session, only the CSRF token: no credential.
    expect.no_credential(send(site, None, "POST", MINT_PATH, payload,
                              X_CSRF_Token=site["dave"]["csrf"]))


def test_a_session_without_the_mint_scope_is_refused(site):
    page = fetch_link(site, "erin", {"URLs": ["/links/x/*"]},
                      **{"X-CSRF-Token": site["erin"]["csrf"]})
    assert page.status == 403, page.text
    body = page.json()
    assert body["error"] == "insufficient_scope", body
    assert configs.MINT_SCOPE in body["error_description"], body
    # And a minter stays within the mint scope's prefixes.
    page = fetch_link(site, "dave", {"URLs": ["/data/*"]},
                      **{"X-CSRF-Token": site["dave"]["csrf"]})
    assert page.status == 403 and page.json()["error"] == "access_denied", page.text
