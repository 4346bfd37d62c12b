/* check_client.c - the runner of `smtptap check-client` (check_client.h): for each mode it
 * starts this same binary (/proc/self/exe) as a server on fresh loopback ports with the
 * built-in sink, --client-cert MODE (or --client-starttls strip) and jsonl on stdout; runs
 * COMMAND with SMTPTAP_PORT, SMTPTAP_TLS_PORT, SMTPTAP_HOST, SMTPTAP_CA and SMTPTAP_MODE in
 * its environment, in its own process group, killed at the timeout; then stops the server
 * and hands its events to check_report.c, which judges and prints. Blocking POSIX code: it
 * runs alone, before any event loop. */
#include "smtptap/check_client.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "smtptap/buf.h"
#include "smtptap/check_report.h"
#include "smtptap/config.h"
#include "smtptap/parse.h"
#include "smtptap/tls.h"

enum {
    EX_UNAVAILABLE_ = 69,
    EX_SOFTWARE_ = 70,
    START_MS = 10000, /* for smtptap to say where it listens */
    STOP_MS = 10000,  /* for smtptap to finish after SIGTERM */
};

static const char usage[] =
    "Usage: smtptap check-client [--json] [--timeout DURATION] [--ca-dir DIR] -- COMMAND "
    "[ARG...]\n"
    "Runs COMMAND once per bad certificate smtptap can show (self-signed, untrusted-ca,\n"
    "expired, not-yet-valid, wrong-host, weak-key, sha1), once with STARTTLS withheld\n"
    "(strip), and first once with a good certificate (the control), each against smtptap's\n"
    "built-in server on fresh loopback ports, and prints what the client did each time.\n"
    "COMMAND finds in its environment: SMTPTAP_HOST (127.0.0.1), SMTPTAP_PORT (plain with\n"
    "STARTTLS), SMTPTAP_TLS_PORT (implicit TLS), SMTPTAP_CA (smtptap's CA certificate, PEM)\n"
    "and SMTPTAP_MODE. Any AUTH user and password are accepted.\n"
    "\n"
    "      --json                 the table as JSON\n"
    "      --timeout DURATION     how long each run may take (default 20s); then the\n"
    "                             command's process group is killed\n"
    "      --ca-dir DIR           smtptap's CA (default ~/.local/share/smtptap)\n"
    "\n"
    "Exit status: 0 the client refused every bad certificate and never sent credentials in\n"
    "clear, 1 it did not, 64 usage error or COMMAND not found.\n";

struct options {
    bool json;
    uint64_t timeout_ms;
    char ca_dir[4096];
    char **command; /* NULL-terminated */
};

static const struct {
    const char *mode;
    bool strip, control;
} runs[] = {
    {"good", false, true},      {"self-signed", false, false},   {"untrusted-ca", false, false},
    {"expired", false, false},  {"not-yet-valid", false, false}, {"wrong-host", false, false},
    {"weak-key", false, false}, {"sha1", false, false},          {"strip", true, false},
};

/* The command's process group and the server, for a ^C or a SIGTERM to check-client: the
 * command's own group does not get the terminal's signals, and a SIGTERM sent to
 * check-client alone reaches neither, so both are killed here before check-client goes. */
static volatile sig_atomic_t command_group, server_pid;

static void on_stop_signal(int sig)
{
    if (command_group > 0) kill(-(pid_t)command_group, SIGKILL);
    if (server_pid > 0) kill((pid_t)server_pid, SIGKILL);
    signal(sig, SIG_DFL);
    raise(sig);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- options and the command ----------------------------------------------------------- */

static int bad_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "smtptap check-client: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "; see smtptap check-client --help\n");
    return EXIT_USAGE;
}

