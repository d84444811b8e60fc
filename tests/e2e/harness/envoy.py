"""Runs Envoy on the example config (ports rewritten) and waits until its
admin interface reports ready and its listener accepts connections.

Other examples with their own upstream clusters (envoy/servicehub.yaml:
`app_alice`, `app_bob`) pass `clusters={name: port}`: those clusters are
rewritten instead of `upstream` (`write_config_with_clusters`)."""

from __future__ import annotations

import socket
from pathlib import Path

import requests

from envoy_bin import envoy_binary
import yaml

import envoy_config
from envoy_config import EXAMPLE, INPROCESS_EXAMPLE, Ports, write_test_config
from harness.httpc import Client
from harness.procs import ManagedProcess, ProcessExited, free_port, wait_until

START_TIMEOUT = 20.0


def write_config_with_clusters(dest: Path, ports: Ports, clusters: dict[str, int],
                               source: Path, module_config: Path | None = None,
                               module_settings: dict | None = None) -> Path:
    """As `envoy_config.write_test_config`, for an example whose upstreams
    are the named `clusters` (each with one endpoint) rather than one
    `upstream` cluster: rewrites the admin, listener `main`, `gatehouse`,
    `gatehouse_http` and each of `clusters` to 127.0.0.1 and its port.
    `module_config`: gatehouse's module put in front of the example's
    ext_authz (`envoy_config.add_module`), reading that file."""
    config = yaml.safe_load(Path(source).read_text())
    if module_config is not None:
        envoy_config.add_module(config, module_config, module_settings)
    envoy_config._socket_address(config["admin"], "admin").update(
        address=ports.host, port_value=ports.admin)
    static = config["static_resources"]
    listener = envoy_config._one(static["listeners"], envoy_config.LISTENER_NAME, "listener")
    envoy_config._socket_address(listener, "listener").update(
        address=ports.host, port_value=ports.listener)
    targets = {envoy_config.GATEHOUSE_CLUSTER: ports.gatehouse,
               envoy_config.GATEHOUSE_HTTP_CLUSTER: ports.gatehouse_http, **clusters}
    for name, port in targets.items():
        cluster = envoy_config._one(static["clusters"], name, "cluster")
        endpoint = envoy_config._cluster_endpoint(cluster)
        envoy_config._socket_address(endpoint, f"cluster {name}").update(
            address=ports.host, port_value=port)
    dest = Path(dest)
    dest.write_text(f"# Generated from {source} for a test run: only addresses and ports differ.\n"
                    + yaml.safe_dump(config, sort_keys=False))
    return dest


def set_gatehouse_endpoints(config_path: Path, ports: list[int], host: str = "127.0.0.1") -> None:
    """Rewrites the `gatehouse` cluster of a written test config to one
    endpoint per port (replicas behind one ext_authz cluster); everything
    else, health checks and outlier detection included, stays as shipped."""
    path = Path(config_path)
    text = path.read_text()
    header = text.splitlines(keepends=True)[0] if text.startswith("#") else ""
    config = yaml.safe_load(text)
    cluster = envoy_config._one(config["static_resources"]["clusters"],
                                envoy_config.GATEHOUSE_CLUSTER, "cluster")
    cluster["load_assignment"]["endpoints"] = [{"lb_endpoints": [
        {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}
        for port in ports]}]
    path.write_text(header + yaml.safe_dump(config, sort_keys=False))


