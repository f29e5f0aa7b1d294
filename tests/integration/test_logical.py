#!/usr/bin/python3
"""`dmj sync` by logical replication against a real PostgreSQL 15 (wal_level=logical):

- a randomized stream of inserts, updates (status moves, large incompressible values that
  PostgreSQL TOASTs, ids that change), deletes, truncates and a new column, in concurrent
  transactions, some committing late with an old or a NULL updated_at (what polling can
  miss), while `dmj sync` is SIGKILLed at 20 random moments and restarted: afterwards the
  store equals the table field by field, `dmj verify` is clean, and the number of changes
  the store says it applied equals the number of row changes PostgreSQL committed after the
  slot was made (a trigger counts them), so none was missed or applied twice;
- dmjd serving the replica while it follows: a retrieve, a held `running/?wait=` long-poll
  and an events/ stream wake on streamed changes; a key deleted in PostgreSQL stops working;
- SIGTERM during the first copy: no position for a copy cut short, a new copy next time;
- the choice of mode (a user without REPLICATION polls and says why; --logical then fails
  saying why), --status, --drop-slot (the slot leaves the server, the next run copies
  anew), --slot names, and the slot's position following what the store holds.
Skipped (77) when PostgreSQL 15's binaries are missing."""

import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pg_helper  # noqa: E402
from dmjtest import (EVENTS, LIST, RUNNING, Server, Stream, binary, get, run,  # noqa: E402
                     run_cases)
from sync_helper import (SLOW, Syncer, assert_store_equals_table, poll,  # noqa: E402
                         setup_pg, store_rows, sync)

COUNTER = """
create table dmj_test_changes (n int);
create function dmj_test_count() returns trigger language plpgsql as $$
begin insert into dmj_test_changes values (1); return null; end $$;
create trigger dmj_test_rows after insert or update or delete on posthog_datamodelingjob
    for each row execute function dmj_test_count();
create trigger dmj_test_truncate after truncate on posthog_datamodelingjob
    for each statement execute function dmj_test_count();
"""


def state(db):
    """`dmj sync --status`: {"sync.logical": [slot, lsn, applied], ...}."""
    out = run(binary("dmj"), "sync", "--status", "--db", db).stdout
    return {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}


def lsn(text):
    hi, lo = text.split("/")
    return int(hi, 16) << 32 | int(lo, 16)


class Writers:
    """Threads committing random changes to the job table until stopped."""

    def __init__(self, pg, seed, threads=3):
        self.pg = pg
        self.stop = threading.Event()
        self.errors = []
        self.done = [0] * threads
        self.threads = [threading.Thread(target=self.loop, args=(i, random.Random(seed + i)))
                        for i in range(threads)]
        self.truncated = threading.Event()

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join()
        assert not self.errors, self.errors

    def txn(self, i, rng):
        n = self.done[i]
        tag = "w%d-%d" % (i, n)
        pick = rng.random()
        some = ("(select id from posthog_datamodelingjob where team_id is not null"
                " order by md5(id::text || '%s') limit %d)" % (tag, rng.randint(1, 3)))
        if i == 0 and n == 40:
            # once, mid-stream: the whole table goes, and comes back in the same commit
            self.truncated.set()
            return ("begin; truncate posthog_datamodelingjob;"
                    " insert into posthog_datamodelingjob (id, team_id, status,"
                    " rows_materialized, created_at, updated_at) select md5('t' || g)::uuid,"
                    " 1 + g % 2, 'Completed', g, now(), now() from generate_series(1, 300) g;"
                    " commit")
        if pick < 0.3:
            return ("insert into posthog_datamodelingjob (id, team_id, status,"
                    " rows_materialized, created_at, updated_at, workflow_id) values"
                    " (md5('%s')::uuid, %d, 'Running', 0, now(), now(), 'materialize-%s')"
                    % (tag, 1 + n % 2, tag))
        if pick < 0.6:
            status = rng.choice(["Completed", "Failed", "Cancelled", "Running"])
            return ("update posthog_datamodelingjob set status = '%s', rows_materialized ="
                    " rows_materialized + 1, updated_at = now() where id in %s"
                    % (status, some))
        if pick < 0.7:
            # a value PostgreSQL stores out of line (TOAST), then an update that keeps it
            return ("update posthog_datamodelingjob set error = (select string_agg("
                    "md5(g::text || '%s'), '') from generate_series(1, 200) g),"
                    " updated_at = now() where id in %s;"
                    " update posthog_datamodelingjob set rows_materialized = 7 where id in %s"
                    % (tag, some, some))
        if pick < 0.8:
            return "delete from posthog_datamodelingjob where id in %s" % some
        if pick < 0.85:
            # commits late with an updated_at long past, or none: what polling can miss
            when = rng.choice(["'2001-01-01'", "null"])
            return ("begin; update posthog_datamodelingjob set status = 'Failed',"
                    " updated_at = %s where id in %s; select pg_sleep(%.2f); commit"
                    % (when, some, rng.uniform(0.2, 1.5)))
        if pick < 0.88:
            return ("update posthog_datamodelingjob set id = md5(id::text || '%s')::uuid"
                    " where id in %s" % (tag, some))
        if pick < 0.9:
            return ("update posthog_datamodelingjob set team_id = null where id in %s" % some)
        # several rows of one transaction, one of them twice
        return ("begin; insert into posthog_datamodelingjob (id, team_id, status,"
                " rows_materialized, created_at, updated_at) values (md5('%s')::uuid, 2,"
                " 'Running', 0, now(), now()); update posthog_datamodelingjob set status ="
                " 'Completed' where id = md5('%s')::uuid; update posthog_datamodelingjob set"
                " status = 'Failed' where id in %s; commit" % (tag, tag, some))

    def loop(self, i, rng):
        try:
            while not self.stop.is_set():
                code, _, err = self.pg.try_psql(self.txn(i, rng))
                # two writers locking the same rows in other orders: one is rolled back
                assert code == 0 or "deadlock detected" in err, err
                self.done[i] += 1
                time.sleep(rng.uniform(0, 0.03))
        except Exception as e:  # reported by finish()
            self.errors.append(e)


