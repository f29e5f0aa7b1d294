#!/bin/bash
# PostgreSQL as a real source: a throw-away PostgreSQL 15 on a unix socket fills
# posthog_datamodelingjob with awkward rows; both COPY forms of row_to_json are piped into
# `dmj import` (CSV form as is, text form with --pg-copy), and each store's export must
# match the table row for row, field by field, timestamps compared as UTC microseconds.
set -euo pipefail

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
if [ ! -x "$PGBIN/initdb" ]; then
    echo "SKIP: $PGBIN/initdb not found (Debian's postgresql-15 is not installed)"
    exit 77
fi
BIN=${DMJ_BIN_DIR:-build}
DMJ="$(cd "$BIN" && pwd)/dmj"
PSQL="$PGBIN/psql"
[ -x "$PSQL" ] || PSQL=psql

TMP=$(mktemp -d /tmp/dmj-test-pg.XXXXXX)
chmod 755 "$TMP"
PGDATA="$TMP/pgdata"
mkdir "$PGDATA" "$TMP/sock"
# PostgreSQL refuses to run as root: run it as an unprivileged user that owns its dirs.
AS=()
if [ "$(id -u)" = 0 ]; then
    PGUSER_OS=nobody
    chown "$PGUSER_OS" "$PGDATA" "$TMP/sock"
    AS=(runuser -u "$PGUSER_OS" --)
fi

