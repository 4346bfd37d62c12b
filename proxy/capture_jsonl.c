/* capture_jsonl.c - the jsonl capture format: one JSON object per event, one line each,
 * encoded by jansson (no hand-written escaping), for jq and log shippers.
 *
 * Every line has, in this order:
 *   "ts"       RFC 3339 UTC with microseconds ("2026-12-03T09:31:02.123456Z", ev->wall_us)
 *   "session"  the session number
 *   "t"        seconds since the session started (float, microsecond precision)
 *   "dir"      "c2s", "s2c" or null
 *   "kind"     info command reply edited_reply content message raw lint error fault auth
 *              start upstream client_tls delivery end verdict
 *   "tls"      the client's connection was in TLS
 *   "local", "to_smtptap"  true, only when set
 *   "line"     the event's bytes (byte kinds: command reply content raw), CRLF kept, when
 *              they are valid UTF-8 without NUL; else "line_b64" (standard base64)
 *   "text"     smtptap's text (text kinds), or "text_b64" when it is not valid UTF-8
 * then the event's facts as one object named after the kind of fact: "endpoints",
 * "handshake", "reply", "lint", "fault", "message", "delivery", "end", "verdict", "auth"
 * (see put_facts). An EHLO reply smtptap edited follows the server's own "reply" as kind
 * "edited_reply": its "line" is what the client got, and its "reply" has "edit":
 * {"added": [...], "removed": [...]}, the texts of the lines after "250-" that differ. A
 * decoded SASL line ("auth", --decode-auth) has "auth": {"mechanism", "step", "user",
 * "fields": {"authcid": "alice", ...}, "secret": [the names of the secret fields],
 * "outcome" and "code" at the final reply}, the values as its text shows them.
 *
 * Not written: EV_WIRE and EV_BODY, the bytes of the connection and of each message, which
 * pcap and eml carry. A message is here as the lines the transcript shows ("content"; all
 * of them with -v) and its summary ("message": size, lines, SHA-256). EV_BODY comes once per
 * message line: writing it would cost ~2.6 us a line (1.1 s per 20 MB message), and even
 * joined into 64 KiB pieces jansson encodes ~100 MB/s, slower than the relay itself.
 *
 * The rule for every string: a value that is not valid UTF-8 (or holds a NUL, which
 * jansson's own reader refuses) goes under the key with "_b64" appended, base64-encoded, so
 * nothing is lost and every line parses. A write error stops this writer for good (one
 * warning on stderr); it never crashes the session nor retries. */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "smtptap/capture.h"
#include "smtptap/ehlo.h"
#include "smtptap/utf8.h"

/* The date and time of one second, as "ts" shows it. */
struct second_text {
    bool valid;
    uint64_t secs;
    char text[48];
    size_t len;
};

struct jsonl_writer {
    struct event_writer base;
    FILE *f;
    bool owns_file, flush_each;
    bool failed;               /* a write failed: nothing more is written */
    struct second_text second; /* of the last event */
    char *line;                /* the encoded line, kept for the next event (one fwrite per line) */
    size_t cap;
    bool whole_messages; /* -v: every message line, not only the first 40 */
    char *file_buffer;   /* a file of its own: its stdio buffer (setvbuf), freed after it */
};

enum {
    KEEP_LINE_BUFFER = 1 << 20, /* a larger one is freed after its line */
    /* A session's file reaches the kernel in one write per flush (stdio's default, the
     * file system's 4 KiB block, took three for a short session's lines). */
    FILE_BUFFER = 64 * 1024,
};

/* Reals are printed with 15 significant digits: a value with microsecond precision then
 * prints as its shortest decimal ("0.000412", not "0.00041199999999999999"). */
#define DUMP_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15))

/* ---- strings: UTF-8 or base64 ---------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at p (non-ASCII lead byte), or 0. Strict as jansson:
 * no overlong forms, no surrogates, nothing above U+10FFFF. */
static size_t utf8_seq(const uint8_t *p, size_t n)
{
    uint32_t cp;
    return utf8_sequence(p, n, &cp);
}

/* True when b can go into a JSON string as it is: valid UTF-8 and no NUL. */
static bool plain_utf8(const uint8_t *b, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (b[i] >= 0x01 && b[i] < 0x80) {
            i++;
            continue;
        }
        if (b[i] == 0) return false;
        size_t u = utf8_seq(b + i, n - i);
        if (!u) return false;
        i += u;
    }
    return true;
}

