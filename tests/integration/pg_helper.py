"""A private, throw-away PostgreSQL 15 with PostHog's tables, for the tests that follow it.

Not a test itself (its name does not start with test_): test_sync.py and the replica tests
import it. Usage:

    import pg_helper
    pg = pg_helper.Postgres()           # skips the test (exit 77) when PostgreSQL 15 is missing
    try:
        pg.create_schema()              # posthog_datamodelingjob + identity tables, indexes
        pg.load_jobs("jobs.ndjson")     # `dmj generate` / gen_jobs.py NDJSON (or dmj export)
        pg.load_fixtures("fixtures.json")
        pg.execute("update posthog_datamodelingjob set status = 'Completed' where ...")
        n = int(pg.psql("select count(*) from posthog_datamodelingjob"))
        conninfo = pg.conninfo          # for `dmj sync --postgres CONNINFO`
    finally:
        pg.stop()

API:
- Postgres(tmp=None, tcp=False, timezone="UTC"): initdb + pg_ctl start in a new directory
  under the system temp directory (not under `tmp`, which is accepted and ignored: the server
  runs as `nobody` when we are root, since PostgreSQL refuses root, and `nobody` must reach
  its directory, which a test's mkdtemp (0700) directories do not allow). It listens on a
  unix socket in that directory; with tcp=True also on 127.0.0.1 at a free port (`.port`).
  `timezone` is the server's TimeZone, so row_to_json writes that offset (e.g.
  "Asia/Kolkata" gives +05:30). wal_level="logical" allows logical replication (`dmj sync
  --logical`); synchronous_commit="on" writes a commit's WAL before COMMIT returns (fsync
  stays off), as production servers do. Also usable as a context manager.
- .conninfo: a libpq connection string ("host=<socket dir> port=<port> user=postgres
  dbname=postgres"); .tcp_conninfo the same over TCP when tcp=True.
- .psql(sql, *extra_args): runs `sql` with psql -At (unaligned, tuples only), ON_ERROR_STOP;
  returns stdout with the final newline stripped; raises AssertionError on failure.
- .execute(sql): the same, returning nothing (several statements allowed).
- .try_psql(sql): (exit status, stdout, stderr) without raising.
- .create_schema(): PostHog's posthog_datamodelingjob (every column PostHog has, team_id
  nullable as there (SET_NULL when a team is deleted), with its
  primary key and indexes, plus an index on (updated_at, id)), posthog_organization,
  posthog_team, posthog_user, posthog_organizationmembership, posthog_personalapikey (the
  columns dmj reads, with PostHog's types: scopes/scoped_* are PostgreSQL arrays).
- .load_jobs(path, updated_at="fill"): NDJSON job objects into posthog_datamodelingjob
  (upsert by id). Absent engine becomes 'clickhouse', absent rows_materialized 0. updated_at:
  "fill" keeps the row's own or else uses last_run_at, else created_at (PostHog's auto_now
  always sets one); "null" leaves it NULL when absent; "keep" takes the row's value as is.
- .insert_awkward_jobs(n, prefix="awk", teams=2): n jobs whose values are hard for any
  conversion: quotes, backslashes, escapes as literal text, control characters, U+2028/9,
  astral characters, long text, NULL in every nullable column, 0 to 6 fraction digits,
  every tenth one hidden (engine duckgres), every eleventh with a NULL updated_at.
- .jobs_by_id(where=""): the table's rows (`where` e.g. "where team_id = 1") as
  {id: {column: value}}, timestamps as UTC microseconds computed by PostgreSQL itself, to
  compare with to_us() of `dmj export`'s timestamps.
- to_us(text) (module level): an ISO 8601 timestamp (Z or offset) -> UTC microseconds
  (None -> None), exact (integer arithmetic). TIMESTAMP_COLUMNS names the three.
- .load_fixtures(path): a gen_jobs.py / `dmj generate` fixtures document into the identity
  tables (keys keep their secure_value "sha256$..."; the raw key is not stored).
- .stop(): immediate shutdown and removal of the directory (idempotent).
"""

import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid

from dmjtest import free_port

PGBIN = os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin")

