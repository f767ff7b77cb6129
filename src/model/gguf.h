/*
 * gguf.h - what a GGUF model file says about itself: architecture, name,
 * parameter count, trained context length and quantization, read from its
 * header without loading the model (for `metadata` and for refusing a bad
 * --model at start). The GGUF format: magic "GGUF", version, tensor and
 * key/value counts, typed key/values, then tensor infos.
 * THREADS: any; blocking file reads.
 */
#ifndef REALM_MODEL_GGUF_H
#define REALM_MODEL_GGUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char architecture[64];  /* "llama" */
    char name[128];         /* general.name, or "" */
    uint64_t parameters;    /* sum of the tensors' element counts */
    uint64_t context_length; /* <arch>.context_length, or 0 */
    uint32_t file_type;     /* general.file_type, or UINT32_MAX */
    char quantization[24];  /* "F32", "F16", "Q4_K_M"..., or "unknown" */
    uint64_t file_bytes;
    uint32_t version;       /* GGUF version */
} realm_gguf_info_t;

/* Reads path's header. Returns 0, or -1 with a message in err (missing file, not GGUF, truncated). */
int realm_gguf_read(const char *path, realm_gguf_info_t *out, char *err, size_t err_len);

#endif
