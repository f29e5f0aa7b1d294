/* auth_timing: how long dmjd's API takes to refuse a wrong key, by how much of a real key the
 * wrong one shares, measured in process (no HTTP, whose noise would hide nanoseconds).
 *
 * Keys sharing 0, 8, 32 and all but the last character with the real key are answered in
 * turn (interleaved, so that drift in the machine's speed touches them alike), ROUNDS times
 * BATCH requests each; the median of the per-batch means is printed per class, and the real
 * key's own time for comparison. The design (hash the presented key, look the hash up,
 * compare hashes in constant time) should make the wrong-key classes equal within noise.
 * Not a test: no timed assertion; run by tests/bench/auth_timing.sh, which builds it.
 *
 *   auth_timing --db STORE --key REALKEY [--rounds N] [--batch N] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dmj/api.h"
#include "dmj/store.h"

#define CLASSES 5
#define KEY_MAX 200

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* A key of the real key's length whose first `shared` characters are the real key's and
 * whose others all differ from it (and stay in the key alphabet). */
static void make_key(const char *real, size_t shared, char *out)
{
    static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    size_t len = strlen(real);
    for (size_t i = 0; i < len; i++) {
        if (i < shared) {
            out[i] = real[i];
        } else {
            const char *p = strchr(alpha, real[i]);
            size_t at = p != NULL ? (size_t)(p - alpha) : 0;
            out[i] = alpha[(at + 7 + i) % (sizeof(alpha) - 1)];
        }
    }
    out[len] = '\0';
}

static int answer(struct dmj_api_worker *w, const char *auth, size_t auth_len)
{
    static const char path[] = "/api/environments/1/data_modeling_jobs/";
    struct dmj_api_request q;
    struct dmj_api_response res;
    memset(&q, 0, sizeof q);
    q.method = (struct dmj_str){"GET", 3};
    q.path = (struct dmj_str){path, sizeof(path) - 1};
    q.query = (struct dmj_str){"limit=1", 7};
    q.authorization = (struct dmj_str){auth, auth_len};
    q.host = (struct dmj_str){"127.0.0.1:8000", 14};
    memset(&res, 0, sizeof res);
    dmj_api_handle(w, &q, &res);
    return res.status;
}

int main(int argc, char **argv)
{
    const char *db = NULL, *key = NULL;
    long rounds = 301, batch = 200;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--db") == 0)
            db = argv[i + 1];
        else if (strcmp(argv[i], "--key") == 0)
            key = argv[i + 1];
        else if (strcmp(argv[i], "--rounds") == 0)
            rounds = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--batch") == 0)
            batch = atol(argv[i + 1]);
    }
    if (db == NULL || key == NULL || strlen(key) < 34 || strlen(key) >= KEY_MAX || rounds < 1 ||
        batch < 1) {
        fprintf(stderr, "usage: auth_timing --db STORE --key REALKEY (34+ characters) "
                        "[--rounds N] [--batch N]\n");
        return 2;
    }
    struct dmj_store *store = NULL;
    struct dmj_api_worker *w = NULL;
    int rc = dmj_store_open(db, DMJ_STORE_RDONLY, 0, &store);
    if (rc != 0) {
        fprintf(stderr, "auth_timing: %s: %s\n", db, dmj_strerror(rc));
        return 1;
    }
    struct dmj_api_config cfg = {.max_limit = 1000};
    rc = dmj_api_worker_new(store, &cfg, &w);
    if (rc != 0) {
        fprintf(stderr, "auth_timing: worker: %s\n", dmj_strerror(rc));
        dmj_store_close(store);
        return 1;
    }

    size_t len = strlen(key);
    const size_t shared[CLASSES] = {0, 8, 32, len - 1, len};
    const char *names[CLASSES] = {"shares 0", "shares 8", "shares 32", "all but one",
                                  "real key (200)"};
    char auth[CLASSES][KEY_MAX + 8];
    size_t auth_len[CLASSES];
    for (int c = 0; c < CLASSES; c++) {
        char k[KEY_MAX];
        make_key(key, shared[c], k);
        auth_len[c] = (size_t)snprintf(auth[c], sizeof auth[c], "Bearer %s", k);
        int want = c == CLASSES - 1 ? 200 : 401;
        int got = answer(w, auth[c], auth_len[c]);
        if (got != want) {
            fprintf(stderr, "auth_timing: %s answered %d, expected %d\n", names[c], got, want);
            return 1;
        }
    }
    double *means = calloc((size_t)(CLASSES * rounds), sizeof(double));
    if (means == NULL)
        return 1;
    for (long r = 0; r < rounds; r++) {
        for (int step = 0; step < CLASSES; step++) {
            int c = (int)((step + r) % CLASSES); /* rotate the order every round */
            double t0 = now_ns();
            for (long i = 0; i < batch; i++)
                answer(w, auth[c], auth_len[c]);
            means[c * rounds + r] = (now_ns() - t0) / (double)batch;
        }
    }
    printf("%-16s %12s %12s %12s   (%ld rounds x %ld requests, ns per request)\n", "key", "median",
           "p10", "p90", rounds, batch);
    for (int c = 0; c < CLASSES; c++) {
        double *m = means + c * rounds;
        qsort(m, (size_t)rounds, sizeof(double), cmp_double);
        printf("%-16s %12.0f %12.0f %12.0f\n", names[c], m[rounds / 2], m[rounds / 10],
               m[rounds * 9 / 10]);
    }
    free(means);
    dmj_api_worker_free(w);
    dmj_store_close(store);
    return 0;
}
