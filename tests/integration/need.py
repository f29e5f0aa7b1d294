"""What a test does when a tool or a resource one of its parts needs is missing: outside CI it
says which part it leaves out and carries on; with CI=true (scripts/test.sh under .ci/run) a
missing tool is a failure, since scripts/deps.sh --test installs every one of them."""

import os
import shutil
import sys


def ci():
    return os.environ.get("CI") == "true"


def missing(what):
    """Leaves out the part that needs `what` (returns) or, under CI, fails the test."""
    if ci():
        print("FAIL: %s (CI=true: a part that cannot run is a failure, not a skip)" % what,
              flush=True)
        sys.exit(1)
    print("skipped part: %s" % what, flush=True)


def tool(name, package):
    """True when `name` is on PATH; else missing(...) and False."""
    if shutil.which(name):
        return True
    missing("%s is not installed (Debian package %s, scripts/deps.sh --test)" % (name, package))
    return False
