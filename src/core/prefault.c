/* Faulting the heap in on another core. LMDB mallocs every dirty page of a write
 * transaction on its own: a large flush grows the heap by hundreds of megabytes, and a
 * first touch costs the writer about 0.4 s per GB (the kernel allocates, zeroes and charges
 * each page). While a flush runs, a helper thread follows the program break and populates
 * the pages between its last stop and the break (MADV_POPULATE_WRITE: it never writes to
 * them, so the writer's data is safe), so that the writer finds them present. How far it
 * can run ahead is what malloc takes from the system each time (M_TOP_PAD, which
 * `dmj import` raises). Linux 5.14 and later; elsewhere the helper stops at once. */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "store_impl.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* How long the helper sleeps when the break has not moved. */
#define IDLE_NS 200000L

static uintptr_t program_break(uintptr_t page)
{
    return (uintptr_t)syscall(SYS_brk, 0) & ~(page - 1);
}

static void *prefault_main(void *arg)
{
    struct dmj__prefault *pf = arg;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t done = pf->from;
    while (!atomic_load(&pf->stop)) {
        uintptr_t top = program_break(page);
        if (top <= done) {
            struct timespec idle = {0, IDLE_NS};
            nanosleep(&idle, NULL);
            continue;
        }
        /* ENOMEM: malloc trimmed the heap meanwhile; the next round starts from the break */
        if (madvise((void *)done, top - done, MADV_POPULATE_WRITE) != 0 && errno != ENOMEM)
            break; /* EINVAL: a kernel without populate */
        done = top;
    }
    return NULL;
}

bool dmj__prefault_start(struct dmj__prefault *pf)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t top = program_break(page);
    /* from the start of malloc's top chunk: what it hands out next */
    size_t free_top = mallinfo2().keepcost;
    pf->from = (top - (free_top < top ? free_top : 0)) & ~(page - 1);
    atomic_init(&pf->stop, false);
    return pthread_create(&pf->tid, NULL, prefault_main, pf) == 0;
}

void dmj__prefault_stop(struct dmj__prefault *pf)
{
    atomic_store(&pf->stop, true);
    pthread_join(pf->tid, NULL);
}
