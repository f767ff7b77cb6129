/*
 * db.h - opening Realm's SQLite stores (the registry's realm.db, the Event
 * queue's events.db, the keys' auth.db) the one way they are all opened.
 */
#ifndef REALM_DB_H
#define REALM_DB_H

#include <sqlite3.h>
#include <stddef.h>

/*
 * Opens path with flags (SQLITE_OPEN_*), in WAL mode with synchronous=NORMAL
 * and a 1 s busy timeout (another process may hold the write lock: an
 * operation waits that long, then fails rather than stall the event loop),
 * then runs schema (statements separated by ';'). Returns the connection, or
 * NULL with "PATH: reason" in err.
 */
sqlite3 *realm_db_open(const char *path, int flags, const char *schema, char *err, size_t err_len);
/* Prepares n statements for the connection's lifetime into st (finalize them
 * before sqlite3_close). Returns 0, or -1 with "PATH: reason: SQL" in err. */
int realm_db_prepare_all(sqlite3 *db, const char *path, const char *const *sql, size_t n,
                         sqlite3_stmt **st, char *err, size_t err_len);

#endif
