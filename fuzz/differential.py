#!/usr/bin/python3
"""Compares dmj's value parsers with the reference peer's, input by input: the fuzz corpora
and regressions (what libFuzzer found interesting) and a few thousand generated edge cases.

cursor values go through DRF's decode_cursor as the peer runs it in DRF_REF_DMJ mode, the
uuid_time inputs through the peer's parse_uuid, parse_int and cursor-position parser, and
request targets through Django's QueryDict. Needs Debian's Django and ../shared (the peer);
exits 77 (skipped) without them, 1 when the peer's modules do not import.

Usage: differential.py DRIVER   (DRIVER: the built parsers_differential; DMJ_SOURCE_DIR and
DMJ_SHARED_DIR from the environment, as the test suite sets them)."""

import datetime
import os
import random
import subprocess
import sys
import tempfile
import uuid
from base64 import b64decode
from urllib import parse

SRC = os.environ.get("DMJ_SOURCE_DIR", os.path.join(os.path.dirname(__file__), ".."))
SHARED = os.environ.get("DMJ_SHARED_DIR", os.path.join(SRC, "..", "shared"))
PEER = os.path.join(SHARED, "peers", "drf_ref")
if not os.path.isdir(PEER):
    print("skipped: no reference peer at %s (DMJ_SHARED_DIR)" % PEER)
    sys.exit(77)
sys.path.insert(0, PEER)
try:
    import django
except ImportError as e:
    # Django missing is a machine without python3-django (scripts/deps.sh --test installs it):
    # skipped, except under CI. The peer's own modules failing to import is a failure below.
    print("%s: Django does not import (%s); run with Debian's python3 and python3-django"
          % ("FAIL" if os.environ.get("CI") == "true" else "skipped", e))
    sys.exit(1 if os.environ.get("CI") == "true" else 77)
try:
    from django.conf import settings

    settings.configure(DEFAULT_CHARSET="utf-8", USE_TZ=True, DATA_UPLOAD_MAX_NUMBER_FIELDS=1000)
    django.setup()
    from django.core.exceptions import TooManyFieldsSent
    from django.http import QueryDict
    from django.utils.dateparse import parse_date, parse_datetime
    from jobs.parsing import _DATETIME_RE, is_cursor_position, parse_int, parse_uuid
except ImportError as e:
    # A rename in the peer must not hide this test.
    print("FAIL: the peer's Python modules or Django's do not import (%s)" % e)
    sys.exit(1)

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
POSITION_MAX = 64  # DMJ_CURSOR_POSITION_MAX: longer positions are never valid timestamps
OFFSET_CUTOFF = 1000


def hexs(b):
    return b.hex() if b else "-"


def position_us(text):
    if not is_cursor_position(text):
        return None
    if _DATETIME_RE.match(text):
        value = parse_datetime(text)
    else:
        day = parse_date(text)
        value = datetime.datetime(day.year, day.month, day.day)
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    delta = value - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1000000 + delta.microseconds


def ref_cursor(text):
    # The peer's DataModelingJobPagination.decode_cursor, step by step.
    try:
        qs = b64decode(text.encode("ascii")).decode("ascii")
    except (TypeError, ValueError):
        return "bad"
    tokens = parse.parse_qs(qs, keep_blank_values=True)
    offset = parse_int(tokens.get("o", ["0"])[0])
    reverse = parse_int(tokens.get("r", ["0"])[0])
    position = tokens.get("p", [None])[0]
    if offset is None or offset < 0 or reverse is None:
        return "bad"
    if position is not None and (len(position) > POSITION_MAX or not is_cursor_position(position)):
        return "bad"
    pos = position.encode() if position else b""
    return "ok %d %d %d %s" % (min(offset, OFFSET_CUTOFF), 1 if reverse else 0,
                               position is not None, hexs(pos))


def ref_time(text):
    try:
        us = position_us(text)
    except (ValueError, OverflowError):
        us = None
    return "bad" if us is None else "ok %d" % us


def ref_uuid(text):
    u = parse_uuid(text)
    return "bad" if u is None else "ok " + u.hex


def ref_int(text):
    v = parse_int(text)
    if v is None:
        return "bad"
    if v > 2**63 - 1:
        return "ok %d 1" % (2**63 - 1)
    if v < -(2**63):
        return "ok %d 1" % -(2**63)
    return "ok %d 0" % v


def ref_query(data):
    # What gunicorn leaves of the target's query (tabs dropped, cut at '#'), then request.GET.
    qm = data.find(b"?")
    raw = data[qm + 1:] if qm >= 0 else b""
    raw = raw.replace(b"\t", b"").split(b"#", 1)[0]
    try:
        QueryDict(raw)
    except TooManyFieldsSent:
        return "toobig"
    # QueryDict keeps no order across keys: the same parse, in order, as QueryDict runs it.
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("iso-8859-1")
    out = ["ok"]
    for k, v in parse.parse_qsl(text, keep_blank_values=True):
        out.append(hexs(k.encode("utf-8")) + "=" + hexs(v.encode("utf-8")))
    return " ".join(out)


REFS = {"cursor": ref_cursor, "time": ref_time, "uuid": ref_uuid, "int": ref_int}


