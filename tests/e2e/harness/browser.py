"""A scripted browser for the login tests: requests underneath, redirects
followed hop by hop (every hop recorded), cookies kept the way Chromium keeps
them, HTML forms parsed and submitted.

    b = Browser()
    page = b.login_at_provider(authorization_url, "alice")
    page.url, page.status, [h.status for h in page.hops]

Cookies, as in a browser (RFC 6265 with Chromium's choices):
- scoped by host, **not by port**: a cookie set by 127.0.0.1:5000 is sent to
  127.0.0.1:6000 too (so two services on one loopback address see each
  other's cookies, as they would in Chromium);
- `Domain` widens to subdomains; `Path` and default-path as in the RFC;
- `Secure` cookies are accepted and sent over https, and over http to a
  loopback host (127.0.0.0/8, ::1, localhost): Chromium treats those as
  potentially trustworthy origins;
- `__Host-` needs Secure, Path=/ and no Domain; `__Secure-` needs Secure:
  otherwise the cookie is refused, as a browser refuses it;
- `Max-Age`/`Expires` in the past deletes; SameSite is recorded, not
  enforced (every test origin is 127.0.0.1, one site).
Every cookie value the browser is given or sends and every authorization
`code` it carries is recorded in `harness.secret_registry` for the leak check.
"""

from __future__ import annotations

import ipaddress
import json
import time
import urllib.parse
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from http.cookiejar import DefaultCookiePolicy
from typing import Any

import requests

from harness import secret_registry

MAX_HOPS = 20
BROWSER_HEADERS = {
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) gatehouse-e2e-browser",
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Accept-Language": "en",
}
DEFAULT_PASSWORD = "correct horse battery staple"


def is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# --- cookies ----------------------------------------------------------------


@dataclass
class Cookie:
    name: str
    value: str
    domain: str  # lower-case host, or the Domain attribute without a leading dot
    host_only: bool
    path: str
    secure: bool = False
    http_only: bool = False
    same_site: str | None = None
    expires: float | None = None  # epoch seconds; None: a session cookie

    def expired(self, now: float | None = None) -> bool:
        return self.expires is not None and self.expires <= (now or time.time())

    def matches(self, host: str, path: str, secure_channel: bool) -> bool:
        if self.host_only:
            if host != self.domain:
                return False
        elif not (host == self.domain or host.endswith("." + self.domain)):
            return False
        if self.secure and not secure_channel:
            return False
        return path_matches(path, self.path)


def path_matches(request_path: str, cookie_path: str) -> bool:
    if request_path == cookie_path:
        return True
    if request_path.startswith(cookie_path):
        return cookie_path.endswith("/") or request_path[len(cookie_path)] == "/"
    return False


def default_path(request_path: str) -> str:
    if not request_path.startswith("/") or request_path.count("/") == 1:
        return "/"
    return request_path[: request_path.rindex("/")]


class CookieRefused(ValueError):
    """A Set-Cookie a browser would ignore (the reason is the message)."""


def parse_set_cookie(header: str, url: str, now: float | None = None) -> Cookie:
    """One Set-Cookie header received from `url`, as a browser stores it."""
    now = time.time() if now is None else now
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    pair, *attributes = header.split(";")
    name, sep, value = pair.partition("=")
    name, value = name.strip(), value.strip()
    if not sep or not name:
        raise CookieRefused(f"no name=value in {header.split(';')[0]!r}")
    cookie = Cookie(name=name, value=value, domain=host, host_only=True,
                    path=default_path(parts.path or "/"))
    max_age: float | None = None
    for attribute in attributes:
        key, _, val = attribute.strip().partition("=")
        key, val = key.strip().lower(), val.strip()
        if key == "domain" and val:
            domain = val.lstrip(".").lower()
            if not (host == domain or host.endswith("." + domain)):
                raise CookieRefused(f"{name}: Domain={val} does not match host {host}")
            cookie.domain, cookie.host_only = domain, False
        elif key == "path":
            cookie.path = val if val.startswith("/") else default_path(parts.path or "/")
        elif key == "secure":
            cookie.secure = True
        elif key == "httponly":
            cookie.http_only = True
        elif key == "samesite":
            cookie.same_site = val.lower()
        elif key == "max-age":
            try:
                max_age = float(int(val))
            except ValueError:
                pass
        elif key == "expires" and val:
            try:
                cookie.expires = parsedate_to_datetime(val).timestamp()
            except (TypeError, ValueError):
                pass
    if max_age is not None:  # Max-Age wins over Expires
        cookie.expires = now + max_age
    trustworthy = parts.scheme == "https" or is_loopback(host)
    if cookie.secure and not trustworthy:
        raise CookieRefused(f"{name}: Secure cookie from an insecure origin {parts.scheme}://{host}")
    if name.startswith("__Secure-") and not cookie.secure:
        raise CookieRefused(f"{name}: the __Secure- prefix needs Secure")
    if name.startswith("__Host-") and not (cookie.secure and cookie.host_only and cookie.path == "/"):
        raise CookieRefused(f"{name}: the __Host- prefix needs Secure, Path=/ and no Domain")
    return cookie


