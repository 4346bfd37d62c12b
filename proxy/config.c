/* config.c - defaults, the INI file (ini_read.h) and the command line (getopt_long) into one
 * struct config. A key given on the command line wins over the file. */
#include "smtptap/config.h"

#include "smtptap/client_cert.h"
#include "smtptap/ini_read.h"
#include "smtptap/sink_auth.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char usage[] =
    "Usage: smtptap [OPTIONS]\n"
    "       smtptap check-client [OPTIONS] -- COMMAND...  (does a mail client check TLS?)\n"
    "       smtptap diff [OPTIONS] A.jsonl B.jsonl  (where two captured sessions diverge)\n"
    "       smtptap replay-client [OPTIONS] CAPTURE.jsonl  (the recorded client, again)\n"
    "A transparent SMTP debugging proxy: shows and records the whole SMTP dialog.\n"
    "\n"
    "  -l, --listen [tls:]ADDR:PORT   listen address, repeatable (default 127.0.0.1:2525);\n"
    "                                 tls: for implicit TLS (SMTPS, port 465 style)\n"
    "  -u, --upstream SPEC            [tls:|starttls:|plain:]HOST[:PORT] | sink | transparent\n"
    "                                 | replay:CAPTURE.jsonl (default sink; port 465 means\n"
    "                                 tls:; without a port 25, or 587 with starttls:, 465\n"
    "                                 with tls:)\n"
    "  -c, --config FILE              INI file; command line flags override it\n"
    "  -d, --capture-dir DIR          write one transcript file per session into DIR\n"
    "      --format LIST              capture formats, comma-separated: text, jsonl, pcap,\n"
    "                                 eml (default: text); -d - --format jsonl streams\n"
    "                                 every session's events to stdout\n"
    "      --eml-raw                  eml files without the X-Smtptap- envelope headers\n"
    "      --client-starttls MODE     offer (default): smtptap answers STARTTLS and decrypts;\n"
    "                                 strip: STARTTLS removed, answered 502;\n"
    "                                 passthrough: relayed, TLS not visible\n"
    "      --max-sessions N           concurrent sessions (default 1000)\n"
    "      --idle-timeout DURATION    close a session silent this long (default 300s)\n"
    "      --connect-timeout DURATION upstream connect and greeting timeout (default 10s)\n"
    "  -q, --quiet                    no live transcript on stderr (captures unchanged)\n"
    "  -v, --verbose                  whole messages on the terminal, not only their\n"
    "                                 first 40 lines (a text capture has them all);\n"
    "                                 -vv also shows each session's state changes\n"
    "      --color=auto|always|never  colour the live transcript (NO_COLOR honoured)\n"
    "      --summary                  one line per finished session instead of its dialog\n"
    "      --only CLIENT-GLOB[,...]   show only the sessions whose client address (with or\n"
    "                                 without its port) or EHLO/HELO name matches a glob\n"
    "                                 (* ?), e.g. '127.0.0.1:*', '[::1]:*', '*.example.com'\n"
    "      --session N[,...]          show only these sessions (#N); with --only: either\n"
    "                                 (captures record every session whatever these say)\n"
    "  -V, --version                  print the version and exit\n"
    "  -h, --help                     print this help and exit\n"
    "\n"
    "      --decode-auth              decode SASL exchanges (AUTH) in the transcript\n"
    "      --redact                   mask passwords, tokens and the lines carrying them\n"
    "\n"
    "      --fault 'VERB [GLOB]: ACTION'  fault rule, repeatable, e.g.\n"
    "                                 'RCPT *@busy.example: reply 450 4.2.0 Busy, try later'\n"
    "                                 ACTION: reply CODE TEXT | delay 2s | drop | reset |\n"
    "                                 stall | strip CAP[,CAP] | slow 10/s | truncate N\n"
    "      --seed N                   seed for probabilistic faults (printed at start)\n"
    "\n"
    "      --insecure                 do not verify the upstream certificate\n"
    "      --upstream-ca FILE         also trust this CA for the upstream\n"
    "      --ca-dir DIR               smtptap's CA (default ~/.local/share/smtptap)\n"
    "      --print-ca                 print the CA certificate (create it if missing), exit\n"
    "      --keylog FILE              write NSS key log lines for both legs\n"
    "      --replay-speed 0|1|N       -u replay: answer at the recorded pace (1, default),\n"
    "                                 N times faster, or at once (0)\n"
    "      --replay-strict            -u replay: a command must be the recorded one byte\n"
    "                                 for byte (default: the same verb will do)\n"
    "      --client-cert MODE         the certificate the client is shown: good (default),\n"
    "                                 self-signed, untrusted-ca, expired, not-yet-valid,\n"
    "                                 wrong-host, weak-key, sha1; a verdict per session\n"
    "                                 says what the client did with it\n"
    "\n"
    "      --control ADDR:PORT        serve the control API and the live web page there\n"
    "                                 (loopback; another address needs a token)\n"
    "      --control-token TOKEN      require 'Authorization: Bearer TOKEN' on every request\n"
    "      --control-token-file FILE  the same, the token read from FILE (first line)\n"
    "      --control-recent N         ended sessions the API keeps (default 100)\n"
    "\n"
    "Upstream prefixes: tls: implicit TLS; starttls: STARTTLS required (421 to the client\n"
    "without it); plain: never TLS; no prefix: STARTTLS when the server offers it, else\n"
    "plain with a warning (with --client-starttls passthrough the client's own STARTTLS\n"
    "decides). Every upstream certificate is verified (--upstream-ca, --insecure).\n"
    "\n"
    "Exit status: 0 clean shutdown, 64 usage error, 65 a bad replay capture, 69 cannot listen,\n"
    "78 configuration error.\n";

