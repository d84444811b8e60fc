"""The chart's optional parts and its fit with the repository's Istio
example: ServiceMonitor (a CRD, checked by hand), NetworkPolicy, the
bundled Redis, autoscaling and disruption budgets, topology spread, NOTES."""

from __future__ import annotations

import yaml

from chartkit import (NAMESPACE, RELEASE, REPO, Rendered, container, merge, selects,
                      value_sets)

ISTIO = REPO / "envoy" / "istio"


def selector_of(rendered: Rendered, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "gatehouse", "app.kubernetes.io/instance": RELEASE,
            "app.kubernetes.io/component": component}


# --- Istio -------------------------------------------------------------------------


def test_release_gatehouse_is_the_service_istios_meshconfig_names(render_set):
    """envoy/istio/meshconfig.yaml registers gatehouse.gatehouse.svc:9191:
    the chart installed as release `gatehouse` in namespace `gatehouse`
    provides exactly that Service and port, speaking gRPC."""
    mesh = yaml.safe_load((ISTIO / "meshconfig.yaml").read_text())
    (provider,) = mesh["spec"]["meshConfig"]["extensionProviders"]
    grpc = provider["envoyExtAuthzGrpc"]
    rendered = render_set("istio")
    svc = rendered.get("Service", RELEASE)
    assert grpc["service"] == f"{svc['metadata']['name']}.{NAMESPACE}.svc.cluster.local"
    port = next(p for p in svc["spec"]["ports"] if p["port"] == grpc["port"])
    assert port["name"] == "grpc" and port["appProtocol"] == "grpc"
    assert grpc["failOpen"] is False
    # The AuthorizationPolicy names the same provider.
    policies = [d for d in yaml.safe_load_all((ISTIO / "authorization-policy.yaml").read_text())
                if d and d["kind"] == "AuthorizationPolicy"]
    assert [p["spec"]["provider"]["name"] for p in policies] == [provider["name"]]
    assert all(p["spec"]["action"] == "CUSTOM" for p in policies)


def test_istio_values_carry_the_istio_example_config():
    """ci/istio-values.yaml's `config` is envoy/istio/gatehouse.yaml, so the
    two cannot drift apart."""
    example = yaml.safe_load((ISTIO / "gatehouse.yaml").read_text())
    assert value_sets()["istio"]["config"] == example


def test_istio_set_injects_the_sidecar_and_admits_mesh_callers(render_set):
    rendered = render_set("istio")
    labels = rendered.get("Deployment", RELEASE)["spec"]["template"]["metadata"]["labels"]
    assert labels["sidecar.istio.io/inject"] == "true"
    assert rendered.find("Service", f"{RELEASE}-headless") is None
    policy = rendered.get("NetworkPolicy", RELEASE)
    (grpc_rule,) = policy["spec"]["ingress"]
    assert grpc_rule["ports"] == [{"port": "grpc", "protocol": "TCP"}]
    assert {"namespaceSelector": {"matchLabels": {"istio-injection": "enabled"}}} in grpc_rule["from"]


def test_notes_give_the_istio_provider_for_this_release(render_set):
    notes = render_set("istio").notes
    assert f"service: {RELEASE}.{NAMESPACE}.svc.cluster.local" in notes
    assert "port: 9191" in notes and "failOpen: false" in notes


# --- ServiceMonitor (CRD) ------------------------------------------------------------


def test_servicemonitor_shape(render_set):
    rendered = render_set("all-enabled")
    (monitor,) = rendered.of_kind("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    spec = monitor["spec"]
    assert set(spec) == {"namespaceSelector", "selector", "endpoints"}
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = spec["endpoints"]
    assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
    assert endpoint["scheme"] == "http" and endpoint["interval"] == "15s"
    # It selects the gatehouse Service (which has a port named http), and
    # not the headless one (no double scrape).
    services = {s["metadata"]["name"]: s for s in rendered.of_kind("Service")}
    chosen = [n for n, s in services.items()
              if selects(spec["selector"]["matchLabels"], s["metadata"]["labels"])]
    assert chosen == [RELEASE]
    assert "http" in {p["name"] for p in services[RELEASE]["spec"]["ports"]}


def test_no_servicemonitor_by_default(render_set):
    assert render_set("defaults").of_kind("ServiceMonitor") == []


# --- NetworkPolicy ---------------------------------------------------------------------


def test_network_policy_admits_only_envoy_and_listed_peers(render_set):
    rendered = render_set("all-enabled")
    policy = rendered.get("NetworkPolicy", RELEASE)
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"] == selector_of(rendered, "server")
    assert spec["policyTypes"] == ["Ingress"]
    rules = {r["ports"][0]["port"]: r["from"] for r in spec["ingress"]}
    assert set(rules) == {"grpc", "http"}
    envoy_pods = {"podSelector": {"matchLabels": selector_of(rendered, "gateway")}}
    values = value_sets()["all-enabled"]["networkPolicy"]
    assert rules["grpc"] == [envoy_pods] + values["grpcFrom"]
    assert rules["http"] == [envoy_pods] + values["metricsFrom"]
    # The Envoy selector really matches the gateway pods.
    gateway = rendered.get("Deployment", f"{RELEASE}-envoy")
    assert selects(envoy_pods["podSelector"]["matchLabels"],
                   gateway["spec"]["template"]["metadata"]["labels"])


def test_redis_admits_only_gatehouse(render_set):
    rendered = render_set("all-enabled")
    spec = rendered.get("NetworkPolicy", f"{RELEASE}-redis")["spec"]
    assert spec["podSelector"]["matchLabels"] == selector_of(rendered, "store")
    (rule,) = spec["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": selector_of(rendered, "server")}}]
    assert rule["ports"] == [{"port": "redis", "protocol": "TCP"}]


