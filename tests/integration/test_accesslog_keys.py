#!/usr/bin/python3
"""No personal API key reaches the access log, in any spelling the API accepts.

Each spelling is sent to a dmjd with --access-log, in the combined and the JSON format, and
must authenticate (200: a spelling the API refuses would prove nothing): the Authorization
header; the query parameter; its name and its value percent-encoded; raw tabs in the name and
in the value over HTTP/2 (HTTP/1.1's parser refuses them; request frames built by hand);
repeated parameters (two real keys, the last one counts); a '#' after the key; an events/
stream. Then the log, read raw and decoded back (the log's \\xHH escapes, JSON, then tabs
dropped and percent escapes decoded, as the API reads a query), must hold no 6 consecutive
characters of any key past its first 8, and no key's first 8 followed by its 9th."""

import json
import os
import re
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dmjtest import LIST, Server, get, run_cases  # noqa: E402
from hostile_h2 import h2_status  # noqa: E402

EVENTS = LIST + "events/"


def pct(text):
    """Every character percent-encoded."""
    return "".join("%%%02X" % b for b in text.encode())


def spellings(key, other):
    """(name, protocol, path bytes, use the header) for every accepted way to send `key`."""
    tail = key[4:]
    q = [
        ("parameter", "?personal_api_key=" + key),
        ("parameter among others", "?limit=1&personal_api_key=" + key + "&x="),
        ("name percent-encoded", "?personal%5Fapi%5Fkey=" + key),
        ("name all percent-encoded", "?" + pct("personal_api_key") + "=" + key),
        ("value percent-encoded prefix", "?personal_api_key=%70hx_" + tail),
        ("value all percent-encoded", "?personal_api_key=" + pct(key)),
        ("value with an escape inside", "?personal_api_key=" + key[:10] + pct(key[10])
         + key[11:]),
        ("lower-case escapes", "?personal_api_key=" + pct(key).lower()),
        ("repeated, two real keys", "?personal_api_key=" + other + "&personal_api_key=" + key),
        ("repeated, encoded names", "?personal%5fapi_key=" + other + "&personal_api%5Fkey="
         + pct(key)),
        ("fragment after", "?personal_api_key=" + key + "#personal_api_key=x"),
    ]
    out = [("Authorization header", "h1", LIST.encode(), True),
           ("Authorization header", "h2", LIST.encode(), True)]
    for name, query in q:
        out.append((name, "h1", (LIST + query).encode(), False))
        out.append((name, "h2", (LIST + query).encode(), False))
    tabbed = [
        ("tab in the name, value encoded (the reported case)",
         "?personal_api\t_key=%70hx_" + tail),
        ("tab in the name", "?personal_api\t_key=" + key),
        ("tabs around the name", "?\tpersonal_api_key\t=" + key),
        ("tab in the value", "?personal_api_key=" + key[:6] + "\t" + key[6:]),
        ("tabs in the value's first characters", "?personal_api_key=p\th\tx\t_" + tail),
        ("tab inside an escape", "?personal_api_key=%7\t0hx_" + tail),
        ("tab in an encoded name", "?personal%5\tFapi_key=" + key),
        ("tab after the value", "?personal_api_key=" + key + "\t"),
        ("tabs, repeated", "?personal_api_key=" + other + "&\tpersonal_api_key=" + key),
    ]
    for name, query in tabbed:
        out.append((name, "h2", (LIST + query).encode(), False))
    out.append(("events/ with the key encoded", "h1",
                (EVENTS + "?personal_api_key=" + pct(key)).encode(), False))
    return out


def unescape_log(text):
    """The log's \\xHH escapes back to characters."""
    return re.sub(r"\\x([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), text)


def as_the_api_reads(text):
    return urllib.parse.unquote(text.replace("\t", ""), errors="replace")


def leaks(log_texts, key):
    """What of `key` past its first 8 characters the texts hold."""
    found = []
    for text in log_texts:
        for i in range(8, len(key) - 5):
            if key[i:i + 6] in text:
                found.append("%r at %d" % (key[i:i + 6], i))
        if key[:9] in text:
            found.append("%r (the 9th character)" % key[:9])
    return found


def events_get(srv, path):
    """Opens an events/ stream, reads its first line, closes it; returns the status."""
    c = srv.conn(timeout=10)
    try:
        c.request("GET", path.decode())
        res = c.getresponse()
        if res.status == 200:
            first = res.read(1)  # ": connected"
            assert first == b":", first
        return res.status
    finally:
        c.close()


def check_format(store, tmp, fmt):
    key, other = store.keys["read"], store.keys["write"]
    log = os.path.join(tmp, "access-%s.log" % fmt)
    cases = spellings(key, other)
    with Server(store.dir, "--threads", "2", "--access-log", log,
                "--access-log-format", fmt) as srv:
        for name, proto, path, header in cases:
            if path.startswith(EVENTS.encode()):
                status = events_get(srv, path)
            elif proto == "h2":
                status = h2_status(srv.port, path, key if header else None)
            else:
                c = srv.conn()
                res, _ = get(c, path.decode(), key if header else None)
                status = res.status
                c.close()
            assert status == 200, "%s over %s: %r did not authenticate (%r)" % (
                name, proto, path, status)
        # a Referer holding a key is not a way to authenticate, but it is logged
        status = h2_status(srv.port, LIST.encode(), key,
                           extra=[(b"referer", ("http://x/?personal%5Fapi_key=%70hx_" + key[4:])
                                   .encode())])
        assert status == 200, status
        code, err = srv.stop()
        assert code == 0, (code, err)
    with open(log, encoding="latin-1") as f:
        raw = f.read()
    lines = raw.splitlines()
    assert len(lines) >= len(cases) + 1, (len(lines), len(cases))
    texts = [raw]
    for line in lines:
        if fmt == "json":
            obj = json.loads(line)
            fields = [obj["path"], obj.get("user_agent") or ""]
        else:
            fields = [line]
        for field in fields:
            plain = unescape_log(field)
            texts += [plain, as_the_api_reads(plain)]
    bad = leaks(texts, key) + leaks(texts, other)
    assert not bad, "%s log holds key material: %s\n%s" % (fmt, bad[:5], "\n".join(
        line for line in lines if any(b.split("'")[1] in as_the_api_reads(unescape_log(line))
                                      for b in bad[:5]))[:3000])
    # the kept beginning is there: the masking cut the key, not the whole line
    assert key[:8] + "..." in raw, raw[:2000]


def case_combined(store, tmp):
    check_format(store, tmp, "combined")


def case_json(store, tmp):
    check_format(store, tmp, "json")


def main():
    return run_cases([case_combined, case_json], "dmj-test-accesslog-keys-", jobs=30, teams=2)


if __name__ == "__main__":
    sys.exit(main())
