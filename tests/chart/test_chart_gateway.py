"""The optional Envoy gateway: its rendered bootstrap is valid for the Envoy
the tests use (`envoy --mode validate`), keeps the shipped
envoy/envoy.yaml's security settings, points at the gatehouse Services,
and, run for real on loopback in front of gatehouse (on the chart's own
rendered configuration) and an echo upstream, protects a route."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from chartkit import REPO, RELEASE, SECRETS_DIR, Rendered, container, merge, value_sets

EXAMPLE = REPO / "envoy" / "envoy.yaml"


def envoy_config(rendered: Rendered) -> dict[str, Any]:
    return yaml.safe_load(rendered.get("ConfigMap", f"{RELEASE}-envoy")["data"]["envoy.yaml"])


def hcm(config: dict[str, Any]) -> dict[str, Any]:
    (listener,) = config["static_resources"]["listeners"]
    (chain,) = listener["filter_chains"]
    (manager,) = chain["filters"]
    return manager["typed_config"]


def cluster(config: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in config["static_resources"]["clusters"] if c["name"] == name]
    return found


def endpoint(config: dict[str, Any], name: str) -> dict[str, Any]:
    (group,) = cluster(config, name)["load_assignment"]["endpoints"]
    (lb,) = group["lb_endpoints"]
    return lb["endpoint"]["address"]["socket_address"]


GATEWAY_SETS = {
    "all-enabled": value_sets()["all-enabled"],
    # No headless Service, IPv6 listener, no side-port routes.
    "plain": {"envoyGateway": {"enabled": True, "upstream": {"host": "app", "port": 80},
                               "routeSidePort": False},
              "headlessService": {"enabled": False}, "listenAddress": "::"},
}


@pytest.mark.parametrize("name", sorted(GATEWAY_SETS))
def test_envoy_accepts_the_rendered_bootstrap(chart, envoy_bin: Path, tmp_path: Path, name: str):
    rendered = chart.render(GATEWAY_SETS[name])
    path = tmp_path / "envoy.yaml"
    path.write_text(rendered.get("ConfigMap", f"{RELEASE}-envoy")["data"]["envoy.yaml"])
    result = subprocess.run([str(envoy_bin), "--mode", "validate", "-c", str(path),
                             "--log-level", "error"],
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


def test_gateway_keeps_the_examples_security_settings(render_set):
    """The settings envoy/envoy.yaml explains (path normalization, fail
    closed, no query strings in logs) are the same in the chart's copy."""
    ours, example = envoy_config(render_set("all-enabled")), yaml.safe_load(EXAMPLE.read_text())
    for key in ("normalize_path", "merge_slashes", "path_with_escaped_slashes_action",
                "common_http_protocol_options", "access_log", "codec_type"):
        assert hcm(ours)[key] == hcm(example)[key], key
    ext_authz = {f["name"]: f["typed_config"] for f in hcm(ours)["http_filters"]}
    example_authz = {f["name"]: f["typed_config"] for f in hcm(example)["http_filters"]}
    assert list(ext_authz) == list(example_authz)
    assert ext_authz["envoy.filters.http.ext_authz"] == example_authz["envoy.filters.http.ext_authz"]
    assert ext_authz["envoy.filters.http.ext_authz"]["failure_mode_allow"] is False
    assert cluster(ours, "gatehouse")["typed_extension_protocol_options"] == \
        cluster(example, "gatehouse")["typed_extension_protocol_options"]  # HTTP/2
    # The side-port routes are the example's, with the check off.
    def side_routes(config):
        routes = hcm(config)["route_config"]["virtual_hosts"][0]["routes"]
        return [(r["match"], r["route"]["cluster"]) for r in routes
                if r["route"]["cluster"] == "gatehouse_http"]
    assert side_routes(ours) == side_routes(example)


def test_gateway_reaches_every_gatehouse_pod_through_the_headless_service(render_set):
    config = envoy_config(render_set("all-enabled"))
    for name, port in (("gatehouse", 9191), ("gatehouse_http", 8080)):
        assert cluster(config, name)["type"] == "STRICT_DNS"
        assert endpoint(config, name) == {
            "address": f"{RELEASE}-headless.gatehouse.svc.cluster.local", "port_value": port}
    # Draining pods (NOT_SERVING) leave the rotation before DNS notices.
    (check,) = cluster(config, "gatehouse")["health_checks"]
    assert "grpc_health_check" in check
    assert endpoint(config, "upstream") == {"address": "app.apps.svc.cluster.local",
                                            "port_value": 8080}


