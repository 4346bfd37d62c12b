/* test_smtp_in.c - unit tests for the client side of the pure SMTP module (smtp.h): the
 * command framer (smtp_in_*: command lines, pipelining, DATA, BDAT, AUTH, STARTTLS,
 * over-long lines), verb parsing (smtp_verb_*) and BDAT arguments (smtp_bdat_parse).
 *
 * Most framer cases go through a driver that feeds the same byte stream whole, split in two
 * at every byte boundary, split in three at every pair of boundaries (short inputs), one
 * byte at a time and in seeded random pieces, under several calling schedules. The driver
 * merges LINE fragments and CONTENT/RAW chunks into events, so one list of expected events
 * must hold for every split. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_driver.h"
#include "smtptap/smtp.h"

/* ---- helpers -------------------------------------------------------------------------- */

static uint64_t rng_state;

static void rng_seed(uint64_t seed)
{
    rng_state = seed ? seed : 0x9e3779b97f4a7c15ULL;
}

static uint64_t rng_next(void)
{
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

static size_t rng_below(size_t n)
{
    return n ? (size_t)(rng_next() % n) : 0;
}

/* ---- framer driver -------------------------------------------------------------------- */

enum ev_type { EV_LINE = 1, EV_CONTENT, EV_RAW, EV_RESUME };

static const char *ev_type_name(enum ev_type t)
{
    switch (t) {
    case EV_LINE: return "LINE";
    case EV_CONTENT: return "CONTENT";
    case EV_RAW: return "RAW";
    case EV_RESUME: return "RESUME";
    }
    return "?";
}

/* One collected event: a whole line (fragments merged), a whole DATA message / BDAT chunk
 * (pieces merged), a run of RAW bytes, or a resume the driver performed. */
struct ev {
    enum ev_type type;
    uint8_t *bytes;
    size_t len, cap;
    enum smtp_verb verb;
    bool sasl, complete;
    unsigned frags;
    bool bdat, end;
    int code;
    enum smtp_in_mode mode;
};

/* The expected form of an event. */
struct exp {
    enum ev_type type;
    const uint8_t *bytes;
    size_t len;
    enum smtp_verb verb;
    bool sasl, complete;
    unsigned frags;
    bool bdat, end;
    int code;
    enum smtp_in_mode mode;
};

#define X_LINE(s, v)                                                                               \
    {                                                                                              \
        .type = EV_LINE, .bytes = (const uint8_t *)(s), .len = sizeof(s) - 1, .verb = (v),         \
        .complete = true, .frags = 1                                                               \
    }
#define X_LONG(s, v, nf)                                                                           \
    {                                                                                              \
        .type = EV_LINE, .bytes = (const uint8_t *)(s), .len = sizeof(s) - 1, .verb = (v),         \
        .complete = true, .frags = (nf)                                                            \
    }
#define X_SASL(s)                                                                                  \
    {                                                                                              \
        .type = EV_LINE, .bytes = (const uint8_t *)(s), .len = sizeof(s) - 1,                      \
        .verb = SMTP_VERB_UNKNOWN, .sasl = true, .complete = true, .frags = 1                      \
    }
#define X_DATA(s)                                                                                  \
    {                                                                                              \
        .type = EV_CONTENT, .bytes = (const uint8_t *)(s), .len = sizeof(s) - 1, .end = true       \
    }
#define X_DATA_OPEN(s)                                                                             \
    {                                                                                              \
        .type = EV_CONTENT, .bytes = (const uint8_t *)(s), .len = sizeof(s) - 1, .end = false      \
    }
#define X_BDAT(s)                                                                                  \
    {                                                                                              \
        .type = EV_CONTENT, .bytes = (const uint8_t *)(s), .len = sizeof(s) - 1, .bdat = true,     \
        .end = true                                                                                \
    }
#define X_RAW(s)                                                                                   \
    {                                                                                              \
        .type = EV_RAW, .bytes = (const uint8_t *)(s), .len = sizeof(s) - 1                        \
    }
#define X_RESUME(c, m)                                                                             \
    {                                                                                              \
        .type = EV_RESUME, .code = (c), .mode = (m)                                                \
    }

enum sched {
    SCHED_LAZY,    /* drain after each piece; resume only when the framer says BLOCKED */
    SCHED_EAGER,   /* drain after each piece; resume as soon as the framer is in WAIT */
    SCHED_ONESTEP, /* take at most one item per piece (feeds while items are pending) */
};

struct framer_case {
    const uint8_t *in;
    size_t len;
    size_t max_line; /* 0: the framer's default */
    const int *codes;
    size_t ncodes;
    const struct exp *exp;
    size_t nexp;
    enum smtp_in_mode final_mode;
    size_t final_buffered;
};

#define MAX_EVS 64

struct run {
    const struct framer_case *c;
    enum sched sched;
    struct smtp_in p;
    struct ev ev[MAX_EVS];
    size_t nev;
    size_t ci; /* next reply code to hand to smtp_in_resume */
    char err[256];
};

static void run_error(struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void run_error(struct run *r, const char *fmt, ...)
{
    if (r->err[0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, sizeof r->err, fmt, ap);
    va_end(ap);
}

static struct ev *run_new_ev(struct run *r, enum ev_type t)
{
    if (r->nev == MAX_EVS) {
        run_error(r, "more than %d events", MAX_EVS);
        return NULL;
    }
    struct ev *e = &r->ev[r->nev++];
    memset(e, 0, sizeof *e);
    e->type = t;
    return e;
}

static void ev_append(struct ev *e, const uint8_t *b, size_t n)
{
    if (e->len + n > e->cap) {
        size_t cap = e->cap ? e->cap : 64;
        while (cap < e->len + n) cap *= 2;
        e->bytes = realloc(e->bytes, cap);
        assert_non_null(e->bytes);
        e->cap = cap;
    }
    if (n) memcpy(e->bytes + e->len, b, n);
    e->len += n;
}

static struct ev *run_last(struct run *r)
{
    return r->nev ? &r->ev[r->nev - 1] : NULL;
}

static void run_resume(struct run *r)
{
    int code = r->c->codes[r->ci++];
    enum smtp_in_mode m = smtp_in_resume(&r->p, code);
    if (m != r->p.mode) run_error(r, "resume(%d) returned %d but mode is %d", code, m, r->p.mode);
    struct ev *e = run_new_ev(r, EV_RESUME);
    if (!e) return;
    e->code = code;
    e->mode = m;
}

static void run_record(struct run *r, const struct smtp_in_item *it)
{
    if (it->len == 0 || it->bytes == NULL) {
        run_error(r, "item kind %d with no bytes", it->kind);
        return;
    }
    struct ev *last = run_last(r);
    struct ev *e;
    switch (it->kind) {
    case SMTP_IN_LINE:
        if (it->len > r->p.max_line)
            run_error(r, "line fragment of %zu bytes > max_line %zu", it->len, r->p.max_line);
        if (!it->complete && it->len != r->p.max_line)
            run_error(r, "incomplete fragment of %zu bytes, expected max_line %zu", it->len,
                      r->p.max_line);
        if (it->complete != (it->bytes[it->len - 1] == '\n'))
            run_error(r, "complete=%d but last byte 0x%02x", it->complete, it->bytes[it->len - 1]);
        if (it->complete && memchr(it->bytes, '\n', it->len - 1))
            run_error(r, "line item contains an inner LF");
        if (last && last->type == EV_LINE && !last->complete) {
            if (it->first) run_error(r, "continuation fragment has first=true");
            if (it->verb != last->verb) run_error(r, "verb changed between fragments");
            if (it->sasl != last->sasl) run_error(r, "sasl changed between fragments");
            e = last;
        } else {
            if (!it->first) run_error(r, "line starts with first=false");
            e = run_new_ev(r, EV_LINE);
            if (!e) return;
            e->verb = it->verb;
            e->sasl = it->sasl;
        }
        e->frags++;
        e->complete = it->complete;
        ev_append(e, it->bytes, it->len);
        break;
    case SMTP_IN_CONTENT:
        if (last && last->type == EV_CONTENT && !last->end) {
            if (it->bdat != last->bdat) run_error(r, "bdat changed within one message");
            e = last;
        } else {
            e = run_new_ev(r, EV_CONTENT);
            if (!e) return;
            e->bdat = it->bdat;
        }
        e->end = it->end;
        e->frags++;
        ev_append(e, it->bytes, it->len);
        break;
    case SMTP_IN_RAW:
        if (last && last->type == EV_RAW) {
            e = last;
        } else {
            e = run_new_ev(r, EV_RAW);
            if (!e) return;
        }
        ev_append(e, it->bytes, it->len);
        break;
    default: run_error(r, "unexpected item kind %d", it->kind); break;
    }
}

/* One call to smtp_in_next (plus the resume the schedule calls for). Returns false when the
 * framer needs more bytes or is blocked with no reply code left to give it. */
static bool run_step(struct run *r)
{
    struct smtp_in_item it;
    if (r->sched == SCHED_EAGER && r->p.mode == SMTP_IN_WAIT && r->ci < r->c->ncodes) run_resume(r);
    smtp_in_next(&r->p, &it);
    switch (it.kind) {
    case SMTP_IN_NEED_MORE:
        if (r->p.mode == SMTP_IN_WAIT && smtp_in_buffered(&r->p) != 0)
            run_error(r, "NEED_MORE in WAIT with %zu bytes buffered", smtp_in_buffered(&r->p));
        return false;
    case SMTP_IN_BLOCKED: {
        if (r->p.mode != SMTP_IN_WAIT) run_error(r, "BLOCKED outside WAIT (mode %d)", r->p.mode);
        size_t held = smtp_in_buffered(&r->p);
        if (held == 0) run_error(r, "BLOCKED with nothing buffered");
        if (r->sched == SCHED_EAGER && r->ci < r->c->ncodes)
            run_error(r, "BLOCKED although the driver resumed eagerly");
        struct smtp_in_item again;
        smtp_in_next(&r->p, &again);
        if (again.kind != SMTP_IN_BLOCKED || smtp_in_buffered(&r->p) != held)
            run_error(r, "BLOCKED is not stable: kind %d, %zu bytes", again.kind,
                      smtp_in_buffered(&r->p));
        if (r->ci >= r->c->ncodes) return false;
        run_resume(r);
        return true;
    }
    default: run_record(r, &it); return true;
    }
}

static void run_drain(struct run *r)
{
    while (run_step(r) && !r->err[0]) {
    }
}

static void ev_free_all(struct run *r)
{
    for (size_t i = 0; i < r->nev; i++) free(r->ev[i].bytes);
    r->nev = 0;
}

/* Compares collected events with the expectation; returns a description of the first
 * difference or NULL. */
static const char *events_differ(const struct run *r, const struct framer_case *c, size_t *at)
{
    *at = 0;
    for (size_t i = 0; i < r->nev || i < c->nexp; i++) {
        *at = i;
        if (i >= r->nev) return "missing event";
        if (i >= c->nexp) return "unexpected extra event";
        const struct ev *e = &r->ev[i];
        const struct exp *x = &c->exp[i];
        if (e->type != x->type) return "event type";
        switch (x->type) {
        case EV_RESUME:
            if (e->code != x->code) return "resume code";
            if (e->mode != x->mode) return "mode after resume";
            break;
        case EV_LINE:
            if (e->verb != x->verb) return "verb";
            if (e->sasl != x->sasl) return "sasl flag";
            if (e->complete != x->complete) return "complete flag";
            if (e->frags != x->frags) return "fragment count";
            break;
        case EV_CONTENT:
            if (e->bdat != x->bdat) return "bdat flag";
            if (e->end != x->end) return "end flag";
            break;
        case EV_RAW: break;
        }
        if (x->type != EV_RESUME &&
            (e->len != x->len || (x->len && memcmp(e->bytes, x->bytes, x->len) != 0)))
            return "bytes";
    }
    return NULL;
}

static const char *sched_name(enum sched s)
{
    return s == SCHED_LAZY ? "lazy" : s == SCHED_EAGER ? "eager" : "one-step";
}

static void run_one(const struct framer_case *c, enum sched sched, const size_t *cuts, size_t ncuts)
{
    static struct run r; /* large; one at a time */
    memset(&r, 0, sizeof r);
    r.c = c;
    r.sched = sched;
    smtp_in_init(&r.p);
    if (c->max_line) r.p.max_line = c->max_line;

    size_t start = 0;
    for (size_t k = 0; k <= ncuts && !r.err[0]; k++) {
        size_t end = k < ncuts ? cuts[k] : c->len;
        smtp_in_feed(&r.p, c->in + start, end - start);
        start = end;
        if (sched == SCHED_ONESTEP && k < ncuts)
            run_step(&r);
        else
            run_drain(&r);
    }
    /* End of stream: hand over any reply still due to a framer waiting with nothing buffered
     * (a lazy driver never saw BLOCKED for it). */
    while (!r.err[0] && r.p.mode == SMTP_IN_WAIT && smtp_in_buffered(&r.p) == 0 &&
           r.ci < c->ncodes) {
        run_resume(&r);
        run_drain(&r);
    }

    size_t at = 0;
    const char *diff = r.err[0] ? r.err : events_differ(&r, c, &at);
    if (!diff && r.ci != c->ncodes) diff = "not every reply code was used";
    if (!diff && r.p.mode != c->final_mode) diff = "final mode";
    if (!diff && smtp_in_buffered(&r.p) != c->final_buffered) diff = "final buffered count";
    if (diff) {
        char split[160];
        describe_split(split, sizeof split, cuts, ncuts);
        fprintf(stderr, "framer mismatch (%s) with %s schedule, %s\n", diff, sched_name(sched),
                split);
        dump_bytes("input", c->in, c->len);
        if (!r.err[0] && at < r.nev) {
            fprintf(stderr, "  event %zu got %s", at, ev_type_name(r.ev[at].type));
            fprintf(stderr,
                    " verb=%d sasl=%d complete=%d frags=%u bdat=%d end=%d code=%d mode=%d\n",
                    r.ev[at].verb, r.ev[at].sasl, r.ev[at].complete, r.ev[at].frags, r.ev[at].bdat,
                    r.ev[at].end, r.ev[at].code, r.ev[at].mode);
            dump_bytes("got", r.ev[at].bytes, r.ev[at].len);
        }
        if (!r.err[0] && at < c->nexp) {
            fprintf(stderr, "  event %zu expected %s\n", at, ev_type_name(c->exp[at].type));
            dump_bytes("expected", c->exp[at].bytes, c->exp[at].len);
        }
        fprintf(
            stderr, "  final mode %d (expected %d), buffered %zu (expected %zu), codes %zu/%zu\n",
            r.p.mode, c->final_mode, smtp_in_buffered(&r.p), c->final_buffered, r.ci, c->ncodes);
        ev_free_all(&r);
        smtp_in_free(&r.p);
        fail_msg("framer case failed: %s", diff);
    }
    ev_free_all(&r);
    smtp_in_free(&r.p);
}

/* Runs a case under every schedule: whole, every 2-way split, every 3-way split (short
 * inputs), one byte at a time, and seeded random splits. */
static void run_framer_case(const struct framer_case *c)
{
    size_t n = c->len;
    size_t *cuts = calloc(n + 1, sizeof *cuts);
    assert_non_null(cuts);
    const enum sched scheds[] = {SCHED_LAZY, SCHED_EAGER, SCHED_ONESTEP};
    for (size_t s = 0; s < NELEM(scheds); s++) {
        run_one(c, scheds[s], NULL, 0);
        for (size_t k = 1; k < n; k++) {
            cuts[0] = k;
            run_one(c, scheds[s], cuts, 1);
        }
        if (n <= 64) {
            for (size_t a = 1; a < n; a++) {
                for (size_t b = a + 1; b < n; b++) {
                    cuts[0] = a;
                    cuts[1] = b;
                    run_one(c, scheds[s], cuts, 2);
                }
            }
        }
        if (n > 1) {
            for (size_t k = 1; k < n; k++) cuts[k - 1] = k;
            run_one(c, scheds[s], cuts, n - 1);
        }
        rng_seed(0x5eed0000 + n * 31 + s);
        for (int t = 0; t < 16 && n > 1; t++) {
            size_t m = 0;
            for (size_t pos = 1 + rng_below(7); pos < n; pos += 1 + rng_below(11)) cuts[m++] = pos;
            run_one(c, scheds[s], cuts, m);
        }
    }
    free(cuts);
}

#define FRAMER_CASE(input, codes_, exp_, final_mode_, final_buffered_)                             \
    do {                                                                                           \
        const struct framer_case fc = {LIT(input), 0,           (codes_),      NELEM(codes_) - 1,  \
                                       (exp_),     NELEM(exp_), (final_mode_), (final_buffered_)}; \
        run_framer_case(&fc);                                                                      \
    } while (0)

/* Reply-code lists carry a trailing sentinel so that an empty list is still an array. */
#define CODES(...) ((const int[]){__VA_ARGS__, -1})
#define NOCODES    ((const int[]){-1})

/* ---- verbs ---------------------------------------------------------------------------- */

static void test_verb_parse_recognises_every_verb_in_any_case(void **state)
{
    (void)state;
    static const struct {
        const char *line;
        enum smtp_verb verb;
    } cases[] = {
        {"HELO a", SMTP_VERB_HELO},       {"ehlo a", SMTP_VERB_EHLO},
        {"Mail FROM:<>", SMTP_VERB_MAIL}, {"rCpT TO:<a@b>", SMTP_VERB_RCPT},
        {"data", SMTP_VERB_DATA},         {"BdAt 1", SMTP_VERB_BDAT},
        {"rset", SMTP_VERB_RSET},         {"NOOP", SMTP_VERB_NOOP},
        {"quit", SMTP_VERB_QUIT},         {"VRFY x", SMTP_VERB_VRFY},
        {"expn x", SMTP_VERB_EXPN},       {"Help", SMTP_VERB_HELP},
        {"auth PLAIN", SMTP_VERB_AUTH},   {"StartTLS", SMTP_VERB_STARTTLS},
    };
    for (size_t i = 0; i < NELEM(cases); i++) {
        char line[64];
        const char *terms[] = {"", "\n", "\r\n"};
        for (size_t t = 0; t < NELEM(terms); t++) {
            snprintf(line, sizeof line, "%s%s", cases[i].line, terms[t]);
            size_t n = strlen(line);
            assert_int_equal(smtp_verb_parse((const uint8_t *)line, n, NULL, NULL), cases[i].verb);
        }
    }
}

static void test_verb_parse_extracts_argument_without_blanks_or_terminator(void **state)
{
    (void)state;
    const uint8_t *arg = NULL;
    size_t arg_len = 99;
    assert_int_equal(smtp_verb_parse(LIT("MAIL   FROM:<a@b> SIZE=10\r\n"), &arg, &arg_len),
                     SMTP_VERB_MAIL);
    assert_int_equal(arg_len, 18);
    assert_memory_equal(arg, "FROM:<a@b> SIZE=10", 18);

    assert_int_equal(smtp_verb_parse(LIT("RCPT\t \tTO:<x>\n"), &arg, &arg_len), SMTP_VERB_RCPT);
    assert_int_equal(arg_len, 6);
    assert_memory_equal(arg, "TO:<x>", 6);

    /* Trailing blanks belong to the argument; only the terminator is removed. */
    assert_int_equal(smtp_verb_parse(LIT("NOOP x  \r\n"), &arg, &arg_len), SMTP_VERB_NOOP);
    assert_int_equal(arg_len, 3);
    assert_memory_equal(arg, "x  ", 3);

    static const uint8_t line[] = "DATA\r\n";
    assert_int_equal(smtp_verb_parse(line, 6, &arg, &arg_len), SMTP_VERB_DATA);
    assert_int_equal(arg_len, 0);
    assert_ptr_equal(arg, line + 4);

    assert_int_equal(smtp_verb_parse(LIT("\r\n"), &arg, &arg_len), SMTP_VERB_UNKNOWN);
    assert_int_equal(arg_len, 0);

    assert_int_equal(smtp_verb_parse(LIT("XCLIENT NAME=x\r\n"), &arg, &arg_len), SMTP_VERB_UNKNOWN);
    assert_int_equal(arg_len, 6);
    assert_memory_equal(arg, "NAME=x", 6);

    /* NUL and 8-bit bytes in the argument are kept. */
    assert_int_equal(smtp_verb_parse(LIT("VRFY \xff\0\xc3\xa9\r\n"), &arg, &arg_len),
                     SMTP_VERB_VRFY);
    assert_int_equal(arg_len, 4);
    assert_memory_equal(arg, "\xff\0\xc3\xa9", 4);
}

static void test_verb_parse_rejects_prefixes_suffixes_and_leading_blanks(void **state)
{
    (void)state;
    static const char *const bad[] = {"",      "HEL",    "HELOX",   "MAILFROM:<>",
                                      " QUIT", "\tQUIT", "STARTTL", "STARTTLSX",
                                      "QU\0T", "QUIT\0", "DAT\xc1", "D\xc3\xa1TA"};
    static const size_t len[] = {0, 3, 5, 11, 5, 5, 7, 9, 4, 5, 4, 5};
    for (size_t i = 0; i < NELEM(bad); i++) {
        assert_int_equal(smtp_verb_parse((const uint8_t *)bad[i], len[i], NULL, NULL),
                         SMTP_VERB_UNKNOWN);
    }
}

static void test_verb_name_round_trips_through_parse(void **state)
{
    (void)state;
    for (int v = SMTP_VERB_HELO; v <= SMTP_VERB_STARTTLS; v++) {
        const char *name = smtp_verb_name((enum smtp_verb)v);
        assert_string_not_equal(name, "?");
        assert_int_equal(smtp_verb_parse((const uint8_t *)name, strlen(name), NULL, NULL), v);
    }
    assert_string_equal(smtp_verb_name(SMTP_VERB_STARTTLS), "STARTTLS");
    assert_string_equal(smtp_verb_name(SMTP_VERB_UNKNOWN), "?");
    assert_string_equal(smtp_verb_name((enum smtp_verb)999), "?");
}

/* ---- smtp_bdat_parse ------------------------------------------------------------------ */

static void test_bdat_parse_accepts_size_and_optional_last(void **state)
{
    (void)state;
    uint64_t size = 77;
    bool last = true;
    assert_true(smtp_bdat_parse(LIT("10"), &size, &last));
    assert_int_equal(size, 10);
    assert_false(last);
    assert_true(smtp_bdat_parse(LIT("0 LAST"), &size, &last));
    assert_int_equal(size, 0);
    assert_true(last);
    assert_true(smtp_bdat_parse(LIT("5 last"), &size, &last));
    assert_int_equal(size, 5);
    assert_true(last);
    assert_true(smtp_bdat_parse(LIT("007   LaSt"), &size, &last));
    assert_int_equal(size, 7);
    assert_true(last);
    assert_true(smtp_bdat_parse(LIT("123456789012"), &size, &last));
    assert_int_equal(size, 123456789012ULL);
    assert_false(last);
    /* Blanks after the size and nothing else: no LAST. */
    assert_true(smtp_bdat_parse(LIT("3 "), &size, &last));
    assert_int_equal(size, 3);
    assert_false(last);
}

static void test_bdat_parse_rejects_non_numbers_and_bad_markers(void **state)
{
    (void)state;
    static const char *const bad[] = {"",      "x",     " 5",      "-1",    "+5",
                                      "5 FOO", "5LAST", "5 LASTX", "5 LAS", "5 LAST x",
                                      "5x",    "LAST",  "5\tLAST", "0x10",  "5 LAST LAST"};
    for (size_t i = 0; i < NELEM(bad); i++) {
        uint64_t size = 4242;
        bool last = true;
        assert_false(smtp_bdat_parse((const uint8_t *)bad[i], strlen(bad[i]), &size, &last));
        /* Outputs are untouched on failure. */
        assert_int_equal(size, 4242);
        assert_true(last);
    }
}

static void test_bdat_parse_detects_uint64_overflow(void **state)
{
    (void)state;
    uint64_t size = 0;
    bool last = false;
    assert_true(smtp_bdat_parse(LIT("18446744073709551609"), &size, &last));
    assert_int_equal(size, 18446744073709551609ULL);
    assert_true(smtp_bdat_parse(LIT("18446744073709551615 LAST"), &size, &last));
    assert_true(size == UINT64_MAX);
    assert_true(last);
    assert_true(
        smtp_bdat_parse(LIT("000000000000000000000000000018446744073709551615"), &size, &last));
    assert_true(size == UINT64_MAX);
    assert_false(smtp_bdat_parse(LIT("18446744073709551616"), &size, &last));
    assert_false(smtp_bdat_parse(LIT("18446744073709551620"), &size, &last));
    assert_false(smtp_bdat_parse(LIT("99999999999999999999"), &size, &last));
    assert_false(smtp_bdat_parse(LIT("184467440737095516150"), &size, &last));
    assert_false(smtp_bdat_parse(LIT("999999999999999999999999999999 LAST"), &size, &last));
}

/* ---- framer: command lines ------------------------------------------------------------ */

static void test_framer_command_verbs_are_case_insensitive(void **state)
{
    (void)state;
    const struct exp exp[] = {
        X_LINE("ehlo Client.Example\r\n", SMTP_VERB_EHLO),
        X_LINE("MaIl FROM:<a@b.example> BODY=8BITMIME\r\n", SMTP_VERB_MAIL),
        X_LINE("rcpt TO:<c@d.example>\r\n", SMTP_VERB_RCPT),
        X_LINE("Rset\r\n", SMTP_VERB_RSET),
        X_LINE("noop\r\n", SMTP_VERB_NOOP),
        X_LINE("XYZZY plugh\r\n", SMTP_VERB_UNKNOWN),
        X_LINE("quit\r\n", SMTP_VERB_QUIT),
    };
    FRAMER_CASE("ehlo Client.Example\r\nMaIl FROM:<a@b.example> BODY=8BITMIME\r\nrcpt "
                "TO:<c@d.example>\r\nRset\r\nnoop\r\nXYZZY plugh\r\nquit\r\n",
                NOCODES, exp, SMTP_IN_COMMAND, 0);
}

static void test_framer_accepts_crlf_and_bare_lf_terminators(void **state)
{
    (void)state;
    const struct exp exp[] = {
        X_LINE("HELO a\n", SMTP_VERB_HELO),        X_LINE("NOOP\r\n", SMTP_VERB_NOOP),
        X_LINE("\n", SMTP_VERB_UNKNOWN),           X_LINE("\r\n", SMTP_VERB_UNKNOWN),
        X_LINE("VRFY a\rb\r\r\n", SMTP_VERB_VRFY), /* a bare CR does not end a line */
        X_LINE("QUIT\n", SMTP_VERB_QUIT),
    };
    /* The trailing "RSET\r" has no LF yet: it stays buffered. */
    FRAMER_CASE("HELO a\nNOOP\r\n\n\r\nVRFY a\rb\r\r\nQUIT\nRSET\r", NOCODES, exp, SMTP_IN_COMMAND,
                5);
}

static void test_framer_passes_nul_and_8bit_bytes_through_byte_exact(void **state)
{
    (void)state;
    const struct exp exp[] = {
        X_LINE("MAIL FROM:<\xc3\xa9t\xc3\xa9@b\0x> SMTPUTF8\r\n", SMTP_VERB_MAIL),
        X_LINE("\0\xff\x80\x01\r\n", SMTP_VERB_UNKNOWN),
        X_LINE("RCPT TO:<\xff\xfe\0\0>\n", SMTP_VERB_RCPT),
    };
    FRAMER_CASE("MAIL FROM:<\xc3\xa9t\xc3\xa9@b\0x> SMTPUTF8\r\n\0\xff\x80\x01\r\nRCPT "
                "TO:<\xff\xfe\0\0>\n",
                NOCODES, exp, SMTP_IN_COMMAND, 0);
}

/* Issue 16, defect 4: a framer that was never fed has no storage; asking it for an item in any
 * mode, or dropping its bytes, must not compute NULL + 0 (clang's UBSan reports it). */
static void test_framer_never_fed_needs_more_in_every_mode(void **state)
{
    (void)state;
    static const enum smtp_in_mode modes[] = {SMTP_IN_COMMAND, SMTP_IN_SASL, SMTP_IN_WAIT,
                                              SMTP_IN_DATA,    SMTP_IN_BDAT, SMTP_IN_OPAQUE};
    for (size_t i = 0; i < NELEM(modes); i++) {
        struct smtp_in p;
        struct smtp_in_item it;
        smtp_in_init(&p);
        p.mode = modes[i];
        p.bdat_left = 1;
        smtp_in_feed(&p, NULL, 0);
        smtp_in_next(&p, &it);
        assert_int_equal(it.kind, SMTP_IN_NEED_MORE);
        assert_int_equal(smtp_in_buffered(&p), 0);
        assert_int_equal(smtp_in_discard(&p), 0);
        assert_int_equal(smtp_in_reset(&p), 0);
        smtp_in_next(&p, &it);
        assert_int_equal(it.kind, SMTP_IN_NEED_MORE);
        smtp_in_free(&p);
    }
}

static void test_framer_holds_an_incomplete_line_until_its_terminator(void **state)
{
    (void)state;
    struct smtp_in p;
    struct smtp_in_item it;
    smtp_in_init(&p);
    smtp_in_next(&p, &it);
    assert_int_equal(it.kind, SMTP_IN_NEED_MORE);
    smtp_in_feed(&p, LIT("NOOP"));
    smtp_in_next(&p, &it);
    assert_int_equal(it.kind, SMTP_IN_NEED_MORE);
    assert_int_equal(smtp_in_buffered(&p), 4);
    smtp_in_feed(&p, LIT("\r"));
    smtp_in_next(&p, &it);
    assert_int_equal(it.kind, SMTP_IN_NEED_MORE);
    assert_int_equal(smtp_in_buffered(&p), 5);
    smtp_in_feed(&p, LIT("\nQU"));
    smtp_in_next(&p, &it);
    assert_int_equal(it.kind, SMTP_IN_LINE);
    assert_int_equal(it.len, 6);
    assert_memory_equal(it.bytes, "NOOP\r\n", 6);
    assert_int_equal(it.verb, SMTP_VERB_NOOP);
    assert_true(it.first);
    assert_true(it.complete);
    assert_false(it.sasl);
    smtp_in_next(&p, &it);
    assert_int_equal(it.kind, SMTP_IN_NEED_MORE);
    assert_int_equal(smtp_in_buffered(&p), 2);
    assert_int_equal(p.mode, SMTP_IN_COMMAND);
    smtp_in_free(&p);
}

/* ---- framer: pipelining and DATA ------------------------------------------------------ */

#define BURST                                                                                      \
    "EHLO client.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nRCPT "             \
    "TO:<e@f.example>\r\nDATA\r\n"

static void expect_line(struct smtp_in *p, const char *bytes, size_t len, enum smtp_verb verb)
{
    struct smtp_in_item it;
    smtp_in_next(p, &it);
    assert_int_equal(it.kind, SMTP_IN_LINE);
    assert_int_equal(it.len, len);
    assert_memory_equal(it.bytes, bytes, len);
    assert_int_equal(it.verb, verb);
    assert_true(it.first);
    assert_true(it.complete);
    assert_false(it.sasl);
}
#define EXPECT_LINE(p, s, v) expect_line((p), (s), sizeof(s) - 1, (v))

static void expect_kind(struct smtp_in *p, enum smtp_in_kind kind)
{
    struct smtp_in_item it;
    smtp_in_next(p, &it);
    assert_int_equal(it.kind, kind);
}

static void test_framer_pipelined_burst_blocks_after_data_until_354(void **state)
{
    (void)state;
    struct smtp_in p;
    struct smtp_in_item it;
    smtp_in_init(&p);
    smtp_in_feed(&p, LIT(BURST "Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n"));
    EXPECT_LINE(&p, "EHLO client.example\r\n", SMTP_VERB_EHLO);
    EXPECT_LINE(&p, "MAIL FROM:<a@b.example>\r\n", SMTP_VERB_MAIL);
    EXPECT_LINE(&p, "RCPT TO:<c@d.example>\r\n", SMTP_VERB_RCPT);
    EXPECT_LINE(&p, "RCPT TO:<e@f.example>\r\n", SMTP_VERB_RCPT);
    EXPECT_LINE(&p, "DATA\r\n", SMTP_VERB_DATA);
    for (int i = 0; i < 3; i++) {
        expect_kind(&p, SMTP_IN_BLOCKED);
        assert_int_equal(p.mode, SMTP_IN_WAIT);
        assert_int_equal(p.waiting_for, SMTP_VERB_DATA);
        assert_int_equal(smtp_in_buffered(&p), 30);
    }
    /* More bytes while blocked are held too. */
    smtp_in_feed(&p, LIT("NOOP\r\n"));
    expect_kind(&p, SMTP_IN_BLOCKED);
    assert_int_equal(smtp_in_buffered(&p), 36);
    assert_int_equal(smtp_in_resume(&p, 354), SMTP_IN_DATA);
    smtp_in_next(&p, &it);
    assert_int_equal(it.kind, SMTP_IN_CONTENT);
    assert_false(it.bdat);
    assert_true(it.end);
    assert_int_equal(it.len, 24);
    assert_memory_equal(it.bytes, "Subject: hi\r\n\r\nbody\r\n.\r\n", 24);
    EXPECT_LINE(&p, "QUIT\r\n", SMTP_VERB_QUIT);
    EXPECT_LINE(&p, "NOOP\r\n", SMTP_VERB_NOOP);
    expect_kind(&p, SMTP_IN_NEED_MORE);
    assert_int_equal(smtp_in_buffered(&p), 0);
    smtp_in_free(&p);
}

static void test_framer_pipelined_burst_every_split(void **state)
{
    (void)state;
    const struct exp exp[] = {
        X_LINE("EHLO client.example\r\n", SMTP_VERB_EHLO),
        X_LINE("MAIL FROM:<a@b.example>\r\n", SMTP_VERB_MAIL),
        X_LINE("RCPT TO:<c@d.example>\r\n", SMTP_VERB_RCPT),
        X_LINE("RCPT TO:<e@f.example>\r\n", SMTP_VERB_RCPT),
        X_LINE("DATA\r\n", SMTP_VERB_DATA),
        X_RESUME(354, SMTP_IN_DATA),
        X_DATA("Subject: hi\r\n\r\nbody\r\n.\r\n"),
        X_LINE("QUIT\r\n", SMTP_VERB_QUIT),
    };
    FRAMER_CASE(BURST "Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n", CODES(354), exp, SMTP_IN_COMMAND,
                0);
}

static void test_framer_waits_with_need_more_when_nothing_follows_data(void **state)
{
    (void)state;
    struct smtp_in p;
    smtp_in_init(&p);
    smtp_in_feed(&p, LIT(BURST));
    for (int i = 0; i < 4; i++) expect_kind(&p, SMTP_IN_LINE);
    EXPECT_LINE(&p, "DATA\r\n", SMTP_VERB_DATA);
    /* BLOCKED means "bytes are held"; with none buffered the framer just needs more. */
    expect_kind(&p, SMTP_IN_NEED_MORE);
    assert_int_equal(p.mode, SMTP_IN_WAIT);
    assert_int_equal(smtp_in_buffered(&p), 0);
    smtp_in_feed(&p, LIT("x"));
    expect_kind(&p, SMTP_IN_BLOCKED);
    assert_int_equal(smtp_in_buffered(&p), 1);
    smtp_in_free(&p);

    /* The whole burst with no reply code available ends held in WAIT. */
    const struct exp exp[] = {
        X_LINE("EHLO client.example\r\n", SMTP_VERB_EHLO),
        X_LINE("MAIL FROM:<a@b.example>\r\n", SMTP_VERB_MAIL),
        X_LINE("RCPT TO:<c@d.example>\r\n", SMTP_VERB_RCPT),
        X_LINE("RCPT TO:<e@f.example>\r\n", SMTP_VERB_RCPT),
        X_LINE("DATA\r\n", SMTP_VERB_DATA),
    };
    FRAMER_CASE(BURST "Subject: x\r\n", NOCODES, exp, SMTP_IN_WAIT, 12);
}

static void test_framer_data_rejected_with_554_parses_held_bytes_as_commands(void **state)
{
    (void)state;
    const struct exp exp[] = {
        X_LINE("EHLO client.example\r\n", SMTP_VERB_EHLO),
        X_LINE("MAIL FROM:<a@b.example>\r\n", SMTP_VERB_MAIL),
        X_LINE("RCPT TO:<c@d.example>\r\n", SMTP_VERB_RCPT),
        X_LINE("RCPT TO:<e@f.example>\r\n", SMTP_VERB_RCPT),
        X_LINE("DATA\r\n", SMTP_VERB_DATA),
        X_RESUME(554, SMTP_IN_COMMAND),
        X_LINE("Subject: hi\r\n", SMTP_VERB_UNKNOWN),
        X_LINE("\r\n", SMTP_VERB_UNKNOWN),
        X_LINE("quit now\r\n", SMTP_VERB_QUIT),
        X_LINE(".\r\n", SMTP_VERB_UNKNOWN),
        X_LINE("RSET\r\n", SMTP_VERB_RSET),
    };
    FRAMER_CASE(BURST "Subject: hi\r\n\r\nquit now\r\n.\r\nRSET\r\n", CODES(554), exp,
                SMTP_IN_COMMAND, 0);
}

static void test_framer_resume_outside_wait_changes_nothing(void **state)
{
    (void)state;
    struct smtp_in p;
    smtp_in_init(&p);
    assert_int_equal(smtp_in_resume(&p, 354), SMTP_IN_COMMAND);
    assert_int_equal(smtp_in_resume(&p, 334), SMTP_IN_COMMAND);
    assert_int_equal(smtp_in_resume(&p, 220), SMTP_IN_COMMAND);
    assert_int_equal(p.mode, SMTP_IN_COMMAND);
    smtp_in_feed(&p, LIT("DATA\r\nabc"));
    expect_kind(&p, SMTP_IN_LINE);
    assert_int_equal(smtp_in_resume(&p, 354), SMTP_IN_DATA);
    /* A second resume while in DATA does not disturb it. */
    assert_int_equal(smtp_in_resume(&p, 554), SMTP_IN_DATA);
    struct smtp_in_item it;
    smtp_in_next(&p, &it);
    assert_int_equal(it.kind, SMTP_IN_CONTENT);
    assert_false(it.end);
    assert_int_equal(it.len, 3);
    smtp_in_free(&p);
}

/* A DATA exchange: "DATA\r\n" + body + "QUIT\r\n" with 354, body expected to be the message. */
static void run_data_message(const uint8_t *body, size_t body_len)
{
    static const char pre[] = "DATA\r\n", post[] = "QUIT\r\n";
    size_t n = 6 + body_len + 6;
    uint8_t *in = malloc(n);
    assert_non_null(in);
    memcpy(in, pre, 6);
    memcpy(in + 6, body, body_len);
    memcpy(in + 6 + body_len, post, 6);
    const struct exp exp[] = {
        X_LINE("DATA\r\n", SMTP_VERB_DATA),
        X_RESUME(354, SMTP_IN_DATA),
        {.type = EV_CONTENT, .bytes = body, .len = body_len, .end = true},
        X_LINE("QUIT\r\n", SMTP_VERB_QUIT),
    };
    const int codes[] = {354};
    const struct framer_case fc = {in, n, 0, codes, 1, exp, NELEM(exp), SMTP_IN_COMMAND, 0};
    run_framer_case(&fc);
    free(in);
}
#define DATA_MESSAGE(s) run_data_message(LIT(s))

static void test_data_ends_at_crlf_dot_crlf(void **state)
{
    (void)state;
    DATA_MESSAGE("Subject: x\r\n\r\nhello\r\n.\r\n");
    DATA_MESSAGE("a\r\n.\r\n");
    DATA_MESSAGE("\r\n.\r\n");
    DATA_MESSAGE("a\r\r\n.\r\n");
    DATA_MESSAGE("a\r\n\r\n\r\n.\r\n");
}

static void test_data_message_of_only_the_dot_line_ends_at_once(void **state)
{
    (void)state;
    /* The CRLF of "DATA\r\n" counts: ".\r\n" right at the start is the end. */
    DATA_MESSAGE(".\r\n");
    struct smtp_in p;
    struct smtp_in_item it;
    smtp_in_init(&p);
    smtp_in_feed(&p, LIT("DATA\r\n.\r\nQUIT\r\n"));
    expect_kind(&p, SMTP_IN_LINE);
    expect_kind(&p, SMTP_IN_BLOCKED);
    assert_int_equal(smtp_in_resume(&p, 354), SMTP_IN_DATA);
    smtp_in_next(&p, &it);
    assert_int_equal(it.kind, SMTP_IN_CONTENT);
    assert_true(it.end);
    assert_false(it.bdat);
    assert_int_equal(it.len, 3);
    assert_memory_equal(it.bytes, ".\r\n", 3);
    assert_int_equal(p.mode, SMTP_IN_COMMAND);
    EXPECT_LINE(&p, "QUIT\r\n", SMTP_VERB_QUIT);
    smtp_in_free(&p);
}

static void test_data_is_not_ended_by_lookalike_terminators(void **state)
{
    (void)state;
    /* Each body contains a near-miss and ends only at its final CRLF.CRLF. */
    DATA_MESSAGE("a\n.\nb\r\n.\r\n");
    DATA_MESSAGE("a\r.\rb\r\n.\r\n");
    DATA_MESSAGE("a\n.\r\nb\r\n.\r\n");
    DATA_MESSAGE("a\r\n.\nb\r\n.\r\n");
    DATA_MESSAGE("a.\r\nb\r\n.\r\n");
    DATA_MESSAGE("abc .\r\n.\r\n");
    DATA_MESSAGE("a\r\n .\r\nb\r\n.\r\n");
    DATA_MESSAGE("a\r\n.x\r\n.\r\n");
    DATA_MESSAGE("a\r\n.\rx\r\n.\r\n");
    DATA_MESSAGE("a\r\n.\r\r\n.\r\n");
    DATA_MESSAGE(".\n\r\n.\r\n");
    DATA_MESSAGE("\n.\r\nx\r\n.\r\n");
    DATA_MESSAGE(".x\r\n.\r\n");
    DATA_MESSAGE("\r.\r\n.\r\n");
}

static void test_data_dot_stuffed_lines_do_not_end_the_message(void **state)
{
    (void)state;
    DATA_MESSAGE("..\r\n.\r\n");
    DATA_MESSAGE("a\r\n..\r\nb\r\n.\r\n");
    DATA_MESSAGE("a\r\n...\r\n..x\r\n.\r\n");
    DATA_MESSAGE("..\r\n..\r\n..\r\n.\r\n");
}

static void test_data_terminator_split_across_reads_at_every_position(void **state)
{
    (void)state;
    /* Explicitly: the content before, then the terminator cut at each of its positions. */
    static const char msg[] = "line\r\n.\r\n";
    for (size_t cut = 0; cut < 9; cut++) {
        struct smtp_in p;
        struct smtp_in_item it;
        smtp_in_init(&p);
        smtp_in_feed(&p, LIT("DATA\r\n"));
        expect_kind(&p, SMTP_IN_LINE);
        assert_int_equal(smtp_in_resume(&p, 354), SMTP_IN_DATA);
        uint8_t got[32];
        size_t got_len = 0;
        smtp_in_feed(&p, (const uint8_t *)msg, cut);
        for (;;) {
            smtp_in_next(&p, &it);
            if (it.kind != SMTP_IN_CONTENT) break;
            assert_false(it.end);
            memcpy(got + got_len, it.bytes, it.len);
            got_len += it.len;
        }
        assert_int_equal(it.kind, SMTP_IN_NEED_MORE);
        assert_int_equal(got_len, cut);
        smtp_in_feed(&p, (const uint8_t *)msg + cut, 9 - cut);
        smtp_in_feed(&p, LIT("QUIT\r\n"));
        smtp_in_next(&p, &it);
        assert_int_equal(it.kind, SMTP_IN_CONTENT);
        assert_true(it.end);
        assert_false(it.bdat);
        memcpy(got + got_len, it.bytes, it.len);
        got_len += it.len;
        assert_int_equal(got_len, 9);
        assert_memory_equal(got, msg, 9);
        EXPECT_LINE(&p, "QUIT\r\n", SMTP_VERB_QUIT);
        smtp_in_free(&p);
    }
    /* And through the driver, every split of the whole exchange. */
    DATA_MESSAGE("line\r\n.\r\n");
}

static void test_data_bytes_after_terminator_are_the_next_commands(void **state)
{
    (void)state;
    const struct exp exp[] = {
        X_LINE("DATA\r\n", SMTP_VERB_DATA),
        X_RESUME(354, SMTP_IN_DATA),
        X_DATA("x\r\n.\r\n"),
        X_LINE("QUIT\r\n", SMTP_VERB_QUIT),
    };
    /* QUIT pipelined right behind the terminator, nothing else. */
    FRAMER_CASE("DATA\r\nx\r\n.\r\nQUIT\r\n", CODES(354), exp, SMTP_IN_COMMAND, 0);

    /* A command directly after the terminator that starts a new DATA. */
    const struct exp exp2[] = {
        X_LINE("DATA\r\n", SMTP_VERB_DATA),
        X_RESUME(354, SMTP_IN_DATA),
        X_DATA("m1\r\n.\r\n"),
        X_LINE("MAIL FROM:<>\r\n", SMTP_VERB_MAIL),
        X_LINE("RCPT TO:<a@b>\r\n", SMTP_VERB_RCPT),
        X_LINE("DATA\r\n", SMTP_VERB_DATA),
        X_RESUME(354, SMTP_IN_DATA),
        X_DATA(".\r\n"),
        X_LINE("DATA\r\n", SMTP_VERB_DATA),
        X_RESUME(503, SMTP_IN_COMMAND),
        X_LINE("m3\r\n", SMTP_VERB_UNKNOWN),
        X_LINE("QUIT\r\n", SMTP_VERB_QUIT),
    };
    FRAMER_CASE(
        "DATA\r\nm1\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<a@b>\r\nDATA\r\n.\r\nDATA\r\nm3\r\nQUIT\r\n",
        CODES(354, 354, 503), exp2, SMTP_IN_COMMAND, 0);
}

static void test_data_unfinished_message_stays_in_data_mode(void **state)
{
    (void)state;
    const struct exp exp[] = {
        X_LINE("DATA\r\n", SMTP_VERB_DATA),
        X_RESUME(354, SMTP_IN_DATA),
        X_DATA_OPEN("abc\r\n.\r"),
    };
    FRAMER_CASE("DATA\r\nabc\r\n.\r", CODES(354), exp, SMTP_IN_DATA, 0);
}

/* Reference end-of-data search, independent of the framer: the index just past the first
 * CRLF.CRLF in m (the CRLF before the message counts), or 0. */
static size_t ref_data_end(const uint8_t *m, size_t n)
{
    static const uint8_t term[] = "\r\n.\r\n";
    for (size_t e = 3; e <= n; e++) {
        bool match = true;
        for (size_t k = 0; k < 5 && match; k++) {
            ptrdiff_t idx = (ptrdiff_t)e - 5 + (ptrdiff_t)k;
            uint8_t c = idx >= 0 ? m[idx] : (idx == -2 ? '\r' : '\n');
            match = c == term[k];
        }
        if (match) return e;
    }
    return 0;
}

/* A seeded random body rich in CR, LF, dots, NUL and 0xFF, terminated by CRLF.CRLF, with
 * every earlier terminator broken. Returns the message length. */
static size_t make_random_message(uint8_t *out, size_t body_len, uint64_t seed)
{
    static const char *const tokens[] = {"\r\n",    "\r",      "\n",       ".",     "..",
                                         "\r\n.",   ".\r\n",   "\n.\n",    "\r.\r", "\r\n..\r\n",
                                         "\r\n.\n", "\n.\r\n", "\r\n.\r\n"};
    rng_seed(seed);
    size_t n = 0;
    if (body_len >= 8 && (seed & 1)) {
        memcpy(out, "..lead\r\n", 8);
        n = 8;
    }
    while (n < body_len) {
        size_t pick = rng_below(40);
        if (pick < NELEM(tokens)) {
            const char *t = tokens[pick];
            size_t tl = strlen(t);
            if (n + tl > body_len) tl = body_len - n;
            memcpy(out + n, t, tl);
            n += tl;
        } else if (pick < 16) {
            out[n++] = pick == 13 ? 0x00 : pick == 14 ? 0xff : 0x80;
        } else {
            out[n++] = (uint8_t)rng_next();
        }
    }
    memcpy(out + n, "\r\n.\r\n", 5);
    n += 5;
    for (;;) {
        size_t e = ref_data_end(out, n);
        assert_true(e >= 3);
        if (e == n) break;
        assert_int_equal(out[e - 3], '.');
        out[e - 3] = 'x';
    }
    return n;
}

static void test_data_content_equals_input_for_random_binary_bodies(void **state)
{
    (void)state;
    static const size_t lens[] = {0, 1, 2, 3, 5, 17, 64, 200, 700, 1500};
    uint8_t *msg = malloc(2000);
    assert_non_null(msg);
    for (size_t i = 0; i < NELEM(lens); i++) {
        size_t n = make_random_message(msg, lens[i], 0xC0FFEE00 + i);
        /* The generator really produced the awkward bytes for the longer bodies. */
        if (lens[i] >= 700) {
            assert_non_null(memchr(msg, 0x00, n));
            assert_non_null(memchr(msg, 0xff, n));
            assert_non_null(memchr(msg, '.', n));
        }
        run_data_message(msg, n);
    }
    free(msg);
}

/* ---- framer: BDAT --------------------------------------------------------------------- */

static void test_bdat_octets_are_content_even_when_they_look_like_commands(void **state)
{
    (void)state;
    const struct exp exp[] = {
        X_LINE("BDAT 10\r\n", SMTP_VERB_BDAT),
        X_BDAT("QUIT\r\n.\r\nZ"),
        X_LINE("RSET\r\n", SMTP_VERB_RSET),
    };
    FRAMER_CASE("BDAT 10\r\nQUIT\r\n.\r\nZRSET\r\n", NOCODES, exp, SMTP_IN_COMMAND, 0);
}

static void test_bdat_chunk_pieces_carry_bdat_and_end_only_on_the_last(void **state)
{
    (void)state;
    struct smtp_in p;
    struct smtp_in_item it;
    smtp_in_init(&p);
    smtp_in_feed(&p, LIT("BDAT 10\r\nQUI"));
    EXPECT_LINE(&p, "BDAT 10\r\n", SMTP_VERB_BDAT);
    assert_int_equal(p.mode, SMTP_IN_BDAT);
    smtp_in_next(&p, &it);
    assert_int_equal(it.kind, SMTP_IN_CONTENT);
    assert_true(it.bdat);
    assert_false(it.end);
    assert_int_equal(it.len, 3);
    assert_memory_equal(it.bytes, "QUI", 3);
    expect_kind(&p, SMTP_IN_NEED_MORE);
    smtp_in_feed(&p, LIT("T\r\n.\r\n"));
    smtp_in_next(&p, &it);
    assert_int_equal(it.kind, SMTP_IN_CONTENT);
    assert_true(it.bdat);
    assert_false(it.end);
    assert_int_equal(it.len, 6);
    assert_memory_equal(it.bytes, "T\r\n.\r\n", 6);
    smtp_in_feed(&p, LIT("ZNOOP\r\n"));
    smtp_in_next(&p, &it);
    assert_int_equal(it.kind, SMTP_IN_CONTENT);
    assert_true(it.bdat);
    assert_true(it.end);
    assert_int_equal(it.len, 1);
    assert_int_equal(it.bytes[0], 'Z');
    assert_int_equal(p.mode, SMTP_IN_COMMAND);
    EXPECT_LINE(&p, "NOOP\r\n", SMTP_VERB_NOOP);
    smtp_in_free(&p);
}

static void test_bdat_zero_last_stays_in_command_mode(void **state)
{
    (void)state;
    const struct exp exp[] = {
        X_LINE("BDAT 0 LAST\r\n", SMTP_VERB_BDAT),
        X_LINE("QUIT\r\n", SMTP_VERB_QUIT),
    };
    FRAMER_CASE("BDAT 0 LAST\r\nQUIT\r\n", NOCODES, exp, SMTP_IN_COMMAND, 0);
}

static void test_bdat_five_last_takes_exactly_five_octets(void **state)
{
    (void)state;
    const struct exp exp[] = {
        X_LINE("BDAT 5 LAST\r\n", SMTP_VERB_BDAT),
        X_BDAT("he\0\xff\n"),
        X_LINE("QUIT\r\n", SMTP_VERB_QUIT),
    };
    FRAMER_CASE("BDAT 5 LAST\r\nhe\0\xff\nQUIT\r\n", NOCODES, exp, SMTP_IN_COMMAND, 0);

    const struct exp exp2[] = {
        X_LINE("bdat 5 last\n", SMTP_VERB_BDAT),
        X_BDAT("hello"),
    };
    FRAMER_CASE("bdat 5 last\nhello", NOCODES, exp2, SMTP_IN_COMMAND, 0);
}

static void test_bdat_pipelined_chunks_follow_each_other(void **state)
{
    (void)state;
    const struct exp exp[] = {
        X_LINE("MAIL FROM:<>\r\n", SMTP_VERB_MAIL),
        X_LINE("BDAT 3\r\n", SMTP_VERB_BDAT),
        X_BDAT("abc"),
        X_LINE("BDAT 2 LAST\r\n", SMTP_VERB_BDAT),
        X_BDAT("\r\n"),
        X_LINE("QUIT\r\n", SMTP_VERB_QUIT),
    };
    FRAMER_CASE("MAIL FROM:<>\r\nBDAT 3\r\nabcBDAT 2 LAST\r\n\r\nQUIT\r\n", NOCODES, exp,
                SMTP_IN_COMMAND, 0);
}

static void test_bdat_bad_sizes_stay_in_command_mode(void **state)
{
    (void)state;
    const struct exp exp[] = {
        X_LINE("BDAT x\r\n", SMTP_VERB_BDAT),
        X_LINE("BDAT 5 FOO\r\n", SMTP_VERB_BDAT),
        X_LINE("helloQUIT\r\n", SMTP_VERB_UNKNOWN),
        X_LINE("BDAT\r\n", SMTP_VERB_BDAT),
        X_LINE("BDAT -3\r\n", SMTP_VERB_BDAT),
        X_LINE("BDAT 99999999999999999999\r\n", SMTP_VERB_BDAT),
        X_LINE("NOOP\r\n", SMTP_VERB_NOOP),
    };
    FRAMER_CASE("BDAT x\r\nBDAT 5 FOO\r\nhelloQUIT\r\nBDAT\r\nBDAT -3\r\nBDAT "
                "99999999999999999999\r\nNOOP\r\n",
                NOCODES, exp, SMTP_IN_COMMAND, 0);
}

static void test_bdat_content_equals_input_for_random_binary_chunks(void **state)
{
    (void)state;
    static const size_t lens[] = {1, 9, 100, 1200};
    uint8_t *body = malloc(1300);
    uint8_t *in = malloc(1400);
    assert_non_null(body);
    assert_non_null(in);
    for (size_t i = 0; i < NELEM(lens); i++) {
        size_t bl = lens[i];
        rng_seed(0xBDA7 + i);
        for (size_t k = 0; k < bl; k++) {
            uint64_t r = rng_next();
            body[k] = (r & 3) == 0 ? "\r\n.\0"[(r >> 8) & 3] : (uint8_t)(r >> 16);
        }
        int hl = snprintf((char *)in, 64, "BDAT %zu LAST\r\n", bl);
        memcpy(in + hl, body, bl);
        memcpy(in + (size_t)hl + bl, "QUIT\r\n", 6);
        const struct exp exp[] = {
            {.type = EV_LINE,
             .bytes = in,
             .len = (size_t)hl,
             .verb = SMTP_VERB_BDAT,
             .complete = true,
             .frags = 1},
            {.type = EV_CONTENT, .bytes = body, .len = bl, .bdat = true, .end = true},
            X_LINE("QUIT\r\n", SMTP_VERB_QUIT),
        };
        const struct framer_case fc = {in,         (size_t)hl + bl + 6, 0, NULL, 0, exp,
                                       NELEM(exp), SMTP_IN_COMMAND,     0};
        run_framer_case(&fc);
    }
    free(body);
    free(in);
}

/* ---- framer: AUTH --------------------------------------------------------------------- */

static void test_auth_plain_challenge_then_sasl_line_then_success(void **state)
{
    (void)state;
    const struct exp exp[] = {
        X_LINE("AUTH PLAIN\r\n", SMTP_VERB_AUTH),
        X_RESUME(334, SMTP_IN_SASL),
        X_SASL("AHVzZXIAcGFzcw==\r\n"),
        X_RESUME(235, SMTP_IN_COMMAND),
        X_LINE("MAIL FROM:<>\r\n", SMTP_VERB_MAIL),
    };
    FRAMER_CASE("AUTH PLAIN\r\nAHVzZXIAcGFzcw==\r\nMAIL FROM:<>\r\n", CODES(334, 235), exp,
                SMTP_IN_COMMAND, 0);
}

static void test_auth_step_by_step_blocks_before_and_after_the_sasl_line(void **state)
{
    (void)state;
    struct smtp_in p;
    struct smtp_in_item it;
    smtp_in_init(&p);
    smtp_in_feed(&p, LIT("AUTH PLAIN\r\nAHVzZXIAcGFzcw==\r\nQUIT\r\n"));
    EXPECT_LINE(&p, "AUTH PLAIN\r\n", SMTP_VERB_AUTH);
    expect_kind(&p, SMTP_IN_BLOCKED);
    assert_int_equal(p.waiting_for, SMTP_VERB_AUTH);
    assert_int_equal(smtp_in_resume(&p, 334), SMTP_IN_SASL);
    smtp_in_next(&p, &it);
    assert_int_equal(it.kind, SMTP_IN_LINE);
    assert_true(it.sasl);
    assert_true(it.first);
    assert_true(it.complete);
    assert_int_equal(it.verb, SMTP_VERB_UNKNOWN);
    assert_int_equal(it.len, 18);
    assert_memory_equal(it.bytes, "AHVzZXIAcGFzcw==\r\n", 18);
    expect_kind(&p, SMTP_IN_BLOCKED);
    assert_int_equal(p.mode, SMTP_IN_WAIT);
    assert_int_equal(p.waiting_for, SMTP_VERB_UNKNOWN);
    assert_int_equal(smtp_in_buffered(&p), 6);
    assert_int_equal(smtp_in_resume(&p, 235), SMTP_IN_COMMAND);
    EXPECT_LINE(&p, "QUIT\r\n", SMTP_VERB_QUIT);
    smtp_in_free(&p);
}

static void test_auth_login_two_challenges(void **state)
{
    (void)state;
    const struct exp exp[] = {
        X_LINE("auth login\r\n", SMTP_VERB_AUTH),
        X_RESUME(334, SMTP_IN_SASL),
        X_SASL("dXNlcg==\r\n"),
        X_RESUME(334, SMTP_IN_SASL),
        X_SASL("cGFzcw==\n"),
        X_RESUME(235, SMTP_IN_COMMAND),
        X_LINE("NOOP\r\n", SMTP_VERB_NOOP),
    };
    FRAMER_CASE("auth login\r\ndXNlcg==\r\ncGFzcw==\nNOOP\r\n", CODES(334, 334, 235), exp,
                SMTP_IN_COMMAND, 0);
}

static void test_auth_with_initial_response_then_235_returns_to_commands(void **state)
{
    (void)state;
    const struct exp exp[] = {
        X_LINE("AUTH PLAIN AHVzZXIAcGFzcw==\r\n", SMTP_VERB_AUTH),
        X_RESUME(235, SMTP_IN_COMMAND),
        X_LINE("MAIL FROM:<a@b>\r\n", SMTP_VERB_MAIL),
        X_LINE("RCPT TO:<c@d>\r\n", SMTP_VERB_RCPT),
    };
    FRAMER_CASE("AUTH PLAIN AHVzZXIAcGFzcw==\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n", CODES(235),
                exp, SMTP_IN_COMMAND, 0);
}

static void test_auth_sasl_lines_that_look_like_commands_are_not_commands(void **state)
{
    (void)state;
    /* A SASL line "DATA" must not start DATA, and its 354-looking reply code must not
     * either: after a SASL line only 334 leads to another SASL line. */
    const struct exp exp[] = {
        X_LINE("AUTH LOGIN\r\n", SMTP_VERB_AUTH),
        X_RESUME(334, SMTP_IN_SASL),
        X_SASL("DATA\r\n"),
        X_RESUME(334, SMTP_IN_SASL),
        X_SASL("QUIT\r\n"),
        X_RESUME(354, SMTP_IN_COMMAND),
        X_LINE("x\r\n", SMTP_VERB_UNKNOWN),
    };
    FRAMER_CASE("AUTH LOGIN\r\nDATA\r\nQUIT\r\nx\r\n", CODES(334, 334, 354), exp, SMTP_IN_COMMAND,
                0);
}

static void test_auth_failure_and_cancel_return_to_command_mode(void **state)
{
    (void)state;
    const struct exp exp[] = {
        X_LINE("AUTH PLAIN bad\r\n", SMTP_VERB_AUTH),
        X_RESUME(535, SMTP_IN_COMMAND),
        X_LINE("AUTH LOGIN\r\n", SMTP_VERB_AUTH),
        X_RESUME(334, SMTP_IN_SASL),
        X_SASL("*\r\n"),
        X_RESUME(501, SMTP_IN_COMMAND),
        X_LINE("AUTH XYZ\r\n", SMTP_VERB_AUTH),
        X_RESUME(504, SMTP_IN_COMMAND),
        X_LINE("QUIT\r\n", SMTP_VERB_QUIT),
    };
    FRAMER_CASE("AUTH PLAIN bad\r\nAUTH LOGIN\r\n*\r\nAUTH XYZ\r\nQUIT\r\n",
                CODES(535, 334, 501, 504), exp, SMTP_IN_COMMAND, 0);
}

/* ---- framer: STARTTLS ----------------------------------------------------------------- */

static void test_starttls_accepted_turns_the_rest_of_the_stream_opaque(void **state)
{
    (void)state;
    const struct exp exp[] = {
        X_LINE("EHLO a\r\n", SMTP_VERB_EHLO),
        X_LINE("STARTTLS\r\n", SMTP_VERB_STARTTLS),
        X_RESUME(220, SMTP_IN_OPAQUE),
        X_RAW("\x16\x03\x01\x00\x05\r\nQUIT\r\nDATA\r\n\0\xff"),
    };
    FRAMER_CASE("EHLO a\r\nSTARTTLS\r\n\x16\x03\x01\x00\x05\r\nQUIT\r\nDATA\r\n\0\xff", CODES(220),
                exp, SMTP_IN_OPAQUE, 0);
}

static void test_starttls_step_by_step_blocks_then_returns_raw_bytes(void **state)
{
    (void)state;
    struct smtp_in p;
    struct smtp_in_item it;
    smtp_in_init(&p);
    smtp_in_feed(&p, LIT("starttls\r\n\x16\x03"));
    EXPECT_LINE(&p, "starttls\r\n", SMTP_VERB_STARTTLS);
    expect_kind(&p, SMTP_IN_BLOCKED);
    assert_int_equal(p.waiting_for, SMTP_VERB_STARTTLS);
    assert_int_equal(smtp_in_resume(&p, 220), SMTP_IN_OPAQUE);
    smtp_in_next(&p, &it);
    assert_int_equal(it.kind, SMTP_IN_RAW);
    assert_int_equal(it.len, 2);
    assert_memory_equal(it.bytes, "\x16\x03", 2);
    expect_kind(&p, SMTP_IN_NEED_MORE);
    smtp_in_feed(&p, LIT("QUIT\r\n"));
    smtp_in_next(&p, &it);
    assert_int_equal(it.kind, SMTP_IN_RAW);
    assert_int_equal(it.len, 6);
    assert_memory_equal(it.bytes, "QUIT\r\n", 6);
    assert_int_equal(p.mode, SMTP_IN_OPAQUE);
    smtp_in_free(&p);
}

static void test_starttls_rejected_returns_to_command_mode(void **state)
{
    (void)state;
    const struct exp exp[] = {
        X_LINE("STARTTLS\r\n", SMTP_VERB_STARTTLS),
        X_RESUME(454, SMTP_IN_COMMAND),
        X_LINE("MAIL FROM:<>\r\n", SMTP_VERB_MAIL),
        X_LINE("STARTTLS\r\n", SMTP_VERB_STARTTLS),
        X_RESUME(501, SMTP_IN_COMMAND),
        X_LINE("QUIT\r\n", SMTP_VERB_QUIT),
    };
    FRAMER_CASE("STARTTLS\r\nMAIL FROM:<>\r\nSTARTTLS\r\nQUIT\r\n", CODES(454, 501), exp,
                SMTP_IN_COMMAND, 0);
}

/* ---- framer: over-long lines ---------------------------------------------------------- */

static void run_small_line_case(const char *in, size_t len, size_t max_line, const int *codes,
                                size_t ncodes, const struct exp *exp, size_t nexp,
                                enum smtp_in_mode final_mode, size_t final_buffered)
{
    const struct framer_case fc = {
        (const uint8_t *)in, len, max_line, codes, ncodes, exp, nexp, final_mode, final_buffered};
    run_framer_case(&fc);
}

static void test_long_line_comes_out_as_fragments_of_max_line(void **state)
{
    (void)state;
    /* 51 bytes with max_line 16: 16 + 16 + 16 + 3. */
    static const char line[] = "MAIL FROM:<very-long-address@example.com> SIZE=10\r\n";
    assert_int_equal(sizeof line - 1, 51);
    const struct exp exp[] = {
        X_LONG("MAIL FROM:<very-long-address@example.com> SIZE=10\r\n", SMTP_VERB_MAIL, 4),
        X_LINE("QUIT\r\n", SMTP_VERB_QUIT),
    };
    static const char in[] = "MAIL FROM:<very-long-address@example.com> SIZE=10\r\nQUIT\r\n";
    run_small_line_case(in, sizeof in - 1, 16, NULL, 0, exp, NELEM(exp), SMTP_IN_COMMAND, 0);
}

static void test_long_line_fragment_flags_first_and_complete(void **state)
{
    (void)state;
    struct smtp_in p;
    struct smtp_in_item it;
    smtp_in_init(&p);
    p.max_line = 16;
    smtp_in_feed(&p, LIT("rcpt TO:<aaaaaaaaaaaaaaaaaaaaaaaa@b>\r\nNOOP\r\n"));
    static const char *const frag[] = {"rcpt TO:<aaaaaaa", "aaaaaaaaaaaaaaaa", "a@b>\r\n"};
    for (size_t i = 0; i < 3; i++) {
        smtp_in_next(&p, &it);
        assert_int_equal(it.kind, SMTP_IN_LINE);
        assert_int_equal(it.len, strlen(frag[i]));
        assert_memory_equal(it.bytes, frag[i], it.len);
        assert_int_equal(it.first, i == 0);
        assert_int_equal(it.complete, i == 2);
        assert_int_equal(it.verb, SMTP_VERB_RCPT);
        assert_false(it.sasl);
    }
    EXPECT_LINE(&p, "NOOP\r\n", SMTP_VERB_NOOP);
    expect_kind(&p, SMTP_IN_NEED_MORE);
    smtp_in_free(&p);
}

static void test_long_line_limits_are_exact_at_max_line(void **state)
{
    (void)state;
    /* 16 bytes including CRLF: one piece. 17 bytes: the LF is a fragment of its own. 18
     * bytes: CRLF becomes the second fragment. 32 bytes: two full fragments; 33: three. */
    const struct exp exp[] = {
        X_LINE("NOOP 890123456\r\n", SMTP_VERB_NOOP),
        X_LONG("NOOP 8901234567\r\n", SMTP_VERB_NOOP, 2),
        X_LONG("NOOP 89012345678\r\n", SMTP_VERB_NOOP, 2),
        X_LONG("VRFY 8901234567890123456789012\r\n", SMTP_VERB_VRFY, 2),
        X_LONG("VRFY 89012345678901234567890123\r\n", SMTP_VERB_VRFY, 3),
        X_LINE("QUIT\n", SMTP_VERB_QUIT),
    };
    static const char in[] = "NOOP 890123456\r\nNOOP 8901234567\r\nNOOP 89012345678\r\nVRFY "
                             "8901234567890123456789012\r\nVRFY "
                             "89012345678901234567890123\r\nQUIT\n";
    run_small_line_case(in, sizeof in - 1, 16, NULL, 0, exp, NELEM(exp), SMTP_IN_COMMAND, 0);
}

static void test_long_line_unfinished_at_end_of_stream(void **state)
{
    (void)state;
    /* 41 bytes without LF: two fragments of 16 are out, 9 bytes wait for more. */
    const struct exp exp[] = {
        {.type = EV_LINE,
         .bytes = (const uint8_t *)"EHLO abcdefghijklmnopqrstuvwxyz0",
         .len = 32,
         .verb = SMTP_VERB_EHLO,
         .complete = false,
         .frags = 2},
    };
    static const char in[] = "EHLO abcdefghijklmnopqrstuvwxyz0123456789";
    run_small_line_case(in, sizeof in - 1, 16, NULL, 0, exp, NELEM(exp), SMTP_IN_COMMAND, 9);

    /* Exactly max_line bytes without LF: already a fragment, nothing is left behind. */
    const struct exp exp2[] = {
        {.type = EV_LINE,
         .bytes = (const uint8_t *)"EHLO abcdefghijk",
         .len = 16,
         .verb = SMTP_VERB_EHLO,
         .complete = false,
         .frags = 1},
    };
    static const char in2[] = "EHLO abcdefghijk";
    run_small_line_case(in2, sizeof in2 - 1, 16, NULL, 0, exp2, NELEM(exp2), SMTP_IN_COMMAND, 0);
}

static void test_long_sasl_line_fragments_are_all_sasl(void **state)
{
    (void)state;
    const struct exp exp[] = {
        X_LINE("AUTH PLAIN\r\n", SMTP_VERB_AUTH),
        X_RESUME(334, SMTP_IN_SASL),
        {.type = EV_LINE,
         .bytes = (const uint8_t *)"QUIT AHVzZXIAcGFzc3dvcmQxMjM0NTY3ODkw\r\n",
         .len = 39,
         .verb = SMTP_VERB_UNKNOWN,
         .sasl = true,
         .complete = true,
         .frags = 3},
        X_RESUME(235, SMTP_IN_COMMAND),
        X_LINE("QUIT\r\n", SMTP_VERB_QUIT),
    };
    static const char in[] = "AUTH PLAIN\r\nQUIT AHVzZXIAcGFzc3dvcmQxMjM0NTY3ODkw\r\nQUIT\r\n";
    const int codes[] = {334, 235};
    run_small_line_case(in, sizeof in - 1, 16, codes, 2, exp, NELEM(exp), SMTP_IN_COMMAND, 0);
}

static void test_long_data_and_auth_commands_still_block(void **state)
{
    (void)state;
    const struct exp exp[] = {
        X_LONG("DATA                    \r\n", SMTP_VERB_DATA, 2),
        X_RESUME(354, SMTP_IN_DATA),
        X_DATA("a\r\n.\r\n"),
        X_LONG("AUTH PLAIN AHVzZXIAcGFzcw==\r\n", SMTP_VERB_AUTH, 2),
        X_RESUME(235, SMTP_IN_COMMAND),
        X_LINE("QUIT\r\n", SMTP_VERB_QUIT),
    };
    static const char in[] = "DATA                    \r\na\r\n.\r\nAUTH PLAIN "
                             "AHVzZXIAcGFzcw==\r\nQUIT\r\n";
    const int codes[] = {354, 235};
    run_small_line_case(in, sizeof in - 1, 16, codes, 2, exp, NELEM(exp), SMTP_IN_COMMAND, 0);
}

static void test_long_bdat_command_loses_its_size_and_stays_in_command_mode(void **state)
{
    (void)state;
    const struct exp exp[] = {
        X_LONG("BDAT 000000000000000005\r\n", SMTP_VERB_BDAT, 2),
        X_LINE("helloQUIT\r\n", SMTP_VERB_UNKNOWN),
    };
    static const char in[] = "BDAT 000000000000000005\r\nhelloQUIT\r\n";
    run_small_line_case(in, sizeof in - 1, 16, NULL, 0, exp, NELEM(exp), SMTP_IN_COMMAND, 0);

    /* The last fragment alone would read as a valid size ("x 5"): it must not be used. */
    const struct exp exp2[] = {
        X_LONG("BDAT 3          x 5\r\n", SMTP_VERB_BDAT, 2),
        X_LINE("helloQUIT\r\n", SMTP_VERB_UNKNOWN),
    };
    static const char in2[] = "BDAT 3          x 5\r\nhelloQUIT\r\n";
    run_small_line_case(in2, sizeof in2 - 1, 16, NULL, 0, exp2, NELEM(exp2), SMTP_IN_COMMAND, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verb_parse_recognises_every_verb_in_any_case),
        cmocka_unit_test(test_verb_parse_extracts_argument_without_blanks_or_terminator),
        cmocka_unit_test(test_verb_parse_rejects_prefixes_suffixes_and_leading_blanks),
        cmocka_unit_test(test_verb_name_round_trips_through_parse),

        cmocka_unit_test(test_bdat_parse_accepts_size_and_optional_last),
        cmocka_unit_test(test_bdat_parse_rejects_non_numbers_and_bad_markers),
        cmocka_unit_test(test_bdat_parse_detects_uint64_overflow),

        cmocka_unit_test(test_framer_command_verbs_are_case_insensitive),
        cmocka_unit_test(test_framer_accepts_crlf_and_bare_lf_terminators),
        cmocka_unit_test(test_framer_passes_nul_and_8bit_bytes_through_byte_exact),
        cmocka_unit_test(test_framer_never_fed_needs_more_in_every_mode),
        cmocka_unit_test(test_framer_holds_an_incomplete_line_until_its_terminator),
        cmocka_unit_test(test_framer_pipelined_burst_blocks_after_data_until_354),
        cmocka_unit_test(test_framer_pipelined_burst_every_split),
        cmocka_unit_test(test_framer_waits_with_need_more_when_nothing_follows_data),
        cmocka_unit_test(test_framer_data_rejected_with_554_parses_held_bytes_as_commands),
        cmocka_unit_test(test_framer_resume_outside_wait_changes_nothing),

        cmocka_unit_test(test_data_ends_at_crlf_dot_crlf),
        cmocka_unit_test(test_data_message_of_only_the_dot_line_ends_at_once),
        cmocka_unit_test(test_data_is_not_ended_by_lookalike_terminators),
        cmocka_unit_test(test_data_dot_stuffed_lines_do_not_end_the_message),
        cmocka_unit_test(test_data_terminator_split_across_reads_at_every_position),
        cmocka_unit_test(test_data_bytes_after_terminator_are_the_next_commands),
        cmocka_unit_test(test_data_unfinished_message_stays_in_data_mode),
        cmocka_unit_test(test_data_content_equals_input_for_random_binary_bodies),

        cmocka_unit_test(test_bdat_octets_are_content_even_when_they_look_like_commands),
        cmocka_unit_test(test_bdat_chunk_pieces_carry_bdat_and_end_only_on_the_last),
        cmocka_unit_test(test_bdat_zero_last_stays_in_command_mode),
        cmocka_unit_test(test_bdat_five_last_takes_exactly_five_octets),
        cmocka_unit_test(test_bdat_pipelined_chunks_follow_each_other),
        cmocka_unit_test(test_bdat_bad_sizes_stay_in_command_mode),
        cmocka_unit_test(test_bdat_content_equals_input_for_random_binary_chunks),

        cmocka_unit_test(test_auth_plain_challenge_then_sasl_line_then_success),
        cmocka_unit_test(test_auth_step_by_step_blocks_before_and_after_the_sasl_line),
        cmocka_unit_test(test_auth_login_two_challenges),
        cmocka_unit_test(test_auth_with_initial_response_then_235_returns_to_commands),
        cmocka_unit_test(test_auth_sasl_lines_that_look_like_commands_are_not_commands),
        cmocka_unit_test(test_auth_failure_and_cancel_return_to_command_mode),

        cmocka_unit_test(test_starttls_accepted_turns_the_rest_of_the_stream_opaque),
        cmocka_unit_test(test_starttls_step_by_step_blocks_then_returns_raw_bytes),
        cmocka_unit_test(test_starttls_rejected_returns_to_command_mode),

        cmocka_unit_test(test_long_line_comes_out_as_fragments_of_max_line),
        cmocka_unit_test(test_long_line_fragment_flags_first_and_complete),
        cmocka_unit_test(test_long_line_limits_are_exact_at_max_line),
        cmocka_unit_test(test_long_line_unfinished_at_end_of_stream),
        cmocka_unit_test(test_long_sasl_line_fragments_are_all_sasl),
        cmocka_unit_test(test_long_data_and_auth_commands_still_block),
        cmocka_unit_test(test_long_bdat_command_loses_its_size_and_stays_in_command_mode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
