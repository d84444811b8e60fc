"""Runs gatehouse (`gatehouse serve --config FILE`) on a config written into
its own directory, and talks to its gRPC health service."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import grpc
import requests
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness import secret_registry
from harness.procs import ManagedProcess, free_port, wait_until

REPO = Path(__file__).resolve().parents[3]
START_TIMEOUT = 20.0

SERVING = "SERVING"
NOT_SERVING = "NOT_SERVING"

# Every gatehouse log file of this session (scanned for secrets at the end).
_LOGS: list[Path] = []


def gatehouse_logs() -> list[Path]:
    return list(_LOGS)


def add_gatehouse_log(path: Path) -> None:
    """Scans `path` for secrets too: an Envoy running gatehouse in process
    writes gatehouse's log lines into its own log."""
    _LOGS.append(Path(path))


def gatehouse_binary() -> Path:
    return Path(os.environ.get("GATEHOUSE_BIN") or REPO / "target" / "debug" / "gatehouse")


def require_binary() -> Path:
    binary = gatehouse_binary()
    if not os.access(binary, os.X_OK):
        raise FileNotFoundError(
            f"gatehouse binary not found at {binary}: run `cargo build` first "
            "(or point GATEHOUSE_BIN at one)"
        )
    return binary


def check_config(path: Path, timeout: float = 30.0) -> subprocess.CompletedProcess:
    """`gatehouse check-config -c FILE`."""
    return subprocess.run(
        [str(require_binary()), "check-config", "-c", str(path)],
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )


class GatehouseInstance:
    """One `gatehouse serve` process. `config` is the YAML document as a dict;
    its `server.grpc_addr` is set here to `port` and `server.http_addr` (the
    side port) to `http_port` (defaults: free loopback ports). `files` are
    written next to the config (relative paths in the config resolve
    against the config's directory)."""

    def __init__(self, workdir: Path, config: dict[str, Any], files: dict[str, bytes] | None = None,
                 name: str = "gatehouse", port: int | None = None, http_port: int | None = None):
        binary = require_binary()
        self.name = name
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        for rel, content in (files or {}).items():
            (self.workdir / rel).parent.mkdir(parents=True, exist_ok=True)
            (self.workdir / rel).write_bytes(content)
            # Files beside the config are key material and credentials.
            if b"-----BEGIN" in content:
                secret_registry.record_pem(content, f"file {rel}")
            else:
                secret_registry.record(content, f"file {rel}")
        self.port = port or free_port()
        self.http_port = http_port or free_port()
        self.http_url = f"http://127.0.0.1:{self.http_port}"
        config.setdefault("server", {})["grpc_addr"] = f"127.0.0.1:{self.port}"
        config["server"]["http_addr"] = f"127.0.0.1:{self.http_port}"
        self.config = config
        self.config_path = self.workdir / "gatehouse.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self._channel = grpc.insecure_channel(
            f"127.0.0.1:{self.port}",
            options=[
                ("grpc.enable_http_proxy", 0),
                # Reconnect quickly while gatehouse starts up.
                ("grpc.initial_reconnect_backoff_ms", 50),
                ("grpc.min_reconnect_backoff_ms", 50),
                ("grpc.max_reconnect_backoff_ms", 250),
            ],
        )
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self.log_path = self.workdir / f"{name}.log"
        _LOGS.append(self.log_path)
        self.process = ManagedProcess(
            name,
            [binary, "serve", "--config", self.config_path],
            self.log_path,
            # Logs go to stderr (captured in the log file); no colours there.
            env={"NO_COLOR": "1", "RUST_BACKTRACE": "1"},
            cwd=self.workdir,
        )

    # health ----------------------------------------------------------------
    def health(self, service: str = "", timeout: float = 1.0) -> str | None:
        """The health status name, or None if the gRPC port does not answer."""
        try:
            reply = self._health.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError:
            return None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    def wait_listening(self, timeout: float = START_TIMEOUT) -> str:
        """Waits until the health service answers at all; returns its status."""
        return wait_until(f"{self.name} gRPC port {self.port}", self._probe(lambda s: s is not None),
                          timeout, on_timeout=self.process.log_tail)

    def healthz(self, timeout: float = 1.0) -> int | None:
        """The side port's `/healthz` status code, or None if it does not answer."""
        try:
            return requests.get(self.http_url + "/healthz", timeout=timeout,
                                proxies={"http": None, "https": None}).status_code
        except requests.RequestException:
            return None

    def wait_serving(self, timeout: float = START_TIMEOUT) -> str:
        return wait_until(f"{self.name} health SERVING on port {self.port}",
                          self._probe(lambda s: s == SERVING), timeout,
                          on_timeout=self.process.log_tail)

    def _probe(self, accept):
        def probe():
            self.process.check_alive()
            status = self.health()
            return status if accept(status) else None
        return probe

    # lifecycle ---------------------------------------------------------------
    def alive(self) -> bool:
        return self.process.alive()

    def log(self) -> str:
        return self.process.log_text()

    def stop(self) -> int | None:
        self._channel.close()
        return self.process.stop()
