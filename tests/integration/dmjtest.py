"""What the integration and attack tests share: the built binaries, stores of generated data
and their keys, jobs written into a store, dmjd processes on port 0 and their listeners, free
ports, HTTP requests, /metrics and events/ streams, commands run to completion, and two ways
to run a test's parts (run_cases: cases on one shared store; Checks: numbered checks in a
temporary directory). Python 3 standard library only; tests import it after putting this
folder on sys.path."""

import base64
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import uuid

import need  # this folder: what a missing tool means under CI

BIN_DIR = os.environ.get("DMJ_BIN_DIR", "")
SHARED_DIR = os.environ.get("DMJ_SHARED_DIR", "")
SOURCE_DIR = os.environ.get("DMJ_SOURCE_DIR") or os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
LIST = "/api/environments/1/data_modeling_jobs/"
RUNNING = "/api/environments/1/data_modeling_jobs/running/"
EVENTS = "/api/environments/%d/data_modeling_jobs/events/"  # % team
# Deadlines of the tests that wait for a change: far beyond what a wake-up takes (a commit is
# seen within ~50 ms), they only stop a broken server from hanging the test.
LONG = 30


def skip(why):
    print("skipped: " + why)
    sys.exit(77)


def binary(name):
    path = os.path.join(BIN_DIR, name)
    if not os.access(path, os.X_OK):
        skip("%s is not built (DMJ_BIN_DIR=%r)" % (name, BIN_DIR))
    return path


def run(*args, **kw):
    res = subprocess.run(list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         **kw)
    if res.returncode != 0:
        raise AssertionError("%s failed (%d): %s%s" % (" ".join(args), res.returncode,
                                                       res.stdout[-2000:], res.stderr[-2000:]))
    return res


