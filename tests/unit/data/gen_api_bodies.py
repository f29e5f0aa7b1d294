#!/usr/bin/python3
"""Writes api_bodies.inc for tests/support/fixture.h: the fixture's jobs and the bodies DRF
answers for them, which the API's unit tests (tests/unit/api) and fuzz_request.c expect.

    cd tests/unit/data && /usr/bin/python3 gen_api_bodies.py > api_bodies.inc

JOBS below is the one description of the fixture's jobs: the .inc carries it to C as
FIXTURE_JOBS (fixture_build writes exactly those rows). The bodies come from DRF 3.14 itself:
a Serializer with the fields of docs/api.md in their order (UUIDField,
DateTimeField: isoformat with 'Z' for UTC), JSONRenderer (compact, ensure_ascii=False), and
CursorPagination (page_size 100, page_size_query_param "limit", ordering -created_at, -id)
on a Django request for the list's first page. Which jobs `running` and `recent` hold is
section 5's rule, restated in running() and recent(); jobs whose engine is duckgres are
never served (section 2). The key hash is PostHog's: "sha256$" + hex(sha256(key)).
tests/unit/data/check_generated.py regenerates this file and compares.
"""
import datetime
import hashlib
import re
import uuid

import drf_oracle as o
from django.test import RequestFactory
from rest_framework import serializers
from rest_framework.pagination import CursorPagination
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request

from gen_page_tables import Rows

T0 = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
SQ = {"SQ_A": "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa",
      "SQ_B": "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb",
      "SQ_C": "cccccccc-cccc-4ccc-8ccc-cccccccccccc"}
K_READ = "phx_read_key_0001"
LIST_PATH = "/api/environments/1/data_modeling_jobs/"
LIST_QUERY = "limit=1&b=2&a"


def job(name, id_, team, sq, status, seconds, workflow_id, **extra):
    row = {"name": name, "id": uuid.UUID(id_), "team": team,
           "saved_query_id": uuid.UUID(SQ[sq]) if sq else None, "sq_name": sq,
           "status": status, "rows_materialized": 0, "error": None,
           "created_at": T0 + datetime.timedelta(seconds=seconds), "seconds": seconds,
           "last_run_at": None, "workflow_id": workflow_id, "workflow_run_id": None,
           "rows_expected": None, "engine": None}
    row.update(extra)
    return row


JOBS = [
    job("J1", "10000000-0000-4000-8000-000000000001", 1, "SQ_A", "Completed", 5,
        "materialize-a", rows_materialized=10,
        last_run_at=T0 + datetime.timedelta(seconds=600.5), workflow_run_id="run-1",
        rows_expected=12),
    job("J2", "10000000-0000-4000-8000-000000000002", 1, "SQ_A", "Failed", 4, "materialize-a",
        error='boom "x"\n'),
    job("J3", "10000000-0000-4000-8000-000000000003", 1, "SQ_B", "Completed", 6,
        "materialize-b"),
    job("J4", "10000000-0000-4000-8000-000000000004", 1, "SQ_B", "Running", 7, "materialize-b"),
    job("J5", "10000000-0000-4000-8000-000000000005", 1, None, "Running", 3, "other"),
    job("J6", "10000000-0000-4000-8000-000000000006", 1, "SQ_A", "Running", 2, "materialize-a"),
    job("J_HIDDEN", "10000000-0000-4000-8000-000000000007", 1, "SQ_A", "Completed", 9,
        "materialize-a", engine="duckgres"),
    job("J_TEAM2", "20000000-0000-4000-8000-000000000001", 2, "SQ_C", "Completed", 8,
        "materialize-c"),
]


class JobSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    saved_query_id = serializers.UUIDField(allow_null=True)
    status = serializers.CharField()
    rows_materialized = serializers.IntegerField()
    error = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    last_run_at = serializers.DateTimeField(allow_null=True)
    workflow_id = serializers.CharField(allow_null=True)
    workflow_run_id = serializers.CharField(allow_null=True)
    rows_expected = serializers.IntegerField(allow_null=True)


def render(data):
    return JSONRenderer().render(data)


