/*
 * keys.c - the tenant and key store (see keys.h).
 *
 * STORAGE: tenants and keys are rows of a store (store/store.h; the
 * schemas are in store/sqlite_auth.c and store/pg_auth.c). On a shared
 * (PostgreSQL) store the server key file is checked against the check
 * value the database keeps (keys.h, SHARED). Keys are never deleted: a
 * revoked row keeps its key id and access key id taken, so neither is ever
 * reissued. A data dir "memory:" keeps the rows and the server key in this
 * process's memory (tests; no file is made).
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
 * realm_keys_version: the store's realm_store_auth_version changes when
 * another connection commits, never for this connection's own commits,
 * which are counted separately. Both feed one counter that only grows.
 *
 * server.key is created under a temporary name (O_CREAT|O_EXCL, 0600),
 * filled, fsynced, then link()ed into place: two processes starting at once
 * never see a half-written key, and exactly one key wins.
 *
 * LIFETIME: the store owns its connection, statements and the server key
 * (wiped at close). THREADS: one thread per store (see keys.h).
 */
#include "auth/keys.h"

#include "store/store.h"
#include "base/alloc.h"
#include "base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
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

struct realm_keys_s {
    realm_store_t *store;
    unsigned char server_key[SERVER_KEY_LEN];
    int64_t data_version; /* realm_store_auth_version when last looked at */
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

static void read_info(const realm_store_key_t *row, realm_key_info_t *info)
{
    memset(info, 0, sizeof(*info));
    snprintf(info->key_id, sizeof(info->key_id), "%s", row->key_id);
    snprintf(info->tenant, sizeof(info->tenant), "%s", row->tenant);
    snprintf(info->account_id, sizeof(info->account_id), "%s", row->account_id);
    snprintf(info->access_key_id, sizeof(info->access_key_id), "%s", row->access_key_id);
    info->rate = row->rate;
    info->burst = row->burst;
    info->is_revoked = row->revoked_ms != 0;
    info->created_ms = row->created_ms;
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

/* Reads (creating it if may_create) the server key file path, in directory dir, into
 * k->server_key. 0 (1 when it was created), or -1 with a message; missing says why a
 * missing file is not created. */
static int load_server_key(realm_keys_t *k, const char *path, const char *dir, int may_create,
                           const char *missing, char *err, size_t err_len)
{
    int fd = -1, created = 0;
    for (int attempt = 0; attempt < 2 && fd < 0; attempt++) {
        fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0) break;
        if (errno != ENOENT || attempt > 0) {
            set_err(err, err_len, "%s: %s", path, strerror(errno));
            return -1;
        }
        if (!may_create) {
            set_err(err, err_len, "%s is missing, but %s", path, missing);
            return -1;
        }
        if (create_server_key(dir, path, err, err_len) != 0) return -1;
        created = 1;
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
            rc = created;
        else
            set_err(err, err_len, "%s: short read", path);
    }
    close(fd);
    return rc;
}

/* The server key's check value kept in a shared database: SHA-256 of a label and the
 * key, in hex (says whether two servers hold the same key, and nothing about it). */
static void server_key_check(const realm_keys_t *k, char out[2 * HASH_LEN + 1])
{
    static const char label[] = "realm server key check v1";
    unsigned char h[HASH_LEN];
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned int n = 0;
    if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(md, label, sizeof(label) - 1) != 1 ||
        EVP_DigestUpdate(md, k->server_key, SERVER_KEY_LEN) != 1 ||
        EVP_DigestFinal_ex(md, h, &n) != 1 || n != HASH_LEN)
        abort(); /* only fails on OOM */
    EVP_MD_CTX_free(md);
    for (size_t i = 0; i < HASH_LEN; i++) {
        out[2 * i] = hex_lower[h[i] >> 4];
        out[2 * i + 1] = hex_lower[h[i] & 15];
    }
    out[2 * HASH_LEN] = '\0';
}

/* 0 if the server key opens the first key's secret (or there is none), -1 if not. */
static int server_key_opens_keys(realm_keys_t *k)
{
    realm_store_key_t *rows = NULL;
    size_t n = 0;
    if (realm_store_key_list(k->store, &rows, &n) != 0) return -1;
    int rc = 0;
    if (n > 0) {
        unsigned char plain[SIGV4_SECRET_LEN];
        rc = rows[0].secret_enc_len == NONCE_LEN + SIGV4_SECRET_LEN + TAG_LEN &&
                     open_sealed(k->server_key, rows[0].access_key_id, rows[0].secret_enc,
                                 rows[0].secret_enc_len, plain, sizeof(plain)) == 0
                 ? 0
                 : -1;
        OPENSSL_cleanse(plain, sizeof(plain));
    }
    OPENSSL_cleanse(rows, n * sizeof(*rows));
    free(rows);
    return rc;
}

