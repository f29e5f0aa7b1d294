/* The LMDB store's environment: opening and closing it (map size, format version, store id,
 * file modes, a data file cut short), the map grown by another process, and the store-wide
 * sizes and counts (reads are in store_read.c, writes in store_write.c). */
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dmj/store.h"
#include "store_impl.h"

#define DEFAULT_MAP_SIZE (64ull << 30)
#define MAX_DBS 16
#define MAX_READERS 1024
/* How long a map resize waits for the reads in progress to end (requests are short). */
#define RESIZE_WAIT_MS 10000

const char *const dmj__store_db_names[DB_COUNT] = {
    [DB_JOBS] = "jobs",
    [DB_JOB_IDS] = "job_ids",
    [DB_BY_SQ] = "by_saved_query",
    [DB_BY_STATUS] = "by_status",
    [DB_TEAMS] = "teams",
    [DB_ORGS] = "orgs",
    [DB_USERS] = "users",
    [DB_MEMBERSHIPS] = "memberships",
    [DB_ORG_TEAMS] = "org_teams",
    [DB_KEYS] = "keys",
    [DB_META] = "meta",
    [DB_CHANGES] = "changes",
};

/* ---- the environment ----------------------------------------------------------------- */

/* $DMJ_MAP_SIZE: bytes, with an optional K/M/G/T suffix; 0 when absent or unparsable. */
static size_t env_map_size(void)
{
    const char *v = getenv("DMJ_MAP_SIZE");
    if (!v || !*v)
        return 0;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || end == v)
        return 0;
    unsigned shift = 0;
    switch (*end) {
    case 'k':
    case 'K':
        shift = 10;
        end++;
        break;
    case 'm':
    case 'M':
        shift = 20;
        end++;
        break;
    case 'g':
    case 'G':
        shift = 30;
        end++;
        break;
    case 't':
    case 'T':
        shift = 40;
        end++;
        break;
    default:
        break;
    }
    if (*end != '\0' || n > (SIZE_MAX >> shift))
        return 0;
    return (size_t)(n << shift);
}

/* ---- the store id -------------------------------------------------------------------- */

static int random_id(uint8_t out[STORE_ID_LEN])
{
    size_t got = 0;
    while (got < STORE_ID_LEN) {
        ssize_t n = getrandom(out + got, STORE_ID_LEN - got, 0);
        if (n < 0 && errno != EINTR)
            return -errno;
        if (n > 0)
            got += (size_t)n;
    }
    return 0;
}

