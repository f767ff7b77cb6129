/*
 * keys.c - `realm keys create|list|revoke`: tenants and their keys (see
 * cli.h, auth/keys.h).
 *
 * DESIGN: unlike the other commands these are not clients of the control
 * API: they open DATA_DIR/auth.db directly (--data-dir, else
 * $REALM_DATA_DIR, else ./realm-data, the default of `realm serve`), or
 * the PostgreSQL database of --db URL with the server key of
 * --server-key-file (as `realm serve` takes them), so they work whether or
 * not a server runs. A running server shares the file (SQLite WAL) or the
 * database and notices every change through realm_keys_version, so a
 * revocation takes effect there without a restart.
 *
 * Secrets are printed once, by create, on stdout; never on stderr, never
 * by list.
 *
 * Exit codes as in cli.h: 0, 1 (the store refused: an unknown key id, an
 * unusable server.key, a storage error), 2 (usage).
 */
#include "cli/cli.h"

#include "cli/args.h"

#include "auth/keys.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_DATA_DIR "./realm-data"
#define DATA_DIR_ENV "REALM_DATA_DIR"

/* ---- usage ------------------------------------------------------------------------ */

#define DATA_DIR_HELP                                                                              \
    "  --data-dir DIR       the server's data dir (default: $" DATA_DIR_ENV ", else\n"             \
    "                       " DEFAULT_DATA_DIR ")\n"                                               \
    "  --db URL             where the keys live, as `realm serve --db`: sqlite\n"                  \
    "                       (DATA_DIR/auth.db, the default) or postgresql://...\n"                 \
    "  --server-key-file PATH  the server key (default: DATA_DIR/server.key); with a\n"            \
    "                       postgresql:// --db, the same file every server on it uses\n"

static void usage_keys(FILE *out)
{
    fputs("Usage: realm keys <create|list|revoke> [options]\n"
          "\n"
          "Manages tenants and their keys in DATA_DIR/auth.db (or the PostgreSQL database\n"
          "of --db URL, shared by the servers using it), whether or not a server runs (a\n"
          "running server sees changes at once).\n"
          "\n"
          "  create --tenant T    a new key for tenant T (created with its account id on\n"
          "                       first use); prints the secrets, once\n"
          "  list                 every key, without secrets\n"
          "  revoke ID            revoke key ID (the key_id column of list)\n"
          "\n"
          "realm keys <command> --help shows a command's options.\n",
          out);
}

static void usage_create(FILE *out)
{
    fputs("Usage: realm keys create --tenant T [options]\n"
          "\n"
          "Creates a key for tenant T: an API key (client WebSocket) and an access key id\n"
          "with its secret access key (AWS Signature V4 on the control API). The secrets\n"
          "are shown once; Realm keeps only a hash of the API key and the secret access\n"
          "key encrypted under the server key (DATA_DIR/server.key, or --server-key-file).\n"
          "\n"
          "Options:\n"
          "  --tenant T           tenant name: 1 to 64 of A-Z a-z 0-9 _ - (required)\n"
          "  --rate N[/s]         requests per second for this key (default: the server's)\n"
          "  --burst B            requests allowed at once, >= 1 (default: the server's)\n",
          out);
    fputs(DATA_DIR_HELP, out);
    fputs("  --json               print {\"tenant\", \"key_id\", \"api_key\", \"account_id\",\n"
          "                       \"access_key_id\", \"secret_access_key\"}\n"
          "  -h, --help           show this help\n",
          out);
}

static void usage_list(FILE *out)
{
    fputs("Usage: realm keys list [options]\n"
          "\n"
          "Lists every key with its tenant, account id, access key id, limits and state.\n"
          "\n"
          "Options:\n",
          out);
    fputs(DATA_DIR_HELP, out);
    fputs(
        "  --json               print a JSON array of {\"key_id\", \"tenant\", \"account_id\",\n"
        "                       \"access_key_id\", \"rate\", \"burst\", \"revoked\", \"created\"}\n"
        "  -h, --help           show this help\n",
        out);
}

static void usage_revoke(FILE *out)
{
    fputs("Usage: realm keys revoke ID [options]\n"
          "\n"
          "Revokes key ID: its API key and access key stop working, in a running server\n"
          "too (open connections included). Revoking a revoked key changes nothing.\n"
          "\n"
          "Options:\n",
          out);
    fputs(DATA_DIR_HELP, out);
    fputs("  --json               print {\"revoked\": ID, \"tenant\": T}\n"
          "  -h, --help           show this help\n",
          out);
}

