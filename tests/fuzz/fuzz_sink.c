/* fuzz_sink.c - libFuzzer target for the built-in server's protocol (sink_smtp.h).
 *
 * Input: [flags: users list or anyone, line bound][split seed, 2 bytes][the client's bytes].
 * The bytes go to the sink fed whole and fed in pieces, and beside it smtptap's own view of the
 * same stream is modelled: a framer and a FIFO of pending commands, as the session keeps them,
 * each reply of the sink popping one, a blocking command resumed with its reply's code.
 * Oracles:
 *   - pairing never drifts: every sink reply finds a pending command, the framer is never left
 *     waiting for a reply the sink does not send, and in the end both framers (the sink's and
 *     smtptap's) are in the same mode with the same bytes buffered;
 *   - every reply is well-formed (a code on every line, the same code, CRLF);
 *   - whole and in pieces, the sink says the same (CRAM-MD5 challenges, which carry the time,
 *     masked). */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "smtptap/buf.h"
#include "smtptap/sink_smtp.h"
#include "smtptap/smtp.h"

/* smtptap's side of the dialog with the sink. */
struct model {
    struct sink_smtp sink;
    struct smtp_in cin;               /* the session's framer of the client's bytes */
    struct smtp_fifo fifo;            /* commands waiting for their reply */
    struct smtp_reply_parser replies; /* the sink's output as the session parses it */
    struct buf said;                  /* every byte the sink said, CRAM challenges masked */
    uint64_t seq;
};

static void push(struct model *m, enum smtp_pending_kind kind, enum smtp_verb verb)
{
    struct smtp_pending p = {.kind = kind, .verb = verb, .seq = m->seq++};
    FUZZ_CHECK(smtp_fifo_push(&m->fifo, p), "FIFO full");
}

/* Appends a reply to `said`, a 334 line's text masked (CRAM-MD5 challenges carry the time). */
static void record(struct model *m, const struct smtp_reply *r)
{
    if (r->code == 334)
        buf_append_str(&m->said, "334 *\r\n");
    else
        buf_append(&m->said, r->bytes, r->len);
}

static void check_reply(const struct smtp_reply *r)
{
    FUZZ_CHECK(!r->partial && !r->malformed && r->code >= 200,
               "the sink sent a malformed reply (code %d)", r->code);
    for (size_t i = 0; i < r->len; i++)
        if (r->bytes[i] == '\n') FUZZ_CHECK(i > 0 && r->bytes[i - 1] == '\r', "a bare LF");
}

/* Pops the pending command the next reply of the sink answers; false when none is there. */
static bool pair_one(struct model *m)
{
    struct smtp_reply r;
    if (!smtp_reply_next(&m->replies, &r)) return false;
    check_reply(&r);
    record(m, &r);
    struct smtp_pending p;
    FUZZ_CHECK(smtp_fifo_pop(&m->fifo, &p), "a sink reply (%d) that no command asked for", r.code);
    if (smtp_pending_blocks(&p) && smtp_in_mode(&m->cin) == SMTP_IN_WAIT)
        smtp_in_resume(&m->cin, r.code);
    return true;
}

/* Frames what smtptap has of the client's bytes, pairing replies as they are needed. */
static void session_side(struct model *m)
{
    for (;;) {
        while (smtp_in_mode(&m->cin) == SMTP_IN_WAIT && pair_one(m)) continue;
        struct smtp_in_item it;
        smtp_in_next(&m->cin, &it);
        if (it.kind == SMTP_IN_NEED_MORE || it.kind == SMTP_IN_BLOCKED) break;
        if (it.kind == SMTP_IN_LINE && it.first)
            push(m, it.sasl ? SMTP_PENDING_SASL : SMTP_PENDING_COMMAND, it.verb);
        if (it.kind == SMTP_IN_CONTENT && it.end && !it.bdat)
            push(m, SMTP_PENDING_DATA_END, SMTP_VERB_DATA);
    }
    while (pair_one(m)) continue;
}

static void feed(struct model *m, const uint8_t *b, size_t n)
{
    sink_smtp_input(&m->sink, b, n);
    smtp_reply_feed(&m->replies, buf_head(&m->sink.out), buf_size(&m->sink.out));
    buf_reset(&m->sink.out);
    smtp_in_feed(&m->cin, b, n);
    session_side(m);
}

static void run(struct model *m, const struct sink_users *users, size_t max_line, const uint8_t *b,
                size_t n, const size_t *cuts, size_t ncuts)
{
    memset(m, 0, sizeof *m);
    sink_smtp_init(&m->sink, "sink.test", 1, users);
    m->sink.in.max_line = max_line;
    smtp_in_init(&m->cin);
    m->cin.max_line = max_line;
    smtp_fifo_init(&m->fifo, 1 << 20);
    smtp_reply_init(&m->replies);
    buf_init(&m->said);
    push(m, SMTP_PENDING_GREETING, SMTP_VERB_UNKNOWN);
    feed(m, NULL, 0);
    size_t from = 0;
    for (size_t k = 0; k <= ncuts && !m->sink.quit; k++) {
        size_t to = k < ncuts ? cuts[k] : n;
        feed(m, b + from, to - from);
        from = to;
    }
    if (m->sink.quit) return;
    FUZZ_CHECK(smtp_in_mode(&m->cin) != SMTP_IN_WAIT,
               "smtptap waits for a reply the sink never sent (%s)",
               smtp_verb_name(m->cin.waiting_for));
    FUZZ_CHECK(smtp_in_mode(&m->cin) == smtp_in_mode(&m->sink.in) &&
                   smtp_in_buffered(&m->cin) == smtp_in_buffered(&m->sink.in),
               "smtptap's framer is in mode %d (%zu buffered), the sink's in %d (%zu)",
               smtp_in_mode(&m->cin), smtp_in_buffered(&m->cin), smtp_in_mode(&m->sink.in),
               smtp_in_buffered(&m->sink.in));
}

static void model_free(struct model *m)
{
    sink_smtp_free(&m->sink);
    smtp_in_free(&m->cin);
    smtp_fifo_free(&m->fifo);
    smtp_reply_free(&m->replies);
    buf_free(&m->said);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct sink_users users, anyone;
    static bool parsed;
    if (!parsed) parsed = !sink_users_parse("alice:secret, bob:pw:with:colons", &users);
    struct fuzz_in in = {data, size};
    uint8_t flags = fuzz_u8(&in);
    size_t max_line = flags & 0x80 ? 16 * 1024 : 8 + (flags & 0x3f);
    const struct sink_users *who = flags & 0x40 ? &users : &anyone;
    uint16_t seed = fuzz_u16(&in);
    size_t *cuts = malloc((in.n + 1) * sizeof *cuts);
    if (!cuts) abort();
    size_t ncuts = fuzz_cuts(seed, in.n, cuts);
    static struct model whole, split;
    run(&whole, who, max_line, in.p, in.n, NULL, 0);
    run(&split, who, max_line, in.p, in.n, cuts, ncuts);
    if (buf_size(&whole.said) != buf_size(&split.said) ||
        memcmp(buf_head(&whole.said), buf_head(&split.said), buf_size(&whole.said)) != 0) {
        fuzz_dump("client", in.p, in.n);
        fuzz_dump("sink, whole", buf_head(&whole.said), buf_size(&whole.said));
        fuzz_dump("sink, in pieces", buf_head(&split.said), buf_size(&split.said));
        fuzz_fail("the sink said different things fed whole and in %zu pieces", ncuts + 1);
    }
    model_free(&whole);
    model_free(&split);
    free(cuts);
    return 0;
}
