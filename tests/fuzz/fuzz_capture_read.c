/* fuzz_capture_read.c - libFuzzer target for the capture reader (capture_read.h).
 *
 * Input: [split seed, 2 bytes][the capture's text]. The text is read whole and in pieces
 * (cut where fuzz_cuts says). Oracles:
 *   - never a crash, a leak or undefined behaviour, however broken the text;
 *   - whole and in pieces the reader says the same: the same error (naming the same line), or
 *     the same steps (kind, line, command, reply, code, group, body);
 *   - an error always names a line ("line N: ..."), N at most one past the text's lines;
 *   - every step with a reply has a code that agrees with its reply's kind of step. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "smtptap/capture_read.h"

static struct capture_reader *read_cut(const uint8_t *b, size_t n, const size_t *cuts, size_t ncuts)
{
    struct capture_reader *r = capture_reader_new();
    size_t from = 0;
    int rc = 0;
    for (size_t k = 0; k <= ncuts && rc == 0; k++) {
        size_t to = k < ncuts ? cuts[k] : n;
        rc = capture_reader_feed(r, b + from, to - from);
        from = to;
    }
    if (rc == 0) capture_reader_finish(r);
    return r;
}

static bool same_bytes(const void *a, size_t an, const void *b, size_t bn)
{
    return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

static void check_same(const struct capture_reader *x, const struct capture_reader *y)
{
    const char *ex = capture_reader_error(x), *ey = capture_reader_error(y);
    FUZZ_CHECK(!ex == !ey && (!ex || strcmp(ex, ey) == 0), "whole: %s; in pieces: %s",
               ex ? ex : "ok", ey ? ey : "ok");
    if (ex) return;
    const struct capture_dialog *a = capture_reader_dialog(x), *b = capture_reader_dialog(y);
    FUZZ_CHECK(a->n == b->n, "%zu steps whole, %zu in pieces", a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        const struct capture_step *s = &a->steps[i], *t = &b->steps[i];
        FUZZ_CHECK(s->kind == t->kind && s->line == t->line && s->code == t->code &&
                       s->group == t->group && s->local == t->local &&
                       same_bytes(s->command, s->command_len, t->command, t->command_len) &&
                       same_bytes(s->reply, s->reply_len, t->reply, t->reply_len) &&
                       same_bytes(s->body, s->body_len, t->body, t->body_len),
                   "step %zu differs whole and in pieces", i + 1);
    }
}

static void check_error(const struct capture_reader *r, const uint8_t *b, size_t n)
{
    const char *e = capture_reader_error(r);
    if (!e) return;
    size_t lines = 1;
    for (size_t i = 0; i < n; i++) lines += b[i] == '\n';
    unsigned line = capture_reader_error_line(r);
    char prefix[32];
    snprintf(prefix, sizeof prefix, "line %u: ", line);
    FUZZ_CHECK(line >= 1 && line <= lines + 1 && strncmp(e, prefix, strlen(prefix)) == 0,
               "error \"%s\" (line %u of %zu)", e, line, lines);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    uint16_t seed = fuzz_u16(&in);
    size_t *cuts = malloc((in.n + 1) * sizeof *cuts);
    if (!cuts) return 0;
    size_t ncuts = fuzz_cuts(seed, in.n, cuts);
    struct capture_reader *whole = read_cut(in.p, in.n, NULL, 0);
    struct capture_reader *pieces = read_cut(in.p, in.n, cuts, ncuts);
    check_error(whole, in.p, in.n);
    check_same(whole, pieces);
    capture_reader_free(whole);
    capture_reader_free(pieces);
    free(cuts);
    return 0;
}
