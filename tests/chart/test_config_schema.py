"""The configuration's JSON Schema (`gatehouse config schema`, derived from
the Rust config types) accepts every configuration the repository ships:
config/*.yaml, the Istio example, and the file the chart renders from each
tested value set; and it refuses typical mistakes, naming the key."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from chartkit import RELEASE, REPO, Rendered

CONFIG_FILES = sorted((REPO / "config").glob("*.yaml")) + [REPO / "envoy" / "istio" / "gatehouse.yaml"]


@pytest.fixture(scope="module")
def validator(gatehouse_bin: Path) -> jsonschema.Draft202012Validator:
    out = subprocess.run([str(gatehouse_bin), "config", "schema"], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    schema = json.loads(out)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def errors(validator: jsonschema.Draft202012Validator, config: Any) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message}"
            for e in validator.iter_errors(config)]


def test_config_files_are_found():
    names = {p.name for p in CONFIG_FILES}
    assert {"demo.yaml", "toolforge.yaml", "gatehouse.yaml"} <= names


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_config_files_validate(validator, path):
    config = yaml.safe_load(path.read_text())
    assert config, f"{path} is empty"
    assert errors(validator, config) == []


def test_rendered_chart_config_validates(validator, rendered: Rendered):
    text = rendered.get("ConfigMap", f"{RELEASE}-config")["data"]["config.yaml"]
    assert errors(validator, yaml.safe_load(text)) == []


REFUSED = {
    "unknown section": ({"polciy": {}}, "(top level)", "'polciy' was unexpected"),
    "unknown key": ({"server": {"grpc_adr": "0.0.0.0:1"}}, "server", "'grpc_adr' was unexpected"),
    "duration without a unit": ({"server": {"drain_timeout": "15"}}, "server.drain_timeout",
                                "does not match"),
    "bad enum": ({"log": {"format": "xml"}}, "log.format", "is not valid under any"),
    "negative integer": ({"jwt": {"cache_size": -1}}, "jwt.cache_size", "minimum"),
    "the none algorithm": ({"jwt": {"issuers": [{"issuer": "x", "audiences": ["a"],
                                                 "algorithms": ["none"],
                                                 "keys": {"jwks_uri": "https://x"}}]}},
                           "jwt.issuers.0.algorithms.0", "is not one of"),
    "missing required key": ({"policy": {"rules": [{"scopes": ["a"]}]}}, "policy.rules.0",
                             "'name' is a required property"),
    "two key sources": ({"jwt": {"issuers": [{"issuer": "x", "audiences": ["a"],
                                              "algorithms": ["RS256"],
                                              "keys": {"jwks_uri": "https://x",
                                                       "jwks_file": "k.json"}}]}},
                        "jwt.issuers.0.keys", "is not valid under any"),
    "bad CIDR": ({"network": {"trusted_proxies": ["10.0.0.0"]}}, "network.trusted_proxies.0",
                 "does not match"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_schema_refuses_mistakes_naming_the_key(validator, case):
    config, key, reason = REFUSED[case]
    found = errors(validator, config)
    assert any(e.startswith(f"{key}: ") and reason in e for e in found), found

