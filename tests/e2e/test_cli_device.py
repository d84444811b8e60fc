"""Command-line login by the OAuth 2.0 Device Authorization Grant (RFC 8628,
issue 14) through the shipped Envoy config against the real oidc-provider
with its device flow on: the command asks gatehouse for a device login
(`POST /auth/cli/device`), a person opens the provider's verification URI
in a browser, logs in and confirms there, and the command's polls of
`POST /auth/cli/device/token` turn from `authorization_pending` into an
API token that works on a protected route through Envoy.

Also: gatehouse polls the provider no faster than its interval however
fast the command polls (the provider answers `slow_down` to a poll that
comes too soon, and never does here), passes a provider's `slow_down` on,
a refusal at the provider is `access_denied`, an account outside the
provider's `allowed_groups` is refused, an unconfirmed login expires, and
a provider without the device flow is answered with a pointer to
`/auth/cli/login`.

The handle gatehouse answers as `device_code`, the provider's user code
and every API token are recorded for the end-of-session leak check of
gatehouse's logs."""

from __future__ import annotations

import re
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from harness import configs, expect, oidc, secret_registry
from harness.browser import Browser, Page
from harness.envoy import EnvoyInstance
from harness.httpc import Client, Response
from harness.procs import free_port, wait_until

TOKEN_PREFIX = "gh"
TOKEN_RE = re.compile(rf"^{TOKEN_PREFIX}-[A-Za-z0-9_-]{{22}}\.[A-Za-z0-9_-]{{22}}$")
GRANT = oidc.DEVICE_CODE_GRANT
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _site(gatehouse_factory, oidc_provider_factory, idp, echo, tmp_path: Path, *,
          device_code_ttl: int = 600, device_flow: bool = True) -> dict:
    g_port, g_http = free_port(), free_port()
    envoy = EnvoyInstance(tmp_path / "envoy", gatehouse_port=g_port, upstream_port=echo.port,
                          gatehouse_http_port=g_http, name="envoy-cli-device")
    base = f"http://127.0.0.1:{envoy.ports.listener}"
    grant_types = ["authorization_code", "refresh_token"] + ([GRANT] if device_flow else [])
    op = oidc_provider_factory(
        [oidc.client_spec("gatehouse", f"{base}/auth/callback", grant_types=grant_types)],
        auto_consent=True, device_code_ttl=device_code_ttl, device_interval=1,
        device_flow=device_flow,
        groups={"alice": ["staff"], "bob": ["staff"], "mallory": ["visitors"]})
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
    config["login"] = configs.login(base, op, secret, groups_scope=True,
                                     allowed_groups=["staff"])
    config["cli"] = {"login_timeout": "60s", "token_lifetime": "1d",
                     "token_scopes": ["read:data"]}
    g = gatehouse_factory(config, name="gatehouse-cli-device", port=g_port, http_port=g_http)
    g.wait_serving()
    # The provider's discovery loads in the background; until it has, a
    # login of either kind is answered 503 "try again shortly".
    wait_until("gatehouse to load the provider's discovery",
               lambda: "provider discovery loaded" in g.log(), timeout=10.0)
    return {"base": base, "client": Client(envoy.ports.listener), "envoy": envoy, "op": op}


@pytest.fixture
def site(gatehouse_factory, oidc_provider_factory, idp, echo, tmp_path: Path):
    s = _site(gatehouse_factory, oidc_provider_factory, idp, echo, tmp_path)
    yield s
    s["envoy"].stop()


@pytest.fixture
def short_site(gatehouse_factory, oidc_provider_factory, idp, echo, tmp_path: Path):
    s = _site(gatehouse_factory, oidc_provider_factory, idp, echo, tmp_path, device_code_ttl=2)
    yield s
    s["envoy"].stop()


@pytest.fixture
def no_device_site(gatehouse_factory, oidc_provider_factory, idp, echo, tmp_path: Path):
    s = _site(gatehouse_factory, oidc_provider_factory, idp, echo, tmp_path, device_flow=False)
    yield s
    s["envoy"].stop()


