/* event_copy.h - an event made independent of the session that emitted it: the event, its
 * bytes, its text and its facts (with every string and array they point to) laid out in one
 * block, so that another thread can write it later (writer_thread.h). Pure, no I/O. */
#ifndef SMTPTAP_EVENT_COPY_H
#define SMTPTAP_EVENT_COPY_H

#include <stddef.h>

#include "smtptap/events.h"

/* Bytes event_copy_into needs for ev (a multiple of the strictest alignment). */
size_t event_copy_size(const struct event *ev);
/* Copies ev into mem (event_copy_size(ev) bytes, aligned for max_align_t); returns the copy,
 * which points only into mem. */
struct event *event_copy_into(void *mem, const struct event *ev);

#endif
