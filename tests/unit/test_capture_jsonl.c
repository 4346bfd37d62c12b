/* test_capture_jsonl.c - unit tests for the jsonl capture format (capture_jsonl.c): synthetic
 * events of every kind go through the writer into memory, and every line written is read back
 * with jansson (strict: no NUL in strings, no duplicate keys) and checked field by field: the
 * common fields (ts, session, t, dir, kind, tls, local, to_smtptap), the bytes as "line" or
 * "line_b64" (non-UTF-8 and NUL bytes round-trip), smtptap's "text", and each kind's facts
 * object; EV_WIRE and EV_BODY are not written. Also: odd and incomplete events, huge bytes,
 * when the writer flushes, and a write error that stops the writer without crashing or
 * retrying. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "smtptap/capture.h"

/* A string literal as (bytes, length), embedded NULs included. */
#define LIT(s) (const uint8_t *)(s), (sizeof(s) - 1)

#define NEVENTS(a) (sizeof(a) / sizeof((a)[0]))

/* 2026-12-03T09:31:02.123456Z in microseconds since the epoch. */
#define WALL_US 1796290262123456ULL

/* ---- helpers: events ----------------------------------------------------------------- */

static struct event bytes_event(enum event_kind kind, enum event_dir dir, const uint8_t *b,
                                size_t n)
{
    return (struct event){.session = 7,
                          .t_ns = 1500000000ULL,
                          .wall_us = WALL_US,
                          .kind = kind,
                          .dir = dir,
                          .bytes = b,
                          .len = n};
}

static struct event text_event(enum event_kind kind, enum event_dir dir, const char *text)
{
    return (struct event){.session = 7,
                          .t_ns = 1500000000ULL,
                          .wall_us = WALL_US,
                          .kind = kind,
                          .dir = dir,
                          .text = text};
}

static struct event facts_event(enum event_kind kind, enum event_dir dir,
                                const union event_facts *f)
{
    struct event ev = text_event(kind, dir, NULL);
    ev.facts = f;
    return ev;
}

static struct sockaddr_storage v4(const char *ip, uint16_t port)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    assert_int_equal(inet_pton(AF_INET, ip, &in->sin_addr), 1);
    return ss;
}

static struct sockaddr_storage v6(const char *ip, uint16_t port)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    assert_int_equal(inet_pton(AF_INET6, ip, &in6->sin6_addr), 1);
    return ss;
}

/* ---- helpers: output ------------------------------------------------------------------ */

/* Everything the writer wrote for evs (a NUL-terminated string; free it). */
static char *render(const struct event *evs, size_t n, size_t *size_out)
{
    char *out = NULL;
    size_t size = 0;
    FILE *mem = open_memstream(&out, &size);
    assert_non_null(mem);
    struct event_writer *w = jsonl_writer_new(mem, false, false);
    assert_non_null(w);
    for (size_t i = 0; i < n; i++) w->write(w, &evs[i]);
    w->close(w); /* flushes; the stream is not the writer's */
    assert_int_equal(fclose(mem), 0);
    if (size_out) *size_out = size;
    return out;
}

/* One line parsed as jansson's strict reader does (NUL in a string or a duplicate key fail). */
static json_t *parse(const char *line, size_t len)
{
    json_error_t err;
    json_t *v = json_loadb(line, len, JSON_REJECT_DUPLICATES, &err);
    if (!v) fail_msg("line does not parse (%s): %.*s", err.text, (int)len, line);
    assert_true(json_is_object(v));
    return v;
}

/* The output of evs as parsed lines; every line ends in LF and parses. */
static json_t *render_lines(const struct event *evs, size_t n)
{
    size_t size;
    char *out = render(evs, n, &size);
    json_t *lines = json_array();
    size_t start = 0;
    while (start < size) {
        char *lf = memchr(out + start, '\n', size - start);
        if (!lf) fail_msg("the last line has no LF: %s", out + start);
        json_array_append_new(lines, parse(out + start, (size_t)(lf - out) - start));
        start = (size_t)(lf - out) + 1;
    }
    free(out);
    return lines;
}

/* The one line written for ev. */
static json_t *render_one(const struct event *ev)
{
    json_t *lines = render_lines(ev, 1);
    assert_int_equal(json_array_size(lines), 1);
    json_t *o = json_incref(json_array_get(lines, 0));
    json_decref(lines);
    return o;
}

static json_t *member(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!v) fail_msg("no \"%s\" in %s", key, json_dumps(o, JSON_COMPACT));
    return v;
}

static void assert_str(const json_t *o, const char *key, const char *want)
{
    json_t *v = member(o, key);
    if (!json_is_string(v)) fail_msg("\"%s\" is not a string", key);
    assert_string_equal(json_string_value(v), want);
}

static void assert_int(const json_t *o, const char *key, long long want)
{
    json_t *v = member(o, key);
    if (!json_is_integer(v)) fail_msg("\"%s\" is not an integer", key);
    assert_int_equal(json_integer_value(v), want);
}

static void assert_real(const json_t *o, const char *key, double want)
{
    json_t *v = member(o, key);
    if (!json_is_real(v)) fail_msg("\"%s\" is not a float", key);
    if (fabs(json_real_value(v) - want) > 1e-9)
        fail_msg("\"%s\" is %.9f, want %.9f", key, json_real_value(v), want);
}

static void assert_json_null(const json_t *o, const char *key)
{
    if (!json_is_null(member(o, key))) fail_msg("\"%s\" is not null", key);
}

static void assert_absent(const json_t *o, const char *key)
{
    if (json_object_get(o, key)) fail_msg("\"%s\" should not be there", key);
}

/* o[key] is a string holding exactly these bytes (length included: NULs count). */
static void assert_string_bytes(const json_t *o, const char *key, const uint8_t *b, size_t n)
{
    json_t *v = member(o, key);
    assert_true(json_is_string(v));
    assert_int_equal(json_string_length(v), n);
    assert_memory_equal(json_string_value(v), b, n);
}

