/* Fuzz target: arbitrary bytes as a message of PostgreSQL's replication stream (the first
 * byte picks the CopyData layer or the pgoutput layer). Parsing must stay inside the bytes it
 * was given; a relation's columns must read back as many as it declares; and every tuple that
 * converts must give one JSON object that `dmj import`'s parser reads without a syntax
 * error (valid UTF-8 given), whatever types (other than json, whose text PostgreSQL guarantees) the columns have. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmj/import.h"
#include "pgoutput.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint32_t types[] = {PGO_BOOL,   PGO_INT2,   PGO_INT4,    PGO_INT8, PGO_OID,
                                 PGO_FLOAT4, PGO_FLOAT8, PGO_NUMERIC, 25,       1184};

static struct pgo_value old_values[PGO_MAX_COLUMNS], new_values[PGO_MAX_COLUMNS];
static struct pgo_column columns[PGO_MAX_COLUMNS];

static int on_record(void *ctx, const struct dmj_import_record *rec)
{
    (void)ctx;
    (void)rec;
    return 0;
}

/* A syntax error is the conversion's fault; invalid UTF-8 is the input's (a database whose
 * encoding is not UTF8), and a record that is not a valid job is skipped. */
static bool conversion_fault(const struct dmj_import_error *e)
{
    return strcmp(e->field, "json") == 0 && strcmp(e->reason, "invalid UTF-8") != 0;
}

static void on_skipped(void *ctx, const struct dmj_import_error *e)
{
    if (conversion_fault(e)) {
        fprintf(stderr, "row JSON does not parse: %s\n", (const char *)ctx);
        abort();
    }
}

static void check_row(const struct pgo_tuple *t, uint8_t seed)
{
    for (uint16_t i = 0; i < t->ncols; i++) {
        columns[i].name.ptr = i % 2 ? "status" : "id";
        columns[i].name.len = i % 2 ? 6 : 2;
        columns[i].type = types[(seed + i) % (sizeof types / sizeof *types)];
    }
    struct dmj_buf json;
    dmj_buf_init(&json, (size_t)1 << 26);
    int rc = pgo_row_json(&json, columns, t);
    if (rc == 0) {
        struct dmj_import_options opts = {
            .skip_invalid = true, .record = on_record, .skipped = on_skipped, .ctx = json.data};
        struct dmj_import *imp;
        if (dmj_import_new(&opts, &imp) == 0) {
            rc = dmj_import_feed(imp, json.data, json.len);
            if (rc == 0)
                rc = dmj_import_finish(imp);
            if (rc == DMJ_EINVAL && conversion_fault(dmj_import_last_error(imp))) {
                fprintf(stderr, "row JSON does not parse: %s\n", json.data);
                abort();
            }
            dmj_import_free(imp);
        }
    }
    dmj_buf_dispose(&json);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    /* copies of exactly the bytes, so that ASan sees any read past them */
    uint8_t *msg = malloc(size - 1 ? size - 1 : 1);
    if (!msg)
        return 0;
    memcpy(msg, data + 1, size - 1);
    if (data[0] & 1) {
        struct pgo_copy c;
        if (pgo_parse_copy(msg, size - 1, &c) == 0 && c.kind == 'w' &&
            (c.data < msg || c.data + c.len > msg + size - 1))
            abort();
    } else {
        struct pgo_message m;
        if (pgo_parse(msg, size - 1, old_values, new_values, &m) == 0) {
            if (m.kind == PGO_RELATION) {
                size_t pos = 0;
                struct pgo_column c;
                for (uint16_t i = 0; i < m.ncols; i++) {
                    if (pgo_next_column(&m, &pos, &c) != 0)
                        abort(); /* pgo_parse checked every column */
                }
            } else if (m.kind == PGO_TRUNCATE) {
                uint32_t sum = 0;
                for (uint32_t i = 0; i < m.nrelids; i++)
                    sum += pgo_relid_at(&m, i);
                (void)sum;
            } else if (m.kind == PGO_INSERT || m.kind == PGO_UPDATE) {
                check_row(&m.new_row, data[0]);
            }
            if (m.has_old)
                check_row(&m.old, data[0]);
        }
    }
    free(msg);
    return 0;
}