class CookieJar:
    """Cookies keyed by (domain, path, name), like a browser's store."""

    def __init__(self) -> None:
        self._cookies: dict[tuple[str, str, str], Cookie] = {}
        self.refused: list[str] = []  # why each refused Set-Cookie was refused

    def store(self, header: str, url: str) -> Cookie | None:
        try:
            cookie = parse_set_cookie(header, url)
        except CookieRefused as e:
            self.refused.append(str(e))
            return None
        key = (cookie.domain, cookie.path, cookie.name)
        if cookie.expired():
            self._cookies.pop(key, None)
        else:
            self._cookies[key] = cookie
        return cookie

    def for_url(self, url: str) -> list[Cookie]:
        """The cookies a browser sends to `url`: longer paths first."""
        parts = urllib.parse.urlsplit(url)
        host = (parts.hostname or "").lower()
        secure_channel = parts.scheme == "https" or is_loopback(host)
        now = time.time()
        for key in [k for k, c in self._cookies.items() if c.expired(now)]:
            del self._cookies[key]
        found = [c for c in self._cookies.values()
                 if c.matches(host, parts.path or "/", secure_channel)]
        return sorted(found, key=lambda c: -len(c.path))

    def header_for(self, url: str) -> str | None:
        cookies = self.for_url(url)
        return "; ".join(f"{c.name}={c.value}" for c in cookies) if cookies else None

    def get(self, name: str, host: str | None = None) -> Cookie | None:
        for c in self._cookies.values():
            if c.name == name and (host is None or c.domain == host):
                return c
        return None

    def all(self) -> list[Cookie]:
        return list(self._cookies.values())

    def clear(self, name: str | None = None) -> None:
        for key in [k for k in self._cookies if name is None or k[2] == name]:
            del self._cookies[key]


# --- forms -------------------------------------------------------------------


@dataclass
class Form:
    action: str  # absolute URL
    method: str
    id: str | None
    page_url: str = ""  # the page the form is on (its origin goes in `Origin`)
    fields: list[tuple[str, str]] = field(default_factory=list)  # hidden and filled inputs
    inputs: list[dict[str, str]] = field(default_factory=list)  # every input's attributes
    buttons: list[dict[str, str]] = field(default_factory=list)  # submit buttons' attributes

    def value(self, name: str) -> str | None:
        return next((v for n, v in self.fields if n == name), None)

    def has_input(self, name: str) -> bool:
        return any(i.get("name") == name for i in self.inputs)

    def data(self, values: dict[str, str] | None = None, button: str | None = None) -> list[tuple[str, str]]:
        """The fields a submission sends: the form's own, `values` replacing
        or adding, and the named submit button's name=value if it has one."""
        values = dict(values or {})
        out = [(n, values.pop(n) if n in values else v) for n, v in self.fields]
        out.extend(values.items())
        if button is not None:
            chosen = next((b for b in self.buttons if b.get("name") == button), None)
            if chosen is None:
                raise LookupError(f"no submit button named {button!r} in form {self.action}")
            out.append((button, chosen.get("value", "")))
        return out


