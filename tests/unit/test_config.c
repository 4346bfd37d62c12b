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
#include "smtptap/ini_read.h"

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
    config_free(&f->cfg); /* the fault rule sets; harmless on a config without them */
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
    assert_int_equal(c->client_starttls, CLIENT_STARTTLS_OFFER);
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
    assert_true(c->quiet);
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

static void implicit_tls_listener_is_marked(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(RUN(f, "--listen", "tls:127.0.0.1:465", "-l", "127.0.0.1:25"), CONFIG_OK);
    assert_int_equal(f->cfg.nlisten, 2);
    assert_true(f->cfg.listen[0].implicit_tls);
    assert_false(f->cfg.listen[1].implicit_tls);
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
        {"--format", "pcapng", "a comma-separated list of text, jsonl, pcap, eml"},
        {"--format", "text,text", "a comma-separated list of text, jsonl, pcap, eml"},
        {"--format", "text,", "a comma-separated list of text, jsonl, pcap, eml"},
        {"--client-starttls", "maybe", "offer, strip or passthrough"},
        {"--upstream", "nowhere:0", "sink, transparent, or [tls:|starttls:|plain:]HOST[:PORT]"},
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

static void formats_combine_in_any_order(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(RUN(f, "-d", "/tmp/caps", "--format", "eml, PCAP,jsonl,text", "--eml-raw"),
                     CONFIG_OK);
    assert_int_equal(f->cfg.formats, FORMAT_TEXT | FORMAT_JSONL | FORMAT_PCAP | FORMAT_EML);
    assert_true(f->cfg.eml_raw);
    assert_int_equal(RUN(f, "--format", "jsonl"), CONFIG_OK);
    assert_int_equal(f->cfg.formats, FORMAT_JSONL);
}

static void short_flag_errors_name_the_long_flag(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(RUN(f, "-u", "bogus:"), CONFIG_ERR_USAGE);
    MESSAGE_HAS(f->err_text, "--upstream: invalid value \"bogus:\"");
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

static void tls_flags_fill_the_config(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(RUN(f, "--keylog=/tmp/keys", "--ca-dir", "/tmp/ca", "--upstream-ca",
                         "/tmp/up.pem", "--insecure", "-u", "smtp.example.com:465"),
                     CONFIG_OK);
    assert_string_equal(f->cfg.keylog, "/tmp/keys");
    assert_string_equal(f->cfg.ca_dir, "/tmp/ca");
    assert_string_equal(f->cfg.upstream_ca, "/tmp/up.pem");
    assert_true(f->cfg.insecure);
    assert_int_equal(f->cfg.upstream.tls, TLS_IMPLICIT); /* port 465 without a prefix */
    assert_int_equal(RUN(f, "--print-ca"), CONFIG_PRINT_CA);
    assert_int_equal(RUN(f, "--client-starttls", "offer"), CONFIG_OK);
    assert_int_equal(f->cfg.client_starttls, CLIENT_STARTTLS_OFFER);
    assert_int_equal(RUN(f, "--client-starttls", "strip"), CONFIG_OK);
    assert_int_equal(f->cfg.client_starttls, CLIENT_STARTTLS_STRIP);
    assert_int_equal(RUN(f, "-u", "starttls:mail.example:587"), CONFIG_OK);
    assert_int_equal(f->cfg.upstream.tls, TLS_STARTTLS);
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
    assert_true(f->cfg.quiet); /* independent: neither undoes the other */
    assert_int_equal(RUN(f, "-v", "-q"), CONFIG_OK);
    assert_int_equal(f->cfg.verbosity, 1);
    assert_true(f->cfg.quiet);
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
    assert_true(f->cfg.quiet);
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
                "expected listen, upstream, tls, capture, live, sink, control or fault NAME",
                "(line 4)");
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

/* Found by fuzzing (tests/fuzz/fuzz_config.c): a line that is not INI, then a mistake in a
 * later line: the message was the later mistake's, with the first line's number. */
static void ini_line_that_is_not_ini_before_another_mistake_is_the_one_reported(void **state)
{
    struct fixture *f = *state;
    write_ini(f, "[listen]\nthis is not ini\nbogus = 1\n");
    assert_int_equal(RUN(f, "-c", f->path), CONFIG_ERR_CONFIG);
    MESSAGE_HAS(f->err_text, "line 2: not an INI line");
    if (strstr(f->err_text, "bogus")) fail_msg("the later mistake reported: \"%s\"", f->err_text);
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

    write_ini(f, "[tls]\nca_dir = /etc/smtptap/ca\nkeylog = /tmp/k\n[upstream]\ninsecure = yes\n");
    assert_int_equal(RUN(f, "-c", f->path), CONFIG_OK);
    assert_string_equal(f->cfg.ca_dir, "/etc/smtptap/ca");
    assert_true(f->cfg.insecure);

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

/* ---- fault rules: --fault, --seed, [fault NAME], config_reload_faults ---------------------- */

/* Counts the occurrences of needle in hay. */
static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

static void fault_flags_become_rules_named_by_their_place(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(RUN(f, "--fault", "RCPT *@busy.example: reply 450 4.2.0 Mailbox busy", "-q",
                         "--fault", "greeting: reply 421 4.3.2 Go away", "--fault=MAIL: drop"),
                     CONFIG_OK);
    assert_string_equal(f->err_text, "");
    const struct config *c = &f->cfg;
    assert_int_equal(c->cli_faults.count, 3);
    assert_int_equal(c->file_faults.count, 0);
    assert_int_equal(c->faults.count, 3);
    const struct fault_rule *r = c->faults.rules;
    assert_string_equal(r[0].name, "flag 1");
    assert_int_equal(r[0].stage, FAULT_RCPT);
    assert_string_equal(r[0].match, "*@busy.example");
    assert_int_equal(r[0].action, FAULT_REPLY);
    assert_int_equal(r[0].reply_code, 450);
    assert_string_equal(r[0].reply, "450 4.2.0 Mailbox busy\r\n");
    assert_int_equal(r[0].nth, 0);
    assert_true(r[0].probability == 1.0);
    assert_string_equal(r[1].name, "flag 2");
    assert_int_equal(r[1].stage, FAULT_GREETING);
    assert_string_equal(r[1].match, "");
    assert_int_equal(r[1].reply_code, 421);
    assert_string_equal(r[2].name, "flag 3");
    assert_int_equal(r[2].stage, FAULT_MAIL);
    assert_int_equal(r[2].action, FAULT_DROP);
    assert_true(c->quiet);
    /* The rules in force are a copy: the --fault set is kept apart for reloads. */
    assert_ptr_not_equal(c->faults.rules, c->cli_faults.rules);
    assert_string_equal(c->cli_faults.rules[2].name, "flag 3");
}

static void no_fault_flag_means_no_rules(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(run_args(f, (const char *const[]){NULL}), CONFIG_OK);
    assert_int_equal(f->cfg.faults.count, 0);
    assert_int_equal(f->cfg.cli_faults.count, 0);
    assert_int_equal(f->cfg.file_faults.count, 0);
    assert_false(f->cfg.seed_given);
}

static void command_line_fault_rules_come_before_the_files(void **state)
{
    struct fixture *f = *state;
    write_ini(f, "[fault from-file]\n"
                 "on = RCPT\n"
                 "action = reply 550 5.1.1 No such user\n");
    /* -c first on the command line: the flags still come first (a flag wins). */
    assert_int_equal(RUN(f, "-c", f->path, "--fault", "RCPT: reply 452 4.5.3 Too many"), CONFIG_OK);
    const struct config *c = &f->cfg;
    assert_int_equal(c->cli_faults.count, 1);
    assert_int_equal(c->file_faults.count, 1);
    assert_int_equal(c->faults.count, 2);
    assert_string_equal(c->faults.rules[0].name, "flag 1");
    assert_int_equal(c->faults.rules[0].reply_code, 452);
    assert_string_equal(c->faults.rules[1].name, "from-file");
    assert_int_equal(c->faults.rules[1].reply_code, 550);
    assert_string_equal(c->file_faults.rules[0].name, "from-file");
}

static void bad_fault_flag_is_a_usage_error_naming_the_flag(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(RUN(f, "--fault", "RCTP x: drop"), CONFIG_ERR_USAGE);
    MESSAGE_HAS(f->err_text, "--fault #1", "\"RCTP x: drop\"", "unknown stage \"RCTP\"",
                "expected one of GREETING", "DATA-END", "ANY");
    config_free(&f->cfg);
    /* The second flag is the bad one: the message says which. */
    assert_int_equal(RUN(f, "--fault", "MAIL: drop", "--fault", "RCPT: reply 199 x"),
                     CONFIG_ERR_USAGE);
    MESSAGE_HAS(f->err_text, "--fault #2", "\"RCPT: reply 199 x\"", "199",
                "a code from 200 to 599");
    config_free(&f->cfg);
    assert_int_equal(RUN(f, "--fault"), CONFIG_ERR_USAGE);
    assert_string_equal(f->err_text, "--fault needs a value; see smtptap --help");
}

static void bad_fault_flag_wins_over_a_good_file(void **state)
{
    struct fixture *f = *state;
    write_ini(f, "[fault fine]\non = MAIL\naction = drop\n");
    assert_int_equal(RUN(f, "-c", f->path, "--fault", "EHLO: strip"), CONFIG_ERR_USAGE);
    MESSAGE_HAS(f->err_text, "--fault #1", "strip");
}

static void seed_flag_sets_the_seed(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(RUN(f, "--seed", "7"), CONFIG_OK);
    assert_true(f->cfg.seed_given);
    assert_int_equal(f->cfg.seed, 7);
    assert_int_equal(RUN(f, "--seed=0"), CONFIG_OK);
    assert_true(f->cfg.seed_given);
    assert_int_equal(f->cfg.seed, 0);
    /* Every printed seed (uint64) must be accepted back. */
    assert_int_equal(RUN(f, "--seed", "18446744073709551615"), CONFIG_OK);
    assert_true(f->cfg.seed == UINT64_MAX);
    assert_int_equal(RUN(f, "-q"), CONFIG_OK);
    assert_false(f->cfg.seed_given);
}

static void bad_seed_is_a_usage_error_naming_flag_and_value(void **state)
{
    struct fixture *f = *state;
    static const char *const bad[] = {"seven", "-1", "18446744073709551616", "", "7x", "0x10"};
    for (size_t i = 0; i < NELEM(bad); i++) {
        enum config_result r = RUN(f, "--seed", bad[i]);
        if (r != CONFIG_ERR_USAGE) fail_msg("--seed \"%s\": result %d, want 64", bad[i], (int)r);
        char want[128];
        snprintf(want, sizeof want, "--seed: invalid value \"%s\"; expected a whole number",
                 bad[i]);
        if (strncmp(f->err_text, want, strlen(want)) != 0)
            fail_msg("--seed \"%s\": message \"%s\"", bad[i], f->err_text);
    }
    assert_int_equal(RUN(f, "--seed"), CONFIG_ERR_USAGE);
    assert_string_equal(f->err_text, "--seed needs a value; see smtptap --help");
}

static void two_fault_sections_become_two_rules(void **state)
{
    struct fixture *f = *state;
    write_ini(f, "[fault rcpt-busy]\n"
                 "on = RCPT\n"
                 "match = *@busy.example\n"
                 "nth = 2\n"
                 "probability = 0.5\n"
                 "action = reply 450 4.2.0 Mailbox busy, try later\n"
                 "\n"
                 "[fault slow-data]\n"
                 "on = DATA-END\n"
                 "action = delay 250ms\n");
    assert_int_equal(RUN(f, "-c", f->path), CONFIG_OK);
    assert_string_equal(f->err_text, "");
    const struct config *c = &f->cfg;
    assert_int_equal(c->cli_faults.count, 0);
    assert_int_equal(c->file_faults.count, 2);
    assert_int_equal(c->faults.count, 2);
    const struct fault_rule *r = c->faults.rules;
    assert_string_equal(r[0].name, "rcpt-busy");
    assert_int_equal(r[0].stage, FAULT_RCPT);
    assert_string_equal(r[0].match, "*@busy.example");
    assert_int_equal(r[0].nth, 2);
    assert_true(r[0].probability == 0.5);
    assert_int_equal(r[0].action, FAULT_REPLY);
    assert_int_equal(r[0].reply_code, 450);
    assert_string_equal(r[0].reply, "450 4.2.0 Mailbox busy, try later\r\n");
    assert_string_equal(r[1].name, "slow-data");
    assert_int_equal(r[1].stage, FAULT_DATA_END);
    assert_int_equal(r[1].nth, 0);
    assert_true(r[1].probability == 1.0);
    assert_int_equal(r[1].action, FAULT_DELAY);
    assert_int_equal(r[1].delay_ms, 250);
}

static void fault_section_followed_by_another_section(void **state)
{
    struct fixture *f = *state;
    write_ini(f, "[fault drop-mail]\n"
                 "on = MAIL\n"
                 "action = drop\n"
                 "[listen]\n"
                 "max_sessions = 20\n"
                 "[fault strip-tls]\n"
                 "on = EHLO\n"
                 "action = strip STARTTLS\n"
                 "[upstream]\n"
                 "connect_timeout = 2s\n");
    assert_int_equal(RUN(f, "-c", f->path), CONFIG_OK);
    assert_string_equal(f->err_text, "");
    const struct config *c = &f->cfg;
    assert_int_equal(c->max_sessions, 20);
    assert_int_equal(c->connect_timeout_ms, 2000);
    assert_int_equal(c->faults.count, 2);
    assert_string_equal(c->faults.rules[0].name, "drop-mail");
    assert_int_equal(c->faults.rules[0].action, FAULT_DROP);
    assert_string_equal(c->faults.rules[1].name, "strip-tls");
    assert_int_equal(c->faults.rules[1].action, FAULT_STRIP);
    assert_string_equal(c->faults.rules[1].strip, "STARTTLS");
    /* The other section's keys are still checked after a fault section. */
    config_free(&f->cfg);
    write_ini(f, "[fault drop-mail]\non = MAIL\naction = drop\n[listen]\nport = 25\n");
    assert_int_equal(RUN(f, "-c", f->path), CONFIG_ERR_CONFIG);
    MESSAGE_HAS(f->err_text, "unknown key \"port\" in [listen]", "(line 5)");
}

static void incomplete_fault_section_is_a_configuration_error(void **state)
{
    struct fixture *f = *state;
    char want[512];

    /* At the end of the file. */
    write_ini(f, "[fault nope]\non = RCPT\nmatch = *@x.example\n");
    assert_int_equal(RUN(f, "-c", f->path), CONFIG_ERR_CONFIG);
    snprintf(want, sizeof want, "%s: [fault nope]", f->path);
    MESSAGE_HAS(f->err_text, want, "missing key \"action\"", "expected one of reply CODE TEXT");
    if (count_of(f->err_text, "[fault nope]") != 1)
        fail_msg("the section is named %d times: \"%s\"", count_of(f->err_text, "[fault nope]"),
                 f->err_text);
    assert_int_equal(f->cfg.faults.count, 0);
    config_free(&f->cfg);

    /* Followed by another section: the rule ends there, and is refused there. */
    write_ini(f, "[fault nope]\non = RCPT\n[listen]\nmax_sessions = 5\n");
    assert_int_equal(RUN(f, "-c", f->path), CONFIG_ERR_CONFIG);
    MESSAGE_HAS(f->err_text, f->path, "[fault nope]", "missing key \"action\"");
    config_free(&f->cfg);

    /* Followed by another fault section. */
    write_ini(f, "[fault no-stage]\naction = drop\n[fault fine]\non = MAIL\naction = drop\n");
    assert_int_equal(RUN(f, "-c", f->path), CONFIG_ERR_CONFIG);
    MESSAGE_HAS(f->err_text, f->path, "[fault no-stage]", "missing key \"on\"",
                "expected one of GREETING");
    if (strstr(f->err_text, "[fault fine]"))
        fail_msg("names the wrong section: \"%s\"", f->err_text);
}

static void empty_fault_section_is_a_configuration_error(void **state)
{
    struct fixture *f = *state;
    /* No key at all: no action either. It must not vanish without a word. */
    write_ini(f, "[fault empty]\n\n[listen]\nmax_sessions = 5\n");
    assert_int_equal(RUN(f, "-c", f->path), CONFIG_ERR_CONFIG);
    MESSAGE_HAS(f->err_text, f->path, "[fault empty]", "missing key");
    config_free(&f->cfg);
    write_ini(f, "[listen]\nmax_sessions = 5\n[fault last]\n");
    assert_int_equal(RUN(f, "-c", f->path), CONFIG_ERR_CONFIG);
    MESSAGE_HAS(f->err_text, f->path, "[fault last]", "missing key");
}

/* Issue 16, defect 2: inih (Debian's libinih 55) cuts section names at 49 characters and
 * lines at 199, so "[fault <44 characters or more>]" was refused with a false "missing key
 * \"on\" and \"action\"" and a long reply line was split in two. Names up to FAULT_NAME_MAX - 1
 * characters and lines of any length work; a longer name is a true error. */
static void long_fault_section_names_and_lines_work(void **state)
{
    struct fixture *f = *state;
    char name[FAULT_NAME_MAX], other[FAULT_NAME_MAX], text[1400], ini[4096];
    memset(name, 'n', FAULT_NAME_MAX - 1);
    name[FAULT_NAME_MAX - 1] = 0;
    memcpy(other, name, sizeof other);
    other[FAULT_NAME_MAX - 2] = 'o'; /* the same first 62 characters */
    memset(text, 't', sizeof text - 1);
    text[sizeof text - 1] = 0;
    snprintf(ini, sizeof ini,
             "[fault %.44s]\non = MAIL\naction = drop\n"
             "[fault %s]\non = RCPT\naction = reply 450 4.2.0 %s\n"
             "[fault %s]\non = NOOP\naction = reset\n",
             name, name, text, other);
    write_ini(f, ini);
    assert_int_equal(RUN(f, "-c", f->path), CONFIG_OK);
    assert_string_equal(f->err_text, "");
    const struct fault_set *set = &f->cfg.file_faults;
    assert_int_equal(set->count, 3);
    assert_int_equal(strlen(set->rules[0].name), 44);
    assert_int_equal(set->rules[0].action, FAULT_DROP);
    assert_string_equal(set->rules[1].name, name);
    assert_int_equal(set->rules[1].stage, FAULT_RCPT);
    assert_int_equal(strlen(set->rules[1].reply), strlen("450 4.2.0 \r\n") + strlen(text));
    assert_string_equal(set->rules[2].name, other);
    assert_int_equal(set->rules[2].action, FAULT_RESET);
    config_free(&f->cfg);

    /* One character more than a rule's name holds: said so, at its line. */
    snprintf(ini, sizeof ini, "[listen]\nmax_sessions = 5\n[fault %sx]\non = MAIL\naction = drop\n",
             name);
    write_ini(f, ini);
    assert_int_equal(RUN(f, "-c", f->path), CONFIG_ERR_CONFIG);
    MESSAGE_HAS(f->err_text, f->path, name, "64 characters", "at most 63", "(line 3)");
    if (strstr(f->err_text, "missing key")) fail_msg("a false reason: \"%s\"", f->err_text);
}

/* inih merged two sections of the same name; they are one rule too many, said at the second. */
static void fault_section_given_twice_is_a_configuration_error(void **state)
{
    struct fixture *f = *state;
    write_ini(f, "[fault same]\non = MAIL\naction = drop\n[listen]\nmax_sessions = 5\n"
                 "[fault same]\non = RCPT\naction = reset\n");
    assert_int_equal(RUN(f, "-c", f->path), CONFIG_ERR_CONFIG);
    MESSAGE_HAS(f->err_text, f->path, "[fault same] appears twice", "(line 6)");

    config_free(&f->cfg);

    /* Found by fuzz_config: when the first section lacks its action, the repeated name is
     * still the reason given (a "missing key action" pointed at the wrong section). */
    write_ini(f, "[fault busy]\non = RCPT\n\n[fault busy]\non = RCPT\n"
                 "action = reply 450 4.2.0 busy\n");
    assert_int_equal(RUN(f, "-c", f->path), CONFIG_ERR_CONFIG);
    MESSAGE_HAS(f->err_text, f->path, "[fault busy] appears twice", "(line 4)");
    if (strstr(f->err_text, "missing key")) fail_msg("a false reason: \"%s\"", f->err_text);
}

/* "flag N" is what --fault rules are called: a section of that name would be taken for one
 * (the control API lists a rule's origin by it). */
static void a_fault_section_named_like_a_flag_rule_is_refused(void **state)
{
    struct fixture *f = *state;
    write_ini(f, "[fault flag 1]\non = MAIL\naction = drop\n");
    assert_int_equal(RUN(f, "-c", f->path), CONFIG_ERR_CONFIG);
    MESSAGE_HAS(f->err_text, f->path, "[fault flag 1]", "are those of --fault rules", "(line 1)");
}

/* Issue 15 item 11: the second of two values silently won. A key given twice in a section is
 * an error naming both lines; [listen] address is meant to repeat; the same key in two
 * sections of one name is given twice too. */
static void a_key_given_twice_in_a_section_names_both_lines(void **state)
{
    struct fixture *f = *state;
    write_ini(f, "[upstream]\ntarget = smtp.example.com:25\nconnect_timeout = 5s\n"
                 "; a second thought\ntarget = smtp.example.com:587\n");
    assert_int_equal(RUN(f, "-c", f->path), CONFIG_ERR_CONFIG);
    char want[600];
    snprintf(want, sizeof want,
             "%s: [upstream] target is given twice, on line 2 and on line 5; keep one (a key "
             "appears once in its section; only [listen] address may repeat)",
             f->path);
    assert_string_equal(f->err_text, want);

    write_ini(f, "[capture]\nredact = yes\n[upstream]\nca = /a\n[capture]\nredact = no\n");
    assert_int_equal(RUN(f, "-c", f->path), CONFIG_ERR_CONFIG);
    MESSAGE_HAS(f->err_text, "[capture] redact is given twice, on line 2 and on line 6");

    write_ini(f, "[fault slow]\non = MAIL\naction = delay 1s\nnth = 2\naction = drop\n");
    assert_int_equal(RUN(f, "-c", f->path), CONFIG_ERR_CONFIG);
    MESSAGE_HAS(f->err_text, f->path,
                "[fault slow] action is given twice, on line 3 and on line 5");

    /* Not twice: listen addresses add up, and each fault rule has its own keys. */
    write_ini(f, "[listen]\naddress = 127.0.0.1:2525\naddress = [::1]:2525\n"
                 "[fault a]\non = MAIL\naction = drop\n[fault b]\non = RCPT\naction = drop\n");
    assert_int_equal(RUN(f, "-c", f->path), CONFIG_OK);
    assert_int_equal(f->cfg.nlisten, 2);
    assert_int_equal(f->cfg.faults.count, 2);
}

/* Issue 15 item 11: "-u foo:bar:25" said only what is accepted; it names the prefix. */
static void an_unknown_upstream_prefix_is_named(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(RUN(f, "-u", "foo:bar:25"), CONFIG_ERR_USAGE);
    assert_string_equal(f->err_text,
                        "--upstream: unknown prefix \"foo:\" in \"foo:bar:25\"; expected tls: "
                        "(implicit TLS), starttls: (STARTTLS required) or plain: (never TLS) as "
                        "the prefix, or none (STARTTLS when the server offers it), before "
                        "HOST[:PORT]");
    write_ini(f, "[upstream]\ntarget = smtps:mail.example.com:465\n");
    assert_int_equal(RUN(f, "-c", f->path), CONFIG_ERR_CONFIG);
    MESSAGE_HAS(f->err_text, f->path, "[upstream] target: unknown prefix \"smtps:\"", "(line 2)");
    /* Without a port: the prefix's (the server says so at start). */
    assert_int_equal(RUN(f, "-u", "starttls:mail.example.com"), CONFIG_OK);
    assert_int_equal(f->cfg.upstream.target.port, 587);
    assert_true(f->cfg.upstream.port_defaulted);
}

/* ---- the INI syntax (ini_read.h) ---------------------------------------------------------- */

/* Every call of ini_read's callback as "[section]" or "section|key=value" lines, a
 * continuation's value after "+=". */
static int record_ini(void *ctx, const struct ini_at *at, const char *section, const char *key,
                      const char *value)
{
    struct buf *out = ctx;
    if (!key)
        buf_printf(out, "[%s]\n", section);
    else
        buf_printf(out, "%s|%s%s=%s\n", section, key, at->continued ? "+" : "", value);
    return strcmp(key ? key : "", "refused") != 0;
}

static void assert_ini_reads(const char *text, size_t len, const char *calls, int error_line)
{
    struct buf out;
    buf_init(&out);
    char *copy = malloc(len + 1);
    assert_non_null(copy);
    memcpy(copy, text, len);
    assert_int_equal(ini_read(copy, len, record_ini, &out), error_line);
    buf_append(&out, "", 1);
    assert_string_equal((const char *)buf_head(&out), calls);
    buf_free(&out);
    free(copy);
}

#define INI_READS(lit, calls, line) assert_ini_reads((lit), sizeof(lit) - 1, (calls), (line))

/* inih's syntax, kept: comments, inline comments after a blank, key: value, blanks trimmed, a
 * BOM, CRLF, continuation lines, an empty value, a last line without LF. */
static void ini_syntax_is_inihs(void **state)
{
    (void)state;
    INI_READS("\xEF\xBB\xBF; comment\n# comment\nk0 = before any section\n"
              "[listen]  ; trailing\n  address = 127.0.0.1:25 ; inline\r\n"
              "max_sessions:5\nempty =\nsemi = a;b\n   continued value\n"
              "[ spaced ]\nlast = no newline",
              "|k0=before any section\n[listen]\nlisten|address=127.0.0.1:25\n"
              "listen|max_sessions=5\nlisten|empty=\nlisten|semi=a;b\n"
              "listen|semi+=continued value\n[ spaced ]\n spaced |last=no newline\n",
              0);
    /* Found by comparing with inih (tests/fuzz/fuzz_config.c): a continuation line keeps a
     * ';' after a blank, as inih does. */
    INI_READS("[s]\nk = v ; comment\n  more ; not a comment\n",
              "[s]\ns|k=v\ns|k+=more ; not a comment\n", 0);
    /* Errors: the first line that is not INI (or that the callback refused) is returned, and
     * reading stops there. */
    INI_READS("[open\nk = v\n", "", 1);
    INI_READS("[s]\nno equals sign\nrefused = x\nk = v\n", "[s]\n", 2);
    INI_READS("[s]\nrefused = x\nk = v\n", "[s]\ns|refused=x\n", 2);
    INI_READS("[s]\nk = v\0w\nk2 = v2\n", "[s]\n", 2);
    INI_READS("", "", 0);
}

static int record_lines(void *ctx, const struct ini_at *at, const char *section, const char *key,
                        const char *value)
{
    (void)section, (void)value;
    buf_printf(ctx, "%d:%s ", at->line, key ? key : "[]");
    return 1;
}

/* Each header and value comes with its line (a repeated key is told with both of its). */
static void ini_read_tells_each_values_line(void **state)
{
    (void)state;
    char text[] = "; c\n[a]\r\nk = 1\n\n  more\n[b]\n# c\nk: 2";
    struct buf out;
    buf_init(&out);
    assert_int_equal(ini_read(text, sizeof text - 1, record_lines, &out), 0);
    buf_append(&out, "", 1);
    assert_string_equal((const char *)buf_head(&out), "2:[] 3:k 5:k 6:[] 8:k ");
    buf_free(&out);
}

static void reload_reads_the_file_again_and_keeps_the_flags(void **state)
{
    struct fixture *f = *state;
    write_ini(f, "[fault one]\non = MAIL\naction = reply 451 4.7.1 One\n");
    assert_int_equal(RUN(f, "-c", f->path, "--fault", "NOOP: reply 502 5.5.1 Flag"), CONFIG_OK);
    assert_int_equal(f->cfg.faults.count, 2);

    /* The file changed between the start and the reload. */
    write_ini(f, "[fault two]\non = RSET\naction = reply 550 5.0.0 Two\n"
                 "[fault three]\non = QUIT\naction = reset\n");
    struct fault_set out;
    buf_reset(&f->err);
    assert_int_equal(config_reload_faults(&f->cfg, &out, &f->err), CONFIG_OK);
    assert_int_equal(buf_size(&f->err), 0);
    assert_int_equal(out.count, 3);
    assert_string_equal(out.rules[0].name, "flag 1");
    assert_int_equal(out.rules[0].stage, FAULT_NOOP);
    assert_string_equal(out.rules[1].name, "two");
    assert_int_equal(out.rules[1].stage, FAULT_RSET);
    assert_string_equal(out.rules[1].reply, "550 5.0.0 Two\r\n");
    assert_string_equal(out.rules[2].name, "three");
    assert_int_equal(out.rules[2].action, FAULT_RESET);
    /* The configuration itself is untouched: the server swaps the sets. */
    assert_int_equal(f->cfg.faults.count, 2);
    assert_string_equal(f->cfg.faults.rules[1].name, "one");
    fault_set_free(&out);

    /* Changed again: each reload reads the file as it is now. */
    write_ini(f, "; no rules left\n[listen]\nmax_sessions = 3\n");
    assert_int_equal(config_reload_faults(&f->cfg, &out, &f->err), CONFIG_OK);
    assert_int_equal(out.count, 1);
    assert_string_equal(out.rules[0].name, "flag 1");
    fault_set_free(&out);
    /* Only the rules are reloaded. */
    assert_int_equal(f->cfg.max_sessions, 1000);
}

static void reload_of_a_broken_file_gives_an_error_and_no_rules(void **state)
{
    struct fixture *f = *state;
    write_ini(f, "[fault one]\non = MAIL\naction = drop\n");
    assert_int_equal(RUN(f, "-c", f->path), CONFIG_OK);

    write_ini(f, "[fault broken]\non = MAIL\naction = reply 199 too low\n");
    struct fault_set out;
    buf_reset(&f->err);
    assert_int_equal(config_reload_faults(&f->cfg, &out, &f->err), CONFIG_ERR_CONFIG);
    assert_int_equal(out.count, 0);
    char msg[1024];
    size_t n = buf_size(&f->err);
    assert_true(n > 0 && n < sizeof msg);
    memcpy(msg, buf_head(&f->err), n);
    msg[n] = 0;
    MESSAGE_HAS(msg, f->path, "[fault broken]", "action", "199", "(line 3)");
    fault_set_free(&out);

    unlink(f->path);
    buf_reset(&f->err);
    assert_int_equal(config_reload_faults(&f->cfg, &out, &f->err), CONFIG_ERR_CONFIG);
    assert_int_equal(out.count, 0);
    n = buf_size(&f->err);
    assert_true(n > 0 && n < sizeof msg);
    memcpy(msg, buf_head(&f->err), n);
    msg[n] = 0;
    MESSAGE_HAS(msg, f->path, "cannot read the file");
    fault_set_free(&out);
    /* What was in force is still there. */
    assert_int_equal(f->cfg.faults.count, 1);
    assert_string_equal(f->cfg.faults.rules[0].name, "one");
}

static void reload_without_a_config_file_gives_the_flag_rules(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(RUN(f, "--fault", "RCPT: drop", "--fault", "MAIL: stall"), CONFIG_OK);
    struct fault_set out;
    buf_reset(&f->err);
    assert_int_equal(config_reload_faults(&f->cfg, &out, &f->err), CONFIG_OK);
    assert_int_equal(out.count, 2);
    assert_string_equal(out.rules[0].name, "flag 1");
    assert_string_equal(out.rules[1].name, "flag 2");
    assert_int_equal(out.rules[1].action, FAULT_STALL);
    fault_set_free(&out);
}

/* ---- watching many sessions: --summary, --only, --session, [live] -------------------------- */

static void watch_flags_fill_the_filter(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(RUN(f, "-q"), CONFIG_OK);
    assert_false(f->cfg.summary);
    assert_false(watch_filters(&f->cfg.watch));
    assert_int_equal(RUN(f, "--summary", "--only", "127.0.0.1:*,*.example.com", "--only", "[::1]:*",
                         "--session", "3,7"),
                     CONFIG_OK);
    assert_true(f->cfg.summary);
    assert_int_equal(f->cfg.watch.nglobs, 3);
    assert_string_equal(f->cfg.watch.globs[0], "127.0.0.1:*");
    assert_string_equal(f->cfg.watch.globs[1], "*.example.com");
    assert_string_equal(f->cfg.watch.globs[2], "[::1]:*");
    assert_int_equal(f->cfg.watch.nsessions, 2);
    assert_true(watch_picks_number(&f->cfg.watch, 7));
    assert_false(watch_picks_number(&f->cfg.watch, 5));
}

static void live_section_sets_them_and_flags_replace_its_lists(void **state)
{
    struct fixture *f = *state;
    write_ini(f, "[live]\nsummary = yes\nonly = 10.0.*, mail.example.com\nsession = 2\n");
    assert_int_equal(RUN(f, "-c", f->path), CONFIG_OK);
    assert_true(f->cfg.summary);
    assert_int_equal(f->cfg.watch.nglobs, 2);
    assert_string_equal(f->cfg.watch.globs[1], "mail.example.com");
    assert_int_equal(f->cfg.watch.nsessions, 1);
    assert_int_equal(RUN(f, "-c", f->path, "--only", "192.0.2.*"), CONFIG_OK);
    assert_int_equal(f->cfg.watch.nglobs, 1); /* the flag's list, not the file's and the flag's */
    assert_string_equal(f->cfg.watch.globs[0], "192.0.2.*");
    assert_int_equal(f->cfg.watch.nsessions, 1); /* untouched: no --session */
}

static void bad_watch_values_name_the_flag_and_what_is_accepted(void **state)
{
    struct fixture *f = *state;
    static const char *const bad_globs[] = {",", "a,,b", "a b", "x\ty"};
    for (size_t i = 0; i < NELEM(bad_globs); i++) {
        assert_int_equal(RUN(f, "--only", bad_globs[i]), CONFIG_ERR_USAGE);
        MESSAGE_HAS(f->err_text, "--only: invalid value", "globs", "127.0.0.1:*", "EHLO");
    }
    static const char *const bad_numbers[] = {"0", "x", "3,", "-1", "3;4", "99999999999999999999"};
    for (size_t i = 0; i < NELEM(bad_numbers); i++) {
        assert_int_equal(RUN(f, "--session", bad_numbers[i]), CONFIG_ERR_USAGE);
        MESSAGE_HAS(f->err_text, "--session: invalid value", "session numbers", "1 or more");
    }
    assert_int_equal(RUN(f, "--only", "a*", "--only", ""), CONFIG_OK); /* empty: all */
    assert_false(watch_filters(&f->cfg.watch));
    write_ini(f, "[live]\nsession = none\n");
    assert_int_equal(RUN(f, "-c", f->path), CONFIG_ERR_CONFIG);
    MESSAGE_HAS(f->err_text, "[live] session: invalid value \"none\"", "session numbers");
    write_ini(f, "[live]\nsummary = maybe\n");
    assert_int_equal(RUN(f, "-c", f->path), CONFIG_ERR_CONFIG);
    MESSAGE_HAS(f->err_text, "[live] summary: invalid value \"maybe\"");
}

/* --client-cert and [tls] client_cert (issue 12): every mode, the flag over the key, errors. */
static void client_cert_flag_and_key(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(RUN(f, "-q"), CONFIG_OK);
    assert_int_equal(f->cfg.client_cert, CLIENT_CERT_GOOD);
    static const char *const modes[] = {"good",          "self-signed", "untrusted-ca", "expired",
                                        "not-yet-valid", "wrong-host",  "weak-key",     "sha1"};
    for (int i = 0; i < (int)NELEM(modes); i++) {
        assert_int_equal(RUN(f, "--client-cert", modes[i]), CONFIG_OK);
        assert_int_equal(f->cfg.client_cert, i);
    }
    write_ini(f, "[tls]\nclient_cert = wrong-host\n");
    assert_int_equal(RUN(f, "-c", f->path), CONFIG_OK);
    assert_int_equal(f->cfg.client_cert, CLIENT_CERT_WRONG_HOST);
    assert_int_equal(RUN(f, "-c", f->path, "--client-cert", "sha1"), CONFIG_OK);
    assert_int_equal(f->cfg.client_cert, CLIENT_CERT_SHA1);
    assert_int_equal(RUN(f, "--client-cert", "EXPIRED"), CONFIG_ERR_USAGE);
    assert_string_equal(f->err_text, "--client-cert: invalid value \"EXPIRED\"; expected good, "
                                     "self-signed, untrusted-ca, expired, not-yet-valid, "
                                     "wrong-host, weak-key or sha1");
    write_ini(f, "[tls]\nclient_cert = stale\n");
    assert_int_equal(RUN(f, "-c", f->path), CONFIG_ERR_CONFIG);
    MESSAGE_HAS(f->err_text, "client_cert", "\"stale\"", "not-yet-valid");
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
        CONFIG_TEST(implicit_tls_listener_is_marked),
        CONFIG_TEST(bad_listen_value_names_flag_value_and_expected_form),
        CONFIG_TEST(bad_duration_names_flag_value_and_expected_form),
        CONFIG_TEST(bad_numbers_and_words_are_refused_with_what_is_accepted),
        CONFIG_TEST(formats_combine_in_any_order),
        CONFIG_TEST(short_flag_errors_name_the_long_flag),
        CONFIG_TEST(unknown_long_flag_is_a_usage_error_naming_it),
        CONFIG_TEST(unknown_short_flag_is_a_usage_error_naming_it),
        CONFIG_TEST(flag_without_its_value_is_a_usage_error),
        CONFIG_TEST(switch_given_a_value_is_a_usage_error),
        CONFIG_TEST(stray_argument_is_a_usage_error),
        CONFIG_TEST(tls_flags_fill_the_config),
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
        CONFIG_TEST(ini_line_that_is_not_ini_before_another_mistake_is_the_one_reported),
        CONFIG_TEST(unreadable_config_file_is_a_configuration_error),
        CONFIG_TEST(directory_as_config_file_is_a_configuration_error),
        CONFIG_TEST(fault_section_with_an_unknown_key_names_it_and_the_line),
        CONFIG_TEST(later_issue_keys_are_refused_when_enabled_and_accepted_when_off),
        CONFIG_TEST(config_load_file_alone_fills_the_struct),
        CONFIG_TEST(fault_flags_become_rules_named_by_their_place),
        CONFIG_TEST(no_fault_flag_means_no_rules),
        CONFIG_TEST(command_line_fault_rules_come_before_the_files),
        CONFIG_TEST(bad_fault_flag_is_a_usage_error_naming_the_flag),
        CONFIG_TEST(bad_fault_flag_wins_over_a_good_file),
        CONFIG_TEST(seed_flag_sets_the_seed),
        CONFIG_TEST(bad_seed_is_a_usage_error_naming_flag_and_value),
        CONFIG_TEST(two_fault_sections_become_two_rules),
        CONFIG_TEST(fault_section_followed_by_another_section),
        CONFIG_TEST(incomplete_fault_section_is_a_configuration_error),
        CONFIG_TEST(empty_fault_section_is_a_configuration_error),
        CONFIG_TEST(long_fault_section_names_and_lines_work),
        CONFIG_TEST(a_key_given_twice_in_a_section_names_both_lines),
        CONFIG_TEST(an_unknown_upstream_prefix_is_named),
        CONFIG_TEST(client_cert_flag_and_key),
        cmocka_unit_test(ini_syntax_is_inihs),
        cmocka_unit_test(ini_read_tells_each_values_line),
        CONFIG_TEST(fault_section_given_twice_is_a_configuration_error),
        CONFIG_TEST(a_fault_section_named_like_a_flag_rule_is_refused),
        CONFIG_TEST(reload_reads_the_file_again_and_keeps_the_flags),
        CONFIG_TEST(reload_of_a_broken_file_gives_an_error_and_no_rules),
        CONFIG_TEST(reload_without_a_config_file_gives_the_flag_rules),
        CONFIG_TEST(watch_flags_fill_the_filter),
        CONFIG_TEST(live_section_sets_them_and_flags_replace_its_lists),
        CONFIG_TEST(bad_watch_values_name_the_flag_and_what_is_accepted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
