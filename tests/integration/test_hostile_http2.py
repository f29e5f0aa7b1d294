#!/usr/bin/python3
"""dmjd against hostile HTTP/2 clients: invalid frames, SETTINGS/PING/reset floods, rapid reset
(CVE-2023-44487), huge HPACK headers, CONTINUATION floods, stream floods and WINDOW_UPDATE
abuse, sent as hand-built frames over raw cleartext sockets (prior knowledge).

Each attack runs on its own connection while a probe connection keeps asking a normal question;
after each the server must still be up, answer 200, and have grown by no more than a bound.
The attacker never reads (or reads as little as it can) so that whatever the server queues for
it stays queued: that is how h2o 2.2.5 (before 2.2.6's fixes for CVE-2019-9512/9514/9515) could
be made to buffer without limit. CPU seconds and resident memory of dmjd per attack are printed
(figures, not assertions). Frames, HPACK literals and floods come from hostile_h2.py.

Findings on h2o 2.2.5 (figures printed by case_floods): rapid reset is not limited by the
100-stream concurrency bound (every reset stream was served: 30,000 list pages, ~1 s of CPU
on one worker per connection): dmjd now shuts such a connection down (handler.c,
case_rapid_reset_cut). PING/SETTINGS/reset floods stay bounded (h2o stops reading while its
answers are unsent); unknown frame types each print a line on stderr (not defended: h2o
writes it itself)."""

import os
import http.client
import socket
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import need  # noqa: E402
from dmjtest import (LIST, Server, cpu_seconds, get,  # noqa: E402
                     make_cert, metrics, run_cases, sanitized, tls_context, vm_kb)
from hostile_h2 import (ACK, CONTINUATION, DATA, END_HEADERS, END_STREAM, GOAWAY,  # noqa: E402
                        HEADERS, PADDED, PING, PREFACE, PRIO, PUSH_PROMISE, RST_STREAM, SCALE,
                        SETTINGS, WINDOW_UPDATE, Attacker, continuation_flood,
                        empty_frames_flood, frame, h2_status, header_count_flood, hpack_str,
                        hpack_table_abuse, huge_hpack, ping_flood, rapid_reset, request_block,
                        reset_flood, settings_flood, stream_flood, window_update_abuse)

SANITIZED = sanitized()
# Growth of dmjd's resident memory any one attack may cause (MiB); sanitizer builds keep
# freed memory in quarantine, so they get more room.
RSS_BOUND_MB = 96 if SANITIZED else 48


def probe(srv, key):
    """A normal HTTP/1.1 request on a fresh connection; returns its status."""
    c = srv.conn(timeout=10)
    try:
        res, _ = get(c, LIST + "?limit=2", key)
        return res.status
    finally:
        c.close()


def h2_probe(port, key):
    """A well-behaved HTTP/2 request on a fresh connection: the status code, or None."""
    return h2_status(port, LIST + "?limit=1", key)


