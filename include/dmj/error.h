/** dmj's error codes: 0 on success, negative errno, or dmj's own codes at or below -1000. */
#ifndef DMJ_ERROR_H
#define DMJ_ERROR_H

#define DMJ_ENOTFOUND -1000  /**< no such record */
#define DMJ_EEND -1001       /**< a walk has no more rows */
#define DMJ_EINVAL -1002     /**< malformed input value (uuid, timestamp, integer, json) */
#define DMJ_EBADCURSOR -1003 /**< a cursor DRF would refuse */
#define DMJ_ETOOBIG -1004    /**< a bounded buffer or list would exceed its maximum */
#define DMJ_EBADRECORD -1005 /**< a stored record that cannot be decoded */
#define DMJ_EVERSION -1006   /**< a stored record or store of an unknown format version */
#define DMJ_EMAPFULL -1007   /**< the store's map size is exhausted (see --map-size) */
#define DMJ_ESTORE -1008     /**< any other storage engine failure */
#define DMJ_EBUSY -1009      /**< the store is locked or has too many readers */
#define DMJ_ETRUNCATED -1010 /**< the store's data file is shorter than its pages (cut copy) */

/** A static, human-readable text for any dmj or -errno code. */
const char *dmj_strerror(int err);

#if defined(__GNUC__)
#define DMJ_MUST_CHECK __attribute__((warn_unused_result))
#else
#define DMJ_MUST_CHECK
#endif

#endif
