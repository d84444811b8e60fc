"""Renku-style per-user backend tokens (issue 14) through the shipped Envoy
config: a real oidc-provider plays Keycloak (the login), a second one plays
GitLab and JupyterHub (two OAuth2 clients on it); gatehouse keeps each
user's backend tokens in a real Redis, encrypted, and sends the right one
upstream (the echo upstream reports the `Authorization` it got).

- login chains through the eager backend (GitLab);
- a GitLab route gets the user's GitLab token, never the Keycloak one,
  with a session or with a bearer JWT of the same subject;
- two users get two tokens; a user without one gets a 401 naming the
  backend;
- a lazy backend (JupyterHub, `token {token}`) 302s a browser to its
  authorization and 401s an API client;
- the GitLab token is refreshed after it expires;
- logout, and a back-channel logout from Keycloak, drop the backend tokens;
- no token text in any Redis key or value.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import configs, oidc
from harness.browser import Browser
from harness.envoy import EnvoyInstance
from harness.httpc import Client
from harness.procs import free_port, wait_until

GITLAB_TTL = 4  # seconds: the GitLab access tokens, for the refresh test


@dataclass
class Renku:
    base: str
    keycloak: oidc.OidcProvider
    gitlab: oidc.OidcProvider
    client: Client
    redis: object

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


@pytest.fixture
def renku(gatehouse_factory, oidc_provider_factory, redis_server, idp, echo, tmp_path: Path):
    g_port, g_http = free_port(), free_port()
    envoy = EnvoyInstance(tmp_path / "envoy", gatehouse_port=g_port, upstream_port=echo.port,
                          gatehouse_http_port=g_http, name="envoy-renku")
    base = f"http://127.0.0.1:{envoy.ports.listener}"
    keycloak = oidc_provider_factory(
        [oidc.client_spec("gatehouse", f"{base}/auth/callback",
                          backchannel_logout_uri=f"{base}/auth/backchannel-logout")],
        auto_consent=True, access_token_ttl=300, id_token_ttl=300)
    gitlab = oidc_provider_factory(
        [oidc.client_spec("renku-gitlab", f"{base}/auth/backends/gitlab/callback"),
         oidc.client_spec("renku-hub", f"{base}/auth/backends/hub/callback")],
        auto_consent=True, access_token_ttl=GITLAB_TTL, id_token_ttl=300)
    secret = lambda op, cid: str(op.client(cid).write_secret(tmp_path / f"secret-{cid}"))  # noqa: E731
    key_file = tmp_path / "store.key"
    key_file.write_text("ab" * 32 + "\n")
    config = configs.single_issuer_config(idp)
    config["store"] = {"redis": {"url": redis_server.url}, "encryption_key_file": str(key_file)}
    config["policy"] = {
        "default": "deny",
        "rules": [
            {"name": "gitlab", "match": {"path": {"prefix": "/gitlab/"}}, "login": "redirect",
             "headers": ["user"], "upstream_credential": {"backend": "gitlab"}},
            {"name": "hub", "match": {"path": {"prefix": "/hub/"}}, "login": "redirect",
             "headers": ["user"],
             "upstream_credential": {"backend": "hub", "format": "token {token}"}},
        ],
    }
    config["login"] = {
        "callback_url": f"{base}/auth/callback",
        "allowed_redirect_domains": ["127.0.0.1"],
        "providers": [{"name": "keycloak", "issuer": keycloak.issuer, "client_id": "gatehouse",
                       "client_secret_file": secret(keycloak, "gatehouse"),
                       "claims": {"username": "sub", "email": "email"}}],
    }
    config["backends"] = [
        {"name": "gitlab", "issuer": gitlab.issuer, "client_id": "renku-gitlab",
         "client_secret_file": secret(gitlab, "renku-gitlab"), "scopes": ["openid"],
         "login": "eager"},
        {"name": "hub", "authorize_url": gitlab.discovery["authorization_endpoint"],
         "token_url": gitlab.discovery["token_endpoint"], "client_id": "renku-hub",
         "client_secret_file": secret(gitlab, "renku-hub"), "scopes": ["openid"]},
    ]
    g = gatehouse_factory(config, name="gatehouse-renku", port=g_port, http_port=g_http)
    g.wait_serving()
    yield Renku(base, keycloak, gitlab, Client(envoy.ports.listener), redis_server)
    envoy.stop()


def _upstream(page) -> dict[str, str]:
    return dict(page.json()["header_list"])


def _bearer(page) -> str:
    auth = _upstream(page).get("authorization", "")
    assert auth.startswith("Bearer "), auth
    return auth[len("Bearer "):]


def _login(renku: Renku, user: str, path: str = "/gitlab/projects") -> tuple[Browser, object]:
    browser = Browser()
    page = browser.login_at_provider(renku.url(path), user)
    assert page.status == 200, (page.status, page.text[:300])
    assert _upstream(page).get("x-auth-request-user") == user
    return browser, page


def test_login_chains_into_gitlab_and_each_user_gets_their_own_token(renku, mint):
    alice, page = _login(renku, "alice")
    # The login went through GitLab's authorization before landing.
    assert any("/auth/backends/gitlab/callback" in h.url for h in page.hops), page.hop_urls()
    token = _bearer(page)
    assert renku.gitlab.userinfo_status(token)[0] == 200, "a token GitLab accepts"
    assert renku.keycloak.userinfo_status(token)[0] != 200, "never the Keycloak token"
    assert _upstream(page)["x-auth-request-user"] == "alice"
    _, bob_page = _login(renku, "bob")
    assert _bearer(bob_page) != token
    # A bearer JWT of the same subject (the Renku UI's Keycloak token)
    # finds the same GitLab token; the JWT itself is not forwarded.
    jwt = mint.token(identity={"sub": "alice", "preferred_username": "alice"})
    r = renku.client.get("/gitlab/api", token=jwt)
    assert r.status == 200, r.describe()
    assert dict(r.json()["header_list"])["authorization"] == f"Bearer {token}"
    # Someone who never authorized at GitLab: 401 naming the backend.
    carol = mint.token(identity={"sub": "carol", "preferred_username": "carol"})
    r = renku.client.get("/gitlab/api", token=carol)
    assert r.status == 401, r.describe()
    body = r.json()
    assert body["error"] == "backend_login_required" and "gitlab" in body["error_description"]
    assert "backend_login_required" in r.header("www-authenticate")


def test_a_lazy_backend_sends_browsers_to_authorize_and_refuses_api_clients(renku):
    alice, _ = _login(renku, "alice")
    # The API client way (no text/html): 401 naming the backend.
    session = alice.cookies.get("__Host-gatehouse_session").value
    r = renku.client.get("/hub/api", headers={"Accept": "application/json",
                                             "Cookie": f"__Host-gatehouse_session={session}"})
    assert r.status == 401 and "hub" in r.json()["error_description"], r.describe()
    # A navigation: 302 to the backend's authorization, then back, with the
    # JupyterHub token in its own format.
    first = alice.get(renku.url("/hub/home"), follow=False)
    assert first.status == 302
    assert first.headers["location"].startswith("/auth/backends/hub/login?rd="), first.headers
    page = alice.get(renku.url("/hub/home"))
    assert page.status == 200, page.text[:300]
    auth = _upstream(page)["authorization"]
    assert auth.startswith("token ") and renku.gitlab.userinfo_status(auth[6:])[0] == 200


def test_the_gitlab_token_is_refreshed_after_it_expires(renku):
    alice, page = _login(renku, "alice")
    first = _bearer(page)
    wait_until("the GitLab token to expire",
               lambda: renku.gitlab.userinfo_status(first)[0] != 200, GITLAB_TTL + 5)
    again = alice.get(renku.url("/gitlab/projects"))
    assert again.status == 200
    second = _bearer(again)
    assert second != first and renku.gitlab.userinfo_status(second)[0] == 200
    assert renku.gitlab.token_grants("refresh_token") >= 1


def test_logout_drops_the_backend_tokens_and_redis_holds_no_token_text(renku, mint):
    alice, page = _login(renku, "alice")
    token = _bearer(page)
    # Encrypted at rest: no token, refresh token or subject in any key or value.
    db = renku.redis.client()
    secrets = [token, *renku.gitlab.issued_tokens(), *renku.keycloak.issued_tokens()]
    for key in db.scan_iter("*"):
        value = db.dump(key) or b""
        for s in secrets:
            assert s.encode() not in key and s.encode() not in value, key
        assert b"alice" not in key
    assert alice.get(renku.url("/auth/logout?rd=/"), follow=False).status == 302
    jwt = mint.token(identity={"sub": "alice", "preferred_username": "alice"})
    r = renku.client.get("/gitlab/api", token=jwt)
    assert r.status == 401 and r.json()["error"] == "backend_login_required", r.describe()


def test_a_back_channel_logout_drops_the_backend_tokens(renku, mint):
    _login(renku, "alice")
    _login(renku, "bob")
    jwt = lambda sub: mint.token(identity={"sub": sub, "preferred_username": sub})  # noqa: E731
    assert renku.client.get("/gitlab/api", token=jwt("alice")).status == 200
    # Keycloak ends alice's sessions: her GitLab token goes with them.
    result = renku.keycloak.end_session_for("alice")
    assert result["notified"] == ["gatehouse"] and result["errors"] == [], result
    r = renku.client.get("/gitlab/api", token=jwt("alice"))
    assert r.status == 401 and r.json()["error"] == "backend_login_required", r.describe()
    assert renku.client.get("/gitlab/api", token=jwt("bob")).status == 200, "bob keeps his"