def test_gateway_without_headless_service_uses_the_service(chart):
    config = envoy_config(chart.render(GATEWAY_SETS["plain"]))
    assert endpoint(config, "gatehouse") == {
        "address": f"{RELEASE}.gatehouse.svc.cluster.local", "port_value": 9191}
    listener = config["static_resources"]["listeners"][0]["address"]["socket_address"]
    assert listener["address"] == "::" and listener["ipv4_compat"] is True
    routes = hcm(config)["route_config"]["virtual_hosts"][0]["routes"]
    assert all(r["route"]["cluster"] == "upstream" for r in routes)


def test_gateway_routes_come_from_values(render_set):
    routes = hcm(envoy_config(render_set("all-enabled")))["route_config"]["virtual_hosts"][0]["routes"]
    by_prefix = {r["match"].get("prefix"): r for r in routes if "prefix" in r["match"]}
    public = by_prefix["/public/"]
    assert public["typed_per_filter_config"]["envoy.filters.http.ext_authz"]["disabled"] is True
    assert "x-auth-request-user" in public["request_headers_to_remove"]
    admin = by_prefix["/admin/"]["typed_per_filter_config"]["envoy.filters.http.ext_authz"]
    assert admin["check_settings"]["context_extensions"] == {"scope": "admin:all", "satisfy": "all"}
    assert routes[-1]["match"] == {"prefix": "/"}  # the catch-all comes last


