/* What the store's files share: the handle, the sub-databases, the byte layout of their keys,
 * and a write's batch. Private to src/store. */
#ifndef DMJ_STORE_IMPL_H
#define DMJ_STORE_IMPL_H

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "dmj/buf.h"
#include "dmj/store.h"

/* The store's own format (meta "format"); DMJ_CODEC_VERSION is the records'. Format 2 numbers
 * each team's change-log entries by a counter of the team's own; format 1 (one counter for the
 * store) is read as it is and becomes format 2 at its first writable open (store_changes.c says
 * how its counter carries on). Versions before format 2 refuse a format 2 store. */
#define DMJ__STORE_FORMAT 2u
#define DMJ__STORE_FORMAT_MIN 1u

/* What a store or backup is created with: only its owner reads every team's jobs and every
 * key's hash (a umask may narrow these; an existing store keeps the modes it has). */
#define DMJ__STORE_DIR_MODE 0700
#define DMJ__STORE_FILE_MODE 0600

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
    DB_CHANGES,     /* team(4) . seq(8, unsigned) -> change (CHANGE_VAL_LEN, store_changes.c) */
    DB_COUNT
};

#define KEY_JOB_LEN 28
#define KEY_SQ_LEN 44
#define KEY_STATUS_LEN 29
#define VAL_JOB_ID_LEN 12
#define KEY_CHANGE_LEN 12
/* kind(1) . status(1) . previous(1) . job id(16) . at_us(8, sign-flipped) */
#define CHANGE_VAL_LEN 27

/* Meta names the change log keeps (not "sync.": tools cannot write them). Each team's counter:
 * META_CHANGES_TEAM . team(4, sign-flipped) -> last(8) . pruned(8), the last seq given out in
 * the team and the highest seq prune removed from it (big-endian, unsigned). The store-wide
 * counters of format 1 (8 bytes each) are only read: a team without a counter of its own
 * carries on from them. */
#define META_CHANGES_TEAM "changes.team."
#define META_CHANGES_TEAM_LEN (sizeof META_CHANGES_TEAM - 1)
#define KEY_META_TEAM_LEN (META_CHANGES_TEAM_LEN + 4)
#define META_TEAM_VAL_LEN 16
#define META_CHANGES_SEQ "changes.seq"
#define META_CHANGES_PRUNED "changes.pruned"
/* The store's identity (dmj_read_store_id): STORE_ID_LEN random bytes. */
#define META_STORE_ID "store_id"
#define STORE_ID_LEN 16

struct dmj_store {
    MDB_env *env;
    MDB_dbi dbi[DB_COUNT];
    bool rdonly;
    /* false only for a read-only open of a store written before the change log: its
     * dbi[DB_CHANGES] is not valid and the log reads as empty, until a read begun after a
     * writer created the log finds it (store_read.c: find_changes; set once, after the dbi) */
    atomic_bool has_changes;
    _Atomic uint64_t changes_tried; /* the last committed txnid find_changes looked in */
    pthread_mutex_t changes_lock;
    /* Adopting a map grown by another process (mdb_env_set_mapsize) is only allowed while
     * no transaction of this process is active: read handles count themselves in
     * `readers` while they are begun, and wait while `resizing` is set (store_open.c). */
    atomic_int readers;
    atomic_bool resizing;
    pthread_mutex_t resize_lock;
    /* the store id once seen (it never changes for a data file): the two halves are stored
     * before has_id, so that a thread that sees has_id sees them; racing threads store the
     * same values */
    atomic_bool has_id;
    _Atomic uint64_t id_words[2];
};

/** Gives the store in data file `file` (an LMDB file without a lock file beside it, as a backup
 * writes it) a new random store id; `map_size` at least the file's. */
int dmj__store_new_id_at(const char *file, size_t map_size);

/** Sub-database names, indexed by enum dmj__db. */
extern const char *const dmj__store_db_names[DB_COUNT];

/** Adopts the map size of a data file another process grew (MDB_MAP_RESIZED), once no read
 * handle of this process is begun; DMJ_EBUSY if they do not all end within seconds. */
int dmj__store_adopt_map_size(struct dmj_store *s);
/** Counts a read of this process in while it runs (its transaction begun, or the environment's
 * meta pages read), waiting first while a map resize is under way. */
