/* fuzz_fault.c - libFuzzer target for the fault rules and EHLO editing (fault.h, ehlo.h,
 * hello.h).
 *
 * Input: fields separated by NUL bytes: a --fault flag, "key=value" lines of a [fault NAME]
 * section, a glob and a text, an EHLO reply, a capability list, a keyword, hello-memory steps
 * and fault_match steps. Oracles:
 *   - parsing a flag or a section returns 0 with a complete rule (stage, action, reply lines
 *     with the reply's code, each ending CRLF; 0 < probability <= 1) or -1 with a message
 *     that names the flag or section;
 *   - fault_glob agrees with a plain recursive glob written here;
 *   - fault_strip_caps: nothing removed means the reply byte for byte; stripping twice removes
 *     nothing more; on a well-formed reply the result is well-formed (last line "250 ", the
 *     others "250-", the first line kept) and no longer advertises a stripped keyword;
 *   - ehlo_add: the keyword is then advertised, there is one line more, and stripping it
 *     again gives the reply back; ehlo_as_one_line gives exactly one line;
 *   - hello memory: an answer exists exactly when a 250 is kept, is a reply, and a HELO gets
 *     one line; names stay printable;
 *   - fault_match draws the same firings for the same seed, and an nth rule fires at most
 *     once per session. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fuzz.h"
#include "smtptap/ehlo.h"
#include "smtptap/fault.h"
#include "smtptap/hello.h"

struct field {
    const uint8_t *p;
    size_t n;
};

enum { F_FLAG, F_SECTION, F_GLOB, F_TEXT, F_EHLO, F_CAPS, F_KEYWORD, F_HELLO, F_MATCH, F_COUNT };

/* ---- rules ------------------------------------------------------------------------------- */

static void check_rule(const struct fault_rule *r)
{
    FUZZ_CHECK(r->has_stage && r->has_action, "a rule without stage or action was accepted");
    FUZZ_CHECK(memchr(r->name, 0, sizeof r->name) && memchr(r->match, 0, sizeof r->match) &&
                   memchr(r->reply, 0, sizeof r->reply) && memchr(r->strip, 0, sizeof r->strip),
               "a rule's string is not NUL-terminated");
    FUZZ_CHECK(r->probability > 0 && r->probability <= 1, "probability %g", r->probability);
    if (r->action != FAULT_REPLY) return;
    FUZZ_CHECK(r->reply_code >= 200 && r->reply_code <= 599, "reply code %d", r->reply_code);
    const char *line = r->reply;
    FUZZ_CHECK(*line, "an empty reply");
    while (*line) {
        const char *end = strstr(line, "\r\n");
        FUZZ_CHECK(end != NULL, "a reply line without CRLF: \"%s\"", r->reply);
        FUZZ_CHECK(atoi(line) == r->reply_code && (line[3] == ' ' || line[3] == '-'),
                   "reply line \"%.*s\" does not carry code %d", (int)(end - line), line,
                   r->reply_code);
        FUZZ_CHECK(!memchr(line, '\n', (size_t)(end - line)) &&
                       !memchr(line, '\r', (size_t)(end - line)),
                   "a bare CR or LF inside a reply line");
        line = end + 2;
    }
}

static bool parse_flag(struct field f, struct fault_rule *r)
{
    char *text = fuzz_strndup(f.p, f.n), err[512];
    memset(err, 'x', sizeof err);
    int rc = fault_parse_flag(text, 1, r, err, sizeof err);
    FUZZ_CHECK(rc == 0 || rc == -1, "fault_parse_flag returned %d", rc);
    if (rc == 0) {
        check_rule(r);
        FUZZ_CHECK(strcmp(r->name, "flag 1") == 0, "flag rule named \"%s\"", r->name);
    } else {
        FUZZ_CHECK(memchr(err, 0, sizeof err) && strncmp(err, "--fault #1", 10) == 0,
                   "flag error \"%.60s\" does not name the flag", err);
    }
    free(text);
    return rc == 0;
}

static void parse_section(struct field f)
{
    struct fault_rule r;
    char err[512];
    fault_rule_begin(&r, "fuzzed");
    char *text = fuzz_strndup(f.p, f.n), *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *eq = strchr(line, '=');
        if (!eq) continue;
        *eq = 0;
        if (fault_rule_set(&r, line, eq + 1, err, sizeof err) < 0)
            FUZZ_CHECK(memchr(err, 0, sizeof err) && strncmp(err, "[fault fuzzed]", 14) == 0,
                       "section error \"%.60s\" does not name the section", err);
    }
    if (fault_rule_finish(&r, err, sizeof err) == 0)
        check_rule(&r);
    else
        FUZZ_CHECK(strncmp(err, "[fault fuzzed]", 14) == 0, "finish error \"%.60s\"", err);
    free(text);
}

/* ---- glob -------------------------------------------------------------------------------- */