/* base64 of b (OpenSSL EVP_EncodeBlock, in pieces so that any length fits its int), or NULL
 * when memory runs out. */
static json_t *base64_string(const uint8_t *b, size_t n)
{
    enum { PIECE = 3 * 16384 }; /* a multiple of 3: the pieces join without padding */
    if (n / 3 >= (SIZE_MAX - 8) / 4) return NULL;
    char *out = malloc(4 * (n / 3 + 1) + 1);
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i += PIECE) {
        size_t k = n - i < PIECE ? n - i : PIECE;
        o += (size_t)EVP_EncodeBlock((unsigned char *)out + o, b + i, (int)k);
    }
    json_t *s = json_stringn_nocheck(out, o);
    free(out);
    return s;
}

/* Sets obj[key] to v (which it takes); false when v is NULL or the set fails. */
static bool set(json_t *obj, const char *key, json_t *v)
{
    return v && json_object_set_new_nocheck(obj, key, v) == 0;
}

/* obj[key] = the bytes as a string when they are plain UTF-8, else obj[key_b64] = base64.
 * NULL bytes count as empty. */
static bool put_bytes(json_t *obj, const char *key, const uint8_t *b, size_t n)
{
    if (!b) b = (const uint8_t *)"", n = 0;
    if (plain_utf8(b, n)) return set(obj, key, json_stringn_nocheck((const char *)b, n));
    char b64key[64];
    snprintf(b64key, sizeof b64key, "%s_b64", key);
    return set(obj, b64key, base64_string(b, n));
}

/* The same for a C string; NULL is JSON null. */
static bool put_str(json_t *obj, const char *key, const char *s)
{
    if (!s) return set(obj, key, json_null());
    return put_bytes(obj, key, (const uint8_t *)s, strlen(s));
}

/* Counters are unsigned in events, signed in jansson: clamp rather than wrap. */
static json_t *count(uint64_t v)
{
    return json_integer(v > (uint64_t)LLONG_MAX ? LLONG_MAX : (json_int_t)v);
}

