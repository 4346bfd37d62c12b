/* ini_read.c - the INI syntax of smtptap's configuration file, read in place (see ini_read.h).
 * Line by line it does what inih 55 does with Debian's defaults (multi-line values, BOM,
 * inline ';' comments after a blank, ';' and '#' comment lines), so files that worked keep
 * their meaning; inih's length limits are gone, a NUL byte is an error, and reading stops at
 * the first error (inih went on, so a later mistake could be reported with its line). */
#include "smtptap/ini_read.h"

#include <stdbool.h>
#include <string.h>

struct ini_reader {
    ini_read_fn fn;
    void *ctx;
    const char *section;   /* "" before the first header */
    const char *prev_name; /* the key a continuation line continues; "" after a header */
    int error;             /* the first line in error, 0 while none */
};

/* isspace() of the C locale, whatever locale the process runs in. */
static bool blank(char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

/* Cuts trailing blanks off s (in place); returns s. */
static char *rstrip(char *s)
{
    char *p = s + strlen(s);
    while (p > s && blank(p[-1])) *--p = 0;
    return s;
}

static char *lskip(char *s)
{
    while (*s && blank(*s)) s++;
    return s;
}

/* The first of `chars` in s (any char when chars is NULL: none), or the start of an inline
 * comment (';' after a blank), or the end of s. */
static char *find_chars_or_comment(char *s, const char *chars)
{
    bool was_blank = false;
    while (*s && !(chars && strchr(chars, *s)) && !(was_blank && *s == ';')) {
        was_blank = blank(*s);
        s++;
    }
    return s;
}

static void fail(struct ini_reader *r, int lineno)
{
    if (!r->error) r->error = lineno;
}

static void call(struct ini_reader *r, int lineno, bool continued, const char *key,
                 const char *value)
{
    struct ini_at at = {.line = lineno, .continued = continued};
    if (!r->fn(r->ctx, &at, r->section, key, value)) fail(r, lineno);
}

/* "[section]": the text up to the first ']' (an inline comment before it is an error). */
static void header_line(struct ini_reader *r, char *start, int lineno)
{
    char *end = find_chars_or_comment(start + 1, "]");
    if (*end != ']') {
        fail(r, lineno);
        return;
    }
    *end = 0;
    r->section = start + 1;
    r->prev_name = "";
    call(r, lineno, false, NULL, NULL);
}

/* "key = value" or "key: value". */
static void value_line(struct ini_reader *r, char *start, int lineno)
{
    char *end = find_chars_or_comment(start, "=:");
    if (*end != '=' && *end != ':') {
        fail(r, lineno);
        return;
    }
    *end = 0;
    char *name = rstrip(start), *value = end + 1;
    end = find_chars_or_comment(value, NULL);
    *end = 0;
    value = rstrip(lskip(value));
    r->prev_name = name;
    call(r, lineno, false, name, value);
}

/* One line without its LF, NUL-terminated in place. */
static void one_line(struct ini_reader *r, char *line, int lineno)
{
    char *start = line;
    if (lineno == 1 && (unsigned char)start[0] == 0xEF && (unsigned char)start[1] == 0xBB &&
        (unsigned char)start[2] == 0xBF)
        start += 3; /* UTF-8 byte order mark */
    start = lskip(rstrip(start));
    if (*start == 0 || *start == ';' || *start == '#') return; /* blank or comment */
    if (*r->prev_name && start > line) { /* indented: continuation, ';' and all (as inih) */
        call(r, lineno, true, r->prev_name, start);
    } else if (*start == '[') {
        header_line(r, start, lineno);
    } else {
        value_line(r, start, lineno);
    }
}

int ini_read(char *text, size_t len, ini_read_fn fn, void *ctx)
{
    struct ini_reader r = {.fn = fn, .ctx = ctx, .section = "", .prev_name = ""};
    int lineno = 0;
    size_t at = 0;
    text[len] = 0; /* ends the last line when it has no LF */
    while (at < len && !r.error) {
        char *line = text + at;
        char *lf = memchr(line, '\n', len - at);
        size_t n = lf ? (size_t)(lf - line) : len - at;
        at += n + (lf != NULL);
        lineno++;
        if (memchr(line, 0, n)) {
            fail(&r, lineno);
            continue;
        }
        line[n] = 0;
        one_line(&r, line, lineno);
    }
    return r.error;
}
