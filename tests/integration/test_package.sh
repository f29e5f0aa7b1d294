#!/bin/bash
# The Debian package end to end, as an operator's first day: packaging/build-deb.sh builds it,
# dpkg installs it on this machine; the store in /var/lib/dmj is filled from a private
# PostgreSQL 15 holding PostHog's tables by the documented pipes (and dmj sync --once as the
# packaged unit runs it); a key is made the documented way; the packaged dmjd, run as its unit
# runs it, answers every endpoint, reopens its access log on SIGHUP after a rotation, and is
# restarted with --reuse-port while a client requests all the time; a backup is taken outside
# /var/lib/dmj; dpkg -r keeps the data and dpkg -P leaves the machine exactly as it was before
# the test, the backup aside.
set -u

SRC=${DMJ_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BIN=${DMJ_BIN_DIR:-}
STATE=/var/lib/dmj

skip() {
    echo "skipped: $*"
    exit 77
}

# A tool one check needs is missing: that check is left out with a note, or under CI=true
# the test fails (scripts/deps.sh --test installs every tool named here).
missing() {
    if [ "${CI:-}" = true ]; then
        echo "FAIL: $* (CI=true: a check that cannot run is a failure)"
        exit 1
    fi
    echo "note: $*"
}

# ---- may this run here? -----------------------------------------------------------------
if [ "$(id -u)" != 0 ]; then
    skip "not root: the test installs and purges the package with dpkg"
fi
for tool in dpkg dpkg-deb dpkg-query cmake curl setpriv runuser gzip flock python3; do
    if ! command -v "$tool" >/dev/null; then
        skip "$tool is not installed"
    fi
done
# CI runs the suite twice (release, then ASan+UBSan): the package is built and installed once.
if [ -n "$BIN" ] && [ -f "$BIN/CMakeCache.txt" ] &&
    ! grep -q '^DMJ_SANITIZE:STRING=$' "$BIN/CMakeCache.txt"; then
    skip "$BIN is a sanitizer build: the package test runs in the release run only"
fi

# Runs from other build directories (and checkouts) wait for each other: they install the
# same package. The lock file stays in /run/lock (a tmpfs), which is what it is for; it is not
# this script, which git or an editor may replace by a new file while another run holds it.
LOCK=/run/lock/dmj-test-package.lock
[ -d /run/lock ] || LOCK=/tmp/dmj-test-package.lock
exec 9>>"$LOCK"
if ! flock -w 300 9; then
    echo "FAIL: another test_package.sh held the lock for 5 minutes"
    exit 1
fi

# A machine that already has any of it is not disturbed: the test would replace or purge it.
status=$(dpkg-query -W -f '${db:Status-Status}' dmj 2>/dev/null || true)
if [ -n "$status" ] && [ "$status" != not-installed ]; then
    skip "a dmj package is on this machine ($status): the test would replace and purge it"
fi
if getent passwd dmj >/dev/null || getent group dmj >/dev/null; then
    skip "a dmj user or group exists already: the test would delete it on purge"
fi
for p in "$STATE" /etc/default/dmjd /usr/bin/dmj /usr/sbin/dmjd /lib/systemd/system/dmjd.service \
    /var/log/dmj /etc/dmj; do
    if [ -e "$p" ]; then
        skip "$p exists already: the package would take it over"
    fi
done

TMP=$(mktemp -d /tmp/dmj-test-package-XXXXXX)
PID=
DPID=
NPID=
LOOP=
OURS=
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PGDIR=
BACKUPS=
BACKUP=
# shellcheck disable=SC2317 # called by the trap
cleanup() {
    local p
    for p in "$DPID" "$PID" "$NPID" "$LOOP"; do
        if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
            kill -KILL "$p"
        fi
    done
    if [ -n "$PGDIR" ]; then
        runuser -u nobody -- "$PGBIN/pg_ctl" -D "$PGDIR/data" -m immediate stop >/dev/null 2>&1
        rm -rf "$PGDIR"
    fi
    [ -z "$BACKUPS" ] || rm -rf "$BACKUPS"
    # A failure anywhere still leaves the machine as it was (all checked absent above). Nothing
    # is touched before this run started installing.
    if [ -z "$OURS" ]; then
        rm -rf "$TMP"
        return
    fi
    if dpkg-query -W -f '${db:Status-Status}' dmj 2>/dev/null | grep -qv '^not-installed$'; then
        dpkg -P dmj >/dev/null 2>&1 || dpkg -P --force-all dmj >/dev/null 2>&1
    fi
    if getent passwd dmj >/dev/null; then
        userdel dmj 2>/dev/null
    fi
    if getent group dmj >/dev/null; then
        groupdel dmj 2>/dev/null
    fi
    rm -rf "$STATE" "$TMP" /var/log/dmj
}
trap cleanup EXIT
trap 'exit 1' INT TERM

FAILED=0
fail() {
    echo "FAIL: $*"
    FAILED=$((FAILED + 1))
}
ok() {
    echo "ok   $*"
}
# "ok" for a group of checks only when none of them failed since `MARK=$FAILED`.
MARK=0
ok_since_mark() {
    if [ "$FAILED" = "$MARK" ]; then
        ok "$@"
    fi
    MARK=$FAILED
}
# Stops at the first failure that makes the rest meaningless.
fatal() {
    echo "FAIL: $*"
    exit 1
}

# What the package may touch, as names, owners and modes: equal before install and after purge.
# Only the top of /var/lib (and all of /var/lib/dmj), as other tests may make databases below.
snapshot() {
    local d
    for d in /usr/bin /usr/sbin /usr/share/man/man1 /usr/share/man/man8 /usr/share/doc \
        /lib/systemd/system /etc/default /etc/systemd/system "$STATE" \
        /var/lib/systemd/deb-systemd-helper-enabled /var/lib/systemd/deb-systemd-helper-masked; do
        if [ -d "$d" ]; then
            find "$d" -maxdepth 3 -printf '%p %u %g %m %y\n' 2>/dev/null
        fi
    done | sort
    find /var/lib -maxdepth 1 -printf '%p %u %g %m %y\n' | sort
    find /var/lib/dpkg/info -maxdepth 1 -name 'dmj.*' | sort
    dpkg-statoverride --list | grep " $STATE\$" || true
    getent passwd | sort
    getent group | sort
}
snapshot >"$TMP/before"

# ---- build ------------------------------------------------------------------------------
start=$(date +%s)
if ! JOBS=2 "$SRC/packaging/build-deb.sh" "$TMP/out" "$TMP/build" >"$TMP/build.log" 2>&1; then
    cat "$TMP/build.log"
    fatal "packaging/build-deb.sh failed"
fi
DEB=$(tail -n 1 "$TMP/build.log")
case "$DEB" in
    "$TMP"/out/dmj_*_amd64.deb | "$TMP"/out/dmj_*_"$(dpkg --print-architecture)".deb) ;;
    *) fatal "build-deb.sh printed '$DEB', not the path of dmj_<version>_<arch>.deb" ;;
esac
[ -f "$DEB" ] || fatal "$DEB was not written"
ok "built $(basename "$DEB") in $(($(date +%s) - start)) s"