/* A float; jansson refuses NaN and infinities, which become null. */
static json_t *real(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

/* Nanoseconds as milliseconds with microsecond precision. */
static json_t *ms_of_ns(uint64_t ns)
{
    return real((double)(ns / 1000) / 1e3);
}

/* ---- the common fields --------------------------------------------------------------- */

static const char *kind_name(enum event_kind k)
{
    switch (k) {
    case EV_INFO: return "info";
    case EV_COMMAND: return "command";
    case EV_REPLY: return "reply";
    case EV_CONTENT: return "content";
    case EV_MESSAGE: return "message";
    case EV_RAW: return "raw";
    case EV_LINT: return "lint";
    case EV_ERROR: return "error";
    case EV_FAULT: return "fault";
    case EV_AUTH: return "auth";
    case EV_START: return "start";
    case EV_UPSTREAM: return "upstream";
    case EV_WIRE: return "wire";
    case EV_CLIENT_TLS: return "client_tls";
    case EV_BODY: return "body";
    case EV_DELIVERY: return "delivery";
    case EV_END: return "end";
    case EV_VERDICT: return "verdict";
    }
    return "unknown";
}

static json_t *dir_value(enum event_dir d)
{
    switch (d) {
    case DIR_C2S: return json_string_nocheck("c2s");
    case DIR_S2C: return json_string_nocheck("s2c");
    default: return json_null();
    }
}

/* Kinds whose payload is bytes as they passed (a "line"). */
static bool carries_bytes(enum event_kind k)
{
    return k == EV_COMMAND || k == EV_REPLY || k == EV_CONTENT || k == EV_RAW;
}

/* "2026-12-03T09:31:02.123456Z"; the text up to the seconds is kept for the next events
 * of the same second (formatting dates is a good part of a line's cost). */
static json_t *timestamp(struct second_text *last, uint64_t wall_us)
{
    uint64_t secs = wall_us / 1000000u;
    if (!last->valid || last->secs != secs) {
        time_t t = (time_t)secs;
        struct tm tm;
        if (!gmtime_r(&t, &tm) ||
            !strftime(last->text, sizeof last->text, "%Y-%m-%dT%H:%M:%S", &tm))
            snprintf(last->text, sizeof last->text, "1970-01-01T00:00:00");
        last->len = strlen(last->text);
        last->secs = secs;
        last->valid = true;
    }
    char out[sizeof last->text + 9];
    memcpy(out, last->text, last->len);
    char *p = out + last->len;
    *p++ = '.';
    for (uint32_t us = (uint32_t)(wall_us % 1000000u), div = 100000; div; div /= 10)
        *p++ = (char)('0' + us / div % 10);
    *p++ = 'Z';
    return json_stringn_nocheck(out, (size_t)(p - out));
}

/* An EHLO reply as smtptap edited it for the client is an "edited_reply": "reply" stays what
 * the server (or smtptap itself) said. */
static const char *kind_of(const struct event *ev)
{
    bool edited = ev->kind == EV_REPLY && ev->facts && ev->facts->reply.edited_from;
    return edited ? "edited_reply" : kind_name(ev->kind);
}

static bool put_common(struct second_text *last, json_t *o, const struct event *ev)
{
    bool ok =
        set(o, "ts", timestamp(last, ev->wall_us)) && set(o, "session", count(ev->session)) &&
        set(o, "t", real((double)(ev->t_ns / 1000) / 1e6)) && set(o, "dir", dir_value(ev->dir)) &&
        set(o, "kind", json_string_nocheck(kind_of(ev))) && set(o, "tls", json_boolean(ev->tls));
    if (ok && ev->local) ok = set(o, "local", json_true());
    if (ok && ev->to_smtptap) ok = set(o, "to_smtptap", json_true());
    if (ok && (carries_bytes(ev->kind) || ev->bytes)) ok = put_bytes(o, "line", ev->bytes, ev->len);
    if (ok && ev->text) ok = put_str(o, "text", ev->text);
    return ok;
}

/* ---- the facts ----------------------------------------------------------------------- */

/* "192.0.2.1:25", "[2001:db8::1]:25", or null for an address of no known family. */
static json_t *address(const struct sockaddr_storage *ss)
{
    char ip[INET6_ADDRSTRLEN], out[INET6_ADDRSTRLEN + 16];
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        if (!inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip)) return json_null();
        snprintf(out, sizeof out, "%s:%u", ip, ntohs(in->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        if (!inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip)) return json_null();
        snprintf(out, sizeof out, "[%s]:%u", ip, ntohs(in6->sin6_port));
    } else {
        return json_null();
    }
    return json_string_nocheck(out);
}

/* EV_START: {client, listener}; EV_UPSTREAM: {server, local}. */
static bool put_endpoints(json_t *f, const struct event_endpoints *e, bool upstream)
{
    return set(f, upstream ? "server" : "client", address(&e->a)) &&
           set(f, upstream ? "local" : "listener", address(&e->b));
}

static bool put_handshake(json_t *f, const struct event_tls_facts *t)
{
    return set(f, "leg", json_string_nocheck(t->upstream ? "upstream" : "client")) &&
           put_str(f, "version", t->version) && put_str(f, "cipher", t->cipher) &&
           put_str(f, "sni", t->sni) && put_str(f, "peer_subject", t->peer_subject) &&
           put_str(f, "peer_issuer", t->peer_issuer) && put_str(f, "peer_sha256", t->peer_sha256) &&
           put_str(f, "verify", t->verify);
}

/* Collects line texts into a JSON array; plain stays true while every one is plain UTF-8. */
struct text_list {
    json_t *texts; /* each as a string, or base64 once one is not plain UTF-8 */
    json_t *b64;
    bool plain, failed;
};

static void add_text(void *ctx, const uint8_t *text, size_t n)
{
    struct text_list *l = ctx;
    bool plain = plain_utf8(text, n);
    l->plain = l->plain && plain;
    json_t *b = base64_string(text, n);
    if (!b || json_array_append_new(l->b64, b) != 0) l->failed = true;
    if (plain && json_array_append_new(l->texts, json_stringn_nocheck((const char *)text, n)) != 0)
        l->failed = true;
}

/* f[key] = the texts of the lines of a that b does not have ("added", "removed"), or
 * f[key_b64] when one of them is not plain UTF-8 (one type per key). */
