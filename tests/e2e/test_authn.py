"""Authentication through Envoy: where tokens are found, which are accepted,
and how every kind of bad token is refused.

Depends on gatehouse behaviour:
- JWT sources in order (bearer, basic, cookie `gh_token`, query
  `access_token`), Basic with the token as password or as user name;
- `iss` selects the issuer; signature, `exp`/`nbf` (leeway 5 s), `aud` and
  the issuer's `algorithms` are all enforced, `alg: none` never accepted;
- 401 rendering: bare `Bearer realm=...` without credential, `error=
  "invalid_token"` with a bad one, `Basic realm=...` for auth_type basic;
  JSON body and `Cache-Control: no-cache, no-store` (harness.expect).
"""

from __future__ import annotations

import json
import time

import pytest

from harness import configs, expect, tokens

pytestmark = pytest.mark.both_filters
from harness.httpc import basic

API = "/api/x"  # rule `api`: any valid token, default headers


# --- no credential --------------------------------------------------------


def test_no_token_gets_a_bare_bearer_challenge(client):
    expect.no_credential(client.get(API))


def test_basic_route_challenges_with_basic(client):
    # /basic/ carries context_extensions {auth_type: basic} (envoy.yaml).
    expect.no_credential(client.get("/basic/x"), scheme="Basic")


def test_a_valid_token_is_allowed(client, mint):
    seen = expect.allowed(client.get(API, token=mint.token()))
    assert seen["headers"]["x-auth-request-user"] == "alice"


# --- accepted algorithms and issuers -------------------------------------------


@pytest.mark.parametrize("lib", tokens.LIBRARIES)
@pytest.mark.parametrize("key_name, alg", [("rsa", "RS256"), ("ec", "ES256"), ("ed", "EdDSA")])
def test_asymmetric_algorithms_from_two_jose_libraries(client, mint, keys, key_name, alg, lib):
    key = getattr(keys, key_name)
    token = mint.token(key, lib=lib)
    assert tokens.header_of(token)["alg"] == alg
    seen = expect.allowed(client.get(API, token=token))
    assert seen["headers"]["x-auth-request-user"] == "alice"


@pytest.mark.parametrize("lib", tokens.LIBRARIES)
def test_hs256_issuer_with_shared_secret_file(client, mint, keys, lib):
    # The secret file path in the config is relative to the config's dir.
    token = mint.token(keys.hmac, configs.HMAC_ISSUER, lib=lib)
    expect.allowed(client.get(API, token=token))


def test_discovery_issuer(client, mint, discovery_idp):
    # Gatehouse found this issuer's jwks_uri through
    # <issuer>/.well-known/openid-configuration at start-up.
    expect.allowed(client.get(API, token=mint.discovered()))
    assert discovery_idp.fetches(discovery_idp.DISCOVERY_PATH) >= 1
    assert discovery_idp.fetches(discovery_idp.JWKS_PATH) >= 1


# --- token sources ----------------------------------------------------------------


@pytest.mark.parametrize(
    "user, password",
    [("anything", "{t}"), ("{t}", ""), ("{t}", "x-oauth-basic")],
    ids=["token-as-password", "token-as-user-empty-password", "token-as-user-x-oauth-basic"],
)
@pytest.mark.parametrize("path", [API, "/basic/x"])
def test_token_in_basic_auth(client, mint, user, password, path):
    t = mint.token()
    r = client.get(path, headers={"Authorization": basic(user.format(t=t), password.format(t=t))})
    assert expect.allowed(r)["headers"]["x-auth-request-user"] == "alice"


def test_token_in_cookie(client, mint):
    r = client.get(API, headers={"Cookie": f"theme=dark; {configs.COOKIE}={mint.token()}; x=1"})
    assert expect.allowed(r)["headers"]["x-auth-request-user"] == "alice"


def test_token_in_query_parameter(client, mint):
    r = client.get(f"{API}?page=2&{configs.QUERY}={mint.token()}&sort=asc")
    seen = expect.allowed(r)
    assert seen["headers"]["x-auth-request-user"] == "alice"
    # Gatehouse asks Envoy (query_parameters_to_remove) to drop the token
    # parameter, so the upstream never logs the token; the rest stays.
    assert seen["query"] == "page=2&sort=asc"


def test_invalid_token_in_basic_auth_is_invalid_token(client, mint):
    bad = tokens.tamper(mint.token(), sub="mallory")
    expect.invalid_token(client.get(API, headers={"Authorization": basic("x", bad)}))


# --- refused tokens ---------------------------------------------------------------------


def _bad_tokens(mint, keys, idp, discovery_idp) -> dict[str, str]:
    now = int(time.time())
    rsa = keys.rsa
    return {
        "bad-signature": tokens.tamper(mint.token(), preferred_username="mallory"),
        "signed-by-unpublished-key-with-known-kid": mint.token(keys.stranger, headers={"kid": rsa.kid}),
        "expired": mint.token(iat=now - 7200, nbf=now - 7200, exp=now - 3600),
        "not-yet-valid": mint.token(nbf=now + 3600, exp=now + 7200),
        "wrong-issuer": mint.token(issuer="https://evil.example"),
        "wrong-audience": mint.token(aud="someone-else"),
        # The primary key is not one of the discovery issuer's keys.
        "other-issuers-key": mint.token(rsa, discovery_idp.issuer),
        "alg-none": tokens.unsigned(mint.claims(), kid=rsa.kid),
        "alg-none-no-kid": tokens.unsigned(mint.claims()),
        # Algorithm confusion: HS256 keyed with the RSA public key's bytes.
        "hs256-with-rsa-public-pem": tokens.hmac_signed(rsa.public_pem(), mint.claims(), rsa.kid),
        "hs256-with-rsa-public-pkcs1-pem": tokens.hmac_signed(
            rsa.public_pem_pkcs1(), mint.claims(), rsa.kid
        ),
        # HS256 for the HMAC issuer, but with the wrong secret.
        "hs256-wrong-secret": tokens.hmac_signed(
            b"not-the-secret", mint.claims(configs.HMAC_ISSUER), None
        ),
        # Signed by the EC key (ES256) under a header claiming RS256.
        "alg-header-mismatch": tokens.signed_as(
            keys.ec, {"alg": "RS256", "kid": keys.ec.kid, "typ": "JWT"}, mint.claims(), "ES256"
        ),
        # HS512 is not among the primary issuer's algorithms.
        "hs512-not-allowed": tokens.hmac_signed(b"x" * 64, mint.claims(), keys.ec.kid, alg="HS512"),
    }


