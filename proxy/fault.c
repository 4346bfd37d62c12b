/* fault.c - pure fault rules: parse flags and config keys, match commands, strip EHLO
 * capabilities (see fault.h). No I/O, no globals. */
#include "smtptap/fault.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtptap/parse.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
#define NO_POS   SIZE_MAX

static const char *const stage_names[] = {
    [FAULT_GREETING] = "GREETING", [FAULT_EHLO] = "EHLO", [FAULT_HELO] = "HELO",
    [FAULT_MAIL] = "MAIL",         [FAULT_RCPT] = "RCPT", [FAULT_DATA] = "DATA",
    [FAULT_DATA_END] = "DATA-END", [FAULT_BDAT] = "BDAT", [FAULT_AUTH] = "AUTH",
    [FAULT_STARTTLS] = "STARTTLS", [FAULT_RSET] = "RSET", [FAULT_NOOP] = "NOOP",
    [FAULT_QUIT] = "QUIT",         [FAULT_ANY] = "ANY",
};

static const char *const action_names[] = {
    [FAULT_REPLY] = "reply", [FAULT_DELAY] = "delay",       [FAULT_DROP] = "drop",
    [FAULT_RESET] = "reset", [FAULT_STALL] = "stall",       [FAULT_STRIP] = "strip",
    [FAULT_SLOW] = "slow",   [FAULT_TRUNCATE] = "truncate",
};

static const char ACTION_HINT[] =
    "expected one of reply CODE TEXT, delay DURATION, drop, reset, stall, strip CAP[,CAP], "
    "slow RATE, truncate N";
static const char FLAG_HINT[] =
    "expected VERB [GLOB]: ACTION, e.g. \"RCPT *@busy.example: reply 450 4.2.0 Busy\"";
static const char REPLY_HINT[] =
    "expected a code from 200 to 599 and text, e.g. reply 450 4.2.0 Mailbox busy";
static const char STRIP_HINT[] =
    "expected capability keywords separated by commas, e.g. strip STARTTLS,AUTH=PLAIN";

/* What is wrong, where (an offset into the text being parsed, or NO_POS), and a hint that
 * says what would be accepted ("expected ..."). Helpers report offsets relative to the text
 * they were given; callers shift them. */
struct problem {
    char what[192];
    size_t pos;
    char hint[512];
};

/* ---- small text helpers ------------------------------------------------------------------ */

__attribute__((format(printf, 4, 5))) static bool fail(struct problem *pb, size_t pos,
                                                       const char *hint, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pb->what, sizeof pb->what, fmt, ap);
    va_end(ap);
    pb->pos = pos;
    snprintf(pb->hint, sizeof pb->hint, "%s", hint);
    return false;
}

/* Moves a problem's position from a sub-text to the text that contains it at `base`. */
static bool shift(struct problem *pb, size_t base)
{
    if (pb->pos != NO_POS) pb->pos += base;
    return false;
}

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

static size_t skip_space(const char *s, size_t i)
{
    while (is_space(s[i])) i++;
    return i;
}

/* The end of [start, end) without trailing blanks. */
static size_t trim_end(const char *s, size_t start, size_t end)
{
    while (end > start && is_space(s[end - 1])) end--;
    return end;
}

static size_t token_end(const char *s, size_t i)
{
    while (s[i] && !is_space(s[i])) i++;
    return i;
}

static bool same_word(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && strncasecmp(a, b, alen) == 0;
}

/* Index of the name equal (ignoring case) to word, or -1. */
static int lookup(const char *const *names, size_t n, const char *word, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (same_word(names[i], strlen(names[i]), word, len)) return (int)i;
    return -1;
}

static void stage_hint(char *out, size_t size)
{
    size_t len = (size_t)snprintf(out, size, "expected one of");
    for (size_t i = 0; i < NELEM(stage_names) && len < size; i++)
        len += (size_t)snprintf(out + len, size - len, "%s %s", i ? "," : "", stage_names[i]);
}