/* Returns 0, or an exit status (-1: --help was printed). */
static int parse_options(int argc, char **argv, struct options *o)
{
    o->timeout_ms = 20000;
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (a[0] != '-') break;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage, stdout);
            return -1;
        }
        if (strcmp(a, "--json") == 0) {
            o->json = true;
            continue;
        }
        bool timeout = strcmp(a, "--timeout") == 0, ca = strcmp(a, "--ca-dir") == 0;
        if (!timeout && !ca) return bad_usage("unknown option \"%s\"", a);
        if (i + 1 >= argc) return bad_usage("%s needs a value", a);
        const char *v = argv[++i];
        if (ca) {
            if (strlen(v) >= sizeof o->ca_dir) return bad_usage("--ca-dir: path too long: %s", v);
            snprintf(o->ca_dir, sizeof o->ca_dir, "%s", v);
        } else if (parse_duration_ms(v, &o->timeout_ms) || o->timeout_ms == 0) {
            fprintf(stderr,
                    "smtptap check-client: --timeout: invalid value \"%s\"; expected a "
                    "duration above zero (250ms, 20s, 1m)\n",
                    v);
            return EXIT_USAGE;
        }
    }
    if (i >= argc) return bad_usage("%s", "no command given (check-client -- COMMAND ...)");
    o->command = argv + i;
    if (!o->ca_dir[0]) tls_default_ca_dir(o->ca_dir, sizeof o->ca_dir);
    return 0;
}

/* True when name is a file this process may execute: a path, or found in $PATH. */
static bool command_exists(const char *name)
{
    struct stat st;
    if (strchr(name, '/'))
        return access(name, X_OK) == 0 && stat(name, &st) == 0 && !S_ISDIR(st.st_mode);
    const char *path = getenv("PATH");
    if (!path || !*path) path = "/usr/local/bin:/usr/bin:/bin";
    for (const char *p = path; *p;) {
        const char *end = strchr(p, ':');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char full[4096];
        snprintf(full, sizeof full, "%.*s/%s", (int)n, n ? p : ".", name);
        if (access(full, X_OK) == 0 && stat(full, &st) == 0 && !S_ISDIR(st.st_mode)) return true;
        p += n + (end ? 1 : 0);
        if (!end) break;
    }
    return false;
}

/* ---- smtptap as the server of one run ------------------------------------------------- */

struct server {
    pid_t pid;
    int out, err; /* its stdout (jsonl) and stderr */
    char port[8], tls_port[8];
    struct buf errtext, pending; /* stderr so far; stdout's unfinished line */
};

static void server_free(struct server *s)
{
    if (s->out >= 0) close(s->out);
    if (s->err >= 0) close(s->err);
    buf_free(&s->errtext);
    buf_free(&s->pending);
}

/* Starts smtptap; 0, or -1 with errno. */
static int server_spawn(struct server *s, const char *self, const char *mode, bool strip,
                        const char *ca_dir)
{
    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) < 0) return -1;
    if (pipe2(err, O_CLOEXEC) < 0) {
        close(out[0]), close(out[1]);
        return -1;
    }
    char *args[32];
    int n = 0;
    args[n++] = (char *)"smtptap";
    const char *fixed[] = {"-q",
                           "--listen",
                           "127.0.0.1:0",
                           "--listen",
                           "tls:127.0.0.1:0",
                           "-u",
                           "sink",
                           "--decode-auth",
                           "--redact",
                           "-d",
                           "-",
                           "--format",
                           "jsonl",
                           "--ca-dir",
                           ca_dir,
                           "--client-cert",
                           strip ? "good" : mode};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) args[n++] = (char *)fixed[i];
    if (strip) args[n++] = (char *)"--client-starttls", args[n++] = (char *)"strip";
    args[n] = NULL;
    s->pid = fork();
    if (s->pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);
        dup2(devnull, 0);
        dup2(out[1], 1);
        dup2(err[1], 2);
        execv(self, args);
        _exit(127);
    }
    close(out[1]);
    close(err[1]);
    if (s->pid > 0) server_pid = s->pid;
    s->out = out[0];
    s->err = err[0];
    if (s->pid < 0) return -1;
    return 0;
}

