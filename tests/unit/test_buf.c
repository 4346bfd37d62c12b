/* test_buf.c - unit tests for the byte buffer (buf.h): append, consume, compaction,
 * printf, and the release of a large buffer once it is drained. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "smtptap/buf.h"

static void test_buf_append_and_consume_keep_unread_bytes_in_order(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b);
    assert_int_equal(buf_size(&b), 0);
    buf_append(&b, "hello ", 6);
    buf_append(&b, "world", 5);
    buf_append(&b, "ignored", 0);
    assert_int_equal(buf_size(&b), 11);
    assert_memory_equal(buf_head(&b), "hello world", 11);
    buf_consume(&b, 6);
    assert_int_equal(buf_size(&b), 5);
    assert_memory_equal(buf_head(&b), "world", 5);
    buf_consume(&b, 5);
    assert_int_equal(buf_size(&b), 0);
    assert_int_equal(b.off, 0);
    buf_free(&b);
    assert_null(b.data);
}

static void test_buf_compacts_consumed_space_before_growing(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b);
    uint8_t chunk[200];
    for (size_t i = 0; i < sizeof chunk; i++) chunk[i] = (uint8_t)i;
    buf_append(&b, chunk, sizeof chunk);
    size_t cap = b.cap;
    buf_consume(&b, 150);
    /* 50 unread + 100 new fit in the existing storage once the consumed prefix is dropped. */
    buf_append(&b, chunk, 100);
    assert_int_equal(b.cap, cap);
    assert_int_equal(buf_size(&b), 150);
    assert_memory_equal(buf_head(&b), chunk + 150, 50);
    assert_memory_equal(buf_head(&b) + 50, chunk, 100);
    buf_free(&b);
}

static void test_buf_printf_and_append_str_append_text(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b);
    buf_append_str(&b, "code=");
    buf_printf(&b, "%d %s", 250, "ok");
    buf_printf(&b, "%s", "");
    assert_int_equal(buf_size(&b), 11);
    assert_memory_equal(buf_head(&b), "code=250 ok", 11);
    buf_reset(&b);
    assert_int_equal(buf_size(&b), 0);
    buf_printf(&b, "%0300d", 7);
    assert_int_equal(buf_size(&b), 300);
    assert_int_equal(buf_head(&b)[299], '7');
    assert_int_equal(buf_head(&b)[0], '0');
    buf_free(&b);

    /* At the edge of the room there is: one short of it, exactly it, one past it (the
     * text is formatted into the room first, again after growing when it did not fit). */
    for (size_t extra = 0; extra < 3; extra++) {
        buf_init(&b);
        buf_append(&b, "x", 1); /* cap 256 now */
        size_t room = b.cap - b.len;
        size_t n = room - 2 + extra;
        buf_printf(&b, "%0*d", (int)n, 5);
        assert_int_equal(buf_size(&b), 1 + n);
        assert_int_equal(buf_head(&b)[0], 'x');
        assert_int_equal(buf_head(&b)[1], '0');
        assert_int_equal(buf_head(&b)[n], '5');
        buf_printf(&b, "%s", "!");
        assert_int_equal(buf_head(&b)[n + 1], '!');
        buf_free(&b);
    }
}

static void test_buf_fully_consumed_large_buffer_is_released(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b);
    uint8_t *big = calloc(1, 100000);
    assert_non_null(big);
    buf_append(&b, big, 100000);
    buf_consume(&b, 99999);
    assert_non_null(b.data);
    buf_consume(&b, 1);
    assert_null(b.data);
    assert_int_equal(b.cap, 0);
    buf_append(&b, "x", 1);
    assert_int_equal(buf_size(&b), 1);
    free(big);
    buf_free(&b);
}

/* Issue 16, defect 4: buf_head of a buffer without storage (never fed, freed, or released once
 * drained) is a valid pointer to no bytes, never NULL + 0 (undefined behaviour that UBSan
 * reports, and NULL may not be passed to memcpy or memchr even with a length of 0). */
static void test_buf_head_of_an_empty_buffer_is_never_null(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b);
    assert_non_null(buf_head(&b));
    assert_null(memchr(buf_head(&b), '\n', buf_size(&b)));
    buf_append(&b, "abc", 3);
    buf_consume(&b, 3);
    assert_non_null(buf_head(&b));
    buf_free(&b);
    assert_non_null(buf_head(&b));
    uint8_t *big = calloc(1, 100000);
    assert_non_null(big);
    buf_append(&b, big, 100000);
    buf_consume(&b, 100000); /* releases the storage */
    assert_null(b.data);
    assert_non_null(buf_head(&b));
    assert_int_equal(buf_size(&b), 0);
    free(big);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_append_and_consume_keep_unread_bytes_in_order),
        cmocka_unit_test(test_buf_compacts_consumed_space_before_growing),
        cmocka_unit_test(test_buf_printf_and_append_str_append_text),
        cmocka_unit_test(test_buf_fully_consumed_large_buffer_is_released),
        cmocka_unit_test(test_buf_head_of_an_empty_buffer_is_never_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
