#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS each, after one
# build. See FUZZING.md.
#
#   fuzz/run.sh SECONDS [TARGET...]
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz
# --locked`). Each target starts from its checked-in seeds in
# fuzz/corpus/<target>/ and adds what it finds there (git ignores all but
# the seed-* files). FUZZ_PARALLEL=N runs N targets at a time (default 1).
# FUZZ_MODE=deep (default: release build with AddressSanitizer, for long
# runs) or smoke (dev build, no sanitizer: a few minutes to build from
# scratch, for the short pass in tests/run-all.sh; safe Rust needs no
# sanitizer to report a panic, an overflow or an out-of-bounds index).
# Logs go to fuzz/target/logs/<target>.log. Exits non-zero when a target
# crashes (a panic, a failed assertion, a sanitizer report, a timeout or an
# out-of-memory), after running the others, and prints where each crash
# input is (fuzz/artifacts/<target>/...).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

case "${FUZZ_MODE:-deep}" in
    deep) build_flags=(); mode_label="release, AddressSanitizer" ;;
    smoke) build_flags=(--dev -s none); mode_label="dev, no sanitizer" ;;
    *) echo "fuzz/run.sh: FUZZ_MODE is deep or smoke" >&2; exit 2 ;;
esac

usage() { echo "usage: fuzz/run.sh SECONDS [TARGET...]" >&2; exit 2; }
[[ $# -ge 1 && $1 =~ ^[0-9]+$ && $1 -gt 0 ]] || usage
seconds=$1
shift
parallel=${FUZZ_PARALLEL:-1}

cargo +nightly fuzz --version >/dev/null 2>&1 || {
    echo "fuzz/run.sh: needs the nightly toolchain and cargo-fuzz (cargo install cargo-fuzz --locked)" >&2
    exit 2
}

mapfile -t all < <(cargo +nightly fuzz list)
if [[ $# -gt 0 ]]; then targets=("$@"); else targets=("${all[@]}"); fi
for t in "${targets[@]}"; do
    printf '%s\n' "${all[@]}" | grep -qx -- "$t" || { echo "fuzz/run.sh: no target $t" >&2; exit 2; }
done

start=$(date +%s)
echo "==> building ${#targets[@]} fuzz targets ($mode_label)"
# One build of every target; the runs below then find it up to date.
cargo +nightly fuzz build "${build_flags[@]}"
built=$(date +%s)
echo "==> built in $((built - start)) s; running each target for ${seconds} s (${parallel} at a time)"

mkdir -p target/logs
run_one() {
    local t=$1 log="target/logs/$1.log"
    mkdir -p "corpus/$t"
    # -timeout: one input taking longer than 10 s is a finding too.
    if cargo +nightly fuzz run "${build_flags[@]}" "$t" -- -max_total_time="$seconds" -timeout=10 \
        -print_final_stats=1 >"$log" 2>&1; then
        echo ok >"target/logs/$t.status"
    else
        echo crash >"target/logs/$t.status"
    fi
}

running=0
for t in "${targets[@]}"; do
    run_one "$t" &
    running=$((running + 1))
    if ((running >= parallel)); then
        wait -n || true
        running=$((running - 1))
    fi
done
wait || true

failed=0
printf '\n%-16s %-6s %12s %8s %8s %10s\n' target result executions cov ft corpus
for t in "${targets[@]}"; do
    log="target/logs/$t.log"
    status=$(cat "target/logs/$t.status" 2>/dev/null || echo crash)
    execs=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -n1)
    last=$(grep -E '^#[0-9]+.*cov: [0-9]+' "$log" | tail -n1)
    cov=$(grep -oE 'cov: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || true)
    ft=$(grep -oE 'ft: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || true)
    corp=$(grep -oE 'corp: [0-9]+/[0-9]+[a-zA-Z]*' <<<"$last" | cut -d' ' -f2 || true)
    printf '%-16s %-6s %12s %8s %8s %10s\n' "$t" "$status" "${execs:--}" "${cov:--}" "${ft:--}" "${corp:--}"
    if [[ $status != ok ]]; then
        failed=1
    fi
done
for t in "${targets[@]}"; do
    [[ $(cat "target/logs/$t.status" 2>/dev/null) == ok ]] && continue
    log="fuzz/target/logs/$t.log"
    echo
    echo "==> $t FAILED; log: $log"
    grep -A1 -E 'panicked at' "target/logs/$t.log" | head -n 2 || true
    grep -E 'ERROR: (libFuzzer|AddressSanitizer)' "target/logs/$t.log" | head -n 2 || true
    artifact=$(grep -oE 'Test unit written to .*' "target/logs/$t.log" | tail -n1 | sed 's/^Test unit written to //')
    if [[ -n $artifact ]]; then
        [[ $artifact == /* ]] || artifact="fuzz/${artifact#./}"
        echo "    artifact:  $artifact"
        echo "    reproduce: cargo +nightly fuzz run ${build_flags[*]} $t $artifact"
        echo "    minimize:  cargo +nightly fuzz tmin $t $artifact"
    fi
done
echo
echo "==> fuzzing took $(($(date +%s) - start)) s in all (build $((built - start)) s)"
exit "$failed"
