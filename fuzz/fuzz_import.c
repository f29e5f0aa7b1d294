/* Fuzz target: arbitrary bytes as an import document through the import parser (dry run).
 *
 * The first byte picks the options (bit 0 --pg-copy, bit 1 --skip-invalid, bit 2 --team 7,
 * bit 3 --kind from bits 4-6), the second how the rest is cut into feeds. Every job that
 * comes out is rendered with dmj_json_add_job_full, parsed again and rendered again: the
 * two renderings must be identical (export -> import -> export gives the same bytes). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmj/buf.h"
#include "dmj/import.h"
#include "dmj/json.h"

struct check {
    struct dmj_buf first;
    struct dmj_buf second;
    unsigned records;
};

static int reparsed(void *ctx, const struct dmj_import_record *rec)
{
    struct check *c = ctx;
    c->records++;
    if (rec->kind != DMJ_IMPORT_JOB)
        abort();
    return dmj_json_add_job_full(&c->second, &rec->u.job);
}

static int on_record(void *ctx, const struct dmj_import_record *rec)
{
    struct check *c = ctx;
    if (rec->kind != DMJ_IMPORT_JOB)
        return 0;
    dmj_buf_reset(&c->first);
    dmj_buf_reset(&c->second);
    if (dmj_json_add_job_full(&c->first, &rec->u.job) != 0)
        return 0; /* too large to render within the bound: nothing to compare */

    struct dmj_import_options o = {.record = reparsed, .ctx = c};
    struct dmj_import *imp;
    if (dmj_import_new(&o, &imp) != 0)
        return 0;
    unsigned before = c->records;
    int rc = dmj_import_feed(imp, c->first.data, c->first.len);
    if (rc == 0)
        rc = dmj_import_finish(imp);
    if (rc != 0) {
        const struct dmj_import_error *e = dmj_import_last_error(imp);
        fprintf(stderr, "export line not importable: %s: %s\n%s\n", e->field, e->reason,
                c->first.data);
        abort();
    }
    dmj_import_free(imp);
    if (c->records != before + 1 || c->first.len != c->second.len ||
        memcmp(c->first.data, c->second.data, c->first.len) != 0) {
        fprintf(stderr, "round trip differs:\n%s\n%s\n", c->first.data,
                c->second.data ? c->second.data : "");
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t flags = data[0], cut = data[1];
    data += 2;
    size -= 2;
    struct check c = {.records = 0};
    dmj_buf_init(&c.first, 1u << 20);
    dmj_buf_init(&c.second, 1u << 20);
    struct dmj_import_options o = {
        .pg_copy = flags & 1,
        .skip_invalid = (flags & 2) != 0,
        .has_team = (flags & 4) != 0,
        .team_id = 7,
        .record = on_record,
        .ctx = &c,
    };
    if (flags & 8) {
        o.has_kind = true;
        o.kind = (enum dmj_import_kind)(((flags >> 4) & 7) % 6);
    }
    struct dmj_import *imp;
    if (dmj_import_new(&o, &imp) != 0)
        goto Exit;
    /* Feeds of 1 to 256 bytes (0: all at once) exercise tokens, escapes and gzip headers
     * split across reads. */
    size_t step = cut ? cut : size;
    int rc = 0;
    for (size_t off = 0; off < size && rc == 0; off += step)
        rc = dmj_import_feed(imp, data + off, size - off < step ? size - off : step);
    if (rc == 0)
        rc = dmj_import_finish(imp);
    if (rc != 0 && dmj_import_last_error(imp)->reason[0] == '\0')
        abort(); /* every failure must say why */
    dmj_import_free(imp);
Exit:
    dmj_buf_dispose(&c.first);
    dmj_buf_dispose(&c.second);
    return 0;
}
