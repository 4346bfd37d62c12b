/* capture_eml.c - the eml capture format: each message as the server received it
 * (dot-unstuffed DATA, BDAT chunks joined), one file per message, <prefix>-<n>.eml (0600),
 * written when the server's reply to the message's end arrives. Unless raw, the file starts
 * with X-Smtptap- headers for the envelope; the body bytes follow exactly.
 *
 * Events read: EV_START (the client's address), EV_BODY (message bytes, facts.message.number
 * says whose), EV_MESSAGE (that body is complete), EV_DELIVERY (the envelope and the server's
 * reply: the file is written), EV_END (bodies still waiting for a reply are written with a
 * "(none: ...)" reply; a body without EV_MESSAGE was cut short and is dropped). Other kinds
 * are ignored. Bodies that ended wait in a FIFO and pair with EV_DELIVERY events in order:
 * a pipelined BDAT message can end before the previous message's reply arrives.
 *
 * Memory: bodies are held in memory while the writer holds at most EML_MEMORY_MAX bytes in
 * all; past that the body being received moves to a temporary file in the capture directory
 * (mkostemp: 0600, unlinked at once, so nothing is left behind even after a crash) and grows
 * there. At delivery the eml file gets the headers, then the body, copied in the kernel
 * (copy_file_range, with a read/write fallback). A 1 GB message costs no more RAM than 8 MiB.
 * The file is written as <name>.part and linked to its name when complete: a tool watching
 * the directory never reads half a message.
 *
 * I/O failures (disk full) are reported on stderr once per message; such a message is not
 * written, since a capture that is not byte-exact would mislead. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "smtptap/buf.h"
#include "smtptap/capture.h"

enum {
    EML_MEMORY_MAX = 8 << 20, /* bytes of bodies held in memory per writer */
    SPILL_BUFFER = 256 << 10, /* a spilled body's bytes are written to its file in pieces this
                                 big (EV_BODY comes one line at a time) */
    HEADER_LINE_MAX = 998,    /* RFC 5322 2.1.1, without the CRLF */
    COPY_CHUNK = 1 << 16,
};

static const char NO_REPLY[] = "(none: the session ended before the server replied)";

struct body {
    uint64_t number;
    struct buf mem;   /* the bytes in memory: all of them, or those not yet in the file */
    int fd;           /* -1, or the spill file holding the bytes before those in mem */
    uint64_t size;    /* all the bytes */
    uint64_t spilled; /* how many are in the file */
    bool broken;      /* a spill failed: the body is no longer exact */
    struct body *next;
};

struct eml_writer {
    struct event_writer base;
    char *prefix;
    bool raw;
    char client[INET6_ADDRSTRLEN + 16]; /* "ip:port" from EV_START; "" before */
    uint64_t session;
    uint64_t last_number; /* the last message number seen */
    size_t in_memory;     /* body bytes held in memory */
    struct body *open;    /* receiving EV_BODY */
    struct body *head;    /* ended, waiting for their EV_DELIVERY, oldest first */
    struct body *tail;
};

/* ---- small I/O helpers ------------------------------------------------------------------ */

static void warn(const char *what, const char *path, int err)
{
    fprintf(stderr, "smtptap: eml capture: %s %s: %s\n", what, path, strerror(err));
}

/* Writes all n bytes; 0 or an errno. */
static int write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t k = write(fd, b, n);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return errno;
        if (k == 0) return EIO;
        b += k, n -= (size_t)k;
    }
    return 0;
}

