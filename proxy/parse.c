/* parse.c - pure parsers for user-typed values (see parse.h). */
#include "smtptap/parse.h"

#include "smtptap/capture.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!s || !*s || !isdigit((unsigned char)*s)) return "a whole number";
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end) return "a whole number";
    if (v < min || v > max) return "a number in range";
    *out = v;
    return NULL;
}

const char *parse_bool(const char *s, bool *out)
{
    static const char *yes[] = {"yes", "true", "on", "1"}, *no[] = {"no", "false", "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) return *out = true, NULL;
        if (strcasecmp(s, no[i]) == 0) return *out = false, NULL;
    }
    return "yes or no";
}

const char *parse_duration_ms(const char *s, uint64_t *ms)
{
    static const char *expect = "a duration such as 250ms, 30s, 5m or 1h";
    if (!s || !isdigit((unsigned char)*s)) return expect;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || v < 0) return expect;
    double mult;
    if (*end == 0 || strcmp(end, "s") == 0)
        mult = 1000;
    else if (strcmp(end, "ms") == 0)
        mult = 1;
    else if (strcmp(end, "m") == 0)
        mult = 60000;
    else if (strcmp(end, "h") == 0)
        mult = 3600000;
    else
        return expect;
    double total = v * mult;
    if (total > 1e12) return expect;
    *ms = (uint64_t)(total + 0.5);
    return NULL;
}

void format_duration(uint64_t ms, char *out, unsigned size)
{
    if (ms % 1000 == 0)
        snprintf(out, size, "%llus", (unsigned long long)(ms / 1000));
    else if (ms < 1000)
        snprintf(out, size, "%llums", (unsigned long long)ms);
    else {
        /* Exact seconds, trailing zeros dropped ("1.25s", "123.456s"); %g would round and
         * switch to exponents ("2e+03s"). */
        unsigned frac = (unsigned)(ms % 1000);
        int digits = 3;
        while (frac % 10 == 0) frac /= 10, digits--;
        snprintf(out, size, "%llu.%0*us", (unsigned long long)(ms / 1000), digits, frac);
    }
}

void format_hostport(const char *host, unsigned port, char *out, unsigned size)
{
    if (strchr(host, ':'))
        snprintf(out, size, "[%s]:%u", host, port);
    else
        snprintf(out, size, "%s:%u", host, port);
}

const char *parse_hostport(const char *s, bool allow_zero, struct hostport *out)
{
    static const char *expect = "HOST:PORT, e.g. 127.0.0.1:2525, [::1]:2525 or mail.example:587";
    const char *host = s, *colon;
    size_t host_len;
    if (*s == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':') return expect;
        host = s + 1;
        host_len = (size_t)(close - host);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || memchr(s, ':', (size_t)(colon - s))) return expect;
        host_len = (size_t)(colon - s);
    }
    if (host_len == 0 || host_len >= HOST_MAX) return expect;
    uint64_t port;
    if (parse_uint(colon + 1, allow_zero ? 0 : 1, 65535, &port))
        return allow_zero ? "a port from 0 to 65535 after the colon"
                          : "a port from 1 to 65535 after the colon";
    memcpy(out->host, host, host_len);
    out->host[host_len] = 0;
    out->port = (uint16_t)port;
    return NULL;
}

static bool is_numeric_ip(const char *h)
{
    unsigned char tmp[16];
    return inet_pton(AF_INET, h, tmp) == 1 || inet_pton(AF_INET6, h, tmp) == 1;
}

bool is_loopback_address(const char *h)
{
    unsigned char a[16];
    if (inet_pton(AF_INET, h, a) == 1) return a[0] == 127;
    if (inet_pton(AF_INET6, h, a) != 1) return false;
    static const unsigned char one[16] = {[15] = 1}, mapped[12] = {[10] = 0xff, [11] = 0xff};
    if (memcmp(a, one, 16) == 0) return true;          /* ::1 */
    return memcmp(a, mapped, 12) == 0 && a[12] == 127; /* ::ffff:127.x.x.x */
}

const char *parse_listen(const char *s, struct listen_spec *out)
{
    memset(out, 0, sizeof *out);
    if (strncasecmp(s, "tls:", 4) == 0) {
        out->implicit_tls = true;
        s += 4;
    }
    const char *err = parse_hostport(s, true, &out->addr);
    if (err && strncmp(err, "a port", 6) == 0) return err;
    if (err) return "[tls:]ADDR:PORT with a numeric address, e.g. 127.0.0.1:2525 or [::1]:2525";
    if (strcasecmp(out->addr.host, "localhost") == 0) strcpy(out->addr.host, "127.0.0.1");
    if (!is_numeric_ip(out->addr.host))
        return "a numeric address (127.0.0.1, 0.0.0.0, ::1, ::) or localhost";
    return NULL;
}

const char parse_upstream_unknown_prefix[] =
    "tls: (implicit TLS), starttls: (STARTTLS required) or plain: (never TLS) as the prefix, "
    "or none (STARTTLS when the server offers it), before HOST[:PORT]";

uint16_t upstream_default_port(enum tls_mode tls)
{
    return tls == TLS_IMPLICIT ? 465 : tls == TLS_STARTTLS ? 587 : 25;
}

