/* replay_client.c - `smtptap replay-client CAPTURE.jsonl --to [tls:|starttls:]HOST:PORT`:
 * the recorded client's side sent again to a server, with its pipelining groups and its
 * messages (replay_client_plan.c picks and builds them), each reply printed next to the
 * recorded one. Blocking POSIX code with OpenSSL on a socket: it runs alone, before any
 * event loop. */
#include "smtptap/replay_client.h"

#include <errno.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "smtptap/buf.h"
#include "smtptap/capture_diff.h"
#include "smtptap/capture_read.h"
#include "smtptap/parse.h"
#include "smtptap/replay_client_plan.h"
#include "smtptap/smtp.h"
#include "smtptap/tls.h"

enum { EX_USAGE_ = 64, EX_DATAERR_ = 65, EX_NOINPUT_ = 66, EX_UNAVAILABLE_ = 69 };

static const char usage[] =
    "Usage: smtptap replay-client [--insecure] [--timeout DURATION] CAPTURE.jsonl\n"
    "                             --to [tls:|starttls:]HOST:PORT\n"
    "Sends the client's side of a session captured with --format jsonl to a server again:\n"
    "its commands with their pipelining groups, and its messages (the capture's lines when\n"
    "it was made with -v, else a synthetic body of the recorded size, said so). Prints each\n"
    "reply next to the recorded one; '!' marks a reply of another class (2xx/3xx/4xx/5xx).\n"
    "tls: implicit TLS; starttls: STARTTLS after the first EHLO (then EHLO again).\n"
    "\n"
    "      --to [tls:|starttls:]HOST:PORT  the server\n"
    "      --insecure             do not verify the server's certificate\n"
    "      --timeout DURATION     how long to wait for each reply (default 30s)\n"
    "\n"
    "Exit status: 0 every reply of the recorded class, 1 one differs, 64 usage error, 65 a\n"
    "file that is no jsonl capture of one whole session, 66 a file that cannot be read,\n"
    "69 the server cannot be reached.\n";

struct conn {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    struct smtp_reply_parser replies;
    char host[HOST_MAX];
};

struct run {
    struct conn c;
    const struct capture_dialog *d;
    size_t differ, compared;
    struct buf out; /* the table */
};

static int usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "smtptap replay-client: %s%s\n%s", what, arg, usage);
    return EX_USAGE_;
}

/* ---- the connection ------------------------------------------------------------------ */