static uint64_t id_word(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static void cache_id(struct dmj_store *s, const uint8_t id[STORE_ID_LEN])
{
    atomic_store(&s->id_words[0], id_word(id));
    atomic_store(&s->id_words[1], id_word(id + 8));
    atomic_store(&s->has_id, true);
}

/* The stored id into `out`: DMJ_ENOTFOUND when absent, DMJ_EBADRECORD when malformed. */
static int get_id(MDB_txn *txn, MDB_dbi meta, uint8_t out[STORE_ID_LEN])
{
    MDB_val k = {sizeof META_STORE_ID - 1, (void *)META_STORE_ID}, v;
    int rc = mdb_get(txn, meta, &k, &v);
    if (rc)
        return dmj__store_err(rc);
    if (v.mv_size != STORE_ID_LEN)
        return DMJ_EBADRECORD;
    memcpy(out, v.mv_data, STORE_ID_LEN);
    return 0;
}

/* Stores a new random id in the write transaction `txn`. */
static int put_new_id(MDB_txn *txn, MDB_dbi meta, uint8_t id[STORE_ID_LEN])
{
    MDB_val k = {sizeof META_STORE_ID - 1, (void *)META_STORE_ID}, v = {STORE_ID_LEN, id};
    int rc = random_id(id);
    return rc ? rc : dmj__store_err(mdb_put(txn, meta, &k, &v, 0));
}

/* A writable open gives a store without a (well-formed) id one; a read-only open keeps what
 * it finds, if anything, for dmj_read_store_id. */
static int open_id(struct dmj_store *s, MDB_txn *txn)
{
    uint8_t id[STORE_ID_LEN];
    int rc = get_id(txn, s->dbi[DB_META], id);
    if ((rc == DMJ_ENOTFOUND || rc == DMJ_EBADRECORD) && !s->rdonly)
        rc = put_new_id(txn, s->dbi[DB_META], id);
    if (rc == 0)
        cache_id(s, id);
    return rc == DMJ_ENOTFOUND || rc == DMJ_EBADRECORD ? 0 : rc;
}

int dmj__store_new_id_at(const char *file, size_t map_size)
{
    MDB_env *env;
    MDB_txn *txn = NULL;
    MDB_dbi meta;
    char lock[4096];
    uint8_t id[STORE_ID_LEN];
    if (snprintf(lock, sizeof lock, "%s-lock", file) >= (int)sizeof lock)
        return -ENAMETOOLONG;
    int rc = mdb_env_create(&env);
    if (rc)
        return dmj__store_err(rc);
    rc = mdb_env_set_maxdbs(env, MAX_DBS);
    if (!rc)
        rc = mdb_env_set_mapsize(env, map_size);
    if (!rc)
        rc = mdb_env_open(env, file, MDB_NOSUBDIR, DMJ__STORE_FILE_MODE);
    if (!rc)
        rc = mdb_txn_begin(env, NULL, 0, &txn);
    if (!rc)
        rc = mdb_dbi_open(txn, dmj__store_db_names[DB_META], 0, &meta);
    rc = dmj__store_err(rc);
    if (!rc)
        rc = put_new_id(txn, meta, id);
    if (!rc) {
        rc = dmj__store_err(mdb_txn_commit(txn));
        txn = NULL;
    }
    if (txn)
        mdb_txn_abort(txn);
    mdb_env_close(env);
    unlink(lock); /* LMDB's lock file for the copy: the copy's users make their own */
    return rc;
}

int dmj__store_read_id(struct dmj_store *s, MDB_txn *txn, uint8_t out[STORE_ID_LEN])
{
    uint8_t id[STORE_ID_LEN];
    if (!atomic_load(&s->has_id)) {
        if (!txn)
            return DMJ_EINVAL;
        int rc = get_id(txn, s->dbi[DB_META], id);
        if (rc)
            return rc;
        cache_id(s, id);
    }
    uint64_t w[2] = {atomic_load(&s->id_words[0]), atomic_load(&s->id_words[1])};
    memcpy(out, w, STORE_ID_LEN);
    return 0;
}

/* Opens every sub-database (creating them when writable) and checks the store's format. */
static int open_dbs(struct dmj_store *s)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, s->rdonly ? MDB_RDONLY : 0, &txn);
    if (rc)
        return dmj__store_err(rc);
    for (int i = 0; i < DB_COUNT; i++) {
        rc = mdb_dbi_open(txn, dmj__store_db_names[i], s->rdonly ? 0 : MDB_CREATE, &s->dbi[i]);
        if (rc == MDB_NOTFOUND && i == DB_CHANGES) {
            /* a store written before the change log: served with an empty log (a writable
             * open creates it, in the same format) */
            continue;
        }
        if (i == DB_CHANGES && rc == 0)
            atomic_store(&s->has_changes, true);
        if (rc == MDB_NOTFOUND) {
            rc = DMJ_EVERSION; /* an LMDB file, but not a dmj store of this format */
            goto Error;
        }
        if (rc) {
            rc = dmj__store_err(rc);
            goto Error;
        }
    }
    MDB_val k = {6, (void *)"format"}, v;
    rc = mdb_get(txn, s->dbi[DB_META], &k, &v);
    if (rc && (rc != MDB_NOTFOUND || s->rdonly)) {
        rc = rc == MDB_NOTFOUND ? DMJ_EVERSION : dmj__store_err(rc);
        goto Error;
    }
    if (rc == 0) {
        const uint8_t *p = v.mv_data;
        if (v.mv_size != 4 || p[0] || p[1] || p[2] || p[3] < DMJ__STORE_FORMAT_MIN ||
            p[3] > DMJ__STORE_FORMAT) {
            rc = DMJ_EVERSION;
            goto Error;
        }
    }
    /* A new store, or an older format opened writable, is written in this one (format 1 needs
     * nothing rewritten: store_changes.c reads its counters), after which earlier versions
     * refuse it rather than number entries their way. */
    if (!s->rdonly &&
        (rc == MDB_NOTFOUND || ((const uint8_t *)v.mv_data)[3] != DMJ__STORE_FORMAT)) {
        uint8_t fmt[4] = {0, 0, 0, DMJ__STORE_FORMAT};
        v.mv_size = 4;
        v.mv_data = fmt;
        rc = mdb_put(txn, s->dbi[DB_META], &k, &v, 0);
        if (rc) {
            rc = dmj__store_err(rc);
            goto Error;
        }
    }
    rc = open_id(s, txn);
    if (rc)
        goto Error;
    /* the job counters of a store last written without them (or new) */
    if (!s->rdonly && (rc = dmj__counts_commit(txn, s, false)) != 0)
        goto Error;
    /* committing (a read transaction too) makes the dbi handles the environment's */
    rc = mdb_txn_commit(txn);
    return dmj__store_err(rc);
