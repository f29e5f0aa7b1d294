#!/usr/bin/env python3
"""dmj import: every input form, round trips, atomicity of a failed import, --batch,
--skip-invalid, upserts that keep the indexes exact, verify catching a corrupted index,
keys, gzip, and gen_jobs.py's fixtures. Python 3 standard library only."""

import datetime
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import need  # noqa: E402
from dmjtest import BIN_DIR, SHARED_DIR, Checks, dmj  # noqa: E402

DMJ = os.path.join(BIN_DIR, "dmj")
SHARED = SHARED_DIR
T = Checks("dmj-test-import-")
check, path, write = T.check, T.path, T.write


def export(db, *extra):
    return dmj("export", "--db", db, *extra).stdout


def to_us(text):
    """An import timestamp -> UTC microseconds (the spec's forms, via Python)."""
    if text is None:
        return None
    t = text.replace(" ", "T", 1)
    if t.endswith("Z"):
        t = t[:-1] + "+00:00"
    # Python 3.9's fromisoformat wants 3 or 6 fraction digits and a +HH:MM offset
    head, sep, frac = t.partition(".")
    if sep:
        digits = ""
        rest = frac
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        t = head + "." + digits.ljust(6, "0") + rest
    dt = datetime.datetime.fromisoformat(t)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    delta = dt - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    return (delta.days * 86400 + delta.seconds) * 1000000 + delta.microseconds


FIELDS = ["id", "team_id", "saved_query_id", "status", "rows_materialized", "error",
          "created_at", "last_run_at", "workflow_id", "workflow_run_id", "rows_expected"]


def normal(row, team=None):
    """The fields every input carries, normalised for comparison."""
    out = {}
    for k in FIELDS:
        v = row.get(k)
        if k == "team_id" and v is None:
            v = team
        if k in ("created_at", "last_run_at"):
            v = to_us(v)
        out[k] = v
    return out


def rows_of(ndjson):
    # bytes.split, not str.splitlines: the latter also splits at U+2028 inside strings
    return [json.loads(line) for line in ndjson.split(b"\n") if line.strip()]


def by_id(rows, team=None):
    return {r["id"]: normal(r, team) for r in rows}


def store_bytes(db):
    """The used part of the store's data file (the file itself may be as large as the map,
    sparse), to look for bytes in it."""
    used = json.loads(dmj("stats", "--db", db, "--json").stdout)["used_bytes"]
    with open(os.path.join(db, "data.mdb"), "rb") as f:
        return f.read(used)


def generate(name, jobs, teams=4, seed=1):
    out = path(name)
    dmj("generate", "--jobs", jobs, "--teams", teams, "--seed", seed, "--out", out)
    return out


# ---- every input form ------------------------------------------------------------------


