"""Command-line login (issue 14, Renku's `renku login`) through the shipped
Envoy config against the real oidc-provider: a command starts a login
(`POST /auth/cli/login`), a person logs in and approves it in a browser,
the command polls with the login's secret half and receives an API token
once, which then works on a protected API route through Envoy. Refused:
a poll after the timeout, a second poll, a wrong or missing secret, and an
approval posted without the session's CSRF token or from another origin.

Every poll token and API token is recorded for the end-of-session leak
check of gatehouse's logs, and so is each login's public id (gatehouse
logs only its fingerprint)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from harness import configs, expect, oidc, secret_registry
from harness.browser import Browser
from harness.envoy import EnvoyInstance
from harness.httpc import Client, Response
from harness.procs import free_port, wait_until

TOKEN_PREFIX = "gh"
TOKEN_RE = re.compile(rf"^{TOKEN_PREFIX}-[A-Za-z0-9_-]{{22}}\.[A-Za-z0-9_-]{{22}}$")


def _site(gatehouse_factory, oidc_provider_factory, idp, echo, tmp_path: Path,
          login_timeout: str) -> dict:
    g_port, g_http = free_port(), free_port()
    envoy = EnvoyInstance(tmp_path / "envoy", gatehouse_port=g_port, upstream_port=echo.port,
                          gatehouse_http_port=g_http, name="envoy-cli-login")
    base = f"http://127.0.0.1:{envoy.ports.listener}"
    op = oidc_provider_factory([oidc.client_spec("gatehouse", f"{base}/auth/callback")],
                               auto_consent=True,
                               groups={u: ["staff"] for u in ("alice", "bob", "carol")})
    secret = op.client("gatehouse").write_secret(tmp_path / "client-secret")
    config = configs.single_issuer_config(idp)
    config["scopes"] = {"group_mapping": {"read:data": ["staff"], "write:data": ["staff"]}}
    config["policy"] = {
        "default": "deny",
        "rules": [
            {"name": "read", "match": {"path": {"prefix": "/api/read/"}},
             "scopes": ["read:data"], "headers": ["user"]},
            {"name": "write", "match": {"path": {"prefix": "/api/write/"}},
             "scopes": ["write:data"], "headers": ["user"]},
        ],
    }
    config["api_tokens"] = {"prefix": TOKEN_PREFIX}
    config["login"] = configs.login(base, op, secret, groups_scope=True)
    # The token holds read:data only, though the session holds both.
    config["cli"] = {"login_timeout": login_timeout, "token_lifetime": "1d",
                     "token_scopes": ["read:data"]}
    g = gatehouse_factory(config, name="gatehouse-cli-login", port=g_port, http_port=g_http)
    g.wait_serving()
    return {"base": base, "client": Client(envoy.ports.listener), "envoy": envoy}


@pytest.fixture
def site(gatehouse_factory, oidc_provider_factory, idp, echo, tmp_path: Path):
    s = _site(gatehouse_factory, oidc_provider_factory, idp, echo, tmp_path, "60s")
    yield s
    s["envoy"].stop()


@pytest.fixture
def short_site(gatehouse_factory, oidc_provider_factory, idp, echo, tmp_path: Path):
    s = _site(gatehouse_factory, oidc_provider_factory, idp, echo, tmp_path, "2s")
    yield s
    s["envoy"].stop()


def start(site) -> dict:
    """The command's first step: POST /auth/cli/login."""
    r = site["client"].request("POST", "/auth/cli/login")
    assert r.status == 200, r.describe()
    expect.assert_no_store(r)
    body = r.json()
    secret_registry.record(body["poll_token"], "CLI poll token")
    login, poll = urlsplit(body["login_url"]), urlsplit(body["poll_url"])
    login_id = parse_qs(login.query)["id"][0]
    secret_registry.record(login_id, "CLI login id")
    assert f"{login.scheme}://{login.netloc}" == site["base"]
    assert login.path == "/auth/cli/authorize" and poll.path == "/auth/cli/poll"
    assert parse_qs(poll.query)["id"] == [login_id]
    # The secret half is nowhere in the URLs, and is 256 bits.
    assert body["poll_token"] not in body["login_url"] + body["poll_url"]
    assert len(body["poll_token"]) >= 43 and body["poll_token"] != login_id
    assert 0 < body["expires_in"] <= 60 and body["interval"] >= 1
    assert re.fullmatch(r"[A-Z0-9]{4}-[A-Z0-9]{4}", body["user_code"])
    body["poll_target"] = f"{poll.path}?{poll.query}"
    return body


