"""The chart rendered with each value set (defaults, everything enabled,
Istio-style, minimal): every manifest is valid Kubernetes, and the
properties operators rely on hold."""

from __future__ import annotations

import kubernetes_validate
import pytest

from chartkit import (CRD_KINDS, KUBE_VERSIONS, NAMESPACE, RELEASE, Rendered, container,
                      port_number, pod_templates, selects)

STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schemas(rendered: Rendered,
                                                                   kube_version: str):
    validated = crds = 0
    for template, doc in rendered.docs:
        if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
            crds += 1  # no Kubernetes schema: test_servicemonitor_shape checks it
            continue
        try:
            kubernetes_validate.validate(doc, kube_version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            pytest.fail(f"{template}: {doc['kind']}/{doc['metadata']['name']} at {path}: {e.message}")
        validated += 1
    assert validated >= 3 and validated + crds == len(rendered.docs), rendered.names()


def test_the_validator_refuses_a_broken_manifest(chart):
    """The schema check is not vacuous: a gRPC probe port must be a number
    (unlike httpGet/tcpSocket, `grpc` takes no port names), and an unknown
    field is refused in strict mode."""
    deploy = chart.render().get("Deployment", RELEASE)
    ctr = container(deploy, "gatehouse")
    ctr["readinessProbe"]["grpc"]["port"] = "grpc"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deploy, KUBE_VERSIONS[-1], strict=True)
    ctr["readinessProbe"]["grpc"]["port"] = 9191
    kubernetes_validate.validate(deploy, KUBE_VERSIONS[-1], strict=True)
    ctr["readinessProbe"]["grpcc"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deploy, KUBE_VERSIONS[-1], strict=True)


def test_every_object_carries_the_standard_labels(rendered: Rendered):
    for doc in rendered.objects():
        labels = doc["metadata"].get("labels", {})
        missing = [k for k in STANDARD_LABELS if k not in labels]
        assert not missing, f"{doc['kind']}/{doc['metadata']['name']} lacks {missing}"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert doc["metadata"]["namespace"] == NAMESPACE
    for workload, pod_labels in pod_templates(rendered):
        missing = [k for k in STANDARD_LABELS if k not in pod_labels]
        assert not missing, f"pods of {workload['metadata']['name']} lack {missing}"


def test_workload_selectors_are_disjoint(rendered: Rendered):
    """Each Deployment's selector matches its own pods and no other
    Deployment's, so gatehouse, Envoy and Redis never share a Service, PDB
    or NetworkPolicy by accident."""
    workloads = list(pod_templates(rendered))
    for workload, labels in workloads:
        selector = workload["spec"]["selector"]["matchLabels"]
        assert selects(selector, labels)
        for other, other_labels in workloads:
            if other is not workload:
                assert not selects(selector, other_labels), (
                    f"{workload['metadata']['name']} selects {other['metadata']['name']}'s pods")


def test_every_service_selects_exactly_one_workload_with_its_target_ports(rendered: Rendered):
    workloads = list(pod_templates(rendered))
    for svc in rendered.of_kind("Service"):
        matched = [w for w, labels in workloads if selects(svc["spec"]["selector"], labels)]
        assert len(matched) == 1, f"Service {svc['metadata']['name']} selects {len(matched)}"
        port_names = {p["name"] for c in matched[0]["spec"]["template"]["spec"]["containers"]
                      for p in c.get("ports", [])}
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in port_names, (svc["metadata"]["name"], port)


def test_gatehouse_pod_is_locked_down(rendered: Rendered):
    deploy = rendered.get("Deployment", RELEASE)
    pod = deploy["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532  # the image's USER
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    ctr = container(deploy, "gatehouse")
    sc = ctr["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["privileged"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert ctr["resources"]["requests"]["cpu"] and ctr["resources"]["requests"]["memory"]
    assert ctr["resources"]["limits"]["memory"]
    # Every volume is mounted read-only: gatehouse writes nothing.
    assert all(m.get("readOnly") for m in ctr["volumeMounts"]), ctr["volumeMounts"]


def test_probes_are_native_grpc_health_checks_on_the_grpc_port(rendered: Rendered):
    ctr = container(rendered.get("Deployment", RELEASE), "gatehouse")
    grpc_port = port_number(ctr, "grpc")
    kinds = ["livenessProbe", "readinessProbe"] + (["startupProbe"] if "startupProbe" in ctr else [])
    for kind in kinds:
        probe = ctr[kind]
        assert set(probe) & {"grpc", "httpGet", "tcpSocket", "exec"} == {"grpc"}, (kind, probe)
        assert probe["grpc"]["port"] == grpc_port, (kind, probe)
        assert probe["grpc"]["service"] in ("", "envoy.service.auth.v3.Authorization")


def test_startup_probe_guards_the_first_key_fetch_by_default(chart):
    ctr = container(chart.render().get("Deployment", RELEASE), "gatehouse")
    probe = ctr["startupProbe"]
    # At least a minute for the first JWKS fetches before liveness counts.
    assert probe["periodSeconds"] * probe["failureThreshold"] >= 60


def test_service_ports_declare_their_protocol(rendered: Rendered):
    svc = rendered.get("Service", RELEASE)
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    assert ports["grpc"]["appProtocol"] == "grpc"
    assert ports["grpc"]["port"] == 9191
    assert ports["http"]["appProtocol"] == "http"
    assert ports["http"]["port"] == 8080


def test_config_is_mounted_as_a_directory_and_checksummed(rendered: Rendered):
    deploy = rendered.get("Deployment", RELEASE)
    ctr = container(deploy, "gatehouse")
    assert ctr["args"] == ["serve", "--config", "/etc/gatehouse/config.yaml"]
    mount = next(m for m in ctr["volumeMounts"] if m["name"] == "config")
    # No subPath: kubelet then updates the file in place when the ConfigMap changes.
    assert mount["mountPath"] == "/etc/gatehouse" and "subPath" not in mount
    volume = next(v for v in deploy["spec"]["template"]["spec"]["volumes"] if v["name"] == "config")
    assert volume["configMap"]["name"] == f"{RELEASE}-config"
    assert "config.yaml" in rendered.get("ConfigMap", f"{RELEASE}-config")["data"]
    checksum = deploy["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    assert len(checksum) == 64 and int(checksum, 16) >= 0


def test_replicas_belong_to_the_hpa_when_it_is_enabled(rendered: Rendered):
    deploy = rendered.get("Deployment", RELEASE)
    hpas = rendered.of_kind("HorizontalPodAutoscaler")
    if hpas:
        assert "replicas" not in deploy["spec"]
        (hpa,) = hpas
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1", "kind": "Deployment", "name": RELEASE}
        assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    else:
        assert deploy["spec"]["replicas"] >= 1


def test_pod_disruption_budgets_select_their_pods(rendered: Rendered):
    workloads = list(pod_templates(rendered))
    for pdb in rendered.of_kind("PodDisruptionBudget"):
        spec = pdb["spec"]
        assert ("minAvailable" in spec) != ("maxUnavailable" in spec), spec
        matched = [w for w, labels in workloads if selects(spec["selector"]["matchLabels"], labels)]
        assert len(matched) == 1, pdb["metadata"]["name"]


def test_rollouts_never_drop_below_capacity(rendered: Rendered):
    strategy = rendered.get("Deployment", RELEASE)["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0