cleanup() {
    "${AS[@]}" "$PGBIN/pg_ctl" -D "$PGDATA" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT

"${AS[@]}" "$PGBIN/initdb" -D "$PGDATA" -A trust -U postgres -E UTF8 --locale=C --no-sync \
    >"$TMP/initdb.log" 2>&1 || { cat "$TMP/initdb.log"; exit 1; }
"${AS[@]}" "$PGBIN/pg_ctl" -D "$PGDATA" -w -l "$TMP/sock/pg.log" \
    -o "-c listen_addresses= -k $TMP/sock -c fsync=off" start >/dev/null \
    || { cat "$TMP/sock/pg.log"; exit 1; }

# A session time zone with a half-hour offset, so that row_to_json writes +05:30.
export PGOPTIONS="-c TimeZone=Asia/Kolkata"
psql() { "$PSQL" -X -q -v ON_ERROR_STOP=1 -h "$TMP/sock" -U postgres -d postgres "$@"; }

psql <<'SQL'
create table posthog_datamodelingjob (
    id uuid primary key, team_id int not null, saved_query_id uuid null,
    status varchar(400) not null, rows_materialized int not null, error text null,
    created_at timestamptz not null, last_run_at timestamptz null,
    workflow_id varchar(400) null, workflow_run_id varchar(400) null, rows_expected int null,
    engine varchar(20) not null default 'clickhouse', run_mode varchar(20) null,
    parent_workflow_id varchar(400) null, storage_delta_mib float null,
    created_by_id int null, updated_at timestamptz null);

insert into posthog_datamodelingjob
select md5('job' || g)::uuid,
       1 + g % 3,
       case when g % 4 = 0 then null else md5('sq' || (g % 7))::uuid end,
       (array['Running', 'Completed', 'Failed', 'Cancelled', 'Skipped'])[1 + g % 5],
       (g * 7919) % 100000,
       case g % 9
           when 0 then null
           when 1 then E'quote " and \\ backslash and \\n literal'
           when 2 then E'line\nbreak\tand tab\r\n'
           when 3 then 'unicode é ✓ 💥 ' || chr(8232) || chr(8233) || ' end'
           when 4 then ''
           when 5 then E'control \x01\x1f del ' || chr(127)
           when 6 then E'{"json": "in \\"text\\""}'
           when 7 then E'\\\\server\\share\\x41\\101'
           else repeat('long ', 200)
       end,
       -- whole seconds, 1-5 digit fractions, microseconds
       timestamptz '2024-03-01 00:00:00+00' + g * interval '1 second' * 37
           + case g % 4 when 0 then interval '0' when 1 then interval '0.5 second'
                        when 2 then interval '0.01234 second' else interval '0.123456 second' end,
       case when g % 5 = 0 then null
            else timestamptz '2024-03-01 00:00:00+00' + g * interval '1 second' * 37
                 + interval '90.25 second' end,
       case when g % 8 = 0 then null else 'materialize-view-' || g end,
       case when g % 10 = 0 then null else md5('run' || g) end,
       case when g % 3 = 0 then null else g * 3 end,
       case when g % 10 = 0 then 'duckgres' else 'clickhouse' end,
       case when g % 2 = 0 then null else 'full_refresh' end,
       case when g % 6 = 0 then 'parent-' || g else null end,
       case when g % 4 = 0 then null else g / 7.0 end,
       case when g % 5 = 0 then null else g % 50 end,
       case when g % 3 = 0 then null
            else timestamptz '2024-04-01 12:00:00-07' + g * interval '1 millisecond' end
from generate_series(1, 3000) g;
SQL

rows=$(psql -At -c "select count(*) from posthog_datamodelingjob")
echo "table: $rows rows"

# The CSV form with impossible quote/delimiter characters: the JSON comes out untouched.
psql -c "\\copy (select row_to_json(j) from posthog_datamodelingjob j) to stdout with (format csv, quote e'\\x01', delimiter e'\\x02')" \
    >"$TMP/csv.ndjson"
# The default text form doubles every backslash: --pg-copy undoes it.
psql -c "\\copy (select row_to_json(j) from posthog_datamodelingjob j) to stdout" \
    >"$TMP/text.ndjson"
if cmp -s "$TMP/csv.ndjson" "$TMP/text.ndjson"; then
    echo "FAIL: the two COPY forms should differ (backslashes)"; exit 1
fi

"$DMJ" import --db "$TMP/csv-db" - <"$TMP/csv.ndjson"
"$DMJ" import --db "$TMP/text-db" --pg-copy - <"$TMP/text.ndjson"
if "$DMJ" import --db "$TMP/wrong-db" - <"$TMP/text.ndjson" 2>"$TMP/wrong.err"; then
    # Without --pg-copy the doubled backslashes may still parse; the values must then differ.
    echo "note: the text form parsed without --pg-copy (values compared below differ)"
fi
"$DMJ" export --db "$TMP/csv-db" >"$TMP/csv.export"
"$DMJ" export --db "$TMP/text-db" >"$TMP/text.export"
"$DMJ" verify --db "$TMP/csv-db" >/dev/null
"$DMJ" verify --db "$TMP/text-db" >/dev/null

# The reference: the table itself, timestamps as UTC microseconds computed by PostgreSQL.
psql -At >"$TMP/reference.ndjson" <<'SQL'
select json_build_object(
    'id', id, 'team_id', team_id, 'saved_query_id', saved_query_id, 'status', status,
    'rows_materialized', rows_materialized, 'error', error,
    'created_at', (extract(epoch from created_at) * 1000000)::bigint,
    'last_run_at', (extract(epoch from last_run_at) * 1000000)::bigint,
    'workflow_id', workflow_id, 'workflow_run_id', workflow_run_id,
    'rows_expected', rows_expected, 'engine', engine, 'run_mode', run_mode,
    'parent_workflow_id', parent_workflow_id, 'storage_delta_mib', storage_delta_mib,
    'created_by_id', created_by_id,
    'updated_at', (extract(epoch from updated_at) * 1000000)::bigint)
from posthog_datamodelingjob order by id
SQL

/usr/bin/python3 - "$TMP" <<'PY'
import datetime, json, sys

tmp = sys.argv[1]
TS = ("created_at", "last_run_at", "updated_at")


def us(text):
    if text is None:
        return None
    dt = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    d = dt - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    return (d.days * 86400 + d.seconds) * 1000000 + d.microseconds


def load(name, parse_ts):
    rows = {}
    with open("%s/%s" % (tmp, name), "rb") as f:
        for line in f.read().split(b"\n"):
            if not line.strip():
                continue
            r = json.loads(line)
            if parse_ts:
                for k in TS:
                    r[k] = us(r.get(k))
            rows[r["id"]] = r
    return rows


ref = load("reference.ndjson", False)
# row_to_json really writes offsets and short fractions: check the input had them.
raw = open("%s/csv.ndjson" % tmp, encoding="utf-8").read()
assert "+05:30" in raw and '.5+05:30"' in raw, "expected +05:30 and short fractions in COPY output"
failed = 0
for name in ("csv.export", "text.export"):
    got = load(name, True)
    if set(got) != set(ref):
        print("FAIL %s: %d rows, table has %d" % (name, len(got), len(ref)))
        failed += 1
        continue
    bad = 0
    for i, r in ref.items():
        for k, v in r.items():
            if got[i].get(k) != v:
                bad += 1
                if bad <= 5:
                    print("FAIL %s: row %s field %s: %r != table %r" % (name, i, k, got[i].get(k), v))
    print("%s: %d rows x %d fields compared, %d differences" % (name, len(ref), len(next(iter(ref.values()))), bad))
    failed += bad
wrong = open("%s/wrong.err" % tmp, "rb").read()
print("without --pg-copy:", wrong.decode("utf-8", "replace").strip().splitlines()[:1])
sys.exit(1 if failed else 0)
PY
# The text form must not be taken as is: with doubled backslashes it fails or differs.
if [ -d "$TMP/wrong-db" ] && "$DMJ" export --db "$TMP/wrong-db" 2>/dev/null | cmp -s - "$TMP/text.export"; then
    echo "FAIL: the text form imported without --pg-copy gave the same data"
    exit 1
fi
echo "PASS: both COPY forms match the table"
