"""Smoke run of the harness without pytest: starts the echo upstream, a JWKS
server and Envoy on the shipped example, then prints, for a list of raw
request targets, the status and which layer answered.

    .venv/bin/python tests/e2e/smoke.py               # gatehouse port left closed
    .venv/bin/python tests/e2e/smoke.py --gatehouse   # also start gatehouse

Without gatehouse, a checked route answers 503 from Envoy (fail closed,
`status_on_error`), so the output shows which targets Envoy rejects or
rewrites by itself and which reach the authorization check.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import configs, tokens  # noqa: E402
from harness.envoy import EnvoyInstance  # noqa: E402
from harness.gatehouse import GatehouseInstance  # noqa: E402
from harness.httpc import Client  # noqa: E402
from harness.procs import free_port, stop_all  # noqa: E402
from harness.servers import EchoServer, IdentityProvider  # noqa: E402

TARGETS = [
    "/public/x",
    "/public/../data/x",
    "/public/%2e%2e/data/x",
    "/public/..%2Fdata/x",
    "/public//x",
    "/data/x",
    "/data//x",
    "/data/./x",
    "/data/..%2Fsecret",
    "/data/%2e%2e%2fsecret",
    "/data/%5Cx",
    "/data/\\x",
    "/data/%00",
    "/data/%2F",
    "/../data/x",
    "/admin/x",
    "/basic/x",
]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gatehouse", action="store_true", help="start gatehouse too")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gatehouse-smoke-"))
    echo = EchoServer(work / "echo.log")
    idps = [IdentityProvider(work / f"idp{i}.log") for i in range(3)]
    key = tokens.generate("RS256")
    for idp in idps:
        idp.add_key(key)
    gatehouse = None
    try:
        if args.gatehouse:
            secret = tokens.generate_secret()
            gatehouse = GatehouseInstance(
                work / "gatehouse", configs.shared_config(*idps),
                files={configs.HMAC_SECRET_FILE: secret.secret},
            )
            print("gatehouse health:", gatehouse.wait_serving())
            gatehouse_port = gatehouse.port
        else:
            gatehouse_port = free_port()  # nothing listens there
        envoy = EnvoyInstance(work / "envoy", gatehouse_port, echo.port)
        print(f"envoy listener 127.0.0.1:{envoy.port}, admin {envoy.admin_url}, logs in {work}")
        client = Client(envoy.port)
        for target in TARGETS:
            r = client.get(target)
            seen = r.json()["path"] if r.layer == "upstream" else ""
            detail = seen or (json.dumps(r.json_or_none()) if r.layer == "gatehouse" else r.text[:60])
            print(f"{target!r:28} -> {r.status} {r.layer:9} {detail!r}")
        echo_paths = [req["path"] for req in echo.requests]
        print("upstream saw:", echo_paths)
        return 0
    finally:
        stop_all()
        echo.close()
        for idp in idps:
            idp.close()


if __name__ == "__main__":
    sys.exit(main())
