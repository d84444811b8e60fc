"""Gatehouse configurations used by the tests, as YAML-ready dicts.

The shared instance (`shared_config`) has four issuers and the rules the
tests in test_*.py rely on; dedicated instances (health, outage, SIGTERM)
use `single_issuer_config`.
"""

from __future__ import annotations

from typing import Any

from harness import secret_registry
from harness.tokens import AUDIENCE

REALM = "gatehouse-e2e"
COOKIE = "gh_token"
QUERY = "access_token"
HMAC_ISSUER = "https://hmac.e2e.invalid"
HMAC_SECRET_FILE = "secrets/hmac.secret"  # relative: resolved against the config's directory
ISSUER_KEY_FILE = "secrets/issuer.pem"  # the internal issuer's signing key
UPSTREAM_TOKEN_FILE = "secrets/upstream.token"  # the credential rule `k8s` sends upstream
UPSTREAM_TOKEN = "upstream-service-account-token-1"
secret_registry.record(UPSTREAM_TOKEN, "upstream credential")
MINT_SCOPE = "links:mint"
INTERNAL_AUDIENCE = "internal"  # envoy.yaml's /internal/ route asks for it
LINK_MAX_DURATION = "2h"

CLAIMS = {
    "username": "preferred_username",
    "email": "email",
    "uid": "uidNumber",
    "groups": "groups",
}

# Background refresh effectively off (the JWKS servers say max-age=3600), so
# fetch counters only move when a test makes them move.
QUIET_REFRESH = {
    "interval": "1h",
    "min_interval": "1s",
    "max_interval": "1h",
    "retry_interval": "1s",
    "unknown_kid_interval": "30s",
    "timeout": "2s",
}

# The rotating issuer: unknown kids may trigger one refetch per 2 s.
UNKNOWN_KID_INTERVAL = 2.0
ROTATING_REFRESH = dict(QUIET_REFRESH, unknown_kid_interval=f"{UNKNOWN_KID_INTERVAL:g}s")

GROUP_MAPPING = {
    "read:data": ["readers", "admins"],
    "write:data": ["writers", "admins"],
    "admin:all": ["superusers"],
    MINT_SCOPE: ["minters"],
}

QUOTA_RULE = "quota"
QUOTA_LIMIT = 5

ALL_HEADERS = ["user", "email", "uid", "groups", "scopes", "client_ip", "token"]

# Envoy routes /public/ (check disabled), /admin/ (scope admin:all via
# context_extensions), /basic/ (auth_type basic) and everything else (no
# extensions). No rule below matches /admin/ or /basic/: there the context
# extensions alone define the requirement.
RULES: list[dict[str, Any]] = [
    # Shadow (test_conditions.py): would demand admin:all under /anon/strict/;
    # never enforced, only its disagreements counted.
    {"name": "shadow-strict-anon", "mode": "shadow",
     "match": {"path": {"prefix": "/anon/strict/"}}, "scopes": ["admin:all"]},
    {"name": "anonymous", "match": {"path": {"prefix": "/anon/"}}, "auth": "anonymous"},
    {"name": "all-scopes", "match": {"path": {"prefix": "/all/"}},
     "scopes": ["read:data", "write:data"], "satisfy": "all"},
    {"name": "any-scope", "match": {"path": {"prefix": "/any/"}},
     "scopes": ["read:data", "write:data"], "satisfy": "any"},
    {"name": "data", "match": {"path": {"prefix": "/data/"}}, "scopes": ["read:data"]},
    {"name": "whoami", "match": {"path": {"prefix": "/whoami/"}}, "headers": ALL_HEADERS},
    {"name": "api", "match": {"path": {"prefix": "/api/"}}},  # default headers: no token
    # Signed links (test_links.py): /links/ is any valid credential; /k8s/
    # swaps the caller's credential for UPSTREAM_TOKEN; /internal/ (audience
    # from Envoy's context extension) and /reissue/ (audience from the rule)
    # get a reissued token in X-Auth-Request-Token.
    {"name": "links", "match": {"path": {"prefix": "/links/"}}, "headers": ALL_HEADERS},
    {"name": "k8s", "match": {"path": {"prefix": "/k8s/"}},
     "upstream_credential": {"bearer_file": UPSTREAM_TOKEN_FILE}},
    {"name": "internal", "match": {"path": {"prefix": "/internal/"}}, "headers": ALL_HEADERS},
    {"name": "reissue", "match": {"path": {"prefix": "/reissue/"}}, "audience": INTERNAL_AUDIENCE,
     "headers": ALL_HEADERS},
    # CEL conditions (test_conditions.py): reading is open, writing needs
    # the admins group; a claim; a header that may be missing.
    {"name": "cel-writers", "match": {"path": {"prefix": "/cel/"}},
     "when": 'request.method == "GET" || "admins" in identity.groups'},
    {"name": "cel-claims", "match": {"path": {"prefix": "/cel-claims/"}},
     "when": 'identity.claims.email.endsWith("@example.org") && identity.kind == "jwt"'},
    {"name": "cel-header", "match": {"path": {"prefix": "/cel-header/"}},
     "when": 'request.headers["x-tier"] == "gold" && route.size() == 0'},
    # Quotas (test_quota.py): QUOTA_LIMIT requests per minute per user below
    # /quota/; no other test uses the path.
    {"name": QUOTA_RULE, "match": {"path": {"prefix": "/quota/"}},
     "quota": {"per": "user", "limit": QUOTA_LIMIT, "window": "1m"}},
]


