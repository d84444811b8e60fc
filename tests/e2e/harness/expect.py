"""Assertions shared by the tests: what an allowed request, a gatehouse
denial and a challenge must look like (the contract in one place)."""

from __future__ import annotations

from harness.configs import REALM
from harness.httpc import Response, parse_challenge


def allowed(r: Response) -> dict:
    """200 from the upstream; returns the echo server's report."""
    assert r.status == 200 and r.layer == "upstream", f"expected 200 from upstream, got {r.describe()}"
    return r.json()


def denial(r: Response, status: int, error: str) -> dict:
    """A gatehouse denial: `status`, JSON body `{"error", "error_description"}`
    and `Cache-Control: no-cache, no-store`. Returns the body."""
    assert r.status == status, f"expected {status}, got {r.describe()}"
    assert r.layer == "gatehouse", f"expected a gatehouse denial, got {r.describe()}"
    body = r.json()
    assert body.get("error") == error, f"expected error {error!r}: {r.describe()}"
    assert isinstance(body.get("error_description"), str), f"no error_description: {r.describe()}"
    assert_no_store(r)
    return body


def assert_no_store(r: Response) -> None:
    directives = {d.strip().lower() for d in (r.header("cache-control") or "").split(",")}
    assert {"no-cache", "no-store"} <= directives, f"Cache-Control must forbid caching: {r.describe()}"


def challenge(r: Response) -> tuple[str, dict[str, str]]:
    values = r.headers_named("www-authenticate")
    assert len(values) == 1, f"expected one WWW-Authenticate header: {r.describe()}"
    return parse_challenge(values[0])


def no_credential(r: Response, scheme: str = "Bearer") -> None:
    """401 for a missing credential: the bare `<scheme> realm="..."`."""
    denial(r, 401, "unauthorized")  # error string: src/deny.rs Deny::NoCredential
    values = r.headers_named("www-authenticate")
    assert values == [f'{scheme} realm="{REALM}"'], f"expected a bare challenge: {r.describe()}"


def no_certificate(r: Response) -> None:
    """401 for a missing client certificate on a certificate-only rule: no
    `WWW-Authenticate` challenge, since no token would do."""
    body = denial(r, 401, "unauthorized")
    assert "certificate is required" in body["error_description"], r.describe()
    assert r.headers_named("www-authenticate") == [], f"expected no challenge: {r.describe()}"


def invalid_token(r: Response) -> dict:
    """401 `invalid_token` with `Bearer realm, error, error_description`."""
    body = denial(r, 401, "invalid_token")
    scheme, params = challenge(r)
    assert scheme == "Bearer", r.describe()
    assert set(params) == {"realm", "error", "error_description"}, r.describe()
    assert params["realm"] == REALM and params["error"] == "invalid_token", r.describe()
    return body


def insufficient_scope(r: Response, scopes: set[str]) -> dict:
    """403 `insufficient_scope` naming the scopes the route demands."""
    body = denial(r, 403, "insufficient_scope")
    scheme, params = challenge(r)
    assert scheme == "Bearer", r.describe()
    assert params.get("realm") == REALM and params.get("error") == "insufficient_scope", r.describe()
    assert set(params.get("scope", "").split()) == scopes, r.describe()
    assert set(params) <= {"realm", "error", "error_description", "scope"}, r.describe()
    return body
