/* rawdb.h: LMDB's own calls, with as many named sub-databases as the store has. */
#include "rawdb.h"

MDB_env *rawdb_begin(const char *dir, const char *db, size_t map_size, MDB_txn **txn,
                     MDB_dbi *dbi)
{
    MDB_env *env;
    if (mdb_env_create(&env) != 0)
        return NULL;
    mdb_env_set_maxdbs(env, 16);
    if (map_size)
        mdb_env_set_mapsize(env, map_size);
    if (mdb_env_open(env, dir, 0, 0644) != 0) {
        mdb_env_close(env);
        return NULL;
    }
    if (mdb_txn_begin(env, NULL, 0, txn) != 0) {
        mdb_env_close(env);
        return NULL;
    }
    if (mdb_dbi_open(*txn, db, 0, dbi) != 0) {
        mdb_txn_abort(*txn);
        mdb_env_close(env);
        return NULL;
    }
    return env;
}

int rawdb_commit(MDB_env *env, MDB_txn *txn)
{
    int rc = mdb_txn_commit(txn);
    mdb_env_close(env);
    return rc;
}
