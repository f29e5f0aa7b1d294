#!/usr/bin/env python3
"""test_differential_offset.py - `dmjd --posthog-api offset` answers every request exactly as
the reference peer does with DRF_REF_API=offset (PostHog's current API generation,
docs/api.md).

Data from gen_jobs.py --current (run_mode, updated_at, Skipped jobs whose workflow_id starts
with execute-dag) with duplicate timestamps, plus diff_cases.extra_jobs (hidden jobs, a run of
1005 equal created_at in team 3). Both servers get the same requests; status, bodies (byte for
byte, only each server's own address replaced) and the Content-Type, Allow and
WWW-Authenticate headers must agree (test_differential.py's Runner). Cases: every spelling of
limit and offset in the integer grammar, offsets at and past the end, past 64 bits and
past Python's 4300 digits, saved_query_id, repeated and encoded parameters, both prefixes,
retrieve, recent, running, OPTIONS, the error paths; walks follow `next` to the end and
`previous` back, over runs of equal created_at. dmj's own filters (status, created_*), which
the peer does not have, are checked against the jobs themselves. Needs
$DMJ_SHARED_DIR/peers/drf_ref (exit 77 = skipped without it).
"""

import json
import os
import random
import subprocess
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diff_cases as dc  # noqa: E402
from diff_runner import (LABELS, Case, Runner, check_dmjd_end, endpoint_requests,  # noqa: E402
                         peer_dirs, q, report, run_phase)

MIN_COMPARED = 1500  # requests sent to both servers; a case list that shrank fails
PEER_ENV = {"DRF_REF_API": "offset"}


def generate(work, shared):
    """gen_jobs.py --current with duplicate timestamps, then diff_cases' extra jobs and a
    marker (the oldest job of team 1, a random id: this run's servers)."""
    jobs_path = os.path.join(work, "jobs.ndjson")
    fx_path = os.path.join(work, "fixtures.json")
    subprocess.run([sys.executable, os.path.join(shared, "tools", "gen_jobs.py"), "--current",
                    "--jobs", "3000", "--teams", "4", "--seed", "15", "--dup-timestamps",
                    "--out", jobs_path, "--fixtures-out", fx_path],
                   check=True, stdout=subprocess.DEVNULL)
    fixtures = dc.load_fixtures(fx_path)
    with open(jobs_path, "a", encoding="utf-8") as f:
        for job in dc.extra_jobs(fixtures):
            f.write(json.dumps(job, ensure_ascii=True) + "\n")
        marker = dc._job(random.Random(os.urandom(16)), 1, "2023-06-01T00:00:00Z", "Completed")
        f.write(json.dumps(marker) + "\n")
    return jobs_path, fx_path