/* ---- argument parsing ------------------------------------------------------------- */

/* A positive decimal number ("10", "2.5"), with suffix allowed after it; 0, or -1. */
static int parse_positive(const char *s, const char *suffix, double *out)
{
    size_t n = strspn(s, "0123456789.");
    if (n == 0 || strspn(s, ".") == n) return -1;
    if (s[n] != '\0' && (suffix == NULL || strcmp(s + n, suffix) != 0)) return -1;
    char num[64];
    if (n >= sizeof(num)) return -1;
    memcpy(num, s, n);
    num[n] = '\0';
    errno = 0;
    char *end;
    double v = strtod(num, &end);
    if (errno != 0 || *end != '\0' || !isfinite(v) || v <= 0) return -1;
    *out = v;
    return 0;
}

static const char *resolve_data_dir(const char *flag)
{
    if (flag != NULL && *flag != '\0') return flag;
    const char *env = getenv(DATA_DIR_ENV);
    return env != NULL && *env != '\0' ? env : DEFAULT_DATA_DIR;
}

/* Where the store is: --data-dir, --db, --server-key-file (each NULL when not given). */
typedef struct {
    const char *data_dir, *db, *key_file;
} where_t;

/* 1 if argv[*i] is one of where's options (its value taken), -1 if it lacks its value, 0 if
 * it is none of them. */
static int where_opt(int argc, char **argv, int *i, where_t *w)
{
    int r;
    if ((r = realm_cli_opt_value(argc, argv, i, "--data-dir", &w->data_dir)) != 0 ||
        (r = realm_cli_opt_value(argc, argv, i, "--db", &w->db)) != 0 ||
        (r = realm_cli_opt_value(argc, argv, i, "--server-key-file", &w->key_file)) != 0)
        return r;
    return 0;
}

/* Opens the store; NULL after a message ("realm keys CMD: ...") on stderr. */
static realm_keys_t *open_store(const char *cmd, const where_t *w)
{
    char err[1024];
    realm_keys_t *k =
        realm_keys_open(resolve_data_dir(w->data_dir), w->db, w->key_file, err, sizeof(err));
    if (k == NULL) fprintf(stderr, "realm %s: %s\n", cmd, err);
    return k;
}

static void print_json(const json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2));
    if (s == NULL) abort(); /* only fails on OOM */
    printf("%s\n", s);
    free(s);
}

/* "10/s", "2.5/s", or "default" for 0. */
static void format_rate(char *out, size_t out_len, double v, const char *unit)
{
    if (v <= 0)
        snprintf(out, out_len, "default");
    else
        snprintf(out, out_len, "%g%s", v, unit);
}

/* ---- create ----------------------------------------------------------------------- */

static int keys_create(int argc, char **argv)
{
    const char *cmd = "keys create";
    const char *tenant = NULL, *rate_s = NULL, *burst_s = NULL;
    where_t w = {0};
    int is_json = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int r;
        if (realm_cli_is_help(a)) {
            usage_create(stdout);
            return 0;
        }
        if (strcmp(a, "--json") == 0) {
            is_json = 1;
        } else if ((r = realm_cli_opt_value(argc, argv, &i, "--tenant", &tenant)) != 0 ||
                   (r = realm_cli_opt_value(argc, argv, &i, "--rate", &rate_s)) != 0 ||
                   (r = realm_cli_opt_value(argc, argv, &i, "--burst", &burst_s)) != 0 ||
                   (r = where_opt(argc, argv, &i, &w)) != 0) {
            if (r < 0)
                return realm_cli_usage_error(cmd, usage_create, "option '%s' needs a value", a);
        } else if (a[0] == '-') {
            return realm_cli_usage_error(cmd, usage_create, "unknown option '%s'", a);
        } else {
            return realm_cli_usage_error(cmd, usage_create, "unexpected argument '%s'", a);
        }
    }
    if (tenant == NULL) return realm_cli_usage_error(cmd, usage_create, "missing --tenant");
    if (!realm_keys_tenant_name_is_valid(tenant))
        return realm_cli_usage_error(cmd, usage_create,
                                     "invalid tenant name '%.80s': use 1 to 64 of A-Z a-z 0-9 _ -",
                                     tenant);
    double rate = 0, burst = 0;
    if (rate_s != NULL && parse_positive(rate_s, "/s", &rate) != 0)
        return realm_cli_usage_error(cmd, usage_create,
                                     "--rate takes a positive number of requests per second "
                                     "(\"10\" or \"10/s\"), not '%.40s'",
                                     rate_s);
    if (burst_s != NULL && (parse_positive(burst_s, NULL, &burst) != 0 || burst < 1))
        return realm_cli_usage_error(cmd, usage_create, "--burst takes a number >= 1, not '%.40s'",
                                     burst_s);

    realm_keys_t *k = open_store(cmd, &w);
    if (k == NULL) return 1;
    realm_key_info_t info;
    char api_key[REALM_KEYS_API_KEY_LEN], secret[REALM_KEYS_SECRET_LEN], err[512];
    int rc = 1;
    if (realm_keys_create(k, tenant, rate, burst, &info, api_key, secret, err, sizeof(err)) != 0) {
        fprintf(stderr, "realm %s: %s\n", cmd, err);
        goto done;
    }
    if (is_json) {
        json_t *out = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "tenant", info.tenant, "key_id",
                                info.key_id, "api_key", api_key, "account_id", info.account_id,
                                "access_key_id", info.access_key_id, "secret_access_key", secret);
        print_json(out);
        json_decref(out);
    } else {
        char r[32], b[32];
        format_rate(r, sizeof(r), info.rate, "/s");
        format_rate(b, sizeof(b), info.burst, "");
        printf("created key %s for tenant %s (account %s; rate %s, burst %s)\n\n"
               "  API key            %s\n"
               "  access key id      %s\n"
               "  secret access key  %s\n\n"
               "These secrets are shown only once: store them now. Realm keeps only a hash\n"
               "of the API key and cannot show either secret again.\n",
               info.key_id, info.tenant, info.account_id, r, b, api_key, info.access_key_id,
               secret);
    }
    rc = 0;