def start(site) -> dict:
    """The command's first step: POST /auth/cli/device (RFC 8628 section 3.1)."""
    r = site["client"].request("POST", "/auth/cli/device", headers=FORM, body=b"")
    assert r.status == 200, r.describe()
    expect.assert_no_store(r)
    body = r.json()
    secret_registry.record(body["device_code"], "device flow handle")
    secret_registry.record(body["user_code"], "device flow user code")
    secret_registry.record(body["verification_uri_complete"], "device flow verification URI")
    # RFC 8628 section 3.2's fields; the user code and URIs are the provider's.
    op = site["op"]
    assert body["verification_uri"] == f"{op.issuer}/device", body
    assert urlsplit(body["verification_uri_complete"]).path == "/device"
    assert parse_qs(urlsplit(body["verification_uri_complete"]).query)["user_code"] == [body["user_code"]]
    assert body["interval"] == 1 and 0 < body["expires_in"] <= 600
    # The device code is gatehouse's own 256-bit handle.
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", body["device_code"]), body
    return body


def poll(site, login: dict, **override: str) -> Response:
    """RFC 8628 section 3.4's token request, to gatehouse."""
    form = {"grant_type": GRANT, "device_code": login["device_code"], "client_id": "cli"}
    form.update(override)
    r = site["client"].request("POST", "/auth/cli/device/token", headers=FORM,
                               body=urlencode(form).encode())
    expect.assert_no_store(r)
    return r


def error_of(r: Response) -> str | None:
    return (r.json_or_none() or {}).get("error")


def poll_until_done(site, login: dict, timeout: float = 10.0) -> Response:
    """Polls as an RFC 8628 client does (the interval, plus 5 s on
    slow_down) until the answer is not pending."""
    deadline = time.monotonic() + timeout
    interval = login["interval"]
    while True:
        r = poll(site, login)
        if error_of(r) == "slow_down":
            interval += 5
        elif error_of(r) != "authorization_pending":
            return r
        assert time.monotonic() < deadline, f"still pending: {r.describe()}"
        time.sleep(interval)


def confirm_at_provider(browser: Browser, login: dict, user: str, abort: bool = False) -> Page:
    """The person: opens verification_uri_complete, confirms the code on the
    provider's page (or aborts), logs in there. Returns the last page."""
    page = browser.get(login["verification_uri_complete"])
    assert page.status == 200, page.text
    # oidc-provider posts the code from the link to its own form (a
    # self-submitting page: no script here, so submit it).
    if not page.has_form(with_input="confirm"):
        page = browser.submit(page.form(with_input="user_code"))
        assert page.status == 200, page.text
    form = page.form(with_input="confirm")
    assert form.value("user_code") == login["user_code"]
    assert login["user_code"] in page.text
    if abort:
        return browser.submit(form, button="abort")
    page = browser.submit(form)
    return browser.login_at_provider(page.url, user) if page.has_form(
        field_value=("prompt", "login")) else page


def test_device_flow_happy_path_token_works_through_envoy(site):
    login = start(site)
    # Not confirmed yet: authorization_pending, RFC 8628's 400.
    pending = poll(site, login)
    assert pending.status == 400 and error_of(pending) == "authorization_pending", pending.describe()
    browser = Browser()
    done = confirm_at_provider(browser, login, "alice")
    assert done.status == 200 and "Sign-in Success" in done.text, done.text
    r = poll_until_done(site, login)
    assert r.status == 200, r.describe()
    body = r.json()
    token = body["access_token"]
    secret_registry.record(token, "CLI API token")
    secret_registry.record(token.split(".", 1)[1], "CLI API token secret")
    assert TOKEN_RE.match(token), token
    assert body["token_type"] == "Bearer" and body["scope"] == "read:data"
    assert 86_000 <= body["expires_in"] <= 86_400
    # The same API token as the custom flow: alice's, read:data only.
    seen = expect.allowed(site["client"].get("/api/read/x", token=token))
    assert dict(seen["header_list"]).get("x-auth-request-user") == "alice"
    assert site["client"].get("/api/write/x", token=token).status == 403
    listed = site["client"].get("/auth/api/v1/users/alice/tokens", token=token)
    assert listed.status == 200, listed.describe()
    tokens = listed.json()
    tokens = tokens["tokens"] if isinstance(tokens, dict) else tokens
    assert [t["name"][:4] for t in tokens] == ["cli-"]
    # Each grant yields one token.
    again = poll(site, login)
    assert again.status == 400 and error_of(again) == "invalid_grant", again.describe()
    assert "access_token" not in again.text
    # The provider's tokens never reached the command.
    for issued in site["op"].issued_tokens():
        assert issued not in r.text


