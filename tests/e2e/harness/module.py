"""Where the in-process module (envoy/module, `libgatehouse_envoy_module.so`)
is: $GATEHOUSE_MODULE_DIR, else next to $GATEHOUSE_BIN (the test runner
builds both into target/debug), else target/debug."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
LIBRARY = "libgatehouse_envoy_module.so"


def module_dir() -> Path:
    explicit = os.environ.get("GATEHOUSE_MODULE_DIR")
    if explicit:
        candidates = [Path(explicit)]
    else:
        candidates = []
        if os.environ.get("GATEHOUSE_BIN"):
            candidates.append(Path(os.environ["GATEHOUSE_BIN"]).resolve().parent)
        candidates.append(REPO / "target" / "debug")
    for directory in candidates:
        if (directory / LIBRARY).exists():
            return directory
    raise FileNotFoundError(
        f"{LIBRARY} not found in {', '.join(map(str, candidates))}: "
        "build it with `cargo build -p gatehouse-envoy-module`")
