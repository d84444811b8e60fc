"""The dynamic module in the real Envoy 1.40 (PyPI): a valid RS256 token
gets 200 and the identity headers upstream (client copies stripped); a
missing, malformed, forged or tampered one gets 401 (expiry is not tested here) with a Bearer
challenge. Build first (see NOTES.md), then:

    CARGO_TARGET_DIR=/work/target-dynmod .venv/bin/python -m pytest inproc/dynmod/test_envoy.py
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import sys
import threading
import time
from pathlib import Path

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benches/e2e"))
import compare as c  # noqa: E402


class Echo(http.server.BaseHTTPRequestHandler):
    """The upstream: answers with the identity headers it received."""

    def do_GET(self):  # noqa: N802
        seen = {k.lower(): v for k, v in self.headers.items() if k.lower().startswith("x-auth-request-")}
        body = json.dumps(seen).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    work = tmp_path_factory.mktemp("dynmod")
    jwks_file, tokens_file = c.make_keys("RS256", work, 2)
    good = tokens_file.read_text().split()
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port, admin = c.free_port(), c.free_port()
    cfg = c.bootstrap([c.hcm("dynmod", port, [c.dynmod_filter(jwks_file, "RS256")], "upstream")],
                      [c.cluster("upstream", upstream.server_address[1])], admin)
    (work / "envoy.yaml").write_text(yaml.safe_dump(cfg))
    log = open(work / "envoy.log", "wb")
    p = __import__("subprocess").Popen(
        [c.envoy_bin(), "-c", str(work / "envoy.yaml"), "--concurrency", "2", "--disable-hot-restart",
         "--base-id", "31", "-l", "info", "--component-log-level", "dynamic_modules:debug"],
        stdout=log, stderr=__import__("subprocess").STDOUT,
        env={**os.environ, "ENVOY_DYNAMIC_MODULES_SEARCH_PATH": str(c.DYNMOD_DIR)},
    )
    try:
        c.wait_port(port)
        yield {"port": port, "good": good, "work": work, "log": work / "envoy.log"}
    finally:
        p.terminate()
        p.wait(10)
        upstream.shutdown()


def get(port: int, headers: dict[str, str] | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", c.PATH, headers=headers or {})
    r = conn.getresponse()
    out = (r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    conn.close()
    return out


def test_abi_version_matched(env):
    text = env["log"].read_text(errors="replace")
    assert "Dynamic module ABI version v0.2.0 matched" in text, text[-3000:]


def test_valid_token_passes_with_identity(env):
    status, _, body = get(env["port"], {"Authorization": f"Bearer {env['good'][0]}",
                                        "X-Auth-Request-User": "mallory", "x-auth-request-tool": "spoof"})
    assert status == 200
    seen = json.loads(body)
    assert seen == {"x-auth-request-user": "user-0", "x-auth-request-email": "user0@example.com"}


def test_second_token_and_cache_hit(env):
    for _ in range(3):
        status, _, body = get(env["port"], {"Authorization": f"bearer {env['good'][1]}"})
        assert status == 200 and json.loads(body)["x-auth-request-user"] == "user-1"


def test_missing_token_is_401_with_challenge(env):
    status, headers, _ = get(env["port"])
    assert status == 401
    assert headers["www-authenticate"] == 'Bearer realm="gatehouse"'


@pytest.mark.parametrize("token", ["garbage", "a.b.c"])
def test_malformed_token_is_401(env, token):
    status, headers, _ = get(env["port"], {"Authorization": f"Bearer {token}"})
    assert status == 401
    assert 'error="invalid_token"' in headers["www-authenticate"]


def test_forged_and_tampered_are_401(env):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    now = int(time.time())
    claims = {"iss": c.ISSUER, "aud": c.AUDIENCE, "sub": "x", "iat": now, "exp": now + 600}
    forged = jwt.encode(claims, pem, algorithm="RS256", headers={"kid": "bench-1"})
    status, headers, _ = get(env["port"], {"Authorization": f"Bearer {forged}"})
    assert status == 401 and "invalid signature" in headers["www-authenticate"]
    # A good token with its payload tampered: the signature no longer verifies.
    h, p, s = env["good"][0].split(".")
    tampered = f"{h}.{p[:-2]}AA.{s}"
    status, _, _ = get(env["port"], {"Authorization": f"Bearer {tampered}"})
    assert status == 401