const char *config_usage(void)
{
    return usage;
}

void config_defaults(struct config *c)
{
    memset(c, 0, sizeof *c);
    parse_listen("127.0.0.1:2525", &c->listen[0]);
    c->nlisten = 1;
    c->upstream.kind = UPSTREAM_SINK;
    c->client_starttls = CLIENT_STARTTLS_OFFER;
    c->max_sessions = 1000;
    c->idle_timeout_ms = 300000;
    c->connect_timeout_ms = 10000;
    c->grace_ms = 5000;
    c->formats = FORMAT_TEXT;
    c->color = COLOR_AUTO;
    c->replay_speed = 1;
    c->control_recent = 100;
}

/* ---- one setting, whatever its source ------------------------------------------------- */

enum setting_id {
    S_LISTEN,
    S_UPSTREAM,
    S_CAPTURE_DIR,
    S_FORMAT,
    S_CLIENT_STARTTLS,
    S_MAX_SESSIONS,
    S_IDLE_TIMEOUT,
    S_CONNECT_TIMEOUT,
    S_COLOR,
    S_DECODE_AUTH,
    S_REDACT,
    S_EML_RAW,
    S_SINK_USERS,
    S_CA_DIR,
    S_KEYLOG,
    S_UPSTREAM_CA,
    S_INSECURE,
    S_CLIENT_CERT,
    S_SUMMARY,
    S_ONLY,
    S_SESSION,
    S_REPLAY_SPEED,
    S_REPLAY_STRICT,
    S_CONTROL,
    S_CONTROL_TOKEN,
    S_CONTROL_TOKEN_FILE,
    S_CONTROL_RECENT,
    S_NONE, /* a flag handled by config_from_args itself */
};

/* Maps one of a few words (any case) to its value; false when v is none of them. */
static bool parse_choice(const char *v, const char *const *words, const int *values, size_t n,
                         int *out)
{
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(v, words[i]) != 0) continue;
        *out = values[i];
        return true;
    }
    return false;
}

