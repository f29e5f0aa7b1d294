#!/usr/bin/python3
"""events/ (Server-Sent Events of a team's job changes) against a real dmjd: created,
status_changed and deleted events from `dmj import` and `dmj prune`, another team's changes
never shown, Last-Event-ID (and ?last_event_id=) resumption giving exactly the missed events,
a reset after the log was pruned (or for an id the store never gave out), the list's
authentication rules, a key that loses its scope (its stream ends, its held long-poll gets
the 403), the per-key bound (a 9th stream is a 429, a client that leaves frees its slot),
h2c, and SIGTERM ending streams."""

import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dmjtest import (EVENTS, LONG, RUNNING, Server, Stream, binary, get,  # noqa: E402
                     import_lines, job_line, metrics, run, run_cases)

def data_of(ev):
    return json.loads(ev["data"])


def check_event(ev, kind, job_id, status, previous):
    d = data_of(ev)
    assert ev["event"] == kind and d["type"] == kind, ev
    assert ev["id"] == str(d["seq"]), ev
    assert d["job_id"] == job_id and d["status"] == status, d
    assert d["previous_status"] == previous, d
    assert list(d) == ["seq", "type", "job_id", "status", "previous_status", "at", "job"], d
    # The job as it is when the event is sent: gone once deleted, even in older events.
    if kind == "deleted":
        assert d["job"] is None, d
    else:
        assert d["job"] is None or d["job"]["id"] == job_id, d
    return d


def key_for_team(srv, store, team, not_keys=()):
    c = srv.conn()
    for label, key in sorted(store.keys.items()):
        if key in not_keys:
            continue
        res, _ = get(c, "/api/environments/%d/data_modeling_jobs/?limit=1" % team, key)
        if res.status == 200:
            return key
    raise AssertionError("no key reads team %d" % team)


def gauge(srv, name):
    return metrics(srv.conn()).get((name, ""))


def case_changes_and_resume(store, tmp):
    with Server(store.dir, "--threads", "2") as srv:
        key2 = key_for_team(srv, store, 2)
        s1 = Stream(srv.port, EVENTS % 1, store.read_key)
        s2 = Stream(srv.port, EVENTS % 2, key2)
        assert s1.status == 200 and s2.status == 200
        assert s1.res.getheader("Content-Type") == "text/event-stream"
        assert s1.res.getheader("Cache-Control") == "no-cache"
        deadline = time.time() + LONG
        while gauge(srv, "dmj_http_event_streams") != 2 and time.time() < deadline:
            time.sleep(0.05)
        # Only what happens from now on: nothing of the history that was imported before.
        job, other = str(uuid.uuid4()), str(uuid.uuid4())
        old = "2000-01-01T00:00:00Z"
        import_lines(store, tmp, job_line(1, "Running", created=old, job_id=job),
                     job_line(2, "Running", job_id=other))
        import_lines(store, tmp, job_line(1, "Completed", created=old, job_id=job))
        # The same status again changes nothing.
        import_lines(store, tmp, job_line(1, "Completed", created=old, job_id=job))
        run(binary("dmj"), "prune", "--db", store.dir, "--before", "2001-01-01", "--team", "1")
        evs = s1.wait_for(3)
        created = check_event(evs[0], "created", job, "Running", None)
        changed = check_event(evs[1], "status_changed", job, "Completed", "Running")
        check_event(evs[2], "deleted", job, "Completed", None)
        seqs = [int(e["id"]) for e in evs]
        assert seqs == sorted(seqs) and len(set(seqs)) == 3, seqs
        assert created["at"].endswith("Z") and "T" in created["at"], created
        time.sleep(0.5)
        assert len(s1.events) == 3, s1.events  # nothing of team 2, nothing more
        evs2 = s2.wait_for(1)
        check_event(evs2[0], "created", other, "Running", None)
        assert all(data_of(e)["job_id"] != job for e in s2.events)

        # Resumption after the first event: exactly the two that followed, by header, by
        # query (with the key in the query, as an EventSource must), on both prefixes.
        for path, hdrs, key in (
                (EVENTS % 1, {"Last-Event-ID": str(seqs[0])}, store.read_key),
                ("/api/projects/1/data_modeling_jobs/events?last_event_id=%d&personal_api_key=%s"
                 % (seqs[0], store.read_key), {}, None)):
            r = Stream(srv.port, path, key, hdrs)
            assert r.status == 200, (r.status, getattr(r, "body", ""))
            got = r.wait_for(2)
            time.sleep(0.3)
            assert [e["id"] for e in r.events] == [str(s) for s in seqs[1:]], r.events
            # The same event, with the job as it is now: deleted.
            assert data_of(got[0]) == dict(changed, job=None), (data_of(got[0]), changed)
            r.close()
        # From before everything: the whole history of team 1 in seq order, ending with ours.
        r = Stream(srv.port, EVENTS % 1, store.read_key, {"Last-Event-ID": "0"})
        got = r.wait_until(lambda evs: evs and evs[-1]["id"] == str(seqs[-1]))
        ids = [int(e["id"]) for e in got]
        assert ids == sorted(set(ids)) and ids[-3:] == seqs, ids[-5:]
        created_ids = {data_of(e)["job_id"] for e in got if e["event"] == "created"}
        assert created_ids == store.served_ids(1) | {job}, len(created_ids)
        r.close()

        # The log pruned: a client resuming from before what it keeps is told first.
        run(binary("dmj"), "prune", "--db", store.dir, "--changes-before", "2100-01-01")
        r = Stream(srv.port, EVENTS % 1, store.read_key, {"Last-Event-ID": str(seqs[0])})
        got = r.wait_for(1)
        assert got[0]["event"] == "reset", got[0]
        oldest = data_of(got[0])["oldest"]
        assert isinstance(oldest, int) and oldest > seqs[-1], got[0]
        # and then the changes that come.
        again = str(uuid.uuid4())
        import_lines(store, tmp, job_line(1, "Failed", job_id=again))
        got = r.wait_for(2)
        check_event(got[1], "created", again, "Failed", None)
        r.close()
        # A client that is up to date is not reset.
        r = Stream(srv.port, EVENTS % 1, store.read_key, {"Last-Event-ID": got[1]["id"]})
        time.sleep(0.5)
        assert r.events == [], r.events
        r.close()
        # An id this store never gave out (another replica's): reset, then from now on.
        r = Stream(srv.port, EVENTS % 1, store.read_key, {"Last-Event-ID": "999999999"})
        got = r.wait_for(1)
        assert got[0]["event"] == "reset" and data_of(got[0]) == {"oldest": oldest}, got[0]
        later = str(uuid.uuid4())
        import_lines(store, tmp, job_line(1, "Skipped", job_id=later))
        got = r.wait_for(2)
        check_event(got[1], "created", later, "Skipped", None)
        r.close()
        for s in (s1, s2):
            s.close()


