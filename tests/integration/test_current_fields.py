#!/usr/bin/python3
"""PostHog's current job fields (run_mode, updated_at) through every way in and out: data from
gen_jobs.py --current imported as NDJSON, as a JSON array, as `--pg-copy` text (row_to_json
lines, COPY-escaped), as the API pages `dmjd --posthog-api offset` serves (walked by `next`,
--team), and followed from PostgreSQL 15 by `dmj sync` (skipped without it); `dmj export`
gives both fields back as given, `dmj get --posthog-api offset` and dmjd serve them, and
`dmj verify` passes. Skipped (77) without $DMJ_SHARED_DIR/tools/gen_jobs.py."""

import json
import os
import subprocess
import sys
import tempfile
import shutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dmjtest import SHARED_DIR, Server, binary, get, run, skip  # noqa: E402

FIELDS = ("run_mode", "updated_at")


def to_us(text):
    import pg_helper
    return pg_helper.to_us(text)


def exported(db):
    rows = {}
    for line in run(binary("dmj"), "export", "--db", db).stdout.split("\n"):
        if line.strip():
            r = json.loads(line)
            rows[r["id"]] = r
    run(binary("dmj"), "verify", "--db", db)
    return rows


def check_same(what, source, db, teams=None):
    """Every source job of `teams` (all when None) is in the store with both fields as given."""
    got = exported(db)
    bad = []
    n = 0
    for j in source:
        if teams is not None and j["team_id"] not in teams:
            continue
        n += 1
        r = got.get(j["id"])
        if r is None:
            bad.append("%s missing" % j["id"])
            continue
        if r.get("run_mode") != j.get("run_mode"):
            bad.append("%s run_mode %r != %r" % (j["id"], r.get("run_mode"), j.get("run_mode")))
        if to_us(r.get("updated_at")) != to_us(j.get("updated_at")):
            bad.append("%s updated_at %r != %r" % (j["id"], r.get("updated_at"),
                                                  j.get("updated_at")))
    assert n > 0 and not bad, "%s: %d of %d jobs differ: %s" % (what, len(bad), n, bad[:3])
    print("ok   %s: %d jobs, run_mode and updated_at as given" % (what, n))


def main():
    gen = os.path.join(SHARED_DIR, "tools", "gen_jobs.py")
    if not SHARED_DIR or not os.path.exists(gen):
        skip("no gen_jobs.py in $DMJ_SHARED_DIR/tools (its --current writes the new fields)")
    binary("dmj")
    binary("dmjd")
    tmp = tempfile.mkdtemp(prefix="dmj_current_")
    try:
        jobs_path = os.path.join(tmp, "jobs.ndjson")
        fx_path = os.path.join(tmp, "fixtures.json")
        run(sys.executable, gen, "--current", "--jobs", "2000", "--teams", "3", "--seed", "7",
            "--out", jobs_path, "--fixtures-out", fx_path)
        with open(jobs_path, encoding="utf-8") as f:
            jobs = [json.loads(line) for line in f if line.strip()]
        assert any(j.get("run_mode") for j in jobs) and any(j.get("updated_at") is None
                                                           for j in jobs)
        assert any((j.get("workflow_id") or "").startswith("execute-dag") for j in jobs)

        db = os.path.join(tmp, "ndjson")
        run(binary("dmj"), "import", "--db", db, fx_path, jobs_path)
        check_same("NDJSON", jobs, db)

        array = os.path.join(tmp, "jobs.json")
        with open(array, "w", encoding="utf-8") as f:
            json.dump(jobs, f, ensure_ascii=False)
        db2 = os.path.join(tmp, "array")
        run(binary("dmj"), "import", "--db", db2, array)
        check_same("JSON array", jobs, db2)

        # COPY text of row_to_json: JSON lines, every backslash doubled.
        copy = os.path.join(tmp, "jobs.copy")
        with open(copy, "w", encoding="utf-8") as f:
            for j in jobs:
                f.write(json.dumps(j, ensure_ascii=False).replace("\\", "\\\\") + "\n")
        db3 = os.path.join(tmp, "copy")
        run(binary("dmj"), "import", "--db", db3, "--pg-copy", copy)
        check_same("--pg-copy", jobs, db3)

        # What dmjd --posthog-api offset serves, and dmj get, carry both fields.
        with open(fx_path, encoding="utf-8") as f:
            key = next(k["key"] for k in json.load(f)["personal_api_keys"]
                       if k.get("label") == "read")
        db4 = os.path.join(tmp, "pages")
        team1 = [j for j in jobs if j["team_id"] == 1 and j.get("engine") != "duckgres"]
        with Server(db, "--posthog-api", "offset") as srv:
            conn = srv.conn()
            target = "/api/projects/1/data_modeling_jobs/?limit=100"
            pages = 0
            while target:
                res, body = get(conn, target, key)
                assert res.status == 200, (res.status, body[:200])
                page = os.path.join(tmp, "page%d.json" % pages)
                with open(page, "wb") as f:
                    f.write(body)
                pages += 1
                doc = json.loads(body)
                assert doc["count"] == len(team1), (doc["count"], len(team1))
                target = doc["next"] and doc["next"].split(str(srv.port), 1)[1]
            conn.close()
        run(binary("dmj"), "import", "--db", db4, "--team", "1",
            *[os.path.join(tmp, "page%d.json" % i) for i in range(pages)])
        check_same("offset API pages (%d)" % pages, team1, db4)
        one = next(j for j in team1 if j.get("run_mode") and j.get("updated_at"))
        got = json.loads(run(binary("dmj"), "get", "--db", db, "--posthog-api", "offset",
                             one["id"]).stdout)
        assert list(got)[3] == "run_mode" and list(got)[8] == "updated_at", list(got)
        assert got["run_mode"] == one["run_mode"]
        assert to_us(got["updated_at"]) == to_us(one["updated_at"])
        got = json.loads(run(binary("dmj"), "get", "--db", db, one["id"]).stdout)
        assert "run_mode" not in got and len(got) == 10, list(got)
        print("ok   dmj get: twelve fields with --posthog-api offset, ten without")

        sync_case(tmp, jobs_path, fx_path, jobs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def sync_case(tmp, jobs_path, fx_path, jobs):
    import pg_helper
    if not os.access(os.path.join(pg_helper.PGBIN, "initdb"), os.X_OK):
        print("skip dmj sync: PostgreSQL 15 is not installed in %s" % pg_helper.PGBIN)
        return
    pg = pg_helper.Postgres(timezone="Asia/Kolkata")
    try:
        pg.create_schema()
        pg.load_jobs(jobs_path, updated_at="keep")
        pg.load_fixtures(fx_path)
        db = os.path.join(tmp, "sync")
        res = subprocess.run([binary("dmj"), "sync", "--postgres", pg.conninfo, "--db", db,
                              "--once"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-2000:]
        check_same("dmj sync", jobs, db)
        pg.execute("update posthog_datamodelingjob set run_mode = 'incremental',"
                   " updated_at = now() where run_mode is null")
        res = subprocess.run([binary("dmj"), "sync", "--postgres", pg.conninfo, "--db", db,
                              "--once"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-2000:]
        got = exported(db)
        assert all(r.get("run_mode") for r in got.values()), "a changed run_mode was not synced"
        print("ok   dmj sync: run_mode and updated_at as in PostgreSQL, and their changes")
    finally:
        pg.stop()


if __name__ == "__main__":
    sys.exit(main())
