#!/usr/bin/python3
"""Writes page_tables.inc for test_page.c: DRF's page walk over a small set of jobs.

    cd tests/unit/data && /usr/bin/python3 gen_page_tables.py > page_tables.inc

Runs DRF 3.14's own CursorPagination (paginate_queryset, get_next_link, get_previous_link,
encode_cursor) on Django requests over an in-memory queryset of JOBS that orders by
(-created_at, -id) and filters created_at with the datetime Django's DateTimeField makes of
the cursor's position (drf_oracle.django_datetime), for limits 1 to 5, with and without the
saved_query_id filter (the odd jobs). The requests: every next and previous link met,
breadth first from the first page, until 40 requests per limit; then hand-made cursors
(offsets without positions, each run's time as DRF prints it, forward and reverse, with
offsets inside runs, the same instant written differently, before the first and after the
last job). Each case: the request's cursor, the page
(indexes into JOBS), the next and previous cursors DRF wrote. BACK_COUNT: how many jobs a
walk back by previous links from the last page visits (DRF skips some: the "paging
artifact" its get_previous_link comments on).
tests/unit/data/check_generated.py regenerates this file and compares.
"""
import datetime
import uuid

import drf_oracle as o
from django.test import RequestFactory
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request

UTC = datetime.timezone.utc
# Runs of equal times (seconds past 2019-08-24 14:15:00 UTC, how many jobs).
RUNS = [("50", 3), ("49.123456", 1), ("48.25", 5), ("47.123456", 1), ("46", 2), ("45", 1),
        ("44.25", 6), ("43.123456", 1), ("42", 2)]
MAX_REQUESTS = 40


def make_jobs():
    jobs = []
    for seconds, count in RUNS:
        whole, _, frac = seconds.partition(".")
        t = datetime.datetime(2019, 8, 24, 14, 15, int(whole), int(frac.ljust(6, "0")),
                              tzinfo=UTC)
        for _ in range(count):
            i = len(jobs)
            # Ids not in the order of the list within a run (the first byte wraps).
            raw = bytes([(0x0B + 0x25 * i) & 0xFF] + [i] * 15)
            jobs.append({"index": i, "created_at": t, "id": uuid.UUID(bytes=raw),
                         "filtered": i % 2 == 1})
    return jobs


class Rows:
    """The part of a Django QuerySet that CursorPagination uses: order_by, filter on
    created_at__lt/__gt, slicing."""

    def __init__(self, rows):
        self.rows = list(rows)

    def order_by(self, *fields):
        rows = list(self.rows)
        for field in reversed(fields):  # stable sorts, the least significant key first
            rows.sort(key=lambda r, f=field.lstrip("-"): r[f], reverse=field.startswith("-"))
        return Rows(rows)

    def filter(self, **kwargs):
        ((lookup, value),) = kwargs.items()
        field, op = lookup.split("__")
        bound = o.django_datetime(value)
        if op == "lt":
            return Rows(r for r in self.rows if r[field] < bound)
        return Rows(r for r in self.rows if r[field] > bound)

    def __getitem__(self, index):
        return self.rows[index]


def request_page(jobs, filtered, limit, cursor):
    pager = CursorPagination()
    pager.page_size = limit
    pager.ordering = ("-created_at", "-id")
    query = {} if cursor is None else {"cursor": cursor}
    request = Request(RequestFactory().get("/api/environments/1/data_modeling_jobs/", query))
    rows = Rows(j for j in jobs if j["filtered"] or not filtered)
    page = pager.paginate_queryset(rows, request)
    return ([r["index"] for r in page], o.cursor_of_link(pager.get_next_link()),
            o.cursor_of_link(pager.get_previous_link()))


def hand_made(jobs):
    cursors = [None, "", o.drf_encode(1, False, None), o.drf_encode(3, False, None),
               o.drf_encode(7, False, None), o.drf_encode(40, False, None),
               o.drf_encode(0, True, None), o.drf_encode(2, True, None),
               o.drf_encode(1000, True, None)]
    for t in sorted({j["created_at"] for j in jobs}, reverse=True):
        cursors += [o.drf_encode(0, False, str(t)), o.drf_encode(0, True, str(t))]
    for text in ["2019-08-24 14:15:48.250000+00:00", "2019-08-24 14:15:44.250000+00:00",
                 "2019-08-24T14:15:48.25Z", "2019-08-24T16:15:48.250+02:00"]:
        cursors += [o.drf_encode(2, False, text), o.drf_encode(4, True, text)]
    for text in ["2019-08-24T14:15:48.25Z", "2019-08-24T16:15:48.250+02:00",
                 "2019-08-24 14:15:44.250000+00:00\n", "2019-08-24", "2019-08-24T14:15:51Z",
                 "2019-08-24T14:15:41Z", "2019-08-24T14:15:46Z"]:
        cursors += [o.drf_encode(0, False, text), o.drf_encode(0, True, text)]
    return cursors


def cases_for(jobs, filtered, limit):
    """The walk first (every link met, breadth first, from the first page, MAX_REQUESTS
    requests at most), then the hand-made cursors not already requested."""
    done = set()
    cases = []

    def run(cursor):
        done.add(cursor)
        ids, nxt, prev = request_page(jobs, filtered, limit, cursor)
        cases.append((cursor, ids, nxt, prev))
        return [c for c in (nxt, prev) if c is not None and c not in done]

    queue = [None]
    while queue and len(cases) < MAX_REQUESTS:
        cursor = queue.pop(0)
        if cursor not in done:
            queue += run(cursor)
    for cursor in hand_made(jobs):
        if cursor not in done:
            run(cursor)
    return cases


def back_count(jobs, filtered, limit):
    """Jobs visited walking previous links back from the last page of the forward walk."""
    cursor, pages = None, 0
    while True:
        _, nxt, _ = request_page(jobs, filtered, limit, cursor)
        pages += 1
        if nxt is None or pages > 2 * len(jobs):
            break
        cursor = nxt
    seen, pages = 0, 0
    while True:
        ids, _, prev = request_page(jobs, filtered, limit, cursor)
        seen += len(ids)
        pages += 1
        if prev is None or pages > 2 * len(jobs):
            return seen
        cursor = prev


def main():
    jobs = make_jobs()
    print("/* Generated by gen_page_tables.py (%s); do not edit. */" % o.versions())
    print("static const struct job_row JOBS[] = {")
    for j in jobs:
        print("    {%dLL, {%s}, %s}," % (o.us_of(j["created_at"]),
                                        ", ".join("0x%02x" % b for b in j["id"].bytes),
                                        "true" if j["filtered"] else "false"))
    print("};")
    print("static const struct page_case CASES[] = {")
    for filtered in (False, True):
        for limit in range(1, 6):
            for cursor, ids, nxt, prev in cases_for(jobs, filtered, limit):
                print("    {%s, %d, %s, {%s}, %d, %s, %s}," % (
                    "true" if filtered else "false", limit, o.c_str(cursor),
                    ", ".join(str(i) for i in ids) if ids else "0", len(ids), o.c_str(nxt),
                    o.c_str(prev)))
    print("};")
    print("static const unsigned BACK_COUNT[2][6] = {")
    for filtered in (False, True):
        print("    {0, %s}," % ", ".join(str(back_count(jobs, filtered, limit))
                                        for limit in range(1, 6)))
    print("};")


if __name__ == "__main__":
    main()
