"""values.schema.json and the templates' own checks refuse bad values at
install/template time with an error naming the key; `helm lint` (with and
without --strict) passes on every value set."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
import yaml

from chartkit import CHART_DIR, KUBE_VERSIONS, ci_values, lint, value_sets


def test_schema_is_draft_07_and_closed_at_the_top():
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)  # a well-formed draft-07 schema
    # An independent validator agrees with Helm's on the defaults.
    defaults = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    jsonschema.Draft7Validator(schema).validate(defaults)
    assert schema["additionalProperties"] is False
    # Every top-level key of values.yaml is described by the schema.
    assert set(defaults) == set(schema["properties"])


def _struct_fields(source: str, struct: str) -> set[str]:
    body = re.search(r"pub struct " + struct + r" \{(.*?)\n\}", source, re.S)
    assert body, f"struct {struct} not found"
    return set(re.findall(r"^    pub (\w+):", body.group(1), re.M))


def test_config_sections_match_gatehouse():
    """A section gatehouse knows (src/config/mod.rs) is described by the
    schema, and the schema describes no section gatehouse does not know."""
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    config = schema["properties"]["config"]["properties"]
    source = (CHART_DIR.parents[1] / "src" / "config" / "mod.rs").read_text()
    assert set(config) == _struct_fields(source, "Config")
    assert set(config["log"]["properties"]) == _struct_fields(source, "LogConfig")


@pytest.mark.parametrize("name", sorted(value_sets()))
def test_value_sets_pass_the_schema(chart, name):
    chart.validate_values(value_sets()[name])


# (values, the key the error must name, a phrase of the reason)
REFUSED = {
    "wrong type": ({"replicaCount": "two"}, "/replicaCount", "want integer"),
    "unknown key": ({"replicas": 2}, "additional properties 'replicas'", "not allowed"),
    "unknown nested key": ({"service": {"grpcport": 9191}}, "/service",
                           "additional properties 'grpcport'"),
    "bad enum": ({"service": {"type": "Internal"}}, "/service/type", "must be one of"),
    "bad config enum": ({"config": {"log": {"format": "xml"}}}, "/config/log/format",
                        "must be one of 'text', 'json'"),
    "tracing sample ratio above 1": (
        {"config": {"tracing": {"otlp_endpoint": "http://otel:4317", "sample_ratio": 2}}},
        "/config/tracing/sample_ratio", "maximum"),
    "bad rule enum": ({"config": {"policy": {"rules": [{"name": "x", "satisfy": "most"}]}}},
                      "/config/policy/rules/0/satisfy", "must be one of 'all', 'any'"),
    "bad config duration": ({"config": {"jwt": {"leeway": "30"}}}, "/config/jwt/leeway",
                            "does not match pattern"),
    "bad decision log mode": ({"config": {"log": {"decisions": "allow"}}}, "/config/log/decisions",
                              "must be one of"),
    "misspelled config section": ({"config": {"polciy": {"default": "deny"}}}, "/config",
                                  "additional properties 'polciy'"),
    "misspelled reload key": ({"config": {"reload": {"wach": True}}}, "/config/reload",
                              "additional properties 'wach'"),
    "bad reload interval": ({"config": {"reload": {"interval": "soon"}}},
                            "/config/reload/interval", "does not match pattern"),
    "port out of range": ({"ports": {"grpc": 70000}}, "/ports/grpc", "maximum"),
    "env without a nesting level": ({"env": {"GATEHOUSE_LOGLEVEL": "debug"}}, "GATEHOUSE_LOGLEVEL",
                                    "does not match pattern"),
    "env overriding the listen address": ({"env": {"GATEHOUSE_SERVER__GRPC_ADDR": "0.0.0.0:1"}},
                                          "/env/GATEHOUSE_SERVER__GRPC_ADDR", "false schema"),
    "writable root filesystem": ({"securityContext": {"readOnlyRootFilesystem": False}},
                                 "/securityContext/readOnlyRootFilesystem", "must be true"),
    "root allowed": ({"podSecurityContext": {"runAsNonRoot": False}},
                     "/podSecurityContext/runAsNonRoot", "must be true"),
    "signing key without its Secret key": ({"secrets": {"signingKeys": [{"secretName": "k"}]}},
                                           "/secrets/signingKeys/0", "missing property 'key'"),
    "bad percentage": ({"podDisruptionBudget": {"maxUnavailable": "half"}},
                       "/podDisruptionBudget/maxUnavailable", "does not match pattern"),
    "bad digest": ({"image": {"digest": "sha256:xyz"}}, "/image/digest", "does not match pattern"),
    "gateway without upstream": ({"envoyGateway": {"enabled": True}}, "/envoyGateway/upstream/host",
                                 "minLength"),
    "redis without password Secret": ({"redis": {"enabled": True}}, "/redis/auth/existingSecret",
                                      "minLength"),
    "bad context extension": ({"envoyGateway": {"routes": [
        {"prefix": "/a/", "contextExtensions": {"satisfy": "most"}}]}},
        "/envoyGateway/routes/0/contextExtensions/satisfy", "must be one of"),
    "bad probe service": ({"probes": {"service": "grpc.health.v1.Health"}}, "/probes/service",
                          "must be one of"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_schema_refuses_bad_values_naming_the_key(chart, case):
    import helm_python as helm  # on first use: see chartkit

    values, key, reason = REFUSED[case]
    with pytest.raises(helm.HelmValuesError) as err:
        chart.render(values)
    message = str(err.value)
    assert "values don't meet the specifications of the schema" in message
    assert key in message and reason in message, message
    # validate_schema (helm install's first step) says the same.
    with pytest.raises(helm.HelmValuesError):
        chart.validate_values(values)


# Combinations a schema cannot express: the templates `fail` with a message.
TEMPLATE_FAILURES = {
    "listen address set in config": (
        {"config": {"server": {"grpc_addr": "0.0.0.0:9000"}}},
        "config.server.grpc_addr is 0.0.0.0:9000, but the chart listens on 0.0.0.0:9191"),
    "side port set in config": (
        {"config": {"server": {"http_addr": "127.0.0.1:8080"}}},
        "config.server.http_addr is 127.0.0.1:8080"),
    "signing keys without an issuer": (
        {"secrets": {"signingKeys": [{"secretName": "k", "key": "key.pem"}]}},
        "secrets.signingKeys is set but config.issuer is not"),
    "signing keys twice": (
        {"config": {"issuer": {"issuer": "https://x.example", "signing_keys": [{"file": "k.pem"}]}},
         "secrets": {"signingKeys": [{"secretName": "k", "key": "key.pem"}]}},
        "config.issuer.signing_keys and secrets.signingKeys are both set"),
    "network policy letting nobody call Check": (
        {"networkPolicy": {"enabled": True}}, "nothing could call Check"),
    "a Redis store without an encryption key": (
        {"redis": {"enabled": True, "auth": {"existingSecret": "gatehouse-redis"}}},
        "the store is Redis but secrets.storeKey is not set"),
    "the bundled Redis next to a memory store": (
        {"redis": {"enabled": True, "auth": {"existingSecret": "gatehouse-redis"}},
         "secrets": {"storeKey": {"secretName": "gatehouse-store-key"}},
         "config": {"store": {"memory": {"max_entries": 10}}}},
        "redis.enabled and config.store.memory are both set"),
    "a key file named twice": (
        {"secrets": {"storeKey": {"secretName": "gatehouse-store-key"}},
         "config": {"store": {"encryption_key_file": "/keys/store"}}},
        "config.store.encryption_key_file and secrets.storeKey are both set"),
    "autoscaling bounds reversed": (
        {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}},
        "autoscaling.minReplicas (5) is greater than autoscaling.maxReplicas (2)"),
}


@pytest.mark.parametrize("case", sorted(TEMPLATE_FAILURES))
def test_templates_refuse_inconsistent_values(chart, case):
    import helm_python as helm  # on first use: see chartkit

    values, message = TEMPLATE_FAILURES[case]
    with pytest.raises(helm.HelmRenderError) as err:
        chart.render(values)
    assert message in str(err.value)


def test_listen_address_in_config_is_accepted_when_it_agrees(chart):
    """envoy/istio/gatehouse.yaml sets grpc_addr 0.0.0.0:9191: the chart's own
    address, so it may stay."""
    cfg = chart.render({"config": {"server": {"grpc_addr": "0.0.0.0:9191"}}}).get(
        "ConfigMap", "gatehouse-config")["data"]["config.yaml"]
    assert "grpc_addr: 0.0.0.0:9191" in cfg


@pytest.mark.parametrize("strict", [False, True], ids=["lint", "lint-strict"])
@pytest.mark.parametrize("name", sorted(value_sets()))
def test_helm_lint_passes(name, strict):
    report = lint(value_sets()[name], strict=strict, kube_version=KUBE_VERSIONS[0])
    assert report["total_charts_linted"] == 1
    assert report["errors"] == [], report
    # Nothing above "info" (Chart.yaml's missing icon is info).
    assert all(m["severity"] <= 1 for m in report["messages"]), report["messages"]


def test_helm_lint_reports_bad_values():
    report = lint({"service": {"type": "Internal"}}, strict=True)
    assert any("/service/type" in e for e in report["errors"]), report


def test_ci_value_sets_are_the_ones_tested():
    """Every file in charts/gatehouse/ci is one of the tested value sets."""
    files = sorted(p.name for p in (CHART_DIR / "ci").glob("*-values.yaml"))
    assert files == ["all-enabled-values.yaml", "istio-values.yaml", "quickstart-values.yaml"]
    assert value_sets()["all-enabled"] == ci_values("all-enabled")


def test_readme_quick_start_is_the_tested_value_set():
    """The chart README's walkthrough shows ci/quickstart-values.yaml verbatim
    (indented in its list item), so what operators copy is what the tests
    render, lint, validate and check-config."""
    text = (CHART_DIR / "ci" / "quickstart-values.yaml").read_text()
    indented = "\n".join(("   " + line) if line else line for line in text.splitlines())
    readme = (CHART_DIR / "README.md").read_text()
    assert indented in readme


def test_config_integers_may_be_quoted(chart):
    """values.yaml tells Helm 3 users to quote integers of a million or more
    (else Helm may print 1e+06): the config schema takes digit strings, as
    gatehouse does, and still refuses other strings."""
    import helm_python as helm  # on first use: see chartkit

    chart.validate_values({"config": {"store": {"memory": {"max_entries": "2000000"}},
                                      "jwt": {"cache_size": 1000000}}})
    with pytest.raises(helm.HelmValuesError):
        chart.validate_values({"config": {"jwt": {"cache_size": "many"}}})
