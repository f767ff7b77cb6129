/*
 * test_gguf.c - the GGUF header reader on files written here byte by byte:
 * every field it reports, values it must skip (string arrays), and files it
 * must refuse (not GGUF, truncated, missing).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/buf.h"
#include "model/gguf.h"

static void u32(realm_buf_t *b, uint32_t v)
{
    realm_buf_append(b, &v, 4);
}

static void u64(realm_buf_t *b, uint64_t v)
{
    realm_buf_append(b, &v, 8);
}

static void str(realm_buf_t *b, const char *s)
{
    u64(b, strlen(s));
    realm_buf_appends(b, s);
}

/* A llama-like header: 5 key/values (one a string array), two tensors. */
static void build(realm_buf_t *b)
{
    realm_buf_appends(b, "GGUF");
    u32(b, 3);
    u64(b, 2); /* tensors */
    u64(b, 5); /* key/values */
    str(b, "general.architecture");
    u32(b, 8);
    str(b, "llama");
    str(b, "general.name");
    u32(b, 8);
    str(b, "tiny-test");
    str(b, "tokenizer.ggml.tokens");
    u32(b, 9);
    u32(b, 8);
    u64(b, 3);
    str(b, "<s>");
    str(b, "</s>");
    str(b, "hello");
    str(b, "llama.context_length");
    u32(b, 4);
    u32(b, 256);
    str(b, "general.file_type");
    u32(b, 4);
    u32(b, 15);
    str(b, "token_embd.weight");
    u32(b, 2);
    u64(b, 4);
    u64(b, 8);
    u32(b, 0);
    u64(b, 0);
    str(b, "output_norm.weight");
    u32(b, 1);
    u64(b, 8);
    u32(b, 0);
    u64(b, 128);
}

static char path[64];

static int write_file(const void *data, size_t len)
{
    snprintf(path, sizeof(path), "/tmp/realm-gguf-XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0) return -1;
    int rc = write(fd, data, len) == (ssize_t)len ? 0 : -1;
    close(fd);
    return rc;
}

static void test_reads_the_header(void **state)
{
    (void)state;
    realm_buf_t b;
    realm_buf_init(&b);
    build(&b);
    assert_int_equal(write_file(b.data, b.len), 0);
    realm_gguf_info_t i;
    char err[256];
    assert_int_equal(realm_gguf_read(path, &i, err, sizeof(err)), 0);
    assert_string_equal(i.architecture, "llama");
    assert_string_equal(i.name, "tiny-test");
    assert_int_equal(i.context_length, 256);
    assert_int_equal(i.file_type, 15);
    assert_string_equal(i.quantization, "Q4_K_M");
    assert_int_equal(i.parameters, 4 * 8 + 8);
    assert_int_equal(i.version, 3);
    assert_int_equal(i.file_bytes, b.len);
    unlink(path);
    realm_buf_dispose(&b);
}

static void test_refuses_bad_files(void **state)
{
    (void)state;
    realm_gguf_info_t i;
    char err[256];
    assert_int_equal(realm_gguf_read("/nonexistent/x.gguf", &i, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "No such file"));
    assert_int_equal(write_file("not a model at all", 18), 0);
    assert_int_equal(realm_gguf_read(path, &i, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not a GGUF"));
    unlink(path);
    /* Every truncation of a good header is refused, never read past. */
    realm_buf_t b;
    realm_buf_init(&b);
    build(&b);
    for (size_t cut = 4; cut < b.len; cut += 7) {
        assert_int_equal(write_file(b.data, cut), 0);
        assert_int_equal(realm_gguf_read(path, &i, err, sizeof(err)), -1);
        unlink(path);
    }
    realm_buf_dispose(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_the_header),
        cmocka_unit_test(test_refuses_bad_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
