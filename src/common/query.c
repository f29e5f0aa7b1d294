/* Query strings, paths and links exactly as Django 3.2's request.GET and DRF 3.14's links
 * read and write them (Python 3.11 urllib.parse rules).
 *
 * What the peer (gunicorn + Django) does with a raw query, and what this file reproduces:
 * - gunicorn's urlsplit drops every '\t' of the target and ends the query at '#';
 * - request.GET decodes the whole query as UTF-8 when it is valid UTF-8, else as Latin-1,
 *   then parse_qsl(keep_blank_values=True): '&' separates, '+' is space, and each run of
 *   ASCII characters is percent-decoded and read as UTF-8 with errors='replace';
 * - a DRF link reads the query again, from iri_to_uri(QUERY_STRING), where raw bytes >= 0x80
 *   are always Latin-1 characters. The two readings differ only for a query that is valid
 *   UTF-8 and not ASCII; for that case the raw query is kept at the start of the storage so
 *   that dmj_query_build_link can read it the link's way.
 *
 * Storage layout (private): one tag byte ('A': the fields serve links as they are; 'U': the
 * raw query follows as a size_t length and its bytes), then the fields, each NUL-terminated. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "percent.h"
#include "utf8.h"
#include "dmj/query.h"

#define TAG_PLAIN 'A'
#define TAG_RAW 'U'

/* Two readings of bytes >= 0x80 outside percent escapes. */
enum high_bytes {
    HIGH_UTF8,   /* the raw query was valid UTF-8: copy them */
    HIGH_LATIN1, /* each is one Latin-1 character: write it as UTF-8 */
};

/* CPython's UTF-8 decoder with errors='replace', fed one byte at a time: strict UTF-8 as
 * utf8.c reads it (no overlongs, surrogates or values past U+10FFFF), and one U+FFFD for each
 * maximal invalid subpart (an invalid byte, or a valid but unfinished prefix of a sequence). */
struct u8dec {
    unsigned state; /* dmj_utf8_step's */
    unsigned len;   /* bytes of an unfinished sequence held in seq */
    unsigned char seq[4];
};

static const char REPLACEMENT[] = "\xef\xbf\xbd";

static int u8_put(struct u8dec *d, unsigned char c, struct dmj_buf *out)
{
    if (c < 0x80 && !d->len)
        return dmj_buf_add(out, &c, 1);
    unsigned next = dmj_utf8_step(d->state, c);
    if (next == DMJ_UTF8_REJECT && d->len) {
        /* The held prefix ends here; this byte starts afresh. */
        d->len = 0;
        int rc = dmj_buf_add(out, REPLACEMENT, 3);
        if (rc)
            return rc;
        next = dmj_utf8_step(DMJ_UTF8_ACCEPT, c);
    }
    if (next == DMJ_UTF8_REJECT) {
        d->state = DMJ_UTF8_ACCEPT;
        return dmj_buf_add(out, REPLACEMENT, 3);
    }
    d->state = next;
    d->seq[d->len++] = c;
    if (next != DMJ_UTF8_ACCEPT)
        return 0;
    size_t n = d->len;
    d->len = 0;
    return dmj_buf_add(out, d->seq, n);
}

static int u8_end(struct u8dec *d, struct dmj_buf *out)
{
    if (!d->len)
        return 0;
    d->len = 0;
    d->state = DMJ_UTF8_ACCEPT;
    return dmj_buf_add(out, REPLACEMENT, 3);
}

/* Appends one key or value as parse_qsl/unquote produce it: '+' as space when `plus`,
 * %XX as a byte, bytes >= 0x80 as `high` says, all read as UTF-8 with errors='replace'.
 * CPython decodes each ASCII run on its own and copies the other characters; one stream
 * gives the same text, because a raw character always starts with a byte >= 0xc2 that ends
 * any unfinished sequence before it and is complete in itself. */
static int add_part(struct dmj_buf *out, const unsigned char *s, size_t n, enum high_bytes high,
                    bool plus)
{
    struct u8dec d = {.state = DMJ_UTF8_ACCEPT};
    int rc = 0;
    for (size_t i = 0; i < n && !rc;) {
        bool escaped;
        unsigned char c = dmj_percent_next(s, n, &i, plus, &escaped);
        if (c >= 0x80 && !escaped && high == HIGH_LATIN1) {
            rc = u8_put(&d, (unsigned char)(0xc0 | (c >> 6)), out);
            c = (unsigned char)(0x80 | (c & 0x3f));
            if (rc)
                break;
        }
        rc = u8_put(&d, c, out);
    }
    if (!rc)
        rc = u8_end(&d, out);
    return rc;
}

