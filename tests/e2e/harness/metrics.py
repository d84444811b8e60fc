"""Scrapes gatehouse's `GET /metrics` (side port) and parses it with the
Prometheus client library's own text-format parser, so a malformed
exposition fails the test that reads it."""

from __future__ import annotations

from dataclasses import dataclass

import requests
from prometheus_client.parser import text_string_to_metric_families

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class Scrape:
    """One scrape: families by name (as the parser names them: counters
    without `_total`) and every sample by (sample name, sorted labels)."""

    families: dict
    samples: dict[tuple[str, tuple], float]
    content_type: str

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, tuple(sorted(labels.items()))))

    def count(self, name: str, **labels: str) -> float:
        """A counter's value, 0 when it has no series yet."""
        return self.value(name, **labels) or 0.0

    def checks(self, decision: str, reason: str = "", rule: str = "") -> float:
        return self.count("gatehouse_checks_total", decision=decision, reason=reason, rule=rule)


def scrape(http_url: str) -> Scrape:
    r = requests.get(http_url + "/metrics", timeout=5, proxies={"http": None, "https": None})
    r.raise_for_status()
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    samples = {}
    for family in families.values():
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return Scrape(families, samples, r.headers.get("content-type", ""))
