"""Header and response injection through the real Envoy (issue 15): claim
values that could split, smuggle or silently lose an identity header,
Unicode look-alikes, huge claims, trailing dots in hosts, upper-case and
duplicated spoofs. Every case ends in a defined answer: the header is
carried exactly (encoded where the README says so), or the token is
refused with a reason. Never a 500 from Envoy, never a split header, never
an identity header the client wrote.

Tokens are minted with jwcrypto (harness.tokens)."""

from __future__ import annotations

import pytest

from harness import expect
from harness.httpc import Client

pytestmark = pytest.mark.both_filters

IDENTITY = ["x-auth-request-user", "x-auth-request-email", "x-auth-request-uid",
            "x-auth-request-groups"]

# Which claim feeds which header (harness.configs.CLAIMS).
CLAIM_OF_HEADER = {"x-auth-request-user": "preferred_username",
                   "x-auth-request-email": "email",
                   "x-auth-request-uid": "uidNumber",
                   "x-auth-request-groups": "groups"}

BAD_CHARACTERS = {"cr-lf": "a\r\nX-Auth-Request-User: root", "lf": "a\nb", "cr": "a\rb",
                  "nul": "a\x00b", "del": "a\x7fb", "c1-nel": "a\x85b", "tab": "a\tb",
                  "vertical-tab": "a\x0bb"}


def _identity(claim: str, value: object) -> dict:
    identity = {"sub": "inj-sub", "preferred_username": "ivy", "email": "ivy@example.org",
                "uidNumber": 77, "groups": ["readers"]}
    identity[claim] = [value] if claim == "groups" else value
    return identity


