"""gRPC checks over a Unix domain socket (`server.grpc_socket`): the shipped
example with its `gatehouse` cluster pointing at the shared gatehouse's
socket instead of its TCP port, as a sidecar Envoy in the same pod would.
Same decisions, same headers upstream as over TCP."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from envoy_config import EXAMPLE
from harness import expect
from harness.envoy import EnvoyInstance
from harness.httpc import Client


@pytest.fixture(scope="module")
def uds_client(workdir: Path, gatehouse, gatehouse_port: int, gatehouse_http_port: int, echo):
    socket = workdir / "gatehouse-grpc.sock"
    assert socket.is_socket(), "the shared gatehouse must listen on its Unix socket"
    config = yaml.safe_load(EXAMPLE.read_text())
    cluster = next(c for c in config["static_resources"]["clusters"] if c["name"] == "gatehouse")
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    endpoint["address"] = {"pipe": {"path": str(socket)}}
    source = workdir / "envoy-uds-source.yaml"
    source.write_text(yaml.safe_dump(config))
    instance = EnvoyInstance(workdir / "envoy-uds", gatehouse_port=gatehouse_port, upstream_port=echo.port,
                             gatehouse_http_port=gatehouse_http_port, name="envoy-uds", source=source)
    yield Client(instance.port)
    instance.stop()


def test_allowed_over_unix_socket_with_identity_headers(uds_client, mint):
    seen = expect.allowed(uds_client.get("/whoami/x", token=mint.token()))
    assert seen["headers"]["x-auth-request-user"] == "alice"


def test_denials_over_unix_socket(uds_client, mint):
    expect.no_credential(uds_client.get("/api/x"))
    token = mint.token(identity={"sub": "carol", "preferred_username": "carol", "groups": []})
    expect.insufficient_scope(uds_client.get("/data/x", token=token), {"read:data"})