static char lower(uint8_t c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c + 32) : (char)c;
}

static bool ref_glob(const char *p, const uint8_t *t, size_t n)
{
    if (!*p) return n == 0;
    if (*p == '*') {
        while (p[1] == '*') p++;
        for (size_t i = 0; i <= n; i++)
            if (ref_glob(p + 1, t + i, n - i)) return true;
        return false;
    }
    if (n == 0) return false;
    if (*p != '?' && lower((uint8_t)*p) != lower(*t)) return false;
    return ref_glob(p + 1, t + 1, n - 1);
}

static void check_glob(struct field pat, struct field text)
{
    if (pat.n > 40 || text.n > 200) return; /* the reference is exponential */
    char *p = fuzz_strndup(pat.p, pat.n);
    bool want = ref_glob(p, text.p, text.n), got = fault_glob(p, text.p, text.n);
    if (want != got) {
        fuzz_dump("pattern", pat.p, pat.n);
        fuzz_dump("text", text.p, text.n);
        fuzz_fail("fault_glob says %d, the reference %d", got, want);
    }
    free(p);
}

/* ---- EHLO editing ------------------------------------------------------------------------ */

/* Lines "DDD-text\r\n" ... "DDD text\r\n" with printable text: what a server should send. */
static bool well_formed_ehlo(const uint8_t *r, size_t n)
{
    size_t at = 0;
    while (at < n) {
        const uint8_t *lf = memchr(r + at, '\n', n - at);
        if (!lf) return false;
        size_t end = (size_t)(lf - r) + 1, len = end - at;
        if (len < 6 || r[end - 2] != '\r') return false;
        for (size_t i = 0; i < 3; i++)
            if (r[at + i] != r[i] || r[i] < '0' || r[i] > '9') return false;
        if (r[at + 3] != (end == n ? ' ' : '-')) return false;
        for (size_t i = at + 4; i < end - 2; i++)
            if (r[i] < 0x20 || r[i] > 0x7e) return false;
        at = end;
    }
    return n > 0;
}

static size_t count_lines(const uint8_t *r, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += r[i] == '\n';
    return k;
}

static bool is_keyword(const char *k)
{
    if (!*k) return false;
    for (; *k; k++)
        if (!((*k >= 'A' && *k <= 'Z') || (*k >= 'a' && *k <= 'z') || (*k >= '0' && *k <= '9') ||
              *k == '-'))
            return false;
    return true;
}

static bool same_bytes(const struct buf *b, const uint8_t *p, size_t n)
{
    return buf_size(b) == n && memcmp(buf_head(b), p, n) == 0;
}

static void check_strip(struct field reply, const char *caps)
{
    struct buf once, twice;
    buf_init(&once);
    buf_init(&twice);
    unsigned removed = fault_strip_caps(reply.p, reply.n, caps, &once);
    if (!removed) FUZZ_CHECK(same_bytes(&once, reply.p, reply.n), "nothing removed, bytes changed");
    unsigned again = fault_strip_caps(buf_head(&once), buf_size(&once), caps, &twice);
    FUZZ_CHECK(again == 0, "a second strip removed %u more", again);
    if (well_formed_ehlo(reply.p, reply.n)) {
        const uint8_t *o = buf_head(&once);
        size_t n = buf_size(&once);
        FUZZ_CHECK(well_formed_ehlo(o, n), "stripping made a malformed EHLO reply");
        const uint8_t *lf = memchr(reply.p, '\n', reply.n);
        size_t first = (size_t)(lf - reply.p) + 1;
        FUZZ_CHECK(n >= first && !memcmp(o + 4, reply.p + 4, first - 4), "first line changed");
        if (is_keyword(caps) && strcasecmp(caps, "AUTH") != 0)
            FUZZ_CHECK(!ehlo_has(o, n, caps), "\"%s\" still advertised after stripping it", caps);
    }
    buf_free(&once);
    buf_free(&twice);
}

static void check_add(struct field reply, const char *kw)
{
    if (!well_formed_ehlo(reply.p, reply.n) || !is_keyword(kw)) return;
    struct buf added, back, one;
    buf_init(&added);
    buf_init(&back);
    buf_init(&one);
    ehlo_add(reply.p, reply.n, kw, &added);
    FUZZ_CHECK(well_formed_ehlo(buf_head(&added), buf_size(&added)), "ehlo_add: malformed");
    FUZZ_CHECK(ehlo_has(buf_head(&added), buf_size(&added), kw), "ehlo_add: \"%s\" not there", kw);
    FUZZ_CHECK(count_lines(buf_head(&added), buf_size(&added)) == count_lines(reply.p, reply.n) + 1,
               "ehlo_add: not one line more");
    if (!ehlo_has(reply.p, reply.n, kw) && strcasecmp(kw, "AUTH") != 0) {
        fault_strip_caps(buf_head(&added), buf_size(&added), kw, &back);
        FUZZ_CHECK(same_bytes(&back, reply.p, reply.n), "add then strip \"%s\" differs", kw);
    }
    ehlo_as_one_line(reply.p, reply.n, &one);
    const uint8_t *o = buf_head(&one); /* "250 text\r\n", or "250\r\n" without a text */
    FUZZ_CHECK(count_lines(o, buf_size(&one)) == 1 && !memcmp(o, reply.p, 3) &&
                   (o[3] == ' ' || !memcmp(o + 3, "\r\n", 2)),
               "ehlo_as_one_line: not one line with the code");
    buf_free(&added);
    buf_free(&back);
    buf_free(&one);
}

