/* control_request.c - routes and fault rule bodies of the control API (control_request.h). */
#include "smtptap/control_request.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "smtptap/utf8.h"

enum { HOST_NAME_TEXT = 300 };

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decodes in[0..len) into out (size bytes with its NUL); '+' is a space only in a
 * query (form encoding), a path keeps it (RFC 3986). False when it does not fit, an escape is
 * broken, or it decodes to a NUL or a control character. */
static bool decode(const char *in, size_t len, char *out, size_t size, bool plus_is_space)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)in[i];
        if (c == '%') {
            if (i + 2 >= len) return false;
            int hi = hex_value(in[i + 1]), lo = hex_value(in[i + 2]);
            if (hi < 0 || lo < 0) return false;
            c = hi * 16 + lo;
            i += 2;
        } else if (c == '+' && plus_is_space) {
            c = ' ';
        }
        if (c < 0x20 || c == 0x7f) return false;
        if (n + 1 >= size) return false;
        out[n++] = (char)c;
    }
    out[n] = 0;
    return true;
}

static bool parse_number(const char *s, size_t len, uint64_t *out)
{
    if (len == 0 || len > 19) return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return true;
}

static bool is(const char *s, size_t len, const char *word)
{
    return len == strlen(word) && memcmp(s, word, len) == 0;
}

static void parse_sessions(const char *raw, size_t raw_len, struct control_request *out)
{
    static const char expected[] = "session: expected session numbers, e.g. session=3 or "
                                   "session=3,4";
    char v[1024]; /* percent-decoded: URL encoders write "3,4" as "3%2C4" */
    if (!decode(raw, raw_len, v, sizeof v, true)) {
        out->bad = expected;
        return;
    }
    size_t start = 0, len = strlen(v);
    for (size_t i = 0; i <= len; i++) {
        if (i < len && v[i] != ',') continue;
        uint64_t n;
        if (!parse_number(v + start, i - start, &n) || n == 0) {
            out->bad = expected;
            return;
        }
        if (out->nsessions == CONTROL_MAX_FILTER) {
            out->bad = "session: at most 32 session numbers";
            return;
        }
        out->sessions[out->nsessions++] = n;
        start = i + 1;
    }
}

static void parse_query(const char *q, size_t len, struct control_request *out)
{
    size_t start = 0;
    for (size_t i = 0; i <= len && !out->bad; i++) {
        if (i < len && q[i] != '&') continue;
        const char *item = q + start;
        size_t n = i - start;
        start = i + 1;
        const char *eq = memchr(item, '=', n);
        if (!eq) continue;
        size_t klen = (size_t)(eq - item), vlen = n - klen - 1;
        const char *v = eq + 1;
        if (is(item, klen, "session")) {
            parse_sessions(v, vlen, out);
        } else if (is(item, klen, "message")) {
            if (!parse_number(v, vlen, &out->message) || out->message == 0)
                out->bad = "message: expected a message number from 1";
        } else if (is(item, klen, "limit")) {
            if (!parse_number(v, vlen, &out->limit) || out->limit == 0)
                out->bad = "limit: expected a number of sessions from 1";
        } else if (is(item, klen, "view")) {
            if (is(v, vlen, "sessions"))
                out->summaries = true;
            else if (!is(v, vlen, "events"))
                out->bad = "view: expected events (every event, the default) or sessions (a "
                           "summary when a session starts, changes, ends)";
        } else if (is(item, klen, "content")) {
            if (is(v, vlen, "1") || is(v, vlen, "yes") || is(v, vlen, "true"))
                out->content = true;
            else if (is(v, vlen, "0") || is(v, vlen, "no") || is(v, vlen, "false"))
                out->content = false;
            else
                out->bad = "content: expected 1 (message lines too) or 0";
        } else if (is(item, klen, "access_token")) {
            if (!decode(v, vlen, out->token, sizeof out->token, true)) out->token[0] = 0;
        }
    }
}

