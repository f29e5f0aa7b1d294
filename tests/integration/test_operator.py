"""An operator's first day with the built binaries: a first key without guesswork (keys
create, list, check and revoke by id; scopes checked), --version and dmj_build_info, SIGHUP
reopening the access log, the metrics listener kept out of the access log, DMJ_DB from a
defaults file, what import says it did (identities, the --pg-copy hint and refusal), the help
text, prune's warning on a synced store, timestamps on dmj sync's lines, and a restart with
--reuse-port during which a client requesting all the time sees no failed request."""

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pg_helper  # noqa: E402
from dmjtest import Checks, Server, binary, dmj, first_lines, generate, get  # noqa: E402

T = Checks("dmj-operator-")
check = T.check
LIST = "/api/environments/%d/data_modeling_jobs/"


def jobs_store(name, jobs=40, teams=2):
    """A store of jobs only (no identities), as a first import from PostgreSQL leaves it."""
    db = T.path(name)
    out, _ = generate(T.tmp, name, jobs, teams)
    dmj("import", "--db", db, out)
    return db


def test_first_key():
    db = jobs_store("first")
    team = json.loads(dmj("export", "--db", db).stdout.splitlines()[0])["team_id"]
    p = dmj("keys", "create", "--db", db, "--user", 5, "--scopes", "warehouse_view:read",
            expect=1)
    err = p.stderr.decode()
    m = re.search(r"^  (dmj keys create .*)$", err, re.M)
    check(p.stdout == b"" and m is not None, "a key for a missing user is refused with a command")
    check(("--team %d" % team) in err, "the command names a team the store has jobs of")
    check("dmj keys: 0 keys" in dmj("keys", "list", "--db", db).stderr.decode(),
          "nothing was stored by the refusal")
    # the printed command, as printed
    args = m.group(1).split()[1:]
    args = [a.strip("'") for a in args]
    p = dmj(*args)
    key = p.stdout.decode().strip()
    check(key.startswith("phx_") and "made user 5" in p.stderr.decode(),
          "the suggested command makes the identities and the key")
    with Server(db) as srv:
        res, body = get(srv.conn(), LIST % team + "?limit=2", key)
        check(res.status == 200 and len(json.loads(body)["results"]) == 2,
              "the first key answers 200 (%d)" % res.status)
    # scopes
    p = dmj("keys", "create", "--db", db, "--user", 5, "--scopes", "bogus:read", expect=1)
    check(b"not a PostHog scope" in p.stderr, "an unknown scope is refused")
    p = dmj("keys", "create", "--db", db, "--user", 5, "--scopes", "insight:read", expect=1)
    check(b"none of them reaches" in p.stderr, "a key with no scope for these endpoints: refused")
    p = dmj("keys", "create", "--db", db, "--user", 5, "--scopes",
            "warehouse_view:read,insight:read")
    check(b"warning: scope insight:read" in p.stderr, "PostHog's other scopes: a warning")
    p = dmj("keys", "create", "--db", db, "--user", 5, "--teams", "999", "--scopes", "*",
            expect=1)
    check(b"--team 999" in p.stderr and b"--teams 999" in p.stderr,
          "a team the user cannot reach: refused, the command keeps --teams")
    # list, check and revoke by the printed id
    p = dmj("keys", "list", "--db", db)
    lines = p.stdout.decode().splitlines()
    check(len(lines) == 2 and all("user 5" in line for line in lines), "keys list: both keys")
    check(all(re.search(r", created \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z, ", line)
              for line in lines), "keys list: when keys create made each key: %r" % lines)
    created = dmj("keys", "create", "--db", db, "--user", 5, "--scopes", "*")
    kid = re.search(r"key id (\S+)", created.stderr.decode()).group(1)
    check(any(line.startswith("id %s," % kid) for line in
              dmj("keys", "list", "--db", db).stdout.decode().splitlines()),
          "keys list shows the printed id")
    dmj("keys", "check", "--db", db, kid)
    dmj("keys", "revoke", "--db", db, kid)
    dmj("keys", "check", "--db", db, kid, expect=1)
    dmj("keys", "revoke", "--db", db, key)
    with Server(db) as srv:
        res, _ = get(srv.conn(), LIST % team, key)
        check(res.status == 401, "a revoked key gets 401")


def test_version_and_build_info():
    for prog in ("dmj", "dmjd"):
        p = subprocess.run([binary(prog), "--version"], capture_output=True,
                                         text=True)
        check(p.returncode == 0 and re.match(r"%s \d+\.\d+\.\d+( \(git [0-9a-f]+\))?$" % prog,
                                             p.stdout.strip()), "%s --version: %r" % (prog, p.stdout))
    db = jobs_store("version", jobs=5, teams=1)
    with Server(db) as srv:
        res, body = get(srv.conn(), "/metrics")
        check(re.search(rb'^dmj_build_info\{version="[0-9.]+",commit="[0-9a-f]*"\} 1$', body,
                        re.M) is not None, "dmj_build_info in /metrics")


