/** The msgpack encoding of stored records (jobs and identities), with a format version.
 *
 * Decoders never read outside the given bytes and reject truncated or malformed input with
 * DMJ_EBADRECORD (or DMJ_EVERSION for a version they do not know). Strings in decoded
 * structs point into the input bytes: they live as long as those bytes (for an LMDB value,
 * until the read transaction ends). */
#ifndef DMJ_CODEC_H
#define DMJ_CODEC_H

#include <stddef.h>

#include "dmj/buf.h"
#include "dmj/identity.h"
#include "dmj/job.h"

#define DMJ_CODEC_VERSION 1

/** Appends the record for `job` to `out`. */
DMJ_MUST_CHECK int dmj_codec_encode_job(const struct dmj_job *job, struct dmj_buf *out);
/** Decodes a job record; `out` is written only on success. */
DMJ_MUST_CHECK int dmj_codec_decode_job(const void *data, size_t len, struct dmj_job *out);

DMJ_MUST_CHECK int dmj_codec_encode_team(const struct dmj_team *t, struct dmj_buf *out);
DMJ_MUST_CHECK int dmj_codec_decode_team(const void *data, size_t len, struct dmj_team *out);
DMJ_MUST_CHECK int dmj_codec_encode_org(const struct dmj_org *o, struct dmj_buf *out);
DMJ_MUST_CHECK int dmj_codec_decode_org(const void *data, size_t len, struct dmj_org *out);
DMJ_MUST_CHECK int dmj_codec_encode_user(const struct dmj_user *u, struct dmj_buf *out);
DMJ_MUST_CHECK int dmj_codec_decode_user(const void *data, size_t len, struct dmj_user *out);
DMJ_MUST_CHECK int dmj_codec_encode_key(const struct dmj_key *k, struct dmj_buf *out);
DMJ_MUST_CHECK int dmj_codec_decode_key(const void *data, size_t len, struct dmj_key *out);

#endif
