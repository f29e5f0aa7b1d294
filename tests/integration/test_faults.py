#!/usr/bin/python3
"""Faults the store and the tools must survive without losing what is stored: dmjd killed with
SIGKILL under load (while an import commits), a store whose map size is exhausted, a full disk
(a small tmpfs; run alone as `test_faults.py case_disk_full`, exit 77 when mount is not
permitted), and stores holding a job record of an unknown format
version, a corrupted job record, or an unknown store format.

Each case asserts the outcome and prints the figure it measured."""

import base64
import datetime
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import need  # noqa: E402
from dmjtest import LIST, Server, binary, fixture_keys, generate, get, run_cases  # noqa: E402

SERVER_ERROR = {"type": "server_error", "code": "error", "detail": "A server error occurred.",
                "attr": None}
HOST = {"Host": "testserver"}  # so that links in bodies do not depend on the port


def tool(*args, env=None):
    """Runs dmj; returns (exit status, stdout, stderr)."""
    res = subprocess.run([binary("dmj"), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=env)
    err = res.stderr.decode(errors="replace")
    # a sanitizer report also exits non-zero: it must not pass for an expected refusal
    assert "Sanitizer" not in err and "runtime error:" not in err, err[-4000:]
    return res.returncode, res.stdout, err


def ok(*args, env=None):
    code, out, err = tool(*args, env=env)
    assert code == 0, "dmj %s failed (%d): %s" % (" ".join(args), code, err[-2000:])
    return out


def verify_clean(db):
    code, out, err = tool("verify", "--db", db)
    assert code == 0 and b"consistent" in out, (code, out[-2000:], err[-2000:])


def export(db):
    return ok("export", "--db", db)


def env_with(**kw):
    env = dict(os.environ)
    env.update(kw)
    return env


def ids_of(ndjson_path):
    with open(ndjson_path) as f:
        return [json.loads(line)["id"] for line in f if line.strip()]


def exported_ids(data):
    return {json.loads(line)["id"] for line in data.splitlines()}


def fetch(port, path, key, timeout=30):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        res, body = get(c, path, key, headers=HOST)
        return res.status, body
    finally:
        c.close()


def assert_serves(srv, key, expect_ids=None):
    """dmjd answers the list with 200 (and, when given, walking its pages gives exactly the
    team's jobs)."""
    url, got = LIST + "?limit=1000", set()
    while url:
        status, body = fetch(srv.port, url, key)
        assert status == 200, (status, body[:300])
        page = json.loads(body)
        got.update(j["id"] for j in page["results"])
        url = page["next"] and page["next"].split("testserver", 1)[1]
        if expect_ids is None:
            break
    if expect_ids is not None:
        assert got == expect_ids, (len(got), len(expect_ids))
    assert srv.proc.poll() is None, "dmjd exited"


def team1_ids(db):
    """The ids the API lists for team 1 (visible jobs), from `dmj export`."""
    out = set()
    for line in export(db).splitlines():
        j = json.loads(line)
        if j["team_id"] == 1 and j.get("engine") != "duckgres":
            out.add(j["id"])
    return out


# ---- dmjd killed under load ----------------------------------------------------------------

def hammer(port, key, ids, stop, stats, seed):
    """One client: list pages, retrieves, recent and running over one keep-alive connection,
    reconnecting after errors; counts answers by status and connection failures."""
    rng = random.Random(seed)
    base = LIST
    paths = [base + "?limit=%d" % n for n in (1, 10, 100, 500)] + [
        base + "running/", base + "recent/"]
    conn = None
    while not stop.is_set():
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            path = rng.choice(paths) if rng.random() < 0.5 else base + rng.choice(ids) + "/"
            res, _ = get(conn, path, key)
            stats.setdefault(res.status, 0)
            stats[res.status] += 1
        except (OSError, http.client.HTTPException):
            stats["conn_errors"] = stats.get("conn_errors", 0) + 1
            if conn is not None:
                conn.close()
            conn = None
            time.sleep(0.01)
    if conn is not None:
        conn.close()


def case_dmjd_sigkill(store, tmp):
    extra, _ = generate(tmp, "extra", 20000, 2, seed=11)
    db = os.path.join(tmp, "db")
    shutil.copytree(store.dir, db)
    ids = sorted(store.served_ids(1))
    figures = []
    for cycle in range(3):
        srv = Server(db, "--threads", "2")
        stop = threading.Event()
        stats = [{} for _ in range(4)]
        threads = [threading.Thread(target=hammer, args=(srv.port, store.read_key, ids, stop,
                                                         stats[i], cycle * 10 + i))
                   for i in range(4)]
        imp = None
        try:
            for t in threads:
                t.start()
            # A writer commits batches while the reader is killed.
            imp = subprocess.Popen([binary("dmj"), "import", "--db", db, "--batch", "500",
                                    extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            time.sleep(0.4 + 0.3 * cycle)
            srv.proc.send_signal(signal.SIGKILL)
            srv.proc.wait(timeout=30)
            assert srv.proc.returncode == -signal.SIGKILL, srv.proc.returncode
            time.sleep(0.1)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
            srv.kill()
            if imp is not None:
                _, err = imp.communicate(timeout=300)
        assert imp.returncode == 0, "the import failed while dmjd was killed: %s" % err[-2000:]
        total = {}
        for s in stats:
            for k, v in s.items():
                total[k] = total.get(k, 0) + v
        bad = {k: v for k, v in total.items() if k not in (200, "conn_errors")}
        assert not bad, "answers other than 200 before the kill: %r" % total
        assert total.get(200, 0) > 20, total
        verify_clean(db)
        if need.tool("mdb_stat", "lmdb-utils"):
            # The killed server's reader slots would pin old pages, and the store would only
            # grow: the next write clears them.
            ok("import", "--db", db, store.fixtures_path)
            # (mdb_stat -r exits 1 after printing the table: only its output counts)
            table = subprocess.run(["mdb_stat", "-r", db], stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, text=True).stdout
            assert table.startswith("Reader Table Status"), table
            pids = {line.split()[0] for line in table.splitlines()[2:] if line.strip()}
            assert str(srv.proc.pid) not in pids, table
        started = time.monotonic()
        srv2 = Server(db, "--threads", "2")
        try:
            status, body = fetch(srv2.port, LIST + "?limit=5", store.read_key)
            first = time.monotonic() - started
            assert status == 200, (status, body[:300])
            assert_serves(srv2, store.read_key, team1_ids(db))
        finally:
            code, err = srv2.stop()
        assert code == 0, (code, err)
        figures.append((total.get(200, 0), total.get("conn_errors", 0), first))
    verify_clean(db)
    for n, (answered, errors, first) in enumerate(figures):
        print("  kill %d: %d requests answered 200 before it, %d connections cut, restarted "
              "and answered 200 in %.3f s; verify clean" % (n + 1, answered, errors, first))


# ---- full store / full disk ----------------------------------------------------------------

def check_refused(db, code, err, exported_before, srv, key, team_ids, words):
    assert code != 0, "the import succeeded on a full store"
    for w in words:
        assert w in err, "%r not in the message: %s" % (w, err[-2000:])
    assert "nothing of this import was stored" in err, err[-2000:]
    assert export(db) == exported_before, "the store changed after a failed import"
    verify_clean(db)
    assert_serves(srv, key, team_ids)


def check_batches_kept(db, code, err, exported_before, new_ids, batch, words):
    """A failed --batch import keeps whole batches of the new input; returns how many jobs."""
    assert code != 0, "the import succeeded on a full store"
    for w in words:
        assert w in err, "%r not in the message: %s" % (w, err[-2000:])
    assert "batches committed before the error are stored" in err, err[-2000:]
    verify_clean(db)
    after = exported_ids(export(db))
    before = exported_ids(exported_before)
    assert before <= after, "jobs stored before the import were lost"
    added = after - before
    k = len(added)
    assert k % batch == 0, "%d jobs of the failed import stored: not whole batches" % k
    assert added == set(new_ids[:k]), "the stored jobs are not the first %d of the input" % k
    assert k < len(new_ids)
    return k


def case_map_full(store, tmp):
    db = os.path.join(tmp, "db")
    small, fixtures = generate(tmp, "small", 400, 2, seed=21)
    big, _ = generate(tmp, "big", 4000, 2, seed=22)
    ok("import", "--db", db, "--map-size", "1M", fixtures, small)
    key = fixture_keys(fixtures)["read"]
    before = export(db)
    with Server(db, "--threads", "2") as srv:
        ids1 = team1_ids(db)
        assert_serves(srv, key, ids1)
        # One transaction: refused whole, by the environment variable and by the option.
        code, _, err = tool("import", "--db", db, big, env=env_with(DMJ_MAP_SIZE="1M"))
        check_refused(db, code, err, before, srv, key, ids1, ["map size", "--map-size"])
        code, _, err = tool("import", "--db", db, "--map-size", "1M", big)
        check_refused(db, code, err, before, srv, key, ids1, ["map size", "--map-size"])
        # Batches: the ones that fit stay, as a prefix of the input.
        code, _, err = tool("import", "--db", db, "--map-size", "1M", "--batch", "100", big)
        k = check_batches_kept(db, code, err, before, ids_of(big), 100,
                               ["map size", "--map-size"])
        ids1 = team1_ids(db)
        assert_serves(srv, key, ids1)
        # The option the message names is the way out.
        ok("import", "--db", db, "--map-size", "64M", big)
        verify_clean(db)
        assert exported_ids(export(db)) == exported_ids(before) | set(ids_of(big))
        assert_serves(srv, key, team1_ids(db))
    print("  map size 1 MiB: a 4000-job import refused with the option named, store unchanged; "
          "with --batch 100, %d jobs (%d whole batches) kept; dmjd served throughout" % (
              k, k // 100))


def case_map_grown(store, tmp):
    """An import with a larger --map-size grows the store past the map dmjd opened it with:
    dmjd adopts the new size and keeps answering (it answered 500 to everything until a
    restart)."""
    db = os.path.join(tmp, "db")
    small, fixtures = generate(tmp, "small", 400, 2, seed=51)
    big, _ = generate(tmp, "big", 30000, 2, seed=52)
    ok("import", "--db", db, "--map-size", "1M", fixtures, small)
    key = fixture_keys(fixtures)["read"]
    with Server(db, "--threads", "2", "--map-size", str(1 << 20)) as srv:
        assert_serves(srv, key, team1_ids(db))
        stop = threading.Event()
        stats = [{} for _ in range(2)]
        ids = sorted(team1_ids(db))
        threads = [threading.Thread(target=hammer, args=(srv.port, key, ids, stop, stats[i], i))
                   for i in range(2)]
        for t in threads:
            t.start()
        try:
            ok("import", "--db", db, "--map-size", "64M", "--batch", "3000", big)
            time.sleep(0.2)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
        total = {}
        for s in stats:
            for k, v in s.items():
                total[k] = total.get(k, 0) + v
        assert set(total) == {200}, "answers while the store grew: %r" % total
        status, body = fetch(srv.port, "/_health", None)
        assert status == 200 and json.loads(body) == {"status": "ok"}, (status, body)
        assert_serves(srv, key, team1_ids(db))
        size = os.path.getsize(os.path.join(db, "data.mdb"))
        assert size > 4 << 20, size
    print("  dmjd opened with a 1 MiB map answered %d requests, all 200, while an import grew "
          "the store to %d bytes" % (total[200], size))


def mount_tmpfs(path, size):
    if os.geteuid() != 0:
        return "not root"
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s" % size, "tmpfs", path],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return None if res.returncode == 0 else (res.stdout.strip() or "mount failed")


def case_disk_full(store, tmp):
    mnt = os.path.join(tmp, "mnt")
    os.makedirs(mnt)
    why = mount_tmpfs(mnt, "8m")
    if why:
        # Its own ctest entry (integration.test_faults_disk_full), so this skip is counted
        # and allowed only as tests/skips-allowed.txt says.
        print("skipped: cannot mount a tmpfs (%s)" % why, flush=True)
        sys.exit(77)
    srv = None
    try:
        db = os.path.join(mnt, "db")
        small, fixtures = generate(tmp, "small", 400, 2, seed=31)
        big, _ = generate(tmp, "big", 30000, 2, seed=32)
        ok("import", "--db", db, fixtures, small)
        key = fixture_keys(fixtures)["read"]
        before = export(db)
        srv = Server(db, "--threads", "2")
        ids1 = team1_ids(db)
        assert_serves(srv, key, ids1)
        code, _, err = tool("import", "--db", db, big)
        check_refused(db, code, err, before, srv, key, ids1, ["No space left on device"])
        code, _, err = tool("import", "--db", db, "--batch", "2000", big)
        k = check_batches_kept(db, code, err, before, ids_of(big), 2000,
                               ["No space left on device"])
        assert k > 0, "not even one batch of 2000 fitted in 8 MiB"
        assert_serves(srv, key, team1_ids(db))
        # Room again: the same import completes.
        subprocess.run(["mount", "-o", "remount,size=64m", mnt], check=True)
        ok("import", "--db", db, big)
        verify_clean(db)
        assert exported_ids(export(db)) == exported_ids(before) | set(ids_of(big))
        assert_serves(srv, key, team1_ids(db))
        code, err = srv.stop()
        srv = None
        assert code == 0, (code, err)
        # A store restored without its lock file onto a full disk: LMDB would write the new
        # reader table through a map and die of SIGBUS; every command refuses it instead.
        restored = os.path.join(mnt, "restored")
        ok("backup", "--db", db, restored)
        whole = export(restored)
        os.unlink(os.path.join(restored, "lock.mdb"))  # as a backup is copied back
        with open(os.path.join(mnt, "filler"), "wb") as f:
            try:
                while True:
                    f.write(b"\0" * (1 << 16))
                    f.flush()
            except OSError:
                pass
        for args in (("verify", "--db", restored), ("export", "--db", restored),
                     ("import", "--db", restored, small)):
            code, _, err = tool(*args)
            assert code == 1 and "No space left on device" in err, (args, code, err)
        res = subprocess.run([binary("dmjd"), "--db", restored, "--listen", "127.0.0.1:0"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             timeout=30)
        assert res.returncode == 1 and "No space left on device" in res.stderr, (
            res.returncode, res.stderr)
        os.unlink(os.path.join(mnt, "filler"))
        verify_clean(restored)
        assert export(restored) == whole
        print("  tmpfs of 8 MiB: a 30000-job import refused with 'No space left on device', "
              "store unchanged; with --batch 2000, %d jobs kept; after growing the tmpfs the "
              "import completed; a store without lock.mdb on the full tmpfs refused by dmjd "
              "and the tools (not SIGBUS), whole once there is room" % k)
    finally:
        if srv is not None:
            srv.kill()
        subprocess.run(["umount", mnt], check=False)


# ---- damaged records -----------------------------------------------------------------------

def mdb_tools():
    return all(shutil.which(t) for t in ("mdb_dump", "mdb_load"))


def dump(db, sub):
    """The header lines and the (key hex, value hex) pairs of one sub-database."""
    res = subprocess.run(["mdb_dump", "-s", sub, db], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, check=True)
    lines = res.stdout.splitlines()
    end = lines.index("HEADER=END")
    body = lines[end + 1:lines.index("DATA=END")]
    pairs = [(body[i].strip(), body[i + 1].strip()) for i in range(0, len(body), 2)]
    # keep only the keywords every mdb_load knows
    header = [h for h in lines[:end + 1] if not h.startswith("db_pagesize=")]
    return header, pairs


def load(db, sub, header, pairs, tmp):
    """Overwrites the given entries of a sub-database with mdb_load."""
    path = os.path.join(tmp, "load-%s.txt" % sub)
    with open(path, "w") as f:
        f.write("\n".join(header) + "\n")
        for k, v in pairs:
            f.write(" %s\n %s\n" % (k, v))
        f.write("DATA=END\n")
    subprocess.run(["mdb_load", "-s", sub, "-f", path, db], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def position(ts):
    """A DRF cursor position: str(datetime) of a created_at."""
    d = datetime.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return str(d)


def cursor(ts, reverse=False):
    items = ([("r", "1")] if reverse else []) + [("p", position(ts))]
    return base64.b64encode(urllib.parse.urlencode(items).encode()).decode()


def case_damaged_records(store, tmp):
    if not mdb_tools():
        need.missing("mdb_dump/mdb_load (lmdb-utils) not installed: damaged records not tested")
        return
    key = store.read_key
    # Team 1's jobs in list order (created_at desc, id desc), with unique timestamps around
    # the two victims so that pages can be aimed at them with cursors.
    team = sorted((j for j in store.jobs if j["team_id"] == 1 and
                   j.get("engine", "clickhouse") != "duckgres"),
                  key=lambda j: (datetime.datetime.fromisoformat(
                      j["created_at"].replace("Z", "+00:00")), j["id"]), reverse=True)
    stamps = [position(j["created_at"]) for j in team]

    def unique_at(i):
        return all(stamps[i] != stamps[n] for n in range(max(0, i - 30), min(len(team), i + 30))
                   if n != i)

    ia = next(i for i in range(60, len(team)) if unique_at(i))
    ib = next(i for i in range(ia + 80, len(team)) if unique_at(i))
    va, vb = team[ia], team[ib]
    # Another team-1 job with a saved query that neither victim has.
    other_sq = next(j["saved_query_id"] for j in team if j.get("saved_query_id") and
                    j["saved_query_id"] not in (va.get("saved_query_id"),
                                                vb.get("saved_query_id")))

    bad = os.path.join(tmp, "bad")
    shutil.copytree(store.dir, bad)
    header, pairs = dump(bad, "jobs")
    patched = []
    for victim, how in ((va, "version"), (vb, "garbage")):
        hexid = victim["id"].replace("-", "")
        k, v = next((k, v) for k, v in pairs if k.endswith(hexid))
        rec = bytearray.fromhex(v)
        assert rec[0] == 0xdc and rec[3] == 1, "record layout changed: %s" % v[:16]
        if how == "version":
            rec[3] = 0x7f  # a record format from the future
        else:
            rec = rec[:40]  # cut short inside the saved_query_id
        patched.append((k, rec.hex()))
    load(bad, "jobs", header, patched, tmp)

    # dmj verify names both records and fails.
    code, out, err = tool("verify", "--db", bad)
    out = out.decode()
    assert code == 1, (code, out, err)
    assert "jobs: %s: record does not decode (unknown record format version)" % va["id"] in out, out
    assert "jobs: %s: record does not decode (corrupted record)" % vb["id"] in out, out
    assert "inconsistent" in err, err
    for v in (va, vb):
        code, out, err = tool("get", "--db", bad, v["id"])
        assert code != 0 and ("version" in err or "corrupted" in err), (code, out, err)
    # export and stats name them, leave them out, and still give every other job (exit 1).
    whole = export(store.dir).splitlines()
    code, out, err = tool("export", "--db", bad)
    assert code == 1, (code, err)
    for v, why in ((va, "unknown record format version"), (vb, "corrupted record")):
        assert "job %s: record does not decode (%s); skipped" % (v["id"], why) in err, err
    victims = (va["id"].encode(), vb["id"].encode())
    assert out.splitlines() == [line for line in whole if line[7:43] not in victims], \
        "the export of the damaged store is not the intact one without the two records"
    code, out, err = tool("stats", "--db", bad, "--json")
    assert code == 1 and "2 damaged records not counted" in err, (code, err)
    assert json.loads(out)["jobs"] == len(whole) - 2, out

    # (path, what the answer must be: 200 = the intact store's answer, 500 = PostHog's 500,
    # None = either: a page reads one row past its end to know whether there is a next one,
    # and may fail on a victim it would not show)
    requests = []
    n = len(team)
    L = 25

    def expect(inside, peeked):
        return 500 if inside else (None if peeked else 200)

    requests.append((LIST + "?limit=%d" % (ia - 1), 200))
    requests.append((LIST + "?limit=%d" % ia, None))
    requests.append((LIST + "?limit=%d" % (ia + 1), 500))
    for i in list(range(0, min(n, ib + 40), 9)) + [ia - L - 1, ia - L, ia - 1, ia, ib - L - 1,
                                                     ib - L, ib - 1, ib]:
        if not 0 <= i < n or not unique_at(i):
            continue
        # forward from row i: rows i+1 .. i+L (and i+L+1 peeked); reverse from row i: rows
        # i-L .. i-1 (and i-L-1 peeked)
        fwd = expect(any(i + 1 <= x <= i + L for x in (ia, ib)), i + L + 1 in (ia, ib))
        rev = expect(any(i - L <= x <= i - 1 for x in (ia, ib)), i - L - 1 in (ia, ib))
        requests.append((LIST + "?limit=%d&cursor=%s" % (L, urllib.parse.quote(
            cursor(team[i]["created_at"]))), fwd))
        requests.append((LIST + "?limit=%d&cursor=%s" % (L, urllib.parse.quote(
            cursor(team[i]["created_at"], reverse=True))), rev))
    for v in (va, vb):
        requests.append((LIST + v["id"] + "/", 500))
        if v.get("saved_query_id"):
            requests.append((LIST + "?limit=1000&saved_query_id=" + v["saved_query_id"], 500))
    requests.append((LIST + "?limit=1000&saved_query_id=" + other_sq, 200))
    for j in random.Random(5).sample(team, 40):
        if j["id"] not in (va["id"], vb["id"]):
            requests.append((LIST + j["id"] + "/", 200))
    team2 = "/api/environments/2/data_modeling_jobs/"
    for p in (team2, team2 + "?limit=1000", team2 + "running/", team2 + "recent/", "/_health"):
        requests.append((p, 200))
    maybe = [LIST + "running/", LIST + "recent/"]  # 500 only if they must read a victim

    with Server(store.dir, "--threads", "2") as good, Server(bad, "--threads", "2") as srv:
        errors = served = 0
        for rounds in range(2):  # twice: the 500s leave nothing behind in the workers
            for path, want in requests:
                status, body = fetch(srv.port, path, key)
                gstatus, gbody = fetch(good.port, path, key)
                assert gstatus == 200, (path, gstatus)
                if want == 500 or (want is None and status == 500):
                    assert status == 500, (path, status, body[:300])
                    assert json.loads(body) == SERVER_ERROR, (path, body)
                    errors += 1
                else:
                    assert status == 200 and body == gbody, (path, status, body[:300])
                    served += 1
            for path in maybe:
                status, body = fetch(srv.port, path, key)
                gstatus, gbody = fetch(good.port, path, key)
                names = va["id"].encode() in gbody or vb["id"].encode() in gbody
                if status == 500:
                    assert json.loads(body) == SERVER_ERROR, (path, body)
                else:
                    assert not names and status == 200 and body == gbody, (path, status)
            assert srv.proc.poll() is None, "dmjd died"
        # Walking team 1 with `next` links stops at the page holding the first victim.
        url = LIST + "?limit=%d" % L
        pages = 0
        while True:
            status, body = fetch(srv.port, url, key)
            if status == 500:
                break
            assert status == 200, status
            page = json.loads(body)
            pages += 1
            assert page["next"], "walked past the victim"
            url = page["next"].split("testserver", 1)[1]
        # the page that shows the victim fails, or the one before it when it peeks at it
        assert pages in (ia // L, max(0, ia // L - 1)), (pages, ia)
    print("  damaged job records (format version 127, cut to 40 bytes): %d requests answered "
          "500 with PostHog's body, %d others identical to the intact store's; verify names "
          "both" % (errors, served))

    # An unknown store format: every tool and dmjd refuse it with the reason, and leave it.
    fmt = os.path.join(tmp, "fmt")
    shutil.copytree(store.dir, fmt)
    header, pairs = dump(fmt, "meta")
    fk = "format".encode().hex()
    assert any(k == fk for k, _ in pairs), pairs
    load(fmt, "meta", header, [(fk, "0000007f")], tmp)  # a store format from the future
    for args in (("verify", "--db", fmt), ("stats", "--db", fmt),
                 ("import", "--db", fmt, store.jobs_path)):
        code, out, err = tool(*args)
        assert code != 0 and "version" in err, (args, code, err)
    srv = subprocess.run([binary("dmjd"), "--db", fmt, "--listen", "127.0.0.1:0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
    assert srv.returncode != 0 and "version" in srv.stderr, (srv.returncode, srv.stderr)
    _, pairs = dump(fmt, "meta")
    assert (fk, "0000007f") in pairs, "a refused store was changed"
    print("  unknown store format: dmjd, import, verify and stats refuse it, naming the version")


def refused_by_all(db, words, jobs_path):
    """dmjd, verify, stats, export and import all refuse the store with a message holding
    `words`, exit 1 (not a signal), and leave data.mdb as it was."""
    data = os.path.join(db, "data.mdb")
    with open(data, "rb") as f:
        before = f.read()
    for args in (("verify", "--db", db), ("stats", "--db", db), ("export", "--db", db),
                 ("import", "--db", db, jobs_path)):
        code, out, err = tool(*args)
        assert code == 1 and words in err, (args, code, err)
    res = subprocess.run([binary("dmjd"), "--db", db, "--listen", "127.0.0.1:0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
    assert res.returncode == 1 and words in res.stderr, (res.returncode, res.stderr)
    with open(data, "rb") as f:
        assert f.read() == before, "a refused store was changed"


def case_damaged_files(store, tmp):
    # A copy cut short: LMDB alone dies of SIGBUS reading past the end of the file. A store
    # cut in half, and a (compacted) backup one page short.
    cut = os.path.join(tmp, "cut")
    os.makedirs(cut)
    with open(os.path.join(store.dir, "data.mdb"), "rb") as f:
        data = f.read()
    with open(os.path.join(cut, "data.mdb"), "wb") as f:
        f.write(data[:len(data) // 2])
    refused_by_all(cut, "truncated", store.jobs_path)
    backup = os.path.join(tmp, "backup")
    ok("backup", "--db", store.dir, backup)
    with open(os.path.join(backup, "data.mdb"), "rb") as f:
        copy = f.read()
    with open(os.path.join(backup, "data.mdb"), "wb") as f:
        f.write(copy[:len(copy) - 4096])
    refused_by_all(backup, "truncated", store.jobs_path)
    # An empty data file (a first import killed before LMDB wrote to it): readers say there
    # is nothing there; the next import makes it a store.
    empty = os.path.join(tmp, "empty")
    os.makedirs(empty)
    open(os.path.join(empty, "data.mdb"), "wb").close()
    for args in (("verify", "--db", empty), ("stats", "--db", empty)):
        code, out, err = tool(*args)
        assert code == 1 and "No data available" in err, (args, code, err)
    ok("import", "--db", empty, store.fixtures_path, store.jobs_path)
    verify_clean(empty)
    assert export(empty) == export(store.dir)
    print("  a data.mdb cut in half, and a backup one page short, refused by dmjd and every "
          "tool, unchanged; an empty one refused by readers and made a store by the next import")


def partial_in(dest):
    """Whether a backup's unfinished copy (data.mdb.partial-XXXXXX) is in dest."""
    try:
        return any(f.startswith("data.mdb.partial") for f in os.listdir(dest))
    except FileNotFoundError:
        return False


def case_backup_killed(store, tmp):
    """`dmj backup` killed at random moments: the destination never holds a data.mdb that is
    not the whole copy, and the next backup into it succeeds. `dmj prune` killed at random
    moments: the store is as before or wholly pruned."""
    db = os.path.join(tmp, "db")
    jobs, fixtures = generate(tmp, "many", 40000, 2, seed=41)
    ok("import", "--db", db, fixtures, jobs)
    whole = export(db)
    rng = random.Random(41)
    started = time.monotonic()
    ok("backup", "--db", db, os.path.join(tmp, "timed"))
    took = time.monotonic() - started
    killed = mid_copy = attempts = 0
    for n in range(20):
        if killed >= 4 and mid_copy >= 2:
            break
        attempts += 1
        dest = os.path.join(tmp, "backup-%d" % n)
        proc = subprocess.Popen([binary("dmj"), "backup", "--db", db, dest],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if n % 2:
            # Aimed: killed as soon as the copy's file exists, before it is linked into place.
            while proc.poll() is None and not partial_in(dest):
                time.sleep(0.0002)
        else:
            time.sleep(rng.uniform(0, took))
        proc.kill()
        _, err = proc.communicate()
        data = os.path.join(dest, "data.mdb")
        if proc.returncode == -signal.SIGKILL:
            killed += 1
            mid_copy += partial_in(dest)
        else:
            assert proc.returncode == 0, err
        if os.path.exists(data):
            # killed after the copy was linked into place (or not killed): it is whole
            verify_clean(dest)
            assert export(dest) == whole
            dest += "-again"
        ok("backup", "--db", db, dest)
        verify_clean(dest)
        assert export(dest) == whole
    assert killed >= 2, "only %d of 20 backups were killed before they ended" % killed
    assert mid_copy >= 2, "only %d of %d killed backups were killed mid-copy" % (mid_copy, killed)
    print("  dmj backup (%.3f s) killed %d times in %d tries (%d mid-copy): never a partial "
          "data.mdb, every next backup whole" % (took, killed, attempts, mid_copy))

    # dmj prune killed at random moments: one transaction, so all or nothing.
    lines = whole.splitlines()
    stamps = sorted(json.loads(line)["created_at"] for line in lines)
    cut = stamps[len(stamps) // 2]
    kept = [line for line in lines if json.loads(line)["created_at"] >= cut]
    scratch = os.path.join(tmp, "scratch")
    shutil.copytree(db, scratch)
    started = time.monotonic()
    ok("prune", "--db", scratch, "--before", cut)
    took = time.monotonic() - started
    assert export(scratch).splitlines() == kept, "prune did not keep what it should"
    outcomes = {"nothing": 0, "all": 0}
    for n in range(8):
        proc = subprocess.Popen([binary("dmj"), "prune", "--db", db, "--before", cut],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0, 0.8 * took))
        proc.kill()
        proc.communicate()
        verify_clean(db)
        now = export(db).splitlines()
        assert now in (lines, kept), "a killed prune left %d of %d jobs" % (len(now), len(lines))
        outcomes["all" if now == kept else "nothing"] += 1
        if now == kept:
            # put the pruned jobs back for the next round
            ok("import", "--db", db, jobs)
            assert export(db) == whole
    print("  dmj prune (%.3f s) killed 8 times: %d left the store whole, %d found it pruned; "
          "never half" % (took, outcomes["nothing"], outcomes["all"]))


CASES = [case_dmjd_sigkill, case_map_full, case_map_grown, case_disk_full, case_damaged_records,
         case_damaged_files, case_backup_killed]
# Run only when named: integration.test_faults_disk_full (tests/CMakeLists.txt) runs it alone,
# so that a machine that cannot mount a tmpfs skips that case and not the others.
ALONE = [case_disk_full]


def main():
    only = sys.argv[1:]
    cases = [c for c in CASES if c.__name__ in only] if only else \
        [c for c in CASES if c not in ALONE]
    return run_cases(cases, "dmj-test-faults-")


if __name__ == "__main__":
    sys.exit(main())
