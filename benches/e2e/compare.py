#!/usr/bin/env python3
"""End-to-end comparison, in one run on loopback: the same upstream behind

  (a) a bare Envoy,
  (b) Envoy with its built-in jwt_authn filter (default configuration),
  (b+cache) the same with jwt_cache_config,
  (c) Envoy with ext_authz -> gatehouse, over gRPC on TCP (`ext_authz`) or
      on a Unix socket (`ext_authz_uds`), and over
      HTTP (`ext_authz_http`: Envoy's http_service asking gatehouse's side
      port at /ext_authz/<path>),
  (c-nocache) the same over gRPC/TCP with gatehouse's token cache off, so
      every check verifies the RS256 signature (`ext_authz_nocache`),
  (inproc) Envoy with gatehouse in process: the dynamic module of
      envoy/module (libgatehouse_envoy_module.so, release build) running
      the same gatehouse configuration as (c) in Envoy's worker (`inproc`;
      `inproc_nocache` with the token cache off, every request verifying
      the signature): its CPU is Envoy's, so `envoy µs` is the whole cost;
      `inproc_base` is another build of the module (`--baseline-module
      FILE`, e.g. main's) under the same configuration, to measure a
      change's cost side by side,
  (floor) ext_authz over gRPC/TCP to a gatehouse whose only rule lets
      everyone through with no identity header (`ext_authz_floor`): what
      Envoy's ext_authz round trip and gatehouse's gRPC transport cost with
      (almost) no authorization work, the floor under (c),

driven by wrk with the same pool of RS256 tokens (one per user), several
interleaved rounds, medians reported. For each configuration it prints
requests/s, latency percentiles (wrk) and CPU per request of Envoy, of
gatehouse and of both, with ratios against (b).

CPU placement (2 cores): the Envoy under test and gatehouse share CPU 1;
wrk and the upstream (a second Envoy answering with direct_response) run on
CPU 0. CPU time comes from /proc/<pid>/task/*/schedstat (nanoseconds).

`--rate N` sends N requests/s open-loop instead of as fast as wrk can:
`gatehouse-load --http-url` (release build) schedules each request at its
due time and measures its latency from then, so the percentiles are those
at that load, the same for every configuration (p99 at 5,000 req/s); it
runs on CPU 0 like wrk.

Run with `bash benches/e2e/run.sh` (installs wrk and the venv, builds the
release binary and module). Options: --rounds, --duration, --users,
--connections, --rate, --alg, --configs (a subset; without ext_authz ones
no gatehouse is started), --module-dir (where libgatehouse_envoy_module.so is),
--baseline-module (the .so `inproc_base` loads).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jwt  # PyJWT: tokens are minted independently of gatehouse
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import get_default_algorithms

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
from envoy_config import module_filter  # noqa: E402  (the module's filter, as the tests load it)
ISSUER = "https://bench.gatehouse.test"
AUDIENCE = "bench"
PATH = "/data/items/1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_ns(pid: int) -> int:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def envoy_bin() -> str:
    return subprocess.check_output(
        [sys.executable, str(REPO / "tests/e2e/envoy_bin.py")], text=True
    ).strip()


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def http_ok(port: int, headers: dict[str, str] | None = None) -> int:
    import http.client

    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", PATH, headers=headers or {})
    status = c.getresponse().status
    c.close()
    return status


class Proc:
    def __init__(self, name: str, cmd: list[str], cpu: int, log: Path, env: dict[str, str] | None = None):
        self.name = name
        self.log = open(log, "wb")
        self.p = subprocess.Popen(
            ["taskset", "-c", str(cpu), *cmd], stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True, env={**os.environ, **(env or {})},
        )

    @property
    def pid(self) -> int:
        return self.p.pid

    def stop(self) -> None:
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
        self.log.close()


def hcm(name: str, port: int, filters: list[dict], route_cluster: str) -> dict:
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network."
                         "http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": name,
                "normalize_path": True,
                "merge_slashes": True,
                "route_config": {"virtual_hosts": [{
                    "name": "all", "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": route_cluster}}],
                }]},
                "http_filters": filters + [{
                    "name": "envoy.filters.http.router",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
                }],
            },
        }]}],
    }


def cluster(name: str, port: int, http2: bool = False) -> dict:
    c = {
        "name": name, "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{
            "endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]},
    }
    if http2:
        c["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        }
    return c


def uds_cluster(name: str, path: Path) -> dict:
    """An HTTP/2 cluster on gatehouse's Unix socket (`server.grpc_socket`)."""
    c = cluster(name, 0, http2=True)
    c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"] = {"pipe": {"path": str(path)}}
    return c


