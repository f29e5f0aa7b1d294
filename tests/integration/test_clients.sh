#!/bin/bash
# dmjd with real HTTP clients: curl (HTTP/1.1, h2c prior knowledge and Upgrade, TLS with ALPN
# h2 and http/1.1), nghttp (h2c and h2 over TLS), and an h2load smoke run that must finish
# with no failed request.
set -u

BIN=${DMJ_BIN_DIR:-}
SHARED=${DMJ_SHARED_DIR:-}
for tool in curl nghttp h2load openssl; do
    if ! command -v "$tool" >/dev/null; then
        echo "skipped: $tool is not installed"
        exit 77
    fi
done
if [ ! -x "$BIN/dmjd" ] || [ ! -x "$BIN/dmj" ]; then
    echo "skipped: dmjd or dmj is not built in DMJ_BIN_DIR=$BIN"
    exit 77
fi

TMP=$(mktemp -d /tmp/dmj-test-clients-XXXXXX)
PID=
cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill -KILL "$PID"
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

FAILED=0
fail() {
    echo "FAIL: $*"
    FAILED=$((FAILED + 1))
}
ok() {
    echo "ok   $*"
}

# ---- a store ----------------------------------------------------------------------------
if [ -z "${DMJ_TEST_GEN_JOBS_PY:-}" ] && "$BIN/dmj" generate --help >/dev/null 2>&1; then
    "$BIN/dmj" generate --jobs 2000 --teams 2 --seed 1 --out "$TMP/jobs.ndjson" \
        --fixtures-out "$TMP/fixtures.json" || { echo "dmj generate failed"; exit 1; }
elif [ -f "$SHARED/tools/gen_jobs.py" ]; then
    python3 "$SHARED/tools/gen_jobs.py" --jobs 2000 --teams 2 --seed 1 \
        --out "$TMP/jobs.ndjson" --fixtures-out "$TMP/fixtures.json" >/dev/null ||
        { echo "gen_jobs.py failed"; exit 1; }
else
    echo "skipped: no \`dmj generate\` and no $SHARED/tools/gen_jobs.py"
    exit 77
fi
"$BIN/dmj" import --db "$TMP/db" "$TMP/fixtures.json" "$TMP/jobs.ndjson" >"$TMP/import.log" 2>&1 ||
    { echo "dmj import failed:"; cat "$TMP/import.log"; exit 1; }
