"""HTTP/2 by hand for the tests that speak it raw (standard library only): frames, HPACK
literals, a request's header block, requests cancelled as soon as sent, one GET's status, an
attacking connection that reads only when told, and the floods that test_hostile_http2.py and
the attack suite send."""

import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dmjtest import LIST, sanitized  # noqa: E402

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIO = 0x1, 0x1, 0x4, 0x8, 0x20

SCALE = 4 if sanitized() else 1  # fewer frames per flood under ASan (it is ~4x slower)


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


# The methods of HPACK's static table (RFC 7541 appendix A): :method GET (2) and POST (3).
STATIC_METHODS = {"GET": b"\x82", "POST": b"\x83"}


def request_block(path, key=None, extra=(), method="GET"):
    """A request's header block: `method`, `path` (str, or bytes sent byte for byte), the key
    as a Bearer authorization, and any other (name, value) headers."""
    if isinstance(path, str):
        path = path.encode()
    # A method the static table lacks is a literal with the indexed name :method (2).
    block = STATIC_METHODS.get(method) or b"\x02" + hpack_str(method.encode())
    # :scheme http (static 6), then :path and :authority as literals.
    block += b"\x86" + b"\x04" + hpack_str(path) + b"\x01" + hpack_str(b"t")
    if key is not None:
        block += literal(b"authorization", b"Bearer " + key.encode())
    for name, value in extra:
        block += literal(name, value)
    return block


def settings_payload(pairs):
    return b"".join(struct.pack(">HI", k, v) for k, v in pairs)


def reset_pairs(blocks):
    """Each header block as a request on a stream of its own, cancelled at once: HEADERS
    (END_STREAM, END_HEADERS), then RST_STREAM(CANCEL)."""
    out = bytearray()
    for i, block in enumerate(blocks):
        sid = 1 + 2 * i
        out += frame(HEADERS, END_STREAM | END_HEADERS, sid, block)
        out += frame(RST_STREAM, 0, sid, struct.pack(">I", 8))
    return bytes(out)


def continued_headers(stream, flags, block):
    """A header block too large for one frame: HEADERS with `flags`, then CONTINUATION frames
    of 16 KB, the last with END_HEADERS."""
    chunks = [block[i:i + 16384] for i in range(0, len(block), 16384)]
    out = frame(HEADERS, flags, stream, chunks[0])
    for i, c in enumerate(chunks[1:]):
        out += frame(CONTINUATION, END_HEADERS if i == len(chunks) - 2 else 0, stream, c)
    return out


def h2_status(port, path, key=None, extra=()):
    """One GET over cleartext HTTP/2 (prior knowledge) on a fresh connection, with
    request_block's headers: the status, -1 for one that is not indexed, None when no answer
    came."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(PREFACE + frame(SETTINGS, 0, 0) +
                  frame(HEADERS, END_STREAM | END_HEADERS, 1, request_block(path, key, extra)))
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
                    table = {0x88: 200, 0x89: 204, 0x8a: 206, 0x8b: 304, 0x8c: 400, 0x8d: 404,
                             0x8e: 500}
                    return table.get(payload[0], -1)
                if ftype == GOAWAY:
                    return None
        return None
    finally:
        s.close()


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


# ---- floods: each builds the bytes one connection sends ------------------------------------

def rapid_reset(key):
    """HEADERS then RST_STREAM(CANCEL), thousands of streams on one connection."""
    # A query of its own per stream: no answer comes from the response cache.
    return reset_pairs(request_block(LIST + "?limit=100&n=%d" % i, key)
                       for i in range(30000 // SCALE))


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
    return continued_headers(1, END_STREAM, block)


CONTINUATION_FRAMES = 4000  # of 16 KB each: 64 MB offered


def continuation_flood(key, fields=None, frames=CONTINUATION_FRAMES // SCALE):
    """HEADERS without END_HEADERS, then CONTINUATION frames that never end (CVE-2024-27316
    class): a server that buffers them all grows without bound. Each frame carries `fields`
    (one 16 KB header by default)."""
    if fields is None:
        fields = literal(b"x-pad", b"b" * 16000)
    head = frame(HEADERS, END_STREAM, 1, request_block(LIST, key))
    return head + frame(CONTINUATION, 0, 1, fields) * frames


def header_count_flood(key):
    """Many small headers in one block (each an allocation): 100k of them."""
    extra = [(b"x-h", b"1")] * (100000 // SCALE)
    return continued_headers(1, END_STREAM, request_block(LIST, key, extra))


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
