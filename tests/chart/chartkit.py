"""Rendering the Helm chart in charts/gatehouse for the tests, with Helm's
own Go engine (PyPI `helm-python-sdk`: render, lint and values.schema.json
validation, no `helm` binary and no cluster), and small helpers to find
objects in the result.

`helm_python` loads a Go runtime into the test process; it is imported on
first use, so that a run of tests/e2e and tests/chart together starts it
only when the chart tests begin."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "charts" / "gatehouse"
CI_VALUES = CHART_DIR / "ci"

# The release most tests render: the name and namespace that
# envoy/istio/meshconfig.yaml assumes (Service gatehouse.gatehouse.svc).
RELEASE = "gatehouse"
NAMESPACE = "gatehouse"

# Kubernetes versions every rendered manifest is validated against: the
# chart's minimum (Chart.yaml kubeVersion) and the newest schema set the
# pinned kubernetes-validate ships.
KUBE_VERSIONS = ("1.27.0", "1.37.0")

# Custom resources: no Kubernetes schema; their shape is checked by hand.
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}

SECRETS_DIR = "/var/run/secrets/gatehouse"


def ci_values(name: str) -> dict[str, Any]:
    """A value set from charts/gatehouse/ci/<name>-values.yaml."""
    return yaml.safe_load((CI_VALUES / f"{name}-values.yaml").read_text()) or {}


def value_sets() -> dict[str, dict[str, Any]]:
    """The value sets every structural test runs over."""
    return {
        "defaults": {},
        "all-enabled": ci_values("all-enabled"),
        "istio": ci_values("istio"),
        # The README's Kubernetes walkthrough.
        "quickstart": ci_values("quickstart"),
        # The other side of most switches: one replica, no PDB, no headless
        # Service, an existing service account, IPv6, an image digest,
        # no startup probe.
        "minimal": {
            "replicaCount": 1,
            "podDisruptionBudget": {"enabled": False},
            "headlessService": {"enabled": False},
            "serviceAccount": {"create": False, "name": "shared"},
            "listenAddress": "::",
            "image": {"digest": "sha256:" + "ab" * 32},
            "probes": {"startup": {"enabled": False}},
        },
    }


@dataclass
class Rendered:
    """One `helm template`: the manifests (every YAML document, with the
    template it came from) and NOTES.txt."""

    docs: list[tuple[str, dict[str, Any]]]
    notes: str

    def objects(self) -> list[dict[str, Any]]:
        return [doc for _, doc in self.docs]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [doc for doc in self.objects() if doc["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [doc for doc in self.of_kind(kind) if doc["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind}/{name}: found {len(found)} in {self.names()}"
        return found[0]

    def find(self, kind: str, name: str) -> dict[str, Any] | None:
        found = [doc for doc in self.of_kind(kind) if doc["metadata"]["name"] == name]
        return found[0] if found else None

    def names(self) -> list[str]:
        return [f"{doc['kind']}/{doc['metadata']['name']}" for doc in self.objects()]


class Chart:
    """The chart, loaded once. `render` raises `helm.HelmError` (e.g.
    `HelmValuesError` for values the schema refuses, `HelmRenderError` for a
    template's `fail`)."""

    def __init__(self, path: Path = CHART_DIR):
        import helm_python as helm

        self.path = path
        self._chart = helm.Chart.load(str(path))

    def close(self) -> None:
        self._chart.close()

    @property
    def metadata(self) -> dict[str, Any]:
        return self._chart.metadata

    def render(self, values: dict[str, Any] | None = None, name: str = RELEASE,
               namespace: str = NAMESPACE) -> Rendered:
        manifests = self._chart.render(copy.deepcopy(values) if values else None,
                                       name=name, namespace=namespace, is_install=True)
        docs: list[tuple[str, dict[str, Any]]] = []
        notes = ""
        for template, text in sorted(manifests.items()):
            if template.endswith("NOTES.txt"):
                notes = text
                continue
            for doc in yaml.safe_load_all(text):
                if doc:
                    docs.append((template, doc))
        return Rendered(docs, notes)

    def validate_values(self, values: dict[str, Any]) -> None:
        self._chart.validate_schema(copy.deepcopy(values))


def lint(values: dict[str, Any] | None = None, strict: bool = False,
         kube_version: str | None = None) -> dict[str, Any]:
    """`helm lint [--strict]`: {"messages": [{"severity", "path", "error"}], "errors": [...]}."""
    import helm_python as helm

    return helm.lint(str(CHART_DIR), copy.deepcopy(values) if values else None, strict=strict,
                     namespace=NAMESPACE, kube_version=f"v{kube_version}" if kube_version else None)


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep merge like Helm's values coalescing (maps merge, the rest is replaced)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def containers(pod_owner: dict[str, Any]) -> list[dict[str, Any]]:
    return pod_owner["spec"]["template"]["spec"]["containers"]


def container(pod_owner: dict[str, Any], name: str) -> dict[str, Any]:
    found = [c for c in containers(pod_owner) if c["name"] == name]
    assert len(found) == 1, f"container {name}: {[c['name'] for c in containers(pod_owner)]}"
    return found[0]


def port_number(ctr: dict[str, Any], name: str) -> int:
    ports = {p["name"]: p["containerPort"] for p in ctr.get("ports", [])}
    assert name in ports, f"no container port named {name}: {ports}"
    return ports[name]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def pod_templates(rendered: Rendered) -> Iterable[tuple[dict[str, Any], dict[str, str]]]:
    for workload in rendered.of_kind("Deployment"):
        yield workload, workload["spec"]["template"]["metadata"]["labels"]
