/*
 * generate.h - LLM text generation as a function (docs/generate.md).
 *
 * DESIGN: each model given with --model NAME=PATH.gguf is run by the model
 * worker `realm-llm` (src/llm/, built when llama.cpp is installed) as the
 * bootstrap of a `provided` environment, with the model file and llama.cpp's
 * libraries bound read-only into the sandbox. So generation goes through
 * the same scheduler, sandbox, limits, timeouts, cancellation and metrics
 * as every other function: the environment keeps the model loaded (mmap,
 * so environments share the page cache) and streams one NDJSON line per
 * token, which becomes one `streaming` reply.
 * THREADS: loop thread only.
 */
#ifndef REALM_INVOKE_GENERATE_H
#define REALM_INVOKE_GENERATE_H

#include "config/config.h"
#include "dispatch/dispatch.h"
#include "exec/exec.h"
#include "metrics/metrics.h"

typedef struct realm_generate_s realm_generate_t;

/*
 * Checks every --model (a missing or non-GGUF file fails here, with a
 * message in err) and registers `generate` on d. Without the worker (a build
 * without llama.cpp) generate is still listed and answers why it cannot run.
 */
realm_generate_t *realm_generate_new(const realm_config_t *cfg, realm_exec_t *x, realm_metrics_t *m,
                                     realm_dispatch_t *d, char *err, size_t err_len);
void realm_generate_free(realm_generate_t *g);

/* ---- a cluster (docs/cluster.md, "generate on any node") ---- */

/* A generation's ARN: this prefix and the model's name (no function's ARN looks so). */
#define REALM_GENERATE_ARN_PREFIX "realm:generate:"
/* 1 when another node of the cluster has model loaded (api/node.c). */
typedef int (*realm_generate_elsewhere_cb)(const char *model, void *ud);
void realm_generate_set_elsewhere(realm_generate_t *g, realm_generate_elsewhere_cb cb, void *ud);
/* The models loaded here, by name (a new JSON array; empty when generate cannot run). */
json_t *realm_generate_model_names(const realm_generate_t *g);
/*
 * Runs a generation another node placed here: payload is the worker's event
 * (JSON, copied), model a model loaded here. Returns the invocation (its
 * sink's events follow, as exec.h says), or NULL when the model is not here.
 */
realm_inv_t *realm_generate_run_placed(realm_generate_t *g, const char *tenant, const char *model,
                                       const char *payload, size_t len,
                                       const realm_inv_sink_t *sink, void *data);

#endif
