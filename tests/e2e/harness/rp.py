"""A tiny relying party for tests that need real user tokens from the
OpenID Provider (harness/oidc.py): `TinyRp` receives the authorization
code (and back-channel logout tokens), `Flow` is one code flow with PKCE
S256, and `sign_in` logs a user in through the scripted browser and
redeems the code, verifying the ID token with jwcrypto."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests
from jwcrypto import jwk as jw_jwk
from jwcrypto import jwt as jw_jwt

from harness import secret_registry
from harness.browser import Browser
from harness.oidc import OidcProvider, client_spec


class TinyRp:
    """A relying party on a free loopback port: `/callback` keeps the
    authorization response, `/backchannel-logout` the logout tokens posted to
    it, `/signed-out` is the post-logout landing page."""

    def __init__(self) -> None:
        rp = self
        self.callbacks: list[dict[str, str]] = []
        self.logout_tokens: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: bytes = b"ok") -> None:
                self.send_response(status)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                url = urllib.parse.urlsplit(self.path)
                if url.path == "/callback":
                    rp.callbacks.append(dict(urllib.parse.parse_qsl(url.query)))
                    self._reply(200, b"<p>callback received</p>")
                elif url.path == "/signed-out":
                    self._reply(200, b"<p>signed out</p>")
                else:
                    self._reply(404, b"not found")

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                if self.path == "/backchannel-logout":
                    token = dict(urllib.parse.parse_qsl(body)).get("logout_token")
                    if token:
                        rp.logout_tokens.append(token)
                        self._reply(200)
                        return
                self._reply(400, b"bad request")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def redirect_uri(self) -> str:
        return f"{self.base}/callback"

    def client(self, client_id: str, backchannel: bool = True):
        return client_spec(client_id, self.redirect_uri,
                           post_logout_redirect_uri=f"{self.base}/signed-out",
                           backchannel_logout_uri=f"{self.base}/backchannel-logout" if backchannel else None)


class Flow:
    """One authorization code flow's request (state, nonce, PKCE verifier)."""

    def __init__(self, op: OidcProvider, rp: TinyRp, client_id: str, scope: str = "openid email groups",
                 pkce: bool = True):
        self.op, self.rp, self.client = op, rp, op.client(client_id)
        self.state = secrets.token_urlsafe(16)
        self.nonce = secrets.token_urlsafe(16)
        self.verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(self.verifier.encode()).digest())
        params = {"response_type": "code", "client_id": client_id, "redirect_uri": rp.redirect_uri,
                  "scope": scope, "state": self.state, "nonce": self.nonce}
        if pkce:
            params.update(code_challenge=challenge.rstrip(b"=").decode(), code_challenge_method="S256")
        self.url = f"{op.discovery['authorization_endpoint']}?{urllib.parse.urlencode(params)}"

    def callback(self) -> dict[str, str]:
        """The authorization response for this flow's state."""
        found = [c for c in self.rp.callbacks if c.get("state") == self.state]
        assert len(found) == 1, f"expected one callback with our state, got {self.rp.callbacks}"
        return found[0]

    def token_request(self, form: dict[str, str]) -> requests.Response:
        auth = (self.client.client_id, self.client.client_secret)  # client_secret_basic
        return requests.post(self.op.discovery["token_endpoint"], data=form, auth=auth, timeout=10)

    def redeem(self, code: str, verifier: str | None = None) -> requests.Response:
        return self.token_request({"grant_type": "authorization_code", "code": code,
                                   "redirect_uri": self.rp.redirect_uri,
                                   "code_verifier": verifier or self.verifier})

    def refresh(self, refresh_token: str) -> requests.Response:
        return self.token_request({"grant_type": "refresh_token", "refresh_token": refresh_token})


def tokens_of(response: requests.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body = response.json()
    for name in ("access_token", "refresh_token", "id_token"):
        secret_registry.record_token(body.get(name), f"provider {name}")
    return body


def verify_id_token(op: OidcProvider, token: str, client_id: str, nonce: str) -> dict[str, Any]:
    """jwcrypto, against the keys published at jwks_uri."""
    keys = jw_jwk.JWKSet.from_json(json.dumps(op.public_jwks()))
    verified = jw_jwt.JWT(jwt=token, key=keys, algs=["RS256"], check_claims={
        "iss": op.issuer, "aud": client_id, "exp": None, "nonce": nonce})
    return json.loads(verified.claims)


def userinfo(op: OidcProvider, access_token: str) -> requests.Response:
    return requests.get(op.discovery["userinfo_endpoint"],
                        headers={"Authorization": f"Bearer {access_token}"}, timeout=10)


def sign_in(op: OidcProvider, rp: TinyRp, browser: Browser, user: str,
            client_id: str = "rp") -> tuple[Flow, dict[str, Any], dict[str, Any]]:
    """Login (and consent) through the browser, code → tokens; returns the
    flow, the token response and the verified ID token's claims."""
    flow = Flow(op, rp, client_id)
    page = browser.login_at_provider(flow.url, user)
    assert page.status == 200 and page.url.startswith(rp.redirect_uri), page.hop_urls()
    callback = flow.callback()
    assert callback["iss"] == op.issuer  # RFC 9207
    body = tokens_of(flow.redeem(callback["code"]))
    return flow, body, verify_id_token(op, body["id_token"], client_id, flow.nonce)