def build_cases(world):
    cases = []
    auth = {"Authorization": "Bearer " + world.keys["read"]["key"]}

    def add(name, target, headers=auth, method="GET"):
        cases.append(Case(name, target, headers, method))

    def base(team="1", prefix="environments"):
        return "/api/%s/%s/data_modeling_jobs" % (prefix, team)

    t1 = world.expected_list(1)
    n1 = len(t1)
    job1 = t1[0]["id"]
    sq = next(j["saved_query_id"] for j in t1 if j["saved_query_id"])
    n_sq = len(world.expected_list(1, sq))

    # Every endpoint under both prefixes, team id and @current, with and without the slash.
    for ep, prefix, team, path, method in endpoint_requests(("1", "@current", "2", "3", "4"), job1):
        add("%s %s %s" % (ep, prefix, team), path, method=method)
    for label in LABELS:
        for team in ("1", "2", "@current"):
            add("auth %s team %s" % (label, team), base(team) + "/?limit=2&offset=1",
                {"Authorization": "Bearer " + world.keys[label]["key"]})
    add("auth none", base() + "/?offset=3", {})
    add("auth query key", base() + "/?offset=3&personal_api_key=" + world.keys["read"]["key"], {})
    add("method post", base() + "/?offset=3", method="POST")
    add("team not found", base("99") + "/?offset=3")
    add("team not int", base("x") + "/?offset=3")
    add("unmatched", "/api/environments/1/data_modeling_job/?offset=3")

    # Every limit spelling of the integer grammar (and what is not one).
    limits = ["", "0", "1", "2", "9", "10", "11", "99", "100", "101", "1000", "-1", "-0", "+5",
              " 5", "5 ", "\t7\n", "\v3\f", "1_0", "1__0", "_10", "10_", "0x10", "1e2", "5.0",
              "abc", "\u0665", "\uff15", "05", "000000000000000000000000000000000000000007",
              "99999999999999999999999999", "-99999999999999999999999999", "1" * 3000,
              "0" * 3500 + "3", " ", "+", "-", "+-5", "++5", "1 2", "%00"]
    for lim in limits:
        add("limit %r" % lim[:40], base() + "/?limit=" + q(lim))
        add("limit %r offset 15" % lim[:40], base() + "/?offset=15&limit=" + q(lim))
    # Every offset spelling, and offsets around the end and past 64 bits.
    offsets = ["", "0", "1", "5", "9", "10", "11", "-1", "-10", "-0", "+5", " 5", "5 ",
               "\r20\n", "1_5", "1__5", "_5", "5_", "0x5", "5.0", "abc", "\u0665", "007",
               str(n1 - 11), str(n1 - 10), str(n1 - 9), str(n1 - 1), str(n1), str(n1 + 1),
               str(n1 + 9), str(n1 + 10), str(n1 + 100), "9223372036854775806",
               "9223372036854775807", "9223372036854775808", "18446744073709551615",
               "18446744073709551616", "18446744073709551626", "99999999999999999999",
               "100000000000000000000", "100000000000000000005", "1_000_000_000_000_000_000_000",
               " 0000100000000000000000000 ", "-99999999999999999999", "9" * 3000,
               "1" + "0" * 2999, "1" + "0" * 2999 + "5", "0" * 3500 + "12", "+", "-", " ", "1 2"]
    for off in offsets:
        for lim in ("", "7", "100", "200"):
            add("offset %r limit %r" % (off[:40], lim),
                base() + "/?offset=" + q(off) + ("&limit=" + lim if lim else ""))
    for off in (0, 3, 7, 10, 13, 20, 97, 100, 101):
        for lim in (1, 3, 7, 10, 13, 100):
            add("grid offset %d limit %d" % (off, lim),
                base() + "/?limit=%d&offset=%d" % (lim, off))
    # Team 3's run of 1005 equal created_at, across it and at its edges.
    n3 = len(world.expected_list(3))
    for off in (0, 990, 995, 1000, 1004, 1005, 1010, n3 - 5, n3, n3 + 5):
        add("team 3 offset %d" % off, base("3", "projects") + "/?limit=10&offset=%d" % off)
    add("team 4 empty", base("4") + "/?offset=5")
    add("team 4 empty first", base("4") + "/")

    # Filters: saved_query_id (with count and links), its errors, and what is ignored.
    for off in (0, 1, n_sq - 1, n_sq, n_sq + 1):
        add("sq offset %d" % off, base() + "/?saved_query_id=%s&limit=2&offset=%d" % (sq, off))
    add("sq upper", base() + "/?saved_query_id=" + sq.upper() + "&offset=1&limit=1")
    add("sq braces", base() + "/?saved_query_id=" + q("{" + sq + "}") + "&offset=1")
    add("sq no match", base() + "/?saved_query_id=00000000-0000-4000-8000-000000000000&offset=1")
    add("sq empty", base() + "/?saved_query_id=&offset=4&limit=2")
    add("sq bad", base() + "/?saved_query_id=nope&offset=4")
    add("sq nul", base() + "/?saved_query_id=%00&offset=4")
    add("sq bad on retrieve", base() + "/" + job1 + "/?saved_query_id=nope")
    add("cursor ignored", base() + "/?cursor=bad&offset=2&limit=2")
    add("cursor ignored alone", base() + "/?cursor=cD0yMDI0&limit=2")
    # Repeated, encoded and unrelated parameters kept in links.
    add("repeated limit", base() + "/?limit=2&limit=3&offset=4")
    add("repeated offset", base() + "/?offset=4&offset=6&limit=2")
    add("repeated offset bad last", base() + "/?offset=4&offset=x&limit=2")
    add("encoded names", base() + "/?%6Cimit=2&%6Fffset=4")
    add("plus offset", base() + "/?offset=%2B4&limit=2")
    add("space offset", base() + "/?offset=+4+&limit=2")
    add("other params", base() + "/?z=1&a=%C3%A9&b=&c&a=2&offset=4&limit=2")
    add("odd params", base() + "/?%FF=%FE&x=%20y&offset=20&limit=5&q=a+b&%26=%3D")
    add("latin1 raw", base() + "/?n=%E9&offset=20&limit=5")
    add("empty key", base() + "/?=x&offset=20&limit=5")
    add("ampersands", base() + "/?&&offset=20&&limit=5&&")
    add("semicolon", base() + "/?offset=20;limit=5")
    add("hash", base() + "/?offset=20&limit=5#frag")
    add("https forwarded", base() + "/?offset=20&limit=5",
        dict(auth, **{"X-Forwarded-Proto": "https"}))
    add("host header", base() + "/?offset=20&limit=5", dict(auth, Host="example.com:8080"))
    add("path encoded", "/api/environments/%31/data_modeling_jobs/?offset=20&limit=5")
    add("path at current encoded", "/api/projects/%40current/data_modeling_jobs/?offset=2")
    # Retrieve, recent and running (twelve fields; recent with execute-dag rows).
    for j in world.expected_list(2)[:20] + t1[:20]:
        add("retrieve %s" % j["id"], base(str(j["team_id"])) + "/" + j["id"] + "/")
    skipped = [j for j in world.jobs if (j.get("workflow_id") or "").startswith("execute-dag")]
    for j in skipped[:20]:
        add("retrieve dag %s" % j["id"], base(str(j["team_id"]), "projects") + "/" + j["id"])
    for team in ("1", "2", "3", "4"):
        add("recent %s ignores params" % team, base(team) + "/recent/?offset=2&limit=1")
        add("running %s ignores params" % team, base(team) + "/running/?offset=2&limit=1")
    return cases


