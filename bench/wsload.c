/*
 * wsload.c - `realm-wsload`, the WebSocket load generator bench/run.sh drives.
 *
 * Two modes, both against anything that speaks Realm's client protocol
 * (docs: src/proto/message.h): on connect the server sends one welcome text
 * message; a call {"id":..,"function":F,"params":P} is answered with
 * {"id":..,"status":"complete","data":{..}}, after any number of
 * {"id":..,"status":"streaming",..} replies.
 *
 *   load (default)  N connections, closed loop: each sends one call
 *                   (--function, default health; --params, default {}),
 *                   waits for its complete reply, sends the next (after
 *                   --pause-ms, with one connection). After --warmup
 *                   seconds the counters reset and the next --duration
 *                   seconds are measured. Prints one JSON object:
 *                   {connections, duration_s, calls, calls_per_s, p50_us,
 *                    p90_us, p99_us, max_us, client_cpu_s, errors, ...}
 *                   Then no new call goes out and the connections close once
 *                   the calls in flight have their replies (at most
 *                   DRAIN_TIMEOUT_MS): a server may rightly stop the work
 *                   of a call whose connection goes away (Realm stops an
 *                   invocation's environment), which would make the next
 *                   run start cold.
 *   --idle          N connections that only take their welcome, then sit
 *                   there (answering the server's pings) until stdin, when
 *                   it is a pipe, reaches EOF, or SIGINT/SIGTERM arrives.
 *                   Prints "ready" on its own line once every connection has
 *                   its welcome, and a JSON summary when it stops.
 *
 * DESIGN
 *   One thread, one libuv loop, no per-message allocation on the hot path.
 *   The opening handshake (RFC 6455 section 4.1) is written by hand; OpenSSL
 *   supplies the random key and the SHA-1 for checking Sec-WebSocket-Accept.
 *   After the handshake each connection drives a wslay client event context
 *   from memory: bytes read are fed to wslay_event_recv() through recv_cb,
 *   and frames wslay produces are gathered by send_cb into the connection's
 *   out buffer, then written with uv_try_write() (a uv_write() copy only when
 *   the socket is full). Replies are checked cheaply (their id and
 *   "status":"complete"); the first reply on each connection is also parsed
 *   with jansson and checked in full. Latencies are kept as one uint32 of
 *   microseconds per call and sorted at the end.
 *   At most --connect-concurrency connections are between connect() and
 *   their welcome at once, so a burst of 1,000 connects does not overflow
 *   the server's listen backlog and stall in SYN retransmits.
 *
 * LIFETIME
 *   Connections live in one array sized --connections, allocated before the
 *   loop runs and freed after it ends; every handle is embedded in its
 *   owner, and the loop ends only when every handle has closed, so nothing
 *   is freed under a pending callback. A uv_write() copy (write_req_t) frees
 *   itself in its callback.
 *
 * THREADS: one.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <netdb.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <uv.h>
#include <wslay/wslay.h>

#define HANDSHAKE_MAX 4096       /* bytes of a 101 response we accept */
#define READ_BUF_LEN (64 * 1024) /* one shared read buffer (see on_alloc) */
#define CONNECT_TIMEOUT_MS 30000 /* every connection must have its welcome by then */
#define DRAIN_TIMEOUT_MS 30000   /* calls in flight at the end must be answered by then */
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11" /* RFC 6455 section 1.3 */

/* ------------------------------------------------------------------------ */
/* Types                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct load_s load_t;

typedef enum {
    CONN_IDLE,       /* not started yet */
    CONN_CONNECTING, /* connect() issued */
    CONN_HANDSHAKE,  /* request written, reading the 101 response */
    CONN_OPEN,       /* WebSocket open (welcome may still be on its way) */
    CONN_CLOSED,     /* uv_close() issued */
} conn_state_t;

typedef struct {
    uv_tcp_t tcp; /* embedded; the array owning conn outlives the loop */
    uv_connect_t connect_req;
    uv_write_t hs_write_req; /* the handshake request, written once */
    load_t *load;            /* borrowed */
    conn_state_t state;
    wslay_event_context_ptr ws; /* owned; NULL until the handshake completes */
    char key[32];               /* Sec-WebSocket-Key, base64 of 16 random bytes */
    char hs_req[1024];          /* handshake request text (alive until its write cb) */
    char hs[HANDSHAKE_MAX];     /* handshake response bytes so far */
    size_t hs_len;
    const uint8_t *in; /* borrowed: input being fed to wslay (see recv_cb) */
    size_t in_len;
    uint8_t *out; /* owned: frames produced by wslay, not yet written */
    size_t out_len;
    size_t out_cap;
    int has_welcome;
    int is_waiting;         /* a call is in flight */
    int is_checked;         /* one reply has been checked in full */
    int is_in_recv;         /* inside wslay_event_recv(): wslay must not be re-entered */
    uint64_t seq;           /* id of the call in flight */
    uint64_t sent_ns;       /* uv_hrtime() when it was queued */
    char id_needle[40];     /* "id":"<seq>" of the call in flight */
    uv_timer_t pause_timer; /* --pause-ms: the wait before the next call (one connection) */
    size_t id_needle_len;
} conn_t;