def test_gateway_pod_is_locked_down_and_rolls_on_config_change(chart, render_set):
    rendered = render_set("all-enabled")
    deploy = rendered.get("Deployment", f"{RELEASE}-envoy")
    pod = deploy["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    ctr = container(deploy, "envoy")
    assert ctr["securityContext"]["readOnlyRootFilesystem"] is True
    assert ctr["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert "--disable-hot-restart" in ctr["args"]
    svc = rendered.get("Service", f"{RELEASE}-envoy")
    assert svc["spec"]["type"] == "LoadBalancer"
    assert svc["spec"]["externalTrafficPolicy"] == "Local"
    assert svc["spec"]["ports"] == [{"name": "http", "port": 443, "targetPort": "http",
                                     "protocol": "TCP", "appProtocol": "http"}]
    before = deploy["spec"]["template"]["metadata"]["annotations"]["checksum/envoy-config"]
    changed = chart.render(merge(value_sets()["all-enabled"],
                                 {"envoyGateway": {"checkTimeout": "0.25s"}}))
    after = changed.get("Deployment", f"{RELEASE}-envoy")["spec"]["template"]["metadata"][
        "annotations"]["checksum/envoy-config"]
    assert before != after


# --- live: the rendered gateway and gatehouse configs on loopback ---------------------


@pytest.fixture(scope="module")
def live(chart, tmp_path_factory) -> Iterator[dict[str, Any]]:
    """gatehouse on the chart's rendered config (its listen addresses moved to
    loopback ports, Secret files written where the config expects them),
    Envoy on the chart's rendered gateway config (addresses rewritten the
    way the e2e tests rewrite envoy/envoy.yaml), an echo upstream."""
    from harness import tokens
    from harness.envoy import EnvoyInstance
    from harness.gatehouse import GatehouseInstance
    from harness.procs import free_port
    from harness.servers import EchoServer

    workdir = tmp_path_factory.mktemp("chart-live")
    user_key = tokens.generate("ES256")
    issuer = "https://sso.chart-test.invalid"
    values = {
        "config": {
            "jwt": {"issuers": [{
                "issuer": issuer, "audiences": ["api"], "algorithms": ["ES256"],
                "keys": {"jwks": {"keys": [user_key.public_jwk]}},
                "claims": {"username": "preferred_username", "groups": "groups"}}]},
            "scopes": {"group_mapping": {"read:data": ["readers"]}},
            "issuer": {"issuer": "https://gateway.chart-test.invalid"},
            "policy": {"default": "deny", "rules": [
                {"name": "data", "match": {"path": {"prefix": "/data/"}}, "scopes": ["read:data"]}]},
        },
        "secrets": {"signingKeys": [{"secretName": "gatehouse-signing", "key": "key.pem"}]},
        "envoyGateway": {"enabled": True, "upstream": {"host": "app", "port": 80},
                         "publicPrefixes": ["/public/"],
                         "routes": [{"prefix": "/admin/",
                                     "contextExtensions": {"scope": "admin:all"}}]},
    }
    rendered = chart.render(values)
    internal_key = tokens.generate("ES256")
    secrets_dir = workdir / "secrets"
    key_file = secrets_dir / "signing-keys" / "0" / "key.pem"
    key_file.parent.mkdir(parents=True)
    key_file.write_bytes(internal_key.private_pem())
    config_text = rendered.get("ConfigMap", f"{RELEASE}-config")["data"]["config.yaml"]
    config = yaml.safe_load(config_text.replace(SECRETS_DIR, str(secrets_dir)))
    envoy_source = workdir / "chart-envoy.yaml"
    envoy_source.write_text(rendered.get("ConfigMap", f"{RELEASE}-envoy")["data"]["envoy.yaml"])

    echo = EchoServer(log_path=workdir / "echo.log")
    gatehouse = envoy = None
    try:
        gatehouse = GatehouseInstance(workdir / "gatehouse", config, name="gatehouse-chart")
        gatehouse.wait_serving()
        envoy = EnvoyInstance(workdir / "envoy", gatehouse_port=gatehouse.port,
                              upstream_port=echo.port, name="envoy-chart",
                              gatehouse_http_port=gatehouse.http_port, source=envoy_source)
        yield {"envoy": envoy, "gatehouse": gatehouse, "issuer": issuer, "user_key": user_key,
               "internal_key": internal_key, "mint": tokens.mint, "claims": tokens.claims}
    finally:
        if envoy:
            envoy.stop()
        if gatehouse:
            gatehouse.stop()
        echo.close()


def reader_token(live: dict[str, Any]) -> str:
    claims = live["claims"](live["issuer"], audience="api", preferred_username="alice",
                            groups=["readers"])
    return live["mint"](live["user_key"], claims)


def test_live_gateway_denies_without_a_token_and_allows_with_one(live):
    from harness.httpc import Client

    client = Client(live["envoy"].port)
    denied = client.get("/data/x")
    assert denied.status == 401, denied.describe()
    assert denied.layer == "gatehouse"
    assert denied.header("www-authenticate").startswith("Bearer")

    allowed = client.get("/data/x", token=reader_token(live),
                         headers={"X-Auth-Request-User": "mallory"})
    assert allowed.status == 200, allowed.describe()
    assert allowed.upstream["headers"]["x-auth-request-user"] == "alice"

    # The per-route override from values demands admin:all.
    forbidden = client.get("/admin/x", token=reader_token(live))
    assert forbidden.status == 403, forbidden.describe()


def test_live_gateway_public_prefix_skips_the_check_and_strips_identity(live):
    from harness.httpc import Client

    response = Client(live["envoy"].port).get("/public/x", headers={"X-Auth-Request-User": "mallory"})
    assert response.status == 200, response.describe()
    assert "x-auth-request-user" not in response.upstream["headers"]


def test_live_gateway_routes_the_side_port_to_the_mounted_signing_key(live):
    from harness.httpc import Client

    response = Client(live["envoy"].port).get("/.well-known/jwks.json")
    assert response.status == 200, response.describe()
    public = live["internal_key"].public_jwk
    (key,) = response.json()["keys"]
    assert (key["x"], key["y"]) == (public["x"], public["y"])


def test_live_gateway_health_checks_gatehouse_over_grpc(live):
    """The cluster's active gRPC health check reaches grpc.health.v1."""
    import time

    deadline = time.monotonic() + 10
    while True:
        stats = live["envoy"].stats("cluster.gatehouse.health_check.")
        if stats.get("cluster.gatehouse.health_check.success", 0) >= 1:
            break
        assert time.monotonic() < deadline, stats
        time.sleep(0.1)
    assert stats.get("cluster.gatehouse.health_check.failure", 0) == 0, stats
