/* test_control_store.c - unit tests for control_store.h: a session's summary from its events
 * (peers, HELO name, TLS on both legs, AUTH mechanism, counts, reply classes, latency, the
 * end's byte counts, verdict and end copies); the ring of recent ended sessions (live ones
 * are never evicted); the index by session number across its growth; the bound on stored
 * events (dropped ones counted, EV_END kept); which kinds are stored, and that the stored
 * events come back equal to what went in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtptap/control_store.h"

/* ---- helpers ------------------------------------------------------------------------------ */

static struct sockaddr_storage addr4(const char *ip, uint16_t port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    assert_int_equal(inet_pton(AF_INET, ip, &in->sin_addr), 1);
    return ss;
}

static struct control_session *feed(struct control_store *st, const struct event *ev)
{
    return control_store_event(st, ev);
}

static struct control_session *start(struct control_store *st, uint64_t id)
{
    union event_facts f = {.endpoints = {addr4("192.0.2.1", 40000), addr4("127.0.0.1", 2525)}};
    struct event ev = {.session = id,
                       .kind = EV_START,
                       .wall_us = 1000000 + id,
                       .text = "session starts",
                       .facts = &f};
    struct control_session *s = feed(st, &ev);
    assert_non_null(s);
    return s;
}

static struct control_session *end(struct control_store *st, uint64_t id)
{
    union event_facts f = {.end = {.seconds = 1, .bytes_up = 10, .bytes_down = 20}};
    struct event ev = {
        .session = id, .kind = EV_END, .t_ns = 5000, .wall_us = 2000000 + id, .facts = &f};
    return feed(st, &ev);
}

static struct control_session *bytes_event(struct control_store *st, uint64_t id,
                                           enum event_kind kind, const char *bytes)
{
    struct event ev = {.session = id,
                       .kind = kind,
                       .dir = kind == EV_COMMAND ? DIR_C2S : DIR_S2C,
                       .bytes = (const uint8_t *)bytes,
                       .len = strlen(bytes)};
    return feed(st, &ev);
}

static struct control_session *reply(struct control_store *st, uint64_t id, const char *bytes,
                                     int code, uint64_t latency_ns)
{
    union event_facts f = {.reply = {.code = code, .latency_ns = latency_ns}};
    struct event ev = {.session = id,
                       .kind = EV_REPLY,
                       .dir = DIR_S2C,
                       .bytes = (const uint8_t *)bytes,
                       .len = strlen(bytes),
                       .facts = &f};
    return feed(st, &ev);
}

static bool count_event(void *ctx, const struct event *ev)
{
    (void)ev;
    ++*(size_t *)ctx;
    return true;
}

static size_t stored(const struct control_session *s)
{
    size_t n = 0;
    control_session_each_event(s, count_event, &n);
    assert_int_equal(n, s->nevents);
    return n;
}

struct kinds {
    size_t count[EV_VERDICT + 1];
};

static bool count_kind(void *ctx, const struct event *ev)
{
    ((struct kinds *)ctx)->count[ev->kind]++;
    return true;
}

static struct kinds kinds_of(const struct control_session *s)
{
    struct kinds k;
    memset(&k, 0, sizeof k);
    control_session_each_event(s, count_kind, &k);
    return k;
}

static bool last_event(void *ctx, const struct event *ev)
{
    *(const struct event **)ctx = ev;
    return true;
}

/* ---- the summary ---------------------------------------------------------------------------- */

