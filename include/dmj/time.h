/** Timestamps as int64 microseconds since the Unix epoch, UTC; parsing and the two printed forms. */
#ifndef DMJ_TIME_H
#define DMJ_TIME_H

#include <stddef.h>
#include <stdint.h>

#include "dmj/error.h"

#define DMJ_TIME_TEXT_MAX 40 /**< room for either printed form plus NUL */

/** Import forms (docs/import.md): ISO 8601 with 'T' or ' ', optional 1-6 digit fraction,
 * 'Z', '±HH', '±HHMM' or '±HH:MM' (none = UTC). Years 1..9999 after conversion to UTC. */
DMJ_MUST_CHECK int dmj_time_parse(const char *s, size_t len, int64_t *out_us);
/** The cursor position grammar (docs/api.md's grammar: Django's parse_datetime, else
 * parse_date; one trailing '\n' allowed; fraction digits past six ignored). DMJ_EINVAL else. */
DMJ_MUST_CHECK int dmj_time_parse_django(const char *s, size_t len, int64_t *out_us);
/** DRF's rendering, "2019-08-24T14:15:22.123456Z" (no fraction when zero). Returns length. */
size_t dmj_time_format_drf(int64_t us, char out[DMJ_TIME_TEXT_MAX]);
/** Python's str(datetime) in UTC, "2019-08-24 14:15:22.123456+00:00". Returns length. */
size_t dmj_time_format_py(int64_t us, char out[DMJ_TIME_TEXT_MAX]);

#endif
