/* fuzz_control_request.c - libFuzzer target for the control API's requests (control_request.h)
 * and the fault rule syntax it shares with the command line (fault.h).
 *
 * Input: "METHOD TARGET" (up to the first NUL byte), then a request body (the rest); without a
 * NUL the whole input is both. Oracles:
 *   - route parsing (method and target in exact-size copies) is deterministic and its result
 *     holds together: strings NUL-terminated, at most 32 session numbers, each above 0; a
 *     fault name without control characters, a session number above 0 and a known format
 *     where the route has them; method_ok exactly when the method is one the route allows;
 *   - a body parsed as a rule gives a complete rule; when it says nothing the flag syntax
 *     cannot say (nth, probability, a glob with ':' or blanks at its ends),
 *     fault_rule_describe() of it parsed again with fault_parse_named gives the same rule;
 *     as the keys of a [fault NAME] section in JSON (on, match, nth, probability and the
 *     described action) it is the same rule;
 *   - a text body and the same line as JSON {"rule": ...} give the same rule or the same
 *     refusal, and that refusal is the command line's (fault_parse_flag) after its prefix
 *     (made UTF-8 as the API makes it);
 *     a rule the text accepts the command line accepts the same;
 *   - what the API would send back is UTF-8 (JSON carries nothing else): a refusal (also cut
 *     to the API's 700 bytes), an accepted rule's name and description; a refusal fits the
 *     API's 700 bytes (a long rule is quoted short, its reason whole). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "smtptap/buf.h"
#include "smtptap/control_request.h"
#include "smtptap/fault.h"
#include "smtptap/utf8.h"

/* ---- routes ------------------------------------------------------------------------------- */

static bool is_word(const char *s, size_t len, const char *word)
{
    return len == strlen(word) && memcmp(s, word, len) == 0;
}

/* Is method one of allow's ("GET, POST"), HEAD counting as GET? */
static bool allowed(const char *allow, const char *method, size_t mlen)
{
    for (const char *p = allow; *p;) {
        size_t n = strcspn(p, ",");
        if ((n == mlen && memcmp(p, method, mlen) == 0) ||
            (n == 3 && !memcmp(p, "GET", 3) && is_word(method, mlen, "HEAD")))
            return true;
        p += n;
        while (*p == ',' || *p == ' ') p++;
    }
    return false;
}

static void same_request(const struct control_request *a, const struct control_request *b)
{
    FUZZ_CHECK(a->route == b->route && a->method_ok == b->method_ok && a->session == b->session &&
                   a->nsessions == b->nsessions && a->message == b->message &&
                   a->content == b->content && a->limit == b->limit &&
                   !strcmp(a->allow, b->allow) && !strcmp(a->format, b->format) &&
                   !strcmp(a->name, b->name) && !strcmp(a->token, b->token) &&
                   (a->bad == NULL) == (b->bad == NULL) && (!a->bad || !strcmp(a->bad, b->bad)),
               "two parses of one request differ");
    for (size_t i = 0; i < a->nsessions; i++)
        FUZZ_CHECK(a->sessions[i] == b->sessions[i], "session filter %zu differs", i);
}

static void check_route(const uint8_t *line, size_t n)
{
    const uint8_t *sp = memchr(line, ' ', n);
    size_t mlen = sp ? (size_t)(sp - line) : 0, tlen = sp ? n - mlen - 1 : n;
    char *method = malloc(mlen ? mlen : 1), *target = malloc(tlen ? tlen : 1);
    if (!method || !target) abort();
    memcpy(method, line, mlen);
    memcpy(target, sp ? sp + 1 : line, tlen);
    struct control_request a, b;
    memset(&a, 0xa5, sizeof a);
    memset(&b, 0x5a, sizeof b);
    control_request_parse(method, mlen, target, tlen, &a);
    control_request_parse(method, mlen, target, tlen, &b);
    same_request(&a, &b);
    FUZZ_CHECK(a.allow && memchr(a.name, 0, sizeof a.name) && memchr(a.token, 0, sizeof a.token) &&
                   memchr(a.format, 0, sizeof a.format),
               "a string of the request is not terminated");
    FUZZ_CHECK(a.nsessions <= CONTROL_MAX_FILTER, "%zu session numbers", a.nsessions);
    for (size_t i = 0; i < a.nsessions; i++) FUZZ_CHECK(a.sessions[i] > 0, "session number 0");
    for (const char *c = a.token; *c; c++)
        FUZZ_CHECK((unsigned char)*c >= 0x20 && *c != 0x7f, "a control character in the token");
    switch (a.route) {
    case ROUTE_FAULT:
        FUZZ_CHECK(a.name[0], "ROUTE_FAULT without a name");
        for (const char *c = a.name; *c; c++)
            FUZZ_CHECK((unsigned char)*c >= 0x20 && *c != 0x7f, "a control character in a name");
        break;
    case ROUTE_CAPTURE:
        FUZZ_CHECK(!strcmp(a.format, "txt") || !strcmp(a.format, "jsonl") ||
                       !strcmp(a.format, "pcap") || !strcmp(a.format, "eml"),
                   "capture format \"%s\"", a.format);
        /* fall through */
    case ROUTE_SESSION: FUZZ_CHECK(a.session > 0, "session route with session 0"); break;
    default: break;
    }
    if (a.route != ROUTE_NONE)
        FUZZ_CHECK(a.method_ok == allowed(a.allow, method, mlen),
                   "method_ok %d for \"%.*s\" with Allow: %s", a.method_ok, (int)mlen, method,
                   a.allow);
    free(method);
    free(target);
}