def test_input_forms():
    src = generate("forms.ndjson", 3000, teams=5, seed=3)
    rows = rows_of(open(src, "rb").read())
    want = by_id(rows)

    dmj("import", "--db", path("nd"), src)
    check(by_id(rows_of(export(path("nd")))) == want, "NDJSON: export holds every field as given")

    arr = write("arr.json", json.dumps(rows, indent=2, ensure_ascii=False))
    dmj("import", "--db", path("arr"), arr)
    check(export(path("arr")) == export(path("nd")), "JSON array: same store as NDJSON")

    p = dmj("import", "--db", path("stdin"), "-", stdin=open(src, "rb").read())
    check(export(path("stdin")) == export(path("nd")), "standard input: same store")
    check(b"3000 records read" in p.stderr, "summary counts the records read")

    bom = write("bom.json", b"\xef\xbb\xbf" + json.dumps(rows).encode())
    dmj("import", "--db", path("bom"), bom)
    check(export(path("bom")) == export(path("nd")), "a UTF-8 byte order mark is skipped")

    gz = write("forms.ndjson.gz", gzip.compress(open(src, "rb").read()))
    dmj("import", "--db", path("gz"), gz)
    check(export(path("gz")) == export(path("nd")), "gzip by name")
    nosuffix = write("forms.bin", gzip.compress(json.dumps(rows).encode()))
    dmj("import", "--db", path("gz2"), nosuffix)
    check(export(path("gz2")) == export(path("nd")), "gzip by magic bytes (array inside)")
    two = write("two.gz", gzip.compress(open(src, "rb").read()[:1000000]) +
                gzip.compress(open(src, "rb").read()[1000000:]))
    dmj("import", "--db", path("gz3"), two)
    check(export(path("gz3")) == export(path("nd")), "concatenated gzip members")
    trunc = write("trunc.gz", gzip.compress(open(src, "rb").read())[:5000])
    p = dmj("import", "--db", path("gz4"), trunc, expect=1)
    check(b"trunc.gz:" in p.stderr and b"gzip" in p.stderr, "truncated gzip is refused")

    # An API page and a bare array carry no team: --team gives it.
    team2 = [r for r in rows if r["team_id"] == 2]
    served = [{k: v for k, v in r.items() if k != "team_id"} for r in team2]
    page = write("page.json", json.dumps({"next": "http://h/?cursor=x", "previous": None,
                                          "results": served[:100]}))
    bare = write("bare.json", json.dumps(served[100:]))
    p = dmj("import", "--db", path("page"), page, expect=1)
    check(b"page.json:1: team_id: " in p.stderr, "a page without --team says team_id: ...")
    dmj("import", "--db", path("page"), "--team", 2, page, bare)
    check(by_id(rows_of(export(path("page")))) == by_id(team2),
          "API page + bare array with --team")
    check(export(path("page")) == export(path("nd"), "--team", 2),
          "export --team 2 equals the page import")
    p = dmj("import", "--db", path("page2"), "--team", 3, src, expect=1)
    check(b"differs from --team" in p.stderr, "a record of another team than --team is refused")

    # Kinds: identities one per line with "kind", or a whole file by --kind.
    org = "6e8d0d6c-4444-4444-8444-444444444444"
    ident = write("ident.ndjson", "\n".join(json.dumps(x) for x in [
        {"kind": "organization", "id": org, "name": "O"},
        {"kind": "team", "id": 2, "project_id": 2, "organization_id": org, "name": "T"},
        {"kind": "user", "id": 7, "is_active": True, "current_team_id": 2,
         "current_organization_id": org},
        {"kind": "membership", "user_id": 7, "organization_id": org, "level": 1},
        {"kind": "personal_api_key", "id": "k7", "user_id": 7, "value": "phx_seven",
         "scopes": ["warehouse_view:read"], "scoped_teams": [2], "scoped_organizations": None},
    ]) + "\n")
    dmj("import", "--db", path("ident"), ident)
    p = dmj("keys", "check", "--db", path("ident"), "phx_seven")
    check(b"id k7, user 7" in p.stdout and b"teams [2]" in p.stdout, "key from a raw value")
    users = write("users.ndjson", '{"id": 8, "is_active": false}\n')
    dmj("import", "--db", path("ident"), "--kind", "user", users)
    p = dmj("import", "--db", path("ident"), "--kind", "nope", users, expect=1)
    check(b"--kind" in p.stderr, "unknown --kind refused")

    # The other timestamp spellings of the spec, and PostgreSQL's short fractions.
    spell = write("spell.ndjson", "\n".join(json.dumps(x) for x in [
        {"id": "{6E8D0D6C-1111-4111-8111-111111111111}", "team": 1, "status": "Completed",
         "created_at": "2024-05-01 12:00:00.12345+02:00", "last_run_at": "2024-05-01T10:00:01Z"},
        {"id": "urn:uuid:6e8d0d6c111141118111222222222222", "team_id": 1, "status": "Skipped",
         "created_at": "2024-05-01T10:00:00-05:30", "engine": "duckgres",
         "storage_delta_mib": 0.25, "created_by_id": 3, "run_mode": "full_refresh",
         "parent_workflow_id": "p", "updated_at": "2024-05-02 00:00:00", "unknown": [1, {}]},
    ]) + "\n")
    dmj("import", "--db", path("spell"), spell)
    got = {r["id"]: r for r in rows_of(export(path("spell")))}
    a = got.get("6e8d0d6c-1111-4111-8111-111111111111", {})
    b = got.get("6e8d0d6c-1111-4111-8111-222222222222", {})
    check(to_us(a.get("created_at")) == to_us("2024-05-01T10:00:00.123450Z"),
          "space separator, 5-digit fraction, +02:00 offset")
    check(a.get("engine") == "clickhouse", "absent engine exports as clickhouse")
    check(to_us(b.get("created_at")) == to_us("2024-05-01T15:30:00Z"), "-05:30 offset")
    check(b.get("engine") == "duckgres" and b.get("storage_delta_mib") == 0.25 and
          b.get("created_by_id") == 3 and b.get("run_mode") == "full_refresh" and
          b.get("parent_workflow_id") == "p" and
          to_us(b.get("updated_at")) == to_us("2024-05-02T00:00:00Z"),
          "stored-only fields survive")
    e1 = export(path("spell"))
    dmj("import", "--db", path("spell2"), "-", stdin=e1)
    check(export(path("spell2")) == e1, "every field, hidden jobs too, round-trips as bytes")


