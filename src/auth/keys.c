/*
 * keys.c - the tenant and key store (see keys.h).
 *
 * SCHEMA (auth.db, PRAGMA user_version 1):
 *   tenants(name PK, account_id UNIQUE, created)
 *   keys(key_id PK, tenant, api_key_salt, api_key_hash, access_key_id UNIQUE,
 *        secret_enc, rate, burst, revoked_at NULL, created)
 * Times are Unix epoch milliseconds. Keys are never deleted: a revoked row
 * keeps its key id and access key id taken, so neither is ever reissued.
 *
 * DESIGN: every random identifier (account id, key id, access key id) is
 * drawn, then inserted; a UNIQUE collision (practically never: 10^12, 2^48
 * and 2^80 values) draws again, a few times, inside the same BEGIN
 * IMMEDIATE transaction, so create is all or nothing. Random characters
 * come one per random byte from alphabets of 16, 32 or 64 symbols (uniform
 * without rejection); digits use rejection sampling.
 *
 * The API key's secret is checked by recomputing SHA-256(salt || secret)
 * and comparing with CRYPTO_memcmp. An unknown key id still costs one hash,
 * so answering "no such key" takes about as long as "wrong secret".
 *
 * realm_keys_version: PRAGMA data_version changes when another connection
 * commits, never for this connection's own commits, which are counted
 * separately (own_writes). Both feed one counter that only grows.
 *
 * server.key is created under a temporary name (O_CREAT|O_EXCL, 0600),
 * filled, fsynced, then link()ed into place: two processes starting at once
 * never see a half-written key, and exactly one key wins.
 *
 * LIFETIME: the store owns its connection, statements and the server key
 * (wiped at close). THREADS: one thread per store (see keys.h).
 */
#include "auth/keys.h"

#include "db/db.h"
#include "base/alloc.h"
#include "base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SERVER_KEY_LEN 32 /* AES-256 */
#define SALT_LEN 16
#define HASH_LEN 32 /* SHA-256 */
#define NONCE_LEN 12
#define TAG_LEN 16
#define API_SECRET_LEN 32   /* chars of [a-z2-7]: 160 bits */
#define SIGV4_SECRET_LEN 40 /* chars of [A-Za-z0-9/+]: 240 bits */
#define KEY_ID_HEX 12
#define AKID_RAND_LEN 16
#define ID_TRIES 8 /* draws of a random identifier before giving up on collisions */
#define PATH_MAX_LEN 4096

static const char schema[] = "CREATE TABLE IF NOT EXISTS tenants("
                             " name TEXT PRIMARY KEY,"
                             " account_id TEXT NOT NULL UNIQUE CHECK(length(account_id) = 12),"
                             " created INTEGER NOT NULL);"
                             "CREATE TABLE IF NOT EXISTS keys("
                             " key_id TEXT PRIMARY KEY,"
                             " tenant TEXT NOT NULL REFERENCES tenants(name),"
                             " api_key_salt BLOB NOT NULL, api_key_hash BLOB NOT NULL,"
                             " access_key_id TEXT NOT NULL UNIQUE, secret_enc BLOB NOT NULL,"
                             " rate REAL NOT NULL DEFAULT 0, burst REAL NOT NULL DEFAULT 0,"
                             " revoked_at INTEGER, created INTEGER NOT NULL);"
                             "CREATE INDEX IF NOT EXISTS keys_tenant ON keys(tenant, created);"
                             "PRAGMA user_version = 1;";

#define KEY_COLS                                                                                   \
    "k.key_id, k.tenant, t.account_id, k.access_key_id, k.rate, k.burst, k.revoked_at,"            \
    " k.created, k.api_key_salt, k.api_key_hash, k.secret_enc"                                     \
    " FROM keys k JOIN tenants t ON t.name = k.tenant"

/* Columns of KEY_COLS, by position. */
enum {
    C_KEY_ID,
    C_TENANT,
    C_ACCOUNT,
    C_AKID,
    C_RATE,
    C_BURST,
    C_REVOKED,
    C_CREATED,
    C_SALT,
    C_HASH,
    C_SECRET_ENC
};

