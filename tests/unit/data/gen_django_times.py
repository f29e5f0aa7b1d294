#!/usr/bin/python3
"""Writes django_times.inc: cursor-position strings and what Django 3.2 makes of them.

Run once with Debian's python3 (python3-django 3.2) from this folder:
    /usr/bin/python3 gen_django_times.py > django_times.inc
The expected value is computed the way the reference peer (peers/drf_ref, DRF_REF_DMJ=1,
jobs/parsing.py) decides: Django's datetime_re/date_re with \\d -> [0-9], then
parse_datetime/parse_date, the offset applied, the UTC result within years 1..9999.
Each row: the input as a C string literal with its length, 1 when valid, and the UTC
microseconds since the epoch (0 when invalid). The strings are generated from a fixed seed
so that the table is reproducible.
"""
import datetime
import random
import re

from django.utils.dateparse import parse_date, parse_datetime

DATE_RE = re.compile(r"(?P<year>[0-9]{4})-(?P<month>[0-9]{1,2})-(?P<day>[0-9]{1,2})$")
DATETIME_RE = re.compile(
    r"(?P<year>[0-9]{4})-(?P<month>[0-9]{1,2})-(?P<day>[0-9]{1,2})"
    r"[T ](?P<hour>[0-9]{1,2}):(?P<minute>[0-9]{1,2})"
    r"(?::(?P<second>[0-9]{1,2})(?:[\.,](?P<microsecond>[0-9]{1,6})[0-9]{0,6})?)?"
    r"(?P<tzinfo>Z|[+-][0-9]{2}(?::?[0-9]{2})?)?$"
)
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def expected(text):
    try:
        if DATETIME_RE.match(text):
            value = parse_datetime(text)
        elif DATE_RE.match(text):
            day = parse_date(text)
            value = datetime.datetime(day.year, day.month, day.day)
        else:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        value = value.astimezone(datetime.timezone.utc)
    except (ValueError, OverflowError):
        return None
    delta = value - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1000000 + delta.microseconds


def num(rng, lo, hi, widths):
    v = rng.randint(lo, hi)
    w = rng.choice(widths)
    return str(v).zfill(w)


def pick(rng, good, bad, p_bad=0.08):
    """Mostly a valid piece, sometimes a broken one, so that both outcomes are common."""
    return rng.choice(bad) if rng.random() < p_bad else rng.choice(good)


def gen(rng):
    year = pick(rng, ["0001", "0002", "1969", "1970", "2000", "2024", "2100", "9998", "9999",
                      str(rng.randint(1, 9999)).zfill(4)], ["0000", "123", "12345", "20x4"])
    month = pick(rng, ["1", "01", "2", "02", "12", str(rng.randint(1, 12))],
                 ["13", "00", "0", "001", ""])
    day = pick(rng, ["1", "01", "28", "29", "30", "31", "9", str(rng.randint(1, 28))],
               ["32", "0", "00", "001"])
    s = f"{year}-{month}-{day}"
    if rng.random() < 0.1:
        return s + pick(rng, ["", "\n"], ["\n\n", " ", "T", "Z", "x"], 0.3)
    s += pick(rng, ["T", " "], ["t", "_", ""])
    s += pick(rng, ["0", "00", "9", "23", str(rng.randint(0, 23))], ["24", "123", ""])
    s += pick(rng, [":"], [".", "", "::"])
    s += pick(rng, ["0", "00", "5", "59", str(rng.randint(0, 59))], ["60", "123", ""])
    if rng.random() < 0.75:
        s += ":" + pick(rng, ["0", "00", "7", "59", str(rng.randint(0, 59))], ["60", "", "123"])
        if rng.random() < 0.6:
            s += pick(rng, [".", ","], [";", ":"])
            n = pick(rng, [1, 2, 3, 5, 6, 6, 7, 9, 12], [0, 13, 14])
            s += "".join(rng.choice("0123456789") for _ in range(n))
    r = rng.random()
    if r < 0.6:
        sign = rng.choice("+-")
        hh = pick(rng, ["00", "05", "14", "23", str(rng.randint(0, 23)).zfill(2)],
                  ["24", "99", "5"], 0.15)
        tail = pick(rng, ["", ":00", ":30", "30", ":99", "99", ":59", "59"],
                    [":5", "5", "::30", "300"], 0.15)
        s += sign + hh + tail
    elif r < 0.75:
        s += pick(rng, ["Z"], ["z", "ZZ", "UTC"], 0.3)
    s += pick(rng, ["", "\n"], ["\n\n", " ", "\r\n"], 0.1)
    return s


def c_literal(text):
    out = []
    for ch in text.encode("ascii"):
        if ch == 0x22 or ch == 0x5C:
            out.append("\\" + chr(ch))
        elif 0x20 <= ch < 0x7F:
            out.append(chr(ch))
        else:
            out.append("\\x%02x\"\"" % ch)
    return '"' + "".join(out) + '"'


def main():
    rng = random.Random(20261127)
    fixed = [
        "2024-02-29T12:00:00Z", "2023-02-29T12:00:00Z", "1900-02-29", "2000-02-29",
        "0001-01-01T00:00:00Z", "0001-01-01T00:00:00+00:01", "0001-01-01T00:00:00-00:01",
        "9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999-00:01",
        "9999-12-31T23:59:59+23:59", "9999-12-31", "0000-01-01", "2020-01-01T00:00+05:99",
        "2020-01-01T00:00+23:59", "2020-01-01T00:00+23:60", "2020-01-01T00:00-2359",
        "2020-01-01T00:00+24", "2020-01-01T00:00:00.5", "2020-01-01T00:00:00,000001",
        "2020-01-01T00:00:00.1234567", "2020-01-01T00:00:00.123456789012",
        "2020-01-01T00:00:00.1234567890123", "2020-01-01 1:2:3.4+01", "2020-1-1 1:2",
        "2020-01-01T00:00:00\n", "2020-01-01T00:00:00\n\n", "2020-01-01\n", "",
        "2019-08-24 14:15:22.123456+00:00", "2019-08-24 14:15:22+00:00",
    ]
    seen = set()
    cases = []
    for text in fixed:
        if text not in seen:
            seen.add(text)
            cases.append(text)
    while len(cases) < 400:
        text = gen(rng)
        if text not in seen:
            seen.add(text)
            cases.append(text)
    print("/* Generated by gen_django_times.py (Django %s); do not edit. */"
          % __import__("django").get_version())
    for text in cases:
        us = expected(text)
        print("{%s, %d, %d, INT64_C(%d)}," % (c_literal(text), len(text), us is not None,
                                              us if us is not None else 0))


if __name__ == "__main__":
    main()