static bool put_line_diff(json_t *f, const char *key, const uint8_t *a, size_t alen,
                          const uint8_t *b, size_t blen)
{
    struct text_list l = {.texts = json_array(), .b64 = json_array(), .plain = true};
    if (l.texts && l.b64) ehlo_lines_not_in(a, alen, b, blen, add_text, &l);
    char b64key[32];
    snprintf(b64key, sizeof b64key, "%s_b64", key);
    bool ok = !l.failed && l.texts && l.b64;
    if (ok && l.plain)
        ok = set(f, key, l.texts), l.texts = NULL;
    else if (ok)
        ok = set(f, b64key, l.b64), l.b64 = NULL;
    json_decref(l.texts);
    json_decref(l.b64);
    return ok;
}

/* An edited reply: {"added": [...], "removed": [...]}, the lines' texts after "NNN-". */
static bool put_edit(json_t *f, const struct event_reply_facts *r, const uint8_t *bytes, size_t len)
{
    json_t *e = json_object();
    if (!bytes) bytes = (const uint8_t *)"", len = 0;
    return set(f, "edit", e) &&
           put_line_diff(e, "added", bytes, len, r->edited_from, r->edited_from_len) &&
           put_line_diff(e, "removed", r->edited_from, r->edited_from_len, bytes, len);
}

static bool put_reply(json_t *f, const struct event_reply_facts *r, const struct event *ev)
{
    bool ok = set(f, "code", json_integer(r->code));
    if (ok && r->latency_ns) ok = set(f, "latency_ms", ms_of_ns(r->latency_ns));
    if (ok && r->edited_from) ok = put_edit(f, r, ev->bytes, ev->len);
    return ok;
}

static bool put_lint(json_t *f, const struct event_lint_facts *l)
{
    bool ok = put_str(f, "id", l->id);
    if (ok && l->offset != -1) ok = set(f, "offset", json_integer(l->offset));
    return ok;
}

static bool put_fault(json_t *f, const struct event_fault_facts *x)
{
    bool ok = put_str(f, "rule", x->rule) && put_str(f, "action", x->action);
    if (ok && x->change) ok = put_str(f, "change", x->change);
    return ok;
}

static bool put_message(json_t *f, const struct event_message_facts *m)
{
    return set(f, "number", count(m->number)) && set(f, "size", count(m->size)) &&
           set(f, "lines", count(m->lines)) && put_str(f, "sha256", m->sha256);
}

/* The accepted RCPT commands: "rcpts" when all are plain UTF-8, else "rcpts_b64", all in
 * base64 (one type per key). */
static bool put_rcpts(json_t *f, const char *const *rcpts, size_t n)
{
    if (!rcpts) n = 0;
    bool plain = true;
    for (size_t i = 0; i < n && plain; i++)
        plain = !rcpts[i] || plain_utf8((const uint8_t *)rcpts[i], strlen(rcpts[i]));
    json_t *a = json_array();
    if (!set(f, plain ? "rcpts" : "rcpts_b64", a)) return false;
    for (size_t i = 0; i < n; i++) {
        const char *r = rcpts[i];
        json_t *v = !r      ? json_null()
                    : plain ? json_string_nocheck(r)
                            : base64_string((const uint8_t *)r, strlen(r));
        if (!v || json_array_append_new(a, v) != 0) return false;
    }
    return true;
}

static bool put_delivery(json_t *f, const struct event_delivery_facts *d)
{
    return set(f, "message", count(d->message)) && put_str(f, "helo", d->helo) &&
           put_str(f, "mail_from", d->mail_from) && put_rcpts(f, d->rcpts, d->nrcpts) &&
           put_bytes(f, "reply", d->reply, d->reply_len) && set(f, "code", json_integer(d->code));
}

static bool put_end(json_t *f, const struct event_end_facts *e)
{
    return set(f, "seconds", real(e->seconds)) && set(f, "commands", count(e->commands)) &&
           set(f, "messages", count(e->messages)) && set(f, "bytes_up", count(e->bytes_up)) &&
           set(f, "bytes_down", count(e->bytes_down)) &&
           set(f, "server_wait_ms", ms_of_ns(e->server_wait_ns));
}

static bool put_verdict(json_t *f, const struct event_verdict_facts *v)
{
    return put_str(f, "cert", v->cert) && put_str(f, "client_starttls", v->starttls) &&
           put_str(f, "action", v->action) && put_str(f, "alert", v->alert) &&
           put_str(f, "auth_mech", v->auth_mech) && put_str(f, "auth_user", v->auth_user) &&
           set(f, "good", json_boolean(v->good)) &&
           set(f, "credentials_exposed", json_boolean(v->credentials_exposed)) &&
           set(f, "mail_exposed", json_boolean(v->mail_exposed));
}

