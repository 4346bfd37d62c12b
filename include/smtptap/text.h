/* text.h - the text transcript format, shared by the live transcript (stderr) and the text
 * capture files: "#<session> +<seconds> <marker> <text>", one line per event line. */
#ifndef SMTPTAP_TEXT_H
#define SMTPTAP_TEXT_H

#include <stdbool.h>
#include <stdio.h>

#include "smtptap/buf.h"
#include "smtptap/events.h"

/* Appends the transcript lines of one event to out (nothing for kinds text does not show). */
void text_format_event(const struct event *ev, bool color, struct buf *out);
/* The same as the live transcript shows it: without whole_messages (-v) nothing for a
 * message's lines after its first 40, and its summary line says how many were left out. */
void text_format_live(const struct event *ev, bool color, bool whole_messages, struct buf *out);
/* Appends bytes made readable: printable ASCII and valid UTF-8 as they are, other bytes as
 * \r \n \0 \t-free escapes (\xNN). */
void text_escape(const uint8_t *bytes, size_t len, struct buf *out);

/* Formats a wall-clock time (microseconds since the epoch) as RFC 3339 in the local time
 * zone, e.g. "2026-12-03T13:20:01.123456+00:00". */
void text_rfc3339(uint64_t wall_us, char *out, size_t size);

/* A writer that formats events onto a stdio stream. The stream is not owned; close()
 * flushes it and frees the writer. */
struct event_writer *text_stream_writer_new(FILE *stream, bool color);
/* The live transcript: without whole_messages (-v) a message's lines after its first 40
 * are left out, and its summary line says how many. */
struct event_writer *text_live_writer_new(FILE *stream, bool color, bool whole_messages);
/* The same for a capture file: close() also closes the file. */
struct event_writer *text_file_writer_new(FILE *file);

#endif
