/** Sending an answer: status, headers and body to h2o, then the metrics and access log. */
#ifndef DMJD_RESPOND_H
#define DMJD_RESPOND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <h2o.h>

#include "dmj/api.h"

struct dmjd_worker;

/** Sends an API answer for `req` and counts and logs it . */
void dmjd_respond_answer(struct dmjd_worker *w, h2o_req_t *req, const struct dmj_api_response *res,
                          uint64_t started);
/** Sends the status and headers of `res` and starts a streamed response with `gen`. */
void dmjd_respond_stream(struct dmjd_worker *w, h2o_req_t *req, const struct dmj_api_response *res,
                       h2o_generator_t *gen);
/** Counts an answered request in the metrics and writes its access-log line. */
void dmjd_respond_log(struct dmjd_worker *w, h2o_req_t *req, const char *endpoint, int status,
                      size_t sent, uint64_t started);

/** Sends `len` bytes of `body` as the whole answer (from `held`, a dmj_api_body_hold handle
 * that the request's pool then releases, else from a copy in the pool); a HEAD answer keeps
 * the Content-Length the GET would have. Returns the body bytes handed to h2o. */
size_t dmjd_respond_body(struct dmjd_worker *w, h2o_req_t *req, const char *body, size_t len,
                         bool head, void *held);
/** Writes the access-log line of `req` (if there is an access log), with one write(2). */
void dmjd_respond_access_log(struct dmjd_worker *w, h2o_req_t *req, int status, size_t body_len,
                             uint64_t started);
/** The reason phrase of an HTTP status dmjd answers with. */
const char *dmjd_respond_reason(int status);

#endif
