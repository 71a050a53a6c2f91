/* sseload: many concurrent SSE chat streams over HTTP/1.1 keep-alive from one epoll thread.
 *
 *   cc -O2 -o sseload loadtests/sseload.c -lm
 *   ./sseload --host 127.0.0.1 --port 8080 --key sk-bench --model bench --streams 2000 --ramp 1 --rounds 2
 *
 * The compiled counterpart of streamclient.py, for loads where a Python client would be the bottleneck:
 * it costs a few microseconds a read, so the core it shares with the mock upstream stays free for the
 * mock. Stream starts are spread evenly over --ramp seconds; each round opens --streams streams, slot i
 * reusing slot i's keep-alive connection from the round before (the first round is the cold one).
 * Time to first chunk (TTFC) runs from a stream's scheduled start (connecting included, as in
 * streamclient.py) to the first body bytes after the response headers. A stream counts as an error
 * unless it answers 200 and its body holds `data: [DONE]` before the response ends.
 * Prints one line: STREAMS_JSON {...}, the same fields as streamclient.py.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { IDLE, CONNECTING, SENDING, HEADERS, BODY };
enum { E_HTTP, E_INCOMPLETE, E_CONNECT, E_RESET, E_TIMEOUT, E_KINDS };
static const char *ERROR_NAMES[E_KINDS] = {"http_error", "incomplete", "connect_error", "connection_reset",
                                          "timeout"};

typedef struct {
    int fd, state, status, chunked, saw_done, got_first;
    long long body_left; /* Content-Length bodies: bytes still to come; -1 when chunked or read-to-EOF */
    double t0;
    size_t sent, hlen;
    char head[4096];   /* response headers until the blank line */
    char tail[16];     /* last body bytes, for markers cut between reads */
    size_t tail_len;
} Conn;

typedef struct {
    double *ttfc, *total;
    int n_ttfc, n_total, in_flight, peak, errors[E_KINDS];
    long long chunks;
    double wall;
} Round;

static const char *host = "127.0.0.1", *path = "/v1/chat/completions", *key = "sk-bench", *model = "bench";
static int port = 8080, streams = 2000, rounds = 2;
static double ramp = 1.0, timeout_s = 60.0;
static char request[2048];
static size_t request_len;
static int epfd;
static struct sockaddr_in addr;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void watch(Conn *c, int op, unsigned events) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(epfd, op, c->fd, &ev);
}

static void drop(Conn *c) {
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->state = IDLE;
}

static void finish(Conn *c, Round *r, int error) {
    r->in_flight--;
    if (error >= 0) {
        r->errors[error]++;
        drop(c);
        return;
    }
    if (c->status != 200) {
        r->errors[E_HTTP]++;
    } else if (!c->saw_done) {
        r->errors[E_INCOMPLETE]++;
    } else {
        r->total[r->n_total++] = now() - c->t0;
    }
    c->state = IDLE; /* keep-alive: the next round's stream in this slot reuses the connection */
}

/* Scan body bytes: count `data:` events, spot `data: [DONE]` and the chunked body's last chunk. */
static int scan_body(Conn *c, Round *r, const char *p, size_t n) {
    char buf[sizeof c->tail + 65536];
    size_t keep = c->tail_len, len = keep + n, i;
    int ended = 0;
    memcpy(buf, c->tail, keep);
    memcpy(buf + keep, p, n);
    for (i = 0; i + 5 <= len; i++) {
        if (buf[i] != 'd' && buf[i] != '\r') continue;
        if (i + 5 <= len && i + 5 > keep && memcmp(buf + i, "data:", 5) == 0) r->chunks++;
        if (i + 12 <= len && i + 12 > keep && memcmp(buf + i, "data: [DONE]", 12) == 0) c->saw_done = 1;
        if (c->chunked && i + 7 <= len && i + 7 > keep && memcmp(buf + i, "\r\n0\r\n\r\n", 7) == 0) ended = 1;
    }
    c->tail_len = len < 12 ? len : 12;
    memcpy(c->tail, buf + len - c->tail_len, c->tail_len);
    return ended;
}

static long long header_value(const char *head, const char *name) {
    const char *p = strcasestr(head, name);
    return p ? strtoll(p + strlen(name), NULL, 10) : -1;
}

