#!/usr/bin/python3
"""Several dmjd replicas behind HAProxy (Debian's haproxy 2.6), run from the configurations in
packaging/haproxy/ (an operator's copy differs only in addresses and check interval):

- kill under load: h2load through HAProxy (HTTP/1.1 and h2c) while the replica serving the
  key is SIGKILLed (then stopped by SIGTERM): not one failed request; restarted, it is checked
  back in and gets its key's requests again;
- team split: even and odd teams' jobs on two replicas, HAProxy routing on the team id in the
  path (and `@current` through a key map made by packaging/haproxy/current-team.sql): the same
  bytes as one dmjd holding everything;
- the same answers through HAProxy as direct, ETags included, and what ETags mean across
  replicas (each key sticks to one replica);
- replicas following PostgreSQL, each with its own `dmj sync`: changes show on both, and
  through HAProxy in a long-poll and an events/ stream.

Each replica has its own store, fed by `dmj sync` from one private PostgreSQL (pg_helper.py)
when PostgreSQL 15 is installed and `dmj` has sync, else by `dmj import` of the same generated
files (DMJ_TEST_REPLICAS_IMPORT=1 forces that). Split replicas hold every identity and only
their own teams' jobs. Exit 77 without haproxy or h2load."""

import contextlib
import hashlib
import http.client
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import need  # noqa: E402
import pg_helper  # noqa: E402
from dmjtest import SOURCE_DIR, Server, binary, free_port, generate, get, import_into, \
    make_cert, metrics, run_cases, sanitized, skip, tls_context  # noqa: E402
PACKAGED = os.path.join(SOURCE_DIR, "packaging", "haproxy")
SLOW = sanitized()
REQUESTS = 10000 if SLOW else 20000
JOBS = 3000
TEAMS = 5  # the generator leaves the last one without jobs
HOST = "dmj.example"  # one Host for every request: the links carry it


def tool(name):
    path = shutil.which(name) or os.path.join("/usr/sbin", name)
    if not os.access(path, os.X_OK):
        skip("%s is not installed" % name)
    return path


def user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


# ---- HAProxy -------------------------------------------------------------------------------

def local_config(name, tmp, port, servers, maps=None, tls=None, timeouts=None, stats=0):
    """The packaged configuration NAME, rewritten for loopback: the frontend on `port` (its
    stats frontend on `stats`), each
    `server NAME ADDR` on servers[NAME], the stats socket and map files in tmp, no daemon,
    chroot, user or syslog, and checks every 100 ms; with tls=(port, pem), the commented TLS
    bind enabled on that port with that certificate; with timeouts="2s", the client and
    server timeouts that long. Every rewrite must find its line, so that the test keeps
    running the file an operator copies."""
    with open(os.path.join(PACKAGED, name)) as f:
        text = f.read()
    sock = os.path.join(tmp, "haproxy.sock")
    rules = [
        (r"(?m)^\s*(log /dev/log|chroot|user|group|daemon)\b.*\n", "", None),
        (r"(?m)^(\s*)stats socket \S+", r"\g<1>stats socket " + sock, 1),
        (r"(?m)^(\s*)bind :80$", r"\g<1>bind 127.0.0.1:%d" % port, 1),
        (r"(?m)^(\s*)bind 127.0.0.1:8404$", r"\g<1>bind 127.0.0.1:%d" % stats, 1),
        (r"inter 2s fastinter 500ms", "inter 100ms fastinter 100ms", None),
    ]
    for pattern, repl, count in rules:
        text, n = re.subn(pattern, repl, text)
        assert n and (count is None or n == count), "%s: %r matched %d times" % (name, pattern, n)
    if timeouts is not None:
        text, n = re.subn(r"(?m)^(\s*timeout (client|server)) 75s$", r"\g<1> " + timeouts, text)
        assert n == 2, "%s: timeout client/server 75s matched %d times" % (name, n)
    if tls is not None:
        text, n = re.subn(r"(?m)^(\s*)# (bind) :443 ssl crt \S+ (alpn .*)$",
                          r"\g<1>\g<2> 127.0.0.1:%d ssl crt %s \g<3>" % tls, text)
        assert n == 1, "%s: no TLS bind to enable" % name
    for path, local in (maps or {}).items():
        assert path in text, "%s does not use %s" % (name, path)
        text = text.replace(path, local)

    def server(m):
        assert m.group(2) in servers, "no replica for server %s" % m.group(2)
        return "%sserver %s 127.0.0.1:%d" % (m.group(1), m.group(2), servers[m.group(2)])

    text, n = re.subn(r"(?m)^(\s*)server (\S+) \S+:\d+$", server, text)
    assert n >= len(servers), (name, n)
    path = os.path.join(tmp, "haproxy.cfg")
    with open(path, "w") as f:
        f.write(text)
    return path, sock


