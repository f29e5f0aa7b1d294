/* Growable byte buffer with a hard maximum. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmj/buf.h"

void dmj_buf_init(struct dmj_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void dmj_buf_dispose(struct dmj_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void dmj_buf_reset(struct dmj_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

int dmj_buf_rollback(struct dmj_buf *b, size_t len, int rc)
{
    if (rc && b->data) {
        b->len = len;
        b->data[len] = '\0';
    }
    return rc;
}

int dmj_buf_reserve(struct dmj_buf *b, size_t n)
{
    /* One byte more than asked keeps room for the terminating NUL. */
    if (n > b->max || b->len > b->max - n)
        return DMJ_ETOOBIG;
    size_t need = b->len + n + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    if (cap > b->max + 1)
        cap = b->max + 1;
    char *p = realloc(b->data, cap);
    if (!p)
        return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int dmj_buf_add(struct dmj_buf *b, const void *p, size_t n)
{
    int rc = dmj_buf_reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int dmj_buf_adds(struct dmj_buf *b, const char *s)
{
    return dmj_buf_add(b, s, strlen(s));
}

int dmj_buf_printf(struct dmj_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    int rc = dmj_buf_reserve(b, (size_t)n);
    if (rc)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}
