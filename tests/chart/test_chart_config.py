"""The configuration the chart renders: gatehouse itself accepts it
(`gatehouse check-config`, with the files the Secrets would provide and the
environment the Deployment sets), it names only mounted files, and the
pods roll exactly when it changes."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from chartkit import RELEASE, SECRETS_DIR, Rendered, container, merge, value_sets

VALUE_SETS = value_sets()


def rendered_config(rendered: Rendered) -> str:
    return rendered.get("ConfigMap", f"{RELEASE}-config")["data"]["config.yaml"]


def secret_paths(config_text: str) -> list[str]:
    return sorted(set(re.findall(re.escape(SECRETS_DIR) + r"/[^\s\"']+", config_text)))


def mounted_files(rendered: Rendered) -> tuple[set[str], list[str]]:
    """The files the gatehouse pod sees from Secrets: exact paths (volumes
    with `items`) and directories (whole Secrets)."""
    deploy = rendered.get("Deployment", RELEASE)
    volumes = {v["name"]: v for v in deploy["spec"]["template"]["spec"]["volumes"]}
    files, dirs = set(), []
    for mount in container(deploy, "gatehouse")["volumeMounts"]:
        secret = volumes[mount["name"]].get("secret")
        if not secret:
            continue
        if "items" in secret:
            files |= {f"{mount['mountPath']}/{item['path']}" for item in secret["items"]}
        else:
            dirs.append(mount["mountPath"] + "/")
    return files, dirs


def write_secret_files(paths: list[str], root: Path) -> None:
    """What the Secrets would hold: a fresh P-256 key for signing keys, a
    random 64-hex-character string otherwise (≥ 32 bytes for HS256)."""
    for path in paths:
        target = root / path.removeprefix(SECRETS_DIR + "/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if "/signing-keys/" in path:
            key = ec.generate_private_key(ec.SECP256R1())
            target.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                 serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
        else:
            target.write_text(secrets.token_hex(32))


def check_config(gatehouse_bin: Path, rendered: Rendered, workdir: Path) -> subprocess.CompletedProcess:
    """`gatehouse check-config` on the rendered file, Secret paths redirected
    into `workdir`, with the Deployment's GATEHOUSE_* environment."""
    text = rendered_config(rendered)
    paths = secret_paths(text)
    write_secret_files(paths, workdir / "secrets")
    config = workdir / "config.yaml"
    config.write_text(text.replace(SECRETS_DIR, str(workdir / "secrets")))
    ctr = container(rendered.get("Deployment", RELEASE), "gatehouse")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEHOUSE_")}
    env.update({e["name"]: e["value"] for e in ctr.get("env", []) if "value" in e})
    return subprocess.run([str(gatehouse_bin), "check-config", "-c", str(config)], env=env,
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)