void dmj_query_init(struct dmj_query *q, size_t max_bytes)
{
    q->n = 0;
    dmj_buf_init(&q->storage, max_bytes);
}

void dmj_query_dispose(struct dmj_query *q)
{
    q->n = 0;
    dmj_buf_dispose(&q->storage);
}

/* One non-empty field of parse_qsl: s[at..at+len), its name s[at..at+name_len) (name_len ==
 * len when there is no '='). */
struct field {
    size_t at, len, name_len;
};

/* The next non-empty field of s[*pos..len) (no tabs, no '#'), advancing *pos; false at the end. */
static bool next_field(const unsigned char *s, size_t len, size_t *pos, struct field *f)
{
    while (*pos < len) {
        const unsigned char *start = s + *pos;
        const unsigned char *amp = memchr(start, '&', len - *pos);
        size_t flen = amp ? (size_t)(amp - start) : len - *pos;
        f->at = *pos;
        *pos += flen + 1;
        if (flen == 0)
            continue;
        const unsigned char *eq = memchr(start, '=', flen);
        f->len = flen;
        f->name_len = eq ? (size_t)(eq - start) : flen;
        return true;
    }
    return false;
}

/* parse_qsl over raw[0..len) (no tabs, no '#') into q, whose storage holds the header. */
static int parse_fields(struct dmj_query *q, const unsigned char *raw, size_t len,
                        enum high_bytes high)
{
    size_t koff[DMJ_QUERY_MAX_PARAMS], voff[DMJ_QUERY_MAX_PARAMS];
    unsigned n = 0;
    struct dmj_buf *st = &q->storage;
    int rc;

    /* Python counts fields before skipping empty ones: 1 + number of separators. */
    size_t fields = 0;
    if (len > 0) {
        fields = 1;
        for (size_t i = 0; i < len; i++)
            fields += raw[i] == '&';
    }
    if (fields > DMJ_QUERY_MAX_PARAMS)
        return DMJ_ETOOBIG;

    size_t pos = 0;
    struct field fd;
    while (next_field(raw, len, &pos, &fd)) {
        const unsigned char *f = raw + fd.at;
        size_t flen = fd.len, klen = fd.name_len;
        koff[n] = st->len;
        rc = add_part(st, f, klen, high, true);
        if (!rc)
            rc = dmj_buf_addc(st, '\0');
        if (rc)
            return rc;
        voff[n] = st->len;
        if (klen < flen)
            rc = add_part(st, f + klen + 1, flen - klen - 1, high, true);
        if (!rc)
            rc = dmj_buf_addc(st, '\0');
        if (rc)
            return rc;
        n++;
    }
    /* Pointers only now: the storage may have moved while it grew. */
    for (unsigned i = 0; i < n; i++) {
        q->params[i].key = st->data + koff[i];
        q->params[i].key_len = voff[i] - koff[i] - 1;
        q->params[i].value = st->data + voff[i];
        size_t vend = i + 1 < n ? koff[i + 1] : st->len;
        q->params[i].value_len = vend - voff[i] - 1;
    }
    q->n = n;
    return 0;
}

/* What gunicorn's urlsplit leaves of a raw target: s[0..len), every '\t' removed, the rest
 * cut at '#'. `s` points into the raw target when it has no tab, else into `copy`. */
struct target {
    const unsigned char *s;
    size_t len;
    char *copy; /* heap, or NULL: freed by the caller */
};

static int split_target(const char *raw, size_t len, struct target *t)
{
    t->copy = NULL;
    if (!raw)
        len = 0;
    if (len && memchr(raw, '\t', len)) {
        char *c = malloc(len);
        if (!c)
            return -ENOMEM;
        size_t k = 0;
        for (size_t i = 0; i < len; i++) {
            if (raw[i] != '\t')
                c[k++] = raw[i];
        }
        t->copy = c;
        raw = c;
        len = k;
    }
    const char *hash = len ? memchr(raw, '#', len) : NULL;
    t->s = (const unsigned char *)raw;
    t->len = hash ? (size_t)(hash - raw) : len;
    return 0;
}

