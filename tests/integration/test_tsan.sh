#!/bin/bash
# test_tsan.sh - a ThreadSanitizer build of dmjd under load (h2load over h2c and HTTP/1.1,
# 1,000 held connections and 300 reset mid-answer, /metrics scrapes, the shared rate limiter,
# the access log; scaled down from test_load.py's 10,000; `running/?wait=` long-polls and
# events/ streams woken by the store watcher) while `dmj import` commits into the store it
# serves: neither reports anything, every request is answered, dmjd stops cleanly. Skipped (77) unless DMJ_BIN_DIR is a -DDMJ_SANITIZE=thread build; scripts/test.sh
# makes one in build-test-tsan and runs this test there.
set -u

BIN=${DMJ_BIN_DIR:-}
if ! grep -q '^DMJ_SANITIZE:[A-Z]*=thread$' "$BIN/CMakeCache.txt" 2>/dev/null; then
    echo "skipped: DMJ_BIN_DIR ($BIN) is not a -DDMJ_SANITIZE=thread build"
    exit 77
fi
for b in dmj dmjd; do
    [ -x "$BIN/$b" ] || { echo "skipped: $BIN/$b is not built"; exit 77; }
done
# "Reports nothing" means something only from an instrumented binary.
ldd "$BIN/dmjd" | grep -q libtsan || { echo "FAIL: $BIN/dmjd is not linked with libtsan"; exit 1; }
if ! command -v h2load >/dev/null; then
    # scripts/deps.sh --test installs it: under CI its absence is a failure, not a skip
    [ "${CI:-}" = true ] && { echo "FAIL: h2load (nghttp2-client) is not installed"; exit 1; }
    echo "skipped: h2load (nghttp2-client) is not installed"
    exit 77
fi

# 1,000 held connections on both sides: more descriptors than a default soft limit of 1024.
ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
tmp=$(mktemp -d)
dmjd_pid=""
cleanup() {
    [ -n "$dmjd_pid" ] && kill -9 "$dmjd_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*"
    exit 1
}

# halt_on_error=0: see every report, not just the first; the exit code says there was one.
export TSAN_OPTIONS="halt_on_error=0 exitcode=66 second_deadlock_stack=1"

"$BIN/dmj" generate --jobs 3000 --teams 2 --seed 5 --out "$tmp/jobs.ndjson" \
    --fixtures-out "$tmp/fixtures.json" >/dev/null 2>"$tmp/gen.err" || fail "generate: $(cat "$tmp/gen.err")"
"$BIN/dmj" generate --jobs 4000 --teams 2 --seed 6 --out "$tmp/more.ndjson" \
    --fixtures-out "$tmp/more-fixtures.json" >/dev/null 2>>"$tmp/gen.err" || fail "generate"
"$BIN/dmj" generate --jobs 1000 --teams 2 --seed 7 --out "$tmp/live.ndjson" \
    --fixtures-out "$tmp/live-fixtures.json" >/dev/null 2>>"$tmp/gen.err" || fail "generate"
"$BIN/dmj" import --db "$tmp/store" "$tmp/fixtures.json" "$tmp/jobs.ndjson" \
    >/dev/null 2>"$tmp/import0.err" || fail "first import: $(cat "$tmp/import0.err")"
# One large batch (70,000 jobs, past the thresholds of the flush's helper threads: the id
# sort's second half, the sorting thread, the heap prefault, the buffers freed beside the
# commit), into a store of its own.
"$BIN/dmj" generate --jobs 70000 --teams 3 --seed 8 --out "$tmp/large.ndjson" \
    >/dev/null 2>>"$tmp/gen.err" || fail "generate"
"$BIN/dmj" import --db "$tmp/large-store" "$tmp/large.ndjson" >/dev/null 2>"$tmp/large.err" ||
    fail "large import: $(tail -40 "$tmp/large.err")"
