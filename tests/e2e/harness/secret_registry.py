"""Every secret this test run handles, recorded where it is made or sent:
tokens minted (and their signatures alone), shared secrets, private key
material, credentials sent in `Authorization` and `Cookie` headers or
token query parameters, upstream credentials, signed links. At the end of
the session `harness.leaks` looks for each of them in gatehouse's logs.

Values shorter than `MIN_LENGTH` are not recorded: they are test
scaffolding ("x", "dark"), too short to be a real secret, and would match
by chance."""

from __future__ import annotations

import base64
import threading
import urllib.parse
from pathlib import Path

MIN_LENGTH = 16

_SECRETS: dict[str, str] = {}
_FILES: dict[Path, str] = {}  # files of `<kind>\t<secret>` lines, read by `recorded()`
_LOCK = threading.Lock()


def record(value: str | bytes | None, label: str) -> None:
    """Remembers `value` (labelled, for the report) if it is long enough."""
    if value is None:
        return
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    value = value.strip()
    if len(value) < MIN_LENGTH:
        return
    with _LOCK:
        _SECRETS.setdefault(value, label)


def record_token(token: str | None, label: str = "token") -> None:
    """A compact JWS: the whole token, and its signature on its own."""
    if not token:
        return
    record(token, label)
    parts = token.split(".")
    if len(parts) == 3:
        record(parts[2], f"{label} signature")


def record_pem(pem: bytes | str, label: str) -> None:
    """A PEM private key: each base64 line of its body."""
    text = pem.decode() if isinstance(pem, bytes) else pem
    for line in text.splitlines():
        if line and not line.startswith("-----"):
            record(line, f"{label} (PEM body line)")


def record_authorization(value: str) -> None:
    """An `Authorization` header value: the credential after the scheme,
    and for Basic the decoded user name and password."""
    scheme, _, credential = value.strip().partition(" ")
    credential = credential.strip()
    record_token(credential, f"{scheme or 'authorization'} credential")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credential, validate=True).decode("utf-8", "replace")
        except ValueError:
            return
        user, _, password = decoded.partition(":")
        record_token(user, "basic user")
        record_token(password, "basic password")


def record_cookies(value: str) -> None:
    """A `Cookie` header: each cookie's value."""
    for pair in value.split(";"):
        _, _, cookie = pair.partition("=")
        record_token(cookie.strip(), "cookie value")


def record_request(target: str, headers: list[tuple[str, str]]) -> None:
    """What a test sends: credentials in headers and token query parameters."""
    for name, value in headers:
        lower = name.lower()
        if lower in ("authorization", "proxy-authorization"):
            record_authorization(value)
        elif lower == "cookie":
            record_cookies(value)
    query = urllib.parse.urlsplit(target).query
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if "token" in key.lower():
            record_token(value, f"query parameter {key}")


def record_file(path: Path | str, label: str) -> None:
    """A file another process appends secrets to, one `<kind>\t<secret>`
    line each (e.g. the tokens the test OpenID Provider issues): read, and
    each secret recorded as a token labelled `<label> <kind>`, whenever
    `recorded()` is called, so that secrets written after this call (or by
    a process that died) are not missed."""
    with _LOCK:
        _FILES[Path(path)] = label


def _read_files() -> None:
    with _LOCK:
        files = dict(_FILES)
    for path, label in files.items():
        try:
            text = path.read_text(errors="replace")
        except FileNotFoundError:
            continue
        for line in text.splitlines():
            kind, sep, secret = line.partition("\t")
            if sep:
                record_token(secret, f"{label} {kind}")


def recorded() -> dict[str, str]:
    """Secret → label."""
    _read_files()
    with _LOCK:
        return dict(_SECRETS)