depends=$(dpkg-deb -f "$DEB" Depends)
for lib in adduser libc6 liblmdb0 libyajl2 libssl3 zlib1g libh2o-evloop; do
    case "$depends" in
        *"$lib"*) ;;
        *) fail "Depends lacks $lib: $depends" ;;
    esac
done

contents=$(dpkg-deb -c "$DEB" | awk '{ print $6 }')
for f in ./usr/bin/dmj ./usr/sbin/dmjd ./usr/share/man/man1/dmj.1.gz \
    ./usr/share/man/man8/dmjd.8.gz ./lib/systemd/system/dmjd.service ./etc/default/dmjd \
    ./usr/share/doc/dmj/examples/haproxy/dmjd-replicas.cfg ./usr/share/doc/dmj/docs/design.md \
    ./usr/share/doc/dmj/copyright; do
    if ! grep -qx "$f" <<<"$contents"; then
        fail "the package lacks $f"
    fi
done
if grep -v '^\./\(usr/\|lib/systemd/system/\|etc/default/\|etc/logrotate\.d/\|etc/$\|lib/$\|lib/systemd/$\|$\)' \
    <<<"$contents" |
    grep -q .; then
    fail "the package holds files outside /usr, /lib/systemd/system, /etc/default and /etc/logrotate.d: $contents"
fi
if [ "$(dpkg-deb -c "$DEB" | awk '$2 != "root/root"' | wc -l)" != 0 ]; then
    fail "files in the package not owned by root:root"
fi

# Debian's own checker, when it is installed: no error and no warning.
LINTED=
if command -v lintian >/dev/null; then
    LINTED=1
    if ! lintian --fail-on error,warning "$DEB" >"$TMP/lintian.log" 2>&1; then
        fail "lintian: $(grep -v 'root privileges' "$TMP/lintian.log")"
    fi
else
    missing "lintian is not installed: the package was not linted"
fi
ok_since_mark "contents; Depends: $depends${LINTED:+; lintian clean}"

# ---- install ----------------------------------------------------------------------------
# dpkg fails at once while apt or another dpkg holds its lock: wait up to a minute for it.
# Standard error of the last attempt is in $TMP/dpkg.err.
dpkg_wait() {
    local _
    for _ in $(seq 60); do
        if dpkg "$@" 2>"$TMP/dpkg.err"; then
            return 0
        fi
        if ! grep -q 'frontend lock\|dpkg status database is locked' "$TMP/dpkg.err"; then
            return 1
        fi
        sleep 1
    done
    return 1
}
OURS=1
if ! dpkg_wait -i "$DEB" >"$TMP/install.log"; then
    cat "$TMP/install.log" "$TMP/dpkg.err"
    fatal "dpkg -i failed"
fi
[ "$(dpkg-query -W -f '${db:Status-Status}' dmj)" = installed ] || fatal "dmj is not installed"
ok "dpkg -i"

for f in /usr/bin/dmj /usr/sbin/dmjd; do
    [ -x "$f" ] || fail "$f is not an executable"
done
"/usr/sbin/dmjd" --help >"$TMP/dmjd.help" 2>&1 || fail "dmjd --help failed"
"/usr/bin/dmj" --help >"$TMP/dmj.help" 2>&1 || fail "dmj --help failed"
if ! dpkg-query -W -f '${Conffiles}\n' dmj | grep -q '^ /etc/default/dmjd '; then
    fail "/etc/default/dmjd is not a conffile"
fi
grep -q '^DMJD_OPTS=".*--db /var/lib/dmj/store.*--listen ' /etc/default/dmjd ||
    fail "/etc/default/dmjd does not set DMJD_OPTS with --db /var/lib/dmj/store --listen"

MARK=$FAILED
# Manual pages: gzip, valid roff, and every option --help lists is documented.
for page in /usr/share/man/man1/dmj.1.gz /usr/share/man/man8/dmjd.8.gz; do
    gzip -t "$page" || fail "$page is not gzip"
    if command -v groff >/dev/null; then
        warn=$(zcat "$page" | groff -man -ww -z 2>&1)
        [ -z "$warn" ] || fail "groff warns about $page: $warn"
    else
        missing "groff is not installed (package groff-base): $page not checked"
    fi
done
zcat /usr/share/man/man8/dmjd.8.gz | sed 's/\\-/-/g; s/\\f[BIRP]//g' >"$TMP/dmjd.man"
zcat /usr/share/man/man1/dmj.1.gz | sed 's/\\-/-/g; s/\\f[BIRP]//g' >"$TMP/dmj.man"
# shellcheck disable=SC2013 # options and commands are single words
for opt in $(grep -o -- '--[a-z][a-z-]*' "$TMP/dmjd.help" | sort -u); do
    grep -q -- "$opt" "$TMP/dmjd.man" || fail "dmjd(8) does not document $opt"
done
# shellcheck disable=SC2013
for cmd in $(awk '/^  [a-z]+  / { print $1 }' "$TMP/dmj.help"); do
    # an entry is the line after .TP that starts with the command, bold
    awk -v c="$cmd" 'p && ($1 == c || ($1 == ".B" && $2 == c)) { f = 1 } { p = ($0 == ".TP") }
        END { exit !f }' "$TMP/dmj.man" || fail "dmj(1) has no entry for the command $cmd"
    for opt in $(/usr/bin/dmj "$cmd" --help 2>&1 | grep -o -- '--[a-z][a-z-]*' | sort -u); do
        grep -q -- "$opt" "$TMP/dmj.man" || fail "dmj(1) does not document $cmd $opt"
    done
done
ok_since_mark "binaries, conffile, manual pages"

# The user and its directory.
MARK=$FAILED
IFS=: read -r _ _ uid gid _ home shell <<<"$(getent passwd dmj)"
if [ -z "${uid:-}" ]; then
    fatal "postinst made no dmj user"
fi
[ "$uid" -lt 1000 ] || fail "dmj is not a system user (uid $uid)"
[ "$home" = "$STATE" ] || fail "dmj's home is $home, not $STATE"
case "$shell" in
    */nologin | /bin/false) ;;
    *) fail "dmj has a login shell: $shell" ;;
esac
[ "$(getent group dmj | cut -d: -f3)" = "$gid" ] || fail "dmj's primary group is not dmj"
[ "$(stat -c '%U:%G %a' "$STATE")" = "dmj:dmj 700" ] ||
    fail "$STATE is $(stat -c '%U:%G %a' "$STATE"), not dmj:dmj 700"
ok_since_mark "system user dmj ($uid:$gid, $shell), $STATE dmj:dmj 700"

# The unit: systemd accepts it, runs dmjd as dmj with the hardening, and scores it well.
UNIT=/lib/systemd/system/dmjd.service
HAVE_ANALYZE=
if command -v systemd-analyze >/dev/null; then
    HAVE_ANALYZE=1
    # verify also looks the unit's Documentation= pages up with man(1), when there is one
    man_opt=--man=yes
    command -v man >/dev/null || man_opt=--man=no
    if ! systemd-analyze verify "$man_opt" "$UNIT" >"$TMP/verify.log" 2>&1 ||
        [ -s "$TMP/verify.log" ]; then
        fail "systemd-analyze verify $UNIT: $(cat "$TMP/verify.log")"
    fi