/* Applies one value. `name` is how the user wrote it (flag or section.key) for messages. */
static const char *apply(struct config *c, enum setting_id id, const char *name, const char *v,
                         bool *listen_reset, struct buf *err)
{
    const char *bad = NULL;
    uint64_t n;
    bool b;
    static struct sink_users users; /* only to check the syntax */
    switch (id) {
    case S_LISTEN:
        if (listen_reset && !*listen_reset) c->nlisten = 0, *listen_reset = true;
        if (c->nlisten == CONFIG_MAX_LISTEN) {
            bad = "at most 16 listen addresses";
            break;
        }
        if (!(bad = parse_listen(v, &c->listen[c->nlisten]))) c->nlisten++;
        break;
    case S_UPSTREAM:
        bad = parse_upstream(v, &c->upstream);
        if (bad == parse_upstream_unknown_prefix) { /* "smtps:host:465": name the word */
            buf_printf(err, "%s: unknown prefix \"%.*s:\" in \"%s\"; expected %s", name,
                       (int)upstream_prefix_length(v), v, v, bad);
            return bad;
        }
        break;
    case S_CAPTURE_DIR:
        if (strlen(v) >= sizeof c->capture_dir)
            bad = "a shorter path";
        else
            strcpy(c->capture_dir, v);
        break;
    case S_FORMAT:
        if (!(bad = parse_formats(v, &c->formats))) break;
        break;
    case S_CLIENT_STARTTLS: {
        static const char *const words[] = {"offer", "strip", "passthrough"};
        static const int values[] = {CLIENT_STARTTLS_OFFER, CLIENT_STARTTLS_STRIP,
                                     CLIENT_STARTTLS_PASSTHROUGH};
        if (!parse_choice(v, words, values, 3, (int *)&c->client_starttls))
            bad = "offer, strip or passthrough";
        break;
    }
    case S_MAX_SESSIONS:
        if (!(bad = parse_uint(v, 1, 1000000, &n)))
            c->max_sessions = n;
        else
            bad = "a whole number from 1 to 1000000";
        break;
    case S_IDLE_TIMEOUT:
    case S_CONNECT_TIMEOUT:
        if (!(bad = parse_duration_ms(v, &n)) && n == 0) bad = "a duration above zero";
        if (!bad) *(id == S_IDLE_TIMEOUT ? &c->idle_timeout_ms : &c->connect_timeout_ms) = n;
        break;
    case S_COLOR: {
        static const char *const words[] = {"auto", "always", "never"};
        static const int values[] = {COLOR_AUTO, COLOR_ALWAYS, COLOR_NEVER};
        if (!parse_choice(v, words, values, 3, (int *)&c->color)) bad = "auto, always or never";
        break;
    }
    case S_DECODE_AUTH:
    case S_REDACT:
        if (!(bad = parse_bool(v, &b))) *(id == S_REDACT ? &c->redact : &c->decode_auth) = b;
        break;
    case S_EML_RAW:
        if (!(bad = parse_bool(v, &b))) c->eml_raw = b;
        break;
    case S_SINK_USERS:
        if (strlen(v) >= sizeof c->sink_users)
            bad = "a shorter list";
        else if (!(bad = sink_users_parse(v, &users)))
            strcpy(c->sink_users, v);
        break;
    case S_CA_DIR:
    case S_KEYLOG:
    case S_UPSTREAM_CA: {
        char *dst = id == S_CA_DIR ? c->ca_dir : id == S_KEYLOG ? c->keylog : c->upstream_ca;
        if (strlen(v) >= sizeof c->ca_dir)
            bad = "a shorter path";
        else
            strcpy(dst, v);
        break;
    }
    case S_INSECURE:
        if (!(bad = parse_bool(v, &b))) c->insecure = b;
        break;
    case S_CLIENT_CERT:
        if (!client_cert_parse(v, &c->client_cert)) bad = client_cert_choices();
        break;
    case S_SUMMARY:
        if (!(bad = parse_bool(v, &b))) c->summary = b;
        break;
    case S_ONLY: /* empty: every session, as the sample configuration has it */
        if (!v[0]) c->watch.nglobs = 0;
        if (v[0]) bad = watch_add_globs(&c->watch, v);
        break;
    case S_SESSION:
        if (!v[0]) c->watch.nsessions = 0;
        if (v[0]) bad = watch_add_sessions(&c->watch, v);
        break;
    case S_REPLAY_SPEED:
        if (!(bad = parse_uint(v, 0, 1000000, &n)))
            c->replay_speed = (double)n;
        else
            bad = "0 (no waits), 1 (the recorded pace) or N (N times faster), up to 1000000";
        break;
    case S_REPLAY_STRICT:
        if (!(bad = parse_bool(v, &b))) c->replay_strict = b;
        break;
    case S_CONTROL:
        if (!v[0]) { /* empty: no control API, as the sample configuration has it */
            c->control_on = false;
        } else if (!(bad = parse_hostport(v, true, &c->control))) {
            c->control_on = true;
        } else {
            bad = "ADDR:PORT with a numeric address, e.g. 127.0.0.1:8025 or [::1]:8025";
        }
        break;
    case S_CONTROL_TOKEN:
        if (strlen(v) >= sizeof c->control_token)
            bad = "a token of at most 255 characters";
        else if (strspn(v,
                        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=") !=
                 strlen(v))
            bad = "a token of letters, digits and -._~+/= (RFC 6750 b64token)";
        else
            strcpy(c->control_token, v);
        break;
    case S_CONTROL_TOKEN_FILE:
        if (strlen(v) >= sizeof c->control_token_file)
            bad = "a shorter path";
        else
            strcpy(c->control_token_file, v);
        break;
    case S_CONTROL_RECENT:
        if (!(bad = parse_uint(v, 0, 100000, &n)))
            c->control_recent = n;
        else
            bad = "a whole number from 0 to 100000";
        break;
    case S_NONE: break;
    }
    if (bad && id == S_CONTROL_TOKEN) { /* a secret: never echoed */
        buf_printf(err, "%s: invalid value; expected %s", name, bad);
        return bad;
    }
    if (bad) buf_printf(err, "%s: invalid value \"%s\"; expected %s", name, v, bad);
    return bad;
}

/* ---- the INI file ---------------------------------------------------------------------- */

static const struct ini_key {
    const char *section, *key;
    enum setting_id id;
} ini_keys[] = {
    {"listen", "address", S_LISTEN},
    {"listen", "client_starttls", S_CLIENT_STARTTLS},
    {"listen", "max_sessions", S_MAX_SESSIONS},
    {"listen", "idle_timeout", S_IDLE_TIMEOUT},
    {"upstream", "target", S_UPSTREAM},
    {"upstream", "connect_timeout", S_CONNECT_TIMEOUT},
    {"upstream", "ca", S_UPSTREAM_CA},
    {"upstream", "insecure", S_INSECURE},
    {"upstream", "replay_speed", S_REPLAY_SPEED},
    {"upstream", "replay_strict", S_REPLAY_STRICT},
    {"tls", "ca_dir", S_CA_DIR},
    {"tls", "keylog", S_KEYLOG},
    {"tls", "client_cert", S_CLIENT_CERT},
    {"capture", "dir", S_CAPTURE_DIR},
    {"capture", "format", S_FORMAT},
    {"capture", "decode_auth", S_DECODE_AUTH},
    {"capture", "redact", S_REDACT},
    {"capture", "eml_raw", S_EML_RAW},
    {"sink", "users", S_SINK_USERS},
    {"live", "summary", S_SUMMARY},
    {"live", "only", S_ONLY},
    {"live", "session", S_SESSION},
    {"control", "listen", S_CONTROL},
    {"control", "token", S_CONTROL_TOKEN},
    {"control", "token_file", S_CONTROL_TOKEN_FILE},
    {"control", "recent", S_CONTROL_RECENT},
};

enum { NINI_KEYS = sizeof ini_keys / sizeof ini_keys[0], FAULT_KEYS_MAX = 8 };

struct ini_state {
    struct config *c;
    struct buf *err;
    const char *path;
    bool listen_reset;
    struct fault_rule rule; /* the [fault NAME] section being read */
    bool in_rule;
    int key_line[NINI_KEYS]; /* where each key of ini_keys was given; 0: not yet */
    struct {
        char key[16];
        int line;
    } fault_keys[FAULT_KEYS_MAX]; /* the keys of the [fault NAME] section being read */
    int nfault_keys;
    bool lines_named; /* the message names its lines: no " (line N)" after it */
};

/* A key given twice in a section: the second would silently win, so it is an error naming
 * both lines. Returns 0 with the message in st->err. */
static int given_twice(struct ini_state *st, const char *section, const char *key, int first,
                       int again)
{
    buf_printf(st->err,
               "%s: [%s] %s is given twice, on line %d and on line %d; keep one (a key appears "
               "once in its section; only [listen] address may repeat)",
               st->path, section, key, first, again);
    st->lines_named = true;
    return 0;
}

/* Adds the finished [fault NAME] rule; false with a message when it is incomplete. */
static bool end_fault_section(struct ini_state *st)
{
    if (!st->in_rule) return true;
    st->in_rule = false;
    char msg[300];
    if (fault_rule_finish(&st->rule, msg, sizeof msg) < 0) {
        buf_printf(st->err, "%s: %s", st->path, msg);
        return false;
    }
    fault_set_add(&st->c->file_faults, &st->rule);
    return true;
}

/* The NAME of a [fault NAME] section (blanks after "fault" skipped; any case), or NULL when
 * the section is another one. */
static const char *fault_section_name(const char *section)
{
    if (strncasecmp(section, "fault", 5) != 0 || (section[5] != 0 && section[5] != ' '))
        return NULL;
    const char *name = section + 5;
    while (*name == ' ') name++;
    return name;
}

static bool rule_named(const struct fault_set *set, const char *name)
{
    for (size_t i = 0; i < set->count; i++)
        if (strcmp(set->rules[i].name, name) == 0) return true;
    return false;
}

/* A section header: the fault rule being read ends; a [fault NAME] header begins the next
 * one (other sections are checked at their keys). Returns 0 with a message in st->err. */
static int on_ini_section(struct ini_state *st, const char *section)
{
    const char *name = fault_section_name(section);
    /* A repeated name is the mistake to report, even when the first section is incomplete
     * (its "missing key" would send the user to the wrong section). */
    if (name && st->in_rule && strcmp(st->rule.name, name) == 0) {
        buf_printf(st->err, "%s: [fault %s] appears twice; give each rule its own name", st->path,
                   name);
        return 0;
    }
    if (!end_fault_section(st)) return 0;
    if (!name) return 1;
    size_t len = strlen(name);
    if (len == 0) {
        buf_printf(st->err, "%s: [fault] needs a name: [fault NAME]", st->path);
        return 0;
    }
    if (len >= FAULT_NAME_MAX) {
        buf_printf(st->err,
                   "%s: [fault %s]: the name is %zu characters long; a fault rule's name may "
                   "have at most %d",
                   st->path, name, len, FAULT_NAME_MAX - 1);
        return 0;
    }
    /* "flag N" names the rules of --fault flags (the transcript and the control API tell
     * the two origins apart by it). */
    if (strncmp(name, "flag ", 5) == 0) {
        buf_printf(st->err,
                   "%s: [fault %s]: names starting \"flag \" are those of --fault rules; choose "
                   "another name",
                   st->path, name);
        return 0;
    }
    /* The rule of an earlier section of that name was added when its section ended. */
    if (rule_named(&st->c->file_faults, name)) {
        buf_printf(st->err, "%s: [fault %s] appears twice; give each rule its own name", st->path,
                   name);
        return 0;
    }
    fault_rule_begin(&st->rule, name);
    st->in_rule = true;
    st->nfault_keys = 0;
    return 1;
}

static int on_fault_value(struct ini_state *st, const struct ini_at *at, const char *section,
                          const char *key, const char *value)
{
    if (!st->in_rule) return 0; /* its header was refused: the message says why */
    for (int i = 0; i < st->nfault_keys && !at->continued; i++)
        if (strcmp(st->fault_keys[i].key, key) == 0)
            return given_twice(st, section, key, st->fault_keys[i].line, at->line);
    char msg[300];
    if (fault_rule_set(&st->rule, key, value, msg, sizeof msg) != 0) {
        buf_printf(st->err, "%s: %s", st->path, msg);
        return 0;
    }
    /* Known keys only get here, each once: there is room for all of them. */
    if (!at->continued && st->nfault_keys < FAULT_KEYS_MAX &&
        strlen(key) < sizeof st->fault_keys[0].key) {
        strcpy(st->fault_keys[st->nfault_keys].key, key);
        st->fault_keys[st->nfault_keys++].line = at->line;
    }
    return 1;
}

static void list_keys(struct buf *out, const char *section)
{
    const char *sep = "";
    for (size_t i = 0; i < sizeof ini_keys / sizeof ini_keys[0]; i++) {
        if (strcmp(ini_keys[i].section, section)) continue;
        buf_printf(out, "%s%s", sep, ini_keys[i].key);
        sep = ", ";
    }
}

/* ini_read's callback: a header (key NULL) or one value. */
static int on_ini_value(void *user, const struct ini_at *at, const char *section, const char *key,
                        const char *value)
{
    struct ini_state *st = user;
    bool known_section = false;
    if (buf_size(st->err)) return 0; /* one message: the first (ini_read stops there too) */
    if (!key) return on_ini_section(st, section);
    if (fault_section_name(section)) return on_fault_value(st, at, section, key, value);
    for (size_t i = 0; i < NINI_KEYS; i++) {
        if (strcmp(ini_keys[i].section, section) != 0) continue;
        known_section = true;
        if (strcmp(ini_keys[i].key, key) != 0) continue;
        if (ini_keys[i].id != S_LISTEN && !at->continued) {
            if (st->key_line[i]) return given_twice(st, section, key, st->key_line[i], at->line);
            st->key_line[i] = at->line;
        }
        char name[160];
        snprintf(name, sizeof name, "%s: [%s] %s", st->path, section, key);
        return apply(st->c, ini_keys[i].id, name, value, &st->listen_reset, st->err) ? 0 : 1;
    }
    if (!known_section) {
        buf_printf(st->err,
                   "%s: unknown section [%s]; expected listen, upstream, tls, capture, live, sink, "
                   "control or fault NAME",
                   st->path, section);
        return 0;
    }
    buf_printf(st->err, "%s: unknown key \"%s\" in [%s]; expected one of: ", st->path, key,
               section);
    list_keys(st->err, section);
    return 0;
}

/* Reads the whole file into out, plus one byte of room for ini_read's last NUL. Returns false
 * with a message naming the file and the reason. */
static bool read_config_text(const char *path, struct buf *out, struct buf *err)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        buf_printf(err, "--config %s: cannot read the file: %s", path, strerror(errno));
        return false;
    }
    char chunk[4096];
    size_t n;
    bool too_large = false;
    errno = 0;
    while (!too_large && (n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        too_large = buf_size(out) + n > CONFIG_FILE_MAX;
        buf_append(out, chunk, n);
    }
    int read_errno = ferror(f) ? (errno ? errno : EIO) : 0; /* a directory: EISDIR */
    fclose(f);
    if (read_errno)
        buf_printf(err, "--config %s: cannot read the file: %s", path, strerror(read_errno));
    else if (too_large)
        buf_printf(err, "--config %s: larger than %d bytes; is it the right file?", path,
                   CONFIG_FILE_MAX);
    buf_append(out, "", 1);
    return !read_errno && !too_large;
}

