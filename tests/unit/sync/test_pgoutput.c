/* The replication stream's messages, built byte by byte as PostgreSQL 15 sends them
 * ("Logical Replication Message Formats", protocol version 1): what each parses to, what is
 * refused (short, long, unknown), rows as row_to_json writes them, LSN text and the standby
 * status update's bytes. */
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "pgoutput.h"

static struct pgo_value old_values[PGO_MAX_COLUMNS], new_values[PGO_MAX_COLUMNS];

struct msg {
    uint8_t b[512];
    size_t n;
};

static void put(struct msg *m, uint64_t v, size_t width)
{
    for (size_t i = width; i-- > 0;)
        m->b[m->n++] = (uint8_t)(v >> (8 * i));
}

/* Appends one big-endian field per digit of `widths` (its width in bytes), from the
 * arguments (uint64_t each). */
static void fields(struct msg *m, const char *widths, ...)
{
    va_list ap;
    va_start(ap, widths);
    for (const char *w = widths; *w; w++)
        put(m, va_arg(ap, uint64_t), (size_t)(*w - '0'));
    va_end(ap);
}

#define U(x) ((uint64_t)(x))

static void put_str(struct msg *m, const char *s)
{
    size_t len = strlen(s) + 1;
    memcpy(m->b + m->n, s, len);
    m->n += len;
}

static void put_text(struct msg *m, const char *s)
{
    put(m, 't', 1);
    put(m, strlen(s), 4);
    memcpy(m->b + m->n, s, strlen(s));
    m->n += strlen(s);
}

static int parse(const struct msg *m, struct pgo_message *out)
{
    return pgo_parse(m->b, m->n, old_values, new_values, out);
}

/* Every message shorter than `m` by one byte or more, and one byte longer, is refused. */
static void check_truncations_refused(const struct msg *m)
{
    struct pgo_message out;
    for (size_t n = 0; n < m->n; n++)
        CHECK(pgo_parse(m->b, n, old_values, new_values, &out) == DMJ_EINVAL);
    struct msg longer = *m;
    longer.b[longer.n++] = 0;
    CHECK(parse(&longer, &out) == DMJ_EINVAL);
}

static void test_begin_commit(void)
{
    struct msg m = {.n = 0};
    struct pgo_message out;
    fields(&m, "1884", U('B'), U(0x0000000100000020ull), U(123), U(77));
    CHECK(parse(&m, &out) == 0);
    CHECK(out.kind == PGO_BEGIN && out.lsn == 0x0000000100000020ull);
    check_truncations_refused(&m);

    m.n = 0;
    fields(&m, "11888", U('C'), U(0), U(0x30), U(0x58), U(123));
    CHECK(parse(&m, &out) == 0);
    CHECK(out.kind == PGO_COMMIT && out.lsn == 0x30 && out.end_lsn == 0x58);
    check_truncations_refused(&m);
}

static struct msg relation_message(void)
{
    struct msg m = {.n = 0};
    fields(&m, "14", U('R'), U(16390));
    put_str(&m, "public");
    put_str(&m, "posthog_datamodelingjob");
    fields(&m, "12", U('d'), U(4));
    static const struct {
        const char *name;
        uint32_t type;
    } cols[] = {{"id", 2950}, {"is_on", PGO_BOOL}, {"rows", PGO_INT4}, {"size", PGO_FLOAT8}};
    for (int i = 0; i < 4; i++) {
        put(&m, i == 0, 1);
        put_str(&m, cols[i].name);
        fields(&m, "44", U(cols[i].type), U(0xffffffffu));
    }
    return m;
}

