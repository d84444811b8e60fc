"""The README's quick start, `bash demo/try.sh`, run as a new user would: its
check mode answers the three requests as documented and exits 0; the
interactive mode keeps everything serving until Ctrl-C and then stops all it
started; a busy port is refused before anything starts.

The script runs the gatehouse binary the suite tests ($GATEHOUSE_BIN, not a
release build) and the Envoy of tests/setup.sh; it uses the fixed ports of
envoy/envoy.yaml and config/demo.yaml (10000, 9901, 9191, 8080, 8000), so these
tests skip when one of them is taken by something else.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from harness.gatehouse import REPO, gatehouse_binary

SCRIPT = REPO / "demo" / "try.sh"
PORTS = (10000, 9901, 9191, 8080, 8000)
TIMEOUT = 120  # seconds; the script itself takes about 5 s once Envoy is installed
# bash, started as a terminal starts it: with SIGINT at its default. A test
# run started in the background (`cmd &` without job control) inherits
# SIGINT ignored, and bash can neither trap nor receive a signal that was
# ignored when it started: Ctrl-C's SIGINT would then be lost.
BASH_AS_IN_A_TERMINAL = [sys.executable, "-c", "import os, signal, sys; "
                         "signal.signal(signal.SIGINT, signal.SIG_DFL); "
                         "os.execvp('bash', ['bash', *sys.argv[1:]])"]


def port_free(port: int) -> bool:
    with socket.socket() as s:
        # As the servers do: connections in TIME_WAIT do not make a port busy.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def demo_env() -> dict[str, str]:
    busy = [p for p in PORTS if not port_free(p)]
    if busy:
        pytest.skip(f"demo ports in use: {busy}")
    binary = gatehouse_binary()
    if not binary.exists():
        pytest.fail(f"no gatehouse binary at {binary} (build it, or set GATEHOUSE_BIN)")
    env = {k: v for k, v in os.environ.items() if k != "DEMO_EXIT"}
    env["GATEHOUSE_BIN"] = str(binary)
    return env


def wait_ports_free(deadline: float) -> list[int]:
    while True:
        busy = [p for p in PORTS if not port_free(p)]
        if not busy or time.monotonic() > deadline:
            return busy
        time.sleep(0.1)


def test_check_mode_answers_the_three_requests(demo_env: dict[str, str]):
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(SCRIPT), "--check"], env=demo_env, cwd=REPO,
        capture_output=True, text=True, timeout=TIMEOUT, start_new_session=True,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    # Each answer is printed: status line, the header that proves it, and the verdict.
    assert "HTTP/1.1 401 Unauthorized" in out
    assert 'www-authenticate: Bearer realm="gatehouse-demo"' in out
    assert "HTTP/1.1 200 OK" in out
    assert "  x-auth-request-user: alice" in out  # echoed by the upstream
    assert "HTTP/1.1 403 Forbidden" in out
    assert 'error="insufficient_scope"' in out
    assert out.count("✔") == 3 and "✘" not in out
    # The token is never printed (the upstream echoes only its length).
    assert "Bearer ey" not in out
    # Everything it started is gone when it returns.
    assert wait_ports_free(time.monotonic() + 5) == []
    print(f"demo/try.sh --check took {time.monotonic() - started:.1f} s")


def test_interactive_mode_serves_until_interrupted(demo_env: dict[str, str], tmp_path: Path):
    log = tmp_path / "try.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [*BASH_AS_IN_A_TERMINAL, str(SCRIPT)], env=demo_env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + TIMEOUT
        while "keeps running until Ctrl-C" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        session = requests.Session()
        session.trust_env = False
        # Still serving after the three requests: the public route needs no token.
        r = session.get("http://127.0.0.1:10000/public/x", timeout=5)
        assert r.status_code == 200 and "upstream saw: GET /public/x" in r.text
        r = session.get("http://127.0.0.1:10000/data/x", timeout=5)
        assert r.status_code == 401

        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends the script
        interrupted = time.monotonic()
        # The three stop together, within gatehouse's 5 s drain and 2 s more.
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            left = subprocess.run(["ps", "-o", "pid,stat,etime,args", "-g", str(proc.pid)],
                                  capture_output=True, text=True).stdout
            pytest.fail(f"still running 20 s after Ctrl-C:\n{left}\n{log.read_text()}")
        assert code == 130, log.read_text()
        print(f"demo/try.sh stopped {time.monotonic() - interrupted:.1f} s after Ctrl-C")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert wait_ports_free(time.monotonic() + 5) == [], log.read_text()


def test_a_busy_port_is_refused_before_anything_starts(demo_env: dict[str, str]):
    with socket.socket() as blocker:
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", 8000))
        blocker.listen()
        result = subprocess.run(
            ["bash", str(SCRIPT), "--check"], env=demo_env, cwd=REPO,
            capture_output=True, text=True, timeout=30, start_new_session=True,
        )
    assert result.returncode != 0
    assert "port(s) 8000 already in use" in result.stderr
    assert "HTTP/1.1" not in result.stdout  # no request was sent
