"""Authorization through Envoy: scopes (all/any), groups mapped to scopes,
per-route context_extensions, default deny, anonymous rules.

Depends on gatehouse behaviour:
- scopes held = the token's `scope` claim (space-separated) plus
  `scopes.group_mapping` of its `groups` claim (src/model/identity.rs);
- first matching rule wins; `context_extensions` (`scope`, `satisfy`,
  `auth_type`) override it, or define an authenticated requirement when no
  rule matches (the /admin/ and /basic/ routes in envoy.yaml);
- 403 rendering: `WWW-Authenticate: Bearer realm, error="insufficient_scope",
  scope="<demanded>"`; no rule + `policy.default: deny` → 403 access_denied;
- `X-Auth-Request-Token-Scopes` space-separated and sorted;
  `-Token-Scopes-Accepted` lists the demanded scopes (separator not fixed by
  the contract: compared as a set); `-Token-Scopes-Satisfy` is all/any.
"""

from __future__ import annotations

import re

import pytest

from harness import expect

pytestmark = pytest.mark.both_filters

BOTH = {"read:data", "write:data"}
NO_GROUPS = {"sub": "svc-1", "preferred_username": "svc"}  # scopes only from `scope`


def _accepted(headers: dict) -> set[str]:
    return set(re.split(r"[\s,]+", headers["x-auth-request-token-scopes-accepted"].strip()))


# --- satisfy all / any -------------------------------------------------------


def test_all_scopes_present_is_allowed(client, mint):
    token = mint.token(identity=NO_GROUPS, scope="write:data read:data")
    seen = expect.allowed(client.get("/all/x", token=token))["headers"]
    assert seen["x-auth-request-token-scopes"] == "read:data write:data"  # sorted
    assert _accepted(seen) == BOTH
    assert seen["x-auth-request-token-scopes-satisfy"] == "all"


def test_one_of_all_is_insufficient_scope(client, mint):
    token = mint.token(identity=NO_GROUPS, scope="read:data")
    expect.insufficient_scope(client.get("/all/x", token=token), BOTH)


@pytest.mark.parametrize("held", ["read:data", "write:data", "openid write:data"])
def test_any_scope_is_enough_for_satisfy_any(client, mint, held):
    token = mint.token(identity=NO_GROUPS, scope=held)
    seen = expect.allowed(client.get("/any/x", token=token))["headers"]
    assert seen["x-auth-request-token-scopes"] == " ".join(sorted(held.split()))
    assert _accepted(seen) == BOTH
    assert seen["x-auth-request-token-scopes-satisfy"] == "any"


def test_no_matching_scope_for_satisfy_any(client, mint):
    token = mint.token(identity=NO_GROUPS, scope="openid profile")
    expect.insufficient_scope(client.get("/any/x", token=token), BOTH)


def test_no_scopes_at_all(client, mint):
    expect.insufficient_scope(client.get("/data/x", token=mint.token(identity=NO_GROUPS)), {"read:data"})


# --- groups → scopes ------------------------------------------------------------------


@pytest.mark.parametrize(
    "groups, path, scopes_header",
    [
        (["readers"], "/data/x", "read:data"),
        (["writers"], "/any/x", "write:data"),
        (["admins"], "/all/x", "read:data write:data"),
        (["superusers"], "/admin/x", "admin:all"),
    ],
)
def test_groups_are_mapped_to_scopes(client, mint, groups, path, scopes_header):
    token = mint.token(identity={"sub": "u", "preferred_username": "u", "groups": groups})
    seen = expect.allowed(client.get(path, token=token))["headers"]
    assert seen["x-auth-request-token-scopes"] == scopes_header
    assert seen["x-auth-request-groups"] == ",".join(groups)


@pytest.mark.parametrize("groups, path, demanded", [
    (["writers"], "/data/x", {"read:data"}),
    (["nobody"], "/any/x", BOTH),
    (["readers"], "/all/x", BOTH),
])
def test_unmapped_groups_do_not_grant(client, mint, groups, path, demanded):
    token = mint.token(identity={"sub": "u", "groups": groups})
    expect.insufficient_scope(client.get(path, token=token), demanded)


def test_token_scopes_and_group_scopes_combine(client, mint):
    token = mint.token(identity={"sub": "u", "groups": ["readers"]}, scope="write:data")
    seen = expect.allowed(client.get("/all/x", token=token))["headers"]
    assert seen["x-auth-request-token-scopes"] == "read:data write:data"


# --- context_extensions (per-route settings in envoy.yaml) ---------------------------------


def test_admin_route_requires_admin_scope(client, mint):
    # Alice (admins, readers) holds read:data and write:data, not admin:all.
    expect.insufficient_scope(client.get("/admin/x", token=mint.token()), {"admin:all"})


def test_admin_route_allows_admin_scope(client, mint):
    token = mint.token(identity=NO_GROUPS, scope="admin:all")
    seen = expect.allowed(client.get("/admin/x", token=token))["headers"]
    assert seen["x-auth-request-token-scopes"] == "admin:all"
    assert _accepted(seen) == {"admin:all"}
    assert seen["x-auth-request-token-scopes-satisfy"] == "all"


def test_admin_route_without_token(client):
    expect.no_credential(client.get("/admin/x"))


# --- rules without scopes ---------------------------------------------------------------


def test_no_rule_matches_default_deny(client, mint):
    expect.denial(client.get("/nowhere/x", token=mint.token()), 403, "access_denied")


def test_anonymous_rule_needs_no_token(client):
    seen = expect.allowed(client.get("/anon/x"))
    assert not any(h.startswith("x-auth-request-user") for h in seen["headers"])


def test_anonymous_rule_ignores_credentials(client):
    # auth: anonymous — "no credential is looked at" (src/config/policy.rs).
    expect.allowed(client.get("/anon/x", token="not-a-jwt"))


def test_methods_reach_upstream(client, mint):
    r = client.request("POST", "/api/x", token=mint.token(), body=b'{"a":1}',
                       headers={"Content-Type": "application/json"})
    seen = expect.allowed(r)
    assert (seen["method"], seen["body_length"]) == ("POST", 7)
