/*
 * gguf.c - a GGUF header reader (see gguf.h). Values that do not matter here
 * (the tokenizer's arrays, most of all) are skipped, not kept.
 */
#include "model/gguf.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

enum {
    T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STRING, T_ARRAY, T_U64, T_I64, T_F64,
};

#define MAX_STRING (1u << 24) /* a longer key or value is not a sane header */
#define MAX_DIMS 8

typedef struct {
    FILE *f;
    int bad;
} rd_t;

static int get(rd_t *r, void *p, size_t n)
{
    if (r->bad || fread(p, 1, n, r->f) != n) r->bad = 1;
    return r->bad ? -1 : 0;
}

static uint64_t u64(rd_t *r)
{
    uint64_t v = 0;
    get(r, &v, 8);
    return v;
}

static uint32_t u32(rd_t *r)
{
    uint32_t v = 0;
    get(r, &v, 4);
    return v;
}

/* A string into out (cut to out_len - 1), or skipped when out is NULL. */
static void str(rd_t *r, char *out, size_t out_len)
{
    uint64_t n = u64(r);
    if (r->bad || n > MAX_STRING) {
        r->bad = 1;
        return;
    }
    if (out && out_len) {
        size_t keep = n < out_len - 1 ? (size_t)n : out_len - 1;
        if (get(r, out, keep) != 0) return;
        out[keep] = '\0';
        n -= keep;
    }
    if (n && fseek(r->f, (long)n, SEEK_CUR) != 0) r->bad = 1;
}

static size_t scalar_size(uint32_t t)
{
    switch (t) {
    case T_U8: case T_I8: case T_BOOL: return 1;
    case T_U16: case T_I16: return 2;
    case T_U32: case T_I32: case T_F32: return 4;
    case T_U64: case T_I64: case T_F64: return 8;
    default: return 0;
    }
}

/* An integer value of any integer type (others: skipped, 0). */
static uint64_t value_int(rd_t *r, uint32_t t)
{
    size_t n = scalar_size(t);
    if (!n || t == T_F32 || t == T_F64) {
        if (n && fseek(r->f, (long)n, SEEK_CUR) != 0) r->bad = 1;
        return 0;
    }
    uint64_t v = 0;
    get(r, &v, n); /* little-endian: the low bytes come first */
    return v;
}

static void skip_value(rd_t *r, uint32_t t)
{
    if (t == T_STRING) {
        str(r, NULL, 0);
    } else if (t == T_ARRAY) {
        uint32_t et = u32(r);
        uint64_t n = u64(r);
        if (r->bad) return;
        if (et == T_STRING) {
            for (uint64_t i = 0; i < n && !r->bad; i++)
                str(r, NULL, 0);
        } else if (scalar_size(et) && n < (1ull << 40)) {
            if (fseek(r->f, (long)(n * scalar_size(et)), SEEK_CUR) != 0) r->bad = 1;
        } else {
            r->bad = 1;
        }
    } else if (scalar_size(t)) {
        if (fseek(r->f, (long)scalar_size(t), SEEK_CUR) != 0) r->bad = 1;
    } else {
        r->bad = 1;
    }
}

static const char *quant_name(uint32_t ft)
{
    static const char *const names[] = {
        [0] = "F32",     [1] = "F16",     [2] = "Q4_0",    [3] = "Q4_1",    [7] = "Q8_0",
        [8] = "Q5_0",    [9] = "Q5_1",    [10] = "Q2_K",   [11] = "Q3_K_S", [12] = "Q3_K_M",
        [13] = "Q3_K_L", [14] = "Q4_K_S", [15] = "Q4_K_M", [16] = "Q5_K_S", [17] = "Q5_K_M",
        [18] = "Q6_K",   [19] = "IQ2_XXS", [20] = "IQ2_XS", [21] = "Q2_K_S", [22] = "IQ3_XS",
        [23] = "IQ3_XXS", [24] = "IQ1_S", [25] = "IQ4_NL", [26] = "IQ3_S",  [27] = "IQ3_M",
        [28] = "IQ2_S",  [29] = "IQ2_M",  [30] = "IQ4_XS", [31] = "IQ1_M",  [32] = "BF16",
    };
    if (ft < sizeof(names) / sizeof(names[0]) && names[ft]) return names[ft];
    return "unknown";
}

int realm_gguf_read(const char *path, realm_gguf_info_t *out, char *err, size_t err_len)
{
    memset(out, 0, sizeof(*out));
    out->file_type = UINT32_MAX;
    snprintf(out->quantization, sizeof(out->quantization), "unknown");
    FILE *f = fopen(path, "rbe");
    if (!f) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0) out->file_bytes = (uint64_t)st.st_size;
    rd_t r = {.f = f};
    char magic[4];
    if (get(&r, magic, 4) != 0 || memcmp(magic, "GGUF", 4) != 0) {
        snprintf(err, err_len, "%s: not a GGUF model file", path);
        fclose(f);
        return -1;
    }
    out->version = u32(&r);
    uint64_t tensors = u64(&r), kvs = u64(&r);
    if (r.bad || out->version < 2 || tensors > (1u << 24) || kvs > (1u << 24)) {
        snprintf(err, err_len, "%s: unsupported or damaged GGUF header", path);
        fclose(f);
        return -1;
    }
    uint64_t ctx_any = 0;
    for (uint64_t i = 0; i < kvs && !r.bad; i++) {
        char key[256];
        str(&r, key, sizeof(key));
        uint32_t t = u32(&r);
        if (r.bad) break;
        if (strcmp(key, "general.architecture") == 0 && t == T_STRING) {
            str(&r, out->architecture, sizeof(out->architecture));
        } else if (strcmp(key, "general.name") == 0 && t == T_STRING) {
            str(&r, out->name, sizeof(out->name));
        } else if (strcmp(key, "general.file_type") == 0 && scalar_size(t)) {
            out->file_type = (uint32_t)value_int(&r, t);
        } else if (strlen(key) > 15 && strcmp(key + strlen(key) - 15, ".context_length") == 0 &&
                   scalar_size(t)) {
            uint64_t v = value_int(&r, t);
            /* <arch>.context_length; the architecture key usually comes first. */
            size_t alen = strlen(key) - 15;
            if (out->architecture[0] && strlen(out->architecture) == alen &&
                strncmp(key, out->architecture, alen) == 0)
                out->context_length = v;
            else
                ctx_any = v;
        } else {
            skip_value(&r, t);
        }
    }
    if (!out->context_length) out->context_length = ctx_any;
    for (uint64_t i = 0; i < tensors && !r.bad; i++) {
        str(&r, NULL, 0);
        uint32_t dims = u32(&r);
        if (dims == 0 || dims > MAX_DIMS) {
            r.bad = 1;
            break;
        }
        uint64_t n = 1;
        for (uint32_t d = 0; d < dims; d++)
            n *= u64(&r);
        u32(&r); /* type */
        u64(&r); /* offset */
        out->parameters += n;
    }
    fclose(f);
    if (r.bad || !out->architecture[0]) {
        snprintf(err, err_len, "%s: truncated or damaged GGUF header", path);
        return -1;
    }
    if (out->file_type != UINT32_MAX)
        snprintf(out->quantization, sizeof(out->quantization), "%s", quant_name(out->file_type));
    return 0;
}