void dmj__store_reader_enter(struct dmj_store *s);
/** Counts it out. */
void dmj__store_reader_leave(struct dmj_store *s);
/** The store id, once seen kept in the handle, else read through `txn`: DMJ_EINVAL when that is
 * needed and `txn` is NULL, DMJ_ENOTFOUND when the store has none, DMJ_EBADRECORD when it is
 * malformed. */
int dmj__store_read_id(struct dmj_store *s, MDB_txn *txn, uint8_t out[STORE_ID_LEN]);

/** A name dmj_read_meta/dmj_write_meta accept: "sync." and up to DMJ_META_NAME_MAX bytes. */
static inline bool dmj__meta_name_ok(const char *name, size_t *len)
{
    size_t n = name ? strnlen(name, DMJ_META_NAME_MAX + 1) : 0;
    if (n <= 5 || n > DMJ_META_NAME_MAX || memcmp(name, "sync.", 5) != 0)
        return false;
    *len = n;
    return true;
}

/** The read handle's cursor on `db` (one per sub-database, renewed per transaction), for the
 * read sides kept in other files. DMJ_ENOTFOUND when the sub-database does not exist. */
int dmj__read_cursor(struct dmj_read *r, int db, MDB_cursor **out);
/** The read handle's transaction; -EINVAL when the read is not begun. */
int dmj__read_txn(struct dmj_read *r, MDB_txn **out);
/** The store a read handle reads. */
const struct dmj_store *dmj__read_store(const struct dmj_read *r);

/** The write's transaction for a write done outside the write's own files (store_changes.c);
 * the write's first failure when it has failed already. */
int dmj__write_txn(struct dmj_write *w, MDB_txn **out);
/** Says that such a write changed something (the commit then records when). */
void dmj__write_touch(struct dmj_write *w);
/** Records a failure of such a write (the transaction is then only good for aborting); returns
 * `rc`. */
int dmj__write_fail(struct dmj_write *w, int rc);
/** The store a write handle writes. */
const struct dmj_store *dmj__write_store(const struct dmj_write *w);
/** The write's change-log counter (the one dmj__changes_use turns from team to team). */
struct dmj__change_log *dmj__write_log(struct dmj_write *w);
/** The bytes one write batch may buffer when the process may fill `mem` bytes of memory (0:
 * unknown): a quarter of it, at least 64 MiB. $DMJ_WRITE_MEMORY overrides it. */
uint64_t dmj__write_budget(uint64_t mem);
/** What a buffered job costs in a batch besides its encoded record, in bytes. */
size_t dmj__write_job_cost(void);

/* One team's change-log counter within a write transaction (store_changes.c): the team last
 * used, read from meta when the write turns to it, written back when the write turns to
 * another team and at commit. */
struct dmj__change_log {
    int32_t team;
    uint64_t last;   /* the last seq given out in the team */
    uint64_t pruned; /* the highest seq pruned from it */
    bool loaded;
    bool dirty;
};

/** Makes `log` the counter of `team` (storing the previous team's first if it changed). */
int dmj__changes_use(MDB_txn *txn, const struct dmj_store *s, struct dmj__change_log *log,
                     int32_t team);
/** Stores the counter if it changed. */
int dmj__changes_save(MDB_txn *txn, const struct dmj_store *s, struct dmj__change_log *log);
/** A team's counter as a reader or writer of `txn` sees it: its own, else carried on from the
 * store-wide counters of format 1, else (damaged) derived from the team's entries, which
 * `*derived` then says. `log` is a cursor on the change log, NULL when there is none. */
int dmj__changes_team(MDB_txn *txn, const struct dmj_store *s, MDB_cursor *log, int32_t team,
                      uint64_t *last, uint64_t *pruned, bool *derived);
/** An entry's key (KEY_CHANGE_LEN bytes) and value (CHANGE_VAL_LEN bytes). */
void dmj__change_encode(uint8_t *key, uint8_t *val, const struct dmj_change *c);
/** The value part alone (CHANGE_VAL_LEN bytes). */
void dmj__change_encode_val(uint8_t *val, enum dmj_change_kind kind, uint8_t status,
                            uint8_t previous, const uint8_t id[16], int64_t at_us);
/** An entry read back; DMJ_EBADRECORD when its key or value is malformed. */
int dmj__change_decode(const MDB_val *k, const MDB_val *v, struct dmj_change *out);

/* A batch's encoded job records, grouped by team so that a flush reads them in nearly the
 * order it writes `jobs` (store_recs.c). */
