"""Shared helpers of the API integration tests: data, servers, an HTTP client, the access model.

Used by test_differential.py (dmjd against the Django reference peer) and test_isolation.py
(dmjd alone). Python 3 standard library only; every process started here is stopped by its
own pid.
"""

import base64
import calendar
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

DJANGO_PYTHON = "/usr/bin/python3"
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
LINK_HOST_RE = re.compile(r"^(https?)://127\.0\.0\.1:[0-9]+/")
HIDDEN_ENGINE = "duckgres"
# The error of the extra Failed jobs: every kind of escape; the extras are written with
# ensure_ascii, so the importers must also decode \uXXXX and surrogate pairs.
ERROR_TEXT = "edge \"case\" \\ / \u2028\u2029 \x01\x1f\x7f\b\f\n\r\t \U0001F4A5 \u00e9 nul\x00end"


def skip(why):
    """Ends the test as skipped (ctest SKIP_RETURN_CODE 77), saying why."""
    print("skipped: " + why, flush=True)
    sys.exit(77)


def env_dirs():
    """(bin_dir, source_dir, shared_dir or None) from the ctest environment."""
    here = os.path.dirname(os.path.abspath(__file__))
    source = os.environ.get("DMJ_SOURCE_DIR") or os.path.normpath(os.path.join(here, "..", ".."))
    bin_dir = os.environ.get("DMJ_BIN_DIR") or os.path.join(source, "build")
    shared = os.environ.get("DMJ_SHARED_DIR") or ""
    if not shared or not os.path.isdir(shared):
        shared = None
    return bin_dir, source, shared


def require_binaries(bin_dir, names=("dmj", "dmjd")):
    for name in names:
        path = os.path.join(bin_dir, name)
        if not os.access(path, os.X_OK):
            skip("%s is not built in %s (DMJ_BIN_DIR)" % (name, bin_dir))


# --------------------------------------------------------------------------- test data

def _uuid4(rng):
    n = rng.getrandbits(128)
    n = (n & ~((0xF000 << 64) | (0xC000 << 48))) | (0x4000 << 64) | (0x8000 << 48)
    h = "%032x" % n
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


def _job(rng, team, created, status="Completed", sq=None, workflow="materialize", **extra):
    job = {
        "id": _uuid4(rng),
        "team_id": team,
        "saved_query_id": sq,
        "status": status,
        "rows_materialized": rng.randrange(0, 100000),
        "error": None if status != "Failed" else ERROR_TEXT,
        "created_at": created,
        "last_run_at": created,
        "workflow_id": None if workflow is None else "%s-view-%s" % (workflow, _uuid4(rng)),
        "workflow_run_id": _uuid4(rng),
        "rows_expected": None,
    }
    job.update(extra)
    return job


def extra_jobs(fixtures, seed=99, long_run=1005):
    """Jobs gen_jobs.py does not make, appended to its NDJSON: hidden (duckgres) jobs that
    would otherwise be the newest of a list, of `running` and of `recent`; an explicit
    engine; a null and an absent last_run_at; a created_at with a +02:00 offset and a short
    fraction; a run of equal whole-second timestamps; and a run of `long_run` equal
    timestamps in team 3, longer than DRF's offset cap of 1000."""
    rng = random.Random(seed)
    sq = {}
    for s in fixtures.get("saved_queries") or []:
        sq.setdefault(s["team_id"], []).append(s["id"])
    sq1 = sq.get(1) or [_uuid4(rng) for _ in range(3)]
    jobs = [
        _job(rng, 1, "2024-03-01T00:00:00.000001Z", "Running", sq1[0], engine=HIDDEN_ENGINE),
        _job(rng, 1, "2024-03-01T00:00:01Z", "Completed", sq1[0], engine=HIDDEN_ENGINE),
        _job(rng, 1, "2024-01-12T00:00:00.5Z", "Failed", sq1[-1], engine=HIDDEN_ENGINE),
        _job(rng, 1, "2024-01-13T10:11:12.131415Z", "Completed", sq1[1 % len(sq1)],
             engine="clickhouse"),
        _job(rng, 2, "2024-01-14T01:02:03.000004Z", "Cancelled", None, last_run_at=None),
        _job(rng, 2, "2024-01-20T12:00:00.5+02:00", "Completed", None, workflow=None),
    ]
    absent = _job(rng, 2, "2024-01-16T16:16:16.161616Z", "Running", None)
    del absent["last_run_at"]
    jobs.append(absent)
    for i in range(12):
        status = ("Running", "Completed", "Failed")[i % 3]
        jobs.append(_job(rng, 1, "2024-01-10T08:00:00Z", status, sq1[i % len(sq1)]))
    for i in range(long_run):
        status = "Running" if i % 50 == 0 else "Completed"
        jobs.append(_job(rng, 3, "2024-01-05T05:05:05.050505Z", status, None))
    return jobs


