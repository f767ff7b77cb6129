/* bench/functions/bootstrap.c - a no-op `provided` runtime for bench/invoke.py.
 * Speaks the Lambda runtime API over plain HTTP/1.1 with one keep-alive socket:
 * GET /2018-06-01/runtime/invocation/next, then POST .../ID/response "{}". */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

static char host[256];
static int port;
static int fd = -1;

static int conn(void) {
    struct sockaddr_in a = {0};
    int one = 1;
    if (fd >= 0) close(fd);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) return -1;
    return connect(fd, (struct sockaddr *)&a, sizeof a);
}

static int sendall(const char *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads one response; copies the request id header into id (if any). */
static int readresp(char *id, size_t idn) {
    static char buf[1 << 20];
    size_t got = 0;
    char *end = NULL;
    long clen = 0;
    while (!end) {
        ssize_t r = read(fd, buf + got, sizeof buf - 1 - got);
        if (r <= 0) return -1;
        got += (size_t)r;
        buf[got] = 0;
        end = strstr(buf, "\r\n\r\n");
        if (!end && got >= sizeof buf - 1) return -1;
    }
    *end = 0;
    for (char *l = strstr(buf, "\r\n"); l; l = strstr(l + 2, "\r\n")) {
        char *h = l + 2;
        if (!strncasecmp(h, "content-length:", 15)) clen = strtol(h + 15, NULL, 10);
        if (id && !strncasecmp(h, "lambda-runtime-aws-request-id:", 30)) {
            char *v = h + 30, *e;
            while (*v == ' ') v++;
            e = strstr(v, "\r\n");
            size_t n = e ? (size_t)(e - v) : strlen(v);
            if (n >= idn) n = idn - 1;
            memcpy(id, v, n);
            id[n] = 0;
        }
    }
    size_t body = got - (size_t)(end + 4 - buf);
    while ((long)body < clen) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r <= 0) return -1;
        body += (size_t)r;
    }
    return 0;
}

int main(void) {
    const char *api = getenv("AWS_LAMBDA_RUNTIME_API");
    char req[1024], id[256];
    if (!api) return 1;
    const char *c = strrchr(api, ':');
    if (!c) return 1;
    snprintf(host, sizeof host, "%.*s", (int)(c - api), api);
    if (!strcmp(host, "localhost")) strcpy(host, "127.0.0.1");
    port = atoi(c + 1);
    if (conn() < 0) return 1;
    for (;;) {
        int n = snprintf(req, sizeof req,
                         "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: %s\r\n\r\n", api);
        id[0] = 0;
        if (sendall(req, (size_t)n) < 0 || readresp(id, sizeof id) < 0) {
            if (conn() < 0) return 1;
            continue;
        }
        if (!id[0]) continue;
        n = snprintf(req, sizeof req,
                     "POST /2018-06-01/runtime/invocation/%s/response HTTP/1.1\r\nHost: %s\r\n"
                     "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
                     id, api);
        if (sendall(req, (size_t)n) < 0 || readresp(NULL, 0) < 0) {
            if (conn() < 0) return 1;
        }
    }
}
