/*
 * worker.c - realm-llm: the model worker. It runs as the bootstrap of a
 * `provided` function inside a Realm execution environment, loads one GGUF
 * model and serves generation requests through the Lambda runtime API,
 * streaming one NDJSON line per token (gen.h has the lines, rapi.h the
 * wire).
 *
 * Environment:
 *   AWS_LAMBDA_RUNTIME_API  HOST:PORT of the runtime API (set by Realm)
 *   REALM_LLM_MODEL         path of the .gguf inside the sandbox
 *   REALM_LLM_LIB_DIR       directory of the ggml backends (libggml-cpu-*.so);
 *                           unset: the build's REALM_LLAMA_LIB_DIR, else ggml's
 *                           default search
 *   REALM_LLM_THREADS       threads per decode (default 2)
 *   REALM_LLM_CTX           context size in tokens (0 or absent: the model's
 *                           trained context, at most 4096)
 *
 * DESIGN: init loads the model once; a failure is posted to
 * /runtime/init/error as Runtime.ModelLoadError and the process exits 1.
 * Then the loop: take the next invocation, answer bad input with an
 * InvalidParams error (and keep serving), otherwise stream the answer
 * (application/x-ndjson) and end it; a failure midway ends the stream with
 * the error trailers (Runtime.GenerationError). main() only wires; the
 * work is in gen.c and rapi.c.
 *
 * THREADS: one (llama.cpp adds its own inside each decode). Cancellation
 * is Realm killing the environment: there is nothing to clean up.
 */
#include "llm/gen.h"
#include "llm/rapi.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CONTENT_TYPE "application/x-ndjson"
#define MAX_NEXT_FAILURES 3 /* consecutive failed GET .../next before giving up */

static int env_int(const char *name, int dflt, int lo, int hi, int *out)
{
    const char *s = getenv(name);
    if (!s || !*s) {
        *out = dflt;
        return 0;
    }
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

static int fail_init(realm_rapi_t *r, const char *message)
{
    fprintf(stderr, "realm-llm: %s\n", message);
    int rc = realm_rapi_post_error(r, NULL, "Runtime.ModelLoadError", message);
    if (rc) fprintf(stderr, "realm-llm: could not report the init error (%d)\n", rc);
    realm_rapi_dispose(r);
    return 1;
}

static int on_line(const char *line, size_t len, void *data)
{
    return realm_rapi_stream_chunk(data, line, len) != 0;
}

/* Serves one invocation (its id and event are in r until the next call on r). */
static void serve(realm_rapi_t *r, realm_llm_t *m)
{
    char id[REALM_RAPI_ID_MAX];
    char err[512];
    snprintf(id, sizeof(id), "%s", r->request_id);

    realm_llm_params_t p;
    int rc = realm_llm_params_parse(&p, r->body.data, r->body.len, err, sizeof(err));
    if (rc == 0) {
        rc = realm_llm_prepare(m, &p, err, sizeof(err));
        if (rc) realm_llm_params_dispose(&p);
    }
    if (rc) {
        rc = realm_rapi_post_error(r, id, "InvalidParams", err);
        if (rc) fprintf(stderr, "realm-llm: %s: could not post the error (%d)\n", id, rc);
        return;
    }

    rc = realm_rapi_stream_begin(r, id, CONTENT_TYPE);
    if (rc == 0) {
        rc = realm_llm_generate(m, &p, on_line, r, err, sizeof(err));
        if (rc == REALM_LLM_EGEN) {
            fprintf(stderr, "realm-llm: %s: %s\n", id, err);
            rc = realm_rapi_stream_end(r, "Runtime.GenerationError", err);
        } else if (rc == 0) {
            rc = realm_rapi_stream_end(r, NULL, NULL);
        }
    }
    if (rc) {
        /* The connection broke (or the answer was refused): what was sent is all the caller
         * gets. The next request opens a new connection. */
        fprintf(stderr, "realm-llm: %s: the streamed response failed (%d, status %d)\n", id, rc,
                r->status);
        realm_rapi_close(r);
    }
    realm_llm_params_dispose(&p);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stderr, NULL, _IOLBF, 0);

    const char *api = getenv("AWS_LAMBDA_RUNTIME_API");
    realm_rapi_t r;
    if (!api || realm_rapi_init(&r, api) != 0) {
        fprintf(stderr, "realm-llm: AWS_LAMBDA_RUNTIME_API must be HOST:PORT (got %s)\n",
                api ? api : "nothing");
        return 2;
    }

    realm_llm_opts_t opts = {0};
    opts.model_path = getenv("REALM_LLM_MODEL");
    opts.lib_dir = getenv("REALM_LLM_LIB_DIR");
#ifdef REALM_LLAMA_LIB_DIR
    /* Run by hand on the build machine: the backends next to the libllama it was linked to. */
    if (!opts.lib_dir || !*opts.lib_dir) opts.lib_dir = REALM_LLAMA_LIB_DIR;
#endif
    if (!opts.model_path || !*opts.model_path)
        return fail_init(&r, "REALM_LLM_MODEL is not set: it names the .gguf model to load");
    if (env_int("REALM_LLM_THREADS", 2, 1, 512, &opts.n_threads) != 0)
        return fail_init(&r, "REALM_LLM_THREADS must be an integer from 1 to 512");
    if (env_int("REALM_LLM_CTX", 0, 0, INT32_MAX / 2, &opts.n_ctx) != 0)
        return fail_init(&r, "REALM_LLM_CTX must be an integer >= 0 (0: the model's own)");

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    realm_llm_t *m;
    char err[1024];
    if (realm_llm_open(&opts, &m, err, sizeof(err)) != 0) return fail_init(&r, err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    char desc[512];
    realm_llm_describe(m, desc, sizeof(desc));
    fprintf(stderr, "realm-llm: %s: %s, loaded in %ld ms\n", opts.model_path, desc,
            (long)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000));

    int failures = 0;
    for (;;) {
        int rc = realm_rapi_next(&r);
        if (rc != 0) {
            fprintf(stderr, "realm-llm: GET next failed (%d, status %d)\n", rc, r.status);
            if (++failures >= MAX_NEXT_FAILURES) break;
            realm_rapi_close(&r);
            continue;
        }
        failures = 0;
        serve(&r, m);
    }
    realm_llm_free(m);
    realm_rapi_dispose(&r);
    return 1;
}
