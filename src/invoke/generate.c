/*
 * generate.c - `generate` over the model worker (see generate.h).
 *
 * The worker streams NDJSON: {"type":"token","text","index","token_id",
 * "is_final"} per token, then {"type":"done","text","tokens_generated",
 * "prompt_tokens","finish_reason","timing":{...}}. Lines may arrive split
 * across chunks, so each call keeps the unfinished tail.
 */
#include "invoke/generate.h"

#include "base/alloc.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/log.h"
#include "model/gguf.h"
#include "runtimes/runtimes.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SANDBOX_MODEL "/opt/model/model.gguf"
/* The repository's default model (models/README.md credits it). */
#define BUNDLED_NAME "stories260K"
#define BUNDLED_FILE BUNDLED_NAME ".gguf"
#define SANDBOX_LIBS "/opt/llama/lib"
#define WORKER_NAME "realm-llm"
#define LIB_PROBE "node_modules/@node-llama-cpp/linux-x64/bins/linux-x64"

typedef struct {
    char name[65];
    char path[4096]; /* absolute, on the host */
    char revision[128];
    realm_gguf_info_t info;
    realm_metric_t *m_prompt, *m_generated, *m_ttft, *m_inter;
} model_t;

struct realm_generate_s {
    const realm_config_t *cfg;
    realm_exec_t *x;
    model_t *models;
    size_t models_cnt;
    char code_dir[4096]; /* holds `bootstrap`: the worker */
    char lib_dir[4096];  /* llama.cpp's libraries */
    int is_available;
    char why_not[256];
    realm_generate_elsewhere_cb elsewhere; /* a cluster: other nodes' models */
    void *elsewhere_ud;
};

typedef struct {
    realm_generate_t *g;
    model_t *m; /* NULL: run on another node of the cluster */
    realm_call_t *call;
    realm_inv_t *inv;
    char model[65];
    int stream;
    realm_buf_t line; /* the unfinished tail */
    json_t *done;     /* the worker's last line */
    uint64_t started_ns, last_ns;
    json_int_t tokens;
} gcall_t;

/* ---- the worker's stream ---- */

static void on_line(gcall_t *gc, const char *s, size_t n)
{
    json_t *j = json_loadb(s, n, JSON_ALLOW_NUL, NULL);
    const char *type = json_string_value(json_object_get(j, "type"));
    if (type && strcmp(type, "token") == 0) {
        uint64_t now = uv_hrtime();
        if (gc->m && gc->tokens == 0)
            realm_metric_observe(gc->m->m_ttft, (double)(now - gc->started_ns) / 1e9);
        else if (gc->m)
            realm_metric_observe(gc->m->m_inter, (double)(now - gc->last_ns) / 1e9);
        gc->last_ns = now;
        gc->tokens++;
        if (gc->stream) {
            json_object_del(j, "type");
            realm_call_stream(gc->call, j);
            return;
        }
    } else if (type && strcmp(type, "done") == 0) {
        json_decref(gc->done);
        gc->done = j;
        return;
    }
    json_decref(j);
}

static void on_chunk(realm_inv_t *inv, const void *bytes, size_t len, void *data)
{
    (void)inv;
    gcall_t *gc = data;
    const char *p = bytes, *end = p + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) {
            realm_buf_append(&gc->line, p, (size_t)(end - p));
            return;
        }
        if (gc->line.len) {
            realm_buf_append(&gc->line, p, (size_t)(nl - p));
            on_line(gc, gc->line.data, gc->line.len);
            realm_buf_reset(&gc->line);
        } else if (nl > p) {
            on_line(gc, p, (size_t)(nl - p));
        }
        p = nl + 1;
    }
}

static void gcall_free(gcall_t *gc)
{
    realm_buf_dispose(&gc->line);
    json_decref(gc->done);
    free(gc);
}

