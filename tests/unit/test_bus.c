/*
 * test_bus.c - the cluster's message bus (bus/bus.h) against a real
 * nats-server started by the test on a free port: messages reach the loop
 * thread in order, request/reply, no responders answered at once, a
 * timeout, a queue group sharing messages, the inbox, a gather of every
 * subscriber's answer (all, or those within the time), a server killed and
 * started again (the bus says disconnected, reconnects, its subscriptions
 * work again), and close answering a request in flight.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fixture.h"

#include "base/err.h"
#include "bus/bus.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- a nats-server of the test's own ---- */

typedef struct {
    pid_t pid;
    int port;
    FILE *log; /* its stderr, kept open: Go exits on a write to a closed stderr */
} nats_t;

/* Starts nats-server on 127.0.0.1 (port 0: any free one) and reads its log until it listens. */
static void nats_start(nats_t *n, int port)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    char port_arg[16];
    snprintf(port_arg, sizeof(port_arg), "%d", port ? port : -1);
    pid_t pid = fork();
    assert_cmp_int(pid, >=, 0);
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        execlp("nats-server", "nats-server", "-a", "127.0.0.1", "-p", port_arg, (char *)NULL);
        /* Debian installs it in /usr/sbin, which a user's PATH may lack. */
        execl("/usr/sbin/nats-server", "nats-server", "-a", "127.0.0.1", "-p", port_arg,
              (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    char line[512];
    n->pid = pid;
    n->port = 0;
    while (fgets(line, sizeof(line), f)) {
        const char *p = strstr(line, "Listening for client connections on 127.0.0.1:");
        if (p) {
            n->port = atoi(p + strlen("Listening for client connections on 127.0.0.1:"));
            break;
        }
    }
    n->log = f;
    if (n->port <= 0) fail_msg("nats-server did not start (is it installed?)");
}

static void nats_kill(nats_t *n)
{
    kill(n->pid, SIGKILL);
    waitpid(n->pid, NULL, 0);
    fclose(n->log);
}

/* ---- what the callbacks saw ---- */

typedef struct {
    uv_loop_t loop;
    nats_t nats;
    char url[64];
    int connected[2], disconnects[2];
    char got[16][64];
    int got_cnt;
    int replies, reply_status;
    char reply[64];
    int inbox_cnt;
    int closed;
} fx_t;

static void on_state_a(int is_connected, void *ud)
{
    fx_t *f = ud;
    f->connected[0] = is_connected;
    if (!is_connected) f->disconnects[0]++;
}

static void on_state_b(int is_connected, void *ud)
{
    fx_t *f = ud;
    f->connected[1] = is_connected;
    if (!is_connected) f->disconnects[1]++;
}

static void on_msg(const char *subject, const char *reply, const char *data, size_t len, void *ud)
{
    (void)reply;
    fx_t *f = ud;
    assert_int_equal(data[len], '\0');
    if (f->got_cnt < 16)
        snprintf(f->got[f->got_cnt], sizeof(f->got[0]), "%s=%.*s", subject, (int)len, data);
    f->got_cnt++;
}

static realm_bus_t *echo_bus; /* the bus the echo service answers on */

static void on_echo(const char *subject, const char *reply, const char *data, size_t len,
                    void *ud)
{
    (void)subject, (void)ud;
    char out[80];
    int n = snprintf(out, sizeof(out), "pong:%.*s", (int)len, data);
    assert_non_null(reply);
    assert_int_equal(realm_bus_publish(echo_bus, reply, NULL, out, (size_t)n), 0);
}

/* Answers "<its bus name>:<data>" on the bus it was subscribed with (ud). */
typedef struct {
    realm_bus_t *bus;
    const char *name;
} replier_t;

static void on_named(const char *subject, const char *reply, const char *data, size_t len,
                     void *ud)
{
    (void)subject;
    replier_t *r = ud;
    char out[80];
    int n = snprintf(out, sizeof(out), "%s:%.*s", r->name, (int)len, data);
    realm_bus_publish(r->bus, reply, NULL, out, (size_t)n);
}

typedef struct {
    int calls, status;
    size_t n;
    char got[4][32];
} gathered_t;

static void on_gathered(int status, size_t n, const char *const *datas, const size_t *lens,
                        void *ud)
{
    gathered_t *g = ud;
    g->calls++;
    g->status = status;
    g->n = n;
    for (size_t i = 0; i < n && i < 4; i++)
        snprintf(g->got[i], sizeof(g->got[i]), "%.*s", (int)lens[i], datas[i]);
}

static int by_text(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void on_silent(const char *subject, const char *reply, const char *data, size_t len,
                      void *ud)
{
    (void)subject, (void)reply, (void)data, (void)len, (void)ud;
}

static void on_reply(int status, const char *data, size_t len, void *ud)
{
    fx_t *f = ud;
    f->replies++;
    f->reply_status = status;
    snprintf(f->reply, sizeof(f->reply), "%.*s", (int)len, data);
}

static void on_inbox(const char *subject, const char *reply, const char *data, size_t len,
                     void *ud)
{
    (void)subject, (void)reply, (void)data, (void)len;
    ((fx_t *)ud)->inbox_cnt++;
}

static void on_closed(void *data)
{
    ((fx_t *)data)->closed++;
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

/* Runs the loop until *flag reaches want (10 s at most; a timer wakes it). */
static void run_until_at(fx_t *f, const int *flag, int want, int line)
{
    uv_timer_t tick;
    uv_timer_init(&f->loop, &tick);
    uv_timer_start(&tick, on_tick, 10, 10);
    uint64_t until = uv_hrtime() + 10000000000ull;
    while (*flag < want && uv_hrtime() < until)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    if (*flag < want) fail_msg("line %d: waited 10 s for %d, have %d", line, want, *flag);
}

#define run_until(f, flag, want) run_until_at((f), (flag), (want), __LINE__)

static realm_bus_t *open_bus(fx_t *f, const char *name, realm_bus_state_cb cb)
{
    realm_bus_config_t c = {.urls = f->url, .name = name, .reconnect_wait_ms = 50};
    char err[256] = "";
    realm_bus_t *b = realm_bus_open(&f->loop, &c, cb, f, err, sizeof(err));
    if (!b) fail_msg("open: %s", err);
    return b;
}

static void test_bus(void **state)
{
    (void)state;
    fx_t *f = calloc(1, sizeof(*f));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    nats_start(&f->nats, 0);
    snprintf(f->url, sizeof(f->url), "nats://127.0.0.1:%d", f->nats.port);

    /* Bad URL lists are refused with a message. */
    char err[256] = "";
    realm_bus_config_t bad = {.urls = "http://x:1"};
    assert_null(realm_bus_open(&f->loop, &bad, NULL, NULL, err, sizeof(err)));
    assert_contains(err, "nats://");

    realm_bus_t *a = open_bus(f, "a", on_state_a), *b = open_bus(f, "b", on_state_b);
    run_until(f, &f->connected[0], 1);
    run_until(f, &f->connected[1], 1);
    assert_true(realm_bus_is_connected(a));

    /* Messages in order, on the loop. */
    assert_int_equal(realm_bus_subscribe(b, "t.>", NULL, on_msg, f), 0);
    echo_bus = b;
    assert_int_equal(realm_bus_subscribe(b, "svc", NULL, on_echo, f), 0);
    assert_int_equal(realm_bus_subscribe(b, "slow", NULL, on_silent, f), 0);
    /* The subscriptions reach the server before anything is sent to them. */
    assert_int_equal(realm_bus_request(b, "svc", "sync", 4, 5000, on_reply, f), 0);
    run_until(f, &f->replies, 1);
    for (int i = 0; i < 5; i++) {
        char m[8];
        int n = snprintf(m, sizeof(m), "m%d", i);
        assert_int_equal(realm_bus_publish(a, i % 2 ? "t.odd" : "t.even", NULL, m, (size_t)n), 0);
    }
    run_until(f, &f->got_cnt, 5);
    assert_string_equal(f->got[0], "t.even=m0");
    assert_string_equal(f->got[1], "t.odd=m1");
    assert_string_equal(f->got[4], "t.even=m4");

    /* Request/reply; nobody listening is said at once; a silent one times out. */
    f->replies = 0;
    assert_int_equal(realm_bus_request(a, "svc", "ping", 4, 5000, on_reply, f), 0);
    assert_int_equal(f->replies, 0); /* never before request returns */
    run_until(f, &f->replies, 1);
    assert_int_equal(f->reply_status, 0);
    assert_string_equal(f->reply, "pong:ping");
    uint64_t t0 = uv_hrtime();
    assert_int_equal(realm_bus_request(a, "nobody.here", "x", 1, 5000, on_reply, f), 0);
    run_until(f, &f->replies, 2);
    assert_int_equal(f->reply_status, REALM_ERR_BUS_NO_RESPONDERS);
    assert_cmp_int((uv_hrtime() - t0) / 1000000, <, 4000);
    assert_int_equal(realm_bus_request(a, "slow", "x", 1, 100, on_reply, f), 0);
    run_until(f, &f->replies, 3);
    assert_int_equal(f->reply_status, REALM_ERR_BUS_TIMEOUT);

    /* A queue group: each message to one member only. */
    realm_bus_t *c = open_bus(f, "c", NULL);
    f->got_cnt = 0;
    assert_int_equal(realm_bus_subscribe(b, "q", "g", on_msg, f), 0);
    assert_int_equal(realm_bus_subscribe(c, "q", "g", on_msg, f), 0);
    f->replies = 0;
    assert_int_equal(realm_bus_request(b, "svc", "s", 1, 5000, on_reply, f), 0);
    run_until(f, &f->replies, 1);
    for (int i = 0; i < 20; i++)
        assert_int_equal(realm_bus_publish(a, "q", NULL, "x", 1), 0);
    run_until(f, &f->got_cnt, 20);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(f->got_cnt, 20);

    /* A gather: every subscriber answers; all wanted, or those within the time. */
    replier_t rb = {b, "b"}, rc = {c, "c"};
    assert_int_equal(realm_bus_subscribe(b, "all.q", NULL, on_named, &rb), 0);
    assert_int_equal(realm_bus_subscribe(c, "all.q", NULL, on_named, &rc), 0);
    f->replies = 0;
    assert_int_equal(realm_bus_request(c, "svc", "s", 1, 5000, on_reply, f), 0);
    run_until(f, &f->replies, 1);
    gathered_t g = {0};
    assert_int_equal(realm_bus_gather(a, "all.q", "x", 1, 2, 5000, on_gathered, &g), 0);
    assert_int_equal(g.calls, 0);
    run_until(f, &g.calls, 1);
    assert_int_equal(g.n, 2);
    qsort(g.got, 2, sizeof(g.got[0]), by_text);
    assert_string_equal(g.got[0], "b:x");
    assert_string_equal(g.got[1], "c:x");
    uint64_t t1 = uv_hrtime();
    g = (gathered_t){0};
    assert_int_equal(realm_bus_gather(a, "all.q", "y", 1, 5, 300, on_gathered, &g), 0);
    run_until(f, &g.calls, 1);
    assert_int_equal(g.status, 0);
    assert_int_equal(g.n, 2);
    assert_cmp_int((uv_hrtime() - t1) / 1000000, >=, 250);
    g = (gathered_t){0};
    assert_int_equal(realm_bus_gather(a, "none.q", "z", 1, 3, 5000, on_gathered, &g), 0);
    run_until(f, &g.calls, 1);
    assert_int_equal(g.n, 0);

    /* The inbox. */
    realm_bus_set_inbox(a, on_inbox, f);
    char subj[128];
    snprintf(subj, sizeof(subj), "%sstream.7", realm_bus_inbox(a));
    assert_prefix(subj, "_INBOX.");
    assert_int_equal(realm_bus_publish(b, subj, NULL, "c", 1), 0);
    run_until(f, &f->inbox_cnt, 1);

    /* The server dies and comes back on its port: the bus reconnects and
     * its subscriptions work again. */
    int port = f->nats.port;
    nats_kill(&f->nats);
    run_until(f, &f->disconnects[0], 1);
    assert_false(realm_bus_is_connected(a));
    nats_start(&f->nats, port);
    run_until(f, &f->connected[0], 1);
    run_until(f, &f->connected[1], 1);
    f->replies = 0;
    f->reply_status = -1;
    /* The first request after a reconnect may race the server learning
     * b's subscriptions again: ask until one is answered. */
    for (int i = 0; i < 50 && f->reply_status != 0; i++) {
        f->reply_status = -1;
        assert_int_equal(realm_bus_request(a, "svc", "again", 5, 5000, on_reply, f), 0);
        run_until(f, &f->replies, i + 1);
    }
    assert_int_equal(f->reply_status, 0);
    assert_string_equal(f->reply, "pong:again");

    /* Close answers the request in flight, then the bus is gone. */
    f->replies = 0;
    assert_int_equal(realm_bus_request(a, "slow", "x", 1, 60000, on_reply, f), 0);
    realm_bus_close(a, on_closed, f);
    assert_int_equal(f->replies, 1);
    assert_int_equal(f->reply_status, REALM_ERR_SHUTTING_DOWN);
    realm_bus_close(b, on_closed, f);
    realm_bus_close(c, on_closed, f);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->closed, 3);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    nats_kill(&f->nats);
    free(f);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
