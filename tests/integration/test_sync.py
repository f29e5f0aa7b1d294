#!/usr/bin/python3
"""dmj sync against a real PostgreSQL 15: a full sync equals the table field by field; while
`dmj sync --interval 0.5` runs and dmjd serves the store, inserts, Running -> Completed and
deletions show in dmjd's answers; SIGKILL at seeded random moments during a stream of changes
loses and duplicates nothing; unchanged cycles commit nothing; --identities gives working
keys, and what PostgreSQL deletes (memberships, teams, keys, users) is deleted from the store
(and dmjd's answers); --teams and --teams-mod keep only those teams; a bad CONNINFO or a
missing table fails in one line.
Skipped (77) when PostgreSQL 15's binaries are missing."""

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pg_helper  # noqa: E402
from dmjtest import LIST, Server, binary, get, run, run_cases  # noqa: E402
from sync_helper import (SLOW, Syncer, assert_store_equals_table, file_digest,  # noqa: E402
                         poll, setup_pg, store_rows, store_stats, sync)

# ---- cases ---------------------------------------------------------------------------------

def case_full_sync_equals_table(_store, tmp):
    pg, _ = setup_pg(tmp)
    try:
        # Rows with a NULL updated_at come in through the full comparison.
        pg.execute("update posthog_datamodelingjob set updated_at = null"
                   " where rows_materialized % 13 = 0")
        assert int(pg.psql("select count(*) from posthog_datamodelingjob"
                           " where updated_at is null")) > 0
        # Rows whose team was deleted (team_id NULL in PostHog) have no team to be served in:
        # not stored, and not a reason for a comparison or a message on every cycle.
        pg.execute("insert into posthog_datamodelingjob (id, team_id, status, rows_materialized,"
                   " created_at, updated_at) values (md5('noteam1')::uuid, null, 'Failed', 0,"
                   " now(), now()), (md5('noteam2')::uuid, null, 'Failed', 0, now(), null)")
        db = os.path.join(tmp, "db")
        err = sync(pg, db, "--batch", "500")
        assert "upserted" in err and "watermark" in err, err
        n = assert_store_equals_table(db, pg, "where team_id is not null")
        assert n > 3000, n
        # The row_to_json text really had the +05:30 offset the conversion must undo.
        assert "+05:30" in pg.psql("select row_to_json(j) from posthog_datamodelingjob j limit 1")

        # Unchanged: nothing said, nothing committed (the data file is byte-identical).
        before = file_digest(os.path.join(db, "data.mdb"))
        err = sync(pg, db)
        assert err == "", "an unchanged cycle printed %r" % err
        assert file_digest(os.path.join(db, "data.mdb")) == before, "an unchanged cycle wrote"

        # Changes of every kind, one cycle: update, insert, delete, a NULL updated_at row
        # changed, a late row (committed with an updated_at far before the watermark).
        pg.execute("""
            update posthog_datamodelingjob set status = 'Completed', rows_materialized = 42,
                   updated_at = now() where status = 'Running';
            delete from posthog_datamodelingjob where rows_materialized % 11 = 0;
            insert into posthog_datamodelingjob (id, team_id, status, rows_materialized,
                   created_at, updated_at)
            values (md5('new1')::uuid, 1, 'Running', 0, now(), now()),
                   (md5('late')::uuid, 2, 'Failed', 1, now(), '2020-01-01'),
                   (md5('nullupd')::uuid, 2, 'Completed', 5, now(), null);
            """)
        err = sync(pg, db)
        assert "deleted" in err, err
        assert_store_equals_table(db, pg, "where team_id is not null")
    finally:
        pg.stop()


