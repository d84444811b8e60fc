"""Client-certificate end-to-end pieces: a test PKI made with the Python
`cryptography` library (independent of gatehouse's Rust code), TLS client
contexts, and Envoy running the shipped `envoy/envoy-mtls.yaml` with only
its ports and file paths rewritten."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from envoy_bin import envoy_binary
from envoy_config import add_module
from harness import secret_registry
from harness.procs import ManagedProcess, free_port, wait_until

REPO = Path(__file__).resolve().parents[3]
MTLS_EXAMPLE = REPO / "envoy" / "envoy-mtls.yaml"
START_TIMEOUT = 20.0

# Attribute names as tests write them, to cryptography OIDs.
OIDS = {
    "CN": NameOID.COMMON_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "C": NameOID.COUNTRY_NAME,
    "UID": NameOID.USER_ID,
}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    secret_registry.record_pem(pem, f"TLS private key {path.name}")
    path.write_bytes(pem)


@dataclass
class ClientCert:
    cert_path: Path
    key_path: Path
    pem: str

    def url_encoded(self) -> str:
        """As Envoy forwards it (XFCC `Cert=`, `source.certificate`)."""
        return urllib.parse.quote(self.pem, safe="")


class Pki:
    """A CA for client certificates, a server certificate for Envoy
    (localhost / 127.0.0.1), both written under `workdir`."""

    def __init__(self, workdir: Path):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._count = 0
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gatehouse e2e CA")])
        self.ca_cert = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - dt.timedelta(days=1))
            .not_valid_after(_now() + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(self.ca_key, hashes.SHA256())
        )
        self.ca_path = self.dir / "client-ca.pem"
        self.ca_path.write_bytes(self.ca_cert.public_bytes(serialization.Encoding.PEM))
        server = self._issue(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]),
            sans=[x509.DNSName("localhost"),
                  x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
            usage=ExtendedKeyUsageOID.SERVER_AUTH, label="server")
        self.server_cert, self.server_key = server.cert_path, server.key_path

    def _issue(self, name: x509.Name, sans: Sequence[x509.GeneralName] = (),
               usage=ExtendedKeyUsageOID.CLIENT_AUTH, not_before: dt.datetime | None = None,
               not_after: dt.datetime | None = None, label: str | None = None) -> ClientCert:
        self._count += 1
        label = label or f"client-{self._count}"
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or _now() - dt.timedelta(hours=1))
            .not_valid_after(not_after or _now() + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
        cert = builder.sign(self.ca_key, hashes.SHA256())
        pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        cert_path, key_path = self.dir / f"{label}.pem", self.dir / f"{label}-key.pem"
        cert_path.write_text(pem)
        _write_key(key_path, key)
        return ClientCert(cert_path, key_path, pem)

    def client(self, *rdns: Sequence[tuple[str, str]] | tuple[str, str], uris: Sequence[str] = (),
               not_before: dt.datetime | None = None, not_after: dt.datetime | None = None,
               ) -> ClientCert:
        """A client certificate. Each argument is one RDN, most significant
        first: `("O", "toolforge")`, or a list of pairs for a multi-valued
        RDN."""
        rdn_list = []
        for rdn in rdns:
            pairs = [rdn] if isinstance(rdn, tuple) else list(rdn)
            rdn_list.append(x509.RelativeDistinguishedName(
                [x509.NameAttribute(OIDS[k], v) for k, v in pairs]))
        return self._issue(x509.Name(rdn_list),
                           sans=[x509.UniformResourceIdentifier(u) for u in uris],
                           not_before=not_before, not_after=not_after)

    def context(self, cert: ClientCert | None) -> ssl.SSLContext:
        """A TLS client context trusting the server certificate, presenting
        `cert` (or no certificate)."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_path))
        if cert is not None:
            ctx.load_cert_chain(str(cert.cert_path), str(cert.key_path))
        return ctx


@dataclass(frozen=True)
class MtlsPorts:
    mtls: int
    behind_proxy: int
    admin: int
    gatehouse: int
    upstream: int


def _socket_address(node: dict) -> dict:
    return node["address"]["socket_address"]


# What the in-process module needs on an mTLS listener: the ABI gives a
# module the peer certificate's digest but not the certificate, so Envoy
# restates it in its own X-Forwarded-Client-Cert (README "In-process mode").
INPROCESS_XFCC = {"forward_client_cert_details": "SANITIZE_SET",
                  "set_current_client_cert_details": {"cert": True}}


def in_process(config: dict, gatehouse_config: Path) -> dict:
    """The example with gatehouse in process: each listener's ext_authz
    filter replaced by the module (reading `gatehouse_config`), per-route
    settings kept, and the mtls listener's XFCC set as the module needs."""
    add_module(config, gatehouse_config, replace=True)
    for listener in config["static_resources"]["listeners"]:
        if listener["name"] == "mtls":
            listener["filter_chains"][0]["filters"][0]["typed_config"].update(INPROCESS_XFCC)
    return config