done:
    memset(api_key, 0, sizeof(api_key));
    memset(secret, 0, sizeof(secret));
    realm_keys_close(k);
    return rc;
}

/* ---- list ------------------------------------------------------------------------- */

enum {
    COL_KEY,
    COL_TENANT,
    COL_ACCOUNT,
    COL_AKID,
    COL_RATE,
    COL_BURST,
    COL_STATE,
    COL_CREATED,
    NCOLS
};
static const char *const col_names[NCOLS] = {"KEY-ID", "TENANT", "ACCOUNT", "ACCESS-KEY-ID",
                                             "RATE",   "BURST",  "STATE",   "CREATED"};
#define CELL_LEN 80

static void fill_row(char row[NCOLS][CELL_LEN], const json_t *key)
{
    const char *s;
#define STR(col, field)                                                                            \
    s = json_string_value(json_object_get(key, field));                                            \
    snprintf(row[col], CELL_LEN, "%s", s ? s : "?")
    STR(COL_KEY, "key_id");
    STR(COL_TENANT, "tenant");
    STR(COL_ACCOUNT, "account_id");
    STR(COL_AKID, "access_key_id");
#undef STR
    format_rate(row[COL_RATE], CELL_LEN, json_number_value(json_object_get(key, "rate")), "/s");
    format_rate(row[COL_BURST], CELL_LEN, json_number_value(json_object_get(key, "burst")), "");
    snprintf(row[COL_STATE], CELL_LEN, "%s",
             json_is_true(json_object_get(key, "revoked")) ? "revoked" : "active");
    time_t t = (time_t)(json_integer_value(json_object_get(key, "created")) / 1000);
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL ||
        strftime(row[COL_CREATED], CELL_LEN, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(row[COL_CREATED], CELL_LEN, "?");
}

static void print_table(const json_t *keys)
{
    size_t n = json_array_size(keys);
    char(*rows)[NCOLS][CELL_LEN] = calloc(n + 1, sizeof(*rows));
    if (rows == NULL) abort();
    for (int c = 0; c < NCOLS; c++)
        snprintf(rows[0][c], CELL_LEN, "%s", col_names[c]);
    for (size_t i = 0; i < n; i++)
        fill_row(rows[i + 1], json_array_get(keys, i));
    int width[NCOLS] = {0};
    for (size_t i = 0; i <= n; i++)
        for (int c = 0; c < NCOLS; c++) {
            int w = (int)strlen(rows[i][c]);
            if (w > width[c]) width[c] = w;
        }
    for (size_t i = 0; i <= n; i++) {
        for (int c = 0; c < NCOLS; c++) {
            if (c == NCOLS - 1)
                printf("  %s\n", rows[i][c]); /* no trailing blanks */
            else
                printf("%s%-*s", c ? "  " : "", width[c], rows[i][c]);
        }
    }
    free(rows);
}

static int keys_list(int argc, char **argv)
{
    const char *cmd = "keys list";
    where_t w = {0};
    int is_json = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int r;
        if (realm_cli_is_help(a)) {
            usage_list(stdout);
            return 0;
        }
        if (strcmp(a, "--json") == 0) {
            is_json = 1;
        } else if ((r = where_opt(argc, argv, &i, &w)) != 0) {
            if (r < 0)
                return realm_cli_usage_error(cmd, usage_list, "option '%s' needs a value", a);
        } else if (a[0] == '-') {
            return realm_cli_usage_error(cmd, usage_list, "unknown option '%s'", a);
        } else {
            return realm_cli_usage_error(cmd, usage_list, "unexpected argument '%s'", a);
        }
    }
    realm_keys_t *k = open_store(cmd, &w);
    if (k == NULL) return 1;
    json_t *keys = realm_keys_list(k);
    realm_keys_close(k);
    if (keys == NULL) {
        fprintf(stderr, "realm %s: cannot read the keys (see the message above)\n", cmd);
        return 1;
    }
    if (is_json)
        print_json(keys);
    else if (json_array_size(keys) == 0)
        printf("no keys\n");
    else
        print_table(keys);
    json_decref(keys);
    return 0;
}

