/* A store's sub-databases written straight through LMDB, behind the store's back: for the
 * tests of what the store makes of entries it did not write (another format, damage, a
 * writer that does not keep its counters). */
#ifndef DMJ_TEST_RAWDB_H
#define DMJ_TEST_RAWDB_H

#include <lmdb.h>
#include <stddef.h>

/** Opens the store in `dir` with LMDB alone (map size `map_size`, 0 for LMDB's own) and
 * begins a write transaction on its sub-database `db`; NULL when any step fails (nothing is
 * left open then). */
MDB_env *rawdb_begin(const char *dir, const char *db, size_t map_size, MDB_txn **txn,
                     MDB_dbi *dbi) __attribute__((warn_unused_result));

/** Commits the transaction and closes the environment: 0, or LMDB's error. */
int rawdb_commit(MDB_env *env, MDB_txn *txn);

#endif
