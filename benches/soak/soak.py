"""Soak: a mixed load through real Envoys into one gatehouse for DURATION,
with config reloads and JWKS key rotations, sampling gatehouse's RSS, open
fds, threads and the latency and errors of each window into a CSV, then
judging and plotting it (benches/soak/analysis.py).

    GATEHOUSE_BIN=target/release/gatehouse .venv/bin/python benches/soak/soak.py \
        --duration 1h --out target/soak/run1

Usually run through `benches/soak.sh DURATION` (release build). The pieces
are the e2e harness's (tests/e2e/harness: processes, Envoy on the shipped
envoy/envoy.yaml and envoy/envoy-mtls.yaml, the JWKS server, the PKI, the
token minting), imported, not copied.

The load (weights in MIX): valid RS256 JWTs; invalid ones (tampered
claims, signed by a key that is not published under the published kid,
garbage, expired); signed links of gatehouse's own issuer (minted through
Envoy by a `links:mint` holder, reusable ones and one-time ones used twice);
client certificates over mTLS (allowed and refused); and control requests
on a route that skips gatehouse, whose p99 shows how busy the machine is.
A valid request must get 200 from the upstream; an invalid one 401 or 403;
anything else, or a transport failure, is an error.

Every RELOAD period the config file is rewritten (a rule added, one
removed), and the run waits for gatehouse_config_reloads_total{success} to
move and the new rule to answer. Every ROTATION period a new RSA key is
published in the JWKS, the run waits for gatehouse to fetch it, switches
every token it mints to the new key and drops the key before the previous
one. Both periods are min(nominal, DURATION/6), so a 60 s run has six of
each.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import multiprocessing
import os
import random
import re
import secrets
import ssl
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
sys.path.insert(0, str(HERE))

import yaml  # noqa: E402

import analysis  # noqa: E402
from harness import configs, tokens  # noqa: E402
from harness.envoy import EnvoyInstance  # noqa: E402
from harness.gatehouse import GatehouseInstance  # noqa: E402
from harness.metrics import scrape  # noqa: E402
from harness.mtls import MtlsEnvoy, Pki  # noqa: E402
from harness.procs import free_port, stop_all, wait_until  # noqa: E402
from harness.servers import EchoServer, IdentityProvider  # noqa: E402

# Request kinds: (weight, valid?). Valid kinds must get 200; invalid 401/403.
MIX = {
    "jwt_valid": (40, True),
    "jwt_bad_signature": (6, False),
    "jwt_wrong_key": (4, False),
    "jwt_garbage": (6, False),
    "jwt_expired": (6, False),
    "link": (14, True),
    "link_mint": (2, True),
    "link_once": (2, True),  # mint + first use (valid) + second use (invalid): 3 requests
    "mtls_whoami": (10, True),
    "mtls_scoped": (6, True),
    "mtls_forbidden": (4, False),
    # The same Envoy and upstream on a route that does not call gatehouse
    # (envoy.yaml's /public/): its p99 is the machine's, which the p99
    # criterion allows for (analysis.py). Not counted in the latency columns.
    "control": (8, True),
}
CONTROL_PREFIX = "/public/soak/"
INVALID_STATUSES = (401, 403)
USERS = 32
LINK_PREFIX = "/links/soak/"
NOMINAL_RELOAD = 60.0
NOMINAL_ROTATION = 300.0


def parse_duration(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 60s, 10m, 1h)")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[m.group(2)]


# --- the upstream, in its own process (the GIL is the load's) ---------------


def _echo_main(conn) -> None:  # noqa: ANN001
    # Its handler answers in two writes (head, body): without TCP_NODELAY,
    # Nagle holds the body for Envoy's delayed ACK, 40 ms per request.
    from harness import servers
    servers._EchoHandler.disable_nagle_algorithm = True
    server = EchoServer()
    conn.send(server.port)
    while True:  # its request log is for tests; keep it from growing here
        time.sleep(1)
        server.requests.clear()


def start_echo() -> tuple[multiprocessing.Process, int]:
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_echo_main, args=(child,), daemon=True, name="soak-echo")
    proc.start()
    if not parent.poll(20):
        raise RuntimeError("the echo upstream did not start")
    return proc, parent.recv()


# --- gatehouse's configuration ----------------------------------------------------


def gatehouse_config(idp: IdentityProvider, envoy_url: str, refresh_s: float, generation: int) -> dict:
    refresh = {"interval": f"{refresh_s:g}s", "min_interval": "1s", "max_interval": f"{refresh_s:g}s",
               "retry_interval": "1s", "unknown_kid_interval": "2s", "timeout": "2s"}
    return {
        "server": {"drain_timeout": "2s", "realm": configs.REALM},
        "network": {"trusted_proxies": ["127.0.0.0/8"]},
        "reload": {"interval": "500ms"},
        "jwt": {
            "leeway": "5s",
            "sources": ["bearer", {"cookie": configs.COOKIE}],
            "issuers": [configs.issuer("soak", idp.issuer, ["RS256"], {"jwks_uri": idp.jwks_uri},
                                       refresh)],
        },
        "scopes": {"group_mapping": configs.GROUP_MAPPING},
        "certificates": {
            "leeway": "5s",
            "identity": {"user": "CN", "groups": ["O"]},
            "scopes": [{"subject": "O=soak-acme", "scopes": ["acme:read"]}],
        },
        "issuer": configs.internal_issuer(envoy_url),
        "policy": {"default": "deny", "rules": [
            {"name": "api", "match": {"path": {"prefix": "/api/"}}, "credentials": ["jwt"]},
            {"name": "links", "match": {"path": {"prefix": "/links/"}}},
            {"name": "whoami", "match": {"path": {"prefix": "/whoami/"}},
             "credentials": ["certificate"], "headers": ["user", "groups", "scopes"]},
            {"name": "scoped", "match": {"path": {"prefix": "/scoped/"}}, "scopes": ["acme:read"],
             "credentials": ["certificate"]},
            # Changes at every reload: the probe that the new config is live.
            {"name": f"generation-{generation}",
             "match": {"path": {"prefix": f"/generation-{generation}/"}}, "auth": "anonymous"},
        ]},
        "log": {"level": "info"},
    }


# --- credentials -----------------------------------------------------------------------


@dataclass
class Pools:
    """Everything the workers send, for one signing key; swapped whole."""

    kid: str
    valid: list[str]
    bad_signature: list[str]
    wrong_key: list[str]
    expired: list[str]
    minter: str
    links: list[str]


GARBAGE = [
    "garbage",
    "a.b.c",
    "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0",
    "eyJhbGciOiJSUzI1NiJ9." + "A" * 200 + "." + "B" * 342,
    secrets.token_urlsafe(48),
    "..",
]


def user(i: int) -> dict:
    return {"sub": f"soak-{i}", "preferred_username": f"soak{i}", "email": f"soak{i}@example.org",
            "groups": ["readers"]}


def mint_pools(key: tokens.SigningKey, stranger: tokens.SigningKey, issuer: str, lifetime: int,
               link_minutes: int, mtls: "Requester") -> Pools:
    valid = [tokens.mint(key, tokens.claims(issuer, lifetime=lifetime, **user(i))) for i in range(USERS)]
    bad = [tokens.tamper(t, sub="mallory", groups=["admins"]) for t in valid[:8]]
    wrong = [tokens.mint(stranger, tokens.claims(issuer, lifetime=lifetime, **user(i)),
                         headers={"kid": key.kid}) for i in range(4)]
    now = int(time.time())
    expired = [tokens.mint(key, tokens.claims(issuer, iat=now - 900, nbf=now - 900, exp=now - 120,
                                              **user(i))) for i in range(4)]
    minter = tokens.mint(key, tokens.claims(issuer, lifetime=lifetime, sub="soak-minter",
                                            preferred_username="minter", groups=["minters"]))
    links = []
    for _ in range(8):
        status, body, _ = mtls.mint_link(minter, {"URLs": [LINK_PREFIX + "*"], "duration": f"{link_minutes}m"})
        if status != 200:
            raise RuntimeError(f"minting a link: {status} {body[:200]!r}")
        links.append(json.loads(body)["Token"])
    return Pools(key.kid, valid, bad, wrong, expired, minter, links)


# --- HTTP with keep-alive ----------------------------------------------------------------


class Requester:
    """One worker's connections: to the main Envoy and, per client
    certificate, to the mTLS Envoy. Reuses them; reconnects when Envoy
    closed one (retrying once only if the request never got an answer on a
    reused connection)."""

    RECYCLE = 500  # requests per connection before a fresh one (handshakes too)

    def __init__(self, port: int, mtls_port: int, tls: dict[str, ssl.SSLContext], timeout: float = 5.0):
        self.port, self.mtls_port, self.tls, self.timeout = port, mtls_port, tls, timeout
        self.conns: dict[str, tuple[http.client.HTTPConnection, int]] = {}

    def _conn(self, target: str) -> tuple[http.client.HTTPConnection, bool]:
        held = self.conns.get(target)
        if held and held[1] < self.RECYCLE:
            self.conns[target] = (held[0], held[1] + 1)
            return held[0], True
        if held:
            held[0].close()
        if target == "main":
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        else:
            conn = http.client.HTTPSConnection("127.0.0.1", self.mtls_port, timeout=self.timeout,
                                               context=self.tls[target])
        self.conns[target] = (conn, 1)
        return conn, False

    def _drop(self, target: str) -> None:
        held = self.conns.pop(target, None)
        if held:
            held[0].close()

    def request(self, target: str, method: str, path: str, token: str | None = None,
                body: bytes | None = None) -> tuple[int, bytes, float]:
        headers = {"Host": "soak.example"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if body is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (0, 1):
            conn, reused = self._conn(target)
            t0 = time.perf_counter()
            try:
                conn.request(method, path, body=body, headers=headers)
                r = conn.getresponse()
                data = r.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self._drop(target)
                if reused and attempt == 0:
                    continue
                raise
            except Exception:
                self._drop(target)
                raise
            elapsed = time.perf_counter() - t0
            if r.will_close:
                self._drop(target)
            return r.status, data, elapsed
        raise AssertionError("unreachable")

    def mint_link(self, minter: str, body: dict) -> tuple[int, bytes, float]:
        return self.request("main", "POST", "/auth/jwt/request", minter, json.dumps(body).encode())

    def close(self) -> None:
        for target in list(self.conns):
            self._drop(target)


# --- statistics ----------------------------------------------------------------------------


class Window:
    """Latencies and errors since the last sample."""

    def __init__(self):
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.control: list[float] = []
        self.errors: dict[str, int] = {}
        self.total = 0

    def record(self, kind: str, valid: bool, status: int | None, latency: float | None) -> None:
        error = None
        if status is None:
            error = f"transport:{kind}"
        elif valid and status != 200:
            error = f"valid_not_200:{kind}:{status}"
        elif not valid and status == 200:
            error = f"invalid_200:{kind}"
        elif not valid and status not in INVALID_STATUSES:
            error = f"invalid_unexpected:{kind}:{status}"
        with self.lock:
            self.total += 1
            if latency is not None:
                (self.control if kind == "control" else self.latencies).append(latency)
            if error:
                self.errors[error] = self.errors.get(error, 0) + 1

    def error(self, name: str) -> None:
        with self.lock:
            self.errors[name] = self.errors.get(name, 0) + 1

    def take(self) -> tuple[list[float], list[float], dict[str, int]]:
        """The window's latencies of checked requests, of control requests,
        and its errors; starts the next window."""
        with self.lock:
            lat, control, err = self.latencies, self.control, self.errors
            self.latencies, self.control, self.errors = [], [], {}
            return lat, control, err


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


def proc_sample(pid: int) -> tuple[int, int, int, float]:
    """(RSS KiB, open fds, threads, CPU seconds) of `pid`."""
    rss = threads = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return rss, fds, threads, cpu


# --- the run ----------------------------------------------------------------------------------


class Soak:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.duration = args.duration
        self.reload_period = min(NOMINAL_RELOAD, self.duration / 6)
        self.rotation_period = min(NOMINAL_ROTATION, self.duration / 6)
        self.sample_period = args.sample or (2.0 if self.duration < 300 else 10.0)
        self.refresh_s = min(30.0, max(1.0, round(self.rotation_period / 5, 1)))
        self.token_lifetime = int(2 * self.rotation_period + 600)
        self.link_minutes = int(2 * self.rotation_period / 60) + 10
        self.out = args.out
        self.out.mkdir(parents=True, exist_ok=True)
        self.window = Window()
        self.stop = threading.Event()
        self.events: list[str] = []
        self.events_lock = threading.Lock()
        self.reloads = 0
        self.rotations = 0
        self.generation = 0

    def log(self, msg: str) -> None:
        print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", flush=True)

    # setup -----------------------------------------------------------------------
    def start(self) -> None:
        work = self.out / "work"
        work.mkdir(parents=True, exist_ok=True)
        self.echo_proc, echo_port = start_echo()
        self.idp = IdentityProvider(log_path=work / "idp.log", max_age=None)
        self.key = tokens.generate("RS256")
        self.previous: tokens.SigningKey | None = None
        self.stranger = tokens.generate("RS256")
        self.idp.add_key(self.key)
        internal = tokens.generate("ES256")
        grpc_port, http_port = free_port(), free_port()
        self.envoy = EnvoyInstance(work / "envoy", gatehouse_port=grpc_port, upstream_port=echo_port,
                                   gatehouse_http_port=http_port)
        self.config = gatehouse_config(self.idp, self.envoy.base_url, self.refresh_s, self.generation)
        self.gatehouse = GatehouseInstance(
            work / "gatehouse", self.config,
            files={configs.ISSUER_KEY_FILE: internal.private_pem()},
            port=grpc_port, http_port=http_port)
        self.gatehouse.wait_serving()
        self.pid = self.gatehouse.process.pid
        self.pki = Pki(work / "pki")
        openapi = work / "openapi.json"
        openapi.write_text("{}")
        self.mtls = MtlsEnvoy(work / "envoy-mtls", self.pki, openapi, grpc_port, echo_port)
        self.tls = {
            "acme": self.pki.context(self.pki.client(("O", "soak-acme"), ("CN", "soak-cert"))),
            "other": self.pki.context(self.pki.client(("O", "soak-other"), ("CN", "soak-other"))),
        }
        self.control = Requester(self.envoy.port, self.mtls.mtls_port, self.tls)
        self.pools = mint_pools(self.key, self.stranger, self.idp.issuer, self.token_lifetime,
                                self.link_minutes, self.control)
        self.log(f"gatehouse pid {self.pid} ({self.gatehouse.process.argv[0]}), Envoy :{self.envoy.port}, "
                 f"mTLS Envoy :{self.mtls.mtls_port}, work dir {work}")

    def close(self) -> None:
        if getattr(self, "control", None):
            self.control.close()
        stop_all()
        if getattr(self, "idp", None):
            self.idp.close()
        if getattr(self, "echo_proc", None):
            self.echo_proc.terminate()

    # load --------------------------------------------------------------------------
    def worker(self, index: int, rate: float) -> None:
        rng = random.Random(index)
        kinds = list(MIX)
        weights = [MIX[k][0] for k in kinds]
        req = Requester(self.envoy.port, self.mtls.mtls_port, self.tls)
        interval = 1.0 / rate
        next_at = time.monotonic() + rng.random() * interval
        try:
            while not self.stop.is_set():
                now = time.monotonic()
                if next_at > now:
                    time.sleep(next_at - now)
                elif now - next_at > 1.0:
                    next_at = now  # fell behind: do not burst to catch up
                next_at += interval
                kind = rng.choices(kinds, weights)[0]
                self.one(req, rng, kind)
        finally:
            req.close()

    def send(self, req: Requester, kind: str, valid: bool, target: str, method: str, path: str,
             token: str | None = None, body: bytes | None = None) -> tuple[int | None, bytes]:
        try:
            status, data, latency = req.request(target, method, path, token, body)
        except Exception:  # noqa: BLE001 - a failure is an error of its class
            self.window.record(kind, valid, None, None)
            return None, b""
        self.window.record(kind, valid, status, latency)
        return status, data

    def one(self, req: Requester, rng: random.Random, kind: str) -> None:
        pools = self.pools
        valid = MIX[kind][1]
        n = rng.randrange(1_000_000)
        if kind == "jwt_valid":
            self.send(req, kind, valid, "main", "GET", f"/api/soak/{n}", rng.choice(pools.valid))
        elif kind == "jwt_bad_signature":
            self.send(req, kind, valid, "main", "GET", f"/api/soak/{n}", rng.choice(pools.bad_signature))
        elif kind == "jwt_wrong_key":
            self.send(req, kind, valid, "main", "GET", f"/api/soak/{n}", rng.choice(pools.wrong_key))
        elif kind == "jwt_garbage":
            self.send(req, kind, valid, "main", "GET", f"/api/soak/{n}", rng.choice(GARBAGE))
        elif kind == "jwt_expired":
            self.send(req, kind, valid, "main", "GET", f"/api/soak/{n}", rng.choice(pools.expired))
        elif kind == "link":
            self.send(req, kind, valid, "main", "GET", f"{LINK_PREFIX}{n}", rng.choice(pools.links))
        elif kind == "link_mint":
            body = json.dumps({"URLs": [f"{LINK_PREFIX}{n}"], "duration": "5m"}).encode()
            self.send(req, kind, valid, "main", "POST", "/auth/jwt/request", pools.minter, body)
        elif kind == "link_once":
            body = json.dumps({"URLs": [f"{LINK_PREFIX}once/{n}"], "duration": "2m", "once": True}).encode()
            status, data = self.send(req, kind, valid, "main", "POST", "/auth/jwt/request", pools.minter, body)
            if status != 200:
                return
            link = json.loads(data)["Token"]
            self.send(req, "link_once_first_use", True, "main", "GET", f"{LINK_PREFIX}once/{n}", link)
            self.send(req, "link_once_reuse", False, "main", "GET", f"{LINK_PREFIX}once/{n}", link)
        elif kind == "mtls_whoami":
            self.send(req, kind, valid, "acme", "GET", f"/whoami/{n}")
        elif kind == "mtls_scoped":
            self.send(req, kind, valid, "acme", "GET", f"/scoped/{n}")
        elif kind == "mtls_forbidden":
            self.send(req, kind, valid, "other", "GET", f"/scoped/{n}")
        elif kind == "control":
            self.send(req, kind, valid, "main", "GET", f"{CONTROL_PREFIX}{n}")
        else:
            raise ValueError(kind)

    # control: reloads and rotations ------------------------------------------------------
    def event(self, name: str) -> None:
        with self.events_lock:
            self.events.append(name)

    def reload(self) -> None:
        before = scrape(self.gatehouse.http_url).count("gatehouse_config_reloads_total", result="success")
        self.generation += 1
        rules = self.config["policy"]["rules"]
        rules[-1] = {"name": f"generation-{self.generation}",
                     "match": {"path": {"prefix": f"/generation-{self.generation}/"}}, "auth": "anonymous"}
        path = self.gatehouse.config_path
        tmp = path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(self.config, sort_keys=False))
        os.replace(tmp, path)
        try:
            wait_until("the reload to be counted", lambda: scrape(self.gatehouse.http_url).count(
                "gatehouse_config_reloads_total", result="success") > before, timeout=15, interval=0.1)
            probe = f"/generation-{self.generation}/probe"
            wait_until("the new rule to answer",
                       lambda: self.control.request("main", "GET", probe)[0] == 200, timeout=5, interval=0.05)
        except TimeoutError as e:
            self.log(f"reload {self.generation} FAILED: {str(e).splitlines()[0]}")
            self.window.error("reload_not_applied")
            return
        self.reloads += 1
        self.event("reload")

    def rotate(self) -> None:
        new = tokens.generate("RS256")
        self.idp.add_key(new)
        before = self.idp.fetches()
        try:
            wait_until("gatehouse to fetch the new key set", lambda: self.idp.fetches() > before,
                       timeout=self.refresh_s * 2 + 10, interval=0.05)
        except TimeoutError:
            self.log("rotation FAILED: gatehouse did not fetch the key set")
            self.window.error("rotation_not_fetched")
            return
        time.sleep(0.3)  # the fetch answered; let gatehouse install it
        pools = mint_pools(new, self.stranger, self.idp.issuer, self.token_lifetime, self.link_minutes,
                           self.control)
        # Published: the new key and the one before (tokens in flight).
        for kid in self.idp.kids():
            if kid not in (new.kid, self.key.kid):
                self.idp.remove_key(kid)
        self.previous, self.key, self.pools = self.key, new, pools
        self.rotations += 1
        self.event("rotation")

    def controller(self, t0: float) -> None:
        # Reloads fall between rotations when both periods are the same.
        next_reload = t0 + self.reload_period / 2
        next_rotation = t0 + self.rotation_period
        end = t0 + self.duration
        while not self.stop.is_set():
            due = min(next_reload, next_rotation)
            if due >= end - 1:
                return
            if self.stop.wait(max(0.0, due - time.monotonic())):
                return
            try:
                if next_rotation <= next_reload:
                    next_rotation += self.rotation_period
                    self.rotate()
                else:
                    next_reload += self.reload_period
                    self.reload()
            except Exception as e:  # noqa: BLE001 - reported as an error, the run goes on
                self.log(f"control step failed: {e!r}")
                self.window.error("control_failed")

    # main loop ---------------------------------------------------------------------------------
    def run(self) -> analysis.Verdict:
        csv_path = self.out / "soak.csv"
        self.log(f"{self.duration:.0f} s at {self.args.rate:g} req/s over {self.args.workers} workers; "
                 f"reload every {self.reload_period:g} s, key rotation every {self.rotation_period:g} s, "
                 f"sample every {self.sample_period:g} s -> {csv_path}")
        t0 = time.monotonic()
        threads = [threading.Thread(target=self.worker, args=(i, self.args.rate / self.args.workers),
                                    daemon=True, name=f"soak-worker-{i}") for i in range(self.args.workers)]
        threads.append(threading.Thread(target=self.controller, args=(t0,), daemon=True, name="soak-control"))
        for t in threads:
            t.start()
        rows = []
        with open(csv_path, "w", newline="") as f:
            out = csv.DictWriter(f, fieldnames=analysis.FIELDS)
            out.writeheader()
            last = t0
            next_sample = t0 + self.sample_period
            while True:
                end = t0 + self.duration
                time.sleep(max(0.0, min(next_sample, end) - time.monotonic()))
                now = time.monotonic()
                lat, control, errors = self.window.take()
                with self.events_lock:
                    events, self.events = self.events, []
                if not self.gatehouse.alive():
                    errors["gatehouse_exited"] = 1
                    row_proc = (0, 0, 0, 0.0)
                else:
                    row_proc = proc_sample(self.pid)
                lat.sort()
                control.sort()
                rss, fds, nthreads, cpu = row_proc
                row = {
                    "t": round(now - t0, 2), "rss_kib": rss, "fds": fds, "threads": nthreads,
                    "cpu_s": round(cpu, 2), "requests": len(lat),
                    "rps": round(len(lat) / (now - last), 1),
                    "p50_ms": round(percentile(lat, 0.50) * 1000, 3),
                    "p99_ms": round(percentile(lat, 0.99) * 1000, 3),
                    "max_ms": round(lat[-1] * 1000, 3) if lat else float("nan"),
                    "errors": sum(errors.values()),
                    "error_classes": ";".join(f"{k}={v}" for k, v in sorted(errors.items())),
                    "reloads": self.reloads, "rotations": self.rotations, "events": ";".join(events),
                    "control_p99_ms": round(percentile(control, 0.99) * 1000, 3),
                }
                out.writerow(row)
                f.flush()
                rows.append(row)
                if len(rows) % max(1, int(60 / self.sample_period)) == 0 or row["errors"]:
                    self.log(f"t={row['t']:.0f}s RSS {rss / 1024:.1f} MiB, fds {fds}, threads {nthreads}, "
                             f"{row['rps']:.0f} req/s, p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms, "
                             f"errors {row['errors']} {row['error_classes']}")
                last = now
                next_sample += self.sample_period
                if now >= end - 0.01 or "gatehouse_exited" in errors:
                    break
        self.stop.set()
        for t in threads:
            t.join(timeout=10)
        rows = analysis.load(csv_path)
        expected = max(1, int(self.duration / self.reload_period) - 2)
        verdict = analysis.analyze(rows, expected_reloads=expected,
                                   expected_rotations=max(1, int(self.duration / self.rotation_period) - 2))
        summary = {"ok": verdict.ok, "checks": [c.__dict__ for c in verdict.checks],
                   "figures": verdict.figures, "duration_s": self.duration, "rate": self.args.rate,
                   "binary": str(self.gatehouse.process.argv[0]), "csv": str(csv_path)}
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2))
        try:
            analysis.plot(rows, self.out / "soak.png",
                          title=f"gatehouse soak, {self.duration:g} s at {self.args.rate:g} req/s")
        except Exception as e:  # noqa: BLE001 - the verdict stands without the picture
            self.log(f"plot failed: {e!r}")
        return verdict


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=parse_duration, required=True, help="e.g. 60s, 10m, 1h")
    ap.add_argument("--out", type=Path, required=True, help="directory for soak.csv, soak.png, summary.json")
    ap.add_argument("--rate", type=float, default=400.0, help="target requests per second (default 400)")
    ap.add_argument("--workers", type=int, default=6, help="concurrent client threads (default 6)")
    ap.add_argument("--sample", type=parse_duration, help="sample period (default 2 s under 5 min, else 10 s)")
    args = ap.parse_args()
    soak = Soak(args)
    try:
        soak.start()
        verdict = soak.run()
    finally:
        soak.close()
    print(verdict.summary(), flush=True)
    print(f"csv: {args.out / 'soak.csv'}\nplot: {args.out / 'soak.png'}\nsummary: {args.out / 'summary.json'}")
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
