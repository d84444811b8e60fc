"""Opaque tokens (RFC 7662 introspection) and token exchange (RFC 8693)
through the shipped Envoy config, against a real oidc-provider (npm).

The provider issues opaque access tokens carrying the user's email and
groups (`token_claims`); gatehouse introspects them with its own client
(`gatehouse-rs`), and exchanges them (`token_exchange`) for tokens meant
for `https://api.internal`, which the provider implements as a registered
token-exchange grant. The echo upstream reports what it got, and the
provider counts what it answered.

- an opaque user token is accepted with its identity, groups and mapped
  scopes; a JWT never goes to introspection; an unknown token is 401 and
  its answer remembered; a revoked token stops working within
  `max_cache_ttl`; the provider unreachable is a 503 for opaque tokens
  (JWTs still pass);
- an exchange rule sends the exchanged token upstream (its `aud` is the
  audience, its subject the caller's), reused until it nears its expiry;
  an audience the provider refuses is a 403; exchange and gatehouse's own
  reissue work on one rule;
- no token reaches any log (the session's leak check).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import requests

from harness import configs, oidc
from harness.browser import Browser
from harness.envoy import EnvoyInstance
from harness.gatehouse import GatehouseInstance
from harness.httpc import Client
from harness.procs import free_port, wait_until
from harness.rp import TinyRp, sign_in

API = "https://api.internal"
MAX_CACHE_TTL = 2  # seconds: how late a revocation is noticed


@dataclass
class Setup:
    op: oidc.OidcProvider
    rp: TinyRp
    client: Client
    gatehouse: object

    def user_token(self, user: str) -> str:
        """An opaque access token of `user`, from a real code flow."""
        _, body, _ = sign_in(self.op, self.rp, Browser(), user, client_id="rp")
        token = body["access_token"]
        assert token.count(".") != 2, "the provider's access tokens are opaque"
        return token

    def introspect(self, token: str) -> dict:
        """The provider's own introspection answer, asked as gatehouse."""
        c = self.op.client("gatehouse-rs")
        r = requests.post(self.op.discovery["introspection_endpoint"], data={"token": token},
                          auth=(c.client_id, c.client_secret), timeout=5)
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture(scope="module")
def rp():
    server = TinyRp()
    yield server
    server.close()


