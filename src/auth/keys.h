/*
 * keys.h - the tenant and key store: tenants with their AWS-style account
 * ids, and each tenant's keys (an API key for the client WebSocket and an
 * access key id + secret access key for AWS Signature V4 on the control API).
 *
 * FILES (in DATA_DIR, created 0700 if missing):
 *   auth.db     SQLite (WAL, busy_timeout 1000 ms), created 0600. The server
 *               and `realm keys` open it at the same time; the CLI writes
 *               while the server runs and the server notices through
 *               realm_keys_version.
 *   server.key  32 random bytes, created 0600 if missing. It encrypts the
 *               SigV4 secrets (AES-256-GCM). A server.key that group or
 *               others may access (any bit of 077), that is not a regular
 *               file or that is not exactly 32 bytes is refused. A missing
 *               server.key is created only while auth.db holds no keys: with
 *               keys, a fresh server.key could decrypt none of them, so open
 *               fails instead and says so. Its path can be given instead
 *               (--server-key-file; it must be in an existing directory).
 *
 * SHARED (db a postgresql:// URL): tenants and keys are rows of that
 * database, and every server using it (and `realm keys --db URL`) must hold
 * the same server key file. The database keeps a check value of that key
 * (SHA-256 of a label and the key, store.h realm_store_auth_key_check),
 * recorded by the first server to open it. Open refuses, saying so, a key
 * file whose check differs or that does not decrypt the database's keys,
 * and a missing key file while the database holds keys or a check; a key
 * file is created only for a database with neither (the first server's).
 * A server notices keys added or revoked elsewhere through
 * realm_keys_version (a counter row of the database).
 *
 * SECRETS: an API key is "rk_<key_id>_<secret>" (key_id "k" + 12 lowercase
 * hex digits, secret 32 chars of [a-z2-7], 160 bits). Only a random 16-byte
 * salt and SHA-256(salt || secret) are stored. A SigV4 secret is 40 chars of
 * [A-Za-z0-9/+] (240 bits), stored as nonce(12) || AES-256-GCM ciphertext ||
 * tag(16) under server.key, with the access key id as additional
 * authenticated data (a ciphertext moved to another row does not decrypt).
 * Neither secret is stored in the clear; both are handed out once, by
 * realm_keys_create.
 *
 * NAMES: a tenant name is [A-Za-z0-9_-]{1,64}. An account id is 12 decimal
 * digits, random, never 000000000000, unique, fixed for the tenant's life.
 * An access key id is "AKIA" + 16 chars of [A-Z2-7].
 *
 * Errors: functions taking err write a one-line message there on failure
 * (err may be NULL when err_len is 0). Lookups (check, find, is_active,
 * tenant_account) answer 0 on any failure, storage errors included (those
 * are logged), so a broken store never lets a request through.
 *
 * THREADS: one realm_keys_t per thread; in the server, the loop thread only.
 * Every call blocks on one small transaction (at most busy_timeout when
 * another process holds the write lock; on PostgreSQL, network round
 * trips: such a store must not be called on the loop, docs/storage.md).
 * Different processes and different realm_keys_t on the same data dir or
 * database are safe together.
 */
#ifndef REALM_AUTH_KEYS_H
#define REALM_AUTH_KEYS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define REALM_KEYS_TENANT_MAX 64  /* characters in a tenant name */
#define REALM_KEYS_API_KEY_LEN 64 /* a buffer that holds an API key and its NUL */
#define REALM_KEYS_SECRET_LEN 41  /* a buffer that holds a SigV4 secret and its NUL */

typedef struct realm_keys_s realm_keys_t;

/* One key, as the lookups answer it. Holds no secret. */
typedef struct {
    char key_id[32];        /* "k" + 12 hex */
    char tenant[65];        /* the tenant the key acts for */
    char account_id[13];    /* the tenant's 12-digit account id */
    char access_key_id[24]; /* "AKIA..." (20 chars) */
    double rate, burst;     /* requests/s and bucket size; 0: the server's default */
    int is_revoked;         /* 1 once revoked (lookups refuse revoked keys) */
    int64_t created_ms;     /* Unix epoch milliseconds */
} realm_key_info_t;