SCHEMA = r"""
create table posthog_organization (
    id uuid primary key, name varchar(64) not null,
    created_at timestamptz not null default now(), updated_at timestamptz not null default now());
create table posthog_team (
    id serial primary key, organization_id uuid not null references posthog_organization(id)
        deferrable initially deferred,
    project_id bigint not null, api_token varchar(200) unique, name varchar(200) not null,
    created_at timestamptz not null default now(), updated_at timestamptz not null default now());
create index posthog_team_organization_id on posthog_team (organization_id);
create table posthog_user (
    id serial primary key, password varchar(128) not null default '',
    email varchar(254) unique not null, is_active boolean not null default true,
    current_team_id int null, current_organization_id uuid null,
    date_joined timestamptz not null default now());
create table posthog_organizationmembership (
    id uuid primary key default gen_random_uuid(),
    organization_id uuid not null, user_id int not null, level smallint not null default 1,
    joined_at timestamptz not null default now(), updated_at timestamptz not null default now(),
    unique (organization_id, user_id));
create table posthog_personalapikey (
    id varchar(50) primary key, user_id int not null, label varchar(40) not null default '',
    value varchar(50) unique null, secure_value varchar(300) unique null,
    created_at timestamptz not null default now(), last_used_at timestamptz null,
    scopes varchar(100)[] null, scoped_teams integer[] null,
    scoped_organizations varchar(100)[] null,
    mask_value varchar(11) null);
create index posthog_personalapikey_user_id on posthog_personalapikey (user_id);
create table posthog_datamodelingjob (
    id uuid primary key, team_id int null, saved_query_id uuid null,
    status varchar(400) not null, rows_materialized int not null, error text null,
    created_at timestamptz not null, last_run_at timestamptz null,
    workflow_id varchar(400) null, workflow_run_id varchar(400) null, rows_expected int null,
    engine varchar(20) not null default 'clickhouse', run_mode varchar(20) null,
    parent_workflow_id varchar(400) null, storage_delta_mib float null,
    created_by_id int null, updated_at timestamptz null);
create index posthog_datamodelingjob_team_id on posthog_datamodelingjob (team_id);
create index posthog_datamodelingjob_saved_query_id on posthog_datamodelingjob (saved_query_id);
create index posthog_datamodelingjob_created_by_id on posthog_datamodelingjob (created_by_id);
create index posthog_datamodelingjob_updated_at_id on posthog_datamodelingjob (updated_at, id);
"""

JOB_COLUMNS = ("id, team_id, saved_query_id, status, rows_materialized, error, created_at, "
               "last_run_at, workflow_id, workflow_run_id, rows_expected, engine, run_mode, "
               "parent_workflow_id, storage_delta_mib, created_by_id, updated_at")


TIMESTAMP_COLUMNS = ("created_at", "last_run_at", "updated_at")
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def to_us(text):
    if text is None:
        return None
    when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (when - _EPOCH) // datetime.timedelta(microseconds=1)


def _skip(why):
    print("skipped: " + why)
    sys.exit(77)