static void on_headers(Conn *c) {
    c->status = atoi(c->head + 9); /* "HTTP/1.1 200 OK" */
    c->chunked = strcasestr(c->head, "\r\ntransfer-encoding: chunked") != NULL;
    c->body_left = c->chunked ? -1 : header_value(c->head, "\r\ncontent-length:");
    c->state = BODY;
    c->tail_len = 0;
    if (c->chunked) { /* a body whose first chunk is the last: "0\r\n\r\n" */
        c->tail[0] = '\r', c->tail[1] = '\n', c->tail_len = 2;
    }
}

static void on_readable(Conn *c, Round *r) {
    char buf[65536];
    for (;;) {
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);
        if (n < 0) {
            if (errno == EAGAIN) return;
            if (c->state == IDLE) { drop(c); return; }
            finish(c, r, E_RESET);
            return;
        }
        if (n == 0) {
            if (c->state == IDLE) { drop(c); return; }
            if (c->state == BODY && c->body_left < 0 && !c->chunked) { finish(c, r, -1); drop(c); return; }
            finish(c, r, E_RESET);
            return;
        }
        if (c->state == IDLE) { drop(c); return; } /* bytes nobody asked for */
        const char *p = buf;
        size_t len = (size_t)n;
        if (c->state == HEADERS) {
            size_t room = sizeof c->head - 1 - c->hlen, take = len < room ? len : room;
            memcpy(c->head + c->hlen, p, take);
            c->head[c->hlen + take] = 0;
            char *end = strstr(c->head, "\r\n\r\n");
            if (!end) {
                c->hlen += take;
                if (c->hlen >= sizeof c->head - 1) { finish(c, r, E_HTTP); return; }
                continue;
            }
            size_t used = (size_t)(end + 4 - c->head) - c->hlen;
            end[2] = 0;
            p += used, len -= used;
            on_headers(c);
            if (c->status == 200 && len == 0) continue;
        }
        if (len && c->status == 200 && !c->got_first) {
            r->ttfc[r->n_ttfc++] = now() - c->t0;
            c->got_first = 1;
        }
        int ended = scan_body(c, r, p, len);
        if (c->body_left >= 0) {
            c->body_left -= (long long)len;
            ended = c->body_left <= 0;
        }
        if (ended) { finish(c, r, -1); return; }
    }
}

static void send_request(Conn *c, Round *r) {
    while (c->sent < request_len) {
        ssize_t n = send(c->fd, request + c->sent, request_len - c->sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN) { watch(c, EPOLL_CTL_MOD, EPOLLOUT); return; }
            finish(c, r, E_RESET);
            return;
        }
        c->sent += (size_t)n;
    }
    c->state = HEADERS;
    c->hlen = 0;
    watch(c, EPOLL_CTL_MOD, EPOLLIN);
}

static void start(Conn *c, Round *r) {
    c->t0 = now();
    c->sent = 0, c->saw_done = 0, c->got_first = 0, c->status = 0;
    r->in_flight++;
    if (r->in_flight > r->peak) r->peak = r->in_flight;
    if (c->fd >= 0) { send_request(c, r); return; }
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        finish(c, r, E_CONNECT);
        return;
    }
    c->state = CONNECTING;
    watch(c, EPOLL_CTL_ADD, EPOLLOUT);
}

static void on_writable(Conn *c, Round *r) {
    if (c->state == CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) { finish(c, r, E_CONNECT); return; }
        c->state = SENDING;
    }
    send_request(c, r);
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void print_ms(const char *name, double *v, int n, double pct) {
    if (!n) { printf("\"%s\": null", name); return; }
    int i = pct >= 100 ? n - 1 : (int)ceil(pct / 100 * n) - 1;
    if (i < 0) i = 0;
    printf("\"%s\": %.2f", name, v[i] * 1000);
}

