/* fuzz_smtp_in.c - libFuzzer target for the client-to-server framer (smtp_in_*, smtp.h).
 *
 * Input: [max_line selector][split seed, 2 bytes][code count K][K reply-code selectors][the
 * client's byte stream]. The stream is framed twice, fed whole and fed in pieces cut where the
 * seed says; whenever the framer waits for a reply (DATA, AUTH, STARTTLS, a SASL line) it is
 * resumed at once with the next reply code of the input. Oracles:
 *   - the two runs give the same lines (byte for byte, with their flags), the same content of
 *     each message and BDAT chunk, the same opaque bytes, modes and leftovers;
 *   - every byte comes out exactly once (items + buffered = input);
 *   - a line fragment is at most max_line bytes; only the last fragment of a line ends with
 *     LF; DATA content ends with CRLF.CRLF (or is ".\r\n"); a BDAT chunk has its size;
 *   - the lint of an over-long line's first piece names what it is (issue 16, defect 5);
 * and no sanitizer report (issue 16, defect 4: a framer never fed). A third run in pieces hands
 * STARTTLS to the owner (smtp_in_reset) and checks that the bytes still add up. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "smtptap/buf.h"
#include "smtptap/lint.h"
#include "smtptap/smtp.h"

static const int reply_codes[] = {354, 334, 220, 250, 235, 454, 503, 554, 535, 421, 501, 0};

struct script {
    size_t max_line;
    int codes[16];
    size_t ncodes;
};

/* One framing run: what it saw, as comparable bytes. */
struct run {
    const struct script *sc;
    struct buf log;     /* the events, see log_event */
    struct buf content; /* the message or chunk being received */
    bool content_bdat;
    uint64_t bdat_expected; /* size of the BDAT chunk announced, 0: none */
    struct buf raw;         /* opaque bytes after STARTTLS */
    size_t next_code;
    size_t out_bytes; /* bytes returned in items (and dropped by a reset) */
    bool reset_on_starttls;
};

static void log_event(struct run *r, char tag, uint32_t flags, const uint8_t *b, size_t n)
{
    uint64_t len = n;
    buf_append(&r->log, &tag, 1);
    buf_append(&r->log, &flags, sizeof flags);
    buf_append(&r->log, &len, sizeof len);
    if (n) buf_append(&r->log, b, n);
}

/* Keeps the finding that says how long the line is. */
/* Keeps a copy of the finding that says how long the line is (the text lives only during the
 * call). */
static void lint_says(void *ctx, const struct lint_finding *f)
{
    char *length = ctx;
    if (strstr(f->text, "longer than")) snprintf(length, 256, "%s", f->text);
}

/* Defect 5: the first piece of an over-long line is linted as what it is. */
static void check_long_line_lint(const struct smtp_in_item *it)
{
    char length[256] = "";
    lint_long_line(it->bytes, it->len, it->sasl, it->len, lint_says, length);
    const char *want = it->sasl ? "SASL line longer than" : "command line longer than";
    FUZZ_CHECK(strncmp(length, want, strlen(want)) == 0, "over-long %s linted as \"%s\"",
               it->sasl ? "SASL line" : "command", *length ? length : "(nothing)");
}

static void on_line(struct run *r, const struct smtp_in_item *it)
{
    FUZZ_CHECK(it->len > 0 && it->len <= r->sc->max_line, "line fragment of %zu bytes (max %zu)",
               it->len, r->sc->max_line);
    const uint8_t *lf = memchr(it->bytes, '\n', it->len);
    FUZZ_CHECK(it->complete == (lf != NULL), "complete=%d but LF %s", it->complete,
               lf ? "present" : "absent");
    FUZZ_CHECK(!lf || lf == it->bytes + it->len - 1, "a line goes on after its LF");
    FUZZ_CHECK(it->complete || it->len == r->sc->max_line, "short fragment without LF");
    if (it->first && !it->complete) check_long_line_lint(it);
    uint32_t flags = it->sasl | it->first << 1 | it->complete << 2 | (uint32_t)it->verb << 3;
    log_event(r, 'L', flags, it->bytes, it->len);
    const uint8_t *arg;
    size_t arg_len;
    uint64_t size;
    bool last;
    if (it->first && it->complete && !it->sasl && it->verb == SMTP_VERB_BDAT) {
        smtp_verb_parse(it->bytes, it->len, &arg, &arg_len);
        if (smtp_bdat_parse(arg, arg_len, &size, &last)) r->bdat_expected = size;
    }
}

static void end_content(struct run *r, bool ended)
{
    const uint8_t *c = buf_head(&r->content);
    size_t n = buf_size(&r->content);
    if (ended && !r->content_bdat)
        FUZZ_CHECK((n == 3 && !memcmp(c, ".\r\n", 3)) ||
                       (n >= 5 && !memcmp(c + n - 5, "\r\n.\r\n", 5)),
                   "DATA content of %zu bytes ends without CRLF.CRLF", n);
    if (ended && r->content_bdat)
        FUZZ_CHECK(n == r->bdat_expected, "BDAT chunk of %zu bytes, announced %llu", n,
                   (unsigned long long)r->bdat_expected);
    log_event(r, ended ? 'C' : 'c', r->content_bdat, c, n);
    buf_reset(&r->content);
}

