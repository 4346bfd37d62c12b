/* test_writer_thread.c - unit tests for writer_thread.h with a real thread and loop: every
 * event reaches its writers whole and in order (big ones too), a capture's close comes after
 * its events and its flush never after its close, flushes are per hand-over, a wait is called
 * back once its item is written, and a slow writer slows the loop instead of losing events. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "smtptap/writer_thread.h"

enum { MAX_RECORDS = 20000 };

struct record {
    int writer;
    char what; /* 'w' write, 'f' flush, 'c' close */
    uint64_t session, len, sum;
    uint64_t t_ns;    /* writes: the event's */
    int kind;         /* writes: the event's */
    bool past, bytes; /* writes: past_preview, and whether it had bytes */
};

/* Written by the thread only; read after writer_thread_stop (which joins it). */
static struct record records[MAX_RECORDS];
static size_t nrecords;
static unsigned slow_us;

struct recorder {
    struct event_writer base;
    int id;
};

static void put(int writer, char what, uint64_t session, uint64_t len, uint64_t sum)
{
    assert_true(nrecords < MAX_RECORDS);
    records[nrecords++] =
        (struct record){.writer = writer, .what = what, .session = session, .len = len, .sum = sum};
}

static uint64_t checksum(const uint8_t *b, size_t len)
{
    uint64_t h = 1469598103934665603u;
    for (size_t i = 0; i < len; i++) h = (h ^ b[i]) * 1099511628211u;
    return h;
}

static void rec_write(struct event_writer *w, const struct event *ev)
{
    if (slow_us) usleep(slow_us);
    put(((struct recorder *)w)->id, 'w', ev->session, ev->len, checksum(ev->bytes, ev->len));
    records[nrecords - 1].t_ns = ev->t_ns;
    records[nrecords - 1].kind = (int)ev->kind;
    records[nrecords - 1].past = ev->past_preview;
    records[nrecords - 1].bytes = ev->bytes != NULL;
}

static void rec_flush(struct event_writer *w)
{
    put(((struct recorder *)w)->id, 'f', 0, 0, 0);
}

static void rec_close(struct event_writer *w)
{
    put(((struct recorder *)w)->id, 'c', 0, 0, 0);
}

static struct recorder recorder(int id)
{
    return (struct recorder){.base = {.write = rec_write,
                                      .close = rec_close,
                                      .flush = rec_flush,
                                      .flush_by_owner = true},
                             .id = id};
}

static uint8_t *payload(uint64_t n, size_t len)
{
    uint8_t *b = malloc(len ? len : 1);
    for (size_t i = 0; i < len; i++) b[i] = (uint8_t)(n * 31 + i * 7);
    return b;
}

static size_t size_of(uint64_t n)
{
    if (n % 97 == 0) return 3 * 1024 * 1024; /* over a hand-over's worth */
    if (n % 13 == 0) return 200 * 1024;      /* over a block */
    return (size_t)(n * 37 % 700);
}

static void events_reach_their_writers_in_order(void **state)
{
    (void)state;
    nrecords = 0;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct recorder live = recorder(0), stream = recorder(1), a = recorder(2), b = recorder(3);
    struct writer_thread *t =
        writer_thread_start(&loop, &live.base, &stream.base, NULL, 8 * 1024 * 1024);
    assert_non_null(t);
    enum { N = 300 };
    uint64_t sums[N];
    for (uint64_t n = 0; n < N; n++) {
        size_t len = size_of(n);
        uint8_t *bytes = payload(n, len);
        sums[n] = checksum(bytes, len);
        struct event ev = {.session = n % 2 ? 2 : 1, .kind = EV_WIRE, .bytes = bytes, .len = len};
        writer_thread_write(t, n % 2 ? &b.base : &a.base, &ev);
        free(bytes);                                   /* the thread has a copy */
        if (n % 10 == 0) uv_run(&loop, UV_RUN_NOWAIT); /* a loop turn: a hand-over */
    }
    writer_thread_close(t, &a.base);
    writer_thread_close(t, &b.base);
    writer_thread_stop(t);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);

    uint64_t next[4] = {0, 0, 0, 1}; /* the next event each writer should see */
    bool closed[4] = {false};
    for (size_t i = 0; i < nrecords; i++) {
        const struct record *r = &records[i];
        if (r->what == 'c') {
            closed[r->writer] = true;
            continue;
        }
        assert_false(closed[r->writer]); /* nothing after a close, not even a flush */
        if (r->what == 'f') continue;
        uint64_t n = next[r->writer];
        assert_true(n < N);
        assert_int_equal(r->len, size_of(n));
        assert_int_equal(r->sum, sums[n]);
        assert_int_equal(r->session, n % 2 ? 2 : 1);
        next[r->writer] += r->writer >= 2 ? 2 : 1; /* a and b: every other one */
    }
    assert_int_equal(next[0], N);
    assert_int_equal(next[1], N);
    assert_int_equal(next[2], N);
    assert_int_equal(next[3], N + 1);
    assert_true(closed[2] && closed[3]);
    assert_false(closed[0] || closed[1]); /* live and stream are the caller's to close */
}

