/* capture.h - per-session capture files under --capture-dir: created 0600 inside a 0700
 * directory, named YYYYmmddTHHMMSS-<session>-<client>.<ext>, flushed when the session ends. */
#ifndef SMTPTAP_CAPTURE_H
#define SMTPTAP_CAPTURE_H

#include <stddef.h>
#include <stdint.h>

#include "smtptap/events.h"

/* Creates dir (and missing parents) with mode 0700. Returns 0 or -errno; *warning is set
 * to a static text when the directory exists with permissions looser than 0700. */
int capture_dir_prepare(const char *dir, const char **warning);

/* Opens the text capture file of one session. Returns a writer owned by the caller (close
 * it with writer->close), or NULL with a reason in err. */
struct event_writer *capture_open(const char *dir, uint64_t session, const char *client, char *err,
                                  size_t err_size);

#endif