def bootstrap(listeners: list[dict], clusters: list[dict], admin_port: int) -> dict:
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {"listeners": listeners, "clusters": clusters},
    }


def jwt_authn_filter(jwks_file: Path, cache: bool) -> dict:
    provider = {
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "local_jwks": {"filename": str(jwks_file)},
        "forward": True,
    }
    if cache:
        provider["jwt_cache_config"] = {"jwt_cache_size": 2000}
    return {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {"bench": provider},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}],
        },
    }


def ext_authz_filter(cluster_name: str = "gatehouse") -> dict:
    return {
        "name": "envoy.filters.http.ext_authz",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
            "transport_api_version": "V3",
            "grpc_service": {"envoy_grpc": {"cluster_name": cluster_name}, "timeout": "1s"},
            "failure_mode_allow": False,
            # Send gatehouse only the headers it reads: the credential
            # carriers, the client-IP chain and the identity headers it
            # must strip. Serializing every header is most of Envoy's
            # ext_authz cost.
            "allowed_headers": {"patterns": [
                {"exact": "authorization"}, {"exact": "cookie"}, {"exact": "x-forwarded-for"},
                {"exact": "x-forwarded-client-cert"}, {"prefix": "x-auth-request-"},
            ]},
        },
    }


def ext_authz_http_filter() -> dict:
    """ext_authz in HTTP mode, asking gatehouse's side port (the block the
    README documents; tests/e2e/test_http_check.py runs it)."""
    return {
        "name": "envoy.filters.http.ext_authz",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
            "http_service": {
                "server_uri": {"uri": "http://gatehouse_http", "cluster": "gatehouse_http", "timeout": "1s"},
                "path_prefix": "/ext_authz",
                "authorization_request": {"allowed_headers": {"patterns": [
                    {"exact": "cookie"}, {"exact": "x-forwarded-for"},
                    {"exact": "x-forwarded-client-cert"}, {"prefix": "x-auth-request-"},
                ]}},
                "authorization_response": {
                    "allowed_upstream_headers": {"patterns": [{"prefix": "x-auth-request-"}]},
                },
            },
            "failure_mode_allow": False,
        },
    }


MODULE_DIR = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "release"


def make_keys(alg: str, work: Path, users: int) -> tuple[Path, Path]:
    if alg == "RS256":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif alg == "ES256":
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        key = ed25519.Ed25519PrivateKey.generate()
    algo = get_default_algorithms()[alg]
    jwk = json.loads(algo.to_jwk(key.public_key()))
    jwk.update({"kid": "bench-1", "alg": alg, "use": "sig"})
    jwks_file = work / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [jwk]}))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    now = int(time.time())
    tokens = [
        jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": f"user-{u}", "email": f"user{u}@example.com",
                    "scope": "read:data", "iat": now, "exp": now + 6 * 3600},
                   pem, algorithm=alg, headers={"kid": "bench-1"})
        for u in range(users)
    ]
    tokens_file = work / "tokens.txt"
    tokens_file.write_text("\n".join(tokens) + "\n")
    return jwks_file, tokens_file


LUA = """
local tokens = {}
for line in io.lines(os.getenv("TOKENS_FILE")) do tokens[#tokens + 1] = line end
local i = math.random(#tokens)
request = function()
  i = i % #tokens + 1
  return wrk.format("GET", "@PATH@", {["Authorization"] = "Bearer " .. tokens[i]})
end
"""