def generate(workdir, shared, bin_dir, jobs=3000, teams=4, seed=5, dup=True, extras=True,
             long_run=1005):
    """Writes workdir/jobs.ndjson and workdir/fixtures.json (gen_jobs.py from the shared
    folder, else `dmj generate`); returns (jobs_path, fixtures_path). With extras, the last
    job is a marker with a random id (team 1, the oldest job): it tells this run's servers
    from any other on the same port."""
    jobs_path = os.path.join(workdir, "jobs.ndjson")
    fx_path = os.path.join(workdir, "fixtures.json")
    if shared:
        cmd = [sys.executable, os.path.join(shared, "tools", "gen_jobs.py"), "--jobs", str(jobs),
               "--teams", str(teams), "--seed", str(seed), "--out", jobs_path,
               "--fixtures-out", fx_path]
        if dup:
            cmd.append("--dup-timestamps")
    else:
        cmd = [os.path.join(bin_dir, "dmj"), "generate", "--jobs", str(jobs), "--teams", str(teams),
               "--seed", str(seed), "--out", jobs_path, "--fixtures-out", fx_path]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    if extras:
        with open(fx_path, encoding="utf-8") as f:
            fixtures = json.load(f)
        with open(jobs_path, "a", encoding="utf-8") as f:
            for job in extra_jobs(fixtures, long_run=long_run):
                f.write(json.dumps(job, ensure_ascii=True) + "\n")
            marker = _job(random.Random(os.urandom(16)), 1, "2023-06-01T00:00:00Z", "Completed")
            f.write(json.dumps(marker) + "\n")
    return jobs_path, fx_path


