/** Held requests (long-polls and event streams) per API key and in all, shared by every worker. */
#ifndef DMJD_SLOTS_H
#define DMJD_SLOTS_H

#include <stddef.h>

#include "dmj/error.h"

struct dmjd_slots;

/** A table of held requests (long-polls and event streams) per key, shared by every worker:
 * at most `per_key` for one key (0: no per-key bound), `total` in all, and at most
 * `capacity` keys holding some at once. */
DMJ_MUST_CHECK int dmjd_slots_new(unsigned per_key, unsigned total, size_t capacity,
                                  struct dmjd_slots **out);
void dmjd_slots_free(struct dmjd_slots *s);
/** The dmj_api_config.stream_acquire hook: 0 when a slot was taken, else seconds to wait. */
unsigned dmjd_slots_acquire(void *slots, const char *secure_value);
/** Gives back a slot taken by dmjd_slots_acquire. */
void dmjd_slots_release(struct dmjd_slots *s, const char *secure_value);

#endif
