"""Operators' views of a decision: the decision log (one JSON line per
check with `log.format: json` and `log.decisions: all`, through Envoy), and
`gatehouse explain` on a request described on the command line."""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
import time
from pathlib import Path

import yaml

from harness import configs, expect, tokens
from harness.gatehouse import require_binary
from harness.httpc import Client
from harness.servers import OtlpHttpReceiver

DECISION_FIELDS = {
    "decision", "rule", "reason", "detail", "status", "subject", "user", "email", "uid", "groups",
    "scopes", "identity_kind", "issuer", "tool", "client_ip", "method", "host", "path",
    "trace_id", "credential", "token_fp",
}


def fp(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def json_config(idp) -> dict:
    config = configs.single_issuer_config(idp)
    config["log"] = {"level": "info,gatehouse=debug", "format": "json", "decisions": "all"}
    config["scopes"] = {"group_mapping": configs.GROUP_MAPPING}
    config["policy"]["rules"] = [
        {"name": "data", "match": {"path": {"prefix": "/data/"}}, "scopes": ["read:data"]},
    ]
    return config


def decision_lines(log: str) -> list[dict]:
    """Every line after the harness's `$ command` line is one JSON object."""
    lines = []
    for raw in log.splitlines():
        if not raw.strip() or raw.startswith("$ "):
            continue
        record = json.loads(raw)  # fails the test if a line is not JSON
        assert {"timestamp", "level", "target"} <= set(record), raw
        if record["target"] == "gatehouse::decision":
            lines.append(record)
    return lines


def test_json_decision_lines_through_envoy(gatehouse_factory, envoy_factory, echo, idp, mint):
    g = gatehouse_factory(json_config(idp), name="gatehouse-json")
    g.wait_serving()
    client = Client(envoy_factory(g.port, echo.port, name="envoy-json").port)
    trace = secrets.token_hex(16)
    traceparent = f"00-{trace}-{secrets.token_hex(8)}-01"
    reader = mint.token()  # Alice: groups admins, readers → read:data
    outsider = mint.token(groups=["nobody"], sub="carol-sub")

    expect.allowed(client.get("/data/1", token=reader, headers={"traceparent": traceparent}))
    expect.no_credential(client.get("/data/2"))
    expect.insufficient_scope(client.get("/data/3", token=outsider), {"read:data"})

    deadline = time.monotonic() + 5
    while len(lines := decision_lines(g.log())) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(lines) == 3, g.log()
    for line in lines:
        assert DECISION_FIELDS <= set(line), line
        assert line["level"] == "INFO" and line["method"] == "GET", line
        assert line["client_ip"] and line["host"], line
    allowed, missing, scope = lines
    assert allowed["message"] == "allow" and allowed["decision"] == "allow", allowed
    assert allowed["rule"] == "data" and allowed["status"] == 200
    assert allowed["path"] == "/data/1" and allowed["subject"] == "alice-sub"
    assert allowed["trace_id"] == trace, "the caller's traceparent names the trace"
    assert allowed["credential"] == "bearer" and allowed["token_fp"] == fp(reader)

    assert missing["decision"] == "deny" and missing["reason"] == "no_credential"
    assert missing["status"] == 401 and missing["token_fp"] == "" and missing["subject"] == ""
    assert missing["trace_id"] == ""

    assert scope["decision"] == "deny" and scope["reason"] == "insufficient_scope"
    assert scope["status"] == 403 and scope["subject"] == "carol-sub"
    assert scope["token_fp"] == fp(outsider) and "read:data" in scope["detail"]
    log = g.log()
    assert reader not in log and outsider not in log


def test_check_spans_reach_an_otlp_receiver_on_shutdown(gatehouse_factory, envoy_factory, echo, idp,
                                                        mint):
    """Through Envoy, with the caller's traceparent: gatehouse's spans are
    exported to an OTLP/HTTP receiver, at the latest when SIGTERM flushes
    them. (tests/otlp_export.rs decodes the export; here the trace id's 16
    bytes and the span names are looked for in the protobuf body.)"""
    receiver = OtlpHttpReceiver()
    try:
        config = json_config(idp)
        config["tracing"] = {"otlp_endpoint": f"http://127.0.0.1:{receiver.server_port}",
                             "protocol": "http", "service_name": "gatehouse-e2e"}
        g = gatehouse_factory(config, name="gatehouse-otlp")
        g.wait_serving()
        client = Client(envoy_factory(g.port, echo.port, name="envoy-otlp").port)
        trace = secrets.token_hex(16)
        token = mint.token()
        expect.allowed(client.get("/data/1", token=token,
                                  headers={"traceparent": f"00-{trace}-{secrets.token_hex(8)}-01"}))
        assert g.stop() == 0, g.log()
        body = b"".join(receiver.bodies)
        assert bytes.fromhex(trace) in body, "the check's spans are in the caller's trace"
        for name in (b"check", b"authn", b"authz", b"gatehouse.rule", b"gatehouse-e2e"):
            assert name in body, name
        assert token.encode() not in body and token.rsplit(".", 1)[1].encode() not in body
        assert set(receiver.content_types) == {"application/x-protobuf"}
    finally:
        receiver.shutdown()


def _explain(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(require_binary()), "explain", "--config", str(config), *args],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )


def test_explain_command_with_a_pyjwt_token(tmp_path, idp):
    """`gatehouse explain` with an HS256 token minted by PyJWT (a shared
    secret: static keys work offline) and a jwks_uri issuer it cannot fetch."""
    secret = tokens.generate_secret("HS256")
    (tmp_path / "hmac.secret").write_bytes(secret.secret)
    config = configs.single_issuer_config(idp)
    config["jwt"]["issuers"].append(configs.issuer(
        "hmac", configs.HMAC_ISSUER, ["HS256"], {"shared_secret_file": "hmac.secret"},
        configs.QUIET_REFRESH))
    config["scopes"] = {"group_mapping": configs.GROUP_MAPPING}
    config["policy"]["rules"] = [
        {"name": "data", "match": {"path": {"prefix": "/data/"}}, "scopes": ["read:data"],
         "headers": ["user", "token"]},
    ]
    path = tmp_path / "gatehouse.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    claims = tokens.claims(configs.HMAC_ISSUER, sub="dana-sub", groups=["readers"])
    token = tokens.mint(secret, claims, lib="pyjwt")
    fetches = idp.fetches()

    allowed = _explain(path, "--url", "https://api.example.org/data/7?access_token=x",
                       "-H", f"Authorization: Bearer {token}")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    out = allowed.stdout
    assert "rule:        data" in out, out
    assert f"credential:  bearer (sha256:{fp(token)})" in out, out
    assert 'caller:      jwt "dana-sub" from hmac' in out, out
    assert "decision:    ALLOW" in out, out
    assert "x-auth-request-token: <redacted sha256:" in out, out
    # The jwks_uri issuer is named as not loaded, with the way out.
    assert f"keys not loaded: issuer {idp.issuer}" in out and "--jwks" in out, out
    assert token not in out + allowed.stderr
    assert token.rsplit(".", 1)[1] not in out + allowed.stderr
    assert idp.fetches() == fetches, "explain fetches no keys"

    denied = _explain(path, "-X", "POST", "--url", "https://api.example.org/data/7")
    assert denied.returncode == 1, denied.stdout + denied.stderr
    assert "credential:  none found" in denied.stdout
    assert "decision:    DENY 401 (no_credential)" in denied.stdout

    bad = _explain(path, "--url", "not a url")
    assert bad.returncode == 64 and "--url" in bad.stderr  # a usage error