/* o[key] is base64 of exactly these bytes. */
static void assert_b64(const json_t *o, const char *key, const uint8_t *b, size_t n)
{
    json_t *v = member(o, key);
    assert_true(json_is_string(v));
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    assert_int_equal(len, 4 * ((n + 2) / 3));
    unsigned char *dec = malloc(len / 4 * 3 + 1);
    assert_non_null(dec);
    int got = EVP_DecodeBlock(dec, (const unsigned char *)s, (int)len);
    assert_true(got >= 0);
    size_t pad = len && s[len - 1] == '=' ? (len > 1 && s[len - 2] == '=' ? 2 : 1) : 0;
    assert_int_equal((size_t)got - pad, n);
    if (n) assert_memory_equal(dec, b, n);
    free(dec);
}

/* ---- the common fields ----------------------------------------------------------------- */

static void test_every_line_starts_with_ts_session_t_dir_kind_tls_in_that_order(void **state)
{
    (void)state;
    struct event ev = bytes_event(EV_COMMAND, DIR_C2S, LIT("EHLO a\r\n"));
    char *out = render(&ev, 1, NULL);
    assert_string_equal(out, "{\"ts\":\"2026-12-03T09:31:02.123456Z\",\"session\":7,\"t\":1.5,"
                             "\"dir\":\"c2s\",\"kind\":\"command\",\"tls\":false,"
                             "\"line\":\"EHLO a\\r\\n\"}\n");
    free(out);
}

static void test_ts_is_rfc3339_utc_with_microseconds(void **state)
{
    (void)state;
    static const struct {
        uint64_t wall_us;
        const char *ts;
    } cases[] = {
        {WALL_US, "2026-12-03T09:31:02.123456Z"},
        {WALL_US + 1, "2026-12-03T09:31:02.123457Z"}, /* the same second again */
        {1796290262999999ULL, "2026-12-03T09:31:02.999999Z"},
        {1796290263000000ULL, "2026-12-03T09:31:03.000000Z"}, /* the next one */
        {0, "1970-01-01T00:00:00.000000Z"},                   /* back in time */
        {951782400000007ULL, "2000-02-29T00:00:00.000007Z"},  /* a leap day */
        {1796290262000010ULL, "2026-12-03T09:31:02.000010Z"},
    };
    struct event evs[NEVENTS(cases)];
    for (size_t i = 0; i < NEVENTS(cases); i++) {
        evs[i] = bytes_event(EV_RAW, DIR_C2S, LIT("x"));
        evs[i].wall_us = cases[i].wall_us;
    }
    json_t *l = render_lines(evs, NEVENTS(cases));
    for (size_t i = 0; i < NEVENTS(cases); i++) assert_str(json_array_get(l, i), "ts", cases[i].ts);
    json_decref(l);
}

static void test_t_is_seconds_since_the_start_to_the_microsecond(void **state)
{
    (void)state;
    struct event evs[3] = {bytes_event(EV_RAW, DIR_C2S, LIT("x")),
                           bytes_event(EV_RAW, DIR_C2S, LIT("x")),
                           bytes_event(EV_RAW, DIR_C2S, LIT("x"))};
    evs[0].t_ns = 0;
    evs[1].t_ns = 1234567890ULL; /* the nanoseconds below a microsecond go */
    evs[2].t_ns = 86400ULL * 1000000000ULL + 412000ULL;
    size_t size;
    char *out = render(evs, 3, &size);
    assert_non_null(strstr(out, "\"t\":0.0,"));
    assert_non_null(strstr(out, "\"t\":1.234567,"));
    assert_non_null(strstr(out, "\"t\":86400.000412,"));
    free(out);
    json_t *l = render_lines(evs, 3);
    assert_real(json_array_get(l, 1), "t", 1.234567);
    json_decref(l);
}

static void test_session_is_the_number_in_full(void **state)
{
    (void)state;
    struct event evs[2] = {bytes_event(EV_RAW, DIR_C2S, LIT("x")),
                           bytes_event(EV_RAW, DIR_C2S, LIT("x"))};
    evs[0].session = 123456789012ULL;
    evs[1].session = UINT64_MAX; /* clamped, not negative */
    json_t *l = render_lines(evs, 2);
    assert_int(json_array_get(l, 0), "session", 123456789012LL);
    assert_true(json_integer_value(member(json_array_get(l, 1), "session")) > 0);
    json_decref(l);
}

static void test_dir_is_c2s_s2c_or_null(void **state)
{
    (void)state;
    struct event evs[4] = {text_event(EV_INFO, DIR_C2S, "a"), text_event(EV_INFO, DIR_S2C, "b"),
                           text_event(EV_INFO, DIR_NONE, "c"),
                           text_event(EV_INFO, (enum event_dir)42, "d")};
    json_t *l = render_lines(evs, 4);
    assert_str(json_array_get(l, 0), "dir", "c2s");
    assert_str(json_array_get(l, 1), "dir", "s2c");
    assert_json_null(json_array_get(l, 2), "dir");
    assert_json_null(json_array_get(l, 3), "dir");
    json_decref(l);
}

static void test_kind_is_the_lowercase_name_of_every_kind(void **state)
{
    (void)state;
    static const struct {
        enum event_kind kind;
        const char *name;
    } kinds[] = {
        {EV_INFO, "info"},
        {EV_COMMAND, "command"},
        {EV_REPLY, "reply"},
        {EV_CONTENT, "content"},
        {EV_MESSAGE, "message"},
        {EV_RAW, "raw"},
        {EV_LINT, "lint"},
        {EV_ERROR, "error"},
        {EV_FAULT, "fault"},
        {EV_AUTH, "auth"},
        {EV_START, "start"},
        {EV_UPSTREAM, "upstream"},
        {EV_CLIENT_TLS, "client_tls"},
        {EV_DELIVERY, "delivery"},
        {EV_END, "end"},
    };
    struct event evs[NEVENTS(kinds)];
    for (size_t i = 0; i < NEVENTS(kinds); i++) evs[i] = text_event(kinds[i].kind, DIR_NONE, "x");
    json_t *l = render_lines(evs, NEVENTS(kinds));
    assert_int_equal(json_array_size(l), NEVENTS(kinds));
    for (size_t i = 0; i < NEVENTS(kinds); i++)
        assert_str(json_array_get(l, i), "kind", kinds[i].name);
    json_decref(l);
}

/* The connection's bytes (pcap) and each message's bytes (eml) are not jsonl's: a message
 * is there as its shown lines and its summary. */