/*
 * Opens the store, creating what is missing (see FILES). db names where the
 * tenants and keys live: NULL, "" or "sqlite": DATA_DIR/auth.db; a
 * postgresql:// URL: that database, shared by every server using it (then
 * DATA_DIR holds only the default key file). server_key_file: NULL or "":
 * DATA_DIR/server.key; a path starting "DATA_DIR/" is in data_dir. data_dir, db and server_key_file
 * are borrowed for the call. Returns a new store (close with realm_keys_close), or NULL with a
 * message in err (an unusable server key, an unreadable database, a key file that is not the one
 * the shared database's secrets were sealed under...). A data_dir (or db) of "memory:" keeps
 * tenants, keys and a random server key in memory (tests; store/store.h's in-memory backend): no
 * file is made.
 */
realm_keys_t *realm_keys_open(const char *data_dir, const char *db, const char *server_key_file,
                              char *err, size_t err_len);
/* Closes the database and wipes the server key from memory. NULL is fine. */
void realm_keys_close(realm_keys_t *k);

/* 1 if name is a valid tenant name ([A-Za-z0-9_-]{1,64}), else 0. */
int realm_keys_tenant_name_is_valid(const char *name);

/*
 * Creates a key for tenant (and the tenant, with a new account id, on first
 * use), with rate and burst (finite, >= 0; 0 means the server's default).
 * On success returns 0, fills *info (may be NULL) and writes the API key to
 * api_key (>= REALM_KEYS_API_KEY_LEN bytes) and the SigV4 secret to secret
 * (>= REALM_KEYS_SECRET_LEN bytes): the only time either is available.
 * Returns -1 with a message in err for a bad tenant name, a bad rate or
 * burst, or a storage error; nothing is written to the store then.
 */
int realm_keys_create(realm_keys_t *k, const char *tenant, double rate, double burst,
                      realm_key_info_t *info, char *api_key, char *secret, char *err,
                      size_t err_len);

/*
 * Every key, ordered by tenant then creation, as a new JSON array of
 * {"key_id", "tenant", "account_id", "access_key_id", "rate", "burst",
 *  "revoked" (boolean), "created" (Unix epoch ms)}; no secrets. NULL on a
 * storage error (logged).
 */
json_t *realm_keys_list(realm_keys_t *k);

/*
 * Revokes key key_id: from then on every lookup refuses it, in every process
 * (realm_keys_version changes). Revoking a revoked key is a no-op. Returns 0,
 * or -1 with a message in err (an unknown key id, a storage error).
 */
int realm_keys_revoke(realm_keys_t *k, const char *key_id, char *err, size_t err_len);

/*
 * Checks an API key ("rk_<key_id>_<secret>"; borrowed). Returns 1 and fills
 * *out (may be NULL) if it is well-formed, its key exists, is not revoked
 * and the secret matches (compared in constant time); 0 otherwise.
 */
int realm_keys_check_api_key(realm_keys_t *k, const char *api_key, realm_key_info_t *out);

/*
 * Finds the key with access_key_id. Returns 1 if it exists, is not revoked
 * and its secret decrypts under this server key: fills *out (may be NULL)
 * and writes the secret (NUL-terminated) to secret (secret_len >=
 * REALM_KEYS_SECRET_LEN). Returns 0 otherwise (a decryption failure is
 * logged: server.key does not match auth.db); secret is then "".
 */
int realm_keys_find_access_key(realm_keys_t *k, const char *access_key_id, realm_key_info_t *out,
                               char *secret, size_t secret_len);

/* 1 if key key_id exists and is not revoked, else 0. */
int realm_keys_is_active(realm_keys_t *k, const char *key_id);

/* 1 and the tenant's account id in account_id if tenant exists, else 0. */
int realm_keys_tenant_account(realm_keys_t *k, const char *tenant, char account_id[13]);

/*
 * A number that changes whenever the store changed since the last call, by
 * this realm_keys_t or by any other connection or process (PRAGMA
 * data_version plus a count of this connection's own writes; PostgreSQL:
 * the database's change counter, one round trip). It only grows. Cheap on
 * SQLite (one PRAGMA reading the shared WAL index). Poll it and reload
 * cached decisions (e.g. revocations on open connections) when it moves.
 */
uint64_t realm_keys_version(realm_keys_t *k);

#endif