Error:
    mdb_txn_abort(txn);
    return rc;
}

/* Where LMDB's meta page (data format 1, 64-bit) keeps what check_length reads: the
 * meta follows the 16-byte page header; its two tree records (free, main) are 48 bytes
 * each, the root page number last in each. */
#define META_AT 16
#define META_MAGIC 0xBEEFC0DEu
#define META_FREE_ROOT (META_AT + 24 + 40)
#define META_MAIN_ROOT (META_AT + 24 + 48 + 40)
#define META_TXNID (META_AT + 24 + 96 + 8)
#define NO_PAGE UINT64_MAX /* LMDB's P_INVALID: an empty tree */

static uint64_t u64_at(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v); /* native order, as LMDB writes it */
    return v;
}

/* The free and main tree roots of the newer of the two meta pages; false when they do not
 * read as LMDB's format 1 (then LMDB's own checks decide). */
static bool meta_roots(int fd, size_t psize, uint64_t roots[2])
{
    uint8_t page[2][256];
    uint64_t best = 0;
    bool found = false;
    for (int i = 0; i < 2; i++) {
        if (pread(fd, page[i], sizeof page[i], (off_t)(i * psize)) != (ssize_t)sizeof page[i])
            return false;
        uint32_t magic, version;
        memcpy(&magic, page[i] + META_AT, 4);
        memcpy(&version, page[i] + META_AT + 4, 4);
        if (magic != META_MAGIC || version != 1)
            return false;
        uint64_t txnid = u64_at(page[i] + META_TXNID);
        if (!found || txnid > best) {
            best = txnid;
            roots[0] = u64_at(page[i] + META_FREE_ROOT);
            roots[1] = u64_at(page[i] + META_MAIN_ROOT);
            found = true;
        }
    }
    return found;
}

/* A data file cut short (a partial copy, a file system that lost its tail) ends in SIGBUS
 * at the first read past its end, in every reader and writer: refuse it at open. LMDB's
 * own "last page" cannot be the test (a whole store may be shorter: pages freed in the
 * transaction that allocated them are never written); these are. The tree roots must lie
 * in the file (the main tree's is read to find ours), and the file must hold at least as
 * many pages as the trees use (distinct pages, all written in a whole store). A cut that
 * spares that many pages can still go unnoticed; a cut compacted backup never does. */
static int check_length(struct dmj_store *s)
{
    mdb_filehandle_t fd;
    MDB_stat st;
    MDB_txn *txn;
    MDB_dbi dbi;
    struct stat fs;
    uint64_t roots[2] = {NO_PAGE, NO_PAGE};
    if (mdb_env_get_fd(s->env, &fd) != 0 || mdb_env_stat(s->env, &st) != 0 || st.ms_psize < 512)
        return DMJ_ESTORE;
    if (fstat(fd, &fs) != 0)
        return -errno;
    uint64_t have = (uint64_t)fs.st_size / st.ms_psize;
    if (!meta_roots(fd, st.ms_psize, roots))
        return 0;
    if ((roots[0] != NO_PAGE && roots[0] >= have) || (roots[1] != NO_PAGE && roots[1] >= have))
        return DMJ_ETRUNCATED;
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return dmj__store_err(rc);
    uint64_t used = 2; /* the meta pages */
    for (int i = -2; i < DB_COUNT && rc == 0; i++) {
        /* -2, -1: LMDB's free tree (dbi 0) and main tree (dbi 1); a sub-database not
         * there yet (a new store) uses no page */
        dbi = (MDB_dbi)(i + 2);
        if (i >= 0 && mdb_dbi_open(txn, dmj__store_db_names[i], 0, &dbi) != 0)
            continue;
        rc = mdb_stat(txn, dbi, &st);
        if (rc == 0)
            used += st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;
    }
    mdb_txn_abort(txn);
    if (rc)
        return dmj__store_err(rc);
    return used > have ? DMJ_ETRUNCATED : 0;
}