else
    missing "systemd-analyze is not installed (package systemd): the unit is not verified"
fi
# shellcheck disable=SC2016 # $DMJD_OPTS is the unit's own, literally
for line in User=dmj Group=dmj EnvironmentFile=/etc/default/dmjd \
    'ExecStart=/usr/sbin/dmjd $DMJD_OPTS' Restart=on-failure KillSignal=SIGTERM \
    NoNewPrivileges=yes ProtectSystem=strict "ReadWritePaths=$STATE" PrivateTmp=yes \
    ProtectHome=yes 'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX' CapabilityBoundingSet= \
    SystemCallFilter=@system-service ProtectKernelTunables=yes ProtectKernelModules=yes \
    ProtectControlGroups=yes RestrictNamespaces=yes LockPersonality=yes \
    MemoryDenyWriteExecute=yes RestrictRealtime=yes RestrictSUIDSGID=yes PrivateDevices=yes \
    ProtectClock=yes ProtectHostname=yes ProtectKernelLogs=yes ProtectProc=invisible \
    UMask=0077 SystemCallArchitectures=native WantedBy=multi-user.target; do
    grep -qxF -- "$line" "$UNIT" || fail "$UNIT lacks the line $line"
done
if [ "$(grep -c '^ReadWritePaths=' "$UNIT")" != 1 ]; then
    fail "$UNIT has more than one ReadWritePaths="
fi
score=
if [ -n "$HAVE_ANALYZE" ]; then
    score=$(systemd-analyze security --offline=yes "$UNIT" 2>/dev/null |
        sed -n 's/.*Overall exposure level for dmjd.service: \([0-9.]*\).*/\1/p')
fi
if [ -z "$HAVE_ANALYZE" ]; then
    :
elif [ -z "$score" ]; then
    fail "systemd-analyze security --offline=yes gave no exposure level"
elif ! awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }'; then
    fail "exposure level $score (more than 2.0)"
else
    ok "systemd-analyze verify; security exposure level $score"
fi
if command -v deb-systemd-helper >/dev/null; then
    [ -L /etc/systemd/system/multi-user.target.wants/dmjd.service ] ||
        fail "postinst did not enable dmjd.service"
fi

# ---- the installed binaries as dmj, on a store in /var/lib/dmj --------------------------
MARK=$FAILED
as_dmj() {
    (cd "$STATE" && runuser -u dmj -- "$@")
}
as_dmj /usr/bin/dmj generate --jobs 300 --teams 3 --seed 7 --out "$STATE/jobs.ndjson" \
    --fixtures-out "$STATE/fixtures.json" >"$TMP/generate.log" 2>&1 ||
    fatal "dmj generate as dmj failed: $(cat "$TMP/generate.log")"

# PostHog's PostgreSQL: a private PostgreSQL 15 (tests/integration/pg_helper.py) with PostHog's
# tables, holding that history and those identities, plus jobs whose text is hard to carry
# (quotes, backslashes, escapes as literal text) and a running job of a workflow that is not a
# materialization. Prints the cluster's directory and its connection string.
pg_start() {
    python3 - "$SRC/tests/integration" "$STATE/fixtures.json" "$STATE/jobs.ndjson" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import pg_helper  # noqa: E402

pg = pg_helper.Postgres()
pg.create_schema()
pg.load_fixtures(sys.argv[2])
pg.load_jobs(sys.argv[3])
pg.insert_awkward_jobs(40, teams=2)
pg.execute("""
insert into posthog_datamodelingjob (id, team_id, status, rows_materialized, created_at,
    workflow_id, engine, updated_at)
values ('0d2a1b7e-5f7a-4a51-9d55-6d0c5f3b0001', 1, 'Running', 0, now(), 'data-import-sync',
    'clickhouse', now());
update posthog_personalapikey set created_at = '2024-02-03 04:05:06+00';
""")
print(pg.dir)
print(pg.conninfo)
PY
}
# psql's \copy of a query to standard output, with COPY options when given
pg_copy() {
    "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -d "$CONNINFO" \
        -c "\\copy ($1) to stdout${2:+ with ($2)}"
}
pg_count() {
    "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -d "$CONNINFO" -c "select count(*) from $1"
}
JOBS_SQL="select row_to_json(j) from posthog_datamodelingjob j"
CSV="format csv, quote e'\\x01', delimiter e'\\x02'"
CONNINFO=
if [ -x "$PGBIN/initdb" ] && pg_start >"$TMP/pg.out" 2>"$TMP/pg.err"; then
    PGDIR=$(sed -n 1p "$TMP/pg.out")
    CONNINFO=$(sed -n 2p "$TMP/pg.out")
fi
if [ -z "$CONNINFO" ]; then
    missing "no PostgreSQL 15 ($PGBIN; package postgresql-15): $(tail -n 3 "$TMP/pg.err" 2>/dev/null)"
    as_dmj /usr/bin/dmj import --db "$STATE/store" "$STATE/fixtures.json" "$STATE/jobs.ndjson" \
        >"$TMP/import.log" 2>&1 || fatal "dmj import as dmj failed: $(cat "$TMP/import.log")"
    NJOBS=300
