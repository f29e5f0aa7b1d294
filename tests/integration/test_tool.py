#!/usr/bin/env python3
"""The dmj tool's other subcommands: get, stats, backup, prune, generate, keys usage, --help
on every subcommand, $DMJ_DB, usage errors, and the progress line on a terminal."""

import collections
import datetime
import json
import os
import pty
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dmjtest import BIN_DIR, Checks, dmj  # noqa: E402

DMJ = os.path.join(BIN_DIR, "dmj")
T = Checks("dmj-test-tool-")
check, path = T.check, T.path


def rows_of(data):
    return [json.loads(line) for line in data.split(b"\n") if line.strip()]


def us(text):
    dt = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    d = dt - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    return (d.days * 86400 + d.seconds) * 1000000 + d.microseconds


def test_generate():
    a = dmj("generate", "--jobs", 20000, "--teams", 6, "--seed", 4).stdout
    b = dmj("generate", "--jobs", 20000, "--teams", 6, "--seed", 4).stdout
    c = dmj("generate", "--jobs", 20000, "--teams", 6, "--seed", 5).stdout
    check(a == b and a != c, "generate: same arguments same bytes, another seed other bytes")
    rows = rows_of(a)
    check(len(rows) == 20000, "generate --jobs 20000 writes 20000 lines")
    teams = collections.Counter(r["team_id"] for r in rows)
    check(set(teams) == {1, 2, 3, 4, 5}, "jobs in teams 1..5, the last team empty")
    status = collections.Counter(r["status"] for r in rows)
    check(0.03 < status["Running"] / 20000 < 0.07, "about 5% Running")
    created = collections.Counter((r["team_id"], r["created_at"]) for r in rows)
    check(max(created.values()) >= 20, "runs of equal created_at within a team")
    check(sum(1 for r in rows if r["created_at"].endswith(".000000Z")) > 50,
          "whole-second timestamps")
    mat = sum(1 for r in rows if (r["workflow_id"] or "").startswith("materialize"))
    check(mat > 0.7 * len(rows), "most workflow_ids start with materialize")
    check(any(r["saved_query_id"] is None for r in rows), "null saved queries")
    errors = "".join(r["error"] or "" for r in rows)
    for ch, what in (('"', "quotes"), ("\\", "backslashes"), ("\x01", "control chars"),
                     ("\u2028", "U+2028"), ("\U0001F4A5", "non-BMP")):
        check(ch in errors, "errors contain %s" % what)
    fx = path("fx.json")
    dmj("generate", "--jobs", 10, "--teams", 3, "--fixtures-out", fx, "--out", path("j.ndjson"))
    f = json.load(open(fx))
    labels = [k["label"] for k in f["personal_api_keys"]]
    check(labels == ["read", "write", "star", "wrong_scope", "empty_scopes", "null_scopes",
                     "team1_only", "org1_only", "bob_read", "carol_read", "dave_read",
                     "erin_read"], "fixtures: gen_jobs.py's key labels in order")
    alice = f["users"][0]
    member = {m["organization_id"] for m in f["organization_memberships"] if m["user_id"] == 1}
    check(alice["current_team_id"] == 1 and member == {o["id"] for o in f["organizations"]},
          "alice: current team 1, member of every organization")
    import hashlib
    check(all(k["secure_value"] == "sha256$" + hashlib.sha256(k["key"].encode()).hexdigest()
              for k in f["personal_api_keys"]), "fixture keys: secure_value hashes the raw key")
    sq = {s["id"] for s in f["saved_queries"]}
    jobs = rows_of(open(path("j.ndjson"), "rb").read())
    check(all(r["saved_query_id"] is None or r["saved_query_id"] in sq for r in jobs),
          "jobs use the fixtures' saved queries")
    db = path("gen-db")
    dmj("import", "--db", db, path("j.ndjson"), fx)
    for k in f["personal_api_keys"]:
        dmj("keys", "check", "--db", db, k["key"])