/* Reserves the blocks of the lock file (LMDB's reader table, which it maps and writes
 * through the map) before LMDB opens it: a page of a sparse file written through a map when
 * the file system is full is SIGBUS for the whole process (a store restored without
 * lock.mdb onto a full disk killed every reader and writer). A file system that cannot
 * reserve is left to LMDB. Only before: once LMDB has the file open, closing any other
 * descriptor of it would drop this process's fcntl locks on it, and the next process to
 * open the store would take itself for the only one and reset the reader table. */
static int reserve_lock(const char *dir, off_t size)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/lock.mdb", dir) >= (int)sizeof path)
        return -ENAMETOOLONG;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, DMJ__STORE_FILE_MODE);
    if (fd < 0)
        return 0; /* read-only file system or directory: LMDB decides */
    int rc = 0;
    /* KEEP_SIZE: LMDB sizes the file itself (and takes a file of any other size as its
     * reader count) */
    if (fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, size) != 0 && errno == ENOSPC)
        rc = -ENOSPC;
    close(fd);
    return rc;
}

int dmj_store_open(const char *dir, unsigned flags, size_t map_size, struct dmj_store **out)
{
    struct dmj_store *s;
    struct stat st;
    char path[4096];
    int rc;
    bool rdonly = (flags & DMJ_STORE_RDONLY) != 0;

    if (rdonly) {
        /* LMDB would create an empty data file; a reader must find an existing store */
        if (snprintf(path, sizeof path, "%s/data.mdb", dir) >= (int)sizeof path)
            return -ENAMETOOLONG;
        if (stat(path, &st) != 0)
            return -errno;
        /* A writer killed (or out of space) right after creating the file leaves it empty:
         * there is no store yet, and LMDB would fail to initialise it through a read-only
         * handle with a puzzling EBADF. The next writer initialises it. */
        if (st.st_size == 0)
            return -ENODATA;
    } else if (mkdir(dir, DMJ__STORE_DIR_MODE) != 0 && errno != EEXIST) {
        return -errno;
    }
    if (stat(dir, &st) != 0)
        return -errno;
    if (!S_ISDIR(st.st_mode))
        return -ENOTDIR;

    /* the reader table of MAX_READERS slots is below 128 KiB */
    rc = reserve_lock(dir, 128 * 1024);
    if (rc)
        return rc;
    if (map_size == 0)
        map_size = env_map_size();
    if (map_size == 0)
        map_size = (size_t)DEFAULT_MAP_SIZE;

    s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->rdonly = rdonly;
    atomic_init(&s->readers, 0);
    atomic_init(&s->resizing, false);
    atomic_init(&s->has_changes, false);
    atomic_init(&s->changes_tried, 0);
    atomic_init(&s->has_id, false);
    atomic_init(&s->id_words[0], 0);
    atomic_init(&s->id_words[1], 0);
    if (pthread_mutex_init(&s->resize_lock, NULL) != 0) {
        free(s);
        return -ENOMEM;
    }
    if (pthread_mutex_init(&s->changes_lock, NULL) != 0) {
        pthread_mutex_destroy(&s->resize_lock);
        free(s);
        return -ENOMEM;
    }
    rc = mdb_env_create(&s->env);
    if (rc) {
        rc = dmj__store_err(rc);
        goto Error;
    }
    rc = mdb_env_set_maxdbs(s->env, MAX_DBS);
    if (!rc)
        rc = mdb_env_set_maxreaders(s->env, MAX_READERS);
    if (!rc)
        rc = mdb_env_set_mapsize(s->env, map_size);
    /* NOTLS: read transactions belong to read handles, not threads, and are reused.
     * No WRITEMAP for writers: with whole-import batches it cost more system time than the
     * copy at commit it saves (1M jobs: 1.1 s vs 0.7 s of sys, user time equal), and it
     * makes data.mdb a sparse file as large as the map. */
    unsigned env_flags = MDB_NOTLS | (rdonly ? MDB_RDONLY : 0);
    if (!rc)
        rc = mdb_env_open(s->env, dir, env_flags, DMJ__STORE_FILE_MODE);
    if (rc) {
        rc = rc == MDB_INVALID ? DMJ_EVERSION : dmj__store_err(rc);
        goto Error;
    }
    rc = check_length(s);
    if (rc == 0)
        rc = open_dbs(s);
    if (rc)
        goto Error;
    *out = s;
    return 0;
Error:
    dmj_store_close(s);
    return rc;
}