def poll(site, login: dict, token: str | None = "") -> Response:
    token = login["poll_token"] if token == "" else token
    r = site["client"].get(login["poll_target"], token=token)
    expect.assert_no_store(r)
    return r


def error_of(r: Response) -> str:
    return (r.json_or_none() or {}).get("error")


def approve_in_browser(browser: Browser, login: dict, user: str | None = None) -> None:
    """Opens the login URL (logging in at the provider first when `user`
    is given) and clicks Allow on the confirmation page."""
    if user is not None:
        page = browser.login_at_provider(login["login_url"], user)
    else:
        page = browser.get(login["login_url"])
    assert page.status == 200, page.text
    assert page.url == login["login_url"], page.hop_urls()
    assert login["user_code"] in page.text
    assert page.headers.get("x-frame-options") == "DENY"
    done = browser.submit(page.form(action_contains="/auth/cli/authorize"), button="decision")
    assert done.status == 200, done.text
    assert "allowed" in done.text


def test_happy_path_token_works_through_envoy(site):
    login = start(site)
    # Not answered yet: RFC 8628's authorization_pending.
    pending = poll(site, login)
    assert pending.status == 400 and error_of(pending) == "authorization_pending", pending.describe()
    browser = Browser()
    # Not logged in: the login URL sends the browser through the browser
    # login and back to the confirmation page.
    first = browser.get(login["login_url"], follow=False)
    assert first.status == 302 and first.headers["location"].startswith("/auth/login?rd=")
    page = browser.login_at_provider(login["login_url"], "alice")
    assert page.status == 200 and page.url == login["login_url"], page.hop_urls()
    assert "Allow the command-line login for alice?" in page.text
    form = page.form(action_contains="/auth/cli/authorize")
    assert form.method == "POST" and form.value("csrf_token")
    assert [b.get("value") for b in form.buttons] == ["approve", "deny"]
    done = browser.submit(form, button="decision")
    assert done.status == 200 and "allowed" in done.text, done.text
    # The command's next poll gets an API token, once.
    r = poll(site, login)
    assert r.status == 200, r.describe()
    body = r.json()
    token = body["access_token"]
    secret_registry.record(token, "CLI API token")
    secret_registry.record(token.split(".", 1)[1], "CLI API token secret")
    assert TOKEN_RE.match(token), token
    assert body["token_type"] == "Bearer"
    assert 86_000 <= body["expires_in"] <= 86_400
    assert body["scope"] == "read:data"
    # The token works through Envoy as alice, with the scopes of cli.token_scopes only.
    seen = expect.allowed(site["client"].get("/api/read/x", token=token))
    assert dict(seen["header_list"]).get("x-auth-request-user") == "alice"
    assert site["client"].get("/api/write/x", token=token).status == 403
    # It is one of alice's API tokens, named for the command-line login.
    listed = site["client"].get("/auth/api/v1/users/alice/tokens", token=token)
    assert listed.status == 200, listed.describe()
    tokens = listed.json()
    tokens = tokens["tokens"] if isinstance(tokens, dict) else tokens
    assert [t["name"][:4] for t in tokens] == ["cli-"]


