/** Integers as Python reads them, for the API's query values and URL segments. */
#ifndef DMJ_NUMBER_H
#define DMJ_NUMBER_H

#include <stdbool.h>
#include <stddef.h>

#include "dmj/error.h"

/** Python's int() restricted to ASCII (docs/api.md's grammar). Values beyond int64 clamp to
 * INT64_MIN/INT64_MAX and set *overflow (callers decide what that means). DMJ_EINVAL else. */
DMJ_MUST_CHECK int dmj_parse_int(const char *s, size_t len, long long *out, bool *overflow);

#endif