static void test_wire_and_body_bytes_are_not_written(void **state)
{
    (void)state;
    union event_facts body = {.message = {.number = 1}};
    struct event evs[5] = {bytes_event(EV_WIRE, DIR_C2S, LIT("EHLO a\r\n")),
                           bytes_event(EV_COMMAND, DIR_C2S, LIT("EHLO a\r\n")),
                           bytes_event(EV_WIRE, DIR_S2C, LIT("250 ok\r\n")),
                           bytes_event(EV_BODY, DIR_C2S, LIT("Subject: x\r\n")),
                           bytes_event(EV_CONTENT, DIR_C2S, LIT("Subject: x"))};
    evs[3].facts = &body;
    json_t *l = render_lines(evs, 5);
    assert_int_equal(json_array_size(l), 2);
    assert_str(json_array_get(l, 0), "kind", "command");
    assert_str(json_array_get(l, 1), "kind", "content");
    json_decref(l);
}

static void test_tls_is_a_bool_and_local_and_to_smtptap_appear_only_when_set(void **state)
{
    (void)state;
    struct event evs[3] = {bytes_event(EV_REPLY, DIR_S2C, LIT("250 ok\r\n")),
                           bytes_event(EV_REPLY, DIR_S2C, LIT("421 bye\r\n")),
                           bytes_event(EV_REPLY, DIR_S2C, LIT("220 go\r\n"))};
    evs[1].tls = true;
    evs[1].local = true;
    evs[2].to_smtptap = true;
    json_t *l = render_lines(evs, 3);
    json_t *a = json_array_get(l, 0), *b = json_array_get(l, 1), *c = json_array_get(l, 2);
    assert_true(json_is_false(member(a, "tls")));
    assert_absent(a, "local");
    assert_absent(a, "to_smtptap");
    assert_true(json_is_true(member(b, "tls")));
    assert_true(json_is_true(member(b, "local")));
    assert_absent(b, "to_smtptap");
    assert_absent(c, "local");
    assert_true(json_is_true(member(c, "to_smtptap")));
    json_decref(l);
}

/* ---- bytes: line or line_b64 --------------------------------------------------------- */

static void test_each_byte_kind_keeps_its_bytes_crlf_included(void **state)
{
    (void)state;
    const enum event_kind kinds[] = {EV_COMMAND, EV_REPLY, EV_CONTENT, EV_RAW};
    for (size_t i = 0; i < NEVENTS(kinds); i++) {
        struct event ev = bytes_event(kinds[i], DIR_C2S, LIT("250-a\r\n250 b\r\n"));
        json_t *o = render_one(&ev);
        assert_str(o, "line", "250-a\r\n250 b\r\n");
        assert_absent(o, "line_b64");
        assert_absent(o, "text");
        json_decref(o);
    }
}

static void test_valid_utf8_is_a_line(void **state)
{
    (void)state;
    struct event ev = bytes_event(EV_CONTENT, DIR_C2S,
                                  LIT("Gr\xc3\xbc\xc3\x9f\x65 \xe2\x82\xac "
                                      "\xf0\x9f\x93\xa7 \x7f\x1b[1m\t"));
    json_t *o = render_one(&ev);
    assert_string_bytes(o, "line", ev.bytes, ev.len);
    json_decref(o);
}

static void test_bytes_that_are_not_utf8_round_trip_through_line_b64(void **state)
{
    (void)state;
    static const struct {
        const char *b;
        size_t n;
    } bad[] = {
        {"caf\xe9\r\n", 6},      /* Latin-1 */
        {"\xff\xfe", 2},         /* never in UTF-8 */
        {"\xc0\x80", 2},         /* overlong NUL */
        {"\xe0\x80\xaf", 3},     /* overlong '/' */
        {"\xed\xa0\x80", 3},     /* a surrogate */
        {"\xf4\x90\x80\x80", 4}, /* above U+10FFFF */
        {"ab\xe2\x82", 4},       /* cut short at the end */
        {"\x80 lone", 6},        /* a continuation byte alone */
        {"\xc3\x28", 2},         /* a lead byte without its continuation */
    };
    for (size_t i = 0; i < NEVENTS(bad); i++) {
        struct event ev = bytes_event(EV_COMMAND, DIR_C2S, (const uint8_t *)bad[i].b, bad[i].n);
        json_t *o = render_one(&ev);
        assert_absent(o, "line");
        assert_b64(o, "line_b64", ev.bytes, ev.len);
        json_decref(o);
    }
}

static void test_nul_bytes_go_through_line_b64(void **state)
{
    (void)state;
    struct event evs[2] = {bytes_event(EV_COMMAND, DIR_C2S, LIT("MAIL FROM:<a\0b>\r\n")),
                           bytes_event(EV_CONTENT, DIR_C2S, LIT("\0"))};
    json_t *l = render_lines(evs, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_absent(json_array_get(l, i), "line");
        assert_b64(json_array_get(l, i), "line_b64", evs[i].bytes, evs[i].len);
    }
    json_decref(l);
}

static void test_binary_data_of_every_byte_value_round_trips(void **state)
{
    (void)state;
    uint8_t all[256 * 3]; /* every length mod 3 is covered below */
    for (size_t i = 0; i < sizeof all; i++) all[i] = (uint8_t)(i * 7);
    for (size_t n = 0; n < 8; n++) {
        struct event ev = bytes_event(EV_RAW, DIR_C2S, all + 1, sizeof all - 1 - n);
        json_t *o = render_one(&ev);
        assert_b64(o, "line_b64", ev.bytes, ev.len);
        json_decref(o);
    }
}

/* jansson's own validator, as a second opinion on what "line" may hold. */
static bool jansson_takes(const uint8_t *b, size_t n)
{
    if (memchr(b, 0, n)) return false;
    json_t *s = json_stringn((const char *)b, n);
    json_decref(s);
    return s != NULL;
}

static void test_line_or_line_b64_agrees_with_jansson_on_random_bytes(void **state)
{
    (void)state;
    static const uint8_t alphabet[] = {'a',  0x00, 0x7f, 0x80, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf,
                                       0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff, 0x9f, 0xa0};
    uint32_t seed = 12345;
    for (int round = 0; round < 5000; round++) {
        uint8_t b[8];
        size_t n = (size_t)(round % 8) + 1;
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            b[i] = alphabet[(seed >> 16) % sizeof alphabet];
        }
        struct event ev = bytes_event(EV_CONTENT, DIR_C2S, b, n);
        json_t *o = render_one(&ev);
        if (jansson_takes(b, n))
            assert_string_bytes(o, "line", b, n);
        else
            assert_b64(o, "line_b64", b, n);
        json_decref(o);
    }
}