struct dmj__recs_team;
struct dmj__recs {
    struct dmj_buf buf;     /* the records; offsets into it stay valid as it grows */
    struct dmj_buf scratch; /* the record being encoded */
    struct dmj__recs_team *teams;
    size_t cap, used; /* the team table's slots, and how many are taken */
};

void dmj__recs_init(struct dmj__recs *r, size_t max);
void dmj__recs_dispose(struct dmj__recs *r);
/** Forgets every record, keeping the memory for the next batch. */
void dmj__recs_reset(struct dmj__recs *r);
/** Encodes `job` into its team's run of records: its place and length in r->buf. */
int dmj__recs_add_job(struct dmj__recs *r, const struct dmj_job *job, size_t *off, uint32_t *len);

/* A thread faulting the heap in ahead of a large flush's LMDB page allocations
 * (prefault.c). */
struct dmj__prefault {
    pthread_t tid;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* wakes a resting helper at stop */
    bool stop;
    uintptr_t from;
};

/** Starts the helper; false when no thread could be made (the flush goes on without). */
bool dmj__prefault_start(struct dmj__prefault *pf);
void dmj__prefault_stop(struct dmj__prefault *pf);

/* ---- a write's batch (store_put.c, store_sort.c, store_flush.c, store_write.c) ---------- */

#define SKEY_MAX KEY_SQ_LEN

/* What a stored job was before a put replaced it, for its change-log entry. */
enum before { BEFORE_ABSENT = 0, BEFORE_HIDDEN, BEFORE_VISIBLE };

/* A job waiting in the batch; its record is already encoded into `recs`. */
struct pend {
    uint8_t id[16];
    uint8_t sq[16];
    int64_t created;
    int32_t team;
    uint32_t seq; /* order of the puts: the last put of an id wins */
    size_t rec_off;
    uint32_t rec_len;
    uint8_t status;
    bool has_sq;
    bool dup; /* a later put of the same id replaces this one */
    bool hidden;
    /* the stored job this one replaces (enum before), set by the flush that writes it */
    uint8_t before;
    uint8_t old_status;
    int32_t old_team;
};

/* A sort key of one sub-database and the batch entry it stands for. */
struct skey {
    uint8_t k[SKEY_MAX];
    uint32_t i;
};

/* A write's changes to the job counters, by counter (store_counts.c). */
struct dmj__count_entry;
struct dmj__counts {
    struct dmj__count_entry *e;
    size_t cap, used;
};

struct dmj_write {
    struct dmj_store *s;
    MDB_txn *txn;
    struct pend *p;
    size_t n, cap;
    struct dmj__recs recs;
    struct skey *keys, *tmp; /* sorting scratch, cap entries each */
    uint32_t seq;
    size_t batch_max; /* BATCH_HARD_MAX, or $DMJ_WRITE_BATCH for tests and tuning */
    uint64_t budget;  /* bytes a batch may hold (batch_bytes), or $DMJ_WRITE_MEMORY */
    bool sized;       /* budget is the machine's (else BUDGET_MIN, see batch_full) */
    int err;          /* a failure inside the transaction: everything after is refused */
    bool dirty;
    struct dmj__change_log log;
    int64_t at_us; /* the clock for the change-log entries of the batch being written */
    struct dmj_write_stats stats;
    struct dmj__counts counts; /* the job counters' changes not yet added */
};

/* What was stored of a job, as the change log sees it. */
struct prior {
    uint8_t state; /* enum before */
    uint8_t status;
    int32_t team;
};

/** Puts `key` -> `val` into `db`; a failure is the write's from then on. */
int dmj__store_put(struct dmj_write *w, int db, const void *key, size_t klen, const void *val,
                   size_t vlen);
/** Deletes a key; DMJ_ENOTFOUND (the transaction still good) when it is absent. */
int dmj__store_del_existing(struct dmj_write *w, int db, const void *key, size_t klen);
/** Deletes a key; an absent one is fine (the goal is that it is not there). */
int dmj__store_del(struct dmj_write *w, int db, const void *key, size_t klen);
/** Removes every entry of the stored job `id` whose job_ids value is `where` (team .
 * created_at), job_ids included, and says in `was` what it was. */
int dmj__store_remove_job(struct dmj_write *w, const uint8_t id[16], const uint8_t where[12],
                          struct prior *was);
