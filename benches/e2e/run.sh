#!/usr/bin/env bash
# End-to-end comparison of gatehouse against Envoy's jwt_authn (see compare.py).
#   bash benches/e2e/run.sh [--rounds 3 --duration 10 --users 1000 --alg RS256]
# Installs what it needs idempotently: wrk (Debian), the test venv with Envoy
# (tests/setup.sh), and builds gatehouse in release mode.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
if ! command -v wrk >/dev/null; then
    echo "[bench] installing wrk"
    apt-get update -qq && apt-get install -y -qq --no-install-recommends wrk >/dev/null
fi
command -v taskset >/dev/null || { apt-get update -qq && apt-get install -y -qq util-linux >/dev/null; }
bash tests/setup.sh >/dev/null
cargo build --release --locked --bin gatehouse --bin gatehouse-load
cargo build --release --locked -p gatehouse-envoy-module
exec .venv/bin/python benches/e2e/compare.py "$@"