@pytest.fixture(scope="module")
def setup(oidc_provider_module_factory, rp, echo, idp, keys, tmp_path_factory) -> Iterator[Setup]:
    tmp: Path = tmp_path_factory.mktemp("oauth-calls")
    op = oidc_provider_module_factory(
        [rp.client("rp"),
         oidc.client_spec("gatehouse-rs", rp.redirect_uri,
                          grant_types=["authorization_code", oidc.TOKEN_EXCHANGE_GRANT])],
        groups={"alice": ["admins", "staff"], "bob": ["staff"]}, auto_consent=True,
        access_token_ttl=600, token_claims=True, token_exchange_audiences=[API])
    secret = op.client("gatehouse-rs").write_secret(tmp / "rs.secret")
    g_port, g_http = free_port(), free_port()
    envoy = EnvoyInstance(tmp / "envoy", gatehouse_port=g_port, upstream_port=echo.port,
                          gatehouse_http_port=g_http, name="envoy-oauth")
    config = configs.single_issuer_config(idp)
    config["scopes"] = {"group_mapping": {"admin": ["admins"]}}
    config["introspection"] = {
        "name": "op", "url": op.discovery["introspection_endpoint"], "client_id": "gatehouse-rs",
        "client_secret_file": str(secret), "issuer": op.issuer,
        "claims": {"username": "sub", "email": "email", "groups": "groups"},
        "max_cache_ttl": f"{MAX_CACHE_TTL}s", "negative_cache_ttl": "60s", "timeout": "2s",
    }
    config["token_exchange"] = {
        "url": op.discovery["token_endpoint"], "client_id": "gatehouse-rs",
        "client_secret_file": str(secret), "refresh_margin": "5s",
    }
    config["issuer"] = configs.internal_issuer(f"http://127.0.0.1:{envoy.ports.listener}")
    del config["issuer"]["links"]  # reissue only
    config["policy"] = {"default": "deny", "rules": [
        {"name": "admin", "match": {"path": {"prefix": "/oc/admin/"}}, "scopes": ["admin"],
         "headers": ["user", "email", "groups", "scopes"]},
        {"name": "opaque-only", "match": {"path": {"prefix": "/oc/opaque/"}},
         "credentials": ["introspected"], "headers": ["user"]},
        {"name": "api", "match": {"path": {"prefix": "/oc/api/"}}, "headers": ["user"],
         "exchange": {"audience": API, "scopes": ["openid"]}},
        {"name": "api-and-reissue", "match": {"path": {"prefix": "/oc/both/"}},
         "exchange": {"audience": API}, "audience": configs.INTERNAL_AUDIENCE},
        {"name": "elsewhere", "match": {"path": {"prefix": "/oc/elsewhere/"}},
         "exchange": {"audience": "https://not-allowed.internal"}},
        {"name": "any", "match": {"path": {"prefix": "/"}}, "headers": ["user"]},
    ]}
    g = GatehouseInstance(tmp / "gatehouse", config, name="gatehouse-oauth", port=g_port,
                          http_port=g_http,
                          files={configs.ISSUER_KEY_FILE: keys.internal.private_pem()})
    try:
        g.wait_serving()
        yield Setup(op, rp, Client(envoy.ports.listener), g)
    finally:
        g.stop()
        envoy.stop()


def upstream_headers(response) -> dict[str, str]:
    """The request headers the echo upstream received (lower-case names)."""
    return {k.lower(): v for k, v in response.upstream["header_list"]}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_an_opaque_user_token_names_the_user_with_groups_and_mapped_scopes(setup: Setup) -> None:
    token = setup.user_token("alice")
    before = setup.op.introspections()
    r = setup.client.get("/oc/admin/panel", headers=bearer(token))
    assert r.status == 200, r.describe()
    up = upstream_headers(r)
    assert up["x-auth-request-user"] == "alice"
    assert up["x-auth-request-email"] == "alice@example.org"
    assert up["x-auth-request-groups"] == "admins,staff"
    assert "admin" in up["x-auth-request-token-scopes"].split()
    for _ in range(5):
        assert setup.client.get("/oc/admin/panel", headers=bearer(token)).status == 200
    after = setup.op.introspections()
    assert after["active"] - before["active"] == 1, "the answer is remembered"

    bob = setup.user_token("bob")
    r = setup.client.get("/oc/admin/panel", headers=bearer(bob))
    assert r.status == 403 and "insufficient_scope" in (r.header("www-authenticate") or "")
    assert setup.client.get("/oc/opaque/x", headers=bearer(bob)).status == 200


def test_an_unknown_token_is_refused_and_its_answer_remembered(setup: Setup, mint) -> None:
    before = setup.op.introspections()
    dead = secrets.token_urlsafe(32)
    for _ in range(4):
        r = setup.client.get("/oc/any", headers=bearer(dead))
        assert r.status == 401, r.describe()
        assert "token is not active" in (r.header("www-authenticate") or "")
    after = setup.op.introspections()
    assert after["inactive"] - before["inactive"] == 1

    # A JWT is verified locally: never sent to the provider.
    jwt = mint.token()
    assert setup.client.get("/oc/any", headers=bearer(jwt)).status == 200
    assert setup.client.get("/oc/opaque/x", headers=bearer(jwt)).status == 401
    assert setup.op.introspections() == after


