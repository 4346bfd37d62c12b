/* test_config.c - unit tests for building the configuration (config.h) from the command
 * line and the INI file.
 *
 * Each test runs config_from_args on an argv array the way main() does, and checks the
 * resulting values or the result code and the words of the message the user will read.
 * INI files are written to a private temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "smtptap/config.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* ---- helpers ------------------------------------------------------------------------------ */

struct fixture {
    struct config cfg;
    struct buf err;
    char err_text[4096];
    char dir[64];
    char path[128];
};

static int fixture_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    buf_init(&f->err);
    strcpy(f->dir, "/tmp/smtptap-test-config-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    snprintf(f->path, sizeof f->path, "%s/smtptap.ini", f->dir);
    *state = f;
    return 0;
}

static int fixture_teardown(void **state)
{
    struct fixture *f = *state;
    unlink(f->path);
    rmdir(f->dir);
    buf_free(&f->err);
    free(f);
    return 0;
}

/* Runs config_from_args on a NULL-terminated list of arguments (argv[0] is added). The
 * message, if any, is left in f->err_text. */
static enum config_result run_args(struct fixture *f, const char *const *args)
{
    char *argv[64];
    int argc = 0;
    argv[argc++] = "smtptap";
    for (; *args; args++) {
        assert_true(argc < 63);
        argv[argc++] = (char *)*args;
    }
    argv[argc] = NULL;
    buf_reset(&f->err);
    enum config_result r = config_from_args(&f->cfg, argc, argv, &f->err);
    size_t n = buf_size(&f->err);
    assert_true(n < sizeof f->err_text);
    if (n) memcpy(f->err_text, buf_head(&f->err), n);
    f->err_text[n] = 0;
    return r;
}

#define RUN(f, ...) run_args((f), (const char *const[]){__VA_ARGS__, NULL})

static void write_ini(struct fixture *f, const char *text)
{
    FILE *fp = fopen(f->path, "w");
    assert_non_null(fp);
    assert_true(fputs(text, fp) >= 0);
    assert_int_equal(fclose(fp), 0);
}

/* Asserts that the message contains every given word (NULL-terminated list). */
static void assert_message_has(const char *msg, const char *const *words)
{
    for (; *words; words++)
        if (!strstr(msg, *words)) fail_msg("message \"%s\" lacks \"%s\"", msg, *words);
}

#define MESSAGE_HAS(msg, ...) assert_message_has((msg), (const char *const[]){__VA_ARGS__, NULL})

static void assert_listen(const struct config *c, unsigned i, const char *host, unsigned port)
{
    assert_true(i < c->nlisten);
    assert_string_equal(c->listen[i].addr.host, host);
    assert_int_equal(c->listen[i].addr.port, port);
    assert_false(c->listen[i].implicit_tls);
}

/* ---- defaults ------------------------------------------------------------------------------ */

static void no_arguments_gives_the_documented_defaults(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(run_args(f, (const char *const[]){NULL}), CONFIG_OK);
    assert_string_equal(f->err_text, "");
    const struct config *c = &f->cfg;
    assert_int_equal(c->nlisten, 1);
    assert_listen(c, 0, "127.0.0.1", 2525);
    assert_int_equal(c->upstream.kind, UPSTREAM_SINK);
    assert_int_equal(c->idle_timeout_ms, 300000);
    assert_int_equal(c->connect_timeout_ms, 10000);
    assert_int_equal(c->max_sessions, 1000);
    assert_int_equal(c->grace_ms, 5000);
    assert_int_equal(c->verbosity, 0);
    assert_int_equal(c->color, COLOR_AUTO);
    assert_int_equal(c->client_starttls, CLIENT_STARTTLS_PASSTHROUGH);
    assert_int_equal(c->formats, FORMAT_TEXT);
    assert_string_equal(c->capture_dir, "");
    assert_string_equal(c->config_file, "");
}

