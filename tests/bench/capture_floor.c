/* capture_floor.c - the least CPU the capture files of every format can cost on this
 * machine's file system, whatever smtptap's code does: the system calls the capture
 * contract asks for, with nothing formatted. A measurement for capture_floor.sh, not a test.
 *
 *   capture_floor small DIR SESSIONS   one 4 KiB session's files, SESSIONS times, in DIR:
 *       four files created 0600 with O_EXCL (.txt, .jsonl, .pcap, .eml), the first three
 *       written once per reply the client gets (seven: greeting, HELO, MAIL, RCPT, 354, 250,
 *       221; the capture promise) plus once at the end, the .eml once, each closed; sizes as
 *       smtptap's own for smtp-source's 4 KiB message (6.2, 11.0, 6.8 and 4.4 KB)
 *   capture_floor big DIR MESSAGES     one 20 MB message's files: 23 MB of text, 21 MB of
 *       pcap and 20 MB of eml written 64 KiB at a time (smtptap's sizes), and the SHA-256
 *       of 20 MB that its message summary shows
 *   capture_floor jsonl - SESSIONS     jansson (which the issue asks for) encoding one 4 KiB
 *       session's 61 jsonl events (as smtptap's: 40 message lines, 7 replies, 5 commands, 9
 *       more), each as an object of the seven common fields with a line of 80 characters,
 *       built, dumped as capture_jsonl.c does and freed; no file
 *
 * Prints the CPU time (user + system, getrusage) per session; for big, per message, the
 * files' and the SHA-256's. */
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static double cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 + ru.ru_utime.tv_usec +
           ru.ru_stime.tv_usec;
}

static int create(const char *dir, unsigned long n, const char *ext)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/20261203T120000-%lu-127.0.0.1_40000%s", dir, n, ext);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        perror(path);
        exit(1);
    }
    return fd;
}

static void put(int fd, const char *buf, size_t len)
{
    while (len) {
        ssize_t n = write(fd, buf, len);
        if (n <= 0) {
            perror("write");
            exit(1);
        }
        buf += n;
        len -= (size_t)n;
    }
}

/* size bytes in writes pieces. */
static void put_in(int fd, const char *buf, size_t size, int writes)
{
    for (int i = 0; i < writes; i++) put(fd, buf, size / writes + (i == 0 ? size % writes : 0));
}

static void small(const char *dir, unsigned long sessions)
{
    static char buf[16384];
    memset(buf, 'x', sizeof buf);
    static const struct {
        const char *ext;
        size_t size;
        int writes;
    } files[] = {{".txt", 6214, 8}, {".jsonl", 11041, 8}, {".pcap", 6806, 8}, {"-1.eml", 4376, 1}};
    double t0 = cpu_us();
    for (unsigned long n = 0; n < sessions; n++)
        for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) {
            int fd = create(dir, n, files[k].ext);
            put_in(fd, buf, files[k].size, files[k].writes);
            close(fd);
        }
    printf("%.1f\n", (cpu_us() - t0) / (double)sessions);
}

static void big(const char *dir, unsigned long messages)
{
    enum { PIECE = 64 * 1024, BODY = 20000000 };
    char *body = malloc(BODY);
    if (!body) exit(1);
    for (size_t i = 0; i < BODY; i++) body[i] = (char)('a' + i % 26);
    static const struct {
        const char *ext;
        size_t size;
    } files[] = {{".txt", 23000000}, {".pcap", 21000000}, {"-1.eml", 20000000}};
    double files_us = 0, sha_us = 0;
    for (unsigned long n = 0; n < messages; n++) {
        double t0 = cpu_us();
        for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) {
            int fd = create(dir, n, files[k].ext);
            for (size_t at = 0; at < files[k].size; at += PIECE) {
                size_t len = files[k].size - at < PIECE ? files[k].size - at : PIECE;
                put(fd, body + at % (BODY - PIECE), len);
            }
            close(fd);
        }
        double t1 = cpu_us();
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen;
        if (!EVP_Digest(body, BODY, md, &mdlen, EVP_sha256(), NULL)) exit(1);
        files_us += t1 - t0;
        sha_us += cpu_us() - t1;
    }
    printf("%.1f %.1f\n", files_us / (double)messages, sha_us / (double)messages);
    free(body);
}

static void jsonl(unsigned long sessions)
{
    enum { EVENTS = 61 };
    static const char line[] =
        "XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX\r\n";
    char out[4096];
    size_t total = 0;
    double t0 = cpu_us();
    for (unsigned long n = 0; n < sessions; n++)
        for (int e = 0; e < EVENTS; e++) {
            json_t *o = json_object();
            json_object_set_new_nocheck(o, "ts",
                                        json_string_nocheck("2026-12-03T12:00:00.290183Z"));
            json_object_set_new_nocheck(o, "session", json_integer((json_int_t)n));
            json_object_set_new_nocheck(o, "t", json_real(0.004123 + e * 1e-6));
            json_object_set_new_nocheck(o, "dir", json_string_nocheck("c2s"));
            json_object_set_new_nocheck(o, "kind", json_string_nocheck("content"));
            json_object_set_new_nocheck(o, "tls", json_false());
            json_object_set_new_nocheck(o, "line", json_stringn_nocheck(line, sizeof line - 1));
            total += json_dumpb(o, out, sizeof out,
                                JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
            json_decref(o);
        }
    if (!total) exit(1);
    printf("%.1f\n", (cpu_us() - t0) / (double)sessions);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: capture_floor small|big|jsonl DIR COUNT\n");
        return 2;
    }
    unsigned long count = strtoul(argv[3], NULL, 10);
    if (strcmp(argv[1], "small") == 0)
        small(argv[2], count);
    else if (strcmp(argv[1], "big") == 0)
        big(argv[2], count);
    else if (strcmp(argv[1], "jsonl") == 0)
        jsonl(count);
    else
        return 2;
    return 0;
}