def case_auth_like_list(store, tmp):
    with Server(store.dir, "--threads", "1") as srv:
        c = srv.conn()
        keys = [None, "phx_not_a_key", "pha_oauth"] + sorted(store.keys.values())
        for team in (1, 2, 999):
            for key in keys:
                lst, lbody = get(c, "/api/environments/%d/data_modeling_jobs/?limit=1" % team,
                                 key)
                if lst.status == 200:
                    res, body = get(c, EVENTS % team, key, method="HEAD")
                    assert res.status == 200 and body == b"", (team, key, res.status)
                    assert res.getheader("Content-Type") == "text/event-stream"
                    continue
                res, body = get(c, EVENTS % team, key)
                assert (res.status, body) == (lst.status, lbody), (team, key, res.status, body)
                assert res.getheader("WWW-Authenticate") == lst.getheader("WWW-Authenticate")
        res, body = get(c, EVENTS % 1, store.read_key, method="OPTIONS")
        assert res.status == 200 and json.loads(body)["name"] == "Events", body
        res, body = get(c, EVENTS % 1, store.read_key, method="POST")
        assert res.status == 405 and json.loads(body)["code"] == "method_not_allowed", body
        res, body = get(c, EVENTS % 1, method="POST")
        assert res.status == 401, res.status
        for bad in ("x", "-1", "1.0", "99999999999999999999"):
            res, body = get(c, EVENTS % 1, store.read_key, headers={"Last-Event-ID": bad})
            assert res.status == 400, (bad, res.status)
            assert json.loads(body) == {
                "type": "validation_error", "code": "invalid",
                "detail": "A valid integer is required.", "attr": "last_event_id"}, body
        res, body = get(c, EVENTS % 1 + "?last_event_id=x", store.read_key)
        assert res.status == 400 and json.loads(body)["attr"] == "last_event_id"
        assert gauge(srv, "dmj_http_event_streams") == 0


def case_per_key_bound(store, tmp):
    with Server(store.dir, "--threads", "2", "--events-keepalive", "1") as srv:
        other = key_for_team(srv, store, 1, not_keys=(store.read_key,))
        streams = [Stream(srv.port, EVENTS % 1, store.read_key) for _ in range(8)]
        assert [s.status for s in streams] == [200] * 8
        extra = Stream(srv.port, EVENTS % 1, store.read_key)
        assert extra.status == 429, extra.status
        assert json.loads(extra.body) == {
            "type": "throttled_error", "code": "throttled",
            "detail": "Request was throttled. Expected available in 1 second.", "attr": None}
        assert extra.res.getheader("Retry-After") == "1"
        # Another key has its own eight.
        o = Stream(srv.port, EVENTS % 1, other)
        assert o.status == 200
        # Idle streams get keep-alive comments.
        deadline = time.time() + LONG
        while ": keep-alive" not in streams[0].comments and time.time() < deadline:
            time.sleep(0.1)
        assert ": keep-alive" in streams[0].comments, streams[0].comments
        # A client that goes away frees its slot.
        streams[0].close()
        deadline = time.time() + LONG
        again = None
        while time.time() < deadline:
            again = Stream(srv.port, EVENTS % 1, store.read_key)
            if again.status == 200:
                break
            time.sleep(0.2)
        assert again.status == 200, again.status
        assert gauge(srv, "dmj_http_event_streams") == 9
        for s in streams[1:] + [again, o]:
            s.close()
        deadline = time.time() + LONG
        while gauge(srv, "dmj_http_event_streams") != 0 and time.time() < deadline:
            time.sleep(0.1)
        assert gauge(srv, "dmj_http_event_streams") == 0