else
    # The documented pipes (docs/import.md), as dmj and without --db (/etc/default/dmj): the
    # jobs in COPY's text format with --pg-copy, then each identity table with its kind.
    NJOBS=$(pg_count posthog_datamodelingjob)
    pg_copy "$JOBS_SQL" | as_dmj /usr/bin/dmj import --pg-copy - >"$TMP/import.log" 2>&1 ||
        fatal "psql | dmj import --pg-copy -: $(cat "$TMP/import.log")"
    grep -q "^dmj import: $NJOBS records read, $NJOBS inserted, 0 replaced" "$TMP/import.log" ||
        fail "the jobs' import did not insert the table's $NJOBS rows: $(cat "$TMP/import.log")"
    nids=0
    for pair in organization:posthog_organization team:posthog_team \
        'user:(select id, is_active, current_team_id, current_organization_id from posthog_user)' \
        membership:posthog_organizationmembership personal_api_key:posthog_personalapikey; do
        kind=${pair%%:*}
        table=${pair#*:}
        n=$(pg_count "$table t")
        nids=$((nids + n))
        pg_copy "select row_to_json(t) from $table t" |
            as_dmj /usr/bin/dmj import --pg-copy --kind "$kind" - >"$TMP/import-$kind.log" 2>&1 ||
            fail "the $kind pipe: $(cat "$TMP/import-$kind.log")"
        grep -q "records read, 0 inserted, 0 replaced, $n identities stored" \
            "$TMP/import-$kind.log" ||
            fail "the $kind pipe's summary does not count its $n rows: $(cat "$TMP/import-$kind.log")"
    done
    ok "PostgreSQL 15: $NJOBS jobs and $nids identity rows by the documented pipes, as dmj"
fi
as_dmj /usr/bin/dmj verify --db "$STATE/store" >"$TMP/verify-store.log" 2>&1 ||
    fail "dmj verify: $(cat "$TMP/verify-store.log")"
[ "$(stat -c %U "$STATE/store/data.mdb")" = dmj ] || fail "the store is not owned by dmj"
ok_since_mark "dmj generate, import, verify as dmj"

# The operator's files: dmj-sync.service with its defaults and a connection-string file only
# dmj reads; DMJ_DB for the CLI in /etc/default/dmj; logrotate; --version on both programs.
MARK=$FAILED
SYNC_UNIT=/lib/systemd/system/dmj-sync.service
[ -f "$SYNC_UNIT" ] || fail "no $SYNC_UNIT"
# shellcheck disable=SC2016 # $DMJ_SYNC_OPTS is the unit's own, literally
for line in User=dmj EnvironmentFile=/etc/default/dmj-sync \
    'ExecStart=/usr/bin/dmj sync $DMJ_SYNC_OPTS' ProtectSystem=strict "ReadWritePaths=$STATE" \
    NoNewPrivileges=yes CapabilityBoundingSet= SystemCallFilter=@system-service \
    ConditionFileNotEmpty=/etc/dmj/postgres.conninfo; do
    grep -qxF -- "$line" "$SYNC_UNIT" 2>/dev/null || fail "$SYNC_UNIT lacks the line $line"
done
if [ -n "$HAVE_ANALYZE" ] && ! systemd-analyze verify --man=no "$SYNC_UNIT" >"$TMP/sv.log" 2>&1; then
    fail "systemd-analyze verify $SYNC_UNIT: $(cat "$TMP/sv.log")"
fi
grep -q -- "--postgres-file /etc/dmj/postgres.conninfo" /etc/default/dmj-sync ||
    fail "/etc/default/dmj-sync does not name the conninfo file"
[ "$(stat -c '%U:%G %a %s' /etc/dmj/postgres.conninfo 2>/dev/null)" = "dmj:dmj 600 0" ] ||
    fail "/etc/dmj/postgres.conninfo is not an empty dmj:dmj 600 file"
for f in /etc/default/dmj /etc/default/dmj-sync /etc/logrotate.d/dmjd; do
    grep -qxF "$f" /var/lib/dpkg/info/dmj.conffiles || fail "$f is not a conffile"
done
if command -v logrotate >/dev/null; then
    logrotate -d /etc/logrotate.d/dmjd >"$TMP/logrotate.log" 2>&1 ||
        fail "logrotate -d: $(cat "$TMP/logrotate.log")"
fi
grep -q 'kill --kill-whom=main --signal=HUP dmjd.service' /etc/logrotate.d/dmjd ||
    fail "the logrotate file does not send dmjd SIGHUP"
grep -qxF LogsDirectory=dmj "$UNIT" || fail "dmjd.service has no LogsDirectory"
# no --db: /etc/default/dmj names the store
as_dmj env -u DMJ_DB /usr/bin/dmj stats >"$TMP/stats.log" 2>&1 ||
    fail "dmj stats without --db: $(cat "$TMP/stats.log")"
grep -q "^$NJOBS jobs" "$TMP/stats.log" || fail "dmj stats without --db: $(head -3 "$TMP/stats.log")"
version=$(sed -n 's/^project(dmj VERSION \([0-9.]*\).*/\1/p' "$SRC/CMakeLists.txt")
/usr/bin/dmj --version | grep -q "^dmj $version" || fail "dmj --version: $(/usr/bin/dmj --version)"
/usr/sbin/dmjd --version | grep -q "^dmjd $version" || fail "dmjd --version"
ok_since_mark "dmj-sync.service, /etc/dmj/postgres.conninfo dmj 600, /etc/default/dmj, logrotate, --version"

# The other documented ways from PostgreSQL, each to its own store: the CSV form needs no
# option and gives the same store; the text form without --pg-copy is refused with the hint;
# --pg-copy on the CSV form is refused; dmj sync --once as dmj-sync.service runs it (its
# defaults file and the connection string in /etc/dmj/postgres.conninfo) copies the same jobs
# and the keys with their creation time, and prune warns on the store it follows.
if [ -n "$CONNINFO" ]; then
    MARK=$FAILED
    as_dmj /usr/bin/dmj export >"$TMP/store.export" 2>"$TMP/export.err" ||
        fail "dmj export: $(cat "$TMP/export.err")"
    pg_copy "$JOBS_SQL" "$CSV" | as_dmj /usr/bin/dmj import --db "$STATE/pg-csv" - \
        >"$TMP/csv.log" 2>&1 || fail "the CSV pipe: $(cat "$TMP/csv.log")"
    as_dmj /usr/bin/dmj export --db "$STATE/pg-csv" >"$TMP/csv.export" 2>/dev/null
    cmp -s "$TMP/store.export" "$TMP/csv.export" ||
        fail "the CSV pipe's store differs from the --pg-copy pipe's"
    if pg_copy "$JOBS_SQL" | as_dmj /usr/bin/dmj import --db "$STATE/pg-plain" - \
        >"$TMP/plain.log" 2>&1; then
        fail "COPY text without --pg-copy was taken: $(cat "$TMP/plain.log")"
    elif ! grep -q -- '--pg-copy' "$TMP/plain.log"; then
        fail "COPY text without --pg-copy: no hint: $(cat "$TMP/plain.log")"
    fi
    if pg_copy "$JOBS_SQL" "$CSV" | as_dmj /usr/bin/dmj import --db "$STATE/pg-wrong" \
        --pg-copy - >"$TMP/wrong.log" 2>&1; then
        fail "--pg-copy took the CSV form: $(cat "$TMP/wrong.log")"
    fi
    [ -z "$(as_dmj /usr/bin/dmj export --db "$STATE/pg-wrong" 2>/dev/null)" ] ||
        fail "--pg-copy on the CSV form stored jobs"
    # rows holding \" (JSON's escape, which COPY text never holds): the refusal says so
    if pg_copy "$JOBS_SQL where j.error like '%\"%'" "$CSV" |
        as_dmj /usr/bin/dmj import --db "$STATE/pg-wrong" --pg-copy - >"$TMP/wrong.log" 2>&1 ||
        ! grep -q 'not PostgreSQL COPY text (drop --pg-copy)' "$TMP/wrong.log"; then
        fail "--pg-copy on plain JSON was not refused as such: $(cat "$TMP/wrong.log")"
    fi
    printf '%s\n' "$CONNINFO" >/etc/dmj/postgres.conninfo
    [ "$(stat -c '%U %a' /etc/dmj/postgres.conninfo)" = "dmj 600" ] ||
        fail "the filled conninfo file is $(stat -c '%U %a' /etc/dmj/postgres.conninfo)"
    DMJ_SYNC_OPTS=
    # shellcheck disable=SC1091
    . /etc/default/dmj-sync
    # shellcheck disable=SC2086 # split as systemd splits $DMJ_SYNC_OPTS; a later --db wins
    as_dmj /usr/bin/dmj sync $DMJ_SYNC_OPTS --once --db "$STATE/replica" >"$TMP/sync.log" 2>&1 ||
        fail "dmj sync \$DMJ_SYNC_OPTS --once: $(cat "$TMP/sync.log")"
    grep -q "dmj sync: upserted $NJOBS, deleted 0" "$TMP/sync.log" ||
        fail "dmj sync did not copy the $NJOBS jobs: $(cat "$TMP/sync.log")"
    as_dmj /usr/bin/dmj export --db "$STATE/replica" >"$TMP/replica.export" 2>/dev/null
    cmp -s "$TMP/store.export" "$TMP/replica.export" ||
        fail "the replica dmj sync made differs from the piped store"
    as_dmj /usr/bin/dmj prune --db "$STATE/replica" --dry-run --before 2100-01-01 \
        >"$TMP/prune.log" 2>&1 || fail "dmj prune --dry-run: $(cat "$TMP/prune.log")"
    grep -q 'warning: dmj sync follows this store' "$TMP/prune.log" ||
        fail "prune on a synced store: no warning: $(cat "$TMP/prune.log")"
    ok_since_mark "the CSV pipe, the --pg-copy hint and refusal, dmj sync --once as the unit runs it, prune's warning"
fi

# The first key the documented way on the served store (docs/operations.md: keys create
# --team makes what the user lacks), and keys list with when each key was made: today for it,
# PostHog's created_at for the keys imported from PostgreSQL.
MARK=$FAILED
TEAM=1
OPERATOR_KEY=$(as_dmj /usr/bin/dmj keys create --user 900 --team "$TEAM" \
    --scopes warehouse_view:read 2>"$TMP/opkey.err") ||
    fail "dmj keys create --user 900 --team $TEAM: $(cat "$TMP/opkey.err")"
case "$OPERATOR_KEY" in
    phx_*) ;;
    *) fatal "no key from dmj keys create --team: $(cat "$TMP/opkey.err")" ;;