/* The prepared statements, by purpose; sql[] below is in the same order. */
enum {
    S_TENANT_GET,
    S_TENANT_ADD,
    S_KEY_ADD,
    S_KEY_BY_ID,
    S_KEY_BY_AKID,
    S_LIST,
    S_REVOKE,
    S_KEY_EXISTS,
    S_HAS_KEYS,
    S_DATA_VERSION,
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_CNT
};

static const char *const sql[S_CNT] = {
    "SELECT account_id FROM tenants WHERE name = ?1",
    "INSERT INTO tenants(name, account_id, created) VALUES(?1, ?2, ?3)",
    "INSERT INTO keys(key_id, tenant, api_key_salt, api_key_hash, access_key_id, secret_enc,"
    " rate, burst, revoked_at, created) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, ?9)",
    "SELECT " KEY_COLS " WHERE k.key_id = ?1",
    "SELECT " KEY_COLS " WHERE k.access_key_id = ?1",
    "SELECT " KEY_COLS " ORDER BY k.tenant, k.created, k.key_id",
    "UPDATE keys SET revoked_at = ?2 WHERE key_id = ?1 AND revoked_at IS NULL",
    "SELECT 1 FROM keys WHERE key_id = ?1",
    "SELECT EXISTS(SELECT 1 FROM keys)",
    "PRAGMA data_version",
    "BEGIN IMMEDIATE",
    "COMMIT",
    "ROLLBACK",
};

struct realm_keys_s {
    sqlite3 *db;
    sqlite3_stmt *st[S_CNT];
    unsigned char server_key[SERVER_KEY_LEN];
    int64_t data_version; /* PRAGMA data_version when last looked at */
    uint64_t version;     /* what realm_keys_version answers */
};

/* ---- small helpers ---------------------------------------------------------------- */

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t err_len,
                                                          const char *fmt, ...)
{
    if (err == NULL || err_len == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void random_bytes(void *out, size_t len)
{
    if (RAND_bytes(out, (int)len) != 1) abort(); /* no randomness: nothing is safe */
}

/* len chars drawn uniformly from alphabet (its size a power of two <= 256), then a NUL. */
static void random_chars(char *out, size_t len, const char *alphabet)
{
    size_t mask = strlen(alphabet) - 1;
    unsigned char b[64];
    random_bytes(b, len);
    for (size_t i = 0; i < len; i++)
        out[i] = alphabet[b[i] & mask];
    out[len] = '\0';
    OPENSSL_cleanse(b, sizeof(b));
}

static const char hex_lower[] = "0123456789abcdef";
static const char b32_lower[] = "abcdefghijklmnopqrstuvwxyz234567";
static const char b32_upper[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
static const char b64_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* 12 uniform decimal digits, not all zero. */
static void random_account_id(char out[13])
{
    do {
        size_t n = 0;
        while (n < 12) {
            unsigned char b[16];
            random_bytes(b, sizeof(b));
            for (size_t i = 0; i < sizeof(b) && n < 12; i++)
                if (b[i] < 250) out[n++] = (char)('0' + b[i] % 10);
        }
        out[12] = '\0';
    } while (strcmp(out, "000000000000") == 0);
}

/* Is s made of 1..max chars, each in set? */
static int all_in(const char *s, size_t max, const char *set)
{
    size_t n = strlen(s);
    return n >= 1 && n <= max && strspn(s, set) == n;
}

int realm_keys_tenant_name_is_valid(const char *name)
{
    return name != NULL &&
           all_in(name, REALM_KEYS_TENANT_MAX,
                  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-");
}

static void sha256_salted(const unsigned char *salt, const char *secret, size_t secret_len,
                          unsigned char out[HASH_LEN])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned int n = 0;
    if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(md, salt, SALT_LEN) != 1 ||
        EVP_DigestUpdate(md, secret, secret_len) != 1 || EVP_DigestFinal_ex(md, out, &n) != 1 ||
        n != HASH_LEN)
        abort(); /* only fails on OOM */
    EVP_MD_CTX_free(md);
}

/* ---- AES-256-GCM ------------------------------------------------------------------ */

/* out (NONCE_LEN + len + TAG_LEN bytes) = nonce || ciphertext || tag, with aad authenticated. */
static void seal(const unsigned char key[SERVER_KEY_LEN], const char *aad, const void *plain,
                 size_t len, unsigned char *out)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0;
    random_bytes(out, NONCE_LEN);
    if (c == NULL || EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) != 1 ||
        EVP_EncryptInit_ex(c, NULL, NULL, key, out) != 1 ||
        EVP_EncryptUpdate(c, NULL, &n, (const unsigned char *)aad, (int)strlen(aad)) != 1 ||
        EVP_EncryptUpdate(c, out + NONCE_LEN, &n, plain, (int)len) != 1 || (size_t)n != len ||
        EVP_EncryptFinal_ex(c, out + NONCE_LEN + len, &n) != 1 || n != 0 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN, out + NONCE_LEN + len) != 1)
        abort(); /* only fails on OOM */
    EVP_CIPHER_CTX_free(c);
}

