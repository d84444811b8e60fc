"""A real OpenID Provider for the login tests: npm `oidc-provider` (installed
by tests/setup.sh into tests/oidc/node_modules) run by tests/oidc/provider.mjs
on a free loopback port, with its built-in login and consent pages.

    op = OidcProvider(workdir, [oidc.client_spec("gatehouse", redirect_uri)],
                      groups={"alice": ["admins"]})
    op.issuer, op.discovery["token_endpoint"], op.client("gatehouse").client_secret
    op.end_session_for("alice")   # back-channel logout to the clients, session gone
    op.stop()

Accounts: any login name is accepted with any password; the subject is the
login name, with `email` `<login>@example.org` and `groups` from `groups`.
Each instance has its own RSA signing key (generated here), its own cookie
names (cookies are scoped by host, not by port, so two providers on
127.0.0.1 would otherwise overwrite each other's session cookie) and its
own client secrets, recorded in `harness.secret_registry` for the leak check.
The access, refresh and ID tokens its token endpoint issues are written to
`issued_tokens_path` (not its log) and recorded from there too.
"""

from __future__ import annotations

import itertools
import json
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from jwcrypto import jwk

from harness import secret_registry
from harness.procs import ManagedProcess, ProcessExited, free_port, wait_until

REPO = Path(__file__).resolve().parents[3]
OIDC_DIR = REPO / "tests" / "oidc"
SCRIPT = OIDC_DIR / "provider.mjs"
START_TIMEOUT = 15.0

_instances = itertools.count(1)


class OidcProviderUnavailable(RuntimeError):
    """Node or the npm package is missing: run `bash tests/setup.sh`."""


def node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        raise OidcProviderUnavailable("node is not installed: run `bash tests/setup.sh`")
    if not (OIDC_DIR / "node_modules" / "oidc-provider" / "package.json").is_file():
        raise OidcProviderUnavailable(
            f"npm oidc-provider is not installed in {OIDC_DIR}/node_modules: run `bash tests/setup.sh`")
    return node


@dataclass
class OidcClient:
    """A client registered at the provider (OIDC client metadata)."""

    client_id: str
    client_secret: str
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str] = field(default_factory=list)
    backchannel_logout_uri: str | None = None
    backchannel_logout_session_required: bool = True
    grant_types: list[str] = field(default_factory=lambda: ["authorization_code", "refresh_token"])
    token_endpoint_auth_method: str = "client_secret_basic"

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "redirect_uris": self.redirect_uris,
            "post_logout_redirect_uris": self.post_logout_redirect_uris,
            "grant_types": self.grant_types,
            "response_types": ["code"],
            "token_endpoint_auth_method": self.token_endpoint_auth_method,
        }
        if self.backchannel_logout_uri:
            meta["backchannel_logout_uri"] = self.backchannel_logout_uri
            meta["backchannel_logout_session_required"] = self.backchannel_logout_session_required
        return meta

    def write_secret(self, path: Path) -> Path:
        """Writes the client secret to `path` (mode 0600), for `client_secret_file`."""
        path = Path(path)
        path.write_text(self.client_secret)
        path.chmod(0o600)
        return path


def client_spec(client_id: str, redirect_uri: str | list[str], *,
                post_logout_redirect_uri: str | list[str] | None = None,
                backchannel_logout_uri: str | None = None, **more: Any) -> OidcClient:
    """A confidential client with a fresh random secret."""
    as_list = lambda v: [] if v is None else ([v] if isinstance(v, str) else list(v))  # noqa: E731
    return OidcClient(client_id=client_id, client_secret=secrets.token_urlsafe(32),
                      redirect_uris=as_list(redirect_uri),
                      post_logout_redirect_uris=as_list(post_logout_redirect_uri),
                      backchannel_logout_uri=backchannel_logout_uri, **more)


DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"


