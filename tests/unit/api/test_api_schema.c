/* Unit tests of dmj_api_schema_render: the document is valid JSON (yajl's own parser), every
 * endpoint README.md documents is a path under both prefixes with a GET operation, and every
 * $ref points at a component the document defines. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <yajl/yajl_tree.h>

#include "check.h"
#include "dmj/api.h"
#include "dmj/buf.h"

static const char *const PREFIXES[] = {"/api/environments/{environment_id}",
                                       "/api/projects/{project_id}"};
static const char *const ENDPOINTS[] = {"/data_modeling_jobs/", "/data_modeling_jobs/{id}/",
                                        "/data_modeling_jobs/recent/",
                                        "/data_modeling_jobs/running/",
                                        "/data_modeling_jobs/events/"};

static yajl_val member(yajl_val obj, const char *key)
{
    if (!YAJL_IS_OBJECT(obj))
        return NULL;
    for (size_t i = 0; i < obj->u.object.len; i++) {
        if (strcmp(obj->u.object.keys[i], key) == 0)
            return obj->u.object.values[i];
    }
    return NULL;
}

/* Follows "#/a/b/c" from the root; NULL when any step is missing. */
static yajl_val resolve(yajl_val root, const char *ref)
{
    char path[256];
    if (strncmp(ref, "#/", 2) != 0 || strlen(ref) >= sizeof path)
        return NULL;
    strcpy(path, ref + 2);
    yajl_val v = root;
    for (char *part = strtok(path, "/"); part && v; part = strtok(NULL, "/"))
        v = member(v, part);
    return v;
}

static unsigned refs_checked;

static void check_refs(yajl_val root, yajl_val v)
{
    if (YAJL_IS_OBJECT(v)) {
        for (size_t i = 0; i < v->u.object.len; i++) {
            yajl_val x = v->u.object.values[i];
            if (strcmp(v->u.object.keys[i], "$ref") == 0) {
                CHECK(YAJL_IS_STRING(x) && resolve(root, x->u.string) != NULL);
                refs_checked++;
            } else {
                check_refs(root, x);
            }
        }
    } else if (YAJL_IS_ARRAY(v)) {
        for (size_t i = 0; i < v->u.array.len; i++)
            check_refs(root, v->u.array.values[i]);
    }
}

int main(void)
{
    struct dmj_buf b;
    dmj_buf_init(&b, 1 << 20);
    CHECK_EQ_INT(dmj_api_schema_render(&b), 0);
    CHECK(b.len > 0 && strlen(b.data) == b.len);

    char err[256] = "";
    yajl_val doc = yajl_tree_parse(b.data, err, sizeof err);
    CHECK(doc != NULL);
    if (!doc) {
        fprintf(stderr, "not JSON: %s\n", err);
        return check_done();
    }
    yajl_val v = member(doc, "openapi");
    CHECK(YAJL_IS_STRING(v) && strcmp(v->u.string, "3.0.3") == 0);
    yajl_val paths = member(doc, "paths");
    CHECK(YAJL_IS_OBJECT(paths));
    CHECK_EQ_INT(paths ? paths->u.object.len : 0, 10);
    for (size_t p = 0; p < 2; p++) {
        for (size_t e = 0; e < sizeof ENDPOINTS / sizeof ENDPOINTS[0]; e++) {
            char path[160];
            snprintf(path, sizeof path, "%s%s", PREFIXES[p], ENDPOINTS[e]);
            yajl_val get = member(member(paths, path), "get");
            CHECK(get != NULL);
            if (!get) {
                fprintf(stderr, "  missing: GET %s\n", path);
                continue;
            }
            yajl_val responses = member(get, "responses");
            CHECK(member(responses, "200") != NULL && member(responses, "401") != NULL &&
                  member(responses, "404") != NULL);
            CHECK(YAJL_IS_STRING(member(get, "operationId")));
        }
    }
    check_refs(doc, doc);
    CHECK(refs_checked > 20);
    yajl_tree_free(doc);

    /* The same bytes each time; appended after what the buffer holds. */
    struct dmj_buf again;
    dmj_buf_init(&again, 1 << 20);
    CHECK_EQ_INT(dmj_buf_adds(&again, "x"), 0);
    CHECK_EQ_INT(dmj_api_schema_render(&again), 0);
    CHECK_EQ_INT(again.len, b.len + 1);
    CHECK(again.len == b.len + 1 && memcmp(again.data + 1, b.data, b.len) == 0);
    dmj_buf_dispose(&again);

    /* A buffer whose maximum is too small: an error, not a cut document. */
    struct dmj_buf small;
    dmj_buf_init(&small, b.len / 2);
    int rc = dmj_api_schema_render(&small);
    CHECK(rc == DMJ_ETOOBIG || rc == -ENOMEM);
    dmj_buf_dispose(&small);
    dmj_buf_dispose(&b);
    return check_done();
}
