/* fuzz_config.c - libFuzzer target for the configuration reader (config.h, ini_read.h).
 *
 * Input: [flags][an INI file][NUL][command line words separated by NUL bytes]. The file is
 * written to a private temporary path and read by config_load_file, then by config_from_args
 * with the words (and -c FILE when the flags say so). Oracles:
 *   - the result is one of the documented codes, with a message exactly when it is an error;
 *   - a file accepted makes one valid rule per [fault NAME] section, names unique;
 *   - a "missing key" error names a section that really lacks that key (issue 16, defect 2:
 *     libinih cut long section names, and the whole name then seemed to have no keys);
 *   - ini_read reads files of short lines exactly as inih 55 does, where inih has no limit
 *     in the way (built with FUZZ_WITH_INIH: the same values up to the same first error line,
 *     where ini_read stops and inih goes on). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "fuzz.h"
#include "smtptap/config.h"
#include "smtptap/ini_read.h"

#ifdef FUZZ_WITH_INIH
#include <ini.h>
#endif

static char path[96];

static void remove_file(void)
{
    unlink(path);
}

/* Writes the INI file to this process's path (made on first use, removed at exit). */
static void write_file(const uint8_t *b, size_t n)
{
    if (!path[0]) { /* tmpfs when there is one: the file is rewritten for every input */
        snprintf(path, sizeof path, "%s/smtptap-fuzz-config-%d.ini",
                 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp", (int)getpid());
        atexit(remove_file);
    }
    FILE *f = fopen(path, "w");
    if (!f || fwrite(b, 1, n, f) != n || fclose(f)) fuzz_fail("cannot write %s", path);
}

/* ---- what the sections say (ini_read's view) ---------------------------------------------- */

struct sections {
    struct buf log; /* "section\x01key\n" for each value, "section\n" for each header */
};

/* "fault NAME" as config.c reads a section name: "fault" in any case, the blanks after it
 * skipped; other sections as they are. */
static void log_section(struct buf *log, const char *section)
{
    if (strncasecmp(section, "fault", 5) != 0 || (section[5] != 0 && section[5] != ' ')) {
        buf_append_str(log, section);
        return;
    }
    const char *name = section + 5;
    while (*name == ' ') name++;
    buf_printf(log, "fault %s", name);
}

static int log_ini(void *ctx, const struct ini_at *at, const char *section, const char *key,
                   const char *value)
{
    struct sections *s = ctx;
    (void)value, (void)at;
    log_section(&s->log, section);
    buf_printf(&s->log, "%s%s\n", key ? "\x01" : "", key ? key : "");
    return 1;
}

/* Does the first section named exactly `section` have `key`? (A later one of that name is
 * refused as given twice before its keys are read.) */
static bool has_key(const struct sections *s, const char *section, const char *key)
{
    char header[512], want[512];
    snprintf(header, sizeof header, "\n%s\n", section);
    snprintf(want, sizeof want, "\n%s\x01%s\n", section, key);
    struct buf hay;
    buf_init(&hay);
    buf_append(&hay, "\n", 1);
    buf_append(&hay, buf_head(&s->log), buf_size(&s->log));
    buf_append(&hay, "", 1);
    const char *text = (const char *)buf_head(&hay), *start = strstr(text, header), *end = NULL;
    if (start) { /* the section runs to the next header line (one without \x01) */
        for (end = start + strlen(header) - 1; (end = strchr(end, '\n')) && end[1]; end++) {
            size_t n = strcspn(end + 1, "\n");
            if (!memchr(end + 1, '\x01', n)) break;
        }
    }
    const char *k = start ? strstr(start, want) : NULL;
    bool found = k && (!end || k < end);
    buf_free(&hay);
    return found;
}

/* A "missing key" message must be true: its section lacks that key. */
static void check_missing_key(const char *msg, const struct sections *s)
{
    const char *at = strstr(msg, "]: missing key \"");
    if (!at) return;
    const char *open = strstr(msg, "[fault ");
    if (!open || open > at) return;
    char section[512], key[16];
    snprintf(section, sizeof section, "fault %.*s", (int)(at - open - 7), open + 7);
    snprintf(key, sizeof key, "%.*s", (int)strcspn(at + 16, "\""), at + 16);
    FUZZ_CHECK(!has_key(s, section, key), "false error: \"%s\" although [%s] has %s", msg, section,
               key);
}

static void check_rules(const struct fault_set *set)
{
    for (size_t i = 0; i < set->count; i++) {
        const struct fault_rule *r = &set->rules[i];
        FUZZ_CHECK(r->has_stage && r->has_action && memchr(r->name, 0, sizeof r->name),
                   "an incomplete rule was accepted");
        for (size_t j = 0; j < i; j++)
            FUZZ_CHECK(strcmp(set->rules[j].name, r->name), "two rules named \"%s\"", r->name);
    }
}

static void load_file(const uint8_t *b, size_t n)
{
    static struct config c;
    struct buf err;
    struct sections s;
    buf_init(&err);
    buf_init(&s.log);
    char *copy = malloc(n + 1);
    if (!copy) abort();
    if (n) memcpy(copy, b, n);
    ini_read(copy, n, log_ini, &s);
    free(copy);
    config_defaults(&c);
    enum config_result r = config_load_file(&c, path, &err);
    FUZZ_CHECK(r == CONFIG_OK || r == CONFIG_ERR_CONFIG, "config_load_file returned %d", r);
    FUZZ_CHECK((r == CONFIG_OK) == (buf_size(&err) == 0), "result %d with %zu bytes of message", r,
               buf_size(&err));
    buf_append(&err, "", 1);
    if (r != CONFIG_OK) check_missing_key((const char *)buf_head(&err), &s);
    if (r == CONFIG_OK) check_rules(&c.file_faults);
    config_free(&c);
    buf_free(&err);
    buf_free(&s.log);
}

/* ---- the command line --------------------------------------------------------------------- */

static void from_args(struct fuzz_in *in, bool with_file)
{
    static struct config c;
    char *argv[40];
    int argc = 0;
    argv[argc++] = fuzz_strndup((const uint8_t *)"smtptap", 7);
    if (with_file) {
        argv[argc++] = fuzz_strndup((const uint8_t *)"-c", 2);
        argv[argc++] = fuzz_strndup((const uint8_t *)path, strlen(path));
    }
    while (in->n && argc < 39) {
        size_t n;
        const uint8_t *w = fuzz_until(in, 0, &n);
        if (memchr(w, '/', n)) continue; /* no other files: a FIFO or a device could block */
        argv[argc++] = fuzz_strndup(w, n);
    }
    argv[argc] = NULL;
    struct buf err;
    buf_init(&err);
    enum config_result r = config_from_args(&c, argc, argv, &err);
    bool error = r == CONFIG_ERR_USAGE || r == CONFIG_ERR_CONFIG;
    FUZZ_CHECK(error || r == CONFIG_OK || r == CONFIG_HELP || r == CONFIG_VERSION ||
                   r == CONFIG_PRINT_CA,
               "config_from_args returned %d", r);
    FUZZ_CHECK(error == (buf_size(&err) > 0), "result %d with %zu bytes of message", r,
               buf_size(&err));
    if (r == CONFIG_OK) {
        check_rules(&c.faults);
        FUZZ_CHECK(c.nlisten >= 1 && c.nlisten <= CONFIG_MAX_LISTEN, "%u listen addresses",
                   c.nlisten);
    }
    config_free(&c);
    buf_free(&err);
    for (int i = 0; i < argc; i++) free(argv[i]);
}

/* ---- ini_read against inih ---------------------------------------------------------------- */

#ifdef FUZZ_WITH_INIH
static int log_values(void *ctx, const char *section, const char *key, const char *value)
{
    struct buf *out = ctx;
    if (!key) return 1; /* inih does not report headers */
    buf_printf(out, "[%s] %s=%s\n", section, key, value);
    return key[0] != 'x'; /* some values are refused, the same by both */
}

static int log_mine(void *ctx, const struct ini_at *at, const char *section, const char *key,
                    const char *value)
{
    (void)at;
    return log_values(ctx, section, key, value);
}

/* Where inih has no limit in the way: no NUL, every line shorter than a section name may be. */
static bool inih_can_read(const uint8_t *b, size_t n)
{
    size_t line = 0;
    for (size_t i = 0; i < n; i++) {
        if (b[i] == 0) return false;
        line = b[i] == '\n' ? 0 : line + 1;
        if (line >= 48) return false;
    }
    return true;
}

static void compare_with_inih(const uint8_t *b, size_t n)
{
    if (!inih_can_read(b, n)) return;
    struct buf mine, theirs;
    buf_init(&mine);
    buf_init(&theirs);
    char *text = fuzz_strndup(b, n), *copy = fuzz_strndup(b, n);
    int r1 = ini_read(copy, n, log_mine, &mine);
    int r2 = ini_parse_string(text, log_values, &theirs);
    /* Equal; after an error inih goes on where ini_read stops: then a prefix. */
    bool same =
        r1 == r2 &&
        (r1 ? buf_size(&mine) <= buf_size(&theirs) : buf_size(&mine) == buf_size(&theirs)) &&
        !memcmp(buf_head(&mine), buf_head(&theirs), buf_size(&mine));
    if (!same) {
        fuzz_dump("file", b, n);
        fuzz_dump("ini_read", buf_head(&mine), buf_size(&mine));
        fuzz_dump("inih", buf_head(&theirs), buf_size(&theirs));
        fuzz_fail("ini_read (error line %d) and inih (%d) read the file differently", r1, r2);
    }
    free(text);
    free(copy);
    buf_free(&mine);
    buf_free(&theirs);
}
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    uint8_t flags = fuzz_u8(&in);
    size_t n;
    const uint8_t *file = fuzz_until(&in, 0, &n);
    write_file(file, n);
#ifdef FUZZ_WITH_INIH
    compare_with_inih(file, n);
#endif
    load_file(file, n);
    from_args(&in, flags & 1);
    return 0;
}
