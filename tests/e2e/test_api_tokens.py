"""API tokens (Gafaelfawr's user tokens) and Toolforge deploy tokens,
through Envoy, on two replicas sharing one Redis (`pair`, harness/replicas.py).

The REST API (`/auth/api/v1/users/{user}/tokens`) is routed by Envoy to the
side port. Tokens are `gh-<key>.<secret>`; every token and its secret half
are recorded for the end-of-session leak check of gatehouse's logs."""

from __future__ import annotations

import json
import re
import time

import pytest

from harness import expect, secret_registry
from harness.httpc import Client, Response, basic
from harness.replicas import ADMIN_SCOPE, SUPERUSER, TOKEN_PREFIX, Pair, Replica

API = "/auth/api/v1/users"
TOKEN_RE = re.compile(rf"^{TOKEN_PREFIX}-[A-Za-z0-9_-]{{22}}\.[A-Za-z0-9_-]{{22}}$")
# ALICE (conftest) is in groups admins and readers: read:data and write:data.
DEPLOYER = {"sub": "deployer-sub", "preferred_username": SUPERUSER, "groups": ["readers"]}
ROOT = {"sub": "root-sub", "preferred_username": "root", "groups": ["superusers", "admins"]}


def call(client: Client, method: str, path: str, token: str, body: dict | None = None) -> Response:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if body is not None else {}
    return client.request(method, path, headers=headers, body=data, token=token)


def create(replica: Replica, jwt: str, user: str = "alice", expect_status: int = 201,
           **body) -> dict:
    body.setdefault("name", f"t-{time.monotonic_ns()}")
    r = call(replica.client, "POST", f"{API}/{user}/tokens", jwt, body)
    assert r.status == expect_status, r.describe()
    data = r.json()
    if r.status == 201:
        token = data["token"]
        secret_registry.record(token, "API token")
        secret_registry.record(token.split(".", 1)[1], "API token secret")
        assert TOKEN_RE.match(token), token
        assert token.split("-", 1)[1].split(".")[0] == data["key"]
        expect.assert_no_store(r)
    return data


def listed(replica: Replica, jwt: str, user: str = "alice") -> list[dict]:
    r = call(replica.client, "GET", f"{API}/{user}/tokens", jwt)
    assert r.status == 200, r.describe()
    expect.assert_no_store(r)
    body = r.json()
    return body["tokens"] if isinstance(body, dict) else body


@pytest.fixture
def alice(mint) -> str:
    return mint.token()


def test_create_use_list_revoke_then_refused_on_both_replicas(pair: Pair, alice):
    made = create(pair.a, alice, name="ci", scopes=["read:data"])
    token = made["token"]
    # Used on the other replica: the identity and the token's own scopes.
    seen = expect.allowed(pair.b.client.get("/whoami/x", token=token))["headers"]
    assert seen["x-auth-request-user"] == "alice"
    assert seen["x-auth-request-token-scopes"] == "read:data"
    assert "authorization" not in {k.lower() for k in seen} or \
        seen.get("authorization") == f"Bearer {token}"
    expect.allowed(pair.a.client.get("/data/x", headers={"Authorization": basic("x", token)}))

    tokens = listed(pair.b, alice)
    (entry,) = [t for t in tokens if t["name"] == "ci"]
    assert entry["key"] == made["key"] and entry["scopes"] == ["read:data"]
    text = json.dumps(tokens)
    assert token not in text and token.split(".")[1] not in text, "a listing shows no secret"

    # B has the token cached as valid; A revokes it.
    expect.allowed(pair.b.client.get("/data/warm", token=token))
    r = call(pair.a.client, "DELETE", f"{API}/alice/tokens/{made['key']}", alice)
    assert r.status == 204, r.describe()
    revoked_at = time.monotonic()
    expect.invalid_token(pair.a.client.get("/data/x", token=token))
    while pair.b.client.get("/data/x", token=token).status == 200:
        assert time.monotonic() - revoked_at < 1.0, "B still accepts a revoked token after 1 s"
        time.sleep(0.02)
    print(f"revocation reached replica B after {(time.monotonic() - revoked_at) * 1000:.0f} ms")
    body = expect.invalid_token(pair.b.client.get("/data/x", token=token))
    assert "revoked" in body["error_description"], body
    assert not [t for t in listed(pair.a, alice) if t["key"] == made["key"]]


def test_scopes_beyond_the_creators_are_refused(pair: Pair, alice):
    body = create(pair.a, alice, scopes=["read:data", ADMIN_SCOPE], expect_status=403)
    assert ADMIN_SCOPE in body["error_description"], body


