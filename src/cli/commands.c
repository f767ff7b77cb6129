/*
 * commands.c - `realm deploy`, `realm functions`, `realm delete` (see cli.h).
 *
 * DESIGN: each command parses its arguments, resolves the endpoint, makes
 * one or more blocking requests with the client in cli/http.c and renders
 * the answer, as a line or a table for people or as JSON (--json) for
 * scripts. Requests and answers are the control API's Lambda shapes
 * (docs/control-api.md), built and read with jansson.
 *
 * deploy is "create, or update if it exists": CreateFunction first; on 409
 * ResourceConflictException, UpdateFunctionCode then
 * UpdateFunctionConfiguration with only the options given on the command
 * line (AWS keeps what an update leaves out; --env replaces the whole
 * variable set, as Environment does on AWS). AWS refuses a configuration
 * update while a code update is still InProgress, so between the two we
 * poll GetFunctionConfiguration until LastUpdateStatus settles (Realm
 * answers UpdateFunctionCode only after unpacking, so this normally costs
 * nothing).
 *
 * Errors: an API error is printed as "realm CMD: TYPE: message" with TYPE
 * from the x-amzn-ErrorType header (AWS may append ":<uri>" to it; that
 * part is dropped) and message from the JSON body; exit 1. Usage errors
 * print the message and the command's usage to stderr; exit 2.
 */
#include "cli/cli.h"

#include "cli/args.h"

#include "base/alloc.h"
#include "base/buf.h"
#include "cli/evdecode.h"
#include "cli/http.h"
#include "pkg/pkg.h"
#include "runtimes/runtimes.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_ENDPOINT "http://127.0.0.1:9000"
#define ENDPOINT_ENV "REALM_ENDPOINT"
#define REQUEST_TIMEOUT_MS 120000             /* one request, connect to last byte */
#define SETTLE_TIMEOUT_MS 120000              /* waiting for LastUpdateStatus to settle */
#define MAX_PACKAGE_BYTES ((size_t)256 << 20) /* a zip we are willing to base64 */
#define PAGE_SIZE "50"
#define MAX_PAGES 100000
#define FUNCTIONS_PATH "/2015-03-31/functions"

typedef struct {
    const char *cmd;         /* "deploy", ...: the prefix of every message */
    realm_cli_endpoint_t ep; /* where the control API is */
    int is_json;             /* --json */
} ctx_t;

/* ---- usage ------------------------------------------------------------------------ */

#define ENDPOINT_HELP                                                                              \
    "  --endpoint URL       the control API (default: $" ENDPOINT_ENV ", else\n"                   \
    "                       " DEFAULT_ENDPOINT ")\n"

/* "--runtime RUNTIME" and the runtime table's names, wrapped under the option's text. */
static void usage_runtimes(FILE *out)
{
    /* Names start in column 23, as every option's text. */
    size_t col = (size_t)fprintf(out, "%-22s", "  --runtime RUNTIME");
    const realm_runtimes_entry_t *rt;
    for (size_t i = 0; (rt = realm_runtimes_at(i)) != NULL; i++) {
        size_t w =
            1 + strlen(rt->name) + (realm_runtimes_at(i + 1) ? 1 : 11); /* ", " or " (required)" */
        if (i && col + w > 80) col = (size_t)fprintf(out, "\n%-22s", "") - 1;
        col += (size_t)fprintf(out, " %s%s", rt->name, realm_runtimes_at(i + 1) ? "," : "");
    }
    fputs(" (required)\n", out);
}

static void usage_deploy(FILE *out)
{
    fputs("Usage: realm deploy DIR|ZIP --name NAME --runtime RUNTIME [options]\n"
          "\n"
          "Creates function NAME from a directory (zipped deterministically: the same tree\n"
          "gives the same CodeSha256) or a .zip file. If NAME exists, updates its code and\n"
          "the options given here; options not given stay as they are.\n"
          "\n"
          "Options:\n"
          "  --name NAME          function name (required)\n",
          out);
    usage_runtimes(out);
    fputs("  --handler HANDLER    e.g. index.handler (required for Node and Python)\n"
          "  --env KEY=VALUE      an environment variable; repeat for more (on update, the\n"
          "                       variables given replace all the old ones)\n"
          "  --memory MB          memory size (128-10240)\n"
          "  --timeout SECONDS    timeout (1-900)\n"
          "  --description TEXT   description\n",
          out);
    fputs(ENDPOINT_HELP, out);
    fputs("  --json               print the resulting FunctionConfiguration as JSON\n"
          "  -h, --help           show this help\n",
          out);
}

static void usage_functions(FILE *out)
{
    fputs("Usage: realm functions [options]\n"
          "\n"
          "Lists the functions the control API knows.\n"
          "\n"
          "Options:\n",
          out);
    fputs(ENDPOINT_HELP, out);
    fputs("  --json               print a JSON array of FunctionConfigurations\n"
          "  -h, --help           show this help\n",
          out);
}

