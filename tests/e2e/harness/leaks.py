"""The secret-leak check: at the end of the session, every gatehouse log file
written during the run is searched for every secret the tests handled
(`harness.secret_registry`). A hit fails the run (pytest's exit status 1)
and is reported by label, file and line, with a fingerprint of the secret,
never the secret itself."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import pytest

_REPORT_KEY = pytest.StashKey[str]()
_STATS_KEY = pytest.StashKey[str]()
SECTION = "secrets found in gatehouse logs"


@dataclass(frozen=True)
class Leak:
    path: Path
    line: int
    label: str
    fingerprint: str


def fingerprint(secret: str) -> str:
    """First 8 bytes of SHA-256, hex (gatehouse's own token fingerprint)."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


def scan(paths: Iterable[Path], secrets: dict[str, str]) -> list[Leak]:
    """Every (file, line) where a secret occurs; secrets are `value → label`."""
    leaks: list[Leak] = []
    for path in paths:
        try:
            text = Path(path).read_text(errors="replace")
        except FileNotFoundError:
            continue
        for secret, label in secrets.items():
            start = text.find(secret)
            while start != -1:
                line = text.count("\n", 0, start) + 1
                leaks.append(Leak(Path(path), line, label, fingerprint(secret)))
                start = text.find(secret, start + len(secret))
    return sorted(leaks, key=lambda leak: (str(leak.path), leak.line, leak.label))


def report(leaks: list[Leak], scanned: int, secrets: int) -> str:
    lines = [f"{len(leaks)} occurrence(s) of a secret in {scanned} gatehouse log file(s) "
             f"({secrets} secrets checked):"]
    lines += [f"  {leak.path}:{leak.line}: {leak.label} (sha256:{leak.fingerprint})"
              for leak in leaks]
    return "\n".join(lines)


def check_session(session: pytest.Session, logs: list[Path], secrets: dict[str, str]) -> None:
    """From `pytest_sessionfinish`: scans `logs` and, on a leak, makes the
    run fail (exit status 1) and keeps the report for the terminal summary."""
    leaks = scan(logs, secrets)
    if logs:
        session.config.stash[_STATS_KEY] = (
            f"secret-leak check: {len(secrets)} secrets searched in {len(logs)} gatehouse "
            f"log file(s): {len(leaks)} found")
    if not leaks:
        return
    session.config.stash[_REPORT_KEY] = report(leaks, len(logs), len(secrets))
    if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def terminal_summary(terminalreporter) -> None:  # noqa: ANN001 - pytest's TerminalReporter
    """From `pytest_terminal_summary`: prints the report, if any."""
    stats = terminalreporter.config.stash.get(_STATS_KEY, None)
    if stats:
        terminalreporter.write_line(stats)
    text = terminalreporter.config.stash.get(_REPORT_KEY, None)
    if text:
        terminalreporter.section(SECTION, red=True, bold=True)
        terminalreporter.line(text, red=True)