class EnvoyInstance:
    def __init__(self, workdir: Path, gatehouse_port: int, upstream_port: int, name: str = "envoy",
                 gatehouse_http_port: int | None = None, source: Path = EXAMPLE,
                 clusters: dict[str, int] | None = None, listener_port: int | None = None,
                 admin_port: int | None = None, gatehouse_ports: list[int] | None = None,
                 module_config: Path | None = None, module_settings: dict | None = None):
        """`gatehouse_http_port`: gatehouse's side port (default: a free,
        closed port, for tests that never reach it). `source`: the Envoy
        config to run (default: the shipped example; the chart tests pass
        the chart's rendered gateway config). `clusters`: for a `source`
        without an `upstream` cluster, its upstream clusters' ports by name
        (`upstream_port` is then unused). `listener_port`/`admin_port`:
        fixed ports (default: free ones), e.g. to restart an Envoy where
        the previous one listened. `gatehouse_ports`: several gatehouse
        replicas in the `gatehouse` cluster (`gatehouse_port` is then the
        first). `module_config`: run gatehouse in process too (the
        dynamic module, `harness.module`), reading this gatehouse
        configuration file; `source` then defaults to the in-process
        example. `module_settings`: the module's other settings changed
        (e.g. `{"needs_state": None}`)."""
        self.workdir = Path(workdir)
        env = None
        if module_config is not None:
            from harness.module import module_dir
            env = {"ENVOY_DYNAMIC_MODULES_SEARCH_PATH": str(module_dir())}
            if source == EXAMPLE:
                source = INPROCESS_EXAMPLE
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._admin = requests.Session()
        self._admin.trust_env = False  # never send loopback traffic to a proxy
        # A free port can be taken between free_port() and Envoy's bind:
        # with ports of our choosing, start again on new ones.
        for attempt in range(3):
            self.ports = Ports(
                listener=listener_port or free_port(), admin=admin_port or free_port(),
                gatehouse=gatehouse_port, upstream=upstream_port,
                gatehouse_http=gatehouse_http_port or free_port(),
            )
            if clusters is None:
                self.config_path = write_test_config(self.workdir / f"{name}.yaml", self.ports, source,
                                                     module_config, module_settings)
            else:
                self.config_path = write_config_with_clusters(self.workdir / f"{name}.yaml", self.ports,
                                                              clusters, source, module_config,
                                                              module_settings)
            if gatehouse_ports:
                set_gatehouse_endpoints(self.config_path, gatehouse_ports)
            self.port = self.ports.listener
            self.admin_url = f"http://127.0.0.1:{self.ports.admin}"
            self.base_url = f"http://127.0.0.1:{self.port}"
            self.process = ManagedProcess(
                name,
                [
                    envoy_binary(),
                    "-c", self.config_path,
                    "--concurrency", "1",
                    # Several Envoys may run at once: no shared-memory hot restart.
                    "--disable-hot-restart",
                    # Warnings and errors only; the access log (stdout, format in
                    # envoy.yaml) shows each request and who answered it.
                    "--log-level", "warning",
                    "--drain-time-s", "1",
                    # Access log lines (stdout) reach the log file promptly, so
                    # a failing test's report shows its requests.
                    "--file-flush-interval-msec", "50",
                    # Gatehouse's own log lines, when it runs in process
                    # (they are scanned for secrets like the service's).
                    *(["--component-log-level", "dynamic_modules:info"] if module_config else []),
                ],
                self.workdir / f"{name}.log",
                env=env,
            )
            try:
                wait_until(f"{name} ready", self._ready, START_TIMEOUT, interval=0.05,
                           on_timeout=self.process.log_tail)
                return
            except ProcessExited:
                self.process.stop()
                chosen = listener_port is None and admin_port is None
                if chosen and attempt < 2 and "Address already in use" in self.process.log_text():
                    continue
                self._admin.close()
                raise
            except BaseException:
                self.stop()
                raise

    def _ready(self) -> bool:
        self.process.check_alive()
        r = self._admin.get(self.admin_url + "/ready", timeout=1)
        if r.status_code != 200 or r.text.strip() != "LIVE":
            return False
        with socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return True

    def xff_appended_address(self, probe_path: str = "/public/xff-probe") -> str:
        """The address Envoy appends to X-Forwarded-For for our (loopback)
        connections. With `use_remote_address: true` and a loopback peer,
        Envoy appends its own non-loopback local address rather than
        127.0.0.1, so gatehouse must trust it as a proxy for the client-IP
        walk to reach the entries the client sent. Probed through the
        unchecked /public/ route, as the upstream sees it."""
        r = Client(self.port).get(probe_path)
        return r.upstream["headers"]["x-forwarded-for"].split(",")[-1].strip()

    def stats(self, prefix: str) -> dict[str, int]:
        """Counters and gauges whose names start with `prefix`."""
        r = self._admin.get(self.admin_url + "/stats", params={"filter": f"^{prefix}"}, timeout=2)
        out = {}
        for line in r.text.splitlines():
            name, _, value = line.partition(": ")
            if value.strip().lstrip("-").isdigit():
                out[name] = int(value)
        return out

    def stop(self) -> int | None:
        self._admin.close()
        return self.process.stop()