def has_generate():
    if os.environ.get("DMJ_TEST_GEN_JOBS_PY"):  # force tools/gen_jobs.py (to compare data sets)
        return False
    res = subprocess.run([binary("dmj"), "generate", "--help"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    return res.returncode == 0


def generate(tmp, name, jobs, teams, seed=1):
    """Writes NAME.ndjson and NAME-fixtures.json; returns both paths."""
    out = os.path.join(tmp, name + ".ndjson")
    fixtures = os.path.join(tmp, name + "-fixtures.json")
    if has_generate():
        run(binary("dmj"), "generate", "--jobs", str(jobs), "--teams", str(teams), "--seed",
            str(seed), "--out", out, "--fixtures-out", fixtures)
    else:
        gen = os.path.join(SHARED_DIR, "tools", "gen_jobs.py")
        if not os.path.exists(gen):
            skip("`dmj generate` is missing and so is %s" % gen)
        run(sys.executable, gen, "--jobs", str(jobs), "--teams", str(teams), "--seed",
            str(seed), "--out", out, "--fixtures-out", fixtures)
    return out, fixtures


def import_into(db, *files, extra=()):
    run(binary("dmj"), "import", "--db", db, *extra, *files)


def job_line(team, status, created="2030-01-01T00:00:00Z", job_id=None):
    """One job as an NDJSON line `dmj import` takes."""
    return json.dumps({
        "id": job_id or str(uuid.uuid4()), "team_id": team, "saved_query_id": str(uuid.uuid4()),
        "status": status, "rows_materialized": 0, "error": None, "created_at": created,
        "last_run_at": None, "workflow_id": "materialize-test", "workflow_run_id": None,
        "rows_expected": None})


def import_lines(store, tmp, *lines):
    """Imports job_line()s into the store (anything with a `dir`)."""
    path = os.path.join(tmp, "extra-%s.ndjson" % uuid.uuid4().hex)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    import_into(store.dir, path)


def team_writes(store, tmp, team):
    """A burst of writes that touch `team` only (and other users' keys): imports of new jobs
    and status changes, a prune of its old jobs, a key made and one revoked."""
    jobs = [str(uuid.uuid4()) for _ in range(20)]
    import_lines(store, tmp, *(job_line(team, "Running", job_id=j) for j in jobs))
    for status in ("Completed", "Failed"):
        import_lines(store, tmp, *(job_line(team, status, job_id=j) for j in jobs[:10]))
    import_lines(store, tmp, job_line(team, "Running", created="2001-01-01T00:00:00Z"))
    run(binary("dmj"), "prune", "--db", store.dir, "--before", "2002-01-01", "--team",
        str(team))
    run(binary("dmj"), "keys", "create", "--db", store.dir, "--user", "2", "--team", str(team),
        "--scopes", "warehouse_view:read")
    run(binary("dmj"), "keys", "revoke", "--db", store.dir, store.keys["carol_read"])


def fixture_keys(fixtures_path):
    """{label: key} of the personal API keys in a fixtures file (`dmj generate`'s or
    gen_jobs.py's); "read" is the key with warehouse_view:read."""
    with open(fixtures_path) as f:
        return {k.get("label"): k["key"] for k in json.load(f)["personal_api_keys"]}


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now (for programs that cannot be given
    port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_lines(proc, n, timeout):
    """The first `n` lines `proc` (a dmjd) writes to stdout, read byte by byte so that nothing
    past them is taken from the pipe; kills it and fails when they do not come in time."""
    buf, lines = b"", []
    deadline = time.time() + timeout
    while len(lines) < n:
        left = deadline - time.time()
        if left <= 0 or proc.poll() is not None:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            raise AssertionError("dmjd did not start: %r %s" % (
                buf, proc.stderr.read().decode(errors="replace")))
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if ready:
            c = os.read(proc.stdout.fileno(), 1)
            buf += c
            if c == b"\n":
                lines.append(buf.rstrip())
                buf = b""
    return lines


class Store:
    """A store with generated jobs and the fixtures' keys."""

    def __init__(self, tmp, jobs=3000, teams=2):
        self.dir = os.path.join(tmp, "db")
        os.makedirs(self.dir, exist_ok=True)
        self.jobs_path, self.fixtures_path = generate(tmp, "jobs", jobs, teams)
        import_into(self.dir, self.fixtures_path, self.jobs_path)
        with open(self.fixtures_path) as f:
            self.fixtures = json.load(f)
        self.keys = fixture_keys(self.fixtures_path)
        self.read_key = self.keys["read"]
        with open(self.jobs_path) as f:
            self.jobs = [json.loads(line) for line in f if line.strip()]

    def served_ids(self, team):
        return {j["id"] for j in self.jobs
                if j.get("team_id") == team and j.get("engine", "clickhouse") != "duckgres"}


class Server:
    """A dmjd process; `urls` are the printed listener URLs."""

    def __init__(self, db, *args, listeners=1, env=None, preexec_fn=None):
        # /metrics on the API port: the tests read dmjd's counters from there.
        cmd = [binary("dmjd"), "--db", db, "--metrics-on-api", *args]
        if not any(a == "--listen" for a in args):
            cmd += ["--listen", "127.0.0.1:0"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=env, preexec_fn=preexec_fn)
        self.urls = []
        for line in first_lines(self.proc, listeners, 20):
            m = re.fullmatch(rb"listening on (https?)://(\S+):(\d+)", line)
            if not m:
                self.kill()
                raise AssertionError("unexpected first output: %r" % line)
            self.urls.append((m.group(1).decode(), m.group(2).decode(), int(m.group(3))))
        self.port = self.urls[0][2]

    def conn(self, timeout=30):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Sends `sig` and returns (exit status, stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("dmjd did not exit within %ds of signal %d" % (timeout, sig))
        err = self._stderr()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return self.proc.returncode, err

    def _stderr(self):
        """All dmjd wrote to stderr, once it has exited."""
        return self.proc.stderr.read().decode(errors="replace")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            code, err = self.stop()
            if exc[0] is None and (code != 0 or err.strip()):
                raise AssertionError("dmjd exited %d: %s" % (code, err))


def get(conn, path, key=None, method="GET", headers=None):
    h = dict(headers or {})
    if key is not None:
        h["Authorization"] = "Bearer " + key
    conn.request(method, path, headers=h)
    res = conn.getresponse()
    body = res.read()
    return res, body


def metrics(conn):
    """Parses /metrics into {(name, labels-text): value}."""
    res, body = get(conn, "/metrics")
    assert res.status == 200, res.status
    assert res.getheader("Content-Type", "").startswith("text/plain"), res.getheader(
        "Content-Type")
    out = {}
    for line in body.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)", line)
        assert m, "bad metrics line %r" % line
        out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


class Stream:
    """One events/ response read in a thread: `events` gathers (fields) dicts, comments
    counted apart."""

    def __init__(self, port, path, key=None, headers=None):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=LONG + 20)
        h = dict(headers or {})
        if key is not None:
            h["Authorization"] = "Bearer " + key
        self.conn.request("GET", path, headers=h)
        self.res = self.conn.getresponse()
        self.status = self.res.status
        self.events = []
        self.comments = []
        self.ended = False
        self.error = None
        self.lock = threading.Condition()
        if self.status == 200:
            self.thread = threading.Thread(target=self._read, daemon=True)
            self.thread.start()
        else:
            self.body = self.res.read()
            self.conn.close()

    def _read(self):
        fields = {}
        try:
            while True:
                line = self.res.readline()
                if not line:
                    break
                line = line.decode().rstrip("\n")
                with self.lock:
                    if line == "":
                        if fields:
                            self.events.append(fields)
                        fields = {}
                        self.lock.notify_all()
                    elif line.startswith(":"):
                        self.comments.append(line)
                        self.lock.notify_all()
                    else:
                        name, _, value = line.partition(": ")
                        assert name not in fields, (name, fields)
                        fields[name] = value
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            pass  # the connection closed (by close(), or the server)
        except Exception as e:  # a malformed stream: reported by wait_for
            self.error = repr(e)
        with self.lock:
            self.ended = True
            self.lock.notify_all()

    def wait_for(self, n, timeout=LONG):
        """Waits until `n` events have come; returns them all."""
        deadline = time.time() + timeout
        with self.lock:
            while len(self.events) < n and not self.ended and time.time() < deadline:
                self.lock.wait(0.1)
            assert len(self.events) >= n, "%d events of %d (ended: %s, error: %s): %r" % (
                len(self.events), n, self.ended, self.error, self.events)
            return list(self.events)

    def wait_until(self, pred, timeout=LONG):
        """Waits until pred(events) holds; returns the events."""
        deadline = time.time() + timeout
        with self.lock:
            while not pred(self.events) and not self.ended and time.time() < deadline:
                self.lock.wait(0.1)
            assert pred(self.events), self.events[-3:]
            return list(self.events)

    def wait_end(self, timeout=LONG):
        deadline = time.time() + timeout
        with self.lock:
            while not self.ended and time.time() < deadline:
                self.lock.wait(0.1)
            return self.ended

    def close(self):
        try:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        except (OSError, AttributeError):
            pass
        self.conn.close()


def cursor_offset(query):
    """The `o` of the request's DRF cursor (0 without one)."""
    value = urllib.parse.parse_qs(query).get("cursor", [""])[0]
    if not value:
        return 0
    tokens = urllib.parse.parse_qs(base64.b64decode(value).decode("ascii"))
    return int(tokens.get("o", ["0"])[0])


def check_repeats(seen, ids, url):
    """The ids of a page (`ids`, fetched with `url`) already in `seen` (the walk so far), after
    checking each is one DRF's cursor may repeat. A cursor is a position plus an offset `o`:
    the next page is the rows past the position with the first `o` skipped, because the last
    `o` rows walked share the position's neighbour's created_at. A job imported meanwhile
    with a created_at between the position and those rows shifts them, so they come again
    (k such jobs: rows from index k - o on; DRF does the same). Only those `o` rows may
    repeat, each once, in the order they were walked."""
    window = cursor_offset(urllib.parse.urlsplit(url).query)
    allowed = seen[-window:] if window else []
    repeated = [job_id for job_id in ids if job_id in set(seen)]
    for job_id in repeated:
        assert job_id in allowed, "job %s repeated, not one of the cursor's last %d rows" % (
            job_id, window)
    assert len(set(repeated)) == len(repeated), "a row repeated twice on one page"
    order = [job_id for job_id in allowed if job_id in set(repeated)]
    assert order == repeated, "repeated rows out of their order"
    return repeated


def sanitized():
    """True for an ASan/UBSan/TSan build (from the build's CMakeCache.txt), where everything
    is several times slower."""
    cache = os.path.join(BIN_DIR, "CMakeCache.txt")
    try:
        with open(cache) as f:
            for line in f:
                if line.startswith("DMJ_SANITIZE:"):
                    return line.strip().split("=", 1)[1] != ""
    except OSError:
        pass
    return False


def run_case(case, arg, tmp):
    """Runs case(arg, a temp dir of its own under tmp) and prints "ok" or "FAIL" with the
    traceback; True when it passed."""
    sub = tempfile.mkdtemp(dir=tmp)
    started = time.time()
    try:
        case(arg, sub)
        print("ok   %s (%.1fs)" % (case.__name__, time.time() - started))
        return True
    except Exception:
        print("FAIL %s" % case.__name__)
        traceback.print_exc()
        return False


def run_cases(cases, prefix, **store_args):
    """Runs each case(store, its own temp dir) on one shared Store; returns the exit status."""
    binary("dmjd")
    binary("dmj")
    tmp = tempfile.mkdtemp(prefix=prefix)
    failed = 0
    try:
        store = Store(tmp, **store_args)
        for case in cases:
            failed += not run_case(case, store, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d of %d cases failed" % (failed, len(cases)))
    return 1 if failed else 0


def make_cert(tmp):
    """(cert, key) for localhost, or None (outside CI) when there is no openssl binary."""
    if not need.tool("openssl", "openssl"):
        return None
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out",
        cert, "-days", "2", "-subj", "/CN=localhost", "-addext",
        "subjectAltName=DNS:localhost,IP:127.0.0.1")
    return cert, key


def tls_context(cert, alpn):
    ctx = ssl.create_default_context(cafile=cert)
    ctx.set_alpn_protocols(alpn)
    return ctx


def vm_kb(pid, field):
    """A process's /proc/PID/status `field` in KiB (VmRSS, VmHWM...); 0 when absent."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def dmj(*args, stdin=None, expect=0, env=None):
    """Runs `dmj ARGS` (arguments made strings) to completion with its output captured as
    bytes; fails unless it exits `expect` (None: any status)."""
    p = subprocess.run([binary("dmj")] + [str(a) for a in args], input=stdin,
                       capture_output=True, env=env)
    if expect is not None and p.returncode != expect:
        raise AssertionError("dmj %s: exit %d, expected %d\nstdout: %s\nstderr: %s" % (
            " ".join(map(str, args)), p.returncode, expect, p.stdout[-2000:], p.stderr[-2000:]))
    return p


class Checks:
    """A test made of numbered checks: a temporary directory of its own (`path`, `write`) and
    a tally that `main` prints and turns into the exit status."""

    def __init__(self, prefix):
        self.tmp = tempfile.mkdtemp(prefix=prefix)
        self.failures = []
        self.passed = 0

    def check(self, cond, what):
        if cond:
            self.passed += 1
        else:
            self.failures.append(what)
            print("FAIL:", what, file=sys.stderr)

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def write(self, name, data):
        """Writes `data` (bytes, or text as UTF-8) to the file `name`; returns its path."""
        with open(self.path(name), "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode("utf-8"))
        return self.path(name)

    def main(self, tests):
        """Runs each test (a callable) in turn, an AssertionError counting as one failure,
        then removes the directory; returns the exit status."""
        if not os.access(os.path.join(BIN_DIR, "dmj"), os.X_OK):
            print("dmj binary not found at %s" % os.path.join(BIN_DIR, "dmj"), file=sys.stderr)
            return 1
        try:
            for t in tests:
                try:
                    t()
                except AssertionError as e:
                    self.failures.append("%s: %s" % (t.__name__, e))
                    print("FAIL: %s: %s" % (t.__name__, e), file=sys.stderr)
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
        print("%d checks passed, %d failed" % (self.passed, len(self.failures)))
        return 1 if self.failures else 0
