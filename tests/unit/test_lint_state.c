/* test_lint_state.c - unit tests for the protocol lint that needs state (lint_state.h).
 *
 * Each test is a dialog as a session would see it: server replies, client commands, message
 * content, in wire order. A small driver plays it: it pairs replies with commands the way the
 * session's FIFO does (a reply with nothing due is unasked), tells lint_state whether replies
 * were due when a command came, and counts each stream's offsets. Expected findings name
 * their place by the bytes they point at ("the RCPT line"), so offsets are checked exactly
 * without hand-counted numbers.
 *
 * Every dialog is also replayed with each reply and content chunk split at every byte
 * boundary, and one byte at a time: the findings (ids, sides, offsets, sentences) must not
 * depend on how TCP cut the streams. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtptap/lint_state.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* ---- dialogs ------------------------------------------------------------------------------ */

struct step {
    char op; /* S reply, C command, M content, E end of DATA message, L end of BDAT message,
                T the client's connection is in TLS from here on */
    const char *bytes;
};

#define S(x)                                                                                       \
    {                                                                                              \
        'S', x                                                                                     \
    }
#define C(x)                                                                                       \
    {                                                                                              \
        'C', x                                                                                     \
    }
#define M(x)                                                                                       \
    {                                                                                              \
        'M', x                                                                                     \
    }
#define E                                                                                          \
    {                                                                                              \
        'E', ""                                                                                    \
    }
#define L                                                                                          \
    {                                                                                              \
        'L', ""                                                                                    \
    }
#define T                                                                                          \
    {                                                                                              \
        'T', ""                                                                                    \
    }

struct dialog {
    const struct step *steps;
    size_t n;
};

#define DIALOG(a) ((struct dialog){a, NELEM(a)})

/* ---- findings ----------------------------------------------------------------------------- */

struct findings {
    char sig[4096];   /* "id C2S@offset\n" per finding */
    char text[16384]; /* "id: sentence\n" per finding */
    size_t sig_len, text_len;
    unsigned count;
};

static void append(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < cap - *len);
    *len += (size_t)n;
}

static void collect(void *ctx, const char *id, enum lint_side side, uint64_t offset,
                    const char *text)
{
    struct findings *f = ctx;
    const char *s = side == LINT_SIDE_C2S ? "C2S" : "S2C";
    append(f->sig, sizeof f->sig, &f->sig_len, "%s %s@%llu\n", id, s, (unsigned long long)offset);
    append(f->text, sizeof f->text, &f->text_len, "%s: %s\n", id, text);
    for (const char *p = text; *p; p++) assert_true(*p >= 0x20 && *p < 0x7f);
    f->count++;
}

/* ---- the driver --------------------------------------------------------------------------- */

enum { WHOLE = 0, BYTEWISE = -1 };

struct driver {
    struct lint_state ls;
    uint64_t c2s, s2c; /* stream offsets */
    struct {
        enum lint_reply_kind kind;
        enum smtp_verb verb;
    } due[64]; /* replies due, oldest first */
    size_t ndue;
    bool tls;
    long cut; /* WHOLE, BYTEWISE, or split each input at this offset */
};

static void push_due(struct driver *d, enum lint_reply_kind kind, enum smtp_verb verb)
{
    assert_true(d->ndue < NELEM(d->due));
    d->due[d->ndue].kind = kind;
    d->due[d->ndue++].verb = verb;
}

/* The length of the next piece of an input of len bytes of which done are fed. */
static size_t piece(const struct driver *d, size_t done, size_t len)
{
    if (d->cut == BYTEWISE) return 1;
    if (d->cut == WHOLE || done >= (size_t)d->cut || (size_t)d->cut >= len) return len - done;
    return (size_t)d->cut - done;
}

static void play_reply(struct driver *d, const uint8_t *b, size_t len)
{
    enum lint_reply_kind kind = LINT_REPLY_UNASKED;
    enum smtp_verb verb = SMTP_VERB_UNKNOWN;
    if (d->ndue) {
        kind = d->due[0].kind, verb = d->due[0].verb;
        memmove(d->due, d->due + 1, --d->ndue * sizeof d->due[0]);
    }
    for (size_t done = 0; done < len;) {
        size_t n = piece(d, done, len);
        lint_state_reply(&d->ls, kind, verb, d->s2c + done, b + done, n, done + n == len);
        done += n;
    }
    d->s2c += len;
}

static void play_content(struct driver *d, const uint8_t *b, size_t len)
{
    for (size_t done = 0; done < len;) {
        size_t n = piece(d, done, len);
        lint_state_content(&d->ls, d->c2s + done, b + done, n);
        done += n;
    }
    d->c2s += len;
}

static void play_command(struct driver *d, const uint8_t *b, size_t len)
{
    lint_state_command(&d->ls, d->c2s, b, len, d->tls, d->ndue > 0);
    d->c2s += len;
    push_due(d, LINT_REPLY_COMMAND, smtp_verb_parse(b, len, NULL, NULL));
}

static void play_step(struct driver *d, const struct step *st)
{
    const uint8_t *b = (const uint8_t *)st->bytes;
    size_t len = strlen(st->bytes);
    switch (st->op) {
    case 'S': play_reply(d, b, len); break;
    case 'C': play_command(d, b, len); break;
    case 'M': play_content(d, b, len); break;
    case 'E':
        lint_state_message_end(&d->ls);
        push_due(d, LINT_REPLY_DATA_END, SMTP_VERB_DATA);
        break;
    case 'L': lint_state_message_end(&d->ls); break;
    case 'T': d->tls = true; break;
    default: fail_msg("bad step %c", st->op);
    }
}

static void play(struct dialog dl, long cut, struct findings *out)
{
    struct driver d;
    memset(&d, 0, sizeof d);
    memset(out, 0, sizeof *out);
    d.cut = cut;
    lint_state_init(&d.ls, collect, out);
    push_due(&d, LINT_REPLY_GREETING, SMTP_VERB_UNKNOWN);
    for (size_t i = 0; i < dl.n; i++) play_step(&d, &dl.steps[i]);
}

/* ---- expectations ------------------------------------------------------------------------- */

/* A finding expected at the nth (1-based; 0 = 1st) occurrence of needle in one side's stream. */
struct want {
    const char *id;
    enum lint_side side;
    const char *needle;
    int nth;
};

