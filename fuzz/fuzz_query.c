/* Fuzz target: arbitrary request targets through the query parser, the look-ups, the path
 * decoder, the cursor, UUID and integer parsers and the link builder. Checked: every field
 * lies inside the query's storage, NUL-terminated, as valid UTF-8 (Python strs); a plain
 * ASCII query decodes as an independent parse_qsl would; links are printable ASCII and their
 * query parses back to the request's fields, sorted by key, with `cursor` replaced. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cursor.h"
#include "dmj/query.h"
#include "dmj/uuid.h"
#include "number.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_field(const struct dmj_query *q, const char *p, size_t len)
{
    const char *lo = q->storage.data, *hi = q->storage.data + q->storage.len;
    if (p < lo || p + len >= hi + 1 || p[len] != '\0')
        abort();
}

/* Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF), written apart from
 * the library's decoder so that the two check each other. */
static int utf8_ok(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t need;
        unsigned cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            need = 1;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            need = 2;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            need = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (n - i <= need)
            return 0;
        for (size_t k = 1; k <= need; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        static const unsigned min[] = {0, 0x80, 0x800, 0x10000};
        if (cp < min[need] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += need + 1;
    }
    return 1;
}

static int hexdig(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* unquote_plus of an ASCII part into out; returns the decoded length. */
static size_t unquote_plus(const unsigned char *s, size_t n, unsigned char *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && n - i > 2 && hexdig(s[i + 1]) >= 0 && hexdig(s[i + 2]) >= 0) {
            out[k++] = (unsigned char)(hexdig(s[i + 1]) << 4 | hexdig(s[i + 2]));
            i += 2;
        } else {
            out[k++] = s[i] == '+' ? ' ' : s[i];
        }
    }
    return k;
}

/* For an ASCII query without tab or '#' whose fields decode to valid UTF-8, parse_qsl is
 * simple enough to restate: compare the library's fields with it. */
static void check_plain(const struct dmj_query *q, const unsigned char *raw, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (raw[i] >= 0x80 || raw[i] == '\t' || raw[i] == '#')
            return;
    }
    static unsigned char tmp[1 << 16];
    unsigned n = 0;
    size_t pos = 0;
    while (pos < len) {
        const unsigned char *f = raw + pos, *amp = memchr(f, '&', len - pos);
        size_t flen = amp ? (size_t)(amp - f) : len - pos;
        pos += flen + 1;
        if (flen == 0)
            continue;
        const unsigned char *eq = memchr(f, '=', flen);
        size_t klen = eq ? (size_t)(eq - f) : flen;
        size_t kn = unquote_plus(f, klen, tmp);
        size_t vn = eq ? unquote_plus(eq + 1, flen - klen - 1, tmp + kn) : 0;
        if (!utf8_ok(tmp, kn) || !utf8_ok(tmp + kn, vn))
            return; /* U+FFFD replacement: not restated here */
        if (n >= q->n)
            abort();
        const struct dmj_query_param *p = &q->params[n++];
        if (p->key_len != kn || memcmp(p->key, tmp, kn) != 0 || p->value_len != vn ||
            memcmp(p->value, tmp + kn, vn) != 0)
            abort();
    }
    if (n != q->n)
        abort();
}

struct item {
    const char *key, *value;
    size_t key_len, value_len;
    unsigned order;
};

static int item_cmp(const void *pa, const void *pb)
{
    const struct item *a = pa, *b = pb;
    size_t n = a->key_len < b->key_len ? a->key_len : b->key_len;
    int c = memcmp(a->key, b->key, n);
    if (c == 0)
        c = (a->key_len > b->key_len) - (a->key_len < b->key_len);
    return c ? c : (a->order > b->order) - (a->order < b->order);
}

/* The link's query, parsed again, is the request's fields sorted by key (repeats in their
 * order) with every `cursor` replaced by the one new value. */
static void check_link_query(const struct dmj_query *q, const struct dmj_buf *link,
                             const char *cursor, size_t cursor_len)
{
    static struct item items[DMJ_QUERY_MAX_PARAMS + 1];
    static struct dmj_query back;
    unsigned n = 0;
    for (unsigned i = 0; i < q->n; i++) {
        const struct dmj_query_param *p = &q->params[i];
        if (p->key_len == 6 && memcmp(p->key, "cursor", 6) == 0)
            continue;
        items[n] = (struct item){p->key, p->value, p->key_len, p->value_len, n};
        n++;
    }
    items[n] = (struct item){"cursor", cursor, 6, cursor_len, n};
    n++;
    qsort(items, n, sizeof items[0], item_cmp);

    const char *qm = memchr(link->data, '?', link->len);
    if (!qm)
        abort();
    dmj_query_init(&back, 1 << 20);
    int rc = dmj_query_parse(&back, qm + 1, link->len - (size_t)(qm + 1 - link->data));
    if (rc == DMJ_ETOOBIG && n > DMJ_QUERY_MAX_PARAMS)
        goto out; /* the added cursor took it past Django's field count */
    if (rc != 0 || back.n != n)
        abort();
    for (unsigned i = 0; i < n; i++) {
        const struct dmj_query_param *p = &back.params[i];
        if (p->key_len != items[i].key_len || memcmp(p->key, items[i].key, p->key_len) != 0 ||
            p->value_len != items[i].value_len ||
            memcmp(p->value, items[i].value, p->value_len) != 0)
            abort();
    }
out:
    dmj_query_dispose(&back);
}

