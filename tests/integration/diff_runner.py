"""dmjd and the reference peer side by side, for the differential tests: a request (Case)
sent to both by a Runner that compares status, body and headers and follows cursor walks,
the points where the documented rule wins over the peer (KNOWN_SPEC_DIFFERENCES), and the
report of the mismatches. Python 3 standard library only."""

import concurrent.futures
import difflib
import json
import os
import sys
import threading
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diff_cases as dc  # noqa: E402

LABELS = ["read", "write", "star", "wrong_scope", "empty_scopes", "null_scopes", "team1_only",
          "org1_only", "bob_read", "carol_read", "dave_read", "erin_read"]
PREFIXES = ("environments", "projects")
MAX_PRINTED = 40


def _www_authenticate(case, peer, dmj):
    """docs/api.md, the checks: "Every 401 carries WWW-Authenticate: Bearer". The peer's error
    handler (jobs/errors.py, drf-exceptions-hog style) adds no such header."""
    if dmj.status == 401 and dmj.headers.get("www-authenticate") != "Bearer":
        return "401 without 'WWW-Authenticate: Bearer' (docs/api.md)"
    return None


def _allow_on_unmatched(case, peer, dmj):
    """API responses carry 'Allow: GET, HEAD, OPTIONS' (docs/api.md). On paths that
    match no route the peer's NotFoundView answers 'Allow: OPTIONS' (its own methods): the
    documentation does not say what an unmatched path carries, so dmjd may send either or none."""
    return None


def _huge_limit_unbounded(case, peer, dmj):
    """docs/api.md: `limit` is an integer, clamped only by the configured maximum
    (0 = none). With no maximum and a limit past 2**63, the peer fails in SQLite (Python int
    too large for an INTEGER: 500); the documented answer is the whole list on one page."""
    body = dmj.json()
    if dmj.status != 200 or not isinstance(body, dict):
        return "expected 200 with every job of the team, got %d" % dmj.status
    if body.get("next") is not None or len(body.get("results", [])) != case.expect_rows:
        return "expected all %d jobs and no next link, got %d rows, next %r" % (
            case.expect_rows, len(body.get("results", [])), body.get("next"))
    return None


# Where the peer and docs/api.md disagree (the documented rule wins). Each entry: a name, when it
# applies (to a case and the two responses), and the check dmjd's answer must pass instead
# of being compared with the peer's on that point.
KNOWN_SPEC_DIFFERENCES = [
    {"name": "huge-limit-without-maximum", "part": "response",
     "applies": lambda case, peer, dmj: peer.status == 500 and case.expect_rows is not None,
     "check": _huge_limit_unbounded},
    {"name": "www-authenticate-on-401", "part": "header:www-authenticate",
     "applies": lambda case, peer, dmj: peer.status == 401, "check": _www_authenticate},
    {"name": "allow-on-unmatched-paths", "part": "header:allow",
     "applies": lambda case, peer, dmj: peer.headers.get("allow") != "GET, HEAD, OPTIONS",
     "check": _allow_on_unmatched},
]


class Case(object):
    def __init__(self, name, target, headers=None, method="GET"):
        self.name = name
        self.method = method
        self.target = target
        self.headers = dict(headers or {})
        self.expect_rows = None  # set where a known spec difference needs the row count

    def describe(self):
        hdrs = "".join("\n      %s: %s" % kv for kv in self.headers.items())
        return "%s %s%s" % (self.method, self.target, hdrs)


class Mismatch(Exception):
    pass


