"""Gatehouse as an issuer, seen from outside: its JWKS and discovery
document through Envoy, its tokens verified by independent JOSE libraries,
reissued tokens for an internal audience, key rotation, and the operator
commands (`keys generate`, `token issue`).

Depends on gatehouse behaviour:
- envoy.yaml routes /.well-known/jwks.json and /.well-known/openid-
  configuration to the side port; every key is published, `kid` = RFC 7638
  thumbprint, the first configured key signs;
- `audience` (Envoy context extension on /internal/, or rule field on
  /reissue/) puts a token with `aud` = that audience, signed by gatehouse,
  in X-Auth-Request-Token, reused while fresh;
- removing a key from `issuer.signing_keys` (restart) invalidates the
  tokens it signed; keeping it listed keeps them valid.
"""

from __future__ import annotations

import json
import subprocess

import jwt as pyjwt
import pytest
from jwcrypto import jwk as jw_jwk
from jwcrypto import jwt as jw_jwt

from harness import configs, expect, tokens
from harness.gatehouse import GatehouseInstance, require_binary
from harness.httpc import Client
from harness.links import MINTER, claims_of, link
from harness.procs import free_port

pytestmark = pytest.mark.both_filters


def _jwks(client: Client) -> dict:
    r = client.get("/.well-known/jwks.json")
    assert r.status == 200, r.describe()
    assert "max-age" in (r.header("cache-control") or "")
    return r.json()


def _verify_independently(token: str, jwks: dict, audience: str) -> dict:
    """Verifies `token` with PyJWT and with jwcrypto against `jwks`."""
    kid = tokens.header_of(token)["kid"]
    key = pyjwt.PyJWKSet.from_dict(jwks)[kid]
    by_pyjwt = pyjwt.decode(token, key.key, algorithms=[key.algorithm_name], audience=audience)
    checked = jw_jwt.JWT(jwt=token, key=jw_jwk.JWKSet.from_json(json.dumps(jwks)),
                         expected_type="JWS")
    by_jwcrypto = json.loads(checked.claims)
    assert by_pyjwt == by_jwcrypto
    return by_pyjwt


def test_jwks_and_discovery_through_envoy(client, keys, envoy):
    jwks = _jwks(client)
    assert [k["kid"] for k in jwks["keys"]] == [keys.internal.jwk.thumbprint()]
    key = jwks["keys"][0]
    assert key["alg"] == "ES256" and key["use"] == "sig" and "d" not in key
    doc = client.get("/.well-known/openid-configuration").json()
    assert doc["issuer"] == envoy.base_url
    assert doc["jwks_uri"] == envoy.base_url + "/.well-known/jwks.json"
    assert doc["id_token_signing_alg_values_supported"] == ["ES256"]


def test_our_links_verify_with_independent_libraries(client, mint, envoy):
    token = link(client, mint.token(identity=MINTER), URLs=["/links/jose"], duration="5m")
    claims = _verify_independently(token, _jwks(client), audience=envoy.base_url)
    assert claims["iss"] == envoy.base_url and claims["URLs"] == ["/links/jose"]
    assert tokens.header_of(token)["typ"] == "JWT"


def test_reissue_for_the_audience_of_a_context_extension(client, mint, envoy):
    caller = mint.token()
    seen = expect.allowed(client.get("/internal/x", token=caller))["headers"]
    reissued = seen["x-auth-request-token"]
    assert reissued != caller
    claims = _verify_independently(reissued, _jwks(client), audience=configs.INTERNAL_AUDIENCE)
    assert claims["iss"] == envoy.base_url
    assert claims["sub"] == "alice-sub" and claims["preferred_username"] == "alice"
    assert claims["email"] == "alice@example.org" and claims["uidNumber"] == 4242
    assert claims["groups"] == ["admins", "readers"]
    assert claims["scope"] == "read:data write:data"
    assert claims["exp"] - claims["iat"] == 300
    # Reused while fresh; the caller's own identity headers are unchanged.
    again = expect.allowed(client.get("/internal/y", token=caller))["headers"]
    assert again["x-auth-request-token"] == reissued
    assert again["x-auth-request-user"] == "alice"
    # Gatehouse does not accept its internal-audience tokens as credentials.
    expect.invalid_token(client.get("/api/x", token=reissued))