enum config_result config_load_file(struct config *c, const char *path, struct buf *err)
{
    struct buf text;
    buf_init(&text);
    if (!read_config_text(path, &text, err)) {
        buf_free(&text);
        return CONFIG_ERR_CONFIG;
    }
    struct ini_state st = {.c = c, .err = err, .path = path};
    int line = ini_read((char *)buf_head(&text), buf_size(&text) - 1, on_ini_value, &st);
    buf_free(&text);
    if (line == 0 && !end_fault_section(&st)) return CONFIG_ERR_CONFIG; /* names the section */
    if (line == 0) return CONFIG_OK;
    if (buf_size(err) == 0)
        buf_printf(err, "%s: line %d: not an INI line; expected [section] or key = value", path,
                   line);
    else if (!st.lines_named)
        buf_printf(err, " (line %d)", line);
    return CONFIG_ERR_CONFIG;
}

/* ---- the command line ----------------------------------------------------------------- */

enum {
    O_FORMAT = 256,
    O_CLIENT_STARTTLS,
    O_MAX_SESSIONS,
    O_IDLE_TIMEOUT,
    O_CONNECT_TIMEOUT,
    O_COLOR,
    O_DECODE_AUTH,
    O_REDACT,
    O_EML_RAW,
    O_FAULT,
    O_SEED,
    O_INSECURE,
    O_PRINT_CA,
    O_UPSTREAM_CA,
    O_CA_DIR,
    O_KEYLOG,
    O_CLIENT_CERT,
    O_SUMMARY,
    O_ONLY,
    O_SESSION,
    O_REPLAY_SPEED,
    O_REPLAY_STRICT,
    O_CONTROL,
    O_CONTROL_TOKEN,
    O_CONTROL_TOKEN_FILE,
    O_CONTROL_RECENT,
};