static void usage_delete(FILE *out)
{
    fputs("Usage: realm delete NAME [options]\n"
          "\n"
          "Deletes function NAME with all its versions and aliases.\n"
          "\n"
          "Options:\n",
          out);
    fputs(ENDPOINT_HELP, out);
    fputs("  --json               print {\"deleted\": NAME}\n"
          "  -h, --help           show this help\n",
          out);
}

/* ---- argument parsing ------------------------------------------------------------- */

/* Parses a non-negative decimal int ("128"); 0 or -1. */
static int parse_int(const char *s, int *out)
{
    if (*s < '0' || *s > '9') return -1;
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > INT_MAX) return -1;
    *out = (int)v;
    return 0;
}

/* --endpoint, else $REALM_ENDPOINT, else the default. 0, or 2 after a message. */
static int resolve_endpoint(ctx_t *c, const char *flag)
{
    const char *url = flag;
    if (url == NULL) url = getenv(ENDPOINT_ENV);
    if (url == NULL || *url == '\0') url = DEFAULT_ENDPOINT;
    char err[512];
    if (realm_cli_endpoint_parse(url, &c->ep, err, sizeof(err)) != 0) {
        fprintf(stderr, "realm %s: %s\n", c->cmd, err);
        return 2;
    }
    return 0;
}

/* ---- requests --------------------------------------------------------------------- */

#define ALLOW_CONFLICT 1 /* call(): hand a 409 ResourceConflictException back quietly */

static void print_json(const json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2));
    if (s == NULL) abort(); /* only fails on OOM */
    printf("%s\n", s);
    free(s);
}

/* Copies s into out with C0 controls and DEL replaced: server text is not terminal input. */
static void sanitize(char *out, size_t out_len, const char *s, size_t len)
{
    size_t n = len < out_len - 1 ? len : out_len - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        out[i] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
    }
    out[n] = '\0';
}

static void report_api_error(const ctx_t *c, const realm_cli_http_res_t *res)
{
    char type[128], message[512];
    if (res->error_type != NULL && *res->error_type != '\0') {
        sanitize(type, sizeof(type), res->error_type, strcspn(res->error_type, ":"));
    } else {
        snprintf(type, sizeof(type), "HTTP %d", res->status);
    }
    json_t *body = json_loadb(res->body.data ? res->body.data : "", res->body.len, 0, NULL);
    const char *msg = json_string_value(json_object_get(body, "message"));
    if (msg == NULL) msg = json_string_value(json_object_get(body, "Message"));
    if (msg != NULL) {
        sanitize(message, sizeof(message), msg, strlen(msg));
    } else if (res->body.len > 0) {
        size_t len = res->body.len;
        while (len > 0 && (res->body.data[len - 1] == '\n' || res->body.data[len - 1] == '\r'))
            len--;
        sanitize(message, sizeof(message), res->body.data, len);
    } else {
        snprintf(message, sizeof(message), "(no message)");
    }
    fprintf(stderr, "realm %s: %s: %s\n", c->cmd, type, message);
    json_decref(body);
}

/*
 * METHOD path with body (borrowed; NULL for none). Returns 0 when the
 * status is want and sets *out to the parsed JSON answer (new reference;
 * NULL for an empty body). With ALLOW_CONFLICT, a 409
 * ResourceConflictException returns 409 without a message. Anything else
 * prints a message and returns 1.
 */
static int call(const ctx_t *c, const char *method, const char *path, const json_t *body, int want,
                int flags, json_t **out)
{
    *out = NULL;
    char *text = NULL;
    if (body != NULL) {
        text = json_dumps(body, JSON_COMPACT);
        if (text == NULL) abort(); /* only fails on OOM */
    }
    realm_cli_http_res_t res;
    char err[512];
    int rc = realm_cli_http_request(&c->ep, method, path, text, text ? strlen(text) : 0,
                                    REQUEST_TIMEOUT_MS, &res, err, sizeof(err));
    free(text);
    if (rc == REALM_CLI_HTTP_ECONNECT) {
        fprintf(stderr, "realm %s: cannot reach the control API at %s: %s\n", c->cmd, c->ep.url,
                err);
        rc = 1;
        goto done;
    }
    if (rc != 0) {
        fprintf(stderr, "realm %s: control API at %s: %s\n", c->cmd, c->ep.url, err);
        rc = 1;
        goto done;
    }
    if (res.status != want) {
        if ((flags & ALLOW_CONFLICT) && res.status == 409 && res.error_type != NULL &&
            strncmp(res.error_type, "ResourceConflictException",
                    strlen("ResourceConflictException")) == 0) {
            rc = 409;
            goto done;
        }
        report_api_error(c, &res);
        rc = 1;
        goto done;
    }
    if (res.body.len > 0) {
        json_error_t jerr;
        *out = json_loadb(res.body.data, res.body.len, 0, &jerr);
        if (*out == NULL) {
            fprintf(stderr, "realm %s: control API at %s: the answer is not JSON: %s\n", c->cmd,
                    c->ep.url, jerr.text);
            rc = 1;
            goto done;
        }
    }
    rc = 0;
done:
    realm_cli_http_res_dispose(&res);
    return rc;
}

