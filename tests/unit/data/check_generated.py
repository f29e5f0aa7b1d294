#!/usr/bin/python3
"""Regenerates every table the unit tests include from this folder and compares it, byte for
byte, with the committed file: a table that no longer follows from its oracle fails here.

The oracles are Debian's python3-django and python3-djangorestframework (and Python's own
json); without them the test says it was skipped, or fails under CI=true
(tests/integration/need.py), where scripts/deps.sh --test installs them.
"""
import difflib
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "integration"))
import need  # noqa: E402

# generator -> the file it writes
TABLES = [
    ("gen_cursor_tables.py", "cursor_tables.inc"),
    ("gen_page_tables.py", "page_tables.inc"),
    ("gen_api_bodies.py", "api_bodies.inc"),
    ("gen_django_times.py", "django_times.inc"),
    ("gen_json_strings.py", "json_strings.inc"),
]


def main():
    try:
        import django  # noqa: F401
        import rest_framework  # noqa: F401
    except ImportError as e:
        need.missing("the oracle is not installed (%s; Debian packages python3-django and "
                     "python3-djangorestframework, scripts/deps.sh --test)" % e)
        return 77
    failed = 0
    for gen, table in TABLES:
        run = subprocess.run([sys.executable, gen], cwd=HERE, capture_output=True)
        if run.returncode != 0:
            print("FAIL: %s exited %d\n%s" % (gen, run.returncode,
                                               run.stderr.decode(errors="replace")))
            failed += 1
            continue
        with open(os.path.join(HERE, table), "rb") as f:
            committed = f.read()
        if run.stdout == committed:
            print("ok: %s reproduces %s (%d bytes)" % (gen, table, len(committed)))
            continue
        failed += 1
        print("FAIL: %s does not reproduce %s:" % (gen, table))
        diff = difflib.unified_diff(
            committed.decode(errors="replace").splitlines(),
            run.stdout.decode(errors="replace").splitlines(),
            "committed/" + table, "regenerated/" + table, lineterm="", n=1)
        for i, line in enumerate(diff):
            if i == 60:
                print("...")
                break
            print(line[:200])
    print("%d of %d tables reproduced" % (len(TABLES) - failed, len(TABLES)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
