/** The declarations <h2o/http2_internal.h> needs from khash.h, which Debian's libh2o-dev
 * includes but does not ship.
 *
 * dmjd reads a few fields of h2o 2.2.5's HTTP/2 connection and stream (h2guard.c). The
 * connection holds its stream table only through a pointer, so an incomplete type gives
 * the struct the same layout as the library's. The one inline look-up the header defines
 * with the table must never be used: it refers to a function nobody defines, so a use
 * fails at link time instead of misbehaving. */
#ifndef DMJD_H2O_COMPAT_KHASH_H
#define DMJD_H2O_COMPAT_KHASH_H

#include <stdint.h>

typedef uint32_t khiter_t;

#define khash_t(name) kh_##name##_t
#define KHASH_MAP_INIT_INT64(name, khval_t) typedef struct kh_##name##_s kh_##name##_t;

khiter_t dmjd_khash_is_not_available(const void *table);
#define kh_get(name, h, k) ((void)(k), dmjd_khash_is_not_available(h))
#define kh_end(h) dmjd_khash_is_not_available(h)
#define kh_val(h, x) ((void)(x), (void *)0)

#endif
