#!/bin/sh
# run.sh [SECONDS] - builds every libFuzzer target with clang (ASan + UBSan) and runs each for
# SECONDS (default 60) on a copy of its seed corpus. Fails on any crash, timeout, leak
# (LeakSanitizer is on) or sanitizer report, printing the reproducer. Keep a reproducer
# as fuzz/regression/<target>/crash-<sha1>: the test suite replays it from then on.
set -eu
SECONDS_EACH=${1:-60}
cd "$(dirname "$0")/.."
BUILD=${DMJ_FUZZ_BUILD:-build-fuzz}
CC=clang cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDMJ_BUILD_FUZZERS=ON \
    -DDMJ_BUILD_TESTS=OFF "-DDMJ_SANITIZE=address;undefined" >/dev/null
cmake --build "$BUILD" -j "$(nproc)" >/dev/null
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
status=0
ran=0
for bin in "$BUILD"/fuzz/fuzz_*; do
    [ -x "$bin" ] || continue
    ran=$((ran + 1))
    target=$(basename "$bin" | sed 's/^fuzz_//')
    corpus="$WORK/corpus-$target"
    artifacts="$WORK/artifacts-$target/"
    mkdir -p "$corpus" "$artifacts"
    [ -d "fuzz/corpus/$target" ] && cp -r "fuzz/corpus/$target/." "$corpus/"
    dict=""
    [ -f "fuzz/$target.dict" ] && dict="-dict=fuzz/$target.dict"
    echo "== fuzz $target (${SECONDS_EACH}s)"
    # shellcheck disable=SC2086
    if ! "$bin" "$corpus" -max_total_time="$SECONDS_EACH" -print_final_stats=1 \
        -artifact_prefix="$artifacts" -timeout=10 -rss_limit_mb=2048 $dict \
        >"$WORK/log-$target" 2>&1; then
        status=1
        echo "FAILED: $target"
        grep -E "ERROR|SUMMARY|runtime error|Test unit written" "$WORK/log-$target" | head -20
        for f in "$artifacts"*; do
            [ -f "$f" ] || continue
            sha=$(sha1sum "$f" | cut -d' ' -f1)
            echo "reproducer $f; keep it with:"
            echo "  cp '$f' fuzz/regression/$target/crash-$sha"
            od -A d -c "$f" | head -20
        done
    else
        grep -E "stat::number_of_executed_units|stat::peak_rss_mb|cov:" "$WORK/log-$target" | tail -3
    fi
done
if [ "$ran" -eq 0 ]; then
    echo "FAILED: no fuzz target was built in $BUILD/fuzz"
    exit 1
fi
exit $status
