"""The login tests' infrastructure, proven without gatehouse: the real OpenID
Provider (npm oidc-provider, harness/oidc.py) and the scripted browser
(harness/browser.py), driven by the tiny relying party of harness/rp.py that runs
the authorization code flow with PKCE S256, verifies what it gets with
jwcrypto and PyJWT, and receives back-channel logout tokens."""

from __future__ import annotations

import secrets
import time
import urllib.parse
from typing import Any, Callable, Iterator

import jwt as pyjwt
import pytest

from harness.browser import Browser, parse_forms, parse_set_cookie
from harness.oidc import OidcProvider
from harness.rp import Flow, TinyRp, sign_in, tokens_of, userinfo, verify_id_token

ACCESS_TTL = 3  # seconds: the refresh test waits this long
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"


def verify_logout_token(op: OidcProvider, token: str, client_id: str) -> dict[str, Any]:
    """PyJWT, against the keys published at jwks_uri (Back-Channel Logout 1.0, 2.6)."""
    header = pyjwt.get_unverified_header(token)
    assert header["typ"] == "logout+jwt"
    key = pyjwt.PyJWKSet.from_dict(op.public_jwks())[header["kid"]]
    claims = pyjwt.decode(token, key.key, algorithms=["RS256"], audience=client_id, issuer=op.issuer,
                          options={"require": ["iat", "jti", "sub", "events"]})
    assert claims["events"] == {BACKCHANNEL_EVENT: {}}
    assert "nonce" not in claims
    return claims


# --- fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rp() -> Iterator[TinyRp]:
    server = TinyRp()
    yield server
    server.close()


@pytest.fixture(scope="module")
def op(oidc_provider_module_factory: Callable[..., OidcProvider], rp: TinyRp) -> OidcProvider:
    return oidc_provider_module_factory(
        [rp.client("rp"), rp.client("rp-no-backchannel", backchannel=False)],
        groups={"alice": ["admins", "readers"]}, access_token_ttl=ACCESS_TTL, id_token_ttl=ACCESS_TTL)


@pytest.fixture(scope="module")
def op2(oidc_provider_module_factory: Callable[..., OidcProvider], rp: TinyRp) -> OidcProvider:
    return oidc_provider_module_factory([rp.client("rp")], groups={"bob": ["staff"]},
                                        auto_consent=True)


@pytest.fixture
def browser() -> Iterator[Browser]:
    b = Browser()
    yield b
    b.close()


# --- tests ------------------------------------------------------------------------------


def test_discovery_describes_a_code_flow_provider_with_pkce_and_logout(op: OidcProvider) -> None:
    d = op.discovery
    assert d["issuer"] == op.issuer
    assert d["code_challenge_methods_supported"] == ["S256"]
    assert "code" in d["response_types_supported"]
    assert {"authorization_code", "refresh_token"} <= set(d["grant_types_supported"])
    assert d["backchannel_logout_supported"] is True
    assert d["backchannel_logout_session_supported"] is True
    assert d["end_session_endpoint"] == f"{op.issuer}/session/end"
    assert d["authorization_response_iss_parameter_supported"] is True
    assert {"email", "groups"} <= set(d["claims_supported"])
    # Our own signing key, not oidc-provider's built-in development key.
    assert [k["kid"] for k in op.public_jwks()["keys"]] == [op.signing_key.kid]


def test_code_flow_with_pkce_login_consent_tokens_and_userinfo(
        op: OidcProvider, rp: TinyRp, browser: Browser) -> None:
    flow = Flow(op, rp, "rp")
    page = browser.login_at_provider(flow.url, "alice")
    statuses = [(h.method, h.status) for h in page.hops]
    # authorize → login page, login POST → resume → consent page, consent POST → resume → callback
    assert ("POST", 303) in statuses and page.url.startswith(rp.redirect_uri), page.hop_urls()
    assert any(h.url.startswith(f"{op.issuer}/interaction/") for h in page.hops)
    callback = flow.callback()
    assert callback["iss"] == op.issuer and callback["code"]

    body = tokens_of(flow.redeem(callback["code"]))
    assert body["token_type"] == "Bearer" and body["expires_in"] <= ACCESS_TTL
    assert body["refresh_token"]  # issueRefreshToken: no offline_access needed
    claims = verify_id_token(op, body["id_token"], "rp", flow.nonce)
    assert claims["sub"] == "alice"
    # conformIdTokenClaims: false puts the scope claims in the ID token too.
    assert claims["email"] == "alice@example.org" and claims["groups"] == ["admins", "readers"]
    assert claims["sid"]  # backchannel_logout_session_required
    assert claims["exp"] - claims["iat"] == ACCESS_TTL

    info = userinfo(op, body["access_token"])
    assert info.status_code == 200, info.text
    assert info.json() == {"sub": "alice", "email": "alice@example.org", "email_verified": True,
                           "groups": ["admins", "readers"]}

    # The provider's log has one line per request and none of the secrets.
    log = op.log_text()
    assert "GET /auth?" in log and "POST /token" in log
    for value in (callback["code"], body["access_token"], body["refresh_token"], body["id_token"],
                  op.client("rp").client_secret, flow.verifier,
                  *(c.value for c in browser.cookies.all())):
        assert value not in log