class _FormParser(HTMLParser):
    def __init__(self, base_url: str):
        super().__init__(convert_charrefs=True)
        self.base_url = base_url
        self.forms: list[Form] = []
        self._by_id: dict[str, Form] = {}
        self._current: Form | None = None
        self._pending: list[tuple[str, dict[str, str]]] = []  # controls with form= before their form
        self._textarea: tuple[Form, str] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v if v is not None else "") for k, v in attrs}
        if tag == "form":
            action = urllib.parse.urljoin(self.base_url, a.get("action") or self.base_url)
            form = Form(action=action, method=(a.get("method") or "get").upper(), id=a.get("id"),
                        page_url=self.base_url)
            self.forms.append(form)
            self._current = form
            if form.id:
                self._by_id[form.id] = form
        elif tag in ("input", "button", "textarea"):
            owner = self._owner(a)
            if owner is None:
                self._pending.append((tag, a))
            else:
                self._add(owner, tag, a)

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None
        elif tag == "textarea" and self._textarea:
            form, name = self._textarea
            form.fields.append((name, "".join(self._text)))
            self._textarea, self._text = None, []

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self._text.append(data)

    def close(self) -> None:
        super().close()
        for tag, a in self._pending:
            owner = self._owner(a)
            if owner is not None:
                self._add(owner, tag, a)

    def _owner(self, a: dict[str, str]) -> Form | None:
        if a.get("form"):
            return self._by_id.get(a["form"])
        return self._current

    def _add(self, form: Form, tag: str, a: dict[str, str]) -> None:
        kind = a.get("type", "submit" if tag == "button" else "text").lower()
        if tag == "textarea":
            if a.get("name"):
                self._textarea, self._text = (form, a["name"]), []
            return
        if kind in ("submit", "image"):
            form.buttons.append(a)
            return
        form.inputs.append(a)
        name = a.get("name")
        if not name or kind in ("reset", "file"):
            return
        if kind in ("checkbox", "radio") and "checked" not in a:
            return
        if kind in ("hidden", "checkbox", "radio") or "value" in a:
            form.fields.append((name, a.get("value", "on" if kind == "checkbox" else "")))


def parse_forms(html: str, base_url: str) -> list[Form]:
    parser = _FormParser(base_url)
    parser.feed(html)
    parser.close()
    return parser.forms


# --- pages and hops -------------------------------------------------------------


@dataclass
class Hop:
    """One request/response of a navigation."""

    method: str
    url: str
    status: int
    location: str | None
    set_cookies: list[str]


@dataclass
class Page:
    """Where a navigation ended: the last response, and every hop to it."""

    url: str
    status: int
    headers: requests.structures.CaseInsensitiveDict
    body: bytes
    hops: list[Hop]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)

    def forms(self) -> list[Form]:
        return parse_forms(self.text, self.url)

    def form(self, *, with_input: str | None = None, field_value: tuple[str, str] | None = None,
             action_contains: str | None = None) -> Form:
        """The first form matching every criterion given; LookupError otherwise."""
        for f in self.forms():
            if with_input and not f.has_input(with_input):
                continue
            if field_value and f.value(field_value[0]) != field_value[1]:
                continue
            if action_contains and action_contains not in f.action:
                continue
            return f
        raise LookupError(f"no matching form on {self.url} (status {self.status}):\n{self.text[:2000]}")

    def has_form(self, **criteria: Any) -> bool:
        try:
            self.form(**criteria)
            return True
        except LookupError:
            return False

    def hop_urls(self) -> list[str]:
        return [h.url for h in self.hops]


# --- the browser ------------------------------------------------------------------


