#!/bin/sh
# deps.sh [--test] - installs, with apt-get, what dmj needs on Debian 12 (run as root).
# --test adds every tool a test calls, by name (a missing one fails the suite under CI=true):
# real clients (curl, nghttp, h2load, openssl), HAProxy, PostgreSQL 15, lmdb-utils, the
# reference peer (Django, DRF, gunicorn), clang for the fuzzers, the package test's tools
# (dpkg-dev, lintian, groff, systemd-analyze, strace, pgrep), Node.js/npm and jsonschema for
# the OpenAPI checks.
set -eu
PKGS="build-essential cmake pkg-config liblmdb-dev libh2o-evloop-dev libmsgpack-dev
libyajl-dev libssl-dev zlib1g-dev libpq-dev curl python3"
if [ "${1:-}" = "--test" ]; then
    PKGS="$PKGS lmdb-utils nghttp2-client openssl h2o wrk postgresql-15 clang libclang-rt-14-dev
python3-django python3-djangorestframework python3-django-filters gunicorn
systemd strace lintian groff-base dpkg-dev procps util-linux python3-jsonschema haproxy
logrotate"
    # Node.js and npm (the OpenAPI validator): the machine's own when it has them (Debian's
    # npm conflicts with a Node.js installed from elsewhere), Debian's otherwise.
    command -v npm >/dev/null 2>&1 || PKGS="$PKGS nodejs npm"
fi
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    echo "installing:$missing"
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