def case_live_follow_with_dmjd(_store, tmp):
    pg, keys = setup_pg(tmp)
    db = os.path.join(tmp, "db")
    try:
        sync(pg, db, "--identities")
        syncer = Syncer(pg, db, "--interval", "0.5", "--identities")
        try:
            with Server(db, "--threads", "2") as srv:
                conn = srv.conn()
                key = keys["read"]

                def detail(jid):
                    res, body = get(conn, LIST + jid + "/", key)
                    return res.status, json.loads(body) if body else None

                new = str(uuid.UUID(hashlib.md5(b"live-new").hexdigest()))
                pg.execute("insert into posthog_datamodelingjob (id, team_id, status,"
                           " rows_materialized, created_at, updated_at, workflow_id) values"
                           " ('%s', 1, 'Running', 0, now(), now(), 'materialize-live')" % new)
                st, body = poll("inserted job served", lambda: (
                    lambda r: r if r[0] == 200 else None)(detail(new)), 30 * SLOW)
                assert body["status"] == "Running" and body["rows_materialized"] == 0, body

                pg.execute("update posthog_datamodelingjob set status = 'Completed',"
                           " rows_materialized = 1234, updated_at = now() where id = '%s'" % new)
                st, body = poll("Running -> Completed served", lambda: (
                    lambda r: r if r[1] and r[1].get("status") == "Completed" else None)(
                        detail(new)), 30 * SLOW)
                assert body["rows_materialized"] == 1234, body

                gone = pg.psql("select id from posthog_datamodelingjob where team_id = 1 and"
                               " engine = 'clickhouse' order by id limit 1")
                assert detail(gone)[0] == 200
                pg.execute("delete from posthog_datamodelingjob where id = '%s'" % gone)
                poll("deleted job gone", lambda: detail(gone)[0] == 404, 30 * SLOW)
        finally:
            err = syncer.stop_cleanly()
        assert "upserted" in err and "deleted 1" in err, err
        assert_store_equals_table(db, pg)
    finally:
        pg.stop()


def case_sigkill_at_random_moments(_store, tmp):
    pg, _ = setup_pg(tmp, jobs=10000)
    db = os.path.join(tmp, "db")
    rng = random.Random(8)
    stop = threading.Event()
    errors = []

    def changes():
        # A stream of inserts, status moves and deletions while dmj sync is killed.
        n = 0
        try:
            while not stop.is_set():
                n += 1
                pg.execute("""
                    insert into posthog_datamodelingjob (id, team_id, status, rows_materialized,
                           created_at, updated_at)
                    values (md5('stream%d')::uuid, 1 + %d %% 2, 'Running', 0, now(), now());
                    update posthog_datamodelingjob set status = 'Completed',
                           rows_materialized = %d, updated_at = now()
                    where id = (select id from posthog_datamodelingjob where status = 'Running'
                                order by id limit 1);
                    delete from posthog_datamodelingjob
                    where id = (select id from posthog_datamodelingjob
                                order by md5(id::text || '%d') limit 1);
                    """ % (n, n, n, n))
                time.sleep(0.02)
        except Exception as e:  # reported by the main thread
            errors.append(e)

    try:
        sigkill_rounds(pg, db, rng, changes, stop, errors)
    finally:
        pg.stop()


def sigkill_rounds(pg, db, rng, changes, stop, errors):
    at_kill = []
    t = threading.Thread(target=changes)
    t.start()
    try:
        for i in range(10):
            before = store_stats(db)
            s = Syncer(pg, db, "--interval", "0.2", "--batch", "500")
            if i % 2 == 0:
                # Aimed: killed once this run has committed (the store's figures moved), so
                # that kills surely land between commits, the first ones mid initial copy.
                deadline = time.time() + 120 * SLOW  # only stops a hung sync
                while store_stats(db) == before and s.proc.poll() is None:
                    assert time.time() < deadline, "dmj sync committed nothing in 120 s"
                    time.sleep(0.002)
            else:
                time.sleep(rng.uniform(0.05, 0.6) * min(SLOW, 2))
            s.proc.kill()
            s.proc.wait()
            s.proc.stderr.close()
            # The store stays consistent after every kill (once the first run created it).
            if os.path.exists(os.path.join(db, "data.mdb")):
                run(binary("dmj"), "verify", "--db", db)
                stats = run(binary("dmj"), "stats", "--db", db).stdout
                at_kill.append(int(stats.split("\n")[1].split()[0]))
    finally:
        stop.set()
        t.join()
    print("jobs stored at each kill:", at_kill)
    assert not errors, errors
    # At least one kill after some commits of the initial copy and before its last batch.
    mid = [n for n in at_kill if 0 < n <= 10000 - 500]
    assert mid, "no kill landed between the initial copy's commits: %r" % at_kill
    sync(pg, db)
    n = assert_store_equals_table(db, pg)
    assert n > 10000, n


