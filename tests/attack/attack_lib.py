"""Shared machinery of the attack suite: a dmjd with short timeouts and a metrics listener, a
sampler of its memory and descriptors, a legitimate client that checks every answer, and raw
HTTP/1.1 and HTTP/2 attackers (frames built by hand, standard library only).

A legitimate request is retried on a new connection only when its connection was closed or
refused before any byte of an answer came, as HTTP clients do for idempotent requests
(RFC 9110 9.2.2): at the connection cap dmjd closes a new connection it cannot place, and
displaces idle keep-alive connections. Every answer that does come must be a 200 with the
body the request had before the attack."""

import errno
import http.client
import json
import os
import resource
import re
import selectors
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
from dmjtest import (LIST, Server, binary, cpu_seconds, first_lines, get,  # noqa: E402,F401
                     make_cert, run_cases)
from dmjtest import metrics as parse_metrics  # noqa: E402
from hostile_h2 import (DATA, END_HEADERS, END_STREAM, GOAWAY, HEADERS,  # noqa: E402,F401
                        PING, PREFACE, RST_STREAM, SETTINGS, WINDOW_UPDATE, frame, literal,
                        request_block, settings_payload)

RUNNING = "/api/environments/1/data_modeling_jobs/running/"
EVENTS = "/api/environments/1/data_modeling_jobs/events/"
RSS_BOUND_KB = 64 * 1024  # growth of dmjd's peak RSS over its baseline any attack may cause
MAX_CONNECTIONS = 256
HOLDERS = 2000  # connections of a connection-holding attack
ATTACKERS = 10  # connections of every other attack
# Only stops a hung test: every wait below ends on an event (a close, a counter) long before.
HUNG = 60
ENHANCE_YOUR_CALM, REFUSED_STREAM = 0xb, 0x7
# Request bodies dmjd never reads: under h2o's former 1 MiB entity limit, so that a buffering
# server would take them all; sent in chunks (DATA frames) of CHUNK bytes on STREAMS streams.
BODY, CHUNK, STREAMS = 1000000, 16384, 100

# Short timeouts so that the suite runs in minutes; the connection cap well below HOLDERS.
SUITE_ARGS = ["--threads", "2", "--send-timeout", "2", "--header-timeout", "2",
              "--max-connections", str(MAX_CONNECTIONS)]