class OidcProvider:
    """One oidc-provider process. Lifetimes are in seconds; the short access
    and ID token defaults (10 s) are for refresh tests. `auto_consent` grants
    every requested scope without the consent page (a first-party client).
    The device flow (RFC 8628) is on for clients whose `grant_types` hold
    `DEVICE_CODE_GRANT`; `device_code_ttl` is how long a device code lives,
    `device_interval` the polling interval it names (none: RFC 8628's 5 s);
    `device_flow=False` turns the device flow off. `token_claims` puts the
    account's email and groups into opaque access tokens (so introspection
    answers name them); `token_exchange_audiences` turns on RFC 8693 token
    exchange (`TOKEN_EXCHANGE_GRANT`) for those audiences."""

    def __init__(self, workdir: Path, clients: list[OidcClient], *,
                 groups: dict[str, list[str]] | None = None, name: str | None = None,
                 access_token_ttl: int = 10, id_token_ttl: int = 10,
                 refresh_token_ttl: int = 3600, session_ttl: int = 3600,
                 device_code_ttl: int = 600, device_interval: int | None = None,
                 device_flow: bool = True,
                 auto_consent: bool = False, rotate_refresh_tokens: bool = True,
                 token_claims: bool = False, token_exchange_audiences: list[str] | None = None,
                 host: str = "127.0.0.1", port: int | None = None):
        number = next(_instances)
        self.name = name or f"oidc-provider-{number}"
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.clients = {c.client_id: c for c in clients}
        self.signing_key = jwk.JWK.generate(kty="RSA", size=2048, alg="RS256", use="sig",
                                            kid=f"{self.name}-rs256")
        for c in clients:
            secret_registry.record(c.client_secret, f"{self.name} client secret ({c.client_id})")
        self.cookie_prefix = f"op{number}"
        # Every token the token endpoint issues, for the leak check (read by
        # the registry at the end of the run, so none is missed).
        self.issued_tokens_path = self.workdir / f"{self.name}-issued-tokens"
        secret_registry.record_file(self.issued_tokens_path, f"{self.name} issued")
        self._settings = {
            "jwks": {"keys": [self.signing_key.export_private(as_dict=True)]},
            "clients": [c.metadata() for c in clients],
            "groups": groups or {},
            "cookie_prefix": self.cookie_prefix,
            "cookie_keys": [secrets.token_urlsafe(32)],
            "auto_consent": auto_consent,
            "rotate_refresh_tokens": rotate_refresh_tokens,
            "ttl": {"access_token": access_token_ttl, "id_token": id_token_ttl,
                    "refresh_token": refresh_token_ttl, "session": session_ttl,
                    "device_code": device_code_ttl},
            "host": host,
            "issued_tokens_file": str(self.issued_tokens_path),
        }
        if not device_flow:
            self._settings["device_flow"] = False
        if token_claims:
            self._settings["token_claims"] = True
        if token_exchange_audiences is not None:
            self._settings["token_exchange"] = {"audiences": token_exchange_audiences}
        if device_interval is not None:
            self._settings["device_interval"] = device_interval
        self.log_path = self.workdir / f"{self.name}.log"
        self.process: ManagedProcess | None = None
        self._discovery: dict | None = None
        self._start(port)

    # --- lifecycle ------------------------------------------------------------

    def _start(self, port: int | None) -> None:
        node = node_binary()
        # A free port can be taken between free_port() and node's bind: retry.
        for attempt in range(3):
            self.port = port or free_port()
            self.issuer = f"http://{self.host}:{self.port}"
            config = dict(self._settings, port=self.port, issuer=self.issuer)
            config_path = self.workdir / f"{self.name}.json"
            config_path.write_text(json.dumps(config, indent=2))
            config_path.chmod(0o600)
            self.process = ManagedProcess(self.name, [node, SCRIPT, config_path], self.log_path,
                                          cwd=OIDC_DIR)
            try:
                self._discovery = wait_until(f"{self.name} discovery", self._fetch_discovery,
                                             START_TIMEOUT, on_timeout=self.process.log_tail)
                return
            except ProcessExited:
                if port is None and attempt < 2 and "EADDRINUSE" in self.process.log_text():
                    continue
                raise

    def _fetch_discovery(self) -> dict | None:
        assert self.process is not None
        self.process.check_alive()
        r = requests.get(f"{self.issuer}/.well-known/openid-configuration", timeout=2)
        return r.json() if r.status_code == 200 else None

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def log_text(self) -> str:
        return self.process.log_text() if self.process else ""

    # --- what tests read -------------------------------------------------------

    @property
    def discovery(self) -> dict:
        """The provider's `/.well-known/openid-configuration` document."""
        assert self._discovery is not None
        return self._discovery

    def client(self, client_id: str) -> OidcClient:
        return self.clients[client_id]

    def public_jwks(self) -> dict:
        """The provider's signing keys as published at `jwks_uri` (fetched)."""
        return requests.get(self.discovery["jwks_uri"], timeout=5).json()

    def cookie_names(self) -> dict[str, str]:
        p = self.cookie_prefix
        return {"session": f"{p}_session", "interaction": f"{p}_interaction",
                "resume": f"{p}_interaction_resume"}

    # --- test endpoints (tests/oidc/provider.mjs) ------------------------------

    def _test_post(self, path: str, **form: str) -> dict:
        r = requests.post(f"{self.issuer}{path}", data=form, timeout=10)
        body = r.json()
        if r.status_code != 200:
            raise RuntimeError(f"{self.name} {path}: {r.status_code} {body}")
        return body

    def end_session_for(self, sub: str) -> dict:
        """Ends every session of `sub` as an administrator would: a logout
        token to each client of those sessions with a back-channel logout
        URI, then the sessions and their grants are gone. Returns
        `{"sessions": n, "notified": [client_id...], "errors": [...]}`."""
        return self._test_post("/test/end-session", sub=sub)

    def backchannel_logout(self, client_id: str, sub: str, sid: str | None = None) -> dict:
        """Sends one logout token for `sub` (and `sid`) to the client; the
        provider's own session stays."""
        form = {"client_id": client_id, "sub": sub}
        if sid is not None:
            form["sid"] = sid
        return self._test_post("/test/backchannel-logout", **form)

    def revoke_grants(self, sub: str) -> int:
        """Revokes every grant of `sub`: its refresh tokens stop working (a
        refresh then fails with invalid_grant); sessions stay. Returns the count."""
        return self._test_post("/test/revoke-grants", sub=sub)["grants"]

    def token_requests(self) -> dict[str, dict[str, int]]:
        """How many token endpoint requests the provider answered, by grant
        type then status: `{"authorization_code": {"200": 1},
        "refresh_token": {"200": 2, "400": 1}}`."""
        return self._test_post("/test/token-requests")

    def token_grants(self, grant_type: str, status: int | None = 200) -> int:
        """How many `grant_type` token requests were answered with `status`
        (`None`: with any status)."""
        by_status = self.token_requests().get(grant_type, {})
        if status is None:
            return sum(by_status.values())
        return by_status.get(str(status), 0)

    def device_polls(self) -> dict[str, int]:
        """How the provider answered device-code token requests so far:
        `{"authorization_pending": n, "slow_down": n, "200": n, ...}`. A
        poll sooner than the interval is answered `slow_down`."""
        return self._test_post("/test/device-polls")

    def slow_down_next_device_poll(self) -> None:
        """The next pending device-code poll is answered `slow_down`."""
        self._test_post("/test/device-slow-down")

    def introspections(self) -> dict[str, int]:
        """How the introspection endpoint answered so far:
        `{"active": n, "inactive": n, "error": n}`."""
        return self._test_post("/test/introspections")

    def issued_tokens(self, kind: str | None = None) -> list[str]:
        """The tokens the token endpoint issued so far, oldest first
        (`kind`: `access_token`, `refresh_token` or `id_token`; None: all)."""
        try:
            lines = self.issued_tokens_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        pairs = [line.split("\t", 1) for line in lines if "\t" in line]
        return [value for k, value in pairs if kind is None or k == kind]

    def userinfo_status(self, access_token: str) -> tuple[int, dict | None]:
        """The provider's userinfo answer to `access_token`: (status, claims
        or None). 200 means the provider still accepts the token."""
        secret_registry.record_token(access_token, f"{self.name} access token (userinfo)")
        r = requests.get(self.discovery["userinfo_endpoint"],
                         headers={"Authorization": f"Bearer {access_token}"}, timeout=5)
        return r.status_code, (r.json() if r.status_code == 200 else None)

    def wait_log(self, needle: str, timeout: float = 5.0) -> None:
        """Waits until the provider's log contains `needle` (e.g. an event line)."""
        wait_until(f"{needle!r} in {self.log_path}", lambda: needle in self.log_text(), timeout)