/* Copies n bytes from the start of in to out's position; 0 or an errno. */
static int copy_from(int in, int out, uint64_t n)
{
    off_t off = 0;
    while (n) { /* in the kernel where the filesystem can */
        ssize_t k = copy_file_range(in, &off, out, NULL, n, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        n -= (uint64_t)k;
    }
    if (!n) return 0;
    uint8_t *chunk = malloc(COPY_CHUNK);
    if (!chunk) abort();
    int e = 0;
    while (n && !e) {
        ssize_t k = pread(in, chunk, n < COPY_CHUNK ? n : COPY_CHUNK, off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            e = k < 0 ? errno : EIO;
            break;
        }
        e = write_all(out, chunk, (size_t)k);
        off += k, n -= (uint64_t)k;
    }
    free(chunk);
    return e;
}

/* ---- bodies ----------------------------------------------------------------------------- */

static struct body *body_new(uint64_t number)
{
    struct body *b = calloc(1, sizeof *b);
    if (!b) abort();
    b->number = number;
    b->fd = -1;
    buf_init(&b->mem);
    return b;
}

static void body_free(struct eml_writer *w, struct body *b)
{
    if (!b) return;
    w->in_memory -= buf_size(&b->mem);
    buf_free(&b->mem);
    if (b->fd >= 0) close(b->fd);
    free(b);
}

/* Writes b's bytes in memory to its spill file. */
static void body_flush(struct eml_writer *w, struct body *b)
{
    if (b->fd < 0 || b->broken || !buf_size(&b->mem)) return;
    int e = write_all(b->fd, buf_head(&b->mem), buf_size(&b->mem));
    if (e) {
        warn("cannot hold a large message in a temporary file for", w->prefix, e);
        b->broken = true;
    }
    b->spilled += buf_size(&b->mem);
    w->in_memory -= buf_size(&b->mem);
    buf_reset(&b->mem);
}

/* Moves b's bytes from memory to an unnamed file in the capture directory. */
static void body_spill(struct eml_writer *w, struct body *b)
{
    size_t len = strlen(w->prefix) + 64;
    char *path = malloc(len);
    if (!path) abort();
    snprintf(path, len, "%s-%llu.eml.XXXXXX", w->prefix, (unsigned long long)b->number);
    b->fd = mkostemp(path, O_CLOEXEC); /* 0600 */
    if (b->fd >= 0) {
        unlink(path);
        body_flush(w, b);
    } else {
        warn("cannot hold a large message in a temporary file", path, errno);
        b->broken = true;
    }
    free(path);
}

static void body_append(struct eml_writer *w, struct body *b, const uint8_t *p, size_t n)
{
    if (b->broken || n == 0) return;
    b->size += n;
    if (b->fd < 0 && w->in_memory + n > EML_MEMORY_MAX) body_spill(w, b);
    if (b->broken) return;
    buf_append(&b->mem, p, n);
    w->in_memory += n;
    if (b->fd >= 0 && buf_size(&b->mem) >= SPILL_BUFFER) body_flush(w, b);
}

static void queue_push(struct eml_writer *w, struct body *b)
{
    b->next = NULL;
    if (w->tail)
        w->tail->next = b;
    else
        w->head = b;
    w->tail = b;
}

static struct body *queue_pop(struct eml_writer *w)
{
    struct body *b = w->head;
    if (!b) return NULL;
    w->head = b->next;
    if (!w->head) w->tail = NULL;
    return b;
}

/* ---- the header block ------------------------------------------------------------------- */

/* Printable ASCII stays; every other byte (CR, LF, NUL, TAB, 8-bit) becomes \xNN. */
static void sanitize(struct buf *out, const uint8_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (v[i] >= 0x20 && v[i] < 0x7f)
            buf_append(out, v + i, 1);
        else
            buf_printf(out, "\\x%02X", v[i]);
    }
}

/* One header line, CRLF-ended, folded so no line passes HEADER_LINE_MAX octets: before a
 * space where there is one (unfolding gives the value back), else hard with CRLF SP (which
 * adds that space), never inside a \xNN escape. */
static void header(struct buf *out, const char *name, const uint8_t *v, size_t n)
{
    struct buf val;
    buf_init(&val);
    sanitize(&val, v, n);
    const char *s = (const char *)buf_head(&val);
    size_t len = buf_size(&val), pos = 0;
    size_t col = strlen(name) + 2;
    buf_printf(out, "%s: ", name);
    while (len - pos > HEADER_LINE_MAX - col) {
        size_t room = HEADER_LINE_MAX - col, cut = 0;
        for (size_t i = pos + room; i > pos; i--)
            if (s[i] == ' ') {
                cut = i;
                break;
            }
        if (cut) { /* the space starts the continuation line */
            buf_append(out, s + pos, cut - pos);
            buf_append_str(out, "\r\n");
            col = 0, pos = cut;
        } else { /* not inside a \xNN */
            size_t end = pos + room;
            for (size_t i = end - 1; i + 3 >= end && i > pos; i--)
                if (s[i] == '\\') {
                    room = i - pos;
                    break;
                }
            buf_append(out, s + pos, room);
            buf_append_str(out, "\r\n ");
            col = 1, pos += room;
        }
    }
    buf_append(out, s + pos, len - pos);
    buf_append_str(out, "\r\n");
    buf_free(&val);
}

static void header_str(struct buf *out, const char *name, const char *v)
{
    header(out, name, (const uint8_t *)v, strlen(v));
}

/* The argument of "MAIL FROM:" / "RCPT TO:" (leading blanks skipped), or the whole line. */
static void header_arg(struct buf *out, const char *name, const char *line, const char *verb)
{
    size_t vl = strlen(verb);
    if (strncasecmp(line, verb, vl) == 0)
        for (line += vl; *line == ' ' || *line == '\t'; line++) continue;
    header_str(out, name, line);
}