esac
grep -q 'made user 900' "$TMP/opkey.err" || fail "keys create --team did not make user 900"
opid=$(sed -n 's/^dmj keys: key id \([A-Za-z0-9]*\) .*/\1/p' "$TMP/opkey.err")
as_dmj /usr/bin/dmj keys list >"$TMP/keys.list" 2>&1 || fail "dmj keys list: $(cat "$TMP/keys.list")"
grep -q "^id $opid, user 900, created $(date -u +%F)T" "$TMP/keys.list" ||
    fail "keys list does not show today as key $opid's creation: $(grep "$opid" "$TMP/keys.list")"
if [ -n "$CONNINFO" ] && ! grep -q ', created 2024-02-03T04:05:06Z, ' "$TMP/keys.list"; then
    fail "keys list does not show PostHog's created_at of the imported keys: $(head -3 "$TMP/keys.list")"
fi
ok_since_mark "dmj keys create --team $TEAM --user 900 (key id $opid); keys list with creation times"

# A first key the documented way on a jobs-only store: the refusal's command works.
rm -rf "$STATE/firstkey"
as_dmj /usr/bin/dmj import --db "$STATE/firstkey" "$STATE/jobs.ndjson" >/dev/null 2>&1 ||
    fail "jobs-only import"
as_dmj /usr/bin/dmj keys create --db "$STATE/firstkey" --user 9 --scopes warehouse_view:read \
    >"$TMP/key.out" 2>"$TMP/key.err" && fail "a key for a user the store lacks was made"
cmd=$(sed -n 's/^  dmj keys create /keys create /p' "$TMP/key.err" | tr -d "'")
# shellcheck disable=SC2086 # the printed command, split into its words
FIRST_KEY=$(as_dmj /usr/bin/dmj $cmd 2>"$TMP/key2.err") || fail "the printed command: $cmd"
case "$FIRST_KEY" in
    phx_*) ok "a first key by the command keys create prints: $cmd" ;;
    *) fail "no key from $cmd: $(cat "$TMP/key2.err")" ;;
esac

KEY=$(python3 -c 'import json, sys
keys = json.load(open(sys.argv[1], encoding="utf-8"))["personal_api_keys"]
print(next(k["key"] for k in keys if k.get("label") == "read"))' "$STATE/fixtures.json")
case "$KEY" in
    phx_*) ;;
    *) fatal "no \"read\" key in $STATE/fixtures.json" ;;
esac

