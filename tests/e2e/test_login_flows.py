"""Browser login flows (issue 13) through the shipped Envoy config against the
real oidc-provider, beyond test_login.py: token refresh (the upstream sees
the new access token; racing requests refresh once; a refused refresh ends
the session), the inactivity timeout, the absolute lifetime, two
identity providers with a choice page, RP-initiated logout, and session
fixation. Tokens the provider issues are recorded for the leak check."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from harness import configs, leaks, oidc, secret_registry
from harness.browser import Browser, Page
from harness.envoy import EnvoyInstance
from harness.gatehouse import GatehouseInstance, check_config
from harness.httpc import Client, Response
from harness.procs import free_port, wait_until

SESSION_COOKIE = "__Host-gatehouse_session"
PAGE = "/ui/page"
SIGNED_OUT = "/public/signed-out"  # not checked by gatehouse: the echo answers
# Short provider tokens for the refresh tests; refresh when 1 s is left.
SHORT_TTL = 4
REFRESH_BEFORE = "1s"


@dataclass
class Site:
    """Envoy (shipped config) in front of gatehouse, the echo upstream, and
    one oidc-provider per configured login provider."""

    base: str
    ops: dict[str, oidc.OidcProvider]
    client: Client
    gatehouse: GatehouseInstance

    @property
    def op(self) -> oidc.OidcProvider:
        return next(iter(self.ops.values()))

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def with_cookie(self, value: str, path: str = PAGE, accept: str = "application/json") -> Response:
        """A request through Envoy carrying only this session cookie value."""
        return self.client.get(path, headers={"Accept": accept,
                                              "Cookie": f"{SESSION_COOKIE}={value}"})


@pytest.fixture
def make_site(gatehouse_factory, oidc_provider_factory, idp, echo,
              tmp_path: Path) -> Iterator[Callable[..., Site]]:
    envoys: list[EnvoyInstance] = []

    def make(*, providers: tuple[str, ...] = ("op",), session: dict | None = None,
             post_logout: bool = False, **op_options: Any) -> Site:
        g_port, g_http = free_port(), free_port()
        envoy = EnvoyInstance(tmp_path / f"envoy-{len(envoys)}", gatehouse_port=g_port,
                              upstream_port=echo.port, gatehouse_http_port=g_http,
                              name="envoy-login-flows")
        envoys.append(envoy)
        base = f"http://127.0.0.1:{envoy.ports.listener}"
        signed_out = f"{base}{SIGNED_OUT}" if post_logout else None
        op_options.setdefault("access_token_ttl", 300)
        op_options.setdefault("id_token_ttl", 300)
        ops, entries = {}, []
        for name in providers:
            op = oidc_provider_factory(
                [oidc.client_spec("gatehouse", f"{base}/auth/callback",
                                  post_logout_redirect_uri=signed_out)],
                auto_consent=True, **op_options)
            secret = op.client("gatehouse").write_secret(tmp_path / f"client-secret-{op.name}")
            ops[name] = op
            entries.append({"name": name, "issuer": op.issuer, "client_id": "gatehouse",
                            "client_secret_file": str(secret),
                            "claims": {"username": "sub", "email": "email", "groups": "groups"}})
        config = configs.single_issuer_config(idp)
        config["policy"] = {
            "default": "deny",
            "rules": [{"name": "ui", "match": {"path": {"prefix": "/ui/"}}, "login": "redirect",
                       "headers": ["user", "email", "token"]}],
        }
        config["login"] = {
            "callback_url": f"{base}/auth/callback",
            "allowed_redirect_domains": ["127.0.0.1"],
            "providers": entries,
            "session": session or {},
        }
        if signed_out:
            config["login"]["post_logout_redirect_url"] = signed_out
        g = gatehouse_factory(config, name="gatehouse-login-flows", port=g_port, http_port=g_http)
        g.wait_serving()
        return Site(base, ops, Client(envoy.ports.listener), g)

    yield make
    for envoy in envoys:
        envoy.stop()


# --- helpers ------------------------------------------------------------------------


def _headers(page: Page | Response) -> dict[str, str]:
    body = page.json()
    return dict(body["header_list"])


def _identity(page: Page | Response) -> str | None:
    return _headers(page).get("x-auth-request-user")


def _upstream_token(page: Page | Response) -> str | None:
    return _headers(page).get("x-auth-request-token")


def _session_value(browser: Browser) -> str:
    cookie = browser.cookies.get(SESSION_COOKIE)
    assert cookie is not None, f"no session cookie; refused: {browser.cookies.refused}"
    return cookie.value


def _logged_in(site: Site, user: str, browser: Browser | None = None) -> tuple[Browser, Page]:
    browser = browser or Browser()
    page = browser.login_at_provider(site.url(PAGE), user)
    assert page.status == 200, page.text[:2000]
    assert page.url == site.url(PAGE)
    assert _identity(page) == user
    return browser, page


def _sent_to_login(page: Page) -> bool:
    return page.status == 302 and page.headers["location"].startswith("/auth/login?rd=")


def _wait_provider_expired(op: oidc.OidcProvider, access_token: str) -> None:
    """Waits, without touching gatehouse, until the provider refuses the
    access token (it has expired)."""
    wait_until("the provider to refuse the expired access token",
               lambda: op.userinfo_status(access_token)[0] == 401, SHORT_TTL + 4, interval=0.2)


# --- refresh ---------------------------------------------------------------------------


def test_an_expired_access_token_is_refreshed_and_the_upstream_gets_the_new_one(make_site, tmp_path):
    site = make_site(access_token_ttl=SHORT_TTL, session={"refresh_before": REFRESH_BEFORE})
    op = site.op
    browser, page = _logged_in(site, "alice")
    first = _upstream_token(page)
    # The upstream gets the provider's own access token, which it accepts.
    assert first and first == op.issued_tokens("access_token")[-1]
    status, claims = op.userinfo_status(first)
    assert status == 200 and claims["sub"] == "alice"
    assert op.token_grants("refresh_token", None) == 0

    _wait_provider_expired(op, first)
    page = browser.get(site.url(PAGE), follow=False)
    assert page.status == 200, page.text[:2000]
    assert _identity(page) == "alice"
    second = _upstream_token(page)
    assert second and second != first
    assert second == op.issued_tokens("access_token")[-1]
    status, claims = op.userinfo_status(second)
    assert status == 200 and claims["sub"] == "alice"
    assert op.token_grants("refresh_token") == 1

    # The new token is kept: the next request forwards it without refreshing.
    again = browser.get(site.url(PAGE), follow=False)
    assert again.status == 200 and _upstream_token(again) == second
    assert op.token_grants("refresh_token", None) == 1
    assert browser.get(site.url("/auth/userinfo")).json()["sub"] == "alice"

    # Every token the provider issued (login and refresh) and the session
    # cookie are known to the leak check.
    recorded = secret_registry.recorded()
    for kind in ("access_token", "refresh_token", "id_token"):
        issued = op.issued_tokens(kind)
        assert len(issued) == 2, kind
        assert all(token in recorded for token in issued), kind
    assert _session_value(browser) in recorded
    # ... and the scan would report one by its label, were it in a log.
    planted = tmp_path / "planted.log"
    planted.write_text(f"DEBUG refreshed refresh_token={op.issued_tokens('refresh_token')[-1]}\n")
    labels = {leak.label for leak in leaks.scan([planted], recorded)}
    assert labels == {f"{op.name} issued refresh_token"}


def test_racing_requests_at_refresh_time_refresh_once(make_site):
    site = make_site(access_token_ttl=SHORT_TTL, session={"refresh_before": REFRESH_BEFORE})
    op = site.op
    browser, page = _logged_in(site, "alice")
    first = _upstream_token(page)
    cookie = _session_value(browser)
    _wait_provider_expired(op, first)
    assert op.token_grants("refresh_token", None) == 0

    racers = 20
    start = threading.Barrier(racers)

    def one(_: int) -> Response:
        start.wait(timeout=10)
        return site.with_cookie(cookie, accept="text/html")

    with ThreadPoolExecutor(racers) as pool:
        answers = list(pool.map(one, range(racers)))

    assert [a.status for a in answers] == [200] * racers, [a.describe() for a in answers
                                                           if a.status != 200][:2]
    assert all(a.layer == "upstream" for a in answers)
    assert {_identity(a) for a in answers} == {"alice"}
    tokens = {_upstream_token(a) for a in answers}
    assert len(tokens) == 1 and first not in tokens
    assert op.token_grants("refresh_token", None) == 1
    assert tokens == {op.issued_tokens("access_token")[-1]}


def test_a_refused_refresh_ends_the_session(make_site):
    site = make_site(access_token_ttl=SHORT_TTL, session={"refresh_before": REFRESH_BEFORE})
    op = site.op
    browser, _ = _logged_in(site, "alice")
    cookie = _session_value(browser)
    assert op.revoke_grants("alice") >= 1

    # Until the refresh is due the session stands; then the provider refuses
    # the refresh and the navigation is sent to log in again.
    last = wait_until("the session to end after a refused refresh",
                      lambda: (p := browser.get(site.url(PAGE), follow=False)).status != 200 and p,
                      SHORT_TTL + 4, interval=0.25)
    assert _sent_to_login(last), (last.status, last.headers)
    assert op.token_grants("refresh_token", 400) == 1
    assert op.token_grants("refresh_token", 200) == 0
    # The session is gone, not merely without a token.
    assert site.with_cookie(cookie).status == 401
    assert _sent_to_login(Browser().get(site.url(PAGE), follow=False,
                                        headers={"Cookie": f"{SESSION_COOKIE}={cookie}"}))
    assert browser.get(site.url("/auth/userinfo")).status == 401
    # Still one refused attempt: an ended session is not refreshed again.
    assert op.token_grants("refresh_token", None) == 1


# --- lifetimes ---------------------------------------------------------------------------

INACTIVITY = 3  # seconds


def test_an_idle_session_ends_and_an_active_one_outlives_the_idle_limit(make_site):
    site = make_site(session={"inactivity_timeout": f"{INACTIVITY}s", "cache_ttl": "100ms"})
    browser, _ = _logged_in(site, "alice")
    cookie = _session_value(browser)

    # Active: a request every 0.4 s, for longer than the idle limit.
    started = time.monotonic()
    while time.monotonic() - started < INACTIVITY + 1.5:
        page = browser.get(site.url(PAGE), follow=False)
        assert page.status == 200 and _identity(page) == "alice", (page.status, time.monotonic() - started)
        time.sleep(0.4)

    # Idle: any probe of the session would be activity, so wait it out. The
    # store counts whole seconds: INACTIVITY + 1 s is past it for sure.
    time.sleep(INACTIVITY + 1.1)
    assert _sent_to_login(browser.get(site.url(PAGE), follow=False))
    assert site.with_cookie(cookie).status == 401


LIFETIME = 5  # seconds: the shortest gatehouse accepts


def test_the_absolute_lifetime_ends_an_active_session(make_site, idp, tmp_path):
    # A shorter lifetime is refused.
    config = configs.single_issuer_config(idp)
    secret = tmp_path / "secret"
    secret.write_text("not-a-real-client-secret-0123456789")
    config["login"] = {
        "callback_url": "http://127.0.0.1:9/auth/callback",
        "providers": [{"name": "op", "issuer": "http://127.0.0.1:9", "client_id": "gatehouse",
                       "client_secret_file": str(secret)}],
        "session": {"lifetime": f"{LIFETIME - 1}s"},
    }
    path = tmp_path / "short-lifetime.yaml"
    path.write_text(yaml.safe_dump(config))
    refused = check_config(path)
    assert refused.returncode != 0
    assert "login.session.lifetime" in refused.stdout + refused.stderr

    # The cookie and userinfo announce the lifetime; a session in constant
    # use still ends when it is up, and not before.
    site = make_site(session={"lifetime": f"{LIFETIME}s", "inactivity_timeout": "0s",
                              "cache_ttl": "100ms"})
    browser = Browser()
    before = time.time()
    page = browser.login_at_provider(site.url(PAGE), "alice")
    assert page.status == 200 and _identity(page) == "alice"
    set_cookie = next(c for h in page.hops for c in h.set_cookies if c.startswith(f"{SESSION_COOKIE}="))
    assert f"Max-Age={LIFETIME}" in set_cookie
    cookie = _session_value(browser)
    expires_at = browser.get(site.url("/auth/userinfo")).json()["expires_at"]
    assert before - 1 <= expires_at - LIFETIME <= time.time() + 1
    while True:
        r = site.with_cookie(cookie)
        elapsed = time.time() - before
        if r.status != 200:
            break
        assert elapsed < LIFETIME + 2, "the session outlived its lifetime"
        time.sleep(0.3)
    assert r.status == 401, r.describe()
    # The store counts whole seconds from the login's second.
    assert elapsed >= LIFETIME - 1.5, f"ended after {elapsed:.1f}s, before its lifetime"
    navigation = site.with_cookie(cookie, accept="text/html")
    assert navigation.status == 302, navigation.describe()
    assert navigation.header("location").startswith("/auth/login?rd=")


# --- two identity providers -----------------------------------------------------------------


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self.tags: list[str] = []
        self._href: str | None = None
        self.lang: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        a = dict(attrs)
        if tag == "html":
            self.lang = a.get("lang")
        if tag == "a":
            self._href = a.get("href") or ""

    def handle_data(self, data: str) -> None:
        if self._href is not None and data.strip():
            self.links.append((data.strip(), self._href))
            self._href = None


def test_two_providers_offer_a_choice_and_each_logs_in_its_own_user(make_site):
    site = make_site(providers=("first", "second"))
    choice = Browser().get(site.url(PAGE))  # the rule's login redirect, followed
    assert choice.status == 200 and choice.url.startswith(site.url("/auth/login?rd="))
    assert "text/html" in choice.headers["content-type"]
    assert "no-store" in choice.headers.get("cache-control", "")
    parsed = _Links()
    parsed.feed(choice.text)
    assert "script" not in parsed.tags and "<script" not in choice.text.lower()
    assert parsed.lang and "title" in parsed.tags and "main" in parsed.tags and "nav" in parsed.tags
    links = dict(parsed.links)
    assert set(links) == {"first", "second"}
    for name, href in links.items():
        query = parse_qs(urlsplit(href).query)
        assert urlsplit(href).path == "/auth/login"
        # The return URL the rule's redirect carried (absolute: Envoy's host).
        assert query == {"provider": [name], "rd": [site.url(PAGE)]}

    for name, user in (("second", "bob"), ("first", "carol")):
        browser = Browser()
        page = browser.login_at_provider(site.url(links[name]), user)
        assert page.status == 200 and page.url == site.url(PAGE), page.text[:2000]
        assert _identity(page) == user
        # The login went through that provider and no other.
        issuers = {f"{urlsplit(h.url).scheme}://{urlsplit(h.url).netloc}" for h in page.hops}
        assert site.ops[name].issuer in issuers
        assert all(op.issuer not in issuers for other, op in site.ops.items() if other != name)
        info = browser.get(site.url("/auth/userinfo")).json()
        assert info["provider"] == name and info["sub"] == user


# --- logout -----------------------------------------------------------------------------------


def test_rp_initiated_logout_ends_both_sessions_and_returns_to_the_post_logout_url(make_site):
    site = make_site(post_logout=True)
    op = site.op
    browser, _ = _logged_in(site, "alice")
    cookie = _session_value(browser)

    out = browser.get(site.url("/auth/logout"), follow=False)
    assert out.status == 302
    location = out.headers["location"]
    end_session = op.discovery["end_session_endpoint"]
    assert location.startswith(end_session + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["id_token_hint"] == [op.issued_tokens("id_token")[-1]]
    assert query["post_logout_redirect_uri"] == [site.url(SIGNED_OUT)]
    assert query["client_id"] == ["gatehouse"]
    # The session cookie is cleared at once, and the session is gone.
    assert browser.cookies.get(SESSION_COOKIE) is None
    assert site.with_cookie(cookie).status == 401

    # The provider asks for confirmation, then sends the browser back.
    landed = browser.logout_at_provider(location)
    assert landed.status == 200, landed.text[:2000]
    assert landed.url.split("?")[0] == site.url(SIGNED_OUT)
    op.wait_log("event end_session.success")

    # The provider's session is gone too: logging in again asks who you are.
    again = browser.get(site.url(PAGE))
    assert again.url.startswith(op.issuer)
    assert again.has_form(field_value=("prompt", "login")), again.text[:2000]


# --- session fixation ---------------------------------------------------------------------------


def test_a_login_never_keeps_the_session_id_the_browser_came_with(make_site):
    site = make_site()
    # An attacker's own valid session, planted in the victim's browser.
    attacker, _ = _logged_in(site, "mallory")
    planted = _session_value(attacker)
    victim = Browser()
    victim.cookies.store(f"{SESSION_COOKIE}={planted}; Path=/; Secure; HttpOnly", site.base)
    assert _identity(victim.get(site.url(PAGE))) == "mallory"  # it is live

    # The victim logs in (the link starts a login though a session exists).
    page = victim.login_at_provider(site.url(f"/auth/login?rd={PAGE}"), "alice")
    assert page.status == 200 and _identity(page) == "alice"
    fresh = _session_value(victim)
    assert fresh != planted
    # The planted id no longer authenticates anybody; the new one is alice.
    assert site.with_cookie(planted).status == 401
    assert _sent_to_login(attacker.get(site.url(PAGE), follow=False))
    assert _identity(site.with_cookie(fresh, accept="text/html")) == "alice"

    # A value the attacker made up is not adopted either.
    made_up = "attacker-chosen-session-id-0123456789abcdefghijklmnop"
    secret_registry.record(made_up, "made-up session id")
    other = Browser()
    other.cookies.store(f"{SESSION_COOKIE}={made_up}; Path=/; Secure; HttpOnly", site.base)
    page = other.login_at_provider(site.url(PAGE), "bob")
    assert page.status == 200 and _identity(page) == "bob"
    assert _session_value(other) != made_up
    assert site.with_cookie(made_up).status == 401