/* FUNCTIONS_PATH "/" + the encoded name + suffix, into path. */
static void function_path(realm_buf_t *path, const char *name, const char *suffix)
{
    realm_buf_appends(path, FUNCTIONS_PATH "/");
    realm_cli_url_encode(path, name);
    realm_buf_appends(path, suffix);
}

/* ---- formatting ------------------------------------------------------------------- */

static void human_size(char *out, size_t out_len, json_int_t bytes, const char *sep)
{
    static const char *units[] = {"KiB", "MiB", "GiB", "TiB"};
    if (bytes < 1024) {
        snprintf(out, out_len, "%lld%sB", (long long)bytes, sep);
        return;
    }
    double v = (double)bytes / 1024;
    size_t u = 0;
    while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
        v /= 1024;
        u++;
    }
    snprintf(out, out_len, "%.1f%s%s", v, sep, units[u]);
}

static const char *str_field(const json_t *obj, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : dflt;
}

/* ---- deploy ----------------------------------------------------------------------- */

typedef struct {
    const char *source; /* DIR or ZIP */
    const char *name;
    const char *runtime;
    const char *handler;     /* NULL when not given */
    const char *description; /* NULL when not given */
    json_t *env;             /* owned; NULL unless --env was given */
    int memory;              /* -1 when not given */
    int timeout;             /* -1 when not given */
} deploy_opts_t;

/* Reads a zip file, or zips a directory, into zip. 0, or -1 with a message in err. */
static int load_package(const char *source, realm_buf_t *zip, char *err, size_t err_len)
{
    struct stat st;
    if (stat(source, &st) != 0) {
        snprintf(err, err_len, "cannot read '%s': %s", source, strerror(errno));
        return -1;
    }
    if (S_ISDIR(st.st_mode)) {
        char zerr[512];
        if (realm_pkg_zip_dir(source, zip, zerr, sizeof(zerr)) != 0) {
            snprintf(err, err_len, "cannot zip '%s': %s", source, zerr);
            return -1;
        }
        return 0;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, err_len, "'%s' is neither a directory nor a zip file", source);
        return -1;
    }
    int fd = open(source, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, err_len, "cannot read '%s': %s", source, strerror(errno));
        return -1;
    }
    char chunk[65536];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            snprintf(err, err_len, "cannot read '%s': %s", source, strerror(errno));
            close(fd);
            return -1;
        }
        if (n == 0) break;
        if (zip->len + (size_t)n > MAX_PACKAGE_BYTES) {
            snprintf(err, err_len, "'%s' is larger than %zu MiB", source, MAX_PACKAGE_BYTES >> 20);
            close(fd);
            return -1;
        }
        realm_buf_append(zip, chunk, (size_t)n);
    }
    close(fd);
    /* A local file header, or the end record of an empty archive. */
    if (zip->len < 4 || memcmp(zip->data, "PK", 2) != 0 ||
        (memcmp(zip->data + 2, "\3\4", 2) != 0 && memcmp(zip->data + 2, "\5\6", 2) != 0)) {
        snprintf(err, err_len, "'%s' is not a zip file (give a directory or a .zip)", source);
        return -1;
    }
    return 0;
}

/* Base64 of the zip as a new JSON string, or NULL with a message in err. */
static json_t *zip_base64(const realm_buf_t *zip, char *err, size_t err_len)
{
    if (zip->len > MAX_PACKAGE_BYTES) {
        snprintf(err, err_len, "the package is larger than %zu MiB", MAX_PACKAGE_BYTES >> 20);
        return NULL;
    }
    size_t b64_cap = 4 * ((zip->len + 2) / 3) + 1;
    char *b64 = realm_malloc(b64_cap);
    int n = EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)zip->data, (int)zip->len);
    json_t *s = json_stringn_nocheck(b64, (size_t)n);
    free(b64);
    if (s == NULL) abort(); /* only fails on OOM */
    return s;
}