# dmjd as the unit runs it: the options of /etc/default/dmjd (port 0 for the test), user dmj,
# no new privileges, no capabilities, umask 077, working directory /var/lib/dmj. Under strace
# when it is installed, to check below that the unit's SystemCallFilter allows every call.
DMJD_OPTS=
# shellcheck disable=SC1091
. /etc/default/dmjd
opts=${DMJD_OPTS//127.0.0.1:8000/127.0.0.1:0}
[ "$opts" != "$DMJD_OPTS" ] || fatal "DMJD_OPTS does not listen on 127.0.0.1:8000: $DMJD_OPTS"
tracer=()
if command -v strace >/dev/null; then
    # the trace goes to dmjd's standard error, a file opened here as root
    tracer=(strace -f -qq)
else
    missing "strace is not installed: dmjd's system calls are not traced"
fi
# The walk of every endpoint: list (every page), retrieve, recent, running and events, under
# /api/environments/ and /api/projects/, each answer checked against the team's jobs as
# `dmj export --team` gives them; events/ must announce a job imported while it is open.
# Arguments: URL KEY TEAM EXPORT STATE NEW_JOB_FILE. One line per endpoint; exit 1 on a
# failure.
write_walk() {
    cat >"$1" <<'PY'
import datetime
import http.client
import json
import subprocess
import sys
import time
import urllib.parse

url, key, team, export, state, new_job = sys.argv[1:7]
where = urllib.parse.urlsplit(url)
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL: " + what)


def get(path, with_key=True):
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=10)
    conn.request("GET", path, headers={"Authorization": "Bearer " + key} if with_key else {})
    res = conn.getresponse()
    body = res.read()
    conn.close()
    return res.status, res.getheader("Content-Type", ""), body


def us(text):
    when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    return (when - epoch) // datetime.timedelta(microseconds=1)


jobs = [json.loads(line) for line in open(export, encoding="utf-8") if line.strip()]
visible = {j["id"]: j for j in jobs if j.get("engine") != "duckgres"}
hidden = [j["id"] for j in jobs if j.get("engine") == "duckgres"]
materialize = [j for j in visible.values() if (j.get("workflow_id") or "").startswith("materialize")]
running = {j["id"] for j in materialize if j["status"] == "Running"}
other_running = [j for j in visible.values() if j["status"] == "Running" and j["id"] not in running]
newest = {}
for j in materialize:
    if j["status"] != "Running" and j.get("saved_query_id"):
        sq = j["saved_query_id"]
        newest[sq] = max(newest.get(sq, -1), us(j["created_at"]))
check(running and other_running and newest and hidden,
      "the team's jobs lack running materializations, other running jobs, finished runs or "
      "hidden jobs: nothing to tell the rules apart")
bodies = {}
for prefix in ("environments", "projects"):
    base = "/api/%s/%s/data_modeling_jobs/" % (prefix, team)
    # list: every page through the next links
    seen, path, pages = [], base + "?limit=100", 0
    while path:
        status, ctype, body = get(path)
        check(status == 200 and ctype.startswith("application/json"),
              "%s: %d %s" % (path, status, ctype))
        if status != 200:
            break
        page = json.loads(body)
        seen += page["results"]
        pages += 1
        nxt = page["next"]
        path = None if nxt is None else urllib.parse.urlsplit(nxt)._replace(
            scheme="", netloc="").geturl()
    ids = [j["id"] for j in seen]
    check(sorted(ids) == sorted(visible),
          "%s list: %d jobs, the team has %d visible" % (prefix, len(ids), len(visible)))
    times = [us(j["created_at"]) for j in seen]
    check(times == sorted(times, reverse=True), "%s list: not newest first" % prefix)
    # retrieve: a few jobs field by field, and a hidden one is not found
    for jid in sorted(visible)[::max(1, len(visible) // 4)]:
        status, _, body = get(base + jid + "/")
        want = visible[jid]
        got = json.loads(body) if status == 200 else {}
        check(status == 200 and got.get("id") == jid and got.get("status") == want["status"]
              and got.get("saved_query_id") == want.get("saved_query_id")
              and got.get("workflow_id") == want.get("workflow_id")
              and got.get("error") == want.get("error")
              and us(got["created_at"]) == us(want["created_at"]),
              "%s retrieve %s: %d %r" % (prefix, jid, status, body[:200]))
    status, _, _ = get(base + hidden[0] + "/") if hidden else (404, "", b"")
    check(status == 404, "%s retrieve of a hidden duckgres job: %d" % (prefix, status))
    # running: the running materializations only
    status, _, body = get(base + "running/")
    got = {j["id"] for j in json.loads(body)} if status == 200 else set()
    check(status == 200 and got == running,
          "%s running/: %d, %d jobs, expected the %d running materializations"
          % (prefix, status, len(got), len(running)))
    # recent: per saved query, its newest finished materialization
    status, _, body = get(base + "recent/")
    recent = json.loads(body) if status == 200 else []
    sqs = [j["saved_query_id"] for j in recent]
    check(status == 200 and sorted(sqs) == sorted(newest)
          and all(us(j["created_at"]) == newest[j["saved_query_id"]] for j in recent),
          "%s recent/: %d, %d runs for %d saved queries" % (prefix, status, len(recent),
                                                            len(newest)))
    status, _, _ = get(base, with_key=False)
    check(status == 401, "%s without a key: %d" % (prefix, status))
    bodies[prefix] = (ids, sorted(got), sqs)
    print("%s: list %d jobs in %d pages, retrieve, running %d, recent %d, 401 without a key"
          % (prefix, len(ids), pages, len(got), len(recent)))
check(bodies["environments"] == bodies["projects"], "the two prefixes answer differently")

# events/: open, then a job is imported; its `created` event must come.
conn = http.client.HTTPConnection(where.hostname, where.port, timeout=10)
conn.request("GET", "/api/environments/%s/data_modeling_jobs/events/" % team,
             headers={"Authorization": "Bearer " + key})
res = conn.getresponse()
check(res.status == 200 and res.getheader("Content-Type", "").startswith("text/event-stream"),
      "events/: %d %s" % (res.status, res.getheader("Content-Type")))
line = res.readline()
check(line.startswith(b": connected"), "events/ began with %r" % line)
new_id = json.loads(open(new_job, encoding="utf-8").readline())["id"]
subprocess.run(["runuser", "-u", "dmj", "--", "/usr/bin/dmj", "import", new_job], cwd=state,
               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
event, deadline = [], time.time() + 10
while time.time() < deadline:
    line = res.readline()
    if not line:
        break
    event.append(line)
    if line.startswith(b"data:") and new_id.encode() in line:
        break
check(b"event: created\n" in event and any(new_id.encode() in e for e in event),
      "events/: no created event for the imported job: %r" % event[-4:])
conn.close()
status, _, body = get("/api/environments/%s/data_modeling_jobs/running/" % team)
check(new_id in {j["id"] for j in json.loads(body)}, "running/ does not show the imported job")
print("events/: created %s, then in running/" % new_id)
sys.exit(1 if failures else 0)
PY
}

# A client requesting the list all the time, two threads, a new connection each time, until
# the file $4 exists: "served" for each answer, each failure on a line, then
# "done ok=N failed=M". Arguments: URL KEY TEAM STOP_FILE.
write_loop() {
    cat >"$1" <<'PY'
import http.client
import os
import sys
import threading
import urllib.parse

url, key, team, stop = sys.argv[1:5]
where = urllib.parse.urlsplit(url)
lock = threading.Lock()
counts = {"ok": 0, "failed": 0}


def say(text, outcome):
    with lock:
        counts[outcome] += 1
        print(text, flush=True)


def client():
    path = "/api/environments/%s/data_modeling_jobs/?limit=1" % team
    while not os.path.exists(stop):
        try:
            conn = http.client.HTTPConnection(where.hostname, where.port, timeout=10)
            conn.request("GET", path, headers={"Authorization": "Bearer " + key})
            res = conn.getresponse()
            res.read()
            conn.close()
            if res.status == 200:
                say("served", "ok")
            else:
                say("failed: HTTP %d" % res.status, "failed")
        except Exception as e:  # a refused or reset connection is a failed request
            say("failed: %r" % e, "failed")


threads = [threading.Thread(target=client) for _ in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("done ok=%d failed=%d" % (counts["ok"], counts["failed"]), flush=True)
PY
}

# The access log in a file, where the docs put it: /var/log/dmj, which the unit's
# LogsDirectory= makes for dmj (made here as systemd would).
ACCESS_LOG=/var/log/dmj/access.log
install -d -o dmj -g dmj -m 0750 /var/log/dmj
opts="$opts --access-log $ACCESS_LOG"
# Starts dmjd with the options $2 (split into words as systemd splits $DMJD_OPTS), output in
# $TMP/$1.log and $TMP/$1.err, under the tracer when $3 is "traced"; sets STARTED to its
# process and URL to its API listener once it prints it.
start_dmjd() {
    local name=$1 trace=()
    [ "${3:-}" != traced ] || trace=("${tracer[@]}")
    # shellcheck disable=SC2086
    (cd "$STATE" && umask 077 && exec setpriv --reuid=dmj --regid=dmj --clear-groups \
        --no-new-privs --bounding-set=-all --inh-caps=-all "${trace[@]}" /usr/sbin/dmjd $2) \
        >"$TMP/$name.log" 2>"$TMP/$name.err" &
    STARTED=$!
    URL=
    touch "$TMP/$name.log"
    for _ in $(seq 100); do
        URL=$(sed -n 's/^listening on \(http:\/\/127\.0\.0\.1:[0-9]*\).*/\1/p' "$TMP/$name.log")
        [ -n "$URL" ] && break
        kill -0 "$STARTED" 2>/dev/null || break
        sleep 0.1
    done
}
start_dmjd dmjd "$opts" traced
PID=$STARTED
[ -n "$URL" ] || fatal "dmjd did not start: $(cat "$TMP/dmjd.log"; tail -n 20 "$TMP/dmjd.err")"
DPID=$PID
if [ ${#tracer[@]} != 0 ]; then
    DPID=$(pgrep -P "$PID" -x dmjd) || fatal "no dmjd under strace ($PID)"
fi
proc=/proc/$DPID/status
[ "$(awk '/^Uid:/ { print $2 }' "$proc")" = "$uid" ] || fail "dmjd does not run as dmj"
[ "$(awk '/^NoNewPrivs:/ { print $2 }' "$proc")" = 1 ] || fail "dmjd may gain privileges"
[ "$(awk '/^CapBnd:/ { print $2 }' "$proc")" = 0000000000000000 ] ||
    fail "dmjd has a capability bounding set"

code=$(curl -s -o "$TMP/page.json" -w '%{http_code}' -H "Authorization: Bearer $KEY" \
    "$URL/api/environments/1/data_modeling_jobs/?limit=2")
if [ "$code" != 200 ]; then
    fail "GET with the generated key: HTTP $code: $(head -c 300 "$TMP/page.json")"
elif [ "$(grep -o '"saved_query_id"' "$TMP/page.json" | wc -l)" != 2 ] ||
    ! grep -q '"next":"http' "$TMP/page.json"; then
    fail "the page is not two jobs and a next link: $(head -c 300 "$TMP/page.json")"
else
    ok "dmjd as dmj on $URL: 200 with two jobs and a next link"
fi
code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/api/environments/1/data_modeling_jobs/")
case "$code" in
    401 | 403) ok "no key: HTTP $code" ;;
    *) fail "no key: HTTP $code" ;;
esac

# Every endpoint with the operator's key, under both prefixes, against the store's own jobs.
as_dmj /usr/bin/dmj export --team "$TEAM" >"$TMP/team.export" 2>/dev/null ||
    fail "dmj export --team $TEAM"
printf '{"id":"0d2a1b7e-5f7a-4a51-9d55-6d0c5f3b0002","team_id":%d,"status":"Running","created_at":"%s","workflow_id":"materialize-live"}\n' \
    "$TEAM" "$(date -u +%FT%TZ)" >"$STATE/live.ndjson"
chown dmj "$STATE/live.ndjson"
write_walk "$TMP/walk.py"
if python3 "$TMP/walk.py" "$URL" "$OPERATOR_KEY" "$TEAM" "$TMP/team.export" \
    "$STATE" "$STATE/live.ndjson" >"$TMP/walk.log" 2>&1; then
    ok "every endpoint: $(tr '\n' ';' <"$TMP/walk.log")"
else
    fail "the endpoints: $(cat "$TMP/walk.log")"
fi

# /metrics on the package's metrics listener, and no access-log line for it.
MARK=$FAILED
metrics=$(sed -n 's/^metrics on \(http:\/\/127\.0\.0\.1:[0-9]*\).*/\1/p' "$TMP/dmjd.log")
curl -s "$metrics/metrics" >"$TMP/metrics.txt" || fail "GET $metrics/metrics"
grep -q "^dmj_build_info{version=\"$version\"" "$TMP/metrics.txt" ||
    fail "no dmj_build_info $version in /metrics"

# Logs rotated: the file moved (by logrotate with the package's file when it is installed),
# SIGHUP, and the next requests go to a new file at the same path.
curl -s -o /dev/null "$URL/_health?before-rotation"
sleep 0.3
if command -v logrotate >/dev/null; then
    logrotate -f -s "$TMP/logrotate.state" /etc/logrotate.d/dmjd >"$TMP/logrotate.log" 2>&1 ||
        fail "logrotate -f: $(cat "$TMP/logrotate.log")"
else
    echo "note: no logrotate: the access log is moved by mv"
    mv "$ACCESS_LOG" "$ACCESS_LOG.1"
fi
[ -s "$ACCESS_LOG.1" ] || fail "the rotation left no $ACCESS_LOG.1"
kill -HUP "$DPID"
for _ in $(seq 50); do
    curl -s -o /dev/null "$URL/_health?after-rotation"
    grep -qs 'after-rotation' "$ACCESS_LOG" && break
    sleep 0.1
done
kill -0 "$DPID" 2>/dev/null || fatal "SIGHUP killed dmjd"
grep -qs 'after-rotation' "$ACCESS_LOG" || fail "after SIGHUP, no line in a new $ACCESS_LOG"
grep -q 'before-rotation' "$ACCESS_LOG.1" || fail "the line before the rotation is not in $ACCESS_LOG.1"
! grep -q 'after-rotation' "$ACCESS_LOG.1" || fail "lines after SIGHUP went to the moved file"
! grep -qs '/metrics' "$ACCESS_LOG" "$ACCESS_LOG.1" || fail "the metrics listener's requests were logged"
[ "$(stat -c %U "$ACCESS_LOG")" = dmj ] || fail "the new access log is not dmj's"
ok_since_mark "/metrics with dmj_build_info; rotation + SIGHUP: the new $ACCESS_LOG takes the lines"

# A restart without a failed request, as dmjd(8) says: a second dmjd with the package's
# options (--reuse-port) on the same ports, then SIGTERM to the first, while two clients
# request all the time, each request on a new connection.
MARK=$FAILED
case "$DMJD_OPTS" in
    *--reuse-port*) ;;
    *) fail "DMJD_OPTS lacks --reuse-port: $DMJD_OPTS" ;;
esac
write_loop "$TMP/loop.py"
python3 "$TMP/loop.py" "$URL" "$OPERATOR_KEY" "$TEAM" "$TMP/loop.stop" >"$TMP/loop.out" 2>&1 &
LOOP=$!
for _ in $(seq 50); do
    grep -qs '^served' "$TMP/loop.out" && break
    sleep 0.1
done
OLD_URL=$URL
start_dmjd dmjd2 "${opts//127.0.0.1:0/${URL#http://}}"
NPID=$STARTED
[ "$URL" = "$OLD_URL" ] || fail "the second dmjd is not on $OLD_URL: $(cat "$TMP/dmjd2.log" "$TMP/dmjd2.err")"
sleep 0.5
kill -TERM "$DPID"
wait "$PID"
rc=$?
PID=
[ "$rc" = 0 ] || fail "dmjd exited $rc on SIGTERM"
served_at_stop=$(grep -c '^served' "$TMP/loop.out")
sleep 1
touch "$TMP/loop.stop"
wait "$LOOP"
LOOP=
last=$(tail -n 1 "$TMP/loop.out")
case "$last" in
    "done ok="*" failed=0") ;;
    *) fail "requests failed during the restart: $(grep -v '^served' "$TMP/loop.out" | head -5)" ;;
