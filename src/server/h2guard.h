/** HTTP/2 abuse counted by work: streams a client throws away, whatever they asked. */
#ifndef DMJD_H2GUARD_H
#define DMJD_H2GUARD_H

#include <h2o.h>

#include "conn.h"

/** Puts the HTTP/2 abuse guard in front of h2o's frame reader on `req`'s connection. */
void dmjd_h2guard_watch(h2o_req_t *req, struct dmjd_conn *c);

#endif
