/*
 * db.c - see db.h.
 */
#include "db/db.h"

#include <stdio.h>

sqlite3 *realm_db_open(const char *path, int flags, const char *schema, char *err, size_t err_len)
{
    sqlite3 *db = NULL;
    char *msg = NULL;
    if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK) {
        snprintf(err, err_len, "%s: %s", path, db ? sqlite3_errmsg(db) : "cannot open");
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 1000);
    if (sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL, NULL, &msg) !=
            SQLITE_OK ||
        sqlite3_exec(db, schema, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, err_len, "%s: %s", path, msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        sqlite3_close(db);
        return NULL;
    }
    return db;
}

int realm_db_prepare_all(sqlite3 *db, const char *path, const char *const *sql, size_t n,
                         sqlite3_stmt **st, char *err, size_t err_len)
{
    for (size_t i = 0; i < n; i++) {
        if (sqlite3_prepare_v3(db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st[i], NULL) !=
            SQLITE_OK) {
            snprintf(err, err_len, "%s: %s: %s", path, sqlite3_errmsg(db), sql[i]);
            return -1;
        }
    }
    return 0;
}