/* ---- rules -------------------------------------------------------------------------------- */

static void check_complete(const struct fault_rule *r)
{
    FUZZ_CHECK(r->has_stage && r->has_action, "a rule without stage or action was accepted");
    FUZZ_CHECK(memchr(r->name, 0, sizeof r->name) && memchr(r->match, 0, sizeof r->match) &&
                   memchr(r->reply, 0, sizeof r->reply) && memchr(r->strip, 0, sizeof r->strip),
               "a rule's string is not NUL-terminated");
    FUZZ_CHECK(r->probability > 0 && r->probability <= 1, "probability %g", r->probability);
    if (r->action == FAULT_REPLY)
        FUZZ_CHECK(r->reply_code >= 200 && r->reply_code <= 599 && r->reply[0], "reply %d \"%s\"",
                   r->reply_code, r->reply);
}

/* What the two rules do, names aside. */
static bool same_rule(const struct fault_rule *a, const struct fault_rule *b)
{
    return a->stage == b->stage && a->has_stage == b->has_stage && !strcmp(a->match, b->match) &&
           a->action == b->action && a->has_action == b->has_action &&
           !strcmp(a->reply, b->reply) && a->reply_code == b->reply_code &&
           a->delay_ms == b->delay_ms && !strcmp(a->strip, b->strip) &&
           a->rate_bps == b->rate_bps && a->truncate_bytes == b->truncate_bytes &&
           a->nth == b->nth && a->probability == b->probability;
}

static void show_rule(const char *label, const struct fault_rule *r)
{
    fprintf(stderr,
            "  %s: name \"%s\" stage %d/%d match \"%s\" action %d/%d reply %d \"%s\" delay %llu "
            "strip \"%s\" rate %llu truncate %llu nth %llu probability %g\n",
            label, r->name, r->stage, r->has_stage, r->match, r->action, r->has_action,
            r->reply_code, r->reply, (unsigned long long)r->delay_ms, r->strip,
            (unsigned long long)r->rate_bps, (unsigned long long)r->truncate_bytes,
            (unsigned long long)r->nth, r->probability);
}

/* Can the flag syntax say this rule? */
static bool describable(const struct fault_rule *r)
{
    size_t n = strlen(r->match);
    return r->nth == 0 && r->probability == 1 && !strchr(r->match, ':') &&
           (n == 0 || (r->match[0] != ' ' && r->match[0] != '\t' && r->match[n - 1] != ' ' &&
                       r->match[n - 1] != '\t'));
}

static void check_describe(const struct fault_rule *r)
{
    if (!describable(r)) return;
    struct buf d;
    buf_init(&d);
    fault_rule_describe(r, &d);
    char *text = fuzz_strndup(buf_head(&d), buf_size(&d)), err[4096] = "";
    struct fault_rule again;
    if (fault_parse_named(text, "again", &again, err, sizeof err) != 0) {
        show_rule("rule", r);
        fuzz_fail("its description \"%s\" is refused: %s", text, err);
    }
    if (!same_rule(r, &again)) {
        show_rule("rule", r);
        show_rule("again", &again);
        fuzz_fail("its description \"%s\" is another rule", text);
    }
    FUZZ_CHECK(!strcmp(again.name, "again"), "parsed again as \"%s\"", again.name);
    free(text);
    buf_free(&d);
}

/* A byte that starts no whole UTF-8 character becomes '?'. */
static void utf8_clean(char *s)
{
    for (size_t i = 0, n = strlen(s); i < n;) {
        uint32_t cp;
        size_t k = (uint8_t)s[i] < 0x80 ? 1 : utf8_sequence((const uint8_t *)s + i, n - i, &cp);
        if (k == 0) s[i] = '?', k = 1;
        i += k;
    }
}