def case_h2c_and_sigterm(store, tmp):
    srv = Server(store.dir, "--threads", "2")
    try:
        url = "http://127.0.0.1:%d%s" % (srv.port, EVENTS % 1)
        out = os.path.join(tmp, "h2.out")
        with open(out, "w") as f:
            curl = subprocess.Popen(["curl", "-sN", "--http2-prior-knowledge", "-D", "-",
                                     "-H", "Authorization: Bearer " + store.read_key, url],
                                    stdout=f, stderr=subprocess.STDOUT)
        h1 = Stream(srv.port, EVENTS % 1, store.read_key)
        deadline = time.time() + LONG
        while gauge(srv, "dmj_http_event_streams") != 2 and time.time() < deadline:
            time.sleep(0.05)
        job = str(uuid.uuid4())
        import_lines(store, tmp, job_line(1, "Running", job_id=job))
        h1.wait_for(1)
        deadline = time.time() + LONG
        while job not in open(out).read() and time.time() < deadline:
            time.sleep(0.05)
        text = open(out).read()
        assert text.startswith("HTTP/2 200"), text[:200]
        assert "event: created" in text and job in text, text[-500:]
        # SIGTERM ends both streams (the responses complete) and dmjd exits promptly.
        started = time.time()
        code, err = srv.stop(timeout=LONG)
        # The streams end at once, not at the drain deadline, which dmjd reports on stderr
        # ("closing connections still open after ... ms").
        assert "still open" not in err, "shutdown waited %.1fs on event streams: %s" % (
            time.time() - started, err)
        assert code == 0 and not err.strip(), (code, err)
        assert h1.wait_end(10)
        assert curl.wait(10) == 0, curl.returncode
    finally:
        srv.kill()


def case_access_revoked(store, tmp):
    """A key that loses its scope: its open stream ends and its held long-poll is answered
    403 at the next commit (checked again on every re-evaluation)."""
    db = os.path.join(tmp, "db")
    shutil.copytree(store.dir, db)
    with open(store.fixtures_path) as f:
        fixtures = json.load(f)
    for k in fixtures["personal_api_keys"]:
        if k.get("label") == "read":
            k["scopes"] = []
    revoked = os.path.join(tmp, "revoked.json")
    with open(revoked, "w") as f:
        json.dump(fixtures, f)
    with Server(db, "--threads", "2") as srv:
        s = Stream(srv.port, EVENTS % 1, store.read_key)
        assert s.status == 200
        c = srv.conn()
        res, _ = get(c, RUNNING, store.read_key)
        etag = res.getheader("ETag")
        result = []

        def poll():
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=LONG + 20)
            r, b = get(conn, RUNNING + "?wait=%d" % LONG, store.read_key,
                       headers={"If-None-Match": etag})
            result.append((r.status, json.loads(b)))

        t = threading.Thread(target=poll)
        t.start()
        deadline = time.time() + LONG
        while (gauge(srv, "dmj_http_parked_requests"),
               gauge(srv, "dmj_http_event_streams")) != (1, 1) and time.time() < deadline:
            time.sleep(0.05)
        started = time.time()
        run(binary("dmj"), "import", "--db", db, revoked)
        t.join(LONG)
        assert s.wait_end(LONG), "the stream of a key without scope goes on"
        assert time.time() - started < LONG - 10
        assert result and result[0][0] == 403, result
        assert result[0][1]["detail"] == "API key missing required scope 'warehouse_view:read'"
        assert s.events == [], s.events
        deadline = time.time() + LONG
        while gauge(srv, "dmj_http_event_streams") != 0 and time.time() < deadline:
            time.sleep(0.05)
        assert gauge(srv, "dmj_http_event_streams") == 0


CASES = [case_changes_and_resume, case_access_revoked, case_auth_like_list, case_per_key_bound, case_h2c_and_sigterm]


def main():
    binary("dmj")
    return run_cases(CASES, "dmj-test-events-", jobs=300, teams=2)


if __name__ == "__main__":
    sys.exit(main())