def _one_each(seen: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in seen["header_list"]:
        if name.startswith("x-auth-request-"):
            out.setdefault(name, []).append(value)
    return out


@pytest.mark.parametrize("header", IDENTITY)
@pytest.mark.parametrize("name", sorted(BAD_CHARACTERS))
def test_control_characters_in_an_identity_claim_refuse_the_token(client, mint, header, name):
    claim = CLAIM_OF_HEADER[header]
    token = mint.token(identity=_identity(claim, BAD_CHARACTERS[name]))
    r = client.get("/whoami/x", token=token)
    body = expect.invalid_token(r)
    assert f"invalid {claim} claim: control character" in body["error_description"], body


@pytest.mark.parametrize("header", IDENTITY)
def test_an_empty_identity_claim_refuses_the_token(client, mint, header):
    claim = CLAIM_OF_HEADER[header]
    body = expect.invalid_token(client.get("/whoami/x", token=mint.token(
        identity=_identity(claim, ""))))
    assert f"invalid {claim} claim: empty value" in body["error_description"], body


def test_non_ascii_identity_values_arrive_byte_for_byte(client, mint):
    # UTF-8 passes Envoy as it is (obs-text); the upstream decodes the same
    # bytes. The echo server reads headers as Latin-1: undo that.
    identity = {"sub": "u-zoe", "preferred_username": "zoë", "email": "zoë@exämple.org",
                "uidNumber": 5, "groups": ["Ünïcode", "日本"]}
    seen = expect.allowed(client.get("/whoami/x", token=mint.token(identity=identity)))
    h = {k: [v.encode("latin-1").decode("utf-8") for v in vs] for k, vs in _one_each(seen).items()}
    assert h["x-auth-request-user"] == ["zoë"]
    assert h["x-auth-request-email"] == ["zoë@exämple.org"]
    assert h["x-auth-request-groups"] == ["Ünïcode,日本"]


def test_a_unicode_look_alike_is_another_user(client, mint):
    # `ａdmin` (full-width a) is `admin` after NFKC. Gatehouse neither
    # normalizes nor folds: the upstream gets the exact bytes, so an
    # upstream comparing bytes sees another user, and one normalizing is
    # told so here (README: identity headers are exact).
    identity = {"sub": "u-fw", "preferred_username": "\uff41dmin", "groups": ["readers"]}
    seen = expect.allowed(client.get("/whoami/x", token=mint.token(identity=identity)))
    user = _one_each(seen)["x-auth-request-user"]
    assert [v.encode("latin-1").decode("utf-8") for v in user] == ["\uff41dmin"]


def test_a_long_claim_is_refused_with_a_reason_and_a_huge_one_never_reaches_a_header(client, mint):
    # 40 KB: the token fits Envoy's 60 KiB header limit and gatehouse's
    # 64 KiB token limit; the claim exceeds the 1 KiB identity value limit.
    body = expect.invalid_token(client.get("/whoami/x", token=mint.token(
        identity=_identity("preferred_username", "x" * 40_000))))
    assert "invalid preferred_username claim: value too long" in body["error_description"]
    # 100 KB: Envoy refuses the request headers (431) before any check;
    # nothing is allowed and nothing is a 500.
    r = client.get("/whoami/x", token=mint.token(
        identity=_identity("preferred_username", "x" * 100_000)))
    assert r.status == 431, r.describe()
    # 100 KB of groups, each fine on its own: many small values.
    many = [f"group-{i:05d}" for i in range(300)]
    seen = expect.allowed(client.get("/whoami/x", token=mint.token(
        identity={"sub": "u-many", "preferred_username": "mo", "groups": many})))
    assert _one_each(seen)["x-auth-request-groups"] == [",".join(many)]


def test_upper_and_mixed_case_spoofs_are_removed(client, mint):
    spoof = [("X-AUTH-REQUEST-USER", "root"), ("x-Auth-Request-Email", "root@example.org"),
             ("X-Auth-Request-GROUPS", "superusers"), ("X-AUTH-REQUEST-TOKEN", "forged")]
    for path, token in (("/whoami/x", mint.token()), ("/anon/x", None)):
        seen = expect.allowed(client.request("GET", path, headers=spoof, token=token))
        h = _one_each(seen)
        for values in h.values():
            assert "root" not in values and "superusers" not in values and "forged" not in values
        if token:
            assert h["x-auth-request-user"] == ["alice"]


def test_duplicated_spoofs_leave_one_real_value(client, mint):
    spoof = [("X-Auth-Request-User", "root"), ("X-Auth-Request-User", "admin"),
             ("X-Auth-Request-Groups", "superusers"), ("X-Auth-Request-Groups", "x")]
    seen = expect.allowed(client.request("GET", "/whoami/x", headers=spoof, token=mint.token()))
    h = _one_each(seen)
    assert h["x-auth-request-user"] == ["alice"]
    assert h["x-auth-request-groups"] == ["admins,readers"]


def test_two_authorization_headers_are_refused(client, mint):
    # Envoy joins them with a comma; no token is chosen from the pair.
    alice, other = mint.token(), mint.token(identity={"sub": "b", "preferred_username": "bob"})
    r = client.request("GET", "/whoami/x",
                       headers=[("Authorization", f"Bearer {alice}"),
                                ("Authorization", f"Bearer {other}")])
    expect.invalid_token(r)


HOST_RULES = [
    {"name": "admin-host", "match": {"hosts": ["admin.example.test"], "path": {"prefix": "/"}},
     "scopes": ["admin:all"]},
    {"name": "everything-else", "match": {"path": {"prefix": "/"}}, "auth": "anonymous"},
]


@pytest.fixture(scope="module")
def host_stack(tmp_path_factory, echo, keys):
    from harness.envoy import EnvoyInstance
    from harness.gatehouse import GatehouseInstance
    work = tmp_path_factory.mktemp("hosts")
    g = GatehouseInstance(work / "gatehouse", {"policy": {"default": "deny", "rules": HOST_RULES}},
                          name="gatehouse-hosts")
    envoy = None
    try:
        g.wait_serving()
        envoy = EnvoyInstance(work / "envoy", g.port, echo.port, name="envoy-hosts",
                              gatehouse_http_port=g.http_port)
        yield Client(envoy.port)
    finally:
        if envoy is not None:
            envoy.stop()
        g.stop()


@pytest.mark.parametrize("host", ["admin.example.test", "ADMIN.example.test",
                                  "admin.example.test.", "Admin.Example.Test.:8443",
                                  "admin.example.test:80"])
def test_a_host_rule_holds_for_every_spelling_of_its_host(host_stack, host):
    # The absolute form (trailing dot), upper case and a port all name the
    # same host: the admin rule applies, and without a token that is 401.
    r = host_stack.request("GET", "/x", headers=[("Host", host)])
    assert r.status == 401, (host, r.describe())


def test_another_host_falls_to_the_next_rule(host_stack):
    r = host_stack.request("GET", "/x", headers=[("Host", "www.example.test")])
    expect.allowed(r)
