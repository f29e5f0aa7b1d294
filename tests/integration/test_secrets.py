#!/usr/bin/python3
"""Secrets stay off command lines: `dmj sync` reads its connection string from
--postgres-file, $DMJ_POSTGRES or libpq's own sources (PGPASSFILE here) and syncs from a
PostgreSQL that requires a password, which never shows in /proc/<pid>/cmdline of the running
process; a --postgres-file others can read is warned about; --postgres still works and warns
when it holds a password (keyword or URI), and not otherwise; `dmj keys check -` and
`dmj keys revoke -` read the key from standard input.
The sync cases are skipped when PostgreSQL 15's binaries are missing; the keys case runs
anyway."""

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pg_helper  # noqa: E402
from dmjtest import Store, binary, generate, run, run_case, sanitized  # noqa: E402

SLOW = 4 if sanitized() else 1
USER = "dmj_reader"


class PasswordPostgres:
    """pg_helper's PostgreSQL with a role that must give a password (scram-sha-256) on the
    socket and on TCP, and a few jobs."""

    def __init__(self, tmp):
        self.pg = pg_helper.Postgres()
        try:
            self.password = "pw-" + secrets.token_hex(12)
            pg = self.pg
            pg.create_schema()
            jobs, fixtures = generate(tmp, "jobs", 40, 2)
            pg.load_jobs(jobs)
            pg.load_fixtures(fixtures)
            pg.execute("set password_encryption = 'scram-sha-256';"
                       "create role %s login password '%s';"
                       "grant select on all tables in schema public to %s;"
                       % (USER, self.password, USER))
            hba = os.path.join(pg.data, "pg_hba.conf")
            with open(hba) as f:
                rules = f.read()
            with open(hba, "w") as f:
                f.write("local all %s scram-sha-256\nhost all %s 127.0.0.1/32 scram-sha-256\n"
                        % (USER, USER) + rules)
            pg.execute("select pg_reload_conf()")
            self.jobs = int(pg.psql("select count(*) from posthog_datamodelingjob"))
            # without the password the role is refused: the cases below really used it
            code, _, err = pg.try_psql("select 1", "-U", USER, "-w")
            deadline = time.time() + 10
            while code == 0 and time.time() < deadline:  # the reload is asynchronous
                time.sleep(0.1)
                code, _, err = pg.try_psql("select 1", "-U", USER, "-w")
            assert code != 0 and "password" in err, (code, err)
        except BaseException:
            self.pg.stop()
            raise
        self.base = "host=%s port=%d dbname=postgres user=%s" % (pg.sock, pg.port, USER)
        self.with_password = self.base + " password=" + self.password
        self.uri = "postgresql://%s:%s@/postgres?host=%s&port=%d" % (
            USER, self.password, pg.sock, pg.port)

    def stop(self):
        self.pg.stop()


def stored_jobs(db):
    res = run(binary("dmj"), "export", "--db", db)
    return sum(1 for line in res.stdout.split("\n") if line.strip())


def cmdline(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return f.read()


def sync_running(pgp, db, args, env=None):
    """Runs `dmj sync ARGS --interval 0.2` until the store holds every job, checking the
    process's command line all along; returns its stderr."""
    full_env = dict(os.environ)
    for k in list(full_env):
        if k.startswith("PG") or k == "DMJ_POSTGRES":
            del full_env[k]
    full_env.update(env or {})
    proc = subprocess.Popen([binary("dmj"), "sync", "--db", db, "--interval", "0.2", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=full_env)
    seen = []
    try:
        deadline = time.time() + 60 * SLOW
        while True:
            assert proc.poll() is None, "dmj sync exited %d: %s" % (
                proc.returncode, proc.stderr.read().decode(errors="replace"))
            line = cmdline(proc.pid)
            seen.append(line)
            assert pgp.password.encode() not in line, "password in cmdline: %r" % line
            if os.path.exists(os.path.join(db, "data.mdb")) and stored_jobs(db) == pgp.jobs:
                break
            assert time.time() < deadline, "dmj sync did not copy the table in time"
            time.sleep(0.1)
        assert pgp.password.encode() not in cmdline(proc.pid)
        assert any(b"sync" in s for s in seen), seen  # the process read really was dmj sync
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60 * SLOW)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    assert proc.returncode == 0, (proc.returncode, err)
    return err


def write_private(path, text, mode=0o600):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, mode)


# ---- cases ---------------------------------------------------------------------------------

