#!/bin/sh
# auth_timing.sh [BUILD] - builds tests/bench/auth_timing.c against BUILD's libdmj_core.a
# (default: build), makes a small store with `dmj generate` + `dmj import`, and prints how
# long a wrong key takes to be refused by how much of a real key it shares (medians, ns).
# A benchmark, not a test: it asserts nothing about time.
set -eu
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
[ -x "$BUILD/dmj" ] && [ -f "$BUILD/libdmj_core.a" ] || {
    echo "auth_timing: build dmj first (cmake --build $BUILD)" >&2
    exit 2
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# shellcheck disable=SC2046
gcc -O2 -std=c11 -D_GNU_SOURCE -Iinclude tests/bench/auth_timing.c "$BUILD/libdmj_core.a" \
    $(pkg-config --cflags --libs lmdb msgpack yajl libcrypto zlib) -lpthread -o "$tmp/auth_timing"
"$BUILD/dmj" generate --jobs 2000 --teams 2 --out "$tmp/jobs.ndjson" \
    --fixtures-out "$tmp/fixtures.json" >/dev/null
"$BUILD/dmj" import --db "$tmp/store" "$tmp/fixtures.json" "$tmp/jobs.ndjson" >/dev/null
key=$(python3 -c 'import json,sys
print(next(k["key"] for k in json.load(open(sys.argv[1]))["personal_api_keys"]
           if k.get("label") == "read"))' "$tmp/fixtures.json")
shift $(( $# > 0 ? 1 : 0 ))
"$tmp/auth_timing" --db "$tmp/store" --key "$key" "$@"
