"""The oracle the table generators in this folder share: Debian's Django 3.2 and Django REST
Framework 3.14 (python3-django, python3-djangorestframework), configured in memory, and
dmj's deliberate differences from them, each applied as a stated rule on top of DRF's answer.

Run the generators with /usr/bin/python3 (Debian's Python 3.11, where those packages live).
"""
import base64
import datetime
import warnings
from types import SimpleNamespace
from urllib import parse

import django
from django.conf import settings

if not settings.configured:
    settings.configure(USE_TZ=True, TIME_ZONE="UTC", ALLOWED_HOSTS=["*"], INSTALLED_APPS=[],
                       REST_FRAMEWORK={"UNAUTHENTICATED_USER": None})
    django.setup()

from django.db import models  # noqa: E402
from rest_framework.exceptions import NotFound  # noqa: E402
from rest_framework.pagination import CursorPagination  # noqa: E402

from gen_django_times import expected as timestamp_us  # noqa: E402,F401

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def versions():
    import rest_framework
    return "Django %s, DRF %s" % (django.get_version(), rest_framework.VERSION)


def c_bytes(data):
    """A C string literal of `data` (bytes): printable ASCII as itself, everything else (and
    '?', which could start a trigraph) as a three-digit octal escape."""
    out = []
    for b in data:
        if b in (0x22, 0x5C):
            out.append("\\" + chr(b))
        elif 0x20 <= b < 0x7F and b != 0x3F:
            out.append(chr(b))
        else:
            out.append("\\%03o" % b)
    return '"' + "".join(out) + '"'


def c_str(text):
    return "NULL" if text is None else c_bytes(text.encode("utf-8"))


def drf_decode(value):
    """DRF's own CursorPagination.decode_cursor of the `cursor` query value: a Cursor
    (offset, reverse, position) or None when DRF answers 404 Invalid cursor."""
    try:
        return CursorPagination().decode_cursor(SimpleNamespace(query_params={"cursor": value}))
    except NotFound:
        return None


def _tokens(value):
    """The first value of each token, read as DRF reads them (for the rules below only)."""
    text = base64.b64decode(value.encode("ascii")).decode("ascii")
    return {k: v[0] for k, v in parse.parse_qs(text, keep_blank_values=True).items()}


def dmj_decode(value):
    """What dmj must decode `value` to: (offset, reverse, position, position_us), or None
    for 404 Invalid cursor. DRF's decode_cursor decides first; dmj then differs in exactly
    two ways, both in docs/api.md:
    - section 9.8 (section 0's Integer): `o` and `r` are ASCII only. DRF's int() also takes
      other Unicode digits and whitespace ('o=%D9%A1' is offset 1 for DRF); dmj refuses
      any non-ASCII text in them.
    - section 9.3 (section 0's Timestamp): a position that is not a timestamp (Django's
      parse_datetime, else parse_date, ASCII digits, within years 1..9999) is refused at
      once; DRF keeps any text there and PostHog fails later with a 500 when it filters."""
    cursor = drf_decode(value)
    if cursor is None:
        return None
    if cursor.offset or cursor.reverse or cursor.position is not None:
        tokens = _tokens(value)
        for key in ("o", "r"):
            if key in tokens and not tokens[key].isascii():
                return None
    us = None
    if cursor.position is not None:
        us = timestamp_us(cursor.position)
        if us is None:
            return None
    return (cursor.offset, cursor.reverse, cursor.position, us)


def drf_encode(offset, reverse, position):
    """DRF's encode_cursor of Cursor(offset, reverse, position): the cursor value it puts in
    the link (read back out of the link's query)."""
    pager = CursorPagination()
    pager.base_url = "http://testserver/x/"
    return cursor_of_link(pager.encode_cursor(SimpleNamespace(
        offset=offset, reverse=reverse, position=position)))


def cursor_of_link(link):
    if link is None:
        return None
    query = parse.parse_qs(parse.urlsplit(link).query, keep_blank_values=True)
    return query["cursor"][0]


_FIELD = models.DateTimeField()


def django_datetime(text):
    """The datetime Django compares a DateTimeField with for a lookup value `text`
    (DateTimeField.get_prep_value: parse_datetime, else parse_date at midnight, naive read in
    the current time zone, UTC here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "naive datetime" for a date-only p
        return _FIELD.get_prep_value(text)


def us_of(value):
    delta = value - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1000000 + delta.microseconds