def run_load(load_bin: str, port: int, duration: int, tokens: Path, rate: int) -> dict:
    """`rate` requests/s open-loop (gatehouse-load --http-url), latency from
    each request's due time."""
    out = subprocess.run(
        ["taskset", "-c", "0", load_bin, "--http-url", f"http://127.0.0.1:{port}{PATH}",
         "--tokens-file", str(tokens), "--rate", str(rate), "--duration", f"{duration}s",
         "--warmup", "1s"],
        capture_output=True, text=True, check=True,
    ).stdout
    m = re.search(r"checks: (\d+) in ([\d.]+)s = ([\d.]+)/s, allowed: (\d+), denied: (\d+), errors: (\d+)", out)
    lat = {pct: float(v) for pct, v in re.findall(r"p(50|90|99) ([\d.]+)", out)}
    return {"rps": float(m.group(3)), "requests": int(m.group(1)),
            "non2xx": int(m.group(5)) + int(m.group(6)), "lat": lat}


def run_wrk(port: int, duration: int, connections: int, lua: Path, tokens: Path) -> dict:
    out = subprocess.run(
        ["taskset", "-c", "0", "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency",
         "-s", str(lua), f"http://127.0.0.1:{port}{PATH}"],
        env={**os.environ, "TOKENS_FILE": str(tokens)},
        capture_output=True, text=True, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    lat = {}
    for pct, value, unit in re.findall(r"\s(50|90|99)%\s+([\d.]+)(us|ms|s)\b", out):
        scale = {"us": 1, "ms": 1000, "s": 1_000_000}[unit]
        lat[pct] = float(value) * scale
    return {"rps": rps, "requests": total, "non2xx": int(non2xx.group(1)) if non2xx else 0, "lat": lat}


BASELINE_MODULE = "gatehouse_envoy_module_baseline"


def module_search_path(work: Path, args: argparse.Namespace) -> str:
    """Where Envoy finds the module: --module-dir, or, with a baseline
    build, a directory holding both (its own copy under another name,
    which Envoy loads apart from the first)."""
    if not args.baseline_module:
        return args.module_dir
    both = work / "modules"
    both.mkdir(exist_ok=True)
    (both / "libgatehouse_envoy_module.so").symlink_to(Path(args.module_dir) / "libgatehouse_envoy_module.so")
    shutil.copyfile(args.baseline_module, both / f"lib{BASELINE_MODULE}.so")
    return str(both)


ALL_CONFIGS = ["bare", "jwt_authn", "jwt_authn+cache", "ext_authz", "ext_authz_uds", "ext_authz_http",
               "ext_authz_nocache", "ext_authz_floor", "inproc", "inproc_nocache", "inproc_base"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10, help="seconds per run")
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--alg", default="RS256", choices=["RS256", "ES256", "EdDSA"])
    ap.add_argument("--gatehouse", default=str(REPO / "target/release/gatehouse"))
    ap.add_argument("--rate", type=int, default=0,
                    help="requests/s, open-loop through gatehouse-load (default 0: wrk, as fast as it can)")
    ap.add_argument("--load", default=str(REPO / "target/release/gatehouse-load"))
    ap.add_argument("--configs", default=",".join(ALL_CONFIGS),
                    help="comma-separated configurations, in this order each round (default: all)")
    ap.add_argument("--module-dir", default=str(MODULE_DIR),
                    help="directory holding libgatehouse_envoy_module.so (envoy/module, release build)")
    ap.add_argument("--baseline-module", default="",
                    help="another build of libgatehouse_envoy_module.so, loaded by the inproc_base configuration")
    args = ap.parse_args()
    selected = [c.strip() for c in args.configs.split(",") if c.strip()]
    if ("inproc_base" in selected) != bool(args.baseline_module):
        ap.error("--configs inproc_base and --baseline-module go together")
    unknown = sorted(set(selected) - set(ALL_CONFIGS))
    if unknown or "jwt_authn" not in selected:
        ap.error(f"--configs: unknown {unknown}; jwt_authn is required (the ratios' base); known: {ALL_CONFIGS}")
    wants_gatehouse = any(c.startswith("ext_authz") for c in selected)

    work = Path(tempfile.mkdtemp(prefix="gatehouse-bench-"))
    jwks_file, tokens_file = make_keys(args.alg, work, args.users)
    lua = work / "tokens.lua"
    lua.write_text(LUA.replace("@PATH@", PATH))
    envoy = envoy_bin()

    procs: list[Proc] = []
    try:
        # Upstream: a second Envoy answering every request itself.
        up_port = free_port()
        upstream_cfg = bootstrap([{
            "name": "upstream",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": up_port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network."
                             "http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "up",
                    "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [{
                        "match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}]}]},
                    "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
                },
            }]}],
        }], [], free_port())
        (work / "upstream.yaml").write_text(yaml.safe_dump(upstream_cfg))
        procs.append(Proc("upstream", [envoy, "-c", str(work / "upstream.yaml"), "--concurrency", "1",
                                       "--disable-hot-restart", "--base-id", "11", "-l", "error"], 0, work / "upstream.log"))
        wait_port(up_port)

        # gatehouse, on CPU 1 with the Envoy under test: the one measured,
        # one with its token cache off, and the floor (see the docstring).
        issuers = [{"issuer": ISSUER, "audiences": [AUDIENCE], "algorithms": [args.alg],
                    "keys": {"jwks_file": str(jwks_file)}}]
        variants = {
            "gatehouse": {"jwt": {"issuers": issuers}, "policy": {"default": "authenticated"}},
            "gatehouse_nocache": {"jwt": {"issuers": issuers, "cache_size": 0},
                                  "policy": {"default": "authenticated"}},
            "gatehouse_floor": {"jwt": {"issuers": issuers}, "policy": {"rules": [{
                "name": "floor", "match": {"path": {"prefix": "/"}}, "auth": "anonymous", "headers": []}]}},
        }
        selected = [n for n in args.configs.split(",") if n]
        need_gatehouse = not selected or any(n.startswith("ext_authz") for n in selected)
        gatehouses: dict[str, Proc] = {}
        g_ports: dict[str, int] = {}
        g_http_port = 0
        for name, variant in variants.items():
            g_ports[name], http_port = free_port(), free_port()
            server = {"grpc_addr": f"127.0.0.1:{g_ports[name]}", "http_addr": f"127.0.0.1:{http_port}"}
            if name == "gatehouse":
                server["grpc_socket"] = str(work / "gatehouse.sock")
                g_http_port = http_port
            # Also what the in-process module reads (the same configuration).
            (work / f"{name}.yaml").write_text(yaml.safe_dump({"server": server, "log": {"level": "warn"}, **variant}))
            if not wants_gatehouse:
                continue
            gatehouses[name] = Proc(name, [args.gatehouse, "serve", "--config", str(work / f"{name}.yaml")], 1,
                                    work / f"{name}.log")
            procs.append(gatehouses[name])
            wait_port(g_ports[name])
            wait_port(http_port)

        # The Envoy under test: one listener per configuration.
        filters = {
            "bare": [],
            "jwt_authn": [jwt_authn_filter(jwks_file, False)],
            "jwt_authn+cache": [jwt_authn_filter(jwks_file, True)],
            "ext_authz": [ext_authz_filter()],
            "ext_authz_uds": [ext_authz_filter("gatehouse_uds")],
            "ext_authz_http": [ext_authz_http_filter()],
            "ext_authz_nocache": [ext_authz_filter("gatehouse_nocache")],
            "ext_authz_floor": [ext_authz_filter("gatehouse_floor")],
            "inproc": [module_filter(work / "gatehouse.yaml")],
            "inproc_nocache": [module_filter(work / "gatehouse_nocache.yaml")],
            "inproc_base": [module_filter(work / "gatehouse.yaml", module=BASELINE_MODULE)],
        }
        # The selected ones, in the order given.
        filters = {name: filters[name] for name in selected}
        # Which gatehouse process each configuration asks (for its CPU).
        asks = {"ext_authz_nocache": "gatehouse_nocache", "ext_authz_floor": "gatehouse_floor"}
        ports = {name: free_port() for name in filters}
        listeners = [hcm(name.replace("+", "_"), ports[name], f, "upstream") for name, f in filters.items()]
        clusters = [cluster("upstream", up_port)]
        if wants_gatehouse:
            clusters += [cluster("gatehouse_http", g_http_port), uds_cluster("gatehouse_uds", work / "gatehouse.sock"),
                         *(cluster(name, port, http2=True) for name, port in g_ports.items())]
        cfg = bootstrap(listeners, clusters, free_port())
        (work / "envoy.yaml").write_text(yaml.safe_dump(cfg))
        under_test = Proc("envoy", [envoy, "-c", str(work / "envoy.yaml"), "--concurrency", "1",
                                    "--disable-hot-restart", "--base-id", "12", "-l", "error"], 1, work / "envoy.log",
                          env={"ENVOY_DYNAMIC_MODULES_SEARCH_PATH": module_search_path(work, args)})
        procs.append(under_test)
        for port in ports.values():
            wait_port(port)

        # Sanity: every configuration answers 200 with a token, and the
        # authenticating ones refuse a request without one.
        token = tokens_file.read_text().split("\n")[0]
        for name, port in ports.items():
            status = http_ok(port, {"Authorization": f"Bearer {token}"})
            assert status == 200, f"{name}: {status} with a valid token"
            if name not in ("bare", "ext_authz_floor"):
                assert http_ok(port) == 401, f"{name}: a request without a token must be refused"

        results: dict[str, list[dict]] = {name: [] for name in ports}
        for rnd in range(args.rounds):
            for name, port in ports.items():
                gatehouse = gatehouses.get(asks.get(name, "gatehouse"))
                g_cpu = (lambda: cpu_ns(gatehouse.pid)) if gatehouse else (lambda: 0)  # noqa: E731
                e0, g0 = cpu_ns(under_test.pid), g_cpu()
                if args.rate:
                    r = run_load(args.load, port, args.duration, tokens_file, args.rate)
                else:
                    r = run_wrk(port, args.duration, args.connections, lua, tokens_file)
                e1, g1 = cpu_ns(under_test.pid), g_cpu()
                n = max(r["requests"], 1)
                r["envoy_us"] = (e1 - e0) / 1000 / n
                r["gatehouse_us"] = (g1 - g0) / 1000 / n if name.startswith("ext_authz") else 0.0
                results[name].append(r)
                print(f"round {rnd + 1} {name:19s} {r['rps']:9.0f} req/s  envoy {r['envoy_us']:6.1f} µs/req"
                      f"  gatehouse {r['gatehouse_us']:6.1f} µs/req  non-2xx {r['non2xx']}", flush=True)

        med = lambda xs: statistics.median(xs)  # noqa: E731
        spread = lambda xs: (max(xs) - min(xs)) / 2 if len(xs) > 1 else 0.0  # noqa: E731
        base = med([r["envoy_us"] for r in results["jwt_authn"]])
        pace = f", open-loop at {args.rate} req/s (gatehouse-load)" if args.rate else ""
        print(f"\n{args.alg}, {args.users} users, {args.connections} connections{pace}, {args.rounds} rounds × {args.duration}s, medians (± half range)")
        print(f"{'config':19s} {'req/s':>9s} {'p50 µs':>8s} {'p90 µs':>8s} {'p99 µs':>8s} "
              f"{'envoy µs':>9s} {'gatehouse µs':>13s} {'sum µs':>8s} {'vs jwt_authn':>12s}")
        for name, rs in results.items():
            total = [r["envoy_us"] + r["gatehouse_us"] for r in rs]
            print(f"{name:19s} {med([r['rps'] for r in rs]):9.0f} "
                  f"{med([r['lat'].get('50', 0) for r in rs]):8.0f} {med([r['lat'].get('90', 0) for r in rs]):8.0f} "
                  f"{med([r['lat'].get('99', 0) for r in rs]):8.0f} "
                  f"{med([r['envoy_us'] for r in rs]):9.1f} {med([r['gatehouse_us'] for r in rs]):13.1f} "
                  f"{med(total):5.1f}±{spread(total):.1f} {med(total) / base:12.2f}")
    finally:
        for p in reversed(procs):
            p.stop()
        print(f"\nlogs and configs: {work}")


if __name__ == "__main__":
    main()
