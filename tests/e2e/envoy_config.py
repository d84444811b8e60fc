"""Turns the shipped example `envoy/envoy.yaml` into a config for one test
run by rewriting only addresses and ports: the listener, the admin
interface, and the `gatehouse` (gRPC), `gatehouse_http` (side port) and
`upstream` clusters. Everything else
(filters, routes, per-route settings) is the example itself, so the tests
exercise what we ship.

    python tests/e2e/envoy_config.py OUT.yaml --listener 10001 --admin 9902 \
        --gatehouse 9192 --gatehouse-http 8081 --upstream 8001
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "envoy" / "envoy.yaml"
# Gatehouse in process (the dynamic module) with ext_authz for what needs state.
INPROCESS_EXAMPLE = REPO / "envoy" / "envoy-inprocess.yaml"
MODULE_FILTER = "gatehouse"

LISTENER_NAME = "main"
GATEHOUSE_CLUSTER = "gatehouse"
GATEHOUSE_HTTP_CLUSTER = "gatehouse_http"
UPSTREAM_CLUSTER = "upstream"


@dataclass(frozen=True)
class Ports:
    listener: int
    admin: int
    gatehouse: int
    upstream: int
    gatehouse_http: int
    host: str = "127.0.0.1"


class ExampleChanged(RuntimeError):
    """The example no longer has the shape this rewrite relies on."""


def _socket_address(node: dict, where: str) -> dict:
    try:
        return node["address"]["socket_address"]
    except (KeyError, TypeError) as e:
        raise ExampleChanged(f"{where}: no address.socket_address") from e


def _one(items: list[dict], name: str, kind: str) -> dict:
    found = [i for i in items if i.get("name") == name]
    if len(found) != 1:
        raise ExampleChanged(f"expected exactly one {kind} named {name!r}, found {len(found)}")
    return found[0]


def _cluster_endpoint(cluster: dict) -> dict:
    endpoints = [
        lb["endpoint"]
        for group in cluster["load_assignment"]["endpoints"]
        for lb in group["lb_endpoints"]
    ]
    if len(endpoints) != 1:
        raise ExampleChanged(f"cluster {cluster['name']!r} should have one endpoint")
    return endpoints[0]


def rewrite(config: dict, ports: Ports) -> dict:
    """Returns `config` with its addresses and ports replaced (in place)."""
    admin = _socket_address(config["admin"], "admin")
    admin.update(address=ports.host, port_value=ports.admin)

    static = config["static_resources"]
    listener = _one(static["listeners"], LISTENER_NAME, "listener")
    _socket_address(listener, "listener").update(address=ports.host, port_value=ports.listener)

    for name, port in (
        (GATEHOUSE_CLUSTER, ports.gatehouse),
        (GATEHOUSE_HTTP_CLUSTER, ports.gatehouse_http),
        (UPSTREAM_CLUSTER, ports.upstream),
    ):
        cluster = _one(static["clusters"], name, "cluster")
        endpoint = _cluster_endpoint(cluster)
        if "pipe" in endpoint.get("address", {}):
            continue  # a Unix domain socket: no port to rewrite
        _socket_address(endpoint, f"cluster {name}").update(
            address=ports.host, port_value=port
        )
    return config


def module_filter(gatehouse_config: Path, *, module: str = "gatehouse_envoy_module",
                  **settings) -> dict:
    """The in-process module as an HTTP filter named `gatehouse`, reading
    `gatehouse_config` (its other `settings` as given); `module`: the
    shared object's name (`lib<module>.so` in Envoy's search path)."""
    return {
        "name": MODULE_FILTER,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
            "dynamic_module_config": {"name": module},
            "filter_name": MODULE_FILTER,
            "filter_config": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                              "value": json.dumps({"config_file": str(gatehouse_config), **settings})},
        },
    }


def add_module(config: dict, gatehouse_config: Path, settings: dict | None = None,
               replace: bool = False) -> dict:
    """An ext_authz example with gatehouse's module put in front of its
    ext_authz filter, as envoy/envoy-inprocess.yaml is to envoy/envoy.yaml:
    the module decides what it can and hands checks that need state to
    ext_authz (`needs_state: ext_authz`, matched by the ext_authz filter's
    `filter_enabled_metadata`); a route's ext_authz settings (`disabled`,
    `context_extensions`) are given to the module too. `replace`: the
    module takes the ext_authz filter's place instead (no hand-on; checks
    that need state get 503). `settings`: the module's other settings."""
    settings = dict(settings or {})
    if not replace:
        settings.setdefault("needs_state", "ext_authz")
    for listener in config["static_resources"]["listeners"]:
        hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
        filters = hcm["http_filters"]
        if any(f["name"] == MODULE_FILTER for f in filters):
            continue  # shared with a listener done already (a YAML alias)
        at = next(i for i, f in enumerate(filters) if f["name"] == "envoy.filters.http.ext_authz")
        if replace:
            del filters[at]
        else:
            filters[at]["typed_config"]["filter_enabled_metadata"] = {
                "filter": MODULE_FILTER, "path": [{"key": "check"}],
                "value": {"string_match": {"exact": "ext_authz"}}}
        filters.insert(at, module_filter(gatehouse_config, **settings))
        for host in hcm["route_config"]["virtual_hosts"]:
            for route in host.get("routes", []):
                per_filter = route.get("typed_per_filter_config", {})
                ext = (per_filter.pop if replace else per_filter.get)("envoy.filters.http.ext_authz", None)
                if ext is None:
                    continue
                if ext.get("disabled"):
                    per_filter[MODULE_FILTER] = {
                        "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "disabled": True}
                extensions = ext.get("check_settings", {}).get("context_extensions")
                if extensions:
                    per_filter[MODULE_FILTER] = {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilterPerRoute",
                        "dynamic_module_config": {"name": "gatehouse_envoy_module"},
                        "filter_name": MODULE_FILTER,
                        "filter_config": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                          "value": json.dumps({"context_extensions": extensions})}}
    return config