static void test_relation(void)
{
    struct msg m = relation_message();
    struct pgo_message out;
    CHECK(parse(&m, &out) == 0);
    CHECK(out.kind == PGO_RELATION && out.relid == 16390 && out.ncols == 4);
    CHECK(out.relname.len == 23 && memcmp(out.relname.ptr, "posthog_datamodelingjob", 23) == 0);
    size_t pos = 0;
    struct pgo_column c;
    CHECK(pgo_next_column(&out, &pos, &c) == 0);
    CHECK(c.key && c.name.len == 2 && c.type == 2950);
    CHECK(pgo_next_column(&out, &pos, &c) == 0);
    CHECK(!c.key && c.name.len == 5 && c.type == PGO_BOOL);
    check_truncations_refused(&m);
    /* more columns declared than sent */
    m.b[1 + 4 + 7 + 24 + 1 + 1] = 5;
    CHECK(parse(&m, &out) == DMJ_EINVAL);
}

static void test_changes(void)
{
    struct msg m = {.n = 0};
    struct pgo_message out;
    fields(&m, "1412", U('I'), U(16390), U('N'), U(3));
    put_text(&m, "abc");
    fields(&m, "11", U('n'), U('u'));
    CHECK(parse(&m, &out) == 0);
    CHECK(out.kind == PGO_INSERT && out.new_row.ncols == 3 && !out.has_old);
    CHECK(out.new_row.values[0].kind == 't' && out.new_row.values[0].text.len == 3);
    CHECK(out.new_row.values[1].kind == 'n' && out.new_row.values[2].kind == 'u');
    check_truncations_refused(&m);

    /* an update whose key changed: the old key, then the new row */
    m.n = 0;
    fields(&m, "1412", U('U'), U(16390), U('K'), U(1));
    put_text(&m, "old");
    fields(&m, "12", U('N'), U(1));
    put_text(&m, "new");
    CHECK(parse(&m, &out) == 0);
    CHECK(out.kind == PGO_UPDATE && out.has_old && out.old.values[0].text.len == 3 &&
          memcmp(out.old.values[0].text.ptr, "old", 3) == 0 &&
          memcmp(out.new_row.values[0].text.ptr, "new", 3) == 0);
    check_truncations_refused(&m);

    m.n = 0;
    fields(&m, "1412", U('D'), U(16390), U('K'), U(1));
    put_text(&m, "gone");
    CHECK(parse(&m, &out) == 0);
    CHECK(out.kind == PGO_DELETE && out.has_old && out.old.values[0].text.len == 4);
    check_truncations_refused(&m);

    m.n = 0;
    fields(&m, "14144", U('T'), U(2), U(0), U(16390), U(16400));
    CHECK(parse(&m, &out) == 0);
    CHECK(out.kind == PGO_TRUNCATE && out.nrelids == 2 && pgo_relid_at(&out, 1) == 16400);
    check_truncations_refused(&m);
    /* a count of relations the message cannot hold */
    m.b[1] = 0x40;
    CHECK(parse(&m, &out) == DMJ_EINVAL);

    /* binary values are only sent when asked for; unknown tags are refused */
    m.n = 0;
    fields(&m, "141214", U('I'), U(1), U('N'), U(1), U('b'), U(0));
    CHECK(parse(&m, &out) == DMJ_EINVAL);
    m.b[0] = 'Z';
    CHECK(parse(&m, &out) == DMJ_EINVAL);
    m.b[0] = 'Y';
    CHECK(parse(&m, &out) == 0 && out.kind == PGO_IGNORED);
}

