"""Key material generated at test time and JWTs minted with two JOSE
libraries independent of gatehouse (jwcrypto and PyJWT), plus hand-crafted
hostile tokens (unsigned, algorithm confusion, tampered)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import jwt as pyjwt
from cryptography.hazmat.primitives import serialization
from jwcrypto import jwk as jw_jwk
from jwcrypto.jwa import JWA
from jwcrypto import jwt as jw_jwt

from harness import secret_registry

AUDIENCE = "gatehouse-e2e"
LIBRARIES = ("jwcrypto", "pyjwt")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(obj: Any) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class SigningKey:
    """An asymmetric key pair (jwcrypto `JWK`) with its `kid` and `alg`."""

    alg: str
    jwk: jw_jwk.JWK
    kid: str

    @property
    def public_jwk(self) -> dict:
        pub = self.jwk.export_public(as_dict=True)
        pub.update({"kid": self.kid, "alg": self.alg, "use": "sig"})
        return pub

    def private_pem(self) -> bytes:
        return self.jwk.export_to_pem(private_key=True, password=None)

    def private_pem_traditional(self) -> bytes:
        """OpenSSL's traditional PEM: `RSA PRIVATE KEY` (PKCS#1) or
        `EC PRIVATE KEY` (SEC1); not defined for Ed25519."""
        key = serialization.load_pem_private_key(self.private_pem(), password=None)
        return key.private_bytes(serialization.Encoding.PEM,
                                 serialization.PrivateFormat.TraditionalOpenSSL,
                                 serialization.NoEncryption())

    def public_pem(self) -> bytes:
        """SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`)."""
        return self.jwk.export_to_pem()

    def public_pem_pkcs1(self) -> bytes:
        """PKCS#1 PEM (`-----BEGIN RSA PUBLIC KEY-----`); RSA only."""
        public = serialization.load_pem_public_key(self.public_pem())
        return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)


@dataclass
class SharedSecret:
    """An HMAC secret (HS256/384/512)."""

    secret: bytes
    alg: str = "HS256"
    kid: str | None = None
    jwk: jw_jwk.JWK = field(init=False)

    def __post_init__(self) -> None:
        self.jwk = jw_jwk.JWK(kty="oct", k=b64url(self.secret))


def generate(alg: str, kid: str | None = None) -> SigningKey:
    """A fresh key for `alg`: RS256 (RSA-2048), ES256 (P-256) or EdDSA (Ed25519)."""
    kid = kid or f"{alg.lower()}-{secrets.token_hex(6)}"
    params = {
        "RS256": {"kty": "RSA", "size": 2048},
        "ES256": {"kty": "EC", "crv": "P-256"},
        "EdDSA": {"kty": "OKP", "crv": "Ed25519"},
    }[alg]
    key = SigningKey(alg=alg, jwk=jw_jwk.JWK.generate(kid=kid, alg=alg, use="sig", **params), kid=kid)
    secret_registry.record_pem(key.private_pem(), f"{alg} private key {kid}")
    secret_registry.record(key.jwk.export_private(as_dict=True).get("d"), f"{alg} private key {kid} (d)")
    return key


def generate_secret(alg: str = "HS256") -> SharedSecret:
    # Printable so the file holding it is unambiguous (no newline, no
    # encoding question): the HMAC key is exactly these ASCII bytes.
    shared = SharedSecret(secret=secrets.token_hex(32).encode(), alg=alg)
    secret_registry.record(shared.secret, "HMAC shared secret")
    return shared


def claims(issuer: str, audience: str | list[str] = AUDIENCE, lifetime: int = 600,
           **extra: Any) -> dict:
    """Registered claims valid now, plus `extra` (None values are dropped)."""
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": "user-1",
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "jti": secrets.token_hex(8),
    }
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def mint(key: SigningKey | SharedSecret, claims: dict, headers: dict | None = None,
         lib: str = "jwcrypto") -> str:
    """A compact JWS signed with `key` by `lib` (`jwcrypto` or `pyjwt`).
    `kid` and `alg` come from the key unless `headers` overrides them
    (`{"kid": None}` removes the kid)."""
    header: dict[str, Any] = {"alg": key.alg, "typ": "JWT"}
    if key.kid:
        header["kid"] = key.kid
    header.update(headers or {})
    header = {k: v for k, v in header.items() if v is not None}
    if lib == "jwcrypto":
        token = jw_jwt.JWT(header=header, claims=claims)
        token.make_signed_token(key.jwk)
        serialized = token.serialize()
        secret_registry.record_token(serialized, "minted token (jwcrypto)")
        return serialized
    if lib == "pyjwt":
        signing_key = key.secret if isinstance(key, SharedSecret) else key.private_pem()
        extra = {k: v for k, v in header.items() if k != "alg"}
        encoded = pyjwt.encode(claims, signing_key, algorithm=header["alg"], headers=extra)
        secret_registry.record_token(encoded, "minted token (pyjwt)")
        return encoded
    raise ValueError(f"unknown JOSE library {lib!r}")


# --- hostile tokens ---------------------------------------------------------


def unsigned(claims: dict, kid: str | None = None) -> str:
    """`alg: none` with an empty signature."""
    header = {"alg": "none", "typ": "JWT"}
    if kid:
        header["kid"] = kid
    return f"{b64url_json(header)}.{b64url_json(claims)}."


def hmac_signed(secret: bytes, claims: dict, kid: str | None, alg: str = "HS256") -> str:
    """HMAC-signed by hand (PyJWT refuses PEM-looking HMAC keys, on purpose).
    With an RSA public key's PEM as `secret` this is the classic
    algorithm-confusion token."""
    header = {"alg": alg, "typ": "JWT"}
    if kid:
        header["kid"] = kid
    signing_input = f"{b64url_json(header)}.{b64url_json(claims)}"
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    sig = hmac.new(secret, signing_input.encode(), digest).digest()
    token = f"{signing_input}.{b64url(sig)}"
    secret_registry.record_token(token, "hand-signed HMAC token")
    return token


def signed_as(key: SigningKey, header: dict, claims: dict, sign_alg: str) -> str:
    """Signs with `sign_alg` whatever `header` claims (e.g. header `RS256`,
    signature ES256), bypassing the libraries' consistency checks."""
    signing_input = f"{b64url_json(header)}.{b64url_json(claims)}"
    sig = JWA.signing_alg(sign_alg).sign(key.jwk, signing_input.encode())
    token = f"{signing_input}.{b64url(sig)}"
    secret_registry.record_token(token, "hand-signed token")
    return token


def signed_text(key: SigningKey, header: str, claims: str) -> str:
    """Signs a header and claims given as JSON text, byte for byte: for
    tokens no JSON library writes (duplicate member names, odd types)."""
    signing_input = f"{b64url(header.encode())}.{b64url(claims.encode())}"
    sig = JWA.signing_alg(key.alg).sign(key.jwk, signing_input.encode())
    token = f"{signing_input}.{b64url(sig)}"
    secret_registry.record_token(token, "hand-signed token")
    return token


def tamper(token: str, **changes: Any) -> str:
    """Changes claims of a signed token and keeps the old signature."""
    header, payload, sig = token.split(".")
    body = json.loads(b64url_decode(payload))
    body.update(changes)
    token = f"{header}.{b64url_json(body)}.{sig}"
    secret_registry.record_token(token, "tampered token")
    return token


def header_of(token: str) -> dict:
    return json.loads(b64url_decode(token.split(".")[0]))


def with_kid(token: str, kid: str) -> str:
    """`token` with its header's `kid` replaced and the old signature kept
    (no longer valid: enough for tests of the kid lookup, which comes
    before any signature check)."""
    _, payload, sig = token.split(".")
    header = header_of(token)
    header["kid"] = kid
    forged = f"{b64url_json(header)}.{payload}.{sig}"
    secret_registry.record_token(forged, "token with a replaced kid")
    return forged
