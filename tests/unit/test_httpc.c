/*
 * test_httpc.c - unit tests for httpc/: the blocking client against a
 * scripted server thread on 127.0.0.1 (interim answers, the kept header,
 * bodies by length, chunks and EOF, the caps, keep-alive and reconnecting,
 * a refused connection, the deadline, a streamed chunked request).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fixture.h"

#include "httpc/httpc.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- the scripted server ---- */

#define MAX_STEPS 4

typedef struct {
    const char *until;  /* the request is complete once what was read ends with this */
    const char *answer; /* written back; NULL: say nothing, wait for the client to close */
    int is_close;       /* close the connection after answering */
} step_t;

typedef struct {
    int lfd;
    char port[8];
    step_t steps[MAX_STEPS];
    size_t steps_cnt;
    int accepts;
    atomic_int closes;          /* connections the script closed */
    realm_buf_t got[MAX_STEPS]; /* each request as received */
    pthread_t thread;
} srv_t;

static int ends_with(const realm_buf_t *b, const char *s)
{
    size_t n = strlen(s);
    return b->len >= n && memcmp(b->data + b->len - n, s, n) == 0;
}

static void *serve(void *arg)
{
    srv_t *s = arg;
    int fd = -1;
    for (size_t i = 0; i < s->steps_cnt; i++) {
        if (fd < 0) {
            fd = accept(s->lfd, NULL, NULL);
            if (fd < 0) return NULL;
            s->accepts++;
        }
        char buf[4096];
        while (!ends_with(&s->got[i], s->steps[i].until)) {
            ssize_t n = read(fd, buf, sizeof(buf));
            if (n <= 0) break;
            realm_buf_append(&s->got[i], buf, (size_t)n);
        }
        if (!s->steps[i].answer) {
            while (read(fd, buf, sizeof(buf)) > 0) {
            }
        } else if (write(fd, s->steps[i].answer, strlen(s->steps[i].answer)) < 0) {
            break;
        }
        if (!s->steps[i].answer || s->steps[i].is_close) {
            close(fd);
            fd = -1;
            atomic_fetch_add(&s->closes, 1);
        }
    }
    if (fd >= 0) close(fd);
    return NULL;
}

static void srv_start(srv_t *s, const step_t *steps, size_t n)
{
    memset(s, 0, sizeof(*s));
    for (size_t i = 0; i < MAX_STEPS; i++)
        realm_buf_init(&s->got[i]);
    memcpy(s->steps, steps, n * sizeof(*steps));
    s->steps_cnt = n;
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_cmp_int(s->lfd, >=, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(s->lfd, 4), 0);
    socklen_t len = sizeof(sa);
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&sa, &len), 0);
    snprintf(s->port, sizeof(s->port), "%u", ntohs(sa.sin_port));
    assert_int_equal(pthread_create(&s->thread, NULL, serve, s), 0);
}

/* Waits for the script to end (s->got stays readable until srv_free). */
static void srv_stop(srv_t *s)
{
    pthread_join(s->thread, NULL);
    close(s->lfd);
}

static void srv_free(srv_t *s)
{
    for (size_t i = 0; i < MAX_STEPS; i++)
        realm_buf_dispose(&s->got[i]);
}

static const realm_httpc_opts_t opts = {
    .max_body = 1024, .max_head = 1024, .keep_header = "X-Kept"};

static int get(realm_httpc_t *c, int timeout_ms)
{
    realm_buf_t head;
    realm_buf_init(&head);
    realm_httpc_head(c, &head, "GET", "/a?b=1");
    realm_buf_appends(&head, "\r\n");
    int rc = realm_httpc_request(c, head.data, head.len, NULL, 0, timeout_ms);
    realm_buf_dispose(&head);
    return rc;
}

/* ---- tests ---- */