def raise_nofile():
    """Raises this process's descriptor limit to its hard limit (HOLDERS sockets and more)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    got = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert got >= HOLDERS + 512, "RLIMIT_NOFILE hard limit %d is too low" % got
    return got


def run_attack_cases(cases, name):
    """Runs an attack test's cases (run_cases) on one store of 1,500 jobs in two teams, with
    as many descriptors as the attacks need; returns the exit status."""
    raise_nofile()
    return run_cases(cases, "dmj-attack-%s-" % name, jobs=1500, teams=2)


_HELP = {}


def supported(args):
    """`args` without the options this dmjd does not know (named in --help), so that the suite
    can be run against older builds to show what it catches; prints what it dropped."""
    if "text" not in _HELP:
        res = subprocess.run([binary("dmjd"), "--help"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, timeout=30)
        _HELP["text"] = res.stdout
    out, dropped, i = [], [], 0
    while i < len(args):
        a = args[i]
        takes_value = i + 1 < len(args) and not args[i + 1].startswith("--")
        if a.startswith("--") and a not in _HELP["text"]:
            dropped.append(a)
            i += 2 if takes_value else 1
            continue
        out.append(a)
        if takes_value:
            out.append(args[i + 1])
        i += 2 if takes_value else 1
    for a in sorted(set(dropped) - _HELP.setdefault("told", set())):
        print("  (this dmjd has no %s: not passed)" % a)
        _HELP["told"].add(a)
    return out


class Dmjd(Server):
    """A dmjd process with the suite's options and /metrics on a listener of its own (port 0,
    read from its `metrics on URL` line); `urls` are its API listeners, `port` the first.
    Both its pipes are drained from the start (Server's stop, kill and `with` otherwise)."""

    def __init__(self, db, *args, listeners=1, suite=True, metrics=True):
        full = (SUITE_ARGS if suite else []) + list(args)
        if metrics:
            full += ["--metrics-listen", "127.0.0.1:0"]
        if "--listen" not in full:
            full += ["--listen", "127.0.0.1:0"]
        self.proc = subprocess.Popen([binary("dmjd"), "--db", db, *supported(full)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.pid = self.proc.pid
        self.urls, self.metrics_port = [], None
        lines = first_lines(self.proc, listeners + (1 if metrics else 0), HUNG)
        for line in lines:
            m = re.fullmatch(rb"(listening|metrics) on (https?)://(\S+):(\d+)", line)
            assert m, "unexpected output from dmjd: %r" % line
            if m.group(1) == b"metrics":
                self.metrics_port = int(m.group(4))
            else:
                self.urls.append((m.group(2).decode(), m.group(3).decode(), int(m.group(4))))
        self.port = self.urls[0][2]
        self.metrics_retries = 0
        # Drain both pipes from now on: under attack h2o may write many lines to stderr, and a
        # full pipe would block dmjd.
        self.err = bytearray()
        self.drains = [threading.Thread(target=self._drain, args=(f, b), daemon=True)
                       for f, b in ((self.proc.stdout, None), (self.proc.stderr, self.err))]
        for t in self.drains:
            t.start()

    @staticmethod
    def _drain(pipe, keep):
        while True:
            try:
                chunk = os.read(pipe.fileno(), 65536)
            except (OSError, ValueError):
                return
            if not chunk:
                return
            if keep is not None and len(keep) < (1 << 20):
                keep.extend(chunk)

    def _stderr(self):
        for t in self.drains:
            t.join(10)
        return self.err.decode(errors="replace")

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            code, err = self.stop()
            if exc[0] is None and code != 0:
                raise AssertionError("dmjd exited %d: %s" % (code, err[-2000:]))

    def metrics(self):
        """/metrics from the metrics listener: {(name, labels): value}. Retried when its
        connection is closed before an answer (the listener shares the connection cap)."""
        for attempt in range(200):
            c = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=HUNG)
            try:
                return parse_metrics(c)
            except (http.client.RemoteDisconnected, ConnectionError):
                self.metrics_retries += 1
                time.sleep(0.02)
            finally:
                c.close()
        raise AssertionError("the metrics listener refused 200 times")

    def gauge(self, name, labels=""):
        return self.metrics().get((name, labels), 0)

    def wait_gauge(self, name, pred, what):
        deadline = time.time() + HUNG
        while time.time() < deadline:
            v = self.gauge(name)
            if pred(v):
                return v
            time.sleep(0.1)
        raise AssertionError("%s: %s never held (%s = %s)" % (what, name, name, v))

    def fds(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def cpu(self):
        return cpu_seconds(self.pid)

    def check_stop(self):
        """Stops dmjd: exit 0, no sanitizer report."""
        code, err = self.stop()
        assert code == 0, (code, err[-2000:])
        assert "Sanitizer" not in err and "runtime error" not in err, err[-4000:]


def status_kb(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])
    return out


class Watch(threading.Thread):
    """Samples dmjd's VmRSS, VmHWM and open descriptors every 50 ms. The baseline is its
    high-water mark when the watch starts; `over` is set as soon as RSS passes the bound, so
    that an attack on a server that buffers stops before it takes the machine's memory."""

    def __init__(self, srv, bound_kb=RSS_BOUND_KB):
        super().__init__(daemon=True)
        self.srv = srv
        s = status_kb(srv.pid)
        self.baseline = max(s["VmHWM"], s["VmRSS"])
        self.bound = bound_kb
        self.peak_rss = s["VmRSS"]
        self.peak_fds = self.base_fds = srv.fds()
        self.cpu0 = srv.cpu()
        self.over = threading.Event()
        self.done = threading.Event()
        self.start()

    def sample(self):
        try:
            s = status_kb(self.srv.pid)
            fds = self.srv.fds()
        except OSError:
            return
        if "VmRSS" not in s:  # exited: a zombie has no memory lines
            return
        self.peak_rss = max(self.peak_rss, s["VmRSS"], s["VmHWM"])
        self.peak_fds = max(self.peak_fds, fds)
        if self.peak_rss - self.baseline > self.bound:
            self.over.set()

    def run(self):
        while not self.done.wait(0.05):
            self.sample()

    def stop(self):
        self.done.set()
        self.join()
        self.sample()
        self.cpu = self.srv.cpu() - self.cpu0
        return self

    @property
    def grown_kb(self):
        return self.peak_rss - self.baseline

    def check(self, what):
        assert self.grown_kb <= self.bound, "%s: dmjd's peak RSS grew by %.1f MiB (bound %d)" % (
            what, self.grown_kb / 1024.0, self.bound // 1024)

    def figures(self):
        return "peak RSS %.1f MiB (baseline %.1f, %+.1f), peak fds %d (baseline %d), cpu %.2fs" % (
            self.peak_rss / 1024.0, self.baseline / 1024.0, self.grown_kb / 1024.0,
            self.peak_fds, self.base_fds, self.cpu)


# ---- the legitimate client ------------------------------------------------------------------

class Refused(Exception):
    """The connection closed or was refused before any byte of an answer: retried."""


STATUS_BY_INDEX = {0x88: 200, 0x89: 204, 0x8a: 206, 0x8b: 304, 0x8c: 400, 0x8d: 404, 0x8e: 500}


class H2Client:
    """A well-behaved HTTP/2 connection (prior knowledge): one request at a time, every DATA
    frame given back to the connection's window."""

    def __init__(self, port, timeout=HUNG):
        try:
            self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
            # Frames go out as written: no Nagle wait behind the peer's delayed ACK.
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0) +
                              frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1 << 30)))
        except OSError as e:
            raise Refused(str(e))
        self.buf = b""
        self.next_id = 1

    def frames(self):
        while True:
            while len(self.buf) >= 9:
                n = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) < 9 + n:
                    break
                f = (self.buf[3], self.buf[4], int.from_bytes(self.buf[5:9], "big") & 0x7fffffff,
                     self.buf[9:9 + n])
                self.buf = self.buf[9 + n:]
                yield f
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise EOFError
            self.buf += chunk

    def request(self, path, key):
        sid = self.next_id
        self.next_id += 2
        started = False
        try:
            self.sock.sendall(frame(HEADERS, END_STREAM | END_HEADERS, sid,
                                    request_block(path, key)))
            status, body = None, b""
            for ftype, flags, stream, payload in self.frames():
                if ftype == SETTINGS and not flags & 1:
                    self.sock.sendall(frame(SETTINGS, 1, 0))
                elif ftype == PING and not flags & 1:
                    self.sock.sendall(frame(PING, 1, 0, payload))
                elif ftype == GOAWAY and not started:
                    raise Refused("GOAWAY %r" % payload[4:8].hex())
                elif stream != sid:
                    continue
                elif ftype == HEADERS:
                    started = True
                    status = STATUS_BY_INDEX.get(payload[0], -1) if payload else -1
                elif ftype == DATA:
                    started = True
                    body += payload
                    if payload:
                        self.sock.sendall(frame(WINDOW_UPDATE, 0, sid, struct.pack(
                            ">I", len(payload))))
                elif ftype == RST_STREAM:
                    code = int.from_bytes(payload, "big")
                    if not started and code == REFUSED_STREAM:
                        raise Refused("RST_STREAM REFUSED_STREAM")
                    raise AssertionError("stream reset (%d)" % code)
                if ftype in (HEADERS, DATA) and flags & END_STREAM:
                    return status, body
        except (EOFError, OSError) as e:
            if started:
                raise AssertionError("connection lost mid-answer: %s" % e)
            raise Refused(str(e))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Legit(threading.Thread):
    """Keeps requesting the list and retrieve endpoints with a valid key over four kinds of
    connection in turn (HTTP/1.1 fresh and keep-alive, h2c fresh and keep-alive) until
    stopped. Records each request's latency (retries included) and every failure."""

    MODES = ("h1-fresh", "h1-keepalive", "h2-fresh", "h2-keepalive")
    MAX_RETRIES = 200

    def __init__(self, port, store, pause=0.005, modes=MODES):
        super().__init__(daemon=True)
        self.port, self.key, self.pause, self.modes = port, store.read_key, pause, modes
        job = sorted(store.served_ids(1))[0]
        self.paths = [LIST + "?limit=20", LIST + "?limit=100",
                      "/api/environments/1/data_modeling_jobs/%s/" % job]
        self.h1 = None
        self.h2 = None
        self.expected = {}
        self.latencies = []
        self.failures = []
        self.retries = 0
        self.done = threading.Event()
        for mode in self.modes:
            for path in self.paths:
                status, body = self.fetch(mode, path)
                assert status == 200, (mode, path, status, body[:200])
                self.expected[(mode, path)] = body
        self.start()

    def once(self, mode, path):
        if mode.startswith("h1"):
            if self.h1 is None or mode == "h1-fresh":
                self.h1 = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HUNG)
            try:
                self.h1.request("GET", path, headers={"Authorization": "Bearer " + self.key})
                res = self.h1.getresponse()
            except (http.client.RemoteDisconnected, ConnectionError, BrokenPipeError) as e:
                self.h1.close()
                self.h1 = None
                raise Refused(str(e))
            body = res.read()
            if mode == "h1-fresh" or res.will_close:
                self.h1.close()
                self.h1 = None
            return res.status, body
        if self.h2 is None or mode == "h2-fresh":
            self.h2 = H2Client(self.port)
        try:
            return self.h2.request(path, self.key)
        except Refused:
            self.h2.close()
            self.h2 = None
            raise
        finally:
            if mode == "h2-fresh" and self.h2 is not None:
                self.h2.close()
                self.h2 = None

    def fetch(self, mode, path):
        """(status, body), retrying on a new connection while refused."""
        for attempt in range(self.MAX_RETRIES):
            try:
                return self.once(mode, path)
            except Refused:
                # Closed before an answer: a new connection (a keep-alive one was displaced).
                self.h1 = self.h2 = None
                self.retries += 1
                time.sleep(0.02)
            except Exception:  # a broken answer: a new connection next time
                self.h1 = self.h2 = None
                raise
        raise AssertionError("refused %d times" % self.MAX_RETRIES)

    def one(self, mode, path):
        started = time.time()
        try:
            status, body = self.fetch(mode, path)
        except Exception as e:
            return self.failures.append("%s %s: %s" % (mode, path, e))
        self.latencies.append(time.time() - started)
        if status != 200 or body != self.expected[(mode, path)]:
            self.failures.append("%s %s: status %s, body %r" % (mode, path, status, body[:120]))

    def run(self):
        while not self.done.is_set():
            for mode in self.modes:
                for path in self.paths:
                    self.one(mode, path)
                    time.sleep(self.pause)

    def round_done(self):
        """Waits until the client has made one more round of requests (every mode and path)
        from now: called while an attack is in place."""
        want = len(self.latencies) + len(self.failures) + len(self.modes) * len(self.paths)
        deadline = time.time() + HUNG
        while len(self.latencies) + len(self.failures) < want and time.time() < deadline:
            time.sleep(0.05)
        assert self.is_alive() and time.time() < deadline, "the legitimate client hung"

    def stop(self):
        self.done.set()
        self.join(HUNG)
        assert not self.is_alive(), "the legitimate client hung"
        for c in (self.h1, self.h2):
            if c is not None:
                c.close()
        self.h1 = self.h2 = None
        return self

    def check(self, what):
        assert self.latencies, "%s: the legitimate client got no answer" % what
        assert not self.failures, "%s: %d legitimate requests failed: %s" % (
            what, len(self.failures), self.failures[:5])

    def figures(self):
        lat = sorted(self.latencies)
        if not lat:
            return "legit: no answers"
        return "legit: %d requests, %d retried connections, p50 %.1f ms, p99 %.1f ms, %d failed" % (
            len(lat), self.retries, lat[len(lat) // 2] * 1000,
            lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, len(self.failures))


def serves_normally(srv, store, port=None):
    """After an attack: fresh HTTP/1.1 and h2c requests answer 200 with the right bodies."""
    Legit(port or srv.port, store).stop().check("after the attack")


# ---- attackers ------------------------------------------------------------------------------

def connect_many(port, n, first=b"", rcvbuf=None, tls_ctx=None):
    """Opens n connections (blocking connects, so that the listen backlog never overflows)
    and sends `first` on each; connections refused or reset count as refused. Returns the
    open sockets."""
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(HUNG)
        try:
            s.connect(("127.0.0.1", port))
            if first:
                s.sendall(first)
        except OSError as e:
            s.close()
            # Out of local ports would shrink the attack without a word: say so.
            assert e.errno != errno.EADDRNOTAVAIL, "this machine is out of local ports"
            continue
        socks.append(s)
    return socks


def h1_head(path, key, framing):
    """An HTTP/1.1 POST's head, with the key when there is one and the body's `framing`
    header (Content-Length or Transfer-Encoding)."""
    auth = b"Authorization: Bearer " + key.encode() + b"\r\n" if key else b""
    return b"POST " + path.encode() + b" HTTP/1.1\r\nHost: t\r\n" + auth + framing + b"\r\n"


def wait_closed_count(socks, n, what):
    """Waits until dmjd has closed at least n of the sockets (read and dropped meanwhile);
    returns those still open, left open."""
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    closed = 0
    deadline = time.time() + HUNG
    while closed < n and time.time() < deadline:
        for k, _ in sel.select(0.5):
            try:
                if k.fileobj.recv(1 << 16):
                    continue
            except BlockingIOError:
                continue
            except OSError:
                pass
            sel.unregister(k.fileobj)
            k.fileobj.close()
            closed += 1
    still = [k.fileobj for k in sel.get_map().values()]
    sel.close()
    assert closed >= n, "%s: dmjd closed %d of %d connections, not %d" % (what, closed,
                                                                          len(socks), n)
    return still


def wait_all_closed(socks, what, drain=True, tick=None):
    """Waits until dmjd closed every socket (EOF or reset); data that comes is read and
    kept when `drain`; `tick(open sockets)` is called about every half second. Returns the
    GOAWAY error codes seen (HTTP/2)."""
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, bytearray())
    codes = []
    deadline = time.time() + HUNG
    open_ = len(socks)
    last_tick = 0.0
    while open_ and time.time() < deadline:
        if tick is not None and time.time() - last_tick >= 0.5:
            last_tick = time.time()
            tick([k.fileobj for k in sel.get_map().values()])
        for k, _ in sel.select(0.5):
            try:
                chunk = k.fileobj.recv(1 << 16) if drain else b""
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if chunk:
                if len(k.data) < (1 << 16):
                    k.data.extend(chunk)
                continue
            codes.extend(goaway_codes(bytes(k.data)))
            sel.unregister(k.fileobj)
            k.fileobj.close()
            open_ -= 1
    left = open_
    for k in list(sel.get_map().values()):
        k.fileobj.close()
    sel.close()
    assert left == 0, "%s: %d of %d attacking connections still open" % (what, left, len(socks))
    return codes


