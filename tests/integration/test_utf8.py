#!/usr/bin/env python3
"""Strict UTF-8 (RFC 3629) at import: overlong forms, surrogates (raw or as \\u escapes),
code points past U+10FFFF and truncated sequences are refused as `FILE:LINE: field: invalid
UTF-8` with nothing stored, in NDJSON, JSON arrays, fixtures and --pg-copy input, or skipped
with --skip-invalid; valid 4-byte characters and escaped pairs are stored and served
byte-exact. Python 3 standard library only."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dmjtest import Checks, Server, dmj, fixture_keys  # noqa: E402

T = Checks("dmj-test-utf8-")
check, path, write = T.check, T.path, T.write


def job_id(n):
    return "6e8d0d6c-1111-4111-8111-%012d" % n


def job_line(n, error_json):
    """One NDJSON job whose "error" is the raw JSON text `error_json` (bytes, quotes included)."""
    return (b'{"id":"' + job_id(n).encode() + b'","team_id":1,"status":"Failed",'
            b'"created_at":"2024-05-01T10:00:00Z","error":' + error_json + b'}')


def copy_text(line):
    """A JSON line as PostgreSQL's COPY text writes it: backslashes doubled, and (to take the
    decoder's escapes too) every byte >= 0x80 spelled \\xHH."""
    out = bytearray()
    for b in line.replace(b"\\", b"\\\\"):
        out += b"\\x%02x" % b if b >= 0x80 else bytes([b])
    return bytes(out)


def exported(db):
    p = dmj("export", "--db", db)
    # an invalid byte shows as U+FFFD rather than stopping the test
    return [json.loads(x.decode("utf-8", "replace")) for x in p.stdout.splitlines() if x.strip()]


# The three cases of the finding, then the rest of RFC 3629's exclusions.
BAD = [
    ("overlong C0 AF", b'"a\xc0\xafb"'),
    ("encoded surrogate ED A0 80", b'"a\xed\xa0\x80b"'),
    ("escaped lone low surrogate \\udc00", b'"a\\udc00b"'),
    ("escaped high surrogate \\ud800 then a letter", b'"a\\ud800b"'),
    ("escaped high surrogate then a non-surrogate escape", b'"\\ud800\\u0041"'),
    ("two escaped high surrogates", b'"\\ud800\\ud800"'),
    ("escaped pair reversed", b'"\\ude00\\ud83d"'),
    ("overlong E0 80 AF", b'"\xe0\x80\xaf"'),
    ("overlong F0 80 80 AF", b'"\xf0\x80\x80\xaf"'),
    ("past U+10FFFF: F4 90 80 80", b'"\xf4\x90\x80\x80"'),
    ("F5 lead", b'"\xf5\x80\x80\x80"'),
    ("truncated E2 82", b'"x\xe2\x82"'),
    ("lone continuation 80", b'"\x80"'),
]

GOOD = [
    ("escaped pair \\ud83d\\ude00", b'"\\ud83d\\ude00"', "\U0001F600".encode()),
    ("raw 4-byte F0 9F 92 A5", b'"\xf0\x9f\x92\xa5"', b"\xf0\x9f\x92\xa5"),
    ("U+10FFFF raw", b'"\xf4\x8f\xbf\xbf"', b"\xf4\x8f\xbf\xbf"),
    ("U+10FFFF escaped", b'"\\udbff\\udfff"', b"\xf4\x8f\xbf\xbf"),
    ("U+D7FF and U+E000 around the surrogates", b'"\xed\x9f\xbf\xee\x80\x80"',
     b"\xed\x9f\xbf\xee\x80\x80"),
    ("U+FFFF", b'"\xef\xbf\xbf"', b"\xef\xbf\xbf"),
]


def seeded(name):
    """A store holding one good job, so that 'nothing stored' is 'the store unchanged'."""
    db = path(name)
    dmj("import", "--db", db, write(name + ".seed", job_line(1, b'"seed"') + b"\n"))
    return db


def test_refused():
    seed = [{"id": job_id(1), "error": "seed"}]
    for i, (what, text) in enumerate(BAD):
        lines = [job_line(10, b'"fine"'), job_line(11, text), job_line(12, b'"fine"')]
        forms = [
            ("ndjson", b"\n".join(lines) + b"\n", []),
            ("pg-copy", b"\n".join(copy_text(x) for x in lines) + b"\n", ["--pg-copy"]),
            # a JSON array over three lines goes through yajl, not the line scanner
            ("array", b"[" + b",\n".join(lines) + b"]\n", []),
        ]
        for form, data, opts in forms:
            db = seeded("bad%d-%s" % (i, form))
            f = write("bad%d-%s.in" % (i, form), data)
            p = dmj("import", "--db", db, *opts, f, expect=None)
            err = p.stderr.decode(errors="replace")
            check(p.returncode != 0, "%s (%s): refused, exit %d" % (what, form, p.returncode))
            check(("%s:2: error: invalid UTF-8\n" % f) in err,
                  "%s (%s): message FILE:2: error: invalid UTF-8, got %r" % (what, form, err))
            got = [{"id": r["id"], "error": r["error"]} for r in exported(db)]
            check(got == seed, "%s (%s): nothing stored" % (what, form))