/* ---- revoke ----------------------------------------------------------------------- */

static int keys_revoke(int argc, char **argv)
{
    const char *cmd = "keys revoke";
    const char *id = NULL;
    where_t w = {0};
    int is_json = 0, no_more_opts = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int r;
        if (no_more_opts || a[0] != '-' || a[1] == '\0') {
            if (id != NULL)
                return realm_cli_usage_error(cmd, usage_revoke, "unexpected argument '%s'", a);
            id = a;
        } else if (strcmp(a, "--") == 0) {
            no_more_opts = 1;
        } else if (realm_cli_is_help(a)) {
            usage_revoke(stdout);
            return 0;
        } else if (strcmp(a, "--json") == 0) {
            is_json = 1;
        } else if ((r = where_opt(argc, argv, &i, &w)) != 0) {
            if (r < 0)
                return realm_cli_usage_error(cmd, usage_revoke, "option '%s' needs a value", a);
        } else {
            return realm_cli_usage_error(cmd, usage_revoke, "unknown option '%s'", a);
        }
    }
    if (id == NULL || *id == '\0')
        return realm_cli_usage_error(cmd, usage_revoke, "missing the key ID");

    realm_keys_t *k = open_store(cmd, &w);
    if (k == NULL) return 1;
    /* The key's tenant and state, for the message (list holds every key; they are few). */
    json_t *keys = realm_keys_list(k), *key = NULL;
    for (size_t i = 0; i < json_array_size(keys); i++) {
        json_t *e = json_array_get(keys, i);
        const char *kid = json_string_value(json_object_get(e, "key_id"));
        if (kid != NULL && strcmp(kid, id) == 0) key = e;
    }
    int was_revoked = json_is_true(json_object_get(key, "revoked"));
    char err[512];
    int rc = 1;
    if (realm_keys_revoke(k, id, err, sizeof(err)) != 0) {
        fprintf(stderr, "realm %s: %s\n", cmd, err);
        goto done;
    }
    const char *tenant = json_string_value(json_object_get(key, "tenant"));
    if (tenant == NULL) tenant = "?";
    if (is_json) {
        json_t *out = json_pack("{s:s, s:s}", "revoked", id, "tenant", tenant);
        print_json(out);
        json_decref(out);
    } else if (was_revoked) {
        printf("key %s (tenant %s) was already revoked\n", id, tenant);
    } else {
        printf("revoked key %s (tenant %s)\n", id, tenant);
    }
    rc = 0;
done:
    json_decref(keys);
    realm_keys_close(k);
    return rc;
}

/* ---- entry ------------------------------------------------------------------------ */

int realm_cli_keys_main(int argc, char **argv)
{
    if (argc < 1) return realm_cli_usage_error("keys", usage_keys, "missing a command");
    const char *sub = argv[0];
    if (realm_cli_is_help(sub) || strcmp(sub, "help") == 0) {
        usage_keys(stdout);
        return 0;
    }
    if (strcmp(sub, "create") == 0) return keys_create(argc - 1, argv + 1);
    if (strcmp(sub, "list") == 0) return keys_list(argc - 1, argv + 1);
    if (strcmp(sub, "revoke") == 0) return keys_revoke(argc - 1, argv + 1);
    return realm_cli_usage_error("keys", usage_keys, "unknown command '%s'", sub);
}
