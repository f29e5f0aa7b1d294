#!/usr/bin/python3
"""Import while serving: dmjd under h2load at full speed while `dmj import` writes 1,000,000
jobs (100,000 in a sanitizer build) into the store it serves. Every request must succeed
(h2load: no failed or errored request, only 2xx), and page walks running meanwhile must see
every job that was there before the walk began, and no job twice except where DRF's cursor
itself repeats rows (see walk())."""

import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dmjtest import (LIST, Server, Store, binary, check_repeats, cursor_offset,  # noqa: E402
                     generate, get, import_into, sanitized)

TEAM = 1
PAGE = 200


def h2load_round(port, key, paths):
    """One h2load run over h2c; returns its summary counters."""
    urls = ["http://127.0.0.1:%d%s" % (port, p) for p in paths]
    res = subprocess.run(["h2load", "-n", "4000", "-c", "16", "-m", "10", "-H",
                          "Authorization: Bearer " + key, *urls],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", res.stdout)
    s = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", res.stdout)
    assert res.returncode == 0 and m and s, res.stdout[-2000:]
    total, _, done, ok, failed, errored, timeout = map(int, m.groups())
    return {"total": total, "done": done, "succeeded": ok, "failed": failed,
            "errored": errored, "timeout": timeout, "non2xx": sum(map(int, s.groups()[1:]))}


RECONNECTS = []  # walk requests sent again on a new connection (see walk)


def walk(srv, key):
    """Every job id of TEAM, following `next` links, and the set of ids seen again where
    DRF's cursor allows it (check_repeats). Nothing else may repeat."""
    conn = srv.conn()
    seen = []
    repeats_allowed = 0
    url = LIST + "?limit=%d" % PAGE
    excused = set()
    while url:
        try:
            res, body = get(conn, url, key)
        except (http.client.RemoteDisconnected, ConnectionResetError):
            # A keep-alive connection the server closed as idle just as the request went out
            # (h2o's 10 s, on a starved machine): HTTP lets a client send an idempotent
            # request again on a new connection. Counted, and only once in a row.
            conn.close()
            conn = srv.conn()
            RECONNECTS.append(url)
            res, body = get(conn, url, key)
        assert res.status == 200, (url, res.status, body[:300])
        page = json.loads(body)
        ids = [j["id"] for j in page["results"]]
        excused.update(check_repeats(seen, ids, url))
        repeats_allowed += cursor_offset(urllib.parse.urlsplit(url).query)
        seen.extend(ids)
        url = None
        if page["next"]:
            parts = urllib.parse.urlsplit(page["next"])
            url = parts.path + "?" + parts.query
    conn.close()
    assert len(seen) - len(set(seen)) <= repeats_allowed
    return seen, excused


def main():
    binary("dmjd")
    binary("dmj")
    if shutil.which("h2load") is None:
        print("skipped: h2load (nghttp2-client) is not installed")
        sys.exit(77)
    jobs = 100_000 if sanitized() else 1_000_000
    tmp = tempfile.mkdtemp(prefix="dmj-test-import-load-")
    try:
        store = Store(tmp, jobs=3000, teams=4)
        big, _ = generate(tmp, "big", jobs, 4, seed=11)
        job_id = next(j["id"] for j in store.jobs if j["team_id"] == TEAM)
        paths = [LIST + "?limit=100", LIST + job_id + "/", LIST + "running/",
                 LIST + "recent/"]
        with Server(store.dir, "--threads", "2") as srv:
            done = threading.Event()
            errors = []
            rounds = []
            walks = []
            repeats = []

            def load():
                try:
                    while not done.is_set():
                        rounds.append(h2load_round(srv.port, store.read_key, paths))
                except Exception as e:  # reported below
                    errors.append(e)

            def walker():
                try:
                    while not done.is_set():
                        before = set(walk(srv, store.read_key)[0])
                        seen, excused = walk(srv, store.read_key)
                        repeats.append(len(excused))
                        missing = before - set(seen)
                        assert not missing, "%d jobs vanished, e.g. %s" % (
                            len(missing), sorted(missing)[:3])
                        walks.append(len(seen))
                except Exception as e:
                    errors.append(e)

            threads = [threading.Thread(target=load), threading.Thread(target=walker)]
            for t in threads:
                t.start()
            time.sleep(0.5)
            started = time.time()
            import_into(store.dir, big, extra=("--batch", "100000"))
            seconds = time.time() - started
            time.sleep(0.5)
            done.set()
            for t in threads:
                t.join(timeout=120)
            if errors:
                raise errors[0]

            assert rounds, "no h2load round ran"
            served = sum(r["done"] for r in rounds)
            for r in rounds:
                assert r["done"] == r["total"], r
                assert r["succeeded"] == r["total"], r
                assert r["failed"] == 0 and r["errored"] == 0 and r["timeout"] == 0, r
                assert r["non2xx"] == 0, r
            assert walks, "no page walk completed"
            res, body = get(srv.conn(), LIST + "?limit=1", store.read_key)
            assert res.status == 200, res.status
            run = subprocess.run([binary("dmj"), "verify", "--db", store.dir],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            assert run.returncode == 0, run.stdout[-2000:]
            print("imported %d jobs in %.1f s while serving %d requests in %d h2load rounds "
                  "(0 failed) and %d consistent walks (last: %d jobs of team %d; rows repeated "
                  "inside DRF's offset window: %d; requests sent again after an idle close: %d)"
                  % (jobs, seconds, served, len(rounds), len(walks), walks[-1], TEAM,
                     sum(repeats), len(RECONNECTS)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("1 passed, 0 failed")


if __name__ == "__main__":
    main()