/* The reply's lines without their CRLF, joined with " / ". */
static void header_reply(struct buf *out, const uint8_t *r, size_t n)
{
    struct buf joined;
    buf_init(&joined);
    size_t i = 0;
    while (i < n) {
        const uint8_t *nl = memchr(r + i, '\n', n - i);
        size_t end = nl ? (size_t)(nl - r) : n, stop = end;
        if (stop > i && r[stop - 1] == '\r') stop--;
        if (buf_size(&joined)) buf_append_str(&joined, " / ");
        buf_append(&joined, r + i, stop - i);
        i = end + 1;
    }
    header(out, "X-Smtptap-Reply", buf_head(&joined), buf_size(&joined));
    buf_free(&joined);
}

/* The X-Smtptap- headers; d NULL: the session ended before the reply. */
static void headers(const struct eml_writer *w, const struct event_delivery_facts *d,
                    struct buf *out)
{
    if (w->client[0]) header_str(out, "X-Smtptap-Client", w->client);
    if (d && d->helo) header_str(out, "X-Smtptap-Helo", d->helo);
    if (d && d->mail_from) header_arg(out, "X-Smtptap-Mail-From", d->mail_from, "MAIL FROM:");
    for (size_t i = 0; d && d->rcpts && i < d->nrcpts; i++)
        if (d->rcpts[i]) header_arg(out, "X-Smtptap-Rcpt-To", d->rcpts[i], "RCPT TO:");
    if (d)
        header_reply(out, d->reply, d->reply ? d->reply_len : 0);
    else
        header_str(out, "X-Smtptap-Reply", NO_REPLY);
    char session[32];
    snprintf(session, sizeof session, "%llu", (unsigned long long)w->session);
    header_str(out, "X-Smtptap-Session", session);
}

/* ---- writing one message ---------------------------------------------------------------- */

/* Gives the finished file at part its name, <prefix>-<n>.eml or, if a file has that name
 * already, <prefix>-<n>-<k>.eml: link() never replaces one. part is a .part file, or the
 * /proc/self/fd name of an unnamed one (unnamed: linked through the magic link; nothing else
 * to fall back on). Filesystems without hard links get a rename of a .part file to a name that
 * was free a moment before. 0 or an errno. */
static int publish(const struct eml_writer *w, uint64_t number, const char *part, bool unnamed)
{
    size_t size = strlen(w->prefix) + 64;
    char *path = malloc(size);
    if (!path) abort();
    int e = EEXIST;
    for (unsigned k = 1; e == EEXIST && k < 100; k++) {
        if (k == 1)
            snprintf(path, size, "%s-%llu.eml", w->prefix, (unsigned long long)number);
        else
            snprintf(path, size, "%s-%llu-%u.eml", w->prefix, (unsigned long long)number, k);
        e = linkat(AT_FDCWD, part, AT_FDCWD, path, unnamed ? AT_SYMLINK_FOLLOW : 0) == 0 ? 0
                                                                                         : errno;
        if (!unnamed && (e == EPERM || e == EOPNOTSUPP || e == ENOSYS))
            e = access(path, F_OK) == 0 ? EEXIST : rename(part, path) == 0 ? 0 : errno;
    }
    free(path);
    return e;
}

/* Writes the headers (from d, none when NULL) and b's bytes to fd; 0 or an errno. */
static int write_message(const struct eml_writer *w, const struct body *b,
                         const struct event_delivery_facts *d, int fd)
{
    struct buf head;
    buf_init(&head);
    if (!w->raw) headers(w, d, &head);
    int e = write_all(fd, buf_head(&head), buf_size(&head));
    buf_free(&head);
    if (!e && b->fd >= 0) e = copy_from(b->fd, fd, b->spilled);
    if (!e) e = write_all(fd, buf_head(&b->mem), buf_size(&b->mem));
    return e;
}

/* The message written to an unnamed file in the capture directory (O_TMPFILE) and linked to
 * its name when complete: nobody sees it incomplete, a crash leaves nothing behind, and it
 * costs fewer directory changes than a .part file. false (nothing done) when the filesystem
 * or a missing /proc cannot do it: the caller writes a .part file instead, now and from then
 * on. */
static bool deliver_unnamed(struct eml_writer *w, const struct body *b,
                            const struct event_delivery_facts *d)
{
    static bool cannot; /* learnt once for the process: the capture directory is one */
    if (cannot) return false;
    int fd = capture_create_unnamed(w->prefix);
    if (fd < 0) {
        cannot = true;
        return false;
    }
    char self[64];
    snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
    int e = write_message(w, b, d, fd);
    if (!e) e = publish(w, b->number, self, true);
    close(fd);
    if (e == ENOENT || e == EPERM || e == EOPNOTSUPP || e == ENOSYS || e == EXDEV) {
        cannot = true; /* no /proc, or no links here: the .part way works everywhere */
        return false;
    }
    if (e) warn("cannot write the message file for", w->prefix, e);
    return true;
}

