#!/usr/bin/python3
"""GET /api/schema/: the OpenAPI document a running dmjd serves is valid per a real validator
(@apidevtools/swagger-parser, installed with npm into the build dir once), describes what
is served (both prefixes, five endpoints, parameters, security, error responses), and the
real answers of the same dmjd (list pages, retrieve, recent, running, and every error it
can be made to give) validate against its response schemas (python3-jsonschema).

When npm cannot install swagger-parser (no registry), everything else runs first and then the
test says skipped (77), which CI refuses (scripts/test.sh, tests/skips-allowed.txt); node, npm or
jsonschema missing fails under CI=true."""

import copy
import json
import os
import re
import subprocess
import sys
import tempfile
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import need  # noqa: E402
from dmjtest import BIN_DIR, Server, Store, get, skip  # noqa: E402

PARSER_VERSION = "10"  # 10.1 runs on Node 14 to 22; 11+ wants Node 18 and ESM-only deps
NODE_CHECK = r"""
const SwaggerParser = require("@apidevtools/swagger-parser");
SwaggerParser.validate(process.argv[process.argv.length - 1])
  .then(api => { console.log("valid " + Object.keys(api.paths).length); })
  .catch(e => { console.log("invalid " + e.message); process.exit(1); });
"""


def install_parser():
    """(node_modules directory with swagger-parser, installed once per build dir, or None;
    why it is None)."""
    base = os.environ.get("DMJ_NPM_DIR") or os.path.join(BIN_DIR or tempfile.gettempdir(),
                                                          "npm-swagger-parser")
    mods = os.path.join(base, "node_modules")
    if os.path.isdir(os.path.join(mods, "@apidevtools", "swagger-parser")):
        return mods, None
    for tool in ("node", "npm"):
        if not need.tool(tool, "nodejs and npm"):
            return None, "%s is not installed" % tool
    os.makedirs(base, exist_ok=True)
    # Few, short retries: without a registry this should skip in seconds, not minutes.
    res = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--fetch-retries=1",
                          "--fetch-timeout=30000", "--prefix", base,
                          "@apidevtools/swagger-parser@" + PARSER_VERSION],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    if res.returncode != 0:
        return None, "npm cannot install @apidevtools/swagger-parser@%s: %s" % (
            PARSER_VERSION, res.stdout[-500:])
    return mods, None


def swagger_validate(mods, doc, tmp):
    path = os.path.join(tmp, "schema-%d.json" % abs(hash(json.dumps(doc, sort_keys=True))))
    with open(path, "w") as f:
        json.dump(doc, f)
    env = dict(os.environ, NODE_PATH=mods)
    res = subprocess.run(["node", "-e", NODE_CHECK, path], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, env=env, timeout=120)
    return res.returncode == 0, res.stdout.strip()


# ---- OpenAPI 3.0 schema objects as JSON Schema ----------------------------------------------

def to_json_schema(node, doc):
    """Resolves #/components/... references and turns 3.0's `nullable` into a null type."""
    if isinstance(node, list):
        return [to_json_schema(n, doc) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return to_json_schema(_deref(doc, node["$ref"]), doc)
    out = {}
    for k, v in node.items():
        if k in ("nullable", "readOnly", "example", "description", "format"):
            continue
        if k == "properties":
            out[k] = {p: to_json_schema(s, doc) for p, s in v.items()}
        elif k in ("items", "allOf", "oneOf", "anyOf", "additionalProperties"):
            out[k] = to_json_schema(v, doc)
        else:
            out[k] = v
    if node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = out["enum"] + [None]
    if node.get("format") == "uuid":
        out["pattern"] = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
    if node.get("format") == "date-time":
        out["pattern"] = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z$"
    return out


def response_schema(doc, template, status):
    op = doc["paths"][template]["get"]
    resp = op["responses"][str(status)]
    if "$ref" in resp:
        resp = _deref(doc, resp["$ref"])
    return to_json_schema(resp["content"]["application/json"]["schema"], doc)


def _deref(doc, ref):
    target = doc
    for part in ref.lstrip("#/").split("/"):
        target = target[part]
    return target


def template_of(doc, path):
    """The documented path template that `path` (no query) matches."""
    for template in doc["paths"]:
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path):
            # recent/ and running/ are their own templates, not {id}
            if template.endswith("{id}/") and path.rstrip("/").rsplit("/", 1)[-1] in (
                    "recent", "running", "events"):
                continue
            return template
    raise AssertionError("no documented path for %s" % path)


def check_answer(jsonschema, doc, conn, path, key=None, method="GET", expect=None):
    res, body = get(conn, path, key=key, method=method)
    if expect is not None:
        assert res.status == expect, (path, res.status, body[:300])
    assert res.getheader("Content-Type") == "application/json", res.getheader("Content-Type")
    data = json.loads(body)
    bare = path.split("?", 1)[0]
    if not bare.endswith("/"):
        bare += "/"
    schema = response_schema(doc, template_of(doc, bare), res.status)
    jsonschema.validate(data, schema)
    return res.status, data


# ---- cases ----------------------------------------------------------------------------------

