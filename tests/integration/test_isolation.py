#!/usr/bin/env python3
"""test_isolation.py - dmjd serves each key exactly what the permission rules allow, and no
answer ever carries a job of another team.

For every fixture key, every team (and a missing one, and @current), both prefixes and every
endpoint (list walked to the end, retrieve of an own / a foreign / a hidden job, recent,
running), the status and error detail must be what docs/api.md's checks gives (modelled in
diff_cases.World from the fixtures alone), a 200 must hold exactly the team's expected jobs,
and no body may contain the id of a job of another team or a hidden (duckgres) job. Data
from gen_jobs.py when DMJ_SHARED_DIR is there, else from `dmj generate`; no peer needed.
"""

import os
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diff_cases as dc  # noqa: E402

PREFIXES = ("environments", "projects")


class Checker(object):
    def __init__(self, client, world):
        self.client = client
        self.world = world
        self.failures = []
        self.requests = 0
        self.hidden = {j["id"] for j in world.jobs if dc.is_hidden(j)}
        self.all_ids = set(world.job_team)
        self.etags = {}
        self.etag_checks = 0

    def fail(self, what):
        self.failures.append(what)
        if len(self.failures) <= 40:
            print("FAIL " + what, flush=True)

    def etag_of(self, target):
        """The ETag dmjd gives the "star" key (alice, every team) for target, if any."""
        if target not in self.etags:
            star = {"Authorization": "Bearer " + self.world.keys["star"]["key"]}
            self.requests += 1
            r = self.client.request("GET", target, star)
            self.etags[target] = r.headers.get("etag") if r.status == 200 else None
        return self.etags[target]

    def get(self, target, headers, team_id, method="GET"):
        """GET (or another method); checks the body for ids of other teams' jobs (any job id
        when team_id is None) and of hidden jobs; returns the response."""
        self.requests += 1
        r = self.client.request(method, target, headers)
        text = r.body.decode("utf-8", "replace")
        found = set(dc.UUID_RE.findall(text.lower())) & self.all_ids
        if team_id is None:
            bad = found
        else:
            bad = found & (self.world.foreign_ids(team_id) | self.hidden)
        if bad:
            self.fail("%s (%s): body holds %d job ids it must not, e.g. %s"
                      % (target, hdr_name(headers), len(bad), sorted(bad)[0]))
        return r

    def expect_error(self, target, headers, r, status, detail):
        body = r.json()
        got = body.get("detail") if isinstance(body, dict) else None
        if r.status != status or got != detail:
            self.fail("%s (%s): expected %d %r, got %d %r"
                      % (target, hdr_name(headers), status, detail, r.status, r.body[:160]))
            return False
        if status == 401 and r.headers.get("www-authenticate") != "Bearer":
            self.fail("%s: 401 without WWW-Authenticate: Bearer" % target)
        return True

    def expect_ok(self, target, headers, r):
        if r.status != 200 or r.json() is None:
            self.fail("%s (%s): expected 200, got %d %r"
                      % (target, hdr_name(headers), r.status, r.body[:160]))
            return False
        return True


def hdr_name(headers):
    return "key in %s" % ("header" if "Authorization" in headers else "query")


def expected_running(world, team_id):
    rows = [j for j in world.expected_list(team_id) if j["status"] == "Running"
            and (j.get("workflow_id") or "").startswith("materialize")]
    return [j["id"] for j in rows]


def expected_recent(world, team_id):
    best = {}
    for j in world.visible_by_team.get(team_id, []):
        sq = j.get("saved_query_id")
        materializes = (j.get("workflow_id") or "").startswith("materialize")
        if not sq or j["status"] == "Running" or not materializes:
            continue
        rank = (dc.utc_us(j["created_at"]), j["id"])
        if sq not in best or rank > best[sq][0]:
            best[sq] = (rank, j["id"])
    return [best[sq][1] for sq in sorted(best)]