static void a_whole_session_makes_its_summary(void **state)
{
    (void)state;
    struct control_store st;
    control_store_init(&st, 10, false);
    struct control_session *s = start(&st, 7);
    assert_int_equal(s->id, 7);
    assert_true(s->live);
    assert_int_equal(st.live, 1);
    assert_ptr_equal(control_store_find(&st, 7), s);
    struct sockaddr_storage client = addr4("192.0.2.1", 40000), lis = addr4("127.0.0.1", 2525);
    assert_memory_equal(&s->client, &client, sizeof client);
    assert_memory_equal(&s->listener, &lis, sizeof lis);
    assert_int_equal(s->upstream.ss_family, 0);

    union event_facts up = {.endpoints = {addr4("198.51.100.7", 25), addr4("10.0.0.1", 50000)}};
    struct event ev = {.session = 7, .kind = EV_UPSTREAM, .t_ns = 1000, .facts = &up};
    assert_ptr_equal(feed(&st, &ev), s);
    struct sockaddr_storage server = addr4("198.51.100.7", 25);
    assert_memory_equal(&s->upstream, &server, sizeof server);

    reply(&st, 7, "220 mx.example ESMTP\r\n", 220, 0);
    bytes_event(&st, 7, EV_COMMAND, "EHLO client.example\r\n");
    reply(&st, 7, "250-mx.example\r\n250 STARTTLS\r\n", 250, 2000);
    /* the reply as the client got it after an edit: the server's was counted */
    union event_facts edited = {
        .reply = {.code = 250, .edited_from = (const uint8_t *)"250-mx\r\n", .edited_from_len = 8}};
    ev = (struct event){.session = 7,
                        .kind = EV_REPLY,
                        .bytes = (const uint8_t *)"250 mx.example\r\n",
                        .len = 16,
                        .facts = &edited};
    feed(&st, &ev);
    bytes_event(&st, 7, EV_COMMAND, "STARTTLS\r\n");
    reply(&st, 7, "220 2.0.0 Ready\r\n", 220, 1000);
    union event_facts tls = {.tls = {.upstream = false,
                                     .version = "TLSv1.3",
                                     .cipher = "TLS_AES_256_GCM_SHA384",
                                     .sni = "mx.example",
                                     .peer_subject = "",
                                     .peer_issuer = "",
                                     .peer_sha256 = "",
                                     .verify = ""}};
    ev = (struct event){.session = 7, .kind = EV_INFO, .text = "client TLS", .facts = &tls};
    feed(&st, &ev);
    union event_facts utls = {.tls = {.upstream = true,
                                      .version = "TLSv1.2",
                                      .cipher = "ECDHE-RSA-AES128-GCM-SHA256",
                                      .sni = "",
                                      .peer_subject = "CN=mx",
                                      .peer_issuer = "CN=ca",
                                      .peer_sha256 = "ab",
                                      .verify = "verified"}};
    ev = (struct event){.session = 7, .kind = EV_INFO, .text = "upstream TLS", .facts = &utls};
    feed(&st, &ev);
    ev = (struct event){.session = 7, .kind = EV_INFO, .text = "no facts"};
    feed(&st, &ev);
    bytes_event(&st, 7, EV_COMMAND, "ehlo second.example\r\n"); /* the first name stays */
    reply(&st, 7, "250 mx.example\r\n", 250, 9000);
    bytes_event(&st, 7, EV_COMMAND, "AUTH PLAIN AGJvYgBzZWNyZXQ=\r\n");
    reply(&st, 7, "235 2.7.0 OK\r\n", 235, 3000);
    /* a reply to smtptap's own command is not the client's */
    union event_facts own = {.reply = {.code = 250, .latency_ns = 99999}};
    ev = (struct event){.session = 7,
                        .kind = EV_REPLY,
                        .to_smtptap = true,
                        .bytes = (const uint8_t *)"250 x\r\n",
                        .len = 7,
                        .facts = &own};
    feed(&st, &ev);
    bytes_event(&st, 7, EV_COMMAND, "MAIL FROM:<a@b.example>\r\n");
    union event_facts fired = {.fault = {.rule = "busy", .action = "reply"}};
    ev = (struct event){.session = 7, .kind = EV_FAULT, .text = "fault busy", .facts = &fired};
    feed(&st, &ev);
    union event_facts added = {.fault = {.rule = "api-1", .action = "drop", .change = "added"}};
    ev = (struct event){.session = 7, .kind = EV_FAULT, .text = "rule added", .facts = &added};
    feed(&st, &ev);
    union event_facts local = {.reply = {.code = 451}};
    ev = (struct event){.session = 7,
                        .kind = EV_REPLY,
                        .local = true,
                        .bytes = (const uint8_t *)"451 4.7.1 Busy\x01\r\nmore\r\n",
                        .len = 23,
                        .facts = &local};
    feed(&st, &ev);
    union event_facts lint = {.lint = {.id = "bare-lf-in-message", .offset = 3}};
    ev = (struct event){.session = 7, .kind = EV_LINT, .text = "bare LF", .facts = &lint};
    feed(&st, &ev);
    ev = (struct event){.session = 7, .kind = EV_ERROR, .dir = DIR_S2C, .text = "reset"};
    feed(&st, &ev);
    union event_facts msg = {.message = {.number = 1, .size = 10, .lines = 2, .sha256 = "ff"}};
    ev = (struct event){.session = 7, .kind = EV_MESSAGE, .text = "message 1", .facts = &msg};
    feed(&st, &ev);
    reply(&st, 7, "554 5.0.0 No\r\n", 554, 0);
    reply(&st, 7, "354 go on\r\n", 354, 500);
    reply(&st, 7, "199 odd\r\n", 199, 0);
    union event_facts v = {.verdict = {.cert = "expired",
                                       .starttls = "offer",
                                       .action = "refused",
                                       .alert = "certificate_expired",
                                       .auth_mech = "",
                                       .auth_user = "",
                                       .good = true}};
    ev = (struct event){.session = 7, .kind = EV_VERDICT, .text = "verdict", .facts = &v};
    feed(&st, &ev);
    assert_true(s->live);
    assert_int_equal(s->ended_us, 0);
    assert_int_equal(s->bytes_up, 21 + 10 + 21 + 29 + 25); /* the commands' bytes so far */

    union event_facts e = {
        .end = {.seconds = 2, .bytes_up = 1234, .bytes_down = 5678, .server_wait_ns = 77777}};
    ev = (struct event){
        .session = 7, .kind = EV_END, .t_ns = 2000000000, .wall_us = 3000000, .facts = &e};
    assert_ptr_equal(feed(&st, &ev), s);

    assert_false(s->live);
    assert_int_equal(s->started_us, 1000007);
    assert_int_equal(s->ended_us, 3000000);
    assert_int_equal(s->t_ns, 2000000000);
    assert_string_equal(s->helo, "client.example");
    assert_true(s->tls_client.on);
    assert_string_equal(s->tls_client.version, "TLSv1.3");
    assert_string_equal(s->tls_client.cipher, "TLS_AES_256_GCM_SHA384");
    assert_string_equal(s->tls_client.sni, "mx.example");
    assert_string_equal(s->tls_client.verify, "");
    assert_true(s->tls_upstream.on);
    assert_string_equal(s->tls_upstream.version, "TLSv1.2");
    assert_string_equal(s->tls_upstream.verify, "verified");
    assert_string_equal(s->auth_mech, "PLAIN");
    assert_int_equal(s->commands, 5);
    /* 220 250 220 250 235 451 554 354 199: the edited and smtptap's own are not counted */
    assert_int_equal(s->replies, 9);
    assert_int_equal(s->codes[0], 5);
    assert_int_equal(s->codes[1], 1);
    assert_int_equal(s->codes[2], 1);
    assert_int_equal(s->codes[3], 1);
    assert_string_equal(s->last_reply, "199 odd");
    assert_int_equal(s->last_latency_ns, 500);
    assert_int_equal(s->max_latency_ns, 9000);
    assert_int_equal(s->faults, 1); /* a change is not a firing */
    assert_int_equal(s->lint, 1);
    assert_int_equal(s->errors, 1);
    assert_int_equal(s->messages, 1);
    /* the end's own counts win */
    assert_int_equal(s->bytes_up, 1234);
    assert_int_equal(s->bytes_down, 5678);
    assert_int_equal(s->server_wait_ns, 77777);
    assert_non_null(s->verdict);
    assert_int_equal(s->verdict->kind, EV_VERDICT);
    assert_string_equal(s->verdict->facts->verdict.alert, "certificate_expired");
    assert_non_null(s->end);
    assert_int_equal(s->end->kind, EV_END);
    assert_int_equal(s->end->facts->end.bytes_down, 5678);
    assert_int_equal(s->events_dropped, 0);

    assert_int_equal(st.live, 0);
    assert_int_equal(st.ended, 1);
    assert_int_equal(st.totals.sessions, 1);
    assert_int_equal(st.totals.commands, 5);
    assert_int_equal(st.totals.messages, 1);
    assert_int_equal(st.totals.faults_fired, 1);
    assert_int_equal(st.totals.lint, 1);
    assert_int_equal(st.totals.bytes_up, 1234);
    assert_int_equal(st.totals.bytes_down, 5678);
    control_store_free(&st);
}