/* Steps through a comma-separated list; returns false at its end. Items are trimmed. */
static bool next_item(const char **list, const char **item, size_t *len)
{
    const char *p = *list;
    if (!*p) return false;
    while (is_space(*p)) p++;
    const char *end = p + strcspn(p, ",");
    *list = *end ? end + 1 : end;
    while (end > p && is_space(end[-1])) end--;
    *item = p;
    *len = (size_t)(end - p);
    return true;
}

/* ---- names -------------------------------------------------------------------------------- */

const char *fault_stage_name(enum fault_stage s)
{
    return (size_t)s < NELEM(stage_names) ? stage_names[s] : "?";
}

const char *fault_action_name(enum fault_action a)
{
    return (size_t)a < NELEM(action_names) ? action_names[a] : "?";
}

/* ---- rule parts: stage, match, nth, probability ------------------------------------------ */

static bool set_stage(struct fault_rule *r, const char *word, size_t len, struct problem *pb)
{
    char hint[256];
    stage_hint(hint, sizeof hint);
    if (len == 0) return fail(pb, 0, hint, "missing stage");
    int s = lookup(stage_names, NELEM(stage_names), word, len);
    if (s < 0) return fail(pb, 0, hint, "unknown stage \"%.*s\"", (int)(len > 80 ? 80 : len), word);
    r->stage = (enum fault_stage)s;
    r->has_stage = true;
    return true;
}

static bool set_match(struct fault_rule *r, const char *glob, size_t len, struct problem *pb)
{
    if (len >= sizeof r->match)
        return fail(pb, 0, "expected a pattern of at most 255 characters", "pattern too long");
    memcpy(r->match, glob, len);
    r->match[len] = 0;
    return true;
}

static bool set_nth(struct fault_rule *r, const char *v, struct problem *pb)
{
    if (parse_uint(v, 1, UINT64_MAX, &r->nth))
        return fail(pb, 0, "expected a whole number, 1 or more (the Nth matching command)",
                    "bad nth \"%.80s\"", v);
    return true;
}

static bool set_probability(struct fault_rule *r, const char *v, struct problem *pb)
{
    char *end;
    double p = strtod(v, &end);
    if (!*v || *end || !isfinite(p) || p <= 0 || p > 1)
        return fail(pb, 0, "expected a number above 0 and at most 1, e.g. 0.5",
                    "bad probability \"%.80s\"", v);
    r->probability = p;
    return true;
}

/* ---- actions ----------------------------------------------------------------------------- */

/* Writes the reply lines for text, splitting at each literal backslash-n. */
static bool build_reply_lines(struct fault_rule *r, const char *text, struct problem *pb)
{
    size_t len = 0;
    unsigned line = 1;
    for (const char *p = text;; line++) {
        const char *nl = strstr(p, "\\n");
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        if (n == 0)
            return fail(pb, (size_t)(p - text), "expected text on every line of the reply",
                        "empty line %u in the reply text", line);
        int w = snprintf(r->reply + len, sizeof r->reply - len, "%d%c%.*s\r\n", r->reply_code,
                         nl ? '-' : ' ', (int)n, p);
        if (w < 0 || (size_t)w >= sizeof r->reply - len)
            return fail(pb, 0, "expected a reply of at most 2047 bytes", "reply text too long");
        len += (size_t)w;
        if (!nl) return true;
        p = nl + 2;
    }
}

/* "CODE TEXT": a three-digit code from 200 to 599, then one line of text ("\n" splits it). */
static bool parse_reply(struct fault_rule *r, const char *v, struct problem *pb)
{
    size_t code_end = token_end(v, 0);
    if (code_end == 0) return fail(pb, 0, REPLY_HINT, "missing reply code");
    if (code_end != 3 || strspn(v, "0123456789") < 3)
        return fail(pb, 0, REPLY_HINT, "reply code \"%.*s\" is not a three-digit number",
                    (int)(code_end > 80 ? 80 : code_end), v);
    int code = atoi(v);
    if (code < 200 || code > 599)
        return fail(pb, 0, REPLY_HINT, "reply code %d out of range", code);
    size_t text = skip_space(v, code_end);
    if (!v[text]) return fail(pb, text, REPLY_HINT, "missing reply text after %d", code);
    size_t bad = strcspn(v, "\r\n");
    if (v[bad])
        return fail(pb, bad, "expected one line; write \\n (backslash n) to start another line",
                    "reply text contains a %s", v[bad] == '\r' ? "CR" : "LF");
    r->reply_code = code;
    return build_reply_lines(r, v + text, pb) || shift(pb, text);
}