static void test_empty_or_missing_bytes_are_an_empty_line(void **state)
{
    (void)state;
    struct event evs[3] = {bytes_event(EV_COMMAND, DIR_C2S, LIT("")),
                           bytes_event(EV_RAW, DIR_C2S, NULL, 0),
                           bytes_event(EV_CONTENT, DIR_C2S, NULL, 99)}; /* length, no bytes */
    json_t *l = render_lines(evs, 3);
    for (size_t i = 0; i < 3; i++) assert_str(json_array_get(l, i), "line", "");
    json_decref(l);
}

static void test_huge_bytes_are_one_line_either_way(void **state)
{
    (void)state;
    size_t n = 3 * 1024 * 1024 + 1;
    uint8_t *text = malloc(n), *bin = malloc(n);
    assert_non_null(text);
    assert_non_null(bin);
    for (size_t i = 0; i < n; i++) {
        text[i] = (uint8_t)('a' + i % 26);
        bin[i] = (uint8_t)(i * 31 + (i >> 8));
    }
    text[1000] = '\n';
    struct event evs[2] = {bytes_event(EV_CONTENT, DIR_C2S, text, n),
                           bytes_event(EV_RAW, DIR_C2S, bin, n)};
    json_t *l = render_lines(evs, 2);
    assert_int_equal(json_array_size(l), 2);
    assert_string_bytes(json_array_get(l, 0), "line", text, n);
    assert_b64(json_array_get(l, 1), "line_b64", bin, n);
    json_decref(l);
    free(text);
    free(bin);
}

/* ---- text kinds ------------------------------------------------------------------------ */

static void test_text_kinds_carry_smtptaps_text(void **state)
{
    (void)state;
    const enum event_kind kinds[] = {EV_INFO, EV_MESSAGE, EV_LINT, EV_ERROR, EV_FAULT, EV_AUTH};
    for (size_t i = 0; i < NEVENTS(kinds); i++) {
        struct event ev = text_event(kinds[i], DIR_S2C, "upstream \"mx\" said\tno\nreally");
        json_t *o = render_one(&ev);
        assert_str(o, "text", "upstream \"mx\" said\tno\nreally");
        assert_absent(o, "line");
        assert_absent(o, "line_b64");
        json_decref(o);
    }
}

static void test_text_that_is_not_utf8_goes_to_text_b64(void **state)
{
    (void)state;
    struct event ev = text_event(EV_AUTH, DIR_NONE, "AUTH PLAIN user=caf\xe9");
    json_t *o = render_one(&ev);
    assert_absent(o, "text");
    assert_b64(o, "text_b64", (const uint8_t *)ev.text, strlen(ev.text));
    json_decref(o);
}

static void test_kinds_without_text_or_bytes_have_neither(void **state)
{
    (void)state;
    struct event ev = text_event(EV_CLIENT_TLS, DIR_NONE, NULL);
    json_t *o = render_one(&ev);
    assert_absent(o, "text");
    assert_absent(o, "line");
    assert_int_equal(json_object_size(o), 6); /* ts session t dir kind tls */
    json_decref(o);
}

/* ---- facts ----------------------------------------------------------------------------- */

static void test_start_names_the_client_and_the_listener(void **state)
{
    (void)state;
    union event_facts f = {.endpoints = {.a = v4("192.0.2.10", 50123), .b = v4("0.0.0.0", 25)}};
    struct event ev = facts_event(EV_START, DIR_NONE, &f);
    json_t *o = render_one(&ev);
    json_t *e = member(o, "endpoints");
    assert_str(e, "client", "192.0.2.10:50123");
    assert_str(e, "listener", "0.0.0.0:25");
    assert_int_equal(json_object_size(e), 2);
    json_decref(o);
}

static void test_upstream_names_the_server_and_our_address_ipv6_in_brackets(void **state)
{
    (void)state;
    union event_facts f = {.endpoints = {.a = v6("2001:db8::25", 25), .b = v6("::1", 40000)}};
    struct event ev = facts_event(EV_UPSTREAM, DIR_S2C, &f);
    json_t *o = render_one(&ev);
    json_t *e = member(o, "endpoints");
    assert_str(e, "server", "[2001:db8::25]:25");
    assert_str(e, "local", "[::1]:40000");
    json_decref(o);
}

static void test_an_address_of_no_known_family_is_null(void **state)
{
    (void)state;
    union event_facts f = {.endpoints = {.a = v4("127.0.0.1", 1)}}; /* b is all zero */
    struct event ev = facts_event(EV_START, DIR_NONE, &f);
    json_t *o = render_one(&ev);
    assert_str(member(o, "endpoints"), "client", "127.0.0.1:1");
    assert_json_null(member(o, "endpoints"), "listener");
    json_decref(o);
}

static void test_a_tls_info_line_carries_the_handshake(void **state)
{
    (void)state;
    union event_facts f = {.tls = {.upstream = true,
                                   .version = "TLSv1.3",
                                   .cipher = "TLS_AES_256_GCM_SHA384",
                                   .sni = "mx.example",
                                   .peer_subject = "CN=mx.example",
                                   .peer_issuer = "CN=Test CA",
                                   .peer_sha256 = "ab:cd",
                                   .verify = "verified"}};
    struct event ev = facts_event(EV_INFO, DIR_S2C, &f);
    ev.text = "upstream TLS: TLSv1.3 ...";
    json_t *o = render_one(&ev);
    assert_str(o, "text", "upstream TLS: TLSv1.3 ...");
    json_t *h = member(o, "handshake");
    assert_str(h, "leg", "upstream");
    assert_str(h, "version", "TLSv1.3");
    assert_str(h, "cipher", "TLS_AES_256_GCM_SHA384");
    assert_str(h, "sni", "mx.example");
    assert_str(h, "peer_subject", "CN=mx.example");
    assert_str(h, "peer_issuer", "CN=Test CA");
    assert_str(h, "peer_sha256", "ab:cd");
    assert_str(h, "verify", "verified");
    json_decref(o);
}

