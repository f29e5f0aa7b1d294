/* The worker's rendered jobs (rows.h).
 *
 * The ring: each kept row is its record's bytes followed by its JSON, written at the ring's
 * head, a position counted from the cache's start that only grows (a row that would cross the
 * ring's end starts at its beginning instead). A row written at `pos` is intact as long as
 * the head has not passed pos + ring size. Slots are direct-mapped by job id: a slot holds
 * the newest row of one of the ids that map to it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "digest.h"
#include "dmj/json.h"
#include "rows.h"

/* The largest JSON of one job (the response body's own maximum). */
#define ROW_JSON_MAX ((size_t)64 << 20)
/* A slot for about every this many bytes of ring: a kept row (a record and its JSON) is
 * about 600 bytes. */
#define BYTES_PER_SLOT 512

enum { ROW_USED = 1, ROW_HIDDEN = 2, ROW_MATERIALIZES = 4, ROW_EXECUTE_DAG = 8 };

struct slot {
    uint64_t pos; /* where the row starts in the ring, counted from the cache's start */
    /* where the record was last found equal to the kept bytes, and in which committed state:
     * found there again in that state, it needs no compare (store.h, dmj_job_rec) */
    uint64_t seen_txnid;
    const void *seen_at;
    uint64_t digest; /* of the JSON */
    uint8_t id[16];
    uint32_t rec_len, json_len;
    uint8_t status;
    uint8_t flags;
};

struct dmj_rows {
    struct slot *slot;
    unsigned slot_bits; /* 2^slot_bits slots */
    char *ring;
    size_t ring_size; /* 0: nothing is kept */
    uint64_t head;
    bool current;
    struct dmj_buf render; /* a row rendered before it is kept, or one too large to keep */
    uint64_t kept, rendered;
};

int dmj_rows_new(size_t bytes, bool current, struct dmj_rows **out)
{
    struct dmj_rows *rows = calloc(1, sizeof *rows);
    if (!rows)
        return -ENOMEM;
    rows->current = current;
    dmj_buf_init(&rows->render, ROW_JSON_MAX);
    if (bytes > 0) {
        unsigned bits = 6;
        while (bits < 24 && ((size_t)1 << bits) * BYTES_PER_SLOT < bytes)
            bits++;
        /* pages the ring never reaches are never touched: RSS grows with what is kept */
        rows->slot = calloc((size_t)1 << bits, sizeof *rows->slot);
        rows->ring = malloc(bytes);
        if (!rows->slot || !rows->ring) {
            dmj_rows_free(rows);
            return -ENOMEM;
        }
        rows->slot_bits = bits;
        rows->ring_size = bytes;
    }
    *out = rows;
    return 0;
}

void dmj_rows_free(struct dmj_rows *rows)
{
    if (!rows)
        return;
    dmj_buf_dispose(&rows->render);
    free(rows->ring);
    free(rows->slot);
    free(rows);
}

void dmj_rows_counts(const struct dmj_rows *rows, uint64_t *kept, uint64_t *rendered)
{
    *kept = rows->kept;
    *rendered = rows->rendered;
}

/* The slot of a job id: its bytes mixed (ids chosen by a client's data need not be random). */
static struct slot *slot_of(const struct dmj_rows *rows, const uint8_t id[16])
{
    uint64_t a, b;
    memcpy(&a, id, 8);
    memcpy(&b, id + 8, 8);
    uint64_t h = (a ^ (b * 0x9e3779b97f4a7c15ULL)) * 0xbf58476d1ce4e5b9ULL;
    return &rows->slot[h >> (64 - rows->slot_bits)];
}

static bool has_prefix(struct dmj_str s, const char *lit, size_t n)
{
    return s.ptr != NULL && s.len >= n && memcmp(s.ptr, lit, n) == 0;
}

static void fill_row(struct dmj_row *out, const struct slot *sl, const char *json)
{
    out->json = json;
    out->json_len = sl->json_len;
    out->digest = sl->digest;
    out->status = (enum dmj_status)sl->status;
    out->hidden = sl->flags & ROW_HIDDEN;
    out->materializes = sl->flags & ROW_MATERIALIZES;
    out->execute_dag = sl->flags & ROW_EXECUTE_DAG;
}

/* Keeps the record and the JSON in `render` at the ring's head, in slot `sl`; the JSON's
 * place in the ring, or NULL when the row is too large to keep (it stays in `render`). */
