"""Continuous requests through a listener while a test breaks something
(restarts, kills, SIGTERM), each result timed so that a test can ask what
was answered inside a window (e.g. while gatehouse was down)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from harness.httpc import Client


@dataclass(frozen=True)
class Result:
    """One request: its kind, when it was sent and answered (monotonic
    clock), and the status with who answered (`upstream`, `gatehouse`,
    `envoy`), or status None and the client error (refused, reset)."""

    kind: str
    started: float
    ended: float
    status: int | None
    layer: str

    @property
    def failed(self) -> bool:
        return self.status is None


class Traffic:
    """`threads` threads, each sending the requests of `kinds` (name →
    (target, token or None)) in turn, without pause, on a new connection
    each, until stopped (or `limit` seconds)."""

    def __init__(self, port: int, kinds: dict[str, tuple[str, str | None]], threads: int = 4,
                 limit: float = 60.0, timeout: float = 5.0):
        self.port, self.kinds, self.limit, self.timeout = port, kinds, limit, timeout
        self._results: list[Result] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True, name=f"traffic-{i}")
                         for i in range(threads)]

    def _run(self) -> None:
        client = Client(self.port, timeout=self.timeout)
        deadline = time.monotonic() + self.limit
        while not self._stop.is_set() and time.monotonic() < deadline:
            for kind, (target, token) in self.kinds.items():
                started = time.monotonic()
                try:
                    r = client.get(target, token=token)
                    result = Result(kind, started, time.monotonic(), r.status, r.layer)
                except Exception as e:  # noqa: BLE001 - a failed request is the finding
                    result = Result(kind, started, time.monotonic(), None, repr(e))
                with self._lock:
                    self._results.append(result)

    def results(self, kind: str | None = None) -> list[Result]:
        with self._lock:
            return [r for r in self._results if kind is None or r.kind == kind]

    def count(self) -> int:
        with self._lock:
            return len(self._results)

    def wait_for(self, n: int, timeout: float = 10.0) -> None:
        """Waits until `n` more requests have been answered."""
        target = self.count() + n
        deadline = time.monotonic() + timeout
        while self.count() < target:
            if time.monotonic() > deadline:
                raise TimeoutError(f"traffic: fewer than {n} requests answered in {timeout}s")
            time.sleep(0.01)

    def __enter__(self) -> "Traffic":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)


def summary(results: list[Result]) -> dict[tuple, int]:
    """(kind, status, layer) → count, for assertion messages."""
    out: dict[tuple, int] = {}
    for r in results:
        key = (r.kind, r.status, r.layer if r.status is not None else r.layer[:60])
        out[key] = out.get(key, 0) + 1
    return out
