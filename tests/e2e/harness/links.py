"""Signed links through Envoy: minting (`POST /auth/jwt/request`), the
cookie hand-off (`GET /auth/jwt/set`), and reading what came back."""

from __future__ import annotations

import json
import urllib.parse
from datetime import datetime, timezone
from typing import Any

from harness import secret_registry
from harness.httpc import Client, Response
from harness.tokens import b64url_decode

MINT_PATH = "/auth/jwt/request"
SET_PATH = "/auth/jwt/set"

# A caller allowed to mint links (group `minters` → scope links:mint).
MINTER = {
    "sub": "bob-sub",
    "preferred_username": "bob",
    "email": "bob@example.org",
    "groups": ["minters"],
}


def request_link(client: Client, token: str | None, body: Any,
                 content_type: str = "application/json") -> Response:
    """POSTs `body` (JSON-encoded unless bytes) to the mint endpoint."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.request("POST", MINT_PATH, headers={"Content-Type": content_type},
                          body=data, token=token)


def link(client: Client, token: str, **body: Any) -> str:
    """A link minted with `body` (e.g. `URLs=[...]`, `verbs`, `duration`,
    `from_`, `once`); fails the test unless the mint answers 200."""
    if "from_" in body:
        body["from"] = body.pop("from_")
    r = request_link(client, token, body)
    assert r.status == 200, r.describe()
    data = r.json()
    assert set(data) == {"Token"}, r.describe()
    secret_registry.record_token(data["Token"], "signed link")
    return data["Token"]


def claims_of(token: str) -> dict:
    return json.loads(b64url_decode(token.split(".")[1]))


def rfc3339(unix: float) -> str:
    return datetime.fromtimestamp(int(unix), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_target(token: str, then: str | None = None, **extra: str) -> str:
    params = {"token": token, **extra}
    if then is not None:
        params["then"] = then
    return f"{SET_PATH}?{urllib.parse.urlencode(params)}"


def cookie_of(r: Response) -> tuple[str, str, dict[str, str]]:
    """(name, value, attributes) of the one Set-Cookie header."""
    values = r.headers_named("set-cookie")
    assert len(values) == 1, r.describe()
    first, *attrs = [part.strip() for part in values[0].split(";")]
    name, _, value = first.partition("=")
    attributes = {}
    for attr in attrs:
        key, _, val = attr.partition("=")
        attributes[key.lower()] = val
    return name, value, attributes