def generated(tmp):
    """Edge cases around each grammar, from a fixed seed: valid values and near misses."""
    rnd = random.Random(20240501)
    cases = {"time": [], "int": [], "uuid": []}

    def digits(n):
        return "".join(rnd.choice("0123456789") for _ in range(n))

    def num(lo, hi, widths=(1, 2)):
        return str(rnd.randint(lo, hi)).zfill(rnd.choice(widths))

    for _ in range(3000):
        s = rnd.choice([str(rnd.randint(1, 9999)).zfill(4), "0000", "9999", "0001", digits(3)])
        s += "-" + rnd.choice([num(0, 13), digits(3)]) + "-" + rnd.choice([num(0, 32), digits(3)])
        if rnd.random() < 0.85:
            s += rnd.choice("T t_") + num(0, 25) + ":" + num(0, 61)
            if rnd.random() < 0.7:
                s += ":" + num(0, 61)
                if rnd.random() < 0.6:
                    s += rnd.choice(".,:") + digits(rnd.randint(0, 14))
            if rnd.random() < 0.7:
                s += rnd.choice("Zz+-") + rnd.choice(
                    ["", num(0, 25, (2,)), num(0, 25, (1, 2, 3)) + rnd.choice(["", ":"]) +
                     num(0, 61, (1, 2)), "00:00", "23:59", "24:00", "14", "1430"])
        if rnd.random() < 0.1:
            s += rnd.choice(["\n", "\n\n", " ", "\r", "\x00"])
        if rnd.random() < 0.05:
            s = rnd.choice([" ", "\n", "+"]) + s
        cases["time"].append(s)

    spaces = " \t\n\r\x0b\x0c\x1c\x1f\xa0"
    for _ in range(3000):
        d = digits(rnd.choice([1, 2, 5, 18, 19, 20, 30, 4300, 4301]))
        if rnd.random() < 0.3:
            d = rnd.choice(["9223372036854775807", "9223372036854775808",
                            "0" * 25 + "9223372036854775808"])
        if rnd.random() < 0.3:
            k = rnd.randrange(len(d) + 1)
            d = d[:k] + rnd.choice(["_", "__", "-", "+", " "]) + d[k:]
        s = rnd.choice(["", "", "+", "-", "--", "+-"]) + d
        if rnd.random() < 0.3:
            s = "".join(rnd.choice(spaces) for _ in range(rnd.randint(0, 3))) + s
        if rnd.random() < 0.3:
            s += "".join(rnd.choice(spaces) for _ in range(rnd.randint(0, 3)))
        cases["int"].append(s)

    for _ in range(3000):
        h = uuid.UUID(int=rnd.getrandbits(128)).hex
        s = h.upper() if rnd.random() < 0.3 else h
        if rnd.random() < 0.6:
            s = str(uuid.UUID(h))
        for _ in range(rnd.randint(0, 4)):
            k = rnd.randrange(len(s) + 1)
            s = s[:k] + rnd.choice(["-", "{", "}", "urn:", "uuid:", "urn:uuid:", "ur", "n:", "uui",
                                    "d:", "g", " ", "+", "_", "\x00", "0"]) + s[k:]
        if rnd.random() < 0.2:
            s = rnd.choice(["{", "urn:uuid:", "{{", "uuid:urn:"]) + s + rnd.choice(["}", "}}", ""])
        cases["uuid"].append(s)

    files = {}
    for mode, texts in cases.items():
        d = os.path.join(tmp, mode)
        os.mkdir(d)
        files[mode] = []
        for i, s in enumerate(texts):
            path = os.path.join(d, "%05d" % i)
            with open(path, "wb") as f:
                f.write(s.encode("latin-1"))
            files[mode].append(path)
    return files


def listdir(*dirs):
    out = []
    for d in dirs:
        if os.path.isdir(d):
            out += sorted(os.path.join(d, n) for n in os.listdir(d) if not n.startswith("."))
    return out


def compare(driver, mode, paths):
    if not paths:
        return 0, 0
    got = {}
    # Batches keep the argument list well under the system limit.
    for i in range(0, len(paths), 4000):
        res = subprocess.run([driver, mode] + paths[i:i + 4000], stdout=subprocess.PIPE,
                             check=True)
        for line in res.stdout.decode().splitlines():
            path, _, what = line.partition(" ")
            got[path] = what
    bad = 0
    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        want = ref_query(data) if mode == "query" else REFS[mode](data.decode("iso-8859-1"))
        if got.get(path) != want:
            bad += 1
            if bad <= 10:
                print("DIFFERS %s %s (%r)\n  dmj:  %s\n  peer: %s" % (mode, path, data[:120],
                                                                  got.get(path), want))
    print("%-6s %5d inputs, %d differ" % (mode, len(paths), bad))
    return len(paths), bad


def main():
    driver = sys.argv[1]
    fz = os.path.join(SRC, "fuzz")

    def corpus(t):
        return listdir(os.path.join(fz, "corpus", t), os.path.join(fz, "regression", t))

    total = 0
    with tempfile.TemporaryDirectory() as tmp:
        gen = generated(tmp)
        runs = [
            ("cursor", corpus("cursor")),
            ("int", corpus("cursor") + corpus("uuid_time") + gen["int"]),
            ("time", corpus("uuid_time") + gen["time"]),
            ("uuid", corpus("uuid_time") + gen["uuid"]),
            ("query", corpus("query")),
        ]
        for mode, paths in runs:
            _, bad = compare(driver, mode, paths)
            total += bad
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