class HAProxy:
    """haproxy in the foreground on a generated configuration; `port` is its frontend."""

    def __init__(self, tmp, name, servers, maps=None, pem=None, timeouts=None):
        for _ in range(5):  # the free port may be taken between the probe and the bind
            self.port = free_port()
            self.tls_port = free_port() if pem else None
            self.stats_port = free_port()
            cfg, self.sock = local_config(name, tmp, self.port, servers, maps,
                                          (self.tls_port, pem) if pem else None, timeouts,
                                          self.stats_port)
            self.stderr = open(os.path.join(tmp, "haproxy.err"), "w+")
            self.proc = subprocess.Popen([tool("haproxy"), "-db", "-f", cfg],
                                         stdout=subprocess.DEVNULL, stderr=self.stderr)
            if self.wait_up(set(servers.keys()), 30, fatal=False):
                return
            self.stop()
        raise AssertionError("haproxy did not start: " + self.errors())

    def errors(self):
        self.stderr.seek(0)
        return self.stderr.read()[-3000:]

    def command(self, line):
        """One line to the runtime API; its answer."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(30)
            s.connect(self.sock)
            s.sendall(line.encode() + b"\n")
            with s.makefile("rb") as answer:  # HAProxy closes the socket after it
                return answer.read().decode()

    def stats(self):
        """{(backend, server): row} from `show stat`."""
        lines = self.command("show stat").splitlines()
        head = lines[0].lstrip("# ").split(",")
        rows = {}
        for line in lines[1:]:
            if line:
                row = dict(zip(head, line.split(",")))
                rows[(row["pxname"], row["svname"])] = row
        return rows

    def states(self, name):
        """The state of server NAME in every backend that has it."""
        return {row["status"] for (_, sv), row in self.stats().items() if sv == name}

    def wait_state(self, name, want, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("haproxy exited: " + self.errors())
            if self.states(name) == {want}:
                return
            time.sleep(0.05)
        raise AssertionError("server %s is %s, not %s, after %d s" % (
            name, self.states(name), want, timeout))

    def wait_up(self, names, timeout, fatal=True):
        deadline = time.time() + timeout
        while time.time() < deadline and self.proc.poll() is None:
            try:
                if all(self.states(n) == {"UP"} for n in names):
                    return True
            except OSError:
                pass  # the socket is not there yet
            time.sleep(0.05)
        if fatal:
            raise AssertionError("replicas not UP after %d s: %s" % (timeout, self.errors()))
        return False

    def conn(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# ---- data ----------------------------------------------------------------------------------

class Upstream:
    """PostHog's PostgreSQL (tests/integration/pg_helper.py) holding the same generated data
    as the test's Store, when PostgreSQL 15 is installed and this `dmj` has `sync`; then every
    replica is fed by `dmj sync` from it. Else `pg` is None and replicas are fed by `dmj import`
    (DMJ_TEST_REPLICAS_IMPORT=1 forces that)."""

    def __init__(self):
        self.pg = self.tmp = self.why = None
        if os.environ.get("DMJ_TEST_REPLICAS_IMPORT"):
            self.why = "DMJ_TEST_REPLICAS_IMPORT is set"
        elif subprocess.run([binary("dmj"), "sync", "--help"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL).returncode != 0:
            self.why = "this dmj has no sync"
        elif not os.access(os.path.join(pg_helper.PGBIN, "initdb"), os.X_OK):
            self.why = "PostgreSQL 15 is not installed"
        if self.why:
            return
        self.tmp = tempfile.mkdtemp(prefix="dmj-test-replicas-pg-")
        try:
            jobs, fixtures = generate(self.tmp, "jobs", JOBS, TEAMS)  # the Store's bytes
            self.pg = pg_helper.Postgres()
            self.pg.create_schema()
            self.pg.load_jobs(jobs)
            self.pg.load_fixtures(fixtures)
        except BaseException:
            self.close()
            raise

    def sync(self, db, teams=None, *extra):
        """The command line of `dmj sync` into db, with every identity, the teams' jobs
        (all with None) and `extra` (--once, or --interval...)."""
        args = [binary("dmj"), "sync", "--postgres", self.pg.conninfo, "--db", db,
                "--identities", *extra]
        if teams is not None:
            args += ["--teams", ",".join(map(str, teams))]
        return args

    def close(self):
        if self.pg is not None:
            self.pg.stop()
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)


class Data:
    """The generated data of a test_server.Store, whose own store (`full`, made by `dmj
    import`) holds all of it, and replicas' stores made in `tmp`: copies of the whole, or the
    teams of one parity of the id (every identity, only those teams' jobs), fed by `dmj sync`
    from the upstream PostgreSQL when there is one, else by `dmj import`."""

    def __init__(self, store, tmp, upstream):
        self.tmp, self.upstream = tmp, upstream
        self.full = store.dir
        self.jobs_path, self.fixtures_path = store.jobs_path, store.fixtures_path
        self.fixtures, self.keys, self.jobs = store.fixtures, store.keys, store.jobs

    def copy(self, name, parity=None):
        path = os.path.join(self.tmp, name)
        os.makedirs(path)
        teams = None if parity is None else [t for t in range(1, TEAMS + 1) if t % 2 == parity]
        if self.upstream.pg is not None:
            subprocess.run(self.upstream.sync(path, teams, "--once"), check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
            return path
        jobs = self.jobs_path
        if teams is not None:
            jobs = os.path.join(self.tmp, name + ".ndjson")
            with open(self.jobs_path) as src, open(jobs, "w") as dst:
                dst.writelines(line for line in src
                               if line.strip() and json.loads(line)["team_id"] in teams)
        import_into(path, self.fixtures_path, jobs)
        return path

    def served(self, team):
        return [j for j in self.jobs
                if j["team_id"] == team and j.get("engine", "clickhouse") != "duckgres"]

    def current_team(self, key):
        """The team `@current` names for this key's owner (API.md section 1, as the reference
        peer resolves it), or None; packaging/haproxy/current-team.sql does the same."""
        fx = self.fixtures
        user_id = next(k["user_id"] for k in fx["personal_api_keys"] if k["key"] == key)
        user = next(u for u in fx["users"] if u["id"] == user_id)
        if user.get("current_team_id") in {t["id"] for t in fx["teams"]}:
            return user["current_team_id"]
        orgs = {o["id"] for o in fx["organizations"]}
        member_of = {m["organization_id"] for m in fx["organization_memberships"]
                     if m["user_id"] == user_id and m["organization_id"] in orgs}
        org = user.get("current_organization_id")
        if org is None:
            org = min(member_of, default=None)  # lowercase hex: text order is UUID order
        if org not in member_of:
            return None
        return min((t["id"] for t in fx["teams"] if t["organization_id"] == org), default=None)

    def current_team_map(self, path):
        """HAProxy's map for `@current`: "<hex sha256 of the key> <team>" per key, made by
        packaging/haproxy/current-team.sql when there is a PostgreSQL (and checked against
        current_team()), else by current_team()."""
        lines = sorted("%s %d" % (hashlib.sha256(key.encode()).hexdigest(), team)
                       for key, team in ((k, self.current_team(k)) for k in self.keys.values())
                       if team is not None)
        if self.upstream.pg is not None:
            with open(os.path.join(PACKAGED, "current-team.sql")) as f:
                made = self.upstream.pg.psql(f.read()).splitlines()
            assert made == lines, (made, lines)
        with open(path, "w") as f:
            f.write("".join(line + "\n" for line in lines))
        return path


def replica(db, port=0, extra=()):
    """A dmjd on db, on a free port or the given one."""
    return Server(db, "--threads", "1", "--listen", "127.0.0.1:%d" % port, *extra)


def restart(lb, backend, name, db, port):
    """The replica NAME started again on db: on its old port when that is free within a few
    seconds, else on a new one, given to HAProxy through the runtime API (the old port can
    be taken meanwhile, e.g. as the source port of some outgoing connection)."""
    deadline = time.time() + 5
    while time.time() < deadline:
        try:
            return replica(db, port)
        except AssertionError:
            time.sleep(0.2)
    srv = replica(db)
    answer = lb.command("set server %s/%s addr 127.0.0.1 port %d" % (backend, name, srv.port))
    print("  %s restarted on port %d, not %d: %s" % (name, srv.port, port, answer.strip()))
    return srv


def ask(port, path, key=None, headers=None, method="GET", via_query=False):
    """One request on a fresh connection; (status, headers that matter, body)."""
    h = {"Host": HOST}
    h.update(headers or {})
    if key is not None and via_query:
        path += ("&" if "?" in path else "?") + "personal_api_key=" + urllib.parse.quote(key)
        key = None
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        res, body = get(c, path, key, method=method, headers=h)
    finally:
        c.close()
    kept = {name: res.getheader(name) for name in (
        "Content-Type", "Allow", "WWW-Authenticate", "Retry-After", "Content-Length")}
    return res.status, kept, body, res.getheader("ETag")


# ---- h2load -------------------------------------------------------------------------------

def h2load_with_kill(urls, key, h1, victim, sig, name):
    """h2load through HAProxy on the urls (in turn); sends `sig` to the victim replica once
    30% of the requests are done. Every request must have succeeded with a 2xx. Returns
    h2load's summary counters."""
    cmd = [tool("h2load"), "-n", str(REQUESTS), "-c", "20", "-m", "1",
           "-H", "Authorization: Bearer " + key, *urls]
    if h1:
        cmd.insert(1, "--h1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = []
    killed_at = None
    try:
        for line in proc.stdout:
            out.append(line)
            if killed_at is None and line.startswith("progress: 30% done"):
                victim.proc.send_signal(sig)
                killed_at = len(out)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = "".join(out)
    assert killed_at is not None, "h2load never reached 30%%: %s" % text[-2000:]
    assert proc.returncode == 0, text[-2000:]
    counts = {}
    for pattern in (r"requests: (?P<total>\d+) total, (?P<started>\d+) started, "
                    r"(?P<done>\d+) done, (?P<succeeded>\d+) succeeded, (?P<failed>\d+) failed, "
                    r"(?P<errored>\d+) errored, (?P<timeout>\d+) timeout",
                    r"status codes: (?P<s2xx>\d+) 2xx, (?P<s3xx>\d+) 3xx, (?P<s4xx>\d+) 4xx, "
                    r"(?P<s5xx>\d+) 5xx"):
        m = re.search(pattern, text)
        assert m, text[-2000:]
        counts.update({k: int(v) for k, v in m.groupdict().items()})
    # Mid-run: the replica died while h2load still had requests to send.
    assert any(line.startswith("progress: 40% done") for line in out[killed_at:]) or \
        counts["failed"], "killed after the run: " + text
    print("  %s %s under h2load %s: %s" % (
        name, "SIGKILLed" if sig == signal.SIGKILL else "stopped by SIGTERM",
        "--h1" if h1 else "(h2c)", counts))
    assert counts["done"] == counts["total"] == REQUESTS, counts
    assert counts["succeeded"] == REQUESTS, counts
    assert counts["failed"] == counts["errored"] == counts["timeout"] == 0, counts
    assert counts["s2xx"] == REQUESTS, counts
    return counts


def served_requests(srv):
    """Requests the replica answered on its API endpoints (from its own /metrics)."""
    c = srv.conn()
    try:
        return sum(v for (name, labels), v in metrics(c).items()
                   if name == "dmj_http_requests_total" and 'endpoint="metrics"' not in labels
                   and 'endpoint="health"' not in labels)  # HAProxy's checks
    finally:
        c.close()


# ---- cases ---------------------------------------------------------------------------------

def case_kill_under_load(store, tmp, upstream):
    """Two replicas of the whole store. Three times: h2load through HAProxy (HTTP/1.1 on the
    list, h2c on a retrieve, HTTP/1.1 on a retrieve) with a key, and the replica that key is
    sent to SIGKILLed in the middle (the second time a key of the other replica, if one of
    the keys is; the third time stopped by SIGTERM, as in a rolling restart); not one failed
    request. Then the replica is restarted on its port, checked back in, and the key's
    requests go to it again."""
    data = Data(store, tmp, upstream)
    keys = [data.keys[k] for k in ("read", "star", "bob_read", "org1_only", "team1_only")]
    job = data.served(1)[0]["id"]
    stores = {"dmj1": data.copy("full1"), "dmj2": data.copy("full2")}
    with contextlib.ExitStack() as running:  # each replica stopped by SIGTERM, cleanly
        replicas = {name: running.enter_context(replica(db)) for name, db in stores.items()}
        ports = {name: srv.port for name, srv in replicas.items()}
        with HAProxy(tmp, "dmjd-replicas.cfg", ports) as lb:
            base = "http://127.0.0.1:%d/api/environments/1/data_modeling_jobs/" % lb.port
            killed = set()
            for h1, url, sig in ((True, base + "?limit=5", signal.SIGKILL),
                                 (False, base + job + "/", signal.SIGKILL),
                                 (True, base + job, signal.SIGTERM)):
                homes = {home_of(lb, replicas, k): k for k in reversed(keys)}
                name = next((n for n in sorted(homes) if n not in killed), min(homes))
                key = homes[name]
                killed.add(name)
                h2load_with_kill([url], key, h1, replicas[name], sig, name)
                if sig == signal.SIGKILL:
                    replicas[name].kill()  # reaped
                else:
                    code, err = replicas[name].stop()
                    assert code == 0 and not err.strip(), (code, err)
                lb.wait_state(name, "DOWN", 30)
                row = lb.stats()[("dmjd", name)]
                print("  %s: %s retries, %s redispatches, %s check failures" % (
                    name, row.get("wretr"), row.get("wredis"), row.get("chkfail")))
                # Meanwhile the key is served by the other replica.
                assert home_of(lb, replicas, key, alive=False) != name

                # Restarted on its port, it is checked back in and gets the key back.
                replicas[name] = running.enter_context(
                    restart(lb, "dmjd", name, stores[name], ports[name]))
                ports[name] = replicas[name].port
                lb.wait_state(name, "UP", 30)
                assert home_of(lb, replicas, key) == name
            print("  killed: %s" % sorted(killed))


def team_paths(data):
    """Requests whose answers depend on the team: every endpoint under both prefixes, for
    every team, two that nobody has, and spellings of an id that Python's int() takes."""
    paths = []
    for team in list(range(1, TEAMS + 1)) + [6, 1234567]:
        for prefix in ("environments", "projects"):
            base = "/api/%s/%d/data_modeling_jobs/" % (prefix, team)
            paths += [base, base + "?limit=7", base + "recent/", base + "running",
                      base + "?limit=3&saved_query_id=not-a-uuid"]
            jobs = data.served(team)
            if jobs:
                paths += [base + jobs[0]["id"] + "/", base + jobs[-1]["id"],
                          base + "?saved_query_id=%s&limit=4" % jobs[0]["saved_query_id"]]
    other = data.served(1)[0]["id"]
    paths += ["/api/environments/2/data_modeling_jobs/%s/" % other,  # team 1's job under 2
              "/api/environments/%32/data_modeling_jobs/?limit=2",
              "/api/projects/%2B3/data_modeling_jobs/?limit=2",
              "/api/projects/%203%20/data_modeling_jobs/?limit=2",
              "/api/environments/0_4/data_modeling_jobs/?limit=2",
              "/api/environments/-2/data_modeling_jobs/",
              "/api/environments/x2/data_modeling_jobs/",
              "/api/environments/1/../2/data_modeling_jobs/",  # dmjd does not resolve dots
              "/api/environments/1/%2e%2e/2/data_modeling_jobs/",
              "/api/environments/@current/data_modeling_jobs/?limit=5",
              "/api/projects/@current/data_modeling_jobs/recent/",
              "/api/environments/1", "/api/", "/_health", "/nope", "/api/schema/"]
    return paths


def walk(port, path, key):
    """Every page of a list, following `next`; the bodies."""
    pages = []
    while path is not None:
        status, _, body, _ = ask(port, path, key)
        assert status == 200, (path, status, body[:300])
        pages.append(body)
        nxt = json.loads(body)["next"]
        path = None
        if nxt is not None:
            assert nxt.startswith("http://%s/" % HOST), nxt
            path = nxt[len("http://" + HOST):]
    return pages


def case_team_split(store, tmp, upstream):
    """Even teams' jobs on two replicas, odd on two others, HAProxy routing on the team id in
    the path (and `@current` through the key map): the same bytes as one dmjd with every
    team, for every key, endpoint and team, 404 for teams nobody has. Then h2load on an even
    and an odd team while the even replica serving the key is SIGKILLed: no failed request."""
    data = Data(store, tmp, upstream)
    with contextlib.ExitStack() as running:
        ref = running.enter_context(replica(data.full))
        shards = {name: running.enter_context(replica(data.copy(name, parity)))
                  for name, parity in (("even1", 0), ("even2", 0), ("odd1", 1), ("odd2", 1))}
        keymap = data.current_team_map(os.path.join(tmp, "current-team.map"))
        servers = {name: srv.port for name, srv in shards.items()}
        with HAProxy(tmp, "dmjd-teams.cfg", servers,
                     {"/etc/haproxy/dmj-current-team.map": keymap}) as lb:
            compared = etags_equal = 0
            keys = [data.keys[k] for k in ("read", "team1_only", "bob_read", "erin_read",
                                           "carol_read", "dave_read", "wrong_scope")]
            for path in team_paths(data):
                for key in keys + [None, "phx_nobody"]:
                    for via_query in ((False, True) if key == data.keys["read"] else (False,)):
                        want = ask(ref.port, path, key, via_query=via_query)
                        got = ask(lb.port, path, key, via_query=via_query)
                        assert got[:3] == want[:3], (path, key, via_query, got[0], want[0],
                                                     got[2][:300], want[2][:300])
                        compared += 1
                        etags_equal += got[3] == want[3]
            etags = "%d of %d" % (etags_equal, compared)
            # Every page of every team, walked through HAProxy, is the single dmjd's page.
            for team in range(1, TEAMS + 1):
                for prefix in ("environments", "projects"):
                    path = "/api/%s/%d/data_modeling_jobs/?limit=150" % (prefix, team)
                    got = walk(lb.port, path, data.keys["read"])
                    assert got == walk(ref.port, path, data.keys["read"]), (prefix, team)
                    n = sum(len(json.loads(p)["results"]) for p in got)
                    assert n == len(data.served(team)), (team, n)
                    compared += len(got)
            # The routing is what makes them equal: the other shard has none of team 2's jobs.
            status, _, body, _ = ask(shards["odd1"].port,
                                     "/api/environments/2/data_modeling_jobs/",
                                     data.keys["read"])
            assert status == 200 and json.loads(body)["results"] == [], (status, body[:200])
            assert data.served(2), "team 2 has no jobs in this data"
            print("  %d answers compared byte for byte; ETags equal in %s" % (compared, etags))

            key = data.keys["read"]
            evens = {name: srv for name, srv in shards.items() if name.startswith("even")}
            victim = home_of(lb, evens, key, team=2)
            urls = ["http://127.0.0.1:%d/api/environments/%d/data_modeling_jobs/?limit=3"
                    % (lb.port, team) for team in (2, 1)]
            h2load_with_kill(urls, key, True, shards[victim], signal.SIGKILL, victim)
            shards[victim].kill()
            lb.wait_state(victim, "DOWN", 30)
            assert home_of(lb, evens, key, alive=False, team=2) != victim


def case_same_answers(store, tmp, upstream):
    """Through HAProxy (two replicas) and direct to the key's replica: the same status,
    headers, bytes and ETags, for several keys, in the header or the query. A key sticks to
    one replica, so that its conditional requests meet the ETags of the store that made them:
    ETags come from each store's id and last transaction id, so the same bytes carry another
    validator on the other replica (a 200 where the key's own replica says 304), and a store
    that committed something more never answers 304 to another's validator."""
    data = Data(store, tmp, upstream)
    stores = {"dmj1": data.copy("full1"), "dmj2": data.copy("full2")}
    with contextlib.ExitStack() as running:
        replicas = {name: running.enter_context(replica(db)) for name, db in stores.items()}
        direct = replicas["dmj1"].port
        with HAProxy(tmp, "dmjd-replicas.cfg", {n: r.port for n, r in replicas.items()}) as lb:
            paths = ["/api/environments/1/data_modeling_jobs/?limit=5",
                     "/api/projects/2/data_modeling_jobs/recent/",
                     "/api/environments/3/data_modeling_jobs/running/",
                     "/api/environments/9/data_modeling_jobs/", "/api/schema/", "/_health"]
            homes = set()
            for label in ("read", "star", "bob_read", "erin_read", "team1_only", "org1_only"):
                key = data.keys[label]
                home = home_of(lb, replicas, key)
                homes.add(home)
                for path in paths:
                    for via_query in (False, True):
                        want = ask(replicas[home].port, path, key, via_query=via_query)
                        got = ask(lb.port, path, key, via_query=via_query)
                        assert got == want, (label, path, via_query, got[:2], want[:2])
                    head = ask(lb.port, path, key, method="HEAD")
                    assert head[0] == want[0] and head[2] == b"", (path, head)
                    assert head[1] == ask(replicas[home].port, path, key)[1], (path, head)
            assert homes == set(replicas), "six keys, all on %s" % homes
            # The file as shipped, daemon, chroot and user lines included, is valid as it is.
            if user_exists("haproxy"):
                res = subprocess.run([tool("haproxy"), "-c", "-f",
                                      os.path.join(PACKAGED, "dmjd-replicas.cfg")],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                assert res.returncode == 0, res.stdout
            # Requests without a key are spread.
            before = {name: served_requests(srv) for name, srv in replicas.items()}
            for _ in range(10):
                assert ask(lb.port, paths[0])[0] == 401
            assert all(served_requests(srv) > before[name] for name, srv in replicas.items())
            # Each replica is scraped directly: through HAProxy, /metrics is dmjd's own 404;
            # HAProxy's own exporter tells which replicas are up.
            assert ask(lb.port, "/metrics")[:3] == ask(direct, "/nope")[:3]
            status, _, body, _ = ask(lb.stats_port, "/metrics")
            up = re.findall(rb'haproxy_server_status\{proxy="dmjd",server="(\w+)",state="UP"\} 1',
                            body)
            assert status == 200 and sorted(up) == [b"dmj1", b"dmj2"], (status, up)

            key = data.keys["read"]
            home = home_of(lb, replicas, key)
            other = next(name for name in replicas if name != home)
            path = paths[0]
            _, _, body, etag = ask(lb.port, path, key)
            twin = ask(replicas[other].port, path, key)
            assert etag and twin[2] == body and twin[3] != etag, (etag, twin[3])
            # One more commit in the other replica's store (the same fixtures again): still the
            # same bytes, never a 304 for the first replica's validator there; through HAProxy
            # the key still meets its own replica.
            import_into(stores[other], data.fixtures_path)
            res = ask(replicas[other].port, path, key, {"If-None-Match": etag})
            assert res[0] == 200 and res[3] != etag, res[:2]
            assert res[2] == ask(replicas[home].port, path, key)[2]
            assert ask(replicas[home].port, path, key, {"If-None-Match": etag})[0] == 304
            for _ in range(4):
                status, _, body, _ = ask(lb.port, path, key, {"If-None-Match": etag})
                assert status == 304 and body == b"", (status, body[:200])


def home_of(lb, replicas, key, n=6, alive=True, team=1):
    """The replica HAProxy sends this key's requests for the team to: n requests with the key
    in the Authorization header and n with it in the query must all reach that one.
    alive=False: some replicas are dead (not asked for their counters)."""
    replicas = {name: srv for name, srv in replicas.items()
                if alive or srv.proc.poll() is None}
    before = {name: served_requests(srv) for name, srv in replicas.items()}
    for via_query in (False, True):
        for _ in range(n):
            status = ask(lb.port, "/api/environments/%d/data_modeling_jobs/?limit=1" % team,
                         key, via_query=via_query)[0]
            assert status in (200, 403), status
    moved = {name: served_requests(srv) - before[name] for name, srv in replicas.items()}
    homes = [name for name, count in moved.items() if count]
    assert len(homes) == 1 and moved[homes[0]] == 2 * n, moved
    return homes[0]


def case_tls_and_forwarded_proto(store, tmp, upstream):
    """The shipped TLS bind: ALPN h2 and http/1.1, and dmjd told the request came over TLS
    (its links say https), the same bytes as a direct request saying so itself. Over plain
    HTTP a client's own X-Forwarded-Proto is not passed on."""
    data = Data(store, tmp, upstream)
    key = data.keys["read"]
    path = "/api/environments/1/data_modeling_jobs/?limit=2"
    pair = make_cert(tmp)
    pem = None
    if pair is not None:
        pem = os.path.join(tmp, "dmj.pem")
        with open(pem, "w") as out:
            for part in pair:
                with open(part) as f:
                    out.write(f.read())
    else:
        print("  no openssl: the TLS bind is not tried")
    with replica(data.copy("full1")) as srv:
        with HAProxy(tmp, "dmjd-replicas.cfg", {"dmj1": srv.port, "dmj2": srv.port},
                     pem=pem) as lb:
            https = {"X-Forwarded-Proto": "https"}
            direct_plain, direct_https = ask(srv.port, path, key), ask(srv.port, path, key, https)
            assert json.loads(direct_https[2])["next"].startswith("https://" + HOST)
            assert ask(lb.port, path, key, https)[:3] == direct_plain[:3]
            if pem is None:
                return
            for offer, want in ((["h2", "http/1.1"], "h2"), (["http/1.1"], "http/1.1")):
                with socket.create_connection(("127.0.0.1", lb.tls_port), timeout=30) as raw:
                    with tls_context(pair[0], offer).wrap_socket(
                            raw, server_hostname="localhost") as tls:
                        assert tls.selected_alpn_protocol() == want, (offer, want)
            c = http.client.HTTPSConnection("localhost", lb.tls_port, timeout=30,
                                            context=tls_context(pair[0], ["http/1.1"]))
            try:
                for headers in ({"Host": HOST}, {"Host": HOST, "X-Forwarded-Proto": "http"}):
                    res, body = get(c, path, key, headers=headers)
                    assert (res.status, body) == (direct_https[0], direct_https[2]), body[:300]
            finally:
                c.close()


def open_events(port, key):
    """A connection that has asked for team 1's events/ stream (HTTP/1.1, by hand: the
    answer never ends)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.sendall(("GET /api/environments/1/data_modeling_jobs/events/ HTTP/1.1\r\nHost: %s\r\n"
                  "Authorization: Bearer %s\r\n\r\n" % (HOST, key)).encode())
    return sock


def case_idle_stream(store, tmp, upstream):
    """An idle events/ stream through HAProxy outlives HAProxy's client and server timeouts
    thanks to dmjd's keep-alive lines (here every second, against timeouts of 4 s: in the
    shipped file 15 s against 75 s)."""
    data = Data(store, tmp, upstream)
    with replica(data.full, extra=("--events-keepalive", "1")) as srv:
        with HAProxy(tmp, "dmjd-replicas.cfg", {"dmj1": srv.port, "dmj2": srv.port},
                     timeouts="4s") as lb:
            with open_events(lb.port, data.keys["read"]) as events:
                # Read until the stream has been idle for twice the timeouts and carried at
                # least 8 keep-alive lines: slowness only makes it longer (the 60 s socket
                # timeout and the 300 s bound only stop a hung test).
                seen = b""
                started = time.time()
                while seen.count(b": keep-alive") < 8 or time.time() - started < 8:
                    assert time.time() - started < 300, seen[-500:]
                    chunk = events.recv(4096)
                    assert chunk, "HAProxy closed an idle stream: %r" % seen[-500:]
                    seen += chunk
                assert seen.startswith(b"HTTP/1.1 200"), seen[:200]


def case_follow(store, tmp, upstream):
    """Replicas that follow PostgreSQL, each with its own `dmj sync` running: a job updated
    (Running -> Completed), one inserted and one deleted in PostgreSQL show on both replicas
    within a few sync intervals, and then through HAProxy every answer is the same. A
    long-poll of running/ and an events/ stream opened through HAProxy before the change
    are answered with it. (Last: it changes the upstream data.)"""
    if upstream.pg is None:
        if os.environ.get("DMJ_TEST_REPLICAS_IMPORT"):
            print("  not run: " + upstream.why)
        else:
            need.missing("case_follow (replicas following PostgreSQL): " + upstream.why)
        return
    data = Data(store, tmp, upstream)
    key = data.keys["read"]
    updated = next(j["id"] for j in data.served(1) if j["status"] == "Running" and
                   (j.get("workflow_id") or "").startswith("materialize"))  # in running/
    deleted = data.served(2)[0]["id"]
    source = data.served(3)[0]["id"]
    inserted = "6d6d6a00-0000-4000-8000-000000000001"
    stores = {"dmj1": data.copy("full1"), "dmj2": data.copy("full2")}
    with contextlib.ExitStack() as running:
        replicas = {name: running.enter_context(replica(db)) for name, db in stores.items()}
        syncs = [running.enter_context(subprocess.Popen(
            upstream.sync(db, None, "--interval", "0.2", "--full-every", "2"),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
            for db in stores.values()]
        running.callback(stop_all, syncs)
        with HAProxy(tmp, "dmjd-replicas.cfg", {n: r.port for n, r in replicas.items()}) as lb:
            base = "/api/environments/1/data_modeling_jobs/"
            status, _, body, etag = ask(lb.port, base + "running/", key)
            assert status == 200 and updated in {j["id"] for j in json.loads(body)}, status
            polled = {}

            def long_poll():
                polled["answer"] = ask(lb.port, base + "running/?wait=25", key,
                                       {"If-None-Match": etag})

            poller = threading.Thread(target=long_poll)
            poller.start()
            running.callback(poller.join)
            events = running.enter_context(open_events(lb.port, key))
            head = b""
            while b"\r\n\r\n" not in head:  # open (headers sent) before the change
                chunk = events.recv(4096)
                assert chunk, head
                head += chunk
            assert head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head, head

            columns = pg_helper.JOB_COLUMNS.split(", ")
            copied = ", ".join("'%s'::uuid" % inserted if c == "id" else
                               "now()" if c in ("created_at", "updated_at") else c
                               for c in columns)
            upstream.pg.execute(
                "update posthog_datamodelingjob set status = 'Completed', updated_at = now() "
                "where id = '%s';"
                "insert into posthog_datamodelingjob (%s) select %s from "
                "posthog_datamodelingjob where id = '%s';"
                "delete from posthog_datamodelingjob where id = '%s';"
                % (updated, pg_helper.JOB_COLUMNS, copied, source, deleted))
            checks = [("/api/environments/1/data_modeling_jobs/%s/" % updated,
                       lambda st, body: st == 200 and json.loads(body)["status"] == "Completed"),
                      ("/api/environments/3/data_modeling_jobs/?limit=1",
                       lambda st, body: st == 200 and
                       json.loads(body)["results"][0]["id"] == inserted),
                      ("/api/environments/2/data_modeling_jobs/%s/" % deleted,
                       lambda st, body: st == 404)]
            started = time.time()
            for srv in replicas.values():
                deadline = time.time() + 60
                while not all(ok(*ask(srv.port, path, key)[0:3:2]) for path, ok in checks):
                    assert time.time() < deadline, "a replica did not follow within 60 s"
                    time.sleep(0.1)
            print("  both replicas followed in %.1f s" % (time.time() - started))
            poller.join(60)
            status, _, body, _ = polled["answer"]
            assert status == 200 and updated not in {j["id"] for j in json.loads(body)}, status
            seen = head
            while b"event: status_changed" not in seen or updated.encode() not in seen:
                chunk = events.recv(65536)
                assert chunk, seen[-2000:]
                seen += chunk
            for path, ok in checks:
                want = ask(replicas["dmj1"].port, path, key)[:3]
                assert ask(replicas["dmj2"].port, path, key)[:3] == want, path
                for _ in range(4):
                    assert ask(lb.port, path, key)[:3] == want, path
        for proc in syncs:
            assert stop_all([proc]) == [0], proc.stderr.read()[-2000:]


def stop_all(procs):
    """SIGTERM to each process still running, then its exit status (SIGKILL after 30 s)."""
    codes = []
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
        try:
            codes.append(proc.wait(timeout=30))
        except subprocess.TimeoutExpired:
            proc.kill()
            codes.append(proc.wait())
    return codes


CASES = [case_same_answers, case_tls_and_forwarded_proto, case_idle_stream, case_team_split,
         case_kill_under_load, case_follow]


def main():
    tool("haproxy")
    tool("h2load")
    upstream = Upstream()
    print("replicas fed by " + ("dmj sync from one PostgreSQL" if upstream.pg else
                                "dmj import (%s)" % upstream.why))
    try:
        cases = []
        for case in CASES:
            def bound(store, tmp, case=case):
                case(store, tmp, upstream)
            bound.__name__ = case.__name__
            cases.append(bound)
        return run_cases(cases, "dmj-test-replicas-", jobs=JOBS, teams=TEAMS)
    finally:
        upstream.close()


if __name__ == "__main__":
    sys.exit(main())