static void on_done(realm_inv_t *inv, const realm_inv_result_t *r, void *data)
{
    (void)inv;
    gcall_t *gc = data;
    realm_call_t *call = gc->call;
    if (gc->line.len) on_line(gc, gc->line.data, gc->line.len);
    if (r->status == REALM_INV_OK && gc->done) {
        json_t *res = gc->done;
        gc->done = NULL;
        json_object_del(res, "type");
        json_object_set_new(res, "model", json_string(gc->model));
        json_int_t pt = json_integer_value(json_object_get(res, "prompt_tokens"));
        json_int_t gt = json_integer_value(json_object_get(res, "tokens_generated"));
        if (gc->m) {
            realm_metric_add(gc->m->m_prompt, (double)pt);
            realm_metric_add(gc->m->m_generated, (double)gt);
        }
        realm_call_complete(call, res);
    } else if (r->status == REALM_INV_THROTTLED) {
        realm_call_fail(
            call, REALM_ERR_THROTTLED,
            json_pack("{s:s, s:i}", "reason", r->error_type ? r->error_type : "", "retry_after", 1),
            "%s", r->error_message ? r->error_message : "Rate Exceeded.");
    } else if (r->status == REALM_INV_FAILED && r->error_code) { /* NODE_LOST, NO_MODEL */
        realm_call_fail(call, r->error_code, NULL, "%s",
                        r->error_message ? r->error_message : "failed");
    } else {
        /* A function error (timeout, memory, a bad request the worker refused) or no result. */
        json_t *err = r->payload_len ? json_loadb(r->payload, r->payload_len, 0, NULL) : NULL;
        const char *msg = json_string_value(json_object_get(err, "errorMessage"));
        const char *type = r->error_type ? r->error_type : "Runtime.NoResult";
        int code = strcmp(type, "InvalidParams") == 0 ? REALM_ERR_INVALID_PARAMS
                                                      : REALM_ERR_FUNCTION_ERROR;
        json_t *details = json_pack("{s:s, s:s}", "error_type", type, "request_id",
                                    r->request_id ? r->request_id : "");
        realm_call_fail(call, code, details, "%s",
                        msg                ? msg
                        : r->error_message ? r->error_message
                                           : "the model worker ended without a result");
        json_decref(err);
    }
    gcall_free(gc);
}

static void on_cancel(realm_call_t *call, void *data)
{
    (void)call;
    gcall_t *gc = data;
    /* Stopping the environment stops generation at once (within a token). */
    realm_inv_cancel(gc->inv);
    gcall_free(gc);
}

/* ---- the function ---- */

static model_t *find_model(realm_generate_t *g, const char *name)
{
    if (!g->models_cnt) return NULL;
    if (!name) return &g->models[0];
    for (size_t i = 0; i < g->models_cnt; i++)
        if (strcmp(g->models[i].name, name) == 0) return &g->models[i];
    return NULL;
}

/* The event for the worker: the params with their defaults, minus what is ours. */
static json_t *event_of(json_t *params)
{
    json_t *ev = json_deep_copy(params);
    json_object_del(ev, "model");
    json_object_del(ev, "stream");
    if (json_is_null(json_object_get(ev, "seed"))) json_object_del(ev, "seed");
    return ev;
}

static int check_params(realm_call_t *call, json_t *params)
{
    json_t *prompt = json_object_get(params, "prompt");
    json_t *messages = json_object_get(params, "messages");
    if (!json_is_string(prompt) && !json_is_array(messages)) {
        realm_call_fail(call, REALM_ERR_INVALID_PARAMS, json_pack("{s:s}", "param", "prompt"),
                        "prompt is required (or messages, for the model's chat template)");
        return -1;
    }
    if (json_is_array(messages)) {
        size_t i;
        json_t *m;
        json_array_foreach(messages, i, m)
        {
            if (!json_is_string(json_object_get(m, "role")) ||
                !json_is_string(json_object_get(m, "content"))) {
                realm_call_fail(call, REALM_ERR_INVALID_PARAMS,
                                json_pack("{s:s}", "param", "messages"),
                                "messages must be objects with string role and content");
                return -1;
            }
        }
    }
    json_t *stop = json_object_get(params, "stop");
    if (stop && !json_is_null(stop)) {
        size_t i;
        json_t *s;
        int ok = json_is_array(stop) && json_array_size(stop) <= 16;
        json_array_foreach(stop, i, s) ok =
            ok && json_is_string(s) && json_string_length(s) > 0 && json_string_length(s) <= 256;
        if (!ok) {
            realm_call_fail(call, REALM_ERR_INVALID_PARAMS, json_pack("{s:s}", "param", "stop"),
                            "stop must be a list of at most 16 non-empty strings (256 bytes each)");
            return -1;
        }
    }
    return 0;
}

