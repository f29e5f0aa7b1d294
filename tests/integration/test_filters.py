#!/usr/bin/python3
"""The list filters PostHog clients do not send: status (one or more), created_after,
created_before, alone and combined with each other and with saved_query_id.

Three oracles, all through the real dmjd:
- a Python model read from the generated input itself (the NDJSON the store was imported
  from, read by Python's json, uuid and datetime), never from the store: a job arriving again
  replaces the earlier one, a team's endpoints show its jobs whose engine is not duckgres,
  filtered and ordered (-created_at, -id) as the API orders; walking every `next` link from
  the first page must give exactly that list, with each row's status, saved_query_id and
  created_at as the input has them, and walking `previous` links back from the last page
  must give it in order, never twice (DRF's previous links may skip rows of a page without a
  unique position; with a page larger than the longest run of equal created_at, none);
- DRF's cursor rules on the filtered rows: a second store holding only the input records of
  the rows the filter keeps, served without the filter, must give the same pages and the same cursors (links,
  offsets, positions) for every page of both walks and for hand-made cursors, positions
  outside the created_* range included;
- the exact 400 bodies for invalid values, the order in which they are checked, and another
  team's jobs never appearing.
"""

import base64
import datetime
import json
import os
import sys
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dmjtest import Server, binary, get, import_into, run, run_cases  # noqa: E402

TEAM = 1
OTHER = 2
STATUSES = ["Running", "Completed", "Failed", "Cancelled", "Skipped"]
FILTER_KEYS = ("status", "created_after", "created_before", "saved_query_id")
CHOICE = "Select a valid choice. That choice is not one of the available choices."


def us_of(text):
    """Microseconds since the epoch of a timestamp in the import's form (ISO 8601 or with a
    space, a fraction of up to 6 digits, Z or an offset, naive meaning UTC)."""
    dt = datetime.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    delta = dt - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    return (delta.days * 86400 + delta.seconds) * 1000000 + delta.microseconds


def uuid_text(value):
    """A UUID as the API prints it (lowercase, hyphens), or None."""
    return None if value is None else str(uuid.UUID(value))


