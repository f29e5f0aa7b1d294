/* Texts for dmj's error codes. */
#include <string.h>

#include "dmj/error.h"

const char *dmj_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
    case DMJ_ENOTFOUND:
        return "not found";
    case DMJ_EEND:
        return "no more rows";
    case DMJ_EINVAL:
        return "invalid value";
    case DMJ_EBADCURSOR:
        return "invalid cursor";
    case DMJ_ETOOBIG:
        return "too large";
    case DMJ_EBADRECORD:
        return "corrupted record";
    case DMJ_EVERSION:
        return "unknown record format version";
    case DMJ_EMAPFULL:
        return "store map size exhausted (raise --map-size or DMJ_MAP_SIZE)";
    case DMJ_ESTORE:
        return "storage engine failure";
    case DMJ_EBUSY:
        return "store busy";
    case DMJ_ETRUNCATED:
        return "the store's data file is shorter than its contents (a truncated copy?)";
    }
    if (err < 0 && err > -4096)
        return strerror(-err);
    return "unknown error";
}