def case_identities_give_working_keys(_store, tmp):
    pg, keys = setup_pg(tmp)
    db = os.path.join(tmp, "db")
    try:
        sync(pg, db, "--identities")
        raw = "phx_" + "SyncCreatedKey0123456789abcdefghijklmnopqrstuvw"
        secure = "sha256$" + hashlib.sha256(raw.encode()).hexdigest()
        with Server(db, "--threads", "1") as srv:
            conn = srv.conn()
            res, _ = get(conn, LIST, keys["read"])
            assert res.status == 200, res.status
            res, _ = get(conn, LIST, raw)
            assert res.status == 401, "a key not in PostgreSQL yet: %d" % res.status
        pg.execute("insert into posthog_personalapikey (id, user_id, label, secure_value, scopes)"
                   " values ('synckey', 2, 'sync', '%s', '{warehouse_view:read}')" % secure)
        before = file_digest(os.path.join(db, "data.mdb"))
        err = sync(pg, db, "--identities")
        assert "identities updated" in err, err
        assert file_digest(os.path.join(db, "data.mdb")) != before
        with Server(db, "--threads", "1") as srv:
            conn = srv.conn()
            res, body = get(conn, LIST, raw)
            assert res.status == 200, "key created in PostgreSQL: %d %r" % (res.status, body[:200])
            # bob (user 2) is in organization 1 only: team 2 is not his.
            res, _ = get(conn, LIST.replace("/1/", "/2/"), raw)
            assert res.status in (403, 404), res.status
        # The same identities again: no write.
        before = file_digest(os.path.join(db, "data.mdb"))
        assert sync(pg, db, "--identities") == ""
        assert file_digest(os.path.join(db, "data.mdb")) == before
        # A key deleted in PostgreSQL, and a user deleted with their keys, stop working.
        pg.execute("delete from posthog_personalapikey where id = 'synckey';"
                   " delete from posthog_personalapikey where user_id = 5;"
                   " delete from posthog_organizationmembership where user_id = 5;"
                   " delete from posthog_user where id = 5")
        err = sync(pg, db, "--identities")
        assert "revoked" in err and ", 0 revoked" not in err, err
        with Server(db, "--threads", "1") as srv:
            conn = srv.conn()
            for k in (raw, keys["erin_read"]):
                res, body = get(conn, LIST, k)
                assert res.status == 401, "a deleted key: %d %r" % (res.status, body[:200])
            res, _ = get(conn, LIST, keys["read"])
            assert res.status == 200, res.status
    finally:
        pg.stop()