def text_of(us, form):
    """A timestamp the API takes, in one of several spellings of the same instant."""
    dt = datetime.datetime(1970, 1, 1) + datetime.timedelta(microseconds=us)
    if form == "naive":
        return dt.strftime("%Y-%m-%d %H:%M:%S.%f")
    if form == "z":
        return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if form == "offset":  # +02:00: the same instant two hours later on the clock
        return (dt + datetime.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S.%f+02:00")
    raise ValueError(form)


def model_jobs(store):
    """The jobs the API shows, from the input records (read once per store): the last record
    of each id counts (an import replaces a job that arrives again), a job's team is its
    team_id (else team), duckgres jobs are hidden. Each is {id, team_id, status,
    saved_query_id, _us, _record}: _record the input object as it was."""
    if getattr(store, "model", None) is None:
        by_id = {}
        for rec in store.jobs:
            job = {
                "id": uuid_text(rec["id"]),
                "team_id": rec["team_id"] if "team_id" in rec else rec["team"],
                "status": rec["status"],
                "saved_query_id": uuid_text(rec.get("saved_query_id")),
                "_us": us_of(rec["created_at"]),
                "_hidden": (rec.get("engine") or "clickhouse") == "duckgres",
                "_record": rec,
            }
            by_id.pop(job["id"], None)  # the replacement keeps the input's later place
            by_id[job["id"]] = job
        jobs = [j for j in by_id.values() if not j["_hidden"]]
        statuses = {j["status"] for j in jobs if j["team_id"] == TEAM}
        assert len(statuses) >= 4 and statuses <= set(STATUSES), statuses
        store.model = jobs
    return store.model


def check_rows(page, by_id, what):
    """Each served row has the status, saved_query_id and created_at of its input record."""
    for row in page["results"]:
        want = by_id.get(row["id"])
        assert want is not None, (what, "a row the model does not show", row["id"])
        got = (row["status"], row["saved_query_id"], us_of(row["created_at"]))
        assert got == (want["status"], want["saved_query_id"], want["_us"]), (what, row, want)


class Model:
    """The filter as a predicate over the model's jobs."""

    def __init__(self, query):
        self.query = query  # list of (key, value) as sent
        self.statuses = set()
        self.after = self.before = self.sq = None
        for k, v in query:
            if k == "status":
                self.statuses |= {s for s in v.split(",") if s}
        self.sq = dict(query).get("saved_query_id") or None  # the last value

    def keep(self, job):
        if self.statuses and job["status"] not in self.statuses:
            return False
        if self.after is not None and not job["_us"] > self.after:
            return False
        if self.before is not None and not job["_us"] < self.before:
            return False
        if self.sq is not None and job.get("saved_query_id") != self.sq:
            return False
        return True


def model_for(query, after_us, before_us):
    m = Model(query)
    m.after, m.before = after_us, before_us
    return m


def ordered(jobs):
    return sorted(jobs, key=lambda j: (j["_us"], j["id"]), reverse=True)


def longest_run(jobs):
    best = run_len = 0
    prev = None
    for j in jobs:
        run_len = run_len + 1 if j["_us"] == prev else 1
        prev = j["_us"]
        best = max(best, run_len)
    return best


def fetch(conn, path, key):
    res, body = get(conn, path, key=key)
    return res.status, json.loads(body)


def link_parts(url):
    """(path with query, parsed query) of a next/previous link."""
    parts = urllib.parse.urlsplit(url)
    return parts.path + "?" + parts.query, urllib.parse.parse_qs(parts.query,
                                                                 keep_blank_values=True)


def cursor_of(url):
    if url is None:
        return None
    return link_parts(url)[1]["cursor"][0]


def check_link_keeps(url, query):
    """The link carries every parameter of the request but cursor, values in order."""
    _, qs = link_parts(url)
    sent = {}
    for k, v in query:
        sent.setdefault(k, []).append(v)
    for k, vs in sent.items():
        if k != "cursor":
            assert qs.get(k) == vs, (url, k, qs.get(k), vs)
    assert set(qs) == set(sent) | {"cursor"}, (url, sorted(qs), sorted(sent))


def walk(conn, base, query, key, start_cursor=None, direction="next", limit_pages=5000):
    """Follows `direction` links from the page of start_cursor; yields (cursor, page)."""
    cursor = start_cursor
    for _ in range(limit_pages):
        q = list(query) + ([("cursor", cursor)] if cursor else [])
        status, page = fetch(conn, base + "?" + urllib.parse.urlencode(q), key)
        assert status == 200, (q, status, page)
        yield cursor, page
        url = page[direction]
        if url is None:
            return
        check_link_keeps(url, q)
        cursor = cursor_of(url)
    raise AssertionError("more than %d pages" % limit_pages)


def ids(page):
    return [j["id"] for j in page["results"]]


def compare_pages(a, b, what):
    """Same rows and the same cursors (the links' query strings differ by the filters)."""
    assert ids(a) == ids(b), (what, ids(a), ids(b))
    assert a["results"] == b["results"], what
    for d in ("next", "previous"):
        assert cursor_of(a[d]) == cursor_of(b[d]), (what, d, a[d], b[d])


def subset_store(tmp, name, store, jobs):
    """A store with the fixtures and only the input records of `jobs`."""
    db = os.path.join(tmp, name)
    os.makedirs(db)
    path = os.path.join(tmp, name + ".ndjson")
    with open(path, "w") as f:
        for j in jobs:
            f.write(json.dumps(j["_record"]) + "\n")
    import_into(db, store.fixtures_path, path)
    return db


def encode_cursor(offset=0, reverse=False, position=None):
    parts = []
    if offset:
        parts.append(("o", str(offset)))
    if reverse:
        parts.append(("r", "1"))
    if position is not None:
        parts.append(("p", position))
    return base64.b64encode(urllib.parse.urlencode(parts).encode()).decode()


# ---- cases ----------------------------------------------------------------------------------

def combinations(team_jobs):
    """(name, query as sent, created_after us, created_before us) for the walks."""
    times = sorted({j["_us"] for j in team_jobs})
    t1 = times[len(times) * 3 // 10]  # exact created_at values: strictness shows
    t2 = times[len(times) * 7 // 10]
    # a saved query with jobs of several statuses
    by_sq = {}
    for j in team_jobs:
        if j.get("saved_query_id"):
            by_sq.setdefault(j["saved_query_id"], set()).add(j["status"])
    sq = max(sorted(by_sq), key=lambda s: len(by_sq[s]))
    # the least frequent status (gen_jobs.py makes no Skipped jobs, `dmj generate` a few)
    counts = {s: sum(1 for j in team_jobs if j["status"] == s) for s in STATUSES}
    rare = min((s for s in STATUSES if counts[s]), key=lambda s: counts[s])
    day = datetime.datetime(1970, 1, 1) + datetime.timedelta(microseconds=t1)
    day_us = us_of(day.strftime("%Y-%m-%dT00:00:00Z"))
    return [
        ("none", [], None, None),
        ("running", [("status", "Running")], None, None),
        ("rare", [("status", rare)], None, None),
        ("two", [("status", "Completed,Failed")], None, None),
        ("repeated", [("status", "Failed"), ("status", "Cancelled,Failed")], None, None),
        ("four", [("status", "Running,Completed,Cancelled,Skipped")], None, None),
        ("all", [("status", ",".join(STATUSES))], None, None),
        ("empty", [("status", ""), ("created_after", ""), ("created_before", "")], None, None),
        ("after", [("created_after", text_of(t1, "z"))], t1, None),
        ("before", [("created_before", text_of(t2, "naive"))], None, t2),
        ("range", [("created_after", text_of(t1, "offset")),
                   ("created_before", text_of(t2, "z"))], t1, t2),
        ("date", [("created_before", day.strftime("%Y-%m-%d"))], None, day_us),
        ("status+range", [("status", "Failed,Cancelled,Running"),
                          ("created_after", text_of(t1, "naive")),
                          ("created_before", text_of(t2, "offset"))], t1, t2),
        ("sq+status", [("saved_query_id", sq), ("status", "Completed,Skipped,Running")],
         None, None),
        ("sq+range", [("saved_query_id", sq), ("created_after", text_of(t1, "z")),
                      ("created_before", text_of(t2, "z"))], t1, t2),
        ("reversed range", [("created_after", text_of(t2, "z")),
                            ("created_before", text_of(t1, "z"))], t2, t1),
        ("last wins", [("created_after", "2000-01-01"), ("created_after", text_of(t1, "z"))],
         t1, None),
    ]


def case_walks(store, tmp):
    jobs = model_jobs(store)
    team_jobs = [j for j in jobs if j["team_id"] == TEAM]
    other_ids = {j["id"] for j in jobs if j["team_id"] != TEAM}
    by_id = {j["id"]: j for j in team_jobs}
    base = "/api/environments/%d/data_modeling_jobs/" % TEAM
    key = store.read_key
    pages = 0
    with Server(store.dir, "--threads", "2") as srv:
        conn = srv.conn()
        for n, (name, query, after, before) in enumerate(combinations(team_jobs)):
            model = model_for(query, after, before)
            expect = ordered([j for j in team_jobs if model.keep(j)])
            expect_ids = [j["id"] for j in expect]
            if name not in ("none", "all", "empty", "reversed range"):
                assert 0 < len(expect) < len(team_jobs), (name, len(expect))
            if name == "reversed range":
                assert not expect
            db = subset_store(tmp, "only-%d" % n, store, expect)
            longest = longest_run(expect)
            limits = [limit for limit in (2, 9, 60) if len(expect) <= 60 * limit]
            limits.append(max(longest + 1, 3))
            with Server(db, "--threads", "1") as oracle:
                oconn = oracle.conn()
                for limit in limits:
                    q = query + [("limit", str(limit))]
                    oq = [("limit", str(limit))]
                    fwd = list(walk(conn, base, q, key))
                    ofwd = list(walk(oconn, base, oq, key))
                    pages += len(fwd)
                    seen = [i for _, p in fwd for i in ids(p)]
                    assert seen == expect_ids, (name, limit, len(seen), len(expect_ids))
                    for c, p in fwd:
                        check_rows(p, by_id, (name, limit, c))
                    assert not set(seen) & other_ids, name
                    assert len(fwd) == len(ofwd), (name, limit, len(fwd), len(ofwd))
                    for (c, a), (_, b) in zip(fwd, ofwd):
                        compare_pages(a, b, (name, limit, "next", c))
                    # back from the last page
                    back = list(walk(conn, base, q, key, start_cursor=fwd[-1][0],
                                     direction="previous"))
                    oback = list(walk(oconn, base, oq, key, start_cursor=ofwd[-1][0],
                                      direction="previous"))
                    pages += len(back)
                    assert len(back) == len(oback), (name, limit, len(back), len(oback))
                    for (c, a), (_, b) in zip(back, oback):
                        compare_pages(a, b, (name, limit, "previous", c))
                    got = [i for _, p in reversed(back) for i in ids(p)]
                    assert len(got) == len(set(got)), (name, limit, "a row twice walking back")
                    at = 0
                    for i in got:  # in list order
                        while at < len(expect_ids) and expect_ids[at] != i:
                            at += 1
                        assert at < len(expect_ids), (name, limit, "back walk out of order", i)
                        at += 1
                    if limit > longest:
                        assert got == expect_ids, (name, limit, len(got), len(expect_ids))
                # hand-made cursors: positions outside, at and inside the created_* range
                probes = [encode_cursor(offset=3), encode_cursor(reverse=True)]
                for us in filter(None, (after, before)):
                    for delta in (-86400 * 10**6, -1, 0, 1, 86400 * 10**6):
                        pos = text_of(us + delta, "naive")
                        probes += [encode_cursor(position=pos),
                                   encode_cursor(reverse=True, position=pos),
                                   encode_cursor(offset=2, position=pos),
                                   encode_cursor(offset=1, reverse=True, position=pos)]
                if expect:
                    mid = expect[len(expect) // 2]["_us"]
                    pos = text_of(mid, "z")
                    probes += [encode_cursor(position=pos), encode_cursor(reverse=True,
                                                                          position=pos)]
                for cur in probes:
                    for limit in (1, 4):
                        q = query + [("limit", str(limit)), ("cursor", cur)]
                        oq = [("limit", str(limit)), ("cursor", cur)]
                        sa, a = fetch(conn, base + "?" + urllib.parse.urlencode(q), key)
                        sb, b = fetch(oconn, base + "?" + urllib.parse.urlencode(oq), key)
                        assert sa == sb == 200, (name, cur, sa, sb)
                        compare_pages(a, b, (name, limit, "probe", cur))
                        for d in ("next", "previous"):
                            if a[d]:
                                check_link_keeps(a[d], q)
            print("ok   %-15s %5d rows, limits %s" % (name, len(expect), limits))
    print("     %d pages walked" % pages)


def case_other_team(store, tmp):
    """The same filters on team 2 give team 2's jobs only (and the model's)."""
    jobs = model_jobs(store)
    team_jobs = [j for j in jobs if j["team_id"] == OTHER]
    by_id = {j["id"]: j for j in team_jobs}
    base = "/api/projects/%d/data_modeling_jobs/" % OTHER
    key = store.read_key
    with Server(store.dir, "--threads", "1") as srv:
        conn = srv.conn()
        status, page = fetch(conn, base + "?limit=1", key)
        if status != 200:
            raise AssertionError("the read key cannot list team %d: %d" % (OTHER, status))
        for name, query, after, before in combinations(team_jobs):
            model = model_for(query, after, before)
            expect = [j["id"] for j in ordered([j for j in team_jobs if model.keep(j)])]
            pages = list(walk(conn, base, query + [("limit", "500")], key))
            for _, p in pages:
                check_rows(p, by_id, (name, OTHER))
            seen = [i for _, p in pages for i in ids(p)]
            assert seen == expect, (name, len(seen), len(expect))
        # team 1's saved query on team 2: nothing
        sq1 = next(j["saved_query_id"] for j in jobs
                   if j["team_id"] == TEAM and j.get("saved_query_id"))
        status, page = fetch(conn, base + "?status=Completed&saved_query_id=" + sq1, key)
        assert status == 200 and page["results"] == [] and page["next"] is None, page


def error(code, attr, detail):
    return {"type": "validation_error", "code": code, "detail": detail, "attr": attr}


INVALID = [
    ("status=running", error("invalid_choice", "status", CHOICE)),
    ("status=Running,Bogus", error("invalid_choice", "status", CHOICE)),
    ("status=Running&status=COMPLETED", error("invalid_choice", "status", CHOICE)),
    ("status=Running,%20Failed", error("invalid_choice", "status", CHOICE)),
    ("status=%00", error("invalid_choice", "status", CHOICE)),
    ("status=Running%00", error("invalid_choice", "status", CHOICE)),
    ("created_after=yesterday", error("invalid", "created_after", "Enter a valid date/time.")),
    ("created_after=2024-13-01", error("invalid", "created_after", "Enter a valid date/time.")),
    ("created_before=2024-01-01T10:00:00%00",
     error("invalid", "created_before", "Enter a valid date/time.")),
    # an unescaped '+' of an offset is a space in a query string
    ("created_before=2024-01-01T10:00:00+02:00",
     error("invalid", "created_before", "Enter a valid date/time.")),
    ("created_before=2024-01-01T10:00:00Z&created_before=x",
     error("invalid", "created_before", "Enter a valid date/time.")),
    # the first invalid filter answers, in the order saved_query_id, status, created_after,
    # created_before; all of them before the cursor
    ("status=x&saved_query_id=nope", error("invalid_choice", "saved_query_id", CHOICE)),
    ("created_after=x&status=x", error("invalid_choice", "status", CHOICE)),
    ("created_before=x&created_after=x",
     error("invalid", "created_after", "Enter a valid date/time.")),
    ("cursor=zzzz&created_before=x",
     error("invalid", "created_before", "Enter a valid date/time.")),
]

VALID = [
    "status=Running,,Failed,",
    "status=,",
    "created_after=2024-01-10",
    "created_after=2024-01-10%2010:00",
    "created_after=2024-01-10T10:00:00.1234567891Z",
    "created_before=2024-01-10T10:00:00%2B02",
    "created_before=2024-01-10T10:00:00-0130",
    "created_before=2024-01-10T10:00:00Z%0A",
]


def case_invalid(store, tmp):
    jobs = model_jobs(store)
    base = "/api/environments/%d/data_modeling_jobs/" % TEAM
    key = store.read_key
    with Server(store.dir, "--threads", "1") as srv:
        conn = srv.conn()
        for query, body in INVALID:
            for prefix in ("environments", "projects"):
                path = "/api/%s/%d/data_modeling_jobs/?%s" % (prefix, TEAM, query)
                res, raw = get(conn, path, key=key)
                assert res.status == 400, (query, res.status, raw[:300])
                assert res.getheader("Content-Type") == "application/json"
                assert json.loads(raw) == body, (query, raw)
                assert list(json.loads(raw)) == ["type", "code", "detail", "attr"], raw
        for query in VALID:
            status, page = fetch(conn, base + "?" + query, key)
            assert status == 200, (query, status, page)
        # authentication before the filters; the filters only on the list
        res, raw = get(conn, base + "?status=bogus")
        assert res.status == 401, (res.status, raw)
        res, raw = get(conn, base + "running/?status=bogus&created_after=x", key=key)
        assert res.status == 200, (res.status, raw)
        res, raw = get(conn, base + "recent/?status=bogus", key=key)
        assert res.status == 200, (res.status, raw)
        some = next(j for j in jobs if j["team_id"] == TEAM and j["status"] == "Completed")
        res, raw = get(conn, base + some["id"] + "/?status=Failed&created_before=x", key=key)
        assert res.status == 200 and json.loads(raw)["id"] == some["id"], (res.status, raw)
        # the same request twice (the response cache keys on the raw query): same answers
        for query in ("status=Failed", "status=Cancelled", "status=Failed"):
            s1, p1 = fetch(conn, base + "?limit=500&" + query, key)
            assert s1 == 200
            want = query.split("=")[1]
            assert p1["results"] and all(j["status"] == want for j in p1["results"]), query


def main():
    return run_cases([case_invalid, case_other_team, case_walks], "dmj-test-filters-",
                     jobs=2400, teams=3)


if __name__ == "__main__":
    sys.exit(main())
