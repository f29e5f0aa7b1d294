/** Request budgets shared by every worker: per API key (--rate-limit) and per client address for failed authentications (--auth-fail-limit). */
#ifndef DMJD_RATELIMIT_H
#define DMJD_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dmj/error.h"

#define DMJD_RATE_MAX_RULES 4

struct dmjd_rate_rule {
    unsigned count;     /**< requests allowed per period */
    uint64_t period_us; /**< the period */
};

struct dmjd_ratelimit;

/** Parses "480/minute,4800/hour" (units by first letter: s, m, h, d, as DRF does).
 * Returns 0 or DMJ_EINVAL; `n_out` receives the number of rules. */
DMJ_MUST_CHECK int dmjd_ratelimit_parse(const char *spec, struct dmjd_rate_rule *rules,
                                        unsigned *n_out);
/** A limiter shared by every worker, remembering at most `capacity` keys. */
DMJ_MUST_CHECK int dmjd_ratelimit_new(const struct dmjd_rate_rule *rules, unsigned n,
                                      size_t capacity, struct dmjd_ratelimit **out);
void dmjd_ratelimit_free(struct dmjd_ratelimit *rl);
/** The dmj_api_config.rate_limit hook: 0 to go on, else the seconds to wait. Thread-safe. */
unsigned dmjd_ratelimit_check(void *rl, const char *secure_value);
/** Same as dmjd_ratelimit_check at an explicit monotonic time (for tests). */
unsigned dmjd_ratelimit_check_at(struct dmjd_ratelimit *rl, const char *secure_value,
                                 uint64_t now_us);
/** The seconds `name` would wait now, counting nothing (0: it would go through). */
unsigned dmjd_ratelimit_peek_at(struct dmjd_ratelimit *rl, const char *name, uint64_t now_us);
/** The dmj_api_config.auth_gate hook over a limiter of client addresses: `failed` counts a
 * failure, else the seconds the client must wait before it may try a key again. */
unsigned dmjd_ratelimit_auth_gate(void *rl, const char *client, bool failed);

#endif