/* How request.GET reads the high bytes of the query s[0..len) (tabs removed, cut at '#'):
 * Django tries UTF-8 on the whole string, and else Latin-1. */
static enum high_bytes query_reading(const unsigned char *s, size_t len)
{
    bool ascii = true;
    for (size_t i = 0; i < len && ascii; i++)
        ascii = s[i] < 0x80;
    return !ascii && dmj_utf8_valid(s, len) ? HIGH_UTF8 : HIGH_LATIN1;
}

int dmj_query_parse(struct dmj_query *q, const char *raw, size_t raw_len)
{
    q->n = 0;
    dmj_buf_reset(&q->storage);
    struct target t;
    int rc = split_target(raw, raw_len, &t);
    if (rc)
        return rc;

    enum high_bytes high = query_reading(t.s, t.len);

    if (high == HIGH_UTF8) {
        rc = dmj_buf_addc(&q->storage, TAG_RAW);
        if (!rc)
            rc = dmj_buf_add(&q->storage, &t.len, sizeof t.len);
        if (!rc)
            rc = dmj_buf_add(&q->storage, t.s, t.len);
    } else {
        rc = dmj_buf_addc(&q->storage, TAG_PLAIN);
    }
    if (!rc)
        rc = parse_fields(q, t.s, t.len, high);
    if (rc) {
        q->n = 0;
        dmj_buf_reset(&q->storage);
    }
    free(t.copy);
    return rc;
}

const struct dmj_query_param *dmj_query_last(const struct dmj_query *q, const char *key)
{
    size_t klen = strlen(key);
    for (unsigned i = q->n; i-- > 0;) {
        const struct dmj_query_param *p = &q->params[i];
        if (p->key_len == klen && memcmp(p->key, key, klen) == 0)
            return p;
    }
    return NULL;
}

/* The offset in raw[0..raw_len) of byte k of raw with its tabs removed (raw_len past the
 * last one); k itself when raw has no tabs. */
static size_t raw_offset(const char *raw, size_t raw_len, bool tabs, size_t k)
{
    if (!tabs)
        return k;
    for (size_t i = 0; i < raw_len; i++) {
        if (raw[i] != '\t' && k-- == 0)
            return i;
    }
    return raw_len;
}

int dmj_query_find(const char *raw, size_t raw_len, const char *name, dmj_query_found_fn *fn,
                   void *ctx)
{
    struct target t;
    int rc = split_target(raw, raw_len, &t);
    if (rc)
        return rc;
    enum high_bytes high = query_reading(t.s, t.len);
    size_t name_len = strlen(name);
    /* a decoded name longer than `name` cannot be it: stop decoding there */
    struct dmj_buf dec;
    dmj_buf_init(&dec, name_len + 1);
    size_t pos = 0;
    struct field f;
    while (rc == 0 && next_field(t.s, t.len, &pos, &f)) {
        dmj_buf_reset(&dec);
        int drc = add_part(&dec, t.s + f.at, f.name_len, high, true);
        if (drc == DMJ_ETOOBIG || (drc == 0 && (dec.len != name_len ||
                                                (name_len && memcmp(dec.data, name, name_len)))))
            continue;
        if (drc != 0) {
            rc = drc;
            break;
        }
        /* Offsets in raw: tabs inside or after the field belong to it (they are dropped). */
        bool tabs = t.copy != NULL;
        size_t end = raw_offset(raw, raw_len, tabs, f.at + f.len);
        size_t value = f.name_len < f.len ? raw_offset(raw, raw_len, tabs, f.at + f.name_len) + 1
                                          : end;
        rc = fn(ctx, raw_offset(raw, raw_len, tabs, f.at), value, end);
    }
    dmj_buf_dispose(&dec);
    free(t.copy);
    return rc;
}

struct redact {
    struct dmj_buf *out;
    const char *raw;
    size_t done; /* raw[0..done) is written */
    size_t keep;
};

