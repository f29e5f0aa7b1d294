#!/usr/bin/python3
"""CONTINUATION flood (CVE-2024-27316 class): HEADERS without END_HEADERS followed by
CONTINUATION frames that never end, 64 MB offered on each of ten connections. dmjd must bound
the header block: every such connection is closed, memory stays bounded, and a legitimate
client is served meanwhile."""

import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from attack_lib import (ATTACKERS, Dmjd, H2Attacker, Legit, Watch, literal,  # noqa: E402
                        run_attack_cases, serves_normally)
from hostile_h2 import CONTINUATION_FRAMES, continuation_flood  # noqa: E402


def run(store, what, fields):
    with Dmjd(store.dir) as srv:
        legit = Legit(srv.port, store)
        watch = Watch(srv)
        data = continuation_flood(store.read_key, fields, CONTINUATION_FRAMES)
        attackers = [H2Attacker(srv.port) for _ in range(ATTACKERS)]
        sent = []
        threads = [threading.Thread(target=lambda a=a: sent.append(a.send(data, watch.over)))
                   for a in attackers]
        for t in threads:
            t.start()
        legit.round_done()
        for t in threads:
            t.join()
        codes = []
        try:
            for a in attackers:
                codes.extend(a.wait_closed(what))
        finally:
            for a in attackers:
                a.close()
        legit.stop()
        watch.stop()
        print("  %s: %d connections closed after %.1f MB sent on average (of %.1f), GOAWAY "
              "codes %s; %s; %s" % (what, len(attackers), sum(sent) / len(sent) / 1e6,
                                    len(data) / 1e6, sorted(set(codes)), watch.figures(),
                                    legit.figures()))
        watch.check(what)
        legit.check(what)
        serves_normally(srv, store)


def case_large_headers(store, tmp):
    run(store, "CONTINUATION flood, 16 KB headers", literal(b"x-pad", b"b" * 16000))


def case_small_headers(store, tmp):
    # Many small fields instead: a bound on the block's bytes must not depend on field sizes.
    run(store, "CONTINUATION flood, 1-byte headers", literal(b"x", b"b") * 2000)


CASES = [case_large_headers, case_small_headers]


def main():
    return run_attack_cases(CASES, "continuation")


if __name__ == "__main__":
    sys.exit(main())