/* Adds the configuration options given on the command line to obj. */
static void add_config(json_t *obj, const deploy_opts_t *o)
{
    json_object_set_new(obj, "Runtime", json_string(o->runtime));
    if (o->handler) json_object_set_new(obj, "Handler", json_string(o->handler));
    if (o->memory >= 0) json_object_set_new(obj, "MemorySize", json_integer(o->memory));
    if (o->timeout >= 0) json_object_set_new(obj, "Timeout", json_integer(o->timeout));
    if (o->description) json_object_set_new(obj, "Description", json_string(o->description));
    if (o->env) json_object_set_new(obj, "Environment", json_pack("{s:O}", "Variables", o->env));
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Waits while *config (owned; replaced by fresher answers) says a code
 * update is InProgress. 0, or 1 after a message.
 */
static int wait_update_settled(const ctx_t *c, const char *name, json_t **config)
{
    long long deadline = mono_ms() + SETTLE_TIMEOUT_MS;
    realm_buf_t path;
    realm_buf_init(&path);
    function_path(&path, name, "/configuration");
    int rc = 0;
    while (strcmp(str_field(*config, "LastUpdateStatus", ""), "InProgress") == 0) {
        if (mono_ms() > deadline) {
            fprintf(stderr, "realm %s: the code update of '%s' is still in progress after %d s\n",
                    c->cmd, name, SETTLE_TIMEOUT_MS / 1000);
            rc = 1;
            break;
        }
        sleep_ms(200);
        json_t *fresh;
        if (call(c, "GET", path.data, NULL, 200, 0, &fresh) != 0) {
            rc = 1;
            break;
        }
        if (fresh == NULL) break;
        json_decref(*config);
        *config = fresh;
    }
    if (rc == 0 && strcmp(str_field(*config, "LastUpdateStatus", ""), "Failed") == 0) {
        fprintf(stderr, "realm %s: the code update of '%s' failed: %s\n", c->cmd, name,
                str_field(*config, "LastUpdateStatusReason", "(no reason given)"));
        rc = 1;
    }
    realm_buf_dispose(&path);
    return rc;
}

static int deploy_parse(ctx_t *c, int argc, char **argv, deploy_opts_t *o)
{
    const char *endpoint = NULL;
    int no_more_opts = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (no_more_opts || a[0] != '-' || a[1] == '\0') {
            if (o->source != NULL)
                return realm_cli_usage_error(c->cmd, usage_deploy, "unexpected argument '%s'", a);
            o->source = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            no_more_opts = 1;
            continue;
        }
        if (realm_cli_is_help(a)) {
            usage_deploy(stdout);
            return 1;
        }
        if (strcmp(a, "--json") == 0) {
            c->is_json = 1;
            continue;
        }
        static const char *const valued[] = {"--name",     "--runtime",    "--handler",
                                             "--env",      "--memory",     "--timeout",
                                             "--endpoint", "--description"};
        size_t k;
        int r = 0;
        for (k = 0; k < sizeof(valued) / sizeof(valued[0]); k++)
            if ((r = realm_cli_opt_value(argc, argv, &i, valued[k], &v)) != 0) break;
        if (r == 0) return realm_cli_usage_error(c->cmd, usage_deploy, "unknown option '%s'", a);
        if (r < 0)
            return realm_cli_usage_error(c->cmd, usage_deploy, "option '%s' needs a value", a);
        const char *opt = valued[k];
        if (strcmp(opt, "--name") == 0) {
            o->name = v;
        } else if (strcmp(opt, "--runtime") == 0) {
            o->runtime = v;
        } else if (strcmp(opt, "--handler") == 0) {
            o->handler = v;
        } else if (strcmp(opt, "--description") == 0) {
            o->description = v;
        } else if (strcmp(opt, "--endpoint") == 0) {
            endpoint = v;
        } else if (strcmp(opt, "--env") == 0) {
            const char *eq = strchr(v, '=');
            if (eq == NULL || eq == v)
                return realm_cli_usage_error(c->cmd, usage_deploy,
                                             "--env wants KEY=VALUE with a non-empty KEY, not '%s'",
                                             v);
            if (o->env == NULL) o->env = json_object();
            char *key = realm_strndup(v, (size_t)(eq - v));
            json_t *val = json_string(eq + 1);
            if (val == NULL) {
                free(key);
                return realm_cli_usage_error(c->cmd, usage_deploy, "--env '%s' is not valid UTF-8",
                                             v);
            }
            json_object_set_new(o->env, key, val);
            free(key);
        } else if (strcmp(opt, "--memory") == 0) {
            if (parse_int(v, &o->memory) != 0)
                return realm_cli_usage_error(c->cmd, usage_deploy,
                                             "--memory wants a number of MB, not '%s'", v);
        } else { /* --timeout */
            if (parse_int(v, &o->timeout) != 0)
                return realm_cli_usage_error(c->cmd, usage_deploy,
                                             "--timeout wants a number of seconds, not '%s'", v);
        }
    }
    if (o->source == NULL)
        return realm_cli_usage_error(c->cmd, usage_deploy, "missing the DIR or ZIP to deploy");
    if (o->name == NULL || *o->name == '\0')
        return realm_cli_usage_error(c->cmd, usage_deploy, "missing --name");
    if (o->runtime == NULL || *o->runtime == '\0')
        return realm_cli_usage_error(c->cmd, usage_deploy, "missing --runtime");
    /* Strings reach jansson, which wants UTF-8: say so here rather than abort later. */
    const char *texts[] = {o->name, o->runtime, o->handler, o->description};
    for (size_t k = 0; k < sizeof(texts) / sizeof(texts[0]); k++) {
        json_t *t = texts[k] ? json_string(texts[k]) : NULL;
        if (texts[k] && t == NULL)
            return realm_cli_usage_error(c->cmd, usage_deploy, "'%s' is not valid UTF-8", texts[k]);
        json_decref(t);
    }
    return resolve_endpoint(c, endpoint);
}