static int tcp_connect(const struct hostport *hp, uint64_t timeout_ms, char *err, size_t size)
{
    char port[8];
    snprintf(port, sizeof port, "%u", hp->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *a;
    int rc = getaddrinfo(hp->host, port, &hints, &res);
    if (rc) {
        snprintf(err, size, "cannot resolve %s: %s", hp->host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0) continue;
        struct timeval tv = {(time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000) * 1000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(fd, a->ai_addr, a->ai_addrlen) < 0) {
            snprintf(err, size, "cannot connect to %s:%u: %s", hp->host, hp->port, strerror(errno));
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    return fd;
}

static int start_tls(struct conn *c, char *err, size_t size)
{
    c->ssl = SSL_new(c->ctx);
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_tlsext_host_name(c->ssl, c->host);
    SSL_set1_host(c->ssl, c->host);
    if (SSL_connect(c->ssl) == 1) return 0;
    unsigned long e = ERR_get_error();
    long v = SSL_get_verify_result(c->ssl);
    snprintf(err, size, "TLS handshake with %s failed: %s", c->host,
             v != X509_V_OK ? X509_verify_cert_error_string(v)
             : e            ? ERR_reason_error_string(e)
                            : "the connection closed");
    return -1;
}

static bool send_bytes(struct conn *c, const void *p, size_t n)
{
    const char *b = p;
    while (n) {
        ssize_t w = c->ssl ? SSL_write(c->ssl, b, (int)(n > 1 << 20 ? 1 << 20 : n))
                           : send(c->fd, b, n, MSG_NOSIGNAL);
        if (w <= 0) return false;
        b += w, n -= (size_t)w;
    }
    return true;
}

/* The next reply (its bytes copied into out), or false when the server closed or the
 * timeout passed. */
static bool read_reply(struct conn *c, struct buf *out)
{
    for (;;) {
        struct smtp_reply r;
        if (smtp_reply_next(&c->replies, &r)) {
            buf_append(out, r.bytes, r.len);
            if (!r.partial) return true;
            continue;
        }
        char chunk[16384];
        ssize_t n =
            c->ssl ? SSL_read(c->ssl, chunk, sizeof chunk) : recv(c->fd, chunk, sizeof chunk, 0);
        if (n <= 0) return false;
        smtp_reply_feed(&c->replies, (const uint8_t *)chunk, (size_t)n);
    }
}

/* ---- the table ----------------------------------------------------------------------- */

static int code_of(const struct buf *b)
{
    const uint8_t *p = buf_head(b);
    if (buf_size(b) < 3) return 0;
    return (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
}

static void reply_cell(int code, const uint8_t *reply, size_t len, char *out, size_t size)
{
    if (!code) {
        snprintf(out, size, "(no reply)");
        return;
    }
    char enh[16];
    capture_enhanced_code(reply, len, enh, sizeof enh);
    snprintf(out, size, "%d%s%s", code, enh[0] ? " " : "", enh);
}

/* One row: the step, what was sent, the recorded reply and the one got now. */
static void row(struct run *r, size_t i, const char *what, const struct buf *got)
{
    const struct capture_step *s = &r->d->steps[i];
    char rec[48], now[48], w[48];
    reply_cell(s->code, s->reply, s->reply_len, rec, sizeof rec);
    reply_cell(code_of(got), buf_head(got), buf_size(got), now, sizeof now);
    bool differs = replay_client_class_differs(s->code, code_of(got));
    r->differ += differs;
    r->compared++;
    snprintf(w, sizeof w, "%s", what);
    if (strlen(what) > 40) snprintf(w + 37, sizeof w - 37, "...");
    buf_printf(&r->out, "%s %-5zu %-40s %-14s %s%s\n", differs ? "!" : " ", i + 1, w, rec, now,
               differs ? "   class differs" : "");
}

static void what_of(const struct capture_dialog *d, size_t i, char *out, size_t size)
{
    const struct capture_step *s = &d->steps[i];
    if (s->kind == STEP_GREETING)
        snprintf(out, size, "(greeting)");
    else if (s->kind == STEP_DATA_END)
        snprintf(out, size, "(end of message, %llu bytes)", (unsigned long long)s->msg_size);
    else if (i > 0 && d->steps[i - 1].code == 334)
        snprintf(out, size, "(SASL line)");
    else
        capture_normalize_command(s->command, out, size);
}

/* ---- the dialog ---------------------------------------------------------------------- */

/* The STARTTLS of starttls:, after the first EHLO reply: STARTTLS, the handshake, EHLO
 * again with the same name. */
static int upgrade(struct run *r, const char *ehlo, char *err, size_t size)
{
    struct buf rep;
    buf_init(&rep);
    bool ok = send_bytes(&r->c, "STARTTLS\r\n", 10) && read_reply(&r->c, &rep);
    int code = code_of(&rep);
    buf_free(&rep);
    if (!ok || code != 220) {
        snprintf(err, size, "the server answered STARTTLS with %d", code);
        return -1;
    }
    if (start_tls(&r->c, err, size) < 0) return -1;
    smtp_reply_free(&r->c.replies);
    smtp_reply_init(&r->c.replies);
    buf_init(&rep);
    ok = send_bytes(&r->c, ehlo, strlen(ehlo)) && send_bytes(&r->c, "\r\n", 2) &&
         read_reply(&r->c, &rep);
    buf_free(&rep);
    buf_printf(&r->out, "  -     STARTTLS, TLS handshake, %-22s\n", ehlo);
    if (!ok) snprintf(err, size, "no reply to EHLO after STARTTLS");
    return ok ? 0 : -1;
}

/* Sends step i (a command, or a message and its end); false when sending failed. */
static bool send_step(struct run *r, size_t i, bool *synthetic)
{
    const struct capture_step *s = &r->d->steps[i];
    if (s->kind != STEP_DATA_END)
        return send_bytes(&r->c, s->command, s->command_len) && send_bytes(&r->c, "\r\n", 2);
    struct buf body;
    buf_init(&body);
    replay_client_body(s, &body, synthetic);
    bool ok = send_bytes(&r->c, buf_head(&body), buf_size(&body));
    buf_free(&body);
    return ok;
}

/* BDAT's octets follow its command: the capture's lines or synthetic ones, the count the
 * command says. */
static bool send_bdat_octets(struct run *r, const struct capture_step *s)
{
    const uint8_t *arg;
    size_t arg_len;
    uint64_t size = 0;
    bool last;
    smtp_verb_parse((const uint8_t *)s->command, s->command_len, &arg, &arg_len);
    if (!smtp_bdat_parse(arg, arg_len, &size, &last) || !size) return true;
    struct buf b;
    buf_init(&b);
    replay_client_synthetic(size, &b);
    bool ok = send_bytes(&r->c, buf_head(&b), (size_t)size);
    buf_free(&b);
    return ok;
}

/* Sends the steps from i on that share its pipelining group, then reads their replies. */
static size_t run_group(struct run *r, size_t i, bool starttls, bool *upgraded, char *err,
                        size_t errlen)
{
    size_t end = i + 1;
    const struct capture_step *s = &r->d->steps[i];
    while (s->kind == STEP_COMMAND && end < r->d->n && r->d->steps[end].group == s->group &&
           r->d->steps[end].kind == STEP_COMMAND)
        end++;
    for (size_t k = i; k < end; k++) {
        if (!replay_client_sends(r->d, k)) continue;
        bool synthetic = false;
        char verb[16];
        capture_verb(r->d->steps[k].command, verb, sizeof verb);
        if (!send_step(r, k, &synthetic) ||
            (strcmp(verb, "BDAT") == 0 && !send_bdat_octets(r, &r->d->steps[k])))
            snprintf(err, errlen, "the server closed the connection");
        if (synthetic)
            buf_printf(&r->out,
                       "  -     message: the capture has %llu of its %llu lines (no -v): a "
                       "synthetic body of %llu bytes sent\n",
                       (unsigned long long)r->d->steps[k].content_lines,
                       (unsigned long long)r->d->steps[k].msg_lines,
                       (unsigned long long)r->d->steps[k].msg_size);
    }
    bool refused_data = false;
    for (size_t k = i; k < end && !err[0]; k++) {
        if (!replay_client_sends(r->d, k)) continue;
        struct buf got;
        buf_init(&got);
        read_reply(&r->c, &got);
        char what[200];
        what_of(r->d, k, what, sizeof what);
        row(r, k, what, &got);
        char verb[16];
        capture_verb(r->d->steps[k].command, verb, sizeof verb);
        if (starttls && !*upgraded && strcmp(verb, "EHLO") == 0 && code_of(&got) == 250) {
            *upgraded = true;
            upgrade(r, r->d->steps[k].command, err, errlen);
        }
        if (!code_of(&got)) snprintf(err, errlen, "the server sent no reply");
        refused_data = strcmp(verb, "DATA") == 0 && code_of(&got) != 354;
        buf_free(&got);
    }
    /* a refused DATA: its message is not sent */
    if (refused_data && end < r->d->n && r->d->steps[end].kind == STEP_DATA_END) {
        buf_printf(&r->out, "  %-5zu %-40s (not sent: DATA was refused)\n", end + 1,
                   "(end of message)");
        end++;
    }
    return end;
}

static int run_dialog(struct run *r, bool starttls, char *err, size_t errlen)
{
    bool upgraded = false;
    struct buf got;
    buf_init(&got);
    read_reply(&r->c, &got);
    size_t i = 0;
    while (i < r->d->n && r->d->steps[i].kind != STEP_GREETING) i++;
    if (i < r->d->n) row(r, i, "(greeting)", &got);
    buf_free(&got);
    for (i = i + 1; i < r->d->n && !err[0];) {
        if (!replay_client_sends(r->d, i)) {
            i++;
            continue;
        }
        i = run_group(r, i, starttls, &upgraded, err, errlen);
    }
    return 0;
}

/* ---- the subcommand ------------------------------------------------------------------ */

struct options {
    const char *file;
    struct upstream_spec to;
    bool to_given, insecure;
    uint64_t timeout_ms;
};

static int parse_args(int argc, char **argv, struct options *o)
{
    o->timeout_ms = 30000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) return fputs(usage, stdout), -1;
        if (strcmp(a, "--insecure") == 0) {
            o->insecure = true;
        } else if (strcmp(a, "--to") == 0 || strcmp(a, "--timeout") == 0) {
            if (i + 1 == argc) return usage_error("a value is missing after ", a);
            const char *v = argv[++i], *bad;
            if (strcmp(a, "--to") == 0) {
                bad = parse_upstream(v, &o->to);
                if (!bad && o->to.kind != UPSTREAM_FIXED) bad = "[tls:|starttls:]HOST:PORT";
                o->to_given = true;
            } else {
                bad = parse_duration_ms(v, &o->timeout_ms);
            }
            if (bad) {
                fprintf(stderr, "smtptap replay-client: %s %s: expected %s\n", a, v, bad);
                return EX_USAGE_;
            }
        } else if (a[0] == '-' && a[1]) {
            return usage_error("unknown option ", a);
        } else if (o->file) {
            return usage_error("one capture too many: ", a);
        } else {
            o->file = a;
        }
    }
    if (!o->file) return usage_error("give the capture file", "");
    if (!o->to_given) return usage_error("give the server: ", "--to [tls:|starttls:]HOST:PORT");
    return 0;
}

int replay_client_main(int argc, char **argv)
{
    struct options o = {0};
    int rc = parse_args(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    char err[700] = "";
    bool unreadable;
    struct capture_reader *reader = capture_read_file(o.file, err, sizeof err, &unreadable);
    if (!reader) {
        fprintf(stderr, "smtptap replay-client: %s\n", err);
        return unreadable ? EX_NOINPUT_ : EX_DATAERR_;
    }
    struct run r = {.d = capture_reader_dialog(reader)};
    buf_init(&r.out);
    smtp_reply_init(&r.c.replies);
    snprintf(r.c.host, sizeof r.c.host, "%s", o.to.target.host);
    r.c.fd = tcp_connect(&o.to.target, o.timeout_ms, err, sizeof err);
    bool tls = o.to.tls == TLS_IMPLICIT, starttls = o.to.tls == TLS_STARTTLS;
    if (r.c.fd >= 0 && (tls || starttls))
        r.c.ctx = tls_client_ctx(NULL, o.insecure, NULL, err, sizeof err);
    rc = 0;
    if (r.c.fd < 0 || ((tls || starttls) && !r.c.ctx) ||
        (tls && start_tls(&r.c, err, sizeof err) < 0)) {
        fprintf(stderr, "smtptap replay-client: %s\n", err);
        rc = EX_UNAVAILABLE_;
    } else {
        buf_printf(&r.out, "  step  %-40s %-14s %s\n", "sent", "recorded", "got");
        run_dialog(&r, starttls, err, sizeof err);
        fwrite(buf_head(&r.out), 1, buf_size(&r.out), stdout);
        if (err[0]) printf("replay-client: stopped: %s\n", err);
        printf("replay-client: %zu of %zu replies of another class than recorded\n", r.differ,
               r.compared);
        rc = r.differ || err[0] ? 1 : 0;
    }
    if (r.c.ssl) SSL_free(r.c.ssl);
    if (r.c.ctx) SSL_CTX_free(r.c.ctx);
    if (r.c.fd >= 0) close(r.c.fd);
    smtp_reply_free(&r.c.replies);
    buf_free(&r.out);
    capture_reader_free(reader);
    return rc;
}
