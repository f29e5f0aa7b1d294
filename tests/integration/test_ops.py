#!/usr/bin/python3
"""dmjd's operations features: --metrics-listen (metrics there only, the API not there), the
store's jobs count and last import time in /metrics (live across an import),
--access-log-format json, and the error log's ISO 8601 timestamps on stderr once the
workers are being set up (a worker that cannot get descriptors is one such message)."""

import http.client
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dmjtest import Store, binary, first_lines, generate, get, import_into  # noqa: E402

ISO_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z dmjd: \S")


class Dmjd:
    """A dmjd whose printed listener lines (`listening on` and `metrics on`) are all read."""

    def __init__(self, db, *args, metrics=False, preexec_fn=None):
        cmd = [binary("dmjd"), "--db", db, "--listen", "127.0.0.1:0", *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     preexec_fn=preexec_fn)
        self.lines = [line.decode() for line in first_lines(self.proc, 2 if metrics else 1, 20)]
        self.port = self._port("listening on http://")
        self.metrics_port = self._port("metrics on http://") if metrics else None

    def _port(self, prefix):
        for line in self.lines:
            if line.startswith(prefix):
                return int(line.rsplit(":", 1)[1])
        raise AssertionError("no %r line in %r" % (prefix, self.lines))

    def conn(self, port=None):
        return http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=30)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        err = self.proc.stderr.read().decode(errors="replace")
        self.proc.stdout.close()
        self.proc.stderr.close()
        return self.proc.returncode, err


def scrape(conn):
    res, body = get(conn, "/metrics")
    assert res.status == 200, (res.status, body[:200])
    assert res.getheader("Content-Type", "").startswith("text/plain")
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            m = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)", line)
            assert m, line
            out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def case_metrics_listener(store, tmp):
    t0 = time.time()
    srv = Dmjd(store.dir, "--threads", "2", "--metrics-listen", "127.0.0.1:0", metrics=True)
    try:
        assert srv.lines[-1].startswith("metrics on http://127.0.0.1:"), srv.lines
        assert srv.metrics_port != srv.port
        api, mc = srv.conn(), srv.conn(srv.metrics_port)
        # /metrics left the API listener (an ordinary unmatched path there now)...
        res, body = get(api, "/metrics")
        assert res.status == 404, res.status
        assert json.loads(body)["detail"] == "Not found.", body
        # ... and the API is not on the metrics listener, with or without a key
        for path in ("/api/projects/1/data_modeling_jobs/", "/_health", "/api/schema/"):
            res, body = get(mc, path, key=store.read_key)
            assert res.status == 404, (path, res.status)
            assert b"phx_" not in body and b"results" not in body
        res, _ = get(api, "/api/projects/1/data_modeling_jobs/?limit=3", key=store.read_key)
        assert res.status == 200
        # the answer is counted just after it is queued, maybe by another worker: wait
        list_row = ("dmj_http_requests_total", '{endpoint="list",status="200"}')
        for _ in range(100):
            m = scrape(mc)
            if list_row in m:
                break
            time.sleep(0.02)
        assert m.get(list_row) == 1, m
        assert m[("dmj_http_requests_total", '{endpoint="metrics",status="200"}')] >= 1, m
        assert ("dmj_http_requests_total", '{endpoint="unmatched",status="404"}') in m, m
        jobs = m[("dmj_store_jobs", "")]
        assert jobs == len({j["id"] for j in store.jobs}), (jobs, len(store.jobs))
        last = m[("dmj_store_last_import_timestamp_seconds", "")]
        assert store.imported_at - 5 <= last <= time.time() + 5, (last, store.imported_at)

        # an import while dmjd serves: both follow without a restart
        more, _ = generate(tmp, "more", 50, 2, seed=99)
        time.sleep(1.1)
        import_into(store.dir, more)
        with open(more) as f:
            added = {json.loads(line)["id"] for line in f if line.strip()}
        m2 = scrape(mc)
        want = len({j["id"] for j in store.jobs} | added)
        assert m2[("dmj_store_jobs", "")] == want, (m2[("dmj_store_jobs", "")], want)
        assert m2[("dmj_store_last_import_timestamp_seconds", "")] >= last + 1, (m2, last)
        assert m2[("dmj_store_last_import_timestamp_seconds", "")] <= time.time() + 1
        assert t0 - 5 <= m2[("dmj_store_last_import_timestamp_seconds", "")]
    finally:
        code, err = srv.stop()
    assert code == 0 and err == "", (code, err)
    print("ok   --metrics-listen: metrics only there, API only on the API port; jobs count "
          "and last import time follow an import")