def set_module_config(config: dict, gatehouse_config: Path, settings: dict | None = None) -> dict:
    """Points the in-process module (the http filter named `gatehouse`) at
    `gatehouse_config`, keeping its other settings but those in `settings`
    (a value None removes one)."""
    listener = _one(config["static_resources"]["listeners"], LISTENER_NAME, "listener")
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    module = _one(hcm["http_filters"], MODULE_FILTER, "http filter")
    value = module["typed_config"]["filter_config"]
    current = json.loads(value["value"])
    current["config_file"] = str(gatehouse_config)
    for key, setting in (settings or {}).items():
        if setting is None:
            current.pop(key, None)
        else:
            current[key] = setting
    value["value"] = json.dumps(current)
    return config


def write_test_config(dest: Path, ports: Ports, source: Path = EXAMPLE,
                      module_config: Path | None = None, module_settings: dict | None = None) -> Path:
    """Writes `source` with `ports`; `module_config`: the gatehouse
    configuration file the in-process module reads (in-process examples)."""
    config = yaml.safe_load(source.read_text())
    rewrite(config, ports)
    if module_config is not None:
        set_module_config(config, module_config, module_settings)
    dest = Path(dest)
    dest.write_text(
        f"# Generated from {source} for a test run: only addresses and ports differ.\n"
        + yaml.safe_dump(config, sort_keys=False)
    )
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    for name in ("listener", "admin", "gatehouse", "gatehouse-http", "upstream"):
        parser.add_argument(f"--{name}", type=int, required=True)
    args = parser.parse_args()
    write_test_config(
        args.out,
        Ports(args.listener, args.admin, args.gatehouse, args.upstream, args.gatehouse_http),
    )
    print(args.out)


if __name__ == "__main__":
    main()