def test_a_token_has_only_its_own_scopes_and_satisfy_applies(pair: Pair, alice):
    token = create(pair.a, alice, scopes=["read:data"])["token"]
    expect.allowed(pair.a.client.get("/any/x", token=token))
    expect.insufficient_scope(pair.a.client.get("/all/x", token=token),
                              {"read:data", "write:data"})
    # The creator holds write:data; the token does not.
    expect.allowed(pair.a.client.get("/all/x", token=alice))


def test_an_expired_token_is_refused(pair: Pair, alice):
    token = create(pair.a, alice, scopes=["read:data"], expires=int(time.time()) + 2)["token"]
    expect.allowed(pair.a.client.get("/data/x", token=token))
    time.sleep(3)
    # The store drops a token's record when it expires: from then on it
    # reads as unknown; within the cache's TTL it may still read as expired.
    body = expect.invalid_token(pair.b.client.get("/data/x", token=token))
    assert re.search("expired|unknown", body["error_description"]), body


@pytest.mark.parametrize("bad", [
    f"{TOKEN_PREFIX}-short.secret",
    f"{TOKEN_PREFIX}-{'A' * 22}.{'B' * 21}",
    f"{TOKEN_PREFIX}-{'A' * 22}",
    f"{TOKEN_PREFIX}-{'A' * 22}.{'B' * 22}",  # well formed, never issued
])
def test_tokens_in_a_wrong_format_or_unknown_are_401(pair: Pair, bad):
    expect.invalid_token(pair.a.client.get("/data/x", token=bad))


def test_a_token_cannot_mint_tokens(pair: Pair, alice):
    token = create(pair.a, alice, scopes=["read:data"])["token"]
    r = call(pair.a.client, "POST", f"{API}/alice/tokens", token,
             {"name": "child", "scopes": ["read:data"]})
    assert r.status == 403, r.describe()


def test_names_are_unique_per_user_and_others_tokens_are_out_of_reach(pair: Pair, alice, mint):
    create(pair.a, alice, name="dup", scopes=["read:data"])
    create(pair.b, alice, name="dup", scopes=["read:data"], expect_status=409)
    bob = mint.token(identity={"sub": "bob-sub", "preferred_username": "bob",
                               "groups": ["readers"]})
    r = call(pair.a.client, "GET", f"{API}/alice/tokens", bob)
    assert r.status == 403, r.describe()
    # An admin acts for anyone (but grants only scopes it holds).
    root = mint.token(identity=ROOT)
    assert [t for t in listed(pair.a, root, user="alice") if t["name"] == "dup"]
    made = create(pair.a, root, user="bob", scopes=["read:data"])
    seen = expect.allowed(pair.b.client.get("/whoami/x", token=made["token"]))["headers"]
    assert seen["x-auth-request-user"] == "bob"


def test_a_deploy_token_passes_its_own_tool_only(pair: Pair, mint):
    deployer = mint.token(identity=DEPLOYER)
    made = create(pair.a, deployer, user=SUPERUSER, tool="alpha", scopes=["read:data"])
    token = made["token"]
    seen = expect.allowed(pair.b.client.get("/tool/alpha/deploy", token=token))["headers"]
    assert seen["x-auth-request-tool"] == "alpha"
    expect.denial(pair.b.client.get("/tool/beta/deploy", token=token), 403, "access_denied")
    # Its creator is a superuser; the token never is.
    r = pair.a.client.get("/tool/beta/deploy",
                          headers={"Authorization": f"Bearer {token}",
                                   "X-Toolforge-Act-As": "beta"})
    expect.denial(r, 403, "access_denied")
    # Its creator, by JWT, may act for any tool.
    expect.allowed(pair.a.client.get("/tool/beta/deploy", token=deployer))
    # A caller who neither owns the tool nor is a superuser cannot make one.
    create(pair.a, mint.token(), tool="alpha", scopes=["read:data"], expect_status=403)


def test_api_tokens_need_the_store_and_fail_closed_without_it(pair: Pair, alice):
    token = create(pair.a, alice, scopes=["read:data"])["token"]
    pair.redis.kill()
    pair.redis.wait_down()
    time.sleep(0.6)  # past cache_ttl: the token must be read from the store again
    expect.denial(pair.a.client.get("/data/x", token=token), 503, "temporarily_unavailable")
    expect.allowed(pair.a.client.get("/data/x", token=alice))
    pair.redis.start()
    deadline = time.monotonic() + 10
    while (r := pair.a.client.get("/data/x", token=token)).status != 200:
        assert r.status == 503, r.describe()
        assert time.monotonic() < deadline, "the token never worked again"
        time.sleep(0.1)