static void test_a_client_handshake_keeps_empty_facts_and_nulls_missing_ones(void **state)
{
    (void)state;
    union event_facts f = {.tls = {.upstream = false,
                                   .version = "TLSv1.2",
                                   .sni = "",
                                   .peer_subject = "",
                                   .peer_issuer = "CN=caf\xe9"}};
    struct event ev = facts_event(EV_INFO, DIR_C2S, &f);
    json_t *o = render_one(&ev);
    json_t *h = member(o, "handshake");
    assert_str(h, "leg", "client");
    assert_str(h, "sni", "");
    assert_str(h, "peer_subject", "");
    assert_json_null(h, "cipher");
    assert_json_null(h, "verify");
    assert_absent(h, "peer_issuer");
    assert_b64(h, "peer_issuer_b64", LIT("CN=caf\xe9"));
    json_decref(o);
}

static void test_an_info_line_without_facts_has_no_handshake(void **state)
{
    (void)state;
    struct event ev = text_event(EV_INFO, DIR_NONE, "127.0.0.1:1 connected");
    json_t *o = render_one(&ev);
    assert_absent(o, "handshake");
    json_decref(o);
}

static void test_a_reply_has_its_code_and_latency_in_ms(void **state)
{
    (void)state;
    union event_facts f = {.reply = {.code = 250, .latency_ns = 12345678}};
    struct event ev = bytes_event(EV_REPLY, DIR_S2C, LIT("250 2.1.5 Ok\r\n"));
    ev.facts = &f;
    json_t *o = render_one(&ev);
    assert_str(o, "line", "250 2.1.5 Ok\r\n");
    json_t *r = member(o, "reply");
    assert_int(r, "code", 250);
    assert_real(r, "latency_ms", 12.345);
    json_decref(o);
}

static void test_an_edited_reply_says_what_was_added_and_removed(void **state)
{
    (void)state;
    static const char server[] = "250-mx\r\n250-8BITMIME\r\n250-\xff\r\n250 HELP\r\n";
    union event_facts f = {.reply = {.code = 250,
                                     .edited_from = (const uint8_t *)server,
                                     .edited_from_len = sizeof server - 1}};
    struct event ev = bytes_event(EV_REPLY, DIR_S2C, LIT("250-mx\r\n250-STARTTLS\r\n250 HELP\r\n"));
    ev.facts = &f;
    json_t *o = render_one(&ev);
    assert_str(o, "kind", "edited_reply");
    assert_str(o, "line", "250-mx\r\n250-STARTTLS\r\n250 HELP\r\n");
    assert_absent(o, "local");
    json_t *e = member(member(o, "reply"), "edit");
    json_t *added = json_object_get(e, "added");
    assert_int_equal(json_array_size(added), 1);
    assert_string_equal(json_string_value(json_array_get(added, 0)), "STARTTLS");
    assert_absent(e, "removed"); /* a removed line that is not UTF-8: all of them in base64 */
    json_t *removed = json_object_get(e, "removed_b64");
    assert_int_equal(json_array_size(removed), 2);
    assert_string_equal(json_string_value(json_array_get(removed, 0)),
                        "OEJJVE1JTUU="); /* 8BITMIME */
    assert_string_equal(json_string_value(json_array_get(removed, 1)), "/w==");
    json_decref(o);
    /* a plain reply has no edit and stays a "reply" */
    ev.facts = &(union event_facts){.reply = {.code = 250}};
    o = render_one(&ev);
    assert_str(o, "kind", "reply");
    assert_absent(member(o, "reply"), "edit");
    json_decref(o);
}

static void test_a_reply_without_latency_or_code_says_so(void **state)
{
    (void)state;
    union event_facts f = {.reply = {.code = 0, .latency_ns = 0}};
    struct event ev = bytes_event(EV_REPLY, DIR_S2C, LIT("garbage\r\n"));
    ev.facts = &f;
    json_t *o = render_one(&ev);
    json_t *r = member(o, "reply");
    assert_int(r, "code", 0);
    assert_absent(r, "latency_ms");
    json_decref(o);
}

static void test_lint_has_its_id_and_offset_unless_unknown(void **state)
{
    (void)state;
    union event_facts f[3] = {{.lint = {.id = "bare-lf-in-data", .offset = 1234}},
                              {.lint = {.id = "pipelining-not-offered", .offset = 0}},
                              {.lint = {.id = "reply-code-changes", .offset = -1}}};
    struct event evs[3];
    for (size_t i = 0; i < 3; i++) {
        evs[i] = facts_event(EV_LINT, DIR_C2S, &f[i]);
        evs[i].text = "lint: something";
    }
    json_t *l = render_lines(evs, 3);
    assert_str(member(json_array_get(l, 0), "lint"), "id", "bare-lf-in-data");
    assert_int(member(json_array_get(l, 0), "lint"), "offset", 1234);
    assert_int(member(json_array_get(l, 1), "lint"), "offset", 0);
    assert_str(member(json_array_get(l, 2), "lint"), "id", "reply-code-changes");
    assert_absent(member(json_array_get(l, 2), "lint"), "offset");
    assert_str(json_array_get(l, 2), "text", "lint: something");
    json_decref(l);
}

static void test_a_fault_names_its_rule_and_action(void **state)
{
    (void)state;
    union event_facts f = {.fault = {.rule = "RCPT *@busy.example", .action = "reply"}};
    struct event ev = facts_event(EV_FAULT, DIR_S2C, &f);
    ev.text = "fault: 450";
    json_t *o = render_one(&ev);
    assert_str(member(o, "fault"), "rule", "RCPT *@busy.example");
    assert_str(member(o, "fault"), "action", "reply");
    json_decref(o);
}

