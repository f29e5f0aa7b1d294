#!/bin/sh
# test.sh - installs what is needed, builds dmj twice (release with -Werror, then with
# AddressSanitizer and UBSan) and runs the whole test suite on each, then dmjd and dmj with
# ThreadSanitizer under load (tests/integration/test_tsan.sh), then the fuzzers. With CI=true
# a skipped test fails the run unless tests/skips-allowed.txt names it, its build and why,
# and a test missing a tool it calls fails instead of leaving that part out.
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh --test
JOBS=$(nproc)
# ../shared (the reference peer and the fixture generator) sits beside the checkout and is
# not part of the repository: without it the tests that compare with the peer skip, and
# tests/skips-without-shared.txt allows exactly those skips.
ALLOW=tests/skips-allowed.txt
if [ ! -d ../shared/peers/drf_ref ]; then
    echo "note: no ../shared/peers/drf_ref: the differential tests are skipped"
    ALLOW=$(mktemp)
    trap 'rm -f "$ALLOW"' EXIT
    cat tests/skips-allowed.txt tests/skips-without-shared.txt >"$ALLOW"
fi
for variant in release asan; do
    dir=build-test-$variant
    case $variant in
        release) flags="-DCMAKE_BUILD_TYPE=Release" ;;
        asan) flags="-DCMAKE_BUILD_TYPE=Debug -DDMJ_SANITIZE=address;undefined" ;;
    esac
    echo "== $variant build"
    cmake -S . -B "$dir" -DDMJ_WERROR=ON $flags >/dev/null
    cmake --build "$dir" -j "$JOBS"
    echo "== $variant tests"
    (cd "$dir" && ctest --output-on-failure -j "$JOBS" --output-junit junit.xml)
    python3 scripts/check_skips.py "$dir/junit.xml" "$variant" "$ALLOW"
done
# ThreadSanitizer: only dmjd and dmj, and only the test that loads one with the other.
echo "== tsan build (dmjd, dmj)"
cmake -S . -B build-test-tsan -DDMJ_WERROR=ON -DCMAKE_BUILD_TYPE=Debug -DDMJ_SANITIZE=thread \
    >/dev/null
cmake --build build-test-tsan -j "$JOBS" --target dmjd dmj
echo "== tsan test"
(cd build-test-tsan && ctest --output-on-failure --no-tests=error -R '^integration\.test_tsan$' \
    --output-junit junit.xml)
python3 scripts/check_skips.py build-test-tsan/junit.xml tsan "$ALLOW"
echo "== fuzz targets without a sanitizer (build only)"
CC=clang cmake -S . -B build-test-fuzz-plain -DDMJ_WERROR=ON -DDMJ_BUILD_FUZZERS=ON >/dev/null
cmake --build build-test-fuzz-plain -j "$JOBS" >/dev/null
echo "== fuzzers"
sh fuzz/run.sh "${DMJ_FUZZ_SECONDS:-20}"