static void test_row_json(void)
{
    struct pgo_column cols[6] = {
        {.name = {"id", 2}, .type = 2950},         {.name = {"on", 2}, .type = PGO_BOOL},
        {.name = {"n", 1}, .type = PGO_NUMERIC},   {.name = {"f", 1}, .type = PGO_FLOAT8},
        {.name = {"t", 1}, .type = 25},            {.name = {"z", 1}, .type = 1184},
    };
    struct pgo_value v[6] = {
        {'t', {"a-b", 3}}, {'t', {"t", 1}},          {'t', {"NaN", 3}},
        {'t', {"-1.5e+20", 8}}, {'t', {"q\"\\\n", 4}}, {'n', {NULL, 0}},
    };
    struct pgo_tuple t = {6, v};
    struct dmj_buf out;
    dmj_buf_init(&out, 4096);
    CHECK(pgo_row_json(&out, cols, &t) == 0);
    CHECK_EQ_STR(out.data, "{\"id\":\"a-b\",\"on\":true,\"n\":\"NaN\",\"f\":-1.5e+20,"
                           "\"t\":\"q\\\"\\\\\\n\",\"z\":null}");
    /* numbers that are not JSON's are strings; a boolean must be t or f */
    static const char *const not_numbers[] = {"Infinity", "-Infinity", "01", "1.", ".5", "1e",
                                              "-", ""};
    for (size_t i = 0; i < sizeof not_numbers / sizeof *not_numbers; i++) {
        struct pgo_value one = {'t', {not_numbers[i], strlen(not_numbers[i])}};
        struct pgo_tuple t1 = {1, &one};
        struct pgo_column c = {.name = {"f", 1}, .type = PGO_FLOAT8};
        dmj_buf_reset(&out);
        CHECK(pgo_row_json(&out, &c, &t1) == 0 && out.data[5] == '"');
    }
    v[1].text.ptr = "x";
    dmj_buf_reset(&out);
    CHECK(pgo_row_json(&out, cols, &t) == DMJ_EINVAL);
    /* an unchanged TOASTed value was not sent: the caller reads the row */
    v[1].text.ptr = "f";
    v[4].kind = 'u';
    dmj_buf_reset(&out);
    CHECK(pgo_row_json(&out, cols, &t) == DMJ_ENOTFOUND);
    dmj_buf_dispose(&out);
}

static void test_copy_layer(void)
{
    struct msg m = {.n = 0};
    struct pgo_copy c;
    fields(&m, "1881", U('k'), U(0x1556980), U(99), U(1));
    CHECK(pgo_parse_copy(m.b, m.n, &c) == 0);
    CHECK(c.kind == 'k' && c.wal_start == 0x1556980 && c.reply_now);
    CHECK(pgo_parse_copy(m.b, m.n - 1, &c) == DMJ_EINVAL);

    m.n = 0;
    fields(&m, "18881", U('w'), U(5), U(6), U(7), U('B'));
    CHECK(pgo_parse_copy(m.b, m.n, &c) == 0);
    CHECK(c.kind == 'w' && c.wal_start == 5 && c.len == 1 && c.data == m.b + 25);
    CHECK(pgo_parse_copy(m.b, 20, &c) == DMJ_EINVAL);
    m.b[0] = 'x';
    CHECK(pgo_parse_copy(m.b, m.n, &c) == DMJ_EINVAL);
}

static void test_lsn_and_status(void)
{
    uint64_t lsn;
    char text[18];
    CHECK(pgo_lsn_parse("0/154FA48", &lsn) && lsn == 0x154FA48);
    CHECK(pgo_lsn_parse("FFFFFFFF/FFFFFFFF", &lsn) && lsn == UINT64_MAX);
    CHECK(!pgo_lsn_parse("0/", &lsn) && !pgo_lsn_parse("1/2x", &lsn) &&
          !pgo_lsn_parse("", &lsn) && !pgo_lsn_parse("100000000/0", &lsn));
    pgo_lsn_format(0x00000001000000A0ull, text);
    CHECK_EQ_STR(text, "1/A0");

    uint8_t st[PGO_STATUS_LEN];
    pgo_status_update(st, 0x0102030405060708ull, 0x1112131415161718ll, true);
    CHECK(st[0] == 'r' && st[1] == 1 && st[8] == 8 && st[9] == 1 && st[17] == 1 &&
          st[24] == 8 && st[25] == 0x11 && st[32] == 0x18 && st[33] == 1);
}

int main(void)
{
    test_begin_commit();
    test_relation();
    test_changes();
    test_row_json();
    test_copy_layer();
    test_lsn_and_status();
    return check_done();
}