/* Decrypts a seal()ed blob into plain (blob_len - NONCE_LEN - TAG_LEN bytes). 0, or -1 if
 * the blob is malformed or does not authenticate (another key, another aad, tampering). */
static int open_sealed(const unsigned char key[SERVER_KEY_LEN], const char *aad,
                       const unsigned char *blob, size_t blob_len, unsigned char *plain,
                       size_t plain_cap)
{
    if (blob_len < NONCE_LEN + TAG_LEN || blob_len - NONCE_LEN - TAG_LEN > plain_cap) return -1;
    size_t len = blob_len - NONCE_LEN - TAG_LEN;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    if (c == NULL) abort();
    int n = 0, rc = -1;
    unsigned char tag[TAG_LEN];
    memcpy(tag, blob + NONCE_LEN + len, TAG_LEN);
    if (EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) == 1 &&
        EVP_DecryptInit_ex(c, NULL, NULL, key, blob) == 1 &&
        EVP_DecryptUpdate(c, NULL, &n, (const unsigned char *)aad, (int)strlen(aad)) == 1 &&
        EVP_DecryptUpdate(c, plain, &n, blob + NONCE_LEN, (int)len) == 1 && (size_t)n == len &&
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) == 1 &&
        EVP_DecryptFinal_ex(c, plain + len, &n) == 1)
        rc = 0;
    EVP_CIPHER_CTX_free(c);
    if (rc != 0) OPENSSL_cleanse(plain, plain_cap);
    return rc;
}

/* ---- statements ------------------------------------------------------------------- */

static sqlite3_stmt *stmt(realm_keys_t *k, int s)
{
    sqlite3_stmt *st = k->st[s];
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return st;
}

/* Runs a statement with no result rows. SQLITE_DONE, or the failing code. */
static int run(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) rc = SQLITE_DONE;
    sqlite3_reset(st);
    return rc;
}

static void copy_col(char *out, size_t out_len, sqlite3_stmt *st, int col)
{
    const unsigned char *s = sqlite3_column_text(st, col);
    snprintf(out, out_len, "%s", s ? (const char *)s : "");
}

static void read_info(sqlite3_stmt *st, realm_key_info_t *info)
{
    memset(info, 0, sizeof(*info));
    copy_col(info->key_id, sizeof(info->key_id), st, C_KEY_ID);
    copy_col(info->tenant, sizeof(info->tenant), st, C_TENANT);
    copy_col(info->account_id, sizeof(info->account_id), st, C_ACCOUNT);
    copy_col(info->access_key_id, sizeof(info->access_key_id), st, C_AKID);
    info->rate = sqlite3_column_double(st, C_RATE);
    info->burst = sqlite3_column_double(st, C_BURST);
    info->is_revoked = sqlite3_column_type(st, C_REVOKED) != SQLITE_NULL;
    info->created_ms = sqlite3_column_int64(st, C_CREATED);
}

/* ---- open / close ----------------------------------------------------------------- */

/* mkdir -p with mode 0700 for the directories it creates. 0, or -1 with errno. */
static int mkdir_p(const char *path)
{
    char tmp[PATH_MAX_LEN];
    if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST) return -1;
    return 0;
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Writes a new server key to path, atomically (see DESIGN). 0, or -1 with a message. If
 * another process got there first, its key stands and this is a success. */