static const struct option long_opts[] = {
    {"listen", required_argument, 0, 'l'},
    {"upstream", required_argument, 0, 'u'},
    {"config", required_argument, 0, 'c'},
    {"capture-dir", required_argument, 0, 'd'},
    {"format", required_argument, 0, O_FORMAT},
    {"client-starttls", required_argument, 0, O_CLIENT_STARTTLS},
    {"max-sessions", required_argument, 0, O_MAX_SESSIONS},
    {"idle-timeout", required_argument, 0, O_IDLE_TIMEOUT},
    {"connect-timeout", required_argument, 0, O_CONNECT_TIMEOUT},
    {"color", required_argument, 0, O_COLOR},
    {"colour", required_argument, 0, O_COLOR},
    {"quiet", no_argument, 0, 'q'},
    {"verbose", no_argument, 0, 'v'},
    {"version", no_argument, 0, 'V'},
    {"help", no_argument, 0, 'h'},
    {"decode-auth", no_argument, 0, O_DECODE_AUTH},
    {"redact", no_argument, 0, O_REDACT},
    {"eml-raw", no_argument, 0, O_EML_RAW},
    {"insecure", no_argument, 0, O_INSECURE},
    {"print-ca", no_argument, 0, O_PRINT_CA},
    {"fault", required_argument, 0, O_FAULT},
    {"seed", required_argument, 0, O_SEED},
    {"upstream-ca", required_argument, 0, O_UPSTREAM_CA},
    {"ca-dir", required_argument, 0, O_CA_DIR},
    {"keylog", required_argument, 0, O_KEYLOG},
    {"client-cert", required_argument, 0, O_CLIENT_CERT},
    {"summary", no_argument, 0, O_SUMMARY},
    {"only", required_argument, 0, O_ONLY},
    {"session", required_argument, 0, O_SESSION},
    {"replay-speed", required_argument, 0, O_REPLAY_SPEED},
    {"replay-strict", no_argument, 0, O_REPLAY_STRICT},
    {"control", required_argument, 0, O_CONTROL},
    {"control-token", required_argument, 0, O_CONTROL_TOKEN},
    {"control-token-file", required_argument, 0, O_CONTROL_TOKEN_FILE},
    {"control-recent", required_argument, 0, O_CONTROL_RECENT},
    {0, 0, 0, 0},
};

