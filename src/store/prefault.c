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
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "store_impl.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* How long the helper sleeps when the break has not moved: from IDLE_MIN_NS, doubling up to
 * IDLE_MAX_NS while it stays put (past ~512 MB of dirty pages LMDB spills them and reuses
 * their memory, and the heap stops growing for the rest of a large flush). */
#define IDLE_MIN_NS 200000L
#define IDLE_MAX_NS 20000000L

static uintptr_t program_break(uintptr_t page)
{
    return (uintptr_t)syscall(SYS_brk, 0) & ~(page - 1);
}

/* Sleeps up to `ns` or until dmj__prefault_stop; true when it is time to stop. */
static bool rest(struct dmj__prefault *pf, long ns)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += ns;
    until.tv_sec += until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&pf->mu);
    while (!pf->stop && pthread_cond_timedwait(&pf->cv, &pf->mu, &until) == 0)
        ;
    bool stop = pf->stop;
    pthread_mutex_unlock(&pf->mu);
    return stop;
}

static void *prefault_main(void *arg)
{
    struct dmj__prefault *pf = arg;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t done = pf->from;
    long idle_ns = IDLE_MIN_NS;
    for (;;) {
        uintptr_t top = program_break(page);
        if (top <= done) {
            if (rest(pf, idle_ns))
                break;
            idle_ns = idle_ns * 2 > IDLE_MAX_NS ? IDLE_MAX_NS : idle_ns * 2;
            continue;
        }
        idle_ns = IDLE_MIN_NS;
        /* ENOMEM: malloc trimmed the heap meanwhile; the next round starts from the break */
        if (madvise((void *)done, top - done, MADV_POPULATE_WRITE) != 0 && errno != ENOMEM)
            break; /* EINVAL: a kernel without populate */
        done = top;
        pthread_mutex_lock(&pf->mu);
        bool stop = pf->stop;
        pthread_mutex_unlock(&pf->mu);
        if (stop)
            break;
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
    pf->stop = false;
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0)
        return false;
    bool ok = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) == 0 &&
              pthread_cond_init(&pf->cv, &attr) == 0;
    pthread_condattr_destroy(&attr);
    if (!ok)
        return false;
    pthread_mutex_init(&pf->mu, NULL);
    if (pthread_create(&pf->tid, NULL, prefault_main, pf) == 0)
        return true;
    pthread_cond_destroy(&pf->cv);
    pthread_mutex_destroy(&pf->mu);
    return false;
}

void dmj__prefault_stop(struct dmj__prefault *pf)
{
    pthread_mutex_lock(&pf->mu);
    pf->stop = true;
    pthread_cond_signal(&pf->cv);
    pthread_mutex_unlock(&pf->mu);
    pthread_join(pf->tid, NULL);
    pthread_cond_destroy(&pf->cv);
    pthread_mutex_destroy(&pf->mu);
}