KEY=$(python3 -c 'import json,sys
keys = json.load(open(sys.argv[1]))["personal_api_keys"]
print(next(k["key"] for k in keys if k.get("label") == "read"))' "$TMP/fixtures.json")
AUTH="Authorization: Bearer $KEY"
LIST=/api/environments/1/data_modeling_jobs/

openssl req -x509 -newkey rsa:2048 -nodes -keyout "$TMP/key.pem" -out "$TMP/cert.pem" \
    -days 2 -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    >/dev/null 2>&1 || { echo "openssl req failed"; exit 1; }

# ---- the server: a plain and a TLS listener ----------------------------------------------
"$BIN/dmjd" --db "$TMP/db" --threads 2 --metrics-on-api --listen http://127.0.0.1:0 \
    --listen https://127.0.0.1:0 --tls-cert "$TMP/cert.pem" --tls-key "$TMP/key.pem" \
    >"$TMP/out" 2>"$TMP/err" &
PID=$!
for _ in $(seq 200); do
    [ "$(grep -c '^listening on ' "$TMP/out")" -ge 2 ] && break
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.05
done
HTTP_PORT=$(sed -n 's|^listening on http://127\.0\.0\.1:\([0-9]*\)$|\1|p' "$TMP/out")
TLS_PORT=$(sed -n 's|^listening on https://127\.0\.0\.1:\([0-9]*\)$|\1|p' "$TMP/out")
if [ -z "$HTTP_PORT" ] || [ -z "$TLS_PORT" ]; then
    echo "dmjd did not start:"
    cat "$TMP/out" "$TMP/err"
    exit 1
fi
H=http://127.0.0.1:$HTTP_PORT
S=https://localhost:$TLS_PORT

# curl: status and protocol version of one request, body into $TMP/body.
check_curl() {
    local want=$1 what=$2
    shift 2
    local got
    got=$(curl -sS -o "$TMP/body" -w '%{http_code} %{http_version}' -H "$AUTH" "$@")
    if [ "$got" = "$want" ] && python3 -c 'import json,sys; json.load(open(sys.argv[1]))' \
        "$TMP/body" 2>/dev/null; then
        ok "$what ($got)"
    else
        fail "$what: got '$got', want '$want'"
    fi
}

check_curl "200 1.1" "curl HTTP/1.1" "$H$LIST?limit=3"
check_curl "200 2" "curl h2c prior knowledge" --http2-prior-knowledge "$H$LIST?limit=3"
check_curl "200 2" "curl h2c Upgrade" --http2 "$H$LIST?limit=3"
check_curl "200 2" "curl TLS ALPN h2" --http2 --cacert "$TMP/cert.pem" "$S$LIST?limit=3"
check_curl "200 1.1" "curl TLS ALPN http/1.1" --http1.1 --cacert "$TMP/cert.pem" \
    "$S$LIST?limit=3"
if grep -q "\"next\":\"https://localhost:$TLS_PORT$LIST" "$TMP/body"; then
    ok "links say https on the TLS listener"
else
    fail "links on the TLS listener: $(head -c 200 "$TMP/body")"
fi

# Several URLs on one curl connection: HTTP/1.1 keep-alive.
n=$(curl -sS -v -H "$AUTH" "$H$LIST?limit=1" "$H$LIST?limit=2" "$H/_health" 2>&1 >/dev/null |
    grep -c 'Re-using existing connection')
if [ "$n" = 2 ]; then ok "curl keep-alive"; else fail "curl keep-alive: reused $n times"; fi

# HEAD: the GET's Content-Length, no body.
len_get=$(curl -sS -H "$AUTH" "$H$LIST?limit=4" | wc -c)
len_head=$(curl -sS -I -H "$AUTH" "$H$LIST?limit=4" | tr -d '\r' |
    sed -n 's/^[Cc]ontent-[Ll]ength: //p')
if [ "$len_get" = "$len_head" ]; then ok "HEAD content-length"; else
    fail "HEAD content-length $len_head, GET body $len_get"; fi

# 401 over HTTP/2 carries WWW-Authenticate.
if curl -sS -D - -o /dev/null --http2-prior-knowledge "$H$LIST" | tr -d '\r' |
    grep -qi '^www-authenticate: Bearer$'; then ok "h2 401 WWW-Authenticate"; else
    fail "h2 401 without WWW-Authenticate"; fi

# nghttp: h2c with prior knowledge, and h2 over TLS.
for url in "$H$LIST?limit=2" "$S$LIST?limit=2"; do
    if nghttp -v -H "authorization: Bearer $KEY" "$url" 2>&1 | grep -q ':status: 200'; then
        ok "nghttp $url"
    else
        fail "nghttp $url"
    fi
done

# ---- h2load smoke: 2000 requests, 10 clients, 10 streams each ----------------------------
h2smoke() {
    local what=$1 n=$2
    shift 2
    local out
    out=$(h2load -n "$n" "$@" -H "authorization: Bearer $KEY" 2>&1)
    local line
    line=$(echo "$out" | grep '^requests:')
    if echo "$line" | grep -q "$n succeeded, 0 failed, 0 errored, 0 timeout" &&
        echo "$out" | grep -q "^status codes: $n 2xx"; then
        ok "h2load $what: $line"
    else
        fail "h2load $what: $out"
    fi
}
h2smoke "h2c" 2000 -c 10 -m 10 "$H$LIST?limit=5"
h2smoke "h2 over TLS" 300 -c 4 -m 10 "$S$LIST?limit=5"
h2smoke "HTTP/1.1" 300 -c 4 --h1 "$H$LIST?limit=5"

# The requests show in /metrics.
count=$(curl -sS "$H/metrics" |
    sed -n 's/^dmj_http_requests_total{endpoint="list",status="200"} //p')
if [ "${count:-0}" -ge 2600 ]; then ok "metrics count $count list requests"; else
    fail "metrics: list/200 is '${count:-}'"; fi

# ---- graceful stop ------------------------------------------------------------------------
kill -TERM "$PID"
status=0
wait "$PID" || status=$?
PID=
if [ "$status" = 0 ] && [ ! -s "$TMP/err" ]; then ok "SIGTERM exit 0"; else
    fail "SIGTERM exit $status: $(cat "$TMP/err")"; fi

echo "$FAILED failed"
[ "$FAILED" = 0 ]