static void the_last_reply_keeps_printable_ascii_of_its_first_line(void **state)
{
    (void)state;
    struct control_store st;
    control_store_init(&st, 10, false);
    struct control_session *s = start(&st, 1);
    reply(&st, 1, "451 4.7.1 Busy\x01\xff\r\n451 more\r\n", 451, 0);
    assert_string_equal(s->last_reply, "451 4.7.1 Busy??");
    char big[2000];
    memset(big, 'x', sizeof big);
    memcpy(big, "250 ", 4);
    big[sizeof big - 1] = 0;
    reply(&st, 1, big, 250, 0);
    assert_int_equal(strlen(s->last_reply), CONTROL_LINE_MAX - 1);
    bytes_event(&st, 1, EV_COMMAND, "HELO\r\n"); /* no name: the next one counts */
    assert_string_equal(s->helo, "");
    bytes_event(&st, 1, EV_COMMAND, "HELOX a\r\n");
    assert_string_equal(s->helo, "");
    bytes_event(&st, 1, EV_COMMAND, "HELO   b.example trailing\r\n");
    assert_string_equal(s->helo, "b.example trailing");
    bytes_event(&st, 1, EV_COMMAND, "AUTH\r\n");
    assert_string_equal(s->auth_mech, "");
    bytes_event(&st, 1, EV_COMMAND, "auth login\r\n");
    assert_string_equal(s->auth_mech, "login");
    control_store_free(&st);
}