def case_identity_deletions(_store, tmp):
    """What PostgreSQL deletes, a running `dmj sync --identities` deletes from the store, and
    dmjd's answers follow within a few cycles: a membership (403 on that organization's teams,
    the others still 200), a team (404), a key (401), a user (401 for their keys). Identities
    sync never saw (a key made by `dmj keys create`, a team imported by `dmj import`) stay;
    `dmj keys revoke` deletes such a key. The store verifies after each step."""
    pg, keys = setup_pg(tmp, jobs=600)
    db = os.path.join(tmp, "db")
    try:
        sync(pg, db, "--identities")
        org1 = pg.psql("select organization_id from posthog_team where id = 1")
        local_key = run(binary("dmj"), "keys", "create", "--db", db, "--user", "1",
                        "--scopes", "warehouse_view:read").stdout.strip()
        local = os.path.join(tmp, "local.ndjson")
        with open(local, "w") as f:
            f.write(json.dumps({"kind": "team", "id": 77, "project_id": 77,
                                "organization_id": org1, "name": "Local"}) + "\n")
        run(binary("dmj"), "import", "--db", db, local)
        syncer = Syncer(pg, db, "--interval", "0.5", "--identities")
        try:
            with Server(db, "--threads", "2") as srv:
                conn = srv.conn()

                def status(team, key):
                    res, _ = get(conn, LIST.replace("/1/", "/%d/" % team), key)
                    return res.status

                def becomes(what, team, key, want):
                    poll(what, lambda: status(team, key) == want, 30 * SLOW)
                    run(binary("dmj"), "verify", "--db", db)

                for team, key in ((1, "read"), (2, "read"), (2, "erin_read"), (1, "star"),
                                  (1, "bob_read")):
                    assert status(team, keys[key]) == 200, (team, key, status(team, keys[key]))
                assert status(1, local_key) == 200 and status(77, keys["read"]) == 200

                pg.execute("delete from posthog_organizationmembership where user_id = 1 and"
                           " organization_id = (select organization_id from posthog_team"
                           " where id = 2)")
                becomes("403 once alice left team 2's organization", 2, keys["read"], 403)
                assert status(1, keys["read"]) == 200

                # PostHog's SET_NULL on the jobs: they leave the store with the team.
                pg.execute("update posthog_datamodelingjob set team_id = null where team_id = 2;"
                           " delete from posthog_team where id = 2")
                becomes("404 for a deleted team", 2, keys["erin_read"], 404)
                poll("the deleted team's jobs gone", lambda: all(
                    r["team_id"] != 2 for r in store_rows(db).values()), 30 * SLOW)

                pg.execute("delete from posthog_personalapikey where label = 'star'")
                becomes("401 for a deleted key", 1, keys["star"], 401)
                assert status(1, keys["read"]) == 200

                # Only the user row: their key stays in PostgreSQL, and in the store.
                pg.execute("delete from posthog_user where id = 2")
                becomes("401 for a deleted user's key", 1, keys["bob_read"], 401)
                bob = "sha256$" + hashlib.sha256(keys["bob_read"].encode()).hexdigest()
                run(binary("dmj"), "keys", "check", "--db", db, bob)

                # What sync never wrote is not its to delete.
                assert status(1, local_key) == 200 and status(77, keys["read"]) == 200
                # ... but `dmj keys revoke` deletes a local key (a second time: not found).
                run(binary("dmj"), "keys", "revoke", "--db", db, local_key)
                becomes("401 for a revoked local key", 1, local_key, 401)
                res = subprocess.run([binary("dmj"), "keys", "revoke", "--db", db, local_key],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                assert res.returncode == 1 and "no such key" in res.stderr, res.stderr
        finally:
            err = syncer.stop_cleanly()
        assert "revoked" in err and "warning" not in err, err
        # Of the fixtures' keys, the store has exactly those PostgreSQL has.
        in_pg = set(pg.psql("select secure_value from posthog_personalapikey").split("\n"))
        for label, raw in keys.items():
            secure = "sha256$" + hashlib.sha256(raw.encode()).hexdigest()
            res = subprocess.run([binary("dmj"), "keys", "check", "--db", db, secure],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            assert (res.returncode == 0) == (secure in in_pg), (label, res.returncode)
        run(binary("dmj"), "verify", "--db", db)
        # Nothing left to do: the next pass writes nothing.
        before = file_digest(os.path.join(db, "data.mdb"))
        assert sync(pg, db, "--identities") == ""
        assert file_digest(os.path.join(db, "data.mdb")) == before
    finally:
        pg.stop()


def case_teams_filter(_store, tmp):
    pg, _ = setup_pg(tmp, jobs=3000, teams=3)
    db = os.path.join(tmp, "db")
    try:
        sync(pg, db)  # every team first: --teams must then remove the others
        assert {r["team_id"] for r in store_rows(db).values()} >= {1, 2}
        sync(pg, db, "--teams", "1,3")
        n = assert_store_equals_table(db, pg, "where team_id in (1, 3)")
        assert n > 0 and {r["team_id"] for r in store_rows(db).values()} <= {1, 3}
        # Changes in another team do not reach this replica.
        pg.execute("update posthog_datamodelingjob set status = 'Failed', updated_at = now()"
                   " where team_id = 2")
        assert sync(pg, db, "--teams", "1,3") == ""
        for bad in ("", "1,x", "-1", ",", "1,,2"):
            res = subprocess.run([binary("dmj"), "sync", "--postgres", pg.conninfo, "--db", db,
                                  "--once", "--teams", bad], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
            assert res.returncode != 0 and "--teams" in res.stderr, (bad, res.stderr)
        # A shard by modulo (HAProxy's mod(N)): team 2 of 1..3 is the even shard.
        sync(pg, db, "--teams-mod", "2:0")
        n = assert_store_equals_table(db, pg, "where team_id % 2 = 0")
        assert n > 0 and {r["team_id"] for r in store_rows(db).values()} == {2}
        # Both filters: only what both allow (team 3 of {1, 3} is odd).
        sync(pg, db, "--teams", "1,3", "--teams-mod", "2:1")
        n = assert_store_equals_table(db, pg, "where team_id in (1, 3)")
        assert n > 0 and {r["team_id"] for r in store_rows(db).values()} <= {1, 3}
        sync(pg, db, "--teams", "1,2", "--teams-mod", "2:1")
        n = assert_store_equals_table(db, pg, "where team_id = 1")
        assert n > 0 and {r["team_id"] for r in store_rows(db).values()} == {1}
        for bad in ("2", "0:0", "2:2", "2:-1", "x:1", "2:", ":1"):
            res = subprocess.run([binary("dmj"), "sync", "--postgres", pg.conninfo, "--db", db,
                                  "--once", "--teams-mod", bad], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
            assert res.returncode != 0 and "--teams-mod" in res.stderr, (bad, res.stderr)
    finally:
        pg.stop()


def case_errors(_store, tmp):
    db = os.path.join(tmp, "db")
    sock = os.path.join(tmp, "nowhere")
    os.mkdir(sock)
    res = subprocess.run([binary("dmj"), "sync", "--postgres", "host=%s port=1" % sock,
                          "--db", db, "--once"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, timeout=60)
    assert res.returncode == 1, res.returncode
    lines = res.stderr.strip().split("\n")
    assert len(lines) == 1 and "PostgreSQL" in lines[0] and "connect" in lines[0], res.stderr
    res = subprocess.run([binary("dmj"), "sync", "--postgres", "not a = valid conninfo '",
                          "--db", db, "--once"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, timeout=60)
    assert res.returncode == 1 and len(res.stderr.strip().split("\n")) == 1, res.stderr

    pg = pg_helper.Postgres()
    try:
        err = sync(pg, db, expect=1)
        assert "posthog_datamodelingjob" in err and "does not exist" in err, err
        assert len(err.strip().split("\n")) == 1, err
        # Without --once: retried with backoff until the table exists, then synced.
        s = Syncer(pg, db, "--interval", "0.3")
        try:
            time.sleep(1)
            assert s.proc.poll() is None, "dmj sync gave up without --once"
            pg.create_schema()
            pg.execute("insert into posthog_datamodelingjob (id, team_id, status,"
                       " rows_materialized, created_at, updated_at)"
                       " values (md5('x')::uuid, 1, 'Running', 0, now(), now())")
            poll("the row after the table appeared",
                 lambda: len(store_rows(db)) == 1, 60 * SLOW)
            # A lost connection (the backend killed): reconnected, and the next row comes.
            killed = pg.psql("select count(pg_terminate_backend(pid)) from pg_stat_activity"
                             " where application_name = 'dmj sync'")
            assert killed == "1", "dmj sync's connection not found: %r" % killed
            pg.execute("insert into posthog_datamodelingjob (id, team_id, status,"
                       " rows_materialized, created_at, updated_at)"
                       " values (md5('y')::uuid, 1, 'Running', 0, now(), now())")
            poll("the row after the connection was lost",
                 lambda: len(store_rows(db)) == 2, 60 * SLOW)
            assert s.proc.poll() is None, "dmj sync exited after a lost connection"
        finally:
            code, err = s.stop(signal.SIGINT)
        assert code == 0, (code, err)
        assert "retrying" in err and "does not exist" in err, err
        assert "terminat" in err or "connection" in err, err
    finally:
        pg.stop()


def main():
    if not os.access(os.path.join(pg_helper.PGBIN, "initdb"), os.X_OK):
        print("skipped: %s/initdb not found (Debian's postgresql-15 is not installed)"
              % pg_helper.PGBIN)
        return 77
    cases = [case_full_sync_equals_table, case_live_follow_with_dmjd,
             case_sigkill_at_random_moments, case_identities_give_working_keys,
             case_identity_deletions, case_teams_filter, case_errors]
    only = os.environ.get("DMJ_TEST_CASE")  # one case by name, while working on it
    if only:
        cases = [c for c in cases if c.__name__ == only]
    # The shared runner's store is not used: each case builds its own from PostgreSQL.
    return run_cases(cases, "dmj-test-sync-", jobs=10, teams=1)


if __name__ == "__main__":
    sys.exit(main())