void dmj_store_close(struct dmj_store *s)
{
    if (!s)
        return;
    if (s->env)
        mdb_env_close(s->env);
    pthread_mutex_destroy(&s->changes_lock);
    pthread_mutex_destroy(&s->resize_lock);
    free(s);
}

/* ---- map resizes --------------------------------------------------------------------- */

/* A read of this process starts: counted in, unless a resize is under way (then it waits).
 * Both sides are sequentially consistent: a reader that missed `resizing` is seen in
 * `readers` by the resizer, which waits for it. */
void dmj__store_reader_enter(struct dmj_store *s)
{
    for (;;) {
        atomic_fetch_add(&s->readers, 1);
        if (!atomic_load(&s->resizing))
            return;
        atomic_fetch_sub(&s->readers, 1);
        while (atomic_load(&s->resizing)) {
            struct timespec ts = {0, 100000};
            nanosleep(&ts, NULL);
        }
    }
}

void dmj__store_reader_leave(struct dmj_store *s)
{
    atomic_fetch_sub(&s->readers, 1);
}

int dmj__store_adopt_map_size(struct dmj_store *s)
{
    int rc = 0;
    pthread_mutex_lock(&s->resize_lock);
    atomic_store(&s->resizing, true);
    for (long waited = 0; atomic_load(&s->readers) != 0; waited++) {
        if (waited == RESIZE_WAIT_MS * 10L) {
            rc = DMJ_EBUSY;
            break;
        }
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
    if (rc == 0)
        rc = dmj__store_err(mdb_env_set_mapsize(s->env, 0));
    atomic_store(&s->resizing, false);
    pthread_mutex_unlock(&s->resize_lock);
    return rc;
}

void dmj_store_sizes(struct dmj_store *s, uint64_t *used, uint64_t *map_size)
{
    MDB_envinfo info;
    MDB_stat st;
    /* the meta pages it reads move when the map is resized */
    dmj__store_reader_enter(s);
    int rc = mdb_env_info(s->env, &info);
    if (rc == 0)
        rc = mdb_env_stat(s->env, &st);
    dmj__store_reader_leave(s);
    if (rc != 0) {
        *used = 0;
        *map_size = 0;
        return;
    }
    *used = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
    *map_size = info.me_mapsize;
}

int dmj_store_counts(struct dmj_store *s, uint64_t *jobs, int64_t *last_write_us)
{
    MDB_txn *txn = NULL;
    int rc;
    /* Its own short transaction (MDB_NOTLS: any thread may), as dmj_read_begin does it. */
    for (int attempt = 0;; attempt++) {
        dmj__store_reader_enter(s);
        rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
        if (rc == 0)
            break;
        dmj__store_reader_leave(s);
        if (rc != MDB_MAP_RESIZED || attempt == 2)
            return dmj__store_err(rc);
        rc = dmj__store_adopt_map_size(s);
        if (rc)
            return rc;
    }
    /* The tree's own count: no walk, whatever the store holds. */
    MDB_stat st;
    int64_t when = 0;
    rc = mdb_stat(txn, s->dbi[DB_JOBS], &st);
    if (rc == 0) {
        char name[] = "last_write_us";
        MDB_val k = {sizeof name - 1, name}, v;
        int got = mdb_get(txn, s->dbi[DB_META], &k, &v);
        if (got == 0 && v.mv_size == 8)
            when = dmj__get64(v.mv_data);
        else if (got != 0 && got != MDB_NOTFOUND)
            rc = got;
    }
    mdb_txn_abort(txn);
    dmj__store_reader_leave(s);
    if (rc)
        return dmj__store_err(rc);
    *jobs = st.ms_entries;
    *last_write_us = when;
    return 0;
}

uint64_t dmj_store_last_txnid(struct dmj_store *s)
{
    MDB_envinfo info;
    return mdb_env_info(s->env, &info) == 0 ? (uint64_t)info.me_last_txnid : 0;
}