static enum setting_id setting_of(int opt)
{
    switch (opt) {
    case 'l': return S_LISTEN;
    case 'u': return S_UPSTREAM;
    case 'd': return S_CAPTURE_DIR;
    case O_FORMAT: return S_FORMAT;
    case O_CLIENT_STARTTLS: return S_CLIENT_STARTTLS;
    case O_MAX_SESSIONS: return S_MAX_SESSIONS;
    case O_IDLE_TIMEOUT: return S_IDLE_TIMEOUT;
    case O_CONNECT_TIMEOUT: return S_CONNECT_TIMEOUT;
    case O_COLOR: return S_COLOR;
    case O_UPSTREAM_CA: return S_UPSTREAM_CA;
    case O_CA_DIR: return S_CA_DIR;
    case O_KEYLOG: return S_KEYLOG;
    case O_CLIENT_CERT: return S_CLIENT_CERT;
    case O_ONLY: return S_ONLY;
    case O_SESSION: return S_SESSION;
    case O_REPLAY_SPEED: return S_REPLAY_SPEED;
    case O_CONTROL: return S_CONTROL;
    case O_CONTROL_TOKEN: return S_CONTROL_TOKEN;
    case O_CONTROL_TOKEN_FILE: return S_CONTROL_TOKEN_FILE;
    case O_CONTROL_RECENT: return S_CONTROL_RECENT;
    default: return S_NONE;
    }
}