def case_metrics_default(store, tmp):
    # Without --metrics-listen or --metrics-on-api, /metrics is not served at all: on the
    # API port it is an ordinary unmatched path.
    srv = Dmjd(store.dir, "--threads", "1")
    try:
        c = srv.conn()
        res, body = get(c, "/metrics")
        res2, body2 = get(c, "/nope")
        assert (res.status, body) == (res2.status, body2) == (404, body2), (res.status, body)
        assert b"dmj_" not in body
    finally:
        code, err = srv.stop()
    assert code == 0 and err == "", (code, err)
    srv = Dmjd(store.dir, "--threads", "1", "--metrics-on-api")
    try:
        m = scrape(srv.conn())
        assert m[("dmj_store_jobs", "")] >= len({j["id"] for j in store.jobs}), m
        assert m[("dmj_store_last_import_timestamp_seconds", "")] > 1e9
    finally:
        code, err = srv.stop()
    assert code == 0 and err == "", (code, err)
    # an empty store (an import of nothing creates it): no jobs, never written
    empty = os.path.join(tmp, "empty")
    os.makedirs(empty)
    nothing = os.path.join(tmp, "nothing.ndjson")
    open(nothing, "w").close()
    import_into(empty, nothing)
    srv = Dmjd(empty, "--threads", "1", "--metrics-on-api")
    try:
        m = scrape(srv.conn())
        assert m[("dmj_store_jobs", "")] == 0, m
        assert m[("dmj_store_last_import_timestamp_seconds", "")] == 0, m
    finally:
        srv.stop()
    print("ok   /metrics off the API listener by default; --metrics-on-api puts it there, "
          "with the jobs count")


