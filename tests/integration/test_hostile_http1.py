#!/usr/bin/python3
"""dmjd against hostile HTTP/1.1 input and careless credentials.

Raw sockets send malformed request lines, huge headers, header floods, bad percent-encoding,
NULs, overlong paths and queries, and request-smuggling attempts (Content-Length against
Transfer-Encoding, duplicate Content-Length, chunked garbage). Each must get a 4xx or a closed
connection (never a 2xx for the malformed request, never a second answer for a smuggled one),
and a normal request on a new connection answers 200 after every case.

Auth: every API endpoint, on both prefixes and with every method, refuses without a valid key
(401) — test_isolation.py covers fixture keys, this covers no key and broken credentials; and
a key sent in any way (header, query, malformed requests) never appears in the access log
or on stderr."""

import os
import re
import socket
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dmjtest import LIST, Server, get, run_cases, vm_kb  # noqa: E402


def exchange(port, data, wait=3.0):
    """Sends raw bytes and reads until the server closes or goes quiet; returns the bytes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=wait)
    out = b""
    try:
        try:
            s.sendall(data)
        except OSError:
            pass  # the server may close before taking it all: that is an answer
        s.settimeout(0.5)
        end = time.time() + wait
        while time.time() < end:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                if out:
                    break
                continue
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        s.close()
    return out


def statuses(raw):
    return [int(m.group(1)) for m in re.finditer(rb"HTTP/1\.[01] (\d{3}) ", raw)]


def req(target=LIST, extra=b"", method=b"GET", version=b"HTTP/1.1", body=b""):
    if isinstance(target, str):
        target = target.encode()
    return method + b" " + target + b" " + version + b"\r\nHost: t\r\n" + extra + b"\r\n" + body


def hostile_cases(key):
    auth = b"Authorization: Bearer " + key.encode() + b"\r\n"
    smuggled = req("/_health")
    return [
        ("empty line flood", b"\r\n" * 100000),
        ("no version", b"GET /\r\n\r\n"),
        ("bad version", req(version=b"HTTP/9.9")),
        ("garbage version", req(version=b"HTXP/1.1")),
        ("space in target", b"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n"),
        ("binary request line", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 64),
        ("NUL in method", b"G\x00T / HTTP/1.1\r\n\r\n"),
        ("NUL in path", req(LIST.encode() + b"\x00x", auth)),
        ("NUL in header value", req(LIST, b"X-A: a\x00b\r\n" + auth)),
        ("NUL in header name", req(LIST, b"X\x00A: b\r\n" + auth)),
        ("header without colon", req(LIST, b"NoColonHere\r\n" + auth)),
        ("header name with space", req(LIST, b"Bad Name: x\r\n" + auth)),
        ("obsolete line folding", req(LIST, b"X-A: a\r\n b\r\n" + auth)),
        ("bare LF line ends", (b"GET " + LIST.encode() + b" HTTP/1.1\nHost: t\n\n")),
        ("lone CR", b"GET / HTTP/1.1\rHost: t\r\n\r\n"),
        ("huge header 1 MB", req(LIST, b"X-Big: " + b"a" * (1 << 20) + b"\r\n" + auth)),
        ("header flood 10k", req(LIST, b"".join(b"X-%d: v\r\n" % i for i in range(10000))
                                 + auth)),
        ("100 duplicate Authorization", req(LIST, auth * 100)),
        ("overlong path 1 MB", req("/api/environments/1/data_modeling_jobs/" + "a" * (1 << 20),
                                   auth)),
        ("overlong query 1 MB", req(LIST + "?limit=1&x=" + "b" * (1 << 20), auth)),
        ("query of 100k fields", req(LIST + "?" + "&".join(["a=1"] * 100000), auth)),
        ("bad percent-encoding path", req("/api/environments/1/data_modeling_jobs/%zz%/", auth)),
        ("truncated percent path", req("/api/environments/1/data_modeling_jobs/%", auth)),
        ("percent NUL path", req("/api/environments/1%00/data_modeling_jobs/", auth)),
        ("percent-encoded slash", req("/api/environments/1%2fdata_modeling_jobs/", auth)),
        ("bad percent query", req(LIST + "?limit=%zz&cursor=%", auth)),
        ("invalid UTF-8 query", req(LIST.encode() + b"?cursor=%ff%fe%80&limit=\xff", auth)),
        ("dot segments", req("/api/environments/1/../../../etc/passwd", auth)),
        ("absolute-form elsewhere", req("http://evil.example/etc/passwd", auth)),
        ("CL and TE", req(LIST, auth + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
                          method=b"POST", body=b"0\r\n\r\n" + smuggled)),
        ("TE and CL", req(LIST, auth + b"Transfer-Encoding: chunked\r\nContent-Length: 40\r\n",
                          method=b"POST", body=b"0\r\n\r\n" + smuggled)),
        ("duplicate CL, differing", req(LIST, auth + b"Content-Length: 0\r\nContent-Length: 47"
                                        b"\r\n", method=b"POST", body=smuggled)),
        ("CL with sign", req(LIST, auth + b"Content-Length: +47\r\n", method=b"POST",
                             body=smuggled)),
        ("CL list", req(LIST, auth + b"Content-Length: 0, 47\r\n", method=b"POST",
                        body=smuggled)),
        ("CL huge", req(LIST, auth + b"Content-Length: 99999999999999999999999\r\n",
                        method=b"POST")),
        ("CL negative", req(LIST, auth + b"Content-Length: -1\r\n", method=b"POST")),
        ("TE xchunked", req(LIST, auth + b"Transfer-Encoding: xchunked\r\n", method=b"POST",
                            body=b"0\r\n\r\n" + smuggled)),
        ("TE chunked, identity", req(LIST, auth + b"Transfer-Encoding: chunked, identity\r\n",
                                     method=b"POST", body=b"0\r\n\r\n" + smuggled)),
        ("TE with space before colon", req(LIST, auth + b"Transfer-Encoding : chunked\r\n"
                                           b"Content-Length: 4\r\n", method=b"POST",
                                           body=b"0\r\n\r\n" + smuggled)),
        ("chunked garbage size", req(LIST, auth + b"Transfer-Encoding: chunked\r\n",
                                     method=b"POST", body=b"zz\r\nhello\r\n0\r\n\r\n")),
        ("chunk size overflow", req(LIST, auth + b"Transfer-Encoding: chunked\r\n",
                                    method=b"POST", body=b"ffffffffffffffffff\r\nx\r\n")),
        ("chunk bigger than data", req(LIST, auth + b"Transfer-Encoding: chunked\r\n",
                                       method=b"POST", body=b"5\r\nab\r\n0\r\n\r\n" + smuggled)),
        ("chunk with bare LF", req(LIST, auth + b"Transfer-Encoding: chunked\r\n",
                                   method=b"POST", body=b"3\nabc\n0\n\n" + smuggled)),
        ("body over the entity limit", req(LIST, auth + b"Content-Length: 3000000\r\n",
                                           method=b"POST", body=b"x" * 3000000)),
        ("unknown method", req(LIST, auth, method=b"BREW")),
        ("CONNECT", b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n"),
        ("TRACE", req(LIST, auth, method=b"TRACE")),
        ("Expect 100-continue", req(LIST, auth + b"Expect: 100-continue\r\n"
                                    b"Content-Length: 10\r\n", method=b"PUT")),
        ("Upgrade h2c with garbage settings", req(LIST, auth + b"Connection: Upgrade, "
                                                  b"HTTP2-Settings\r\nUpgrade: h2c\r\n"
                                                  b"HTTP2-Settings: !!!!\r\n")),
        ("Upgrade websocket", req(LIST, auth + b"Connection: Upgrade\r\nUpgrade: websocket\r\n")),
        ("Host flood", req(LIST, auth + b"Host: a\r\n" * 1000)),
    ]


# A case whose answer is a 2xx is acceptable only where HTTP says the request is valid and
# dmjd gives what it would for its well-formed twin; every one listed here says why, and a
# status other than 4xx must be the twin's (sent on a connection of its own).
OK_2XX = {
    "Host flood": "h2o keeps the first Host; the answer is the list",
    "Upgrade websocket": "no such upgrade here: the plain answer, as for any server",
    "Upgrade h2c with garbage settings": "h2o declines the upgrade and answers in HTTP/1.1",
    "obsolete line folding": "h2o (picohttpparser) joins folded lines; the header is unused",
    "bare LF line ends": "picohttpparser accepts LF line ends as RFC 9112 allows",
    "percent-encoded slash": "decoded before routing, as WSGI's PATH_INFO is for Django",
    "bad percent query": "as the reference: an invalid limit is the default, and a cursor that "
                         "decodes to nothing is the first page",
}


def twin(name, key):
    """The well-formed request an OK_2XX case must be answered as."""
    auth = b"Authorization: Bearer " + key.encode() + b"\r\n"
    return {
        "obsolete line folding": req(LIST, b"X-A: a b\r\n" + auth),
        "bare LF line ends": req(LIST),  # no key in either: 401
    }.get(name, req(LIST, auth))


# Answers other than 4xx that are the reference peer's too.
EXPECTED = {
    "query of 100k fields": 500,  # Django's TooManyFieldsSent on a lazily parsed query
    "Expect 100-continue": 100,  # then the final answer once a body comes (none here)
}


def check_case(srv, key, name, data):
    raw = exchange(srv.port, data)
    codes = statuses(raw)
    assert srv.proc.poll() is None, "%s: dmjd exited (%s)" % (name, srv.proc.returncode)
    if codes and name in EXPECTED:
        if codes[0] != EXPECTED[name]:
            raise AssertionError("%s: answered %s, expected %d" % (name, codes, EXPECTED[name]))
    elif codes and not 400 <= codes[0] < 500:
        if name not in OK_2XX:
            raise AssertionError("%s: answered %s: %r" % (name, codes, raw[:300]))
        expected = statuses(exchange(srv.port, twin(name, key)))
        if codes != expected:
            raise AssertionError("%s: answered %s, its well-formed twin %s: %r"
                                 % (name, codes, expected, raw[:300]))
    # A smuggled request must never be answered on its own.
    if b"/_health" in data and len(codes) > 1:
        raise AssertionError("%s: %d answers (smuggled request served): %r"
                             % (name, len(codes), raw[:600]))
    if len(codes) > 1:
        raise AssertionError("%s: %d answers to one request: %r" % (name, len(codes), raw[:600]))
    # ... and the server keeps serving others.
    c = srv.conn(timeout=10)
    res, _ = get(c, LIST + "?limit=1", key)
    c.close()
    assert res.status == 200, "%s: the next normal request answered %d" % (name, res.status)
    return codes[0] if codes else "closed"


def case_hostile_input(store, tmp):
    results = []
    failures = []
    with Server(store.dir, "--threads", "2") as srv:
        for name, data in hostile_cases(store.read_key):
            try:
                results.append("%-34s %s" % (name, check_case(srv, store.read_key, name, data)))
            except (AssertionError, OSError) as e:
                failures.append("%s: %s" % (name, e))
        # Slowloris: a request sent a byte at a time over a few seconds still works, and a
        # stalled one does not hold up others.
        stalled = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        stalled.sendall(b"GET " + LIST.encode() + b" HTTP/1.1\r\nHo")
        slow = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        for b in req("/_health"):
            slow.send(bytes([b]))
            time.sleep(0.01)
        assert b" 200 " in slow.recv(65536).split(b"\r\n")[0]
        slow.close()
        c = srv.conn(timeout=10)
        assert get(c, LIST + "?limit=1", store.read_key)[0].status == 200
        c.close()
        stalled.close()
    for line in results:
        print("  " + line)
    assert not failures, "\n".join(failures)


ENDPOINTS = ["", "recent/", "running/", "00000000-0000-0000-0000-000000000000/"]


def case_every_endpoint_refuses(store, tmp):
    key = store.read_key
    bad_credentials = [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer " + key[:-1],
        "Bearer " + key + "x",
        "Bearer " + key[:-1] + chr(ord(key[-1]) ^ 1),
        "Basic " + key,
        "Bearer phx_" + "A" * 47,
        "Bearer " + "x" * 10000,
    ]
    n = 0
    with Server(store.dir, "--threads", "2") as srv:
        c = srv.conn()
        for prefix in ("environments", "projects"):
            for team in ("1", "2", "@current", "999999"):
                for ep in ENDPOINTS:
                    path = "/api/%s/%s/data_modeling_jobs/%s" % (prefix, team, ep)
                    for method in ("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"):
                        for cred in bad_credentials:
                            h = {} if cred is None else {"Authorization": cred}
                            res, body = get(c, path, method=method, headers=h)
                            n += 1
                            assert res.status == 401, (path, method, cred and cred[:20],
                                                       res.status, body[:200])
                            assert res.getheader("WWW-Authenticate") == "Bearer"
                            assert b'"results"' not in body
                    # A wrong key in the query string as well.
                    res, body = get(c, path + "?personal_api_key=" + key[:-1] + "A")
                    n += 1
                    assert res.status == 401, (path, res.status)
        # And the real key still works on those endpoints (the refusals were for the key).
        res, _ = get(c, LIST, key)
        assert res.status == 200
        c.close()
    print("  %d requests without a valid key, all 401" % n)


def case_key_never_logged(store, tmp):
    for fmt in ("combined", "json"):
        check_key_never_logged(store, tmp, fmt)


def check_key_never_logged(store, tmp, fmt):
    log = os.path.join(tmp, "access-%s.log" % fmt)
    key = store.read_key
    q = urllib.parse.quote(key, safe="")
    args = ["--threads", "2", "--access-log", log]
    if fmt != "combined":
        args += ["--access-log-format", fmt]
    with Server(store.dir, *args) as srv:
        c = srv.conn()
        for target, headers in [
                (LIST, {"Authorization": "Bearer " + key}),
                (LIST + "?personal_api_key=" + q, {}),
                (LIST + "?personal_api_key=" + key + "&personal_api_key=" + key, {}),
                (LIST + "?PERSONAL_API_KEY=" + key, {}),
                (LIST + "?x=" + key, {}),
                ("/api/environments/1/data_modeling_jobs/%s/" % key, {}),
                (LIST + "?personal%5fapi%5Fkey=" + key, {}),
                (LIST, {"Authorization": "Bearer " + key + "x"}),
                (LIST, {"Authorization": "Basic " + key}),
                (LIST, {"Referer": "http://x/?personal_api_key=" + key}),
                ("/nope?personal_api_key=" + key, {}),
                ("/metrics?personal_api_key=" + key, {})]:
            res, _ = get(c, target, headers=headers)
        c.close()
        # Malformed requests carrying the key: they must not be echoed anywhere either.
        for data in (b"GET /?personal_api_key=" + key.encode() + b" HTTP/9.9\r\n\r\n",
                     b"GET /?personal_api_key=" + key.encode() + b"\x00 HTTP/1.1\r\n\r\n",
                     req(LIST, b"Authorization: Bearer " + key.encode() + b"\r\nBad Header\r\n")):
            exchange(srv.port, data, wait=1.0)
        code, err = srv.stop()
        assert code == 0, (code, err)
    with open(log) as f:
        text = f.read()
    assert text.count("\n") >= 12, text
    # The access log shows a key's first 8 characters (PostHog's mask_key_value), never the
    # rest, wherever the client put it (header, query, path, Referer, malformed requests).
    secret = key[8:]
    for name, where in (("access log", text), ("stderr", err)):
        hits = [line for line in where.splitlines() if secret in line]
        assert not hits, "the key is in the %s (%s): %s" % (name, fmt, hits[:3])


def case_pipeline_flood(store, tmp):
    """Pipelined requests sent without ever reading an answer (200,000 of them, 30 MB): h2o
    must stop reading the connection while its answers are unsent instead of buffering
    requests or answers without bound; others are served meanwhile."""
    with Server(store.dir, "--threads", "2") as srv:
        pid = srv.proc.pid
        rss0 = vm_kb(pid, "VmRSS")
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", srv.port))
        s.setblocking(False)
        one = ("GET %s?limit=20 HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n\r\n"
               % (LIST, store.read_key)).encode()
        data = memoryview(one * 200000)
        sent, end = 0, time.time() + 8
        while sent < len(data) and time.time() < end:
            try:
                sent += s.send(data[sent:sent + 65536])
            except BlockingIOError:
                time.sleep(0.01)
            except OSError:
                break
        time.sleep(0.5)
        c = srv.conn(timeout=10)
        res, _ = get(c, LIST + "?limit=1", store.read_key)
        c.close()
        grown = (vm_kb(pid, "VmRSS") - rss0) / 1024.0
        s.close()
        print("  pipelined %.1f of %.1f MB unread; dmjd grew %.1f MiB" % (sent / 1e6,
                                                                          len(data) / 1e6, grown))
        assert res.status == 200, res.status
        assert grown < 64, "dmjd grew by %.1f MiB" % grown


CASES = [case_hostile_input, case_pipeline_flood, case_every_endpoint_refuses,
         case_key_never_logged]


def main():
    return run_cases(CASES, "dmj-test-h1-", jobs=1500, teams=2)


if __name__ == "__main__":
    sys.exit(main())