def test_skip_invalid():
    lines = [job_line(20, b'"fine"'), job_line(21, b'"\xed\xa0\x80"'),
             job_line(22, b'"\\udc00"'), job_line(23, b'"fine"')]
    for form, data, opts in [("ndjson", b"\n".join(lines) + b"\n", []),
                             ("pg-copy", b"\n".join(copy_text(x) for x in lines) + b"\n",
                              ["--pg-copy"])]:
        db = path("skip-" + form)
        f = write("skip-%s.in" % form, data)
        p = dmj("import", "--db", db, "--skip-invalid", *opts, f)
        err = p.stderr.decode(errors="replace")
        check(("%s:2: error: invalid UTF-8" % f) in err and ("%s:3: error: invalid UTF-8" % f)
              in err, "--skip-invalid (%s): both bad lines reported: %r" % (form, err))
        ids = sorted(r["id"] for r in exported(db))
        check(ids == [job_id(20), job_id(23)], "--skip-invalid (%s): the good ones stored" % form)


def test_other_fields():
    # a known string field of an identity, a list element, a key, an ignored value
    fx = (b'{"organizations":[{"id":"4ab6e06e-9625-47ed-89ab-b3f56382b938",'
          b'"name":"\xe0\x80\xaf"}]}\n')
    f = write("fx-bad.json", fx)
    p = dmj("import", "--db", path("fx"), f, expect=None)
    check(p.returncode != 0 and ("%s:1: name: invalid UTF-8" % f).encode() in p.stderr,
          "fixtures: an organization's name refused: %r" % p.stderr)
    key = (b'{"kind":"personal_api_key","id":"k1","user_id":1,"value":"phx_x",'
           b'"scopes":["a","\\ud800"]}\n')
    f = write("key-bad.ndjson", key)
    p = dmj("import", "--db", path("key"), f, expect=None)
    check(p.returncode != 0 and ("%s:1: scopes: invalid UTF-8" % f).encode() in p.stderr,
          "a key's scope refused: %r" % p.stderr)
    for name, line in [("json-key", job_line(30, b'"x"')[:-1] + b',"\xc0\xaf":1}'),
                       ("ignored", job_line(31, b'"x"')[:-1] + b',"note":"\\udc00"}')]:
        f = write(name + ".ndjson", line + b"\n")
        p = dmj("import", "--db", path(name), f, expect=None)
        check(p.returncode != 0 and ("%s:1: json: invalid UTF-8" % f).encode() in p.stderr,
              "%s: refused as json: %r" % (name, p.stderr))


def serve_get(db, key, url):
    srv = Server(db)
    try:
        c = srv.conn(timeout=10)
        c.request("GET", url, headers={"Authorization": "Bearer " + key})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        srv.stop(timeout=20)


def test_valid_kept():
    dmj("generate", "--jobs", "1", "--teams", "1", "--out", path("gen.ndjson"),
        "--fixtures-out", path("fx.json"))
    key = fixture_keys(path("fx.json"))["read"]
    lines = [job_line(40 + i, text) for i, (_, text, _) in enumerate(GOOD)]
    for form, data, opts in [("ndjson", b"\n".join(lines) + b"\n", []),
                             ("pg-copy", b"\n".join(copy_text(x) for x in lines) + b"\n",
                              ["--pg-copy"])]:
        db = path("good-" + form)
        dmj("import", "--db", db, path("fx.json"))
        dmj("import", "--db", db, *opts, write("good-%s.in" % form, data))
        raw = {json.loads(x.decode("utf-8", "replace"))["id"].encode(): x
               for x in dmj("export", "--db", db).stdout.splitlines()}
        for i, (what, _, want) in enumerate(GOOD):
            line = raw.get(job_id(40 + i).encode(), b"")
            check(b'"error":"' + want + b'"' in line,
                  "%s (%s): exported byte-exact: %r" % (what, form, line))
            status, body = serve_get(db, key,
                                     "/api/environments/1/data_modeling_jobs/%s/" % job_id(40 + i))
            check(status == 200 and b'"error":"' + want + b'"' in body,
                  "%s (%s): served byte-exact: %d %r" % (what, form, status, body[:300]))
            check(status == 200 and json.loads(body)["error"] == want.decode(),
                  "%s (%s): the served body parses" % (what, form))
        dmj("verify", "--db", db)


def main():
    return T.main([test_refused, test_skip_invalid, test_other_fields, test_valid_kept])


if __name__ == "__main__":
    sys.exit(main())