static void events_of_unknown_sessions_are_ignored(void **state)
{
    (void)state;
    struct control_store st;
    control_store_init(&st, 10, false);
    assert_null(bytes_event(&st, 3, EV_COMMAND, "NOOP\r\n"));
    assert_null(end(&st, 3));
    assert_int_equal(st.live, 0);
    assert_int_equal(st.ended, 0);
    assert_int_equal(st.totals.commands, 0);
    assert_null(control_store_find(&st, 3));
    assert_null(control_store_find(&st, 0));
    control_store_free(&st);
}

/* ---- the ring and the index ----------------------------------------------------------------- */

/* The records newest first, as ids. */
static size_t ids(const struct control_store *st, uint64_t *out, size_t max)
{
    size_t n = 0;
    const struct control_session *prev = NULL;
    for (const struct control_session *s = st->newest; s; s = s->older) {
        assert_ptr_equal(s->newer, prev);
        if (n < max) out[n] = s->id;
        n++;
        prev = s;
    }
    assert_ptr_equal(st->oldest, prev);
    return n;
}

static void the_ring_keeps_recent_ended_sessions_and_every_live_one(void **state)
{
    (void)state;
    struct control_store st;
    control_store_init(&st, 3, false);
    start(&st, 1); /* stays live throughout */
    for (uint64_t id = 2; id <= 8; id++) {
        start(&st, id);
        assert_non_null(end(&st, id));
    }
    start(&st, 9);
    uint64_t got[16];
    assert_int_equal(ids(&st, got, 16), 5);
    static const uint64_t want[] = {9, 8, 7, 6, 1};
    assert_memory_equal(got, want, sizeof want);
    assert_int_equal(st.live, 2);
    assert_int_equal(st.ended, 3);
    assert_int_equal(st.nrecords, 5);
    for (uint64_t id = 2; id <= 5; id++) assert_null(control_store_find(&st, id));
    assert_non_null(control_store_find(&st, 1));
    assert_true(control_store_find(&st, 1)->live);
    /* ending the oldest live one: it is the oldest ended now, and goes first */
    assert_null(end(&st, 1));
    assert_null(control_store_find(&st, 1));
    assert_int_equal(st.ended, 3);
    /* ended out of order: the oldest record goes, not the first ended */
    start(&st, 10);
    assert_non_null(end(&st, 9)); /* 6 goes */
    assert_null(control_store_find(&st, 6));
    assert_non_null(end(&st, 10)); /* 7 goes */
    assert_int_equal(ids(&st, got, 16), 3);
    static const uint64_t want2[] = {10, 9, 8};
    assert_memory_equal(got, want2, sizeof want2);
    assert_int_equal(st.totals.sessions, 10);
    control_store_free(&st);
}

static void with_no_ring_an_ended_session_is_dropped_at_once(void **state)
{
    (void)state;
    struct control_store st;
    control_store_init(&st, 0, false);
    start(&st, 1);
    start(&st, 2);
    assert_null(end(&st, 1));
    assert_null(control_store_find(&st, 1));
    assert_non_null(control_store_find(&st, 2));
    assert_int_equal(st.ended, 0);
    assert_int_equal(st.live, 1);
    assert_int_equal(st.nrecords, 1);
    assert_ptr_equal(st.newest, st.oldest);
    assert_null(end(&st, 2));
    assert_null(st.newest);
    assert_null(st.oldest);
    assert_int_equal(st.totals.sessions, 2);
    assert_int_equal(st.totals.bytes_up, 20);
    control_store_free(&st);
}