# ---- round trip ------------------------------------------------------------------------


def test_round_trip():
    src = generate("rt.ndjson", 5000, teams=4, seed=9)
    dmj("import", "--db", path("rt1"), src)
    e1 = export(path("rt1"))
    dmj("import", "--db", path("rt2"), "-", stdin=e1)
    e2 = export(path("rt2"))
    check(e1 == e2 and len(e1) > 0, "import -> export -> import -> export: identical bytes")
    dmj("import", "--db", path("rt1"), "-", stdin=e1)
    check(export(path("rt1")) == e1, "re-importing an export into the same store changes nothing")
    p = dmj("import", "--db", path("rt1"), "-", stdin=e1)
    check(b" 0 inserted, 5000 replaced" in p.stderr, "re-import counts replacements")


# ---- a failed import stores nothing ----------------------------------------------------


def test_atomic_failure():
    db = path("atomic")
    dmj("import", "--db", db, generate("base.ndjson", 1000, seed=5))
    before = export(db)
    big = generate("big.ndjson", 100000, seed=6)
    with open(big, "ab") as f:
        f.write(b'{"id":"6e8d0d6c-1111-4111-8111-111111111111","team_id":1,"status":"Bogus",'
                b'"created_at":"2024-01-01T00:00:00Z"}\n')
    p = dmj("import", "--db", db, big, expect=1)
    check(("%s:100001: status: " % big).encode() in p.stderr,
          "bad last line reported as FILE:100001: status: reason")
    check(export(db) == before, "a bad line at the end of 100k jobs leaves the store as it was")
    # Line numbers survive gzip and COPY unescaping, across every read and slice boundary.
    big_gz = write("big.ndjson.gz", gzip.compress(open(big, "rb").read(), 1))
    p = dmj("import", "--db", db, big_gz, expect=1)
    check(("%s:100001: status: " % big_gz).encode() in p.stderr, "gzip: line of the bad record")
    copy = write("big.copy", open(big, "rb").read().replace(b"\\", b"\\\\"))
    p = dmj("import", "--db", db, "--pg-copy", copy, expect=1)
    check(("%s:100001: status: " % copy).encode() in p.stderr, "--pg-copy: line of the bad record")
    p = dmj("import", "--dry-run", big, expect=1)
    check(("%s:100001: status: " % big).encode() in p.stderr, "--dry-run validates too")
    check(export(db) == before, "still nothing stored")

    syntax = write("syntax.ndjson", open(big, "rb").read().splitlines()[0] + b"\n{\"id\": tru\n")
    p = dmj("import", "--db", db, syntax, expect=1)
    check(("%s:2: json: " % syntax).encode() in p.stderr, "syntax error: FILE:2: json: reason")
    check(export(db) == before, "a syntax error stores nothing")

    cut = write("cut.ndjson", open(big, "rb").read()[:5000])
    p = dmj("import", "--db", db, cut, expect=1)
    check(b"cut.ndjson:" in p.stderr, "input ending inside a value is refused")
    check(export(db) == before, "a truncated input stores nothing")

    # Several files are one import: the second one's error undoes the first one's records.
    good = generate("good.ndjson", 50, seed=11)
    bad = write("bad.ndjson", '{"id":"x","team_id":1}\n')
    p = dmj("import", "--db", db, good, bad, expect=1)
    check(b"bad.ndjson:1: id: not a UUID" in p.stderr, "second file's error names it")
    check(export(db) == before, "an import of several files is one transaction")

    arr = write("arr_bad.json", '[\n {"id": "6e8d0d6c-1111-4111-8111-111111111111",\n'
                '  "team_id": 1,\n  "status": "Running",\n  "created_at": "yesterday"}\n]\n')
    p = dmj("import", "--db", db, arr, expect=1)
    check(b"arr_bad.json:5: created_at: " in p.stderr, "line of the bad field in a pretty array")


# ---- readers are never blocked ---------------------------------------------------------


