#!/usr/bin/python3
"""`dmj import --batch N` killed with SIGKILL at random moments (seeded) and restarted, over and
over: after every kill `dmj verify` is clean and the store holds exactly the first K*N records
of the input (whole batches, in input order), never fewer than before the kill.

Two phases share one store. Phase 1 inserts: each restart resumes the input where the store
ends (standard input seeked to the first record past the stored prefix). Phase 2 replaces: a
second version of every job (status rotated, so that by_status entries move) is imported over
the first the same way (and the first over the second, if kills are left), and after each kill
the first K*N jobs must be of the new version and the rest still of the old one. After each phase's final complete run the export equals its
input, record for record. The figures (kills, records committed per kill, time to the first
commit after a restart) are printed at the end.

DMJ_CRASH_JOBS, DMJ_CRASH_BATCH, DMJ_CRASH_KILLS and DMJ_CRASH_SEED override the sizes."""

import datetime
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dmjtest import binary, generate, run, sanitized  # noqa: E402

STATUSES = [b"Running", b"Completed", b"Failed", b"Cancelled", b"Skipped"]
ROTATE = {s: STATUSES[(i + 1) % len(STATUSES)] for i, s in enumerate(STATUSES)}
STATUS_RE = re.compile(rb'"status":"(Running|Completed|Failed|Cancelled|Skipped)"')
INPUT_ID_RE = re.compile(rb'"id":"([0-9a-f-]{36})"')


class Input:
    """An NDJSON file with the byte offset of each line, its ids and statuses."""

    def __init__(self, path):
        self.path = path
        self.offsets, self.ids, self.status = [], [], []
        off = 0
        with open(path, "rb") as f:
            for line in f:
                if line.strip():
                    self.offsets.append(off)
                    self.ids.append(INPUT_ID_RE.search(line).group(1))
                    self.status.append(STATUS_RE.search(line).group(1))
                off += len(line)
        self.index = {i: n for n, i in enumerate(self.ids)}
        assert len(self.index) == len(self.ids), "the generated ids are not unique"


def rotated_copy(src, dst):
    """The same jobs with every status moved on by one (the by_status index must follow)."""
    with open(src, "rb") as f:
        data = f.read()
    with open(dst, "wb") as f:
        f.write(STATUS_RE.sub(lambda m: b'"status":"' + ROTATE[m.group(1)] + b'"', data))


def no_store_yet(db):
    """A run killed before it created the store (or before LMDB first wrote to data.mdb)."""
    data = os.path.join(db, "data.mdb")
    return not os.path.exists(data) or os.path.getsize(data) == 0