typedef struct {
    uint32_t *v; /* owned: one latency in microseconds per measured call */
    size_t len;
    size_t cap;
} samples_t;

struct load_s {
    uv_loop_t *loop;
    struct sockaddr_storage addr;
    char host[256];
    int port;
    char path[256];
    int is_idle;          /* --idle mode */
    const char *function; /* the function called (argv, default "health") */
    const char *params;   /* its params, a JSON text (argv, default "{}") */
    char *msg;            /* owned: room for one call's text */
    size_t msg_cap;
    double pause_ms; /* --pause-ms */
    int is_pausing;  /* the pause timer of conns[0] is initialised */
    size_t conn_cnt;
    size_t connect_concurrency;
    double duration_s;
    double warmup_s;
    conn_t *conns;      /* owned, conn_cnt entries */
    size_t next_conn;   /* next index to connect */
    size_t pending_cnt; /* connecting, not yet welcomed */
    size_t ready_cnt;   /* welcomed */
    size_t alive_cnt;   /* not closed */
    uv_timer_t timer;   /* connect timeout, then warmup and duration */
    uv_signal_t sigint;
    uv_signal_t sigterm;
    uv_pipe_t stdin_pipe;
    int has_stdin_pipe;
    int is_measuring;
    int is_stopping;       /* no more calls; connections are closing */
    int is_draining;       /* measured time is over: no more calls, replies still awaited */
    size_t drain_cnt;      /* calls still in flight while draining */
    int is_failed;         /* a setup error: exit non-zero */
    uint64_t t_connect_ns; /* first connect issued */
    uint64_t t_ready_ns;   /* last welcome arrived */
    uint64_t t_measure_ns; /* measurement window start */
    uint64_t t_end_ns;     /* measurement window end */
    struct rusage ru_start;
    struct rusage ru_end;
    uint64_t calls;  /* replies in the window */
    uint64_t errors; /* bad replies, dropped connections */
    samples_t lat;
    uint64_t mask_state; /* xorshift64 state for frame masks */
    uint8_t read_buf[READ_BUF_LEN];
};

typedef struct {
    uv_write_t req;
    size_t len;
    uint8_t data[]; /* copy of the bytes being written */
} write_req_t;

static void conn_close(conn_t *c);
static void load_stop(load_t *l);
static void conn_start(load_t *l);
static void on_run_start(uv_timer_t *t);
static void on_duration_end(uv_timer_t *t);

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q) {
        fprintf(stderr, "realm-wsload: out of memory\n");
        abort();
    }
    return q;
}

static double rusage_cpu_s(const struct rusage *r)
{
    return (double)r->ru_utime.tv_sec + (double)r->ru_utime.tv_usec / 1e6 +
           (double)r->ru_stime.tv_sec + (double)r->ru_stime.tv_usec / 1e6;
}

static void samples_add(samples_t *s, uint32_t v)
{
    if (s->len == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 65536;
        s->v = xrealloc(s->v, s->cap * sizeof(*s->v));
    }
    s->v[s->len++] = v;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted samples; 0 when there are none. */
static uint32_t samples_pct(const samples_t *s, double pct)
{
    if (s->len == 0) return 0;
    size_t rank = (size_t)((pct / 100.0) * (double)s->len + 0.999999);
    if (rank < 1) rank = 1;
    if (rank > s->len) rank = s->len;
    return s->v[rank - 1];
}

/* ------------------------------------------------------------------------ */
/* Output: gathering wslay's frames and writing them                        */
/* ------------------------------------------------------------------------ */

static void on_write_copy(uv_write_t *req, int status)
{
    write_req_t *w = (write_req_t *)req;
    conn_t *c = req->data;
    free(w);
    if (status < 0 && status != UV_ECANCELED && c->state != CONN_CLOSED) {
        if (!c->load->is_stopping) c->load->errors++;
        conn_close(c);
    }
}

/* Writes everything in c->out: directly when the socket takes it, else a copy. */
static void conn_flush(conn_t *c)
{
    if (c->out_len == 0 || c->state == CONN_CLOSED) return;
    uv_buf_t b = uv_buf_init((char *)c->out, (unsigned)c->out_len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == UV_EAGAIN) n = 0; /* also returned while earlier writes are queued */
    if (n < 0) {
        if (!c->load->is_stopping) c->load->errors++;
        c->out_len = 0;
        conn_close(c);
        return;
    }
    if ((size_t)n < c->out_len) {
        size_t rest = c->out_len - (size_t)n;
        write_req_t *w = xrealloc(NULL, sizeof(*w) + rest);
        memcpy(w->data, c->out + n, rest);
        w->len = rest;
        w->req.data = c;
        uv_buf_t wb = uv_buf_init((char *)w->data, (unsigned)rest);
        if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &wb, 1, on_write_copy) != 0) {
            free(w);
            if (!c->load->is_stopping) c->load->errors++;
            c->out_len = 0;
            conn_close(c);
            return;
        }
    }
    c->out_len = 0;
}

