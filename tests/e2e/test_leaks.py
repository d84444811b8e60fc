"""The secret-leak check itself (harness/leaks.py): it finds a planted secret
in a log, reports it without printing it, and makes a pytest run fail."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from harness import leaks, secret_registry

E2E = Path(__file__).resolve().parent
TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwbGFudGVkIn0.c2lnbmF0dXJlLW9mLXRoZS1wbGFudGVkLXRva2Vu"


def test_scan_finds_a_planted_token_and_its_signature(tmp_path):
    log = tmp_path / "gatehouse.log"
    signature = TOKEN.rsplit(".", 1)[1]
    log.write_text(
        "INFO gatehouse::decision: deny token_fp=\"0123456789abcdef\"\n"
        f"DEBUG something authorization=\"Bearer {TOKEN}\"\n"
        f"DEBUG sig={signature}\n"
    )
    secrets = {TOKEN: "planted token", signature: "planted token signature", "dark": "too short"}
    found = leaks.scan([log, tmp_path / "missing.log"], secrets)
    assert [(leak.line, leak.label) for leak in found] == [
        (2, "planted token"),
        (2, "planted token signature"),
        (3, "planted token signature"),
    ]
    text = leaks.report(found, scanned=1, secrets=len(secrets))
    assert TOKEN not in text and signature not in text
    assert f"sha256:{leaks.fingerprint(TOKEN)}" in text
    assert f"{log}:2: planted token" in text


def test_scan_of_a_clean_log_finds_nothing(tmp_path):
    log = tmp_path / "gatehouse.log"
    log.write_text('INFO gatehouse::decision: allow token_fp="b583668dfbeb08fb"\n')
    assert leaks.scan([log], {TOKEN: "planted token"}) == []


def test_registry_records_what_requests_carry():
    secret_registry.record_request(
        "/data/x?access_token=query-token-0123456789&then=/somewhere/else/entirely",
        [("Authorization", "Basic " + "dXNlcjpwYXNzd29yZC0wMTIzNDU2Nzg5YWJj"),
         ("Cookie", "theme=dark; gh_token=cookie-token-0123456789")],
    )
    recorded = secret_registry.recorded()
    assert "query-token-0123456789" in recorded
    assert "password-0123456789abc" in recorded  # the Basic password, decoded
    assert "cookie-token-0123456789" in recorded
    assert "/somewhere/else/entirely" not in recorded
    assert "dark" not in recorded


def _run_pytest(tmp_path: Path, planted: bool) -> subprocess.CompletedProcess:
    """A pytest run whose conftest installs the same session hooks as
    tests/e2e and whose one test writes a gatehouse log."""
    suite = tmp_path / ("planted" if planted else "clean")
    suite.mkdir()
    log = suite / "gatehouse.log"
    (suite / "conftest.py").write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(E2E)!r})
        from pathlib import Path
        from harness import leaks, secret_registry

        def pytest_sessionfinish(session, exitstatus):
            leaks.check_session(session, [Path({str(log)!r})], secret_registry.recorded())

        def pytest_terminal_summary(terminalreporter):
            leaks.terminal_summary(terminalreporter)
    """))
    line = f"Bearer {TOKEN}" if planted else "token_fp=0123456789abcdef"
    (suite / "test_writes_log.py").write_text(textwrap.dedent(f"""
        from pathlib import Path
        from harness import secret_registry

        def test_writes_log():
            secret_registry.record_token({TOKEN!r}, "planted token")
            Path({str(log)!r}).write_text("DEBUG " + {line!r} + "\\n")
    """))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(suite)],
        capture_output=True, text=True, timeout=120, cwd=suite, stdin=subprocess.DEVNULL,
    )


def test_a_leak_fails_the_pytest_run(tmp_path):
    run = _run_pytest(tmp_path, planted=True)
    assert run.returncode == 1, run.stdout + run.stderr
    assert leaks.SECTION in run.stdout, run.stdout
    assert "planted token (sha256:" in run.stdout
    assert TOKEN not in run.stdout and TOKEN.rsplit(".", 1)[1] not in run.stdout
    assert "1 passed" in run.stdout  # the test passed; the leak check failed the run


def test_a_clean_run_passes(tmp_path):
    run = _run_pytest(tmp_path, planted=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert leaks.SECTION not in run.stdout