/* The offset of the nth occurrence of needle in the C2S (commands and content) or S2C
 * (replies) stream of the dialog. */
static uint64_t stream_at(struct dialog dl, enum lint_side side, const char *needle, int nth)
{
    char stream[8192];
    size_t len = 0;
    for (size_t i = 0; i < dl.n; i++) {
        char op = dl.steps[i].op;
        if (side == LINT_SIDE_S2C ? op == 'S' : op == 'C' || op == 'M')
            append(stream, sizeof stream, &len, "%s", dl.steps[i].bytes);
    }
    const char *p = stream;
    for (int k = nth > 1 ? nth : 1; (p = strstr(p, needle)) && --k; p++) {
    }
    if (!p) fail_msg("\"%s\" is not in the %s stream", needle, side ? "S2C" : "C2S");
    return (uint64_t)(p - stream);
}

/* Replays the dialog cut at every byte boundary and byte by byte: same findings as whole. */
static void assert_same_for_every_split(struct dialog dl, const struct findings *whole)
{
    size_t longest = 0;
    for (size_t i = 0; i < dl.n; i++)
        if (strlen(dl.steps[i].bytes) > longest) longest = strlen(dl.steps[i].bytes);
    struct findings f;
    for (long cut = 1; cut <= (long)longest; cut++) {
        play(dl, cut, &f);
        if (strcmp(f.text, whole->text) != 0 || strcmp(f.sig, whole->sig) != 0)
            fail_msg("split at %ld:\n got:\n%s%s want:\n%s%s", cut, f.sig, f.text, whole->sig,
                     whole->text);
    }
    play(dl, BYTEWISE, &f);
    if (strcmp(f.text, whole->text) != 0 || strcmp(f.sig, whole->sig) != 0)
        fail_msg("one byte at a time:\n got:\n%s%s want:\n%s%s", f.sig, f.text, whole->sig,
                 whole->text);
}

/* Plays the dialog whole, asserts exactly the wanted findings (id, side, offset; in order),
 * then the same for every split. Returns the findings for checks on the sentences. */
static struct findings expect(struct dialog dl, const struct want *w, size_t nw)
{
    char want[4096];
    size_t len = 0;
    want[0] = 0;
    for (size_t i = 0; i < nw; i++)
        append(want, sizeof want, &len, "%s %s@%llu\n", w[i].id,
               w[i].side == LINT_SIDE_C2S ? "C2S" : "S2C",
               (unsigned long long)stream_at(dl, w[i].side, w[i].needle, w[i].nth));
    struct findings f;
    play(dl, WHOLE, &f);
    if (strcmp(f.sig, want) != 0) fail_msg("got:\n%s%s want:\n%s", f.sig, f.text, want);
    assert_same_for_every_split(dl, &f);
    return f;
}

static void expect_none(struct dialog dl)
{
    expect(dl, NULL, 0);
}

/* A wanted finding at the first (AT) or nth (AT_NTH) occurrence of needle. */
#define AT(id, side, needle)                                                                       \
    {                                                                                              \
        id, side, needle, 1                                                                        \
    }
#define AT_NTH(id, side, needle, nth)                                                              \
    {                                                                                              \
        id, side, needle, nth                                                                      \
    }

#define EXPECT(dl, ...)                                                                            \
    expect(dl, (const struct want[]){__VA_ARGS__},                                                 \
           sizeof((const struct want[]){__VA_ARGS__}) / sizeof(struct want))

static void assert_text(const struct findings *f, const char *want)
{
    if (!strstr(f->text, want)) fail_msg("no finding says:\n%s\ngot:\n%s", want, f->text);
}

/* ---- replies that set the scene ----------------------------------------------------------- */

#define GREETING  "220 mx.example.org ESMTP Postfix\r\n"
#define EHLO_NONE "250 mx.example.org\r\n"
/* Everything the rules look at, before TLS. */
#define EHLO_ALL                                                                                   \
    "250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n"                \
    "250-SMTPUTF8\r\n250-CHUNKING\r\n250-ENHANCEDSTATUSCODES\r\n250 STARTTLS\r\n"
/* The same inside TLS: no STARTTLS, AUTH instead. */
#define EHLO_TLS                                                                                   \
    "250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n"                \
    "250-SMTPUTF8\r\n250-CHUNKING\r\n250-ENHANCEDSTATUSCODES\r\n250 AUTH PLAIN LOGIN\r\n"
/* A plain ESMTP server: none of the extensions the rules look at. */
#define EHLO_PLAIN "250-mx.example.org\r\n250-DSN\r\n250 HELP\r\n"

/* ---- conforming dialogs: silence ---------------------------------------------------------- */

static const struct step full_conforming[] = {
    S(GREETING),
    C("EHLO client.example.com\r\n"),
    S(EHLO_ALL),
    C("STARTTLS\r\n"),
    S("220 2.0.0 Ready to start TLS\r\n"),
    T,
    C("EHLO client.example.com\r\n"),
    S(EHLO_TLS),
    C("AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"),
    S("235 2.7.0 Authentication successful\r\n"),
    C("MAIL FROM:<alice@example.com> BODY=8BITMIME SMTPUTF8 SIZE=2048\r\n"),
    C("RCPT TO:<jos\xC3\xA9@example.org>\r\n"),
    C("DATA\r\n"),
    S("250 2.1.0 Ok\r\n"),
    S("250 2.1.5 Ok\r\n"),
    S("354 End data with <CR><LF>.<CR><LF>\r\n"),
    M("Subject: caf\xC3\xA9\r\n\r\nBonjour \xC3\xA0 tous\r\n..dot\r\n"),
    M(".\r\n"),
    E,
    S("250-2.0.0 Ok: queued as 4XyZ\r\n250 2.0.0 see you\r\n"),
    C("MAIL FROM:<alice@example.com> BODY=BINARYMIME\r\n"),
    C("RCPT TO:<bob@example.org>\r\n"),
    S("250 2.1.0 Ok\r\n"),
    S("250 2.1.5 Ok\r\n"),
    C("BDAT 11\r\n"),
    M("\xFF\xFE\x01"
      "binary\r\n"),
    S("250 2.0.0 11 octets received\r\n"),
    C("BDAT 4 LAST\r\n"),
    M("end\n"),
    L,
    S("250 2.0.0 Ok: queued as 5AbC\r\n"),
    C("RSET\r\n"),
    S("250 2.0.0 Ok\r\n"),
    C("QUIT\r\n"),
    S("221 2.0.0 Bye\r\n"),
};