BAD_TOKEN_NAMES = [
    "bad-signature",
    "signed-by-unpublished-key-with-known-kid",
    "expired",
    "not-yet-valid",
    "wrong-issuer",
    "wrong-audience",
    "other-issuers-key",
    "alg-none",
    "alg-none-no-kid",
    "hs256-with-rsa-public-pem",
    "hs256-with-rsa-public-pkcs1-pem",
    "hs256-wrong-secret",
    "alg-header-mismatch",
    "hs512-not-allowed",
]


@pytest.mark.parametrize("name", BAD_TOKEN_NAMES)
def test_bad_tokens_are_invalid_token(client, mint, keys, idp, discovery_idp, name):
    token = _bad_tokens(mint, keys, idp, discovery_idp)[name]
    body = expect.invalid_token(client.get(API, token=token))
    # The description must not echo the token back.
    assert token not in body["error_description"]


@pytest.mark.parametrize("name", ["alg-none", "hs256-with-rsa-public-pem", "expired"])
def test_bad_tokens_are_refused_from_every_source(client, mint, keys, idp, discovery_idp, name):
    token = _bad_tokens(mint, keys, idp, discovery_idp)[name]
    for r in (
        client.get(API, headers={"Authorization": basic("x", token)}),
        client.get(API, headers={"Cookie": f"{configs.COOKIE}={token}"}),
        client.get(f"{API}?{configs.QUERY}={token}"),
    ):
        expect.invalid_token(r)


# --- JOSE strictness (RFC 7515/7519/8725), signed by jwcrypto -------------------------


def _strict_cases(mint, keys) -> dict[str, tuple[str, str]]:
    """name -> (token, the reason the client is told). Every token is
    correctly signed by the primary issuer's key; only its one oddity
    refuses it."""
    ec = keys.ec
    claims = mint.claims()
    text = json.dumps(claims)
    header = json.dumps({"alg": ec.alg, "kid": ec.kid, "typ": "JWT"})

    def with_header(**extra):
        return tokens.mint(ec, claims, headers=extra)

    def with_claims(**extra):
        return tokens.mint(ec, {**claims, **extra})

    return {
        "duplicate-sub": (
            tokens.signed_text(ec, header, text[:-1] + ', "sub": "root"}'),
            "duplicate member name",
        ),
        "duplicate-kid": (
            tokens.signed_text(ec, header[:-1] + f', "kid": "{ec.kid}"}}', text),
            "duplicate member name",
        ),
        "kid-not-a-string": (
            tokens.signed_text(ec, json.dumps({"alg": ec.alg, "kid": 1}), text),
            "invalid header parameter kid",
        ),
        "jwe-enc-parameter": (with_header(enc="A256GCM"), "header parameter enc"),
        # jwcrypto refuses to write this one into a JWT: signed by hand.
        "unencoded-payload-b64": (
            tokens.signed_text(ec, header[:-1] + ', "b64": false}', text),
            "header parameter b64",
        ),
        "nested-cty-jwt": (with_header(cty="JWT"), "nested tokens"),
        "dpop-proof-typ": (with_header(typ="dpop+jwt"), "token type not accepted"),
        "logout-token-typ": (with_header(typ="logout+jwt"), "token type not accepted"),
        "aud-array-with-a-number": (with_claims(aud=[configs.AUDIENCE, 7]), "invalid aud claim"),
        "exp-beyond-year-9999": (with_claims(exp=10**15), "exp"),
        "sub-with-crlf": (
            with_claims(sub="alice\r\nX-Auth-Request-User: root"), "invalid sub claim"
        ),
        "empty-sub": (with_claims(sub=""), "invalid sub claim"),
        "group-with-nul": (with_claims(groups=["staff\u0000admins"]), "claim"),
    }


STRICT_NAMES = [
    "duplicate-sub",
    "duplicate-kid",
    "kid-not-a-string",
    "jwe-enc-parameter",
    "unencoded-payload-b64",
    "nested-cty-jwt",
    "dpop-proof-typ",
    "logout-token-typ",
    "aud-array-with-a-number",
    "exp-beyond-year-9999",
    "sub-with-crlf",
    "empty-sub",
    "group-with-nul",
]


@pytest.mark.parametrize("name", STRICT_NAMES)
def test_jose_strictness_refuses_with_the_reason(client, mint, keys, name):
    token, reason = _strict_cases(mint, keys)[name]
    body = expect.invalid_token(client.get(API, token=token))
    assert reason in body["error_description"], body


def test_an_at_jwt_typed_access_token_is_accepted(client, mint, keys):
    token = tokens.mint(keys.ec, mint.claims(), headers={"typ": "at+jwt"})
    assert client.get(API, token=token).status == 200