/** The wall clock in microseconds: the time of a write's changes. */
int64_t dmj__store_now_us(void);

/** Sorts `n` keys by their first `len` bytes, stably; `tmp` is scratch of `n` keys. */
void dmj__store_sort_keys(struct skey *a, struct skey *tmp, size_t n, size_t len);
/** dmj__store_sort_keys on two threads (one when no second thread starts), for the id sort
 * that opens a large flush. */
void dmj__store_sort_keys_split(struct skey *a, struct skey *tmp, size_t n, size_t len);

/** Writes the batch (duplicates dropped, the last put winning; stored versions of replaced jobs
 * removed; each sub-database in its key order) and empties it. */
int dmj__store_flush(struct dmj_write *w);
/** Logs one change now, with the team's next seq (for the changes not written with a batch). */
int dmj__store_log_change(struct dmj_write *w, int32_t team, enum dmj_change_kind kind,
                          uint8_t status, uint8_t previous, const uint8_t id[16]);

/* The job counters (store_counts.c). */

/** Counts `job` (when visible) `delta` times into its team's, status's and saved query's
 * counters. */
int dmj__counts_job(struct dmj__counts *t, const struct dmj_job *job, int delta);
/** Counts a batch entry written (visible, not a duplicate) once. */
int dmj__counts_pend(struct dmj__counts *t, const struct pend *p);
/** Adds the collected changes to the stored counters and empties `t`. */
int dmj__counts_apply(MDB_txn *txn, const struct dmj_store *s, struct dmj__counts *t);
void dmj__counts_dispose(struct dmj__counts *t);
/** Before a write transaction commits: when `changed` or when the counters are not the last
 * transaction's, counts every job again if needed and marks the counters as this
 * transaction's. */
int dmj__counts_commit(MDB_txn *txn, const struct dmj_store *s, bool changed);
/** dmj_read_count in `txn`. */
int dmj__counts_get(MDB_txn *txn, const struct dmj_store *s, int32_t team_id,
                    const struct dmj_count_spec *spec, uint64_t *out);
/** dmj verify's pass: every counter against the jobs (nothing when the counters are not
 * kept); `problem` is called for each difference. */
int dmj__counts_check(MDB_txn *txn, const struct dmj_store *s,
                      void (*problem)(void *, const char *), void *ctx);

/** An LMDB (or errno) result as a dmj code. Inline: look-ups pay no call for it, and the compiler
 * sees that a failure stays one (out-parameters written only on success are not taken for
 * unset). */
static inline int dmj__store_err(int rc)
{
    switch (rc) {
    case MDB_SUCCESS:
        return 0;
    case MDB_NOTFOUND:
        return DMJ_ENOTFOUND;
    case MDB_MAP_FULL:
        return DMJ_EMAPFULL;
    case MDB_READERS_FULL:
        return DMJ_EBUSY;
    case MDB_VERSION_MISMATCH:
        return DMJ_EVERSION;
    default:
        /* LMDB's own codes are negative; anything positive is an errno */
        if (rc > 0)
            return -rc;
        return DMJ_ESTORE;
    }
}

/* Keys are big-endian with the sign bit flipped, so that memcmp order is numeric order. */
static inline void dmj__put32(uint8_t *p, int32_t v)
{
    uint32_t u = (uint32_t)v ^ 0x80000000u;
    p[0] = (uint8_t)(u >> 24);
    p[1] = (uint8_t)(u >> 16);
    p[2] = (uint8_t)(u >> 8);
    p[3] = (uint8_t)u;
}

static inline int32_t dmj__get32(const uint8_t *p)
{
    uint32_t u = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
    u ^= 0x80000000u;
    /* back to signed without an implementation-defined conversion */
    return u <= INT32_MAX ? (int32_t)u : -(int32_t)(~u) - 1;
}

/* Unsigned big-endian (seqs; the signed forms below flip the sign bit first). */
static inline void dmj__put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static inline uint64_t dmj__get_u64(const uint8_t *p)
{
    uint64_t u = 0;
    for (int i = 0; i < 8; i++)
        u = (u << 8) | p[i];
    return u;
}

static inline void dmj__put64(uint8_t *p, int64_t v)
{
    dmj__put_u64(p, (uint64_t)v ^ 0x8000000000000000u);
}

static inline int64_t dmj__get64(const uint8_t *p)
{
    uint64_t u = dmj__get_u64(p) ^ 0x8000000000000000u;
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