def issuer(name: str, iss: str, algorithms: list[str], keys: dict, refresh: dict | None = None) -> dict:
    out = {
        "name": name,
        "issuer": iss,
        "audiences": [AUDIENCE],
        "algorithms": algorithms,
        "keys": keys,
        "claims": dict(CLAIMS),
    }
    if refresh:
        out["refresh"] = dict(refresh)
    return out


def shared_config(primary_idp, discovery_idp, rotating_idp) -> dict[str, Any]:
    return {
        "server": {"drain_timeout": "2s", "realm": REALM},
        "network": {"trusted_proxies": ["127.0.0.0/8"]},
        "jwt": {
            "leeway": "5s",
            "sources": ["bearer", "basic", {"cookie": COOKIE}, {"query": QUERY}],
            "issuers": [
                issuer("primary", primary_idp.issuer, ["RS256", "ES256", "EdDSA"],
                       {"jwks_uri": primary_idp.jwks_uri}, QUIET_REFRESH),
                issuer("discovered", discovery_idp.issuer, ["ES256"], {"discovery": {}},
                       QUIET_REFRESH),
                issuer("hmac", HMAC_ISSUER, ["HS256"], {"shared_secret_file": HMAC_SECRET_FILE}),
                issuer("rotating", rotating_idp.issuer, ["RS256"],
                       {"jwks_uri": rotating_idp.jwks_uri}, ROTATING_REFRESH),
            ],
        },
        "scopes": {"group_mapping": GROUP_MAPPING},
        "policy": {"default": "deny", "rules": RULES},
        "log": {"level": "info,gatehouse=debug"},
    }


def internal_issuer(issuer_url: str, key_files: list[str] | None = None) -> dict[str, Any]:
    """The `issuer:` section: gatehouse signs with `key_files` (the first
    signs), links below /links/ and /k8s/ for holders of MINT_SCOPE, cookie
    COOKIE, reissue for INTERNAL_AUDIENCE."""
    return {
        "issuer": issuer_url,
        "signing_keys": [{"file": f} for f in (key_files or [ISSUER_KEY_FILE])],
        "links": {
            "max_duration": LINK_MAX_DURATION,
            "cookie": COOKIE,
            "mint": [{"scope": MINT_SCOPE, "prefixes": ["/links/", "/k8s/"]}],
        },
        "reissue": {"audiences": [INTERNAL_AUDIENCE], "lifetime": "5m"},
    }


def single_issuer_config(idp, refresh: dict | None = None, drain_timeout: str = "2s") -> dict[str, Any]:
    """One `jwks_uri` issuer and one authenticated rule for everything."""
    return {
        "server": {"drain_timeout": drain_timeout, "realm": REALM},
        "network": {"trusted_proxies": ["127.0.0.0/8"]},
        "jwt": {
            "issuers": [issuer("only", idp.issuer, ["RS256", "ES256", "EdDSA"],
                               {"jwks_uri": idp.jwks_uri}, refresh or QUIET_REFRESH)],
        },
        "policy": {"default": "authenticated", "rules": []},
        "log": {"level": "info,gatehouse=debug"},
    }


def login(base: str, op, secret, *, name: str = "op", client_id: str = "gatehouse",
          groups_scope: bool = False, allowed_groups: list[str] | None = None,
          domains: tuple[str, ...] = ("127.0.0.1",), **more) -> dict:
    """A `login` section with one provider (`op`, an OidcProvider) whose
    callback is `<base>/auth/callback`: the claims the test provider sends
    (`sub`, `email`, `groups`), the `groups` scope when `groups_scope`,
    `allowed_groups` when given, and any other `login` keys in `more`."""
    provider = {"name": name, "issuer": op.issuer, "client_id": client_id,
                "client_secret_file": str(secret),
                "claims": {"username": "sub", "email": "email", "groups": "groups"}}
    if groups_scope:
        provider["scopes"] = ["openid", "email", "profile", "groups"]
    if allowed_groups:
        provider["allowed_groups"] = list(allowed_groups)
    section = {"callback_url": f"{base}/auth/callback",
               "allowed_redirect_domains": list(domains), "providers": [provider]}
    section.update(more)
    return section
