/* capture_jsonl.c - the jsonl capture format: one JSON object per event (jansson). */
#include <stdlib.h>

#include "smtptap/capture.h"

struct jsonl_writer {
    struct event_writer base;
    FILE *f;
    bool owns_file, flush_each;
};

static void jsonl_write(struct event_writer *w, const struct event *ev)
{
    (void)w, (void)ev; /* TODO(issue 9): being written */
}

static void jsonl_close(struct event_writer *w)
{
    struct jsonl_writer *j = (struct jsonl_writer *)w;
    if (j->owns_file)
        fclose(j->f);
    else
        fflush(j->f);
    free(j);
}

struct event_writer *jsonl_writer_new(FILE *f, bool owns_file, bool flush_each)
{
    struct jsonl_writer *j = calloc(1, sizeof *j);
    if (!j) abort();
    j->base.write = jsonl_write;
    j->base.close = jsonl_close;
    j->f = f;
    j->owns_file = owns_file;
    j->flush_each = flush_each;
    return &j->base;
}