def test_reader_during_import():
    """An import in progress holds the write transaction; a reader still runs and sees the
    committed batches, and nothing of the open one."""
    import time
    lines = open(generate("live.ndjson", 500, seed=21), "rb").read().splitlines(keepends=True)
    fifo = path("live.fifo")
    os.mkfifo(fifo)
    db = path("live")
    dmj("import", "--db", db, generate("live0.ndjson", 1, seed=22))  # the store exists
    proc = subprocess.Popen([DMJ, "import", "--db", db, "--batch", "100", fifo],
                            stderr=subprocess.PIPE)
    with open(fifo, "wb") as w:
        w.write(b"".join(lines[:250]))
        w.flush()
        seen = 0
        deadline = time.time() + 30
        while time.time() < deadline:
            seen = len(rows_of(export(db)))
            if seen >= 201:
                break
            time.sleep(0.05)
        check(seen == 201, "a reader during the import sees the 2 committed batches (%d)" % seen)
        time.sleep(0.3)
        check(len(rows_of(export(db))) == 201, "and nothing of the open transaction")
        dmj("verify", "--db", db)
        w.write(b"".join(lines[250:]))
    err = proc.communicate(timeout=60)[1]
    check(proc.returncode == 0 and b"500 records read" in err, "the import then completes")
    check(len(rows_of(export(db))) == 501, "all of it visible after the commit")


# ---- --batch and --skip-invalid --------------------------------------------------------


def test_batch():
    src = open(generate("batch.ndjson", 1000, seed=12), "rb").read().splitlines()
    src[750] = b'{"id":"6e8d0d6c-1111-4111-8111-111111111111","team_id":1}'
    f = write("batch_bad.ndjson", b"\n".join(src) + b"\n")
    db = path("batch")
    p = dmj("import", "--db", db, "--batch", 100, f, expect=1)
    check(b"batch_bad.ndjson:751: status: required" in p.stderr, "--batch: error line")
    got = set(r["id"] for r in rows_of(export(db)))
    want = set(json.loads(line)["id"] for line in src[:700])
    check(got == want, "--batch 100 keeps exactly the 7 batches committed before the error")
    p = dmj("import", "--db", db, "--batch", 100, "--skip-invalid", f)
    check(len(rows_of(export(db))) == 999, "re-running with --skip-invalid completes the import")


def test_skip_invalid():
    lines = open(generate("skip.ndjson", 200, seed=13), "rb").read().splitlines()
    lines[10] = b'{"id": "nope", "team_id": 1}'
    lines[20] = b'{"id": 1 2}'
    lines[30] = b"42"
    lines[40] = lines[40].replace(b'"status":"', b'"status":"x')
    f = write("skip_bad.ndjson", b"\n".join(lines) + b"\n")
    db = path("skip")
    p = dmj("import", "--db", db, "--skip-invalid", f)
    err = p.stderr.decode()
    for line in (11, 21, 31, 41):
        check(("skip_bad.ndjson:%d: " % line) in err, "--skip-invalid reports line %d" % line)
    check("200 records read, 196 inserted" in err and "4 skipped" in err,
          "--skip-invalid summary: read counts the skipped records too")
    check(len(rows_of(export(db))) == 196, "--skip-invalid stores the good records")
    dmj("verify", "--db", db)


# ---- upserts keep the indexes exact ----------------------------------------------------


def test_reimport_changes():
    src = generate("up.ndjson", 4000, seed=14)
    db = path("up")
    dmj("import", "--db", db, src)
    rows = rows_of(open(src, "rb").read())
    changed = []
    for i, r in enumerate(rows):
        r = dict(r)
        if i % 3 == 0:
            r["status"] = "Completed" if r["status"] == "Running" else "Running"
        if i % 5 == 0:
            r["created_at"] = "2023-12-%02dT01:02:03.5Z" % (1 + i % 28)
        if i % 7 == 0:
            r["saved_query_id"] = None
        if i % 11 == 0:
            r["team_id"] = r["team_id"] % 3 + 1  # moves to another team
        changed.append(r)
    f = write("up2.ndjson", "\n".join(json.dumps(r) for r in changed) + "\n")
    p = dmj("import", "--db", db, f)
    check(b"0 inserted, 4000 replaced" in p.stderr, "upsert counts replacements")
    dmj("verify", "--db", db)
    check(by_id(rows_of(export(db))) == by_id(changed), "export shows the new values")
    stats = json.loads(dmj("stats", "--db", db, "--json").stdout)
    running = sum(t["by_status"]["Running"] for t in stats["teams"])
    check(running == sum(1 for r in changed if r["status"] == "Running"),
          "running count follows status changes")
    for team in (1, 2, 3):
        want = sorted(r["id"] for r in changed if r["team_id"] == team)
        got = sorted(r["id"] for r in rows_of(export(db, "--team", team)))
        check(got == want, "team %d holds exactly its jobs after moves" % team)


