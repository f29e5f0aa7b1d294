#!/usr/bin/python3
"""dmjd over real sockets: HTTP/1.1 keep-alive, HEAD, 401, /_health, /metrics, access log,
rate limit, TLS with ALPN, several listeners, a missing store, and graceful SIGTERM.

Each case starts its own dmjd on port 0 on a store built in a temporary directory with
`dmj generate` + `dmj import` (or tools/gen_jobs.py from DMJ_SHARED_DIR when this `dmj` has
no generate). The helpers it uses are dmjtest.py's."""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dmjtest import (LIST, Server, binary, cpu_seconds, fixture_keys, generate, get,  # noqa: E402
                     import_into, make_cert, metrics, run_cases, tls_context)


# ---- cases ---------------------------------------------------------------------------------

def case_keepalive_and_metrics(store, tmp):
    with Server(store.dir, "--threads", "2") as srv:
        c = srv.conn()
        before = metrics(c)
        sock = c.sock
        seen = set()
        for limit in (1, 2, 3, 5, 8):
            res, body = get(c, LIST + "?limit=%d" % limit, store.read_key)
            assert res.status == 200, (res.status, body)
            assert res.getheader("Content-Type") == "application/json"
            assert res.getheader("Allow") == "GET, HEAD, OPTIONS"
            assert int(res.getheader("Content-Length")) == len(body)
            assert res.getheader("Transfer-Encoding") is None
            page = json.loads(body)
            assert len(page["results"]) == limit, page
            seen.update(j["id"] for j in page["results"])
            assert c.sock is sock, "the connection was not kept alive"
        after = metrics(c)
        assert c.sock is sock, "the connection was not kept alive"
        # One connection for everything: the total of accepted connections did not move.
        assert after[("dmj_http_connections_total", "")] == \
            before[("dmj_http_connections_total", "")], (before, after)
        assert after[("dmj_http_open_connections", "")] >= 1
        key = ("dmj_http_requests_total", '{endpoint="list",status="200"}')
        assert after.get(key, 0) - before.get(key, 0) == 5, (before.get(key), after.get(key))
        hist = "dmj_http_request_duration_seconds_count"
        assert after[(hist, "")] - before[(hist, "")] >= 6
        assert after[("dmj_store_used_bytes", "")] > 0
        # A second connection is counted.
        c2 = srv.conn()
        again = metrics(c2)
        assert again[("dmj_http_connections_total", "")] == \
            after[("dmj_http_connections_total", "")] + 1
        c2.close()
        c.close()


def case_head_401_health(store, tmp):
    with Server(store.dir, "--threads", "1") as srv:
        c = srv.conn()
        for path in (LIST + "?limit=7", LIST + "?limit=7&cursor=",
                     "/api/projects/1/data_modeling_jobs"):
            res, body = get(c, path, store.read_key)
            assert res.status == 200, (res.status, body)
            res_h, body_h = get(c, path, store.read_key, method="HEAD")
            assert res_h.status == 200
            assert body_h == b""
            assert int(res_h.getheader("Content-Length")) == len(body), (
                res_h.getheader("Content-Length"), len(body))
            assert res_h.getheader("Content-Type") == "application/json"

        res, body = get(c, LIST)
        assert res.status == 401, res.status
        assert res.getheader("WWW-Authenticate") == "Bearer"
        assert res.getheader("Content-Type") == "application/json"
        err = json.loads(body)
        assert err["type"] == "authentication_error" and err["code"] == "not_authenticated", err
        res_h, body_h = get(c, LIST, method="HEAD")
        assert res_h.status == 401 and body_h == b""
        assert int(res_h.getheader("Content-Length")) == len(body)
        assert res_h.getheader("WWW-Authenticate") == "Bearer"

        res, body = get(c, LIST, "phx_not_a_key_at_all")
        assert res.status == 401 and res.getheader("WWW-Authenticate") == "Bearer"

        res, body = get(c, "/_health")
        assert res.status == 200, (res.status, body)
        assert int(res.getheader("Content-Length")) == len(body)

        # X-Forwarded-Proto and Host reach the API: they shape the links.
        res, body = get(c, LIST + "?limit=2", store.read_key,
                        headers={"Host": "example.org:8443", "X-Forwarded-Proto": "https"})
        assert res.status == 200
        nxt = json.loads(body)["next"]
        assert nxt.startswith("https://example.org:8443" + LIST), nxt

        # HTTP/1.0 without Host: the links name the server's own address, as Django behind
        # gunicorn does (SERVER_NAME:SERVER_PORT).
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as raw:
            raw.sendall(("GET %s?limit=1 HTTP/1.0\r\nAuthorization: Bearer %s\r\n\r\n"
                         % (LIST, store.read_key)).encode())
            data = b""
            while True:
                chunk = raw.recv(65536)
                if not chunk:
                    break
                data += chunk
        body = data.partition(b"\r\n\r\n")[2]
        nxt = json.loads(body)["next"]
        assert nxt.startswith("http://127.0.0.1:%d%s?" % (srv.port, LIST)), nxt

        # POST with a body is answered (405 after auth), and the connection survives.
        c.request("POST", LIST, body=b"x" * 1000,
                  headers={"Authorization": "Bearer " + store.read_key})
        res = c.getresponse()
        res.read()
        assert res.status == 405, res.status
        res, body = get(c, "/_health")
        assert res.status == 200

        res, body = get(c, "/metrics", method="DELETE")
        assert res.status == 405

        # ETag and If-None-Match pass through: 304 with no body, then 200 again on a miss.
        res, body = get(c, LIST + "?limit=3", store.read_key)
        etag = res.getheader("ETag")
        assert res.status == 200 and etag, (res.status, etag)
        res, body = get(c, LIST + "?limit=3", store.read_key, headers={"If-None-Match": etag})
        assert res.status == 304, res.status
        assert body == b""
        assert res.getheader("ETag") == etag
        assert res.getheader("Transfer-Encoding") is None
        res, body = get(c, LIST + "?limit=3", store.read_key,
                        headers={"If-None-Match": '"nope"'})
        assert res.status == 200 and len(json.loads(body)["results"]) == 3
        c.close()