/* Sets the route and whether the method fits it. */
static void route(struct control_request *out, enum control_route r, const char *allow,
                  const char *method, size_t mlen)
{
    out->route = r;
    out->allow = allow;
    /* HEAD is answered as GET by h2o's HTTP/1 code */
    bool get = is(method, mlen, "GET") || is(method, mlen, "HEAD");
    if (strcmp(allow, "GET") == 0)
        out->method_ok = get;
    else if (strcmp(allow, "GET, POST") == 0)
        out->method_ok = get || is(method, mlen, "POST");
    else if (strcmp(allow, "GET, DELETE") == 0)
        out->method_ok = get || is(method, mlen, "DELETE");
    else
        out->method_ok = is(method, mlen, allow);
}

static const char *const formats[] = {"txt", "jsonl", "pcap", "eml"};

void control_request_parse(const char *method, size_t mlen, const char *target, size_t tlen,
                           struct control_request *out)
{
    memset(out, 0, sizeof *out);
    out->method_ok = true;
    out->allow = "GET";
    const char *q = memchr(target, '?', tlen);
    size_t plen = q ? (size_t)(q - target) : tlen;
    if (q) parse_query(q + 1, tlen - plen - 1, out);
    const char *p = target;
    static const char api[] = "/api/";
    if (plen < sizeof api - 1 || memcmp(p, api, sizeof api - 1) != 0) {
        route(out, ROUTE_ASSET, "GET", method, mlen);
        return;
    }
    p += sizeof api - 1;
    plen -= sizeof api - 1;
    if (is(p, plen, "health")) return route(out, ROUTE_HEALTH, "GET", method, mlen);
    if (is(p, plen, "stats")) return route(out, ROUTE_STATS, "GET", method, mlen);
    if (is(p, plen, "events")) return route(out, ROUTE_EVENTS, "GET", method, mlen);
    if (is(p, plen, "sessions")) return route(out, ROUTE_SESSIONS, "GET", method, mlen);
    if (is(p, plen, "faults")) return route(out, ROUTE_FAULTS, "GET, POST", method, mlen);
    if (is(p, plen, "faults/reset")) return route(out, ROUTE_FAULTS_RESET, "POST", method, mlen);
    static const char faults[] = "faults/";
    if (plen > sizeof faults - 1 && memcmp(p, faults, sizeof faults - 1) == 0) {
        const char *name = p + sizeof faults - 1;
        size_t nlen = plen - (sizeof faults - 1);
        if (memchr(name, '/', nlen) || !decode(name, nlen, out->name, sizeof out->name, false))
            return;
        return route(out, ROUTE_FAULT, "GET, DELETE", method, mlen);
    }
    static const char sessions[] = "sessions/";
    if (plen <= sizeof sessions - 1 || memcmp(p, sessions, sizeof sessions - 1) != 0) return;
    p += sizeof sessions - 1;
    plen -= sizeof sessions - 1;
    const char *slash = memchr(p, '/', plen);
    size_t idlen = slash ? (size_t)(slash - p) : plen;
    if (!parse_number(p, idlen, &out->session) || out->session == 0) return;
    if (!slash) return route(out, ROUTE_SESSION, "GET", method, mlen);
    const char *rest = slash + 1;
    size_t rlen = plen - idlen - 1;
    static const char capture[] = "capture.";
    if (rlen <= sizeof capture - 1 || memcmp(rest, capture, sizeof capture - 1) != 0) return;
    rest += sizeof capture - 1;
    rlen -= sizeof capture - 1;
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
        if (is(rest, rlen, formats[i])) {
            strcpy(out->format, formats[i]);
            return route(out, ROUTE_CAPTURE, "GET", method, mlen);
        }
}

/* ---- headers ------------------------------------------------------------------------------ */

bool control_cookie_value(const char *header, size_t len, const char *name, const char **value,
                          size_t *value_len)
{
    const char *p = header, *end = header + len;
    size_t n = strlen(name);
    while (p < end) {
        while (p < end && (*p == ' ' || *p == ';')) p++;
        const char *next = memchr(p, ';', (size_t)(end - p));
        if (!next) next = end;
        if ((size_t)(next - p) > n && memcmp(p, name, n) == 0 && p[n] == '=') {
            *value = p + n + 1;
            *value_len = (size_t)(next - p) - n - 1;
            return true;
        }
        p = next;
    }
    return false;
}