#define SHARED_KEY_HINT                                                                            \
    "every server on one database needs the same server key file: copy it from a server "          \
    "that uses this database (--server-key-file PATH, or DATA_DIR/server.key)"

realm_keys_t *realm_keys_open(const char *data_dir, const char *db, const char *server_key_file,
                              char *err, size_t err_len)
{
    realm_keys_t *k = realm_calloc(1, sizeof(*k));
    char path[PATH_MAX_LEN], key_path[PATH_MAX_LEN], key_dir[PATH_MAX_LEN];
    const char *loc = path;
    if (data_dir == NULL || *data_dir == '\0') {
        set_err(err, err_len, "no data dir");
        goto fail;
    }
    if (db != NULL && (*db == '\0' || strcmp(db, "sqlite") == 0)) db = NULL;
    int memory = realm_store_is_memory(data_dir) || (db != NULL && realm_store_is_memory(db));
    int shared = db != NULL && realm_store_is_pg(db);
    if (db != NULL && !memory && !shared) {
        set_err(err, err_len, "db '%.200s': use sqlite or a postgresql:// URL", db);
        goto fail;
    }
    if (memory) {
        loc = db != NULL ? db : data_dir;
    } else {
        if (mkdir_p(data_dir) != 0) {
            set_err(err, err_len, "data dir %s: %s", data_dir, strerror(errno));
            goto fail;
        }
        if (snprintf(path, sizeof(path), "%s/auth.db", data_dir) >= (int)sizeof(path) ||
            snprintf(key_path, sizeof(key_path), "%s/server.key", data_dir) >=
                (int)sizeof(key_path)) {
            set_err(err, err_len, "data dir %s: path too long", data_dir);
            goto fail;
        }
        /* "DATA_DIR/..." names a file in the data dir (the config's default). */
        int in_dir = server_key_file != NULL && strncmp(server_key_file, "DATA_DIR/", 9) == 0;
        if (server_key_file != NULL && *server_key_file != '\0' &&
            (in_dir ? snprintf(key_path, sizeof(key_path), "%s/%s", data_dir, server_key_file + 9)
                    : snprintf(key_path, sizeof(key_path), "%s", server_key_file)) >=
                (int)sizeof(key_path)) {
            set_err(err, err_len, "server key file %.200s: path too long", server_key_file);
            goto fail;
        }
        /* The key file's directory (a new key is made there, then linked into place). */
        snprintf(key_dir, sizeof(key_dir), "%s", key_path);
        char *slash = strrchr(key_dir, '/');
        if (slash == NULL)
            snprintf(key_dir, sizeof(key_dir), ".");
        else if (slash == key_dir)
            key_dir[1] = '\0';
        else
            *slash = '\0';
        if (shared) {
            loc = db;
        } else {
            /* Create the file 0600 before SQLite does (it would use 0644 & ~umask); the
             * -wal and -shm files SQLite makes next to it copy its mode. */
            int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
            if (fd < 0) {
                set_err(err, err_len, "%s: %s", path, strerror(errno));
                goto fail;
            }
            close(fd);
        }
    }
    /* The server and `realm keys` share the file (the store's busy timeout) or the database. */
    k->store = realm_store_open(REALM_STORE_AUTH, loc, err, err_len);
    if (!k->store) goto fail;
    const char *where = shared ? "the database" : loc;
    int has_keys = realm_store_key_any(k->store);
    if (has_keys < 0) {
        set_err(err, err_len, "%s: cannot read the keys", where);
        goto fail;
    }
    if (memory) {
        random_bytes(k->server_key, sizeof(k->server_key));
    } else if (!shared) {
        char missing[PATH_MAX_LEN + 160];
        snprintf(missing, sizeof(missing),
                 "%s holds keys whose secrets it encrypted; "
                 "restore it (or move auth.db away to start with no keys)",
                 path);
        if (load_server_key(k, key_path, key_dir, !has_keys, missing, err, err_len) < 0) goto fail;
    } else {
        /* Shared: the database keeps the check value of the key its secrets are sealed
         * under. A key file is made only for a database with neither keys nor a check,
         * and the first server to record its check wins: a second server with another
         * key is refused, before it could seal a secret no other server opens. */
        char held[2 * HASH_LEN + 1] = "", mine[2 * HASH_LEN + 1];
        int rc = realm_store_auth_key_check(k->store, NULL, held);
        if (rc < 0) {
            set_err(err, err_len, "%s: cannot read the server key check", where);
            goto fail;
        }
        int made = load_server_key(k, key_path, key_dir, !has_keys && rc != 0,
                                   "the database holds keys (or the check of the server key of "
                                   "the servers using it); " SHARED_KEY_HINT,
                                   err, err_len);
        if (made < 0) goto fail;
        /* Worth a line: the other servers on this database need a copy of it. */
        if (made) realm_info("keys: created the server key %s", key_path);
        /* The keys first: a key that opens none of them must not record its check
         * (a database whose check row was lost). */
        server_key_check(k, mine);
        int opens = !has_keys || server_key_opens_keys(k) == 0;
        if (opens && realm_store_auth_key_check(k->store, mine, held) != 0) {
            set_err(err, err_len, "%s: cannot record the server key check", where);
            goto fail;
        }
        if (!opens || strcmp(held, mine) != 0) {
            set_err(err, err_len,
                    "%s is not the server key the keys in the database were made with; "
                    "" SHARED_KEY_HINT,
                    key_path);
            goto fail;
        }
    }
    k->data_version = realm_store_auth_version(k->store);
    return k;
fail:
    realm_keys_close(k);
    return NULL;
}