/* ------------------------------------------------------------------------ */
/* wslay callbacks                                                          */
/* ------------------------------------------------------------------------ */

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *user_data)
{
    conn_t *c = user_data;
    if (c->in_len == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < c->in_len ? len : c->in_len;
    memcpy(buf, c->in, n);
    c->in += n;
    c->in_len -= n;
    return (ssize_t)n;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user_data)
{
    conn_t *c = user_data;
    if (c->out_len + len > c->out_cap) {
        while (c->out_len + len > c->out_cap)
            c->out_cap = c->out_cap ? c->out_cap * 2 : 256;
        c->out = xrealloc(c->out, c->out_cap);
    }
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
    return (ssize_t)len;
}

/*
 * RFC 6455 section 10.3 wants masks a hostile page cannot predict, to stop
 * cache poisoning through proxies. A load generator on loopback has no such
 * page, so a fast xorshift64 seeded from RAND_bytes() is enough here.
 */
static int genmask_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *user_data)
{
    conn_t *c = user_data;
    uint64_t *x = &c->load->mask_state;
    for (size_t i = 0; i < len; i++) {
        if (i % 8 == 0) {
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
        }
        buf[i] = (uint8_t)(*x >> (8 * (i % 8)));
    }
    return 0;
}

/* Queues the next call on c. */
static void conn_send_call(conn_t *c)
{
    load_t *l = c->load;
    c->seq++;
    int n =
        snprintf(l->msg, l->msg_cap, "{\"id\":\"%" PRIu64 "\",\"function\":\"%s\",\"params\":%s}",
                 c->seq, l->function, l->params);
    c->id_needle_len =
        (size_t)snprintf(c->id_needle, sizeof(c->id_needle), "\"id\":\"%" PRIu64 "\"", c->seq);
    struct wslay_event_msg m = {
        .opcode = WSLAY_TEXT_FRAME, .msg = (const uint8_t *)l->msg, .msg_length = (size_t)n};
    if (wslay_event_queue_msg(c->ws, &m) != 0) {
        c->load->errors++;
        return;
    }
    c->is_waiting = 1;
    c->sent_ns = uv_hrtime();
}

/* Full check of one reply with jansson; the hot path checks only id and status. */
static int reply_is_valid(const conn_t *c, const uint8_t *msg, size_t len)
{
    json_error_t jerr;
    json_t *root = json_loadb((const char *)msg, len, 0, &jerr);
    if (!root) return 0;
    char want_id[32];
    snprintf(want_id, sizeof(want_id), "%" PRIu64, c->seq);
    const char *id = json_string_value(json_object_get(root, "id"));
    const char *status = json_string_value(json_object_get(root, "status"));
    json_t *data = json_object_get(root, "data");
    int ok = id && strcmp(id, want_id) == 0 && status && strcmp(status, "complete") == 0 &&
             json_is_object(data);
    if (ok && strcmp(c->load->function, "health") == 0) {
        const char *data_status = json_string_value(json_object_get(data, "status"));
        ok = data_status && strcmp(data_status, "ok") == 0 &&
             json_is_string(json_object_get(data, "version")) &&
             json_is_integer(json_object_get(data, "uptime_seconds")) &&
             json_is_integer(json_object_get(data, "connections")) &&
             json_is_integer(json_object_get(data, "in_flight"));
    } else if (ok) {
        /* a deployed function's answer (docs/protocol.md, "Deployed functions") */
        ok = json_is_string(json_object_get(data, "request_id")) &&
             json_object_get(data, "payload") != NULL;
    }
    json_decref(root);
    return ok;
}

/* --pause-ms over: the next call (outside wslay's callbacks, so sent from here). */
static void on_pause_end(uv_timer_t *t)
{
    conn_t *c = t->data;
    if (c->state != CONN_OPEN || c->load->is_stopping || c->load->is_draining) return;
    conn_send_call(c);
    if (wslay_event_send(c->ws) == 0) conn_flush(c);
}