/* What runs a generation: the worker as a provided function of the model. */
typedef struct {
    char threads[48], model_env[128], libs_env[128], ld[160], name[80], arn[96];
    const char *env[5];
    const char *binds[5];
    realm_exec_fn_t fn;
} model_fn_t;

/* m NULL: model `name` on another node (placed there: what runs is its own). */
static void model_fn(realm_generate_t *g, const model_t *m, const char *name, const char *tenant,
                     model_fn_t *f)
{
    memset(f, 0, sizeof(*f));
    if (m) name = m->name;
    uint64_t nthreads = g->cfg->llm_threads;
    if (!nthreads) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        nthreads = cores > 1 ? (uint64_t)cores / 2 : 1;
    }
    snprintf(f->threads, sizeof(f->threads), "REALM_LLM_THREADS=%llu",
             (unsigned long long)nthreads);
    snprintf(f->model_env, sizeof(f->model_env), "REALM_LLM_MODEL=%s", SANDBOX_MODEL);
    snprintf(f->libs_env, sizeof(f->libs_env), "REALM_LLM_LIB_DIR=%s", SANDBOX_LIBS);
    snprintf(f->ld, sizeof(f->ld), "LD_LIBRARY_PATH=%s", SANDBOX_LIBS);
    snprintf(f->name, sizeof(f->name), "generate-%s", name);
    snprintf(f->arn, sizeof(f->arn), REALM_GENERATE_ARN_PREFIX "%s", name);
    const char *env[] = {f->threads, f->model_env, f->libs_env, f->ld, NULL};
    memcpy(f->env, env, sizeof(env));
    if (m) {
        const char *binds[] = {m->path, SANDBOX_MODEL, g->lib_dir, SANDBOX_LIBS, NULL};
        memcpy(f->binds, binds, sizeof(binds));
    }
    uint64_t file = m ? m->info.file_bytes : 0;
    uint64_t mem = g->cfg->llm_memory_bytes ? g->cfg->llm_memory_bytes
                                            : 2 * file + (uint64_t)1024 * 1024 * 1024;
    f->fn = (realm_exec_fn_t){
        .tenant = tenant ? tenant : "",
        .name = f->name,
        .version = "$LATEST",
        .revision = m ? m->revision : "elsewhere",
        .arn = f->arn,
        .runtime = realm_runtimes_custom()->name,
        .handler = "generate",
        .code_dir = g->code_dir,
        .env = f->env,
        .memory_mb = mem / (1024 * 1024),
        .timeout_s = (g->cfg->llm_timeout_ms + 999) / 1000,
        .reserved = -1,
        .no_network = 1,
        .ro_binds = m ? f->binds : NULL,
    };
}