class Runner(object):
    def __init__(self, peer_port, dmj_port):
        self.peer_port = peer_port
        self.dmj_port = dmj_port
        self.local = threading.local()
        self.lock = threading.Lock()
        self.mismatches = []
        self.compared = 0
        self.spec_checked = {}
        self.statuses = {}
        self.first_dead = None  # the first case dmjd gave no answer to
        # DMJ_DIFF_DUMP=FILE: every case with the peer's answer, to review what is covered.
        dump = os.environ.get("DMJ_DIFF_DUMP")
        self.dump = open(dump, "a", encoding="utf-8") if dump else None

    def clients(self):
        if not hasattr(self.local, "peer"):
            self.local.peer = dc.Client(self.peer_port)
            self.local.dmj = dc.Client(self.dmj_port)
        return self.local.peer, self.local.dmj

    def fail(self, case, peer, dmj, what):
        with self.lock:
            self.mismatches.append((case, peer, dmj, what))

    def compare(self, case):
        """Sends the case to both; records any mismatch; returns (peer, dmj) responses."""
        peer_c, dmj_c = self.clients()
        peer = peer_c.request(case.method, case.target, case.headers)
        try:
            dmj = dmj_c.request(case.method, case.target, case.headers)
        except Exception as e:  # a dmjd crash or hang is a mismatch, not a test error
            dmj = dc.Response(0, {}, ("no answer: %r" % e).encode())
            with self.lock:
                if self.first_dead is None:
                    self.first_dead = case
        with self.lock:
            self.compared += 1
            self.statuses[peer.status] = self.statuses.get(peer.status, 0) + 1
            if self.dump:
                self.dump.write("%s\n  %s\n  -> %d %s\n"
                                % (case.name, case.describe(), peer.status,
                                   peer.body[:200].decode("utf-8", "replace")))
        problems = []
        known = next((k for k in KNOWN_SPEC_DIFFERENCES
                      if k["part"] == "response" and k["applies"](case, peer, dmj)), None)
        if known is not None:
            with self.lock:
                self.spec_checked[known["name"]] = self.spec_checked.get(known["name"], 0) + 1
            err = known["check"](case, peer, dmj)
            if err:
                self.fail(case, peer, dmj, "%s: %s" % (known["name"], err))
            return peer, dmj
        if peer.status != dmj.status:
            problems.append("status %d (peer) != %d (dmjd)" % (peer.status, dmj.status))
        if case.method == "HEAD":
            if dmj.body:
                problems.append("HEAD answered with a body of %d bytes" % len(dmj.body))
        else:
            # The bytes, with only each server's own host and port replaced: key order,
            # separators, escapes and number spelling are all DRF's (docs/api.md).
            pb = host_free(peer.body, self.peer_port)
            db = host_free(dmj.body, self.dmj_port)
            if pb != db:
                pj, dj = peer.json(), dmj.json()
                if pj is None or dj is None:
                    problems.append("bodies differ (not both JSON):\n  peer: %r\n  dmjd: %r"
                                    % (pb[:300], db[:300]))
                elif dc.normalise_links(pj) != dc.normalise_links(dj):
                    problems.append("JSON differs:\n" + json_diff(dc.normalise_links(pj),
                                                                  dc.normalise_links(dj)))
                else:
                    problems.append("bodies differ in bytes, equal as JSON:\n"
                                    + bytes_diff(pb, db))
        problems += self.compare_headers(case, peer, dmj)
        if problems:
            self.fail(case, peer, dmj, "\n".join(problems))
        return peer, dmj

    def compare_headers(self, case, peer, dmj):
        out = []
        special = {}
        for known in KNOWN_SPEC_DIFFERENCES:
            if known["applies"](case, peer, dmj):
                special[known["part"]] = known
        for name in ("content-type", "allow", "www-authenticate"):
            known = special.get("header:" + name)
            if known is not None:
                err = known["check"](case, peer, dmj)
                with self.lock:
                    self.spec_checked[known["name"]] = self.spec_checked.get(known["name"], 0) + 1
                if err:
                    out.append("%s: %s" % (known["name"], err))
                continue
            p = peer.headers.get(name)
            d = dmj.headers.get(name)
            if p != d:
                out.append("header %s: %r (peer) != %r (dmjd)" % (name, p, d))
        return out

    def walk(self, name, start_target, headers, limit_pages, expected_ids=None):
        """Follows `next` from start_target to the end, then `previous` back to the start,
        comparing every page; checks the forward walk against expected_ids when given."""
        seen = []
        target = start_target
        last = None
        for step in range(limit_pages):
            case = Case("%s fwd %d" % (name, step), target, headers)
            peer, dmj = self.compare(case)
            pj = peer.json()
            if peer.status != 200 or not isinstance(pj, dict):
                self.fail(case, peer, dmj, "walk stopped: the peer answered %d" % peer.status)
                return
            seen += [r["id"] for r in pj["results"]]
            last = target
            if pj["next"] is None:
                break
            target = dc.link_path(pj["next"])
        else:
            last = None
        if expected_ids is not None and seen != expected_ids:
            extra = len(seen) - len(set(seen))
            self.fail(Case(name + " coverage", start_target, headers), dc.Response(200, {}, b""),
                      dc.Response(200, {}, b""),
                      "forward walk saw %d rows (%d repeated), expected %d in list order"
                      % (len(seen), extra, len(expected_ids)))
        target = last
        for step in range(limit_pages):
            if target is None:
                break
            case = Case("%s back %d" % (name, step), target, headers)
            peer, dmj = self.compare(case)
            pj = peer.json()
            if peer.status != 200 or not isinstance(pj, dict) or pj["previous"] is None:
                break
            target = dc.link_path(pj["previous"])


def peer_dirs():
    """(bin_dir, shared) of a differential test, which is skipped (exit 77) without the
    reference peer or the Python that runs it."""
    bin_dir, _source, shared = dc.env_dirs()
    if shared is None or not os.path.isdir(os.path.join(shared, "peers", "drf_ref")):
        dc.skip("DMJ_SHARED_DIR has no peers/drf_ref (the reference peer this test compares with)")
    if not os.access(dc.DJANGO_PYTHON, os.X_OK):
        dc.skip("%s (Debian's python3 with python3-django) is missing" % dc.DJANGO_PYTHON)
    return bin_dir, shared