/* "smtptap 0.1.0 listening on 127.0.0.1:41234 (plain), ..." -> the port, into port. */
static void take_port(const char *line, struct server *s)
{
    const char *on = strstr(line, " listening on ");
    if (!on) return;
    const char *paren = strstr(on, " (");
    if (!paren) return;
    const char *colon = paren;
    while (colon > on && *colon != ':') colon--;
    int n = (int)(paren - colon - 1);
    if (n <= 0 || n >= (int)sizeof s->port) return;
    char *dst = strstr(on, " (implicit TLS)") == paren ? s->tls_port : s->port;
    snprintf(dst, sizeof s->port, "%.*s", n, colon + 1);
}

/* Reads smtptap's stderr until both listening lines came; 0, or -1 when it did not start. */
static int server_wait_listening(struct server *s)
{
    uint64_t until = now_ms() + START_MS;
    size_t parsed = 0;
    uint64_t now;
    while (!(s->port[0] && s->tls_port[0]) && (now = now_ms()) < until) {
        struct pollfd p = {.fd = s->err, .events = POLLIN};
        if (poll(&p, 1, (int)(until - now)) <= 0) continue;
        char chunk[4096];
        ssize_t n = read(s->err, chunk, sizeof chunk);
        if (n <= 0) return -1;
        buf_append(&s->errtext, chunk, (size_t)n);
        for (;;) {
            const char *head = (const char *)buf_head(&s->errtext) + parsed;
            const char *nl = memchr(head, '\n', buf_size(&s->errtext) - parsed);
            if (!nl) break;
            char line[1024];
            snprintf(line, sizeof line, "%.*s", (int)(nl - head), head);
            take_port(line, s);
            parsed += (size_t)(nl - head) + 1;
        }
    }
    return s->port[0] && s->tls_port[0] ? 0 : -1;
}

/* Reads what smtptap wrote on stdout (waiting up to ms), one jsonl line per event to row.
 * Returns false at EOF. */
static bool server_read(struct server *s, struct check_row *row, int ms)
{
    struct pollfd p = {.fd = s->out, .events = POLLIN};
    if (poll(&p, 1, ms) <= 0) return true;
    char chunk[16384];
    ssize_t n = read(s->out, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) return true;
    if (n <= 0) return false;
    buf_append(&s->pending, chunk, (size_t)n);
    for (;;) {
        const char *head = (const char *)buf_head(&s->pending);
        const char *nl = memchr(head, '\n', buf_size(&s->pending));
        if (!nl) break;
        check_row_event(row, head, (size_t)(nl - head));
        buf_consume(&s->pending, (size_t)(nl - head) + 1);
    }
    return true;
}