static void test_interim_then_final_with_body(void **state)
{
    step_t steps[] = {{"BODY",
                       "HTTP/1.1 100 Continue\r\nX-Kept: interim\r\n\r\n"
                       "HTTP/1.1 201 Created\r\nx-kept: abc\r\nContent-Length: 5\r\n\r\nhello",
                       1}};
    srv_t s;
    srv_start(&s, steps, 1);
    realm_httpc_t *c = realm_httpc_new("127.0.0.1", s.port, &opts);
    realm_buf_t head;
    realm_buf_init(&head);
    realm_httpc_head(c, &head, "POST", "/x");
    realm_buf_appends(&head, "Content-Length: 4\r\n\r\n");
    assert_int_equal(realm_httpc_request(c, head.data, head.len, "BODY", 4, 5000), 0);
    assert_int_equal(realm_httpc_status(c), 201);
    size_t len;
    assert_string_equal(realm_httpc_header(c, &len), "abc");
    assert_int_equal(len, 3);
    assert_bytes_equal(realm_httpc_body(c)->data, realm_httpc_body(c)->len, "hello", 5);
    assert_true(realm_httpc_is_answered(c));
    realm_buf_t taken;
    realm_buf_init(&taken);
    realm_httpc_swap_body(c, &taken);
    assert_string_equal(taken.data, "hello");
    assert_int_equal(realm_httpc_body(c)->len, 0);
    realm_buf_dispose(&taken);
    realm_httpc_free(c);
    srv_stop(&s);
    char want[128];
    snprintf(want, sizeof(want),
             "POST /x HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nContent-Length: 4\r\n\r\nBODY", s.port);
    assert_bytes_equal(s.got[0].data, s.got[0].len, want, strlen(want));
    srv_free(&s);
    realm_buf_dispose(&head);
}

static void test_body_to_eof_and_no_kept_header(void **state)
{
    step_t steps[] = {{"\r\n\r\n", "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil eof", 1}};
    srv_t s;
    srv_start(&s, steps, 1);
    realm_httpc_t *c = realm_httpc_new("127.0.0.1", s.port, &opts);
    assert_int_equal(get(c, 5000), 0);
    assert_int_equal(realm_httpc_status(c), 200);
    assert_null(realm_httpc_header(c, NULL));
    assert_string_equal(realm_httpc_body(c)->data, "until eof");
    srv_stop(&s);
    realm_httpc_free(c);
    srv_free(&s);
}

static void test_request_bytes(void **state)
{
    step_t steps[] = {{"\r\n\r\n", "HTTP/1.1 204 No Content\r\n\r\n", 1}};
    srv_t s;
    srv_start(&s, steps, 1);
    realm_httpc_t *c = realm_httpc_new("127.0.0.1", s.port, &opts);
    assert_int_equal(get(c, 5000), 0);
    assert_int_equal(realm_httpc_status(c), 204);
    realm_httpc_free(c);
    srv_stop(&s);
    char want[128];
    snprintf(want, sizeof(want), "GET /a?b=1 HTTP/1.1\r\nHost: 127.0.0.1:%s\r\n\r\n", s.port);
    assert_bytes_equal(s.got[0].data, s.got[0].len, want, strlen(want));
    srv_free(&s);
}

static void test_body_cap(void **state)
{
    step_t steps[] = {{"\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", 1}};
    srv_t s;
    srv_start(&s, steps, 1);
    realm_httpc_opts_t small = {.max_body = 4, .max_head = 1024, .keep_header = NULL};
    realm_httpc_t *c = realm_httpc_new("127.0.0.1", s.port, &small);
    assert_int_equal(get(c, 5000), REALM_HTTPC_EPROTO);
    assert_string_equal(realm_httpc_strerror(c),
                        "bad response from the server: response body too large");
    realm_httpc_free(c);
    srv_stop(&s);
    srv_free(&s);
}

static int collect(const char *bytes, size_t len, void *data)
{
    realm_buf_t *b = data;
    realm_buf_append(b, bytes, len);
    return b->len >= 9; /* stops past 8 bytes (see test_on_body) */
}

/* on_body takes a 2xx body as it comes (past max_body); other answers are kept. */
static void test_on_body(void **state)
{
    step_t steps[] = {
        {"\r\n\r\n",
         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
         0},
        {"\r\n\r\n", "HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope", 0},
        {"\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nabcdstopmore", 1},
    };
    srv_t s;
    srv_start(&s, steps, 3);
    realm_buf_t got;
    realm_buf_init(&got);
    realm_httpc_opts_t o = {.max_body = 4, .max_head = 1024, .on_body = collect, .body_data = &got};
    realm_httpc_t *c = realm_httpc_new("127.0.0.1", s.port, &o);
    assert_int_equal(get(c, 5000), 0);
    assert_int_equal(realm_httpc_status(c), 200);
    assert_int_equal(got.len, 5);
    assert_memory_equal(got.data, "abcde", 5);
    assert_int_equal(realm_httpc_body(c)->len, 0);
    assert_int_equal(get(c, 5000), 0);
    assert_int_equal(realm_httpc_status(c), 404);
    assert_int_equal(got.len, 5); /* not a 2xx: kept as the body */
    assert_string_equal(realm_httpc_body(c)->data, "nope");
    realm_buf_reset(&got);
    assert_int_equal(get(c, 5000), REALM_HTTPC_EPROTO);
    assert_string_equal(realm_httpc_strerror(c),
                        "bad response from the server: stopped by the caller");
    realm_httpc_free(c);
    srv_stop(&s);
    srv_free(&s);
    realm_buf_dispose(&got);
}