static int create_server_key(const char *dir, const char *path, char *err, size_t err_len)
{
    char tmp[PATH_MAX_LEN], suffix[9];
    unsigned char key[SERVER_KEY_LEN];
    random_chars(suffix, 8, hex_lower);
    snprintf(tmp, sizeof(tmp), "%s/.server.key.%ld.%s", dir, (long)getpid(), suffix);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        set_err(err, err_len, "%s: %s", tmp, strerror(errno));
        return -1;
    }
    random_bytes(key, sizeof(key));
    int rc = write_all(fd, key, sizeof(key)) == 0 && fsync(fd) == 0 ? 0 : -1;
    OPENSSL_cleanse(key, sizeof(key));
    if (rc != 0) set_err(err, err_len, "%s: %s", tmp, strerror(errno));
    close(fd);
    if (rc == 0 && link(tmp, path) != 0 && errno != EEXIST) {
        set_err(err, err_len, "%s: %s", path, strerror(errno));
        rc = -1;
    }
    unlink(tmp);
    if (rc == 0) {
        /* The new name must survive a crash as long as anything it encrypted does. */
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
    return rc;
}

/* Reads (creating it if allowed) DATA_DIR/server.key into k->server_key. 0, or -1. */
static int load_server_key(realm_keys_t *k, const char *dir, int may_create, char *err,
                           size_t err_len)
{
    char path[PATH_MAX_LEN];
    snprintf(path, sizeof(path), "%s/server.key", dir);
    int fd = -1;
    for (int attempt = 0; attempt < 2 && fd < 0; attempt++) {
        fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0) break;
        if (errno != ENOENT || attempt > 0) {
            set_err(err, err_len, "%s: %s", path, strerror(errno));
            return -1;
        }
        if (!may_create) {
            set_err(err, err_len,
                    "%s is missing, but %s/auth.db holds keys whose secrets it encrypted; "
                    "restore it (or move auth.db away to start with no keys)",
                    path, dir);
            return -1;
        }
        if (create_server_key(dir, path, err, err_len) != 0) return -1;
    }
    struct stat st;
    int rc = -1;
    if (fstat(fd, &st) != 0) {
        set_err(err, err_len, "%s: %s", path, strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        set_err(err, err_len, "%s: not a regular file", path);
    } else if (st.st_mode & 077) {
        set_err(err, err_len,
                "%s: mode %04o lets group or others access the server key; "
                "run chmod 600 on it (and replace it if others may have read it)",
                path, (unsigned)(st.st_mode & 07777));
    } else if (st.st_size != SERVER_KEY_LEN) {
        set_err(err, err_len, "%s: %lld bytes, not %d", path, (long long)st.st_size,
                SERVER_KEY_LEN);
    } else {
        size_t got = 0;
        while (got < SERVER_KEY_LEN) {
            ssize_t n = read(fd, k->server_key + got, SERVER_KEY_LEN - got);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            got += (size_t)n;
        }
        if (got == SERVER_KEY_LEN)
            rc = 0;
        else
            set_err(err, err_len, "%s: short read", path);
    }
    close(fd);
    return rc;
}

static int64_t read_data_version(realm_keys_t *k)
{
    sqlite3_stmt *st = stmt(k, S_DATA_VERSION);
    int64_t v = k->data_version;
    if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return v;
}

realm_keys_t *realm_keys_open(const char *data_dir, char *err, size_t err_len)
{
    realm_keys_t *k = realm_calloc(1, sizeof(*k));
    char path[PATH_MAX_LEN];
    if (data_dir == NULL || *data_dir == '\0') {
        set_err(err, err_len, "no data dir");
        goto fail;
    }
    if (mkdir_p(data_dir) != 0) {
        set_err(err, err_len, "data dir %s: %s", data_dir, strerror(errno));
        goto fail;
    }
    if (snprintf(path, sizeof(path), "%s/auth.db", data_dir) >= (int)sizeof(path)) {
        set_err(err, err_len, "data dir %s: path too long", data_dir);
        goto fail;
    }
    /* Create the file 0600 before SQLite does (it would use 0644 & ~umask); the -wal and
     * -shm files SQLite makes next to it copy its mode. */
    int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        set_err(err, err_len, "%s: %s", path, strerror(errno));
        goto fail;
    }
    close(fd);
    /* The server and `realm keys` share the file (db.h: the busy timeout). */
    k->db = realm_db_open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW, schema, err, err_len);
    if (!k->db || realm_db_prepare_all(k->db, path, sql, S_CNT, k->st, err, err_len) != 0)
        goto fail;
    sqlite3_stmt *st = stmt(k, S_HAS_KEYS);
    if (sqlite3_step(st) != SQLITE_ROW) {
        set_err(err, err_len, "%s: %s", path, sqlite3_errmsg(k->db));
        sqlite3_reset(st);
        goto fail;
    }
    int has_keys = sqlite3_column_int(st, 0) != 0;
    sqlite3_reset(st);
    if (load_server_key(k, data_dir, !has_keys, err, err_len) != 0) goto fail;
    k->data_version = read_data_version(k);
    return k;