def walk_list(chk, base, headers, team_id, auth_query):
    """Follows `next` links with limit 1000; returns the ids seen (None on an error)."""
    target = base + "/?limit=1000" + auth_query
    ids = []
    for _ in range(50):
        r = chk.get(target, headers, team_id)
        if not chk.expect_ok(target, headers, r):
            return None
        doc = r.json()
        ids += [row["id"] for row in doc["results"]]
        if doc["next"] is None:
            return ids
        target = dc.link_path(doc["next"])
    chk.fail("%s: more than 50 pages" % base)
    return None


def check_key_team(chk, world, label, segment, prefix, via_query):
    key = world.keys[label]["key"]
    if via_query:
        headers, auth_query = {}, "&personal_api_key=" + urllib.parse.quote(key, safe="")
    else:
        headers, auth_query = {"Authorization": "Bearer " + key}, ""
    status, detail = world.expect(label, segment)
    if status == 401 and via_query:
        detail = detail.replace("Authorization header", "query string")
    team_id = world.team_of_segment(label, segment) if status == 200 else None
    base = "/api/%s/%s/data_modeling_jobs" % (prefix, segment)
    own = world.expected_list(team_id) if team_id is not None else []
    other_team = 1 if team_id != 1 else 2
    foreign = world.expected_list(other_team)[0]["id"]
    hidden = sorted(chk.hidden)
    q1 = "?x=1" + auth_query  # keeps every target with a query, so the key can be appended

    targets = {
        "recent": base + "/recent/" + q1,
        "running": base + "/running" + q1,
        "foreign": "%s/%s/%s" % (base, foreign, q1),
    }
    if own:
        targets["own"] = "%s/%s/%s" % (base, own[0]["id"], q1)
    for h in hidden:
        targets["hidden " + h] = "%s/%s%s" % (base, h, q1)

    # Other methods on the list route: POST is refused right after authentication (405, even
    # for a team that does not exist); HEAD and OPTIONS go through every check.
    lst = base + "/?limit=5" + auth_query
    r = chk.get(lst, headers, team_id, "POST")
    if status == 401:
        chk.expect_error(lst + " POST", headers, r, status, detail)
    else:
        chk.expect_error(lst + " POST", headers, r, 405, 'Method "POST" not allowed.')
    r = chk.get(lst, headers, team_id, "HEAD")
    if r.status != status or r.body:
        chk.fail("HEAD %s (%s): expected %d and no body, got %d with %d bytes"
                 % (lst, label, status, r.status, len(r.body)))
    r = chk.get(lst, headers, team_id, "OPTIONS")
    if status == 200:
        if chk.expect_ok(lst + " OPTIONS", headers, r) and \
                r.json().get("name") != "Data Modeling Job List":
            chk.fail("OPTIONS %s: not the list metadata: %r" % (lst, r.body[:120]))
    else:
        chk.expect_error(lst + " OPTIONS", headers, r, status, detail)

    if status != 200:
        r = chk.get(lst, headers, None)
        chk.expect_error(base, headers, r, status, detail)
        for name, target in targets.items():
            r = chk.get(target, headers, None)
            chk.expect_error(target, headers, r, status, detail)
        # A key that may not read the team gets its error even when it presents the ETag
        # of an allowed key's answer: no 304 before the permission checks.
        if not via_query:
            for target in (lst, targets["recent"]):
                etag = chk.etag_of(target)
                if etag:
                    chk.etag_checks += 1
                    r = chk.get(target, dict(headers, **{"If-None-Match": etag}), None)
                    chk.expect_error(target + " If-None-Match", headers, r, status, detail)
        return

    ids = walk_list(chk, base, headers, team_id, auth_query)
    if ids is not None and ids != [j["id"] for j in own]:
        chk.fail("%s (%s): list walk gave %d jobs, expected the team's %d in order"
                 % (base, label, len(ids), len(own)))
    for name, target in targets.items():
        r = chk.get(target, headers, team_id)
        if name == "own":
            if chk.expect_ok(target, headers, r) and r.json().get("id") != own[0]["id"]:
                chk.fail("%s: retrieve answered another job" % target)
        elif name in ("recent", "running"):
            if chk.expect_ok(target, headers, r):
                want = expected_recent(world, team_id) if name == "recent" else \
                    expected_running(world, team_id)
                got = [row.get("id") for row in r.json()]
                if got != want:
                    chk.fail("%s (%s): %s gave %d jobs, expected %d"
                             % (target, label, name, len(got), len(want)))
        else:
            chk.expect_error(target, headers, r, 404, "Not found.")