/* What gunicorn leaves of the query: tabs dropped, cut at '#'. Is it non-ASCII UTF-8? Then
 * the link reads it as Latin-1 (see query.c) and the round trip is not the plain one. */
static int link_reads_latin1(const unsigned char *raw, size_t len)
{
    static unsigned char tmp[1 << 16];
    size_t k = 0;
    int high = 0;
    for (size_t i = 0; i < len && raw[i] != '#'; i++) {
        if (raw[i] != '\t') {
            high |= raw[i] >= 0x80;
            tmp[k++] = raw[i];
        }
    }
    return high && utf8_ok(tmp, k);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The input is a target: path '?' query, as the server splits it. */
    if (size >= 1 << 16)
        return 0; /* far beyond any request line h2o accepts; keeps the checks' buffers fixed */
    const char *s = (const char *)data;
    const char *qm = memchr(s, '?', size);
    size_t path_len = qm ? (size_t)(qm - s) : size;
    const char *raw = qm ? qm + 1 : s + size;
    size_t raw_len = qm ? size - path_len - 1 : 0;

    struct dmj_buf path, link, cur;
    static struct dmj_query q; /* ~32 KB of fields: kept off the stack */
    dmj_buf_init(&path, 1 << 18);
    dmj_buf_init(&link, 1 << 20);
    dmj_buf_init(&cur, 4096);
    dmj_query_init(&q, 1 << 18);

    if (dmj_query_decode_path(s, path_len, &path) != 0)
        goto out;
    if (!utf8_ok((const unsigned char *)path.data, path.len))
        abort();
    int rc = dmj_query_parse(&q, raw, raw_len);
    if (rc != 0) {
        if (rc != DMJ_ETOOBIG || q.n != 0)
            abort(); /* only too many fields is refused, and it leaves the query empty */
        goto out;
    }
    if (q.n > DMJ_QUERY_MAX_PARAMS)
        abort();
    for (unsigned i = 0; i < q.n; i++) {
        const struct dmj_query_param *p = &q.params[i];
        check_field(&q, p->key, p->key_len);
        check_field(&q, p->value, p->value_len);
        if (!utf8_ok((const unsigned char *)p->key, p->key_len) ||
            !utf8_ok((const unsigned char *)p->value, p->value_len))
            abort();
        long long v;
        bool over;
        if (dmj_parse_int(p->value, p->value_len, &v, &over) == 0 && over && v != INT64_MAX &&
            v != INT64_MIN)
            abort();
    }
    check_plain(&q, (const unsigned char *)raw, raw_len);

    const struct dmj_query_param *limit = dmj_query_last(&q, "limit");
    if (limit && strcmp(limit->key, "limit") != 0)
        abort();
    const struct dmj_query_param *sq = dmj_query_last(&q, "saved_query_id");
    uint8_t id[16], id2[16];
    char text[DMJ_UUID_TEXT_LEN + 1];
    if (sq && dmj_uuid_parse(sq->value, sq->value_len, id) == 0) {
        dmj_uuid_format(id, text);
        if (dmj_uuid_parse(text, strlen(text), id2) != 0 || memcmp(id, id2, 16) != 0)
            abort();
    }
    const struct dmj_query_param *cp = dmj_query_last(&q, "cursor");
    struct dmj_cursor c;
    memset(&c, 0, sizeof c);
    if (cp && dmj_cursor_decode(cp->value, cp->value_len, &c) == 0 &&
        dmj_cursor_encode(&c, &cur) != 0)
        abort();
    const char *cv = cur.len ? cur.data : "";
    if (dmj_query_build_link(&link, size & 1, "h:1", 3, path.len ? path.data : "", path.len, &q, cv,
                             cur.len) == 0) {
        const char *scheme = size & 1 ? "https://h:1" : "http://h:1";
        if (link.len < strlen(scheme) || memcmp(link.data, scheme, strlen(scheme)) != 0)
            abort();
        for (size_t i = 0; i < link.len; i++) {
            unsigned char ch = (unsigned char)link.data[i];
            if (ch <= 0x20 || ch >= 0x7f || ch == '#')
                abort();
        }
        if (!link_reads_latin1((const unsigned char *)raw, raw_len))
            check_link_query(&q, &link, cv, cur.len);
    } else {
        abort(); /* within these bounds a link always fits */
    }
out:
    dmj_query_dispose(&q);
    dmj_buf_dispose(&cur);
    dmj_buf_dispose(&link);
    dmj_buf_dispose(&path);
    return 0;
}
