/** Access-log lines (combined or JSON) with API keys cut, and dmjd's error-log lines. */
#ifndef DMJD_ACCESSLOG_H
#define DMJD_ACCESSLOG_H

#include <stddef.h>
#include <stdint.h>

#include <h2o.h>

#include "dmj/buf.h"
#include "dmj/error.h"

/** Appends one combined-log-format line for `req` (status and body size as sent) to `out`,
 * with the personal_api_key query value cut to its first 8 characters + "...". */
DMJ_MUST_CHECK int dmjd_accesslog_format(struct dmj_buf *out, h2o_req_t *req, int status,
                                         size_t body_len);
/** Appends one JSON line for `req`: time (ISO 8601 UTC), remote, method, path (redacted as
 * above), status, bytes, duration_us, protocol, user_agent. */
DMJ_MUST_CHECK int dmjd_accesslog_format_json(struct dmj_buf *out, h2o_req_t *req, int status,
                                              size_t body_len, uint64_t duration_us);
/** Prints one error-log line to stderr: an ISO 8601 UTC timestamp, "dmjd:", the message
 * (printf-style) and a newline, with one write(2) so that threads never mix lines. */
void dmjd_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/** Opens (creating it 0640) the access-log file `path` for appending; -1 with errno set. */
int dmjd_accesslog_open(const char *path);
/** Reopens `path` onto descriptor `fd` (dup2: a worker's write goes wholly to the old file or
 * to the new one), after logrotate moved the file; 0, or -1 with errno set. */
int dmjd_accesslog_reopen(const char *path, int fd);
/** Writes the redacted form of a request target (path and query) to `out`. */
DMJ_MUST_CHECK int dmjd_accesslog_redact_target(struct dmj_buf *out, const char *target,
                                                size_t len);

#endif