def endpoint_requests(teams, job_id):
    """(endpoint, prefix, team, path, method) for every endpoint (list, retrieve of `job_id`,
    recent, running) under both prefixes and each of `teams`, with and without the slash, and
    GET / HEAD / OPTIONS on each."""
    for prefix in PREFIXES:
        for team in teams:
            for slash in ("/", ""):
                b = "/api/%s/%s/data_modeling_jobs" % (prefix, team)
                for ep, path in (("list", b + slash), ("retrieve", "%s/%s%s" % (b, job_id, slash)),
                                 ("recent", b + "/recent" + slash),
                                 ("running", b + "/running" + slash)):
                    for method in ("GET", "HEAD", "OPTIONS"):
                        yield ep, prefix, team, path, method


def host_free(body, port):
    """The body with this server's own address (links: scheme://127.0.0.1:PORT/) replaced."""
    return body.replace(b"://127.0.0.1:%d/" % port, b"://HOST/")


def bytes_diff(a, b):
    """Where two bodies first differ, with some context either side."""
    i = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
    lo = max(0, i - 60)
    return ("    first difference at byte %d of %d (peer) / %d (dmjd):\n    peer: %r\n"
            "    dmjd: %r" % (i, len(a), len(b), a[lo:i + 60], b[lo:i + 60]))


def json_diff(a, b):
    la = json.dumps(a, indent=1, ensure_ascii=False).splitlines()
    lb = json.dumps(b, indent=1, ensure_ascii=False).splitlines()
    lines = list(difflib.unified_diff(la, lb, "peer", "dmjd", n=2, lineterm=""))
    if len(lines) > 60:
        lines = lines[:60] + ["... (%d more diff lines)" % (len(lines) - 60)]
    return "\n".join("    " + line for line in lines)


def q(value):
    return urllib.parse.quote(value, safe="")


def group_of(name):
    """The family of a case ("cursor", "walk team 1 limit 7", "key read"...), for the report."""
    words = name.split()
    if words[0] == "unlimited":
        return " ".join(words[:3])
    if words[0] == "edge":
        return " ".join(words[:4])
    if words[0] == "walk":
        return " ".join(words[:5]).replace(" fwd", "").replace(" back", "")
    if words[0] in ("key", "path", "retrieve", "list"):
        return " ".join(words[:2])
    return words[0]


def report(mismatches):
    """Prints a few mismatches of every family in full (so that one broken area does not hide
    the others), every other one on a line, then counts by family and by status."""
    per_group = {}
    printed = 0
    shown = set()
    for case, peer, dmj, what in mismatches:
        g = group_of(case.name)
        per_group[g] = per_group.get(g, 0) + 1
        if per_group[g] > 3 or printed >= MAX_PRINTED:
            continue
        printed += 1
        shown.add(case.name)
        print("MISMATCH %s\n  request: %s\n  status: peer %d, dmjd %d\n  %s\n"
              % (case.name, case.describe(), peer.status, dmj.status, what.replace("\n", "\n  ")))
    rest = [m for m in mismatches if m[0].name not in shown]
    for case, peer, dmj, what in rest[:500]:
        print("mismatch %s: %s %s -> peer %d, dmjd %d: %s"
              % (case.name, case.method, case.target, peer.status, dmj.status,
                 what.split("\n")[0]))
    if len(rest) > 500:
        print("... and %d more mismatches" % (len(rest) - 500))
    if not mismatches:
        return
    print("mismatches by family: " + ", ".join("%s x%d" % kv for kv in sorted(per_group.items())))
    pairs = {}
    for _case, peer, dmj, _what in mismatches:
        pairs[(peer.status, dmj.status)] = pairs.get((peer.status, dmj.status), 0) + 1
    print("mismatches by status (peer, dmjd): "
          + ", ".join("%d/%d x%d" % (p, d, n) for (p, d), n in sorted(pairs.items())))


def run_phase(runner, cases, walks):
    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(runner.walk, *w) for w in walks]
        futures += [pool.submit(runner.compare, c) for c in cases]
        for f in futures:
            f.result()


def check_dmjd_end(runner, proc, work, name, peer_vs_peer):
    """Records as mismatches a dmjd that died during the phase (with the first request it did
    not answer) or that did not exit with 0 on SIGTERM (sanitizer reports at exit)."""
    if proc.poll() is not None:
        where = runner.first_dead.describe() if runner.first_dead else "?"
        print("DMJD DIED (exit status %s; negative = signal); first request without an "
              "answer (the crash is this one or one sent just before it on another "
              "connection):\n  %s" % (proc.returncode, where))
        with open(os.path.join(work, name + ".stderr"), "rb") as f:
            sys.stdout.write(f.read().decode("utf-8", "replace")[-2000:])
        runner.mismatches.insert(0, (Case("dmjd process", "-"), dc.Response(0, {}, b""),
                                     dc.Response(0, {}, b""),
                                     "dmjd exited with status %s" % proc.returncode))
    problem = None if peer_vs_peer else dc.stop_dmjd(proc, work, name)
    if problem:
        print(problem)
        runner.mismatches.append((Case("dmjd shutdown", "-"), dc.Response(0, {}, b""),
                                  dc.Response(0, {}, b""), problem))