def check_cross_team_tricks(chk, world):
    """Links and filters of one team replayed against another never leak the first."""
    star = {"Authorization": "Bearer " + world.keys["star"]["key"]}
    r = chk.get("/api/environments/1/data_modeling_jobs/?limit=7", star, 1)
    if not chk.expect_ok("team 1 first page", star, r):
        return
    nxt = dc.link_path(r.json()["next"])
    for team in (2, 3, 4):
        target = nxt.replace("/environments/1/", "/environments/%d/" % team)
        r = chk.get(target, star, team)
        if chk.expect_ok(target, star, r):
            if any(world.job_team.get(row["id"]) != team for row in r.json()["results"]):
                chk.fail("%s: a team-1 cursor showed jobs of another team" % target)
    sq1 = next(j["saved_query_id"] for j in world.expected_list(1) if j.get("saved_query_id"))
    for team in (2, 3):
        target = "/api/projects/%d/data_modeling_jobs/?saved_query_id=%s" % (team, sq1)
        r = chk.get(target, star, team)
        if chk.expect_ok(target, star, r) and r.json()["results"]:
            chk.fail("%s: team 1's saved query matched jobs in team %d" % (target, team))


def main():
    bin_dir, _source, shared = dc.env_dirs()
    dc.require_binaries(bin_dir)
    if shared is None or not os.path.exists(os.path.join(shared, "tools", "gen_jobs.py")):
        print("DMJ_SHARED_DIR has no tools/gen_jobs.py: using `dmj generate` for the data")
        shared = None
    started = time.time()
    work = dc.make_workdir("dmj_isolation_")
    proc = None
    try:
        jobs_path, fx_path = dc.generate(work, shared, bin_dir, jobs=2000, teams=4, seed=23,
                                         long_run=40)
        world = dc.World(dc.load_fixtures(fx_path), dc.load_jobs(jobs_path))
        store = os.path.join(work, "store")
        dc.dmj_import(bin_dir, store, [fx_path, jobs_path], work)
        proc, port = dc.start_dmjd(bin_dir, store, work)
        chk = Checker(dc.Client(port), world)

        max_team = max(world.teams)
        segments = [str(t) for t in sorted(world.teams)] + [str(max_team + 1), "@current"]
        labels = sorted(world.keys)
        for label in labels:
            for segment in segments:
                for prefix in PREFIXES:
                    check_key_team(chk, world, label, segment, prefix, via_query=False)
                check_key_team(chk, world, label, segment, "environments", via_query=True)
        check_cross_team_tricks(chk, world)
        if proc.poll() is not None:
            chk.fail("dmjd exited with status %s" % proc.returncode)
        exit_problem = dc.stop_dmjd(proc, work)
        if exit_problem:
            chk.fail(exit_problem)
    finally:
        dc.stop(proc)
        dc.remove_workdir(work)

    print("%d keys x %d team segments x 2 prefixes (+ query-key auth): %d requests (%d with an "
          "allowed key's ETag), %d failures, %.1fs"
          % (len(labels), len(segments), chk.requests, chk.etag_checks, len(chk.failures),
             time.time() - started))
    return 1 if chk.failures else 0


if __name__ == "__main__":
    sys.exit(main())
