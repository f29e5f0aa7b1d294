#!/usr/bin/env python3
"""Private files: a store (its directory, data.mdb, lock.mdb) and a backup are created 0700
(directories) and 0600 (files) under umask 022 as under 077, a read-only open that makes
the lock file makes it 0600 too, an existing store or backup directory is left with the modes
it has, and the package's maintainer scripts set nothing wider. Python 3 standard library
only."""

import json
import os
import re
import shutil
import stat
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dmjtest import BIN_DIR, SOURCE_DIR, Checks  # noqa: E402

DMJ = os.path.join(BIN_DIR, "dmj")
SRC = SOURCE_DIR
T = Checks("dmj-test-modes-")
check, path = T.check, T.path


def dmj(umask, *args):
    """Runs dmj with the given umask (set in this process before the spawn, then restored)."""
    old = os.umask(umask)
    try:
        p = subprocess.run([DMJ] + [str(a) for a in args], capture_output=True)
    finally:
        os.umask(old)
    if p.returncode != 0:
        raise AssertionError("dmj %s: exit %d\n%s" % (" ".join(map(str, args)), p.returncode,
                                                      p.stderr.decode(errors="replace")))
    return p


def mode(p):
    return stat.S_IMODE(os.lstat(p).st_mode)


def modes_under(root):
    """{relative path: mode} of `root` and everything below it."""
    out = {".": mode(root)}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            full = os.path.join(d, n)
            out[os.path.relpath(full, root)] = mode(full)
    return out


def check_private(root, what):
    got = modes_under(root)
    for rel, m in sorted(got.items()):
        want = 0o700 if stat.S_ISDIR(os.lstat(os.path.join(root, rel)).st_mode) else 0o600
        check(m == want, "%s: %s is %04o, expected %04o" % (what, rel, m, want))
    return got


def jobs_file():
    f = path("jobs.ndjson")
    if not os.path.exists(f):
        with open(f, "w") as out:
            for i in range(3):
                out.write(json.dumps({"id": "6e8d0d6c-1111-4111-8111-%012d" % i, "team_id": 1,
                                      "status": "Failed", "created_at": "2024-05-01T10:00:00Z",
                                      "error": "e%d" % i}) + "\n")
    return f


def test_new_store_and_backup(umask):
    tag = "%03o" % umask
    store = path("store-" + tag)
    dmj(umask, "import", "--db", store, jobs_file())
    got = check_private(store, "umask %s: new store" % tag)
    check(set(got) == {".", "data.mdb", "lock.mdb"}, "umask %s: store holds %s" % (tag, got))

    dest = path("backup-" + tag)
    dmj(umask, "backup", "--db", store, dest)
    got = check_private(dest, "umask %s: backup" % tag)
    check(set(got) == {".", "data.mdb"}, "umask %s: backup holds only data.mdb: %s" % (tag, got))

    # the backup restored where there is no lock file: a read-only open makes it, 0600
    restored = path("restored-" + tag)
    os.mkdir(restored, 0o700)
    shutil.copy(os.path.join(dest, "data.mdb"), restored)
    os.chmod(os.path.join(restored, "data.mdb"), 0o600)
    dmj(umask, "stats", "--db", restored)
    check_private(restored, "umask %s: lock file made by a reader" % tag)

    # a writer that creates the store through `dmj keys create` (another command, same open)
    keys = path("keys-" + tag)
    dmj(umask, "keys", "create", "--db", keys, "--user", "1", "--team", "1", "--scopes", "*")
    check_private(keys, "umask %s: store made by dmj keys create" % tag)


def test_existing_left_alone():
    # An existing store or backup directory keeps the modes its owner gave it: neither
    # widened nor narrowed behind the administrator's back.
    store = path("wide-store")
    os.mkdir(store)
    os.chmod(store, 0o750)
    dmj(0o022, "import", "--db", store, jobs_file())
    for n in ("data.mdb", "lock.mdb"):
        os.chmod(os.path.join(store, n), 0o640)
    dmj(0o077, "import", "--db", store, jobs_file())
    check(modes_under(store) == {".": 0o750, "data.mdb": 0o640, "lock.mdb": 0o640},
          "an existing store keeps its modes: %s" % modes_under(store))

    narrow = path("narrow-store")
    dmj(0o022, "import", "--db", narrow, jobs_file())
    for n in ("data.mdb", "lock.mdb"):
        os.chmod(os.path.join(narrow, n), 0o400 if n == "data.mdb" else 0o600)
    dmj(0o022, "stats", "--db", narrow)
    check(mode(os.path.join(narrow, "data.mdb")) == 0o400,
          "a narrower store is not widened by a reader")

    dest = path("wide-dest")
    os.mkdir(dest)
    os.chmod(dest, 0o755)
    dmj(0o022, "backup", "--db", store, dest)
    check(mode(dest) == 0o755, "an existing backup directory keeps its mode")
    check(mode(os.path.join(dest, "data.mdb")) == 0o600,
          "the backup's data.mdb is 0600 in any directory: %04o" % mode(os.path.join(dest,
                                                                                     "data.mdb")))


def test_maintainer_scripts():
    # Every mode the package's scripts set (chmod, install -m, mkdir -m) is private to dmj.
    d = os.path.join(SRC, "packaging", "debian")
    seen = 0
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name)) as f:
            text = f.read()
        for m in re.finditer(r"\b(?:chmod|install\b[^\n]*?-m|mkdir\b[^\n]*?-m)\s*([0-7]{3,4})\b",
                             text):
            seen += 1
            check(int(m.group(1), 8) & 0o077 == 0,
                  "packaging/debian/%s sets mode %s, wider than 0700" % (name, m.group(1)))
    check(seen > 0, "the maintainer scripts set the state directory's mode")


def main():
    tests = [lambda: test_new_store_and_backup(0o022), lambda: test_new_store_and_backup(0o077),
             test_existing_left_alone, test_maintainer_scripts]
    return T.main(tests)


if __name__ == "__main__":
    sys.exit(main())
