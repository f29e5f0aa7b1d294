/** A growable byte buffer with a hard maximum (curl's dynbuf, in dmj's names). */
#ifndef DMJ_BUF_H
#define DMJ_BUF_H

#include <stddef.h>

#include "dmj/error.h"

/** Caller-owned storage; `data` is heap memory owned by the buffer, NUL-terminated when len > 0. */
struct dmj_buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max; /**< appends that would pass this fail with DMJ_ETOOBIG */
};

/** Sets up an empty buffer that may grow to `max` bytes. Allocates nothing. */
void dmj_buf_init(struct dmj_buf *b, size_t max);
/** Frees the memory; the buffer is empty and reusable afterwards. */
void dmj_buf_dispose(struct dmj_buf *b);
/** Empties the buffer, keeping its memory for reuse. */
void dmj_buf_reset(struct dmj_buf *b);
/** Returns rc, having first cut the buffer back to its first `len` bytes when rc is an error:
 * for a function of several appends that leaves the buffer as it found it when one fails. */
DMJ_MUST_CHECK int dmj_buf_rollback(struct dmj_buf *b, size_t len, int rc);
/** Makes room for `n` more bytes; -ENOMEM or DMJ_ETOOBIG. */
DMJ_MUST_CHECK int dmj_buf_reserve(struct dmj_buf *b, size_t n);
/** Appends bytes; -ENOMEM or DMJ_ETOOBIG (the buffer is then unchanged). */
DMJ_MUST_CHECK int dmj_buf_add(struct dmj_buf *b, const void *p, size_t n);
/** Appends a NUL-terminated string. */
DMJ_MUST_CHECK int dmj_buf_adds(struct dmj_buf *b, const char *s);
/** Appends one byte: in line while there is room for it and the NUL, else through
 * dmj_buf_add. */
DMJ_MUST_CHECK static inline int dmj_buf_addc(struct dmj_buf *b, char c)
{
    if (b->len + 2 <= b->cap) {
        b->data[b->len++] = c;
        b->data[b->len] = '\0';
        return 0;
    }
    return dmj_buf_add(b, &c, 1);
}
/** Appends printf-formatted text (not for hot paths). */
DMJ_MUST_CHECK int dmj_buf_printf(struct dmj_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
