#!/bin/bash
# The Debian package end to end: packaging/build-deb.sh builds it, dpkg installs it on this
# machine, dmj and dmjd run from it as the dmj user on a store in /var/lib/dmj, then dpkg -r
# keeps the data and dpkg -P leaves the machine exactly as it was before the test.
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
for p in "$STATE" /etc/default/dmjd /usr/bin/dmj /usr/sbin/dmjd /lib/systemd/system/dmjd.service; do
    if [ -e "$p" ]; then
        skip "$p exists already: the package would take it over"
    fi
done

TMP=$(mktemp -d /tmp/dmj-test-package-XXXXXX)
PID=
DPID=
OURS=
# shellcheck disable=SC2317 # called by the trap
cleanup() {
    local p
    for p in "$DPID" "$PID"; do
        if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
            kill -KILL "$p"
        fi
    done
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
    rm -rf "$STATE" "$TMP"
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
as_dmj /usr/bin/dmj import --db "$STATE/store" "$STATE/fixtures.json" "$STATE/jobs.ndjson" \
    >"$TMP/import.log" 2>&1 || fatal "dmj import as dmj failed: $(cat "$TMP/import.log")"
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
grep -q '^300 jobs' "$TMP/stats.log" || fail "dmj stats without --db: $(head -3 "$TMP/stats.log")"
version=$(sed -n 's/^project(dmj VERSION \([0-9.]*\).*/\1/p' "$SRC/CMakeLists.txt")
/usr/bin/dmj --version | grep -q "^dmj $version" || fail "dmj --version: $(/usr/bin/dmj --version)"
/usr/sbin/dmjd --version | grep -q "^dmjd $version" || fail "dmjd --version"
ok_since_mark "dmj-sync.service, /etc/dmj/postgres.conninfo dmj 600, /etc/default/dmj, logrotate, --version"

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
# shellcheck disable=SC2086 # DMJD_OPTS is split into words as systemd splits $DMJD_OPTS
(cd "$STATE" && umask 077 && exec setpriv --reuid=dmj --regid=dmj --clear-groups \
    --no-new-privs --bounding-set=-all --inh-caps=-all "${tracer[@]}" /usr/sbin/dmjd $opts) \
    >"$TMP/dmjd.log" 2>"$TMP/dmjd.err" &
PID=$!
URL=
touch "$TMP/dmjd.log"
for _ in $(seq 100); do
    URL=$(sed -n 's/^listening on \(http:\/\/127\.0\.0\.1:[0-9]*\).*/\1/p' "$TMP/dmjd.log")
    [ -n "$URL" ] && break
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
done
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
kill -TERM "$DPID"
wait "$PID"
rc=$?
PID=
[ "$rc" = 0 ] || fail "dmjd exited $rc on SIGTERM"

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