static int cmd_deploy(ctx_t *c, int argc, char **argv)
{
    deploy_opts_t o = {.memory = -1, .timeout = -1};
    realm_buf_t zip, path;
    realm_buf_init(&zip);
    realm_buf_init(&path);
    json_t *zipfile = NULL, *req = NULL, *config = NULL, *ans = NULL;
    const char *verb = "created";
    char err[1024];

    int rc = deploy_parse(c, argc, argv, &o);
    if (rc != 0) {
        if (rc == 1) rc = 0; /* --help */
        goto done;
    }
    rc = 1;
    if (load_package(o.source, &zip, err, sizeof(err)) != 0 ||
        (zipfile = zip_base64(&zip, err, sizeof(err))) == NULL) {
        fprintf(stderr, "realm %s: %s\n", c->cmd, err);
        goto done;
    }

    /* CreateFunction. */
    req = json_object();
    json_object_set_new(req, "FunctionName", json_string(o.name));
    add_config(req, &o);
    json_object_set_new(req, "Code", json_pack("{s:O}", "ZipFile", zipfile));
    int st = call(c, "POST", FUNCTIONS_PATH, req, 201, ALLOW_CONFLICT, &config);
    json_decref(req);
    req = NULL;
    if (st == 409) {
        /* It exists: UpdateFunctionCode, then UpdateFunctionConfiguration. */
        verb = "updated";
        function_path(&path, o.name, "/code");
        req = json_pack("{s:O}", "ZipFile", zipfile);
        if (call(c, "PUT", path.data, req, 200, 0, &config) != 0) goto done;
        if (config != NULL && wait_update_settled(c, o.name, &config) != 0) goto done;
        json_decref(req);
        req = json_object();
        add_config(req, &o);
        realm_buf_reset(&path);
        function_path(&path, o.name, "/configuration");
        if (call(c, "PUT", path.data, req, 200, 0, &ans) != 0) goto done;
        json_decref(config);
        config = ans;
        ans = NULL;
    } else if (st != 0) {
        goto done;
    }
    if (!json_is_object(config)) {
        fprintf(stderr, "realm %s: control API at %s: the answer is not a FunctionConfiguration\n",
                c->cmd, c->ep.url);
        goto done;
    }

    if (c->is_json) {
        print_json(config);
    } else {
        char size[32];
        const char *handler = str_field(config, "Handler", "");
        human_size(size, sizeof(size), json_integer_value(json_object_get(config, "CodeSize")),
                   " ");
        printf("%s %s (%s%s%s): %s, sha256 %s\n", verb, str_field(config, "FunctionName", o.name),
               str_field(config, "Runtime", "?"), *handler ? ", " : "", handler, size,
               str_field(config, "CodeSha256", "?"));
    }
    rc = 0;

done:
    json_decref(ans);
    json_decref(config);
    json_decref(req);
    json_decref(zipfile);
    json_decref(o.env);
    realm_buf_dispose(&zip);
    realm_buf_dispose(&path);
    return rc;
}

/* ---- functions -------------------------------------------------------------------- */

enum { COL_NAME, COL_RUNTIME, COL_HANDLER, COL_MEMORY, COL_TIMEOUT, COL_SIZE, COL_MODIFIED, NCOLS };

static const char *const col_names[NCOLS] = {"NAME",    "RUNTIME", "HANDLER",      "MEMORY",
                                             "TIMEOUT", "SIZE",    "LAST-MODIFIED"};
static const int col_right[NCOLS] = {0, 0, 0, 1, 1, 1, 0}; /* numbers align right */

#define CELL_LEN 160

static void fill_row(char row[NCOLS][CELL_LEN], const json_t *f)
{
    const char *s;
    s = str_field(f, "FunctionName", "?");
    sanitize(row[COL_NAME], CELL_LEN, s, strlen(s));
    s = str_field(f, "Runtime", "-");
    sanitize(row[COL_RUNTIME], CELL_LEN, s, strlen(s));
    s = str_field(f, "Handler", "");
    if (*s == '\0') s = "-";
    sanitize(row[COL_HANDLER], CELL_LEN, s, strlen(s));
    snprintf(row[COL_MEMORY], CELL_LEN, "%lldMB",
             (long long)json_integer_value(json_object_get(f, "MemorySize")));
    snprintf(row[COL_TIMEOUT], CELL_LEN, "%llds",
             (long long)json_integer_value(json_object_get(f, "Timeout")));
    human_size(row[COL_SIZE], CELL_LEN, json_integer_value(json_object_get(f, "CodeSize")), "");
    s = str_field(f, "LastModified", "-");
    sanitize(row[COL_MODIFIED], CELL_LEN, s, strlen(s));
}

static void print_table(const json_t *functions)
{
    size_t n = json_array_size(functions);
    char(*rows)[NCOLS][CELL_LEN] = realm_calloc(n + 1, sizeof(*rows));
    for (int k = 0; k < NCOLS; k++)
        snprintf(rows[0][k], CELL_LEN, "%s", col_names[k]);
    for (size_t i = 0; i < n; i++)
        fill_row(rows[i + 1], json_array_get(functions, i));
    int width[NCOLS] = {0};
    for (size_t i = 0; i <= n; i++)
        for (int k = 0; k < NCOLS; k++) {
            int w = (int)strlen(rows[i][k]);
            if (w > width[k]) width[k] = w;
        }
    for (size_t i = 0; i <= n; i++) {
        for (int k = 0; k < NCOLS; k++) {
            const char *sep = k ? "  " : "";
            if (k == NCOLS - 1)
                printf("%s%s", sep, rows[i][k]); /* no trailing blanks */
            else if (col_right[k])
                printf("%s%*s", sep, width[k], rows[i][k]);
            else
                printf("%s%-*s", sep, width[k], rows[i][k]);
        }
        printf("\n");
    }
    free(rows);
}

