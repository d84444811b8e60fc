"""Decision replay (issue 16) on a log recorded through the real Envoy: a
gatehouse with `log: {format: json, decisions: all}` and the policy of
tests/fixtures/replay/old.yaml answers a handful of requests; then
`gatehouse replay --config tests/fixtures/replay/new.yaml` on its log must
print the golden table (tests/e2e/golden/replay-new.txt), and replaying
against the recording policy must find no change.

`REPLAY_RECORD=1` rewrites the golden table and the recorded fixture
(tests/fixtures/replay/decisions.jsonl) that tests/replay.rs replays."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from harness import configs, expect
from harness.gatehouse import REPO, require_binary
from harness.httpc import Client
from harness.procs import wait_until

FIXTURES = REPO / "tests" / "fixtures" / "replay"
GOLDEN = REPO / "tests" / "e2e" / "golden" / "replay-new.txt"
BOB = {"sub": "bob-sub", "preferred_username": "bob", "email": "bob@example.com",
       "groups": ["readers"]}
DECISIONS = 14  # the requests sent below, one decision line each


def normalized(table: str) -> str:
    """The table without what depends on the rest of the log (how many
    lines gatehouse wrote besides its decisions)."""
    table = re.sub(r"lines read \d+", "lines read N", table)
    return re.sub(r"other lines \d+", "other lines N", table)


def replay(log: Path, config: Path, *more: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(require_binary()), "replay", "--config", str(config), str(log), *more],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if not k.startswith("GATEHOUSE_")},
    )


def decision_lines(log: Path) -> list[dict]:
    out = []
    for line in log.read_text().splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if doc.get("target") == "gatehouse::decision":
            out.append(doc)
    return out


def gatehouse_output(log: Path, to: Path) -> Path:
    """What gatehouse wrote to its log, without the harness's `$ command`
    header line."""
    lines = log.read_text().splitlines(keepends=True)
    to.write_text("".join(line for line in lines if not line.startswith("$ ")))
    return to


def test_replay_of_a_recorded_log_prints_the_golden_table(
        idp, echo, mint, gatehouse_factory, envoy_factory, tmp_path):
    config = configs.single_issuer_config(idp)
    recorded = yaml.safe_load((FIXTURES / "old.yaml").read_text())
    config["scopes"] = recorded["scopes"]
    config["policy"] = recorded["policy"]
    config["log"] = {"level": "info", "format": "json", "decisions": "all"}
    g = gatehouse_factory(config, name="gatehouse-replay")
    g.wait_serving()
    envoy = envoy_factory(g.port, echo.port, name="envoy-replay", gatehouse_http_port=g.http_port)
    client = Client(envoy.port)
    alice, bob = mint.token(), mint.token(identity=BOB)

    expect.allowed(client.get("/open/x"))
    expect.allowed(client.get("/data/1", token=alice))
    expect.allowed(client.get("/data/2", token=bob))
    expect.no_credential(client.get("/data/3"))
    expect.invalid_token(client.get("/data/4", token="not-a-jwt"))
    expect.allowed(client.get("/reports/q", token=alice))
    expect.allowed(client.get("/reports/q", token=bob))
    expect.denial(client.get("/beta/x"), 403, "access_denied")
    expect.denial(client.get("/beta/y", token=alice), 403, "access_denied")
    expect.allowed(client.get("/cel/x", token=bob))
    expect.denial(client.request("POST", "/cel/x", token=bob), 403, "access_denied")
    expect.allowed(client.request("POST", "/cel/x", token=alice))
    expect.allowed(client.get("/claims/x", token=alice))
    expect.denial(client.get("/legacy/x", token=alice), 403, "insufficient_scope")

    wait_until("every decision logged", lambda: len(decision_lines(g.log_path)) == DECISIONS,
               timeout=5)
    log = gatehouse_output(g.log_path, tmp_path / "decisions.jsonl")
    logged = decision_lines(log)
    assert [d["decision"] for d in logged].count("allow") == 8, logged
    assert all(d["token_fp"] == "" or len(d["token_fp"]) == 16 for d in logged), logged

    # Against the policy it was recorded with: nothing changes.
    same = replay(log, FIXTURES / "old.yaml", "--fail-on", "any")
    assert same.returncode == 0, same.stderr + same.stdout
    assert f"decisions {DECISIONS}, replayed {DECISIONS - 1}, unchanged {DECISIONS - 1}, " \
           "changed 0, not replayable 1, malformed 0" in same.stdout, same.stdout

    # Against the new one: the golden table, and `--fail-on allow` trips.
    new = replay(log, FIXTURES / "new.yaml", "--fail-on", "allow")
    if os.environ.get("REPLAY_RECORD") == "1":
        GOLDEN.write_text(normalized(new.stdout))
        shutil.copyfile(log, FIXTURES / "decisions.jsonl")
    assert new.returncode == 1, new.stderr + new.stdout
    assert "--fail-on allow" in new.stderr, new.stderr
    assert normalized(new.stdout) == GOLDEN.read_text(), new.stdout

    as_json = replay(log, FIXTURES / "new.yaml", "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["counts"] == {"allow_to_deny": 3, "deny_to_allow": 2, "reason_changed": 1}
    assert report["summary"]["malformed"] == 0
