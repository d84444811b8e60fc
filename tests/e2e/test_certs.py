"""Client certificates end to end, through the real Envoy running the
shipped envoy/envoy-mtls.yaml: Toolforge-style tool ownership, superusers,
X-Toolforge-* headers, RFC 4514 DNs with escaped commas, spoofing attempts,
expired certificates, and the aggregated OpenAPI document Envoy serves.

Certificates are made at test time with the Python `cryptography` library.
Two Envoy listeners: `mtls` (TLS, client certificate required; gatehouse
gets it through `include_peer_certificate`) and `behind_proxy` (plain
HTTP; `x-forwarded-client-cert` passed through, believed by gatehouse only
from 127.0.0.2, the "front proxy" in `certificates.xfcc.trusted_proxies`).
Tests connect from 127.0.0.2 to be that proxy and from 127.0.0.1 to be
anyone else.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from openapi_spec_validator import validate as validate_openapi

from harness import configs, expect
from harness.gatehouse import GatehouseInstance, add_gatehouse_log, require_binary
from harness.httpc import Client
from harness.mtls import ClientCert, MtlsEnvoy, Pki
from harness.procs import wait_until
from harness.servers import ECHO_MARKER, _BackgroundServer, _QuietHandler

REALM = configs.REALM  # what harness.expect checks challenges against
FRONT_PROXY = "127.0.0.2"

TOOL_PATTERN = "^[a-z0-9][a-z0-9-]{0,31}$"
ALL = ["user", "email", "uid", "groups", "scopes", "client_ip", "tool"]

BUILDS_DOC = {  # served over HTTP by a test server
    "openapi": "3.0.3",
    "info": {"title": "Builds API", "version": "0.1"},
    "servers": [{"url": "http://builds-api.internal:8000"}],
    "tags": [{"name": "builds"}],
    "paths": {"/v1/tool/{tool}/builds": {"get": {
        "operationId": "list", "tags": ["builds"],
        "parameters": [{"name": "tool", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {"200": {"description": "builds", "content": {"application/json": {
            "schema": {"type": "array", "items": {"$ref": "#/components/schemas/Build"}}}}},
            "default": {"$ref": "#/components/responses/Error"}}}}},
    "components": {
        "schemas": {"Build": {"type": "object", "properties": {"id": {"type": "string", "nullable": True}}},
                    "Error": {"type": "object", "properties": {"message": {"type": "string"}}}},
        "responses": {"Error": {"description": "error", "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Error"}}}}}},
}

JOBS_YAML = """\
openapi: 3.1.0
info: {title: Jobs API, version: "2.0"}
tags: [{name: jobs}]
paths:
  /v1/tool/{tool}/jobs:
    parameters:
      - {name: tool, in: path, required: true, schema: {type: string}}
    get:
      operationId: list
      tags: [jobs]
      responses:
        200:
          description: jobs
          content:
            application/json:
              schema: {type: array, items: {$ref: '#/components/schemas/Error'}}
components:
  schemas:
    Error: {type: object, properties: {detail: {type: string}}}
