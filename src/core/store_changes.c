/* The change log's read side (events): placeholders until the log is written (issue 8). */
#include "dmj/store.h"

int dmj_read_change_next(struct dmj_read *r, int32_t team_id, uint64_t after_seq,
                         struct dmj_change *out)
{
    (void)r;
    (void)team_id;
    (void)after_seq;
    (void)out;
    return DMJ_EEND;
}

int dmj_read_change_bounds(struct dmj_read *r, uint64_t *oldest, uint64_t *newest)
{
    (void)r;
    *oldest = 0;
    *newest = 0;
    return 0;
}
