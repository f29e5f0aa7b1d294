#!/bin/sh
# demo.sh - from a fresh Debian 12 checkout to a running dmjd with demo data, in one command.
#
# Installs the build dependencies (scripts/deps.sh, as root or through sudo), builds dmj and
# dmjd (Release) into build/, generates 20,000 jobs over 5 teams with their fixtures into
# demo/, imports them into demo/store, prints the store's statistics and a curl command with
# the demo "read" key, then runs dmjd in the foreground (Ctrl-C stops it).
# Re-running reuses the store when the generated data is unchanged, else rebuilds it.
# Environment: PORT (default 8000), JOBS (default 20000), TEAMS (default 5).
set -eu

cd "$(dirname "$0")/.."
PORT=${PORT:-8000}
JOBS=${JOBS:-20000}
TEAMS=${TEAMS:-5}
case "$PORT$JOBS$TEAMS" in
    *[!0-9]*) echo "demo.sh: PORT, JOBS and TEAMS must be numbers" >&2; exit 2 ;;
esac

say() {
    printf '\n== %s\n' "$*"
}

say "build dependencies (scripts/deps.sh)"
sh scripts/deps.sh

say "build (Release) into build/"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build --target dmj dmjd -j "$(nproc 2>/dev/null || echo 2)"

say "demo data: $JOBS jobs, $TEAMS teams"
mkdir -p demo
build/dmj generate --jobs "$JOBS" --teams "$TEAMS" --out demo/jobs.ndjson \
    --fixtures-out demo/fixtures.json

# The store is reused only when it was built from exactly these two files; otherwise it is
# rebuilt from scratch so that no job of an older demo lingers in it.
stamp=$(cat demo/fixtures.json demo/jobs.ndjson | sha256sum | cut -d' ' -f1)
if [ -f demo/store/data.mdb ] && [ "$(cat demo/store.stamp 2>/dev/null || true)" = "$stamp" ]; then
    echo "demo/store is up to date: reused"
else
    rm -rf demo/store demo/store.stamp
    build/dmj import --db demo/store demo/fixtures.json demo/jobs.ndjson
    echo "$stamp" >demo/store.stamp
fi

say "store statistics"
build/dmj stats --db demo/store

# The raw key of the fixture labelled "read" (warehouse_view:read, owner alice, team 1).
if command -v python3 >/dev/null 2>&1; then
    key=$(python3 -c 'import json, sys
keys = json.load(open(sys.argv[1], encoding="utf-8"))["personal_api_keys"]
print(next(k["key"] for k in keys if k.get("label") == "read"))' demo/fixtures.json)
else
    key=$(grep '"label": *"read"' demo/fixtures.json | head -n 1 |
        sed 's/.*"key": *"\([^"]*\)".*/\1/')
fi
case "$key" in
    phx_*) ;;
    *) echo "demo.sh: no \"read\" key found in demo/fixtures.json" >&2; exit 1 ;;
esac

base="http://127.0.0.1:$PORT/api/environments"
say "dmjd on 127.0.0.1:$PORT - in another terminal, try:"
cat <<EOF

  curl -H 'Authorization: Bearer $key' '$base/1/data_modeling_jobs/?limit=2'
  curl -H 'Authorization: Bearer $key' '$base/@current/data_modeling_jobs/running/'
  curl -H 'Authorization: Bearer $key' '$base/2/data_modeling_jobs/recent/'

Other keys (scopes, teams, users) are in demo/fixtures.json. Ctrl-C stops the server.

EOF
exec build/dmjd --db demo/store --listen "127.0.0.1:$PORT"