def goaway_codes(data):
    """Error codes of the GOAWAY frames in a server's HTTP/2 byte stream."""
    out = []
    while len(data) >= 9:
        n = int.from_bytes(data[:3], "big")
        if data[3] == GOAWAY and len(data) >= 9 + 8:
            out.append(int.from_bytes(data[13:17], "big"))
        data = data[9 + n:]
    return out


class H2Attacker:
    """A raw HTTP/2 connection that sends a stream of frames as fast as dmjd takes it while a
    thread reads (and keeps) what comes back, so that a GOAWAY or a close is seen."""

    def __init__(self, port, settings=()):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=HUNG)
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0, settings_payload(settings)))
        self.received = bytearray()
        self.closed = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        try:
            while True:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    break
                self.received.extend(chunk)
        except OSError:
            pass
        self.closed.set()

    def send(self, data, stop=None):
        """Sends `data` until it is all sent, the server closes, or `stop` is set."""
        view = memoryview(data)
        sent = 0
        try:
            while sent < len(data) and not self.closed.is_set() and \
                    not (stop is not None and stop.is_set()):
                sent += self.sock.send(view[sent:sent + 65536])
        except OSError:
            pass
        return sent

    def wait_closed(self, what):
        assert self.closed.wait(HUNG), "%s: the attacking connection is still open" % what
        return goaway_codes(bytes(self.received))

    def frames(self):
        data, out = bytes(self.received), []
        while len(data) >= 9:
            n = int.from_bytes(data[:3], "big")
            if len(data) < 9 + n:
                break
            out.append((data[3], data[4], int.from_bytes(data[5:9], "big") & 0x7fffffff,
                        data[9:9 + n]))
            data = data[9 + n:]
        return out

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def tls_client_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def client_hello_half():
    """The first half of a real TLS ClientHello."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outgoing.read()
    return hello[:len(hello) // 2]


class BodySender(H2Attacker):
    """Opens STREAMS POST streams and sends each a 1 MB body as fast as the flow-control
    windows dmjd grants allow (a server that buffers bodies grants them)."""

    def __init__(self, port, store):
        super().__init__(port)
        self.store = store

    def attack(self, stop):
        out = bytearray()
        for i in range(STREAMS):
            path, key = (LIST, self.store.read_key) if i % 2 else ("/_health", None)
            block = request_block(path, key, [(b"content-length", str(BODY).encode())], "POST")
            out += frame(HEADERS, END_HEADERS, 1 + 2 * i, block)
        self.send(bytes(out), stop)
        conn_window, stream_init = 65535, 65535
        sent = {1 + 2 * i: 0 for i in range(STREAMS)}
        granted = {sid: 0 for sid in sent}
        seen = 0
        idle_rounds = 0
        while sent and not self.closed.is_set() and not stop.is_set() and idle_rounds < 40:
            frames = self.frames()
            for ftype, flags, stream, payload in frames[seen:]:
                if ftype == SETTINGS and not flags & 1:
                    for off in range(0, len(payload) - 5, 6):
                        k, v = struct.unpack(">HI", payload[off:off + 6])
                        if k == 4:
                            stream_init = v
                elif ftype == WINDOW_UPDATE:
                    inc = int.from_bytes(payload, "big") & 0x7fffffff
                    if stream == 0:
                        conn_window += inc
                    elif stream in granted:
                        granted[stream] += inc
                elif ftype in (RST_STREAM, HEADERS) and stream in sent:
                    del sent[stream]  # answered or refused: nothing more to send on it
            seen = len(frames)
            progressed = False
            for sid in list(sent):
                window = stream_init + granted[sid] - sent[sid]
                n = min(CHUNK, window, conn_window, BODY - sent[sid])
                if n <= 0:
                    continue
                last = sent[sid] + n == BODY
                if self.send(frame(DATA, END_STREAM if last else 0, sid, b"x" * n), stop) == 0:
                    break
                sent[sid] += n
                conn_window -= n
                progressed = True
                if last:
                    del sent[sid]
            if progressed:
                idle_rounds = 0
            else:
                idle_rounds += 1
                self.closed.wait(0.05)


def current_etag(port, key, path=RUNNING):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=HUNG)
    try:
        res, body = get(c, path, key)
        assert res.status == 200, (res.status, body)
        return res.getheader("ETag")
    finally:
        c.close()


def throttled(status, body, retry_after):
    """True for PostHog's throttled answer: 429, its error body and a Retry-After."""
    if status != 429 or not retry_after or not retry_after.isdigit():
        return False
    try:
        err = json.loads(body)
    except ValueError:
        return False
    return err.get("type") == "throttled_error" and err.get("code") == "throttled"
