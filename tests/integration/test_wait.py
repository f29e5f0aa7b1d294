#!/usr/bin/python3
"""`running/?wait=N` long-polls against a real dmjd: a 304 once N seconds pass with no change;
a `dmj import` that changes the team's running jobs answers a held request with the new body
well before its deadline (and one that changes only another team's does not); invalid values
are a 400 naming `wait`; a wrong key holds nothing; HTTP/1.1 and h2c; 200 held requests on
the same threads; SIGTERM answers held requests and exits cleanly; a key and the server hold
at most their bounds (one more is a 429); identical held requests are asked again once per
change."""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dmjtest import (LONG, RUNNING, Server, binary, get, import_lines, job_line,  # noqa: E402
                     metrics, run_cases, sanitized)

def current_etag(conn, key, query="?wait=5"):
    res, body = get(conn, RUNNING + query, key)
    assert res.status == 200, (res.status, body)
    etag = res.getheader("ETag")
    assert etag, res.getheaders()
    return etag, body


def threads_of(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise AssertionError("no Threads: line")


def gauge(conn, name):
    return metrics(conn).get((name, ""))


def wait_gauge(conn, name, value, timeout=LONG):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if gauge(conn, name) == value:
            return
        time.sleep(0.05)
    raise AssertionError("%s never became %r (is %r)" % (name, value, gauge(conn, name)))


def case_timeout_and_immediate(store, tmp):
    with Server(store.dir, "--threads", "2") as srv:
        c = srv.conn()
        etag, body = current_etag(c, store.read_key, "?wait=1")
        # The validator is the body's: the query (and so `wait`) does not change it.
        etag2, _ = current_etag(c, store.read_key, "")
        assert etag2 == etag, (etag, etag2)
        for wait in (1, 2):
            started = time.time()
            res, b = get(c, RUNNING + "?wait=%d" % wait, store.read_key,
                         headers={"If-None-Match": etag})
            took = time.time() - started
            assert res.status == 304 and b == b"", (res.status, b)
            assert res.getheader("ETag") == etag
            assert took >= wait - 0.05, took
            assert took < wait + 10, took
        # wait=0, no wait, or an ETag that does not match: answered at once.
        for query, inm, status in (("?wait=0", etag, 304), ("", etag, 304),
                                   ("?wait=60", '"other"', 200), ("?wait=60", None, 200)):
            started = time.time()
            res, b = get(c, RUNNING + query, store.read_key,
                         headers={"If-None-Match": inm} if inm else None)
            assert res.status == status, (query, inm, res.status)
            assert time.time() - started < 5, (query, time.time() - started)
            if status == 200:
                assert b == body


def case_import_wakes(store, tmp):
    with Server(store.dir, "--threads", "2") as srv:
        c = srv.conn()
        etag, _ = current_etag(c, store.read_key)

        # A commit that leaves team 1's running jobs as they were (a job in team 2) wakes the
        # request, which finds the same answer and goes on waiting until its deadline.
        other = threading.Timer(0.3, import_lines, (store, tmp, job_line(2, "Running")))
        other.start()
        started = time.time()
        res, b = get(c, RUNNING + "?wait=2", store.read_key, headers={"If-None-Match": etag})
        other.join()
        assert res.status == 304, (res.status, b)
        assert time.time() - started >= 1.9

        # A new running job of team 1 while the request waits: 200 with the new body, long
        # before the deadline.
        new_id = str(uuid.uuid4())
        t = threading.Timer(0.5, import_lines,
                            (store, tmp, job_line(1, "Running", job_id=new_id)))
        t.start()
        started = time.time()
        res, b = get(c, RUNNING + "?wait=%d" % LONG, store.read_key,
                     headers={"If-None-Match": etag})
        took = time.time() - started
        t.join()
        assert res.status == 200, (res.status, b)
        assert took < LONG - 10, "answered only after %.1fs" % took
        ids = [j["id"] for j in json.loads(b)]
        assert new_id in ids, ids[:5]
        new_etag = res.getheader("ETag")
        assert new_etag and new_etag != etag
        res2, b2 = get(c, RUNNING, store.read_key)
        assert res2.status == 200 and b2 == b and res2.getheader("ETag") == new_etag

        # The job completes: it leaves `running`, and that wakes the next long-poll.
        t = threading.Timer(0.5, import_lines,
                            (store, tmp, job_line(1, "Completed", job_id=new_id)))
        t.start()
        res, b = get(c, RUNNING + "?wait=%d" % LONG, store.read_key,
                     headers={"If-None-Match": new_etag})
        t.join()
        assert res.status == 200, res.status
        assert new_id not in [j["id"] for j in json.loads(b)]
        assert gauge(c, "dmj_http_parked_requests") == 0


def case_invalid_values(store, tmp):
    with Server(store.dir, "--threads", "1") as srv:
        c = srv.conn()
        etag, _ = current_etag(c, store.read_key)
        cases = {
            "abc": ("invalid", "A valid integer is required."),
            "": ("invalid", "A valid integer is required."),
            "1.5": ("invalid", "A valid integer is required."),
            "1e3": ("invalid", "A valid integer is required."),
            "%00": ("invalid", "A valid integer is required."),
            "-1": ("min_value", "Ensure this value is greater than or equal to 0."),
            "61": ("max_value", "Ensure this value is less than or equal to 60."),
            "99999999999999999999999": ("max_value",
                                        "Ensure this value is less than or equal to 60."),
        }
        for value, (code, detail) in cases.items():
            for inm in (None, etag):
                res, b = get(c, RUNNING + "?wait=" + value, store.read_key,
                             headers={"If-None-Match": inm} if inm else None)
                assert res.status == 400, (value, res.status, b)
                assert json.loads(b) == {"type": "validation_error", "code": code,
                                         "detail": detail, "attr": "wait"}, (value, b)
        # The last value counts, as for every parameter; Python's int() grammar.
        for value in ("abc&wait=1", " 1 ", "+1", "0_1"):
            res, b = get(c, RUNNING + "?wait=" + value.replace(" ", "%20"), store.read_key,
                         headers={"If-None-Match": etag})
            assert res.status == 304, (value, res.status, b)
        # Authentication comes first: no key is a 401 whatever `wait` holds.
        res, b = get(c, RUNNING + "?wait=abc")
        assert res.status == 401, res.status


def case_wrong_key_parks_nothing(store, tmp):
    with Server(store.dir, "--threads", "1") as srv:
        c = srv.conn()
        etag, _ = current_etag(c, store.read_key)
        keys = {"phx_not_a_key": 401, store.keys["wrong_scope"]: 403}
        for key, status in keys.items():
            started = time.time()
            res, b = get(c, RUNNING + "?wait=%d" % LONG, key, headers={"If-None-Match": etag})
            assert res.status == status, (res.status, b)
            assert time.time() - started < 5
        res, b = get(c, "/api/environments/999/data_modeling_jobs/running/?wait=30",
                     store.read_key, headers={"If-None-Match": "*"})
        assert res.status == 404, res.status
        assert gauge(c, "dmj_http_parked_requests") == 0


def curl(*args):
    return subprocess.run(["curl", "-s", "--max-time", str(LONG + 10)] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def case_h2c(store, tmp):
    with Server(store.dir, "--threads", "2") as srv:
        c = srv.conn()
        etag, _ = current_etag(c, store.read_key)
        url = "http://127.0.0.1:%d%s" % (srv.port, RUNNING)
        common = ["--http2-prior-knowledge", "-H", "Authorization: Bearer " + store.read_key,
                  "-H", "If-None-Match: " + etag, "-o", os.devnull,
                  "-w", "%{http_version} %{http_code} %{time_total}"]
        res = curl(*common, url + "?wait=1")
        version, code, took = res.stdout.split()
        assert (version, code) == ("2", "304"), res.stdout + res.stderr
        assert float(took) >= 0.95, took
        # Two long-polls held on one connection, both answered by one import.
        new_id = str(uuid.uuid4())
        t = threading.Timer(0.5, import_lines,
                            (store, tmp, job_line(1, "Running", job_id=new_id)))
        t.start()
        started = time.time()
        res = subprocess.run(
            ["nghttp", "-v", "-t", str(LONG + 10), "-H", "authorization: Bearer " + store.read_key,
             "-H", "if-none-match: " + etag, url + "?wait=%d" % LONG,
             url + "?wait=%d&second=1" % LONG],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        t.join()
        assert time.time() - started < LONG - 10, res.stdout[-500:]
        assert res.stdout.count(":status: 200") == 2, res.stdout[-2000:] + res.stderr
        assert res.stdout.count(new_id) == 2, res.stdout[-2000:]


def case_many_parked(store, tmp):
    n = 200
    with Server(store.dir, "--threads", "2", "--streams-per-key", "0") as srv:
        c = srv.conn()
        etag, _ = current_etag(c, store.read_key)
        c.close()
        time.sleep(0.2)
        threads_before = threads_of(srv.proc.pid)
        socks = []
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=LONG + 20)
            s.sendall(("GET %s?wait=%d&n=%d HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s"
                       "\r\nIf-None-Match: %s\r\n\r\n" % (RUNNING, LONG, i, store.read_key, etag))
                      .encode())
            socks.append(s)
        m = srv.conn()
        wait_gauge(m, "dmj_http_parked_requests", n)
        assert threads_of(srv.proc.pid) == threads_before, (threads_of(srv.proc.pid),
                                                            threads_before)
        # A client that goes away while held is let go of (HTTP/1: seen on the socket).
        for s in socks[:10]:
            s.close()
        socks = socks[10:]
        wait_gauge(m, "dmj_http_parked_requests", n - 10)
        new_id = str(uuid.uuid4())
        started = time.time()
        import_lines(store, tmp, job_line(1, "Running", job_id=new_id))
        for s in socks:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(65536)
                assert chunk, data
                data += chunk
            assert data.startswith(b"HTTP/1.1 200 "), data[:100]
            s.close()
        assert time.time() - started < LONG - 10
        wait_gauge(m, "dmj_http_parked_requests", 0)
        assert threads_of(srv.proc.pid) == threads_before


def case_sigterm(store, tmp):
    srv = Server(store.dir, "--threads", "2", "--streams-per-key", "0")
    try:
        c = srv.conn()
        etag, _ = current_etag(c, store.read_key)
        results = []

        def poll():
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=LONG + 20)
            res, b = get(conn, RUNNING + "?wait=60", store.read_key,
                         headers={"If-None-Match": etag})
            results.append(res.status)

        pollers = [threading.Thread(target=poll) for _ in range(20)]
        for t in pollers:
            t.start()
        wait_gauge(c, "dmj_http_parked_requests", 20)
        started = time.time()
        code, err = srv.stop(timeout=LONG)
        took = time.time() - started
        for t in pollers:
            t.join(LONG)
        # Held requests are answered at once, not at the drain deadline, which dmjd reports
        # on stderr ("closing connections still open after ... ms").
        assert "still open" not in err, "shutdown waited on held requests (%.1fs): %s" % (
            took, err)
        assert code == 0 and not err.strip(), (code, err)
        assert results == [304] * 20, results
    finally:
        srv.kill()


def park(port, key, etag, query=""):
    """A raw HTTP/1.1 long-poll sent on its own connection (not read yet)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=LONG + 20)
    # the Host http.client sends: the same request as current_etag's, for the answer cache
    s.sendall(("GET %s?wait=%d%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer %s"
               "\r\nIf-None-Match: %s\r\n\r\n" % (RUNNING, LONG, query, port, key, etag))
              .encode())
    return s


def head_of(s):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, data
        data += chunk
    return data


def case_held_bounds(store, tmp):
    """A key holds at most --streams-per-key long-polls, the server at most --max-held: one
    more is answered at once with a 429 and Retry-After, never held; a slot given back (the
    client left) can be taken again."""
    for args, allowed in ((["--streams-per-key", "3"], 3),
                          (["--streams-per-key", "0", "--max-held", "5"], 5)):
        with Server(store.dir, "--threads", "2", *args) as srv:
            c = srv.conn()
            etag, _ = current_etag(c, store.read_key)
            socks = [park(srv.port, store.read_key, etag, "&n=%d" % i) for i in range(allowed)]
            wait_gauge(c, "dmj_http_parked_requests", allowed)
            over = park(srv.port, store.read_key, etag, "&n=over")
            head = head_of(over)
            assert head.startswith(b"HTTP/1.1 429 "), head[:200]
            assert b"\r\nretry-after: " in head.lower(), head
            over.close()
            assert gauge(c, "dmj_http_parked_requests") == allowed
            socks.pop().close()
            wait_gauge(c, "dmj_http_parked_requests", allowed - 1)
            socks.append(park(srv.port, store.read_key, etag, "&n=again"))
            wait_gauge(c, "dmj_http_parked_requests", allowed)
            for s in socks:
                s.close()
            wait_gauge(c, "dmj_http_parked_requests", 0)


def case_identical_asked_once(store, tmp):
    """A store change asks the API once per group of identical held requests: 40 identical
    long-polls cost one evaluation per change, 40 distinct ones (`&n=<i>`) 40."""
    with Server(store.dir, "--threads", "1", "--streams-per-key", "0") as srv:
        c = srv.conn()
        etag, _ = current_etag(c, store.read_key)
        evaluated = []
        for distinct in (False, True):
            socks = [park(srv.port, store.read_key, etag, "&n=%d" % i if distinct else "")
                     for i in range(40)]
            wait_gauge(c, "dmj_http_parked_requests", 40)
            before = gauge(c, "dmj_http_parked_evaluations_total")
            # a change to another team: every held request stays held (the same 304)
            import_lines(store, tmp, job_line(2, "Running"))
            want = before + (40 if distinct else 1)
            deadline = time.time() + LONG
            while gauge(c, "dmj_http_parked_evaluations_total") < want:
                assert time.time() < deadline, "the change woke no held request"
                time.sleep(0.05)
            time.sleep(0.3)  # lets a second wake-up (the import's other commit) show too
            evaluated.append(gauge(c, "dmj_http_parked_evaluations_total") - before)
            assert gauge(c, "dmj_http_parked_requests") == 40
            for s in socks:
                s.close()
            wait_gauge(c, "dmj_http_parked_requests", 0)
        # one evaluation per wake-up: identical requests as many as there were wake-ups
        # (one or two), distinct ones 40 times that
        assert 1 <= evaluated[0] <= 2 and evaluated[1] in (40, 80), evaluated


def case_slot_of_its_own_key(store, tmp):
    """A long-poll answered from the worker's answer cache takes a slot of its own key, not of
    the key the worker authenticated last: with one slot per key, bob's held request leaves
    the read key's slot free."""
    bob = store.keys["bob_read"]
    with Server(store.dir, "--threads", "1", "--streams-per-key", "1") as srv:
        c = srv.conn()
        # bob's exact request (query and key) answered once, so the next is a cache hit
        etag_bob, _ = current_etag(c, bob, "?wait=%d" % LONG)
        etag_read, _ = current_etag(c, store.read_key)  # the worker's last key: read's
        held_bob = park(srv.port, bob, etag_bob)
        wait_gauge(c, "dmj_http_parked_requests", 1)
        held_read = park(srv.port, store.read_key, etag_read)
        wait_gauge(c, "dmj_http_parked_requests", 2)
        over = park(srv.port, bob, etag_bob, "&n=2")  # bob's second: over his bound
        head = head_of(over)
        assert head.startswith(b"HTTP/1.1 429 "), head[:200]
        for s in (held_bob, held_read, over):
            s.close()
        wait_gauge(c, "dmj_http_parked_requests", 0)


CASES = [case_timeout_and_immediate, case_import_wakes, case_invalid_values,
         case_wrong_key_parks_nothing, case_h2c, case_many_parked, case_sigterm,
         case_held_bounds, case_identical_asked_once, case_slot_of_its_own_key]


def main():
    binary("dmj")
    if sanitized():
        print("(sanitized build: same cases, generous deadlines)")
    return run_cases(CASES, "dmj-test-wait-", jobs=300, teams=2)


if __name__ == "__main__":
    sys.exit(main())
