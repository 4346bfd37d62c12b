/* fuzz_replay.c - libFuzzer target for the recorded server's protocol (replay_smtp.h).
 *
 * Input: [split seed, 2 bytes][flags: strict, speed][a jsonl capture] NUL [the client's bytes].
 * The capture is read by the capture reader (an input whose capture does not read is
 * done); the client's bytes go to a replay of it fed whole and fed in pieces. Oracles:
 *   - never a crash, a leak or undefined behaviour;
 *   - whole and in pieces the replay says the same: the same replies, notes and delays;
 *   - every reply it sends ends its line (with CRLF, or with the bare LF a recorded server
 *     sent: replayed as recorded), and every note names where the dialog left the
 *     recording. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "smtptap/buf.h"
#include "smtptap/replay_smtp.h"

struct said {
    struct buf bytes; /* replies, notes and delays, in order */
};

static void on_reply(void *ctx, const uint8_t *b, size_t n, double delay_ms)
{
    struct said *s = ctx;
    FUZZ_CHECK(n >= 1 && b[n - 1] == '\n', "a reply without its line end");
    buf_printf(&s->bytes, "R%.3f:", delay_ms);
    buf_append(&s->bytes, b, n);
}

static void on_note(void *ctx, const char *text)
{
    struct said *s = ctx;
    FUZZ_CHECK(strncmp(text, "replay: ", 8) == 0 && strstr(text, "recording"), "note: %s", text);
    buf_printf(&s->bytes, "N:%s\n", text);
}

static void run(const struct capture_dialog *d, bool strict, double speed, const uint8_t *b,
                size_t n, const size_t *cuts, size_t ncuts, struct said *s)
{
    buf_init(&s->bytes);
    struct replay_smtp_out out = {on_reply, on_note, s};
    struct replay_smtp r;
    replay_smtp_init(&r, d, strict, speed, &out);
    r.in.max_line = 64; /* over-long lines, often */
    size_t from = 0;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t to = k < ncuts ? cuts[k] : n;
        replay_smtp_input(&r, b + from, to - from);
        from = to;
    }
    replay_smtp_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    uint16_t seed = fuzz_u16(&in);
    uint8_t flags = fuzz_u8(&in);
    size_t cap_len;
    const uint8_t *cap = fuzz_until(&in, 0, &cap_len);
    struct capture_reader *reader = capture_reader_new();
    if (capture_reader_feed(reader, cap, cap_len) < 0 || capture_reader_finish(reader) < 0) {
        capture_reader_free(reader);
        return 0;
    }
    const struct capture_dialog *d = capture_reader_dialog(reader);
    size_t *cuts = malloc((in.n + 1) * sizeof *cuts);
    if (!cuts) abort();
    size_t ncuts = fuzz_cuts(seed, in.n, cuts);
    bool strict = flags & 1;
    double speed = (flags >> 1) & 3;
    struct said whole, pieces;
    run(d, strict, speed, in.p, in.n, NULL, 0, &whole);
    run(d, strict, speed, in.p, in.n, cuts, ncuts, &pieces);
    FUZZ_CHECK(
        buf_size(&whole.bytes) == buf_size(&pieces.bytes) &&
            memcmp(buf_head(&whole.bytes), buf_head(&pieces.bytes), buf_size(&whole.bytes)) == 0,
        "the replay differs whole and in pieces");
    buf_free(&whole.bytes);
    buf_free(&pieces.bytes);
    free(cuts);
    capture_reader_free(reader);
    return 0;
}
