#!/usr/bin/python3
"""The HTTP/2 floods of test_hostile_http2.py (from hostile_h2.py: reset, PING, SETTINGS and
PRIORITY floods, a 1 MB HPACK header, 100,000 small headers, HPACK table churn, streams whose
bodies never come, WINDOW_UPDATE abuse) on ten connections each that never read: whatever dmjd
owes them stalls, so every such connection must be closed (no progress for --send-timeout, or
nothing in progress for --header-timeout), memory must stay bounded, and a legitimate client is
served."""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from attack_lib import (ATTACKERS, Dmjd, Legit, Watch, run_attack_cases,  # noqa: E402
                        serves_normally, wait_all_closed)
import hostile_h2 as hostile  # noqa: E402

SEND_FOR = 10  # seconds each connection offers its flood for, at most


def run(store, flood):
    what = flood.__name__
    with Dmjd(store.dir) as srv:
        legit = Legit(srv.port, store)
        watch = Watch(srv)
        data = flood(store.read_key)
        attackers = [hostile.Attacker(srv.port) for _ in range(ATTACKERS)]
        sent = []

        def send(a):
            sent.append(a.send(data, time.time() + SEND_FOR))
        threads = [threading.Thread(target=send, args=(a,)) for a in attackers]
        for t in threads:
            t.start()
        legit.round_done()
        for t in threads:
            t.join()
        # Closed by dmjd: seen without reading what it sent (read only to find the end).
        wait_all_closed([a.sock for a in attackers], what)
        legit.stop()
        watch.stop()
        print("  %-19s %4.1f of %4.1f MB taken per connection, all closed; %s; %s" % (
            what, sum(sent) / len(sent) / 1e6, len(data) / 1e6, watch.figures(),
            legit.figures()))
        watch.check(what)
        legit.check(what)
        serves_normally(srv, store)


def make_case(flood):
    def case(store, tmp):
        run(store, flood)
    case.__name__ = "case_" + flood.__name__
    return case


FLOODS = [hostile.reset_flood, hostile.ping_flood, hostile.settings_flood,
          hostile.empty_frames_flood, hostile.huge_hpack, hostile.header_count_flood,
          hostile.hpack_table_abuse, hostile.stream_flood, hostile.window_update_abuse]
CASES = [make_case(f) for f in FLOODS]


def main():
    return run_attack_cases(CASES, "h2floods")


if __name__ == "__main__":
    sys.exit(main())