# ---- verify catches a corrupted index --------------------------------------------------


def test_verify_corruption():
    if not shutil.which("mdb_dump") or not shutil.which("mdb_load"):
        need.missing("mdb_dump/mdb_load (lmdb-utils) not installed: verify's corruption check")
        return
    db = path("vc")
    dmj("import", "--db", db, generate("vc.ndjson", 500, seed=15))
    copy = path("vc-copy")
    dmj("backup", "--db", db, copy)
    dmj("verify", "--db", copy)
    dump = subprocess.run(["mdb_dump", "-s", "by_status", copy], capture_output=True, check=True)
    lines = dump.stdout.decode().splitlines()
    end = lines.index("HEADER=END")
    # mdb_load 0.9.24 does not know the db_pagesize line its own mdb_dump writes
    header = [h for h in lines[:end + 1] if not h.startswith("db_pagesize=")]
    data = lines[end + 1:]
    key, value = data[0], data[1]
    # The same team, status and time, but a job id that no record has.
    bad_key = key[:-2] + ("00" if key[-2:] != "00" else "01")
    new = "\n".join(header + [bad_key, value, "DATA=END"]) + "\n"
    subprocess.run(["mdb_load", "-s", "by_status", copy], input=new.encode(), check=True)
    p = dmj("verify", "--db", copy, expect=1)
    check(len(p.stdout.strip()) > 0 and b"inconsistent" in p.stderr,
          "verify reports an index entry without a record, exit 1")
    dmj("verify", "--db", db)


# ---- keys ------------------------------------------------------------------------------


def test_keys():
    db = path("keys")
    dmj("import", "--db", db, generate("k.ndjson", 10, seed=16))
    dmj("keys", "create", "--db", db, "--user", 7, "--team", 3, "--scopes", "*")
    p = dmj("keys", "create", "--db", db, "--user", 7, "--team", 2, "--scopes",
            "warehouse_view:read,insight:read", "--teams", "2,3")
    raw = p.stdout.decode().strip()
    check(raw.startswith("phx_") and len(raw) == 51, "keys create prints a phx_ key")
    digest = "sha256$" + hashlib.sha256(raw.encode()).hexdigest()
    p = dmj("keys", "check", "--db", db, digest)
    out = p.stdout.decode()
    check("user 7" in out and "warehouse_view:read,insight:read" in out and "teams [2,3]" in out,
          "the key's hash is found by a look-up, with its scopes and teams")
    dmj("keys", "check", "--db", db, raw)
    dmj("keys", "check", "--db", db, "phx_not_a_key", expect=1)
    data = store_bytes(db)
    check(raw.encode() not in data and digest.encode() in data,
          "only the hash is stored, never the raw key")
    dmj("keys", "create", "--db", db, "--user", 7, expect=2)
    p = dmj("keys", "create", "--db", db, "--user", 7, "--scopes", "a", "--orgs", "bad",
            expect=1)
    check(b"--orgs" in p.stderr, "bad --orgs refused")


# ---- gen_jobs.py's fixtures and jobs ---------------------------------------------------


def test_gen_jobs_fixtures():
    gen = os.path.join(SHARED, "tools", "gen_jobs.py")
    if not SHARED or not os.path.isdir(SHARED):
        # ../shared is not part of the repository: a clone without it tests `dmj generate`'s
        # data everywhere else, and the skip is said.
        print("skipped part: no DMJ_SHARED_DIR: gen_jobs.py fixtures not tested", flush=True)
        return
    if not os.path.exists(gen):
        need.missing("DMJ_SHARED_DIR/tools/gen_jobs.py missing: gen_jobs.py fixtures not tested")
        return
    jobs, fx = path("g.ndjson"), path("g-fixtures.json")
    subprocess.run([sys.executable, gen, "--jobs", "3000", "--teams", "5", "--dup-timestamps",
                    "--out", jobs, "--fixtures-out", fx], check=True)
    db = path("gen")
    p = dmj("import", "--db", db, jobs, fx)
    fixtures = json.load(open(fx))
    n_ident = sum(len(fixtures[k]) for k in ("organizations", "teams", "users",
                                              "organization_memberships", "personal_api_keys"))
    check(("%d records read" % (3000 + n_ident)).encode() in p.stderr,
          "fixtures: every identity is read, saved_queries and others ignored")
    check(by_id(rows_of(export(db))) == by_id(rows_of(open(jobs, "rb").read())),
          "gen_jobs.py jobs exported as generated")
    for k in fixtures["personal_api_keys"]:
        out = dmj("keys", "check", "--db", db, k["key"]).stdout.decode()
        check(("id %s, user %d" % (k["id"], k["user_id"])) in out, "fixture key %s" % k["label"])
    data = store_bytes(db)
    check(all(k["key"].encode() not in data for k in fixtures["personal_api_keys"]),
          "no raw fixture key stored")
    # A raw key that does not match its secure_value is refused.
    bad = json.loads(json.dumps(fixtures))
    bad["personal_api_keys"][3]["key"] = "phx_tampered"
    f = write("bad-fixtures.json", json.dumps(bad, indent=1))
    p = dmj("import", "--db", path("gen2"), f, expect=1)
    check(b"secure_value: does not match" in p.stderr, "raw key checked against secure_value")
    dmj("verify", "--db", db)


