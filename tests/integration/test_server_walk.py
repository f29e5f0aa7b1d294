#!/usr/bin/python3
"""Walking every page of a team while `dmj import` adds jobs to the store dmjd serves:
none of the jobs that were there before the walk is missing, and no job is seen twice except
the rows DRF's cursor itself repeats (the rows its offset skips, when an import lands next to
them).

Imports run both between pages (so that commits surely land mid-walk, on either side of
the cursor) and in a background thread (so that they also race with requests)."""

import json
import os
import shutil
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dmjtest import (LIST, Server, Store, binary, check_repeats, generate, get,  # noqa: E402
                     import_into)

TEAM = 1
PAGE = 37


def split_ndjson(path, parts, out_dir):
    with open(path) as f:
        lines = [line for line in f if line.strip()]
    size = (len(lines) + parts - 1) // parts
    files = []
    for i in range(parts):
        chunk = lines[i * size:(i + 1) * size]
        if not chunk:
            break
        name = os.path.join(out_dir, "extra-%02d.ndjson" % i)
        with open(name, "w") as f:
            f.writelines(chunk)
        files.append(name)
    return files


def main():
    binary("dmjd")
    binary("dmj")
    tmp = tempfile.mkdtemp(prefix="dmj-test-walk-")
    try:
        store = Store(tmp, jobs=4000, teams=2)
        before = store.served_ids(TEAM)
        assert len(before) > 10 * PAGE, len(before)
        # New jobs over the same time span (another seed): some land before the cursor,
        # some after it.
        extra_path, _ = generate(tmp, "extra", 4000, 2, seed=7)
        with open(extra_path) as f:
            extra_ids = {json.loads(line)["id"] for line in f if line.strip()}
        assert not (extra_ids & before), "the two generated sets share ids"
        between = split_ndjson(extra_path, 12, tmp)
        background = between[6:]
        between = between[:6]

        with Server(store.dir, "--threads", "2") as srv:
            errors = []

            def import_in_background():
                try:
                    for path in background:
                        import_into(store.dir, path, extra=("--batch", "50"))
                        time.sleep(0.02)
                except Exception as e:  # reported by the main thread
                    errors.append(e)

            worker = threading.Thread(target=import_in_background)
            conn = srv.conn()
            seen = []
            repeated = set()
            url = LIST + "?limit=%d" % PAGE
            pages = 0
            while url:
                res, body = get(conn, url, store.read_key)
                assert res.status == 200, (url, res.status, body)
                page = json.loads(body)
                ids = [j["id"] for j in page["results"]]
                # DRF's cursor may repeat the `o` rows its offset skips when an import lands
                # next to them (dmjtest.check_repeats).
                repeated.update(check_repeats(seen, ids, url))
                seen.extend(ids)
                pages += 1
                if pages == 2:
                    worker.start()
                if between and pages % 3 == 0:
                    import_into(store.dir, between.pop(0))
                nxt = page["next"]
                if nxt is None:
                    break
                parts = urllib.parse.urlsplit(nxt)
                url = parts.path + "?" + parts.query
            assert pages >= 2, "too few pages to import during the walk"
            worker.join()
            conn.close()
            assert not errors, errors
            assert not between, "the walk ended before every import between pages ran"

        dupes = len(seen) - len(set(seen))
        assert dupes == len(repeated) and all(seen.count(r) == 2 for r in repeated), (
            "%d jobs seen twice" % dupes)
        missing = before - set(seen)
        assert not missing, "%d earlier jobs missing, e.g. %s" % (len(missing),
                                                                 sorted(missing)[:3])
        unknown = set(seen) - before - extra_ids
        assert not unknown, "jobs that were never imported: %s" % sorted(unknown)[:3]
        new_seen = len(set(seen) & extra_ids)
        print("ok: %d pages, %d jobs, %d of them imported during the walk, %d repeated by "
              "DRF's cursor offset" % (pages, len(seen), new_seen, len(repeated)))
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