static void on_msg_recv(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                        void *user_data)
{
    conn_t *c = user_data;
    load_t *l = c->load;
    if (arg->opcode != WSLAY_TEXT_FRAME) return; /* pings are answered by wslay */
    if (!c->has_welcome) {
        /* The first message is the welcome; its content is not measured. */
        c->has_welcome = 1;
        l->pending_cnt--;
        l->ready_cnt++;
        if (l->ready_cnt == l->conn_cnt) {
            l->t_ready_ns = uv_hrtime();
            load_stop(l); /* ends the connect phase (see load_stop) */
        } else {
            conn_start(l);
        }
        return;
    }
    if (!c->is_waiting) {
        l->errors++; /* a message nobody asked for */
        return;
    }
    uint64_t now = uv_hrtime();
    int is_ours = memmem(arg->msg, arg->msg_length, c->id_needle, c->id_needle_len) != NULL;
    if (is_ours && memmem(arg->msg, arg->msg_length, "\"status\":\"streaming\"", 20) != NULL)
        return; /* a chunk of the answer; the call ends with its complete reply */
    c->is_waiting = 0;
    int ok = is_ours && memmem(arg->msg, arg->msg_length, "\"status\":\"complete\"", 19) != NULL;
    if (ok && !c->is_checked) {
        ok = reply_is_valid(c, arg->msg, arg->msg_length);
        c->is_checked = 1;
    }
    if (!ok) {
        if (l->errors == 0)
            fprintf(stderr, "realm-wsload: unexpected reply: %.*s\n", (int)arg->msg_length,
                    (const char *)arg->msg);
        l->errors++;
    } else if (l->is_measuring) {
        l->calls++;
        uint64_t us = (now - c->sent_ns) / 1000;
        samples_add(&l->lat, us > UINT32_MAX ? UINT32_MAX : (uint32_t)us);
    }
    if (l->is_stopping) return;
    if (l->is_draining) {
        /* Close everything from a fresh loop iteration (see load_stop). */
        if (--l->drain_cnt == 0) uv_timer_start(&l->timer, on_duration_end, 0, 0);
        return;
    }
    if (l->is_pausing)
        uv_timer_start(&c->pause_timer, on_pause_end, (uint64_t)l->pause_ms, 0);
    else
        conn_send_call(c);
}

/* ------------------------------------------------------------------------ */
/* Connection: connect, handshake, read                                     */
/* ------------------------------------------------------------------------ */

static void on_close(uv_handle_t *h)
{
    conn_t *c = h->data;
    if (c->ws) wslay_event_context_free(c->ws);
    c->ws = NULL;
    free(c->out);
    c->out = NULL;
}

static void conn_close(conn_t *c)
{
    load_t *l = c->load;
    if (c->state == CONN_CLOSED || c->state == CONN_IDLE) return;
    int was_pending = !c->has_welcome;
    c->state = CONN_CLOSED;
    l->alive_cnt--;
    uv_close((uv_handle_t *)&c->tcp, on_close);
    if (l->is_stopping) return;
    /* A connection lost before the end: counted, and fatal while connecting. */
    l->errors++;
    if (was_pending) {
        l->is_failed = 1;
        load_stop(l);
    } else if (l->alive_cnt == 0) {
        load_stop(l);
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    /*
     * One buffer serves every connection: on_read hands all of it to wslay
     * (which copies what it keeps) before returning, and libuv calls
     * on_alloc/on_read pairwise on one thread.
     */
    conn_t *c = h->data;
    *buf = uv_buf_init((char *)c->load->read_buf, READ_BUF_LEN);
}

/* Feeds bytes to wslay and writes whatever it wants to send in return. */
static void conn_feed(conn_t *c, const uint8_t *data, size_t len)
{
    c->in = data;
    c->in_len = len;
    c->is_in_recv = 1;
    int rc = wslay_event_recv(c->ws);
    c->is_in_recv = 0;
    if (rc != 0 || wslay_event_send(c->ws) != 0) {
        conn_close(c);
        return;
    }
    conn_flush(c);
    if (c->state != CONN_CLOSED && !wslay_event_want_read(c->ws) && !wslay_event_want_write(c->ws))
        conn_close(c); /* the peer closed the WebSocket */
}

/* Base64 of SHA-1(key + GUID): the Sec-WebSocket-Accept the server must send. */
static void expected_accept(const char *key, char out[32])
{
    char cat[64 + sizeof(WS_GUID)];
    unsigned char md[SHA_DIGEST_LENGTH];
    int n = snprintf(cat, sizeof(cat), "%s%s", key, WS_GUID);
    SHA1((const unsigned char *)cat, (size_t)n, md);
    EVP_EncodeBlock((unsigned char *)out, md, SHA_DIGEST_LENGTH);
}

/*
 * Checks a complete 101 response head (RFC 6455 section 4.1, client steps
 * 1-4, minus extensions and subprotocols, which we never ask for).
 */
static int handshake_check(const conn_t *c, const char *head, size_t head_len)
{
    if (head_len < 12 || strncmp(head, "HTTP/1.1 101", 12) != 0) return -1;
    char want[32];
    expected_accept(c->key, want);
    const char *p = memchr(head, '\n', head_len);
    const char *end = head + head_len;
    static const char name[] = "sec-websocket-accept:";
    while (p && p + 1 < end) {
        const char *line = p + 1;
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol) break;
        size_t line_len = (size_t)(eol - line);
        if (line_len > sizeof(name) - 1 && strncasecmp(line, name, sizeof(name) - 1) == 0) {
            const char *v = line + sizeof(name) - 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            const char *ve = eol;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            return (size_t)(ve - v) == strlen(want) && memcmp(v, want, strlen(want)) == 0 ? 0 : -1;
        }
        p = eol;
    }
    return -1;
}