# ---- --pg-copy -------------------------------------------------------------------------


def test_pg_copy():
    rows = [{"id": "6e8d0d6c-1111-4111-8111-%012d" % i, "team_id": 1, "status": "Failed",
             "rows_materialized": i, "created_at": "2024-05-01T10:00:00.5+00:00",
             "error": 'a "quoted" \\ back\\slash\nnew\tline \u00e9 \u2028 \U0001F4A5 \u0001'}
            for i in range(3)]
    text = "".join(json.dumps(r, ensure_ascii=False).replace("\\", "\\\\") + "\n" for r in rows)
    f = write("copy.txt", text)
    dmj("import", "--db", path("pg"), "--pg-copy", f)
    got = by_id(rows_of(export(path("pg"))))
    check(got == by_id(rows), "--pg-copy undoes COPY's doubled backslashes")
    dmj("import", "--db", path("pg2"), f, expect=1)
    octal = write("octal.txt", '{"id":"6e8d0d6c-1111-4111-8111-000000000009","team_id":1,'
                  '"status":"Running","created_at":"2024-05-01T10:00:00Z",'
                  '"error":"\\101\\x42\\\\n\\103"}\n')
    dmj("import", "--db", path("pg3"), "--pg-copy", octal)
    e = rows_of(export(path("pg3")))
    check(e and e[0]["error"] == "AB\nC", "--pg-copy: octal and hex escapes")

    # Random lines in every escape spelling COPY's reader accepts must decode to the same
    # JSON: shortest octal/hex forms only where the next byte cannot extend them.
    import random
    rng = random.Random(7)
    lines, want = [], {}
    for i in range(400):
        err = "".join(rng.choice("ax0179\\\"z ") for _ in range(rng.randrange(0, 30)))
        jid = "6e8d0d6c-1111-4111-8111-%012d" % (1000 + i)
        text = json.dumps({"id": jid, "team_id": 1, "status": "Failed",
                           "created_at": "2024-05-01T10:00:00Z", "error": err})
        out = []
        for k, ch in enumerate(text):
            nxt = text[k + 1] if k + 1 < len(text) else ""
            r = rng.random()
            if ch == "\\":
                out.append(rng.choice(["\\\\", "\\134", "\\x5c", "\\x5C"]))
            elif r < 0.15:
                out.append("\\%03o" % ord(ch))
            elif r < 0.25 and nxt not in "01234567":
                out.append("\\%o" % ord(ch))
            elif r < 0.35:
                out.append("\\x%02x" % ord(ch))
            elif r < 0.4 and nxt.lower() not in "0123456789abcdef":
                out.append("\\x%x" % ord(ch))
            elif r < 0.45 and ch not in "bfnrtvx01234567\"/u":
                # any other escaped byte stands for itself (JSON's \" \/ \u are refused)
                out.append("\\" + ch)
            else:
                out.append(ch)
        lines.append("".join(out))
        want[jid] = err
    f = write("copy-random.txt", "\n".join(lines) + "\n")
    dmj("import", "--db", path("pg4"), "--pg-copy", f)
    got = {r["id"]: r["error"] for r in rows_of(export(path("pg4")))}
    check(got == want, "--pg-copy: 400 random lines in every escape spelling")


def main():
    tests = [test_input_forms, test_round_trip, test_atomic_failure, test_reader_during_import,
             test_batch,
             test_skip_invalid, test_reimport_changes, test_verify_corruption, test_keys,
             test_gen_jobs_fixtures, test_pg_copy]
    return T.main(tests)


if __name__ == "__main__":
    sys.exit(main())
