/** UUIDs: Python uuid.UUID's spellings (ASCII hex only) in, lowercase hyphenated text out. */
#ifndef DMJ_UUID_H
#define DMJ_UUID_H

#include <stddef.h>
#include <stdint.h>

#include "dmj/error.h"

#define DMJ_UUID_TEXT_LEN 36 /**< "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" */

/** Parses as docs/api.md's grammar says: every "urn:" then every "uuid:" removed, "{"/"}"
 * stripped from both ends, every "-" removed, then exactly 32 hex digits. DMJ_EINVAL else. */
DMJ_MUST_CHECK int dmj_uuid_parse(const char *s, size_t len, uint8_t out[16]);
/** Writes 36 characters and a NUL to `out` (37 bytes). */
void dmj_uuid_format(const uint8_t id[16], char out[DMJ_UUID_TEXT_LEN + 1]);

#endif
