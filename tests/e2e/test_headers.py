"""Headers gatehouse sets on allowed requests, as the upstream receives them
through Envoy, and the client's attempts to forge them.

Depends on gatehouse behaviour:
- claims mapping `claims.{username,email,uid,groups}` (harness.configs.CLAIMS);
- `X-Auth-Request-Groups` comma-separated, `-Token-Scopes` space-separated
  and sorted, `-Token` only where the rule lists `token` in `headers`;
- every client-supplied `X-Auth-Request-*` header removed or overwritten,
  on every rule (also anonymous ones);
- client IP: X-Forwarded-For walked right to left through
  `network.trusted_proxies`; when every entry is trusted, the left-most.
"""

from __future__ import annotations

import pytest

from harness import expect

pytestmark = pytest.mark.both_filters

SPOOFED = [
    ("X-Auth-Request-User", "mallory"),
    ("X-Auth-Request-Email", "mallory@evil.example"),
    ("X-Auth-Request-Foo", "bar"),
    ("X-Auth-Request-Groups", "superusers"),
    ("X-Auth-Request-Token", "forged-token"),
    ("X-Auth-Request-Token-Scopes", "admin:all"),
    ("X-Auth-Request-Client-Ip", "10.6.6.6"),
    ("x-auth-request-uid", "0"),
]
SPOOFED_VALUES = {v for _, v in SPOOFED}


def _identity_headers(seen: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in seen["header_list"]:
        if name.startswith("x-auth-request-"):
            out.setdefault(name, []).append(value)
    return out


def test_identity_headers_on_the_rule_that_lists_them_all(client, mint, envoy_xff_address):
    # Rule `whoami`: headers [user, email, uid, groups, scopes, client_ip, token].
    token = mint.token()
    seen = expect.allowed(client.get("/whoami/x", token=token))
    h = _identity_headers(seen)
    assert h["x-auth-request-user"] == ["alice"]
    assert h["x-auth-request-email"] == ["alice@example.org"]
    assert h["x-auth-request-uid"] == ["4242"]
    assert h["x-auth-request-groups"] == ["admins,readers"]
    assert h["x-auth-request-token-scopes"] == ["read:data write:data"]  # from groups
    assert h["x-auth-request-token"] == [token]
    # No X-Forwarded-For from us: Envoy's appended address is the only
    # entry and trusted, so it is the client.
    assert h["x-auth-request-client-ip"] == [envoy_xff_address]


def test_a_comma_in_a_group_name_is_percent_encoded(client, mint):
    # `Acme, Inc.` stays one group: split on commas, then percent-decode.
    token = mint.token(identity={"sub": "c-sub", "preferred_username": "carol",
                                 "groups": ["Acme, Inc.", "100%", "readers"]})
    h = _identity_headers(expect.allowed(client.get("/whoami/x", token=token)))
    assert h["x-auth-request-groups"] == ["Acme%2C Inc.,100%25,readers"]


def test_token_header_only_where_the_rule_opts_in(client, mint):
    # Rule `api` has the default header set, which excludes `token`.
    seen = expect.allowed(client.get("/api/x", token=mint.token()))["headers"]
    assert "x-auth-request-token" not in seen
    assert seen["x-auth-request-user"] == "alice"


def test_spoofed_identity_headers_are_removed_or_overwritten(client, mint):
    # No email claim: the client's X-Auth-Request-Email must vanish, not survive.
    token = mint.token(identity={"sub": "bob-sub", "preferred_username": "bob", "groups": ["readers"]})
    r = client.get("/api/x", token=token, headers=SPOOFED)
    h = _identity_headers(expect.allowed(r))
    assert h["x-auth-request-user"] == ["bob"]
    assert h["x-auth-request-groups"] == ["readers"]
    assert h["x-auth-request-token-scopes"] == ["read:data"]
    for name in ("x-auth-request-email", "x-auth-request-foo", "x-auth-request-token",
                 "x-auth-request-uid"):
        assert name not in h, f"{name} survived: {r.describe()}"
    leaked = {n: v for n, vs in h.items() for v in vs if v in SPOOFED_VALUES}
    assert not leaked, f"client-supplied identity headers reached the upstream: {leaked}"


def test_spoofed_headers_removed_on_anonymous_rule(client):
    seen = expect.allowed(client.get("/anon/x", headers=SPOOFED))
    leaked = {n: v for n, vs in _identity_headers(seen).items() for v in vs if v in SPOOFED_VALUES}
    assert not leaked, f"client-supplied identity headers reached the upstream: {leaked}"


def test_spoofed_headers_do_not_help_a_denied_request(client):
    expect.no_credential(client.get("/api/x", headers=SPOOFED))


def test_client_ip_from_x_forwarded_for(client, mint):
    r = client.get("/api/x", token=mint.token(), headers={"X-Forwarded-For": "203.0.113.7"})
    assert expect.allowed(r)["headers"]["x-auth-request-client-ip"] == "203.0.113.7"


def test_client_ip_is_right_most_untrusted(client, mint):
    # The left entry is whatever the client claims; 203.0.113.7 is the last
    # address a trusted proxy (127.0.0.0/8, Envoy) saw.
    r = client.get("/api/x", token=mint.token(),
                   headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.7, 127.0.0.9"})
    assert expect.allowed(r)["headers"]["x-auth-request-client-ip"] == "203.0.113.7"


def test_upstream_sees_the_forwarded_chain(client, mint, envoy_xff_address):
    # What Envoy itself forwards (use_remote_address: true): our entry, then
    # the address it appended.
    r = client.get("/api/x", token=mint.token(), headers={"X-Forwarded-For": "203.0.113.7"})
    assert expect.allowed(r)["headers"]["x-forwarded-for"] == f"203.0.113.7,{envoy_xff_address}"