static void find_by_id_across_index_growth(void **state)
{
    (void)state;
    struct control_store st;
    control_store_init(&st, 5000, false);
    enum { N = 3000 };
    /* ids spread out, and ids that share their low bits */
    for (uint64_t i = 1; i <= N; i++) start(&st, i % 2 ? i : i << 40);
    assert_true(st.nbuckets >= N);
    for (uint64_t i = 1; i <= N; i++) {
        uint64_t id = i % 2 ? i : i << 40;
        struct control_session *s = control_store_find(&st, id);
        if (!s || s->id != id) fail_msg("session %llu not found", (unsigned long long)id);
    }
    assert_null(control_store_find(&st, 2));
    assert_null(control_store_find(&st, N + 1));
    for (uint64_t i = 1; i <= N; i += 2) end(&st, i);
    for (uint64_t i = 1; i <= N; i++) {
        uint64_t id = i % 2 ? i : i << 40;
        assert_non_null(control_store_find(&st, id));
    }
    control_store_free(&st);
    /* a small ring: records come and go while the index grows past 256 */
    control_store_init(&st, 100, false);
    for (uint64_t i = 1; i <= 1000; i++) {
        start(&st, i);
        if (i > 300) end(&st, i - 300);
    }
    assert_int_equal(st.live, 300);
    assert_int_equal(st.ended, 100);
    for (uint64_t i = 1; i <= 1000; i++) {
        bool kept = i > 600;
        if ((control_store_find(&st, i) != NULL) != kept)
            fail_msg("session %llu: found %d", (unsigned long long)i, !kept);
    }
    control_store_free(&st);
}

/* Random starts and ends against a plain model: every live session is kept, and of the ended
 * ones, when more than recent_max, the oldest started goes first; find agrees with the model
 * after every step, and the list is newest first. */
static void random_sessions_agree_with_a_model(void **state)
{
    (void)state;
    uint32_t rng = 12345;
    for (int round = 0; round < 40; round++) {
        size_t recent = (rng = rng * 1103515245u + 12345u) >> 16 & 7;
        struct control_store st;
        control_store_init(&st, recent, false);
        enum { MAX = 700 };
        /* the model: ids in start order, and whether each is kept and live */
        static uint64_t order[MAX];
        static bool kept[MAX], live[MAX];
        size_t n = 0, nlive = 0;
        for (int op = 0; op < 1200; op++) {
            rng = rng * 1103515245u + 12345u;
            bool do_start = n < MAX && (nlive == 0 || (rng >> 16) % 3 != 0);
            if (do_start) {
                order[n] = n * 1000003u + 1; /* ids that are not small and not dense */
                kept[n] = live[n] = true;
                start(&st, order[n]);
                n++, nlive++;
            } else {
                size_t pick = (rng >> 8) % nlive, i = 0;
                for (;; i++)
                    if (live[i] && pick-- == 0) break;
                live[i] = false, nlive--;
                end(&st, order[i]);
                /* the model's trim: while more than recent ended are kept, the oldest goes */
                size_t ended = 0;
                for (size_t k = 0; k < n; k++) ended += kept[k] && !live[k];
                for (size_t k = 0; k < n && ended > recent; k++)
                    if (kept[k] && !live[k]) kept[k] = false, ended--;
            }
            size_t want = 0;
            for (size_t k = 0; k < n; k++) {
                struct control_session *s = control_store_find(&st, order[k]);
                if ((s != NULL) != kept[k])
                    fail_msg("round %d op %d: session %llu kept %d, found %d", round, op,
                             (unsigned long long)order[k], kept[k], s != NULL);
                if (s) assert_int_equal(s->live, live[k]);
                want += kept[k];
            }
            assert_int_equal(st.nrecords, want);
            assert_int_equal(st.live, nlive);
        }
        /* newest first, in start order */
        uint64_t got[MAX];
        size_t m = ids(&st, got, MAX), j = 0;
        for (size_t k = n; k-- > 0;)
            if (kept[k]) assert_int_equal(got[j++], order[k]);
        assert_int_equal(m, j);
        control_store_free(&st);
    }
}

/* ---- stored events -------------------------------------------------------------------------- */

