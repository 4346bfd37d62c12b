/* test_web_assets.c - unit tests for the live web page compiled into the binary
 * (web_assets.h, generated from proxy/web/ by proxy/web/embed.py): the page, its script and
 * its style sheet are found with their content types; anything else, a path with "..", a
 * prefix or a longer path is not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "smtptap/web_assets.h"

static const struct web_asset *find(const char *path)
{
    return web_asset_find(path, strlen(path));
}

/* True when the asset's bytes hold needle. */
static bool holds(const struct web_asset *a, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; a->len >= n && i <= a->len - n; i++)
        if (memcmp(a->data + i, needle, n) == 0) return true;
    return false;
}

static void the_page_is_served_at_slash_and_index_html(void **state)
{
    (void)state;
    const struct web_asset *root = find("/"), *index = find("/index.html");
    assert_non_null(root);
    assert_non_null(index);
    assert_ptr_equal(root->data, index->data);
    assert_int_equal(root->len, index->len);
    assert_string_equal(root->content_type, "text/html; charset=utf-8");
    assert_true(root->len > 0);
    assert_true(holds(root, "<!DOCTYPE html>"));
}

static void script_and_style_sheet_are_found_with_their_types(void **state)
{
    (void)state;
    const struct web_asset *js = find("/app.js"), *css = find("/style.css");
    assert_non_null(js);
    assert_non_null(css);
    assert_string_equal(js->content_type, "text/javascript; charset=utf-8");
    assert_string_equal(css->content_type, "text/css; charset=utf-8");
    assert_true(js->len > 0);
    assert_true(css->len > 0);
}

static void the_page_references_its_script_and_style_sheet(void **state)
{
    (void)state;
    const struct web_asset *root = find("/");
    assert_non_null(root);
    assert_true(holds(root, "src=\"app.js\""));
    assert_true(holds(root, "href=\"style.css\""));
}

static void the_page_fetches_nothing_from_elsewhere(void **state)
{
    (void)state;
    const char *names[] = {"/", "/app.js", "/style.css"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const struct web_asset *a = find(names[i]);
        assert_non_null(a);
        assert_false(holds(a, "http://"));
        assert_false(holds(a, "https://"));
        assert_false(holds(a, "//cdn"));
    }
}

static void other_paths_are_not_found(void **state)
{
    (void)state;
    const char *bad[] = {"/../etc/passwd", "/nope",       "",          "/app.js/",
                         "/app.j",         "app.js",      "//",        "/index.htm",
                         "/style.css?x=1", "/web/app.js", "/embed.py", "/./app.js",
                         "/APP.JS"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) assert_null(find(bad[i]));
    assert_null(web_asset_find(NULL, 0));
}

static void the_length_is_honoured_not_a_terminating_nul(void **state)
{
    (void)state;
    const char buf[] = "/app.jsXXXX";
    const struct web_asset *a = web_asset_find(buf, 7);
    assert_non_null(a);
    assert_string_equal(a->path, "/app.js");
    assert_null(web_asset_find(buf, 8));
    assert_non_null(web_asset_find("/", 1));
    assert_ptr_equal(web_asset_find("/app.js", 1), find("/")); /* its first byte: "/" */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_page_is_served_at_slash_and_index_html),
        cmocka_unit_test(script_and_style_sheet_are_found_with_their_types),
        cmocka_unit_test(the_page_references_its_script_and_style_sheet),
        cmocka_unit_test(the_page_fetches_nothing_from_elsewhere),
        cmocka_unit_test(other_paths_are_not_found),
        cmocka_unit_test(the_length_is_honoured_not_a_terminating_nul),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