def case_access_log(store, tmp):
    log = os.path.join(tmp, "access.log")
    key = store.read_key
    with Server(store.dir, "--threads", "2", "--access-log", log) as srv:
        c = srv.conn()
        res, _ = get(c, LIST + "?personal_api_key=" + key + "&limit=3")
        assert res.status == 200, res.status
        res, _ = get(c, LIST + "?limit=2&personal%5Fapi%5Fkey=" + key)
        assert res.status == 200, res.status
        res, _ = get(c, LIST + "?limit=1", key, headers={"User-Agent": 'evil "agent"',
                                                       "Referer": "http://x/?personal_api_key="
                                                       + key})
        assert res.status == 200
        res, _ = get(c, "/nope")
        assert res.status == 404
        # Repeated, last, short and empty key parameters.
        res, _ = get(c, LIST + "?personal_api_key=" + key + "&personal_api_key=" + key
                     + "&x=1&personal_api_key=" + key[:5] + "&personal_api_key=")
        res, _ = get(c, LIST + "?a=b&personal_api_key=" + key)
        c.close()
        code, err = srv.stop()
        assert code == 0, (code, err)
    with open(log) as f:
        lines = f.read().splitlines()
    assert len(lines) == 6, lines
    short = key[:8] + "..."
    assert ('?personal_api_key=%s&personal_api_key=%s&x=1&personal_api_key=%s'
            '&personal_api_key= ' % (short, short, key[:5])) in lines[4], lines[4]
    assert lines[5].split('"')[1].endswith("?a=b&personal_api_key=%s HTTP/1.1" % short), lines[5]
    lines = lines[:4]
    text = "\n".join(lines)
    assert key not in text, "the API key is in the access log"
    assert key[8:16] not in text
    assert ("personal_api_key=" + key[:8] + "...") in lines[0], lines[0]
    assert ("personal%5Fapi%5Fkey=" + key[:8] + "...") in lines[1], lines[1]
    combined = re.compile(r'(\S+) - - \[(\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] '
                          r'"(\S+) (\S+) (HTTP/[\d.]+)" (\d{3}) (\d+|-) "([^"]*)" "([^"]*)"')
    for line in lines:
        assert combined.fullmatch(line), line
    m = combined.fullmatch(lines[2])
    assert m.group(9) == "evil \\x22agent\\x22", m.group(9)
    assert m.group(6) == "200"
    assert combined.fullmatch(lines[3]).group(6) == "404"


