"""In-process HTTP servers on 127.0.0.1, each on its own thread:

- `EchoServer`: the protected upstream; answers 200 with a JSON report of the
  request it received (so tests see exactly what Envoy forwarded).
- `IdentityProvider`: a JWKS / OIDC discovery server whose key set tests
  change at run time, with fetch counters and an outage switch.
- `OtlpHttpReceiver`: takes OTLP/HTTP span exports and keeps their bodies.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from harness import secret_registry

# Header the echo server adds to its responses, so a test can tell that a
# response came from the upstream rather than from Envoy or gatehouse.
ECHO_MARKER = "x-e2e-echo"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "e2e"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log = getattr(self.server, "log_file", None)
        if log is not None:
            with self.server.log_lock:  # type: ignore[attr-defined]
                log.write(f"{self.address_string()} {format % args}\n")
                log.flush()

    def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, sort_keys=True).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


class _BackgroundServer:
    def __init__(self, handler: type[BaseHTTPRequestHandler], log_path: Path | None):
        self.httpd = _Server(("127.0.0.1", 0), handler)
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.httpd.log_lock = threading.Lock()  # type: ignore[attr-defined]
        self.httpd.log_file = open(log_path, "a") if log_path else None  # type: ignore[attr-defined]
        self.port: int = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self.httpd.log_file:  # type: ignore[attr-defined]
            self.httpd.log_file.close()  # type: ignore[attr-defined]


# --- upstream echo ------------------------------------------------------------


class _EchoHandler(_QuietHandler):
    def _echo(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        pairs = [[k.lower(), v] for k, v in self.headers.items()]
        merged: dict[str, str] = {}
        for k, v in pairs:
            merged[k] = f"{merged[k]},{v}" if k in merged else v
        # Credentials that reached the upstream (a swapped service
        # credential, a reissued token) are secrets gatehouse must not log.
        for k, v in pairs:
            if k == "authorization":
                secret_registry.record_authorization(v)
            elif k == "x-auth-request-token":
                secret_registry.record_token(v, "token sent upstream")
        report = {
            "method": self.command,
            "path": self.path,  # the raw request target, query included
            "path_only": path,
            "query": query,
            "headers": merged,
            "header_list": pairs,  # to spot duplicated headers
            "body_length": len(body),
        }
        self.server.owner.requests.append(report)  # type: ignore[attr-defined]
        self._send_json(200, report, {ECHO_MARKER: "1"})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _echo


class EchoServer(_BackgroundServer):
    """Answers every request with 200 and a JSON report of what it received:
    `{"method", "path", "query", "headers": {lower-case name: value}, ...}`."""

    def __init__(self, log_path: Path | None = None):
        self.requests: list[dict] = []
        super().__init__(_EchoHandler, log_path)


# --- JWKS / OIDC discovery ------------------------------------------------------


class _IdpHandler(_QuietHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        idp: IdentityProvider = self.server.owner  # type: ignore[attr-defined]
        path = self.path.partition("?")[0]
        with idp._lock:
            idp._arrivals[path] += 1
        if path != idp.JWKS_PATH or (not idp.delay and idp.raw_jwks is None):
            status, body, headers = idp._respond(path)
            self._send_json(status, body, headers)
            return
        # Fault injection on the JWKS (see IdentityProvider.delay, raw_jwks).
        with idp._lock:
            idp._in_flight += 1
        try:
            if idp.delay and idp._closing.wait(idp.delay):
                return  # the server is closing: answer nothing
            status, body, headers = idp._respond(path)
            raw = idp.raw_jwks
            if raw is None or status != 200:
                self._send_json(status, body, headers)
                return
            content_type, data = raw
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", headers.get("Cache-Control", "no-store"))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (its fetch timeout)
        finally:
            with idp._lock:
                idp._in_flight -= 1


class IdentityProvider(_BackgroundServer):
    """JWKS at `/jwks.json` and OIDC discovery at
    `/.well-known/openid-configuration` (issuer = `base_url`).

    Tests mutate it while gatehouse runs: `add_key`/`remove_key`,
    `max_age` (the `Cache-Control: max-age` of the JWKS), `outage` (every
    request answers 500). `fetches(path)` counts requests per path, whether
    they succeeded or not; `failures(path)` counts the 500s.

    Faults of the JWKS only (test_faults.py): `delay` (seconds to wait
    before answering), `raw_jwks` (`(content type, bytes)`: answer 200
    with this body instead of the key set, e.g. garbage or an HTML page);
    `in_flight()` counts JWKS requests being answered right now.
    """

    JWKS_PATH = "/jwks.json"
    DISCOVERY_PATH = "/.well-known/openid-configuration"

    def __init__(self, log_path: Path | None = None, max_age: int | None = 3600):
        self._lock = threading.Lock()
        self._keys: dict[str, dict] = {}
        self._fetches: Counter[str] = Counter()
        self._failures: Counter[str] = Counter()
        self._last_fetch: dict[str, float] = {}
        self.max_age = max_age
        self.outage = False
        self.delay = 0.0
        self.raw_jwks: tuple[str, bytes] | None = None
        self._in_flight = 0
        self._arrivals: Counter[str] = Counter()
        self._closing = threading.Event()
        super().__init__(_IdpHandler, log_path)
        self.issuer = self.base_url
        self.jwks_uri = self.base_url + self.JWKS_PATH
        self.discovery_url = self.base_url + self.DISCOVERY_PATH

    def close(self) -> None:
        self._closing.set()  # wakes handlers waiting out a `delay`
        super().close()

    # key set -------------------------------------------------------------
    def add_key(self, key: Any) -> None:
        """Publishes the public half of a `harness.keys.SigningKey` (or a
        public JWK dict with a `kid`)."""
        jwk = key if isinstance(key, dict) else key.public_jwk
        with self._lock:
            self._keys[jwk["kid"]] = dict(jwk)

    def remove_key(self, kid: str) -> None:
        with self._lock:
            self._keys.pop(kid, None)

    def kids(self) -> list[str]:
        with self._lock:
            return list(self._keys)

    # counters --------------------------------------------------------------
    def fetches(self, path: str = JWKS_PATH) -> int:
        with self._lock:
            return self._fetches[path]

    def failures(self, path: str = JWKS_PATH) -> int:
        with self._lock:
            return self._failures[path]

    def arrivals(self, path: str = JWKS_PATH) -> int:
        """Requests for `path` received so far, answered or not (`fetches`
        counts a delayed request only once it is answered)."""
        with self._lock:
            return self._arrivals[path]

    def in_flight(self) -> int:
        """JWKS requests received and not yet answered (see `delay`)."""
        with self._lock:
            return self._in_flight

    def seconds_since_fetch(self, path: str = JWKS_PATH) -> float:
        """Time since the last request for `path` (infinite if none)."""
        with self._lock:
            last = self._last_fetch.get(path)
        return float("inf") if last is None else time.monotonic() - last

    # responses -------------------------------------------------------------
    def _respond(self, path: str) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            self._fetches[path] += 1
            self._last_fetch[path] = time.monotonic()
            if self.outage:
                self._failures[path] += 1
                return 500, {"error": "simulated outage"}, {"Cache-Control": "no-store"}
            if path == self.JWKS_PATH:
                headers = {}
                if self.max_age is not None:
                    headers["Cache-Control"] = f"public, max-age={self.max_age}"
                return 200, {"keys": list(self._keys.values())}, headers
            if path == self.DISCOVERY_PATH:
                return 200, self._discovery_document(), {"Cache-Control": "max-age=3600"}
            return 404, {"error": "not found"}, {}

    def _discovery_document(self) -> dict:
        # The fields OpenID Connect Discovery 1.0 marks REQUIRED, so strict
        # parsers accept it; only issuer and jwks_uri matter to gatehouse.
        algs = sorted({k.get("alg", "RS256") for k in self._keys.values()}) or ["RS256"]
        return {
            "issuer": self.issuer,
            "jwks_uri": self.jwks_uri,
            "authorization_endpoint": self.base_url + "/authorize",
            "token_endpoint": self.base_url + "/token",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": algs,
        }


class OtlpHttpReceiver(ThreadingHTTPServer):
    """Takes OTLP/HTTP exports (`POST /v1/traces`) and keeps their bodies."""

    daemon_threads = True

    def __init__(self):
        self.bodies: list[bytes] = []
        self.content_types: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/v1/traces":
                    outer.bodies.append(body)
                    outer.content_types.append(self.headers.get("Content-Type", ""))
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:  # noqa: ANN002
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()