static const char *keep(struct dmj_rows *rows, struct slot *sl, const struct dmj_job_rec *rec)
{
    size_t json_len = rows->render.len, total = rec->len + json_len;
    if (rows->ring_size == 0 || total > rows->ring_size / 8)
        return NULL;
    size_t at = (size_t)(rows->head % rows->ring_size);
    if (at + total > rows->ring_size) {
        rows->head += rows->ring_size - at;
        at = 0;
    }
    char *p = rows->ring + at;
    memcpy(p, rec->data, rec->len);
    if (json_len > 0)
        memcpy(p + rec->len, rows->render.data, json_len);
    sl->pos = rows->head;
    memcpy(sl->id, rec->id, 16);
    sl->seen_at = rec->data;
    sl->seen_txnid = rec->txnid;
    sl->rec_len = (uint32_t)rec->len;
    sl->json_len = (uint32_t)json_len;
    sl->flags |= ROW_USED;
    rows->head += total;
    return p + rec->len;
}

/* Whether the slot holds a row still intact in the ring. */
static bool intact(const struct dmj_rows *rows, const struct slot *sl)
{
    return (sl->flags & ROW_USED) && sl->pos + rows->ring_size >= rows->head;
}

int dmj_rows_next(struct dmj_rows *rows, struct dmj_walk *walk, struct dmj_job_rec *rec,
                  struct dmj_row *out)
{
    int rc = dmj_walk_next_entry(walk, rec);
    if (rc || rec->data != NULL)
        return rc ? rc : dmj_rows_get(rows, rec, out);
    /* An index entry: a job whose record was found equal to a kept row in this very state
     * is that row; no need to read the record again. */
    if (rows->ring_size > 0 && rec->txnid != 0) {
        struct slot *sl = slot_of(rows, rec->id);
        if (intact(rows, sl) && sl->seen_txnid == rec->txnid && memcmp(sl->id, rec->id, 16) == 0) {
            rec->data = sl->seen_at;
            rec->len = sl->rec_len;
            rows->kept++;
            fill_row(out, sl, rows->ring + sl->pos % rows->ring_size + sl->rec_len);
            return 0;
        }
    }
    rc = dmj_walk_fetch(walk, rec);
    return rc ? rc : dmj_rows_get(rows, rec, out);
}

int dmj_rows_get(struct dmj_rows *rows, const struct dmj_job_rec *rec, struct dmj_row *out)
{
    struct slot scratch = {0};
    struct slot *sl = rows->ring_size ? slot_of(rows, rec->id) : &scratch;

    if (intact(rows, sl) && sl->rec_len == rec->len) {
        const char *p = rows->ring + sl->pos % rows->ring_size;
        if ((sl->seen_at == rec->data && sl->seen_txnid == rec->txnid && rec->txnid != 0) ||
            memcmp(p, rec->data, rec->len) == 0) {
            sl->seen_at = rec->data;
            sl->seen_txnid = rec->txnid;
            rows->kept++;
            fill_row(out, sl, p + rec->len);
            return 0;
        }
    }

    struct dmj_job job;
    int rc = dmj_job_decode(rec->data, rec->len, &job);
    if (rc)
        return rc;
    rows->rendered++;
    dmj_buf_reset(&rows->render);
    bool hidden = dmj_job_hidden(&job);
    if (!hidden)
        rc = rows->current ? dmj_json_add_job_current(&rows->render, &job)
                           : dmj_json_add_job(&rows->render, &job);
    if (rc)
        return rc;
    if (rec->len > UINT32_MAX || rows->render.len > UINT32_MAX)
        return DMJ_ETOOBIG;
    sl->flags = (uint8_t)((hidden ? ROW_HIDDEN : 0) |
                          (dmj_job_materializes(&job) ? ROW_MATERIALIZES : 0) |
                          (has_prefix(job.workflow_id, "execute-dag", 11) ? ROW_EXECUTE_DAG : 0));
    sl->status = (uint8_t)job.status;
    sl->json_len = (uint32_t)rows->render.len;
    sl->digest = dmj_digest_bytes(rows->render.data ? rows->render.data : "", rows->render.len);
    const char *json = keep(rows, sl, rec);
    if (!json) {
        /* not kept: the slot no longer names a row */
        sl->flags &= (uint8_t)~ROW_USED;
        json = rows->render.data ? rows->render.data : "";
    }
    fill_row(out, sl, json);
    return 0;
}
