"""A small HTTP/1.1 client over `http.client` that sends the request target
byte for byte (no dot-segment removal, no re-encoding, unlike requests and
urllib3), plus helpers to read what came back and who answered it."""

from __future__ import annotations

import base64
import http.client
import json
import re
import ssl
from dataclasses import dataclass
from typing import Any, Iterable

from harness import secret_registry
from harness.servers import ECHO_MARKER


@dataclass
class Response:
    status: int
    reason: str
    header_list: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The header's value (several values joined with `, `), or None."""
        values = self.headers_named(name)
        return ", ".join(values) if values else None

    def headers_named(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.header_list if k.lower() == name]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)

    def json_or_none(self) -> Any:
        try:
            return self.json()
        except ValueError:
            return None

    @property
    def layer(self) -> str:
        """Who produced this response: `upstream` (the echo server answered,
        so the request got through), `gatehouse` (a denial with gatehouse's
        JSON body `{"error": ...}`), or `envoy` (anything else: Envoy's own
        local replies, e.g. a 400 from its codec or a 503 when the
        authorization service cannot be reached)."""
        if self.header(ECHO_MARKER):
            return "upstream"
        body = self.json_or_none()
        if isinstance(body, dict) and "error" in body:
            return "gatehouse"
        return "envoy"

    @property
    def upstream(self) -> dict:
        """The echo server's report of the request it received."""
        assert self.layer == "upstream", f"not an upstream response: {self.describe()}"
        return self.json()

    def describe(self) -> str:
        headers = "".join(f"\n  {k}: {v}" for k, v in self.header_list)
        return f"{self.status} {self.reason} (layer {self.layer}){headers}\n  body: {self.text[:2000]!r}"


class Client:
    """Talks HTTP/1.1 to one host:port; one connection per request. With
    `ssl_context`, over TLS (e.g. presenting a client certificate); with
    `source_address`, from that local address (e.g. 127.0.0.2, to be
    another loopback peer)."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 5.0,
                 ssl_context: ssl.SSLContext | None = None, source_address: str | None = None):
        self.host, self.port, self.timeout = host, port, timeout
        self.ssl_context, self.source_address = ssl_context, source_address

    def request(
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]] | dict[str, str] = (),
        body: bytes | None = None,
        token: str | None = None,
    ) -> Response:
        """Sends `target` exactly as given. `token` adds `Authorization: Bearer`."""
        pairs = list(headers.items()) if isinstance(headers, dict) else list(headers)
        if token is not None:
            pairs.append(("Authorization", f"Bearer {token}"))
        secret_registry.record_request(target, pairs)
        source = (self.source_address, 0) if self.source_address else None
        if self.ssl_context is not None:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout, context=self.ssl_context,
                source_address=source)
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout,
                                              source_address=source)
        try:
            # A `Host` among the headers replaces the one http.client adds.
            own_host = any(name.lower() == "host" for name, _ in pairs)
            conn.putrequest(method, target, skip_host=own_host, skip_accept_encoding=True)
            for name, value in pairs:
                conn.putheader(name, value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            data = resp.read()
            response = Response(resp.status, resp.reason, list(resp.getheaders()), data)
            for cookie in response.headers_named("set-cookie"):
                secret_registry.record_cookies(cookie.split(";")[0])
            if b'"Token"' in data:  # a signed link minted by gatehouse
                body = response.json_or_none()
                if isinstance(body, dict) and isinstance(body.get("Token"), str):
                    secret_registry.record_token(body["Token"], "signed link")
            return response
        finally:
            conn.close()

    def get(self, target: str, **kwargs: Any) -> Response:
        return self.request("GET", target, **kwargs)


def basic(username: str, password: str) -> str:
    """An `Authorization: Basic` value."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))\s*,?')


def parse_challenge(value: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="x", error="y"` → (`Bearer`, {realm: x, error: y}).
    Raises ValueError when the value is not one well-formed challenge."""
    scheme, _, rest = value.strip().partition(" ")
    params: dict[str, str] = {}
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if not m or m.end() == pos:
            raise ValueError(f"malformed challenge parameters at {rest[pos:]!r} in {value!r}")
        name = m.group(1).lower()
        if name in params:
            raise ValueError(f"duplicate parameter {name!r} in {value!r}")
        quoted = m.group(2)
        params[name] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else m.group(3)
        pos = m.end()
    return scheme, params
