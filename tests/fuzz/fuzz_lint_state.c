/* fuzz_lint_state.c - libFuzzer target for the protocol lint that needs state (lint_state.h).
 *
 * Input: [split seed, 2 bytes] then records [op][len][len bytes] making a dialog. The low 2
 * bits of op say what a record is: 0 a command (bit 2: the client is in TLS, bit 3: replies
 * are outstanding), 1 a reply (bits 2-4: its kind, 5-7 all UNASKED; bits 5-7: the verb it
 * answers), 2 message content, 3 the end of a message. The dialog is played three times:
 * every reply and content record fed whole, cut where fuzz_cuts says, and one byte at a time.
 *
 * Oracles:
 *   - the same findings (id, side, offset, sentence) however replies and content are cut;
 *   - every id is a LINT_ID_*, every sentence printable ASCII of sane length, every offset
 *     inside the bytes of the call that reported it (for a reply: anywhere in that reply so
 *     far), and message_end reports nothing. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "smtptap/buf.h"
#include "smtptap/lint_state.h"

static const char *const known_ids[] = {
    LINT_ID_8BIT_WITHOUT_8BITMIME,  LINT_ID_SMTPUTF8_NOT_OFFERED,
    LINT_ID_PIPELINING_NOT_OFFERED, LINT_ID_COMMAND_BEFORE_GREETING,
    LINT_ID_CHUNKING_NOT_OFFERED,   LINT_ID_SIZE_OVER_LIMIT,
    LINT_ID_REPLY_CODE_CHANGES,     LINT_ID_REPLY_CODE_OUT_OF_RANGE,
    LINT_ID_ENHANCED_CODE_MISMATCH, LINT_ID_REPLY_BEFORE_COMMAND,
    LINT_ID_AUTH_BEFORE_STARTTLS,
};

static const enum smtp_verb verbs[8] = {
    SMTP_VERB_EHLO, SMTP_VERB_HELO,     SMTP_VERB_MAIL, SMTP_VERB_RCPT,
    SMTP_VERB_DATA, SMTP_VERB_STARTTLS, SMTP_VERB_BDAT, SMTP_VERB_AUTH,
};

enum { WHOLE, CUT, BYTEWISE };

/* One run of the dialog. */
struct player {
    struct lint_state ls;
    struct buf findings; /* "id side@offset: sentence\n" each */
    uint64_t c2s, s2c;   /* stream offsets */
    uint64_t lo, hi;     /* the offsets a finding may carry during the current call */
    int mode;
    uint16_t seed;
};

static void check_id(const char *id)
{
    for (size_t i = 0; i < sizeof known_ids / sizeof known_ids[0]; i++)
        if (strcmp(id, known_ids[i]) == 0) return;
    fuzz_fail("unknown id \"%s\"", id);
}

static void on_finding(void *ctx, const char *id, enum lint_side side, uint64_t offset,
                       const char *text)
{
    struct player *p = ctx;
    size_t n = strlen(text);
    check_id(id);
    FUZZ_CHECK(n > 0 && n < 320, "%s: a sentence of %zu characters", id, n);
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(text[i] >= 0x20 && text[i] < 0x7f, "%s: byte 0x%02x in \"%s\"", id,
                   (unsigned)(uint8_t)text[i], text);
    FUZZ_CHECK(offset >= p->lo && offset < p->hi, "%s: offset %llu outside [%llu, %llu)", id,
               (unsigned long long)offset, (unsigned long long)p->lo, (unsigned long long)p->hi);
    buf_printf(&p->findings, "%s %s@%llu: %s\n", id, side == LINT_SIDE_C2S ? "C2S" : "S2C",
               (unsigned long long)offset, text);
}

/* The pieces this run feeds len bytes in: writes the cut offsets, returns how many. */
static size_t pieces(const struct player *p, size_t len, size_t *cuts)
{
    if (p->mode == WHOLE) return 0;
    if (p->mode == CUT) return fuzz_cuts(p->seed, len, cuts);
    for (size_t i = 1; i < len; i++) cuts[i - 1] = i;
    return len ? len - 1 : 0;
}

static void play_reply(struct player *p, uint8_t op, const uint8_t *b, size_t len, size_t *cuts)
{
    unsigned k = op >> 2 & 7;
    enum lint_reply_kind kind = k <= LINT_REPLY_SASL ? (enum lint_reply_kind)k : LINT_REPLY_UNASKED;
    enum smtp_verb verb = verbs[op >> 5];
    size_t ncuts = pieces(p, len, cuts), from = 0;
    p->lo = p->s2c;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : len;
        p->hi = p->s2c + to;
        lint_state_reply(&p->ls, kind, verb, p->s2c + from, b + from, to - from, i == ncuts);
        from = to;
    }
    p->s2c += len;
}

static void play_content(struct player *p, const uint8_t *b, size_t len, size_t *cuts)
{
    size_t ncuts = pieces(p, len, cuts), from = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : len;
        p->lo = p->c2s + from, p->hi = p->c2s + to;
        lint_state_content(&p->ls, p->c2s + from, b + from, to - from);
        from = to;
    }
    p->c2s += len;
}

static void play_record(struct player *p, uint8_t op, const uint8_t *b, size_t len, size_t *cuts)
{
    switch (op & 3) {
    case 0:
        p->lo = p->c2s, p->hi = p->c2s + 1; /* command findings: at the command */
        lint_state_command(&p->ls, p->c2s, b, len, op & 4, op & 8);
        p->c2s += len;
        break;
    case 1: play_reply(p, op, b, len, cuts); break;
    case 2: play_content(p, b, len, cuts); break;
    default:
        p->lo = p->hi = 0; /* no finding may come from here */
        lint_state_message_end(&p->ls);
        break;
    }
}

static void play(const uint8_t *data, size_t size, int mode, uint16_t seed, struct player *p)
{
    size_t cuts[256];
    memset(p, 0, sizeof *p);
    buf_init(&p->findings);
    p->mode = mode, p->seed = seed;
    lint_state_init(&p->ls, on_finding, p);
    struct fuzz_in in = {data, size};
    while (in.n >= 2) {
        uint8_t op = fuzz_u8(&in);
        size_t len;
        const uint8_t *b = fuzz_bytes(&in, fuzz_u8(&in), &len);
        play_record(p, op, b, len, cuts);
    }
}

static bool same(const struct player *a, const struct player *b)
{
    return buf_size(&a->findings) == buf_size(&b->findings) &&
           !memcmp(buf_head(&a->findings), buf_head(&b->findings), buf_size(&a->findings));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    uint16_t seed = fuzz_u16(&in);
    struct player whole, cut, bytes;
    play(in.p, in.n, WHOLE, seed, &whole);
    play(in.p, in.n, CUT, seed, &cut);
    play(in.p, in.n, BYTEWISE, seed, &bytes);
    if (!same(&whole, &cut) || !same(&whole, &bytes)) {
        fuzz_dump("findings whole", buf_head(&whole.findings), buf_size(&whole.findings));
        fuzz_dump("findings cut", buf_head(&cut.findings), buf_size(&cut.findings));
        fuzz_dump("findings byte by byte", buf_head(&bytes.findings), buf_size(&bytes.findings));
        fuzz_fail("replies and content fed whole and in pieces: different findings");
    }
    buf_free(&whole.findings);
    buf_free(&cut.findings);
    buf_free(&bytes.findings);
    return 0;
}