esac
[ "$(grep -c '^served' "$TMP/loop.out")" -gt "$served_at_stop" ] ||
    fail "no request was served after the old dmjd left"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $OPERATOR_KEY" \
    "$URL/api/environments/$TEAM/data_modeling_jobs/running/")
[ "$code" = 200 ] || fail "the new dmjd answers $code"
ok_since_mark "restart with --reuse-port: ${last#done }, the old dmjd exited 0"

# A backup outside /var/lib/dmj while dmjd serves, as docs/operations.md says.
MARK=$FAILED
BACKUPS=$(mktemp -d /tmp/dmj-test-backups-XXXXXX)
chown dmj:dmj "$BACKUPS"
BACKUP=$BACKUPS/$(date -u +%F)
as_dmj /usr/bin/dmj backup "$BACKUP" >"$TMP/backup.log" 2>&1 ||
    fail "dmj backup $BACKUP: $(cat "$TMP/backup.log")"
as_dmj /usr/bin/dmj verify --db "$BACKUP" >"$TMP/verify-backup.log" 2>&1 ||
    fail "dmj verify --db $BACKUP: $(cat "$TMP/verify-backup.log")"
backup_export=$(as_dmj /usr/bin/dmj export --db "$BACKUP" | sha256sum)
[ "$backup_export" = "$(as_dmj /usr/bin/dmj export | sha256sum)" ] ||
    fail "the backup's export differs from the store's"
