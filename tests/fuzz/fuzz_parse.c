/* fuzz_parse.c - libFuzzer target for the parsers of user-typed values (parse.h).
 *
 * Input: strings separated by NUL bytes; each goes through every parser. Oracles:
 *   - a value accepted is in range and formats back to text that parses to the same value
 *     (durations, listen addresses, upstream targets);
 *   - parse_uint agrees with a digit-by-digit reference, parse_formats with a plain split on
 *     commas, parse_bool with the list of words it documents;
 *   - a refusal says what would be accepted (a non-empty static text). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fuzz.h"
#include "smtptap/capture.h"
#include "smtptap/parse.h"

static void check_duration(const char *s)
{
    uint64_t ms = 0, again = 0;
    const char *bad = parse_duration_ms(s, &ms);
    if (bad) {
        FUZZ_CHECK(*bad, "an empty refusal");
        return;
    }
    FUZZ_CHECK(ms <= 1000000000000ull, "a duration of %llu ms", (unsigned long long)ms);
    char text[64];
    format_duration(ms, text, sizeof text);
    FUZZ_CHECK(!parse_duration_ms(text, &again) && again == ms,
               "%llu ms formats as \"%s\", which parses to %llu", (unsigned long long)ms, text,
               (unsigned long long)again);
}

/* Digits only, no overflow, within [min, max]. */
static bool ref_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!*s) return false;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return false;
        uint64_t d = (uint64_t)(*s - '0');
        if (v > (UINT64_MAX - d) / 10) return false;
        v = v * 10 + d;
    }
    *out = v;
    return v >= min && v <= max;
}

static void check_uint(const char *s, uint64_t min, uint64_t max)
{
    uint64_t got = 0, want = 0;
    bool ok = !parse_uint(s, min, max, &got), ref = ref_uint(s, min, max, &want);
    FUZZ_CHECK(ok == ref && (!ok || got == want),
               "parse_uint(\"%s\", %llu, %llu): %d %llu, "
               "reference %d %llu",
               s, (unsigned long long)min, (unsigned long long)max, ok, (unsigned long long)got,
               ref, (unsigned long long)want);
}

static void check_bool(const char *s)
{
    static const char *const yes[] = {"yes", "true", "on", "1"}, *const no[] = {"no", "false",
                                                                                "off", "0"};
    bool v = false, want_yes = false, want_no = false;
    for (int i = 0; i < 4; i++) {
        want_yes |= !strcasecmp(s, yes[i]);
        want_no |= !strcasecmp(s, no[i]);
    }
    bool ok = !parse_bool(s, &v);
    FUZZ_CHECK(ok == (want_yes || want_no) && (!ok || v == want_yes), "parse_bool(\"%s\")", s);
}

static bool ref_formats(const char *s, unsigned *bits)
{
    static const char *const names[] = {"text", "jsonl", "pcap", "eml"};
    static const unsigned values[] = {FORMAT_TEXT, FORMAT_JSONL, FORMAT_PCAP, FORMAT_EML};
    unsigned out = 0;
    for (;;) {
        size_t n = strcspn(s, ",");
        size_t a = 0, b = n;
        while (a < b && s[a] == ' ') a++;
        while (b > a && s[b - 1] == ' ') b--;
        int k = -1;
        for (int i = 0; i < 4; i++)
            if (b - a == strlen(names[i]) && !strncasecmp(s + a, names[i], b - a)) k = i;
        if (k < 0 || (out & values[k])) return false;
        out |= values[k];
        if (!s[n]) break;
        s += n + 1;
    }
    *bits = out;
    return true;
}

static void check_formats(const char *s)
{
    unsigned got = 0, want = 0;
    bool ok = !parse_formats(s, &got), ref = ref_formats(s, &want);
    FUZZ_CHECK(ok == ref && (!ok || got == want), "parse_formats(\"%s\"): %d %u, reference %d %u",
               s, ok, got, ref, want);
}

static void check_addresses(const char *s)
{
    struct listen_spec l, l2;
    struct upstream_spec u, u2;
    struct hostport h;
    char text[HOST_MAX + 16];
    if (!parse_listen(s, &l)) {
        format_hostport(l.addr.host, l.addr.port, text, sizeof text);
        FUZZ_CHECK(!parse_listen(text, &l2) && !strcmp(l2.addr.host, l.addr.host) &&
                       l2.addr.port == l.addr.port,
                   "listen \"%s\" formats as \"%s\", which does not parse back", s, text);
    }
    if (!parse_upstream(s, &u) && u.kind == UPSTREAM_FIXED) {
        FUZZ_CHECK(u.target.port > 0, "upstream port 0 accepted");
        /* Written back with its prefix: without one, a host named "tls" reads as a prefix. */
        static const char *const prefix[] = {[TLS_NONE] = "plain:",
                                             [TLS_IMPLICIT] = "tls:",
                                             [TLS_STARTTLS] = "starttls:",
                                             [TLS_STARTTLS_IF_OFFERED] = ""};
        size_t p = strlen(prefix[u.tls]);
        memcpy(text, prefix[u.tls], p);
        format_hostport(u.target.host, u.target.port, text + p, (unsigned)(sizeof text - p));
        bool prefix_like = !strcasecmp(u.target.host, "tls") ||
                           !strcasecmp(u.target.host, "plain") ||
                           !strcasecmp(u.target.host, "starttls");
        if (!(p == 0 && prefix_like))
            FUZZ_CHECK(!parse_upstream(text, &u2) && !strcmp(u2.target.host, u.target.host) &&
                           u2.target.port == u.target.port && u2.tls == u.tls,
                       "upstream \"%s\" formats as \"%s\", which does not parse back", s, text);
    }
    for (int zero = 0; zero < 2; zero++)
        if (!parse_hostport(s, zero, &h))
            FUZZ_CHECK(h.host[0] && strlen(h.host) < HOST_MAX && (zero || h.port),
                       "parse_hostport(\"%s\") gave host \"%s\" port %u", s, h.host, h.port);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    uint64_t min = fuzz_u16(&in), max = min + fuzz_u16(&in) * (uint64_t)fuzz_u16(&in);
    while (in.n) {
        size_t n;
        const uint8_t *p = fuzz_until(&in, 0, &n);
        char *s = fuzz_strndup(p, n);
        check_duration(s);
        check_uint(s, min, max);
        check_uint(s, 0, UINT64_MAX);
        check_bool(s);
        check_formats(s);
        check_addresses(s);
        free(s);
    }
    return 0;
}
