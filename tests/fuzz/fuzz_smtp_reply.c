/* fuzz_smtp_reply.c - libFuzzer target for the reply parser and the pairing FIFO (smtp.h).
 *
 * Input: [reply bound selector][split seed, 2 bytes][commands pending at the start][the
 * server's byte stream]. The stream is parsed by an independent reference (here), by the parser
 * fed whole without a bound, fed whole with the bound and fed in pieces with the bound (the
 * bound is small so that replies come in partial pieces). Oracles:
 *   - every run gives the reference's replies: the pieces of a partial reply joined to the
 *     piece that ends it, with its code, line count and malformed flag (the differential
 *     oracle that found issue 16's defect 1 in 26 executions);
 *   - every byte comes out exactly once (pieces + what take_rest hands over = the stream);
 *   - pairing: a FIFO of pending commands, one pushed before each read, pops exactly one item
 *     per reply that ends and none per partial piece, in push order (seq 0, 1, 2, ...);
 *   - a run that takes the rest out in the middle (STARTTLS) still accounts for every byte. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "smtptap/buf.h"
#include "smtptap/smtp.h"

/* One reply as the session pairs it. */
struct logical {
    int code;
    unsigned lines;
    bool malformed;
    size_t off, len; /* where it is in the stream */
};

struct replies {
    struct logical *v;
    size_t n, cap;
};

static void add_reply(struct replies *rs, struct logical l)
{
    if (rs->n == rs->cap) {
        rs->cap = rs->cap ? rs->cap * 2 : 16;
        rs->v = realloc(rs->v, rs->cap * sizeof *rs->v);
        if (!rs->v) abort();
    }
    rs->v[rs->n++] = l;
}

/* ---- the reference: RFC 5321 4.2 read plainly, line by line ------------------------------ */