static void conn_open_ws(conn_t *c, const uint8_t *rest, size_t rest_len)
{
    static const struct wslay_event_callbacks cbs = {
        .recv_callback = recv_cb,
        .send_callback = send_cb,
        .genmask_callback = genmask_cb,
        .on_msg_recv_callback = on_msg_recv,
    };
    if (wslay_event_context_client_init(&c->ws, &cbs, c) != 0) abort(); /* only ENOMEM */
    c->state = CONN_OPEN;
    if (rest_len > 0) conn_feed(c, rest, rest_len); /* the welcome came with the 101 */
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn_t *c = s->data;
    if (nread == 0) return;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    if (c->state == CONN_OPEN) {
        conn_feed(c, (const uint8_t *)buf->base, (size_t)nread);
        return;
    }
    /* CONN_HANDSHAKE: gather the response head. */
    size_t n = (size_t)nread;
    if (n > sizeof(c->hs) - c->hs_len) {
        fprintf(stderr, "realm-wsload: handshake response too large\n");
        conn_close(c);
        return;
    }
    memcpy(c->hs + c->hs_len, buf->base, n);
    c->hs_len += n;
    const char *eoh = memmem(c->hs, c->hs_len, "\r\n\r\n", 4);
    if (!eoh) return;
    size_t head_len = (size_t)(eoh - c->hs) + 4;
    if (handshake_check(c, c->hs, head_len) != 0) {
        fprintf(stderr, "realm-wsload: bad handshake response: %.*s\n", (int)head_len, c->hs);
        conn_close(c);
        return;
    }
    conn_open_ws(c, (const uint8_t *)c->hs + head_len, c->hs_len - head_len);
}

static void on_handshake_written(uv_write_t *req, int status)
{
    conn_t *c = req->data;
    if (status < 0 && c->state != CONN_CLOSED) conn_close(c);
}