/* SIGTERM, then its events to the end; its exit status, or -1. */
static int server_stop(struct server *s, struct check_row *row)
{
    kill(s->pid, SIGTERM);
    uint64_t until = now_ms() + STOP_MS;
    while (now_ms() < until && server_read(s, row, 100)) {
    }
    int status;
    server_pid = 0; /* from here it is gone or killed below */
    if (waitpid(s->pid, &status, WNOHANG) == 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, &status, 0);
        return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* ---- the client command --------------------------------------------------------------- */

static pid_t command_spawn(char **command, const struct server *s, const char *ca_file,
                           const char *mode)
{
    pid_t pid = fork();
    if (pid != 0) {
        if (pid > 0) setpgid(pid, pid); /* also done by the child: whichever runs first */
        if (pid > 0) command_group = pid;
        return pid;
    }
    setpgid(0, 0);
    setenv("SMTPTAP_HOST", "127.0.0.1", 1);
    setenv("SMTPTAP_PORT", s->port, 1);
    setenv("SMTPTAP_TLS_PORT", s->tls_port, 1);
    setenv("SMTPTAP_CA", ca_file, 1);
    setenv("SMTPTAP_MODE", mode, 1);
    int devnull = open("/dev/null", O_RDWR);
    dup2(devnull, 0), dup2(devnull, 1), dup2(devnull, 2);
    signal(SIGPIPE, SIG_DFL);
    execvp(command[0], command);
    _exit(127);
}

/* Waits for the command, reading smtptap's events meanwhile; kills its process group at the
 * deadline. Sets *timed_out; returns its exit status, or -1 when it was killed. */
static int command_wait(pid_t pid, struct server *s, struct check_row *row, uint64_t timeout_ms,
                        bool *timed_out)
{
    uint64_t until = now_ms() + timeout_ms;
    int status = 0;
    *timed_out = false;
    for (;;) {
        pid_t done = waitpid(pid, &status, WNOHANG);
        if (done == pid) break;
        if (now_ms() >= until) {
            *timed_out = true;
            kill(-pid, SIGKILL);
            waitpid(pid, &status, 0);
            break;
        }
        if (!server_read(s, row, 50)) usleep(50000); /* the server is gone: no busy loop */
    }
    kill(-pid, SIGKILL); /* whatever it left behind in its group */
    command_group = 0;
    return !*timed_out && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* ---- one run, then all ----------------------------------------------------------------- */

static int run_one(const struct options *o, const char *self, const char *ca_file, size_t i,
                   struct check_row *row)
{
    struct server s = {.out = -1, .err = -1};
    buf_init(&s.errtext);
    buf_init(&s.pending);
    if (server_spawn(&s, self, runs[i].mode, runs[i].strip, o->ca_dir) < 0 ||
        server_wait_listening(&s) < 0) {
        fprintf(stderr, "smtptap check-client: smtptap did not start for mode %s%s%.*s\n",
                runs[i].mode, buf_size(&s.errtext) ? ":\n" : "", (int)buf_size(&s.errtext),
                (const char *)buf_head(&s.errtext));
        if (s.pid > 0) kill(s.pid, SIGKILL), waitpid(s.pid, NULL, 0);
        server_free(&s);
        return EX_UNAVAILABLE_;
    }
    bool timed_out = false;
    pid_t pid = command_spawn(o->command, &s, ca_file, runs[i].mode);
    int code = pid > 0 ? command_wait(pid, &s, row, o->timeout_ms, &timed_out) : -1;
    server_stop(&s, row);
    server_free(&s);
    check_row_finish(row, timed_out, code);
    return pid > 0 ? 0 : EX_SOFTWARE_;
}

/* The command as a shell would read it back, for the table's first line. */
static void command_words(char **command, struct buf *out)
{
    for (size_t i = 0; command[i]; i++) {
        bool plain = command[i][0] && !strpbrk(command[i], " \t\n'\"\\$`*?;&|<>()");
        buf_printf(out, i ? " %s%s%s" : "%s%s%s", plain ? "" : "'", command[i], plain ? "" : "'");
    }
    buf_append(out, "", 1);
}

int check_client_main(int argc, char **argv)
{
    struct options o = {0};
    int rc = parse_options(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    if (!command_exists(o.command[0])) {
        fprintf(stderr, "smtptap check-client: %s: command not found (not an executable file%s)\n",
                o.command[0], strchr(o.command[0], '/') ? "" : " in $PATH");
        return EXIT_USAGE;
    }
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        fprintf(stderr, "smtptap check-client: cannot find its own binary: %s\n", strerror(errno));
        return EX_SOFTWARE_;
    }
    self[n] = 0;
    char ca_file[sizeof o.ca_dir + 8];
    snprintf(ca_file, sizeof ca_file, "%s/ca.pem", o.ca_dir);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_stop_signal);
    signal(SIGTERM, on_stop_signal);
    signal(SIGHUP, on_stop_signal);
    static struct check_report report;
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        struct check_row *row = check_report_add(&report, runs[i].mode, runs[i].control);
        if ((rc = run_one(&o, self, ca_file, i, row))) return rc;
    }
    struct buf out, words;
    buf_init(&out);
    buf_init(&words);
    command_words(o.command, &words);
    if (o.json)
        check_report_json(&report, o.command, &out);
    else
        check_report_table(&report, (const char *)buf_head(&words), &out);
    fwrite(buf_head(&out), 1, buf_size(&out), stdout);
    buf_free(&out);
    buf_free(&words);
    return check_report_passed(&report) ? 0 : 1;
}
