/* capture_read_file.c - a capture file read whole through the capture reader: the I/O that
 * capture_read.c leaves out, for diff, replay and replay-client. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "smtptap/capture_read.h"

struct capture_reader *capture_read_file(const char *path, char *err, size_t errlen,
                                         bool *unreadable)
{
    *unreadable = false;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        *unreadable = true;
        return NULL;
    }
    struct capture_reader *r = capture_reader_new();
    char chunk[65536];
    size_t n;
    int rc = 0;
    while (rc == 0 && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        rc = capture_reader_feed(r, chunk, n);
    bool read_error = ferror(f);
    int saved = errno;
    fclose(f);
    if (rc == 0 && read_error) {
        snprintf(err, errlen, "%s: %s", path, strerror(saved));
        *unreadable = true;
        capture_reader_free(r);
        return NULL;
    }
    if (rc == 0) rc = capture_reader_finish(r);
    if (rc < 0) {
        snprintf(err, errlen, "%s: %s", path, capture_reader_error(r));
        capture_reader_free(r);
        return NULL;
    }
    return r;
}