static void on_connect(uv_connect_t *req, int status)
{
    conn_t *c = req->data;
    load_t *l = c->load;
    if (c->state == CONN_CLOSED) return;
    if (status < 0) {
        fprintf(stderr, "realm-wsload: connect to %s:%d: %s\n", l->host, l->port,
                uv_strerror(status));
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    unsigned char raw[16];
    if (RAND_bytes(raw, sizeof(raw)) != 1) abort();
    EVP_EncodeBlock((unsigned char *)c->key, raw, sizeof(raw));
    int n = snprintf(c->hs_req, sizeof(c->hs_req),
                     "GET %s HTTP/1.1\r\n"
                     "Host: %s:%d\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "\r\n",
                     l->path, l->host, l->port, c->key);
    if (n < 0 || (size_t)n >= sizeof(c->hs_req)) abort(); /* host and path are capped at 255 */
    c->state = CONN_HANDSHAKE;
    uv_buf_t b = uv_buf_init(c->hs_req, (unsigned)n);
    c->hs_write_req.data = c;
    if (uv_write(&c->hs_write_req, (uv_stream_t *)&c->tcp, &b, 1, on_handshake_written) != 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
        conn_close(c);
}

/* Starts connections until connect_concurrency are pending or all are started. */
static void conn_start(load_t *l)
{
    while (!l->is_stopping && l->next_conn < l->conn_cnt &&
           l->pending_cnt < l->connect_concurrency) {
        conn_t *c = &l->conns[l->next_conn++];
        c->load = l;
        uv_tcp_init(l->loop, &c->tcp);
        c->tcp.data = c;
        c->connect_req.data = c;
        c->state = CONN_CONNECTING;
        l->pending_cnt++;
        l->alive_cnt++;
        int rc =
            uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&l->addr, on_connect);
        if (rc != 0) {
            fprintf(stderr, "realm-wsload: connect: %s\n", uv_strerror(rc));
            conn_close(c);
            return;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Phases                                                                   */
/* ------------------------------------------------------------------------ */

static void on_handle_closed(uv_handle_t *h)
{
    (void)h;
}

/* Stops everything: no more calls, close frames out, handles closed. */
static void load_shutdown(load_t *l)
{
    if (l->is_stopping) return;
    l->is_stopping = 1;
    if (l->is_measuring) {
        l->t_end_ns = uv_hrtime();
        getrusage(RUSAGE_SELF, &l->ru_end);
        l->is_measuring = 0;
    }
    for (size_t i = 0; i < l->next_conn; i++) {
        conn_t *c = &l->conns[i];
        if (c->state == CONN_CLOSED || c->state == CONN_IDLE) continue;
        if (c->state == CONN_OPEN && !c->is_in_recv) {
            /* A polite close frame (1000); the peer's answer is not awaited. */
            wslay_event_queue_close(c->ws, WSLAY_CODE_NORMAL_CLOSURE, NULL, 0);
            if (wslay_event_send(c->ws) == 0) conn_flush(c);
        }
        conn_close(c);
    }
    uv_close((uv_handle_t *)&l->timer, on_handle_closed);
    if (l->is_pausing) uv_close((uv_handle_t *)&l->conns[0].pause_timer, on_handle_closed);
    uv_close((uv_handle_t *)&l->sigint, on_handle_closed);
    uv_close((uv_handle_t *)&l->sigterm, on_handle_closed);
    if (l->has_stdin_pipe) uv_close((uv_handle_t *)&l->stdin_pipe, on_handle_closed);
}

static void on_duration_end(uv_timer_t *t)
{
    load_shutdown(t->data);
}

/* The measured time is over: stop the clock and the calls, await those in flight. */
static void on_measure_end(uv_timer_t *t)
{
    load_t *l = t->data;
    l->t_end_ns = uv_hrtime();
    getrusage(RUSAGE_SELF, &l->ru_end);
    l->is_measuring = 0;
    l->is_draining = 1;
    for (size_t i = 0; i < l->next_conn; i++)
        if (l->conns[i].state == CONN_OPEN && l->conns[i].is_waiting) l->drain_cnt++;
    uv_timer_start(&l->timer, on_duration_end, l->drain_cnt ? DRAIN_TIMEOUT_MS : 0, 0);
}

static void on_warmup_end(uv_timer_t *t)
{
    load_t *l = t->data;
    l->calls = 0;
    l->lat.len = 0;
    l->is_measuring = 1;
    l->t_measure_ns = uv_hrtime();
    getrusage(RUSAGE_SELF, &l->ru_start);
    uv_timer_start(&l->timer, on_measure_end, (uint64_t)(l->duration_s * 1000.0), 0);
}

static void on_connect_timeout(uv_timer_t *t)
{
    load_t *l = t->data;
    fprintf(stderr, "realm-wsload: only %zu of %zu connections ready after %d ms\n", l->ready_cnt,
            l->conn_cnt, CONNECT_TIMEOUT_MS);
    l->is_failed = 1;
    load_shutdown(l);
}

/*
 * Called when the connect phase ends: every connection has its welcome (the
 * run begins), or one failed (everything stops). Also called when every
 * connection was lost mid-run.
 */
static void load_stop(load_t *l)
{
    if (l->is_stopping) return;
    if (l->is_failed || l->ready_cnt < l->conn_cnt || l->alive_cnt == 0) {
        load_shutdown(l);
        return;
    }
    uv_timer_stop(&l->timer);
    if (l->is_idle) {
        printf("ready\n");
        fflush(stdout);
        return; /* held until stdin EOF or a signal */
    }
    /*
     * The first calls go out from a fresh loop iteration: we are inside the
     * last connection's wslay_event_recv() here, and wslay_event_send() is
     * not to be re-entered from its callbacks.
     */
    uv_timer_start(&l->timer, on_run_start, 0, 0);
}

static void on_run_start(uv_timer_t *t)
{
    load_t *l = t->data;
    for (size_t i = 0; i < l->conn_cnt; i++) {
        conn_t *c = &l->conns[i];
        if (c->state != CONN_OPEN) continue;
        conn_send_call(c);
        if (wslay_event_send(c->ws) == 0) conn_flush(c);
    }
    if (l->warmup_s > 0) {
        uv_timer_start(&l->timer, on_warmup_end, (uint64_t)(l->warmup_s * 1000.0), 0);
    } else {
        on_warmup_end(&l->timer);
    }
}

static void on_signal(uv_signal_t *s, int signum)
{
    load_shutdown(s->data);
}

static void on_stdin_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char sink[256];
    *buf = uv_buf_init(sink, sizeof(sink));
}

static void on_stdin_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    if (nread < 0) load_shutdown(s->data); /* EOF (or error): stop holding */
}

/* ------------------------------------------------------------------------ */
/* Arguments and report                                                     */
/* ------------------------------------------------------------------------ */

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: realm-wsload [options] ws://HOST:PORT/PATH\n"
            "\n"
            "Closed-loop calls over N WebSocket connections (default), or N idle\n"
            "connections held open (--idle). Prints one JSON object on stdout.\n"
            "\n"
            "  -c, --connections N          connections (default 1)\n"
            "  -d, --duration S             measured seconds (default 5)\n"
            "  -w, --warmup S               unmeasured seconds first (default 1)\n"
            "  -f, --function NAME          the function called (default health)\n"
            "  -p, --params JSON            its params, sent as given (default {})\n"
            "  -P, --pause-ms MS            wait MS after each reply (only with -c 1)\n"
            "  -k, --connect-concurrency N  handshakes in progress at once (default 64)\n"
            "  -i, --idle                   hold N idle connections: print \"ready\" once all\n"
            "                               have their welcome, stop on SIGINT/SIGTERM or\n"
            "                               when stdin (if a pipe) reaches EOF\n"
            "  -h, --help                   this help\n");
}