static void conforming_esmtp_dialog_gives_no_finding(void **state)
{
    (void)state;
    expect_none(DIALOG(full_conforming));
}

static const struct step helo_conforming[] = {
    S(GREETING),
    C("HELO client.example.com\r\n"),
    S("250 mx.example.org\r\n"),
    C("MAIL FROM:<a@example.com>\r\n"),
    S("250 Ok\r\n"),
    C("RCPT TO:<b@example.org>\r\n"),
    S("250 Ok\r\n"),
    C("DATA\r\n"),
    S("354 go ahead\r\n"),
    M("Subject: hi\r\n\r\nplain 7-bit text\r\n.\r\n"),
    E,
    S("250 Ok\r\n"),
    C("NOOP\r\n"),
    S("250 Ok\r\n"),
    C("QUIT\r\n"),
    S("221 Bye\r\n"),
};

static void conforming_helo_dialog_gives_no_finding(void **state)
{
    (void)state;
    expect_none(DIALOG(helo_conforming));
}

/* ---- 8-bit content ------------------------------------------------------------------------ */

static const struct step eight_bit[] = {
    S(GREETING),
    C("EHLO client.example.com\r\n"),
    S("250-mx.example.org\r\n250 8BITMIME\r\n"),
    C("MAIL FROM:<a@example.com>\r\n"),
    S("250 Ok\r\n"),
    C("RCPT TO:<b@example.org>\r\n"),
    S("250 Ok\r\n"),
    C("DATA\r\n"),
    S("354 go ahead\r\n"),
    M("Subject: x\r\n\r\ncaf\xE9!\r\n"),
    M("again \xE8 once per message\r\n.\r\n"),
    E,
    S("250 Ok\r\n"),
    C("MAIL FROM:<a@example.com>\r\n"),
    S("250 Ok\r\n"),
    C("RCPT TO:<b@example.org>\r\n"),
    S("250 Ok\r\n"),
    C("DATA\r\n"),
    S("354 go ahead\r\n"),
    M("Subject: second\r\n\r\n\xC3\xA0 bient\xC3\xB4t\r\n.\r\n"),
    E,
    S("250 Ok\r\n"),
};

static void eight_bit_content_without_body_8bitmime_is_reported_once_per_message(void **state)
{
    (void)state;
    struct findings f =
        EXPECT(DIALOG(eight_bit), AT(LINT_ID_8BIT_WITHOUT_8BITMIME, LINT_SIDE_C2S, "\xE9!"),
               AT(LINT_ID_8BIT_WITHOUT_8BITMIME, LINT_SIDE_C2S, "\xC3\xA0"));
    assert_text(&f, "8bit-without-8bitmime: 8-bit byte 0xE9 in the message at line 3 without "
                    "BODY=8BITMIME on MAIL FROM (RFC 6152): a 7-bit server or relay may strip the "
                    "8th bit or refuse it\n");
    assert_text(&f, "8-bit byte 0xC3 in the message at line 3 ");
}

static const struct step eight_bit_declared[] = {
    S(GREETING),
    C("EHLO client.example.com\r\n"),
    S("250-mx.example.org\r\n250 8BITMIME\r\n"),
    C("MAIL FROM:<a@example.com> body=8bitmime\r\n"),
    S("250 Ok\r\n"),
    C("RCPT TO:<b@example.org>\r\n"),
    S("250 Ok\r\n"),
    C("DATA\r\n"),
    S("354 go ahead\r\n"),
    M("Subject: x\r\n\r\ncaf\xE9\r\n.\r\n"),
    E,
    S("250 Ok\r\n"),
    /* RSET ends the transaction: a BDAT message after a new MAIL without BODY is 7-bit */
    C("MAIL FROM:<a@example.com> BODY=8BITMIME\r\n"),
    S("250 Ok\r\n"),
    C("RSET\r\n"),
    S("250 Ok\r\n"),
    C("MAIL FROM:<a@example.com> BODY=7BIT\r\n"),
    S("250 Ok\r\n"),
    C("RCPT TO:<b@example.org>\r\n"),
    S("250 Ok\r\n"),
    C("DATA\r\n"),
    S("354 go ahead\r\n"),
    M("7-bit \xF6nly\r\n.\r\n"),
    E,
    S("250 Ok\r\n"),
};

static void body_8bitmime_allows_8bit_and_is_forgotten_after_the_transaction(void **state)
{
    (void)state;
    EXPECT(DIALOG(eight_bit_declared), AT(LINT_ID_8BIT_WITHOUT_8BITMIME, LINT_SIDE_C2S, "\xF6"));
}

/* ---- SMTPUTF8 ----------------------------------------------------------------------------- */

static const struct step smtputf8[] = {
    S(GREETING),
    C("EHLO client.example.com\r\n"),
    S("250-mx.example.org\r\n250 8BITMIME\r\n"),
    C("MAIL FROM:<alice@example.com> SMTPUTF8\r\n"),
    S("250 Ok\r\n"),
    C("RCPT TO:<jos\xC3\xA9@example.org>\r\n"),
    S("250 Ok\r\n"),
    C("RCPT TO:<bob@example.org>\r\n"),
    S("250 Ok\r\n"),
    C("RCPT TO:<\"bob the b\xC3\xBCilder\"@example.org>\r\n"), /* quoted: the blank is in it */
    S("250 Ok\r\n"),
    C("RCPT TO:<\"an \\\" escaped quote, then b\xC3\xBCrger\"@example.org>\r\n"),
    S("250 Ok\r\n"),
    C("RSET\r\n"),
    S("250 Ok\r\n"),
    /* one finding for a line that both asks for SMTPUTF8 and uses it */
    C("MAIL FROM:<j\xC3\xBCrgen@example.com> SMTPUTF8 BODY=8BITMIME\r\n"),
    S("250 Ok\r\n"),
};

