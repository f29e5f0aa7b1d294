/* What the store's files (store.c, store_write.c, store_check.c) share: the handle, the
 * sub-databases, and the byte layout of their keys. Private to src/core/store*.c. */
#ifndef DMJ_STORE_IMPL_H
#define DMJ_STORE_IMPL_H

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "dmj/store.h"

/* The store's own format (meta "format"); DMJ_CODEC_VERSION is the records'. */
#define DMJ__STORE_FORMAT 1u

enum dmj__db {
    DB_JOBS,        /* team(4) . created_at(8) . id(16) -> job record */
    DB_JOB_IDS,     /* id(16) -> team(4) . created_at(8) */
    DB_BY_SQ,       /* team(4) . saved_query_id(16) . created_at(8) . id(16) -> "" */
    DB_BY_STATUS,   /* team(4) . status(1) . created_at(8) . id(16) -> "" */
    DB_TEAMS,       /* team(4) -> team record */
    DB_ORGS,        /* org(16) -> org record */
    DB_USERS,       /* user(8) -> user record */
    DB_MEMBERSHIPS, /* user(8) . org(16) -> level(4) */
    DB_ORG_TEAMS,   /* org(16) . team(4) -> "" */
    DB_KEYS,        /* "sha256$<hex>" -> key record */
    DB_META,        /* name -> value */
    DB_COUNT
};

#define KEY_JOB_LEN 28
#define KEY_SQ_LEN 44
#define KEY_STATUS_LEN 29
#define VAL_JOB_ID_LEN 12

struct dmj_store {
    MDB_env *env;
    MDB_dbi dbi[DB_COUNT];
    bool rdonly;
    /* Adopting a map grown by another process (mdb_env_set_mapsize) is only allowed while
     * no transaction of this process is active: read handles count themselves in
     * `readers` while they are begun, and wait while `resizing` is set (store.c). */
    atomic_int readers;
    atomic_bool resizing;
    pthread_mutex_t resize_lock;
};

/** Sub-database names, indexed by enum dmj__db. */
extern const char *const dmj__store_db_names[DB_COUNT];

/** Adopts the map size of a data file another process grew (MDB_MAP_RESIZED), once no read
 * handle of this process is begun; DMJ_EBUSY if they do not all end within seconds. */
int dmj__store_adopt_map_size(struct dmj_store *s);

/** A name dmj_read_meta/dmj_write_meta accept: "sync." and up to DMJ_META_NAME_MAX bytes. */
static inline bool dmj__meta_name_ok(const char *name, size_t *len)
{
    size_t n = name ? strnlen(name, DMJ_META_NAME_MAX + 1) : 0;
    if (n <= 5 || n > DMJ_META_NAME_MAX || memcmp(name, "sync.", 5) != 0)
        return false;
    *len = n;
    return true;
}

/** An LMDB (or errno) result as a dmj code. */
int dmj__store_err(int mdb_rc);

/* Keys are big-endian with the sign bit flipped, so that memcmp order is numeric order. */
static inline void dmj__put32(uint8_t *p, int32_t v)
{
    uint32_t u = (uint32_t)v ^ 0x80000000u;
    p[0] = (uint8_t)(u >> 24);
    p[1] = (uint8_t)(u >> 16);
    p[2] = (uint8_t)(u >> 8);
    p[3] = (uint8_t)u;
}

static inline void dmj__put64(uint8_t *p, int64_t v)
{
    uint64_t u = (uint64_t)v ^ 0x8000000000000000u;
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)u;
        u >>= 8;
    }
}

static inline int32_t dmj__get32(const uint8_t *p)
{
    uint32_t u = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
    u ^= 0x80000000u;
    /* back to signed without an implementation-defined conversion */
    return u <= INT32_MAX ? (int32_t)u : -(int32_t)(~u) - 1;
}

static inline int64_t dmj__get64(const uint8_t *p)
{
    uint64_t u = 0;
    for (int i = 0; i < 8; i++)
        u = (u << 8) | p[i];
    u ^= 0x8000000000000000u;
    return u <= INT64_MAX ? (int64_t)u : -(int64_t)(~u) - 1;
}

/* The key of a job in each sub-database. */
static inline void dmj__key_job(uint8_t k[KEY_JOB_LEN], int32_t team, int64_t created,
                                const uint8_t id[16])
{
    dmj__put32(k, team);
    dmj__put64(k + 4, created);
    memcpy(k + 12, id, 16);
}

static inline void dmj__key_sq(uint8_t k[KEY_SQ_LEN], int32_t team, const uint8_t sq[16],
                               int64_t created, const uint8_t id[16])
{
    dmj__put32(k, team);
    memcpy(k + 4, sq, 16);
    dmj__put64(k + 20, created);
    memcpy(k + 28, id, 16);
}

static inline void dmj__key_status(uint8_t k[KEY_STATUS_LEN], int32_t team, uint8_t status,
                                   int64_t created, const uint8_t id[16])
{
    dmj__put32(k, team);
    k[4] = status;
    dmj__put64(k + 5, created);
    memcpy(k + 13, id, 16);
}

#endif
