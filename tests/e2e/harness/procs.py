"""Child processes with their output in a log file, each in its own process
group so that stopping it also stops anything it spawned."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Sequence, TypeVar

T = TypeVar("T")

# Every process started in this test session, so that the session can stop
# whatever a test left running and print logs of failing tests.
_REGISTRY: list["ManagedProcess"] = []
_REGISTRY_LOCK = threading.Lock()
# Every log file worth showing when a test fails: (label, path).
_LOGS: list[tuple[str, Path]] = []


def register_log(label: str, path: Path) -> None:
    with _REGISTRY_LOCK:
        _LOGS.append((label, Path(path)))


def registered_logs() -> list[tuple[str, Path]]:
    with _REGISTRY_LOCK:
        return list(_LOGS)


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (for programs that
    cannot report the port they bound themselves)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(
    what: str,
    probe: Callable[[], T | None],
    timeout: float,
    interval: float = 0.05,
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """Calls `probe` until it returns something other than None/False."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = probe()
            if result is not None and result is not False:
                return result
        except ProcessExited:
            raise
        except Exception as e:  # noqa: BLE001 - the probe's failure is the signal
            last_error = e
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            extra = f"\n{on_timeout()}" if on_timeout else ""
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}{detail}{extra}")
        time.sleep(interval)


class ProcessExited(RuntimeError):
    """A process we were waiting on has exited."""


class ManagedProcess:
    """One child process; stdout and stderr go to `log_path`."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, env: dict | None = None,
                 cwd: Path | None = None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab", buffering=0)
        self._log.write(f"$ {' '.join(self.argv)}\n".encode())
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=str(cwd) if cwd else None,
            start_new_session=True,  # own process group: killpg reaches children
        )
        self.pid = self.proc.pid
        with _REGISTRY_LOCK:
            _REGISTRY.append(self)
            _LOGS.append((name, self.log_path))

    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def check_alive(self) -> None:
        if not self.alive():
            raise ProcessExited(
                f"{self.name} exited with code {self.proc.returncode}\n{self.log_tail()}"
            )

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_text().splitlines()
        return f"--- last {min(lines, len(text))} lines of {self.log_path} ---\n" + "\n".join(
            text[-lines:]
        )

    def signal(self, sig: int) -> None:
        """Signals the main process only (e.g. SIGTERM for a graceful drain)."""
        if self.alive():
            os.kill(self.pid, sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM to the process group, SIGKILL after `timeout`."""
        if self.alive():
            self._killpg(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._killpg(signal.SIGKILL)
                self.proc.wait(timeout=5)
        # Children of the group that outlived the leader.
        self._killpg(signal.SIGKILL)
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode

    def _killpg(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def all_processes() -> list[ManagedProcess]:
    with _REGISTRY_LOCK:
        return list(_REGISTRY)


def stop_all() -> None:
    for p in reversed(all_processes()):
        p.stop(timeout=3)
