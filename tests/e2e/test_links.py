"""Signed links through Envoy (kube-gateway's time-limited links): minting
on gatehouse's side port, using a link at the check, one-time links, the
cookie hand-off, and the credential the upstream receives instead.

Depends on gatehouse behaviour:
- `POST /auth/jwt/request` (routed by envoy.yaml to the side port, check
  disabled) authenticates the caller like the check and requires a mint
  scope (`links:mint` ← group `minters`); prefixes /links/ and /k8s/;
  `max_duration` 2h; JSON body `{"URLs", "verbs", "duration", "from",
  "once"}` with kube-gateway's defaults; answer `{"Token": …}`;
- a link (from a bearer header, the `gh_token` cookie or `access_token`)
  allows its paths (exact, or prefix with `*`) and verbs (`get` covers
  HEAD) within nbf..exp; else 401 (invalid, expired, used) or 403;
- rule `k8s` swaps the credential for the file's token and strips our
  cookie; `GET /auth/jwt/set` stores a link as a cookie and redirects.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness import configs, expect
from harness.httpc import Client
from harness.links import (MINTER, claims_of, cookie_of, link, request_link, rfc3339,
                           set_target)

pytestmark = pytest.mark.both_filters


@pytest.fixture(scope="module")
def minter(mint) -> str:
    return mint.token(identity=MINTER)


# --- minting ------------------------------------------------------------------


def test_minting_needs_a_credential(client):
    r = request_link(client, None, {"URLs": ["/links/x"]})
    expect.no_credential(r)


def test_minting_needs_the_mint_scope(client, mint):
    # Alice (admins, readers) holds no links:mint.
    r = request_link(client, mint.token(), {"URLs": ["/links/x"]})
    body = expect.denial(r, 403, "insufficient_scope")
    assert configs.MINT_SCOPE in body["error_description"]


def test_an_invalid_caller_token_is_401(client, mint):
    expired = mint.token(identity=MINTER, exp=int(time.time()) - 3600)
    expect.invalid_token(request_link(client, expired, {"URLs": ["/links/x"]}))


def test_an_authorized_caller_gets_a_link_with_kube_gateway_defaults(client, minter):
    before = int(time.time())
    token = link(client, minter, URLs=["/links/a/*"])
    claims = claims_of(token)
    assert claims["URLs"] == ["/links/a/*"]
    assert claims["verbs"] == ["get"]
    assert claims["sub"] == "bob-sub" and claims["preferred_username"] == "bob"
    assert before <= claims["nbf"] <= int(time.time()) + 1
    assert claims["exp"] - claims["nbf"] == 3600
    assert "scope" not in claims  # links:mint never travels in a link
    assert "once" not in claims and claims["jti"]


@pytest.mark.parametrize(
    "body, status, error, needle",
    [
        ({"URLs": ["/etc/passwd"]}, 403, "access_denied", "outside"),
        ({"URLs": ["/links*"]}, 403, "access_denied", "outside"),
        ({"URLs": ["/links/x"], "duration": "3h"}, 400, "invalid_request", "maximum"),
        ({"URLs": ["/links/x"], "duration": "forever"}, 400, "invalid_request", "duration"),
        ({"URLs": ["/links/x"], "from": "next tuesday"}, 400, "invalid_request", "RFC 3339"),
        ({"URLs": ["/links/x"], "verbs": []}, 400, "invalid_request", "verbs"),
        ({"URLs": []}, 400, "invalid_request", "URLs"),
        ({"URLs": ["/links/../k8s/x"]}, 400, "invalid_request", "normalized"),
        ({"verbs": ["get"]}, 400, "invalid_request", "URLs"),
        ({"URLs": ["/links/x"], "ttl": "1h"}, 400, "invalid_request", "ttl"),
        (b"{not json", 400, "invalid_request", "JSON"),
    ],
)
def test_bad_mint_requests_get_clear_4xx(client, minter, body, status, error, needle):
    r = request_link(client, minter, body)
    got = expect.denial(r, status, error)
    assert needle in got["error_description"], r.describe()


def test_the_body_must_be_json(client, minter):
    r = request_link(client, minter, {"URLs": ["/links/x"]}, content_type="text/plain")
    expect.denial(r, 415, "invalid_request")


# --- links at the check -------------------------------------------------------


def test_a_link_works_for_its_path_and_verb_only(client, minter):
    token = link(client, minter, URLs=["/links/a/*", "/links/exact"], verbs=["get", "put"])
    expect.allowed(client.get("/links/a/x/y", token=token))
    r = client.request("HEAD", "/links/a/x", token=token)  # HEAD follows GET
    assert (r.status, r.layer) == (200, "upstream"), r.describe()
    expect.allowed(client.request("PUT", "/links/a/x", token=token))
    expect.allowed(client.get("/links/exact", token=token))
    for method, target in [
        ("POST", "/links/a/x"),
        ("DELETE", "/links/a/x"),
        ("GET", "/links/exact/more"),
        ("GET", "/links/b/x"),
        ("GET", "/links/a/../b/x"),  # normalized (by Envoy, then gatehouse) to /links/b/x
    ]:
        r = client.request(method, target, token=token)
        expect.denial(r, 403, "access_denied")


def test_the_upstream_sees_the_minters_identity(client, minter):
    token = link(client, minter, URLs=["/links/who"])
    seen = expect.allowed(client.get("/links/who", token=token))["headers"]
    assert seen["x-auth-request-user"] == "bob"
    assert seen["x-auth-request-token"] == token  # rule `links` opts into the token header


def test_a_link_from_the_query_parameter_is_removed_upstream(client, minter):
    token = link(client, minter, URLs=["/links/q"])
    seen = expect.allowed(client.get(f"/links/q?a=1&{configs.QUERY}={token}&b=2"))
    assert token not in seen["path"] and seen["query"] == "a=1&b=2"


def test_not_before_from(client, minter):
    token = link(client, minter, URLs=["/links/later"], from_=rfc3339(time.time() + 120),
                 duration="10m")
    body = expect.invalid_token(client.get("/links/later", token=token))
    assert "not yet valid" in body["error_description"]


def test_not_after_expiry(client, keys, envoy):
    # A link whose window has passed, signed with gatehouse's own key by
    # PyJWT (the mint refuses to create one that is already over).
    import jwt as pyjwt

    now = int(time.time())
    token = pyjwt.encode(
        {"iss": envoy.base_url, "aud": envoy.base_url, "sub": "bob-sub", "URLs": ["/links/old"],
         "verbs": ["get"], "nbf": now - 7200, "iat": now - 7200, "exp": now - 3600},
        keys.internal.private_pem(), algorithm="ES256",
        headers={"kid": keys.internal.jwk.thumbprint()},
    )
    body = expect.invalid_token(client.get("/links/old", token=token))
    assert "expired" in body["error_description"]


def test_a_tampered_link_is_refused(client, minter):
    from harness.tokens import tamper

    token = link(client, minter, URLs=["/links/narrow"])
    expect.invalid_token(client.get("/links/wide", token=tamper(token, URLs=["/links/*"])))


# --- one-time links -----------------------------------------------------------


def test_a_one_time_link_works_once(client, minter):
    token = link(client, minter, URLs=["/links/once"], once=True)
    assert claims_of(token)["once"] is True
    # A request the link does not cover does not use it up.
    expect.denial(client.request("POST", "/links/once", token=token), 403, "access_denied")
    expect.allowed(client.get("/links/once", token=token))
    body = expect.invalid_token(client.get("/links/once", token=token))
    assert "already been used" in body["error_description"]


def test_a_one_time_link_works_once_under_concurrent_use(client, minter, envoy):
    token = link(client, minter, URLs=["/links/race"], once=True)
    n = 16
    with ThreadPoolExecutor(max_workers=n) as pool:
        statuses = list(pool.map(lambda _: Client(envoy.port).get("/links/race", token=token).status,
                                 range(n)))
    assert statuses.count(200) == 1, statuses
    assert statuses.count(401) == n - 1, statuses


# --- cookie hand-off ----------------------------------------------------------


def test_cookie_hand_off_then_the_protected_path(client, minter):
    token = link(client, minter, URLs=["/links/app/*"], duration="10m")
    r = client.get(set_target(token, then="/links/app/page?x=1", name="vm", namespace="ns"))
    assert r.status == 302, r.describe()
    assert r.header("location") == "/links/app/page?x=1"
    expect.assert_no_store(r)
    name, value, attrs = cookie_of(r)
    assert (name, value) == (configs.COOKIE, token)
    assert {"httponly", "secure", "samesite", "path", "max-age"} <= set(attrs), r.describe()
    assert attrs["samesite"] == "Lax" and attrs["path"] == "/"
    assert 590 <= int(attrs["max-age"]) <= 600

    seen = expect.allowed(client.get("/links/app/page?x=1", headers={"Cookie": f"{name}={value}"}))
    assert seen["headers"]["x-auth-request-user"] == "bob"
    r = client.get("/links/elsewhere", headers={"Cookie": f"{name}={value}"})
    expect.denial(r, 403, "access_denied")


def test_cookie_hand_off_of_a_one_time_link(client, minter):
    token = link(client, minter, URLs=["/links/vnc"], once=True)
    r = client.get(set_target(token, then="/links/vnc"))
    assert r.status == 302, r.describe()
    name, value, _ = cookie_of(r)
    assert value != token and "once" not in claims_of(value)
    cookie = {"Cookie": f"{name}={value}"}
    expect.allowed(client.get("/links/vnc", headers=cookie))
    expect.allowed(client.get("/links/vnc", headers=cookie))  # the browser keeps working
    expect.invalid_token(client.get(set_target(token, then="/links/vnc")))


@pytest.mark.parametrize("then", ["//evil.example/x", "https://evil.example/", "/\\evil.example",
                                  "/%2F%2Fevil.example", "/%5Cevil", "javascript:alert(1)",
                                  "/ok\r\nSet-Cookie: x=1"])
def test_cookie_hand_off_never_redirects_off_site(client, minter, then):
    token = link(client, minter, URLs=["/links/x"])
    r = client.get(set_target(token, then=then))
    expect.denial(r, 400, "invalid_request")
    assert not r.headers_named("set-cookie")


def test_cookie_hand_off_refuses_bad_tokens(client, mint):
    expect.invalid_token(client.get(set_target("not.a.token", then="/")))
    r = client.get(set_target(mint.token(), then="/"))  # valid, but not a link
    expect.denial(r, 400, "invalid_request")


# --- what the upstream receives ------------------------------------------------


def test_the_upstream_receives_the_swapped_credential_and_not_the_link(client, minter):
    token = link(client, minter, URLs=["/k8s/api/*"])
    for headers in ({"Cookie": f"theme=dark; {configs.COOKIE}={token}; lang=en"},
                    {"Authorization": f"Bearer {token}", "Cookie": "theme=dark; lang=en"}):
        seen = expect.allowed(client.get("/k8s/api/v1/pods", headers=headers))
        assert seen["headers"]["authorization"] == f"Bearer {configs.UPSTREAM_TOKEN}"
        assert seen["headers"]["cookie"] == "theme=dark; lang=en"
        assert not any(token in v for _, v in seen["header_list"]), seen
    # Only our cookie: no Cookie header at all upstream.
    seen = expect.allowed(client.get("/k8s/api/x", headers={"Cookie": f"{configs.COOKIE}={token}"}))
    assert "cookie" not in seen["headers"]


def test_the_upstream_credential_file_is_reread_when_it_changes(client, minter, gatehouse):
    token = link(client, minter, URLs=["/k8s/*"])
    path = gatehouse.workdir / configs.UPSTREAM_TOKEN_FILE
    new = "upstream-service-account-token-2-rotated"
    try:
        tmp = path.with_suffix(".next")
        tmp.write_text(new + "\n")
        tmp.replace(path)  # atomic, like the kubelet's symlink swap
        deadline = time.monotonic() + 5
        while True:
            seen = expect.allowed(client.get("/k8s/x", token=token))
            if seen["headers"]["authorization"] == f"Bearer {new}":
                break
            assert time.monotonic() < deadline, "the new credential was never sent"
            time.sleep(0.2)
    finally:
        path.write_text(configs.UPSTREAM_TOKEN)
    deadline = time.monotonic() + 5
    while expect.allowed(client.get("/k8s/x", token=token))["headers"]["authorization"] != \
            f"Bearer {configs.UPSTREAM_TOKEN}":
        assert time.monotonic() < deadline
        time.sleep(0.2)
