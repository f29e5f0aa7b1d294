/* The walk over every stored personal API key, in hash order (dmj keys list, revoke by id). */
#include <string.h>

#include "dmj/identity.h"
#include "dmj/store.h"

#include "codec.h"
#include "store_impl.h"

int dmj_read_next_key(struct dmj_read *r, const char *after, struct dmj_key *out)
{
    MDB_cursor *c;
    int rc = dmj__read_cursor(r, DB_KEYS, &c);
    if (rc != 0)
        return rc == DMJ_ENOTFOUND ? DMJ_EEND : rc;
    MDB_val k, v;
    if (after == NULL) {
        rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
    } else {
        k.mv_data = (void *)after;
        k.mv_size = strnlen(after, DMJ_KEY_HASH_LEN);
        rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
        /* at `after` itself when it is still there: the next one is wanted */
        if (rc == 0 && k.mv_size == strnlen(after, DMJ_KEY_HASH_LEN) &&
            memcmp(k.mv_data, after, k.mv_size) == 0)
            rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    if (rc == MDB_NOTFOUND)
        return DMJ_EEND;
    if (rc != 0)
        return dmj__store_err(rc);
    return dmj_codec_decode_key(v.mv_data, v.mv_size, out);
}