/* A decoded SASL line: its facts by name; a name given twice is numbered, not lost. */
static void test_an_auth_event_has_its_fields_by_name(void **state)
{
    (void)state;
    union event_facts f = {.auth = {.mechanism = "XOAUTH2",
                                    .step = "command",
                                    .user = "bob",
                                    .nfields = 3,
                                    .names = {"user", "user", "token"},
                                    .values = {"bob", "eve", "<redacted token>"},
                                    .secret = {false, false, true}}};
    struct event ev = facts_event(EV_AUTH, DIR_NONE, &f);
    ev.text = "AUTH XOAUTH2 user=\"bob\" user=\"eve\" token=<redacted token>";
    json_t *o = render_one(&ev);
    json_t *a = member(o, "auth");
    assert_str(a, "mechanism", "XOAUTH2");
    assert_str(a, "step", "command");
    assert_str(a, "user", "bob");
    assert_str(member(a, "fields"), "user", "bob");
    assert_str(member(a, "fields"), "user_2", "eve");
    assert_str(member(a, "fields"), "token", "<redacted token>");
    json_t *secret = member(a, "secret");
    assert_int_equal(json_array_size(secret), 1);
    assert_string_equal(json_string_value(json_array_get(secret, 0)), "token");
    assert_null(json_object_get(a, "outcome"));
    json_decref(o);
    union event_facts end = {.auth = {.mechanism = "PLAIN",
                                      .step = "outcome",
                                      .user = "",
                                      .outcome = "rejected",
                                      .code = 535}};
    ev = facts_event(EV_AUTH, DIR_NONE, &end);
    ev.text = "AUTH PLAIN: rejected (535 5.7.8)";
    o = render_one(&ev);
    a = member(o, "auth");
    assert_true(json_is_null(member(a, "user")));
    assert_str(a, "outcome", "rejected");
    assert_int(a, "code", 535);
    assert_int_equal(json_object_size(member(a, "fields")), 0);
    json_decref(o);
}

static void test_a_message_summary_has_number_size_lines_and_sha256(void **state)
{
    (void)state;
    union event_facts sum = {
        .message = {.number = 2, .size = 249, .lines = 12, .sha256 = "3374a8b0"}};
    struct event ev = facts_event(EV_MESSAGE, DIR_C2S, &sum);
    ev.text = "message 2: 249 bytes, 12 lines, sha256 3374a8b0";
    json_t *o = render_one(&ev);
    assert_str(o, "text", ev.text);
    json_t *m = member(o, "message");
    assert_int(m, "number", 2);
    assert_int(m, "size", 249);
    assert_int(m, "lines", 12);
    assert_str(m, "sha256", "3374a8b0");
    assert_int_equal(json_object_size(m), 4);
    json_decref(o);
}

static void test_a_delivery_has_the_envelope_and_the_servers_reply(void **state)
{
    (void)state;
    const char *rcpts[] = {"RCPT TO:<a@b.example>", "RCPT TO:<c@d.example> NOTIFY=NEVER"};
    union event_facts f = {.delivery = {.message = 1,
                                        .helo = "client.example",
                                        .mail_from = "MAIL FROM:<x@y.example> BODY=8BITMIME",
                                        .rcpts = rcpts,
                                        .nrcpts = 2,
                                        .reply = (const uint8_t *)"250 2.0.0 Ok: queued\r\n",
                                        .reply_len = 22,
                                        .code = 250}};
    struct event ev = facts_event(EV_DELIVERY, DIR_S2C, &f);
    json_t *o = render_one(&ev);
    json_t *d = member(o, "delivery");
    assert_int(d, "message", 1);
    assert_str(d, "helo", "client.example");
    assert_str(d, "mail_from", "MAIL FROM:<x@y.example> BODY=8BITMIME");
    json_t *r = member(d, "rcpts");
    assert_int_equal(json_array_size(r), 2);
    assert_string_equal(json_string_value(json_array_get(r, 0)), rcpts[0]);
    assert_string_equal(json_string_value(json_array_get(r, 1)), rcpts[1]);
    assert_str(d, "reply", "250 2.0.0 Ok: queued\r\n");
    assert_int(d, "code", 250);
    json_decref(o);
}

static void test_a_delivery_with_8bit_envelope_and_reply_goes_to_b64_keys(void **state)
{
    (void)state;
    const char *rcpts[] = {"RCPT TO:<ok@b.example>", "RCPT TO:<j\xf6rg@b.example>"};
    union event_facts f = {.delivery = {.message = 3,
                                        .helo = "h\xe9lo",
                                        .mail_from = "MAIL FROM:<>",
                                        .rcpts = rcpts,
                                        .nrcpts = 2,
                                        .reply = (const uint8_t *)"554 no\0thanks\r\n",
                                        .reply_len = 15,
                                        .code = 554}};
    struct event ev = facts_event(EV_DELIVERY, DIR_S2C, &f);
    json_t *o = render_one(&ev);
    json_t *d = member(o, "delivery");
    assert_b64(d, "helo_b64", LIT("h\xe9lo"));
    assert_str(d, "mail_from", "MAIL FROM:<>");
    assert_absent(d, "rcpts");
    json_t *r = member(d, "rcpts_b64"); /* all of them, one type per key */
    assert_int_equal(json_array_size(r), 2);
    json_t *one = json_pack("{s:O}", "x", json_array_get(r, 0));
    assert_b64(one, "x", (const uint8_t *)rcpts[0], strlen(rcpts[0]));
    json_object_set(one, "x", json_array_get(r, 1));
    assert_b64(one, "x", (const uint8_t *)rcpts[1], strlen(rcpts[1]));
    json_decref(one);
    assert_absent(d, "reply");
    assert_b64(d, "reply_b64", f.delivery.reply, f.delivery.reply_len);
    assert_int(d, "code", 554);
    json_decref(o);
}

static void test_a_delivery_with_no_envelope_at_all(void **state)
{
    (void)state;
    union event_facts f = {.delivery = {.message = 1, .nrcpts = 5}}; /* rcpts NULL */
    struct event ev = facts_event(EV_DELIVERY, DIR_S2C, &f);
    json_t *o = render_one(&ev);
    json_t *d = member(o, "delivery");
    assert_json_null(d, "helo");
    assert_json_null(d, "mail_from");
    assert_int_equal(json_array_size(member(d, "rcpts")), 0);
    assert_str(d, "reply", "");
    json_decref(o);
}

static void test_the_end_sums_up_the_session(void **state)
{
    (void)state;
    union event_facts f = {.end = {.seconds = 2.5,
                                   .commands = 9,
                                   .messages = 2,
                                   .bytes_up = 4096,
                                   .bytes_down = 512,
                                   .server_wait_ns = 41500000}};
    struct event ev = facts_event(EV_END, DIR_NONE, &f);
    json_t *o = render_one(&ev);
    json_t *e = member(o, "end");
    assert_real(e, "seconds", 2.5);
    assert_int(e, "commands", 9);
    assert_int(e, "messages", 2);
    assert_int(e, "bytes_up", 4096);
    assert_int(e, "bytes_down", 512);
    assert_real(e, "server_wait_ms", 41.5);
    json_decref(o);
}