static void fn_generate(realm_call_t *call, json_t *params, void *data)
{
    realm_generate_t *g = data;
    const char *mname = json_string_value(json_object_get(params, "model"));
    model_t *m = g->is_available ? find_model(g, mname) : NULL;
    /* In a cluster, a model loaded on another node runs there. */
    int is_elsewhere = !m && mname && g->elsewhere && g->elsewhere(mname, g->elsewhere_ud);
    if (!g->is_available && !is_elsewhere) {
        realm_call_fail(call, g->models_cnt ? REALM_ERR_GENERATE_UNAVAILABLE : REALM_ERR_NO_MODEL,
                        NULL, "%s", g->why_not);
        return;
    }
    if (!m && !is_elsewhere) {
        realm_call_fail(call, REALM_ERR_INVALID_PARAMS, json_pack("{s:s}", "param", "model"),
                        "no model named '%.64s' (see metadata for the loaded models)",
                        mname ? mname : "");
        return;
    }
    if (check_params(call, params) != 0) return;
    json_t *ev = event_of(params);
    char *payload = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);

    const char *tenant = realm_call_tenant(call);
    model_fn_t mf;
    model_fn(g, m, mname, tenant, &mf);
    gcall_t *gc = realm_calloc(1, sizeof(*gc));
    gc->g = g;
    gc->m = m;
    snprintf(gc->model, sizeof(gc->model), "%s", m ? m->name : mname);
    gc->call = call;
    gc->stream = json_is_true(json_object_get(params, "stream"));
    gc->started_ns = uv_hrtime();
    realm_buf_init(&gc->line);
    realm_inv_req_t req = {
        .payload_owned = payload, .payload_len = strlen(payload), .must_place = !m};
    static const realm_inv_sink_t sink = {.on_chunk = on_chunk, .on_done = on_done};
    realm_call_on_cancel(call, on_cancel, gc);
    realm_inv_t *inv = realm_exec_invoke(g->x, &mf.fn, &req, &sink, gc); /* takes payload */
    gc->inv = inv; /* it ends in on_done, on a later turn (or is cancelled first) */
}

static const realm_param_def_t generate_params[] = {
    {.name = "prompt",
     .type = REALM_PARAM_STRING,
     .description = "the text to continue (required unless messages is given)",
     .has_min = 1,
     .min = 1,
     .has_max = 1,
     .max = 1 << 20},
    {.name = "messages",
     .type = REALM_PARAM_ARRAY,
     .description = "chat messages [{role, content}], rendered with the model's chat template"},
    {.name = "model",
     .type = REALM_PARAM_STRING,
     .description = "a loaded model's name (the first --model when omitted)",
     .has_max = 1,
     .max = 64},
    {.name = "max_tokens",
     .type = REALM_PARAM_INTEGER,
     .default_json = "100",
     .description = "most tokens to generate",
     .has_min = 1,
     .min = 1,
     .has_max = 1,
     .max = 32768},
    {.name = "temperature",
     .type = REALM_PARAM_NUMBER,
     .default_json = "0.7",
     .description = "sampling temperature; 0 is greedy",
     .has_min = 1,
     .min = 0,
     .has_max = 1,
     .max = 5},
    {.name = "top_p",
     .type = REALM_PARAM_NUMBER,
     .default_json = "0.9",
     .description = "nucleus sampling: keep the smallest set of tokens with this much mass",
     .has_min = 1,
     .min = 0,
     .has_max = 1,
     .max = 1},
    {.name = "top_k",
     .type = REALM_PARAM_INTEGER,
     .default_json = "40",
     .description = "keep the k likeliest tokens (0: all)",
     .has_min = 1,
     .min = 0,
     .has_max = 1,
     .max = 100000},
    {.name = "min_p",
     .type = REALM_PARAM_NUMBER,
     .default_json = "0.0",
     .description = "drop tokens less likely than min_p times the likeliest",
     .has_min = 1,
     .min = 0,
     .has_max = 1,
     .max = 1},
    {.name = "repetition_penalty",
     .type = REALM_PARAM_NUMBER,
     .default_json = "1.0",
     .description = "penalty for tokens already generated (1.0: none)",
     .has_min = 1,
     .min = 0.01,
     .has_max = 1,
     .max = 10},
    {.name = "seed",
     .type = REALM_PARAM_INTEGER,
     .description = "sampling seed: the same seed gives the same tokens (random when omitted)",
     .has_min = 1,
     .min = 0,
     .has_max = 1,
     .max = 4294967295.0},
    {.name = "stop",
     .type = REALM_PARAM_ARRAY,
     .description = "strings that end generation (never part of the output)"},
    {.name = "stream",
     .type = REALM_PARAM_BOOLEAN,
     .default_json = "false",
     .description = "one streaming reply per token before the result"},
};