static void events_past_the_bound_are_counted_and_the_end_is_still_stored(void **state)
{
    (void)state;
    struct control_store st;
    control_store_init(&st, 10, false);
    struct control_session *s = start(&st, 1);
    static char line[4096];
    memset(line, 'a', sizeof line - 3);
    memcpy(line + sizeof line - 3, "\r\n", 3);
    size_t n = 0;
    while (s->events_dropped == 0) {
        bytes_event(&st, 1, EV_COMMAND, line);
        n++;
        assert_true(n < 1000);
    }
    assert_true(s->events_bytes <= CONTROL_EVENTS_MAX);
    size_t kept = s->nevents;
    for (int i = 0; i < 10; i++) bytes_event(&st, 1, EV_COMMAND, line);
    assert_int_equal(s->events_dropped, 11);
    assert_int_equal(s->nevents, kept);
    assert_int_equal(s->commands, n + 10); /* the summary stays whole */
    union event_facts fired = {.fault = {.rule = "busy", .action = "drop"}};
    struct event ev = {.session = 1, .kind = EV_FAULT, .text = "fault", .facts = &fired};
    feed(&st, &ev);
    ev = (struct event){.session = 1, .kind = EV_ERROR, .text = "closed"};
    feed(&st, &ev);
    assert_int_equal(s->nevents, kept + 2); /* kept past the bound: they matter most */
    assert_non_null(end(&st, 1));
    assert_non_null(s->end);
    assert_int_equal(s->nevents, kept + 3);
    assert_int_equal(s->events_dropped, 11);
    struct kinds k = kinds_of(s);
    assert_int_equal(k.count[EV_END], 1);
    assert_int_equal(k.count[EV_START], 1);
    assert_int_equal(k.count[EV_FAULT], 1);
    assert_int_equal(stored(s), s->nevents);
    control_store_free(&st);
}

/* Defect: the kinds kept past the bound had a bound of their own (twice CONTROL_EVENTS_MAX),
 * and EV_END was one of them: a long session of many messages (EV_MESSAGE and EV_DELIVERY
 * are kept past the bound) lost its end, and with it s->end and the capture's last event. */
static void the_end_is_stored_after_any_number_of_kept_events(void **state)
{
    (void)state;
    struct control_store st;
    control_store_init(&st, 10, false);
    struct control_session *s = start(&st, 1);
    static char text[2000];
    memset(text, 'm', sizeof text - 1);
    union event_facts msg = {.message = {.number = 1, .size = 10, .lines = 2, .sha256 = "ff"}};
    struct event ev = {.session = 1, .kind = EV_MESSAGE, .text = text, .facts = &msg};
    while (s->events_dropped == 0) feed(&st, &ev);
    /* then small ones, until not even they fit */
    ev = (struct event){.session = 1, .kind = EV_ERROR, .text = "e"};
    while (s->events_dropped == 1) feed(&st, &ev);
    assert_true(s->events_bytes > CONTROL_EVENTS_MAX);
    assert_true(s->events_bytes <= 2 * CONTROL_EVENTS_MAX);
    union event_facts v = {.verdict = {.cert = "good",
                                       .starttls = "offer",
                                       .action = "sent-mail",
                                       .alert = "",
                                       .auth_mech = "",
                                       .auth_user = "",
                                       .good = true}};
    ev = (struct event){.session = 1, .kind = EV_VERDICT, .text = "verdict", .facts = &v};
    feed(&st, &ev);
    assert_non_null(s->verdict);
    assert_non_null(end(&st, 1));
    assert_non_null(s->end);
    assert_int_equal(s->end->kind, EV_END);
    assert_int_equal(s->events_dropped, 2);
    /* the end is the last event given back */
    const struct event *last = NULL;
    control_session_each_event(s, last_event, &last);
    assert_ptr_equal(last, s->end);
    control_store_free(&st);
}

static void content(struct control_store *st, uint64_t id, bool past_preview)
{
    struct event ev = {.session = id,
                       .kind = EV_CONTENT,
                       .dir = DIR_C2S,
                       .past_preview = past_preview,
                       .bytes = (const uint8_t *)"Subject: x",
                       .len = 10};
    feed(st, &ev);
}

static void wire_and_body_are_never_stored_past_preview_lines_only_when_asked(void **state)
{
    (void)state;
    for (int whole = 0; whole < 2; whole++) {
        struct control_store st;
        control_store_init(&st, 10, whole);
        struct control_session *s = start(&st, 1);
        bytes_event(&st, 1, EV_WIRE, "EHLO x\r\n");
        bytes_event(&st, 1, EV_BODY, "Subject: x\r\n\r\nbody\r\n");
        content(&st, 1, false);
        content(&st, 1, false);
        content(&st, 1, true);
        content(&st, 1, true);
        content(&st, 1, true);
        struct event ev = {.session = 1, .kind = EV_CLIENT_TLS};
        feed(&st, &ev);
        struct kinds k = kinds_of(s);
        assert_int_equal(k.count[EV_WIRE], 0);
        assert_int_equal(k.count[EV_BODY], 0);
        assert_int_equal(k.count[EV_CONTENT], whole ? 5 : 2);
        assert_int_equal(k.count[EV_CLIENT_TLS], 1);
        assert_int_equal(s->nevents, whole ? 7 : 4);
        assert_int_equal(s->events_dropped, 0);
        control_store_free(&st);
    }
}

