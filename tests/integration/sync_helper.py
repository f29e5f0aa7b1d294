"""What the tests of `dmj sync` share: a PostgreSQL 15 with PostHog's tables and generated
jobs (setup_pg), `dmj sync --once` (sync) and a background one (Syncer), the store's jobs
(store_rows) compared field by field with the table (assert_store_equals_table), and
waiting for a condition (poll). Not a test itself (its name does not start with test_).

sync() and Syncer follow by polling unless given mode="--logical" or mode=None (let dmj
choose), so that the polling tests stay polling on a server that allows logical
replication."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pg_helper  # noqa: E402
from dmjtest import binary, generate, run, sanitized  # noqa: E402

SLOW = 4 if sanitized() else 1

TS = pg_helper.TIMESTAMP_COLUMNS


def store_rows(db):
    """The store's jobs by id (a duplicate id fails), timestamps as microseconds."""
    res = run(binary("dmj"), "export", "--db", db)
    rows = {}
    for line in res.stdout.split("\n"):
        if not line.strip():
            continue
        r = json.loads(line)
        assert r["id"] not in rows, "job %s exported twice" % r["id"]
        for k in TS:
            r[k] = pg_helper.to_us(r.get(k))
        rows[r["id"]] = r
    return rows


def assert_store_equals_table(db, pg, where=""):
    ref = pg.jobs_by_id(where)
    got = store_rows(db)
    missing = set(ref) - set(got)
    extra = set(got) - set(ref)
    assert not missing and not extra, "store differs from the table: %d missing, %d extra" % (
        len(missing), len(extra))
    bad = []
    for i, r in ref.items():
        for k, v in r.items():
            if got[i].get(k) != v:
                bad.append("%s.%s: store %r, table %r" % (i, k, got[i].get(k), v))
    assert not bad, "%d fields differ, first: %s" % (len(bad), bad[:5])
    run(binary("dmj"), "verify", "--db", db)
    return len(ref)


def sync(pg, db, *args, expect=0, mode="--poll"):
    res = subprocess.run([binary("dmj"), "sync", "--postgres", pg.conninfo, "--db", db,
                          "--once", *([mode] if mode else []), *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    assert res.returncode == expect, "dmj sync exited %d (expected %d): %s" % (
        res.returncode, expect, res.stderr[-2000:])
    return res.stderr


def setup_pg(tmp, jobs=3000, teams=2, wal_level="replica"):
    pg = pg_helper.Postgres(timezone="Asia/Kolkata", wal_level=wal_level)
    try:
        pg.create_schema()
        jobs_path, fixtures_path = generate(tmp, "jobs", jobs, teams)
        pg.load_jobs(jobs_path)
        pg.load_fixtures(fixtures_path)
        pg.insert_awkward_jobs(300)
        with open(fixtures_path) as f:
            fixtures = json.load(f)
    except BaseException:
        pg.stop()
        raise
    keys = {k.get("label"): k["key"] for k in fixtures["personal_api_keys"]}
    return pg, keys


def file_digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class Syncer:
    """A `dmj sync` running in the background."""

    def __init__(self, pg, db, *args, mode="--poll"):
        self.proc = subprocess.Popen([binary("dmj"), "sync", "--postgres", pg.conninfo, "--db",
                                      db, *([mode] if mode else []), *args],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=60 * SLOW)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("dmj sync did not stop within a minute of signal %d" % sig)
        err = self.proc.stderr.read().decode(errors="replace")
        self.proc.stderr.close()
        return self.proc.returncode, err

    def stop_cleanly(self, sig=signal.SIGTERM):
        """Stops it with `sig`, which must end it with status 0; returns its stderr."""
        code, err = self.stop(sig)
        assert code == 0, "dmj sync exited %d after signal %d: %s" % (code, sig, err)
        return err


def poll(what, fn, timeout):
    """Calls fn() until it returns a true value; fails naming `what` after `timeout`."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = fn()
            if last:
                return last
        except (AssertionError, OSError, ValueError) as e:
            last = e
        time.sleep(0.1)
    raise AssertionError("%s: not seen within %ds (last: %r)" % (what, timeout, last))


def store_stats(db):
    """`dmj stats` of the store, or "" before a first commit has made one."""
    if not os.path.exists(os.path.join(db, "data.mdb")):
        return ""
    res = subprocess.run([binary("dmj"), "stats", "--db", db], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    return res.stdout if res.returncode == 0 else ""