static const realm_fn_def_t generate_def = {
    .name = "generate",
    .description = "LLM text generation with llama.cpp: streams {text, index, token_id, "
                   "is_final} per token when stream is true, then the result.",
    .params = generate_params,
    .params_cnt = sizeof(generate_params) / sizeof(generate_params[0]),
    .result_json =
        "{\"text\":\"string\",\"tokens_generated\":\"integer\",\"prompt_tokens\":\"integer\","
        "\"finish_reason\":\"stop|length|cancelled\",\"model\":\"string\",\"timing\":{"
        "\"time_to_first_token_ms\":\"number\",\"tokens_per_second\":\"number\","
        "\"total_ms\":\"number\"}}",
    .is_streaming = 1,
    .handler = fn_generate,
};

/* metadata: the models, on generate's own entry and at the top. */
static void annotate(json_t *doc, void *data)
{
    realm_generate_t *g = data;
    json_t *models = json_array();
    for (size_t i = 0; i < g->models_cnt; i++) {
        const model_t *m = &g->models[i];
        json_array_append_new(models, json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:I, s:b}", "name",
                                                m->name, "model_name", m->info.name, "architecture",
                                                m->info.architecture, "parameters",
                                                (json_int_t)m->info.parameters, "context_length",
                                                (json_int_t)m->info.context_length, "quantization",
                                                m->info.quantization, "file_bytes",
                                                (json_int_t)m->info.file_bytes, "default", i == 0));
    }
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(doc, "functions"), i, f)
    {
        const char *fname = json_string_value(json_object_get(f, "name"));
        if (!fname || strcmp(fname, "generate") != 0) continue;
        json_object_set(f, "models", models);
        /* prompt or messages: exactly one, which a per-param "required" cannot say. */
        json_object_set_new(f, "required_one_of", json_pack("[s,s]", "prompt", "messages"));
        json_object_set_new(f, "available", json_boolean(g->is_available));
        if (!g->is_available)
            json_object_set_new(f, "unavailable_because", json_string(g->why_not));
    }
    json_object_set_new(doc, "models", models);
}

/* ---- setup ---- */

static int exe_dir(char *out, size_t n)
{
    char exe[4096];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (k <= 0) return -1;
    exe[k] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash) return -1;
    *slash = '\0';
    snprintf(out, n, "%s", exe);
    return 0;
}

/*
 * The model the repository ships (models/, with its license note), used when
 * the server is started without --model: "NAME=PATH" of the first
 * models/stories260K.gguf going up from the binary's directory, as the server
 * finds runtimes/ (build/realm and build/asan/realm both find the repository's).
 */
static int find_bundled_model(char *out, size_t n)
{
    char dir[4096], probe[4200];
    if (exe_dir(dir, sizeof(dir)) != 0) return -1;
    for (int up = 0; up < 5; up++) {
        snprintf(probe, sizeof(probe), "%s/models/" BUNDLED_FILE, dir);
        if (access(probe, R_OK) == 0) {
            int k = snprintf(out, n, "%s=%s", BUNDLED_NAME, probe);
            return k > 0 && (size_t)k < n ? 0 : -1;
        }
        char *slash = strrchr(dir, '/');
        if (!slash || slash == dir) break;
        *slash = '\0';
    }
    return -1;
}

/* llama.cpp's libraries: node_modules/@node-llama-cpp/... going up from the binary. */
static int find_libs(realm_generate_t *g)
{
    char dir[4096];
    if (exe_dir(dir, sizeof(dir)) != 0) return -1;
    for (int up = 0; up < 5; up++) {
        char probe[4300];
        snprintf(probe, sizeof(probe), "%s/%s", dir, LIB_PROBE);
        struct stat st;
        if (stat(probe, &st) == 0 && S_ISDIR(st.st_mode)) {
            if (!realpath(probe, g->lib_dir)) return -1;
            return 0;
        }
        char *slash = strrchr(dir, '/');
        if (!slash || slash == dir) break;
        *slash = '\0';
    }
    return -1;
}