def catch_up(pg, db):
    """`dmj sync --once --logical`: applies what the server has written, then exits. The
    test cluster commits asynchronously (synchronous_commit=off), so a commit may return
    before its WAL is written: a checkpoint writes it first."""
    pg.execute("checkpoint")
    return sync(pg, db, mode="--logical")


def assert_exactly_once(pg, db):
    counted = int(pg.psql("select count(*) from dmj_test_changes"))
    applied = int(state(db)["sync.logical"][2])
    assert counted > 0 and applied == counted, (
        "PostgreSQL committed %d row changes since the slot was made, the store applied %d"
        % (counted, applied))
    return counted


def case_stream_with_kills(_store, tmp):
    pg, _ = setup_pg(tmp, jobs=3000, wal_level="logical")
    db = os.path.join(tmp, "db")
    rng = random.Random(17)
    try:
        err = sync(pg, db, mode=None)
        assert "slot dmj_" in err and "following" in err and "polling" not in err, err
        slot = state(db)["sync.logical"][0]
        assert_store_equals_table(db, pg, "where team_id is not null")
        pg.execute(COUNTER)
        pg.execute("alter table posthog_datamodelingjob add column added_later text")
        writers = Writers(pg, seed=5).start()
        at_kill = []
        try:
            for k in range(20):
                s = Syncer(pg, db, mode="--logical")
                before = state(db)["sync.logical"][1]
                if k % 2 == 0:
                    # aimed: once this run has committed something (the position moved)
                    deadline = time.time() + 60 * SLOW
                    while (state(db)["sync.logical"][1] == before and s.proc.poll() is None
                           and time.time() < deadline):
                        time.sleep(0.005)
                else:
                    time.sleep(rng.uniform(0.05, 1.0))
                assert s.proc.poll() is None, s.stop()
                s.proc.kill()
                s.proc.wait()
                s.proc.stderr.close()
                run(binary("dmj"), "verify", "--db", db)
                at_kill.append(state(db)["sync.logical"][1:])
        finally:
            writers.finish()
        print("position and changes applied at each kill:", at_kill, "transactions:", writers.done)
        assert writers.truncated.is_set(), "the stream held no TRUNCATE"
        assert len({tuple(a) for a in at_kill}) >= 10, "the kills landed on few positions"
        catch_up(pg, db)
        n = assert_store_equals_table(db, pg, "where team_id is not null")
        counted = assert_exactly_once(pg, db)
        print("%d jobs, %d row changes applied exactly once through 20 kills" % (n, counted))
        # A second catch-up with nothing new: nothing applied, nothing changed.
        catch_up(pg, db)
        assert assert_exactly_once(pg, db) == counted
        # The server was told what the store holds: the slot's position is the store's.
        confirmed = pg.psql("select confirmed_flush_lsn from pg_replication_slots"
                            " where slot_name = '%s'" % slot)
        assert lsn(confirmed) >= lsn(state(db)["sync.logical"][1]), (
            confirmed, state(db)["sync.logical"])
    finally:
        pg.stop()