def test_each_login_works_once(site):
    login = start(site)
    approve_in_browser(Browser(), login, "bob")
    first = poll(site, login)
    assert first.status == 200, first.describe()
    secret_registry.record(first.json()["access_token"], "CLI API token")
    again = poll(site, login)
    assert again.status == 410 and error_of(again) == "expired_token", again.describe()
    assert "access_token" not in again.text
    # The browser cannot answer it again either.
    browser = Browser()
    page = browser.login_at_provider(login["login_url"], "bob")
    assert page.status == 409, page.text


def test_a_wrong_or_missing_secret_is_refused_and_reveals_nothing(site):
    login, other = start(site), start(site)
    for state in ("pending", "approved"):
        if state == "approved":
            approve_in_browser(Browser(), login, "carol")
        for token in (None, other["poll_token"], "x" * 43):
            r = poll(site, login, token)
            assert r.status == 401, (state, r.describe())
            assert error_of(r) == "invalid_client"
            assert "pending" not in r.text and "approved" not in r.text
            assert "access_token" not in r.text
    # The refused polls did not use the login up: the right secret still collects.
    r = poll(site, login)
    assert r.status == 200, r.describe()
    secret_registry.record(r.json()["access_token"], "CLI API token")
    # The other login's own secret cannot collect this one's, ever.
    assert poll(site, other).status == 400


def test_an_unanswered_login_expires(short_site):
    site = short_site
    login = start(site)
    assert login["expires_in"] == 2
    assert poll(site, login).status == 400
    gone = wait_until("the login to time out", lambda: (r := poll(site, login)).status == 410 and r,
                      timeout=5.0, interval=0.25)
    assert error_of(gone) == "expired_token"
    # Approving it now is too late, and the poll stays gone.
    browser = Browser()
    page = browser.login_at_provider(login["login_url"], "alice")
    assert page.status == 410, page.text
    assert poll(site, login).status == 410


def test_approval_needs_the_sessions_csrf_token_and_our_origin(site):
    login = start(site)
    browser = Browser()
    page = browser.login_at_provider(login["login_url"], "alice")
    assert page.status == 200, page.text
    form = page.form(action_contains="/auth/cli/authorize")
    login_id = form.value("id")
    action = form.action
    # A page elsewhere posts the approval with the browser's cookies but
    # cannot read the CSRF token: refused, with or without its own Origin.
    for headers, data in [
        ({"Origin": "https://evil.example"}, {"id": login_id, "decision": "approve"}),
        ({}, {"id": login_id, "decision": "approve"}),
        ({}, {"id": login_id, "decision": "approve", "csrf_token": "A" * 43}),
        ({"Origin": "https://evil.example"},
         {"id": login_id, "decision": "approve", "csrf_token": form.value("csrf_token")}),
    ]:
        r = browser.post(action, data=data, headers=headers)
        assert r.status == 403, (headers, r.text)
    # Without the session cookie: not logged in.
    assert Browser().post(action, data=dict(form.data(button="decision"))).status == 401
    # Still pending: nothing was approved.
    r = poll(site, login)
    assert r.status == 400 and error_of(r) == "authorization_pending", r.describe()
    # The page's own form works.
    done = browser.submit(form, button="decision")
    assert done.status == 200, done.text
    r = poll(site, login)
    assert r.status == 200, r.describe()
    secret_registry.record(r.json()["access_token"], "CLI API token")


def test_a_refused_login_is_access_denied(site):
    login = start(site)
    browser = Browser()
    page = browser.login_at_provider(login["login_url"], "alice")
    form = page.form(action_contains="/auth/cli/authorize")
    data = [(k, v) for k, v in form.data() if k != "decision"] + [("decision", "deny")]
    headers = {"Origin": site["base"]}
    done = browser.post(form.action, data=data, headers=headers)
    assert done.status == 200 and "refused" in done.text, done.text
    r = poll(site, login)
    assert r.status == 403 and error_of(r) == "access_denied", r.describe()