fail:
    realm_keys_close(k);
    return NULL;
}

void realm_keys_close(realm_keys_t *k)
{
    if (k == NULL) return;
    for (int s = 0; s < S_CNT; s++)
        sqlite3_finalize(k->st[s]);
    sqlite3_close(k->db);
    OPENSSL_cleanse(k->server_key, sizeof(k->server_key));
    free(k);
}

/* ---- create ----------------------------------------------------------------------- */

/* The tenant's account id, adding the tenant if new. Inside the create transaction. */
static int ensure_tenant(realm_keys_t *k, const char *tenant, int64_t now, char account_id[13],
                         char *err, size_t err_len)
{
    sqlite3_stmt *st = stmt(k, S_TENANT_GET);
    sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) copy_col(account_id, 13, st, 0);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW) return 0;
    if (rc != SQLITE_DONE) goto fail;
    for (int i = 0; i < ID_TRIES; i++) {
        random_account_id(account_id);
        st = stmt(k, S_TENANT_ADD);
        sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, account_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, now);
        rc = run(st);
        if (rc == SQLITE_DONE) return 0;
        if ((rc & 0xff) != SQLITE_CONSTRAINT) goto fail;
    }
fail:
    set_err(err, err_len, "auth.db: adding tenant %s: %s", tenant, sqlite3_errmsg(k->db));
    return -1;
}

int realm_keys_create(realm_keys_t *k, const char *tenant, double rate, double burst,
                      realm_key_info_t *info, char *api_key, char *secret, char *err,
                      size_t err_len)
{
    if (!realm_keys_tenant_name_is_valid(tenant)) {
        set_err(err, err_len, "invalid tenant name '%.80s': use 1 to 64 of A-Z a-z 0-9 _ -",
                tenant ? tenant : "");
        return -1;
    }
    if (!isfinite(rate) || rate < 0 || !isfinite(burst) || burst < 0) {
        set_err(err, err_len, "rate and burst must be finite and >= 0 (0: the server's default)");
        return -1;
    }
    char api_secret[API_SECRET_LEN + 1], sigv4[SIGV4_SECRET_LEN + 1];
    char account_id[13], key_id[KEY_ID_HEX + 2], akid[4 + AKID_RAND_LEN + 1];
    unsigned char salt[SALT_LEN], hash[HASH_LEN];
    unsigned char sealed[NONCE_LEN + SIGV4_SECRET_LEN + TAG_LEN];
    int64_t now = now_ms();
    int rc = -1;

    random_chars(api_secret, API_SECRET_LEN, b32_lower);
    random_chars(sigv4, SIGV4_SECRET_LEN, b64_chars);
    random_bytes(salt, sizeof(salt));
    sha256_salted(salt, api_secret, API_SECRET_LEN, hash);

    if (run(stmt(k, S_BEGIN)) != SQLITE_DONE) {
        set_err(err, err_len, "auth.db: %s", sqlite3_errmsg(k->db));
        goto done;
    }
    if (ensure_tenant(k, tenant, now, account_id, err, err_len) != 0) goto rollback;
    int step = SQLITE_ERROR;
    for (int i = 0; i < ID_TRIES; i++) {
        key_id[0] = 'k';
        random_chars(key_id + 1, KEY_ID_HEX, hex_lower);
        memcpy(akid, "AKIA", 4);
        random_chars(akid + 4, AKID_RAND_LEN, b32_upper);
        /* The access key id is the AAD: a ciphertext copied to another row will not open. */
        seal(k->server_key, akid, sigv4, SIGV4_SECRET_LEN, sealed);
        sqlite3_stmt *st = stmt(k, S_KEY_ADD);
        sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, tenant, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 3, salt, SALT_LEN, SQLITE_STATIC);
        sqlite3_bind_blob(st, 4, hash, HASH_LEN, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, akid, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 6, sealed, sizeof(sealed), SQLITE_STATIC);
        sqlite3_bind_double(st, 7, rate);
        sqlite3_bind_double(st, 8, burst);
        sqlite3_bind_int64(st, 9, now);
        step = run(st);
        sqlite3_clear_bindings(st); /* drop the pointers to our stack */
        if (step == SQLITE_DONE || (step & 0xff) != SQLITE_CONSTRAINT) break;
    }
    if (step != SQLITE_DONE) {
        set_err(err, err_len, "auth.db: adding a key: %s", sqlite3_errmsg(k->db));
        goto rollback;
    }
    if (run(stmt(k, S_COMMIT)) != SQLITE_DONE) {
        set_err(err, err_len, "auth.db: commit: %s", sqlite3_errmsg(k->db));
        goto rollback;
    }
    k->version++;
    snprintf(api_key, REALM_KEYS_API_KEY_LEN, "rk_%s_%s", key_id, api_secret);
    memcpy(secret, sigv4, SIGV4_SECRET_LEN + 1);
    if (info != NULL) {
        memset(info, 0, sizeof(*info));
        snprintf(info->key_id, sizeof(info->key_id), "%s", key_id);
        snprintf(info->tenant, sizeof(info->tenant), "%s", tenant);
        memcpy(info->account_id, account_id, sizeof(info->account_id));
        snprintf(info->access_key_id, sizeof(info->access_key_id), "%s", akid);
        info->rate = rate;
        info->burst = burst;
        info->created_ms = now;
    }
    rc = 0;
    goto done;
