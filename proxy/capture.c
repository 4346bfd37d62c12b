/* capture.c - per-session capture files (see capture.h). Formats are writers; this file
 * only decides where files go and how they are protected. */
#include "smtptap/capture.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
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

/* Whether the process umask takes bits from 0600 (then open's mode is not the file's mode). */
static bool umask_narrows_0600(void)
{
    static int narrows = -1; /* read once: smtptap never changes its umask */
    if (narrows < 0) {
        mode_t m = umask(077);
        umask(m);
        narrows = (m & 0600) != 0;
    }
    return narrows;
}

int capture_create_file(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return -errno;
    if (umask_narrows_0600() && fchmod(fd, 0600) < 0) { /* the mode whatever the umask */
        int e = errno;
        close(fd);
        unlink(path);
        return -e;
    }
    return fd;
}

int capture_create_unnamed(const char *path_in_dir)
{
    const char *slash = strrchr(path_in_dir, '/');
    char dir[4096];
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if ((size_t)(slash - path_in_dir) >= sizeof dir)
        return -ENAMETOOLONG;
    else
        snprintf(dir, sizeof dir, "%.*s", slash == path_in_dir ? 1 : (int)(slash - path_in_dir),
                 path_in_dir);
    int fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0) return -errno;
    if (umask_narrows_0600() && fchmod(fd, 0600) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

/* ---- the fan-out: one writer per format behind one writer per session ------------------ */

struct fanout {
    struct event_writer base;
    struct event_writer *first; /* chained through next */
};

static void fanout_write(struct event_writer *w, const struct event *ev)
{
    for (struct event_writer *f = ((struct fanout *)w)->first; f; f = f->next) f->write(f, ev);
}

static void fanout_flush(struct event_writer *w)
{
    for (struct event_writer *f = ((struct fanout *)w)->first; f; f = f->next)
        if (f->flush) f->flush(f);
}

static void fanout_close(struct event_writer *w)
{
    struct event_writer *f = ((struct fanout *)w)->first;
    while (f) {
        struct event_writer *next = f->next;
        f->close(f);
        f = next;
    }
    free(w);
}

static void add(struct fanout *fo, struct event_writer *w)
{
    struct event_writer **tail = &fo->first;
    while (*tail) tail = &(*tail)->next;
    w->next = NULL;
    *tail = w;
}

static FILE *open_stream(const char *path, char *err, size_t err_size)
{
    int fd = capture_create_file(path);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (f) return f;
    snprintf(err, err_size, "cannot create capture file %s: %s", path,
             strerror(fd < 0 ? -fd : errno));
    if (fd >= 0) close(fd);
    return NULL;
}

/* Opens the writer of one format at base.ext; false with err when it cannot. */
static bool open_format(struct fanout *fo, unsigned format, const char *base,
                        const struct capture_options *opt, char *err, size_t err_size)
{
    char path[4400];
    struct event_writer *w = NULL;
    FILE *f;
    switch (format) {
    case FORMAT_TEXT:
        snprintf(path, sizeof path, "%s.txt", base);
        if ((f = open_stream(path, err, err_size))) {
            if (opt->text_header) fputs(opt->text_header, f);
            w = text_file_writer_new(f);
        }
        break;
    case FORMAT_JSONL:
        snprintf(path, sizeof path, "%s.jsonl", base);
        if ((f = open_stream(path, err, err_size))) {
            w = jsonl_writer_new(f, true, false);
            jsonl_writer_file_buffer(w);
            jsonl_writer_whole_messages(w, opt->whole_messages);
        }
        break;
    case FORMAT_PCAP:
        snprintf(path, sizeof path, "%s.pcap", base);
        w = pcap_writer_new(path, err, err_size);
        break;
    case FORMAT_EML: w = eml_writer_new(base, opt->eml_raw); break;
    }
    if (!w) return false;
    add(fo, w);
    return true;
}

void capture_base_name(const char *dir, time_t started, uint64_t session, const char *client,
                       char *out, size_t size)
{
    char stamp[32], tag[96];
    struct tm tm;
    localtime_r(&started, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%S", &tm);
    client_tag(client, tag, sizeof tag);
    snprintf(out, size, "%s/%s-%llu-%s", dir, stamp, (unsigned long long)session, tag);
}

struct event_writer *capture_open(const struct capture_options *opt, uint64_t session,
                                  const char *client, char *err, size_t err_size)
{
    char base[4300];
    capture_base_name(opt->dir, opt->started ? opt->started : time(NULL), session, client, base,
                      sizeof base);
    struct fanout *fo = calloc(1, sizeof *fo);
    if (!fo) abort();
    fo->base.write = fanout_write;
    fo->base.close = fanout_close;
    fo->base.flush = fanout_flush;
    static const unsigned order[] = {FORMAT_TEXT, FORMAT_JSONL, FORMAT_PCAP, FORMAT_EML};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        if (!(opt->formats & order[i])) continue;
        if (!open_format(fo, order[i], base, opt, err, err_size)) {
            fanout_close(&fo->base);
            return NULL;
        }
    }
    return &fo->base;
}

/* ---- opened where it is written --------------------------------------------------------- */

struct later {
    struct event_writer base;
    struct capture_options opt;
    uint64_t session;
    struct event_writer *files; /* NULL until the first event, or when they failed */
    bool failed;
    char client[]; /* owned copy */
};

static void later_write(struct event_writer *w, const struct event *ev)
{
    struct later *l = (struct later *)w;
    if (!l->files && !l->failed) {
        char err[512];
        l->files = capture_open(&l->opt, l->session, l->client, err, sizeof err);
        l->failed = !l->files;
        if (l->failed) fprintf(stderr, "smtptap: #%llu: %s\n", (unsigned long long)l->session, err);
        /* whoever flushes this writer flushes the files */
        for (struct event_writer *f = l->files ? ((struct fanout *)l->files)->first : NULL; f;
             f = f->next)
            f->flush_by_owner = w->flush_by_owner;
    }
    if (l->files) l->files->write(l->files, ev);
}

static void later_flush(struct event_writer *w)
{
    struct later *l = (struct later *)w;
    if (l->files) l->files->flush(l->files);
}

static void later_close(struct event_writer *w)
{
    struct later *l = (struct later *)w;
    if (l->files) l->files->close(l->files);
    free(l);
}

struct event_writer *capture_open_later(const struct capture_options *opt, uint64_t session,
                                        const char *client)
{
    size_t n = strlen(client) + 1;
    struct later *l = calloc(1, sizeof *l + n);
    if (!l) abort();
    l->base.write = later_write;
    l->base.close = later_close;
    l->base.flush = later_flush;
    l->opt = *opt;
    if (!l->opt.started) l->opt.started = time(NULL);
    l->session = session;
    memcpy(l->client, client, n);
    return &l->base;
}