bool control_host_is_local_name(const char *host, size_t len)
{
    char name[HOST_NAME_TEXT];
    if (len >= sizeof name) return false;
    memcpy(name, host, len);
    name[len] = 0;
    char *bare = name;
    if (bare[0] == '[') { /* [v6] or [v6]:port */
        bare++;
        char *close = strchr(bare, ']');
        if (!close || (close[1] && close[1] != ':')) return false;
        *close = 0;
        struct in6_addr a6;
        return inet_pton(AF_INET6, bare, &a6) == 1;
    }
    char *colon = strchr(name, ':');
    if (colon) *colon = 0;
    struct in_addr a4;
    return inet_pton(AF_INET, bare, &a4) == 1 || strcasecmp(bare, "localhost") == 0;
}

/* ---- fault rules from a body ------------------------------------------------------------ */

static const char *const section_keys[] = {"on", "match", "nth", "probability", "action"};

/* A JSON value as the text a configuration file would hold: a string as it is (its length
 * is the key's to judge, as in the file), a number written in num; NULL for other values. */
static const char *value_text(const json_t *v, char *num, size_t size)
{
    if (json_is_string(v))
        return memchr(json_string_value(v), 0, json_string_length(v)) ? NULL : json_string_value(v);
    if (json_is_integer(v)) {
        snprintf(num, size, "%lld", (long long)json_integer_value(v));
        return num;
    }
    if (json_is_real(v)) {
        snprintf(num, size, "%.17g", json_real_value(v));
        return num;
    }
    return NULL;
}

static int bad_name(const char *name, char *err, size_t err_size)
{
    size_t n = strlen(name);
    if (n >= FAULT_NAME_MAX) {
        snprintf(err, err_size, "\"name\": at most %d characters", FAULT_NAME_MAX - 1);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c == 0x7f || c == '/') {
            snprintf(err, err_size, "\"name\": expected printable characters without '/'");
            return -1;
        }
    }
    /* /api/faults/reset is the reset: a rule of that name could not be shown or removed */
    if (strcmp(name, "reset") == 0) {
        snprintf(err, err_size,
                 "\"name\": \"reset\" is taken by /api/faults/reset; choose "
                 "another name");
        return -1;
    }
    return 0;
}

static int from_json(const json_t *o, struct fault_rule *out, char *err, size_t err_size)
{
    const char *name = "";
    const json_t *jname = json_object_get(o, "name");
    if (jname && !json_is_string(jname)) {
        snprintf(err, err_size, "\"name\": expected a string");
        return -1;
    }
    if (jname) name = json_string_value(jname);
    if (bad_name(name, err, err_size)) return -1;
    const json_t *rule = json_object_get(o, "rule");
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)o, key, v)
    {
        bool known = !strcmp(key, "name") || !strcmp(key, "rule");
        for (size_t i = 0; i < sizeof section_keys / sizeof section_keys[0]; i++)
            known = known || !strcmp(key, section_keys[i]);
        if (!known) {
            snprintf(
                err, err_size,
                "unknown key \"%.100s%s\"; expected \"rule\" (e.g. \"RCPT *@x.example: reply 451 "
                "4.7.1 Try later\") or the keys of a [fault NAME] section: on, match, nth, "
                "probability, action; and \"name\"",
                key, strlen(key) > 100 ? "..." : "");
            return -1;
        }
        if (rule && strcmp(key, "name") && strcmp(key, "rule")) {
            snprintf(err, err_size,
                     "\"rule\" and \"%s\": give either the rule in one line or "
                     "the keys of a [fault NAME] section, not both",
                     key);
            return -1;
        }
    }
    if (rule) {
        if (!json_is_string(rule) || memchr(json_string_value(rule), 0, json_string_length(rule))) {
            snprintf(err, err_size,
                     "\"rule\": expected a string such as \"RCPT *@x.example: "
                     "reply 451 4.7.1 Try later\"");
            return -1;
        }
        if (fault_parse_named(json_string_value(rule), name, out, err, err_size) < 0) return -1;
        return 0;
    }
    fault_rule_begin(out, name[0] ? name : "(unnamed)");
    for (size_t i = 0; i < sizeof section_keys / sizeof section_keys[0]; i++) {
        const json_t *jv = json_object_get(o, section_keys[i]);
        if (!jv) continue;
        char num[64];
        const char *text = value_text(jv, num, sizeof num);
        if (!text) {
            snprintf(err, err_size, "\"%s\": expected a string or a number", section_keys[i]);
            return -1;
        }
        if (fault_rule_set(out, section_keys[i], text, err, err_size) != 0) return -1;
    }
    if (fault_rule_finish(out, err, err_size) != 0) return -1;
    if (!name[0]) out->name[0] = 0;
    return 0;
}