def test_a_revoked_token_stops_working_within_max_cache_ttl(setup: Setup) -> None:
    token = setup.user_token("alice")
    assert setup.client.get("/oc/any", headers=bearer(token)).status == 200
    rp_client = setup.op.client("rp")
    r = requests.post(setup.op.discovery["revocation_endpoint"], data={"token": token},
                      auth=(rp_client.client_id, rp_client.client_secret), timeout=5)
    assert r.status_code == 200, r.text
    assert setup.introspect(token) == {"active": False}
    started = time.monotonic()
    wait_until("the revoked token refused",
               lambda: setup.client.get("/oc/any", headers=bearer(token)).status == 401,
               MAX_CACHE_TTL + 3, interval=0.2)
    assert time.monotonic() - started <= MAX_CACHE_TTL + 1.5


def test_an_exchange_rule_sends_the_exchanged_token_upstream(setup: Setup) -> None:
    token = setup.user_token("alice")
    exchanges = setup.op.token_grants(oidc.TOKEN_EXCHANGE_GRANT)
    r = setup.client.get("/oc/api/items", headers=bearer(token))
    assert r.status == 200, r.describe()
    up = upstream_headers(r)
    assert up["x-auth-request-user"] == "alice"
    sent = up["authorization"].removeprefix("Bearer ")
    assert sent != token
    answer = setup.introspect(sent)
    assert answer["active"] is True
    assert answer["sub"] == "alice" and answer["aud"] == API
    assert answer["client_id"] == "gatehouse-rs" and answer["scope"] == "openid"
    # Reused: the same token again, no new exchange.
    for _ in range(3):
        again = setup.client.get("/oc/api/items", headers=bearer(token))
        assert upstream_headers(again)["authorization"] == f"Bearer {sent}"
    assert setup.op.token_grants(oidc.TOKEN_EXCHANGE_GRANT) == exchanges + 1
    # Another user, another token.
    other = setup.client.get("/oc/api/items", headers=bearer(setup.user_token("bob")))
    assert upstream_headers(other)["authorization"] != f"Bearer {sent}"


def test_an_audience_the_provider_refuses_is_a_403(setup: Setup, mint) -> None:
    token = setup.user_token("alice")
    r = setup.client.get("/oc/elsewhere/x", headers=bearer(token))
    assert r.status == 403, r.describe()
    assert r.json()["error"] == "access_denied"
    assert "invalid_target" in r.json()["error_description"]
    # A JWT the provider never issued cannot be exchanged either.
    r = setup.client.get("/oc/api/items", headers=bearer(mint.token()))
    assert r.status == 403 and "invalid_grant" in r.json()["error_description"]


def test_exchange_and_gatehouses_own_reissue_on_one_rule(setup: Setup) -> None:
    token = setup.user_token("alice")
    r = setup.client.get("/oc/both/x", headers=bearer(token))
    assert r.status == 200, r.describe()
    up = upstream_headers(r)
    exchanged = up["authorization"].removeprefix("Bearer ")
    assert setup.introspect(exchanged)["aud"] == API
    reissued = up["x-auth-request-token"]
    assert reissued.count(".") == 2 and reissued != exchanged


def test_with_the_provider_unreachable_an_opaque_token_gets_a_503(
        gatehouse_factory, envoy_factory, echo, idp, tmp_path: Path, mint) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s")
    config = configs.single_issuer_config(idp)
    config["introspection"] = {"url": f"http://127.0.0.1:{free_port()}/introspect",
                               "client_id": "gatehouse", "client_secret_file": str(secret),
                               "timeout": "1s"}
    g = gatehouse_factory(config, name="gatehouse-no-op")
    g.wait_serving()
    envoy = envoy_factory(g.port, echo.port, name="envoy-no-op")
    client = Client(envoy.ports.listener)
    r = client.get("/x", headers=bearer(secrets.token_urlsafe(24)))
    assert r.status == 503, r.describe()
    assert r.json()["error"] == "temporarily_unavailable"
    # JWTs do not depend on the provider.
    assert client.get("/x", headers=bearer(mint.token())).status == 200