/* The events given, to compare with what comes back. */
struct given {
    const struct event *ev[32];
    size_t n, at;
    bool stop_after_two;
};

static void assert_same_event(const struct event *a, const struct event *b)
{
    assert_int_equal(a->session, b->session);
    assert_int_equal(a->t_ns, b->t_ns);
    assert_int_equal(a->wall_us, b->wall_us);
    assert_int_equal(a->kind, b->kind);
    assert_int_equal(a->dir, b->dir);
    assert_int_equal(a->tls, b->tls);
    assert_int_equal(a->local, b->local);
    assert_int_equal(a->to_smtptap, b->to_smtptap);
    assert_int_equal(a->past_preview, b->past_preview);
    assert_int_equal(a->len, b->len);
    assert_int_equal(a->bytes == NULL, b->bytes == NULL);
    if (a->len) assert_memory_equal(a->bytes, b->bytes, a->len);
    assert_int_equal(a->text == NULL, b->text == NULL);
    if (a->text) assert_string_equal(a->text, b->text);
    assert_int_equal(a->facts == NULL, b->facts == NULL);
    if (!a->facts) return;
    const union event_facts *x = a->facts, *y = b->facts;
    switch (a->kind) {
    case EV_START:
    case EV_UPSTREAM: assert_memory_equal(&x->endpoints, &y->endpoints, sizeof x->endpoints); break;
    case EV_REPLY:
        assert_int_equal(x->reply.code, y->reply.code);
        assert_int_equal(x->reply.latency_ns, y->reply.latency_ns);
        assert_int_equal(x->reply.edited_from_len, y->reply.edited_from_len);
        if (x->reply.edited_from_len)
            assert_memory_equal(x->reply.edited_from, y->reply.edited_from,
                                x->reply.edited_from_len);
        break;
    case EV_INFO:
        assert_int_equal(x->tls.upstream, y->tls.upstream);
        assert_string_equal(x->tls.version, y->tls.version);
        assert_string_equal(x->tls.cipher, y->tls.cipher);
        assert_string_equal(x->tls.sni, y->tls.sni);
        assert_string_equal(x->tls.verify, y->tls.verify);
        assert_string_equal(x->tls.peer_sha256, y->tls.peer_sha256);
        break;
    case EV_FAULT:
        assert_string_equal(x->fault.rule, y->fault.rule);
        assert_string_equal(x->fault.action, y->fault.action);
        assert_int_equal(x->fault.change == NULL, y->fault.change == NULL);
        if (x->fault.change) assert_string_equal(x->fault.change, y->fault.change);
        break;
    case EV_LINT:
        assert_string_equal(x->lint.id, y->lint.id);
        assert_int_equal(x->lint.offset, y->lint.offset);
        break;
    case EV_MESSAGE:
        assert_int_equal(x->message.number, y->message.number);
        assert_int_equal(x->message.size, y->message.size);
        assert_string_equal(x->message.sha256, y->message.sha256);
        break;
    case EV_END: assert_memory_equal(&x->end, &y->end, sizeof x->end); break;
    default: fail_msg("no comparison for kind %d", a->kind);
    }
}

static bool compare_next(void *ctx, const struct event *ev)
{
    struct given *g = ctx;
    assert_true(g->at < g->n);
    assert_same_event(g->ev[g->at], ev);
    g->at++;
    return !(g->stop_after_two && g->at == 2);
}

