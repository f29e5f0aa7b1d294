#!/usr/bin/python3
"""Connection-holding attacks, 2,000 connections each against a dmjd capped at 256:
HTTP/2 clients with a zero flow-control window, HTTP/1.1 slowloris, pipelined requests whose
answers are never read, idle cleartext connections and unfinished TLS handshakes. Every held
connection must be closed by dmjd, its descriptors must stay within the cap, its memory
within the bound, and a legitimate client must be served throughout."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from attack_lib import (END_HEADERS, END_STREAM, HEADERS, HOLDERS, LIST,  # noqa: E402
                        MAX_CONNECTIONS, PREFACE, SETTINGS, Dmjd, Legit, Watch, client_hello_half,
                        connect_many, frame, make_cert, request_block, run_attack_cases,
                        serves_normally, settings_payload, wait_all_closed, wait_closed_count)

# Descriptors dmjd may hold beyond its baseline: the cap, and a margin for connections being
# accepted and closed at once by each worker.
FD_MARGIN = 64


def hold(store, what, attack, args=(), listeners=1, legit_port=None, drain=True, tick=None,
         server_side=False):
    """Runs `attack(srv)` (opens the held connections, returns them) while a legitimate
    client is served, then waits until dmjd has closed them all: seen by the attacker (EOF)
    or, for connections whose close cannot reach a client that never reads
    (`server_side`), by dmjd's open-connection gauge."""
    with Dmjd(store.dir, *args, listeners=listeners) as srv:
        port = legit_port(srv) if legit_port else srv.port
        legit = Legit(port, store)
        watch = Watch(srv)
        socks = attack(srv)
        opened = len(socks)
        try:
            legit.round_done()
            if server_side:
                # The gauge counts the scrape's own connection, and the legitimate client
                # holds at most one at a time.
                srv.wait_gauge("dmj_http_open_connections", lambda v: v <= 2, what)
            else:
                wait_all_closed(socks, what, drain=drain, tick=tick)
        finally:
            for s in socks:
                s.close()
        legit.stop()
        watch.stop()
        print("  %s: %d connections opened, all closed by dmjd; %s; %s; metrics scrapes "
              "refused %d" % (what, opened, watch.figures(), legit.figures(),
                              srv.metrics_retries))
        watch.check(what)
        assert watch.peak_fds <= watch.base_fds + MAX_CONNECTIONS + FD_MARGIN, \
            "%s: dmjd held %d descriptors (cap %d)" % (what, watch.peak_fds, MAX_CONNECTIONS)
        legit.check(what)
        srv.wait_gauge("dmj_http_open_connections", lambda v: v <= 1, what)  # the scrape
        serves_normally(srv, store, port)


def case_zero_window(store, tmp):
    def attack(srv):
        socks = []
        for i in range(HOLDERS):
            path = "/_health" if i % 2 else LIST + "?limit=100&n=%d" % i
            socks += connect_many(srv.port, 1, PREFACE + frame(
                SETTINGS, 0, 0, settings_payload([(4, 0)])) + frame(
                HEADERS, END_STREAM | END_HEADERS, 1, request_block(path, store.read_key)))
        return socks
    hold(store, "zero-window HTTP/2", attack)


def case_slowloris(store, tmp):
    start = ("GET %s?limit=10 HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\nX-Slow: "
             % (LIST, store.read_key)).encode()

    def dribble(socks):
        for s in socks:
            try:
                s.send(b"a")
            except OSError:
                pass  # closed by dmjd: the wait sees it

    hold(store, "slowloris", lambda srv: connect_many(srv.port, HOLDERS, start), tick=dribble)


def case_unread_answers(store, tmp):
    one = ("GET %s?limit=100 HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n\r\n"
           % (LIST, store.read_key)).encode()
    # Pipelined requests on a small receive window that is never read: the answers stall.
    hold(store, "unread answers",
         lambda srv: connect_many(srv.port, HOLDERS, one * 40, rcvbuf=4096), server_side=True)


def case_idle_cleartext(store, tmp):
    health = b"GET /_health HTTP/1.1\r\nHost: t\r\n\r\n"

    def attack(srv):
        # Half never send a byte; half are keep-alive connections left idle after an answer.
        return connect_many(srv.port, HOLDERS // 2) + \
            connect_many(srv.port, HOLDERS // 2, health)
    hold(store, "idle cleartext", attack)


def case_idle_tls(store, tmp):
    pair = make_cert(tmp)
    assert pair is not None, "openssl is needed to make a certificate"
    cert, key = pair
    half = client_hello_half()

    def attack(srv):
        port = srv.urls[0][2]
        # Half connect and say nothing; half stop in the middle of their ClientHello.
        return connect_many(port, HOLDERS // 2) + connect_many(port, HOLDERS // 2, half)
    hold(store, "unfinished TLS handshakes", attack,
         args=("--tls-cert", cert, "--tls-key", key, "--listen", "127.0.0.1:0",
               "--listen", "http://127.0.0.1:0"), listeners=2,
         legit_port=lambda srv: srv.urls[1][2])


def case_displacement(store, tmp):
    """With timeouts far beyond the test, only displacement can make room: once dmjd holds
    its cap of zero-window connections, a legitimate client is served while they are held,
    each of its new connections displacing a held one."""
    with Dmjd(store.dir, "--send-timeout", "600", "--header-timeout", "600") as srv:
        what = "displacement"
        watch = Watch(srv)
        socks = []
        for i in range(HOLDERS):
            socks += connect_many(srv.port, 1, PREFACE + frame(
                SETTINGS, 0, 0, settings_payload([(4, 0)])) + frame(
                HEADERS, END_STREAM | END_HEADERS, 1, request_block("/_health")))
        try:
            # Everything past the cap is refused at once; the rest is held.
            held = wait_closed_count(socks, len(socks) - MAX_CONNECTIONS, what)
            socks = held
            legit = Legit(srv.port, store)
            legit.round_done()
            legit.stop()
            # The legitimate connections took the places of held ones.
            held = wait_closed_count(socks, 1, what)
            displaced = len(socks) - len(held)
            socks = held
        finally:
            for s in socks:
                s.close()
        watch.stop()
        print("  %s: %d held when the client came, %d displaced by it; %s; %s" % (
            what, len(socks) + displaced, displaced, watch.figures(), legit.figures()))
        watch.check(what)
        assert watch.peak_fds <= watch.base_fds + MAX_CONNECTIONS + FD_MARGIN, \
            "%s: dmjd held %d descriptors (cap %d)" % (what, watch.peak_fds, MAX_CONNECTIONS)
        legit.check(what)
        srv.wait_gauge("dmj_http_open_connections", lambda v: v <= 1, what)
        serves_normally(srv, store)


CASES = [case_displacement, case_zero_window, case_slowloris, case_unread_answers, case_idle_cleartext,
         case_idle_tls]


def main():
    return run_attack_cases(CASES, "hold")


if __name__ == "__main__":
    sys.exit(main())
