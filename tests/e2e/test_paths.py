"""Path tricks sent as exact raw request targets (http.client, no client-side
normalization), and which layer answers each.

Envoy (normalize_path, merge_slashes, REJECT_REQUEST; observed with 1.40):
resolves `.`/`..` (also `%2e%2e`), turns `\\` into `/`, clamps `/../x` to
`/x`, and rejects `%00`, `%2F` and `%5C` itself with 400.
Envoy also resolves servlet-style `..;`/`.;` segments, but not
`%2e%2e;`. Gatehouse (depends on its path check): refuses dot segments with
`;` parameters with 400 `invalid_request` (src/model/deny.rs) before looking at
credentials. (Encoded slashes that reach it, e.g. behind a proxy that keeps
them, are refused too: see the Rust tests.)
"""

from __future__ import annotations

import pytest

from harness import expect

pytestmark = pytest.mark.both_filters

# (raw target, expected status, layer that answers, why)
CASES = [
    ("/data/..%2Fsecret", 400, "envoy", "encoded slash refused at the edge"),
    ("/data/..%2fsecret", 400, "envoy", "lower-case encoded slash"),
    ("/data/%2e%2e%2fsecret", 400, "envoy", "encoded dots and slash"),
    ("/public/..%2Fdata/x", 400, "envoy", "no way around the check through the public route"),
    ("/data/%5Cx", 400, "envoy", "encoded backslash"),
    ("/data/..%5C..%5Csecret", 400, "envoy", "encoded backslash traversal"),
    ("/data/%00", 400, "envoy", "NUL: Envoy's normalization refuses it before ext_authz"),
    ("/data/x%00.json", 400, "envoy", "embedded NUL"),
    ("/data/..;/secret", 403, "gatehouse", "Envoy resolves `..;` as `..`: checked as /secret (no rule)"),
    ("/data/.;x=1/secret", 401, "gatehouse", "Envoy resolves `.;x=1` as `.`: checked as /data/secret"),
    ("/data/%2e%2e;/secret", 400, "gatehouse", "encoded dots with a ';' parameter reach gatehouse: refused"),
    ("/public/../data/x", 401, "gatehouse", "Envoy normalizes to /data/x: checked, no bypass"),
    ("/public/%2e%2e/data/x", 401, "gatehouse", "encoded dots normalized too"),
    ("/public/./../data/x", 401, "gatehouse", "dot segments"),
    ("/../data/x", 401, "gatehouse", "Envoy clamps above-root to /data/x"),
    ("/data/\\x", 401, "gatehouse", "Envoy turns the backslash into a slash: /data/x"),
    ("//data//x", 401, "gatehouse", "merge_slashes: /data/x"),
]


@pytest.mark.parametrize("target, status, layer, why", CASES, ids=[c[0] for c in CASES])
def test_path_tricks(client, echo, record_property, target, status, layer, why):
    before = len(echo.requests)
    r = client.get(target)
    record_property("answered_by", r.layer)
    print(f"{target!r}: {r.status} from {r.layer} ({why})")
    assert (r.status, r.layer) == (status, layer), f"{why}: {r.describe()}"
    assert len(echo.requests) == before, "the upstream must not see it"
    if layer == "gatehouse" and status == 400:
        expect.denial(r, 400, "invalid_request")
    if status == 401:
        expect.no_credential(r)


def test_bad_path_is_refused_even_with_a_valid_token(client, mint):
    expect.denial(client.get("/data/%2e%2e;/secret", token=mint.token()), 400, "invalid_request")


def test_normalized_path_is_what_the_rule_matched(client, mint):
    # `/public/../data/x` becomes `/data/x`: the `data` rule (read:data)
    # applies, and the upstream gets the normalized path.
    token = mint.token()
    seen = expect.allowed(client.get("/public/../data/x", token=token))
    assert seen["path"] == "/data/x"
    no_scope = mint.token(identity={"sub": "u"})
    expect.insufficient_scope(client.get("/public/../data/x", token=no_scope), {"read:data"})


def test_public_route_reaches_upstream_without_token(client):
    seen = expect.allowed(client.get("/public/x"))
    assert seen["path"] == "/public/x"
