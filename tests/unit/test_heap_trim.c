/* test_heap_trim.c - unit tests for when freed session memory is handed back (heap_trim.h):
 * once per quarter on the way down from a burst, once more at none left, never for the
 * small numbers of everyday use; a second burst after a partial descent trims again (the
 * defect: the level fell under 64 on the way down and nothing was trimmed after that). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "smtptap/heap_trim.h"

/* Walks the count from `from` to `to` one session at a time; returns the trims said. */
static int walk(struct heap_trim *t, uint64_t from, uint64_t to)
{
    int trims = 0;
    while (from != to) {
        from = from < to ? from + 1 : from - 1;
        trims += heap_trim_due(t, from);
    }
    return trims;
}

static void everyday_use_never_trims(void **state)
{
    (void)state;
    struct heap_trim t = {0};
    for (int round = 0; round < 1000; round++) {
        assert_int_equal(walk(&t, 0, 1 + round % (HEAP_TRIM_MIN_PEAK - 1)), 0);
        assert_int_equal(walk(&t, 1 + round % (HEAP_TRIM_MIN_PEAK - 1), 0), 0);
    }
}

static void a_burst_trims_at_each_quarter_and_at_none(void **state)
{
    (void)state;
    struct heap_trim t = {0};
    assert_int_equal(walk(&t, 0, 2000), 0);
    assert_int_equal(walk(&t, 2000, 501), 0);
    assert_true(heap_trim_due(&t, 500)); /* a quarter of 2000 */
    assert_int_equal(walk(&t, 500, 126), 0);
    assert_true(heap_trim_due(&t, 125));
    assert_int_equal(walk(&t, 125, 31), 1); /* at 31 */
    /* Under HEAP_TRIM_MIN_PEAK now, yet the burst is not over: still trimmed. */
    assert_int_equal(walk(&t, 31, 1), 2); /* at 7 and at 1 */
    assert_true(heap_trim_due(&t, 0));    /* and at none left */
    /* The burst is over: a few sessions afterwards trim nothing. */
    assert_int_equal(walk(&t, 0, 10), 0);
    assert_int_equal(walk(&t, 10, 0), 0);
}

/* Up again before the descent is done: the quarter is of the new level, not the old. */
static void a_second_rise_is_measured_from_its_own_level(void **state)
{
    (void)state;
    struct heap_trim t = {0};
    walk(&t, 0, 1000);
    assert_int_equal(walk(&t, 1000, 250), 1);
    assert_int_equal(walk(&t, 250, 800), 0);
    assert_int_equal(walk(&t, 800, 201), 0);
    assert_true(heap_trim_due(&t, 200));
    assert_int_equal(walk(&t, 200, 0), 4); /* 50, 12, 3, 0 */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(everyday_use_never_trims),
        cmocka_unit_test(a_burst_trims_at_each_quarter_and_at_none),
        cmocka_unit_test(a_second_rise_is_measured_from_its_own_level),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
