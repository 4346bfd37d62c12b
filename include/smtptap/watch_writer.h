/* watch_writer.h - the live transcript when many sessions are watched: only the sessions
 * --only and --session pick, whole or (--summary) as one line each when they end. */
#ifndef SMTPTAP_WATCH_WRITER_H
#define SMTPTAP_WATCH_WRITER_H

#include <stdbool.h>
#include <stdio.h>

#include "smtptap/config.h"
#include "smtptap/events.h"

/* The live transcript writer for stream (not owned: close() flushes it and frees the
 * writer). Without --summary, --only and --session it is text_live_writer_new's. A session
 * that --only may pick by its EHLO/HELO name is held back (its lines kept, up to 64 KiB)
 * until that name or its end decides. */
struct event_writer *watch_live_writer_new(FILE *stream, bool color, const struct config *cfg);

#endif
