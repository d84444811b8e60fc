"""`GET /metrics` on the side port, while real requests go through Envoy.

Depends on gatehouse behaviour:
- `gatehouse_checks_total{decision, reason, rule}` counts every check:
  `reason` is the deny reason (empty for allow), `rule` the rule that
  applied (empty when none did);
- `gatehouse_check_duration_seconds` is a histogram with sub-millisecond
  buckets;
- remote key sets report fetches (`gatehouse_jwks_refresh_total`), key
  counts and age; static ones (files, shared secrets) do not;
- the verified-token cache counts lookups by result (`hit`, `miss`,
  `stale`) and exposes its size;
- Envoy does not route `/metrics`: it is for the scraper only.
"""

from __future__ import annotations

from harness import expect
from harness.metrics import CONTENT_TYPE, scrape


def test_checks_through_envoy_are_counted_by_decision_reason_and_rule(client, gatehouse, mint):
    before = scrape(gatehouse.http_url)
    expect.allowed(client.get("/data/1", token=mint.token()))
    expect.allowed(client.get("/data/2", token=mint.token()))
    r = client.get("/data/3")
    assert r.status == 401, r.describe()
    r = client.get("/all/1", token=mint.token(groups=["readers"]))
    assert r.status == 403, r.describe()
    r = client.get("/no-rule-here")
    assert r.status == 403, r.describe()
    after = scrape(gatehouse.http_url)

    def delta(decision, reason="", rule=""):
        return after.checks(decision, reason, rule) - before.checks(decision, reason, rule)

    assert delta("allow", rule="data") == 2
    assert delta("deny", "no_credential", "data") == 1
    assert delta("deny", "insufficient_scope", "all-scopes") == 1
    assert delta("deny", "no_rule") == 1
    checked = after.count("gatehouse_check_duration_seconds_count", decision="allow") - before.count(
        "gatehouse_check_duration_seconds_count", decision="allow")
    assert checked == 2


def test_token_cache_lookups_are_counted(client, gatehouse, mint):
    token = mint.token()  # a token gatehouse has never seen
    before = scrape(gatehouse.http_url)
    expect.allowed(client.get("/data/1", token=token))
    middle = scrape(gatehouse.http_url)
    expect.allowed(client.get("/data/2", token=token))
    expect.allowed(client.get("/data/3", token=token))
    after = scrape(gatehouse.http_url)

    def lookups(s, result):
        return s.count("gatehouse_token_cache_lookups_total", result=result)

    # First sight: verified in full and cached; then answered from the cache.
    assert lookups(middle, "miss") - lookups(before, "miss") == 1
    assert lookups(middle, "hit") - lookups(before, "hit") == 0
    assert lookups(after, "hit") - lookups(middle, "hit") == 2
    assert lookups(after, "miss") - lookups(middle, "miss") == 0
    assert after.value("gatehouse_token_cache_entries") >= 1


def test_exposition_parses_and_follows_prometheus_conventions(gatehouse):
    s = scrape(gatehouse.http_url)
    assert s.content_type == CONTENT_TYPE
    types = {name: f.type for name, f in s.families.items()}
    for name, kind in types.items():
        assert name.startswith("gatehouse_"), name
        if kind == "histogram":
            assert name.endswith("_seconds"), name
    assert types["gatehouse_checks"] == "counter"  # exposed as gatehouse_checks_total
    assert types["gatehouse_check_duration_seconds"] == "histogram"
    assert types["gatehouse_store_operation_duration_seconds"] == "histogram"
    assert types["gatehouse_config_reloads"] == "counter"
    bounds = {float(dict(labels)["le"]) for (name, labels) in s.samples
              if name == "gatehouse_check_duration_seconds_bucket"
              and dict(labels).get("decision") == "allow"}
    # Fine enough for checks of a few microseconds.
    assert {0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001} <= bounds
    version = [dict(labels)["version"] for (name, labels) in s.samples if name == "gatehouse_build_info"]
    assert len(version) == 1 and version[0]
    assert s.value("gatehouse_config_last_reload_successful") == 1.0


def test_remote_key_sets_report_fetches_keys_and_age(gatehouse):
    s = scrape(gatehouse.http_url)
    for issuer in ["primary", "discovered", "rotating"]:
        assert s.count("gatehouse_jwks_refresh_total", issuer=issuer, result="success") >= 1, issuer
        assert s.value("gatehouse_jwks_keys", issuer=issuer) >= 1, issuer
        age = s.value("gatehouse_jwks_keys_age_seconds", issuer=issuer)
        assert age is not None and 0 <= age < 3600, (issuer, age)
    # The shared secret is not fetched: no fetch or age series.
    assert s.value("gatehouse_jwks_keys", issuer="hmac") is None
    assert s.count("gatehouse_jwks_refresh_total", issuer="hmac", result="success") == 0


def test_metrics_are_not_routed_through_envoy(client):
    r = client.get("/metrics")
    assert "gatehouse_checks_total" not in r.text, r.describe()