/* EV_AUTH: {mechanism, step, user, fields: {name: value, ...}, secret: [names], outcome,
 * code}. A name the line gives twice (a hostile XOAUTH2 line) gets "_2", "_3"... after it. */
static bool put_auth(json_t *f, const struct event_auth_facts *a)
{
    bool ok = set(f, "mechanism", json_string_nocheck(a->mechanism ? a->mechanism : "")) &&
              set(f, "step", json_string_nocheck(a->step ? a->step : "")) &&
              put_str(f, "user", a->user && a->user[0] ? a->user : NULL) &&
              set(f, "fields", json_object()) && set(f, "secret", json_array());
    json_t *fields = json_object_get(f, "fields"), *secret = json_object_get(f, "secret");
    for (size_t i = 0; ok && i < a->nfields && i < EVENT_AUTH_FIELDS_MAX; i++) {
        char name[48];
        snprintf(name, sizeof name, "%s", a->names[i]);
        for (unsigned k = 2; json_object_get(fields, name) && k < 100; k++)
            snprintf(name, sizeof name, "%s_%u", a->names[i], k);
        ok = put_str(fields, name, a->values[i]);
        if (ok && a->secret[i]) ok = json_array_append_new(secret, json_string(name)) == 0;
    }
    if (ok && a->outcome)
        ok = set(f, "outcome", json_string_nocheck(a->outcome)) &&
             set(f, "code", count((uint64_t)a->code));
    return ok;
}

/* The name of the facts object for this kind, or NULL when the kind carries none. */
static const char *facts_name(enum event_kind k)
{
    switch (k) {
    case EV_START:
    case EV_UPSTREAM: return "endpoints";
    case EV_INFO: return "handshake";
    case EV_REPLY: return "reply";
    case EV_LINT: return "lint";
    case EV_FAULT: return "fault";
    case EV_MESSAGE: return "message";
    case EV_DELIVERY: return "delivery";
    case EV_END: return "end";
    case EV_VERDICT: return "verdict";
    case EV_AUTH: return "auth";
    default: return NULL;
    }
}

/* o[name] = the facts of the kind (the union member the kind names), when there are any. */
static bool put_facts(json_t *o, const struct event *ev)
{
    const char *name = facts_name(ev->kind);
    if (!ev->facts || !name) return true;
    json_t *f = json_object();
    if (!set(o, name, f)) return false;
    const union event_facts *x = ev->facts;
    switch (ev->kind) {
    case EV_START: return put_endpoints(f, &x->endpoints, false);
    case EV_UPSTREAM: return put_endpoints(f, &x->endpoints, true);
    case EV_INFO: return put_handshake(f, &x->tls);
    case EV_REPLY: return put_reply(f, &x->reply, ev);
    case EV_LINT: return put_lint(f, &x->lint);
    case EV_FAULT: return put_fault(f, &x->fault);
    case EV_MESSAGE: return put_message(f, &x->message);
    case EV_DELIVERY: return put_delivery(f, &x->delivery);
    case EV_END: return put_end(f, &x->end);
    case EV_VERDICT: return put_verdict(f, &x->verdict);
    case EV_AUTH: return put_auth(f, &x->auth);
    default: return true;
    }
}

/* ---- the writer ---------------------------------------------------------------------- */

/* The object of one event, or NULL when jansson could not build it (out of memory). */
static json_t *event_object(struct second_text *last, const struct event *ev)
{
    json_t *o = json_object();
    if (o && put_common(last, o, ev) && put_facts(o, ev)) return o;
    json_decref(o);
    return NULL;
}

/* What stands in for an event that could not be encoded, so that the gap shows. */
static json_t *placeholder(struct second_text *last, const struct event *ev)
{
    json_t *o = json_object();
    if (o && set(o, "ts", timestamp(last, ev->wall_us)) && set(o, "session", count(ev->session)) &&
        set(o, "kind", json_string_nocheck(kind_name(ev->kind))) &&
        set(o, "error", json_string_nocheck("this event could not be encoded")))
        return o;
    json_decref(o);
    return NULL;
}