# --- Redis -------------------------------------------------------------------------------


def test_bundled_redis_takes_its_password_from_the_secret(render_set):
    rendered = render_set("all-enabled")
    deploy = rendered.get("Deployment", f"{RELEASE}-redis")
    ctr = container(deploy, "redis")
    (env,) = ctr["env"]
    assert env == {"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {
        "name": "gatehouse-redis", "key": "password"}}}
    args = ctr["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    assert ctr["securityContext"]["readOnlyRootFilesystem"] is True
    assert deploy["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert {m["mountPath"] for m in ctr["volumeMounts"]} == {"/data"}
    assert deploy["spec"]["replicas"] == 1 and deploy["spec"]["strategy"] == {"type": "Recreate"}
    svc = rendered.get("Service", f"{RELEASE}-redis")
    assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [(6379, "redis")]
    assert f"redis://{RELEASE}-redis:6379" in rendered.notes


def test_no_redis_by_default(render_set):
    names = render_set("defaults").names()
    assert not [n for n in names if "redis" in n], names


# --- scaling ---------------------------------------------------------------------------


def test_hpa_scales_on_cpu_and_memory_with_behavior(render_set):
    hpa = render_set("all-enabled").get("HorizontalPodAutoscaler", RELEASE)
    assert hpa["apiVersion"] == "autoscaling/v2"
    targets = {m["resource"]["name"]: m["resource"]["target"] for m in hpa["spec"]["metrics"]}
    assert targets == {"cpu": {"type": "Utilization", "averageUtilization": 60},
                       "memory": {"type": "Utilization", "averageUtilization": 80}}
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)


def test_pdb_min_available_takes_precedence(chart, render_set):
    pdb = render_set("all-enabled").get("PodDisruptionBudget", RELEASE)["spec"]
    assert pdb["minAvailable"] == 2 and "maxUnavailable" not in pdb
    percent = chart.render({"podDisruptionBudget": {"minAvailable": "50%"}})
    assert percent.get("PodDisruptionBudget", RELEASE)["spec"]["minAvailable"] == "50%"
    default = render_set("defaults").get("PodDisruptionBudget", RELEASE)["spec"]
    assert default["maxUnavailable"] == 1 and "minAvailable" not in default


def test_topology_spread_gets_the_pods_selector(render_set):
    rendered = render_set("all-enabled")
    for name, component in ((RELEASE, "server"), (f"{RELEASE}-envoy", "gateway")):
        pod = rendered.get("Deployment", name)["spec"]["template"]["spec"]
        (constraint,) = pod["topologySpreadConstraints"]
        assert constraint["labelSelector"] == {"matchLabels": selector_of(rendered, component)}


def test_an_explicit_spread_selector_is_kept(chart):
    own = {"matchLabels": {"tier": "auth"}}
    rendered = chart.render({"topologySpreadConstraints": [
        {"maxSkew": 2, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
         "labelSelector": own}]})
    (constraint,) = rendered.get("Deployment", RELEASE)["spec"]["template"]["spec"][
        "topologySpreadConstraints"]
    assert constraint["labelSelector"] == own


# --- NOTES -----------------------------------------------------------------------------


def test_notes_warn_about_a_per_replica_store(chart, render_set):
    """With the internal issuer, several replicas and the in-memory store,
    one-time links are per replica: NOTES says so; one replica or a Redis
    store: no warning."""
    memory = merge(value_sets()["all-enabled"], {"redis": {"enabled": False}})
    assert "one-time link can be used once per replica" in chart.render(memory).notes
    single = merge(memory, {"autoscaling": {"enabled": False}, "replicaCount": 1})
    assert "once per replica" not in chart.render(single).notes
    assert "once per replica" not in render_set("all-enabled").notes  # the bundled Redis
    assert "once per replica" not in render_set("defaults").notes  # no issuer


def test_notes_warn_about_inline_signing_keys(chart):
    values = {"config": {"issuer": {"issuer": "https://x.example",
                                    "signing_keys": [{"pem": "not a real key"}]}}}
    assert "inline PEM key" in chart.render(values).notes