static void every_flag_sets_its_value(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(RUN(f, "-u", "plain:127.0.0.1:2600", "-d", "/tmp/caps", "--format", "text",
                         "--client-starttls", "passthrough", "--max-sessions", "50",
                         "--idle-timeout", "90s", "--connect-timeout", "250ms", "--color=never",
                         "-q"),
                     CONFIG_OK);
    const struct config *c = &f->cfg;
    assert_int_equal(c->upstream.kind, UPSTREAM_FIXED);
    assert_int_equal(c->upstream.tls, TLS_NONE);
    assert_string_equal(c->upstream.target.host, "127.0.0.1");
    assert_int_equal(c->upstream.target.port, 2600);
    assert_string_equal(c->capture_dir, "/tmp/caps");
    assert_int_equal(c->max_sessions, 50);
    assert_int_equal(c->idle_timeout_ms, 90000);
    assert_int_equal(c->connect_timeout_ms, 250);
    assert_int_equal(c->color, COLOR_NEVER);
    assert_int_equal(c->verbosity, -1);
    assert_int_equal(c->nlisten, 1);
    assert_listen(c, 0, "127.0.0.1", 2525);
}

static void verbose_and_colour_spellings(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(RUN(f, "--verbose", "--colour", "always"), CONFIG_OK);
    assert_int_equal(f->cfg.verbosity, 1);
    assert_int_equal(f->cfg.color, COLOR_ALWAYS);
    assert_int_equal(RUN(f, "-v", "--upstream=transparent"), CONFIG_OK);
    assert_int_equal(f->cfg.verbosity, 1);
    assert_int_equal(f->cfg.upstream.kind, UPSTREAM_TRANSPARENT);
}

/* ---- --listen ------------------------------------------------------------------------------ */

static void repeated_listen_flags_replace_the_default_and_add_up(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(RUN(f, "-l", "127.0.0.1:2600", "--listen", "[::1]:2601", "--listen=0.0.0.0:0"),
                     CONFIG_OK);
    assert_int_equal(f->cfg.nlisten, 3);
    assert_listen(&f->cfg, 0, "127.0.0.1", 2600);
    assert_listen(&f->cfg, 1, "::1", 2601);
    assert_listen(&f->cfg, 2, "0.0.0.0", 0);
}

static void seventeen_listen_addresses_are_too_many(void **state)
{
    struct fixture *f = *state;
    const char *args[2 * 17 + 1];
    char addrs[17][32];
    for (int i = 0; i < 17; i++) {
        snprintf(addrs[i], sizeof addrs[i], "127.0.0.1:%d", 3000 + i);
        args[2 * i] = "-l";
        args[2 * i + 1] = addrs[i];
    }
    args[2 * 16] = NULL;
    assert_int_equal(run_args(f, args), CONFIG_OK);
    assert_int_equal(f->cfg.nlisten, 16);
    args[2 * 16] = "-l";
    args[2 * 17] = NULL;
    assert_int_equal(run_args(f, args), CONFIG_ERR_USAGE);
    MESSAGE_HAS(f->err_text, "--listen", "127.0.0.1:3016", "at most 16 listen addresses");
}

static void implicit_tls_listener_is_refused_as_not_supported_yet(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(RUN(f, "--listen", "tls:127.0.0.1:465"), CONFIG_ERR_USAGE);
    MESSAGE_HAS(f->err_text, "--listen", "tls:127.0.0.1:465", "not supported yet");
}

/* ---- bad values -------------------------------------------------------------------------------
 */

static void bad_listen_value_names_flag_value_and_expected_form(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(RUN(f, "-l", "mail.example.com:25"), CONFIG_ERR_USAGE);
    assert_string_equal(f->err_text,
                        "--listen: invalid value \"mail.example.com:25\"; expected a numeric "
                        "address (127.0.0.1, 0.0.0.0, ::1, ::) or localhost");
    assert_int_equal(RUN(f, "--listen", "127.0.0.1"), CONFIG_ERR_USAGE);
    MESSAGE_HAS(f->err_text, "--listen", "\"127.0.0.1\"", "expected [tls:]ADDR:PORT");
}

static void bad_duration_names_flag_value_and_expected_form(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(RUN(f, "--idle-timeout", "5x"), CONFIG_ERR_USAGE);
    assert_string_equal(f->err_text, "--idle-timeout: invalid value \"5x\"; expected a duration "
                                     "such as 250ms, 30s, 5m or 1h");
    assert_int_equal(RUN(f, "--connect-timeout", "0"), CONFIG_ERR_USAGE);
    assert_string_equal(f->err_text,
                        "--connect-timeout: invalid value \"0\"; expected a duration above zero");
}

