/*
 * test_limits.c - the robustness pieces of issue 13 below the server:
 * realm_str_has_ctl (names with control characters), the memory trim policy
 * (realm_mem_idle_tick), and on a real loop with real sockets, a listener's
 * connection limit with its canned refusal, the HTTP server's idle
 * connections closed oldest first, and a guard that answers later
 * (REALM_HTTP_GUARD_LATER, realm_http_res_resume): pipelined requests wait
 * their turn, and a connection gone meanwhile frees the response.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fixture.h"

#include "base/alloc.h"
#include "base/str.h"
#include "http/server.h"
#include "net/listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- names ---- */

static void test_has_ctl(void **state)
{
    (void)state;
    assert_int_equal(realm_str_has_ctl("hello-world_1", 13), 0);
    assert_int_equal(realm_str_has_ctl("", 0), 0);
    /* UTF-8 above 0x7f is not a control character. */
    assert_int_equal(realm_str_has_ctl("caf\xc3\xa9", 5), 0);
    static const char bad[] = {0x00, 0x01, 0x09, 0x0a, 0x0d, 0x1b, 0x1f, 0x7f};
    for (size_t i = 0; i < sizeof(bad); i++) {
        char s[8] = "vic?tim";
        s[3] = bad[i];
        if (!realm_str_has_ctl(s, 7)) fail_msg("byte 0x%02x not seen", (unsigned char)bad[i]);
    }
    /* The length is what counts, not a NUL: "victim\0junk" is not "victim". */
    assert_int_equal(realm_str_has_ctl("victim\0junk", 11), 1);
    assert_int_equal(realm_str_has_ctl("victim\0junk", 6), 0);
    assert_int_equal(realm_str_has_ctl(" !~", 3), 0);
}

/* ---- memory ---- */

static void test_trim_policy(void **state)
{
    (void)state;
    realm_mem_idle_t m;
    realm_mem_idle_init(&m, 4);
    /* Quiet from the start: nothing to give back. */
    assert_int_equal(realm_mem_idle_tick(&m, 0), 0);
    assert_int_equal(realm_mem_idle_tick(&m, 0), 0);
    /* A burst, then quiet: one trim on the first quiet tick, then none. */
    assert_int_equal(realm_mem_idle_tick(&m, 10), 0);
    assert_int_equal(realm_mem_idle_tick(&m, 25), 0);
    assert_int_equal(realm_mem_idle_tick(&m, 25), 1);
    assert_int_equal(realm_mem_idle_tick(&m, 25), 0);
    assert_int_equal(realm_mem_idle_tick(&m, 25), 0);
    assert_int_equal(m.trims_cnt, 1);
    /* Busy without a pause: a trim every 4 busy ticks all the same. */
    int trims = 0;
    for (uint64_t a = 26; a < 26 + 12; a++)
        trims += realm_mem_idle_tick(&m, a);
    assert_int_equal(trims, 3);
    /* Never while busy when busy_trim_ticks is 0. */
    realm_mem_idle_init(&m, 0);
    trims = 0;
    for (uint64_t a = 1; a < 100; a++)
        trims += realm_mem_idle_tick(&m, a);
    assert_int_equal(trims, 0);
    assert_int_equal(realm_mem_idle_tick(&m, 99), 1);
    /* And trimming itself is safe to call at any time. */
    realm_mem_trim();
}

/* ---- listener limit and idle connections, on a loop ---- */

typedef struct {
    uv_loop_t loop;
    realm_http_server_t *http;
    realm_listener_t *l;
} fixture_t;

static void on_conn(realm_listener_t *l, realm_conn_t *c, void *data)
{
    (void)l;
    fixture_t *f = data;
    realm_http_server_attach(f->http, c);
}

static int make_room(realm_listener_t *l, void *data)
{
    (void)l;
    return realm_http_server_close_oldest_idle(data);
}

static void fixture_init(fixture_t *f, size_t max_idle, size_t max_conns, const char *refusal)
{
    assert_int_equal(uv_loop_init(&f->loop), 0);
    realm_http_limits_t lim = {.max_header_bytes = 8192,
                               .max_body_bytes = 1024,
                               .header_timeout_ms = 60000,
                               .idle_timeout_ms = 60000,
                               .max_idle_conns = max_idle};
    f->http = realm_http_server_new("test", &lim);
    assert_int_equal(realm_listener_new(&f->loop, "test", "127.0.0.1", 0, on_conn, f, &f->l), 0);
    realm_listener_set_limit(f->l, max_conns, refusal, refusal ? strlen(refusal) : 0);
    realm_listener_set_room_cb(f->l, make_room, f->http);
}

static void close_conn(realm_conn_t *c, void *data)
{
    (void)data;
    realm_conn_close(c, 0);
}