void realm_keys_close(realm_keys_t *k)
{
    if (k == NULL) return;
    realm_store_close(k->store);
    OPENSSL_cleanse(k->server_key, sizeof(k->server_key));
    free(k);
}

/* ---- create ----------------------------------------------------------------------- */

/* The tenant's account id, adding the tenant if new. Inside the create transaction. */
static int ensure_tenant(realm_keys_t *k, const char *tenant, int64_t now, char account_id[13],
                         char *err, size_t err_len)
{
    int rc = realm_store_tenant_get(k->store, tenant, account_id);
    if (rc == 0) return 0;
    for (int i = 0; rc == 1 && i < ID_TRIES; i++) {
        random_account_id(account_id);
        rc = realm_store_tenant_add(k->store, tenant, account_id, now);
        if (rc == 0) return 0;
    }
    set_err(err, err_len, "auth.db: adding tenant %s: storage error", tenant);
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

    if (realm_store_begin(k->store) != 0) {
        set_err(err, err_len, "auth.db: cannot begin a transaction");
        goto done;
    }
    if (ensure_tenant(k, tenant, now, account_id, err, err_len) != 0) goto rollback;
    realm_store_key_t row;
    memset(&row, 0, sizeof(row));
    snprintf(row.tenant, sizeof(row.tenant), "%s", tenant);
    memcpy(row.salt, salt, SALT_LEN);
    row.salt_len = SALT_LEN;
    memcpy(row.hash, hash, HASH_LEN);
    row.hash_len = HASH_LEN;
    row.secret_enc_len = sizeof(sealed);
    row.rate = rate;
    row.burst = burst;
    row.created_ms = now;
    int step = -1;
    for (int i = 0; i < ID_TRIES; i++) {
        key_id[0] = 'k';
        random_chars(key_id + 1, KEY_ID_HEX, hex_lower);
        memcpy(akid, "AKIA", 4);
        random_chars(akid + 4, AKID_RAND_LEN, b32_upper);
        /* The access key id is the AAD: a ciphertext copied to another row will not open. */
        seal(k->server_key, akid, sigv4, SIGV4_SECRET_LEN, sealed);
        snprintf(row.key_id, sizeof(row.key_id), "%s", key_id);
        snprintf(row.access_key_id, sizeof(row.access_key_id), "%s", akid);
        memcpy(row.secret_enc, sealed, sizeof(sealed));
        step = realm_store_key_add(k->store, &row);
        if (step != 1) break; /* 1: an id collided, draw again */
    }
    OPENSSL_cleanse(&row, sizeof(row));
    if (step != 0) {
        set_err(err, err_len, "auth.db: adding a key: storage error");
        goto rollback;
    }
    if (realm_store_commit(k->store) != 0) {
        set_err(err, err_len, "auth.db: commit failed");
        goto done;
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
    realm_store_rollback(k->store);
done:
    OPENSSL_cleanse(api_secret, sizeof(api_secret));
    OPENSSL_cleanse(sigv4, sizeof(sigv4));
    return rc;
}

/* ---- list / revoke ---------------------------------------------------------------- */

json_t *realm_keys_list(realm_keys_t *k)
{
    realm_store_key_t *rows = NULL;
    size_t n = 0;
    if (realm_store_key_list(k->store, &rows, &n) != 0) {
        realm_error("auth.db: listing keys failed");
        return NULL;
    }
    json_t *arr = json_array();
    for (size_t r = 0; r < n; r++) {
        realm_key_info_t i;
        read_info(&rows[r], &i);
        json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s, s:f, s:f, s:b, s:I}", "key_id",
                                             i.key_id, "tenant", i.tenant, "account_id",
                                             i.account_id, "access_key_id", i.access_key_id, "rate",
                                             i.rate, "burst", i.burst, "revoked", i.is_revoked,
                                             "created", (json_int_t)i.created_ms));
    }
    OPENSSL_cleanse(rows, n * sizeof(*rows));
    free(rows);
    return arr;
}