[ "$(stat -c '%U %a' "$BACKUP/data.mdb")" = "dmj 600" ] ||
    fail "the backup is $(stat -c '%U %a' "$BACKUP/data.mdb")"
backup_sum=$(sha256sum <"$BACKUP/data.mdb")
ok_since_mark "dmj backup $BACKUP while dmjd serves; it verifies and exports the same jobs"

kill -TERM "$NPID"
wait "$NPID"
rc=$?
NPID=
[ "$rc" = 0 ] || fail "the second dmjd exited $rc on SIGTERM"

# Every system call dmjd made is in the unit's filter: @system-service minus @privileged and
# @resources (the groups expanded, as systemd-analyze lists them nested).
expand_group() {
    local x
    systemd-analyze syscall-filter "$1" | awk 'NR > 1 && $1 !~ /^#/ && NF { print $1 }' |
        while read -r x; do
            case "$x" in
                @*) expand_group "$x" ;;
                *) echo "$x" ;;
            esac
        done
}
if [ ${#tracer[@]} != 0 ] && [ -n "$HAVE_ANALYZE" ]; then
    # lines are "name(args) = rc", or "[pid N] name(..." from the other threads
    sed -n 's/^\(\[pid *[0-9]*\] \)\{0,1\}\([a-z0-9_]*\)(.*/\2/p' "$TMP/dmjd.err" |
        sort -u >"$TMP/used"
    expand_group @system-service | sort -u >"$TMP/allowed"
    { expand_group @privileged; expand_group @resources; } | sort -u >"$TMP/denied"
    outside=$(comm -23 "$TMP/used" "$TMP/allowed"; comm -12 "$TMP/used" "$TMP/denied")
    if [ ! -s "$TMP/used" ] || [ ! -s "$TMP/allowed" ]; then
        fail "no system calls traced or no @system-service list"
    elif [ -n "$outside" ]; then
        fail "dmjd made system calls SystemCallFilter= denies: $(tr '\n' ' ' <<<"$outside")"
    else
        ok "dmjd's $(wc -l <"$TMP/used") distinct system calls are all in the unit's filter"
    fi
else
    echo "note: no strace or systemd-analyze: dmjd's system calls were not checked against the unit"
fi

# ---- remove: programs gone, configuration, user and data kept ---------------------------
MARK=$FAILED
exported=$(as_dmj /usr/bin/dmj export --db "$STATE/store" | sha256sum)
[ "$exported" != "$(sha256sum </dev/null)" ] || fail "dmj export wrote nothing"
# An administrator's edit of the conffile, which remove and reinstall must keep.
echo '# edited by test_package.sh' >>/etc/default/dmjd
if ! dpkg_wait -r dmj >"$TMP/remove.log"; then
    cat "$TMP/remove.log" "$TMP/dpkg.err"
    fatal "dpkg -r failed"
fi
[ "$(dpkg-query -W -f '${db:Status-Status}' dmj)" = config-files ] ||
    fail "after dpkg -r the package is $(dpkg-query -W -f '${db:Status-Status}' dmj)"
for f in /usr/bin/dmj /usr/sbin/dmjd "$UNIT" /usr/share/man/man8/dmjd.8.gz; do
    [ ! -e "$f" ] || fail "dpkg -r left $f"
done
[ -f /etc/default/dmjd ] || fail "dpkg -r removed the conffile /etc/default/dmjd"
[ -f "$STATE/store/data.mdb" ] || fail "dpkg -r removed the data in $STATE"
getent passwd dmj >/dev/null || fail "dpkg -r removed the dmj user"
ok_since_mark "dpkg -r: programs gone; /etc/default/dmjd, $STATE/store and the dmj user kept"

# ---- reinstall: the kept configuration, user and store are taken up again ---------------
if ! dpkg_wait -i "$DEB" >"$TMP/reinstall.log"; then
    cat "$TMP/reinstall.log" "$TMP/dpkg.err"
    fatal "dpkg -i after dpkg -r failed"
fi
grep -qx '# edited by test_package.sh' /etc/default/dmjd ||
    fail "the reinstall replaced the edited /etc/default/dmjd"
[ "$(id -u dmj)" = "$uid" ] || fail "the reinstall made a new dmj user ($(id -u dmj), was $uid)"
[ "$(stat -c '%U:%G %a' "$STATE")" = "dmj:dmj 700" ] || fail "$STATE changed on reinstall"
as_dmj /usr/bin/dmj verify --db "$STATE/store" >"$TMP/verify-again.log" 2>&1 ||
    fail "the kept store does not verify: $(cat "$TMP/verify-again.log")"
[ "$(as_dmj /usr/bin/dmj export --db "$STATE/store" | sha256sum)" = "$exported" ] ||
    fail "the store's export changed across remove and reinstall"
if command -v deb-systemd-helper >/dev/null; then
    [ ! -e /etc/systemd/system/dmjd.service ] || fail "dmjd.service is still masked after reinstall"
    [ -L /etc/systemd/system/multi-user.target.wants/dmjd.service ] ||
        fail "dmjd.service is not enabled after reinstall"
fi
ok_since_mark "dpkg -i again: edited conffile, user $uid, store and enablement as they were"

# ---- purge: everything gone, the machine as before --------------------------------------
if ! dpkg_wait -P dmj >"$TMP/purge.log"; then
    cat "$TMP/purge.log" "$TMP/dpkg.err"
    fatal "dpkg -P failed"
fi
status=$(dpkg-query -W -f '${db:Status-Status}' dmj 2>/dev/null || true)
[ -z "$status" ] || [ "$status" = not-installed ] || fail "after dpkg -P the package is $status"
[ ! -e /etc/default/dmjd ] || fail "dpkg -P left /etc/default/dmjd"
[ ! -e "$STATE" ] || fail "dpkg -P left $STATE"
if [ -n "$BACKUP" ]; then
    MARK=$FAILED
    [ "$(sha256sum <"$BACKUP/data.mdb" 2>/dev/null)" = "$backup_sum" ] ||
        fail "dpkg -P touched the backup in $BACKUP"
    "$TMP/build/dmj" verify --db "$BACKUP" >"$TMP/verify-kept.log" 2>&1 ||
        fail "the backup does not verify after dpkg -P: $(cat "$TMP/verify-kept.log")"
    ok_since_mark "dpkg -P removed $STATE; the backup in $BACKUP is intact and verifies"
fi
! getent passwd dmj >/dev/null || fail "dpkg -P left the dmj user"
! getent group dmj >/dev/null || fail "dpkg -P left the dmj group"
snapshot >"$TMP/after"
if ! diff -u "$TMP/before" "$TMP/after" >"$TMP/diff"; then
    fail "dpkg -P did not leave the machine as it was:"
    cat "$TMP/diff"
else
    ok "dpkg -P: no file, user, group or package state left"
fi
ok "done in $(($(date +%s) - start)) s"

if [ "$FAILED" != 0 ]; then
    echo "$FAILED check(s) failed"
    exit 1
fi
exit 0