def case_rate_limit(store, tmp):
    with Server(store.dir, "--threads", "2", "--rate-limit", "3/minute,100/hour") as srv:
        c = srv.conn()
        for i in range(3):
            res, body = get(c, LIST + "?limit=1", store.read_key)
            assert res.status == 200, (i, res.status, body)
        res, body = get(c, LIST + "?limit=1", store.read_key)
        assert res.status == 429, (res.status, body)
        wait = int(res.getheader("Retry-After"))
        assert 59 <= wait <= 60, wait  # when the oldest of the three leaves the minute
        err = json.loads(body)
        assert err["type"] == "throttled_error" and err["code"] == "throttled", err
        unit = "second" if wait == 1 else "seconds"
        assert err["detail"] == "Request was throttled. Expected available in %d %s." % (
            wait, unit), err
        # Another key has its own allowance; requests without a key are not counted.
        other = store.keys.get("star")
        if other:
            res, body = get(c, LIST + "?limit=1", other)
            assert res.status == 200, (res.status, body)
        res, body = get(c, LIST)
        assert res.status == 401
        c.close()
    # Per second: "1 second" in the singular, and allowed again once the second is over.
    with Server(store.dir, "--threads", "2", "--rate-limit", "2/second") as srv:
        c = srv.conn()
        codes = [get(c, LIST + "?limit=1", store.read_key)[0].status for _ in range(2)]
        res, body = get(c, LIST + "?limit=1", store.read_key)
        assert codes == [200, 200] and res.status == 429, (codes, res.status)
        assert res.getheader("Retry-After") == "1"
        assert json.loads(body)["detail"] == \
            "Request was throttled. Expected available in 1 second.", body
        time.sleep(1.1)
        res, body = get(c, LIST + "?limit=1", store.read_key)
        assert res.status == 200, (res.status, body)
        c.close()
    bad = subprocess.run([binary("dmjd"), "--db", store.dir, "--rate-limit", "lots"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert bad.returncode != 0 and b"rate-limit" in bad.stderr


def case_tls(store, tmp):
    pair = make_cert(tmp)
    if pair is None:
        print("  (no openssl binary: TLS case not run)")
        return
    cert, key = pair
    with Server(store.dir, "--threads", "2", "--tls-cert", cert, "--tls-key", key,
                "--listen", "127.0.0.1:0", "--listen", "http://127.0.0.1:0",
                listeners=2) as srv:
        assert srv.urls[0][0] == "https" and srv.urls[1][0] == "http", srv.urls
        port = srv.urls[0][2]
        # ALPN: h2 preferred when offered.
        for offer, want in ((["h2", "http/1.1"], "h2"), (["http/1.1"], "http/1.1")):
            with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
                with tls_context(cert, offer).wrap_socket(raw, server_hostname="localhost") as s:
                    assert s.selected_alpn_protocol() == want, (offer,
                                                                s.selected_alpn_protocol())
        c = http.client.HTTPSConnection("localhost", port, timeout=30,
                                        context=tls_context(cert, ["http/1.1"]))
        res, body = get(c, LIST + "?limit=2", store.read_key)
        assert res.status == 200, (res.status, body)
        page = json.loads(body)
        assert page["next"].startswith("https://localhost:%d/" % port), page["next"]
        res, body = get(c, LIST + "?limit=2", store.read_key)  # keep-alive over TLS
        assert res.status == 200
        c.close()
        # The plain listener next to it says http.
        c = http.client.HTTPConnection("127.0.0.1", srv.urls[1][2], timeout=30)
        res, body = get(c, LIST + "?limit=2", store.read_key)
        assert res.status == 200
        assert json.loads(body)["next"].startswith("http://127.0.0.1:%d/" % srv.urls[1][2])
        # Closed TLS connections are no longer counted as open.
        deadline = time.time() + 5
        while metrics(c)[("dmj_http_open_connections", "")] != 1 and time.time() < deadline:
            time.sleep(0.05)
        assert metrics(c)[("dmj_http_open_connections", "")] == 1
        c.close()
    bad = subprocess.run([binary("dmjd"), "--db", store.dir, "--tls-cert", cert],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert bad.returncode != 0


def case_sigterm(store, tmp):
    # A team with so many jobs that one page (10 MB) is more than the kernel will buffer
    # for a slow reader: h2o itself still holds part of the answer when the signal comes.
    big = os.path.join(tmp, "big")
    os.makedirs(big)
    jobs, fixtures = generate(tmp, "big", 25000, 1, seed=3)
    import_into(big, fixtures, jobs)
    key = fixture_keys(fixtures)["read"]
    srv = Server(big, "--threads", "2", "--max-limit", "0")
    try:
        # An idle keep-alive connection must not hold the shutdown up.
        idle = srv.conn()
        res, _ = get(idle, LIST + "?limit=1", key)
        assert res.status == 200
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.connect(("127.0.0.1", srv.port))
        # A second, pipelined request is read only once the first answer is out, which is
        # after the signal: it is still answered, with "Connection: close" (h2o does that once
        # its context is shutting down).
        raw.sendall(("GET %s?limit=25000 HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n\r\n"
                     "GET /_health HTTP/1.1\r\nHost: t\r\n\r\n" % (LIST, key)).encode())
        raw.settimeout(60)
        data = bytearray(raw.recv(4096))  # the answer has started: h2o is writing it
        started = time.time()
        srv.proc.send_signal(signal.SIGTERM)
        # The port soon stops taking connections, while the answer is still being written.
        refused = False
        while not refused and time.time() < started + 10:
            try:
                socket.create_connection(("127.0.0.1", srv.port), timeout=5).close()
                time.sleep(0.05)
            except OSError:
                refused = True
        assert refused, "still accepting 10 s after SIGTERM"
        assert srv.proc.poll() is None, "exited before the answer in flight was sent"
        raw.settimeout(30)
        while True:
            chunk = raw.recv(1 << 20)
            if not chunk:
                break
            data += chunk
        raw.close()
        head, _, rest = bytes(data).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head[:100]
        m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        assert m and int(m.group(1)) <= len(rest), (m and m.group(1), len(rest))
        body, second = rest[:int(m.group(1))], rest[int(m.group(1)):]
        assert len(body) > 8 << 20, len(body)
        head2, _, body2 = second.partition(b"\r\n\r\n")
        assert head2.startswith(b"HTTP/1.1 200"), second[:200]
        assert re.search(rb"(?i)\r\nconnection: *close\r?\n", head2 + b"\r\n"), head2
        assert json.loads(body2) == {"status": "ok"}, body2
        assert len(json.loads(body)["results"]) == 25000
        code, err = srv.stop(timeout=30)
        assert code == 0, (code, err)
        # An idle connection holding the drain up would run into the drain deadline, which
        # dmjd reports on stderr ("closing connections still open after ... ms").
        assert "still open" not in err, "shutdown waited on an idle connection: " + err
        assert not err.strip(), err
    finally:
        srv.kill()
    # SIGINT too, with nothing open, even when started as a shell starts background jobs:
    # with SIGINT ignored.
    def as_background_job():
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    with Server(store.dir, "--threads", "3", preexec_fn=as_background_job) as srv2:
        c = srv2.conn()
        res, _ = get(c, "/_health")
        assert res.status == 200
        c.close()
        code, err = srv2.stop(sig=signal.SIGINT)
        assert code == 0, (code, err)


def case_startup_errors(store, tmp):
    missing = os.path.join(tmp, "no-such-store")
    res = subprocess.run([binary("dmjd"), "--db", missing, "--listen", "127.0.0.1:0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
    assert res.returncode == 1, res.returncode
    assert "no store" in res.stderr and missing in res.stderr, res.stderr
    env = dict(os.environ, DMJ_DB=missing)
    res = subprocess.run([binary("dmjd"), "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, timeout=30, env=env)
    assert res.returncode == 1 and missing in res.stderr, res.stderr
    res = subprocess.run([binary("dmjd"), "--help"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, timeout=30)
    assert res.returncode == 0 and "--listen" in res.stdout and "--rate-limit" in res.stdout
    res = subprocess.run([binary("dmjd"), "--db", store.dir, "--listen", "nonsense"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
    assert res.returncode != 0 and "nonsense" in res.stderr
    # DMJ_DB is the default store; several listeners each print their line and answer.
    with Server(store.dir, "--listen", "127.0.0.1:0", "--listen", "127.0.0.1:0",
                listeners=2) as srv:
        assert srv.urls[0][2] != srv.urls[1][2]
        for _, host, port in srv.urls:
            c = http.client.HTTPConnection(host, port, timeout=30)
            res, _ = get(c, LIST + "?limit=1", store.read_key)
            assert res.status == 200
            c.close()


def case_fd_exhaustion(store, tmp):
    import resource

    def few_fds():
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    with Server(store.dir, "--threads", "2", preexec_fn=few_fds) as srv:
        socks = []
        for _ in range(100):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            socks.append(s)
        time.sleep(0.3)
        # Out of descriptors, the server must back off rather than spin on accept().
        cpu = cpu_seconds(srv.proc.pid)
        time.sleep(1.0)
        used = cpu_seconds(srv.proc.pid) - cpu
        assert used < 0.5, "%.2f s of CPU in 1 s while out of file descriptors" % used
        for s in socks:
            s.close()
        time.sleep(0.3)
        c = srv.conn(timeout=10)
        res, _ = get(c, LIST + "?limit=1", store.read_key)
        assert res.status == 200
        c.close()


CASES = [case_keepalive_and_metrics, case_head_401_health, case_access_log, case_rate_limit,
         case_tls, case_sigterm, case_startup_errors, case_fd_exhaustion]


def main():
    return run_cases(CASES, "dmj-test-server-")


if __name__ == "__main__":
    sys.exit(main())