"""


def gatehouse_config(builds_url: str) -> dict:
    return {
        "server": {"drain_timeout": "1s", "realm": REALM},
        "network": {"trusted_proxies": ["127.0.0.0/8"]},
        "certificates": {
            "leeway": "5s",
            "xfcc": {"trusted_proxies": [f"{FRONT_PROXY}/32"], "require_cert": False},
            "identity": {"user": "CN", "groups": ["O", "OU"],
                         "tool": {"from": "CN", "pattern": TOOL_PATTERN}},
            "scopes": [{"subject": r"O=Acme\, Inc.", "scopes": ["acme:read"]}],
        },
        "tools": {"superusers": ["components-api"], "act_as_header": "X-Toolforge-Act-As"},
        "identity_headers": {"extra": [{"name": "X-Toolforge-User", "from": "user"},
                                       {"name": "X-Toolforge-Tool", "from": "tool"}]},
        "policy": {"default": "deny", "rules": [
            {"name": "public", "match": {"path": {"prefix": "/public/"}}, "auth": "anonymous"},
            {"name": "jobs", "match": {"path": {"template": "/jobs/v1/tool/{tool}/**"}},
             "tool_from_path": "tool", "credentials": ["certificate"], "headers": ALL},
            {"name": "acme", "match": {"path": {"prefix": "/acme/"}}, "scopes": ["acme:read"],
             "credentials": ["certificate"], "headers": ALL},
            {"name": "whoami", "match": {"path": {"prefix": "/whoami/"}},
             "credentials": ["certificate"], "headers": ALL},
        ]},
        "openapi": {"title": "Toolforge API", "version": "1.0.0",
                    "servers": ["https://api.svc.toolforge.example"],
                    "backends": [{"name": "builds", "mount": "/builds", "url": builds_url},
                                 {"name": "jobs", "mount": "/jobs", "file": "specs/jobs.yaml"}]},
        "log": {"level": "info,gatehouse=debug"},
    }


class _DocHandler(_QuietHandler):
    def do_GET(self) -> None:  # noqa: N802
        self._send_json(200, BUILDS_DOC)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


pytestmark = pytest.mark.both_filters


@pytest.fixture(scope="module")
def stack(tmp_path_factory, pki, echo, filter_mode):
    """Gatehouse on the Toolforge-style config, the merged OpenAPI document
    (`gatehouse openapi merge`), and Envoy on envoy/envoy-mtls.yaml; with
    `filter_mode` in_process, gatehouse's module in Envoy instead of
    ext_authz, reading the same configuration (harness.mtls.in_process).
    `decisions()`: the log text gatehouse's decision lines go to."""
    work = tmp_path_factory.mktemp(f"certs-{filter_mode}")
    docs = _BackgroundServer(_DocHandler, work / "docs.log")
    gatehouse = GatehouseInstance(work / "gatehouse", gatehouse_config(docs.base_url + "/openapi.json"),
                                  files={"specs/jobs.yaml": JOBS_YAML.encode()}, name="gatehouse-certs")
    envoy = None
    try:
        gatehouse.wait_serving()
        openapi = work / "openapi.json"
        merged = subprocess.run(
            [str(require_binary()), "openapi", "merge", "--config", str(gatehouse.config_path),
             "--out", str(openapi)],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert merged.returncode == 0, merged.stdout + merged.stderr
        inproc = filter_mode == "in_process"
        envoy = MtlsEnvoy(work / "envoy", pki, openapi, gatehouse.port, echo.port,
                          module_config=gatehouse.config_path if inproc else None)
        if inproc:
            add_gatehouse_log(envoy.process.log_path)
        decisions = envoy.process.log_text if inproc else gatehouse.log
        yield {"gatehouse": gatehouse, "envoy": envoy, "openapi": openapi, "mode": filter_mode,
               "decisions": decisions}
    finally:
        if envoy is not None:
            envoy.stop()
        gatehouse.stop()
        docs.close()


def tls(stack, pki: Pki, cert: ClientCert | None) -> Client:
    return Client(stack["envoy"].mtls_port, ssl_context=pki.context(cert))


def loopback_alias_available(address: str) -> bool:
    """Whether this machine can connect from `address` (Linux routes all of
    127.0.0.0/8 to the loopback interface; other systems may not)."""
    try:
        with socket.socket() as s:
            s.bind((address, 0))
            return s.getsockname()[0] == address
    except OSError:
        return False


def behind_proxy(stack, source: str = "127.0.0.1") -> Client:
    # A skip guard, not a test: the tests from the front proxy need 127.0.0.2.
    if not loopback_alias_available(source):
        pytest.skip(f"cannot connect from {source} on this machine")
    return Client(stack["envoy"].proxy_port, source_address=source)


def toolforge(pki: Pki, cn: str) -> ClientCert:
    return pki.client(("O", "toolforge"), ("CN", cn))


def seen(r) -> dict:
    return expect.allowed(r)["headers"]


# --- tool ownership ----------------------------------------------------------


def test_tool_certificate_on_its_own_path(stack, pki):
    r = tls(stack, pki, toolforge(pki, "alpha")).get("/jobs/v1/tool/alpha/jobs")
    h = seen(r)
    assert h["x-toolforge-user"] == "alpha"
    assert h["x-toolforge-tool"] == "alpha"
    assert h["x-auth-request-user"] == "alpha"
    assert h["x-auth-request-groups"] == "toolforge"


def test_tool_certificate_on_another_tools_path(stack, pki):
    r = tls(stack, pki, toolforge(pki, "alpha")).get("/jobs/v1/tool/beta/jobs")
    expect.denial(r, 403, "access_denied")


def test_the_decision_log_names_the_credential_that_decided(stack, pki):
    # A certificate-only rule ignores a bearer token the request also
    # carries: the denial's log line names the certificate, not the token.
    r = tls(stack, pki, toolforge(pki, "alpha")).get(
        "/jobs/v1/tool/beta/decided-by", headers={"Authorization": "Bearer not-the-credential"})
    expect.denial(r, 403, "access_denied")
    line = wait_until("the decision line", lambda: next(
        (l for l in stack["decisions"]().splitlines() if "/jobs/v1/tool/beta/decided-by" in l), None), 5)
    assert 'credential="bearer"' not in line and 'credential="peer' in line, line


def test_superuser_acts_for_any_tool(stack, pki):
    su = tls(stack, pki, toolforge(pki, "components-api"))
    for tool in ("alpha", "beta"):
        h = seen(su.get(f"/jobs/v1/tool/{tool}/jobs"))
        assert (h["x-toolforge-user"], h["x-toolforge-tool"]) == ("components-api", tool)
    h = seen(su.get("/whoami/x", headers={"X-Toolforge-Act-As": "gamma"}))
    assert h["x-toolforge-tool"] == "gamma"
    assert "x-toolforge-act-as" not in h
    expect.denial(su.get("/jobs/v1/tool/beta/x", headers={"X-Toolforge-Act-As": "gamma"}),
                  403, "access_denied")


def test_act_as_values_and_path_tools_must_be_tool_names(stack, pki):
    """A superuser's act-as value and a tool named by the path match
    `tools.name_pattern` (default: Toolforge's rule), and only one act-as
    value is taken: anything else is a 400 naming it, never a header sent
    upstream."""
    su = tls(stack, pki, toolforge(pki, "components-api"))
    for bad in ("../etc", "Gamma", "a/b"):
        body = expect.denial(su.get("/whoami/x", headers={"X-Toolforge-Act-As": bad}),
                             400, "invalid_request")
        assert "not a tool name" in body["error_description"], body
    two = su.request("GET", "/whoami/x", headers=[("X-Toolforge-Act-As", "tool-b"),
                                                  ("X-Toolforge-Act-As", "tool-c")])
    assert "exactly one" in expect.denial(two, 400, "invalid_request")["error_description"]
    # (Envoy itself refuses `..%2F` in a path: path_normalization_failed.)
    body = expect.denial(su.get("/jobs/v1/tool/Beta.x/jobs"), 400, "invalid_request")
    assert "the path names" in body["error_description"], body


def test_no_certificate_where_one_is_needed(stack, pki):
    # The TLS listener refuses the handshake itself (Envoy:
    # require_client_certificate); with TLS 1.3 the refusal arrives after
    # the client's handshake, on the first read.
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        tls(stack, pki, None).get("/whoami/x")
    # Behind the front proxy without a forwarded certificate: gatehouse's
    # 401, with no Bearer challenge on these certificate-only rules.
    expect.no_certificate(behind_proxy(stack, FRONT_PROXY).get("/whoami/x"))
    expect.no_certificate(behind_proxy(stack).get("/jobs/v1/tool/alpha/jobs"))


# --- DNs -----------------------------------------------------------------------


def test_dn_with_escaped_commas(stack, pki):
    # From the certificate's ASN.1 subject: the configured pattern
    # `O=Acme\, Inc.` (parsed by gatehouse's RFC 4514 parser) grants the scope.
    cert = pki.client(("O", "Acme, Inc."), ("CN", "Doe, John"))
    h = seen(tls(stack, pki, cert).get("/acme/x"))
    assert h["x-toolforge-user"] == "Doe, John"
    # One group: its comma percent-encoded, so the list stays unambiguous.
    assert h["x-auth-request-groups"] == "Acme%2C Inc."
    assert h["x-auth-request-token-scopes"] == "acme:read"
    assert "x-toolforge-tool" not in h  # "Doe, John" is no tool name
    # From a front proxy's XFCC Subject (an RFC 4514 string, as Envoy and
    # nginx write it): the same identity.
    xfcc = r'By=spiffe://front;Subject="CN=Doe\, John,O=Acme\, Inc."'
    h = seen(behind_proxy(stack, FRONT_PROXY).get("/acme/x", headers={"X-Forwarded-Client-Cert": xfcc}))
    assert h["x-toolforge-user"] == "Doe, John"
    assert h["x-auth-request-token-scopes"] == "acme:read"


def test_multi_valued_rdn(stack, pki):
    cert = pki.client(("O", "toolforge"), [("CN", "alpha"), ("UID", "4242")])
    h = seen(tls(stack, pki, cert).get("/jobs/v1/tool/alpha/x"))
    assert h["x-toolforge-tool"] == "alpha"


# --- spoofing --------------------------------------------------------------------


def test_spoofed_identity_headers_have_no_effect(stack, pki):
    beta = toolforge(pki, "beta")
    spoof = {"X-Toolforge-User": "beta", "X-Toolforge-Tool": "beta",
             "X-Forwarded-Client-Cert": f'Cert="{beta.url_encoded()}"'}
    r = tls(stack, pki, toolforge(pki, "alpha")).get("/whoami/x", headers=spoof)
    h = expect.allowed(r)["header_list"]
    toolforge_headers = [(k, v) for k, v in h if k.startswith("x-toolforge-")]
    assert sorted(toolforge_headers) == [("x-toolforge-tool", "alpha"), ("x-toolforge-user", "alpha")]
    # Envoy's mTLS listener sanitizes XFCC itself (forward_client_cert_details:
    # SANITIZE); in process it writes its own (SANITIZE_SET, the peer's
    # certificate, which the module needs), never the client's.
    xfcc = [v for k, v in h if k == "x-forwarded-client-cert"]
    if stack["mode"] == "in_process":
        assert len(xfcc) == 1 and "Cert=" in xfcc[0] and beta.url_encoded() not in xfcc[0], xfcc
    else:
        assert xfcc == []
    expect.denial(tls(stack, pki, toolforge(pki, "alpha")).get("/jobs/v1/tool/beta/x", headers=spoof),
                  403, "access_denied")


def test_spoofed_xfcc_from_an_untrusted_peer_is_ignored_and_removed(stack, pki):
    beta = toolforge(pki, "beta")
    spoof = {"X-Forwarded-Client-Cert": f'Cert="{beta.url_encoded()}"', "X-Toolforge-User": "beta"}
    # Envoy passes XFCC through on this listener; gatehouse ignores it
    # from 127.0.0.1 (not a trusted proxy)...
    expect.no_certificate(behind_proxy(stack).get("/whoami/x", headers=spoof))
    # ... and removes it (and the forged identity header) upstream, even
    # where no credential is needed.
    h = seen(behind_proxy(stack).get("/public/x", headers=spoof))
    assert "x-forwarded-client-cert" not in h and "x-toolforge-user" not in h
    # The same header from the front proxy is believed, and kept.
    h = seen(behind_proxy(stack, FRONT_PROXY).get("/whoami/x", headers=spoof))
    assert h["x-toolforge-user"] == "beta"
    assert h["x-forwarded-client-cert"].startswith("Cert=")


def test_sanitize_set_xfcc_reaches_the_upstream(stack, pki, tmp_path, echo):
    """`forward_client_cert_details: SANITIZE_SET`: Envoy drops the client's
    XFCC and writes its own element about the peer certificate. Envoy is
    not a trusted XFCC proxy (it is not the request's source), yet that
    header restates the peer certificate only, so gatehouse keeps it for
    the upstream; a forged one never gets through. (In process this is
    the mtls listener's own setting: every test of the module covers it.)"""
    if stack["mode"] == "in_process":
        pytest.skip("the in-process stack runs SANITIZE_SET on every test")
    xfcc = {"forward_client_cert_details": "SANITIZE_SET",
            "set_current_client_cert_details": {"subject": True, "cert": True, "uri": True,
                                                "dns": True}}
    envoy = MtlsEnvoy(tmp_path / "envoy", pki, stack["openapi"], stack["gatehouse"].port,
                      echo.port, name="envoy-sanitize-set", mtls_xfcc=xfcc)
    try:
        alpha, beta = toolforge(pki, "alpha"), toolforge(pki, "beta")
        spoof = {"X-Forwarded-Client-Cert": f'Cert="{beta.url_encoded()}";Subject="CN=beta"'}
        client = Client(envoy.mtls_port, ssl_context=pki.context(alpha))
        for path in ("/whoami/x", "/public/x"):
            h = seen(client.get(path, headers=spoof))
            der = x509.load_pem_x509_certificate(alpha.pem.encode()).public_bytes(
                serialization.Encoding.DER)
            sent = h["x-forwarded-client-cert"]
            assert f"Hash={hashlib.sha256(der).hexdigest()}" in sent, sent
            assert "CN=alpha" in sent and "beta" not in sent, sent
        assert seen(client.get("/whoami/x"))["x-toolforge-user"] == "alpha"
    finally:
        envoy.stop()


# --- validity ----------------------------------------------------------------------


def test_expired_certificates_are_refused(stack, pki):
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30)
    expired = pki.client(("O", "toolforge"), ("CN", "alpha"),
                         not_before=past, not_after=past + dt.timedelta(days=1))
    # Layer 1, Envoy: the TLS handshake fails (certificate expired); the
    # request never reaches gatehouse.
    before = stack["envoy"].stats("listener.").copy()
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        tls(stack, pki, expired).get("/jobs/v1/tool/alpha/jobs")
    after = stack["envoy"].stats("listener.")
    failed = [k for k in after if k.endswith("ssl.fail_verify_error") or k.endswith("ssl.connection_error")]
    assert any(after[k] > before.get(k, 0) for k in failed), after
    # Layer 2, gatehouse: the same certificate forwarded by the trusted
    # front proxy (which let it through) is refused: 401 invalid_certificate.
    r = behind_proxy(stack, FRONT_PROXY).get(
        "/jobs/v1/tool/alpha/jobs", headers={"X-Forwarded-Client-Cert": f'Cert="{expired.url_encoded()}"'})
    body = expect.denial(r, 401, "invalid_certificate")
    assert "expired" in body["error_description"]