static int cmd_functions(ctx_t *c, int argc, char **argv)
{
    const char *endpoint = NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int r;
        if (realm_cli_is_help(a)) {
            usage_functions(stdout);
            return 0;
        }
        if (strcmp(a, "--json") == 0) {
            c->is_json = 1;
        } else if ((r = realm_cli_opt_value(argc, argv, &i, "--endpoint", &endpoint)) != 0) {
            if (r < 0)
                return realm_cli_usage_error(c->cmd, usage_functions, "option '%s' needs a value",
                                             a);
        } else if (a[0] == '-') {
            return realm_cli_usage_error(c->cmd, usage_functions, "unknown option '%s'", a);
        } else {
            return realm_cli_usage_error(c->cmd, usage_functions, "unexpected argument '%s'", a);
        }
    }
    int rc = resolve_endpoint(c, endpoint);
    if (rc != 0) return rc;

    /* ListFunctions, page after page, following NextMarker. */
    json_t *all = json_array();
    char *marker = NULL;
    realm_buf_t path;
    realm_buf_init(&path);
    rc = 1;
    for (int page = 0;; page++) {
        if (page == MAX_PAGES) {
            fprintf(stderr, "realm %s: more than %d pages of functions; giving up\n", c->cmd,
                    MAX_PAGES);
            goto done;
        }
        realm_buf_reset(&path);
        realm_buf_appends(&path, FUNCTIONS_PATH "/?MaxItems=" PAGE_SIZE);
        if (marker) {
            realm_buf_appends(&path, "&Marker=");
            realm_cli_url_encode(&path, marker);
        }
        json_t *ans;
        if (call(c, "GET", path.data, NULL, 200, 0, &ans) != 0) goto done;
        json_t *list = json_object_get(ans, "Functions");
        if (!json_is_array(list)) {
            fprintf(stderr, "realm %s: control API at %s: the answer has no Functions list\n",
                    c->cmd, c->ep.url);
            json_decref(ans);
            goto done;
        }
        json_array_extend(all, list);
        const char *next = str_field(ans, "NextMarker", "");
        if (*next == '\0') {
            json_decref(ans);
            break;
        }
        if (marker && strcmp(marker, next) == 0) {
            fprintf(stderr, "realm %s: control API at %s: the same NextMarker came back twice\n",
                    c->cmd, c->ep.url);
            json_decref(ans);
            goto done;
        }
        free(marker);
        marker = realm_strdup(next);
        json_decref(ans);
    }

    if (c->is_json)
        print_json(all);
    else if (json_array_size(all) == 0)
        printf("no functions\n");
    else
        print_table(all);
    rc = 0;
done:
    free(marker);
    realm_buf_dispose(&path);
    json_decref(all);
    return rc;
}

/* ---- delete ----------------------------------------------------------------------- */

static int cmd_delete(ctx_t *c, int argc, char **argv)
{
    const char *endpoint = NULL, *name = NULL;
    int no_more_opts = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int r;
        if (no_more_opts || a[0] != '-' || a[1] == '\0') {
            if (name != NULL)
                return realm_cli_usage_error(c->cmd, usage_delete, "unexpected argument '%s'", a);
            name = a;
        } else if (strcmp(a, "--") == 0) {
            no_more_opts = 1;
        } else if (realm_cli_is_help(a)) {
            usage_delete(stdout);
            return 0;
        } else if (strcmp(a, "--json") == 0) {
            c->is_json = 1;
        } else if ((r = realm_cli_opt_value(argc, argv, &i, "--endpoint", &endpoint)) != 0) {
            if (r < 0)
                return realm_cli_usage_error(c->cmd, usage_delete, "option '%s' needs a value", a);
        } else {
            return realm_cli_usage_error(c->cmd, usage_delete, "unknown option '%s'", a);
        }
    }
    if (name == NULL || *name == '\0')
        return realm_cli_usage_error(c->cmd, usage_delete, "missing the NAME of the function");
    json_t *jname = json_string(name);
    if (jname == NULL)
        return realm_cli_usage_error(c->cmd, usage_delete, "'%s' is not valid UTF-8", name);
    int rc = resolve_endpoint(c, endpoint);
    if (rc != 0) {
        json_decref(jname);
        return rc;
    }

    realm_buf_t path;
    realm_buf_init(&path);
    function_path(&path, name, "");
    json_t *ans = NULL;
    rc = call(c, "DELETE", path.data, NULL, 204, 0, &ans);
    if (rc == 0) {
        if (c->is_json) {
            json_t *out = json_pack("{s:O}", "deleted", jname);
            print_json(out);
            json_decref(out);
        } else {
            char clean[256];
            sanitize(clean, sizeof(clean), name, strlen(name));
            printf("deleted %s\n", clean);
        }
    }
    json_decref(ans);
    json_decref(jname);
    realm_buf_dispose(&path);
    return rc;
}