def check_document(doc):
    assert doc["openapi"].startswith("3.0."), doc["openapi"]
    paths = doc["paths"]
    for prefix in ("environments", "projects"):
        found = [p for p in paths if p.startswith("/api/%s/" % prefix)]
        assert len(found) == 5, (prefix, found)
        for end in ("data_modeling_jobs/", "data_modeling_jobs/{id}/",
                    "data_modeling_jobs/recent/", "data_modeling_jobs/running/",
                    "data_modeling_jobs/events/"):
            assert any(p.endswith(end) for p in found), (prefix, end, found)
    comps = doc["components"]
    sec = comps["securitySchemes"]
    assert any(s["type"] == "http" and s["scheme"] == "bearer" for s in sec.values()), sec
    assert any(s["type"] == "apiKey" and s["in"] == "query" and s["name"] == "personal_api_key"
               for s in sec.values()), sec
    ops = [(p, item["get"]) for p, item in paths.items()]
    assert len({op["operationId"] for _, op in ops}) == 10
    for p, op in ops:
        codes = set(op["responses"])
        assert {"200", "400", "401", "403", "404", "405", "429", "500"} <= codes, (p, codes)
        params = [_deref(doc, x["$ref"]) if "$ref" in x else x
                  for x in doc["paths"][p].get("parameters", []) + op.get("parameters", [])]
        names = {x["name"]: x for x in params}
        team = names.get("project_id") or names.get("environment_id")
        assert team and team["in"] == "path" and team["schema"]["type"] == "string", (p, names)
        assert re.match(team["schema"]["pattern"], "@current")
        assert re.match(team["schema"]["pattern"], "12")
        assert not re.match(team["schema"]["pattern"], "abc")
        if p.endswith("{id}/"):
            assert names["id"]["schema"]["format"] == "uuid", names["id"]
        if p.endswith("data_modeling_jobs/"):
            assert {"limit", "cursor", "saved_query_id", "status", "created_after",
                    "created_before"} <= set(names), (p, names)
            assert names["status"]["schema"]["items"]["enum"] == [
                "Running", "Completed", "Failed", "Cancelled", "Skipped"], names["status"]
        if p.endswith("running/"):
            assert names["wait"]["in"] == "query", names
            assert (names["wait"]["schema"]["minimum"], names["wait"]["schema"]["maximum"]) == (
                0, 60), names["wait"]
            assert "304" in codes, (p, codes)
        if p.endswith("events/"):
            assert names["Last-Event-ID"]["in"] == "header", names
            assert names["last_event_id"]["in"] == "query", names
            ok = op["responses"]["200"]["content"]
            assert list(ok) == ["text/event-stream"], ok
            assert ok["text/event-stream"]["schema"] == {"type": "string"}, ok
    job = comps["schemas"]["DataModelingJob"]["properties"]
    assert list(job) == ["id", "saved_query_id", "status", "rows_materialized", "error",
                         "created_at", "last_run_at", "workflow_id", "workflow_run_id",
                         "rows_expected"], list(job)
    nullable = {k for k, v in job.items() if v.get("nullable")}
    assert nullable == {"saved_query_id", "error", "last_run_at", "workflow_id",
                        "workflow_run_id", "rows_expected"}, nullable
    assert job["rows_materialized"]["type"] == "integer"
    assert job["rows_expected"]["type"] == "integer"
    assert job["status"]["enum"] == ["Running", "Completed", "Failed", "Cancelled", "Skipped"]
    err = comps["schemas"]["Error"]["properties"]
    assert set(err["type"]["enum"]) >= {"validation_error", "authentication_error",
                                        "invalid_request", "throttled_error", "server_error"}
    assert set(err["code"]["enum"]) >= {
        "invalid_choice", "null_characters_not_allowed", "not_authenticated",
        "authentication_failed", "permission_denied", "not_found", "method_not_allowed",
        "throttled", "error"}
    assert err["attr"].get("nullable") is True


def check_with_swagger_parser(mods, doc, tmp):
    ok, out = swagger_validate(mods, doc, tmp)
    assert ok, "swagger-parser refused dmjd's schema: " + out
    print("ok   swagger-parser: " + out)
    # The validator must be able to fail: a reference to nothing, an unknown type.
    broken = copy.deepcopy(doc)
    broken["components"]["schemas"]["DataModelingJob"]["properties"]["id"] = {
        "$ref": "#/components/schemas/Nope"}
    ok, out = swagger_validate(mods, broken, tmp)
    assert not ok, "swagger-parser took a dangling $ref"
    broken = copy.deepcopy(doc)
    broken["components"]["schemas"]["Error"]["properties"]["attr"]["type"] = "text"
    ok, out = swagger_validate(mods, broken, tmp)
    assert not ok, "swagger-parser took type: text"