rollback:
    run(stmt(k, S_ROLLBACK));
done:
    OPENSSL_cleanse(api_secret, sizeof(api_secret));
    OPENSSL_cleanse(sigv4, sizeof(sigv4));
    return rc;
}

/* ---- list / revoke ---------------------------------------------------------------- */

json_t *realm_keys_list(realm_keys_t *k)
{
    json_t *arr = json_array();
    sqlite3_stmt *st = stmt(k, S_LIST);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        realm_key_info_t i;
        read_info(st, &i);
        json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s, s:f, s:f, s:b, s:I}", "key_id",
                                             i.key_id, "tenant", i.tenant, "account_id",
                                             i.account_id, "access_key_id", i.access_key_id, "rate",
                                             i.rate, "burst", i.burst, "revoked", i.is_revoked,
                                             "created", (json_int_t)i.created_ms));
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        realm_error("auth.db: listing keys: %s", sqlite3_errmsg(k->db));
        json_decref(arr);
        return NULL;
    }
    return arr;
}

int realm_keys_revoke(realm_keys_t *k, const char *key_id, char *err, size_t err_len)
{
    if (key_id == NULL) key_id = "";
    sqlite3_stmt *st = stmt(k, S_REVOKE);
    sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now_ms());
    if (run(st) != SQLITE_DONE) {
        set_err(err, err_len, "auth.db: revoking %.40s: %s", key_id, sqlite3_errmsg(k->db));
        return -1;
    }
    if (sqlite3_changes(k->db) > 0) {
        k->version++;
        return 0;
    }
    st = stmt(k, S_KEY_EXISTS);
    sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW) return 0; /* already revoked */
    if (rc == SQLITE_DONE)
        set_err(err, err_len, "no key with id '%.40s'", key_id);
    else
        set_err(err, err_len, "auth.db: revoking %.40s: %s", key_id, sqlite3_errmsg(k->db));
    return -1;
}

/* ---- lookups ---------------------------------------------------------------------- */