static void bad_numbers_and_words_are_refused_with_what_is_accepted(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *flag, *value;
        const char *expected;
    } cases[] = {
        {"--max-sessions", "0", "a whole number from 1 to 1000000"},
        {"--max-sessions", "lots", "a whole number from 1 to 1000000"},
        {"--max-sessions", "1000001", "a whole number from 1 to 1000000"},
        {"--color", "sometimes", "auto, always or never"},
        {"--format", "pcap", "text (jsonl, pcap and eml are not supported yet)"},
        {"--client-starttls", "offer", "passthrough (offer and strip are not supported yet)"},
        {"--client-starttls", "maybe", "offer, strip or passthrough"},
        {"--upstream", "nowhere", "sink, transparent, or [tls:|starttls:|plain:]HOST:PORT"},
        {"--upstream", "smtp.example.com:465", "not supported yet"},
        {"--upstream", "starttls:smtp.example.com:587", "not supported yet"},
    };
    for (size_t i = 0; i < NELEM(cases); i++) {
        enum config_result r = RUN(f, cases[i].flag, cases[i].value);
        if (r != CONFIG_ERR_USAGE)
            fail_msg("%s %s: result %d, want 64", cases[i].flag, cases[i].value, (int)r);
        char head[128];
        snprintf(head, sizeof head, "%s: invalid value \"%s\"; expected ", cases[i].flag,
                 cases[i].value);
        if (strncmp(f->err_text, head, strlen(head)) != 0 ||
            !strstr(f->err_text, cases[i].expected))
            fail_msg("%s %s: message \"%s\"", cases[i].flag, cases[i].value, f->err_text);
    }
}

static void short_flag_errors_name_the_long_flag(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(RUN(f, "-u", "bogus"), CONFIG_ERR_USAGE);
    MESSAGE_HAS(f->err_text, "--upstream: invalid value \"bogus\"");
}

/* ---- unknown and malformed flags ---------------------------------------------------------------
 */

static void unknown_long_flag_is_a_usage_error_naming_it(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(RUN(f, "--bogus"), CONFIG_ERR_USAGE);
    assert_int_equal(CONFIG_ERR_USAGE, 64);
    assert_string_equal(f->err_text,
                        "unknown option \"--bogus\"; see smtptap --help for the options");
    assert_int_equal(RUN(f, "-q", "--listne=127.0.0.1:25"), CONFIG_ERR_USAGE);
    MESSAGE_HAS(f->err_text, "unknown option", "--listne=127.0.0.1:25");
}

static void unknown_short_flag_is_a_usage_error_naming_it(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(RUN(f, "-x"), CONFIG_ERR_USAGE);
    assert_string_equal(f->err_text, "unknown option -x; see smtptap --help for the options");
}

static void flag_without_its_value_is_a_usage_error(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(RUN(f, "--listen"), CONFIG_ERR_USAGE);
    assert_string_equal(f->err_text, "--listen needs a value; see smtptap --help");
    assert_int_equal(RUN(f, "-q", "-u"), CONFIG_ERR_USAGE);
    assert_string_equal(f->err_text, "-u needs a value; see smtptap --help");
}

static void switch_given_a_value_is_a_usage_error(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(RUN(f, "--quiet=yes"), CONFIG_ERR_USAGE);
    assert_string_equal(f->err_text, "--quiet takes no value");
}

static void stray_argument_is_a_usage_error(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(RUN(f, "-q", "127.0.0.1:2525"), CONFIG_ERR_USAGE);
    MESSAGE_HAS(f->err_text, "unexpected argument \"127.0.0.1:2525\"");
}

static void later_issue_flags_are_refused_as_not_supported_yet(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(RUN(f, "--keylog=/tmp/keys"), CONFIG_ERR_USAGE);
    MESSAGE_HAS(f->err_text, "--keylog", "not supported yet");
}

/* ---- --help and --version
 * ------------------------------------------------------------------------ */

static void help_and_version_are_results_not_errors(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(RUN(f, "--help"), CONFIG_HELP);
    assert_int_equal(RUN(f, "-h"), CONFIG_HELP);
    assert_int_equal(RUN(f, "--version"), CONFIG_VERSION);
    assert_int_equal(RUN(f, "-V"), CONFIG_VERSION);
    assert_string_equal(f->err_text, "");
}

