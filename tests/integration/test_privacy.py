#!/usr/bin/python3
"""A key of one team learns nothing of another team's writes.

With a team 1 key, every answer it can get is recorded: list pages (the first, the next one
through its cursor, with filters), a retrieve, recent, running, their ETags (GET and HEAD),
and the events/ history resumed from the start (ids and data), while an events/ stream stays
open. Then team 2 takes a burst of writes (imports of new jobs and status changes, a prune of
its old jobs, a key created and one revoked for other users). Every answer, ETag and event
id team 1's key sees must be byte-identical to before, the recorded ETags must still answer
304, and the open stream must have received nothing. Then one write to team 1 must change
the list's, recent's and running's answers and ETags, and reach the stream."""

import json
import os
import sys
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dmjtest import (EVENTS, LIST, Server, Stream, get, import_lines, job_line,  # noqa: E402
                     run_cases, team_writes)

TEAM_A, TEAM_B = 1, 2


def base(team):
    return "/api/environments/%d/data_modeling_jobs/" % team


def answers(srv, key, job_id):
    """{what: (status, body, ETag)} for everything team A's key can ask."""
    c = srv.conn()
    out = {}
    paths = [LIST, LIST + "?limit=3", LIST + "?limit=2&status=Completed,Failed",
             LIST + "?created_after=2020-01-01&limit=4", LIST + job_id + "/",
             LIST + "recent/", LIST + "running/", "/api/projects/1/data_modeling_jobs/?limit=2"]
    res, body = get(c, LIST + "?limit=3", key)
    assert res.status == 200, (res.status, body)
    nxt = urllib.parse.urlsplit(json.loads(body)["next"])
    paths.append(nxt.path + "?" + nxt.query)  # the second page, through its cursor
    for path in paths:
        for method in ("GET", "HEAD"):
            res, body = get(c, path, key, method=method)
            assert res.status == 200, (path, method, res.status, body)
            out[(method, path)] = (res.status, body, res.getheader("ETag"))
    c.close()
    return out


def history(srv, key, newest_id=None):
    """Team A's events from the start of the log: [(id, event, data)]."""
    s = Stream(srv.port, EVENTS % TEAM_A, key, {"Last-Event-ID": "0"})
    assert s.status == 200, s.status
    if newest_id is not None:
        got = s.wait_until(lambda evs: evs and evs[-1]["id"] == newest_id)
    else:
        got = s.wait_for(1)
        time.sleep(1.0)  # all of the history is written at once; let it all arrive
        got = list(s.events)
    s.close()
    return [(e["id"], e["event"], e["data"]) for e in got]


def case_team_b_writes_leave_team_a_unchanged(store, tmp):
    key = store.read_key
    job_a = sorted(store.served_ids(TEAM_A))[0]
    # team A has a Running job, so that running/ is not empty
    running_a = str(uuid.uuid4())
    import_lines(store, tmp, job_line(TEAM_A, "Running", job_id=running_a))
    with Server(store.dir, "--threads", "2") as srv:
        before = answers(srv, key, job_a)
        hist = history(srv, key)
        assert hist and hist[-1][2].find(running_a) > 0, hist[-1:]
        live = Stream(srv.port, EVENTS % TEAM_A, key)
        assert live.status == 200

        team_writes(store, tmp, TEAM_B)
        # every B write has been seen by dmjd: team B's view changed
        deadline = time.time() + 10
        c = srv.conn()
        while time.time() < deadline:
            res, body = get(c, base(TEAM_B) + "?limit=100&status=Failed", key)
            if res.status == 200 and body.count(b'"Failed"') >= 10:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("team B's writes were not seen")

        after = answers(srv, key, job_a)
        changed = [k for k in before if before[k] != after[k]]
        assert not changed, "team B's writes changed team A's answers: %s" % [
            (k, before[k][2], after[k][2]) for k in changed][:6]
        assert history(srv, key, hist[-1][0]) == hist, "team A's event history changed"
        # the recorded validators still validate
        for (method, path), (_, _, etag) in before.items():
            res, _ = get(c, path, key, method=method, headers={"If-None-Match": etag})
            assert res.status == 304, (method, path, res.status)
        time.sleep(0.3)
        assert live.events == [], live.events

        # a write to team A does change what it sees
        import_lines(store, tmp, job_line(TEAM_A, "Completed", job_id=running_a))
        got = live.wait_for(1)
        assert running_a in got[0]["data"] and got[0]["event"] == "status_changed", got
        deadline = time.time() + 10
        while True:
            now = answers(srv, key, job_a)
            if now[("GET", LIST + "running/")] != before[("GET", LIST + "running/")]:
                break
            assert time.time() < deadline, "team A's write not seen"
            time.sleep(0.05)
        for path in (LIST, LIST + "recent/", LIST + "running/"):
            for method in ("GET", "HEAD"):
                assert now[(method, path)][2] != before[(method, path)][2], (method, path)
            assert now[("GET", path)][1] != before[("GET", path)][1], path
        # the retrieve of an untouched job is what it was
        assert now[("GET", LIST + job_a + "/")] == before[("GET", LIST + job_a + "/")]
        live.close()
        c.close()


def main():
    return run_cases([case_team_b_writes_leave_team_a_unchanged], "dmj-test-privacy-",
                     jobs=400, teams=3)


if __name__ == "__main__":
    sys.exit(main())
