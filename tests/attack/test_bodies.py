#!/usr/bin/python3
"""Request bodies dmjd never reads: 1 MB bodies over HTTP/1.1 (Content-Length and chunked)
and HTTP/2 (DATA on 100 streams per connection) must be refused without being kept, while a
legitimate client is served."""

import os
import struct
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from attack_lib import (ATTACKERS, DATA, END_HEADERS, END_STREAM, HEADERS, LIST,  # noqa: E402
                        SETTINGS, WINDOW_UPDATE, Dmjd, H2Attacker, Legit, RST_STREAM, Watch,
                        connect_many, frame, literal, run_attack_cases, serves_normally)
from hostile_h2 import hpack_str  # noqa: E402

BODY = 1000000  # under h2o's former 1 MiB entity limit, so a buffering server takes it all
CHUNK = 16384
STREAMS = 100


def h1_head(path, key, framing):
    auth = b"Authorization: Bearer " + key.encode() + b"\r\n" if key else b""
    return b"POST " + path.encode() + b" HTTP/1.1\r\nHost: t\r\n" + auth + framing + b"\r\n"


def h1_bodies(srv, store, watch, legit, chunked):
    """ATTACKERS connections each send a 1 MB body; returns their first status lines."""
    if chunked:
        head = b"Transfer-Encoding: chunked\r\n"
        one = b"%x\r\n" % CHUNK + b"x" * CHUNK + b"\r\n"
        body = one * (BODY // CHUNK) + b"0\r\n\r\n"
    else:
        head = b"Content-Length: %d\r\n" % BODY
        body = b"x" * BODY
    results = []

    def attack(i):
        path, key = (LIST, store.read_key) if i % 2 else ("/_health", None)
        socks = connect_many(srv.port, 1, h1_head(path, key, head))
        if not socks:
            results.append("refused")
            return
        s = socks[0]
        view, sent = memoryview(body), 0
        try:
            while sent < len(body) and not watch.over.is_set():
                sent += s.send(view[sent:sent + 65536])
        except OSError:
            pass  # closed by dmjd part-way: an answer of its own
        answer = b""
        try:
            while b"\r\n" not in answer:
                chunk = s.recv(4096)
                if not chunk:
                    break
                answer += chunk
        except OSError:
            pass
        s.close()
        results.append(answer.split(b"\r\n")[0].decode(errors="replace") or "closed")

    threads = [threading.Thread(target=attack, args=(i,)) for i in range(ATTACKERS)]
    for t in threads:
        t.start()
    legit.round_done()
    for t in threads:
        t.join()
    return results


def check_h1(results, what):
    assert len(results) == ATTACKERS, results
    for r in results:
        # 413, or the connection closed on the body: never an answer that took the body.
        assert r == "closed" or r.startswith("HTTP/1.1 413 "), "%s: answered %r" % (what, r)
    assert any(r.startswith("HTTP/1.1 413 ") for r in results), (what, results)


def run_h1(store, chunked, what):
    with Dmjd(store.dir) as srv:
        legit = Legit(srv.port, store)
        watch = Watch(srv)
        results = h1_bodies(srv, store, watch, legit, chunked=chunked)
        watch.stop()
        legit.stop()
        print("  %s; %s; %s" % (sorted(set(results)), watch.figures(), legit.figures()))
        check_h1(results, what)
        watch.check(what)
        legit.check(what)
        serves_normally(srv, store)


def case_h1_content_length(store, tmp):
    run_h1(store, False, "Content-Length bodies")


def case_h1_chunked(store, tmp):
    run_h1(store, True, "chunked bodies")


def post_block(path, key):
    # :method POST (static 3), :scheme http (6), :path, :authority, then the key.
    block = b"\x83\x86\x04" + hpack_str(path.encode()) + b"\x01" + hpack_str(b"t")
    if key:
        block += literal(b"authorization", b"Bearer " + key.encode())
    return block + literal(b"content-length", str(BODY).encode())


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
            out += frame(HEADERS, END_HEADERS, 1 + 2 * i, post_block(path, key))
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


def case_h2_data(store, tmp):
    with Dmjd(store.dir) as srv:
        legit = Legit(srv.port, store)
        watch = Watch(srv)
        attackers = [BodySender(srv.port, store) for _ in range(ATTACKERS)]
        threads = [threading.Thread(target=a.attack, args=(watch.over,)) for a in attackers]
        for t in threads:
            t.start()
        legit.round_done()
        for t in threads:
            t.join()
        # Whatever dmjd answered by now is all it will answer: it owes nothing more.
        outcomes = {}
        for a in attackers:
            frames = a.frames()
            for ftype, flags, stream, payload in frames:
                if stream == 0 or ftype not in (HEADERS, RST_STREAM):
                    continue
                if ftype == RST_STREAM:
                    kind = "reset %d" % int.from_bytes(payload, "big")
                else:
                    kind = "answered %02x" % payload[0]
                outcomes[kind] = outcomes.get(kind, 0) + 1
            a.close()
        watch.stop()
        legit.stop()
        print("  %d streams: %s; %s; %s" % (ATTACKERS * STREAMS, outcomes, watch.figures(),
                                            legit.figures()))
        watch.check("HTTP/2 bodies")
        # Every stream refused: a reset, or an answer that is a 413 (0x8a..0x8e are the
        # statuses of the static table that would mean the body was taken).
        answered = {k: v for k, v in outcomes.items() if k.startswith("answered")}
        assert not answered, "HTTP/2 bodies: streams answered instead of refused: %s" % answered
        assert sum(outcomes.values()) >= ATTACKERS * STREAMS or \
            all(a.closed.is_set() for a in attackers), outcomes
        legit.check("HTTP/2 bodies")
        serves_normally(srv, store)


CASES = [case_h1_content_length, case_h1_chunked, case_h2_data]


def main():
    return run_attack_cases(CASES, "bodies")


if __name__ == "__main__":
    sys.exit(main())