static void fail(struct jsonl_writer *j)
{
    if (j->failed) return;
    j->failed = true;
    fprintf(stderr, "smtptap: jsonl capture: write failed (%s); no more events written to it\n",
            strerror(errno ? errno : EIO));
}

/* o as one line with its LF in j->line; its length, or 0 when it cannot be encoded. */
static size_t encode(struct jsonl_writer *j, const json_t *o)
{
    size_t n = json_dumpb(o, j->line, j->cap, DUMP_FLAGS);
    if (n && n >= j->cap) { /* too small: grow, then encode again */
        char *bigger = realloc(j->line, n + 1);
        if (!bigger) return 0;
        j->line = bigger;
        j->cap = n + 1;
        n = json_dumpb(o, j->line, j->cap, DUMP_FLAGS);
    }
    if (!n || n >= j->cap) return 0;
    j->line[n] = '\n';
    return n + 1;
}

/* Writes one line (a single fwrite: jansson's own json_dumpf writes piece by piece);
 * flushes it when asked, at a reply and at the end. False on a write error. */
static bool put_line(struct jsonl_writer *j, size_t len, enum event_kind kind)
{
    errno = 0;
    if (fwrite(j->line, 1, len, j->f) != len) return false;
    bool reply = (kind == EV_REPLY || kind == EV_END) && !j->base.flush_by_owner;
    if (j->flush_each || reply) return fflush(j->f) == 0;
    return !ferror(j->f);
}

static void jsonl_write(struct event_writer *w, const struct event *ev)
{
    struct jsonl_writer *j = (struct jsonl_writer *)w;
    if (j->failed || ev->kind == EV_WIRE || ev->kind == EV_BODY) return;          /* see the top */
    if (ev->kind == EV_CONTENT && ev->past_preview && !j->whole_messages) return; /* eml has it */
    json_t *o = event_object(&j->second, ev);
    size_t len = o ? encode(j, o) : 0;
    json_decref(o);
    if (!len) { /* out of memory: a line that says so, if even that can be made */
        json_t *p = placeholder(&j->second, ev);
        len = p ? encode(j, p) : 0;
        json_decref(p);
    }
    if (len && !put_line(j, len, ev->kind)) fail(j);
    if (j->cap > KEEP_LINE_BUFFER) {
        free(j->line);
        j->line = NULL;
        j->cap = 0;
    }
}

static void jsonl_flush(struct event_writer *w)
{
    struct jsonl_writer *j = (struct jsonl_writer *)w;
    errno = 0;
    if (!j->failed && fflush(j->f) != 0) fail(j);
}

static void jsonl_close(struct event_writer *w)
{
    struct jsonl_writer *j = (struct jsonl_writer *)w;
    errno = 0;
    int rc = j->owns_file ? fclose(j->f) : fflush(j->f);
    if (rc != 0) fail(j);
    free(j->file_buffer);
    free(j->line);
    free(j);
}

void jsonl_writer_file_buffer(struct event_writer *w)
{
    struct jsonl_writer *j = (struct jsonl_writer *)w;
    if (j->file_buffer) return;
    if (!(j->file_buffer = malloc(FILE_BUFFER))) abort(); /* its pages are touched as they fill */
    setvbuf(j->f, j->file_buffer, _IOFBF, FILE_BUFFER);
}

void jsonl_writer_whole_messages(struct event_writer *w, bool whole)
{
    ((struct jsonl_writer *)w)->whole_messages = whole;
}

struct event_writer *jsonl_writer_new(FILE *f, bool owns_file, bool flush_each)
{
    struct jsonl_writer *j = calloc(1, sizeof *j);
    if (!j) abort();
    j->base.write = jsonl_write;
    j->base.close = jsonl_close;
    j->base.flush = jsonl_flush;
    j->f = f;
    j->owns_file = owns_file;
    j->flush_each = flush_each;
    return &j->base;
}

json_t *jsonl_event_json(const struct event *ev)
{
    static struct second_text last; /* the event loop's thread only (the control API) */
    json_t *o = event_object(&last, ev);
    return o ? o : placeholder(&last, ev);
}

char *jsonl_event_line(const struct event *ev, size_t *len)
{
    json_t *o = jsonl_event_json(ev);
    char *text = o ? json_dumps(o, DUMP_FLAGS) : NULL;
    json_decref(o);
    *len = text ? strlen(text) : 0;
    return text;
}