/* Writes b's file (headers from d, none when NULL) and frees b. The file gets its name only
 * when complete (an unnamed file linked, or a .part file linked), so whoever sees it sees it
 * complete. */
static void deliver(struct eml_writer *w, struct body *b, const struct event_delivery_facts *d)
{
    if (!b->broken && deliver_unnamed(w, b, d)) {
        body_free(w, b);
        return;
    }
    size_t size = strlen(w->prefix) + 64;
    char *part = malloc(size);
    if (!part) abort();
    snprintf(part, size, "%s-%llu.eml.part", w->prefix, (unsigned long long)b->number);
    int fd = b->broken ? -EIO : capture_create_file(part);
    if (fd < 0) {
        if (!b->broken) warn("cannot create", part, -fd);
        goto done;
    }
    int e = write_message(w, b, d, fd);
    if (close(fd) < 0 && !e) e = errno;
    if (!e) e = publish(w, b->number, part, false);
    if (e) warn("cannot write", part, e);
    unlink(part); /* published under its name, or not exact: not left behind */
done:
    free(part);
    body_free(w, b);
}

/* Every ended body still waiting for a reply is written without one; a body still open
 * was cut short and is dropped. */
static void finish(struct eml_writer *w)
{
    for (struct body *b; (b = queue_pop(w));) deliver(w, b, NULL);
    body_free(w, w->open);
    w->open = NULL;
}

/* ---- events ----------------------------------------------------------------------------- */

static void on_start(struct eml_writer *w, const struct event *ev)
{
    if (!ev->facts) return;
    const struct sockaddr_storage *a = &ev->facts->endpoints.a;
    char ip[INET6_ADDRSTRLEN];
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)a;
        if (!inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip)) return;
        snprintf(w->client, sizeof w->client, "%s:%u", ip, ntohs(in->sin_port));
    } else if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)a;
        if (!inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip)) return;
        snprintf(w->client, sizeof w->client, "[%s]:%u", ip, ntohs(in6->sin6_port));
    }
}

/* The number an EV_BODY or EV_MESSAGE is about: its facts', else the open body's. */
static uint64_t number_of(const struct eml_writer *w, const struct event *ev)
{
    if (ev->facts) return ev->facts->message.number;
    return w->open ? w->open->number : w->last_number + 1;
}

/* The open body for message n; an open body of another message was cut short. */
static struct body *open_body(struct eml_writer *w, uint64_t n)
{
    if (w->open && w->open->number != n) {
        body_free(w, w->open);
        w->open = NULL;
    }
    if (!w->open) w->open = body_new(n);
    w->last_number = n;
    return w->open;
}

static void on_body(struct eml_writer *w, const struct event *ev)
{
    struct body *b = open_body(w, number_of(w, ev));
    if (ev->bytes) body_append(w, b, ev->bytes, ev->len);
}

/* The message ended (an empty one may have had no EV_BODY): it waits for its reply. */
static void on_message(struct eml_writer *w, const struct event *ev)
{
    struct body *b = open_body(w, number_of(w, ev));
    w->open = NULL;
    if (b->fd >= 0) { /* a spilled body waits without a buffer */
        body_flush(w, b);
        buf_free(&b->mem);
    }
    queue_push(w, b);
}

static void on_delivery(struct eml_writer *w, const struct event *ev)
{
    struct body *b = queue_pop(w);
    if (b) deliver(w, b, ev->facts ? &ev->facts->delivery : NULL);
}

static void eml_write(struct event_writer *base, const struct event *ev)
{
    struct eml_writer *w = (struct eml_writer *)base;
    w->session = ev->session;
    switch (ev->kind) {
    case EV_START: on_start(w, ev); break;
    case EV_BODY: on_body(w, ev); break;
    case EV_MESSAGE: on_message(w, ev); break;
    case EV_DELIVERY: on_delivery(w, ev); break;
    case EV_END: finish(w); break;
    default: break;
    }
}

static void eml_close(struct event_writer *base)
{
    struct eml_writer *w = (struct eml_writer *)base;
    finish(w);
    free(w->prefix);
    free(w);
}

struct event_writer *eml_writer_new(const char *path_prefix, bool raw)
{
    struct eml_writer *w = calloc(1, sizeof *w);
    if (!w) abort();
    w->prefix = strdup(path_prefix);
    if (!w->prefix) abort();
    w->raw = raw;
    w->base.write = eml_write;
    w->base.close = eml_close;
    return &w->base;
}