static const char *flag_name(int opt, int long_index, char *tmp, size_t size)
{
    if (long_index >= 0) {
        snprintf(tmp, size, "--%s", long_opts[long_index].name);
        return tmp;
    }
    for (const struct option *o = long_opts; o->name; o++)
        if (o->val == opt) {
            snprintf(tmp, size, "--%s", o->name);
            return tmp;
        }
    snprintf(tmp, size, "-%c", opt);
    return tmp;
}

static enum config_result bad_option(char **argv, int optopt_value, struct buf *err)
{
    const char *arg = argv[optind - 1];
    if (optopt_value && strncmp(arg, "--", 2) != 0) {
        bool needs_arg = strchr("lucd", optopt_value) != NULL;
        buf_printf(err,
                   needs_arg ? "-%c needs a value; see smtptap --help"
                             : "unknown option -%c; see smtptap --help for the options",
                   optopt_value);
        return CONFIG_ERR_USAGE;
    }
    for (const struct option *o = long_opts; o->name; o++) {
        size_t n = strlen(o->name);
        if (strncmp(arg + 2, o->name, n) == 0 && (arg[2 + n] == 0 || arg[2 + n] == '=')) {
            buf_printf(err, "--%s %s", o->name,
                       o->has_arg == required_argument ? "needs a value; see smtptap --help"
                                                       : "takes no value");
            return CONFIG_ERR_USAGE;
        }
    }
    buf_printf(err, "unknown option \"%s\"; see smtptap --help for the options", arg);
    return CONFIG_ERR_USAGE;
}

static bool add_cli_fault(struct config *c, const char *text, struct buf *err)
{
    struct fault_rule r;
    char msg[400];
    if (fault_parse_flag(text, (unsigned)c->cli_faults.count + 1, &r, msg, sizeof msg) < 0) {
        buf_printf(err, "%s", msg);
        return false;
    }
    fault_set_add(&c->cli_faults, &r);
    return true;
}

/* The rules in force: command line first (a flag wins), then the file's sections. */
static void combine_faults(const struct fault_set *cli, const struct fault_set *file,
                           struct fault_set *out)
{
    fault_set_init(out);
    for (size_t i = 0; i < cli->count; i++) fault_set_add(out, &cli->rules[i]);
    for (size_t i = 0; i < file->count; i++) fault_set_add(out, &file->rules[i]);
}

void config_free(struct config *c)
{
    fault_set_free(&c->faults);
    fault_set_free(&c->cli_faults);
    fault_set_free(&c->file_faults);
}

enum config_result config_reload_faults(const struct config *c, struct fault_set *out,
                                        struct buf *err)
{
    static struct config fresh;
    fault_set_init(out);
    config_defaults(&fresh);
    enum config_result r = CONFIG_OK;
    if (c->config_file[0]) r = config_load_file(&fresh, c->config_file, err);
    if (r == CONFIG_OK) combine_faults(&c->cli_faults, &fresh.file_faults, out);
    config_free(&fresh);
    return r;
}