static bool parse_delay(struct fault_rule *r, const char *v, struct problem *pb)
{
    char hint[128];
    const char *expect = parse_duration_ms(v, &r->delay_ms);
    if (!expect) return true;
    snprintf(hint, sizeof hint, "expected %s", expect);
    if (!*v) return fail(pb, 0, hint, "missing duration");
    return fail(pb, 0, hint, "bad duration \"%.80s\"", v);
}

/* One strip item: KEYWORD, or AUTH=MECHANISM. */
static bool check_cap(const char *cap, size_t len, struct problem *pb)
{
    static const char word[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    if (len == 0) return fail(pb, 0, STRIP_HINT, "empty capability");
    size_t kw = strspn(cap, word);
    if (kw > len) kw = len;
    if (kw == len) return true;
    if (kw == 0 || cap[kw] != '=')
        return fail(pb, 0, STRIP_HINT, "bad capability \"%.*s\"", (int)len, cap);
    if (!same_word(cap, kw, "AUTH", 4))
        return fail(pb, 0, "expected KEYWORD or AUTH=MECHANISM; only AUTH lists removable items",
                    "\"%.*s\" names a parameter of %.*s", (int)len, cap, (int)kw, cap);
    size_t mech = strspn(cap + kw + 1, word);
    if (mech == 0 || kw + 1 + mech < len)
        return fail(pb, 0, STRIP_HINT, "bad capability \"%.*s\"", (int)len, cap);
    return true;
}

/* "CAP[,CAP]": stored without blanks, e.g. "STARTTLS,AUTH=PLAIN". */
static bool parse_strip(struct fault_rule *r, const char *v, struct problem *pb)
{
    if (!*v) return fail(pb, 0, STRIP_HINT, "missing capability");
    size_t len = 0;
    const char *list = v, *cap;
    size_t n;
    while (next_item(&list, &cap, &n)) {
        if (!check_cap(cap, n, pb)) return shift(pb, (size_t)(cap - v));
        if (len + n + 2 > sizeof r->strip)
            return fail(pb, 0, "expected at most 255 characters of capabilities",
                        "capability list too long");
        len += (size_t)snprintf(r->strip + len, sizeof r->strip - len, "%s%.*s", len ? "," : "",
                                (int)n, cap);
    }
    if (v[strlen(v) - 1] == ',') return fail(pb, strlen(v), STRIP_HINT, "empty capability");
    return true;
}

/* "10" or "10/s": bytes per second, above 0. */
static bool parse_slow(struct fault_rule *r, const char *v, struct problem *pb)
{
    char num[32];
    size_t n = strlen(v);
    if (n >= 2 && strcasecmp(v + n - 2, "/s") == 0) n -= 2;
    snprintf(num, sizeof num, "%.*s", (int)(n < sizeof num ? n : sizeof num - 1), v);
    if (n >= sizeof num || parse_uint(num, 1, UINT64_MAX, &r->rate_bps))
        return fail(pb, 0, "expected bytes per second above 0, e.g. slow 10 or slow 10/s",
                    "bad rate \"%.80s\"", v);
    return true;
}

static bool parse_truncate(struct fault_rule *r, const char *v, struct problem *pb)
{
    if (parse_uint(v, 0, UINT64_MAX, &r->truncate_bytes))
        return fail(pb, 0, "expected a number of bytes, 0 or more, e.g. truncate 5",
                    "bad byte count \"%.80s\"", v);
    return true;
}

static bool parse_no_argument(struct fault_rule *r, const char *v, struct problem *pb)
{
    if (!*v) return true;
    char hint[64];
    snprintf(hint, sizeof hint, "expected nothing after %s", action_names[r->action]);
    return fail(pb, 0, hint, "unexpected \"%.80s\" after %s", v, action_names[r->action]);
}

static bool (*const action_parsers[])(struct fault_rule *, const char *, struct problem *) = {
    [FAULT_REPLY] = parse_reply,       [FAULT_DELAY] = parse_delay,
    [FAULT_DROP] = parse_no_argument,  [FAULT_RESET] = parse_no_argument,
    [FAULT_STALL] = parse_no_argument, [FAULT_STRIP] = parse_strip,
    [FAULT_SLOW] = parse_slow,         [FAULT_TRUNCATE] = parse_truncate,
};

static void clear_action(struct fault_rule *r)
{
    r->has_action = false;
    r->reply[0] = 0;
    r->reply_code = 0;
    r->delay_ms = r->rate_bps = r->truncate_bytes = 0;
    r->strip[0] = 0;
}

/* "KEYWORD [ARGUMENTS]". On failure r is unchanged. */
static bool parse_action(struct fault_rule *r, const char *s, struct problem *pb)
{
    size_t kw = skip_space(s, 0), kw_end = token_end(s, kw);
    if (kw_end == kw) return fail(pb, kw, ACTION_HINT, "missing action");
    int a = lookup(action_names, NELEM(action_names), s + kw, kw_end - kw);
    if (a < 0)
        return fail(pb, kw, ACTION_HINT, "unknown action \"%.*s\"",
                    (int)(kw_end - kw > 80 ? 80 : kw_end - kw), s + kw);
    size_t arg = skip_space(s, kw_end), arg_end = trim_end(s, arg, strlen(s));
    char value[FAULT_REPLY_MAX];
    if (arg_end - arg >= sizeof value)
        return fail(pb, arg, "expected at most 2047 characters", "action too long");
    snprintf(value, sizeof value, "%.*s", (int)(arg_end - arg), s + arg);
    struct fault_rule tmp = *r;
    clear_action(&tmp);
    tmp.action = (enum fault_action)a;
    if (!action_parsers[a](&tmp, value, pb)) return shift(pb, arg);
    tmp.has_action = true;
    *r = tmp;
    return true;
}

/* ---- whole rules ------------------------------------------------------------------------- */

/* Where each part of a rule was written, for messages (NO_POS in the config file). */
struct rule_positions {
    size_t match, nth, action;
};

/* Refuses stage/action combinations that cannot work. */
static bool check_rule(const struct fault_rule *r, struct problem *pb, struct rule_positions at)
{
    const char *stage = stage_names[r->stage];
    if (r->match[0] && (r->stage == FAULT_GREETING || r->stage == FAULT_DATA_END))
        return fail(pb, at.match, "a pattern needs a command argument, and this stage has none",
                    "a match pattern with stage %s", stage);
    if (r->stage == FAULT_GREETING && r->nth > 1)
        return fail(pb, at.nth, "a session has one greeting, so only nth = 1 can fire",
                    "nth = %llu with stage GREETING", (unsigned long long)r->nth);
    if (r->action == FAULT_STRIP && r->stage != FAULT_EHLO)
        return fail(pb, at.action,
                    "strip edits the capability list, which only the EHLO reply carries",
                    "action strip with stage %s", stage);
    return true;
}

/* How much of a rule's text or a value a message's prefix quotes: at most 100 bytes, cut at
 * a character's start; *more is "..." when cut. A long rule quoted whole would push what is
 * wrong with it out of the caller's message (the command line's holds 400 bytes, the control
 * API's 700). */
static int quote_len(const char *text, const char **more)
{
    size_t n = strlen(text);
    *more = "";
    if (n <= 100) return (int)n;
    for (n = 100; n > 0 && ((unsigned char)text[n] & 0xC0) == 0x80;) n--;
    *more = "...";
    return (int)n;
}

static void report(char *err, size_t size, const char *prefix, const struct problem *pb)
{
    if (!err || !size) return;
    if (pb->pos == NO_POS)
        snprintf(err, size, "%s%s; %s", prefix, pb->what, pb->hint);
    else
        snprintf(err, size, "%s%s at column %zu; %s", prefix, pb->what, pb->pos + 1, pb->hint);
}

/* 'VERB [GLOB]: ACTION'. The first colon after VERB ends the glob. */
static bool parse_flag(struct fault_rule *r, const char *text, struct problem *pb)
{
    size_t verb = skip_space(text, 0), verb_end = verb;
    if (!text[verb]) return fail(pb, verb, FLAG_HINT, "empty rule");
    while (text[verb_end] && !is_space(text[verb_end]) && text[verb_end] != ':') verb_end++;
    if (!set_stage(r, text + verb, verb_end - verb, pb)) return shift(pb, verb);
    const char *colon = strchr(text + verb_end, ':');
    if (!colon) return fail(pb, strlen(text), FLAG_HINT, "missing \":\"");
    size_t glob = skip_space(text, verb_end);
    size_t glob_end = trim_end(text, glob, (size_t)(colon - text));
    if (!set_match(r, text + glob, glob_end - glob, pb)) return shift(pb, glob);
    size_t action = skip_space(text, (size_t)(colon - text) + 1);
    if (!parse_action(r, text + action, pb)) return shift(pb, action);
    return check_rule(r, pb, (struct rule_positions){glob, NO_POS, action});
}

int fault_parse_flag(const char *text, unsigned index, struct fault_rule *out, char *err,
                     size_t err_size)
{
    char name[32], prefix[FAULT_REPLY_MAX + 64];
    struct fault_rule r;
    struct problem pb;
    snprintf(name, sizeof name, "flag %u", index);
    fault_rule_begin(&r, name);
    if (parse_flag(&r, text, &pb)) return *out = r, 0;
    const char *more;
    int n = quote_len(text, &more);
    snprintf(prefix, sizeof prefix, "--fault #%u \"%.*s%s\": ", index, n, text, more);
    report(err, err_size, prefix, &pb);
    return -1;
}

int fault_parse_named(const char *text, const char *name, struct fault_rule *out, char *err,
                      size_t err_size)
{
    char prefix[FAULT_REPLY_MAX + 64];
    struct fault_rule r;
    struct problem pb;
    fault_rule_begin(&r, name);
    if (parse_flag(&r, text, &pb)) return *out = r, 0;
    const char *more;
    int n = quote_len(text, &more);
    snprintf(prefix, sizeof prefix, "rule \"%.*s%s\": ", n, text, more);
    report(err, err_size, prefix, &pb);
    return -1;
}

/* The reply lines of a reply action as they were written: "450 4.2.0 Busy" or, for several
 * lines, "450 first\nsecond" (the code once, lines joined by the two characters \n). */
static void describe_reply(const struct fault_rule *r, struct buf *out)
{
    const char *p = r->reply;
    bool first = true;
    while (*p) {
        const char *end = strstr(p, "\r\n");
        if (!end) end = p + strlen(p);
        const char *text = end - p > 4 ? p + 4 : end; /* after "450 " or "450-" */
        if (first)
            buf_printf(out, "%d%s%.*s", r->reply_code, text < end ? " " : "", (int)(end - text),
                       text);
        else
            buf_printf(out, "\\n%.*s", (int)(end - text), text);
        first = false;
        p = *end ? end + 2 : end;
    }
}

void fault_rule_describe(const struct fault_rule *r, struct buf *out)
{
    buf_printf(out, "%s", r->has_stage ? fault_stage_name(r->stage) : "?");
    if (r->match[0]) buf_printf(out, " %s", r->match);
    buf_printf(out, ": %s", fault_action_name(r->action));
    switch (r->action) {
    case FAULT_REPLY: buf_append_str(out, " "), describe_reply(r, out); break;
    case FAULT_DELAY: {
        char d[32];
        format_duration(r->delay_ms, d, sizeof d);
        buf_printf(out, " %s", d);
        break;
    }
    case FAULT_STRIP: buf_printf(out, " %s", r->strip); break;
    case FAULT_SLOW: buf_printf(out, " %llu/s", (unsigned long long)r->rate_bps); break;
    case FAULT_TRUNCATE: buf_printf(out, " %llu", (unsigned long long)r->truncate_bytes); break;
    default: break;
    }
}

int fault_parse_action(struct fault_rule *r, const char *action, char *err, size_t err_size)
{
    struct problem pb;
    if (parse_action(r, action, &pb)) return 0;
    pb.pos = NO_POS;
    report(err, err_size, "", &pb);
    return -1;
}

void fault_rule_begin(struct fault_rule *r, const char *name)
{
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", name);
    r->probability = 1;
}

static bool set_on_key(struct fault_rule *r, const char *v, struct problem *pb)
{
    return set_stage(r, v, strlen(v), pb);
}

static bool set_match_key(struct fault_rule *r, const char *v, struct problem *pb)
{
    return set_match(r, v, strlen(v), pb);
}

static const struct {
    const char *key;
    bool (*set)(struct fault_rule *, const char *, struct problem *);
} rule_keys[] = {
    {"on", set_on_key},       {"match", set_match_key},
    {"nth", set_nth},         {"probability", set_probability},
    {"action", parse_action},
};

int fault_rule_set(struct fault_rule *r, const char *key, const char *value, char *err,
                   size_t err_size)
{
    char prefix[FAULT_REPLY_MAX + 160];
    struct problem pb;
    for (size_t i = 0; i < NELEM(rule_keys); i++) {
        if (strcmp(rule_keys[i].key, key) != 0) continue;
        if (rule_keys[i].set(r, value, &pb)) return 0;
        const char *more;
        int n = quote_len(value, &more);
        snprintf(prefix, sizeof prefix, "[fault %s] %s = \"%.*s%s\": ", r->name, key, n, value,
                 more);
        pb.pos = NO_POS;
        report(err, err_size, prefix, &pb);
        return -1;
    }
    if (err && err_size)
        snprintf(err, err_size,
                 "[fault %s]: unknown key \"%s\"; expected one of on, match, nth, probability, "
                 "action",
                 r->name, key);
    return -1;
}

int fault_rule_finish(struct fault_rule *r, char *err, size_t err_size)
{
    char prefix[FAULT_NAME_MAX + 16];
    struct problem pb;
    snprintf(prefix, sizeof prefix, "[fault %s]: ", r->name);
    if (!r->has_stage) {
        char hint[256];
        stage_hint(hint, sizeof hint);
        fail(&pb, NO_POS, hint, "missing key \"on\" (the stage)");
    } else if (!r->has_action) {
        fail(&pb, NO_POS, ACTION_HINT, "missing key \"action\"");
    } else if (check_rule(r, &pb, (struct rule_positions){NO_POS, NO_POS, NO_POS})) {
        return 0;
    }
    report(err, err_size, prefix, &pb);
    return -1;
}

/* ---- sets and sessions ------------------------------------------------------------------- */

void fault_set_init(struct fault_set *s)
{
    s->rules = NULL;
    s->count = 0;
}

void fault_set_free(struct fault_set *s)
{
    free(s->rules);
    fault_set_init(s);
}

void fault_set_add(struct fault_set *s, const struct fault_rule *r)
{
    struct fault_rule *rules = realloc(s->rules, (s->count + 1) * sizeof *rules);
    if (!rules) abort(); /* as buf.c: smtptap cannot continue without memory */
    rules[s->count++] = *r;
    s->rules = rules;
}

/* splitmix64's finaliser: a bijection that spreads every input bit over the output. */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

/* A uniform draw in [0, 1) from splitmix64. */
static double draw_unit(uint64_t *state)
{
    *state += 0x9E3779B97F4A7C15u;
    return (double)(mix64(*state) >> 11) * 0x1.0p-53;
}

void fault_session_init(struct fault_session *fs, const struct fault_set *set, uint64_t seed,
                        uint64_t session)
{
    fs->count = set->count;
    fs->matches = set->count ? calloc(set->count, sizeof *fs->matches) : NULL;
    if (set->count && !fs->matches) abort();
    fs->rng = mix64(mix64(seed) ^ session);
}

void fault_session_free(struct fault_session *fs)
{
    free(fs->matches);
    fs->matches = NULL;
    fs->count = 0;
}

/* ---- matching ---------------------------------------------------------------------------- */

bool fault_glob(const char *pattern, const uint8_t *text, size_t len)
{
    size_t p = 0, t = 0, star_p = 0, star_t = 0;
    bool star = false;
    while (t < len) {
        if (pattern[p] == '*') {
            star = true, star_p = ++p, star_t = t;
        } else if (pattern[p] &&
                   (pattern[p] == '?' || lower((unsigned char)pattern[p]) == lower(text[t]))) {
            p++, t++;
        } else if (star) {
            p = star_p, t = ++star_t; /* let the last star swallow one more byte */
        } else {
            return false;
        }
    }
    while (pattern[p] == '*') p++;
    return pattern[p] == 0;
}

static bool stage_applies(enum fault_stage rule, enum fault_stage command)
{
    if (rule == FAULT_ANY) return command != FAULT_GREETING && command != FAULT_DATA_END;
    return rule == command;
}

/* The part of the argument a glob sees: blanks and the line end trimmed; for MAIL and RCPT,
 * the address inside <...> when there is one. */
static const uint8_t *match_subject(enum fault_stage stage, const uint8_t *arg, size_t *len)
{
    size_t n = *len;
    while (n && (arg[0] == ' ' || arg[0] == '\t')) arg++, n--;
    while (n && (arg[n - 1] == '\r' || arg[n - 1] == '\n' || is_space((char)arg[n - 1]))) n--;
    bool address = n && (stage == FAULT_MAIL || stage == FAULT_RCPT);
    const uint8_t *open = address ? memchr(arg, '<', n) : NULL;
    const uint8_t *close = open ? memchr(open, '>', n - (size_t)(open - arg)) : NULL;
    if (close) arg = open + 1, n = (size_t)(close - open) - 1;
    *len = n;
    return arg;
}

static bool rule_fires(const struct fault_rule *r, uint64_t matches, uint64_t *rng)
{
    if (r->nth && matches != r->nth) return false;
    return r->probability >= 1 || draw_unit(rng) < r->probability;
}

const struct fault_rule *fault_match(const struct fault_set *set, struct fault_session *fs,
                                     enum fault_stage stage, const uint8_t *arg, size_t arg_len)
{
    const struct fault_rule *fired = NULL;
    const uint8_t *subject = match_subject(stage, arg, &arg_len);
    size_t n = set->count < fs->count ? set->count : fs->count;
    for (size_t i = 0; i < n; i++) {
        const struct fault_rule *r = &set->rules[i];
        if (!stage_applies(r->stage, stage)) continue;
        if (r->match[0] && !fault_glob(r->match, subject, arg_len)) continue;
        fs->matches[i]++;
        if (!fired && rule_fires(r, fs->matches[i], &fs->rng)) fired = r;
    }
    return fired;
}

/* ---- EHLO capability stripping ----------------------------------------------------------- */

/* One reply line: `len` bytes of content, then `term` bytes of line end (CRLF, LF or none). */
struct reply_line {
    const uint8_t *p;
    size_t len, term;
};

/* Reads the line at off; returns the offset of the next one. */
static size_t next_line(const uint8_t *b, size_t len, size_t off, struct reply_line *l)
{
    const uint8_t *lf = memchr(b + off, '\n', len - off);
    size_t end = lf ? (size_t)(lf - b) + 1 : len, body = end;
    if (lf) body--;
    if (lf && body > off && b[body - 1] == '\r') body--;
    *l = (struct reply_line){b + off, body - off, end - body};
    return end;
}

static bool has_code(const struct reply_line *l)
{
    for (size_t i = 0; i < 3; i++)
        if (i >= l->len || l->p[i] < '0' || l->p[i] > '9') return false;
    return true;
}

/* The text after "250-" or "250 " (or after a bare "250"). */
static const char *line_text(const struct reply_line *l, size_t *len)
{
    size_t skip = l->len >= 4 && (l->p[3] == '-' || l->p[3] == ' ') ? 4 : 3;
    *len = l->len - skip;
    return (const char *)l->p + skip;
}

/* Is one of caps exactly KEY (want_param false) or KEY=PARAM (want_param true)? */
static bool caps_name(const char *caps, const char *key, size_t key_len, const char *param,
                      size_t param_len, bool want_param)
{
    const char *cap;
    size_t n;
    while (next_item(&caps, &cap, &n)) {
        const char *eq = memchr(cap, '=', n);
        size_t kn = eq ? (size_t)(eq - cap) : n;
        if (!same_word(cap, kn, key, key_len) || !eq != !want_param) continue;
        if (!want_param || same_word(eq + 1, n - kn - 1, param, param_len)) return true;
    }
    return false;
}

struct line_fate {
    bool keep, edited; /* edited: the kept text is in the scratch buffer */
    unsigned removed;
};

/* Removes KEY=PARAM items (e.g. AUTH=PLAIN) from "KEY PARAM PARAM" or "KEY=PARAM PARAM";
 * the first item left keeps the separator the server wrote after KEY. */
static struct line_fate strip_params(const char *text, size_t len, size_t kw, const char *caps,
                                     struct buf *kept)
{
    struct line_fate f = {true, false, 0};
    size_t i = kw, left = 0;
    buf_append(kept, text, kw);
    while (i < len) {
        size_t start = i + 1, end = start;
        while (end < len && text[end] != ' ') end++;
        if (end == start) {
            i = end;
            continue;
        }
        if (caps_name(caps, text, kw, text + start, end - start, true)) {
            f.removed++;
        } else {
            buf_append(kept, left ? " " : text + kw, 1);
            buf_append(kept, text + start, end - start);
            left++;
        }
        i = end;
    }
    f.keep = left > 0 || f.removed == 0;
    f.edited = f.removed > 0;
    return f;
}

/* Decides what happens to line `index`; the first (the server's name) is always kept. */
static struct line_fate strip_line(size_t index, const struct reply_line *l, const char *caps,
                                   struct buf *kept)
{
    struct line_fate f = {true, false, 0};
    buf_reset(kept);
    if (index == 0 || !has_code(l)) return f;
    size_t len, kw = 0;
    const char *text = line_text(l, &len);
    while (kw < len && text[kw] != ' ' && text[kw] != '=') kw++;
    if (caps_name(caps, text, kw, NULL, 0, false)) return (struct line_fate){false, false, 1};
    return strip_params(text, len, kw, caps, kept);
}

static void write_line(struct buf *out, const struct reply_line *l, const struct buf *edited,
                       char marker)
{
    if (!has_code(l)) {
        buf_append(out, l->p, l->len + l->term);
        return;
    }
    size_t len;
    const char *text = line_text(l, &len);
    buf_append(out, l->p, 3);
    buf_append(out, &marker, 1);
    if (edited)
        buf_append(out, buf_head(edited), buf_size(edited));
    else
        buf_append(out, text, len);
    buf_append(out, l->p + l->len, l->term);
}

/* Two passes over the lines: the first finds the last line kept (it gets "250 ") and counts
 * the removals, the second writes. */
unsigned fault_strip_caps(const uint8_t *reply, size_t len, const char *caps, struct buf *out)
{
    struct buf kept;
    struct reply_line l;
    size_t last_kept = 0, i = 0;
    unsigned removed = 0;
    buf_init(&kept);
    for (size_t off = 0; off < len; i++) {
        off = next_line(reply, len, off, &l);
        struct line_fate f = strip_line(i, &l, caps, &kept);
        if (f.keep) last_kept = i;
        removed += f.removed;
    }
    if (removed == 0) buf_append(out, reply, len);
    for (size_t off = 0, j = 0; removed && off < len; j++) {
        off = next_line(reply, len, off, &l);
        struct line_fate f = strip_line(j, &l, caps, &kept);
        if (f.keep) write_line(out, &l, f.edited ? &kept : NULL, j == last_kept ? ' ' : '-');
    }
    buf_free(&kept);
    return removed;
}
