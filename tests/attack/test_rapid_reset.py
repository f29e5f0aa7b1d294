#!/usr/bin/python3
"""HTTP/2 rapid reset (CVE-2023-44487 class) with every kind of answer: GET, HEAD, 304
(`If-None-Match: *`), parked `running/?wait=30` long-polls and `events/` streams. Each
connection must get GOAWAY (ENHANCE_YOUR_CALM) and be closed after a bounded amount of work,
while a legitimate client is served."""

import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from attack_lib import (ATTACKERS, ENHANCE_YOUR_CALM, EVENTS, LIST, RUNNING, Dmjd,  # noqa: E402
                        H2Attacker, Legit, Watch, current_etag, request_block, run_attack_cases,
                        serves_normally)
from hostile_h2 import reset_pairs  # noqa: E402

PAIRS = 3000  # HEADERS + RST_STREAM pairs per connection, far past the budget (~128 in 10 s)
# Streams dmjd may work on for one connection before it is cut: the budget, plus what it had
# already read when the budget ran out (its read buffer holds a few hundred pairs).
WORK_BOUND = 1000


def requests_answered(srv):
    """Requests dmjd answered after working on them, and those it answered without work
    (endpoint "cut": streams of a connection past its budget)."""
    worked = cut = 0
    for (name, labels), v in srv.metrics().items():
        if name == "dmj_http_requests_total":
            if 'endpoint="cut"' in labels:
                cut += v
            else:
                worked += v
    return worked, cut


def rapid_reset(store, what, make_blocks):
    with Dmjd(store.dir) as srv:
        legit = Legit(srv.port, store)
        data = reset_pairs(make_blocks(srv))
        before, cut_before = requests_answered(srv)
        legit_before = len(legit.latencies)
        watch = Watch(srv)
        attackers = [H2Attacker(srv.port) for _ in range(ATTACKERS)]
        threads = [threading.Thread(target=a.send, args=(data, watch.over)) for a in attackers]
        for t in threads:
            t.start()
        legit.round_done()
        for t in threads:
            t.join()
        codes, calmed = [], 0
        try:
            for a in attackers:
                got = a.wait_closed(what)
                codes.extend(got)
                calmed += ENHANCE_YOUR_CALM in got
        finally:
            for a in attackers:
                a.close()
        # The legitimate client's own requests are counted too: take them out.
        legit.stop()
        worked, cut = requests_answered(srv)
        work = worked - before - (len(legit.latencies) - legit_before)
        watch.stop()
        print("  %s: %d connections closed, GOAWAY codes %s, %d streams worked on and %d "
              "answered without work of %d; %s; %s" % (
                  what, len(attackers), sorted(set(codes)), work, cut - cut_before,
                  ATTACKERS * PAIRS, watch.figures(), legit.figures()))
        assert calmed == len(attackers), "%s: %d of %d connections got GOAWAY " \
            "(ENHANCE_YOUR_CALM): %s" % (what, calmed, len(attackers), codes)
        assert work <= ATTACKERS * WORK_BOUND, "%s: dmjd worked on %d streams" % (what, work)
        watch.check(what)
        legit.check(what)
        serves_normally(srv, store)


def case_get(store, tmp):
    # A query of its own per stream: no answer comes from the response cache.
    rapid_reset(store, "GET", lambda srv: [request_block(LIST + "?limit=100&n=%d" % i,
                                                         store.read_key) for i in range(PAIRS)])


def case_head(store, tmp):
    rapid_reset(store, "HEAD", lambda srv: [request_block(LIST + "?limit=100&n=%d" % i,
                                                          store.read_key, method="HEAD")
                                            for i in range(PAIRS)])


def case_not_modified(store, tmp):
    rapid_reset(store, "304", lambda srv: [request_block(
        LIST + "?limit=100&n=%d" % i, store.read_key, [(b"if-none-match", b"*")])
        for i in range(PAIRS)])


def case_parked(store, tmp):
    def blocks(srv):
        etag = current_etag(srv.port, store.read_key).encode()
        return [request_block(RUNNING + "?wait=30&n=%d" % i, store.read_key,
                              [(b"if-none-match", etag)]) for i in range(PAIRS)]
    rapid_reset(store, "parked long-polls", blocks)


def case_events(store, tmp):
    rapid_reset(store, "events/", lambda srv: [request_block(EVENTS + "?n=%d" % i,
                                                             store.read_key)
                                               for i in range(PAIRS)])


CASES = [case_get, case_head, case_not_modified, case_parked, case_events]


def main():
    return run_attack_cases(CASES, "reset")


if __name__ == "__main__":
    sys.exit(main())
