"""A real `redis-server` (Debian package, installed by tests/setup.sh) on a
free loopback port, in its own directory, with an append-only file so that
a restart keeps what it held. `kill()` stops it hard (SIGKILL, as a crash
or a lost node would); `start()` brings it back on the same port."""

from __future__ import annotations

import shutil
import signal
import socket
import time
from pathlib import Path

import redis

from harness.procs import ManagedProcess, free_port, register_log, wait_until

START_TIMEOUT = 10.0


def redis_server_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server is not installed: run `bash tests/setup.sh`")
    return binary


class RedisServer:
    def __init__(self, workdir: Path, name: str = "redis"):
        self.name = name
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_path = self.workdir / f"{name}.log"
        register_log(name, self.log_path)
        self.process: ManagedProcess | None = None
        self.start()

    def start(self) -> None:
        """Starts (or restarts) the server on its port and waits until it answers PING."""
        self.process = ManagedProcess(self.name, [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.workdir),
            "--save", "",
            # The AOF makes data outlive a SIGKILLed server (outage tests).
            # Redis write()s the AOF before it answers, and the kernel keeps
            # what a killed process wrote, so no fsync is needed for that:
            # "always" made a first write take over 300 ms on a busy machine.
            "--appendonly", "yes",
            "--appendfsync", "no",
            "--protected-mode", "no",
            "--daemonize", "no",
        ], self.log_path)
        wait_until(f"{self.name} on port {self.port}", self.answers, START_TIMEOUT,
                   interval=0.05, on_timeout=self.process.log_tail)

    def client(self) -> redis.Redis:
        """A client of this server (short timeouts: a dead server fails fast)."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1,
                           socket_connect_timeout=1)

    def answers(self) -> bool:
        if self.process is not None:
            self.process.check_alive()
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        """SIGKILL: the server vanishes without closing connections cleanly."""
        if self.process is not None:
            self.process.signal(signal.SIGKILL)
            self.process.wait(timeout=5)
            self.process.stop()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def wait_down(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            except OSError:
                return
            time.sleep(0.05)
        raise AssertionError(f"{self.name} still accepts connections")