def test_pkce_is_required_and_the_verifier_checked(op: OidcProvider, rp: TinyRp, browser: Browser) -> None:
    without = Flow(op, rp, "rp", pkce=False)
    page = browser.get(without.url)
    assert page.url.startswith(rp.redirect_uri)
    assert without.callback()["error"] == "invalid_request"
    assert "PKCE" in without.callback()["error_description"]

    flow = Flow(op, rp, "rp")
    browser.login_at_provider(flow.url, "alice")
    wrong = flow.redeem(flow.callback()["code"], verifier=secrets.token_urlsafe(48))
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"


def test_a_replayed_code_is_refused(op: OidcProvider, rp: TinyRp, browser: Browser) -> None:
    flow, _, _ = sign_in(op, rp, browser, "alice")
    again = flow.redeem(flow.callback()["code"])
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_refresh_after_the_access_token_expires(op: OidcProvider, rp: TinyRp, browser: Browser) -> None:
    flow, body, _ = sign_in(op, rp, browser, "alice")
    assert userinfo(op, body["access_token"]).status_code == 200
    time.sleep(ACCESS_TTL + 0.5)
    expired = userinfo(op, body["access_token"])
    assert expired.status_code == 401 and "invalid_token" in expired.headers["WWW-Authenticate"]

    fresh = tokens_of(flow.refresh(body["refresh_token"]))
    assert fresh["access_token"] != body["access_token"]
    assert fresh["refresh_token"] != body["refresh_token"]  # rotated
    assert verify_id_token(op, fresh["id_token"], "rp", flow.nonce)["sub"] == "alice"
    assert userinfo(op, fresh["access_token"]).json()["email"] == "alice@example.org"
    # The rotated-out refresh token is refused (and, reuse detected, the grant goes).
    reused = flow.refresh(body["refresh_token"])
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"


def test_two_providers_at_once_keep_distinct_sessions(
        op: OidcProvider, op2: OidcProvider, rp: TinyRp, browser: Browser) -> None:
    assert op.issuer != op2.issuer
    _, _, first = sign_in(op, rp, browser, "alice")
    _, _, second = sign_in(op2, rp, browser, "bob")  # auto_consent: no consent page
    assert (first["sub"], first["iss"]) == ("alice", op.issuer)
    assert (second["sub"], second["iss"], second["groups"]) == ("bob", op2.issuer, ["staff"])
    # Same host, so the browser holds (and sends) both sessions' cookies.
    assert browser.cookies.get(op.cookie_names()["session"])
    assert browser.cookies.get(op2.cookie_names()["session"])

    # Each provider still knows its own user: no login form the second time.
    for provider, user in ((op, "alice"), (op2, "bob")):
        flow = Flow(provider, rp, "rp")
        page = browser.get(flow.url)
        assert page.url.startswith(rp.redirect_uri), f"{provider.name} asked again: {page.hop_urls()}"
        body = tokens_of(flow.redeem(flow.callback()["code"]))
        assert verify_id_token(provider, body["id_token"], "rp", flow.nonce)["sub"] == user


