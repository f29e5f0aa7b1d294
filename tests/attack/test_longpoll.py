#!/usr/bin/python3
"""Floods of held requests: `running/?wait=30` long-polls and `events/` streams, with one key
and with several, each with a query string of its own (`&n=<i>`, past the response cache).
Held requests must stay within `--streams-per-key` per key and `--max-held` in all; every
request over a bound must be answered at once with 429, PostHog's throttled body and
Retry-After; memory stays bounded and a legitimate client is served."""

import os
import selectors
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from attack_lib import (EVENTS, HUNG, RUNNING, Dmjd, Legit, Watch, connect_many,  # noqa: E402
                        current_etag, run_attack_cases, serves_normally, throttled)

FLOOD = 200  # held-request attempts, one connection each
PER_KEY = 8
# Room for every flooding connection: the connection cap is not what these cases measure.
ROOM = ("--max-connections", "1024")


def parse_answer(data):
    """(status, headers, body) once a whole answer with a Content-Length is in `data`;
    (status, headers, None) for an answer whose body is a stream; None before its head."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.decode(errors="replace").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if "content-length" not in headers:
        return status, headers, None
    n = int(headers["content-length"])
    if len(rest) < n:
        return None
    return status, headers, rest[:n]


def flood(srv, store, what, requests, max_held, per_key=PER_KEY):
    """Sends each (path, key, headers) on a connection of its own, waits until every one is
    either answered or held (dmjd's gauges), and checks the bounds and the refusals."""
    legit = Legit(srv.port, store)
    watch = Watch(srv)
    socks, keys = [], {}
    for path, key, headers in requests:
        extra = "".join("%s: %s\r\n" % kv for kv in headers)
        req = ("GET %s HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n%s\r\n"
               % (path, key, extra)).encode()
        got = connect_many(srv.port, 1, req)
        assert got, "%s: a connection was refused" % what
        socks += got
        keys[got[0]] = key
    sel = selectors.DefaultSelector()
    data = {}
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        data[s] = b""
    answers = {}
    held = 0
    deadline = time.time() + HUNG
    while time.time() < deadline:
        for k, _ in sel.select(0.2):
            try:
                chunk = k.fileobj.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                sel.unregister(k.fileobj)
                answers.setdefault(k.fileobj, (None, {}, b"closed"))
                continue
            data[k.fileobj] += chunk
            a = parse_answer(data[k.fileobj])
            if a is not None:
                answers[k.fileobj] = a
        m = srv.metrics()
        held = m.get(("dmj_http_parked_requests", ""), 0) + \
            m.get(("dmj_http_event_streams", ""), 0)
        refused = sum(1 for a in answers.values() if a[0] != 200)
        if refused + held >= len(socks):
            break
    legit.round_done()  # served while the requests are held
    legit.stop()
    watch.stop()
    statuses = {}
    for s, a in answers.items():
        statuses[a[0]] = statuses.get(a[0], 0) + 1
    print("  %s: %d requests, %d held, answers %s; %s; %s" % (
        what, len(socks), held, statuses, watch.figures(), legit.figures()))
    try:
        assert held <= max_held, "%s: %d requests held (bound %d)" % (what, held, max_held)
        per = {}
        for s in socks:
            a = answers.get(s)
            if a is None or a[0] == 200:
                per[keys[s]] = per.get(keys[s], 0) + 1
        assert max(per.values(), default=0) <= per_key, "%s: held per key %s" % (what, per)
        for s, a in answers.items():
            if a[0] == 200:
                continue
            assert throttled(a[0], a[2], a[1].get("retry-after")), \
                "%s: over the bound, answered %s %s %r" % (what, a[0], a[1], a[2])
        assert len(answers) - statuses.get(200, 0) + held >= len(socks), \
            "%s: requests neither held nor answered" % what
        watch.check(what)
        legit.check(what)
    finally:
        for s in socks:
            s.close()
    srv.wait_gauge("dmj_http_parked_requests", lambda v: v == 0, what)
    srv.wait_gauge("dmj_http_event_streams", lambda v: v == 0, what)
    serves_normally(srv, store)


def case_polls_one_key(store, tmp):
    with Dmjd(store.dir, *ROOM) as srv:
        etag = current_etag(srv.port, store.read_key)
        flood(srv, store, "long-polls, one key",
              [(RUNNING + "?wait=30&n=%d" % i, store.read_key, [("If-None-Match", etag)])
               for i in range(FLOOD)], PER_KEY)


def case_polls_and_streams_one_key(store, tmp):
    with Dmjd(store.dir, *ROOM) as srv:
        etag = current_etag(srv.port, store.read_key)
        reqs = []
        for i in range(FLOOD):
            if i % 2:
                reqs.append((EVENTS + "?n=%d" % i, store.read_key, []))
            else:
                reqs.append((RUNNING + "?wait=30&n=%d" % i, store.read_key,
                             [("If-None-Match", etag)]))
        flood(srv, store, "long-polls and streams, one key", reqs, PER_KEY)


def case_global_bound(store, tmp):
    keys = [store.keys[k] for k in ("read", "star", "team1_only")]
    bound = 12
    with Dmjd(store.dir, *ROOM, "--max-held", str(bound)) as srv:
        etags = {k: current_etag(srv.port, k) for k in keys}
        reqs = []
        for i in range(FLOOD):
            k = keys[i % len(keys)]
            if i % 4 == 3:
                reqs.append((EVENTS + "?n=%d" % i, k, []))
            else:
                reqs.append((RUNNING + "?wait=30&n=%d" % i, k, [("If-None-Match", etags[k])]))
        flood(srv, store, "long-polls and streams, three keys, --max-held %d" % bound, reqs,
              bound)


CASES = [case_polls_one_key, case_polls_and_streams_one_key, case_global_bound]


def main():
    return run_attack_cases(CASES, "longpoll")


if __name__ == "__main__":
    sys.exit(main())