static int parse_positive(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || v < 0) return -1;
    *out = v;
    return 0;
}

/* ws://HOST:PORT[/PATH]; HOST resolved once with getaddrinfo (startup only). */
static int parse_url(load_t *l, const char *url)
{
    if (strncmp(url, "ws://", 5) != 0) return -1;
    const char *h = url + 5;
    const char *colon = strrchr(h, ':');
    const char *slash = strchr(h, '/');
    if (!colon || (slash && colon > slash)) return -1;
    size_t hlen = (size_t)(colon - h);
    if (hlen == 0 || hlen >= sizeof(l->host)) return -1;
    memcpy(l->host, h, hlen);
    l->host[hlen] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || port <= 0 || port > 65535 || (*end != '\0' && *end != '/')) return -1;
    l->port = (int)port;
    snprintf(l->path, sizeof(l->path), "%s", *end ? end : "/");
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    char *host = l->host;
    char unbracketed[256];
    if (host[0] == '[' && hlen > 2 && host[hlen - 1] == ']') {
        snprintf(unbracketed, sizeof(unbracketed), "%.*s", (int)(hlen - 2), host + 1);
        host = unbracketed;
    }
    if (getaddrinfo(host, NULL, &hints, &res) != 0) return -1;
    memcpy(&l->addr, res->ai_addr, res->ai_addrlen);
    if (l->addr.ss_family == AF_INET)
        ((struct sockaddr_in *)&l->addr)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)&l->addr)->sin6_port = htons((uint16_t)port);
    freeaddrinfo(res);
    return 0;
}