static bool plain_key_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int redact_value(void *ctx, size_t name_at, size_t value_at, size_t end)
{
    struct redact *r = ctx;
    (void)name_at;
    size_t kept = 0;
    while (value_at + kept < end && kept < r->keep && plain_key_char(r->raw[value_at + kept]))
        kept++;
    int rc = dmj_buf_add(r->out, r->raw + r->done, value_at + kept - r->done);
    if (rc == 0 && value_at + kept < end)
        rc = dmj_buf_add(r->out, "...", 3);
    r->done = end;
    return rc;
}

int dmj_query_redact(struct dmj_buf *out, const char *target, size_t len, const char *name,
                     size_t keep)
{
    size_t before = out->len;
    const char *q = memchr(target, '?', len);
    size_t at = q ? (size_t)(q - target) + 1 : len;
    struct redact r = {.out = out, .raw = target + at, .done = 0, .keep = keep};
    int rc = dmj_buf_add(out, target, at);
    if (rc == 0 && q)
        rc = dmj_query_find(target + at, len - at, name, redact_value, &r);
    if (rc == 0)
        rc = dmj_buf_add(out, target + at + r.done, len - at - r.done);
    return dmj_buf_rollback(out, before, rc);
}

int dmj_query_decode_path(const char *raw, size_t raw_len, struct dmj_buf *out)
{
    /* gunicorn reads the raw target as Latin-1 and percent-decodes the path to bytes,
     * Django reads those as UTF-8; unquote(), not unquote_plus(): '+' stays. */
    struct target t;
    int rc = split_target(raw, raw_len, &t);
    if (rc)
        return rc;
    size_t before = out->len;
    rc = dmj_buf_rollback(out, before, add_part(out, t.s, t.len, HIGH_LATIN1, false));
    free(t.copy);
    return rc;
}

/* ---- writing URLs --------------------------------------------------------------------- */

static bool always_safe(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-' || c == '~';
}

/* urllib.parse.quote over UTF-8 bytes with extra `safe` characters; `plus` makes it
 * quote_plus (space as '+'). */
static int add_quoted(struct dmj_buf *out, const char *s, size_t n, const char *safe, bool plus)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int rc;
        if (always_safe(c) || (c != 0 && strchr(safe, c))) {
            rc = dmj_buf_addc(out, (char)c);
        } else if (c == ' ' && plus) {
            rc = dmj_buf_addc(out, '+');
        } else {
            char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
            rc = dmj_buf_add(out, esc, 3);
        }
        if (rc)
            return rc;
    }
    return 0;
}

int dmj_query_add_quoted(struct dmj_buf *out, const char *s, size_t len)
{
    size_t before = out->len;
    return dmj_buf_rollback(out, before, add_quoted(out, s, len, "", true));
}

/* One key=value of the link, in the order urlencode(sorted(...)) writes them. */
struct link_item {
    const char *key;
    size_t key_len;
    const char *value;
    size_t value_len;
};

/* Python's str ordering: by code point, which for valid UTF-8 is byte order. */
static int key_cmp(const struct link_item *a, const struct link_item *b)
{
    size_t n = a->key_len < b->key_len ? a->key_len : b->key_len;
    int c = memcmp(a->key, b->key, n);
    if (c)
        return c;
    return (a->key_len > b->key_len) - (a->key_len < b->key_len);
}

/* Stable merge sort of the items' order (bottom-up, ping-ponging between `ord` and `tmp`):
 * repeated keys keep their order (parse_qs's lists, doseq). Not insertion sort: with up to
 * 1001 items that is half a million comparisons per link, which the query fuzzer found to be
 * most of a list request's time. */
static void sort_items(const struct link_item *it, unsigned n, uint16_t *ord, uint16_t *tmp)
{
    uint16_t *src = ord, *dst = tmp;
    for (unsigned i = 0; i < n; i++)
        ord[i] = (uint16_t)i;
    for (unsigned width = 1; width < n; width *= 2) {
        for (unsigned lo = 0; lo < n; lo += 2 * width) {
            unsigned mid = lo + width < n ? lo + width : n;
            unsigned hi = lo + 2 * width < n ? lo + 2 * width : n;
            unsigned a = lo, b = mid, k = lo;
            while (a < mid && b < hi)
                dst[k++] = key_cmp(&it[src[b]], &it[src[a]]) < 0 ? src[b++] : src[a++];
            while (a < mid)
                dst[k++] = src[a++];
            while (b < hi)
                dst[k++] = src[b++];
        }
        uint16_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != ord)
        memcpy(ord, src, n * sizeof *ord);
}