static void help_wins_over_bad_values_given_before_it(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(RUN(f, "--idle-timeout", "forever", "--help"), CONFIG_HELP);
    assert_int_equal(RUN(f, "-l", "nowhere", "-V"), CONFIG_VERSION);
}

static void usage_text_lists_the_flags(void **state)
{
    (void)state;
    MESSAGE_HAS(config_usage(), "Usage: smtptap", "--listen", "--upstream", "--config",
                "--capture-dir", "--idle-timeout", "--connect-timeout", "--help", "--version",
                "64 usage error", "78 configuration error");
}

static void each_call_starts_from_a_clean_getopt_state(void **state)
{
    struct fixture *f = *state;
    /* "-Vh" stops at V; the h left in getopt's state must not leak into the next call. */
    assert_int_equal(RUN(f, "-Vh"), CONFIG_VERSION);
    assert_int_equal(run_args(f, (const char *const[]){NULL}), CONFIG_OK);
    assert_int_equal(RUN(f, "-xq"), CONFIG_ERR_USAGE);
    assert_int_equal(run_args(f, (const char *const[]){NULL}), CONFIG_OK);
    assert_int_equal(f->cfg.verbosity, 0);
    assert_int_equal(RUN(f, "-qv"), CONFIG_OK);
    assert_int_equal(f->cfg.verbosity, 1);
}

/* ---- the INI file
 * -------------------------------------------------------------------------------- */

static void ini_file_sets_values(void **state)
{
    struct fixture *f = *state;
    write_ini(f, "; smtptap configuration\n"
                 "[listen]\n"
                 "address = 127.0.0.1:3000\n"
                 "address = [::1]:3001\n"
                 "max_sessions = 20\n"
                 "idle_timeout = 1m\n"
                 "client_starttls = passthrough\n"
                 "\n"
                 "[upstream]\n"
                 "target = plain:mail.example.com:25\n"
                 "connect_timeout = 2s\n"
                 "ca =\n"
                 "insecure = no\n"
                 "\n"
                 "[capture]\n"
                 "dir = /var/tmp/smtptap\n"
                 "format = text\n");
    assert_int_equal(RUN(f, "-c", f->path), CONFIG_OK);
    const struct config *c = &f->cfg;
    assert_string_equal(c->config_file, f->path);
    assert_int_equal(c->nlisten, 2);
    assert_listen(c, 0, "127.0.0.1", 3000);
    assert_listen(c, 1, "::1", 3001);
    assert_int_equal(c->max_sessions, 20);
    assert_int_equal(c->idle_timeout_ms, 60000);
    assert_int_equal(c->upstream.kind, UPSTREAM_FIXED);
    assert_string_equal(c->upstream.target.host, "mail.example.com");
    assert_int_equal(c->upstream.target.port, 25);
    assert_int_equal(c->connect_timeout_ms, 2000);
    assert_string_equal(c->capture_dir, "/var/tmp/smtptap");
}

static void command_line_overrides_the_ini_file(void **state)
{
    struct fixture *f = *state;
    write_ini(f, "[listen]\n"
                 "address = 127.0.0.1:3000\n"
                 "idle_timeout = 60s\n"
                 "max_sessions = 20\n"
                 "[upstream]\n"
                 "target = 127.0.0.1:2600\n");
    /* Flags before and after -c: the file is read first whatever the order. */
    assert_int_equal(
        RUN(f, "--idle-timeout", "5s", "-c", f->path, "-u", "sink", "-l", "127.0.0.1:4000"),
        CONFIG_OK);
    const struct config *c = &f->cfg;
    assert_int_equal(c->idle_timeout_ms, 5000);
    assert_int_equal(c->upstream.kind, UPSTREAM_SINK);
    assert_int_equal(c->nlisten, 1);
    assert_listen(c, 0, "127.0.0.1", 4000);
    assert_int_equal(c->max_sessions, 20); /* not on the command line: the file's value */
}

static void ini_listen_addresses_stay_when_no_listen_flag_is_given(void **state)
{
    struct fixture *f = *state;
    write_ini(f, "[listen]\naddress = 127.0.0.1:3000\n");
    assert_int_equal(RUN(f, "--config", f->path, "-q"), CONFIG_OK);
    assert_int_equal(f->cfg.nlisten, 1);
    assert_listen(&f->cfg, 0, "127.0.0.1", 3000);
    assert_int_equal(f->cfg.verbosity, -1);
}

