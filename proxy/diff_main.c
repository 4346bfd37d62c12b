/* diff_main.c - `smtptap diff`: its options, the two captures read, the table printed
 * (capture_read.c reads, capture_diff.c compares). */
#include "smtptap/diff_main.h"

#include <stdio.h>
#include <string.h>

#include "smtptap/buf.h"
#include "smtptap/capture_diff.h"
#include "smtptap/capture_read.h"
#include "smtptap/parse.h"

enum { EX_USAGE_ = 64, EX_DATAERR_ = 65, EX_NOINPUT_ = 66 };

static const char usage[] =
    "Usage: smtptap diff [--time-threshold DURATION] A.jsonl B.jsonl\n"
    "Compares two sessions captured with --format jsonl, step by step: the commands (verb\n"
    "and arguments; addresses in any case, SIZE= values and AUTH payloads ignored), the\n"
    "reply codes and enhanced codes, the EHLO capabilities, the TLS facts of each leg, and\n"
    "reply times further apart than the threshold. Prints an aligned table; '!' marks the\n"
    "rows that differ, and the last line says where the sessions first diverged.\n"
    "\n"
    "      --time-threshold DURATION  reply times that differ by more differ (default 1s)\n"
    "\n"
    "Exit status: 0 the same dialog, 1 they differ, 64 usage error, 65 a file that is not a\n"
    "smtptap jsonl capture of one whole session (the message names the line), 66 a file\n"
    "that cannot be read.\n";

static int usage_error(const char *fmt, const char *arg)
{
    fputs("smtptap diff: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs("\n", stderr);
    fputs(usage, stderr);
    return EX_USAGE_;
}

/* The capture at path, or NULL with the message printed and *rc set. */
static struct capture_reader *read_capture(const char *path, int *rc)
{
    char err[600];
    bool unreadable = false;
    struct capture_reader *r = capture_read_file(path, err, sizeof err, &unreadable);
    if (!r) {
        fprintf(stderr, "smtptap diff: %s\n", err);
        *rc = unreadable ? EX_NOINPUT_ : EX_DATAERR_;
    }
    return r;
}

int diff_main(int argc, char **argv)
{
    const char *files[2];
    int nfiles = 0;
    uint64_t threshold_ms = 1000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage, stdout);
            return 0;
        }
        const char *v = NULL;
        if (strcmp(a, "--time-threshold") == 0) {
            if (++i == argc) return usage_error("%s needs a DURATION (e.g. 500ms, 2s)", a);
            v = argv[i];
        } else if (strncmp(a, "--time-threshold=", 17) == 0) {
            v = a + 17;
        } else if (a[0] == '-' && a[1]) {
            return usage_error("unknown option %s", a);
        } else {
            if (nfiles == 2) return usage_error("one capture too many: %s (give two)", a);
            files[nfiles++] = a;
            continue;
        }
        const char *why = parse_duration_ms(v, &threshold_ms);
        if (why) {
            fprintf(stderr, "smtptap diff: --time-threshold %s: %s\n", v, why);
            return EX_USAGE_;
        }
    }
    if (nfiles != 2) return usage_error("%s", "give two capture files (A.jsonl B.jsonl)");
    int rc = 0;
    struct capture_reader *a = read_capture(files[0], &rc);
    struct capture_reader *b = a ? read_capture(files[1], &rc) : NULL;
    if (a && b) {
        struct buf out;
        buf_init(&out);
        struct capture_diff_options o = {files[0], files[1], (double)threshold_ms};
        size_t differ = capture_diff(capture_reader_dialog(a), capture_reader_dialog(b), &o, &out);
        fwrite(buf_head(&out), 1, buf_size(&out), stdout);
        buf_free(&out);
        rc = differ ? 1 : 0;
    }
    capture_reader_free(a);
    capture_reader_free(b);
    return rc;
}