def test_reissue_for_the_audience_of_a_rule(client, mint):
    spoofed = {"X-Auth-Request-Token": "forged"}
    seen = expect.allowed(client.get("/reissue/x", token=mint.token(), headers=spoofed))
    values = [v for k, v in seen["header_list"] if k == "x-auth-request-token"]
    assert len(values) == 1 and values[0] != "forged"
    assert claims_of(values[0])["aud"] == configs.INTERNAL_AUDIENCE


def test_side_port_health(gatehouse):
    assert gatehouse.healthz() == 200


def test_key_rotation_keeps_old_tokens_valid(tmp_path, gatehouse_factory, envoy_factory, echo, mint,
                                             idp, keys):
    # Old key: RSA, written by `cryptography` in OpenSSL's traditional
    # PKCS#1 form. New key: Ed25519 from `gatehouse keys generate`.
    old = tokens.generate("RS256")
    new_file = tmp_path / "new.pem"
    generated = subprocess.run(
        [str(require_binary()), "keys", "generate", "--alg", "EdDSA", "--out", str(new_file)],
        capture_output=True, text=True, timeout=30, check=True,
    )
    new_kid = generated.stdout.strip()
    assert (new_file.stat().st_mode & 0o777) == 0o600
    files = {"old.pem": old.private_pem_traditional(), "new.pem": new_file.read_bytes()}

    grpc_port, http_port = free_port(), free_port()
    e = envoy_factory(grpc_port, echo.port, name="envoy-rotation", gatehouse_http_port=http_port)
    c = Client(e.port)

    def serve(key_files: list[str], name: str) -> GatehouseInstance:
        config = configs.single_issuer_config(idp)  # token sources: bearer, basic
        config["issuer"] = configs.internal_issuer(e.base_url, key_files)
        config["issuer"]["links"]["cookie"] = None
        config["scopes"] = {"group_mapping": configs.GROUP_MAPPING}
        # Same ports each time: the Envoy in front stays.
        g = gatehouse_factory(config, files=files, name=name, port=grpc_port, http_port=http_port)
        g.wait_serving()
        return g

    minter = mint.token(identity=MINTER)
    g1 = serve(["old.pem"], "gatehouse-rot1")
    old_token = link(c, minter, URLs=["/links/r"])
    assert tokens.header_of(old_token)["kid"] == old.jwk.thumbprint()
    expect.allowed(c.get("/links/r", token=old_token))
    g1.stop()

    g2 = serve(["new.pem", "old.pem"], "gatehouse-rot2")
    try:
        assert [k["kid"] for k in _jwks(c)["keys"]] == [new_kid, old.jwk.thumbprint()]
        expect.allowed(c.get("/links/r", token=old_token))
        new_token = link(c, minter, URLs=["/links/r"])
        assert tokens.header_of(new_token)["kid"] == new_kid
        assert tokens.header_of(new_token)["alg"] == "EdDSA"
        _verify_independently(new_token, _jwks(c), audience=e.base_url)
        expect.allowed(c.get("/links/r", token=new_token))
    finally:
        g2.stop()

    g3 = serve(["new.pem"], "gatehouse-rot3")
    try:
        expect.invalid_token(c.get("/links/r", token=old_token))
        expect.allowed(c.get("/links/r", token=new_token))
    finally:
        g3.stop()


def test_token_issue_command_signs_a_working_link(client, gatehouse):
    r = subprocess.run(
        [str(require_binary()), "token", "issue", "--config", str(gatehouse.config_path),
         "--url", "/links/cli/*", "--verb", "get", "--duration", "10m", "--subject", "ops",
         "--username", "operator"],
        capture_output=True, text=True, timeout=30,
    )
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert token not in r.stderr  # the token goes to stdout only
    seen = expect.allowed(client.get("/links/cli/x", token=token))["headers"]
    assert seen["x-auth-request-user"] == "operator"
    expect.denial(client.get("/links/other", token=token), 403, "access_denied")
    bad = subprocess.run(
        [str(require_binary()), "token", "issue", "--config", str(gatehouse.config_path),
         "--url", "/links/x", "--duration", "3h", "--subject", "ops"],
        capture_output=True, text=True, timeout=30,
    )
    assert bad.returncode != 0 and "maximum" in bad.stderr and not bad.stdout