def test_get_stats_prune_backup():
    src = path("jobs.ndjson")
    dmj("generate", "--jobs", 5000, "--teams", 4, "--seed", 8, "--out", src)
    rows = rows_of(open(src, "rb").read())
    db = path("db")
    dmj("import", "--db", db, src)

    job = rows[17]
    got = json.loads(dmj("get", "--db", db, job["id"]).stdout)
    check(list(got) == ["id", "saved_query_id", "status", "rows_materialized", "error",
                        "created_at", "last_run_at", "workflow_id", "workflow_run_id",
                        "rows_expected"], "get: the API's ten fields in order")
    check(got["id"] == job["id"] and got["status"] == job["status"] and
          got["error"] == job["error"] and us(got["created_at"]) == us(job["created_at"]),
          "get: the job's values")
    dmj("get", "--db", db, job["id"].upper().replace("-", ""))
    dmj("get", "--db", db, "6e8d0d6c-1111-4111-8111-111111111111", expect=1)
    dmj("get", "--db", db, "not-a-uuid", expect=1)

    stats = json.loads(dmj("stats", "--db", db, "--json").stdout)
    want = collections.Counter((r["team_id"], r["status"]) for r in rows)
    got_counts = collections.Counter()
    for t in stats["teams"]:
        for s, n in t["by_status"].items():
            if n:
                got_counts[(t["team_id"], s)] = n
    check(got_counts == want and stats["jobs"] == 5000, "stats --json: jobs per team and status")
    check(stats["used_bytes"] > 0 and stats["map_size"] >= stats["used_bytes"], "stats: sizes")
    text = dmj("stats", "--db", db).stdout.decode()
    check("5000 jobs" in text and "team 1:" in text, "stats: text form")

    backup = path("backup")
    dmj("backup", "--db", db, backup)
    before = dmj("export", "--db", db).stdout
    check(dmj("export", "--db", backup).stdout == before, "backup: same export as the store")
    dmj("verify", "--db", backup)

    cut = "2024-01-15"
    cut_us = us("2024-01-15T00:00:00Z")
    old = [r for r in rows if us(r["created_at"]) < cut_us and r["team_id"] == 2]
    p = dmj("prune", "--db", db, "--before", cut, "--team", 2, "--dry-run")
    check(("would prune %d jobs" % len(old)).encode() in p.stdout, "prune --dry-run counts")
    check(dmj("export", "--db", db).stdout == before, "prune --dry-run deletes nothing")
    p = dmj("prune", "--db", db, "--before", cut, "--team", 2)
    check(("pruned %d jobs" % len(old)).encode() in p.stdout and len(old) > 0, "prune counts")
    left = rows_of(dmj("export", "--db", db).stdout)
    gone = {r["id"] for r in old}
    check(len(left) == 5000 - len(old) and not gone & {r["id"] for r in left},
          "prune deleted exactly the old jobs of team 2")
    dmj("verify", "--db", db)
    stats = json.loads(dmj("stats", "--db", db, "--json").stdout)
    check(stats["jobs"] == 5000 - len(old), "stats after prune")
    dmj("get", "--db", db, old[0]["id"], expect=1)
    p = dmj("prune", "--db", db, "--before", "2030-01-01T00:00:00Z")
    check(b"pruned %d jobs" % (5000 - len(old)) in p.stdout, "prune everything")
    check(dmj("export", "--db", db).stdout == b"", "empty after pruning everything")
    dmj("verify", "--db", db)
    dmj("prune", "--db", db, "--before", "yesterday", expect=1)


def test_usage():
    for cmd in ("import", "export", "get", "stats", "verify", "keys", "backup", "prune",
                "generate"):
        p = dmj(cmd, "--help")
        check(p.stdout.startswith(b"usage: dmj " + cmd.encode()), "%s --help" % cmd)
    dmj("--help")
    dmj(expect=2)
    dmj("nope", expect=2)
    dmj("import", expect=2)
    dmj("import", "--bogus", "x", expect=2)
    dmj("get", expect=2)
    dmj("prune", "--db", path("x"), expect=2)
    dmj("keys", "frobnicate", expect=2)
    dmj("export", "--db", path("does-not-exist"), expect=1)

    env = dict(os.environ, DMJ_DB=path("envdb"))
    dmj("generate", "--jobs", 5, "--out", path("e.ndjson"))
    dmj("import", path("e.ndjson"), env=env)
    check(len(rows_of(dmj("export", env=env).stdout)) == 5, "$DMJ_DB is the default store")
    cwd = path("cwd")
    os.mkdir(cwd)
    p = subprocess.run([os.path.abspath(DMJ), "import", path("e.ndjson")], cwd=cwd,
                       capture_output=True, env={k: v for k, v in os.environ.items()
                                                 if k != "DMJ_DB"})
    check(p.returncode == 0 and os.path.exists(os.path.join(cwd, "dmj-data", "data.mdb")),
          "./dmj-data when neither --db nor $DMJ_DB")


def test_map_full():
    src = path("mf.ndjson")
    dmj("generate", "--jobs", 20000, "--seed", 2, "--out", src)
    db = path("mf-db")
    dmj("import", "--db", db, "--map-size", "64M", path("e.ndjson"))
    before = dmj("export", "--db", db).stdout
    p = dmj("import", "--db", db, "--map-size", "1M", src, expect=1)
    check(b"map size" in p.stderr and b"nothing of this import was stored" in p.stderr,
          "a full map fails the import and says so")
    check(dmj("export", "--db", db).stdout == before, "a full map stores nothing")
    dmj("import", "--db", db, "--map-size", "1x", src, expect=1)
    dmj("import", "--db", db, "--map-size", "256M", src)
    check(len(rows_of(dmj("export", "--db", db).stdout)) == 20005, "a larger map takes it")


def test_progress_on_terminal():
    src = path("p.ndjson")
    dmj("generate", "--jobs", 2000, "--out", src)
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(DMJ, [DMJ, "import", "--db", path("pty-db"), src])
    out = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    check(os.WEXITSTATUS(status) == 0, "import on a terminal succeeds")
    check(b"2000 records," in out and b"records/s" in out and b"\r" in out,
          "a progress line on a terminal")
    p = dmj("import", "--db", path("pty-db2"), src)
    check(b"records/s" not in p.stderr, "no progress line when stderr is not a terminal")


def main():
    return T.main((test_generate, test_get_stats_prune_backup, test_usage, test_map_full,
                  test_progress_on_terminal))


if __name__ == "__main__":
    sys.exit(main())