static void smtputf8_use_without_the_offer_is_reported_per_line(void **state)
{
    (void)state;
    struct findings f = EXPECT(
        DIALOG(smtputf8), AT(LINT_ID_SMTPUTF8_NOT_OFFERED, LINT_SIDE_C2S, "MAIL FROM:<alice"),
        AT(LINT_ID_SMTPUTF8_NOT_OFFERED, LINT_SIDE_C2S, "RCPT TO:<jos"),
        AT(LINT_ID_SMTPUTF8_NOT_OFFERED, LINT_SIDE_C2S, "RCPT TO:<\"b"),
        AT(LINT_ID_SMTPUTF8_NOT_OFFERED, LINT_SIDE_C2S, "RCPT TO:<\"an"),
        AT(LINT_ID_SMTPUTF8_NOT_OFFERED, LINT_SIDE_C2S, "MAIL FROM:<j\xC3\xBC"));
    assert_text(&f, "smtputf8-not-offered: MAIL FROM carries the SMTPUTF8 parameter but the "
                    "server did not offer SMTPUTF8 (RFC 6531)");
    assert_text(&f, "smtputf8-not-offered: RCPT TO has a non-ASCII address (byte 0xC3) but the "
                    "server did not offer SMTPUTF8 (RFC 6531)");
}

static const struct step smtputf8_offered[] = {
    S(GREETING),
    C("EHLO client.example.com\r\n"),
    S("250-mx.example.org\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"),
    C("MAIL FROM:<j\xC3\xBCrgen@example.com> SMTPUTF8\r\n"),
    S("250 Ok\r\n"),
    C("RCPT TO:<jos\xC3\xA9@example.org>\r\n"),
    S("250 Ok\r\n"),
    /* a non-ASCII byte outside the address is not SMTPUTF8 use */
    C("RSET\r\n"),
    S("250 Ok\r\n"),
    C("EHLO client.example.com\r\n"),
    S(EHLO_PLAIN),
    C("MAIL FROM:<a@example.com> X-NOTE=caf\xC3\xA9\r\n"),
    S("555 5.5.4 unknown parameter\r\n"),
};

static void smtputf8_offered_or_unused_gives_no_finding(void **state)
{
    (void)state;
    expect_none(DIALOG(smtputf8_offered));
}

/* ---- pipelining --------------------------------------------------------------------------- */

static const struct step pipelined[] = {
    S(GREETING),
    C("EHLO client.example.com\r\n"),
    S(EHLO_PLAIN),
    C("MAIL FROM:<a@example.com>\r\n"),
    C("RCPT TO:<b@example.org>\r\n"),
    C("RCPT TO:<c@example.org>\r\n"),
    C("DATA\r\n"),
    S("250 Ok\r\n"),
    S("250 Ok\r\n"),
    S("250 Ok\r\n"),
    S("354 go ahead\r\n"),
    M("Subject: x\r\n\r\nhi\r\n.\r\n"),
    E,
    S("250 Ok\r\n"),
    /* one command at a time: fine */
    C("MAIL FROM:<a@example.com>\r\n"),
    S("250 Ok\r\n"),
    C("RCPT TO:<d@example.org>\r\n"),
    S("250 Ok\r\n"),
    /* a new burst is a new finding */
    C("RSET\r\n"),
    C("QUIT\r\n"),
    S("250 Ok\r\n"),
    S("221 Bye\r\n"),
};

static void pipelining_without_the_offer_is_reported_once_per_burst(void **state)
{
    (void)state;
    struct findings f =
        EXPECT(DIALOG(pipelined), AT(LINT_ID_PIPELINING_NOT_OFFERED, LINT_SIDE_C2S, "RCPT TO:<b"),
               AT(LINT_ID_PIPELINING_NOT_OFFERED, LINT_SIDE_C2S, "QUIT"));
    assert_text(&f, "pipelining-not-offered: client sent RCPT before the reply to its previous "
                    "command, but the server did not offer PIPELINING after EHLO (RFC 2920)");
}

static const struct step pipelined_helo[] = {
    S(GREETING),
    C("HELO client.example.com\r\n"),
    C("MAIL FROM:<a@example.com>\r\n"),
    S("250 mx.example.org\r\n"),
    S("250 Ok\r\n"),
    /* an EHLO offering PIPELINING does not bless commands sent before its reply came */
    C("EHLO client.example.com\r\n"),
    C("MAIL FROM:<a@example.com>\r\n"),
    S("250-mx.example.org\r\n250 PIPELINING\r\n"),
    S("250 Ok\r\n"),
    /* ... but from then on pipelining is fine */
    C("RCPT TO:<b@example.org>\r\n"),
    C("RCPT TO:<c@example.org>\r\n"),
    S("250 Ok\r\n"),
    S("250 Ok\r\n"),
    /* a refused EHLO offers nothing, whatever its lines say */
    C("EHLO client.example.com\r\n"),
    S("550-mx.example.org\r\n550 PIPELINING is not for you\r\n"),
    C("RSET\r\n"),
    C("NOOP\r\n"),
    S("250 Ok\r\n"),
    S("250 Ok\r\n"),
    C("EHLO client.example.com\r\n"),
    S("250-mx.example.org\r\n250 PIPELINING\r\n"),
    /* a later HELO takes every extension away */
    C("HELO client.example.com\r\n"),
    S("250 mx.example.org\r\n"),
    C("NOOP\r\n"),
    C("QUIT\r\n"),
    S("250 Ok\r\n"),
    S("221 Bye\r\n"),
};

static void pipelining_needs_an_ehlo_reply_offering_it(void **state)
{
    (void)state;
    EXPECT(DIALOG(pipelined_helo),
           AT_NTH(LINT_ID_PIPELINING_NOT_OFFERED, LINT_SIDE_C2S, "MAIL FROM", 1),
           AT_NTH(LINT_ID_PIPELINING_NOT_OFFERED, LINT_SIDE_C2S, "MAIL FROM", 2),
           AT_NTH(LINT_ID_PIPELINING_NOT_OFFERED, LINT_SIDE_C2S, "NOOP", 1),
           AT(LINT_ID_PIPELINING_NOT_OFFERED, LINT_SIDE_C2S, "QUIT"));
}