def invalid_frames(key):
    """A string of protocol errors, each on a fresh connection (returned as a list)."""
    return [
        b"\x00" * 64,  # garbage right after the preface's SETTINGS
        frame(DATA, 0, 0, b"x"),  # DATA on stream 0
        frame(HEADERS, END_HEADERS, 2, request_block("/_health")),  # even (server) stream id
        frame(SETTINGS, 0, 1),  # SETTINGS on a stream
        frame(SETTINGS, 0, 0, b"\x00\x04\xff\xff\xff\xff"),  # window over 2^31-1
        frame(SETTINGS, 0, 0, b"\x00\x05\x00\x00\x00\x01"),  # max frame size below 16384
        frame(SETTINGS, ACK, 0, b"\x00" * 6),  # ACK with a payload
        frame(PING, 0, 0, b"short"),  # PING not 8 bytes
        frame(PING, 0, 3, b"12345678"),  # PING on a stream
        frame(RST_STREAM, 0, 0, b"\x00\x00\x00\x08"),  # RST_STREAM on stream 0
        frame(RST_STREAM, 0, 7, b"\x00\x00\x00\x08"),  # RST_STREAM on an idle stream
        frame(GOAWAY, 0, 0, b"\x00"),  # truncated GOAWAY
        frame(PUSH_PROMISE, END_HEADERS, 1, b"\x00\x00\x00\x02"),  # clients may not push
        frame(CONTINUATION, END_HEADERS, 1, b"\x82"),  # CONTINUATION with no HEADERS
        frame(HEADERS, END_HEADERS | PADDED, 1, b"\xff\x82"),  # padding past the end
        frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\xff\xff\xff\xff\xff\xff\x0f"),  # bad HPACK
        frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\xbf"),  # index past the tables
        frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x82\x86\x04\x81\xff"),  # bad Huffman
        frame(HEADERS, END_HEADERS | END_STREAM | PRIO, 1,
              b"\x00\x00\x00\x01\x10" + request_block("/_health")),  # depends on itself
        frame(HEADERS, END_STREAM, 1, request_block("/_health")) +
        frame(HEADERS, END_HEADERS, 3, b""),  # another frame between HEADERS/CONTINUATION
        frame(HEADERS, END_HEADERS | END_STREAM, 1, request_block("/_health")) +
        frame(HEADERS, END_HEADERS | END_STREAM, 1, request_block("/_health")),  # reused id
        frame(HEADERS, END_HEADERS, 1, request_block("/_health")) +
        frame(DATA, END_STREAM, 1, b"x" * 70000),  # DATA over the flow-control window
        b"\x00\x40\x01\x00\x00\x00\x00\x00\x01" + b"x" * 16385,  # frame over max size
        frame(WINDOW_UPDATE, 0, 0, b"\x00\x00"),  # WINDOW_UPDATE not 4 bytes
        frame(0xfa, 0xff, 5, b"unknown type: must be ignored"),
        frame(HEADERS, END_HEADERS | END_STREAM, 1,
              b"\x82\x86" + b"\x04" + hpack_str(b"/api/\x00/x") + b"\x01" + hpack_str(b"t")),
        frame(HEADERS, END_HEADERS | END_STREAM, 1,
              b"\x82\x86" + b"\x01" + hpack_str(b"t")),  # no :path
        frame(HEADERS, END_HEADERS | END_STREAM, 1,
              request_block("/_health", None, [(b"connection", b"keep-alive")])),
        frame(HEADERS, END_HEADERS | END_STREAM, 1,
              request_block("/_health", None, [(b"content-length", b"5")])),  # no body comes
    ]


FLOODS = [rapid_reset, reset_flood, ping_flood, settings_flood, empty_frames_flood, huge_hpack,
          continuation_flood, header_count_flood, hpack_table_abuse, stream_flood,
          window_update_abuse]


def settle(pid, limit):
    """Waits until dmjd has used no CPU for 0.3 s (it has worked through what it was sent),
    or `limit` seconds; returns the highest resident size seen (KiB)."""
    peak = vm_kb(pid, "VmRSS")
    end = time.time() + limit
    last = cpu_seconds(pid)
    while time.time() < end:
        time.sleep(0.3)
        peak = max(peak, vm_kb(pid, "VmRSS"))
        now = cpu_seconds(pid)
        if now == last:
            break
        last = now
    return peak


