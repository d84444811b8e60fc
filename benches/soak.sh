#!/usr/bin/env bash
# Soak: gatehouse (release build) behind real Envoys for DURATION under a
# mixed load (~400 req/s: valid, invalid and expired JWTs, signed links,
# client certificates over mTLS), with a config reload every minute and a
# JWKS key rotation every 5 minutes (both DURATION/6 for runs under 6 min).
# Samples RSS, open fds, threads, p50/p99 and errors every 10 s (2 s for
# runs under 5 min) into a CSV, plots it, and exits non-zero when RSS or
# fds grow, threads climb, p99 drifts or any request is answered wrongly.
#
#   benches/soak.sh 60s
#   benches/soak.sh 1h --out /tmp/soak-1h --rate 400
#
# Options after DURATION go to benches/soak/soak.py (--out DIR, --rate N,
# --workers N, --sample PERIOD). Default output directory:
# $CARGO_TARGET_DIR (or target)/soak/<date>-<DURATION>/ with soak.csv,
# soak.png, summary.json and the processes' logs under work/.
# GATEHOUSE_BIN=path runs that binary instead of building the release one.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ $# -lt 1 ] || [[ "$1" == -* ]]; then
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
duration="$1"
shift

target="${CARGO_TARGET_DIR:-$PWD/target}"
out=()
case " $* " in
    *" --out "*) ;;
    *) out=(--out "$target/soak/$(date +%Y%m%dT%H%M%S)-$duration") ;;
esac

bash tests/setup.sh >/dev/null
if [ -z "${GATEHOUSE_BIN:-}" ]; then
    cargo build --release --locked --bin gatehouse
    GATEHOUSE_BIN="$target/release/gatehouse"
fi
export GATEHOUSE_BIN
exec .venv/bin/python benches/soak/soak.py --duration "$duration" "${out[@]}" "$@"
