"""One real browser: headless Chromium (Debian `chromium`, driven by
`/usr/bin/chromedriver` through PyPI selenium) signs in on the test OpenID
Provider's login page and lands on the relying party's redirect URI. The
screenshot of the landing page is kept in the test's tmp dir and copied to
tests/artifacts/ (ignored by git). Skips, saying why, when Chromium,
chromedriver or selenium is missing (tests/setup.sh installs them)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import shutil
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable


from harness.oidc import OidcProvider, client_spec

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


class _Landing(BaseHTTPRequestHandler):
    """The relying party's redirect URI: a page that says who came back."""

    hits: list[dict[str, str]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
        self.hits.append(query)
        body = (b"<!DOCTYPE html><title>Signed in</title><h1 id=landed>Back at the relying party</h1>"
                b"<p>The provider returned an authorization code.</p>")
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_headless_chromium_signs_in_at_the_provider(
        chrome: Any, oidc_provider_factory: Callable[..., OidcProvider], tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    landing = ThreadingHTTPServer(("127.0.0.1", 0), _Landing)
    threading.Thread(target=landing.serve_forever, daemon=True).start()
    redirect_uri = f"http://127.0.0.1:{landing.server_address[1]}/callback"
    try:
        op = oidc_provider_factory([client_spec("rp", redirect_uri)], auto_consent=True)
        state = secrets.token_urlsafe(12)
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
        url = op.discovery["authorization_endpoint"] + "?" + urllib.parse.urlencode({
            "response_type": "code", "client_id": "rp", "redirect_uri": redirect_uri,
            "scope": "openid email", "state": state, "nonce": secrets.token_urlsafe(12),
            "code_challenge": challenge.decode(), "code_challenge_method": "S256"})

        started = time.monotonic()
        chrome.get(url)
        wait = WebDriverWait(chrome, 15)
        login = wait.until(ec.presence_of_element_located((By.NAME, "login")))
        assert chrome.current_url.startswith(f"{op.issuer}/interaction/")
        chrome.save_screenshot(str(tmp_path / "provider-login.png"))
        login.send_keys("alice")
        chrome.find_element(By.NAME, "password").send_keys("correct horse battery staple")
        chrome.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(ec.presence_of_element_located((By.ID, "landed")))
        elapsed = time.monotonic() - started

        assert chrome.current_url.startswith(redirect_uri)
        assert [h["state"] for h in _Landing.hits if "code" in h] == [state]
        shot = tmp_path / "landed.png"
        assert chrome.save_screenshot(str(shot)) and shot.stat().st_size > 1000
        ARTIFACTS.mkdir(exist_ok=True)
        for png in ("provider-login.png", "landed.png"):
            shutil.copy(tmp_path / png, ARTIFACTS / f"browser-smoke-{png}")
        print(f"chromium login took {elapsed:.2f}s; screenshots in {tmp_path} and {ARTIFACTS}")
    finally:
        landing.shutdown()
        landing.server_close()