def test_gatehouse_accepts_the_rendered_config(rendered: Rendered, gatehouse_bin: Path,
                                               tmp_path: Path):
    result = check_config(gatehouse_bin, rendered, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "configuration ok" in result.stdout


def test_gatehouse_refuses_a_broken_rendered_config(chart, gatehouse_bin: Path, tmp_path: Path):
    """check-config is not a rubber stamp: what the schema cannot see (a
    credential header named as the act-as header) is refused."""
    values = {"config": {"tools": {"act_as_header": "Authorization"}}}
    result = check_config(gatehouse_bin, chart.render(values), tmp_path)
    assert result.returncode != 0
    assert "tools.act_as_header" in result.stderr + result.stdout


def test_config_listens_where_the_probes_and_services_look(rendered: Rendered):
    config = yaml.safe_load(rendered_config(rendered))
    ctr = container(rendered.get("Deployment", RELEASE), "gatehouse")
    ports = {p["name"]: p["containerPort"] for p in ctr["ports"]}
    assert config["server"]["grpc_addr"].rsplit(":", 1)[1] == str(ports["grpc"])
    assert config["server"]["http_addr"].rsplit(":", 1)[1] == str(ports["http"])
    assert ctr["readinessProbe"]["grpc"]["port"] == ports["grpc"]
    host = config["server"]["grpc_addr"].rsplit(":", 1)[0]
    assert host in ("0.0.0.0", "[::]"), host  # reachable from outside the pod


def test_ipv6_listen_address_is_bracketed(chart):
    config = yaml.safe_load(rendered_config(chart.render(VALUE_SETS["minimal"])))
    assert config["server"]["grpc_addr"] == "[::]:9191"
    assert config["server"]["http_addr"] == "[::]:8080"


def test_config_names_only_mounted_secret_files(rendered: Rendered):
    files, dirs = mounted_files(rendered)
    for path in secret_paths(rendered_config(rendered)):
        assert path in files or any(path.startswith(d) for d in dirs), (path, files, dirs)


def test_signing_keys_come_from_secrets_in_order(render_set):
    rendered = render_set("all-enabled")
    config = yaml.safe_load(rendered_config(rendered))
    refs = VALUE_SETS["all-enabled"]["secrets"]["signingKeys"]
    assert config["issuer"]["signing_keys"] == [
        {"file": f"{SECRETS_DIR}/signing-keys/{i}/{ref['key']}"} for i, ref in enumerate(refs)]
    volumes = {v["name"]: v for v in
               rendered.get("Deployment", RELEASE)["spec"]["template"]["spec"]["volumes"]}
    for i, ref in enumerate(refs):
        secret = volumes[f"signing-key-{i}"]["secret"]
        assert secret["secretName"] == ref["secretName"]
        assert secret["items"] == [{"key": ref["key"], "path": ref["key"]}]
        assert secret["defaultMode"] == 0o440


def test_the_store_is_wired_to_redis_its_password_and_the_encryption_key(render_set, chart):
    """With redis.enabled the chart points the store at the bundled Redis
    and writes the password and key files it mounts; an external Redis in
    config.store.redis keeps its URL and gets the same files."""
    config = yaml.safe_load(rendered_config(render_set("all-enabled")))
    store_key = VALUE_SETS["all-enabled"]["secrets"]["storeKey"]
    assert config["store"] == {
        "redis": {"url": f"redis://{RELEASE}-redis:6379/0",
                  "password_file": f"{SECRETS_DIR}/redis/password"},
        "encryption_key_file": f"{SECRETS_DIR}/store-key/{store_key['key']}",
    }
    external = {"config": {"store": {"redis": {"sentinel": {
                    "master_name": "main", "nodes": ["redis://sentinel:26379"]}}}},
                "secrets": {"storeKey": {"secretName": "k", "key": "key.hex"},
                            "redisPassword": {"secretName": "redis-auth", "key": "pw"}}}
    config = yaml.safe_load(rendered_config(chart.render(external)))
    assert config["store"]["redis"] == {
        "sentinel": {"master_name": "main", "nodes": ["redis://sentinel:26379"]},
        "password_file": f"{SECRETS_DIR}/redis/pw"}
    assert config["store"]["encryption_key_file"] == f"{SECRETS_DIR}/store-key/key.hex"
    # No Redis: the chart adds no store section of its own.
    assert "store" not in yaml.safe_load(rendered_config(chart.render({})))


def test_every_secret_reference_is_mounted_read_only(render_set):
    rendered = render_set("all-enabled")
    deploy = rendered.get("Deployment", RELEASE)
    volumes = {v["name"]: v for v in deploy["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["name"]: m for m in container(deploy, "gatehouse")["volumeMounts"]}
    secret_volumes = {name: v["secret"] for name, v in volumes.items() if "secret" in v}
    store_key = VALUE_SETS["all-enabled"]["secrets"]["storeKey"]
    expected = {
        "signing-key-0": ("gatehouse-signing-2025-06", f"{SECRETS_DIR}/signing-keys/0"),
        "signing-key-1": ("gatehouse-signing-2025-01", f"{SECRETS_DIR}/signing-keys/1"),
        "store-key": (store_key["secretName"], f"{SECRETS_DIR}/store-key"),
        "oidc-keycloak": ("gatehouse-oidc-keycloak", f"{SECRETS_DIR}/oidc/keycloak"),
        # secrets.redisPassword is empty: the bundled Redis's Secret is used.
        "redis-password": ("gatehouse-redis", f"{SECRETS_DIR}/redis"),
        "file-hmac": ("gatehouse-ci-hmac", f"{SECRETS_DIR}/files/hmac"),
    }
    assert set(secret_volumes) == set(expected)
    for name, (secret_name, mount_path) in expected.items():
        assert secret_volumes[name]["secretName"] == secret_name
        assert secret_volumes[name]["defaultMode"] == 0o440
        assert mounts[name]["mountPath"] == mount_path
        assert mounts[name]["readOnly"] is True
    # The pod's fsGroup is what lets the non-root user read 0440 files.
    assert deploy["spec"]["template"]["spec"]["securityContext"]["fsGroup"] == 65532


def test_environment_overrides_come_from_values(render_set):
    ctr = container(render_set("all-enabled").get("Deployment", RELEASE), "gatehouse")
    env = {e["name"]: e for e in ctr["env"]}
    assert env["GATEHOUSE_LOG__LEVEL"]["value"] == "info,gatehouse=debug"
    assert env["RUST_BACKTRACE"] == {"name": "RUST_BACKTRACE", "value": "1"}


def checksum(rendered: Rendered) -> str:
    return rendered.get("Deployment", RELEASE)["spec"]["template"]["metadata"]["annotations"][
        "checksum/config"]


def pod_template(rendered: Rendered) -> dict:
    return rendered.get("Deployment", RELEASE)["spec"]["template"]


def test_config_checksum_rolls_the_pods_exactly_when_the_config_changes(chart):
    base = VALUE_SETS["all-enabled"]
    before = chart.render(base)
    changed_rule = chart.render(merge(base, {"config": {"log": {"level": "debug"}}}))
    rotated = merge(base, {})
    rotated["secrets"]["signingKeys"].reverse()  # rotation step: the other key signs
    rotated_render = chart.render(rotated)
    unrelated = chart.render(merge(base, {"autoscaling": {"maxReplicas": 20},
                                          "podAnnotations": {"x": "y"}}))
    assert checksum(changed_rule) != checksum(before)
    assert rendered_config(changed_rule) != rendered_config(before)
    # Key rotation: the config names the same mount points, but which Secret
    # is mounted where changes, so the pod template changes and pods roll.
    assert pod_template(rotated_render) != pod_template(before)
    assert checksum(unrelated) == checksum(before)
    assert rendered_config(unrelated) == rendered_config(before)
    # The checksum is deterministic.
    assert checksum(chart.render(base)) == checksum(before)


def test_without_roll_on_config_change_a_config_change_leaves_the_pods_to_hot_reload(chart):
    base = merge(VALUE_SETS["all-enabled"], {"rollOnConfigChange": False})
    before = chart.render(base)
    changed = chart.render(merge(base, {"config": {"log": {"level": "debug"}}}))
    assert "checksum/config" not in pod_template(before)["metadata"]["annotations"]
    # The ConfigMap changes, the pod template does not: no rollout, the
    # pods reload the mounted file (config.reload in all-enabled).
    assert rendered_config(changed) != rendered_config(before)
    assert pod_template(changed) == pod_template(before)
    assert "reload:" in rendered_config(before)
    # The default keeps rolling.
    assert "checksum/config" in pod_template(chart.render(VALUE_SETS["all-enabled"]))["metadata"][
        "annotations"]


@pytest.mark.parametrize("name", ["defaults", "minimal"])
def test_minimal_installs_mount_no_secrets(chart, name):
    files, dirs = mounted_files(chart.render(VALUE_SETS[name]))
    assert files == set() and dirs == []