static void ini_unknown_key_names_it_and_lists_the_accepted_keys(void **state)
{
    struct fixture *f = *state;
    write_ini(f, "[listen]\nadress = 127.0.0.1:25\n");
    assert_int_equal(RUN(f, "-c", f->path), CONFIG_ERR_CONFIG);
    assert_int_equal(CONFIG_ERR_CONFIG, 78);
    char want[512];
    snprintf(want, sizeof want,
             "%s: unknown key \"adress\" in [listen]; expected one of: address, client_starttls, "
             "max_sessions, idle_timeout (line 2)",
             f->path);
    assert_string_equal(f->err_text, want);
}

static void ini_unknown_section_is_a_configuration_error(void **state)
{
    struct fixture *f = *state;
    write_ini(f, "[listen]\naddress = 127.0.0.1:3000\n[proxy]\nport = 25\n");
    assert_int_equal(RUN(f, "-c", f->path), CONFIG_ERR_CONFIG);
    MESSAGE_HAS(f->err_text, f->path, "unknown section [proxy]",
                "expected listen, upstream, tls, capture, sink or fault NAME", "(line 4)");
}

static void ini_bad_value_names_section_key_and_value(void **state)
{
    struct fixture *f = *state;
    write_ini(f, "[upstream]\nconnect_timeout = soon\n");
    assert_int_equal(RUN(f, "-c", f->path), CONFIG_ERR_CONFIG);
    char want[512];
    snprintf(want, sizeof want,
             "%s: [upstream] connect_timeout: invalid value \"soon\"; expected a duration such "
             "as 250ms, 30s, 5m or 1h (line 2)",
             f->path);
    assert_string_equal(f->err_text, want);
}

static void ini_line_that_is_not_ini_is_reported_with_its_number(void **state)
{
    struct fixture *f = *state;
    write_ini(f, "[listen]\naddress = 127.0.0.1:3000\nthis is not ini\n");
    assert_int_equal(RUN(f, "-c", f->path), CONFIG_ERR_CONFIG);
    char want[512];
    snprintf(want, sizeof want, "%s: line 3: not an INI line; expected [section] or key = value",
             f->path);
    assert_string_equal(f->err_text, want);
}

static void ini_with_two_mistakes_reports_the_first_one(void **state)
{
    struct fixture *f = *state;
    write_ini(f, "[listen]\nadress = 127.0.0.1:25\nidle = 5s\n");
    assert_int_equal(RUN(f, "-c", f->path), CONFIG_ERR_CONFIG);
    MESSAGE_HAS(f->err_text, "unknown key \"adress\"", "(line 2)");
    if (strstr(f->err_text, "\"idle\""))
        fail_msg("second mistake glued to the first: \"%s\"", f->err_text);
}

static void unreadable_config_file_is_a_configuration_error(void **state)
{
    struct fixture *f = *state;
    char missing[160];
    snprintf(missing, sizeof missing, "%s/missing.ini", f->dir);
    assert_int_equal(RUN(f, "-c", missing), CONFIG_ERR_CONFIG);
    char want[256];
    snprintf(want, sizeof want, "--config %s: cannot read the file: No such file or directory",
             missing);
    assert_string_equal(f->err_text, want);
}

static void directory_as_config_file_is_a_configuration_error(void **state)
{
    struct fixture *f = *state;
    /* fopen() of a directory succeeds on Linux; only the read fails. */
    assert_int_equal(RUN(f, "-l", "127.0.0.1:0", "-c", f->dir), CONFIG_ERR_CONFIG);
    char want[256];
    snprintf(want, sizeof want, "--config %s: cannot read the file: Is a directory", f->dir);
    assert_string_equal(f->err_text, want);
}

static void fault_section_with_an_unknown_key_names_it_and_the_line(void **state)
{
    struct fixture *f = *state;
    write_ini(f, "[fault slow-data]\nafter = DATA\n");
    assert_int_equal(RUN(f, "-c", f->path), CONFIG_ERR_CONFIG);
    MESSAGE_HAS(f->err_text, f->path, "[fault slow-data]", "after", "on, match, nth", "(line 2)");
}

