/* The heap prefault helper (src/store/prefault.c): pages between the break it started from
 * and the current break become resident, including pages the break gains while it runs,
 * and what is already written there is left as it was. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "store_impl.h"

#define GROW_FIRST (8u << 20)
#define GROW_LATER (4u << 20)

/* How many of the pages of [p, p + len) are resident. */
static size_t resident(void *p, size_t len, size_t page)
{
    unsigned char vec[(GROW_FIRST + GROW_LATER) / 4096];
    size_t n = len / page, count = 0;
    if (n > sizeof vec || mincore(p, len, vec) != 0)
        return (size_t)-1;
    for (size_t i = 0; i < n; i++)
        count += vec[i] & 1;
    return count;
}

/* Waits up to 10 s for every page of [p, p + len) to be resident. */
static size_t wait_resident(void *p, size_t len, size_t page)
{
    size_t got = 0;
    for (int i = 0; i < 1000; i++) {
        got = resident(p, len, page);
        if (got == len / page)
            break;
        struct timespec t = {0, 10 * 1000 * 1000};
        nanosleep(&t, NULL);
    }
    return got;
}

/* A page-aligned stretch of `len` bytes of new break; NULL when the break cannot grow. */
static unsigned char *grow_break(size_t len, size_t page, size_t *got)
{
    unsigned char *p = sbrk((intptr_t)len);
    if (p == (void *)-1) {
        fprintf(stderr, "sbrk: %s\n", strerror(errno));
        return NULL;
    }
    /* the kernel's break is page-aligned, sbrk's need not be */
    unsigned char *a = (unsigned char *)(((uintptr_t)p + page - 1) & ~(uintptr_t)(page - 1));
    *got = (len - (size_t)(a - p)) & ~(page - 1);
    return a;
}

int main(void)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE), before_len, alen, blen;
    /* the break is moved here directly (malloc copes with a foreign sbrk), so that the
     * test also holds under sanitizers, whose allocators do not use the break */
    unsigned char *before = grow_break(GROW_LATER, page, &before_len);
    CHECK(before != NULL);
    if (!before)
        return check_done();
    CHECK_EQ_INT(resident(before, before_len, page), 0); /* fresh: the checks below can fail */

    struct dmj__prefault pf;
    CHECK(dmj__prefault_start(&pf));
    /* grown while the helper runs: one page is written at once, the rest never */
    unsigned char *a = grow_break(GROW_FIRST, page, &alen);
    CHECK(a != NULL);
    if (a) {
        memset(a, 0xab, page);
        CHECK_EQ_INT(wait_resident(a, alen, page), alen / page);
    }
    unsigned char *b = grow_break(GROW_LATER, page, &blen);
    CHECK(b != NULL);
    if (b)
        CHECK_EQ_INT(wait_resident(b, blen, page), blen / page);
    dmj__prefault_stop(&pf);

    /* populated, not written: the first page keeps its bytes, the rest stay zero */
    size_t bad = 0;
    for (size_t i = 0; a && i < alen; i++)
        bad += a[i] != (i < page ? 0xab : 0);
    CHECK_EQ_INT(bad, 0);
    return check_done();
}
