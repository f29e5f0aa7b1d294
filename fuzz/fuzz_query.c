/* Fuzz target: arbitrary request targets through the query parser, the look-ups, the path
 * decoder, the cursor and integer parsers and the link builder; links must come out as
 * printable ASCII, and every field must lie inside the query's storage, NUL-terminated. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dmj/cursor.h"
#include "dmj/query.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_field(const struct dmj_query *q, const char *p, size_t len)
{
    const char *lo = q->storage.data, *hi = q->storage.data + q->storage.len;
    if (p < lo || p + len >= hi + 1 || p[len] != '\0')
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The input is a target: path '?' query, as the server splits it. */
    const char *s = (const char *)data;
    const char *qm = memchr(s, '?', size);
    size_t path_len = qm ? (size_t)(qm - s) : size;
    const char *raw = qm ? qm + 1 : s + size;
    size_t raw_len = qm ? size - path_len - 1 : 0;

    struct dmj_buf path, link, cur;
    struct dmj_query q;
    dmj_buf_init(&path, 1 << 16);
    dmj_buf_init(&link, 1 << 18);
    dmj_buf_init(&cur, 4096);
    dmj_query_init(&q, 1 << 16);

    if (dmj_query_decode_path(s, path_len, &path) != 0)
        goto out;
    if (dmj_query_parse(&q, raw, raw_len) != 0)
        goto out;
    if (q.n > DMJ_QUERY_MAX_PARAMS)
        abort();
    for (unsigned i = 0; i < q.n; i++) {
        check_field(&q, q.params[i].key, q.params[i].key_len);
        check_field(&q, q.params[i].value, q.params[i].value_len);
        long long v;
        bool over;
        if (dmj_parse_int(q.params[i].value, q.params[i].value_len, &v, &over) == 0 && over &&
            v != INT64_MAX && v != INT64_MIN)
            abort();
    }
    const struct dmj_query_param *limit = dmj_query_last(&q, "limit");
    if (limit && strcmp(limit->key, "limit") != 0)
        abort();
    const struct dmj_query_param *cp = dmj_query_last(&q, "cursor");
    struct dmj_cursor c;
    memset(&c, 0, sizeof c);
    if (cp && dmj_cursor_decode(cp->value, cp->value_len, &c) == 0 &&
        dmj_cursor_encode(&c, &cur) != 0)
        abort();
    if (dmj_query_build_link(&link, size & 1, "h:1", 3, path.len ? path.data : "", path.len, &q,
                             cur.len ? cur.data : "", cur.len) == 0) {
        for (size_t i = 0; i < link.len; i++) {
            unsigned char ch = (unsigned char)link.data[i];
            if (ch <= 0x20 || ch >= 0x7f)
                abort();
        }
    }
out:
    dmj_query_dispose(&q);
    dmj_buf_dispose(&cur);
    dmj_buf_dispose(&link);
    dmj_buf_dispose(&path);
    return 0;
}
