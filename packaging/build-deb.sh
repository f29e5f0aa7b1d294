#!/bin/sh
# build-deb.sh - builds dmj_<version>_<arch>.deb from this source tree into OUTDIR.
#
# usage: packaging/build-deb.sh OUTDIR [BUILDDIR]
#
# Configures a Release build (prefix /usr, no tests) in BUILDDIR (default: a temporary
# directory, removed afterwards), builds dmj and dmjd, stages `cmake --install --strip` into a
# DESTDIR, gzips the manual pages, computes Depends with dpkg-shlibdeps (else ldd + dpkg -S),
# adds the maintainer scripts of packaging/debian/ and runs dpkg-deb --build. Needs cmake, a C
# compiler, the -dev packages of scripts/deps.sh and dpkg-dev; not root (files are owned by root
# in the package all the same). Prints the path of the package on its last line.
# Environment: DMJ_DEB_VERSION (default: the project version in CMakeLists.txt),
# DMJ_DEB_MAINTAINER (default: DEBFULLNAME <DEBEMAIL>), JOBS (parallel build jobs, default 2).
set -eu

if [ $# -lt 1 ] || [ $# -gt 2 ] || [ "$1" = --help ] || [ "$1" = -h ]; then
    echo "usage: packaging/build-deb.sh OUTDIR [BUILDDIR]" >&2
    exit 2
fi
src=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)
jobs=${JOBS:-2}