static void stored_events_come_back_equal_and_in_order(void **state)
{
    (void)state;
    struct control_store st;
    control_store_init(&st, 10, false);
    struct given g = {.n = 0};
    union event_facts ends = {.endpoints = {addr4("192.0.2.9", 1), addr4("127.0.0.1", 25)}};
    struct event e0 = {
        .session = 4, .kind = EV_START, .t_ns = 0, .wall_us = 99, .text = "start", .facts = &ends};
    struct event e1 = {.session = 4,
                       .kind = EV_COMMAND,
                       .dir = DIR_C2S,
                       .t_ns = 10,
                       .wall_us = 100,
                       .tls = true,
                       .bytes = (const uint8_t *)"EHLO x\r\n",
                       .len = 8};
    union event_facts rf = {.reply = {.code = 250,
                                      .latency_ns = 42,
                                      .edited_from = (const uint8_t *)"250-a\r\n250 STARTTLS\r\n",
                                      .edited_from_len = 21}};
    struct event e2 = {.session = 4,
                       .kind = EV_REPLY,
                       .dir = DIR_S2C,
                       .t_ns = 20,
                       .local = true,
                       .bytes = (const uint8_t *)"250 a\r\n",
                       .len = 7,
                       .facts = &rf};
    union event_facts tf = {.tls = {.upstream = true,
                                    .version = "TLSv1.3",
                                    .cipher = "C",
                                    .sni = "",
                                    .peer_subject = "s",
                                    .peer_issuer = "i",
                                    .peer_sha256 = "h",
                                    .verify = "verified"}};
    struct event e3 = {.session = 4, .kind = EV_INFO, .t_ns = 30, .text = "tls", .facts = &tf};
    union event_facts ff = {.fault = {.rule = "r", .action = "drop", .change = "removed"}};
    struct event e4 = {.session = 4, .kind = EV_FAULT, .t_ns = 40, .text = "!!", .facts = &ff};
    struct event e5 = {
        .session = 4, .kind = EV_CONTENT, .t_ns = 50, .bytes = (const uint8_t *)"", .len = 0};
    struct event e6 = {.session = 4,
                       .kind = EV_CONTENT,
                       .t_ns = 55,
                       .past_preview = true,
                       .bytes = (const uint8_t *)"line 41",
                       .len = 7};
    union event_facts lf = {.lint = {.id = "x", .offset = -1}};
    struct event e7 = {.session = 4, .kind = EV_LINT, .t_ns = 60, .text = "lint", .facts = &lf};
    union event_facts mf = {.message = {.number = 1, .size = 2, .lines = 3, .sha256 = "00"}};
    struct event e8 = {.session = 4, .kind = EV_MESSAGE, .t_ns = 70, .text = "m", .facts = &mf};
    union event_facts ef = {
        .end = {
            .seconds = 0.5, .commands = 1, .bytes_up = 8, .bytes_down = 7, .server_wait_ns = 42}};
    struct event e9 = {.session = 4, .kind = EV_END, .t_ns = 80, .wall_us = 200, .facts = &ef};
    const struct event *in[] = {&e0, &e1, &e2, &e3, &e4, &e5, &e6, &e7, &e8, &e9};
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) {
        feed(&st, in[i]);
        if (in[i] != &e6) g.ev[g.n++] = in[i]; /* past the preview: not kept */
    }
    const struct control_session *s = control_store_find(&st, 4);
    assert_non_null(s);
    assert_int_equal(s->nevents, g.n);
    control_session_each_event(s, compare_next, &g);
    assert_int_equal(g.at, g.n);
    /* fn returning false stops the walk */
    g.at = 0;
    g.stop_after_two = true;
    control_session_each_event(s, compare_next, &g);
    assert_int_equal(g.at, 2);
    control_store_free(&st);
}

static void many_events_span_chunks_and_come_back_in_order(void **state)
{
    (void)state;
    struct control_store st;
    control_store_init(&st, 10, false);
    struct control_session *s = start(&st, 1);
    char line[64];
    for (int i = 0; i < 3000; i++) {
        snprintf(line, sizeof line, "RCPT TO:<r%d@x.example>\r\n", i);
        bytes_event(&st, 1, EV_COMMAND, line);
    }
    /* one event larger than a chunk */
    static char big[40000];
    memset(big, 'b', sizeof big - 1);
    bytes_event(&st, 1, EV_COMMAND, big);
    bytes_event(&st, 1, EV_COMMAND, "QUIT\r\n");
    assert_int_equal(stored(s), 3003);
    assert_int_equal(s->events_dropped, 0);
    control_store_free(&st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_whole_session_makes_its_summary),
        cmocka_unit_test(the_last_reply_keeps_printable_ascii_of_its_first_line),
        cmocka_unit_test(events_of_unknown_sessions_are_ignored),
        cmocka_unit_test(the_ring_keeps_recent_ended_sessions_and_every_live_one),
        cmocka_unit_test(with_no_ring_an_ended_session_is_dropped_at_once),
        cmocka_unit_test(find_by_id_across_index_growth),
        cmocka_unit_test(random_sessions_agree_with_a_model),
        cmocka_unit_test(events_past_the_bound_are_counted_and_the_end_is_still_stored),
        cmocka_unit_test(the_end_is_stored_after_any_number_of_kept_events),
        cmocka_unit_test(wire_and_body_are_never_stored_past_preview_lines_only_when_asked),
        cmocka_unit_test(stored_events_come_back_equal_and_in_order),
        cmocka_unit_test(many_events_span_chunks_and_come_back_in_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
