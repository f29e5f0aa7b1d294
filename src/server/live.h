/** Held `running/?wait=` long-polls and open events/ streams of one worker. */
#ifndef DMJD_LIVE_H
#define DMJD_LIVE_H

#include <stdbool.h>
#include <stdint.h>

#include <h2o.h>

#include "dmj/api.h"

struct dmjd_worker;

/** A worker's held requests and streams. */
struct dmjd_live {
    h2o_linklist_t parked;    /**< struct dmjd_park_group: held `running/?wait=` requests */
    h2o_linklist_t streams;   /**< struct dmjd_stream: open events/ streams */
    h2o_timeout_entry_t tick; /**< deadlines and keep-alives while either list is used */
};

/** Sets up the worker's lists (before its loop runs). */
void dmjd_live_init(struct dmjd_worker *w);
/** Holds a `running/?wait=` request whose answer `res` is a 304 for up to `res->wait_s`
 * seconds, with the slot of `res->stream_key` until it is answered. False when it cannot be
 * held (the worker is draining, or no memory): the slot is given back; answer it now. */
bool dmjd_live_park(struct dmjd_worker *w, h2o_req_t *req, const struct dmj_api_request *in,
                    const struct dmj_api_response *res, uint64_t started);
/** Opens the events/ stream the API accepted (it holds the key's slot until it ends). */
void dmjd_live_open_stream(struct dmjd_worker *w, h2o_req_t *req,
                           const struct dmj_api_request *in, const struct dmj_api_response *res,
                           uint64_t started);
/** The store changed: re-evaluates every held request and stream of this worker. */
void dmjd_live_wake(struct dmjd_worker *w);
/** Shutdown: answers every held request now and ends every stream. */
void dmjd_live_end_all(struct dmjd_worker *w);

#endif