def case_dmjd_follows_the_stream(_store, tmp):
    pg, keys = setup_pg(tmp, jobs=500, wal_level="logical")
    db = os.path.join(tmp, "db")
    try:
        sync(pg, db, "--identities", mode=None)
        syncer = Syncer(pg, db, "--identities", mode=None)
        try:
            with Server(db, "--threads", "2") as srv:
                conn = srv.conn()
                key = keys["read"]
                res, body = get(conn, RUNNING + "?wait=30", key)
                assert res.status == 200, res.status
                etag = res.getheader("ETag")
                stream = Stream(srv.port, EVENTS % 1, key)
                assert stream.status == 200, stream.status

                # a held long-poll, answered by a streamed insert of a running job
                held = {}

                def long_poll():
                    c = srv.conn()
                    r, b = get(c, RUNNING + "?wait=30", key, headers={"If-None-Match": etag})
                    held["status"], held["body"] = r.status, b

                t = threading.Thread(target=long_poll)
                t.start()
                time.sleep(0.3)
                new = str(uuid.uuid4())
                started = time.time()
                pg.execute("insert into posthog_datamodelingjob (id, team_id, status,"
                           " rows_materialized, created_at, updated_at, workflow_id) values"
                           " ('%s', 1, 'Running', 0, now(), now(), 'materialize-x')" % new)
                t.join(40)
                assert held.get("status") == 200, held
                assert new in held["body"].decode(), "the long-poll's answer lacks the new job"
                print("long-poll answered %.3fs after the INSERT" % (time.time() - started))
                events = stream.wait_until(lambda ev: any(new in e.get("data", "") for e in ev))
                assert any(e.get("event") == "created" and new in e["data"] for e in events)

                pg.execute("update posthog_datamodelingjob set status = 'Completed',"
                           " updated_at = null where id = '%s'" % new)
                stream.wait_until(lambda ev: any(
                    e.get("event") == "status_changed" and new in e["data"] for e in ev))
                res, body = get(conn, LIST + new + "/", key)
                assert res.status == 200 and json.loads(body)["status"] == "Completed", body

                pg.execute("delete from posthog_datamodelingjob where id = '%s'" % new)
                stream.wait_until(lambda ev: any(
                    e.get("event") == "deleted" and new in e["data"] for e in ev))
                assert get(conn, LIST + new + "/", key)[0].status == 404
                stream.close()

                # identities follow the stream too: a deleted key stops working
                assert get(conn, LIST, keys["star"])[0].status == 200
                pg.execute("delete from posthog_personalapikey where label = 'star'")
                poll("401 for a key deleted in PostgreSQL",
                     lambda: get(conn, LIST, keys["star"])[0].status == 401, 30 * SLOW)
                assert get(conn, LIST, key)[0].status == 200
        finally:
            err = syncer.stop_cleanly()
        assert "changes applied" in err and "identities updated" in err, err
        assert_store_equals_table(db, pg)
    finally:
        pg.stop()


def case_sigterm_during_the_copy(_store, tmp):
    """SIGTERM while the first copy runs: no position is stored for a copy cut short, so the
    next run copies again and the store ends equal to the table."""
    pg, _ = setup_pg(tmp, jobs=200, wal_level="logical")
    db = os.path.join(tmp, "db")
    try:
        pg.execute("insert into posthog_datamodelingjob (id, team_id, status, rows_materialized,"
                   " created_at, updated_at) select md5('bulk' || g)::uuid, 1 + g % 2,"
                   " 'Completed', g, now(), now() from generate_series(1, 60000) g")
        s = Syncer(pg, db, mode="--logical")
        poll("the slot made", lambda: pg.psql("select count(*) from pg_replication_slots") == "1",
             60 * SLOW)
        err = s.stop_cleanly()
        stored = state(db).get("sync.logical")
        print("stopped during the copy: %s" % ("position stored" if stored else "no position"))
        if not stored:
            assert "following" not in err, err
        else:  # the copy won the race: it must then be whole
            assert_store_equals_table(db, pg, "where team_id is not null")
        err = catch_up(pg, db)
        assert ("copying" in err) == (not stored), err
        assert_store_equals_table(db, pg, "where team_id is not null")
    finally:
        pg.stop()