static bool is_set(const struct dmj_query_set *set, unsigned n, const char *key, size_t len)
{
    for (unsigned i = 0; i < n; i++)
        if (strlen(set[i].key) == len && memcmp(set[i].key, key, len) == 0)
            return true;
    return false;
}

static int add_link(struct dmj_buf *out, bool https, const char *host, size_t host_len,
                    const char *path, size_t path_len, const struct dmj_query *query,
                    const struct dmj_query_set *set, unsigned n_set)
{
    struct link_item items[DMJ_QUERY_MAX_PARAMS + DMJ_QUERY_SET_MAX];
    unsigned n = 0;
    for (unsigned i = 0; i < query->n; i++) {
        const struct dmj_query_param *p = &query->params[i];
        if (is_set(set, n_set, p->key, p->key_len))
            continue;
        items[n++] = (struct link_item){p->key, p->key_len, p->value, p->value_len};
    }
    for (unsigned i = 0; i < n_set; i++)
        if (set[i].value != NULL)
            items[n++] = (struct link_item){set[i].key, strlen(set[i].key), set[i].value,
                                            set[i].value_len};
    uint16_t ord[DMJ_QUERY_MAX_PARAMS + DMJ_QUERY_SET_MAX];
    uint16_t tmp[DMJ_QUERY_MAX_PARAMS + DMJ_QUERY_SET_MAX];
    sort_items(items, n, ord, tmp);

    int rc = dmj_buf_adds(out, https ? "https://" : "http://");
    if (!rc)
        rc = dmj_buf_add(out, host, host_len);
    if (!rc)
        rc = add_quoted(out, path, path_len, "/:@&+$,!*'()", false);
    for (unsigned i = 0; i < n && !rc; i++) {
        const struct link_item *x = &items[ord[i]];
        rc = dmj_buf_addc(out, i ? '&' : '?');
        if (!rc)
            rc = add_quoted(out, x->key, x->key_len, "", true);
        if (!rc)
            rc = dmj_buf_addc(out, '=');
        if (!rc)
            rc = add_quoted(out, x->value, x->value_len, "", true);
    }
    return rc;
}

int dmj_query_build_link_set(struct dmj_buf *out, bool https, const char *host, size_t host_len,
                             const char *path, size_t path_len, const struct dmj_query *query,
                             const struct dmj_query_set *set, unsigned n_set)
{
    size_t before = out->len;
    int rc;
    const struct dmj_buf *st = &query->storage;
    if (n_set > DMJ_QUERY_SET_MAX)
        return DMJ_EINVAL;
    if (st->len > 0 && st->data[0] == TAG_RAW) {
        /* The link reads the raw query as Latin-1 where request.GET read UTF-8. */
        size_t raw_len;
        memcpy(&raw_len, st->data + 1, sizeof raw_len);
        const unsigned char *raw = (const unsigned char *)st->data + 1 + sizeof raw_len;
        struct dmj_query *lq = malloc(sizeof *lq);
        if (!lq)
            return -ENOMEM;
        /* Latin-1 at most doubles the raw bytes; room for that, whatever the GET parse had. */
        dmj_query_init(lq, 2 * raw_len + 2 * DMJ_QUERY_MAX_PARAMS + 16);
        rc = dmj_buf_addc(&lq->storage, TAG_PLAIN);
        if (!rc)
            rc = parse_fields(lq, raw, raw_len, HIGH_LATIN1);
        if (!rc)
            rc = add_link(out, https, host, host_len, path, path_len, lq, set, n_set);
        dmj_query_dispose(lq);
        free(lq);
    } else {
        rc = add_link(out, https, host, host_len, path, path_len, query, set, n_set);
    }
    return dmj_buf_rollback(out, before, rc);
}

int dmj_query_build_link(struct dmj_buf *out, bool https, const char *host, size_t host_len,
                         const char *path, size_t path_len, const struct dmj_query *query,
                         const char *cursor_value, size_t cursor_len)
{
    struct dmj_query_set set = {"cursor", cursor_value, cursor_len};
    return dmj_query_build_link_set(out, https, host, host_len, path, path_len, query, &set, 1);
}
