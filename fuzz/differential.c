/* Prints what dmj's value parsers make of each input file, one line per file, for
 * differential.py to compare with the reference peer's Python parsers.
 *
 * Usage: parsers_differential MODE FILE... where MODE is cursor, time, uuid, int or query
 * (query: the part after the first '?' of a request target). Lines: "PATH ok ..." with
 * strings in hex ("-" when empty), or "PATH bad" / "PATH toobig". */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cursor.h"
#include "dmj/query.h"
#include "dmj/time.h"
#include "dmj/uuid.h"
#include "number.h"

#define MAX_INPUT (1u << 20)

static void put_hex(const void *p, size_t n)
{
    const unsigned char *s = p;
    if (n == 0)
        fputs("-", stdout);
    for (size_t i = 0; i < n; i++)
        printf("%02x", s[i]);
}

static void one(const char *mode, const char *s, size_t n, struct dmj_query *q)
{
    if (strcmp(mode, "cursor") == 0) {
        struct dmj_cursor c;
        if (dmj_cursor_decode(s, n, &c) != 0) {
            puts("bad");
            return;
        }
        printf("ok %llu %d %d ", (unsigned long long)c.offset, c.reverse, c.has_position);
        put_hex(c.position, c.position_len);
    } else if (strcmp(mode, "time") == 0) {
        int64_t us;
        if (dmj_time_parse_django(s, n, &us) != 0) {
            puts("bad");
            return;
        }
        printf("ok %lld", (long long)us);
    } else if (strcmp(mode, "uuid") == 0) {
        uint8_t id[16];
        if (dmj_uuid_parse(s, n, id) != 0) {
            puts("bad");
            return;
        }
        fputs("ok ", stdout);
        put_hex(id, sizeof id);
    } else if (strcmp(mode, "int") == 0) {
        long long v;
        bool over;
        if (dmj_parse_int(s, n, &v, &over) != 0) {
            puts("bad");
            return;
        }
        printf("ok %lld %d", v, over);
    } else {
        const char *qm = memchr(s, '?', n);
        const char *raw = qm ? qm + 1 : s + n;
        int rc = dmj_query_parse(q, raw, qm ? n - (size_t)(raw - s) : 0);
        if (rc != 0) {
            puts(rc == DMJ_ETOOBIG ? "toobig" : "bad");
            return;
        }
        fputs("ok", stdout);
        for (unsigned k = 0; k < q->n; k++) {
            fputs(" ", stdout);
            put_hex(q->params[k].key, q->params[k].key_len);
            fputs("=", stdout);
            put_hex(q->params[k].value, q->params[k].value_len);
        }
    }
    fputs("\n", stdout);
}

int main(int argc, char **argv)
{
    static struct dmj_query q; /* ~32 KB of fields: kept off the stack */
    static char buf[MAX_INPUT];
    if (argc < 2) {
        fprintf(stderr, "usage: %s cursor|time|uuid|int|query FILE...\n", argv[0]);
        return 2;
    }
    dmj_query_init(&q, (size_t)8 << 20);
    for (int i = 2; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) {
            perror(argv[i]);
            return 2;
        }
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        printf("%s ", argv[i]);
        one(argv[1], buf, n, &q);
    }
    dmj_query_dispose(&q);
    return 0;
}