/* The rule as the keys of a [fault NAME] section in JSON (its action as described) parses
 * to the same rule, nth and probability included. */
static void check_as_keys(const struct fault_rule *r)
{
    struct fault_rule bare = *r;
    bare.match[0] = 0;
    struct buf d;
    buf_init(&d);
    fault_rule_describe(&bare, &d);
    buf_append(&d, "", 1);
    const char *action = strstr((const char *)buf_head(&d), ": ");
    FUZZ_CHECK(action, "a description without \": \": %s", (const char *)buf_head(&d));
    json_t *o = json_pack("{s:s, s:s, s:s}", "on", fault_stage_name(r->stage), "match", r->match,
                          "action", action + 2);
    if (!o) goto out; /* a glob that is not UTF-8 (from no body: they are UTF-8) */
    if (r->nth) json_object_set_new(o, "nth", json_integer((json_int_t)r->nth));
    if (r->probability < 1) json_object_set_new(o, "probability", json_real(r->probability));
    char *json = json_dumps(o, 0);
    struct fault_rule k;
    char err[4096] = "";
    if (control_fault_from_body((const uint8_t *)json, strlen(json), &k, err, sizeof err) != 0) {
        show_rule("rule", r);
        fuzz_fail("as keys %s it is refused: %s", json, err);
    }
    if (!same_rule(r, &k)) {
        show_rule("rule", r);
        show_rule("keys", &k);
        fuzz_fail("as keys %s it is another rule", json);
    }
    free(json);
    json_decref(o);
out:
    buf_free(&d);
}

/* The line a text body holds: without the blanks and line ends before it and the line ends
 * after it; NULL when it is no line (JSON, empty, a NUL or another line end inside). */
static char *text_line(const uint8_t *b, size_t n)
{
    size_t start = 0, end = n;
    while (start < n &&
           (b[start] == ' ' || b[start] == '\t' || b[start] == '\r' || b[start] == '\n'))
        start++;
    while (end > start && (b[end - 1] == '\r' || b[end - 1] == '\n')) end--;
    if (start == end || b[start] == '{' || memchr(b + start, 0, end - start) ||
        memchr(b + start, '\r', end - start) || memchr(b + start, '\n', end - start))
        return NULL;
    return fuzz_strndup(b + start, end - start);
}

static void check_text_as_json(const uint8_t *body, size_t n, int rc, const struct fault_rule *r,
                               const char *err)
{
    char *line = text_line(body, n);
    if (!line) return;
    size_t len = strlen(line);
    /* the text body's own limit refuses longer lines before the rule is read */
    if (len >= FAULT_REPLY_MAX + FAULT_GLOB_MAX + 64) goto out;
    json_t *s = json_stringn(line, len); /* NULL: not UTF-8, JSON cannot carry it */
    if (!s) goto out;
    json_t *o = json_object();
    json_object_set_new(o, "rule", s);
    char *json = json_dumps(o, 0);
    struct fault_rule jr;
    char jerr[4096] = "";
    int jrc = control_fault_from_body((const uint8_t *)json, strlen(json), &jr, jerr, sizeof jerr);
    if (jrc != rc) {
        fuzz_dump("line", (const uint8_t *)line, len);
        fuzz_fail("as text %d (%s), as JSON %d (%s)", rc, rc ? err : "", jrc, jrc ? jerr : "");
    }
    if (rc == 0) {
        if (!same_rule(r, &jr) || strcmp(r->name, jr.name) != 0) {
            show_rule("text", r);
            show_rule("json", &jr);
            fuzz_fail("a rule as text and as JSON differ");
        }
    } else {
        FUZZ_CHECK(!strcmp(err, jerr), "refused as text with \"%s\", as JSON with \"%s\"", err,
                   jerr);
    }
    /* the command line's words (its prefix is longer: both must hold the whole text) */
    if (len < 1500) {
        struct fault_rule fr;
        char ferr[4096] = "", fprefix[1600], aprefix[1600];
        int frc = fault_parse_flag(line, 1, &fr, ferr, sizeof ferr);
        FUZZ_CHECK(frc == rc, "the command line says %d, the API %d", frc, rc);
        if (rc == 0) {
            FUZZ_CHECK(same_rule(r, &fr), "the command line's rule differs");
        } else {
            utf8_clean(ferr); /* as the API makes its refusals */
            /* both quote at most 100 bytes, cut at a character's start */
            int q = (int)(len > 100 ? 100 : len);
            while (q > 0 && len > 100 && ((uint8_t)line[q] & 0xc0) == 0x80) q--;
            const char *more = len > 100 ? "..." : "";
            snprintf(fprefix, sizeof fprefix, "--fault #1 \"%.*s%s\": ", q, line, more);
            snprintf(aprefix, sizeof aprefix, "rule \"%.*s%s\": ", q, line, more);
            FUZZ_CHECK(!strncmp(ferr, fprefix, strlen(fprefix)) &&
                           !strncmp(err, aprefix, strlen(aprefix)),
                       "a refusal without its prefix: \"%s\" / \"%s\"", ferr, err);
            FUZZ_CHECK(!strcmp(ferr + strlen(fprefix), err + strlen(aprefix)),
                       "the API says \"%s\", the command line \"%s\"", err, ferr);
        }
    }
    free(json);
    json_decref(o);
out:
    free(line);
}