size_t upstream_prefix_length(const char *s)
{
    size_t n = 0;
    if (!isalpha((unsigned char)s[0])) return 0;
    while (isalnum((unsigned char)s[n]) || s[n] == '-' || s[n] == '+') n++;
    return s[n] == ':' ? n : 0;
}

/* HOST, [V6] or HOST:PORT; a host name must look like one. */
static bool upstream_target(const char *s, struct hostport *out, bool *defaulted)
{
    *defaulted = false;
    if (parse_hostport(s, false, out)) {
        /* No port: a name or IPv4 address without a colon, or a bracketed IPv6 one. */
        size_t len = strlen(s);
        bool bracketed = len > 2 && s[0] == '[' && s[len - 1] == ']' && !strchr(s + 1, '[') &&
                         strchr(s, ']') == s + len - 1;
        if (!bracketed && (len == 0 || strchr(s, ':') || strchr(s, '[') || strchr(s, ']')))
            return false;
        size_t host_len = bracketed ? len - 2 : len;
        if (host_len == 0 || host_len >= HOST_MAX) return false;
        memcpy(out->host, bracketed ? s + 1 : s, host_len);
        out->host[host_len] = 0;
        out->port = 0;
        *defaulted = true;
    }
    for (const char *p = out->host; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr(".-_:%", *p)) return false;
    return true;
}

const char *parse_upstream(const char *s, struct upstream_spec *out)
{
    static const char *expect =
        "sink, transparent, or [tls:|starttls:|plain:]HOST[:PORT] (e.g. smtp.example.com:587; "
        "without a port 25, or 587 with starttls:, 465 with tls:)";
    memset(out, 0, sizeof *out);
    if (strcasecmp(s, "sink") == 0) return out->kind = UPSTREAM_SINK, NULL;
    if (strcasecmp(s, "transparent") == 0) return out->kind = UPSTREAM_TRANSPARENT, NULL;
    static const char *replay_expect =
        "replay:FILE with the path of a jsonl capture (smtptap -d DIR --format jsonl)";
    /* "replay" alone is the prefix without its file, not a host named so (found by
     * fuzz_parse: it formatted as "replay:25", which reads back as a replay of "25") */
    if (strcasecmp(s, "replay") == 0) return replay_expect;
    if (strncasecmp(s, "replay:", 7) == 0) { /* a recorded server: the capture's path */
        out->kind = UPSTREAM_REPLAY;
        if (!s[7] || strlen(s + 7) >= sizeof out->replay) return replay_expect;
        strcpy(out->replay, s + 7);
        return NULL;
    }
    out->kind = UPSTREAM_FIXED;
    out->tls = TLS_STARTTLS_IF_OFFERED;
    static const struct {
        const char *prefix;
        enum tls_mode mode;
    } prefixes[] = {{"tls:", TLS_IMPLICIT}, {"starttls:", TLS_STARTTLS}, {"plain:", TLS_NONE}};
    bool prefixed = false;
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(prefixes[i].prefix);
        if (strncasecmp(s, prefixes[i].prefix, n - 1) == 0 && s[n - 1] == 0)
            return expect; /* "tls" alone: a prefix without its host, not a host named so */
        if (strncasecmp(s, prefixes[i].prefix, n) == 0) {
            out->tls = prefixes[i].mode;
            s += n;
            prefixed = true;
            break;
        }
    }
    /* "smtps:mail.example.com:465": a word before HOST:PORT (or before a dotted or bracketed
     * HOST) that is no prefix. */
    size_t word = prefixed ? 0 : upstream_prefix_length(s);
    if (word) {
        const char *rest = s + word + 1;
        struct hostport hp;
        if (!parse_hostport(rest, false, &hp) || rest[0] == '[' ||
            (strchr(rest, '.') && !strchr(rest, ':')))
            return parse_upstream_unknown_prefix;
    }
    bool defaulted;
    if (!upstream_target(s, &out->target, &defaulted)) return expect;
    out->port_defaulted = defaulted;
    if (defaulted) out->target.port = upstream_default_port(out->tls);
    if (!prefixed && out->target.port == 465) out->tls = TLS_IMPLICIT;
    return NULL;
}

const char *parse_formats(const char *v, unsigned *bits)
{
    static const char *const names[] = {"text", "jsonl", "pcap", "eml"};
    static const unsigned values[] = {FORMAT_TEXT, FORMAT_JSONL, FORMAT_PCAP, FORMAT_EML};
    static const char *const expected = "a comma-separated list of text, jsonl, pcap, eml";
    unsigned out = 0;
    const char *p = v;
    for (;;) {
        while (*p == ' ') p++;
        size_t n = strcspn(p, ", ");
        size_t i = 0;
        while (i < 4 && !(n == strlen(names[i]) && strncasecmp(p, names[i], n) == 0)) i++;
        if (i == 4 || (out & values[i])) return expected; /* unknown, empty or repeated */
        out |= values[i];
        p += n;
        while (*p == ' ') p++;
        if (!*p) break;
        if (*p++ != ',') return expected;
    }
    *bits = out;
    return NULL;
}