def served(team):
    return [j for j in JOBS if j["team"] == team and j["engine"] != "duckgres"]


def list_order(rows):
    return Rows(rows).order_by("-created_at", "-id").rows


def running(team):
    """Section 5: status Running, workflow_id starting with "materialize", in list order."""
    return [j for j in list_order(served(team))
            if j["status"] == "Running" and (j["workflow_id"] or "").startswith("materialize")]


def recent(team):
    """Section 5: per saved_query_id (not null), the newest job (created_at, then id) whose
    status is not Running and whose workflow_id starts with "materialize", by the
    saved_query_id's text."""
    newest = {}
    for j in list_order(served(team)):
        if (j["saved_query_id"] is None or j["status"] == "Running"
                or not (j["workflow_id"] or "").startswith("materialize")):
            continue
        newest.setdefault(str(j["saved_query_id"]), j)
    return [newest[k] for k in sorted(newest)]


def first_page():
    pager = CursorPagination()
    pager.page_size = 100
    pager.page_size_query_param = "limit"
    pager.max_page_size = 1000
    pager.ordering = ("-created_at", "-id")
    request = Request(RequestFactory().get(LIST_PATH + "?" + LIST_QUERY))
    page = pager.paginate_queryset(Rows(served(1)), request)
    response = pager.get_paginated_response(JobSerializer(page, many=True).data)
    return render(response.data), pager.get_next_link()


def c_macro(name, data):
    """#define NAME "..." with the literal cut into lines of at most 100 columns (between
    characters or c_bytes' escapes, never inside one)."""
    lit = o.c_bytes(data)[1:-1]
    tokens = re.findall(r"\\[0-7]{3}|\\.|.", lit)
    pieces, line = [], ""
    for t in tokens:
        if len(line) + len(t) > 88:
            pieces.append(line)
            line = ""
        line += t
    pieces.append(line)
    if len(pieces) == 1:
        return '#define %s "%s"' % (name, pieces[0])
    return "#define %s \\\n" % name + " \\\n".join('    "%s"' % p for p in pieces)


def c_opt_str(value):
    return "NULL" if value is None else o.c_str(value)


def main():
    print("/* Generated by gen_api_bodies.py (%s); do not edit. */" % o.versions())
    for name, text in SQ.items():
        print('#define %s "%s"' % (name, text))
    for j in JOBS:
        print('#define %s_ID "%s"' % (j["name"], j["id"]))
    print("static const struct fixture_job_row FIXTURE_JOBS[] = {")
    for j in JOBS:
        last = -1 if j["last_run_at"] is None else o.us_of(j["last_run_at"]) - o.us_of(T0)
        print("    {%s_ID, %d, %s, DMJ_STATUS_%s, %d, %s, %d, %s, %d, %s, %d, %s}," % (
            j["name"], j["team"], j["sq_name"] or "NULL", j["status"].upper(), j["seconds"],
            c_opt_str(j["workflow_id"]), j["rows_materialized"], c_opt_str(j["error"]), last,
            c_opt_str(j["workflow_run_id"]),
            -1 if j["rows_expected"] is None else j["rows_expected"], c_opt_str(j["engine"])))
    print("};")
    print('#define K_READ "%s"' % K_READ)
    print('#define K_READ_HASH "sha256$%s"' % hashlib.sha256(K_READ.encode()).hexdigest())
    by_name = {j["name"]: j for j in JOBS}
    for name in ("J1", "J3", "J4", "J6"):
        print(c_macro(name + "_JSON", render(JobSerializer(by_name[name]).data)))
    print(c_macro("RUNNING_TEAM1", render(JobSerializer(running(1), many=True).data)))
    print(c_macro("RECENT_TEAM1", render(JobSerializer(recent(1), many=True).data)))
    body, next_link = first_page()
    print("/* The first page of ?%s, and its next link's cursor as quoted there. */"
          % LIST_QUERY)
    print('#define SECOND_PAGE_CURSOR "%s"' % re.search(r"[?&]cursor=([^&]*)", next_link)[1])
    print(c_macro("LIST_LIMIT1", body))


if __name__ == "__main__":
    main()