static const struct step pipelined_offered[] = {
    S(GREETING),
    C("EHLO client.example.com\r\n"),
    S("250-mx.example.org\r\n250-PIPELINING\r\n250 8BITMIME\r\n"),
    C("MAIL FROM:<a@example.com>\r\n"),
    C("RCPT TO:<b@example.org>\r\n"),
    C("DATA\r\n"),
    S("250 Ok\r\n"),
    S("250 Ok\r\n"),
    S("354 go ahead\r\n"),
    M("hi\r\n.\r\n"),
    E,
    C("QUIT\r\n"),
    S("250 Ok\r\n"),
    S("221 Bye\r\n"),
};

static void pipelining_offered_gives_no_finding(void **state)
{
    (void)state;
    expect_none(DIALOG(pipelined_offered));
}

static const struct step starttls_forgets[] = {
    S(GREETING),
    C("EHLO client.example.com\r\n"),
    S(EHLO_ALL),
    C("STARTTLS\r\n"),
    S("220 2.0.0 Ready to start TLS\r\n"),
    T,
    /* RFC 3207 4.2: what the server offered before TLS no longer holds */
    C("MAIL FROM:<a@example.com>\r\n"),
    C("RCPT TO:<b@example.org>\r\n"),
    S("503 5.5.1 send EHLO first\r\n"),
    S("503 5.5.1 send EHLO first\r\n"),
};

static void starttls_forgets_the_extensions_offered_before(void **state)
{
    (void)state;
    EXPECT(DIALOG(starttls_forgets), AT(LINT_ID_PIPELINING_NOT_OFFERED, LINT_SIDE_C2S, "RCPT"));
}

/* ---- commands before the greeting --------------------------------------------------------- */

static const struct step early_talker[] = {
    C("EHLO client.example.com\r\n"),
    S(GREETING),
    C("MAIL FROM:<a@example.com>\r\n"), /* the same burst: not a second finding */
    C("RCPT TO:<b@example.org>\r\n"),
    S("250-mx.example.org\r\n250 PIPELINING\r\n"),
    S("250 Ok\r\n"),
    S("250 Ok\r\n"),
    C("QUIT\r\n"),
    S("221 Bye\r\n"),
};

static void commands_before_the_greeting_are_reported_once(void **state)
{
    (void)state;
    struct findings f =
        EXPECT(DIALOG(early_talker), AT(LINT_ID_COMMAND_BEFORE_GREETING, LINT_SIDE_C2S, "EHLO"));
    assert_text(&f, "command-before-greeting: client sent EHLO before the server's greeting "
                    "(RFC 5321 3.1: the client waits for the 220)");
}

static const struct step multiline_greeting[] = {
    S("220-mx.example.org ESMTP\r\n220-no UCE\r\n220 welcome\r\n"),
    C("EHLO client.example.com\r\n"),
    S(EHLO_NONE),
};

static void command_after_a_whole_multiline_greeting_gives_no_finding(void **state)
{
    (void)state;
    expect_none(DIALOG(multiline_greeting));
}

/* ---- BDAT without CHUNKING ---------------------------------------------------------------- */

static const struct step bdat_unoffered[] = {
    S(GREETING),
    C("EHLO client.example.com\r\n"),
    S(EHLO_PLAIN),
    C("MAIL FROM:<a@example.com>\r\n"),
    S("250 Ok\r\n"),
    C("RCPT TO:<b@example.org>\r\n"),
    S("250 Ok\r\n"),
    C("BDAT 5\r\n"),
    M("Hi!\r\n"),
    S("250 Ok\r\n"),
    C("BDAT 3 LAST\r\n"),
    M("ok\n"),
    L,
    S("250 Ok\r\n"),
    C("MAIL FROM:<a@example.com>\r\n"),
    S("250 Ok\r\n"),
    C("RCPT TO:<b@example.org>\r\n"),
    S("250 Ok\r\n"),
    C("BDAT 2 LAST\r\n"),
    M("x\n"),
    L,
    S("250 Ok\r\n"),
};

static void bdat_without_chunking_is_reported_once_per_message(void **state)
{
    (void)state;
    struct findings f =
        EXPECT(DIALOG(bdat_unoffered), AT(LINT_ID_CHUNKING_NOT_OFFERED, LINT_SIDE_C2S, "BDAT 5"),
               AT(LINT_ID_CHUNKING_NOT_OFFERED, LINT_SIDE_C2S, "BDAT 2"));
    assert_text(&f, "chunking-not-offered: client sent BDAT but the server did not offer "
                    "CHUNKING (RFC 3030)");
}

static const struct step bdat_offered[] = {
    S(GREETING),
    C("EHLO client.example.com\r\n"),
    S("250-mx.example.org\r\n250-CHUNKING\r\n250 8BITMIME\r\n"),
    C("MAIL FROM:<a@example.com>\r\n"),
    S("250 Ok\r\n"),
    C("RCPT TO:<b@example.org>\r\n"),
    S("250 Ok\r\n"),
    C("BDAT 5\r\n"),
    M("Hi!\r\n"),
    S("250 Ok\r\n"),
    C("BDAT 3 LAST\r\n"),
    M("ok\n"),
    L,
    S("250 Ok\r\n"),
};

static void bdat_with_chunking_gives_no_finding(void **state)
{
    (void)state;
    expect_none(DIALOG(bdat_offered));
}

/* ---- SIZE --------------------------------------------------------------------------------- */

static const struct step size_over[] = {
    S(GREETING),
    C("EHLO client.example.com\r\n"),
    S("250-mx.example.org\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n"),
    C("MAIL FROM:<a@example.com> SIZE=20000000\r\n"),
    S("552 5.3.4 Message size exceeds fixed limit\r\n"),
    C("MAIL FROM:<a@example.com> SIZE=10240000\r\n"),
    S("250 Ok\r\n"),
    C("RSET\r\n"),
    S("250 Ok\r\n"),
    C("MAIL FROM:<a@example.com> size=99999999999999999999999\r\n"),
    S("552 5.3.4 Message size exceeds fixed limit\r\n"),
};