/* ---- hello memory ------------------------------------------------------------------------ */

static void check_hello(struct field ops)
{
    struct hello_memory m;
    hello_memory_init(&m);
    struct fuzz_in in = {ops.p, ops.n};
    static const char *const lines[] = {"EHLO a.example\r\n", "HELO b.example\r\n", "EHLO\r\n",
                                        "NOOP\r\n", "EHLO \x01\xff x\r\n"};
    static const char *const replies[] = {"250-mx\r\n250-PIPELINING\r\n250 SIZE\r\n", "250 mx\r\n",
                                          "250", "", "250-\r\n250 \r\n"};
    while (in.n) {
        uint8_t op = fuzz_u8(&in), arg = fuzz_u8(&in);
        const char *l = lines[arg % 5], *rep = replies[arg / 5 % 5];
        enum smtp_verb verb = arg & 1 ? SMTP_VERB_HELO : SMTP_VERB_EHLO;
        struct buf out;
        buf_init(&out);
        switch (op % 7) {
        case 0: hello_memory_sent(&m, (const uint8_t *)l, strlen(l)); break;
        case 1:
            hello_memory_replied(&m, arg & 2 ? 250 : 554, (const uint8_t *)rep, strlen(rep));
            break;
        case 2: hello_memory_forget(&m); break;
        case 3: hello_memory_client_tls(&m); break;
        case 4: hello_memory_client_greeted(&m); break;
        case 5:
            FUZZ_CHECK(hello_route(&m, verb) == HELLO_FORWARD || (m.kept && m.client_owes_hello),
                       "answered from memory with nothing kept");
            break;
        case 6: {
            bool ok = hello_memory_answer(&m, verb, &out);
            FUZZ_CHECK(ok == m.kept, "an answer %s a kept reply", ok ? "without" : "despite");
            if (ok && verb == SMTP_VERB_HELO)
                FUZZ_CHECK(count_lines(buf_head(&out), buf_size(&out)) <= 1, "HELO got lines");
            break;
        }
        }
        hello_memory_same_name(&m, (const uint8_t *)l, strlen(l));
        for (const char *c = m.name; *c; c++) FUZZ_CHECK(*c > 0x20 && *c < 0x7f, "name byte");
        buf_free(&out);
    }
    hello_memory_free(&m);
}

/* ---- matching ---------------------------------------------------------------------------- */

static void check_match(const struct fault_rule *rule, struct field ops)
{
    struct fault_set set;
    fault_set_init(&set);
    fault_set_add(&set, rule);
    struct fault_session a, b;
    fault_session_init(&a, &set, 42, 7);
    fault_session_init(&b, &set, 42, 7);
    struct fuzz_in in = {ops.p, ops.n};
    unsigned fired = 0;
    while (in.n) {
        enum fault_stage stage = (enum fault_stage)(fuzz_u8(&in) % FAULT_ANY);
        size_t len;
        const uint8_t *arg = fuzz_bytes(&in, fuzz_u8(&in) % 32, &len);
        const struct fault_rule *x = fault_match(&set, &a, stage, arg, len);
        const struct fault_rule *y = fault_match(&set, &b, stage, arg, len);
        FUZZ_CHECK(x == y, "the same seed fired differently");
        fired += x != NULL;
    }
    FUZZ_CHECK(!rule->nth || fired <= 1, "an nth rule fired %u times in a session", fired);
    fault_session_free(&a);
    fault_session_free(&b);
    fault_set_free(&set);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    struct field f[F_COUNT];
    for (int i = 0; i < F_COUNT; i++) f[i].p = fuzz_until(&in, 0, &f[i].n);
    struct fault_rule rule;
    if (parse_flag(f[F_FLAG], &rule)) check_match(&rule, f[F_MATCH]);
    parse_section(f[F_SECTION]);
    check_glob(f[F_GLOB], f[F_TEXT]);
    char *caps = fuzz_strndup(f[F_CAPS].p, f[F_CAPS].n);
    char *kw = fuzz_strndup(f[F_KEYWORD].p, f[F_KEYWORD].n);
    check_strip(f[F_EHLO], caps);
    check_add(f[F_EHLO], kw);
    check_hello(f[F_HELLO]);
    free(caps);
    free(kw);
    return 0;
}
