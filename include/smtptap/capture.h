/* capture.h - per-session capture files under --capture-dir: one file per format (text,
 * jsonl, pcap; eml: one per message), created 0600 inside a 0700 directory, named
 * YYYYmmddTHHMMSS-<session>-<client>.<ext>, flushed at every reply (or when their owner
 * says: the writer thread flushes once per hand-over) and when the session
 * ends. Each format is an event writer; capture_open fans a session's events out to them. */
#ifndef SMTPTAP_CAPTURE_H
#define SMTPTAP_CAPTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "smtptap/events.h"

enum { FORMAT_TEXT = 1, FORMAT_JSONL = 2, FORMAT_PCAP = 4, FORMAT_EML = 8 };

/* Creates dir (and missing parents) with mode 0700. Returns 0 or -errno; *warning is set
 * to a static text when the directory exists with permissions looser than 0700. */
int capture_dir_prepare(const char *dir, const char **warning);

struct capture_options {
    const char *dir;         /* --capture-dir */
    unsigned formats;        /* FORMAT_* bits */
    bool eml_raw;            /* --eml-raw: no X-Smtptap- headers */
    const char *text_header; /* lines a text capture begins with (smtptap's start), or NULL */
    bool whole_messages;     /* -v: jsonl has every message line too (text always has) */
    time_t started;          /* the time in the file names (0: now): the session's start */
};

/* The path every capture file of a session starts with: DIR/YYYYmmddTHHMMSS-<session>-<client>
 * (local time of started; client "127.0.0.1:5000" as "127.0.0.1_5000", "[::1]:5000" as
 * "[__1]_5000"). A format adds ".txt", ".jsonl", ".pcap", or "-<message>.eml". */
void capture_base_name(const char *dir, time_t started, uint64_t session, const char *client,
                       char *out, size_t size);

/* Opens the capture files of one session. Returns one writer that hands every event to
 * each format's writer (owned by the caller: close it with writer->close), or NULL with a
 * reason in err (nothing is left open then). */
struct event_writer *capture_open(const struct capture_options *opt, uint64_t session,
                                  const char *client, char *err, size_t err_size);

/* The same files, created when the first event is written to them, by whoever writes it
 * (the writer thread: file system work stays off the event loop). When they cannot be
 * created, stderr says why ("smtptap: #N: ...") and the session's events go nowhere. opt's
 * strings must outlive the writer; client is copied. */
struct event_writer *capture_open_later(const struct capture_options *opt, uint64_t session,
                                        const char *client);

/* Creates path exclusively, mode 0600 whatever the umask. Returns an fd or -errno. */
int capture_create_file(const char *path);
/* Creates an unnamed file (O_TMPFILE), mode 0600, in the directory of path_in_dir (the part up
 * to its last '/'), to be linked to a name when complete. An fd or -errno (-EOPNOTSUPP and
 * -EISDIR where the filesystem cannot). */
int capture_create_unnamed(const char *path_in_dir);

/* ---- the formats (one file each) --------------------------------------------------------- */

/* JSON lines (capture_jsonl.c): one object per event, flushed at every line when flush_each
 * is set (stdout for log shippers), else at every reply and on close. close() closes f when
 * owns_file. */
struct event_writer *jsonl_writer_new(FILE *f, bool owns_file, bool flush_each);
/* Gives a file of the writer's own (a capture file, not stdout) a 64 KiB stdio buffer, so
 * that a flush is one write; call it before the first event. */
void jsonl_writer_file_buffer(struct event_writer *w);
/* A message's lines past its first 40 (EV_CONTENT past_preview) are left out unless whole
 * (-v): a body is eml's and pcap's, and a 20 MB one would cost more to encode than relay. */
void jsonl_writer_whole_messages(struct event_writer *w, bool whole);
/* One event as the jsonl format has it: the object (jansson's json_t, to be decref'd), or
 * the line without its LF (malloc'd, *len bytes, NUL-terminated; NULL out of memory). For
 * the control API, which serves a session's events and streams them as they happen: from
 * the event loop's thread only (the last second's text is kept between calls). */
struct json_t;
struct json_t *jsonl_event_json(const struct event *ev);
char *jsonl_event_line(const struct event *ev, size_t *len);
/* pcap (capture_pcap.c): the client's dialog in clear as synthetic TCP between the client
 * and the server, for Wireshark/tshark. Creates path (capture_create_file). NULL with err. */
struct event_writer *pcap_writer_new(const char *path, char *err, size_t err_size);
/* eml (capture_eml.c): each message the server accepted or refused, as the server received
 * it, in path_prefix-<n>.eml, with X-Smtptap- envelope headers unless raw. */
struct event_writer *eml_writer_new(const char *path_prefix, bool raw);

#endif