/* ---- logs and invoke ------------------------------------------------------------- */

static void usage_logs(FILE *out)
{
    fputs("Usage: realm logs NAME [--tail BYTES] [options]\n"
          "\n"
          "Prints the end of function NAME's log: its output and the START, END and REPORT\n"
          "lines of each invocation (64 KiB unless --tail says otherwise).\n"
          "\n"
          "Options:\n",
          out);
    fputs(ENDPOINT_HELP, out);
}

static void usage_invoke(FILE *out)
{
    fputs("Usage: realm invoke NAME [--payload JSON] [--qualifier Q] [--no-stream] [options]\n"
          "\n"
          "Invokes function NAME and prints its answer: a response-streaming function's\n"
          "chunks as they arrive (InvokeWithResponseStream); --no-stream waits for the\n"
          "whole answer (Invoke). Exits 1 when the function failed (its error is printed\n"
          "on stderr).\n"
          "\n"
          "Options:\n",
          out);
    fputs(ENDPOINT_HELP, out);
}

/* A raw GET or POST of the control API; prints the body. want: the expected status. */
static int raw_request(ctx_t *c, const char *method, const char *path, const char *body, int want,
                       int *function_error)
{
    realm_cli_http_res_t res;
    char err[512];
    int rc = realm_cli_http_request(&c->ep, method, path, body, body ? strlen(body) : 0,
                                    REQUEST_TIMEOUT_MS, &res, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "realm %s: control API at %s: %s\n", c->cmd, c->ep.url, err);
        return 1;
    }
    if (res.status != want) {
        report_api_error(c, &res);
        realm_cli_http_res_dispose(&res);
        return 1;
    }
    /* A function error comes back as 200 with the error as the body. */
    json_t *j = function_error ? json_loadb(res.body.data, res.body.len, 0, NULL) : NULL;
    if (j && json_object_get(j, "errorType") && json_object_get(j, "errorMessage")) {
        *function_error = 1;
        fprintf(stderr, "%.*s\n", (int)res.body.len, res.body.data);
    } else if (res.body.len) {
        fwrite(res.body.data, 1, res.body.len, stdout);
        if (res.body.data[res.body.len - 1] != '\n' && function_error) fputc('\n', stdout);
    }
    json_decref(j);
    realm_cli_http_res_dispose(&res);
    return 0;
}

/* realm invoke's streamed answer: each PayloadChunk printed as it arrives. */
typedef struct {
    realm_cli_evdecode_t dec;
    int is_line_end; /* nothing printed yet, or the last byte was a newline */
    int is_complete; /* InvokeComplete came */
    int failed;      /* the function (or the stream) failed: exit 1 */
    char err[256];
} printer_t;

static int on_stream_event(const char *type, const char *mtype, const void *p, size_t len,
                           void *data)
{
    printer_t *pr = data;
    if (strcmp(mtype, "event") != 0) { /* an exception message ends the stream */
        char clean[512];
        sanitize(clean, sizeof(clean), p, len);
        fprintf(stderr, "realm invoke: %s: %s\n", type[0] ? type : mtype, clean);
        pr->failed = pr->is_complete = 1;
    } else if (strcmp(type, "PayloadChunk") == 0 && len) {
        fwrite(p, 1, len, stdout);
        fflush(stdout);
        pr->is_line_end = ((const char *)p)[len - 1] == '\n';
    } else if (strcmp(type, "InvokeComplete") == 0) {
        pr->is_complete = 1;
        json_t *j = json_loadb(p, len, 0, NULL);
        const char *code = json_string_value(json_object_get(j, "ErrorCode"));
        if (code) { /* the function's error, in the shape Invoke gives it */
            const char *details = json_string_value(json_object_get(j, "ErrorDetails"));
            json_t *e =
                json_pack("{s:s, s:s}", "errorType", code, "errorMessage", details ? details : "");
            char *text = json_dumps(e, JSON_COMPACT);
            fprintf(stderr, "%s\n", text);
            free(text);
            json_decref(e);
            pr->failed = 1;
        }
        json_decref(j);
    }
    return 0;
}

static int on_stream_body(const char *bytes, size_t len, void *data)
{
    printer_t *pr = data;
    return realm_cli_evdecode_feed(&pr->dec, bytes, len, on_stream_event, pr, pr->err,
                                   sizeof(pr->err)) < 0;
}

static int stream_invoke(ctx_t *c, const char *path, const char *payload)
{
    printer_t pr = {.is_line_end = 1};
    realm_cli_evdecode_init(&pr.dec);
    realm_cli_http_res_t res;
    char err[512];
    int rc = realm_cli_http_stream(&c->ep, "POST", path, payload, strlen(payload),
                                   REQUEST_TIMEOUT_MS, on_stream_body, &pr, &res, err, sizeof(err));
    if (rc == 0 && res.status != 200) {
        report_api_error(c, &res);
        rc = 1;
    } else if (rc != 0 || !pr.is_complete) {
        fprintf(stderr, "realm %s: control API at %s: %s\n", c->cmd, c->ep.url,
                pr.err[0] ? pr.err
                : rc != 0 ? err
                          : "the stream ended before the function did");
        rc = 1;
    } else {
        rc = pr.failed;
    }
    if (!pr.is_line_end) fputc('\n', stdout);
    realm_cli_evdecode_dispose(&pr.dec);
    realm_cli_http_res_dispose(&res);
    return rc;
}