static void flushes_are_per_hand_over(void **state)
{
    (void)state;
    nrecords = 0;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct recorder a = recorder(2);
    struct writer_thread *t = writer_thread_start(&loop, NULL, NULL, NULL, 1024 * 1024);
    for (int turn = 0; turn < 5; turn++) {
        for (int i = 0; i < 50; i++) {
            struct event ev = {.kind = EV_REPLY, .bytes = (const uint8_t *)"250 ok\r\n", .len = 8};
            writer_thread_write(t, &a.base, &ev);
        }
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    writer_thread_stop(t);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    size_t writes = 0, flushes = 0;
    for (size_t i = 0; i < nrecords; i++) {
        writes += records[i].what == 'w';
        flushes += records[i].what == 'f';
    }
    assert_int_equal(writes, 250);
    assert_true(flushes >= 1 && flushes <= 5); /* one per hand-over at most, not per reply */
    assert_int_equal(records[nrecords - 1].what, 'f'); /* the last writes are flushed */
}

/* The n-th event of message_lines_arrive_one_by_one: mostly message lines that the loop
 * gathers into one item (the same session and clock reading), sometimes one that cannot
 * join (another session, another reading, past the preview, too long, another kind). */
static struct event nth_line(uint64_t n, uint8_t *bytes)
{
    size_t len = n % 211 == 0 ? 5000 : (size_t)(n * 37 % 1100); /* empty ones too */
    for (size_t i = 0; i < len; i++) bytes[i] = (uint8_t)(n * 13 + i);
    return (struct event){.session = n / 700 % 2 ? 7 : 8,
                          .t_ns = n / 90,
                          .kind = n % 500 == 499 ? EV_REPLY : EV_CONTENT,
                          .past_preview = n % 300 >= 40,
                          .bytes = bytes,
                          .len = len};
}

static void message_lines_arrive_one_by_one(void **state)
{
    (void)state;
    nrecords = 0;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct recorder a = recorder(2);
    struct writer_thread *t = writer_thread_start(&loop, NULL, NULL, NULL, 64 * 1024 * 1024);
    enum { N = 6000 };
    static uint8_t bytes[5000];
    for (uint64_t n = 0; n < N; n++) {
        struct event ev = nth_line(n, bytes);
        writer_thread_write(t, &a.base, &ev);
        if (n % 1000 == 999) uv_run(&loop, UV_RUN_NOWAIT); /* a hand-over amid lines */
    }
    writer_thread_stop(t);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    uint64_t n = 0;
    for (size_t i = 0; i < nrecords; i++) {
        const struct record *r = &records[i];
        if (r->what != 'w') continue;
        struct event want = nth_line(n, bytes);
        assert_int_equal(r->kind, want.kind);
        assert_int_equal(r->session, want.session);
        assert_int_equal(r->t_ns, want.t_ns);
        assert_int_equal(r->past, want.past_preview);
        assert_int_equal(r->len, want.len);
        assert_int_equal(r->sum, checksum(want.bytes, want.len));
        assert_true(r->bytes);
        n++;
    }
    assert_int_equal(n, N);
}

static bool called;
static uint64_t called_mark, written_then;
static struct writer_thread *current;
static uv_timer_t deadline;

static void on_written(struct writer_wait *w)
{
    called = true;
    called_mark = w->mark;
    written_then = writer_thread_written(current);
    uv_timer_stop(&deadline);
}

static void timed_out(uv_timer_t *h)
{
    (void)h;
}

static void a_wait_is_called_back_once_its_item_is_written(void **state)
{
    (void)state;
    nrecords = 0;
    slow_us = 2000; /* the thread is behind when the wait begins */
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct recorder a = recorder(2);
    current = writer_thread_start(&loop, NULL, NULL, NULL, 1024 * 1024);
    for (int i = 0; i < 20; i++) {
        struct event ev = {.kind = EV_DELIVERY};
        writer_thread_write(current, &a.base, &ev);
    }
    uint64_t mark = writer_thread_mark(current);
    assert_int_equal(mark, 20);
    assert_true(writer_thread_written(current) < mark);
    struct writer_wait w = {0};
    called = false;
    writer_thread_wait(current, &w, mark, on_written);
    uv_timer_init(&loop, &deadline);
    uv_timer_start(&deadline, timed_out, 10000, 0); /* keeps the loop running until then */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(called);
    assert_int_equal(called_mark, 20);
    assert_true(written_then >= 20);
    assert_false(w.waiting);
    /* a wait cancelled before it is over is never called */
    struct event ev = {.kind = EV_DELIVERY};
    writer_thread_write(current, &a.base, &ev);
    called = false;
    writer_thread_wait(current, &w, writer_thread_mark(current), on_written);
    writer_thread_cancel(current, &w);
    assert_false(w.waiting);
    slow_us = 0;
    writer_thread_stop(current);
    uv_close((uv_handle_t *)&deadline, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_false(called);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* A writer far slower than the loop, a queue of 4 KiB: the loop waits, nothing is lost. */
static void a_slow_writer_slows_the_loop_and_loses_nothing(void **state)
{
    (void)state;
    nrecords = 0;
    slow_us = 100;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct recorder a = recorder(2);
    struct writer_thread *t = writer_thread_start(&loop, NULL, NULL, NULL, 4096);
    for (uint64_t n = 0; n < 2000; n++) {
        uint8_t bytes[200];
        memset(bytes, (int)n, sizeof bytes);
        struct event ev = {.session = n, .kind = EV_WIRE, .bytes = bytes, .len = sizeof bytes};
        writer_thread_write(t, &a.base, &ev);
        if (n % 5 == 0) uv_run(&loop, UV_RUN_NOWAIT);
    }
    writer_thread_stop(t);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    slow_us = 0;
    uint64_t n = 0;
    for (size_t i = 0; i < nrecords; i++) {
        if (records[i].what != 'w') continue;
        assert_int_equal(records[i].session, n);
        n++;
    }
    assert_int_equal(n, 2000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(events_reach_their_writers_in_order),
        cmocka_unit_test(flushes_are_per_hand_over),
        cmocka_unit_test(message_lines_arrive_one_by_one),
        cmocka_unit_test(a_wait_is_called_back_once_its_item_is_written),
        cmocka_unit_test(a_slow_writer_slows_the_loop_and_loses_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