def metrics_port(srv):
    """The port of the `metrics on URL` line that follows the API listener's."""
    line = first_lines(srv.proc, 1, 10)[0]
    m = re.fullmatch(rb"metrics on http://127\.0\.0\.1:(\d+)", line)
    assert m, line
    return int(m.group(1))


def test_sighup_and_metrics_log():
    db = jobs_store("hup", jobs=5, teams=1)
    log = T.path("access.log")
    mport_srv = Server(db, "--access-log", log, "--metrics-listen", "127.0.0.1:0")
    try:
        port = metrics_port(mport_srv)
        mconn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        res, _ = get(mconn, "/metrics")
        check(res.status == 200, "the metrics listener serves")
        get(mport_srv.conn(), "/_health")
        time.sleep(0.2)
        os.rename(log, log + ".1")
        mport_srv.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 5
        while not os.path.exists(log) and time.time() < deadline:
            time.sleep(0.05)
        check(os.path.exists(log), "SIGHUP reopens the access log at its path")
        get(mport_srv.conn(), "/_health?after")
        time.sleep(0.2)
        check(mport_srv.proc.poll() is None, "dmjd survives SIGHUP")
        old = open(log + ".1").read()
        new = open(log).read() if os.path.exists(log) else ""
        check("/_health" in old and "/_health?after" in new and "?after" not in old,
              "lines before SIGHUP in the moved file, after it in the new one")
        check("/metrics" not in old + new, "no access-log line for the metrics listener")
    finally:
        code, err = mport_srv.stop()
        check(code == 0, "dmjd stops cleanly after SIGHUP (%d %s)" % (code, err))
    # asked for
    with Server(db, "--access-log", T.path("m.log"), "--metrics-listen", "127.0.0.1:0",
                "--access-log-metrics") as srv:
        get(http.client.HTTPConnection("127.0.0.1", metrics_port(srv), timeout=10), "/metrics")
        time.sleep(0.2)
        check("/metrics" in open(T.path("m.log")).read(), "--access-log-metrics logs them")


def test_defaults_file():
    db = jobs_store("defaults", jobs=7, teams=1)
    conf = T.write("dmj.default", "# the store of dmj on this host\nDMJ_DB=\"%s\"\n" % db)
    env = dict(os.environ)
    env.pop("DMJ_DB", None)
    env["DMJ_DEFAULTS"] = conf
    p = dmj("stats", env=env)
    check(b"7 jobs" in p.stdout, "dmj reads DMJ_DB from the defaults file")


def test_import_says():
    _, fixtures = generate(T.tmp, "ids", 3, 1)
    p = dmj("import", "--db", T.path("ids-db"), fixtures)
    m = re.search(rb"(\d+) records read, 0 inserted, 0 replaced, (\d+) identities stored",
                  p.stderr)
    check(m is not None and m.group(1) == m.group(2) and int(m.group(1)) > 0,
          "identities counted in the summary: %r" % p.stderr)
    row = {"id": "6e8d0d6c-1111-4111-8111-000000000001", "team_id": 1, "status": "Failed",
           "created_at": "2024-05-01T10:00:00Z", "error": 'say "hi" \u00e9'}
    plain = json.dumps(row) + "\n"
    copy_text = plain.replace("\\", "\\\\")
    f = T.write("copy.txt", copy_text)
    p = dmj("import", "--db", T.path("c1"), f, expect=1)
    check(b"json:" in p.stderr and b"--pg-copy" in p.stderr,
          "a JSON error on COPY text suggests --pg-copy")
    dmj("import", "--db", T.path("c1"), "--pg-copy", f)
    got = json.loads(dmj("export", "--db", T.path("c1")).stdout)
    check(got["error"] == row["error"], "--pg-copy takes COPY text")
    g = T.write("plain.json", plain)
    p = dmj("import", "--db", T.path("c2"), "--pg-copy", g, expect=1)
    check(b"pg-copy:" in p.stderr and b"not PostgreSQL COPY text" in p.stderr,
          "--pg-copy refuses plain JSON")
    p = dmj("import", "--db", T.path("c2"), "--pg-copy", "-", stdin=plain.encode(), expect=1)
    check(b"not PostgreSQL COPY text" in p.stderr, "from standard input too")


def test_help_and_prune_warning():
    out = dmj("--help").stdout.decode()
    check(re.search(r"keys .*create, list, check, revoke", out) is not None,
          "dmj --help lists keys' subcommands")
    check(re.search(r"prune .*change-log", out) is not None, "dmj --help: prune's change log")
    usage = dmj("keys", "--help").stdout.decode()
    check(all(("dmj keys %s" % c) in usage for c in ("create", "list", "check", "revoke")),
          "dmj keys --help: every subcommand")
    db = jobs_store("prune", jobs=10, teams=1)
    p = dmj("prune", "--db", db, "--before", "2100-01-01")
    check(b"warning" not in p.stderr, "no warning on a store sync does not follow")


