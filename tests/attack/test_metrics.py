#!/usr/bin/python3
"""/metrics (job totals, import times, the gauges an attacker would watch) is not served on the
API listeners unless `--metrics-on-api` asks for it: by default it is only on
`--metrics-listen`, and without that listener nowhere."""

import http.client
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from attack_lib import (ATTACKERS, HUNG, Dmjd, H2Client, Legit, get, run_attack_cases,  # noqa: E402
                        supported)


def ask(port, n):
    """/metrics asked on n connections, half HTTP/1.1 and half h2c: the statuses and whether
    any answer carried dmjd's gauges."""
    statuses, leaked = [], False
    for i in range(n):
        if i % 2:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=HUNG)
            res, body = get(c, "/metrics")
            c.close()
            statuses.append(res.status)
        else:
            h2 = H2Client(port)
            status, body = h2.request("/metrics", None)
            h2.close()
            statuses.append(status)
        leaked = leaked or b"dmj_http_open_connections" in body
    return statuses, leaked


def case_not_on_api_by_default(store, tmp):
    with Dmjd(store.dir, suite=False) as srv:
        legit = Legit(srv.port, store)
        statuses, leaked = ask(srv.port, ATTACKERS)
        legit.stop()
        print("  API port: %s; %s" % (statuses, legit.figures()))
        assert not leaked and 200 not in statuses, "/metrics on the API port: %s" % statuses
        assert set(statuses) == {404}, statuses
        legit.check("/metrics on the API port")
        # The metrics listener has it.
        assert srv.gauge("dmj_http_open_connections") >= 0
        assert ("dmj_store_jobs", "") in srv.metrics()
    # Without a metrics listener it is nowhere.
    with Dmjd(store.dir, suite=False, metrics=False) as srv:
        statuses, leaked = ask(srv.port, ATTACKERS)
        assert not leaked and set(statuses) == {404}, statuses


def case_on_api_when_asked(store, tmp):
    args = supported(["--metrics-on-api"])
    if not args:
        raise AssertionError("this dmjd has no --metrics-on-api")
    with Dmjd(store.dir, *args, suite=False) as srv:
        statuses, leaked = ask(srv.port, 2)
        assert statuses == [200, 200] and leaked, statuses


CASES = [case_not_on_api_by_default, case_on_api_when_asked]


def main():
    return run_attack_cases(CASES, "metrics")


if __name__ == "__main__":
    sys.exit(main())
