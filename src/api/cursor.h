/** Django REST Framework's CursorPagination cursor: decoding, encoding, and the page walk.
 *
 * Exactly DRF's strings (docs/api.md): tokens o, r, p form-urlencoded, then
 * standard base64; decoding is CPython's lenient b64decode, then parse_qs. */
#ifndef DMJ_CURSOR_H
#define DMJ_CURSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dmj/buf.h"
#include "dmj/error.h"
#include "dmj/store.h"
#include "rows.h"

#define DMJ_CURSOR_OFFSET_CUTOFF 1000
#define DMJ_CURSOR_POSITION_MAX 64 /**< longer positions are never valid timestamps */

struct dmj_cursor {
    uint64_t offset; /**< decoded cursors: clamped to the cutoff; links: not clamped */
    bool reverse;
    bool has_position;
    int64_t position_us;                          /**< the position parsed */
    char position[DMJ_CURSOR_POSITION_MAX + 1];   /**< its text, as sent or as str(datetime) */
    size_t position_len;
};

/** Decodes the `cursor` query value (already percent-decoded). DMJ_EBADCURSOR for every case
 * DRF answers 404 "Invalid cursor"; `out` is written only on success. */
DMJ_MUST_CHECK int dmj_cursor_decode(const char *value, size_t len, struct dmj_cursor *out);
/** Appends the base64 cursor string (not percent-quoted; it is pure base64). */
DMJ_MUST_CHECK int dmj_cursor_encode(const struct dmj_cursor *c, struct dmj_buf *out);

/** One list request: which jobs, how many, from where. */
struct dmj_page_params {
    int32_t team_id;
    bool has_saved_query_id;
    uint8_t saved_query_id[16];
    unsigned limit;                 /**< page size after the limit rules, >= 1 */
    const struct dmj_cursor *cursor; /**< NULL for the first page */
    /* dmj's own filters (PostHog clients never send them); zeroed fields filter nothing. */
    unsigned statuses;        /**< bits DMJ_PAGE_STATUS(s) of the statuses kept; 0: all */
    bool has_created_after;   /**< only created_at > created_after_us */
    int64_t created_after_us;
    bool has_created_before;  /**< only created_at < created_before_us */
    int64_t created_before_us;
    /** The worker's rendered jobs, of the generation the page is for; NULL: each row is
     * decoded and rendered. */
    struct dmj_rows *rows;
    /** Set to the rows' digests (struct dmj_row) folded in the order written, from
     * DMJ_DIGEST_SEED (digest.h): with the text around them, the page's own digest. NULL: not
     * wanted. */
    uint64_t *rows_digest;
};

/** The bit of one status in dmj_page_params.statuses. */
#define DMJ_PAGE_STATUS(s) (1u << (unsigned)(s))
/** Every status: the same rows as no status filter. */
#define DMJ_PAGE_STATUS_ALL ((1u << DMJ_STATUS_COUNT) - 1u)

/** What DRF's paginator decides besides the rows. */
struct dmj_page_links {
    bool has_next;
    struct dmj_cursor next;
    bool has_previous;
    struct dmj_cursor previous;
};

/** Runs DRF's paginate_queryset and get_next_link/get_previous_link over the store: appends
 * the page's jobs as a JSON array ("[...]") to `results` and fills `links`. */
DMJ_MUST_CHECK int dmj_cursor_page(struct dmj_read *r, const struct dmj_page_params *p,
                                   struct dmj_buf *results, struct dmj_page_links *links);

/** DRF's LimitOffsetPagination over the same filtered rows in list order (PostHog's current
 * generation, docs/api.md): appends the `limit` jobs (twelve fields) from position `offset`
 * as a JSON array to `results` ("[]" past the end) and sets `count` to the number of
 * matching jobs.
 * `p->cursor` is not read. The count is the store's (dmj_read_count) when it keeps one for
 * the filters, and the walk then stops at the page's end (offset + limit rows read; none at
 * or past the count); else every matching row is walked. */
DMJ_MUST_CHECK int dmj_offset_page(struct dmj_read *r, const struct dmj_page_params *p,
                                   uint64_t offset, struct dmj_buf *results, uint64_t *count);

#endif