static void size_over_the_advertised_limit_is_reported(void **state)
{
    (void)state;
    struct findings f =
        EXPECT(DIALOG(size_over), AT_NTH(LINT_ID_SIZE_OVER_LIMIT, LINT_SIDE_C2S, "MAIL FROM", 1),
               AT_NTH(LINT_ID_SIZE_OVER_LIMIT, LINT_SIDE_C2S, "MAIL FROM", 3));
    assert_text(&f, "size-over-limit: MAIL FROM declares SIZE=20000000 but the server's SIZE "
                    "limit is 10240000 octets (RFC 1870): it will refuse the message\n");
}

static const struct step size_unlimited[] = {
    S(GREETING),
    C("EHLO client.example.com\r\n"),
    S("250-mx.example.org\r\n250 SIZE 0\r\n"),
    C("MAIL FROM:<a@example.com> SIZE=20000000\r\n"),
    S("250 Ok\r\n"),
    C("RSET\r\n"),
    S("250 Ok\r\n"),
    C("EHLO client.example.com\r\n"),
    S("250-mx.example.org\r\n250 SIZE\r\n"),
    C("MAIL FROM:<a@example.com> SIZE=20000000\r\n"),
    S("250 Ok\r\n"),
    C("RSET\r\n"),
    S("250 Ok\r\n"),
    C("EHLO client.example.com\r\n"),
    S("250-mx.example.org\r\n250 SIZE 52428800\r\n"),
    C("MAIL FROM:<a@example.com> SIZE=20000000\r\n"),
    S("250 Ok\r\n"),
    C("RSET\r\n"),
    S("250 Ok\r\n"),
    /* not a number: not judged against the limit */
    C("MAIL FROM:<a@example.com> SIZE=99999999999x\r\n"),
    S("501 5.5.4 Bad SIZE syntax\r\n"),
};

static void size_zero_bare_or_under_the_limit_gives_no_finding(void **state)
{
    (void)state;
    expect_none(DIALOG(size_unlimited));
}

/* ---- reply codes -------------------------------------------------------------------------- */

static const struct step code_changes[] = {
    S(GREETING),
    C("EHLO client.example.com\r\n"),
    S("250-mx.example.org\r\n250-PIPELINING\r\n550 5.7.1 go away\r\n"),
    C("NOOP\r\n"),
    S("250-first\r\n251-second\r\n252-third\r\n250 fourth\r\n"),
    C("NOOP\r\n"),
    S("250-a line, then one too short for a code:\r\n2\r\n"),
};

static void multiline_reply_whose_code_changes_is_reported_once(void **state)
{
    (void)state;
    struct findings f =
        EXPECT(DIALOG(code_changes), AT(LINT_ID_REPLY_CODE_CHANGES, LINT_SIDE_S2C, "550 5.7.1"),
               AT(LINT_ID_REPLY_CODE_CHANGES, LINT_SIDE_S2C, "251-second"),
               AT(LINT_ID_REPLY_CODE_CHANGES, LINT_SIDE_S2C, "2\r\n"));
    assert_text(&f, "reply-code-changes: multi-line reply changes its code from \"250\" to "
                    "\"550\" at line 3 (RFC 5321 4.2.1: every line carries the same code)");
    assert_text(&f, "from \"250\" to \"2\" at line 2 ");
}

static const struct step code_range[] = {
    S(GREETING),
    C("EHLO client.example.com\r\n"),
    S(EHLO_NONE),
    C("NOOP\r\n"),
    S("199 almost\r\n"),
    C("NOOP\r\n"),
    S("600 too far\r\n"),
    C("NOOP\r\n"),
    S("OK\r\n"),
    C("NOOP\r\n"),
    S("2x0 \x01\r\n"),
    C("NOOP\r\n"),
    S("\x01\x02\x03 binary\r\n"),
    C("NOOP\r\n"),
    S("599 the last valid one\r\n"),
};

static void reply_code_outside_2xx_to_5xx_is_reported(void **state)
{
    (void)state;
    struct findings f =
        EXPECT(DIALOG(code_range), AT(LINT_ID_REPLY_CODE_OUT_OF_RANGE, LINT_SIDE_S2C, "199"),
               AT(LINT_ID_REPLY_CODE_OUT_OF_RANGE, LINT_SIDE_S2C, "600"),
               AT(LINT_ID_REPLY_CODE_OUT_OF_RANGE, LINT_SIDE_S2C, "OK\r\n"),
               AT(LINT_ID_REPLY_CODE_OUT_OF_RANGE, LINT_SIDE_S2C, "2x0"),
               AT_NTH(LINT_ID_REPLY_CODE_OUT_OF_RANGE, LINT_SIDE_S2C, "\x01", 2));
    assert_text(&f, "reply-code-out-of-range: reply code \"199\" is not a 3-digit code from 2xx "
                    "to 5xx (RFC 5321 4.2.1): the client cannot tell whether its command "
                    "succeeded\n");
    assert_text(&f, "reply code \"OK\" is not");
    assert_text(&f, "reply code \"\\x01\\x02\\x03\" is not");
}

/* ---- enhanced status codes ---------------------------------------------------------------- */

static const struct step enhanced_mismatch[] = {
    S("220 5.0.0 the greeting is not judged\r\n"),
    C("EHLO client.example.com\r\n"),
    S("250-mx.example.org\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n"),
    C("MAIL FROM:<a@example.com>\r\n"),
    S("250 2.1.0 Ok\r\n"),
    C("RCPT TO:<b@example.org>\r\n"),
    S("550 2.1.5 Ok\r\n"),
    C("RCPT TO:<c@example.org>\r\n"),
    S("250-2.1.5 fine\r\n250-4.2.2 over quota\r\n250 5.0.0 whatever\r\n"),
    C("DATA\r\n"),
    S("354 5.0.0 3xx replies are never judged\r\n"),
    M("hi\r\n.\r\n"),
    E,
    S("451 2.0.0 queued\r\n"),
};

static void enhanced_code_of_another_class_is_reported_once_per_reply(void **state)
{
    (void)state;
    struct findings f = EXPECT(DIALOG(enhanced_mismatch),
                               AT(LINT_ID_ENHANCED_CODE_MISMATCH, LINT_SIDE_S2C, "550 2.1.5"),
                               AT(LINT_ID_ENHANCED_CODE_MISMATCH, LINT_SIDE_S2C, "250-4.2.2"),
                               AT(LINT_ID_ENHANCED_CODE_MISMATCH, LINT_SIDE_S2C, "451 2.0.0"));
    assert_text(&f, "enhanced-code-mismatch: reply 550 carries enhanced status code 2.1.5, whose "
                    "class says success (RFC 3463: the class must agree with the reply code's "
                    "first digit)");
    assert_text(&f, "reply 250 carries enhanced status code 4.2.2, whose class says temporary");
}