static int cmd_logs_or_invoke(ctx_t *c, int argc, char **argv, int is_invoke)
{
    void (*usage)(FILE *) = is_invoke ? usage_invoke : usage_logs;
    const char *endpoint = NULL, *name = NULL, *tail = NULL, *payload = NULL, *qualifier = NULL;
    int is_no_stream = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int r;
        if (a[0] != '-' || a[1] == '\0') {
            if (name != NULL)
                return realm_cli_usage_error(c->cmd, usage, "unexpected argument '%s'", a);
            name = a;
        } else if (is_invoke && strcmp(a, "--no-stream") == 0) {
            is_no_stream = 1;
        } else if (realm_cli_is_help(a)) {
            usage(stdout);
            return 0;
        } else if ((r = realm_cli_opt_value(argc, argv, &i, "--endpoint", &endpoint)) != 0 ||
                   (!is_invoke &&
                    (r = realm_cli_opt_value(argc, argv, &i, "--tail", &tail)) != 0) ||
                   (is_invoke &&
                    (r = realm_cli_opt_value(argc, argv, &i, "--payload", &payload)) != 0) ||
                   (is_invoke &&
                    (r = realm_cli_opt_value(argc, argv, &i, "--qualifier", &qualifier)) != 0)) {
            if (r < 0) return realm_cli_usage_error(c->cmd, usage, "option '%s' needs a value", a);
        } else {
            return realm_cli_usage_error(c->cmd, usage, "unknown option '%s'", a);
        }
    }
    if (name == NULL || *name == '\0')
        return realm_cli_usage_error(c->cmd, usage, "missing the NAME of the function");
    if (tail && strspn(tail, "0123456789") != strlen(tail))
        return realm_cli_usage_error(c->cmd, usage, "--tail takes a number of bytes");
    int rc = resolve_endpoint(c, endpoint);
    if (rc != 0) return rc;
    realm_buf_t path;
    realm_buf_init(&path);
    if (is_invoke) {
        if (is_no_stream) {
            function_path(&path, name, "/invocations");
        } else {
            realm_buf_appends(&path, "/2021-11-15/functions/");
            realm_cli_url_encode(&path, name);
            realm_buf_appends(&path, "/response-streaming-invocations");
        }
        if (qualifier) {
            realm_buf_appends(&path, "?Qualifier=");
            realm_cli_url_encode(&path, qualifier);
        }
        int fn_err = 0;
        if (is_no_stream) {
            rc = raw_request(c, "POST", path.data, payload ? payload : "{}", 200, &fn_err);
            if (rc == 0 && fn_err) rc = 1;
        } else {
            rc = stream_invoke(c, path.data, payload ? payload : "{}");
        }
    } else {
        realm_buf_appends(&path, "/realm/v1/functions/");
        realm_cli_url_encode(&path, name);
        realm_buf_appendf(&path, "/logs?tail=%s", tail ? tail : "65536");
        rc = raw_request(c, "GET", path.data, NULL, 200, NULL);
    }
    realm_buf_dispose(&path);
    return rc;
}

static int cmd_logs(ctx_t *c, int argc, char **argv)
{
    return cmd_logs_or_invoke(c, argc, argv, 0);
}

static int cmd_invoke(ctx_t *c, int argc, char **argv)
{
    return cmd_logs_or_invoke(c, argc, argv, 1);
}

/* ---- entry ------------------------------------------------------------------------ */

typedef struct {
    const char *name;
    int (*run)(ctx_t *c, int argc, char **argv);
} command_t;

static int cmd_keys(ctx_t *c, int argc, char **argv)
{
    return realm_cli_keys_main(argc, argv); /* cli/keys.c */
}

static const command_t commands[] = {
    {"deploy", cmd_deploy}, {"functions", cmd_functions}, {"delete", cmd_delete},
    {"logs", cmd_logs},     {"invoke", cmd_invoke},       {"keys", cmd_keys},
};

static const command_t *find_command(const char *cmd)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(commands[i].name, cmd) == 0) return &commands[i];
    return NULL;
}

int realm_cli_has_command(const char *cmd)
{
    return find_command(cmd) != NULL;
}

int realm_cli_main(const char *cmd, int argc, char **argv)
{
    const command_t *command = find_command(cmd);
    if (command == NULL) {
        fprintf(stderr, "realm: unknown command '%s'\n", cmd);
        return 2;
    }
    ctx_t c;
    memset(&c, 0, sizeof(c));
    c.cmd = command->name;
    int rc = command->run(&c, argc, argv);
    /* A result that could not be written (a full disk, a closed pipe) is a failure. */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "realm %s: writing the output: %s\n", c.cmd, strerror(errno));
        if (rc == 0) rc = 1;
    }
    return rc;
}