def case_modes_status_and_slots(_store, tmp):
    pg, _ = setup_pg(tmp, jobs=200, wal_level="logical")
    db = os.path.join(tmp, "db")
    try:
        # a user without REPLICATION: polling, and the line says why
        pg.execute("create role plain login; grant select on all tables in schema public"
                   " to plain")
        plain = pg.conninfo.replace("user=postgres", "user=plain")
        res = subprocess.run([binary("dmj"), "sync", "--postgres", plain, "--db", db, "--once"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             timeout=120)
        assert res.returncode == 0, res.stderr
        assert "polling" in res.stderr and "REPLICATION" in res.stderr, res.stderr
        assert "sync.logical" not in state(db) and "sync.watermark" in state(db)
        res = subprocess.run([binary("dmj"), "sync", "--postgres", plain, "--db", db, "--once",
                              "--logical"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, timeout=120)
        assert res.returncode == 1 and "--logical" in res.stderr and \
            "REPLICATION" in res.stderr, res.stderr
        assert pg.psql("select count(*) from pg_publication") == "0", "created a publication"

        # --poll on a server that allows logical replication: polling, no slot
        sync(pg, db, mode="--poll")
        assert pg.psql("select count(*) from pg_replication_slots") == "0"

        # logical: a slot named after the store, a position, a publication
        err = sync(pg, db, mode=None)
        slot, at, applied = state(db)["sync.logical"]
        assert slot.startswith("dmj_") and slot in err and applied == "0", (slot, err)
        assert pg.psql("select slot_name from pg_replication_slots") == slot
        assert pg.psql("select pubname from pg_publication") == "dmj_jobs"
        pg.execute("update posthog_datamodelingjob set status = 'Failed' where team_id = 1")
        changed = int(pg.psql("select count(*) from posthog_datamodelingjob where team_id = 1"))
        catch_up(pg, db)
        assert int(state(db)["sync.logical"][2]) == changed
        assert lsn(state(db)["sync.logical"][1]) > lsn(at)
        assert_store_equals_table(db, pg, "where team_id is not null")

        # a second replica store: a slot of its own
        db2 = os.path.join(tmp, "db2")
        sync(pg, db2, mode="--logical")
        assert pg.psql("select count(*) from pg_replication_slots") == "2"
        assert state(db2)["sync.logical"][0] != slot

        # --drop-slot: gone from the server and the store; the next run copies anew
        run(binary("dmj"), "sync", "--drop-slot", "--postgres", pg.conninfo, "--db", db2)
        assert pg.psql("select slot_name from pg_replication_slots") == slot
        assert "sync.logical" not in state(db2)
        err = sync(pg, db2, mode="--logical")
        assert "copying" in err, err
        # a slot dropped behind the store's back: a new copy, said so
        pg.psql("select pg_drop_replication_slot('%s')" % slot)
        err = sync(pg, db, mode="--logical")
        assert "is gone" in err and "copying" in err, err
        assert_store_equals_table(db, pg, "where team_id is not null")

        for bad in ("", "Upper", "a-b", "x" * 64):
            res = subprocess.run([binary("dmj"), "sync", "--db", db, "--once", "--slot", bad],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            assert res.returncode != 0 and "--slot" in res.stderr, (bad, res.stderr)
        res = subprocess.run([binary("dmj"), "sync", "--db", db, "--logical", "--poll"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert res.returncode != 0 and "exclude" in res.stderr, res.stderr
        run(binary("dmj"), "verify", "--db", db)
        assert len(store_rows(db)) > 0
    finally:
        pg.stop()


def main():
    if not os.access(os.path.join(pg_helper.PGBIN, "initdb"), os.X_OK):
        print("skipped: %s/initdb not found (Debian's postgresql-15 is not installed)"
              % pg_helper.PGBIN)
        return 77
    cases = [case_stream_with_kills, case_dmjd_follows_the_stream, case_sigterm_during_the_copy,
             case_modes_status_and_slots]
    only = os.environ.get("DMJ_TEST_CASE")
    if only:
        cases = [c for c in cases if c.__name__ == only]
    return run_cases(cases, "dmj-test-logical-", jobs=10, teams=1)


if __name__ == "__main__":
    sys.exit(main())