int realm_keys_revoke(realm_keys_t *k, const char *key_id, char *err, size_t err_len)
{
    if (key_id == NULL) key_id = "";
    int rc = realm_store_key_revoke(k->store, key_id, now_ms());
    if (rc == 0) {
        k->version++;
        return 0;
    }
    if (rc == 1) return 0; /* already revoked */
    if (rc == 2)
        set_err(err, err_len, "no key with id '%.40s'", key_id);
    else
        set_err(err, err_len, "auth.db: revoking %.40s: storage error", key_id);
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

    realm_store_key_t row;
    int rc = realm_store_key_get(k->store, key_id, 0, &row);
    unsigned char hash[HASH_LEN];
    int ok = 0;
    if (rc == 0 && row.salt_len == SALT_LEN && row.hash_len == HASH_LEN) {
        sha256_salted(row.salt, sec, API_SECRET_LEN, hash);
        ok = CRYPTO_memcmp(hash, row.hash, HASH_LEN) == 0 && row.revoked_ms == 0;
        if (ok && out != NULL) read_info(&row, out);
    } else {
        /* No such key: spend the same hash so timing does not tell. */
        static const unsigned char zero_salt[SALT_LEN];
        sha256_salted(zero_salt, sec, API_SECRET_LEN, hash);
    }
    if (rc == 0) OPENSSL_cleanse(&row, sizeof(row));
    return ok;
}

int realm_keys_find_access_key(realm_keys_t *k, const char *access_key_id, realm_key_info_t *out,
                               char *secret, size_t secret_len)
{
    if (secret != NULL && secret_len > 0) secret[0] = '\0';
    if (access_key_id == NULL || secret == NULL || secret_len < SIGV4_SECRET_LEN + 1) return 0;
    realm_store_key_t row;
    int rc = realm_store_key_get(k->store, access_key_id, 1, &row), ok = 0;
    if (rc == 0 && row.revoked_ms == 0) {
        unsigned char plain[SIGV4_SECRET_LEN];
        if (row.secret_enc_len == NONCE_LEN + SIGV4_SECRET_LEN + TAG_LEN &&
            open_sealed(k->server_key, row.access_key_id, row.secret_enc, row.secret_enc_len, plain,
                        sizeof(plain)) == 0) {
            memcpy(secret, plain, SIGV4_SECRET_LEN);
            secret[SIGV4_SECRET_LEN] = '\0';
            OPENSSL_cleanse(plain, sizeof(plain));
            if (out != NULL) read_info(&row, out);
            ok = 1;
        } else {
            realm_error("keys: the secret of access key %s does not decrypt: the server key "
                        "file is not the key it was created with, or its row was altered",
                        row.access_key_id);
        }
    }
    if (rc == 0) OPENSSL_cleanse(&row, sizeof(row));
    return ok;
}

int realm_keys_is_active(realm_keys_t *k, const char *key_id)
{
    if (key_id == NULL) return 0;
    realm_store_key_t row;
    int rc = realm_store_key_get(k->store, key_id, 0, &row);
    int ok = rc == 0 && row.revoked_ms == 0;
    if (rc == 0) OPENSSL_cleanse(&row, sizeof(row));
    return ok;
}

int realm_keys_tenant_account(realm_keys_t *k, const char *tenant, char account_id[13])
{
    if (tenant == NULL) return 0;
    char acc[13];
    if (realm_store_tenant_get(k->store, tenant, acc) != 0) return 0;
    memcpy(account_id, acc, 13);
    return 1;
}

uint64_t realm_keys_version(realm_keys_t *k)
{
    int64_t dv = realm_store_auth_version(k->store);
    if (dv != k->data_version) {
        k->data_version = dv;
        k->version++;
    }
    return k->version;
}
