/** Request counters per worker, and the Prometheus text page that sums them on scrape. */
#include <inttypes.h>
#include <string.h>
#include <time.h>

#include "version.h"
#include "metrics.h"
#include "server.h"

/* Upper bounds of the latency buckets, in microseconds; answers take a few µs, so the
 * low end is fine-grained. */
static const uint64_t latency_bounds_us[DMJD_LATENCY_BUCKETS] = {
    10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 100000, 1000000,
};

uint64_t dmjd_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void dmjd_metrics_count_answer(struct dmjd_metrics *m, bool cached, unsigned rows_kept,
                               unsigned rows_rendered)
{
    if (cached)
        atomic_fetch_add_explicit(&m->answers_cached, 1, memory_order_relaxed);
    if (rows_kept)
        atomic_fetch_add_explicit(&m->rows_kept, rows_kept, memory_order_relaxed);
    if (rows_rendered)
        atomic_fetch_add_explicit(&m->rows_rendered, rows_rendered, memory_order_relaxed);
}

void dmjd_metrics_count(struct dmjd_metrics *m, const char *endpoint, int status,
                        uint64_t latency_us)
{
    if (endpoint == NULL || endpoint[0] == '\0')
        endpoint = "unknown";
    struct dmjd_metric_row *hit = NULL;
    for (size_t i = 0; i < DMJD_METRIC_ROWS; i++) {
        struct dmjd_metric_row *row = &m->rows[i];
        if (!atomic_load_explicit(&row->ready, memory_order_relaxed)) {
            /* Only this worker's thread adds rows, so the first free row is ours to fill;
             * the release store publishes the name to scraping threads. */
            row->status = status;
            row->source = endpoint;
            size_t n = strnlen(endpoint, DMJD_ENDPOINT_MAX - 1);
            memcpy(row->endpoint, endpoint, n);
            row->endpoint[n] = '\0';
            atomic_store_explicit(&row->ready, 1, memory_order_release);
            hit = row;
            break;
        }
        /* The API's route names are string literals: the pointer usually decides. */
        if (row->status == status &&
            (row->source == endpoint ||
             strncmp(row->endpoint, endpoint, DMJD_ENDPOINT_MAX - 1) == 0)) {
            hit = row;
            break;
        }
    }
    if (hit != NULL)
        atomic_fetch_add_explicit(&hit->count, 1, memory_order_relaxed);
    else
        atomic_fetch_add_explicit(&m->other, 1, memory_order_relaxed);

    size_t b = 0;
    while (b < DMJD_LATENCY_BUCKETS && latency_us > latency_bounds_us[b])
        b++;
    atomic_fetch_add_explicit(&m->latency[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->latency_sum_us, latency_us, memory_order_relaxed);
}

/* One (endpoint, status) total across workers, gathered on scrape. */
struct total_row {
    char endpoint[DMJD_ENDPOINT_MAX];
    int status;
    uint64_t count;
};

/* Bounded by the rows every worker can hold; more distinct pairs go to "other". */
#define TOTAL_ROWS 256

static void add_total(struct total_row *rows, size_t *n, uint64_t *other, const char *endpoint,
                      int status, uint64_t count)
{
    for (size_t i = 0; i < *n; i++) {
        if (rows[i].status == status && strcmp(rows[i].endpoint, endpoint) == 0) {
            rows[i].count += count;
            return;
        }
    }
    if (*n == TOTAL_ROWS) {
        *other += count;
        return;
    }
    struct total_row *r = &rows[(*n)++];
    memcpy(r->endpoint, endpoint, sizeof(r->endpoint));
    r->status = status;
    r->count = count;
}

/* Label values come from the API's fixed route names; escape anyway so that the page stays
 * parseable whatever they contain. */
static int add_label_value(struct dmj_buf *out, const char *s)
{
    for (; *s != '\0'; s++) {
        int rc;
        if (*s == '\\' || *s == '"')
            rc = dmj_buf_addc(out, '\\');
        else
            rc = 0;
        if (rc == 0)
            rc = *s == '\n' ? dmj_buf_adds(out, "\\n") : dmj_buf_addc(out, *s);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int render_requests(struct dmjd_server *srv, struct dmj_buf *out)
{
    struct total_row rows[TOTAL_ROWS];
    size_t n = 0;
    uint64_t other = 0;
    for (unsigned w = 0; w < srv->n_workers; w++) {
        struct dmjd_metrics *m = &srv->workers[w]->metrics;
        for (size_t i = 0; i < DMJD_METRIC_ROWS; i++) {
            struct dmjd_metric_row *row = &m->rows[i];
            if (!atomic_load_explicit(&row->ready, memory_order_acquire))
                break;
            add_total(rows, &n, &other, row->endpoint, row->status,
                      atomic_load_explicit(&row->count, memory_order_relaxed));
        }
        other += atomic_load_explicit(&m->other, memory_order_relaxed);
    }
    int rc = dmj_buf_adds(out, "# HELP dmj_http_requests_total HTTP requests answered, by "
                               "endpoint and status.\n"
                               "# TYPE dmj_http_requests_total counter\n");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = dmj_buf_adds(out, "dmj_http_requests_total{endpoint=\"");
        if (rc == 0)
            rc = add_label_value(out, rows[i].endpoint);
        if (rc == 0)
            rc = dmj_buf_printf(out, "\",status=\"%d\"} %" PRIu64 "\n", rows[i].status,
                                rows[i].count);
    }
    if (rc == 0 && other > 0)
        rc = dmj_buf_printf(
            out, "dmj_http_requests_total{endpoint=\"other\",status=\"0\"} %" PRIu64 "\n", other);
    return rc;
}

static int render_latency(struct dmjd_server *srv, struct dmj_buf *out)
{
    uint64_t buckets[DMJD_LATENCY_BUCKETS + 1] = {0};
    uint64_t sum_us = 0;
    for (unsigned w = 0; w < srv->n_workers; w++) {
        struct dmjd_metrics *m = &srv->workers[w]->metrics;
        for (size_t b = 0; b <= DMJD_LATENCY_BUCKETS; b++)
            buckets[b] += atomic_load_explicit(&m->latency[b], memory_order_relaxed);
        sum_us += atomic_load_explicit(&m->latency_sum_us, memory_order_relaxed);
    }
    int rc = dmj_buf_adds(out, "# HELP dmj_http_request_duration_seconds Time from the "
                               "handler's start to the response being queued.\n"
                               "# TYPE dmj_http_request_duration_seconds histogram\n");
    /* Buckets are cumulative; the +Inf bucket must equal _count, so that is computed from
     * the same snapshot of the bucket counters. */
    uint64_t cumulative = 0;
    for (size_t b = 0; rc == 0 && b <= DMJD_LATENCY_BUCKETS; b++) {
        cumulative += buckets[b];
        if (b < DMJD_LATENCY_BUCKETS)
            rc = dmj_buf_printf(out,
                                "dmj_http_request_duration_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
                                (double)latency_bounds_us[b] / 1e6, cumulative);
        else
            rc = dmj_buf_printf(
                out, "dmj_http_request_duration_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n",
                cumulative);
    }
    if (rc == 0)
        rc = dmj_buf_printf(out,
                            "dmj_http_request_duration_seconds_sum %.6f\n"
                            "dmj_http_request_duration_seconds_count %" PRIu64 "\n",
                            (double)sum_us / 1e6, cumulative);
    return rc;
}

/* How answers were made: the answer cache, and the jobs' JSON kept or rendered. */
static int render_caches(struct dmjd_server *srv, struct dmj_buf *out)
{
    uint64_t cached = 0, kept = 0, rendered = 0;
    for (unsigned w = 0; w < srv->n_workers; w++) {
        struct dmjd_metrics *m = &srv->workers[w]->metrics;
        cached += atomic_load_explicit(&m->answers_cached, memory_order_relaxed);
        kept += atomic_load_explicit(&m->rows_kept, memory_order_relaxed);
        rendered += atomic_load_explicit(&m->rows_rendered, memory_order_relaxed);
    }
    return dmj_buf_printf(out,
                          "# HELP dmj_answer_cache_hits_total 200 answers sent from a worker's "
                          "answer cache.\n"
                          "# TYPE dmj_answer_cache_hits_total counter\n"
                          "dmj_answer_cache_hits_total %" PRIu64 "\n"
                          "# HELP dmj_job_json_kept_total Jobs served from the JSON a worker "
                          "kept for their record.\n"
                          "# TYPE dmj_job_json_kept_total counter\n"
                          "dmj_job_json_kept_total %" PRIu64 "\n"
                          "# HELP dmj_job_json_rendered_total Jobs decoded and rendered.\n"
                          "# TYPE dmj_job_json_rendered_total counter\n"
                          "dmj_job_json_rendered_total %" PRIu64 "\n",
                          cached, kept, rendered);
}

/* What dmjd did against clients that take more than their share. */
static int render_defence(struct dmjd_server *srv, struct dmj_buf *out)
{
    uint64_t refused = 0, displaced = 0, closed = 0, cut = 0, evaluations = 0;
    for (unsigned w = 0; w < srv->n_workers; w++) {
        struct dmjd_metrics *m = &srv->workers[w]->metrics;
        refused += atomic_load_explicit(&m->refused_connections, memory_order_relaxed);
        displaced += atomic_load_explicit(&m->displaced_connections, memory_order_relaxed);
        closed += atomic_load_explicit(&m->closed_by_dmjd, memory_order_relaxed);
        cut += atomic_load_explicit(&m->h2_cut, memory_order_relaxed);
        evaluations += atomic_load_explicit(&m->parked_evaluations, memory_order_relaxed);
    }
    return dmj_buf_printf(out,
                          "# HELP dmj_http_connections_refused_total Connections closed at "
                          "accept: at --max-connections with none quiet enough to displace.\n"
                          "# TYPE dmj_http_connections_refused_total counter\n"
                          "dmj_http_connections_refused_total %" PRIu64 "\n"
                          "# HELP dmj_http_connections_displaced_total Quiet connections closed "
                          "to make room for a new one.\n"
                          "# TYPE dmj_http_connections_displaced_total counter\n"
                          "dmj_http_connections_displaced_total %" PRIu64 "\n"
                          "# HELP dmj_http_connections_closed_total Connections dmjd closed: "
                          "send and header timeouts, displacements, HTTP/2 cuts.\n"
                          "# TYPE dmj_http_connections_closed_total counter\n"
                          "dmj_http_connections_closed_total %" PRIu64 "\n"
                          "# HELP dmj_http2_connections_cut_total HTTP/2 connections sent GOAWAY "
                          "for resetting or opening too many streams.\n"
                          "# TYPE dmj_http2_connections_cut_total counter\n"
                          "dmj_http2_connections_cut_total %" PRIu64 "\n"
                          "# HELP dmj_http_parked_evaluations_total Held long-polls asked again "
                          "after a store change (once per group of identical requests).\n"
                          "# TYPE dmj_http_parked_evaluations_total counter\n"
                          "dmj_http_parked_evaluations_total %" PRIu64 "\n",
                          refused, displaced, closed, cut, evaluations);
}

int dmjd_metrics_render(struct dmjd_server *srv, struct dmj_buf *out)
{
    int64_t open = 0, parked = 0, streams = 0;
    uint64_t accepted = 0;
    for (unsigned w = 0; w < srv->n_workers; w++) {
        struct dmjd_metrics *m = &srv->workers[w]->metrics;
        open += atomic_load_explicit(&m->open_connections, memory_order_relaxed);
        accepted += atomic_load_explicit(&m->accepted_connections, memory_order_relaxed);
        parked += atomic_load_explicit(&m->parked, memory_order_relaxed);
        streams += atomic_load_explicit(&m->streams, memory_order_relaxed);
    }
    uint64_t used = 0, map_size = 0;
    dmj_store_sizes(srv->store, &used, &map_size);
    /* A store that cannot be read now leaves these two out rather than failing the page. */
    uint64_t jobs = 0;
    int64_t last_write_us = 0;
    bool counted = dmj_store_counts(srv->store, &jobs, &last_write_us) == 0;

    int rc = dmj_buf_printf(out,
                            "# HELP dmj_build_info The running dmjd's version and git commit.\n"
                            "# TYPE dmj_build_info gauge\n"
                            "dmj_build_info{version=\"%s\",commit=\"%s\"} 1\n",
                            DMJ_VERSION, DMJ_COMMIT);
    if (rc == 0)
        rc = render_requests(srv, out);
    if (rc == 0)
        rc = render_latency(srv, out);
    if (rc == 0)
        rc = dmj_buf_printf(out,
                            "# HELP dmj_http_open_connections Client connections open now.\n"
                            "# TYPE dmj_http_open_connections gauge\n"
                            "dmj_http_open_connections %" PRId64 "\n"
                            "# HELP dmj_http_connections_total Client connections accepted.\n"
                            "# TYPE dmj_http_connections_total counter\n"
                            "dmj_http_connections_total %" PRIu64 "\n"
                            "# HELP dmj_store_used_bytes Bytes used in the store's data file.\n"
                            "# TYPE dmj_store_used_bytes gauge\n"
                            "dmj_store_used_bytes %" PRIu64 "\n"
                            "# HELP dmj_store_map_size_bytes The store's map size.\n"
                            "# TYPE dmj_store_map_size_bytes gauge\n"
                            "dmj_store_map_size_bytes %" PRIu64 "\n"
                            "# HELP dmj_worker_threads Worker threads serving requests.\n"
                            "# TYPE dmj_worker_threads gauge\n"
                            "dmj_worker_threads %u\n"
                            "# HELP dmj_http_parked_requests Long-polls (running/?wait=) held "
                            "now.\n"
                            "# TYPE dmj_http_parked_requests gauge\n"
                            "dmj_http_parked_requests %" PRId64 "\n"
                            "# HELP dmj_http_event_streams events/ streams open now.\n"
                            "# TYPE dmj_http_event_streams gauge\n"
                            "dmj_http_event_streams %" PRId64 "\n",
                            open, accepted, used, map_size, srv->n_workers, parked, streams);
    if (rc == 0)
        rc = render_defence(srv, out);
    if (rc == 0)
        rc = render_caches(srv, out);
    if (rc == 0 && counted)
        rc = dmj_buf_printf(out,
                            "# HELP dmj_store_jobs Jobs in the store (duckgres ones included).\n"
                            "# TYPE dmj_store_jobs gauge\n"
                            "dmj_store_jobs %" PRIu64 "\n"
                            "# HELP dmj_store_last_import_timestamp_seconds Unix time of the "
                            "store's last committed change (dmj import, prune or keys); 0 if "
                            "none.\n"
                            "# TYPE dmj_store_last_import_timestamp_seconds gauge\n"
                            "dmj_store_last_import_timestamp_seconds %" PRId64 ".%06" PRId64
                            "\n",
                            jobs, last_write_us / 1000000, last_write_us % 1000000);
    return rc;
}