def write_mtls_config(dest: Path, ports: MtlsPorts, pki: Pki, openapi: Path,
                      mtls_xfcc: dict | None = None, module_config: Path | None = None) -> Path:
    """The shipped example with addresses, ports and file paths replaced;
    `mtls_xfcc` replaces the mtls listener's XFCC settings (e.g.
    `{"forward_client_cert_details": "SANITIZE_SET", ...}`);
    `module_config`: gatehouse in process (`in_process`), reading it."""
    config = yaml.safe_load(MTLS_EXAMPLE.read_text())
    if module_config is not None:
        in_process(config, module_config)
    _socket_address(config["admin"]).update(address="127.0.0.1", port_value=ports.admin)
    static = config["static_resources"]
    listeners = {lst["name"]: lst for lst in static["listeners"]}
    _socket_address(listeners["mtls"]).update(address="127.0.0.1", port_value=ports.mtls)
    if mtls_xfcc:
        hcm = listeners["mtls"]["filter_chains"][0]["filters"][0]["typed_config"]
        hcm.update(mtls_xfcc)
    _socket_address(listeners["behind_proxy"]).update(address="127.0.0.1",
                                                      port_value=ports.behind_proxy)
    for cluster in static["clusters"]:
        port = {"gatehouse": ports.gatehouse, "upstream": ports.upstream}[cluster["name"]]
        for group in cluster["load_assignment"]["endpoints"]:
            for lb in group["lb_endpoints"]:
                _socket_address(lb["endpoint"]).update(address="127.0.0.1", port_value=port)
    files = {
        "/etc/gatehouse/tls/server.pem": pki.server_cert,
        "/etc/gatehouse/tls/server-key.pem": pki.server_key,
        "/etc/gatehouse/tls/client-ca.pem": pki.ca_path,
        "/etc/gatehouse/openapi.json": openapi,
    }
    text = yaml.safe_dump(config, sort_keys=False)
    for original, replacement in files.items():
        assert original in text, f"{original} no longer in {MTLS_EXAMPLE}"
        text = text.replace(original, str(replacement))
    dest = Path(dest)
    dest.write_text(f"# Generated from {MTLS_EXAMPLE}: only addresses, ports and paths differ.\n"
                    + text)
    return dest


class MtlsEnvoy:
    """Envoy on envoy/envoy-mtls.yaml: `mtls_port` (TLS, client
    certificates required) and `proxy_port` (plain HTTP behind a front
    proxy)."""

    def __init__(self, workdir: Path, pki: Pki, openapi: Path, gatehouse_port: int,
                 upstream_port: int, name: str = "envoy-mtls", mtls_xfcc: dict | None = None,
                 module_config: Path | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ports = MtlsPorts(mtls=free_port(), behind_proxy=free_port(), admin=free_port(),
                               gatehouse=gatehouse_port, upstream=upstream_port)
        self.config_path = write_mtls_config(self.workdir / f"{name}.yaml", self.ports, pki,
                                             openapi, mtls_xfcc, module_config)
        env, extra = None, []
        if module_config is not None:
            from harness.module import module_dir
            env = {"ENVOY_DYNAMIC_MODULES_SEARCH_PATH": str(module_dir())}
            extra = ["--component-log-level", "dynamic_modules:info"]
        self.mtls_port, self.proxy_port = self.ports.mtls, self.ports.behind_proxy
        self.admin_url = f"http://127.0.0.1:{self.ports.admin}"
        self.process = ManagedProcess(
            name,
            [envoy_binary(), "-c", self.config_path, "--concurrency", "1",
             "--disable-hot-restart", "--log-level", "warning", "--drain-time-s", "1",
             "--file-flush-interval-msec", "50", *extra],
            self.workdir / f"{name}.log",
            env=env,
        )
        self._admin = requests.Session()
        self._admin.trust_env = False
        try:
            wait_until(f"{name} ready", self._ready, START_TIMEOUT, interval=0.05,
                       on_timeout=self.process.log_tail)
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        self.process.check_alive()
        r = self._admin.get(self.admin_url + "/ready", timeout=1)
        if r.status_code != 200 or r.text.strip() != "LIVE":
            return False
        for port in (self.mtls_port, self.proxy_port):
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
        return True

    def stats(self, prefix: str) -> dict[str, int]:
        r = self._admin.get(self.admin_url + "/stats", params={"filter": f"^{prefix}"}, timeout=2)
        out = {}
        for line in r.text.splitlines():
            name, _, value = line.partition(": ")
            if value.strip().lstrip("-").isdigit():
                out[name] = int(value)
        return out

    def stop(self) -> int | None:
        self._admin.close()
        return self.process.stop()