static void print_round(Round *r) {
    int errors = 0, first = 1;
    for (int k = 0; k < E_KINDS; k++) errors += r->errors[k];
    qsort(r->ttfc, (size_t)r->n_ttfc, sizeof(double), cmp);
    qsort(r->total, (size_t)r->n_total, sizeof(double), cmp);
    printf("{\"ok\": %d, \"errors\": %d, \"error_kinds\": {", r->n_total, errors);
    for (int k = 0; k < E_KINDS; k++)
        if (r->errors[k]) printf("%s\"%s\": %d", first ? "" : ", ", ERROR_NAMES[k], r->errors[k]), first = 0;
    printf("}, \"peak_concurrency\": %d, \"chunks\": %lld, \"wall_s\": %.3f, ", r->peak, r->chunks, r->wall);
    print_ms("ttfc_p50_ms", r->ttfc, r->n_ttfc, 50), printf(", ");
    print_ms("ttfc_p99_ms", r->ttfc, r->n_ttfc, 99), printf(", ");
    print_ms("ttfc_max_ms", r->ttfc, r->n_ttfc, 100), printf(", ");
    print_ms("total_p50_ms", r->total, r->n_total, 50), printf(", ");
    print_ms("total_p99_ms", r->total, r->n_total, 99), printf("}");
}

static void run_round(Conn *conns, Round *r) {
    struct epoll_event events[512];
    double t0 = now(), next_check = t0 + 1;
    int started = 0;
    r->ttfc = calloc((size_t)streams, sizeof(double));
    r->total = calloc((size_t)streams, sizeof(double));
    while (started < streams || r->in_flight > 0) {
        double t = now();
        while (started < streams && t >= t0 + started * ramp / streams) start(&conns[started++], r);
        int wait_ms = 100;
        if (started < streams) {
            double due = t0 + started * ramp / streams - t;
            wait_ms = due <= 0 ? 0 : (int)ceil(due * 1000);
        }
        int n = epoll_wait(epfd, events, 512, wait_ms);
        for (int i = 0; i < n; i++) {
            Conn *c = events[i].data.ptr;
            if (c->fd < 0) continue;
            if (c->state == CONNECTING || c->state == SENDING) on_writable(c, r);
            else on_readable(c, r);
        }
        if ((t = now()) >= next_check) { /* streams over their time: a timeout, as in streamclient.py */
            for (int i = 0; i < started; i++)
                if (conns[i].state != IDLE && t - conns[i].t0 > timeout_s) finish(&conns[i], r, E_TIMEOUT);
            next_check = t + 1;
        }
    }
    r->wall = now() - t0;
}

int main(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "--host")) host = v;
        else if (!strcmp(a, "--port")) port = atoi(v);
        else if (!strcmp(a, "--path")) path = v;
        else if (!strcmp(a, "--key")) key = v;
        else if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--streams")) streams = atoi(v);
        else if (!strcmp(a, "--ramp")) ramp = atof(v);
        else if (!strcmp(a, "--rounds")) rounds = atoi(v);
        else if (!strcmp(a, "--timeout")) timeout_s = atof(v);
        else { fprintf(stderr, "unknown option %s\n", a); return 2; }
    }
    if (streams < 1 || rounds < 1 || (argc - 1) % 2) { fprintf(stderr, "usage: see the top of sseload.c\n"); return 2; }
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) { fprintf(stderr, "--host must be an IPv4 address\n"); return 2; }
    char body[512];
    int body_len = snprintf(body, sizeof body, "{\"model\": \"%s\", \"stream\": true, \"messages\": "
                            "[{\"role\": \"user\", \"content\": \"Say something short.\"}]}", model);
    request_len = (size_t)snprintf(request, sizeof request,
                                   "POST %s HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: Bearer %s\r\n"
                                   "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                                   path, host, port, key, body_len, body);
    epfd = epoll_create1(0);
    Conn *conns = calloc((size_t)streams, sizeof(Conn));
    Round *rs = calloc((size_t)rounds, sizeof(Round));
    for (int i = 0; i < streams; i++) conns[i].fd = -1;
    for (int k = 0; k < rounds; k++) {
        run_round(conns, &rs[k]);
        if (k + 1 < rounds) usleep(200000);
    }
    int total_errors = 0;
    for (int k = 0; k < rounds; k++)
        for (int e = 0; e < E_KINDS; e++) total_errors += rs[k].errors[e];
    printf("STREAMS_JSON {\"client\": \"sseload\", \"rounds\": [");
    for (int k = 0; k < rounds; k++) {
        if (k) printf(", ");
        print_round(&rs[k]);
    }
    printf("], \"measured\": ");
    print_round(&rs[rounds - 1]); /* sorts again: harmless */
    printf(", \"errors\": %d}\n", total_errors);
    return 0;
}