static void fixture_dispose(fixture_t *f)
{
    realm_listener_each(f->l, close_conn, NULL);
    realm_listener_free(f->l);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    realm_http_server_free(f->http);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

/* Runs the loop until the listener has taken n connections in all (5 s at most). */
static void run_until_seen(fixture_t *f, uint64_t n)
{
    for (int i = 0; i < 5000; i++) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        if (realm_listener_accepted_cnt(f->l) + realm_listener_rejected_cnt(f->l) >= n) return;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    fail_msg(
        "the listener saw %llu connections, not %llu",
        (unsigned long long)(realm_listener_accepted_cnt(f->l) + realm_listener_rejected_cnt(f->l)),
        (unsigned long long)n);
}

/* A blocking client socket connected to the fixture's port. */
static int client(fixture_t *f)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_cmp_int(fd, >=, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)realm_listener_port(f->l))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

/* Reads until EOF (the loop runs in between, so the server can act). */
static size_t read_to_eof(fixture_t *f, int fd, char *buf, size_t cap)
{
    size_t got = 0;
    for (int i = 0; i < 5000; i++) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        ssize_t n = recv(fd, buf + got, cap - got - 1, MSG_DONTWAIT);
        if (n == 0) break;
        if (n > 0) got += (size_t)n;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) break;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    buf[got] = '\0';
    return got;
}

static void test_idle_closed_oldest_first(void **state)
{
    (void)state;
    fixture_t f;
    fixture_init(&f, 2, 100, NULL);
    int c[3];
    for (int i = 0; i < 3; i++) {
        c[i] = client(&f); /* silent: idle from the start */
        run_until_seen(&f, (uint64_t)i + 1);
    }
    /* The third made the oldest go. */
    assert_int_equal(realm_listener_open_cnt(f.l), 2);
    assert_int_equal(realm_http_server_idle_cnt(f.http), 2);
    char buf[64];
    assert_int_equal(read_to_eof(&f, c[0], buf, sizeof(buf)), 0);
    /* A busy connection (mid-header) is not idle: never closed for room. */
    assert_int_equal(send(c[1], "GET / HTTP/1.1\r\n", 16, 0), 16);
    for (int i = 0; i < 5000 && realm_http_server_idle_cnt(f.http) != 1; i++)
        uv_run(&f.loop, UV_RUN_NOWAIT), usleep(1000);
    assert_int_equal(realm_http_server_idle_cnt(f.http), 1);
    int d = client(&f), e = client(&f);
    run_until_seen(&f, 5);
    /* c[2] was the oldest idle one; c[1] is busy and stays. */
    assert_int_equal(read_to_eof(&f, c[2], buf, sizeof(buf)), 0);
    assert_int_equal(realm_listener_open_cnt(f.l), 3);
    assert_int_equal(realm_http_server_idle_cnt(f.http), 2);
    for (int i = 0; i < 3; i++)
        close(c[i]);
    close(d);
    close(e);
    fixture_dispose(&f);
}

static void test_limit_refuses_with_canned_answer(void **state)
{
    (void)state;
    static const char refusal[] = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"
                                  "Content-Length: 0\r\nConnection: close\r\n\r\n";
    fixture_t f;
    fixture_init(&f, 10, 2, refusal);
    int c[2];
    for (int i = 0; i < 2; i++) {
        c[i] = client(&f);
        /* Busy: half a header block, so no idle one can make room. */
        assert_int_equal(send(c[i], "GET / HTTP/1.1\r\n", 16, 0), 16);
        run_until_seen(&f, (uint64_t)i + 1);
    }
    /* Both have been read from (they were idle until their bytes arrived). */
    for (int i = 0; i < 5000 && realm_http_server_idle_cnt(f.http) != 0; i++)
        uv_run(&f.loop, UV_RUN_NOWAIT), usleep(1000);
    assert_int_equal(realm_http_server_idle_cnt(f.http), 0);
    int extra = client(&f);
    run_until_seen(&f, 3);
    char buf[256];
    size_t n = read_to_eof(&f, extra, buf, sizeof(buf));
    assert_int_equal(n, strlen(refusal));
    assert_string_equal(buf, refusal);
    assert_int_equal(realm_listener_rejected_cnt(f.l), 1);
    assert_int_equal(realm_listener_open_cnt(f.l), 2);
    /* Room again once one goes: the next is taken. */
    close(c[0]);
    for (int i = 0; i < 1000 && realm_listener_open_cnt(f.l) != 1; i++)
        uv_run(&f.loop, UV_RUN_NOWAIT), usleep(1000);
    assert_int_equal(realm_listener_open_cnt(f.l), 1);
    int again = client(&f);
    run_until_seen(&f, 4);
    assert_int_equal(realm_listener_accepted_cnt(f.l), 3);
    assert_int_equal(realm_listener_open_cnt(f.l), 2);
    close(c[1]);
    close(extra);
    close(again);
    fixture_dispose(&f);
}

/* ---- a guard that answers later ---- */

static realm_http_res_t *waiting[4];
static int waiting_cnt, routed_cnt, resumed_cnt;