def test_rp_initiated_logout_with_back_channel_logout_token(
        op: OidcProvider, rp: TinyRp, browser: Browser) -> None:
    flow, body, claims = sign_in(op, rp, browser, "dave")
    state = secrets.token_urlsafe(8)
    end = op.discovery["end_session_endpoint"] + "?" + urllib.parse.urlencode({
        "id_token_hint": body["id_token"], "post_logout_redirect_uri": f"{rp.base}/signed-out",
        "state": state})
    page = browser.logout_at_provider(end)
    assert page.status == 200 and page.url == f"{rp.base}/signed-out?state={state}", page.hop_urls()
    assert any(h.url == f"{op.issuer}/session/end/confirm" and h.method == "POST" for h in page.hops)
    assert browser.cookies.get(op.cookie_names()["session"]) is None

    # The provider posted a logout token for this session before redirecting.
    mine = [t for t in rp.logout_tokens
            if verify_logout_token(op, t, "rp").get("sid") == claims["sid"]]
    assert len(mine) == 1
    assert verify_logout_token(op, mine[0], "rp")["sub"] == "dave"
    op.wait_log("event backchannel.success client=rp")
    # The grant is gone with the session, and the next login asks again.
    assert flow.refresh(body["refresh_token"]).json()["error"] == "invalid_grant"
    assert browser.get(Flow(op, rp, "rp").url).has_form(field_value=("prompt", "login"))


def test_admin_end_session_sends_back_channel_logout(op: OidcProvider, rp: TinyRp, browser: Browser) -> None:
    flow, body, claims = sign_in(op, rp, browser, "erin")
    result = op.end_session_for("erin")
    assert result == {"sessions": 1, "notified": ["rp"], "errors": []}
    token = [t for t in rp.logout_tokens if verify_logout_token(op, t, "rp").get("sid") == claims["sid"]]
    assert len(token) == 1 and verify_logout_token(op, token[0], "rp")["sub"] == "erin"
    assert flow.refresh(body["refresh_token"]).json()["error"] == "invalid_grant"
    assert op.end_session_for("erin") == {"sessions": 0, "notified": [], "errors": []}

    # A single logout token on demand, for any sid; and revoking grants alone.
    before = len(rp.logout_tokens)
    assert op.backchannel_logout("rp", "erin", "made-up-sid") == {"notified": ["rp"]}
    assert verify_logout_token(op, rp.logout_tokens[before], "rp")["sid"] == "made-up-sid"
    flow2, body2, _ = sign_in(op, rp, Browser(), "frank")
    assert op.revoke_grants("frank") == 1
    assert flow2.refresh(body2["refresh_token"]).json()["error"] == "invalid_grant"


def test_browser_parses_forms_like_a_browser() -> None:
    html = ("<form id=f method=post action='/submit'><input type=hidden name=xsrf value=t>"
            "<input name=login><input type=checkbox name=keep></form>"
            "<button type=submit form=f name=logout value=yes>Yes</button>")
    [form] = parse_forms(html, "http://127.0.0.1:1/page")
    assert (form.action, form.method) == ("http://127.0.0.1:1/submit", "POST")
    # The unchecked box is not sent; the button outside the form (form=f) is.
    assert form.data({"login": "alice"}, button="logout") == [
        ("xsrf", "t"), ("login", "alice"), ("logout", "yes")]


def test_browser_cookie_rules_mimic_chromium() -> None:
    host_cookie = "__Host-s=v; Secure; HttpOnly; Path=/; SameSite=Lax"
    # Secure is accepted on http to loopback (a potentially trustworthy origin)...
    assert parse_set_cookie(host_cookie, "http://127.0.0.1:8080/x").secure
    # ...but not from any other http origin, and prefixes are enforced.
    for header, url in ((host_cookie, "http://example.org/"),
                        ("__Host-s=v; Path=/", "https://example.org/"),
                        ("__Host-s=v; Secure; Path=/; Domain=example.org", "https://example.org/"),
                        ("__Secure-s=v", "https://example.org/"),
                        ("s=v; Domain=other.org", "https://example.org/")):
        with pytest.raises(ValueError):
            parse_set_cookie(header, url)
    b = Browser()
    b.cookies.store("a=1; Path=/", "http://127.0.0.1:1111/")
    b.cookies.store("b=2; Path=/only", "http://127.0.0.1:1111/")
    b.cookies.store("c=3; Max-Age=0", "http://127.0.0.1:1111/")
    # Host-scoped, not port-scoped; paths respected; Max-Age=0 not kept.
    assert b.cookies.header_for("http://127.0.0.1:2222/") == "a=1"
    assert b.cookies.header_for("http://127.0.0.1:2222/only/x") == "b=2; a=1"
    assert b.cookies.header_for("http://localhost:1111/") is None
    b.cookies.store("a=1; Max-Age=0; Path=/", "http://127.0.0.1:1111/")
    assert b.cookies.header_for("http://127.0.0.1:1111/") is None