static const struct step enhanced_unoffered[] = {
    S(GREETING),
    C("EHLO client.example.com\r\n"),
    S("250-mx.example.org\r\n250 PIPELINING\r\n"),
    C("RCPT TO:<b@example.org>\r\n"),
    S("550 2.1.5 not judged: ENHANCEDSTATUSCODES was not offered\r\n"),
    C("EHLO client.example.com\r\n"),
    S("250-5.5.5 mx.example.org: the hello reply is not judged\r\n250 ENHANCEDSTATUSCODES\r\n"),
    C("RCPT TO:<b@example.org>\r\n"),
    S("550 5.1.1 unknown user\r\n"),
    C("NOOP\r\n"),
    S("550 2.0.0.1 is not an enhanced code\r\n"),
    C("NOOP\r\n"),
    S("550 2.1234.5 is not one\r\n"),
    C("NOOP\r\n"),
    S("550 21.1.1 is not one\r\n"),
    C("NOOP\r\n"),
    S("550 x.1.1 is not one\r\n"),
    C("NOOP\r\n"),
    S("550 2.1:1 is not one\r\n"),
    C("NOOP\r\n"),
    S("250 without one\r\n"),
};

static void enhanced_code_unoffered_matching_or_absent_gives_no_finding(void **state)
{
    (void)state;
    expect_none(DIALOG(enhanced_unoffered));
}

/* ---- unasked replies ---------------------------------------------------------------------- */

static const struct step unasked[] = {
    S(GREETING),
    C("EHLO client.example.com\r\n"),
    S(EHLO_NONE),
    S("250 2.0.0 Ok\r\n"),
    C("MAIL FROM:<a@example.com>\r\n"),
    S("250 Ok\r\n"),
    C("RCPT TO:<b@example.org>\r\n"),
    S("250 Ok\r\n"),
    C("DATA\r\n"),
    S("354 go ahead\r\n"),
    M("Subject: x\r\n\r\n"),
    S("250 Ok: queued as 1234\r\n"),
    M("rest\r\n.\r\n"),
    E,
    S("250 Ok\r\n"),
    S("421 4.4.2 mx.example.org Error: timeout exceeded\r\n"),
};

static void reply_no_command_asked_for_is_reported_but_not_a_421(void **state)
{
    (void)state;
    struct findings f =
        EXPECT(DIALOG(unasked), AT(LINT_ID_REPLY_BEFORE_COMMAND, LINT_SIDE_S2C, "250 2.0.0 Ok"),
               AT(LINT_ID_REPLY_BEFORE_COMMAND, LINT_SIDE_S2C, "250 Ok: queued"));
    assert_text(&f, "reply-before-command: server sent a \"250\" reply no command asked for: it "
                    "came before its command");
    assert_text(&f, "reply-before-command: server sent a \"250\" reply while the message was "
                    "still open");
}

/* ---- AUTH before STARTTLS ----------------------------------------------------------------- */

static const struct step auth_in_clear[] = {
    S(GREETING),
    C("EHLO client.example.com\r\n"),
    S("250-mx.example.org\r\n250-AUTH PLAIN LOGIN\r\n250 STARTTLS\r\n"),
    C("AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"),
    S("235 2.7.0 Authentication successful\r\n"),
};

static void auth_in_clear_when_starttls_was_offered_is_reported(void **state)
{
    (void)state;
    struct findings f =
        EXPECT(DIALOG(auth_in_clear), AT(LINT_ID_AUTH_BEFORE_STARTTLS, LINT_SIDE_C2S, "AUTH"));
    assert_text(&f, "auth-before-starttls: client sent AUTH in plain text although STARTTLS "
                    "was offered to it");
}

static const struct step auth_in_tls[] = {
    T, /* implicit TLS, yet the server offers STARTTLS: AUTH is protected all the same */
    S(GREETING),
    C("EHLO client.example.com\r\n"),
    S("250-mx.example.org\r\n250-AUTH PLAIN LOGIN\r\n250 STARTTLS\r\n"),
    C("AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"),
    S("235 2.7.0 Authentication successful\r\n"),
};

static void auth_in_tls_gives_no_finding(void **state)
{
    (void)state;
    expect_none(DIALOG(auth_in_tls));
}

static const struct step auth_no_starttls[] = {
    S(GREETING),
    C("EHLO client.example.com\r\n"),
    S("250-mx.example.org\r\n250 AUTH PLAIN LOGIN\r\n"),
    C("AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"),
    S("235 2.7.0 Authentication successful\r\n"),
};

static void auth_without_a_starttls_offer_gives_no_finding(void **state)
{
    (void)state;
    expect_none(DIALOG(auth_no_starttls));
}

/* ---- the API's edges ---------------------------------------------------------------------- */

static void unknown_offsets_pass_through(void **state)
{
    (void)state;
    struct findings f = {0};
    struct lint_state ls;
    lint_state_init(&ls, collect, &f);
    static const char hello[] = "EHLO x\r\n", reply[] = "199 hm\r\n";
    lint_state_command(&ls, LINT_STATE_NO_OFFSET, (const uint8_t *)hello, strlen(hello), false,
                       true);
    lint_state_reply(&ls, LINT_REPLY_GREETING, SMTP_VERB_UNKNOWN, LINT_STATE_NO_OFFSET,
                     (const uint8_t *)reply, strlen(reply), true);
    assert_string_equal(f.sig, "command-before-greeting C2S@18446744073709551615\n"
                               "reply-code-out-of-range S2C@18446744073709551615\n");
}

/* Only the greeting ends the time before the greeting, not a reply that paired with nothing. */
static void only_the_greeting_ends_the_wait_for_it(void **state)
{
    (void)state;
    struct findings f = {0};
    struct lint_state ls;
    static const char noise[] = "250 hello?\r\n", noop[] = "NOOP\r\n";
    lint_state_init(&ls, collect, &f);
    lint_state_reply(&ls, LINT_REPLY_UNASKED, SMTP_VERB_UNKNOWN, 0, (const uint8_t *)noise,
                     strlen(noise), true);
    lint_state_command(&ls, 0, (const uint8_t *)noop, strlen(noop), false, true);
    assert_string_equal(f.sig, "reply-before-command S2C@0\ncommand-before-greeting C2S@0\n");
}