def case_schema(store, tmp, mods, jsonschema):
    with Server(store.dir, "--threads", "1") as srv:
        c = srv.conn()
        bodies = []
        for path in ("/api/schema/", "/api/schema", "/api/schema/?format=json"):
            res, body = get(c, path)  # no key: the schema is public
            assert res.status == 200, (path, res.status, body[:200])
            assert res.getheader("Content-Type") == "application/json"
            bodies.append(body)
        assert bodies[0] == bodies[1] == bodies[2]
        res, body = get(c, "/api/schema/", method="HEAD")
        assert res.status == 200 and body == b""
        assert int(res.getheader("Content-Length")) == len(bodies[0])
        res, body = get(c, "/api/schema/", method="POST")
        assert res.status == 405, res.status
        assert json.loads(body)["code"] == "method_not_allowed"
        doc = json.loads(bodies[0])

        if mods is not None:
            check_with_swagger_parser(mods, doc, tmp)
        check_document(doc)
        print("ok   document: both prefixes, parameters, security, job/error schemas")

        key = store.read_key
        team = 1
        served = sorted(store.served_ids(team))
        assert served, "no jobs for team 1"
        counted = 0
        for prefix in ("environments", "projects"):
            base = "/api/%s/%d/data_modeling_jobs/" % (prefix, team)
            path = base + "?limit=7"
            for _ in range(3):  # first pages, links included
                status, page = check_answer(jsonschema, doc, c, path, key, expect=200)
                counted += len(page["results"])
                if not page["next"]:
                    break
                path = page["next"].split("://", 1)[1].split("/", 1)[1]
                path = "/" + path
            for sub in ("recent/", "running/"):
                check_answer(jsonschema, doc, c, base + sub, key, expect=200)
            check_answer(jsonschema, doc, c, base + served[0] + "/", key, expect=200)
            check_answer(jsonschema, doc, c, "/api/%s/@current/data_modeling_jobs/" % prefix,
                         key, expect=200)
            # errors, each through the status the document lists for it
            check_answer(jsonschema, doc, c, base, None, expect=401)
            check_answer(jsonschema, doc, c, base, "phx_nope", expect=401)
            check_answer(jsonschema, doc, c, base, store.keys["wrong_scope"], expect=403)
            check_answer(jsonschema, doc, c, "/api/%s/999999/data_modeling_jobs/" % prefix,
                         key, expect=404)
            check_answer(jsonschema, doc, c, base + "00000000-0000-0000-0000-000000000000/",
                         key, expect=404)
            check_answer(jsonschema, doc, c, base + "?cursor=zzzz", key, expect=404)
            check_answer(jsonschema, doc, c, base + "?saved_query_id=nope", key, expect=400)
            check_answer(jsonschema, doc, c, base + "?saved_query_id=%00", key, expect=400)
            check_answer(jsonschema, doc, c, base + "?status=Bogus", key, expect=400)
            check_answer(jsonschema, doc, c, base + "running/?wait=61", key, expect=400)
            check_answer(jsonschema, doc, c, base + "running/?wait=x", key, expect=400)
            check_answer(jsonschema, doc, c, base + "events/", None, expect=401)
            check_answer(jsonschema, doc, c, base + "events/?last_event_id=x", key, expect=400)
            check_answer(jsonschema, doc, c, base + "?created_after=x", key, expect=400)
            check_answer(jsonschema, doc, c, base + "?status=Completed,Failed&limit=3"
                         "&created_before=2100-01-01", key, expect=200)
            check_answer(jsonschema, doc, c, base, key, method="DELETE", expect=405)
        assert counted > 0
        # A served job with a field the schema does not allow must fail validation.
        status, job = check_answer(jsonschema, doc, c, "/api/projects/1/data_modeling_jobs/" +
                                   served[0] + "/", key, expect=200)
        schema = response_schema(doc, "/api/projects/{project_id}/data_modeling_jobs/{id}/", 200)
        for bad in (dict(job, status="Bogus"), dict(job, rows_materialized="1"),
                    dict(job, extra=1), {k: v for k, v in job.items() if k != "error"}):
            try:
                jsonschema.validate(bad, schema)
            except jsonschema.ValidationError:
                continue
            raise AssertionError("the job schema took %r" % bad)
        print("ok   real answers (list, links, retrieve, recent, running, 400-405) validate")

    with Server(store.dir, "--threads", "1", "--rate-limit", "1/minute") as srv:
        c = srv.conn()
        base = "/api/projects/1/data_modeling_jobs/"
        check_answer(jsonschema, doc, c, base, store.read_key, expect=200)
        check_answer(jsonschema, doc, c, base, store.read_key, expect=429)
        print("ok   429 validates")


def main():
    try:
        import jsonschema
    except ImportError:
        need.missing("python3-jsonschema is not installed (scripts/deps.sh --test installs it)")
        skip("python3-jsonschema is not installed")
    mods, why = install_parser()
    failed = 0
    with tempfile.TemporaryDirectory(prefix="dmj-schema-") as tmp:
        store = Store(tmp, jobs=400, teams=2)
        try:
            case_schema(store, tmp, mods, jsonschema)
        except Exception:
            traceback.print_exc()
            failed += 1
    print("FAILED" if failed else "all passed")
    if not failed and mods is None:
        skip("the swagger-parser half did not run (the rest passed): " + why)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