class Browser:
    """See the module doc. `history` holds every hop of every navigation."""

    def __init__(self, headers: dict[str, str] | None = None, timeout: float = 10.0):
        self.headers = dict(BROWSER_HEADERS, **(headers or {}))
        self.timeout = timeout
        self.cookies = CookieJar()
        self.history: list[Hop] = []
        self._session = requests.Session()
        # requests must not keep cookies of its own: the jar above decides.
        self._session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        self._session.trust_env = False  # no proxy from the environment

    def close(self) -> None:
        self._session.close()

    def get(self, url: str, **kw: Any) -> Page:
        return self.request("GET", url, **kw)

    def post(self, url: str, data: Any = None, **kw: Any) -> Page:
        return self.request("POST", url, data=data, **kw)

    def request(self, method: str, url: str, data: Any = None, headers: dict[str, str] | None = None,
                follow: bool = True, max_hops: int = MAX_HOPS) -> Page:
        """One navigation: the request, then redirects as a browser follows
        them (301/302/303 become GET without a body, 307/308 repeat the
        method and body) unless `follow` is False."""
        hops: list[Hop] = []
        while True:
            response = self._send(method, url, data, headers)
            set_cookies = response.raw.headers.getlist("Set-Cookie")
            for header in set_cookies:
                stored = self.cookies.store(header, url)
                if stored is not None:
                    # Recorded when set, not only when sent back: a session
                    # cookie the browser never sends again is still a secret.
                    secret_registry.record_token(stored.value, "cookie value (set)")
            location = response.headers.get("Location")
            hop = Hop(method, url, response.status_code, location, set_cookies)
            hops.append(hop)
            self.history.append(hop)
            if not (follow and location and response.status_code in (301, 302, 303, 307, 308)):
                return Page(url, response.status_code, response.headers, response.content, hops)
            if len(hops) >= max_hops:
                raise RuntimeError(f"more than {max_hops} redirects: {[h.url for h in hops]}")
            url = urllib.parse.urljoin(url, location)
            self._record_url_secrets(url)
            if response.status_code in (301, 302, 303) and method != "HEAD":
                # A GET navigation carries no body, and (in Chromium) no Origin.
                method, data = "GET", None
                headers = {k: v for k, v in (headers or {}).items()
                           if k.lower() not in ("content-type", "origin")}

    def _send(self, method: str, url: str, data: Any, headers: dict[str, str] | None) -> requests.Response:
        sent = dict(self.headers, **(headers or {}))
        cookie = self.cookies.header_for(url)
        if cookie:
            sent["Cookie"] = cookie
            secret_registry.record_cookies(cookie)
        return self._session.request(method, url, data=data, headers=sent, allow_redirects=False,
                                     timeout=self.timeout)

    @staticmethod
    def _record_url_secrets(url: str) -> None:
        query = urllib.parse.urlsplit(url).query
        for key, value in urllib.parse.parse_qsl(query):
            if key == "code" or "token" in key:
                secret_registry.record(value, f"browser URL parameter {key}")

    def submit(self, form: Form, values: dict[str, str] | None = None, button: str | None = None,
               **kw: Any) -> Page:
        """Submits `form` (fields, `values`, and the named submit button).
        A POST carries `Origin` (the form page's origin), as Chromium sends it."""
        data = form.data(values, button)
        if form.method == "GET":
            url = urllib.parse.urlsplit(form.action)._replace(
                query=urllib.parse.urlencode(data)).geturl()
            return self.get(url, **kw)
        page = urllib.parse.urlsplit(form.page_url or form.action)
        headers = {"Origin": f"{page.scheme}://{page.netloc}", **kw.pop("headers", {})}
        return self.post(form.action, data=data, headers=headers, **kw)

    # --- oidc-provider's pages (devInteractions) ---------------------------------

    def login_at_provider(self, start_url: str, user: str, password: str = DEFAULT_PASSWORD,
                          consent: bool = True, max_steps: int = 4) -> Page:
        """Navigates to `start_url` (an authorization request, or a page that
        redirects to one), signs in as `user` on oidc-provider's login form
        and accepts its consent form when they appear, and returns where the
        redirects end (normally the relying party's page). With
        `consent=False` it stops on the consent page instead."""
        page = self.get(start_url)
        hops = list(page.hops)
        for _ in range(max_steps):
            if page.has_form(field_value=("prompt", "login")):
                page = self.submit(page.form(field_value=("prompt", "login")),
                                   {"login": user, "password": password})
                secret_registry.record(password, "provider password")
            elif consent and page.has_form(field_value=("prompt", "consent")):
                page = self.submit(page.form(field_value=("prompt", "consent")))
            else:
                break
            hops.extend(page.hops)
        page.hops = hops
        return page

    def logout_at_provider(self, end_session_url: str, confirm: bool = True) -> Page:
        """Navigates to an RP-initiated logout URL (`end_session_endpoint`
        with its parameters) and answers the provider's confirmation form:
        "yes, sign me out" when `confirm`, else "stay signed in"."""
        page = self.get(end_session_url)
        hops = list(page.hops)
        if page.has_form(with_input="xsrf"):
            form = page.form(with_input="xsrf")
            page = self.submit(form, button="logout" if confirm else None)
            hops.extend(page.hops)
        page.hops = hops
        return page