static void test_head_cap(void **state)
{
    step_t steps[] = {{"\r\n\r\n",
                       "HTTP/1.1 200 OK\r\nX-Pad: 0123456789012345678901234567890123456789\r\n\r\n",
                       1}};
    srv_t s;
    srv_start(&s, steps, 1);
    realm_httpc_opts_t small = {.max_body = 1024, .max_head = 32, .keep_header = NULL};
    realm_httpc_t *c = realm_httpc_new("127.0.0.1", s.port, &small);
    assert_int_equal(get(c, 5000), REALM_HTTPC_EPROTO);
    assert_string_equal(realm_httpc_strerror(c),
                        "bad response from the server: response header block too large");
    realm_httpc_free(c);
    srv_stop(&s);
    srv_free(&s);
}

static void test_cut_short_and_not_http(void **state)
{
    step_t steps[] = {
        {"\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 1},
        {"\r\n\r\n", "SSH-2.0-OpenSSH\r\n", 1},
        {"\r\n\r\n", "", 1},
    };
    srv_t s;
    srv_start(&s, steps, 3);
    realm_httpc_t *c = realm_httpc_new("127.0.0.1", s.port, &opts);
    assert_int_equal(get(c, 5000), REALM_HTTPC_EPROTO);
    assert_prefix(realm_httpc_strerror(c), "bad response from the server: ");
    assert_int_equal(get(c, 5000), REALM_HTTPC_EPROTO);
    assert_prefix(realm_httpc_strerror(c), "bad response from the server: ");
    /* EOF before any answer byte: EIO (what a caller may retry). */
    assert_int_equal(get(c, 5000), REALM_HTTPC_EIO);
    assert_false(realm_httpc_is_answered(c));
    assert_string_equal(realm_httpc_strerror(c),
                        "the server closed the connection before the response was complete");
    realm_httpc_free(c);
    srv_stop(&s);
    assert_int_equal(s.accepts, 3);
    srv_free(&s);
}

static void test_keep_alive_then_reconnect(void **state)
{
    step_t steps[] = {
        {"\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na", 0},
        {"\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb", 1}, /* then closes */
        {"\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nc", 1},
    };
    srv_t s;
    srv_start(&s, steps, 3);
    realm_httpc_t *c = realm_httpc_new("127.0.0.1", s.port, &opts);
    assert_int_equal(get(c, 5000), 0);
    assert_string_equal(realm_httpc_body(c)->data, "a");
    assert_int_equal(get(c, 5000), 0);
    assert_string_equal(realm_httpc_body(c)->data, "b");
    /* Once the server has closed, its FIN is in: the next request sees it and reconnects. */
    for (int i = 0; i < 5000 && atomic_load(&s.closes) < 1; i++)
        usleep(1000);
    assert_int_equal(get(c, 5000), 0);
    assert_string_equal(realm_httpc_body(c)->data, "c");
    realm_httpc_free(c);
    srv_stop(&s);
    assert_int_equal(s.accepts, 2);
    srv_free(&s);
}

static void test_connection_refused(void **state)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t len = sizeof(sa);
    getsockname(fd, (struct sockaddr *)&sa, &len);
    char port[8];
    snprintf(port, sizeof(port), "%u", ntohs(sa.sin_port));
    close(fd); /* bound, then released: nothing listens there */
    realm_httpc_t *c = realm_httpc_new("127.0.0.1", port, &opts);
    assert_int_equal(get(c, 5000), REALM_HTTPC_ECONNECT);
    assert_string_equal(realm_httpc_strerror(c), "Connection refused");
    assert_int_equal(realm_httpc_status(c), 0);
    realm_httpc_free(c);
    c = realm_httpc_new("no-such-host.invalid", "80", &opts);
    assert_int_equal(get(c, 5000), REALM_HTTPC_ECONNECT);
    assert_prefix(realm_httpc_strerror(c), "cannot resolve 'no-such-host.invalid': ");
    realm_httpc_free(c);
}