static void report(load_t *l)
{
    json_t *o;
    double connect_s = l->t_ready_ns ? (double)(l->t_ready_ns - l->t_connect_ns) / 1e9 : 0;
    if (l->is_idle) {
        o = json_pack("{s:s, s:I, s:I, s:f, s:I}", "mode", "idle", "connections",
                      (json_int_t)l->conn_cnt, "ready", (json_int_t)l->ready_cnt, "connect_s",
                      connect_s, "errors", (json_int_t)l->errors);
    } else {
        double dur =
            l->t_end_ns > l->t_measure_ns ? (double)(l->t_end_ns - l->t_measure_ns) / 1e9 : 0;
        double cpu = l->t_end_ns ? rusage_cpu_s(&l->ru_end) - rusage_cpu_s(&l->ru_start) : 0;
        if (l->lat.len > 0) qsort(l->lat.v, l->lat.len, sizeof(*l->lat.v), cmp_u32);
        o = json_pack("{s:s, s:s, s:I, s:f, s:I, s:f, s:I, s:I, s:I, s:I, s:f, s:f, s:I, s:f}",
                      "mode", "load", "function", l->function, "connections",
                      (json_int_t)l->conn_cnt, "duration_s", dur, "calls", (json_int_t)l->calls,
                      "calls_per_s", dur > 0 ? (double)l->calls / dur : 0.0, "p50_us",
                      (json_int_t)samples_pct(&l->lat, 50), "p90_us",
                      (json_int_t)samples_pct(&l->lat, 90), "p99_us",
                      (json_int_t)samples_pct(&l->lat, 99), "max_us",
                      (json_int_t)(l->lat.len ? l->lat.v[l->lat.len - 1] : 0), "client_cpu_s", cpu,
                      "client_cpu_pct", dur > 0 ? 100.0 * cpu / dur : 0.0, "errors",
                      (json_int_t)l->errors, "connect_s", connect_s);
    }
    char *text = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
    printf("%s\n", text);
    fflush(stdout);
    free(text);
    json_decref(o);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"connections", required_argument, NULL, 'c'},
        {"duration", required_argument, NULL, 'd'},
        {"warmup", required_argument, NULL, 'w'},
        {"connect-concurrency", required_argument, NULL, 'k'},
        {"idle", no_argument, NULL, 'i'},
        {"function", required_argument, NULL, 'f'},
        {"params", required_argument, NULL, 'p'},
        {"pause-ms", required_argument, NULL, 'P'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static load_t l; /* static: read_buf is 64 KiB */
    double v;
    l.conn_cnt = 1;
    l.duration_s = 5;
    l.warmup_s = 1;
    l.connect_concurrency = 64;
    l.function = "health";
    l.params = "{}";
    int ch;
    while ((ch = getopt_long(argc, argv, "c:d:w:k:if:p:P:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
        case 'k':
            if (parse_positive(optarg, &v) != 0 || v < 1 || v > 1e6) {
                fprintf(stderr, "realm-wsload: -%c: '%s' is not a count (1-1000000)\n", ch, optarg);
                return 2;
            }
            if (ch == 'c')
                l.conn_cnt = (size_t)v;
            else
                l.connect_concurrency = (size_t)v;
            break;
        case 'd':
        case 'w':
            if (parse_positive(optarg, &v) != 0 || v > 86400) {
                fprintf(stderr, "realm-wsload: -%c: '%s' is not a number of seconds\n", ch, optarg);
                return 2;
            }
            if (ch == 'd')
                l.duration_s = v;
            else
                l.warmup_s = v;
            break;
        case 'i':
            l.is_idle = 1;
            break;
        case 'f':
            l.function = optarg;
            break;
        case 'p':
            l.params = optarg;
            break;
        case 'P':
            if (parse_positive(optarg, &v) != 0 || v > 3600e3) {
                fprintf(stderr, "realm-wsload: -P: '%s' is not a number of milliseconds\n", optarg);
                return 2;
            }
            l.pause_ms = v;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        return 2;
    }
    if (l.pause_ms > 0 && l.conn_cnt != 1) {
        fprintf(stderr, "realm-wsload: --pause-ms takes one connection (-c 1)\n");
        return 2;
    }
    {
        json_error_t jerr;
        json_t *p = json_loads(l.params, JSON_DECODE_ANY, &jerr);
        if (!p || strchr(l.function, '"') || strchr(l.function, '\\')) {
            fprintf(stderr, "realm-wsload: --function/--params: not a name and a JSON text (%s)\n",
                    p ? "name" : jerr.text);
            json_decref(p);
            return 2;
        }
        json_decref(p);
    }
    l.msg_cap = strlen(l.function) + strlen(l.params) + 64;
    l.msg = xrealloc(NULL, l.msg_cap);
    if (parse_url(&l, argv[optind]) != 0) {
        fprintf(stderr, "realm-wsload: '%s' is not a ws://HOST:PORT/PATH URL\n", argv[optind]);
        return 2;
    }
    if (RAND_bytes((unsigned char *)&l.mask_state, sizeof(l.mask_state)) != 1) abort();
    l.mask_state |= 1; /* xorshift must not start at 0 */
    signal(SIGPIPE, SIG_IGN);

    uv_loop_t loop;
    uv_loop_init(&loop);
    l.loop = &loop;
    l.conns = calloc(l.conn_cnt, sizeof(*l.conns));
    if (!l.conns) abort();
    uv_timer_init(&loop, &l.timer);
    l.timer.data = &l;
    uv_signal_init(&loop, &l.sigint);
    uv_signal_init(&loop, &l.sigterm);
    l.sigint.data = l.sigterm.data = &l;
    uv_signal_start(&l.sigint, on_signal, SIGINT);
    uv_signal_start(&l.sigterm, on_signal, SIGTERM);
    if (l.is_idle && uv_guess_handle(0) == UV_NAMED_PIPE) {
        uv_pipe_init(&loop, &l.stdin_pipe, 0);
        l.stdin_pipe.data = &l;
        if (uv_pipe_open(&l.stdin_pipe, 0) == 0 &&
            uv_read_start((uv_stream_t *)&l.stdin_pipe, on_stdin_alloc, on_stdin_read) == 0) {
            l.has_stdin_pipe = 1;
        } else {
            uv_close((uv_handle_t *)&l.stdin_pipe, NULL);
        }
    }
    if (l.pause_ms > 0 && !l.is_idle) {
        uv_timer_init(&loop, &l.conns[0].pause_timer);
        l.conns[0].pause_timer.data = &l.conns[0];
        l.is_pausing = 1;
    }
    uv_timer_start(&l.timer, on_connect_timeout, CONNECT_TIMEOUT_MS, 0);
    l.t_connect_ns = uv_hrtime();
    conn_start(&l);
    uv_run(&loop, UV_RUN_DEFAULT);

    report(&l);
    int rc = uv_loop_close(&loop);
    if (rc != 0) fprintf(stderr, "realm-wsload: loop closed with handles open\n");
    free(l.conns);
    free(l.lat.v);
    free(l.msg);
    if (l.is_failed) return 1;
    if (!l.is_idle && l.calls == 0) return 1;
    return l.errors ? 1 : 0;
}