work=$(mktemp -d "${TMPDIR:-/tmp}/dmj-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
if [ $# -eq 2 ]; then
    mkdir -p "$2"
    build=$(cd "$2" && pwd)
else
    build=$work/build
fi
root=$work/root

version=${DMJ_DEB_VERSION:-$(sed -n 's/^project(dmj VERSION \([0-9][0-9.]*\).*/\1/p' \
    "$src/CMakeLists.txt")}
if [ -z "$version" ]; then
    echo "build-deb.sh: no project version in $src/CMakeLists.txt" >&2
    exit 1
fi
arch=$(dpkg --print-architecture)
# Debian's usual DEBFULLNAME / DEBEMAIL, else a placeholder.
if [ -n "${DEBEMAIL:-}" ]; then
    maintainer="${DEBFULLNAME:-dmj developers} <$DEBEMAIL>"
else
    maintainer="dmj developers <dmj@example.org>"
fi
maintainer=${DMJ_DEB_MAINTAINER:-$maintainer}

# -- build and stage ---------------------------------------------------------------------------
# DMJ_SANITIZE is cleared in case BUILDDIR was configured with it before: a package ships
# release binaries only.
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr \
    -DDMJ_SYSTEMD_UNIT_DIR=/lib/systemd/system -DDMJ_BUILD_TESTS=OFF -DDMJ_BUILD_FUZZERS=OFF \
    -DDMJ_SANITIZE= -DDMJ_WERROR=OFF >/dev/null
cmake --build "$build" --target dmj dmjd -j "$jobs" >/dev/null
DESTDIR=$root cmake --install "$build" --strip >/dev/null

for f in usr/bin/dmj usr/sbin/dmjd usr/share/man/man1/dmj.1 usr/share/man/man8/dmjd.8 \
    lib/systemd/system/dmjd.service etc/default/dmjd lib/systemd/system/dmj-sync.service \
    etc/default/dmj-sync etc/default/dmj etc/logrotate.d/dmjd usr/lib/sysctl.d/dmjd.conf; do
    if [ ! -f "$root/$f" ]; then
        echo "build-deb.sh: the install did not produce /$f" >&2
        exit 1
    fi
done
# Debian's layout: compressed manual pages, a doc directory, conffiles under /etc.
gzip -9n "$root/usr/share/man/man1/dmj.1" "$root/usr/share/man/man8/dmjd.8"
install -d "$root/usr/share/doc/dmj"
install -m 0644 "$src/README.md" "$root/usr/share/doc/dmj/README.md"
install -d "$root/usr/share/doc/dmj/docs"
install -m 0644 "$src"/docs/*.md "$root/usr/share/doc/dmj/docs/"
install -m 0644 "$src/packaging/README.md" "$root/usr/share/doc/dmj/README.Debian"
install -m 0644 "$src/packaging/copyright" "$root/usr/share/doc/dmj/copyright"
# The HAProxy configurations the replica test runs, for operators to copy.
install -d "$root/usr/share/doc/dmj/examples/haproxy"
install -m 0644 "$src"/packaging/haproxy/* "$root/usr/share/doc/dmj/examples/haproxy/"
# A one-entry changelog dated like the last commit (or now, outside git) so that the same tree
# gives the same package.
when=$(git -C "$src" log -1 --format=%cD 2>/dev/null || true)
[ -n "$when" ] || when=$(date -R)
printf 'dmj (%s) unstable; urgency=medium\n\n  * Built from the dmj source tree by packaging/build-deb.sh.\n\n -- %s  %s\n' \
    "$version" "$maintainer" "$when" | gzip -9n >"$root/usr/share/doc/dmj/changelog.gz"
find "$root" -type d -exec chmod 0755 {} +
find "$root" -type f ! -path "$root/usr/*bin/*" -exec chmod 0644 {} +

# -- runtime dependencies ----------------------------------------------------------------------
bins="$root/usr/bin/dmj $root/usr/sbin/dmjd"
if command -v dpkg-shlibdeps >/dev/null 2>&1; then
    # dpkg-shlibdeps reads debian/control of the directory it runs in.
    mkdir -p "$work/shlibs/debian"
    printf 'Source: dmj\n\nPackage: dmj\nArchitecture: any\n' >"$work/shlibs/debian/control"
    # shellcheck disable=SC2086 # the paths have no spaces: they are ours
    shlibs=$(cd "$work/shlibs" && dpkg-shlibdeps -O $bins 2>/dev/null |
        sed -n 's/^shlibs:Depends=//p')
else
    # Each shared library's package, at least at the version built against.
    # shellcheck disable=SC2086
    shlibs=$(ldd $bins | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u |
        while read -r lib; do
            real=$(readlink -f "$lib")
            dpkg -S "$lib" 2>/dev/null || dpkg -S "$real" 2>/dev/null || true
        done | cut -d: -f1 | sort -u | while read -r pkg; do
            ver=$(dpkg-query -W -f '${Version}' "$pkg")
            printf '%s (>= %s), ' "$pkg" "$ver"
        done | sed 's/, $//')
fi
if [ -z "$shlibs" ]; then
    echo "build-deb.sh: could not compute the shared library dependencies" >&2
    exit 1
fi

# -- control area ------------------------------------------------------------------------------
install -d "$root/DEBIAN"
for s in postinst prerm postrm; do
    install -m 0755 "$src/packaging/debian/$s" "$root/DEBIAN/$s"
done
(cd "$root" && find etc -type f | sed 's|^|/|' | sort) >"$root/DEBIAN/conffiles"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | sort |
    xargs md5sum) >"$root/DEBIAN/md5sums"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: dmj
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $size
Depends: adduser, $shlibs
Section: net
Priority: optional
Description: PostHog data modeling jobs API server on an LMDB store
 dmjd serves PostHog's "data modeling jobs" REST API (list with cursor
 pagination, retrieve, recent, running) over HTTP/1.1 and HTTP/2 with personal
 API keys, from an embedded LMDB store; dmj imports the run history into it
 (PostgreSQL dumps, API pages, NDJSON) and exports, verifies, backs up and
 prunes it.
 .
 The package runs dmjd as the dmj system user from a sandboxed systemd unit,
 with its options in /etc/default/dmjd and its store under /var/lib/dmj.
CONTROL

deb=$out/dmj_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
