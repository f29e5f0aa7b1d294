/** dmjd's counters, each worker's written by its own thread, and the /metrics page. */
#ifndef DMJD_METRICS_H
#define DMJD_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "dmj/buf.h"
#include "dmj/error.h"

struct dmjd_server;

/** Distinct (endpoint, status) pairs a worker counts; more fall into one "other" row. */
#define DMJD_METRIC_ROWS 64
#define DMJD_ENDPOINT_MAX 32
/** Latency histogram upper bounds in microseconds (the last bucket is +Inf). */
#define DMJD_LATENCY_BUCKETS 12

struct dmjd_metric_row {
    atomic_int ready; /* set (release) once endpoint/status are written */
    int status;
    char endpoint[DMJD_ENDPOINT_MAX];
    const char *source; /* the pointer the name was copied from (owner thread only) */
    atomic_uint_fast64_t count;
};

/** One worker's counters: written by its thread only, read by whichever thread scrapes. */
struct dmjd_metrics {
    struct dmjd_metric_row rows[DMJD_METRIC_ROWS];
    atomic_uint_fast64_t other; /* requests whose row did not fit */
    atomic_uint_fast64_t latency[DMJD_LATENCY_BUCKETS + 1];
    atomic_uint_fast64_t latency_sum_us;
    atomic_int_fast64_t open_connections;
    atomic_uint_fast64_t accepted_connections;
    atomic_int_fast64_t parked;  /* `running/?wait=` requests held now */
    atomic_int_fast64_t streams; /* events/ streams open now */
    atomic_uint_fast64_t refused_connections;   /* at the cap with none to displace */
    atomic_uint_fast64_t displaced_connections; /* closed to make room for a new one */
    atomic_uint_fast64_t closed_by_dmjd;        /* timeouts, displacements and cuts */
    atomic_uint_fast64_t h2_cut;                /* HTTP/2 connections cut for abuse */
    atomic_uint_fast64_t parked_evaluations;    /* long-poll groups asked again on a change */
    atomic_uint_fast64_t answers_cached;        /* 200s sent from the answer cache */
    atomic_uint_fast64_t rows_kept;             /* jobs served from their kept JSON */
    atomic_uint_fast64_t rows_rendered;         /* jobs rendered */
};

/** Counts what an API answer was made of: from the answer cache, jobs whose JSON was kept,
 * jobs rendered (called by the worker's own thread). */
void dmjd_metrics_count_answer(struct dmjd_metrics *m, bool cached, unsigned rows_kept,
                               unsigned rows_rendered);
/** Counts one answered request (called by the worker's own thread). */
void dmjd_metrics_count(struct dmjd_metrics *m, const char *endpoint, int status,
                        uint64_t latency_us);


/** Appends the whole /metrics page (every worker summed) to `out`. */
DMJ_MUST_CHECK int dmjd_metrics_render(struct dmjd_server *srv, struct dmj_buf *out);

/** Monotonic clock in microseconds. */
uint64_t dmjd_now_us(void);

#endif
