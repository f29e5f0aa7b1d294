/** The store watcher: one thread per process that reads the store's last committed
 * transaction id every WATCH_MS (no read transaction: a look at LMDB's meta pages) and wakes
 * every worker when it changes - once a read would see the change - so that held long-polls
 * and open event streams are re-evaluated once per commit rather than polled per request. */
#include <errno.h>
#include <time.h>

#include "server.h"

#define WATCH_MS 20

/* The txnid a read transaction begun now would see, or 0. LMDB's meta page (what
 * dmj_store_last_txnid reads) shows a commit a moment before the lock file's txnid that new
 * readers take: a worker woken in between would read the old state and miss the change. */
static uint64_t visible_txnid(struct dmj_read *r)
{
    if (r == NULL || dmj_read_begin(r) != 0)
        return 0;
    uint64_t t = dmj_read_txnid(r);
    dmj_read_end(r);
    return t;
}

static void *watch(void *arg)
{
    struct dmjd_server *srv = arg;
    uint64_t seen = dmj_store_last_txnid(srv->store);
    struct timespec at;
    struct dmj_read *r = NULL;

    if (dmj_read_new(srv->store, &r) != 0)
        r = NULL; /* then every change wakes the workers at once, as before the check */

    clock_gettime(CLOCK_MONOTONIC, &at);
    pthread_mutex_lock(&srv->watch_lock);
    while (!srv->watch_stop) {
        at.tv_nsec += WATCH_MS * 1000000L;
        if (at.tv_nsec >= 1000000000L) {
            at.tv_sec++;
            at.tv_nsec -= 1000000000L;
        }
        /* Waiting on the condition (not sleeping) lets a shutdown end the thread at once. */
        while (!srv->watch_stop &&
               pthread_cond_timedwait(&srv->watch_cond, &srv->watch_lock, &at) != ETIMEDOUT)
            continue;
        if (srv->watch_stop)
            break;
        pthread_mutex_unlock(&srv->watch_lock);
        uint64_t now = dmj_store_last_txnid(srv->store);
        /* A change counts once new readers see it; until then the next turn looks again. */
        if (now != 0 && now != seen && (r == NULL || visible_txnid(r) >= now)) {
            seen = now;
            for (unsigned i = 0; i < srv->n_workers; i++)
                dmjd_worker_wake(srv->workers[i]);
        }
        pthread_mutex_lock(&srv->watch_lock);
    }
    pthread_mutex_unlock(&srv->watch_lock);
    dmj_read_free(r);
    return NULL;
}

int dmjd_watcher_start(struct dmjd_server *srv)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_mutex_init(&srv->watch_lock, NULL);
    pthread_cond_init(&srv->watch_cond, &attr);
    pthread_condattr_destroy(&attr);
    srv->watch_stop = false;
    int rc = pthread_create(&srv->watch_thread, NULL, watch, srv);
    if (rc != 0) {
        pthread_cond_destroy(&srv->watch_cond);
        pthread_mutex_destroy(&srv->watch_lock);
        return -rc;
    }
    srv->watch_started = true;
    return 0;
}

void dmjd_watcher_stop(struct dmjd_server *srv)
{
    if (!srv->watch_started)
        return;
    pthread_mutex_lock(&srv->watch_lock);
    srv->watch_stop = true;
    pthread_cond_signal(&srv->watch_cond);
    pthread_mutex_unlock(&srv->watch_lock);
    pthread_join(srv->watch_thread, NULL);
    pthread_cond_destroy(&srv->watch_cond);
    pthread_mutex_destroy(&srv->watch_lock);
    srv->watch_started = false;
}