/* Appends arg to out quoted for a POSIX shell when it needs quoting; "..." when out is full. */
static void quote_arg(const char *arg, char *out, size_t size)
{
    size_t n = strlen(out);
    if (n + 4 >= size) return;
    bool plain = arg[0] != 0;
    for (const char *p = arg; *p; p++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./-_", *p))
            plain = false;
    struct buf b;
    buf_init(&b);
    if (n) buf_append_str(&b, " ");
    if (plain) {
        buf_append_str(&b, arg);
    } else {
        buf_append_str(&b, "'");
        for (const char *p = arg; *p; p++) {
            if (*p == '\'')
                buf_append_str(&b, "'\\''");
            else if ((unsigned char)*p < 0x20 || *p == 0x7f)
                buf_printf(&b, "\\x%02X", (unsigned char)*p);
            else
                buf_append(&b, p, 1);
        }
        buf_append_str(&b, "'");
    }
    if (n + buf_size(&b) + 4 < size) {
        memcpy(out + n, buf_head(&b), buf_size(&b));
        out[n + buf_size(&b)] = 0;
    } else {
        strcpy(out + n, " ...");
    }
    buf_free(&b);
}

enum config_result config_from_args(struct config *c, int argc, char **argv, struct buf *err)
{
    config_defaults(c);
    c->command_line[0] = 0;
    for (int i = 0; i < argc; i++) {
        /* The control token is a secret: the transcript's header names the flag only. */
        if (i > 0 && strcmp(argv[i - 1], "--control-token") == 0)
            quote_arg("***", c->command_line, sizeof c->command_line);
        else if (strncmp(argv[i], "--control-token=", 16) == 0)
            quote_arg("--control-token=***", c->command_line, sizeof c->command_line);
        else
            quote_arg(argv[i], c->command_line, sizeof c->command_line);
    }
    /* Pass 1: -c, --help and --version, and the syntax of every flag. */
    opterr = 0;
    optind = 0; /* 0, not 1: also drops getopt's position inside a "-abc" of an earlier call */
    int opt, idx;
    const char *shortopts = "+l:u:c:d:qvVh";
    while ((idx = -1, opt = getopt_long(argc, argv, shortopts, long_opts, &idx)) != -1) {
        if (opt == '?' || opt == ':') return bad_option(argv, optopt, err);
        if (opt == 'h') return CONFIG_HELP;
        if (opt == 'V') return CONFIG_VERSION;
        if (opt == 'c') snprintf(c->config_file, sizeof c->config_file, "%s", optarg);
    }
    if (optind < argc) {
        buf_printf(err, "unexpected argument \"%s\"; options start with - (see smtptap --help)",
                   argv[optind]);
        return CONFIG_ERR_USAGE;
    }
    if (c->config_file[0]) {
        enum config_result r = config_load_file(c, c->config_file, err);
        if (r != CONFIG_OK) return r;
    }
    /* Pass 2: flags override the file. */
    bool listen_reset = false, print_ca = false;
    bool only_reset = false, session_reset = false; /* the flags' lists replace the file's */
    optind = 0;
    while ((idx = -1, opt = getopt_long(argc, argv, shortopts, long_opts, &idx)) != -1) {
        char name[64];
        switch (opt) {
        case 'c': break;
        case 'q': c->quiet = true; break; /* the terminal only: -v still counts */
        case 'v': c->verbosity++; break;
        case O_DECODE_AUTH: c->decode_auth = true; break;
        case O_INSECURE: c->insecure = true; break;
        case O_PRINT_CA: print_ca = true; break;
        case O_FAULT:
            if (!add_cli_fault(c, optarg, err)) return CONFIG_ERR_USAGE;
            break;
        case O_SEED:
            if (parse_uint(optarg, 0, UINT64_MAX, &c->seed)) {
                buf_printf(err, "--seed: invalid value \"%s\"; expected a whole number", optarg);
                return CONFIG_ERR_USAGE;
            }
            c->seed_given = true;
            break;
        case O_REDACT: c->redact = true; break;
        case O_EML_RAW: c->eml_raw = true; break;
        case O_SUMMARY: c->summary = true; break;
        case O_REPLAY_STRICT: c->replay_strict = true; break;
        case O_ONLY:
            if (!only_reset) c->watch.nglobs = 0, only_reset = true;
            __attribute__((fallthrough));
        case O_SESSION:
            if (opt == O_SESSION && !session_reset) c->watch.nsessions = 0, session_reset = true;
            __attribute__((fallthrough));
        default:
            if (apply(c, setting_of(opt), flag_name(opt, idx, name, sizeof name),
                      optarg ? optarg : "", &listen_reset, err))
                return CONFIG_ERR_USAGE;
        }
    }
    combine_faults(&c->cli_faults, &c->file_faults, &c->faults);
    enum config_result token = config_read_control_token(c, err);
    if (token != CONFIG_OK) return token;
    if (c->control_on && !c->control_token[0] && !is_loopback_address(c->control.host)) {
        char at[HOST_MAX + 16];
        format_hostport(c->control.host, c->control.port, at, sizeof at);
        buf_printf(err,
                   "--control %s: not a loopback address, so anyone who reaches it could change "
                   "faults and read every session; give --control-token TOKEN or "
                   "--control-token-file FILE (or [control] token / token_file), or listen on "
                   "127.0.0.1",
                   at);
        return CONFIG_ERR_USAGE;
    }
    return print_ca ? CONFIG_PRINT_CA : CONFIG_OK;
}

enum config_result config_read_control_token(struct config *c, struct buf *err)
{
    if (!c->control_token_file[0]) return CONFIG_OK;
    FILE *f = fopen(c->control_token_file, "r");
    char line[512] = "";
    if (!f) {
        buf_printf(err, "--control-token-file %s: cannot read the file: %s", c->control_token_file,
                   strerror(errno));
        return CONFIG_ERR_CONFIG;
    }
    bool got = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    line[strcspn(line, "\r\n")] = 0;
    struct buf msg;
    buf_init(&msg);
    const char *bad = !got || !line[0] ? "a file whose first line is the token" : NULL;
    if (!bad) {
        char name[4200];
        snprintf(name, sizeof name, "--control-token-file %s", c->control_token_file);
        bad = apply(c, S_CONTROL_TOKEN, name, line, NULL, &msg);
    } else {
        buf_printf(&msg, "--control-token-file %s: empty; expected %s", c->control_token_file, bad);
    }
    if (bad) buf_append(err, buf_head(&msg), buf_size(&msg));
    buf_free(&msg);
    return bad ? CONFIG_ERR_CONFIG : CONFIG_OK;
}
