/* capture_eml.c - the eml capture format: each message as the server received it. */
#include <stdlib.h>

#include "smtptap/capture.h"

static void eml_write(struct event_writer *w, const struct event *ev)
{
    (void)w, (void)ev; /* TODO(issue 9): being written */
}

static void eml_close(struct event_writer *w)
{
    free(w);
}

struct event_writer *eml_writer_new(const char *path_prefix, bool raw)
{
    (void)path_prefix, (void)raw;
    struct event_writer *w = calloc(1, sizeof *w);
    if (!w) abort();
    w->write = eml_write;
    w->close = eml_close;
    return w;
}