def build_walks(world):
    auth = {"Authorization": "Bearer " + world.keys["read"]["key"]}
    sq = next(j["saved_query_id"] for j in world.expected_list(1) if j["saved_query_id"])
    walks = []
    for team, prefix, lim in ((1, "environments", ""), (1, "projects", "limit=37"),
                              (2, "projects", "limit=100"), (3, "environments", "limit=100"),
                              (3, "projects", "limit=7&offset=993"), (4, "environments", "")):
        expected = None
        if "offset" not in lim:
            expected = [j["id"] for j in world.expected_list(team)]
        walks.append(("walk team %d %s %s" % (team, prefix, lim),
                      "/api/%s/%d/data_modeling_jobs/%s" % (prefix, team, "?" + lim if lim else ""),
                      auth, 400, expected))
    walks.append(("walk sq", "/api/environments/1/data_modeling_jobs/?limit=3&saved_query_id=" + sq,
                  auth, 400, [j["id"] for j in world.expected_list(1, sq)]))
    return walks


def check_filters(world, port, auth):
    """dmj's own filters in the offset generation (the peer has none): the rows, count and
    links against the jobs themselves. Returns the problems found and the requests made."""
    problems = []
    client = dc.Client(port)
    t1 = world.expected_list(1)
    sent = 0
    for query, keep in (
            ("status=Completed", lambda j: j["status"] == "Completed"),
            ("status=Running,Failed", lambda j: j["status"] in ("Running", "Failed")),
            ("status=Skipped", lambda j: j["status"] == "Skipped"),
            ("created_after=2024-01-10", lambda j: dc.utc_us(j["created_at"]) > 1704844800000000),
            ("created_before=2024-01-10&status=Completed",
             lambda j: dc.utc_us(j["created_at"]) < 1704844800000000 and j["status"] == "Completed")):
        want = [j["id"] for j in t1 if keep(j)]
        target = "/api/environments/1/data_modeling_jobs/?limit=13&" + query
        seen = []
        for _ in range(1000):
            r = client.request("GET", target, auth)
            sent += 1
            body = r.json()
            if r.status != 200 or body["count"] != len(want):
                problems.append("%s: status %d, count %r, expected %d"
                                % (target, r.status, body and body.get("count"), len(want)))
                break
            seen += [j["id"] for j in body["results"]]
            if body["next"] is None:
                break
            target = dc.link_path(body["next"])
        if seen != want:
            problems.append("filter %s: walked %d rows, expected %d in list order"
                            % (query, len(seen), len(want)))
    r = client.request("GET", "/api/environments/1/data_modeling_jobs/?status=Nope&offset=2", auth)
    sent += 1
    if r.status != 400:
        problems.append("status=Nope: %d, expected 400" % r.status)
    client.close()
    return problems, sent


def check_validators(world, port, auth):
    """ETags and the long-poll in the offset generation: an answer's ETag sent back gives 304,
    on a page at an offset and on running/?wait=1 (held, then 304: nothing changes)."""
    problems = []
    client = dc.Client(port)
    for target in ("/api/environments/1/data_modeling_jobs/?offset=20&limit=5",
                   "/api/projects/1/data_modeling_jobs/running/?wait=1",
                   "/api/projects/1/data_modeling_jobs/recent/"):
        r = client.request("GET", target, auth)
        etag = r.headers.get("etag")
        if r.status != 200 or not etag:
            problems.append("%s: status %d, ETag %r" % (target, r.status, etag))
            continue
        again = client.request("GET", target, dict(auth, **{"If-None-Match": etag}))
        if again.status != 304:
            problems.append("%s with its ETag: %d, expected 304" % (target, again.status))
    client.close()
    return problems, 6