def load_jobs(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_fixtures(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def is_hidden(job):
    return job.get("engine") == HIDDEN_ENGINE


# --------------------------------------------------------------------------- processes

def free_port(lo, hi):
    """A port in [lo, hi] that nothing listens on right now (the caller retries on a race)."""
    ports = list(range(lo, hi + 1))
    random.Random(os.getpid() ^ int(time.time())).shuffle(ports)
    for port in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no free port in %d-%d" % (lo, hi))


def stop(proc, timeout=15):
    """SIGTERM to the process we started (by its pid), then SIGKILL if it lingers; returns
    its exit status (None when there was no process, "killed" when SIGTERM was not enough)."""
    if proc is None:
        return None
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return "killed"


def stop_dmjd(proc, workdir, name="dmjd"):
    """Stops dmjd; returns a complaint unless it exited with status 0 on SIGTERM (a sanitizer
    report at exit, a leak or a hang shows up here), else None."""
    rc = stop(proc)
    if rc in (0, None):
        return None
    tail = ""
    path = os.path.join(workdir, name + ".stderr")
    if os.path.exists(path):
        with open(path, "rb") as f:
            tail = f.read().decode("utf-8", "replace")[-3000:]
    return "dmjd exited with status %s on SIGTERM (expected 0)\n%s" % (rc, tail)


def dmj_import(bin_dir, db, files, workdir):
    log = os.path.join(workdir, "import.log")
    with open(log, "wb") as out:
        rc = subprocess.run([os.path.join(bin_dir, "dmj"), "import", "--db", db] + list(files),
                            stdout=out, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        with open(log, "rb") as f:
            sys.stdout.write(f.read().decode("utf-8", "replace")[-3000:])
        raise RuntimeError("dmj import failed with status %d" % rc)


def start_dmjd(bin_dir, db, workdir, extra_args=(), name="dmjd"):
    """Starts dmjd on 127.0.0.1:0; returns (proc, port) once it has said where it listens.
    Its standard error goes to workdir/<name>.stderr."""
    err_path = os.path.join(workdir, name + ".stderr")
    err = open(err_path, "wb")
    proc = subprocess.Popen([os.path.join(bin_dir, "dmjd"), "--db", db, "--listen", "127.0.0.1:0"]
                            + list(extra_args), stdout=subprocess.PIPE, stderr=err)
    err.close()
    found = []
    ready = threading.Event()

    def drain():
        # Keeps reading so that a chatty dmjd never blocks on a full pipe.
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace")
            m = re.match(r"listening on http://127\.0\.0\.1:([0-9]+)", line)
            if m and not found:
                found.append(int(m.group(1)))
                ready.set()
        ready.set()

    threading.Thread(target=drain, daemon=True).start()
    ready.wait(20)
    if not found:
        stop(proc)
        with open(err_path, "rb") as f:
            sys.stdout.write(f.read().decode("utf-8", "replace")[-3000:])
        raise RuntimeError("dmjd did not print 'listening on http://127.0.0.1:PORT'")
    return proc, found[0]


def load_peer(shared, db, jobs_path, fx_path, workdir):
    peer = os.path.join(shared, "peers", "drf_ref")
    env = dict(os.environ, DRF_REF_DB=db, DRF_REF_DMJ="1", PYTHONDONTWRITEBYTECODE="1")
    log = os.path.join(workdir, "peer_load.log")
    with open(log, "wb") as out:
        rc = subprocess.run([DJANGO_PYTHON, os.path.join(peer, "manage.py"), "load", "--jobs",
                             jobs_path, "--fixtures", fx_path], env=env, cwd=workdir, stdout=out,
                            stderr=subprocess.STDOUT).returncode
    if rc != 0:
        with open(log, "rb") as f:
            sys.stdout.write(f.read().decode("utf-8", "replace")[-3000:])
        raise RuntimeError("the peer's manage.py load failed with status %d" % rc)


def start_peer(shared, db, workdir, probe, extra_env=None):
    """serve.sh on a free port in 18000-18099 (the peer's README); returns (proc, port).
    probe = (target, headers, text): the peer is ready when GET target answers 200 with text
    in its body -- which also proves that it is ours and not another peer that took the port
    between our check and gunicorn's bind (gunicorn retries binding for seconds)."""
    peer = os.path.join(shared, "peers", "drf_ref")
    target, headers, needle = probe
    for attempt in range(3):
        port = free_port(18000, 18099)
        env = dict(os.environ, DRF_REF_DMJ="1", WORKERS="2", THREADS="4",
                   PYTHONDONTWRITEBYTECODE="1", **(extra_env or {}))
        log = open(os.path.join(workdir, "peer_%d.log" % port), "wb")
        proc = subprocess.Popen(["/bin/sh", os.path.join(peer, "serve.sh"), str(port), db], env=env,
                                cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        log.close()
        deadline = time.time() + 30
        while time.time() < deadline and proc.poll() is None:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", target, headers=headers)
                r = c.getresponse()
                body = r.read()
                c.close()
                if r.status == 200 and needle.encode() in body:
                    return proc, port
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.2)
        stop(proc)
    raise RuntimeError("the reference peer did not start (see peer_*.log)")


def make_workdir(prefix):
    return tempfile.mkdtemp(prefix=prefix)


def remove_workdir(path):
    if os.environ.get("DMJ_KEEP_TMP"):
        print("kept", path)
    else:
        shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- HTTP

class Response(object):
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-case name -> value (last one)
        self.body = body

    def json(self):
        try:
            return json.loads(self.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return None


class Client(object):
    """One keep-alive HTTP/1.1 connection, reopened when the server closes it."""

    def __init__(self, port, timeout=60):
        self.port = port
        self.timeout = timeout
        self.conn = None

    def request(self, method, target, headers=None):
        for attempt in range(3):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                # skip_host only when the case sets its own Host header.
                hdrs = dict(headers or {})
                self.conn.putrequest(method, target, skip_host="Host" in hdrs,
                                     skip_accept_encoding=True)
                for k, v in hdrs.items():
                    self.conn.putheader(k, v)
                self.conn.endheaders()
                resp = self.conn.getresponse()
                body = resp.read()
                got = {k.lower(): v for k, v in resp.getheaders()}
                if got.get("connection", "").lower() == "close":
                    self.close()
                return Response(resp.status, got, body)
            except (http.client.HTTPException, OSError):
                self.close()
                if attempt == 2:
                    raise
                time.sleep(0.05)

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def link_path(url):
    """The path and query of an absolute link (what the next request sends)."""
    m = re.match(r"^https?://[^/]*(/.*)$", url)
    return m.group(1) if m else url


def normalise_links(doc):
    """Replaces scheme://127.0.0.1:PORT of `next`/`previous` by scheme://HOST, so that two
    servers on different ports compare equal."""
    if isinstance(doc, dict):
        out = dict(doc)
        for k in ("next", "previous"):
            if isinstance(out.get(k), str):
                out[k] = LINK_HOST_RE.sub(r"\1://HOST/", out[k])
        return out
    return doc


# --------------------------------------------------------------------------- access model

class World(object):
    """The fixtures and jobs, and what the permission rules of docs/api.md (the checks) allow."""

    def __init__(self, fixtures, jobs):
        self.fx = fixtures
        self.jobs = jobs
        self.teams = {t["id"]: t for t in fixtures["teams"]}
        self.users = {u["id"]: u for u in fixtures["users"]}
        self.keys = {k["label"]: k for k in fixtures["personal_api_keys"]}
        self.member = {}
        for m in fixtures["organization_memberships"]:
            self.member.setdefault(m["user_id"], set()).add(m["organization_id"])
        self.marker = jobs[-1]["id"] if jobs else None
        self.job_team = {}
        self.ids_by_team = {}
        self.visible_by_team = {}
        for j in jobs:
            self.job_team[j["id"]] = j["team_id"]
            self.ids_by_team.setdefault(j["team_id"], set()).add(j["id"])
            if not is_hidden(j):
                self.visible_by_team.setdefault(j["team_id"], []).append(j)

    def resolve_current(self, user):
        if user.get("current_team_id") in self.teams:
            return user["current_team_id"]
        orgs = self.member.get(user["id"], set())
        org = user.get("current_organization_id")
        if org is None:
            org = min(orgs) if orgs else None
        if org is None:
            return None
        ids = [t for t, row in self.teams.items() if row["organization_id"] == org]
        return min(ids) if ids else None

    def expect(self, label, team_segment):
        """(status, detail) the rules give for `label`'s key on team `team_segment` (a path
        segment: an integer text, @current, or anything else); 200 -> detail None."""
        key = self.keys[label]
        user = self.users[key["user_id"]]
        if not user.get("is_active", True):
            return 401, "Personal API key found in request Authorization header is invalid."
        if team_segment == "@current":
            team_id = self.resolve_current(user)
        else:
            try:
                team_id = int(team_segment) if re.fullmatch(r"[+-]?[0-9]+", team_segment) else None
            except ValueError:
                team_id = None
        if team_id is None or team_id not in self.teams:
            return 404, "Project not found."
        team = self.teams[team_id]
        if key.get("scoped_teams") and team_id not in key["scoped_teams"]:
            return 403, "API key does not have access to the requested project: ID %d." % team_id
        scoped_orgs = key.get("scoped_organizations")
        if scoped_orgs and team["organization_id"] not in scoped_orgs:
            return 403, ("API key does not have access to the requested organization: ID %s."
                         % team["organization_id"])
        scopes = key.get("scopes") or []
        if not ({"*", "warehouse_view:read", "warehouse_view:write"} & set(scopes)):
            return 403, "API key missing required scope 'warehouse_view:read'"
        if team["organization_id"] not in self.member.get(user["id"], set()):
            return 403, "You don't have access to the project."
        return 200, None

    def team_of_segment(self, label, team_segment):
        if team_segment == "@current":
            return self.resolve_current(self.users[self.keys[label]["user_id"]])
        return int(team_segment)

    def expected_list(self, team_id, sq=None):
        """Visible jobs of a team (and saved query) in list order."""
        rows = [j for j in self.visible_by_team.get(team_id, [])
                if sq is None or j.get("saved_query_id") == sq]
        return sorted(rows, key=lambda j: (utc_us(j["created_at"]), j["id"]), reverse=True)

    def foreign_ids(self, team_id):
        """Every job id (hidden ones included) of every other team."""
        out = set()
        for t, ids in self.ids_by_team.items():
            if t != team_id:
                out |= ids
        return out


_TS_RE = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})[T ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
                    r"(?:\.([0-9]{1,6}))?(Z|[+-][0-9]{2}:?[0-9]{2})?$")


def utc_us(text):
    """An import timestamp -> UTC microseconds since the epoch (for ordering)."""
    m = _TS_RE.match(text)
    if not m:
        raise ValueError("bad timestamp %r" % text)
    y, mo, d, h, mi, s = (int(m.group(i)) for i in range(1, 7))
    frac = int((m.group(7) or "0").ljust(6, "0"))
    us = (calendar.timegm((y, mo, d, h, mi, s)) * 1000000) + frac
    tz = m.group(8)
    if tz and tz != "Z":
        sign = -1 if tz[0] == "-" else 1
        digits = tz[1:].replace(":", "")
        us -= sign * (int(digits[:2]) * 60 + int(digits[2:])) * 60 * 1000000
    return us


def b64(text):
    return base64.b64encode(text.encode("latin-1")).decode("ascii")


def sha256_key(raw):
    return "sha256$" + hashlib.sha256(raw.encode("utf-8")).hexdigest()