/* The API sends what it says as JSON strings: they must be UTF-8 (jansson refuses others). */
static void check_utf8(const char *what, const char *s)
{
    json_t *j = json_string(s);
    if (!j) {
        fuzz_dump(what, (const uint8_t *)s, strlen(s));
        fuzz_fail("%s is not UTF-8: JSON cannot carry it", what);
    }
    json_decref(j);
}

static void check_body(const uint8_t *body, size_t n)
{
    struct fault_rule r;
    char err[4096], small[700]; /* the API's size */
    memset(err, 'x', sizeof err);
    int rc = control_fault_from_body(body, n, &r, err, sizeof err);
    FUZZ_CHECK(rc == 0 || rc == -1, "control_fault_from_body returned %d", rc);
    if (rc == 0) {
        check_complete(&r);
        check_describe(&r);
        check_as_keys(&r);
        struct buf d;
        buf_init(&d);
        fault_rule_describe(&r, &d);
        buf_append(&d, "", 1);
        check_utf8("the rule's description", (const char *)buf_head(&d));
        check_utf8("the rule's name", r.name);
        buf_free(&d);
    } else {
        FUZZ_CHECK(memchr(err, 0, sizeof err) && err[0], "an empty or unterminated refusal");
        check_utf8("the refusal", err);
        struct fault_rule r2;
        FUZZ_CHECK(control_fault_from_body(body, n, &r2, small, sizeof small) == -1,
                   "refused, then accepted");
        check_utf8("the refusal in 700 bytes", small);
        FUZZ_CHECK(strlen(small) < sizeof small - 1,
                   "the refusal does not fit the API's 700 bytes (what is wrong is cut off): %s",
                   small);
    }
    check_text_as_json(body, n, rc, &r, err);
}

/* The header parsers see the body's bytes too: a cookie found lies inside the header, after
 * "NAME=", and ends at a ';' or the end; the answers do not change when asked again; a
 * Last-Event-ID is read as a reference reads it. */
static void check_headers(const uint8_t *data, size_t size)
{
    const char *h = (const char *)data, *v = NULL;
    size_t n = 0;
    bool found = control_cookie_value(h, size, "smtptap_token", &v, &n);
    if (found) {
        if (v < h + 14 || v + n > h + size || memcmp(v - 14, "smtptap_token=", 14) != 0) abort();
        if (v + n < h + size && v[n] != ';') abort();
        if (memchr(v, ';', n)) abort();
    }
    const char *v2 = NULL;
    size_t n2 = 0;
    if (control_cookie_value(h, size, "smtptap_token", &v2, &n2) != found ||
        (found && (v2 != v || n2 != n)))
        abort();
    bool local = control_host_is_local_name(h, size);
    if (control_host_is_local_name(h, size) != local) abort();
    /* Last-Event-ID: accepted exactly when it is 1-19 digits, and then it is their value
     * (checked against strtoull on a NUL-terminated copy) */
    uint64_t id = 0;
    bool ok = control_last_event_id(h, size, &id);
    bool digits = size >= 1 && size <= 19;
    for (size_t i = 0; digits && i < size; i++) digits = h[i] >= '0' && h[i] <= '9';
    if (ok != digits) abort();
    if (ok) {
        char copy[20];
        memcpy(copy, h, size);
        copy[size] = 0;
        if (strtoull(copy, NULL, 10) != id) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_headers(data, size);
    struct fuzz_in in = {data, size};
    size_t line_len;
    const uint8_t *line = fuzz_until(&in, 0, &line_len);
    check_route(line, line_len);
    const uint8_t *body = in.n || line_len < size ? in.p : data;
    size_t body_len = in.n || line_len < size ? in.n : size;
    /* an exact-size copy, as h2o's entity is not NUL-terminated */
    uint8_t *copy = malloc(body_len ? body_len : 1);
    if (!copy) abort();
    memcpy(copy, body, body_len);
    check_body(copy, body_len);
    free(copy);
    return 0;
}