def case_access_log_json(store, tmp):
    log = os.path.join(tmp, "access.json")
    srv = Dmjd(store.dir, "--threads", "1", "--metrics-on-api", "--access-log", log,
               "--access-log-format", "json")
    key = store.read_key
    try:
        c = srv.conn()
        c.request("GET", "/api/projects/1/data_modeling_jobs/?limit=2&personal_api_key=" + key,
                  headers={"User-Agent": 'odd "agent" \\ é'.encode().decode("latin-1")})
        res = c.getresponse()
        body = res.read()
        assert res.status == 200
        res, _ = get(c, "/api/projects/1/data_modeling_jobs/", method="HEAD")
        assert res.status == 401
        res, _ = get(c, "/metrics")
        c2 = srv.conn()
        c2.putrequest("GET", "/api/schema/", skip_accept_encoding=True)
        c2.endheaders()
        r2 = c2.getresponse()
        r2.read()
    finally:
        code, err = srv.stop()
    assert code == 0 and err == "", (code, err)
    with open(log, "rb") as f:
        raw = f.read()
    assert key.encode() not in raw, "the key is in the access log"
    lines = [json.loads(line) for line in raw.decode().splitlines()]
    assert len(lines) == 4, lines
    fields = ["time", "remote", "method", "path", "status", "bytes", "duration_us", "protocol",
              "user_agent"]
    for rec in lines:
        assert list(rec) == fields, list(rec)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z", rec["time"]), rec
        assert rec["remote"] == "127.0.0.1" and rec["protocol"] == "HTTP/1.1", rec
        assert isinstance(rec["duration_us"], int) and 0 <= rec["duration_us"] < 30e6
        assert isinstance(rec["status"], int) and isinstance(rec["bytes"], int)
    first = lines[0]
    assert first["method"] == "GET" and first["status"] == 200, first
    assert first["bytes"] == len(body), (first, len(body))
    assert first["path"] == ("/api/projects/1/data_modeling_jobs/?limit=2&personal_api_key=" +
                             key[:8] + "..."), first["path"]
    assert first["user_agent"] == r"odd \x22agent\x22 \x5c \xc3\xa9", first["user_agent"]
    assert lines[1]["method"] == "HEAD" and lines[1]["status"] == 401
    assert lines[1]["bytes"] == 0, lines[1]
    assert lines[2]["path"] == "/metrics" and lines[2]["status"] == 200
    assert lines[3]["user_agent"] is None and lines[3]["path"] == "/api/schema/", lines[3]
    when = time.time()
    for rec in lines:
        t = time.mktime(time.strptime(rec["time"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        assert abs(t - when) < 120, (rec["time"], when)

    # combined stays the default, and a wrong format is refused before anything starts
    log2 = os.path.join(tmp, "access.log")
    srv = Dmjd(store.dir, "--threads", "1", "--access-log", log2)
    get(srv.conn(), "/_health")
    srv.stop()
    with open(log2) as f:
        line = f.read()
    assert re.match(r'^127\.0\.0\.1 - - \[[^]]+\] "GET /_health HTTP/1\.1" 200 ', line), line
    res = subprocess.run([binary("dmjd"), "--db", store.dir, "--access-log-format", "xml"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
    assert res.returncode == 2 and "--access-log-format" in res.stderr, (res.returncode,
                                                                          res.stderr)
    print("ok   --access-log-format json: one object a line, fields typed, key redacted, "
          "client text escaped; combined by default; a bad format refused")


def case_error_log(store, tmp):
    """Workers that cannot be set up (out of descriptors for their pipes): the messages from
    then on are timestamped, and dmjd exits 1 instead of serving with fewer workers."""
    def few_fds():
        resource.setrlimit(resource.RLIMIT_NOFILE, (32, 32))

    res = subprocess.run([binary("dmjd"), "--db", store.dir, "--listen", "127.0.0.1:0",
                          "--threads", "64"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, timeout=60, preexec_fn=few_fds)
    assert res.returncode == 1, (res.returncode, res.stdout, res.stderr)
    assert "listening on" not in res.stdout, res.stdout
    lines = [line for line in res.stderr.splitlines() if line]
    assert lines, res.stderr
    for line in lines:
        assert ISO_LINE.match(line), "not timestamped: %r" % line
    assert any(re.search(r"dmjd: worker [0-9]+: Too many open files$", line)
               for line in lines), lines
    stamp = lines[0].split(" ", 1)[0]
    t = time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert abs(t - time.time()) < 120, (stamp, time.time())
    # start-up errors before any worker (a usage error) stay plain, as `dmjd --help` shows
    res = subprocess.run([binary("dmjd"), "--threads", "0"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, timeout=30)
    assert res.returncode == 2 and res.stderr.startswith("dmjd: --threads"), res.stderr
    print("ok   error log: messages from the workers on carry an ISO 8601 UTC timestamp")


def main():
    failed = 0
    with tempfile.TemporaryDirectory(prefix="dmj-ops-") as tmp:
        store = Store(tmp, jobs=600, teams=2)
        store.imported_at = time.time()
        for case in (case_metrics_listener, case_metrics_default, case_access_log_json,
                     case_error_log):
            try:
                case(store, tmp)
            except Exception:
                traceback.print_exc()
                print("FAIL %s" % case.__name__)
                failed += 1
    print("FAILED" if failed else "all passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