def test_reuse_port_restart():
    db = jobs_store("restart", jobs=20, teams=1)
    team = json.loads(dmj("export", "--db", db).stdout.splitlines()[0])["team_id"]
    key = dmj("keys", "create", "--db", db, "--user", 1, "--team", team, "--scopes",
              "*").stdout.decode().strip()
    # without --reuse-port a second dmjd cannot bind the port
    with Server(db) as first:
        p = subprocess.run(
            [binary("dmjd"), "--db", db, "--listen", "127.0.0.1:%d" % first.port],
            capture_output=True, text=True, timeout=20)
        check(p.returncode != 0 and "in use" in p.stderr, "a second bind is refused by default")
    # the kernel may hand the closing listener's queued connections to the new one
    migrate = "/proc/sys/net/ipv4/tcp_migrate_req"
    saved = None
    try:
        saved = open(migrate).read().strip()
        open(migrate, "w").write("1")
    except OSError:
        saved = None
    old = Server(db, "--reuse-port")
    port = old.port
    stop = threading.Event()
    results = {"ok": 0, "failed": []}

    def client():
        while not stop.is_set():
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                res, body = get(conn, LIST % team + "?limit=1", key)
                conn.close()
                if res.status == 200:
                    results["ok"] += 1
                else:
                    results["failed"].append(res.status)
            except Exception as e:  # a refused or reset connection is a failed request
                results["failed"].append(repr(e))
    threads = [threading.Thread(target=client) for _ in range(2)]
    new = None
    try:
        for t in threads:
            t.start()
        time.sleep(0.5)
        new = Server(db, "--reuse-port", "--listen", "127.0.0.1:%d" % port)
        time.sleep(0.3)
        code, err = old.stop()
        check(code == 0, "the old dmjd drains and exits 0")
        before = results["ok"]
        time.sleep(0.7)
        check(results["ok"] > before, "the new dmjd serves after the old one left")
    finally:
        stop.set()
        for t in threads:
            t.join()
        if new:
            new.stop()
        old.kill()
        if saved is not None:
            open(migrate, "w").write(saved)
    check(results["ok"] > 100 and not results["failed"],
          "no failed request across the restart (%d ok, failed: %r)" % (
              results["ok"], results["failed"][:5]))


def test_sync_timestamps():
    """dmj sync's lines carry an ISO 8601 UTC timestamp (an unreachable PostgreSQL: --once)."""
    db = jobs_store("sync", jobs=3, teams=1)
    conninfo = T.write("pg.conninfo", "host=127.0.0.1 port=1 dbname=x connect_timeout=2\n")
    os.chmod(conninfo, 0o600)
    p = dmj("sync", "--db", db, "--postgres-file", conninfo, "--once", expect=None)
    lines = [line for line in p.stderr.decode().splitlines() if "dmj sync:" in line]
    check(p.returncode != 0 and lines and all(
        re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z dmj sync: ", line) for line in lines),
        "dmj sync's lines start with a timestamp: %r" % lines)


def test_prune_on_synced_store():
    """prune warns on a store that dmj sync follows (needs PostgreSQL 15)."""
    if not os.path.exists(os.path.join(pg_helper.PGBIN, "initdb")):
        print("test_prune_on_synced_store: skipped (no PostgreSQL 15)")
        return
    pg = pg_helper.Postgres()
    try:
        pg.create_schema()
        jobs, fixtures = generate(T.tmp, "pg", 30, 1)
        pg.load_jobs(jobs)
        conninfo = T.write("pg-synced.conninfo", pg.conninfo + "\n")
        os.chmod(conninfo, 0o600)
        db = T.path("synced")
        p = dmj("sync", "--db", db, "--postgres-file", conninfo, "--once")
        check(re.search(rb"^\d{4}-\d\d-\d\dT[0-9:.]+Z dmj sync: upserted 30", p.stderr, re.M),
              "a cycle's line with its timestamp: %r" % p.stderr)
        p = dmj("prune", "--db", db, "--before", "2100-01-01")
        check(b"warning: dmj sync follows this store" in p.stderr, "prune warns on a synced store")
        p = dmj("sync", "--db", db, "--postgres-file", conninfo, "--once")
        check(b"upserted 30" in p.stderr, "as it says: the next cycle restores them")
    finally:
        pg.stop()


if __name__ == "__main__":
    sys.exit(T.main([test_first_key, test_version_and_build_info, test_sighup_and_metrics_log,
                     test_defaults_file, test_import_says, test_help_and_prune_warning,
                     test_reuse_port_restart, test_sync_timestamps,
                     test_prune_on_synced_store]))