def check_long_integers(world, port, auth):
    """limit and offset of more digits than the peer's gunicorn takes in a request line
    (4094 bytes), against the rules themselves (docs/api.md): up to 4300 digits an integer, past
    that (Python's int() limit) not one. Returns the problems found and the requests made."""
    problems = []
    client = dc.Client(port)
    t1 = world.expected_list(1)
    base = "/api/environments/1/data_modeling_jobs/"
    big = "9" * 4300
    checks = [
        ("limit=" + "1" * 4300, 0, t1[:100], "?limit=100&offset=100", None),
        ("limit=" + "1" * 4301, 0, t1[:10], "?limit=10&offset=10", None),
        ("offset=" + big, 0, [], None, "?limit=10&offset=" + "9" * 4298 + "89"),
        ("offset=" + big + "&limit=100", 0, [], None, "?limit=100&offset=" + "9" * 4297 + "899"),
        ("offset=" + "0" * 4400 + "12&limit=3", 0, t1[:3], "?limit=3&offset=3", None),
        ("offset=1" + "0" * 4300, 0, t1[:10], "?limit=10&offset=10", None),
    ]
    for query, _unused, rows, nxt, prev in checks:
        r = client.request("GET", base + "?" + query, auth)
        body = r.json() or {}
        want = {"count": len(t1), "results": [j["id"] for j in rows],
                "next": nxt and "http://127.0.0.1:%d%s%s" % (port, base, nxt),
                "previous": prev and "http://127.0.0.1:%d%s%s" % (port, base, prev)}
        got = {"count": body.get("count"), "results": [j["id"] for j in body.get("results", [])],
               "next": body.get("next"), "previous": body.get("previous")}
        if r.status != 200 or got != want:
            problems.append("%s...: status %d, %r" % (query[:30], r.status,
                                                      {k: str(v)[:80] for k, v in got.items()}))
    client.close()
    return problems, len(checks)


def main():
    bin_dir, shared = peer_dirs()
    dc.require_binaries(bin_dir)
    started = time.time()
    work = dc.make_workdir("dmj_differential_offset_")
    procs = []
    problems = []
    extra_sent = 0
    try:
        jobs_path, fx_path = generate(work, shared)
        world = dc.World(dc.load_fixtures(fx_path), dc.load_jobs(jobs_path))
        db = os.path.join(work, "ref.sqlite3")
        dc.load_peer(shared, db, jobs_path, fx_path, work)
        store = os.path.join(work, "store")
        dc.dmj_import(bin_dir, store, [fx_path, jobs_path], work)
        auth = {"Authorization": "Bearer " + world.keys["read"]["key"]}
        probe = ("/api/environments/1/data_modeling_jobs/%s/" % world.marker, auth, world.marker)
        peer_proc, peer_port = dc.start_peer(shared, db, work, probe, PEER_ENV)
        procs.append(peer_proc)
        dmj_proc, dmj_port = dc.start_dmjd(bin_dir, store, work, ["--posthog-api", "offset"],
                                           "dmjd-offset")
        procs.append(dmj_proc)
        print("peer on %d, dmjd --posthog-api offset on %d (%.1fs)"
              % (peer_port, dmj_port, time.time() - started), flush=True)
        cases = build_cases(world)
        walks = build_walks(world)
        runner = Runner(peer_port, dmj_port)
        run_phase(runner, cases, walks)
        # The schema describes this generation.
        c = dc.Client(dmj_port)
        r = c.request("GET", "/api/schema/", {})
        doc = r.json() or {}
        props = doc.get("components", {}).get("schemas", {}).get("DataModelingJob", {}) \
            .get("properties", {})
        page = doc.get("components", {}).get("schemas", {}) \
            .get("PaginatedDataModelingJobList", {}).get("required")
        if r.status != 200 or "run_mode" not in props or "updated_at" not in props \
                or page != ["count", "next", "previous", "results"]:
            problems.append("/api/schema/ does not describe the offset generation")
        c.close()
        extra_sent += 1
        for check in (check_filters, check_long_integers, check_validators):
            found, sent = check(world, dmj_port, auth)
            problems += found
            extra_sent += sent
        check_dmjd_end(runner, dmj_proc, work, "dmjd-offset", False)
        dc.stop(peer_proc)
    finally:
        for proc in procs:
            dc.stop(proc)
        dc.remove_workdir(work)

    report(runner.mismatches)
    for p in problems:
        print("FAIL: " + p)
    print("peer statuses: %s" % ", ".join("%d x%d" % kv for kv in sorted(runner.statuses.items())))
    print("%d requests compared (%d cases, %d walks), %d mismatches; %d filter, long-integer and "
          "schema requests, %d problems; %.1fs"
          % (runner.compared, len(cases), len(walks), len(runner.mismatches), extra_sent,
             len(problems), time.time() - started))
    if runner.compared < max(MIN_COMPARED, len(cases) + len(walks)):
        print("FAIL: only %d requests compared (expected at least %d, and %d cases + %d walks)"
              % (runner.compared, MIN_COMPARED, len(cases), len(walks)))
        return 1
    return 1 if runner.mismatches or problems else 0


if __name__ == "__main__":
    sys.exit(main())
