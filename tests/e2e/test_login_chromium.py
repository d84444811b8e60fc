"""One real browser through the whole login (issue 13): headless Chromium
(Debian `chromium`, driven by `/usr/bin/chromedriver` through PyPI
selenium) opens a `login: redirect` page through Envoy (the shipped
envoy/envoy.yaml), is sent to gatehouse's /auth/login and on to the real
oidc-provider's login page, signs in there, and lands back on the page it
asked for, whose body (the echo upstream's report of the request it got)
shows the identity header gatehouse set. Screenshots of the provider's
login page and of the landing page are kept in the test's tmp dir and
copied to tests/artifacts/ (ignored by git).

Secure cookies over plain http: the session cookie is
`__Host-gatehouse_session` (`Secure`, `Path=/`, no `Domain`), and so is the
browser-binding cookie of /auth/login. A browser stores and sends a
`Secure` cookie only in a secure context; Chromium counts loopback origins
as potentially trustworthy (the Secure Contexts spec): `http://localhost`
and `http://127.0.0.0/8`. Checked with Chromium 156 while this was
written: it stores a `__Host-` cookie from `http://127.0.0.1:<port>` and
from `http://localhost:<port>` and sends it back on both. So the test uses
127.0.0.1, as the rest of the suite (and harness/browser.py's cookie
rules) do, and asserts that the landing page's cookies, read back through
WebDriver, hold the session cookie with `secure` and `httpOnly`: should a
Chromium stop treating the IP literal so, this fails saying so, and HOST
= "localhost" (the name Chromium has always treated as secure) is the
fix.

Skips, saying why, when selenium, Chromium or chromedriver is missing or
Chromium cannot start (tests/setup.sh installs them)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from harness import configs, oidc
from harness.browser import DEFAULT_PASSWORD
from harness.envoy import EnvoyInstance
from harness.procs import free_port

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
SESSION_COOKIE = "__Host-gatehouse_session"
HOST = "127.0.0.1"  # see the module doc
USER = "carol"


@pytest.fixture
def site(gatehouse_factory, oidc_provider_factory, idp, echo, tmp_path: Path):
    """Envoy (shipped config) in front of a gatehouse whose `/ui/` rule
    sends browsers to log in at a real oidc-provider; the browser-facing
    URLs use HOST (see the module doc)."""
    g_port, g_http = free_port(), free_port()
    envoy = EnvoyInstance(tmp_path / "envoy", gatehouse_port=g_port, upstream_port=echo.port,
                          gatehouse_http_port=g_http, name="envoy-chromium")
    base = f"http://{HOST}:{envoy.ports.listener}"
    op = oidc_provider_factory([oidc.client_spec("gatehouse", f"{base}/auth/callback")],
                               auto_consent=True)
    secret = op.client("gatehouse").write_secret(tmp_path / "client-secret")
    config = configs.single_issuer_config(idp)
    config["policy"] = {
        "default": "deny",
        "rules": [{"name": "ui", "match": {"path": {"prefix": "/ui/"}}, "login": "redirect",
                   "headers": ["user", "email"]}],
    }
    config["login"] = configs.login(base, op, secret, domains=(HOST,))
    g = gatehouse_factory(config, name="gatehouse-chromium", port=g_port, http_port=g_http)
    g.wait_serving()
    yield {"base": base, "op": op}
    envoy.stop()


def _echoed(driver: Any) -> dict:
    """The echo upstream's JSON report, as Chromium shows it (a <pre>)."""
    from selenium.webdriver.common.by import By

    return json.loads(driver.find_element(By.TAG_NAME, "body").text)


def test_chromium_logs_in_through_envoy_and_lands_on_the_protected_page(chrome, site, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    base, op = site["base"], site["op"]
    target = f"{base}/ui/dashboard?tab=1"
    wait = WebDriverWait(chrome, 15)
    started = time.monotonic()

    chrome.get(target)
    login = wait.until(ec.presence_of_element_located((By.NAME, "login")))
    # Gatehouse sent the browser on to the provider's own login page.
    assert chrome.current_url.startswith(f"{op.issuer}/interaction/"), chrome.current_url
    chrome.save_screenshot(str(tmp_path / "provider-login.png"))
    login.send_keys(USER)
    chrome.find_element(By.NAME, "password").send_keys(DEFAULT_PASSWORD)
    chrome.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda d: d.current_url.startswith(base) and "/auth/" not in d.current_url)
    elapsed = time.monotonic() - started

    assert chrome.current_url == target, chrome.current_url
    seen = _echoed(chrome)
    assert seen["path"] == "/ui/dashboard?tab=1", seen
    headers = seen["headers"]
    assert headers.get("x-auth-request-user") == USER, seen
    assert headers.get("x-auth-request-email") == f"{USER}@example.org", seen
    # The session cookie is gatehouse's credential: not passed upstream.
    assert SESSION_COOKIE not in headers.get("cookie", ""), seen
    # Chromium kept the __Host- session cookie over plain http on loopback.
    cookies = {c["name"]: c for c in chrome.get_cookies()}
    session = cookies.get(SESSION_COOKIE)
    assert session is not None, (f"Chromium did not keep the Secure session cookie from "
                                 f"http://{HOST} (see the module doc): {sorted(cookies)}")
    assert session["secure"] and session["httpOnly"] and session["path"] == "/", session
    assert "domain" not in session or session["domain"].lstrip(".") == HOST, session

    shot = tmp_path / "landed.png"
    assert chrome.save_screenshot(str(shot)) and shot.stat().st_size > 1000
    ARTIFACTS.mkdir(exist_ok=True)
    for png in ("provider-login.png", "landed.png"):
        shutil.copy(tmp_path / png, ARTIFACTS / f"login-chromium-{png}")
    print(f"chromium login through Envoy took {elapsed:.2f}s; screenshots in {ARTIFACTS}")

