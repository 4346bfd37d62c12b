/* writer_thread.h - event writers on a thread of their own. The event loop hands over copies
 * of its events (event_copy.h), gathered during one loop iteration and passed on just before
 * the loop waits for I/O (without a live transcript or stream, a batch nobody waits for yet,
 * such as a command before its reply, waits for the next one, at most 10 ms; message lines
 * in a row are one item); the thread writes them, in order, to each session's capture
 * writer, then to jsonl on stdout, then to the live transcript (a session's files are
 * complete when its end line shows). Creating files, formatting and writing are then not the
 * loop's work. Bounded: when the thread is more than max_behind bytes behind, the loop waits
 * for it (the disk sets the pace; nothing is dropped). */
#ifndef SMTPTAP_WRITER_THREAD_H
#define SMTPTAP_WRITER_THREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "smtptap/events.h"

struct writer_thread;

/* Starts the thread. live and stream (either may be NULL) are written only by the thread
 * from now on, until writer_thread_stop returns; flush (stderr, when live writes there, or
 * NULL) is flushed each time the thread has written all it was given. NULL when no thread
 * can be made. */
struct writer_thread *writer_thread_start(uv_loop_t *loop, struct event_writer *live,
                                          struct event_writer *stream, FILE *flush,
                                          size_t max_behind);
/* Queues ev for capture (may be NULL), the stream and the live writer. */
void writer_thread_write(struct writer_thread *t, struct event_writer *capture,
                         const struct event *ev);
/* Queues capture->close(capture), after every event queued before. */
void writer_thread_close(struct writer_thread *t, struct event_writer *capture);
/* Hands over what is queued, waits until the thread has written it all and ends it; frees
 * t (its handles close with the loop's next turn). The live and stream writers are the
 * caller's again (to close). Every wait must have been cancelled or called back. */
void writer_thread_stop(struct writer_thread *t);

/* ---- waiting until something is written (an eml before the client hears the 250) ------- */

/* The number of the last item queued: written once writer_thread_written reaches it. */
uint64_t writer_thread_mark(const struct writer_thread *t);
/* How many items the thread has written (any thread may ask). */
uint64_t writer_thread_written(const struct writer_thread *t);

struct writer_wait {
    uint64_t mark;
    void (*cb)(struct writer_wait *w); /* on the loop's thread, once mark is written */
    struct writer_wait *next;          /* the thread's list of waits */
    bool waiting;
};
/* Calls w->cb (later, on the loop) once the item numbered mark is written. */
void writer_thread_wait(struct writer_thread *t, struct writer_wait *w, uint64_t mark,
                        void (*cb)(struct writer_wait *w));
/* Forgets w (when it is waiting). */
void writer_thread_cancel(struct writer_thread *t, struct writer_wait *w);

#endif