static void test_a_float_that_json_cannot_hold_is_null(void **state)
{
    (void)state;
    union event_facts f[2] = {{.end = {.seconds = NAN}}, {.end = {.seconds = INFINITY}}};
    struct event evs[2] = {facts_event(EV_END, DIR_NONE, &f[0]),
                           facts_event(EV_END, DIR_NONE, &f[1])};
    json_t *l = render_lines(evs, 2);
    assert_json_null(member(json_array_get(l, 0), "end"), "seconds");
    assert_json_null(member(json_array_get(l, 1), "end"), "seconds");
    json_decref(l);
}

/* ---- odd events ------------------------------------------------------------------------- */

static void test_every_kind_without_its_facts_still_makes_a_line(void **state)
{
    (void)state;
    struct event evs[EV_END + 1];
    size_t n = 0;
    for (int k = 0; k <= EV_END; k++)
        if (k != EV_WIRE && k != EV_BODY) evs[n++] = text_event((enum event_kind)k, DIR_NONE, NULL);
    json_t *l = render_lines(evs, n);
    assert_int_equal(json_array_size(l), n);
    static const char *const facts[] = {"endpoints", "handshake", "reply",    "lint",
                                        "fault",     "message",   "delivery", "end"};
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < NEVENTS(facts); k++) assert_absent(json_array_get(l, i), facts[k]);
    json_decref(l);
}

static void test_facts_on_a_kind_that_has_none_are_ignored(void **state)
{
    (void)state;
    union event_facts f = {.reply = {.code = 250}};
    struct event evs[2] = {bytes_event(EV_COMMAND, DIR_C2S, LIT("NOOP\r\n")),
                           text_event(EV_ERROR, DIR_S2C, "upstream gone")};
    evs[0].facts = evs[1].facts = &f;
    json_t *l = render_lines(evs, 2);
    assert_int_equal(json_object_size(json_array_get(l, 0)), 7);
    assert_int_equal(json_object_size(json_array_get(l, 1)), 7);
    json_decref(l);
}

static void test_an_unknown_kind_is_written_as_unknown(void **state)
{
    (void)state;
    struct event ev = text_event((enum event_kind)99, DIR_NONE, "?");
    json_t *o = render_one(&ev);
    assert_str(o, "kind", "unknown");
    json_decref(o);
}

static void test_events_in_any_order_from_many_sessions_are_one_line_each(void **state)
{
    (void)state;
    union event_facts end = {.end = {.seconds = 1}};
    struct event evs[6] = {facts_event(EV_END, DIR_NONE, &end),
                           bytes_event(EV_REPLY, DIR_S2C, LIT("221 bye\r\n")),
                           bytes_event(EV_CONTENT, DIR_C2S, LIT("\r\n.\r\n")),
                           text_event(EV_CLIENT_TLS, DIR_NONE, NULL),
                           bytes_event(EV_COMMAND, DIR_C2S, LIT("A\nB\rC\r\n")),
                           facts_event(EV_START, DIR_NONE, NULL)};
    for (size_t i = 0; i < 6; i++) evs[i].session = i % 2 ? 1 : 2;
    json_t *l = render_lines(evs, 6);
    assert_int_equal(json_array_size(l), 6);
    for (size_t i = 0; i < 6; i++) assert_int(json_array_get(l, i), "session", i % 2 ? 1 : 2);
    assert_str(json_array_get(l, 4), "line", "A\nB\rC\r\n");
    json_decref(l);
}

static void test_the_writer_does_not_keep_the_events_pointers(void **state)
{
    (void)state;
    char *out = NULL;
    size_t size = 0;
    FILE *mem = open_memstream(&out, &size);
    assert_non_null(mem);
    struct event_writer *w = jsonl_writer_new(mem, true, false); /* owns mem */
    char *text = strdup("client TLS: TLSv1.3");
    uint8_t *bytes = (uint8_t *)strdup("EHLO a\r\n");
    char *rcpt = strdup("RCPT TO:<a@b>");
    const char **rcpts = malloc(sizeof *rcpts);
    rcpts[0] = rcpt;
    union event_facts *f = calloc(1, sizeof *f);
    f->delivery = (struct event_delivery_facts){.rcpts = rcpts, .nrcpts = 1, .helo = text};
    struct event a = bytes_event(EV_COMMAND, DIR_C2S, bytes, 8);
    struct event b = facts_event(EV_DELIVERY, DIR_S2C, f);
    b.text = text;
    w->write(w, &a);
    w->write(w, &b);
    free(text), free(bytes), free(rcpt), free(rcpts), free(f);
    w->close(w); /* closes mem: out and size are final */
    assert_non_null(strstr(out, "\"line\":\"EHLO a\\r\\n\""));
    assert_non_null(strstr(out, "\"rcpts\":[\"RCPT TO:<a@b>\"]"));
    free(out);
}

/* ---- flushing and write errors ------------------------------------------------------- */