def case_postgres_file(pgp, tmp):
    conf = os.path.join(tmp, "pg.conninfo")
    write_private(conf, pgp.with_password + "\n# a second line is not read\n")
    err = sync_running(pgp, os.path.join(tmp, "db"), ["--postgres-file", conf])
    assert "warning" not in err, err
    # readable by others: it still works, and says so
    os.chmod(conf, 0o644)
    err = sync_running(pgp, os.path.join(tmp, "db2"), ["--postgres-file", conf])
    assert "warning" in err and conf in err and "readable" in err, err
    assert pgp.password not in err, err
    # a URI on the first line, CRLF line end
    write_private(conf, pgp.uri + "\r\n")
    err = sync_running(pgp, os.path.join(tmp, "db3"), ["--postgres-file", conf])
    assert "warning" not in err, err
    # a missing file: one line, exit 1, the path named
    res = subprocess.run([binary("dmj"), "sync", "--db", os.path.join(tmp, "db4"), "--once",
                          "--postgres-file", os.path.join(tmp, "nope")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert res.returncode == 1 and "nope" in res.stderr, (res.returncode, res.stderr)
    # both spellings at once: a usage error
    res = subprocess.run([binary("dmj"), "sync", "--once", "--postgres-file", conf,
                          "--postgres", pgp.base], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    assert res.returncode == 2, (res.returncode, res.stderr)


def case_env_dmj_postgres(pgp, tmp):
    err = sync_running(pgp, os.path.join(tmp, "db"), [],
                       env={"DMJ_POSTGRES": pgp.with_password})
    assert "warning" not in err, err


def case_libpq_sources(pgp, tmp):
    """No conninfo at all: PG* variables name the server and PGPASSFILE gives the password."""
    passfile = os.path.join(tmp, "pgpass")
    write_private(passfile, "*:*:*:%s:%s\n" % (USER, pgp.password))
    env = {"PGHOST": pgp.pg.sock, "PGPORT": str(pgp.pg.port), "PGDATABASE": "postgres",
           "PGUSER": USER, "PGPASSFILE": passfile}
    err = sync_running(pgp, os.path.join(tmp, "db"), [], env=env)
    assert "warning" not in err, err
    # the same with the password file gone fails: the password really came from it
    os.unlink(passfile)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    full_env.update(env)
    res = subprocess.run([binary("dmj"), "sync", "--db", os.path.join(tmp, "db2"), "--once"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=full_env)
    assert res.returncode == 1 and "password" in res.stderr, (res.returncode, res.stderr)


def case_postgres_option_warns(pgp, tmp):
    for i, conninfo in enumerate([pgp.with_password, pgp.uri]):
        res = subprocess.run([binary("dmj"), "sync", "--db", os.path.join(tmp, "db%d" % i),
                              "--once", "--postgres", conninfo], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, timeout=120 * SLOW)
        assert res.returncode == 0, (res.returncode, res.stderr)
        warn = [line for line in res.stderr.split("\n") if "warning" in line]
        assert len(warn) == 1 and "password" in warn[0], res.stderr
        assert pgp.password not in res.stderr, res.stderr
        assert stored_jobs(os.path.join(tmp, "db%d" % i)) == pgp.jobs
    # no password in it (the postgres role is trusted): no warning
    res = subprocess.run([binary("dmj"), "sync", "--db", os.path.join(tmp, "db9"), "--once",
                          "--postgres", pgp.pg.conninfo], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, timeout=120 * SLOW)
    assert res.returncode == 0 and "warning" not in res.stderr, (res.returncode, res.stderr)


def case_keys_from_stdin(store, tmp):
    key = store.keys["read"]
    other = store.keys["write"]

    def keys(*args, stdin):
        return subprocess.run([binary("dmj"), "keys", *args, "--db", store.dir], input=stdin,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    by_arg = keys("check", key, stdin="")
    assert by_arg.returncode == 0, by_arg.stderr
    for line_end in ("\n", "", "\r\n"):
        res = keys("check", "-", stdin=key + line_end)
        assert res.returncode == 0 and res.stdout == by_arg.stdout, (res.returncode, res.stdout,
                                                                     res.stderr)
    # a stored hash on stdin names the same key
    hash_line = by_arg.stdout.rsplit("hash ", 1)[1].strip()
    assert hash_line.startswith("sha256$"), by_arg.stdout
    res = keys("check", "-", stdin=hash_line + "\n")
    assert res.returncode == 0 and res.stdout == by_arg.stdout, res.stderr
    # only the first line counts; an unknown key is exit 1; nothing on stdin is exit 1
    res = keys("check", "-", stdin="phx_nosuchkey\n" + key + "\n")
    assert res.returncode == 1 and "no such key" in res.stderr, (res.returncode, res.stderr)
    res = keys("check", "-", stdin="")
    assert res.returncode == 1, (res.returncode, res.stderr)
    # revoke -: the key is gone, the other one stays
    res = keys("revoke", "-", stdin=key + "\n")
    assert res.returncode == 0 and "revoked" in res.stderr, (res.returncode, res.stderr)
    assert key not in res.stderr and key not in res.stdout
    assert keys("check", "-", stdin=key + "\n").returncode == 1
    assert keys("check", "-", stdin=other + "\n").returncode == 0
    res = keys("revoke", "-", stdin=key + "\n")
    assert res.returncode == 1 and "no such key" in res.stderr, (res.returncode, res.stderr)


def main():
    binary("dmj")
    tmp = tempfile.mkdtemp(prefix="dmj-test-secrets-")
    failed = total = 0
    only = os.environ.get("DMJ_TEST_CASE")

    def attempt(case, arg):
        nonlocal failed, total
        if only and case.__name__ != only:
            return
        total += 1
        failed += not run_case(case, arg, tmp)

    pgp = None
    try:
        attempt(case_keys_from_stdin, Store(os.path.join(tmp, "keys"), jobs=20, teams=1))
        if not os.access(os.path.join(pg_helper.PGBIN, "initdb"), os.X_OK):
            print("skipped the sync cases: %s/initdb not found" % pg_helper.PGBIN)
        else:
            pgp = PasswordPostgres(tmp)
            for case in (case_postgres_file, case_env_dmj_postgres, case_libpq_sources,
                         case_postgres_option_warns):
                attempt(case, pgp)
    finally:
        if pgp:
            pgp.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d of %d cases failed" % (failed, total))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
