/** Query strings and URLs as Django and Python's urllib.parse see them. */
#ifndef DMJ_QUERY_H
#define DMJ_QUERY_H

#include <stdbool.h>
#include <stddef.h>

#include "dmj/buf.h"
#include "dmj/error.h"

#define DMJ_QUERY_MAX_PARAMS 1000 /**< Django's DATA_UPLOAD_MAX_NUMBER_FIELDS; more: DMJ_ETOOBIG */

/** One decoded field; key and value point into the query's storage, NUL-terminated. */
struct dmj_query_param {
    const char *key;
    size_t key_len;
    const char *value;
    size_t value_len;
};

/** A parsed query string: parse_qsl(keep_blank_values=True) semantics ('&' separates, a
 * bare `a` is `a=""`, '+' is space, %XX decoded, invalid UTF-8 replaced by U+FFFD). */
struct dmj_query {
    unsigned n;
    struct dmj_query_param params[DMJ_QUERY_MAX_PARAMS];
    struct dmj_buf storage;
};

/** Sets up an empty query whose storage may grow to `max_bytes`. */
void dmj_query_init(struct dmj_query *q, size_t max_bytes);
void dmj_query_dispose(struct dmj_query *q);
/** Parses `raw` (the part after '?', undecoded), replacing any earlier content. */
DMJ_MUST_CHECK int dmj_query_parse(struct dmj_query *q, const char *raw, size_t len);
/** The last value of `key`, or NULL when absent. */
const struct dmj_query_param *dmj_query_last(const struct dmj_query *q, const char *key);

/** Called by dmj_query_find for each parameter it finds, in order: offsets into the raw query
 * of its name, its value (past the '='; `end` when there is no '=') and its end (the next
 * '&', '#' or the end, tabs before them included). A nonzero return stops the search and is
 * returned. */
typedef int dmj_query_found_fn(void *ctx, size_t name_at, size_t value_at, size_t end);
/** Finds every parameter of `raw` (the part after '?', undecoded) that dmj_query_parse reads
 * under the name `name`, with the same reading (tabs dropped, '#' ends it, '+' and %XX
 * decoded, UTF-8 else Latin-1), however many fields there are. 0, or -ENOMEM, or fn's code. */
DMJ_MUST_CHECK int dmj_query_find(const char *raw, size_t len, const char *name,
                                  dmj_query_found_fn *fn, void *ctx);
/** Appends the request target `target` (path '?' query, undecoded) with the value of every
 * query parameter dmj_query_parse reads as `name` cut after its first `keep` raw letters,
 * digits or '_' (and at any other byte), "..." standing for the rest; everything else is
 * copied as it is. On error `out` is unchanged. For logs that must not hold API keys. */
DMJ_MUST_CHECK int dmj_query_redact(struct dmj_buf *out, const char *target, size_t len,
                                    const char *name, size_t keep);

/** One parameter a link sets: `key` replaced by `value`, or removed when `value` is NULL
 * (DRF's replace_query_param and remove_query_param). */
struct dmj_query_set {
    const char *key; /**< NUL-terminated */
    const char *value;
    size_t value_len;
};
#define DMJ_QUERY_SET_MAX 4 /**< parameters one link may set */

/** dmj_query_build_link with every parameter of `set` replaced or removed (at most
 * DMJ_QUERY_SET_MAX), the rest of the query rebuilt the same way. */
DMJ_MUST_CHECK int dmj_query_build_link_set(struct dmj_buf *out, bool https, const char *host,
                                            size_t host_len, const char *path, size_t path_len,
                                            const struct dmj_query *query,
                                            const struct dmj_query_set *set, unsigned n_set);

/** Percent-decodes a path as Django does before routing (invalid UTF-8 replaced by U+FFFD). */
DMJ_MUST_CHECK int dmj_query_decode_path(const char *raw, size_t len, struct dmj_buf *out);

/** Appends DRF's link: `scheme://host` + escape_uri_path(path) + '?' + the query with
 * `cursor` set to `cursor_value`, as urlencode(sorted(parse_qs(...).items()), doseq=True).
 * `path` is the decoded path; `query` is the request's parsed query. */
DMJ_MUST_CHECK int dmj_query_build_link(struct dmj_buf *out, bool https, const char *host,
                                        size_t host_len, const char *path, size_t path_len,
                                        const struct dmj_query *query, const char *cursor_value,
                                        size_t cursor_len);

/** Appends urllib.parse.quote_plus of the UTF-8 bytes `s` (letters, digits and "_.-~" kept,
 * space as '+', everything else %XX); on error `out` is unchanged. */
DMJ_MUST_CHECK int dmj_query_add_quoted(struct dmj_buf *out, const char *s, size_t len);

#endif