def run_flood(srv, key, attack, figures):
    pid = srv.proc.pid
    data = attack(key)
    rss0 = vm_kb(pid, "VmRSS")
    cpu0 = cpu_seconds(pid)
    started = time.time()
    a = Attacker(srv.port)
    result = {}
    sender = threading.Thread(target=lambda: result.update(sent=a.send(data, started + 15)))
    sender.start()
    # While the attack is being sent and worked through, others are served.
    worst, probes = 0.0, 0
    while sender.is_alive() or probes == 0:
        t0 = time.time()
        status = probe(srv, key)
        worst = max(worst, time.time() - t0)
        probes += 1
        assert status == 200, "%s: probe answered %s during the attack" % (attack.__name__,
                                                                            status)
    sender.join()
    peak = settle(pid, 15)
    took = time.time() - started
    cpu1 = cpu_seconds(pid)
    h2 = h2_probe(srv.port, key)
    assert h2 == 200, "%s: HTTP/2 probe answered %s after the attack" % (attack.__name__, h2)
    closed = a.closed or a.drain_until_closed(0.5)
    a.close()
    assert srv.proc.poll() is None, "%s: dmjd exited (%s)" % (attack.__name__,
                                                              srv.proc.returncode)
    grown = (peak - rss0) / 1024.0
    figures.append("%-19s sent %5.1f/%5.1f MB %4.1fs, cpu %5.2fs, rss %+5.1f MiB, %4d probes "
                   "(slowest %3.0f ms)%s"
                   % (attack.__name__, result.get("sent", 0) / 1e6, len(data) / 1e6, took,
                      cpu1 - cpu0, grown, probes, worst * 1000,
                      ", closed by dmjd" if closed else ""))
    assert grown < RSS_BOUND_MB, "%s: dmjd grew by %.1f MiB" % (attack.__name__, grown)


def case_floods(store, tmp):
    figures = []
    failures = []
    with Server(store.dir, "--threads", "2") as srv:
        quiet0 = cpu_seconds(srv.proc.pid)
        time.sleep(1.0)
        figures.append("quiet baseline: cpu %.2fs/s, rss %.1f MiB" % (
            cpu_seconds(srv.proc.pid) - quiet0, vm_kb(srv.proc.pid, "VmRSS") / 1024.0))
        for attack in FLOODS:
            try:
                run_flood(srv, store.read_key, attack, figures)
            except AssertionError as e:
                failures.append(str(e))
            if srv.proc.poll() is not None:
                break
        figures.append("peak rss (VmHWM) %.1f MiB" % (vm_kb(srv.proc.pid, "VmHWM") / 1024.0))
        for line in figures:
            print("  " + line)
        assert not failures, failures
        assert probe(srv, store.read_key) == 200


def stop_checked(srv):
    """Stops dmjd; returns its stderr lines other than h2o's "skipping frame" notes."""
    code, err = srv.stop()
    assert code == 0, (code, err[-2000:])
    assert "Sanitizer" not in err and "runtime error" not in err, err[-4000:]
    return [line for line in err.splitlines() if not line.startswith("skipping frame (type:")]


def case_invalid_frames(store, tmp):
    srv = Server(store.dir, "--threads", "2")
    try:
        for i, data in enumerate(invalid_frames(store.read_key)):
            a = Attacker(srv.port, rcvbuf=65536)
            a.send(data, time.time() + 5)
            a.drain_until_closed(0.3)
            a.close()
            assert srv.proc.poll() is None, "invalid frame case %d: dmjd exited" % i
            status = h2_probe(srv.port, store.read_key)
            assert status == 200, "after invalid frame case %d: %s" % (i, status)
        assert probe(srv, store.read_key) == 200
        other = stop_checked(srv)
        assert not other, other
    finally:
        srv.kill()


def case_unknown_frame_noise(store, tmp):
    """Finding: h2o 2.2.5 prints "skipping frame (type:N)" on stderr for every frame of an
    unknown type (which HTTP/2 says to ignore): a client turns 9 bytes into a 25-byte log
    line. Bounded here to what a pipe holds; the server must keep serving."""
    srv = Server(store.dir, "--threads", "2")
    try:
        n = 1500
        a = Attacker(srv.port, rcvbuf=65536)
        a.send(frame(0xfa, 0, 0) * n, time.time() + 5)
        assert h2_probe(srv.port, store.read_key) == 200
        a.drain_until_closed(0.2)
        a.close()
        assert probe(srv, store.read_key) == 200
        code, err = srv.stop()
        assert code == 0, (code, err[-2000:])
        lines = err.count("skipping frame (type:250)")
        print("  %d unknown frames (%d bytes) -> %d stderr lines (%d bytes)"
              % (n, 9 * n, lines, len(err)))
        # One line per frame: every frame reached h2o's parser and was ignored (fewer means
        # the flood did not land; more, that a frame costs more than one line).
        assert lines == n, (lines, n)
    finally:
        srv.kill()