def test_a_valid_certificate_through_the_proxy(stack, pki):
    alpha = toolforge(pki, "alpha")
    r = behind_proxy(stack, FRONT_PROXY).get(
        "/jobs/v1/tool/alpha/jobs", headers={"X-Forwarded-Client-Cert": f'Hash=x;Cert="{alpha.url_encoded()}"'})
    assert seen(r)["x-toolforge-tool"] == "alpha"


# --- the aggregated OpenAPI document -------------------------------------------------


def test_merged_openapi_document_is_served_and_valid(stack, pki):
    r = tls(stack, pki, toolforge(pki, "alpha")).get("/openapi.json")
    assert r.status == 200 and r.header(ECHO_MARKER) is None, r.describe()
    assert r.header("content-type") == "application/json"
    doc = r.json()
    assert doc == json.loads(Path(stack["openapi"]).read_text())
    validate_openapi(doc)  # openapi-spec-validator: raises if invalid
    assert set(doc["paths"]) == {"/builds/v1/tool/{tool}/builds", "/jobs/v1/tool/{tool}/jobs"}
    assert doc["paths"]["/jobs/v1/tool/{tool}/jobs"]["get"]["operationId"] == "jobs_list"
    schemas = doc["components"]["schemas"]
    assert set(schemas) == {"Build", "Error", "jobs_Error"}
    items = doc["paths"]["/jobs/v1/tool/{tool}/jobs"]["get"]["responses"]["200"]["content"][
        "application/json"]["schema"]["items"]
    assert items == {"$ref": "#/components/schemas/jobs_Error"}
    assert doc["components"]["securitySchemes"]["mutualTLS"]["type"] == "mutualTLS"
    assert [t["name"] for t in doc["tags"]] == ["builds", "jobs"]
    # No check on that route: served behind the proxy without any credential.
    assert behind_proxy(stack).get("/openapi.json").status == 200
