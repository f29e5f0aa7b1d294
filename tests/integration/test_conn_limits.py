#!/usr/bin/python3
"""--max-connections-per-address: one client address holds at most N connections (counted
across the workers); one more is closed at once, other addresses are served, and a closed
connection gives its place back."""

import http.client
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dmjtest import Server, run_cases  # noqa: E402

LONG = 30  # only stops a broken server from hanging the test


def health(port, source="127.0.0.1"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=LONG, source_address=(source, 0))
    try:
        c.request("GET", "/_health")
        return c.getresponse().status
    except (ConnectionError, http.client.HTTPException):
        return None
    finally:
        c.close()


def closed_at_once(port):
    """True when the server closes a new connection from 127.0.0.1 without an answer."""
    s = socket.create_connection(("127.0.0.1", port), timeout=LONG)
    try:
        s.sendall(b"GET /_health HTTP/1.1\r\nHost: t\r\n\r\n")
        return s.recv(1024) == b""
    except ConnectionError:
        return True
    finally:
        s.close()


def case_per_address_bound(store, tmp):
    with Server(store.dir, "--threads", "2", "--max-connections-per-address", "3") as srv:
        held = [socket.create_connection(("127.0.0.1", srv.port), timeout=LONG) for _ in range(3)]
        # each held connection is accepted (an answer proves it) and stays open
        for s in held:
            s.sendall(b"GET /_health HTTP/1.1\r\nHost: t\r\n\r\n")
            assert s.recv(1024).startswith(b"HTTP/1.1 200"), "a held connection was refused"
        assert closed_at_once(srv.port), "a fourth connection from one address was served"
        assert health(srv.port, source="127.0.0.2") == 200, "another address was refused"
        held.pop().close()
        deadline = time.time() + LONG
        while health(srv.port) != 200:
            assert time.time() < deadline, "a closed connection never gave its place back"
            time.sleep(0.05)
        for s in held:
            s.close()


def case_off_by_default(store, tmp):
    with Server(store.dir, "--threads", "1") as srv:
        held = [socket.create_connection(("127.0.0.1", srv.port), timeout=LONG)
                for _ in range(20)]
        assert health(srv.port) == 200
        for s in held:
            s.close()


CASES = [case_per_address_bound, case_off_by_default]

if __name__ == "__main__":
    sys.exit(run_cases(CASES, "dmj-conn-limits-"))
