#!/usr/bin/env python3
"""check_skips.py JUNIT BUILD ALLOW_LIST - lists the tests ctest skipped (exit 77) in one
build, from its --output-junit report, and fails when CI=true and a skip is not on the
allow-list (lines `test build reason`; `#` starts a comment): under CI a skip is a failure
unless a written reason says why the test cannot run in that build."""

import os
import sys
import xml.etree.ElementTree as ET


def allowed(path, build):
    out = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split(None, 2)
            if len(parts) < 3:
                sys.exit("%s:%d: expected `test build reason`" % (path, n))
            if parts[1] == build:
                out[parts[0]] = parts[2]
    return out


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__.split("\n")[0])
    junit, build, allow_path = sys.argv[1:]
    ok = allowed(allow_path, build)
    root = ET.parse(junit).getroot()
    cases = root.iter("testcase")
    skipped = []
    for case in cases:
        if case.find("skipped") is not None:
            out = case.findtext("system-out") or ""
            why = next((l for l in out.splitlines() if "skip" in l.lower()), out.strip()[:200])
            skipped.append((case.get("name"), why))
    ci = os.environ.get("CI") == "true"
    bad = 0
    for name, why in skipped:
        if name in ok:
            print("skipped (allowed in %s: %s): %s" % (build, ok[name], name))
        else:
            bad += 1
            print("%s: %s skipped in %s, not on %s: %s"
                  % ("FAIL" if ci else "warning", name, build, allow_path, why))
    print("%d tests skipped in %s, %d of them not allowed" % (len(skipped), build, bad))
    return 1 if ci and bad else 0


if __name__ == "__main__":
    sys.exit(main())
