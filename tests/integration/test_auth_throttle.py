#!/usr/bin/python3
"""Failed authentications counted per client address (--auth-fail-limit): past the budget a
client gets 429 with Retry-After before any key is read, even with a good key and a cached
answer, while other addresses are served; 401 (no or bad key) and 404 (a team the key does
not reach) count, answers that succeed do not; X-Forwarded-For names the client only when
the peer is a --trusted-proxy, and then only its last entry (the one that proxy wrote)."""

import http.client
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dmjtest import Server, binary, run_cases  # noqa: E402

LIST = "/api/projects/%d/data_modeling_jobs/?limit=1"
BAD = "phx_" + "x" * 40


def ask(port, key=None, team=1, source="127.0.0.1", xff=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    headers = {}
    if key is not None:
        headers["Authorization"] = "Bearer " + key
    if xff is not None:
        headers["X-Forwarded-For"] = xff
    c.request("GET", LIST % team, headers=headers)
    res = c.getresponse()
    body = res.read()
    c.close()
    return res.status, res.getheader("Retry-After"), body


def case_bad_keys_throttled(store, tmp):
    with Server(store.dir, "--threads", "2", "--auth-fail-limit", "5/minute") as srv:
        for _ in range(3):  # answers that succeed do not count
            assert ask(srv.port, store.read_key)[0] == 200
        for i in range(5):
            status = ask(srv.port, BAD if i % 2 else None)[0]
            assert status == 401, (i, status)
        status, retry, body = ask(srv.port, store.read_key)
        assert status == 429, (status, body)
        assert retry is not None and 1 <= int(retry) <= 61, retry
        assert json.loads(body)["code"] == "throttled", body
        # another address is served meanwhile
        assert ask(srv.port, store.read_key, source="127.0.0.2")[0] == 200


def case_team_probing_counts(store, tmp):
    with Server(store.dir, "--threads", "1", "--auth-fail-limit", "4/minute") as srv:
        # teams the key does not reach (404 as PostHog answers them) count like bad keys
        statuses = [ask(srv.port, store.read_key, team=t)[0] for t in range(1000, 1004)]
        assert statuses == [404] * 4, statuses
        assert ask(srv.port, store.read_key, team=1)[0] == 429


def case_forwarded_for_only_from_trusted(store, tmp):
    # untrusted peer: its X-Forwarded-For is ignored, spoofing changes nothing
    with Server(store.dir, "--threads", "1", "--auth-fail-limit", "3/minute") as srv:
        for i in range(3):
            assert ask(srv.port, BAD, xff="10.9.9.%d" % i)[0] == 401
        assert ask(srv.port, store.read_key, xff="10.9.9.99")[0] == 429
    # trusted proxy: the last entry is the client; what a client wrote before it is not
    with Server(store.dir, "--threads", "1", "--auth-fail-limit", "3/minute",
                "--trusted-proxy", "127.0.0.1") as srv:
        for i in range(3):
            assert ask(srv.port, BAD, xff="1.2.3.%d, 10.0.0.1" % i)[0] == 401
        assert ask(srv.port, store.read_key, xff="10.0.0.1")[0] == 429
        assert ask(srv.port, store.read_key, xff="10.0.0.1, 10.0.0.2")[0] == 200
        # another peer that is not the trusted proxy counts as itself
        assert ask(srv.port, store.read_key, source="127.0.0.3", xff="10.0.0.1")[0] == 200


def case_options_checked(store, tmp):
    import subprocess
    for args in (["--auth-fail-limit", "lots"], ["--trusted-proxy", "proxy.example"]):
        res = subprocess.run([binary("dmjd"), "--db", store.dir, *args],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert res.returncode == 2 and args[0] in res.stderr, (args, res.returncode, res.stderr)


CASES = [case_bad_keys_throttled, case_team_probing_counts, case_forwarded_for_only_from_trusted,
         case_options_checked]

if __name__ == "__main__":
    sys.exit(run_cases(CASES, "dmj-auth-throttle-"))