static void test_deadline(void **state)
{
    step_t steps[] = {{"\r\n\r\n", NULL, 1}}; /* reads the request, never answers */
    srv_t s;
    srv_start(&s, steps, 1);
    realm_httpc_t *c = realm_httpc_new("127.0.0.1", s.port, &opts);
    assert_int_equal(get(c, 200), REALM_HTTPC_EIO);
    assert_string_equal(realm_httpc_strerror(c), "timed out after 0 s waiting for the response");
    realm_httpc_free(c); /* closes: the server thread sees EOF and ends */
    srv_stop(&s);
    srv_free(&s);
}

static void test_stream(void **state)
{
    step_t steps[] = {
        {"0\r\nX-T: 1\r\n\r\n", "HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok", 0},
        {"0\r\n\r\n", "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n", 1}};
    srv_t s;
    srv_start(&s, steps, 2);
    realm_httpc_t *c = realm_httpc_new("127.0.0.1", s.port, &opts);
    static const char head[] = "POST /r HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_int_equal(realm_httpc_stream_begin(c, head, strlen(head), 0), 0);
    assert_int_equal(realm_httpc_stream_chunk(c, "ab", 2), 0);
    assert_int_equal(realm_httpc_stream_chunk(c, "", 0), 0); /* sends nothing */
    char big[3000];
    memset(big, 'x', sizeof(big));
    assert_int_equal(realm_httpc_stream_chunk(c, big, sizeof(big)), 0);
    assert_int_equal(realm_httpc_stream_end(c, "X-T: 1\r\n", 8), 0);
    assert_int_equal(realm_httpc_status(c), 202);
    assert_string_equal(realm_httpc_body(c)->data, "ok");
    /* The same connection, no trailers. */
    assert_int_equal(realm_httpc_stream_begin(c, head, strlen(head), 0), 0);
    assert_int_equal(realm_httpc_stream_end(c, NULL, 0), 0);
    assert_int_equal(realm_httpc_status(c), 202);
    realm_httpc_free(c);
    srv_stop(&s);
    assert_int_equal(s.accepts, 1);
    srv_free(&s);
}

static void test_stream_bytes(void **state)
{
    step_t steps[] = {
        {"0\r\nX-T: 1\r\n\r\n", "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n", 1}};
    srv_t s;
    srv_start(&s, steps, 1);
    realm_httpc_t *c = realm_httpc_new("127.0.0.1", s.port, &opts);
    static const char head[] = "POST /r HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_int_equal(realm_httpc_stream_begin(c, head, strlen(head), 0), 0);
    assert_int_equal(realm_httpc_stream_chunk(c, "ab", 2), 0);
    assert_int_equal(realm_httpc_stream_chunk(c, "0123456789abcdefg", 17), 0);
    assert_int_equal(realm_httpc_stream_end(c, "X-T: 1\r\n", 8), 0);
    realm_httpc_free(c);
    srv_stop(&s);
    static const char want[] = "POST /r HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                               "2\r\nab\r\n11\r\n0123456789abcdefg\r\n0\r\nX-T: 1\r\n\r\n";
    assert_bytes_equal(s.got[0].data, s.got[0].len, want, strlen(want));
    srv_free(&s);
}

static void test_stream_on_closed_client(void **state)
{
    realm_httpc_t *c = realm_httpc_new("127.0.0.1", "1", &opts);
    assert_int_equal(realm_httpc_stream_chunk(c, "a", 1), REALM_HTTPC_EIO);
    assert_int_equal(realm_httpc_stream_end(c, NULL, 0), REALM_HTTPC_EIO);
    realm_httpc_free(c);
    realm_httpc_free(NULL);
}

static void test_head_brackets_ipv6(void **state)
{
    realm_httpc_t *c = realm_httpc_new("::1", "8080", &opts);
    realm_buf_t head;
    realm_buf_init(&head);
    realm_httpc_head(c, &head, "GET", "/");
    assert_string_equal(head.data, "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n");
    realm_buf_dispose(&head);
    realm_httpc_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_interim_then_final_with_body),
        cmocka_unit_test(test_body_to_eof_and_no_kept_header),
        cmocka_unit_test(test_request_bytes),
        cmocka_unit_test(test_body_cap),
        cmocka_unit_test(test_head_cap),
        cmocka_unit_test(test_cut_short_and_not_http),
        cmocka_unit_test(test_keep_alive_then_reconnect),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_stream),
        cmocka_unit_test(test_stream_bytes),
        cmocka_unit_test(test_on_body),
        cmocka_unit_test(test_stream_on_closed_client),
        cmocka_unit_test(test_head_brackets_ipv6),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