static void on_content(struct run *r, const struct smtp_in_item *it)
{
    FUZZ_CHECK(it->len > 0, "empty content item");
    r->content_bdat = it->bdat;
    buf_append(&r->content, it->bytes, it->len);
    if (it->end) end_content(r, true);
}

/* The framer waits for a reply: give it the script's next code. */
static void resume(struct run *r, struct smtp_in *p)
{
    int code = r->sc->ncodes ? r->sc->codes[r->next_code++ % r->sc->ncodes] : 250;
    bool starttls = p->waiting_for == SMTP_VERB_STARTTLS;
    enum smtp_in_mode mode = smtp_in_resume(p, code);
    log_event(r, 'W', (uint32_t)code << 8 | mode, NULL, 0);
    if (r->reset_on_starttls && starttls && mode == SMTP_IN_OPAQUE)
        r->out_bytes += smtp_in_reset(p); /* the owner took the STARTTLS over */
}

/* Takes every item out of the framer until it needs more bytes. */
static void drain(struct run *r, struct smtp_in *p)
{
    for (;;) {
        struct smtp_in_item it;
        smtp_in_next(p, &it);
        FUZZ_CHECK(it.kind != SMTP_IN_BLOCKED, "blocked although every wait was answered");
        if (it.kind == SMTP_IN_NEED_MORE) return;
        r->out_bytes += it.len;
        if (it.kind == SMTP_IN_LINE) on_line(r, &it);
        if (it.kind == SMTP_IN_CONTENT) on_content(r, &it);
        if (it.kind == SMTP_IN_RAW) buf_append(&r->raw, it.bytes, it.len);
        if (smtp_in_mode(p) == SMTP_IN_WAIT) resume(r, p);
    }
}

static void run_framer(struct run *r, const uint8_t *s, size_t n, const size_t *cuts, size_t ncuts)
{
    struct smtp_in p;
    smtp_in_init(&p);
    p.max_line = r->sc->max_line;
    drain(r, &p); /* never fed yet */
    size_t from = 0;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t to = k < ncuts ? cuts[k] : n;
        smtp_in_feed(&p, s + from, to - from);
        from = to;
        drain(r, &p);
    }
    if (buf_size(&r->content)) end_content(r, false);
    log_event(r, 'R', 0, buf_head(&r->raw), buf_size(&r->raw));
    size_t left = smtp_in_buffered(&p);
    uint64_t left64 = left;
    log_event(r, 'E', (uint32_t)smtp_in_mode(&p), NULL, 0);
    buf_append(&r->log, &left64, sizeof left64);
    FUZZ_CHECK(r->out_bytes + left == n, "%zu bytes out + %zu buffered != %zu in", r->out_bytes,
               left, n);
    smtp_in_free(&p);
}

static void run_init(struct run *r, const struct script *sc)
{
    memset(r, 0, sizeof *r);
    r->sc = sc;
    buf_init(&r->log);
    buf_init(&r->content);
    buf_init(&r->raw);
}

static void run_free(struct run *r)
{
    buf_free(&r->log);
    buf_free(&r->content);
    buf_free(&r->raw);
}

static void read_script(struct fuzz_in *in, struct script *sc, uint16_t *seed)
{
    uint8_t sel = fuzz_u8(in);
    sc->max_line = sel < 192 ? 4 + sel % 64 : 16 * 1024;
    *seed = fuzz_u16(in);
    sc->ncodes = fuzz_u8(in) % 17;
    for (size_t i = 0; i < sc->ncodes; i++)
        sc->codes[i] = reply_codes[fuzz_u8(in) % (sizeof reply_codes / sizeof reply_codes[0])];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    struct script sc;
    uint16_t seed;
    read_script(&in, &sc, &seed);
    size_t *cuts = malloc((in.n + 1) * sizeof *cuts);
    if (!cuts) abort();
    size_t ncuts = fuzz_cuts(seed, in.n, cuts);
    struct run whole, split, reset;
    run_init(&whole, &sc);
    run_init(&split, &sc);
    run_init(&reset, &sc);
    run_framer(&whole, in.p, in.n, NULL, 0);
    run_framer(&split, in.p, in.n, cuts, ncuts);
    reset.reset_on_starttls = true;
    run_framer(&reset, in.p, in.n, cuts, ncuts);
    if (buf_size(&whole.log) != buf_size(&split.log) ||
        memcmp(buf_head(&whole.log), buf_head(&split.log), buf_size(&whole.log)) != 0) {
        fuzz_dump("stream", in.p, in.n);
        fuzz_fail("fed whole and in %zu pieces, the framer saw different things", ncuts + 1);
    }
    run_free(&whole);
    run_free(&split);
    run_free(&reset);
    free(cuts);
    return 0;
}
