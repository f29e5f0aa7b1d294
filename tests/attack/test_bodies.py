#!/usr/bin/python3
"""Request bodies dmjd never reads: 1 MB bodies over HTTP/1.1 (Content-Length and chunked)
and HTTP/2 (DATA on 100 streams per connection) must be refused without being kept, while a
legitimate client is served."""

import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from attack_lib import (ATTACKERS, BODY, CHUNK, HEADERS, LIST, STREAMS, BodySender,  # noqa: E402
                        Dmjd, Legit, RST_STREAM, Watch, connect_many, h1_head, run_attack_cases,
                        serves_normally)


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
