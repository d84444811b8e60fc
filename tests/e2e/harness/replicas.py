"""Two gatehouse replicas on one real Redis, each behind its own Envoy (the
`pair` fixture in conftest.py). Both sign and verify links as one issuer
(Envoy A's URL, one key) and share one store encryption key, as replicas
of one deployment do. API tokens are on (prefix `gh`, admin scope
`admin:all`); `/tool/{tool}/**` is a Toolforge tool rule and `deployer` a
superuser, for deploy tokens.

`configure` (optional) adapts both replicas' config: it is called with the
config and Envoy A's URL before each replica starts (and restarts), e.g.
to add a `login` section whose callback URL is Envoy A's."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from harness import configs
from harness.envoy import EnvoyInstance
from harness.gatehouse import GatehouseInstance
from harness.httpc import Client
from harness.procs import free_port
from harness.redis import RedisServer

STORE_KEY_FILE = "secrets/store.key"
KEY_PREFIX = "gatehouse:"
TOKEN_PREFIX = "gh"
ADMIN_SCOPE = "admin:all"
SUPERUSER = "deployer"
TOOL_RULE = {"name": "tools", "match": {"path": {"template": "/tool/{tool}/**"}},
             "tool_from_path": "tool", "headers": configs.ALL_HEADERS + ["tool"]}


@dataclass
class Replica:
    gatehouse: GatehouseInstance
    envoy: EnvoyInstance

    @property
    def client(self) -> Client:
        return Client(self.envoy.port)

    @property
    def api(self) -> str:
        """The side port's URL (the REST API, metrics), not through Envoy."""
        return self.gatehouse.http_url


@dataclass
class Pair:
    redis: RedisServer
    a: Replica
    b: Replica
    restart_a: Callable[[], Replica]


def start_pair(redis_server: RedisServer, gatehouse_factory, envoy_factory, echo, keys, idps,
               trusted_proxies: list[str],
               configure: Callable[[dict, str], None] | None = None) -> Pair:
    files = {
        configs.HMAC_SECRET_FILE: keys.hmac.secret,
        configs.ISSUER_KEY_FILE: keys.internal.private_pem(),
        configs.UPSTREAM_TOKEN_FILE: configs.UPSTREAM_TOKEN.encode(),
        STORE_KEY_FILE: (os.urandom(32).hex() + "\n").encode(),
    }
    ports = {name: (free_port(), free_port()) for name in ("a", "b")}
    envoys = {name: envoy_factory(grpc, echo.port, name=f"envoy-{name}", gatehouse_http_port=http)
              for name, (grpc, http) in ports.items()}
    issuer_url = envoys["a"].base_url

    def config() -> dict:
        cfg = configs.shared_config(*idps)
        cfg["network"]["trusted_proxies"] = trusted_proxies
        cfg["issuer"] = configs.internal_issuer(issuer_url)
        cfg["policy"]["rules"] = [TOOL_RULE] + cfg["policy"]["rules"]
        cfg["tools"] = {"superusers": [SUPERUSER], "act_as_header": "X-Toolforge-Act-As"}
        cfg["api_tokens"] = {"prefix": TOKEN_PREFIX, "admin_scope": ADMIN_SCOPE,
                             "cache_ttl": "500ms"}
        cfg["store"] = {
            # 1 s, not less: a busy CI machine once took over 300 ms to
            # answer a first write (a false 503). A killed Redis refuses
            # connections at once, so outage tests do not wait on this.
            "redis": {"url": redis_server.url, "command_timeout": "1s",
                      "connect_timeout": "1s", "health_interval": "200ms"},
            "encryption_key_file": STORE_KEY_FILE,
        }
        if configure is not None:
            configure(cfg, issuer_url)
        return cfg

    replicas: dict[str, Replica] = {}

    def start(name: str) -> Replica:
        grpc, http = ports[name]
        instance = gatehouse_factory(config(), files, name=f"gatehouse-{name}", port=grpc,
                                     http_port=http)
        instance.wait_serving()
        replicas[name] = Replica(instance, envoys[name])
        return replicas[name]

    start("a")
    start("b")

    def restart_a() -> Replica:
        replicas["a"].gatehouse.stop()
        return start("a")

    return Pair(redis_server, replicas["a"], replicas["b"], restart_a)