int realm_keys_check_api_key(realm_keys_t *k, const char *api_key, realm_key_info_t *out)
{
    /* "rk_" key_id "_" secret; key_id [a-z0-9]{1,31}, secret [a-z2-7]{32}. */
    if (api_key == NULL || strncmp(api_key, "rk_", 3) != 0) return 0;
    const char *id = api_key + 3;
    size_t id_len = strspn(id, "abcdefghijklmnopqrstuvwxyz0123456789");
    if (id_len == 0 || id_len >= sizeof(out->key_id) || id[id_len] != '_') return 0;
    const char *sec = id + id_len + 1;
    if (strlen(sec) != API_SECRET_LEN || strspn(sec, b32_lower) != API_SECRET_LEN) return 0;
    char key_id[32];
    memcpy(key_id, id, id_len);
    key_id[id_len] = '\0';

    sqlite3_stmt *st = stmt(k, S_KEY_BY_ID);
    sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    unsigned char hash[HASH_LEN];
    int ok = 0;
    if (rc == SQLITE_ROW && sqlite3_column_bytes(st, C_SALT) == SALT_LEN &&
        sqlite3_column_bytes(st, C_HASH) == HASH_LEN) {
        sha256_salted(sqlite3_column_blob(st, C_SALT), sec, API_SECRET_LEN, hash);
        ok = CRYPTO_memcmp(hash, sqlite3_column_blob(st, C_HASH), HASH_LEN) == 0 &&
             sqlite3_column_type(st, C_REVOKED) == SQLITE_NULL;
        if (ok && out != NULL) read_info(st, out);
    } else {
        /* No such key: spend the same hash so timing does not tell. */
        static const unsigned char zero_salt[SALT_LEN];
        sha256_salted(zero_salt, sec, API_SECRET_LEN, hash);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            realm_error("auth.db: checking an API key: %s", sqlite3_errmsg(k->db));
    }
    sqlite3_reset(st);
    return ok;
}

int realm_keys_find_access_key(realm_keys_t *k, const char *access_key_id, realm_key_info_t *out,
                               char *secret, size_t secret_len)
{
    if (secret != NULL && secret_len > 0) secret[0] = '\0';
    if (access_key_id == NULL || secret == NULL || secret_len < SIGV4_SECRET_LEN + 1) return 0;
    sqlite3_stmt *st = stmt(k, S_KEY_BY_AKID);
    sqlite3_bind_text(st, 1, access_key_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st), ok = 0;
    if (rc == SQLITE_ROW && sqlite3_column_type(st, C_REVOKED) == SQLITE_NULL) {
        unsigned char plain[SIGV4_SECRET_LEN];
        const unsigned char *blob = sqlite3_column_blob(st, C_SECRET_ENC);
        size_t blob_len = (size_t)sqlite3_column_bytes(st, C_SECRET_ENC);
        char akid[24];
        copy_col(akid, sizeof(akid), st, C_AKID);
        if (blob_len == NONCE_LEN + SIGV4_SECRET_LEN + TAG_LEN &&
            open_sealed(k->server_key, akid, blob, blob_len, plain, sizeof(plain)) == 0) {
            memcpy(secret, plain, SIGV4_SECRET_LEN);
            secret[SIGV4_SECRET_LEN] = '\0';
            OPENSSL_cleanse(plain, sizeof(plain));
            if (out != NULL) read_info(st, out);
            ok = 1;
        } else {
            realm_error("auth.db: the secret of access key %s does not decrypt: server.key "
                        "is not the key it was created with, or auth.db was altered",
                        akid);
        }
    } else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        realm_error("auth.db: finding an access key: %s", sqlite3_errmsg(k->db));
    }
    sqlite3_reset(st);
    return ok;
}

int realm_keys_is_active(realm_keys_t *k, const char *key_id)
{
    if (key_id == NULL) return 0;
    sqlite3_stmt *st = stmt(k, S_KEY_BY_ID);
    sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    int ok = rc == SQLITE_ROW && sqlite3_column_type(st, C_REVOKED) == SQLITE_NULL;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        realm_error("auth.db: looking up key %.40s: %s", key_id, sqlite3_errmsg(k->db));
    sqlite3_reset(st);
    return ok;
}

int realm_keys_tenant_account(realm_keys_t *k, const char *tenant, char account_id[13])
{
    if (tenant == NULL) return 0;
    sqlite3_stmt *st = stmt(k, S_TENANT_GET);
    sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        copy_col(account_id, 13, st, 0);
    else if (rc != SQLITE_DONE)
        realm_error("auth.db: looking up tenant %.64s: %s", tenant, sqlite3_errmsg(k->db));
    sqlite3_reset(st);
    return rc == SQLITE_ROW;
}

uint64_t realm_keys_version(realm_keys_t *k)
{
    int64_t dv = read_data_version(k);
    if (dv != k->data_version) {
        k->data_version = dv;
        k->version++;
    }
    return k->version;
}