/* What another reader of the file sees now. */
static char *file_contents(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *buf = calloc(1, 1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static void test_a_capture_file_is_flushed_at_every_reply_and_at_the_end(void **state)
{
    (void)state;
    char path[] = "/tmp/test_capture_jsonl.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    struct event_writer *w = jsonl_writer_new(f, true, false);
    union event_facts end = {.end = {.seconds = 1}};
    struct event cmd = bytes_event(EV_COMMAND, DIR_C2S, LIT("NOOP\r\n"));
    struct event rep = bytes_event(EV_REPLY, DIR_S2C, LIT("250 ok\r\n"));
    struct event info = text_event(EV_INFO, DIR_NONE, "closed");
    struct event fin = facts_event(EV_END, DIR_NONE, &end);
    char *seen;
    w->write(w, &cmd);
    seen = file_contents(path);
    assert_int_equal(count_lines(seen), 0); /* buffered until the reply */
    free(seen);
    w->write(w, &rep);
    seen = file_contents(path);
    assert_int_equal(count_lines(seen), 2);
    free(seen);
    w->write(w, &info);
    w->write(w, &fin);
    seen = file_contents(path);
    assert_int_equal(count_lines(seen), 4); /* readable before close */
    free(seen);
    w->close(w);
    unlink(path);
}

static void test_a_stream_is_flushed_at_every_line_when_asked(void **state)
{
    (void)state;
    char path[] = "/tmp/test_capture_jsonl.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    struct event_writer *w = jsonl_writer_new(f, false, true); /* like stdout */
    struct event cmd = bytes_event(EV_COMMAND, DIR_C2S, LIT("NOOP\r\n"));
    struct event lint = text_event(EV_LINT, DIR_C2S, "lint: x");
    w->write(w, &cmd);
    char *seen = file_contents(path);
    assert_int_equal(count_lines(seen), 1);
    free(seen);
    w->write(w, &lint);
    seen = file_contents(path);
    assert_int_equal(count_lines(seen), 2);
    free(seen);
    w->close(w); /* not the writer's: still open */
    assert_int_equal(fclose(f), 0);
    unlink(path);
}

/* A stream whose every write fails, counting the attempts. */
static int write_attempts;

static ssize_t failing_write(void *cookie, const char *buf, size_t size)
{
    (void)cookie, (void)buf, (void)size;
    write_attempts++;
    errno = ENOSPC;
    return -1;
}

static void test_a_write_error_stops_the_writer_without_retrying(void **state)
{
    (void)state;
    FILE *f = fopencookie(NULL, "w", (cookie_io_functions_t){.write = failing_write});
    assert_non_null(f);
    struct event_writer *w = jsonl_writer_new(f, true, true);
    int saved = dup(STDERR_FILENO), sink = open("/dev/null", O_WRONLY);
    fflush(stderr);
    dup2(sink, STDERR_FILENO); /* the one warning goes nowhere here */
    struct event rep = bytes_event(EV_REPLY, DIR_S2C, LIT("250 ok\r\n"));
    w->write(w, &rep);
    int after_first = write_attempts;
    assert_true(after_first >= 1);
    for (int i = 0; i < 1000; i++) w->write(w, &rep);
    assert_int_equal(write_attempts, after_first); /* stopped: no spinning on the error */
    w->close(w);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(sink);
}

static void test_a_full_disk_is_survived(void **state)
{
    (void)state;
    FILE *f = fopen("/dev/full", "w");
    if (!f) skip();
    struct event_writer *w = jsonl_writer_new(f, true, false);
    int saved = dup(STDERR_FILENO), sink = open("/dev/null", O_WRONLY);
    fflush(stderr);
    dup2(sink, STDERR_FILENO);
    uint8_t big[8192];
    memset(big, 'x', sizeof big);
    struct event raw = bytes_event(EV_RAW, DIR_C2S, big, sizeof big);
    for (int i = 0; i < 100; i++) w->write(w, &raw);
    w->close(w);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(sink);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_line_starts_with_ts_session_t_dir_kind_tls_in_that_order),
        cmocka_unit_test(test_ts_is_rfc3339_utc_with_microseconds),
        cmocka_unit_test(test_t_is_seconds_since_the_start_to_the_microsecond),
        cmocka_unit_test(test_session_is_the_number_in_full),
        cmocka_unit_test(test_dir_is_c2s_s2c_or_null),
        cmocka_unit_test(test_kind_is_the_lowercase_name_of_every_kind),
        cmocka_unit_test(test_wire_and_body_bytes_are_not_written),
        cmocka_unit_test(test_tls_is_a_bool_and_local_and_to_smtptap_appear_only_when_set),

        cmocka_unit_test(test_each_byte_kind_keeps_its_bytes_crlf_included),
        cmocka_unit_test(test_valid_utf8_is_a_line),
        cmocka_unit_test(test_bytes_that_are_not_utf8_round_trip_through_line_b64),
        cmocka_unit_test(test_nul_bytes_go_through_line_b64),
        cmocka_unit_test(test_binary_data_of_every_byte_value_round_trips),
        cmocka_unit_test(test_line_or_line_b64_agrees_with_jansson_on_random_bytes),
        cmocka_unit_test(test_empty_or_missing_bytes_are_an_empty_line),
        cmocka_unit_test(test_huge_bytes_are_one_line_either_way),

        cmocka_unit_test(test_text_kinds_carry_smtptaps_text),
        cmocka_unit_test(test_text_that_is_not_utf8_goes_to_text_b64),
        cmocka_unit_test(test_kinds_without_text_or_bytes_have_neither),

        cmocka_unit_test(test_start_names_the_client_and_the_listener),
        cmocka_unit_test(test_upstream_names_the_server_and_our_address_ipv6_in_brackets),
        cmocka_unit_test(test_an_address_of_no_known_family_is_null),
        cmocka_unit_test(test_a_tls_info_line_carries_the_handshake),
        cmocka_unit_test(test_a_client_handshake_keeps_empty_facts_and_nulls_missing_ones),
        cmocka_unit_test(test_an_info_line_without_facts_has_no_handshake),
        cmocka_unit_test(test_a_reply_has_its_code_and_latency_in_ms),
        cmocka_unit_test(test_a_reply_without_latency_or_code_says_so),
        cmocka_unit_test(test_an_edited_reply_says_what_was_added_and_removed),
        cmocka_unit_test(test_lint_has_its_id_and_offset_unless_unknown),
        cmocka_unit_test(test_a_fault_names_its_rule_and_action),
        cmocka_unit_test(test_a_message_summary_has_number_size_lines_and_sha256),
        cmocka_unit_test(test_a_delivery_has_the_envelope_and_the_servers_reply),
        cmocka_unit_test(test_a_delivery_with_8bit_envelope_and_reply_goes_to_b64_keys),
        cmocka_unit_test(test_a_delivery_with_no_envelope_at_all),
        cmocka_unit_test(test_the_end_sums_up_the_session),
        cmocka_unit_test(test_a_float_that_json_cannot_hold_is_null),

        cmocka_unit_test(test_every_kind_without_its_facts_still_makes_a_line),
        cmocka_unit_test(test_facts_on_a_kind_that_has_none_are_ignored),
        cmocka_unit_test(test_an_unknown_kind_is_written_as_unknown),
        cmocka_unit_test(test_events_in_any_order_from_many_sessions_are_one_line_each),
        cmocka_unit_test(test_the_writer_does_not_keep_the_events_pointers),

        cmocka_unit_test(test_a_capture_file_is_flushed_at_every_reply_and_at_the_end),
        cmocka_unit_test(test_a_stream_is_flushed_at_every_line_when_asked),
        cmocka_unit_test(test_a_write_error_stops_the_writer_without_retrying),
        cmocka_unit_test(test_a_full_disk_is_survived),
        cmocka_unit_test(test_an_auth_event_has_its_fields_by_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