static void later_issue_keys_are_refused_when_enabled_and_accepted_when_off(void **state)
{
    struct fixture *f = *state;
    write_ini(f, "[capture]\ndecode_auth = no\nredact = false\n[tls]\nkeylog =\n");
    assert_int_equal(RUN(f, "-c", f->path), CONFIG_OK);
    assert_string_equal(f->err_text, "");

    write_ini(f, "[tls]\nca_dir = /etc/smtptap/ca\n");
    assert_int_equal(RUN(f, "-c", f->path), CONFIG_ERR_CONFIG);
    MESSAGE_HAS(f->err_text, "[tls] ca_dir = /etc/smtptap/ca", "not supported yet",
                "leave it empty");

    write_ini(f, "[capture]\ndecode_auth = perhaps\n");
    assert_int_equal(RUN(f, "-c", f->path), CONFIG_ERR_CONFIG);
    MESSAGE_HAS(f->err_text, "decode_auth", "\"perhaps\"", "yes or no");
}

static void config_load_file_alone_fills_the_struct(void **state)
{
    struct fixture *f = *state;
    write_ini(f, "[listen]\nidle_timeout = 250ms\n");
    config_defaults(&f->cfg);
    assert_int_equal(config_load_file(&f->cfg, f->path, &f->err), CONFIG_OK);
    assert_int_equal(f->cfg.idle_timeout_ms, 250);
    assert_int_equal(f->cfg.connect_timeout_ms, 10000);
}

#define CONFIG_TEST(fn) cmocka_unit_test_setup_teardown(fn, fixture_setup, fixture_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        CONFIG_TEST(no_arguments_gives_the_documented_defaults),
        CONFIG_TEST(every_flag_sets_its_value),
        CONFIG_TEST(verbose_and_colour_spellings),
        CONFIG_TEST(repeated_listen_flags_replace_the_default_and_add_up),
        CONFIG_TEST(seventeen_listen_addresses_are_too_many),
        CONFIG_TEST(implicit_tls_listener_is_refused_as_not_supported_yet),
        CONFIG_TEST(bad_listen_value_names_flag_value_and_expected_form),
        CONFIG_TEST(bad_duration_names_flag_value_and_expected_form),
        CONFIG_TEST(bad_numbers_and_words_are_refused_with_what_is_accepted),
        CONFIG_TEST(short_flag_errors_name_the_long_flag),
        CONFIG_TEST(unknown_long_flag_is_a_usage_error_naming_it),
        CONFIG_TEST(unknown_short_flag_is_a_usage_error_naming_it),
        CONFIG_TEST(flag_without_its_value_is_a_usage_error),
        CONFIG_TEST(switch_given_a_value_is_a_usage_error),
        CONFIG_TEST(stray_argument_is_a_usage_error),
        CONFIG_TEST(later_issue_flags_are_refused_as_not_supported_yet),
        CONFIG_TEST(help_and_version_are_results_not_errors),
        CONFIG_TEST(help_wins_over_bad_values_given_before_it),
        CONFIG_TEST(usage_text_lists_the_flags),
        CONFIG_TEST(each_call_starts_from_a_clean_getopt_state),
        CONFIG_TEST(ini_file_sets_values),
        CONFIG_TEST(command_line_overrides_the_ini_file),
        CONFIG_TEST(ini_listen_addresses_stay_when_no_listen_flag_is_given),
        CONFIG_TEST(ini_unknown_key_names_it_and_lists_the_accepted_keys),
        CONFIG_TEST(ini_unknown_section_is_a_configuration_error),
        CONFIG_TEST(ini_bad_value_names_section_key_and_value),
        CONFIG_TEST(ini_line_that_is_not_ini_is_reported_with_its_number),
        CONFIG_TEST(ini_with_two_mistakes_reports_the_first_one),
        CONFIG_TEST(unreadable_config_file_is_a_configuration_error),
        CONFIG_TEST(directory_as_config_file_is_a_configuration_error),
        CONFIG_TEST(fault_section_with_an_unknown_key_names_it_and_the_line),
        CONFIG_TEST(later_issue_keys_are_refused_when_enabled_and_accepted_when_off),
        CONFIG_TEST(config_load_file_alone_fills_the_struct),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