static int copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0) return -1;
    char tmp[4400];
    snprintf(tmp, sizeof(tmp), "%.4300s.tmp", to);
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    if (out < 0) {
        close(in);
        return -1;
    }
    char buf[65536];
    ssize_t n;
    int rc = 0;
    while ((n = read(in, buf, sizeof(buf))) > 0)
        if (write(out, buf, (size_t)n) != n) rc = -1;
    if (n < 0) rc = -1;
    close(in);
    if (close(out) != 0) rc = -1;
    if (rc == 0 && rename(tmp, to) != 0) rc = -1;
    if (rc != 0) unlink(tmp);
    return rc;
}

/* The worker as the `bootstrap` of a code directory in the data dir. */
static void find_worker(realm_generate_t *g)
{
    char dir[4096], worker[4200], bootstrap[4300];
    if (exe_dir(dir, sizeof(dir)) != 0) return;
    snprintf(worker, sizeof(worker), "%s/%s", dir, WORKER_NAME);
    if (access(worker, X_OK) != 0) {
        snprintf(g->why_not, sizeof(g->why_not),
                 "generate is not available: this build has no llama.cpp (run scripts/setup.sh, "
                 "which installs node-llama-cpp, then rebuild)");
        return;
    }
    if (find_libs(g) != 0) {
        snprintf(g->why_not, sizeof(g->why_not),
                 "generate is not available: llama.cpp's libraries (%s) were not found", LIB_PROBE);
        return;
    }
    snprintf(g->code_dir, sizeof(g->code_dir), "%s/llm", g->cfg->data_dir);
    mkdir(g->code_dir, 0700);
    snprintf(bootstrap, sizeof(bootstrap), "%s/bootstrap", g->code_dir);
    if (copy_file(worker, bootstrap) != 0) {
        snprintf(g->why_not, sizeof(g->why_not), "generate is not available: %.120s: %s", bootstrap,
                 strerror(errno));
        return;
    }
    chmod(g->code_dir, 0755);
    g->is_available = 1;
}

static int add_model(realm_generate_t *g, realm_metrics_t *mx, const char *item, char *err,
                     size_t err_len)
{
    const char *eq = strchr(item, '=');
    if (!eq || eq == item || (size_t)(eq - item) > 64 || !eq[1]) {
        snprintf(err, err_len, "--model: '%s' is not NAME=PATH.gguf", item);
        return -1;
    }
    model_t m;
    memset(&m, 0, sizeof(m));
    snprintf(m.name, sizeof(m.name), "%.*s", (int)(eq - item), item);
    for (const char *c = m.name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '-' || *c == '_' || *c == '.')) {
            snprintf(err, err_len, "--model: the name '%s' may hold only [A-Za-z0-9._-]", m.name);
            return -1;
        }
    for (size_t i = 0; i < g->models_cnt; i++)
        if (strcmp(g->models[i].name, m.name) == 0) {
            snprintf(err, err_len, "--model: '%s' is given twice", m.name);
            return -1;
        }
    if (!realpath(eq + 1, m.path)) {
        snprintf(err, err_len, "--model %s: %s: %s", m.name, eq + 1, strerror(errno));
        return -1;
    }
    char gerr[512];
    if (realm_gguf_read(m.path, &m.info, gerr, sizeof(gerr)) != 0) {
        snprintf(err, err_len, "--model %s: %s", m.name, gerr);
        return -1;
    }
    struct stat st;
    stat(m.path, &st);
    snprintf(m.revision, sizeof(m.revision), "%llu-%lld", (unsigned long long)m.info.file_bytes,
             (long long)st.st_mtime);
    const char *labels[] = {m.name};
    static const double ttft_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                          1,     2.5,  5,     10,   30,  60};
    static const double inter_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                           0.1,   0.25,   0.5,   1,    2.5};
    m.m_prompt = realm_metrics_child(
        realm_metrics_family(mx, REALM_METRIC_COUNTER, "realm_llm_prompt_tokens_total",
                             "Prompt tokens of generations, by model", "model", NULL, 0),
        labels);
    m.m_generated = realm_metrics_child(
        realm_metrics_family(mx, REALM_METRIC_COUNTER, "realm_llm_generated_tokens_total",
                             "Tokens generated, by model", "model", NULL, 0),
        labels);
    m.m_ttft = realm_metrics_child(
        realm_metrics_family(mx, REALM_METRIC_HISTOGRAM, "realm_llm_time_to_first_token_seconds",
                             "From a generate call to its first token, by model", "model",
                             ttft_buckets, sizeof(ttft_buckets) / sizeof(ttft_buckets[0])),
        labels);
    m.m_inter = realm_metrics_child(
        realm_metrics_family(mx, REALM_METRIC_HISTOGRAM, "realm_llm_inter_token_seconds",
                             "Between two tokens of a generation, by model", "model", inter_buckets,
                             sizeof(inter_buckets) / sizeof(inter_buckets[0])),
        labels);
    g->models = realm_realloc(g->models, (g->models_cnt + 1) * sizeof(model_t));
    g->models[g->models_cnt++] = m;
    realm_info("model %s: %s (%s, %llu parameters, context %llu, %s, %llu MiB)", m.name, m.path,
               m.info.architecture, (unsigned long long)m.info.parameters,
               (unsigned long long)m.info.context_length, m.info.quantization,
               (unsigned long long)(m.info.file_bytes >> 20));
    return 0;
}