def verify(db):
    res = subprocess.run([binary("dmj"), "verify", "--db", db], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    if no_store_yet(db):
        # the tools must say so plainly (not LMDB's EBADF from the read-only handle)
        assert res.returncode == 1 and ("No such file or directory" in res.stderr or
                                        "No data available" in res.stderr), res.stderr
        return
    assert res.returncode == 0 and "consistent" in res.stdout, (
        "dmj verify failed after a kill (%d): %s%s" % (res.returncode, res.stdout[-3000:],
                                                       res.stderr[-3000:]))


def stored(db):
    """{id: status} of every stored job, from `dmj export`."""
    if no_store_yet(db):
        return {}
    res = subprocess.run([binary("dmj"), "export", "--db", db], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    assert res.returncode == 0, res.stderr
    out = {}
    # `dmj export` writes "id" first and "status" before any free-text field.
    for line in res.stdout.splitlines():
        assert line.startswith(b'{"id":"') and line[43:45] == b'",', line[:100]
        at = line.find(b'"status":"', 44) + 10
        assert at >= 54, line[:200]
        out[line[7:43]] = line[at:line.index(b'"', at)]
    return out


def check_prefix(db, new, old, batch, before, phase):
    """Asserts that the store is old's jobs with the first K*N of them in new's version
    (K*N >= before, or all of them); returns K*N."""
    jobs = stored(db)
    total = len(new.ids)
    # How many leading records of `new` are stored in new's version.
    k = 0
    while k < total and jobs.get(new.ids[k]) == new.status[k]:
        k += 1
    assert k % batch == 0 or k == total, (
        "%s: the store holds %d records of this import, not whole batches of %d"
        % (phase, k, batch))
    assert k >= before, "%s: %d records were stored before the kill, %d after" % (
        phase, before, k)
    # Nothing past the prefix is of the new version...
    if old is None:
        assert len(jobs) == k, "%s: %d jobs stored, the first %d of the input expected" % (
            phase, len(jobs), k)
    else:
        assert len(jobs) == total, "%s: %d jobs stored, %d expected" % (phase, len(jobs), total)
        for n in range(k, total):
            # ...and everything past it is still the old version (the same ids, in order).
            got = jobs.get(old.ids[n])
            assert got == old.status[n], (
                "%s: record %d (%s) is %r, the old version %r was expected (prefix %d)"
                % (phase, n, old.ids[n].decode(), got, old.status[n], k))
    return k


def export_equals_input(db, path):
    """The export equals the input record for record (timestamps compared as instants)."""
    res = subprocess.run([binary("dmj"), "export", "--db", db], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    assert res.returncode == 0, res.stderr
    exported = {}
    for line in res.stdout.splitlines():
        rec = json.loads(line)
        exported[rec["id"]] = rec
    count = 0
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            count += 1
            rec = json.loads(line)
            got = exported.get(rec["id"])
            assert got is not None, "job %s of the input is not stored" % rec["id"]
            for k, v in rec.items():
                g = got.get(k)
                if k.endswith("_at") and v is not None and g is not None:
                    v = datetime.datetime.fromisoformat(v.replace("Z", "+00:00"))
                    g = datetime.datetime.fromisoformat(g.replace("Z", "+00:00"))
                assert g == v, "job %s: %s is %r in the export, %r in the input" % (
                    rec["id"], k, g, v)
    assert count == len(exported), "%d jobs exported, %d in the input" % (len(exported), count)


def start_import(db, inp, start, batch):
    """`dmj import --batch N` reading the input from record `start` on: the file itself from
    the start (a large file is parsed by two threads, one per half, and the batches must
    still be stored in input order), else standard input seeked to the record."""
    if start == 0:
        return subprocess.Popen([binary("dmj"), "import", "--db", db, "--batch", str(batch),
                                 inp.path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    f = open(inp.path, "rb")
    f.seek(inp.offsets[start] if start < len(inp.offsets) else os.path.getsize(inp.path))
    proc = subprocess.Popen([binary("dmj"), "import", "--db", db, "--batch", str(batch), "-"],
                            stdin=f, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    f.close()
    return proc


def startup_time(tmp):
    """Seconds `dmj import` takes to start, open a store and exit (median of three): added to
    every kill's delay so that the kills land in the work, not in process start-up."""
    times = []
    for n in range(3):
        started = time.monotonic()
        run(binary("dmj"), "import", "--db", os.path.join(tmp, "startup"), os.devnull)
        times.append(time.monotonic() - started)
    return sorted(times)[1]


def phase(db, new, old, batch, kills, rng, figures, name):
    """Kills an import `kills` times at random moments spread over the input, restarting
    where the store ends each time, then lets the last run finish."""
    total = len(new.ids)
    prefix = 0 if old is None else check_prefix(db, new, old, batch, 0, name)
    rate = 30000.0  # records per second, refined from each run
    done = 0
    while True:
        proc = start_import(db, new, prefix, batch)
        started = time.monotonic()
        if done < kills:
            # A moment spread so that the kills left cover what is left of the input.
            left = (total - prefix) / rate
            delay = figures["startup"] + rng.uniform(0.0, 2.0 * left / (kills - done + 1))
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                pass
        if done >= kills or proc.poll() is not None:
            out, err = proc.communicate(timeout=600)
            assert proc.returncode == 0, "%s: the import failed: %s" % (name, err[-2000:])
            break
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
        ran = time.monotonic() - started
        if proc.returncode == 0:
            # The import finished between the poll above and the signal: a complete run.
            break
        assert proc.returncode == -signal.SIGKILL, (proc.returncode, err[-2000:])
        done += 1
        verify(db)
        after = check_prefix(db, new, old, batch, prefix, name)
        figures["kills"].append((name, round(ran, 3), prefix, after))
        if after > prefix and ran > 0.05:
            rate = 0.5 * rate + 0.5 * (after - prefix) / ran
        prefix = after
    verify(db)
    assert check_prefix(db, new, old, batch, prefix, name) == total
    export_equals_input(db, new.path)


def main():
    binary("dmj")
    slow = sanitized()
    jobs = int(os.environ.get("DMJ_CRASH_JOBS", 30000 if slow else 59876))
    batch = int(os.environ.get("DMJ_CRASH_BATCH", 750 if slow else 2000))
    kills = int(os.environ.get("DMJ_CRASH_KILLS", 32))
    seed = int(os.environ.get("DMJ_CRASH_SEED", 20261127))
    rng = random.Random(seed)
    tmp = tempfile.mkdtemp(prefix="dmj-test-crash-")
    started = time.time()
    try:
        path, _ = generate(tmp, "jobs", jobs, 4, seed=7)
        v1 = Input(path)
        path2 = os.path.join(tmp, "jobs-v2.ndjson")
        rotated_copy(path, path2)
        v2 = Input(path2)
        assert v2.ids == v1.ids and all(a != b for a, b in zip(v1.status, v2.status))
        db = os.path.join(tmp, "db")
        figures = {"kills": [], "startup": startup_time(tmp)}
        phase(db, v1, None, batch, kills // 2, rng, figures, "insert")
        # Then replacing, one version over the other, until every kill has landed (a phase
        # whose import outran its kills leaves them to the next).
        old, new = v1, v2
        for _ in range(6):
            if len(figures["kills"]) >= kills:
                break
            phase(db, new, old, batch, kills - len(figures["kills"]), rng, figures, "replace")
            old, new = new, old
        k = figures["kills"]
        assert len(k) >= kills, "only %d kills landed before the imports ended" % len(k)
        moved = [a - b for _, _, b, a in k]
        # Where they landed: kills before a first commit or after the last one prove nothing
        # about a cut between batches. At least one left the store part-way through the
        # input, and at least one came after its own run had committed and before it ended.
        mid_input = sum(1 for _, _, b, a in k if 0 < a < jobs)
        between = sum(1 for _, _, b, a in k if b < a < jobs)
        assert mid_input >= 1 and between >= 1, (
            "no kill landed between commits (%d mid-input, %d after a commit of their own "
            "run): %r" % (mid_input, between, k))
        print("%d kills (seed %d) over %d jobs in batches of %d: verify clean and a prefix of "
              "whole batches after every one; no record lost" % (len(k), seed, jobs, batch))
        print("records committed by a killed run: min %d, max %d; kills with nothing committed: "
              "%d; kills mid-input: %d" % (min(moved), max(moved), moved.count(0), mid_input))
        for name, ran, before, after in k:
            print("  %-7s killed after %.3f s: %6d -> %6d" % (name, ran, before, after))
        print("ok (%.1f s)" % (time.time() - started))
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