static void reply_kind_of_maps_the_pending_kinds(void **state)
{
    (void)state;
    struct smtp_pending p = {.kind = SMTP_PENDING_GREETING};
    assert_int_equal(lint_reply_kind_of(NULL), LINT_REPLY_UNASKED);
    assert_int_equal(lint_reply_kind_of(&p), LINT_REPLY_GREETING);
    p.kind = SMTP_PENDING_COMMAND;
    assert_int_equal(lint_reply_kind_of(&p), LINT_REPLY_COMMAND);
    p.kind = SMTP_PENDING_DATA_END;
    assert_int_equal(lint_reply_kind_of(&p), LINT_REPLY_DATA_END);
    p.kind = SMTP_PENDING_SASL;
    assert_int_equal(lint_reply_kind_of(&p), LINT_REPLY_SASL);
}

static void over_long_reply_lines_are_judged_by_their_start(void **state)
{
    (void)state;
    char reply[1200];
    memset(reply, 'x', sizeof reply);
    memcpy(reply, "250-mx.example.org ", 19);
    memcpy(reply + 1000, "\r\n551 too late\r\n", 17); /* NUL-terminated here */
    const struct step steps[] = {S(GREETING), C("NOOP\r\n"), S(reply)};
    EXPECT(DIALOG(steps), AT(LINT_ID_REPLY_CODE_CHANGES, LINT_SIDE_S2C, "551"));
}

static const struct step unterminated[] = {
    S(GREETING),
    C("NOOP\r\n"),
    S("250-fine\r\n550 the last line has no CRLF"),
};

static void reply_ending_without_a_terminator_has_its_last_line_judged(void **state)
{
    (void)state;
    EXPECT(DIALOG(unterminated), AT(LINT_ID_REPLY_CODE_CHANGES, LINT_SIDE_S2C, "550"));
}

/* Hello replies are exempt from the enhanced code rule even when a session feeds one without
 * its command (the capabilities of the previous EHLO are then still in effect). */
static void hello_replies_are_not_judged_for_enhanced_codes(void **state)
{
    (void)state;
    struct findings f = {0};
    struct lint_state ls;
    static const char ehlo[] = "250-mx.example.org\r\n250 ENHANCEDSTATUSCODES\r\n";
    static const char helo[] = "250 5.0.0 mx.example.org\r\n";
    lint_state_init(&ls, collect, &f);
    lint_state_reply(&ls, LINT_REPLY_GREETING, SMTP_VERB_UNKNOWN, 0, (const uint8_t *)GREETING,
                     strlen(GREETING), true);
    lint_state_reply(&ls, LINT_REPLY_COMMAND, SMTP_VERB_EHLO, 100, (const uint8_t *)ehlo,
                     strlen(ehlo), true);
    lint_state_reply(&ls, LINT_REPLY_COMMAND, SMTP_VERB_HELO, 200, (const uint8_t *)helo,
                     strlen(helo), true);
    assert_string_equal(f.sig, "");
    lint_state_reply(&ls, LINT_REPLY_COMMAND, SMTP_VERB_EHLO, 100, (const uint8_t *)ehlo,
                     strlen(ehlo), true);
    lint_state_reply(&ls, LINT_REPLY_COMMAND, SMTP_VERB_NOOP, 200, (const uint8_t *)helo,
                     strlen(helo), true);
    assert_string_equal(f.sig, "enhanced-code-mismatch S2C@200\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(conforming_esmtp_dialog_gives_no_finding),
        cmocka_unit_test(conforming_helo_dialog_gives_no_finding),
        cmocka_unit_test(eight_bit_content_without_body_8bitmime_is_reported_once_per_message),
        cmocka_unit_test(body_8bitmime_allows_8bit_and_is_forgotten_after_the_transaction),
        cmocka_unit_test(smtputf8_use_without_the_offer_is_reported_per_line),
        cmocka_unit_test(smtputf8_offered_or_unused_gives_no_finding),
        cmocka_unit_test(pipelining_without_the_offer_is_reported_once_per_burst),
        cmocka_unit_test(pipelining_needs_an_ehlo_reply_offering_it),
        cmocka_unit_test(pipelining_offered_gives_no_finding),
        cmocka_unit_test(starttls_forgets_the_extensions_offered_before),
        cmocka_unit_test(commands_before_the_greeting_are_reported_once),
        cmocka_unit_test(command_after_a_whole_multiline_greeting_gives_no_finding),
        cmocka_unit_test(bdat_without_chunking_is_reported_once_per_message),
        cmocka_unit_test(bdat_with_chunking_gives_no_finding),
        cmocka_unit_test(size_over_the_advertised_limit_is_reported),
        cmocka_unit_test(size_zero_bare_or_under_the_limit_gives_no_finding),
        cmocka_unit_test(multiline_reply_whose_code_changes_is_reported_once),
        cmocka_unit_test(reply_code_outside_2xx_to_5xx_is_reported),
        cmocka_unit_test(enhanced_code_of_another_class_is_reported_once_per_reply),
        cmocka_unit_test(enhanced_code_unoffered_matching_or_absent_gives_no_finding),
        cmocka_unit_test(reply_no_command_asked_for_is_reported_but_not_a_421),
        cmocka_unit_test(auth_in_clear_when_starttls_was_offered_is_reported),
        cmocka_unit_test(auth_in_tls_gives_no_finding),
        cmocka_unit_test(auth_without_a_starttls_offer_gives_no_finding),
        cmocka_unit_test(reply_ending_without_a_terminator_has_its_last_line_judged),
        cmocka_unit_test(unknown_offsets_pass_through),
        cmocka_unit_test(only_the_greeting_ends_the_wait_for_it),
        cmocka_unit_test(reply_kind_of_maps_the_pending_kinds),
        cmocka_unit_test(over_long_reply_lines_are_judged_by_their_start),
        cmocka_unit_test(hello_replies_are_not_judged_for_enhanced_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