static int ref_line_code(const uint8_t *l, size_t n, bool *more)
{
    *more = false;
    if (n < 3 || l[0] < '2' || l[0] > '5' || l[1] < '0' || l[1] > '5' || l[2] < '0' || l[2] > '9')
        return 0;
    if (n > 3 && l[3] != ' ' && l[3] != '-' && l[3] != '\r' && l[3] != '\n') return 0;
    *more = n > 3 && l[3] == '-';
    return (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
}

static void reference(const uint8_t *s, size_t n, struct replies *out)
{
    struct logical cur = {0};
    size_t at = 0;
    while (at < n) {
        const uint8_t *lf = memchr(s + at, '\n', n - at);
        if (!lf) break;
        size_t end = (size_t)(lf - s) + 1;
        bool more;
        int code = ref_line_code(s + at, end - at, &more);
        if (cur.lines == 0) cur.code = code, cur.off = at;
        if (code == 0 || code != cur.code) cur.malformed = true;
        cur.lines++;
        at = end;
        if ((code && !more) || (code == 0 && cur.lines == 1)) {
            cur.len = at - cur.off;
            add_reply(out, cur);
            memset(&cur, 0, sizeof cur);
        }
    }
}

/* ---- the parser under test --------------------------------------------------------------- */

struct run {
    struct replies got;
    struct smtp_fifo fifo;
    uint64_t pushed, popped;
    size_t emitted;   /* bytes of every piece so far */
    size_t cur_start; /* where the reply being pieced together began */
    bool in_partial;
};

/* A piece came out: check it continues the stream, pair it when it ends a reply. */
static void on_piece(struct run *r, const uint8_t *s, const struct smtp_reply *rep)
{
    FUZZ_CHECK(rep->len > 0, "an empty reply piece");
    FUZZ_CHECK(memcmp(rep->bytes, s + r->emitted, rep->len) == 0,
               "piece at %zu is not the next bytes of the stream", r->emitted);
    if (!r->in_partial) r->cur_start = r->emitted;
    r->emitted += rep->len;
    r->in_partial = rep->partial;
    if (rep->partial) return; /* pairs with nothing yet */
    FUZZ_CHECK(rep->bytes[rep->len - 1] == '\n', "a reply that ends without LF");
    struct smtp_pending p;
    if (smtp_fifo_pop(&r->fifo, &p)) {
        FUZZ_CHECK(p.seq == r->popped, "FIFO popped seq %llu, expected %llu",
                   (unsigned long long)p.seq, (unsigned long long)r->popped);
        r->popped++;
    }
    struct logical l = {rep->code, rep->lines, rep->malformed, r->cur_start,
                        r->emitted - r->cur_start};
    add_reply(&r->got, l);
}

static void push_command(struct run *r)
{
    struct smtp_pending p = {
        .kind = SMTP_PENDING_COMMAND, .verb = SMTP_VERB_RCPT, .seq = r->pushed};
    if (smtp_fifo_push(&r->fifo, p)) r->pushed++;
}

/* Parses s[0..n) fed in pieces at cuts, bounded at max_reply; with take_at < n, hands the
 * rest over (as after a STARTTLS 220) once take_at bytes were fed, and stops. */
static void run_parser(struct run *r, const uint8_t *s, size_t n, size_t max_reply,
                       const size_t *cuts, size_t ncuts, size_t pending, size_t take_at)
{
    struct smtp_reply_parser p;
    smtp_reply_init(&p);
    p.max_reply = max_reply;
    smtp_fifo_init(&r->fifo, 4096);
    for (size_t i = 0; i < pending; i++) push_command(r);
    struct smtp_reply rep;
    FUZZ_CHECK(!smtp_reply_next(&p, &rep), "a reply from a parser never fed");
    size_t from = 0;
    for (size_t k = 0; k <= ncuts && from < n; k++) {
        size_t to = k < ncuts ? cuts[k] : n;
        push_command(r);
        smtp_reply_feed(&p, s + from, to - from);
        from = to;
        while (smtp_reply_next(&p, &rep)) on_piece(r, s, &rep);
        if (from >= take_at) break;
    }
    const uint8_t *rest;
    size_t left = smtp_reply_take_rest(&p, &rest);
    FUZZ_CHECK(left == 0 || memcmp(rest, s + r->emitted, left) == 0, "take_rest bytes misplaced");
    FUZZ_CHECK(r->emitted + left == from, "%zu bytes out + %zu left != %zu fed", r->emitted, left,
               from);
    FUZZ_CHECK(r->pushed - r->popped == smtp_fifo_count(&r->fifo), "FIFO count drifted");
    smtp_fifo_free(&r->fifo);
    smtp_reply_free(&p);
}

/* got must be want, or (prefix) its first got->n replies. */
static void compare(const struct replies *want, const struct replies *got, bool prefix,
                    const char *how, const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < got->n || (!prefix && i < want->n); i++) {
        const struct logical *w = i < want->n ? &want->v[i] : NULL;
        const struct logical *g = i < got->n ? &got->v[i] : NULL;
        if (w && g && w->code == g->code && w->lines == g->lines && w->malformed == g->malformed &&
            w->off == g->off && w->len == g->len)
            continue;
        fuzz_dump("stream", s, n);
        fuzz_fail("%s: reply %zu differs: got %s code %d lines %u malformed %d at %zu+%zu, "
                  "want %s code %d lines %u malformed %d at %zu+%zu",
                  how, i, g ? "" : "(none)", g ? g->code : 0, g ? g->lines : 0,
                  g ? g->malformed : 0, g ? g->off : 0, g ? g->len : 0, w ? "" : "(none)",
                  w ? w->code : 0, w ? w->lines : 0, w ? w->malformed : 0, w ? w->off : 0,
                  w ? w->len : 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    uint8_t sel = fuzz_u8(&in);
    size_t max_reply = sel < 200 ? 1 + sel % 80 : 64 * 1024;
    uint16_t seed = fuzz_u16(&in);
    size_t pending = fuzz_u8(&in) % 8;
    const uint8_t *s = in.p;
    size_t n = in.n;
    size_t *cuts = malloc((n + 1) * sizeof *cuts);
    if (!cuts) abort();
    size_t ncuts = fuzz_cuts(seed, n, cuts);

    struct replies want = {0};
    reference(s, n, &want);
    struct run unbounded = {0}, whole = {0}, split = {0}, taken = {0};
    run_parser(&unbounded, s, n, SIZE_MAX, NULL, 0, pending, n);
    compare(&want, &unbounded.got, false, "unbounded, whole", s, n);
    run_parser(&whole, s, n, max_reply, NULL, 0, pending, n);
    compare(&want, &whole.got, false, "bounded, whole", s, n);
    run_parser(&split, s, n, max_reply, cuts, ncuts, pending, n);
    compare(&want, &split.got, false, "bounded, in pieces", s, n);
    run_parser(&taken, s, n, max_reply, cuts, ncuts, pending, ncuts ? cuts[seed % ncuts] : n);
    compare(&want, &taken.got, true, "rest taken in the middle", s, n);

    free(want.v);
    free(unbounded.got.v);
    free(whole.got.v);
    free(split.got.v);
    free(taken.got.v);
    free(cuts);
    return 0;
}
