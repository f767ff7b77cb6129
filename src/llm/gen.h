/*
 * gen.h - text generation for the model worker (realm-llm): one GGUF model
 * and one llama.cpp context, generation requests parsed from JSON, and the
 * answer produced as NDJSON lines, one per token, then a summary.
 *
 * Nothing here knows HTTP: realm_llm_generate hands each finished line to a
 * callback; worker.c sends it as a chunk of the runtime API's streamed
 * response.
 *
 * The lines (each ends in "\n"):
 *   {"type":"token","text":T,"index":I,"token_id":ID,"is_final":B}
 *   {"type":"done","text":ALL,"tokens_generated":N,"prompt_tokens":P,
 *    "finish_reason":"stop"|"length",
 *    "timing":{"time_to_first_token_ms":X,"tokens_per_second":Y,"total_ms":Z}}
 * ALL is the concatenation of the token lines' texts and N their count.
 * finish_reason: "stop" for EOS (never sent nor counted) or a stop string
 * (the text ends right before it; nothing of it is ever sent), "length"
 * for max_tokens or the end of the context (every token but the last
 * takes a slot: prompt_tokens + N <= context + 1).
 * time_to_first_token_ms: from realm_llm_prepare to the first token
 * sampled (its line goes out one token later); tokens_per_second: tokens
 * sampled (EOS excluded, those cut by a stop string included) per second
 * from the end of the prompt to the last one; total_ms: from
 * realm_llm_prepare to the done line.
 *
 * THREADS: a realm_llm_t is used by one thread at a time; llama.cpp runs
 * its own worker threads (REALM_LLM_THREADS) inside each decode.
 */
#ifndef REALM_LLM_GEN_H
#define REALM_LLM_GEN_H

#include <stddef.h>
#include <stdint.h>

/* Return codes (besides 0). */
#define REALM_LLM_EINVAL (-1) /* bad parameters or prompt; nothing was generated */
#define REALM_LLM_EGEN (-2)   /* llama.cpp failed midway; some lines may have gone out */
#define REALM_LLM_EABORT (-3) /* the line callback asked to stop */

#define REALM_LLM_MAX_STOP 16       /* stop strings per request */
#define REALM_LLM_MAX_STOP_LEN 256  /* bytes per stop string */
#define REALM_LLM_MAX_MESSAGES 1024 /* chat messages per request */

typedef struct realm_llm realm_llm_t;

typedef struct {
    const char *model_path; /* borrowed for the call; the .gguf to load (mmap) */
    const char *lib_dir;    /* borrowed; where the ggml backends are, NULL: the default paths */
    int n_threads;          /* >= 1 */
    int n_ctx;              /* 0: the model's trained context, at most 4096 */
} realm_llm_opts_t;

typedef struct {
    const char *role;    /* borrowed from the parsed event */
    const char *content; /* borrowed from the parsed event */
} realm_llm_msg_t;

/* One request, as parsed from the event; strings are borrowed from root. */
typedef struct {
    void *root;         /* owned: the parsed JSON event (jansson) */
    const char *prompt; /* NULL when messages are given */
    size_t prompt_len;
    realm_llm_msg_t *messages; /* owned array, NULL when prompt is given */
    size_t n_messages;
    int max_tokens;            /* >= 1; default 100 */
    double temperature;        /* >= 0; 0 is greedy; default 0.7 */
    double top_p;              /* [0, 1]; default 0.9 */
    int top_k;                 /* >= 0 (0: off); default 40 */
    double min_p;              /* [0, 1]; default 0 */
    double repetition_penalty; /* > 0; 1 is off; default 1 */
    int has_seed;              /* 0: a random seed */
    uint32_t seed;
    const char *stop[REALM_LLM_MAX_STOP]; /* borrowed; non-empty */
    size_t stop_len[REALM_LLM_MAX_STOP];
    size_t n_stop;
} realm_llm_params_t;

/* Called with each output line (line[len-1] == '\n'; borrowed for the call).
 * Return 0 to go on, anything else to stop generating. */
typedef int (*realm_llm_line_cb)(const char *line, size_t len, void *data);

/*
 * Loads the ggml backends (from opts->lib_dir), the model (mmap) and one
 * context. On 0, *out is a new model to free with realm_llm_free. On -1,
 * err says why (missing file, not a model, no backend...).
 */
int realm_llm_open(const realm_llm_opts_t *opts, realm_llm_t **out, char *err, size_t err_len);
void realm_llm_free(realm_llm_t *m); /* NULL is fine */

/* One line for the log: description, parameters, trained and actual context, threads. */
void realm_llm_describe(const realm_llm_t *m, char *buf, size_t len);

/*
 * Parses and checks an event (JSON, len bytes). On 0, p holds the request
 * and must be disposed of with realm_llm_params_dispose. On
 * REALM_LLM_EINVAL, err names the bad parameter and p needs no disposal.
 * Unknown keys are ignored; null is the same as absent.
 */
int realm_llm_params_parse(realm_llm_params_t *p, const char *json, size_t len, char *err,
                           size_t err_len);
void realm_llm_params_dispose(realm_llm_params_t *p);

/*
 * Starts a request: clears the context, renders the chat template (for
 * messages) and tokenizes the prompt. The request's clock starts here.
 * Returns 0, or REALM_LLM_EINVAL with err (no chat template, a prompt
 * longer than the context, an empty prompt).
 */
int realm_llm_prepare(realm_llm_t *m, const realm_llm_params_t *p, char *err, size_t err_len);

/*
 * Generates for the request realm_llm_prepare started, calling cb with each
 * line as soon as it is known (a token line one token late, so the last one
 * can say is_final), then the done line. Returns 0, REALM_LLM_EGEN (err
 * says what failed) or REALM_LLM_EABORT (cb returned non-zero).
 */
int realm_llm_generate(realm_llm_t *m, const realm_llm_params_t *p, realm_llm_line_cb cb,
                       void *data, char *err, size_t err_len);

#endif