! grep -q ThreadSanitizer "$tmp/large.err" || fail "large import: $(head -60 "$tmp/large.err")"
"$BIN/dmj" verify --db "$tmp/large-store" >/dev/null 2>&1 || fail "large import: verify"
key=$(python3 -c 'import json,sys
print(next(k["key"] for k in json.load(open(sys.argv[1]))["personal_api_keys"]
           if k.get("label") == "read"))' "$tmp/fixtures.json")

"$BIN/dmjd" --db "$tmp/store" --listen 127.0.0.1:0 --threads 4 --metrics-on-api --streams-per-key 0 \
    --rate-limit 1000000/second --access-log "$tmp/access.log" --events-keepalive 1 \
    >"$tmp/dmjd.out" 2>"$tmp/dmjd.err" &
dmjd_pid=$!
port=""
for _ in $(seq 1 300); do
    port=$(sed -n 's|^listening on http://127.0.0.1:\([0-9]*\)$|\1|p' "$tmp/dmjd.out" 2>/dev/null)
    [ -n "$port" ] && break
    kill -0 "$dmjd_pid" 2>/dev/null || fail "dmjd did not start: $(cat "$tmp/dmjd.err")"
    sleep 0.1
done
[ -n "$port" ] || fail "dmjd did not say where it listens"
base="http://127.0.0.1:$port/api/environments/1/data_modeling_jobs"

# Writers while the load runs: the rest of the history in batches (many commits), then again
# (every job replaced).
(
    for round in 1 2; do
        "$BIN/dmj" import --db "$tmp/store" --batch 500 "$tmp/more.ndjson" \
            >/dev/null 2>>"$tmp/import.err" || echo "import round $round failed" >>"$tmp/import.fail"
    done
) &
import_pid=$!
(
    for _ in $(seq 1 40); do
        curl -s -o /dev/null "http://127.0.0.1:$port/metrics"
        curl -s -o /dev/null -H "Authorization: Bearer $key" "$base/?limit=3"
        curl -s -o /dev/null "$base/?personal_api_key=$key&limit=1"
    done
) &
scrape_pid=$!
# Many open connections, and clients that reset theirs mid-answer, during the rest.
/usr/bin/python3 - "$port" "$key" >"$tmp/conns.out" 2>&1 <<'PY' &
import socket, struct, sys, time
port, key = int(sys.argv[1]), sys.argv[2]
held = []
for i in range(1000):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(b"GET /_health HTTP/1.1\r\nHost: t\r\n\r\n")
    held.append(s)
for s in held:
    assert b" 200 " in s.recv(4096).split(b"\r\n")[0]
for i in range(300):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.sendall(("GET /api/environments/1/data_modeling_jobs/?limit=500&n=%d HTTP/1.1\r\n"
               "Host: t\r\nAuthorization: Bearer %s\r\n\r\n" % (i, key)).encode())
    s.close()
time.sleep(2)
print("held 1000 connections, reset 300")
PY
conns_pid=$!
# Long-polls and event streams, woken by the watcher thread as the imports commit.
/usr/bin/python3 - "$port" "$key" "$BIN/dmj" "$tmp/store" "$tmp/live.ndjson" \
    >"$tmp/live.out" 2>&1 <<'PY' &
import http.client, subprocess, sys, threading, time
port, key, dmj, store, jobs = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
base = "/api/environments/%d/data_modeling_jobs/"
stop = time.time() + 20
counts = {"200": 0, "304": 0, "other": 0, "events": 0, "streams": 0}
lock = threading.Lock()
def poller(team):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    etag = None
    while time.time() < stop:
        h = {"Authorization": "Bearer " + key}
        if etag:
            h["If-None-Match"] = etag
        c.request("GET", base % team + "running/?wait=2", headers=h)
        r = c.getresponse()
        r.read()
        with lock:
            counts[str(r.status) if r.status in (200, 304) else "other"] += 1
        etag = r.getheader("ETag") or etag
def streamer(team):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("GET", base % team + "events/", headers={"Authorization": "Bearer " + key})
    r = c.getresponse()
    with lock:
        counts["streams" if r.status == 200 else "other"] += 1
    while r.status == 200 and time.time() < stop:
        line = r.readline()  # a keep-alive comment at least every second
        if not line:
            break
        if line.startswith(b"id: "):
            with lock:
                counts["events"] += 1
    c.close()
threads = [threading.Thread(target=poller, args=(1 + i % 2,)) for i in range(16)]
threads += [threading.Thread(target=streamer, args=(1 + i % 2,)) for i in range(4)]
for t in threads:
    t.start()
# New jobs (created events, a changed `running`) once the streams and long-polls are open:
# the imports above may be done by then.
time.sleep(3)
subprocess.run([dmj, "import", "--db", store, "--batch", "200", jobs], check=True,
               stdout=subprocess.DEVNULL)
for t in threads:
    t.join()
print(counts)
assert counts["other"] == 0 and counts["streams"] == 4, counts
assert counts["events"] > 0 and counts["200"] > 0 and counts["304"] > 0, counts
PY
live_pid=$!
h2load -n 6000 -c 40 -m 10 -H "Authorization: Bearer $key" \
    "$base/?limit=10" "$base/recent/" "$base/running/" "http://127.0.0.1:$port/_health" \
    >"$tmp/h2.out" 2>&1 || fail "h2load (h2c): $(tail -5 "$tmp/h2.out")"
h2load --h1 -n 3000 -c 40 -H "Authorization: Bearer $key" "$base/?limit=5" \
    >"$tmp/h1.out" 2>&1 || fail "h2load (h1): $(tail -5 "$tmp/h1.out")"
wait "$import_pid"
wait "$scrape_pid"
wait "$conns_pid" || fail "connection load: $(tail -5 "$tmp/conns.out")"
wait "$live_pid" || fail "long-polls and streams: $(tail -5 "$tmp/live.out")"
echo "  long-polls and streams: $(tail -1 "$tmp/live.out")"

kill -TERM "$dmjd_pid"
status=0
wait "$dmjd_pid" || status=$?
dmjd_pid=""

for f in h2 h1; do
    grep -E "^requests:|^status codes:" "$tmp/$f.out" | sed "s/^/  $f: /"
    done_n=$(sed -n 's/^requests: [0-9]* total, [0-9]* started, \([0-9]*\) done.*/\1/p' "$tmp/$f.out")
    ok_n=$(sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' "$tmp/$f.out")
    total=$(sed -n 's/^requests: \([0-9]*\) total.*/\1/p' "$tmp/$f.out")
    [ -n "$total" ] && [ "$done_n" = "$total" ] && [ "$ok_n" = "$total" ] ||
        fail "$f: not every request answered 2xx (total $total, done $done_n, 2xx $ok_n)"
done
[ ! -e "$tmp/import.fail" ] || fail "$(cat "$tmp/import.fail"): $(tail -20 "$tmp/import.err")"
for f in dmjd.err import0.err import.err; do
    if grep -q "ThreadSanitizer" "$tmp/$f" 2>/dev/null; then
        echo "ThreadSanitizer reports in $f:"
        head -80 "$tmp/$f"
        fail "ThreadSanitizer reported in $f"
    fi
done
[ "$status" -eq 0 ] || fail "dmjd exited $status: $(tail -20 "$tmp/dmjd.err")"
[ ! -s "$tmp/dmjd.err" ] || fail "dmjd wrote to stderr: $(head -20 "$tmp/dmjd.err")"
"$BIN/dmj" verify --db "$tmp/store" >/dev/null 2>"$tmp/verify.err" ||
    fail "verify: $(tail -5 "$tmp/verify.err")"
echo "ok: no ThreadSanitizer report from dmjd (4 workers) or dmj import; $(wc -l <"$tmp/access.log") requests logged"