def case_rapid_reset_cut(store, tmp):
    """Regression for the rapid-reset finding: dmjd shuts such a connection down after about
    UNSENT_STREAMS (128) thrown-away answers and does no work for the streams h2o had already
    read, while clients that read their answers, with 100 streams at once, are never cut."""
    with Server(store.dir, "--threads", "2") as srv:
        a = Attacker(srv.port)
        a.send(rapid_reset(store.read_key), time.time() + 15)
        assert a.closed or a.drain_until_closed(5), "the rapid-reset connection is still open"
        a.close()
        settle(srv.proc.pid, 15)  # h2o works through what it had read before the cut
        c = srv.conn()
        m = metrics(c)
        c.close()
        served = m.get(("dmj_http_requests_total", '{endpoint="list",status="200"}'), 0)
        cut = m.get(("dmj_http_requests_total", '{endpoint="cut",status="429"}'), 0)
        print("  rapid reset: %d of %d streams served before the cut, %d answered without work"
              % (served, 30000 // SCALE, cut))
        assert 0 < served < 1000, served
        if not need.tool("h2load", "nghttp2-client"):
            return
        base = "http://127.0.0.1:%d%s" % (srv.port, LIST)
        for extra in ([], ["-w", "12", "-W", "16"]):  # and with small stream windows
            res = subprocess.run(["h2load", "-c", "2", "-m", "100", "-n", "2000", *extra, "-H",
                                  "Authorization: Bearer " + store.read_key, base + "?limit=100",
                                  base + "?limit=1000"], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, timeout=300)
            assert "status codes: 2000 2xx" in res.stdout, res.stdout[-1500:]
        c = srv.conn()
        m2 = metrics(c)
        c.close()
        cut2 = m2.get(("dmj_http_requests_total", '{endpoint="cut",status="429"}'), 0)
        assert cut2 == cut, "honest clients were cut: %d -> %d" % (cut, cut2)


def case_rapid_reset_tls(store, tmp):
    """The same cut over TLS with ALPN h2 (the production set-up): h2o counts bytes written
    above the TLS layer, so the rule holds there too."""
    pair = make_cert(tmp)
    if pair is None:
        print("  (no openssl binary: TLS case not run)")
        return
    cert, keyfile = pair
    with Server(store.dir, "--threads", "2", "--tls-cert", cert, "--tls-key", keyfile) as srv:
        raw = socket.create_connection(("127.0.0.1", srv.port), timeout=15)
        s = tls_context(cert, ["h2"]).wrap_socket(raw, server_hostname="localhost")
        assert s.selected_alpn_protocol() == "h2", s.selected_alpn_protocol()
        closed = False
        try:
            s.sendall(PREFACE + frame(SETTINGS, 0, 0) + rapid_reset(store.read_key))
            s.settimeout(5)
            while s.recv(1 << 20):
                pass
            closed = True
        except (OSError, ssl.SSLError):
            closed = True
        s.close()
        assert closed, "the rapid-reset TLS connection is still open"
        settle(srv.proc.pid, 15)
        hc = http.client.HTTPSConnection("localhost", srv.port, timeout=30,
                                         context=tls_context(cert, ["http/1.1"]))
        m = metrics(hc)
        res, _ = get(hc, LIST + "?limit=1", store.read_key)
        hc.close()
        assert res.status == 200
        served = m.get(("dmj_http_requests_total", '{endpoint="list",status="200"}'), 0)
        print("  rapid reset over TLS: %d of %d streams served before the cut"
              % (served, 30000 // SCALE))
        assert 0 < served < 1000, served


CASES = [case_invalid_frames, case_unknown_frame_noise, case_rapid_reset_cut,
         case_rapid_reset_tls, case_floods]


def main():
    return run_cases(CASES, "dmj-test-h2-", jobs=1500, teams=2)


if __name__ == "__main__":
    sys.exit(main())
