#!/usr/bin/python3
"""events/ ids are numbered per team: the ids a team's key sees depend only on that team's
changes.

Two copies of one store (`cp -a`: the same store id), one of which also takes a burst of
team 2's writes (imports, status changes, a prune of its jobs, keys made and revoked); then
the same team 1 write goes to both. On each copy, a team 1 key reads: a live stream open
across the write, the whole history resumed from 0, the history resumed after each of its
last ids (by Last-Event-ID and by ?last_event_id=), the reset for an id past the newest, and
a resumption after a dmjd restart. Every event id and every event body must be
byte-identical on both copies, except `at`, the writer's clock when the change was committed
(the two imports of the team 1 write cannot happen in the same microsecond). Team 1's ids are
1, 2, 3... with no gaps."""

import os
import re
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dmjtest import (EVENTS, Server, Stream, import_lines, job_line, run_cases,  # noqa: E402
                     team_writes)

TEAM_A, TEAM_B = 1, 2
AT = re.compile(r',"at":"[0-9T:.Z-]+",')


class Copy:
    """A store directory with the fixtures' keys, as team_writes and import_lines take it."""

    def __init__(self, path, keys):
        self.dir = path
        self.keys = keys


def masked(data):
    """An event's data with `at` blanked (checked to be there and well formed)."""
    out, n = AT.subn(',"at":"",', data, count=1)
    assert n == 1 or data.startswith('{"oldest":'), data
    return out


def stream_events(srv, key, headers=None, query="", until=None, count=None):
    """The events of one events/ response as [(id, event, masked data)]."""
    s = Stream(srv.port, EVENTS % TEAM_A + query, key, headers)
    assert s.status == 200, s.status
    if until is not None:
        got = s.wait_until(lambda evs: evs and evs[-1].get("id") == until)
    else:
        got = s.wait_for(count)
    time.sleep(0.2)  # anything more would show here
    got = list(s.events)
    s.close()
    return [(e.get("id"), e["event"], masked(e["data"])) for e in got]


def views(srv, key, newest):
    """Everything team A's key reads about its events on one server."""
    out = {"history": stream_events(srv, key, {"Last-Event-ID": "0"}, until=newest)}
    ids = [int(e[0]) for e in out["history"]]
    for after in ids[-4:-1]:
        out["after %d" % after] = stream_events(srv, key, {"Last-Event-ID": str(after)},
                                                until=newest)
        out["query %d" % after] = stream_events(srv, key, query="?last_event_id=%d" % after,
                                                until=newest)
    out["past newest"] = stream_events(srv, key, {"Last-Event-ID": str(int(newest) + 5)},
                                       count=1)
    return out


def case_ids_do_not_show_other_teams(store, tmp):
    key = store.read_key
    running = str(uuid.uuid4())
    import_lines(store, tmp, job_line(TEAM_A, "Running", job_id=running))
    copies = []
    for name in ("a", "b"):
        path = os.path.join(tmp, name)
        subprocess.run(["cp", "-a", store.dir, path], check=True)
        copies.append(Copy(path, store.keys))
    team_writes(copies[1], tmp, TEAM_B)

    servers = [Server(c.dir, "--threads", "2") for c in copies]
    try:
        lives = [Stream(srv.port, EVENTS % TEAM_A, key) for srv in servers]
        assert all(s.status == 200 for s in lives)
        time.sleep(0.3)  # the streams are open before the write
        # the same team A write to both: a status change and a new job
        new = str(uuid.uuid4())
        lines = [job_line(TEAM_A, "Completed", job_id=running),
                 job_line(TEAM_A, "Failed", job_id=new)]
        for c in copies:
            import_lines(c, tmp, *lines)
        live = []
        for s in lives:
            got = s.wait_for(2)
            time.sleep(0.3)
            assert len(s.events) == 2, s.events
            live.append([(e["id"], e["event"], masked(e["data"])) for e in got])
            s.close()
        assert live[0] == live[1], "the live streams differ:\n%s\n%s" % (live[0], live[1])
        newest = live[0][-1][0]
        seen = [views(srv, key, newest) for srv in servers]
        for what in seen[0]:
            assert seen[0][what] == seen[1][what], "%s differs:\n%s\n%s" % (
                what, seen[0][what][-3:], seen[1][what][-3:])
        ids = [int(e[0]) for e in seen[0]["history"]]
        assert ids == list(range(1, len(ids) + 1)), ids[:5] + ["..."] + ids[-5:]
        assert seen[0]["past newest"][0][1] == "reset", seen[0]["past newest"]

        # the same after a restart of either dmjd
        after = ids[-3]
        for i, c in enumerate(copies):
            servers[i].stop()
            servers[i] = Server(c.dir, "--threads", "2")
        again = [stream_events(srv, key, {"Last-Event-ID": str(after)}, until=newest)
                 for srv in servers]
        assert again[0] == again[1] == seen[0]["after %d" % after], again
    finally:
        for srv in servers:
            srv.stop()


def main():
    return run_cases([case_ids_do_not_show_other_teams], "dmj-test-event-ids-", jobs=400,
                     teams=3)


if __name__ == "__main__":
    sys.exit(main())