def test_gatehouse_polls_the_provider_no_faster_than_its_interval(site):
    op = site["op"]
    login = start(site)
    before = op.device_polls()
    # A command polling ten times a second for 2.5 s.
    began = time.monotonic()
    answers = set()
    while time.monotonic() - began < 2.5:
        answers.add(error_of(poll(site, login)))
        time.sleep(0.1)
    assert answers == {"authorization_pending"}, answers
    after = op.device_polls()
    asked = after.get("authorization_pending", 0) - before.get("authorization_pending", 0)
    # The first at once, then one per interval (1 s, and up to a second
    # more: gatehouse's clock counts whole seconds): 2 or 3 in 2.5 s, never
    # one the provider found too soon.
    assert 2 <= asked <= 3, (before, after)
    assert after.get("slow_down", 0) == before.get("slow_down", 0), after


def test_slow_down_from_the_provider_is_passed_on(site):
    op = site["op"]
    login = start(site)
    op.slow_down_next_device_poll()
    r = poll(site, login)
    assert r.status == 400 and error_of(r) == "slow_down", r.describe()
    assert r.json()["interval"] == 6
    # Gatehouse now waits 6 s (and a second) before asking the provider again.
    before = op.device_polls()
    for _ in range(5):
        assert error_of(poll(site, login)) == "authorization_pending"
        time.sleep(0.2)
    assert op.device_polls() == before


def test_a_refusal_at_the_provider_is_access_denied(site):
    login = start(site)
    page = confirm_at_provider(Browser(), login, "alice", abort=True)
    assert page.status in (200, 400), page.text
    r = poll_until_done(site, login)
    assert r.status == 400 and error_of(r) == "access_denied", r.describe()
    # And stays so.
    assert error_of(poll(site, login)) == "access_denied"


def test_an_account_outside_allowed_groups_is_refused(site):
    login = start(site)
    done = confirm_at_provider(Browser(), login, "mallory")
    assert done.status == 200 and "Sign-in Success" in done.text, done.text
    r = poll_until_done(site, login)
    assert r.status == 400 and error_of(r) == "access_denied", r.describe()
    assert "not allowed" in r.json()["error_description"]
    assert "access_token" not in r.text


def test_an_unconfirmed_device_login_expires(short_site):
    site = short_site
    login = start(site)
    assert login["expires_in"] == 2
    assert error_of(poll(site, login)) == "authorization_pending"
    gone = wait_until("the device login to expire",
                      lambda: (r := poll(site, login)).status == 400
                      and error_of(r) == "expired_token" and r,
                      timeout=5.0, interval=0.25)
    assert "expired" in gone.json()["error_description"]
    # Confirming it now is too late at the provider, and the poll stays expired.
    page = Browser().get(login["verification_uri_complete"])
    if page.has_form(with_input="user_code") and not page.has_form(with_input="confirm"):
        page = Browser().submit(page.form(with_input="user_code"))
    assert not page.has_form(with_input="confirm"), page.text
    assert error_of(poll(site, login)) == "expired_token"


def test_malformed_token_requests_are_refused(site):
    login = start(site)
    for override, code in [
        ({"grant_type": "authorization_code"}, "unsupported_grant_type"),
        ({"device_code": ""}, "invalid_request"),
        ({"device_code": "A" * 43}, "expired_token"),
        ({"device_code": "short"}, "expired_token"),
    ]:
        r = poll(site, login, **override)
        assert r.status == 400 and error_of(r) == code, (override, r.describe())
    # A JSON body is not RFC 8628's form: refused, and the grant is untouched.
    r = site["client"].request("POST", "/auth/cli/device/token",
                               headers={"Content-Type": "application/json"},
                               body=b'{"grant_type": "%s"}' % GRANT.encode())
    assert r.status == 400 and error_of(r) == "unsupported_grant_type", r.describe()
    assert error_of(poll(site, login)) == "authorization_pending"


def test_a_provider_without_the_device_flow_points_to_the_cli_login(no_device_site):
    site = no_device_site
    assert "device_authorization_endpoint" not in site["op"].discovery
    r = site["client"].request("POST", "/auth/cli/device", headers=FORM, body=b"")
    assert r.status == 400 and error_of(r) == "unsupported_grant_type", r.describe()
    assert "/auth/cli/login" in r.json()["error_description"]
    # The custom command-line login works with the same provider.
    assert site["client"].request("POST", "/auth/cli/login").status == 200
