/* capture.c - per-session capture files (see capture.h). Formats are writers; this file
 * only decides where files go and how they are protected. */
#include "smtptap/capture.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "smtptap/text.h"

int capture_dir_prepare(const char *dir, const char **warning)
{
    char path[4096];
    *warning = NULL;
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path) return -ENAMETOOLONG;
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(path, 0700) < 0 && errno != EEXIST) return -errno;
        *p = '/';
    }
    if (mkdir(path, 0700) < 0 && errno != EEXIST) return -errno;
    struct stat st;
    if (stat(path, &st) < 0) return -errno;
    if (!S_ISDIR(st.st_mode)) return -ENOTDIR;
    if (st.st_mode & 077)
        *warning = "the directory is readable by other users; transcripts can hold secrets "
                   "(chmod 700 it)";
    return 0;
}

/* "127.0.0.1:5000" -> "127.0.0.1_5000", "[::1]:5000" -> "[__1]_5000" */
static void client_tag(const char *client, char *out, size_t size)
{
    size_t n = 0;
    for (const char *p = client; *p && n + 1 < size; p++)
        out[n++] = (*p == ':' || *p == '/') ? '_' : *p;
    out[n] = 0;
}

struct event_writer *capture_open(const char *dir, uint64_t session, const char *client, char *err,
                                  size_t err_size)
{
    char stamp[32], tag[96], path[4300];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%S", &tm);
    client_tag(client, tag, sizeof tag);
    snprintf(path, sizeof path, "%s/%s-%llu-%s.txt", dir, stamp, (unsigned long long)session, tag);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, err_size, "cannot create capture file %s: %s", path, strerror(errno));
        return NULL;
    }
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        snprintf(err, err_size, "cannot open capture file %s: %s", path, strerror(errno));
        return NULL;
    }
    return text_file_writer_new(f);
}