static int later_guard(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    (void)req, (void)data;
    assert_cmp_int(waiting_cnt, <, 4);
    waiting[waiting_cnt++] = res;
    return REALM_HTTP_GUARD_LATER;
}

static void routed(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    (void)data;
    routed_cnt++;
    char body[128];
    int n = snprintf(body, sizeof(body), "routed %s %s", req->path, req->principal);
    realm_http_res_send(res, 200, "text/plain", body, (size_t)n);
}

static void let_in(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    resumed_cnt++;
    snprintf(req->principal, sizeof(req->principal), "%s", (const char *)data);
    realm_http_req_route(req, res);
}

static void keep_out(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    (void)req, (void)data;
    resumed_cnt++;
    realm_http_res_send(res, 403, "text/plain", "no", 2);
}

/* Runs the loop and reads until buf holds want (5 s at most). */
static void read_until(fixture_t *f, int fd, char *buf, size_t cap, const char *want)
{
    size_t got = strlen(buf);
    for (int i = 0; i < 5000 && !strstr(buf, want); i++) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        ssize_t n = recv(fd, buf + got, cap - got - 1, MSG_DONTWAIT);
        if (n > 0) got += (size_t)n;
        buf[got] = '\0';
        if (n == 0) break;
        if (n < 0) usleep(1000);
    }
    if (!strstr(buf, want)) fail_msg("no '%s' in '%s'", want, buf);
}

static void run_until_waiting(fixture_t *f, int n)
{
    for (int i = 0; i < 5000 && waiting_cnt < n; i++)
        uv_run(&f->loop, UV_RUN_NOWAIT), usleep(1000);
    assert_int_equal(waiting_cnt, n);
}

static void test_guard_answers_later(void **state)
{
    (void)state;
    fixture_t f;
    fixture_init(&f, 10, 100, NULL);
    realm_http_server_route(f.http, "GET", "/r/{x}", 0, routed, NULL);
    realm_http_server_set_guard(f.http, later_guard, NULL);
    waiting_cnt = routed_cnt = resumed_cnt = 0;

    /* Two pipelined requests: the second waits behind the first's guard. */
    int c = client(&f);
    const char two[] = "GET /r/1 HTTP/1.1\r\nHost: t\r\n\r\nGET /r/2 HTTP/1.1\r\nHost: t\r\n\r\n";
    assert_int_equal(send(c, two, sizeof(two) - 1, 0), (ssize_t)sizeof(two) - 1);
    run_until_waiting(&f, 1);
    for (int i = 0; i < 20; i++)
        uv_run(&f.loop, UV_RUN_NOWAIT);
    char buf[2048] = "";
    assert_int_equal(recv(c, buf, sizeof(buf) - 1, MSG_DONTWAIT), -1); /* nothing yet */
    assert_int_equal(waiting_cnt, 1);
    assert_int_equal(realm_http_res_resume(waiting[0], let_in, "alice"), 1);
    read_until(&f, c, buf, sizeof(buf), "routed /r/1 alice");
    /* The second's guard runs now; refused, the connection stays usable. */
    run_until_waiting(&f, 2);
    assert_int_equal(realm_http_res_resume(waiting[1], keep_out, NULL), 1);
    read_until(&f, c, buf, sizeof(buf), "HTTP/1.1 403");
    assert_int_equal(routed_cnt, 1);
    const char three[] = "GET /r/3 HTTP/1.1\r\nHost: t\r\n\r\n";
    assert_int_equal(send(c, three, sizeof(three) - 1, 0), (ssize_t)sizeof(three) - 1);
    run_until_waiting(&f, 3);
    assert_int_equal(realm_http_res_resume(waiting[2], let_in, "bob"), 1);
    read_until(&f, c, buf, sizeof(buf), "routed /r/3 bob");
    close(c);

    /* The client is gone while its request waits: resume frees it, runs nothing. */
    int d = client(&f);
    const char four[] = "GET /r/4 HTTP/1.1\r\nHost: t\r\n\r\n";
    assert_int_equal(send(d, four, sizeof(four) - 1, 0), (ssize_t)sizeof(four) - 1);
    run_until_waiting(&f, 4);
    struct linger lg = {1, 0}; /* a reset: a FIN alone still wants its answers */
    setsockopt(d, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(d);
    for (int i = 0; i < 5000 && realm_listener_open_cnt(f.l) > 0; i++)
        uv_run(&f.loop, UV_RUN_NOWAIT), usleep(1000);
    assert_int_equal(realm_listener_open_cnt(f.l), 0);
    int before = resumed_cnt;
    assert_int_equal(realm_http_res_resume(waiting[3], let_in, "carol"), 0);
    assert_int_equal(resumed_cnt, before);
    assert_int_equal(routed_cnt, 2);
    fixture_dispose(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_has_ctl),
        cmocka_unit_test(test_trim_policy),
        cmocka_unit_test(test_idle_closed_oldest_first),
        cmocka_unit_test(test_limit_refuses_with_canned_answer),
        cmocka_unit_test(test_guard_answers_later),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