static int from_body(const uint8_t *body, size_t len, struct fault_rule *out, char *err,
                     size_t err_size)
{
    size_t start = 0;
    while (start < len && (body[start] == ' ' || body[start] == '\t' || body[start] == '\r' ||
                           body[start] == '\n'))
        start++;
    if (start == len) {
        snprintf(err, err_size,
                 "an empty body; expected {\"rule\": \"VERB [GLOB]: ACTION\"} or "
                 "the rule as text");
        return -1;
    }
    if (body[start] == '{') {
        json_error_t jerr;
        json_t *o = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!o || !json_is_object(o)) {
            snprintf(err, err_size, "the body is not a JSON object: %s (line %d, column %d)",
                     o ? "another JSON value" : jerr.text, jerr.line, jerr.column);
            json_decref(o);
            return -1;
        }
        int rc = from_json(o, out, err, err_size);
        json_decref(o);
        return rc;
    }
    /* the flag syntax as text: one line (a trailing line end is dropped) */
    size_t end = len;
    while (end > start && (body[end - 1] == '\n' || body[end - 1] == '\r')) end--;
    char text[FAULT_REPLY_MAX + FAULT_GLOB_MAX + 64];
    if (end - start >= sizeof text || memchr(body + start, 0, end - start) ||
        memchr(body + start, '\n', end - start) || memchr(body + start, '\r', end - start)) {
        snprintf(err, err_size,
                 "expected one line: a rule such as \"RCPT *@x.example: reply 451 "
                 "4.7.1 Try later\"");
        return -1;
    }
    /* as JSON bodies are: the rule and what is said of it go back as JSON strings */
    for (size_t i = start; i < end;) {
        uint32_t cp;
        size_t n = body[i] < 0x80 ? 1 : utf8_sequence(body + i, end - i, &cp);
        if (n == 0) {
            snprintf(err, err_size,
                     "byte %zu of the body is not UTF-8; expected text, a rule such as \"RCPT "
                     "*@x.example: reply 451 4.7.1 Try later\"",
                     i + 1);
            return -1;
        }
        i += n;
    }
    memcpy(text, body + start, end - start);
    text[end - start] = 0;
    return fault_parse_named(text, "", out, err, err_size);
}

/* Makes s valid UTF-8 in place: a byte that starts no whole character becomes '?'. */
static void utf8_clean(char *s)
{
    for (size_t i = 0, n = strlen(s); i < n;) {
        uint32_t cp;
        size_t k = (uint8_t)s[i] < 0x80 ? 1 : utf8_sequence((const uint8_t *)s + i, n - i, &cp);
        if (k == 0) s[i] = '?', k = 1;
        i += k;
    }
}

int control_fault_from_body(const uint8_t *body, size_t len, struct fault_rule *out, char *err,
                            size_t err_size)
{
    int rc = from_body(body, len, out, err, err_size);
    /* the refusal goes back as a JSON string: the rule's words in it may have been cut inside
     * a character (a message quotes at most 80 bytes of a value; err_size) */
    if (rc != 0 && err && err_size) utf8_clean(err);
    return rc;
}

bool control_last_event_id(const char *value, size_t len, uint64_t *id)
{
    if (len == 0 || len > 19) return false; /* 19 digits always fit in 64 bits */
    uint64_t n = 0;
    for (size_t k = 0; k < len; k++) {
        if (value[k] < '0' || value[k] > '9') return false;
        n = n * 10 + (uint64_t)(value[k] - '0');
    }
    *id = n;
    return true;
}