realm_generate_t *realm_generate_new(const realm_config_t *cfg, realm_exec_t *x,
                                     realm_metrics_t *mx, realm_dispatch_t *d, char *err,
                                     size_t err_len)
{
    realm_generate_t *g = realm_calloc(1, sizeof(*g));
    g->cfg = cfg;
    g->x = x;
    char bundled[4200];
    int want_bundled = !cfg->models || strcmp(cfg->models, "bundled") == 0;
    if (want_bundled && find_bundled_model(bundled, sizeof(bundled)) == 0) {
        if (add_model(g, mx, bundled, err, err_len) != 0) {
            realm_generate_free(g);
            return NULL;
        }
    } else if (!want_bundled && strcmp(cfg->models, "none") != 0) {
        char *list = realm_strdup(cfg->models), *save = NULL;
        for (char *item = strtok_r(list, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
            if (add_model(g, mx, item, err, err_len) != 0) {
                free(list);
                realm_generate_free(g);
                return NULL;
            }
        }
        free(list);
    }
    if (!g->models_cnt) {
        snprintf(g->why_not, sizeof(g->why_not),
                 "generate has no model: start the server with --model NAME=PATH.gguf%s",
                 want_bundled ? " (the bundled models/" BUNDLED_FILE " was not found)" : "");
    } else {
        find_worker(g);
        if (!g->is_available) realm_warn("%s", g->why_not);
    }
    realm_dispatch_register(d, &generate_def, g);
    realm_dispatch_set_annotator(d, annotate, g);
    return g;
}

void realm_generate_free(realm_generate_t *g)
{
    if (!g) return;
    free(g->models);
    free(g);
}

/* ---- a cluster ---- */

void realm_generate_set_elsewhere(realm_generate_t *g, realm_generate_elsewhere_cb cb, void *ud)
{
    g->elsewhere = cb;
    g->elsewhere_ud = ud;
}

json_t *realm_generate_model_names(const realm_generate_t *g)
{
    json_t *a = json_array();
    for (size_t i = 0; g->is_available && i < g->models_cnt; i++)
        json_array_append_new(a, json_string(g->models[i].name));
    return a;
}

realm_inv_t *realm_generate_run_placed(realm_generate_t *g, const char *tenant, const char *model,
                                       const char *payload, size_t len,
                                       const realm_inv_sink_t *sink, void *data)
{
    model_t *m = g->is_available ? find_model(g, model) : NULL;
    if (!m) return NULL;
    model_fn_t mf;
    model_fn(g, m, model, tenant, &mf);
    realm_inv_req_t req = {.payload = payload, .payload_len = len, .no_placement = 1};
    return realm_exec_invoke(g->x, &mf.fn, &req, sink, data);
}