class Postgres:
    def __init__(self, tmp=None, tcp=False, timezone="UTC", wal_level="replica",
                 synchronous_commit="off"):
        if not os.access(os.path.join(PGBIN, "initdb"), os.X_OK):
            _skip("%s/initdb not found (Debian's postgresql-15 is not installed)" % PGBIN)
        self.psql_bin = os.path.join(PGBIN, "psql")
        if not os.access(self.psql_bin, os.X_OK):
            self.psql_bin = shutil.which("psql") or _skip("psql not found")
        self.dir = tempfile.mkdtemp(prefix="dmj-pg-")
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, "data")
        self.sock = os.path.join(self.dir, "sock")
        os.mkdir(self.data)
        os.mkdir(self.sock)
        self._as = []
        if os.getuid() == 0:
            # PostgreSQL refuses to run as root: an unprivileged user owns its directories.
            for d in (self.data, self.sock):
                shutil.chown(d, "nobody")
            self._as = ["runuser", "-u", "nobody", "--"]
        self.port = free_port() if tcp else 5432
        self.running = False
        res = subprocess.run(self._as + [os.path.join(PGBIN, "initdb"), "-D", self.data,
                                         "-A", "trust", "-U", "postgres", "-E", "UTF8",
                                         "--locale=C", "--no-sync"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if res.returncode != 0:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise AssertionError("initdb failed: " + res.stdout[-2000:])
        listen = "127.0.0.1" if tcp else "''"
        opts = ("-c listen_addresses=%s -c port=%d -k %s -c fsync=off -c full_page_writes=off "
                "-c synchronous_commit=%s -c timezone=%s -c max_connections=40 -c wal_level=%s"
                % (listen, self.port, self.sock, synchronous_commit, timezone, wal_level))
        self.log = os.path.join(self.sock, "pg.log")
        res = subprocess.run(self._as + [os.path.join(PGBIN, "pg_ctl"), "-D", self.data, "-w",
                                         "-t", "60", "-l", self.log, "-o", opts, "start"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if res.returncode != 0:
            log = ""
            try:
                with open(self.log) as f:
                    log = f.read()[-2000:]
            except OSError:
                pass
            self.stop()
            raise AssertionError("pg_ctl start failed: %s %s" % (res.stdout[-2000:], log))
        self.running = True
        self.conninfo = "host=%s port=%d user=postgres dbname=postgres" % (self.sock, self.port)
        self.tcp_conninfo = ("host=127.0.0.1 port=%d user=postgres dbname=postgres" % self.port
                             if tcp else None)

    # ---- running SQL ---------------------------------------------------------------------

    def try_psql(self, sql, *extra):
        cmd = [self.psql_bin, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", self.sock,
               "-p", str(self.port), "-U", "postgres", "-d", "postgres", *extra]
        res = subprocess.run(cmd, input=sql, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        return res.returncode, res.stdout, res.stderr

    def psql(self, sql, *extra):
        code, out, err = self.try_psql(sql, *extra)
        if code != 0:
            raise AssertionError("psql failed (%d): %s\nSQL: %s" % (code, err[-2000:],
                                                                    sql[:500]))
        return out[:-1] if out.endswith("\n") else out

    def execute(self, sql):
        self.psql(sql)

    # ---- PostHog's tables ----------------------------------------------------------------

    def create_schema(self):
        self.execute(SCHEMA)

    def load_jobs(self, path, updated_at="fill"):
        if updated_at == "fill":
            upd = "coalesce(r.updated_at, r.last_run_at, r.created_at)"
        elif updated_at in ("null", "keep"):
            upd = "r.updated_at"
        else:
            raise ValueError("updated_at must be fill, null or keep")
        # Blank lines would be NULL rows: drop them by reading through a filtered copy.
        with open(path, "rb") as f:
            lines = [line for line in f.read().split(b"\n") if line.strip()]
        tmp = os.path.join(self.dir, "load.ndjson")
        with open(tmp, "wb") as f:
            f.write(b"\n".join(lines) + (b"\n" if lines else b""))
        cols = JOB_COLUMNS
        sets = ", ".join("%s = excluded.%s" % (c, c) for c in cols.split(", ")[1:])
        self.execute(
            "create temporary table load_jobs (j json);\n"
            "\\copy load_jobs (j) from '%s' with (format csv, quote e'\\x01', delimiter e'\\x02')\n"
            "insert into posthog_datamodelingjob (%s)\n"
            "select r.id, coalesce(r.team_id, (l.j->>'team')::int), r.saved_query_id, r.status,\n"
            "       coalesce(r.rows_materialized, 0), r.error, r.created_at, r.last_run_at,\n"
            "       r.workflow_id, r.workflow_run_id, r.rows_expected,\n"
            "       coalesce(r.engine, 'clickhouse'), r.run_mode, r.parent_workflow_id,\n"
            "       r.storage_delta_mib, r.created_by_id, %s\n"
            "from load_jobs l,\n"
            "     json_populate_record(null::posthog_datamodelingjob, l.j) r\n"
            "on conflict (id) do update set %s;\n"
            % (tmp.replace("'", "''"), cols, upd, sets))
        os.unlink(tmp)

    def insert_awkward_jobs(self, n, prefix="awk", teams=2):
        texts = [None, 'quote " and \\ backslash and \\n literal', "line\nbreak\tand tab\r\n",
                 "unicode \u00e9 \u2713 \U0001f4a5 \u2028\u2029 end", "",
                 "control \x01\x1f del \x7f", '{"json": "in \\"text\\""}',
                 "\\\\server\\share\\x41\\101", "long " * 200]
        statuses = ["Running", "Completed", "Failed", "Cancelled", "Skipped"]
        fractions = ["", ".5", ".01234", ".123456", ".1", ".000001"]
        path = os.path.join(self.dir, "awkward.ndjson")
        with open(path, "w", encoding="utf-8") as f:
            for g in range(1, n + 1):
                day, sec = divmod(g * 37, 86400)
                ts = "2024-03-%02dT%02d:%02d:%02d%s+00:00" % (
                    1 + day % 28, sec // 3600, sec // 60 % 60, sec % 60,
                    fractions[g % len(fractions)])
                job = {
                    "id": str(uuid.uuid5(uuid.NAMESPACE_URL, "%s/%d" % (prefix, g))),
                    "team_id": 1 + g % teams,
                    "saved_query_id": None if g % 4 == 0 else str(
                        uuid.uuid5(uuid.NAMESPACE_URL, "sq/%d" % (g % 7))),
                    "status": statuses[g % len(statuses)],
                    "rows_materialized": g * 7919 % 100000,
                    "error": texts[g % len(texts)],
                    "created_at": ts,
                    "last_run_at": None if g % 5 == 0 else ts.replace("+00:00", "-07:00"),
                    "workflow_id": None if g % 8 == 0 else "materialize-view-%d" % g,
                    "workflow_run_id": None if g % 10 == 0 else "run-%d" % g,
                    "rows_expected": None if g % 3 == 0 else g * 3,
                    "engine": "duckgres" if g % 10 == 0 else "clickhouse",
                    "run_mode": None if g % 2 == 0 else "full_refresh",
                    "parent_workflow_id": "parent-%d" % g if g % 6 == 0 else None,
                    "storage_delta_mib": None if g % 4 == 0 else g / 7.0,
                    "created_by_id": None if g % 5 == 0 else g % 50,
                    "updated_at": None if g % 11 == 0 else ts.replace("+00:00", "+05:30"),
                }
                f.write(json.dumps(job, ensure_ascii=False) + "\n")
        self.load_jobs(path, updated_at="keep")
        os.unlink(path)

    def jobs_by_id(self, where=""):
        micros = ", ".join("'%s', (extract(epoch from j.%s) * 1000000)::bigint" % (c, c)
                           for c in TIMESTAMP_COLUMNS)
        out = self.psql("select (to_jsonb(j) || jsonb_build_object(%s))::text"
                        " from posthog_datamodelingjob j %s" % (micros, where))
        rows = (json.loads(line) for line in out.split("\n") if line.strip())
        return {r["id"]: r for r in rows}

    def load_fixtures(self, path):
        with open(path) as f:
            fx = json.load(f)
        doc = os.path.join(self.dir, "fixtures.json")
        with open(doc, "w") as f:
            f.write(json.dumps(fx, separators=(",", ":")) + "\n")
        self.execute(
            "create temporary table load_fx (j json);\n"
            "\\copy load_fx (j) from '%s' with (format csv, quote e'\\x01', delimiter e'\\x02')\n"
            "begin;\n"
            "set constraints all deferred;\n"
            "insert into posthog_organization (id, name)\n"
            "  select (o->>'id')::uuid, o->>'name'\n"
            "  from load_fx, json_array_elements(j->'organizations') o\n"
            "  on conflict (id) do update set name = excluded.name;\n"
            "insert into posthog_team (id, organization_id, project_id, api_token, name)\n"
            "  select (t->>'id')::int, (t->>'organization_id')::uuid,\n"
            "         coalesce((t->>'project_id')::bigint, (t->>'id')::bigint),\n"
            "         t->>'api_token', coalesce(t->>'name', '')\n"
            "  from load_fx, json_array_elements(j->'teams') t\n"
            "  on conflict (id) do update set organization_id = excluded.organization_id,\n"
            "     project_id = excluded.project_id, name = excluded.name;\n"
            "insert into posthog_user (id, email, is_active, current_team_id,\n"
            "                          current_organization_id)\n"
            "  select (u->>'id')::int, coalesce(u->>'email', 'user' || (u->>'id') || '@x'),\n"
            "         coalesce((u->>'is_active')::boolean, true), (u->>'current_team_id')::int,\n"
            "         (u->>'current_organization_id')::uuid\n"
            "  from load_fx, json_array_elements(j->'users') u\n"
            "  on conflict (id) do update set is_active = excluded.is_active,\n"
            "     current_team_id = excluded.current_team_id,\n"
            "     current_organization_id = excluded.current_organization_id;\n"
            "insert into posthog_organizationmembership (organization_id, user_id, level)\n"
            "  select (m->>'organization_id')::uuid, (m->>'user_id')::int,\n"
            "         coalesce((m->>'level')::smallint, 1)\n"
            "  from load_fx, json_array_elements(j->'organization_memberships') m\n"
            "  on conflict (organization_id, user_id) do update set level = excluded.level;\n"
            "insert into posthog_personalapikey (id, user_id, label, secure_value, scopes,\n"
            "                                    scoped_teams, scoped_organizations)\n"
            "  select k->>'id', (k->>'user_id')::int, coalesce(k->>'label', ''),\n"
            "         k->>'secure_value',\n"
            "         case when json_typeof(k->'scopes') = 'array' then\n"
            "              array(select json_array_elements_text(k->'scopes')) end,\n"
            "         case when json_typeof(k->'scoped_teams') = 'array' then\n"
            "              array(select json_array_elements_text(k->'scoped_teams'))::int[] end,\n"
            "         case when json_typeof(k->'scoped_organizations') = 'array' then\n"
            "              array(select json_array_elements_text(k->'scoped_organizations')) end\n"
            "  from load_fx, json_array_elements(j->'personal_api_keys') k\n"
            "  on conflict (id) do update set secure_value = excluded.secure_value,\n"
            "     scopes = excluded.scopes, scoped_teams = excluded.scoped_teams,\n"
            "     scoped_organizations = excluded.scoped_organizations;\n"
            "select setval('posthog_team_id_seq', (select coalesce(max(id), 1) from posthog_team));\n"
            "select setval('posthog_user_id_seq', (select coalesce(max(id), 1) from posthog_user));\n"
            "commit;\n" % doc.replace("'", "''"))
        os.unlink(doc)

    # ---- shutdown ------------------------------------------------------------------------

    def stop(self):
        if self.running:
            subprocess.run(self._as + [os.path.join(PGBIN, "pg_ctl"), "-D", self.data,
                                       "-m", "immediate", "stop"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.running = False
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
